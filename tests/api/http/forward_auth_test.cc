#include "api/http/forward_auth.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <utility>

#include "nlohmann/json.hpp"

namespace sluice::http {
namespace {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;

Request Make(std::initializer_list<std::pair<std::string, std::string>> fields,
             bhttp::verb method = bhttp::verb::get, std::string target = "/v1/ratelimit/auth") {
  Request request(method, target, 11);
  for (const auto& [name, value] : fields) request.insert(name, value);
  return request;
}

absl::StatusOr<CheckRequest> Parse(const Request& request) {
  const std::string_view target(request.target().data(), request.target().size());
  const std::optional<std::string_view> suffix =
      ForwardAuthSuffix(target.substr(0, target.find('?')));
  EXPECT_TRUE(suffix.has_value()) << target;
  return ParseForwardAuth(request, suffix.value_or(""));
}

std::string Header(const Rendered& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "<absent>";
}

// Verifies which paths are the endpoint, and what the Envoy path_prefix form leaves.
TEST(ForwardAuthTest, RecognisesItsPaths) {
  EXPECT_EQ(ForwardAuthSuffix("/v1/ratelimit/auth"), "");
  EXPECT_EQ(ForwardAuthSuffix("/v1/ratelimit/auth/"), "/");
  EXPECT_EQ(ForwardAuthSuffix("/v1/ratelimit/auth/api/pay"), "/api/pay");
  EXPECT_EQ(ForwardAuthSuffix("/v1/ratelimit/authx"), std::nullopt);
  EXPECT_EQ(ForwardAuthSuffix("/v1/ratelimit/aut"), std::nullopt);
  EXPECT_EQ(ForwardAuthSuffix("/v1/ratelimit/check"), std::nullopt);
}

// Verifies that every X-Sluice-* field is read into its attribute.
TEST(ForwardAuthTest, ReadsEveryField) {
  auto r = Parse(Make({{"X-Sluice-User-Id", "u"},
                       {"X-Sluice-Api-Key", "k"},
                       {"X-Sluice-Ip", "2001:db8::1"},
                       {"X-Sluice-Endpoint", "/api/pay?x=1"},
                       {"X-Sluice-Method", "post"},
                       {"X-Sluice-Tier", "free"},
                       {"X-Sluice-Cost", "7"},
                       {"X-Sluice-Header-X-Client", "mobile"},
                       {"X-Other", "ignored"}}));
  ASSERT_TRUE(r.ok()) << r.status();
  const rules::RequestAttributes& a = r->attributes;
  EXPECT_EQ(a.user_id, "u");
  EXPECT_EQ(a.api_key, "k");
  EXPECT_EQ(a.ip_address, "2001:db8::1");
  EXPECT_TRUE(a.ip.has_value());
  EXPECT_EQ(a.endpoint, "/api/pay?x=1");  // explicit: taken as it is
  EXPECT_EQ(a.method, "post");
  EXPECT_EQ(a.tier, "free");
  EXPECT_EQ(r->cost, 7);
  EXPECT_EQ(a.Header("x-client"), "mobile");
  EXPECT_EQ(a.headers().size(), 1u);
}

// Verifies that an auth request with no attributes is a check with cost 1 and nothing set, and
// that the subrequest's own method and target are not read on the bare path (Traefik sends GET).
TEST(ForwardAuthTest, NothingGivenIsNothingSet) {
  auto r = Parse(Make({}, bhttp::verb::post, "/v1/ratelimit/auth?endpoint=/x"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->cost, 1);
  EXPECT_EQ(r->attributes.endpoint, "");
  EXPECT_EQ(r->attributes.method, "");
  EXPECT_EQ(r->attributes.ip_address, "");
  EXPECT_TRUE(r->attributes.headers().empty());
}

// Verifies that header names are case-insensitive, and that headers.NAME is stored lowercased.
TEST(ForwardAuthTest, NamesAreCaseInsensitive) {
  auto r = Parse(Make({{"x-sluice-user-id", "a"},
                       {"X-SLUICE-TIER", "pro"},
                       {"x-SlUiCe-HeAdEr-X-Client", "web"},
                       {"X-SLUICE-HEADER-x-region", "eu"}}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->attributes.user_id, "a");
  EXPECT_EQ(r->attributes.tier, "pro");
  EXPECT_EQ(r->attributes.Header("X-CLIENT"), "web");
  EXPECT_EQ(r->attributes.headers()[0].first, "x-client");
  EXPECT_EQ(r->attributes.Header("x-region"), "eu");
  // A bare prefix names no header.
  auto bare = Parse(Make({{"X-Sluice-Header-", "v"}}));
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_TRUE(bare->attributes.headers().empty());
}

// Verifies the fallbacks of Traefik (X-Forwarded-*) and the nginx convention (X-Original-*):
// the path part only, and the first of them present.
TEST(ForwardAuthTest, FallsBackToGatewayHeaders) {
  auto traefik = Parse(Make({{"X-Forwarded-Uri", "/api/pay?card=1"},
                             {"X-Forwarded-Method", "PUT"},
                             {"X-Forwarded-For", "198.51.100.7"},
                             {"X-Original-URI", "/other"},
                             {"X-Original-Method", "DELETE"}}));
  ASSERT_TRUE(traefik.ok()) << traefik.status();
  EXPECT_EQ(traefik->attributes.endpoint, "/api/pay");
  EXPECT_EQ(traefik->attributes.method, "PUT");
  EXPECT_EQ(traefik->attributes.ip_address, "198.51.100.7");

  auto nginx = Parse(Make({{"X-Original-URI", "/api/orders?id=3"}, {"X-Original-Method", "PATCH"}},
                          bhttp::verb::patch));
  ASSERT_TRUE(nginx.ok()) << nginx.status();
  EXPECT_EQ(nginx->attributes.endpoint, "/api/orders");
  EXPECT_EQ(nginx->attributes.method, "PATCH");

  // An empty fallback field counts as absent.
  auto empty = Parse(Make({{"X-Forwarded-Uri", ""}, {"X-Original-URI", "/o"}}));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->attributes.endpoint, "/o");
}

// Verifies that an explicit X-Sluice-* field always wins over every fallback.
TEST(ForwardAuthTest, ExplicitFieldsWin) {
  auto r = Parse(Make({{"X-Forwarded-Uri", "/fallback"},
                       {"X-Original-URI", "/fallback2"},
                       {"X-Forwarded-Method", "PUT"},
                       {"X-Forwarded-For", "198.51.100.7"},
                       {"X-Sluice-Endpoint", "/explicit"},
                       {"X-Sluice-Method", "GET"},
                       {"X-Sluice-Ip", "10.1.2.3"}},
                      bhttp::verb::post, "/v1/ratelimit/auth/suffix"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->attributes.endpoint, "/explicit");
  EXPECT_EQ(r->attributes.method, "GET");
  EXPECT_EQ(r->attributes.ip_address, "10.1.2.3");
  // An empty explicit field is absent: the fallback applies.
  auto empty = Parse(Make({{"X-Sluice-Endpoint", ""}, {"X-Original-URI", "/o"}}));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->attributes.endpoint, "/o");
}

// Verifies Envoy's path_prefix form: the rest of the path (query cut off) is the endpoint and
// the subrequest's method the method, each when no header says otherwise.
TEST(ForwardAuthTest, ReadsTheEnvoyPathPrefixForm) {
  auto r = Parse(Make({{"X-Forwarded-Uri", "/not-this"}}, bhttp::verb::delete_,
                      "/v1/ratelimit/auth/api/items/7?force=1"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->attributes.endpoint, "/api/items/7");
  EXPECT_EQ(r->attributes.method, "DELETE");
  auto root = Parse(Make({}, bhttp::verb::get, "/v1/ratelimit/auth/"));
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_EQ(root->attributes.endpoint, "/");
  auto told =
      Parse(Make({{"X-Forwarded-Method", "PUT"}}, bhttp::verb::get, "/v1/ratelimit/auth/a"));
  ASSERT_TRUE(told.ok()) << told.status();
  EXPECT_EQ(told->attributes.method, "PUT");
}

// Verifies that the ip comes from X-Forwarded-For's last address (the one the gateway saw),
// whitespace and empty entries aside, across repeated fields.
TEST(ForwardAuthTest, TakesTheLastForwardedForAddress) {
  struct Case {
    std::initializer_list<std::pair<std::string, std::string>> fields;
    const char* ip;
  };
  for (const Case& c : {
           Case{{{"X-Forwarded-For", "203.0.113.9"}}, "203.0.113.9"},
           Case{{{"X-Forwarded-For", "1.1.1.1, 10.0.0.2 ,  198.51.100.3"}}, "198.51.100.3"},
           Case{{{"X-Forwarded-For", "1.1.1.1, 2001:db8::5, "}}, "2001:db8::5"},
           Case{{{"X-Forwarded-For", "1.1.1.1"}, {"X-Forwarded-For", "2.2.2.2, 3.3.3.3"}},
                "3.3.3.3"},
           Case{{{"X-Forwarded-For", " , "}}, ""},
       }) {
    auto r = Parse(Make(c.fields));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->attributes.ip_address, c.ip);
  }
}

// Verifies the 400s: a cost that is not a non-negative integer, an ip that is not an address
// (explicit or forwarded), and a single-valued X-Sluice-* field given twice; each message names
// the header.
TEST(ForwardAuthTest, RejectsBadInput) {
  struct Case {
    std::initializer_list<std::pair<std::string, std::string>> fields;
    const char* named;
  };
  for (const Case& c : {
           Case{{{"X-Sluice-Cost", "-1"}}, "X-Sluice-Cost"},
           Case{{{"X-Sluice-Cost", "+1"}}, "X-Sluice-Cost"},
           Case{{{"X-Sluice-Cost", "1.0"}}, "X-Sluice-Cost"},
           Case{{{"X-Sluice-Cost", "1e3"}}, "X-Sluice-Cost"},
           Case{{{"X-Sluice-Cost", "one"}}, "X-Sluice-Cost"},
           Case{{{"X-Sluice-Cost", "1 2"}}, "X-Sluice-Cost"},
           Case{{{"X-Sluice-Cost", ""}}, "X-Sluice-Cost"},
           Case{{{"X-Sluice-Cost", "9223372036854775808"}}, "X-Sluice-Cost"},
           Case{{{"X-Sluice-Cost", "99999999999999999999"}}, "X-Sluice-Cost"},
           Case{{{"X-Sluice-Ip", "999.1.1.1"}}, "X-Sluice-Ip"},
           Case{{{"X-Sluice-Ip", "1.2.3.4:80"}}, "X-Sluice-Ip"},
           Case{{{"X-Sluice-Ip", "localhost"}}, "X-Sluice-Ip"},
           Case{{{"X-Forwarded-For", "1.2.3.4, unknown"}}, "X-Forwarded-For"},
           Case{{{"X-Sluice-User-Id", "a"}, {"x-sluice-user-id", "b"}}, "x-sluice-user-id"},
           Case{{{"X-Sluice-Cost", "1"}, {"X-Sluice-Cost", "1"}}, "x-sluice-cost"},
       }) {
    auto r = Parse(Make(c.fields));
    ASSERT_FALSE(r.ok()) << c.named << " " << c.fields.begin()->second;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.named), std::string_view::npos) << r.status();
  }
  // A bad X-Forwarded-For does not matter when X-Sluice-Ip is given.
  EXPECT_TRUE(Parse(Make({{"X-Sluice-Ip", "1.2.3.4"}, {"X-Forwarded-For", "junk"}})).ok());
}

// Verifies the cost bounds that are accepted.
TEST(ForwardAuthTest, ReadsCostBounds) {
  EXPECT_EQ(Parse(Make({{"X-Sluice-Cost", "0"}}))->cost, 0);
  EXPECT_EQ(Parse(Make({{"X-Sluice-Cost", "007"}}))->cost, 7);
  EXPECT_EQ(Parse(Make({{"X-Sluice-Cost", "9223372036854775807"}}))->cost,
            int64_t{9223372036854775807});
}

CheckResult Limited(CheckResult::Outcome outcome, Decision d) {
  CheckResult r;
  r.outcome = outcome;
  r.limited = true;
  r.decision = d;
  r.rule_id = "free-hourly";
  r.window = 3600 * kMicrosPerSecond;
  r.now = int64_t{1764000000} * kMicrosPerSecond + 1;
  return r;
}

// Verifies that an allowed check is a bodiless 204 with every limit header of CONTRACT §5.
TEST(ForwardAuthTest, RendersAllowedAs204WithHeaders) {
  Decision d{
      .allowed = true, .limit = 1000, .remaining = 742, .reset_after = 2518 * kMicrosPerSecond - 1};
  Rendered r = RenderForwardAuth(Limited(CheckResult::Outcome::kAllowed, d));
  EXPECT_EQ(r.status, 204u);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(Header(r, "X-RateLimit-Limit"), "1000");
  EXPECT_EQ(Header(r, "X-RateLimit-Remaining"), "742");
  EXPECT_EQ(Header(r, "X-RateLimit-Reset"), "1764002518");
  EXPECT_EQ(Header(r, "RateLimit-Policy"), "\"free-hourly\";q=1000;w=3600");
  EXPECT_EQ(Header(r, "RateLimit"), "\"free-hourly\";r=742;t=2518");
  EXPECT_EQ(Header(r, "Retry-After"), "<absent>");
}

// Verifies that the path_prefix form answers an allowed check 200 (Envoy's ext_authz takes only
// a 200 as OK), still without a body, and its refusals as the bare endpoint does.
TEST(ForwardAuthTest, PathPrefixFormAllowsWith200) {
  Decision d{.allowed = true, .limit = 10, .remaining = 9, .reset_after = kMicrosPerSecond};
  Rendered r = RenderForwardAuth(Limited(CheckResult::Outcome::kAllowed, d), true);
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(Header(r, "X-RateLimit-Remaining"), "9");
  CheckResult none;
  EXPECT_EQ(RenderForwardAuth(none, true).status, 200u);
  d.allowed = false;
  d.retry_after = kMicrosPerSecond;
  EXPECT_EQ(RenderForwardAuth(Limited(CheckResult::Outcome::kRejected, d), true).status, 429u);
}

// Verifies that a throttled check is a bodiless 429 with Retry-After and the limit headers.
TEST(ForwardAuthTest, RendersThrottledAs429WithRetryAfter) {
  Decision d{.allowed = false,
             .limit = 1000,
             .remaining = 0,
             .reset_after = 60 * kMicrosPerSecond,
             .retry_after = 59 * kMicrosPerSecond + 1};
  Rendered r = RenderForwardAuth(Limited(CheckResult::Outcome::kRejected, d));
  EXPECT_EQ(r.status, 429u);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(Header(r, "Retry-After"), "60");
  EXPECT_EQ(Header(r, "X-RateLimit-Remaining"), "0");
  EXPECT_EQ(Header(r, "RateLimit"), "\"free-hourly\";r=0;t=60");
}

// Verifies the other outcomes: no rule and allow-listed are a bare 204, deny-listed a bare 403,
// a fail_closed store failure a 503 that keeps its error object and Retry-After: 1.
TEST(ForwardAuthTest, RendersListsNoRuleAndStoreFailure) {
  CheckResult none;
  Rendered n = RenderForwardAuth(none);
  EXPECT_EQ(n.status, 204u);
  EXPECT_EQ(n.body, "");
  EXPECT_TRUE(n.headers.empty());

  CheckResult allow;
  allow.outcome = CheckResult::Outcome::kAllowlisted;
  Rendered a = RenderForwardAuth(allow);
  EXPECT_EQ(a.status, 204u);
  EXPECT_EQ(a.body, "");
  EXPECT_TRUE(a.headers.empty());

  CheckResult deny;
  deny.outcome = CheckResult::Outcome::kDenied;
  deny.deny_reason = "abuse";
  Rendered b = RenderForwardAuth(deny);
  EXPECT_EQ(b.status, 403u);
  EXPECT_EQ(b.body, "");

  CheckResult down;
  down.outcome = CheckResult::Outcome::kStoreUnavailable;
  Rendered s = RenderForwardAuth(down);
  EXPECT_EQ(s.status, 503u);
  EXPECT_EQ(Header(s, "Retry-After"), "1");
  EXPECT_EQ(json::parse(s.body)["error"]["code"], "STORE_UNAVAILABLE");
}

}  // namespace
}  // namespace sluice::http
