#pragma once

#include <cstdint>

#include "core/decision.h"
#include "core/limit.h"

namespace sluice {

// Zero-initialized is a fresh key. 16 bytes: the counters are 32-bit, which is why
// Limit::Create caps this algorithm's limit at 2^32 - 1.
struct SlidingWindowCounterState {
  int64_t window_index = 0;  // floor(time / window) of the current window
  uint32_t current = 0;      // cost charged in the current window; above the limit in debt,
                             // saturating at 2^32 - 1
  uint32_t previous = 0;     // cost admitted in the window before it
};

// Cloudflare's estimate: admits while previous * (1 - elapsed/window) + current + cost <= limit,
// compared exactly as previous * (window - elapsed) + (current + cost) * window <= limit * window.
class SlidingWindowCounter {
 public:
  // Mutates `state` only when it charges a non-zero cost: when it admits, or with
  // OnReject::kChargeAnyway. Not thread-safe.
  static Decision Admit(SlidingWindowCounterState& state, const Limit& limit, Micros now,
                        int64_t cost, OnReject on_reject = OnReject::kChargeNothing);
  static void Refund(SlidingWindowCounterState& state, const Limit& limit, Micros charged_at,
                     int64_t cost);
};

}  // namespace sluice
