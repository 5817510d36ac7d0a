// The JSON check body (CONTRACT §4) and the release body: whatever the bytes, a CheckRequest or
// an error, never a crash. And the plain-body reader (api/http/simple_json.h): whatever it takes,
// it produces exactly nlohmann's SAX events, so the two paths cannot read a body differently.
#include "api/http/check_codec.h"
#include "api/http/simple_json.h"
#include "fuzz/fuzz_support.h"
#include "tests/testing/json_events.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;
  const std::string_view body = fuzz::Text(data, size);
  (void)http::ParseCheckRequest(body);
  (void)http::ParseReleaseRequest(body);
  http::SimpleBody simple;
  if (simple.Scan(body)) {
    testing::JsonEvents plain;
    if (!simple.Drive(plain)) fuzz::Fail("the plain reader's handler stopped", body);
    if (plain.events != testing::NlohmannEvents(body)) {
      fuzz::Fail("the plain reader's events differ from nlohmann's", body);
    }
  }
  return 0;
}
