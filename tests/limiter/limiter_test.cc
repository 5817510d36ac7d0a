#include "limiter/limiter.h"

#include <gtest/gtest.h>

#include "store/memory/memory_store.h"
#include "tests/testing/limiter_fixtures.h"

namespace sluice {
namespace {

constexpr Micros kNow = int64_t{1764000000} * kMicrosPerSecond;

std::shared_ptr<const rules::RuleSet> Rules(const std::string& yaml) {
  return testing::RuleSetFromYaml(yaml);
}


class LimiterTest : public ::testing::Test {
 protected:
  CheckResult Check(Limiter& limiter, const std::string& user, const std::string& tier = "",
                    int64_t cost = 1, const std::string& endpoint = "") {
    CheckRequest request;
    request.attributes.user_id = user;
    request.attributes.tier = tier;
    request.attributes.endpoint = endpoint;
    request.cost = cost;
    CheckResult out;
    bool called = false;
    limiter.Check(std::move(request), [&](CheckResult r) {
      out = std::move(r);
      called = true;
    });
    EXPECT_TRUE(called);  // the memory store answers inline
    return out;
  }

  ManualClock clock_{kNow};
  MemoryStore store_{clock_};
  obs::Metrics metrics_;
  obs::RejectionLog rejections_{clock_};
};

// Verifies "a rejected request consumes nothing": the rule with room is not charged when
// another rule rejects.
TEST_F(LimiterTest, RejectedRequestConsumesNothing) {
  Limiter limiter(store_, clock_, metrics_, rejections_, {});
  limiter.SetRules(Rules(R"(
rules:
  - {id: roomy, key: [user_id], limit: 10, window: 1h}
  - {id: tight, key: [user_id], limit: 2, window: 1h, match: {endpoint: "/pay"}}
)"));
  EXPECT_EQ(Check(limiter, "u", "", 1, "/pay").decision.remaining, 1);  // tight has least
  EXPECT_EQ(Check(limiter, "u", "", 1, "/pay").rule_id, "tight");
  for (int i = 0; i < 5; ++i) {
    CheckResult r = Check(limiter, "u", "", 1, "/pay");
    EXPECT_EQ(r.outcome, CheckResult::Outcome::kRejected);
    EXPECT_EQ(r.rule_id, "tight");
  }
  // roomy was charged twice only.
  EXPECT_EQ(Check(limiter, "u", "", 0).decision.remaining, 8);
}

// Verifies that the longest retry_after is reported among rejecting rules.
TEST_F(LimiterTest, ReportsLongestRetryAfter) {
  Limiter limiter(store_, clock_, metrics_, rejections_, {});
  limiter.SetRules(Rules(R"(
rules:
  - {id: minute, key: [user_id], limit: 1, window: 1m, algorithm: fixed_window}
  - {id: hour, key: [user_id], limit: 1, window: 1h, algorithm: fixed_window}
)"));
  ASSERT_EQ(Check(limiter, "u").outcome, CheckResult::Outcome::kAllowed);
  CheckResult r = Check(limiter, "u");
  EXPECT_EQ(r.outcome, CheckResult::Outcome::kRejected);
  EXPECT_EQ(r.rule_id, "hour");
}

// Verifies groups: the premium rule replaces the free one.
TEST_F(LimiterTest, GroupPriorityPicksOneRule) {
  Limiter limiter(store_, clock_, metrics_, rejections_, {});
  limiter.SetRules(Rules(R"(
rules:
  - {id: free, group: quota, priority: 20, match: {tier: "*"}, key: [user_id], limit: 1, window: 1h}
  - {id: premium, group: quota, priority: 10, match: {tier: premium}, key: [user_id], limit: 100, window: 1h}
)"));
  EXPECT_EQ(Check(limiter, "a", "premium").rule_id, "premium");
  EXPECT_EQ(Check(limiter, "a", "premium").outcome, CheckResult::Outcome::kAllowed);
  EXPECT_EQ(Check(limiter, "b", "free").rule_id, "free");
  EXPECT_EQ(Check(limiter, "b", "free").outcome, CheckResult::Outcome::kRejected);
}

// Verifies shadow rules: charged, never reject, never reported.
TEST_F(LimiterTest, ShadowRulesNeverReject) {
  Limiter limiter(store_, clock_, metrics_, rejections_, {});
  limiter.SetRules(Rules(R"(
rules:
  - {id: trial, key: [user_id], limit: 1, window: 1h, mode: shadow}
)"));
  for (int i = 0; i < 3; ++i) {
    CheckResult r = Check(limiter, "u");
    EXPECT_EQ(r.outcome, CheckResult::Outcome::kAllowed);
    EXPECT_FALSE(r.limited);
  }
  EXPECT_NE(metrics_.Render().find(
                R"(sluice_requests_total{result="shadow_rejected",rule_id="trial"} 2)"),
            std::string::npos);
}

// Verifies the deny and allow lists, and that a reload bumps the rules version.
TEST_F(LimiterTest, ListsAndReload) {
  Limiter limiter(store_, clock_, metrics_, rejections_, {});
  EXPECT_EQ(limiter.rules_version(), 0u);
  limiter.SetRules(Rules(R"(
rules:
  - {id: r, key: [user_id], limit: 1, window: 1h}
lists:
  allow: [{user_id: ops}]
  deny: [{user_id: evil, reason: abuse}]
)"));
  EXPECT_EQ(limiter.rules_version(), 1u);
  EXPECT_EQ(Check(limiter, "evil").outcome, CheckResult::Outcome::kDenied);
  EXPECT_EQ(Check(limiter, "evil").deny_reason, "abuse");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Check(limiter, "ops").outcome, CheckResult::Outcome::kAllowlisted);
  }
  limiter.SetRules(rules::RuleSet::Empty());
  EXPECT_EQ(limiter.rules_version(), 2u);
  EXPECT_FALSE(Check(limiter, "evil").limited);
}

// Verifies the failure policies on a store that fails every round trip.
TEST_F(LimiterTest, FailurePolicies) {
  testing::SwitchableStore failing(clock_);
  failing.set_down(true);
  auto rules = Rules("rules:\n  - {id: r, key: [user_id], limit: 1, window: 1h}\n");
  Limiter open(failing, clock_, metrics_, rejections_, {.on_failure = FailurePolicy::kFailOpen});
  open.SetRules(rules);
  CheckResult a = Check(open, "u");
  EXPECT_EQ(a.outcome, CheckResult::Outcome::kAllowed);
  EXPECT_TRUE(a.degraded);
  EXPECT_TRUE(open.store_failing());

  Limiter closed(failing, clock_, metrics_, rejections_,
                 {.on_failure = FailurePolicy::kFailClosed});
  closed.SetRules(rules);
  EXPECT_EQ(Check(closed, "u").outcome, CheckResult::Outcome::kStoreUnavailable);
}

// Verifies the Envoy path: over-limit descriptors consume nothing from the others, statuses
// come back in order, unknown domains are OK.
TEST_F(LimiterTest, DescriptorsAllOrNothing) {
  Limiter limiter(store_, clock_, metrics_, rejections_, {});
  limiter.SetRules(Rules(R"(
domain: d
descriptors:
  - key: a
    rate_limit: {unit: hour, requests_per_unit: 10}
  - key: b
    rate_limit: {unit: hour, requests_per_unit: 1}
)"));
  auto check = [&](std::vector<std::string> keys, std::string domain = "d") {
    DescriptorsRequest request;
    request.domain = domain;
    for (auto& k : keys) request.descriptors.push_back({.entries = {{k, "x"}}});
    DescriptorsResult out;
    limiter.CheckDescriptors(std::move(request), [&](DescriptorsResult r) { out = std::move(r); });
    return out;
  };
  EXPECT_FALSE(check({"a", "b"}).over_limit);
  DescriptorsResult r = check({"a", "b"});
  EXPECT_TRUE(r.over_limit);
  ASSERT_EQ(r.statuses.size(), 2u);
  EXPECT_FALSE(r.statuses[0].over_limit);
  EXPECT_TRUE(r.statuses[1].over_limit);
  EXPECT_EQ(r.statuses[0].limit_remaining, 9u);  // not charged by the rejected request
  DescriptorsResult unknown = check({"a"}, "other");
  EXPECT_FALSE(unknown.over_limit);
  EXPECT_FALSE(unknown.statuses[0].current_limit.has_value());
}

// Verifies that shadow descriptors never feed the RateLimit-* headers, that an override on a
// shadow descriptor is enforced, and that the Envoy path records check durations.
TEST_F(LimiterTest, DescriptorShadowAndOverrides) {
  Limiter limiter(store_, clock_, metrics_, rejections_, {});
  limiter.SetRules(Rules(R"(
domain: d
descriptors:
  - key: s
    rate_limit: {unit: hour, requests_per_unit: 1}
    shadow_mode: true
  - key: e
    rate_limit: {unit: hour, requests_per_unit: 50}
)"));
  auto run = [&](DescriptorsRequest request) {
    DescriptorsResult out;
    limiter.CheckDescriptors(std::move(request), [&](DescriptorsResult r) { out = std::move(r); });
    return out;
  };
  DescriptorsRequest both{.domain = "d",
                          .descriptors = {{.entries = {{"s", "x"}}}, {.entries = {{"e", "x"}}}}};
  run(both);
  DescriptorsResult r = run(both);
  EXPECT_FALSE(r.over_limit);  // the shadow descriptor is over, but only in shadow
  ASSERT_EQ(r.response_headers.size(), 3u);
  EXPECT_EQ(r.response_headers[0].second, "50");  // from the enforced descriptor

  DescriptorsRequest overridden{
      .domain = "d",
      .descriptors = {{.entries = {{"s", "y"}},
                       .limit_override = DescriptorRequest::Override{
                           1, rules::RateLimitUnit::kHour}}}};
  EXPECT_FALSE(run(overridden).over_limit);
  EXPECT_TRUE(run(overridden).over_limit);  // overrides are enforced
  EXPECT_NE(metrics_.Render().find("sluice_check_duration_seconds_count 4"), std::string::npos);
}

}  // namespace
}  // namespace sluice
