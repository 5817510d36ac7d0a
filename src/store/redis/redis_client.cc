#include "store/redis/redis_client.h"

#include <array>
#include <deque>
#include <mutex>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/write.hpp"
#include "obs/log.h"

namespace sluice::redis {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;
using spdlog::level::level_enum;

absl::StatusOr<Endpoint> ParseUrl(std::string_view url, std::string* user) {
  constexpr std::string_view kScheme = "redis://";
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError("invalid Redis URL '" + std::string(url) +
                                      "': " + std::string(why) +
                                      " (expected redis://[:password@]host:port[/db])");
  };
  if (url.substr(0, kScheme.size()) != kScheme) return bad("must start with redis://");
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
  std::string_view port;
  if (!hostport.empty() && hostport[0] == '[') {
    const size_t close = hostport.find(']');
    if (close == std::string_view::npos) return bad("unclosed [");
    e.host = std::string(hostport.substr(1, close - 1));
    if (close + 1 < hostport.size()) {
      if (hostport[close + 1] != ':') return bad("bad port");
      port = hostport.substr(close + 2);
    }
  } else {
    const size_t colon = hostport.rfind(':');
    e.host = std::string(hostport.substr(0, colon));
    if (colon != std::string_view::npos) port = hostport.substr(colon + 1);
  }
  if (e.host.empty()) return bad("no host");
  if (!port.empty()) {
    uint32_t p = 0;
    if (!absl::SimpleAtoi(std::string(port), &p) || p == 0 || p > 65535) return bad("bad port");
    e.port = static_cast<uint16_t>(p);
  }
  return e;
}

void AppendCommand(std::string& out, std::span<const std::string_view> args) {
  absl::StrAppend(&out, "*", args.size(), "\r\n");
  for (std::string_view arg : args) {
    absl::StrAppend(&out, "$", arg.size(), "\r\n");
    out.append(arg).append("\r\n");
  }
}

namespace {

struct Request {
  std::string payload;
  size_t expected = 1;
  std::vector<Reply> replies;
  Client::Callback done;  // empty once answered (a timed-out request awaits its reply)
  SteadyClock::time_point deadline;
  SteadyClock::time_point sent;  // when handed to a connection
  bool user = true;              // false: handshake and probes, which do not trip the circuit
};

struct Connection {
  explicit Connection(asio::io_context& io, int index)
      : socket(io), timer(io), resolver(io), index(index) {}
  ~Connection() {
    if (reader != nullptr) redisReaderFree(reader);
  }

  enum class State { kDown, kConnecting, kHandshake, kReady };
  tcp::socket socket;
  asio::steady_timer timer;  // connect timeout, then reconnection backoff
  tcp::resolver resolver;
  const int index;
  State state = State::kDown;
  // Bumped whenever the connection is closed: handlers of an older generation do nothing.
  uint64_t generation = 0;
  std::string out;       // commands queued, not yet handed to a write
  bool writing = false;  // a write is in progress; `out` goes in the next one
  std::deque<std::unique_ptr<Request>> inflight;  // written or queued, awaiting replies, FIFO
  redisReader* reader = nullptr;
  std::array<char, 16384> buffer;
  std::chrono::milliseconds backoff{0};  // 0 after a success
};

}  // namespace

// Everything below runs on the client's thread, except Submit.
struct Client::Impl {
  explicit Impl(ClientOptions o)
      : options(std::move(o)),
        host(options.endpoint.host),
        port(options.endpoint.port),
        work(asio::make_work_guard(io)),
        tick_timer(io),
        probe_timer(io) {
    tick = std::clamp<std::chrono::milliseconds>(options.timeout / 8, std::chrono::milliseconds(1),
                                                 std::chrono::milliseconds(50));
    for (int i = 0; i < std::max(1, options.pool); ++i) {
      connections.push_back(std::make_unique<Connection>(io, i));
    }
    // The handshake, the same for every connection.
    auto add = [&](std::vector<std::string_view> args) {
      AppendCommand(handshake, args);
      ++handshake_replies;
    };
    if (!options.endpoint.password.empty()) {
      if (options.user.empty()) {
        add({"AUTH", options.endpoint.password});
      } else {
        add({"AUTH", options.user, options.endpoint.password});
      }
    }
    const std::string db = std::to_string(options.endpoint.db);
    if (options.endpoint.db != 0) add({"SELECT", db});
    for (const auto& command : options.on_connect) {
      std::vector<std::string_view> args(command.begin(), command.end());
      add(args);
    }
  }

