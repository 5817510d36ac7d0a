// Rules and list entries as JSON (CONTRACT §8): read by the rules files' reader, problems as
// field paths for the 422, canonical JSON for the database, and file rules shown as JSON.
#include "rules/rule_json.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "rules/loader.h"

namespace sluice::rules {
namespace {

using ::testing::Contains;
using ::testing::Field;
using ::testing::HasSubstr;

TEST(RuleJsonTest, AValidRuleLoadsAsFromAFile) {
  const JsonRule r = ParseRuleJson(
      R"({"id": "free-hourly", "group": "quota", "priority": 20, "match": {"tier": "free"},
          "key": ["user_id"], "limit": 100, "window": "1h", "description": "free users"})",
      "database");
  ASSERT_TRUE(r.problems.empty()) << r.problems.front().field << ": " << r.problems.front().message;
  ASSERT_TRUE(r.rule.has_value());
  EXPECT_EQ(r.rule->id, "free-hourly");
  EXPECT_EQ(r.rule->group, "quota");
  EXPECT_EQ(r.rule->priority, 20);
  EXPECT_EQ(r.rule->limit.limit(), 100);
  EXPECT_EQ(r.rule->limit.window(), int64_t{3600} * 1000000);
  EXPECT_EQ(r.rule->description, "free users");
  EXPECT_EQ(r.rule->location.file, "database");
  // Canonical: sorted keys, no spaces; the same text whatever the input's layout.
  EXPECT_EQ(r.canonical,
            R"({"description":"free users","group":"quota","id":"free-hourly","key":["user_id"],)"
            R"("limit":100,"match":{"tier":"free"},"priority":20,"window":"1h"})");
  EXPECT_EQ(r.rule->json, r.canonical);
  EXPECT_EQ(ParseRuleJson(r.canonical, "database").canonical, r.canonical);
}

TEST(RuleJsonTest, ProblemsNameTheirField) {
  auto problems = [](std::string_view text) { return ParseRuleJson(text, "api").problems; };
  EXPECT_THAT(problems(R"({"id": "a", "limit": 0, "window": "1s"})"),
              Contains(Field(&FieldProblem::field, "limit")));
  EXPECT_THAT(problems(R"({"id": "a", "limit": "5", "window": "1s"})"),
              Contains(Field(&FieldProblem::field, "limit")));
  EXPECT_THAT(problems(R"({"id": "a", "limit": 5, "window": "1 sec"})"),
              Contains(Field(&FieldProblem::field, "window")));
  EXPECT_THAT(
      problems(
          R"({"id": "a", "limit": 5, "window": "1s", "match": {"ip_address": "300.1.1.1/8"}})"),
      Contains(Field(&FieldProblem::field, "match.ip_address")));
  EXPECT_THAT(problems(R"({"id": "a", "limit": 5, "window": "1s", "key": ["user_id", "nope"]})"),
              Contains(Field(&FieldProblem::field, "key[1]")));
  EXPECT_THAT(problems(R"({"id": "a", "limit": 5, "window": "1s", "colour": "red"})"),
              Contains(Field(&FieldProblem::field, "colour")));
  EXPECT_THAT(problems(R"({"id": 5, "limit": 5, "window": "1s"})"),
              Contains(Field(&FieldProblem::field, "id")));
  EXPECT_THAT(problems(R"({"id": "a", "window": "1s"})"),
              Contains(Field(&FieldProblem::field, "limit")));
  EXPECT_THAT(problems(R"({"id": "a", "limit": 5, "window": "1s", "algorithm": "magic"})"),
              Contains(Field(&FieldProblem::field, "algorithm")));
  EXPECT_THAT(problems(R"({"id": "a", "limit": 5, "window": "1s", "enabled": "yes"})"),
              Contains(Field(&FieldProblem::field, "enabled")));
  EXPECT_THAT(problems("[1, 2]"), Contains(Field(&FieldProblem::message, HasSubstr("object"))));
  EXPECT_THAT(problems("{\"id\": "), Contains(Field(&FieldProblem::message, HasSubstr("JSON"))));
  // Every problem of the rule at once.
  EXPECT_GE(problems(R"({"id": "", "limit": -1, "window": "x"})").size(), 3u);
}

