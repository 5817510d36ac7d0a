// Differential fuzzing of the algorithms: one key's sequence of checks (limit, window, burst,
// then per step a time step, a cost and when to charge), decided by
//   - the core state machine (core/algorithm_state.h), for the charges it decides alone,
//   - the memory store (the core, all-or-nothing, at the time given), and
//   - a real redis-server, through Redis Functions (FCALL) and through EVALSHA,
// must give identical decisions, every field of every step. The redis-server is started once per
// process on a free loopback port (as the store tests start theirs) and stopped at exit.
//
// The input is read as a plain byte stream (Bytes below): the fuzzer's mutations of it move
// limits across orders of magnitude and times forwards and backwards.
#include <future>

#include "base/strings.h"
#include "core/algorithm_state.h"
#include "fuzz/fuzz_support.h"
#include "obs/log.h"
#include "store/memory/memory_store.h"
#include "store/redis/redis_store.h"
#include "tests/store/redis_server.h"
#include "tests/testing/decisions.h"

namespace {

using namespace sluice;

// Reads integers off the input; zeros once it runs out.
class Bytes {
 public:
  explicit Bytes(std::string_view s) : s_(s) {}
  bool empty() const { return s_.empty(); }
  uint64_t Take(size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n && !s_.empty(); ++i) {
      v = (v << 8) | static_cast<uint8_t>(s_.front());
      s_.remove_prefix(1);
    }
    return v;
  }
  // In [lo, hi], spread log-uniformly by the first byte (the magnitude), then the rest.
  int64_t Magnitude(int64_t lo, int64_t hi) {
    const int max_bits = 64 - __builtin_clzll(static_cast<uint64_t>(hi));
    const int bits = static_cast<int>(Take(1) % static_cast<uint64_t>(max_bits + 1));
    const uint64_t span = bits >= 63 ? ~uint64_t{0} >> 1 : (uint64_t{1} << bits);
    const int64_t v = static_cast<int64_t>(Take(8) % span);
    return std::clamp<int64_t>(v, lo, hi);
  }

 private:
  std::string_view s_;
};

struct Redis {
  // First: the stores log their connections, which would drown the fuzzer's output.
  bool quiet = (obs::InitLogging(spdlog::level::off, obs::LogFormat::kJson), true);
  testing::RedisServer server;
  std::unique_ptr<RedisStore> functions = Make(true);
  std::unique_ptr<RedisStore> eval = Make(false);

  std::unique_ptr<RedisStore> Make(bool use_functions) {
    // Each store its own keys: both charge the same key names.
    auto store = RedisStore::Create({.url = server.url(),
                                     .timeout = std::chrono::seconds(5),
                                     .key_prefix = use_functions ? "fcall:" : "evalsha:",
                                     .over_limit_cache_keys = 0,
                                     .functions = use_functions});
    if (!store.ok()) fuzz::Fail(store.status().ToString(), "");
    return std::move(*store);
  }
};

std::vector<Decision> RedisCharge(RedisStore& store, const ChargeItem& item, Micros now,
                                  std::string_view input) {
  std::vector<Decision> decisions(1);
  std::promise<absl::StatusOr<Micros>> done;
  store.ChargeAt({&item, 1}, decisions, now,
                 [&done](absl::StatusOr<Micros> at) { done.set_value(std::move(at)); });
  absl::StatusOr<Micros> at = done.get_future().get();
  if (!at.ok()) fuzz::Fail("redis: " + at.status().ToString(), input);
  return decisions;
}

