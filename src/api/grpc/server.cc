#include "api/grpc/server.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>
#include <mutex>
#include <utility>

#include "grpc/grpc.h"
#include "grpc/support/log.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "net/host_port.h"
#include "obs/log.h"

namespace sluice::grpc_api {

namespace {

// gRPC reports why a bind failed only in its own log. To put the reason into the error, try the
// same bind with a plain socket: "Address already in use", "Cannot assign requested address",
// a resolver error, ... ("" when that bind works, e.g. the port was freed meanwhile).
std::string DiagnoseBind(const std::string& address) {
  auto parsed = net::ParseHostPort(address, {.allow_port_zero = true});
  if (!parsed.ok()) return std::string(parsed.status().message());
  const std::string& host = parsed->host;
  const std::string port = std::to_string(parsed->port);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
      rc != 0) {
    return gai_strerror(rc);
  }
  std::string error;
  for (addrinfo* a = found; a != nullptr && error.empty(); a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      error = std::strerror(errno);
      continue;
    }
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // as gRPC binds
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0) error = std::strerror(errno);
    close(fd);
  }
  freeaddrinfo(found);
  return error;
}

// gRPC's own log lines (errors only, unless GRPC_VERBOSITY says otherwise) as events of ours, so
// that stderr stays one JSON object per line.
void LogFromGrpc(gpr_log_func_args* args) {
  const spdlog::level::level_enum level =
      args->severity == GPR_LOG_SEVERITY_ERROR  ? spdlog::level::err
      : args->severity == GPR_LOG_SEVERITY_INFO ? spdlog::level::info
                                                : spdlog::level::debug;
  obs::LogEvent(level, "grpc_log",
                {{"message", args->message}, {"file", args->file}, {"line", args->line}});
}

}  // namespace

GrpcServer::GrpcServer(ServerOptions options, Limiter& limiter)
    : options_(std::move(options)), limiter_(limiter), service_(limiter) {}

GrpcServer::~GrpcServer() { Stop(std::chrono::milliseconds(0)); }

absl::Status GrpcServer::Start() {
  // gRPC's log function is process-wide; set it once, before gRPC has anything to say.
  static std::once_flag log_once;
  std::call_once(log_once, [] { gpr_set_log_function(LogFromGrpc); });
  // A process-wide switch that BuildAndStart reads: the server gets gRPC's grpc.health.v1
  // service (Check and Watch), whose statuses we set below.
  ::grpc::EnableDefaultHealthCheckService(true);
  ::grpc::ServerBuilder builder;
  int selected_port = 0;
  builder.AddListeningPort(options_.address, ::grpc::InsecureServerCredentials(), &selected_port);
  builder.RegisterService(&service_);
  builder.SetMaxReceiveMessageSize(options_.max_message_bytes);
  // gRPC sets SO_REUSEPORT by default: a second server would then bind a busy port silently and
  // take half of its connections. A busy port must be a startup error, as it is for HTTP.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || selected_port == 0) {
    if (server_ != nullptr) server_->Shutdown();
    server_.reset();
    std::string reason = DiagnoseBind(options_.address);
    if (reason.empty()) reason = "gRPC could not bind it";
    return absl::UnavailableError("cannot listen on " + options_.address + " (gRPC): " + reason);
  }
  port_ = static_cast<uint16_t>(selected_port);
  ::grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  health->SetServingStatus(kRateLimitServiceName, true);
  health->SetServingStatus(true);  // "" and every named service
  if (options_.health_probe_interval.count() > 0) {
    health_thread_ = std::thread([this] { HealthLoop(); });
  }
  return absl::OkStatus();
}

void GrpcServer::Stop(std::chrono::milliseconds grace) {
  if (stopped_ || server_ == nullptr) return;
  stopped_ = true;
  const auto deadline = std::chrono::steady_clock::now() + grace;
  {
    MutexLock lock(health_mu_);
    health_stopping_ = true;  // from here on the probe never sets a status again
  }
  health_cv_.NotifyAll();
  // Health checkers see NOT_SERVING before anything else (envoyproxy/ratelimit does the same on
  // SIGTERM).
  server_->GetHealthCheckService()->SetServingStatus(false);

  // grpc::Server::Shutdown(deadline) alone would refuse new calls and let those in flight finish,
  // but then wait for every client to close its connection, which a gRPC client that keeps its
  // channel never does, even when idle: every stop would take the whole grace. So the drain is
  // done in three steps with gRPC's C API:
  // 1. Stop admitting calls and connections: GOAWAY on every connection, so that clients send
  //    new calls elsewhere (a refused stream is retried transparently by gRPC clients and Envoy).
  //    (A core completion queue: grpc::CompletionQueue only takes grpc++'s own tag objects.)
  grpc_completion_queue* shutdown_cq = grpc_completion_queue_create_for_next(nullptr);
  grpc_server_shutdown_and_notify(server_->c_server(), shutdown_cq, shutdown_cq);
  // 2. Let the calls in flight finish, up to the grace. A short pause first: a call admitted just
  //    before the GOAWAY may not have reached ShouldRateLimit yet.
  std::this_thread::sleep_for(std::min(grace, std::chrono::milliseconds(20)));
  while (service_.in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  // 3. Shutdown with an expired deadline: cancels what is left (Watch streams, calls past the
  //    grace), closes the connections and returns once every call has finished.
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
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
