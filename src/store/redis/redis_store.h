// The Redis store: per-key algorithm state in Redis that many Sluice processes share: one
// server, a Redis Cluster, or standalone shards (topology.h). Each Charge is decided by the
// embedded scripts (scripts/*.lua) in one call per node involved, which checks and charges that
// node's items all-or-nothing, on Redis's clock (TIME), with the same integers as src/core; across
// nodes, a rejection on one is followed by a refund on the others. The scripts run as a Redis
// Functions library (FCALL; EVALSHA on a Redis without Functions, or with `scripts: eval`), and
// the checks in flight for one node are coalesced into one call that decides them in order. See
// docs/redis-store.md.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "base/mutex.h"
#include "store/redis/client.h"
#include "store/redis/sharded.h"
#include "store/redis/topology.h"
#include "store/store.h"

namespace sluice {

struct RedisStoreOptions {
  std::string url = "redis://127.0.0.1:6379/0";  // redis://[:password@]host:port[/db]
  // Set for `redis_cluster`: seed nodes (host:port, or redis:// URLs whose password applies to
  // every node). `url` is then unused.
  std::vector<std::string> cluster_nodes = {};
  // Set for `redis_sharded`: the shards. `url` is then unused.
  std::vector<redis::ShardSpec> shards = {};
  // Per check (CONTRACT §2 `store.timeout`): its charge is answered within `timeout` of the
  // check's start, redirections and a script reload (after SCRIPT FLUSH) included, or fails
  // with DEADLINE_EXCEEDED; the refunds a cross-node rejection needs are answered within twice
  // `timeout` of the start (CONTRACT §7).
  std::chrono::milliseconds timeout{50};
  int pool = 4;                        // persistent connections
  std::string key_prefix = "sluice:";  // every key the store writes starts with it
  // Connection attempt (connect + AUTH/SELECT/SCRIPT LOAD) and reconnection backoff cap: a
  // Redis that comes back is used again within about backoff_max.
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds backoff_max{1000};
  // Keys remembered as over their limit (see RedisStore: the over-limit cache); 0 disables it.
  size_t over_limit_cache_keys = 65536;
  // Runs (on the calling thread) for each request the over-limit cache answers: for metrics.
  std::function<void()> on_cached_rejection = nullptr;
  // CONTRACT §2 `store.scripts`: Redis Functions (FUNCTION LOAD once, FCALL), falling back to
  // EVALSHA by itself on a Redis without them; or EVALSHA always.
  bool functions = true;
  // CONTRACT §2 `store.coalesce`: the charges in flight for one group (topology.h) go to Redis as
  // one script call that decides them in order, each exactly as if sent alone. A group has at
  // most `pool` calls in flight; what arrives meanwhile waits for one of them to be answered and
  // goes in the next, so a lone check is sent at once and a busy node gets fewer, larger calls.
  bool coalesce = true;
  // Runs (on a client thread) for each script call sent to Redis: for metrics.
  std::function<void()> on_script_call = nullptr;
};

// A lease (lease.lua): a slice of a counter's quota taken from the store, what was used on
// credit charged, what is left of an earlier slice given back.
struct LeaseRequest {
  std::string_view key = {};  // the counter key, as a ChargeItem names it
  const Limit* limit = nullptr;
  int64_t want = 0;       // the slice wanted
  int64_t need = 0;       // the least grant worth having (0: anything)
  int64_t debt = 0;       // credit used since the last lease, charged into debt
  int64_t give_back = 0;  // tokens of an earlier slice given back...
  Micros given_at = 0;    // ...taken at this store time
  int64_t credit_want = 0;
  int64_t overshoot = 0;  // the most credit the store hands out per window, all servers together
  int64_t batch = 0;      // nothing left: retry_after is for this many (see lease.lua)
};
struct LeaseReply {
  Micros now = 0;  // the store's time of the lease
  int64_t granted = 0;
  int64_t credit = 0;
  bool cost_exceeds_limit = false;
  int64_t remaining = 0;   // left in the store after the grant
  Micros reset_after = 0;  // as a Decision's
  Micros retry_after = 0;  // when nothing was granted: when `need` would be
  Micros valid_for = 0;    // how long from the lease the slice may be used
};

// Thread-safe. `done` runs on a client thread (or on the calling thread for a request
// the store refuses, or answers from its over-limit cache, before sending it).
//
// The over-limit cache: once Redis rejects a key with a retry_after, this process rejects the
// same request on that key by itself until then, without a round trip, so an attacker hammering
// one key costs Redis almost nothing (envoyproxy/ratelimit does the same with freecache). It
// never turns an allow into a reject: an entry applies only to the same limit (values compared,
// so a reload that raises it bypasses the entry) and to a cost at least the one rejected, and
// only until retry_after — the exact moment Redis would admit that request again, whatever other
// servers do meanwhile, since nothing but time frees capacity. Requests with one item only (one
// applicable rule or descriptor): for several, Charge owes the caller the state of the items
// that would have admitted, which only Redis knows.
class RedisStore final : public Store {
 public:
  // Fails only on a malformed URL or shard list; never waits for Redis (it may be down at
  // start: checks then fail until it is up, and the limiter's failure policy answers).
  static absl::StatusOr<std::unique_ptr<RedisStore>> Create(RedisStoreOptions options);

