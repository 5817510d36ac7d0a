// RedisStore on a real Redis Cluster (3 masters + 3 replicas, started by the test): the store
// contract suite, all-or-nothing across slots under contention, a slot migrating under it
// (ASK while it migrates, MOVED once it has moved), followed without an error; one deadline per
// check however many nodes it visits; and a failed-over master's client dropped.
#include "tests/store/redis_cluster.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "store/redis/cluster.h"
#include "store/redis/redis_store.h"
#include "tests/store/store_contract.h"

namespace sluice {
namespace {

using std::chrono::milliseconds;
using testing::ChargeSync;
using testing::RedisCluster;
using testing::StoreContractTest;

RedisCluster& SharedCluster() {
  static RedisCluster cluster;
  return cluster;
}

std::unique_ptr<RedisStore> ClusterStore(milliseconds timeout = milliseconds(2000)) {
  auto store = RedisStore::Create({.cluster_nodes = SharedCluster().seeds(),
                                   .timeout = timeout,
                                   .connect_timeout = milliseconds(500),
                                   .backoff_max = milliseconds(200)});
  EXPECT_TRUE(store.ok()) << store.status();
  auto* cluster = dynamic_cast<redis::Cluster*>(&(*store)->topology());
  EXPECT_NE(cluster, nullptr);
  EXPECT_TRUE(cluster->WaitForSlots(milliseconds(10000))) << "no slot map";
  return std::move(*store);
}

redis::Cluster& ClusterOf(RedisStore& store) {
  return dynamic_cast<redis::Cluster&>(store.topology());
}

INSTANTIATE_TEST_SUITE_P(Cluster, StoreContractTest,
                         ::testing::Values(testing::StoreFactory{
                             "redis_cluster",
                             []() -> std::unique_ptr<Store> { return ClusterStore(); }}),
                         [](const auto& info) { return info.param.name; });

// Verifies the store's slot function is Redis's, on the keys it writes.
TEST(RedisClusterTest, StoreKeysHashAsRedisDoes) {
  auto store = ClusterStore();
  for (int i = 0; i < 50; ++i) {
    const std::string key = store->StateKey("rule:user_id:u" + std::to_string(i));
    EXPECT_EQ(redis::KeySlot(key), RedisCluster::KeySlot(key));
    EXPECT_EQ(redis::KeySlot(key),
              redis::KeySlot(store->LogKey("rule:user_id:u" + std::to_string(i))));
  }
}

// Verifies exactness across slots under contention: 8 threads send requests that charge a
// roomy counter and a tight one (limit 100) in different slots. Exactly 100 are admitted, and
// the roomy counter has counted exactly those 100.
TEST(RedisClusterTest, ConcurrentCrossSlotRequestsAreAllOrNothing) {
  auto store = ClusterStore();
  const std::string tag = "cross:" + std::to_string(::getpid());
  const std::string roomy_key = tag + ":roomy";
  std::string tight_key;
  for (int i = 0;; ++i) {
    tight_key = tag + ":tight:" + std::to_string(i);
    const int a = redis::KeySlot(store->StateKey(roomy_key));
    const int b = redis::KeySlot(store->StateKey(tight_key));
    if (SharedCluster().MasterOfSlot(a) != SharedCluster().MasterOfSlot(b)) break;
  }
  const Limit roomy = testing::ContractLimit(Algorithm::kSlidingWindowLog, 100000);
  const Limit tight = testing::ContractLimit(Algorithm::kFixedWindow, 100);
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 40; ++i) {
        auto d = ChargeSync(*store, {{roomy_key, &roomy, 1}, {tight_key, &tight, 1}});
        ASSERT_TRUE(d.ok()) << d.status();
        if ((*d)[0].allowed && (*d)[1].allowed) ++admitted;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(admitted.load(), 100);
  auto read = ChargeSync(*store, {{roomy_key, &roomy, 0}});
  ASSERT_TRUE(read.ok());
  EXPECT_EQ((*read)[0].remaining, 100000 - 100);
}

int64_t Integer(const testing::SyncReply& r) {
  return r != nullptr && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
}

std::string NodeId(int port) {
  return RedisCluster::Text(RedisCluster::Command(port, {"CLUSTER", "MYID"}));
}

// Verifies redirections: a slot migrates from one master to another while the store holds the
// old slot map. While it migrates, the old master answers ASK (the key is not there) and the
// store asks the new one (after ASKING); once it has moved, MOVED sends the store to the new
// owner. The counter counts on across both, with no error.
TEST(RedisClusterTest, FollowsASlotMigrationThroughAskAndMoved) {
  RedisCluster& cluster = SharedCluster();
  auto store = ClusterStore();
  const Limit limit = testing::ContractLimit(Algorithm::kFixedWindow, 5);
  // A counter in a slot no other test has written to.
  const std::string key = "migrating:" + std::to_string(::getpid());
  const std::string state_key = store->StateKey(key);
  const int slot = redis::KeySlot(state_key);
  const int from = cluster.MasterOfSlot(slot);
  int to = -1;
  for (int port : cluster.MasterPorts()) {
    if (port != from) to = port;
  }
  ASSERT_GT(to, 0);
  ASSERT_EQ(
      Integer(RedisCluster::Command(from, {"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)})),
      0);
  const std::string from_id = NodeId(from);
  const std::string to_id = NodeId(to);
  const std::string s = std::to_string(slot);
  RedisCluster::Command(to, {"CLUSTER", "SETSLOT", s, "IMPORTING", from_id});
  RedisCluster::Command(from, {"CLUSTER", "SETSLOT", s, "MIGRATING", to_id});

  // Migrating: ASK.
  for (int expected_remaining : {4, 3}) {
    auto d = ChargeSync(*store, {{key, &limit, 1}});
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_TRUE((*d)[0].allowed);
    EXPECT_EQ((*d)[0].remaining, expected_remaining);
  }

  // Moved: the new owner is told first, then the old one, then the rest.
  RedisCluster::Command(to, {"CLUSTER", "SETSLOT", s, "NODE", to_id});
  RedisCluster::Command(from, {"CLUSTER", "SETSLOT", s, "NODE", to_id});
  for (int port : cluster.MasterPorts()) {
    if (port != from && port != to)
      RedisCluster::Command(port, {"CLUSTER", "SETSLOT", s, "NODE", to_id});
  }
  auto d = ChargeSync(*store, {{key, &limit, 1}});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)[0].remaining, 2) << "the count went on at the new owner";
  EXPECT_EQ(Integer(RedisCluster::Command(to, {"EXISTS", state_key})), 1);
}

// Moves `slot` from one master to another for good: the new owner first, then the old, then
// the rest (as the migration test does), so the slot map stays consistent.
void FinishMigration(RedisCluster& cluster, int slot, int from, int to) {
  const std::string s = std::to_string(slot);
  const std::string to_id = NodeId(to);
  RedisCluster::Command(to, {"CLUSTER", "SETSLOT", s, "NODE", to_id});
  RedisCluster::Command(from, {"CLUSTER", "SETSLOT", s, "NODE", to_id});
  for (int port : cluster.MasterPorts()) {
    if (port != from && port != to)
      RedisCluster::Command(port, {"CLUSTER", "SETSLOT", s, "NODE", to_id});
  }
}

// Verifies one deadline per check, carried across a redirection (CONTRACT §7). A slot migrates
// from A to B, so A answers ASK. A is kept busy (a Lua script spinning for 70 % of the timeout;
// a paused node would still answer ASK at once, as Redis redirects before it postpones) and
// answers the check's ASK after about 60 % of the timeout; B is paused (CLIENT PAUSE) for longer
// than the test. The check fails with DEADLINE_EXCEEDED about one timeout after it started: the
// hop to B gets what is left of the check's deadline, not a fresh timeout (which made the check
// last about 1.6 timeouts, and up to 5 redirections could each add one).
TEST(RedisClusterTest, ADeadlineSpansRedirections) {
  RedisCluster& cluster = SharedCluster();
  constexpr milliseconds kTimeout(800);
  auto store = ClusterStore(kTimeout);
  const Limit limit = testing::ContractLimit(Algorithm::kFixedWindow, 100);
  const std::string key = "deadline:" + std::to_string(::getpid());
  const int slot = redis::KeySlot(store->StateKey(key));
  const int from = cluster.MasterOfSlot(slot);
  int to = -1;
  for (int port : cluster.MasterPorts()) {
    if (port != from) to = port;
  }
  ASSERT_GT(to, 0);
  const std::string s = std::to_string(slot);
  RedisCluster::Command(to, {"CLUSTER", "SETSLOT", s, "IMPORTING", NodeId(from)});
  RedisCluster::Command(from, {"CLUSTER", "SETSLOT", s, "MIGRATING", NodeId(to)});
  // Through ASK once while both answer: the store has its connections to both nodes.
  auto warm = ChargeSync(*store, {{key, &limit, 1}});
  ASSERT_TRUE(warm.ok()) << warm.status();

  const milliseconds kToPause = kTimeout * 2;
  const auto paused_at = std::chrono::steady_clock::now();
  ASSERT_EQ(RedisCluster::Text(RedisCluster::Command(
                to, {"CLIENT", "PAUSE", std::to_string(kToPause.count()), "ALL"})),
            "OK");
  // Busy for 70 % of the timeout (well under cluster-node-timeout: no failover).
  const milliseconds kBusy = kTimeout * 7 / 10;
  constexpr std::string_view kSpin = R"(
    local t = redis.call('TIME')
    local start = t[1] * 1000000 + t[2]
    repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start >= tonumber(ARGV[1])
    return 1)";
  std::thread busy([&] {
    RedisCluster::Command(from,
                          {"EVAL", std::string(kSpin), "0", std::to_string(kBusy.count() * 1000)});
  });
  std::this_thread::sleep_for(kTimeout / 8);  // the script is running
  const auto start = std::chrono::steady_clock::now();
  std::vector<Decision> decisions(1);
  std::promise<absl::Status> done;
  ChargeItem item{key, &limit, 1};
  store->Charge({&item, 1}, decisions, [&](absl::Status st) { done.set_value(std::move(st)); });
  auto result = done.get_future();
  ASSERT_EQ(result.wait_for(std::chrono::seconds(10)), std::future_status::ready) << "a hang";
  const absl::Status status = result.get();
  const auto took =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_GE(took, kTimeout - milliseconds(50)) << "B never answers";
  // One timeout, plus the deadline check's granularity (timeout/8) and slack for a loaded
  // machine; well short of the 1.6 timeouts that a fresh timeout per hop gives.
  EXPECT_LT(took, kTimeout * 135 / 100) << "the hop to B got a fresh timeout";
  std::printf("the check failed after %lld ms (timeout %lld ms)\n",
              static_cast<long long>(took.count()), static_cast<long long>(kTimeout.count()));

  // Let the script and the pause run out, then complete the migration so the cluster is
  // consistent again.
  busy.join();
  std::this_thread::sleep_until(paused_at + kToPause + milliseconds(100));
  FinishMigration(cluster, slot, from, to);
  bool served = false;
  for (int i = 0; i < 50 && !served; ++i) {
    served = ChargeSync(*store, {{key, &limit, 0}}).ok();
    if (!served) std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_TRUE(served) << "the store serves the slot again after the pauses";
}

// Connections of ordinary clients (not the replication link, not the one asking) on a node.
int ClientConnections(int port) {
  std::istringstream lines(RedisCluster::Text(RedisCluster::Command(port, {"CLIENT", "LIST"})));
  int n = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.find(" flags=N ") != std::string::npos &&
        line.find("cmd=client|list") == std::string::npos) {
      ++n;
    }
  }
  return n;
}

// Verifies that after a failover the old master's client is dropped once the slot map no
// longer names it: no client for it is left in the store, and when the old master comes back
// (as a replica) nothing of the store's connects to it. Before, its client reconnected and
// probed it forever. Last of its suite: it changes the shared cluster's masters (and waits
// until the cluster is healthy again).
TEST(RedisClusterTest, DropsTheClientOfAFailedOverMaster) {
  RedisCluster& cluster = SharedCluster();
  auto store = ClusterStore(milliseconds(500));
  redis::Cluster& topology = ClusterOf(*store);
  const Limit limit = testing::ContractLimit(Algorithm::kFixedWindow, 100);
  const std::string key = "failover:" + std::to_string(::getpid());
  const int slot = redis::KeySlot(store->StateKey(key));
  ASSERT_TRUE(ChargeSync(*store, {{key, &limit, 1}}).ok());
  const int old_master = cluster.MasterOfSlot(slot);
  const std::string old_address = "127.0.0.1:" + std::to_string(old_master);
  auto has_client = [&](const std::string& address) {
    const auto nodes = topology.NodeClients();
    return std::find(nodes.begin(), nodes.end(), address) != nodes.end();
  };
  ASSERT_TRUE(has_client(old_address));

  ASSERT_EQ(cluster.KillMasterOfSlot(slot), old_master);
  const int new_master = cluster.WaitForNewMaster(slot, old_master);
  // The store follows the promoted replica (hang detector: the map is read every 200 ms while
  // requests fail).
  bool followed = false;
  for (int i = 0; i < 300 && !followed; ++i) {
    followed = ChargeSync(*store, {{key, &limit, 1}}).ok();
    if (!followed) std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_TRUE(followed) << "the store did not follow the failover to " << new_master;
  EXPECT_TRUE(has_client("127.0.0.1:" + std::to_string(new_master)));
  bool dropped = false;
  for (int i = 0; i < 100 && !dropped; ++i) {
    dropped = !has_client(old_address);
    if (!dropped) std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_TRUE(dropped) << "the old master's client is still there";

  // The old master comes back as a replica: nothing of the store's reconnects to it (the
  // client's reconnection backoff is at most 200 ms here).
  cluster.Restart(old_master);
  std::this_thread::sleep_for(milliseconds(1000));
  EXPECT_EQ(ClientConnections(old_master), 0);
  EXPECT_FALSE(has_client(old_address));
  EXPECT_TRUE(ChargeSync(*store, {{key, &limit, 1}}).ok());
}

// Verifies that a reset on a Redis Cluster no node of which answers fails with an error
// (no slot map: UNAVAILABLE), never hangs.
TEST(RedisClusterTest, ResetWithNoNodeAnsweringFails) {
  auto store =
      RedisStore::Create({.cluster_nodes = {"127.0.0.1:" + std::to_string(testing::FreePort())},
                          .timeout = milliseconds(200),
                          .connect_timeout = milliseconds(200),
                          .backoff_max = milliseconds(100)});
  ASSERT_TRUE(store.ok()) << store.status();
  const Limit limit = testing::ContractLimit(Algorithm::kGcra, 5);
  // ResetSync aborts the test after 10 s: a hang fails it.
  const absl::Status s = testing::ResetSync(**store, "nobody-home", limit);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
}

}  // namespace
}  // namespace sluice
