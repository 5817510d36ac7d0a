#include "api/http/check_codec.h"

#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "api/http/simple_json.h"
#include "base/strings.h"
#include "core/int_math.h"
#include "nlohmann/json.hpp"

namespace sluice::http {

using json = nlohmann::json;

namespace {

// Reads a check request straight from nlohmann's SAX events into a CheckRequest: no DOM, no
// allocation beyond the strings kept. Returning false stops the parse; `error` says why.
class CheckSax {
 public:
  explicit CheckSax(CheckRequest& out) : out_(out) {}

  bool null() { return Value(Kind::kNull); }
  bool boolean(bool) { return Value(Kind::kOther); }
  bool number_integer(int64_t v) {
    if (depth_ == 1 && key_ == "cost") return Fail("field 'cost' must not be negative");
    return Value(Kind::kOther);
  }
  bool number_unsigned(uint64_t v) {
    if (depth_ == 1 && key_ == "cost") {
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Fail("field 'cost' is too large");
      }
      out_.cost = static_cast<int64_t>(v);
      return true;
    }
    return Value(Kind::kOther);
  }
  bool number_float(double, const std::string&) { return Value(Kind::kOther); }
  bool binary(nlohmann::json::binary_t&) { return Value(Kind::kOther); }
  bool string(std::string& v) {
    if (depth_ == 2 && in_headers_) {
      headers.emplace_back(std::move(key_), std::move(v));
      return true;
    }
    if (depth_ == 1) {
      if (std::string* field = StringField()) {
        *field = std::move(v);
        return true;
      }
      if (key_ == "charge") {
        if (v == "always" || v == "if_allowed") {
          out_.charge_always = v == "always";
          return true;
        }
        return Fail("field 'charge' must be \"if_allowed\" or \"always\"");
      }
    }
    return Value(Kind::kOther);
  }
  bool start_object(std::size_t) {
    if (depth_ == 0) {
      depth_ = 1;
      return true;
    }
    if (depth_ == 1 && key_ == "headers") {
      in_headers_ = true;
    } else if (!Value(Kind::kOther)) {
      return false;
    }
    ++depth_;
    return true;
  }
  bool end_object() {
    if (--depth_ == 1) in_headers_ = false;
    return true;
  }
  bool start_array(std::size_t) {
    if (depth_ == 0) return Fail("request body must be a JSON object");
    if (!Value(Kind::kOther)) return false;
    ++depth_;
    return true;
  }
  bool end_array() {
    --depth_;
    return true;
  }
  bool key(std::string& k) {
    if (depth_ == 1 || (depth_ == 2 && in_headers_)) key_ = std::move(k);
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) {
    error = ex.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." → from "parse".
    if (auto pos = error.find("] "); pos != std::string::npos) error = error.substr(pos + 2);
    error = "request body is not valid JSON: " + error;
    return false;
  }

  bool saw_object() const { return saw_object_; }
  std::string error;
  std::string ip;
  // The `headers` entries in order, names as written: set at once at the end, since setting
  // them one by one costs a scan of those before each.
  std::vector<std::pair<std::string, std::string>> headers;

 private:
  enum class Kind { kNull, kOther };

  // A value that is not a string where it was read (or any value of an unknown field).
  bool Value(Kind kind) {
    saw_object_ |= depth_ >= 1;
    if (depth_ == 0) return Fail("request body must be a JSON object");
    if (depth_ == 2 && in_headers_) {
      return Fail("header '" + key_ + "' must be a string");
    }
    if (depth_ != 1) return true;  // inside an unknown field: ignored
    if (StringField() != nullptr) {
      return kind == Kind::kNull || Fail("field '" + key_ + "' must be a string");
    }
    if (key_ == "headers") {
      return kind == Kind::kNull || Fail("field 'headers' must be an object of strings");
    }
    if (key_ == "cost") return Fail("field 'cost' must be a non-negative integer");
    if (key_ == "charge") {
      return kind == Kind::kNull || Fail("field 'charge' must be \"if_allowed\" or \"always\"");
    }
    return true;  // unknown fields are ignored
  }

