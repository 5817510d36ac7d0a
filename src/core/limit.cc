#include "core/limit.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/int_math.h"

namespace sluice {

namespace {
constexpr std::string_view kNames[] = {
    "fixed_window", "sliding_window_counter", "sliding_window_log", "token_bucket",
    "gcra",         "leaky_bucket",           "concurrency"};
}  // namespace

std::string_view AlgorithmName(Algorithm algorithm) {
  return kNames[static_cast<size_t>(algorithm)];
}

std::optional<Algorithm> ParseAlgorithm(std::string_view name) {
  for (Algorithm a : kAllAlgorithms) {
    if (AlgorithmName(a) == name) return a;
  }
  if (name == AlgorithmName(Algorithm::kConcurrency)) return Algorithm::kConcurrency;
  return std::nullopt;
}

absl::StatusOr<Limit> Limit::Create(const LimitOptions& options) {
  if (options.limit < 1 || options.limit > kMaxCount) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit must be between 1 and ", kMaxCount, ", got ", options.limit));
  }
  if (options.window < 1 || options.window > kMaxWindow) {
    return absl::InvalidArgumentError(
        absl::StrCat("window must be between 1us and 10 years, got ", options.window, "us"));
  }
  if (options.burst < 0 || options.burst > kMaxCount) {
    return absl::InvalidArgumentError(
        absl::StrCat("burst must be between 1 and ", kMaxCount, ", got ", options.burst));
  }
  if (options.algorithm == Algorithm::kSlidingWindowCounter &&
      options.limit > kMaxSlidingCounterLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("sliding_window_counter supports limits up to ", kMaxSlidingCounterLimit));
  }
  Limit l;
  l.algorithm_ = options.algorithm;
  l.limit_ = options.limit;
  l.window_ = options.window;
  l.burst_ = options.burst == 0 ? options.limit : options.burst;
  const int64_t g = int_math::Gcd(l.limit_, l.window_);
  l.units_per_token_ = l.window_ / g;
  l.units_per_micro_ = l.limit_ / g;
  if (UsesBurst(l.algorithm_)) {
    // The bucket's level is kept in units; capacity * 2 must fit so that level + cost never wraps.
    const __int128 capacity = static_cast<__int128>(l.burst_) * l.units_per_token_;
    if (capacity > int_math::kMax / 4) {
      return absl::InvalidArgumentError(absl::StrCat(
          "burst ", l.burst_, " over a window of ", l.window_,
          "us is too fine-grained to count exactly; use a smaller burst or a rounder window"));
    }
    l.capacity_units_ = static_cast<int64_t>(capacity);
  } else {
    l.capacity_units_ = l.limit_;
  }
  return l;
}

}  // namespace sluice
