#include "api/grpc/rate_limit_service.h"

#include <string>
#include <utility>

#include "api/envoy/convert.h"
#include "envoy/service/ratelimit/v3/rls.pb.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/proto_buffer_writer.h"
#include "obs/log.h"

namespace sluice::grpc_api {

namespace {

namespace rls = ::envoy::service::ratelimit::v3;

::grpc::Status Error(::grpc::StatusCode code, absl::string_view message) {
  return ::grpc::Status(code, std::string(message.data(), message.size()));
}

using EarlyEnd = std::function<void(std::string_view)>;

// A call of a method this service does not have. It reads no request, so it counts as an early
// end: a rapid-reset flood may use any method (the call is set up before its path is matched;
// whether a reset comes before the answer is a race), and no client needs more than the
// allowance's 10 a second of calls that cannot succeed.
class Unimplemented final : public ::grpc::ServerGenericBidiReactor {
 public:
  Unimplemented(::grpc::GenericCallbackServerContext* context, const EarlyEnd& early_end) {
    if (early_end) early_end(context->peer());
    Finish(
        ::grpc::Status(::grpc::StatusCode::UNIMPLEMENTED, "unknown method " + context->method()));
  }
  void OnDone() override { delete this; }
};

// One ShouldRateLimit call: read the request, make sure no second message follows, decide,
// answer. Deletes itself when gRPC is done with the call.
class ShouldRateLimitCall final : public ::grpc::ServerGenericBidiReactor {
 public:
  ShouldRateLimitCall(Limiter& limiter, const EnvoyOptions& options,
                      std::shared_ptr<std::atomic<int64_t>> in_flight, std::string request_id,
                      ::grpc::GenericCallbackServerContext* context, const EarlyEnd& early_end)
      : limiter_(limiter),
        options_(options),
        in_flight_(std::move(in_flight)),
        request_id_(std::move(request_id)),
        context_(context),
        early_end_(early_end) {
    StartRead(&buffer_);
  }

  void OnReadDone(bool ok) override {
    if (!have_request_) {
      if (!ok) {
        // Reset or closed before its request: what a rapid-reset flood is made of.
        if (early_end_) early_end_(context_->peer());
        return Finish(Error(::grpc::StatusCode::INTERNAL, "no request message"));
      }
      have_request_ = true;
      bool parsed = false;
      {
        // Parsed from gRPC's slices as they are (no copy into one string).
        ::grpc::ProtoBufferReader reader(&buffer_);
        parsed = request_.ParseFromZeroCopyStream(&reader);
      }
      buffer_.Clear();
      if (!parsed) {
        return Finish(Error(::grpc::StatusCode::INTERNAL,
                            "the request is not a valid RateLimitRequest (malformed protobuf, "
                            "or a string field that is not valid UTF-8)"));
      }
      // A unary call ends after one message: the next read must find the end of the stream
      // (it comes with the message from every gRPC client, so this read does not wait).
      return StartRead(&buffer_);
    }
    if (ok) {
      return Finish(Error(::grpc::StatusCode::INTERNAL,
                          "more than one request message on the unary ShouldRateLimit"));
    }
    Decide();
  }

  void OnDone() override { delete this; }

 private:
  void Decide() {
    absl::StatusOr<DescriptorsRequest> parsed = envoy_api::FromProto(request_);
    if (!parsed.ok()) {
      return Finish(Error(::grpc::StatusCode::INVALID_ARGUMENT, parsed.status().message()));
    }
    parsed->request_id = std::move(request_id_);
    // `this` stays valid until Finish: gRPC keeps the call (and a server shutdown waits for
    // it) until then, even if the client cancels meanwhile. The limiter runs the callback
    // exactly once, so every call is finished.
    in_flight_->fetch_add(1, std::memory_order_relaxed);
    limiter_.CheckDescriptors(std::move(*parsed), [this](DescriptorsResult result) {
      std::shared_ptr<std::atomic<int64_t>> in_flight = in_flight_;
      if (!result.status.ok()) {
        Finish(Error(::grpc::StatusCode::INVALID_ARGUMENT, result.status.message()));
      } else {
        envoy_api::ToProto(request_, result, options_, &response_);
        bool own_buffer = false;
        ::grpc::Status serialized =
            ::grpc::GenericSerialize<::grpc::ProtoBufferWriter, rls::RateLimitResponse>(
                response_, &buffer_, &own_buffer);
        if (serialized.ok()) {
          StartWriteAndFinish(&buffer_, ::grpc::WriteOptions(), ::grpc::Status::OK);
        } else {
          Finish(serialized);
        }
      }
      // After Finish: a stop that sees 0 has nothing left to wait for. Nothing of this call
      // may be touched from here on (OnDone may have deleted it already).
      in_flight->fetch_sub(1, std::memory_order_release);
    });
  }

  Limiter& limiter_;
  const EnvoyOptions options_;
  const std::shared_ptr<std::atomic<int64_t>> in_flight_;
  std::string request_id_;
  ::grpc::GenericCallbackServerContext* const context_;
  const EarlyEnd& early_end_;  // the service's, which outlives its calls
  ::grpc::ByteBuffer buffer_;  // the request as read, then the response as written
  bool have_request_ = false;
  rls::RateLimitRequest request_;
  rls::RateLimitResponse response_;
};

}  // namespace

::grpc::ServerGenericBidiReactor* RateLimitService::CreateReactor(
    ::grpc::GenericCallbackServerContext* context) {
  if (context->method() != kShouldRateLimitMethod) return new Unimplemented(context, early_end_);
  // The request id of the call's metadata (x-request-id, traceparent), for the rejection log.
  auto metadata = [&](std::string_view name) {
    const auto& all = context->client_metadata();
    auto it = all.find(::grpc::string_ref(name.data(), name.size()));
    return it == all.end() ? std::string_view()
                           : std::string_view(it->second.data(), it->second.size());
  };
  return new ShouldRateLimitCall(limiter_, options_, in_flight_,
                                 obs::RequestId(metadata("x-request-id"), metadata("traceparent")),
                                 context, early_end_);
}

}  // namespace sluice::grpc_api