  std::string* StringField() {
    rules::RequestAttributes& a = out_.attributes;
    if (key_ == "user_id") return &a.user_id;
    if (key_ == "api_key") return &a.api_key;
    if (key_ == "endpoint") return &a.endpoint;
    if (key_ == "method") return &a.method;
    if (key_ == "tier") return &a.tier;
    if (key_ == "ip_address") return &ip;
    return nullptr;
  }

  bool Fail(std::string message) {
    error = std::move(message);
    return false;
  }

  CheckRequest& out_;
  int depth_ = 0;
  bool in_headers_ = false;
  bool saw_object_ = false;
  std::string key_;
};

// Appends `s` as a JSON string literal (quotes included).
void AppendJsonString(std::string& out, std::string_view s) {
  out.push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out.append(buf);
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

std::string JsonString(std::string_view s) {
  std::string out;
  AppendJsonString(out, s);
  return out;
}

}  // namespace

int64_t CeilSeconds(Micros micros) {
  return static_cast<int64_t>(int_math::CeilDiv(micros, kMicrosPerSecond));
}

absl::StatusOr<CheckRequest> ParseCheckRequest(std::string_view body) {
  CheckRequest request;
  CheckSax sax(request);
  // The plain form (almost every body) without nlohmann's per-parse set-up; the same events.
  thread_local SimpleBody simple;
  const bool ok = simple.Scan(body) ? simple.Drive(sax)
                                    : json::sax_parse(body.begin(), body.end(), &sax,
                                                      json::input_format_t::json, true);
  if (!ok) {
    return absl::InvalidArgumentError(sax.error.empty() ? "request body is not valid JSON"
                                                        : sax.error);
  }
  request.attributes.SetHeaders(std::move(sax.headers));
  if (!request.attributes.SetIpAddress(sax.ip)) {
    return absl::InvalidArgumentError(
        absl::StrCat("field 'ip_address' is not an IPv4 or IPv6 address: ", JsonString(sax.ip)));
  }
  return request;
}

absl::StatusOr<std::string> ParseReleaseRequest(std::string_view body) {
  json parsed = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return absl::InvalidArgumentError("request body is not valid JSON");
  }
  if (!parsed.is_object()) return absl::InvalidArgumentError("request body must be a JSON object");
  auto it = parsed.find("lease_id");
  if (it == parsed.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
    return absl::InvalidArgumentError(
        "field 'lease_id' must be the non-empty string a check's answer carried");
  }
  return it->get<std::string>();
}

