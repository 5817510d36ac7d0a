// The parts of a request target the admin and stats APIs read: the path's segments after a
// prefix and the query's parameters, percent-decoded (RFC 3986; '+' is a space in a query).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::http {

struct RequestTarget {
  std::vector<std::string> segments;                       // after the prefix, decoded
  std::vector<std::pair<std::string, std::string>> query;  // decoded, in order
  bool malformed = false;                                  // a bad percent-escape somewhere

  // The first parameter named `name`, or nullptr.
  const std::string* Param(std::string_view name) const;
};

// Parses `target` (path and query) whose path starts with `prefix`.
RequestTarget ParseRequestTarget(std::string_view target, std::string_view prefix);

// Percent-decoding; nullopt for a malformed escape.
std::optional<std::string> PercentDecode(std::string_view in, bool plus_is_space);

}  // namespace sluice::http
