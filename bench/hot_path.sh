#!/usr/bin/env bash
# The hot path, measured side by side in one run: Sluice's HTTP check against nginx limit_req,
# closed and open loop, gRPC against HTTP, and the memory store alone.
#
#   1. Closed loop. Both servers limit per user over 100k random users: Sluice keyed on user_id
#      in the JSON body of POST /v1/ratelimit/check (the full JSON answer and all five limit
#      headers), nginx limit_req keyed on an X-User header of GET /check. Each server alone on
#      CPU 0, `wrk -t1 -c64` on CPU 1. allowed-heavy: a limit no user reaches; rejected-heavy:
#      1 request an hour per user, so after a user's first request every answer is a 429.
#      PAIRS pairs per scenario, alternating which server goes first; each run on a freshly
#      started server. Server CPU per request (user + system, from /proc/PID/stat) is what ranks
#      servers on 2 cores: wrk saturates its own core. Medians over the pairs, and each run.
#   2. Open loop: bench_openloop (a fixed request rate, latency from each request's due time, no
#      coordinated omission) at half of Sluice's median allowed-heavy req/s, 64 connections, on
#      both servers: p50, p99, p99.9.
#   3. gRPC ShouldRateLimit against the HTTP check (bench/grpc_vs_http.sh), and the ratio of their
#      CPU per call at 64 in flight.
#   4. The memory store alone (bench_memory_store, one thread): a hot key and 1M uniform keys for
#      every algorithm; bytes per key kept (bench_memory_per_key).
#
# Usage: bench/hot_path.sh [seconds] [pairs] [parts]   (defaults: 10, 3, "closed open grpc store")
# Run it on an otherwise idle machine: the pinning keeps the programs apart, not others.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
duration=${1:-10}
pairs=${2:-3}
parts=${3:-closed open grpc store}
require wrk taskset nginx python3 curl
bench_build sluice bench_openloop bench_memory_store bench_memory_per_key
openloop=$bench_dir/bench/bench_openloop
conns=${CONNS:-64}  # CONNS=32: the load of the earlier figures in docs/benchmarks.md
users=100000

check_lua "$work/sluice.lua"
cat > "$work/nginx.lua" <<'LUA'
request = function()
  return wrk.format("GET", "/check", {["X-User"] = string.format("user_%d", math.random(1, 100000))})
end
LUA

# --- servers ---
start_sluice() {  # SCENARIO → sets spid, port
  scenario_rules "$1" "$work/rules.yaml"
  port=$(free_port)
  taskset -c 0 "$sluice" serve --http "127.0.0.1:$port" --grpc "" \
    --rules "$work/rules.yaml" > "$work/sluice.log" 2>&1 &
  spid=$!; pids+=("$spid")
  wait_http "$port" "$work/sluice.log"
  server_pids=$spid
}

start_nginx() {  # SCENARIO → sets npid, port, server_pids (master and worker)
  local rate burst
  if [ "$1" = allowed-heavy ]; then rate=100000r/s; burst=" burst=100000"; else rate=1r/m; burst=""; fi
  port=$(free_port)
  mkdir -p "$work/nginx"
  cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log crit;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  limit_req_zone \$http_x_user zone=users:64m rate=$rate;
  server {
    listen 127.0.0.1:$port;
    location /check {
      limit_req zone=users$burst nodelay;
      limit_req_status 429;
      default_type application/json;
      return 200 '{"allowed":true}';
    }
  }
}
CONF
  taskset -c 0 nginx -c "$work/nginx.conf" -p "$work/nginx" 2>/dev/null &
  npid=$!; pids+=("$npid")
  wait_http "$port" "$work/nginx/error.log"
  server_pids="$npid $(pgrep -P "$npid" | tr '\n' ' ')"
}

stop_server() {
  local p
  for p in $server_pids; do kill "$p" 2>/dev/null || true; done
  for p in $server_pids; do wait "$p" 2>/dev/null || true; done
}

