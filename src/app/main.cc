// sluice: serve | validate | version (CONTRACT §1).
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "CLI/CLI.hpp"
#include "api/grpc/server.h"
#include "api/http/envoy_json.h"
#include "api/http/routes.h"
#include "api/http/server.h"
#include "app/config.h"
#include "app/rules_watcher.h"
#include "app/version.h"
#include "limiter/limiter.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "rules/loader.h"
#include "store/memory/memory_store.h"
#include "store/redis/redis_store.h"

namespace sluice::app {
namespace {

using spdlog::level::level_enum;

struct ServeFlags {
  std::string config;
  std::string http;
  std::string grpc;
  std::vector<std::string> rules;
  std::string store;
  bool http_set = false, grpc_set = false, store_set = false;
};

std::string StatusText(const absl::Status& s) { return {s.message().data(), s.message().size()}; }

int Serve(const ServeFlags& flags) {
  ServerConfig config;
  if (!flags.config.empty()) {
    std::vector<std::string> problems;
    config = LoadServerConfig(flags.config, &problems);
    if (!problems.empty()) {
      for (const auto& p : problems) std::fprintf(stderr, "%s\n", p.c_str());
      return 1;
    }
  }
  if (flags.http_set) config.http = flags.http;
  if (flags.grpc_set) config.grpc = flags.grpc;
  if (!flags.rules.empty()) config.rule_paths = flags.rules;
  if (flags.store_set) {
    if (flags.store == "memory") {
      config.store.backend = StoreBackend::kMemory;
    } else if (flags.store.rfind("redis://", 0) == 0) {
      config.store.backend = StoreBackend::kRedis;
      config.store.url = flags.store;
    } else {
      std::fprintf(stderr, "error: --store must be 'memory' or redis://host:port[/db]\n");
      return 2;
    }
  }
  obs::InitLogging(spdlog::level::from_str(config.log_level),
                   config.log_format == "text" ? obs::LogFormat::kText : obs::LogFormat::kJson);

  // Signals are taken by the main thread alone (sigwait below): block them before any thread
  // starts, so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  SystemClock clock;
  obs::Metrics metrics;
  obs::RejectionLog rejections(clock);
  // The memory store is the store itself, or (backend redis) the fallback of on_failure: local.
  MemoryStore memory(clock);
  Store* store = &memory;
  std::unique_ptr<RedisStore> redis;
  if (config.store.backend != StoreBackend::kMemory) {
    const auto timeout = std::max(std::chrono::milliseconds(1),
                                  std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::microseconds(config.store.timeout)));
    std::vector<std::string> cluster_nodes;
    std::vector<redis::ShardSpec> shards;
    if (config.store.backend == StoreBackend::kRedisCluster) cluster_nodes = config.store.nodes;
    if (config.store.backend == StoreBackend::kRedisSharded) {
      for (const app::ShardConfig& shard : config.store.shards) {
        redis::ShardSpec spec{.url = shard.url, .sentinels = {}, .master = shard.master};
        for (const std::string& s : shard.sentinels) {
          if (auto address = redis::ParseNodeAddress(s); address.ok()) {
            spec.sentinels.push_back(*address);
          }
        }
        shards.push_back(std::move(spec));
      }
    }
    auto created = RedisStore::Create(
        {.url = config.store.url,
         .cluster_nodes = std::move(cluster_nodes),
         .shards = std::move(shards),
         .timeout = timeout,
         .pool = config.store.pool,
         .key_prefix = config.store.key_prefix,
         .on_cached_rejection = [&cached = metrics.StoreCachedRejections(StoreBackendName(
                                     config.store.backend))] { cached.Increment(); }});
    if (!created.ok()) {
      std::fprintf(stderr, "error: %s\n", StatusText(created.status()).c_str());
      return 1;
    }
    redis = std::move(*created);
    store = redis.get();
  }
  Limiter limiter(*store, clock, metrics, rejections,
                  {.on_failure = config.store.on_failure,
                   .fallback = &memory,
                   .fallback_share = config.store.fallback_share});

