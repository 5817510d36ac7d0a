// gRPC ShouldRateLimit (CONTRACT §6) past the transport: a RateLimitRequest in protobuf's wire
// format, converted (envoy_api::FromProto), decided by a limiter with the example rules, and
// answered with every option on (headers, dynamic metadata). Whatever the bytes, an error or an
// answer with one status per descriptor, never a crash.
#include "api/envoy/convert.h"
#include "fuzz/limiter_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;
  static fuzz::LimiterHarness& h = fuzz::LimiterHarness::Get();
  envoy_api::RateLimitRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  absl::StatusOr<DescriptorsRequest> parsed = envoy_api::FromProto(request);
  if (!parsed.ok()) return 0;
  bool answered = false;
  h.limiter.CheckDescriptors(std::move(*parsed), [&](DescriptorsResult result) {
    answered = true;
    if (!result.status.ok()) return;
    envoy_api::RateLimitResponse response;
    envoy_api::ToProto(request, result, h.envoy, &response);
    (void)envoy_api::ResponseHeaders(result);
    if (response.statuses_size() != request.descriptors_size()) {
      fuzz::Fail("the answer's statuses do not match the descriptors", request.ShortDebugString());
    }
    std::string wire;
    if (!response.SerializeToString(&wire)) fuzz::Fail("the answer cannot be serialized", "");
  });
  if (!answered) fuzz::Fail("ShouldRateLimit did not answer", request.ShortDebugString());
  h.clock.Advance(1000);
  return 0;
}
