// The gRPC face: envoy.service.ratelimit.v3.RateLimitService and grpc.health.v1.Health on one
// listener, sharing the Limiter with HTTP. gRPC's callback API: no thread per call; gRPC's own
// small pool runs the handlers, which never block (see rate_limit_service.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "api/grpc/listener.h"
#include "api/grpc/rate_limit_service.h"
#include "base/mutex.h"
#include "limiter/limiter.h"

namespace grpc {
class Server;
}

namespace sluice::grpc_api {

// The name a grpc.health.v1 client may ask about besides "" (the whole server).
inline constexpr char kRateLimitServiceName[] = "envoy.service.ratelimit.v3.RateLimitService";

struct ServerOptions {
  // host:port ("[::1]:8081" for IPv6), as gRPC takes it; port 0 binds any free port (see
  // GrpcServer::port()). A host name binds every address it resolves to.
  std::string address = "127.0.0.1:8081";
  // Largest request message accepted; a bigger one fails with RESOURCE_EXHAUSTED. The same bound
  // as an HTTP body, so /json and gRPC accept the same requests.
  int max_message_bytes = 64 * 1024;
  // How often grpc.health.v1 re-probes the store (a cost-0 read, as /healthcheck does). The
  // status is SERVING while the limiter can decide (store up, or down under fail_open/local)
  // and NOT_SERVING when the store is down under fail_closed, or once Stop has begun.
  // 0: no probe; SERVING from Start to Stop.
  std::chrono::milliseconds health_probe_interval{1000};
  // A probe not answered within this counts as the store being down.
  std::chrono::milliseconds health_probe_timeout{1000};

  // Resource limits: gRPC 1.51's defaults have none (any number of streams per connection and of
  // connections, connections kept for ever). See docs/configuration.md, "Limits".
  // Connections open at once, in all and from one client address (0: no cap per address); one
  // over a cap is closed as soon as it is accepted (see listener.h).
  size_t max_connections = 10'000;
  size_t max_connections_per_address = 1'000;
  // Streams (calls) open at once on one connection; a gRPC client queues the calls beyond it.
  int max_concurrent_streams = 100;
  // A connection with no call for this long is closed (GOAWAY, then closed); 0: never.
  std::chrono::milliseconds max_connection_idle{std::chrono::minutes(5)};
  // A connection is asked to go (GOAWAY) after this long, and closed `max_connection_age_grace`
  // later with whatever calls are still open; 0: never. gRPC adds ±10 % of jitter.
  std::chrono::milliseconds max_connection_age{std::chrono::hours(1)};
  std::chrono::milliseconds max_connection_age_grace{std::chrono::seconds(30)};
  // The memory gRPC may use for its buffers (its ResourceQuota); under pressure it shrinks read
  // buffers and then closes connections.
  size_t memory_bytes = size_t{1} << 30;
  // What ShouldRateLimit answers carry besides the decision (response headers, dynamic metadata).
  EnvoyOptions envoy = {};
};

class GrpcServer {
 public:
  // `limiter` must outlive the server.
  GrpcServer(ServerOptions options, Limiter& limiter);
  ~GrpcServer();  // Stop(0) if still running, waiting for it however long it takes

  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  // Binds and starts serving on gRPC's threads. Fails, naming the address and the reason, when
  // the address cannot be bound (in use, not local, malformed). Call once.
  absl::Status Start();
  // The bound port (the chosen one when options.address asked for port 0); 0 before Start.
  uint16_t port() const { return port_; }
  // Whether the listener cannot accept for want of file descriptors (it retries). Thread-safe.
  bool exhausted() const { return listener_ != nullptr && listener_->exhausted(); }
  // Reports NOT_SERVING, closes the listening socket, stops admitting calls (GOAWAY), lets the
  // ShouldRateLimit calls in flight finish (at most `grace`, then cancels them), closes every
  // connection and returns when every call is done; with nothing in flight that takes
  // milliseconds, idle clients or not. Returns false when all that was not done by `deadline`
  // (thousands of open streams to cancel): the rest goes on on a thread of its own, and the
  // process should exit without destroying this server. Idempotent. Not thread-safe with Start.
  bool Stop(std::chrono::milliseconds grace, std::chrono::milliseconds deadline);
  bool Stop(std::chrono::milliseconds grace) { return Stop(grace, grace + kStopOverGrace); }

  // How long cancelling what is left may take after the grace, by default.
  static constexpr std::chrono::milliseconds kStopOverGrace{500};

 private:
  void HealthLoop();
  bool ProbeStore();  // whether the limiter can decide now
  // Stop's work once the listener is closed.
  void Drain(::grpc::Server* server, std::chrono::steady_clock::time_point grace_end);

  const ServerOptions options_;
  Limiter& limiter_;
  RateLimitService service_;
  std::unique_ptr<::grpc::Server> server_;
  std::unique_ptr<Listener> listener_;
  uint16_t port_ = 0;
  bool stopped_ = false;

  std::thread health_thread_;
  Mutex health_mu_;
  CondVar health_cv_;
  bool health_stopping_ ABSL_GUARDED_BY(health_mu_) = false;
};

}  // namespace sluice::grpc_api
