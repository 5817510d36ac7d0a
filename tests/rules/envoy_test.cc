// Envoy-compatible domain files (CONTRACT §3.2) with envoyproxy/ratelimit's matching.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "rules/descriptor.h"
#include "rules/rule_set.h"
#include "tests/rules/test_util.h"

namespace sluice::rules {
namespace {

using ::sluice::rules::testing::LoadOk;
using ::sluice::rules::testing::LoadYaml;
using ::sluice::rules::testing::TempDir;
using ::testing::ElementsAre;

using Entries = std::vector<DescriptorEntry>;

const DescriptorLimit* Match(const RuleSet& set, std::string_view domain, const Entries& e) {
  return set.MatchDescriptor(domain, e);
}

// The full_key of the matched limit, or "none".
std::string Matched(const RuleSet& set, std::string_view domain, const Entries& e) {
  const DescriptorLimit* l = Match(set, domain, e);
  return l == nullptr ? "none" : l->full_key;
}

// envoyproxy/ratelimit's README example 1/2: nested descriptors and a key-only default.
constexpr std::string_view kMessaging = R"(
domain: messaging
descriptors:
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit:
          unit: day
          requests_per_unit: 5
  - key: to_number
    rate_limit:
      unit: day
      requests_per_unit: 100
)";

// Verifies nested matching: the limit at the depth of the last entry.
TEST(EnvoyMatchTest, NestedDescriptors) {
  auto set = LoadYaml(kMessaging);
  ASSERT_NE(set, nullptr);
  EXPECT_TRUE(set->HasDomain("messaging"));
  EXPECT_FALSE(set->HasDomain("other"));
  const DescriptorLimit* nested =
      Match(*set, "messaging", {{"message_type", "marketing"}, {"to_number", "2061111111"}});
  ASSERT_NE(nested, nullptr);
  EXPECT_EQ(nested->full_key, "messaging.message_type_marketing.to_number");
  EXPECT_EQ(nested->requests_per_unit, 5u);
  EXPECT_EQ(nested->unit, RateLimitUnit::kDay);
  ASSERT_TRUE(nested->limit.has_value());
  EXPECT_EQ(nested->limit->limit(), 5);
  EXPECT_EQ(nested->limit->window(), 86400 * kMicrosPerSecond);
  EXPECT_EQ(nested->limit->algorithm(), Algorithm::kFixedWindow);  // the domain-file default

  EXPECT_EQ(Matched(*set, "messaging", {{"to_number", "2061111111"}}), "messaging.to_number");
  EXPECT_EQ(Matched(*set, "messaging", {{"message_type", "transactional"}, {"to_number", "1"}}),
            "none");
  EXPECT_EQ(Matched(*set, "unknown-domain", {{"to_number", "1"}}), "none");
  EXPECT_EQ(Matched(*set, "messaging", {}), "none");
}

// Verifies "depth mismatch": a descriptor with more or fewer entries than the configured path
// gets no limit (envoyproxy/ratelimit README example 4).
TEST(EnvoyMatchTest, DepthMismatchGivesNoLimit) {
  auto set = LoadYaml(R"(
domain: example4
descriptors:
  - key: key
    value: value
    rate_limit: {requests_per_unit: 300, unit: second}
  - key: parent
    descriptors:
      - key: subkey
        rate_limit: {requests_per_unit: 300, unit: second}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(Matched(*set, "example4", {{"key", "value"}}), "example4.key_value");
  EXPECT_EQ(Matched(*set, "example4", {{"key", "value"}, {"subkey", "subvalue"}}), "none");
  EXPECT_EQ(Matched(*set, "example4", {{"parent", "p"}, {"subkey", "s"}}),
            "example4.parent.subkey");
  EXPECT_EQ(Matched(*set, "example4", {{"parent", "p"}}), "none");  // fewer entries
  EXPECT_EQ(Matched(*set, "example4", {{"parent", "p"}, {"subkey", "s"}, {"more", "m"}}), "none");
}

// Verifies the order at one level: exact value, then wildcard, then the key-only default
// (README example 3: the most specific match at the same level).
TEST(EnvoyMatchTest, ExactThenWildcardThenDefault) {
  auto set = LoadYaml(R"(
domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 10}
  - key: remote_address
    value: "50.0.0.*"
    rate_limit: {unit: second, requests_per_unit: 20}
  - key: remote_address
    value: 50.0.0.5
    rate_limit: {unit: second, requests_per_unit: 0}
)");
  ASSERT_NE(set, nullptr);
  const DescriptorLimit* exact = Match(*set, "edge", {{"remote_address", "50.0.0.5"}});
  ASSERT_NE(exact, nullptr);
  EXPECT_EQ(exact->full_key, "edge.remote_address_50.0.0.5");
  EXPECT_TRUE(exact->blocks_all());  // requests_per_unit: 0 refuses everything
  EXPECT_FALSE(exact->limit.has_value());
  EXPECT_EQ(Matched(*set, "edge", {{"remote_address", "50.0.0.6"}}),
            "edge.remote_address_50.0.0.*");
  EXPECT_EQ(Matched(*set, "edge", {{"remote_address", "60.0.0.1"}}), "edge.remote_address");
  EXPECT_EQ(Matched(*set, "edge", {{"other_key", "50.0.0.5"}}), "none");
}

// Verifies wildcards with `*` at the end (`foo*`) and in the middle (`bar*b`), at a nested
// level, and that the first wildcard in file order wins.
TEST(EnvoyMatchTest, WildcardValues) {
  auto set = LoadYaml(R"(
domain: wild
descriptors:
  - key: path
    value: "foo*"
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: path
    value: "bar*b"
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: path
    value: "ba*"
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: tenant
    value: acme
    descriptors:
      - key: path
        value: "/v1/*/items"
        rate_limit: {unit: minute, requests_per_unit: 4}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(Matched(*set, "wild", {{"path", "foo"}}), "wild.path_foo*");
  EXPECT_EQ(Matched(*set, "wild", {{"path", "foobar"}}), "wild.path_foo*");
  EXPECT_EQ(Matched(*set, "wild", {{"path", "fo"}}), "none");
  EXPECT_EQ(Matched(*set, "wild", {{"path", "barb"}}), "wild.path_bar*b");
  EXPECT_EQ(Matched(*set, "wild", {{"path", "bar-xyz-b"}}), "wild.path_bar*b");
  EXPECT_EQ(Matched(*set, "wild", {{"path", "bar-xyz"}}), "wild.path_ba*");  // not bar*b
  EXPECT_EQ(Matched(*set, "wild", {{"tenant", "acme"}, {"path", "/v1/users/items"}}),
            "wild.tenant_acme.path_/v1/*/items");
  EXPECT_EQ(Matched(*set, "wild", {{"tenant", "acme"}, {"path", "/v2/users/items"}}), "none");
}

// Verifies that a node with neither rate_limit nor children is whitelisted: it matches (so the
// key-only default does not apply) but gives no limit.
TEST(EnvoyMatchTest, WhitelistedNode) {
  auto set = LoadYaml(R"(
domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 10}
  - key: remote_address
    value: 10.0.0.1
)");
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(Matched(*set, "edge", {{"remote_address", "10.0.0.1"}}), "none");
  EXPECT_EQ(Matched(*set, "edge", {{"remote_address", "10.0.0.2"}}), "edge.remote_address");
}

// Verifies `unlimited: true` (README example 5): matched, never limited.
TEST(EnvoyMatchTest, Unlimited) {
  auto set = LoadYaml(R"(
domain: internal
descriptors:
  - key: ldap
    rate_limit:
      unlimited: true
  - key: azure
    rate_limit:
      unit: minute
      requests_per_unit: 100
)");
  ASSERT_NE(set, nullptr);
  const DescriptorLimit* ldap = Match(*set, "internal", {{"ldap", "x"}});
  ASSERT_NE(ldap, nullptr);
  EXPECT_TRUE(ldap->unlimited);
  EXPECT_FALSE(ldap->blocks_all());
  EXPECT_FALSE(ldap->limit.has_value());
  std::string key;
  EXPECT_FALSE(DescriptorCounterKey("internal", Entries{{"ldap", "x"}}, *ldap, &key));
  const DescriptorLimit* azure = Match(*set, "internal", {{"azure", "x"}});
  ASSERT_NE(azure, nullptr);
  EXPECT_FALSE(azure->unlimited);
}

// Verifies `replaces` across the descriptors of one request (README example 7).
TEST(EnvoyMatchTest, Replaces) {
  auto set = LoadYaml(R"(
domain: example7
descriptors:
  - key: key_1
    value: value_1
    descriptors:
      - key: user
        value: bkthomps
        rate_limit:
          name: specific_limit
          requests_per_unit: 5
          unit: second
  - key: key_2
    value: value_2
    descriptors:
      - key: user
        value: bkthomps
        rate_limit:
          replaces:
            - name: specific_limit
          requests_per_unit: 10
          unit: second
)");
  ASSERT_NE(set, nullptr);
  const Entries first = {{"key_1", "value_1"}, {"user", "bkthomps"}};
  const Entries second = {{"key_2", "value_2"}, {"user", "bkthomps"}};
  std::vector<const DescriptorLimit*> both = {Match(*set, "example7", first),
                                              Match(*set, "example7", second)};
  ASSERT_NE(both[0], nullptr);
  ASSERT_NE(both[1], nullptr);
  EXPECT_EQ(both[0]->name, "specific_limit");
  EXPECT_THAT(both[1]->replaces, ElementsAre("specific_limit"));
  ApplyReplaces(both);
  EXPECT_EQ(both[0], nullptr);  // replaced: only the 10/s limit applies
  ASSERT_NE(both[1], nullptr);
  EXPECT_EQ(both[1]->requests_per_unit, 10u);

  // Alone, the named limit still applies.
  std::vector<const DescriptorLimit*> alone = {Match(*set, "example7", first), nullptr};
  ApplyReplaces(alone);
  EXPECT_NE(alone[0], nullptr);
}

// Verifies unit_multiplier (window = unit x multiplier, unit kept as configured) and the
// algorithm/burst extensions.
TEST(EnvoyMatchTest, UnitMultiplierAndExtensions) {
  auto set = LoadYaml(R"(
domain: ext
descriptors:
  - key: a
    rate_limit: {unit: second, unit_multiplier: 30, requests_per_unit: 10}
  - key: b
    rate_limit: {unit: minute, requests_per_unit: 60, algorithm: token_bucket, burst: 120}
)");
  ASSERT_NE(set, nullptr);
  const DescriptorLimit* a = Match(*set, "ext", {{"a", "1"}});
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->unit, RateLimitUnit::kSecond);
  EXPECT_EQ(a->unit_multiplier, 30);
  EXPECT_EQ(a->limit->window(), 30 * kMicrosPerSecond);
  EXPECT_EQ(a->limit->limit(), 10);
  const DescriptorLimit* b = Match(*set, "ext", {{"b", "1"}});
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->limit->algorithm(), Algorithm::kTokenBucket);
  EXPECT_EQ(b->limit->burst(), 120);
  EXPECT_EQ(b->limit->window(), 60 * kMicrosPerSecond);
}

