"""Operations endpoints and the server's life cycle: GET /health, GET /healthcheck, GET /metrics,
SIGTERM/SIGINT, and starting from a server config file (CONTRACT §1, §2, §5 "Operations").
"""

import http.client
import signal
import threading
import unittest

from sluice_server import (REQUEST_TIMEOUT_S, ServerTestCase, SluiceServer, free_port, poll,
                           read_raw_response, run_cli, unique)

RULES = """
rules:
  - id: ops
    match: {endpoint: /ops}
    key: [user_id]
    limit: 2
    window: 1h
    algorithm: sliding_window_log
  - id: ops-shadow
    match: {endpoint: /ops-shadow}
    key: [user_id]
    limit: 1
    window: 1h
    mode: shadow
lists:
  deny:
    - {ip_address: 203.0.113.0/24, reason: abuse}
  allow:
    - {user_id: ops-bot}
"""


def cli_version():
    out = run_cli("version").stdout.strip()
    return out.split()[-1]


class HealthTest(ServerTestCase):
    SERVER_FILES = {"rules.yaml": RULES}
    SERVER_RULES = ["rules.yaml"]

    def test_health_shape(self):
        res = self.server.get("/health")
        self.assertEqual(res.status, 200, res)
        self.assertTrue(res.header("Content-Type", "").startswith("application/json"), res)
        body = res.json()
        self.assertEqual(
            set(body), {"status", "version", "uptime_seconds", "store", "rules", "listeners"}, body)
        self.assertEqual(body["listeners"], {"http": "accepting"}, body)
        self.assertEqual(body["status"], "healthy")
        self.assertEqual(body["version"], cli_version())
        self.assertIsInstance(body["uptime_seconds"], (int, float))
        self.assertNotIsInstance(body["uptime_seconds"], bool)
        self.assertGreaterEqual(body["uptime_seconds"], 0)
        store = body["store"]
        self.assertEqual(set(store), {"backend", "status", "latency_ms"}, body)
        self.assertEqual(store["backend"], "memory")
        self.assertEqual(store["status"], "connected")
        self.assertIsInstance(store["latency_ms"], (int, float))
        self.assertGreaterEqual(store["latency_ms"], 0)
        rules = body["rules"]
        self.assertEqual(set(rules), {"count", "version"}, body)
        self.assertEqual(rules["count"], 2)
        self.assertEqual(rules["version"], 1)

    def test_uptime_grows(self):
        poll(lambda: self.server.health()["uptime_seconds"] >= 1, message="uptime_seconds >= 1")

    def test_health_does_not_consume(self):
        for _ in range(5):
            self.server.get("/health")
            self.server.get("/healthcheck")
        user = unique()
        res = self.server.check(user_id=user, endpoint="/ops")
        self.assertEqual(res.json()["remaining"], 1, res)

    def test_healthcheck(self):
        res = self.server.get("/healthcheck")
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.body.strip(), b"OK", res)


