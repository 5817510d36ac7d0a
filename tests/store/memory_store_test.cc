#include "store/memory/memory_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "tests/store/store_contract.h"

namespace sluice {
namespace {

using testing::ChargeSync;
using testing::ContractLimit;
using testing::StoreContractTest;

constexpr Micros kSecond = kMicrosPerSecond;
constexpr Micros kNow = int64_t{1764000000} * kSecond;

ManualClock& ContractClock() {
  static ManualClock clock(kNow);
  return clock;
}

INSTANTIATE_TEST_SUITE_P(Memory, StoreContractTest,
                         ::testing::Values(testing::StoreFactory{
                             "memory",
                             [] { return std::make_unique<MemoryStore>(ContractClock()); },
                             [](Micros delta) { ContractClock().Advance(delta); }}),
                         [](const auto& info) { return info.param.name; });

Decision ChargeOne(MemoryStore& store, const std::string& key, const Limit& limit,
                   int64_t cost = 1) {
  ChargeItem item{key, &limit, cost};
  Decision d;
  store.ChargeNow({&item, 1}, {&d, 1});
  return d;
}

// Verifies that a key disappears once its state is as good as fresh, not before, and that
// sweeping gives the table's memory back.
TEST(MemoryStoreTest, IdleKeysExpireAndMemoryIsReclaimed) {
  ManualClock clock(kNow);
  MemoryStore store(clock, {.shards = 4});
  const Limit limit =
      *Limit::Create({.algorithm = Algorithm::kTokenBucket, .limit = 10, .window = 10 * kSecond});
  for (int i = 0; i < 20000; ++i) ChargeOne(store, "user:" + std::to_string(i), limit);
  EXPECT_EQ(store.size(), 20000u);
  const size_t full_bytes = store.MemoryBytes();

  clock.Advance(kSecond - 1);  // one token (1 s) refilled: not fresh yet
  EXPECT_EQ(store.Sweep(), 0u);
  EXPECT_EQ(store.size(), 20000u);
  EXPECT_EQ(store.shrinks(), 0u);

  clock.Advance(2 * kSecond);
  EXPECT_EQ(store.Sweep(), 20000u);
  EXPECT_EQ(store.size(), 0u);
  EXPECT_EQ(store.expirations(), 20000u);
  EXPECT_LT(store.MemoryBytes(), full_bytes / 10);
  EXPECT_EQ(store.shrinks(), 4u) << "each shard's table, once (what makes the server trim)";

  // An expired key starts fresh, exactly as if it had been kept.
  EXPECT_EQ(ChargeOne(store, "user:1", limit).remaining, 9);
}

// Verifies that reads (cost 0) and impossible costs never create keys.
TEST(MemoryStoreTest, ReadsDoNotCreateKeys) {
  ManualClock clock(kNow);
  MemoryStore store(clock);
  const Limit limit = ContractLimit(Algorithm::kGcra, 5);
  EXPECT_TRUE(ChargeOne(store, "k", limit, 0).allowed);
  EXPECT_TRUE(ChargeOne(store, "k", limit, 6).cost_exceeds_limit);
  EXPECT_EQ(store.size(), 0u);
}

// Verifies the max-key bound: the table never holds more than max_keys, it evicts the keys
// closest to expiry first (within the shard that needs room: one shard here, so the order is
// exact), and it keeps admitting new keys.
TEST(MemoryStoreTest, EnforcesMaxKeysByEvictingSoonestToExpire) {
  ManualClock clock(kNow);
  MemoryStore store(clock, {.shards = 1, .max_keys = 1000});
  const Limit short_limit =
      *Limit::Create({.algorithm = Algorithm::kFixedWindow, .limit = 5, .window = 10 * kSecond});
  const Limit long_limit =
      *Limit::Create({.algorithm = Algorithm::kFixedWindow, .limit = 5, .window = 3600 * kSecond});
  // 500 long-lived keys, fully used.
  for (int i = 0; i < 500; ++i) {
    for (int j = 0; j < 5; ++j) ChargeOne(store, "long:" + std::to_string(i), long_limit);
  }
  // 5000 short-lived keys push the store past its bound.
  for (int i = 0; i < 5000; ++i) ChargeOne(store, "short:" + std::to_string(i), short_limit);
  EXPECT_LE(store.size(), 1000u);
  EXPECT_GT(store.evictions(), 0u);
  // The long-lived keys survived: still rejected.
  int still_limited = 0;
  for (int i = 0; i < 500; ++i) {
    still_limited += ChargeOne(store, "long:" + std::to_string(i), long_limit, 0).remaining == 0;
  }
  EXPECT_EQ(still_limited, 500);
}

// Verifies the bound with many shards and threads: never more than max_keys (plus one key per
// racing thread), whatever the distribution over shards.
TEST(MemoryStoreTest, MaxKeysHoldsAcrossShardsAndThreads) {
  ManualClock clock(kNow);
  MemoryStore store(clock, {.shards = 48, .max_keys = 5000});
  const Limit limit = ContractLimit(Algorithm::kGcra, 5);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20000; ++i)
        ChargeOne(store, std::to_string(t) + ":" + std::to_string(i), limit);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_LE(store.size(), 5004u);
  EXPECT_GT(store.evictions(), 70000u);
}

// Verifies the per-key footprint stays small: a slot is 16 bytes of state, 8 of key hash,
// 4 of expiry and the algorithm.
TEST(MemoryStoreTest, SlotIsCompact) {
  ManualClock clock(kNow);
  MemoryStore store(clock, {.shards = 1});
  const Limit limit = ContractLimit(Algorithm::kSlidingWindowCounter, 100);
  for (int i = 0; i < 100000; ++i) ChargeOne(store, std::to_string(i), limit);
  const double per_key = static_cast<double>(store.MemoryBytes()) / 100000;
  // Table slots are 32 + 1 bytes; load between 7/16 and 7/8 bounds it near 33..76 bytes.
  EXPECT_LE(per_key, 80.0);
}

// A hash under which every key lands on one table entry; `check` tells the keys apart or not.
MemoryStoreOptions CollidingOptions(bool same_check) {
  return {.shards = 1, .hash_for_testing = [same_check](std::string_view key) {
            return MemoryKeyHash{.table = 42, .check = same_check ? 7u : uint32_t(key.size())};
          }};
}

// Verifies the memory store's Reset: it answers before returning, frees the key's entry (a
// log's entries too: AddressSanitizer would report them leaked) and counts it in resets(); a
// key without an entry, or whose table entry a colliding key holds (other check bits), erases
// nothing; an entry the key holds under another algorithm is erased.
TEST(MemoryStoreTest, ResetErasesTheKeysEntryOnly) {
  ManualClock clock(kNow);
  auto reset = [](MemoryStore& store, std::string_view key, const Limit& limit) {
    bool answered = false;
    store.Reset(key, limit, [&answered](absl::Status s) {
      EXPECT_TRUE(s.ok()) << s;
      answered = true;
    });
    EXPECT_TRUE(answered) << "before Reset returns";
  };
  const Limit log = ContractLimit(Algorithm::kSlidingWindowLog, 5);
  const Limit bucket = ContractLimit(Algorithm::kTokenBucket, 3);
  {
    MemoryStore store(clock);
    for (int i = 0; i < 3; ++i) ChargeOne(store, "a", log);
    ChargeOne(store, "b", log);
    ASSERT_EQ(store.size(), 2u);
    reset(store, "a", log);
    EXPECT_EQ(store.size(), 1u);
    EXPECT_EQ(store.resets(), 1u);
    EXPECT_EQ(ChargeOne(store, "a", log, 0).remaining, 5);
    EXPECT_EQ(ChargeOne(store, "b", log, 0).remaining, 4);
    reset(store, "never", log);
    EXPECT_EQ(store.size(), 1u);
    EXPECT_EQ(store.resets(), 1u);
  }
  {
    MemoryStore store(clock, CollidingOptions(/*same_check=*/false));
    ChargeOne(store, "long-key", bucket);
    reset(store, "k", bucket);  // the same table entry, other check bits: not its state
    EXPECT_EQ(store.size(), 1u);
    EXPECT_EQ(store.resets(), 0u);
    EXPECT_EQ(ChargeOne(store, "long-key", bucket, 0).remaining, 2);
    reset(store, "long-key", log);  // held under token_bucket: still the key's state
    EXPECT_EQ(store.size(), 0u);
    EXPECT_EQ(store.resets(), 1u);
  }
}

// Verifies that a sliding_window_log key and a token_bucket key on one table entry, charged
// alternately, each start fresh rather than read the other's state, and that the log's entries
// are freed only while the entry holds a log (AddressSanitizer would catch a bucket freed as a
// log, or a log leaked). With the same check bits, the algorithm alone tells them apart.
TEST(MemoryStoreTest, CollidingKeysOfDifferentAlgorithmsEachStartFresh) {
  for (const bool same_check : {true, false}) {
    SCOPED_TRACE(same_check ? "same check bits" : "different check bits");
    ManualClock clock(kNow);
    MemoryStore store(clock, CollidingOptions(same_check));
    const Limit log = ContractLimit(Algorithm::kSlidingWindowLog, 5);
    const Limit bucket = ContractLimit(Algorithm::kTokenBucket, 3);
    for (int i = 0; i < 6; ++i) {
      const Decision l = ChargeOne(store, "log-key", log);
      EXPECT_TRUE(l.allowed);
      EXPECT_EQ(l.remaining, 4) << i;
      // A read of the other key sees a fresh state too, and leaves the entry to its owner.
      EXPECT_EQ(ChargeOne(store, "bucket-key", bucket, 0).remaining, 3) << i;
      EXPECT_EQ(ChargeOne(store, "log-key", log, 0).remaining, 4) << i;
      const Decision b = ChargeOne(store, "bucket-key", bucket);
      EXPECT_TRUE(b.allowed);
      EXPECT_EQ(b.remaining, 2) << i;
      clock.Advance(1);
    }
    EXPECT_EQ(store.size(), 1u);  // one entry, taken over back and forth
  }                               // the destructor releases the entry as the bucket it last held
}

// Verifies that two keys of one algorithm whose 64-bit hashes collide are told apart by the
// check bits: neither is charged for the other.
TEST(MemoryStoreTest, CollidingKeysOfOneAlgorithmDoNotShareACounter) {
  ManualClock clock(kNow);
  MemoryStore store(clock, CollidingOptions(/*same_check=*/false));
  const Limit limit = ContractLimit(Algorithm::kFixedWindow, 2);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(ChargeOne(store, "a", limit).remaining, 1) << i;
    EXPECT_EQ(ChargeOne(store, "bb", limit).remaining, 1) << i;
  }
}

