#include "core/algorithm_state.h"

namespace sluice {

Decision Admit(AlgorithmState& state, const Limit& limit, Micros now, int64_t cost,
               OnReject on_reject, uint64_t lease) {
  switch (limit.algorithm()) {
    case Algorithm::kFixedWindow:
      return FixedWindow::Admit(state.fixed_window, limit, now, cost, on_reject);
    case Algorithm::kSlidingWindowCounter:
      return SlidingWindowCounter::Admit(state.sliding_window_counter, limit, now, cost, on_reject);
    case Algorithm::kSlidingWindowLog:
      if (state.sliding_window_log == nullptr) {
        state.sliding_window_log = new SlidingWindowLogState();
      }
      return SlidingWindowLog::Admit(*state.sliding_window_log, limit, now, cost, on_reject);
    case Algorithm::kTokenBucket:
      return TokenBucket::Admit(state.bucket, limit, now, cost, on_reject);
    case Algorithm::kGcra:
      return Gcra::Admit(state.gcra, limit, now, cost, on_reject);
    case Algorithm::kLeakyBucket:
      return LeakyBucket::Admit(state.bucket, limit, now, cost, on_reject);
    case Algorithm::kConcurrency:
      if (state.concurrency == nullptr) state.concurrency = new ConcurrencyState();
      return Concurrency::Admit(*state.concurrency, limit, now, cost, lease, on_reject);
  }
  return Decision{};
}

void Refund(AlgorithmState& state, const Limit& limit, Micros charged_at, int64_t cost,
            uint64_t lease) {
  switch (limit.algorithm()) {
    case Algorithm::kFixedWindow:
      return FixedWindow::Refund(state.fixed_window, limit, charged_at, cost);
    case Algorithm::kSlidingWindowCounter:
      return SlidingWindowCounter::Refund(state.sliding_window_counter, limit, charged_at, cost);
    case Algorithm::kSlidingWindowLog:
      if (state.sliding_window_log != nullptr) {
        SlidingWindowLog::Refund(*state.sliding_window_log, limit, charged_at, cost);
      }
      return;
    case Algorithm::kTokenBucket:
      return TokenBucket::Refund(state.bucket, limit, charged_at, cost);
    case Algorithm::kGcra:
      return Gcra::Refund(state.gcra, limit, charged_at, cost);
    case Algorithm::kLeakyBucket:
      return LeakyBucket::Refund(state.bucket, limit, charged_at, cost);
    case Algorithm::kConcurrency:
      if (state.concurrency != nullptr) Concurrency::Release(*state.concurrency, lease);
      return;
  }
}

void Release(AlgorithmState& state, Algorithm algorithm) {
  if (algorithm == Algorithm::kSlidingWindowLog) delete state.sliding_window_log;
  if (algorithm == Algorithm::kConcurrency) delete state.concurrency;
  state = AlgorithmState();
}

size_t HeapBytes(const AlgorithmState& state, Algorithm algorithm) {
  if (algorithm == Algorithm::kSlidingWindowLog && state.sliding_window_log != nullptr) {
    return state.sliding_window_log->MemoryBytes();
  }
  if (algorithm == Algorithm::kConcurrency && state.concurrency != nullptr) {
    return state.concurrency->MemoryBytes();
  }
  return 0;
}

}  // namespace sluice
