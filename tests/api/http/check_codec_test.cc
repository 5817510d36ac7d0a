#include "api/http/check_codec.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace sluice::http {
namespace {

using json = nlohmann::json;

std::string Header(const Rendered& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "<absent>";
}

// Verifies that every field is read, and unknown fields are ignored.
TEST(CheckCodecTest, ParsesEveryField) {
  auto r = ParseCheckRequest(R"({"user_id":"u","api_key":"k","ip_address":"::1",
      "endpoint":"/e","method":"post","tier":"free","headers":{"X-Client":"m"},"cost":3,
      "extra":[1,2]})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->attributes.user_id, "u");
  EXPECT_EQ(r->attributes.api_key, "k");
  EXPECT_TRUE(r->attributes.ip.has_value());
  EXPECT_EQ(r->attributes.endpoint, "/e");
  EXPECT_EQ(r->attributes.method, "post");
  EXPECT_EQ(r->attributes.tier, "free");
  EXPECT_EQ(r->attributes.Header("x-client"), "m");
  EXPECT_EQ(r->cost, 3);
  EXPECT_EQ(ParseCheckRequest("{}")->cost, 1);
}

// Verifies the 400 cases of CONTRACT §5, each with a message naming the problem.
TEST(CheckCodecTest, RejectsBadInput) {
  for (const char* body :
       {"", "{", "[]", "\"x\"", R"({"cost":2.0})", R"({"cost":1e3})", R"({"cost":null})",
        R"({"cost":"1"})", R"({"cost":-1})", R"({"cost":99999999999999999999})", R"({"user_id":5})",
        R"({"headers":"x"})", R"({"headers":{"a":1}})", R"({"ip_address":"999.1.1.1"})",
        "{\"user_id\":\"\xff\xfe\"}"}) {
    auto r = ParseCheckRequest(body);
    EXPECT_FALSE(r.ok()) << body;
    EXPECT_FALSE(r.status().message().empty());
  }
}

// Verifies that an ip_address with an embedded NUL is refused, not read up to the NUL
// ("1.2.3.4\0junk" was accepted as 1.2.3.4), and that other attributes keep their NULs whole.
TEST(CheckCodecTest, RejectsNulInIpAddress) {
  for (const char* body :
       {R"({"ip_address":"1.2.3.4\u0000junk"})", R"({"ip_address":"1.2.3.4\u0000"})",
        R"({"ip_address":"::1\u0000"})", R"({"ip_address":"\u00001.2.3.4"})"}) {
    auto r = ParseCheckRequest(body);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_NE(r.status().message().find("ip_address"), std::string_view::npos);
  }
  auto r = ParseCheckRequest(R"({"user_id":"a\u0000b","headers":{"x\u0000":"v\u0000w"}})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->attributes.user_id, std::string("a\0b", 3));
  EXPECT_EQ(r->attributes.Header(std::string("x\0", 2)), std::string("v\0w", 3));
}

// Verifies that a large `headers` object is read whole, names lowercased, a repeated name
// (in any case) keeping its first position and its last value. 20,000 entries, far more than
// the 64 KiB body limit lets through, so that an insertion cost growing with the count shows.
TEST(CheckCodecTest, ParsesManyHeaders) {
  constexpr int kCount = 20'000;
  std::string body = R"({"user_id":"u","headers":{)";
  for (int i = 0; i < kCount; ++i) {
    absl::StrAppend(&body, i == 0 ? "" : ",", "\"X-H", i, "\":\"v", i, "\"");
  }
  absl::StrAppend(&body, R"(,"x-h7":"again","X-H9":"twice"}})");
  auto r = ParseCheckRequest(body);
  ASSERT_TRUE(r.ok()) << r.status();
  const auto& headers = r->attributes.headers();
  ASSERT_EQ(headers.size(), static_cast<size_t>(kCount));
  for (int i = 0; i < kCount; ++i) {
    ASSERT_EQ(headers[i].first, absl::StrCat("x-h", i));
  }
  EXPECT_EQ(headers[7].second, "again");
  EXPECT_EQ(headers[9].second, "twice");
  EXPECT_EQ(headers[8].second, "v8");
  EXPECT_EQ(r->attributes.Header("X-H19999"), "v19999");
}

// Verifies that two `headers` objects in one body add up, as duplicate JSON keys always did.
TEST(CheckCodecTest, MergesRepeatedHeadersObjects) {
  auto r = ParseCheckRequest(R"({"headers":{"a":"1","b":"2"},"headers":null,"headers":{"A":"3"}})");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->attributes.headers().size(), 2u);
  EXPECT_EQ(r->attributes.Header("a"), "3");
  EXPECT_EQ(r->attributes.Header("b"), "2");
}

CheckResult Limited(CheckResult::Outcome outcome, Decision d) {
  CheckResult r;
  r.outcome = outcome;
  r.limited = true;
  r.decision = d;
  r.rule_id = "free-hourly";
  r.window = 3600 * kMicrosPerSecond;
  r.now = int64_t{1764000000} * kMicrosPerSecond + 1;  // just past a whole second
  return r;
}

