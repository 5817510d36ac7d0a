#include "store/redis/client.h"

#include <algorithm>
#include <array>
#include <deque>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "obs/log.h"
#include "store/redis/circuit_breaker.h"
#include "store/redis/connection.h"

namespace sluice::redis {

namespace asio = boost::asio;
using spdlog::level::level_enum;

// Everything below runs on the client's thread, except Submit.
struct Client::Impl final : Connection::Owner {
  explicit Impl(ClientOptions o)
      : options(std::move(o)),
        work(asio::make_work_guard(io)),
        tick_timer(io),
        probe_timer(io),
        breaker({.min_wait = options.timeout / 2,
                 .probe_initial = options.backoff_initial,
                 .probe_max = options.backoff_max}) {
    tick = std::clamp<std::chrono::milliseconds>(options.timeout / 8, std::chrono::milliseconds(1),
                                                 std::chrono::milliseconds(50));
    settings.address = {options.endpoint.host, options.endpoint.port};
    settings.connect_timeout = options.connect_timeout;
    settings.backoff_initial = options.backoff_initial;
    settings.backoff_max = options.backoff_max;
    // The handshake, the same for every connection.
    auto add = [&](std::vector<std::string_view> args) {
      AppendCommand(settings.handshake, args);
      ++settings.handshake_replies;
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
    settings.handshake_required = settings.handshake_replies;
    for (const auto& command : options.on_connect_optional) {
      std::vector<std::string_view> args(command.begin(), command.end());
      add(args);
    }
    for (int i = 0; i < std::max(1, options.pool); ++i) {
      connections.push_back(std::make_unique<Connection>(io, i, settings, *this));
    }
  }

  void Start() {
    if (settings.address.host.empty()) {
      asio::post(io, [this] { Trip("no address yet"); });
    } else {
      for (auto& c : connections) asio::post(io, [c = c.get()] { c->Connect(); });
    }
    thread = std::thread([this] { io.run(); });
  }

  void Move(std::string host, uint16_t port) {
    net::HostPort to{std::move(host), port};
    if (stopped || to == settings.address) return;
    obs::LogEvent(level_enum::info, "redis_address_changed",
                  {{"from", settings.address.ToString()}, {"to", to.ToString()}});
    settings.address = std::move(to);
    for (auto& c : connections)
      c->Reconnect(absl::UnavailableError("redis moved to another address"));
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
    {
      std::lock_guard lock(submit_mu);
      batch.swap(submitted);
      flush_posted = false;
    }
    for (auto& r : batch) Dispatch(std::move(r));
    batch.clear();  // keeps its capacity: no allocation per flush
    for (auto& c : connections) c->Flush();
  }

  Connection* LeastLoaded() {
    Connection* best = nullptr;
    for (auto& c : connections) {
      if (!c->ready()) continue;
      if (best == nullptr || c->inflight().size() < best->inflight().size()) best = c.get();
    }
    return best;
  }

  bool AnyConnecting() const {
    return std::any_of(connections.begin(), connections.end(),
                       [](const auto& c) { return c->connecting(); });
  }

  // Queues `r` on a connection (the caller flushes), keeps it waiting for one, or fails it.
  void Dispatch(std::unique_ptr<Request> r) {
    if (stopped) return r->Answer(absl::UnavailableError("redis client shutting down"));
    if (breaker.open())
      return r->Answer(absl::UnavailableError("redis unavailable (circuit open)"));
    // A check whose budget is spent (by redirects, a reload) does not ask Redis again.
    if (SteadyClock::now() >= r->deadline) {
      return r->Answer(absl::DeadlineExceededError("redis request timed out"));
    }
    if (Connection* c = LeastLoaded()) {
      c->Enqueue(std::move(r));
      EnsureTicking();
    } else if (AnyConnecting()) {
      r->sent = SteadyClock::now();
      pending.push_back(std::move(r));  // the first connection ready takes it
      EnsureTicking();
    } else {
      r->Answer(absl::UnavailableError("redis unavailable (no connection)"));
    }
  }

  // --- Connection::Owner ---

  void OnReady(Connection&) override {
    Answered();
    std::deque<std::unique_ptr<Request>> waiting;
    waiting.swap(pending);
    for (auto& r : waiting) Dispatch(std::move(r));
    for (auto& c : connections) c->Flush();
  }

  void OnAnswered(Connection&) override { Answered(); }

  void OnDown(Connection&, const absl::Status& status) override {
    // Every connection down and none about to come up: stop making requests wait.
    if (LeastLoaded() == nullptr && !AnyConnecting()) Trip(std::string(status.message()));
  }

  // --- deadlines and the circuit ---

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
    bool trip = false;
    bool outstanding_left = false;
    auto expire = [&](Request& r) {
      if (!r.done || now < r.deadline) return;
      // Handshakes and probes (no `outstanding`) never open the circuit: their connection's
      // own timers deal with them.
      if (r.outstanding != nullptr) trip |= breaker.RequestTimedOut(now, now - r.sent);
      expired.push_back(r.Take());
    };
    for (auto& c : connections) {
      for (auto& r : c->inflight()) expire(*r);
      if (!c->inflight().empty()) {
        outstanding_left = true;
        if (now - c->inflight().front()->sent > options.dead_after) dead.push_back(c.get());
      }
    }
    for (auto it = pending.begin(); it != pending.end();) {
      expire(**it);
      it = (*it)->done ? it + 1 : pending.erase(it);
    }
    outstanding_left |= !pending.empty();
    // The circuit opens before the callbacks run, so that what they send next fails fast.
    if (trip) Opened("request timed out");
    for (auto& done : expired) {
      std::move(done)(absl::DeadlineExceededError("redis request timed out"));
    }
    expired.clear();
    for (Connection* c : dead)
      c->Close(absl::UnavailableError("redis connection stalled (no reply)"));
    dead.clear();
    if (outstanding_left) EnsureTicking();
  }