  void Charge(std::span<const ChargeItem> items, std::span<Decision> decisions, Done done) override;
  // One DEL of every Redis key the counter may hold (StateKey, LogKey and leased counting's
  // credit pool, whatever `limit`'s algorithm: a state left by another algorithm is the key's
  // too), sent to the node that holds
  // them (they share a hash tag), answered within `timeout`; and drops the key from the
  // over-limit cache, so that the next request reaches Redis. Failures as Charge reports them.
  void Reset(std::string_view key, const Limit& limit, Done done) override;
  void Release(std::string_view key, std::string_view lease, Done done) override;
  void ForgetCached(std::string_view key) override { ForgetReset(key); }
  // "redis", "redis_cluster" or "redis_sharded".
  std::string_view backend() const override { return topology_->backend(); }
  redis::Topology& topology() { return *topology_; }

  // Charge, reporting the time (microseconds since the epoch) the script decided at. With `now`
  // set, the script uses it instead of Redis TIME and gives keys no expiry: for tests that
  // replay a sequence through the core at the same times.
  using TimedDone = absl::AnyInvocable<void(absl::StatusOr<Micros>) &&>;
  void ChargeAt(std::span<const ChargeItem> items, std::span<Decision> decisions,
                std::optional<Micros> now, TimedDone done);

  // Whether the scripts compute `limit` exactly: bucket algorithms need their capacity in units
  // (burst * window / gcd(limit, window)) to be at most 2^51, because Lua numbers are doubles.
  // Round windows are far inside it; an error names the limit otherwise.
  static absl::Status Supports(const Limit& limit);

  // Takes a lease (see LeaseRequest). One script call, answered within `timeout`; `done` runs on
  // a client thread (or on the calling thread when no node can be asked). Thread-safe.
  using LeaseDone = absl::AnyInvocable<void(absl::StatusOr<LeaseReply>) &&>;
  void Lease(const LeaseRequest& request, LeaseDone done);

  // Requests answered from the over-limit cache. Relaxed: for metrics and tests.
  uint64_t cached_rejections() const { return cached_rejections_.load(std::memory_order_relaxed); }

  // The Redis keys of a counter: its state, and (sliding_window_log) its sorted set.
  std::string StateKey(std::string_view key) const;
  std::string LogKey(std::string_view key) const;

 private:
  struct Call;
  struct Part;
  struct Batch;
  RedisStore(RedisStoreOptions options, std::unique_ptr<redis::Topology> topology);

  // Encodes `part`'s items as one request of charge.lua's batch: a charge, or (refund_at set) a
  // refund of what they charged.
  void Encode(const Call& call, Part& part, std::optional<Micros> refund_at) const;
  // Sends a part: at once, or into the next call of its group's lane (coalescing).
  void Send(std::shared_ptr<Call> call, size_t part);
  void SendBatch(std::shared_ptr<Batch> batch);
  void BatchDone(uint64_t group);  // a lane's call answered: sends what waited, if anything
  // Runs a script call built by `build(functions)` on `group`'s node: loads the scripts and
  // calls again after NOSCRIPT (a SCRIPT FLUSH, FUNCTION FLUSH or restarted Redis), and falls back
  // to EVALSHA for good on a Redis without Functions. `done` gets the call's reply.
  using ScriptDone = absl::AnyInvocable<void(absl::StatusOr<redis::Reply>) &&>;
  void RunScript(uint64_t group, std::function<std::string(bool functions)> build,
                 redis::Deadline deadline, ScriptDone done, bool reload = false);
  // A part's share of a batch's reply (its items' decisions from `offset`), or why it has none.
  void PartDone(std::shared_ptr<Call> call, size_t part, absl::Status status,
                const redisReply* reply, size_t offset);
  void AllDone(std::shared_ptr<Call> call);        // every part answered: done, or refunds first
  void Complete(Call& call, absl::Status status);  // reports the decisions and runs done

  struct OverLimit {
    std::chrono::steady_clock::time_point until;  // when Redis would admit `cost` again
    int64_t cost;                                 // the cost Redis rejected
    int64_t limit, burst, window;                 // the limit it was rejected under
    Algorithm algorithm;
    Decision decision;  // as Redis answered, at `at`
    std::chrono::steady_clock::time_point at;
  };
  // Answers `items` from the cache if one enforced item is known to be over its limit.
  bool AnswerFromCache(std::span<const ChargeItem> items, std::span<Decision> decisions,
                       std::chrono::steady_clock::time_point now);
  void RememberRejections(const Call& call);
  void Forget(const Call& call, const Part& part);  // a refunded part's keys
  // A reset key: drops its entry, and keeps charges in flight from caching a rejection that
  // predates the reset (see reset_epoch_).
  void ForgetReset(std::string_view key);

  const RedisStoreOptions options_;
  Mutex cache_mu_;
  absl::flat_hash_map<std::string, OverLimit> over_limit_ ABSL_GUARDED_BY(cache_mu_);
  std::atomic<uint64_t> cached_rejections_{0};
  std::atomic<bool> functions_;  // false once a Redis said it has no Functions
  struct Lane {
    int in_flight = 0;  // calls sent and not yet answered
    std::vector<std::pair<std::shared_ptr<Call>, size_t>> waiting;
  };
  Mutex lanes_mu_;
  absl::flat_hash_map<uint64_t, Lane> lanes_ ABSL_GUARDED_BY(lanes_mu_);
  // Bumped (under cache_mu_) as a reset starts and once Redis has answered it. A charge notes it
  // as it starts and caches its rejections only if it has not moved: a charge in flight across
  // a reset may have been decided by Redis before the DEL, and caching its rejection would
  // reject the reset key until retry_after. Rare (resets are admin calls); costs the cache
  // nothing else.
  std::atomic<uint64_t> reset_epoch_{0};
  // Last: destroyed first, it fails what is in flight, whose callbacks use the members above.
  std::unique_ptr<redis::Topology> topology_;
};

}  // namespace sluice
