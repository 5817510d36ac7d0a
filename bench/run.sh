#!/usr/bin/env bash
# Runs Sluice's micro-benchmarks and prints the machine they ran on.
# Usage: bench/run.sh [core|store|memory|all]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLUICE_BUILD_BENCH=ON >/dev/null
cmake --build build-bench -j "$(nproc)" --target bench_core bench_memory_store bench_memory_per_key

what=${1:-all}
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
if [[ $what == all || $what == core ]]; then
  echo "== core: one algorithm alone, one hot key"
  build-bench/bench/bench_core --benchmark_min_time=0.5
fi
if [[ $what == all || $what == store ]]; then
  echo "== memory store: hot key, 1M keys uniform, 1M keys Zipf; 1 and 2 threads"
  build-bench/bench/bench_memory_store --benchmark_min_time=1
fi
if [[ $what == all || $what == memory ]]; then
  echo "== memory store: bytes per key"
  build-bench/bench/bench_memory_per_key 1000000 10000000
fi
