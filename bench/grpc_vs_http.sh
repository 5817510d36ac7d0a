#!/usr/bin/env bash
# gRPC ShouldRateLimit against the HTTP check endpoints, same server, same run.
#
# One `sluice serve` (memory store) pinned to CPU 0 serves both faces; the load generator runs on
# CPU 1: h2load for gRPC (unary calls, a length-prefixed RateLimitRequest as the body), wrk for
# HTTP/1.1 (POST /v1/ratelimit/check with a Sluice rule, and POST /json with the very same Envoy
# request as gRPC). Every request hits one hot key whose limit is never reached, so every answer
# is a full check (OK / 200). Three loads per endpoint: 1, 8 and 64 requests in flight (gRPC: 1
# connection x 1 stream, 2 x 4 and 4 x 16, as Envoy multiplexes; HTTP/1.1: 1, 8 and 64
# connections). Closed loop: from 8 in flight on, the server's core is saturated and latency is
# mostly queueing; 1 in flight is the latency of an unloaded server.
# Reports calls/s, p50/p99 latency and the server's CPU time per call (from /proc/PID/stat): on
# two cores the load generator saturates its own core, so CPU per call is what compares faces.
#
# Usage: bench/grpc_vs_http.sh [seconds]   (default 10)
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
duration=${1:-10}
require h2load nghttp wrk taskset python3 curl
bench_build sluice

# --- rules: one Sluice rule and one Envoy domain, both far above what the run can reach ---
mkdir -p "$work/rules"
cat > "$work/rules/bench-rules.yaml" <<'YAML'
rules:
  - id: bench
    key: [user_id]
    limit: 1000000000
    window: 1h
    algorithm: fixed_window
YAML
cat > "$work/rules/bench-envoy.yaml" <<'YAML'
domain: bench
descriptors:
  - key: user
    rate_limit:
      unit: hour
      requests_per_unit: 1000000000
YAML

# --- request bodies ---
# RateLimitRequest{domain: "bench", descriptors: [{entries: [{key: "user", value: "bench"}]}]},
# protobuf-encoded by hand (rls.proto field numbers), then framed as a gRPC message: a zero
# compression flag and a 4-byte big-endian length.
python3 - "$work/grpc.bin" <<'PY'
import struct, sys
def field(number, payload):  # a length-delimited field (wire type 2); payloads here are < 128 B
    return bytes([number << 3 | 2, len(payload)]) + payload
entry = field(1, b"user") + field(2, b"bench")
request = field(1, b"bench") + field(2, field(1, entry))
open(sys.argv[1], "wb").write(b"\0" + struct.pack(">I", len(request)) + request)
PY
printf '%s' '{"domain":"bench","descriptors":[{"entries":[{"key":"user","value":"bench"}]}]}' \
  > "$work/json.body"
cat > "$work/post.lua" <<'LUA'
-- POST the file named by the BODY environment variable with a JSON content type.
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
wrk.headers["Content-Type"] = "application/json"
f:close()
LUA
printf '%s' '{"user_id":"bench"}' > "$work/check.body"

# --- server ---
http_port=$(free_port)
grpc_port=$(free_port)
taskset -c 0 "$sluice" serve --http "127.0.0.1:$http_port" --grpc "127.0.0.1:$grpc_port" \
  --rules "$work/rules" > "$work/sluice.log" 2>&1 &
spid=$!; pids+=("$spid")
for _ in $(seq 100); do grep -q '"event":"started"' "$work/sluice.log" && break; sleep 0.1; done
grep -q '"event":"started"' "$work/sluice.log" || { cat "$work/sluice.log"; exit 1; }
grpc_url="http://127.0.0.1:$grpc_port/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
grpc_headers=(-H 'content-type: application/grpc' -H 'te: trailers')

# Sanity: one call of each kind must be a real OK answer, not an error that still counts as 2xx.
nghttp -v -d "$work/grpc.bin" "${grpc_headers[@]}" "$grpc_url" > "$work/nghttp.out" 2>&1 || true
grep -q 'grpc-status: 0' "$work/nghttp.out" || { echo "gRPC sanity call failed:"; cat "$work/nghttp.out"; exit 1; }
curl -sf -d @"$work/json.body" "127.0.0.1:$http_port/json" | grep -q '"overallCode":"OK"' ||
  { echo "POST /json sanity call failed"; exit 1; }
