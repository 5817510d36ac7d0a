"""The admin API against the real server (CONTRACT §8), on SQLite and on a real PostgreSQL: one
suite (AdminSuite) run by SqliteAdminTest and PostgresAdminTest.

Each class shares one PostgreSQL (postgres_helper.py) and one server whose tests do not
interfere: every test uses rule ids, endpoints, users and addresses of its own. Tests that need a
database of their own (restore, the admin API off) start their own server on a fresh database.

Asynchronous effects (a change reaching the checks) are polled with a deadline, never slept on.

Choices where §8 leaves room (written down here, checked as written):
- A rule as the API returns it holds the fields it was given (defaults may be added), plus
  `source` and `revision`; `ETag` is `"REVISION"`.
- Restore: "rules, lists and tiers exactly as they were at V, as a new version". A restored
  object is written by the new version, so its `revision` may differ from the one it had at V:
  the listings are compared in full minus `revision` (and the top-level `version`), and every
  revision must name a version that exists (≤ the new version).
- The audit of a restore: §8 asks one entry per change; the server may record one entry per
  object the restore changes (each with its before and after). The test asks one entry for each
  of versions 1..10, at least one for the restore's version 11, and nothing else.
- An id the API accepts must be usable in its URL (percent-encoded): ids with `/`, `?`, `#`, `%`,
  spaces or non-ASCII letters are either refused with 422 (field `id`) or round-trip through
  GET/PUT/DELETE. Ids a database cannot hold or a log line would garble (NUL, newline, empty)
  are refused.
"""

import json
import os
import sqlite3
import tempfile
import threading
import unittest
from datetime import datetime
from urllib.parse import unquote

from admin_helper import (ENV_TOKEN, OPS_TOKEN, PROPAGATION_DEADLINE_S, UNKNOWN_TOKEN,
                          VIEWER_TOKEN, AdminServer, note, quote, rule, wait_applied)
from postgres_helper import PostgresProcess
from sluice_server import poll, raw_exchange, unique

FILE_RULES = """
rules:
  - id: file-basic
    match: {endpoint: /file-basic}
    key: [user_id]
    limit: 50
    window: 1h
    algorithm: sliding_window_log
lists:
  allow:
    - {user_id: file-allowed-user}
"""

ADMIN_PATHS = ["rules", "rules/some-rule", "lists/allow", "lists/deny", "tiers/some-user",
               "counters?rule_id=file-basic&user_id=u", "audit", "versions"]


