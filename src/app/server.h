// A running Sluice server: every part `sluice serve` builds, and the order they start and stop
// in. main() parses flags and signals; everything between the config and the sockets is here.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "admin/managed_rules.h"
#include "api/grpc/server.h"
#include "api/http/admin_routes.h"
#include "api/http/envoy_json.h"
#include "api/http/routes.h"
#include "api/http/server.h"
#include "api/http/stats_routes.h"
#include "app/config.h"
#include "app/rules_watcher.h"
#include "base/mutex.h"
#include "core/time.h"
#include "limiter/limiter.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "proxy/proxy_server.h"
#include "store/memory/memory_store.h"
#include "store/store.h"

namespace sluice::app {

class Server {
 public:
  // Builds the clock, metrics, stores and limiter of `config`. Reads no rules and opens no
  // listener yet; Redis connections are made in the background. Fails when no store can be made.
  static absl::StatusOr<std::unique_ptr<Server>> Create(ServerConfig config);
  ~Server();  // Stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Loads the rules (every problem is logged as `rules_invalid`), then starts the listeners,
  // the rules watcher and the memory store's sweeper. On an error nothing is left running.
  absl::Status Start();

  // Reloads the rules from the rules paths; a failure keeps the rules in force and is logged.
  // `trigger` ("sighup", "file_change") is logged. With `only_if_changed` (the watcher's
  // reloads), files holding exactly the bytes already loaded change nothing: no new version,
  // nothing counted. Thread-safe; reloads run one at a time.
  void Reload(std::string_view trigger, bool only_if_changed = false);

  // Stops everything, in this order (the one place it is written down):
  //  1. the listeners: stop accepting, finish what is in flight (HTTP, gRPC and the gateway
  //     drain at once,
  //     3 s of grace, then what is left is cancelled). Should cancelling take gRPC past 4 s
  //     (thousands of open streams), the process exits there and then, with status 0 after
  //     logging `stopped`: CONTRACT §1 gives a stop 5 s;
  //  2. the admin API's thread (calls queued finish first), the rules watcher and the rules
  //     database's follower: no reload or catch-up can start after this, one in progress
  //     finishes first;
  //  3. the sweeper;
  //  4. the shared store: its connections close. Nothing is in flight any more; a gRPC health
  //     probe still waiting on Redis fails, and its callback finds the limiter alive.
  // The limiter, stores and metrics are destroyed after, with the Server. Idempotent.
  void Stop();

  // The HTTP listener's port (0 when disabled): the bound one when the config said port 0.
  uint16_t http_port() const { return http_ ? http_->port() : 0; }
  // The gateway's port (0 without `proxy:`), likewise.
  uint16_t proxy_port() const { return proxy_ ? proxy_->port() : 0; }

 private:
  explicit Server(ServerConfig config);
  // Logs, once per rules load, each rule the store cannot count exactly: such a rule fails
  // every check it applies to (a store error, handled by on_failure).
  void CheckStoreLimits(const rules::RuleSet& rules);
  // Starts the gateway (`proxy:`) on the limiter.
  absl::Status StartProxy();
  void Sweep();
  // For /health: each running listener and whether it is out of file descriptors. Any thread.
  std::vector<http::Routes::ListenerState> ListenerStates() const;

  const ServerConfig config_;
  SystemClock clock_;
  obs::Metrics metrics_;
  obs::RejectionLog rejections_{clock_};
  std::unique_ptr<Store> store_;           // the shared store
  std::unique_ptr<MemoryStore> fallback_;  // on_failure: local over a Redis store
  // What the sweeper sweeps, and the metrics it keeps up to date (once a second).
  struct SweptStore {
    MemoryStore* store;
    obs::MemoryStoreMetrics metrics;
    uint64_t evictions = 0;    // as last exported
    uint64_t expirations = 0;  // likewise
    uint64_t shrinks = 0;      // as last seen
  };
  std::vector<SweptStore> memory_stores_;  // used by the sweeper thread only, once started
  // What checks came to, for the stats API; the cluster view when the store is Redis.
  std::unique_ptr<stats::Recorder> stats_;
  std::unique_ptr<stats::ClusterStats> cluster_stats_;
  std::unique_ptr<Limiter> limiter_;
  // The files' rules and the rules database's, composed and put in force (CONTRACT §8).
  std::unique_ptr<admin::ManagedRules> managed_;
  std::unique_ptr<http::AdminRoutes> admin_;  // null when no admin token is configured
  std::unique_ptr<http::EnvoyJsonHandler> envoy_json_;
  std::unique_ptr<http::StatsRoutes> stats_routes_;
  std::unique_ptr<http::Routes> routes_;
  std::unique_ptr<http::HttpServer> http_;
  std::unique_ptr<grpc_api::GrpcServer> grpc_;
  std::unique_ptr<proxy::ProxyServer> proxy_;  // gateway mode; null without `proxy:`
  // The listeners once started, for ListenerStates on HTTP's threads (Start sets them while
  // /health may already be served).
  std::atomic<const http::HttpServer*> http_started_{nullptr};
  std::atomic<const grpc_api::GrpcServer*> grpc_started_{nullptr};
  std::atomic<const proxy::ProxyServer*> proxy_started_{nullptr};
  std::unique_ptr<RulesWatcher> watcher_;
  Mutex reload_mu_;  // one reload at a time
  // rules::LoadResult::digest of the rules in force.
  uint64_t loaded_digest_ ABSL_GUARDED_BY(reload_mu_) = 0;

  std::thread sweeper_;
  Mutex sweeper_mu_;
  CondVar sweeper_cv_;
  bool stopping_ ABSL_GUARDED_BY(sweeper_mu_) = false;
  bool stopped_ = false;  // Stop ran (Stop is called from one thread)
};

}  // namespace sluice::app
