#include "api/grpc/server.h"

#include <algorithm>
#include <climits>
#include <future>
#include <mutex>
#include <utility>

#include "grpc/grpc.h"
#include "grpc/support/log.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/server_posix.h"
#include "obs/log.h"
#include "obs/log_throttle.h"

namespace sluice::grpc_api {

namespace {

// gRPC's own log lines (errors only, unless GRPC_VERBOSITY says otherwise) as events of ours, so
// that stderr stays one JSON object per line.
// At most 10 lines a second (a peer can make gRPC log errors at will); what is dropped is
// counted in the next line's `suppressed`.
void LogFromGrpc(gpr_log_func_args* args) {
  static obs::LogThrottle throttle(10);
  uint64_t suppressed = 0;
  if (!throttle.Admit(&suppressed)) return;
  const spdlog::level::level_enum level =
      args->severity == GPR_LOG_SEVERITY_ERROR  ? spdlog::level::err
      : args->severity == GPR_LOG_SEVERITY_INFO ? spdlog::level::info
                                                : spdlog::level::debug;
  obs::LogEvent(level, "grpc_log",
                {{"message", args->message},
                 {"file", args->file},
                 {"line", args->line},
                 {"suppressed", suppressed}});
}

// Keepalive: the server pings a connection silent for a minute and closes it when the ping is
// not answered in 20 s (a peer gone without a word). A client may ping every 10 s at most when
// no data flows (Envoy and gRPC clients ping far less often); the third ping too early is a
// GOAWAY (ENHANCE_YOUR_CALM): a ping flood cannot keep a core busy.
constexpr int kKeepaliveTimeMs = 60'000;
constexpr int kKeepaliveTimeoutMs = 20'000;
constexpr int kMinRecvPingIntervalMs = 10'000;
constexpr int kMaxPingStrikes = 2;
// The header block of a call, as for HTTP (CONTRACT §5: 16 KiB).
constexpr int kMaxMetadataBytes = 16 * 1024;
// Threads gRPC may start for synchronous methods (there are none: every method here runs on the
// callback API, whose threads are gRPC's small fixed pool).
constexpr int kMaxThreads = 64;

int Millis(std::chrono::milliseconds d) {
  return d.count() <= 0 ? INT_MAX : static_cast<int>(std::min<int64_t>(d.count(), INT_MAX));
}

}  // namespace

GrpcServer::GrpcServer(ServerOptions options, Limiter& limiter)
    : options_(std::move(options)), limiter_(limiter), service_(limiter, options_.envoy) {}

// Waits for the drain however long it takes: the server must not be destroyed under it.
GrpcServer::~GrpcServer() { Stop(std::chrono::milliseconds(0), std::chrono::hours(24)); }

absl::Status GrpcServer::Start() {
  // gRPC's log function is process-wide; set it once, before gRPC has anything to say.
  static std::once_flag log_once;
  std::call_once(log_once, [] { gpr_set_log_function(LogFromGrpc); });
  // Bound before gRPC starts, so that a busy port fails the start with the bind's own reason.
  listener_ = std::make_unique<Listener>(
      Listener::Options{.address = options_.address,
                        .caps = {.max_connections = options_.max_connections,
                                 .max_per_address = options_.max_connections_per_address},
                        .resets = {}},
      [this](int fd) { ::grpc::AddInsecureChannelFromFd(server_.get(), fd); });
  if (absl::Status bound = listener_->Bind(); !bound.ok()) {
    listener_.reset();
    return bound;
  }
  service_.OnEarlyEnd(
      [listener = listener_.get()](std::string_view peer) { listener->NoteEarlyEnd(peer); });
  // A process-wide switch that BuildAndStart reads: the server gets gRPC's grpc.health.v1
  // service (Check and Watch), whose statuses we set below.
  ::grpc::EnableDefaultHealthCheckService(true);
  ::grpc::ServerBuilder builder;  // no listening port: the Listener hands connections over
  builder.RegisterCallbackGenericService(&service_);
  builder.SetMaxReceiveMessageSize(options_.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options_.max_concurrent_streams);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, Millis(options_.max_connection_idle));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, Millis(options_.max_connection_age));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                             Millis(options_.max_connection_age_grace));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             kMinRecvPingIntervalMs);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, kMaxPingStrikes);
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, kMaxMetadataBytes);
  ::grpc::ResourceQuota quota("sluice-grpc");
  quota.Resize(options_.memory_bytes);
  quota.SetMaxThreads(kMaxThreads);
  builder.SetResourceQuota(quota);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr) {
    listener_.reset();
    return absl::InternalError("cannot start the gRPC server on " + options_.address);
  }
  port_ = listener_->port();
  ::grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  health->SetServingStatus(kRateLimitServiceName, true);
  health->SetServingStatus(true);  // "" and every named service
  listener_->Start();
  if (options_.health_probe_interval.count() > 0) {
    health_thread_ = std::thread([this] { HealthLoop(); });
  }
  return absl::OkStatus();
}

