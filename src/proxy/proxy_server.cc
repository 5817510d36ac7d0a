#include "proxy/proxy_server.h"

#include <sched.h>

#include <algorithm>
#include <functional>
#include <limits>
#include <optional>
#include <utility>

#include "api/http/check_codec.h"
#include "api/http/framing.h"
#include "base/strings.h"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/http/buffer_body.hpp"
#include "boost/beast/http/error.hpp"
#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/read.hpp"
#include "boost/beast/http/serializer.hpp"
#include "boost/beast/http/string_body.hpp"
#include "boost/beast/http/write.hpp"
#include "obs/log.h"
#include "proxy/hop_by_hop.h"
#include "proxy/lease.h"

namespace sluice::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using Socket = asio::basic_stream_socket<tcp, Executor>;

namespace {

// Beast 1.74 has no field constants for the X-Forwarded-* family.
constexpr boost::beast::string_view kForwardedFor = "X-Forwarded-For";
constexpr boost::beast::string_view kForwardedProto = "X-Forwarded-Proto";
constexpr boost::beast::string_view kForwardedHost = "X-Forwarded-Host";

// The one buffer a connection streams bodies through, both ways (a request's body is sent
// whole before its response is read). Allocated for a request with a body or a response with
// one, freed when the request ends: idle keep-alive connections hold none.
constexpr size_t kBodyBufferBytes = 64 * 1024;

// Body buffers are kept per thread once freed, up to kCachedBodyBuffers: a request with a body
// (every proxied response has one) then costs no allocation, no zeroing and no page faults —
// freeing 64 KiB at the top of the heap made glibc give the pages back and fault them in again,
// request after request. Idle connections still hold none.
constexpr size_t kCachedBodyBuffers = 64;

class BodyBufferCache {
 public:
  ~BodyBufferCache() {
    for (char* p : free_) delete[] p;
  }
  char* Take() {
    if (free_.empty()) return new char[kBodyBufferBytes];  // not zeroed: always written first
    char* p = free_.back();
    free_.pop_back();
    return p;
  }
  void Give(char* p) {
    if (free_.size() < kCachedBodyBuffers) return free_.push_back(p);
    delete[] p;
  }

