// What the embeddable API (include/sluice/sluice.h) costs over the engine it wraps, in-process on
// the memory store, 100k users, side by side in one run:
//   BM_Engine          Limiter::Check alone: the decision (the ceiling)
//   BM_EngineRendered  the decision and its HTTP answer (RenderCheckResult: status, the limit
//                      headers, the JSON body), what Result carries
//   BM_Library         embed::Limiter::Check, blocking form, through libsluice.so
//   BM_LibraryCallback embed::Limiter::Check, callback form
//   BM_LibraryNoHttpAnswer  the blocking form with Options::http_answer = false
// Each allowed-heavy (a limit never reached) and rejected-heavy (1 an hour: all but the first
// check per user rejected).
//
//   build-bench/bench/bench_embed --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "api/http/check_codec.h"
#include "limiter/limiter.h"
#include "rules/loader.h"
#include "sluice/sluice.h"
#include "store/memory/memory_store.h"

namespace sluice {
namespace {

constexpr int kUsers = 100'000;

std::string RulesFile(bool rejected_heavy) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("sluice_bench_embed_" + std::to_string(::getpid()) + ".yaml");
  std::ofstream(path) << "rules:\n  - id: per-user\n    key: [user_id]\n    limit: "
                      << (rejected_heavy ? 1 : 1'000'000'000)
                      << "\n    window: 1h\n    algorithm: fixed_window\n";
  return path.string();
}

std::vector<std::string> Users() {
  std::vector<std::string> users;
  for (int i = 0; i < kUsers; ++i) users.push_back("user_" + std::to_string(i));
  return users;
}

// state.range(0): 1 = render the HTTP answer too; state.range(1): 1 = rejected-heavy.
void BM_Engine(benchmark::State& state) {
  const bool render = state.range(0) == 1;
  SystemClock clock;
  MemoryStore store(clock);
  obs::Metrics metrics;
  obs::RejectionLog rejections(clock, /*per_second=*/0);
  Limiter limiter(store, clock, metrics, rejections, {});
  const std::string path = RulesFile(state.range(1) == 1);
  limiter.SetRules(*rules::LoadRuleSet({path}));
  std::filesystem::remove(path);
  const std::vector<std::string> users = Users();
  std::mt19937 rng(1);
  std::uniform_int_distribution<size_t> pick(0, users.size() - 1);
  for (auto _ : state) {
    CheckRequest request;
    request.attributes.user_id = users[pick(rng)];
    limiter.Check(std::move(request), [&](CheckResult r) {
      if (render) {
        benchmark::DoNotOptimize(http::RenderCheckResult(r));
      } else {
        benchmark::DoNotOptimize(r);
      }
    });
  }
}
BENCHMARK(BM_Engine)->ArgNames({"render", "rejected_heavy"})->Args({0, 0})->Args({0, 1});
BENCHMARK(BM_Engine)
    ->Name("BM_EngineRendered")
    ->ArgNames({"render", "rejected_heavy"})
    ->Args({1, 0})
    ->Args({1, 1});

// state.range(0): 1 = the callback form; state.range(1): 1 = rejected-heavy; state.range(2):
// 1 = Options::http_answer (the default).
void BM_Library(benchmark::State& state) {
  const bool callback = state.range(0) == 1;
  const std::string path = RulesFile(state.range(1) == 1);
  auto limiter =
      embed::Limiter::Create({.rules_paths = {path}, .http_answer = state.range(2) == 1});
  std::filesystem::remove(path);
  const std::vector<std::string> users = Users();
  std::mt19937 rng(1);
  std::uniform_int_distribution<size_t> pick(0, users.size() - 1);
  for (auto _ : state) {
    embed::Request request;
    request.user_id = users[pick(rng)];
    if (callback) {
      limiter->Check(request, [](embed::Result r) { benchmark::DoNotOptimize(r); });
    } else {
      benchmark::DoNotOptimize(limiter->Check(request));
    }
  }
}
BENCHMARK(BM_Library)
    ->ArgNames({"callback", "rejected_heavy", "http_answer"})
    ->Args({0, 0, 1})
    ->Args({0, 1, 1});
BENCHMARK(BM_Library)
    ->Name("BM_LibraryCallback")
    ->ArgNames({"callback", "rejected_heavy", "http_answer"})
    ->Args({1, 0, 1})
    ->Args({1, 1, 1});
BENCHMARK(BM_Library)
    ->Name("BM_LibraryNoHttpAnswer")
    ->ArgNames({"callback", "rejected_heavy", "http_answer"})
    ->Args({0, 0, 0})
    ->Args({0, 1, 0});

}  // namespace
}  // namespace sluice
