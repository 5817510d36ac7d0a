#include "app/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace sluice::app {
namespace {

std::string Write(const std::string& name, const std::string& text) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("sluice_config_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / name) << text;
  return (dir / name).string();
}

TEST(ConfigTest, LoadsEveryKeyAndResolvesRulePaths) {
  const std::string path = Write("full.yaml", R"(listen:
  http: 0.0.0.0:9000
  grpc: ""
store:
  backend: redis
  url: redis://10.0.0.1:6380/2
  timeout: 20ms
  pool: 8
  key_prefix: "x:"
  on_failure: local
  fallback_share: 0.25
rules:
  paths: [rules/, /etc/sluice/extra.yaml]
log:
  level: debug
  format: text
)");
  std::vector<std::string> problems;
  ServerConfig c = LoadServerConfig(path, &problems);
  ASSERT_TRUE(problems.empty()) << problems[0];
  EXPECT_EQ(c.http, "0.0.0.0:9000");
  EXPECT_EQ(c.grpc, "");
  EXPECT_EQ(c.store.backend, StoreBackend::kRedis);
  EXPECT_EQ(c.store.key_prefix, "x:");
  EXPECT_EQ(c.store.timeout, 20 * kMicrosPerMilli);
  EXPECT_EQ(c.store.pool, 8);
  EXPECT_EQ(c.store.on_failure, FailurePolicy::kLocal);
  EXPECT_DOUBLE_EQ(c.store.fallback_share, 0.25);
  ASSERT_EQ(c.rule_paths.size(), 2u);
  EXPECT_EQ(c.rule_paths[0],
            (std::filesystem::path(path).parent_path() / "rules/").lexically_normal().string());
  EXPECT_EQ(c.rule_paths[1], "/etc/sluice/extra.yaml");
  EXPECT_EQ(c.log_level, "debug");
}

// Verifies FILE:LINE:COL for each kind of problem, and that all are reported.
TEST(ConfigTest, ReportsEveryProblemWithPosition) {
  const std::string path = Write("bad.yaml", R"(listen:
  http: nowhere
  htp: 1
store:
  timeout: fast
  on_failure: maybe
  pool: 0
)");
  std::vector<std::string> problems;
  LoadServerConfig(path, &problems);
  ASSERT_EQ(problems.size(), 5u);
  EXPECT_EQ(problems[0].rfind(path + ":2:9: 'http' must be host:port", 0), 0u) << problems[0];
  EXPECT_EQ(problems[1].rfind(path + ":3:3: unknown key 'htp' in 'listen'", 0), 0u) << problems[1];
  EXPECT_EQ(problems[2].rfind(path + ":5:12: 'timeout': invalid duration 'fast'", 0), 0u)
      << problems[2];
  EXPECT_EQ(problems[3].rfind(path + ":6:15: 'on_failure' must be one of", 0), 0u) << problems[3];
  EXPECT_EQ(problems[4], path + ":7:9: 'pool' must be between 1 and 64, got 0");
}

// Verifies that a problem with an empty value is reported at its key, not at the next token
// (where yaml-cpp marks an empty value).
TEST(ConfigTest, EmptyValueReportedAtItsKey) {
  const std::string path = Write("empty_value.yaml", "store:\n  timeout:\n  pool: 4\n");
  std::vector<std::string> problems;
  LoadServerConfig(path, &problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].rfind(path + ":2:3: 'timeout' must be a duration", 0), 0u) << problems[0];
}

// Verifies that duplicate keys are problems at the second occurrence, as in rules files
// (yaml-cpp keeps both silently).
TEST(ConfigTest, RejectsDuplicateKeys) {
  const std::string path = Write("duplicates.yaml", R"(store:
  pool: 4
  pool: 8
log:
  level: info
store:
  timeout: 1s
)");
  std::vector<std::string> problems;
  LoadServerConfig(path, &problems);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0], path + ":3:3: duplicate key 'pool' in 'store'");
  EXPECT_EQ(problems[1], path + ":6:1: duplicate key 'store' in 'config'");
}