 private:
  std::vector<char*> free_;
};
thread_local BodyBufferCache body_buffer_cache;

struct GiveBodyBuffer {
  void operator()(char* p) const noexcept { body_buffer_cache.Give(p); }
};
using BodyBuffer = std::unique_ptr<char[], GiveBodyBuffer>;
// The upstream's response header block. Beast throws on a field value of 64 KiB or more (see
// http::ServerOptions::max_header_bytes); this keeps every value under that.
constexpr uint32_t kUpstreamHeaderBytes = 32 * 1024;
// A refused request's body (429/403/503, or a 502/504 before the body was read) is read and
// dropped when at most this much of it is left to come, so that the connection can stay open;
// a longer one, a chunked one or one the client has not sent yet (Expect: 100-continue) is not
// read: the connection closes after the answer.
constexpr uint64_t kDiscardBodyBytes = 64 * 1024;
// After an answer that closes the connection while the client may still be sending (a refused
// upload), the gateway stops sending and reads what comes, up to this much for up to this long,
// before closing: closing with unread bytes makes the kernel send an RST, which can destroy the
// answer before the client reads it.
constexpr size_t kLingerBytes = 1024 * 1024;
constexpr auto kLingerTime = std::chrono::seconds(1);

// Bodies stream: no limit. Not boost::none, which Beast 1.74 compares as smaller than any
// Content-Length (`len_ > body_limit_` with an empty optional), refusing every body.
constexpr uint64_t kNoBodyLimit = std::numeric_limits<uint64_t>::max();

std::string_view View(beast::string_view s) { return {s.data(), s.size()}; }
beast::string_view BeastView(std::string_view s) { return {s.data(), s.size()}; }

rules::IpAddress ToIp(const asio::ip::address& address) {
  rules::IpAddress ip;
  if (address.is_v4()) {
    const auto bytes = address.to_v4().to_bytes();
    ip.bytes[10] = 0xff;
    ip.bytes[11] = 0xff;
    std::copy(bytes.begin(), bytes.end(), ip.bytes.begin() + 12);
  } else {
    const auto bytes = address.to_v6().to_bytes();
    std::copy(bytes.begin(), bytes.end(), ip.bytes.begin());
  }
  return ip;
}

// A request target as the upstream gets it: origin-form ("/path?query"). An absolute-form target
// ("http://host/path?query", which a client may send to a proxy, RFC 9112 §3.2.2) loses its
// scheme and authority; its Host field stays as the client sent it (CheckFraming required one).
std::string OriginForm(std::string_view target) {
  if (target.empty() || target.front() == '/') return std::string(target);
  const size_t authority = target.find("://");
  if (authority == std::string_view::npos) return std::string(target);
  const std::string_view rest = target.substr(authority + 3);
  const size_t path = rest.find_first_of("/?");
  if (path == std::string_view::npos) return "/";
  if (rest[path] == '?') return Cat("/", rest.substr(path));
  return std::string(rest.substr(path));
}

bool Idempotent(bhttp::verb method) {
  switch (method) {
    case bhttp::verb::get:
    case bhttp::verb::head:
    case bhttp::verb::options:
    case bhttp::verb::trace:
    case bhttp::verb::put:
    case bhttp::verb::delete_:
      return true;
    default:
      return false;
  }
}

// The error objects of the gateway's own answers (CONTRACT §5 "Errors").
struct OwnError {
  const char* code;
  const char* message;
};

OwnError ErrorFor(bhttp::status status) {
  switch (status) {
    case bhttp::status::bad_request:
      return {"INVALID_REQUEST", "Malformed HTTP request."};
    case bhttp::status::request_header_fields_too_large:
      return {"HEADERS_TOO_LARGE", "Request headers exceed 16 KiB or 100 fields."};
    case bhttp::status::not_implemented:
      return {"NOT_IMPLEMENTED", "Transfer-Encoding other than chunked is not supported."};
    case bhttp::status::bad_gateway:
      return {"UPSTREAM_UNAVAILABLE",
              "The upstream could not be reached, or failed before it answered."};
    case bhttp::status::gateway_timeout:
      return {"UPSTREAM_TIMEOUT", "The upstream did not answer in time."};
    default:
      return {"INTERNAL", "Internal error."};
  }
}

// One client connection, and the upstream connection of its request in flight. Every step runs
// on the connection's io_context thread, one at a time: the request header is read, checked,
// decided by the limiter, then either answered by Sluice or relayed — request header and body
// upstream, then the response header and body back — through one fixed buffer.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Socket socket, std::shared_ptr<ProxyServer::State> state, UpstreamPool& pool,
          net::ConnectionCaps::Slot slot, rules::IpAddress peer)
      : client_(std::move(socket)),
        hold_timer_(client_.get_executor()),
        state_(std::move(state)),
        pool_(pool),
        slot_(std::move(slot)),
        peer_(peer) {
    client_buffer_.max_size(state_->options.max_header_bytes);
  }

  ~Session() {
    // Destroyed mid-request only when the server stops: the lease is given back by its own
    // destructor; the count of requests in flight must be too.
    if (active_) state_->in_flight.fetch_sub(1, std::memory_order_relaxed);
  }

  void Start() { ReadHeader(); }

 private:
  const ProxyOptions& options() const { return state_->options; }

  // --- The client's request header ---

  void ReadHeader() {
    empty_lines_ = 0;
    client_.expires_after(options().header_timeout);
    ParseHeader();
  }

  // (Re)starts parsing a header from what the buffer holds, without touching the deadline.
  void ParseHeader() {
    request_parser_.emplace();
    request_parser_->header_limit(static_cast<uint32_t>(options().max_header_bytes));
    request_parser_->body_limit(kNoBodyLimit);  // streamed: any length
    request_parser_->on_chunk_header(on_chunk_header_);
    bhttp::async_read_header(client_, client_buffer_, *request_parser_,
                             [self = shared_from_this()](beast::error_code ec, size_t bytes) {
                               self->OnHeader(ec, bytes);
                             });
  }

  void OnHeader(beast::error_code ec, size_t header_bytes) {
    if (ec) {
      if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow) {
        return Fail(bhttp::status::request_header_fields_too_large);
      }
      if (ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category() &&
          ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message) {
        if (request_parser_->get().method_string().empty() && SkipEmptyLines()) return;
        return Fail(bhttp::status::bad_request);
      }
      // End of stream, timeout (slowloris), reset, a header cut short: nothing to answer.
      return Close();
    }
    const auto& req = request_parser_->get();
    size_t fields = 0;
    for (auto it = req.begin(); it != req.end(); ++it) ++fields;
    if (fields > options().max_header_fields) {
      return Fail(bhttp::status::request_header_fields_too_large);
    }
    header_bytes_left_ =
        options().max_header_bytes - std::min(header_bytes, options().max_header_bytes);
    if (const bhttp::status framing = http::CheckFraming(req); framing != bhttp::status::ok) {
      return Fail(framing);
    }
    // CheckFraming let a Transfer-Encoding through only as a lone `chunked`; Beast must agree.
    if (req.count(bhttp::field::transfer_encoding) > 0 && !request_parser_->chunked()) {
      return Fail(bhttp::status::bad_request);
    }
    // Where the request target cannot be relayed as it is (authority-form, CONNECT, "*"): 400.
    const std::string_view target = View(req.target());
    if (req.method() == bhttp::verb::connect || target.empty() ||
        (target.front() != '/' && http::TargetPath(target) == target)) {
      return Fail(bhttp::status::bad_request);
    }
    Begin();
    CheckRequest check;
    check.attributes = ReadAttributes(req, peer_, options().identity, options().trusted_proxies);
    check.cost = 1;
    const auto id = req.find("x-request-id");
    const auto parent = req.find("traceparent");
    check.request_id =
        obs::RequestId(id == req.end() ? std::string_view() : View(id->value()),
                       parent == req.end() ? std::string_view() : View(parent->value()));
    state_->limiter.check(std::move(check), [self = shared_from_this()](CheckResult result) {
      // Inline (the memory store) or from a store's thread: either way on to the session's own.
      asio::dispatch(self->client_.get_executor(), [self, result = std::move(result)]() mutable {
        self->OnDecision(std::move(result));
      });
    });
  }

  // RFC 9112 §2.2: a server ignores at least one empty line before a request line (old clients
  // send a CRLF after a POST body); Beast does not. Skips up to 4 of them and parses again;
  // false when the buffer does not start with one, or there were too many.
  bool SkipEmptyLines() {
    static constexpr int kMaxEmptyLines = 4;
    const auto* data = static_cast<const char*>(client_buffer_.data().data());
    const size_t size = client_buffer_.size();
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
    if (skip == 0) return false;
    client_buffer_.consume(skip);
    ParseHeader();
    return true;
  }

  // Beast's chunk header callback: chunk extensions are dropped (never forwarded) but cost what
  // header bytes cost, as on the API listener.
  void OnChunkHeader(std::uint64_t, beast::string_view extensions, beast::error_code& ec) {
    if (extensions.size() > header_bytes_left_) {
      ec = bhttp::error::header_limit;
      return;
    }
    header_bytes_left_ -= extensions.size();
  }

  // A request starts: from its header to its end, it counts as in flight (Stop waits for it).
  void Begin() {
    const auto& req = request_parser_->get();
    active_ = true;
    state_->in_flight.fetch_add(1, std::memory_order_relaxed);
    version_ = req.version();
    keep_alive_ = request_parser_->keep_alive();
    head_ = req.method() == bhttp::verb::head;
    idempotent_ = Idempotent(req.method());
    expect_continue_ = http::ExpectsContinue(req);
    request_body_started_ = false;
    client_gone_ = false;
    response_started_ = false;
    retried_ = false;
    result_ = ProxyResult::kForwarded;
    client_.expires_never();  // the limiter's own deadlines apply (store timeouts)
  }

  // The request is over, however it ended. Runs once per Begin.
  void End() {
    if (!active_) return;
    active_ = false;
    state_->requests[static_cast<size_t>(result_)]->Increment();
    lease_.Release();
    request_serializer_.reset();
    response_serializer_.reset();
    response_parser_.reset();
    own_.reset();
    limit_headers_.clear();
    body_buffer_.reset();
    state_->in_flight.fetch_sub(1, std::memory_order_relaxed);
  }

  // --- The decision ---

  void OnDecision(CheckResult result) {
    if (!result.lease_id.empty()) {
      lease_ = Lease(std::move(result.lease_id), state_->limiter.release);
    }
    http::Rendered rendered = http::RenderCheckResult(result);
    switch (result.outcome) {
      case CheckResult::Outcome::kRejected:
        return Answer(ProxyResult::kRejected, rendered.status, std::move(rendered.headers),
                      std::move(rendered.body));
      case CheckResult::Outcome::kDenied:
        return Answer(ProxyResult::kBlocked, rendered.status, std::move(rendered.headers),
                      std::move(rendered.body));
      case CheckResult::Outcome::kStoreUnavailable:
        return Answer(ProxyResult::kUnavailable, rendered.status, std::move(rendered.headers),
                      std::move(rendered.body));
      case CheckResult::Outcome::kAllowed:
      case CheckResult::Outcome::kAllowlisted:
        break;
    }
    limit_headers_ = std::move(rendered.headers);
    if (result.hold > 0) {
      // Shaping: held on a timer, the thread free for other connections meanwhile.
      hold_timer_.expires_after(std::chrono::microseconds(result.hold));
      WatchClient([this] { hold_timer_.cancel(); });
      return hold_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
        self->StopWatchingClient();
        if (ec || self->client_gone_) {
          self->result_ = ProxyResult::kClientClosed;
          self->End();
          return self->Close();
        }
        self->Forward();
      });
    }
    Forward();
  }

  // --- Sluice's own answers ---

  // Fails a request the gateway cannot relay (malformed, too large), before it is decided.
  void Fail(bhttp::status status) {
    if (!active_) {
      // Counted like a request, though the limiter never saw it.
      active_ = true;
      state_->in_flight.fetch_add(1, std::memory_order_relaxed);
      version_ = 11;
      head_ = false;
    }
    result_ = ProxyResult::kBadRequest;
    const OwnError error = ErrorFor(status);
    Write(static_cast<unsigned>(status), {}, http::ErrorBody(error.code, error.message),
          /*keep=*/false);
  }

  // Answers with `status` instead of the upstream, then deals with a request body not yet read:
  // dropped when short (the connection stays open), else the connection closes.
  void Answer(ProxyResult result, unsigned status,
              std::vector<std::pair<std::string, std::string>> headers, std::string body) {
    result_ = result;
    bool keep = keep_alive_ && !state_->draining.load(std::memory_order_relaxed);
    if (!request_parser_->is_done()) {
      const auto left = request_parser_->content_length_remaining();
      const bool waiting_for_continue =
          expect_continue_ && client_buffer_.size() == 0 && !request_body_started_;
      if (keep && left.has_value() && *left <= kDiscardBodyBytes && !waiting_for_continue) {
        return DiscardBody(status, std::move(headers), std::move(body));
      }
      keep = false;
    }
    Write(status, std::move(headers), std::move(body), keep);
  }

  void DiscardBody(unsigned status, std::vector<std::pair<std::string, std::string>> headers,
                   std::string body) {
    if (request_parser_->is_done()) {
      return Write(status, std::move(headers), std::move(body),
                   keep_alive_ && !state_->draining.load(std::memory_order_relaxed));
    }
    EnsureBodyBuffer();
    auto& b = request_parser_->get().body();
    b.data = body_buffer_.get();
    b.size = kBodyBufferBytes;
    client_.expires_after(options().timeout);
    bhttp::async_read_some(client_, client_buffer_, *request_parser_,
                           [self = shared_from_this(), status, headers = std::move(headers),
                            body = std::move(body)](beast::error_code ec, size_t) mutable {
                             if (ec == bhttp::error::need_buffer) ec = {};
                             if (ec) {
                               self->End();
                               return self->Close();
                             }
                             self->DiscardBody(status, std::move(headers), std::move(body));
                           });
  }

  // Writes an answer of Sluice's own (JSON body; none for HEAD) and then reads the next request
  // or closes.
  void Write(unsigned status, std::vector<std::pair<std::string, std::string>> headers,
             std::string body, bool keep) {
    own_.emplace(static_cast<bhttp::status>(status), version_ == 10 ? 10 : 11);
    for (auto& [name, value] : headers) own_->set(BeastView(name), value);
    if (!body.empty()) own_->set(bhttp::field::content_type, "application/json");
    own_->body() = std::move(body);
    own_->prepare_payload();
    own_->keep_alive(keep);
    if (head_) own_->body().clear();           // Content-Length stays: what a GET would have had
    client_.expires_after(options().timeout);  // a client that never reads
    bhttp::async_write(client_, *own_,
                       [self = shared_from_this(), keep](beast::error_code ec, size_t) {
                         self->End();
                         if (ec) return self->Close();
                         if (!keep) return self->LingeringClose();
                         self->ReadHeader();
                       });
  }

  // --- Forwarding ---

  void Forward() {
    auto& req = request_parser_->get();
    const bool chunked = request_parser_->chunked();
    RemoveHopByHop(req);
    // The gateway answers the expectation itself (ContinueRequest): the upstream must not send
    // a 100 of its own.
    if (expect_continue_) req.erase(bhttp::field::expect);
    AddForwardedFields(req);
    if (const std::string_view target = View(req.target()); target.front() != '/') {
      req.target(OriginForm(target));
    }
    if (req.find(bhttp::field::host) == req.end()) {
      req.set(bhttp::field::host, pool_.upstream().authority);  // an HTTP/1.0 request
    }
    req.version(11);                 // keep-alive to the upstream, whatever the client speaks
    if (chunked) req.chunked(true);  // re-framed: our own chunks, extensions and trailers dropped
    upstream_ = pool_.TakeIdle();
    if (upstream_ != nullptr) return SendRequest();
    Connect();
  }

  // X-Forwarded-For: the peer's address appended to what the request carries (one field). From
  // a trusted proxy, X-Forwarded-Proto and X-Forwarded-Host are kept when present; otherwise
  // they are set to what this hop saw (http, the Host field): a client must not be able to
  // tell the upstream it came over TLS.
  void AddForwardedFields(bhttp::request_header<>& req) {
    std::string forwarded_for;
    auto [first, last] = req.equal_range(kForwardedFor);
    for (auto it = first; it != last; ++it) {
      if (!forwarded_for.empty()) forwarded_for.append(", ");
      forwarded_for.append(it->value().data(), it->value().size());
    }
    if (!forwarded_for.empty()) forwarded_for.append(", ");
    forwarded_for.append(peer_.ToString());
    req.set(kForwardedFor, forwarded_for);
    const bool trusted = options().trusted_proxies.Contains(peer_);
    if (!trusted || req.find(kForwardedProto) == req.end()) {
      req.set(kForwardedProto, "http");
    }
    if (!trusted || req.find(kForwardedHost) == req.end()) {
      const auto host = req.find(bhttp::field::host);
      if (host != req.end()) {
        req.set(kForwardedHost, host->value());
      } else {
        req.erase(kForwardedHost);
      }
    }
  }

  void Connect() {
    pool_.Connect([self = shared_from_this()](beast::error_code ec,
                                              std::unique_ptr<UpstreamConnection> connection) {
      if (ec) return self->UpstreamFailed(ec, "connect");
      self->upstream_ = std::move(connection);
      self->SendRequest();
    });
  }

  void SendRequest() {
    upstream_started_ = std::chrono::steady_clock::now();
    request_serializer_.emplace(request_parser_->get());
    upstream_->stream.expires_after(options().timeout);
    bhttp::async_write_header(upstream_->stream, *request_serializer_,
                              [self = shared_from_this()](beast::error_code ec, size_t) {
                                if (ec) return self->UpstreamFailed(ec, "write");
                                self->ContinueRequest();
                              });
  }

  // Expect: 100-continue: the client waits for a 100 before it sends the body. Sent once the
  // request is allowed and the upstream connection is up, so that a refused request never
  // invites its body.
  void ContinueRequest() {
    if (expect_continue_ && !request_parser_->is_done() && client_buffer_.size() == 0 &&
        !request_body_started_) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      client_.expires_after(options().timeout);
      expect_continue_ = false;
      return asio::async_write(client_, asio::buffer(kContinue.data(), kContinue.size()),
                               [self = shared_from_this()](beast::error_code ec, size_t) {
                                 if (ec) return self->ClientGone();
                                 self->PumpRequest();
                               });
    }
    PumpRequest();
  }

  // One round of the request body: read some from the client into the buffer, then write it
  // upstream (WriteRequestBody). The serializer frames it (Content-Length as given, or chunks).
  void PumpRequest() {
    auto& body = request_parser_->get().body();
    if (request_parser_->is_done()) {
      body.data = nullptr;
      body.size = 0;
      body.more = false;
      return WriteRequestBody();
    }
    EnsureBodyBuffer();
    body.data = body_buffer_.get();
    body.size = kBodyBufferBytes;
    client_.expires_after(options().timeout);
    bhttp::async_read_some(client_, client_buffer_, *request_parser_,
                           [self = shared_from_this()](beast::error_code ec, size_t) {
                             if (ec == bhttp::error::need_buffer) ec = {};
                             if (ec) return self->ClientFailedMidRequest(ec);
                             auto& body = self->request_parser_->get().body();
                             const size_t read = kBodyBufferBytes - body.size;
                             // No data is nullptr, not an empty buffer: the serializer would
                             // write an empty buffer as a zero-size chunk, the last one.
                             body.data = read > 0 ? self->body_buffer_.get() : nullptr;
                             body.size = read;
                             body.more = !self->request_parser_->is_done();
                             if (read > 0) self->request_body_started_ = true;
                             self->WriteRequestBody();
                           });
  }

  void WriteRequestBody() {
    upstream_->stream.expires_after(options().timeout);
    bhttp::async_write(upstream_->stream, *request_serializer_,
                       [self = shared_from_this()](beast::error_code ec, size_t) {
                         if (ec == bhttp::error::need_buffer) ec = {};
                         if (ec) return self->UpstreamFailed(ec, "write");
                         if (!self->request_serializer_->is_done()) return self->PumpRequest();
                         self->ReadResponseHeader();
                       });
  }

  // The client stopped sending its body (gone, stalled past the timeout, or a malformed chunk):
  // the upstream has a request cut short, so its connection goes; the client's too.
  void ClientFailedMidRequest(beast::error_code ec) {
    upstream_.reset();
    const bool malformed =
        ec.category() == bhttp::make_error_code(bhttp::error::bad_chunk).category() &&
        ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message;
    result_ = malformed ? ProxyResult::kBadRequest : ProxyResult::kClientClosed;
    End();
    Close();
  }

  // --- The upstream's response ---

  void ReadResponseHeader() {
    response_parser_.emplace();
    response_parser_->header_limit(kUpstreamHeaderBytes);
    response_parser_->body_limit(kNoBodyLimit);
    if (head_) response_parser_->skip(true);  // a HEAD answer has no body, whatever it says
    upstream_->stream.expires_after(options().timeout);
    // The whole request is upstream: nothing more is read from the client until the answer, so
    // its socket can be watched for a close meanwhile — when that frees something others wait
    // for (concurrency slots). Otherwise a client gone is noticed when its answer is written.
    if (!watching_client_ && lease_.held()) {
      WatchClient([this] {
        if (upstream_ != nullptr) upstream_->stream.cancel();
      });
    }
    bhttp::async_read_header(
        upstream_->stream, upstream_->buffer, *response_parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnResponseHeader(ec); });
  }

  void OnResponseHeader(beast::error_code ec) {
    if (client_gone_) return ClientGone();
    if (ec) {
      StopWatchingClient();
      return UpstreamFailed(ec, "read");
    }
    auto& res = response_parser_->get();
    if (res.result_int() / 100 == 1) {
      // Interim answers (102, 103) are the upstream's business; 101 cannot be: the gateway
      // forwards no Upgrade.
      if (res.result() == bhttp::status::switching_protocols) {
        return UpstreamFailed(bhttp::make_error_code(bhttp::error::bad_status), "read");
      }
      return ReadResponseHeader();
    }
    state_->upstream_duration->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - upstream_started_)
            .count());
    response_started_ = true;
    upstream_keep_alive_ = response_parser_->keep_alive();
    const bool has_length = response_parser_->content_length().has_value();
    RemoveHopByHop(res);
    for (auto& [name, value] : limit_headers_) res.set(BeastView(name), value);
    res.version(version_ == 10 ? 10 : 11);
    client_keep_alive_ = keep_alive_ && !state_->draining.load(std::memory_order_relaxed);
    if (!response_parser_->is_done() && !has_length) {
      // Chunked or delimited by the upstream's close: chunks to an HTTP/1.1 client; to an
      // HTTP/1.0 one (no chunked), the body as it comes, ended by closing the connection.
      if (version_ == 10) {
        client_keep_alive_ = false;
      } else {
        res.chunked(true);
      }
    }
    res.keep_alive(client_keep_alive_);
    response_serializer_.emplace(res);
    StopWatchingClient();
    // The body (or its first part) is here already, or there is none: header and body go to
    // the client in one write. Otherwise the header goes at once (a body that comes later, as
    // a stream of events, must not hold it back).
    if (response_parser_->is_done() || upstream_->buffer.size() > 0) return PumpResponse();
    client_.expires_after(options().timeout);
    bhttp::async_write_header(client_, *response_serializer_,
                              [self = shared_from_this()](beast::error_code ec, size_t) {
                                if (ec) return self->ClientGone();
                                self->PumpResponse();
                              });
  }

  void PumpResponse() {
    auto& body = response_parser_->get().body();
    if (response_parser_->is_done()) {
      body.data = nullptr;
      body.size = 0;
      body.more = false;
      return WriteLastOfResponse();
    }
    EnsureBodyBuffer();
    body.data = body_buffer_.get();
    body.size = kBodyBufferBytes;
    upstream_->stream.expires_after(options().timeout);
    bhttp::async_read_some(upstream_->stream, upstream_->buffer, *response_parser_,
                           [self = shared_from_this()](beast::error_code ec, size_t) {
                             if (ec == bhttp::error::need_buffer) ec = {};
                             if (ec) return self->UpstreamFailedMidResponse(ec);
                             auto& body = self->response_parser_->get().body();
                             body.size = kBodyBufferBytes - body.size;
                             body.data = body.size > 0 ? self->body_buffer_.get() : nullptr;
                             body.more = !self->response_parser_->is_done();
                             if (!body.more) return self->WriteLastOfResponse();
                             self->WriteResponseBody();
                           });
  }

  // The upstream's answer is complete (CONTRACT §10: the moment a concurrency slot is given
  // back). The slots are released, and the store has answered, before the last of the answer
  // goes to the client: a client that sends its next request the moment it has this answer
  // finds its slot free, on any server.
  void WriteLastOfResponse() {
    if (!lease_.held() || !state_->limiter.release_then) return WriteResponseBody();
    state_->limiter.release_then(lease_.Take(), [self = shared_from_this()] {
      asio::dispatch(self->client_.get_executor(), [self] { self->WriteResponseBody(); });
    });
  }

  void WriteResponseBody() {
    client_.expires_after(options().timeout);
    bhttp::async_write(client_, *response_serializer_,
                       [self = shared_from_this()](beast::error_code ec, size_t) {
                         if (ec == bhttp::error::need_buffer) ec = {};
                         if (ec) return self->ClientGone();
                         if (!self->response_serializer_->is_done()) return self->PumpResponse();
                         self->Finish();
                       });
  }

  // The whole answer is with the client.
  void Finish() {
    if (upstream_keep_alive_ && upstream_->buffer.size() == 0) {
      pool_.Put(std::move(upstream_));
    } else {
      upstream_.reset();
    }
    result_ = ProxyResult::kForwarded;
    End();
    if (!client_keep_alive_) return Close();
    ReadHeader();
  }

  // --- Failures ---

  // The upstream failed before its response header was complete.
  void UpstreamFailed(beast::error_code ec, std::string_view phase) {
    const bool reused = upstream_ != nullptr && upstream_->reused;
    upstream_.reset();
    // A pooled connection the upstream had closed meanwhile: tried once more on a fresh one,
    // when nothing can have reached the upstream's application twice — the request had no body
    // (nothing was consumed from the client) and either it is idempotent or it never left.
    if (reused && !retried_ && ec != beast::error::timeout && request_parser_->is_done() &&
        !request_body_started_ && (idempotent_ || phase == "write")) {
      retried_ = true;
      request_serializer_.reset();
      return Connect();
    }
    const bool timeout = ec == beast::error::timeout;
    LogUpstream(timeout ? "upstream_timeout" : "upstream_error", ec, phase);
    const bhttp::status status =
        timeout && phase != "connect" ? bhttp::status::gateway_timeout : bhttp::status::bad_gateway;
    const OwnError error = ErrorFor(status);
    Answer(
        timeout && phase != "connect" ? ProxyResult::kUpstreamTimeout : ProxyResult::kUpstreamError,
        static_cast<unsigned>(status), std::move(limit_headers_),
        http::ErrorBody(error.code, error.message));
  }

  // The upstream failed (closed, reset, stalled, sent a malformed body) with its answer partly
  // relayed: the client's connection closes too, so that it sees the answer cut short (a
  // chunked body without its last chunk, a Content-Length one short) rather than waiting.
  void UpstreamFailedMidResponse(beast::error_code ec) {
    LogUpstream("upstream_error", ec, "body");
    upstream_.reset();
    result_ = ProxyResult::kUpstreamError;
    End();
    Close();
  }

  // The client went, or stopped reading, while its answer was being relayed.
  // Watches the client's socket while the session waits on something else (a shaping hold, the
  // upstream's answer): a client that closes or resets its connection then ends the request at
  // once — its concurrency slot given back, its upstream connection closed — rather than when
  // the upstream answers (which may be `timeout` later). Readable with data (a pipelined
  // request) ends the watch and leaves the data where it is. `on_gone` cancels what the session
  // waits on; its handler then sees client_gone_.
  void WatchClient(std::function<void()> on_gone) {
    watching_client_ = true;
    const uint64_t generation = ++watch_generation_;
    client_.socket().async_wait(
        Socket::wait_read, [self = shared_from_this(), generation,
                            on_gone = std::move(on_gone)](beast::error_code ec) {
          if (generation != self->watch_generation_ || !self->watching_client_) return;
          self->watching_client_ = false;
          if (ec == asio::error::operation_aborted) return;
          char byte;
          beast::error_code peek_ec;
          Socket& socket = self->client_.socket();
          socket.non_blocking(true, peek_ec);  // a spurious wake must not block the thread
          const size_t n = socket.receive(asio::buffer(&byte, 1), Socket::message_peek, peek_ec);
          beast::error_code ignored;
          socket.non_blocking(false, ignored);
          if (!ec && !peek_ec && n > 0) return;  // a pipelined request: not a close
          if (peek_ec == asio::error::would_block) return;
          self->client_gone_ = true;
          on_gone();
        });
  }

  // Ends the watch before the session uses the client's socket again.
  void StopWatchingClient() {
    if (!watching_client_) return;
    watching_client_ = false;
    ++watch_generation_;
    beast::error_code ignored;
    client_.socket().cancel(ignored);
  }

  void ClientGone() {
    upstream_.reset();  // the upstream's answer is not read to its end: not reusable
    result_ = ProxyResult::kClientClosed;
    End();
    Close();
  }

  void LogUpstream(std::string_view event, beast::error_code ec, std::string_view phase) {
    uint64_t suppressed = 0;
    if (!state_->upstream_log.Admit(&suppressed)) return;
    obs::LogEvent(spdlog::level::warn, event,
                  {{"upstream", pool_.upstream().authority},
                   {"phase", phase},
                   {"error", ec.message()},
                   {"suppressed", suppressed}});
  }

  // --- Connection ---

  void EnsureBodyBuffer() {
    if (body_buffer_ == nullptr) body_buffer_ = BodyBuffer(body_buffer_cache.Take());
  }

  void Close() {
    beast::error_code ignored;
    client_.socket().shutdown(Socket::shutdown_send, ignored);
    client_.close();
  }

  // Closes after an answer sent while the client may still be sending: stop sending, read and
  // drop what comes for a moment, then close (see kLingerBytes).
  void LingeringClose() {
    beast::error_code ignored;
    client_.socket().shutdown(Socket::shutdown_send, ignored);
    linger_left_ = kLingerBytes;
    client_.expires_after(kLingerTime);
    client_buffer_.clear();
    Linger();
  }

  void Linger() {
    EnsureBodyBuffer();
    client_.async_read_some(asio::buffer(body_buffer_.get(), kBodyBufferBytes),
                            [self = shared_from_this()](beast::error_code ec, size_t bytes) {
                              if (ec || bytes >= self->linger_left_) {
                                self->body_buffer_.reset();
                                return self->client_.close();
                              }
                              self->linger_left_ -= bytes;
                              self->Linger();
                            });
  }

  Stream client_;
  // Holds what is read from the client and not yet parsed: at most a header block (its
  // max_size), since Beast copies body bytes out as they come.
  beast::flat_buffer client_buffer_;
  // Declared before the parser that refers to it.
  std::function<void(std::uint64_t, beast::string_view, beast::error_code&)> on_chunk_header_ =
      [this](std::uint64_t size, beast::string_view extensions, beast::error_code& ec) {
        OnChunkHeader(size, extensions, ec);
      };
  std::optional<bhttp::request_parser<bhttp::buffer_body>> request_parser_;
  std::optional<bhttp::request_serializer<bhttp::buffer_body>> request_serializer_;
  std::optional<bhttp::response_parser<bhttp::buffer_body>> response_parser_;
  std::optional<bhttp::response_serializer<bhttp::buffer_body>> response_serializer_;
  std::optional<bhttp::response<bhttp::string_body>> own_;  // an answer of Sluice's own
  std::unique_ptr<UpstreamConnection> upstream_;
  BodyBuffer body_buffer_;  // kBodyBufferBytes, while a body streams
  asio::steady_timer hold_timer_;
  std::shared_ptr<ProxyServer::State> state_;
  UpstreamPool& pool_;              // this thread's
  net::ConnectionCaps::Slot slot_;  // this connection's place under the caps
  const rules::IpAddress peer_;

  // The request in flight.
  bool active_ = false;
  unsigned version_ = 11;
  bool keep_alive_ = true;         // the client's request allows keep-alive
  bool client_keep_alive_ = true;  // and the answer, as relayed, does too
  bool upstream_keep_alive_ = false;
  bool head_ = false;
  bool idempotent_ = false;
  bool expect_continue_ = false;
  bool request_body_started_ = false;  // body bytes were read from the client
  bool response_started_ = false;      // the upstream's response header arrived
  bool retried_ = false;
  size_t header_bytes_left_ = 0;  // for chunk extensions
  int empty_lines_ = 0;           // skipped before the current request line
  size_t linger_left_ = 0;
  ProxyResult result_ = ProxyResult::kForwarded;
  std::vector<std::pair<std::string, std::string>> limit_headers_;  // §5's, for the answer
  Lease lease_;
  std::chrono::steady_clock::time_point upstream_started_;
  // While nothing is read from or written to the client (a shaping hold, the wait for the
  // upstream's answer), its socket is watched for a close: see WatchClient.
  bool watching_client_ = false;
  bool client_gone_ = false;
  uint64_t watch_generation_ = 0;
};

}  // namespace

