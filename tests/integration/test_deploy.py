"""deploy/: the Prometheus alert rules and example config pass promtool (`check rules`, `test
rules`, `check config`); the Grafana dashboard is valid JSON whose every PromQL expression names
only metrics the real binary exports and parses in a real Prometheus; and a real Prometheus
(Debian's `prometheus`) started here scrapes a real `sluice serve` every second and answers a
PromQL query over it with the number of checks this test sent.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

from redis_helper import RedisProcess
from sluice_server import REPO, SluiceServer, free_port, poll, unique

DEPLOY = os.path.join(REPO, "deploy")
ALERTS = os.path.join(DEPLOY, "prometheus", "sluice-alerts.yml")
ALERT_TESTS = os.path.join(DEPLOY, "prometheus", "sluice-alerts.test.yml")
PROMETHEUS_CONFIG = os.path.join(DEPLOY, "prometheus", "prometheus.yml")
DASHBOARD = os.path.join(DEPLOY, "grafana", "sluice-dashboard.json")

# How long Prometheus may take to start, and to scrape what a test waits for (1 s scrapes):
# hang detectors, not speed assertions.
PROMETHEUS_START_TIMEOUT_S = 60.0
SCRAPE_TIMEOUT_S = 30.0

# Every metric name a PromQL expression can hold here: ours and the process collector's.
METRIC_NAME = re.compile(r"\b((?:sluice|process)_[a-zA-Z0-9_]+)\b")

RULES = """
rules:
  - id: tight
    match: {endpoint: /tight}
    key: [user_id]
    limit: 3
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
  allow:
    - {user_id: ops-bot}
"""


def tool(name):
    path = shutil.which(name)
    if path is None:
        raise unittest.SkipTest(f"{name} is not installed (Debian package prometheus)")
    return path


def run(*args):
    res = subprocess.run(args, capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    return res.returncode, res.stdout + res.stderr


def dashboard_expressions(dashboard):
    """Every PromQL expression of the dashboard: panel targets and query variables."""
    exprs = []

    def walk(panels):
        for p in panels:
            exprs.extend(t["expr"] for t in p.get("targets", []))
            walk(p.get("panels", []))

    walk(dashboard["panels"])
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def exercise(server):
    """Allowed, rejected, shadow-rejected, deny-listed, allow-listed, no-rule and invalid checks."""
    user = unique("d")
    statuses = [server.check(user_id=user, endpoint="/tight").status for _ in range(5)]
    statuses.append(server.check(user_id=user, ip_address="203.0.113.7").status)
    statuses.append(server.check(user_id="ops-bot", endpoint="/tight").status)
    statuses.append(server.check(user_id=user, endpoint="/free").status)
    statuses.append(server.request("POST", "/v1/ratelimit/check", body=b"[",
                                   headers={"Content-Type": "application/json"}).status)
    assert statuses == [200, 200, 200, 429, 429, 403, 200, 200, 400], statuses


def exported_names(text):
    """Metric names in an exposition, with each histogram's _bucket, _sum and _count."""
    names = set()
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            names.add(m.group(1))
            if m.group(2) == "histogram":
                names.update(m.group(1) + s for s in ("_bucket", "_sum", "_count"))
        elif line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


class PromtoolTest(unittest.TestCase):
    def test_check_rules(self):
        code, out = run(tool("promtool"), "check", "rules", ALERTS)
        self.assertEqual(code, 0, out)
        self.assertIn("SUCCESS: 6 rules found", out)

    def test_alert_unit_tests(self):
        code, out = run(tool("promtool"), "test", "rules", ALERT_TESTS)
        self.assertEqual(code, 0, out)
        self.assertIn("SUCCESS", out)

    def test_every_alert_is_unit_tested(self):
        with open(ALERTS, encoding="utf-8") as f:
            alerts = set(re.findall(r"^\s*- alert: (\S+)", f.read(), re.M))
        with open(ALERT_TESTS, encoding="utf-8") as f:
            tested = set(re.findall(r"alertname: (\S+)", f.read()))
        self.assertEqual(alerts, {"SluiceRejectionRateHigh", "SluiceStoreErrors",
                                  "SluiceStoreLatencyHigh", "SluiceCheckLatencyHigh",
                                  "SluiceReloadFailed", "SluiceRulesDatabaseDown"})
        self.assertEqual(tested, alerts)

    def test_example_config(self):
        code, out = run(tool("promtool"), "check", "config", PROMETHEUS_CONFIG)
        self.assertEqual(code, 0, out)