// Verifies consistency and max_overshoot in rule JSON (the admin API): loaded like the file's,
// and a consistency that is not a JSON string, or a wrong value, is a problem on "consistency".
TEST(RuleJsonTest, ConsistencyAndMaxOvershoot) {
  const JsonRule r = ParseRuleJson(
      R"({"id": "a", "limit": 100, "window": "1m", "consistency": "leased",
          "max_overshoot": "5%"})",
      "api");
  ASSERT_TRUE(r.problems.empty()) << r.problems.front().field << ": " << r.problems.front().message;
  ASSERT_TRUE(r.rule.has_value());
  EXPECT_EQ(r.rule->consistency, Consistency::kLeased);
  EXPECT_EQ(r.rule->max_overshoot, Overshoot::PartsPerMillion(50'000));
  const JsonRule counted = ParseRuleJson(
      R"({"id": "a", "limit": 100, "window": "1m", "consistency": "exact", "max_overshoot": 4})",
      "api");
  ASSERT_TRUE(counted.problems.empty()) << counted.problems.front().message;
  EXPECT_EQ(counted.rule->consistency, Consistency::kExact);
  EXPECT_EQ(counted.rule->max_overshoot, Overshoot::Count(4));

  auto problems = [](std::string_view text) { return ParseRuleJson(text, "api").problems; };
  EXPECT_THAT(problems(R"({"id": "a", "limit": 5, "window": "1s", "consistency": 5})"),
              Contains(Field(&FieldProblem::field, "consistency")));
  EXPECT_THAT(problems(R"({"id": "a", "limit": 5, "window": "1s", "consistency": "eventual"})"),
              Contains(Field(&FieldProblem::field, "consistency")));
  EXPECT_THAT(problems(R"({"id": "a", "limit": 5, "window": "1s", "consistency": "leased",
                           "algorithm": "sliding_window_log"})"),
              Contains(Field(&FieldProblem::field, "consistency")));
  EXPECT_THAT(problems(R"({"id": "a", "limit": 5, "window": "1s", "max_overshoot": "1.5"})"),
              Contains(Field(&FieldProblem::field, "max_overshoot")));
}

TEST(RuleJsonTest, ListEntries) {
  const JsonListEntry e = ParseListEntryJson(
      R"({"ip_address": "203.0.113.0/24", "reason": "abuse", "expires_at": "2030-01-01T00:00:00Z",
          "id": "ignored", "source": "database"})",
      "database");
  ASSERT_TRUE(e.problems.empty()) << e.problems.front().message;
  ASSERT_TRUE(e.entry.has_value());
  EXPECT_EQ(e.entry->reason, "abuse");
  EXPECT_TRUE(e.entry->expires_at.has_value());
  EXPECT_EQ(
      e.canonical,
      R"({"expires_at":"2030-01-01T00:00:00Z","ip_address":"203.0.113.0/24","reason":"abuse"})");
  EXPECT_THAT(ParseListEntryJson(R"({"ip_address": "nope"})", "api").problems,
              Contains(Field(&FieldProblem::field, "ip_address")));
  EXPECT_THAT(ParseListEntryJson(R"({"reason": "no attribute"})", "api").problems,
              Contains(Field(&FieldProblem::message, HasSubstr("at least one attribute"))));
  EXPECT_THAT(ParseListEntryJson(R"({"user_id": 7})", "api").problems,
              Contains(Field(&FieldProblem::field, "user_id")));
}

TEST(RuleJsonTest, FileRulesAreShownAsTheirJson) {
  const std::string path = ::testing::TempDir() + "/rule_json_test.yaml";
  {
    std::ofstream f(path);
    f << "rules:\n  - {id: a, limit: 5, window: 1s, enabled: false, match: {endpoint: '/x*'},\n"
         "     key: [user_id], description: '5', burst: 7}\n";
  }
  const LoadResult loaded = LoadRules({path});
  ASSERT_TRUE(loaded.problems.empty()) << loaded.problems.front();
  const Rule& rule = loaded.rule_set->rules().front();
  // Typed as the reader types it: the quoted '5' stays a string.
  EXPECT_EQ(rule.json,
            R"({"burst":7,"description":"5","enabled":false,"id":"a","key":["user_id"],"limit":5,)"
            R"("match":{"endpoint":"/x*"},"window":"1s"})");
  EXPECT_EQ(rule.description, "5");
  // And what the API shows loads back as the same rule.
  EXPECT_TRUE(ParseRuleJson(rule.json, "api").problems.empty());
}

}  // namespace
}  // namespace sluice::rules
