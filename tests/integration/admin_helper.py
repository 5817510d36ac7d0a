"""Servers with rules in a database and the admin API on (CONTRACT §8), for test_admin.py and
test_propagation.py: their config file, their tokens, and a client for /v1/admin/*.

Python standard library only.
"""

import hashlib
import sqlite3
import sys
import time
import urllib.parse

from sluice_server import SluiceServer, poll

# The tokens the servers know: `ops` (write) and `viewer` (read) in the config file, and
# SLUICE_ADMIN_TOKEN, the write token named `env`.
OPS_TOKEN = "ops-2f8c1d0e9b7a4c55"
VIEWER_TOKEN = "viewer-6a1e3b9d7c2f4e08"
ENV_TOKEN = "env-b41d9e2a7f3c6058"
UNKNOWN_TOKEN = "nobody-0000000000000000"

CONFIG = "sluice.yaml"

# How long a change may take to become visible where the contract promises it within 1 s (p99):
# generous, for sanitizer builds on 2 busy cores. The observed times are printed.
PROPAGATION_DEADLINE_S = 5.0
# How long a server may take to notice that its database went away or came back: at worst one
# `rules.poll` (5 s) plus reconnection backoff.
DATABASE_STATE_DEADLINE_S = 20.0


def sha256_hex(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def server_config(database, tokens=True, poll_every="5s", paths=("rules/",)):
    """The server config: rules from `paths` (folders or files, relative to the config file) and
    from `database`; the ops and viewer tokens unless `tokens` is False (then no `admin:`)."""
    text = "rules:\n"
    if paths:
        text += "  paths: [" + ", ".join(paths) + "]\n"
    text += f"  database: {database}\n  poll: {poll_every}\n"
    if tokens:
        text += ("admin:\n  tokens:\n"
                 f"    - {{name: ops, sha256: \"{sha256_hex(OPS_TOKEN)}\", role: write}}\n"
                 f"    - {{name: viewer, sha256: \"{sha256_hex(VIEWER_TOKEN)}\", role: read}}\n")
    text += "log:\n  level: warn\n"
    return text


def rule(rule_id, limit=3, endpoint=None, **extra):
    """A database rule on endpoint /<id>, one counter per user, exact counting."""
    body = {"id": rule_id, "match": {"endpoint": endpoint or "/" + rule_id},
            "key": ["user_id"], "limit": limit, "window": "1h",
            "algorithm": "sliding_window_log"}
    body.update(extra)
    return body


def note(text):
    print(f"\n    [{text}]", file=sys.stderr, end=" ")


def quote(segment):
    """A path segment (a rule id, a user id) percent-encoded, `/` included."""
    return urllib.parse.quote(segment, safe="")


class AdminServer(SluiceServer):
    """A `sluice serve --config sluice.yaml` with rules in `database` and the admin API on.

    files: more files for its folder (e.g. rules/file.yaml; the config reads rules/ when it
           exists in `files`). env_token: SLUICE_ADMIN_TOKEN (None: unset).
    """

    def __init__(self, database, files=None, tokens=True, env_token=ENV_TOKEN, poll_every="5s"):
        files = dict(files or {})
        paths = ("rules/",) if any(f.startswith("rules/") for f in files) else ()
        files[CONFIG] = server_config(database, tokens=tokens, poll_every=poll_every,
                                      paths=paths)
        super().__init__(files=files, config=CONFIG,
                         env={"SLUICE_ADMIN_TOKEN": env_token})

    def admin(self, method, path, body=None, token=OPS_TOKEN, headers=None):
        """One call to `path` (under /v1/admin/ unless it starts with /) with `token` as the
        bearer (None: no Authorization header)."""
        if not path.startswith("/"):
            path = "/v1/admin/" + path
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        if body is not None and not isinstance(body, (bytes, str)):
            hdrs.setdefault("Content-Type", "application/json")
        return self.request(method, path, body=body, headers=hdrs)

    def rule_path(self, rule_id):
        return "rules/" + quote(rule_id)

    def probe(self, **fields):
        """The check answer for a read-only check (cost 0): (status, body)."""
        res = self.check(cost=0, **fields)
        return res.status, res.json()

    def applied_rule(self, **fields):
        """The rule_id a read-only check with `fields` reports (None: no rule applies)."""
        status, body = self.probe(**fields)
        if status != 200:
            raise AssertionError(f"probe {fields} answered {status}: {body}")
        return body.get("rule_id")


def wait_applied(servers, rule_id, timeout=PROPAGATION_DEADLINE_S, **fields):
    """Polls every server with a read-only check until each reports `rule_id` (None: until no
    rule applies); returns the seconds each took, from the call."""
    started = time.monotonic()
    took = [None] * len(servers)
    deadline = started + timeout
    while True:
        for i, s in enumerate(servers):
            if took[i] is None and s.applied_rule(**fields) == rule_id:
                took[i] = time.monotonic() - started
        if all(t is not None for t in took):
            return took
        if time.monotonic() > deadline:
            raise AssertionError(
                f"after {timeout}s, rule {rule_id!r} is not applied by servers "
                f"{[i for i, t in enumerate(took) if t is None]} (check {fields})")
        time.sleep(0.01)


def sqlite_version(path):
    """The version of a SQLite rules database, read from the database itself (the schema of
    src/db/schema.cc)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM sluice_versions").fetchone()
    return int(row[0])


def postgres_version(pg, database):
    """The version of a PostgreSQL rules database, read from the database itself."""
    return int(pg.psql("SELECT COALESCE(MAX(version), 0) FROM sluice_versions", database))

