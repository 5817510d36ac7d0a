#!/usr/bin/env bash
# What recording stats costs an HTTP check, in instructions (issue 13) — callgrind counts
# instructions, so the result does not depend on what else the machine is doing.
#
# The Release binary runs under `valgrind --tool=callgrind` with `stats.enabled` true and false;
# a client sends REQUESTS checks over one keep-alive connection (user_1 … user_100000 at random,
# one rule keyed on user_id), allowed-heavy (limit 1 000 000 an hour) and rejected-heavy (limit
# 1 an hour: after a user's first check, every check is rejected and recorded as such). The
# per-check figure is (instructions of a run with REQUESTS checks − those of a run with none)
# / REQUESTS, so start-up and shutdown cancel out.
#
# Usage: bench/stats_instructions.sh [requests]   (default 20000)
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
requests=${1:-20000}
require valgrind python3 curl
[ -n "${SLUICE_BENCH_BIN:-}" ] || bench_build sluice
sluice=$(realpath "$sluice")

cat > "$work/client.py" <<'PY'
import http.client, json, random, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(1)
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
for _ in range(n):
    conn.request("POST", "/v1/ratelimit/check",
                 body=json.dumps({"user_id": f"user_{rng.randint(1, 100000)}"}),
                 headers={"Content-Type": "application/json"})
    conn.getresponse().read()
PY

run() {  # STATS LIMIT N → total instructions of the server's run
  printf 'rules:\n  - id: per-user\n    key: [user_id]\n    limit: %s\n    window: 1h\n    algorithm: fixed_window\n' \
    "$2" > "$work/rules.yaml"
  printf 'stats:\n  enabled: %s\nlog:\n  level: error\n' "$1" > "$work/sluice.yaml"
  local port vpid
  port=$(free_port)
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" \
    "$sluice" serve --config "$work/sluice.yaml" --http "127.0.0.1:$port" --grpc "" \
    --rules "$work/rules.yaml" > "$work/sluice.log" 2>&1 &
  vpid=$!
  for _ in $(seq 300); do curl -s -o /dev/null "127.0.0.1:$port/health" && break; sleep 0.1; done
  python3 "$work/client.py" "$port" "$3"
  kill -TERM "$vpid"; wait "$vpid" 2>/dev/null || true
  awk '/^summary:|^totals:/ {print $2; exit}' "$work"/cg.*
  rm -f "$work"/cg.*
}

machine
echo "| scenario       | stats on: instr/check | stats off: instr/check | added | ratio |"
echo "|----------------|-----------------------|------------------------|-------|-------|"
for scenario in allowed-heavy rejected-heavy; do
  if [ "$scenario" = allowed-heavy ]; then limit=1000000; else limit=1; fi
  on=$(( ($(run true "$limit" "$requests") - $(run true "$limit" 0)) / requests ))
  off=$(( ($(run false "$limit" "$requests") - $(run false "$limit" 0)) / requests ))
  awk -v s="$scenario" -v a="$on" -v b="$off" \
    'BEGIN {printf "| %-14s | %21d | %22d | %5d | %.3f |\n", s, a, b, a - b, a / b}'
done