// Verifies that integers must be plain YAML scalars, as in rules files: `pool: "4"` is a string.
TEST(ConfigTest, RejectsQuotedIntegers) {
  const std::string path = Write("quoted.yaml", "store:\n  pool: \"4\"\n");
  std::vector<std::string> problems;
  LoadServerConfig(path, &problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0], path + ":2:9: 'pool' must be an integer, got '4'");
}

// Verifies that a key_prefix that would become (part of) the Redis Cluster hash tag, or holds
// whitespace or control characters, is refused at its value.
TEST(ConfigTest, ValidatesKeyPrefix) {
  for (const std::string bad :
       {"\"app{1}:\"", "\"{\"", "\"a}\"", "\"my app:\"", "\"a\\tb\"", "\"a\\nb\"", "\"a\\x7f\""}) {
    const std::string path = Write("prefix.yaml", "store:\n  key_prefix: " + bad + "\n");
    std::vector<std::string> problems;
    LoadServerConfig(path, &problems);
    ASSERT_EQ(problems.size(), 1u) << bad;
    EXPECT_EQ(problems[0].rfind(path + ":2:15: 'key_prefix' must not contain", 0), 0u)
        << problems[0];
  }
  std::vector<std::string> problems;
  LoadServerConfig(Write("prefix.yaml", "store:\n  key_prefix: \"a{b}\"\n"), &problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("hash tag"), std::string::npos) << problems[0];
  for (const std::string good : {"\"\"", "\"sluice:\"", "plain", "\"team-a/prod:\"", "\"räte:\""}) {
    problems.clear();
    ServerConfig c =
        LoadServerConfig(Write("prefix.yaml", "store:\n  key_prefix: " + good + "\n"), &problems);
    EXPECT_TRUE(problems.empty()) << good << ": " << problems[0];
  }
}

// Verifies that every backend name reads into the enum, and back through StoreBackendName.
TEST(ConfigTest, StoreBackendNames) {
  for (StoreBackend b : {StoreBackend::kMemory, StoreBackend::kRedis, StoreBackend::kRedisCluster,
                         StoreBackend::kRedisSharded}) {
    const std::string name(StoreBackendName(b));
    std::vector<std::string> problems;
    ServerConfig c = LoadServerConfig(
        Write("backend.yaml", "store:\n  backend: " + name +
                                  "\n  nodes: [127.0.0.1:7000]\n  shards: [{url: redis://h:1}]\n"),
        &problems);
    EXPECT_TRUE(problems.empty()) << name << ": " << problems[0];
    EXPECT_EQ(c.store.backend, b) << name;
  }
}

// Verifies that unknown keys name the keys that are known, in the order of the file format.
TEST(ConfigTest, UnknownKeysListTheKnownOnes) {
  const std::string path = Write("unknown.yaml", "log:\n  colour: red\n");
  std::vector<std::string> problems;
  LoadServerConfig(path, &problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0], path + ":2:3: unknown key 'colour' in 'log' (known: level, format)");
}

// Verifies the `envoy:` section: off by default, each key read, unknown keys and non-booleans
// reported with file, line and column; and that such a file is told as a server config.
TEST(ConfigTest, EnvoySection) {
  std::vector<std::string> problems;
  const std::string defaults = Write("no_envoy.yaml", "log: {level: info}\n");
  ServerConfig d = LoadServerConfig(defaults, &problems);
  ASSERT_TRUE(problems.empty()) << problems[0];
  EXPECT_FALSE(d.envoy.response_headers);
  EXPECT_FALSE(d.envoy.shadow_mode);
  EXPECT_FALSE(d.envoy.quota_mode);
  EXPECT_FALSE(d.envoy.dynamic_metadata);

  const std::string path = Write("envoy.yaml", R"(envoy:
  response_headers: true
  shadow_mode: true
  quota_mode: true
  dynamic_metadata: true
)");
  ServerConfig c = LoadServerConfig(path, &problems);
  ASSERT_TRUE(problems.empty()) << problems[0];
  EXPECT_TRUE(c.envoy.response_headers);
  EXPECT_TRUE(c.envoy.shadow_mode);
  EXPECT_TRUE(c.envoy.quota_mode);
  EXPECT_TRUE(c.envoy.dynamic_metadata);
  EXPECT_TRUE(LooksLikeServerConfig(path));

  const std::string bad = Write("bad_envoy.yaml", "envoy:\n  headers: true\n  shadow_mode: 1\n");
  LoadServerConfig(bad, &problems);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0], bad +
                             ":2:3: unknown key 'headers' in 'envoy' (known: response_headers, "
                             "shadow_mode, quota_mode, dynamic_metadata)");
  EXPECT_EQ(problems[1].rfind(bad + ":3:16: ", 0), 0u) << problems[1];
}

