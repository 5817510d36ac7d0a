#include "store/memory/memory_store.h"

#include <xxhash.h>

#include <algorithm>
#include <random>

#include "absl/container/inlined_vector.h"
#include "core/int_math.h"

namespace sluice {

namespace {

uint32_t ExpirySeconds(Micros now, Micros reset_after) {
  const Micros at = int_math::SatAdd(now, reset_after);
  const int64_t seconds =
      static_cast<int64_t>(int_math::CeilDiv(at, kMicrosPerSecond));  // never early
  return static_cast<uint32_t>(std::clamp<int64_t>(seconds, 0, UINT32_MAX));
}

uint32_t NowSeconds(Micros now) {
  return static_cast<uint32_t>(std::clamp<int64_t>(now / kMicrosPerSecond, 0, UINT32_MAX));
}

}  // namespace

MemoryStore::MemoryStore(const Clock& clock, MemoryStoreOptions options)
    : clock_(clock),
      max_keys_(std::max<size_t>(1, options.max_keys)),
      seed_(std::random_device{}() | (uint64_t{std::random_device{}()} << 32)) {
  const size_t n = std::max<size_t>(1, options.shards);
  shard_storage_ = std::make_unique<Shard[]>(n);
  shards_ = std::span<Shard>(shard_storage_.get(), n);
}

MemoryStore::~MemoryStore() {
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mu);
    for (auto& [hash, slot] : shard.map) Release(slot.state, slot.algorithm);
  }
}

uint64_t MemoryStore::Hash(std::string_view key) const {
  return XXH3_64bits_withSeed(key.data(), key.size(), seed_);
}

void MemoryStore::Charge(std::span<const ChargeItem> items, std::span<Decision> decisions,
                         Done done) {
  ChargeNow(items, decisions);
  std::move(done)(absl::OkStatus());
}

MemoryStore::Slot& MemoryStore::SlotFor(Shard& shard, uint64_t hash, Algorithm algorithm,
                                        Micros now) {
  auto it = shard.map.find(hash);
  if (it != shard.map.end()) return it->second;
  if (keys_.load(std::memory_order_relaxed) >= max_keys_) {
    // Full: make room in this shard, which is as good as any (keys hash uniformly).
    SweepLocked(shard, NowSeconds(now));
    if (keys_.load(std::memory_order_relaxed) >= max_keys_) EvictLocked(shard);
  }
  Slot& slot = shard.map[hash];
  keys_.fetch_add(1, std::memory_order_relaxed);
  slot.algorithm = algorithm;
  return slot;
}

void MemoryStore::SetExpiry(Slot& slot, Micros now, const Decision& d) {
  slot.expires_at_s = ExpirySeconds(now, d.reset_after);
}

Decision MemoryStore::AdmitItem(Shard& shard, uint64_t hash, const ChargeItem& item,
                                Micros now) {
  const Limit& limit = *item.limit;
  if (item.cost == 0 || item.cost > limit.max_cost()) {
    // Reads never create a key: a missing key reads as a fresh state.
    auto it = shard.map.find(hash);
    if (it == shard.map.end()) {
      AlgorithmState scratch;
      Decision d = sluice::Admit(scratch, limit, now, item.cost);
      Release(scratch, limit.algorithm());
      return d;
    }
    return sluice::Admit(it->second.state, limit, now, item.cost);
  }
  Slot& slot = SlotFor(shard, hash, limit.algorithm(), now);
  Decision d = sluice::Admit(slot.state, limit, now, item.cost);
  SetExpiry(slot, now, d);
  return d;
}

