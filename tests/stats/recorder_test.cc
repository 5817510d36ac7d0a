#include "stats/recorder.h"

#include <string>
#include <thread>
#include <vector>

#include "core/time.h"
#include "gtest/gtest.h"
#include "rules/rule.h"
#include "rules/rule_set.h"

namespace sluice::stats {
namespace {

constexpr Micros kT0 = 1'764'000'000 * kMicrosPerSecond;

void Check(Recorder& r, Micros now, Result result, std::string_view rule, std::string key,
           bool rejected, Micros latency = 100) {
  RuleHit hit{rule, &key, rejected, true};
  r.Record(now, result, false, false, latency, std::span<const RuleHit>(&hit, 1));
}

TEST(Recorder, WindowCountsEveryResult) {
  ManualClock clock(kT0);
  Recorder r(clock, {.top_capacity = 100});
  Check(r, kT0, Result::kAllowed, "a", "rule|a|k", false);
  Check(r, kT0, Result::kRejected, "a", "rule|a|k", true);
  r.Record(kT0, Result::kBlocked, false, false, 10, {});
  r.Record(kT0, Result::kAllowed, true, false, 10, {});      // a shadow rejection
  r.Record(kT0, Result::kAllowed, false, true, 10, {});      // fail_open
  r.Record(kT0, Result::kUnavailable, false, true, 10, {});  // fail_closed
  const Counts c = r.Window(60);
  EXPECT_EQ(c.requests, 6u);
  EXPECT_EQ(c.allowed, 3u);
  EXPECT_EQ(c.rejected, 1u);
  EXPECT_EQ(c.blocked, 1u);
  EXPECT_EQ(c.shadow_rejected, 1u);
  EXPECT_EQ(c.errors, 2u);
  ASSERT_TRUE(c.by_rule.contains("a"));
  EXPECT_EQ(c.by_rule.at("a").allowed, 1u);
  EXPECT_EQ(c.by_rule.at("a").rejected, 1u);
}

TEST(Recorder, WindowsSlideBySecond) {
  ManualClock clock(kT0);
  Recorder r(clock, {});
  for (int s = 0; s < 120; ++s) {
    clock.Set(kT0 + s * kMicrosPerSecond);
    r.Record(clock.NowMicros(), Result::kAllowed, false, false, 10, {});
    if (s % 7 == 0) r.Tick();
  }
  EXPECT_EQ(r.Window(60).requests, 60u);
  EXPECT_EQ(r.Window(300).requests, 120u);
  EXPECT_EQ(r.Window(1).requests, 1u);
  clock.Set(kT0 + 3 * 3600 * kMicrosPerSecond);  // an hour and more later: all gone
  EXPECT_EQ(r.Window(3600).requests, 0u);
  const auto seconds =
      r.Seconds(clock.NowMicros() / kMicrosPerSecond - 9, clock.NowMicros() / kMicrosPerSecond);
  EXPECT_EQ(seconds.size(), 10u);
}

TEST(Recorder, LatencyQuantilesFromTheHistogram) {
  ManualClock clock(kT0);
  Recorder r(clock, {});
  for (int i = 0; i < 990; ++i) r.Record(kT0, Result::kAllowed, false, false, 200, {});
  for (int i = 0; i < 10; ++i) r.Record(kT0, Result::kAllowed, false, false, 50'000, {});
  const Counts c = r.Window(60);
  EXPECT_NEAR(c.LatencyQuantileMs(0.5), 0.2, 0.2 * 0.2);  // buckets are ~19 % wide
  EXPECT_GT(c.LatencyQuantileMs(0.999), 40.0);
  EXPECT_LT(c.LatencyQuantileMs(0.99), 0.3);
}

TEST(Recorder, LatencyBucketsAreContiguous) {
  for (size_t b = 0; b + 1 < kLatencyBuckets; ++b) {
    EXPECT_EQ(LatencyBucket(LatencyBucketLow(b)), b);
    EXPECT_EQ(LatencyBucket(LatencyBucketLow(b + 1) - 1), b);
  }
}

TEST(Recorder, CountsExactlyFromManyThreads) {
  ManualClock clock(kT0);
  Recorder r(clock, {.top_capacity = 1000});
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20'000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        if (i % 1000 == 0 && t == 0) r.Tick();  // ticks race the checks
        Check(r, kT0 + (i % 3) * kMicrosPerSecond,
              i % 4 == 0 ? Result::kRejected : Result::kAllowed, "hot",
              "rule|hot|k" + std::to_string(i % 10), i % 4 == 0);
      }
    });
  }
  for (auto& th : threads) th.join();
  clock.Set(kT0 + 2 * kMicrosPerSecond);
  const Counts c = r.Window(60);
  EXPECT_EQ(c.requests, uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(c.rejected, uint64_t{kThreads} * kPerThread / 4);
  const SpaceSaving top = r.Top(Ranking::kRequests, 1);
  EXPECT_EQ(top.total(), uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(top.Top(1)[0].count, uint64_t{kThreads} * kPerThread / 10);
  EXPECT_EQ(r.Top(Ranking::kRejected, 1).total(), uint64_t{kThreads} * kPerThread / 4);
}

TEST(Recorder, TopCoversTheWindowInMinutes) {
  ManualClock clock(kT0);
  Recorder r(clock, {.top_capacity = 600});
  // Minute 0: key a 50 times; minute 1: key b 30 times; minute 5: key c 10 times.
  for (int i = 0; i < 50; ++i)
    Check(r, clock.NowMicros(), Result::kRejected, "x", "rule|x|a", true);
  clock.Set(kT0 + 60 * kMicrosPerSecond);
  r.Tick();
  for (int i = 0; i < 30; ++i)
    Check(r, clock.NowMicros(), Result::kRejected, "x", "rule|x|b", true);
  clock.Set(kT0 + 5 * 60 * kMicrosPerSecond);
  r.Tick();
  for (int i = 0; i < 10; ++i)
    Check(r, clock.NowMicros(), Result::kRejected, "x", "rule|x|c", true);
  const auto one = r.Top(Ranking::kRejected, 1).Top(10);
  ASSERT_EQ(one.size(), 1u);  // the current minute and the one before (empty)
  EXPECT_EQ(one[0].key, "rule|x|c");
  const auto all = r.Top(Ranking::kRejected, 60).Top(10);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].key, "rule|x|a");
  EXPECT_EQ(all[0].count, 50u);
  EXPECT_EQ(r.Minutes(0).size(), 3u);
  clock.Set(kT0 + 2 * 3600 * kMicrosPerSecond);
  r.Tick();
  EXPECT_EQ(r.Top(Ranking::kRejected, 60).size(), 0u);
}

