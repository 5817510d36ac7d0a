// envoy.service.ratelimit.v3.RateLimitService on gRPC's callback API (CONTRACT §6).
//
// A call never holds a thread while the store answers: ShouldRateLimit hands the request to the
// limiter and returns; the limiter's callback renders the response and finishes the call, on
// whatever thread the store completes on (for the memory store, inline, before ShouldRateLimit
// returns). The same path as POST /json: FromProto → Limiter::CheckDescriptors → ToProto.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "envoy/service/ratelimit/v3/rls.grpc.pb.h"
#include "limiter/limiter.h"

namespace sluice::grpc_api {

class RateLimitService final
    : public ::envoy::service::ratelimit::v3::RateLimitService::CallbackService {
 public:
  // `limiter` must outlive the service. Thread-safe.
  explicit RateLimitService(Limiter& limiter) : limiter_(limiter) {}

  // INVALID_ARGUMENT for an empty domain, no descriptors, a descriptor without entries or an
  // override with an unknown unit; otherwise OK with the RateLimitResponse. Over the limit is a
  // response (overall_code OVER_LIMIT), never a gRPC error, as Envoy expects; so is a store
  // failure, which the limiter's failure policy has already turned into OK or OVER_LIMIT.
  ::grpc::ServerUnaryReactor* ShouldRateLimit(
      ::grpc::CallbackServerContext* context,
      const ::envoy::service::ratelimit::v3::RateLimitRequest* request,
      ::envoy::service::ratelimit::v3::RateLimitResponse* response) override;

  // Calls handed to the limiter and not finished yet (for a graceful stop).
  int64_t in_flight() const { return in_flight_->load(std::memory_order_acquire); }

 private:
  Limiter& limiter_;
  // Release on finish / acquire in in_flight(): whoever sees 0 also sees every Finish done.
  // Shared with the calls' callbacks: a callback decrements it after Finish, when the server (and
  // this service) may already be gone.
  std::shared_ptr<std::atomic<int64_t>> in_flight_ = std::make_shared<std::atomic<int64_t>>(0);
};

}  // namespace sluice::grpc_api
