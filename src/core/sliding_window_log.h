#pragma once

#include <cstdint>
#include <vector>

#include "core/decision.h"
#include "core/limit.h"

namespace sluice {

// The admitted requests of the last window, oldest first. Requests admitted at the same
// microsecond share one entry, so the log holds at most min(limit, distinct instants) entries.
class SlidingWindowLogState {
 public:
  struct Entry {
    Micros at;
    int64_t cost;
  };

  int64_t total() const { return total_; }  // sum of live entries' costs
  size_t entries() const { return log_.size() - head_; }
  size_t MemoryBytes() const { return sizeof(*this) + log_.capacity() * sizeof(Entry); }

 private:
  friend class SlidingWindowLog;
  // Entries before head_ have expired; they are compacted away once they are half the vector,
  // so expiry is O(1) amortized without a deque's per-block overhead.
  std::vector<Entry> log_;
  size_t head_ = 0;
  int64_t total_ = 0;
};

// Exact: admits while the admitted costs in (now - window, now] plus cost <= limit.
class SlidingWindowLog {
 public:
  // Drops expired entries; records the request only when it charges a non-zero cost (when it
  // admits, or with OnReject::kChargeAnyway: the total then stays at most Limit::kMaxCount).
  static Decision Admit(SlidingWindowLogState& state, const Limit& limit, Micros now, int64_t cost,
                        OnReject on_reject = OnReject::kChargeNothing);
  // Removes `cost` from the entry recorded at `charged_at`, if it is still in the log.
  static void Refund(SlidingWindowLogState& state, const Limit& limit, Micros charged_at,
                     int64_t cost);
};

}  // namespace sluice
