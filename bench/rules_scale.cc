// Rules database at scale (CONTRACT §8, issue 12): N per-customer rules (one `match: {user_id}`
// rule per customer, all in one group) in a SQLite rules database, as a platform keeps its
// overrides. Measures, in one process on the real code:
//   - load: opening the database and reading, parsing and composing every rule, as a server
//     does at start (ManagedRules::Create + SetFiles);
//   - heap bytes per database rule once loaded (glibc mallinfo2, before/after);
//   - one change: a rule updated in the database, then the catch-up every server runs when told
//     (ChangesSince, re-parse of that rule, rebuild of the composed rule set, swap into the
//     limiter); min/median/max over 20 changes;
//   - check cost: Limiter::Check on the memory store for a customer with an override, next to
//     the same with 10 rules in all (single thread, ns per check).
// Usage: bench_rules_scale [N ...]   (default: 10 1000 100000)
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "admin/managed_rules.h"
#include "db/open.h"
#include "limiter/limiter.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "store/memory/memory_store.h"

namespace {

using namespace sluice;
using Clock = std::chrono::steady_clock;

size_t HeapInUse() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string CustomerRule(size_t i, int limit) {
  return "{\"id\":\"cust-" + std::to_string(i) + "\",\"match\":{\"user_id\":\"user-" +
         std::to_string(i) + "\"},\"key\":[\"user_id\"],\"limit\":" + std::to_string(limit) +
         ",\"window\":\"1m\",\"group\":\"customers\",\"priority\":10}";
}

// ns per Limiter::Check for user `user` (each check a new user key would fill the store; one
// user's key, refreshed every call, measures the rules path, not the store's table).
double CheckNs(Limiter& limiter, const std::string& user, int iterations) {
  CheckRequest request;
  request.attributes.user_id = user;
  size_t allowed = 0;
  const auto start = Clock::now();
  for (int i = 0; i < iterations; ++i) {
    limiter.Check(request, [&allowed](CheckResult r) {
      allowed += r.outcome == CheckResult::Outcome::kAllowed ? 1 : 0;
    });
  }
  const double ns = std::chrono::duration<double, std::nano>(Clock::now() - start).count();
  if (allowed == 0) std::fprintf(stderr, "no check was allowed\n");
  return ns / iterations;
}

void Measure(size_t n) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("sluice-rules-scale-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string url = "sqlite://" + (dir / "rules.db").string();
  {
    auto database = db::OpenDatabase(url);
    if (!database.ok()) {
      std::fprintf(stderr, "%s\n", std::string(database.status().message()).c_str());
      std::exit(1);
    }
    std::vector<db::Write> writes;
    writes.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      writes.push_back(db::Write::Put(db::TargetKind::kRule, "cust-" + std::to_string(i),
                                      CustomerRule(i, 1000)));
    }
    if (auto commit = (*database)->Apply(writes, "bench", "seed"); !commit.ok()) {
      std::fprintf(stderr, "%s\n", std::string(commit.status().message()).c_str());
      std::exit(1);
    }
  }

  SystemClock clock;
  obs::Metrics metrics;
  obs::RejectionLog rejections(clock);
  MemoryStore store(clock);
  Limiter limiter(store, clock, metrics, rejections, {});

  const size_t heap_before = HeapInUse();
  const auto load_start = Clock::now();
  auto managed = admin::ManagedRules::Create({.database_url = url}, limiter);
  if (!managed.ok()) {
    std::fprintf(stderr, "%s\n", std::string(managed.status().message()).c_str());
    std::exit(1);
  }
  if (absl::Status s = (*managed)->SetFiles(rules::RuleSet::Empty()); !s.ok()) std::exit(1);
  const double load_ms = Ms(Clock::now() - load_start);
  const size_t heap_after = HeapInUse();

  // One change at a time, as the admin API makes them, then the catch-up.
  std::vector<double> change_ms;
  db::RulesDatabase& database = *(*managed)->database();
  for (int c = 0; c < 20; ++c) {
    const size_t i = (static_cast<size_t>(c) * 7919) % n;
    db::Write write = db::Write::Put(db::TargetKind::kRule, "cust-" + std::to_string(i),
                                     CustomerRule(i, 2000 + c));
    const std::vector<db::Write> one{write};
    if (!database.Apply(one, "bench", "change").ok()) std::exit(1);
    const auto start = Clock::now();
    if (!(*managed)->CatchUp("bench").ok()) std::exit(1);
    change_ms.push_back(Ms(Clock::now() - start));
  }
  std::sort(change_ms.begin(), change_ms.end());

  const double check_ns = CheckNs(limiter, "user-" + std::to_string(n / 2), 200'000);
  std::printf(
      "rules=%-7zu load_ms=%8.1f heap_bytes_per_rule=%7.0f change_catch_up_ms min=%7.2f "
      "median=%7.2f max=%7.2f check_ns=%6.0f\n",
      n, load_ms, static_cast<double>(heap_after - heap_before) / static_cast<double>(n),
      change_ms.front(), change_ms[change_ms.size() / 2], change_ms.back(), check_ns);
  managed->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace

int main(int argc, char** argv) {
  obs::InitLogging(spdlog::level::err, obs::LogFormat::kText);
  std::vector<size_t> sizes;
  for (int i = 1; i < argc; ++i) sizes.push_back(std::strtoul(argv[i], nullptr, 10));
  if (sizes.empty()) sizes = {10, 1000, 100'000};
  for (size_t n : sizes) Measure(n);
}
