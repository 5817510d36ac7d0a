#!/usr/bin/env bash
# Sluice's Redis store modes (issue 14) side by side, against Sluice on the memory store and
# rate-limiter-flexible at its fastest, on one Redis, in one run.
#
# Modes (rows), each its own `sluice serve` (or Node server) started fresh for every measurement,
# after a FLUSHALL, on the same redis-server (its own, on a free loopback port, no persistence):
#   eval       exact, EVALSHA    store: {scripts: eval, coalesce: false}: one EVALSHA per check
#   fcall      exact, FCALL      store: {scripts: functions, coalesce: false}: one FCALL per check
#   coalesced  exact, coalesced  store: {scripts: functions, coalesce: true}: checks in flight
#                                 go to Redis together, one FCALL deciding many
#   leased     leased            store: {scripts: functions, coalesce: true, consistency: leased,
#                                 max_overshoot: 1%}: decided in memory from leased slices of quota
#   leased-fw  as leased, with the rule a fixed_window: a bucket's slice lives max_overshoot / rate
#              (10 ms at 1%), a window's to the window's end (docs/algorithms.md)
#   memory     Sluice on the memory store (no Redis): the ceiling for leased (target: leased
#              req/s >= 0.9x memory's)
#   rlf        rate-limiter-flexible 11.4 (RateLimiterRedis on ioredis, bench/node/server.js,
#              plain node:http) at its fastest: ioredis enableAutoPipelining, and
#              inMemoryBlockOnConsumed = points
# Every Sluice row has one rule: token_bucket (leased-fw: fixed_window) keyed on user_id, window 1 s; rate-limiter-flexible
# has the same points per 1 s (a fixed window: it has no token bucket).
#
# Workloads (WORKLOADS, default "hot many"): wrk posts /v1/ratelimit/check with a user picked at
# random per request from
#   hot           10 users (hot_1 … hot_10), limit 1 000 000 a second: every check allowed
#   many          100 000 users (user_1 … user_100000), limit 1 000 000 a second: every check allowed
#   hot-rejected  10 users, limit 100 a second: about 1 000 checks a second allowed, the rest 429
#
# Each measurement: the server starts, one probe check must be allowed, wrk warms it up (WARMUP,
# 2 s), then
#   closed loop: wrk -t1 -c$CONNS (64) --latency for SECONDS: req/s, p50, p99;
#   open loop:   bench_openloop (bench/openloop.cc) at half the req/s just measured, a fixed rate
#                of evenly spaced requests over CONNS connections, pipelining rather than waiting,
#                each latency timed from when the request was due (no coordinated omission; h2load
#                --rps sends one fixed body, so one user, and wakes each connection at most every
#                10 ms), for SECONDS: p99 and p99.9. Sluice's CPU, Redis's and the counters are
#                taken over the closed-loop run only.
# Columns (over the closed-loop run; "decision" = a check the server answered, allowed or
# rejected, from its own counters: sluice_requests_total, or the Node server's /stats):
#   req/s, p50, p99                wrk
#   Redis CPU µs/dec               utime + stime of redis-server (/proc/PID/stat) / decisions
#   Redis cmds/dec                 INFO commandstats: calls of every command (those scripts and
#                                  functions run included; INFO itself excluded) / decisions
#   store calls/dec                INFO commandstats: EVALSHA + EVAL + FCALL (+ _RO) calls /
#                                  decisions (a coalesced call counts once)
#   Sluice CPU µs/dec              utime + stime of the sluice process (rate-limiter-flexible's
#                                  row: the node process) / decisions
#   Sluice+Redis CPU µs/dec        the two added: what one decision costs the core they share
#   Redis CPU vs rlf               Redis CPU µs/dec over rate-limiter-flexible's, same workload
#   open-loop req/s, p99, p99.9    the open-loop run at half the closed-loop peak (each run's
#                                  line also has the generator's own lag; over 0.5 ms, a warning)
#   allowed %, errors              errors: store errors (sluice_store_errors_total; the Node
#                                  server's non-429 failures), wrk socket errors, and open-loop
#                                  answers other than 200/429 or missing
# Repetition: ROUNDS rounds (default 3); in each, every workload runs every mode in turn (so the
# modes alternate and share the machine's drift). Printed: each run, then the median of each
# column over the rounds (the ratio column from the medians) as a markdown table, and the
# leased / memory req/s ratio per workload.
#
# Pinning: the server under test AND redis-server on CPU 0, the load generator (wrk,
# bench_openloop) on CPU 1, as bench/redis_vs_peers.sh: a limiter and its store share one core,
# so req/s is bound by their CPU per decision added up.
#
# A mode whose config this sluice refuses (the issue-14 keys: scripts, coalesce, consistency,
# max_overshoot; checked with `sluice validate`, or the server failing to start) is skipped with a
# line saying so; the other rows still run.
#
# Usage: bench/redis_modes.sh [seconds]   (default 10 per run, closed and open loop each: with the
#   defaults about 3 rounds x 2 workloads x 6 modes x 23 s = 14 minutes)
# Environment: ROUNDS (3), CONNS (64), WARMUP (2), WORKLOADS ("hot many"; also hot-rejected),
#   MODES ("eval fcall coalesced leased memory rlf"), OPEN_LOOP (1; 0 skips the open-loop runs),
#   PRE_ISSUE14=1 writes the eval row without the issue-14 keys (today's store: one EVALSHA per
#   check), for a binary without them; SLUICE_BENCH_BIN measures another sluice binary.
# Needs node (20 or newer) and npm; runs `npm ci` in bench/node when node_modules is missing.
# Run it on an otherwise idle machine: the pinning keeps the programs apart, not others.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
duration=${1:-10}
rounds=${ROUNDS:-3}
conns=${CONNS:-64}
warmup=${WARMUP:-2}
read -r -a workloads <<<"${WORKLOADS:-hot many}"
read -r -a modes <<<"${MODES:-eval fcall coalesced leased leased-fw memory rlf}"
open_loop=${OPEN_LOOP:-1}
pre_issue14=${PRE_ISSUE14:-0}
for tool in node npm; do
  command -v "$tool" >/dev/null || {
    echo "redis_modes: '$tool' is missing: install Node.js 20 or newer with npm" \
         "(the rate-limiter-flexible row runs on it)" >&2
    exit 1
  }