// Verifies the all-or-nothing refund when a request's own items collide: the log item's charge
// went with the state the bucket item replaced, so it is not refunded into the bucket's state
// (a wrong union member), and both report what is left.
TEST(MemoryStoreTest, RefundSkipsAnItemWhoseEntryACollidingItemTookOver) {
  ManualClock clock(kNow);
  MemoryStore store(clock, CollidingOptions(/*same_check=*/false));
  const Limit log = ContractLimit(Algorithm::kSlidingWindowLog, 5);
  const Limit bucket = ContractLimit(Algorithm::kTokenBucket, 3);
  // The third item rejects (3 tokens asked, 2 left), so the first two are refunded.
  std::vector<ChargeItem> items = {
      {"log-key", &log, 1}, {"bucket-key", &bucket, 1}, {"bucket-key", &bucket, 3}};
  std::vector<Decision> decisions(items.size());
  store.ChargeNow(items, decisions);
  EXPECT_TRUE(decisions[0].allowed);
  EXPECT_TRUE(decisions[1].allowed);
  EXPECT_FALSE(decisions[2].allowed);
  EXPECT_EQ(decisions[0].remaining, 5);  // read fresh: the entry is the bucket's now
  EXPECT_EQ(decisions[1].remaining, 3);  // refunded
  EXPECT_EQ(ChargeOne(store, "bucket-key", bucket, 0).remaining, 3);
  EXPECT_EQ(ChargeOne(store, "log-key", log).remaining, 4);
}

