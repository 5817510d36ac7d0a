#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test:
#   1. release build: all tests (unit + integration);
#   2. thread-safety analysis: Clang compiles the libraries and the binary with
#      -Werror=thread-safety (ABSL_GUARDED_BY and co. checked; unoptimized, no tests);
#   3. AddressSanitizer + UndefinedBehaviorSanitizer build: all tests;
#   4. ThreadSanitizer build: the tests labelled "concurrency".
# Usage: scripts/test.sh [--fast]   (--fast: release build only)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

jobs=$(nproc)
fast=0
[ "${1:-}" = "--fast" ] && fast=1

build() {  # build DIR SANITIZE [TARGET]
  cmake -S . -B "$1" -G Ninja -DSLUICE_SANITIZE="$2" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSLUICE_BUILD_BENCH=ON >/dev/null  # benchmarks build (not run) so they cannot rot
  cmake --build "$1" -j "$jobs" ${3:+--target "$3"}
}

status=0
echo "== release build: all tests"
build build ""
ctest --test-dir build --output-on-failure -j "$jobs" || status=1

if [ $fast -eq 0 ]; then
  echo "== thread-safety analysis (clang): libraries and binary"
  cmake -S . -B build-tsa -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_FLAGS_DEBUG=-O0 -DSLUICE_BUILD_BENCH=OFF -DSLUICE_THREAD_SAFETY_ANALYSIS=ON \
    >/dev/null
  cmake --build build-tsa -j "$jobs" --target sluice || status=1

  echo "== address+undefined sanitizer build: all tests"
  build build-asan "address,undefined"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" || status=1

  echo "== thread sanitizer build: concurrency tests"
  build build-tsan "thread" concurrency_tests
  TSAN_OPTIONS=halt_on_error=1 \
    ctest --test-dir build-tsan --output-on-failure -j "$jobs" -L concurrency || status=1
fi
exit $status
