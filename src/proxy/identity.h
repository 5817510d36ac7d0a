// Who a proxied request comes from, as the rules see it (CONTRACT §10): the attributes of
// rules::RequestAttributes read from an HTTP request header and the TCP peer, following the
// `proxy.identity` and `proxy.trusted_proxies` config. Pure functions: no sockets.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "boost/beast/http/message.hpp"
#include "rules/attributes.h"
#include "rules/pattern.h"

namespace sluice::proxy {

// Where one attribute is read from: `header:NAME` (any case) or `query:NAME` (exact name, the
// value percent-decoded, '+' read as a space).
struct IdentitySource {
  enum class Kind : uint8_t { kHeader, kQuery };
  Kind kind = Kind::kHeader;
  std::string name;

  std::string ToString() const;  // as written in the config
  friend bool operator==(const IdentitySource&, const IdentitySource&) = default;
};

// "header:X-User-Id", "query:api_key". InvalidArgument, with what was expected, otherwise (an
// empty name, an unknown kind, a header name that is not an HTTP token).
absl::StatusOr<IdentitySource> ParseIdentitySource(std::string_view text);

// `proxy.identity`: for each attribute, its sources in order; the first one present (not empty)
// wins. No source: the attribute is absent. ip_address, endpoint and method are not
// configurable: they come from the connection and the request line.
struct IdentityConfig {
  std::vector<IdentitySource> user_id;
  std::vector<IdentitySource> api_key;
  std::vector<IdentitySource> tier;
};

// `proxy.trusted_proxies`: the networks whose X-Forwarded-For is believed.
class TrustedProxies {
 public:
  TrustedProxies() = default;
  explicit TrustedProxies(std::vector<rules::Cidr> networks) : networks_(std::move(networks)) {}

  bool Contains(const rules::IpAddress& ip) const;
  bool empty() const { return networks_.empty(); }

 private:
  std::vector<rules::Cidr> networks_;
};

// The client's address: `peer` (the TCP peer) unless it is a trusted proxy; then the
// X-Forwarded-For fields of `headers` (all of them, in order, as one comma list) are walked from
// the right, each trusted address skipped, and the first untrusted one is the client. When the
// walk meets an entry that is not an IP address (garbage, "unknown", an obfuscated node name),
// it stops there and the last trusted address before it is the client: nothing to the left of
// a bad entry can be believed. When every entry is trusted, the leftmost is the client. Entries
// may carry a port ("1.2.3.4:5678", "[2001:db8::1]:443"): it is ignored.
rules::IpAddress ClientAddress(const rules::IpAddress& peer,
                               const boost::beast::http::fields& headers,
                               const TrustedProxies& trusted);

// The value of query parameter `name` in request target `target` (the first one, decoded);
// nullopt when the target has no such parameter.
std::optional<std::string> QueryParameter(std::string_view target, std::string_view name);

// The request as the rules see it: user_id, api_key and tier from `identity`'s sources,
// ip_address from ClientAddress, endpoint the target's path (no query; an absolute-form
// target's path), method as sent, and every header field as `headers.<name>` (a field sent
// twice: the last one).
rules::RequestAttributes ReadAttributes(const boost::beast::http::request_header<>& request,
                                        const rules::IpAddress& peer,
                                        const IdentityConfig& identity,
                                        const TrustedProxies& trusted);

}  // namespace sluice::proxy
