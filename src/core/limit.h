// A validated limit: algorithm, rate and burst, with the derived integers the algorithms use.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/time.h"

namespace sluice {

enum class Algorithm : uint8_t {
  kFixedWindow,
  kSlidingWindowCounter,
  kSlidingWindowLog,
  kTokenBucket,
  kGcra,
  kLeakyBucket,
  // Not a rate: at most `limit` requests in flight per key, each slot held for at most the
  // limit's window (the rule's `lease_ttl`). See core/concurrency.h.
  kConcurrency,
};
// The rate algorithms (every one but concurrency), in enum order: the Redis scripts number them
// by their index here.
inline constexpr Algorithm kAllAlgorithms[] = {
    Algorithm::kFixedWindow,
    Algorithm::kSlidingWindowCounter,
    Algorithm::kSlidingWindowLog,
    Algorithm::kTokenBucket,
    Algorithm::kGcra,
    Algorithm::kLeakyBucket,
};

// The names used in rules files ("token_bucket", ...).
std::string_view AlgorithmName(Algorithm algorithm);
std::optional<Algorithm> ParseAlgorithm(std::string_view name);

// Whether `burst` means anything for the algorithm (bucket capacity / queue size).
constexpr bool UsesBurst(Algorithm a) {
  return a == Algorithm::kTokenBucket || a == Algorithm::kGcra || a == Algorithm::kLeakyBucket;
}

struct LimitOptions {
  Algorithm algorithm = Algorithm::kSlidingWindowCounter;
  int64_t limit = 0;  // requests (cost units) per window; >= 1
  Micros window = 0;  // >= 1 us
  int64_t burst = 0;  // bucket capacity for token_bucket/gcra/leaky_bucket; 0 means `limit`
};

// Immutable once created; cheap to copy. Bucket algorithms (token_bucket, gcra, leaky_bucket)
// count in "units" so that a refill of limit/window tokens per microsecond stays exact in
// integers: one token is `units_per_token()` units and the bucket refills `units_per_micro()`
// units each microsecond, both reduced by gcd(limit, window).
class Limit {
 public:
  // Largest accepted limit, burst and window: keeps every product the algorithms form inside
  // int64 and every value a Redis Lua script stores below 2^53.
  static constexpr int64_t kMaxCount = (int64_t{1} << 53) - 1;
  static constexpr Micros kMaxWindow = int64_t{10} * 366 * 24 * 3600 * kMicrosPerSecond;
  // sliding_window_counter packs its two counters in 32 bits each.
  static constexpr int64_t kMaxSlidingCounterLimit = 0xFFFFFFFF;

  static absl::StatusOr<Limit> Create(const LimitOptions& options);

  Algorithm algorithm() const { return algorithm_; }
  int64_t limit() const { return limit_; }
  Micros window() const { return window_; }
  int64_t burst() const { return burst_; }
  // The largest cost a single request could ever be admitted with (concurrency: any, since a
  // request holds one slot whatever its cost).
  int64_t max_cost() const {
    if (algorithm_ == Algorithm::kConcurrency) return kMaxCount;
    return UsesBurst(algorithm_) ? burst_ : limit_;
  }

  int64_t units_per_token() const { return units_per_token_; }  // window / gcd
  int64_t units_per_micro() const { return units_per_micro_; }  // limit / gcd
  int64_t capacity_units() const { return capacity_units_; }    // burst * units_per_token
  // The most units a bucket (or GCRA's equivalent level) may hold in debt after a forced charge
  // (CONTRACT §4 "charge": "always"): 2^52 for every limit the Redis store takes (capacity <=
  // 2^51), the same bound its scripts use, so that a level and the times derived from it stay
  // exact in a double; twice the capacity for finer limits, which only the memory store runs.
  static constexpr int64_t kMaxScriptCapacityUnits = int64_t{1} << 51;
  int64_t max_level_units() const {
    return capacity_units_ <= kMaxScriptCapacityUnits ? 2 * kMaxScriptCapacityUnits
                                                      : 2 * capacity_units_;
  }

 private:
  Limit() = default;

  Algorithm algorithm_ = Algorithm::kSlidingWindowCounter;
  int64_t limit_ = 1;
  Micros window_ = 1;
  int64_t burst_ = 1;
  int64_t units_per_token_ = 1;
  int64_t units_per_micro_ = 1;
  int64_t capacity_units_ = 1;
};

}  // namespace sluice
