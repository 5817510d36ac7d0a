#!/usr/bin/env python3
"""How long a rules change takes to reach the other servers sharing a rules database (issue 12).

Two groups, one after the other, each of real `sluice serve` processes (memory store, admin API
on, `rules.poll: 5s`, so anything seen sooner came pushed, not polled):

- PostgreSQL: 3 servers on one database of a real PostgreSQL (tests/integration/postgres_helper.py:
  initdb + postgres on a loopback port, as the `postgres` user when run as root). Changes arrive
  by LISTEN/NOTIFY.
- SQLite: 2 servers on one database file. Changes arrive by inotify on the file and its -wal.

In each group CHANGES changes are made through the first server: `PUT /v1/admin/rules/bench-rule`,
the limit different each time. From the moment the PUT's answer has arrived, every OTHER server
is probed in a loop (a round over the servers still pending, then a 1 ms sleep) with a read-only
check (`cost: 0`) until the `limit` it reports is the new one: the change is enforced there.
(`GET /v1/admin/rules/{id}` would not do: an admin read catches up with the database first, so it
would measure the probe, not the push; `/health` rules.version is set right after the rule set
is swapped in, and is compared with the database's version at the end.) Reported: the time until
every other server enforces the change (p50, p99, max over the changes), and the same per
server.

Then the PostgreSQL outage, OUTAGES times: PostgreSQL is SIGKILLed (postmaster and every
backend); the time until every server's /health says degraded with the database down; checks
must still answer with the last rules, and an admin write must answer 503 DATABASE_UNAVAILABLE.
PostgreSQL is started again on the same port and data; right away one change is written through
the first server (retrying while it answers 503); reported: the time from PostgreSQL accepting
connections to the write being accepted, and from the write's answer to every server enforcing
it. Sluice is never restarted.

Usage: bench/propagation.py [--changes N] [--outages N] [--rules N]  (SLUICE_BIN: the binary,
default build/src/app/sluice). Python standard library only. bench/propagation.sh runs it.
"""

import argparse
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
from postgres_helper import PostgresProcess  # noqa: E402
from sluice_server import free_port  # noqa: E402

TOKEN = "bench-propagation-7d1f0c2a9e"
RULE = "bench-rule"
PROBE_SLEEP_S = 0.001
DEADLINE_S = 30.0  # a change not seen by then is reported as a failure, not waited for forever


def sluice_bin():
    path = os.environ.get("SLUICE_BIN") or os.path.join(REPO, "build", "src", "app", "sluice")
    path = os.path.abspath(path)
    if not os.access(path, os.X_OK):
        sys.exit(f"propagation: no sluice binary at {path} (build it or set SLUICE_BIN)")
    return path


STARTED = []  # every Server, killed (if still running) and its folder removed at the end


