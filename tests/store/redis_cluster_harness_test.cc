// The Redis Cluster harness itself (tests/store/redis_cluster.h): the cluster forms, KeySlot agrees
// with CLUSTER KEYSLOT, and a killed master is replaced by its replica. No Sluice code here.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "tests/store/redis_cluster.h"

namespace sluice::testing {
namespace {

using std::chrono::seconds;

// Hang detectors for a loaded machine, not speed checks.
constexpr seconds kFailoverTimeout{60};

std::string Status(const SyncReply& r) {
  return r != nullptr && r->type == REDIS_REPLY_STATUS ? RedisCluster::Text(r) : "";
}

class RedisClusterHarnessTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { cluster_ = new RedisCluster(); }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  static RedisCluster* cluster_;
};
RedisCluster* RedisClusterHarnessTest::cluster_ = nullptr;

TEST_F(RedisClusterHarnessTest, FormsAHealthyClusterOfThreeMastersWithAReplicaEach) {
  const auto seeds = cluster_->seeds();
  ASSERT_EQ(seeds.size(), 6u);
  EXPECT_EQ(std::set<std::string>(seeds.begin(), seeds.end()).size(), 6u);
  for (int port : cluster_->ports()) {
    const std::string info = RedisCluster::Text(RedisCluster::Command(port, {"CLUSTER", "INFO"}));
    EXPECT_NE(info.find("cluster_state:ok"), std::string::npos) << port << ": " << info;
    EXPECT_NE(info.find("cluster_slots_assigned:16384"), std::string::npos) << port;
    EXPECT_NE(info.find("cluster_known_nodes:6"), std::string::npos) << port;
  }
  const auto masters = cluster_->MasterPorts();
  EXPECT_EQ(masters.size(), 3u);

  // Each slot is served by one of the masters, which takes a write to it without a redirect.
  for (const std::string key : {"a", "b", "c", "{user:1}.x", "counter:42"}) {
    const int master = cluster_->MasterOfSlot(RedisCluster::KeySlot(key));
    EXPECT_NE(std::find(masters.begin(), masters.end(), master), masters.end()) << key;
    EXPECT_EQ(Status(RedisCluster::Command(master, {"SET", key, "1"})), "OK") << key;
  }
}

TEST_F(RedisClusterHarnessTest, KeySlotMatchesClusterKeyslot) {
  EXPECT_EQ(RedisCluster::Crc16("123456789"), 0x31C3);  // the CRC16/XMODEM check value
  EXPECT_EQ(RedisCluster::KeySlot("{user1000}.following"), RedisCluster::KeySlot("user1000"));
  EXPECT_EQ(RedisCluster::KeySlot("foo{}{bar}"), RedisCluster::Crc16("foo{}{bar}") % 16384);

  std::vector<std::string> keys = {
      "",           "{",          "}",           "{}",
      "}{",         "{a}",        "{a",          "a}",
      "foo{}{bar}", "foo{{bar}}", "foo{bar}{z}", "{user1000}.following",
      "x{}",        "{{}}",       "a{b}c{d}e",   std::string("\0\xff{\x80}", 5)};
  for (int i = 0; keys.size() < 200; ++i) {
    keys.push_back("key:" + std::to_string(i));
    keys.push_back("{tenant:" + std::to_string(i % 7) + "}:rule:" + std::to_string(i));
    keys.push_back("sluice:" + std::to_string(i * 7919) + "{}" + std::to_string(i));
  }
  ASSERT_GE(keys.size(), 200u);
  const int port = cluster_->ports().front();
  for (const auto& key : keys) {
    const SyncReply r = RedisCluster::Command(port, {"CLUSTER", "KEYSLOT", key});
    ASSERT_NE(r, nullptr);
    ASSERT_EQ(r->type, REDIS_REPLY_INTEGER) << key;
    EXPECT_EQ(RedisCluster::KeySlot(key), r->integer) << "key: " << key;
  }
}

TEST(RedisClusterHarnessFailoverTest, AKilledMasterIsReplacedByItsReplica) {
  RedisCluster cluster;
  const std::string key = "{failover}:counter";
  const int slot = RedisCluster::KeySlot(key);
  const int old_port = cluster.MasterOfSlot(slot);
  ASSERT_GT(old_port, 0);
  ASSERT_EQ(Status(RedisCluster::Command(old_port, {"SET", key, "before"})), "OK");

  EXPECT_EQ(cluster.KillMasterOfSlot(slot), old_port);
  EXPECT_FALSE(cluster.alive(old_port));
  const int new_port = cluster.WaitForNewMaster(slot, old_port, kFailoverTimeout);
  EXPECT_NE(new_port, old_port);
  EXPECT_EQ(cluster.MasterOfSlot(slot), new_port);
  EXPECT_EQ(Status(RedisCluster::Command(new_port, {"SET", key, "after"})), "OK");
  EXPECT_EQ(RedisCluster::Text(RedisCluster::Command(new_port, {"GET", key})), "after");

  // Started again, the old master rejoins as a replica.
  cluster.Restart(old_port, kFailoverTimeout);
  const SyncReply role = RedisCluster::Command(old_port, {"ROLE"});
  ASSERT_NE(role, nullptr);
  ASSERT_EQ(role->type, REDIS_REPLY_ARRAY);
  EXPECT_EQ(std::string(role->element[0]->str, role->element[0]->len), "slave");
  EXPECT_EQ(cluster.MasterOfSlot(slot), new_port);
}

}  // namespace
}  // namespace sluice::testing