using testing::DescribeDecision;
using testing::SameDecision;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Redis* redis = new Redis();  // never destroyed: its stores' threads run until exit
  static const int stop_at_exit = std::atexit([] { redis->server.Stop(); });
  (void)stop_at_exit;
  static uint64_t run = 0;
  const std::string_view input = fuzz::Text(data, size);
  Bytes in(input);

  LimitOptions o;
  o.algorithm = kAllAlgorithms[in.Take(1) % std::size(kAllAlgorithms)];
  const int64_t max_limit = o.algorithm == Algorithm::kSlidingWindowCounter
                                ? Limit::kMaxSlidingCounterLimit
                                : Limit::kMaxCount;
  o.limit = in.Magnitude(1, max_limit);
  o.window = in.Magnitude(1, Limit::kMaxWindow);
  if (UsesBurst(o.algorithm) && in.Take(1) % 2 == 0) o.burst = in.Magnitude(1, Limit::kMaxCount);
  auto created = Limit::Create(o);
  if (!created.ok() || !RedisStore::Supports(*created).ok()) return 0;
  const Limit limit = *created;

  constexpr Micros kStart = int64_t{1'764'000'000} * kMicrosPerSecond;
  constexpr Micros kLatest = int64_t{3'800'000'000} * kMicrosPerSecond;  // as real times stay
  ManualClock clock(kStart);
  MemoryStore memory(clock);
  AlgorithmState core{};
  const std::string key = Cat("fuzz:", ::getpid(), ":", ++run);
  Micros now = kStart;
  // The core alone decides a charge that is not into debt (a store's charge into debt is the
  // core's plus the store's own all-or-nothing): it is compared until the first such step.
  bool core_follows = true;
  for (int step = 0; step < 64 && !in.empty(); ++step) {
    // The time: forward by up to a window or two, or back by up to ten seconds.
    const uint64_t how = in.Take(1);
    const Micros amount = in.Magnitude(0, std::max<Micros>(1, 2 * limit.window()));
    if (how % 8 == 0) {
      now -= std::min<Micros>(amount, 10 * kMicrosPerSecond);
    } else if (how % 8 != 1) {
      now = std::min(kLatest, now + amount);
    }
    static constexpr ChargeWhen kWhens[] = {ChargeWhen::kRequestAllowed, ChargeWhen::kAllowedOrOver,
                                            ChargeWhen::kAlways};
    const ChargeWhen when = kWhens[how / 8 % 3];
    const uint64_t cost_kind = in.Take(1);
    int64_t cost = 1;
    switch (cost_kind % 5) {
      case 0:
        cost = 0;
        break;
      case 1:
        cost = limit.max_cost();
        break;
      case 2:
        cost = std::min<int64_t>(Limit::kMaxCount, limit.max_cost() + 1);
        break;
      case 3:
        cost = in.Magnitude(1, Limit::kMaxCount);
        break;
      default:
        cost = 1 + static_cast<int64_t>(cost_kind % 3);
        break;
    }
    if (when == ChargeWhen::kRequestAllowed) cost = std::min(cost, limit.max_cost() + 1);
    const ChargeItem item{key, &limit, cost, ItemRole::kEnforced, when};

    clock.Set(now);
    Decision from_memory;
    memory.ChargeNow({&item, 1}, {&from_memory, 1});
    const Decision from_functions = RedisCharge(*redis->functions, item, now, input)[0];
    const Decision from_eval = RedisCharge(*redis->eval, ChargeItem{item}, now, input)[0];
    const std::string where =
        Cat("step ", step, " now ", now, " cost ", cost, " when ", static_cast<int>(when),
            " limit ", AlgorithmName(limit.algorithm()), " ", limit.limit(), "/", limit.window(),
            " burst ", limit.burst());
    if (!SameDecision(from_memory, from_functions)) {
      fuzz::Fail(Cat(where, ": memory ", DescribeDecision(from_memory), " functions ",
                     DescribeDecision(from_functions)),
                 input);
    }
    if (!SameDecision(from_functions, from_eval)) {
      fuzz::Fail(Cat(where, ": functions ", DescribeDecision(from_functions), " evalsha ",
                     DescribeDecision(from_eval)),
                 input);
    }
    core_follows &= when == ChargeWhen::kRequestAllowed;
    if (core_follows) {
      const Decision from_core = Admit(core, limit, now, cost);
      if (!SameDecision(from_core, from_memory)) {
        fuzz::Fail(Cat(where, ": core ", DescribeDecision(from_core), " memory ",
                       DescribeDecision(from_memory)),
                   input);
      }
    }
  }
  Release(core, limit.algorithm());
  return 0;
}