// Verifies the allowed shape and every header, with seconds rounded up.
TEST(CheckCodecTest, RendersAllowed) {
  Decision d{
      .allowed = true, .limit = 1000, .remaining = 742, .reset_after = 2518 * kMicrosPerSecond - 1};
  Rendered r = RenderCheckResult(Limited(CheckResult::Outcome::kAllowed, d));
  EXPECT_EQ(r.status, 200u);
  json body = json::parse(r.body);
  EXPECT_EQ(body, json::parse(R"({"allowed":true,"limit":1000,"remaining":742,
                                  "reset_at":1764002518,"rule_id":"free-hourly"})"));
  EXPECT_EQ(Header(r, "X-RateLimit-Limit"), "1000");
  EXPECT_EQ(Header(r, "X-RateLimit-Remaining"), "742");
  EXPECT_EQ(Header(r, "X-RateLimit-Reset"), "1764002518");
  EXPECT_EQ(Header(r, "RateLimit-Policy"), "\"free-hourly\";q=1000;w=3600");
  EXPECT_EQ(Header(r, "RateLimit"), "\"free-hourly\";r=742;t=2518");
  EXPECT_EQ(Header(r, "Retry-After"), "<absent>");
}

// Verifies the throttled shape: Retry-After equals retry_after, whole seconds, at least 1.
TEST(CheckCodecTest, RendersThrottled) {
  Decision d{.allowed = false,
             .limit = 1000,
             .remaining = 0,
             .reset_after = 60 * kMicrosPerSecond,
             .retry_after = 59 * kMicrosPerSecond + 1};
  Rendered r = RenderCheckResult(Limited(CheckResult::Outcome::kRejected, d));
  EXPECT_EQ(r.status, 429u);
  json body = json::parse(r.body);
  EXPECT_EQ(body["allowed"], false);
  EXPECT_EQ(body["error"]["code"], "RATE_LIMIT_EXCEEDED");
  EXPECT_EQ(body["error"]["retry_after"], 60);
  EXPECT_EQ(body["error"]["message"], "Rate limit exceeded. Try again in 60 seconds.");
  EXPECT_EQ(body["error"]["rule_id"], "free-hourly");
  EXPECT_EQ(Header(r, "Retry-After"), "60");

  d.retry_after = 1;  // a microsecond still reads as one second
  EXPECT_EQ(Header(RenderCheckResult(Limited(CheckResult::Outcome::kRejected, d)), "Retry-After"),
            "1");
}

TEST(CheckCodecTest, RendersCostExceedsLimitWithoutRetryAfter) {
  Decision d{.allowed = false, .cost_exceeds_limit = true, .limit = 10, .remaining = 10};
  Rendered r = RenderCheckResult(Limited(CheckResult::Outcome::kRejected, d));
  EXPECT_EQ(r.status, 429u);
  EXPECT_EQ(json::parse(r.body)["error"]["code"], "COST_EXCEEDS_LIMIT");
  EXPECT_EQ(Header(r, "Retry-After"), "<absent>");
}

TEST(CheckCodecTest, RendersLeakyBucketDelay) {
  CheckResult result = Limited(CheckResult::Outcome::kAllowed,
                               {.allowed = true, .limit = 5, .remaining = 3, .delay = 1500});
  result.algorithm = Algorithm::kLeakyBucket;
  EXPECT_EQ(json::parse(RenderCheckResult(result).body)["delay_ms"], 2);
}

TEST(CheckCodecTest, RendersListsAndNoRule) {
  CheckResult none;
  Rendered r = RenderCheckResult(none);
  EXPECT_EQ(r.body, R"({"allowed":true})");
  EXPECT_TRUE(r.headers.empty());

  CheckResult allow;
  allow.outcome = CheckResult::Outcome::kAllowlisted;
  EXPECT_EQ(json::parse(RenderCheckResult(allow).body),
            json::parse(R"({"allowed":true,"allowlisted":true})"));

  CheckResult deny;
  deny.outcome = CheckResult::Outcome::kDenied;
  deny.deny_reason = "abuse";
  Rendered d = RenderCheckResult(deny);
  EXPECT_EQ(d.status, 403u);
  EXPECT_EQ(json::parse(d.body)["error"]["code"], "BLOCKED");
  EXPECT_EQ(json::parse(d.body)["error"]["reason"], "abuse");

  CheckResult down;
  down.outcome = CheckResult::Outcome::kStoreUnavailable;
  Rendered s = RenderCheckResult(down);
  EXPECT_EQ(s.status, 503u);
  EXPECT_EQ(Header(s, "Retry-After"), "1");
  EXPECT_EQ(json::parse(s.body)["error"]["code"], "STORE_UNAVAILABLE");
}

}  // namespace
}  // namespace sluice::http
