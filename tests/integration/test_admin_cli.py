"""`sluice admin` against the real server's admin API (CONTRACT §8): rules apply (diff, dry run,
If-Match, file rules left alone), rules get/list/delete, allow/deny lists, tiers, audit, versions,
restore, errors and exit codes, and the token never printed.

Not registered in CMake yet: it needs the server side of the admin API. Once both are on main,
add `admin_cli` to the integration suites of tests/CMakeLists.txt.

Every class runs its own server on a fresh SQLite database; the CLI reaches it through
SLUICE_URL and SLUICE_ADMIN_TOKEN (the environment, as a script would) unless a test says
otherwise.
"""

import hashlib
import json
import os
import subprocess
import unittest

from sluice_server import SluiceServer, free_port, poll, sluice_bin

WRITE_TOKEN = "it-write-token-5f1c0a"
READ_TOKEN = "it-read-token-93be27"


def sha256(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


CONFIG = f"""
rules:
  database: sqlite://rules.db
admin:
  tokens:
    - {{name: ops, sha256: "{sha256(WRITE_TOKEN)}", role: write}}
    - {{name: grafana, sha256: "{sha256(READ_TOKEN)}", role: read}}
"""

FILE_RULES = """
rules:
  - id: from-file
    match: {endpoint: /file}
    key: [user_id]
    limit: 5
    window: 1m
"""


def apply_text(*rules):
    return "rules:\n" + "".join(rules)


RULE_A = "  - {id: a, match: {tier: free}, key: [user_id], limit: 10, window: 1m}\n"
RULE_A_20 = "  - {id: a, match: {tier: free}, key: [user_id], limit: 20, window: 1m}\n"
RULE_B = "  - {id: b, match: {endpoint: /b}, key: [ip_address], limit: 3, window: 1s}\n"
RULE_C = "  - {id: c, match: {}, key: [], limit: 1000, window: 1h, algorithm: gcra}\n"


class AdminCliCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = SluiceServer(files={"sluice.yaml": CONFIG, "rules/base.yaml": FILE_RULES},
                                  config="sluice.yaml", rules=["rules/base.yaml"])
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def url(self):
        return f"http://{self.server.host}:{self.server.port}"

    def admin(self, *args, token=WRITE_TOKEN, url=None, expect=0):
        """Runs `sluice admin ARGS...` with SLUICE_URL/SLUICE_ADMIN_TOKEN set; checks the exit
        code and that no token was printed."""
        env = dict(os.environ)
        env["SLUICE_URL"] = url or self.url()
        env.pop("SLUICE_ADMIN_TOKEN", None)
        if token is not None:
            env["SLUICE_ADMIN_TOKEN"] = token
        res = subprocess.run([sluice_bin(), "admin", *args], capture_output=True, text=True,
                             timeout=30, stdin=subprocess.DEVNULL, env=env)
        for secret in (WRITE_TOKEN, READ_TOKEN):
            self.assertNotIn(secret, res.stdout + res.stderr)
        if expect is not None:
            self.assertEqual(res.returncode, expect, res)
        return res

    def write(self, name, text):
        self.server.write(name, text)
        return self.server.path(name)

    def database_rules(self):
        listing = json.loads(self.admin("rules", "list", "--json").stdout)
        return {r["id"]: r for r in listing["rules"] if r.get("source") == "database"}


class RulesApplyTest(AdminCliCase):
    """One server, one scenario in order: the database's rules follow the file."""

    def test_apply_scenario(self):
        path = self.write("apply.yaml", apply_text(RULE_A, RULE_B) +
                          "lists:\n  deny:\n    - {ip_address: 203.0.113.0/24}\n")

        # Dry run: the diff, nothing sent.
        res = self.admin("rules", "apply", "-f", path, "--dry-run")
        self.assertEqual(res.stdout.splitlines()[:3],
                         ["+ a", "+ b", "2 created, 0 updated, 0 deleted"], res)
        self.assertIn("warning:", res.stderr)
        self.assertIn("deny list entries ignored", res.stderr)
        self.assertEqual(self.database_rules(), {})

        # Apply: created, visible with source and revision; the file rule untouched.
        res = self.admin("rules", "apply", "-f", path)
        self.assertIn("2 created, 0 updated, 0 deleted", res.stdout)
        rules = self.database_rules()
        self.assertEqual(set(rules), {"a", "b"})
        self.assertEqual(rules["a"]["limit"], 10)
        self.assertIn("revision", rules["a"])
        listing = json.loads(self.admin("rules", "list", "--json").stdout)
        self.assertIn("from-file", {r["id"] for r in listing["rules"]})

        # The same file again: no changes.
        res = self.admin("rules", "apply", "-f", path)
        self.assertEqual(res.stdout.strip(), "no changes")

        # Update one (field diff), delete one, create one.
        self.write("apply.yaml", apply_text(RULE_A_20, RULE_C))
        res = self.admin("rules", "apply", "-f", path)
        self.assertEqual(res.stdout.splitlines()[:5],
                         ["~ a", "  limit: 10 -> 20", "+ c", "- b",
                          "1 created, 1 updated, 1 deleted"], res)
        rules = self.database_rules()
        self.assertEqual(set(rules), {"a", "c"})
        self.assertEqual(rules["a"]["limit"], 20)

        # The human listing and one rule.
        res = self.admin("rules", "list")
        self.assertRegex(res.stdout, r"(?m)^ID\s+LIMIT\s+WINDOW")
        self.assertRegex(res.stdout, r"(?m)^a\s+20\s+1m\b")
        self.assertRegex(res.stdout, r"(?m)^from-file\s+5\s+1m\b.*file:")
        res = self.admin("rules", "get", "a")
        self.assertIn("id: a\nsource: database\n", res.stdout)
        self.assertEqual(json.loads(self.admin("rules", "get", "a", "--json").stdout)["limit"], 20)

        # A file rule of the server's in the file: refused, naming it; nothing changed.
        clash = self.write("clash.yaml", apply_text(RULE_A_20, RULE_C) +
                           "  - {id: from-file, match: {}, key: [], limit: 1, window: 1s}\n")
        res = self.admin("rules", "apply", "-f", clash, expect=1)
        self.assertRegex(res.stderr, r"error: .*clash\.yaml:\d+:\d+: rule 'from-file' is defined")
        self.assertEqual(set(self.database_rules()), {"a", "c"})

        # A file that does not load: the loader's FILE:LINE:COL problems, nothing sent.
        bad = self.write("bad.yaml", "rules:\n  - {id: x, limit: 0, window: 1s}\n")
        res = self.admin("rules", "apply", "-f", bad, expect=1)
        self.assertRegex(res.stderr, r"bad\.yaml:2:\d+: ")

        # A read token: the first write is refused and reported, nothing applied.
        self.write("apply.yaml", apply_text(RULE_A, RULE_C))
        res = self.admin("rules", "apply", "-f", path, token=READ_TOKEN, expect=1)
        self.assertIn("error: FORBIDDEN: ", res.stderr)
        self.assertIn("0 of 1 changes were applied", res.stderr)

        # Delete, then a missing rule.
        self.admin("rules", "delete", "c")
        res = self.admin("rules", "get", "c", expect=1)
        self.assertRegex(res.stderr, r"^error: NOT_FOUND: ")


class ListsTiersHistoryTest(AdminCliCase):
    def test_lists(self):
        res = self.admin("lists", "deny", "add", "--ip", "198.51.100.0/24", "--reason", "abuse",
                         "--json")
        entry = json.loads(res.stdout)
        self.assertIn("id", entry)
        res = self.admin("lists", "deny")
        self.assertRegex(res.stdout, r"(?m)^ID\s+MATCH\s+REASON")
        self.assertIn("ip_address=198.51.100.0/24", res.stdout)
        self.assertIn("abuse", res.stdout)
        listed = json.loads(self.admin("lists", "deny", "list", "--json").stdout)
        self.assertIn(entry["id"], [e["id"] for e in listed["entries"]])

        # The entry reaches the limiter (within a second, CONTRACT §8).
        poll(lambda: self.server.check(ip_address="198.51.100.7").status == 403,
             message="the deny entry to apply")

        self.admin("lists", "deny", "delete", entry["id"])
        listed = json.loads(self.admin("lists", "deny", "--json").stdout)
        self.assertNotIn(entry["id"], [e["id"] for e in listed["entries"]])

        res = self.admin("lists", "allow", "add", "--reason", "nothing to match", expect=2)
        self.assertIn("Usage", res.stderr)
        res = self.admin("lists", "allow", "add", "--ip", "not-an-ip", expect=1)
        self.assertRegex(res.stderr, r"^error: [A-Z_]+: ")

    def test_tiers(self):
        self.admin("tiers", "set", "user-7", "premium")
        self.assertEqual(self.admin("tiers", "get", "user-7").stdout, "premium\n")
        self.admin("tiers", "delete", "user-7")
        res = self.admin("tiers", "get", "user-7", expect=1)
        self.assertIn("error: NOT_FOUND: ", res.stderr)

    def test_audit_versions_restore(self):
        self.admin("tiers", "set", "user-audit", "gold")
        versions = json.loads(self.admin("versions", "--json").stdout)["versions"]
        self.assertTrue(versions)
        newest = versions[0]["version"]
        res = self.admin("versions")
        self.assertRegex(res.stdout, r"(?m)^VERSION\s+AT\s+ACTOR\s+SUMMARY")
        res = self.admin("audit", "--since", str(newest - 1), "--limit", "5")
        self.assertRegex(res.stdout, r"(?m)^VERSION\s+AT\s+ACTOR\s+ACTION\s+TARGET")
        self.assertRegex(res.stdout, rf"(?m)^{newest}\s+\S+\s+ops\s+\S+\s+user-audit")
        audit = json.loads(self.admin("audit", "--limit", "1", "--json").stdout)["entries"]
        self.assertEqual(len(audit), 1)

        self.admin("tiers", "set", "user-audit", "silver")
        res = self.admin("restore", str(newest))
        self.assertRegex(res.stdout, rf"^restored version {newest} as version \d+")
        self.assertEqual(self.admin("tiers", "get", "user-audit").stdout, "gold\n")


class ErrorsTest(AdminCliCase):
    def test_no_or_unknown_token(self):
        res = self.admin("versions", token=None, expect=1)
        self.assertIn("error: UNAUTHORIZED: ", res.stderr)
        res = self.admin("versions", token="wrong", expect=1)
        self.assertIn("error: UNAUTHORIZED: ", res.stderr)

    def test_token_and_url_flags_win_over_the_environment(self):
        res = self.admin("--url", self.url(), "--token", WRITE_TOKEN, "versions",
                         url="http://127.0.0.1:1", token="wrong")
        self.assertRegex(res.stdout, r"(?m)^VERSION")

    def test_unreachable_server(self):
        url = f"http://127.0.0.1:{free_port()}"
        res = self.admin("versions", url=url, expect=1)
        self.assertTrue(res.stderr.startswith(f"error: cannot reach {url}: "), res)

    def test_https_is_bad_usage(self):
        res = self.admin("versions", url="https://127.0.0.1:8443", expect=2)
        self.assertIn("https:// is not supported", res.stderr)


if __name__ == "__main__":
    unittest.main()
