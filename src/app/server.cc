#include "app/server.h"

#include <malloc.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>

#include "absl/strings/str_join.h"
#include "app/version.h"
#include "base/strings.h"
#include "google/protobuf/stubs/logging.h"
#include "obs/log_throttle.h"
#include "rules/loader.h"
#include "store/leased/leased_store.h"
#include "store/redis/redis_store.h"
#include "store/store_factory.h"

namespace sluice::app {

namespace {

using spdlog::level::level_enum;

std::string Text(const absl::Status& s) { return {s.message().data(), s.message().size()}; }

// Raises the soft limit on open files to the hard one: the default soft limit (often 1024) is
// far below the connections the listeners take (max_connections), and running out of
// descriptors refuses connections. Logged either way.
void RaiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const rlim_t before = limit.rlim_cur;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      obs::LogEvent(level_enum::warn, "file_limit",
                    {{"soft", before}, {"error", std::strerror(errno)}});
      return;
    }
  }
  obs::LogEvent(level_enum::debug, "file_limit",
                {{"soft", limit.rlim_cur}, {"raised_from", before}});
}

// libprotobuf's log lines (e.g. one per request carrying a string that is not UTF-8, which any
// client can send) as events of ours, so that stderr stays one JSON object per line; at most 10
// a second, the rest counted in the next line's `suppressed`.
void LogFromProtobuf(google::protobuf::LogLevel level, const char* file, int line,
                     const std::string& message) {
  static obs::LogThrottle throttle(10);
  uint64_t suppressed = 0;
  if (!throttle.Admit(&suppressed)) return;
  const level_enum ours = level >= google::protobuf::LOGLEVEL_FATAL     ? level_enum::critical
                          : level >= google::protobuf::LOGLEVEL_ERROR   ? level_enum::err
                          : level >= google::protobuf::LOGLEVEL_WARNING ? level_enum::warn
                                                                        : level_enum::info;
  obs::LogEvent(ours, "protobuf_log",
                {{"message", message}, {"file", file}, {"line", line}, {"suppressed", suppressed}});
}

// The whole stop, CONTRACT §1.
constexpr auto kStopGrace = std::chrono::seconds(3);             // for requests in flight
constexpr auto kStopDeadline = std::chrono::milliseconds(4000);  // gRPC's, cancelling included

}  // namespace

Server::Server(ServerConfig config) : config_(std::move(config)), metrics_(kVersion) {}

absl::StatusOr<std::unique_ptr<Server>> Server::Create(ServerConfig config) {
  std::unique_ptr<Server> server(new Server(std::move(config)));
  Server& s = *server;
  auto store = MakeStore(s.config_.store, s.clock_, s.metrics_);
  if (!store.ok()) return store.status();
  s.store_ = std::move(*store);
  auto* memory = dynamic_cast<MemoryStore*>(s.store_.get());
  if (memory != nullptr) s.memory_stores_.push_back({memory, s.metrics_.MemoryStore("store")});
  if (memory == nullptr && s.config_.store.on_failure == FailurePolicy::kLocal) {
    s.fallback_ = std::make_unique<MemoryStore>(s.clock_);
    s.memory_stores_.push_back({s.fallback_.get(), s.metrics_.MemoryStore("fallback")});
  }
  s.stats_ = std::make_unique<stats::Recorder>(
      s.clock_,
      stats::Recorder::Options{.top_capacity = static_cast<size_t>(s.config_.stats_top_capacity)});
  auto* leased = dynamic_cast<LeasedStore*>(s.store_.get());
  RedisStore* redis = leased != nullptr ? &leased->redis() : nullptr;
  if (redis != nullptr && s.config_.stats_enabled) {
    // Every server sharing the store publishes its stats there (scope=cluster).
    s.cluster_stats_ = std::make_unique<stats::ClusterStats>(
        *s.stats_, redis->topology(), s.config_.store.key_prefix,
        std::chrono::milliseconds(s.config_.store.timeout / kMicrosPerMilli), stats::NewServerId());
  }
  s.limiter_ =
      std::make_unique<Limiter>(*s.store_, s.clock_, s.metrics_, s.rejections_,
                                Limiter::Options{
                                    .on_failure = s.config_.store.on_failure,
                                    .fallback = s.fallback_.get(),
                                    .fallback_share = s.config_.store.fallback_share,
                                    .envoy = s.config_.envoy,
                                    .stats = s.config_.stats_enabled ? s.stats_.get() : nullptr,
                                });
  auto managed = admin::ManagedRules::Create(
      {.database_url = s.config_.rules_database,
       .poll = std::chrono::milliseconds(s.config_.rules_poll / kMicrosPerMilli),
       .database_up = s.config_.rules_database.empty() ? nullptr : &s.metrics_.rules_database_up()},
      *s.limiter_);
  if (!managed.ok()) {
    return absl::Status(managed.status().code(),
                        Cat("rules database: ", managed.status().message()));
  }
  s.managed_ = std::move(*managed);
  const char* env_token = std::getenv("SLUICE_ADMIN_TOKEN");
  auto tokens = admin::Tokens::Create(
      s.config_.admin_tokens,
      env_token != nullptr ? std::optional<std::string_view>(env_token) : std::nullopt);
  if (!tokens.ok()) return tokens.status();
  s.stats_routes_ = std::make_unique<http::StatsRoutes>(
      *s.stats_, s.cluster_stats_.get(), *s.limiter_, *tokens, s.metrics_, s.config_.stats_enabled);
  if (tokens->enabled()) {
    s.admin_ = std::make_unique<http::AdminRoutes>(*s.managed_, *s.limiter_, std::move(*tokens),
                                                   s.metrics_);
  }
  s.envoy_json_ =
      std::make_unique<http::EnvoyJsonHandler>(*s.limiter_, s.metrics_, s.config_.envoy);
  s.routes_ = std::make_unique<http::Routes>(
      *s.limiter_, s.metrics_,
      http::Routes::Info{.version = kVersion,
                         .started_at = s.clock_.NowMicros(),
                         .listeners = [&s] { return s.ListenerStates(); },
                         .managed = s.managed_.get()},
      s.envoy_json_.get(), s.admin_.get(), s.stats_routes_.get());
  return server;
}

