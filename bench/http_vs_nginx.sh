#!/usr/bin/env bash
# Sluice's HTTP check endpoint against nginx limit_req, same load, same run.
#
# Both servers limit per user (100k distinct users, picked at random per request): Sluice keyed
# on user_id in the JSON body, nginx on an X-User header. Each server is pinned to CPU 0 and wrk
# to CPU 1. Two scenarios: allowed-heavy (a limit no user reaches) and rejected-heavy (1 request
# an hour per user, so after the first request per user every answer is a 429).
# Reports req/s, p50/p99 latency, and the server's CPU time per request from /proc/PID/stat —
# on 2 cores wrk saturates its own core, so CPU per request is what ranks the servers.
#
# Usage: bench/http_vs_nginx.sh [seconds]   (default 10)
# Run it on an otherwise idle machine: the pinning keeps the two programs apart, not others.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
duration=${1:-10}
require wrk taskset nginx python3 curl
bench_build sluice

check_lua "$work/sluice.lua"
cat > "$work/nginx.lua" <<'LUA'
request = function()
  return wrk.format("GET", "/check", {["X-User"] = string.format("user_%d", math.random(1, 100000))})
end
LUA

run_wrk() {  # URL SCRIPT → prints "rps p50 p99"
  taskset -c 1 wrk -t1 -c32 -d"${duration}s" --latency -s "$2" "$1" > "$work/wrk.out"
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
  p50=$(awk '$1=="50%" {print $2}' "$work/wrk.out")
  p99=$(awk '$1=="99%" {print $2}' "$work/wrk.out")
  local total; total=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  echo "$rps $p50 $p99 $total"
}

report() {  # NAME SCENARIO "rps p50 p99 total" CPU_TICKS
  read -r rps p50 p99 total <<<"$3"
  local us; us=$(awk -v t="$4" -v hz="$ticks" -v n="$total" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
  printf "| %-7s | %-15s | %9s | %7s | %7s | %6s |\n" "$1" "$2" "$rps" "$p50" "$p99" "$us"
}

machine
echo "| server  | scenario        |     req/s |     p50 |     p99 | CPU µs/req |"
echo "|---------|-----------------|-----------|---------|---------|------------|"

for scenario in allowed-heavy rejected-heavy; do
  if [ "$scenario" = allowed-heavy ]; then
    limit=1000000; window=1s; nginx_rate=100000r/s; burst=100000
  else
    limit=1; window=1h; nginx_rate=1r/m; burst=""  # nginx refuses burst=0: omit it
  fi

  # Sluice
  cat > "$work/rules.yaml" <<YAML
rules:
  - id: per-user
    key: [user_id]
    limit: $limit
    window: $window
    algorithm: fixed_window
YAML
  port=$(free_port)
  taskset -c 0 "$sluice" serve --http "127.0.0.1:$port" --grpc "" \
    --rules "$work/rules.yaml" > "$work/sluice.log" 2>&1 &
  spid=$!; pids+=("$spid")
  wait_http "$port" "$work/sluice.log"
  before=$(cpu_ticks "$spid")
  result=$(run_wrk "http://127.0.0.1:$port" "$work/sluice.lua")
  after=$(cpu_ticks "$spid")
  report sluice "$scenario" "$result" $((after - before))
  kill "$spid"; wait "$spid" 2>/dev/null || true

  # nginx limit_req, same key space and limit
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
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  limit_req_zone \$http_x_user zone=users:64m rate=$nginx_rate;
  server {
    listen 127.0.0.1:$port;
    location /check {
      limit_req zone=users${burst:+ burst=$burst} nodelay;
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
  workers=$(pgrep -P "$npid" || true)
  # shellcheck disable=SC2086  # one PID a word: the master and its workers
  before=$(cpu_ticks "$npid" $workers)
  result=$(run_wrk "http://127.0.0.1:$port" "$work/nginx.lua")
  # shellcheck disable=SC2086
  after=$(cpu_ticks "$npid" $workers)
  report nginx "$scenario" "$result" $((after - before))
  kill "$npid"; wait "$npid" 2>/dev/null || true
done
