// An HTTP service on Boost.Beast with Sluice linked in: RateLimit is middleware that checks every
// request before the service's handler sees it, and answers 429 / 403 / 503 itself.
//
//   embed_example PORT RULES_PATH [redis://host:port]
//
// Serves GET /hello (rate limited: the user is X-User-Id, the client address the socket's peer)
// and GET /metrics (Sluice's Prometheus metrics, not limited). Prints "listening on PORT" when
// ready; stops on SIGINT or SIGTERM.
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include "sluice/sluice.h"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using HttpRequest = http::request<http::string_body>;
using HttpResponse = http::response<http::string_body>;
using Respond = std::function<void(HttpResponse)>;
using Handler = std::function<HttpResponse(const HttpRequest&)>;

// The middleware: who is asking, as Sluice's rules see it; then the handler, or Sluice's answer.
class RateLimit {
 public:
  RateLimit(sluice::embed::Limiter& limiter, Handler next)
      : limiter_(limiter), next_(std::move(next)) {}

  // `respond` runs exactly once, on a Sluice store thread or on the caller's.
  void operator()(HttpRequest req, const std::string& peer, Respond respond) const {
    sluice::embed::Request check;
    check.ip_address = peer;
    check.user_id = std::string(req["X-User-Id"]);
    check.api_key = std::string(req["X-Api-Key"]);
    const std::string target(req.target());
    check.endpoint = target.substr(0, target.find('?'));
    check.method = std::string(req.method_string());
    limiter_.Check(check, [this, req = std::move(req),
                           respond = std::move(respond)](sluice::embed::Result result) {
      HttpResponse res;
      if (result.allowed()) {
        res = next_(req);
      } else {
        res.result(static_cast<unsigned>(result.http_status));
        res.set(http::field::content_type, "application/json");
        res.body() = result.body;
      }
      // The limit headers on both paths: X-RateLimit-*, RateLimit-Policy, RateLimit, Retry-After.
      for (const auto& [name, value] : result.headers) res.set(name, value);
      res.version(req.version());
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      respond(std::move(res));
    });
  }

 private:
  sluice::embed::Limiter& limiter_;
  Handler next_;
};

// One client connection: read a request, answer it, again while the client keeps it alive.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const RateLimit& limited, sluice::embed::Limiter& limiter)
      : stream_(std::move(socket)), limited_(limited), limiter_(limiter) {}

  void Start() { Read(); }

 private:
  void Read() {
    req_ = {};
    http::async_read(stream_, buffer_, req_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) return self->Close();
                       self->Serve();
                     });
  }

  void Serve() {
    if (req_.target() == "/metrics") {
      HttpResponse res{http::status::ok, req_.version()};
      res.set(http::field::content_type, "text/plain; version=0.0.4");
      res.body() = limiter_.Metrics();
      res.keep_alive(req_.keep_alive());
      res.prepare_payload();
      return Write(std::move(res));
    }
    beast::error_code ec;
    const tcp::endpoint peer = stream_.socket().remote_endpoint(ec);
    limited_(std::move(req_), ec ? std::string() : peer.address().to_string(),
             [self = shared_from_this()](HttpResponse res) {
               // Back on the connection's executor: Sluice may answer on one of its threads.
               asio::post(self->stream_.get_executor(),
                          [self, res = std::move(res)]() mutable { self->Write(std::move(res)); });
             });
  }

  void Write(HttpResponse res) {
    res_ = std::move(res);
    http::async_write(stream_, res_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec || !self->res_.keep_alive()) return self->Close();
      self->Read();
    });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  HttpRequest req_;
  HttpResponse res_;
  const RateLimit& limited_;
  sluice::embed::Limiter& limiter_;
};

void Accept(tcp::acceptor& acceptor, const RateLimit& limited, sluice::embed::Limiter& limiter) {
  acceptor.async_accept([&](beast::error_code ec, tcp::socket socket) {
    if (ec) return;  // the acceptor closed: stopping
    std::make_shared<Session>(std::move(socket), limited, limiter)->Start();
    Accept(acceptor, limited, limiter);
  });
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: embed_example PORT RULES_PATH [redis://host:port]\n";
    return 2;
  }
  sluice::embed::Options options;
  options.rules_paths = {argv[2]};
  if (argc > 3) {
    options.store.backend = sluice::embed::StoreOptions::Backend::kRedis;
    options.store.url = argv[3];
  }
  sluice::embed::Status status;
  std::unique_ptr<sluice::embed::Limiter> limiter =
      sluice::embed::Limiter::Create(std::move(options), &status);
  if (limiter == nullptr) {
    std::cerr << "sluice: " << status.message() << "\n";
    return 1;
  }

  const RateLimit limited(*limiter, [](const HttpRequest& req) {
    HttpResponse res{http::status::ok, req.version()};
    res.set(http::field::content_type, "text/plain");
    res.body() = "hello\n";
    return res;
  });

  asio::io_context io;
  tcp::acceptor acceptor(
      io, {asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(std::atoi(argv[1]))});
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](beast::error_code, int) {
    acceptor.close();
    io.stop();
  });
  Accept(acceptor, limited, *limiter);
  std::cout << "listening on " << acceptor.local_endpoint().port() << " (sluice "
            << sluice::embed::Version() << ")" << std::endl;
  io.run();
  return 0;
}
