#include "api/grpc/rate_limit_service.h"

#include <string>
#include <utility>

#include "api/envoy/convert.h"

namespace sluice::grpc_api {

::grpc::ServerUnaryReactor* RateLimitService::ShouldRateLimit(
    ::grpc::CallbackServerContext* context,
    const ::envoy::service::ratelimit::v3::RateLimitRequest* request,
    ::envoy::service::ratelimit::v3::RateLimitResponse* response) {
  ::grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<DescriptorsRequest> parsed = envoy_api::FromProto(*request);
  if (!parsed.ok()) {
    const absl::string_view message = parsed.status().message();
    reactor->Finish(::grpc::Status(::grpc::StatusCode::INVALID_ARGUMENT,
                                   std::string(message.data(), message.size())));
    return reactor;
  }
  // `response` and `reactor` stay valid until Finish: gRPC keeps the call (and a server
  // shutdown waits for it) until then, even if the client cancels meanwhile. The limiter runs
  // the callback exactly once, so every call is finished.
  in_flight_->fetch_add(1, std::memory_order_relaxed);
  limiter_.CheckDescriptors(
      std::move(*parsed), [in_flight = in_flight_, reactor, response](DescriptorsResult result) {
        if (!result.status.ok()) {
          const absl::string_view message = result.status.message();
          reactor->Finish(::grpc::Status(::grpc::StatusCode::INVALID_ARGUMENT,
                                         std::string(message.data(), message.size())));
        } else {
          envoy_api::ToProto(result, response);
          reactor->Finish(::grpc::Status::OK);
        }
        // After Finish: a stop that sees 0 has nothing left to wait for.
        // Nothing of this call may be touched from here on (the server may be
        // shutting down).
        in_flight->fetch_sub(1, std::memory_order_release);
      });
  return reactor;
}

}  // namespace sluice::grpc_api
