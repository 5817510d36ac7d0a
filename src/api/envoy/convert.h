// Envoy's RateLimitRequest/Response ↔ the limiter's DescriptorsRequest/Result. Pure functions.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "envoy/service/ratelimit/v3/rls.pb.h"
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

// Statuses in request order; overall_code OVER_LIMIT if any non-shadow descriptor is over;
// current_limit, limit_remaining and duration_until_reset whenever a limit matched;
// response_headers_to_add carries ResponseHeaders(result). `result.status` must be OK.
void ToProto(const DescriptorsResult& result, RateLimitResponse* response);

}  // namespace sluice::envoy_api
