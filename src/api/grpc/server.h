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
};

class GrpcServer {
 public:
  // `limiter` must outlive the server.
  GrpcServer(ServerOptions options, Limiter& limiter);
  ~GrpcServer();  // Stop(0) if still running

  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  // Binds and starts serving on gRPC's threads. Fails, naming the address and the reason, when
  // the address cannot be bound (in use, not local, malformed). Call once.
  absl::Status Start();
  // The bound port (the chosen one when options.address asked for port 0); 0 before Start.
  uint16_t port() const { return port_; }
  // Reports NOT_SERVING, stops admitting calls (GOAWAY), lets the ShouldRateLimit calls in
  // flight finish (at most `grace`, then cancels them), closes every connection and returns when
  // every call is done; with nothing in flight that takes milliseconds, idle clients or not.
  // Idempotent. Not thread-safe with Start.
  void Stop(std::chrono::milliseconds grace);

 private:
  void HealthLoop();
  bool ProbeStore();  // whether the limiter can decide now

  const ServerOptions options_;
  Limiter& limiter_;
  RateLimitService service_;
  std::unique_ptr<::grpc::Server> server_;
  uint16_t port_ = 0;
  bool stopped_ = false;

  std::thread health_thread_;
  Mutex health_mu_;
  CondVar health_cv_;
  bool health_stopping_ ABSL_GUARDED_BY(health_mu_) = false;
};

}  // namespace sluice::grpc_api
