// An asynchronous Redis client for the hot path: a small pool of persistent connections
// (connection.h) on one Boost.Asio thread.
//
// - Pipelining: requests are queued per connection and written in one batch per write, so many
//   checks in flight share a round trip. A request goes to the ready connection with the fewest
//   replies outstanding.
// - Deadlines: each request carries the absolute deadline of the check it belongs to (not a
//   timeout of its own), and fails with DEADLINE_EXCEEDED once it has passed (checked every
//   timeout/8), whatever the connection does; a reply that arrives later is read and dropped.
//   A request whose deadline has already passed fails at once.
// - Reconnection: a connection that fails is closed, its requests fail at once, and it is
//   reconnected after an exponential backoff (backoff_initial, doubling, at most backoff_max).
//   Each new connection runs AUTH / SELECT from the URL, then `on_connect` commands.
// - Circuit breaker (circuit_breaker.h): a request timing out after a fair wait, or every
//   connection being down, opens it: requests then fail at once with UNAVAILABLE instead of
//   each waiting for its deadline. It closes as soon as Redis answers again (a connection
//   completes its handshake, or a PING probe sent while open, with backoff, is answered).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "store/redis/request.h"
#include "store/redis/resp.h"
#include "store/redis/url.h"

namespace sluice::redis {

struct ClientOptions {
  Endpoint endpoint;
  std::string user;  // with endpoint.password: AUTH user password
  // Persistent connections. Pipelining makes a few enough for thousands of requests a second.
  int pool = 4;
  // The time a request is usually given (the store's timeout): sets how often deadlines are
  // checked (timeout/8), the deadline of probes, and how long a request must have waited for
  // its timing out to open the circuit (timeout/2).
  std::chrono::milliseconds timeout{50};
  // TCP connect plus handshake (AUTH, SELECT, on_connect) of one connection attempt.
  std::chrono::milliseconds connect_timeout{1000};
  // Reconnection and open-circuit probe delays: backoff_initial, doubling per failed attempt,
  // at most backoff_max (so a Redis that comes back is used again within about backoff_max).
  std::chrono::milliseconds backoff_initial{10};
  std::chrono::milliseconds backoff_max{1000};
  // A connection whose oldest request has waited this long is presumed dead (a host that
  // vanished without closing the socket) and is reconnected.
  std::chrono::milliseconds dead_after{2000};
  // Commands each new connection runs after AUTH/SELECT, before it takes requests (e.g. SCRIPT
  // LOAD). An error reply fails the connection attempt.
  std::vector<std::vector<std::string>> on_connect;
  // Then these, whose errors are ignored (e.g. FUNCTION LOAD: "already exists", or a Redis 6
  // without Functions).
  std::vector<std::vector<std::string>> on_connect_optional;
};

class Client {
 public:
  // The replies to a request's commands in order, or why there are none: DEADLINE_EXCEEDED
  // (its deadline passed), UNAVAILABLE (connection failed, circuit open, shutting down) or
  // INTERNAL (a protocol error).
  using Callback = redis::Callback;

  // Starts the client's thread and connects; never blocks on Redis.
  explicit Client(ClientOptions options);
  // Fails every outstanding request with UNAVAILABLE, closes the connections and joins the
  // thread. Must not run on the client's own thread (not from inside a callback).
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends `commands` (RESP, see AppendCommand), which hold `replies` commands, back to back on
  // one connection, to be answered by `deadline`. `done` runs exactly once, on the client's
  // thread (never inside Execute). Thread-safe.
  void Execute(std::string commands, size_t replies, Deadline deadline, Callback done);

  // Whether the circuit is closed (Redis answered last). Relaxed: advisory.
  bool available() const;

  // Requests Execute took whose `done` has not been called yet. Relaxed: for draining a client
  // before dropping it, and for tests.
  int64_t outstanding() const;

  // Points the client at another host and port (a Sentinel failover): every connection is
  // closed, failing what it has in flight with UNAVAILABLE, and reconnects there at once. The
  // handshake (AUTH, SELECT, on_connect) is the same. A client made with an empty host waits,
  // failing requests with UNAVAILABLE, until the first SetAddress. Thread-safe.
  void SetAddress(std::string host, uint16_t port);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace sluice::redis
