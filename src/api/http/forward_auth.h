// The forward-auth endpoint (CONTRACT §10) as pure functions: a gateway's authorization
// subrequest (nginx auth_request, Traefik ForwardAuth, Envoy ext_authz HTTP) → CheckRequest, and
// CheckResult → a bodiless answer. No sockets: tests call them directly. docs/gateways.md says
// how each gateway is set up to call it.
#pragma once

#include <optional>
#include <string_view>

#include "absl/status/statusor.h"
#include "api/http/check_codec.h"
#include "api/http/server.h"
#include "limiter/limiter.h"

namespace sluice::http {

inline constexpr std::string_view kForwardAuthPath = "/v1/ratelimit/auth";

// For a routed path (query already cut off): nullopt when it is not the forward-auth endpoint;
// otherwise what follows kForwardAuthPath — "" for the endpoint itself, "/<rest>" for
// `/v1/ratelimit/auth/<rest>` (Envoy ext_authz appends the original path to its `path_prefix`).
// `/v1/ratelimit/authx` is not the endpoint.
std::optional<std::string_view> ForwardAuthSuffix(std::string_view path);

// Reads the request attributes from the subrequest's header fields (names case-insensitive);
// `suffix` is ForwardAuthSuffix's answer. The method, target and body of the subrequest are not
// read, except as below. Each attribute, first source present (an empty value counts as absent):
//   user_id      X-Sluice-User-Id
//   api_key      X-Sluice-Api-Key
//   tier         X-Sluice-Tier
//   ip_address   X-Sluice-Ip; X-Forwarded-For's last address (the one the gateway saw). Never
//                the TCP peer: that is the gateway.
//   endpoint     X-Sluice-Endpoint, as it is; `suffix`; X-Forwarded-Uri (Traefik);
//                X-Original-URI (nginx convention) — these three without their query
//   method       X-Sluice-Method; X-Forwarded-Method; X-Original-Method; with a `suffix`, the
//                subrequest's own method (Envoy sends the original's; nginx auth_request and
//                Traefik always send GET, so the bare endpoint never reads it)
//   headers.NAME X-Sluice-Header-NAME (NAME lowercased; a NAME given twice keeps the last value)
//   cost         X-Sluice-Cost: digits only, 0 to 2^63 − 1; 1 when absent
// InvalidArgument (→ 400), with a message naming the header, for: a cost that is not such a
// number, an ip (X-Sluice-Ip or X-Forwarded-For's last entry) that is not an IPv4/IPv6 address,
// and any single-valued X-Sluice-* field given more than once (which one a gateway meant is
// unknowable, and a client-sent copy must not win by position).
absl::StatusOr<CheckRequest> ParseForwardAuth(const Request& request, std::string_view suffix);

// RenderCheckResult's status and headers (the X-RateLimit-*, RateLimit-Policy, RateLimit and, on
// 429, Retry-After of CONTRACT §5), without the body: 204 for allowed, 429, 403. The 503 of a
// fail_closed store failure keeps its error object: a gateway that passes it on gives the client
// a reason. Gateways copy these headers to the client (docs/gateways.md).
// `path_prefix_form` (a non-empty ForwardAuthSuffix): that form answers an allowed check with 200
// (and no body) instead, because Envoy's HTTP ext_authz client takes only a 200 as OK and would
// send a 204 to the client as a denial; nginx and Traefik take any 2xx. An allowed check that took
// concurrency slots adds X-Sluice-Lease-Id, their lease id.
Rendered RenderForwardAuth(const CheckResult& result, bool path_prefix_form = false);

}  // namespace sluice::http
