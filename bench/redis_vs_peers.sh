#!/usr/bin/env bash
# Sluice on the Redis store against its ceiling and a Node peer, on one Redis, in one run.
#
# One redis-server (its own, on a free loopback port, no persistence) serves every row:
#   - Sluice on the Redis store, and Sluice on the memory store (the same rule, for the CPU ratio);
#   - redis-benchmark sending EVALSHA of the very script, with the very arguments, Sluice sends
#     for one check (captured with MONITOR from a check Sluice made, the user id replaced by
#     __rand_int__): what this Redis can do at most for Sluice's work;
#   - rate-limiter-flexible (RateLimiterRedis on ioredis) in a minimal Node HTTP server
#     (bench/node/server.js) with the same limit.
# HTTP rows: wrk POSTs /v1/ratelimit/check with a random user of 100k per request, as
# hot_path.sh does. Two scenarios: allowed-heavy (a limit no user reaches) and rejected-heavy
# (1 request an hour per user: after each user's first request, every answer is a 429, most of
# them answered by Sluice's over-limit cache, and by rate-limiter-flexible's in-memory block,
# without Redis).
#
# Pinning: the server under test AND redis-server on CPU 0, the load generator (wrk,
# redis-benchmark) on CPU 1. A limiter and its store then share one core, as the system under
# test, and the load generator never competes with either; the memory-store rows have CPU 0 to
# Sluice alone.
# Reports req/s, p50/p99, the server's and Redis's CPU time per request (utime + stime from
# /proc/PID/stat over the run divided by the requests), and from Redis INFO: EVALSHA calls and all
# commands processed per request, commands per read (how much pipelining Redis saw), and
# Sluice's cached rejections (sluice_store_cached_rejections_total from /metrics).
#
# Usage: bench/redis_vs_peers.sh [seconds]   (default 10 per row, 8 rows)
# Needs node (20 or newer) and npm; runs `npm ci` in bench/node when node_modules is missing.
# Run it on an otherwise idle machine: the pinning keeps the programs apart, not others.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
duration=${1:-10}
rb_clients=${RB_CLIENTS:-4}    # redis-benchmark: Sluice's pool of 4 connections...
rb_pipeline=${RB_PIPELINE:-8}  # ...times 8 = the 32 checks wrk keeps in flight
for tool in node npm; do
  command -v "$tool" >/dev/null || {
    echo "redis_vs_peers: '$tool' is missing: install Node.js 20 or newer with npm" \
         "(the rate-limiter-flexible row runs on it)" >&2
    exit 1
  }
done
require wrk taskset redis-server redis-cli redis-benchmark python3 curl
bench_build sluice
[ -d bench/node/node_modules ] || (cd bench/node && npm ci --no-audit --no-fund >/dev/null)

