// The Store interface: where per-key algorithm state lives. The limiter turns a request into
// ChargeItems and asks the store once; the failure policy lives in the limiter, so a store
// reports failures as a Status and never decides what a failure means.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "core/decision.h"
#include "core/limit.h"

namespace sluice {

struct ChargeItem {
  // The counter's identity. The caller makes it unique per (rule, attribute values) and
  // includes anything that changes the state's meaning (the algorithm, the window).
  std::string_view key;
  const Limit* limit = nullptr;
  int64_t cost = 1;  // >= 0; 0 only reads
  // false for shadow rules: charged when it admits, but its rejection never fails the request.
  bool enforced = true;
};

class Store {
 public:
  // Called exactly once per Charge, possibly on the calling thread before Charge returns.
  using Done = absl::AnyInvocable<void(absl::Status) &&>;

  virtual ~Store() = default;

  // Checks and charges every item of one request, all-or-nothing: when any enforced item is
  // rejected, nothing is charged to any item. A rejected non-enforced item is simply not
  // charged. Writes one Decision per item into `decisions` (same
  // order and size as `items`; the buffers must live until `done` runs). When the request is
  // rejected, the decisions of items that would have admitted describe their state without
  // this request's charge. Thread-safe.
  virtual void Charge(std::span<const ChargeItem> items, std::span<Decision> decisions,
                      Done done) = 0;

  // "memory", "redis", ...: the label of metrics and /health.
  virtual std::string_view backend() const = 0;
};

}  // namespace sluice
