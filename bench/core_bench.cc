// Decisions per second of each algorithm alone: one hot key, state in a register-friendly
// local, a clock advancing 1 us per decision. This is the ceiling the stores build on.
#include <benchmark/benchmark.h>

#include "core/algorithm_state.h"

namespace sluice {
namespace {

void BM_CoreHotKey(benchmark::State& st) {
  const Algorithm a = static_cast<Algorithm>(st.range(0));
  // 1M per second: about one in two decisions admits at 1 us per decision... the mix of
  // allowed and rejected a hot key sees under attack.
  auto limit = Limit::Create({.algorithm = a, .limit = 500'000, .window = kMicrosPerSecond});
  AlgorithmState state;
  Micros now = int64_t{1764000000} * kMicrosPerSecond;
  int64_t allowed = 0;
  for (auto _ : st) {
    Decision d = Admit(state, *limit, now, 1);
    allowed += d.allowed;
    benchmark::DoNotOptimize(d);
    ++now;
  }
  Release(state, a);
  st.SetLabel(std::string(AlgorithmName(a)));
  st.counters["allowed_ratio"] =
      static_cast<double>(allowed) / static_cast<double>(st.iterations());
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_CoreHotKey)->DenseRange(0, 5);

}  // namespace
}  // namespace sluice