  void Start() {
    if (host.empty()) {
      asio::post(io, [this] { OpenCircuit("no address yet"); });
    } else {
      for (auto& c : connections) asio::post(io, [this, c = c.get()] { Connect(*c); });
    }
    thread = std::thread([this] { io.run(); });
  }

  void Move(std::string new_host, uint16_t new_port) {
    if (stopped || (new_host == host && new_port == port)) return;
    obs::LogEvent(
        level_enum::info, "redis_address_changed",
        {{"from", absl::StrCat(host, ":", port)}, {"to", absl::StrCat(new_host, ":", new_port)}});
    host = std::move(new_host);
    port = new_port;
    for (auto& c : connections) {
      Close(*c, absl::UnavailableError("redis moved to another address"));
      c->timer.cancel();
      c->backoff = std::chrono::milliseconds(0);
      Connect(*c);
    }
  }

  // Any thread.
  void Submit(std::unique_ptr<Request> request) {
    bool post = false;
    {
      std::lock_guard lock(submit_mu);
      submitted.push_back(std::move(request));
      post = !flush_posted;
      flush_posted = true;
    }
    // One post per batch: requests submitted while a flush is pending ride along with it.
    if (post) asio::post(io, [this] { Flush(); });
  }

  void Flush() {
    std::vector<std::unique_ptr<Request>> batch;
    {
      std::lock_guard lock(submit_mu);
      batch.swap(submitted);
      flush_posted = false;
    }
    for (auto& r : batch) Dispatch(std::move(r));
    for (auto& c : connections) StartWrite(*c);
  }

  Connection* LeastLoaded() {
    Connection* best = nullptr;
    for (auto& c : connections) {
      if (c->state != Connection::State::kReady) continue;
      if (best == nullptr || c->inflight.size() < best->inflight.size()) best = c.get();
    }
    return best;
  }

  bool AnyConnecting() const {
    for (const auto& c : connections) {
      if (c->state == Connection::State::kConnecting || c->state == Connection::State::kHandshake) {
        return true;
      }
    }
    return false;
  }

  // Queues `r` on a connection (the caller starts the write), waits for one, or fails it.
  void Dispatch(std::unique_ptr<Request> r) {
    if (stopped) return Fail(std::move(r), absl::UnavailableError("redis client shutting down"));
    if (circuit_open.load(std::memory_order_relaxed)) {
      return Fail(std::move(r), absl::UnavailableError("redis unavailable (circuit open)"));
    }
    if (Connection* c = LeastLoaded()) {
      Enqueue(*c, std::move(r));
    } else if (AnyConnecting()) {
      pending.push_back(std::move(r));  // the first connection ready takes it
      EnsureTicking();
    } else {
      Fail(std::move(r), absl::UnavailableError("redis unavailable (no connection)"));
    }
  }

  void Enqueue(Connection& c, std::unique_ptr<Request> r) {
    c.out += r->payload;
    r->payload.clear();
    r->sent = SteadyClock::now();
    c.inflight.push_back(std::move(r));
    EnsureTicking();
  }

  static void Fail(std::unique_ptr<Request> r, absl::Status status) {
    if (r->done) std::move(r->done)(std::move(status));
  }

  // --- connections ---

