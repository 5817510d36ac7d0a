// envoy.service.ratelimit.v3.RateLimitService on gRPC's callback API (CONTRACT §6).
//
// A generic (raw-bytes) service that decodes the request itself rather than gRPC's generated
// one: with a generated callback service, grpc++ 1.51 answers a request it cannot decode with
// UNIMPLEMENTED and no message, and takes the first message of a unary call that carries two.
// Here an undecodable request is INTERNAL with the reason, and a second request message is
// INTERNAL too (gRPC's status code table: "error parsing request proto" is INTERNAL on the
// server, as grpc-go and grpc-java answer both).
//
// A call never holds a thread while the store answers: once the request is read (and the client
// has closed its side), the call hands it to the limiter and returns; the limiter's callback
// renders the response and finishes the call, on whatever thread the store completes on (for the
// memory store, inline). The same path as POST /json: FromProto → Limiter::CheckDescriptors →
// ToProto.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

#include "grpcpp/generic/async_generic_service.h"
#include "limiter/limiter.h"

namespace sluice::grpc_api {

// The one method served.
inline constexpr char kShouldRateLimitMethod[] =
    "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

class RateLimitService final : public ::grpc::CallbackGenericService {
 public:
  // `limiter` must outlive the service. Thread-safe.
  RateLimitService(Limiter& limiter, EnvoyOptions options) : limiter_(limiter), options_(options) {}

  // ShouldRateLimit: INVALID_ARGUMENT for an empty domain, no descriptors, a descriptor without
  // entries or an override with an unknown unit; INTERNAL for bytes that are no
  // RateLimitRequest (invalid UTF-8 in a string included), no request message or more than
  // one; otherwise OK with the RateLimitResponse. Over the limit is a response (overall_code
  // OVER_LIMIT), never a gRPC error, as Envoy expects; so is a store failure, which the
  // limiter's failure policy has already turned into OK or OVER_LIMIT.
  // Any other method (grpc.health.v1 is a service of its own): UNIMPLEMENTED, naming it.
  ::grpc::ServerGenericBidiReactor* CreateReactor(
      ::grpc::GenericCallbackServerContext* context) override;

  // Called with the call's peer ("fd:17") for each call that ended before its request message
  // arrived: reset by the client, or closed empty (api/grpc/reset_guard.h). Set before the server
  // starts; on gRPC's threads.
  void OnEarlyEnd(std::function<void(std::string_view peer)> early_end) {
    early_end_ = std::move(early_end);
  }

  // Calls handed to the limiter and not finished yet (for a graceful stop).
  int64_t in_flight() const { return in_flight_->load(std::memory_order_acquire); }

 private:
  Limiter& limiter_;
  const EnvoyOptions options_;  // response_headers and dynamic_metadata
  std::function<void(std::string_view)> early_end_;
  // Release on finish / acquire in in_flight(): whoever sees 0 also sees every Finish done.
  // Shared with the calls' callbacks: a callback decrements it after Finish, when the server (and
  // this service) may already be gone.
  std::shared_ptr<std::atomic<int64_t>> in_flight_ = std::make_shared<std::atomic<int64_t>>(0);
};

}  // namespace sluice::grpc_api