TEST(ConfigTest, SyntaxErrorsAndMissingFiles) {
  std::vector<std::string> problems;
  LoadServerConfig(Write("syntax.yaml", "listen: [\n"), &problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("syntax.yaml:"), std::string::npos);
  problems.clear();
  LoadServerConfig("/nonexistent/sluice.yaml", &problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].rfind("/nonexistent/sluice.yaml: cannot read: ", 0), 0u);
}

// Verifies that a hostile config is refused before anything walks it, as rules files are: an
// alias bomb, an alias inside its own anchor, nesting too deep; and that LooksLikeServerConfig
// (sluice validate's peek) says no to them rather than hang.
TEST(ConfigTest, RefusesAliasBombsAndDeepNesting) {
  std::string bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'h'; ++c) {
    const char prev = static_cast<char>(c - 1);
    bomb += std::string(1, c) + ": &" + c + " [*" + prev + ", *" + prev + ", *" + prev + ", *" +
            prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev +
            ", *" + prev + "]\n";
  }
  bomb += "store: {backend: memory}\n";
  const std::string self = "listen: &l {http: [*l]}\n";
  const std::string deep = "log: " + std::string(40, '[') + std::string(40, ']') + "\n";
  for (const auto& [name, text, expected] :
       {std::tuple{"bomb.yaml", bomb, "nodes once aliases are expanded"},
        std::tuple{"self.yaml", self, "is used inside its own anchor's node"},
        std::tuple{"deep.yaml", deep, "nesting deeper than 32 levels"}}) {
    std::vector<std::string> problems;
    const std::string path = Write(name, text);
    LoadServerConfig(path, &problems);
    ASSERT_EQ(problems.size(), 1u) << name;
    EXPECT_NE(problems[0].find(expected), std::string::npos) << problems[0];
    EXPECT_EQ(problems[0].rfind(path + ":", 0), 0u) << problems[0];
    EXPECT_FALSE(LooksLikeServerConfig(path)) << name;
  }
}

// Verifies what each Redis backend needs: seed nodes, shards with either a URL or Sentinel.
TEST(ConfigTest, ChecksWhatEachRedisBackendNeeds) {
  std::vector<std::string> problems;
  const std::string cluster = Write("cluster.yaml", R"(store:
  backend: redis_cluster
  nodes: [10.0.0.1:7000, "10.0.0.2:99999"]
)");
  ServerConfig c = LoadServerConfig(cluster, &problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].rfind(cluster + ":3:10: invalid Redis node '10.0.0.2:99999'", 0), 0u)
      << problems[0];
  problems.clear();
  LoadServerConfig(Write("cluster_empty.yaml", "store:\n  backend: redis_cluster\n"), &problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find(":2:3: backend redis_cluster needs 'nodes'"), std::string::npos)
      << problems[0];

  problems.clear();
  const std::string sharded = Write("sharded.yaml", R"(store:
  backend: redis_sharded
  shards:
    - url: redis://10.0.0.1:6379
    - sentinels: [10.0.0.2:26379]
      master: shard-b
    - url: redis://10.0.0.3:6379
      master: shard-c
    - sentinels: [10.0.0.4:26379]
)");
  c = LoadServerConfig(sharded, &problems);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0], sharded + ":7:7: a shard has either 'url' or 'sentinels' with 'master'");
  EXPECT_EQ(problems[1], sharded + ":9:7: a Sentinel shard needs both 'sentinels' and 'master'");
  ASSERT_EQ(c.store.shards.size(), 4u);
  EXPECT_EQ(c.store.shards[1].master, "shard-b");
}