Server::~Server() { Stop(); }

absl::Status Server::Start() {
  RaiseFileLimit();
  // Process-wide; once, before any request can make protobuf speak.
  static std::once_flag protobuf_log_once;
  std::call_once(protobuf_log_once, [] { google::protobuf::SetLogHandler(LogFromProtobuf); });
  // The watcher fingerprints the files before they load, so an edit made meanwhile is caught.
  watcher_ = std::make_unique<RulesWatcher>(
      config_.rule_paths, [this] { Reload("file_change", /*only_if_changed=*/true); });
  rules::LoadResult initial = rules::LoadRules(config_.rule_paths);
  if (!initial.problems.empty()) {
    for (const auto& p : initial.problems) {
      obs::LogEvent(level_enum::err, "rules_invalid", {{"problem", p}});
    }
    return absl::InvalidArgumentError("invalid rules");
  }
  CheckStoreLimits(*initial.rule_set);
  if (absl::Status s = managed_->SetFiles(initial.rule_set); !s.ok()) {
    obs::LogEvent(level_enum::err, "rules_invalid", {{"problem", Text(s)}});
    return absl::InvalidArgumentError("invalid rules");
  }
  {
    MutexLock lock(reload_mu_);
    loaded_digest_ = initial.digest;
  }
  if (absl::Status s = managed_->Start(); !s.ok()) {
    obs::LogEvent(level_enum::err, "database_watch_failed", {{"error", Text(s)}});
    return s;
  }

  if (!config_.http.empty()) {
    http::ServerOptions options;
    options.max_connections = static_cast<size_t>(config_.limits.max_connections);
    options.max_connections_per_address =
        static_cast<size_t>(config_.limits.max_connections_per_address);
    if (!ParseHostPort(config_.http, &options.address, &options.port)) {
      return absl::InvalidArgumentError("invalid HTTP address '" + config_.http + "'");
    }
    http_ = std::make_unique<http::HttpServer>(
        options,
        [routes = routes_.get()](http::Request& req, http::Respond respond) {
          routes->Handle(req, std::move(respond));
        },
        [routes = routes_.get()](boost::beast::http::status status, unsigned version) {
          return routes->RenderError(status, version);
        },
        [routes = routes_.get()](const http::SimpleRequest& req, http::WireRespond& respond) {
          return routes->HandleFast(req, respond);
        });
    if (absl::Status s = http_->Start(); !s.ok()) {
      obs::LogEvent(level_enum::err, "listen_failed", {{"error", Text(s)}});
      http_.reset();
      return s;
    }
    http_started_.store(http_.get(), std::memory_order_release);
  }
  if (!config_.grpc.empty()) {
    const LimitsConfig& limits = config_.limits;
    grpc_ = std::make_unique<grpc_api::GrpcServer>(
        grpc_api::ServerOptions{
            .address = config_.grpc,
            .max_connections = static_cast<size_t>(limits.max_connections),
            .max_connections_per_address = static_cast<size_t>(limits.max_connections_per_address),
            .max_concurrent_streams = static_cast<int>(limits.grpc_max_concurrent_streams),
            .max_connection_idle =
                std::chrono::milliseconds(limits.grpc_max_connection_idle / kMicrosPerMilli),
            .max_connection_age =
                std::chrono::milliseconds(limits.grpc_max_connection_age / kMicrosPerMilli),
            .envoy = config_.envoy,
        },
        *limiter_);
    if (absl::Status s = grpc_->Start(); !s.ok()) {
      obs::LogEvent(level_enum::err, "listen_failed", {{"error", Text(s)}});
      grpc_.reset();
      Stop();
      return s;
    }
    grpc_started_.store(grpc_.get(), std::memory_order_release);
  }
  if (config_.proxy.enabled) {
    if (absl::Status s = StartProxy(); !s.ok()) {
      obs::LogEvent(level_enum::err, "listen_failed", {{"error", Text(s)}});
      proxy_.reset();
      Stop();
      return s;
    }
  }
  if (!config_.rule_paths.empty()) watcher_->Start();
  sweeper_ = std::thread([this] { Sweep(); });

  obs::LogEvent(level_enum::info, "started",
                {{"version", kVersion},
                 {"http", http_ ? config_.http + " (port " + std::to_string(http_->port()) + ")"
                                : "disabled"},
                 {"grpc", grpc_ ? config_.grpc + " (port " + std::to_string(grpc_->port()) + ")"
                                : "disabled"},
                 {"proxy", proxy_ ? Cat(config_.proxy.listen, " (port ", proxy_->port(), ") -> ",
                                        config_.proxy.upstream)
                                  : std::string("disabled")},
                 {"store", store_->backend()},
                 {"rules", limiter_->rules()->size()},
                 {"rule_paths", config_.rule_paths},
                 {"rules_database", managed_->has_database() ? std::string(managed_->backend())
                                                             : std::string("none")},
                 {"admin_api", admin_ != nullptr}});
  return absl::OkStatus();
}

