#include "yaml/values.h"

#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/strings.h"

namespace sluice::yaml {

namespace {

constexpr int64_t kMicrosPerMilli = 1'000;
constexpr int64_t kMicrosPerSecond = 1'000'000;

struct DurationUnit {
  std::string_view suffix;
  int64_t micros;
};
// "ms" before "m" and "s": suffixes are tried in order.
constexpr DurationUnit kDurationUnits[] = {
    {"ms", kMicrosPerMilli},         {"s", kMicrosPerSecond},
    {"m", 60 * kMicrosPerSecond},    {"h", 3600 * kMicrosPerSecond},
    {"d", 86400 * kMicrosPerSecond}, {"w", 7 * 86400 * kMicrosPerSecond},
};

bool IsDigits(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

// Non-negative decimal digits without overflow.
bool DigitsToInt(std::string_view digits, int64_t* out) {
  int64_t v = 0;
  for (char c : digits) {
    const int d = c - '0';
    if (v > (std::numeric_limits<int64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

}  // namespace

absl::StatusOr<int64_t> ParseDuration(std::string_view text) {
  for (const DurationUnit& unit : kDurationUnits) {
    if (text.size() <= unit.suffix.size() || !text.ends_with(unit.suffix)) continue;
    const std::string_view digits = text.substr(0, text.size() - unit.suffix.size());
    if (!IsDigits(digits)) break;
    int64_t n = 0;
    if (!DigitsToInt(digits, &n) || n > std::numeric_limits<int64_t>::max() / unit.micros) {
      return absl::InvalidArgumentError(Cat("duration '", text, "' is too long"));
    }
    return n * unit.micros;
  }
  return absl::InvalidArgumentError(
      Cat("invalid duration '", text,
          "': expected an integer and a unit (ms, s, m, h, d, w), e.g. 500ms or 1h"));
}

absl::StatusOr<int64_t> ParseRfc3339(std::string_view text) {
  absl::Time t;
  std::string err;
  // RFC3339_full ("%Y-%m-%d%ET%H:%M:%E*S%Ez") takes 'T'/'t', fractions, and 'Z' or an offset.
  // Reject the surrounding spaces absl would skip: a timestamp is one token.
  const bool trimmed = !text.empty() && text.front() != ' ' && text.back() != ' ';
  if (!trimmed ||
      !absl::ParseTime(absl::RFC3339_full, absl::string_view(text.data(), text.size()), &t, &err)) {
    return absl::InvalidArgumentError(
        Cat("invalid timestamp '", text, "': expected RFC 3339, e.g. 2026-12-31T00:00:00Z"));
  }
  return absl::ToUnixMicros(t);
}

absl::StatusOr<int64_t> ParseInteger(std::string_view text) {
  const bool negative = !text.empty() && text.front() == '-';
  const std::string_view digits = negative ? text.substr(1) : text;
  int64_t v = 0;
  // INT64_MIN has no positive counterpart: its digits overflow int64_t.
  if (negative && digits == "9223372036854775808") return std::numeric_limits<int64_t>::min();
  if (!IsDigits(digits) || !DigitsToInt(digits, &v)) {
    return absl::InvalidArgumentError(Cat("expected an integer, got '", text, "'"));
  }
  return negative ? -v : v;
}

bool IsValidUtf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    // The lead byte says how many continuation bytes follow and bounds the second one, which
    // rules out overlong forms (E0, F0), surrogates (ED) and code points past U+10FFFF (F4).
    int more = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      more = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      more = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      more = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;  // a continuation byte first, C0/C1 (overlong), or F5..FF
    }
    if (end - p <= more) return false;
    if (p[1] < lo || p[1] > hi) return false;
    for (int i = 2; i <= more; ++i) {
      if (p[i] < 0x80 || p[i] > 0xBF) return false;
    }
    p += more + 1;
  }
  return true;
}

bool HasControlCharacter(std::string_view text) {
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7F) return true;
  }
  return false;
}

}  // namespace sluice::yaml
