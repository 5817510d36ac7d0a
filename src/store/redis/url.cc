#include "store/redis/url.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace sluice::redis {

absl::StatusOr<Endpoint> ParseUrl(std::string_view url, std::string* user) {
  constexpr std::string_view kScheme = "redis://";
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError("invalid Redis URL '" + std::string(url) +
                                      "': " + std::string(why) +
                                      " (expected redis://[:password@]host:port[/db])");
  };
  if (!url.starts_with(kScheme)) return bad("must start with redis://");
  std::string_view rest = url.substr(kScheme.size());
  Endpoint e;
  if (const size_t at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view credentials = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const size_t colon = credentials.find(':');
    if (colon == std::string_view::npos) return bad("credentials must be [user]:password");
    if (user != nullptr) *user = std::string(credentials.substr(0, colon));
    e.password = std::string(credentials.substr(colon + 1));
  }
  std::string_view hostport = rest;
  if (const size_t slash = rest.find('/'); slash != std::string_view::npos) {
    hostport = rest.substr(0, slash);
    const std::string_view db = rest.substr(slash + 1);
    if (!db.empty() && (!absl::SimpleAtoi(std::string(db), &e.db) || e.db < 0))
      return bad("bad database");
  }
  auto address = net::ParseHostPort(hostport, {.default_port = e.port, .what = "host:port"});
  if (!address.ok()) {
    return absl::InvalidArgumentError("invalid Redis URL '" + std::string(url) +
                                      "': " + std::string(address.status().message()));
  }
  e.host = std::move(address->host);
  e.port = address->port;
  return e;
}

absl::StatusOr<NodeAddress> ParseNodeAddress(std::string_view text) {
  if (!text.starts_with("redis://")) return net::ParseHostPort(text, {.what = "Redis node"});
  auto endpoint = ParseUrl(text);
  if (!endpoint.ok()) return endpoint.status();
  return NodeAddress{endpoint->host, endpoint->port};
}

}  // namespace sluice::redis