absl::Status Server::StartProxy() {
  const ProxyConfig& c = config_.proxy;
  proxy::ProxyOptions options;
  if (!ParseHostPort(c.listen, &options.address, &options.port)) {
    return absl::InvalidArgumentError("invalid proxy address '" + c.listen + "'");
  }
  auto millis = [](Micros us) { return std::chrono::milliseconds(us / kMicrosPerMilli); };
  options.upstream = c.upstream_address;
  options.timeout = millis(c.timeout);
  options.connect_timeout = millis(c.connect_timeout);
  options.header_timeout = millis(c.header_timeout);
  options.upstream_connections = static_cast<size_t>(c.upstream_connections);
  options.max_connections = static_cast<size_t>(config_.limits.max_connections);
  options.max_connections_per_address =
      static_cast<size_t>(config_.limits.max_connections_per_address);
  options.identity = c.identity;
  options.trusted_proxies = proxy::TrustedProxies(c.trusted_proxies);
  proxy_ = std::make_unique<proxy::ProxyServer>(std::move(options),
                                                proxy::ProxyLimiter::Of(*limiter_), metrics_);
  if (absl::Status s = proxy_->Start(); !s.ok()) return s;
  proxy_started_.store(proxy_.get(), std::memory_order_release);
  return absl::OkStatus();
}

void Server::Reload(std::string_view trigger, bool only_if_changed) {
  MutexLock lock(reload_mu_);
  rules::LoadResult loaded = rules::LoadRules(config_.rule_paths);
  if (!loaded.problems.empty()) {
    metrics_.reloads(false).Increment();
    obs::LogEvent(level_enum::err, "rules_reload_failed",
                  {{"trigger", trigger}, {"error", absl::StrJoin(loaded.problems, "\n")}});
    return;
  }
  if (only_if_changed && loaded.digest == loaded_digest_) {
    // The watcher saw the files move (touched, rewritten alike, or a fingerprint disturbed by
    // an error) but they hold what is loaded: no new version.
    obs::LogEvent(level_enum::debug, "rules_unchanged", {{"trigger", trigger}});
    return;
  }
  CheckStoreLimits(*loaded.rule_set);
  if (absl::Status s = managed_->SetFiles(loaded.rule_set); !s.ok()) {
    // An id the rules database holds too: the files do not load (CONTRACT §8).
    metrics_.reloads(false).Increment();
    obs::LogEvent(level_enum::err, "rules_reload_failed",
                  {{"trigger", trigger}, {"error", Text(s)}});
    return;
  }
  loaded_digest_ = loaded.digest;
  metrics_.reloads(true).Increment();
  obs::LogEvent(level_enum::info, "rules_reloaded",
                {{"trigger", trigger},
                 {"rules", loaded.rule_set->size()},
                 {"version", limiter_->rules_version()}});
}

