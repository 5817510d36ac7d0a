"""Rules reloads in the real server: file edits, invalid edits, a Kubernetes ConfigMap symlink
swap, SIGHUP (CONTRACT §1, §3.1 "A reload that fails validation changes nothing", §5 metrics).

Every test runs its own server, so that reload counters and rules versions start from zero.
Changes are observed by polling (a few seconds at most), never by sleeping a fixed time. The
probes use `cost: 0`, which reads a counter without charging it.
"""

import os
import resource
import signal
import unittest

from sluice_server import SluiceServer, poll, unique


def rules_text(rule_id, limit, endpoint="/r"):
    return f"""
rules:
  - id: {rule_id}
    match: {{endpoint: {endpoint}}}
    key: [user_id]
    limit: {limit}
    window: 1h
    algorithm: sliding_window_log
"""


INVALID = """
rules:
  - id: broken
    match: {endpoint: /r}
    limit: 10
    window: 10 parsecs
"""


# Debug logs: the `rules_unchanged` event says that the watcher looked and found nothing new.
DEBUG_CONFIG = "log:\n  level: debug\n"


def many_rules(prefix, n):
    return "rules:\n" + "".join(
        f"  - {{id: {prefix}{i}, match: {{endpoint: /m}}, key: [user_id], limit: 5, window: 1h}}\n"
        for i in range(n))


def alias_bomb():
    """Issue 10's "billion laughs": 7 levels of 10 aliases, 10^7 nodes once expanded."""
    lines = ["domain: bomb", "a: &a [x,x,x,x,x,x,x,x,x,x]"]
    for prev, level in zip("abcdef", "bcdefg"):
        lines.append(f"{level}: &{level} [" + ",".join([f"*{prev}"] * 10) + "]")
    return "\n".join(lines) + "\n"


class ReloadTestCase(unittest.TestCase):
    def start(self, files=None, rules=None, before_start=None, config=None):
        self.server = SluiceServer(files=files, rules=rules, before_start=before_start,
                                   config=config)
        self.server.start()
        # SIGTERM at the end, and the exit code must be 0.
        self.addCleanup(self.server.stop)
        self.user = unique()
        return self.server

    def probe(self, endpoint="/r"):
        """(rule_id, limit) of the rule applying to a read-only check, or None."""
        res = self.server.check(user_id=self.user, endpoint=endpoint, cost=0)
        self.assertEqual(res.status, 200, res)
        body = res.json()
        return (body["rule_id"], body["limit"]) if "rule_id" in body else None

    def reloads(self, result):
        return self.server.metrics().value("sluice_config_reloads_total", result=result)

    def version(self):
        return self.server.health()["rules"]["version"]

    def wait_for_rule(self, expected, endpoint="/r"):
        poll(lambda: self.probe(endpoint) == expected, message=f"rule {expected} to apply")

    def wait_for_reloads(self, result, count):
        poll(lambda: self.reloads(result) == count,
             message=f"sluice_config_reloads_total{{result={result!r}}} == {count}")


