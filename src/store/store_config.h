// The `store:` section of the server config (CONTRACT §2, §7), as the server and the embeddable
// library (include/sluice/) both give it to MakeStore (store/store_factory.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/consistency.h"
#include "core/time.h"
#include "yaml/pos.h"

namespace sluice {

// What checks get while the store fails (CONTRACT §7).
enum class FailurePolicy : uint8_t { kFailOpen, kFailClosed, kLocal };

enum class StoreBackend { kMemory, kRedis, kRedisCluster, kRedisSharded };

// The backend's name as the config file spells it, and as logs and metrics show it: memory,
// redis, redis_cluster, redis_sharded.
constexpr std::string_view StoreBackendName(StoreBackend backend) {
  switch (backend) {
    case StoreBackend::kMemory:
      return "memory";
    case StoreBackend::kRedis:
      return "redis";
    case StoreBackend::kRedisCluster:
      return "redis_cluster";
    case StoreBackend::kRedisSharded:
      return "redis_sharded";
  }
  return "unknown";
}

struct ShardConfig {
  std::string url;                     // redis://host:port[/db]
  std::vector<std::string> sentinels;  // host:port; with `master`
  std::string master;
  yaml::Pos pos;  // where the shard is, for problems
};

struct StoreConfig {
  StoreBackend backend = StoreBackend::kMemory;
  std::string url = "redis://127.0.0.1:6379/0";
  std::vector<std::string> nodes;
  std::vector<ShardConfig> shards;
  Micros timeout = 50 * kMicrosPerMilli;
  int pool = 4;
  std::string key_prefix = "sluice:";  // no braces, spaces or control characters
  FailurePolicy on_failure = FailurePolicy::kFailOpen;
  double fallback_share = 1.0;
  bool functions = true;  // `scripts: functions` (else `eval`)
  bool coalesce = true;
  // CONTRACT §11: the defaults of rules that do not say.
  Consistency consistency = Consistency::kExact;
  Overshoot max_overshoot = Overshoot::PartsPerMillion(10'000);  // 1%
};

}  // namespace sluice
