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

// Verifies CONTRACT §10 through the limiter: an admitted check on concurrency rules carries one
// lease id that frees every slot it took (two rules here), a rejected one carries none and holds
// nothing, a read takes no slot, and Release refuses ids no check could have made.
TEST_F(LimiterTest, ConcurrencyLeaseIdsReleaseEverySlotOfACheck) {
  Limiter limiter(store_, clock_, metrics_, rejections_, {});
  limiter.SetRules(Rules(R"(
rules:
  - {id: per-user, key: [user_id], limit: 2, algorithm: concurrency}
  - {id: global, key: [], limit: 3, algorithm: concurrency}
)"));
  auto release = [&](const std::string& id) {
    absl::Status out = absl::UnknownError("not called");
    limiter.Release(id, [&](absl::Status s) { out = std::move(s); });
    return out;
  };
  CheckResult a = Check(limiter, "u");
  CheckResult b = Check(limiter, "u");
  ASSERT_EQ(a.outcome, CheckResult::Outcome::kAllowed);
  ASSERT_EQ(b.outcome, CheckResult::Outcome::kAllowed);
  EXPECT_FALSE(a.lease_id.empty());
  EXPECT_NE(a.lease_id, b.lease_id);
  CheckResult over = Check(limiter, "u");
  EXPECT_EQ(over.outcome, CheckResult::Outcome::kRejected);
  EXPECT_EQ(over.rule_id, "per-user");
  EXPECT_TRUE(over.lease_id.empty());
  EXPECT_EQ(Check(limiter, "v").outcome, CheckResult::Outcome::kAllowed);  // global: 3 of 3
  EXPECT_EQ(Check(limiter, "w").rule_id, "global");                        // refused by global
  EXPECT_TRUE(Check(limiter, "w", "", 0).lease_id.empty());                // a read holds nothing
  ASSERT_TRUE(release(a.lease_id).ok());
  // Both of a's slots are free: u may take one more and w one of the global three.
  CheckResult c = Check(limiter, "w");
  EXPECT_EQ(c.outcome, CheckResult::Outcome::kAllowed);
  EXPECT_EQ(c.decision.remaining, 0);     // the global rule, with the least left
  ASSERT_TRUE(release(a.lease_id).ok());  // again: nothing more
  EXPECT_EQ(Check(limiter, "u").outcome, CheckResult::Outcome::kRejected);
  for (const std::string& bad :
       std::vector<std::string>{"", "zz", std::string(32, '0'), std::string(32, 'A') + ".eA",
                                std::string(32, '0') + ".", std::string(32, '0') + ".*"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(release(bad))) << bad;
  }
}

// Verifies penalties: a key rejected `after` times within `within` is denied (reason
// penalty:RULE) for `ban`, then counted afresh; other keys are untouched; rejections spread
// wider than `within` never ban; and the ban shows in Bans() until it expires.
TEST_F(LimiterTest, PenaltyBansARepeatOffenderForItsDuration) {
  Limiter limiter(store_, clock_, metrics_, rejections_, {});
  limiter.SetRules(Rules(R"(
rules:
  - {id: login, key: [user_id], limit: 1, window: 1s, algorithm: fixed_window,
     penalty: {after: 3, within: 10s, ban: 1m}}
)"));
  using Outcome = CheckResult::Outcome;
  clock_.Set(kNow - kNow % kMicrosPerSecond);  // at the start of a fixed window
  EXPECT_EQ(Check(limiter, "mallory").outcome, Outcome::kAllowed);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Check(limiter, "mallory").outcome, Outcome::kRejected);
  CheckResult banned = Check(limiter, "mallory");
  EXPECT_EQ(banned.outcome, Outcome::kDenied);
  EXPECT_EQ(banned.rule_id, "deny_list");
  EXPECT_EQ(banned.deny_reason, "penalty:login");
  EXPECT_EQ(Check(limiter, "alice").outcome, Outcome::kAllowed);  // another key
  ASSERT_EQ(limiter.Bans().size(), 1u);
  EXPECT_EQ(limiter.Bans()[0].rule_id, "login");
  EXPECT_EQ(limiter.Bans()[0].until, clock_.NowMicros() + 60 * kMicrosPerSecond);

  // Still banned in the rule's next windows, though its own limit has room again.
  clock_.Advance(30 * kMicrosPerSecond);
  EXPECT_EQ(Check(limiter, "mallory").outcome, Outcome::kDenied);
  clock_.Advance(30 * kMicrosPerSecond);
  EXPECT_EQ(Check(limiter, "mallory").outcome, Outcome::kAllowed);
  EXPECT_TRUE(limiter.Bans().empty());

  // Two rejections a window, 11 s apart: never 3 within 10 s, never banned.
  for (int round = 0; round < 5; ++round) {
    clock_.Advance(11 * kMicrosPerSecond);
    EXPECT_EQ(Check(limiter, "bob").outcome, Outcome::kAllowed);
    EXPECT_EQ(Check(limiter, "bob").outcome, Outcome::kRejected);
    EXPECT_EQ(Check(limiter, "bob").outcome, Outcome::kRejected);
  }
  EXPECT_EQ(Check(limiter, "bob").outcome, Outcome::kRejected);  // the third within 10 s
  EXPECT_EQ(Check(limiter, "bob").outcome, Outcome::kDenied);
  EXPECT_EQ(metrics_.PenaltyBans("login").Value(), 2);
}

// Verifies shaping: an enforced `shape: true` leaky_bucket rule sets the hold to its delay, and
// a request whose delay would pass max_delay is rejected (the queue holds max_delay's worth).
TEST_F(LimiterTest, ShapeRulesSetTheHoldWithinMaxDelay) {
  Limiter limiter(store_, clock_, metrics_, rejections_, {});
  limiter.SetRules(Rules(R"(
rules:
  - {id: shaped, key: [], limit: 10, window: 1s, burst: 50, algorithm: leaky_bucket, shape: true,
     max_delay: 300ms}
  - {id: plain, key: [user_id], limit: 10, window: 1s, algorithm: leaky_bucket}
)"));
  std::vector<Micros> holds;
  for (int i = 0; i < 6; ++i) {
    CheckResult r = Check(limiter, "u" + std::to_string(i));
    if (r.outcome != CheckResult::Outcome::kAllowed) break;
    holds.push_back(r.hold);
  }
  // 0.3 s at 10/s: the queue takes 4 (delays 0, 100, 200, 300 ms); the fifth would wait 400 ms.
  ASSERT_EQ(holds.size(), 4u);
  EXPECT_EQ(holds[0], 0);
  for (size_t i = 1; i < holds.size(); ++i) {
    EXPECT_EQ(holds[i], static_cast<Micros>(i) * 100'000);
  }
  clock_.Advance(100'000);  // one drains
  CheckResult r = Check(limiter, "u9");
  EXPECT_EQ(r.outcome, CheckResult::Outcome::kAllowed);
  EXPECT_EQ(r.hold, 300'000);
  // A plain leaky_bucket reports its delay but sets no hold.
  Limiter unshaped(store_, clock_, metrics_, rejections_, {});
  unshaped.SetRules(
      Rules("rules:\n  - {id: plain, key: [], limit: 1, window: 1s, burst: 5, "
            "algorithm: leaky_bucket}\n"));
  Check(unshaped, "a");
  CheckResult queued = Check(unshaped, "a");
  EXPECT_GT(queued.decision.delay, 0);
  EXPECT_EQ(queued.hold, 0);
}

// Verifies CONTRACT §8 tiers: a check with a user_id and no tier is matched with the stored
// tier (lists too); a tier the check carries wins; a user without one stays as asked.
TEST_F(LimiterTest, StoredTiersApplyToChecksWithoutATier) {
  Limiter limiter(store_, clock_, metrics_, rejections_, {});
  limiter.SetRules(Rules(R"(
rules:
  - {id: free, group: q, priority: 20, match: {tier: free}, key: [user_id], limit: 1, window: 1h}
  - {id: premium, group: q, priority: 10, match: {tier: premium}, key: [user_id], limit: 50,
     window: 1h}
lists:
  deny:
    - {tier: banned, reason: tier}
)"));
  EXPECT_FALSE(Check(limiter, "carol").limited);
  limiter.SetTiers(std::make_shared<Limiter::TierMap>(
      Limiter::TierMap{{"carol", "premium"}, {"mallory", "banned"}}));
  EXPECT_EQ(Check(limiter, "carol").rule_id, "premium");
  EXPECT_EQ(Check(limiter, "carol", "free").rule_id, "free");  // the check's own tier wins
  EXPECT_FALSE(Check(limiter, "dave").limited);
  EXPECT_EQ(Check(limiter, "mallory").outcome, CheckResult::Outcome::kDenied);
  limiter.SetTiers(std::make_shared<Limiter::TierMap>());
  EXPECT_FALSE(Check(limiter, "carol").limited);
}

// Verifies the admin API's counter read (cost 0: nothing consumed) and reset, and the errors
// for an unknown rule and a missing key attribute.
TEST_F(LimiterTest, CounterReadsWithoutConsumingAndResets) {
  Limiter limiter(store_, clock_, metrics_, rejections_, {});
  limiter.SetRules(Rules(R"(
rules:
  - {id: per-user, key: [user_id], limit: 2, window: 1h, algorithm: fixed_window}
)"));
  auto counter = [&](const std::string& rule, const std::string& user, bool reset) {
    rules::RequestAttributes attributes;
    attributes.user_id = user;
    Limiter::CounterResult out;
    limiter.Counter(rule, attributes, reset, [&](Limiter::CounterResult r) { out = std::move(r); });
    return out;
  };
  ASSERT_EQ(Check(limiter, "u").decision.remaining, 1);
  for (int i = 0; i < 3; ++i) {
    Limiter::CounterResult r = counter("per-user", "u", false);
    ASSERT_TRUE(r.status.ok()) << r.status;
    EXPECT_EQ(r.decision.remaining, 1);
  }
  ASSERT_EQ(Check(limiter, "u").decision.remaining, 0);
  ASSERT_EQ(Check(limiter, "u").outcome, CheckResult::Outcome::kRejected);
  ASSERT_TRUE(counter("per-user", "u", true).status.ok());
  EXPECT_EQ(counter("per-user", "u", false).decision.remaining, 2);
  EXPECT_EQ(Check(limiter, "u").outcome, CheckResult::Outcome::kAllowed);
  EXPECT_EQ(counter("nope", "u", false).status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(counter("per-user", "", false).status.code(), absl::StatusCode::kInvalidArgument);
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

// Verifies that shadow descriptors are marked as such (they never feed the RateLimit-* headers),
// that an override on a shadow descriptor is enforced, and that the Envoy path records check
// durations.
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
  ASSERT_EQ(r.statuses.size(), 2u);
  EXPECT_TRUE(r.statuses[0].shadow);  // left out of the Envoy face's RateLimit-* headers
  EXPECT_FALSE(r.statuses[1].shadow);

  DescriptorsRequest overridden{.domain = "d",
                                .descriptors = {{.entries = {{"s", "y"}},
                                                 .limit_override = DescriptorRequest::Override{
                                                     1, rules::RateLimitUnit::kHour}}}};
  EXPECT_FALSE(run(overridden).over_limit);
  EXPECT_TRUE(run(overridden).over_limit);  // overrides are enforced
  EXPECT_NE(metrics_.Render().find("sluice_check_duration_seconds_count 4"), std::string::npos);
}

// Verifies that every answer is timed, the ones the store never sees included (deny list,
// allow list, no applicable rule), and the store's own histogram only for store round trips.
TEST_F(LimiterTest, EveryAnswerIsTimed) {
  Limiter limiter(store_, clock_, metrics_, rejections_, {});
  limiter.SetRules(Rules(R"(
rules:
  - {id: r, key: [user_id], limit: 5, window: 1h, match: {endpoint: "/x"}}
lists:
  allow: [{user_id: ops}]
  deny: [{user_id: evil}]
)"));
  Check(limiter, "evil");                // denied
  Check(limiter, "ops");                 // allow-listed
  Check(limiter, "u", "", 1, "/other");  // no rule applies
  Check(limiter, "u", "", 1, "/x");      // the store decides
  const std::string text = metrics_.Render();
  EXPECT_NE(text.find("sluice_check_duration_seconds_count 4"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(sluice_store_duration_seconds_count{backend="memory",op="charge"} 1)"),
            std::string::npos)
      << text;
}

// Verifies sluice_rule_store_duration_seconds: one observation per applicable rule per store
// round trip (failed ones included), none for answers without the store (lists, no rule) nor
// for Envoy requests; rules past max_rule_series observe into "_other", one each.
TEST_F(LimiterTest, StoreDurationPerRule) {
  for (bool down : {false, true}) {
    testing::SwitchableStore store(clock_);
    store.set_down(down);
    obs::Metrics metrics;
    Limiter limiter(store, clock_, metrics, rejections_, {.max_rule_series = 2});
    limiter.SetRules(Rules(R"(
rules:
  - {id: a, key: [user_id], limit: 5, window: 1h}
  - {id: b, key: [user_id], limit: 5, window: 1h, mode: shadow, match: {endpoint: "/x"}}
  - {id: c, key: [user_id], limit: 5, window: 1h, match: {endpoint: "/x"}}
  - {id: d, key: [user_id], limit: 5, window: 1h, match: {endpoint: "/x"}}
lists:
  deny: [{user_id: evil}]
)"));
    Check(limiter, "u", "", 1, "/x");  // a, b, c, d
    Check(limiter, "u");               // a
    Check(limiter, "evil");            // denied: no round trip
    std::string text = metrics.Render();
    for (const char* present : {R"(sluice_rule_store_duration_seconds_count{rule_id="a"} 2)",
                                R"(sluice_rule_store_duration_seconds_count{rule_id="b"} 1)",
                                R"(sluice_rule_store_duration_seconds_count{rule_id="_other"} 2)",
                                R"(sluice_store_duration_seconds_count{backend="switchable",)"
                                R"(op="charge"} 2)"}) {
      EXPECT_NE(text.find(present), std::string::npos) << present << "\n" << text;
    }
    EXPECT_EQ(text.find(R"(rule_id="c")"), std::string::npos) << text;
    EXPECT_EQ(text.find(R"(sluice_rule_store_duration_seconds_count{rule_id="deny_list"})"),
              std::string::npos)
        << text;

    // Envoy requests: timed in sluice_store_duration_seconds only.
    limiter.SetRules(Rules(R"(
domain: edge
descriptors:
  - {key: k, rate_limit: {unit: hour, requests_per_unit: 5}}
)"));
    DescriptorsRequest envoy;
    envoy.domain = "edge";
    envoy.descriptors.push_back({.entries = {{"k", "v"}}});
    limiter.CheckDescriptors(std::move(envoy), [](DescriptorsResult) {});
    text = metrics.Render();
    EXPECT_NE(
        text.find(R"(sluice_store_duration_seconds_count{backend="switchable",op="charge"} 3)"),
        std::string::npos)
        << text;
    EXPECT_EQ(text.find("sluice_rule_store_duration_seconds_count"), std::string::npos) << text;
  }
}

// Verifies that /metrics declares only the series that can occur: no `blocked` for a rule,
// no `rejected` for a shadow rule, no `allowed` for the deny list.
TEST_F(LimiterTest, OnlyPossibleSeriesAreDeclared) {
  Limiter limiter(store_, clock_, metrics_, rejections_, {});
  limiter.SetRules(Rules(R"(
rules:
  - {id: hard, key: [user_id], limit: 5, window: 1h}
  - {id: soft, key: [user_id], limit: 5, window: 1h, mode: shadow}
)"));
  const std::string text = metrics_.Render();
  for (const char* present :
       {R"({result="allowed",rule_id="hard"})", R"({result="rejected",rule_id="hard"})",
        R"({result="error",rule_id="hard"})", R"({result="shadow_rejected",rule_id="soft"})",
        R"({result="blocked",rule_id="deny_list"})",
        R"({result="allowed",rule_id="allow_list"})"}) {
    EXPECT_NE(text.find(present), std::string::npos) << present << "\n" << text;
  }
  for (const char* absent :
       {R"({result="blocked",rule_id="hard"})", R"({result="shadow_rejected",rule_id="hard"})",
        R"({result="rejected",rule_id="soft"})", R"({result="allowed",rule_id="deny_list"})",
        R"({result="rejected",rule_id="allow_list"})"}) {
    EXPECT_EQ(text.find(absent), std::string::npos) << absent << "\n" << text;
  }
}

// Verifies that a descriptor override no exact limit can express (a token bucket of 4000000007 a
// year is too fine-grained) refuses the request, charges nothing and is counted — it is never
// skipped into a limit that counts nothing.
TEST_F(LimiterTest, UncountableOverrideIsRefused) {
  Limiter limiter(store_, clock_, metrics_, rejections_, {});
  limiter.SetRules(Rules(R"(
domain: d
descriptors:
  - key: k
    rate_limit: {unit: hour, requests_per_unit: 1, algorithm: token_bucket}
)"));
  DescriptorsRequest request{.domain = "d",
                             .descriptors = {{.entries = {{"k", "a"}}},
                                             {.entries = {{"k", "b"}},
                                              .limit_override = DescriptorRequest::Override{
                                                  4'000'000'007u, rules::RateLimitUnit::kYear}}}};
  DescriptorsResult out;
  bool called = false;
  limiter.CheckDescriptors(request, [&](DescriptorsResult r) {
    out = std::move(r);
    called = true;
  });
  ASSERT_TRUE(called);
  EXPECT_EQ(out.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(out.status.message().find("descriptor 1: limit override 4000000007 per year"),
            std::string::npos)
      << out.status;
  EXPECT_NE(metrics_.Render().find("sluice_envoy_overrides_refused_total 1"), std::string::npos);
  // Nothing was charged: descriptor 0 still has its one request.
  DescriptorsRequest first{.domain = "d", .descriptors = {{.entries = {{"k", "a"}}}}};
  limiter.CheckDescriptors(first, [&](DescriptorsResult r) { out = std::move(r); });
  ASSERT_TRUE(out.status.ok());
  EXPECT_FALSE(out.over_limit);
  EXPECT_EQ(out.statuses[0].limit_remaining, 0u);
}

// Verifies the store probe: a read that charges nothing, and what it says under each policy.
TEST_F(LimiterTest, ProbeStore) {
  auto probe = [](Limiter& limiter) {
    ProbeResult out;
    bool called = false;
    limiter.ProbeStore([&](ProbeResult r) {
      out = r;
      called = true;
    });
    EXPECT_TRUE(called);
    return out;
  };
  Limiter up(store_, clock_, metrics_, rejections_, {});
  ProbeResult r = probe(up);
  EXPECT_TRUE(r.store_up);
  EXPECT_TRUE(r.can_decide);
  EXPECT_GE(r.latency_ms, 0);

  testing::SwitchableStore failing(clock_);
  failing.set_down(true);
  Limiter open(failing, clock_, metrics_, rejections_, {.on_failure = FailurePolicy::kFailOpen});
  r = probe(open);
  EXPECT_FALSE(r.store_up);
  EXPECT_TRUE(r.can_decide);
  Limiter closed(failing, clock_, metrics_, rejections_,
                 {.on_failure = FailurePolicy::kFailClosed});
  r = probe(closed);
  EXPECT_FALSE(r.store_up);
  EXPECT_FALSE(r.can_decide);
}

// Verifies the Envoy path under a failing store: fail_open answers OK marked degraded (the face
// then reports no numbers), and a request with nothing to count never reaches the store.
TEST_F(LimiterTest, DescriptorsWhenTheStoreFails) {
  testing::SwitchableStore failing(clock_);
  failing.set_down(true);
  Limiter open(failing, clock_, metrics_, rejections_, {.on_failure = FailurePolicy::kFailOpen});
  open.SetRules(Rules(R"(
domain: d
descriptors:
  - key: k
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: free
    rate_limit: {unlimited: true}
)"));
  auto run = [&](const std::string& key) {
    DescriptorsResult out;
    open.CheckDescriptors({.domain = "d", .descriptors = {{.entries = {{key, "x"}}}}},
                          [&](DescriptorsResult r) { out = std::move(r); });
    return out;
  };
  DescriptorsResult r = run("k");
  EXPECT_FALSE(r.over_limit);
  EXPECT_TRUE(r.degraded);
  EXPECT_TRUE(open.store_failing());
  // Unlimited: nothing to count, so no store round trip, and the store is not blamed.
  failing.set_down(false);
  const std::string count =
      R"(sluice_store_duration_seconds_count{backend="switchable",op="charge"})";
  const std::string before = metrics_.Render();
  r = run("free");
  EXPECT_FALSE(r.degraded);
  const std::string after = metrics_.Render();
  EXPECT_EQ(before.substr(before.find(count), count.size() + 3),
            after.substr(after.find(count), count.size() + 3));
}

// ---- Bounded metric series (issue 10) ----

// A memory store whose answers wait until Release(): requests stay in flight, holding their
// rules snapshot, across a reload.
class HeldStore final : public Store {
 public:
  explicit HeldStore(const Clock& clock) : inner_(clock) {}
  void Charge(std::span<const ChargeItem> items, std::span<Decision> decisions,
              Done done) override {
    held_.push_back([this, items, decisions, done = std::move(done)]() mutable {
      inner_.Charge(items, decisions, std::move(done));
    });
  }
  void Release(std::string_view key, std::string_view lease, Done done) override {
    inner_.Release(key, lease, std::move(done));
  }
  void Reset(std::string_view key, const Limit& limit, Done done) override {
    inner_.Reset(key, limit, std::move(done));
  }
  std::string_view backend() const override { return "memory"; }
  void Release() {
    auto held = std::move(held_);
    held_.clear();
    for (auto& run : held) std::move(run)();
  }

 private:
  MemoryStore inner_;
  std::vector<absl::AnyInvocable<void() &&>> held_;
};

// `n` rules with ids PREFIX0..PREFIX(n-1).
std::string RulesWithIds(const std::string& prefix, int n) {
  std::string yaml = "rules:\n";
  for (int i = 0; i < n; ++i) {
    yaml += "  - {id: " + prefix + std::to_string(i) + ", key: [user_id], limit: 5, window: 1h}\n";
  }
  return yaml;
}

// Verifies that rules past max_rule_latency_series share the "_other" store duration.
TEST_F(LimiterTest, RuleLatencySeriesAreBounded) {
  Limiter limiter(store_, clock_, metrics_, rejections_, {.max_rule_latency_series = 10});
  limiter.SetRules(Rules(RulesWithIds("r", 30)));
  EXPECT_EQ(metrics_.rule_store_series(), 11u);  // r0 … r9 and _other
  const std::string text = metrics_.Render();
  EXPECT_NE(text.find("sluice_rule_store_duration_seconds_count{rule_id=\"r9\"}"),
            std::string::npos);
  EXPECT_EQ(text.find("sluice_rule_store_duration_seconds_count{rule_id=\"r10\"}"),
            std::string::npos);
  EXPECT_NE(text.find("sluice_rule_store_duration_seconds_count{rule_id=\"_other\"}"),
            std::string::npos);
}

// Verifies that a reload drops the series of the rules it removed (they used to stay for ever:
// 10 reloads of 2000 new ids left 100k lines), and keeps those of the rules it kept.
TEST_F(LimiterTest, ReloadDropsTheSeriesOfRemovedRules) {
  Limiter limiter(store_, clock_, metrics_, rejections_, {.max_rule_latency_series = 1000});
  const size_t lists = metrics_.request_series();  // deny_list and allow_list
  for (int reload = 0; reload < 10; ++reload) {
    limiter.SetRules(Rules(RulesWithIds("v" + std::to_string(reload) + "-", 200) +
                           "  - {id: kept, key: [user_id], limit: 5, window: 1h}\n"));
    EXPECT_EQ(metrics_.request_series(), lists + 3 * 201);
    EXPECT_EQ(metrics_.rule_store_series(), 201u);
  }
  Check(limiter, "u");
  limiter.SetRules(
      Rules(RulesWithIds("last-", 1) + "  - {id: kept, key: [user_id], limit: 5, window: 1h}\n"));
  const std::string text = metrics_.Render();
  EXPECT_EQ(text.find("rule_id=\"v9-0\""), std::string::npos) << text;
  EXPECT_NE(text.find(R"(sluice_requests_total{result="allowed",rule_id="last-0"} 0)"),
            std::string::npos);
  // A kept rule keeps counting across the reload.
  EXPECT_NE(text.find(R"(sluice_requests_total{result="allowed",rule_id="kept"} 1)"),
            std::string::npos)
      << text;
}

// Verifies that a request in flight on the old rules keeps its series until it is done: its
// result is counted, and only then does the removed rule's series go.
TEST_F(LimiterTest, RequestsInFlightKeepTheirSeries) {
  HeldStore held(clock_);
  Limiter limiter(held, clock_, metrics_, rejections_, {});
  limiter.SetRules(Rules(RulesWithIds("old-", 1)));
  CheckRequest request;
  request.attributes.user_id = "u";
  bool done = false;
  limiter.Check(std::move(request), [&](CheckResult r) {
    EXPECT_EQ(r.rule_id, "old-0");
    done = true;
  });
  limiter.SetRules(Rules(RulesWithIds("new-", 1)));
  EXPECT_NE(metrics_.Render().find(R"(rule_id="old-0")"), std::string::npos);
  held.Release();
  ASSERT_TRUE(done);
  EXPECT_EQ(metrics_.Render().find(R"(rule_id="old-0")"), std::string::npos);
  EXPECT_NE(metrics_.Render().find(R"(rule_id="new-0")"), std::string::npos);
}

// Verifies the per-rule series limit: the first max_rule_series rules in file order have their
// own; the others, enforced or shadow, count under rule_id="_other".
TEST_F(LimiterTest, RulesPastTheSeriesLimitShareOther) {
  Limiter limiter(store_, clock_, metrics_, rejections_, {.max_rule_series = 2});
  limiter.SetRules(Rules(RulesWithIds("r", 4) +
                         "  - {id: s, key: [user_id], limit: 1, window: 1h, mode: shadow}\n"));
  for (int i = 0; i < 2; ++i) Check(limiter, "u");
  const std::string text = metrics_.Render();
  for (const char* present :
       {R"(sluice_requests_total{result="allowed",rule_id="r0"} 2)",
        R"(sluice_requests_total{result="allowed",rule_id="r1"} 2)",
        R"(sluice_requests_total{result="allowed",rule_id="_other"} 5)",  // r2, r3 twice, s once
        R"(sluice_requests_total{result="shadow_rejected",rule_id="_other"} 1)",
        R"(sluice_requests_total{result="rejected",rule_id="_other"} 0)"}) {
    EXPECT_NE(text.find(present), std::string::npos) << present << "\n" << text;
  }
  EXPECT_EQ(text.find(R"(rule_id="r2")"), std::string::npos) << text;
  EXPECT_EQ(text.find(R"(rule_id="s")"), std::string::npos) << text;
}

// Verifies that Envoy metric keys are bounded: detailed_metric makes a key per request value,
// and past max_descriptor_series (or for a value no label can hold) they share "_other"; a
// reload drops them.
TEST_F(LimiterTest, DescriptorMetricKeysAreBounded) {
  Limiter limiter(store_, clock_, metrics_, rejections_, {.max_descriptor_series = 3});
  limiter.SetRules(Rules(R"(
domain: d
descriptors:
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 100}
    detailed_metric: true
)"));
  auto check = [&](const std::string& value) {
    DescriptorsRequest request{.domain = "d", .descriptors = {{.entries = {{"user", value}}}}};
    limiter.CheckDescriptors(std::move(request), [](DescriptorsResult) {});
  };
  for (int i = 0; i < 100; ++i) check("u" + std::to_string(i));
  check(std::string("nul\0zzq", 7));
  check("u0");
  const std::string text = metrics_.Render();
  for (const char* present : {R"(sluice_requests_total{result="allowed",rule_id="d.user_u0"} 2)",
                              R"(sluice_requests_total{result="allowed",rule_id="d.user_u2"} 1)",
                              R"(sluice_requests_total{result="allowed",rule_id="_other"} 98)"}) {
    EXPECT_NE(text.find(present), std::string::npos) << present << "\n" << text;
  }
  EXPECT_EQ(text.find(R"(rule_id="d.user_u3")"), std::string::npos) << text;
  EXPECT_EQ(text.find("zzq"), std::string::npos) << text;
  limiter.SetRules(Rules("rules: []\n"));
  EXPECT_EQ(metrics_.Render().find(R"(rule_id="d.user_u0")"), std::string::npos);
  EXPECT_EQ(metrics_.Render().find(R"(rule_id="_other")"), std::string::npos);
}

}  // namespace
}  // namespace sluice
