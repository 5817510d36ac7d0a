#include "rules/pattern.h"

#include "absl/status/status.h"
#include "rules/strings.h"

namespace sluice::rules {

namespace {

bool EqualsAt(std::string_view value, size_t pos, std::string_view part, bool ci) {
  const std::string_view v = value.substr(pos, part.size());
  return ci ? internal::EqualsIgnoreCase(v, part) : v == part;
}

size_t FindFrom(std::string_view value, std::string_view part, size_t from, size_t end, bool ci) {
  if (part.empty()) return from;
  if (end < part.size()) return std::string_view::npos;
  for (size_t i = from; i + part.size() <= end; ++i) {
    if (EqualsAt(value, i, part, ci)) return i;
  }
  return std::string_view::npos;
}

}  // namespace

absl::StatusOr<Glob> Glob::Parse(std::string_view pattern, Escapes escapes, bool case_insensitive) {
  Glob g;
  g.case_insensitive_ = case_insensitive;
  g.parts_.emplace_back();
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '*') {
      g.parts_.emplace_back();
    } else if (c == '\\' && escapes == Escapes::kBackslash) {
      if (i + 1 == pattern.size() || (pattern[i + 1] != '*' && pattern[i + 1] != '\\')) {
        return absl::InvalidArgumentError(
            internal::Cat("invalid glob '", pattern, "': '\\' must be followed by '*' or '\\'"));
      }
      g.parts_.back().push_back(pattern[++i]);
    } else {
      g.parts_.back().push_back(c);
    }
  }
  if (case_insensitive) {
    for (std::string& part : g.parts_) part = internal::AsciiLower(part);
  }
  return g;
}

bool Glob::Matches(std::string_view value) const {
  const bool ci = case_insensitive_;
  const std::string& first = parts_.front();
  if (parts_.size() == 1) {
    return ci ? internal::EqualsIgnoreCase(value, first) : value == first;
  }
  const std::string& last = parts_.back();
  if (value.size() < first.size() + last.size()) return false;
  if (!EqualsAt(value, 0, first, ci)) return false;
  const size_t end = value.size() - last.size();
  if (!EqualsAt(value, end, last, ci)) return false;
  // Middle parts, leftmost first, inside [first, end): taking the earliest occurrence of each
  // part leaves the most room for the ones after it, so no backtracking is needed.
  size_t pos = first.size();
  for (size_t i = 1; i + 1 < parts_.size(); ++i) {
    const size_t found = FindFrom(value, parts_[i], pos, end, ci);
    if (found == std::string_view::npos) return false;
    pos = found + parts_[i].size();
  }
  return true;
}

absl::StatusOr<Cidr> ParseCidr(std::string_view text) {
  const size_t slash = text.find('/');
  IpAddress ip;
  if (!ParseIp(text.substr(0, slash), &ip)) {
    return absl::InvalidArgumentError(internal::Cat(
        slash == std::string_view::npos ? "invalid IP address '" : "invalid CIDR '", text, "'"));
  }
  Cidr cidr;
  if (slash == std::string_view::npos) {
    cidr.network = ip;
    cidr.prefix_bits = 128;
    return cidr;
  }
  const std::string_view bits_text = text.substr(slash + 1);
  const int max_bits = ip.IsV4() ? 32 : 128;
  int bits = 0;
  const bool digits_only = !bits_text.empty() && bits_text.size() <= 3 &&
                           bits_text.find_first_not_of("0123456789") == std::string_view::npos;
  for (char c : digits_only ? bits_text : std::string_view()) bits = bits * 10 + (c - '0');
  if (!digits_only || bits > max_bits) {
    return absl::InvalidArgumentError(
        internal::Cat("invalid CIDR '", text, "': prefix length must be 0..", max_bits));
  }
  cidr.prefix_bits = ip.IsV4() ? 96 + bits : bits;
  cidr.network = ip.Masked(cidr.prefix_bits);
  return cidr;
}

absl::StatusOr<AttributePattern> AttributePattern::Parse(const AttributeRef& attribute,
                                                         std::string_view text) {
  AttributePattern p;
  p.attribute_ = attribute;
  p.text_ = std::string(text);
  if (text.empty()) {
    // An empty request value is absent, so an empty pattern could never match.
    return absl::InvalidArgumentError(
        internal::Cat("empty pattern for '", attribute.Name(), "' would never match"));
  }
  if (attribute.attribute == Attribute::kIpAddress && text.find('*') == std::string_view::npos) {
    absl::StatusOr<Cidr> cidr = ParseCidr(text);
    if (!cidr.ok()) return cidr.status();
    p.kind_ = Kind::kCidr;
    p.cidr_ = *cidr;
    return p;
  }
  const bool ci = attribute.attribute == Attribute::kMethod;
  absl::StatusOr<Glob> glob = Glob::Parse(text, Glob::Escapes::kBackslash, ci);
  if (!glob.ok()) return glob.status();
  if (glob->has_wildcard()) {
    p.kind_ = Kind::kGlob;
    p.glob_ = *std::move(glob);
  } else {
    p.kind_ = Kind::kExact;
    // Methods compare uppercased, the way HTTP writes them and the way indexes key them.
    p.exact_ = ci ? internal::AsciiUpper(glob->literal_prefix()) : glob->literal_prefix();
  }
  return p;
}

bool AttributePattern::Matches(std::string_view value, const IpAddress* ip) const {
  if (value.empty()) return false;
  switch (kind_) {
    case Kind::kExact:
      return attribute_.attribute == Attribute::kMethod ? internal::EqualsIgnoreCase(value, exact_)
                                                        : value == exact_;
    case Kind::kGlob:
      return glob_->Matches(value);
    case Kind::kCidr:
      return ip != nullptr && cidr_.Contains(*ip);
  }
  return false;
}

}  // namespace sluice::rules
