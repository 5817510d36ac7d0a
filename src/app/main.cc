// sluice: serve | validate | version (CONTRACT §1) | admin (§8, src/cli/).
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <tuple>
#include <vector>

#include "CLI/CLI.hpp"
#include "app/config.h"
#include "app/server.h"
#include "app/version.h"
#include "cli/admin_command.h"
#include "obs/log.h"
#include "rules/loader.h"

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
    } else {
      config.store.backend =
          StoreBackend::kRedis;  // CheckServeFlags allowed only memory and redis://
      config.store.url = flags.store;
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

  auto server = Server::Create(std::move(config));
  if (!server.ok()) {
    std::fprintf(stderr, "error: %s\n", StatusText(server.status()).c_str());
    return 1;
  }
  if (!(*server)->Start().ok()) return 1;  // what failed is logged

  for (;;) {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == SIGHUP) {
      (*server)->Reload("sighup");
      continue;
    }
    obs::LogEvent(level_enum::info, "stopping",
                  {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
    break;
  }
  (*server)->Stop();
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

  sluice::cli::AdminCommand admin(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "error: " << e.what() << "\n";
    // help() goes on down to the deepest sub-command parsed (`admin rules apply`).
    CLI::App* failed = serve->parsed()         ? serve
                       : validate->parsed()    ? validate
                       : admin.app()->parsed() ? admin.app()
                                               : &app;
    std::cerr << failed->help(failed == &app ? "" : "sluice", CLI::AppFormatMode::Normal);
    return 2;
  }
  if (version->parsed()) {
    std::printf("sluice %s\n", kVersion);
    return 0;
  }
  if (validate->parsed()) return Validate(validate_paths);
  if (admin.app()->parsed()) return admin.Run(std::cout, std::cerr);
  serve_flags.http_set = http->count() > 0;
  serve_flags.grpc_set = grpc->count() > 0;
  serve_flags.store_set = store->count() > 0;
  if (std::string error = CheckServeFlags(serve_flags); !error.empty()) {
    std::cerr << "error: " << error << "\n" << serve->help("sluice", CLI::AppFormatMode::Normal);
    return 2;
  }
  return Serve(serve_flags);
}
