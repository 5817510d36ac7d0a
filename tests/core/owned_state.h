// Test helper: AlgorithmState with value semantics (deep copies of sliding_window_log), so a
// test can probe "what would happen at time t" on a copy without touching the real state.
#pragma once

#include "core/algorithm_state.h"

namespace sluice::testing {

class OwnedState {
 public:
  explicit OwnedState(Algorithm algorithm) : algorithm_(algorithm) {}
  OwnedState(const OwnedState& other) : algorithm_(other.algorithm_), state_(other.state_) {
    if (algorithm_ == Algorithm::kSlidingWindowLog && other.state_.sliding_window_log) {
      state_.sliding_window_log = new SlidingWindowLogState(*other.state_.sliding_window_log);
    }
  }
  OwnedState& operator=(const OwnedState&) = delete;
  ~OwnedState() { Release(state_, algorithm_); }

  Decision Admit(const Limit& limit, Micros now, int64_t cost,
                 OnReject on_reject = OnReject::kChargeNothing) {
    return sluice::Admit(state_, limit, now, cost, on_reject);
  }
  void Refund(const Limit& limit, Micros charged_at, int64_t cost) {
    sluice::Refund(state_, limit, charged_at, cost);
  }

  // How many requests of `cost` a copy of this state admits at `now`, stopping at `cap`.
  int64_t CountAdmits(const Limit& limit, Micros now, int64_t cost, int64_t cap) const {
    OwnedState copy(*this);
    int64_t n = 0;
    while (n < cap && copy.Admit(limit, now, cost).allowed) ++n;
    return n;
  }
  // Whether a copy of this state admits `cost` at `now`.
  bool WouldAdmit(const Limit& limit, Micros now, int64_t cost) const {
    OwnedState copy(*this);
    return copy.Admit(limit, now, cost).allowed;
  }

 private:
  Algorithm algorithm_;
  AlgorithmState state_;
};

inline Limit MakeLimit(Algorithm algorithm, int64_t limit, Micros window, int64_t burst = 0) {
  auto l =
      Limit::Create({.algorithm = algorithm, .limit = limit, .window = window, .burst = burst});
  if (!l.ok()) std::abort();
  return *l;
}

}  // namespace sluice::testing
