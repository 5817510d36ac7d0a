#include "cli/http_client.h"

#include <cctype>
#include <optional>

#include "base/strings.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core/error.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/http/error.hpp"
#include "boost/beast/http/read.hpp"
#include "boost/beast/http/string_body.hpp"
#include "boost/beast/http/write.hpp"
#include "net/host_port.h"

namespace sluice::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr std::string_view kExpected = "expected http://HOST[:PORT][/PATH]";

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// One exchange on its own io_context: resolve, connect, write, read, each step started by the
// one before. Every handler runs inside Run() on the calling thread.
class Exchange {
 public:
  Exchange(const AdminUrl& url, bhttp::request<bhttp::string_body> request,
           const HttpClientOptions& options)
      : url_(url), request_(std::move(request)), options_(options) {
    parser_.body_limit(options.max_body_bytes);
  }

  absl::StatusOr<HttpResponse> Run() {
    const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
    resolver_.async_resolve(
        url_.host, std::to_string(url_.port),
        [this, deadline](beast::error_code ec, tcp::resolver::results_type endpoints) {
          if (ec) return Fail(ec);
          // The stream's timer closes the socket at the deadline, failing whichever step is
          // under way with beast::error::timeout: one deadline for the request, not per step.
          stream_.expires_at(deadline);
          stream_.async_connect(endpoints, [this](beast::error_code ec, const tcp::endpoint&) {
            if (ec) return Fail(ec);
            bhttp::async_write(stream_, request_, [this](beast::error_code ec, size_t) {
              if (ec) return Fail(ec);
              bhttp::async_read(stream_, buffer_, parser_, [this](beast::error_code ec, size_t) {
                if (ec) return Fail(ec);
                done_ = true;
              });
            });
          });
        });
    // Name resolution is not bound by the stream's timer: this bounds it.
    io_.run_until(deadline);
    if (error_.has_value()) return absl::UnavailableError(*error_);
    if (!done_) return absl::UnavailableError(TimeoutText());
    const auto& message = parser_.get();
    return HttpResponse{.status = static_cast<int>(message.result_int()),
                        .reason = std::string(message.reason()),
                        .body = message.body()};
  }

 private:
  std::string TimeoutText() const {
    const int64_t ms = options_.timeout.count();
    return ms % 1000 == 0 ? Cat("no answer within ", ms / 1000, " s")
                          : Cat("no answer within ", ms, " ms");
  }

  void Fail(beast::error_code ec) {
    if (ec == beast::error::timeout) {
      error_ = TimeoutText();
    } else if (ec == bhttp::error::end_of_stream || ec == asio::error::eof) {
      error_ = "the connection was closed before an answer";
    } else if (ec == bhttp::error::body_limit) {
      error_ = Cat("the answer is larger than ", options_.max_body_bytes, " bytes");
    } else if (ec.category() == bhttp::make_error_code(bhttp::error::bad_version).category()) {
      error_ = Cat("malformed HTTP answer (", ec.message(), ")");
    } else {
      error_ = ec.message();
    }
  }

  const AdminUrl& url_;
  bhttp::request<bhttp::string_body> request_;
  const HttpClientOptions& options_;
  asio::io_context io_;
  tcp::resolver resolver_{io_};
  beast::tcp_stream stream_{io_};
  beast::flat_buffer buffer_;
  bhttp::response_parser<bhttp::string_body> parser_;
  bool done_ = false;
  std::optional<std::string> error_;
};

}  // namespace

std::string AdminUrl::HostHeader() const {
  return net::HostPort{.host = host, .port = port}.ToString();
}

std::string AdminUrl::ToString() const { return Cat("http://", HostHeader(), path_prefix); }

absl::StatusOr<AdminUrl> ParseAdminUrl(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
      return absl::InvalidArgumentError("invalid URL: it holds spaces or control characters (" +
                                        std::string(kExpected) + ")");
    }
  }
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(Cat("invalid URL '", text, "': ", why, " (", kExpected, ")"));
  };
  const size_t scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) return bad("no scheme");
  const std::string scheme = Lower(text.substr(0, scheme_end));
  if (scheme == "https") {
    return bad(
        "https:// is not supported: sluice admin speaks plain HTTP only (reach a remote server "
        "through a TLS-terminating proxy or an SSH tunnel on this host)");
  }
  if (scheme != "http") return bad(Cat("unsupported scheme '", scheme, "'"));
  const std::string_view rest = text.substr(scheme_end + 3);
  const size_t path_start = rest.find('/');
  const std::string_view authority = rest.substr(0, path_start);
  std::string_view path =
      path_start == std::string_view::npos ? std::string_view() : rest.substr(path_start);
  if (authority.find('@') != std::string_view::npos) {
    // Not quoted: the text holds a secret.
    return absl::InvalidArgumentError(
        Cat("invalid URL: credentials in a URL are not supported, use --token or "
            "SLUICE_ADMIN_TOKEN (",
            kExpected, ")"));
  }
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return bad("a query or a fragment is not allowed");
  }
  if (authority.empty()) return bad("empty host");
  absl::StatusOr<net::HostPort> host_port =
      net::ParseHostPort(authority, {.default_port = 80, .what = "host"});
  if (!host_port.ok()) {
    const absl::string_view why = host_port.status().message();
    return bad(std::string_view(why.data(), why.size()));
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  return AdminUrl{
      .host = host_port->host, .port = host_port->port, .path_prefix = std::string(path)};
}

std::string EncodePathSegment(std::string_view segment) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(segment.size());
  for (char c : segment) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    }
  }
  return out;
}

HttpClient::HttpClient(AdminUrl url, std::string token, HttpClientOptions options)
    : url_(std::move(url)), token_(std::move(token)), options_(options) {}

absl::StatusOr<HttpResponse> HttpClient::Send(
    std::string_view method, std::string_view path, std::string_view body,
    const std::vector<std::pair<std::string, std::string>>& headers) const {
  const bhttp::verb verb = bhttp::string_to_verb({method.data(), method.size()});
  if (verb == bhttp::verb::unknown) {
    return absl::InvalidArgumentError(Cat("unknown HTTP method '", method, "'"));
  }
  bhttp::request<bhttp::string_body> request;
  request.method(verb);
  request.target(Cat(url_.path_prefix, path));
  request.version(11);
  request.set(bhttp::field::host, url_.HostHeader());
  request.set(bhttp::field::user_agent, "sluice-admin");
  request.set(bhttp::field::accept, "application/json");
  request.set(bhttp::field::connection, "close");
  if (!token_.empty()) request.set(bhttp::field::authorization, Cat("Bearer ", token_));
  for (const auto& [name, value] : headers) request.set(name, value);
  if (!body.empty()) {
    request.set(bhttp::field::content_type, "application/json");
    request.body() = std::string(body);
  }
  request.prepare_payload();
  return Exchange(url_, std::move(request), options_).Run();
}

}  // namespace sluice::cli
