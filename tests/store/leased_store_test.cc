// LeasedStore (CONTRACT §11) against a real redis-server this test starts on a free loopback
// port: the store contract suite with leased as the default consistency, then what leasing
// promises: exactness across servers with max_overshoot 0, the bound with credit, buckets, the
// give-back of a quiet server, Redis dying while slices are held, Reset, metrics, and rules whose
// algorithm cannot be leased going the exact way. Hang detectors only, no timing assertions.
#include "store/leased/leased_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "tests/store/redis_server.h"
#include "tests/store/store_contract.h"

namespace sluice {
namespace {

using std::chrono::milliseconds;
using testing::RedisServer;
using testing::StoreContractTest;
using testing::StoreFactory;

constexpr Micros kHour = int64_t{3600} * 1'000'000;

RedisServer& SharedServer() {
  static RedisServer server;
  return server;
}

std::unique_ptr<RedisStore> ConnectRedis(const std::string& url,
                                         milliseconds timeout = milliseconds(2000)) {
  auto store = RedisStore::Create({.url = url,
                                   .timeout = timeout,
                                   .key_prefix = "sluice:",
                                   .connect_timeout = milliseconds(500),
                                   .backoff_max = milliseconds(200)});
  EXPECT_TRUE(store.ok()) << store.status();
  if (!store.ok()) std::abort();
  return std::move(*store);
}

std::unique_ptr<LeasedStore> MakeLeased(LeasedStoreOptions options,
                                        const std::string& url = SharedServer().url(),
                                        milliseconds timeout = milliseconds(2000)) {
  // As the server does: waiting for a slice fails after the store's own timeout (the options'
  // 50 ms default is short for a loaded machine running these tests under sanitizers).
  options.timeout = timeout;
  return std::make_unique<LeasedStore>(ConnectRedis(url, timeout), std::move(options));
}

LeasedStoreOptions LeasedDefault(Overshoot overshoot) {
  LeasedStoreOptions o;
  o.consistency = Consistency::kLeased;
  o.max_overshoot = overshoot;
  return o;
}

// The contract, with every ChargeItem's kDefault consistency meaning leased (where the algorithm
// is leasable). Only with max_overshoot 0, which CONTRACT §11 says makes a leased rule exact: with
// the default 1%, ConcurrentChargesAdmitExactlyTheLimit may legitimately admit up to limit + 10
// on its windowed keys (credit), and bucket keys of limit 1000 are leased too (at 0 their slices
// would have no life, so buckets go the exact way here).
// ChargeAlwaysGoesIntoDebt and OverLimitItemsKeepTheirChargeOthersAreGivenBack fail on this
// instance (also at 1%): a cost-0 read of a counter this server itself put in debt is admitted
// from its empty slice (leased_store.cc, `if (e->leased_once && e->held >= cost)`).
INSTANTIATE_TEST_SUITE_P(Leased, StoreContractTest,
                         ::testing::Values(StoreFactory{"leased_overshoot0",
                                                        []() -> std::unique_ptr<Store> {
                                                          return MakeLeased(
                                                              LeasedDefault(Overshoot::Count(0)));
                                                        }}),
                         [](const auto& info) { return info.param.name; });

std::string Key(const std::string& name) {
  static std::atomic<int> n{0};
  return "leased:" + name + ":" + std::to_string(::getpid()) + ":" + std::to_string(++n);
}

// Charges `items` and waits for the answer, aborting (the store would write into a dead frame)
// if none comes within 10 s: a hang detector.
absl::StatusOr<std::vector<Decision>> Charge(Store& store, const std::vector<ChargeItem>& items) {
  std::vector<Decision> decisions(items.size());
  std::promise<absl::Status> done;
  auto result = done.get_future();
  store.Charge(items, decisions, [&done](absl::Status s) { done.set_value(std::move(s)); });
  if (result.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    ADD_FAILURE() << "Charge did not answer within 10 s";
    std::abort();
  }
  absl::Status status = result.get();
  if (!status.ok()) return status;
  return decisions;
}

// Redis's clock, in microseconds.
Micros RedisNow(RedisServer& server) {
  auto r = server.Command({"TIME"});
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
    ADD_FAILURE() << "TIME failed";
    return 0;
  }
  return std::stoll(r->element[0]->str) * 1'000'000 + std::stoll(r->element[1]->str);
}

// What the exact path reads for `key` (a cost-0 charge through a plain RedisStore).
int64_t ExactRemaining(RedisStore& exact, const std::string& key, const Limit& limit) {
  auto d = Charge(exact, {{key, &limit, 0, ItemRole::kEnforced, ChargeWhen::kRequestAllowed,
                           Consistency::kExact}});
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? (*d)[0].remaining : -1;
}

struct Tally {
  std::atomic<int64_t> admitted{0};
  std::atomic<int64_t> rejected{0};
  std::atomic<int64_t> failed{0};
  absl::Mutex mu;
  std::string first_error ABSL_GUARDED_BY(mu);  // what the first failed charge said
};

std::string FirstError(Tally& tally) {
  absl::MutexLock lock(&tally.mu);
  return tally.first_error;
}

// `threads` threads per store, each charging every item of `items` (one request per item)
// `per_thread` times.
void Hammer(const std::vector<LeasedStore*>& stores, int threads, int per_thread,
            const std::vector<ChargeItem>& items, std::vector<Tally>& tallies) {
  std::vector<std::thread> pool;
  for (LeasedStore* store : stores) {
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, store] {
        for (int i = 0; i < per_thread; ++i) {
          for (size_t k = 0; k < items.size(); ++k) {
            auto d = Charge(*store, {items[k]});
            if (!d.ok()) {
              if (tallies[k].failed++ == 0) {
                absl::MutexLock lock(&tallies[k].mu);
                tallies[k].first_error = d.status().ToString();
              }
            } else if ((*d)[0].allowed) {
              ++tallies[k].admitted;
            } else {
              ++tallies[k].rejected;
            }
          }
        }
      });
    }
  }
  for (auto& th : pool) th.join();
}

