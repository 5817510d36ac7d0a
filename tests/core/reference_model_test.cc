// Randomized comparison of each algorithm against a deliberately simple reference model over
// long random request sequences. The models keep everything (every admitted request, every
// window's total) and recompute from scratch each time: slow, obviously right.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <vector>

#include "core/algorithm_state.h"
#include "core/int_math.h"
#include "tests/core/owned_state.h"

namespace sluice {
namespace {

using testing::MakeLimit;
using testing::OwnedState;

constexpr Micros kSecond = kMicrosPerSecond;
constexpr Micros kStart = int64_t{1764000000} * kSecond + 123457;

struct Admitted {
  Micros at;
  int64_t cost;
};

// Every model answers "would `cost` be admitted at `now`, given everything admitted so far?".
class Model {
 public:
  explicit Model(const Limit& limit) : limit_(limit) {}
  virtual ~Model() = default;
  virtual bool Admits(Micros now, int64_t cost) const = 0;
  void Record(Micros now, int64_t cost) { log_.push_back({now, cost}); }

 protected:
  const Limit& limit_;
  std::vector<Admitted> log_;
};

class FixedWindowModel : public Model {
 public:
  using Model::Model;
  bool Admits(Micros now, int64_t cost) const override {
    const Micros w = limit_.window();
    int64_t sum = 0;
    for (const auto& a : log_) sum += (a.at / w == now / w) ? a.cost : 0;
    return sum + cost <= limit_.limit();
  }
};

class SlidingLogModel : public Model {
 public:
  using Model::Model;
  bool Admits(Micros now, int64_t cost) const override {
    int64_t sum = 0;
    for (const auto& a : log_) sum += (a.at > now - limit_.window() && a.at <= now) ? a.cost : 0;
    return sum + cost <= limit_.limit();
  }
};

class SlidingCounterModel : public Model {
 public:
  using Model::Model;
  bool Admits(Micros now, int64_t cost) const override {
    const Micros w = limit_.window();
    std::map<int64_t, int64_t> per_window;
    for (const auto& a : log_) per_window[a.at / w] += a.cost;
    const int64_t idx = now / w;
    // prev * (1 - elapsed / w) + cur + cost <= limit, cross-multiplied by w.
    const __int128 prev = per_window.count(idx - 1) ? per_window.at(idx - 1) : 0;
    const __int128 cur = per_window.count(idx) ? per_window.at(idx) : 0;
    return prev * (w - (now - idx * w)) + (cur + cost) * w <=
           static_cast<__int128>(limit_.limit()) * w;
  }
};

// A token bucket replayed from the start with tokens as an exact fraction (numerator over
// `window`): tokens(t) = min(burst, tokens(t') + (t - t') * limit / window).
class TokenBucketModel : public Model {
 public:
  using Model::Model;
  bool Admits(Micros now, int64_t cost) const override {
    return TokensTimesWindow(now) >= static_cast<__int128>(cost) * limit_.window();
  }
  // Tokens in the bucket times the window, right before a request at `now`.
  __int128 TokensTimesWindow(Micros now) const {
    const __int128 w = limit_.window();
    const __int128 full = static_cast<__int128>(limit_.burst()) * w;
    __int128 tokens = full;
    Micros t = log_.empty() ? now : log_.front().at;
    for (const auto& a : log_) {
      tokens = std::min(full, tokens + static_cast<__int128>(a.at - t) * limit_.limit());
      tokens -= static_cast<__int128>(a.cost) * w;
      t = a.at;
    }
    return std::min(full, tokens + static_cast<__int128>(now - t) * limit_.limit());
  }
};

std::unique_ptr<Model> MakeModel(const Limit& limit) {
  switch (limit.algorithm()) {
    case Algorithm::kFixedWindow:
      return std::make_unique<FixedWindowModel>(limit);
    case Algorithm::kSlidingWindowCounter:
      return std::make_unique<SlidingCounterModel>(limit);
    case Algorithm::kSlidingWindowLog:
      return std::make_unique<SlidingLogModel>(limit);
    default:
      return std::make_unique<TokenBucketModel>(limit);
  }
}

struct Params {
  int64_t limit;
  Micros window;
  int64_t burst;
};

// Verifies that each algorithm admits exactly what its reference model admits, request by
// request, over random sequences (bursts, idle gaps, varying costs), and that every retry_after
// is exact against the model.
TEST(ReferenceModelTest, AlgorithmsMatchTheirModels) {
  const Params params[] = {
      {5, kSecond, 0}, {7, 3 * kSecond, 12}, {10, 1000, 0}, {3, 60 * kSecond, 3}, {50, kSecond, 80},
  };
  for (Algorithm a : kAllAlgorithms) {
    for (const Params& p : params) {
      SCOPED_TRACE(std::string(AlgorithmName(a)) + " limit=" + std::to_string(p.limit) +
                   " window=" + std::to_string(p.window) + " burst=" + std::to_string(p.burst));
      const Limit limit = MakeLimit(a, p.limit, p.window, UsesBurst(a) ? p.burst : 0);
      std::mt19937_64 rng(42 + static_cast<int>(a) * 1000 + p.limit);
      OwnedState state(a);
      auto model = MakeModel(limit);
      Micros now = kStart;
      const Micros mean_gap = p.window / p.limit;
      for (int i = 0; i < 1500; ++i) {
        // Mostly short gaps (pressure), sometimes none (same instant), sometimes long idles.
        const int kind = static_cast<int>(rng() % 10);
        if (kind < 6)
          now += static_cast<Micros>(rng() % (mean_gap + 1));
        else if (kind < 9)
          now += 0;
        else
          now += static_cast<Micros>(rng() % (3 * p.window));
        const int64_t cost = static_cast<int64_t>(rng() % 4 == 0 ? rng() % 3 : 1);  // 0, 1, 2
        const bool expected = model->Admits(now, cost);
        Decision d = state.Admit(limit, now, cost);
        ASSERT_EQ(d.allowed, expected) << "request " << i << " at +" << (now - kStart);
        if (d.allowed) {
          if (cost > 0) model->Record(now, cost);
        } else {
          ASSERT_GT(d.retry_after, 0);
          EXPECT_FALSE(model->Admits(now + d.retry_after - 1, cost)) << "request " << i;
          EXPECT_TRUE(model->Admits(now + d.retry_after, cost)) << "request " << i;
        }
      }
    }
  }
}

// Verifies that token_bucket, gcra and leaky_bucket admit the same requests (the contract says
// gcra has token_bucket's admissions), and that leaky_bucket's delay is the time for the queue
// ahead of a request to drain in the model.
TEST(ReferenceModelTest, BucketsAgreeAndLeakyDelayIsTheQueueAhead) {
  for (const Params& p :
       {Params{5, kSecond, 0}, Params{7, 3 * kSecond, 12}, Params{1000, 60 * kSecond, 50}}) {
    const Limit tb = MakeLimit(Algorithm::kTokenBucket, p.limit, p.window, p.burst);
    const Limit gc = MakeLimit(Algorithm::kGcra, p.limit, p.window, p.burst);
    const Limit lb = MakeLimit(Algorithm::kLeakyBucket, p.limit, p.window, p.burst);
    OwnedState s_tb(Algorithm::kTokenBucket), s_gc(Algorithm::kGcra), s_lb(Algorithm::kLeakyBucket);
    TokenBucketModel model(tb);
    std::mt19937_64 rng(7);
    Micros now = kStart;
    for (int i = 0; i < 3000; ++i) {
      now += static_cast<Micros>(rng() % (2 * p.window / p.limit + 1));
      const int64_t cost = 1 + static_cast<int64_t>(rng() % 2);
      const __int128 queued = static_cast<__int128>(tb.burst()) * p.window -
                              model.TokensTimesWindow(now);  // in token*window units
      Decision a = s_tb.Admit(tb, now, cost);
      Decision b = s_gc.Admit(gc, now, cost);
      Decision c = s_lb.Admit(lb, now, cost);
      ASSERT_EQ(a.allowed, b.allowed) << i;
      ASSERT_EQ(a.allowed, c.allowed) << i;
      EXPECT_EQ(a.remaining, b.remaining) << i;
      EXPECT_EQ(a.retry_after, b.retry_after) << i;
      EXPECT_EQ(a.reset_after, b.reset_after) << i;
      if (c.allowed) {
        // queued / limit microseconds, rounded up.
        EXPECT_EQ(c.delay, static_cast<Micros>(int_math::CeilDiv(queued, p.limit))) << i;
        model.Record(now, cost);
      }
    }
  }
}

// Verifies that whatever the clock does (random jumps backwards included), no algorithm ever
// admits more than its limit allows over the span of times it was shown.
TEST(ReferenceModelTest, NeverAdmitsMoreThanTheLimitWhenTheClockJumps) {
  for (Algorithm a : kAllAlgorithms) {
    SCOPED_TRACE(AlgorithmName(a));
    const Limit limit = MakeLimit(a, 10, kSecond);
    OwnedState state(a);
    std::mt19937_64 rng(99);
    Micros now = kStart;
    Micros lo = now, hi = now;
    int64_t admitted = 0;
    for (int i = 0; i < 20000; ++i) {
      const int jump = static_cast<int>(rng() % 10);
      if (jump == 0)
        now -= static_cast<Micros>(rng() % (3 * kSecond));  // backwards
      else
        now += static_cast<Micros>(rng() % (kSecond / 50));
      lo = std::min(lo, now);
      hi = std::max(hi, now);
      if (state.Admit(limit, now, 1).allowed) ++admitted;
    }
    // Over [lo, hi] no algorithm may admit more than the limit per window plus one full
    // window's (or bucket's) worth.
    const int64_t windows = (hi - lo) / kSecond + 2;
    EXPECT_LE(admitted, windows * limit.limit() + limit.max_cost());
    EXPECT_GT(admitted, 0);
  }
}

}  // namespace
}  // namespace sluice