  // The watcher fingerprints the files before they load, so an edit made meanwhile is caught.
  std::function<void()> on_rules_change = [] {};
  RulesWatcher watcher(config.rule_paths, [&] { on_rules_change(); });
  rules::LoadResult initial = rules::LoadRules(config.rule_paths);
  if (!initial.problems.empty()) {
    for (const auto& p : initial.problems) {
      obs::LogEvent(level_enum::err, "rules_invalid", {{"problem", p}});
    }
    return 1;
  }
  // Limits the redis store cannot count exactly fail every check they apply to (a store error,
  // handled by on_failure): say so once per load, naming the rule.
  auto check_store_limits = [&](const rules::RuleSet& rule_set) {
    if (redis == nullptr) return;
    for (const auto& rule : rule_set.rules()) {
      if (absl::Status s = RedisStore::Supports(rule.limit); !s.ok()) {
        obs::LogEvent(level_enum::err, "rule_unsupported_by_store",
                      {{"rule_id", rule.id}, {"error", StatusText(s)}});
      }
    }
  };
  check_store_limits(*initial.rule_set);
  limiter.SetRules(initial.rule_set);

  std::mutex reload_mu;
  auto reload = [&](const char* trigger) {
    std::lock_guard lock(reload_mu);
    auto loaded = rules::LoadRuleSet(config.rule_paths);
    if (!loaded.ok()) {
      metrics.reloads(false).Increment();
      obs::LogEvent(level_enum::err, "rules_reload_failed",
                    {{"trigger", trigger}, {"error", StatusText(loaded.status())}});
      return;
    }
    check_store_limits(**loaded);
    limiter.SetRules(*loaded);
    metrics.reloads(true).Increment();
    obs::LogEvent(
        level_enum::info, "rules_reloaded",
        {{"trigger", trigger}, {"rules", (*loaded)->size()}, {"version", limiter.rules_version()}});
  };

  on_rules_change = [&] { reload("file_change"); };

  http::EnvoyJsonHandler envoy_json(limiter, metrics);
  http::Routes routes(limiter, metrics, {.version = kVersion, .started_at = clock.NowMicros()},
                      &envoy_json);
  std::unique_ptr<http::HttpServer> http_server;
  if (!config.http.empty()) {
    http::ServerOptions options;
    if (!ParseHostPort(config.http, &options.address, &options.port)) {
      std::fprintf(stderr, "error: invalid HTTP address '%s'\n", config.http.c_str());
      return 2;
    }
    http_server = std::make_unique<http::HttpServer>(
        options,
        [&routes](http::Request& req, http::Respond respond) {
          routes.Handle(req, std::move(respond));
        },
        [&routes](boost::beast::http::status status, unsigned version) {
          return routes.RenderError(status, version);
        });
    if (absl::Status s = http_server->Start(); !s.ok()) {
      obs::LogEvent(level_enum::err, "listen_failed", {{"error", StatusText(s)}});
      return 1;
    }
  }
  std::unique_ptr<grpc_api::GrpcServer> grpc_server;
  if (!config.grpc.empty()) {
    std::string host;
    uint16_t port = 0;
    if (!ParseHostPort(config.grpc, &host, &port)) {
      std::fprintf(stderr, "error: invalid gRPC address '%s'\n", config.grpc.c_str());
      return 2;
    }
    grpc_server = std::make_unique<grpc_api::GrpcServer>(
        grpc_api::ServerOptions{.address = config.grpc}, limiter);
    if (absl::Status s = grpc_server->Start(); !s.ok()) {
      obs::LogEvent(level_enum::err, "listen_failed", {{"error", StatusText(s)}});
      return 1;
    }
  }

  if (!config.rule_paths.empty()) watcher.Start();

