// The JSON check API (CONTRACT §5) as pure functions: wire → CheckRequest, CheckResult → wire.
// No sockets: tests call them directly.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "limiter/limiter.h"

namespace sluice::http {

// Parses the body of POST /v1/ratelimit/check. All fields optional, unknown fields ignored.
// InvalidArgument (→ 400) with a message naming the field for: not JSON (including invalid
// UTF-8), not an object, a non-string attribute, `headers` not an object of strings, `cost` not
// a non-negative integer (2.0, 1e3, null, "1", -1), an `ip_address` that is not an IP.
absl::StatusOr<CheckRequest> ParseCheckRequest(std::string_view body);

// A rendered answer: status, headers, JSON body.
struct Rendered {
  unsigned status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// Renders a CheckResult. Header mapping, from the reported rule's Decision (d) at time now:
//   X-RateLimit-Limit      d.limit
//   X-RateLimit-Remaining  d.remaining
//   X-RateLimit-Reset      reset_at = ceil((now + d.reset_after) / 1 s), Unix seconds
//   RateLimit-Policy       "<rule_id>";q=<limit>;w=<window in seconds, rounded up>
//   RateLimit              "<rule_id>";r=<remaining>;t=<ceil(reset_after / 1 s)>
//   Retry-After            429 only: ceil(d.retry_after / 1 s), at least 1 (also the body's
//                          retry_after); absent for COST_EXCEEDS_LIMIT
// Limit headers appear only when an enforced rule applied (`result.limited`); shadow rules and
// allow-listed requests never set them. `window` is the reported rule's window.
Rendered RenderCheckResult(const CheckResult& result);

// Receives the headers of an answer, in order, for RenderCheckInto. The views are valid during
// the call only.
class HeaderSink {
 public:
  virtual void Add(std::string_view name, std::string_view value) = 0;

 protected:
  ~HeaderSink() = default;
};

// RenderCheckResult without the intermediate lists: the headers go to `headers`, the JSON body is
// appended to `body`, and the status is returned. What the HTTP fast path uses.
unsigned RenderCheckInto(const CheckResult& result, HeaderSink& headers, std::string& body);

// Parses the body of POST /v1/ratelimit/release: {"lease_id": "…"} (a non-empty string; other
// fields ignored). InvalidArgument (→ 400) naming what is wrong.
absl::StatusOr<std::string> ParseReleaseRequest(std::string_view body);

// {"error": {"code": code, "message": message}}.
std::string ErrorBody(std::string_view code, std::string_view message);

// Seconds, rounded up; what every wire field in seconds uses.
int64_t CeilSeconds(Micros micros);

}  // namespace sluice::http
