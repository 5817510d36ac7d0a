// RedisStore against real redis-servers this test starts on free loopback ports: the store
// contract suite, then what is particular to Redis (keys and expiry, scripts, AUTH/SELECT,
// pipelining on a fixed pool, and Redis dying, freezing, coming back, or down at start).
#include "store/redis/redis_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "tests/store/redis_server.h"
#include "tests/store/store_contract.h"

namespace sluice {
namespace {

using std::chrono::milliseconds;
using testing::ChargeSync;
using testing::ContractLimit;
using testing::RedisServer;
using testing::StoreContractTest;
using SteadyClock = std::chrono::steady_clock;

RedisServer& SharedServer() {
  static RedisServer server;
  return server;
}

// How the store runs its scripts (`store.scripts`, `store.coalesce`).
struct ScriptMode {
  bool functions = true;
  bool coalesce = true;
};

std::unique_ptr<RedisStore> Connect(const std::string& url,
                                    milliseconds timeout = milliseconds(2000),
                                    const std::string& prefix = "sluice:", ScriptMode mode = {}) {
  auto store = RedisStore::Create({.url = url,
                                   .timeout = timeout,
                                   .key_prefix = prefix,
                                   .connect_timeout = milliseconds(500),
                                   .backoff_max = milliseconds(200),
                                   .functions = mode.functions,
                                   .coalesce = mode.coalesce});
  EXPECT_TRUE(store.ok()) << store.status();
  return std::move(*store);
}

testing::StoreFactory Factory(std::string name, ScriptMode mode) {
  return {std::move(name), [mode]() -> std::unique_ptr<Store> {
            return Connect(SharedServer().url(), milliseconds(2000), "sluice:", mode);
          }};
}

// Every exact-mode contract test, whatever way the scripts reach Redis.
INSTANTIATE_TEST_SUITE_P(Redis, StoreContractTest,
                         ::testing::Values(Factory("functions_coalesced", {true, true}),
                                           Factory("functions", {true, false}),
                                           Factory("evalsha_coalesced", {false, true}),
                                           Factory("evalsha", {false, false})),
                         [](const auto& info) { return info.param.name; });

// calls of `command` (e.g. "fcall") Redis has run, from INFO commandstats.
int64_t CommandCalls(RedisServer& server, const std::string& command) {
  auto info = server.Command({"INFO", "commandstats"});
  if (!info) return -1;
  const std::string text(info->str, info->len);
  const std::string tag = "cmdstat_" + command + ":calls=";
  const size_t at = text.find(tag);
  if (at == std::string::npos) return 0;
  return std::stoll(text.substr(at + tag.size()));
}

// Charges one item and reports the status and how long it took.
struct Timed {
  absl::Status status;
  Decision decision;
  milliseconds took;
};
Timed ChargeTimed(Store& store, const std::string& key, const Limit& limit, int64_t cost = 1) {
  const auto start = SteadyClock::now();
  std::vector<Decision> d(1);
  std::promise<absl::Status> done;
  auto result = done.get_future();
  ChargeItem item{key, &limit, cost};
  store.Charge({&item, 1}, d, [&done](absl::Status s) { done.set_value(std::move(s)); });
  // A hang detector, not a timing assertion.
  if (result.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    ADD_FAILURE() << "Charge did not answer within 10 s";
    std::abort();
  }
  return {result.get(), d[0], std::chrono::duration_cast<milliseconds>(SteadyClock::now() - start)};
}

// Polls until a charge succeeds; returns how long it took, or fails after `limit`.
milliseconds UntilAvailable(Store& store, const Limit& limit, milliseconds max) {
  const auto start = SteadyClock::now();
  while (SteadyClock::now() - start < max) {
    if (ChargeTimed(store, "probe", limit, 0).status.ok()) {
      return std::chrono::duration_cast<milliseconds>(SteadyClock::now() - start);
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  ADD_FAILURE() << "the store did not come back within " << max.count() << " ms";
  return max;
}

// Verifies URL parsing: host, port, password, user, database, and clear errors.
TEST(RedisUrlTest, ParsesTheContractForm) {
  auto e = redis::ParseUrl("redis://:s3cret@10.0.0.5:6380/2");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->host, "10.0.0.5");
  EXPECT_EQ(e->port, 6380);
  EXPECT_EQ(e->password, "s3cret");
  EXPECT_EQ(e->db, 2);
  std::string user;
  e = redis::ParseUrl("redis://app:pw@[::1]:7000", &user);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->host, "::1");
  EXPECT_EQ(e->port, 7000);
  EXPECT_EQ(user, "app");
  e = redis::ParseUrl("redis://cache");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->port, 6379);
  EXPECT_EQ(e->db, 0);
  for (const char* bad : {"http://x:1", "redis://", "redis://h:0", "redis://h:99999",
                          "redis://h:1/x", "redis://nopassword@h:1"}) {
    EXPECT_FALSE(redis::ParseUrl(bad).ok()) << bad;
  }
  EXPECT_FALSE(RedisStore::Create({.url = "redis//oops"}).ok());
}

// Verifies the key layout: prefix, the counter key as hash tag, the log's sorted set; and that
// every key expires when its state is fresh again (PEXPIREAT on Redis's clock).
TEST(RedisStoreTest, KeysArePrefixedAndExpireWhenFresh) {
  auto store = Connect(SharedServer().url(), milliseconds(2000), "it-prefix:");
  const Limit fixed = *Limit::Create(
      {.algorithm = Algorithm::kFixedWindow, .limit = 3, .window = 10 * kMicrosPerSecond});
  const Limit log = *Limit::Create(
      {.algorithm = Algorithm::kSlidingWindowLog, .limit = 3, .window = 4 * kMicrosPerSecond});
  const Limit bucket = *Limit::Create(
      {.algorithm = Algorithm::kTokenBucket, .limit = 10, .window = 10 * kMicrosPerSecond});
  const Timed f = ChargeTimed(*store, "k-fixed", fixed);
  const Timed l = ChargeTimed(*store, "k-log", log);
  const Timed b = ChargeTimed(*store, "k-bucket", bucket);
  ASSERT_TRUE(f.status.ok() && l.status.ok() && b.status.ok());
  EXPECT_EQ(store->StateKey("k-fixed"), "it-prefix:{k-fixed}");
  auto pttl = [&](const std::string& key) {
    auto r = SharedServer().Command({"PTTL", key});
    return r ? r->integer : -100;
  };
  auto near = [](long long ttl_ms, Micros reset_after) {
    return ttl_ms > 0 && ttl_ms <= reset_after / 1000 + 2 && ttl_ms >= reset_after / 1000 - 500;
  };
  EXPECT_TRUE(near(pttl("it-prefix:{k-fixed}"), f.decision.reset_after))
      << pttl("it-prefix:{k-fixed}") << " vs " << f.decision.reset_after;
  EXPECT_TRUE(near(pttl("it-prefix:{k-log}"), l.decision.reset_after));
  EXPECT_TRUE(near(pttl("it-prefix:{k-log}:log"), l.decision.reset_after));
  EXPECT_TRUE(near(pttl("it-prefix:{k-bucket}"), b.decision.reset_after));
  EXPECT_EQ(b.decision.reset_after, kMicrosPerSecond);  // one token refills in 1 s
  auto type = SharedServer().Command({"TYPE", "it-prefix:{k-log}:log"});
  EXPECT_EQ(std::string(type->str), "zset");
  // Reads (cost 0) never create keys.
  ASSERT_TRUE(ChargeTimed(*store, "k-read", fixed, 0).status.ok());
  EXPECT_EQ(SharedServer().Command({"EXISTS", "it-prefix:{k-read}"})->integer, 0);
}

// Verifies that limits the scripts cannot compute exactly are refused with a clear error, and
// that round ones are accepted.
TEST(RedisStoreTest, RefusesBucketsTooFineForLuaNumbers) {
  const Limit fine = *Limit::Create({.algorithm = Algorithm::kTokenBucket,
                                     .limit = 1'000'003,
                                     .window = 86400 * kMicrosPerSecond,
                                     .burst = 1'000'003});
  const absl::Status s = RedisStore::Supports(fine);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("token_bucket"), std::string_view::npos) << s;
  auto store = Connect(SharedServer().url());
  EXPECT_EQ(ChargeTimed(*store, "fine", fine).status.code(), absl::StatusCode::kInvalidArgument);
  for (Algorithm a : kAllAlgorithms) {
    EXPECT_TRUE(RedisStore::Supports(
                    *Limit::Create(
                        {.algorithm = a, .limit = 1'000'000, .window = 86400 * kMicrosPerSecond}))
                    .ok());
  }
}