  void Connect(Connection& c) {
    if (stopped) return;
    c.state = Connection::State::kConnecting;
    const uint64_t gen = ++c.generation;
    c.timer.expires_after(options.connect_timeout);
    c.timer.async_wait([this, &c, gen](const boost::system::error_code& ec) {
      if (ec || gen != c.generation || c.state == Connection::State::kReady) return;
      Close(c, absl::UnavailableError("redis connect timed out"));
    });
    c.resolver.async_resolve(
        host, std::to_string(port),
        [this, &c, gen](const boost::system::error_code& ec, tcp::resolver::results_type results) {
          if (gen != c.generation) return;
          if (ec) return Close(c, absl::UnavailableError("redis resolve: " + ec.message()));
          asio::async_connect(
              c.socket, results,
              [this, &c, gen](const boost::system::error_code& ec, const tcp::endpoint&) {
                if (gen != c.generation) return;
                if (ec) return Close(c, absl::UnavailableError("redis connect: " + ec.message()));
                Connected(c);
              });
        });
  }

  void Connected(Connection& c) {
    boost::system::error_code ignored;
    c.socket.set_option(tcp::no_delay(true), ignored);
    c.reader = redisReaderCreate();
    c.state = Connection::State::kHandshake;
    StartRead(c);
    if (handshake_replies == 0) return Ready(c);
    auto r = std::make_unique<Request>();
    r->payload = handshake;
    r->expected = handshake_replies;
    r->user = false;
    r->deadline = SteadyClock::now() + options.connect_timeout;
    const uint64_t gen = c.generation;
    r->done = [this, &c, gen](absl::StatusOr<std::vector<Reply>> replies) {
      if (gen != c.generation) return;
      if (!replies.ok()) return Close(c, replies.status());
      for (const Reply& reply : *replies) {
        if (reply->type == REDIS_REPLY_ERROR) {
          return Close(
              c, absl::UnavailableError("redis handshake: " + std::string(reply->str, reply->len)));
        }
      }
      Ready(c);
    };
    Enqueue(c, std::move(r));
    StartWrite(c);
  }

  void Ready(Connection& c) {
    c.state = Connection::State::kReady;
    c.backoff = std::chrono::milliseconds(0);
    c.timer.cancel();
    CloseCircuit();
    std::deque<std::unique_ptr<Request>> waiting;
    waiting.swap(pending);
    for (auto& r : waiting) Dispatch(std::move(r));
    for (auto& conn : connections) StartWrite(*conn);
  }

  // Fails what `c` has in flight with `status` and reconnects after the backoff.
  void Close(Connection& c, absl::Status status) {
    if (c.state == Connection::State::kDown) return;
    const bool was_ready = c.state == Connection::State::kReady;
    ++c.generation;
    boost::system::error_code ignored;
    c.socket.close(ignored);
    c.resolver.cancel();
    if (c.reader != nullptr) {
      redisReaderFree(c.reader);
      c.reader = nullptr;
    }
    c.out.clear();
    c.writing = false;
    c.state = Connection::State::kDown;
    std::deque<std::unique_ptr<Request>> failed;
    failed.swap(c.inflight);

    // Log the first failure of a run, not every retry of a Redis that stays down.
    obs::LogEvent(stopped                  ? level_enum::debug
                  : c.backoff.count() == 0 ? level_enum::warn
                                           : level_enum::debug,
                  "redis_connection_failed",
                  {{"connection", c.index},
                   {"error", std::string(status.message())},
                   {"was_ready", was_ready}});
    c.backoff = c.backoff.count() == 0 ? options.backoff_initial
                                       : std::min(options.backoff_max, c.backoff * 2);
    if (!stopped) {
      c.timer.expires_after(c.backoff);
      c.timer.async_wait([this, &c](const boost::system::error_code& ec) {
        if (!ec && c.state == Connection::State::kDown) Connect(c);
      });
    }
    // Every connection down and none about to come up: stop making requests wait.
    if (LeastLoaded() == nullptr && !AnyConnecting()) OpenCircuit(std::string(status.message()));
    for (auto& r : failed) Fail(std::move(r), status);
  }

