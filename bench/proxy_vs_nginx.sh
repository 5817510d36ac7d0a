#!/usr/bin/env bash
# Sluice's gateway mode (CONTRACT §10, `proxy:`) against nginx `proxy_pass` + `limit_req`: the same
# upstream, the same rule, the same load, in one run.
#
# The upstream is a separate nginx answering `200 ok` (keep-alive) on CPU 1, where wrk runs too;
# the proxy under test runs alone on CPU 0, so its CPU time per proxied request (from
# /proc/PID/stat) is what ranks the two. Each proxy limits per user (an X-User header, 100k users
# picked at random per request), at its best configuration: nginx with an upstream keep-alive pool
# (`keepalive 64`, HTTP/1.1 to the upstream, access log off), Sluice with its keep-alive pool.
# Two scenarios: allowed-heavy (a limit no user reaches: every request is proxied) and
# rejected-heavy (1 request an hour per user: after each user's first, every answer is the proxy's
# own 429). Rounds alternate the two servers; the table gives the median of each column over the
# rounds, and every round is printed below it.
#
# Usage: bench/proxy_vs_nginx.sh [seconds] [rounds] [connections]   (default 10, 3, 32)
# Run it on an otherwise idle machine: the pinning keeps the programs apart, not others.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
duration=${1:-10}
rounds=${2:-3}
connections=${3:-32}
require wrk taskset nginx python3 curl
bench_build sluice

cat > "$work/users.lua" <<'LUA'
request = function()
  return wrk.format("GET", "/api/items", {["X-User"] = string.format("user_%d", math.random(1, 100000))})
end
LUA

nginx_conf() {  # FILE PREFIX BODY → an nginx config with BODY inside http {}
  mkdir -p "$2"
  cat > "$1" <<CONF
worker_processes 1;
daemon off;
pid $2/nginx.pid;
error_log $2/error.log crit;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $2;
  proxy_temp_path $2;
  fastcgi_temp_path $2;
  uwsgi_temp_path $2;
  scgi_temp_path $2;
  $3
}
CONF
}

# The upstream both proxies forward to.
upstream_port=$(free_port)
nginx_conf "$work/upstream.conf" "$work/upstream" "
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$upstream_port backlog=4096;
    location / { default_type text/plain; return 200 'ok'; }
  }"
taskset -c 1 nginx -c "$work/upstream.conf" -p "$work/upstream" 2>/dev/null &
pids+=($!)
wait_http "$upstream_port" "$work/upstream/error.log"

run_wrk() {  # URL → prints "rps p50 p99 total non2xx"
  taskset -c 1 wrk -t1 -c"$connections" -d"${duration}s" --latency -s "$work/users.lua" "$1" \
    > "$work/wrk.out"
  local rps p50 p99 total non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
  p50=$(to_ms "$(awk '$1=="50%" {print $2}' "$work/wrk.out")")
  p99=$(to_ms "$(awk '$1=="99%" {print $2}' "$work/wrk.out")")
  total=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/wrk.out")
  echo "$rps $p50 $p99 $total ${non2xx:-0}"
}

# Each measurement appends "server scenario rps p50 p99 cpu_us non2xx/total" to $work/rows.
measure() {  # NAME SCENARIO URL PID...
  local name=$1 scenario=$2 url=$3; shift 3
  local before after result
  before=$(cpu_ticks "$@")
  result=$(run_wrk "$url")
  after=$(cpu_ticks "$@")
  read -r rps p50 p99 total non2xx <<<"$result"
  local us; us=$(awk -v t=$((after - before)) -v hz="$ticks" -v n="$total" \
    'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
  echo "$name $scenario $rps $p50 $p99 $us $non2xx/$total" >> "$work/rows"
}

sluice_round() {  # SCENARIO LIMIT WINDOW
  cat > "$work/rules.yaml" <<YAML
rules:
  - id: per-user
    key: [user_id]
    limit: $2
    window: $3
    algorithm: fixed_window
YAML
  local port; port=$(free_port)
  cat > "$work/sluice.yaml" <<YAML
listen: {http: "", grpc: ""}
proxy:
  listen: 127.0.0.1:$port
  upstream: http://127.0.0.1:$upstream_port
  identity:
    user_id: header:X-User
rules:
  paths: [rules.yaml]
log: {level: error}
YAML
  taskset -c 0 "$sluice" serve --config "$work/sluice.yaml" > "$work/sluice.log" 2>&1 &
  local spid=$!; pids+=("$spid")
  wait_http "$port" "$work/sluice.log"
  measure sluice "$1" "http://127.0.0.1:$port" "$spid"
  kill "$spid"; wait "$spid" 2>/dev/null || true
}

nginx_round() {  # SCENARIO RATE BURST
  local port; port=$(free_port)
  nginx_conf "$work/proxy.conf" "$work/proxy" "
  limit_req_zone \$http_x_user zone=users:64m rate=$2;
  upstream backend { server 127.0.0.1:$upstream_port; keepalive 64; }
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / {
      limit_req zone=users${3:+ burst=$3} nodelay;
      limit_req_status 429;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_pass http://backend;
    }
  }"
  taskset -c 0 nginx -c "$work/proxy.conf" -p "$work/proxy" 2>/dev/null &
  local npid=$!; pids+=("$npid")
  wait_http "$port" "$work/proxy/error.log"
  local workers; workers=$(pgrep -P "$npid" || true)
  # shellcheck disable=SC2086  # one PID a word: the master and its workers
  measure nginx "$1" "http://127.0.0.1:$port" "$npid" $workers
  kill "$npid"; wait "$npid" 2>/dev/null || true
}

machine
echo "duration ${duration}s, $rounds rounds, $connections connections; proxy on CPU 0, upstream + wrk on CPU 1"
for round in $(seq "$rounds"); do
  for scenario in allowed-heavy rejected-heavy; do
    if [ "$scenario" = allowed-heavy ]; then
      args_sluice=(1000000 1s); args_nginx=(100000r/s 100000)
    else
      args_sluice=(1 1h); args_nginx=(1r/m "")  # nginx refuses burst=0: omit it
    fi
    # Alternate which server goes first, round by round.
    if [ $((round % 2)) -eq 1 ]; then
      sluice_round "$scenario" "${args_sluice[@]}"; nginx_round "$scenario" "${args_nginx[@]}"
    else
      nginx_round "$scenario" "${args_nginx[@]}"; sluice_round "$scenario" "${args_sluice[@]}"
    fi
  done
done

python3 - "$work/rows" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
def med(server, scenario, col):
    return statistics.median(float(r[col]) for r in rows if r[0] == server and r[1] == scenario)
print("| scenario | server | req/s | p50 ms | p99 ms | proxy CPU µs/request | ratio to nginx (CPU, p99) |")
print("|---|---|---|---|---|---|---|")
for scenario in ("allowed-heavy", "rejected-heavy"):
    n_cpu, n_p99 = med("nginx", scenario, 5), med("nginx", scenario, 4)
    for server in ("sluice", "nginx"):
        cpu, p99 = med(server, scenario, 5), med(server, scenario, 4)
        ratio = f"{cpu / n_cpu:.2f}×, {p99 / n_p99:.2f}×" if server == "sluice" else "1, 1"
        print(f"| {scenario} | {server} | {med(server, scenario, 2):.0f} | "
              f"{med(server, scenario, 3):.3f} | {p99:.3f} | {cpu:.1f} | {ratio} |")
print()
print("every round (server scenario req/s p50 p99 cpu-µs non-2xx/total):")
for r in rows:
    print("  " + " ".join(r))
PY
