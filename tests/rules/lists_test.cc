// lists.allow and lists.deny (CONTRACT §3.1): matching, expiry, deny over allow.
#include <gtest/gtest.h>

#include "rules/rule_set.h"
#include "tests/rules/test_util.h"
#include "yaml/values.h"

namespace sluice::rules {
namespace {

using ::sluice::rules::testing::LoadOk;
using ::sluice::rules::testing::LoadYaml;
using ::sluice::rules::testing::Req;

constexpr Micros kNow = int64_t{1764000000} * kMicrosPerSecond;  // 2025-11-24

ListVerdict::Kind Verdict(const RuleSet& set, const RequestAttributes& r, Micros now = kNow) {
  return set.CheckLists(r, now).kind;
}

// Verifies allow entries by exact value, CIDR and glob; other requests are on no list.
TEST(ListsTest, AllowEntriesMatch) {
  auto set = LoadYaml(R"(
lists:
  allow:
    - {ip_address: 10.0.0.0/8}
    - {ip_address: "2001:db8::/32"}
    - {user_id: ops-bot}
    - {endpoint: "/health*"}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(Verdict(*set, Req({{"ip_address", "10.1.2.3"}})), ListVerdict::Kind::kAllow);
  EXPECT_EQ(Verdict(*set, Req({{"ip_address", "2001:db8::5"}})), ListVerdict::Kind::kAllow);
  EXPECT_EQ(Verdict(*set, Req({{"user_id", "ops-bot"}})), ListVerdict::Kind::kAllow);
  EXPECT_EQ(Verdict(*set, Req({{"endpoint", "/healthz"}})), ListVerdict::Kind::kAllow);
  EXPECT_EQ(Verdict(*set, Req({{"ip_address", "11.1.2.3"}, {"user_id", "bob"}})),
            ListVerdict::Kind::kNone);
  EXPECT_EQ(Verdict(*set, Req({})), ListVerdict::Kind::kNone);
}

// Verifies the deny reason and the matching entry are reported.
TEST(ListsTest, DenyCarriesReason) {
  auto set = LoadYaml(R"(
lists:
  deny:
    - {ip_address: 203.0.113.0/24, reason: abuse}
    - {api_key: "sk_live_*"}
)");
  ASSERT_NE(set, nullptr);
  const ListVerdict v = set->CheckLists(Req({{"ip_address", "203.0.113.9"}}), kNow);
  EXPECT_EQ(v.kind, ListVerdict::Kind::kDeny);
  EXPECT_EQ(v.reason(), "abuse");
  ASSERT_NE(v.entry, nullptr);
  EXPECT_EQ(v.entry->location.line, 4);
  const ListVerdict no_reason = set->CheckLists(Req({{"api_key", "sk_live_x"}}), kNow);
  EXPECT_EQ(no_reason.kind, ListVerdict::Kind::kDeny);
  EXPECT_EQ(no_reason.reason(), "");
}

// Verifies that deny wins over allow when a request is on both.
TEST(ListsTest, DenyWinsOverAllow) {
  auto set = LoadYaml(R"(
lists:
  allow:
    - {ip_address: 10.0.0.0/8}
  deny:
    - {user_id: mallory, reason: fraud}
)");
  ASSERT_NE(set, nullptr);
  const ListVerdict v =
      set->CheckLists(Req({{"ip_address", "10.0.0.1"}, {"user_id", "mallory"}}), kNow);
  EXPECT_EQ(v.kind, ListVerdict::Kind::kDeny);
  EXPECT_EQ(v.reason(), "fraud");
  EXPECT_EQ(Verdict(*set, Req({{"ip_address", "10.0.0.1"}, {"user_id", "alice"}})),
            ListVerdict::Kind::kAllow);
}

// Verifies that an entry with several attributes matches only when all of them match.
TEST(ListsTest, MultiAttributeEntryNeedsAll) {
  auto set = LoadYaml(R"(
lists:
  deny:
    - {ip_address: 198.51.100.0/24, endpoint: "/login", method: post, reason: brute force}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(
      Verdict(*set,
              Req({{"ip_address", "198.51.100.7"}, {"endpoint", "/login"}, {"method", "POST"}})),
      ListVerdict::Kind::kDeny);
  EXPECT_EQ(Verdict(*set, Req({{"ip_address", "198.51.100.7"}, {"endpoint", "/login"}})),
            ListVerdict::Kind::kNone);
  EXPECT_EQ(
      Verdict(*set,
              Req({{"ip_address", "198.51.100.7"}, {"endpoint", "/logout"}, {"method", "POST"}})),
      ListVerdict::Kind::kNone);
}

// Verifies that expires_at is evaluated against the `now` passed in, on both lists: an entry
// applies strictly before its expiry and is ignored from then on.
TEST(ListsTest, ExpiredEntriesAreIgnored) {
  auto set = LoadYaml(R"(
lists:
  allow:
    - {user_id: contractor, expires_at: "2026-01-01T00:00:00Z"}
  deny:
    - {api_key: sk_live_stolen, reason: leaked key, expires_at: "2026-12-31T00:00:00Z"}
)");
  ASSERT_NE(set, nullptr);
  const Micros allow_expiry = *yaml::ParseRfc3339("2026-01-01T00:00:00Z");
  const Micros deny_expiry = *yaml::ParseRfc3339("2026-12-31T00:00:00Z");
  const auto contractor = Req({{"user_id", "contractor"}});
  const auto stolen = Req({{"api_key", "sk_live_stolen"}});
  EXPECT_EQ(Verdict(*set, contractor, allow_expiry - 1), ListVerdict::Kind::kAllow);
  EXPECT_EQ(Verdict(*set, contractor, allow_expiry), ListVerdict::Kind::kNone);
  EXPECT_EQ(Verdict(*set, stolen, deny_expiry - 1), ListVerdict::Kind::kDeny);
  EXPECT_EQ(Verdict(*set, stolen, deny_expiry), ListVerdict::Kind::kNone);
  EXPECT_EQ(Verdict(*set, stolen, deny_expiry + 365 * 86400 * kMicrosPerSecond),
            ListVerdict::Kind::kNone);
}

// Verifies that an expired deny entry no longer hides an allow entry for the same request.
TEST(ListsTest, ExpiredDenyFallsBackToAllow) {
  auto set = LoadYaml(R"(
lists:
  allow:
    - {ip_address: 10.0.0.0/8}
  deny:
    - {ip_address: 10.0.0.5, expires_at: "2020-01-01T00:00:00Z"}
    - {ip_address: 10.0.0.6, expires_at: "2030-01-01T00:00:00Z"}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(Verdict(*set, Req({{"ip_address", "10.0.0.5"}})), ListVerdict::Kind::kAllow);
  EXPECT_EQ(Verdict(*set, Req({{"ip_address", "10.0.0.6"}})), ListVerdict::Kind::kDeny);
}

// Verifies that of several matching deny entries the first in file order is reported.
TEST(ListsTest, FirstMatchingEntryInFileOrder) {
  auto set = LoadYaml(R"(
lists:
  deny:
    - {endpoint: "/admin*", reason: first}
    - {user_id: eve, reason: second}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(set->CheckLists(Req({{"user_id", "eve"}, {"endpoint", "/admin/x"}}), kNow).reason(),
            "first");
}

// Verifies header entries, with case-insensitive names.
TEST(ListsTest, HeaderEntries) {
  auto set = LoadYaml(R"(
lists:
  allow:
    - {headers.X-Internal: "yes"}
)");
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(Verdict(*set, Req({{"headers.x-internal", "yes"}})), ListVerdict::Kind::kAllow);
  EXPECT_EQ(Verdict(*set, Req({{"headers.x-internal", "no"}})), ListVerdict::Kind::kNone);
}

}  // namespace
}  // namespace sluice::rules
