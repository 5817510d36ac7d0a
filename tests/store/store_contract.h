// The contract every Store must keep, as one parameterized suite. Each backend's test file
// instantiates it with a factory (INSTANTIATE_TEST_SUITE_P(..., StoreContractTest, ...)).
// Windows are long enough that the time a backend reads does not matter.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "store/store.h"

namespace sluice::testing {

struct StoreFactory {
  std::string name;
  std::function<std::unique_ptr<Store>()> make;
  // A store on a manual clock moves it forward `delta`; empty: real time passes (sleep).
  std::function<void(Micros delta)> advance = nullptr;
};

inline absl::StatusOr<std::vector<Decision>> ChargeSync(Store& store,
                                                        const std::vector<ChargeItem>& items) {
  std::vector<Decision> decisions(items.size());
  std::promise<absl::Status> done;
  auto result = done.get_future();
  store.Charge(items, decisions, [&done](absl::Status s) { done.set_value(std::move(s)); });
  absl::Status status = result.get();
  if (!status.ok()) return status;
  return decisions;
}

// Resets `key`, failing the test (and aborting: the store would answer into a dead frame) if
// `done` has not run within 10 s.
inline absl::Status ResetSync(Store& store, std::string_view key, const Limit& limit) {
  std::promise<absl::Status> done;
  auto result = done.get_future();
  store.Reset(key, limit, [&done](absl::Status s) { done.set_value(std::move(s)); });
  if (result.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    ADD_FAILURE() << "Reset did not answer within 10 s";
    std::abort();
  }
  return result.get();
}

inline Limit ContractLimit(Algorithm a, int64_t limit) {
  return *Limit::Create({.algorithm = a, .limit = limit, .window = int64_t{3600} * 1'000'000});
}

class StoreContractTest : public ::testing::TestWithParam<StoreFactory> {
 protected:
  void SetUp() override { store_ = GetParam().make(); }
  // A key no other test (or earlier run against a shared server) has used.
  std::string Key(const std::string& name) {
    static std::atomic<int> n{0};
    return "contract:" + name + ":" + std::to_string(::getpid()) + ":" + std::to_string(++n);
  }
  std::unique_ptr<Store> store_;
};

// Verifies that one key admits exactly its limit, for every algorithm.
TEST_P(StoreContractTest, OneKeyAdmitsExactlyTheLimit) {
  for (Algorithm a : kAllAlgorithms) {
    SCOPED_TRACE(AlgorithmName(a));
    const Limit limit = ContractLimit(a, 7);
    const std::string key = Key("one");
    int admitted = 0;
    for (int i = 0; i < 12; ++i) {
      auto d = ChargeSync(*store_, {{key, &limit, 1}});
      ASSERT_TRUE(d.ok()) << d.status();
      if ((*d)[0].allowed) ++admitted;
      EXPECT_EQ((*d)[0].limit, 7);
    }
    EXPECT_EQ(admitted, 7);
  }
}

// Verifies that distinct keys have distinct counters.
TEST_P(StoreContractTest, KeysAreIndependent) {
  const Limit limit = ContractLimit(Algorithm::kFixedWindow, 2);
  const std::string a = Key("a"), b = Key("b");
  for (int i = 0; i < 2; ++i) ASSERT_TRUE((*ChargeSync(*store_, {{a, &limit, 1}}))[0].allowed);
  EXPECT_FALSE((*ChargeSync(*store_, {{a, &limit, 1}}))[0].allowed);
  EXPECT_TRUE((*ChargeSync(*store_, {{b, &limit, 1}}))[0].allowed);
}

// Verifies all-or-nothing: when one item rejects, the others are not charged, and their
// decisions describe their state without this request.
TEST_P(StoreContractTest, RejectedRequestChargesNothing) {
  for (Algorithm a : kAllAlgorithms) {
    SCOPED_TRACE(AlgorithmName(a));
    const Limit roomy = ContractLimit(a, 10);
    const Limit tight = ContractLimit(Algorithm::kFixedWindow, 1);
    const std::string k1 = Key("roomy"), k2 = Key("tight");
    ASSERT_TRUE((*ChargeSync(*store_, {{k2, &tight, 1}}))[0].allowed);  // tight is now full
    for (int i = 0; i < 5; ++i) {
      auto d = ChargeSync(*store_, {{k1, &roomy, 2}, {k2, &tight, 1}});
      ASSERT_TRUE(d.ok());
      EXPECT_FALSE((*d)[1].allowed);
      EXPECT_TRUE((*d)[0].allowed);
      EXPECT_EQ((*d)[0].remaining, 10);
    }
    auto read = ChargeSync(*store_, {{k1, &roomy, 0}});
    EXPECT_EQ((*read)[0].remaining, 10);
  }
}

// Verifies that a rejected non-enforced (shadow) item fails nothing, and is itself charged
// only when it admits; an enforced rejection refunds shadow items too.
TEST_P(StoreContractTest, ShadowItemsNeverFailARequest) {
  const Limit one = ContractLimit(Algorithm::kFixedWindow, 1);
  const Limit ten = ContractLimit(Algorithm::kFixedWindow, 10);
  const std::string shadow = Key("shadow"), enforced = Key("enforced");
  for (int i = 0; i < 3; ++i) {
    ChargeItem s{shadow, &one, 1, ItemRole::kShadow};
    auto d = ChargeSync(*store_, {s, {enforced, &ten, 1}});
    ASSERT_TRUE(d.ok());
    EXPECT_EQ((*d)[0].allowed, i == 0);
    EXPECT_TRUE((*d)[1].allowed);
  }
  EXPECT_EQ((*ChargeSync(*store_, {{enforced, &ten, 0}}))[0].remaining, 7);
  // An enforced rejection gives back what an admitted shadow item charged.
  const std::string shadow2 = Key("shadow2"), full = Key("full");
  ASSERT_TRUE((*ChargeSync(*store_, {{full, &one, 1}}))[0].allowed);
  ChargeItem s2{shadow2, &ten, 1, ItemRole::kShadow};
  auto d = ChargeSync(*store_, {s2, {full, &one, 1}});
  EXPECT_FALSE((*d)[1].allowed);
  EXPECT_EQ((*ChargeSync(*store_, {{shadow2, &ten, 0}}))[0].remaining, 10);
}

// Verifies that ChargeWhen::kAlways charges a rejected cost into debt for every algorithm: the
// answer is still a rejection, a cost-0 read then rejects until the debt is paid back, and a
// cost above what the limit could ever admit is flagged and charged all the same.
TEST_P(StoreContractTest, ChargeAlwaysGoesIntoDebt) {
  for (Algorithm a : kAllAlgorithms) {
    SCOPED_TRACE(AlgorithmName(a));
    const Limit limit = ContractLimit(a, 2);
    const std::string key = Key(std::string("debt-") + std::string(AlgorithmName(a)));
    auto always = [&](int64_t cost) {
      return ChargeSync(*store_, {{key, &limit, cost, ItemRole::kEnforced, ChargeWhen::kAlways}});
    };
    ASSERT_TRUE((*always(2))[0].allowed);
    auto read = ChargeSync(*store_, {{key, &limit, 0}});
    EXPECT_TRUE((*read)[0].allowed) << "at exactly the limit a read passes";
    auto over = always(1);
    ASSERT_TRUE(over.ok());
    EXPECT_FALSE((*over)[0].allowed);
    EXPECT_EQ((*over)[0].remaining, 0);
    EXPECT_GT((*over)[0].retry_after, 0);
    read = ChargeSync(*store_, {{key, &limit, 0}});
    EXPECT_FALSE((*read)[0].allowed) << "in debt, a read is refused";
    EXPECT_EQ((*read)[0].remaining, 0);
    EXPECT_GT((*read)[0].retry_after, 0);
    auto huge = always(1000);
    EXPECT_FALSE((*huge)[0].allowed);
    EXPECT_TRUE((*huge)[0].cost_exceeds_limit);
    // A bucket's debt takes longer to pay back (a window's ends with the window).
    if (UsesBurst(a)) {
      EXPECT_GT((*huge)[0].reset_after, (*read)[0].reset_after);
    }
  }
}

// Verifies Envoy's charging (ChargeWhen::kAllowedOrOver): the over-limit item keeps its debt,
// the admitted items of the rejected request are given back; and that kAlways keeps every
// item's charge when another rejects.
TEST_P(StoreContractTest, OverLimitItemsKeepTheirChargeOthersAreGivenBack) {
  const Limit one = ContractLimit(Algorithm::kFixedWindow, 1);
  const Limit ten = ContractLimit(Algorithm::kFixedWindow, 10);
  const std::string full = Key("envoy-full"), other = Key("envoy-other");
  constexpr auto kEnvoy = ChargeWhen::kAllowedOrOver;
  ASSERT_TRUE((*ChargeSync(*store_, {{full, &one, 1}}))[0].allowed);
  auto d = ChargeSync(*store_, {{other, &ten, 1, ItemRole::kEnforced, kEnvoy},
                                {full, &one, 1, ItemRole::kEnforced, kEnvoy}});
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE((*d)[0].allowed);
  EXPECT_FALSE((*d)[1].allowed);
  EXPECT_EQ((*ChargeSync(*store_, {{other, &ten, 0}}))[0].remaining, 10) << "given back";
  // `full` holds 2 against a limit of 1: a second read-only check is refused.
  EXPECT_FALSE((*ChargeSync(*store_, {{full, &one, 0}}))[0].allowed);

  const std::string a = Key("always-a"), b = Key("always-b");
  ASSERT_TRUE((*ChargeSync(*store_, {{b, &one, 1}}))[0].allowed);
  d = ChargeSync(*store_, {{a, &ten, 3, ItemRole::kEnforced, ChargeWhen::kAlways},
                           {b, &one, 3, ItemRole::kEnforced, ChargeWhen::kAlways}});
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE((*d)[1].allowed);
  EXPECT_EQ((*ChargeSync(*store_, {{a, &ten, 0}}))[0].remaining, 7) << "kept";
}

// Verifies quota items (Envoy's quota_mode): one over while another admits fails nothing;
// all over rejects the request, and the enforced item's charge is given back.
TEST_P(StoreContractTest, QuotaItemsRejectOnlyWhenAllAreOver) {
  const Limit one = ContractLimit(Algorithm::kFixedWindow, 1);
  const Limit ten = ContractLimit(Algorithm::kFixedWindow, 10);
  const std::string q1 = Key("quota-1"), q2 = Key("quota-2"), e = Key("quota-e");
  ASSERT_TRUE((*ChargeSync(*store_, {{q1, &one, 1}}))[0].allowed);
  auto d = ChargeSync(
      *store_, {{q1, &one, 1, ItemRole::kQuota}, {q2, &one, 1, ItemRole::kQuota}, {e, &ten, 1}});
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE((*d)[0].allowed);
  EXPECT_TRUE((*d)[1].allowed);
  EXPECT_TRUE((*d)[2].allowed);
  EXPECT_FALSE(RequestRejected(
      std::vector<ChargeItem>{
          {q1, &one, 1, ItemRole::kQuota}, {q2, &one, 1, ItemRole::kQuota}, {e, &ten, 1}},
      *d));
  EXPECT_EQ((*ChargeSync(*store_, {{e, &ten, 0}}))[0].remaining, 9);
  // Now both quota keys are full: the request is rejected and `e` given back.
  d = ChargeSync(*store_,
                 {{q1, &one, 1, ItemRole::kQuota}, {q2, &one, 1, ItemRole::kQuota}, {e, &ten, 1}});
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE((*d)[0].allowed);
  EXPECT_FALSE((*d)[1].allowed);
  EXPECT_EQ((*ChargeSync(*store_, {{e, &ten, 0}}))[0].remaining, 9);
}

// Verifies that cost 0 reads without consuming and that an impossible cost is flagged.
TEST_P(StoreContractTest, CostZeroReadsAndOversizedCostIsFlagged) {
  const Limit limit = ContractLimit(Algorithm::kSlidingWindowLog, 3);
  const std::string key = Key("read");
  for (int i = 0; i < 5; ++i) {
    auto d = ChargeSync(*store_, {{key, &limit, 0}});
    EXPECT_TRUE((*d)[0].allowed);
    EXPECT_EQ((*d)[0].remaining, 3);
  }
  auto big = ChargeSync(*store_, {{key, &limit, 4}});
  EXPECT_FALSE((*big)[0].allowed);
  EXPECT_TRUE((*big)[0].cost_exceeds_limit);
  EXPECT_EQ((*ChargeSync(*store_, {{key, &limit, 3}}))[0].remaining, 0);
}

// Verifies that many threads on one key admit exactly the limit, and that all-or-nothing
// two-key requests under contention never charge a key beyond its limit.
TEST_P(StoreContractTest, ConcurrentChargesAdmitExactlyTheLimit) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 400;
  for (Algorithm a : kAllAlgorithms) {
    SCOPED_TRACE(AlgorithmName(a));
    const Limit limit = ContractLimit(a, 1000);
    const Limit pair_limit = ContractLimit(a, 300);
    const std::string hot = Key("hot"), left = Key("left"), right = Key("right");
    std::atomic<int> admitted{0}, pairs_admitted{0}, errors{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          auto d = ChargeSync(*store_, {{hot, &limit, 1}});
          if (!d.ok()) {
            ++errors;
            continue;
          }
          if ((*d)[0].allowed) ++admitted;
          // Half the threads charge left+right together, half charge right alone.
          if (t % 2 == 0) {
            auto p = ChargeSync(*store_, {{left, &pair_limit, 1}, {right, &pair_limit, 1}});
            if (p.ok() && (*p)[0].allowed && (*p)[1].allowed) ++pairs_admitted;
          } else {
            auto p = ChargeSync(*store_, {{right, &pair_limit, 1}});
            (void)p;
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(errors.load(), 0);
    EXPECT_EQ(admitted.load(), 1000);
    // Every admitted pair charged both keys; left was charged by pairs only.
    auto l = ChargeSync(*store_, {{left, &pair_limit, 0}});
    auto r = ChargeSync(*store_, {{right, &pair_limit, 0}});
    EXPECT_EQ(300 - (*l)[0].remaining, pairs_admitted.load());
    EXPECT_EQ((*r)[0].remaining, 0);  // right saw 1600 attempts for 300 places
    EXPECT_LE(pairs_admitted.load(), 300);
  }
}

// Verifies Reset for every algorithm: a key charged to its limit (and rejected, twice: the
// second rejection is answered by the Redis store's over-limit cache) is, once reset, fresh:
// it admits exactly its limit again; another key's state is untouched.
TEST_P(StoreContractTest, ResetMakesTheKeyFreshAndLeavesOthersAlone) {
  for (Algorithm a : kAllAlgorithms) {
    SCOPED_TRACE(AlgorithmName(a));
    const Limit limit = ContractLimit(a, 3);
    const std::string key = Key("reset"), other = Key("reset-other");
    for (int i = 0; i < 3; ++i) ASSERT_TRUE((*ChargeSync(*store_, {{key, &limit, 1}}))[0].allowed);
    for (int i = 0; i < 2; ++i) {
      auto over = ChargeSync(*store_, {{key, &limit, 1}});
      ASSERT_TRUE(over.ok()) << over.status();
      ASSERT_FALSE((*over)[0].allowed);
    }
    ASSERT_TRUE((*ChargeSync(*store_, {{other, &limit, 2}}))[0].allowed);

    ASSERT_TRUE(ResetSync(*store_, key, limit).ok());
    auto read = ChargeSync(*store_, {{key, &limit, 0}});
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_TRUE((*read)[0].allowed);
    EXPECT_EQ((*read)[0].remaining, 3) << "the full limit remains";
    int admitted = 0;
    for (int i = 0; i < 5; ++i) {
      auto d = ChargeSync(*store_, {{key, &limit, 1}});
      ASSERT_TRUE(d.ok()) << d.status();
      if (i == 0) {
        EXPECT_EQ((*d)[0].remaining, 2);
      }
      admitted += (*d)[0].allowed ? 1 : 0;
    }
    EXPECT_EQ(admitted, 3) << "exactly the limit again";
    auto untouched = ChargeSync(*store_, {{other, &limit, 0}});
    ASSERT_TRUE(untouched.ok());
    EXPECT_EQ((*untouched)[0].remaining, 1) << "another key keeps its state";
  }
}

// Verifies that resetting a key never charged is OK and leaves it fresh, and that a reset
// forgets the key's state whatever algorithm it was kept under (a rule that changed its
// algorithm since).
TEST_P(StoreContractTest, ResetOfAFreshKeyIsOkAndAnyAlgorithmsStateIsForgotten) {
  const Limit fixed = ContractLimit(Algorithm::kFixedWindow, 2);
  const std::string never = Key("reset-never");
  ASSERT_TRUE(ResetSync(*store_, never, fixed).ok());
  ASSERT_TRUE(ResetSync(*store_, never, fixed).ok());
  auto d = ChargeSync(*store_, {{never, &fixed, 1}});
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE((*d)[0].allowed);
  EXPECT_EQ((*d)[0].remaining, 1);

  for (Algorithm a : kAllAlgorithms) {
    SCOPED_TRACE(AlgorithmName(a));
    const Limit charged = ContractLimit(a, 2);
    const Limit other = ContractLimit(
        a == Algorithm::kSlidingWindowLog ? Algorithm::kGcra : Algorithm::kSlidingWindowLog, 2);
    const std::string key = Key("reset-algo");
    for (int i = 0; i < 2; ++i)
      ASSERT_TRUE((*ChargeSync(*store_, {{key, &charged, 1}}))[0].allowed);
    ASSERT_FALSE((*ChargeSync(*store_, {{key, &charged, 1}}))[0].allowed);
    ASSERT_TRUE(ResetSync(*store_, key, other).ok());
    auto after = ChargeSync(*store_, {{key, &charged, 1}});
    ASSERT_TRUE(after.ok());
    EXPECT_TRUE((*after)[0].allowed);
    EXPECT_EQ((*after)[0].remaining, 1);
  }
}

// ---- algorithm: concurrency (CONTRACT §10) ----

inline absl::Status ReleaseSync(Store& store, std::string_view key, std::string_view lease) {
  std::promise<absl::Status> done;
  auto result = done.get_future();
  store.Release(key, lease, [&done](absl::Status s) { done.set_value(std::move(s)); });
  if (result.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    ADD_FAILURE() << "Release did not answer within 10 s";
    std::abort();
  }
  return result.get();
}

inline Limit ConcurrencyLimit(int64_t limit, Micros lease_ttl = int64_t{3600} * 1'000'000) {
  return *Limit::Create(
      {.algorithm = Algorithm::kConcurrency, .limit = limit, .window = lease_ttl});
}

inline ChargeItem Slot(const std::string& key, const Limit& limit, std::string_view lease,
                       int64_t cost = 1) {
  return ChargeItem{.key = key, .limit = &limit, .cost = cost, .lease = lease};
}

// Verifies that a key holds at most `limit` slots, that a release frees one (and a second
// release of it, or of a lease never held, changes nothing), that a lease already held is not
// counted twice, and that reads (cost 0) take nothing.
TEST_P(StoreContractTest, ConcurrencyHoldsAtMostTheLimitAndReleaseFreesASlot) {
  const Limit limit = ConcurrencyLimit(3);
  const std::string key = Key("slots");
  for (const char* lease : {"lease-a", "lease-b", "lease-c"}) {
    auto d = ChargeSync(*store_, {Slot(key, limit, lease)});
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_TRUE((*d)[0].allowed) << lease;
  }
  auto again = ChargeSync(*store_, {Slot(key, limit, "lease-b")});  // renewed, not a 4th slot
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE((*again)[0].allowed);
  EXPECT_EQ((*again)[0].remaining, 0);
  auto full = ChargeSync(*store_, {Slot(key, limit, "lease-d")});
  ASSERT_TRUE(full.ok());
  EXPECT_FALSE((*full)[0].allowed);
  EXPECT_EQ((*full)[0].limit, 3);
  EXPECT_GT((*full)[0].retry_after, 0);
  EXPECT_LE((*full)[0].retry_after, 1'000'000);  // at most 1 s: slots free long before expiry
  EXPECT_GT((*full)[0].reset_after, 0);

  ASSERT_TRUE(ReleaseSync(*store_, key, "lease-b").ok());
  ASSERT_TRUE(ReleaseSync(*store_, key, "lease-b").ok());     // twice: nothing more
  ASSERT_TRUE(ReleaseSync(*store_, key, "never-held").ok());  // unknown: nothing
  ASSERT_TRUE(ReleaseSync(*store_, Key("fresh"), "x").ok());  // a key with no state
  auto read = ChargeSync(*store_, {Slot(key, limit, "", 0)});
  ASSERT_TRUE(read.ok());
  EXPECT_TRUE((*read)[0].allowed);
  EXPECT_EQ((*read)[0].remaining, 1);
  auto d = ChargeSync(*store_, {Slot(key, limit, "lease-d")});
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE((*d)[0].allowed);
  auto over = ChargeSync(*store_, {Slot(key, limit, "lease-e")});
  ASSERT_TRUE(over.ok());
  EXPECT_FALSE((*over)[0].allowed);
}

// Verifies that a request another item rejects holds no slot, whatever it asked to charge.
TEST_P(StoreContractTest, ConcurrencyRejectedRequestHoldsNoSlot) {
  const Limit slots = ConcurrencyLimit(2);
  const Limit rate = ContractLimit(Algorithm::kFixedWindow, 1);
  const std::string key = Key("slots"), rate_key = Key("rate");
  auto first = ChargeSync(*store_, {Slot(key, slots, "a"), {rate_key, &rate, 1}});
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE((*first)[0].allowed && (*first)[1].allowed);
  auto second = ChargeSync(*store_, {Slot(key, slots, "b"), {rate_key, &rate, 1}});
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE((*second)[1].allowed);
  EXPECT_EQ((*second)[0].remaining, 1);  // b's slot was given back
  auto read = ChargeSync(*store_, {Slot(key, slots, "", 0)});
  ASSERT_TRUE(read.ok());
  EXPECT_EQ((*read)[0].remaining, 1);
}

// Verifies that slots expire after the lease's ttl: a caller that never releases does not hold
// its slot for ever. Polls (the store's clock may be another process's): no timing assertion.
TEST_P(StoreContractTest, ConcurrencySlotsExpireAfterTheirTtl) {
  const Limit limit = ConcurrencyLimit(1, 200'000);  // 200 ms
  const std::string key = Key("ttl");
  auto held = ChargeSync(*store_, {Slot(key, limit, "gone")});
  ASSERT_TRUE(held.ok());
  EXPECT_TRUE((*held)[0].allowed);
  bool freed = false;
  for (int i = 0; i < 200 && !freed; ++i) {
    if (GetParam().advance) {
      GetParam().advance(50'000);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    auto d = ChargeSync(*store_, {Slot(key, limit, "next")});
    ASSERT_TRUE(d.ok());
    freed = (*d)[0].allowed;
  }
  EXPECT_TRUE(freed) << "the slot was still held 10 s after its 200 ms ttl";
}

// Verifies that many threads racing for the slots of one key are admitted exactly `limit`
// times when nobody releases, and that after every holder releases, the key is empty again.
TEST_P(StoreContractTest, ConcurrencyRacingChargesHoldExactlyTheLimit) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 50;
  const Limit limit = ConcurrencyLimit(37);
  const std::string key = Key("race");
  std::mutex mu;
  std::vector<std::string> admitted;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string lease = "t" + std::to_string(t) + "-" + std::to_string(i);
        auto d = ChargeSync(*store_, {Slot(key, limit, lease)});
        if (!d.ok()) {
          ++errors;
          continue;
        }
        if ((*d)[0].allowed) {
          std::lock_guard<std::mutex> lock(mu);
          admitted.push_back(lease);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(admitted.size(), 37u);
  for (const std::string& lease : admitted) ASSERT_TRUE(ReleaseSync(*store_, key, lease).ok());
  auto read = ChargeSync(*store_, {Slot(key, limit, "", 0)});
  ASSERT_TRUE(read.ok());
  EXPECT_EQ((*read)[0].remaining, 37);
}

}  // namespace sluice::testing
