// One persistent connection to Redis, on the client's Asio thread: connect (resolve, TCP, the
// handshake), pipelined writes, replies matched to requests in order, and reconnection with
// backoff after a failure. Which connection a request goes to, deadlines and the circuit are the
// client's (client.h); a connection tells its Owner when it is ready, when Redis answered and
// when it went down. Not thread-safe: everything runs on the io_context's one thread.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "net/host_port.h"
#include "store/redis/request.h"
#include "store/redis/resp.h"

namespace sluice::redis {

// What every connection of a client shares; owned by the client, changed only on its thread.
struct ConnectionSettings {
  net::HostPort address;  // where to connect; empty host: nowhere yet
  std::string handshake;  // AUTH, SELECT, on_connect, on_connect_optional commands: RESP
  size_t handshake_replies = 0;
  size_t handshake_required = 0;  // the first replies, whose error fails the connection
  std::chrono::milliseconds connect_timeout{1000};  // TCP connect plus handshake
  std::chrono::milliseconds backoff_initial{10};    // reconnection delay, doubling per failure
  std::chrono::milliseconds backoff_max{1000};
};

class Connection {
 public:
  class Owner {
   public:
    virtual ~Owner() = default;
    // The handshake is done: the connection takes requests.
    virtual void OnReady(Connection& c) = 0;
    // Redis answered something on `c`.
    virtual void OnAnswered(Connection& c) = 0;
    // `c` went down (its requests are failed right after this returns; it reconnects after its
    // backoff unless shut down).
    virtual void OnDown(Connection& c, const absl::Status& status) = 0;
  };

  enum class State { kDown, kConnecting, kHandshake, kReady };

  Connection(boost::asio::io_context& io, int index, const ConnectionSettings& settings,
             Owner& owner);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  State state() const { return state_; }
  bool ready() const { return state_ == State::kReady; }
  bool connecting() const { return state_ == State::kConnecting || state_ == State::kHandshake; }
  int index() const { return index_; }
  // Requests written or queued, awaiting their replies, oldest first.
  std::deque<std::unique_ptr<Request>>& inflight() { return inflight_; }

  // Connects to settings.address now (from kDown).
  void Connect();
  // Queues `r` behind what is in flight; Flush writes it.
  void Enqueue(std::unique_ptr<Request> r);
  // Starts a write of everything queued, unless one is in progress (its completion writes what
  // was queued meanwhile: the pipelining).
  void Flush();
  // Fails what is in flight with `status` and reconnects after the backoff.
  void Close(absl::Status status);
  // Closes and reconnects at once, with no backoff (the address changed).
  void Reconnect(absl::Status status);
  // Closes for good: no reconnection.
  void Shutdown(absl::Status status);

 private:
  void Connected();
  void Ready();
  void StartRead();
  void OnData(size_t n);

  boost::asio::ip::tcp::socket socket_;
  boost::asio::steady_timer timer_;  // connect timeout, then reconnection backoff
  boost::asio::ip::tcp::resolver resolver_;
  const int index_;
  const ConnectionSettings& settings_;
  Owner& owner_;
  State state_ = State::kDown;
  bool shut_down_ = false;
  // Bumped whenever the connection is closed: handlers of an older generation do nothing.
  uint64_t generation_ = 0;
  std::string out_;       // commands queued, not yet handed to a write
  bool writing_ = false;  // a write is in progress; out_ goes in the next one
  std::deque<std::unique_ptr<Request>> inflight_;
  std::unique_ptr<ReplyReader> reader_;
  std::array<char, 16384> buffer_;
  std::chrono::milliseconds backoff_{0};  // 0 after a success
};

}  // namespace sluice::redis
