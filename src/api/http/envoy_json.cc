#include "api/http/envoy_json.h"

#include "api/envoy/convert.h"
#include "api/http/check_codec.h"
#include "api/http/routes.h"
#include "google/protobuf/util/json_util.h"

namespace sluice::http {

namespace {

std::string Text(absl::string_view s) { return std::string(s.data(), s.size()); }

}  // namespace

void EnvoyJsonHandler::Handle(Request& request, Respond respond) {
  const unsigned version = request.version();
  auto bad = [&](const std::string& message) {
    metrics_.http_errors("INVALID_REQUEST").Increment();
    std::move(respond)(JsonResponse(400, ErrorBody("INVALID_REQUEST", message), version));
  };
  envoy_api::RateLimitRequest proto;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // as the check API: unknown fields are ignored
  if (auto s = google::protobuf::util::JsonStringToMessage(request.body(), &proto, options);
      !s.ok()) {
    return bad("request body is not a RateLimitRequest in proto3 JSON: " + s.ToString());
  }
  absl::StatusOr<DescriptorsRequest> parsed = envoy_api::FromProto(proto);
  if (!parsed.ok()) return bad(Text(parsed.status().message()));
  parsed->request_id = RequestIdOf(request);

  limiter_.CheckDescriptors(std::move(*parsed), [this, proto = std::move(proto),
                                                 respond = std::move(respond),
                                                 version](DescriptorsResult result) mutable {
    if (!result.status.ok()) {
      metrics_.http_errors("INVALID_REQUEST").Increment();
      std::move(respond)(
          JsonResponse(400, ErrorBody("INVALID_REQUEST", Text(result.status.message())), version));
      return;
    }
    if (result.store_unavailable) {
      Response res =
          JsonResponse(503,
                       ErrorBody("STORE_UNAVAILABLE",
                                 "The rate limit store is unavailable and the failure policy is "
                                 "fail_closed."),
                       version);
      res.set("Retry-After", "1");
      std::move(respond)(std::move(res));
      return;
    }
    envoy_api::RateLimitResponse response;
    envoy_api::ToProto(proto, result, options_, &response);
    std::string body;
    (void)google::protobuf::util::MessageToJsonString(response, &body);
    Response res = JsonResponse(result.over_limit ? 429 : 200, std::move(body), version);
    if (options_.response_headers) {
      for (const auto& [k, v] : envoy_api::ResponseHeaders(result)) res.set(k, v);
    }
    std::move(respond)(std::move(res));
  });
}

}  // namespace sluice::http
