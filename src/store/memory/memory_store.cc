#include "store/memory/memory_store.h"

#include <xxhash.h>

#include <algorithm>
#include <random>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "core/int_math.h"

namespace sluice {

namespace {

// The decision of a fresh state, for a key the table does not hold.
Decision ReadFresh(const Limit& limit, Micros now, int64_t cost) {
  AlgorithmState scratch;
  Decision d = sluice::Admit(scratch, limit, now, cost);
  sluice::Release(scratch, limit.algorithm());
  return d;
}

uint32_t ExpirySeconds(Micros now, Micros reset_after) {
  const Micros at = int_math::SatAdd(now, reset_after);
  const int64_t seconds =
      static_cast<int64_t>(int_math::CeilDiv(at, kMicrosPerSecond));  // never early
  return static_cast<uint32_t>(std::clamp<int64_t>(seconds, 0, UINT32_MAX));
}

// A concurrency slot's name in a ConcurrencyState: a hash of the lease id, never 0. Not seeded:
// lease ids are random already.
uint64_t LeaseHash(std::string_view lease) { return XXH3_64bits(lease.data(), lease.size()) | 1; }

uint32_t NowSeconds(Micros now) {
  return static_cast<uint32_t>(std::clamp<int64_t>(now / kMicrosPerSecond, 0, UINT32_MAX));
}

}  // namespace

MemoryStore::MemoryStore(const Clock& clock, MemoryStoreOptions options)
    : clock_(clock),
      max_keys_(std::max<size_t>(1, options.max_keys)),
      seed_(std::random_device{}() | (uint64_t{std::random_device{}()} << 32)),
      hash_for_testing_(std::move(options.hash_for_testing)) {
  const size_t n = std::max<size_t>(1, options.shards);
  shard_storage_ = std::make_unique<Shard[]>(n);
  shards_ = std::span<Shard>(shard_storage_.get(), n);
}

MemoryStore::~MemoryStore() {
  for (Shard& shard : shards_) {
    MutexLock lock(shard.mu);
    for (auto& [hash, slot] : shard.map) sluice::Release(slot.state, slot.algorithm);
  }
}

MemoryKeyHash MemoryStore::Hash(std::string_view key) const {
  if (hash_for_testing_) return hash_for_testing_(key);
  // One pass gives two 64-bit halves: the low one finds the entry, the high one checks it, so a
  // collision must happen on 88 bits (64 + 24) to go unnoticed, not 64.
  const XXH128_hash_t h = XXH3_128bits_withSeed(key.data(), key.size(), seed_);
  return {.table = h.low64, .check = static_cast<uint32_t>(h.high64 >> 40)};
}

void MemoryStore::Charge(std::span<const ChargeItem> items, std::span<Decision> decisions,
                         Done done) {
  ChargeNow(items, decisions);
  std::move(done)(absl::OkStatus());
}

void MemoryStore::Reset(std::string_view key, const Limit& /*limit*/, Done done) {
  const MemoryKeyHash hash = Hash(key);
  Shard& shard = ShardFor(hash);
  {
    MutexLock lock(shard.mu);
    auto it = shard.map.find(hash.table);
    // The algorithm is not compared (unlike Find): a state the key holds under another
    // algorithm (a rule changed its algorithm) is still the key's, and is forgotten too. A slot
    // whose check bits differ is a colliding key's: this key has no state to forget.
    if (it != shard.map.end() && it->second.check == (hash.check & kCheckMask)) {
      sluice::Release(it->second.state, it->second.algorithm);
      shard.map.erase(it);
      keys_.fetch_sub(1, std::memory_order_relaxed);
      resets_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  std::move(done)(absl::OkStatus());
}

void MemoryStore::Release(std::string_view key, std::string_view lease, Done done) {
  const MemoryKeyHash hash = Hash(key);
  Shard& shard = ShardFor(hash);
  {
    MutexLock lock(shard.mu);
    if (Slot* slot = Find(shard, hash, Algorithm::kConcurrency);
        slot != nullptr && slot->state.concurrency != nullptr) {
      Concurrency::Release(*slot->state.concurrency, LeaseHash(lease));
    }
  }
  std::move(done)(absl::OkStatus());
}

MemoryStore::Slot* MemoryStore::Find(Shard& shard, const MemoryKeyHash& hash, Algorithm algorithm) {
  auto it = shard.map.find(hash.table);
  if (it == shard.map.end() || !it->second.Holds(hash, algorithm)) return nullptr;
  return &it->second;
}

MemoryStore::Slot& MemoryStore::SlotFor(Shard& shard, const MemoryKeyHash& hash,
                                        Algorithm algorithm, Micros now) {
  auto it = shard.map.find(hash.table);
  if (it != shard.map.end()) {
    Slot& slot = it->second;
    if (!slot.Holds(hash, algorithm)) {
      // Another key (or the same hash under another algorithm) owns the slot: the state is not
      // this key's and its union member may not even be this algorithm's. Release it as what it
      // is (a sliding_window_log frees its entries, nothing else owns memory) and start fresh.
      // The two keys then take the slot from each other, each starting fresh: errs towards
      // admitting, like an evicted key, and never reads the other's state.
      sluice::Release(slot.state, slot.algorithm);
      slot = Slot{};
      slot.algorithm = algorithm;
      slot.check = hash.check & kCheckMask;
    }
    return slot;
  }
  if (keys_.load(std::memory_order_relaxed) >= max_keys_) {
    // Full: make room in this shard, which is as good as any (keys hash uniformly).
    SweepLocked(shard, NowSeconds(now));
    if (keys_.load(std::memory_order_relaxed) >= max_keys_) EvictLocked(shard);
  }
  Slot& slot = shard.map[hash.table];
  keys_.fetch_add(1, std::memory_order_relaxed);
  slot.algorithm = algorithm;
  slot.check = hash.check & kCheckMask;
  return slot;
}

void MemoryStore::SetExpiry(Slot& slot, Micros now, const Decision& d) {
  slot.expires_at_s = ExpirySeconds(now, d.reset_after);
}

Decision MemoryStore::AdmitItem(Shard& shard, const MemoryKeyHash& hash, const ChargeItem& item,
                                Micros now) {
  const Limit& limit = *item.limit;
  const OnReject on_reject = item.on_reject();
  if (item.cost == 0 || (item.cost > limit.max_cost() && on_reject == OnReject::kChargeNothing)) {
    // Reads never create a key (nor take over a colliding one's slot): a missing key reads as
    // a fresh state.
    Slot* slot = Find(shard, hash, limit.algorithm());
    if (slot == nullptr) return ReadFresh(limit, now, item.cost);
    return sluice::Admit(slot->state, limit, now, item.cost);
  }
  Slot& slot = SlotFor(shard, hash, limit.algorithm(), now);
  Decision d = sluice::Admit(slot.state, limit, now, item.cost, on_reject,
                             item.lease.empty() ? 0 : LeaseHash(item.lease));
  SetExpiry(slot, now, d);
  return d;
}

void MemoryStore::ChargeNow(std::span<const ChargeItem> items, std::span<Decision> decisions) {
  const Micros now = clock_.NowMicros();
  if (items.size() == 1) {  // the common case: one lock, no bookkeeping
    const MemoryKeyHash hash = Hash(items[0].key);
    Shard& shard = ShardFor(hash);
    MutexLock lock(shard.mu);
    decisions[0] = AdmitItem(shard, hash, items[0], now);
    return;
  }
  ChargeAllOrNothing(items, decisions, now);
}

void MemoryStore::ChargeAllOrNothing(std::span<const ChargeItem> items,
                                     std::span<Decision> decisions, Micros now) {
  absl::InlinedVector<MemoryKeyHash, 8> hashes;
  absl::InlinedVector<size_t, 8> order;  // shard indexes, sorted and unique: the lock order
  for (const ChargeItem& item : items) {
    hashes.push_back(Hash(item.key));
    order.push_back(hashes.back().table % shards_.size());
  }
  std::sort(order.begin(), order.end());
  order.erase(std::unique(order.begin(), order.end()), order.end());
  // Locks in ascending shard order, so two multi-key requests can never deadlock.
  for (size_t s : order) shards_[s].mu.lock();

  for (size_t i = 0; i < items.size(); ++i) {
    decisions[i] = AdmitItem(ShardFor(hashes[i]), hashes[i], items[i], now);
  }
  if (RequestRejected(items, decisions)) {
    // Give back what the admitted items charged, newest first; nothing ran in between, so the
    // refund is exact. Then read their state again for the decision the caller reports.
    for (size_t i = items.size(); i-- > 0;) {
      if (!decisions[i].allowed || items[i].cost == 0 || !items[i].refunded_on_rejection()) {
        continue;
      }
      const Limit& limit = *items[i].limit;
      Slot* slot = Find(ShardFor(hashes[i]), hashes[i], limit.algorithm());
      if (slot == nullptr) {
        // A colliding item of this request took the slot over after this one was charged: the
        // charge went with the state it replaced, and what is left reads fresh.
        decisions[i] = ReadFresh(limit, now, 0);
        continue;
      }
      Refund(slot->state, limit, now, items[i].cost,
             items[i].lease.empty() ? 0 : LeaseHash(items[i].lease));
      decisions[i] = sluice::Admit(slot->state, limit, now, 0);
      SetExpiry(*slot, now, decisions[i]);
    }
  }
  for (auto s = order.rbegin(); s != order.rend(); ++s) shards_[*s].mu.unlock();
}

size_t MemoryStore::SweepLocked(Shard& shard, uint32_t now_s) {
  size_t removed = 0;
  for (auto it = shard.map.begin(); it != shard.map.end();) {
    if (it->second.expires_at_s <= now_s) {
      sluice::Release(it->second.state, it->second.algorithm);
      shard.map.erase(it++);
      ++removed;
    } else {
      ++it;
    }
  }
  // flat_hash_map never shrinks by itself; give memory back once the table is mostly empty.
  if (removed > 0 && shard.map.size() * 4 < shard.map.bucket_count()) {
    shard.map.rehash(0);
    shrinks_.fetch_add(1, std::memory_order_relaxed);
  }
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
    sluice::Release(it->second.state, it->second.algorithm);
    shard.map.erase(it);
  }
  evictions_.fetch_add(victims, std::memory_order_relaxed);
  keys_.fetch_sub(victims, std::memory_order_relaxed);
}

size_t MemoryStore::Sweep() {
  const uint32_t now_s = NowSeconds(clock_.NowMicros());
  size_t removed = 0;
  for (Shard& shard : shards_) {
    MutexLock lock(shard.mu);
    removed += SweepLocked(shard, now_s);
  }
  return removed;
}

size_t MemoryStore::size() const { return keys_.load(std::memory_order_relaxed); }

size_t MemoryStore::MemoryBytes() const {
  size_t bytes = sizeof(*this) + shards_.size() * sizeof(Shard);
  for (const Shard& shard : shards_) {
    MutexLock lock(shard.mu);
    bytes += shard.map.bucket_count() * (sizeof(Map::value_type) + 1);
    for (const auto& [hash, slot] : shard.map) bytes += HeapBytes(slot.state, slot.algorithm);
  }
  return bytes;
}

}  // namespace sluice