bool GrpcServer::Stop(std::chrono::milliseconds grace, std::chrono::milliseconds deadline) {
  if (stopped_ || server_ == nullptr) return true;
  stopped_ = true;
  const auto start = std::chrono::steady_clock::now();
  {
    MutexLock lock(health_mu_);
    health_stopping_ = true;  // from here on the probe never sets a status again
  }
  health_cv_.NotifyAll();
  // Health checkers see NOT_SERVING before anything else (envoyproxy/ratelimit does the same on
  // SIGTERM).
  server_->GetHealthCheckService()->SetServingStatus(false);
  // No new connection: the listening socket closes (a connecting client is refused and tries
  // elsewhere).
  listener_->Stop();
  // The rest may take long with thousands of streams open (each is cancelled, one by one): on a
  // thread of its own, so that the caller can give up on it at `deadline`.
  auto drained = std::make_shared<std::promise<void>>();
  std::future<void> done = drained->get_future();
  std::thread drain([this, server = server_.get(), grace_end = start + grace, drained] {
    Drain(server, grace_end);
    drained->set_value();
  });
  if (done.wait_until(start + deadline) != std::future_status::ready) {
    drain.detach();
    obs::LogEvent(spdlog::level::warn, "grpc_stop_deadline",
                  {{"deadline_ms", deadline.count()}, {"in_flight", service_.in_flight()}});
    // The drain still uses the server: never destroy it (the process is about to exit).
    (void)server_.release();
    return false;
  }
  drain.join();
  return true;
}

void GrpcServer::Drain(::grpc::Server* server, std::chrono::steady_clock::time_point grace_end) {
  // grpc::Server::Shutdown(deadline) alone would refuse new calls and let those in flight finish,
  // but then wait for every client to close its connection, which a gRPC client that keeps its
  // channel never does, even when idle: every stop would take the whole grace. So the drain is
  // done in three steps with gRPC's C API:
  // 1. Stop admitting calls: GOAWAY on every connection, so that clients send new calls
  //    elsewhere (a refused stream is retried transparently by gRPC clients and Envoy).
  //    (A core completion queue: grpc::CompletionQueue only takes grpc++'s own tag objects.)
  grpc_completion_queue* shutdown_cq = grpc_completion_queue_create_for_next(nullptr);
  grpc_server_shutdown_and_notify(server->c_server(), shutdown_cq, shutdown_cq);
  // 2. Let the calls in flight finish, up to the grace. A short pause first: a call admitted just
  //    before the GOAWAY may not have reached ShouldRateLimit yet.
  std::this_thread::sleep_until(
      std::min(grace_end, std::chrono::steady_clock::now() + std::chrono::milliseconds(20)));
  while (service_.in_flight() > 0 && std::chrono::steady_clock::now() < grace_end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  // 3. Shutdown with an expired deadline: cancels what is left (Watch streams, calls past the
  //    grace), closes the connections and returns once every call has finished.
  server->Shutdown(std::chrono::system_clock::now());
  server->Wait();
  // Step 1's notification is queued by now; drain it and the queue's own shutdown event.
  grpc_completion_queue_shutdown(shutdown_cq);
  while (
      grpc_completion_queue_next(shutdown_cq, gpr_inf_future(GPR_CLOCK_REALTIME), nullptr).type !=
      GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(shutdown_cq);
  // After the drain, so that a probe still waiting on the store never delays it.
  if (health_thread_.joinable()) health_thread_.join();
}

void GrpcServer::HealthLoop() {
  ::grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  bool serving = true;  // as Start left it
  MutexLock lock(health_mu_);
  while (!health_cv_.WaitFor(
      health_mu_, options_.health_probe_interval,
      [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(health_mu_) { return health_stopping_; })) {
    health_mu_.unlock();  // the probe may wait on the store: Stop must not wait for it
    const bool can_decide = ProbeStore();
    health_mu_.lock();
    if (health_stopping_) break;
    if (can_decide == serving) continue;
    serving = can_decide;
    health->SetServingStatus(serving);  // under health_mu_, so never after Stop's NOT_SERVING
    obs::LogEvent(serving ? spdlog::level::info : spdlog::level::warn, "grpc_health",
                  {{"status", serving ? "SERVING" : "NOT_SERVING"}});
  }
}

bool GrpcServer::ProbeStore() {
  // Shared with the callback, which may outlive this function when the store is slow.
  auto answer = std::make_shared<std::promise<bool>>();
  std::future<bool> can_decide = answer->get_future();
  limiter_.ProbeStore([answer](ProbeResult probe) { answer->set_value(probe.can_decide); });
  if (can_decide.wait_for(options_.health_probe_timeout) == std::future_status::ready) {
    return can_decide.get();
  }
  // No answer in time: the store is as good as down.
  return limiter_.on_failure() != FailurePolicy::kFailClosed;
}

}  // namespace sluice::grpc_api
