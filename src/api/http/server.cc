#include "api/http/server.h"

#include <sched.h>

#include <algorithm>
#include <functional>
#include <optional>

#include "api/http/framing.h"
#include "base/strings.h"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/http/error.hpp"
#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/read.hpp"
#include "obs/log.h"

namespace sluice::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

// What the fast path reads at a time into an empty buffer: many pipelined requests.
constexpr size_t kFastReadBytes = 4096;

// Sockets and streams bound to a concrete io_context executor rather than the type-erased
// any_io_executor: every async operation copies the executor, and the type erasure showed up
// as several percent of a check's CPU.
using Executor = asio::io_context::executor_type;
using Socket = asio::basic_stream_socket<tcp, Executor>;
using Stream = beast::basic_stream<tcp, Executor, beast::unlimited_rate_policy>;

// GET or HEAD of /health or /healthcheck: what a place of the health reserve answers.
bool IsHealthCheck(const Request& request) {
  if (request.method() != bhttp::verb::get && request.method() != bhttp::verb::head) return false;
  const std::string_view path =
      TargetPath(std::string_view(request.target().data(), request.target().size()));
  return path == "/health" || path == "/healthcheck";
}

// One connection. Every step runs on the connection's io_context thread, one at a time; the
// handler's response may come from another thread and is dispatched back.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Socket socket, std::shared_ptr<HttpServer::State> state, net::ConnectionCaps::Slot slot)
      : stream_(std::move(socket)), state_(std::move(state)), slot_(std::move(slot)) {
    buffer_.max_size(state_->options.max_header_bytes);
  }

  void Start() { ReadHeader(); }

 private:
  // A request's header block, its chunk extensions and its trailer fields share the header
  // limits: Beast bounds the header block alone, and reads a chunk line or a trailer section
  // for as long as it does not end. The read buffer's own limit bounds those (a chunk line or
  // trailer section that fills it is refused: Beast's buffer_overflow), the budgets below
  // bound their sum.
  void ReadHeader() {
    empty_lines_ = 0;
    stream_.expires_after(state_->options.header_timeout);
    if (!state_->fast) return ParseHeader();
    // The fast path: a request whole in the buffer, in its simple form, answered without
    // Beast's parser. Anything else goes to Beast, which parses what the buffer holds first.
    if (buffer_.size() > 0) {
      if (!TryFast()) ParseHeader();
      return;
    }
    const size_t want = std::min<size_t>(kFastReadBytes, buffer_.max_size());
    stream_.async_read_some(buffer_.prepare(want),
                            [self = shared_from_this()](beast::error_code ec, size_t bytes) {
                              // No request began: whatever the error, the connection just ends.
                              if (ec) return self->Close();
                              self->buffer_.commit(bytes);
                              if (!self->TryFast()) self->ParseHeader();
                            });
  }

  // Answers the request at the start of the buffer through the fast handler, if it is in the
  // simple form and the handler takes it. False (the buffer untouched) otherwise.
  bool TryFast() {
    if (slot_.reserved()) return false;  // a place of the health reserve: the general path
    SimpleRequest& request = FastRequest();
    const std::string_view bytes(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    if (!ParseSimpleRequest(bytes, state_->simple_limits, request)) return false;
    thread_ = std::this_thread::get_id();
    version_ = request.version;
    head_ = false;  // the fast handler takes no HEAD (it would answer with headers only)
    client_keep_alive_ = request.keep_alive;
    state_->in_flight.fetch_add(1, std::memory_order_relaxed);
    stream_.expires_never();  // the handler's own deadlines apply (store timeouts)
    auto self = shared_from_this();
    WireRespond respond = [self](WireResponse res) {
      if (std::this_thread::get_id() == self->thread_) return self->FinishWire(std::move(res));
      asio::dispatch(self->stream_.get_executor(),
                     [self, res = std::move(res)]() mutable { self->FinishWire(std::move(res)); });
    };
    if (!state_->fast(request, respond)) {
      state_->in_flight.fetch_sub(1, std::memory_order_relaxed);
      stream_.expires_after(state_->options.header_timeout);
      return false;
    }
    // The handler copied what it keeps: the request's bytes can go (a response written inline
    // above completes later, never within this call).
    buffer_.consume(request.size);
    return true;
  }

  // One SimpleRequest per thread, reused: it is a few hundred bytes of views.
  static SimpleRequest& FastRequest() {
    thread_local SimpleRequest request;
    return request;
  }

  // (Re)starts parsing a header from what the buffer holds, without touching the deadline.
  void ParseHeader() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(state_->options.max_header_bytes));
    parser_->body_limit(state_->options.max_body_bytes);
    parser_->on_chunk_header(on_chunk_header_);
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             [self = shared_from_this()](beast::error_code ec, size_t bytes) {
                               self->OnHeader(ec, bytes);
                             });
  }

  // `header_bytes`: what the parser consumed, the header block.
  void OnHeader(beast::error_code ec, size_t header_bytes) {
    thread_ = std::this_thread::get_id();  // completions run on the connection's thread
    if (ec) return OnReadError(ec);
    const Request& req = parser_->get();
    size_t fields = 0;
    for (auto it = req.begin(); it != req.end(); ++it) ++fields;
    if (fields > state_->options.max_header_fields) {
      return Fail(bhttp::status::request_header_fields_too_large);
    }
    header_fields_ = fields;
    header_fields_left_ = state_->options.max_header_fields - fields;
    header_bytes_left_ =
        state_->options.max_header_bytes - std::min(header_bytes, state_->options.max_header_bytes);
    if (const bhttp::status framing = CheckFraming(req); framing != bhttp::status::ok) {
      return Fail(framing);
    }
    // CheckFraming let a Transfer-Encoding through only as a lone `chunked`; Beast must agree,
    // or the body would be framed one way here and another way by whoever sent it.
    if (req.count(bhttp::field::transfer_encoding) > 0 && !parser_->chunked()) {
      return Fail(bhttp::status::bad_request);
    }
    if (auto length = parser_->content_length();
        length && *length > state_->options.max_body_bytes) {
      return Fail(bhttp::status::payload_too_large);  // refused before reading the body
    }
    if (parser_->is_done()) return Handle();
    stream_.expires_after(state_->options.body_timeout);
    // The client waits for a 100 before it sends the body (curl: for 1 s, then sends anyway),
    // unless some of the body is here already (RFC 9110 §10.1.1 lets the server omit it then).
    if (ExpectsContinue(req) && buffer_.size() == 0) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      return asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                               [self = shared_from_this()](beast::error_code ec, size_t) {
                                 if (ec) return self->Close();
                                 self->ReadBody();
                               });
    }
    ReadBody();
  }

  void ReadBody() {
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        if (ec) return self->OnReadError(ec);
                        if (!self->TakeTrailers()) {
                          return self->Fail(bhttp::status::request_header_fields_too_large);
                        }
                        self->Handle();
                      });
  }

  // Beast adds trailer fields to the request's fields, after the header's. They count against
  // what the header left of the limits, and are then dropped: no handler reads a trailer, and
  // none may mistake one for a header (a trailing `Connection: close`, say). False when over.
  bool TakeTrailers() {
    Request& req = parser_->get();
    auto it = req.begin();
    for (size_t i = 0; i < header_fields_ && it != req.end(); ++i) ++it;
    size_t fields = 0;
    size_t bytes = 0;
    while (it != req.end()) {
      ++fields;
      bytes += it->name_string().size() + it->value().size() + 4;  // "name: value\r\n", about
      it = req.erase(it);
    }
    return fields <= header_fields_left_ && bytes <= header_bytes_left_;
  }

  // Beast's chunk header callback: chunk extensions (";name=value" after a chunk's size) are
  // not read by anyone, but they cost what header bytes cost.
  void OnChunkHeader(std::uint64_t, beast::string_view extensions, beast::error_code& ec) {
    if (extensions.size() > header_bytes_left_) {
      ec = bhttp::error::header_limit;
      return;
    }
    header_bytes_left_ -= extensions.size();
  }

  void OnReadError(beast::error_code ec) {
    if (ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
        ec == beast::error::timeout || ec == asio::error::operation_aborted ||
        ec == asio::error::connection_reset) {
      return Close();
    }
    if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow) {
      return Fail(bhttp::status::request_header_fields_too_large);
    }
    if (ec == bhttp::error::body_limit) return Fail(bhttp::status::payload_too_large);
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category() ||
        ec == bhttp::error::partial_message) {
      // Nothing parsed (no request line): perhaps empty lines before one.
      if (parser_->get().method_string().empty() && SkipEmptyLines()) return;
      return Fail(bhttp::status::bad_request);  // a parse error: the response can be framed
    }
    Close();
  }

  // RFC 9112 §2.2: a server ignores at least one empty line before a request line (old clients
  // send a CRLF after a POST body). Beast does not: its request line starts with a method.
  // Skips up to kMaxEmptyLines of them and parses again; false when the start of the buffer is
  // not an empty line, or there were too many.
  bool SkipEmptyLines() {
    static constexpr int kMaxEmptyLines = 4;
    const auto data = static_cast<const char*>(buffer_.data().data());
    const size_t size = buffer_.size();
    size_t skip = 0;
    while (empty_lines_ < kMaxEmptyLines) {
      if (skip < size && data[skip] == '\n') {
        skip += 1;
      } else if (skip + 1 < size && data[skip] == '\r' && data[skip + 1] == '\n') {
        skip += 2;
      } else {
        break;
      }
      ++empty_lines_;
    }
    if (skip == 0) {
      // A lone CR may be the first half of a CRLF split across reads: read on and look again.
      if (size == 1 && data[0] == '\r' && empty_lines_ < kMaxEmptyLines) {
        ReadMoreThenParse();
        return true;
      }
      return false;
    }
    buffer_.consume(skip);
    if (buffer_.size() == 1 && static_cast<const char*>(buffer_.data().data())[0] == '\r' &&
        empty_lines_ < kMaxEmptyLines) {
      ReadMoreThenParse();
    } else {
      ParseHeader();
    }
    return true;
  }

  void ReadMoreThenParse() {
    stream_.async_read_some(buffer_.prepare(512),
                            [self = shared_from_this()](beast::error_code ec, size_t bytes) {
                              if (ec) return self->OnReadError(ec);
                              self->buffer_.commit(bytes);
                              self->ParseHeader();
                            });
  }

  // Answers with an error the server decides, then closes: the stream's framing is unknown.
  void Fail(bhttp::status status) {
    request_ = {};  // not the previous request's: a HEAD before must not drop this body
    version_ = 11;
    head_ = false;
    Response res = state_->errors(status, 11);
    res.keep_alive(false);
    Write(std::move(res), /*counted=*/false);
  }

  void Handle() {
    request_ = parser_->release();
    version_ = request_.version();
    head_ = request_.method() == bhttp::verb::head;
    client_keep_alive_ = request_.keep_alive();
    if (slot_.reserved() && !IsHealthCheck(request_)) {
      // A place of the health reserve: the listener is full, and only health checks pass.
      request_ = {};
      head_ = false;
      Response res = state_->errors(bhttp::status::service_unavailable, 11);
      res.set(bhttp::field::retry_after, "1");
      res.keep_alive(false);
      return Write(std::move(res), /*counted=*/false);
    }
    state_->in_flight.fetch_add(1, std::memory_order_relaxed);
    stream_.expires_never();  // the handler's own deadlines apply (store timeouts)
    auto self = shared_from_this();
    state_->handler(request_, [self](Response res) {
      // Answered on the connection's own thread (the memory store answers inline): write at
      // once. From any other thread (a store's I/O thread): dispatch back first.
      if (std::this_thread::get_id() == self->thread_) return self->Finish(std::move(res));
      asio::dispatch(self->stream_.get_executor(),
                     [self, res = std::move(res)]() mutable { self->Finish(std::move(res)); });
    });
  }

  // Whether the connection stays open after the answer: a reserved place is given back after
  // one answer, and a draining server closes.
  bool KeepAlive() const {
    return client_keep_alive_ && !slot_.reserved() &&
           !state_->draining.load(std::memory_order_relaxed);
  }

  void Finish(Response res) {
    res.keep_alive(KeepAlive());
    Write(std::move(res), /*counted=*/true);
  }

  void FinishWire(WireResponse res) {
    const bool keep = KeepAlive();
    const auto status = static_cast<bhttp::status>(res.status);
    const std::string_view fields(res.wire.data(), res.body_offset);
    const std::string_view body = std::string_view(res.wire).substr(res.body_offset);
    out_.clear();
    AppendStatusLine(res.status, bhttp::obsolete_reason(status));
    out_.append(fields);
    AppendFraming(status, body, keep);
    Send(keep, /*counted=*/true);
  }

  // Serializes the response into one buffer by hand: status line, the handler's fields,
  // Content-Length and Connection, body. Beast's serializer does the same through layers of
  // buffer views that cost more than the rest of a check on the memory store.
  void Write(Response res, bool counted) {
    const bool keep = res.keep_alive();
    out_.clear();
    AppendStatusLine(res.result_int(), res.reason());
    for (const auto& field : res) {
      if (field.name() == bhttp::field::content_length ||
          field.name() == bhttp::field::connection) {
        continue;
      }
      const auto name = field.name_string();
      const auto value = field.value();
      out_.append(name.data(), name.size());
      out_.append(": ");
      out_.append(value.data(), value.size());
      out_.append("\r\n");
    }
    AppendFraming(res.result(), res.body(), keep);
    Send(keep, counted);
  }

  void AppendStatusLine(unsigned status, beast::string_view reason) {
    out_.append(version_ == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
    char digits[3] = {static_cast<char>('0' + status / 100 % 10),
                      static_cast<char>('0' + status / 10 % 10),
                      static_cast<char>('0' + status % 10)};
    out_.append(digits, 3);
    out_.push_back(' ');
    out_.append(reason.data(), reason.size());
    out_.append("\r\n");
  }

  // Content-Length and Connection, the end of the header block, and the body.
  void AppendFraming(bhttp::status status, std::string_view body, bool keep) {
    // RFC 9110 §8.6: a 204 carries no Content-Length (the forward-auth endpoint's allow); its
    // body is empty by definition.
    if (status != bhttp::status::no_content) {
      out_.append("Content-Length: ");
      AppendDecimal(out_, body.size());
      out_.append("\r\n");
    }
    if (!keep) {
      out_.append("Connection: close\r\n");
    } else if (version_ == 10) {
      out_.append("Connection: keep-alive\r\n");  // HTTP/1.0 closes unless told otherwise
    }
    out_.append("\r\n");
    // HEAD: headers only; a 204 never has a body.
    if (!head_ && status != bhttp::status::no_content) out_.append(body);
  }

  // Writes out_, then reads the next request or closes.
  void Send(bool keep, bool counted) {
    keep_alive_ = keep;
    stream_.expires_after(state_->options.body_timeout);  // a client that never reads
    asio::async_write(stream_, asio::buffer(out_),
                      [self = shared_from_this(), counted](beast::error_code ec, size_t) {
                        if (counted) self->state_->in_flight.fetch_sub(1);
                        if (ec || !self->keep_alive_) return self->Close();
                        self->ReadHeader();
                      });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(Socket::shutdown_send, ignored);
    stream_.close();
  }

  Stream stream_;
  // Holds what is read and not yet parsed: at most one header block, chunk line or trailer
  // section, since Beast copies body bytes out as they come (its max_size, set at start).
  beast::flat_buffer buffer_;
  // Declared before the parser that refers to it.
  std::function<void(std::uint64_t, beast::string_view, beast::error_code&)> on_chunk_header_ =
      [this](std::uint64_t size, beast::string_view extensions, beast::error_code& ec) {
        OnChunkHeader(size, extensions, ec);
      };
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  size_t header_fields_ = 0;       // the fields of the current request's header block
  size_t header_fields_left_ = 0;  // what the header left of max_header_fields, for trailers
  size_t header_bytes_left_ = 0;   // ... and of max_header_bytes, for extensions and trailers
  int empty_lines_ = 0;            // skipped before the current request line
  Request request_;                // the general path's request being answered
  // Of the request being answered, whichever path took it.
  unsigned version_ = 11;
  bool head_ = false;
  bool client_keep_alive_ = true;  // what the client asked for
  std::string out_;                // the serialized response being written
  bool keep_alive_ = true;
  std::thread::id thread_;
  std::shared_ptr<HttpServer::State> state_;
  net::ConnectionCaps::Slot slot_;  // this connection's place under the caps, given back last
};

}  // namespace

