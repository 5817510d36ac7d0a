// `store.backend: redis_cluster`: a Redis Cluster, discovered from seed nodes.
//
// - Slot map: CLUSTER SLOTS, asked of the seeds and of every node seen, on a background thread
//   with a synchronous hiredis connection (500 ms timeouts): at start, every 10 s, and at once
//   (at most every 200 ms) when a request is redirected, fails to reach its node, or finds the
//   cluster down. A Redis Cluster that is down at start is found when it comes up.
// - Routing: a group is a hash slot (CRC16 of the key's hash tag, as Redis computes it): one
//   script per slot, on the slot's master. Each master gets its own Client (`pool` connections,
//   pipelined), made the first time a slot points at it, and dropped once a refreshed slot map
//   no longer names it (after the requests it has in flight are answered).
// - Redirections: MOVED updates the slot and sends the same commands to the node named (and
//   asks for a fresh map); ASK sends them to the node named once, after ASKING. At most 5
//   redirections per request, all within the request's one deadline.
// - Failover: the old master's connections fail (its circuit opens, so requests fail fast);
//   the map is refreshed until the cluster names the promoted replica, and requests follow; the
//   old master's client, no longer in the map, is dropped instead of reconnecting forever.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "base/mutex.h"
#include "store/redis/topology.h"

namespace sluice::redis {

inline constexpr int kClusterSlots = 16384;

// The hash slot of `key`: CRC16 (XMODEM) of its hash tag, modulo 16384.
int KeySlot(std::string_view key);

class Cluster final : public Topology {
 public:
  // `seeds`: host:port of one or more nodes. `client` is the template of every node's client
  // (its endpoint's host and port are replaced per node). Never blocks on Redis.
  Cluster(std::vector<NodeAddress> seeds, ClientOptions client);
  ~Cluster() override;

  std::string_view backend() const override { return "redis_cluster"; }
  uint64_t GroupOf(std::string_view key) const override { return KeySlot(key); }
  void Execute(uint64_t group, std::string commands, size_t replies, Deadline deadline,
               Client::Callback done) override;
  bool available() const override;

  // Blocks until a slot map covering every slot is known, or `timeout` passes (tests).
  bool WaitForSlots(std::chrono::milliseconds timeout);
  // Asks for the slot map to be read again soon.
  void RequestRefresh();
  // The nodes that have a client (host:port), those being drained after leaving the map
  // included (tests).
  std::vector<std::string> NodeClients() const;

 private:
  struct SlotMap {
    std::vector<NodeAddress> masters;
    std::array<int16_t, kClusterSlots> node{};  // index into masters, -1: no master
  };
  struct Redirect;

  // One request's way through redirections.
  struct Hop {
    int slot;
    std::string commands;
    size_t replies;
    Deadline deadline;
    int redirects;
  };

  std::shared_ptr<Client> ClientFor(const NodeAddress& address);
  void Send(const NodeAddress& address, bool asking, Hop hop, Client::Callback done);
  void OnReply(Hop hop, Client::Callback done, absl::StatusOr<std::vector<Reply>> result);
  void Discover();  // the background thread
  bool Refresh();   // one CLUSTER SLOTS round; true if a map was installed
  void SetSlot(int slot, const NodeAddress& address);
  // Moves the clients of nodes `map` does not name to retired_. Holds mu_.
  void RetireClientsNotIn(const SlotMap& map) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Destroys the retired clients nobody uses and that have nothing in flight (discovery thread:
  // never a client's own thread, which a Client cannot join).
  void ReapRetired();

  const ClientOptions client_options_;
  const std::vector<NodeAddress> seeds_;

  mutable Mutex mu_;
  std::shared_ptr<const SlotMap> map_ ABSL_GUARDED_BY(mu_);
  // Shared: a request being sent holds its node's client while the discovery thread may retire
  // it. Only the discovery thread (or the destructor) drops the last reference.
  absl::flat_hash_map<std::string, std::shared_ptr<Client>> clients_ ABSL_GUARDED_BY(mu_);
  // Nodes no longer in the map, draining: destroyed once idle (ReapRetired).
  std::vector<std::pair<std::string, std::shared_ptr<Client>>> retired_ ABSL_GUARDED_BY(mu_);
  bool refresh_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  CondVar cv_;
  std::atomic<bool> down_{true};  // no complete map, or the last request found no node
  std::thread discovery_;
};

}  // namespace sluice::redis
