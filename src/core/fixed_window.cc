#include "core/fixed_window.h"

#include <algorithm>

#include "core/int_math.h"

namespace sluice {

using int_math::SatMul;
using int_math::SatSub;

Decision FixedWindow::Admit(FixedWindowState& state, const Limit& limit, Micros now, int64_t cost,
                            OnReject on_reject) {
  const Micros window = limit.window();
  int64_t index = static_cast<int64_t>(int_math::FloorDiv(now, window));
  int64_t count = 0;
  if (index <= state.window_index) {  // same window, or the clock went back: stay in the newest
    index = state.window_index;
    count = state.count;
  }
  const Micros until_end = SatSub(SatMul(index + 1, window), now);

  Decision d;
  d.limit = limit.limit();
  if (cost > limit.limit()) {
    d.allowed = false;
    d.cost_exceeds_limit = true;
  } else if (count + cost <= limit.limit()) {  // both <= kMaxCount (2^53): no overflow
    count += cost;
    if (cost > 0) {
      state.window_index = index;
      state.count = count;
    }
  } else {
    d.allowed = false;
    d.retry_after = until_end;  // the next window starts empty and cost <= limit
  }
  if (!d.allowed && on_reject == OnReject::kChargeAnyway && cost > 0) {
    count = std::min(count + cost, Limit::kMaxCount);  // debt, until the window ends
    state.window_index = index;
    state.count = count;
  }
  d.remaining = std::max<int64_t>(0, limit.limit() - count);
  d.reset_after = count > 0 ? until_end : 0;
  return d;
}

void FixedWindow::Refund(FixedWindowState& state, const Limit& limit, Micros charged_at,
                         int64_t cost) {
  if (int_math::FloorDiv(charged_at, limit.window()) == state.window_index) {
    state.count = std::max<int64_t>(0, state.count - cost);
  }
}

}  // namespace sluice
