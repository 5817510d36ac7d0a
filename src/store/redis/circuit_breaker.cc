#include "store/redis/circuit_breaker.h"

#include <algorithm>

namespace sluice::redis {

bool CircuitBreaker::RequestTimedOut(TimePoint now, Duration waited) {
  if (waited < options_.min_wait) return false;
  return Open(now);
}

bool CircuitBreaker::NoConnection(TimePoint now) { return Open(now); }

bool CircuitBreaker::Open(TimePoint now) {
  if (open_) return false;
  open_ = true;
  probe_interval_ = options_.probe_initial;
  next_probe_ = now + probe_interval_;
  return true;
}

bool CircuitBreaker::Answered() {
  if (!open_) return false;
  open_ = false;
  return true;
}

bool CircuitBreaker::ShouldProbe(TimePoint now) {
  if (!open_ || now < next_probe_) return false;
  probe_interval_ = std::min(options_.probe_max, probe_interval_ * 2);
  next_probe_ = now + probe_interval_;
  return true;
}

}  // namespace sluice::redis
