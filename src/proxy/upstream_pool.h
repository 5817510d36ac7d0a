// Keep-alive connections to the gateway's upstream (CONTRACT §10). One pool per io_context
// thread, used from that thread only: taking and giving back a connection takes no lock.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/tcp_stream.hpp"

namespace sluice::proxy {

// Bound to a concrete io_context executor rather than the type-erased any_io_executor, as the
// API server's sockets are (the erasure costs on every operation).
using Executor = boost::asio::io_context::executor_type;
using Stream =
    boost::beast::basic_stream<boost::asio::ip::tcp, Executor, boost::beast::unlimited_rate_policy>;

// Where the upstream is: `proxy.upstream`.
struct Upstream {
  std::string host;  // a name, or an IP address (IPv6 without brackets)
  uint16_t port = 80;
  std::string authority;  // "host:port" as the Host field writes it ("[v6]:port")
};

// "http://host[:port][/]": plain HTTP only, no path, user info, query or fragment (the gateway
// forwards each request's own target unchanged). InvalidArgument naming what is wrong; https
// is refused with a message saying TLS upstreams are not supported.
absl::StatusOr<Upstream> ParseUpstreamUrl(std::string_view url);

// One connection to the upstream and the bytes read from it but not yet parsed (a response
// may arrive in the same read as the end of the previous one only when the upstream pipelines,
// which it does not: such a connection is never pooled).
struct UpstreamConnection {
  explicit UpstreamConnection(Executor executor) : stream(executor) {}
  Stream stream;
  boost::beast::flat_buffer buffer;
  bool reused = false;  // taken from the pool (not a fresh connect)
};

class UpstreamPool {
 public:
  struct Options {
    size_t max_idle = 32;  // idle connections kept; more may be open while busy
    std::chrono::milliseconds connect_timeout{5000};
    // An idle connection older than this is closed rather than reused: upstreams close idle
    // connections on their own timers (often 5 to 60 s), and a connection closed just as a
    // request is written on it costs a retry.
    std::chrono::milliseconds max_idle_time{30'000};
  };
  using ConnectCallback =
      std::function<void(boost::system::error_code, std::unique_ptr<UpstreamConnection>)>;

  // `executor`: the thread's io_context; the pool must be used on its thread only, and be
  // destroyed before the io_context (its resolver lives on it).
  UpstreamPool(Executor executor, Upstream upstream, Options options);

  // The most recently used idle connection that still looks alive (the peer has not closed it,
  // nothing unexpected is waiting on it), or null.
  std::unique_ptr<UpstreamConnection> TakeIdle();
  // Opens a new connection: resolves the upstream's host (each time: addresses may change) and
  // connects within connect_timeout. `done` runs on the pool's thread, never inline.
  void Connect(ConnectCallback done);
  // Keeps `connection` for reuse: call only when its last exchange ended cleanly, both ways, and
  // the upstream did not ask to close. Closed instead when the pool is full.
  void Put(std::unique_ptr<UpstreamConnection> connection);

  size_t idle() const { return idle_.size(); }
  const Upstream& upstream() const { return upstream_; }

 private:
  struct Idle {
    std::unique_ptr<UpstreamConnection> connection;
    std::chrono::steady_clock::time_point since;
  };

  Executor executor_;
  const Upstream upstream_;
  const Options options_;
  boost::asio::ip::tcp::resolver resolver_;
  std::vector<Idle> idle_;  // a stack: the warmest connection on top
};

}  // namespace sluice::proxy
