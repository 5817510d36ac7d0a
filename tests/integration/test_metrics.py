"""GET /metrics as Prometheus sees it: every series passes `promtool check metrics` (Debian's
`prometheus` package), and the series operators expect beyond the contract's list exist with sane
values: the process_* series, sluice_build_info, the per-rule store latency, the heavy-hitter
summary's size and the rules database's state (docs/observability.md).
"""

import os
import shutil
import subprocess
import time
import unittest

from sluice_server import ServerTestCase, SluiceServer, unique

RULES = """
rules:
  - id: tight
    match: {endpoint: /tight}
    key: [user_id]
    limit: 2
    window: 1h
  - id: watch
    match: {endpoint: /tight}
    key: [user_id]
    limit: 1
    window: 1h
    mode: shadow
lists:
  deny:
    - {ip_address: 203.0.113.0/24, reason: abuse}
"""


def promtool():
    path = shutil.which("promtool")
    if path is None:
        raise unittest.SkipTest("promtool is not installed (Debian package prometheus)")
    return path


def promtool_check_metrics(text):
    """Runs `promtool check metrics` on `text`; returns (exit code, everything it printed)."""
    res = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True,
                         text=True, timeout=60)
    return res.returncode, (res.stdout + res.stderr).strip()


class MetricsTest(ServerTestCase):
    SERVER_FILES = {"rules.yaml": RULES}
    SERVER_RULES = ["rules.yaml"]

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Every kind of answer, so that every series that traffic creates exists.
        user = unique("m")
        cls.statuses = [cls.server.check(user_id=user, endpoint="/tight").status
                        for _ in range(4)]
        cls.statuses.append(cls.server.check(user_id=user, ip_address="203.0.113.9").status)
        cls.statuses.append(cls.server.check(user_id=user, endpoint="/free").status)
        cls.server.request("POST", "/v1/ratelimit/check", body=b"{not json",
                           headers={"Content-Type": "application/json"})

    def test_answers_were_as_expected(self):
        self.assertEqual(self.statuses, [200, 200, 429, 429, 403, 200])

    def test_promtool_check_metrics_is_silent(self):
        # promtool prints one line per problem (a counter without _total, a missing unit or help
        # text, ...) and nothing when all is well.
        text = self.server.get("/metrics").body.decode("utf-8")
        code, output = promtool_check_metrics(text)
        self.assertEqual(output, "", f"promtool check metrics:\n{output}")
        self.assertEqual(code, 0)

    def test_promtool_would_complain(self):
        # The check above can fail: promtool does speak up on a bad exposition.
        code, output = promtool_check_metrics(
            "# HELP sluice_things Things.\n# TYPE sluice_things counter\nsluice_things 1\n")
        self.assertIn("_total", output)

    def test_process_series(self):
        m = self.server.metrics()
        start = m.get("process_start_time_seconds")
        self.assertIsNotNone(start, m.text)
        # The server started a moment ago (its start time is not the boot time, nor in ms).
        self.assertLess(abs(time.time() - start), 60, start)
        self.assertGreater(m.value("process_open_fds"), 0)
        self.assertGreaterEqual(m.value("process_max_fds"), m.value("process_open_fds"))
        rss = m.value("process_resident_memory_bytes")
        self.assertGreater(rss, 1 << 20)  # bytes, not pages or kB: a server holds over 1 MiB
        self.assertGreaterEqual(m.value("process_virtual_memory_bytes"), rss)
        cpu = m.get("process_cpu_seconds_total")
        self.assertIsNotNone(cpu, m.text)
        self.assertGreaterEqual(cpu, 0)
        self.assertIn("# TYPE process_cpu_seconds_total counter", m.text)
        # Read at scrape time: the open descriptors follow the process, the start time stays.
        self.assertEqual(self.server.metrics().get("process_start_time_seconds"), start)

    def test_open_fds_follow_the_process(self):
        pid = self.server.proc.pid
        m = self.server.metrics()
        actual = len(os.listdir(f"/proc/{pid}/fd"))
        # Connections come and go (this scrape's own included): close, not equal.
        self.assertLess(abs(m.value("process_open_fds") - actual), 8, (m.value("process_open_fds"),
                                                                       actual))

    def test_build_info_matches_health(self):
        version = self.server.health()["version"]
        m = self.server.metrics()
        self.assertEqual(m.with_name("sluice_build_info"),
                         {frozenset({("version", version)}): 1.0})

    def test_rule_store_duration(self):
        m = self.server.metrics()
        # Four checks reached the store through /tight, each counting both rules once.
        self.assertEqual(m.value("sluice_rule_store_duration_seconds_count", rule_id="tight"), 4)
        self.assertEqual(m.value("sluice_rule_store_duration_seconds_count", rule_id="watch"), 4)
        self.assertEqual(
            m.value("sluice_rule_store_duration_seconds_bucket", rule_id="tight", le="+Inf"), 4)
        self.assertGreater(m.value("sluice_rule_store_duration_seconds_sum", rule_id="tight"), 0)
        # The lists answer without the store: no series of theirs.
        self.assertNotIn('sluice_rule_store_duration_seconds_count{rule_id="deny_list"}', m.text)

    def test_stats_top_entries(self):
        m = self.server.metrics()
        for by in ("rejected", "requests"):
            self.assertIsNotNone(m.get("sluice_stats_top_entries", by=by), m.text)

    def test_no_database_no_database_series(self):
        self.assertIsNone(self.server.metrics().get("sluice_rules_database_up"))


class DatabaseMetricsTest(unittest.TestCase):
    def test_database_up_and_promtool(self):
        config = ("rules:\n  database: sqlite://rules.db\n  poll: 1s\n"
                  "log:\n  level: warn\n")
        with SluiceServer(files={"sluice.yaml": config}, config="sluice.yaml") as server:
            text = server.get("/metrics").body.decode("utf-8")
            m = server.metrics()
            self.assertEqual(m.get("sluice_rules_database_up"), 1.0, text)
            code, output = promtool_check_metrics(text)
            self.assertEqual(output, "", f"promtool check metrics:\n{output}")
            self.assertEqual(code, 0)


if __name__ == "__main__":
    unittest.main()