HttpServer::HttpServer(ServerOptions options, Handler handler, ErrorRenderer errors,
                       FastHandler fast)
    : state_(std::make_shared<State>()) {
  state_->options = std::move(options);
  state_->handler = std::move(handler);
  state_->errors = std::move(errors);
  state_->fast = std::move(fast);
  state_->simple_limits = {.max_header_bytes = state_->options.max_header_bytes,
                           .max_header_fields = state_->options.max_header_fields,
                           .max_body_bytes = state_->options.max_body_bytes};
  state_->caps =
      net::ConnectionCaps::Create({.max_connections = state_->options.max_connections,
                                   .max_per_address = state_->options.max_connections_per_address,
                                   .health_reserve = state_->options.health_reserve});
}

HttpServer::~HttpServer() { Stop(std::chrono::milliseconds(0)); }

absl::Status HttpServer::Start() {
  size_t threads = state_->options.threads;
  if (threads == 0) {
    // The CPUs this process may run on (taskset, cgroup cpusets), not all the machine's.
    cpu_set_t cpus;
    threads = sched_getaffinity(0, sizeof(cpus), &cpus) == 0
                  ? static_cast<size_t>(CPU_COUNT(&cpus))
                  : std::max(1u, std::thread::hardware_concurrency());
  }
  for (size_t i = 0; i < threads; ++i) {
    contexts_.push_back(std::make_unique<asio::io_context>(1));
  }
  beast::error_code ec;
  const auto address = asio::ip::make_address(state_->options.address, ec);
  if (ec) return absl::InvalidArgumentError("invalid address " + state_->options.address);
  const tcp::endpoint endpoint(address, state_->options.port);
  acceptor_ = std::make_unique<tcp::acceptor>(*contexts_[0]);
  acceptor_->open(endpoint.protocol(), ec);
  if (!ec) acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_->bind(endpoint, ec);
  if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError("cannot listen on " + state_->options.address + ":" +
                                  std::to_string(state_->options.port) + ": " + ec.message());
  }
  port_ = acceptor_->local_endpoint().port();
  Accept();
  for (auto& context : contexts_) {
    threads_.emplace_back([ctx = context.get()] {
      auto guard = asio::make_work_guard(*ctx);
      ctx->run();
    });
  }
  return absl::OkStatus();
}

