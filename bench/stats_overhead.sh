#!/usr/bin/env bash
# What recording stats costs a check (issue 13): the same server with `stats.enabled: true` (the
# default: per-second totals, latency histogram, per-rule counts and the heavy-hitter summaries)
# and `false`, side by side.
#
# One `sluice serve` (memory store) pinned to CPU 0, rule per-user keyed on user_id; wrk -t1 -c32
# on CPU 1 posts /v1/ratelimit/check for a random user of 100k (as bench/hot_path.sh does),
# allowed-heavy (limit 1 000 000 a second) and rejected-heavy (limit 1 an hour: every user is
# over after its first check, so every later check also records its key as rejected). Runs
# alternate on/off, PAIRS of each per scenario, each with a fresh server and a 2 s warm-up.
# Reported per run and as medians: req/s, p99, the server's CPU µs per check (utime + stime from
# /proc/PID/stat over the run, divided by the checks) and the on/off ratio.
#
# Usage: bench/stats_overhead.sh [seconds] [pairs]   (default 10 3)
# Builds build-bench (Release) first; $SLUICE_BENCH_BIN measures another binary.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
duration=${1:-10}
pairs=${2:-3}
require wrk taskset python3 curl
[ -n "${SLUICE_BENCH_BIN:-}" ] || bench_build sluice
sluice=$(realpath "$sluice")

check_lua "$work/check.lua"

run() {  # STATS(true|false) LIMIT WINDOW → "rps p99_ms cpu_us"
  cat > "$work/rules.yaml" <<YAML
rules:
  - id: per-user
    key: [user_id]
    limit: $2
    window: $3
    algorithm: fixed_window
YAML
  printf 'stats:\n  enabled: %s\nlog:\n  level: error\n' "$1" > "$work/sluice.yaml"
  local port spid before after
  port=$(free_port)
  taskset -c 0 "$sluice" serve --config "$work/sluice.yaml" --http "127.0.0.1:$port" --grpc "" \
    --rules "$work/rules.yaml" > "$work/sluice.log" 2>&1 &
  spid=$!; pids+=("$spid")
  wait_http "$port" "$work/sluice.log"
  taskset -c 1 wrk -t1 -c32 -d2s -s "$work/check.lua" "http://127.0.0.1:$port" > /dev/null
  before=$(cpu_ticks "$spid")
  taskset -c 1 wrk -t1 -c32 -d"${duration}s" --latency -s "$work/check.lua" \
    "http://127.0.0.1:$port" > "$work/wrk.out"
  after=$(cpu_ticks "$spid")
  kill "$spid"; wait "$spid" 2>/dev/null || true
  local rps p99 total
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
  p99=$(to_ms "$(awk '$1=="99%" {print $2}' "$work/wrk.out")")
  total=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  awk -v r="$rps" -v p="$p99" -v t=$((after - before)) -v hz="$ticks" -v n="$total" \
    'BEGIN {printf "%s %s %.2f\n", r, p, t / hz * 1e6 / n}'
}

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

machine
echo "| scenario       | stats | run | req/s     | p99 ms | CPU µs/check |"
echo "|----------------|-------|-----|-----------|--------|--------------|"
for scenario in allowed-heavy rejected-heavy; do
  if [ "$scenario" = allowed-heavy ]; then limit=1000000; window=1s; else limit=1; window=1h; fi
  : > "$work/on"; : > "$work/off"
  for i in $(seq "$pairs"); do
    for stats in true false; do
      read -r rps p99 us <<<"$(run "$stats" "$limit" "$window")"
      printf "| %-14s | %-5s | %3d | %9s | %6s | %12s |\n" "$scenario" "$stats" "$i" "$rps" "$p99" "$us"
      if [ "$stats" = true ]; then echo "$rps $p99 $us" >> "$work/on"; else echo "$rps $p99 $us" >> "$work/off"; fi
    done
  done
  on_us=$(awk '{print $3}' "$work/on" | median); off_us=$(awk '{print $3}' "$work/off" | median)
  on_rps=$(awk '{print $1}' "$work/on" | median); off_rps=$(awk '{print $1}' "$work/off" | median)
  awk -v s="$scenario" -v a="$on_us" -v b="$off_us" -v c="$on_rps" -v d="$off_rps" 'BEGIN {
    printf "median %s: CPU µs/check on %.2f, off %.2f, ratio %.3f; req/s on %.0f, off %.0f\n",
           s, a, b, a / b, c, d }'
done
