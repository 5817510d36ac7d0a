// Decisions per second through MemoryStore::ChargeNow: hashing, sharding, locking, the table
// and the algorithm. One hot key; 1M keys uniform; 1M keys Zipf (s = 1.0). 1 and 2 threads.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "store/memory/memory_store.h"

namespace sluice {
namespace {

constexpr size_t kKeys = 1'000'000;
constexpr size_t kSamples = size_t{1} << 22;

SystemClock& Clock() {
  static SystemClock clock;
  return clock;
}

// Builds the counter key of user `i` in `buf`, as the limiter builds one from a request: the
// bytes are in cache, as they are in a server that just parsed them.
std::string_view KeyOf(uint32_t i, char (&buf)[48]) {
  static constexpr std::string_view kPrefix = "rule:per-user|user_";
  std::memcpy(buf, kPrefix.data(), kPrefix.size());
  auto [end, ec] = std::to_chars(buf + kPrefix.size(), buf + sizeof(buf), i);
  return {buf, static_cast<size_t>(end - buf)};
}

// Precomputed key indexes so the benchmark loop measures the store, not the random generator.
const std::vector<uint32_t>& Uniform() {
  static const auto* s = [] {
    auto* v = new std::vector<uint32_t>(kSamples);
    std::mt19937_64 rng(1);
    for (auto& x : *v) x = static_cast<uint32_t>(rng() % kKeys);
    return v;
  }();
  return *s;
}

const std::vector<uint32_t>& Zipf() {
  static const auto* s = [] {
    std::vector<double> cdf(kKeys);
    double sum = 0;
    for (size_t i = 0; i < kKeys; ++i) cdf[i] = (sum += 1.0 / static_cast<double>(i + 1));
    auto* v = new std::vector<uint32_t>(kSamples);
    std::mt19937_64 rng(2);
    std::uniform_real_distribution<double> u(0, sum);
    for (auto& x : *v) {
      x = static_cast<uint32_t>(std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin());
    }
    // Scatter ranks over the key space so hot keys do not share a shard by construction.
    std::vector<uint32_t> perm(kKeys);
    for (uint32_t i = 0; i < kKeys; ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
    for (auto& x : *v) x = perm[x];
    return v;
  }();
  return *s;
}

// One store per benchmark family, shared by its threads.
std::unique_ptr<MemoryStore>& StoreFor(int family) {
  static std::unique_ptr<MemoryStore> stores[8];
  return stores[family];
}

enum Pattern { kHot = 0, kUniform = 1, kZipf = 2 };

void BM_MemoryStore(benchmark::State& st) {
  const Algorithm a = static_cast<Algorithm>(st.range(0));
  const Pattern pattern = static_cast<Pattern>(st.range(1));
  // Hot key: 1M/s, the allowed/rejected mix of an attacked key. Many keys: 100/s each,
  // mostly allowed, as ordinary traffic.
  auto limit = Limit::Create(
      {.algorithm = a, .limit = pattern == kHot ? 1'000'000 : 100, .window = kMicrosPerSecond});
  char buf[48];
  const std::vector<uint32_t>* samples = pattern == kUniform ? &Uniform() : &Zipf();
  if (st.thread_index() == 0) {
    StoreFor(pattern) = std::make_unique<MemoryStore>(Clock());
    if (pattern != kHot) {  // warm: every key present, as in a long-running server
      for (uint32_t k = 0; k < kKeys; ++k) {
        ChargeItem item{KeyOf(k, buf), &*limit, 1};
        Decision d;
        StoreFor(pattern)->ChargeNow({&item, 1}, {&d, 1});
      }
    }
  }
  // Google Benchmark starts the timed loop of all threads together, after this setup.
  size_t i = static_cast<size_t>(st.thread_index()) * 7919;
  int64_t allowed = 0;
  for (auto _ : st) {
    const uint32_t k = pattern == kHot ? 0 : (*samples)[i++ & (kSamples - 1)];
    ChargeItem item{KeyOf(k, buf), &*limit, 1};
    Decision d;
    StoreFor(pattern)->ChargeNow({&item, 1}, {&d, 1});
    allowed += d.allowed;
  }
  st.SetLabel(std::string(AlgorithmName(a)) + (pattern == kHot       ? " hot-key"
                                               : pattern == kUniform ? " 1M-uniform"
                                                                     : " 1M-zipf"));
  st.counters["allowed_ratio"] =
      benchmark::Counter(static_cast<double>(allowed) / static_cast<double>(st.iterations()),
                         benchmark::Counter::kAvgThreads);
  st.SetItemsProcessed(st.iterations());
  if (st.thread_index() == 0) StoreFor(pattern).reset();
}
BENCHMARK(BM_MemoryStore)
    ->ArgsProduct({benchmark::CreateDenseRange(0, 5, 1), {kHot, kUniform, kZipf}})
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

}  // namespace
}  // namespace sluice
