// How one attribute of a request is matched: exact string, glob, IP address or CIDR.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "rules/attributes.h"

namespace sluice::rules {

// A glob where `*` stands for any run of characters (including none), anywhere in the pattern.
// Matching is linear-time in practice: the first and last literal parts are anchored and the
// ones between are found leftmost-first, which is exact for `*`-only globs (no backtracking).
class Glob {
 public:
  // How a backslash in the pattern is read.
  enum class Escapes {
    kBackslash,  // Sluice rules: `\*` is a literal star, `\\` a literal backslash, other `\`s
                 // are an error (so that a future escape cannot change an existing pattern)
    kNone,       // Envoy domain files: every `*` is a wildcard, `\` is an ordinary character
  };

  // Fails on a bad escape. `case_insensitive`: ASCII case is ignored (HTTP methods).
  static absl::StatusOr<Glob> Parse(std::string_view pattern, Escapes escapes,
                                    bool case_insensitive = false);

  // Whether the pattern had an unescaped `*`. A pattern without one matches exactly
  // `literal_prefix()` (the text with escapes removed).
  bool has_wildcard() const { return parts_.size() > 1; }
  // The literal text before the first `*` (lowercased when case-insensitive). Indexes use it.
  const std::string& literal_prefix() const { return parts_.front(); }
  bool case_insensitive() const { return case_insensitive_; }

  bool Matches(std::string_view value) const;

 private:
  Glob() = default;
  // The literal runs between stars: "a*b*" is {"a", "b", ""}. One part means no star.
  std::vector<std::string> parts_;
  bool case_insensitive_ = false;
};

// An IPv4 or IPv6 network. A plain address is a /32 (IPv4) or /128 (IPv6) network.
struct Cidr {
  IpAddress network;      // host bits zeroed
  int prefix_bits = 128;  // 0..128, counted on the 16-byte form (an IPv4 /8 is 96 + 8)

  bool Contains(const IpAddress& ip) const { return ip.Masked(prefix_bits) == network; }
};

// "10.0.0.0/8", "2001:db8::/32", or a plain address. Host bits set below the prefix are cleared
// ("10.1.2.3/8" is 10.0.0.0/8), as nginx and Kong do.
absl::StatusOr<Cidr> ParseCidr(std::string_view text);

// The condition on one attribute of a rule `match` or a list entry.
class AttributePattern {
 public:
  enum class Kind { kExact, kGlob, kCidr };

  // Reads `text` as the rules file wrote it for `attribute`:
  // - ip_address: an address or CIDR when it parses as one; otherwise a glob on the text (it must
  //   contain `*`, so that a mistyped address is an error rather than a rule that never matches);
  // - method: exact or glob, ASCII case-insensitive;
  // - others: exact (no unescaped `*`) or glob.
  static absl::StatusOr<AttributePattern> Parse(const AttributeRef& attribute,
                                                std::string_view text);

  const AttributeRef& attribute() const { return attribute_; }
  Kind kind() const { return kind_; }
  // kExact: the value to compare (uppercased for method). kGlob: see Glob.
  const std::string& exact() const { return exact_; }
  const Glob& glob() const { return *glob_; }
  const Cidr& cidr() const { return cidr_; }
  const std::string& text() const { return text_; }  // as written, for messages

  // `value` is the request's attribute ("" never matches: empty is absent). `ip` is the parsed
  // ip_address (nullptr when absent or unparseable); only CIDR patterns use it.
  bool Matches(std::string_view value, const IpAddress* ip) const;

 private:
  AttributePattern() = default;

  AttributeRef attribute_;
  Kind kind_ = Kind::kExact;
  std::string exact_;
  std::optional<Glob> glob_;
  Cidr cidr_;
  std::string text_;
};

}  // namespace sluice::rules
