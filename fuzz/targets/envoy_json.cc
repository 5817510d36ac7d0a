// POST /json (CONTRACT §6): envoyproxy/ratelimit's proto3-JSON request, through the real handler
// on a limiter with the example rules. Whatever the body, an answer (200, 429, 400 or 503) with
// a JSON body, never a crash.
#include "api/http/envoy_json.h"

#include "fuzz/limiter_harness.h"
#include "nlohmann/json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;
  static fuzz::LimiterHarness& h = fuzz::LimiterHarness::Get();
  static http::EnvoyJsonHandler handler(h.limiter, h.metrics, h.envoy);
  const std::string_view body = fuzz::Text(data, size);
  http::Request request{boost::beast::http::verb::post, "/json", 11};
  request.set(boost::beast::http::field::content_type, "application/json");
  request.body().assign(body);
  request.prepare_payload();
  bool answered = false;
  handler.Handle(request, [&](http::Response response) {
    answered = true;
    const unsigned status = response.result_int();
    if (status != 200 && status != 429 && status != 400 && status != 503) {
      fuzz::Fail("POST /json answered " + std::to_string(status), body);
    }
    if (!nlohmann::json::accept(response.body())) fuzz::Fail("the answer is not JSON", body);
  });
  // The memory store answers at once: the handler has answered before Handle returns.
  if (!answered) fuzz::Fail("POST /json did not answer", body);
  h.clock.Advance(1000);
  return 0;
}
