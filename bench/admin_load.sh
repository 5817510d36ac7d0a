#!/usr/bin/env bash
# Does the admin API slow the check path? (issue 12)
#
# One `sluice serve` (SQLite rules database, memory store) pinned to CPU 0, holding 10 database
# rules: api-0 … api-9, each matching one endpoint /api-K, keyed on user_id, a limit no user
# reaches (fixed_window, 1 000 000 a second). wrk -t1 -c32 on CPU 1 posts /v1/ratelimit/check for
# a random user of 100k on a random one of the 10 endpoints, as bench/hot_path.sh does
# (allowed-heavy). Runs alternate, PAIRS of each: checks alone, and checks while a loop on CPU 1
# makes 20 admin changes a second on the same server (PUT /v1/admin/rules/api-0, the limit
# alternating between two values; each one a SQLite commit, a version, an audit entry and a
# rebuild of the rule set on the server). Every run has a server of its own (a fresh database and
# store) and a 2 s warm-up before the measured SECONDS.
# Reported per run and as medians: req/s, p99 latency (wrk --latency), the server's CPU µs per
# check (utime + stime from /proc/PID/stat over the run, divided by the checks; it includes what
# the admin changes cost the server), and the ratio with/without.
#
# Usage: bench/admin_load.sh [seconds] [pairs]   (default 10 3)
# The binary: $SLUICE_BIN, else build/src/app/sluice (built, RelWithDebInfo, when missing).
# Run it on an otherwise idle machine: the pinning keeps the two programs apart, not others.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
duration=${1:-10}
pairs=${2:-3}
rate=20
require wrk taskset python3 curl
sluice=${SLUICE_BIN:-build/src/app/sluice}
if [ -z "${SLUICE_BIN:-}" ] && [ ! -x "$sluice" ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j "$(nproc)" --target sluice >/dev/null
fi
sluice=$(realpath "$sluice")

token=bench-admin-load-4c9e1b7a
sha=$(printf %s "$token" | sha256sum | cut -d' ' -f1)

cat > "$work/check.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format(nil, "/v1/ratelimit/check", nil,
                    string.format('{"user_id":"user_%d","endpoint":"/api-%d"}',
                                  math.random(1, 100000), math.random(0, 9)))
end
LUA

# The admin loop: PUT api-0 RATE times a second (on a schedule, not back to back) for SECONDS,
# over one keep-alive connection; prints "ok failed p50_ms p99_ms max_ms".
cat > "$work/admin_loop.py" <<'PY'
import http.client, json, sys, time
port, token, rate, seconds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
ok = failed = 0
took = []
start = time.monotonic()
i = 0
while True:
    at = start + i / rate
    if at - start >= seconds:
        break
    time.sleep(max(0.0, at - time.monotonic()))
    rule = {"match": {"endpoint": "/api-0"}, "key": ["user_id"], "limit": 1000000 + i % 2,
            "window": "1s", "algorithm": "fixed_window"}
    sent = time.monotonic()
    try:
        conn.request("PUT", "/v1/admin/rules/api-0", body=json.dumps(rule), headers=headers)
        res = conn.getresponse()
        res.read()
        took.append(time.monotonic() - sent)
        if res.status == 200:
            ok += 1
        else:
            failed += 1
            print(f"admin PUT answered {res.status}", file=sys.stderr)
    except (OSError, http.client.HTTPException) as e:
        failed += 1
        print(f"admin PUT failed: {e}", file=sys.stderr)
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    i += 1
took.sort()
q = lambda p: took[min(len(took) - 1, int(len(took) * p))] * 1000 if took else 0
print(f"{ok} {failed} {q(0.5):.2f} {q(0.99):.2f} {max(took or [0]) * 1000:.2f}")
PY

start_server() {  # → $spid, $port; a fresh database with the 10 rules
  rm -rf "$work/srv"; mkdir -p "$work/srv"
  port=$(free_port)
  cat > "$work/srv/sluice.yaml" <<YAML
listen: {http: "127.0.0.1:$port", grpc: ""}
store: {backend: memory}
rules: {database: "sqlite://$work/srv/rules.db", poll: 5s}
admin: {tokens: [{name: bench, sha256: "$sha", role: write}]}
log: {level: warn}
YAML
  taskset -c 0 "$sluice" serve --config "$work/srv/sluice.yaml" > "$work/srv/sluice.log" 2>&1 &
  spid=$!; pids+=("$spid")
  wait_http "$port" "$work/srv/sluice.log"
  for k in $(seq 0 9); do
    curl -sf -o /dev/null -X PUT -H "Authorization: Bearer $token" \
      -d "{\"match\":{\"endpoint\":\"/api-$k\"},\"key\":[\"user_id\"],\"limit\":1000000,\"window\":\"1s\",\"algorithm\":\"fixed_window\"}" \
      "127.0.0.1:$port/v1/admin/rules/api-$k" || { echo "seeding api-$k failed"; cat "$work/srv/sluice.log"; exit 1; }
  done
  # Sanity: a check is a real answer from a database rule.
  curl -sf -d '{"user_id":"sanity","endpoint":"/api-3"}' "127.0.0.1:$port/v1/ratelimit/check" |
    grep -q '"rule_id":"api-3"' || { echo "sanity check failed"; cat "$work/srv/sluice.log"; exit 1; }
}