done
require wrk taskset redis-server redis-cli python3 curl
if [ -n "${SLUICE_BENCH_BIN:-}" ]; then bench_build bench_openloop; else bench_build sluice bench_openloop; fi
sluice=$(realpath "$sluice")
openloop=$bench_dir/bench/bench_openloop
[ -d bench/node/node_modules ] || (cd bench/node && npm ci --no-audit --no-fund >/dev/null)

# --- Redis ---
rport=$(free_port)
taskset -c 0 redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$work" --logfile "$work/redis.log" &
rpid=$!; pids+=("$rpid")
rcli() { redis-cli -p "$rport" "$@"; }
for _ in $(seq 50); do [ "$(rcli ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
[ "$(rcli ping)" = PONG ] || { cat "$work/redis.log"; exit 1; }
redis_calls() {  # → "all_calls script_calls" from INFO commandstats (INFO itself left out)
  rcli info commandstats | tr -d '\r' | awk -F'[:=,]' '
    /^cmdstat_/ {
      name = substr($1, 9)
      if (name == "info") next
      all += $3
      if (name ~ /^(evalsha|eval|fcall|evalsha_ro|eval_ro|fcall_ro)$/) script += $3
    }
    END {print all + 0, script + 0}'
}

label() {
  case $1 in
    eval) if [ "$pre_issue14" = 1 ]; then echo "exact, EVALSHA (no issue-14 keys)"; else echo "exact, EVALSHA"; fi ;;
    fcall) echo "exact, FCALL" ;;
    coalesced) echo "exact, coalesced" ;;
    leased) echo "leased (1%)" ;;
    leased-fw) echo "leased (1%), fixed_window" ;;
    memory) echo "memory store" ;;
    rlf) echo "rate-limiter-flexible" ;;
    *) echo "redis_modes: unknown mode $1" >&2; exit 1 ;;
  esac
}
for mode in "${modes[@]}"; do label "$mode" >/dev/null; done

workload() {  # NAME → "users prefix limit"
  case $1 in
    hot) echo "10 hot_ 1000000" ;;
    many) echo "100000 user_ 1000000" ;;
    hot-rejected) echo "10 hot_ 100" ;;
    *) echo "redis_modes: unknown workload $1" >&2; exit 1 ;;
  esac
}
for w in "${workloads[@]}"; do workload "$w" >/dev/null; done