void HttpServer::Accept() {
  asio::io_context& target = *contexts_[next_context_++ % contexts_.size()];
  acceptor_->async_accept(
      target.get_executor(), [this, state = state_](beast::error_code ec, Socket socket) {
        if (ec == asio::error::operation_aborted || !acceptor_->is_open()) return;
        if (ec) return AcceptLater(ec);
        if (accept_backoff_.Succeeded()) {
          accept_exhausted_.store(false, std::memory_order_relaxed);
          obs::LogEvent(spdlog::level::info, "accept_resumed", {{"listener", "http"}});
        }
        const tcp::endpoint peer = socket.remote_endpoint(ec);
        const std::string address = ec ? std::string() : net::AddressKey(peer.data());
        net::ConnectionCaps::Verdict verdict = state->caps->TryAcquire(address);
        if (!verdict.slot) {
          Refuse(address, verdict);
          beast::error_code ignored;
          socket.close(ignored);  // over a cap: refused at once rather than queued
        } else {
          socket.set_option(tcp::no_delay(true), ec);
          std::make_shared<Session>(std::move(socket), state, std::move(verdict.slot))->Start();
        }
        Accept();
      });
}

void HttpServer::Refuse(const std::string& address, const net::ConnectionCaps::Verdict& why) {
  if (!why.log) return;
  const bool per_address = why.refusal == net::ConnectionCaps::Refusal::kPerAddress;
  obs::LogEvent(spdlog::level::warn, "connection_refused",
                {{"listener", "http"},
                 {"address", address},
                 {"cap", per_address ? "max_connections_per_address" : "max_connections"},
                 {"limit", per_address ? state_->options.max_connections_per_address
                                       : state_->options.max_connections},
                 {"suppressed", why.suppressed}});
}

