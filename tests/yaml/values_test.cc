#include "yaml/values.h"

#include <gtest/gtest.h>

#include <limits>

namespace sluice::yaml {
namespace {

constexpr int64_t kMicrosPerMilli = 1'000;
constexpr int64_t kMicrosPerSecond = 1'000'000;

// Verifies every unit of CONTRACT §2.
TEST(ParseDurationTest, AllUnits) {
  EXPECT_EQ(*ParseDuration("500ms"), 500 * kMicrosPerMilli);
  EXPECT_EQ(*ParseDuration("1s"), kMicrosPerSecond);
  EXPECT_EQ(*ParseDuration("2m"), 120 * kMicrosPerSecond);
  EXPECT_EQ(*ParseDuration("1h"), 3600 * kMicrosPerSecond);
  EXPECT_EQ(*ParseDuration("1d"), 86400 * kMicrosPerSecond);
  EXPECT_EQ(*ParseDuration("1w"), 7 * 86400 * kMicrosPerSecond);
  EXPECT_EQ(*ParseDuration("0s"), 0);
}

// Verifies that anything but integer + unit is an error.
TEST(ParseDurationTest, RejectsOtherForms) {
  for (std::string_view bad : {"", "1", "s", "ms", "1.5s", "-1s", "+1s", "1 s", " 1s", "1S", "1sec",
                               "1us", "1ns", "1h30m", "1y", "0x10s", "1e3ms"}) {
    EXPECT_FALSE(ParseDuration(bad).ok()) << bad;
  }
  EXPECT_EQ(ParseDuration("1.5s").status().message(),
            "invalid duration '1.5s': expected an integer and a unit (ms, s, m, h, d, w), "
            "e.g. 500ms or 1h");
}

// Verifies overflow detection instead of wrapping.
TEST(ParseDurationTest, RejectsOverflow) {
  EXPECT_FALSE(ParseDuration("99999999999999999999s").ok());
  EXPECT_FALSE(ParseDuration("9223372036854775807w").ok());
  EXPECT_EQ(ParseDuration("9223372036854775807w").status().message(),
            "duration '9223372036854775807w' is too long");
}

// Verifies RFC 3339 with Z, offsets and fractions.
TEST(ParseRfc3339Test, Parses) {
  EXPECT_EQ(*ParseRfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(*ParseRfc3339("2026-12-31T00:00:00Z"), int64_t{1798675200} * kMicrosPerSecond);
  EXPECT_EQ(*ParseRfc3339("2026-12-31T01:00:00+01:00"), int64_t{1798675200} * kMicrosPerSecond);
  EXPECT_EQ(*ParseRfc3339("1970-01-01T00:00:00.25Z"), 250 * kMicrosPerMilli);
}

// Verifies that dates without a time or zone, and junk, are rejected.
TEST(ParseRfc3339Test, Rejects) {
  for (std::string_view bad :
       {"", "2026-12-31", "2026-12-31T00:00:00", "2026-12-31 00:00:00Z", "2026-13-01T00:00:00Z",
        "tomorrow", " 2026-12-31T00:00:00Z", "2026-12-31T00:00:00Z "}) {
    EXPECT_FALSE(ParseRfc3339(bad).ok()) << bad;
  }
}

// Verifies the strict integer reading.
TEST(ParseIntegerTest, Strict) {
  EXPECT_EQ(*ParseInteger("0"), 0);
  EXPECT_EQ(*ParseInteger("-7"), -7);
  EXPECT_EQ(*ParseInteger("9223372036854775807"), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(*ParseInteger("-9223372036854775808"), std::numeric_limits<int64_t>::min());
  for (std::string_view bad : {"", "-", "+1", "1.0", "1e3", "0x10", "1_000", " 1", "1 ",
                               "9223372036854775808", "-9223372036854775809", "--1"}) {
    EXPECT_FALSE(ParseInteger(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace sluice::yaml