std::string ErrorBody(std::string_view code, std::string_view message) {
  json body = {{"error", {{"code", code}, {"message", message}}}};
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {

// "<rule_id>";<key>=<a>;<key2>=<b>: the structured field values of RateLimit-Policy and RateLimit.
void AppendLimitItem(std::string& out, std::string_view quoted_id, std::string_view key1, int64_t a,
                     std::string_view key2, int64_t b) {
  out.append(quoted_id).append(key1);
  AppendDecimal(out, a);
  out.append(key2);
  AppendDecimal(out, b);
}

// Collects the headers as (name, value) pairs, for Rendered.
class ListSink : public HeaderSink {
 public:
  explicit ListSink(std::vector<std::pair<std::string, std::string>>& list) : list_(list) {}
  void Add(std::string_view name, std::string_view value) override {
    list_.emplace_back(name, value);
  }

 private:
  std::vector<std::pair<std::string, std::string>>& list_;
};

}  // namespace

unsigned RenderCheckInto(const CheckResult& r, HeaderSink& headers, std::string& body) {
  using Outcome = CheckResult::Outcome;
  switch (r.outcome) {
    case Outcome::kAllowlisted:
      body.append(R"({"allowed":true,"allowlisted":true})");
      return 200;
    case Outcome::kDenied:
      body.append(R"({"allowed":false,"error":{"code":"BLOCKED","message":"Request blocked by the )"
                  R"(deny list.","reason":)");
      AppendJsonString(body, r.deny_reason);
      body.append("}}");
      return 403;
    case Outcome::kStoreUnavailable:
      headers.Add("Retry-After", "1");
      body.append(ErrorBody("STORE_UNAVAILABLE",
                            "The rate limit store is unavailable and the failure policy is "
                            "fail_closed."));
      return 503;
    case Outcome::kAllowed:
    case Outcome::kRejected:
      break;
  }
  if (!r.limited) {
    body.append(R"({"allowed":true})");
    return 200;
  }
  const Decision& d = r.decision;
  const int64_t reset_at = CeilSeconds(int_math::SatAdd(r.now, d.reset_after));
  const int64_t reset_in = CeilSeconds(d.reset_after);
  // The quoted rule id, and each header value in turn, in strings the thread keeps.
  thread_local std::string quoted;
  thread_local std::string scratch;
  quoted.clear();
  AppendJsonString(quoted, r.rule_id);
  const std::string_view quoted_id = quoted;
  auto value = [&](auto&& fill) {
    scratch.clear();
    fill();
    return std::string_view(scratch);
  };
  headers.Add("X-RateLimit-Limit", value([&] { AppendDecimal(scratch, d.limit); }));
  headers.Add("X-RateLimit-Remaining", value([&] { AppendDecimal(scratch, d.remaining); }));
  headers.Add("X-RateLimit-Reset", value([&] { AppendDecimal(scratch, reset_at); }));
  headers.Add("RateLimit-Policy", value([&] {
                AppendLimitItem(scratch, quoted_id, ";q=", d.limit,
                                ";w=", std::max<int64_t>(1, CeilSeconds(r.window)));
              }));
  headers.Add("RateLimit", value([&] {
                AppendLimitItem(scratch, quoted_id, ";r=", d.remaining, ";t=", reset_in);
              }));
  // Built by hand rather than through a JSON DOM: this is the hot path of every check.
  if (r.outcome == Outcome::kAllowed) {
    body.append(R"({"allowed":true,"limit":)");
    AppendDecimal(body, d.limit);
    body.append(R"(,"remaining":)");
    AppendDecimal(body, d.remaining);
    body.append(R"(,"reset_at":)");
    AppendDecimal(body, reset_at);
    body.append(R"(,"rule_id":)").append(quoted_id);
    if (r.algorithm == Algorithm::kLeakyBucket) {
      body.append(R"(,"delay_ms":)");
      AppendDecimal(body, static_cast<int64_t>(int_math::CeilDiv(d.delay, kMicrosPerMilli)));
    }
    if (!r.lease_id.empty()) {
      body.append(R"(,"lease_id":)");
      AppendJsonString(body, r.lease_id);
    }
    body.push_back('}');
    return 200;
  }
  body.append(R"({"allowed":false,"error":{"code":)");
  if (d.cost_exceeds_limit) {
    body.append(R"("COST_EXCEEDS_LIMIT","message":)");
    AppendJsonString(body, absl::StrCat("The request's cost exceeds what rule '",
                                        absl::string_view(r.rule_id.data(), r.rule_id.size()),
                                        "' can ever admit."));
  } else {
    const int64_t retry = std::max<int64_t>(1, CeilSeconds(d.retry_after));
    headers.Add("Retry-After", value([&] { AppendDecimal(scratch, retry); }));
    body.append(R"("RATE_LIMIT_EXCEEDED","message":"Rate limit exceeded. Try again in )");
    AppendDecimal(body, retry);
    body.append(retry == 1 ? R"( second.")" : R"( seconds.")").append(R"(,"retry_after":)");
    AppendDecimal(body, retry);
  }
  body.append(R"(,"limit":)");
  AppendDecimal(body, d.limit);
  body.append(R"(,"remaining":)");
  AppendDecimal(body, d.remaining);
  body.append(R"(,"reset_at":)");
  AppendDecimal(body, reset_at);
  body.append(R"(,"rule_id":)").append(quoted_id).append("}}");
  return 429;
}

Rendered RenderCheckResult(const CheckResult& r) {
  Rendered out;
  ListSink sink(out.headers);
  out.status = RenderCheckInto(r, sink, out.body);
  return out;
}

}  // namespace sluice::http
