// String helpers: concatenation over every string type this code base meets, and HTTP's
// whitespace trimming. Debian's Abseil is built with
// its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW=0), so absl::StrCat does not take
// std::string_view, which the code base uses; Cat takes both, C strings, std::string and
// integers.
#pragma once

#include <charconv>
#include <concepts>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace sluice {

namespace strings_internal {
inline void AppendPiece(std::string& out, std::string_view s) { out.append(s); }
inline void AppendPiece(std::string& out, absl::string_view s) { out.append(s.data(), s.size()); }
inline void AppendPiece(std::string& out, const char* s) { out.append(s); }
inline void AppendPiece(std::string& out, const std::string& s) { out.append(s); }
template <std::integral T>
requires(!std::same_as<T, char> && !std::same_as<T, bool>) void AppendPiece(std::string& out, T n) {
  out.append(std::to_string(n));
}
}  // namespace strings_internal

template <typename... Pieces>
std::string Cat(const Pieces&... pieces) {
  std::string out;
  (strings_internal::AppendPiece(out, pieces), ...);
  return out;
}

// Appends `n` in decimal, without a temporary string. (Appending a [first, last) pair of char
// pointers would pick std::string's iterator overload, which builds one.)
template <std::integral T>
requires(!std::same_as<T, char> && !std::same_as<T, bool>) void AppendDecimal(std::string& out,
                                                                              T n) {
  char digits[24];
  const char* end = std::to_chars(digits, digits + sizeof(digits), n).ptr;
  out.append(digits, static_cast<size_t>(end - digits));
}

// Whether `a` and `b` are equal ignoring ASCII case: HTTP field names, schemes, tokens.
inline bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// `s` without the spaces and tabs around it: HTTP's optional whitespace (RFC 9110 §5.6.3) around
// a field value or a list element.
inline std::string_view TrimOws(std::string_view s) {
  constexpr std::string_view kOws = " \t";
  const size_t first = s.find_first_not_of(kOws);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(kOws) - first + 1);
}

}  // namespace sluice
