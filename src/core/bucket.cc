#include "core/bucket.h"

#include <algorithm>

#include "core/int_math.h"

namespace sluice {

using int_math::CeilDiv;
using int_math::Saturate;

namespace internal {

bool AdmitLevel(const Limit& limit, __int128& level, int64_t cost, Micros shift, OnReject on_reject,
                Decision& d) {
  const int64_t per_token = limit.units_per_token();
  const int64_t per_micro = limit.units_per_micro();
  const int64_t capacity = limit.capacity_units();
  // cost <= kMaxCount and per_token <= capacity < 2^62: no overflow in 128 bits.
  const __int128 need = static_cast<__int128>(cost) * per_token;
  d.limit = limit.limit();
  if (cost > limit.burst()) {
    d.allowed = false;
    d.cost_exceeds_limit = true;
  } else if (level + need <= capacity) {
    level += need;
  } else {
    d.allowed = false;
    // level - e * per_micro + need <= capacity  <=>  e >= (level + need - capacity) / per_micro
    d.retry_after = Saturate(CeilDiv(level + need - capacity, per_micro) + shift);
  }
  const bool charged = cost > 0 && (d.allowed || on_reject == OnReject::kChargeAnyway);
  if (!d.allowed && charged) {
    // Debt, bounded: a level already past the bound (a clock gone back) is never lowered.
    level = std::min<__int128>(level + need, std::max<__int128>(level, limit.max_level_units()));
  }
  d.remaining = static_cast<int64_t>(std::max<__int128>(0, (capacity - level) / per_token));
  d.reset_after = level > 0 ? Saturate(CeilDiv(level, per_micro) + shift) : 0;
  return charged;
}

}  // namespace internal

namespace {

// The level drained up to the decision time `at` = max(now, last).
__int128 DrainedLevel(const BucketState& state, const Limit& limit, Micros at) {
  const __int128 drained = static_cast<__int128>(at - state.last) * limit.units_per_micro();
  return std::max<__int128>(0, state.level - drained);
}

Decision AdmitBucket(BucketState& state, const Limit& limit, Micros now, int64_t cost, bool shaping,
                     OnReject on_reject) {
  const Micros at = std::max(now, state.last);
  const __int128 before = DrainedLevel(state, limit, at);
  __int128 level = before;
  Decision d;
  const bool charged = internal::AdmitLevel(limit, level, cost, at - now, on_reject, d);
  if (d.allowed && shaping && before > 0) {
    // Hold until what is queued ahead has drained.
    d.delay = Saturate(int_math::CeilDiv(before, limit.units_per_micro()) + (at - now));
  }
  if (charged) {
    state.level = static_cast<int64_t>(level);  // <= max_level_units()
    state.last = at;
  }
  return d;
}

void RefundBucket(BucketState& state, const Limit& limit, int64_t cost) {
  const __int128 level = state.level - static_cast<__int128>(cost) * limit.units_per_token();
  state.level = static_cast<int64_t>(std::max<__int128>(0, level));
}

}  // namespace

Decision TokenBucket::Admit(BucketState& state, const Limit& limit, Micros now, int64_t cost,
                            OnReject on_reject) {
  return AdmitBucket(state, limit, now, cost, /*shaping=*/false, on_reject);
}

void TokenBucket::Refund(BucketState& state, const Limit& limit, Micros, int64_t cost) {
  RefundBucket(state, limit, cost);
}

Decision LeakyBucket::Admit(BucketState& state, const Limit& limit, Micros now, int64_t cost,
                            OnReject on_reject) {
  return AdmitBucket(state, limit, now, cost, /*shaping=*/true, on_reject);
}

void LeakyBucket::Refund(BucketState& state, const Limit& limit, Micros, int64_t cost) {
  RefundBucket(state, limit, cost);
}

}  // namespace sluice