store_block() {  # MODE → the store: section of the server config
  local redis="  backend: redis
  url: redis://127.0.0.1:$rport"
  case $1 in
    eval)
      if [ "$pre_issue14" = 1 ]; then echo "$redis"
      else printf '%s\n  scripts: eval\n  coalesce: false\n' "$redis"; fi ;;
    fcall) printf '%s\n  scripts: functions\n  coalesce: false\n' "$redis" ;;
    coalesced) printf '%s\n  scripts: functions\n  coalesce: true\n' "$redis" ;;
    leased|leased-fw)
      printf '%s\n  scripts: functions\n  coalesce: true\n  consistency: leased\n  max_overshoot: 1%%\n' \
        "$redis" ;;
    memory) echo "  backend: memory" ;;
  esac
}

# Sums the samples of a metric whose line matches REGEX in Sluice's /metrics.
metric() { curl -s "127.0.0.1:$1/metrics" | awk -v re="$2" '$0 ~ re {s += $NF} END {print s + 0}'; }
sluice_counts() {  # PORT → "allowed rejected errors"
  echo "$(metric "$1" '^sluice_requests_total\{.*result="allowed"') \
$(metric "$1" '^sluice_requests_total\{.*result="rejected"') \
$(metric "$1" '^sluice_store_errors_total\{')"
}
node_counts() {  # PORT → "allowed rejected errors"
  curl -s "127.0.0.1:$1/stats" |
    python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["allowed"], s["rejected"], s["errors"])'
}

# Waits until the server PID answers HTTP on PORT; fails if it exits or takes over 10 s.
wait_up() {
  for _ in $(seq 100); do
    kill -0 "$2" 2>/dev/null || return 1
    curl -s -o /dev/null "127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  return 1
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

declare -A skipped  # mode → why
skip() {  # MODE REASON DETAIL_FILE
  skipped[$1]=$2
  echo "redis_modes: $(label "$1"): skipped: $2" >&2
  [ -s "$3" ] && sed 's/^/    /' "$3" | head -5 >&2
  return 0
}

# Starts MODE for WORKLOAD on a free port: sets srv_pid, srv_port, srv_counts. Fails (after
# recording the skip) when the config is refused or the server does not come up.
start_server() {
  local mode=$1 users prefix limit
  read -r users prefix limit <<<"$(workload "$2")"
  rcli flushall >/dev/null
  srv_port=$(free_port)
  if [ "$mode" = rlf ]; then
    PORT=$srv_port REDIS_URL="redis://127.0.0.1:$rport" POINTS=$limit DURATION=1 \
      AUTO_PIPELINING=1 BLOCK_ON_CONSUMED=$limit \
      taskset -c 0 node bench/node/server.js > "$work/server.log" 2>&1 &
    srv_pid=$!; pids+=("$srv_pid"); srv_counts=node_counts
  else
    cat > "$work/rules.yaml" <<YAML
rules:
  - id: per-user
    key: [user_id]
    limit: $limit
    window: 1s
    algorithm: $([ "$mode" = leased-fw ] && echo fixed_window || echo token_bucket)
YAML
    cat > "$work/sluice.yaml" <<YAML
listen:
  http: 127.0.0.1:$srv_port
  grpc: ""
store:
$(store_block "$mode")
rules:
  paths: [rules.yaml]
log:
  level: error
YAML
    if ! "$sluice" validate "$work/sluice.yaml" "$work/rules.yaml" > "$work/validate.out" 2>&1; then
      skip "$mode" "config refused (needs the issue-14 build)" "$work/validate.out"
      return 1
    fi
    taskset -c 0 "$sluice" serve --config "$work/sluice.yaml" > "$work/server.log" 2>&1 &
    srv_pid=$!; pids+=("$srv_pid"); srv_counts=sluice_counts
  fi
  if ! wait_up "$srv_port" "$srv_pid"; then
    stop "$srv_pid"
    if grep -qi 'unknown key\|unknown field\|not a known' "$work/server.log"; then
      skip "$mode" "config refused (needs the issue-14 build)" "$work/server.log"
    else
      skip "$mode" "the server did not start" "$work/server.log"
    fi
    return 1
  fi
  local answer
  answer=$(curl -s -o /dev/null -w '%{http_code}' -d '{"user_id":"probe_1"}' \
    "127.0.0.1:$srv_port/v1/ratelimit/check")
  if [ "$answer" != 200 ]; then
    stop "$srv_pid"
    echo "redis_modes: $(label "$mode"): the probe check answered $answer, not 200" >&2
    tail -5 "$work/server.log" >&2
    exit 1
  fi
}

# One run of MODE on WORKLOAD (round ROUND): appends a line to $work/runs.
results=$work/runs
: > "$results"
run() {
  local mode=$1 wl=$2 round=$3 users prefix limit
  read -r users prefix limit <<<"$(workload "$wl")"
  [ -z "${skipped[$mode]:-}" ] || return 0
  echo "redis_modes: round $round, $wl, $(label "$mode")" >&2
  start_server "$mode" "$wl" || return 0
  cat > "$work/check.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format(nil, "/v1/ratelimit/check", nil,
                    string.format('{"user_id":"$prefix%d"}', math.random(1, $users)))
end
LUA
  local url="http://127.0.0.1:$srv_port"
  taskset -c 1 wrk -t1 -c"$conns" -d"${warmup}s" -s "$work/check.lua" "$url" > /dev/null
  local c0 c1 r0 r1 s0 s1 e0 e1
  c0=$($srv_counts "$srv_port"); r0=$(redis_calls)
  s0=$(cpu_ticks "$srv_pid"); e0=$(cpu_ticks "$rpid")
  taskset -c 1 wrk -t1 -c"$conns" -d"${duration}s" --latency -s "$work/check.lua" "$url" \
    > "$work/wrk.out"
  s1=$(cpu_ticks "$srv_pid"); e1=$(cpu_ticks "$rpid")
  r1=$(redis_calls); c1=$($srv_counts "$srv_port")
  local rps p50 p99 sock
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
  p50=$(to_ms "$(awk '$1=="50%" {print $2}' "$work/wrk.out")")
  p99=$(to_ms "$(awk '$1=="99%" {print $2}' "$work/wrk.out")")
  sock=$(awk '/Socket errors/ {gsub(/[^0-9 ]/, " "); print $1 + $2 + $3 + $4}' "$work/wrk.out")
  local ol="- - - - -"
  if [ "$open_loop" = 1 ]; then
    local rate out
    rate=$(awk -v r="$rps" 'BEGIN {printf "%d", r / 2}')
    out=$(taskset -c 1 "$openloop" 127.0.0.1 "$srv_port" "$rate" "$duration" "$conns" \
      "$users" "$prefix")
    ol=$(awk '{for (i = 1; i <= NF; i++) {split($i, kv, "="); v[kv[1]] = kv[2]}
               print v["rate"], v["p99_ms"], v["p999_ms"], v["lag_p99_ms"], v["other"] + v["lost"]}' \
      <<<"$out")
  fi
  stop "$srv_pid"
  local a0 j0 x0 a1 j1 x1 all0 scr0 all1 scr1
  read -r a0 j0 x0 <<<"$c0"; read -r a1 j1 x1 <<<"$c1"
  read -r all0 scr0 <<<"$r0"; read -r all1 scr1 <<<"$r1"
  # wl mode round rps p50 p99 allowed rejected errors server_ticks redis_ticks calls
  # script_calls ol_rate ol_p99 ol_p999 ol_lag ol_errors
  echo "$wl $mode $round $rps $p50 $p99 $((a1 - a0)) $((j1 - j0)) $((x1 - x0 + ${sock:-0}))" \
    "$((s1 - s0)) $((e1 - e0)) $((all1 - all0)) $((scr1 - scr0)) $ol" >> "$results"
}

