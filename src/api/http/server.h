// A small HTTP/1.1 server on Boost.Beast: one io_context per thread (no locks inside Asio),
// keep-alive, and the protections a public endpoint needs: header and body size limits, a
// header deadline against slow clients, a connection cap, graceful shutdown.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "api/http/simple_request.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/beast/http/message.hpp"
#include "boost/beast/http/string_body.hpp"
#include "net/connection_caps.h"

namespace sluice::http {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Response = boost::beast::http::response<boost::beast::http::string_body>;
// Sends the response. May be called from any thread, exactly once.
using Respond = absl::AnyInvocable<void(Response) &&>;
// Handles one complete, size-checked request.
using Handler = std::function<void(Request&, Respond)>;
// Renders an error response for a status the server decides itself (400, 413, 431, 501).
using ErrorRenderer = std::function<Response(boost::beast::http::status, unsigned version)>;

// The fast path's response, rendered by the handler: `wire` holds the header lines ("Name:
// value\r\n" each, without Content-Length and Connection, which the server adds) followed by
// the body, which starts at `body_offset`.
struct WireResponse {
  unsigned status = 200;
  std::string wire;
  size_t body_offset = 0;
};
// Sends a WireResponse. May be called from any thread, exactly once.
using WireRespond = absl::AnyInvocable<void(WireResponse) &&>;
// The fast path (see simple_request.h): takes a request in its simple form and answers it
// through `respond` (moved from, now or later), or declines it by returning false without
// touching `respond`: the request then goes to the Handler, parsed again by the general path.
// The request's views are valid during the call only.
using FastHandler = std::function<bool(const SimpleRequest&, WireRespond& respond)>;

struct ServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 8080;  // 0: any free port (see HttpServer::port())
  size_t threads = 0;    // 0: one per CPU this process may run on (sched_getaffinity)
  // Connections open at once, in all and from one client address (0: no cap per address). A
  // connection over either cap is closed as soon as it is accepted. Behind a proxy every
  // connection comes from the proxy's address: raise the per-address cap there.
  size_t max_connections = 10'000;
  size_t max_connections_per_address = 1'000;
  // Places beyond max_connections that answer only GET/HEAD /health and /healthcheck (anything
  // else: 503 SERVER_BUSY, closed), one request each: a full listener still answers its health
  // checks.
  size_t health_reserve = 16;
  size_t max_body_bytes = 64 * 1024;
  // Bound the header block; a chunked body's extensions and trailer fields count against what
  // the header block leaves of them. Keep max_header_bytes under 64 KiB: Beast throws
  // std::length_error, which would end the process, on a field value that long, and this
  // limit is what keeps values shorter.
  size_t max_header_bytes = 16 * 1024;
  size_t max_header_fields = 100;
  // A request's header block must arrive within this, counted from the end of the previous
  // response: an idle keep-alive connection is closed after it too, and a slowloris client
  // dribbling bytes cannot hold a connection longer.
  std::chrono::milliseconds header_timeout{10'000};
  std::chrono::milliseconds body_timeout{10'000};
};

class HttpServer {
 public:
  HttpServer(ServerOptions options, Handler handler, ErrorRenderer errors,
             FastHandler fast = nullptr);
  ~HttpServer();

  // Binds and starts serving on background threads. Fails if the address cannot be bound.
  absl::Status Start();
  uint16_t port() const { return port_; }
  // Stops accepting, lets requests in flight finish (at most `grace`), then stops. Idempotent.
  void Stop(std::chrono::milliseconds grace);
  // Whether accepting fails for want of resources (out of file descriptors): new connections
  // wait in the backlog until it works again. Thread-safe.
  bool exhausted() const { return accept_exhausted_.load(std::memory_order_relaxed); }

  // Shared with sessions.
  struct State {
    ServerOptions options;
    Handler handler;
    ErrorRenderer errors;
    FastHandler fast;  // may be empty: every request goes to `handler`
    SimpleLimits simple_limits;
    std::shared_ptr<net::ConnectionCaps> caps;  // the open connections
    std::atomic<size_t> in_flight{0};
    std::atomic<bool> draining{false};
  };

 private:
  void Accept();
  // After an accept error: the next accept waits `accept_backoff_` (10 ms, doubling to 1 s
  // while errors last), so that running out of file descriptors does not spin a core.
  void AcceptLater(const boost::system::error_code& error);
  // Logs a connection refused over a cap (at most one a second; the rest are counted).
  // `address`: the client's, as net::AddressKey writes it.
  void Refuse(const std::string& address, const net::ConnectionCaps::Verdict& why);

  std::shared_ptr<State> state_;
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<std::thread> threads_;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
  // Both used on contexts_[0]'s thread only (the acceptor's).
  std::unique_ptr<boost::asio::steady_timer> accept_timer_;
  net::AcceptBackoff accept_backoff_;
  std::atomic<bool> accept_exhausted_{false};  // accept_backoff_.failing(), for exhausted()
  size_t next_context_ = 0;
  uint16_t port_ = 0;
  bool stopped_ = false;
};

}  // namespace sluice::http