// Verifies that a SCRIPT FLUSH (or a Redis that lost its script cache) costs nothing but a
// reload: the next charge answers correctly.
TEST(RedisStoreTest, ReloadsTheScriptAfterNoscript) {
  auto store = Connect(SharedServer().url());
  const Limit limit = ContractLimit(Algorithm::kGcra, 2);
  ASSERT_TRUE(ChargeTimed(*store, "noscript", limit).status.ok());
  ASSERT_TRUE(SharedServer().Command({"SCRIPT", "FLUSH"}));
  const Timed t = ChargeTimed(*store, "noscript", limit);
  ASSERT_TRUE(t.status.ok()) << t.status;
  EXPECT_TRUE(t.decision.allowed);
  EXPECT_EQ(t.decision.remaining, 0);
  EXPECT_FALSE(ChargeTimed(*store, "noscript", limit).decision.allowed);
}

// Verifies that a FUNCTION FLUSH (or a restarted Redis, which keeps no functions without
// persistence) costs nothing but a reload: the next charge loads the library and answers.
TEST(RedisStoreTest, ReloadsTheFunctionsAfterFunctionFlush) {
  RedisServer server;
  auto store = Connect(server.url());
  const Limit limit = ContractLimit(Algorithm::kTokenBucket, 2);
  ASSERT_TRUE(ChargeTimed(*store, "flushed", limit).status.ok());
  EXPECT_GE(CommandCalls(server, "fcall"), 1);
  ASSERT_TRUE(server.Command({"FUNCTION", "FLUSH"}));
  const Timed t = ChargeTimed(*store, "flushed", limit);
  ASSERT_TRUE(t.status.ok()) << t.status;
  EXPECT_TRUE(t.decision.allowed);
  EXPECT_EQ(t.decision.remaining, 0);
  EXPECT_FALSE(ChargeTimed(*store, "flushed", limit).decision.allowed);
  EXPECT_EQ(CommandCalls(server, "evalsha"), 0);
}

