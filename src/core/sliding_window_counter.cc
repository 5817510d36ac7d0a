#include "core/sliding_window_counter.h"

#include <algorithm>

#include "core/int_math.h"

namespace sluice {

using int_math::FloorDiv;
using int_math::Saturate;

Decision SlidingWindowCounter::Admit(SlidingWindowCounterState& state, const Limit& limit,
                                     Micros now, int64_t cost, OnReject on_reject) {
  const Micros window = limit.window();
  int64_t index = static_cast<int64_t>(FloorDiv(now, window));
  Micros elapsed = now - static_cast<Micros>(static_cast<__int128>(index) * window);
  Micros shift = 0;  // how far the clock went back behind the newest window seen
  if (index < state.window_index) {
    // Evaluate at the start of the newest window seen: the previous window still weighs fully,
    // so a clock going back can only make the estimate stricter.
    shift = Saturate(static_cast<__int128>(state.window_index) * window - now);
    index = state.window_index;
    elapsed = 0;
  }
  int64_t current = 0;
  int64_t previous = 0;
  if (index == state.window_index) {
    current = state.current;
    previous = state.previous;
  } else if (index == state.window_index + 1) {
    previous = state.current;
  }

  // Everything below is scaled by `window` to stay in integers.
  const __int128 capacity = static_cast<__int128>(limit.limit()) * window;
  auto used = [&] {
    return static_cast<__int128>(previous) * (window - elapsed) +
           static_cast<__int128>(current) * window;
  };

  Decision d;
  d.limit = limit.limit();
  if (cost > limit.limit()) {
    d.allowed = false;
    d.cost_exceeds_limit = true;
  } else if (used() + static_cast<__int128>(cost) * window <= capacity) {
    current += cost;
    if (cost > 0) {
      state.window_index = index;
      state.current = static_cast<uint32_t>(current);  // <= limit <= 2^32 - 1
      state.previous = static_cast<uint32_t>(previous);
    }
  } else {
    d.allowed = false;
    const __int128 room = limit.limit() - current - cost;  // left in this window at e = window
    __int128 wait;
    if (room >= 0) {
      // previous * (window - e) <= room * window  <=>  e >= window - floor(room * window /
      // previous)
      wait = window - FloorDiv(room * window, previous) - elapsed;
    } else {
      // Not this window: in the next one `current` becomes the previous count, decaying.
      __int128 e_next = 0;
      if (current > 0) {
        e_next = std::max<__int128>(
            0, window - FloorDiv(static_cast<__int128>(limit.limit() - cost) * window, current));
      }
      wait = (window - elapsed) + e_next;
    }
    d.retry_after = Saturate(wait + shift);
  }
  if (!d.allowed && on_reject == OnReject::kChargeAnyway && cost > 0) {
    // Debt: the current window's count above the limit, weighing on the next window too.
    current = std::min<int64_t>(current + cost, UINT32_MAX);
    state.window_index = index;
    state.current = static_cast<uint32_t>(current);
    state.previous = static_cast<uint32_t>(previous);
  }
  d.remaining = static_cast<int64_t>(std::max<__int128>(0, FloorDiv(capacity - used(), window)));
  if (current > 0) {
    d.reset_after = Saturate(static_cast<__int128>(2) * window - elapsed + shift);
  } else if (previous > 0) {
    d.reset_after = Saturate(static_cast<__int128>(window) - elapsed + shift);
  }
  return d;
}

void SlidingWindowCounter::Refund(SlidingWindowCounterState& state, const Limit& limit,
                                  Micros charged_at, int64_t cost) {
  const int64_t index = static_cast<int64_t>(FloorDiv(charged_at, limit.window()));
  if (index == state.window_index) {
    state.current = static_cast<uint32_t>(std::max<int64_t>(0, int64_t{state.current} - cost));
  } else if (index + 1 == state.window_index) {
    state.previous = static_cast<uint32_t>(std::max<int64_t>(0, int64_t{state.previous} - cost));
  }
}

}  // namespace sluice
