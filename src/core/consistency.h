// How exactly a rule is counted across servers (CONTRACT §11): `consistency` and
// `max_overshoot`. Exact rules ask the store on every check; leased ones decide from slices of the
// quota each server takes from it (src/store/leased/), and may go over the limit by at most the
// overshoot per window, all servers together.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/limit.h"

namespace sluice {

enum class Consistency : uint8_t {
  kDefault,  // the store's `consistency` (config)
  kExact,
  kLeased,
};

// Whether slices of `a`'s quota can be taken ahead and used later without admitting more than
// the algorithm would (docs/algorithms.md, "Leased counting"): fixed and sliding window
// counters (a slice is used within the window it was taken in), token bucket and GCRA (a slice
// charged early only makes the state stricter). Not sliding_window_log (a slice's log entries
// would be dated before the checks they stand for, and leave the window early) nor leaky_bucket
// (its answer, the delay, depends on every server's queue).
constexpr bool Leasable(Algorithm a) {
  return a == Algorithm::kFixedWindow || a == Algorithm::kSlidingWindowCounter ||
         a == Algorithm::kTokenBucket || a == Algorithm::kGcra;
}

// `max_overshoot`: a count, or a share of the limit in millionths (`1%` = 10000).
class Overshoot {
 public:
  static constexpr int64_t kPerMillion = 1'000'000;
  static Overshoot Count(int64_t n) { return Overshoot(n, false); }
  static Overshoot PartsPerMillion(int64_t ppm) { return Overshoot(ppm, true); }

  // "25" (a count) or "1%", "0.25%" (a share of the limit, at most 100% and 4 decimals).
  static std::optional<Overshoot> Parse(std::string_view text);

  // The bound in tokens for `limit` (rounded down: never more than was asked for).
  int64_t For(int64_t limit) const {
    if (!share_) return value_;
    return static_cast<int64_t>((static_cast<__int128>(limit) * value_) / kPerMillion);
  }
  std::string ToString() const;  // as Parse takes it
  bool operator==(const Overshoot&) const = default;

 private:
  Overshoot(int64_t value, bool share) : value_(value), share_(share) {}
  int64_t value_;
  bool share_;
};

}  // namespace sluice
