// A small HTTP/1.1 client for `sluice admin` (CONTRACT §8): one request per connection, plain
// TCP only (http://), one deadline for the whole exchange, a bearer token on every request.
// Synchronous to its caller; Boost.Beast underneath.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace sluice::cli {

// Where the admin API is: http://HOST[:PORT][/PATH]. PATH, when given, is put before every
// request's path (a server behind a reverse proxy at http://gw/sluice).
struct AdminUrl {
  std::string host;  // a name, an IPv4 address, or an IPv6 address without brackets
  uint16_t port = 80;
  std::string path_prefix;  // "" or "/a/b": starts with '/', never ends with one

  // "http://HOST:PORT/PATH" ("[v6]" bracketed): for messages.
  std::string ToString() const;
  // The Host header's value: "HOST:PORT", "[v6]:PORT".
  std::string HostHeader() const;
  bool operator==(const AdminUrl&) const = default;
};

// Parses `text` as http://HOST[:PORT][/PATH] (scheme case-insensitive, port 80 by default, a
// trailing '/' ignored). InvalidArgument quoting the text for anything else: https:// (this
// client speaks plain HTTP only), another or no scheme, credentials, a query or a fragment, an
// empty host, a bad port.
absl::StatusOr<AdminUrl> ParseAdminUrl(std::string_view text);

// `segment` percent-encoded for a URL path segment: everything but RFC 3986's unreserved
// characters (A-Z a-z 0-9 - . _ ~) becomes %XX, so an id holding '/', '?' or ' ' stays one
// segment.
std::string EncodePathSegment(std::string_view segment);

struct HttpResponse {
  int status = 0;
  std::string reason;
  std::string body;
};

struct HttpClientOptions {
  // For the whole exchange: name resolution, connect, sending the request, reading the answer.
  std::chrono::milliseconds timeout = std::chrono::seconds(10);
  // A longer answer is refused (a listing of 100 000 rules is some 20 MiB).
  size_t max_body_bytes = size_t{256} << 20;
};

class HttpClient {
 public:
  // `token` is sent as `Authorization: Bearer TOKEN` when not empty; it appears nowhere else
  // (not in errors, not in logs).
  HttpClient(AdminUrl url, std::string token, HttpClientOptions options = {});

  // Sends METHOD `path` (the url's path prefix is put before it; `path` starts with '/' and
  // may carry a query) with `body` as application/json when not empty, plus `headers`.
  // Any HTTP status is a response; kUnavailable says why no response came (refused, name not
  // found, timed out, closed early, malformed), without the URL.
  absl::StatusOr<HttpResponse> Send(
      std::string_view method, std::string_view path, std::string_view body = {},
      const std::vector<std::pair<std::string, std::string>>& headers = {}) const;

  const AdminUrl& url() const { return url_; }

 private:
  AdminUrl url_;
  std::string token_;
  HttpClientOptions options_;
};

}  // namespace sluice::cli
