// An asynchronous Redis client for the hot path: a small pool of persistent connections on one
// Boost.Asio thread, RESP parsed by hiredis's reader (the I/O is ours).
//
// - Pipelining: requests are queued per connection and written in one batch per write, so many
//   checks in flight share a round trip. A request goes to the ready connection with the fewest
//   replies outstanding.
// - Timeouts: every request fails with DEADLINE_EXCEEDED once `timeout` has passed since it was
//   submitted (checked every timeout/8), whatever the connection does; a reply that arrives
//   later is read and dropped.
// - Reconnection: a connection that fails is closed, its requests fail at once, and it is
//   reconnected after an exponential backoff (backoff_initial, doubling, at most backoff_max).
//   Each new connection runs AUTH / SELECT from the URL, then `on_connect` commands.
// - Circuit breaker: a request timeout, or every connection being down, opens the circuit:
//   requests then fail at once with UNAVAILABLE instead of each waiting a timeout. It closes
//   as soon as Redis answers again (a connection completes its handshake, or a PING probe sent
//   while open, with backoff, is answered). So a dead Redis costs the requests in flight at that
//   moment one timeout; the ones after fail fast.
#pragma once

#include <hiredis/hiredis.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"

namespace sluice::redis {

// Where a Redis server is, from redis://[:password@]host:port[/db].
struct Endpoint {
  std::string host = "127.0.0.1";
  uint16_t port = 6379;
  std::string password;  // empty: no AUTH
  int db = 0;            // 0: no SELECT
};

// Parses redis://[[user]:password@]host[:port][/db] (IPv6 hosts in brackets). A user name is
// accepted for Redis 6 ACLs (AUTH user password).
absl::StatusOr<Endpoint> ParseUrl(std::string_view url, std::string* user = nullptr);

struct ClientOptions {
  Endpoint endpoint;
  std::string user;  // with endpoint.password: AUTH user password
  // Persistent connections. Pipelining makes a few enough for thousands of requests a second.
  int pool = 4;
  // Per request, from submission to its reply: the request fails with DEADLINE_EXCEEDED after it.
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
};

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
// A parsed reply. A Redis error reply (REDIS_REPLY_ERROR) is a reply, not a failed Status.
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

// Appends `args` as one RESP command (an array of bulk strings) to `out`.
void AppendCommand(std::string& out, std::span<const std::string_view> args);

// Writes one RESP command argument by argument, without building the arguments first: the hot
// path's EVALSHA. Begin(n) then exactly n Arg calls.
class CommandWriter {
 public:
  explicit CommandWriter(std::string& out) : out_(out) {}
  void Begin(size_t argc) { Header('*', argc); }
  void Arg(std::string_view arg) {
    Header('$', arg.size());
    out_.append(arg).append("\r\n");
  }
  void Arg(int64_t value) {
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof(digits), value).ptr;
    Arg(std::string_view(digits, static_cast<size_t>(end - digits)));
  }

 private:
  void Header(char kind, size_t n) {
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof(digits), n).ptr;
    out_.push_back(kind);
    out_.append(digits, end).append("\r\n");
  }
  std::string& out_;
};

class Client {
 public:
  // The replies to a request's commands in order, or why there are none: DEADLINE_EXCEEDED
  // (timeout), UNAVAILABLE (connection failed, circuit open, shutting down) or INTERNAL
  // (a protocol error).
  using Callback = absl::AnyInvocable<void(absl::StatusOr<std::vector<Reply>>) &&>;

  // Starts the client's thread and connects; never blocks on Redis.
  explicit Client(ClientOptions options);
  // Fails every outstanding request with UNAVAILABLE, closes the connections and joins the
  // thread.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends `commands` (RESP, see AppendCommand), which hold `replies` commands, back to back on
  // one connection. `done` runs exactly once, on the client's thread (never inside Execute).
  // Thread-safe.
  void Execute(std::string commands, size_t replies, Callback done);

  // Whether the circuit is closed (Redis answered last). Relaxed: advisory.
  bool available() const;

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