class MetricsTest(ServerTestCase):
    SERVER_FILES = {"rules.yaml": RULES}
    SERVER_RULES = ["rules.yaml"]

    def test_metrics_format_and_names(self):
        # Some traffic first, so that every family has samples.
        self.server.check(user_id=unique(), endpoint="/ops")
        res = self.server.get("/metrics")
        self.assertEqual(res.status, 200, res)
        self.assertTrue(res.header("Content-Type", "").startswith("text/plain"), res)
        text = res.body.decode("utf-8")
        for family, kind in (("sluice_requests_total", "counter"),
                             ("sluice_check_duration_seconds", "histogram"),
                             ("sluice_store_duration_seconds", "histogram"),
                             ("sluice_store_errors_total", "counter"),
                             ("sluice_rules_loaded", "gauge"),
                             ("sluice_config_reloads_total", "counter")):
            with self.subTest(family=family):
                self.assertIn(f"# TYPE {family} {kind}", text)
        m = self.server.metrics()
        self.assertEqual(m.get("sluice_rules_loaded"), 2)
        self.assertEqual(m.get("sluice_config_reloads_total", result="success"), 0)
        self.assertEqual(m.get("sluice_config_reloads_total", result="failure"), 0)
        self.assertIsNotNone(m.get("sluice_check_duration_seconds_bucket", le="+Inf"))
        self.assertIsNotNone(m.get("sluice_check_duration_seconds_sum"))
        # The store histogram and errors carry backend and op/type labels.
        store_counts = m.with_name("sluice_store_duration_seconds_count")
        self.assertTrue(store_counts, text)
        for labels in store_counts:
            names = dict(labels)
            self.assertEqual(names.get("backend"), "memory", labels)
            self.assertIn("op", names, labels)
        for labels in m.with_name("sluice_store_errors_total"):
            self.assertEqual(dict(labels).get("backend"), "memory", labels)
            self.assertIn("type", dict(labels), labels)
        for labels in m.with_name("sluice_requests_total"):
            self.assertEqual({k for k, _ in labels}, {"rule_id", "result"}, labels)
            self.assertIn(dict(labels)["result"],
                          {"allowed", "rejected", "shadow_rejected", "blocked", "error"})

    def test_memory_store_series_follow_the_store(self):
        """The sweeper exports the memory store's keys, evictions and expirations each second."""
        self.server.check(user_id=unique(), endpoint="/ops")
        keys = poll(lambda: self.server.metrics().get("sluice_memory_store_keys", role="store"),
                    message="sluice_memory_store_keys{role=store} > 0")
        self.assertGreaterEqual(keys, 1)
        m = self.server.metrics()
        self.assertEqual(m.get("sluice_memory_store_evictions_total", role="store"), 0)
        self.assertIsNotNone(m.get("sluice_memory_store_expirations_total", role="store"))
        # No fallback store without on_failure: local over Redis.
        self.assertIsNone(m.get("sluice_memory_store_keys", role="fallback"))

    def test_requests_are_counted_by_rule_and_result(self):
        before = self.server.metrics()
        user = unique()
        for _ in range(2):
            self.assertEqual(self.server.check(user_id=user, endpoint="/ops").status, 200)
        for _ in range(3):
            self.assertEqual(self.server.check(user_id=user, endpoint="/ops").status, 429)
        for _ in range(4):
            self.assertEqual(self.server.check(ip_address="203.0.113.9").status, 403)
        for _ in range(3):
            self.server.check(user_id=user, endpoint="/ops-shadow")
        after = self.server.metrics()

        def delta(name, **labels):
            return after.value(name, **labels) - before.value(name, **labels)

        self.assertEqual(delta("sluice_requests_total", rule_id="ops", result="allowed"), 2)
        self.assertEqual(delta("sluice_requests_total", rule_id="ops", result="rejected"), 3)
        # Deny-list refusals carry rule_id="deny_list".
        self.assertEqual(delta("sluice_requests_total", rule_id="deny_list", result="blocked"), 4)
        self.assertEqual(delta("sluice_requests_total", rule_id="ops-shadow",
                               result="shadow_rejected"), 2)
        self.assertEqual(delta("sluice_requests_total", rule_id="ops-shadow", result="rejected"), 0)
        # Every decided check is timed (the 5 checks that reached the rules, at least).
        self.assertGreaterEqual(delta("sluice_check_duration_seconds_count"), 5)
        store_before = sum(before.with_name("sluice_store_duration_seconds_count").values())
        store_after = sum(after.with_name("sluice_store_duration_seconds_count").values())
        self.assertGreaterEqual(store_after - store_before, 5)


class ShutdownTest(unittest.TestCase):
    RULES_FILES = {"rules.yaml": RULES}

    def test_sigterm_exits_0_and_stops_listening(self):
        server = SluiceServer(files=self.RULES_FILES, rules=["rules.yaml"]).start()
        port = server.port
        self.assertEqual(server.stop(signal.SIGTERM), 0)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        with self.assertRaises(OSError):
            conn.request("GET", "/health")
            conn.getresponse()

    def test_sigint_exits_0(self):
        server = SluiceServer(files=self.RULES_FILES, rules=["rules.yaml"]).start()
        self.assertEqual(server.stop(signal.SIGINT), 0)

    def test_sigterm_with_idle_and_stalled_connections_exits_0(self):
        server = SluiceServer(files=self.RULES_FILES, rules=["rules.yaml"]).start()
        socks = []
        try:
            for i in range(5):
                s = server.connect()
                body = b'{"user_id": "idle"}'
                s.sendall(b"POST /v1/ratelimit/check HTTP/1.1\r\nHost: x\r\nContent-Length: %d"
                          b"\r\n\r\n%s" % (len(body), body))
                self.assertEqual(read_raw_response(s).status, 200)
                socks.append(s)  # idle keep-alive
            for i in range(5):
                s = server.connect()
                s.sendall(b"POST /v1/ratelimit/check HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                socks.append(s)  # stalled mid-header
            self.assertEqual(server.stop(signal.SIGTERM), 0)
        finally:
            for s in socks:
                s.close()
            server.kill()

    def test_sigterm_under_load_exits_0(self):
        server = SluiceServer(files=self.RULES_FILES, rules=["rules.yaml"]).start()
        stop = threading.Event()
        bad = []
        served = [0]

        def client():
            while not stop.is_set():
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", server.port,
                                                      timeout=REQUEST_TIMEOUT_S)
                    conn.request("POST", "/v1/ratelimit/check",
                                 body=b'{"user_id": "load", "endpoint": "/elsewhere"}')
                    res = conn.getresponse()
                    body = res.read()
                    conn.close()
                    # A response that arrives is a whole, correct one.
                    if res.status != 200 or body != b'{"allowed":true}':
                        bad.append((res.status, body))
                    served[0] += 1
                except (OSError, http.client.HTTPException):
                    pass  # refused or closed: the server is going away

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            poll(lambda: served[0] >= 50, message="some load")
            self.assertEqual(server.stop(signal.SIGTERM), 0)
        finally:
            stop.set()
            for t in threads:
                t.join()
            server.kill()
        self.assertEqual(bad, [])