// Verifies the fall back to EVALSHA on a Redis without Functions (Redis 6): here a Redis 7 whose
// FCALL is renamed away, which answers "unknown command" as Redis 6 does. Every charge is
// answered, the first included, and the store stays on EVALSHA.
TEST(RedisStoreTest, FallsBackToEvalshaWithoutFunctions) {
  RedisServer server({"--rename-command", "FCALL", ""});
  auto store = Connect(server.url());
  const Limit limit = ContractLimit(Algorithm::kFixedWindow, 3);
  for (int i = 0; i < 3; ++i) {
    const Timed t = ChargeTimed(*store, "old-redis", limit);
    ASSERT_TRUE(t.status.ok()) << t.status;
    EXPECT_TRUE(t.decision.allowed);
  }
  EXPECT_FALSE(ChargeTimed(*store, "old-redis", limit).decision.allowed);
  EXPECT_EQ(CommandCalls(server, "evalsha"), 4);
}

// Verifies coalescing: many checks in flight on one key reach Redis in fewer script calls than
// checks, and each is decided exactly as if alone (exactly the limit admitted, in order: the
// remaining counts seen are each value once).
TEST(RedisStoreTest, CoalescedChargesAreExactAndFewerThanChecks) {
  RedisServer server;
  auto created =
      RedisStore::Create({.url = server.url(), .timeout = milliseconds(5000), .pool = 2});
  ASSERT_TRUE(created.ok());
  RedisStore& store = **created;
  constexpr int kLimit = 3000;
  constexpr int kChecks = 4000;
  const Limit limit = ContractLimit(Algorithm::kFixedWindow, kLimit);
  std::vector<Decision> decisions(kChecks);
  std::vector<ChargeItem> items(kChecks, ChargeItem{"hot", &limit, 1});
  std::atomic<int> answered{0};
  std::atomic<int> failed{0};
  for (int i = 0; i < kChecks; ++i) {
    store.Charge({&items[i], 1}, {&decisions[i], 1}, [&](absl::Status s) {
      if (!s.ok()) failed.fetch_add(1);
      answered.fetch_add(1);
    });
  }
  const auto start = SteadyClock::now();
  while (answered.load() < kChecks && SteadyClock::now() - start < std::chrono::seconds(30)) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_EQ(answered.load(), kChecks) << "hang";
  EXPECT_EQ(failed.load(), 0);
  std::vector<int> seen(kLimit, 0);
  int admitted = 0;
  for (const Decision& d : decisions) {
    if (!d.allowed) continue;
    ++admitted;
    ASSERT_GE(d.remaining, 0);
    ASSERT_LT(d.remaining, kLimit);
    ++seen[d.remaining];
  }
  EXPECT_EQ(admitted, kLimit);
  for (int r = 0; r < kLimit; ++r) EXPECT_EQ(seen[r], 1) << "remaining " << r;
  const int64_t calls = CommandCalls(server, "fcall");
  EXPECT_GT(calls, 0);
  EXPECT_LT(calls, kChecks);
}

