// Rapid reset (CVE-2023-44487): a client opens a call with HEADERS and cancels it at once with
// RST_STREAM, over and over on one connection. Each such call costs the server a call's set-up
// (~37 µs of CPU here) and the client almost nothing; gRPC 1.51 does not limit it, so one
// Python client kept both cores of a test machine 80 % busy.
//
// The guard gives each gRPC connection an allowance of calls that end before their request
// message arrives (reset, or closed empty): `burst`, refilled at `per_second`. A connection
// past it is shut down (gRPC sees the socket end and cancels its calls) and its client address
// is refused for `ban`: reconnecting at once would otherwise buy a fresh allowance. Clients that
// send their request with the call's headers, as every gRPC client and Envoy do, never spend it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "base/mutex.h"

namespace sluice::grpc_api {

class ResetGuard {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  struct Options {
    double burst = 100;
    double per_second = 10;
    std::chrono::steady_clock::duration ban = std::chrono::seconds(10);
  };
  // What NoteEarlyEnd did to a connection over its allowance.
  struct Shutdown {
    std::string address;  // the client's, now refused for `ban`
    uint64_t early_ends;  // calls that ended early on the connection, this one included
  };

  explicit ResetGuard(Options options, Clock clock = std::chrono::steady_clock::now)
      : options_(options), clock_(std::move(clock)) {}

  // A connection from `address` handed to gRPC as `fd` and watched through `dup_fd` (a
  // duplicate descriptor of the same socket, which the guard may shut down).
  void Opened(int fd, int dup_fd, std::string address);
  // Before `dup_fd` is closed. An entry for `fd` with another duplicate (the number was reused by
  // a newer connection) is left alone.
  void Closed(int fd, int dup_fd);
  // Whether new connections from `address` are refused. Thread-safe, as are all of these.
  bool Banned(const std::string& address);
  // A call on connection `fd` (gRPC's peer "fd:N") ended before its request message. Past the
  // allowance: shuts the connection's socket down (under the lock, so never a reused number),
  // bans the address and says so; otherwise (or for a connection unknown by now) nothing.
  std::optional<Shutdown> NoteEarlyEnd(int fd);

  size_t banned_addresses();  // for tests

 private:
  struct Connection {
    int dup_fd;
    std::string address;
    double tokens;
    std::chrono::steady_clock::time_point refilled;
    uint64_t early_ends = 0;
  };

  const Options options_;
  const Clock clock_;
  Mutex mu_;
  absl::flat_hash_map<int, Connection> connections_ ABSL_GUARDED_BY(mu_);
  // Address → end of its ban. Pruned of ended bans when it grows.
  absl::flat_hash_map<std::string, std::chrono::steady_clock::time_point> banned_
      ABSL_GUARDED_BY(mu_);
};

// The connection's descriptor in gRPC's peer string of a connection handed over from a
// descriptor ("fd:17" → 17); -1 for any other peer.
int PeerFd(std::string_view peer);

}  // namespace sluice::grpc_api