user_sys() {  # PID... → "utime stime" summed, in ticks
  local p u=0 s=0 a b
  for p in "$@"; do
    read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat")
    u=$((u + a)); s=$((s + b))
  done
  echo "$u $s"
}

# Runs wrk against the server started last; appends "SCENARIO SERVER rps p50 p99 user_us sys_us".
closed_run() {  # SCENARIO SERVER
  local lua=$work/sluice.lua path=/
  [ "$2" = nginx ] && lua=$work/nginx.lua
  local u0 s0 u1 s1
  # shellcheck disable=SC2086  # one PID a word
  read -r u0 s0 < <(user_sys $server_pids)
  taskset -c 1 wrk -t1 -c"$conns" -d"${duration}s" --latency -s "$lua" "http://127.0.0.1:$port$path" \
    > "$work/wrk.out"
  # shellcheck disable=SC2086
  read -r u1 s1 < <(user_sys $server_pids)
  awk -v sc="$1" -v sv="$2" -v u="$((u1 - u0))" -v s="$((s1 - s0))" -v hz="$ticks" '
    function ms(v,  n, unit) { n = v + 0; unit = v; sub(/^[0-9.]+/, "", unit)
      if (unit == "us") n /= 1000; else if (unit == "s") n *= 1000; return n }
    /requests in/ { n = $1 } /Requests\/sec/ { rps = $2 } $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx|Socket errors/ { errors = errors $0 }
    END { printf "%s %s %.0f %.3f %.3f %.2f %.2f\n", sc, sv, rps, p50, p99,
          u / hz * 1e6 / n, s / hz * 1e6 / n }' "$work/wrk.out" >> "$work/closed.txt"
  tail -n 1 "$work/closed.txt" | awk '{printf "  run: %-14s %-6s %8s req/s  p50 %6.3f ms  p99 %6.3f ms  CPU %5.2f µs (user %5.2f, sys %5.2f)\n", $1, $2, $3, $4, $5, $6 + $7, $6, $7}'
}

machine
echo "load: wrk -t1 -c$conns on CPU 1, each server alone on CPU 0, $users users, ${duration}s a run"

if [[ " $parts " == *" closed "* ]]; then
  echo "== closed loop: $pairs pairs per scenario, alternating"
  : > "$work/closed.txt"
  for scenario in allowed-heavy rejected-heavy; do
    for pair in $(seq "$pairs"); do
      order="sluice nginx"
      [ $((pair % 2)) -eq 0 ] && order="nginx sluice"
      for server in $order; do
        if [ "$server" = sluice ]; then start_sluice "$scenario"; else start_nginx "$scenario"; fi
        closed_run "$scenario" "$server"
        stop_server
      done
    done
  done
  python3 - "$work/closed.txt" <<'PY'
import statistics, sys
runs = [line.split() for line in open(sys.argv[1]) if line.strip()]
med = lambda sc, sv, i: statistics.median(float(r[i]) for r in runs if r[0] == sc and r[1] == sv)
cpu = lambda sc, sv: statistics.median(float(r[5]) + float(r[6]) for r in runs if r[0] == sc and r[1] == sv)
print()
print("| | Sluice | nginx `limit_req` | ratio |")
print("|---|---|---|---|")
for sc in ("allowed-heavy", "rejected-heavy"):
    s, n = cpu(sc, "sluice"), cpu(sc, "nginx")
    print(f"| server CPU µs per check, {sc} | {s:.1f} | {n:.1f} | {s / n:.2f}× |")
    su, nu = med(sc, "sluice", 5), med(sc, "nginx", 5)
    ss, ns = med(sc, "sluice", 6), med(sc, "nginx", 6)
    print(f"| — of which user / system, {sc} | {su:.1f} / {ss:.1f} | {nu:.1f} / {ns:.1f} | "
          f"{su / nu:.2f}× / {ss / ns:.2f}× |")
for sc in ("allowed-heavy", "rejected-heavy"):
    for q, i in (("p50", 3), ("p99", 4)):
        s, n = med(sc, "sluice", i), med(sc, "nginx", i)
        print(f"| {q} at saturation, {sc} | {s:.2f} ms | {n:.2f} ms | {s / n:.2f}× |")