// CONTRACT §8: rules.database (a relative SQLite path is the config file's folder's),
// rules.poll, admin.tokens as SHA-256 with a role.
TEST(ConfigTest, RulesDatabaseAndAdminTokens) {
  const std::string hash = std::string(64, 'a');
  const std::string path = Write("admin.yaml", R"(rules:
  database: sqlite://state/rules.db
  poll: 2s
admin:
  tokens:
    - {name: ops, sha256: ")" + hash + R"(", role: write}
    - {name: grafana, sha256: ")" + std::string(64, 'B') +
                                                   R"(", role: read}
)");
  std::vector<std::string> problems;
  ServerConfig c = LoadServerConfig(path, &problems);
  ASSERT_TRUE(problems.empty()) << problems[0];
  EXPECT_EQ(c.rules_database,
            "sqlite://" + (std::filesystem::path(path).parent_path() / "state/rules.db")
                              .lexically_normal()
                              .string());
  EXPECT_EQ(c.rules_poll, 2 * kMicrosPerSecond);
  ASSERT_EQ(c.admin_tokens.size(), 2u);
  EXPECT_EQ(c.admin_tokens[0].name, "ops");
  EXPECT_EQ(c.admin_tokens[0].role, admin::Role::kWrite);
  EXPECT_EQ(c.admin_tokens[1].role, admin::Role::kRead);
  EXPECT_EQ(admin::ToHex(c.admin_tokens[1].sha256), std::string(64, 'b'));
  // `sluice validate` takes a file with only `admin:` as a server config, not a rules file.
  EXPECT_TRUE(LooksLikeServerConfig(Write(
      "admin-only.yaml", "admin:\n  tokens: [{name: a, sha256: \"" + hash + "\", role: read}]\n")));

  const std::string pg = Write("pg.yaml", "rules:\n  database: postgresql://u:p@db:5432/sluice\n");
  problems.clear();
  EXPECT_EQ(LoadServerConfig(pg, &problems).rules_database, "postgresql://u:p@db:5432/sluice");
  EXPECT_TRUE(problems.empty());
}

TEST(ConfigTest, BadDatabaseAndTokensAreReportedAtTheirPlace) {
  const std::string path = Write("bad-admin.yaml", R"(rules:
  database: mysql://x
  poll: 1ms
admin:
  tokens:
    - {name: ops, sha256: not-a-hash, role: write}
    - {name: ops, sha256: ")" + std::string(64, 'a') + R"(", role: admin}
    - {sha256: ")" + std::string(64, 'a') + R"(", role: read}
    - just-a-string
)");
  std::vector<std::string> problems;
  LoadServerConfig(path, &problems);
  std::string all;
  for (const std::string& p : problems) all += p + "\n";
  EXPECT_NE(all.find(":2:13: 'database' must be sqlite://PATH or postgresql://"), std::string::npos)
      << all;
  EXPECT_NE(all.find(":3:9: 'poll' must be at least 100ms"), std::string::npos) << all;
  EXPECT_NE(all.find(":6:27: 'sha256' must be the 64 hex digits"), std::string::npos) << all;
  EXPECT_EQ(all.find("not-a-hash"), std::string::npos) << "a token's value is never echoed";
  EXPECT_NE(all.find(":7:14: token name 'ops' is used twice"), std::string::npos) << all;
  EXPECT_NE(all.find("role"), std::string::npos) << all;
  EXPECT_NE(all.find(":8:7: a token needs 'name'"), std::string::npos) << all;
  EXPECT_NE(all.find(":9:7: a token must be a mapping"), std::string::npos) << all;
}