// Verifies the counters metrics read: every inserted key is live, evicted or expired, exactly.
TEST(MemoryStoreTest, EvictionsAndExpirationsAccountForEveryKey) {
  ManualClock clock(kNow);
  MemoryStore store(clock, {.shards = 1, .max_keys = 16});
  const Limit limit =
      *Limit::Create({.algorithm = Algorithm::kFixedWindow, .limit = 5, .window = 10 * kSecond});
  for (int i = 0; i < 16; ++i) ChargeOne(store, "a" + std::to_string(i), limit);
  EXPECT_EQ(store.evictions(), 0u);
  ChargeOne(store, "a16", limit);  // full, nothing expired: evicts 16 / 8 = 2 keys
  EXPECT_EQ(store.evictions(), 2u);
  EXPECT_EQ(store.expirations(), 0u);
  EXPECT_EQ(store.size(), 15u);

  clock.Advance(11 * kSecond);    // every "a" key expired
  ChargeOne(store, "b0", limit);  // 16 keys now: full
  ChargeOne(store, "b1", limit);  // full: sweeps the 15 expired keys and evicts none
  ChargeOne(store, "b2", limit);
  EXPECT_EQ(store.evictions(), 2u);
  EXPECT_EQ(store.expirations(), 15u);
  EXPECT_EQ(store.size(), 3u);
  EXPECT_EQ(store.size() + store.evictions() + store.expirations(), 17u + 3);  // keys inserted

  clock.Advance(20 * kSecond);
  EXPECT_EQ(store.Sweep(), 3u);
  EXPECT_EQ(store.expirations(), 18u);
}

// Verifies that many threads over many keys admit exactly limit per key.
TEST(MemoryStoreTest, ManyThreadsManyKeysAdmitExactly) {
  ManualClock clock(kNow);
  MemoryStore store(clock, {.shards = 8});
  const Limit limit = ContractLimit(Algorithm::kSlidingWindowLog, 20);
  constexpr int kKeys = 50, kThreads = 6, kRounds = 60;
  std::vector<std::atomic<int>> admitted(kKeys);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        for (int k = 0; k < kKeys; ++k) {
          const int key = (k + t * 7) % kKeys;
          if (ChargeOne(store, "k" + std::to_string(key), limit).allowed) ++admitted[key];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int k = 0; k < kKeys; ++k) EXPECT_EQ(admitted[k].load(), 20) << k;
}

}  // namespace
}  // namespace sluice
