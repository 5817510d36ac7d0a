// on_failure: local — while the store fails, checks are decided by a local store with each limit
// scaled by fallback_share, and reported as degraded (CONTRACT §7).
#include <gtest/gtest.h>

#include <atomic>

#include "limiter/limiter.h"
#include "store/memory/memory_store.h"
#include "tests/testing/limiter_fixtures.h"

namespace sluice {
namespace {

constexpr Micros kNow = int64_t{1764000000} * kMicrosPerSecond;

std::shared_ptr<const rules::RuleSet> Rules(const std::string& yaml) {
  return testing::RuleSetFromYaml(yaml);
}

using FlakyStore = testing::SwitchableStore;

class LimiterLocalTest : public ::testing::Test {
 protected:
  CheckResult Check(Limiter& limiter, const std::string& user) {
    CheckRequest request;
    request.attributes.user_id = user;
    CheckResult out;
    limiter.Check(std::move(request), [&](CheckResult r) { out = std::move(r); });
    return out;
  }

  ManualClock clock_{kNow};
  FlakyStore store_{clock_};
  MemoryStore fallback_{clock_};
  obs::Metrics metrics_;
  obs::RejectionLog rejections_{clock_};
};

// Verifies that a failing store hands decisions to the fallback with the limit scaled (8 * 0.25
// = 2 here), reported with the rule's own limit and as degraded; and that the shared store
// decides again, not degraded, once it answers.
TEST_F(LimiterLocalTest, DecidesLocallyWithScaledLimitsWhileTheStoreFails) {
  Limiter limiter(
      store_, clock_, metrics_, rejections_,
      {.on_failure = FailurePolicy::kLocal, .fallback = &fallback_, .fallback_share = 0.25});
  limiter.SetRules(Rules("rules:\n  - {id: r, key: [user_id], limit: 8, window: 1h}\n"));
  ASSERT_EQ(Check(limiter, "u").decision.remaining, 7);  // the shared store
  store_.set_down(true);
  for (int i = 0; i < 2; ++i) {
    CheckResult r = Check(limiter, "u");
    EXPECT_EQ(r.outcome, CheckResult::Outcome::kAllowed);
    EXPECT_TRUE(r.degraded);
    EXPECT_EQ(r.decision.limit, 8);
    EXPECT_EQ(r.decision.remaining, 1 - i);
  }
  CheckResult rejected = Check(limiter, "u");
  EXPECT_EQ(rejected.outcome, CheckResult::Outcome::kRejected);
  EXPECT_TRUE(rejected.degraded);
  EXPECT_TRUE(limiter.store_failing());
  // A tiny share still grants at least one request.
  Limiter tiny(
      store_, clock_, metrics_, rejections_,
      {.on_failure = FailurePolicy::kLocal, .fallback = &fallback_, .fallback_share = 0.01});
  tiny.SetRules(Rules("rules:\n  - {id: t, key: [user_id], limit: 8, window: 1h}\n"));
  EXPECT_EQ(Check(tiny, "v").outcome, CheckResult::Outcome::kAllowed);
  EXPECT_EQ(Check(tiny, "v").outcome, CheckResult::Outcome::kRejected);

  store_.set_down(false);
  CheckResult back = Check(limiter, "u");
  EXPECT_FALSE(back.degraded);
  EXPECT_EQ(back.decision.remaining, 6);  // the shared count, untouched by local decisions
  EXPECT_FALSE(limiter.store_failing());
}

// Verifies the Envoy descriptors path under local: scaled limits, all-or-nothing kept.
TEST_F(LimiterLocalTest, DescriptorsDecideLocallyToo) {
  Limiter limiter(
      store_, clock_, metrics_, rejections_,
      {.on_failure = FailurePolicy::kLocal, .fallback = &fallback_, .fallback_share = 0.5});
  limiter.SetRules(Rules(R"(
domain: d
descriptors:
  - key: a
    rate_limit: {unit: hour, requests_per_unit: 4}
)"));
  store_.set_down(true);
  auto check = [&](std::optional<uint32_t> override_limit = std::nullopt) {
    DescriptorsRequest request;
    request.domain = "d";
    DescriptorRequest d;
    d.entries = {{"a", "x"}};
    if (override_limit) {
      d.limit_override = DescriptorRequest::Override{};
      d.limit_override->requests_per_unit = *override_limit;
    }
    request.descriptors.push_back(d);
    DescriptorsResult out;
    limiter.CheckDescriptors(std::move(request), [&](DescriptorsResult r) { out = std::move(r); });
    return out;
  };
  EXPECT_FALSE(check().over_limit);
  EXPECT_EQ(check().statuses[0].limit_remaining, 0u);  // 4 * 0.5 = 2
  EXPECT_TRUE(check().over_limit);
  // A per-request override is scaled too: 6 per second * 0.5 = 3.
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(check(6).over_limit) << i;
  EXPECT_TRUE(check(6).over_limit);
}

}  // namespace
}  // namespace sluice
