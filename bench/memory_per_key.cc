// Bytes of memory per key in the memory store at N keys: malloc'd bytes (glibc mallinfo2)
// before and after inserting N distinct keys, divided by N, next to the store's own account.
// Usage: bench_memory_per_key [N ...]   (default: 1000000 10000000)
#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "store/memory/memory_store.h"

namespace {

size_t HeapInUse() { return mallinfo2().uordblks + mallinfo2().hblkhd; }

void Measure(size_t n, sluice::Algorithm algorithm) {
  sluice::ManualClock clock(int64_t{1764000000} * sluice::kMicrosPerSecond);
  auto limit = sluice::Limit::Create(
      {.algorithm = algorithm, .limit = 100, .window = 60 * sluice::kMicrosPerSecond});
  const size_t before = HeapInUse();
  {
    sluice::MemoryStore store(clock, {.max_keys = 2 * n});  // no eviction: pure footprint
    std::string key;
    for (size_t i = 0; i < n; ++i) {
      key = "rule:per-user|user_" + std::to_string(i);
      sluice::ChargeItem item{key, &*limit, 1};
      sluice::Decision d;
      store.ChargeNow({&item, 1}, {&d, 1});
    }
    const size_t after = HeapInUse();
    std::printf("%-24s keys=%-9zu heap_bytes_per_key=%6.1f store_bytes_per_key=%6.1f kept=%zu\n",
                std::string(sluice::AlgorithmName(algorithm)).c_str(), n,
                static_cast<double>(after - before) / static_cast<double>(n),
                static_cast<double>(store.MemoryBytes()) / static_cast<double>(n), store.size());
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<size_t> sizes;
  for (int i = 1; i < argc; ++i) sizes.push_back(std::strtoull(argv[i], nullptr, 10));
  if (sizes.empty()) sizes = {1'000'000, 10'000'000};
  for (size_t n : sizes) {
    Measure(n, sluice::Algorithm::kGcra);
    Measure(n, sluice::Algorithm::kSlidingWindowCounter);
    Measure(n, sluice::Algorithm::kSlidingWindowLog);
  }
  return 0;
}