class StoreFlagTest(unittest.TestCase):
    def test_store_memory_flag(self):
        server = SluiceServer(files={"rules.yaml": RULES}, rules=["rules.yaml"],
                              extra_args=["--store", "memory"]).start()
        try:
            self.assertEqual(server.health()["store"]["backend"], "memory")
            res = server.check(user_id=unique(), endpoint="/ops")
            self.assertEqual(res.status, 200, res)
        finally:
            self.assertEqual(server.stop(), 0)


class Ipv6ListenerTest(unittest.TestCase):
    def test_listen_on_ipv6_loopback(self):
        # --http [::1]:PORT (CONTRACT §1 ADDR:PORT, bracketed for IPv6).
        try:
            free_port("::1")
        except OSError:
            self.skipTest("no IPv6 loopback here")
        server = SluiceServer(files={"rules.yaml": RULES}, rules=["rules.yaml"], host="::1")
        server.start()
        try:
            self.assertEqual(server.get("/healthcheck").status, 200)
            res = server.check(user_id=unique(), endpoint="/ops")
            self.assertEqual(res.json()["rule_id"], "ops", res)
        finally:
            self.assertEqual(server.stop(), 0)


class ConfigFileTest(unittest.TestCase):
    """`serve --config FILE`: listen address and rules paths from the file (CONTRACT §2)."""

    CONF_RULES = """
rules:
  - id: from-config-folder
    match: {endpoint: /cfg}
    key: [user_id]
    limit: 3
    window: 1h
"""
    FLAG_RULES = """
rules:
  - id: from-flag
    match: {endpoint: /cfg}
    key: [user_id]
    limit: 4
    window: 1h
  - id: from-flag-2
    match: {endpoint: /cfg2}
    key: [user_id]
    limit: 4
    window: 1h
"""

    def config(self, port):
        # rules.paths is relative: it resolves against conf/, not the server's working folder.
        return f"""
listen:
  http: 127.0.0.1:{port}
  grpc: ""
store:
  backend: memory
  timeout: 50ms
  on_failure: fail_open
rules:
  paths: [rules/]
log:
  level: warn
  format: text
"""

    def test_listen_and_relative_rules_paths_from_the_config_file(self):
        port = free_port()
        server = SluiceServer(files={"conf/server.yaml": self.config(port),
                                     "conf/rules/main.yaml": self.CONF_RULES},
                              config="conf/server.yaml", http=False)
        server.start(port=port)
        try:
            res = server.check(user_id=unique(), endpoint="/cfg")
            self.assertEqual(res.status, 200, res)
            self.assertEqual(res.json()["rule_id"], "from-config-folder", res)
            self.assertEqual(server.health()["rules"]["count"], 1)
        finally:
            self.assertEqual(server.stop(), 0)

    def test_flags_override_the_config_file(self):
        # --http replaces listen.http; --rules replaces rules.paths.
        server = SluiceServer(files={"conf/server.yaml": self.config(free_port()),
                                     "conf/rules/main.yaml": self.CONF_RULES,
                                     "flag.yaml": self.FLAG_RULES},
                              config="conf/server.yaml", rules=["flag.yaml"], http=True)
        server.start()
        try:
            res = server.check(user_id=unique(), endpoint="/cfg")
            self.assertEqual(res.status, 200, res)
            self.assertEqual(res.json()["rule_id"], "from-flag", res)
            self.assertEqual(server.health()["rules"]["count"], 2)
        finally:
            self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    unittest.main()
