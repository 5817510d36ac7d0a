#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test:
#   1. formatting: every C++ file matches .clang-format (scripts/check-format.sh);
#   2. AddressSanitizer + UndefinedBehaviorSanitizer build with Clang (-O1, line tables, with the
#      benchmarks compiled so that they cannot rot), which also carries libFuzzer's
#      instrumentation (the fuzz targets are libFuzzer executables) and Clang's thread-safety
#      analysis as errors (ABSL_GUARDED_BY and co. are checked in every file): every test, unit
#      and integration, and the fuzz targets replaying their corpus and every crash ever found
#      (fuzz_*_replay);
#   3. fuzzing (scripts/fuzz.sh, on that build): every fuzz target for FUZZ_SECONDS (default 10);
#   4. ThreadSanitizer build (GCC): the tests labelled "concurrency".
# The plain release build is not built here: every test it would run runs in step 2, on the same
# optimized code with the sanitizers watching. `--fast` builds it and runs its tests only (the
# quick loop while developing).
# Usage: scripts/test.sh [--fast]
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
failed=()  # "BUILD_DIR TEST" for each test that failed, summarized at the end
fuzz_failed=0
run_ctest() {  # run_ctest DIR [ctest args...]: runs the tests, remembers which failed
  local dir=$1
  shift
  if ! ctest --test-dir "$dir" --output-on-failure -j "$jobs" "$@"; then
    status=1
    local log="$dir/Testing/Temporary/LastTestsFailed.log"
    [ -f "$log" ] && while IFS=: read -r _ name; do failed+=("$dir $name"); done <"$log"
  fi
}
# The output of every failed test again at the very end, where a log's tail shows it.
summary() {
  if [ "$fuzz_failed" = 1 ]; then
    echo "== fuzzing failed; the end of each failed target's log:"
    grep -l "FAILED\|ERROR: \|SUMMARY: " build-asan/fuzz-*.log 2>/dev/null |
      while read -r log; do echo "--- $log"; tail -n 40 "$log"; done
  fi
  [ ${#failed[@]} -eq 0 ] && return
  echo "== failed tests"
  local entry
  for entry in "${failed[@]}"; do
    set -- $entry
    echo "--- $2 ($1), the last lines of its output:"
    awk -v t="$2" '$0 ~ "^[0-9]+/[0-9]+ Test: " t "$" {on=1} on {print} on && /time elapsed/ {on=0}' \
      "$1/Testing/Temporary/LastTest.log" | tail -n 60
  done
  echo "== failed: ${failed[*]}"
}
trap summary EXIT

echo "== formatting"
scripts/check-format.sh || status=1

if [ $fast -eq 1 ]; then
  echo "== release build: all tests"
  build build ""
  run_ctest build
  exit $status
fi

echo "== address+undefined sanitizer build (clang, libFuzzer, thread-safety analysis): all tests"
scripts/fuzz.sh --build-only
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 run_ctest build-asan

echo "== fuzzing, ${FUZZ_SECONDS:-10} s per target"
scripts/fuzz.sh all "${FUZZ_SECONDS:-10}" || { status=1; fuzz_failed=1; }

echo "== thread sanitizer build: concurrency tests"
build build-tsan "thread" concurrency_tests
TSAN_OPTIONS=halt_on_error=1 run_ctest build-tsan -L concurrency
exit $status
