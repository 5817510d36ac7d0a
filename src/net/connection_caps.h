// Connection caps for a listener: at most `max_connections` open at once, and at most
// `max_per_address` from one client address, so that one client can never take every place
// (its 10 000 idle connections would otherwise lock every other client out, /health included).
// Shared by the HTTP and gRPC acceptors; one ConnectionCaps per listener.
#pragma once

#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "base/mutex.h"

namespace sluice::net {

// The client address as the caps count it: the IP address as text, IPv4-mapped IPv6
// ("::ffff:10.0.0.1") as plain IPv4; "" for anything else (Unix sockets: one shared bucket).
std::string AddressKey(const sockaddr* address);

class ConnectionCaps : public std::enable_shared_from_this<ConnectionCaps> {
 public:
  struct Options {
    size_t max_connections = 10'000;
    size_t max_per_address = 1'000;  // 0: no cap per address
    // Places beyond max_connections for health checks: a connection taken there is "reserved"
    // and its listener answers only health checks on it (HTTP: GET/HEAD /health and
    // /healthcheck), so that a full listener still tells its orchestrator how it is. The
    // per-address cap applies to them too.
    size_t health_reserve = 0;
  };

  // One place taken; given back when destroyed (from any thread). Move-only.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&&) = default;
    Slot& operator=(Slot&& other) noexcept {
      Release();
      caps_ = std::move(other.caps_);
      address_ = std::move(other.address_);
      reserved_ = other.reserved_;
      return *this;
    }
    ~Slot() { Release(); }
    explicit operator bool() const { return caps_ != nullptr; }
    // Taken from the health reserve (see Options::health_reserve).
    bool reserved() const { return reserved_; }

   private:
    friend class ConnectionCaps;
    Slot(std::shared_ptr<ConnectionCaps> caps, std::string address, bool reserved)
        : caps_(std::move(caps)), address_(std::move(address)), reserved_(reserved) {}
    void Release();

    std::shared_ptr<ConnectionCaps> caps_;
    std::string address_;
    bool reserved_ = false;
  };

  enum class Refusal { kNone, kTotal, kPerAddress };
  // What TryAcquire decided. `log`: this refusal should be logged (at most one a second per
  // listener, so that a flood of refused connections cannot flood the log); `suppressed`: the
  // refusals not logged since the last one that was.
  struct Verdict {
    Slot slot;  // empty when refused
    Refusal refusal = Refusal::kNone;
    bool log = false;
    uint64_t suppressed = 0;
  };

  static std::shared_ptr<ConnectionCaps> Create(Options options) {
    return std::shared_ptr<ConnectionCaps>(new ConnectionCaps(options));
  }

  // Takes a place for a new connection from `address` (an AddressKey). Thread-safe.
  Verdict TryAcquire(const std::string& address);

  size_t connections() const;
  uint64_t refused() const;  // since the start
  const Options& options() const { return options_; }

 private:
  explicit ConnectionCaps(Options options) : options_(options) {}
  void Release(const std::string& address, bool reserved);

  const Options options_;
  mutable Mutex mu_;
  size_t total_ ABSL_GUARDED_BY(mu_) = 0;     // places taken, reserved ones excluded
  size_t reserved_ ABSL_GUARDED_BY(mu_) = 0;  // reserved places taken
  std::unordered_map<std::string, size_t> per_address_ ABSL_GUARDED_BY(mu_);
  uint64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t unlogged_ ABSL_GUARDED_BY(mu_) = 0;
  std::chrono::steady_clock::time_point last_log_ ABSL_GUARDED_BY(mu_);
};

// The pause between accept attempts while accept fails for want of resources (EMFILE, ENFILE,
// ENOBUFS, ENOMEM): retrying at once would fail again at once, for ever, on a full core. 10 ms,
// doubling to 1 s while failures last. Used by one acceptor thread; not thread-safe.
class AcceptBackoff {
 public:
  // After a failure: how long to wait. first_failure: this failure starts a spell (log it).
  std::chrono::milliseconds Failed(bool* first_failure) {
    *first_failure = delay_.count() == 0;
    delay_ = *first_failure ? std::chrono::milliseconds(10)
                            : std::min(delay_ * 2, std::chrono::milliseconds(1000));
    return delay_;
  }
  // After an accept that worked: whether it ended a spell of failures (log that).
  bool Succeeded() { return std::exchange(delay_, std::chrono::milliseconds(0)).count() > 0; }
  bool failing() const { return delay_.count() > 0; }

 private:
  std::chrono::milliseconds delay_{0};
};

}  // namespace sluice::net