class FileEditTest(ReloadTestCase):
    def test_atomic_edit_is_picked_up_and_counted(self):
        self.start({"rules.yaml": rules_text("before", 3)}, ["rules.yaml"])
        self.assertEqual(self.probe(), ("before", 3))
        self.assertEqual(self.version(), 1)
        self.server.write_atomic("rules.yaml", rules_text("after", 7))
        self.wait_for_rule(("after", 7))
        self.wait_for_reloads("success", 1)
        self.assertEqual(self.version(), 2)
        self.assertEqual(self.reloads("failure"), 0)
        m = self.server.metrics()
        self.assertEqual(m.get("sluice_rules_loaded"), 1)
        self.assertEqual(self.server.health()["rules"]["count"], 1)

    def test_in_place_edit_is_picked_up(self):
        # As an editor saves: truncate and rewrite the same file.
        self.start({"rules.yaml": rules_text("before", 3)}, ["rules.yaml"])
        self.server.write("rules.yaml", rules_text("after", 7))
        self.wait_for_rule(("after", 7))
        poll(lambda: self.reloads("success") >= 1, message="a successful reload counted")
        self.assertGreaterEqual(self.version(), 2)

    def test_edit_in_a_watched_folder_adds_and_removes_files(self):
        self.start({"rules/a.yaml": rules_text("a", 3, "/a")}, ["rules"])
        self.assertIsNone(self.probe("/b"))
        self.server.write_atomic("rules/b.yaml", rules_text("b", 4, "/b"))
        self.wait_for_rule(("b", 4), "/b")
        poll(lambda: self.server.health()["rules"]["count"] == 2, message="2 rules")
        os.remove(self.server.path("rules/b.yaml"))
        poll(lambda: self.probe("/b") is None, message="rule b to go away")
        poll(lambda: self.server.health()["rules"]["count"] == 1, message="1 rule")
        self.assertEqual(self.probe("/a"), ("a", 3))

    def test_list_edit_is_picked_up(self):
        self.start({"rules.yaml": rules_text("r", 3)}, ["rules.yaml"])
        self.assertEqual(self.server.check(ip_address="192.0.2.1").status, 200)
        self.server.write_atomic("rules.yaml", rules_text("r", 3) + """
lists:
  deny:
    - {ip_address: 192.0.2.0/24, reason: added by a reload}
""")
        poll(lambda: self.server.check(ip_address="192.0.2.1").status == 403,
             message="the new deny entry")
        res = self.server.check(ip_address="192.0.2.1")
        self.assertEqual(res.json()["error"]["reason"], "added by a reload", res)

    def test_counters_survive_a_reload(self):
        # Reloading other rules does not reset a rule's counter (same id, algorithm and window).
        self.start({"rules.yaml": rules_text("kept", 2)}, ["rules.yaml"])
        for _ in range(2):
            self.assertEqual(self.server.check(user_id=self.user, endpoint="/r").status, 200)
        self.assertEqual(self.server.check(user_id=self.user, endpoint="/r").status, 429)
        self.server.write_atomic("rules.yaml", rules_text("kept", 2) + """
  - id: another
    match: {endpoint: /other}
    key: [user_id]
    limit: 5
    window: 1h
""")
        poll(lambda: self.server.health()["rules"]["count"] == 2, message="2 rules")
        self.assertEqual(self.server.check(user_id=self.user, endpoint="/r").status, 429)


class InvalidEditTest(ReloadTestCase):
    def test_invalid_edit_keeps_the_old_rules_and_counts_a_failure(self):
        self.start({"rules.yaml": rules_text("good", 2)}, ["rules.yaml"])
        self.assertEqual(self.server.check(user_id=self.user, endpoint="/r").status, 200)
        self.server.write_atomic("rules.yaml", INVALID)
        self.wait_for_reloads("failure", 1)
        # Nothing changed: same rules, same counters, same version.
        res = self.server.check(user_id=self.user, endpoint="/r")
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["rule_id"], "good", res)
        self.assertEqual(res.json()["remaining"], 0, res)
        self.assertEqual(self.server.check(user_id=self.user, endpoint="/r").status, 429)
        self.assertEqual(self.version(), 1)
        self.assertEqual(self.reloads("success"), 0)
        self.assertEqual(self.server.metrics().get("sluice_rules_loaded"), 1)
        # The error is logged, naming the file and what is wrong.
        logs = self.server.logs()
        self.assertIn("rules.yaml:", logs)
        self.assertIn("10 parsecs", logs)
        # Fixing the file is picked up.
        self.server.write_atomic("rules.yaml", rules_text("fixed", 9))
        self.wait_for_rule(("fixed", 9))
        self.wait_for_reloads("success", 1)
        self.assertEqual(self.version(), 2)
        self.assertEqual(self.reloads("failure"), 1)

    def test_duplicate_id_across_files_is_an_invalid_reload(self):
        self.start({"rules/a.yaml": rules_text("same", 2, "/a")}, ["rules"])
        self.server.write_atomic("rules/b.yaml", rules_text("same", 5, "/b"))
        self.wait_for_reloads("failure", 1)
        self.assertEqual(self.probe("/a"), ("same", 2))
        self.assertIsNone(self.probe("/b"))
        self.assertEqual(self.version(), 1)

    def test_deleting_the_only_rules_file_keeps_the_old_rules(self):
        self.start({"rules.yaml": rules_text("good", 2)}, ["rules.yaml"])
        os.remove(self.server.path("rules.yaml"))
        self.wait_for_reloads("failure", 1)
        self.assertEqual(self.probe(), ("good", 2))
        self.assertEqual(self.version(), 1)