// Gives back every slice of every store. Twice: a lease still in flight the first time is
// skipped, and what it brings is given back the second time.
void GiveBackEverything(const std::vector<LeasedStore*>& stores) {
  for (int round = 0; round < 2; ++round) {
    for (LeasedStore* s : stores) s->GiveBackAll(milliseconds(5000));
  }
}

// Charges `item` one at a time through `store` until it is refused; returns how many it admitted.
int64_t Drain(Store& store, const ChargeItem& item, int64_t at_most) {
  int64_t admitted = 0;
  for (int64_t i = 0; i < at_most; ++i) {
    auto d = Charge(store, {item});
    EXPECT_TRUE(d.ok()) << d.status();
    if (!d.ok() || !(*d)[0].allowed) break;
    ++admitted;
  }
  return admitted;
}

// Whether [from, to] (Redis times) crossed the end of a `window`-aligned window: the window's
// counter then started over, and exactness within one window cannot be checked.
bool CrossedWindow(Micros from, Micros to, Micros window) { return from / window != to / window; }

// Verifies exactness with max_overshoot 0: 3 servers on one Redis, 8 threads each, on a
// fixed_window and a sliding_window_counter key; then every slice given back and what is left
// drained: exactly the limit admitted, never more, and no check failed.
TEST(LeasedStoreTest, ThreeServersAdmitExactlyTheLimitWithoutOvershoot) {
  constexpr int64_t kLimit = 2000;
  const Limit fixed =
      *Limit::Create({.algorithm = Algorithm::kFixedWindow, .limit = kLimit, .window = kHour});
  const Limit sliding = *Limit::Create(
      {.algorithm = Algorithm::kSlidingWindowCounter, .limit = kLimit, .window = kHour});
  std::vector<std::unique_ptr<LeasedStore>> owned;
  std::vector<LeasedStore*> stores;
  for (int i = 0; i < 3; ++i) {
    owned.push_back(MakeLeased(LeasedDefault(Overshoot::Count(0))));
    stores.push_back(owned.back().get());
  }
  const std::string kf = Key("exact-fixed"), ks = Key("exact-sliding");
  const std::vector<ChargeItem> items = {{kf, &fixed, 1}, {ks, &sliding, 1}};
  ASSERT_TRUE(stores[0]->Leased(items[0]));
  ASSERT_TRUE(stores[0]->Leased(items[1]));

  const Micros start = RedisNow(SharedServer());
  std::vector<Tally> tallies(2);
  Hammer(stores, 8, 150, items, tallies);  // 3600 tries per key for 2000 places
  for (size_t k = 0; k < items.size(); ++k) {
    SCOPED_TRACE(k == 0 ? "fixed_window" : "sliding_window_counter");
    EXPECT_EQ(tallies[k].failed.load(), 0) << FirstError(tallies[k]);
    EXPECT_LE(tallies[k].admitted.load(), kLimit) << "never over with max_overshoot 0";
    EXPECT_EQ(tallies[k].admitted + tallies[k].rejected, 3 * 8 * 150);
  }
  GiveBackEverything(stores);
  int64_t total[2];
  for (size_t k = 0; k < items.size(); ++k) {
    total[k] = tallies[k].admitted + Drain(*stores[k], items[k], kLimit + 10);
  }
  const Micros end = RedisNow(SharedServer());
  if (CrossedWindow(start, end, kHour)) GTEST_SKIP() << "crossed an hour boundary";
  EXPECT_EQ(total[0], kLimit) << "fixed_window";
  EXPECT_EQ(total[1], kLimit) << "sliding_window_counter";
}