// Verifies every unit, month as 30 days and year as 365 days, in any case.
TEST(EnvoyMatchTest, Units) {
  auto set = LoadYaml(R"(
domain: units
descriptors:
  - {key: s, rate_limit: {unit: second, requests_per_unit: 1}}
  - {key: m, rate_limit: {unit: minute, requests_per_unit: 1}}
  - {key: h, rate_limit: {unit: HOUR, requests_per_unit: 1}}
  - {key: d, rate_limit: {unit: day, requests_per_unit: 1}}
  - {key: w, rate_limit: {unit: week, requests_per_unit: 1}}
  - {key: mo, rate_limit: {unit: month, requests_per_unit: 1}}
  - {key: y, rate_limit: {unit: Year, requests_per_unit: 1}}
)");
  ASSERT_NE(set, nullptr);
  const Micros day = 86400 * kMicrosPerSecond;
  const std::pair<std::string_view, Micros> expected[] = {{"s", kMicrosPerSecond},
                                                          {"m", 60 * kMicrosPerSecond},
                                                          {"h", 3600 * kMicrosPerSecond},
                                                          {"d", day},
                                                          {"w", 7 * day},
                                                          {"mo", 30 * day},
                                                          {"y", 365 * day}};
  for (const auto& [key, window] : expected) {
    const DescriptorLimit* l = Match(*set, "units", {{key, "v"}});
    ASSERT_NE(l, nullptr) << key;
    EXPECT_EQ(l->limit->window(), window) << key;
  }
  EXPECT_EQ(Match(*set, "units", {{"y", "v"}})->unit, RateLimitUnit::kYear);
  EXPECT_EQ(RateLimitUnitName(RateLimitUnit::kMonth), "month");
}

