// The gRPC port's acceptor. gRPC 1.51's own listener gives up for good at the first accept
// error it does not expect (EMFILE: out of file descriptors) and has no cap on connections, so
// Sluice accepts the connections itself, as the HTTP server does, and hands each one to the
// grpc::Server (grpc::AddInsecureChannelFromFd):
//  - while accept fails for want of resources it waits (net::AcceptBackoff) and tries again:
//    the listener recovers once descriptors are free, and exhausted() says so meanwhile;
//  - net::ConnectionCaps: at most max_connections, and max_connections_per_address from one
//    client address; a connection over a cap is closed as soon as it is accepted.
// gRPC says nothing when it closes a connection, so the acceptor keeps a duplicate of each
// connection's descriptor in an epoll set, waiting for nothing but the hang-up: gRPC shuts a
// socket down (shutdown(SHUT_RDWR)) before it closes it, and the peer's reset hangs it up too;
// then the duplicate is closed and the connection's place given back. Each gRPC connection
// thus holds two descriptors.
// The duplicate also lets the listener end a connection gRPC would not: one that floods resets
// (api/grpc/reset_guard.h), whose client address is then refused for a while.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "api/grpc/reset_guard.h"
#include "net/connection_caps.h"

namespace sluice::grpc_api {

class Listener {
 public:
  struct Options {
    // host:port ("[::1]:8081"); port 0 binds a free port. A host name binds every address it
    // resolves to, on one port.
    std::string address;
    net::ConnectionCaps::Options caps;
    ResetGuard::Options resets;
  };
  // `hand_off` takes each accepted connection's descriptor (it owns it from then on); it is
  // called on the acceptor's thread.
  Listener(Options options, std::function<void(int fd)> hand_off);
  ~Listener();  // Stop()
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Binds and listens; fails naming the address and the reason (in use, not local,
  // malformed). Connections wait in the backlog until Start.
  absl::Status Bind();
  uint16_t port() const { return port_; }
  // Starts the acceptor thread.
  void Start();
  // Ends the acceptor thread and closes the listening sockets: new connections are refused
  // from here on. Connections already handed off are not touched (their duplicates are
  // closed). Idempotent; not thread-safe with Start.
  void Stop();

  // A call on the connection gRPC names `peer` ("fd:17") ended before its request message.
  // Thread-safe (gRPC's threads call it).
  void NoteEarlyEnd(std::string_view peer);

  bool exhausted() const { return exhausted_.load(std::memory_order_relaxed); }
  size_t connections() const { return caps_->connections(); }

 private:
  void Run();
  // Accepts what is pending on `fd` (a batch at most); the errno when accept failed for want
  // of resources, else 0.
  int AcceptAll(int fd);
  // Applies the caps to a new connection and hands it off; false when no descriptor was left
  // to watch it with (it is closed then).
  bool Admit(int fd, const sockaddr* peer);
  void SetListening(bool on);  // whether epoll reports the listening sockets

  const Options options_;
  const std::function<void(int)> hand_off_;
  const std::shared_ptr<net::ConnectionCaps> caps_;
  std::vector<int> listen_fds_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // an eventfd: Stop's knock
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> exhausted_{false};
  // Used by the acceptor thread only (and by Stop once it has ended).
  net::AcceptBackoff backoff_;
  // Each handed-off connection: the duplicate descriptor → its place under the caps and the
  // descriptor gRPC has.
  struct Watched {
    net::ConnectionCaps::Slot slot;
    int fd;
  };
  std::unordered_map<int, Watched> watched_;
  ResetGuard resets_;
};

}  // namespace sluice::grpc_api