class NamesTest(unittest.TestCase):
    """The metric names of the dashboard and of the alerts all exist in a real server's /metrics:
    one on Redis (the over-limit cache's series) with on_failure: local (the fallback memory
    store's) and a SQLite rules database (sluice_rules_database_up)."""

    @classmethod
    def setUpClass(cls):
        cls.redis = RedisProcess().start()
        cls.addClassCleanup(cls.redis.kill)
        config = ("store:\n  backend: redis\n  url: " + cls.redis.url + "\n"
                  "  on_failure: local\n"
                  "rules:\n  paths: [rules.yaml]\n  database: sqlite://rules.db\n"
                  "log:\n  level: warn\n")
        server = SluiceServer(files={"sluice.yaml": config, "rules.yaml": RULES},
                              config="sluice.yaml")
        with server:
            exercise(server)
            cls.text = server.get("/metrics").body.decode("utf-8")
        cls.names = exported_names(cls.text)
        with open(DASHBOARD, encoding="utf-8") as f:
            cls.dashboard = json.load(f)

    def test_dashboard_names_exist(self):
        exprs = dashboard_expressions(self.dashboard)
        self.assertGreater(len(exprs), 20)
        used = set()
        for expr in exprs:
            names = set(METRIC_NAME.findall(expr))
            self.assertTrue(names, f"no metric in {expr!r}")
            self.assertLessEqual(names, self.names, f"{expr!r} names metrics /metrics lacks")
            used |= names
        # What the dashboard is for (deploy/README.md).
        for name in ("sluice_requests_total", "sluice_check_duration_seconds_bucket",
                     "sluice_store_duration_seconds_bucket",
                     "sluice_rule_store_duration_seconds_bucket", "sluice_store_errors_total",
                     "sluice_store_cached_rejections_total", "sluice_config_reloads_total",
                     "sluice_rules_loaded", "process_cpu_seconds_total",
                     "process_resident_memory_bytes", "process_open_fds"):
            self.assertIn(name, used)

    def test_alert_names_exist(self):
        with open(ALERTS, encoding="utf-8") as f:
            exprs = re.findall(r"expr: \|?\n?((?:.|\n)*?)\n\s+(?:for|labels):", f.read())
        self.assertEqual(len(exprs), 6)
        for expr in exprs:
            names = set(METRIC_NAME.findall(expr))
            self.assertTrue(names, expr)
            self.assertLessEqual(names, self.names, expr)

    def test_dashboard_shape(self):
        d = self.dashboard
        variables = {v["name"]: v for v in d["templating"]["list"]}
        self.assertEqual(variables["datasource"]["type"], "datasource")
        self.assertEqual(variables["datasource"]["query"], "prometheus")

        def panels(ps):
            for p in ps:
                yield p
                yield from panels(p.get("panels", []))

        ids = []
        for p in panels(d["panels"]):
            ids.append(p["id"])
            if p["type"] == "row":
                continue
            self.assertEqual(p["datasource"]["uid"], "${datasource}", p["title"])
            for t in p["targets"]:
                self.assertEqual(t["datasource"]["uid"], "${datasource}", p["title"])
        self.assertEqual(len(ids), len(set(ids)), "panel ids must be unique")


