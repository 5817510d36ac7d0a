// What recording stats adds to one check (issue 13), in-process: Limiter::Check on the memory
// store, 100k users, with and without a stats::Recorder, side by side in one run. The HTTP-level
// comparison (parsing, rendering and the socket included) is bench/stats_overhead.sh.
//
//   build-bench/bench/bench_stats --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "limiter/limiter.h"
#include "rules/loader.h"
#include "stats/recorder.h"
#include "store/memory/memory_store.h"

namespace sluice {
namespace {

std::shared_ptr<const rules::RuleSet> Rules(int64_t limit, std::string_view window) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("sluice_bench_stats_" + std::to_string(::getpid()) + ".yaml");
  std::ofstream(path) << "rules:\n  - id: per-user\n    key: [user_id]\n    limit: " << limit
                      << "\n    window: " << window << "\n    algorithm: fixed_window\n";
  auto loaded = rules::LoadRuleSet({path.string()});
  std::filesystem::remove(path);
  return loaded.ok() ? *loaded : rules::RuleSet::Empty();
}

// state.range(0): 1 = stats on; state.range(1): 1 = rejected-heavy (limit 1 an hour).
void BM_Check(benchmark::State& state) {
  const bool stats_on = state.range(0) == 1;
  const bool rejected_heavy = state.range(1) == 1;
  SystemClock clock;
  MemoryStore store(clock);
  obs::Metrics metrics;
  obs::RejectionLog rejections(clock, /*per_second=*/1);
  stats::Recorder recorder(clock, {});
  Limiter limiter(store, clock, metrics, rejections, {.stats = stats_on ? &recorder : nullptr});
  limiter.SetRules(rejected_heavy ? Rules(1, "1h") : Rules(1'000'000'000, "1h"));
  std::vector<std::string> users;
  for (int i = 0; i < 100'000; ++i) users.push_back("user_" + std::to_string(i));
  std::mt19937 rng(1);
  std::uniform_int_distribution<size_t> pick(0, users.size() - 1);
  int64_t rejected = 0;
  for (auto _ : state) {
    CheckRequest request;
    request.attributes.user_id = users[pick(rng)];
    limiter.Check(std::move(request), [&](CheckResult r) {
      rejected += r.outcome == CheckResult::Outcome::kRejected ? 1 : 0;
    });
  }
  state.counters["rejected_share"] =
      static_cast<double>(rejected) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_Check)
    ->ArgNames({"stats", "rejected_heavy"})
    ->Args({0, 0})
    ->Args({1, 0})
    ->Args({0, 1})
    ->Args({1, 1});
// The same with a fixed count, for instruction counts that compare run to run:
//   valgrind --tool=callgrind build-bench/bench/bench_stats --benchmark_filter=Fixed
BENCHMARK(BM_Check)
    ->Name("BM_CheckFixed")
    ->ArgNames({"stats", "rejected_heavy"})
    ->Args({0, 0})
    ->Args({1, 0})
    ->Args({0, 1})
    ->Args({1, 1})
    ->Iterations(200'000);

}  // namespace
}  // namespace sluice
