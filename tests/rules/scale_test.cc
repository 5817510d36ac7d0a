// Thousands of rules: the index must give exactly what a scan of every rule gives. No timing
// assertions: correctness and index structure only.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "rules/rule_set.h"
#include "tests/rules/test_util.h"

namespace sluice::rules {
namespace {

using ::sluice::rules::testing::Applicable;
using ::sluice::rules::testing::LoadYaml;
using ::sluice::rules::testing::Req;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::Not;

constexpr int kRules = 5000;
constexpr int kTiers = 50;

std::string Hex(int v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%x", v);
  return buf;
}

// 5000 rules of ten shapes: exact user_id, endpoint, tier (grouped), header; endpoint and method
// globs; IPv4 and IPv6 networks; grouped per-user rules; and a few catch-alls and disabled ones.
std::string ManyRules() {
  std::string y = "rules:\n";
  for (int i = 0; i < kRules; ++i) {
    const std::string id = "r" + std::to_string(i);
    std::string rule = "  - {id: " + id + ", limit: 10, window: 1s";
    if (i % 1000 == 999) {
      rule += ", match: {}";  // a catch-all: in every request's candidates
    } else if (i % 1000 == 998) {
      rule += ", enabled: false";
    } else {
      switch (i % 10) {
        case 0:
          rule += ", match: {user_id: user-" + std::to_string(i) + "}, key: [user_id]";
          break;
        case 1:
          rule += ", match: {endpoint: /api/e" + std::to_string(i) + "}, key: [user_id]";
          break;
        case 2:
          rule += ", match: {endpoint: \"/api/p" + std::to_string(i) + "/*\"}";
          break;
        case 3:
          rule += ", match: {ip_address: 10." + std::to_string(i / 256) + "." +
                  std::to_string(i % 256) + ".0/24}, key: [ip_address]";
          break;
        case 4:
          rule += ", match: {ip_address: \"2001:db8:" + Hex(i) + "::/48\"}";
          break;
        case 5:
          rule += ", group: tier-g" + std::to_string(i % 7) +
                  ", priority: " + std::to_string((i * 7) % 13) + ", match: {tier: t" +
                  std::to_string(i % kTiers) + "}";
          break;
        case 6:
          rule += ", match: {headers.x-tenant: tenant-" + std::to_string(i) + "}";
          break;
        case 7:
          rule += ", match: {api_key: \"*-k" + std::to_string(i) + "\", tier: t" +
                  std::to_string(i % kTiers) + "}";
          break;
        case 8:
          rule += ", match: {method: post, endpoint: \"/m" + std::to_string(i) + "*\"}";
          break;
        case 9:
          rule += ", group: per-user, priority: " + std::to_string(i % 17) +
                  ", match: {user_id: user-" + std::to_string(i - 9) + "}";
          break;
      }
    }
    y += rule + "}\n";
  }
  return y;
}

// What Applicable must return, computed by scanning every rule.
std::vector<std::string> Reference(const RuleSet& set, const RequestAttributes& r) {
  IpAddress parsed;
  const IpAddress* ip = ParseIp(r.ip_address, &parsed) ? &parsed : nullptr;
  RuleList applicable;
  for (const Rule& rule : set.rules()) {
    if (!rule.enabled || !MatchesAll(rule.match, r, ip)) continue;
    bool key_present = true;
    for (const AttributeRef& k : rule.key) key_present = key_present && !r.Get(k).empty();
    if (!key_present) continue;
    if (!rule.group.empty()) {
      auto same_group = std::find_if(applicable.begin(), applicable.end(),
                                     [&](const Rule* a) { return a->group == rule.group; });
      if (same_group != applicable.end()) {
        if (rule.priority < (*same_group)->priority) {
          applicable.erase(same_group);
        } else {
          continue;
        }
      }
    }
    applicable.push_back(&rule);
  }
  std::sort(applicable.begin(), applicable.end(),
            [](const Rule* a, const Rule* b) { return a->file_order < b->file_order; });
  std::vector<std::string> ids;
  for (const Rule* rule : applicable) ids.push_back(rule->id);
  return ids;
}

// Loads the 5000 rules once for all the tests of the suite.
class ScaleTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { set_ = new std::shared_ptr<const RuleSet>(LoadYaml(ManyRules())); }
  static void TearDownTestSuite() {
    delete set_;
    set_ = nullptr;
  }
  static const RuleSet* Set() { return set_->get(); }

