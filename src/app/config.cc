#include "app/config.h"

#include <filesystem>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/strings.h"
#include "db/open.h"
#include "net/host_port.h"
#include "rules/loader.h"
#include "store/redis/cluster.h"
#include "store/store_factory.h"
#include "yaml-cpp/yaml.h"
#include "yaml/parse.h"
#include "yaml/reader.h"

namespace sluice::app {

namespace {

// Where the store's values were written, for the checks that need several of them.
struct StorePositions {
  yaml::Pos store;  // the `store:` mapping
  std::optional<yaml::Pos> url;
  std::optional<yaml::Pos> nodes;
};

// What the chosen backend needs, beyond each key's own shape.
void CheckTopology(yaml::Reader& r, const StorePositions& at, const StoreConfig& store) {
  switch (store.backend) {
    case StoreBackend::kMemory:
      break;
    case StoreBackend::kRedis:
      if (auto url = redis::ParseUrl(store.url); !url.ok()) {
        r.Problem(at.url.value_or(at.store), std::string(url.status().message()));
      }
      break;
    case StoreBackend::kRedisCluster:
      if (store.nodes.empty()) {
        r.Problem(at.store, "backend redis_cluster needs 'nodes': seed host:port list");
      }
      for (const std::string& node : store.nodes) {
        if (auto address = redis::ParseNodeAddress(node); !address.ok()) {
          r.Problem(at.nodes.value_or(at.store), std::string(address.status().message()));
        }
      }
      break;
    case StoreBackend::kRedisSharded:
      if (store.shards.empty()) r.Problem(at.store, "backend redis_sharded needs 'shards'");
      for (const ShardConfig& shard : store.shards) {
        const bool sentinel = !shard.sentinels.empty() || !shard.master.empty();
        if (shard.url.empty() == !sentinel) {
          r.Problem(shard.pos, "a shard has either 'url' or 'sentinels' with 'master'");
        } else if (!shard.url.empty()) {
          if (auto url = redis::ParseUrl(shard.url); !url.ok()) {
            r.Problem(shard.pos, std::string(url.status().message()));
          }
        } else if (shard.sentinels.empty() || shard.master.empty()) {
          r.Problem(shard.pos, "a Sentinel shard needs both 'sentinels' and 'master'");
        } else {
          for (const std::string& node : shard.sentinels) {
            if (auto address = net::ParseHostPort(node, {.what = "sentinel"}); !address.ok()) {
              r.Problem(shard.pos, std::string(address.status().message()));
            }
          }
        }
      }
      break;
  }
}

// `rules.database`: sqlite://PATH (a relative PATH is the config file's folder's) or a
// PostgreSQL URL, as given. nullopt for anything else.
std::optional<std::string> ResolveDatabaseUrl(const std::string& url,
                                              const std::filesystem::path& base) {
  const std::string_view backend = db::DatabaseBackend(url);
  if (backend == "postgresql") return url;
  if (backend != "sqlite") return std::nullopt;
  const std::filesystem::path path(url.substr(db::kSqliteScheme.size()));
  return std::string(db::kSqliteScheme) +
         (path.is_absolute() ? path.string() : (base / path).lexically_normal().string());
}

// One `admin.tokens` entry: {name, sha256, role}.
// `names`: the names met so far, valid tokens or not.
void ReadToken(yaml::Reader& r, const YAML::Node& item, std::vector<std::string>& names,
               ServerConfig& config) {
  if (!item.IsMap()) {
    r.Problem(yaml::At(item), "a token must be a mapping {name, sha256, role}");
    return;
  }
  admin::TokenEntry token;
  bool has_name = false;
  bool has_hash = false;
  bool has_role = false;
  r.Fields(item, "'tokens'",
           {{"name",
             [&](const yaml::Field& t) {
               const std::optional<std::string> name = r.String(t);
               if (!name.has_value()) return;
               if (name->empty()) {
                 r.Problem(t.value_pos(), "'name' must not be empty");
                 return;
               }
               for (const std::string& other : names) {
                 if (other == *name) {
                   r.Problem(t.value_pos(), absl::StrCat("token name '", *name, "' is used twice"));
                   return;
                 }
               }
               names.push_back(*name);
               token.name = *name;
               has_name = true;
             }},
            {"sha256",
             [&](const yaml::Field& t) {
               const std::optional<std::string> hex = r.String(t);
               if (!hex.has_value()) return;
               std::optional<admin::Sha256> digest = admin::ParseSha256Hex(*hex);
               if (!digest.has_value()) {
                 // Never echo the value: it may be a token pasted where its hash belongs.
                 r.Problem(t.value_pos(),
                           "'sha256' must be the 64 hex digits of the token's SHA-256 "
                           "(e.g. printf %s TOKEN | sha256sum)");
                 return;
               }
               token.sha256 = *digest;
               has_hash = true;
             }},
            {"role", [&](const yaml::Field& t) {
               static constexpr std::string_view kRoles[] = {"read", "write"};
               if (auto i = r.OneOf(t, kRoles)) {
                 token.role = *i == 0 ? admin::Role::kRead : admin::Role::kWrite;
                 has_role = true;
               }
             }}});
  for (const char* key : {"name", "sha256", "role"}) {
    if (!item[key]) r.Problem(yaml::At(item), absl::StrCat("a token needs '", key, "'"));
  }
  if (!has_name || !has_hash || !has_role) return;
  config.admin_tokens.push_back(std::move(token));
}

// One `proxy.identity` entry: a source ("header:X-User-Id") or a list of them, first present wins.
void ReadIdentitySources(yaml::Reader& r, const yaml::Field& f,
                         std::vector<proxy::IdentitySource>* out) {
  std::vector<YAML::Node> items;  // yaml-cpp's iterators yield temporaries: copies (handles)
  if (f.value.IsSequence()) {
    for (const YAML::Node& item : f.value) items.push_back(item);
  } else if (f.value.IsScalar()) {
    items.push_back(f.value);
  } else {
    r.Problem(f.value_pos(),
              Cat("'", f.name, "' must be a source (header:NAME or query:NAME) or a list of them"));
    return;
  }
  out->clear();
  for (const YAML::Node& item : items) {
    if (!item.IsScalar()) {
      r.Problem(yaml::At(item), Cat("'", f.name, "' sources must be strings"));
      continue;
    }
    auto source = proxy::ParseIdentitySource(item.Scalar());
    if (!source.ok()) {
      r.Problem(yaml::At(item), Cat("'", f.name, "': ", source.status().message()));
      continue;
    }
    out->push_back(std::move(*source));
  }
}

void ReadProxy(yaml::Reader& r, const yaml::Field& f, ProxyConfig& proxy) {
  proxy.enabled = true;
  // Timeouts become milliseconds for Asio: a day is plenty.
  constexpr int64_t kMaxTimeoutUs = int64_t{24} * 3600 * kMicrosPerSecond;
  auto duration = [&r](Micros* out) {
    return [&r, out](const yaml::Field& v) {
      *out = r.Duration(v, kMaxTimeoutUs, "1d").value_or(*out);
    };
  };
  bool has_upstream = false;
  r.Section(f, {
                   {"listen",
                    [&](const yaml::Field& v) {
                      const std::optional<std::string> value = r.String(v);
                      if (!value.has_value()) return;
                      std::string host;
                      uint16_t port;
                      if (!ParseHostPort(*value, &host, &port)) {
                        r.Problem(v.value_pos(),
                                  Cat("'listen' must be host:port, got '", *value, "'"));
                        return;
                      }
                      proxy.listen = *value;
                    }},
                   {"upstream",
                    [&](const yaml::Field& v) {
                      has_upstream = true;
                      const std::optional<std::string> value = r.String(v);
                      if (!value.has_value()) return;
                      auto upstream = proxy::ParseUpstreamUrl(*value);
                      if (!upstream.ok()) {
                        r.Problem(v.value_pos(), Cat("'upstream': ", upstream.status().message()));
                        return;
                      }
                      proxy.upstream = *value;
                      proxy.upstream_address = std::move(*upstream);
                    }},
                   {"timeout", duration(&proxy.timeout)},
                   {"connect_timeout", duration(&proxy.connect_timeout)},
                   {"header_timeout", duration(&proxy.header_timeout)},
                   {"upstream_connections",
                    [&](const yaml::Field& v) {
                      proxy.upstream_connections =
                          r.Integer(v, 0, 100'000).value_or(proxy.upstream_connections);
                    }},
                   {"trusted_proxies",
                    [&](const yaml::Field& v) {
                      if (!r.ExpectSequence(v, "IP addresses or CIDR networks")) return;
                      for (const YAML::Node& item : v.value) {
                        if (!item.IsScalar()) {
                          r.Problem(yaml::At(item), "'trusted_proxies' items must be strings");
                          continue;
                        }
                        auto cidr = rules::ParseCidr(item.Scalar());
                        if (!cidr.ok()) {
                          r.Problem(yaml::At(item), Cat("'trusted_proxies': '", item.Scalar(),
                                                        "' is not an IP address or CIDR network (",
                                                        cidr.status().message(), ")"));
                          continue;
                        }
                        proxy.trusted_proxies.push_back(*cidr);
                      }
                    }},
                   {"identity",
                    [&](const yaml::Field& v) {
                      r.Section(v, {{"user_id",
                                     [&](const yaml::Field& a) {
                                       ReadIdentitySources(r, a, &proxy.identity.user_id);
                                     }},
                                    {"api_key",
                                     [&](const yaml::Field& a) {
                                       ReadIdentitySources(r, a, &proxy.identity.api_key);
                                     }},
                                    {"tier", [&](const yaml::Field& a) {
                                       ReadIdentitySources(r, a, &proxy.identity.tier);
                                     }}});
                    }},
               });
  if (!has_upstream) {
    r.Problem(f.key_pos(), "'proxy' needs 'upstream' (http://host[:port])");
  }
}

void ReadConfig(const YAML::Node& root, const std::filesystem::path& base, yaml::Reader& r,
                ServerConfig& config) {
  if (root.IsNull()) return;  // an empty file: every default
  if (!root.IsMap()) {
    r.Problem(yaml::At(root), "'config' must be a mapping");
    return;
  }
  auto listen_address = [&r](std::string* out) {
    return [&r, out](const yaml::Field& f) {
      const std::optional<std::string> value = r.String(f);
      std::string host;
      uint16_t port;
      if (!value.has_value()) return;
      if (!value->empty() && !ParseHostPort(*value, &host, &port)) {
        r.Problem(f.value_pos(), absl::StrCat("'", std::string(f.name),
                                              "' must be host:port or \"\", got '", *value, "'"));
        return;
      }
      *out = *value;
    };
  };

  StoreConfig& store = config.store;
  r.Fields(
      root, "'config'",
      {
          {"listen",
           [&](const yaml::Field& f) {
             r.Section(f, {{"http", listen_address(&config.http)},
                           {"grpc", listen_address(&config.grpc)}});
           }},
          {"store",
           [&](const yaml::Field& f) {
             StorePositions at{.store = f.value_pos(), .url = {}, .nodes = {}};
             r.Section(
                 f,
                 {
                     {"backend",
                      [&](const yaml::Field& v) {
                        using enum StoreBackend;
                        store.backend = r.Enum<StoreBackend>(
                                             v, {{StoreBackendName(kMemory), kMemory},
                                                 {StoreBackendName(kRedis), kRedis},
                                                 {StoreBackendName(kRedisCluster), kRedisCluster},
                                                 {StoreBackendName(kRedisSharded), kRedisSharded}})
                                            .value_or(store.backend);
                      }},
                     {"url",
                      [&](const yaml::Field& v) {
                        at.url = v.value_pos();
                        store.url = r.String(v).value_or(store.url);
                      }},
                     {"nodes",
                      [&](const yaml::Field& v) {
                        at.nodes = v.value_pos();
                        store.nodes = r.StringList(v).value_or(store.nodes);
                      }},
                     {"shards",
                      [&](const yaml::Field& v) {
                        if (!r.ExpectSequence(v, "mappings")) return;
                        for (const YAML::Node& item : v.value) {
                          if (!item.IsMap()) {
                            r.Problem(yaml::At(item), "a shard must be a mapping");
                            continue;
                          }
                          ShardConfig shard;
                          shard.pos = yaml::At(item);
                          r.Fields(item, "'shards'",
                                   {{"url",
                                     [&](const yaml::Field& s) {
                                       shard.url = r.String(s).value_or("");
                                     }},
                                    {"sentinels",
                                     [&](const yaml::Field& s) {
                                       shard.sentinels =
                                           r.StringList(s).value_or(std::vector<std::string>{});
                                     }},
                                    {"master", [&](const yaml::Field& s) {
                                       shard.master = r.String(s).value_or("");
                                     }}});
                          store.shards.push_back(std::move(shard));
                        }
                      }},
                     {"timeout",
                      [&](const yaml::Field& v) {
                        store.timeout = r.Duration(v).value_or(store.timeout);
                      }},
                     {"pool",
                      [&](const yaml::Field& v) {
                        store.pool = static_cast<int>(r.Integer(v, 1, 64).value_or(store.pool));
                      }},
                     {"key_prefix",
                      [&](const yaml::Field& v) {
                        const std::optional<std::string> prefix = r.String(v);
                        if (!prefix.has_value()) return;
                        if (std::optional<std::string> problem = CheckKeyPrefix(*prefix)) {
                          r.Problem(v.value_pos(), *problem);
                          return;
                        }
                        store.key_prefix = *prefix;
                      }},
                     {"on_failure",
                      [&](const yaml::Field& v) {
                        store.on_failure =
                            r.Enum<FailurePolicy>(v, {{"fail_open", FailurePolicy::kFailOpen},
                                                      {"fail_closed", FailurePolicy::kFailClosed},
                                                      {"local", FailurePolicy::kLocal}})
                                .value_or(store.on_failure);
                      }},
                     {"fallback_share",
                      [&](const yaml::Field& v) {
                        double share;
                        // A plain scalar, as integers are: `"0.5"` is a string.
                        if (!yaml::IsPlainScalar(v.value) ||
                            !absl::SimpleAtod(v.value.Scalar(), &share) ||
                            !(share > 0 && share <= 1)) {
                          r.Problem(v.value_pos(), "'fallback_share' must be a number in (0, 1]");
                          return;
                        }
                        store.fallback_share = share;
                      }},
                     {"scripts",
                      [&](const yaml::Field& v) {
                        store.functions = r.Enum<bool>(v, {{"functions", true}, {"eval", false}})
                                              .value_or(store.functions);
                      }},
                     {"coalesce",
                      [&](const yaml::Field& v) {
                        store.coalesce = r.Bool(v).value_or(store.coalesce);
                      }},
                     {"consistency",
                      [&](const yaml::Field& v) {
                        store.consistency =
                            r.Enum<Consistency>(v, {{"exact", Consistency::kExact},
                                                    {"leased", Consistency::kLeased}})
                                .value_or(store.consistency);
                      }},
                     {"max_overshoot",
                      [&](const yaml::Field& v) {
                        store.max_overshoot =
                            rules::ReadOvershoot(r, v).value_or(store.max_overshoot);
                      }},
                 });
             CheckTopology(r, at, store);
           }},
          {"limits",
           [&](const yaml::Field& f) {
             LimitsConfig& limits = config.limits;
             // gRPC takes milliseconds as an int: at most 2^31 - 1 ms.
             constexpr int64_t kMaxMillisUs = int64_t{24} * 24 * 3600 * kMicrosPerSecond;
             r.Section(
                 f,
                 {
                     {"max_connections",
                      [&](const yaml::Field& v) {
                        limits.max_connections =
                            r.Integer(v, 1, 1'000'000).value_or(limits.max_connections);
                      }},
                     {"max_connections_per_address",
                      [&](const yaml::Field& v) {
                        limits.max_connections_per_address =
                            r.Integer(v, 0, 1'000'000).value_or(limits.max_connections_per_address);
                      }},
                     {"grpc",
                      [&](const yaml::Field& g) {
                        r.Section(g, {
                                         {"max_concurrent_streams",
                                          [&](const yaml::Field& v) {
                                            limits.grpc_max_concurrent_streams =
                                                r.Integer(v, 1, 100'000)
                                                    .value_or(limits.grpc_max_concurrent_streams);
                                          }},
                                         {"max_connection_idle",
                                          [&](const yaml::Field& v) {
                                            limits.grpc_max_connection_idle =
                                                r.Duration(v, kMaxMillisUs, "24d")
                                                    .value_or(limits.grpc_max_connection_idle);
                                          }},
                                         {"max_connection_age",
                                          [&](const yaml::Field& v) {
                                            limits.grpc_max_connection_age =
                                                r.Duration(v, kMaxMillisUs, "24d")
                                                    .value_or(limits.grpc_max_connection_age);
                                          }},
                                     });
                      }},
                 });
           }},
          {"rules",
           [&](const yaml::Field& f) {
             r.Section(
                 f, {{"paths",
                      [&](const yaml::Field& v) {
                        for (const std::string& p :
                             r.StringList(v).value_or(std::vector<std::string>{})) {
                          config.rule_paths.push_back(std::filesystem::path(p).is_absolute()
                                                          ? p
                                                          : (base / p).lexically_normal().string());
                        }
                      }},
                     {"database",
                      [&](const yaml::Field& v) {
                        const std::optional<std::string> url = r.String(v);
                        if (!url.has_value()) return;
                        if (std::optional<std::string> resolved = ResolveDatabaseUrl(*url, base)) {
                          config.rules_database = *resolved;
                        } else {
                          r.Problem(v.value_pos(),
                                    "'database' must be sqlite://PATH or postgresql://...");
                        }
                      }},
                     {"poll", [&](const yaml::Field& v) {
                        const std::optional<Micros> poll = r.Duration(v);
                        if (!poll.has_value()) return;
                        if (*poll < 100 * kMicrosPerMilli) {
                          r.Problem(v.value_pos(), "'poll' must be at least 100ms");
                          return;
                        }
                        config.rules_poll = *poll;
                      }}});
           }},
          {"admin",
           [&](const yaml::Field& f) {
             r.Section(f, {{"tokens", [&](const yaml::Field& v) {
                              if (!r.ExpectSequence(v, "mappings")) return;
                              std::vector<std::string> names;
                              for (const YAML::Node& item : v.value) {
                                ReadToken(r, item, names, config);
                              }
                            }}});
           }},
          {"stats",
           [&](const yaml::Field& f) {
             r.Section(f, {{"enabled",
                            [&](const yaml::Field& v) {
                              config.stats_enabled = r.Bool(v).value_or(config.stats_enabled);
                            }},
                           {"top_capacity", [&](const yaml::Field& v) {
                              config.stats_top_capacity =
                                  r.Integer(v, 100, 1'000'000).value_or(config.stats_top_capacity);
                            }}});
           }},
          {"envoy",
           [&](const yaml::Field& f) {
             auto flag = [&](bool* out) {
               return [&r, out](const yaml::Field& v) { *out = r.Bool(v).value_or(false); };
             };
             r.Section(f, {{"response_headers", flag(&config.envoy.response_headers)},
                           {"shadow_mode", flag(&config.envoy.shadow_mode)},
                           {"quota_mode", flag(&config.envoy.quota_mode)},
                           {"dynamic_metadata", flag(&config.envoy.dynamic_metadata)}});
           }},
          {"proxy", [&](const yaml::Field& f) { ReadProxy(r, f, config.proxy); }},
          {"log",
           [&](const yaml::Field& f) {
             static constexpr std::string_view kLevels[] = {"trace", "debug", "info", "warn",
                                                            "error"};
             static constexpr std::string_view kFormats[] = {"json", "text"};
             r.Section(f, {{"level",
                            [&](const yaml::Field& v) {
                              if (auto i = r.OneOf(v, kLevels)) config.log_level = kLevels[*i];
                            }},
                           {"format", [&](const yaml::Field& v) {
                              if (auto i = r.OneOf(v, kFormats)) config.log_format = kFormats[*i];
                            }}});
           }},
      });
}

}  // namespace

bool ParseHostPort(const std::string& text, std::string* host, uint16_t* port) {
  auto address = net::ParseHostPort(text, {.allow_port_zero = true});
  if (!address.ok()) return false;
  *host = std::move(address->host);
  *port = address->port;
  return true;
}

namespace {

// A server config is small: far tighter limits than a rules file's, still far above any real one.
constexpr yaml::Limits kConfigLimits{
    .max_bytes = size_t{1} << 20, .max_nodes = 100'000, .max_depth = 32};

// The first document of `text` within kConfigLimits (an empty file: a null node), or nullopt
// after reporting why not to `problems`.
std::optional<YAML::Node> ParseConfig(std::string_view text, yaml::Problems& problems) {
  std::optional<std::vector<YAML::Node>> docs = yaml::Parse(text, kConfigLimits, problems);
  if (!docs.has_value()) return std::nullopt;
  return docs->empty() ? YAML::Node() : docs->front();
}

}  // namespace

bool LooksLikeServerConfig(const std::string& path) {
  absl::StatusOr<std::string> text = yaml::ReadFileAtMost(path, kConfigLimits.max_bytes);
  if (!text.ok()) return false;
  yaml::Problems ignored(path);
  std::optional<YAML::Node> parsed = ParseConfig(*text, ignored);
  if (!parsed.has_value()) return false;
  try {
    const YAML::Node& root = *parsed;
    if (!root.IsMap()) return false;
    if (root["listen"] || root["store"] || root["log"] || root["limits"] || root["envoy"] ||
        root["admin"] || root["stats"] || root["proxy"]) {
      return true;
    }
    return root["rules"] && root["rules"].IsMap();
  } catch (const YAML::Exception&) {
    return false;
  }
}

ServerConfig LoadServerConfig(const std::string& path, std::vector<std::string>* problems) {
  ServerConfig config;
  // Within limits, as rules files are read (docs/robustness.md): an alias bomb or a nesting
  // thousands deep is refused before anything walks it.
  absl::StatusOr<std::string> text = yaml::ReadFileAtMost(path, kConfigLimits.max_bytes);
  if (!text.ok()) {
    problems->push_back(absl::StrCat(path, ": ", std::string(text.status().message())));
    return config;
  }
  yaml::Problems found(path);
  yaml::Reader reader(found);
  const std::filesystem::path base = std::filesystem::path(path).parent_path();
  if (std::optional<YAML::Node> root = ParseConfig(*text, found)) {
    // yaml-cpp throws on bad nodes met while walking: each becomes a problem.
    yaml::Guard(found, [&] { ReadConfig(*root, base, reader, config); });
  }
  found.MoveTo(problems);
  return config;
}

}  // namespace sluice::app
