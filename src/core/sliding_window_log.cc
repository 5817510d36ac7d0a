#include "core/sliding_window_log.h"

#include <algorithm>

#include "core/int_math.h"

namespace sluice {

using int_math::SatAdd;
using int_math::SatSub;

namespace {

// Records `cost` at `at`, the newest instant of the log.
void Record(SlidingWindowLogState& state, std::vector<SlidingWindowLogState::Entry>& log, Micros at,
            int64_t cost) {
  if (state.entries() > 0 && log.back().at == at) {
    log.back().cost += cost;
  } else {
    log.push_back({at, cost});
  }
}

}  // namespace

Decision SlidingWindowLog::Admit(SlidingWindowLogState& state, const Limit& limit, Micros now,
                                 int64_t cost, OnReject on_reject) {
  auto& log = state.log_;
  // A clock that went back is treated as standing at the newest entry: entries stay sorted and
  // nothing expires early.
  const Micros at = state.entries() > 0 ? std::max(now, log.back().at) : now;
  const Micros shift = at - now;
  const Micros horizon = SatSub(at, limit.window());  // entries at or before it have expired
  while (state.head_ < log.size() && log[state.head_].at <= horizon) {
    state.total_ -= log[state.head_].cost;
    ++state.head_;
  }
  if (state.head_ == log.size()) {
    log.clear();
    state.head_ = 0;
  } else if (state.head_ >= 16 && state.head_ * 2 >= log.size()) {
    log.erase(log.begin(), log.begin() + static_cast<std::ptrdiff_t>(state.head_));
    state.head_ = 0;
  }

  Decision d;
  d.limit = limit.limit();
  if (cost > limit.limit()) {
    d.allowed = false;
    d.cost_exceeds_limit = true;
  } else if (state.total_ + cost <= limit.limit()) {
    if (cost > 0) {
      Record(state, log, at, cost);
      state.total_ += cost;
    }
  } else {
    d.allowed = false;
    // The oldest entries leave first; wait until enough cost has left to make room.
    const int64_t must_free = state.total_ + cost - limit.limit();
    int64_t freed = 0;
    for (size_t i = state.head_; i < log.size(); ++i) {
      freed += log[i].cost;
      if (freed >= must_free) {
        d.retry_after = SatAdd(SatSub(SatAdd(log[i].at, limit.window()), at), shift);
        break;
      }
    }
  }
  if (!d.allowed && on_reject == OnReject::kChargeAnyway) {
    // Debt: the entry is logged like an admitted one; the total stays <= kMaxCount.
    const int64_t charged = std::min(cost, Limit::kMaxCount - state.total_);
    if (charged > 0) {
      Record(state, log, at, charged);
      state.total_ += charged;
    }
  }
  d.remaining = std::max<int64_t>(0, limit.limit() - state.total_);
  if (state.total_ > 0) {
    d.reset_after = SatAdd(SatSub(SatAdd(log.back().at, limit.window()), at), shift);
  }
  return d;
}

void SlidingWindowLog::Refund(SlidingWindowLogState& state, const Limit& limit, Micros charged_at,
                              int64_t cost) {
  auto& log = state.log_;
  auto first = log.begin() + static_cast<std::ptrdiff_t>(state.head_);
  auto it =
      std::lower_bound(first, log.end(), charged_at,
                       [](const SlidingWindowLogState::Entry& e, Micros t) { return e.at < t; });
  if (it == log.end() || it->at != charged_at) return;
  const int64_t given_back = std::min(cost, it->cost);
  it->cost -= given_back;
  state.total_ -= given_back;
  if (it->cost == 0) log.erase(it);
}

}  // namespace sluice