// Verifies AUTH and SELECT from the URL, and that a wrong password is an error, not a hang.
TEST(RedisStoreTest, AuthenticatesAndSelectsTheDatabase) {
  RedisServer server({"--requirepass", "s3cret"});
  auto store = Connect("redis://:s3cret@127.0.0.1:" + std::to_string(server.port()) + "/3");
  const Limit limit = ContractLimit(Algorithm::kFixedWindow, 5);
  const Timed t = ChargeTimed(*store, "authed", limit);
  ASSERT_TRUE(t.status.ok()) << t.status;
  EXPECT_EQ(server.Command({"EXISTS", "sluice:{authed}"}, "s3cret", 3)->integer, 1);
  EXPECT_EQ(server.Command({"EXISTS", "sluice:{authed}"}, "s3cret", 0)->integer, 0);

  auto wrong = Connect("redis://:nope@127.0.0.1:" + std::to_string(server.port()));
  EXPECT_FALSE(ChargeTimed(*wrong, "x", limit).status.ok());
}

// Verifies pipelining on a fixed pool: thousands of concurrent charges complete, all exact, over
// exactly `pool` connections (no connection per request).
TEST(RedisStoreTest, ConcurrentChargesShareThePool) {
  RedisServer server;
  auto created =
      RedisStore::Create({.url = server.url(), .timeout = milliseconds(5000), .pool = 3});
  ASSERT_TRUE(created.ok());
  RedisStore& store = **created;
  const Limit limit = ContractLimit(Algorithm::kSlidingWindowLog, 1500);
  constexpr int kRequests = 4000;
  std::vector<ChargeItem> items(kRequests, ChargeItem{"pipelined", &limit, 1});
  std::vector<Decision> decisions(kRequests);
  std::atomic<int> answered{0}, admitted{0}, failed{0};
  std::promise<void> all;
  for (int i = 0; i < kRequests; ++i) {
    store.Charge({&items[i], 1}, {&decisions[i], 1}, [&, i](absl::Status s) {
      if (!s.ok()) ++failed;
      if (s.ok() && decisions[i].allowed) ++admitted;
      if (++answered == kRequests) all.set_value();
    });
  }
  ASSERT_EQ(all.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(admitted.load(), 1500);
  auto clients = server.Command({"CLIENT", "LIST"});
  const std::string list(clients->str, clients->len);
  EXPECT_EQ(std::count(list.begin(), list.end(), '\n'), 3 + 1) << list;  // + this one
}

// Verifies a Redis killed under the store: requests in flight fail within about the timeout,
// later ones fail fast (circuit open) instead of each waiting, nothing hangs; once Redis is back
// the store uses it again within a few seconds, with no restart.
TEST(RedisStoreTest, KilledRedisFailsFastAndIsUsedAgainWhenBack) {
  RedisServer server;
  auto store = Connect(server.url(), milliseconds(100));
  const Limit limit = ContractLimit(Algorithm::kTokenBucket, 100);
  ASSERT_TRUE(ChargeTimed(*store, "k", limit).status.ok());
  server.Stop();
  // Failing fast is said by the status, not by a clock: UNAVAILABLE is the connection or the
  // open circuit answering at once; a request left to wait for its deadline would end
  // DEADLINE_EXCEEDED. A hang is ChargeTimed's 10 s abort.
  int fast = 0;
  for (int i = 0; i < 20; ++i) {
    const Timed t = ChargeTimed(*store, "k", limit);
    EXPECT_FALSE(t.status.ok());
    fast += t.status.code() == absl::StatusCode::kUnavailable;
  }
  EXPECT_GE(fast, 15);  // after the first, the circuit answers at once
  ASSERT_TRUE(server.Start());
  UntilAvailable(*store, limit, milliseconds(5000));
  // The state survived nothing (no persistence): a fresh bucket, enforced again.
  EXPECT_TRUE(ChargeTimed(*store, "k", limit).decision.allowed);
}

// Verifies a Redis that stops answering with its connections open (frozen): requests fail with
// a timeout, not a hang, the circuit then fails the rest fast, and thawing brings it back.
TEST(RedisStoreTest, FrozenRedisTimesOutAndRecovers) {
  RedisServer server;
  auto store = Connect(server.url(), milliseconds(100));
  const Limit limit = ContractLimit(Algorithm::kFixedWindow, 100);
  ASSERT_TRUE(ChargeTimed(*store, "k", limit).status.ok());
  server.Freeze();
  const Timed first = ChargeTimed(*store, "k", limit);
  EXPECT_EQ(first.status.code(), absl::StatusCode::kDeadlineExceeded) << first.status;
  EXPECT_GE(first.took, milliseconds(90));  // it waited for its deadline (noise only adds)
  const Timed second = ChargeTimed(*store, "k", limit);
  EXPECT_EQ(second.status.code(), absl::StatusCode::kUnavailable) << second.status;
  server.Thaw();
  UntilAvailable(*store, limit, milliseconds(5000));
  EXPECT_TRUE(ChargeTimed(*store, "k", limit).decision.allowed);
}

// Verifies a store created while Redis is down: checks fail fast (never hang), and the store
// connects by itself once Redis starts.
TEST(RedisStoreTest, RedisDownAtStartIsUsedOnceUp) {
  RedisServer server;
  server.Stop();
  auto store = Connect(server.url(), milliseconds(100));
  const Limit limit = ContractLimit(Algorithm::kSlidingWindowCounter, 10);
  for (int i = 0; i < 5; ++i) {
    const Timed t = ChargeTimed(*store, "k", limit);
    // Never left to wait for a deadline: no connection answers UNAVAILABLE at once.
    EXPECT_EQ(t.status.code(), absl::StatusCode::kUnavailable) << t.status;
  }
  ASSERT_TRUE(server.Start());
  UntilAvailable(*store, limit, milliseconds(5000));
  const Timed t = ChargeTimed(*store, "k", limit);
  ASSERT_TRUE(t.status.ok()) << t.status;
  EXPECT_EQ(t.decision.remaining, 9);
}

// Verifies that a reset deletes every Redis key of the counter (a sliding_window_log's sorted
// set as well as its state) and no other counter's.
TEST(RedisStoreTest, ResetDeletesEveryKeyOfTheCounter) {
  auto store = Connect(SharedServer().url(), milliseconds(2000), "reset-prefix:");
  const Limit log = ContractLimit(Algorithm::kSlidingWindowLog, 3);
  const Limit fixed = ContractLimit(Algorithm::kFixedWindow, 3);
  ASSERT_TRUE(ChargeTimed(*store, "r-log", log).status.ok());
  ASSERT_TRUE(ChargeTimed(*store, "r-fixed", fixed).status.ok());
  auto exists = [&](const std::string& key) {
    return SharedServer().Command({"EXISTS", key})->integer;
  };
  ASSERT_EQ(exists("reset-prefix:{r-log}"), 1);
  ASSERT_EQ(exists("reset-prefix:{r-log}:log"), 1);
  ASSERT_EQ(exists("reset-prefix:{r-fixed}"), 1);
  const absl::Status r = testing::ResetSync(*store, "r-log", log);
  ASSERT_TRUE(r.ok()) << r;
  EXPECT_EQ(exists("reset-prefix:{r-log}"), 0);
  EXPECT_EQ(exists("reset-prefix:{r-log}:log"), 0);
  EXPECT_EQ(exists("reset-prefix:{r-fixed}"), 1);
}

// Verifies that a reset against a Redis that cannot answer reports an error, never hangs
// (ResetSync aborts the test after 10 s): frozen, it times out (DEADLINE_EXCEEDED); killed, it
// fails (UNAVAILABLE); and once Redis is back, a reset succeeds again.
TEST(RedisStoreTest, ResetAgainstADeadRedisFailsAndNeverHangs) {
  RedisServer server;
  auto store = Connect(server.url(), milliseconds(100));
  const Limit limit = ContractLimit(Algorithm::kFixedWindow, 10);
  ASSERT_TRUE(ChargeTimed(*store, "k", limit).status.ok());
  server.Freeze();
  const absl::Status frozen = testing::ResetSync(*store, "k", limit);
  EXPECT_EQ(frozen.code(), absl::StatusCode::kDeadlineExceeded) << frozen;
  server.Thaw();
  server.Stop();
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(testing::ResetSync(*store, "k", limit).ok()) << "reset " << i;
  }
  ASSERT_TRUE(server.Start());
  UntilAvailable(*store, limit, milliseconds(5000));
  const absl::Status back = testing::ResetSync(*store, "k", limit);
  EXPECT_TRUE(back.ok()) << back;
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

// Verifies the over-limit cache: once Redis rejects a key, the same request is rejected without
// a round trip (Redis frozen: an answer can only come from the cache) until retry_after, other
// keys and smaller costs still go to Redis, and once retry_after has passed the request is
// admitted again — the cache never turns an allow into a reject.
TEST(RedisOverLimitCacheTest, RejectsLocallyUntilRetryAfterOnly) {
  testing::RedisServer server;
  auto created =
      RedisStore::Create({.url = server.url(), .timeout = std::chrono::milliseconds(200)});
  ASSERT_TRUE(created.ok()) << created.status();
  RedisStore& store = **created;
  // 4 tokens a second, burst 2: after two requests a cost of 2 waits 500 ms, a cost of 1 250 ms.
  const Limit limit = *Limit::Create(
      {.algorithm = Algorithm::kTokenBucket, .limit = 4, .window = kMicrosPerSecond, .burst = 2});
  auto charge = [&](const std::string& key, int64_t cost) {
    return testing::ChargeSync(store, {{key, &limit, cost}});
  };
  ASSERT_TRUE((*charge("hot", 2))[0].allowed);
  auto rejected = charge("hot", 2);
  ASSERT_TRUE(rejected.ok());
  ASSERT_FALSE((*rejected)[0].allowed);
  EXPECT_EQ(store.cached_rejections(), 0u);

  server.Freeze();
  for (int i = 0; i < 5; ++i) {
    auto d = charge("hot", 2);
    ASSERT_TRUE(d.ok()) << d.status();  // answered although Redis cannot answer
    EXPECT_FALSE((*d)[0].allowed);
    EXPECT_GT((*d)[0].retry_after, 0);
  }
  EXPECT_EQ(store.cached_rejections(), 5u);
  EXPECT_FALSE(charge("other", 1).ok());  // another key needs Redis
  EXPECT_FALSE(charge("hot", 1).ok());    // so does a smaller cost
  server.Thaw();

  // After retry_after the same request reaches Redis again and is admitted.
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  bool admitted = false;
  for (int i = 0; i < 50 && !admitted; ++i) {  // the frozen calls may still be draining
    auto d = charge("hot", 2);
    admitted = d.ok() && (*d)[0].allowed;
    if (!admitted) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(admitted);
}

// Verifies that a reset drops the key from the over-limit cache: a key the cache rejects (an
// hour-long window, so only the reset can free it) is admitted by the next request, which
// reaches Redis (the cache never admits). Other keys' entries stay.
TEST(RedisOverLimitCacheTest, ResetForgetsTheCachedRejection) {
  testing::RedisServer server;
  auto created =
      RedisStore::Create({.url = server.url(), .timeout = std::chrono::milliseconds(2000)});
  ASSERT_TRUE(created.ok()) << created.status();
  RedisStore& store = **created;
  const Limit limit = testing::ContractLimit(Algorithm::kFixedWindow, 2);
  auto charge = [&](const std::string& key) {
    return testing::ChargeSync(store, {{key, &limit, 1}});
  };
  for (const std::string key : {"hot", "also-hot"}) {
    for (int i = 0; i < 2; ++i) ASSERT_TRUE((*charge(key))[0].allowed);
    ASSERT_FALSE((*charge(key))[0].allowed);  // Redis rejects: cached
  }
  ASSERT_FALSE((*charge("hot"))[0].allowed);
  ASSERT_EQ(store.cached_rejections(), 1u) << "the cache answered";

  ASSERT_TRUE(testing::ResetSync(store, "hot", limit).ok());
  auto d = charge("hot");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE((*d)[0].allowed);
  EXPECT_EQ((*d)[0].remaining, 1);
  EXPECT_EQ(store.cached_rejections(), 1u);
  ASSERT_FALSE((*charge("also-hot"))[0].allowed);
  EXPECT_EQ(store.cached_rejections(), 2u) << "another key's entry stays";
}

}  // namespace
}  // namespace sluice
