// POST /json: envoyproxy/ratelimit's HTTP form of ShouldRateLimit. The body is a
// RateLimitRequest in proto3 JSON; the answer a RateLimitResponse in proto3 JSON, 200 when OK and
// 429 when OVER_LIMIT. Same code path as gRPC: proto → DescriptorsRequest → limiter → proto.
#pragma once

#include "api/http/server.h"
#include "limiter/limiter.h"
#include "obs/metrics.h"

namespace sluice::http {

class EnvoyJsonHandler {
 public:
  // `options`: response_headers and dynamic_metadata (the limiter applies the others).
  EnvoyJsonHandler(Limiter& limiter, obs::Metrics& metrics, EnvoyOptions options)
      : limiter_(limiter), metrics_(metrics), options_(options) {}
  void Handle(Request& request, Respond respond);

 private:
  Limiter& limiter_;
  obs::Metrics& metrics_;
  const EnvoyOptions options_;
};

}  // namespace sluice::http