for sc in ("allowed-heavy", "rejected-heavy"):
    s, n = med(sc, "sluice", 2), med(sc, "nginx", 2)
    print(f"| req/s at saturation, {sc} | {s:,.0f} | {n:,.0f} | {s / n:.2f}× |")
print()
# The machine's speed drifts between runs; the two runs of a pair are back to back, so the ratio
# within each pair is the steadier figure.
for sc in ("allowed-heavy", "rejected-heavy"):
    s = [float(r[5]) + float(r[6]) for r in runs if r[0] == sc and r[1] == "sluice"]
    n = [float(r[5]) + float(r[6]) for r in runs if r[0] == sc and r[1] == "nginx"]
    ratios = sorted(a / b for a, b in zip(s, n))
    print(f"CPU ratio within each pair, {sc}: " + ", ".join(f"{r:.2f}×" for r in ratios) +
          f" (median {statistics.median(ratios):.2f}×)")
print()
PY
  peak=$(awk '$1 == "allowed-heavy" && $2 == "sluice" {print $3}' "$work/closed.txt" | sort -n |
    awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
fi

if [[ " $parts " == *" open "* ]]; then
  peak=${peak:-$(start_sluice allowed-heavy; taskset -c 1 wrk -t1 -c"$conns" -d"${duration}s" \
    -s "$work/sluice.lua" "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print int($2)}'; stop_server)}
  rate=$((${peak%.*} / 2))
  echo "== open loop: $rate req/s (half of Sluice's allowed-heavy peak $peak), $conns connections, ${duration}s"
  for server in sluice nginx; do
    mode=""
    if [ "$server" = sluice ]; then start_sluice allowed-heavy; else start_nginx allowed-heavy; mode=header; fi
    # shellcheck disable=SC2086  # mode: one word or none
    out=$(taskset -c 1 "$openloop" 127.0.0.1 "$port" "$rate" "$duration" "$conns" "$users" user_ $mode)
    stop_server
    echo "  $server: $out"
    echo "$server $out" >> "$work/open.txt"
  done
  python3 - "$work/open.txt" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    name, *pairs = line.split()
    rows[name] = dict(p.split("=", 1) for p in pairs if "=" in p)
print()
print("| open loop, half of Sluice's peak | Sluice | nginx `limit_req` | ratio |")
print("|---|---|---|---|")
for key in ("p50_ms", "p99_ms", "p999_ms", "max_ms"):
    s, n = float(rows["sluice"].get(key, "nan")), float(rows["nginx"].get(key, "nan"))
    label = {"p999_ms": "p99.9"}.get(key, key[:-3])
    print(f"| {label} | {s:.3f} ms | {n:.3f} ms | {s / n:.2f}× |")
print(f"| generator lag p99 (valid below ~0.1 ms) | {rows['sluice'].get('lag_p99_ms')} ms | "
      f"{rows['nginx'].get('lag_p99_ms')} ms | |")
print()
PY
fi

if [[ " $parts " == *" grpc "* ]]; then
  echo "== gRPC against HTTP (bench/grpc_vs_http.sh $duration)"
  bench/grpc_vs_http.sh "$duration" | tee "$work/grpc.txt"
  awk -F'|' '/64 in flight/ && /gRPC/ {g = $7 + 0} /64 in flight/ && /ratelimit\/check/ {h = $7 + 0}
    END { if (h > 0) printf "\ngRPC ShouldRateLimit CPU per call at 64 in flight: %.1f µs, %.2f× the HTTP check (%.1f µs)\n\n", g, g / h, h }' \
    "$work/grpc.txt"
fi

if [[ " $parts " == *" store "* ]]; then
  echo "== memory store, one thread: decisions/s (hot key; 1M uniform keys), bytes per key"
  "$bench_dir/bench/bench_memory_store" --benchmark_min_time=1 \
    --benchmark_filter='BM_MemoryStore/[0-5]/[01]/real_time/threads:1$'
  "$bench_dir/bench/bench_memory_per_key" 1000000
fi
