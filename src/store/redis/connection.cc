#include "store/redis/connection.h"

#include <utility>

#include "boost/asio/connect.hpp"
#include "boost/asio/write.hpp"
#include "obs/log.h"

namespace sluice::redis {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using spdlog::level::level_enum;

Connection::Connection(asio::io_context& io, int index, const ConnectionSettings& settings,
                       Owner& owner)
    : socket_(io), timer_(io), resolver_(io), index_(index), settings_(settings), owner_(owner) {}

void Connection::Connect() {
  if (shut_down_ || settings_.address.host.empty()) return;
  state_ = State::kConnecting;
  const uint64_t gen = ++generation_;
  timer_.expires_after(settings_.connect_timeout);
  timer_.async_wait([this, gen](const boost::system::error_code& ec) {
    if (ec || gen != generation_ || state_ == State::kReady) return;
    Close(absl::UnavailableError("redis connect timed out"));
  });
  resolver_.async_resolve(
      settings_.address.host, std::to_string(settings_.address.port),
      [this, gen](const boost::system::error_code& ec, tcp::resolver::results_type results) {
        if (gen != generation_) return;
        if (ec) return Close(absl::UnavailableError("redis resolve: " + ec.message()));
        asio::async_connect(
            socket_, results,
            [this, gen](const boost::system::error_code& ec, const tcp::endpoint&) {
              if (gen != generation_) return;
              if (ec) {
                return Close(absl::UnavailableError("redis connect: " + ec.message()));
              }
              Connected();
            });
      });
}

void Connection::Connected() {
  boost::system::error_code ignored;
  socket_.set_option(tcp::no_delay(true), ignored);
  reader_ = std::make_unique<ReplyReader>();
  state_ = State::kHandshake;
  StartRead();
  if (settings_.handshake_replies == 0) return Ready();
  auto r = std::make_unique<Request>();
  r->payload = settings_.handshake;
  r->expected = settings_.handshake_replies;
  // The connect timer (connect_timeout) bounds the handshake; the client's deadline scan does
  // too, so that it is never left waiting.
  r->deadline = SteadyClock::now() + settings_.connect_timeout;
  const uint64_t gen = generation_;
  r->done = [this, gen](absl::StatusOr<std::vector<Reply>> replies) {
    if (gen != generation_) return;
    if (!replies.ok()) return Close(replies.status());
    for (size_t i = 0; i < settings_.handshake_required && i < replies->size(); ++i) {
      const Reply& reply = (*replies)[i];
      if (reply->type == REDIS_REPLY_ERROR) {
        return Close(
            absl::UnavailableError("redis handshake: " + std::string(reply->str, reply->len)));
      }
    }
    Ready();
  };
  Enqueue(std::move(r));
  Flush();
}

void Connection::Ready() {
  state_ = State::kReady;
  backoff_ = std::chrono::milliseconds(0);
  timer_.cancel();
  owner_.OnReady(*this);
}

void Connection::Enqueue(std::unique_ptr<Request> r) {
  out_ += r->payload;
  r->payload.clear();
  r->sent = SteadyClock::now();
  inflight_.push_back(std::move(r));
}

void Connection::Close(absl::Status status) {
  if (state_ == State::kDown) return;
  const bool was_ready = state_ == State::kReady;
  ++generation_;
  boost::system::error_code ignored;
  socket_.close(ignored);
  resolver_.cancel();
  reader_.reset();
  out_.clear();
  writing_ = false;
  state_ = State::kDown;
  std::deque<std::unique_ptr<Request>> failed;
  failed.swap(inflight_);

  // Log the first failure of a run, not every retry of a Redis that stays down.
  obs::LogEvent(shut_down_              ? level_enum::debug
                : backoff_.count() == 0 ? level_enum::warn
                                        : level_enum::debug,
                "redis_connection_failed",
                {{"connection", index_},
                 {"address", settings_.address.ToString()},
                 {"error", std::string(status.message())},
                 {"was_ready", was_ready}});
  backoff_ = backoff_.count() == 0 ? settings_.backoff_initial
                                   : std::min(settings_.backoff_max, backoff_ * 2);
  if (!shut_down_) {
    timer_.expires_after(backoff_);
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec && state_ == State::kDown) Connect();
    });
  }
  owner_.OnDown(*this, status);
  for (auto& r : failed) r->Answer(status);
}

void Connection::Reconnect(absl::Status status) {
  Close(std::move(status));
  timer_.cancel();
  backoff_ = std::chrono::milliseconds(0);
  Connect();
}

void Connection::Shutdown(absl::Status status) {
  shut_down_ = true;
  Close(std::move(status));
  timer_.cancel();
}

void Connection::StartRead() {
  const uint64_t gen = generation_;
  socket_.async_read_some(asio::buffer(buffer_), [this, gen](const boost::system::error_code& ec,
                                                             size_t n) {
    if (gen != generation_) return;
    if (ec) {
      return Close(absl::UnavailableError(ec == asio::error::eof ? "redis closed the connection"
                                                                 : "redis read: " + ec.message()));
    }
    OnData(n);
  });
}

void Connection::OnData(size_t n) {
  const uint64_t gen = generation_;
  if (absl::Status s = reader_->Feed(buffer_.data(), n); !s.ok()) return Close(std::move(s));
  for (;;) {
    absl::StatusOr<Reply> reply = reader_->Next();
    if (!reply.ok()) return Close(reply.status());
    if (*reply == nullptr) break;
    if (inflight_.empty()) return Close(absl::InternalError("redis sent an unasked reply"));
    Request& head = *inflight_.front();
    head.replies.push_back(std::move(*reply));
    if (head.replies.size() < head.expected) continue;
    std::unique_ptr<Request> done = std::move(inflight_.front());
    inflight_.pop_front();
    owner_.OnAnswered(*this);
    done->Answer(std::move(done->replies));
    if (gen != generation_) return;  // the callback closed the connection
  }
  StartRead();
}

void Connection::Flush() {
  if (writing_ || out_.empty()) return;
  if (state_ != State::kReady && state_ != State::kHandshake) return;
  // Everything queued since the last write goes in this one: the pipelining.
  auto batch = std::make_shared<std::string>(std::move(out_));
  out_.clear();
  writing_ = true;
  const uint64_t gen = generation_;
  asio::async_write(socket_, asio::buffer(*batch),
                    [this, gen, batch](const boost::system::error_code& ec, size_t) {
                      if (gen != generation_) return;
                      writing_ = false;
                      if (ec) return Close(absl::UnavailableError("redis write: " + ec.message()));
                      Flush();
                    });
}

}  // namespace sluice::redis
