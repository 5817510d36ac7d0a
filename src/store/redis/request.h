// A request to Redis as the client and its connections carry it: RESP commands, the deadline it
// must be answered by, and the callback that answers it. No I/O here (no Asio), so that the
// client's header stays light for the store's users.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "store/redis/resp.h"

namespace sluice::redis {

using SteadyClock = std::chrono::steady_clock;
// An absolute time on the steady clock by which a request must be answered.
using Deadline = SteadyClock::time_point;

// The replies to a request's commands in order, or why there are none.
using Callback = absl::AnyInvocable<void(absl::StatusOr<std::vector<Reply>>) &&>;

// One request: RESP commands and how their replies are to be answered.
struct Request {
  std::string payload;  // moved into the connection's send buffer when queued
  size_t expected = 1;  // replies
  std::vector<Reply> replies;
  Callback done;  // empty once answered (a timed-out request still awaits its replies)
  Deadline deadline;
  SteadyClock::time_point sent;  // when queued on a connection
  // Requests the caller made and has not had answered, counted by the client; null for the
  // client's own (handshake, probes).
  std::atomic<int64_t>* outstanding = nullptr;

  // Takes the callback to run it (the request counts as answered from here). Null if taken.
  Callback Take() {
    if (!done) return nullptr;
    if (outstanding != nullptr) outstanding->fetch_sub(1, std::memory_order_relaxed);
    return std::exchange(done, nullptr);
  }
  void Answer(absl::StatusOr<std::vector<Reply>> result) {
    if (Callback cb = Take()) std::move(cb)(std::move(result));
  }
};

}  // namespace sluice::redis
