// The Redis client's circuit breaker (src/store/redis/circuit_breaker.h) as the pure state
// machine it is: times are numbers the test passes, no Redis, no sleeping.
#include <gtest/gtest.h>

#include "store/redis/circuit_breaker.h"

namespace sluice::redis {
namespace {

using std::chrono::milliseconds;
using TimePoint = CircuitBreaker::TimePoint;

constexpr CircuitBreaker::Options kOptions{
    .min_wait = milliseconds(25), .probe_initial = milliseconds(10), .probe_max = milliseconds(80)};

TimePoint At(int ms) { return TimePoint{} + milliseconds(ms); }

// Verifies a request that timed out after a fair wait opens the circuit, once.
TEST(CircuitBreakerTest, OpensOnATimeoutAfterAFairWait) {
  CircuitBreaker b(kOptions);
  EXPECT_FALSE(b.open());
  EXPECT_EQ(b.next_probe(), TimePoint::max());
  EXPECT_TRUE(b.RequestTimedOut(At(100), milliseconds(50)));
  EXPECT_TRUE(b.open());
  EXPECT_FALSE(b.RequestTimedOut(At(101), milliseconds(50))) << "already open";
  EXPECT_FALSE(b.NoConnection(At(102)));
}

// Verifies a request that timed out before min_wait (its check spent its budget on other hops)
// leaves the circuit closed.
TEST(CircuitBreakerTest, AShortWaitIsNoEvidence) {
  CircuitBreaker b(kOptions);
  EXPECT_FALSE(b.RequestTimedOut(At(100), milliseconds(24)));
  EXPECT_FALSE(b.open());
  EXPECT_TRUE(b.RequestTimedOut(At(100), milliseconds(25)));
}

// Verifies no connection opens it, and any answer closes it.
TEST(CircuitBreakerTest, NoConnectionOpensAndAnAnswerCloses) {
  CircuitBreaker b(kOptions);
  EXPECT_FALSE(b.Answered()) << "closed already";
  EXPECT_TRUE(b.NoConnection(At(0)));
  EXPECT_TRUE(b.open());
  EXPECT_TRUE(b.Answered());
  EXPECT_FALSE(b.open());
  EXPECT_EQ(b.next_probe(), TimePoint::max());
}

// Verifies the probe schedule: due probe_initial after opening, then after doubling intervals
// capped at probe_max; never while closed; and it starts over after the circuit closes.
TEST(CircuitBreakerTest, ProbesBackOffExponentiallyUpToTheCap) {
  CircuitBreaker b(kOptions);
  EXPECT_FALSE(b.ShouldProbe(At(1000))) << "closed: no probe";
  ASSERT_TRUE(b.NoConnection(At(0)));
  EXPECT_EQ(b.next_probe(), At(10));
  EXPECT_FALSE(b.ShouldProbe(At(9)));
  int now = 10;
  for (int interval : {20, 40, 80, 80, 80}) {
    ASSERT_TRUE(b.ShouldProbe(At(now))) << now;
    EXPECT_FALSE(b.ShouldProbe(At(now))) << "one probe per due time";
    EXPECT_EQ(b.next_probe(), At(now + interval));
    now += interval;
  }
  // A late timer: the next interval counts from when the probe actually went.
  ASSERT_TRUE(b.ShouldProbe(At(now + 500)));
  EXPECT_EQ(b.next_probe(), At(now + 500 + 80));

  ASSERT_TRUE(b.Answered());
  EXPECT_FALSE(b.ShouldProbe(At(100000)));
  ASSERT_TRUE(b.RequestTimedOut(At(200000), milliseconds(30)));
  EXPECT_EQ(b.next_probe(), At(200010)) << "backoff starts over";
}

// Verifies time going backwards (a caller's clocks disagreeing) neither probes early nor breaks
// the state.
TEST(CircuitBreakerTest, TimeGoingBackwardsIsHarmless) {
  CircuitBreaker b(kOptions);
  ASSERT_TRUE(b.NoConnection(At(1000)));
  EXPECT_FALSE(b.ShouldProbe(At(500)));
  EXPECT_TRUE(b.open());
  EXPECT_TRUE(b.ShouldProbe(At(1010)));
}

}  // namespace
}  // namespace sluice::redis
