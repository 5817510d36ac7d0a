"""Rules changes reaching every server that shares the database (CONTRACT §8 "Propagation"):
three `sluice` servers on one real PostgreSQL, two on one SQLite file.

- A change made through one server is applied by every server within 1 s (p99). The test polls
  each server's check endpoint and prints the times it observed; it fails only past a generous
  deadline (PROPAGATION_DEADLINE_S, for sanitizer builds on busy CI machines).
- PostgreSQL killed (SIGKILL): every server says degraded, admin writes answer
  503 DATABASE_UNAVAILABLE, checks go on with the last rules; PostgreSQL back: the servers
  reconnect by themselves, a change made through one reaches all.
- Afterwards every server's /health rules.version is the database's version, read from the
  database itself.

rules.poll is 5 s, so a change seen sooner came pushed (LISTEN/NOTIFY, the SQLite file watch),
not polled.
"""

import shutil
import tempfile
import time
import unittest

from admin_helper import (DATABASE_STATE_DEADLINE_S, ENV_TOKEN, PROPAGATION_DEADLINE_S,
                          AdminServer, note, postgres_version, rule, sqlite_version,
                          wait_applied)
from postgres_helper import PostgresProcess
from sluice_server import POLL_TIMEOUT_S, poll, unique


class PropagationSuite:
    SERVERS = 2

    @classmethod
    def setUpClass(cls):
        cls.setUpDatabase()
        cls.servers = []
        for _ in range(cls.SERVERS):
            s = AdminServer(cls.url, poll_every="5s")
            s.start()
            cls.servers.append(s)
            cls.addClassCleanup(s.stop)  # exit code 0 required

    def db_version(self):
        raise NotImplementedError

    def assertVersionsAgree(self):
        """Every server's /health rules.version is the database's version (polled: the last
        change may still be on its way)."""
        version = self.db_version()

        def agree():
            seen = [s.health()["rules"]["version"] for s in self.servers]
            return seen if all(v == version for v in seen) else None

        try:
            poll(agree, timeout=PROPAGATION_DEADLINE_S, message="versions to agree")
        except AssertionError:
            seen = [s.health()["rules"] for s in self.servers]
            raise AssertionError(f"database version {version}, servers' /health rules: {seen}")
        for s in self.servers:
            db = s.health().get("database", {})
            self.assertEqual(db.get("version"), version, db)

    def assertEnforced(self, server, rule_id, limit, endpoint):
        user = unique("enf")
        for _ in range(limit):
            res = server.check(user_id=user, endpoint=endpoint)
            self.assertEqual(res.status, 200, res)
            self.assertEqual(res.json().get("rule_id"), rule_id, res)
        res = server.check(user_id=user, endpoint=endpoint)
        self.assertEqual(res.status, 429, res)
        self.assertEqual(res.json()["error"]["rule_id"], rule_id, res)

    def test_changes_reach_every_server_within_a_second(self):
        observed = []
        for i in range(2 * len(self.servers)):
            writer = self.servers[i % len(self.servers)]
            rid = unique("prop")
            res = writer.admin("POST", "rules", rule(rid, limit=2))
            self.assertEqual(res.status, 201, res)
            took = wait_applied(self.servers, rid, user_id="p", endpoint="/" + rid)
            observed.append(max(took))
        for s in self.servers:
            self.assertEnforced(s, rid, 2, "/" + rid)

        # A replacement and a deletion travel the same way.
        writer = self.servers[-1]
        res = writer.admin("PUT", writer.rule_path(rid), rule(rid, limit=3), token=ENV_TOKEN)
        self.assertEqual(res.status, 200, res)
        started = time.monotonic()
        for s in self.servers:
            poll(lambda: s.probe(user_id="p", endpoint="/" + rid)[1].get("limit") == 3,
                 timeout=PROPAGATION_DEADLINE_S, interval=0.01, message="the new limit")
        observed.append(time.monotonic() - started)
        res = self.servers[0].admin("DELETE", writer.rule_path(rid))
        self.assertEqual(res.status, 204, res)
        observed.append(max(wait_applied(self.servers, None, user_id="p", endpoint="/" + rid)))

        note(f"{len(self.servers)} servers applied each change within "
             f"{', '.join(f'{t * 1000:.0f}' for t in observed)} ms (max "
             f"{max(observed) * 1000:.0f} ms; contract: 1 s p99)")
        self.assertVersionsAgree()


