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

// Verifies the UTF-8 check: what RFC 3629 allows, and overlong forms, surrogates, code points
// past U+10FFFF, stray continuation bytes and cut sequences refused.
TEST(Utf8Test, WellFormedOnly) {
  for (std::string_view good : {"", "plain", "\xc3\xa9", "\xe2\x80\xa6", "\xf0\x9f\x98\x80",
                                "\xef\xbf\xbd", "\xf4\x8f\xbf\xbf"}) {
    EXPECT_TRUE(IsValidUtf8(good)) << good;
  }
  EXPECT_TRUE(IsValidUtf8(std::string_view("a\0b", 3)));  // NUL is UTF-8; names refuse it
  for (std::string_view bad :
       {"\xff", "\x80", "\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
        "\xf5\x80\x80\x80", "\xc3", "\xe2\x80", "a\xf0\x9f\x98", "\xc3\x28"}) {
    EXPECT_FALSE(IsValidUtf8(bad)) << bad;
  }
}

// Verifies the control characters: C0 (NUL included) and DEL, not the rest.
TEST(Utf8Test, ControlCharacters) {
  EXPECT_TRUE(HasControlCharacter(std::string_view("a\0b", 3)));
  EXPECT_TRUE(HasControlCharacter("tab\there"));
  EXPECT_TRUE(HasControlCharacter("line\n"));
  EXPECT_TRUE(HasControlCharacter("del\x7f"));
  EXPECT_FALSE(HasControlCharacter("plain-id_1.2 with spaces \xc3\xa9"));
}

}  // namespace
}  // namespace sluice::yaml