 private:
  static std::shared_ptr<const RuleSet>* set_;
};
std::shared_ptr<const RuleSet>* ScaleTest::set_ = nullptr;

// Verifies that the rules load and that only the catch-alls escape the index.
TEST_F(ScaleTest, LoadsAndIndexes) {
  ASSERT_NE(Set(), nullptr);
  EXPECT_EQ(Set()->size(), static_cast<size_t>(kRules));
  EXPECT_EQ(Set()->unindexed_rule_count(), 5u);  // r999, r1999, ...: `match: {}`
}

// Verifies a few requests whose answer is known by construction.
TEST_F(ScaleTest, KnownAnswers) {
  ASSERT_NE(Set(), nullptr);
  const std::vector<std::string> catch_alls = {"r999", "r1999", "r2999", "r3999", "r4999"};
  EXPECT_EQ(Applicable(*Set(), Req({})), catch_alls);

  // user-10: its own rule r10 and, of the per-user group, r19 (the only member naming user-10).
  EXPECT_THAT(Applicable(*Set(), Req({{"user_id", "user-10"}, {"endpoint", "/api/e11"}})),
              ElementsAre("r10", "r11", "r19", "r999", "r1999", "r2999", "r3999", "r4999"));
  // Without user_id, r11's key is absent.
  EXPECT_THAT(Applicable(*Set(), Req({{"endpoint", "/api/e11"}})), Not(Contains("r11")));
  EXPECT_THAT(Applicable(*Set(), Req({{"endpoint", "/api/p12/x"}})), Contains("r12"));
  EXPECT_THAT(Applicable(*Set(), Req({{"ip_address", "10.0.13.77"}})), Contains("r13"));
  EXPECT_THAT(Applicable(*Set(), Req({{"ip_address", "2001:db8:e:1::1"}})), Contains("r14"));
  EXPECT_THAT(Applicable(*Set(), Req({{"headers.X-Tenant", "tenant-16"}})), Contains("r16"));
  EXPECT_THAT(Applicable(*Set(), Req({{"api_key", "abc-k17"}, {"tier", "t17"}})), Contains("r17"));
  EXPECT_THAT(Applicable(*Set(), Req({{"method", "POST"}, {"endpoint", "/m18/x"}})),
              Contains("r18"));
  EXPECT_THAT(Applicable(*Set(), Req({{"method", "GET"}, {"endpoint", "/m18/x"}})),
              Not(Contains("r18")));
  EXPECT_THAT(Applicable(*Set(), Req({})), Not(Contains("r998")));  // disabled
}

// Verifies, over thousands of generated requests, that the indexed answer equals a full scan.
TEST_F(ScaleTest, MatchesFullScan) {
  ASSERT_NE(Set(), nullptr);
  std::mt19937 rng(12345);  // fixed: the same requests every run
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); };
  int non_trivial = 0;
  for (int n = 0; n < 3000; ++n) {
    RequestAttributes r;
    const int i = pick(kRules + 200);  // some values that no rule names
    if (pick(2)) r.user_id = "user-" + std::to_string(i - i % 10);
    if (pick(3) == 0) r.endpoint = "/api/e" + std::to_string(i - i % 10 + 1);
    if (pick(3) == 0) r.endpoint = "/api/p" + std::to_string(i - i % 10 + 2) + "/z";
    if (pick(4) == 0) r.endpoint = "/m" + std::to_string(i - i % 10 + 8) + "q";
    if (pick(3) == 0) {
      const int k = i - i % 10 + 3;
      r.SetIpAddress("10." + std::to_string(k / 256) + "." + std::to_string(k % 256) + "." +
                     std::to_string(pick(256)));
    } else if (pick(3) == 0) {
      r.SetIpAddress("2001:db8:" + Hex(i - i % 10 + 4) + ":" + Hex(pick(65536)) + "::1");
    }
    if (pick(2)) r.tier = "t" + std::to_string(pick(kTiers + 5));
    if (pick(4) == 0) r.SetHeader("X-Tenant", "tenant-" + std::to_string(i - i % 10 + 6));
    if (pick(4) == 0) r.api_key = "key-k" + std::to_string(i - i % 10 + 7);
    if (pick(2)) r.method = pick(2) ? "post" : "GET";
    const std::vector<std::string> expected = Reference(*Set(), r);
    ASSERT_EQ(Applicable(*Set(), r), expected)
        << "request " << n << ": user_id=" << r.user_id << " endpoint=" << r.endpoint
        << " ip=" << r.ip_address << " tier=" << r.tier << " api_key=" << r.api_key;
    if (expected.size() > 5) ++non_trivial;
  }
  EXPECT_GT(non_trivial, 500);  // the generator does exercise the rules, not just catch-alls
}

// Verifies a large deny list against a scan: thousands of networks and addresses.
TEST(ScaleListsTest, LargeDenyList) {
  std::string y = "lists:\n  deny:\n";
  for (int i = 0; i < 3000; ++i) {
    if (i % 3 == 0) {
      y += "    - {ip_address: 172." + std::to_string(16 + i / 256 % 16) + "." +
           std::to_string(i % 256) + ".0/24, reason: net" + std::to_string(i) + "}\n";
    } else {
      y += "    - {ip_address: 192.0." + std::to_string(i / 256) + "." + std::to_string(i % 256) +
           ", reason: host" + std::to_string(i) + "}\n";
    }
  }
  y += "  allow:\n    - {ip_address: 0.0.0.0/0}\n";
  auto set = LoadYaml(y);
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(set->deny_list().size(), 3000u);
  EXPECT_EQ(set->CheckLists(Req({{"ip_address", "192.0.0.1"}}), 0).reason(), "host1");
  EXPECT_EQ(set->CheckLists(Req({{"ip_address", "192.0.0.0"}}), 0).kind,
            ListVerdict::Kind::kAllow);  // 0 is a network entry's index, not a host
  EXPECT_EQ(set->CheckLists(Req({{"ip_address", "172.16.3.200"}}), 0).reason(), "net3");
  EXPECT_EQ(set->CheckLists(Req({{"ip_address", "8.8.8.8"}}), 0).kind, ListVerdict::Kind::kAllow);
  EXPECT_EQ(set->CheckLists(Req({{"user_id", "x"}}), 0).kind, ListVerdict::Kind::kNone);
}

}  // namespace
}  // namespace sluice::rules