for round in $(seq "$rounds"); do
  for wl in "${workloads[@]}"; do
    for mode in "${modes[@]}"; do run "$mode" "$wl" "$round"; done
  done
done

# --- report ---
echo "$(machine), Redis $(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/')," \
  "node $(node --version), $("$sluice" version 2>/dev/null | head -1)" \
  "(commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ', src modified'))"
echo "CPU 0: the server under test and redis-server; CPU 1: wrk -t1 -c$conns (closed loop)," \
  "then bench_openloop over $conns connections at half that req/s (open loop); ${duration}s" \
  "each, after ${warmup}s of warm-up; rule token_bucket per user_id, window 1 s; $rounds round(s)"
for mode in "${modes[@]}"; do
  [ -z "${skipped[$mode]:-}" ] || echo "skipped: $(label "$mode"): ${skipped[$mode]}"
done
echo
labels=()
for mode in eval fcall coalesced leased leased-fw memory rlf; do labels+=("$mode=$(label "$mode")"); done
python3 - "$results" "$ticks" "${labels[@]}" <<'PY'
import statistics, sys

path, hz = sys.argv[1], float(sys.argv[2])
label = dict(a.split("=", 1) for a in sys.argv[3:])
order = list(label)
runs = []
for line in open(path):
    f = line.split()
    wl, mode, rnd = f[0], f[1], int(f[2])
    rps, p50, p99 = map(float, f[3:6])
    allowed, rejected, errors, sticks, rticks, calls, scalls = map(int, f[6:13])
    ol = [None if x == "-" else float(x) for x in f[13:18]]
    dec = allowed + rejected
    if dec == 0:
        sys.exit(f"redis_modes: {wl} {mode} round {rnd}: the server counted no decisions")
    runs.append(dict(
        wl=wl, mode=mode, round=rnd, rps=rps, p50=p50, p99=p99,
        redis=rticks / hz * 1e6 / dec, cmds=calls / dec, store=scalls / dec,
        server=sticks / hz * 1e6 / dec, both=(sticks + rticks) / hz * 1e6 / dec,
        allowed=100 * allowed / dec, errors=errors + (ol[4] or 0),
        ol_rate=ol[0], ol_p99=ol[1], ol_p999=ol[2], ol_lag=ol[3]))