class PostgresPropagationTest(PropagationSuite, unittest.TestCase):
    SERVERS = 3

    @classmethod
    def setUpDatabase(cls):
        cls.pg = PostgresProcess().start()
        cls.addClassCleanup(cls.pg.close)
        cls.url = cls.pg.create_database("propagation")

    def db_version(self):
        return postgres_version(self.pg, "propagation")

    def test_database_down_then_back(self):
        rid = unique("down")
        res = self.servers[0].admin("POST", "rules", rule(rid, limit=2))
        self.assertEqual(res.status, 201, res)
        wait_applied(self.servers, rid, user_id="p", endpoint="/" + rid)
        self.assertVersionsAgree()
        version = self.db_version()

        self.pg.kill()
        started = time.monotonic()
        for s in self.servers:
            def down(s=s):
                h = s.health()
                return h["status"] == "degraded" and h.get("database", {}).get("status") == "down"

            poll(down, timeout=DATABASE_STATE_DEADLINE_S, interval=0.05,
                 message=f"server {s.port} to say degraded, database down")
            # What the SluiceRulesDatabaseDown alert reads (set with the state /health shows).
            poll(lambda s=s: s.metrics().get("sluice_rules_database_up") == 0,
                 timeout=POLL_TIMEOUT_S, message=f"server {s.port}: sluice_rules_database_up 0")
        note(f"every server said degraded {time.monotonic() - started:.1f} s after the kill")

        for s in self.servers:
            res = s.get("/health")
            self.assertEqual(res.status, 200, res)
            self.assertEqual(res.json()["rules"]["version"], version, res)
            writes = [("POST", "rules", rule(unique("while-down"))),
                      ("PUT", s.rule_path(rid), rule(rid, limit=9)),
                      ("DELETE", s.rule_path(rid), None),
                      ("POST", "lists/deny", {"ip_address": "192.0.2.55"}),
                      ("PUT", "tiers/someone", {"tier": "premium"})]
            for method, path, body in writes:
                with self.subTest(server=s.port, method=method, path=path):
                    res = s.admin(method, path, body)
                    self.assertEqual(res.status, 503, res)
                    self.assertEqual(res.json()["error"]["code"], "DATABASE_UNAVAILABLE", res)
            # The last good rules stay in force.
            self.assertEnforced(s, rid, 2, "/" + rid)

        self.pg.restart()
        started = time.monotonic()
        for s in self.servers:
            def up(s=s):
                h = s.health()
                return h["status"] == "healthy" and h.get("database", {}).get("status") == \
                    "connected"

            poll(up, timeout=DATABASE_STATE_DEADLINE_S, interval=0.05,
                 message=f"server {s.port} to say healthy, database connected")
            poll(lambda s=s: s.metrics().get("sluice_rules_database_up") == 1,
                 timeout=POLL_TIMEOUT_S, message=f"server {s.port}: sluice_rules_database_up 1")
        note(f"every server reconnected {time.monotonic() - started:.1f} s after the restart")
        self.assertEqual(self.db_version(), version)

        back = unique("back")
        res = self.servers[1].admin("POST", "rules", rule(back, limit=2))
        self.assertEqual(res.status, 201, res)
        took = wait_applied(self.servers, back, user_id="p", endpoint="/" + back)
        note(f"the first change after the restart reached all in {max(took) * 1000:.0f} ms")
        for s in self.servers:
            self.assertEnforced(s, back, 2, "/" + back)
        self.assertEqual(self.db_version(), version + 1)
        self.assertVersionsAgree()


class SqlitePropagationTest(PropagationSuite, unittest.TestCase):
    SERVERS = 2

    @classmethod
    def setUpDatabase(cls):
        cls.dir = tempfile.mkdtemp(prefix="sluice-sqlite-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, ignore_errors=True)
        cls.path = f"{cls.dir}/rules.db"
        cls.url = f"sqlite://{cls.path}"  # sqlite:///tmp/...: an absolute path

    def db_version(self):
        return sqlite_version(self.path)


if __name__ == "__main__":
    unittest.main()
