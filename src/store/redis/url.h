// Where a Redis server is, as configured: redis:// URLs, and the node addresses of Redis Cluster
// seeds and sentinels (net::HostPort). The host:port part is net::ParseHostPort's.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "net/host_port.h"

namespace sluice::redis {

// Where a Redis server is, from redis://[:password@]host:port[/db].
struct Endpoint {
  std::string host = "127.0.0.1";
  uint16_t port = 6379;
  std::string password;  // empty: no AUTH
  int db = 0;            // 0: no SELECT
};

// Parses redis://[[user]:password@]host[:port][/db] (IPv6 hosts in brackets). A user name is
// accepted for Redis 6 ACLs (AUTH user password).
absl::StatusOr<Endpoint> ParseUrl(std::string_view url, std::string* user = nullptr);

// A node's address: "host:port" (IPv6 in brackets).
using NodeAddress = net::HostPort;

// A Redis Cluster seed as configured: "host:port", "[v6]:port", or a redis:// URL (whose
// password and user then apply to every node; ParseUrl reads them).
absl::StatusOr<NodeAddress> ParseNodeAddress(std::string_view text);

}  // namespace sluice::redis
