// token_bucket and leaky_bucket: one level that drains at limit/window, two readings of it.
#pragma once

#include <cstdint>

#include "core/decision.h"
#include "core/limit.h"

namespace sluice {

// Zero-initialized is a fresh key (a full token bucket, an empty leaky-bucket queue).
struct BucketState {
  int64_t level = 0;  // units in use at `last` (Limit::units_per_token() units per token);
                      // above the capacity in debt, at most Limit::max_level_units()
  Micros last = 0;    // when `level` was computed; never moves backwards
};

// Capacity `burst` tokens, refilled continuously at limit/window, starting full. Admits while
// tokens >= cost. Kept as the level used rather than tokens left, so zero is full.
class TokenBucket {
 public:
  // Mutates `state` only when it charges a non-zero cost: when it admits, or with
  // OnReject::kChargeAnyway. Not thread-safe.
  static Decision Admit(BucketState& state, const Limit& limit, Micros now, int64_t cost,
                        OnReject on_reject = OnReject::kChargeNothing);
  // Gives back `cost` tokens. Exact when nothing else was charged since the refunded charge.
  static void Refund(BucketState& state, const Limit& limit, Micros charged_at, int64_t cost);
};

// A queue of capacity `burst` draining at limit/window (nginx limit_req without nodelay). Admits
// like TokenBucket; an admitted request carries `delay`: how long the caller holds it so that
// requests leave at the drain rate (0 for the first request into an empty queue).
// `remaining` is the free places in the queue.
class LeakyBucket {
 public:
  static Decision Admit(BucketState& state, const Limit& limit, Micros now, int64_t cost,
                        OnReject on_reject = OnReject::kChargeNothing);
  static void Refund(BucketState& state, const Limit& limit, Micros charged_at, int64_t cost);
};

namespace internal {
// Shared admission for level-based algorithms: `level` units are in use at the decision time,
// `shift` is how far the decision time is ahead of the caller's now (clock went back).
// Fills remaining/reset_after/retry_after/allowed and leaves in `level` the level after the
// charge; returns whether it charged anything (admitted a non-zero cost, or charged it anyway).
bool AdmitLevel(const Limit& limit, __int128& level, int64_t cost, Micros shift, OnReject on_reject,
                Decision& d);
}  // namespace internal

}  // namespace sluice
