// `store.backend: redis_sharded`: standalone Redis shards under consistent hashing.
//
// - Each counter key (its hash tag: the counter's identity, so one user's, IP's or API key's
//   counter always lands on the same shard, and its two keys together) is hashed (XXH3) onto a
//   ring of 160 points per shard; its shard is the owner of the first point at or after it.
//   Adding an Nth shard moves about 1/N of the keys, all of them to the new shard. A shard's
//   points come from its name (its host:port, or its Sentinel master name), not its position,
//   so reordering the list moves nothing.
// - A shard is a redis:// URL, or a Sentinel-managed master: the master's address is asked of
//   the sentinels (SENTINEL get-master-addr-by-name) at start and every second, and followed at
//   once when a sentinel publishes +switch-master. Each shard has its own Client (`pool`
//   connections, pipelined); a failover closes its connections and reconnects to the new master.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "store/redis/cluster.h"
#include "store/redis/topology.h"

namespace sluice::redis {

struct ShardSpec {
  std::string url;                          // redis://...; or:
  std::vector<NodeAddress> sentinels = {};  // with `master`
  std::string master = {};
};

// Consistent hashing of keys onto named shards.
class HashRing {
 public:
  static constexpr int kPointsPerShard = 160;
  explicit HashRing(const std::vector<std::string>& shard_names);
  // The index (in shard_names) of the shard that owns `key`.
  size_t ShardOf(std::string_view key) const;

 private:
  std::vector<std::pair<uint64_t, uint32_t>> points_;  // (hash, shard), sorted by hash
};

class Sharded final : public Topology {
 public:
  // `client` is the template of every shard's client (URL shards replace its endpoint).
  static absl::StatusOr<std::unique_ptr<Sharded>> Create(std::vector<ShardSpec> shards,
                                                         ClientOptions client);
  ~Sharded() override;

  std::string_view backend() const override { return "redis_sharded"; }
  uint64_t GroupOf(std::string_view key) const override { return ring_.ShardOf(HashTag(key)); }
  void Execute(uint64_t group, std::string commands, size_t replies, Deadline deadline,
               Client::Callback done) override;
  bool available() const override;

 private:
  struct Shard;
  class SentinelWatch;
  Sharded(std::vector<std::unique_ptr<Shard>> shards, HashRing ring);

  std::vector<std::unique_ptr<Shard>> shards_;
  HashRing ring_;
};

}  // namespace sluice::redis
