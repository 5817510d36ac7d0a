#include "proxy/upstream_pool.h"

#include <sys/socket.h>

#include <cerrno>
#include <utility>

#include "absl/strings/ascii.h"
#include "base/strings.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/post.hpp"
#include "net/host_port.h"

namespace sluice::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// Whether an idle connection can still carry a request: a non-blocking peek that finds nothing
// to read. End of file (the upstream closed it), an error, or bytes nobody asked for (a late
// or unsolicited response) all mean it cannot.
bool LooksAlive(UpstreamConnection& connection) {
  if (!connection.stream.socket().is_open() || connection.buffer.size() > 0) return false;
  char byte;
  const ssize_t n =
      ::recv(connection.stream.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

absl::StatusOr<Upstream> ParseUpstreamUrl(std::string_view url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) {
    return absl::InvalidArgumentError(
        Cat("invalid upstream '", url, "' (expected http://host[:port])"));
  }
  const std::string scheme = absl::AsciiStrToLower(absl::string_view(url.data(), scheme_end));
  if (scheme == "https") {
    return absl::InvalidArgumentError(
        Cat("upstream '", url,
            "': https is not supported (the gateway speaks plain HTTP to its upstream; put TLS "
            "in front of Sluice, or use a local sidecar for TLS to the upstream)"));
  }
  if (scheme != "http") {
    return absl::InvalidArgumentError(
        Cat("invalid upstream '", url, "': the scheme must be http (expected http://host[:port])"));
  }
  std::string_view rest = url.substr(scheme_end + 3);
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find_first_of("/?#@") != std::string_view::npos) {
    return absl::InvalidArgumentError(
        Cat("invalid upstream '", url,
            "': only http://host[:port] (no path, query or user info: requests keep their own "
            "targets)"));
  }
  auto address = net::ParseHostPort(rest, {.default_port = 80, .what = "upstream"});
  if (!address.ok()) return address.status();
  Upstream upstream;
  upstream.host = address->host;
  upstream.port = address->port;
  upstream.authority = address->ToString();
  return upstream;
}

UpstreamPool::UpstreamPool(Executor executor, Upstream upstream, Options options)
    : executor_(executor), upstream_(std::move(upstream)), options_(options), resolver_(executor) {}

std::unique_ptr<UpstreamConnection> UpstreamPool::TakeIdle() {
  const auto now = std::chrono::steady_clock::now();
  while (!idle_.empty()) {
    Idle idle = std::move(idle_.back());
    idle_.pop_back();
    if (now - idle.since <= options_.max_idle_time && LooksAlive(*idle.connection)) {
      idle.connection->reused = true;
      return std::move(idle.connection);
    }
    // Closed as it goes out of scope.
  }
  return nullptr;
}

void UpstreamPool::Connect(ConnectCallback done) {
  resolver_.async_resolve(
      upstream_.host, std::to_string(upstream_.port),
      [this, done = std::move(done)](const boost::system::error_code& ec,
                                     tcp::resolver::results_type results) mutable {
        if (ec) return done(ec, nullptr);
        auto connection = std::make_unique<UpstreamConnection>(executor_);
        // The upstream's responses are trusted more than clients' requests, not blindly: their
        // header block is bounded (kUpstreamHeaderBytes in proxy_server.cc) within this.
        connection->buffer.max_size(64 * 1024);
        connection->stream.expires_after(options_.connect_timeout);
        UpstreamConnection& c = *connection;
        c.stream.async_connect(
            results, [connection = std::move(connection), done = std::move(done)](
                         const boost::system::error_code& ec, const tcp::endpoint&) mutable {
              if (ec) return done(ec, nullptr);
              boost::system::error_code ignored;
              connection->stream.socket().set_option(tcp::no_delay(true), ignored);
              connection->stream.expires_never();
              done(ec, std::move(connection));
            });
      });
}

void UpstreamPool::Put(std::unique_ptr<UpstreamConnection> connection) {
  if (connection == nullptr || idle_.size() >= options_.max_idle) return;
  connection->stream.expires_never();
  idle_.push_back({std::move(connection), std::chrono::steady_clock::now()});
}

}  // namespace sluice::proxy
