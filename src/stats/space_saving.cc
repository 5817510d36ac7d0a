#include "stats/space_saving.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace sluice::stats {

namespace {

absl::string_view View(std::string_view s) { return {s.data(), s.size()}; }

bool Heavier(const SpaceSaving::Entry& a, const SpaceSaving::Entry& b) {
  return a.count != b.count ? a.count > b.count : a.key < b.key;
}

}  // namespace

SpaceSaving::SpaceSaving(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {}

SpaceSaving::SpaceSaving(const SpaceSaving& other)
    : capacity_(other.capacity_),
      total_(other.total_),
      base_floor_(other.base_floor_),
      slots_(other.slots_),
      heap_(other.heap_),
      index_(other.index_) {
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
  for (auto& [key, slot] : index_) slots_[slot].key = &key;
}

uint64_t SpaceSaving::floor() const {
  const uint64_t least = heap_.size() >= capacity_ ? slots_[heap_.front()].count : 0;
  return std::max(base_floor_, least);
}

void SpaceSaving::Add(std::string_view key, uint64_t weight) {
  total_ += weight;
  if (auto it = index_.find(View(key)); it != index_.end()) return Raise(it->second, weight);
  if (slots_.size() < capacity_) {
    Insert(key, base_floor_ + weight, base_floor_);
    return;
  }
  // Replace the least counted key: the newcomer may have been counted that much before.
  const uint32_t slot = heap_.front();
  Slot& s = slots_[slot];
  const uint64_t least = s.count;
  index_.erase(*s.key);
  auto [it, inserted] = index_.emplace(std::string(key), slot);
  s.key = &it->first;
  s.count = least + weight;
  s.error = least;
  SiftDown(0);
}

void SpaceSaving::Insert(std::string_view key, uint64_t count, uint64_t error) {
  const auto slot = static_cast<uint32_t>(slots_.size());
  auto [it, inserted] = index_.emplace(std::string(key), slot);
  slots_.push_back(Slot{&it->first, count, error, static_cast<uint32_t>(heap_.size())});
  heap_.push_back(slot);
  // Sift up: the new entry may be lighter than its parents.
  size_t i = heap_.size() - 1;
  while (i > 0) {
    const size_t parent = (i - 1) / 2;
    if (slots_[heap_[parent]].count <= slots_[heap_[i]].count) break;
    Swap(i, parent);
    i = parent;
  }
}

void SpaceSaving::Raise(uint32_t slot, uint64_t by) {
  slots_[slot].count += by;
  SiftDown(slots_[slot].heap_pos);
}

void SpaceSaving::SiftDown(size_t i) {
  const size_t n = heap_.size();
  for (;;) {
    size_t least = i;
    const size_t left = 2 * i + 1;
    const size_t right = left + 1;
    if (left < n && slots_[heap_[left]].count < slots_[heap_[least]].count) least = left;
    if (right < n && slots_[heap_[right]].count < slots_[heap_[least]].count) least = right;
    if (least == i) return;
    Swap(i, least);
    i = least;
  }
}

void SpaceSaving::Swap(size_t a, size_t b) {
  std::swap(heap_[a], heap_[b]);
  slots_[heap_[a]].heap_pos = static_cast<uint32_t>(a);
  slots_[heap_[b]].heap_pos = static_cast<uint32_t>(b);
}

std::vector<SpaceSaving::Entry> SpaceSaving::Top(size_t n, std::string_view prefix) const {
  std::vector<Entry> out;
  for (const Slot& s : slots_) {
    if (!s.key->starts_with(prefix)) continue;
    out.push_back(Entry{*s.key, s.count, s.error});
  }
  const size_t keep = std::min(n, out.size());
  std::partial_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(keep), out.end(),
                    Heavier);
  out.resize(keep);
  return out;
}

SpaceSaving::Entry SpaceSaving::Estimate(std::string_view key) const {
  if (auto it = index_.find(View(key)); it != index_.end()) {
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
      Sums& sums = combined[*s.key];
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
  out.slots_.reserve(entries.size());
  out.heap_.reserve(entries.size());
  for (const Entry& e : entries) out.Insert(e.key, e.count, e.error);
  return out;
}

}  // namespace sluice::stats