void Server::CheckStoreLimits(const rules::RuleSet& rules) {
  if (dynamic_cast<const LeasedStore*>(store_.get()) == nullptr) return;
  for (const auto& rule : rules.rules()) {
    if (absl::Status s = RedisStore::Supports(rule.limit); !s.ok()) {
      obs::LogEvent(level_enum::err, "rule_unsupported_by_store",
                    {{"rule_id", rule.id}, {"error", Text(s)}});
    }
  }
}

void Server::Sweep() {
  sweeper_mu_.lock();
  while (!sweeper_cv_.WaitFor(
      sweeper_mu_, std::chrono::seconds(1),
      [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(sweeper_mu_) { return stopping_; })) {
    sweeper_mu_.unlock();
    stats_->Tick();
    if (cluster_stats_ != nullptr) cluster_stats_->Publish();
    metrics_.stats_top_entries("requests")
        .Set(static_cast<double>(stats_->top_entries(stats::Ranking::kRequests)));
    metrics_.stats_top_entries("rejected")
        .Set(static_cast<double>(stats_->top_entries(stats::Ranking::kRejected)));
    metrics_.rules_version().Set(static_cast<double>(
        managed_->has_database() ? managed_->version() : limiter_->rules_version()));
    bool shrunk = false;
    for (SweptStore& swept : memory_stores_) {
      swept.store->Sweep();
      const uint64_t shrinks = swept.store->shrinks();
      shrunk |= shrinks != swept.shrinks;
      swept.shrinks = shrinks;
      // Counters only go up: export what was added since the last sweep.
      const uint64_t evictions = swept.store->evictions();
      const uint64_t expirations = swept.store->expirations();
      swept.metrics.evictions->Increment(static_cast<double>(evictions - swept.evictions));
      swept.metrics.expirations->Increment(static_cast<double>(expirations - swept.expirations));
      swept.evictions = evictions;
      swept.expirations = expirations;
      swept.metrics.keys->Set(static_cast<double>(swept.store->size()));
    }
    // A table shrunk (the fallback store after an outage, the memory store after a busy hour):
    // glibc keeps what was freed in its arenas, and the next growth of the tables allocates
    // anew around it, so each outage would leave the process larger. malloc_trim hands the free
    // pages back to the system. Rare (only after a shrink) and on this thread.
    if (shrunk) malloc_trim(0);
    sweeper_mu_.lock();
  }
  sweeper_mu_.unlock();
}

void Server::Stop() {
  if (stopped_) return;
  stopped_ = true;
  // 1. The listeners, both draining at once so that the whole stop stays within the 5 s.
  bool grpc_drained = true;
  std::thread grpc_stop([this, &grpc_drained] {
    if (grpc_) grpc_drained = grpc_->Stop(kStopGrace, kStopDeadline);
  });
  std::thread proxy_stop([this] {
    if (proxy_) proxy_->Stop(kStopGrace);
  });
  if (http_) http_->Stop(kStopGrace);
  proxy_stop.join();
  grpc_stop.join();
  if (!grpc_drained) {
    // gRPC is still cancelling streams on a thread of its own, and nothing may be destroyed
    // under it: the stop ends here, within the contract's 5 s. What is lost is lost anyway with
    // the process (the memory store's counters; Redis keeps its own).
    obs::LogEvent(level_enum::info, "stopped", {{"forced", true}});
    spdlog::shutdown();  // flushes
    std::_Exit(0);
  }
  // 2. The admin API, the watcher and the database's follower: after them, nothing reloads
  //    (a reload reads the store and the limiter).
  admin_.reset();
  if (watcher_) watcher_->Stop();
  if (managed_) managed_->Stop();
  // 3. The sweeper.
  {
    MutexLock lock(sweeper_mu_);
    stopping_ = true;
  }
  sweeper_cv_.NotifyAll();
  if (sweeper_.joinable()) sweeper_.join();
  // 4. The shared store's connections, while the limiter its callbacks reach still lives.
  store_.reset();
}

std::vector<http::Routes::ListenerState> Server::ListenerStates() const {
  std::vector<http::Routes::ListenerState> states;
  if (const http::HttpServer* http = http_started_.load(std::memory_order_acquire)) {
    states.push_back({.name = "http", .exhausted = http->exhausted()});
  }
  if (const grpc_api::GrpcServer* grpc = grpc_started_.load(std::memory_order_acquire)) {
    states.push_back({.name = "grpc", .exhausted = grpc->exhausted()});
  }
  if (const proxy::ProxyServer* proxy = proxy_started_.load(std::memory_order_acquire)) {
    states.push_back({.name = "proxy", .exhausted = proxy->exhausted()});
  }
  return states;
}

}  // namespace sluice::app
