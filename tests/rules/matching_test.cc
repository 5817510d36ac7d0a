// Matching of Sluice rules: every statement of CONTRACT §3.1 about `match`, `key`, groups,
// priorities, `enabled` and `mode`, plus counter keys.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "rules/rule_set.h"
#include "tests/rules/test_util.h"

namespace sluice::rules {
namespace {

using ::sluice::rules::testing::Applicable;
using ::sluice::rules::testing::LoadOk;
using ::sluice::rules::testing::LoadYaml;
using ::sluice::rules::testing::Req;
using ::sluice::rules::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Verifies that `match: {}` (and no `match` at all) matches every request.
TEST(RuleMatchTest, EmptyMatchMatchesEverything) {
  auto set = LoadYaml(R"(
rules:
  - {id: all, match: {}, limit: 1, window: 1s}
  - {id: no-match-key, limit: 1, window: 1s}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_THAT(Applicable(*set, Req({})), ElementsAre("all", "no-match-key"));
  EXPECT_THAT(Applicable(*set, Req({{"user_id", "u"}})), ElementsAre("all", "no-match-key"));
}

// Verifies exact matching and that every listed attribute must match.
TEST(RuleMatchTest, AllAttributesMustMatch) {
  auto set = LoadYaml(R"(
rules:
  - id: r
    match: {tier: free, endpoint: /api/search}
    limit: 1
    window: 1s
)");
  ASSERT_NE(set, nullptr);
  EXPECT_THAT(Applicable(*set, Req({{"tier", "free"}, {"endpoint", "/api/search"}})),
              ElementsAre("r"));
  EXPECT_THAT(Applicable(*set, Req({{"tier", "free"}, {"endpoint", "/api/other"}})), IsEmpty());
  EXPECT_THAT(Applicable(*set, Req({{"tier", "Free"}, {"endpoint", "/api/search"}})), IsEmpty());
}

// Verifies globs with `*` at the start, middle and end, and several stars.
TEST(RuleMatchTest, GlobsAnywhere) {
  auto set = LoadYaml(R"(
rules:
  - {id: prefix, match: {endpoint: "/api/payments*"}, limit: 1, window: 1s}
  - {id: suffix, match: {endpoint: "*/refund"}, limit: 1, window: 1s}
  - {id: middle, match: {endpoint: "/api/*/export"}, limit: 1, window: 1s}
  - {id: many, match: {user_id: "svc-*-eu-*"}, limit: 1, window: 1s}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_THAT(Applicable(*set, Req({{"endpoint", "/api/payments"}})), ElementsAre("prefix"));
  EXPECT_THAT(Applicable(*set, Req({{"endpoint", "/api/payments/42/refund"}})),
              ElementsAre("prefix", "suffix"));
  EXPECT_THAT(Applicable(*set, Req({{"endpoint", "/api/users/export"}})), ElementsAre("middle"));
  EXPECT_THAT(Applicable(*set, Req({{"endpoint", "/api/export"}})), IsEmpty());
  EXPECT_THAT(Applicable(*set, Req({{"user_id", "svc-billing-eu-1"}})), ElementsAre("many"));
  EXPECT_THAT(Applicable(*set, Req({{"user_id", "svc-billing-us-1"}})), IsEmpty());
}

// Verifies that `\*` in a pattern is a literal star.
TEST(RuleMatchTest, EscapedStarIsLiteral) {
  auto set = LoadYaml(R"(
rules:
  - {id: literal, match: {endpoint: '/files/\*'}, limit: 1, window: 1s}
  - {id: literal-then-glob, match: {endpoint: '/a\**'}, limit: 1, window: 1s}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_THAT(Applicable(*set, Req({{"endpoint", "/files/*"}})), ElementsAre("literal"));
  EXPECT_THAT(Applicable(*set, Req({{"endpoint", "/files/report.pdf"}})), IsEmpty());
  EXPECT_THAT(Applicable(*set, Req({{"endpoint", "/a*b"}})), ElementsAre("literal-then-glob"));
  EXPECT_THAT(Applicable(*set, Req({{"endpoint", "/ab"}})), IsEmpty());
}

// Verifies IPv4 CIDR, IPv6 CIDR and exact addresses for ip_address.
TEST(RuleMatchTest, IpCidrV4AndV6) {
  auto set = LoadYaml(R"(
rules:
  - {id: v4-net, match: {ip_address: 10.0.0.0/8}, limit: 1, window: 1s}
  - {id: v6-net, match: {ip_address: "2001:db8::/32"}, limit: 1, window: 1s}
  - {id: v4-host, match: {ip_address: 192.168.1.1}, limit: 1, window: 1s}
  - {id: v6-host, match: {ip_address: "::1"}, limit: 1, window: 1s}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_THAT(Applicable(*set, Req({{"ip_address", "10.20.30.40"}})), ElementsAre("v4-net"));
  EXPECT_THAT(Applicable(*set, Req({{"ip_address", "::ffff:10.1.1.1"}})), ElementsAre("v4-net"));
  EXPECT_THAT(Applicable(*set, Req({{"ip_address", "11.0.0.1"}})), IsEmpty());
  EXPECT_THAT(Applicable(*set, Req({{"ip_address", "2001:db8:aa::7"}})), ElementsAre("v6-net"));
  EXPECT_THAT(Applicable(*set, Req({{"ip_address", "2001:db9::7"}})), IsEmpty());
  EXPECT_THAT(Applicable(*set, Req({{"ip_address", "192.168.1.1"}})), ElementsAre("v4-host"));
  EXPECT_THAT(Applicable(*set, Req({{"ip_address", "192.168.1.2"}})), IsEmpty());
  EXPECT_THAT(Applicable(*set, Req({{"ip_address", "0:0::1"}})), ElementsAre("v6-host"));
}

// Verifies that a request whose ip_address was assigned as text (not through SetIpAddress)
// still matches CIDR rules, and an unparseable one matches none.
TEST(RuleMatchTest, IpAssignedAsTextIsParsed) {
  auto set = LoadYaml(R"(
rules:
  - {id: net, match: {ip_address: 10.0.0.0/8}, limit: 1, window: 1s}
)");
  ASSERT_NE(set, nullptr);
  RequestAttributes r;
  r.ip_address = "10.9.9.9";
  EXPECT_THAT(Applicable(*set, r), ElementsAre("net"));
  r.ip_address = "10.9.9";
  EXPECT_THAT(Applicable(*set, r), IsEmpty());
}

// Verifies that method matching ignores case, for exact patterns and globs.
TEST(RuleMatchTest, MethodIsCaseInsensitive) {
  auto set = LoadYaml(R"(
rules:
  - {id: post, match: {method: POST}, limit: 1, window: 1s}
  - {id: p-star, match: {method: "p*"}, limit: 1, window: 1s}
  - {id: lower-get, match: {method: get}, limit: 1, window: 1s}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_THAT(Applicable(*set, Req({{"method", "post"}})), ElementsAre("post", "p-star"));
  EXPECT_THAT(Applicable(*set, Req({{"method", "Post"}})), ElementsAre("post", "p-star"));
  EXPECT_THAT(Applicable(*set, Req({{"method", "PUT"}})), ElementsAre("p-star"));
  EXPECT_THAT(Applicable(*set, Req({{"method", "GET"}})), ElementsAre("lower-get"));
}

// Verifies that header names are case-insensitive in rules and in requests; values are not.
TEST(RuleMatchTest, HeaderNamesAreCaseInsensitive) {
  auto set = LoadYaml(R"(
rules:
  - {id: upper-in-rule, match: {headers.X-Client: mobile}, limit: 1, window: 1s}
  - {id: glob, match: {headers.x-version: "2.*"}, limit: 1, window: 1s}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_THAT(Applicable(*set, Req({{"headers.x-client", "mobile"}})),
              ElementsAre("upper-in-rule"));
  EXPECT_THAT(Applicable(*set, Req({{"headers.X-CLIENT", "mobile"}})),
              ElementsAre("upper-in-rule"));
  EXPECT_THAT(Applicable(*set, Req({{"headers.x-client", "Mobile"}})), IsEmpty());
  EXPECT_THAT(Applicable(*set, Req({{"headers.X-Version", "2.1"}})), ElementsAre("glob"));
}

// Verifies that a rule whose matched attribute is absent does not match, even a `*` glob.
TEST(RuleMatchTest, AbsentAttributeDoesNotMatch) {
  auto set = LoadYaml(R"(
rules:
  - {id: any-tier, match: {tier: "*"}, limit: 1, window: 1s}
  - {id: any-header, match: {headers.x-client: "*"}, limit: 1, window: 1s}
  - {id: any-net, match: {ip_address: 0.0.0.0/0}, limit: 1, window: 1s}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_THAT(Applicable(*set, Req({})), IsEmpty());
  EXPECT_THAT(Applicable(*set, Req({{"tier", "free"}})), ElementsAre("any-tier"));
  EXPECT_THAT(Applicable(*set, Req({{"headers.x-client", "web"}})), ElementsAre("any-header"));
  EXPECT_THAT(Applicable(*set, Req({{"ip_address", "1.2.3.4"}})), ElementsAre("any-net"));
}

// Verifies that an empty string counts as absent, in `match` and in `key`.
TEST(RuleMatchTest, EmptyStringIsAbsent) {
  auto set = LoadYaml(R"(
rules:
  - {id: any-tier, match: {tier: "*"}, limit: 1, window: 1s}
  - {id: per-user, key: [user_id], limit: 1, window: 1s}
  - {id: per-header, key: [headers.x-team], limit: 1, window: 1s}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_THAT(Applicable(*set, Req({{"tier", ""}, {"user_id", ""}, {"headers.x-team", ""}})),
              IsEmpty());
  EXPECT_THAT(Applicable(*set, Req({{"tier", "t"}, {"user_id", "u"}, {"headers.x-team", "a"}})),
              ElementsAre("any-tier", "per-user", "per-header"));
}

// Verifies that a rule whose key attribute is absent does not apply.
TEST(RuleKeyTest, AbsentKeyAttributeMeansNotApplicable) {
  auto set = LoadYaml(R"(
rules:
  - {id: per-user-endpoint, key: [user_id, endpoint], limit: 1, window: 1s}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_THAT(Applicable(*set, Req({{"user_id", "u"}})), IsEmpty());
  EXPECT_THAT(Applicable(*set, Req({{"endpoint", "/x"}})), IsEmpty());
  EXPECT_THAT(Applicable(*set, Req({{"user_id", "u"}, {"endpoint", "/x"}})),
              ElementsAre("per-user-endpoint"));
}

std::string Key(const RuleSet& set, std::string_view rule_id, const RequestAttributes& r) {
  const Rule* rule = set.FindRule(rule_id);
  EXPECT_NE(rule, nullptr) << rule_id;
  std::string key;
  EXPECT_TRUE(RuleSet::CounterKey(*rule, r, &key)) << rule_id;
  return key;
}

// Verifies one counter per distinct tuple of key values, per rule.
TEST(RuleKeyTest, CounterPerKeyTuple) {
  auto set = LoadYaml(R"(
rules:
  - {id: a, key: [user_id, endpoint], limit: 1, window: 1s}
  - {id: b, key: [user_id, endpoint], limit: 1, window: 1s}
)");
  ASSERT_NE(set, nullptr);
  const auto u1_x = Req({{"user_id", "u1"}, {"endpoint", "/x"}});
  const auto u1_y = Req({{"user_id", "u1"}, {"endpoint", "/y"}});
  const auto u2_x = Req({{"user_id", "u2"}, {"endpoint", "/x"}});
  const auto u1_x_other = Req({{"user_id", "u1"}, {"endpoint", "/x"}, {"tier", "free"}});
  EXPECT_NE(Key(*set, "a", u1_x), Key(*set, "a", u1_y));
  EXPECT_NE(Key(*set, "a", u1_x), Key(*set, "a", u2_x));
  EXPECT_EQ(Key(*set, "a", u1_x), Key(*set, "a", u1_x_other));  // tier is not in the key
  EXPECT_NE(Key(*set, "a", u1_x), Key(*set, "b", u1_x));        // per rule
  EXPECT_EQ(Key(*set, "a", u1_x), "rule|a|sliding_window_counter|1000000|user_id=u1|endpoint=/x");
}

// Verifies that `key: []` is one counter shared by every request.
TEST(RuleKeyTest, EmptyKeyIsOneSharedCounter) {
  auto set = LoadYaml(R"(
rules:
  - {id: global, key: [], limit: 1000, window: 1s}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_THAT(Applicable(*set, Req({})), ElementsAre("global"));
  EXPECT_EQ(Key(*set, "global", Req({{"user_id", "u1"}})), Key(*set, "global", Req({})));
}

// Verifies that separators in values are escaped, so different tuples never share a key.
TEST(RuleKeyTest, SeparatorsAreEscaped) {
  auto set = LoadYaml(R"(
rules:
  - {id: "x|y", key: [user_id, api_key], limit: 1, window: 1s}
  - {id: "x", key: [user_id, api_key], limit: 1, window: 1s}
)");
  ASSERT_NE(set, nullptr);
  const std::string k1 = Key(*set, "x|y", Req({{"user_id", "a|b"}, {"api_key", "c"}}));
  const std::string k2 = Key(*set, "x|y", Req({{"user_id", "a"}, {"api_key", "b|c"}}));
  const std::string k3 = Key(*set, "x|y", Req({{"user_id", "a=b"}, {"api_key", "c"}}));
  const std::string k4 = Key(*set, "x|y", Req({{"user_id", "a%7Cb"}, {"api_key", "c"}}));
  EXPECT_NE(k1, k2);
  EXPECT_NE(k1, k3);
  EXPECT_NE(k1, k4);  // the escape character itself is escaped
  EXPECT_EQ(k1, "rule|x%7Cy|sliding_window_counter|1000000|user_id=a%7Cb|api_key=c");
  // A rule id containing the separator cannot collide with another rule's key either.
  EXPECT_NE(Key(*set, "x|y", Req({{"user_id", "a"}, {"api_key", "c"}})),
            Key(*set, "x", Req({{"user_id", "a"}, {"api_key", "c"}})));
  // Braces would form a Redis Cluster hash tag.
  EXPECT_EQ(Key(*set, "x", Req({{"user_id", "{a}"}, {"api_key", "c"}})),
            "rule|x|sliding_window_counter|1000000|user_id=%7Ba%7D|api_key=c");
}

// Verifies that equivalent spellings of a method or an IP address share a counter.
TEST(RuleKeyTest, MethodAndIpAreNormalised) {
  auto set = LoadYaml(R"(
rules:
  - {id: r, key: [method, ip_address], limit: 1, window: 1s}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(Key(*set, "r", Req({{"method", "post"}, {"ip_address", "::ffff:10.0.0.1"}})),
            Key(*set, "r", Req({{"method", "POST"}, {"ip_address", "10.0.0.1"}})));
  RequestAttributes text_only;
  text_only.method = "GET";
  text_only.ip_address = "2001:DB8::1";
  EXPECT_EQ(Key(*set, "r", text_only),
            "rule|r|sliding_window_counter|1000000|method=GET|"
            "ip_address=2001:db8::1");
}

// Verifies that the key changes with the algorithm or window, so a reload starts a new counter,
// and that CounterKey reports an absent key attribute.
TEST(RuleKeyTest, AlgorithmAndWindowAreInTheKey) {
  TempDir dir;
  auto before = LoadOk({dir.Write("a.yaml", R"(
rules:
  - {id: r, key: [user_id], limit: 10, window: 1s}
)")});
  auto other_window = LoadOk({dir.Write("b.yaml", R"(
rules:
  - {id: r, key: [user_id], limit: 10, window: 2s}
)")});
  auto other_algorithm = LoadOk({dir.Write("c.yaml", R"(
rules:
  - {id: r, key: [user_id], limit: 10, window: 1s, algorithm: fixed_window}
)")});
  auto other_limit = LoadOk({dir.Write("d.yaml", R"(
rules:
  - {id: r, key: [user_id], limit: 20, window: 1s}
)")});
  auto bucket = LoadOk({dir.Write("e.yaml", R"(
rules:
  - {id: r, key: [user_id], limit: 10, window: 1s, algorithm: token_bucket}
)")});
  auto bucket_other_limit = LoadOk({dir.Write("f.yaml", R"(
rules:
  - {id: r, key: [user_id], limit: 20, window: 1s, algorithm: token_bucket}
)")});
  ASSERT_TRUE(before && other_window && other_algorithm && other_limit && bucket &&
              bucket_other_limit);
  const auto r = Req({{"user_id", "u"}});
  EXPECT_NE(Key(*before, "r", r), Key(*other_window, "r", r));
  EXPECT_NE(Key(*before, "r", r), Key(*other_algorithm, "r", r));
  // A counting algorithm keeps its counter across a limit change; a bucket, whose state is
  // scaled by the limit, starts afresh.
  EXPECT_EQ(Key(*before, "r", r), Key(*other_limit, "r", r));
  EXPECT_NE(Key(*bucket, "r", r), Key(*bucket_other_limit, "r", r));

  std::string key;
  EXPECT_FALSE(RuleSet::CounterKey(*before->FindRule("r"), Req({}), &key));
}

// Verifies groups: only the lowest priority of the matching rules of a group applies, and
// rules without a group always apply.
TEST(RuleGroupTest, LowestPriorityWinsInsideGroup) {
  auto set = LoadYaml(R"(
rules:
  - {id: per-ip, key: [ip_address], limit: 20, window: 1s}
  - {id: free-hourly, group: quota, priority: 20, match: {tier: free}, key: [user_id],
     limit: 100, window: 1h}
  - {id: premium-hourly, group: quota, priority: 10, match: {tier: "p*"}, key: [user_id],
     limit: 10000, window: 1h}
  - {id: catch-all, group: quota, match: {}, key: [user_id], limit: 10, window: 1h}
  - {id: other-group, group: burst, priority: 5, key: [user_id], limit: 5, window: 1s}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_THAT(
      Applicable(*set, Req({{"ip_address", "1.1.1.1"}, {"user_id", "u"}, {"tier", "premium"}})),
      ElementsAre("per-ip", "premium-hourly", "other-group"));
  EXPECT_THAT(Applicable(*set, Req({{"user_id", "u"}, {"tier", "free"}})),
              ElementsAre("free-hourly", "other-group"));
  // catch-all has the default priority 100: it applies only when nothing better matches.
  EXPECT_THAT(Applicable(*set, Req({{"user_id", "u"}, {"tier", "enterprise"}})),
              ElementsAre("catch-all", "other-group"));
}

// Verifies that equal priorities go to the earlier rule in file order, across files (files in
// the order given, rules in file order).
TEST(RuleGroupTest, TiesGoToFileOrderAcrossFiles) {
  TempDir dir;
  const std::string first = dir.Write("1.yaml", R"(
rules:
  - {id: a1, group: g, priority: 50, match: {tier: "*"}, limit: 1, window: 1s}
  - {id: a2, group: g, priority: 50, match: {}, limit: 1, window: 1s}
)");
  const std::string second = dir.Write("2.yaml", R"(
rules:
  - {id: b1, group: g, priority: 50, match: {tier: free}, limit: 1, window: 1s}
  - {id: b2, group: g, priority: 40, match: {tier: gold}, limit: 1, window: 1s}
)");
  auto forward = LoadOk({first, second});
  ASSERT_NE(forward, nullptr);
  EXPECT_THAT(Applicable(*forward, Req({{"tier", "free"}})), ElementsAre("a1"));
  EXPECT_THAT(Applicable(*forward, Req({})), ElementsAre("a2"));
  EXPECT_THAT(Applicable(*forward, Req({{"tier", "gold"}})), ElementsAre("b2"));
  EXPECT_EQ(forward->FindRule("a1")->file_order, 0u);
  EXPECT_EQ(forward->FindRule("b1")->file_order, 2u);

  auto backward = LoadOk({second, first});
  ASSERT_NE(backward, nullptr);
  EXPECT_THAT(Applicable(*backward, Req({{"tier", "free"}})), ElementsAre("b1"));

  // A folder loads its files in name order: the same as {first, second}.
  auto folder = LoadOk({dir.path()});
  ASSERT_NE(folder, nullptr);
  EXPECT_THAT(Applicable(*folder, Req({{"tier", "free"}})), ElementsAre("a1"));
}

// Verifies that a group member whose key attribute is absent steps aside for the next one.
TEST(RuleGroupTest, MemberWithAbsentKeyStepsAside) {
  auto set = LoadYaml(R"(
rules:
  - {id: per-user, group: g, priority: 1, key: [user_id], limit: 1, window: 1s}
  - {id: per-ip, group: g, priority: 2, key: [ip_address], limit: 1, window: 1s}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_THAT(Applicable(*set, Req({{"user_id", "u"}, {"ip_address", "1.2.3.4"}})),
              ElementsAre("per-user"));
  EXPECT_THAT(Applicable(*set, Req({{"ip_address", "1.2.3.4"}})), ElementsAre("per-ip"));
}

// Verifies that disabled rules are loaded and counted but never apply, also inside a group.
TEST(RuleEnabledTest, DisabledRulesNeverApply) {
  auto set = LoadYaml(R"(
rules:
  - {id: off, enabled: false, limit: 1, window: 1s}
  - {id: g-off, group: g, priority: 1, enabled: false, limit: 1, window: 1s}
  - {id: g-on, group: g, priority: 2, enabled: true, limit: 1, window: 1s}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(set->size(), 3u);
  EXPECT_FALSE(set->FindRule("off")->enabled);
  EXPECT_THAT(Applicable(*set, Req({})), ElementsAre("g-on"));
}

// Verifies that mode: shadow is carried on the rule (the limiter never rejects on it), and the
// documented defaults.
TEST(RuleModelTest, ShadowModeAndDefaults) {
  auto set = LoadYaml(R"(
rules:
  - {id: shadow, mode: shadow, limit: 25, window: 1s, algorithm: sliding_window_log}
  - {id: defaults, limit: 7, window: 1m}
  - {id: bucket, limit: 20, window: 1s, algorithm: token_bucket, burst: 40}
  - {id: burst-ignored, limit: 20, window: 1s, algorithm: fixed_window, burst: 40}
)");
  ASSERT_NE(set, nullptr);
  const Rule* shadow = set->FindRule("shadow");
  EXPECT_EQ(shadow->mode, RuleMode::kShadow);
  EXPECT_EQ(shadow->limit.algorithm(), Algorithm::kSlidingWindowLog);
  EXPECT_EQ(Applicable(*set, Req({})).front(), "shadow");  // applies like any rule

  const Rule* d = set->FindRule("defaults");
  EXPECT_EQ(d->mode, RuleMode::kEnforce);
  EXPECT_EQ(d->limit.algorithm(), Algorithm::kSlidingWindowCounter);
  EXPECT_EQ(d->limit.limit(), 7);
  EXPECT_EQ(d->limit.burst(), 7);
  EXPECT_EQ(d->limit.window(), 60 * kMicrosPerSecond);
  EXPECT_EQ(d->priority, 100);
  EXPECT_TRUE(d->enabled);
  EXPECT_TRUE(d->group.empty());
  EXPECT_TRUE(d->key.empty());
  EXPECT_TRUE(d->match.empty());
  EXPECT_EQ(d->location.line, 4);
  EXPECT_EQ(d->location.column, 5);

  EXPECT_EQ(set->FindRule("bucket")->limit.burst(), 40);
  EXPECT_EQ(set->FindRule("burst-ignored")->limit.algorithm(), Algorithm::kFixedWindow);
}

// Verifies the example of CONTRACT §3.1 end to end.
TEST(RuleMatchTest, ContractExample) {
  auto set = LoadOk({std::string(SLUICE_RULES_TESTDATA) + "/contract_example.yaml"});
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(set->size(), 4u);
  EXPECT_THAT(Applicable(*set, Req({{"ip_address", "192.168.1.1"},
                                    {"user_id", "user_12345"},
                                    {"tier", "premium"},
                                    {"endpoint", "/api/payments"},
                                    {"method", "post"}})),
              ElementsAre("per-ip-burst", "premium-hourly", "payments"));
  EXPECT_THAT(Applicable(*set, Req({{"ip_address", "192.168.1.1"},
                                    {"user_id", "user_1"},
                                    {"tier", "free"},
                                    {"endpoint", "/api/payments/x"},
                                    {"method", "GET"}})),
              ElementsAre("per-ip-burst", "free-hourly"));
  const Rule* burst = set->FindRule("per-ip-burst");
  EXPECT_EQ(burst->limit.algorithm(), Algorithm::kTokenBucket);
  EXPECT_EQ(burst->limit.burst(), 40);
  EXPECT_EQ(set->FindRule("payments")->mode, RuleMode::kShadow);
  EXPECT_EQ(set->allow_list().size(), 2u);
  EXPECT_EQ(set->deny_list().size(), 2u);
}

// Verifies that an empty RuleSet applies nothing and allows everything.
TEST(RuleSetTest, EmptySet) {
  auto set = RuleSet::Empty();
  EXPECT_EQ(set->size(), 0u);
  EXPECT_THAT(Applicable(*set, Req({{"user_id", "u"}})), IsEmpty());
  EXPECT_EQ(set->CheckLists(Req({{"user_id", "u"}}), 0).kind, ListVerdict::Kind::kNone);
  EXPECT_FALSE(set->HasDomain("x"));
}

}  // namespace
}  // namespace sluice::rules
