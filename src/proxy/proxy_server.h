// Gateway mode (CONTRACT §10): a streaming HTTP/1.1 reverse proxy on Boost.Beast. Each request
// is checked by the Limiter before it goes upstream; refusals are Sluice's own 429/403/503 and
// never reach the upstream; allowed requests and their answers stream through a fixed buffer
// per connection (never a whole body in memory), with the limit headers of §5 added.
//
// Threads: one io_context per thread, each with its own UpstreamPool; a client connection and
// the upstream connection serving it live on one thread, so neither the session nor the pool
// takes a lock. The Limiter's answer may come from another thread and is dispatched back.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "limiter/limiter.h"
#include "net/connection_caps.h"
#include "obs/log_throttle.h"
#include "obs/metrics.h"
#include "proxy/identity.h"
#include "proxy/upstream_pool.h"

namespace sluice::proxy {

struct ProxyOptions {
  std::string address = "0.0.0.0";
  uint16_t port = 8000;  // 0: any free port (see ProxyServer::port())
  Upstream upstream;
  // The upstream's response header must arrive within this of the request's end (else 504),
  // and no body may stall longer than this in either direction, on either side (else the
  // connections are closed).
  std::chrono::milliseconds timeout{30'000};
  std::chrono::milliseconds connect_timeout{5'000};  // else 502
  // A client's request header must arrive within this, counted from the end of the previous
  // response (an idle keep-alive connection is closed after it; a slowloris client cannot hold
  // a connection longer).
  std::chrono::milliseconds header_timeout{10'000};
  size_t upstream_connections = 32;  // idle keep-alive connections kept per thread
  size_t threads = 0;                // 0: one per CPU this process may run on
  size_t max_connections = 10'000;   // client connections, as the API listener's caps
  size_t max_connections_per_address = 1'000;
  // The client's header block (CONTRACT §5's limits): over either, 431.
  size_t max_header_bytes = 16 * 1024;
  size_t max_header_fields = 100;
  IdentityConfig identity;
  TrustedProxies trusted_proxies;
};

// What the gateway asks of the limiter: a check, and giving back a lease. The server passes the
// Limiter's own (Of); tests pass fakes, to see leases and holds the rules cannot make yet.
struct ProxyLimiter {
  // Limiter::Check: `done` runs exactly once, on any thread, possibly inline.
  std::function<void(CheckRequest, Limiter::Callback done)> check;
  // Limiter::Release of a CheckResult::lease_id, its answer ignored.
  std::function<void(const std::string& lease_id)> release;
  // The same, calling `then` (on any thread) once the store has answered. Used when the
  // upstream's answer is complete: the slots are free before the client has the last byte, so a
  // client that sends its next request at once finds them free. Empty: `release`, then go on.
  std::function<void(const std::string& lease_id, std::function<void()> then)> release_then;

  static ProxyLimiter Of(Limiter& limiter);  // `limiter` must outlive what is made of it
};

// How a proxied request ended: the `result` label of sluice_proxy_requests_total.
enum class ProxyResult : uint8_t {
  kForwarded,        // the upstream's answer was relayed, whole
  kRejected,         // 429 from the rules
  kBlocked,          // 403 from the deny list
  kUnavailable,      // 503: the store failed and on_failure is fail_closed
  kUpstreamError,    // 502, or the upstream failed mid-answer (client connection closed)
  kUpstreamTimeout,  // 504
  kBadRequest,       // 400/431/501 from the gateway's own checks; never reached the upstream
  kClientClosed,     // the client went (or stalled past the timeout) before the end
};
inline constexpr size_t kNumProxyResults = 8;
std::string_view ProxyResultName(ProxyResult result);

class ProxyServer {
 public:
  // `metrics` must outlive the ProxyServer.
  ProxyServer(ProxyOptions options, ProxyLimiter limiter, obs::Metrics& metrics);
  ~ProxyServer();  // Stop(0)
  ProxyServer(const ProxyServer&) = delete;
  ProxyServer& operator=(const ProxyServer&) = delete;

  // Binds and starts serving on background threads. Fails if the address cannot be bound.
  absl::Status Start();
  uint16_t port() const { return port_; }
  // Stops accepting, lets requests in flight finish (at most `grace`), then stops: what is
  // still open is closed, and the leases it held are released. Idempotent.
  void Stop(std::chrono::milliseconds grace);
  // Whether accepting fails for want of resources (out of file descriptors). Thread-safe.
  bool exhausted() const { return accept_exhausted_.load(std::memory_order_relaxed); }

  // Shared with sessions.
  struct State {
    State(ProxyOptions o, ProxyLimiter l) : options(std::move(o)), limiter(std::move(l)) {}
    const ProxyOptions options;
    const ProxyLimiter limiter;
    std::array<prometheus::Counter*, kNumProxyResults> requests{};
    prometheus::Histogram* upstream_duration = nullptr;
    std::shared_ptr<net::ConnectionCaps> caps;
    std::atomic<size_t> in_flight{0};  // requests between their header and their end
    std::atomic<bool> draining{false};
    obs::LogThrottle upstream_log{10};  // upstream_error lines: at most 10 a second
  };

 private:
  void Accept();
  void AcceptLater(const boost::system::error_code& error);

  std::shared_ptr<State> state_;
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<std::unique_ptr<UpstreamPool>> pools_;  // pools_[i] lives on contexts_[i]
  std::vector<std::thread> threads_;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
  // Both used on contexts_[0]'s thread only (the acceptor's).
  std::unique_ptr<boost::asio::steady_timer> accept_timer_;
  net::AcceptBackoff accept_backoff_;
  std::atomic<bool> accept_exhausted_{false};
  size_t next_context_ = 0;
  uint16_t port_ = 0;
  bool stopped_ = false;
};

}  // namespace sluice::proxy
