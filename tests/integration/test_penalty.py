"""Penalties (docs/configuration.md, "Penalties"): two `sluice` servers share one real Redis. A
user rejected 3 times within a minute by a rule with `penalty: {after: 3, within: 1m, ban: 3s}`
is denied (403 BLOCKED, reason penalty:RULE) on both servers, whichever counted the rejections;
other users are untouched; the deny list API shows the ban with its expiry; and once the ban is
over the user is counted by the rule again (and banned again by a new rejection while the old
ones are still within the minute)."""

import time
import unittest

from redis_helper import server_config, start_fleet
from sluice_server import POLL_TIMEOUT_S, poll, unique

TOKEN = "penalty-test-token-5c1e"
RULES = """rules:
  - id: login
    match: {endpoint: /login}
    key: [user_id]
    limit: 1
    window: 1h
    algorithm: fixed_window
    penalty: {after: 3, within: 1m, ban: 3s}
"""


class PenaltyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        start_fleet(cls, 2,
                    lambda url: {"sluice.yaml": server_config(url, "fail_closed", timeout="2s"),
                                 "rules.yaml": RULES},
                    config="sluice.yaml", rules=["rules.yaml"],
                    env={"SLUICE_ADMIN_TOKEN": TOKEN})

    def check(self, server, user):
        return server.check(user_id=user, endpoint="/login")

    def deny_list(self, server):
        res = server.request("GET", "/v1/admin/lists/deny",
                             headers={"Authorization": f"Bearer {TOKEN}"})
        self.assertEqual(res.status, 200, res)
        return res.json()["entries"]

    def bans_counted(self):
        return sum(s.metrics().value("sluice_penalty_bans_total", rule_id="login")
                   for s in self.servers)

    def test_a_ban_counted_on_one_server_holds_on_both_then_ends(self):
        a, b = self.servers
        user = unique("mallory")
        counted = self.bans_counted()
        self.assertEqual(self.check(a, user).status, 200)
        for _ in range(3):
            res = self.check(a, user)
            self.assertEqual(res.status, 429, res)
        # The ban is set just after the third rejection is answered.
        denied = poll(lambda: (lambda r: r if r.status == 403 else None)(self.check(b, user)),
                      timeout=POLL_TIMEOUT_S, message="the other server to deny the user")
        error = denied.json()["error"]
        self.assertEqual(error["code"], "BLOCKED", denied)
        self.assertEqual(error["reason"], "penalty:login", denied)
        self.assertEqual(self.check(a, user).status, 403)
        self.assertEqual(self.check(b, unique("alice")).status, 200)

        bans = [e for e in self.deny_list(a) if e.get("source") == "penalty"]
        self.assertEqual(len(bans), 1, bans)
        self.assertEqual(bans[0]["reason"], "penalty:login")
        self.assertIn(user, bans[0]["id"])
        self.assertTrue(bans[0]["expires_at"].endswith("Z"), bans[0])
        self.assertEqual(self.bans_counted(), counted + 1)  # one ban, whichever server set it

        # After the ban: counted by the rule again (its 1-an-hour limit is spent: 429, not 403;
        # and that rejection, with the three still within the minute, bans the user again).
        started = time.monotonic()
        poll(lambda: self.check(b, user).status == 429, timeout=3 + POLL_TIMEOUT_S,
             message="the ban to end")
        self.assertGreater(time.monotonic() - started, 1.0)
        poll(lambda: self.check(b, user).status == 403, timeout=POLL_TIMEOUT_S,
             message="the ban again")

    def test_rejections_on_both_servers_add_up(self):
        a, b = self.servers
        user = unique("spread")
        self.assertEqual(self.check(a, user).status, 200)
        self.assertEqual(self.check(a, user).status, 429)
        self.assertEqual(self.check(b, user).status, 429)
        self.assertEqual(self.check(a, user).status, 429)  # the third, on another server
        poll(lambda: self.check(b, user).status == 403, timeout=POLL_TIMEOUT_S,
             message="the ban")


if __name__ == "__main__":
    unittest.main()