void HttpServer::AcceptLater(const boost::system::error_code& error) {
  // EMFILE/ENFILE (out of descriptors), ENOBUFS/ENOMEM: retrying at once would fail again at
  // once, forever, on a full core. A connection the peer aborted (ECONNABORTED) is no reason
  // to wait: go on at once.
  if (error == asio::error::connection_aborted) return Accept();
  bool first = false;
  const std::chrono::milliseconds delay = accept_backoff_.Failed(&first);
  if (first) {
    accept_exhausted_.store(true, std::memory_order_relaxed);
    obs::LogEvent(spdlog::level::warn, "accept_failed",
                  {{"listener", "http"},
                   {"error", error.message()},
                   {"connections", state_->caps->connections()}});
  }
  if (accept_timer_ == nullptr) accept_timer_ = std::make_unique<asio::steady_timer>(*contexts_[0]);
  accept_timer_->expires_after(delay);
  accept_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted || acceptor_ == nullptr || !acceptor_->is_open()) {
      return;
    }
    Accept();
  });
}

void HttpServer::Stop(std::chrono::milliseconds grace) {
  if (stopped_ || contexts_.empty()) return;
  stopped_ = true;
  state_->draining.store(true);
  asio::post(*contexts_[0], [this] {
    beast::error_code ignored;
    acceptor_->close(ignored);
    if (accept_timer_ != nullptr) accept_timer_->cancel();
  });
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (state_->in_flight.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (auto& context : contexts_) context->stop();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  accept_timer_.reset();
  acceptor_.reset();
  contexts_.clear();  // destroys the sessions still parked on reads
}

}  // namespace sluice::http
