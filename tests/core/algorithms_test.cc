// Table-driven bound checks of the six algorithms of CONTRACT §4 over many
// (algorithm, limit, window, burst, cost) combinations, on a manual microsecond clock.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/algorithm_state.h"
#include "core/int_math.h"
#include "tests/core/owned_state.h"

namespace sluice {
namespace {

using testing::MakeLimit;
using testing::OwnedState;

constexpr Micros kMs = kMicrosPerMilli;
constexpr Micros kSecond = kMicrosPerSecond;
constexpr Micros kDay = 86400 * kSecond;
// A realistic "now": 2025-11-24T16:00:00Z.
constexpr Micros kNow = int64_t{1764000000} * kSecond;

struct Case {
  Algorithm algorithm;
  int64_t limit;
  Micros window;
  int64_t burst;  // 0: default (= limit)
  int64_t cost;
};

std::string Name(const Case& c) {
  return std::string(AlgorithmName(c.algorithm)) + " limit=" + std::to_string(c.limit) +
         " window=" + std::to_string(c.window) + "us burst=" + std::to_string(c.burst) +
         " cost=" + std::to_string(c.cost);
}

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  for (Algorithm a : kAllAlgorithms) {
    for (int64_t limit : {1, 3, 7, 10, 100, 997}) {
      for (Micros window :
           {1 * kMs, 1 * kSecond, 7 * kSecond, 60 * kSecond, 3600 * kSecond, kDay, 365 * kDay}) {
        for (int64_t burst_factor : {0, 2}) {
          if (burst_factor != 0 && !UsesBurst(a)) continue;
          for (int64_t cost : {1, 2, 3}) {
            const int64_t burst = burst_factor * limit;
            const int64_t capacity = burst == 0 ? limit : burst;
            if (cost > capacity) continue;
            cases.push_back({a, limit, window, burst, cost});
          }
        }
      }
    }
  }
  return cases;
}

// Start of a window, so that window algorithms see one whole window from the first request.
Micros AlignedStart(Micros window) {
  return static_cast<Micros>(int_math::FloorDiv(kNow, window)) * window;
}

// Verifies that from empty, exactly floor(capacity / cost) requests are admitted at one
// instant, where capacity is the limit (windows) or the burst (buckets).
TEST(AlgorithmsTest, AdmitsExactlyCapacityFromEmpty) {
  for (const Case& c : AllCases()) {
    SCOPED_TRACE(Name(c));
    const Limit limit = MakeLimit(c.algorithm, c.limit, c.window, c.burst);
    OwnedState state(c.algorithm);
    const Micros t0 = AlignedStart(c.window);
    const int64_t expected = limit.max_cost() / c.cost;
    int64_t admitted = 0;
    for (int64_t i = 0; i < expected + 5; ++i) {
      Decision d = state.Admit(limit, t0, c.cost);
      EXPECT_EQ(d.limit, c.limit);
      if (d.allowed) {
        ++admitted;
        EXPECT_EQ(d.remaining, limit.max_cost() - admitted * c.cost);
        EXPECT_EQ(d.retry_after, 0);
      } else {
        EXPECT_GT(d.retry_after, 0);
        EXPECT_FALSE(d.cost_exceeds_limit);
      }
    }
    EXPECT_EQ(admitted, expected);
  }
}

// Verifies that a request at now + retry_after is admitted and one microsecond earlier is not.
TEST(AlgorithmsTest, RetryAfterIsExact) {
  for (const Case& c : AllCases()) {
    SCOPED_TRACE(Name(c));
    const Limit limit = MakeLimit(c.algorithm, c.limit, c.window, c.burst);
    OwnedState state(c.algorithm);
    // Start mid-window, and spread the requests, so the retry is not trivially a window edge.
    Micros now = AlignedStart(c.window) + c.window / 3;
    Decision d;
    for (int i = 0; i < 10000; ++i) {
      d = state.Admit(limit, now, c.cost);
      if (!d.allowed) break;
      now += c.window / (4 * c.limit);  // four times the refill rate
    }
    ASSERT_FALSE(d.allowed);
    ASSERT_GT(d.retry_after, 0);
    EXPECT_FALSE(state.WouldAdmit(limit, now + d.retry_after - 1, c.cost));
    EXPECT_TRUE(state.WouldAdmit(limit, now + d.retry_after, c.cost));
  }
}

// Verifies charging into debt (OnReject::kChargeAnyway, CONTRACT §4): a rejected cost is charged
// all the same; a cost-0 read then rejects, its retry_after is exact (admitted at now +
// retry_after, not a microsecond earlier), and the forced charge's own retry_after is the same
// moment. Without kChargeAnyway a rejection leaves the state untouched.
TEST(AlgorithmsTest, ChargeAnywayGoesIntoDebtAndRetryAfterIsExact) {
  for (const Case& c : AllCases()) {
    SCOPED_TRACE(Name(c));
    const Limit limit = MakeLimit(c.algorithm, c.limit, c.window, c.burst);
    OwnedState state(c.algorithm);
    Micros now = AlignedStart(c.window) + c.window / 3;
    while (state.Admit(limit, now, c.cost).allowed) {
    }
    // At (or just below) the limit: a plain rejection changes nothing...
    const bool could_read = state.WouldAdmit(limit, now, 0);
    EXPECT_FALSE(state.Admit(limit, now, c.cost).allowed);
    EXPECT_EQ(state.WouldAdmit(limit, now, 0), could_read);
    // ...a forced one goes into debt.
    const Decision forced = state.Admit(limit, now, c.cost, OnReject::kChargeAnyway);
    EXPECT_FALSE(forced.allowed);
    EXPECT_FALSE(forced.cost_exceeds_limit);
    EXPECT_EQ(forced.remaining, 0);
    ASSERT_GT(forced.retry_after, 0);
    const Decision read = state.Admit(limit, now, 0);
    EXPECT_FALSE(read.allowed) << "in debt";
    EXPECT_EQ(read.remaining, 0);
    ASSERT_GT(read.retry_after, 0);
    EXPECT_FALSE(state.WouldAdmit(limit, now + read.retry_after - 1, 0));
    EXPECT_TRUE(state.WouldAdmit(limit, now + read.retry_after, 0));
    EXPECT_LE(read.retry_after, forced.retry_after);
    EXPECT_GE(forced.reset_after, read.reset_after);
  }
}

// Verifies that a forced cost far beyond the limit saturates the debt instead of wrapping, and
// is flagged as a cost no request could ever be admitted with.
TEST(AlgorithmsTest, DebtIsBounded) {
  for (Algorithm a : kAllAlgorithms) {
    SCOPED_TRACE(AlgorithmName(a));
    const Limit limit = MakeLimit(a, 7, kSecond);
    OwnedState state(a);
    Decision last;
    for (int i = 0; i < 3; ++i) {
      last = state.Admit(limit, kNow, Limit::kMaxCount, OnReject::kChargeAnyway);
      EXPECT_FALSE(last.allowed);
      EXPECT_TRUE(last.cost_exceeds_limit);
      EXPECT_EQ(last.retry_after, 0);
      EXPECT_EQ(last.remaining, 0);
      EXPECT_GT(last.reset_after, 0);
    }
    const Decision read = state.Admit(limit, kNow, 0);
    EXPECT_FALSE(read.allowed);
    EXPECT_GT(read.retry_after, 0);
    if (UsesBurst(a)) {
      // 2^52 units of 1/7 s each way: about 20 years of debt at most.
      EXPECT_LE(read.retry_after, static_cast<Micros>(int_math::CeilDiv(limit.max_level_units(),
                                                                        limit.units_per_micro())));
    } else {
      EXPECT_LE(read.retry_after, 2 * kSecond);  // a window's debt ends with the windows
    }
  }
}

// Verifies that reset_after is when the full capacity is back: at now + reset_after a fresh
// key's worth of requests is admitted, one microsecond earlier it is not.
TEST(AlgorithmsTest, ResetAfterIsWhenFullCapacityIsBack) {
  for (const Case& c : AllCases()) {
    SCOPED_TRACE(Name(c));
    const Limit limit = MakeLimit(c.algorithm, c.limit, c.window, c.burst);
    OwnedState state(c.algorithm);
    const Micros now = AlignedStart(c.window) + c.window / 2;
    Decision d = state.Admit(limit, now, c.cost);
    ASSERT_TRUE(d.allowed);
    ASSERT_GT(d.reset_after, 0);
    const int64_t full = limit.max_cost();
    EXPECT_EQ(state.CountAdmits(limit, now + d.reset_after, 1, full + 1), full);
    EXPECT_LT(state.CountAdmits(limit, now + d.reset_after - 1, 1, full + 1), full);
  }
}

// Verifies that `remaining` is exactly how many more cost-1 requests would be admitted now.
TEST(AlgorithmsTest, RemainingCountsWhatWouldStillBeAdmitted) {
  for (const Case& c : AllCases()) {
    if (c.limit > 100) continue;  // keeps the probing quadratic cost small
    SCOPED_TRACE(Name(c));
    const Limit limit = MakeLimit(c.algorithm, c.limit, c.window, c.burst);
    OwnedState state(c.algorithm);
    Micros now = AlignedStart(c.window);
    for (int i = 0; i < 3 * c.limit; ++i) {
      Decision d = state.Admit(limit, now, c.cost);
      EXPECT_EQ(d.remaining, state.CountAdmits(limit, now, 1, limit.max_cost() + 1)) << i;
      now += c.window / (2 * c.limit) + 1;
    }
  }
}

// Verifies that buckets refill at exactly limit/window: after draining, k tokens are back at
// ceil(k * window / limit) and not a microsecond earlier.
TEST(AlgorithmsTest, BucketsRefillAtExactRate) {
  for (const Case& c : AllCases()) {
    if (!UsesBurst(c.algorithm) || c.cost != 1) continue;
    SCOPED_TRACE(Name(c));
    const Limit limit = MakeLimit(c.algorithm, c.limit, c.window, c.burst);
    OwnedState state(c.algorithm);
    const Micros t0 = kNow;
    while (state.Admit(limit, t0, 1).allowed) {
    }
    for (int64_t k : {int64_t{1}, int64_t{2}, c.limit / 2 + 1, c.limit}) {
      k = std::min(k, limit.burst());
      const Micros at =
          static_cast<Micros>(int_math::CeilDiv(static_cast<__int128>(k) * c.window, c.limit));
      EXPECT_EQ(state.CountAdmits(limit, t0 + at, 1, limit.burst() + 1), k) << "k=" << k;
      EXPECT_EQ(state.CountAdmits(limit, t0 + at - 1, 1, limit.burst() + 1), k - 1) << "k=" << k;
    }
  }
}

// Verifies that window algorithms admit the full limit again once the window has passed, and
// that fixed_window windows are aligned to the Unix epoch.
TEST(AlgorithmsTest, WindowsComeBackAfterAWindow) {
  for (const Case& c : AllCases()) {
    if (UsesBurst(c.algorithm)) continue;
    SCOPED_TRACE(Name(c));
    const Limit limit = MakeLimit(c.algorithm, c.limit, c.window, c.burst);
    OwnedState state(c.algorithm);
    const Micros t0 = AlignedStart(c.window) + c.window / 2;
    while (state.Admit(limit, t0, c.cost).allowed) {
    }
    const int64_t full = c.limit / c.cost;
    if (c.algorithm == Algorithm::kFixedWindow) {
      EXPECT_EQ(state.CountAdmits(limit, AlignedStart(c.window) + c.window, c.cost, full + 1),
                full);
      EXPECT_EQ(state.CountAdmits(limit, AlignedStart(c.window) + c.window - 1, c.cost, 1), 0);
    } else {
      EXPECT_EQ(state.CountAdmits(limit, t0 + 2 * c.window, c.cost, full + 1), full);
    }
  }
}

// Verifies that cost 0 reads without consuming and is never rejected, and that a cost above
// what the limit could ever admit is rejected as such, with no retry_after.
TEST(AlgorithmsTest, CostZeroReadsAndOversizedCostIsFlagged) {
  for (Algorithm a : kAllAlgorithms) {
    SCOPED_TRACE(AlgorithmName(a));
    const Limit limit = MakeLimit(a, 5, kSecond, UsesBurst(a) ? 8 : 0);
    OwnedState state(a);
    for (int i = 0; i < 20; ++i) {
      Decision d = state.Admit(limit, kNow, 0);
      EXPECT_TRUE(d.allowed);
      EXPECT_EQ(d.remaining, limit.max_cost());
    }
    while (state.Admit(limit, kNow, 1).allowed) {
    }
    Decision read = state.Admit(limit, kNow, 0);
    EXPECT_TRUE(read.allowed);
    EXPECT_EQ(read.remaining, 0);
    EXPECT_GT(read.reset_after, 0);

    OwnedState fresh(a);
    Decision big = fresh.Admit(limit, kNow, limit.max_cost() + 1);
    EXPECT_FALSE(big.allowed);
    EXPECT_TRUE(big.cost_exceeds_limit);
    EXPECT_EQ(big.retry_after, 0);
    EXPECT_EQ(fresh.CountAdmits(limit, kNow, 1, 100), limit.max_cost());  // charged nothing
  }
}

// Verifies that a refund right after a charge restores exactly the state before it.
TEST(AlgorithmsTest, RefundUndoesACharge) {
  for (const Case& c : AllCases()) {
    if (c.limit > 100) continue;
    SCOPED_TRACE(Name(c));
    const Limit limit = MakeLimit(c.algorithm, c.limit, c.window, c.burst);
    OwnedState state(c.algorithm);
    Micros now = AlignedStart(c.window) + 1;
    ASSERT_TRUE(state.Admit(limit, now, c.cost).allowed);
    now += c.window / (3 * c.limit) + 1;
    const int64_t before = state.CountAdmits(limit, now, 1, 1000);
    Decision d = state.Admit(limit, now, c.cost);
    if (!d.allowed) continue;
    state.Refund(limit, now, c.cost);
    EXPECT_EQ(state.CountAdmits(limit, now, 1, 1000), before);
  }
}

// Verifies that a clock going backwards never admits beyond the limit and never crashes: after
// exhausting at t, every earlier time is rejected too, with a positive retry_after.
TEST(AlgorithmsTest, ClockGoingBackwardsAdmitsNothingMore) {
  for (const Case& c : AllCases()) {
    if (c.limit > 100) continue;
    SCOPED_TRACE(Name(c));
    const Limit limit = MakeLimit(c.algorithm, c.limit, c.window, c.burst);
    OwnedState state(c.algorithm);
    const Micros t = AlignedStart(c.window) + c.window / 2;
    while (state.Admit(limit, t, c.cost).allowed) {
    }
    for (Micros back : {Micros{1}, c.window / 2, c.window, 10 * c.window, t}) {
      Decision d = state.Admit(limit, t - back, c.cost);
      EXPECT_FALSE(d.allowed) << "back=" << back;
      EXPECT_GT(d.retry_after, 0);
      EXPECT_GE(d.reset_after, 0);
      EXPECT_GE(d.remaining, 0);
    }
  }
}

// Verifies that values near the integer limits neither overflow nor misbehave (UBSan runs this).
TEST(AlgorithmsTest, ExtremeValues) {
  const Micros kFar = int64_t{1} << 62;
  for (Algorithm a : kAllAlgorithms) {
    SCOPED_TRACE(AlgorithmName(a));
    const int64_t big =
        a == Algorithm::kSlidingWindowCounter ? Limit::kMaxSlidingCounterLimit : Limit::kMaxCount;
    // Huge limit over a tiny window, and the largest window.
    for (Micros window : {Micros{1}, Micros{kMs}, Limit::kMaxWindow}) {
      auto limit = Limit::Create({.algorithm = a, .limit = big, .window = window});
      if (!limit.ok()) continue;  // too fine-grained for a bucket: refused, not overflowed
      OwnedState state(a);
      for (Micros now : {Micros{0}, kNow, kFar}) {
        Decision d = state.Admit(*limit, now, big);
        EXPECT_GE(d.remaining, 0);
        EXPECT_GE(d.reset_after, 0);
        Decision e = state.Admit(*limit, now, big);
        EXPECT_GE(e.retry_after, 0);
      }
    }
    // A huge limit, then a small cost on top. Buckets count in units of window/gcd per token,
    // so their largest exact limits are round ones: 3.6e12 an hour is 1000 per microsecond.
    const int64_t huge = UsesBurst(a) ? int64_t{3'600'000'000'000} : big;
    auto limit = Limit::Create({.algorithm = a, .limit = huge, .window = 3600 * kSecond});
    ASSERT_TRUE(limit.ok()) << limit.status();
    OwnedState state(a);
    EXPECT_TRUE(state.Admit(*limit, kNow, huge - 1).allowed);
    EXPECT_TRUE(state.Admit(*limit, kNow, 1).allowed);
    Decision d = state.Admit(*limit, kNow, 1);
    EXPECT_FALSE(d.allowed);
    EXPECT_GT(d.retry_after, 0);
    EXPECT_EQ(d.remaining, 0);
  }
}

TEST(LimitTest, RejectsInvalidOptions) {
  EXPECT_FALSE(Limit::Create({.limit = 0, .window = kSecond}).ok());
  EXPECT_FALSE(Limit::Create({.limit = 1, .window = 0}).ok());
  EXPECT_FALSE(Limit::Create({.limit = Limit::kMaxCount + 1, .window = kSecond}).ok());
  EXPECT_FALSE(Limit::Create({.limit = 1, .window = Limit::kMaxWindow + 1}).ok());
  EXPECT_FALSE(Limit::Create({.limit = 1, .window = kSecond, .burst = -1}).ok());
  EXPECT_FALSE(Limit::Create({.algorithm = Algorithm::kSlidingWindowCounter,
                              .limit = Limit::kMaxSlidingCounterLimit + 1,
                              .window = kSecond})
                   .ok());
  auto l = Limit::Create({.algorithm = Algorithm::kTokenBucket, .limit = 10, .window = kSecond});
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->burst(), 10);
  EXPECT_EQ(l->units_per_token(), 100000);  // gcd(10, 1e6) = 10
  EXPECT_EQ(l->units_per_micro(), 1);
}

