// `algorithm: concurrency` (CONTRACT §10): at most `limit` requests in flight per key. A slot is
// held from the check that admits it until its release, or until it expires `lease_ttl` after the
// check (the limit's window), so that a caller that crashed never holds it for ever.
#pragma once

#include <cstdint>
#include <vector>

#include "core/decision.h"
#include "core/limit.h"

namespace sluice {

// The slots held on one key: one entry per admitted request, by lease.
class ConcurrencyState {
 public:
  struct Entry {
    uint64_t lease;     // a hash of the request's lease id; never 0
    Micros expires_at;  // the slot is free at and after this
  };

  size_t held() const { return entries_.size(); }  // expired entries included until pruned
  size_t MemoryBytes() const { return sizeof(*this) + entries_.capacity() * sizeof(Entry); }

 private:
  friend class Concurrency;
  std::vector<Entry> entries_;  // unordered: removal swaps with the last
};

// The decision for a concurrency key. With cost > 0 the request asks for one slot (cost is not a
// weight: any cost from 1 up holds one slot); with cost 0 it only reads. Decision fields:
//   allowed      held + 1 <= limit (a read: held <= limit, i.e. the key is not over)
//   remaining    limit - held after this request, at least 0
//   reset_after  until the last slot held expires (0 when none is held)
//   retry_after  when rejected: until the first slot expires, at most 1 s — slots are normally
//                released long before they expire, so the hint never sends a caller away for
//                the whole lease_ttl
class Concurrency {
 public:
  static constexpr Micros kMaxRetryAfter = kMicrosPerSecond;

  // Drops expired slots, then takes one for `lease` when the request asks for one and is
  // admitted. Never over the limit: a slot is held only by a request that was let through, so
  // OnReject::kChargeAnyway changes nothing here. A lease already held is renewed rather than
  // counted twice.
  static Decision Admit(ConcurrencyState& state, const Limit& limit, Micros now, int64_t cost,
                        uint64_t lease, OnReject on_reject = OnReject::kChargeNothing);
  // Frees the slot of `lease`, if it is held. Returns whether it was.
  static bool Release(ConcurrencyState& state, uint64_t lease);
  // Whether nothing is held any more at `now` (the state can be forgotten).
  static bool Idle(const ConcurrencyState& state, Micros now);
};

}  // namespace sluice
