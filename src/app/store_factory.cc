#include "app/store_factory.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "net/host_port.h"
#include "store/memory/memory_store.h"
#include "store/redis/redis_store.h"

namespace sluice::app {

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
                                   StoreBackendName(config.backend))] { cached.Increment(); }});
  if (!created.ok()) return created.status();
  return std::unique_ptr<Store>(std::move(*created));
}

}  // namespace sluice::app
