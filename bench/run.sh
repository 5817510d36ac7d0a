#!/usr/bin/env bash
# Runs Sluice's micro-benchmarks and prints the machine they ran on.
# Usage: bench/run.sh [core|store|memory|embed|all]   (default: all)
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_build bench_core bench_memory_store bench_memory_per_key bench_embed

what=${1:-all}
echo "== $(machine)"
if [[ $what == all || $what == core ]]; then
  echo "== core: one algorithm alone, one hot key"
  "$bench_dir/bench/bench_core" --benchmark_min_time=0.5
fi
if [[ $what == all || $what == store ]]; then
  echo "== memory store: hot key, 1M keys uniform, 1M keys Zipf; 1 and 2 threads"
  "$bench_dir/bench/bench_memory_store" --benchmark_min_time=1
fi
if [[ $what == all || $what == memory ]]; then
  echo "== memory store: bytes per key"
  "$bench_dir/bench/bench_memory_per_key" 1000000 10000000
fi
if [[ $what == all || $what == embed ]]; then
  echo "== the embeddable API against the engine it wraps: 100k users, memory store"
  "$bench_dir/bench/bench_embed" --benchmark_min_time=1 --benchmark_repetitions=5 \
    --benchmark_report_aggregates_only
fi