class Prometheus:
    """A real `prometheus` on a free loopback port with its own config and storage folder,
    scraping `targets` every second. Stopped with SIGTERM (killed on a hang)."""

    def __init__(self, targets):
        self.binary = tool("prometheus")
        self.tmp = tempfile.TemporaryDirectory(prefix="sluice-prom-")
        self.dir = self.tmp.name
        self.port = None
        self.proc = None
        self.log = None
        with open(os.path.join(self.dir, "prometheus.yml"), "w", encoding="utf-8") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: sluice\n    static_configs:\n"
                    f"      - targets: [{', '.join(json.dumps(t) for t in targets)}]\n")

    def start(self):
        for _ in range(5):
            self.port = free_port()
            self.log = open(os.path.join(self.dir, "prometheus.log"), "ab")
            self.proc = subprocess.Popen(
                [self.binary, "--config.file=" + os.path.join(self.dir, "prometheus.yml"),
                 "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.dir)
            deadline = time.monotonic() + PROMETHEUS_START_TIMEOUT_S
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with urllib.request.urlopen(
                            f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as res:
                        if res.status == 200:
                            return self
                except OSError:
                    pass
                time.sleep(0.1)
            self.log.close()
            if self.proc.poll() is None:
                raise AssertionError(f"prometheus did not get ready; log:\n{self.logs()}")
            # Exited: most likely lost the race for the port. Try another.
        raise AssertionError(f"prometheus did not start; log:\n{self.logs()}")

    def logs(self):
        try:
            with open(os.path.join(self.dir, "prometheus.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")[-6000:]
        except OSError:
            return ""

    def stop(self):
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            self.proc = None
            if self.log is not None:
                self.log.close()
            self.tmp.cleanup()

    def query(self, expr, at=None):
        """An instant query (at Unix time `at`, default now): (status, result list)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as res:
                body = json.load(res)
        except urllib.error.HTTPError as e:
            body = json.load(e)
        return body["status"], body.get("data", {}).get("result", body.get("error"))

    def value(self, expr, at=None):
        """The value of a query with at most one result (None when there is none)."""
        status, result = self.query(expr, at)
        assert status == "success", (expr, result)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None


class RealPrometheusTest(unittest.TestCase):
    def test_prometheus_scrapes_and_counts_the_checks(self):
        with SluiceServer(files={"rules.yaml": RULES}, rules=["rules.yaml"]) as server:
            prom = Prometheus([f"127.0.0.1:{server.port}"])
            prom.start()
            try:
                self.run_checks(server, prom)
                self.dashboard_queries_run(prom)
            finally:
                prom.stop()

    def run_checks(self, server, prom):
        rejected = 'sum(sluice_requests_total{job="sluice",rule_id="tight",result="rejected"})'
        allowed = 'sum(sluice_requests_total{job="sluice",rule_id="tight",result="allowed"})'
        # The series exist at 0 from the moment the rules load: wait for a scrape of them, so
        # that increase() sees the counter start from 0 inside its window.
        poll(lambda: prom.value(rejected) == 0, timeout=SCRAPE_TIMEOUT_S, interval=0.2,
             message="a first scrape of sluice_requests_total")
        self.assertEqual(prom.value('up{job="sluice"}'), 1)

        # 3 users × 10 checks on a limit of 3: 9 allowed, 21 rejected; spread over about 4 s so
        # that several scrapes see the counters rise.
        users = [unique("p") for _ in range(3)]
        for batch in range(4):
            for user in users:
                n = 3 if batch < 3 else 1
                for _ in range(n):
                    server.check(user_id=user, endpoint="/tight")
            time.sleep(1)
        m = server.metrics()
        self.assertEqual(m.value("sluice_requests_total", rule_id="tight", result="rejected"), 21)
        self.assertEqual(m.value("sluice_requests_total", rule_id="tight", result="allowed"), 9)

        # The last value scraped is exact.
        poll(lambda: prom.value(rejected) == 21, timeout=SCRAPE_TIMEOUT_S, interval=0.2,
             message="Prometheus to scrape 21 rejections")
        self.assertEqual(prom.value(allowed), 9)
        # increase() extrapolates past the samples it has: not before the first one (it is 0,
        # where a counter starts) and at most about one scrape interval after the last. With 10
        # samples or more (9 s of 1 s scrapes) it lands within 12% above 21: 9, 30 and 42 (the
        # allowed, all the checks, a double count) are all outside the range asserted. The
        # window (5m) holds the whole run, so its first sample is the 0 before the checks.
        series = 'sluice_requests_total{job="sluice",rule_id="tight",result="rejected"}'
        poll(lambda: (prom.value(f"count_over_time({series}[5m])") or 0) >= 10,
             timeout=SCRAPE_TIMEOUT_S, interval=0.2, message="10 scrapes")
        at = time.time()  # one evaluation time for the queries compared below
        inc = prom.value(f"sum(increase({series}[5m]))", at)
        self.assertIsNotNone(inc)
        self.assertGreaterEqual(inc, 21 * 0.95)
        self.assertLessEqual(inc, 21 * 1.2)
        # rate() is the same extrapolation per second.
        rate = prom.value(f"sum(rate({series}[5m]))", at)
        self.assertAlmostEqual(rate * 300, inc, delta=1e-6)
        # The series of this change exist in Prometheus too.
        self.assertEqual(prom.value('sum(sluice_rule_store_duration_seconds_count'
                                    '{job="sluice",rule_id="tight"})'), 30)
        self.assertIsNotNone(prom.value('process_start_time_seconds{job="sluice"}'))

    def dashboard_queries_run(self, prom):
        """Every expression of the dashboard, its variables filled in, is valid PromQL."""
        with open(DASHBOARD, encoding="utf-8") as f:
            exprs = dashboard_expressions(json.load(f))
        for expr in exprs:
            concrete = expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
            if concrete.startswith("label_values("):  # a Grafana function, not PromQL
                concrete = re.match(r"label_values\(([^,]+),", concrete).group(1)
            status, result = prom.query(concrete)
            self.assertEqual(status, "success", f"{concrete}: {result}")


if __name__ == "__main__":
    unittest.main()
