#include "core/concurrency.h"

#include <algorithm>

namespace sluice {

namespace {

void Prune(std::vector<ConcurrencyState::Entry>& entries, Micros now) {
  std::erase_if(entries, [now](const ConcurrencyState::Entry& e) { return e.expires_at <= now; });
}

}  // namespace

Decision Concurrency::Admit(ConcurrencyState& state, const Limit& limit, Micros now, int64_t cost,
                            uint64_t lease, OnReject /*on_reject*/) {
  auto& entries = state.entries_;
  Prune(entries, now);
  const auto held_by_lease = std::find_if(entries.begin(), entries.end(),
                                          [lease](const auto& e) { return e.lease == lease; });
  const bool renew = cost > 0 && held_by_lease != entries.end();
  const int64_t held = static_cast<int64_t>(entries.size());
  const int64_t wanted = cost > 0 && !renew ? 1 : 0;
  Decision d;
  d.limit = limit.limit();
  d.allowed = held + wanted <= limit.limit();
  if (cost > 0 && d.allowed) {
    const Micros expires_at = now + limit.window();
    if (renew) {
      held_by_lease->expires_at = expires_at;
    } else {
      entries.push_back({lease, expires_at});
    }
  }
  const int64_t after = static_cast<int64_t>(entries.size());
  d.remaining = std::max<int64_t>(0, limit.limit() - after);
  Micros first = 0;
  Micros last = 0;
  for (const auto& e : entries) {
    first = first == 0 ? e.expires_at : std::min(first, e.expires_at);
    last = std::max(last, e.expires_at);
  }
  d.reset_after = entries.empty() ? 0 : last - now;
  if (!d.allowed) d.retry_after = std::min(first - now, kMaxRetryAfter);
  return d;
}

bool Concurrency::Release(ConcurrencyState& state, uint64_t lease) {
  auto& entries = state.entries_;
  auto it = std::find_if(entries.begin(), entries.end(),
                         [lease](const auto& e) { return e.lease == lease; });
  if (it == entries.end()) return false;
  *it = entries.back();
  entries.pop_back();
  return true;
}

bool Concurrency::Idle(const ConcurrencyState& state, Micros now) {
  return std::all_of(state.entries_.begin(), state.entries_.end(),
                     [now](const auto& e) { return e.expires_at <= now; });
}

}  // namespace sluice
