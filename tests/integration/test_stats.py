"""The stats API (CONTRACT §9) on the real binary: auth, exact totals per result and per rule, the
per-second timeline, the heaviest keys against exact counts kept by the test (a Zipf workload
over 100 000 keys), one user's rules and recent totals, request ids in the rejection log, and
scope=cluster over three servers sharing one Redis."""

import bisect
import collections
import hashlib
import http.client
import json
import random
import re
import threading
import time
import unittest

from redis_helper import RedisProcess, RedisSluice, server_config
from sluice_server import SluiceServer, poll

READ_TOKEN = "stats-read-token"
WRITE_TOKEN = "stats-write-token"


def sha(token):
    return hashlib.sha256(token.encode()).hexdigest()


ADMIN = (
    "admin:\n"
    "  tokens:\n"
    f"    - {{name: viewer, sha256: \"{sha(READ_TOKEN)}\", role: read}}\n"
    f"    - {{name: ops, sha256: \"{sha(WRITE_TOKEN)}\", role: write}}\n")

RULES = """
rules:
  - id: per-user
    match: {endpoint: /api}
    key: [user_id]
    limit: 3
    window: 1h
  - id: shadow-probe
    match: {endpoint: /shadow}
    key: [user_id]
    limit: 1
    window: 1h
    mode: shadow
  - id: every-user
    key: [user_id]
    limit: 1000000
    window: 1h
  - id: zipf
    match: {endpoint: /zipf}
    key: [user_id]
    limit: 1000000
    window: 1h
lists:
  deny:
    - {user_id: evil, reason: abuse}
"""


def auth(token=READ_TOKEN):
    return {"Authorization": f"Bearer {token}"}