void MemoryStore::ChargeNow(std::span<const ChargeItem> items, std::span<Decision> decisions) {
  const Micros now = clock_.NowMicros();
  if (items.size() == 1) {  // the common case: one lock, no bookkeeping
    const uint64_t hash = Hash(items[0].key);
    Shard& shard = ShardFor(hash);
    std::lock_guard lock(shard.mu);
    decisions[0] = AdmitItem(shard, hash, items[0], now);
    return;
  }

  absl::InlinedVector<uint64_t, 8> hashes;
  absl::InlinedVector<size_t, 8> order;  // shard indexes, sorted and unique: the lock order
  for (const ChargeItem& item : items) {
    hashes.push_back(Hash(item.key));
    order.push_back(hashes.back() % shards_.size());
  }
  std::sort(order.begin(), order.end());
  order.erase(std::unique(order.begin(), order.end()), order.end());
  // Locks in ascending shard order, so two multi-key requests can never deadlock.
  for (size_t s : order) shards_[s].mu.lock();

  bool rejected = false;
  for (size_t i = 0; i < items.size(); ++i) {
    decisions[i] = AdmitItem(ShardFor(hashes[i]), hashes[i], items[i], now);
    rejected |= !decisions[i].allowed && items[i].enforced;
  }
  if (rejected) {
    // Give back what the admitted items charged, newest first; nothing ran in between, so the
    // refund is exact. Then read their state again for the decision the caller reports.
    for (size_t i = items.size(); i-- > 0;) {
      if (!decisions[i].allowed || items[i].cost == 0) continue;
      Shard& shard = ShardFor(hashes[i]);
      auto it = shard.map.find(hashes[i]);
      if (it == shard.map.end()) continue;
      Refund(it->second.state, *items[i].limit, now, items[i].cost);
      decisions[i] = sluice::Admit(it->second.state, *items[i].limit, now, 0);
      SetExpiry(it->second, now, decisions[i]);
    }
  }
  for (auto s = order.rbegin(); s != order.rend(); ++s) shards_[*s].mu.unlock();
}

size_t MemoryStore::SweepLocked(Shard& shard, uint32_t now_s) {
  size_t removed = 0;
  for (auto it = shard.map.begin(); it != shard.map.end();) {
    if (it->second.expires_at_s <= now_s) {
      Release(it->second.state, it->second.algorithm);
      shard.map.erase(it++);
      ++removed;
    } else {
      ++it;
    }
  }
  // flat_hash_map never shrinks by itself; give memory back once the table is mostly empty.
  if (removed > 0 && shard.map.size() * 4 < shard.map.bucket_count()) shard.map.rehash(0);
  expirations_.fetch_add(removed, std::memory_order_relaxed);
  keys_.fetch_sub(removed, std::memory_order_relaxed);
  return removed;
}

void MemoryStore::EvictLocked(Shard& shard) {
  // Evict the eighth of this shard that would expire soonest: those keys carry the least
  // remaining information (the closest to fresh), and evicting a batch keeps the O(n) scan
  // amortized to O(1) per insertion.
  std::vector<std::pair<uint32_t, uint64_t>> by_expiry;
  by_expiry.reserve(shard.map.size());
  for (const auto& [hash, slot] : shard.map) by_expiry.emplace_back(slot.expires_at_s, hash);
  const size_t victims = std::max<size_t>(1, by_expiry.size() / 8);
  std::nth_element(by_expiry.begin(), by_expiry.begin() + static_cast<ptrdiff_t>(victims - 1),
                   by_expiry.end());
  for (size_t i = 0; i < victims; ++i) {
    auto it = shard.map.find(by_expiry[i].second);
    Release(it->second.state, it->second.algorithm);
    shard.map.erase(it);
  }
  evictions_.fetch_add(victims, std::memory_order_relaxed);
  keys_.fetch_sub(victims, std::memory_order_relaxed);
}

size_t MemoryStore::Sweep() {
  const uint32_t now_s = NowSeconds(clock_.NowMicros());
  size_t removed = 0;
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mu);
    removed += SweepLocked(shard, now_s);
  }
  return removed;
}

size_t MemoryStore::size() const { return keys_.load(std::memory_order_relaxed); }

size_t MemoryStore::MemoryBytes() const {
  size_t bytes = sizeof(*this) + shards_.size() * sizeof(Shard);
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mu);
    bytes += shard.map.bucket_count() * (sizeof(Map::value_type) + 1);
    for (const auto& [hash, slot] : shard.map) bytes += HeapBytes(slot.state, slot.algorithm);
  }
  return bytes;
}

}  // namespace sluice
