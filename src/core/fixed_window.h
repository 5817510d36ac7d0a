#pragma once

#include <cstdint>

#include "core/decision.h"
#include "core/limit.h"

namespace sluice {

// Zero-initialized is a fresh key.
struct FixedWindowState {
  int64_t window_index = 0;  // floor(time / window) of the newest window seen
  int64_t count = 0;         // cost charged in that window; above the limit in debt, at most
                             // Limit::kMaxCount
};

// Admits while count + cost <= limit in the current window; windows are aligned to Unix-epoch
// multiples of `window`. A clock that goes back stays in the newest window seen.
class FixedWindow {
 public:
  // Mutates `state` only when it charges a non-zero cost: when it admits, or with
  // OnReject::kChargeAnyway. Not thread-safe: the caller owns `state`.
  static Decision Admit(FixedWindowState& state, const Limit& limit, Micros now, int64_t cost,
                        OnReject on_reject = OnReject::kChargeNothing);
  // Gives back `cost` charged at `charged_at` if that window is still the current one.
  static void Refund(FixedWindowState& state, const Limit& limit, Micros charged_at, int64_t cost);
};

}  // namespace sluice