  std::atomic<bool> stopping{false};
  std::thread sweeper([&] {
    while (!stopping.load()) {
      for (int i = 0; i < 10 && !stopping.load(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      memory.Sweep();
    }
  });

  obs::LogEvent(
      level_enum::info, "started",
      {{"version", kVersion},
       {"http", http_server ? config.http + " (port " + std::to_string(http_server->port()) + ")"
                            : "disabled"},
       {"grpc", grpc_server ? config.grpc + " (port " + std::to_string(grpc_server->port()) + ")"
                            : "disabled"},
       {"store", store->backend()},
       {"rules", initial.rule_set->size()},
       {"rule_paths", config.rule_paths}});

  for (;;) {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == SIGHUP) {
      reload("sighup");
      continue;
    }
    obs::LogEvent(level_enum::info, "stopping",
                  {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
    break;
  }
  // Stop accepting, finish what is in flight (at most 5 s), then stop the rest.
  // Both listeners drain at once, so that the whole stop stays within the 5 s.
  std::thread grpc_stop([&] {
    if (grpc_server) grpc_server->Stop(std::chrono::seconds(5));
  });
  if (http_server) http_server->Stop(std::chrono::seconds(5));
  grpc_stop.join();
  redis.reset();  // nothing is in flight now: close the connections while the limiter lives
  watcher.Stop();
  stopping.store(true);
  sweeper.join();
  obs::LogEvent(level_enum::info, "stopped");
  return 0;
}

// Flag values CLI11 cannot check by itself; "" when they are fine.
std::string CheckServeFlags(const ServeFlags& flags) {
  std::string host;
  uint16_t port;
  for (auto [set, name, value] : {std::tuple{flags.http_set, "--http", &flags.http},
                                  std::tuple{flags.grpc_set, "--grpc", &flags.grpc}}) {
    if (set && !value->empty() && !ParseHostPort(*value, &host, &port)) {
      return std::string(name) + " must be host:port (port 0-65535) or \"\", got '" + *value + "'";
    }
  }
  if (flags.store_set && flags.store != "memory" && flags.store.rfind("redis://", 0) != 0) {
    return "--store must be 'memory' or redis://host:port[/db], got '" + flags.store + "'";
  }
  return "";
}

int Validate(const std::vector<std::string>& paths) {
  std::vector<std::string> problems;
  std::vector<std::string> rule_paths;
  for (const auto& path : paths) {
    std::error_code ec;
    if (!std::filesystem::is_directory(path, ec) && LooksLikeServerConfig(path)) {
      LoadServerConfig(path, &problems);
    } else {
      rule_paths.push_back(path);
    }
  }
  // Rules files are validated together: a duplicate id across files is a problem too.
  for (auto& p : rules::ValidateRules(rule_paths)) problems.push_back(std::move(p));
  if (problems.empty()) {
    std::printf("ok\n");
    return 0;
  }
  for (const auto& p : problems) std::fprintf(stderr, "%s\n", p.c_str());
  return 1;
}

}  // namespace
}  // namespace sluice::app

int main(int argc, char** argv) {
  using namespace sluice::app;
  CLI::App app{"Sluice: a distributed rate limiter", "sluice"};
  app.require_subcommand(1);

  ServeFlags serve_flags;
  CLI::App* serve = app.add_subcommand("serve", "Run the server");
  serve->add_option("--config", serve_flags.config, "Server config file (YAML)")
      ->check(CLI::ExistingFile);
  auto* http = serve->add_option("--http", serve_flags.http,
                                 "HTTP listen address host:port (\"\" disables)");
  auto* grpc = serve->add_option("--grpc", serve_flags.grpc,
                                 "gRPC listen address host:port (\"\" disables)");
  serve
      ->add_option("--rules", serve_flags.rules,
                   "Rules file or folder; repeatable; replaces rules.paths")
      ->take_all()
      ->allow_extra_args(false);
  auto* store =
      serve->add_option("--store", serve_flags.store, "Store: memory or redis://host:port[/db]");

  std::vector<std::string> validate_paths;
  CLI::App* validate = app.add_subcommand("validate", "Check config and rules files");
  validate->add_option("paths", validate_paths, "Files or folders")->required();

  CLI::App* version = app.add_subcommand("version", "Print the version");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "error: " << e.what() << "\n";
    CLI::App* failed = serve->parsed() ? serve : validate->parsed() ? validate : &app;
    std::cerr << failed->help(failed == &app ? "" : "sluice", CLI::AppFormatMode::Normal);
    return 2;
  }
  if (version->parsed()) {
    std::printf("sluice %s\n", kVersion);
    return 0;
  }
  if (validate->parsed()) return Validate(validate_paths);
  serve_flags.http_set = http->count() > 0;
  serve_flags.grpc_set = grpc->count() > 0;
  serve_flags.store_set = store->count() > 0;
  if (std::string error = CheckServeFlags(serve_flags); !error.empty()) {
    std::cerr << "error: " << error << "\n" << serve->help("sluice", CLI::AppFormatMode::Normal);
    return 2;
  }
  return Serve(serve_flags);
}
