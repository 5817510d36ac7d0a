#include "store/leased/leased_store.h"

#include <algorithm>
#include <deque>
#include <limits>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/hash/hash.h"
#include "base/mutex.h"

namespace sluice {

namespace {

using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;
constexpr TimePoint kNever = TimePoint::max();
// A counter's first checks on a server go to Redis exactly; the next one leases.
constexpr int kColdChecks = 3;
constexpr uint64_t kColdSeed = 0x5eed'1ea5'ed00'0001;
// After a failed lease, checks that need one fail at once for this long (the circuit breaker of
// the Redis client answers the next attempt quickly anyway; this spares it a stampede).
constexpr std::chrono::milliseconds kFailureHold{50};

Micros MicrosUntil(TimePoint t, TimePoint now) {
  if (t <= now) return 0;
  return std::chrono::duration_cast<std::chrono::microseconds>(t - now).count();
}

bool SameLimit(const Limit& a, const Limit& b) {
  return a.algorithm() == b.algorithm() && a.limit() == b.limit() && a.window() == b.window() &&
         a.burst() == b.burst();
}

TimePoint After(TimePoint base, Micros us) {
  if (us < 0) return kNever;
  return base + std::chrono::microseconds(us);
}

}  // namespace

std::string_view LeaseEventName(LeaseEvent event) {
  switch (event) {
    case LeaseEvent::kTaken:
      return "taken";
    case LeaseEvent::kReturned:
      return "returned";
    case LeaseEvent::kExpired:
      return "expired";
  }
  return "unknown";
}

// This server's lease on one counter. Guarded by its shard's mutex.
struct LeasedStore::Entry {
  explicit Entry(const Limit& l) : limit(l) {}
  std::string key;
  std::string rule_id;
  Limit limit;        // the limit the slices were taken under
  int64_t overshoot;  // the credit pool of the rule, in tokens
  // Slices not used up, oldest first, each usable until its end (a window's end; a bucket
  // slice's life); `held` is their sum.
  struct Slice {
    int64_t tokens;
    TimePoint until;
  };
  std::deque<Slice> slices;
  int64_t held = 0;
  int64_t credit = 0;          // credit not used yet
  int64_t credit_period = -1;  // the window (Redis time / window) the credit was taken in
  int64_t debt = 0;            // credit used, not yet charged in Redis
  Micros taken_at = 0;         // Redis time of the last slice (what a give-back names)
  TimePoint credit_until = TimePoint::min();
  TimePoint exhausted_until = TimePoint::min();  // Redis said: nothing for `need` until then
  TimePoint failed_until = TimePoint::min();
  absl::Status failure;
  TimePoint reset_at;           // Redis's reset_after at the last lease, as a local time
  int64_t store_remaining = 0;  // Redis's remaining at the last lease
  bool leased_once = false;
  bool in_flight = false;
  bool dropped = false;  // reset: a lease in flight must not bring its slice back
  std::vector<std::shared_ptr<Pending>> waiters;
  // Reads of the counter waiting for the lease in flight, so that Redis's answer and `held`
  // agree on where its slice is (see ChargeThrough).
  std::vector<absl::AnyInvocable<void() &&>> after_lease;
  // Demand: tokens asked for (admitted or not) since `rate_since`, and the last estimate
  // (tokens per second). Slices are sized by it.
  int64_t used = 0;
  TimePoint rate_since;
  double rate = 0;
  int64_t last_want = 0;
  TimePoint last_use;