// Verifies the store keys of leased counting and script delivery (CONTRACT §2, §11): scripts
// functions|eval, coalesce, consistency exact|leased, max_overshoot as a share or a count; and
// their defaults.
TEST(ConfigTest, StoreScriptsCoalesceConsistencyAndOvershoot) {
  std::vector<std::string> problems;
  ServerConfig defaults =
      LoadServerConfig(Write("store_defaults.yaml", "store:\n  pool: 4\n"), &problems);
  ASSERT_TRUE(problems.empty()) << problems[0];
  EXPECT_TRUE(defaults.store.functions);
  EXPECT_TRUE(defaults.store.coalesce);
  EXPECT_EQ(defaults.store.consistency, Consistency::kExact);
  EXPECT_EQ(defaults.store.max_overshoot, Overshoot::PartsPerMillion(10'000));

  ServerConfig c = LoadServerConfig(Write("store_leased.yaml", R"(store:
  backend: redis
  url: redis://127.0.0.1:6379
  scripts: eval
  coalesce: false
  consistency: leased
  max_overshoot: "2%"
)"),
                                    &problems);
  ASSERT_TRUE(problems.empty()) << problems[0];
  EXPECT_FALSE(c.store.functions);
  EXPECT_FALSE(c.store.coalesce);
  EXPECT_EQ(c.store.consistency, Consistency::kLeased);
  EXPECT_EQ(c.store.max_overshoot, Overshoot::PartsPerMillion(20'000));
  EXPECT_EQ(c.store.max_overshoot.For(1000), 20);

  c = LoadServerConfig(Write("store_exact.yaml", R"(store:
  scripts: functions
  coalesce: true
  consistency: exact
  max_overshoot: 10
)"),
                       &problems);
  ASSERT_TRUE(problems.empty()) << problems[0];
  EXPECT_TRUE(c.store.functions);
  EXPECT_TRUE(c.store.coalesce);
  EXPECT_EQ(c.store.consistency, Consistency::kExact);
  EXPECT_EQ(c.store.max_overshoot, Overshoot::Count(10));
}

// Verifies that bad values of those keys are problems at the value's FILE:LINE:COL, naming the
// key.
TEST(ConfigTest, BadScriptsCoalesceConsistencyAndOvershootAreReported) {
  const std::string path = Write("store_bad.yaml", R"(store:
  scripts: lua
  coalesce: sometimes
  consistency: eventual
  max_overshoot: "1.5"
)");
  std::vector<std::string> problems;
  LoadServerConfig(path, &problems);
  ASSERT_EQ(problems.size(), 4u);
  EXPECT_EQ(problems[0], path + ":2:12: 'scripts' must be one of functions, eval, got 'lua'");
  EXPECT_EQ(problems[1].rfind(path + ":3:13: 'coalesce' must be true or false", 0), 0u)
      << problems[1];
  EXPECT_EQ(problems[2].rfind(path + ":4:16: 'consistency' must be one of exact, leased", 0), 0u)
      << problems[2];
  EXPECT_EQ(problems[3].rfind(path + ":5:18: 'max_overshoot' must be a count", 0), 0u)
      << problems[3];
  EXPECT_NE(problems[3].find("got '1.5'"), std::string::npos) << problems[3];

  for (const std::string bad : {"\"101%\"", "-3", "\"1.23456%\"", "[1]", "\"abc\""}) {
    problems.clear();
    const std::string bad_path =
        Write("overshoot_bad.yaml", "store:\n  max_overshoot: " + bad + "\n");
    LoadServerConfig(bad_path, &problems);
    ASSERT_EQ(problems.size(), 1u) << bad;
    EXPECT_EQ(problems[0].rfind(bad_path + ":2:18: 'max_overshoot' must be", 0), 0u) << problems[0];
  }
}

// Verifies every key of `proxy:` and its defaults.
TEST(ConfigTest, LoadsProxy) {
  const std::string path = Write("proxy.yaml", R"(proxy:
  listen: 127.0.0.1:8000
  upstream: http://127.0.0.1:9000
  timeout: 300ms
  connect_timeout: 2s
  header_timeout: 5s
  upstream_connections: 8
  trusted_proxies: [10.0.0.0/8, "2001:db8::/32", 192.0.2.1]
  identity:
    user_id: header:X-User-Id
    api_key: [header:X-API-Key, query:api_key]
    tier: header:X-Tier
)");
  std::vector<std::string> problems;
  ServerConfig c = LoadServerConfig(path, &problems);
  ASSERT_TRUE(problems.empty()) << problems[0];
  EXPECT_TRUE(LooksLikeServerConfig(path));
  const ProxyConfig& p = c.proxy;
  EXPECT_TRUE(p.enabled);
  EXPECT_EQ(p.listen, "127.0.0.1:8000");
  EXPECT_EQ(p.upstream_address.host, "127.0.0.1");
  EXPECT_EQ(p.upstream_address.port, 9000);
  EXPECT_EQ(p.timeout, 300 * kMicrosPerMilli);
  EXPECT_EQ(p.connect_timeout, 2 * kMicrosPerSecond);
  EXPECT_EQ(p.header_timeout, 5 * kMicrosPerSecond);
  EXPECT_EQ(p.upstream_connections, 8);
  EXPECT_EQ(p.trusted_proxies.size(), 3u);
  ASSERT_EQ(p.identity.api_key.size(), 2u);
  EXPECT_EQ(p.identity.api_key[1].ToString(), "query:api_key");
  EXPECT_EQ(p.identity.user_id[0].ToString(), "header:X-User-Id");
  EXPECT_EQ(p.identity.tier.size(), 1u);

  problems.clear();
  ServerConfig none = LoadServerConfig(Write("no_proxy.yaml", "log:\n  level: info\n"), &problems);
  EXPECT_FALSE(none.proxy.enabled);
}

// Verifies FILE:LINE:COL for the proxy section's problems: a bad or https upstream, an unknown
// key, a bad CIDR, a bad identity source.
TEST(ConfigTest, ReportsProxyProblems) {
  const std::string path = Write("bad_proxy.yaml", R"(proxy:
  listen: nowhere
  upstream: https://backend:443
  timout: 1s
  trusted_proxies: [10.0.0.0/8, 10.0.0.0/33, nope]
  identity:
    user_id: cookie:session
    api_key: [header:X-API-Key, "query:"]
    ip_address: header:X-Real-IP
)");
  std::vector<std::string> problems;
  LoadServerConfig(path, &problems);
  ASSERT_EQ(problems.size(), 8u);
  EXPECT_EQ(problems[0].rfind(path + ":2:11: 'listen' must be host:port", 0), 0u) << problems[0];
  EXPECT_EQ(problems[1].rfind(path + ":3:13: 'upstream': upstream 'https://backend:443': https "
                                     "is not supported",
                              0),
            0u)
      << problems[1];
  EXPECT_EQ(problems[2].rfind(path + ":4:3: unknown key 'timout' in 'proxy'", 0), 0u)
      << problems[2];
  EXPECT_EQ(problems[3].rfind(path + ":5:33: 'trusted_proxies': '10.0.0.0/33' is not", 0), 0u)
      << problems[3];
  EXPECT_EQ(problems[4].rfind(path + ":5:46: 'trusted_proxies': 'nope' is not", 0), 0u)
      << problems[4];
  EXPECT_EQ(
      problems[5].rfind(path + ":7:14: 'user_id': invalid identity source 'cookie:session'", 0), 0u)
      << problems[5];
  EXPECT_EQ(problems[6].rfind(path + ":8:33: 'api_key': identity source 'query:' has no name", 0),
            0u)
      << problems[6];
  EXPECT_EQ(problems[7].rfind(path + ":9:5: unknown key 'ip_address' in 'identity'", 0), 0u)
      << problems[7];

  problems.clear();
  const std::string no_upstream = Write("proxy_no_upstream.yaml", "proxy:\n  timeout: 1s\n");
  LoadServerConfig(no_upstream, &problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0], no_upstream + ":1:1: 'proxy' needs 'upstream' (http://host[:port])");

  problems.clear();
  const std::string path_upstream =
      Write("proxy_path.yaml", "proxy:\n  upstream: http://h:80/api\n");
  LoadServerConfig(path_upstream, &problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].rfind(path_upstream + ":2:13: 'upstream': invalid upstream", 0), 0u)
      << problems[0];
}

TEST(ConfigTest, ParsesHostPort) {
  std::string host;
  uint16_t port;
  EXPECT_TRUE(ParseHostPort("127.0.0.1:8080", &host, &port));
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 8080);
  EXPECT_TRUE(ParseHostPort("[::1]:0", &host, &port));
  EXPECT_EQ(host, "::1");
  EXPECT_FALSE(ParseHostPort("localhost", &host, &port));
  EXPECT_FALSE(ParseHostPort("h:70000", &host, &port));
  EXPECT_FALSE(ParseHostPort(":80", &host, &port));
}

}  // namespace
}  // namespace sluice::app
