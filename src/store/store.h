// The Store interface: where per-key algorithm state lives. The limiter turns a request into
// ChargeItems and asks the store once; the failure policy lives in the limiter, so a store
// reports failures as a Status and never decides what a failure means.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "core/consistency.h"
#include "core/decision.h"
#include "core/limit.h"

namespace sluice {

// What an item's rejection means for the request it belongs to.
enum class ItemRole : uint8_t {
  kEnforced,  // rejects the request
  kShadow,    // never rejects the request (shadow rules and descriptors)
  // Rejects the request only when every quota item of the request rejects (Envoy's
  // `quota_mode`, CONTRACT §6).
  kQuota,
};

// When an item's cost is charged (CONTRACT §4 "charge", §6).
enum class ChargeWhen : uint8_t {
  // Only when the request is allowed: a rejected request consumes nothing (the default).
  kRequestAllowed,
  // As kRequestAllowed, and also when the item itself rejects: it takes its cost into debt
  // (envoyproxy/ratelimit's over-limit descriptor). Admitted items of a rejected request are
  // given back.
  kAllowedOrOver,
  // Whatever happens, into debt where the limit does not admit it ("charge": "always").
  kAlways,
};

struct ChargeItem {
  // The counter's identity. The caller makes it unique per (rule, attribute values) and
  // includes anything that changes the state's meaning (the algorithm, the window).
  std::string_view key;
  const Limit* limit = nullptr;
  int64_t cost = 1;  // >= 0; 0 only reads
  ItemRole role = ItemRole::kEnforced;
  ChargeWhen when = ChargeWhen::kRequestAllowed;
  // CONTRACT §11, from the rule: stores that share state across servers may decide a leased item
  // from a slice of its quota (src/store/leased/); others decide every item exactly.
  Consistency consistency = Consistency::kDefault;
  const Overshoot* max_overshoot = nullptr;  // the rule's; null: the store's default
  std::string_view rule_id = {};             // for lease metrics
  // algorithm: concurrency — the id of the slot this request takes (the check's lease id, the
  // same for every concurrency item of one request; Store::Release frees it). Empty otherwise.
  std::string_view lease = {};

  // Whether Admit charges this item even when it rejects.
  OnReject on_reject() const {
    return when == ChargeWhen::kRequestAllowed ? OnReject::kChargeNothing : OnReject::kChargeAnyway;
  }
  // Whether an admitted charge of this item is given back when the request is rejected.
  bool refunded_on_rejection() const { return when != ChargeWhen::kAlways; }
};

// Whether the items' decisions reject the request: an enforced item rejects, or every quota
// item does (when there is one).
inline bool RequestRejected(std::span<const ChargeItem> items,
                            std::span<const Decision> decisions) {
  size_t quota = 0;
  size_t quota_rejected = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].role == ItemRole::kEnforced && !decisions[i].allowed) return true;
    if (items[i].role == ItemRole::kQuota) {
      ++quota;
      quota_rejected += decisions[i].allowed ? 0 : 1;
    }
  }
  return quota > 0 && quota_rejected == quota;
}

class Store {
 public:
  // Called exactly once per Charge (or Reset), possibly on the calling thread before it returns.
  using Done = absl::AnyInvocable<void(absl::Status) &&>;

  virtual ~Store() = default;

  // Checks and charges every item of one request, all-or-nothing: when the request is rejected
  // (RequestRejected), nothing is charged to any item, except as each item's ChargeWhen says
  // (an item that charges when over keeps its debt; a kAlways item keeps its charge). A
  // rejected item that does not reject the request (shadow, or quota while another quota item
  // admits) is charged only per its ChargeWhen. Writes one Decision per item into `decisions`
  // (same order and size as `items`; the buffers must live until `done` runs). When the
  // request is rejected, the decisions of items whose charge was given back describe their
  // state without this request's charge. Thread-safe.
  virtual void Charge(std::span<const ChargeItem> items, std::span<Decision> decisions,
                      Done done) = 0;

  // Forgets the state of the counter `key` (as a ChargeItem names it, with the limit it is
  // counted under): the next charge finds it as if it had never been charged. Any local cache
  // that answers for the key (e.g. the Redis store's over-limit cache) forgets it too. The state
  // is forgotten whatever algorithm it was kept under. `done` runs exactly once, possibly on the
  // calling thread before Reset returns, with a non-OK status when the store could not be
  // reached (as Charge reports it); resetting a key that holds no state is OK. Thread-safe.
  virtual void Reset(std::string_view key, const Limit& limit, Done done) = 0;

  // Frees the concurrency slot `lease` holds on counter `key` (algorithm: concurrency; see
  // ChargeItem::lease). Freeing a slot that is not held (released already, expired, never taken)
  // is OK and changes nothing. `done` runs exactly once, as for Reset. Thread-safe.
  virtual void Release(std::string_view key, std::string_view lease, Done done) = 0;

  // Drops whatever this process caches about counter `key` (the Redis store's over-limit
  // cache), so that its next charge asks the store: another server reset the counter.
  // Thread-safe.
  virtual void ForgetCached(std::string_view /*key*/) {}

  // "memory", "redis", ...: the label of metrics and /health.
  virtual std::string_view backend() const = 0;
};

}  // namespace sluice
