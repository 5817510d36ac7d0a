# Shell code shared by the bench/*.sh scripts. Source it, don't run it:
#   source "$(dirname "$0")/lib.sh"
# It moves to the repository root, installs the Debian packages, and defines:
#   bench_build TARGET...   builds TARGETs in Release in $bench_dir (build-bench), one build for
#                           every script so that their numbers come from the same binary
#   $sluice                 the sluice binary in $bench_dir, or $SLUICE_BENCH_BIN when set
#   $work, pids             a scratch folder and the background PIDs; both cleaned up on exit
#   require TOOL...         exits with a message when a command is missing
#   free_port               a free TCP port on 127.0.0.1
#   cpu_ticks PID...        utime + stime of the processes, in clock ticks ($ticks a second)
#   to_ms LATENCY           wrk's "812.00us" / "1.23ms" / "1.01s" in milliseconds
#   wait_http PORT LOG      waits until 127.0.0.1:PORT answers HTTP; prints LOG and exits if not
#   machine                 one line: cores and CPU model
#   scenario_rules SCENARIO FILE
#                           writes the per-user fixed_window rule the HTTP benchmarks share:
#                           allowed-heavy (a limit no user reaches) or rejected-heavy (1 an hour)
#   check_lua FILE          writes a wrk script posting /v1/ratelimit/check for a random user of
#                           user_1 … user_100000 (the key space every HTTP benchmark uses)
# shellcheck shell=bash disable=SC2034  # the variables are for the scripts that source this

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh

bench_dir=build-bench
# SLUICE_BENCH_BIN: measure another sluice binary (e.g. an earlier commit's, for before/after)
sluice=${SLUICE_BENCH_BIN:-$bench_dir/src/app/sluice}

bench_build() {
  cmake -S . -B "$bench_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLUICE_BUILD_BENCH=ON \
    -DSLUICE_SANITIZE= >/dev/null
  cmake --build "$bench_dir" -j "$(nproc)" --target "$@" >/dev/null
}

require() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$(basename "$0"): missing $tool" >&2; exit 1; }
  done
}

work=$(mktemp -d)
pids=()
bench_cleanup() {
  local p
  for p in "${pids[@]:-}"; do
    if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; fi
  done
  rm -rf "$work"
}
trap bench_cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

ticks=$(getconf CLK_TCK)
cpu_ticks() {
  local p t=0
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}

to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000
    printf "%.3f", n }'
}

wait_http() {
  for _ in $(seq 100); do
    curl -s -o /dev/null "127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  cat "$2"
  exit 1
}

machine() {
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
}

check_lua() {
  cat > "$1" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format(nil, "/v1/ratelimit/check", nil,
                    string.format('{"user_id":"user_%d"}', math.random(1, 100000)))
end
LUA
}

scenario_rules() {
  local limit=1 window=1h
  if [ "$1" = allowed-heavy ]; then limit=1000000; window=1s; fi
  cat > "$2" <<YAML
rules:
  - id: per-user
    key: [user_id]
    limit: $limit
    window: $window
    algorithm: fixed_window
YAML
}