  void StartRead(Connection& c) {
    const uint64_t gen = c.generation;
    c.socket.async_read_some(
        asio::buffer(c.buffer), [this, &c, gen](const boost::system::error_code& ec, size_t n) {
          if (gen != c.generation) return;
          if (ec) {
            return Close(
                c, absl::UnavailableError(ec == asio::error::eof ? "redis closed the connection"
                                                                 : "redis read: " + ec.message()));
          }
          OnData(c, n);
        });
  }

  void OnData(Connection& c, size_t n) {
    const uint64_t gen = c.generation;
    if (redisReaderFeed(c.reader, c.buffer.data(), n) != REDIS_OK) {
      return Close(c, absl::InternalError("redis protocol error"));
    }
    for (;;) {
      void* raw = nullptr;
      if (redisReaderGetReply(c.reader, &raw) != REDIS_OK) {
        return Close(c,
                     absl::InternalError(std::string("redis protocol error: ") + c.reader->errstr));
      }
      if (raw == nullptr) break;
      Reply reply(static_cast<redisReply*>(raw));
      if (c.inflight.empty()) return Close(c, absl::InternalError("redis sent an unasked reply"));
      Request& head = *c.inflight.front();
      head.replies.push_back(std::move(reply));
      if (head.replies.size() < head.expected) continue;
      std::unique_ptr<Request> done = std::move(c.inflight.front());
      c.inflight.pop_front();
      CloseCircuit();  // Redis answers
      if (done->done) std::move(done->done)(std::move(done->replies));
      if (gen != c.generation) return;  // the callback closed the connection
    }
    StartRead(c);
  }

  void StartWrite(Connection& c) {
    if (c.writing || c.out.empty()) return;
    if (c.state != Connection::State::kReady && c.state != Connection::State::kHandshake) return;
    // Everything queued since the last write goes in this one: the pipelining.
    auto batch = std::make_shared<std::string>(std::move(c.out));
    c.out.clear();
    c.writing = true;
    const uint64_t gen = c.generation;
    asio::async_write(c.socket, asio::buffer(*batch),
                      [this, &c, gen, batch](const boost::system::error_code& ec, size_t) {
                        if (gen != c.generation) return;
                        c.writing = false;
                        if (ec)
                          return Close(c, absl::UnavailableError("redis write: " + ec.message()));
                        StartWrite(c);
                      });
  }

  // --- timeouts and the circuit ---

  void EnsureTicking() {
    if (ticking || stopped) return;
    ticking = true;
    tick_timer.expires_after(tick);
    tick_timer.async_wait([this](const boost::system::error_code& ec) {
      ticking = false;
      if (!ec) Tick();
    });
  }

  void Tick() {
    const auto now = SteadyClock::now();
    std::vector<Callback> expired;
    bool user_expired = false;
    bool outstanding = false;
    std::vector<Connection*> dead;
    auto expire = [&](Request& r) {
      if (!r.done || now < r.deadline) return;
      expired.push_back(std::move(r.done));
      r.done = nullptr;
      user_expired |= r.user;
    };
    for (auto& c : connections) {
      for (auto& r : c->inflight) expire(*r);
      if (!c->inflight.empty()) {
        outstanding = true;
        if (now - c->inflight.front()->sent > options.dead_after) dead.push_back(c.get());
      }
    }
    for (auto it = pending.begin(); it != pending.end();) {
      expire(**it);
      it = (*it)->done ? it + 1 : pending.erase(it);
    }
    outstanding |= !pending.empty();
    if (user_expired) OpenCircuit("request timed out");
    for (auto& done : expired) {
      std::move(done)(absl::DeadlineExceededError("redis request timed out"));
    }
    for (Connection* c : dead) {
      Close(*c, absl::UnavailableError("redis connection stalled (no reply)"));
    }
    if (outstanding) EnsureTicking();
  }

  void OpenCircuit(const std::string& reason) {
    if (stopped || circuit_open.exchange(true, std::memory_order_relaxed)) return;
    obs::LogEvent(level_enum::warn, "redis_circuit_open", {{"reason", reason}});
    std::deque<std::unique_ptr<Request>> waiting;
    waiting.swap(pending);
    for (auto& r : waiting) Fail(std::move(r), absl::UnavailableError("redis unavailable"));
    probe_backoff = options.backoff_initial;
    ScheduleProbe();
  }