TEST(LimitTest, AlgorithmNamesRoundTrip) {
  for (Algorithm a : kAllAlgorithms) EXPECT_EQ(ParseAlgorithm(AlgorithmName(a)), a);
  EXPECT_EQ(ParseAlgorithm("token-bucket"), std::nullopt);
}

// Verifies the leaky bucket's shaping delay: requests leave at the drain rate, and the first
// request into an empty queue is not delayed.
TEST(LeakyBucketTest, DelaysSpaceRequestsAtTheDrainRate) {
  const Limit limit = MakeLimit(Algorithm::kLeakyBucket, 10, kSecond, 5);  // 100 ms apart
  OwnedState state(Algorithm::kLeakyBucket);
  for (int i = 0; i < 5; ++i) {
    Decision d = state.Admit(limit, kNow, 1);
    ASSERT_TRUE(d.allowed);
    EXPECT_EQ(d.delay, i * 100 * kMs);
    EXPECT_EQ(d.remaining, 4 - i);
  }
  Decision full = state.Admit(limit, kNow, 1);
  EXPECT_FALSE(full.allowed);
  EXPECT_EQ(full.retry_after, 100 * kMs);
  // 250 ms later 2.5 places have drained: the next request waits for the 2.5 still queued.
  Decision later = state.Admit(limit, kNow + 250 * kMs, 1);
  ASSERT_TRUE(later.allowed);
  EXPECT_EQ(later.delay, 250 * kMs);
  // Once the queue is empty again, no delay.
  OwnedState copy(state);
  EXPECT_EQ(copy.Admit(limit, kNow + 10 * kSecond, 1).delay, 0);
}

// Verifies the sliding window counter's weighting against hand-computed values.
TEST(SlidingWindowCounterTest, WeighsThePreviousWindow) {
  const Limit limit = MakeLimit(Algorithm::kSlidingWindowCounter, 10, kSecond);
  OwnedState state(Algorithm::kSlidingWindowCounter);
  const Micros t0 = AlignedStart(kSecond);
  EXPECT_EQ(state.CountAdmits(limit, t0, 1, 100), 10);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(state.Admit(limit, t0, 1).allowed);
  // 25% into the next window: 10 * 0.75 = 7.5 used, so 2 admitted (2.5 floor).
  EXPECT_EQ(state.CountAdmits(limit, t0 + kSecond + kSecond / 4, 1, 100), 2);
  // 50%: 5 used, 5 admitted.
  EXPECT_EQ(state.CountAdmits(limit, t0 + kSecond + kSecond / 2, 1, 100), 5);
  // Two windows later the old window no longer counts.
  EXPECT_EQ(state.CountAdmits(limit, t0 + 2 * kSecond, 1, 100), 10);
}

}  // namespace
}  // namespace sluice