class KubernetesSymlinkSwapTest(ReloadTestCase):
    """A ConfigMap volume: conf/..2026_x/rules.yaml, conf/..data -> ..2026_x,
    conf/rules.yaml -> ..data/rules.yaml. An update writes a new timestamped folder, points a
    temporary symlink at it and renames that symlink over ..data (one atomic step)."""

    OLD = "..2026_01_01_00_00_00.000000001"
    NEW = "..2026_01_01_00_00_01.000000002"

    def link_initial(self):
        conf = self.server.path("conf")
        os.symlink(self.OLD, os.path.join(conf, "..data"))
        os.symlink("..data/rules.yaml", os.path.join(conf, "rules.yaml"))

    def swap(self, text):
        conf = self.server.path("conf")
        os.makedirs(os.path.join(conf, self.NEW))
        with open(os.path.join(conf, self.NEW, "rules.yaml"), "w") as f:
            f.write(text)
        os.symlink(self.NEW, os.path.join(conf, "..data_tmp"))
        os.replace(os.path.join(conf, "..data_tmp"), os.path.join(conf, "..data"))
        old = os.path.join(conf, self.OLD)
        os.remove(os.path.join(old, "rules.yaml"))
        os.rmdir(old)

    def _run(self, rules_path):
        self.start({f"conf/{self.OLD}/rules.yaml": rules_text("v1", 3)}, [rules_path],
                   before_start=self.link_initial)
        self.assertEqual(self.probe(), ("v1", 3))
        self.swap(rules_text("v2", 6))
        self.wait_for_rule(("v2", 6))
        self.wait_for_reloads("success", 1)
        self.assertEqual(self.version(), 2)
        self.assertEqual(self.reloads("failure"), 0)

    def test_swap_with_the_folder_as_rules_path(self):
        self._run("conf")

    def test_swap_with_the_symlinked_file_as_rules_path(self):
        self._run("conf/rules.yaml")


class SighupTest(ReloadTestCase):
    def test_sighup_reloads_and_is_counted(self):
        self.start({"rules.yaml": rules_text("r", 3)}, ["rules.yaml"])
        self.server.send_signal(signal.SIGHUP)
        self.wait_for_reloads("success", 1)
        self.assertEqual(self.version(), 2)
        self.server.send_signal(signal.SIGHUP)
        self.wait_for_reloads("success", 2)
        self.assertEqual(self.version(), 3)
        self.assertEqual(self.probe(), ("r", 3))
        self.assertEqual(self.reloads("failure"), 0)

    def test_sighup_with_invalid_rules_counts_a_failure(self):
        self.start({"rules.yaml": rules_text("r", 3)}, ["rules.yaml"])
        self.server.write_atomic("rules.yaml", INVALID)
        self.wait_for_reloads("failure", 1)  # the watcher's attempt
        self.server.send_signal(signal.SIGHUP)
        self.wait_for_reloads("failure", 2)  # and SIGHUP's
        self.assertEqual(self.version(), 1)
        self.assertEqual(self.probe(), ("r", 3))

    def test_sighup_with_no_rules_paths(self):
        # A server without rules: a SIGHUP reload succeeds and is counted, everything allowed.
        self.start()
        self.server.send_signal(signal.SIGHUP)
        self.wait_for_reloads("success", 1)
        self.assertEqual(self.version(), 2)
        self.assertIsNone(self.probe())


