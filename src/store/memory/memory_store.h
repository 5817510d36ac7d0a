// The embedded store: per-key state in sharded hash maps inside the process.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "base/mutex.h"
#include "core/algorithm_state.h"
#include "core/time.h"
#include "store/store.h"

namespace sluice {

// A counter key's identity in the memory store: two independent hashes of its bytes.
struct MemoryKeyHash {
  uint64_t table = 0;  // picks the shard and the table entry
  uint32_t check = 0;  // its low 24 bits are kept in the entry to tell colliding keys apart
};

struct MemoryStoreOptions {
  // Independent locks. Many more than cores keeps two threads from meeting on one lock unless
  // they want the same key. Not a power of two on purpose: see docs/memory-store.md on memory.
  size_t shards = 48;
  // Beyond this many keys the store evicts (policy in docs/memory-store.md).
  size_t max_keys = 10'000'000;
  // Tests only: replaces the seeded hash of a counter key, so that a test can make two keys
  // collide. Called concurrently. Empty: XXH3-128 with a random per-process seed.
  std::function<MemoryKeyHash(std::string_view key)> hash_for_testing = nullptr;
};

// Thread-safe. Keys are identified by a seeded XXH3-128 hash of ChargeItem::key (the key bytes
// are not kept): 64 bits find the entry, 24 more and the algorithm are compared with what the
// entry holds, and a mismatch (a collision) starts the entry afresh for the new key instead of
// handing it another key's state. 32 bytes a key in the table plus the hash table's control byte
// and spare capacity. A key expires once its state is as good as fresh (Decision::reset_after has
// passed), so dropping it changes no decision; Sweep() reclaims expired keys and memory.
class MemoryStore final : public Store {
 public:
  explicit MemoryStore(const Clock& clock, MemoryStoreOptions options = {});
  ~MemoryStore() override;
  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;

  // Never fails: runs ChargeNow and calls `done` with OK before returning.
  void Charge(std::span<const ChargeItem> items, std::span<Decision> decisions, Done done) override;
  // Never fails: erases the key's entry and calls `done` with OK before returning.
  void Reset(std::string_view key, const Limit& limit, Done done) override;
  void Release(std::string_view key, std::string_view lease, Done done) override;
  std::string_view backend() const override { return "memory"; }

  // The synchronous form of Charge. Reads the clock once.
  void ChargeNow(std::span<const ChargeItem> items, std::span<Decision> decisions);

  // Removes every expired key and shrinks tables that became mostly empty. Returns how many
  // keys it removed. Call it periodically (the server does, every second); it locks one shard
  // at a time.
  size_t Sweep();

  size_t size() const;  // live keys, including expired ones not yet swept
  // Counters since construction, for metrics (thread-safe, monotonic). Every key inserted is
  // either still live (size()), evicted to make room beyond max_keys, removed expired
  // (by Sweep() or by a full store sweeping before it evicts), or removed by Reset.
  uint64_t evictions() const { return evictions_.load(std::memory_order_relaxed); }
  uint64_t expirations() const { return expirations_.load(std::memory_order_relaxed); }
  uint64_t resets() const { return resets_.load(std::memory_order_relaxed); }
  // Tables shrunk by Sweep() since construction: memory the allocator may give back.
  uint64_t shrinks() const { return shrinks_.load(std::memory_order_relaxed); }
  // Bytes held: tables (slots + control bytes) and sliding-window-log entries.
  size_t MemoryBytes() const;

 private:
  struct Slot {
    AlgorithmState state;
    uint32_t expires_at_s = 0;  // Unix seconds; at or after it the state is as good as fresh
    Algorithm algorithm = Algorithm::kFixedWindow;
    uint32_t check : 24 = 0;  // MemoryKeyHash::check of the key that owns the slot
    // Whether the slot holds the state of the key (hash, algorithm), not a colliding one's.
    bool Holds(const MemoryKeyHash& hash, Algorithm a) const {
      return algorithm == a && check == (hash.check & kCheckMask);
    }
  };
  static constexpr uint32_t kCheckMask = (uint32_t{1} << 24) - 1;
  // 24 bytes of slot behind the 8-byte hash: 32 a table entry, 33 with the control byte.
  static_assert(sizeof(Slot) == 24);
  using Map = absl::flat_hash_map<uint64_t, Slot>;
  struct alignas(64) Shard {  // one cache line apart: shards do not false-share their locks
    mutable Mutex mu;
    Map map ABSL_GUARDED_BY(mu);
  };

  MemoryKeyHash Hash(std::string_view key) const;
  Shard& ShardFor(const MemoryKeyHash& hash) { return shards_[hash.table % shards_.size()]; }
  // The slot of the key, or nullptr when the table has none or a colliding key's.
  Slot* Find(Shard& shard, const MemoryKeyHash& hash, Algorithm algorithm)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Finds or creates the slot of the key, making room when the shard is full. A slot held by a
  // colliding key is taken over: its state released and started fresh.
  Slot& SlotFor(Shard& shard, const MemoryKeyHash& hash, Algorithm algorithm, Micros now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  size_t SweepLocked(Shard& shard, uint32_t now_s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  void EvictLocked(Shard& shard) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Admits one item against its slot (or a scratch state when reading a missing key).
  Decision AdmitItem(Shard& shard, const MemoryKeyHash& hash, const ChargeItem& item, Micros now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  void SetExpiry(Slot& slot, Micros now, const Decision& d);
  // Several items: locks every shard involved in ascending order (no deadlock between two
  // multi-key requests), admits each item, refunds them all if one rejects. The analysis cannot
  // follow a run-time set of locks, so this one function is not checked: it takes and releases
  // every lock itself and holds them all while it calls the helpers that require a shard's.
  void ChargeAllOrNothing(std::span<const ChargeItem> items, std::span<Decision> decisions,
                          Micros now) ABSL_NO_THREAD_SAFETY_ANALYSIS;

  const Clock& clock_;
  const size_t max_keys_;
  const uint64_t seed_;  // random per process: keys cannot be chosen to collide
  const std::function<MemoryKeyHash(std::string_view)> hash_for_testing_;
  std::unique_ptr<Shard[]> shard_storage_;
  std::span<Shard> shards_;
  // Relaxed counters: read only for metrics.
  std::atomic<uint64_t> evictions_{0};
  // Keys in all shards. Relaxed: it bounds the table size, and an insertion racing another
  // shard's can overshoot max_keys by at most one key per concurrent thread.
  std::atomic<size_t> keys_{0};
  std::atomic<uint64_t> expirations_{0};
  std::atomic<uint64_t> resets_{0};
  std::atomic<uint64_t> shrinks_{0};
};

}  // namespace sluice
