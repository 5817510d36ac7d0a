#include "stats/space_saving.h"

#include <xxhash.h>

#include <algorithm>
#include <random>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace sluice::stats {

namespace {

const uint64_t kSeed = std::random_device{}() * 0x9E3779B97F4A7C15ull ^ std::random_device{}();

bool Heavier(const SpaceSaving::Entry& a, const SpaceSaving::Entry& b) {
  return a.count != b.count ? a.count > b.count : a.key < b.key;
}

}  // namespace

uint64_t SpaceSaving::Hash(std::string_view key) {
  return XXH3_64bits_withSeed(key.data(), key.size(), kSeed);
}

SpaceSaving::SpaceSaving(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {
  slots_.reserve(capacity_);
}

SpaceSaving::SpaceSaving(const SpaceSaving& other)
    : capacity_(other.capacity_),
      total_(other.total_),
      base_floor_(other.base_floor_),
      buckets_(other.buckets_),
      free_buckets_(other.free_buckets_),
      least_(other.least_),
      most_(other.most_) {
  slots_.reserve(capacity_);
  slots_ = other.slots_;
  Rebuild();
}

SpaceSaving& SpaceSaving::operator=(const SpaceSaving& other) {
  if (this != &other) {
    SpaceSaving copy(other);
    *this = std::move(copy);
  }
  return *this;
}

void SpaceSaving::Rebuild() {
  index_.clear();
  index_.reserve(slots_.size());
  for (size_t i = 0; i < slots_.size(); ++i) {
    index_.emplace(slots_[i].hash, static_cast<uint32_t>(i));
  }
}

uint64_t SpaceSaving::floor() const {
  const uint64_t least = slots_.size() >= capacity_ ? buckets_[least_].count : 0;
  return std::max(base_floor_, least);
}

void SpaceSaving::Add(std::string_view key, uint64_t hash, uint64_t weight) {
  total_ += weight;
  if (auto it = index_.find(hash); it != index_.end()) {
    if (slots_[it->second].key != key) return;  // a hash collision: see Hash
    return Raise(it->second, weight);
  }
  if (slots_.size() < capacity_) {
    Insert(key, base_floor_ + weight, base_floor_);
    return;
  }
  // Replace the least counted key: the newcomer may have been counted that much before.
  const uint32_t slot = buckets_[least_].first;
  Slot& s = slots_[slot];
  const uint64_t least = s.count;
  index_.erase(s.hash);
  s.key.assign(key);
  s.hash = hash;
  index_.emplace(hash, slot);
  s.error = least;
  Raise(slot, weight);
}

void SpaceSaving::Insert(std::string_view key, uint64_t count, uint64_t error) {
  const auto slot = static_cast<uint32_t>(slots_.size());
  const uint64_t hash = Hash(key);
  if (!index_.emplace(hash, slot).second) return;  // a hash collision: see Hash
  slots_.push_back(Slot{std::string(key), hash, count, error, kNone, kNone, kNone});
  // Entries usually come lightest first (FromEntries) or at the floor (Add): search from the
  // end that is nearer.
  uint32_t after = kNone;
  if (most_ != kNone && buckets_[most_].count <= count) {
    after = buckets_[most_].count < count ? most_ : buckets_[most_].prev;
  }
  Place(slot, after);
}

void SpaceSaving::Raise(uint32_t slot, uint64_t by) {
  const uint32_t after = Unlink(slot);
  slots_[slot].count += by;
  Place(slot, after);
}

uint32_t SpaceSaving::Unlink(uint32_t slot) {
  Slot& s = slots_[slot];
  const uint32_t b = s.bucket;
  if (s.prev != kNone) slots_[s.prev].next = s.next;
  if (s.next != kNone) slots_[s.next].prev = s.prev;
  Bucket& bucket = buckets_[b];
  if (bucket.first == slot) bucket.first = s.next;
  s.prev = s.next = s.bucket = kNone;
  if (bucket.first != kNone) return b;
  // The bucket emptied: out of the list, into the free list.
  const uint32_t before = bucket.prev;
  if (bucket.prev != kNone) buckets_[bucket.prev].next = bucket.next;
  if (bucket.next != kNone) buckets_[bucket.next].prev = bucket.prev;
  if (least_ == b) least_ = bucket.next;
  if (most_ == b) most_ = bucket.prev;
  free_buckets_.push_back(b);
  return before;
}

void SpaceSaving::Place(uint32_t slot, uint32_t after) {
  Slot& s = slots_[slot];
  uint32_t b = after == kNone ? least_ : buckets_[after].next;
  while (b != kNone && buckets_[b].count < s.count) {
    after = b;
    b = buckets_[b].next;
  }
  if (b == kNone || buckets_[b].count != s.count) {
    // A new bucket between `after` and `b`.
    uint32_t fresh;
    if (!free_buckets_.empty()) {
      fresh = free_buckets_.back();
      free_buckets_.pop_back();
    } else {
      fresh = static_cast<uint32_t>(buckets_.size());
      buckets_.push_back({});
    }
    buckets_[fresh] = Bucket{s.count, kNone, after, b};
    if (after != kNone) {
      buckets_[after].next = fresh;
    } else {
      least_ = fresh;
    }
    if (b != kNone) {
      buckets_[b].prev = fresh;
    } else {
      most_ = fresh;
    }
    b = fresh;
  }
  Bucket& bucket = buckets_[b];
  s.bucket = b;
  s.prev = kNone;
  s.next = bucket.first;
  if (bucket.first != kNone) slots_[bucket.first].prev = slot;
  bucket.first = slot;
}

std::vector<SpaceSaving::Entry> SpaceSaving::Top(size_t n, std::string_view prefix) const {
  // Ranks slot ids, then copies only the keys kept.
  std::vector<uint32_t> ids;
  ids.reserve(slots_.size());
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].key.starts_with(prefix)) ids.push_back(i);
  }
  const size_t keep = std::min(n, ids.size());
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(keep), ids.end(),
                    [this](uint32_t a, uint32_t b) {
                      const Slot& x = slots_[a];
                      const Slot& y = slots_[b];
                      return x.count != y.count ? x.count > y.count : x.key < y.key;
                    });
  std::vector<Entry> out;
  out.reserve(keep);
  for (size_t i = 0; i < keep; ++i) {
    const Slot& s = slots_[ids[i]];
    out.push_back(Entry{s.key, s.count, s.error});
  }
  return out;
}

