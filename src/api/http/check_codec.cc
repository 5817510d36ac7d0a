#include "api/http/check_codec.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "core/int_math.h"
#include "nlohmann/json.hpp"

namespace sluice::http {

using json = nlohmann::json;

namespace {

// nlohmann's DOM builder with parse errors kept as a message instead of thrown: sax_parse calls
// this class's parse_error (it is statically dispatched), so nothing throws on the request path.
class DomParser : public nlohmann::detail::json_sax_dom_parser<json> {
 public:
  explicit DomParser(json& out) : json_sax_dom_parser(out, /*allow_exceptions_=*/false) {}
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) {
    error = ex.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." → from "parse error".
    if (auto pos = error.find("] "); pos != std::string::npos) error = error.substr(pos + 2);
    return false;
  }
  std::string error;
};

absl::Status Invalid(std::string_view message) {
  return absl::InvalidArgumentError(std::string(message));
}

absl::Status ReadString(const json& body, const char* field, std::string* out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) return Invalid(absl::StrCat("field '", field, "' must be a string"));
  *out = it->get<std::string>();
  return absl::OkStatus();
}

}  // namespace

int64_t CeilSeconds(Micros micros) {
  return static_cast<int64_t>(int_math::CeilDiv(micros, kMicrosPerSecond));
}

absl::StatusOr<CheckRequest> ParseCheckRequest(std::string_view body) {
  json doc;
  DomParser parser(doc);
  if (!json::sax_parse(body.begin(), body.end(), &parser, json::input_format_t::json, true) ||
      doc.is_discarded()) {
    return Invalid(absl::StrCat("request body is not valid JSON: ", parser.error));
  }
  if (!doc.is_object()) return Invalid("request body must be a JSON object");

  CheckRequest request;
  rules::RequestAttributes& a = request.attributes;
  for (auto [field, out] : {std::pair{"user_id", &a.user_id}, {"api_key", &a.api_key},
                            {"endpoint", &a.endpoint}, {"method", &a.method},
                            {"tier", &a.tier}}) {
    if (absl::Status s = ReadString(doc, field, out); !s.ok()) return s;
  }
  std::string ip;
  if (absl::Status s = ReadString(doc, "ip_address", &ip); !s.ok()) return s;
  if (!a.SetIpAddress(ip)) {
    return Invalid(absl::StrCat("field 'ip_address' is not an IPv4 or IPv6 address: '", ip, "'"));
  }
  if (auto it = doc.find("headers"); it != doc.end() && !it->is_null()) {
    if (!it->is_object()) return Invalid("field 'headers' must be an object of strings");
    for (const auto& [name, value] : it->items()) {
      if (!value.is_string()) {
        return Invalid(absl::StrCat("header '", name, "' must be a string"));
      }
      a.SetHeader(name, value.get_ref<const std::string&>());
    }
  }
  if (auto it = doc.find("cost"); it != doc.end()) {
    // Only a JSON integer: 2.0 and 1e3 parse as floats, null and "1" are other types.
    if (it->is_number_unsigned()) {
      const auto v = it->get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Invalid("field 'cost' is too large");
      }
      request.cost = static_cast<int64_t>(v);
    } else if (it->is_number_integer()) {
      return Invalid("field 'cost' must not be negative");
    } else {
      return Invalid("field 'cost' must be a non-negative integer");
    }
  }
  return request;
}

std::string ErrorBody(std::string_view code, std::string_view message) {
  json body = {{"error", {{"code", code}, {"message", message}}}};
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

Rendered RenderCheckResult(const CheckResult& r) {
  using Outcome = CheckResult::Outcome;
  Rendered out;
  json body;
  switch (r.outcome) {
    case Outcome::kAllowlisted:
      out.body = R"({"allowed":true,"allowlisted":true})";
      return out;
    case Outcome::kDenied:
      out.status = 403;
      body = {{"allowed", false},
              {"error",
               {{"code", "BLOCKED"},
                {"message", "Request blocked by the deny list."},
                {"reason", r.deny_reason}}}};
      out.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
      return out;
    case Outcome::kStoreUnavailable:
      out.status = 503;
      out.headers.emplace_back("Retry-After", "1");
      out.body = ErrorBody("STORE_UNAVAILABLE",
                           "The rate limit store is unavailable and the failure policy is "
                           "fail_closed.");
      return out;
    case Outcome::kAllowed:
    case Outcome::kRejected:
      break;
  }
  if (!r.limited) {
    out.body = R"({"allowed":true})";
    return out;
  }
  const Decision& d = r.decision;
  const int64_t reset_at = CeilSeconds(int_math::SatAdd(r.now, d.reset_after));
  const int64_t reset_in = CeilSeconds(d.reset_after);
  const std::string quoted_id = json(r.rule_id).dump(-1, ' ', false,
                                                     json::error_handler_t::replace);
  out.headers = {
      {"X-RateLimit-Limit", std::to_string(d.limit)},
      {"X-RateLimit-Remaining", std::to_string(d.remaining)},
      {"X-RateLimit-Reset", std::to_string(reset_at)},
      {"RateLimit-Policy",
       absl::StrCat(quoted_id, ";q=", d.limit, ";w=", std::max<int64_t>(1, CeilSeconds(r.window)))},
      {"RateLimit", absl::StrCat(quoted_id, ";r=", d.remaining, ";t=", reset_in)},
  };
  if (r.outcome == Outcome::kAllowed) {
    body = {{"allowed", true},
            {"limit", d.limit},
            {"remaining", d.remaining},
            {"reset_at", reset_at},
            {"rule_id", r.rule_id}};
    if (r.algorithm == Algorithm::kLeakyBucket) {
      body["delay_ms"] = static_cast<int64_t>(int_math::CeilDiv(d.delay, kMicrosPerMilli));
    }
  } else {
    out.status = 429;
    json error;
    if (d.cost_exceeds_limit) {
      error = {{"code", "COST_EXCEEDS_LIMIT"},
               {"message", absl::StrCat("The request's cost exceeds what rule '", r.rule_id,
                                        "' can ever admit.")}};
    } else {
      const int64_t retry = std::max<int64_t>(1, CeilSeconds(d.retry_after));
      out.headers.emplace_back("Retry-After", std::to_string(retry));
      error = {{"code", "RATE_LIMIT_EXCEEDED"},
               {"message", absl::StrCat("Rate limit exceeded. Try again in ", retry,
                                        retry == 1 ? " second." : " seconds.")},
               {"retry_after", retry}};
    }
    error["limit"] = d.limit;
    error["remaining"] = d.remaining;
    error["reset_at"] = reset_at;
    error["rule_id"] = r.rule_id;
    body = {{"allowed", false}, {"error", std::move(error)}};
  }
  out.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return out;
}

}  // namespace sluice::http
