#pragma once

#include <cstdint>

#include "core/decision.h"
#include "core/limit.h"

namespace sluice {

// One timestamp per key, as redis-cell: the theoretical arrival time (TAT), kept exactly as
// `tat` microseconds plus `tat_fraction` / Limit::units_per_micro() of a microsecond, because
// the emission interval window/limit is rarely a whole number of microseconds.
// Zero-initialized is a fresh key. In debt the TAT is more than the capacity ahead of now, at
// most Limit::max_level_units() units.
struct GcraState {
  Micros tat = 0;
  int64_t tat_fraction = 0;  // in [0, units_per_micro)
};

// Generic cell rate algorithm: same admissions as TokenBucket with capacity `burst`, refilled at
// limit/window. A clock that goes back only makes it stricter (TAT - now grows).
class Gcra {
 public:
  // Mutates `state` only when it charges a non-zero cost: when it admits, or with
  // OnReject::kChargeAnyway. Not thread-safe.
  static Decision Admit(GcraState& state, const Limit& limit, Micros now, int64_t cost,
                        OnReject on_reject = OnReject::kChargeNothing);
  // Moves the TAT back by `cost` emission intervals, never before `charged_at`.
  static void Refund(GcraState& state, const Limit& limit, Micros charged_at, int64_t cost);
};

}  // namespace sluice