std::string_view ProxyResultName(ProxyResult result) {
  switch (result) {
    case ProxyResult::kForwarded:
      return "forwarded";
    case ProxyResult::kRejected:
      return "rejected";
    case ProxyResult::kBlocked:
      return "blocked";
    case ProxyResult::kUnavailable:
      return "unavailable";
    case ProxyResult::kUpstreamError:
      return "upstream_error";
    case ProxyResult::kUpstreamTimeout:
      return "upstream_timeout";
    case ProxyResult::kBadRequest:
      return "bad_request";
    case ProxyResult::kClientClosed:
      return "client_closed";
  }
  return "unknown";
}

ProxyLimiter ProxyLimiter::Of(Limiter& limiter) {
  return {.check =
              [&limiter](CheckRequest request, Limiter::Callback done) {
                limiter.Check(std::move(request), std::move(done));
              },
          .release =
              [&limiter](const std::string& lease_id) {
                limiter.Release(lease_id, [](absl::Status) {});
              },
          .release_then =
              [&limiter](const std::string& lease_id, std::function<void()> then) {
                limiter.Release(lease_id, [then = std::move(then)](absl::Status) { then(); });
              }};
}

ProxyServer::ProxyServer(ProxyOptions options, ProxyLimiter limiter, obs::Metrics& metrics)
    : state_(std::make_shared<State>(std::move(options), std::move(limiter))) {
  for (size_t i = 0; i < kNumProxyResults; ++i) {
    state_->requests[i] = &metrics.proxy_requests(ProxyResultName(static_cast<ProxyResult>(i)));
  }
  state_->upstream_duration = &metrics.proxy_upstream_duration();
  state_->caps =
      net::ConnectionCaps::Create({.max_connections = state_->options.max_connections,
                                   .max_per_address = state_->options.max_connections_per_address,
                                   .health_reserve = 0});
}