// Verifies the bound with credit: max_overshoot 50 (a count, given by the item): admitted per
// window over all servers is within [limit, limit + 50].
TEST(LeasedStoreTest, CreditStaysWithinMaxOvershoot) {
  constexpr int64_t kLimit = 2000;
  constexpr int64_t kOvershoot = 50;
  const Overshoot overshoot = Overshoot::Count(kOvershoot);
  const Limit fixed =
      *Limit::Create({.algorithm = Algorithm::kFixedWindow, .limit = kLimit, .window = kHour});
  std::vector<std::unique_ptr<LeasedStore>> owned;
  std::vector<LeasedStore*> stores;
  for (int i = 0; i < 3; ++i) {
    // The store's default is exact: the item's consistency says leased.
    owned.push_back(MakeLeased(LeasedStoreOptions{}));
    stores.push_back(owned.back().get());
  }
  const std::string key = Key("credit-fixed");
  ChargeItem item{key, &fixed, 1};
  item.consistency = Consistency::kLeased;
  item.max_overshoot = &overshoot;
  ASSERT_TRUE(stores[0]->Leased(item));

  const Micros start = RedisNow(SharedServer());
  std::vector<Tally> tallies(1);
  Hammer(stores, 8, 150, {item}, tallies);
  EXPECT_EQ(tallies[0].failed.load(), 0) << FirstError(tallies[0]);
  EXPECT_LE(tallies[0].admitted.load(), kLimit + kOvershoot);
  GiveBackEverything(stores);
  const int64_t total = tallies[0].admitted + Drain(*stores[0], item, kLimit + kOvershoot + 10);
  const Micros end = RedisNow(SharedServer());
  if (CrossedWindow(start, end, kHour)) GTEST_SKIP() << "crossed an hour boundary";
  EXPECT_GE(total, kLimit);
  EXPECT_LE(total, kLimit + kOvershoot);
}

// Verifies the bucket bound: token_bucket with burst = limit, max_overshoot 1%: over a test far
// shorter than the window, admitted is at least the burst (demand exceeds it) and at most
// burst + overshoot + what the bucket refilled meanwhile (limit * elapsed / window, rounded up:
// about one token per 2 s here).
TEST(LeasedStoreTest, TokenBucketStaysWithinBurstPlusOvershoot) {
  constexpr int64_t kLimit = 2000;
  const Limit bucket = *Limit::Create(
      {.algorithm = Algorithm::kTokenBucket, .limit = kLimit, .window = kHour, .burst = kLimit});
  const Overshoot overshoot = *Overshoot::Parse("1%");
  const int64_t bound = overshoot.For(kLimit);
  ASSERT_EQ(bound, 20);
  std::vector<std::unique_ptr<LeasedStore>> owned;
  std::vector<LeasedStore*> stores;
  for (int i = 0; i < 3; ++i) {
    owned.push_back(MakeLeased(LeasedDefault(overshoot)));
    stores.push_back(owned.back().get());
  }
  const std::string key = Key("bucket");
  const ChargeItem item{key, &bucket, 1};
  ASSERT_TRUE(stores[0]->Leased(item));

  const Micros start = RedisNow(SharedServer());
  std::vector<Tally> tallies(1);
  Hammer(stores, 8, 150, {item}, tallies);
  EXPECT_EQ(tallies[0].failed.load(), 0) << FirstError(tallies[0]);
  GiveBackEverything(stores);
  const int64_t total = tallies[0].admitted + Drain(*stores[0], item, kLimit + 100);
  const Micros elapsed = RedisNow(SharedServer()) - start;
  const int64_t refill = (kLimit * elapsed + kHour - 1) / kHour;
  EXPECT_GE(total, kLimit);
  EXPECT_LE(total, kLimit + bound + refill) << "refill allowance " << refill;
}

