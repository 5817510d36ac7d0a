#!/usr/bin/env bash
# Builds the sanitizer build with clang and libFuzzer (build-asan/, as scripts/test.sh does: ASan,
# UBSan, libFuzzer's instrumentation and clang's thread-safety analysis as errors, everything
# built), then runs each fuzz target (or TARGET alone) for SECONDS (default 10) from its committed
# corpus (fuzz/corpus/TARGET) with its dictionary (fuzz/dict/). What a run finds that covers new
# code is kept in build-asan/corpus/TARGET; FUZZ_MERGE=1 merges it into the committed corpus
# afterwards. A crash, a leak or an input slower than 1 s fails the run: the input is saved under
# build-asan/artifacts/TARGET/, and belongs in fuzz/regressions/TARGET/ once fixed (every build
# replays those as the test fuzz_TARGET_replay).
# Prints one line per target: executions, executions/s, coverage (edges), features, corpus size.
# Usage: scripts/fuzz.sh [TARGET|all] [SECONDS]
#        scripts/fuzz.sh --build-only        (what scripts/test.sh builds its tests with)
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-all}
seconds=${2:-10}
build=build-asan

targets=(http_server http_parse check_body envoy_json grpc_request rules_yaml server_config
         admin_json resp_reply algorithms)
dict_of() {
  case $1 in
    http_server | http_parse) echo fuzz/dict/http.dict ;;
    check_body | envoy_json | admin_json) echo fuzz/dict/json.dict ;;
    rules_yaml | server_config) echo fuzz/dict/yaml.dict ;;
    resp_reply) echo fuzz/dict/resp.dict ;;
  esac
}
if [ "$target" != all ] && [ "$target" != --build-only ]; then
  [[ " ${targets[*]} " == *" $target "* ]] || { echo "fuzz: no target '$target' (${targets[*]})" >&2; exit 2; }
  targets=("$target")
fi

# A build directory configured for another compiler (an older GCC build-asan) starts afresh.
if [ -f "$build/CMakeCache.txt" ] && ! grep -q '^SLUICE_FUZZ:BOOL=ON' "$build/CMakeCache.txt"; then
  rm -rf "$build"
fi
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
CXX=clang++ cmake -S . -B "$build" -G Ninja -DSLUICE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSLUICE_BUILD_BENCH=ON "${launcher[@]}" >/dev/null
cmake --build "$build" -j "$(nproc)"
[ "$target" = --build-only ] && exit 0

status=0
for t in "${targets[@]}"; do
  work=$build/corpus/$t
  artifacts=$build/artifacts/$t/
  mkdir -p "$work" "$artifacts"
  dict=$(dict_of "$t")
  log=$build/fuzz-$t.log
  # Leaks are checked (ASan's LeakSanitizer); -timeout: an input slower than 1 s is a failure.
  # A smaller quarantine than ASan's 256 MiB: recycling it all at once can take a second on its
  # own, which -timeout would count against the input that happened to trigger it.
  if ! ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:quarantine_size_mb=32 \
      UBSAN_OPTIONS=print_stacktrace=1 \
      "$build/fuzz/fuzz_$t" "$work" "fuzz/corpus/$t" -max_total_time="$seconds" -timeout=1 \
      -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts" \
      ${dict:+-dict="$dict"} >"$log" 2>&1; then
    status=1
    echo "fuzz: $t FAILED (input in $artifacts); the end of its log:"
    tail -n 40 "$log"
    continue
  fi
  runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
  line=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$line")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$line")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$line")
  printf 'fuzz: %-14s %12s runs %8s/s  cov %6s  ft %7s  corpus %5s  (%ss)\n' \
    "$t" "$runs" "$rate" "$cov" "$ft" "$corp" "$seconds"
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    "$build/fuzz/fuzz_$t" -merge=1 "fuzz/corpus/$t" "$work" >/dev/null 2>&1
  fi
done
exit $status
