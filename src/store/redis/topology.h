// Where the Redis store's keys live: one Redis (`redis`), a Redis Cluster (`redis_cluster`,
// cluster.h), or standalone shards under consistent hashing (`redis_sharded`, sharded.h).
// RedisStore groups a request's items by Topology::GroupOf and sends one script per group.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "store/redis/client.h"

namespace sluice::redis {

// The part of `key` Redis Cluster hashes: the text between the first '{' and the first '}'
// after it, when not empty; else the whole key.
std::string_view HashTag(std::string_view key);

class Topology {
 public:
  virtual ~Topology() = default;

  // "redis", "redis_cluster" or "redis_sharded": the label of metrics and /health.
  virtual std::string_view backend() const = 0;

  // Keys of one group can go to Redis in one script (one node; for Redis Cluster, one slot).
  // A key and every key sharing its hash tag are in the same group.
  virtual uint64_t GroupOf(std::string_view key) const = 0;

  // Sends `commands` (RESP, `replies` commands) for keys of `group` to the node that holds them,
  // following Redis Cluster redirections, all by `deadline` (one deadline for every hop: a
  // redirection does not buy more time). `done` runs exactly once, on a client thread (or on
  // the calling thread when no node can be asked). Thread-safe.
  virtual void Execute(uint64_t group, std::string commands, size_t replies, Deadline deadline,
                       Client::Callback done) = 0;

  // Whether every node was answering at last sight. Relaxed: advisory.
  virtual bool available() const = 0;
};

// One Redis server.
class SingleNode final : public Topology {
 public:
  explicit SingleNode(ClientOptions options) : client_(std::move(options)) {}

  std::string_view backend() const override { return "redis"; }
  uint64_t GroupOf(std::string_view) const override { return 0; }
  void Execute(uint64_t, std::string commands, size_t replies, Deadline deadline,
               Client::Callback done) override {
    client_.Execute(std::move(commands), replies, deadline, std::move(done));
  }
  bool available() const override { return client_.available(); }

 private:
  Client client_;
};

}  // namespace sluice::redis
