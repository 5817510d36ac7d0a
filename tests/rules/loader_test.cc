// Loading and validation: every problem as "FILE:LINE:COL: message", all of them collected.
#include "rules/loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/rules/test_util.h"

namespace sluice::rules {
namespace {

using ::sluice::rules::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

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
  EXPECT_THAT(
      ProblemsOf(R"(rules:
  - id: a
    limit: 1
    window: 1s
    algorithm: leaky
    mode: dry-run
)"),
      ElementsAre("f.yaml:5:16: unknown algorithm 'leaky' (expected one of fixed_window, "
                  "sliding_window_counter, sliding_window_log, token_bucket, gcra, leaky_bucket)",
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
              ElementsAre("f.yaml:3:1: end of sequence flow not found"));
  EXPECT_THAT(ProblemsOf("rules:\n  - id: a\n   limit: 1\n"),
              ElementsAre("f.yaml:3:4: end of sequence not found"));
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
              ElementsAre("f.yaml:1:1: expected a mapping with top-level 'rules', 'lists' or "
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
                  "f.yaml:14:78: unknown key 'colour' in rate_limit",
                  "f.yaml:16:51: 'requests_per_unit' must be between 0 and 4294967295, got -1",
                  "f.yaml:18:71: 'unit_multiplier' must be at least 1, got 0",
                  "f.yaml:20:69: 'unit_multiplier' makes the window longer than 10 years",
                  "f.yaml:23:30: rate_limit is missing required key 'requests_per_unit' (0 "
                  "refuses every request)",
                  "f.yaml:24:5: unknown key 'shadowmode' in descriptor"));
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

}  // namespace
}  // namespace sluice::rules
