#include "core/gcra.h"

#include <algorithm>

#include "core/bucket.h"
#include "core/int_math.h"

namespace sluice {

namespace {

// TAT in units (1 unit = 1 / units_per_micro microseconds).
__int128 TatUnits(const GcraState& state, const Limit& limit) {
  return static_cast<__int128>(state.tat) * limit.units_per_micro() + state.tat_fraction;
}

void StoreTat(GcraState& state, const Limit& limit, __int128 tat_units) {
  const int64_t per_micro = limit.units_per_micro();
  const __int128 micros = int_math::FloorDiv(tat_units, per_micro);
  state.tat = int_math::Saturate(micros);
  state.tat_fraction = static_cast<int64_t>(tat_units - micros * per_micro);
}

}  // namespace

Decision Gcra::Admit(GcraState& state, const Limit& limit, Micros now, int64_t cost,
                     OnReject on_reject) {
  const __int128 tat = TatUnits(state, limit);
  const __int128 now_units = static_cast<__int128>(now) * limit.units_per_micro();
  // The level of the equivalent bucket: how far the TAT is ahead of now.
  __int128 level = std::max<__int128>(0, tat - now_units);
  Decision d;
  if (internal::AdmitLevel(limit, level, cost, /*shift=*/0, on_reject, d)) {
    // max(tat, now) + cost emission intervals (or the bounded debt): now + the new level.
    StoreTat(state, limit, now_units + level);
  }
  return d;
}

void Gcra::Refund(GcraState& state, const Limit& limit, Micros charged_at, int64_t cost) {
  const __int128 floor = static_cast<__int128>(charged_at) * limit.units_per_micro();
  const __int128 tat =
      TatUnits(state, limit) - static_cast<__int128>(cost) * limit.units_per_token();
  StoreTat(state, limit, std::max(tat, floor));
}

}  // namespace sluice
