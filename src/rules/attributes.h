// What a request says about itself: the attributes rules match on and build counter keys from.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::rules {

// An IPv4 or IPv6 address in 16 bytes, network order. IPv4 is kept as its IPv4-mapped IPv6 form
// (::ffff:a.b.c.d) so that one comparison and one CIDR check serve both families, and a rule
// written for 10.0.0.1 also matches a request that says ::ffff:10.0.0.1.
struct IpAddress {
  std::array<uint8_t, 16> bytes{};

  bool IsV4() const;  // an IPv4-mapped address
  // Canonical text: dotted quad for IPv4, RFC 5952 (inet_ntop) for IPv6.
  std::string ToString() const;
  // The first `bits` bits (0..128), the rest zeroed.
  IpAddress Masked(int bits) const;

  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

// Parses a plain IPv4 ("192.168.1.1") or IPv6 ("2001:db8::1", "::ffff:1.2.3.4") address. No
// brackets, ports, zones or leading zeros. Returns false (leaving *out unspecified) when `text`
// is not an address; the HTTP layer answers 400 then.
bool ParseIp(std::string_view text, IpAddress* out);

// The attributes a rule can name. The order is the canonical order of docs and error messages.
enum class Attribute : uint8_t {
  kUserId,
  kApiKey,
  kIpAddress,
  kEndpoint,
  kMethod,
  kTier,
  kHeader,  // headers.<name>
};
inline constexpr int kNumFixedAttributes = 6;  // all but kHeader

// One attribute as a rule names it: `tier`, or `headers.x-client` (header name lowercased).
struct AttributeRef {
  Attribute attribute = Attribute::kUserId;
  std::string header;  // lowercase; only for kHeader

  std::string Name() const;  // as written in rules files: "user_id", "headers.x-client"
  friend bool operator==(const AttributeRef&, const AttributeRef&) = default;
};

// "user_id", ..., "headers.<name>" (name non-empty; any case). nullopt for anything else.
std::optional<AttributeRef> ParseAttributeName(std::string_view name);

// A request as the rules see it. An empty string counts as absent (CONTRACT §3.1), so callers
// just leave unknown fields empty. Plain data: fill it, then hand a const reference to RuleSet.
struct RequestAttributes {
  std::string user_id;
  std::string api_key;
  std::string ip_address;
  std::string endpoint;
  std::string method;
  std::string tier;

  // The parsed `ip_address`, so that CIDR rules compare bytes instead of reparsing text per rule.
  // Filled by SetIpAddress. When absent, RuleSet parses `ip_address` once per call itself, so
  // assigning `ip_address` directly is correct, only slower.
  std::optional<IpAddress> ip;

  // Sets `ip_address` and `ip`. Returns false when `text` is not empty and not an IP address;
  // `ip_address` keeps the text then (globs on it still work) and `ip` is cleared.
  bool SetIpAddress(std::string_view text);

  // Adds or replaces a header. Names are stored lowercased: header names are case-insensitive.
  // Each call scans the headers already set: for more than a few, use SetHeaders.
  void SetHeader(std::string_view name, std::string_view value);
  // SetHeader on each pair in order, in time linear in their number (a JSON `headers` object
  // may carry thousands).
  void SetHeaders(std::vector<std::pair<std::string, std::string>> headers);
  // The value of header `name` (any case), or "" when absent.
  std::string_view Header(std::string_view name) const;
  const std::vector<std::pair<std::string, std::string>>& headers() const { return headers_; }

  // The value of `ref` ("" = absent), as the request gave it.
  std::string_view Get(const AttributeRef& ref) const;
  std::string_view Get(Attribute fixed) const;  // not kHeader

 private:
  // A vector, not a map: requests carry a handful of headers and rules look up a few of them.
  std::vector<std::pair<std::string, std::string>> headers_;  // names lowercase, unique
};

}  // namespace sluice::rules