  void CloseCircuit() {
    if (!circuit_open.exchange(false, std::memory_order_relaxed)) return;
    probe_timer.cancel();
    obs::LogEvent(level_enum::info, "redis_circuit_closed");
  }

  // While open: PING on a live connection; any answer closes the circuit. A connection that is
  // down closes it by reconnecting instead.
  void ScheduleProbe() {
    probe_timer.expires_after(probe_backoff);
    probe_timer.async_wait([this](const boost::system::error_code& ec) {
      if (ec || stopped || !circuit_open.load(std::memory_order_relaxed)) return;
      probe_backoff = std::min(options.backoff_max, probe_backoff * 2);
      if (Connection* c = LeastLoaded()) {
        auto r = std::make_unique<Request>();
        AppendCommand(r->payload, std::array<std::string_view, 1>{"PING"});
        r->user = false;
        r->deadline = SteadyClock::now() + options.timeout;
        r->done = [](absl::StatusOr<std::vector<Reply>>) {};  // the reply itself closes it
        Enqueue(*c, std::move(r));
        StartWrite(*c);
      }
      ScheduleProbe();
    });
  }

  void Stop() {
    stopped = true;
    tick_timer.cancel();
    probe_timer.cancel();
    for (auto& c : connections) {
      Close(*c, absl::UnavailableError("redis client shutting down"));
      c->timer.cancel();
    }
    std::deque<std::unique_ptr<Request>> waiting;
    waiting.swap(pending);
    for (auto& r : waiting)
      Fail(std::move(r), absl::UnavailableError("redis client shutting down"));
    io.stop();
  }

  const ClientOptions options;
  std::string host;  // where connections go: options.endpoint's, until Move
  uint16_t port;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  std::thread thread;
  std::vector<std::unique_ptr<Connection>> connections;
  std::string handshake;  // AUTH, SELECT, on_connect: RESP
  size_t handshake_replies = 0;

  std::mutex submit_mu;
  std::vector<std::unique_ptr<Request>> submitted;  // guarded by submit_mu
  bool flush_posted = false;                        // guarded by submit_mu

  std::deque<std::unique_ptr<Request>> pending;  // waiting for a connection, oldest first
  std::chrono::milliseconds tick{1};
  asio::steady_timer tick_timer;
  bool ticking = false;
  // Written on the client's thread, read by available() anywhere. Relaxed: advisory.
  std::atomic<bool> circuit_open{false};
  asio::steady_timer probe_timer;
  std::chrono::milliseconds probe_backoff{0};
  bool stopped = false;
};

Client::Client(ClientOptions options) : impl_(std::make_shared<Impl>(std::move(options))) {
  impl_->Start();
}

Client::~Client() {
  asio::post(impl_->io, [impl = impl_.get()] { impl->Stop(); });
  impl_->thread.join();
  // Whatever was submitted after the stop: answer it here.
  std::vector<std::unique_ptr<Request>> left;
  {
    std::lock_guard lock(impl_->submit_mu);
    left.swap(impl_->submitted);
  }
  for (auto& r : left) Impl::Fail(std::move(r), absl::UnavailableError("redis client shut down"));
}

void Client::Execute(std::string commands, size_t replies, Callback done) {
  auto r = std::make_unique<Request>();
  r->payload = std::move(commands);
  r->expected = replies;
  r->done = std::move(done);
  r->deadline = SteadyClock::now() + impl_->options.timeout;
  impl_->Submit(std::move(r));
}

void Client::SetAddress(std::string host, uint16_t port) {
  asio::post(impl_->io, [impl = impl_.get(), host = std::move(host), port]() mutable {
    impl->Move(std::move(host), port);
  });
}

bool Client::available() const { return !impl_->circuit_open.load(std::memory_order_relaxed); }

}  // namespace sluice::redis