curl -sf -d @"$work/check.body" -H 'Content-Type: application/json' \
  "127.0.0.1:$http_port/v1/ratelimit/check" | grep -q '"allowed":true' ||
  { echo "POST /v1/ratelimit/check sanity call failed"; exit 1; }

# --- load ---
row() {  # FACE LOAD CALLS SECONDS P50_MS P99_MS CPU_TICKS ERRORS
  awk -v face="$1" -v load="$2" -v n="$3" -v s="$4" -v p50="$5" -v p99="$6" -v t="$7" \
      -v hz="$ticks" -v err="$8" 'BEGIN {
    printf "| %-29s | %-12s | %9.0f | %8.3f | %8.3f | %11.1f | %6d |\n",
           face, load, n / s, p50, p99, t / hz * 1e6 / n, err }'
}

run_grpc() {  # CONNECTIONS STREAMS
  local before after
  # Warm-up as a run of its own: h2load's --warm-up-time still writes those calls to its log.
  taskset -c 1 h2load -c "$1" -m "$2" -t 1 -D 2 -d "$work/grpc.bin" "${grpc_headers[@]}" \
    "$grpc_url" > /dev/null
  rm -f "$work/h2load.log"
  before=$(cpu_ticks "$spid")
  taskset -c 1 h2load -c "$1" -m "$2" -t 1 -D "$duration" \
    -d "$work/grpc.bin" "${grpc_headers[@]}" --log-file="$work/h2load.log" "$grpc_url" \
    > "$work/h2load.out"
  after=$(cpu_ticks "$spid")
  # The log: one line per request, "start_us<TAB>status<TAB>elapsed_us".
  read -r calls p50 p99 < <(python3 - "$work/h2load.log" <<'PY'
import sys
lat = sorted(int(line.split("\t")[2]) for line in open(sys.argv[1]) if line.strip())
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000
print(len(lat), pick(0.50), pick(0.99))
PY
)
  local failed
  failed=$(awk '/^requests:/ {print $10 + $12}' "$work/h2load.out")
  row "gRPC ShouldRateLimit (h2)" "$(( $1 * $2 )) in flight" "$calls" "$duration" "$p50" "$p99" \
    $((after - before)) "$failed"
}

run_wrk() {  # NAME PATH BODY CONNECTIONS
  local before after
  taskset -c 1 env BODY="$3" wrk -t1 -c"$4" -d2s -s "$work/post.lua" \
    "http://127.0.0.1:$http_port$2" > /dev/null  # warm-up
  before=$(cpu_ticks "$spid")
  taskset -c 1 env BODY="$3" wrk -t1 -c"$4" -d"${duration}s" --latency -s "$work/post.lua" \
    "http://127.0.0.1:$http_port$2" > "$work/wrk.out"
  after=$(cpu_ticks "$spid")
  local calls p50 p99 errors
  calls=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  p50=$(to_ms "$(awk '$1=="50%" {print $2}' "$work/wrk.out")")
  p99=$(to_ms "$(awk '$1=="99%" {print $2}' "$work/wrk.out")")
  errors=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {n += 1} END {print n + 0}' "$work/wrk.out")
  row "$1" "$4 in flight" "$calls" "$duration" "$p50" "$p99" $((after - before)) "$errors"
}

machine
echo "server: $sluice (memory store) on CPU 0; load generator on CPU 1; ${duration}s per row"
echo "| endpoint                      | load         |   calls/s |   p50 ms |   p99 ms | CPU µs/call | errors |"
echo "|-------------------------------|--------------|-----------|----------|----------|-------------|--------|"
run_grpc 1 1
run_wrk "HTTP POST /v1/ratelimit/check" /v1/ratelimit/check "$work/check.body" 1
run_wrk "HTTP POST /json" /json "$work/json.body" 1
run_grpc 2 4
run_wrk "HTTP POST /v1/ratelimit/check" /v1/ratelimit/check "$work/check.body" 8
run_wrk "HTTP POST /json" /json "$work/json.body" 8
run_grpc 4 16
run_wrk "HTTP POST /v1/ratelimit/check" /v1/ratelimit/check "$work/check.body" 64
run_wrk "HTTP POST /json" /json "$work/json.body" 64

kill -TERM "$spid"
wait "$spid" && echo "server: SIGTERM, exit 0"
pids=()