run() {  # MODE (alone|admin) → one table row; appends "mode rps p99_ms cpu_us" to $work/rows
  local mode=$1
  start_server
  taskset -c 1 wrk -t1 -c32 -d2s -s "$work/check.lua" "http://127.0.0.1:$port" >/dev/null
  local apid="" before after
  if [ "$mode" = admin ]; then
    taskset -c 1 python3 "$work/admin_loop.py" "$port" "$token" "$rate" "$duration" \
      > "$work/admin.out" 2> "$work/admin.err" &
    apid=$!; pids+=("$apid")
  fi
  before=$(cpu_ticks "$spid")
  taskset -c 1 wrk -t1 -c32 -d"${duration}s" --latency -s "$work/check.lua" \
    "http://127.0.0.1:$port" > "$work/wrk.out"
  after=$(cpu_ticks "$spid")
  local admin="–"
  if [ -n "$apid" ]; then
    wait "$apid"
    read -r aok afail ap50 ap99 amax < "$work/admin.out"
    admin="$aok ok, $afail failed; PUT p50 $ap50 ms, p99 $ap99 ms, max $amax ms"
    [ -s "$work/admin.err" ] && sed 's/^/admin loop: /' "$work/admin.err" | sort | uniq -c >&2
  fi
  local rps p50 p99 total non2xx errors us
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
  p50=$(to_ms "$(awk '$1=="50%" {print $2}' "$work/wrk.out")")
  p99=$(to_ms "$(awk '$1=="99%" {print $2}' "$work/wrk.out")")
  total=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$work/wrk.out"); non2xx=${non2xx:-0}
  errors=$(awk '/Socket errors/ {print $0}' "$work/wrk.out")
  us=$(awk -v t=$((after - before)) -v hz="$ticks" -v n="$total" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
  # The server's core busy: near 100 % means wrk saturated it and CPU per check ranks runs.
  busy=$(awk -v t=$((after - before)) -v hz="$ticks" -v d="$duration" 'BEGIN {printf "%.0f", t / hz / d * 100}')
  printf "| %d | %-13s | %9s | %6s | %6s | %5s | %3s %% | %s | %s |\n" "$run_no" \
    "$([ "$mode" = admin ] && echo "+ $rate changes/s" || echo "checks alone")" \
    "$rps" "$p50" "$p99" "$us" "$busy" "$non2xx${errors:+ ($errors)}" "$admin"
  echo "$mode $rps $p99 $us" >> "$work/rows"
  if grep -q . "$work/srv/sluice.log"; then
    echo "server log (warn and above), run $run_no:" >&2; sort "$work/srv/sluice.log" | head -5 >&2
  fi
  kill "$spid"; wait "$spid" 2>/dev/null || true
}

machine
echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg); binary: $sluice; ${duration}s per run"
echo "| run | mode | req/s | p50 ms | p99 ms | CPU µs/check | server CPU | non-2xx | admin changes |"
echo "|---|---|---|---|---|---|---|---|---|"
: > "$work/rows"
run_no=0
for _ in $(seq "$pairs"); do
  for mode in alone admin; do
    run_no=$((run_no + 1))
    run "$mode"
  done
done

echo
echo "| | req/s | p99 ms | CPU µs/check |"
echo "|---|---|---|---|"
python3 - "$work/rows" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
med = {m: [statistics.median(float(r[i]) for r in rows if r[0] == m) for i in (1, 2, 3)]
       for m in ("alone", "admin")}
print(f"| median, checks alone | {med['alone'][0]:.0f} | {med['alone'][1]:.3f} | {med['alone'][2]:.2f} |")
print(f"| median, + 20 changes/s | {med['admin'][0]:.0f} | {med['admin'][1]:.3f} | {med['admin'][2]:.2f} |")
print("| ratio with / without | " + " | ".join(f"{a / b:.3f}×" for a, b in zip(med['admin'], med['alone'])) + " |")
PY

# What one change costs the server, without checks: 200 PUTs back to back on a fresh server.
start_server
before=$(cpu_ticks "$spid")
t0=$(date +%s%N)
taskset -c 1 python3 "$work/admin_loop.py" "$port" "$token" 1000000 0.0002 > "$work/admin.out"
t1=$(date +%s%N)
after=$(cpu_ticks "$spid")
read -r aok afail _ < "$work/admin.out"
awk -v n="$aok" -v f="$afail" -v t=$((after - before)) -v hz="$ticks" -v ns=$((t1 - t0)) 'BEGIN {
  printf "one change alone (%d PUTs back to back, %d failed): %.2f ms wall, %.2f ms server CPU each\n",
         n, f, ns / 1e6 / n, t / hz * 1000 / n }'
kill "$spid"; wait "$spid" 2>/dev/null || true
echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)"