def as_object(value):
    """An audit `before`/`after`: a JSON object, or the JSON text of one."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def find(body, name):
    """The first value of key `name` anywhere in a JSON value (None if absent)."""
    if isinstance(body, dict):
        if name in body:
            return body[name]
        values = body.values()
    elif isinstance(body, list):
        values = body
    else:
        return None
    for v in values:
        found = find(v, name)
        if found is not None:
            return found
    return None


def without(d, *keys):
    return {k: v for k, v in d.items() if k not in keys}


class AdminSuite:
    """The tests; a subclass mixes in unittest.TestCase and says how to make a database."""

    BACKEND = None  # "sqlite" | "postgresql", as /health names it

    @classmethod
    def database_url(cls, name):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        cls.setUpDatabase()
        cls.server = AdminServer(cls.database_url("main"), files={"rules/file.yaml": FILE_RULES})
        cls.server.start()
        cls.addClassCleanup(cls.server.stop)  # exit code 0 required

    @classmethod
    def setUpDatabase(cls):
        pass

    def own_server(self, **kwargs):
        """A server on a fresh database of its own, stopped at the end of the test."""
        s = AdminServer(self.database_url(unique("db").replace("-", "_")), **kwargs)
        s.start()
        self.addCleanup(s.stop)
        return s

    # --- helpers ---

    def admin(self, method, path, body=None, token=OPS_TOKEN, headers=None, server=None):
        return (server or self.server).admin(method, path, body=body, token=token,
                                             headers=headers)

    def assertError(self, res, status, code):
        """The error object of §5: {"error": {"code", "message"}}, as JSON."""
        self.assertEqual(res.status, status, res)
        self.assertTrue(res.header("Content-Type", "").startswith("application/json"), res)
        body = res.json()
        self.assertIn("error", body, res)
        self.assertEqual(body["error"].get("code"), code, res)
        self.assertIsInstance(body["error"].get("message"), str, res)
        self.assertTrue(body["error"]["message"], res)
        return body

    def assertUnauthorized(self, res):
        self.assertError(res, 401, "UNAUTHORIZED")
        challenge = res.header("WWW-Authenticate")
        self.assertIsNotNone(challenge, res)
        self.assertTrue(challenge.startswith("Bearer"), res)

    def assertInvalidRule(self, res, field=None, prefix=None):
        """422 INVALID_RULE whose details name `field` (or a field starting with `prefix`)."""
        body = self.assertError(res, 422, "INVALID_RULE")
        details = body["error"].get("details")
        self.assertIsInstance(details, list, res)
        self.assertTrue(details, res)
        for d in details:
            self.assertIsInstance(d.get("field"), str, res)
            self.assertIsInstance(d.get("message"), str, res)
            self.assertTrue(d["message"], res)
        fields = [d["field"] for d in details]
        if field is not None:
            self.assertIn(field, fields, res)
        if prefix is not None:
            self.assertTrue(any(f.startswith(prefix) for f in fields), res)
        return details

    def create(self, body, token=OPS_TOKEN, server=None):
        res = self.admin("POST", "rules", body, token=token, server=server)
        self.assertEqual(res.status, 201, res)
        return res.json()

    def get_rule(self, rule_id, server=None):
        return self.admin("GET", (server or self.server).rule_path(rule_id), server=server)

    def assertNoRule(self, rule_id, server=None):
        self.assertError(self.get_rule(rule_id, server), 404, "NOT_FOUND")

    def assertRuleBody(self, got, sent):
        """The API's rule: what was sent, plus source "database" and an integer revision."""
        for k, v in sent.items():
            self.assertEqual(got.get(k), v, f"field {k}: {got}")
        self.assertEqual(got.get("source"), "database", got)
        self.assertIsInstance(got.get("revision"), int, got)

    def version(self, server=None):
        """The database's version, as GET /v1/admin/versions says (its newest entry)."""
        res = self.admin("GET", "versions", server=server)
        self.assertEqual(res.status, 200, res)
        versions = res.json()["versions"]
        return versions[0]["version"] if versions else 0

    def listed_version(self, server=None):
        res = self.admin("GET", "rules", server=server)
        self.assertEqual(res.status, 200, res)
        return res.json()["version"]

    def listing(self, server=None):
        """GET /v1/admin/rules once the server has applied the database's version: the listing
        is of the rules in force, which may trail a write by up to the propagation delay."""
        version = self.version(server)

        def settled():
            res = self.admin("GET", "rules", server=server)
            self.assertEqual(res.status, 200, res)
            body = res.json()
            return body if body["version"] >= version else None

        return poll(settled, timeout=PROPAGATION_DEADLINE_S,
                    message=f"GET /v1/admin/rules at version {version}")

    def wait_rule(self, rule_id, server=None, **fields):
        """Waits until a read-only check with `fields` applies `rule_id`; returns the seconds."""
        return wait_applied([server or self.server], rule_id, **fields)[0]

    def wait_status(self, status, server=None, **fields):
        s = server or self.server
        return poll(lambda: s.check(cost=0, **fields).status == status,
                    timeout=PROPAGATION_DEADLINE_S, message=f"a check {fields} answering {status}")

    # --- auth ---

    def test_auth_missing_token_is_401_with_bearer_challenge(self):
        for path in ADMIN_PATHS:
            with self.subTest(path=path):
                self.assertUnauthorized(self.admin("GET", path, token=None))
        rule_id = unique("auth-none")
        self.assertUnauthorized(self.admin("POST", "rules", rule(rule_id), token=None))
        self.assertUnauthorized(
            self.admin("PUT", self.server.rule_path(rule_id), rule(rule_id), token=None))
        self.assertNoRule(rule_id)

    def test_auth_unknown_or_malformed_token_is_401(self):
        rule_id = unique("auth-unknown")
        for header in [f"Bearer {UNKNOWN_TOKEN}", "Bearer", "Bearer ", f"Basic {OPS_TOKEN}",
                       OPS_TOKEN, f"Bearer {OPS_TOKEN}x", f"Bearer {OPS_TOKEN[:-1]}"]:
            with self.subTest(header=header):
                self.assertUnauthorized(self.admin("GET", "rules", token=None,
                                                   headers={"Authorization": header}))
                self.assertUnauthorized(self.admin("POST", "rules", rule(rule_id), token=None,
                                                   headers={"Authorization": header}))
        self.assertNoRule(rule_id)

    def test_auth_read_token_reads_but_may_not_write(self):
        existing = self.create(rule(unique("auth-read")))
        rid = existing["id"]
        for path in ADMIN_PATHS[:1] + ["lists/allow", "lists/deny", "audit", "versions"]:
            with self.subTest(path=path):
                self.assertEqual(self.admin("GET", path, token=VIEWER_TOKEN).status, 200)
        res = self.admin("GET", self.server.rule_path(rid), token=VIEWER_TOKEN)
        self.assertEqual(res.status, 200, res)
        before = self.version()
        new_id = unique("auth-read-new")
        writes = [
            ("POST", "rules", rule(new_id)),
            ("PUT", self.server.rule_path(new_id), rule(new_id)),
            ("PUT", self.server.rule_path(rid), rule(rid, limit=99)),
            ("DELETE", self.server.rule_path(rid), None),
            ("POST", "lists/deny", {"ip_address": "192.0.2.200", "reason": "read token"}),
            ("POST", "lists/allow", {"user_id": unique("read-allow")}),
            ("PUT", "tiers/" + quote(unique("read-tier")), {"tier": "premium"}),
            ("DELETE", f"counters?rule_id={quote(rid)}&user_id=someone", None),
            ("POST", "versions/1/restore", None),
        ]
        for method, path, body in writes:
            with self.subTest(method=method, path=path):
                self.assertError(self.admin(method, path, body, token=VIEWER_TOKEN), 403,
                                 "FORBIDDEN")
        self.assertNoRule(new_id)
        self.assertEqual(self.get_rule(rid).json(), existing)
        self.assertEqual(self.version(), before)

    def test_auth_config_and_env_write_tokens_are_the_audit_actors(self):
        by_ops = self.create(rule(unique("actor-ops")))
        by_env = self.create(rule(unique("actor-env")), token=ENV_TOKEN)
        res = self.admin("GET", f"audit?since={by_ops['revision'] - 1}")
        self.assertEqual(res.status, 200, res)
        actors = {e["target"]: e["actor"] for e in res.json()["entries"]}
        self.assertEqual(actors.get(by_ops["id"]), "ops", res)
        self.assertEqual(actors.get(by_env["id"]), "env", res)

    def test_operations_need_no_token(self):
        for headers in [{}, {"Authorization": f"Bearer {UNKNOWN_TOKEN}"}]:
            with self.subTest(headers=headers):
                res = self.server.request("POST", "/v1/ratelimit/check",
                                          body={"user_id": "no-token"},
                                          headers={"Content-Type": "application/json",
                                                   **headers})
                self.assertEqual(res.status, 200, res)
                for path in ["/health", "/healthcheck", "/metrics"]:
                    res = self.server.request("GET", path, headers=headers)
                    self.assertEqual(res.status, 200, (path, res))

    def test_admin_api_off_without_tokens_is_403_whatever_the_request_carries(self):
        off = self.own_server(tokens=False, env_token=None)
        rule_id = unique("off")
        for token in [None, OPS_TOKEN, UNKNOWN_TOKEN]:
            with self.subTest(token=token):
                for path in ADMIN_PATHS:
                    self.assertError(off.admin("GET", path, token=token), 403, "ADMIN_DISABLED")
                self.assertError(off.admin("POST", "rules", rule(rule_id), token=token), 403,
                                 "ADMIN_DISABLED")
                self.assertError(off.admin("POST", "rules:validate", rule(rule_id), token=token),
                                 403, "ADMIN_DISABLED")
        res = off.check(user_id="u", endpoint="/" + rule_id)
        self.assertEqual(res.status, 200, res)
        self.assertNotIn("rule_id", res.json())

    # --- /health ---

    def test_health_reports_the_database_and_its_version(self):
        self.create(rule(unique("health")))
        version = self.version()

        def settled():
            h = self.server.health()
            return h if h["rules"]["version"] == version else None

        health = poll(settled, timeout=PROPAGATION_DEADLINE_S,
                      message=f"/health rules.version {version}")
        self.assertEqual(health["status"], "healthy", health)
        db = health.get("database")
        self.assertIsInstance(db, dict, health)
        self.assertEqual(db.get("backend"), self.BACKEND, health)
        self.assertEqual(db.get("status"), "connected", health)
        self.assertEqual(db.get("version"), version, health)
        self.assertEqual(self.listed_version(), version)

    # --- rules ---

    def test_post_creates_a_rule(self):
        sent = rule(unique("post"), limit=4, description="made by a test")
        res = self.admin("POST", "rules", sent)
        self.assertEqual(res.status, 201, res)
        self.assertTrue(res.header("Content-Type", "").startswith("application/json"), res)
        location = res.header("Location")
        self.assertIsNotNone(location, res)
        # Percent-encoded where needed (`:` need not be).
        self.assertTrue(unquote(location).endswith("/v1/admin/rules/" + sent["id"]), location)
        created = res.json()
        self.assertRuleBody(created, sent)
        self.assertEqual(created["revision"], self.version())

        got = self.get_rule(sent["id"])
        self.assertEqual(got.status, 200, got)
        self.assertEqual(got.header("ETag"), f'"{created["revision"]}"', got)
        self.assertEqual(got.json(), created)
        # The Location names it.
        path = location[location.index("/v1/admin/"):]
        self.assertEqual(self.admin("GET", path).json(), created)

    def test_list_has_the_version_and_the_file_rules(self):
        created = self.create(rule(unique("listed")))
        body = self.listing()
        self.assertIsInstance(body.get("version"), int, body)
        self.assertGreaterEqual(body["version"], created["revision"])
        by_id = {r["id"]: r for r in body["rules"]}
        self.assertEqual(by_id.get(created["id"]), created)
        file_rule = by_id.get("file-basic")
        self.assertIsNotNone(file_rule, body)
        self.assertTrue(file_rule["source"].startswith("file:"), file_rule)
        self.assertTrue(file_rule["source"].endswith("file.yaml"), file_rule)
        self.assertEqual(file_rule["limit"], 50)
        self.assertEqual(file_rule["match"], {"endpoint": "/file-basic"})
        got = self.get_rule("file-basic")
        self.assertEqual(got.status, 200, got)
        self.assertEqual(got.json()["source"], file_rule["source"])

    def test_put_creates_then_replaces(self):
        sent = rule(unique("put"), limit=3)
        res = self.admin("PUT", self.server.rule_path(sent["id"]), sent)
        self.assertEqual(res.status, 201, res)
        first = res.json()
        self.assertRuleBody(first, sent)
        self.wait_rule(sent["id"], user_id="p", endpoint=sent["match"]["endpoint"])

        replaced = dict(sent, limit=8, description="replaced")
        res = self.admin("PUT", self.server.rule_path(sent["id"]), replaced)
        self.assertEqual(res.status, 200, res)
        second = res.json()
        self.assertRuleBody(second, replaced)
        self.assertGreater(second["revision"], first["revision"])
        got = self.get_rule(sent["id"])
        self.assertEqual(got.json(), second)
        self.assertEqual(got.header("ETag"), f'"{second["revision"]}"')
        # The checks follow.
        poll(lambda: self.server.probe(user_id="p", endpoint=sent["match"]["endpoint"])[1]
             .get("limit") == 8, timeout=PROPAGATION_DEADLINE_S, message="the new limit")

    def test_put_whose_body_names_another_id_is_refused(self):
        a, b = unique("put-a"), unique("put-b")
        res = self.admin("PUT", self.server.rule_path(a), rule(b))
        self.assertIn(res.status, (400, 422), res)
        self.assertNoRule(a)
        self.assertNoRule(b)

    def test_if_match_guards_put_and_delete(self):
        created = self.create(rule(unique("ifmatch"), limit=3))
        path = self.server.rule_path(created["id"])
        stale = f'"{created["revision"]}"'
        res = self.admin("PUT", path, dict(rule(created["id"]), limit=4),
                         headers={"If-Match": stale})
        self.assertEqual(res.status, 200, res)
        current = res.json()
        version = self.version()

        for method, body in [("PUT", rule(created["id"], limit=5)), ("DELETE", None)]:
            with self.subTest(method=method):
                self.assertError(self.admin(method, path, body, headers={"If-Match": stale}),
                                 412, "PRECONDITION_FAILED")
                got = self.get_rule(created["id"])
                self.assertEqual(got.json(), current)
                self.assertEqual(got.header("ETag"), f'"{current["revision"]}"')
                self.assertEqual(self.version(), version)

        fresh = f'"{current["revision"]}"'
        res = self.admin("PUT", path, rule(created["id"], limit=6), headers={"If-Match": fresh})
        self.assertEqual(res.status, 200, res)
        fresh = f'"{res.json()["revision"]}"'
        res = self.admin("DELETE", path, headers={"If-Match": fresh})
        self.assertEqual(res.status, 204, res)
        self.assertNoRule(created["id"])

    def test_delete_removes_a_rule(self):
        created = self.create(rule(unique("delete"), limit=1))
        endpoint = created["match"]["endpoint"]
        self.wait_rule(created["id"], user_id="d", endpoint=endpoint)
        res = self.admin("DELETE", self.server.rule_path(created["id"]))
        self.assertEqual(res.status, 204, res)
        self.assertEqual(res.body, b"")
        self.assertNoRule(created["id"])
        self.assertNotIn(created["id"], [r["id"] for r in self.listing()["rules"]])
        self.assertError(self.admin("DELETE", self.server.rule_path(created["id"])), 404,
                         "NOT_FOUND")
        self.wait_rule(None, user_id="d", endpoint=endpoint)

    def test_file_rules_are_read_only(self):
        version = self.version()
        self.assertError(self.admin("DELETE", self.server.rule_path("file-basic")), 409,
                         "READ_ONLY")
        res = self.admin("PUT", self.server.rule_path("file-basic"), rule("file-basic", limit=1))
        self.assertEqual(res.status, 409, res)
        self.assertIn(res.json()["error"]["code"], ("READ_ONLY", "CONFLICT"), res)
        got = self.get_rule("file-basic").json()
        self.assertEqual(got["limit"], 50)
        self.assertTrue(got["source"].startswith("file:"), got)
        self.assertEqual(self.version(), version)
        self.assertEqual(self.server.applied_rule(user_id="f", endpoint="/file-basic"),
                         "file-basic")

    def test_post_of_a_taken_id_conflicts(self):
        created = self.create(rule(unique("taken"), limit=3))
        version = self.version()
        self.assertError(self.admin("POST", "rules", rule(created["id"], limit=9)), 409,
                         "CONFLICT")
        self.assertEqual(self.get_rule(created["id"]).json(), created)
        self.assertError(self.admin("POST", "rules", rule("file-basic", limit=9)), 409,
                         "CONFLICT")
        self.assertEqual(self.get_rule("file-basic").json()["limit"], 50)
        self.assertEqual(self.version(), version)

    def test_unknown_rule_is_404(self):
        missing = unique("missing")
        self.assertError(self.get_rule(missing), 404, "NOT_FOUND")
        self.assertError(self.admin("DELETE", self.server.rule_path(missing)), 404, "NOT_FOUND")

    def test_invalid_rules_are_422_with_field_paths_and_change_nothing(self):
        existing = self.create(rule(unique("invalid-target"), limit=3))
        version = self.version()
        cases = [
            ("limit", {"limit": 0}),
            ("limit", {"limit": -1}),
            ("limit", {"limit": "5"}),
            ("limit", {"limit": 2.5}),
            ("window", {"window": "1 sec"}),
            ("window", {"window": 60}),
            ("match.ip_address", {"match": {"ip_address": "300.1.1.1/8"}}),
            ("match.colour", {"match": {"colour": "red"}}),
            ("colour", {"colour": "red"}),
            ("algorithm", {"algorithm": "magic"}),
            ("mode", {"mode": "loud"}),
            ("enabled", {"enabled": "yes"}),
            ("priority", {"priority": "high"}),
            ("burst", {"burst": "lots"}),
            ("match", {"match": ["endpoint"]}),
            ("key", {"key": "user_id"}),
        ]
        for field, change in cases:
            rid = unique("invalid")
            body = dict(rule(rid), **change)
            with self.subTest(field=field, change=change):
                self.assertInvalidRule(self.admin("POST", "rules", body), field=field)
                self.assertNoRule(rid)
                self.assertInvalidRule(self.admin("PUT", self.server.rule_path(rid), body),
                                       field=field)
                self.assertNoRule(rid)
                # Replacing a valid rule with an invalid one changes nothing either.
                self.assertInvalidRule(
                    self.admin("PUT", self.server.rule_path(existing["id"]),
                               dict(rule(existing["id"]), **change)), field=field)
        rid = unique("invalid")
        self.assertInvalidRule(
            self.admin("POST", "rules", dict(rule(rid), key=["user_id", "nope"])), prefix="key")
        missing_limit = without(rule(rid), "limit")
        self.assertInvalidRule(self.admin("POST", "rules", missing_limit), field="limit")
        self.assertInvalidRule(self.admin("POST", "rules", dict(rule(rid), id=5)), field="id")
        self.assertInvalidRule(self.admin("POST", "rules", without(rule(rid), "id")),
                               field="id")
        # Every problem of the rule at once.
        details = self.assertInvalidRule(
            self.admin("POST", "rules", dict(rule(rid), limit=0, window="x", colour=1)))
        self.assertTrue({"limit", "window", "colour"} <= {d["field"] for d in details}, details)
        self.assertNoRule(rid)
        self.assertEqual(self.get_rule(existing["id"]).json(), existing)
        self.assertEqual(self.version(), version)

    def test_malformed_json_is_400(self):
        version = self.version()
        rid = unique("badjson")
        for raw in [b'{"id": ', b"not json", b'{"id": "' + rid.encode() + b'", "limit": 3,}',
                    b'{"id": "' + rid.encode() + b'", "description": "\xff\xfe", "limit": 3, '
                    b'"window": "1h", "key": []}']:
            with self.subTest(body=raw):
                for method, path in [("POST", "rules"), ("PUT", self.server.rule_path(rid)),
                                     ("POST", "rules:validate")]:
                    self.assertError(
                        self.admin(method, path, raw,
                                   headers={"Content-Type": "application/json"}),
                        400, "INVALID_REQUEST")
        self.assertNoRule(rid)
        self.assertEqual(self.version(), version)

    def test_oversized_body_is_413(self):
        rid = unique("huge")
        body = json.dumps(rule(rid, description="x" * (70 * 1024))).encode()
        for method, path in [("POST", "rules"), ("PUT", self.server.rule_path(rid))]:
            with self.subTest(method=method):
                # Raw: the server may answer before it has read the whole body.
                head = (f"{method} /v1/admin/{path} HTTP/1.1\r\n"
                        f"Host: 127.0.0.1:{self.server.port}\r\n"
                        f"Authorization: Bearer {OPS_TOKEN}\r\n"
                        "Content-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
                res = raw_exchange(self.server, head + body)
                self.assertIsNotNone(res, "connection closed without a 413")
                self.assertError(res, 413, "PAYLOAD_TOO_LARGE")
        self.assertNoRule(rid)

    def test_ids_that_cannot_be_stored_are_refused(self):
        version = self.version()
        for rid in ["", "a\u0000b", "a\nb", "a\tb"]:
            with self.subTest(id=rid):
                self.assertInvalidRule(self.admin("POST", "rules", rule(rid, endpoint="/x")),
                                       field="id")
        self.assertEqual(self.version(), version)

    def test_path_ids_of_invalid_utf8_are_refused_and_the_server_goes_on(self):
        # Found by fuzz_http_server: a PUT whose path id held bytes that are not UTF-8 ended the
        # process (nlohmann threw writing them into JSON). Sent raw: http.client would not.
        version = self.version()
        body = json.dumps(rule("x", endpoint="/utf8")).encode()
        for method in (b"PUT", b"GET", b"DELETE"):
            with self.subTest(method=method):
                s = self.server.connect()
                s.sendall(method + b" /v1/admin/rules/f\xfe\xffz HTTP/1.1\r\nHost: x\r\n"
                          b"Authorization: Bearer " + OPS_TOKEN.encode() + b"\r\n"
                          b"Content-Type: application/json\r\nConnection: close\r\n"
                          b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                answer = b""
                while chunk := s.recv(65536):
                    answer += chunk
                s.close()
                status = int(answer.split(b" ", 2)[1])
                self.assertIn(status, (400, 404, 422), answer[:300])
        self.assertEqual(self.server.get("/health").status, 200)
        self.assertEqual(self.version(), version)

    def test_ids_the_api_accepts_are_addressable(self):
        for suffix in ["/x", "?x=1", "#x", "%2F", "%", " x", "r\u00e8gle-\u00fc", "a:b"]:
            rid = unique("addr") + suffix
            with self.subTest(id=rid):
                res = self.admin("POST", "rules", rule(rid, endpoint="/addr"))
                if res.status == 422:
                    self.assertInvalidRule(res, field="id")
                    continue
                self.assertEqual(res.status, 201, res)
                created = res.json()
                self.assertEqual(created["id"], rid)
                self.assertTrue(unquote(res.header("Location", "")).endswith(
                    "/v1/admin/rules/" + rid), res)
                got = self.get_rule(rid)
                self.assertEqual(got.status, 200, got)
                self.assertEqual(got.json(), created)
                res = self.admin("PUT", self.server.rule_path(rid),
                                 rule(rid, limit=7, endpoint="/addr"))
                self.assertEqual(res.status, 200, res)
                res = self.admin("DELETE", self.server.rule_path(rid))
                self.assertEqual(res.status, 204, res)
                self.assertNoRule(rid)

    def test_validate_saves_nothing(self):
        version = self.version()
        rid = unique("validate")
        res = self.admin("POST", "rules:validate", rule(rid))
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json(), {"valid": True})
        self.assertInvalidRule(self.admin("POST", "rules:validate", rule(rid, limit=0)),
                               field="limit")
        self.assertInvalidRule(
            self.admin("POST", "rules:validate",
                       dict(rule(rid), match={"ip_address": "999.0.0.1"})),
            field="match.ip_address")
        self.assertNoRule(rid)
        self.assertEqual(self.version(), version)
        self.assertIsNone(self.server.applied_rule(user_id="v", endpoint="/" + rid))

    def test_created_rule_is_enforced_by_checks(self):
        created = self.create(rule(unique("enforced"), limit=3))
        user, endpoint = unique("user"), created["match"]["endpoint"]
        took = self.wait_rule(created["id"], user_id=user, endpoint=endpoint)
        note(f"applied by the writing server {took * 1000:.0f} ms after its 201")
        for i in range(3):
            res = self.server.check(user_id=user, endpoint=endpoint)
            self.assertEqual(res.status, 200, res)
            self.assertEqual(res.json()["rule_id"], created["id"])
            self.assertEqual(res.json()["remaining"], 2 - i)
        res = self.server.check(user_id=user, endpoint=endpoint)
        self.assertEqual(res.status, 429, res)
        err = res.json()["error"]
        self.assertEqual(err["code"], "RATE_LIMIT_EXCEEDED")
        self.assertEqual(err["rule_id"], created["id"])
        self.assertEqual(err["limit"], 3)

    # --- lists ---

    def test_deny_entry_blocks_checks_until_deleted(self):
        ip = "198.51.100.10"
        res = self.admin("POST", "lists/deny", {"ip_address": ip, "reason": "abuse"})
        self.assertEqual(res.status, 201, res)
        entry = res.json()
        self.assertIn("id", entry, entry)
        entry_id = str(entry["id"])
        listed = self.admin("GET", "lists/deny")
        self.assertEqual(listed.status, 200, listed)
        mine = [e for e in listed.json()["entries"] if str(e.get("id")) == entry_id]
        self.assertEqual(len(mine), 1, listed)
        self.assertEqual(mine[0].get("ip_address"), ip)
        self.assertEqual(mine[0].get("reason"), "abuse")
        self.assertEqual(mine[0].get("source"), "database")

        self.wait_status(403, ip_address=ip)
        res = self.server.check(ip_address=ip)
        self.assertEqual(res.status, 403, res)
        self.assertEqual(res.json()["error"]["code"], "BLOCKED")
        self.assertEqual(res.json()["error"].get("reason"), "abuse")

        res = self.admin("DELETE", "lists/deny/" + quote(entry_id))
        self.assertEqual(res.status, 204, res)
        self.wait_status(200, ip_address=ip)
        self.assertNotIn(entry_id, [str(e.get("id")) for e in
                                    self.admin("GET", "lists/deny").json()["entries"]])
        self.assertError(self.admin("DELETE", "lists/deny/" + quote(entry_id)), 404, "NOT_FOUND")

    def test_allow_entry_skips_the_rules(self):
        created = self.create(rule(unique("allowed-rule"), limit=1))
        user, endpoint = unique("vip"), created["match"]["endpoint"]
        res = self.admin("POST", "lists/allow",
                         {"user_id": user, "expires_at": "2099-01-01T00:00:00Z"})
        self.assertEqual(res.status, 201, res)
        entry_id = str(res.json()["id"])
        listed = [e for e in self.admin("GET", "lists/allow").json()["entries"]
                  if str(e.get("id")) == entry_id]
        self.assertEqual(len(listed), 1)
        self.assertEqual(listed[0].get("user_id"), user)
        self.assertIn("expires_at", listed[0])
        poll(lambda: self.server.check(user_id=user, endpoint=endpoint).json().get("allowlisted"),
             timeout=PROPAGATION_DEADLINE_S, message="the allow entry to apply")
        for _ in range(3):
            res = self.server.check(user_id=user, endpoint=endpoint)
            self.assertEqual(res.status, 200, res)
            self.assertEqual(res.json(), {"allowed": True, "allowlisted": True})
        self.assertEqual(self.admin("DELETE", "lists/allow/" + quote(entry_id)).status, 204)
        self.wait_rule(created["id"], user_id=user, endpoint=endpoint)

    def test_list_entries_from_files_are_listed_and_bad_entries_refused(self):
        entries = self.admin("GET", "lists/allow").json()["entries"]
        mine = [e for e in entries if e.get("user_id") == "file-allowed-user"]
        self.assertEqual(len(mine), 1, entries)
        self.assertTrue(mine[0].get("source", "").startswith("file:"), mine)
        version = self.version()
        for body in [{"ip_address": "not-an-ip"}, {"reason": "no attribute"}, {"user_id": 7}]:
            with self.subTest(body=body):
                res = self.admin("POST", "lists/deny", body)
                self.assertEqual(res.status, 422, res)
        self.assertEqual(self.version(), version)
        self.assertEqual(self.admin("GET", "lists/grey").status, 404)

    # --- tiers ---

    def test_stored_tier_is_matched_for_checks_without_one(self):
        created = self.create(rule(unique("tiered"), limit=5,
                                   match={"tier": "premium", "endpoint": "/tiered"}))
        user = unique("tier-user")
        self.assertIsNone(self.server.applied_rule(user_id=user, endpoint="/tiered"))
        self.assertError(self.admin("GET", "tiers/" + quote(user)), 404, "NOT_FOUND")

        res = self.admin("PUT", "tiers/" + quote(user), {"tier": "premium"})
        self.assertIn(res.status, (200, 201, 204), res)
        res = self.admin("GET", "tiers/" + quote(user))
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json().get("tier"), "premium", res)
        self.wait_rule(created["id"], user_id=user, endpoint="/tiered")
        # A check that says its tier is matched with it.
        self.assertIsNone(self.server.applied_rule(user_id=user, endpoint="/tiered",
                                                   tier="free"))
        # Another user has no tier.
        self.assertIsNone(self.server.applied_rule(user_id=unique("tier-other"),
                                                   endpoint="/tiered"))

        res = self.admin("DELETE", "tiers/" + quote(user))
        self.assertIn(res.status, (200, 204), res)
        self.assertError(self.admin("GET", "tiers/" + quote(user)), 404, "NOT_FOUND")
        self.wait_rule(None, user_id=user, endpoint="/tiered")

    # --- counters ---

    def test_counters_read_without_consuming_and_reset(self):
        created = self.create(rule(unique("counted"), limit=2))
        rid, endpoint, user = created["id"], created["match"]["endpoint"], unique("cu")
        self.wait_rule(rid, user_id=user, endpoint=endpoint)
        query = f"counters?rule_id={quote(rid)}&user_id={quote(user)}"
        for _ in range(2):
            self.assertEqual(self.server.check(user_id=user, endpoint=endpoint).status, 200)

        for _ in range(2):  # reading twice: nothing consumed
            res = self.admin("GET", query)
            self.assertEqual(res.status, 200, res)
            state = res.json()
            probe = self.server.probe(user_id=user, endpoint=endpoint)[1]
            self.assertEqual(find(state, "limit"), 2, state)
            self.assertEqual(find(state, "remaining"), 0, state)
            self.assertEqual(find(state, "remaining"), probe["remaining"], (state, probe))
        res = self.admin("GET", query, token=VIEWER_TOKEN)
        self.assertEqual(res.status, 200, res)
        self.assertEqual(self.server.check(user_id=user, endpoint=endpoint).status, 429)

        version = self.version()
        res = self.admin("DELETE", query)
        self.assertIn(res.status, (200, 204), res)
        self.assertEqual(self.version(), version + 1)
        self.assertEqual(find(self.admin("GET", query).json(), "remaining"), 2)
        res = self.server.check(user_id=user, endpoint=endpoint)
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["remaining"], 1)

        self.assertError(self.admin("GET", f"counters?rule_id={unique('nope')}&user_id=u"), 404,
                         "NOT_FOUND")

    # --- versions and audit ---

    def test_every_change_bumps_the_version_by_one(self):
        rid = unique("bump")
        user = unique("bump-user")
        changes = [
            ("POST", "rules", rule(rid)),
            ("PUT", self.server.rule_path(rid), rule(rid, limit=4)),
            ("POST", "lists/deny", {"api_key": unique("key"), "reason": "bump"}),
            ("PUT", "tiers/" + quote(user), {"tier": "gold"}),
            ("DELETE", "tiers/" + quote(user), None),
            ("DELETE", f"counters?rule_id={quote(rid)}&user_id={quote(user)}", None),
            ("DELETE", self.server.rule_path(rid), None),
        ]
        version = self.version()
        for method, path, body in changes:
            with self.subTest(method=method, path=path):
                res = self.admin(method, path, body)
                self.assertLess(res.status, 300, res)
                if res.status == 201 and path == "lists/deny":
                    entry_id = str(res.json()["id"])
                self.assertEqual(self.version(), version + 1)
                version += 1
        res = self.admin("DELETE", "lists/deny/" + quote(entry_id))
        self.assertEqual(res.status, 204, res)
        version += 1
        self.assertEqual(self.version(), version)
        # Refused calls change nothing.
        refused = [("DELETE", self.server.rule_path(rid), None),
                   ("POST", "rules", rule("file-basic")),
                   ("POST", "rules", rule(rid, limit=0)),
                   ("POST", "rules", rule(rid), VIEWER_TOKEN)]
        for method, path, body, *token in refused:
            res = self.admin(method, path, body, token=token[0] if token else OPS_TOKEN)
            self.assertGreaterEqual(res.status, 400, res)
        self.assertEqual(self.version(), version)
        res = self.admin("GET", "versions")
        versions = res.json()["versions"]
        self.assertEqual(versions[0]["version"], version)
        self.assertEqual(versions[0]["actor"], "ops")
        self.assertIsInstance(versions[0]["summary"], str)
        self.parse_time(versions[0]["at"])
        numbers = [v["version"] for v in versions]
        self.assertEqual(numbers, sorted(numbers, reverse=True))
        poll(lambda: self.server.health()["rules"]["version"] == version,
             timeout=PROPAGATION_DEADLINE_S, message=f"/health rules.version {version}")

    def parse_time(self, text):
        self.assertIsInstance(text, str)
        self.assertRegex(text, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    def assertAuditEntry(self, e):
        for k in ("version", "at", "actor", "action", "target", "before", "after"):
            self.assertIn(k, e, e)
        self.assertIsInstance(e["version"], int, e)
        self.assertIsInstance(e["action"], str, e)
        self.assertTrue(e["actor"], e)
        self.parse_time(e["at"])

    def test_audit_records_before_and_after_newest_first(self):
        created = self.create(rule(unique("audited"), limit=3))
        rid = created["id"]
        res = self.admin("PUT", self.server.rule_path(rid), rule(rid, limit=6))
        replaced = res.json()
        self.assertEqual(self.admin("DELETE", self.server.rule_path(rid)).status, 204)
        first = created["revision"]

        res = self.admin("GET", f"audit?since={first - 1}")
        self.assertEqual(res.status, 200, res)
        entries = res.json()["entries"]
        self.assertEqual([e["version"] for e in entries], [first + 2, first + 1, first], entries)
        for e in entries:
            self.assertAuditEntry(e)
            self.assertEqual(e["actor"], "ops")
            self.assertEqual(e["target"], rid)
        deleted, updated, made = entries
        self.assertIsNone(as_object(made["before"]))
        self.assertEqual(as_object(made["after"]).get("limit"), 3, made)
        self.assertEqual(as_object(updated["before"]).get("limit"), 3, updated)
        self.assertEqual(as_object(updated["after"]).get("limit"), 6, updated)
        self.assertEqual(as_object(deleted["before"]).get("limit"), 6, deleted)
        self.assertIsNone(as_object(deleted["after"]))
        self.assertEqual(len({made["action"], updated["action"], deleted["action"]}), 3, entries)
        self.assertLessEqual(self.parse_time(made["at"]), self.parse_time(deleted["at"]))
        self.assertGreater(replaced["revision"], first)

        res = self.admin("GET", f"audit?since={first - 1}&limit=2")
        self.assertEqual([e["version"] for e in res.json()["entries"]], [first + 2, first + 1])
        res = self.admin("GET", f"audit?since={first + 2}")
        self.assertEqual(res.json()["entries"], [])
        res = self.admin("GET", "audit?limit=1")
        self.assertEqual(len(res.json()["entries"]), 1)
        everything = self.admin("GET", "audit").json()["entries"]
        self.assertLessEqual(len(everything), 100)
        numbers = [e["version"] for e in everything]
        self.assertEqual(numbers, sorted(numbers, reverse=True))

    def test_restore_brings_back_rules_lists_and_tiers_exactly(self):
        s = self.own_server(files={"rules/file.yaml": FILE_RULES})
        start = self.version(server=s)
        path = s.rule_path

        def change(method, p, body=None, token=OPS_TOKEN):
            res = self.admin(method, p, body, token=token, server=s)
            self.assertLess(res.status, 300, (method, p, res))
            return res

        # Versions start+1 .. start+3: the state to come back to.
        change("POST", "rules", rule("ra", limit=5, description="first"))
        change("POST", "rules", rule("rb", limit=6, group="g", priority=7, mode="shadow"))
        change("PUT", "tiers/tu", {"tier": "premium"})
        self.assertEqual(self.listing(server=s)["version"], start + 3)
        at3 = {name: self.admin("GET", p, server=s).json()
               for name, p in [("rules", "rules"), ("allow", "lists/allow"),
                               ("deny", "lists/deny"), ("tu", "tiers/tu")]}
        self.assertEqual(at3["rules"]["version"], start + 3)
        # Seven more, by two actors.
        change("PUT", path("ra"), rule("ra", limit=50, description="second"))
        change("DELETE", path("rb"))
        change("POST", "rules", rule("rc", limit=7), token=ENV_TOKEN)
        change("POST", "lists/deny", {"ip_address": "203.0.113.99", "reason": "later"},
               token=ENV_TOKEN)
        change("PUT", "tiers/tu", {"tier": "free"}, token=ENV_TOKEN)
        change("POST", "lists/allow", {"user_id": "later-user"}, token=ENV_TOKEN)
        change("PUT", "tiers/tv", {"tier": "gold"}, token=ENV_TOKEN)
        self.assertEqual(self.version(server=s), start + 10)

        res = self.admin("POST", f"versions/{start + 3}/restore", server=s)
        self.assertEqual(res.status, 200, res)
        self.assertEqual(find(res.json(), "version"), start + 11, res)
        self.assertEqual(self.version(server=s), start + 11)
        self.assertEqual(self.listing(server=s)["version"], start + 11)

        now = {name: self.admin("GET", p, server=s) for name, p in
               [("rules", "rules"), ("allow", "lists/allow"), ("deny", "lists/deny"),
                ("tu", "tiers/tu"), ("tv", "tiers/tv")]}
        self.assertEqual(now["rules"].json()["version"], start + 11)

        def listing(body, key):
            return sorted((without(r, "revision") for r in body[key]),
                          key=lambda r: (r.get("source", ""), str(r.get("id"))))

        self.assertEqual(listing(now["rules"].json(), "rules"), listing(at3["rules"], "rules"))
        for r in now["rules"].json()["rules"]:
            if r["source"] == "database":
                self.assertLessEqual(r["revision"], start + 11, r)
        self.assertEqual(listing(now["allow"].json(), "entries"), listing(at3["allow"], "entries"))
        self.assertEqual(listing(now["deny"].json(), "entries"), listing(at3["deny"], "entries"))
        self.assertEqual(without(now["tu"].json(), "revision"), without(at3["tu"], "revision"))
        self.assertEqual(now["tv"].status, 404, now["tv"])
        # And the checks follow: ra's limit is 5 again, rc is gone, tu is premium again.
        poll(lambda: s.probe(user_id="x", endpoint="/ra")[1].get("limit") == 5,
             timeout=PROPAGATION_DEADLINE_S, message="ra's limit back to 5")
        self.assertIsNone(s.applied_rule(user_id="x", endpoint="/rc"))
        self.assertEqual(s.check(ip_address="203.0.113.99").status, 200)

        audit = self.admin("GET", f"audit?since={start}", server=s).json()["entries"]
        for e in audit:
            self.assertAuditEntry(e)
        numbers = [e["version"] for e in audit]
        self.assertEqual(numbers, sorted(numbers, reverse=True))
        self.assertEqual(set(numbers), set(range(start + 1, start + 12)), audit)
        for v in range(start + 1, start + 11):
            self.assertEqual(numbers.count(v), 1, audit)
        actors = {e["version"]: e["actor"] for e in audit}
        self.assertEqual([actors[start + v] for v in range(1, 12)],
                         ["ops"] * 5 + ["env"] * 5 + ["ops"], audit)
        versions = self.admin("GET", "versions", server=s).json()["versions"]
        self.assertEqual([v["version"] for v in versions if v["version"] > start],
                         list(range(start + 11, start, -1)))

    def test_restore_of_an_unknown_version_is_404(self):
        version = self.version()
        self.assertError(self.admin("POST", f"versions/{version + 1000}/restore"), 404,
                         "NOT_FOUND")
        self.assertEqual(self.version(), version)

    # --- concurrency ---

    def test_racing_writers_with_the_same_if_match_one_wins(self):
        created = self.create(rule(unique("race"), limit=3))
        rid, path = created["id"], self.server.rule_path(created["id"])
        etag = f'"{created["revision"]}"'
        for round_ in range(5):
            barrier = threading.Barrier(2)
            results = [None, None]

            def put(i, etag=etag, barrier=barrier, results=results, round_=round_):
                body = rule(rid, limit=10 * (i + 1) + round_)
                barrier.wait()
                results[i] = self.admin("PUT", path, body, headers={"If-Match": etag})

            threads = [threading.Thread(target=put, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            statuses = sorted(r.status for r in results)
            self.assertEqual(statuses, [200, 412], results)
            winner = next(r for r in results if r.status == 200).json()
            loser = next(r for r in results if r.status == 412)
            self.assertError(loser, 412, "PRECONDITION_FAILED")
            got = self.get_rule(rid)
            self.assertEqual(got.json(), winner)
            etag = got.header("ETag")
            self.assertEqual(etag, f'"{winner["revision"]}"')


class SqliteAdminTest(AdminSuite, unittest.TestCase):
    BACKEND = "sqlite"

    @classmethod
    def database_url(cls, name):
        # Relative: resolved against the server's config folder (its temporary folder).
        return f"sqlite://{name}.db"


class PostgresAdminTest(AdminSuite, unittest.TestCase):
    BACKEND = "postgresql"

    @classmethod
    def setUpDatabase(cls):
        cls.pg = PostgresProcess().start()
        cls.addClassCleanup(cls.pg.close)

    @classmethod
    def database_url(cls, name):
        return cls.pg.create_database(name)


class CrashMidWriteTest(unittest.TestCase):
    """A server killed (SIGKILL) while writers are busy leaves the database consistent: every
    version has its audit entries, every stored object's revision is a version that exists, no
    acknowledged change is lost, and a new server starts on it at its version."""

    def test_sigkill_during_writes_leaves_the_database_consistent(self):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "rules.db")
            server = AdminServer(f"sqlite://{path}")
            server.start()
            acknowledged = []
            stop = threading.Event()

            def writer(n):
                i = 0
                while not stop.is_set():
                    rule_id = f"crash-{n}-{i}"
                    try:
                        res = server.admin("POST", "rules", rule(rule_id))
                    except Exception:  # noqa: BLE001 - any way the killed server's answer fails
                        return  # the server is gone
                    if res.status == 201:
                        acknowledged.append(rule_id)
                    i += 1

            threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
            for t in threads:
                t.start()
            poll(lambda: len(acknowledged) >= 20, timeout=30, message="20 writes acknowledged")
            server.kill()
            stop.set()
            for t in threads:
                t.join()

            with sqlite3.connect(path, timeout=10) as conn:
                self.assertEqual(conn.execute("PRAGMA integrity_check").fetchone()[0], "ok")
                versions = {v for (v,) in conn.execute("SELECT version FROM sluice_versions")}
                audited = {v for (v,) in conn.execute("SELECT DISTINCT version FROM sluice_audit")}
                self.assertEqual(versions, audited, "a version without its audit entries, or "
                                 "audit entries without their version")
                self.assertEqual(versions, set(range(1, max(versions) + 1)))
                stored = dict(conn.execute("SELECT id, revision FROM sluice_rules"))
            for rule_id in acknowledged:
                self.assertIn(rule_id, stored, "an acknowledged change was lost")
            self.assertTrue(set(stored.values()) <= versions)
            note(f"{len(acknowledged)} writes acknowledged, {len(stored)} stored, "
                 f"version {max(versions)} at the kill")

            again = AdminServer(f"sqlite://{path}")
            again.start()
            try:
                listing = again.admin("GET", "rules").json()
                self.assertEqual(listing["version"], max(versions))
                self.assertEqual({r["id"] for r in listing["rules"]}, set(stored))
            finally:
                again.stop()



if __name__ == "__main__":
    unittest.main()
