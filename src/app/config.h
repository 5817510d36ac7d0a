// The server config file (CONTRACT §2) and the command-line overrides.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "admin/tokens.h"
#include "core/consistency.h"
#include "core/time.h"
#include "limiter/limiter.h"
#include "proxy/identity.h"
#include "proxy/upstream_pool.h"
#include "rules/pattern.h"
#include "store/store_config.h"
#include "yaml/pos.h"

namespace sluice::app {

// Resource limits of the listeners: what one client may take (docs/configuration.md, "Limits").
struct LimitsConfig {
  // Connections open at once on each listener (HTTP, gRPC), in all and from one client address
  // (0: no cap per address).
  int64_t max_connections = 10'000;
  int64_t max_connections_per_address = 1'000;
  // gRPC: calls open at once on one connection; a connection with no call for
  // `grpc_max_connection_idle` is closed; one older than `grpc_max_connection_age` is asked to
  // go (GOAWAY) and closed 30 s later.
  int64_t grpc_max_concurrent_streams = 100;
  Micros grpc_max_connection_idle = 5 * 60 * kMicrosPerSecond;
  Micros grpc_max_connection_age = 60 * 60 * kMicrosPerSecond;
};

// `proxy:` (CONTRACT §10): gateway mode, on when the section is present (docs/gateway-mode.md).
struct ProxyConfig {
  bool enabled = false;
  std::string listen = "0.0.0.0:8000";
  std::string upstream;                           // as written; required
  proxy::Upstream upstream_address;               // parsed from it
  Micros timeout = 30 * kMicrosPerSecond;         // upstream answer header; idle bodies
  Micros connect_timeout = 5 * kMicrosPerSecond;  // a new upstream connection
  Micros header_timeout = 10 * kMicrosPerSecond;  // a client's request header
  int64_t upstream_connections = 32;              // idle keep-alive connections per thread
  std::vector<rules::Cidr> trusted_proxies;
  proxy::IdentityConfig identity;
};

struct ServerConfig {
  std::string http = "127.0.0.1:8080";  // "" disables the listener
  std::string grpc = "127.0.0.1:8081";  // "" disables it
  StoreConfig store;
  LimitsConfig limits;
  std::vector<std::string> rule_paths;  // resolved against the config file's folder
  // `rules.database` (CONTRACT §8): "" for none, "sqlite://PATH" with PATH resolved against
  // the config file's folder, or "postgresql://...". `rules.poll`: the catch-up poll.
  std::string rules_database;
  Micros rules_poll = 5 * kMicrosPerSecond;
  // `admin.tokens`: the admin API's bearer tokens, as their SHA-256 (SLUICE_ADMIN_TOKEN is
  // added at start, not here).
  std::vector<admin::TokenEntry> admin_tokens;
  // `stats.enabled`: checks are recorded for the stats API (CONTRACT §9); off, /v1/stats/*
  // answers 404. `stats.top_capacity`: keys each heavy-hitter summary keeps.
  bool stats_enabled = true;
  int64_t stats_top_capacity = 10'000;
  std::string log_level = "info";   // trace | debug | info | warn | error
  std::string log_format = "json";  // json | text
  // `envoy:` (response_headers, shadow_mode, quota_mode, dynamic_metadata): envoyproxy/
  // ratelimit's global settings for the Envoy face, all off by default.
  EnvoyOptions envoy = {};
  ProxyConfig proxy;
};

// Loads `path`. Every problem is appended to `problems` as "FILE:LINE:COL: message" (unknown
// keys included); the returned config is meaningful only when none were added.
ServerConfig LoadServerConfig(const std::string& path, std::vector<std::string>* problems);

// Whether the YAML file at `path` looks like a server config (top-level listen/store/log/limits, or
// a `rules:` mapping) rather than a rules file. False when it cannot be read or parsed.
bool LooksLikeServerConfig(const std::string& path);

// Splits "host:port" ("[::1]:8080" for IPv6). False when malformed.
bool ParseHostPort(const std::string& text, std::string* host, uint16_t* port);

}  // namespace sluice::app