// Verifies shadow_mode and detailed_metric, and the metric keys they give.
TEST(EnvoyMatchTest, ShadowModeAndDetailedMetric) {
  auto set = LoadYaml(R"(
domain: example
descriptors:
  - key: service
    descriptors:
      - key: user
        value: user-a
        shadow_mode: true
        rate_limit: {requests_per_unit: 10, unit: second}
      - key: user
        detailed_metric: true
        rate_limit: {requests_per_unit: 20, unit: second}
)");
  ASSERT_NE(set, nullptr);
  const Entries a = {{"service", "auth"}, {"user", "user-a"}};
  const Entries b = {{"service", "auth"}, {"user", "user-b"}};
  const DescriptorLimit* la = Match(*set, "example", a);
  const DescriptorLimit* lb = Match(*set, "example", b);
  ASSERT_NE(la, nullptr);
  ASSERT_NE(lb, nullptr);
  EXPECT_TRUE(la->shadow_mode);
  EXPECT_FALSE(lb->shadow_mode);
  EXPECT_EQ(set->LookupDescriptor("example", a).metric_key, "example.service.user_user-a");
  EXPECT_EQ(la->full_key, "example.service.user_user-a");
  EXPECT_TRUE(lb->detailed_metric);
  EXPECT_EQ(lb->full_key, "example.service.user");
  EXPECT_EQ(set->LookupDescriptor("example", b).metric_key, "example.service_auth.user_user-b");
}