class Server:
    """One `sluice serve` in a folder of its own, and a keep-alive HTTP connection to it."""

    def __init__(self, name, database, binary):
        STARTED.append(self)
        self.proc = None
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"sluice-prop-{name}-")
        self.log_path = os.path.join(self.dir, "sluice.log")
        sha = hashlib.sha256(TOKEN.encode()).hexdigest()
        for _ in range(5):
            self.port = free_port()
            with open(os.path.join(self.dir, "sluice.yaml"), "w") as f:
                f.write(f"listen: {{http: 127.0.0.1:{self.port}, grpc: \"\"}}\n"
                        f"store: {{backend: memory}}\n"
                        f"rules: {{database: \"{database}\", poll: 5s}}\n"
                        f"admin: {{tokens: [{{name: bench, sha256: \"{sha}\", role: write}}]}}\n"
                        f"log: {{level: info}}\n")
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen([binary, "serve", "--config", "sluice.yaml"],
                                         cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
            log.close()
            if self._wait_started():
                break
        else:
            sys.exit(f"server {name} did not start:\n{self.logs()}")
        self.conn = None

    def _wait_started(self):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if '"event":"started"' in self.logs():
                return True
            time.sleep(0.05)
        return False

    def logs(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def request(self, method, path, body=None, headers=None):
        """(status, headers dict lower-cased, parsed JSON body or None); one reconnect on a
        dropped keep-alive connection."""
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                res = self.conn.getresponse()
                raw = res.read()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return res.status, {k.lower(): v for k, v in res.getheaders()}, parsed

    def admin(self, method, path, body=None):
        return self.request(method, "/v1/admin/" + path, body,
                            {"Authorization": f"Bearer {TOKEN}"})

    def limit_in_force(self):
        """The limit a read-only check reports for bench-rule (None: another answer)."""
        status, _, body = self.request("POST", "/v1/ratelimit/check",
                                       {"user_id": "probe", "endpoint": "/bench", "cost": 0})
        if status != 200 or body.get("rule_id") != RULE:
            return None
        return body.get("limit")

    def health(self):
        return self.request("GET", "/health")[2]

    def stop(self):
        """SIGTERM; returns the exit code."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def bench_rule(limit):
    return {"match": {"endpoint": "/bench"}, "key": ["user_id"], "limit": limit,
            "window": "1h", "algorithm": "fixed_window"}


def seed(writer, others):
    """bench-rule and `others` more rules (one per endpoint /other-i), as a small deployment
    holds."""
    for i in range(others):
        status, _, body = writer.admin("PUT", f"rules/other-{i}",
                                       {"match": {"endpoint": f"/other-{i}"}, "key": ["user_id"],
                                        "limit": 100 + i, "window": "1m"})
        assert status in (200, 201), (status, body)
    status, _, body = writer.admin("PUT", f"rules/{RULE}", bench_rule(1))
    assert status in (200, 201), (status, body)


def wait_enforced(servers, limit, started):
    """Probes `servers` (a round, then a 1 ms sleep) until each reports `limit`; returns the
    seconds each took from `started` (None: not within DEADLINE_S)."""
    took = [None] * len(servers)
    while True:
        for i, s in enumerate(servers):
            if took[i] is None and s.limit_in_force() == limit:
                took[i] = time.monotonic() - started
        if all(t is not None for t in took) or time.monotonic() - started > DEADLINE_S:
            return took
        time.sleep(PROBE_SLEEP_S)


def percentile(values, p):
    """Nearest-rank percentile."""
    v = sorted(values)
    return v[max(0, min(len(v) - 1, -(-len(v) * p // 100) - 1))]


def ms(seconds):
    return f"{seconds * 1000:.1f}"


def measure_changes(group, servers, changes):
    """`changes` PUTs through servers[0]; per change, the time until each other server
    enforces it. Returns the rows for the table."""
    writer, others = servers[0], servers[1:]
    all_others, per_server, write_ms, failures = [], [[] for _ in others], [], 0
    for i in range(changes):
        limit = 1000 + i
        sent = time.monotonic()
        status, headers, body = writer.admin("PUT", f"rules/{RULE}", bench_rule(limit))
        answered = time.monotonic()
        if status != 200:
            sys.exit(f"{group}: PUT answered {status}: {body}")
        write_ms.append(answered - sent)
        took = wait_enforced(others, limit, answered)
        if any(t is None for t in took):
            failures += 1
            print(f"{group}: change {i} (limit {limit}) not enforced everywhere within "
                  f"{DEADLINE_S}s: {took}", file=sys.stderr)
            continue
        all_others.append(max(took))
        for j, t in enumerate(took):
            per_server[j].append(t)
        time.sleep(0.01)  # changes 10 ms apart (plus the wait): each measured on its own
    return all_others, per_server, write_ms, failures


def summary(values):
    return (f"{ms(percentile(values, 50))} | {ms(percentile(values, 99))} | "
            f"{ms(max(values))}") if values else "– | – | –"


def log_stats(servers):
    """Catch-ups by server and trigger; warn/error events by server and event (with the first
    line of each); lines that are not JSON."""
    triggers, problems, first = {}, {}, {}
    for s in servers:
        for line in s.logs().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                e = {"level": "error", "event": "(not JSON)"}
            if e.get("event") == "database_rules_applied":
                key = (s.name, e.get("trigger"))
                triggers[key] = triggers.get(key, 0) + 1
            if e.get("level") in ("warn", "warning", "error", "err", "critical"):
                key = (s.name, e.get("level"), e.get("event"))
                problems[key] = problems.get(key, 0) + 1
                first.setdefault(key, line[:400])
    return triggers, problems, first


def check_versions(servers, db_version):
    versions = [s.health()["rules"]["version"] for s in servers]
    ok = all(v == db_version for v in versions)
    return ok, versions


def run_group(group, database, n, changes, rules, binary, db_version):
    servers = [Server(f"{group}-{i}", database, binary) for i in range(n)]
    seed(servers[0], rules - 1)
    took = wait_enforced(servers[1:], 1, time.monotonic())
    assert all(t is not None for t in took), f"{group}: seeded rule not applied: {took}"
    all_others, per_server, write_ms, failures = measure_changes(group, servers, changes)
    time.sleep(0.2)
    ok, versions = check_versions(servers, db_version())
    return servers, all_others, per_server, write_ms, failures, (ok, versions)


def outage_rounds(pg, servers, rounds, db_version):
    """Kill PostgreSQL, check the servers, start it again, one change; per round a dict."""
    results = []
    limit = 500000
    for r in range(rounds):
        limit += 1
        before = [s.limit_in_force() for s in servers]
        killed = time.monotonic()
        pg.kill()
        degraded = [None] * len(servers)
        while not all(degraded) and time.monotonic() - killed < 60:
            for i, s in enumerate(servers):
                if degraded[i] is None:
                    h = s.health()
                    if h["status"] == "degraded" and h["database"]["status"] == "down":
                        degraded[i] = time.monotonic() - killed
            time.sleep(0.01)
        checks_ok = [s.limit_in_force() for s in servers] == before and None not in before
        write_status, _, write_body = servers[0].admin("PUT", f"rules/{RULE}", bench_rule(limit))
        write_503 = (write_status == 503 and
                     (write_body or {}).get("error", {}).get("code") == "DATABASE_UNAVAILABLE")
        time.sleep(1.0)  # down for a while: the listeners are in their reconnect backoff

        pg.restart()
        back = time.monotonic()
        refused = 0
        while True:
            status, _, body = servers[0].admin("PUT", f"rules/{RULE}", bench_rule(limit))
            if status == 200:
                break
            if status != 503 or time.monotonic() - back > 60:
                sys.exit(f"outage {r}: write after restart answered {status}: {body}")
            refused += 1
            time.sleep(PROBE_SLEEP_S)
        answered = time.monotonic()
        took = wait_enforced(servers[1:], limit, answered)
        healthy = [None] * len(servers)
        while not all(healthy) and time.monotonic() - answered < 60:
            for i, s in enumerate(servers):
                if healthy[i] is None and s.health()["status"] == "healthy":
                    healthy[i] = time.monotonic() - back
            time.sleep(0.01)
        time.sleep(0.2)
        ok, versions = check_versions(servers, db_version())
        results.append({"degraded": degraded, "checks_ok": checks_ok, "write_503": write_503,
                        "write_after": answered - back, "refused": refused, "took": took,
                        "healthy": healthy, "versions_ok": ok, "versions": versions})
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--outages", type=int, default=3)
    ap.add_argument("--rules", type=int, default=10, help="rules in each database")
    args = ap.parse_args()
    binary = sluice_bin()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    print(f"machine: {os.cpu_count()} cores, {cpu}; loadavg at start: "
          f"{open('/proc/loadavg').read().split()[0]}")
    print(f"binary: {binary}; {args.changes} changes per group, {args.rules} rules, poll 5s")

    rows, notes = [], []
    tmp = tempfile.mkdtemp(prefix="sluice-prop-sqlite-")
    pg = PostgresProcess().start()
    try:
        pg_url = pg.create_database("bench")

        def pg_version():
            return int(pg.psql("SELECT COALESCE(MAX(version), 0) FROM sluice_versions", "bench"))

        groups = []
        pg_servers, *pg_res = run_group("postgresql", pg_url, 3, args.changes, args.rules, binary,
                                        pg_version)
        groups.append(("PostgreSQL LISTEN/NOTIFY", 3, pg_servers, pg_res))
        outages = outage_rounds(pg, pg_servers, args.outages, pg_version)

        db_path = os.path.join(tmp, "rules.db")

        def sqlite_version():
            import sqlite3
            with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10) as conn:
                return int(conn.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM sluice_versions").fetchone()[0])

        sq_servers, *sq_res = run_group("sqlite", f"sqlite://{db_path}", 2, args.changes,
                                        args.rules, binary, sqlite_version)
        groups.append(("SQLite file watch (inotify)", 2, sq_servers, sq_res))

        print()
        print("| group | servers | changes | every other server enforces it: p50 ms | p99 ms "
              "| max ms | PUT answer p50 ms | p99 ms |")
        print("|---|---|---|---|---|---|---|---|")
        for name, n, _, (all_others, _, write_ms, failures, _) in groups:
            print(f"| {name} | {n} | {len(all_others)}{f' ({failures} lost)' if failures else ''}"
                  f" | {summary(all_others)} | {ms(percentile(write_ms, 50))} | "
                  f"{ms(percentile(write_ms, 99))} |")
        print()
        print("| group | server | p50 ms | p99 ms | max ms |")
        print("|---|---|---|---|---|")
        for name, _, servers, (_, per_server, _, _, _) in groups:
            for s, values in zip(servers[1:], per_server):
                print(f"| {name} | {s.name} | {summary(values)} |")

        print()
        print("| outage | every server degraded after (s) | checks answered with the last rules "
              "| admin write while down | PostgreSQL up → write accepted (ms; 503s before) "
              "| write → every server enforces it (ms) | up → all healthy (ms) |")
        print("|---|---|---|---|---|---|---|")
        for i, o in enumerate(outages):
            deg = "never" if None in o["degraded"] else f"{max(o['degraded']):.2f}"
            took = ("not within 30 s" if None in o["took"]
                    else ", ".join(ms(t) for t in o["took"]) + f" (max {ms(max(o['took']))})")
            hl = "never" if None in o["healthy"] else ms(max(o["healthy"]))
            print(f"| {i + 1} | {deg} | {'yes' if o['checks_ok'] else 'NO'} | "
                  f"{'503 DATABASE_UNAVAILABLE' if o['write_503'] else 'NOT 503'} | "
                  f"{ms(o['write_after'])} ({o['refused']}) | {took} | {hl} |")
            if not o["versions_ok"]:
                notes.append(f"outage {i + 1}: /health versions {o['versions']} differ from the "
                             f"database's")

        for name, _, servers, (_, _, _, _, (ok, versions)) in groups:
            if not ok:
                notes.append(f"{name}: /health rules.version {versions} differ from the "
                             f"database's")
        print()
        for name, _, servers, _ in groups:
            triggers, problems, first = log_stats(servers)
            print(f"{name}: catch-ups by server and trigger: "
                  + ", ".join(f"{k[0]} {k[1]} {v}" for k, v in sorted(triggers.items())))
            for key, count in sorted(problems.items()):
                print(f"{name}: log {key[0]} {key[1]} {key[2]} x{count}, first: {first[key]}")
        for name, _, servers, _ in groups:
            for s in servers:
                code = s.stop()
                if code != 0:
                    notes.append(f"{s.name} exited {code}; log tail:\n{s.logs()[-2000:]}")
        for n in notes:
            print(f"note: {n}")
    finally:
        for s in STARTED:
            if s.proc is not None and s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()
            shutil.rmtree(s.dir, ignore_errors=True)
        pg.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
