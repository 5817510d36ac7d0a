// A bounded heavy-hitters summary: the Space-Saving algorithm (Metwally, Agrawal, El Abbadi,
// "Efficient Computation of Frequent and Top-k Elements in Data Streams", ICDT 2005).
//
// At most `capacity` keys are monitored, each with a count and an error. A key already monitored
// has its count raised; a new key takes a free slot, or replaces the key with the least count m
// and starts at m + weight with error m. Guarantees, for a stream of total weight N:
//   - every monitored key's count overestimates its true weight by at most its error:
//       count - error <= true <= count, and error <= min count <= N / capacity;
//   - every key whose true weight exceeds N / capacity (more exactly, the least count) is
//     monitored.
// Summaries are mergeable (Agarwal et al., "Mergeable Summaries", PODS 2012): Merge adds another
// summary's counts, charging a key one summary does not monitor that summary's floor (the count
// any unmonitored key may have reached there), so the bounds above keep holding for the union of
// the streams, with N the total weight of both.
//
// Keys sit in a Stream-Summary (the paper's structure): buckets of equal count in a list sorted by
// count, so finding the least counted key and raising a key by one are O(1) — an update costs
// one hash lookup and a few links, whatever the capacity. Not thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace sluice::stats {

class SpaceSaving {
 public:
  struct Entry {
    std::string key;
    uint64_t count = 0;
    uint64_t error = 0;  // count - error <= the key's true weight <= count
  };

  explicit SpaceSaving(size_t capacity);
  SpaceSaving(const SpaceSaving& other);
  SpaceSaving& operator=(const SpaceSaving& other);
  SpaceSaving(SpaceSaving&&) noexcept = default;
  SpaceSaving& operator=(SpaceSaving&&) noexcept = default;

  // Adds `weight` (> 0) to `key`.
  void Add(std::string_view key, uint64_t weight = 1) { Add(key, Hash(key), weight); }
  // The same with `hash` = Hash(key), computed once by a caller that adds a key to several
  // summaries.
  void Add(std::string_view key, uint64_t hash, uint64_t weight);
  // The index's hash of a key: XXH3-64 with a random per-process seed, so that keys cannot be
  // chosen to collide. Two keys with one hash (about capacity² / 2^64 likely) share a counter's
  // place: the later one's events are dropped while the first is monitored.
  static uint64_t Hash(std::string_view key);
  // Adds every key of `other` (see the header comment). `other` may have another capacity.
  void Merge(const SpaceSaving& other);
  // The merge of all of `parts` at once (the same as merging them one by one, in one pass):
  // a key's count is the sum over the parts of its count where monitored and the part's floor
  // where not. Keeps the `capacity` heaviest.
  static SpaceSaving MergeAll(std::span<const SpaceSaving* const> parts, size_t capacity);
  // The entries whose key starts with `prefix` ("" for all), highest count first (ties by key,
  // for a stable output), at most `n`.
  std::vector<Entry> Top(size_t n, std::string_view prefix = "") const;
  // The count and error of `key`: monitored, its own; otherwise {floor(), floor()} — it may
  // have counted up to the floor, or nothing.
  Entry Estimate(std::string_view key) const;

  // The most a key that is not monitored may have counted: the least count once the summary
  // is full (or the floor it was built with, see Compact), 0 while every key seen is monitored.
  uint64_t floor() const;
  size_t size() const { return slots_.size(); }
  size_t capacity() const { return capacity_; }
  uint64_t total() const { return total_; }  // N: the weight added, merged summaries included

  // A copy holding only the `n` heaviest entries, whose floor stays at least this summary's
  // least count (a key it drops may have counted up to that much): keeps a finished period in
  // less memory, at the cost of a looser bound for the keys it drops.
  SpaceSaving Compact(size_t n) const;

  // Rebuilds a summary of `capacity` from `entries` (another server's Top) and the floor and
  // total of the summary they came from.
  static SpaceSaving FromEntries(const std::vector<Entry>& entries, uint64_t floor, uint64_t total,
                                 size_t capacity);

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  struct Slot {
    std::string key;  // reused by the key that replaces it: no allocation when it fits
    uint64_t hash;    // Hash(key)
    uint64_t count;
    uint64_t error;
    uint32_t bucket;      // the bucket of `count`
    uint32_t prev, next;  // in the bucket's list of slots
  };
  struct Bucket {
    uint64_t count;
    uint32_t first;       // its slots' list
    uint32_t prev, next;  // in the list of buckets, by count ascending
  };
  void Insert(std::string_view key, uint64_t count, uint64_t error);
  void Raise(uint32_t slot, uint64_t by);
  // Takes `slot` out of its bucket (dropping the bucket if it empties) and returns the bucket
  // after which a higher count belongs: its own if it stays, else the one before it.
  uint32_t Unlink(uint32_t slot);
  // Puts `slot` (count set) in the bucket of its count, searching forward from the bucket after
  // `after` (kNone: from the least).
  void Place(uint32_t slot, uint32_t after);
  void Rebuild();  // index_ views into this summary's slots (after a copy)

  size_t capacity_;
  uint64_t total_ = 0;
  uint64_t base_floor_ = 0;  // set by Compact/FromEntries
  std::vector<Slot> slots_;  // at most capacity_
  std::vector<Bucket> buckets_;
  std::vector<uint32_t> free_buckets_;
  uint32_t least_ = kNone;                         // the bucket of the least count
  uint32_t most_ = kNone;                          // the bucket of the highest count
  absl::flat_hash_map<uint64_t, uint32_t> index_;  // Hash(slot key) -> slot id
};

}  // namespace sluice::stats
