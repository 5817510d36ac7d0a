// `max_overshoot` (CONTRACT §11): what Overshoot::Parse takes and refuses, the bound For() gives
// for a limit (rounded down), and ToString as Parse takes it back.
#include "core/consistency.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>

namespace sluice {
namespace {

// Verifies the accepted forms: a count, or a percentage up to 100% with at most 4 decimals.
TEST(OvershootTest, ParseAcceptsCountsAndPercentages) {
  auto parse = [](const char* text) {
    std::optional<Overshoot> o = Overshoot::Parse(text);
    EXPECT_TRUE(o.has_value()) << text;
    return o;
  };
  EXPECT_EQ(parse("0"), Overshoot::Count(0));
  EXPECT_EQ(parse("25"), Overshoot::Count(25));
  EXPECT_EQ(parse("1%"), Overshoot::PartsPerMillion(10'000));
  EXPECT_EQ(parse("0.25%"), Overshoot::PartsPerMillion(2'500));
  EXPECT_EQ(parse("100%"), Overshoot::PartsPerMillion(1'000'000));
  EXPECT_EQ(parse("0.0001%"), Overshoot::PartsPerMillion(1));
  // A count and a share are different things even with the same digits.
  EXPECT_NE(Overshoot::Count(1), Overshoot::PartsPerMillion(1));
}

// Verifies what Parse refuses: empty, signs, a fraction without '%', over 100%, more than 4
// decimals, a lone '%', words, and a space before '%'.
TEST(OvershootTest, ParseRefusesMalformedValues) {
  for (const char* bad : {"", "-1", "1.5", "101%", "1.23456%", "%", "abc", "1 %"}) {
    EXPECT_FALSE(Overshoot::Parse(bad).has_value()) << "'" << bad << "'";
  }
}

// Verifies the bound in tokens: a share rounds down, a count stays whatever the limit.
TEST(OvershootTest, ForGivesTheBoundRoundedDown) {
  EXPECT_EQ(Overshoot::Parse("1%")->For(500), 5);
  EXPECT_EQ(Overshoot::Parse("0.5%")->For(100), 0) << "0.5 rounds down";
  EXPECT_EQ(Overshoot::Parse("100%")->For(123), 123);
  EXPECT_EQ(Overshoot::Parse("0.0001%")->For(1'000'000), 1);
  EXPECT_EQ(Overshoot::Count(25).For(1), 25);
  EXPECT_EQ(Overshoot::Count(25).For(1'000'000), 25);
  EXPECT_EQ(Overshoot::Parse("0")->For(1'000'000), 0);
}

// Verifies that ToString gives the form Parse takes, and Parse(ToString(o)) == o.
TEST(OvershootTest, ToStringRoundTrips) {
  for (const char* text : {"0", "25", "1%", "0.25%", "100%", "0.0001%", "1.5%", "12.3456%"}) {
    std::optional<Overshoot> o = Overshoot::Parse(text);
    ASSERT_TRUE(o.has_value()) << text;
    EXPECT_EQ(o->ToString(), text);
    EXPECT_EQ(Overshoot::Parse(o->ToString()), o) << text;
  }
  // Trailing zeros of the fraction are not written.
  EXPECT_EQ(Overshoot::Parse("0.2500%")->ToString(), "0.25%");
  EXPECT_EQ(Overshoot::PartsPerMillion(500'000).ToString(), "50%");
}

// Verifies which algorithms can be leased (docs/algorithms.md, "Leased counting").
TEST(ConsistencyTest, LeasableAlgorithms) {
  EXPECT_TRUE(Leasable(Algorithm::kFixedWindow));
  EXPECT_TRUE(Leasable(Algorithm::kSlidingWindowCounter));
  EXPECT_TRUE(Leasable(Algorithm::kTokenBucket));
  EXPECT_TRUE(Leasable(Algorithm::kGcra));
  EXPECT_FALSE(Leasable(Algorithm::kSlidingWindowLog));
  EXPECT_FALSE(Leasable(Algorithm::kLeakyBucket));
}

}  // namespace
}  // namespace sluice
