// Time for Sluice: an integer microsecond clock.
//
// Algorithms never read a clock: callers read one once at the edge, through an injected Clock&,
// and pass `now` in. Tests use ManualClock and never sleep.
#pragma once

#include <atomic>
#include <cstdint>

namespace sluice {

// Microseconds. Absolute times are microseconds since the Unix epoch: windows of fixed_window and
// sliding_window_counter are aligned to it, so every server computes the same windows.
using Micros = int64_t;

inline constexpr Micros kMicrosPerMilli = 1'000;
inline constexpr Micros kMicrosPerSecond = 1'000'000;

class Clock {
 public:
  virtual ~Clock() = default;
  // Microseconds since the Unix epoch. Thread-safe. Not guaranteed monotonic: the algorithms
  // treat a clock that goes backwards conservatively (never admitting more than the limit).
  virtual Micros NowMicros() const = 0;
};

// CLOCK_REALTIME. Wall-clock time is what epoch-aligned windows need; a step backwards (NTP) is
// handled by the algorithms, a step forwards only refills early.
class SystemClock final : public Clock {
 public:
  Micros NowMicros() const override;
};

// A clock that moves only when told to. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(Micros now = 0) : now_(now) {}
  Micros NowMicros() const override { return now_.load(std::memory_order_relaxed); }
  void Set(Micros now) { now_.store(now, std::memory_order_relaxed); }
  void Advance(Micros delta) { now_.fetch_add(delta, std::memory_order_relaxed); }

 private:
  // Relaxed: readers need the value, not ordering with other memory.
  std::atomic<Micros> now_;
};

}  // namespace sluice