def num(v, fmt):
    if v is None:
        return "–"
    if fmt == "int":
        return f"{v:,.0f}".replace(",", " ")
    return format(v, fmt)

print("Each run:")
print()
print("| workload | mode | round | req/s | p50 ms | p99 ms | Redis CPU µs/dec | Sluice CPU µs/dec"
      " | store calls/dec | open-loop req/s | OL p99 ms | OL p99.9 ms | OL generator lag p99 ms |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in runs:
    print(f"| {r['wl']} | {label[r['mode']]} | {r['round']} | {num(r['rps'], 'int')} | {r['p50']:.3f}"
          f" | {r['p99']:.3f} | {r['redis']:.1f} | {r['server']:.1f} | {r['store']:.3f}"
          f" | {num(r['ol_rate'], 'int')} | {num(r['ol_p99'], '.3f')} | {num(r['ol_p999'], '.3f')}"
          f" | {num(r['ol_lag'], '.3f')} |")
print()

cols = ["rps", "p50", "p99", "redis", "cmds", "store", "server", "both", "allowed", "errors",
        "ol_rate", "ol_p99", "ol_p999"]
med = {}
for wl in dict.fromkeys(r["wl"] for r in runs):
    for mode in order:
        rs = [r for r in runs if r["wl"] == wl and r["mode"] == mode]
        if not rs:
            continue
        m = {}
        for c in cols:
            vals = [r[c] for r in rs if r[c] is not None]
            m[c] = statistics.median(vals) if vals else None
        m["errors"] = sum(r["errors"] for r in rs)
        m["n"] = len(rs)
        med[wl, mode] = m

nrounds = max(r["round"] for r in runs)
print(f"Medians over {nrounds} round(s):")
print()
print("| workload | mode | req/s | p50 ms | p99 ms | Redis CPU µs/dec | Redis cmds/dec"
      " | store calls/dec | Sluice CPU µs/dec | Sluice+Redis CPU µs/dec | Redis CPU vs rlf"
      " | open-loop req/s | OL p99 ms | OL p99.9 ms | allowed % | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for (wl, mode), m in med.items():
    base = med.get((wl, "rlf"))
    ratio = (f"{m['redis'] / base['redis']:.2f}×" if base and base["redis"] > 0 else "–")
    print(f"| {wl} | {label[mode]} | {num(m['rps'], 'int')} | {m['p50']:.3f} | {m['p99']:.3f}"
          f" | {m['redis']:.1f} | {m['cmds']:.2f} | {m['store']:.3f} | {m['server']:.1f}"
          f" | {m['both']:.1f} | {ratio} | {num(m['ol_rate'], 'int')} | {num(m['ol_p99'], '.3f')}"
          f" | {num(m['ol_p999'], '.3f')} | {m['allowed']:.1f} | {m['errors']:.0f} |")
print()
print("(rate-limiter-flexible's row: \"Sluice CPU\" is the Node server's CPU.)")
late = [r for r in runs if r["ol_lag"] is not None and r["ol_lag"] > 0.5]
if late:
    print(f"warning: in {len(late)} of {len(runs)} open-loop runs the generator wrote its requests"
          f" late (lag p99 up to {max(r['ol_lag'] for r in late):.1f} ms): their latencies include"
          " its own delay. Was CPU 1 busy with something else?")
for wl in dict.fromkeys(r["wl"] for r in runs):
    for lm in ("leased", "leased-fw"):
      leased, memory = med.get((wl, lm)), med.get((wl, "memory"))
      if leased and memory:
        q = leased["rps"] / memory["rps"]
        print(f"{wl}: {lm} / memory store req/s {q:.2f}× (target >= 0.9: "
              f"{'met' if q >= 0.9 else 'not met'})")
PY
