#include "app/config.h"

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "yaml/values.h"
#include "store/redis/cluster.h"
#include "yaml-cpp/yaml.h"

namespace sluice::app {

namespace {

// Collects problems positioned at YAML nodes.
class Checker {
 public:
  Checker(std::string file, std::vector<std::string>* problems)
      : file_(std::move(file)), problems_(problems) {}

  void Problem(const YAML::Mark& mark, const std::string& message) {
    problems_->push_back(
        absl::StrCat(file_, ":", mark.line + 1, ":", mark.column + 1, ": ", message));
  }

  // Calls `handlers[key]` for each key of the mapping `node`; unknown keys are problems.
  void Map(const YAML::Node& node, const std::string& where,
           const std::map<std::string, std::function<void(const YAML::Node&)>>& handlers) {
    if (!node.IsMap()) {
      if (!node.IsNull()) Problem(node.Mark(), absl::StrCat("'", where, "' must be a mapping"));
      return;
    }
    for (const auto& kv : node) {
      const std::string key = kv.first.Scalar();
      auto it = handlers.find(key);
      if (it == handlers.end()) {
        std::string known;
        for (const auto& [k, _] : handlers) known += (known.empty() ? "" : ", ") + k;
        Problem(kv.first.Mark(),
                absl::StrCat("unknown key '", key, "' in '", where, "' (known: ", known, ")"));
        continue;
      }
      it->second(kv.second);
    }
  }

  bool String(const YAML::Node& node, const std::string& name, std::string* out) {
    if (!node.IsScalar()) {
      Problem(node.Mark(), absl::StrCat("'", name, "' must be a string"));
      return false;
    }
    *out = node.Scalar();
    return true;
  }

  void OneOf(const YAML::Node& node, const std::string& name,
             std::initializer_list<const char*> allowed, std::string* out) {
    std::string value;
    if (!String(node, name, &value)) return;
    std::string list;
    for (const char* a : allowed) {
      if (value == a) {
        *out = value;
        return;
      }
      list += (list.empty() ? "" : ", ") + std::string(a);
    }
    Problem(node.Mark(), absl::StrCat("'", name, "' must be one of ", list, ", got '", value, "'"));
  }

  void StringList(const YAML::Node& node, const std::string& name, std::vector<std::string>* out) {
    if (!node.IsSequence()) {
      Problem(node.Mark(), absl::StrCat("'", name, "' must be a list of strings"));
      return;
    }
    out->clear();
    for (const auto& item : node) {
      std::string s;
      if (String(item, name, &s)) out->push_back(s);
    }
  }

 private:
  std::string file_;
  std::vector<std::string>* problems_;
};

// What the chosen backend needs, beyond each key's own shape.
void CheckTopology(Checker& c, const YAML::Node& store_node, const StoreConfig& store) {
  if (store.backend == "redis") {
    if (auto url = redis::ParseUrl(store.url); !url.ok()) {
      c.Problem(store_node["url"] ? store_node["url"].Mark() : store_node.Mark(),
                std::string(url.status().message()));
    }
  } else if (store.backend == "redis_cluster") {
    if (store.nodes.empty()) {
      c.Problem(store_node.Mark(), "backend redis_cluster needs 'nodes': seed host:port list");
    }
    for (const std::string& node : store.nodes) {
      if (auto address = redis::ParseNodeAddress(node); !address.ok()) {
        c.Problem(store_node["nodes"].Mark(), std::string(address.status().message()));
      }
    }
  } else if (store.backend == "redis_sharded") {
    if (store.shards.empty()) {
      c.Problem(store_node.Mark(), "backend redis_sharded needs 'shards'");
    }
    for (const ShardConfig& shard : store.shards) {
      const bool sentinel = !shard.sentinels.empty() || !shard.master.empty();
      if (shard.url.empty() == !sentinel) {
        c.Problem(shard.mark, "a shard has either 'url' or 'sentinels' with 'master'");
      } else if (!shard.url.empty()) {
        if (auto url = redis::ParseUrl(shard.url); !url.ok()) {
          c.Problem(shard.mark, std::string(url.status().message()));
        }
      } else if (shard.sentinels.empty() || shard.master.empty()) {
        c.Problem(shard.mark, "a Sentinel shard needs both 'sentinels' and 'master'");
      } else {
        for (const std::string& node : shard.sentinels) {
          if (auto address = redis::ParseNodeAddress(node); !address.ok()) {
            c.Problem(shard.mark, std::string(address.status().message()));
          }
        }
      }
    }
  }
}

}  // namespace

bool ParseHostPort(const std::string& text, std::string* host, uint16_t* port) {
  std::string h, p;
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return false;
    }
    h = text.substr(1, close - 1);
    p = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos) return false;
    h = text.substr(0, colon);
    p = text.substr(colon + 1);
  }
  uint32_t value;
  if (h.empty() || !absl::SimpleAtoi(p, &value) || value > 65535) return false;
  *host = h;
  *port = static_cast<uint16_t>(value);
  return true;
}

bool LooksLikeServerConfig(const std::string& path) {
  try {
    YAML::Node root = YAML::LoadFile(path);
    if (!root.IsMap()) return false;
    if (root["listen"] || root["store"] || root["log"]) return true;
    return root["rules"] && root["rules"].IsMap();
  } catch (const YAML::Exception&) {
    return false;
  }
}

