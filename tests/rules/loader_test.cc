// Loading and validation: every problem as "FILE:LINE:COL: message", all of them collected.
#include "rules/loader.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "tests/rules/test_util.h"

namespace sluice::rules {
namespace {

using ::sluice::rules::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;
using ::testing::StartsWith;

// Writes `yaml` as `name` in `dir` and returns the problems of loading just that file, with the
// folder stripped from each so that expectations read "f.yaml:LINE:COL: ...".
std::vector<std::string> ProblemsOf(const TempDir& dir, std::string_view name,
                                    std::string_view yaml) {
  const std::string path = dir.Write(name, yaml);
  std::vector<std::string> problems = ValidateRules({path});
  for (std::string& p : problems) {
    if (p.starts_with(dir.path() + "/")) p.erase(0, dir.path().size() + 1);
  }
  return problems;
}

std::vector<std::string> ProblemsOf(std::string_view yaml) {
  TempDir dir;
  return ProblemsOf(dir, "f.yaml", yaml);
}

// Verifies the FILE:LINE:COL of an unknown key: the key's own position.
TEST(LoaderTest, UnknownKeyAtKey) {
  EXPECT_THAT(ProblemsOf(R"(rules:
  - id: a
    limit: 1
    window: 1s
    limt: 2
)"),
              ElementsAre("f.yaml:5:5: unknown key 'limt' in rule"));
  EXPECT_THAT(ProblemsOf("rules: []\nextra: 1\n"),
              ElementsAre("f.yaml:2:1: unknown key 'extra' in rules file"));
  EXPECT_THAT(ProblemsOf("rules:\n  - {id: a, limit: 1, window: 1s, match: {tierr: free}}\n"),
              ElementsAre("f.yaml:2:43: unknown key 'tierr' in match"));
}

// Verifies wrong types, reported at the value.
TEST(LoaderTest, WrongTypesAtValue) {
  EXPECT_THAT(ProblemsOf(R"(rules:
  - id: a
    limit: "20"
    window: 1s
    priority: high
    enabled: maybe
    key: user_id
    match: [tier]
)"),
              ElementsAre("f.yaml:3:12: 'limit' must be an integer, got '20'",
                          "f.yaml:5:15: 'priority' must be an integer, got 'high'",
                          "f.yaml:6:14: 'enabled' must be true or false",
                          "f.yaml:7:10: 'key' must be a list of attribute names",
                          "f.yaml:8:12: 'match' must be a mapping of attribute to pattern"));
  EXPECT_THAT(ProblemsOf("rules: {a: 1}\n"),
              ElementsAre("f.yaml:1:8: 'rules' must be a list of rules"));
  EXPECT_THAT(ProblemsOf("rules:\n  - just a string\n"),
              ElementsAre("f.yaml:2:5: a rule must be a mapping"));
}

// Verifies missing required keys, reported at the rule.
TEST(LoaderTest, MissingRequiredKeys) {
  EXPECT_THAT(ProblemsOf(R"(rules:
  - id: a
  - limit: 5
    window: 1s
)"),
              ElementsAre("f.yaml:2:5: rule is missing required key 'limit'",
                          "f.yaml:2:5: rule is missing required key 'window'",
                          "f.yaml:3:5: rule is missing required key 'id'"));
}

// Verifies duration problems.
TEST(LoaderTest, BadDurations) {
  EXPECT_THAT(ProblemsOf(R"(rules:
  - {id: a, limit: 1, window: 1sec}
  - {id: b, limit: 1, window: 0s}
  - {id: c, limit: 1, window: 1.5h}
  - {id: d, limit: 1, window: 11000d}
)"),
              ElementsAre("f.yaml:2:31: 'window': invalid duration '1sec': expected an integer "
                          "and a unit (ms, s, m, h, d, w), e.g. 500ms or 1h",
                          "f.yaml:3:31: 'window' must be longer than zero",
                          "f.yaml:4:31: 'window': invalid duration '1.5h': expected an integer "
                          "and a unit (ms, s, m, h, d, w), e.g. 500ms or 1h",
                          "f.yaml:5:31: 'window' must be at most 10 years"));
}

// Verifies unknown algorithms and modes.
TEST(LoaderTest, UnknownAlgorithmAndMode) {
  EXPECT_THAT(ProblemsOf(R"(rules:
  - id: a
    limit: 1
    window: 1s
    algorithm: leaky
    mode: dry-run
)"),
              ElementsAre("f.yaml:5:16: unknown algorithm 'leaky' (expected one of fixed_window, "
                          "sliding_window_counter, sliding_window_log, token_bucket, gcra, "
                          "leaky_bucket, concurrency)",
                          "f.yaml:6:11: unknown mode 'dry-run' (expected enforce or shadow)"));
}

// Verifies limit and burst ranges, and Limit::Create's own checks.
TEST(LoaderTest, BadLimits) {
  EXPECT_THAT(ProblemsOf(R"(rules:
  - {id: a, limit: 0, window: 1s}
  - {id: b, limit: -5, window: 1s}
  - {id: c, limit: 5, window: 1s, burst: 0}
  - {id: d, limit: 5000000000, window: 1s}
)"),
              ElementsAre("f.yaml:2:20: 'limit' must be at least 1, got 0",
                          "f.yaml:3:20: 'limit' must be at least 1, got -5",
                          "f.yaml:4:42: 'burst' must be at least 1, got 0",
                          "f.yaml:5:20: invalid limit: sliding_window_counter supports limits up "
                          "to 4294967295"));
}

// Verifies bad CIDRs, addresses and globs in `match` and lists, reported at the value.
TEST(LoaderTest, BadPatterns) {
  EXPECT_THAT(
      ProblemsOf(R"(rules:
  - id: a
    limit: 1
    window: 1s
    match:
      ip_address: 10.0.0.0/33
      endpoint: '/api\x'
      tier: ""
lists:
  deny:
    - {ip_address: 2001:db8::/200}
    - {ip_address: 999.1.1.1}
)"),
      ElementsAre("f.yaml:6:19: 'ip_address': invalid CIDR '10.0.0.0/33': prefix length must be "
                  "0..32",
                  R"(f.yaml:7:17: 'endpoint': invalid glob '/api\x': '\' must be followed by '*' )"
                  R"(or '\')",
                  "f.yaml:8:13: 'tier': empty pattern for 'tier' would never match",
                  "f.yaml:11:20: 'ip_address': invalid CIDR '2001:db8::/200': prefix length must "
                  "be 0..128",
                  "f.yaml:12:20: 'ip_address': invalid IP address '999.1.1.1'"));
}

// Verifies bad key attribute lists.
TEST(LoaderTest, BadKeys) {
  EXPECT_THAT(ProblemsOf(R"(rules:
  - {id: a, limit: 1, window: 1s, key: [user_id, userid, user_id, "headers."]}
)"),
              ElementsAre("f.yaml:2:50: unknown attribute 'userid' in 'key' (expected user_id, "
                          "api_key, ip_address, endpoint, method, tier or headers.<name>)",
                          "f.yaml:2:58: duplicate attribute 'user_id' in 'key'",
                          "f.yaml:2:67: unknown attribute 'headers.' in 'key' (expected user_id, "
                          "api_key, ip_address, endpoint, method, tier or headers.<name>)"));
}

// Verifies list entry problems: bad expires_at, empty entries, unknown keys.
TEST(LoaderTest, BadListEntries) {
  EXPECT_THAT(ProblemsOf(R"(lists:
  allow:
    - {user_id: a, expires_at: "2026-12-31"}
    - {reason: nothing else}
    - {usr: x}
  block:
    - {user_id: b}
)"),
              ElementsAre("f.yaml:3:32: 'expires_at': invalid timestamp '2026-12-31': expected "
                          "RFC 3339, e.g. 2026-12-31T00:00:00Z",
                          "f.yaml:4:7: a list entry must name at least one attribute",
                          "f.yaml:5:8: unknown key 'usr' in list entry",
                          "f.yaml:6:3: unknown key 'block' in lists"));
}

// Verifies a duplicate rule id, reported at its second occurrence and naming the first, across
// files.
TEST(LoaderTest, DuplicateRuleIdAcrossFiles) {
  TempDir dir;
  const std::string first = dir.Write("1.yaml", "rules:\n  - {id: a, limit: 1, window: 1s}\n");
  const std::string second = dir.Write("2.yaml", R"(rules:
  - id: b
    limit: 1
    window: 1s
  - id: a
    limit: 1
    window: 1s
)");
  EXPECT_THAT(
      ValidateRules({first, second}),
      ElementsAre(second + ":5:9: duplicate rule id 'a' (first defined at " + first + ":2:10)"));
  // Within one file too.
  EXPECT_THAT(ProblemsOf(dir, "f.yaml",
                         "rules:\n  - {id: x, limit: 1, window: 1s}\n"
                         "  - {id: x, limit: 2, window: 1s}\n"),
              ElementsAre("f.yaml:3:10: duplicate rule id 'x' (first defined at " + dir.path() +
                          "/f.yaml:2:10)"));
}

// Verifies YAML syntax errors: one problem at yaml-cpp's mark, and the file stops there.
TEST(LoaderTest, YamlSyntaxErrors) {
  EXPECT_THAT(ProblemsOf("rules:\n  - id: [a\n"),
              ElementsAre("f.yaml:3:1: error loading config file: end of sequence flow not found"));
  EXPECT_THAT(ProblemsOf("rules:\n  - id: a\n   limit: 1\n"),
              ElementsAre("f.yaml:3:4: error loading config file: end of sequence not found"));
  EXPECT_THAT(ProblemsOf("rules: [\n"), SizeIs(1));
}

// Verifies the file-level problems: empty, not a mapping, both kinds, neither kind, several
// documents.
TEST(LoaderTest, FileKinds) {
  EXPECT_THAT(ProblemsOf(""),
              ElementsAre("f.yaml:1:1: empty file: expected top-level 'rules', 'lists' or "
                          "'domain'"));
  EXPECT_THAT(ProblemsOf("# nothing\n"),
              ElementsAre("f.yaml:1:1: empty file: expected top-level 'rules', 'lists' or "
                          "'domain'"));
  EXPECT_THAT(ProblemsOf("- a\n- b\n"),
              ElementsAre("f.yaml:1:1: error loading config file: expected a mapping with "
                          "top-level 'rules', 'lists' or "
                          "'domain'"));
  EXPECT_THAT(ProblemsOf("rules: []\ndomain: x\n"),
              ElementsAre("f.yaml:2:1: a file holds either 'rules'/'lists' (Sluice rules) or "
                          "'domain' (Envoy descriptors), not both"));
  EXPECT_THAT(ProblemsOf("listen: {http: 1}\nstore: {}\n"),
              ElementsAre("f.yaml:1:1: unknown key 'listen' in file (expected top-level "
                          "'rules', 'lists' or 'domain')",
                          "f.yaml:2:1: unknown key 'store' in file (expected top-level 'rules', "
                          "'lists' or 'domain')"));
  EXPECT_THAT(ProblemsOf("rules: []\n---\nrules: []\n"),
              ElementsAre("f.yaml:3:1: a file may hold only one YAML document"));
  // Empty sections are fine: everything commented out.
  EXPECT_THAT(ProblemsOf("rules:\nlists:\n  allow:\n  deny:\n"), IsEmpty());
}

// Verifies duplicate keys, which yaml-cpp would otherwise keep silently.
TEST(LoaderTest, DuplicateKeys) {
  EXPECT_THAT(ProblemsOf(R"(rules:
  - id: a
    limit: 1
    window: 1s
    limit: 2
)"),
              ElementsAre("f.yaml:5:5: duplicate key 'limit' in rule"));
}

// Verifies that unreadable paths are reported as "PATH: cannot read: reason", in order with
// the other problems, and that a folder that does not exist is one too.
TEST(LoaderTest, UnreadablePaths) {
  TempDir dir;
  const std::string missing = dir.path() + "/missing.yaml";
  const std::string bad = dir.Write("bad.yaml", "rules:\n  - {id: a}\n");
  const std::string missing_dir = dir.path() + "/nope/";
  EXPECT_THAT(ValidateRules({missing, bad, missing_dir}),
              ElementsAre(missing + ": cannot read: No such file or directory",
                          bad + ":2:5: rule is missing required key 'limit'",
                          bad + ":2:5: rule is missing required key 'window'",
                          missing_dir + ": cannot read: No such file or directory"));
}

// Verifies that loading collects every problem of every file, and that a set with problems is
// never returned.
TEST(LoaderTest, CollectsAllProblems) {
  TempDir dir;
  dir.Write("rules/a.yaml", R"(rules:
  - {id: a, limit: 0, window: 1s}
  - {id: b, limit: 1, window: 1x}
)");
  dir.Write("rules/b.yaml", "domain: d\ndescriptors:\n  - {key: k, rate_limit: {unit: decade}}\n");
  dir.Write("rules/c.yaml", "rules:\n  - {id: ok, limit: 1, window: 1s}\n");
  const std::string folder = dir.path() + "/rules";
  LoadResult result = LoadRules({folder});
  EXPECT_EQ(result.rule_set, nullptr);
  EXPECT_THAT(
      result.problems,
      ElementsAre(folder + "/a.yaml:2:20: 'limit' must be at least 1, got 0",
                  folder + "/a.yaml:3:31: 'window': invalid duration '1x': expected an integer "
                           "and a unit (ms, s, m, h, d, w), e.g. 500ms or 1h",
                  folder + "/b.yaml:3:26: rate_limit is missing required key 'requests_per_unit' "
                           "(0 refuses every request)",
                  folder + "/b.yaml:3:33: invalid rate limit unit 'decade' (expected second, "
                           "minute, hour, day, week, month or year)"));

  absl::StatusOr<std::shared_ptr<const RuleSet>> status = LoadRuleSet({folder});
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(status.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(status.status().message()), result.problems[0] + "\n" + result.problems[1] +
                                                        "\n" + result.problems[2] + "\n" +
                                                        result.problems[3]);
}

// Verifies the success paths of the three entry points, and path expansion.
TEST(LoaderTest, SuccessAndExpansion) {
  TempDir dir;
  dir.Write("r/b.yml", "rules:\n  - {id: b, limit: 1, window: 1s}\n");
  dir.Write("r/a.yaml", "rules:\n  - {id: a, limit: 1, window: 1s}\n");
  dir.Write("r/notes.md", "# not loaded");
  dir.Write("r/sub/c.yaml", "rules:\n  - {id: c, limit: 1, window: 1s}\n");  // not recursive
  const std::string folder = dir.path() + "/r/";
  EXPECT_THAT(ValidateRules({folder}), IsEmpty());
  absl::StatusOr<std::shared_ptr<const RuleSet>> set = LoadRuleSet({folder});
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ((*set)->size(), 2u);
  EXPECT_EQ((*set)->rules()[0].id, "a");
  EXPECT_EQ((*set)->rules()[0].location.file, folder + "a.yaml");
  std::vector<std::string> problems;
  EXPECT_THAT(ExpandRulePaths({folder}, &problems),
              ElementsAre(folder + "a.yaml", folder + "b.yml"));
  EXPECT_THAT(problems, IsEmpty());
  // No paths at all: an empty set.
  LoadResult empty = LoadRules({});
  ASSERT_NE(empty.rule_set, nullptr);
  EXPECT_EQ(empty.rule_set->size(), 0u);
}

// Verifies `consistency` and `max_overshoot` (CONTRACT §11): loaded into the Rule, unset by
// default (the store's defaults then apply).
TEST(LoaderTest, ConsistencyAndMaxOvershootLoadIntoTheRule) {
  TempDir dir;
  const std::string path = dir.Write("c.yaml", R"(rules:
  - id: leased
    limit: 100
    window: 1m
    consistency: leased
    max_overshoot: "5%"
  - id: counted
    limit: 100
    window: 1m
    algorithm: token_bucket
    consistency: leased
    max_overshoot: 3
  - id: exact
    limit: 100
    window: 1m
    algorithm: sliding_window_log
    consistency: exact
  - id: plain
    limit: 100
    window: 1m
)");
  absl::StatusOr<std::shared_ptr<const RuleSet>> set = LoadRuleSet({path});
  ASSERT_TRUE(set.ok()) << set.status();
  const RuleSet& rules = **set;
  ASSERT_NE(rules.FindRule("leased"), nullptr);
  EXPECT_EQ(rules.FindRule("leased")->consistency, Consistency::kLeased);
  EXPECT_EQ(rules.FindRule("leased")->max_overshoot, Overshoot::PartsPerMillion(50'000));
  EXPECT_EQ(rules.FindRule("leased")->max_overshoot->For(100), 5);
  ASSERT_NE(rules.FindRule("counted"), nullptr);
  EXPECT_EQ(rules.FindRule("counted")->consistency, Consistency::kLeased);
  EXPECT_EQ(rules.FindRule("counted")->max_overshoot, Overshoot::Count(3));
  ASSERT_NE(rules.FindRule("exact"), nullptr);
  EXPECT_EQ(rules.FindRule("exact")->consistency, Consistency::kExact);
  EXPECT_EQ(rules.FindRule("exact")->max_overshoot, std::nullopt);
  ASSERT_NE(rules.FindRule("plain"), nullptr);
  EXPECT_EQ(rules.FindRule("plain")->consistency, Consistency::kDefault);
  EXPECT_EQ(rules.FindRule("plain")->max_overshoot, std::nullopt);
}

// Verifies CONTRACT §10's rule fields: a concurrency rule has no window and a lease_ttl (default
// 30 s, kept as its limit's window); shape/max_delay on a leaky_bucket cap its queue at
// max_delay's worth (+1), default 1 s.
TEST(LoaderTest, ConcurrencyAndShapeLoadIntoTheRule) {
  TempDir dir;
  const std::string path = dir.Write("c.yaml", R"(rules:
  - {id: slots, limit: 5, algorithm: concurrency, key: [user_id]}
  - {id: short, limit: 2, algorithm: concurrency, lease_ttl: 2s}
  - {id: shaped, limit: 10, window: 1s, burst: 100, algorithm: leaky_bucket, shape: true}
  - {id: tight, limit: 10, window: 1s, burst: 100, algorithm: leaky_bucket, shape: true,
     max_delay: 300ms}
  - {id: small, limit: 10, window: 1s, burst: 3, algorithm: leaky_bucket, shape: true}
  - {id: queue, limit: 10, window: 1s, burst: 100, algorithm: leaky_bucket}
)");
  absl::StatusOr<std::shared_ptr<const RuleSet>> set = LoadRuleSet({path});
  ASSERT_TRUE(set.ok()) << set.status();
  const RuleSet& rules = **set;
  const Rule* slots = rules.FindRule("slots");
  ASSERT_NE(slots, nullptr);
  EXPECT_EQ(slots->limit.algorithm(), Algorithm::kConcurrency);
  EXPECT_EQ(slots->limit.limit(), 5);
  EXPECT_EQ(slots->limit.window(), 30 * kMicrosPerSecond);
  EXPECT_EQ(rules.FindRule("short")->limit.window(), 2 * kMicrosPerSecond);
  const Rule* shaped = rules.FindRule("shaped");
  EXPECT_TRUE(shaped->shape);
  EXPECT_EQ(shaped->max_delay, kMicrosPerSecond);
  EXPECT_EQ(shaped->limit.burst(), 11);  // 1 s × 10/s + 1
  EXPECT_EQ(rules.FindRule("tight")->max_delay, 300 * kMicrosPerMilli);
  EXPECT_EQ(rules.FindRule("tight")->limit.burst(), 4);  // 0.3 s × 10/s + 1
  EXPECT_EQ(rules.FindRule("small")->limit.burst(), 3);  // already within max_delay
  EXPECT_FALSE(rules.FindRule("queue")->shape);
  EXPECT_EQ(rules.FindRule("queue")->limit.burst(), 100);
}

// Verifies the problems of CONTRACT §10's rule fields, each at its key.
TEST(LoaderTest, ConcurrencyAndShapeProblems) {
  EXPECT_THAT(ProblemsOf(R"(rules:
  - {id: a, limit: 5, algorithm: concurrency, window: 1s}
  - {id: b, limit: 5, window: 1s, lease_ttl: 1s}
  - {id: c, limit: 5, window: 1s, shape: true}
  - {id: d, limit: 5, window: 1s, algorithm: leaky_bucket, max_delay: 1s}
  - {id: e, limit: 5, algorithm: concurrency, lease_ttl: 0s}
  - {id: f, limit: 5, algorithm: concurrency, consistency: leased}
)"),
              ElementsAre("f.yaml:2:47: a concurrency rule has no 'window': its slots expire "
                          "after 'lease_ttl'",
                          "f.yaml:3:35: 'lease_ttl' is for algorithm: concurrency only",
                          "f.yaml:4:35: 'shape' needs algorithm: leaky_bucket (its delay is "
                          "what is held)",
                          "f.yaml:5:60: 'max_delay' applies only with 'shape: true'",
                          "f.yaml:6:58: 'lease_ttl' must be longer than zero",
                          HasSubstr("consistency 'leased' is not supported by concurrency")));
  EXPECT_THAT(ProblemsOf(R"(domain: d
descriptors:
  - key: k
    rate_limit: {unit: second, requests_per_unit: 1, algorithm: concurrency}
)"),
              ElementsAre(HasSubstr("algorithm 'concurrency' is not available in domain files")));
}

// Verifies `penalty`: its three fields load into the rule with its two counters' limits, and
// each problem is reported at its key or value.
TEST(LoaderTest, PenaltyLoadsAndItsProblemsAreReported) {
  TempDir dir;
  const std::string path = dir.Write("p.yaml", R"(rules:
  - {id: login, key: [ip_address], limit: 5, window: 1m,
     penalty: {after: 10, within: 5m, ban: 1h}}
)");
  absl::StatusOr<std::shared_ptr<const RuleSet>> set = LoadRuleSet({path});
  ASSERT_TRUE(set.ok()) << set.status();
  const Rule* login = (*set)->FindRule("login");
  ASSERT_NE(login, nullptr);
  ASSERT_TRUE(login->penalty.has_value());
  EXPECT_EQ(login->penalty->after, 10);
  EXPECT_EQ(login->penalty->within, 5 * 60 * kMicrosPerSecond);
  EXPECT_EQ(login->penalty->ban, 3600 * kMicrosPerSecond);
  EXPECT_EQ(login->penalty->rejections.algorithm(), Algorithm::kSlidingWindowLog);
  EXPECT_EQ(login->penalty->rejections.limit(), 10);
  EXPECT_EQ(login->penalty->banned.window(), 3600 * kMicrosPerSecond);
  EXPECT_FALSE((*set)->FindRule("login")->json.empty());

  EXPECT_THAT(ProblemsOf(R"(rules:
  - {id: a, limit: 5, window: 1s, penalty: {after: 0, within: 1s, ban: 1s}}
  - {id: b, limit: 5, window: 1s, penalty: {after: 3, ban: 1s}}
  - {id: c, limit: 5, window: 1s, penalty: {after: 3, within: 1s, ban: 1s, for: 1s}}
  - {id: d, limit: 5, window: 1s, penalty: 3}
  - {id: e, limit: 5, algorithm: concurrency, penalty: {after: 3, within: 1s, ban: 1s}}
  - {id: f, limit: 5, window: 1s, mode: shadow, penalty: {after: 3, within: 1s, ban: 1s}}
  - {id: g, limit: 5, window: 1s, penalty: {after: 3, within: 1s, ban: 0s}}
)"),
              ElementsAre(HasSubstr("'after' must be between 1 and 10000, got 0"),
                          "f.yaml:3:35: 'penalty' is missing required key 'within'",
                          HasSubstr("unknown key 'for' in 'penalty'"),
                          HasSubstr("'penalty' must be a mapping"),
                          HasSubstr("'penalty' counts rejections of a rate"),
                          HasSubstr("'penalty' needs an enforced rule"),
                          HasSubstr("'ban' must be longer than zero")));
}

// Verifies that `consistency: leased` on an algorithm that cannot be leased is a problem at the
// consistency value, naming 'leased' and the algorithm; and that an unknown consistency or a bad
// max_overshoot is reported at its value.
TEST(LoaderTest, LeasedNeedsALeasableAlgorithm) {
  for (const char* algorithm : {"sliding_window_log", "leaky_bucket"}) {
    SCOPED_TRACE(algorithm);
    const std::vector<std::string> problems = ProblemsOf(std::string(R"(rules:
  - id: a
    limit: 10
    window: 1s
    algorithm: )") + algorithm + R"(
    consistency: leased
)");
    ASSERT_THAT(problems, SizeIs(1));
    EXPECT_THAT(problems[0], StartsWith("f.yaml:6:18: consistency 'leased' is not supported by "));
    EXPECT_THAT(problems[0], HasSubstr(algorithm));
  }
  // Exact is fine on them.
  EXPECT_THAT(ProblemsOf(R"(rules:
  - {id: a, limit: 10, window: 1s, algorithm: sliding_window_log, consistency: exact}
  - {id: b, limit: 10, window: 1s, algorithm: leaky_bucket, consistency: exact}
)"),
              IsEmpty());
  EXPECT_THAT(
      ProblemsOf(R"(rules:
  - id: a
    limit: 10
    window: 1s
    consistency: eventual
)"),
      ElementsAre("f.yaml:5:18: unknown consistency 'eventual' (expected exact or leased)"));
  const std::vector<std::string> bad_overshoot = ProblemsOf(R"(rules:
  - id: a
    limit: 10
    window: 1s
    consistency: leased
    max_overshoot: 150%
)");
  ASSERT_THAT(bad_overshoot, SizeIs(1));
  EXPECT_THAT(bad_overshoot[0], StartsWith("f.yaml:6:20: 'max_overshoot' must be a count"));
  EXPECT_THAT(bad_overshoot[0], HasSubstr("got '150%'"));
}

// Verifies the Envoy domain file problems, with envoyproxy/ratelimit's wording where it has one.
TEST(LoaderTest, DomainFileProblems) {
  EXPECT_THAT(ProblemsOf(R"(domain: ""
descriptors: []
)"),
              ElementsAre("f.yaml:1:9: config file cannot have empty domain"));
  EXPECT_THAT(
      ProblemsOf(R"(domain: d
descriptors:
  - key: a
    value: v
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: a
    value: v
  - value: x
  - key: b
    rate_limit: {unlimited: true, unit: second}
  - key: c
    rate_limit: {unit: second, requests_per_unit: 1, name: n, replaces: [{name: n}]}
  - key: d
    rate_limit: {unit: second, requests_per_unit: 1, replaces: [{name: ""}], colour: red}
  - key: e
    rate_limit: {unit: second, requests_per_unit: -1}
  - key: f
    rate_limit: {unit: second, requests_per_unit: 1, unit_multiplier: 0}
  - key: g
    rate_limit: {unit: year, requests_per_unit: 1, unit_multiplier: 11}
  - key: h
    descriptors:
      - {key: i, rate_limit: {unit: minute}}
    shadowmode: true
)"),
      ElementsAre("f.yaml:6:5: duplicate descriptor composite key 'd.a_v'",
                  "f.yaml:8:5: descriptor has empty key",
                  "f.yaml:10:35: should not specify rate limit unit when unlimited",
                  "f.yaml:12:17: replaces should not contain name of same descriptor",
                  "f.yaml:14:65: should not have an empty replaces entry",
                  "f.yaml:14:78: config error, unknown key 'colour' in rate_limit",
                  "f.yaml:16:51: 'requests_per_unit' must be between 0 and 4294967295, got -1",
                  "f.yaml:18:71: 'unit_multiplier' must be at least 1, got 0",
                  "f.yaml:20:69: 'unit_multiplier' makes the window longer than 10 years",
                  "f.yaml:23:30: rate_limit is missing required key 'requests_per_unit' (0 "
                  "refuses every request)",
                  "f.yaml:24:5: config error, unknown key 'shadowmode' in descriptor"));
}

// Verifies that the files envoyproxy/ratelimit's own config tests refuse are refused here with
// its words (after Sluice's FILE:LINE:COL), and the keys it accepts are accepted.
TEST(LoaderTest, DomainFileProblemsInUpstreamWords) {
  // empty_domain.yaml: `descriptors` and no `domain` is a domain file without its domain.
  EXPECT_THAT(ProblemsOf("descriptors:\n"),
              ElementsAre("f.yaml:1:1: config file cannot have empty domain"));
  // misspelled_key.yaml, misspelled_key2.yaml
  EXPECT_THAT(ProblemsOf(R"(domain: test-domain
descriptors:
  - key: key1
    value: value1
    ratelimit:
      unit: day
      requests_per_unit: 5
)"),
              ElementsAre("f.yaml:5:5: config error, unknown key 'ratelimit' in descriptor"));
  EXPECT_THAT(ProblemsOf(R"(domain: test-domain
descriptors:
  - key: key1
    value: value1
    rate_limit:
      unit: day
      requestsperunit: 5
)"),
              ElementsAre("f.yaml:6:7: rate_limit is missing required key 'requests_per_unit' "
                          "(0 refuses every request)",
                          "f.yaml:7:7: config error, unknown key 'requestsperunit' in rate_limit"));
  // non_string_key.yaml
  EXPECT_THAT(ProblemsOf(R"(0.25: test-domain
descriptors:
  - key: key1
    value: value1
    rate_limit:
      unit: day
      requests_per_unit: 5
)"),
              ElementsAre("f.yaml:1:1: config error, key is not of type string: 0.25",
                          "f.yaml:1:1: config file cannot have empty domain"));
  // non_map_list.yaml
  EXPECT_THAT(ProblemsOf("domain: test-domain\ndescriptors:\n  - a\n  - b\n"),
              ElementsAre("f.yaml:3:5: config error, yaml file contains list of type other than "
                          "map: a",
                          "f.yaml:4:5: config error, yaml file contains list of type other than "
                          "map: b"));
  // bad_limit_unit.yaml, replaces_empty.yaml, and a missing unit (upstream: unit '').
  EXPECT_THAT(ProblemsOf(R"(domain: test-domain
descriptors:
  - key: key1
    rate_limit: {unit: foo, requests_per_unit: 5}
  - key: key2
    rate_limit: {requests_per_unit: 5}
  - key: key3
    rate_limit:
      name: self
      replaces:
        - name:
      unit: second
      requests_per_unit: 5
)"),
              ElementsAre(HasSubstr("f.yaml:4:24: invalid rate limit unit 'foo'"),
                          "f.yaml:6:17: invalid rate limit unit '' (rate_limit is missing "
                          "required key 'unit')",
                          "f.yaml:11:11: should not have an empty replaces entry"));
  // share_threshold without a wildcard: upstream's error, naming the descriptor's final key.
  EXPECT_THAT(ProblemsOf(R"(domain: d
descriptors:
  - key: path
    value: files
    share_threshold: true
    rate_limit: {unit: second, requests_per_unit: 5}
  - key: user
    share_threshold: true
    rate_limit: {unit: second, requests_per_unit: 5}
)"),
              ElementsAre("f.yaml:5:5: share_threshold can only be used with wildcard values "
                          "(containing '*'), but found key 'path_files'",
                          "f.yaml:8:5: share_threshold can only be used with wildcard values "
                          "(containing '*'), but found key 'user'"));
  // Every key upstream accepts loads, metadata of any shape included (not key-checked).
  EXPECT_THAT(ProblemsOf(R"(domain: d
descriptors:
  - key: path
    value: files*
    share_threshold: true
    quota_mode: true
    value_to_metric: true
    detailed_metric: true
    shadow_mode: false
    metadata:
      anything: {nested: [1, "two", true, null]}
      ratelimit: {unknown_key: 1}
    rate_limit: {unit: second, requests_per_unit: 5, unlimited: false, name: n}
)"),
              IsEmpty());
}

// Verifies that two domain files with the same domain are an error, as in envoyproxy/ratelimit
// (without MERGE_DOMAIN_CONFIG), reported at the second.
TEST(LoaderTest, DuplicateDomain) {
  TempDir dir;
  const std::string first = dir.Write("1.yaml", "domain: edge\ndescriptors: []\n");
  const std::string second = dir.Write("2.yaml", "\ndomain: edge\n");
  EXPECT_THAT(ValidateRules({first, second}),
              ElementsAre(second +
                          ":2:9: duplicate domain 'edge' in config file (first defined "
                          "at " +
                          first + ":1:9)"));
}

// Verifies that odd but valid YAML and hostile inputs give problems, never an exception or a
// crash.
TEST(LoaderTest, OddInputsNeverThrow) {
  const std::string_view inputs[] = {
      "rules: [1, 2]\n",
      "rules:\n  - {? [a]: b}\n",
      "rules:\n  - &r {id: a, limit: 1, window: 1s}\n  - *r\n",
      "rules:\n  - {id: a, limit: 1, window: 1s, match: {ip_address: [1]}}\n",
      "rules:\n  - {id: a, limit: 99999999999999999999999, window: 1s}\n",
      "rules:\n  - {id: a, limit: 1, window: 1s, <<: {x: 1}}\n",
      "domain: [x]\n",
      "domain: d\ndescriptors: {}\n",
      "domain: d\ndescriptors:\n  - key: a\n    descriptors:\n      - key: b\n        "
      "descriptors: 5\n",
      "lists: [allow]\n",
      "lists:\n  allow: {user_id: x}\n",
      "\xff\xfe garbage \x01\x02",
      "{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{",
      "rules:\n  - id: a\n    limit: 1\n    window: 1s\n    key: [[user_id]]\n",
  };
  for (std::string_view input : inputs) {
    std::vector<std::string> problems;
    EXPECT_NO_THROW(problems = ProblemsOf(input)) << input;
    EXPECT_THAT(problems, Not(IsEmpty())) << input;
  }
}

// ---- Hostile input (issue 10) ----

// The "billion laughs" of issue 10 as a domain file: seven levels of ten aliases, 10^7 nodes
// once expanded, from a few hundred bytes.
std::string AliasBomb() {
  std::string text = "domain: bomb\na: &a [x,x,x,x,x,x,x,x,x,x]\n";
  for (char level = 'b'; level <= 'g'; ++level) {
    const std::string prev(1, static_cast<char>(level - 1));
    text += std::string(1, level) + ": &" + level + " [";
    for (int i = 0; i < 10; ++i) text += (i == 0 ? "*" : ",*") + prev;
    text += "]\n";
  }
  return text;
}

// Verifies that an alias bomb is one problem, at the alias crossing the node limit: the count
// stops there, so no more than the limit's worth of work is done (it used to take 28 s and 2 GB
// and print 10^7 problems). How long it takes is not asserted: timings are noise here.
TEST(LoaderHostileTest, AliasBombIsOneProblem) {
  const std::vector<std::string> problems = ProblemsOf(AliasBomb());
  EXPECT_THAT(
      problems,
      ElementsAre(
          "f.yaml:7:29: error loading config file: more than 1000000 nodes once aliases are "
          "expanded (the limit per file)"));
}

// Verifies that a descriptor tree used inside itself, which yaml-cpp builds as a cycle (and
// walking it overflowed the stack), is a problem at the alias.
TEST(LoaderHostileTest, SelfReferencingDescriptorsAreRefused) {
  EXPECT_THAT(ProblemsOf("domain: d\ndescriptors: &d\n  - key: k\n    descriptors: *d\n"),
              ElementsAre("f.yaml:4:18: error loading config file: alias '*d' is used inside its "
                          "own anchor's node: it "
                          "would expand for ever"));
}

// Descriptors nested `levels` deep, in flow style on line 2: "[{key: k, descriptors: [...".
std::string NestedDescriptors(int levels) {
  std::string text = "domain: d\ndescriptors: ";
  for (int i = 0; i < levels; ++i) text += "[{key: k, descriptors: ";
  text += "[]";
  for (int i = 0; i < levels; ++i) text += "}]";
  return text + "\n";
}

// Verifies that deep nesting says what is wrong and where (it used to be yaml-cpp's "bad file"),
// and that a deep but sane tree loads.
TEST(LoaderHostileTest, DeepNestingSaysWhereAndWhy) {
  // The root mapping is level 1, the k-th '[' level 2k and its '{' level 2k+1: level 65 is the
  // 32nd '{', at column 14 + 31 * 23 + 1.
  EXPECT_THAT(
      ProblemsOf(NestedDescriptors(300)),
      ElementsAre("f.yaml:2:728: error loading config file: nesting deeper than 64 levels"));
  EXPECT_THAT(ProblemsOf(NestedDescriptors(31)), IsEmpty());
}

// Verifies the size limit per file: "FILE: too large (N bytes, at most M)", the other files
// still checked.
TEST(LoaderHostileTest, FileTooLarge) {
  TempDir dir;
  const std::string big = dir.Write("big.yaml", "rules:\n" + std::string(200, '#') + "\n");
  const std::string bad = dir.Write("bad.yaml", "rules:\n  - {id: a}\n");
  const LoadResult result = LoadRules({big, bad}, {.max_file_bytes = 100});
  EXPECT_THAT(result.problems, ElementsAre(big + ": too large (208 bytes, at most 100)",
                                           bad + ":2:5: rule is missing required key 'limit'",
                                           bad + ":2:5: rule is missing required key 'window'"));
}

// Verifies that at most max_problems problems are listed, across files, and the rest counted
// in one last line.
TEST(LoaderHostileTest, ProblemsAreCappedAndCounted) {
  TempDir dir;
  // 300 rules with one problem each.
  auto bad = [](const std::string& prefix) {
    std::string yaml = "rules:\n";
    for (int i = 0; i < 300; ++i) {
      yaml += "  - {id: " + prefix + std::to_string(i) + ", limit: 0, window: 1s}\n";
    }
    return yaml;
  };
  const std::string first = dir.Write("1.yaml", bad("r"));
  const LoadResult one = LoadRules({first});
  ASSERT_THAT(one.problems, SizeIs(101));
  EXPECT_EQ(one.problems[0], first + ":2:21: 'limit' must be at least 1, got 0");
  EXPECT_EQ(one.problems[99], first + ":101:22: 'limit' must be at least 1, got 0");
  EXPECT_EQ(one.problems[100], "\u2026 and 200 more problems (only the first 100 are listed)");
  const std::string second = dir.Write("2.yaml", bad("s"));
  const LoadResult two = LoadRules({first, second}, {.max_problems = 350});
  ASSERT_THAT(two.problems, SizeIs(351));
  EXPECT_THAT(two.problems[299], StartsWith(first + ":"));
  EXPECT_THAT(two.problems[349], StartsWith(second + ":51:"));
  EXPECT_EQ(two.problems[350], "\u2026 and 250 more problems (only the first 350 are listed)");
  EXPECT_EQ(two.rule_set, nullptr);
  // As a reload reports it: the same lines.
  absl::StatusOr<std::shared_ptr<const RuleSet>> status = LoadRuleSet({first});
  EXPECT_EQ(std::count(status.status().message().begin(), status.status().message().end(), '\n'),
            100);
}

// Verifies the limits on rules (rules and descriptors together) and list entries across files:
// one problem at the first one past the limit.
TEST(LoaderHostileTest, TooManyRulesAndListEntries) {
  TempDir dir;
  const std::string rules = dir.Write("1.yaml", R"(rules:
  - {id: a, limit: 1, window: 1s}
  - {id: b, limit: 1, window: 1s}
lists:
  allow: [{user_id: x}, {user_id: y}]
  deny: [{user_id: z}]
)");
  const std::string domain = dir.Write("2.yaml", R"(domain: d
descriptors:
  - key: k
    rate_limit: {unit: second, requests_per_unit: 1}
    descriptors:
      - {key: k2, rate_limit: {unit: second, requests_per_unit: 1}}
      - {key: k3, rate_limit: {unit: second, requests_per_unit: 1}}
)");
  EXPECT_THAT(LoadRules({rules, domain}, {.max_rules = 4, .max_list_entries = 2}).problems,
              ElementsAre(rules + ":6:10: too many list entries: at most 2 per server, allow and "
                                  "deny of all files together",
                          domain + ":7:9: too many rules: at most 4 per server, rules and Envoy "
                                   "descriptors of all files together"));
  EXPECT_THAT(LoadRules({rules, domain}, {.max_rules = 5, .max_list_entries = 3}).problems,
              IsEmpty());
}

// Verifies that names reaching metric labels, answers and logs refuse control characters (NUL
// included), that every string must be UTF-8, and that the id "_other" is reserved.
TEST(LoaderHostileTest, NamesMustBePrintableUtf8) {
  EXPECT_THAT(ProblemsOf("rules:\n  - {id: \"a\\0b\", limit: 1, window: 1s}\n"
                         "  - {id: \"tab\\there\", limit: 1, window: 1s}\n"
                         "  - {id: _other, limit: 1, window: 1s}\n"),
              ElementsAre("f.yaml:2:10: 'id' must not contain control characters (U+0000 to "
                          "U+001F, U+007F)",
                          "f.yaml:3:10: 'id' must not contain control characters (U+0000 to "
                          "U+001F, U+007F)",
                          "f.yaml:4:10: rule id '_other' is reserved (the metric series of rules "
                          "without their own)"));
  EXPECT_THAT(ProblemsOf("rules:\n  - {id: caf\xc3\xa9-\xff, limit: 1, window: 1s}\n"),
              ElementsAre("f.yaml:2:10: error loading config file: invalid UTF-8 in a string (a "
                          "YAML file must be UTF-8)"));
  EXPECT_THAT(ProblemsOf(R"(domain: "d\n"
descriptors:
  - key: "k\0"
    value: "v\x7f"
    rate_limit: {unit: second, requests_per_unit: 1, name: "n\e"}
)"),
              ElementsAre("f.yaml:1:9: 'domain' must not contain control characters (U+0000 to "
                          "U+001F, U+007F)"));
  EXPECT_THAT(ProblemsOf(R"(domain: d
descriptors:
  - key: "k\0"
    value: "v\x7f"
    rate_limit: {unit: second, requests_per_unit: 1, name: "n\e"}
)"),
              ElementsAre("f.yaml:3:10: 'key' must not contain control characters (U+0000 to "
                          "U+001F, U+007F)",
                          "f.yaml:4:12: 'value' must not contain control characters (U+0000 to "
                          "U+001F, U+007F)",
                          "f.yaml:5:60: 'name' must not contain control characters (U+0000 to "
                          "U+001F, U+007F)"));
  // Printable Unicode is fine.
  EXPECT_THAT(
      ProblemsOf("rules:\n  - {id: \"caf\xc3\xa9 \xe2\x86\x92 1\", limit: 1, window: 1s}\n"),
      IsEmpty());
}

// Verifies the digest: the same files with the same bytes give the same digest, rewritten or
// not; any change of content or of file list gives another.
TEST(LoaderHostileTest, DigestTellsUnchangedFiles) {
  TempDir dir;
  const std::string a = dir.Write("a.yaml", "rules:\n  - {id: a, limit: 1, window: 1s}\n");
  const uint64_t before = LoadRules({a}).digest;
  dir.Write("a.yaml", "rules:\n  - {id: a, limit: 1, window: 1s}\n");
  EXPECT_EQ(LoadRules({a}).digest, before);
  dir.Write("a.yaml", "rules:\n  - {id: a, limit: 2, window: 1s}\n");
  EXPECT_NE(LoadRules({a}).digest, before);
  dir.Write("a.yaml", "rules:\n  - {id: a, limit: 1, window: 1s}\n");
  const std::string b = dir.Write("b.yaml", "");
  EXPECT_NE(LoadRules({a, b}).digest, LoadRules({a}).digest);
}

// Verifies that a folder that cannot be listed for want of file descriptors is reported as a
// transient failure (so that the watcher does not take it for a change), and a missing one not.
TEST(LoaderHostileTest, ExpandRulePathsTellsTransientFailures) {
  TempDir dir;
  dir.Write("r/a.yaml", "rules: []\n");
  const std::string folder = dir.path() + "/r";
  std::vector<std::string> problems;
  bool transient = true;
  ExpandRulePaths({folder, dir.path() + "/missing"}, &problems, &transient);
  EXPECT_FALSE(transient);
  EXPECT_THAT(problems,
              ElementsAre(dir.path() + "/missing: cannot read: No such file or directory"));

  // Every descriptor number from here on refused: opening the folder fails with EMFILE.
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  const int lowest_free = open("/dev/null", O_RDONLY);
  ASSERT_GE(lowest_free, 0);
  close(lowest_free);
  rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(lowest_free);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  problems.clear();
  const std::vector<std::string> files = ExpandRulePaths({folder}, &problems, &transient);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_TRUE(transient);
  EXPECT_THAT(files, IsEmpty());
  EXPECT_THAT(problems, ElementsAre(folder + ": cannot read: Too many open files"));
}

}  // namespace
}  // namespace sluice::rules
