#!/usr/bin/env bash
# A soak: one `sluice` on a real Redis for DURATION minutes (default 30) under a mixed load, with
# the faults of a long life, reporting every minute what leaks would show.
#   - load: `wrk` with 32 connections, a fixed rate-ish mix of checks over 100k users, endpoints
#     and four rules of different algorithms (allowed, rejected, penalties, a shadow rule), in
#     one-minute runs (each minute's p50/p99 are its own);
#   - rules reloaded every 10 s (the file rewritten with a new limit: a new rules version);
#   - Redis killed and restarted every 5 minutes (on_failure: local covers the gap);
#   - clients that leave mid-request: every second, 20 connections send half a request and
#     close, 20 send a header promising a body and close.
# Every minute: RSS, open file descriptors and threads of the server, checks/s, p50/p99 (wrk's),
# and the errors the server logged by event; at the end, RSS growth after the warm-up, and whether
# fds and threads stayed flat. The warm-up ends with minute 6, after the first Redis outage
# (minute 5) has filled the local fallback store with the counters of the users it saw and the
# sweeper has emptied it again.
# The stats API (CONTRACT §9) keeps the last hour: a ring of 3600 one-second buckets and 60
# one-minute key summaries, which fill for the first hour of a server's life and then stay at
# their size (src/stats/recorder.h). SOAK_STATS=off runs the soak without them, so that a run
# shorter than an hour shows what else grows.
# Usage: [SOAK_STATS=off] bench/soak.sh [MINUTES]
source "$(dirname "$0")/lib.sh"
require wrk redis-server curl python3
minutes=${1:-30}
bench_build sluice

redis_port=$(free_port)
http_port=$(free_port)
start_redis() {
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --loglevel warning >"$work/redis.log" 2>&1 &
  redis_pid=$!
  pids+=("$redis_pid")
  for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return; sleep 0.1; done
}
start_redis
# Restarted Redis servers are not in `pids`: stopped by their port.
soak_cleanup() {
  pkill -9 -f "redis-server 127.0.0.1:$redis_port" 2>/dev/null || true
  bench_cleanup
}
trap soak_cleanup EXIT

rules() {  # rules LIMIT: the soak's rules, with the per-user limit given (a reload changes it)
  cat >"$work/rules.yaml.new" <<YAML
rules:
  - {id: per-user, key: [user_id], limit: $1, window: 1s, algorithm: sliding_window_counter}
  - {id: login, match: {endpoint: /login}, key: [user_id], limit: 2, window: 10s,
     algorithm: fixed_window, penalty: {after: 5, within: 1m, ban: 30s}}
  - {id: search, match: {endpoint: "/search*"}, key: [], limit: 20000, window: 1s,
     algorithm: token_bucket, burst: 2000}
  - {id: shadow-gcra, key: [user_id], limit: 5, window: 1s, algorithm: gcra, mode: shadow}
YAML
  mv "$work/rules.yaml.new" "$work/rules.yaml"
}
rules 50
case ${SOAK_STATS:-on} in
  on) SOAK_STATS_ENABLED=true ;;
  off) SOAK_STATS_ENABLED=false ;;
  *) echo "soak: SOAK_STATS is on or off" >&2; exit 2 ;;
esac
cat >"$work/sluice.yaml" <<YAML
listen:
  http: 127.0.0.1:$http_port
  grpc: ""
store:
  backend: redis
  url: redis://127.0.0.1:$redis_port/0
  timeout: 50ms
  on_failure: local
rules:
  paths: [rules.yaml]
log:
  level: warn
  format: json
stats:
  enabled: ${SOAK_STATS_ENABLED}
YAML
"$sluice" serve --config "$work/sluice.yaml" >"$work/sluice.log" 2>&1 &
server=$!
pids+=("$server")
wait_http "$http_port" "$work/sluice.log"