  // Drops the slices that ended; returns the tokens they still held.
  int64_t Expire(TimePoint now) {
    int64_t dropped = 0;
    std::erase_if(slices, [&](const Slice& s) {
      if (now < s.until) return false;
      dropped += s.tokens;
      return true;
    });
    held -= dropped;
    return dropped;
  }
  void Add(int64_t tokens, TimePoint until) {
    if (tokens <= 0) return;
    if (!slices.empty() && slices.back().until == until) {
      slices.back().tokens += tokens;
    } else {
      slices.push_back({tokens, until});
    }
    held += tokens;
  }
  // Takes `cost` <= held from the oldest slices; returns the end of the oldest one used.
  TimePoint Take(int64_t cost) {
    TimePoint until = kNever;
    held -= cost;
    while (cost > 0) {
      Slice& s = slices.front();
      until = std::min(until, s.until);
      const int64_t n = std::min(cost, s.tokens);
      s.tokens -= n;
      cost -= n;
      if (s.tokens == 0) slices.pop_front();
    }
    return until;
  }
  // Tokens taken back (a rejected request's, a give-back that failed), usable until `until`.
  void Restore(int64_t tokens, TimePoint until) {
    if (tokens <= 0) return;
    slices.push_front({tokens, until});
    held += tokens;
  }
  std::deque<Slice> TakeAll() {
    held = 0;
    return std::exchange(slices, {});
  }
};

struct ColdMarker {
  int checks;
  std::chrono::steady_clock::time_point last;
};

struct LeasedStore::Shard {
  Mutex mu;
  absl::flat_hash_map<std::string, std::shared_ptr<Entry>> entries ABSL_GUARDED_BY(mu);
  // Counters seen but not leased yet (LeasedStore::Cold), by a hash of their key.
  absl::flat_hash_map<uint64_t, ColdMarker> cold ABSL_GUARDED_BY(mu);
};

// One Charge with leased items.
struct LeasedStore::Pending {
  std::span<const ChargeItem> items;
  std::span<Decision> decisions;
  Done done;
  std::vector<size_t> leased;
  std::vector<size_t> exact;
  // Per leased item (same order as `leased`): tokens taken from the slice and from credit.
  std::vector<int64_t> from_slice;
  std::vector<int64_t> from_credit;
  std::vector<TimePoint> slice_until;  // the end of the oldest slice each took from
  std::vector<std::shared_ptr<Entry>> entries;
  int waits = 0;
  TimePoint deadline;     // waiting for slices fails after the store's timeout
  bool rejected = false;  // an enforced leased item rejected the request
  // The exact part, charged through the Redis store.
  std::vector<ChargeItem> exact_items;
  std::vector<Decision> exact_decisions;
};

// A lease call in flight.
struct LeasedStore::LeaseCall {
  explicit LeaseCall(const Entry& e) : entry_limit(e.limit) {}
  std::shared_ptr<Entry> entry;
  LeaseRequest request;
  std::string key;
  Limit entry_limit;
  TimePoint sent;
  bool returning = false;               // gives back only (the counter went quiet)
  std::deque<Entry::Slice> given_back;  // restored if the give-back fails
};

LeasedStore::LeasedStore(std::unique_ptr<RedisStore> backend, LeasedStoreOptions options)
    : options_(std::move(options)), shards_(new Shard[kShards]), backend_(std::move(backend)) {
  sweeper_ = std::thread([this] {
    const auto tick =
        std::max<std::chrono::milliseconds>(std::chrono::milliseconds(10), options_.quiet / 4);
    while (!stopping_.load(std::memory_order_acquire)) {
      {
        MutexLock lock(stop_mu_);
        stop_cv_.WaitFor(stop_mu_, tick,
                         [this] { return stopping_.load(std::memory_order_acquire); });
      }
      if (stopping_.load(std::memory_order_acquire)) break;
      Sweep();
    }
  });
}

LeasedStore::~LeasedStore() {
  {
    MutexLock lock(stop_mu_);
    stopping_.store(true, std::memory_order_release);
  }
  stop_cv_.NotifyAll();
  if (sweeper_.joinable()) sweeper_.join();
  // An orderly stop gives its slices back, so that the other servers can use them; briefly: a
  // store that does not answer keeps them (a window's end or a bucket's drain takes them back).
  GiveBackAll(std::chrono::milliseconds(200));
}

LeasedStore::Shard& LeasedStore::ShardOf(std::string_view key) {
  return shards_[absl::HashOf(key) % kShards];
}

namespace {

constexpr bool Windowed(Algorithm a) {
  return a == Algorithm::kFixedWindow || a == Algorithm::kSlidingWindowCounter;
}

// A bucket slice may be used for overshoot / rate after it was charged (lease.lua): the
// overshoot's worth of the limit's drain.
Micros BucketSliceLife(const Limit& l, int64_t overshoot) {
  return static_cast<Micros>((static_cast<__int128>(overshoot) * l.window()) / l.limit());
}

// Below this a bucket slice would end before it could be used: the rule is counted exactly.
constexpr Micros kMinSliceLife = 2000;

}  // namespace

bool LeasedStore::LeasedRule(const ChargeItem& item) const {
  const Consistency c =
      item.consistency == Consistency::kDefault ? options_.consistency : item.consistency;
  return c == Consistency::kLeased && Leasable(item.limit->algorithm());
}

void LeasedStore::ChargeThrough(std::span<const ChargeItem> items, std::span<Decision> decisions,
                                Done done) {
  const bool reads = std::any_of(items.begin(), items.end(), [this](const ChargeItem& item) {
    return item.cost == 0 && LeasedRule(item);
  });
  if (!reads) return backend_->Charge(items, decisions, std::move(done));
  // A lease in flight is charged in Redis before it is in `held`: the read waits for it.
  for (const ChargeItem& item : items) {
    if (item.cost != 0 || !LeasedRule(item)) continue;
    Shard& shard = ShardOf(item.key);
    MutexLock lock(shard.mu);
    auto it = shard.entries.find(absl::string_view(item.key.data(), item.key.size()));
    if (it == shard.entries.end() || !it->second->in_flight) continue;
    it->second->after_lease.push_back([this, items, decisions, done = std::move(done)]() mutable {
      // The store being destroyed fails its leases in flight: nothing more is sent.
      if (stopping_.load(std::memory_order_acquire)) {
        return std::move(done)(absl::UnavailableError("store stopping"));
      }
      ChargeThrough(items, decisions, std::move(done));
    });
    return;
  }
  backend_->Charge(items, decisions,
                   [this, items, decisions, done = std::move(done)](absl::Status status) mutable {
                     if (status.ok()) AddHeld(items, decisions);
                     std::move(done)(std::move(status));
                   });
}

void LeasedStore::AddHeld(std::span<const ChargeItem> items, std::span<Decision> decisions) {
  const TimePoint now = SteadyClock::now();
  for (size_t i = 0; i < items.size(); ++i) {
    const ChargeItem& item = items[i];
    if (item.cost != 0 || !LeasedRule(item)) continue;
    Shard& shard = ShardOf(item.key);
    MutexLock lock(shard.mu);
    auto it = shard.entries.find(absl::string_view(item.key.data(), item.key.size()));
    if (it == shard.entries.end() || !SameLimit(it->second->limit, *item.limit)) continue;
    it->second->Expire(now);
    decisions[i].remaining += it->second->held;
  }
}

bool LeasedStore::Leased(const ChargeItem& item) const {
  const Limit& l = *item.limit;
  // Exact: quota items (decided together across items), reads (cost 0: what Redis holds, debts
  // included) and items charged when over (their debt must be in Redis before the next read).
  if (item.role == ItemRole::kQuota || item.cost == 0 || item.when != ChargeWhen::kRequestAllowed ||
      !Leasable(l.algorithm())) {
    return false;
  }
  const Consistency c =
      item.consistency == Consistency::kDefault ? options_.consistency : item.consistency;
  if (c != Consistency::kLeased) return false;
  if (Windowed(l.algorithm())) return true;
  const Overshoot& o = item.max_overshoot != nullptr ? *item.max_overshoot : options_.max_overshoot;
  return BucketSliceLife(l, o.For(l.limit())) >= kMinSliceLife;
}

void LeasedStore::Charge(std::span<const ChargeItem> items, std::span<Decision> decisions,
                         Done done) {
  if (items.size() == 1) {
    if (!Leased(items[0])) return ChargeThrough(items, decisions, std::move(done));
    if (DecideFromSlice(items[0], decisions[0])) return std::move(done)(absl::OkStatus());
    // A counter this server has not seen lately goes to the store exactly: most counters see a
    // check or two (a slice would cost a lease and a give-back for them); the next check on it
    // takes a slice.
    if (Cold(items[0])) return backend_->Charge(items, decisions, std::move(done));
  } else if (std::none_of(items.begin(), items.end(),
                          [this](const ChargeItem& item) { return Leased(item); })) {
    return ChargeThrough(items, decisions, std::move(done));
  }
  auto p = std::make_shared<Pending>();
  p->deadline = SteadyClock::now() + options_.timeout;
  p->items = items;
  p->decisions = decisions;
  p->done = std::move(done);
  for (size_t i = 0; i < items.size(); ++i) (Leased(items[i]) ? p->leased : p->exact).push_back(i);
  p->from_slice.assign(p->leased.size(), 0);
  p->from_credit.assign(p->leased.size(), 0);
  p->slice_until.assign(p->leased.size(), kNever);
  p->entries.resize(p->leased.size());
  Attempt(std::move(p));
}

bool LeasedStore::DecideFromSlice(const ChargeItem& item, Decision& d) {
  // The common case of a busy counter, without allocating: one item, its slice covers the cost,
  // and no lease is due. Anything else takes Attempt's way.
  const Limit& l = *item.limit;
  if (item.cost > l.max_cost()) return false;
  const TimePoint now = SteadyClock::now();
  Shard& shard = ShardOf(item.key);
  MutexLock lock(shard.mu);
  auto it = shard.entries.find(absl::string_view(item.key.data(), item.key.size()));
  if (it == shard.entries.end()) return false;
  Entry& e = *it->second;
  if (!e.leased_once || e.held < item.cost || e.slices.empty() || now >= e.slices.front().until ||
      !SameLimit(e.limit, l)) {
    return false;
  }
  const int64_t overshoot =
      (item.max_overshoot != nullptr ? *item.max_overshoot : options_.max_overshoot).For(l.limit());
  const bool lease_due =
      !e.in_flight && (e.held - item.cost) * 2 < std::max<int64_t>(e.last_want, 2);
  if (overshoot != e.overshoot || lease_due) return false;
  e.Take(item.cost);
  e.used += item.cost;
  e.last_use = now;
  d = Decision{};
  d.allowed = true;
  d.limit = l.limit();
  d.remaining = e.held + e.store_remaining;
  d.reset_after = MicrosUntil(e.reset_at, now);
  return true;
}

bool LeasedStore::Cold(const ChargeItem& item) {
  const TimePoint now = SteadyClock::now();
  const absl::string_view key(item.key.data(), item.key.size());
  Shard& shard = ShardOf(item.key);
  MutexLock lock(shard.mu);
  if (shard.entries.contains(key)) return false;
  // Markers are keyed by a hash of the counter key: no allocation per counter, and a collision
  // only warms a counter up a check early or late.
  auto [it, inserted] = shard.cold.try_emplace(absl::HashOf(key, kColdSeed), ColdMarker{0, now});
  ColdMarker& m = it->second;
  // Checks seen within `quiet` of each other warm a counter up; a pause starts it over.
  m.checks = !inserted && now - m.last < options_.quiet ? m.checks + 1 : 1;
  m.last = now;
  if (m.checks <= kColdChecks) return true;
  shard.cold.erase(it);  // warm: Attempt makes its entry and leases
  return false;
}

void LeasedStore::Attempt(std::shared_ptr<Pending> p) {
  const TimePoint now = SteadyClock::now();
  std::vector<std::shared_ptr<LeaseCall>> to_send;
  std::vector<std::pair<std::string, int64_t>> bounds;
  std::vector<std::pair<std::string, LeaseEvent>> events;
  // Starts a lease for `e` (under its shard's lock): the slice its rate asks for.
  auto start_lease = [&](const std::shared_ptr<Entry>& e, int64_t need) {
    e->in_flight = true;
    const Micros elapsed = MicrosUntil(now, e->rate_since);
    if (elapsed >= 20'000) {
      const double rate = static_cast<double>(e->used) * 1e6 / static_cast<double>(elapsed);
      e->rate = e->rate == 0 ? rate : 0.5 * e->rate + 0.5 * rate;
      e->used = 0;
      e->rate_since = now;
    }
    const int64_t max_cost = e->limit.max_cost();
    double horizon_s = std::chrono::duration<double>(options_.horizon).count();
    if (!Windowed(e->limit.algorithm())) {
      // A bucket slice is usable for its life only: no bigger than what this server uses in it.
      horizon_s = std::min(horizon_s,
                           0.5e-6 * static_cast<double>(BucketSliceLife(e->limit, e->overshoot)));
    }
    int64_t want = static_cast<int64_t>(e->rate * horizon_s);
    // A counter seen for the first time starts small (most counters see few checks), and a
    // slice grows at most fourfold from one lease to the next, so a burst does not strand much.
    const int64_t initial = std::clamp<int64_t>(max_cost / 64, 1, 16);
    want = std::max(want, initial);
    if (e->last_want > 0) want = std::min(want, e->last_want * 4);
    want = std::clamp<int64_t>(std::max(want, need), 1, max_cost);
    e->last_want = want;
    auto call = std::make_shared<LeaseCall>(*e);
    call->entry = e;
    call->key = e->key;
    call->sent = now;
    // Credit only for windowed algorithms (a bucket's overshoot bounds its slices' life
    // instead), and for a counter busy enough to run out while its next slice is on the way:
    // not on its first lease.
    const int64_t credit_want =
        Windowed(e->limit.algorithm()) && e->overshoot > 0 && e->credit == 0 && e->leased_once
            ? std::max<int64_t>(1, want / 4)
            : 0;
    call->request = LeaseRequest{
        .want = want,
        .need = need,
        .debt = e->debt,
        .credit_want = std::min(credit_want, e->overshoot),
        .overshoot = e->overshoot,
        // A fixed window frees everything at once, at its end; a
        // sliding window counter frees a little at a time, and checks
        // refused while waiting for a batch would move its admissions
        // into the next window; buckets refill at their rate.
        .batch = Windowed(e->limit.algorithm()) ? need : std::max<int64_t>(need, want / 4)};
    to_send.push_back(std::move(call));
  };

  enum class Outcome { kDecided, kWait, kFail };
  Outcome outcome = Outcome::kDecided;
  std::shared_ptr<Entry> wait_on;  // kWait: the entry whose lease this check waits for
  absl::Status failure;
  size_t reached = 0;
  for (size_t j = 0; j < p->leased.size() && outcome == Outcome::kDecided; ++j, reached = j) {
    const ChargeItem& item = p->items[p->leased[j]];
    Decision& d = p->decisions[p->leased[j]];
    const Limit& l = *item.limit;
    Shard& shard = ShardOf(item.key);
    MutexLock lock(shard.mu);
    std::shared_ptr<Entry>& slot =
        shard.entries[absl::string_view(item.key.data(), item.key.size())];
    const int64_t overshoot =
        (item.max_overshoot != nullptr ? *item.max_overshoot : options_.max_overshoot)
            .For(l.limit());
    if (slot == nullptr || !SameLimit(slot->limit, l) || slot->overshoot != overshoot) {
      // New, or its rule changed: what the old entry holds was taken under another limit and is
      // dropped (its window or the bucket's drain takes it back).
      if (slot != nullptr) slot->dropped = true;
      slot = std::make_shared<Entry>(l);
      slot->key = std::string(item.key);
      slot->rule_id = std::string(item.rule_id);
      slot->overshoot = overshoot;
      slot->rate_since = now;
      slot->reset_at = now;
      bounds.emplace_back(slot->rule_id, overshoot);
    }
    const std::shared_ptr<Entry> e = slot;
    p->entries[j] = e;
    if (e->Expire(now) > 0) events.emplace_back(e->rule_id, LeaseEvent::kExpired);
    if (now >= e->credit_until) e->credit = 0;
    e->last_use = now;

    d = Decision{};
    d.limit = l.limit();
    d.reset_after = MicrosUntil(e->reset_at, now);
    const int64_t cost = item.cost;
    if (p->waits == 0) e->used += cost;
    // Items charged when over never come here (Leased): a rejection charges nothing.
    auto reject = [&](Micros retry_after, bool exceeds) {
      d.allowed = false;
      d.cost_exceeds_limit = exceeds;
      if (!exceeds) d.retry_after = std::max<Micros>(1, retry_after);
      d.remaining = std::max<int64_t>(0, e->held);
      if (item.role == ItemRole::kEnforced) p->rejected = true;
    };
    if (cost > l.max_cost()) {
      reject(0, true);
      continue;
    }
    if (e->leased_once && e->held >= cost) {
      p->slice_until[j] = e->Take(cost);
      p->from_slice[j] = cost;
    } else if (e->leased_once && e->held + e->credit >= cost && now >= e->exhausted_until &&
               (e->in_flight || now >= e->failed_until)) {
      // On credit while the next slice is on its way (started below if it is not yet).
      const int64_t from_credit = cost - e->held;
      p->from_slice[j] = e->held;
      p->from_credit[j] = from_credit;
      p->slice_until[j] = e->Take(e->held);
      e->credit -= from_credit;
      e->debt += from_credit;
    } else if (e->leased_once && now < e->exhausted_until) {
      reject(MicrosUntil(e->exhausted_until, now), false);
      continue;
    } else if (now < e->failed_until && !e->in_flight) {
      // Redis failed a moment ago and there is no slice to decide from: the failure answers.
      outcome = Outcome::kFail;
      failure = e->failure;
      break;
    } else if (now >= p->deadline) {
      // Slices kept going to other checks until the store's timeout: the store's failure
      // answers (never a refusal while Redis may still have quota).
      outcome = Outcome::kFail;
      failure = absl::DeadlineExceededError("leased counting: no slice within the store timeout");
      break;
    } else {
      // Queued on the entry only after the undo below: once queued, `p` is the lease's.
      if (!e->in_flight) start_lease(e, cost);
      wait_on = e;
      outcome = Outcome::kWait;
      break;
    }
    d.allowed = true;
    d.remaining = e->held + e->store_remaining;
    // Ahead of need: the next slice when half of this one is gone.
    if (!e->in_flight && e->held * 2 < std::max<int64_t>(e->last_want, 2) &&
        now >= e->failed_until && now >= e->exhausted_until) {
      start_lease(e, 0);
    }
  }

  if (outcome != Outcome::kDecided) {
    // Undo what this attempt took before it stopped: it runs again whole, or fails.
    for (size_t j = 0; j < reached; ++j) {
      const std::shared_ptr<Entry>& e = p->entries[j];
      MutexLock lock(ShardOf(e->key).mu);
      e->Restore(p->from_slice[j], p->slice_until[j]);
      e->credit += p->from_credit[j];
      e->debt -= p->from_credit[j];
      p->from_slice[j] = p->from_credit[j] = 0;
    }
    p->rejected = false;
  }
  bool queued = false;
  if (outcome == Outcome::kWait) {
    MutexLock lock(ShardOf(wait_on->key).mu);
    // The lease may have been answered meanwhile (one another check started): then try again.
    queued = wait_on->in_flight;
    if (queued) wait_on->waiters.push_back(p);
  }
  // From here `p` is touched only if it was not queued.
  for (auto& [rule, bound] : bounds) {
    if (options_.on_bound) options_.on_bound(rule, bound);
  }
  for (auto& [rule, event] : events) {
    if (options_.on_lease) options_.on_lease(rule, event);
  }
  for (auto& call : to_send) Send(std::move(call));
  if (outcome == Outcome::kWait) {
    if (!queued) Attempt(std::move(p));
    return;
  }
  if (outcome == Outcome::kFail) return Finish(*p, failure);
  if (p->rejected) GiveBackTaken(*p);
  ChargeExact(std::move(p));
}

void LeasedStore::GiveBackTaken(Pending& p) {
  for (size_t j = 0; j < p.leased.size(); ++j) {
    const ChargeItem& item = p.items[p.leased[j]];
    if (!item.refunded_on_rejection()) continue;
    const int64_t taken = p.from_slice[j] + p.from_credit[j];
    if (taken == 0) continue;
    const std::shared_ptr<Entry>& e = p.entries[j];
    {
      MutexLock lock(ShardOf(e->key).mu);
      e->Restore(p.from_slice[j], p.slice_until[j]);
      e->credit += p.from_credit[j];
      e->debt -= p.from_credit[j];
    }
    p.from_slice[j] = p.from_credit[j] = 0;
    p.decisions[p.leased[j]].remaining += taken;
  }
}

void LeasedStore::ChargeExact(std::shared_ptr<Pending> p) {
  if (p->exact.empty()) return Finish(*p, absl::OkStatus());
  p->exact_items.reserve(p->exact.size());
  for (size_t i : p->exact) {
    ChargeItem item = p->items[i];
    // A request the leased items rejected charges its exact items nothing but what they charge
    // whatever happens: they are read for the answer.
    if (p->rejected && item.when != ChargeWhen::kAlways) item.cost = 0;
    p->exact_items.push_back(item);
  }
  p->exact_decisions.assign(p->exact.size(), Decision{});
  Pending& r = *p;
  backend_->Charge(r.exact_items, r.exact_decisions, [this, p](absl::Status status) mutable {
    if (!status.ok()) {
      GiveBackTaken(*p);
      return Finish(*p, std::move(status));
    }
    AddHeld(p->exact_items, p->exact_decisions);
    for (size_t k = 0; k < p->exact.size(); ++k) p->decisions[p->exact[k]] = p->exact_decisions[k];
    if (!p->rejected && RequestRejected(p->exact_items, p->exact_decisions)) GiveBackTaken(*p);
    Finish(*p, absl::OkStatus());
  });
}

void LeasedStore::Finish(Pending& p, absl::Status status) {
  if (p.done) std::exchange(p.done, nullptr)(std::move(status));
}

void LeasedStore::Send(std::shared_ptr<LeaseCall> call) {
  call->request.key = call->key;
  call->request.limit = &call->entry_limit;
  calls_in_flight_.fetch_add(1, std::memory_order_relaxed);
  LeaseCall& c = *call;
  backend_->Lease(c.request, [this, call = std::move(call)](absl::StatusOr<LeaseReply> reply) {
    Answered(call, std::move(reply));
    calls_in_flight_.fetch_sub(1, std::memory_order_relaxed);
  });
}

void LeasedStore::Answered(std::shared_ptr<LeaseCall> call, absl::StatusOr<LeaseReply> reply) {
  const std::shared_ptr<Entry>& e = call->entry;
  std::vector<std::shared_ptr<Pending>> waiters;
  std::vector<absl::AnyInvocable<void() &&>> reads;
  std::vector<LeaseEvent> events;
  {
    MutexLock lock(ShardOf(e->key).mu);
    e->in_flight = false;
    waiters.swap(e->waiters);
    reads.swap(e->after_lease);
    if (!reply.ok()) {
      e->failure = reply.status();
      e->failed_until = SteadyClock::now() + kFailureHold;
      // What was to be given back was not: it is still this server's to use.
      for (auto it = call->given_back.rbegin(); it != call->given_back.rend(); ++it)
        e->Restore(it->tokens, it->until);
    } else if (!e->dropped) {
      const LeaseReply& r = *reply;
      e->leased_once = true;
      e->failed_until = TimePoint::min();
      e->debt -= call->request.debt;
      if (r.granted > 0) {
        e->Add(r.granted, After(call->sent, r.valid_for));
        e->taken_at = r.now;
        events.push_back(LeaseEvent::kTaken);
      }
      if (r.credit > 0) {
        // The pool is per window: credit ends with the window it was taken in, and credit left
        // from an earlier window (not yet found expired by a check) must not ride along.
        const Micros window = e->limit.window();
        const int64_t period = r.now / window;
        if (period != e->credit_period) e->credit = 0;
        e->credit += r.credit;
        e->credit_period = period;
        e->credit_until = After(call->sent, window - r.now % window);
      }
      e->store_remaining = r.remaining;
      e->reset_at = After(call->sent, r.reset_after);
      // Refused alone until Redis said the quota would be back, but never longer than `quiet`:
      // another server going quiet gives its slice back to Redis meanwhile.
      e->exhausted_until =
          r.granted < std::max<int64_t>(call->request.need, 1)
              ? std::min(After(call->sent, r.retry_after), call->sent + options_.quiet)
              : TimePoint::min();
    }
    if (call->returning && reply.ok()) events.push_back(LeaseEvent::kReturned);
  }
  for (LeaseEvent event : events) {
    if (options_.on_lease) options_.on_lease(e->rule_id, event);
  }
  for (auto& read : reads) std::move(read)();
  for (auto& p : waiters) {
    if (!reply.ok() || stopping_.load(std::memory_order_acquire)) {
      Finish(*p, reply.ok() ? absl::UnavailableError("store stopping") : reply.status());
      continue;
    }
    ++p->waits;
    Attempt(std::move(p));
  }
}

std::shared_ptr<LeasedStore::LeaseCall> LeasedStore::GiveBackCall(
    const std::shared_ptr<Entry>& entry, TimePoint now) {
  Entry& e = *entry;
  auto call = std::make_shared<LeaseCall>(e);
  call->entry = entry;
  call->key = e.key;
  call->sent = now;
  call->returning = e.held > 0;
  call->request = LeaseRequest{.debt = e.debt, .give_back = e.held, .given_at = e.taken_at};
  call->given_back = e.TakeAll();
  e.in_flight = true;
  return call;
}

void LeasedStore::Sweep() {
  const TimePoint now = SteadyClock::now();
  std::vector<std::shared_ptr<LeaseCall>> to_send;
  std::vector<std::pair<std::string, LeaseEvent>> events;
  for (size_t s = 0; s < kShards; ++s) {
    Shard& shard = shards_[s];
    MutexLock lock(shard.mu);
    absl::erase_if(shard.cold,
                   [&](const auto& kv) { return now - kv.second.last >= options_.quiet; });
    absl::erase_if(shard.entries, [&](auto& kv) {
      Entry& e = *kv.second;
      if (e.in_flight) return false;
      if (e.Expire(now) > 0) events.emplace_back(e.rule_id, LeaseEvent::kExpired);
      const bool quiet = now - e.last_use >= options_.quiet;
      // A quiet counter pays its debt and gives back what it holds, unless that is a crumb (at
      // most 1/256 of the limit: not worth a call; it ends with its window or life).
      const bool worth = e.held > e.limit.max_cost() / 256;
      if (quiet && (worth || e.debt > 0) && now >= e.failed_until) {
        to_send.push_back(GiveBackCall(kv.second, now));
        return false;
      }
      // Long quiet with nothing held: forgotten (a later check leases again).
      return now - e.last_use >= 8 * options_.quiet && e.held == 0 && e.debt == 0 &&
             e.waiters.empty();
    });
  }
  for (auto& [rule, event] : events) {
    if (options_.on_lease) options_.on_lease(rule, event);
  }
  for (auto& call : to_send) Send(std::move(call));
}

void LeasedStore::GiveBackAll(std::chrono::milliseconds timeout) {
  std::vector<std::shared_ptr<LeaseCall>> to_send;
  const TimePoint now = SteadyClock::now();
  for (size_t s = 0; s < kShards; ++s) {
    Shard& shard = shards_[s];
    MutexLock lock(shard.mu);
    for (auto& [key, entry] : shard.entries) {
      Entry& e = *entry;
      e.Expire(now);
      // Whatever Redis said it lacked may be back (others give back too): ask again.
      e.exhausted_until = TimePoint::min();
      if (e.in_flight || (e.held == 0 && e.debt == 0)) continue;
      to_send.push_back(GiveBackCall(entry, now));
    }
  }
  for (auto& call : to_send) Send(std::move(call));
  const TimePoint until = SteadyClock::now() + timeout;
  while (calls_in_flight_.load(std::memory_order_relaxed) > 0 && SteadyClock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void LeasedStore::Reset(std::string_view key, const Limit& limit, Done done) {
  ForgetLocal(key);
  backend_->Reset(key, limit, std::move(done));
}

void LeasedStore::ForgetCached(std::string_view key) {
  ForgetLocal(key);
  backend_->ForgetCached(key);
}

void LeasedStore::ForgetLocal(std::string_view key) {
  Shard& shard = ShardOf(key);
  MutexLock lock(shard.mu);
  auto it = shard.entries.find(absl::string_view(key.data(), key.size()));
  if (it == shard.entries.end()) return;
  // A lease in flight for it brings nothing back; the checks waiting on it try again then, with
  // a fresh entry.
  it->second->dropped = true;
  shard.entries.erase(it);
}

}  // namespace sluice
