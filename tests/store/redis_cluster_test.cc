// RedisStore on a real Redis Cluster (3 masters + 3 replicas, started by the test): the store
// contract suite, all-or-nothing across slots under contention, and a slot migrating under it
// (ASK while it migrates, MOVED once it has moved), followed without an error.
#include "tests/store/redis_cluster.h"

#include <gtest/gtest.h>

#include <atomic>
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

std::unique_ptr<RedisStore> ClusterStore() {
  auto store = RedisStore::Create({.cluster_nodes = SharedCluster().seeds(),
                                   .timeout = milliseconds(2000),
                                   .connect_timeout = milliseconds(500),
                                   .backoff_max = milliseconds(200)});
  EXPECT_TRUE(store.ok()) << store.status();
  auto* cluster = dynamic_cast<redis::Cluster*>(&(*store)->topology());
  EXPECT_NE(cluster, nullptr);
  EXPECT_TRUE(cluster->WaitForSlots(milliseconds(10000))) << "no slot map";
  return std::move(*store);
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

}  // namespace
}  // namespace sluice