SpaceSaving::Entry SpaceSaving::Estimate(std::string_view key) const {
  if (auto it = index_.find(Hash(key)); it != index_.end() && slots_[it->second].key == key) {
    const Slot& s = slots_[it->second];
    return Entry{std::string(key), s.count, s.error};
  }
  return Entry{std::string(key), floor(), floor()};
}

void SpaceSaving::Merge(const SpaceSaving& other) {
  const SpaceSaving* parts[] = {this, &other};
  *this = MergeAll(parts, capacity_);
}

SpaceSaving SpaceSaving::MergeAll(std::span<const SpaceSaving* const> parts, size_t capacity) {
  // Every key starts at the sum of the floors (absent everywhere: up to each part's floor);
  // where a part monitors it, that part's floor is replaced by its count.
  uint64_t floors = 0;
  uint64_t total = 0;
  size_t entries = 0;
  for (const SpaceSaving* part : parts) {
    floors += part->floor();
    total += part->total_;
    entries += part->slots_.size();
  }
  struct Sums {
    uint64_t count = 0;   // of the parts that monitor the key
    uint64_t error = 0;   // likewise
    uint64_t floors = 0;  // those parts' floors, which the key does not owe them
  };
  absl::flat_hash_map<std::string_view, Sums> combined;
  combined.reserve(entries);
  for (const SpaceSaving* part : parts) {
    const uint64_t part_floor = part->floor();
    for (const Slot& s : part->slots_) {
      Sums& sums = combined[s.key];
      sums.count += s.count;
      sums.error += s.error;
      sums.floors += part_floor;
    }
  }
  std::vector<Entry> all;
  all.reserve(combined.size());
  for (const auto& [key, sums] : combined) {
    const uint64_t absent = floors - sums.floors;  // up to the floor of each part without it
    all.push_back(Entry{std::string(key), sums.count + absent, sums.error + absent});
  }
  std::sort(all.begin(), all.end(), Heavier);
  // Keys beyond capacity go; what they counted bounds what an unmonitored key may have.
  uint64_t new_floor = floors;
  if (all.size() > capacity) {
    new_floor = std::max(new_floor, all[capacity].count);
    all.resize(capacity);
  }
  return FromEntries(all, new_floor, total, capacity);
}

SpaceSaving SpaceSaving::Compact(size_t n) const {
  std::vector<Entry> top = Top(n);
  uint64_t bound = floor();
  if (top.size() < slots_.size()) bound = std::max(bound, top.empty() ? 0 : top.back().count);
  return FromEntries(top, bound, total_, std::max<size_t>(n, 1));
}

SpaceSaving SpaceSaving::FromEntries(const std::vector<Entry>& entries, uint64_t floor,
                                     uint64_t total, size_t capacity) {
  SpaceSaving out(std::max(capacity, entries.size()));
  out.base_floor_ = floor;
  out.total_ = total;
  // Lightest first: each lands at the top of the bucket list, without a search.
  for (auto e = entries.rbegin(); e != entries.rend(); ++e) out.Insert(e->key, e->count, e->error);
  return out;
}

}  // namespace sluice::stats