TEST(Recorder, DecodesCounterKeys) {
  rules::Rule rule{
      .id = "per|user",
      .key = {rules::AttributeRef{.attribute = rules::Attribute::kUserId}},
      .limit = *Limit::Create(
          {.algorithm = Algorithm::kFixedWindow, .limit = 10, .window = 60 * kMicrosPerSecond})};
  rules::RequestAttributes attrs;
  attrs.user_id = "alice=1|%";
  std::string key;
  ASSERT_TRUE(rules::RuleSet::CounterKey(rule, attrs, &key));
  EXPECT_TRUE(key.starts_with(RuleKeyPrefix("per|user")));
  const DecodedKey decoded = DecodeCounterKey(key);
  EXPECT_EQ(decoded.rule_id, "per|user");
  ASSERT_EQ(decoded.attributes.size(), 1u);
  EXPECT_EQ(decoded.attributes[0].first, "user_id");
  EXPECT_EQ(decoded.attributes[0].second, "alice=1|%");
}

TEST(Recorder, DecodesEnvoyKeysWithATildeInAName) {
  const DecodedKey shared = DecodeCounterKey("envoy|dom|fixed_window|60000000|a~b=v|path~%2Fapi*");
  EXPECT_EQ(shared.rule_id, "dom");
  ASSERT_EQ(shared.attributes.size(), 2u);
  EXPECT_EQ(shared.attributes[0], (std::pair<std::string, std::string>{"a~b", "v"}));
  EXPECT_EQ(shared.attributes[1], (std::pair<std::string, std::string>{"path", "/api*"}));
}

TEST(Recorder, LongKeysAreCutAndStayApart) {
  ManualClock clock(kT0);
  Recorder r(clock, {.top_capacity = 100});
  const std::string base = "rule|x|fixed_window|60000000|user_id=" + std::string(1000, 'a');
  Check(r, kT0, Result::kAllowed, "x", base + "1", false);
  Check(r, kT0, Result::kAllowed, "x", base + "2", false);
  const auto top = r.Top(Ranking::kRequests, 1).Top(10);
  ASSERT_EQ(top.size(), 2u);
  for (const auto& e : top) {
    EXPECT_EQ(e.key.size(), kMaxKeyBytes - 20 + 5 + 16);
    EXPECT_NE(e.key.find("~cut:"), std::string::npos);
  }
  EXPECT_NE(top[0].key, top[1].key);
}

}  // namespace
}  // namespace sluice::stats