class HostileReloadTest(ReloadTestCase):
    """Issue 10: what a reload does with files made to hurt, or with a watcher in trouble."""

    def test_alias_bomb_fails_fast_and_logs_little(self):
        # It used to peak at 6.9 GB and log one 977 MB line.
        self.start({"rules.yaml": rules_text("good", 2)}, ["rules.yaml"])
        self.server.write_atomic("rules.yaml", alias_bomb())
        self.wait_for_reloads("failure", 1)
        self.assertEqual(self.probe(), ("good", 2))
        self.assertEqual(self.version(), 1)
        logs = self.server.logs_bytes()
        self.assertIn(b"nodes once aliases are expanded", logs)
        self.assertLess(max(len(line) for line in logs.splitlines()), 5000)

    def test_touched_or_rewritten_alike_files_are_no_new_version(self):
        self.start({"rules.yaml": rules_text("r", 3), "sluice.yaml": DEBUG_CONFIG},
                   ["rules.yaml"], config="sluice.yaml")
        path = self.server.path("rules.yaml")
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        poll(lambda: b'"rules_unchanged"' in self.server.logs_bytes(),
             message="the watcher's look at the touched file")
        self.server.write_atomic("rules.yaml", rules_text("r", 3))
        poll(lambda: self.server.logs_bytes().count(b'"rules_unchanged"') >= 2,
             message="the watcher's look at the rewritten file")
        self.assertEqual(self.version(), 1)
        self.assertEqual(self.reloads("success"), 0)
        # A real change still is one.
        self.server.write_atomic("rules.yaml", rules_text("r", 4))
        self.wait_for_rule(("r", 4))
        self.assertEqual(self.version(), 2)
        self.assertEqual(self.reloads("success"), 1)
        self.assertEqual(self.reloads("failure"), 0)

    def test_running_out_of_descriptors_is_no_change(self):
        # The watcher cannot list the folder while the server has no descriptor to spare. That
        # used to read as a change (a failed reload), and the recovery as another (a new version
        # of the same files).
        self.start({"rules/a.yaml": rules_text("r", 3)}, ["rules"])
        pid = self.server.proc.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, hard))  # 0, 1, 2 are taken
        try:
            poll(lambda: b'"rules_watch_failed"' in self.server.logs_bytes(),
                 message="the watcher to fail to list the folder")
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        self.assertIn(b"Too many open files", self.server.logs_bytes())
        # The first change after: one reload, one new version.
        self.server.write_atomic("rules/a.yaml", rules_text("r", 4))
        self.wait_for_rule(("r", 4))
        self.assertEqual(self.version(), 2)
        self.assertEqual(self.reloads("success"), 1)
        self.assertEqual(self.reloads("failure"), 0)

    def series(self):
        m = self.server.metrics()
        return [dict(labels) for name, labels in m.samples if name == "sluice_requests_total"]

    def test_metrics_keep_no_series_of_removed_rules_and_stay_bounded(self):
        # 1500 rules: the first 1000 have series of their own, the others share "_other".
        self.start({"rules.yaml": many_rules("v0-", 1500)}, ["rules.yaml"])
        for version in range(1, 4):
            self.server.write_atomic("rules.yaml", many_rules(f"v{version}-", 1500))
            poll(lambda: self.version() == version + 1, message=f"version {version + 1}")
        ids = {labels["rule_id"] for labels in self.series()}
        self.assertEqual(ids, {f"v3-{i}" for i in range(1000)} | {"_other", "deny_list",
                                                                   "allow_list"})
        self.assertLess(len(self.server.get("/metrics").body), 300_000)
        self.assertEqual(self.server.check(user_id=self.user, endpoint="/m").status, 200)
        m = self.server.metrics()
        self.assertEqual(m.value("sluice_requests_total", rule_id="v3-0", result="allowed"), 1)
        self.assertEqual(m.value("sluice_requests_total", rule_id="_other", result="allowed"),
                         500)


if __name__ == "__main__":
    unittest.main()