class Sender:
    """Keep-alive connections from `threads` threads sending check bodies from a list."""

    def __init__(self, servers, bodies, threads=4, headers=None):
        self.servers = servers
        self.bodies = bodies
        self.threads = threads
        self.headers = dict(headers or {})
        self.statuses = collections.Counter()
        self._lock = threading.Lock()

    def run(self):
        chunks = [self.bodies[i::self.threads] for i in range(self.threads)]
        workers = [threading.Thread(target=self._send, args=(self.servers[i % len(self.servers)],
                                                              chunk))
                   for i, chunk in enumerate(chunks)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return self.statuses

    def _send(self, server, bodies):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        local = collections.Counter()
        headers = {"Content-Type": "application/json", **self.headers}
        for body in bodies:
            conn.request("POST", "/v1/ratelimit/check", body=json.dumps(body), headers=headers)
            res = conn.getresponse()
            res.read()
            local[res.status] += 1
        conn.close()
        with self._lock:
            self.statuses.update(local)


def zipf_users(n_keys, samples, s=1.1, seed=1):
    """`samples` user ids drawn from Zipf(s) over n_keys ids (inverse CDF, seeded)."""
    rng = random.Random(seed)
    cdf = []
    total = 0.0
    for i in range(n_keys):
        total += 1.0 / (i + 1) ** s
        cdf.append(total)
    return [f"u{bisect.bisect_left(cdf, rng.random() * total)}" for _ in range(samples)]


def assert_top_matches(test, reported, exact, n=10):
    """The reported top-n keys are the true top-n: their true counts are the n highest (a tie at
    the n-th place may be reported either way)."""
    truth = sorted(exact.values(), reverse=True)[:n]
    test.assertEqual(len(reported), n, reported)
    got = sorted((exact[r["key"]["user_id"]] for r in reported), reverse=True)
    test.assertEqual(got, truth, f"reported {reported}\ntrue top {exact.most_common(n)}")
    for r in reported:  # the bound holds: count - error <= true <= count
        true = exact[r["key"]["user_id"]]
        test.assertLessEqual(r["count"] - r["error"], true, r)
        test.assertGreaterEqual(r["count"], true, r)


class StatsAuthTest(unittest.TestCase):
    def test_without_tokens_the_stats_api_is_off(self):
        with SluiceServer(files={"rules.yaml": RULES}, rules=["rules.yaml"]) as s:
            res = s.request("GET", "/v1/stats/global", headers=auth())
            self.assertEqual(res.status, 403)
            self.assertEqual(res.json()["error"]["code"], "ADMIN_DISABLED")

    def test_stats_off_still_needs_a_token(self):
        config = ADMIN + "stats:\n  enabled: false\n"
        with SluiceServer(files={"sluice.yaml": config, "rules.yaml": RULES},
                          config="sluice.yaml", rules=["rules.yaml"]) as s:
            self.assertEqual(s.get("/v1/stats/global").status, 401)
            res = s.request("GET", "/v1/stats/global", headers=auth())
            self.assertEqual(res.status, 404)
            self.assertIn("stats.enabled", res.json()["error"]["message"])

    def test_tokens_and_parameters(self):
        with SluiceServer(files={"sluice.yaml": ADMIN, "rules.yaml": RULES}, config="sluice.yaml",
                          rules=["rules.yaml"]) as s:
            res = s.get("/v1/stats/global")
            self.assertEqual(res.status, 401)
            self.assertIn("Bearer", res.header("WWW-Authenticate"))
            self.assertEqual(s.request("GET", "/v1/stats/top",
                                       headers=auth("wrong")).status, 401)
            self.assertEqual(s.request("GET", "/v1/stats/global", headers=auth()).status, 200)
            self.assertEqual(s.request("GET", "/v1/stats/global",
                                       headers=auth(WRITE_TOKEN)).status, 200)
            for bad in ("/v1/stats/global?window=2m", "/v1/stats/top?by=cost",
                        "/v1/stats/top?limit=0", "/v1/stats/top?limit=x",
                        "/v1/stats/global?scope=everywhere",
                        "/v1/stats/global?scope=cluster"):  # no Redis store here
                res = s.request("GET", bad, headers=auth())
                self.assertEqual(res.status, 400, bad)
                self.assertEqual(res.json()["error"]["code"], "INVALID_REQUEST")
            res = s.request("POST", "/v1/stats/global", headers=auth())
            self.assertEqual(res.status, 405)
            self.assertEqual(res.header("Allow"), "GET, HEAD")
            self.assertEqual(s.request("GET", "/v1/stats/nothing", headers=auth()).status, 404)
            # The token is never echoed or logged.
            self.assertNotIn(READ_TOKEN, s.logs())


class StatsCountsTest(unittest.TestCase):
    def test_totals_by_rule_top_users_and_timeline_are_exact(self):
        with SluiceServer(files={"sluice.yaml": ADMIN, "rules.yaml": RULES}, config="sluice.yaml",
                          rules=["rules.yaml"]) as s:
            expected = collections.Counter()
            for _ in range(5):  # 3 allowed, 2 rejected
                expected[s.check(user_id="alice", endpoint="/api").status] += 1
            for _ in range(2):  # deny list
                expected[s.check(user_id="evil", endpoint="/api").status] += 1
            for _ in range(3):  # shadow: all allowed, the last two shadow-rejected
                expected[s.check(user_id="sam", endpoint="/shadow").status] += 1
            expected[s.check(user_id="nobody", endpoint="/none").status] += 1  # no rule
            self.assertEqual(expected, {200: 7, 429: 2, 403: 2})

            g = s.request("GET", "/v1/stats/global?window=1m", headers=auth()).json()
            self.assertEqual(g["window_seconds"], 60)
            self.assertEqual((g["requests"], g["allowed"], g["rejected"], g["blocked"],
                              g["shadow_rejected"], g["errors"]), (11, 7, 2, 2, 2, 0), g)
            self.assertAlmostEqual(g["rejection_rate"], 2 / 11, places=5)
            self.assertGreater(g["p99_ms"], 0)
            self.assertLessEqual(g["p50_ms"], g["p99_ms"])
            by_rule = {r["rule_id"]: r for r in g["by_rule"]}
            self.assertEqual(by_rule["per-user"], {"rule_id": "per-user", "allowed": 3,
                                                   "rejected": 2})
            self.assertEqual(by_rule["shadow-probe"]["allowed"], 3)
            self.assertEqual(by_rule["shadow-probe"]["rejected"], 0)
            # Every allowed check with a user_id (evil was blocked before any rule).
            self.assertEqual(by_rule["every-user"], {"rule_id": "every-user", "allowed": 7,
                                                     "rejected": 0})

            top = s.request("GET", "/v1/stats/top?by=rejected&window=5m",
                            headers=auth()).json()
            self.assertEqual(top[0], {"rule_id": "per-user", "key": {"user_id": "alice"},
                                      "count": 2, "error": 0})
            top = s.request("GET", "/v1/stats/top?by=requests&rule_id=shadow-probe",
                            headers=auth()).json()
            self.assertEqual(top, [{"rule_id": "shadow-probe", "key": {"user_id": "sam"},
                                    "count": 3, "error": 0}])

            u = s.request("GET", "/v1/stats/users/alice", headers=auth()).json()
            self.assertEqual(u["user_id"], "alice")
            rules = {r["rule_id"]: r for r in u["rules"]}
            # As a check with only a user_id sees them: per-user needs endpoint /api.
            self.assertEqual(set(rules), {"every-user"})
            self.assertEqual(rules["every-user"]["remaining"], 1_000_000 - 3)
            self.assertEqual(rules["every-user"]["limit"], 1_000_000)
            self.assertEqual(rules["every-user"]["recent"]["requests"], 5)
            # The recent totals count every rule keyed on the user, per-user's rejections too.
            self.assertEqual(u["recent"]["requests"], 5)
            self.assertEqual(u["recent"]["rejected"], 2)
            self.assertEqual(u["recent"]["allowed"], 3)
            # Reading it consumed nothing: still 0 remaining, not less, and a new user has 3.
            again = s.request("GET", "/v1/stats/users/alice", headers=auth()).json()
            self.assertEqual(again["rules"][0]["remaining"], 1_000_000 - 3)
            fresh = s.request("GET", "/v1/stats/users/newcomer", headers=auth()).json()
            self.assertEqual(fresh["rules"][0]["remaining"], 1_000_000)
            self.assertEqual(fresh["recent"]["requests"], 0)

            t = s.request("GET", "/v1/stats/timeline?window=5m", headers=auth()).json()
            self.assertEqual(t["step_seconds"], 1)
            self.assertEqual(len(t["points"]), 300)
            self.assertEqual(sum(p["requests"] for p in t["points"]), 11)
            self.assertEqual(sum(p["rejected"] for p in t["points"]), 2)
            ats = [p["at"] for p in t["points"]]
            self.assertEqual(ats, sorted(ats))
            self.assertLessEqual(abs(ats[-1] - time.time()), 2)
            t = s.request("GET", "/v1/stats/timeline?window=1h", headers=auth()).json()
            self.assertEqual(t["step_seconds"], 12)
            self.assertEqual(len(t["points"]), 300)

    def test_zipf_top_ten_over_100k_keys_equals_the_true_top_ten(self):
        config = ADMIN + "stats:\n  top_capacity: 1000\n"
        with SluiceServer(files={"sluice.yaml": config, "rules.yaml": RULES},
                          config="sluice.yaml", rules=["rules.yaml"]) as s:
            users = zipf_users(100_000, 20_000)
            exact = collections.Counter(users)
            statuses = Sender([s], [{"user_id": u, "endpoint": "/zipf"} for u in users]).run()
            self.assertEqual(statuses, {200: len(users)})
            top = s.request("GET", "/v1/stats/top?by=requests&limit=10&rule_id=zipf",
                            headers=auth()).json()
            assert_top_matches(self, top, exact)


class RejectionLogTest(unittest.TestCase):
    def test_every_rejection_line_carries_rule_key_and_request_id(self):
        with SluiceServer(files={"rules.yaml": RULES}, rules=["rules.yaml"]) as s:
            for _ in range(3):
                s.check(user_id="carol", endpoint="/api")
            trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            for headers in ({"X-Request-Id": "req-42"}, {"traceparent": trace}, {}):
                res = s.request("POST", "/v1/ratelimit/check",
                                body={"user_id": "carol", "endpoint": "/api"},
                                headers={"Content-Type": "application/json", **headers})
                self.assertEqual(res.status, 429)
            lines = [json.loads(line) for line in s.logs().splitlines()
                     if '"rate_limit_exceeded"' in line]
            self.assertEqual(len(lines), 3, lines)
            for line in lines:
                self.assertEqual(line["rule_id"], "per-user")
                self.assertIn("user_id=carol", line["key"])
            self.assertEqual(lines[0]["request_id"], "req-42")
            self.assertEqual(lines[1]["request_id"], "4bf92f3577b34da6a3ce929d0e0e4736")
            self.assertRegex(lines[2]["request_id"], r"^[0-9a-f]{32}$")


class ClusterStatsTest(unittest.TestCase):
    """Three servers share one Redis: each publishes its seconds and its heavy hitters there,
    and any of them answers scope=cluster with the sum and the merge."""

    def test_three_servers_sum_and_merge(self):
        redis = RedisProcess().start()
        servers = []
        try:
            config = server_config(redis.url, "fail_closed", timeout="2s") + ADMIN
            for _ in range(3):
                s = RedisSluice(files={"sluice.yaml": config, "rules.yaml": RULES},
                                config="sluice.yaml", rules=["rules.yaml"])
                s.start()
                servers.append(s)
            # Each server sees its own Zipf stream (different seeds): the cluster's heaviest keys
            # are only right if the three summaries are merged.
            exact = collections.Counter()
            for i, s in enumerate(servers):
                users = zipf_users(100_000, 3_000, seed=10 + i)
                exact.update(users)
                Sender([s], [{"user_id": u, "endpoint": "/zipf"} for u in users]).run()
            total = sum(exact.values())

            def cluster_global():
                res = servers[0].request("GET", "/v1/stats/global?window=5m&scope=cluster",
                                         headers=auth())
                self.assertEqual(res.status, 200, res)
                return res.json()

            # Published once a second: the sum reaches the total within a few seconds.
            poll(lambda: cluster_global()["requests"] == total, timeout=15,
                 message=f"cluster requests == {total}")
            g = cluster_global()
            self.assertEqual(g["scope"], "cluster")
            self.assertEqual(g["allowed"], total)
            self.assertEqual({r["rule_id"]: r["allowed"] for r in g["by_rule"]},
                             {"zipf": total, "every-user": total})
            local = servers[1].request("GET", "/v1/stats/global?window=5m",
                                       headers=auth()).json()
            self.assertEqual(local["requests"], 3_000)

            top = servers[2].request(
                "GET", "/v1/stats/top?by=requests&limit=10&scope=cluster&rule_id=zipf",
                headers=auth()).json()
            assert_top_matches(self, top, exact)
            t = servers[1].request("GET", "/v1/stats/timeline?window=5m&scope=cluster",
                                   headers=auth()).json()
            self.assertEqual(sum(p["requests"] for p in t["points"]), total)
        finally:
            for s in servers:
                s.stop()
            redis.kill()


if __name__ == "__main__":
    unittest.main()