ServerConfig LoadServerConfig(const std::string& path, std::vector<std::string>* problems) {
  ServerConfig config;
  std::ifstream in(path);
  if (!in) {
    problems->push_back(absl::StrCat(path, ": cannot read: ", std::strerror(errno)));
    return config;
  }
  std::stringstream text;
  text << in.rdbuf();
  YAML::Node root;
  try {
    root = YAML::Load(text.str());
  } catch (const YAML::ParserException& e) {
    problems->push_back(
        absl::StrCat(path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg));
    return config;
  }
  Checker c(path, problems);
  const std::filesystem::path base = std::filesystem::path(path).parent_path();

  auto listen_address = [&](const char* name, std::string* out) {
    return [&c, name, out](const YAML::Node& n) {
      std::string value, host;
      uint16_t port;
      if (!c.String(n, name, &value)) return;
      if (!value.empty() && !ParseHostPort(value, &host, &port)) {
        c.Problem(n.Mark(),
                  absl::StrCat("'", name, "' must be host:port or \"\", got '", value, "'"));
        return;
      }
      *out = value;
    };
  };
  auto duration = [&](const char* name, Micros* out) {
    return [&c, name, out](const YAML::Node& n) {
      std::string value;
      if (!c.String(n, name, &value)) return;
      auto d = yaml::ParseDuration(value);
      if (!d.ok() || *d <= 0) {
        c.Problem(n.Mark(), absl::StrCat("'", name, "' must be a positive duration such as 50ms,",
                                         " got '", value, "'"));
        return;
      }
      *out = *d;
    };
  };

  StoreConfig& store = config.store;
  try {
    c.Map(
        root, "config",
        {
            {"listen",
             [&](const YAML::Node& n) {
               c.Map(n, "listen",
                     {{"http", listen_address("http", &config.http)},
                      {"grpc", listen_address("grpc", &config.grpc)}});
             }},
            {"store",
             [&](const YAML::Node& n) {
               c.Map(
                   n, "store",
                   {
                       {"backend",
                        [&](const YAML::Node& v) {
                          c.OneOf(v, "backend",
                                  {"memory", "redis", "redis_cluster", "redis_sharded"},
                                  &store.backend);
                        }},
                       {"url", [&](const YAML::Node& v) { c.String(v, "url", &store.url); }},
                       {"nodes",
                        [&](const YAML::Node& v) { c.StringList(v, "nodes", &store.nodes); }},
                       {"shards",
                        [&](const YAML::Node& v) {
                          if (!v.IsSequence()) {
                            c.Problem(v.Mark(), "'shards' must be a list");
                            return;
                          }
                          for (const auto& item : v) {
                            ShardConfig shard;
                            shard.mark = item.Mark();
                            c.Map(item, "shards",
                                  {{"url",
                                    [&](const YAML::Node& s) { c.String(s, "url", &shard.url); }},
                                   {"sentinels",
                                    [&](const YAML::Node& s) {
                                      c.StringList(s, "sentinels", &shard.sentinels);
                                    }},
                                   {"master", [&](const YAML::Node& s) {
                                      c.String(s, "master", &shard.master);
                                    }}});
                            store.shards.push_back(shard);
                          }
                        }},
                       {"timeout", duration("timeout", &store.timeout)},
                       {"pool",
                        [&](const YAML::Node& v) {
                          int pool;
                          if (!v.IsScalar() || !absl::SimpleAtoi(v.Scalar(), &pool) || pool < 1 ||
                              pool > 64) {
                            c.Problem(v.Mark(), "'pool' must be an integer from 1 to 64");
                            return;
                          }
                          store.pool = pool;
                        }},
                       {"key_prefix",
                        [&](const YAML::Node& v) { c.String(v, "key_prefix", &store.key_prefix); }},
                       {"on_failure",
                        [&](const YAML::Node& v) {
                          std::string policy;
                          c.OneOf(v, "on_failure", {"fail_open", "fail_closed", "local"}, &policy);
                          if (policy == "fail_closed") {
                            store.on_failure = FailurePolicy::kFailClosed;
                          } else if (policy == "local") {
                            store.on_failure = FailurePolicy::kLocal;
                          } else if (policy == "fail_open") {
                            store.on_failure = FailurePolicy::kFailOpen;
                          }
                        }},
                       {"fallback_share",
                        [&](const YAML::Node& v) {
                          double share;
                          if (!v.IsScalar() || !absl::SimpleAtod(v.Scalar(), &share) ||
                              !(share > 0 && share <= 1)) {
                            c.Problem(v.Mark(), "'fallback_share' must be a number in (0, 1]");
                            return;
                          }
                          store.fallback_share = share;
                        }},
                   });
               CheckTopology(c, n, store);
             }},
            {"rules",
             [&](const YAML::Node& n) {
               c.Map(n, "rules", {{"paths", [&](const YAML::Node& v) {
                                     std::vector<std::string> paths;
                                     c.StringList(v, "paths", &paths);
                                     for (const auto& p : paths) {
                                       config.rule_paths.push_back(
                                           std::filesystem::path(p).is_absolute()
                                               ? p
                                               : (base / p).lexically_normal().string());
                                     }
                                   }}});
             }},
            {"log",
             [&](const YAML::Node& n) {
               c.Map(n, "log",
                     {{"level",
                       [&](const YAML::Node& v) {
                         c.OneOf(v, "level", {"trace", "debug", "info", "warn", "error"},
                                 &config.log_level);
                       }},
                      {"format", [&](const YAML::Node& v) {
                         c.OneOf(v, "format", {"json", "text"}, &config.log_format);
                       }}});
             }},
        });
  } catch (const YAML::Exception& e) {
    problems->push_back(
        absl::StrCat(path, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg));
  }
  return config;
}

}  // namespace sluice::app