  void Trip(const std::string& reason) {
    if (!stopped && breaker.NoConnection(SteadyClock::now())) Opened(reason);
  }

  // The breaker has just opened.
  void Opened(const std::string& reason) {
    circuit_open.store(true, std::memory_order_relaxed);
    obs::LogEvent(level_enum::warn, "redis_circuit_open",
                  {{"reason", reason}, {"address", settings.address.ToString()}});
    std::deque<std::unique_ptr<Request>> waiting;
    waiting.swap(pending);
    for (auto& r : waiting) r->Answer(absl::UnavailableError("redis unavailable"));
    ScheduleProbe();
  }

  void Answered() {
    if (!breaker.Answered()) return;
    circuit_open.store(false, std::memory_order_relaxed);
    probe_timer.cancel();
    obs::LogEvent(level_enum::info, "redis_circuit_closed",
                  {{"address", settings.address.ToString()}});
  }

  // While open: PING on a live connection; any answer closes the circuit. A connection that is
  // down closes it by reconnecting instead.
  void ScheduleProbe() {
    if (stopped || !breaker.open()) return;
    probe_timer.expires_at(breaker.next_probe());
    probe_timer.async_wait([this](const boost::system::error_code& ec) {
      if (ec || stopped) return;
      if (breaker.ShouldProbe(SteadyClock::now())) {
        if (Connection* c = LeastLoaded()) {
          auto r = std::make_unique<Request>();
          AppendCommand(r->payload, std::array<std::string_view, 1>{"PING"});
          r->deadline = SteadyClock::now() + options.timeout;
          r->done = [](absl::StatusOr<std::vector<Reply>>) {};  // the reply itself closes it
          c->Enqueue(std::move(r));
          c->Flush();
          EnsureTicking();
        }
      }
      ScheduleProbe();
    });
  }

  void Stop() {
    stopped = true;
    tick_timer.cancel();
    probe_timer.cancel();
    for (auto& c : connections) c->Shutdown(absl::UnavailableError("redis client shutting down"));
    std::deque<std::unique_ptr<Request>> waiting;
    waiting.swap(pending);
    for (auto& r : waiting) r->Answer(absl::UnavailableError("redis client shutting down"));
    io.stop();
  }

  const ClientOptions options;
  ConnectionSettings settings;  // the address changes on Move
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  std::thread thread;
  std::vector<std::unique_ptr<Connection>> connections;

  std::mutex submit_mu;
  std::vector<std::unique_ptr<Request>> submitted;  // guarded by submit_mu
  bool flush_posted = false;                        // guarded by submit_mu
  std::vector<std::unique_ptr<Request>> batch;      // Flush's, reused
  // Requests Execute took and whose `done` has not been taken. Relaxed: a count, no ordering.
  std::atomic<int64_t> outstanding{0};

  std::deque<std::unique_ptr<Request>> pending;  // waiting for a connection, oldest first
  std::chrono::milliseconds tick{1};
  asio::steady_timer tick_timer;
  bool ticking = false;
  std::vector<Callback> expired;  // Tick's, reused
  std::vector<Connection*> dead;  // Tick's, reused
  asio::steady_timer probe_timer;
  CircuitBreaker breaker;
  // Mirrors breaker.open() for available(), read on any thread. Relaxed: advisory.
  std::atomic<bool> circuit_open{false};
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
  for (auto& r : left) r->Answer(absl::UnavailableError("redis client shut down"));
}

void Client::Execute(std::string commands, size_t replies, Deadline deadline, Callback done) {
  auto r = std::make_unique<Request>();
  r->payload = std::move(commands);
  r->expected = replies;
  r->done = std::move(done);
  r->deadline = deadline;
  r->outstanding = &impl_->outstanding;
  impl_->outstanding.fetch_add(1, std::memory_order_relaxed);
  impl_->Submit(std::move(r));
}

void Client::SetAddress(std::string host, uint16_t port) {
  asio::post(impl_->io, [impl = impl_.get(), host = std::move(host), port]() mutable {
    impl->Move(std::move(host), port);
  });
}

bool Client::available() const { return !impl_->circuit_open.load(std::memory_order_relaxed); }

int64_t Client::outstanding() const { return impl_->outstanding.load(std::memory_order_relaxed); }

}  // namespace sluice::redis
