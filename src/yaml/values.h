// Scalar formats of Sluice's YAML files, shared by the rules loader and the server config.
// Durations and times are microseconds (sluice::Micros), as int64_t: this library does not depend
// on core.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace sluice::yaml {

// A duration: a decimal integer and a unit, `ms`, `s`, `m`, `h`, `d` or `w` ("1s", "500ms",
// "1h"; CONTRACT §2). No sign, spaces, fractions or compound forms ("1h30m"): one spelling per
// value keeps files greppable. Zero is accepted here; callers that need a positive duration say
// so. Fails on anything else and on values that overflow microseconds.
absl::StatusOr<int64_t> ParseDuration(std::string_view text);

// An RFC 3339 timestamp with a time zone, e.g. "2026-12-31T00:00:00Z" or
// "2026-12-31T01:00:00+01:00", fractional seconds allowed. Returns microseconds since the Unix
// epoch.
absl::StatusOr<int64_t> ParseRfc3339(std::string_view text);

// A decimal integer: optional '-', digits only (no '+', spaces, "0x", "1e3", "1_000").
absl::StatusOr<int64_t> ParseInteger(std::string_view text);

// Whether `text` is well-formed UTF-8 (RFC 3629: no overlong forms, surrogates or code points
// past U+10FFFF). yaml-cpp passes the bytes of a UTF-8 file through unchecked.
bool IsValidUtf8(std::string_view text);

// Whether `text` has a C0 control character (U+0000 to U+001F, NUL included) or DEL (U+007F).
bool HasControlCharacter(std::string_view text);

}  // namespace sluice::yaml
