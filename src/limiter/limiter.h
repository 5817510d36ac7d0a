// The engine: request → applicable rules → one all-or-nothing store charge → one Decision.
// Both faces (HTTP, gRPC) call it; it owns the rules snapshot, the failure policy and the
// per-rule metrics.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "core/decision.h"
#include "core/time.h"
#include "limiter/descriptors.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "rules/rule_set.h"
#include "store/store.h"

namespace sluice {

enum class FailurePolicy : uint8_t { kFailOpen, kFailClosed, kLocal };

struct CheckRequest {
  rules::RequestAttributes attributes;
  int64_t cost = 1;  // >= 0
};

// The answer to one check (CONTRACT §3.1, §5).
struct CheckResult {
  enum class Outcome : uint8_t {
    kAllowed,           // allowed; `limited` says whether any enforced rule applied
    kRejected,          // 429
    kAllowlisted,       // on the allow list: no rules evaluated
    kDenied,            // on the deny list: 403
    kStoreUnavailable,  // the store failed and the policy is fail_closed: 503
  };
  Outcome outcome = Outcome::kAllowed;
  // Whether an enforced rule applied, so `decision` and `rule_id` mean something (limit headers).
  bool limited = false;
  // The reported rule: when allowed, the enforced rule with the least remaining; when rejected,
  // the rejecting rule with the longest retry_after (a cost no rule could ever admit first).
  Decision decision;
  std::string rule_id;
  Micros window = 0;                              // of the reported rule
  Algorithm algorithm = Algorithm::kFixedWindow;  // of the reported rule
  std::string deny_reason;
  bool degraded = false;  // the store failed and fail_open/local answered
  Micros now = 0;         // the time the decision was made (for reset_at)
};

class Limiter {
 public:
  struct Options {
    FailurePolicy on_failure = FailurePolicy::kFailOpen;
    // on_failure: local — where checks are decided while `store` fails (a MemoryStore), each
    // limit scaled by `fallback_share` (CONTRACT §7). Must outlive the Limiter.
    Store* fallback = nullptr;
    double fallback_share = 1.0;
  };
  using Callback = absl::AnyInvocable<void(CheckResult) &&>;

  // `store`, `clock`, `metrics` and `rejections` must outlive the Limiter.
  Limiter(Store& store, const Clock& clock, obs::Metrics& metrics, obs::RejectionLog& rejections,
          Options options);

  // Swaps in a new rules snapshot. Requests already running keep the one they started with.
  // Thread-safe.
  void SetRules(std::shared_ptr<const rules::RuleSet> rules);
  std::shared_ptr<const rules::RuleSet> rules() const;
  // Bumped by every SetRules: /health's rules.version.
  uint64_t rules_version() const { return rules_version_.load(std::memory_order_relaxed); }

  // Decides `request`. `done` runs exactly once, possibly before Check returns. Thread-safe.
  void Check(CheckRequest request, Callback done);

  using DescriptorsCallback = absl::AnyInvocable<void(DescriptorsResult) &&>;
  // Decides an Envoy rate limit request (domain + descriptors) with envoyproxy/ratelimit's
  // semantics: matching, `replaces`, `unlimited`, shadow mode, limit overrides, both
  // hits_addends, and nothing consumed when the answer is OVER_LIMIT. The caller validates
  // that the domain and descriptors are not empty. `done` runs exactly once. Thread-safe.
  void CheckDescriptors(DescriptorsRequest request, DescriptorsCallback done);

  // Whether the last store round trip failed (for /health). Relaxed: advisory.
  bool store_failing() const { return store_failing_.load(std::memory_order_relaxed); }
  FailurePolicy on_failure() const { return options_.on_failure; }
  Store& store() { return store_; }
  const Clock& clock() const { return clock_; }

 private:
  // A snapshot and the metric handles of its rules, built once per SetRules.
  struct Snapshot {
    std::shared_ptr<const rules::RuleSet> rules;
    std::vector<obs::RuleCounters> counters;  // per rule, by index in rules->rules()
    obs::RuleCounters deny_list;
    obs::RuleCounters allow_list;
    // on_failure: local — each rule's limit scaled by fallback_share, by index in rules->rules().
    std::vector<Limit> local_limits;
    // The same for descriptor limits, which the RuleSet does not list: made the first time the
    // store fails on one, then kept for the snapshot's life (stable addresses).
    // Guarded by local_mu: a comment, not ABSL_GUARDED_BY, as a std::mutex cannot be checked
    // (base/mutex.h).
    mutable std::mutex local_mu;
    mutable absl::flat_hash_map<const Limit*, std::unique_ptr<const Limit>> local_descriptor_limits;
  };
  struct Pending;
  struct PendingDescriptors;

  void Finish(std::unique_ptr<Pending> pending, const absl::Status& status);
  void FinishDescriptors(std::unique_ptr<PendingDescriptors> pending, const absl::Status& status);
  // on_failure: local — charges the fallback store with the scaled limits, then finishes.
  void DecideLocally(std::unique_ptr<Pending> pending);
  void DecideDescriptorsLocally(std::unique_ptr<PendingDescriptors> pending);
  // `limit` with its limit and burst scaled by fallback_share (at least 1 each).
  Limit LocalLimit(const Limit& limit) const;
  // The counters of an Envoy metric key, created on first use and cached: registering them
  // with prometheus per request would take its registry lock and rebuild label maps each time.
  obs::RuleCounters DescriptorCounters(const std::string& metric_key);

  Store& store_;
  const Clock& clock_;
  obs::Metrics& metrics_;
  obs::RejectionLog& rejections_;
  const Options options_;
  std::atomic<std::shared_ptr<const Snapshot>> snapshot_;
  std::atomic<uint64_t> rules_version_{0};
  std::atomic<bool> store_failing_{false};
  std::mutex descriptor_counters_mu_;
  // Guarded by descriptor_counters_mu_ (a comment for the same reason as local_mu's).
  absl::flat_hash_map<std::string, obs::RuleCounters> descriptor_counters_;
  prometheus::Histogram& store_latency_;
  prometheus::Counter& store_errors_;
};

}  // namespace sluice
