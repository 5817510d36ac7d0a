"""Rules reloads in the real server: file edits, invalid edits, a Kubernetes ConfigMap symlink
swap, SIGHUP (CONTRACT §1, §3.1 "A reload that fails validation changes nothing", §5 metrics).

Every test runs its own server, so that reload counters and rules versions start from zero.
Changes are observed by polling (a few seconds at most), never by sleeping a fixed time. The
probes use `cost: 0`, which reads a counter without charging it.
"""

import os
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


class ReloadTestCase(unittest.TestCase):
    def start(self, files=None, rules=None, before_start=None):
        self.server = SluiceServer(files=files, rules=rules, before_start=before_start)
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


if __name__ == "__main__":
    unittest.main()
