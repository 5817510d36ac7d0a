// The embedded store: per-key state in sharded hash maps inside the process.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "core/algorithm_state.h"
#include "core/time.h"
#include "store/store.h"

namespace sluice {

struct MemoryStoreOptions {
  // Independent locks. Many more than cores keeps two threads from meeting on one lock unless
  // they want the same key. Not a power of two on purpose: see docs/memory-store.md on memory.
  size_t shards = 48;
  // Beyond this many keys the store evicts (policy in docs/memory-store.md).
  size_t max_keys = 10'000'000;
};

// Thread-safe. Keys are identified by a 64-bit seeded XXH3 hash of ChargeItem::key (the key
// bytes are not kept): 32 bytes a key in the table plus the hash table's control byte and
// spare capacity. A key expires once its state is as good as fresh (Decision::reset_after has
// passed), so dropping it changes no decision; Sweep() reclaims expired keys and memory.
class MemoryStore final : public Store {
 public:
  explicit MemoryStore(const Clock& clock, MemoryStoreOptions options = {});
  ~MemoryStore() override;
  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;

  // Never fails: runs ChargeNow and calls `done` with OK before returning.
  void Charge(std::span<const ChargeItem> items, std::span<Decision> decisions,
              Done done) override;
  std::string_view backend() const override { return "memory"; }

  // The synchronous form of Charge. Reads the clock once.
  void ChargeNow(std::span<const ChargeItem> items, std::span<Decision> decisions);

  // Removes every expired key and shrinks tables that became mostly empty. Returns how many
  // keys it removed. Call it periodically (the server does, every second); it locks one shard
  // at a time.
  size_t Sweep();

  size_t size() const;  // live keys, including expired ones not yet swept
  uint64_t evictions() const { return evictions_.load(std::memory_order_relaxed); }
  uint64_t expirations() const { return expirations_.load(std::memory_order_relaxed); }
  // Bytes held: tables (slots + control bytes) and sliding-window-log entries.
  size_t MemoryBytes() const;

 private:
  struct Slot {
    AlgorithmState state;
    uint32_t expires_at_s = 0;  // Unix seconds; at or after it the state is as good as fresh
    Algorithm algorithm = Algorithm::kFixedWindow;
  };
  using Map = absl::flat_hash_map<uint64_t, Slot>;
  // std::mutex rather than absl::Mutex: Debian's Abseil is built without ThreadSanitizer
  // annotations, so TSan could not see absl::Mutex's ordering; pthread mutexes it intercepts.
  struct alignas(64) Shard {  // one cache line apart: shards do not false-share their locks
    mutable std::mutex mu;
    Map map ABSL_GUARDED_BY(mu);
  };

  uint64_t Hash(std::string_view key) const;
  Shard& ShardFor(uint64_t hash) { return shards_[hash % shards_.size()]; }
  // Finds or creates the slot of `hash`, making room when the shard is full.
  Slot& SlotFor(Shard& shard, uint64_t hash, Algorithm algorithm, Micros now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  size_t SweepLocked(Shard& shard, uint32_t now_s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  void EvictLocked(Shard& shard) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Admits one item against its slot (or a scratch state when reading a missing key).
  Decision AdmitItem(Shard& shard, uint64_t hash, const ChargeItem& item, Micros now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  void SetExpiry(Slot& slot, Micros now, const Decision& d);

  const Clock& clock_;
  const size_t max_keys_;
  const uint64_t seed_;  // random per process: keys cannot be chosen to collide
  std::unique_ptr<Shard[]> shard_storage_;
  std::span<Shard> shards_;
  // Relaxed counters: read only for metrics.
  std::atomic<uint64_t> evictions_{0};
  // Keys in all shards. Relaxed: it bounds the table size, and an insertion racing another
  // shard's can overshoot max_keys by at most one key per concurrent thread.
  std::atomic<size_t> keys_{0};
  std::atomic<uint64_t> expirations_{0};
};

}  // namespace sluice
