// One key's state for any algorithm, in 16 bytes, and dispatch on Limit::algorithm().
#pragma once

#include <cstdint>

#include "core/bucket.h"
#include "core/concurrency.h"
#include "core/decision.h"
#include "core/fixed_window.h"
#include "core/gcra.h"
#include "core/limit.h"
#include "core/sliding_window_counter.h"
#include "core/sliding_window_log.h"

namespace sluice {

// All-zero bytes are a fresh key for every algorithm, so a store can create a slot by
// value-initializing it. The member in use is the one of the limit's algorithm; a store keeps
// one algorithm per key for the key's whole life (the algorithm is part of the key).
union AlgorithmState {
  FixedWindowState fixed_window;
  SlidingWindowCounterState sliding_window_counter;
  BucketState bucket;  // token_bucket and leaky_bucket
  GcraState gcra;
  SlidingWindowLogState* sliding_window_log;  // owned; allocated on first admit; see Release()
  ConcurrencyState* concurrency;              // likewise

  AlgorithmState() : fixed_window{} {}
};
static_assert(sizeof(AlgorithmState) == 16);

// Dispatches to the algorithm of `limit`. Not thread-safe: the caller owns `state`. `lease`
// names the slot a concurrency request takes (a hash of its lease id; other algorithms ignore
// it); Refund frees that slot.
Decision Admit(AlgorithmState& state, const Limit& limit, Micros now, int64_t cost,
               OnReject on_reject = OnReject::kChargeNothing, uint64_t lease = 0);
void Refund(AlgorithmState& state, const Limit& limit, Micros charged_at, int64_t cost,
            uint64_t lease = 0);
// Frees what `state` owns (sliding_window_log and concurrency entries) and leaves it fresh.
void Release(AlgorithmState& state, Algorithm algorithm);
// Heap bytes `state` owns beyond its 16 bytes.
size_t HeapBytes(const AlgorithmState& state, Algorithm algorithm);

}  // namespace sluice