ProxyServer::~ProxyServer() { Stop(std::chrono::milliseconds(0)); }

absl::Status ProxyServer::Start() {
  size_t threads = state_->options.threads;
  if (threads == 0) {
    cpu_set_t cpus;
    threads = sched_getaffinity(0, sizeof(cpus), &cpus) == 0
                  ? static_cast<size_t>(CPU_COUNT(&cpus))
                  : std::max(1u, std::thread::hardware_concurrency());
  }
  for (size_t i = 0; i < threads; ++i) {
    contexts_.push_back(std::make_unique<asio::io_context>(1));
    pools_.push_back(std::make_unique<UpstreamPool>(
        contexts_.back()->get_executor(), state_->options.upstream,
        UpstreamPool::Options{.max_idle = state_->options.upstream_connections,
                              .connect_timeout = state_->options.connect_timeout}));
  }
  beast::error_code ec;
  const auto address = asio::ip::make_address(state_->options.address, ec);
  if (ec) return absl::InvalidArgumentError("invalid proxy address " + state_->options.address);
  const tcp::endpoint endpoint(address, state_->options.port);
  acceptor_ = std::make_unique<tcp::acceptor>(*contexts_[0]);
  acceptor_->open(endpoint.protocol(), ec);
  if (!ec) acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_->bind(endpoint, ec);
  if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    const std::string what = Cat("cannot listen on ", state_->options.address, ":",
                                 state_->options.port, " (proxy): ", ec.message());
    acceptor_.reset();
    pools_.clear();
    contexts_.clear();
    return absl::UnavailableError(what);
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

void ProxyServer::Accept() {
  const size_t index = next_context_++ % contexts_.size();
  asio::io_context& target = *contexts_[index];
  UpstreamPool* pool = pools_[index].get();
  acceptor_->async_accept(
      target.get_executor(), [this, pool, state = state_](beast::error_code ec, Socket socket) {
        if (ec == asio::error::operation_aborted || !acceptor_->is_open()) return;
        if (ec) return AcceptLater(ec);
        if (accept_backoff_.Succeeded()) {
          accept_exhausted_.store(false, std::memory_order_relaxed);
          obs::LogEvent(spdlog::level::info, "accept_resumed", {{"listener", "proxy"}});
        }
        const tcp::endpoint peer = socket.remote_endpoint(ec);
        if (ec) {
          socket.close(ec);
          return Accept();
        }
        const std::string address = net::AddressKey(peer.data());
        net::ConnectionCaps::Verdict verdict = state->caps->TryAcquire(address);
        if (!verdict.slot) {
          if (verdict.log) {
            const bool per_address = verdict.refusal == net::ConnectionCaps::Refusal::kPerAddress;
            obs::LogEvent(spdlog::level::warn, "connection_refused",
                          {{"listener", "proxy"},
                           {"address", address},
                           {"cap", per_address ? "max_connections_per_address" : "max_connections"},
                           {"limit", per_address ? state->options.max_connections_per_address
                                                 : state->options.max_connections},
                           {"suppressed", verdict.suppressed}});
          }
          beast::error_code ignored;
          socket.close(ignored);
        } else {
          socket.set_option(tcp::no_delay(true), ec);
          std::make_shared<Session>(std::move(socket), state, *pool, std::move(verdict.slot),
                                    ToIp(peer.address()))
              ->Start();
        }
        Accept();
      });
}

void ProxyServer::AcceptLater(const boost::system::error_code& error) {
  if (error == asio::error::connection_aborted) return Accept();
  bool first = false;
  const std::chrono::milliseconds delay = accept_backoff_.Failed(&first);
  if (first) {
    accept_exhausted_.store(true, std::memory_order_relaxed);
    obs::LogEvent(spdlog::level::warn, "accept_failed",
                  {{"listener", "proxy"},
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

void ProxyServer::Stop(std::chrono::milliseconds grace) {
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
  // The pools (their resolvers and idle connections) before the io_contexts they live on; the
  // sessions still parked go with the io_contexts, giving their leases back.
  pools_.clear();
  contexts_.clear();
}

}  // namespace sluice::proxy
