// sluice: for now `sluice version` and `sluice demo`, a walk through the six algorithms on the
// embedded store. The server (`sluice serve`) is built on the same store.
#include <cstdio>
#include <cstring>
#include <string>

#include "core/limit.h"
#include "core/time.h"
#include "store/memory/memory_store.h"

namespace {

constexpr const char* kVersion = "0.1.0";

int Demo() {
  sluice::ManualClock clock(int64_t{1764000000} * sluice::kMicrosPerSecond);
  sluice::MemoryStore store(clock);
  std::printf("Each algorithm: limit 5 per second, burst 5, 8 requests at once, then 8 more\n"
              "spread over the next second (one every 125 ms).\n\n");
  for (sluice::Algorithm a : sluice::kAllAlgorithms) {
    auto limit = sluice::Limit::Create(
        {.algorithm = a, .limit = 5, .window = sluice::kMicrosPerSecond});
    std::printf("%-24s", std::string(sluice::AlgorithmName(a)).c_str());
    const std::string key = "demo:" + std::string(sluice::AlgorithmName(a));
    for (int i = 0; i < 16; ++i) {
      if (i >= 8) clock.Advance(125 * sluice::kMicrosPerMilli);
      sluice::ChargeItem item{key, &*limit, 1};
      sluice::Decision d;
      store.ChargeNow({&item, 1}, {&d, 1});
      if (i == 8) std::printf(" |");
      std::printf(" %s", d.allowed ? (d.delay > 0 ? "D" : "A") : "x");
    }
    clock.Advance(10 * sluice::kMicrosPerSecond);
    std::printf("\n");
  }
  std::printf("\nA: allowed, D: allowed with a shaping delay (leaky_bucket), x: rejected\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const char* cmd = argc > 1 ? argv[1] : "";
  if (std::strcmp(cmd, "version") == 0) {
    std::printf("sluice %s\n", kVersion);
    return 0;
  }
  if (std::strcmp(cmd, "demo") == 0) return Demo();
  std::fprintf(stderr, "usage: sluice version | sluice demo\n");
  return std::strcmp(cmd, "--help") == 0 ? 0 : 2;
}
