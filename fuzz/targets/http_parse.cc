// The HTTP fast path's parser (api/http/simple_request.h) on any bytes: whatever it takes, Beast's
// parser (the general path) reads the same request from the same bytes, so no request can mean
// one thing to one path and another to the other (request smuggling between them).
#include "api/http/simple_request.h"
#include "fuzz/fuzz_support.h"
#include "tests/testing/http_agreement.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;
  const std::string_view bytes = fuzz::Text(data, size);
  // Small limits too, so that inputs reach the edges of each.
  static const http::SimpleLimits kLimits[] = {
      {}, {.max_header_bytes = 64, .max_header_fields = 3, .max_body_bytes = 16}};
  for (const http::SimpleLimits& limits : kLimits) {
    http::SimpleRequest fast;
    if (!http::ParseSimpleRequest(bytes, limits, fast)) continue;
    if (fast.size > bytes.size()) fuzz::Fail("the fast path used more bytes than it had", bytes);
    const std::string diff = testing::DisagreementWithBeast(bytes, fast);
    if (!diff.empty()) fuzz::Fail("the fast path and Beast disagree: " + diff, bytes);
  }
  return 0;
}
