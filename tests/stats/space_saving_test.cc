#include "stats/space_saving.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "gtest/gtest.h"

namespace sluice::stats {
namespace {

// A Zipf(s) sampler over keys 0..n-1 (inverse CDF over the exact weights).
class Zipf {
 public:
  Zipf(size_t n, double s, uint64_t seed) : rng_(seed) {
    cdf_.resize(n);
    double sum = 0;
    for (size_t i = 0; i < n; ++i) cdf_[i] = (sum += 1.0 / std::pow(static_cast<double>(i + 1), s));
    for (double& c : cdf_) c /= sum;
  }
  size_t Next() {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng_);
    return static_cast<size_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
  }

 private:
  std::mt19937_64 rng_;
  std::vector<double> cdf_;
};

std::string Key(size_t i) { return "user_" + std::to_string(i); }

// Checks Space-Saving's guarantees against exact counts: count - error <= true <= count for
// every monitored key, every key over the floor monitored, floor <= N / capacity.
void ExpectBounds(const SpaceSaving& summary,
                  const absl::flat_hash_map<std::string, uint64_t>& exact, uint64_t total) {
  EXPECT_LE(summary.floor(), total / summary.capacity() + 1);
  for (const SpaceSaving::Entry& e : summary.Top(summary.size())) {
    const uint64_t truth = exact.contains(e.key) ? exact.at(e.key) : 0;
    EXPECT_LE(truth, e.count) << e.key;
    EXPECT_GE(truth, e.count - e.error) << e.key;
  }
  for (const auto& [key, truth] : exact) {
    if (truth > summary.floor()) EXPECT_GE(summary.Estimate(key).count, truth) << key;
  }
}

TEST(SpaceSaving, ExactWhileUnderCapacity) {
  SpaceSaving s(10);
  for (int i = 0; i < 5; ++i) s.Add("a");
  s.Add("b", 3);
  EXPECT_EQ(s.floor(), 0u);
  const auto top = s.Top(10);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].key, "a");
  EXPECT_EQ(top[0].count, 5u);
  EXPECT_EQ(top[0].error, 0u);
  EXPECT_EQ(top[1].count, 3u);
  EXPECT_EQ(s.Estimate("c").count, 0u);
}

TEST(SpaceSaving, ReplacesTheLeastAndCarriesItsCountAsError) {
  SpaceSaving s(2);
  s.Add("a", 5);
  s.Add("b", 2);
  s.Add("c");  // replaces b (2): 3 with error 2
  EXPECT_EQ(s.size(), 2u);
  EXPECT_EQ(s.Estimate("c").count, 3u);
  EXPECT_EQ(s.Estimate("c").error, 2u);
  EXPECT_EQ(s.Estimate("b").count, 3u);  // not monitored: up to the floor
  EXPECT_EQ(s.floor(), 3u);
}

TEST(SpaceSaving, ZipfTopTenIsExactOver100kKeys) {
  const size_t kKeys = 100'000;
  const size_t kSamples = 1'000'000;
  Zipf zipf(kKeys, 1.1, 42);
  SpaceSaving summary(10'000);
  absl::flat_hash_map<std::string, uint64_t> exact;
  for (size_t i = 0; i < kSamples; ++i) {
    const std::string key = Key(zipf.Next());
    summary.Add(key);
    ++exact[key];
  }
  ExpectBounds(summary, exact, kSamples);
  std::vector<std::pair<uint64_t, std::string>> truth;
  for (const auto& [key, n] : exact) truth.emplace_back(n, key);
  std::sort(truth.rbegin(), truth.rend());
  const auto top = summary.Top(10);
  ASSERT_EQ(top.size(), 10u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(top[i].key, truth[i].second) << "rank " << i;
  EXPECT_EQ(summary.size(), 10'000u);  // memory fixed by capacity
}

TEST(SpaceSaving, MergeOfThreeKeepsTheBoundsAndTheTopTen) {
  const size_t kKeys = 100'000;
  absl::flat_hash_map<std::string, uint64_t> exact;
  SpaceSaving merged(5'000);
  uint64_t total = 0;
  for (uint64_t server = 0; server < 3; ++server) {
    Zipf zipf(kKeys, 1.1, 7 + server);
    SpaceSaving part(5'000);
    for (size_t i = 0; i < 300'000; ++i) {
      const std::string key = Key(zipf.Next());
      part.Add(key);
      ++exact[key];
      ++total;
    }
    merged.Merge(part);
  }
  EXPECT_EQ(merged.total(), total);
  EXPECT_LE(merged.size(), 5'000u);
  ExpectBounds(merged, exact, total);
  std::vector<std::pair<uint64_t, std::string>> truth;
  for (const auto& [key, n] : exact) truth.emplace_back(n, key);
  std::sort(truth.rbegin(), truth.rend());
  const auto top = merged.Top(10);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(top[i].key, truth[i].second) << "rank " << i;
}

TEST(SpaceSaving, CompactKeepsAnUpperBoundForDroppedKeys) {
  SpaceSaving s(100);
  for (int i = 0; i < 50; ++i) s.Add(Key(i), static_cast<uint64_t>(i + 1));
  const SpaceSaving small = s.Compact(10);
  EXPECT_EQ(small.size(), 10u);
  EXPECT_EQ(small.Top(1)[0].key, Key(49));
  // Key 30 (31 counts) was dropped: the compacted summary's bound covers it.
  EXPECT_GE(small.Estimate(Key(30)).count, 31u);
}

TEST(SpaceSaving, PrefixSelectsOneRule) {
  SpaceSaving s(10);
  s.Add("rule|a|x", 5);
  s.Add("rule|b|x", 9);
  s.Add("rule|a|y", 2);
  const auto top = s.Top(10, "rule|a|");
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].key, "rule|a|x");
}

TEST(SpaceSaving, CopiesAreIndependent) {
  SpaceSaving s(4);
  s.Add("a", 2);
  SpaceSaving copy = s;
  copy.Add("a", 5);
  copy.Add("b");
  EXPECT_EQ(s.Estimate("a").count, 2u);
  EXPECT_EQ(copy.Estimate("a").count, 7u);
  EXPECT_EQ(copy.Top(1)[0].key, "a");
}

}  // namespace
}  // namespace sluice::stats
