// Shared test vectors: random request sequences run through both the core (MemoryStore, which
// is the core plus all-or-nothing, at the time Redis decided at) and the Redis script, comparing
// every Decision field. Requests also charge into debt (ChargeWhen::kAlways / kAllowedOrOver,
// with costs up to 2^53 - 1) and mix enforced, shadow and quota items. Limits range from tiny to
// the largest the store accepts, windows from 1 us to 10 years, so the Lua wide arithmetic
// (sliding_window_counter's 2^81 products) and the relative GCRA math are exercised, as are windows
// rolling over and a clock going back.
#include <gtest/gtest.h>

#include <future>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "core/int_math.h"
#include "store/memory/memory_store.h"
#include "store/redis/redis_store.h"
#include "tests/store/redis_server.h"
#include "tests/testing/decisions.h"

namespace sluice {
namespace {

using testing::RedisServer;

constexpr Micros kSecond = kMicrosPerSecond;
constexpr Micros kStart = int64_t{1764000000} * kSecond + 123457;

RedisServer& Server() {
  static RedisServer server;
  return server;
}

std::unique_ptr<RedisStore> MakeStore() {
  // Every request must reach Redis here: no over-limit cache.
  auto store = RedisStore::Create(
      {.url = Server().url(), .timeout = std::chrono::seconds(5), .over_limit_cache_keys = 0});
  EXPECT_TRUE(store.ok()) << store.status();
  return std::move(*store);
}

// Runs one request through Redis at `now` (nullopt: Redis TIME); returns the time it used.
absl::StatusOr<Micros> RedisCharge(RedisStore& store, const std::vector<ChargeItem>& items,
                                   std::vector<Decision>& decisions, std::optional<Micros> now) {
  decisions.assign(items.size(), Decision{});
  std::promise<absl::StatusOr<Micros>> done;
  auto result = done.get_future();
  store.ChargeAt(items, decisions, now,
                 [&done](absl::StatusOr<Micros> at) { done.set_value(std::move(at)); });
  return result.get();
}

std::string Describe(const Decision& d) { return testing::DescribeDecision(d); }

bool Same(const Decision& a, const Decision& b) { return testing::SameDecision(a, b); }

std::string DescribeLimit(const Limit& l) {
  return std::string(AlgorithmName(l.algorithm())) + " limit=" + std::to_string(l.limit()) +
         " window=" + std::to_string(l.window()) + " burst=" + std::to_string(l.burst());
}

// A random limit the redis store accepts, spread over orders of magnitude.
Limit RandomLimit(std::mt19937_64& rng, Algorithm a) {
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  auto magnitude = [&](int64_t max) {  // log-uniform in [1, max]
    const int bits = static_cast<int>(pick(0, 63 - __builtin_clzll(static_cast<uint64_t>(max))));
    return std::min(max, pick(int64_t{1} << bits, (int64_t{1} << (bits + 1)) - 1));
  };
  static constexpr Micros kRound[] = {kSecond, 60 * kSecond, 3600 * kSecond, 86400 * kSecond,
                                      7 * 86400 * kSecond};
  for (;;) {
    LimitOptions o;
    o.algorithm = a;
    const int64_t max_limit =
        a == Algorithm::kSlidingWindowCounter ? Limit::kMaxSlidingCounterLimit : Limit::kMaxCount;
    o.limit = pick(0, 3) == 0 ? pick(1, 10) : magnitude(max_limit);
    o.window = pick(0, 2) == 0 ? kRound[pick(0, 4)] : magnitude(Limit::kMaxWindow);
    if (UsesBurst(a) && pick(0, 1) == 0) o.burst = magnitude(Limit::kMaxCount);
    auto limit = Limit::Create(o);
    if (limit.ok() && RedisStore::Supports(*limit).ok()) return *limit;
  }
}

Micros NextTimeUnbounded(std::mt19937_64& rng, const Limit& l, Micros now);

// The next time: mostly forward by amounts on the scale of the limit's rate and window, now and
// then backwards; never past the year 2090 (microseconds since the epoch stay far below 2^53, as
// real times do until 2255).
Micros NextTime(std::mt19937_64& rng, const Limit& l, Micros now) {
  constexpr Micros kLatest = int64_t{3'800'000'000} * kSecond;
  const Micros next = NextTimeUnbounded(rng, l, now);
  return next <= kLatest ? next : now + 1;
}

Micros NextTimeUnbounded(std::mt19937_64& rng, const Limit& l, Micros now) {
  const Micros w = l.window();
  const Micros per_token = std::max<Micros>(1, w / l.limit());
  auto upto = [&](Micros hi) {
    return std::uniform_int_distribution<Micros>(0, std::max<Micros>(0, hi))(rng);
  };
  switch (std::uniform_int_distribution<int>(0, 9)(rng)) {
    case 0:
      return now;
    case 1:
      return now + 1;
    case 2:
      return now + upto(3 * per_token);
    case 3:
      return now + upto(w / 4);
    case 4:
      return now + upto(w);
    case 5:
      return now + w + upto(w);
    case 6:
      return now - upto(std::min<Micros>(w, 10 * kSecond));  // the clock goes back
    case 7:
      return now + upto(per_token);
    default:
      return now + upto(std::min<Micros>(w / 16 + 1, 60 * kSecond));
  }
}

int64_t RandomCost(std::mt19937_64& rng, const Limit& l) {
  const int64_t max = l.max_cost();
  switch (std::uniform_int_distribution<int>(0, 9)(rng)) {
    case 0:
      return 0;
    case 1:
      return max;
    case 2:
      return std::min<int64_t>(Limit::kMaxCount, max + 1);  // can never be admitted
    case 3:
      return std::uniform_int_distribution<int64_t>(1, max)(rng);
    case 4:
      return std::uniform_int_distribution<int64_t>(1, std::max<int64_t>(1, max / 4))(rng);
    default:
      return std::uniform_int_distribution<int64_t>(1, std::min<int64_t>(3, max))(rng);
  }
}

// A random ChargeWhen: mostly the default, often into debt.
ChargeWhen RandomWhen(std::mt19937_64& rng) {
  static constexpr ChargeWhen kWhens[] = {ChargeWhen::kRequestAllowed, ChargeWhen::kRequestAllowed,
                                          ChargeWhen::kAllowedOrOver, ChargeWhen::kAlways};
  return kWhens[std::uniform_int_distribution<int>(0, 3)(rng)];
}

// A cost for a charge into debt: now and then far beyond what the limit admits.
int64_t RandomDebtCost(std::mt19937_64& rng, const Limit& l) {
  switch (std::uniform_int_distribution<int>(0, 5)(rng)) {
    case 0:
      return Limit::kMaxCount;  // saturates the debt
    case 1:
      return std::min<int64_t>(Limit::kMaxCount,
                               l.max_cost() * std::uniform_int_distribution<int64_t>(2, 50)(rng));
    default:
      return RandomCost(rng, l);
  }
}

// Verifies, per algorithm, that Redis and the core give identical decisions over random
// single-key sequences at given times (forwards, backwards, across windows), with charges into
// debt mixed in.
TEST(RedisCoreEqualityTest, SingleKeySequencesMatchTheCore) {
  auto store = MakeStore();
  std::mt19937_64 rng(20251123);
  int compared = 0;
  for (Algorithm a : kAllAlgorithms) {
    for (int run = 0; run < 40; ++run) {
      const Limit limit = RandomLimit(rng, a);
      SCOPED_TRACE(DescribeLimit(limit));
      ManualClock clock(kStart);
      MemoryStore memory(clock);
      const std::string key =
          "eq:single:" + std::to_string(static_cast<int>(a)) + ":" + std::to_string(run);
      Micros now = kStart + std::uniform_int_distribution<Micros>(0, limit.window())(rng);
      for (int step = 0; step < 60; ++step) {
        now = NextTime(rng, limit, now);
        const ChargeWhen when = RandomWhen(rng);
        const int64_t cost = when == ChargeWhen::kRequestAllowed ? RandomCost(rng, limit)
                                                                 : RandomDebtCost(rng, limit);
        const std::vector<ChargeItem> items = {{key, &limit, cost, ItemRole::kEnforced, when}};
        std::vector<Decision> from_redis;
        auto at = RedisCharge(*store, items, from_redis, now);
        ASSERT_TRUE(at.ok()) << at.status();
        ASSERT_EQ(*at, now);
        clock.Set(now);
        std::vector<Decision> from_core(1);
        memory.ChargeNow(items, from_core);
        ASSERT_TRUE(Same(from_redis[0], from_core[0]))
            << "step " << step << " now " << now << " cost " << items[0].cost << "\n redis "
            << Describe(from_redis[0]) << "\n core  " << Describe(from_core[0]);
        ++compared;
      }
    }
  }
  EXPECT_GT(compared, 6 * 40 * 50);
}

// Verifies all-or-nothing requests of several keys (mixed algorithms; enforced, shadow and quota
// items; charges into debt) against MemoryStore, including the decisions reported for items of
// a rejected request.
TEST(RedisCoreEqualityTest, MultiKeyRequestsMatchTheCore) {
  auto store = MakeStore();
  std::mt19937_64 rng(7);
  for (int run = 0; run < 60; ++run) {
    std::vector<Limit> limits;
    for (int i = 0; i < 4; ++i) {
      const Algorithm a = kAllAlgorithms[std::uniform_int_distribution<int>(0, 5)(rng)];
      // Small limits over one shared time scale, so that rejections are frequent.
      limits.push_back(*Limit::Create(
          {.algorithm = a,
           .limit = std::uniform_int_distribution<int64_t>(1, 12)(rng),
           .window = std::uniform_int_distribution<Micros>(1, 4)(rng) * kSecond,
           .burst = UsesBurst(a) ? std::uniform_int_distribution<int64_t>(1, 15)(rng) : 0}));
    }
    ManualClock clock(kStart);
    MemoryStore memory(clock);
    Micros now = kStart;
    for (int step = 0; step < 80; ++step) {
      now += std::uniform_int_distribution<Micros>(0, kSecond / 2)(rng);
      // A request charges a random subset of the keys, in random order.
      std::vector<int> which = {0, 1, 2, 3};
      std::shuffle(which.begin(), which.end(), rng);
      which.resize(std::uniform_int_distribution<size_t>(1, 4)(rng));
      std::vector<std::string> keys;
      for (int k : which)
        keys.push_back("eq:multi:" + std::to_string(run) + ":" + std::to_string(k));
      std::vector<ChargeItem> items;
      for (size_t i = 0; i < which.size(); ++i) {
        static constexpr ItemRole kRoles[] = {ItemRole::kEnforced, ItemRole::kEnforced,
                                              ItemRole::kEnforced, ItemRole::kShadow,
                                              ItemRole::kQuota};
        items.push_back(ChargeItem{
            keys[i], &limits[which[i]], std::uniform_int_distribution<int64_t>(0, 3)(rng),
            kRoles[std::uniform_int_distribution<int>(0, 4)(rng)], RandomWhen(rng)});
      }
      std::vector<Decision> from_redis;
      auto at = RedisCharge(*store, items, from_redis, now);
      ASSERT_TRUE(at.ok()) << at.status();
      clock.Set(now);
      std::vector<Decision> from_core(items.size());
      memory.ChargeNow(items, from_core);
      for (size_t i = 0; i < items.size(); ++i) {
        ASSERT_TRUE(Same(from_redis[i], from_core[i]))
            << "run " << run << " step " << step << " item " << i << " "
            << DescribeLimit(*items[i].limit) << " cost " << items[i].cost << "\n redis "
            << Describe(from_redis[i]) << "\n core  " << Describe(from_core[i]);
      }
    }
  }
}

// a^-1 mod m, for gcd(a, m) = 1.
int64_t InverseMod(int64_t a, int64_t m) {
  __int128 t = 0, new_t = 1, r = m, new_r = a % m;
  while (new_r != 0) {
    const __int128 q = r / new_r;
    std::tie(t, new_t) = std::make_pair(new_t, t - q * new_t);
    std::tie(r, new_r) = std::make_pair(new_r, r - q * new_r);
  }
  return static_cast<int64_t>(t < 0 ? t + m : t);
}

// Verifies sliding_window_counter where its products pass 2^53 and land one unit off a
// multiple, where doubles cannot see the difference and a floor or ceiling would come out wrong:
// limit 2^32 - 1 over a window coprime with it (10^12 + 39 us), with `previous` full and the
// elapsed time chosen by modular inverse so that previous * (window - elapsed) is k or -k modulo
// the window (remaining), and costs chosen so that room * window is k or -k modulo the limit
// (retry_after of a rejection). Each decision is compared with the core.
TEST(RedisCoreEqualityTest, WideProductsOnExactBoundariesMatchTheCore) {
  auto store = MakeStore();
  const int64_t L = Limit::kMaxSlidingCounterLimit;
  const Micros w = 1'000'000'000'039;
  ASSERT_EQ(int_math::Gcd(L, w), 1);
  const Limit limit =
      *Limit::Create({.algorithm = Algorithm::kSlidingWindowCounter, .limit = L, .window = w});
  const Micros window_start = (kStart / w + 1) * w;
  const int64_t inv_l = InverseMod(L, w);      // L * inv_l = 1 (mod w)
  const int64_t inv_w = InverseMod(w % L, L);  // w * inv_w = 1 (mod L)
  int compared = 0, rejected = 0;
  for (int k = 1; k <= 120; ++k) {
    const int64_t small = (k + 1) / 2;
    const bool minus = k % 2 == 0;
    // x = window - elapsed with L * x = +-small (mod w).
    const int64_t x =
        static_cast<int64_t>((static_cast<__int128>(minus ? w - small : small) * inv_l) % w);
    if (x == 0) continue;
    const Micros at = window_start + w + (w - x);
    const std::string key = "eq:wide:" + std::to_string(k);
    ManualClock clock(window_start);
    MemoryStore memory(clock);
    Decision last;
    auto both = [&](Micros now, int64_t cost) {
      const std::vector<ChargeItem> items = {{key, &limit, cost}};
      std::vector<Decision> from_redis;
      ASSERT_TRUE(RedisCharge(*store, items, from_redis, now).ok());
      clock.Set(now);
      std::vector<Decision> from_core(1);
      memory.ChargeNow(items, from_core);
      ASSERT_TRUE(Same(from_redis[0], from_core[0]))
          << "k " << k << " cost " << cost << "\n redis " << Describe(from_redis[0]) << "\n core  "
          << Describe(from_core[0]);
      ++compared;
      rejected += !from_core[0].allowed;
      last = from_core[0];
    };
    ASSERT_NO_FATAL_FAILURE(both(window_start + k, L));  // full: `previous` in the next window
    ASSERT_NO_FATAL_FAILURE(both(at, 0));                // remaining: ceil(L * x / w)
    // room = L - cost with room * w = +-small (mod L), rejected when L * x > room * w.
    const int64_t room =
        static_cast<int64_t>((static_cast<__int128>(minus ? L - small : small) * inv_w) % L);
    if (static_cast<__int128>(L) * x > static_cast<__int128>(room) * w) {
      ASSERT_NO_FATAL_FAILURE(both(at, L - room));  // retry_after: floor(room * w / L)
    }
    if (last.remaining > 0) {
      ASSERT_NO_FATAL_FAILURE(both(at, last.remaining));
    }
    ASSERT_NO_FATAL_FAILURE(both(at, 1));
  }
  EXPECT_GT(compared, 400);
  EXPECT_GT(rejected, 100);
}

// Verifies the real path: the script reads Redis TIME (reported back), keys expire as they
// become fresh, and the core at those same times agrees on every decision. Windows are short so
// that they roll over (and keys expire) during the test.
TEST(RedisCoreEqualityTest, RedisTimeSequencesMatchTheCore) {
  auto store = MakeStore();
  std::mt19937_64 rng(99);
  for (Algorithm a : kAllAlgorithms) {
    const Limit limit = *Limit::Create({.algorithm = a,
                                        .limit = 5,
                                        .window = 20 * kMicrosPerMilli,
                                        .burst = UsesBurst(a) ? 8 : 0});
    SCOPED_TRACE(DescribeLimit(limit));
    ManualClock clock(0);
    MemoryStore memory(clock);
    const std::string key = "eq:time:" + std::to_string(static_cast<int>(a));
    Micros last = 0;
    for (int step = 0; step < 300; ++step) {
      if (std::uniform_int_distribution<int>(0, 9)(rng) == 0) {
        std::this_thread::sleep_for(
            std::chrono::microseconds(std::uniform_int_distribution<int>(0, 30000)(rng)));
      }
      const std::vector<ChargeItem> items = {
          {key, &limit, std::uniform_int_distribution<int64_t>(0, 3)(rng)}};
      std::vector<Decision> from_redis;
      auto at = RedisCharge(*store, items, from_redis, std::nullopt);
      ASSERT_TRUE(at.ok()) << at.status();
      ASSERT_GE(*at, last);  // this test assumes the host clock does not step back
      last = *at;
      clock.Set(*at);
      std::vector<Decision> from_core(1);
      memory.ChargeNow(items, from_core);
      ASSERT_TRUE(Same(from_redis[0], from_core[0]))
          << "step " << step << " at " << *at << "\n redis " << Describe(from_redis[0])
          << "\n core  " << Describe(from_core[0]);
    }
  }
}

// Verifies coalescing against the core: bursts of checks in flight at once on one connection go
// to Redis in a few calls that each decide many, in the order sent (the lane keeps one call in
// flight per connection, and one connection keeps calls in order). Replayed through the core in
// that order at the times Redis reports, every decision is the same, and most calls held more
// than one check.
TEST(RedisCoreEqualityTest, CoalescedBurstsMatchTheCore) {
  auto created = RedisStore::Create({.url = Server().url(),
                                     .timeout = std::chrono::seconds(5),
                                     .pool = 1,
                                     .over_limit_cache_keys = 0,
                                     .coalesce = true});
  ASSERT_TRUE(created.ok());
  RedisStore& store = **created;
  std::mt19937_64 rng(7);
  for (Algorithm a : kAllAlgorithms) {
    const Limit limit = *Limit::Create({.algorithm = a,
                                        .limit = 40,
                                        .window = 50 * kMicrosPerMilli,
                                        .burst = UsesBurst(a) ? 60 : 0});
    SCOPED_TRACE(DescribeLimit(limit));
    const std::string key = "eq:coalesced:" + std::to_string(static_cast<int>(a));
    constexpr int kBurst = 64;
    constexpr int kRounds = 8;
    std::vector<std::vector<ChargeItem>> items(kBurst * kRounds);
    std::vector<std::vector<Decision>> decisions(items.size());
    std::vector<Micros> at(items.size(), -1);
    std::atomic<int> answered{0};
    for (int round = 0; round < kRounds; ++round) {
      for (int i = round * kBurst; i < (round + 1) * kBurst; ++i) {
        items[i] = {{key, &limit, std::uniform_int_distribution<int64_t>(0, 3)(rng)}};
        decisions[i].assign(1, Decision{});
        store.ChargeAt(items[i], decisions[i], std::nullopt, [&, i](absl::StatusOr<Micros> t) {
          at[i] = t.ok() ? *t : -1;
          answered.fetch_add(1);
        });
      }
      std::this_thread::sleep_for(
          std::chrono::microseconds(std::uniform_int_distribution<int>(0, 40000)(rng)));
    }
    for (int spin = 0; answered.load() < static_cast<int>(items.size()) && spin < 3000; ++spin) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_EQ(answered.load(), static_cast<int>(items.size())) << "hang";
    ManualClock clock(0);
    MemoryStore memory(clock);
    std::set<Micros> calls;
    for (size_t i = 0; i < items.size(); ++i) {
      ASSERT_GE(at[i], 0) << "check " << i << " failed";
      if (i > 0) {
        ASSERT_GE(at[i], at[i - 1]) << "checks decided out of order";
      }
      calls.insert(at[i]);
      clock.Set(at[i]);
      std::vector<Decision> from_core(1);
      memory.ChargeNow(items[i], from_core);
      ASSERT_TRUE(Same(decisions[i][0], from_core[0]))
          << "check " << i << " at " << at[i] << "\n redis " << Describe(decisions[i][0])
          << "\n core  " << Describe(from_core[0]);
    }
    EXPECT_LT(calls.size(), items.size() / 2) << "checks were not coalesced";
  }
}

}  // namespace
}  // namespace sluice