// Verifies counter keys: per request values (a key-only node counts each value apart), with
// separators escaped.
TEST(EnvoyMatchTest, CounterKeys) {
  auto set = LoadYaml(kMessaging);
  ASSERT_NE(set, nullptr);
  const Entries one = {{"to_number", "1"}};
  const Entries two = {{"to_number", "2"}};
  const DescriptorLimit* l = Match(*set, "messaging", one);
  ASSERT_NE(l, nullptr);
  std::string k1, k2, k3;
  ASSERT_TRUE(DescriptorCounterKey("messaging", one, *l, &k1));
  ASSERT_TRUE(DescriptorCounterKey("messaging", two, *l, &k2));
  EXPECT_NE(k1, k2);
  EXPECT_EQ(k1, "envoy|messaging|fixed_window|86400000000|to_number=1");
  ASSERT_TRUE(DescriptorCounterKey("messaging", Entries{{"to_number", "1|x=2"}}, *l, &k3));
  EXPECT_EQ(k3, "envoy|messaging|fixed_window|86400000000|to_number=1%7Cx%3D2");
}

// upstream's test/config/share_threshold.yaml (its first cases), plus value_to_metric alone.
constexpr std::string_view kShareThreshold = R"(
domain: test-domain
descriptors:
  - key: files
    value: files/*
    share_threshold: true
    rate_limit: {unit: minute, requests_per_unit: 100}
  - key: nested
    value: parent
    descriptors:
      - key: files
        value: nested/*
        share_threshold: true
        rate_limit: {unit: minute, requests_per_unit: 200}
  - key: files
    value: top/*
    share_threshold: true
    descriptors:
      - key: files
        value: nested/*
        share_threshold: true
        rate_limit: {unit: minute, requests_per_unit: 300}
  - key: route
    value: api/*
    share_threshold: true
    value_to_metric: true
    descriptors:
      - key: method
        rate_limit: {unit: minute, requests_per_unit: 60}
  - key: service
    value: svc/*
    share_threshold: true
    descriptors:
      - key: endpoint
        detailed_metric: true
        rate_limit: {unit: minute, requests_per_unit: 80}
  - key: host
    value_to_metric: true
    descriptors:
      - key: kind
        value: k*
        value_to_metric: true
        rate_limit: {unit: minute, requests_per_unit: 5}
  - key: plain
    value: p*
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: detailed
    detailed_metric: true
    rate_limit: {unit: minute, requests_per_unit: 5}
)";

// Verifies share_threshold as upstream's TestShareThreshold: the pattern per entry index (also
// when the limit is below the wildcard, and for the same key at two levels), the metric keys it
// gives (priority over value_to_metric and detailed_metric), and one counter for every value.
TEST(EnvoyMatchTest, ShareThreshold) {
  auto set = LoadYaml(kShareThreshold);
  ASSERT_NE(set, nullptr);
  auto lookup = [&](const Entries& e) { return set->LookupDescriptor("test-domain", e); };

  DescriptorMatch a = lookup({{"files", "files/a.txt"}});
  DescriptorMatch b = lookup({{"files", "files/b.txt"}});
  ASSERT_NE(a.limit, nullptr);
  ASSERT_THAT(a.shared, ElementsAre("files/*"));
  EXPECT_EQ(a.metric_key, "test-domain.files_files/*");
  EXPECT_EQ(b.metric_key, a.metric_key);
  std::string ka, kb;
  ASSERT_TRUE(DescriptorCounterKey("test-domain", Entries{{"files", "files/a.txt"}}, *a.limit, &ka,
                                   a.shared));
  ASSERT_TRUE(DescriptorCounterKey("test-domain", Entries{{"files", "files/b.txt"}}, *b.limit, &kb,
                                   b.shared));
  EXPECT_EQ(ka, kb);
  EXPECT_EQ(ka, "envoy|test-domain|fixed_window|60000000|files~files/*");
  // A request whose value is the pattern itself matches it too: same counter.
  std::string kp;
  ASSERT_TRUE(DescriptorCounterKey("test-domain", Entries{{"files", "files/*"}}, *a.limit, &kp,
                                   lookup({{"files", "files/*"}}).shared));
  EXPECT_EQ(kp, ka);

  DescriptorMatch route = lookup({{"route", "api/v1"}, {"method", "GET"}});
  ASSERT_NE(route.limit, nullptr);
  EXPECT_THAT(route.shared, ElementsAre("api/*", ""));
  EXPECT_EQ(route.metric_key, "test-domain.route_api/*.method");

  DescriptorMatch svc = lookup({{"service", "svc/user"}, {"endpoint", "get"}});
  EXPECT_EQ(svc.metric_key, "test-domain.service_svc/*.endpoint_get");

  DescriptorMatch nested = lookup({{"nested", "parent"}, {"files", "nested/file1.txt"}});
  EXPECT_EQ(nested.limit->requests_per_unit, 200u);
  EXPECT_THAT(nested.shared, ElementsAre("", "nested/*"));
  EXPECT_EQ(nested.metric_key, "test-domain.nested_parent.files_nested/*");

  DescriptorMatch two = lookup({{"files", "top/file1.txt"}, {"files", "nested/file2.txt"}});
  EXPECT_EQ(two.limit->requests_per_unit, 300u);
  EXPECT_THAT(two.shared, ElementsAre("top/*", "nested/*"));
  EXPECT_EQ(two.metric_key, "test-domain.files_top/*.files_nested/*");
}

// Verifies the other metric keys as upstream's GetLimit names them: value_to_metric puts the
// request's value where a key-only or wildcard node names none or its pattern; without it a
// wildcard names its pattern; detailed_metric names every entry "key_value".
TEST(EnvoyMatchTest, MetricKeys) {
  auto set = LoadYaml(kShareThreshold);
  ASSERT_NE(set, nullptr);
  auto key = [&](const Entries& e) { return set->LookupDescriptor("test-domain", e).metric_key; };
  EXPECT_EQ(key({{"host", "h1"}, {"kind", "k9"}}), "test-domain.host_h1.kind_k9");
  EXPECT_EQ(key({{"plain", "p9"}}), "test-domain.plain_p*");
  EXPECT_EQ(key({{"detailed", "x"}}), "test-domain.detailed_x");
  EXPECT_EQ(key({{"detailed", ""}}), "test-domain.detailed_");
  EXPECT_EQ(key({{"nothing", "x"}}), "");
  EXPECT_EQ(DescriptorOverrideMetricKey("d", Entries{{"a", "1"}, {"b", ""}}), "d.a_1.b");
}

// Verifies quota_mode and metadata are kept on the limit (metadata typed as YAML 1.1 types plain
// scalars; quoted ones stay strings).
TEST(EnvoyMatchTest, QuotaModeAndMetadata) {
  auto set = LoadYaml(R"(
domain: d
descriptors:
  - key: q
    quota_mode: true
    metadata:
      name: svc
      n: 2
      on: yes
      quoted: "yes"
      list: [1.5, ~]
      nested: {a: b}
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: plain
    rate_limit: {unit: minute, requests_per_unit: 5}
)");
  ASSERT_NE(set, nullptr);
  const DescriptorLimit* q = Match(*set, "d", Entries{{"q", "x"}});
  ASSERT_NE(q, nullptr);
  EXPECT_TRUE(q->quota_mode);
  ASSERT_NE(q->metadata, nullptr);
  const MetadataValue::Map& m = *q->metadata;
  ASSERT_EQ(m.size(), 6u);
  EXPECT_EQ(m[0].key, "name");
  EXPECT_EQ(std::get<std::string>(m[0].value.value), "svc");
  EXPECT_EQ(std::get<double>(m[1].value.value), 2);
  EXPECT_EQ(m[2].key, "on");
  EXPECT_TRUE(std::get<bool>(m[2].value.value));
  EXPECT_EQ(std::get<std::string>(m[3].value.value), "yes");
  const auto& list = std::get<MetadataValue::List>(m[4].value.value);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(std::get<double>(list[0].value), 1.5);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(list[1].value));
  EXPECT_TRUE(std::holds_alternative<MetadataValue::Map>(m[5].value.value));
  const DescriptorLimit* plain = Match(*set, "d", Entries{{"plain", "x"}});
  EXPECT_FALSE(plain->quota_mode);
  EXPECT_EQ(plain->metadata, nullptr);
}

// Verifies that domain files and rules files load side by side from one folder.
TEST(EnvoyLoadTest, MixedFolder) {
  TempDir dir;
  dir.Write("a_rules.yaml", "rules:\n  - {id: r, limit: 1, window: 1s}\n");
  dir.Write("b_domain.yml", std::string(kMessaging));
  dir.Write("c_ignored.txt", "not yaml: [");
  dir.Write(".hidden.yaml", "not yaml: [");
  auto set = LoadOk({dir.path()});
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(set->size(), 1u);
  EXPECT_EQ(set->domain_count(), 1u);
  EXPECT_TRUE(set->HasDomain("messaging"));
}

}  // namespace
}  // namespace sluice::rules