cat >"$work/mix.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local endpoints = {"/api/orders", "/api/items", "/search", "/search/advanced", "/login"}
request = function()
  local e = endpoints[math.random(#endpoints)]
  local user = math.random(1, 100000)
  if e == "/login" then user = math.random(1, 200) end  -- a few users hammer /login
  return wrk.format(nil, "/v1/ratelimit/check", nil,
                    string.format('{"user_id":"user_%d","endpoint":"%s"}', user, e))
end
LUA

# Clients that leave mid-request.
python3 - "$http_port" >"$work/leavers.log" 2>&1 <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
while True:
    for i in range(40):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            if i % 2:
                s.sendall(b"POST /v1/ratelimit/check HTTP/1.1\r\nHost: x\r\nContent-Le")
            else:
                s.sendall(b"POST /v1/ratelimit/check HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Length: 100\r\n\r\n{\"user_id\":")
            s.close()
        except OSError:
            pass
    time.sleep(1)
PY
pids+=("$!")

# Reloads every 10 s, Redis restarts every 5 minutes.
(
  n=0
  while true; do
    sleep 10
    n=$((n + 1))
    rules $((50 + n % 7))
  done
) &
pids+=("$!")

sample() {  # RSS_MB FDS THREADS of the server
  local rss threads fds
  rss=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$server/status")
  threads=$(awk '/Threads/ {print $2}' "/proc/$server/status")
  fds=$(find "/proc/$server/fd" -mindepth 1 -maxdepth 1 | wc -l)
  echo "$rss $fds $threads"
}

machine
echo "soak: $minutes min, stats ${SOAK_STATS:-on}; per minute: rss_mb fds threads checks/s p50_ms p99_ms errors(logged, by event)"
printf '%-6s %8s %5s %7s %9s %8s %8s  %s\n' minute rss_mb fds threads checks/s p50_ms p99_ms errors
log_lines=0
declare -a rss_series fds_series threads_series
for minute in $(seq 1 "$minutes"); do
  if [ $((minute % 5)) -eq 0 ]; then  # Redis restarts, 20 s into the minute
    (sleep 20; pkill -9 -f "redis-server 127.0.0.1:$redis_port"; sleep 2; start_redis) &
  fi
  wrk -t1 -c32 -d60s --latency -s "$work/mix.lua" "http://127.0.0.1:$http_port" >"$work/wrk.txt" 2>&1 || true
  rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$work/wrk.txt")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$work/wrk.txt")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")")
  read -r rss fds threads <<<"$(sample)"
  rss_series+=("$rss"); fds_series+=("$fds"); threads_series+=("$threads")
  errors=$(tail -n +"$((log_lines + 1))" "$work/sluice.log" | python3 -c '
import json, sys, collections
c = collections.Counter()
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        c["(not json)"] += 1
        continue
    if e.get("level") in ("error", "warning", "warn", "critical"):
        c[e.get("event", "?")] += 1
print(" ".join(f"{k}={v}" for k, v in sorted(c.items())) or "-")')
  log_lines=$(wc -l <"$work/sluice.log")
  printf '%-6s %8s %5s %7s %9s %8s %8s  %s\n' "$minute" "$rss" "$fds" "$threads" "$rps" "$p50" "$p99" "$errors"
done

python3 - "${rss_series[*]}" "${fds_series[*]}" "${threads_series[*]}" <<'PY'
import sys
rss = [float(x) for x in sys.argv[1].split()]
fds = [int(x) for x in sys.argv[2].split()]
threads = [int(x) for x in sys.argv[3].split()]
warm = min(6, len(rss)) - 1  # after the warm-up: the end of minute 6
base = rss[warm]
print(f"rss: {base:.1f} MiB after warm-up (minute {warm + 1}), {rss[-1]:.1f} MiB at the end: "
      f"{(rss[-1] - base) / base * 100:+.1f} % (max {max(rss[warm:]):.1f} after warm-up)")
print(f"fds: min {min(fds)} max {max(fds)}; threads: min {min(threads)} max {max(threads)}")
PY
kill -0 "$server" && echo "server: still serving" || { echo "server: exited"; exit 1; }
