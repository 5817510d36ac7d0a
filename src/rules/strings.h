// Small string helpers for the rules library. Debian's Abseil is built with its own
// absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW=0), so absl's string functions and
// string-keyed maps do not take the std::string_view this code base uses; these do.
// Internal to the rules library.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "base/strings.h"

namespace sluice::rules::internal {

// Transparent hashing, so that maps keyed by std::string are looked up with a std::string_view
// without building a std::string per lookup.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return absl::Hash<std::string_view>{}(s); }
};
struct StringEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
};
template <typename V>
using StringMap = absl::flat_hash_map<std::string, V, StringHash, StringEq>;
using StringSet = absl::flat_hash_set<std::string, StringHash, StringEq>;

inline char AsciiLower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }
inline char AsciiUpper(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c; }
std::string AsciiLower(std::string_view s);
std::string AsciiUpper(std::string_view s);

inline absl::string_view ToAbsl(std::string_view s) { return {s.data(), s.size()}; }

using ::sluice::Cat;               // base/strings.h
using ::sluice::EqualsIgnoreCase;  // base/strings.h

}  // namespace sluice::rules::internal
