// The Redis store: per-key algorithm state in a Redis server that many Sluice processes share.
// Each Charge is one EVALSHA of the embedded script (scripts/*.lua), which checks and charges
// every item all-or-nothing, on Redis's clock (TIME), with the same integers as src/core.
// See docs/redis-store.md.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "store/redis/redis_client.h"
#include "store/store.h"

namespace sluice {

struct RedisStoreOptions {
  std::string url = "redis://127.0.0.1:6379/0";  // redis://[:password@]host:port[/db]
  // Per store round trip (CONTRACT §2 `store.timeout`). A check that needs the script reloaded
  // (after SCRIPT FLUSH) may take two.
  std::chrono::milliseconds timeout{50};
  int pool = 4;                        // persistent connections
  std::string key_prefix = "sluice:";  // every key the store writes starts with it
  // Connection attempt (connect + AUTH/SELECT/SCRIPT LOAD) and reconnection backoff cap: a
  // Redis that comes back is used again within about backoff_max.
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds backoff_max{1000};
};

// Thread-safe. `done` runs on the store's client thread (or on the calling thread for a request
// the store refuses before sending it).
class RedisStore final : public Store {
 public:
  // Fails only on a malformed URL; never waits for Redis (it may be down at start: checks then
  // fail until it is up, and the limiter's failure policy answers).
  static absl::StatusOr<std::unique_ptr<RedisStore>> Create(RedisStoreOptions options);

  void Charge(std::span<const ChargeItem> items, std::span<Decision> decisions, Done done) override;
  std::string_view backend() const override { return "redis"; }

  // Charge, reporting the time (microseconds since the epoch) the script decided at. With `now`
  // set, the script uses it instead of Redis TIME and gives keys no expiry: for tests that
  // replay a sequence through the core at the same times.
  using TimedDone = absl::AnyInvocable<void(absl::StatusOr<Micros>) &&>;
  void ChargeAt(std::span<const ChargeItem> items, std::span<Decision> decisions,
                std::optional<Micros> now, TimedDone done);

  // Whether the scripts compute `limit` exactly: bucket algorithms need their capacity in units
  // (burst * window / gcd(limit, window)) to be at most 2^52, because Lua numbers are doubles.
  // Round windows are far inside it; an error names the limit otherwise.
  static absl::Status Supports(const Limit& limit);

  // The Redis keys of a counter: its state, and (sliding_window_log) its sorted set.
  std::string StateKey(std::string_view key) const;
  std::string LogKey(std::string_view key) const;

 private:
  struct Call;
  explicit RedisStore(RedisStoreOptions options, redis::ClientOptions client);
  void Send(std::unique_ptr<Call> call);
  void Finished(std::unique_ptr<Call> call, absl::StatusOr<std::vector<redis::Reply>> replies);

  const RedisStoreOptions options_;
  redis::Client client_;
};

}  // namespace sluice
