// Leased counting (CONTRACT §11): a Store in front of the Redis store that decides leased items
// from memory. For each leased counter, this server holds slices of the counter's quota taken
// from Redis (lease.lua charges a slice to the counter's state like one request of that cost),
// takes each check's cost from them, takes the next slice before they run out, and gives back
// what it did not use when the counter goes quiet. Redis sees a few calls per slice instead of one
// per check. Exact items go to Redis as before, and so do, check by check, the items of leased
// rules that a slice cannot decide: reads (cost 0), items charged when over (their debt must be in
// Redis for the next read), quota items, and the first checks of a counter this server has not
// seen busy (most counters see a check or two: a slice would cost them a lease and a give-back).
//
// What it promises, derived in docs/algorithms.md ("Leased counting"):
// - Slices never admit more than the algorithm, within max_overshoot. A slice is granted only
//   from quota the state has. Windowed slices are used only in the window they were taken in;
//   beyond the limit a server goes only on credit, taken (while its next slice is on its way)
//   from a per-window pool of `max_overshoot` tokens per counter in Redis, all servers together,
//   and paid back as debt. A bucket slice is used only for max_overshoot / rate after its
//   charge, which bounds what its early charge lets through. `max_overshoot: 0` is never over.
// - A check never waits on Redis while the counter is busy (the next slice is taken ahead of
//   need), except one that finds its slice and credit spent while the next slice is on its way.
//   A counter is never admitted as if it were fresh.
// - Nothing is refused while Redis has quota: a check that finds no slice waits for one (up to
//   the store's timeout, then fails as a store timeout), and refuses alone only until the moment
//   Redis said the quota would be back.
// - Redis unreachable: slices in hand keep deciding; then checks fail with the store's error and
//   the limiter's on_failure answers.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>

#include "base/mutex.h"
#include "core/consistency.h"
#include "store/redis/redis_store.h"
#include "store/store.h"

namespace sluice {

enum class LeaseEvent : uint8_t {
  kTaken,     // a slice was granted
  kReturned,  // what was left of a slice was given back
  kExpired,   // a slice's window ended with tokens left in it
};
std::string_view LeaseEventName(LeaseEvent event);

struct LeasedStoreOptions {
  // The rules' defaults (CONTRACT §2 `store.consistency`, `store.max_overshoot`).
  Consistency consistency = Consistency::kExact;
  Overshoot max_overshoot = Overshoot::PartsPerMillion(10'000);
  // A slice covers about this much of the counter's recent rate on this server; the next is
  // taken when half of it is left.
  std::chrono::milliseconds horizon{250};
  // A counter unused this long gives back its slice.
  std::chrono::milliseconds quiet{500};
  // The store's timeout: a check that found no slice for this long fails (DEADLINE_EXCEEDED).
  std::chrono::milliseconds timeout{50};
  // Metrics, called on any thread, never under a lock of the store. `rule_id` is the item's ("":
  // an Envoy descriptor).
  std::function<void(std::string_view rule_id, LeaseEvent event)> on_lease = nullptr;
  std::function<void(std::string_view rule_id, int64_t bound)> on_bound = nullptr;
};

class LeasedStore final : public Store {
 public:
  LeasedStore(std::unique_ptr<RedisStore> backend, LeasedStoreOptions options);
  // Gives back the slices held (GiveBackAll, at most 200 ms): what Redis does not take back in
  // time ends with its window or drains out of its bucket.
  ~LeasedStore() override;

  void Charge(std::span<const ChargeItem> items, std::span<Decision> decisions, Done done) override;
  // Drops this server's slice of `key` (not given back: the store forgets the counter anyway),
  // then resets it in Redis.
  void Reset(std::string_view key, const Limit& limit, Done done) override;
  void ForgetCached(std::string_view key) override;
  // Concurrency is never leased: straight to Redis.
  void Release(std::string_view key, std::string_view lease, Done done) override {
    backend_->Release(key, lease, std::move(done));
  }
  std::string_view backend() const override { return backend_->backend(); }
  RedisStore& redis() { return *backend_; }

  // Whether `item` is decided from slices here.
  bool Leased(const ChargeItem& item) const;
  // Whether `item`'s rule is leased (its reads, cost 0, still go to Redis).
  bool LeasedRule(const ChargeItem& item) const;

  // Gives back every slice held, as if every counter had gone quiet, and waits (at most
  // `timeout`) for Redis to take them. For tests and an orderly stop.
  void GiveBackAll(std::chrono::milliseconds timeout);

 public:
  struct Entry;
  struct Shard;
  struct Pending;
  struct LeaseCall;

 private:
  Shard& ShardOf(std::string_view key);
  // Decides a lone item from its counter's slice when that needs nothing else; false otherwise.
  bool DecideFromSlice(const ChargeItem& item, Decision& d);
  // Whether the item's counter is cold here (one of its first checks, counted on a marker entry):
  // then it goes to Redis exactly.
  bool Cold(const ChargeItem& item);
  // Decides the leased items of `p`; when one must wait for a slice, returns and runs again when
  // it arrives.
  void Attempt(std::shared_ptr<Pending> p);
  void ChargeExact(std::shared_ptr<Pending> p);
  void GiveBackTaken(Pending& p);
  void Finish(Pending& p, absl::Status status);
  void Send(std::shared_ptr<LeaseCall> call);
  void Answered(std::shared_ptr<LeaseCall> call, absl::StatusOr<LeaseReply> reply);
  void Sweep();
  // A call giving back all `entry` holds and paying its debt (a quiet counter, or a stop). Under
  // the entry's shard lock; marks it in flight.
  std::shared_ptr<LeaseCall> GiveBackCall(const std::shared_ptr<Entry>& entry,
                                          std::chrono::steady_clock::time_point now);
  void ForgetLocal(std::string_view key);  // drops this server's slice of `key`
  // Charges items none of which is decided from slices. Reads of leased counters (cost 0) go to
  // Redis, where this server's slices are charged: what they still hold can be had, and is added
  // back to their `remaining` (AddHeld).
  void ChargeThrough(std::span<const ChargeItem> items, std::span<Decision> decisions, Done done);
  void AddHeld(std::span<const ChargeItem> items, std::span<Decision> decisions);

  const LeasedStoreOptions options_;
  static constexpr size_t kShards = 16;
  std::unique_ptr<Shard[]> shards_;
  std::atomic<bool> stopping_{false};
  Mutex stop_mu_;  // wakes the sweeper to stop
  CondVar stop_cv_;
  std::atomic<int64_t> calls_in_flight_{0};
  std::thread sweeper_;
  // Last: destroyed first, it fails the leases in flight, whose callbacks use the members above.
  std::unique_ptr<RedisStore> backend_;
};

}  // namespace sluice
