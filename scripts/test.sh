#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test:
#   1. formatting: every C++ file matches .clang-format (scripts/check-format.sh);
#   2. release build: all tests (unit + integration);
#   3. thread-safety analysis: Clang parses every source file of src/ with
#      -Werror=thread-safety, so ABSL_GUARDED_BY and co. are checked (scripts/check-thread-safety.sh);
#   4. AddressSanitizer + UndefinedBehaviorSanitizer build: all tests;
#   5. ThreadSanitizer build: the tests labelled "concurrency".
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
echo "== formatting"
scripts/check-format.sh || status=1

echo "== release build: all tests"
build build ""
ctest --test-dir build --output-on-failure -j "$jobs" || status=1

if [ $fast -eq 0 ]; then
  echo "== thread-safety analysis (clang, every source file of src/)"
  scripts/check-thread-safety.sh build || status=1

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
