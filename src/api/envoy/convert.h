// Envoy's RateLimitRequest/Response ↔ the limiter's DescriptorsRequest/Result. Pure functions.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "envoy/service/ratelimit/v3/rls.pb.h"
#include "google/protobuf/struct.pb.h"
#include "limiter/descriptors.h"

namespace sluice::envoy_api {

using ::envoy::service::ratelimit::v3::RateLimitRequest;
using ::envoy::service::ratelimit::v3::RateLimitResponse;

// InvalidArgument for an empty domain, no descriptors, a descriptor without entries, or an
// override with an unknown unit (CONTRACT §6: gRPC INVALID_ARGUMENT, HTTP 400).
absl::StatusOr<DescriptorsRequest> FromProto(const RateLimitRequest& request);

// The RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset headers (plain integers; Reset in
// whole seconds, rounded up) of the descriptor they describe: the over-limit one, else the
// limited one with the least remaining; shadow and unlimited descriptors never feed them. Empty
// when no limit matched, and when the store failed (nothing was counted). gRPC sends them as
// response_headers_to_add, POST /json as headers.
std::vector<std::pair<std::string, std::string>> ResponseHeaders(const DescriptorsResult& result);

// The answer to `request`: statuses in request order; overall_code as the limiter decided it
// (result.over_limit); current_limit, limit_remaining and duration_until_reset whenever a
// limit matched, the duration in whole seconds, rounded up, at least 1 (as envoyproxy/ratelimit
// sends it); response_headers_to_add carries ResponseHeaders(result) when
// `options.response_headers`; dynamic_metadata is DynamicMetadata(...) when
// `options.dynamic_metadata`. `result.status` must be OK.
void ToProto(const RateLimitRequest& request, const DescriptorsResult& result,
             const EnvoyOptions& options, RateLimitResponse* response);

// envoyproxy/ratelimit's response dynamic metadata: {"domain": ..., "descriptors": [{"entries":
// ["key=value", ...], "limit": <the override, as text>, "hitsAddend": n}, ...], "hitsAddend": n
// (when the request sets one), "metadata": <the `metadata` of every descriptor that passed,
// merged: nested mappings merge, otherwise the first descriptor's value stays>}.
void DynamicMetadata(const RateLimitRequest& request, const DescriptorsResult& result,
                     ::google::protobuf::Struct* out);

}  // namespace sluice::envoy_api