# --- Redis ---
rport=$(free_port)
taskset -c 0 redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$work" --logfile "$work/redis.log" &
rpid=$!; pids+=("$rpid")
rcli() { redis-cli -p "$rport" "$@"; }
for _ in $(seq 50); do [ "$(rcli ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
[ "$(rcli ping)" = PONG ] || { cat "$work/redis.log"; exit 1; }
redis_stats() {  # → "evalsha_calls commands reads evalsha_usec evalsha_failed"
  rcli info all | tr -d '\r' | awk -F'[:=,]' '
    $1 == "cmdstat_evalsha" {e = $3; u = $5; f = $9 + $11}
    $1 == "total_commands_processed" {c = $2}
    $1 == "total_reads_processed" {r = $2}
    END {print e + 0, c + 0, r + 0, u + 0, f + 0}'
}

check_lua "$work/check.lua"

# Filled by each row, printed at the end.
main_rows=()
redis_rows=()
declare -A cpu_req redis_per_evalsha rps_of  # by "name/store/scenario", "name/scenario"

# Sums the samples of a metric whose line matches REGEX in Sluice's /metrics.
metric() { curl -s "127.0.0.1:$1/metrics" | awk -v re="$2" '$0 ~ re {s += $NF} END {print s + 0}'; }
sluice_counts() {  # PORT → "allowed rejected store_errors cached_rejections"
  echo "$(metric "$1" '^sluice_requests_total\{.*result="allowed"') \
$(metric "$1" '^sluice_requests_total\{.*result="rejected"') \
$(metric "$1" '^sluice_store_errors_total\{') \
$(metric "$1" '^sluice_store_cached_rejections_total\{')"
}
node_counts() {  # PORT → "allowed rejected errors 0"
  curl -s "127.0.0.1:$1/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["allowed"], s["rejected"], s["errors"], 0)'
}

# Records one row of each table. NAME STORE SCENARIO RPS P50 P99 REQUESTS SERVER_TICKS
# REDIS_TICKS ALLOWED REJECTED ERRORS CACHED "REDIS_STATS before" "REDIS_STATS after"
# (SERVER_TICKS, ALLOWED, REJECTED, CACHED "-" where they do not apply).
record() {
  local out
  out=$(awk -v name="$1" -v store="$2" -v sc="$3" -v rps="$4" -v p50="$5" -v p99="$6" \
      -v n="$7" -v st="$8" -v rt="$9" -v al="${10}" -v rj="${11}" -v err="${12}" -v ca="${13}" \
      -v r0="${14}" -v r1="${15}" -v hz="$ticks" 'BEGIN {
    split(r0, a, " "); split(r1, b, " ")
    ev = b[1] - a[1]; cm = b[2] - a[2]; rd = b[3] - a[3]; us = b[4] - a[4]; err += b[5] - a[5]
    scpu = st == "-" ? "-" : sprintf("%.1f", st / hz * 1e6 / n)
    rcpu = rt / hz * 1e6 / n
    allowed = al == "-" || al + rj == 0 ? "-" : sprintf("%.1f", 100 * al / (al + rj))
    printf "| %-21s | %-6s | %-14s | %7.0f | %6.3f | %6.3f | %17s | %16.1f | %9s | %6d |\n",
           name, store, sc, rps, p50, p99, scpu, rcpu, allowed, err
    printf "| %-21s | %-14s | %13d | %11.2f | %18.2f | %12.1f | %17s | %20s | %17s |\n",
           name, sc, ev, ev / n, cm / n, rd ? ev / rd : 0, ca,
           ev ? sprintf("%.1f", rt / hz * 1e6 / ev) : "-", ev ? sprintf("%.1f", us / ev) : "-"
    printf "%s %s %s\n", scpu, ev ? rt / hz * 1e6 / ev : 0, rps }')
  main_rows+=("$(sed -n 1p <<<"$out")")
  [ "$2" = memory ] || redis_rows+=("$(sed -n 2p <<<"$out")")
  local cpu per_evalsha
  read -r cpu per_evalsha rps_of["$1/$2/$3"] <<<"$(sed -n 3p <<<"$out")"
  cpu_req["$1/$2/$3"]=$cpu
  [ "$2" = memory ] || redis_per_evalsha["$1/$3"]=$per_evalsha
}

# Runs wrk against one server. NAME STORE SCENARIO PID PORT COUNTS_FN
measure_wrk() {
  local name=$1 store=$2 scenario=$3 pid=$4 port=$5 counts=$6
  echo "redis_vs_peers: $name, $store store, $scenario" >&2
  local c0 c1 s0 s1 r0 r1 e0 e1
  c0=$($counts "$port"); r0=$(redis_stats); s0=$(cpu_ticks "$pid"); e0=$(cpu_ticks "$rpid")
  taskset -c 1 wrk -t1 -c32 -d"${duration}s" --latency -s "$work/check.lua" \
    "http://127.0.0.1:$port" > "$work/wrk.out"
  s1=$(cpu_ticks "$pid"); e1=$(cpu_ticks "$rpid"); r1=$(redis_stats); c1=$($counts "$port")
  local rps p50 p99 total sock
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
  p50=$(to_ms "$(awk '$1=="50%" {print $2}' "$work/wrk.out")")
  p99=$(to_ms "$(awk '$1=="99%" {print $2}' "$work/wrk.out")")
  total=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  sock=$(awk '/Socket errors/ {gsub(/[^0-9 ]/, " "); print $1 + $2 + $3 + $4}' "$work/wrk.out")
  local a0 j0 x0 k0 a1 j1 x1 k1
  read -r a0 j0 x0 k0 <<<"$c0"; read -r a1 j1 x1 k1 <<<"$c1"
  local cached=$((k1 - k0))
  [ "$name" = Sluice ] && [ "$store" = redis ] || cached=-
  record "$name" "$store" "$scenario" "$rps" "$p50" "$p99" "$total" $((s1 - s0)) $((e1 - e0)) \
    $((a1 - a0)) $((j1 - j0)) $((x1 - x0 + ${sock:-0})) "$cached" "$r0" "$r1"
}

# Answers "allowed" or "rejected" for one check of USER on PORT.
probe() {
  curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    -d "{\"user_id\":\"$2\"}" "127.0.0.1:$1/v1/ratelimit/check" |
    sed 's/^200$/allowed/; s/^429$/rejected/'
}
# The first check of a fresh user must be allowed; in rejected-heavy the second must not be.
sanity() {  # PORT SCENARIO USER
  local first second
  first=$(probe "$1" "$3")
  [ "$first" = allowed ] || { echo "sanity: first check of $3 on :$1 gave $first" >&2; exit 1; }
  if [ "$2" = rejected-heavy ]; then
    second=$(probe "$1" "$3")
    [ "$second" = rejected ] || { echo "sanity: second check of $3 gave $second" >&2; exit 1; }
  fi
}

declare -A evalsha_argv  # scenario → the EVALSHA Sluice sent, one argument per line

for scenario in allowed-heavy rejected-heavy; do
  if [ "$scenario" = allowed-heavy ]; then
    limit=1000000; seconds=1
  else
    limit=1; seconds=3600
  fi
  scenario_rules "$scenario" "$work/rules.yaml"

  # Sluice, Redis store then memory store.
  for store in redis memory; do
    rcli flushall >/dev/null
    port=$(free_port)
    cat > "$work/sluice.yaml" <<YAML
listen:
  http: 127.0.0.1:$port
  grpc: ""
store:
  backend: $store
  url: redis://127.0.0.1:$rport
rules:
  paths: [rules.yaml]
YAML
    taskset -c 0 "$sluice" serve --config "$work/sluice.yaml" > "$work/sluice.log" 2>&1 &
    spid=$!; pids+=("$spid")
    wait_http "$port" "$work/sluice.log"
    if [ "$store" = redis ]; then
      # The exact command of one check, for redis-benchmark: MONITOR around a sanity check.
      redis-cli -p "$rport" monitor > "$work/monitor.out" &
      mpid=$!; pids+=("$mpid")
      for _ in $(seq 50); do grep -q OK "$work/monitor.out" && break; sleep 0.05; done
      sanity "$port" "$scenario" user_PROBE
      sleep 0.2; kill "$mpid"; wait "$mpid" 2>/dev/null || true
      evalsha_argv[$scenario]=$(python3 - "$work/monitor.out" <<'PY'
import re, sys
for line in open(sys.argv[1]):
    if "]" not in line:
        continue
    args = [bytes(a, "ascii").decode("unicode_escape")
            for a in re.findall(r'"((?:[^"\\]|\\.)*)"', line.split("]", 1)[1])]
    if args and args[0].upper() == "EVALSHA" and any("PROBE" in a for a in args):
        print("\n".join(args)); break
PY
)
      [ -n "${evalsha_argv[$scenario]}" ] || { echo "no EVALSHA seen from Sluice" >&2; exit 1; }
    else
      sanity "$port" "$scenario" user_PROBE
    fi
    measure_wrk "Sluice" "$store" "$scenario" "$spid" "$port" sluice_counts
    kill "$spid"; wait "$spid" 2>/dev/null || true
  done

  # rate-limiter-flexible on ioredis, same Redis, same limit.
  rcli flushall >/dev/null
  port=$(free_port)
  PORT=$port REDIS_URL="redis://127.0.0.1:$rport" POINTS=$limit DURATION=$seconds \
    taskset -c 0 node bench/node/server.js > "$work/node.log" 2>&1 &
  npid=$!; pids+=("$npid")
  wait_http "$port" "$work/node.log"
  sanity "$port" "$scenario" user_PROBE
  measure_wrk "rate-limiter-flexible" "redis" "$scenario" "$npid" "$port" node_counts
  kill "$npid"; wait "$npid" 2>/dev/null || true
done

# --- the ceiling: redis-benchmark running Sluice's EVALSHA, keys over 100k users ---
built_sha=$(sed -n 's/.*kChargeScriptSha1 = "\([0-9a-f]*\)".*/\1/p' \
  "$bench_dir/src/store/redis/scripts.cc")
for scenario in allowed-heavy rejected-heavy; do
  mapfile -t argv <<<"${evalsha_argv[$scenario]}"
  [ "${argv[1]}" = "$built_sha" ] || { echo "Sluice sent ${argv[1]}, built $built_sha" >&2; exit 1; }
  [ "$(rcli script exists "${argv[1]}")" = 1 ] || { echo "script not loaded" >&2; exit 1; }
  argv=("${argv[@]//PROBE/__rand_int__}")
  rcli flushall >/dev/null
  rb() {  # REQUESTS → redis-benchmark's CSV line
    taskset -c 1 redis-benchmark -p "$rport" -c "$rb_clients" -P "$rb_pipeline" -r 100000 \
      -n "$1" --csv "${argv[@]}" | tail -1
  }
  # Size the run to about $duration seconds from a short one.
  n=$(rb 50000 | python3 -c 'import csv,sys; print(int(float(next(csv.reader(sys.stdin))[-7]) * '"$duration"'))')
  rcli flushall >/dev/null
  echo "redis_vs_peers: redis-benchmark, $scenario" >&2
  r0=$(redis_stats); e0=$(cpu_ticks "$rpid")
  line=$(rb "$n")
  e1=$(cpu_ticks "$rpid"); r1=$(redis_stats)
  read -r rps p50 p99 < <(python3 -c 'import csv,sys; r=next(csv.reader(sys.stdin)); print(r[-7], r[-4], r[-2])' <<<"$line")
  # Requests: the EVALSHAs Redis ran (redis-benchmark may send a pipeline's worth more than -n);
  # errors: those that failed (counted in record).
  ran=$(( $(cut -d' ' -f1 <<<"$r1") - $(cut -d' ' -f1 <<<"$r0") ))
  record "redis-benchmark" redis "$scenario" "$rps" "$p50" "$p99" "$ran" - $((e1 - e0)) - - \
    0 - "$r0" "$r1"
done

# --- report ---
echo "$(machine)," \
  "Redis $(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/'), node $(node --version)"
echo "CPU 0: the server under test and redis-server; CPU 1: wrk -t1 -c32, or" \
  "redis-benchmark -c $rb_clients -P $rb_pipeline -r 100000; ${duration}s per row"
echo
echo "| server                | store  | scenario       |   req/s | p50 ms | p99 ms | server CPU µs/req | Redis CPU µs/req | allowed % | errors |"
echo "|-----------------------|--------|----------------|---------|--------|--------|-------------------|------------------|-----------|--------|"
printf '%s\n' "${main_rows[@]}"
echo
echo "| client                | scenario       | EVALSHA calls | EVALSHA/req | Redis commands/req | EVALSHA/read | cached rejections | Redis CPU µs/EVALSHA | script µs/EVALSHA |"
echo "|-----------------------|----------------|---------------|-------------|--------------------|--------------|-------------------|----------------------|-------------------|"
printf '%s\n' "${redis_rows[@]}"
echo
for scenario in allowed-heavy rejected-heavy; do
  awk -v sc="$scenario" -v r="${cpu_req[Sluice/redis/$scenario]}" -v m="${cpu_req[Sluice/memory/$scenario]}" \
      -v s="${redis_per_evalsha[Sluice/$scenario]}" -v b="${redis_per_evalsha[redis-benchmark/$scenario]}" \
      -v q="${rps_of[Sluice/redis/$scenario]}" -v f="${rps_of[rate-limiter-flexible/redis/$scenario]}" 'BEGIN {
    printf "%s: Sluice CPU/decision Redis/memory %.2fx (target <= 2);", sc, r / m
    printf " Redis CPU/EVALSHA Sluice/redis-benchmark %.2fx (target within 25%%);", s / b
    printf " Sluice/rate-limiter-flexible throughput %.1fx (target >= 10)\n", q / f }'
done
