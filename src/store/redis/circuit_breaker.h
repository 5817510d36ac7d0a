// The Redis client's circuit breaker, as a pure state machine: the caller reports what happened
// and when (`now`, a steady clock), and asks what to do. No clock reads, no I/O, no threads.
//
// Closed: requests go to Redis. Evidence that Redis is not answering opens it: a request that
// had a fair chance (at least `min_wait` on its connection) timing out, or no connection being
// up or on its way up. Open: requests fail at once instead of each waiting for its deadline, and
// a probe (the client sends a PING) is due after probe_initial, then after twice the last
// interval, at most probe_max. Any answer from Redis (a reply, a probe's, a connection finishing
// its handshake) closes it. So a dead Redis costs the requests in flight when it died one
// timeout; the ones after fail fast.
#pragma once

#include <chrono>

namespace sluice::redis {

class CircuitBreaker {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  using Duration = std::chrono::steady_clock::duration;

  struct Options {
    // A timed-out request opens the circuit only if it waited at least this long on its
    // connection: one that timed out sooner had spent its check's budget elsewhere (redirects,
    // a reload) and says little about this Redis.
    Duration min_wait = std::chrono::milliseconds(25);
    std::chrono::milliseconds probe_initial{10};
    std::chrono::milliseconds probe_max{1000};
  };

  explicit CircuitBreaker(Options options) : options_(options) {}

  bool open() const { return open_; }

  // A request timed out after waiting `waited` on its connection. True if this opened the
  // circuit.
  bool RequestTimedOut(TimePoint now, Duration waited);
  // No connection is up and none is connecting (or there is no address to connect to). True if
  // this opened the circuit.
  bool NoConnection(TimePoint now);
  // Redis answered something. True if this closed the circuit.
  bool Answered();

  // Whether to send a probe at `now`: open, and the probe due. If so, the next one is due after
  // twice the last interval (at most probe_max).
  bool ShouldProbe(TimePoint now);
  // When the next probe is due; TimePoint::max() while closed.
  TimePoint next_probe() const { return open_ ? next_probe_ : TimePoint::max(); }

 private:
  bool Open(TimePoint now);

  const Options options_;
  bool open_ = false;
  std::chrono::milliseconds probe_interval_{0};
  TimePoint next_probe_{};
};

}  // namespace sluice::redis
