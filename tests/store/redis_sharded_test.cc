// Sharding: Redis Cluster's slot function, the consistent-hash ring (adding a shard moves about
// 1/N of the keys, all to the new shard), and RedisStore over three real standalone
// redis-servers: the store contract suite, and all-or-nothing across shards (a rejection on
// one shard gives back what the others charged, exactly, under concurrency).
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "store/redis/cluster.h"
#include "store/redis/redis_store.h"
#include "store/redis/sharded.h"
#include "tests/store/redis_server.h"
#include "tests/store/store_contract.h"

namespace sluice {
namespace {

using std::chrono::milliseconds;
using testing::ChargeSync;
using testing::RedisServer;
using testing::StoreContractTest;

// Verifies the slot function on Redis Cluster's documented examples and hash-tag rules.
TEST(KeySlotTest, MatchesRedisClusterHashing) {
  EXPECT_EQ(redis::KeySlot("123456789"), 0x31C3 % 16384);  // CRC16/XMODEM check value
  EXPECT_EQ(redis::KeySlot("{user1000}.following"), redis::KeySlot("{user1000}.followers"));
  EXPECT_EQ(redis::KeySlot("{user1000}.following"), redis::KeySlot("user1000"));
  EXPECT_EQ(redis::HashTag("foo{}{bar}"), "foo{}{bar}");  // empty tag: the whole key
  EXPECT_EQ(redis::HashTag("foo{{bar}}zap"), "{bar");
  EXPECT_EQ(redis::HashTag("foo{bar}{zap}"), "bar");
  EXPECT_EQ(redis::HashTag("no tag"), "no tag");
  EXPECT_EQ(redis::KeySlot("sluice:{k}"), redis::KeySlot("sluice:{k}:log"));
}

std::vector<std::string> Names(int n) {
  std::vector<std::string> names;
  for (int i = 0; i < n; ++i) names.push_back("10.0.0." + std::to_string(i + 1) + ":6379");
  return names;
}

// Verifies consistent hashing: an even spread, and adding a fifth shard moves about a fifth of
// the keys, every one of them to the new shard; the order of the list does not matter.
TEST(HashRingTest, AddingAShardMovesAboutOneNthOfTheKeys) {
  constexpr int kKeys = 100000;
  const redis::HashRing four(Names(4));
  const redis::HashRing five(Names(5));
  std::vector<std::string> reversed = Names(4);
  std::reverse(reversed.begin(), reversed.end());
  const redis::HashRing four_reversed(reversed);
  std::vector<int> per_shard(4);
  int moved = 0;
  for (int i = 0; i < kKeys; ++i) {
    const std::string key = "rule:user_id:user" + std::to_string(i);
    const size_t before = four.ShardOf(key);
    const size_t after = five.ShardOf(key);
    ++per_shard[before];
    if (after != before) {
      ++moved;
      EXPECT_EQ(after, 4u) << key << " moved between old shards";
    }
    EXPECT_EQ(reversed[four_reversed.ShardOf(key)], Names(4)[before]);
  }
  for (int count : per_shard) {
    EXPECT_GT(count, kKeys * 15 / 100);
    EXPECT_LT(count, kKeys * 35 / 100);
  }
  const double fraction = static_cast<double>(moved) / kKeys;
  EXPECT_GT(fraction, 0.15);
  EXPECT_LT(fraction, 0.25);
  std::printf("adding a 5th shard moved %.1f%% of %d keys (ideal 20%%)\n", 100 * fraction, kKeys);
}

struct Shards {
  RedisServer a, b, c;
};
Shards& SharedShards() {
  static Shards shards;
  return shards;
}

std::unique_ptr<RedisStore> ShardedStore() {
  Shards& s = SharedShards();
  auto store =
      RedisStore::Create({.shards = {{.url = s.a.url()}, {.url = s.b.url()}, {.url = s.c.url()}},
                          .timeout = milliseconds(2000),
                          .connect_timeout = milliseconds(500),
                          .backoff_max = milliseconds(200)});
  EXPECT_TRUE(store.ok()) << store.status();
  return std::move(*store);
}

INSTANTIATE_TEST_SUITE_P(Sharded, StoreContractTest,
                         ::testing::Values(testing::StoreFactory{
                             "redis_sharded",
                             []() -> std::unique_ptr<Store> { return ShardedStore(); }}),
                         [](const auto& info) { return info.param.name; });

// Two counter keys that live on different shards.
std::pair<std::string, std::string> KeysOnTwoShards(RedisStore& store, const std::string& tag) {
  const std::string first = tag + ":0";
  for (int i = 1;; ++i) {
    const std::string other = tag + ":" + std::to_string(i);
    if (store.topology().GroupOf(store.StateKey(other)) !=
        store.topology().GroupOf(store.StateKey(first))) {
      return {first, other};
    }
  }
}

// Verifies all-or-nothing across shards for every algorithm: when the second shard rejects,
// the first gives back its charge, and reports its state without it.
TEST(RedisShardedTest, RejectionOnOneShardRefundsTheOthers) {
  auto store = ShardedStore();
  for (Algorithm a : kAllAlgorithms) {
    SCOPED_TRACE(AlgorithmName(a));
    const auto [wide_key, narrow_key] = KeysOnTwoShards(
        *store, "refund:" + std::to_string(static_cast<int>(a)) + ":" + std::to_string(::getpid()));
    const Limit wide = testing::ContractLimit(a, 5);
    const Limit narrow = testing::ContractLimit(a, 1);
    auto first = ChargeSync(*store, {{wide_key, &wide, 1}, {narrow_key, &narrow, 1}});
    ASSERT_TRUE(first.ok()) << first.status();
    EXPECT_TRUE((*first)[0].allowed && (*first)[1].allowed);
    EXPECT_EQ((*first)[0].remaining, 4);
    for (int i = 0; i < 3; ++i) {
      auto rejected = ChargeSync(*store, {{wide_key, &wide, 1}, {narrow_key, &narrow, 1}});
      ASSERT_TRUE(rejected.ok()) << rejected.status();
      EXPECT_FALSE((*rejected)[1].allowed);
      EXPECT_TRUE((*rejected)[0].allowed) << "the wide key alone would have admitted";
      EXPECT_EQ((*rejected)[0].remaining, 4) << "its charge was given back";
    }
    auto read = ChargeSync(*store, {{wide_key, &wide, 0}});
    ASSERT_TRUE(read.ok());
    EXPECT_EQ((*read)[0].remaining, 4);
  }
}

// Verifies exactness across shards under contention: 8 threads send requests that charge a
// roomy key on one shard and a tight one (limit 100) on another. Exactly 100 are admitted, and
// the roomy key has counted exactly those 100: every rejected request's charge was given back.
TEST(RedisShardedTest, ConcurrentCrossShardRequestsAreAllOrNothing) {
  auto store = ShardedStore();
  // Window algorithms: their count does not refill while the test runs, so it can be read exactly.
  for (Algorithm a :
       {Algorithm::kFixedWindow, Algorithm::kSlidingWindowCounter, Algorithm::kSlidingWindowLog}) {
    SCOPED_TRACE(AlgorithmName(a));
    const auto [roomy_key, tight_key] = KeysOnTwoShards(
        *store, "race:" + std::to_string(static_cast<int>(a)) + ":" + std::to_string(::getpid()));
    const Limit roomy = testing::ContractLimit(a, 100000);
    const Limit tight = testing::ContractLimit(a, 100);
    std::atomic<int> admitted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, roomy_key = roomy_key, tight_key = tight_key] {
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
}

// Verifies that a shard that is down fails the requests that need it (the limiter's policy
// answers), while keys on the other shards are served, and the live shards' charges of a
// failed request are given back.
TEST(RedisShardedTest, ADeadShardFailsOnlyItsKeys) {
  RedisServer a, b;
  auto created = RedisStore::Create({.shards = {{.url = a.url()}, {.url = b.url()}},
                                     .timeout = milliseconds(500),
                                     .connect_timeout = milliseconds(300),
                                     .backoff_max = milliseconds(100)});
  ASSERT_TRUE(created.ok());
  RedisStore& store = **created;
  const auto [key_a, key_b] = KeysOnTwoShards(store, "dead");
  const Limit limit = testing::ContractLimit(Algorithm::kFixedWindow, 10);
  ASSERT_TRUE(ChargeSync(store, {{key_a, &limit, 1}, {key_b, &limit, 1}}).ok());
  const uint64_t shard_b = store.topology().GroupOf(store.StateKey(key_b));
  RedisServer& dead = shard_b == 0 ? a : b;
  const std::string& live_key = key_a;
  dead.Stop();
  EXPECT_FALSE(ChargeSync(store, {{key_a, &limit, 1}, {key_b, &limit, 1}}).ok());
  // The live shard's charge of that failed request is given back, without the caller waiting.
  for (int i = 0; i < 100; ++i) {
    auto read = ChargeSync(store, {{live_key, &limit, 0}});
    ASSERT_TRUE(read.ok()) << read.status();
    if ((*read)[0].remaining == 9) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  auto read = ChargeSync(store, {{live_key, &limit, 0}});
  ASSERT_TRUE(read.ok());
  EXPECT_EQ((*read)[0].remaining, 9);
}

// Verifies that a reset goes to the shard that holds the key, deletes it there (both keys of a
// sliding_window_log), and leaves the other shard's key alone; and that with that shard dead,
// resetting its key fails (never hangs) while a key on a live shard resets.
TEST(RedisShardedTest, ResetGoesToTheKeysShard) {
  RedisServer a, b;
  auto created = RedisStore::Create({.shards = {{.url = a.url()}, {.url = b.url()}},
                                     .timeout = milliseconds(500),
                                     .connect_timeout = milliseconds(300),
                                     .backoff_max = milliseconds(100)});
  ASSERT_TRUE(created.ok());
  RedisStore& store = **created;
  const auto [key_a, key_b] = KeysOnTwoShards(store, "reset");
  RedisServer* server_of[] = {&a, &b};
  RedisServer& shard_a = *server_of[store.topology().GroupOf(store.StateKey(key_a))];
  RedisServer& shard_b = *server_of[store.topology().GroupOf(store.StateKey(key_b))];
  const Limit limit = testing::ContractLimit(Algorithm::kSlidingWindowLog, 1);
  ASSERT_TRUE(ChargeSync(store, {{key_a, &limit, 1}, {key_b, &limit, 1}}).ok());
  auto exists = [](RedisServer& server, const std::string& key) {
    return server.Command({"EXISTS", key})->integer;
  };
  ASSERT_EQ(exists(shard_a, store.LogKey(key_a)), 1);
  ASSERT_EQ(exists(shard_b, store.StateKey(key_b)), 1);

  ASSERT_TRUE(testing::ResetSync(store, key_a, limit).ok());
  EXPECT_EQ(exists(shard_a, store.StateKey(key_a)), 0);
  EXPECT_EQ(exists(shard_a, store.LogKey(key_a)), 0);
  EXPECT_EQ(exists(shard_b, store.StateKey(key_b)), 1);
  EXPECT_EQ(exists(shard_b, store.LogKey(key_b)), 1);
  EXPECT_TRUE((*ChargeSync(store, {{key_a, &limit, 1}}))[0].allowed);
  EXPECT_FALSE((*ChargeSync(store, {{key_b, &limit, 1}}))[0].allowed);

  shard_b.Stop();
  EXPECT_FALSE(testing::ResetSync(store, key_b, limit).ok());  // aborts after 10 s: no hang
  EXPECT_TRUE(testing::ResetSync(store, key_a, limit).ok());
}

}  // namespace
}  // namespace sluice