// Verifies the give-back: a server that took slices and goes quiet gives back what it did not
// use (GiveBackAll), and then another server can take all that is left: limit - used.
TEST(LeasedStoreTest, GiveBackAllLetsAnotherServerTakeTheRest) {
  constexpr int64_t kLimit = 2000;
  const Limit fixed =
      *Limit::Create({.algorithm = Algorithm::kFixedWindow, .limit = kLimit, .window = kHour});
  LeasedStoreOptions options = LeasedDefault(Overshoot::Count(0));
  options.quiet = milliseconds(2'000);  // no give-back during the test but the one asked for
  auto a = MakeLeased(options);
  auto b = MakeLeased(options);
  auto exact = ConnectRedis(SharedServer().url());
  const std::string key = Key("giveback");
  const ChargeItem item{key, &fixed, 1};

  const Micros start = RedisNow(SharedServer());
  std::vector<Tally> tallies(1);
  Hammer({a.get()}, 4, 100, {item}, tallies);
  ASSERT_EQ(tallies[0].failed.load(), 0) << FirstError(tallies[0]);
  const int64_t used = tallies[0].admitted;        // all 400 but for the kMaxWaits refusals
  std::this_thread::sleep_for(milliseconds(100));  // lets a lease taken ahead of need land
  const int64_t held = kLimit - used - ExactRemaining(*exact, key, fixed);
  EXPECT_GT(held, 0) << "the busy server holds a slice";

  a->GiveBackAll(milliseconds(5000));
  EXPECT_EQ(ExactRemaining(*exact, key, fixed), kLimit - used) << "all of it given back";
  const int64_t by_b = Drain(*b, item, kLimit);
  const Micros end = RedisNow(SharedServer());
  if (CrossedWindow(start, end, kHour)) GTEST_SKIP() << "crossed an hour boundary";
  EXPECT_EQ(by_b, kLimit - used);
}

// Verifies the same give-back by the sweeper when the counter stays unused for `quiet`: a
// kReturned event, then Redis has everything back.
TEST(LeasedStoreTest, QuietCounterGivesBackByItself) {
  constexpr int64_t kLimit = 2000;
  const Limit fixed =
      *Limit::Create({.algorithm = Algorithm::kFixedWindow, .limit = kLimit, .window = kHour});
  std::atomic<int> returned{0};
  LeasedStoreOptions options = LeasedDefault(Overshoot::Count(0));
  options.quiet = milliseconds(100);
  options.on_lease = [&returned](std::string_view, LeaseEvent e) {
    if (e == LeaseEvent::kReturned) ++returned;
  };
  auto a = MakeLeased(options);
  auto b = MakeLeased(LeasedDefault(Overshoot::Count(0)));
  auto exact = ConnectRedis(SharedServer().url());
  const std::string key = Key("quiet");
  const ChargeItem item{key, &fixed, 1};

  const Micros start = RedisNow(SharedServer());
  std::vector<Tally> tallies(1);
  Hammer({a.get()}, 4, 100, {item}, tallies);
  ASSERT_EQ(tallies[0].failed.load(), 0) << FirstError(tallies[0]);
  const int64_t used = tallies[0].admitted;
  // Hang detector: the sweeper gives back within a few `quiet`s; 10 s is far beyond.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (returned.load() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_GT(returned.load(), 0) << "no give-back within 10 s of going quiet";
  // The returned event is reported once Redis answered the give-back.
  EXPECT_EQ(ExactRemaining(*exact, key, fixed), kLimit - used);
  const int64_t by_b = Drain(*b, item, kLimit);
  const Micros end = RedisNow(SharedServer());
  if (CrossedWindow(start, end, kHour)) GTEST_SKIP() << "crossed an hour boundary";
  EXPECT_EQ(by_b, kLimit - used);
}

// Verifies Redis dying while slices are held: the slice in hand keeps admitting (exactly what it
// holds), then checks fail with UNAVAILABLE or DEADLINE_EXCEEDED, each answered (never a hang).
TEST(LeasedStoreTest, RedisKilledSlicesKeepDecidingThenChecksFail) {
  RedisServer server;
  constexpr int64_t kLimit = 10'000;
  const Limit fixed =
      *Limit::Create({.algorithm = Algorithm::kFixedWindow, .limit = kLimit, .window = kHour});
  LeasedStoreOptions options = LeasedDefault(Overshoot::Count(0));
  options.quiet = milliseconds(2'000);
  auto store = MakeLeased(options, server.url(), milliseconds(300));
  auto exact = ConnectRedis(server.url());
  const std::string key = Key("killed");
  const ChargeItem item{key, &fixed, 1};

  std::vector<Tally> tallies(1);
  Hammer({store.get()}, 4, 200, {item}, tallies);
  ASSERT_EQ(tallies[0].failed.load(), 0) << FirstError(tallies[0]);
  const int64_t used = tallies[0].admitted;
  std::this_thread::sleep_for(milliseconds(100));  // lets a lease taken ahead of need land
  const int64_t held = kLimit - used - ExactRemaining(*exact, key, fixed);
  ASSERT_GT(held, 0) << "the server holds a slice";

  server.Stop();
  int64_t admitted = 0;
  absl::Status failure;
  for (int i = 0; i < kLimit; ++i) {
    auto d = Charge(*store, {item});
    if (!d.ok()) {
      failure = d.status();
      break;
    }
    EXPECT_TRUE((*d)[0].allowed);
    ++admitted;
  }
  EXPECT_EQ(admitted, held) << "the slice in hand, all of it, and no more";
  ASSERT_FALSE(failure.ok());
  for (int i = 0; i < 20; ++i) {
    auto d = Charge(*store, {item});
    ASSERT_FALSE(d.ok()) << "admitted with Redis dead and the slice spent";
    failure = d.status();
    EXPECT_TRUE(absl::IsUnavailable(failure) || absl::IsDeadlineExceeded(failure)) << failure;
  }
  // A counter this server never leased fails too.
  auto fresh = Charge(*store, {{Key("killed-fresh"), &fixed, 1}});
  ASSERT_FALSE(fresh.ok());
  EXPECT_TRUE(absl::IsUnavailable(fresh.status()) || absl::IsDeadlineExceeded(fresh.status()))
      << fresh.status();
}

// Verifies Reset on a leased counter: drained to its limit, reset, it admits the full limit again
// on that server (the dropped slice does not come back).
TEST(LeasedStoreTest, ResetAdmitsTheFullLimitAgain) {
  constexpr int64_t kLimit = 200;
  for (Algorithm a : {Algorithm::kFixedWindow, Algorithm::kSlidingWindowCounter}) {
    SCOPED_TRACE(AlgorithmName(a));
    const Limit limit = *Limit::Create({.algorithm = a, .limit = kLimit, .window = kHour});
    auto store = MakeLeased(LeasedDefault(Overshoot::Count(0)));
    const std::string key = Key("reset");
    const ChargeItem item{key, &limit, 1};
    ASSERT_TRUE(store->Leased(item));
    const Micros start = RedisNow(SharedServer());
    EXPECT_EQ(Drain(*store, item, kLimit + 10), kLimit);
    ASSERT_TRUE(testing::ResetSync(*store, key, limit).ok());
    EXPECT_EQ(Drain(*store, item, kLimit + 10), kLimit);
    // Reset while a slice is held: what it held is gone with it.
    ASSERT_TRUE(testing::ResetSync(*store, key, limit).ok());
    EXPECT_EQ(Drain(*store, item, 50), 50);
    ASSERT_TRUE(testing::ResetSync(*store, key, limit).ok());
    EXPECT_EQ(Drain(*store, item, kLimit + 10), kLimit);
    if (CrossedWindow(start, RedisNow(SharedServer()), kHour)) {
      GTEST_SKIP() << "crossed an hour boundary";
    }
  }
}

// Verifies CONTRACT §11 "no server refuses while the store still has quota to lease it": 8
// threads on one server, a limit far above the demand: every check is admitted. (A refusal here
// carries retry_after 1 µs: the check waited for kMaxWaits slices that other threads used up,
// src/store/leased/leased_store.cc, the `else { reject(...) }` after `p->waits < kMaxWaits`.)
TEST(LeasedStoreTest, NoRefusalWhileRedisHasQuota) {
  constexpr int64_t kLimit = 100'000;
  const Limit fixed =
      *Limit::Create({.algorithm = Algorithm::kFixedWindow, .limit = kLimit, .window = kHour});
  auto store = MakeLeased(LeasedDefault(Overshoot::Count(0)));
  const std::string key = Key("no-refusal");
  const ChargeItem item{key, &fixed, 1};
  std::atomic<int64_t> admitted{0}, rejected{0}, failed{0}, max_retry{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < 8; ++t) {
    pool.emplace_back([&] {
      for (int i = 0; i < 300; ++i) {
        auto d = Charge(*store, {item});
        if (!d.ok()) {
          ++failed;
        } else if ((*d)[0].allowed) {
          ++admitted;
        } else {
          ++rejected;
          int64_t r = (*d)[0].retry_after, m = max_retry.load();
          while (r > m && !max_retry.compare_exchange_weak(m, r)) {
          }
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(rejected.load(), 0) << "refused with " << kLimit - admitted << " left in Redis; "
                                << "largest retry_after " << max_retry.load() << " us";
  EXPECT_EQ(admitted.load(), 8 * 300);
}

// Verifies that GiveBackAll returns every unused token: after four admitted checks, Redis has
// limit - 4 again, and the give-back takes no new slice (no kTaken event after it).
TEST(LeasedStoreTest, GiveBackAllReturnsEveryUnusedToken) {
  constexpr int64_t kLimit = 1000;
  for (Algorithm a : {Algorithm::kFixedWindow, Algorithm::kSlidingWindowCounter}) {
    SCOPED_TRACE(AlgorithmName(a));
    const Limit limit = *Limit::Create({.algorithm = a, .limit = kLimit, .window = kHour});
    std::atomic<int> taken{0}, returned{0};
    LeasedStoreOptions options = LeasedDefault(Overshoot::Count(0));
    options.quiet = milliseconds(2'000);
    options.on_lease = [&](std::string_view, LeaseEvent e) {
      if (e == LeaseEvent::kTaken) ++taken;
      if (e == LeaseEvent::kReturned) ++returned;
    };
    auto store = MakeLeased(options);
    auto exact = ConnectRedis(SharedServer().url());
    const std::string key = Key("giveback-one");
    const ChargeItem item{key, &limit, 1};
    const Micros start = RedisNow(SharedServer());
    // Four checks: a counter's first three on a server are decided by Redis exactly, the fourth
    // takes a slice.
    for (int i = 0; i < 4; ++i) {
      auto d = Charge(*store, {item});
      ASSERT_TRUE(d.ok()) << d.status();
      ASSERT_TRUE((*d)[0].allowed);
    }
    std::this_thread::sleep_for(milliseconds(100));  // lets a lease taken ahead of need land
    const int64_t held = kLimit - 4 - ExactRemaining(*exact, key, limit);
    EXPECT_GT(held, 0);
    const int taken_before = taken.load();
    store->GiveBackAll(milliseconds(5000));
    EXPECT_EQ(returned.load(), 1);
    EXPECT_EQ(taken.load(), taken_before) << "the give-back took a new slice";
    const int64_t remaining = ExactRemaining(*exact, key, limit);
    if (CrossedWindow(start, RedisNow(SharedServer()), kHour)) {
      GTEST_SKIP() << "crossed an hour boundary";
    }
    EXPECT_EQ(remaining, kLimit - 4) << "held " << held << " before the give-back";
  }
}

// Verifies the metrics callbacks: on_bound gets the rule's bound in tokens when a counter is
// first seen, on_lease a kTaken event with the ChargeItem's rule_id.
TEST(LeasedStoreTest, MetricsCallbacksNameTheRule) {
  std::mutex mu;
  std::vector<std::pair<std::string, LeaseEvent>> events;
  std::vector<std::pair<std::string, int64_t>> bounds;
  LeasedStoreOptions options = LeasedDefault(*Overshoot::Parse("1%"));
  options.on_lease = [&](std::string_view rule, LeaseEvent e) {
    std::lock_guard lock(mu);
    events.emplace_back(std::string(rule), e);
  };
  options.on_bound = [&](std::string_view rule, int64_t bound) {
    std::lock_guard lock(mu);
    bounds.emplace_back(std::string(rule), bound);
  };
  auto store = MakeLeased(options);
  const Limit limit =
      *Limit::Create({.algorithm = Algorithm::kFixedWindow, .limit = 500, .window = kHour});
  const Overshoot seven = Overshoot::Count(7);

  const std::string key_a = Key("metrics-a"), key_b = Key("metrics-b");
  ChargeItem by_default{key_a, &limit, 1};
  by_default.rule_id = "rule-a";
  ChargeItem own_bound{key_b, &limit, 1};
  own_bound.rule_id = "rule-b";
  own_bound.max_overshoot = &seven;
  for (int i = 0; i < 3; ++i) {
    auto d = Charge(*store, {by_default, own_bound});
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_TRUE((*d)[0].allowed);
    EXPECT_TRUE((*d)[1].allowed);
  }
  std::lock_guard lock(mu);
  EXPECT_EQ(bounds, (std::vector<std::pair<std::string, int64_t>>{{"rule-a", 5}, {"rule-b", 7}}))
      << "once per counter: 1% of 500, then the item's own 7";
  int taken_a = 0, taken_b = 0;
  for (const auto& [rule, e] : events) {
    EXPECT_TRUE(rule == "rule-a" || rule == "rule-b") << rule;
    if (e == LeaseEvent::kTaken) (rule == "rule-a" ? taken_a : taken_b)++;
  }
  EXPECT_GE(taken_a, 1);
  EXPECT_GE(taken_b, 1);
  EXPECT_EQ(LeaseEventName(LeaseEvent::kTaken), "taken");
  EXPECT_EQ(LeaseEventName(LeaseEvent::kReturned), "returned");
  EXPECT_EQ(LeaseEventName(LeaseEvent::kExpired), "expired");
}

// Verifies that items whose algorithm cannot be leased (sliding_window_log, leaky_bucket), quota
// items, and items that ask for exact go the exact way even when the store's default is leased:
// no lease is ever taken for them, and they admit exactly their limit.
TEST(LeasedStoreTest, NotLeasableItemsGoTheExactWay) {
  std::atomic<int> lease_events{0}, bound_events{0};
  LeasedStoreOptions options = LeasedDefault(*Overshoot::Parse("1%"));
  options.on_lease = [&](std::string_view, LeaseEvent) { ++lease_events; };
  options.on_bound = [&](std::string_view, int64_t) { ++bound_events; };
  auto store = MakeLeased(options);
  for (Algorithm a : {Algorithm::kSlidingWindowLog, Algorithm::kLeakyBucket}) {
    SCOPED_TRACE(AlgorithmName(a));
    const Limit limit = *Limit::Create({.algorithm = a, .limit = 5, .window = kHour});
    const std::string log_key = Key("log");
    const ChargeItem item{log_key, &limit, 1};
    EXPECT_FALSE(store->Leased(item));
    ChargeItem asks_leased = item;
    asks_leased.consistency = Consistency::kLeased;
    EXPECT_FALSE(store->Leased(asks_leased));
    int admitted = 0;
    for (int i = 0; i < 8; ++i) {
      auto d = Charge(*store, {asks_leased});
      ASSERT_TRUE(d.ok()) << d.status();
      admitted += (*d)[0].allowed ? 1 : 0;
    }
    EXPECT_EQ(admitted, 5);
  }
  // The sliding window log keeps its log in Redis: a sorted set with one entry per admission.
  const Limit log =
      *Limit::Create({.algorithm = Algorithm::kSlidingWindowLog, .limit = 5, .window = kHour});
  const std::string key = Key("log-entries");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Charge(*store, {{key, &log, 1}}).ok());
  auto keys = SharedServer().Command({"KEYS", "sluice:*" + key + "*"});
  ASSERT_TRUE(keys && keys->type == REDIS_REPLY_ARRAY);
  EXPECT_GE(keys->elements, 1u) << "state written by the exact path";

  const Limit fixed =
      *Limit::Create({.algorithm = Algorithm::kFixedWindow, .limit = 5, .window = kHour});
  const std::string exact_key = Key("exact-fixed"), quota_key = Key("quota-fixed");
  ChargeItem exact{exact_key, &fixed, 1};
  exact.consistency = Consistency::kExact;
  EXPECT_FALSE(store->Leased(exact));
  ChargeItem quota{quota_key, &fixed, 1, ItemRole::kQuota};
  EXPECT_FALSE(store->Leased(quota));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Charge(*store, {exact}).ok());
  EXPECT_EQ(lease_events.load(), 0) << "no slice taken for an exact item";
  EXPECT_EQ(bound_events.load(), 0);
  // A leasable item by default is leased.
  EXPECT_TRUE(store->Leased({Key("leased-fixed"), &fixed, 1}));
}

}  // namespace
}  // namespace sluice
