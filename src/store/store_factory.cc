#include "store/store_factory.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "net/host_port.h"
#include "store/leased/leased_store.h"
#include "store/memory/memory_store.h"
#include "store/redis/redis_store.h"

namespace sluice {

// Every Redis key is `<key_prefix>{K}`, the braces making K the Redis Cluster hash tag (Redis
// hashes the text between the first '{' and the next '}'). A brace in the prefix would move the
// tag into the prefix: one slot, one shard, for every counter, or a counter's keys split across
// slots. Whitespace and control characters are refused too: nothing needs them, and they make
// keys hard to read and to type in redis-cli. Checked on every backend, so that a config stays
// valid when it moves from memory to Redis.
std::optional<std::string> CheckKeyPrefix(const std::string& prefix) {
  if (prefix.find_first_of("{}") != std::string::npos) {
    return "'key_prefix' must not contain '{' or '}': Redis Cluster would take them as the hash "
           "tag and put every counter in one slot";
  }
  for (const char c : prefix) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) {
      return "'key_prefix' must not contain spaces or control characters";
    }
  }
  return std::nullopt;
}

absl::StatusOr<std::unique_ptr<Store>> MakeStore(const StoreConfig& config, const Clock& clock,
                                                 obs::Metrics& metrics) {
  if (config.backend == StoreBackend::kMemory) return std::make_unique<MemoryStore>(clock);

  const auto timeout =
      std::max(std::chrono::milliseconds(1), std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::microseconds(config.timeout)));
  std::vector<std::string> cluster_nodes;
  std::vector<redis::ShardSpec> shards;
  if (config.backend == StoreBackend::kRedisCluster) cluster_nodes = config.nodes;
  if (config.backend == StoreBackend::kRedisSharded) {
    for (const ShardConfig& shard : config.shards) {
      redis::ShardSpec spec{.url = shard.url, .sentinels = {}, .master = shard.master};
      for (const std::string& s : shard.sentinels) {
        auto address = net::ParseHostPort(s, {.what = "sentinel"});
        if (!address.ok()) return address.status();
        spec.sentinels.push_back(*address);
      }
      shards.push_back(std::move(spec));
    }
  }
  auto created = RedisStore::Create(
      {.url = config.url,
       .cluster_nodes = std::move(cluster_nodes),
       .shards = std::move(shards),
       .timeout = timeout,
       .pool = config.pool,
       .key_prefix = config.key_prefix,
       .on_cached_rejection = [&cached = metrics.StoreCachedRejections(
                                   StoreBackendName(config.backend))] { cached.Increment(); },
       .functions = config.functions,
       .coalesce = config.coalesce,
       .on_script_call =
           [&calls = metrics.StoreCalls(StoreBackendName(config.backend))] { calls.Increment(); }});
  if (!created.ok()) return created.status();
  // Leased counting in front: items of leased rules are decided from slices, the others go
  // straight through (one scan of the items per check).
  return std::unique_ptr<Store>(std::make_unique<LeasedStore>(
      std::move(*created),
      LeasedStoreOptions{
          .consistency = config.consistency,
          .max_overshoot = config.max_overshoot,
          .timeout = timeout,
          .on_lease =
              [&metrics](std::string_view rule_id, LeaseEvent event) {
                metrics.Leases(rule_id.empty() ? "_descriptors" : rule_id, LeaseEventName(event))
                    .Increment();
              },
          .on_bound =
              [&metrics](std::string_view rule_id, int64_t bound) {
                metrics.LeaseOvershootBound(rule_id.empty() ? "_descriptors" : rule_id)
                    .Set(static_cast<double>(bound));
              }}));
}

}  // namespace sluice
