"""POST /v1/ratelimit/check against the real server: response shapes and headers, matching,
keys, groups, lists, shadow mode, several rules, cost, algorithms (CONTRACT §3.1, §4, §5).

One server serves the whole file. Every test selects its own rules through its own endpoint
(/t/<test>...) and uses user ids no other test uses, so tests do not share counters. Windows are
long (1 h or 1 d) so the wall clock never changes an answer while a test runs.
"""

import re
import threading
import time
import unittest

from sluice_server import ServerTestCase, unique

ALGORITHMS = ["fixed_window", "sliding_window_counter", "sliding_window_log", "token_bucket",
              "gcra", "leaky_bucket"]


def _per_algorithm_rules():
    out = []
    for alg in ALGORITHMS:
        # Epoch-aligned windows: a day, so that no boundary falls inside a test.
        window = "1d" if alg in ("fixed_window", "sliding_window_counter") else "1h"
        out.append(f"""
  - id: alg-{alg}
    match: {{endpoint: /t/alg/{alg}}}
    key: [user_id]
    limit: 2
    window: {window}
    algorithm: {alg}
  # Refunds: A has room, B (only with tier: both) has a limit of 1.
  - id: refund-a-{alg}
    match: {{endpoint: /t/refund/{alg}}}
    key: [user_id]
    limit: 5
    window: {window}
    algorithm: {alg}
  - id: refund-b-{alg}
    match: {{endpoint: /t/refund/{alg}, tier: both}}
    key: [user_id]
    limit: 1
    window: {window}
    algorithm: {alg}
""")
    return "".join(out)


MAIN_RULES = """
rules:
  - id: basic
    match: {endpoint: /t/basic}
    key: [user_id]
    limit: 3
    window: 1d
  - id: keyed
    match: {endpoint: "/t/keyed*"}
    key: [user_id, endpoint]
    limit: 1
    window: 1h
    algorithm: sliding_window_log
  - id: shared
    match: {endpoint: /t/shared}
    key: []
    limit: 2
    window: 1h
    algorithm: sliding_window_log
  - id: glob-prefix
    match: {endpoint: "/t/glob/pay*"}
    key: [user_id]
    limit: 5
    window: 1h
  - id: glob-middle
    match: {endpoint: "/t/mid/*/orders"}
    key: [user_id]
    limit: 5
    window: 1h
  - id: glob-first
    match: {endpoint: "*/t/star-first"}
    key: [user_id]
    limit: 5
    window: 1h
  - id: glob-literal
    match: {endpoint: '/t/lit/\\*'}
    key: [user_id]
    limit: 5
    window: 1h
  - id: method-post
    match: {endpoint: /t/method, method: POST}
    key: [user_id]
    limit: 5
    window: 1h
  - id: method-lower
    match: {endpoint: /t/method2, method: get}
    key: [user_id]
    limit: 5
    window: 1h
  - id: header-match
    match: {endpoint: /t/hdr, headers.X-Client: mobile}
    key: [user_id]
    limit: 5
    window: 1h
  - id: header-key
    match: {endpoint: /t/hdrkey}
    key: [headers.x-tenant]
    limit: 1
    window: 1h
    algorithm: sliding_window_log
  - id: tier-gold
    match: {endpoint: /t/tier, tier: gold, api_key: "sk_*"}
    key: [api_key]
    limit: 5
    window: 1h
  - id: cidr4
    match: {endpoint: /t/cidr4, ip_address: 198.51.100.0/24}
    key: [ip_address]
    limit: 1
    window: 1h
    algorithm: sliding_window_log
  - id: cidr6
    match: {endpoint: /t/cidr6, ip_address: "2001:db8:1::/64"}
    key: [ip_address]
    limit: 1
    window: 1h
    algorithm: sliding_window_log
  - id: disabled
    match: {endpoint: /t/disabled}
    key: [user_id]
    limit: 1
    window: 1h
    enabled: false
  # Groups: `free` applies to everyone on /t/quota, `premium` (second file) replaces it.
  - id: free
    group: quota
    priority: 20
    match: {endpoint: /t/quota}
    key: [user_id]
    limit: 5
    window: 1h
    algorithm: sliding_window_log
  - id: tie-first
    group: ties
    priority: 5
    match: {endpoint: /t/tie}
    key: [user_id]
    limit: 11
    window: 1h
  - id: default-priority
    group: prio
    match: {endpoint: /t/prio}
    key: [user_id]
    limit: 7
    window: 1h
  - id: listed
    match: {endpoint: "/t/lists*"}
    key: [user_id]
    limit: 1
    window: 1h
    algorithm: sliding_window_log
  - id: shadow-only
    match: {endpoint: /t/shadow-only}
    key: [user_id]
    limit: 1
    window: 1h
    algorithm: sliding_window_log
    mode: shadow
  - id: shadow-mix
    match: {endpoint: /t/shadow-mix}
    key: [user_id]
    limit: 1
    window: 1h
    algorithm: sliding_window_log
    mode: shadow
  - id: enforce-mix
    match: {endpoint: /t/shadow-mix}
    key: [user_id]
    limit: 10
    window: 1h
    algorithm: sliding_window_log
  - id: multi-big
    match: {endpoint: /t/multi}
    key: [user_id]
    limit: 10
    window: 1h
    algorithm: sliding_window_log
  - id: multi-small
    match: {endpoint: /t/multi}
    key: [user_id]
    limit: 3
    window: 1h
    algorithm: sliding_window_log
  - id: long-1h
    match: {endpoint: /t/longest}
    key: [user_id]
    limit: 1
    window: 1h
    algorithm: sliding_window_log
  - id: long-2h
    match: {endpoint: /t/longest}
    key: [user_id]
    limit: 1
    window: 2h
    algorithm: sliding_window_log
  - id: long-30m
    match: {endpoint: /t/longest}
    key: [user_id]
    limit: 1
    window: 30m
    algorithm: sliding_window_log
  - id: cost
    match: {endpoint: /t/cost}
    key: [user_id]
    limit: 5
    window: 1h
    algorithm: sliding_window_log
  - id: cost-burst
    match: {endpoint: /t/cost-burst}
    key: [user_id]
    limit: 2
    burst: 5
    window: 1h
    algorithm: token_bucket
  - id: any-tier
    match: {endpoint: /t/any-tier, tier: "*"}
    key: [user_id]
    limit: 5
    window: 1h
  - id: tuple
    match: {tier: tuple}
    key: [user_id, endpoint]
    limit: 1
    window: 1h
    algorithm: sliding_window_log
  - id: by-method
    match: {endpoint: /t/by-method}
    key: [method]
    limit: 1
    window: 1h
    algorithm: sliding_window_log
  - id: by-ip
    match: {endpoint: /t/by-ip}
    key: [ip_address]
    limit: 1
    window: 1h
    algorithm: sliding_window_log
  - id: shadow-refund
    match: {endpoint: /t/shadow-refund}
    key: [user_id]
    limit: 2
    window: 1h
    algorithm: sliding_window_log
    mode: shadow
  - id: enforce-refund
    match: {endpoint: /t/shadow-refund, tier: both}
    key: [user_id]
    limit: 1
    window: 1h
    algorithm: sliding_window_log
  - id: race
    match: {endpoint: /t/race}
    key: []
    limit: 100
    window: 1h
    algorithm: sliding_window_log
  - id: race-a
    match: {endpoint: /t/race2}
    key: []
    limit: 100
    window: 1d
    algorithm: token_bucket
  - id: race-b
    match: {endpoint: /t/race2, tier: race}
    key: []
    limit: 30
    window: 1d
    algorithm: gcra
  - id: fallback-user
    group: fallback
    priority: 10
    match: {endpoint: /t/fallback}
    key: [user_id]
    limit: 50
    window: 1h
  - id: fallback-ip
    group: fallback
    priority: 20
    match: {endpoint: /t/fallback}
    key: [ip_address]
    limit: 60
    window: 1h
  - id: window-ms
    match: {endpoint: /t/window/ms}
    key: [user_id]
    limit: 5
    window: 1500ms
  - id: window-m
    match: {endpoint: /t/window/m}
    key: [user_id]
    limit: 5
    window: 2m
  - id: window-w
    match: {endpoint: /t/window/w}
    key: [user_id]
    limit: 5
    window: 1w
  - id: fast-bucket
    match: {endpoint: /t/fast-bucket}
    key: [user_id]
    limit: 10
    window: 1s
    algorithm: token_bucket
  - id: leaky
    match: {endpoint: /t/leaky}
    key: [user_id]
    limit: 10
    window: 1h
    algorithm: leaky_bucket
""" + _per_algorithm_rules() + """
lists:
  allow:
    - {ip_address: 10.0.0.0/8}
    - {ip_address: "fd00::/8"}
    - {user_id: ops-bot}
    - {user_id: pair-user, tier: pair-tier}
    - {user_id: expired-allow, expires_at: "2020-01-01T00:00:00Z"}
    - {user_id: future-allow, expires_at: "2999-01-01T00:00:00Z"}
    - {user_id: in-both-lists}
  deny:
    - {ip_address: 203.0.113.0/24, reason: abuse}
    - {ip_address: "2001:db8:bad::/48", reason: v6 abuse}
    - {api_key: sk_live_stolen, reason: leaked key}
    - {user_id: expired-deny, expires_at: "2020-01-01T00:00:00Z", reason: old}
    - {user_id: future-deny, expires_at: "2999-01-01T00:00:00Z", reason: until 2999}
    - {user_id: in-both-lists, reason: deny wins}
    - {ip_address: 10.9.9.9, reason: inside the allowed 10/8}
"""

SECOND_RULES = """
rules:
  - id: premium
    group: quota
    priority: 10
    match: {endpoint: /t/quota, tier: premium}
    key: [user_id]
    limit: 1000
    window: 1h
  - id: tie-second
    group: ties
    priority: 5
    match: {endpoint: /t/tie}
    key: [user_id]
    limit: 22
    window: 1h
  - id: explicit-priority
    group: prio
    priority: 99
    match: {endpoint: /t/prio}
    key: [user_id]
    limit: 8
    window: 1h
  - id: tie2-dir
    group: ties2
    priority: 7
    match: {endpoint: /t/tie2}
    key: [user_id]
    limit: 33
    window: 1h
"""

# Listed after the folder on the command line, so it loads after it although its name sorts first.
LATE_RULES = """
rules:
  - id: tie2-late
    group: ties2
    priority: 7
    match: {endpoint: /t/tie2}
    key: [user_id]
    limit: 44
    window: 1h
"""

LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
                 "RateLimit-Policy", "RateLimit")


class CheckTestCase(ServerTestCase):
    SERVER_FILES = {
        "rules/10-main.yaml": MAIN_RULES,
        "rules/20-second.yaml": SECOND_RULES,
        "00-late.yaml": LATE_RULES,
    }
    SERVER_RULES = ["rules", "00-late.yaml"]

    def check(self, **fields):
        return self.server.check(**fields)

    def assertAllowed(self, res, rule_id=None, limit=None, remaining=None):
        self.assertEqual(res.status, 200, res)
        body = res.json()
        self.assertIs(body["allowed"], True, res)
        if rule_id is not None:
            self.assertEqual(body.get("rule_id"), rule_id, res)
        if limit is not None:
            self.assertEqual(body.get("limit"), limit, res)
            self.assertEqual(res.header("X-RateLimit-Limit"), str(limit), res)
        if remaining is not None:
            self.assertEqual(body.get("remaining"), remaining, res)
            self.assertEqual(res.header("X-RateLimit-Remaining"), str(remaining), res)
        return body

    def assertNoRule(self, res):
        """No rule applies: exactly {"allowed": true} and no limit headers."""
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json(), {"allowed": True}, res)
        self.assertNoLimitHeaders(res)

    def assertRejected(self, res, rule_id=None):
        self.assertEqual(res.status, 429, res)
        body = res.json()
        self.assertIs(body["allowed"], False, res)
        self.assertEqual(body["error"]["code"], "RATE_LIMIT_EXCEEDED", res)
        if rule_id is not None:
            self.assertEqual(body["error"]["rule_id"], rule_id, res)
        retry = body["error"]["retry_after"]
        self.assertIsInstance(retry, int, res)
        self.assertGreaterEqual(retry, 1, res)
        self.assertEqual(res.header("Retry-After"), str(retry), res)
        return body

    def assertAllowlisted(self, res):
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json(), {"allowed": True, "allowlisted": True}, res)
        self.assertNoLimitHeaders(res)

    def assertBlocked(self, res, reason):
        self.assertEqual(res.status, 403, res)
        body = res.json()
        self.assertIs(body["allowed"], False, res)
        self.assertEqual(body["error"]["code"], "BLOCKED", res)
        self.assertIsInstance(body["error"]["message"], str, res)
        self.assertEqual(body["error"]["reason"], reason, res)


class ResponseShapeTest(CheckTestCase):
    def assertLimitHeaders(self, res, rule_id, limit, remaining, window_s, reset_at):
        self.assertEqual(res.header("X-RateLimit-Limit"), str(limit), res)
        self.assertEqual(res.header("X-RateLimit-Remaining"), str(remaining), res)
        self.assertEqual(res.header("X-RateLimit-Reset"), str(reset_at), res)
        self.assertEqual(res.header("RateLimit-Policy"), f'"{rule_id}";q={limit};w={window_s}',
                         res)
        m = re.fullmatch(r'"([^"]*)";r=(\d+);t=(\d+)', res.header("RateLimit", ""))
        self.assertIsNotNone(m, res)
        self.assertEqual(m.group(1), rule_id, res)
        self.assertEqual(int(m.group(2)), remaining, res)
        # t is the same instant as reset_at, relative to now (generous slack: no timing claim).
        t = int(m.group(3))
        self.assertLessEqual(abs((reset_at - t) - time.time()), 120, res)

    def test_allowed_shape_and_headers(self):
        user = unique()
        for expected_remaining in (2, 1, 0):
            before = time.time()
            res = self.check(user_id=user, endpoint="/t/basic")
            self.assertEqual(res.status, 200, res)
            self.assertTrue(res.header("Content-Type", "").startswith("application/json"), res)
            body = res.json()
            self.assertEqual(set(body), {"allowed", "limit", "remaining", "reset_at", "rule_id"},
                             res)
            self.assertIs(body["allowed"], True)
            self.assertEqual(body["limit"], 3)
            self.assertEqual(body["remaining"], expected_remaining)
            self.assertEqual(body["rule_id"], "basic")
            self.assertIsInstance(body["reset_at"], int)
            # Unix seconds, in the future, within two windows of the default algorithm.
            self.assertGreaterEqual(body["reset_at"], int(before))
            self.assertLessEqual(body["reset_at"], time.time() + 2 * 86400 + 60)
            self.assertLimitHeaders(res, "basic", 3, expected_remaining, 86400, body["reset_at"])

    def test_throttled_shape_and_headers(self):
        user = unique()
        for _ in range(3):
            self.assertAllowed(self.check(user_id=user, endpoint="/t/basic"))
        res = self.check(user_id=user, endpoint="/t/basic")
        self.assertEqual(res.status, 429, res)
        self.assertTrue(res.header("Content-Type", "").startswith("application/json"), res)
        body = res.json()
        self.assertEqual(set(body), {"allowed", "error"}, res)
        self.assertIs(body["allowed"], False)
        err = body["error"]
        self.assertEqual(err["code"], "RATE_LIMIT_EXCEEDED")
        self.assertIsInstance(err["message"], str)
        self.assertTrue(err["message"])
        self.assertEqual(err["limit"], 3)
        self.assertEqual(err["remaining"], 0)
        self.assertEqual(err["rule_id"], "basic")
        self.assertIsInstance(err["retry_after"], int)
        self.assertGreaterEqual(err["retry_after"], 1)
        self.assertIsInstance(err["reset_at"], int)
        self.assertGreaterEqual(err["reset_at"], int(time.time()))
        # Retry-After and retry_after: the same whole number of seconds.
        self.assertEqual(res.header("Retry-After"), str(err["retry_after"]), res)
        self.assertLimitHeaders(res, "basic", 3, 0, 86400, err["reset_at"])
        # Still rejected, and a rejected request consumed nothing: same answer again.
        again = self.check(user_id=user, endpoint="/t/basic")
        self.assertRejected(again, "basic")
        self.assertEqual(again.json()["error"]["remaining"], 0)

    def test_no_applicable_rule(self):
        self.assertNoRule(self.check(user_id=unique(), endpoint="/nothing/matches/this"))
        self.assertNoRule(self.check())  # every field is optional
        self.assertNoRule(self.server.check(body={}))

    def test_unknown_fields_are_ignored(self):
        user = unique()
        res = self.server.check(body={"user_id": user, "endpoint": "/t/basic", "colour": "red",
                                      "nested": {"a": [1, 2]}})
        self.assertAllowed(res, "basic", 3, 2)

    def test_all_fields_accepted(self):
        res = self.server.check(body={
            "user_id": unique(), "api_key": "sk_live_abc123", "ip_address": "192.168.1.1",
            "endpoint": "/t/basic", "method": "POST", "tier": "premium",
            "headers": {"x-client": "mobile"}, "cost": 1})
        self.assertAllowed(res, "basic", 3, 2)


class KeyTest(CheckTestCase):
    def test_distinct_tuples_have_distinct_counters(self):
        a, b = unique("a"), unique("b")
        self.assertAllowed(self.check(user_id=a, endpoint="/t/keyed/1"), "keyed", 1, 0)
        self.assertRejected(self.check(user_id=a, endpoint="/t/keyed/1"), "keyed")
        # Another user, same endpoint: its own counter.
        self.assertAllowed(self.check(user_id=b, endpoint="/t/keyed/1"), "keyed", 1, 0)
        # Same user, another endpoint: the key is the (user_id, endpoint) tuple.
        self.assertAllowed(self.check(user_id=a, endpoint="/t/keyed/2"), "keyed", 1, 0)
        self.assertRejected(self.check(user_id=b, endpoint="/t/keyed/1"), "keyed")

    def test_absent_key_attribute_means_the_rule_does_not_apply(self):
        for _ in range(3):
            self.assertNoRule(self.check(endpoint="/t/keyed/1"))

    def test_empty_string_counts_as_absent(self):
        for _ in range(3):
            self.assertNoRule(self.check(user_id="", endpoint="/t/keyed/1"))

    def test_empty_key_is_one_shared_counter(self):
        # `key: []`: everybody shares one counter (this test is the rule's only user).
        self.assertAllowed(self.check(user_id=unique(), endpoint="/t/shared"), "shared", 2, 1)
        self.assertAllowed(self.check(user_id=unique(), endpoint="/t/shared"), "shared", 2, 0)
        self.assertRejected(self.check(user_id=unique(), endpoint="/t/shared"), "shared")
        self.assertRejected(self.check(endpoint="/t/shared"), "shared")

    def test_tuples_that_join_alike_are_distinct(self):
        # Joined naively as "user_id=..|endpoint=..", these two tuples would be one counter.
        self.assertAllowed(self.check(tier="tuple", user_id="a|endpoint=b", endpoint="c"),
                           "tuple", 1, 0)
        self.assertAllowed(self.check(tier="tuple", user_id="a", endpoint="b|endpoint=c"),
                           "tuple", 1, 0)
        self.assertAllowed(self.check(tier="tuple", user_id="a%7Cendpoint%3Db", endpoint="c"),
                           "tuple", 1, 0)
        self.assertRejected(self.check(tier="tuple", user_id="a|endpoint=b", endpoint="c"),
                            "tuple")

    def test_equivalent_spellings_share_a_counter(self):
        # method is case-insensitive, so "post" and "POST" are one key value.
        self.assertAllowed(self.check(endpoint="/t/by-method", method="post"), "by-method", 1, 0)
        self.assertRejected(self.check(endpoint="/t/by-method", method="POST"), "by-method")
        # The same address written two ways (src/rules/README.md: IPv4 and IPv4-mapped IPv6 are
        # the same address).
        self.assertAllowed(self.check(endpoint="/t/by-ip", ip_address="198.51.100.9"), "by-ip",
                           1, 0)
        self.assertRejected(self.check(endpoint="/t/by-ip", ip_address="::ffff:198.51.100.9"),
                            "by-ip")

    def test_header_as_key_with_case_insensitive_names(self):
        t1, t2 = unique("tenant"), unique("tenant")
        self.assertAllowed(self.check(endpoint="/t/hdrkey", headers={"x-tenant": t1}),
                           "header-key", 1, 0)
        # Same header under another spelling of its name: the same counter.
        self.assertRejected(self.check(endpoint="/t/hdrkey", headers={"X-Tenant": t1}),
                            "header-key")
        self.assertAllowed(self.check(endpoint="/t/hdrkey", headers={"X-TENANT": t2}),
                           "header-key", 1, 0)
        self.assertNoRule(self.check(endpoint="/t/hdrkey", headers={"x-other": t1}))
        self.assertNoRule(self.check(endpoint="/t/hdrkey"))


class MatchTest(CheckTestCase):
    def test_glob_prefix(self):
        for endpoint in ("/t/glob/pay", "/t/glob/payments", "/t/glob/payments/123/refund"):
            self.assertAllowed(self.check(user_id=unique(), endpoint=endpoint), "glob-prefix")
        for endpoint in ("/t/glob/pa", "/t/glob/PAYMENTS", "/x/t/glob/payments"):
            self.assertNoRule(self.check(user_id=unique(), endpoint=endpoint))

    def test_glob_in_the_middle_and_first(self):
        for endpoint in ("/t/mid/v1/orders", "/t/mid/v1/eu/orders", "/t/mid//orders"):
            self.assertAllowed(self.check(user_id=unique(), endpoint=endpoint), "glob-middle")
        for endpoint in ("/t/mid/v1/orders/1", "/t/mid/orders", "/t/mid/v1/order"):
            self.assertNoRule(self.check(user_id=unique(), endpoint=endpoint))
        for endpoint in ("/t/star-first", "/api/v2/t/star-first"):
            self.assertAllowed(self.check(user_id=unique(), endpoint=endpoint), "glob-first")
        self.assertNoRule(self.check(user_id=unique(), endpoint="/t/star-first/x"))

    def test_escaped_star_is_literal(self):
        self.assertAllowed(self.check(user_id=unique(), endpoint="/t/lit/*"), "glob-literal")
        self.assertNoRule(self.check(user_id=unique(), endpoint="/t/lit/x"))
        self.assertNoRule(self.check(user_id=unique(), endpoint="/t/lit/"))

    def test_exact_match_is_exact(self):
        self.assertNoRule(self.check(user_id=unique(), endpoint="/t/basic/"))
        self.assertNoRule(self.check(user_id=unique(), endpoint="/T/BASIC"))

    def test_method_is_case_insensitive(self):
        for method in ("POST", "post", "Post"):
            self.assertAllowed(self.check(user_id=unique(), endpoint="/t/method", method=method),
                               "method-post")
        self.assertNoRule(self.check(user_id=unique(), endpoint="/t/method", method="GET"))
        # Matched attribute absent: the rule does not match.
        self.assertNoRule(self.check(user_id=unique(), endpoint="/t/method"))
        for method in ("GET", "get"):
            self.assertAllowed(self.check(user_id=unique(), endpoint="/t/method2", method=method),
                               "method-lower")

    def test_header_match_with_case_insensitive_names(self):
        for name in ("x-client", "X-Client", "X-CLIENT"):
            self.assertAllowed(
                self.check(user_id=unique(), endpoint="/t/hdr", headers={name: "mobile"}),
                "header-match")
        self.assertNoRule(self.check(user_id=unique(), endpoint="/t/hdr",
                                     headers={"x-client": "web"}))
        self.assertNoRule(self.check(user_id=unique(), endpoint="/t/hdr",
                                     headers={"x-other": "mobile"}))
        self.assertNoRule(self.check(user_id=unique(), endpoint="/t/hdr"))
        self.assertNoRule(self.check(user_id=unique(), endpoint="/t/hdr", headers={}))

    def test_every_listed_attribute_must_match(self):
        key = "sk_" + unique()
        self.assertAllowed(self.check(endpoint="/t/tier", tier="gold", api_key=key), "tier-gold")
        self.assertNoRule(self.check(endpoint="/t/tier", tier="silver", api_key=key))
        self.assertNoRule(self.check(endpoint="/t/tier", tier="gold", api_key="pk_" + key))
        self.assertNoRule(self.check(endpoint="/t/tier", tier="gold"))
        self.assertNoRule(self.check(endpoint="/t/tier", api_key=key))

    def test_ipv4_cidr_on_rules(self):
        self.assertAllowed(self.check(endpoint="/t/cidr4", ip_address="198.51.100.7"), "cidr4",
                           1, 0)
        self.assertRejected(self.check(endpoint="/t/cidr4", ip_address="198.51.100.7"), "cidr4")
        # Keyed by ip_address: another address in the range has its own counter.
        self.assertAllowed(self.check(endpoint="/t/cidr4", ip_address="198.51.100.255"), "cidr4",
                           1, 0)
        for ip in ("198.51.101.7", "198.51.99.255", "8.8.8.8", "2001:db8:1::7"):
            self.assertNoRule(self.check(endpoint="/t/cidr4", ip_address=ip))
        self.assertNoRule(self.check(endpoint="/t/cidr4"))

    def test_ipv6_cidr_on_rules(self):
        self.assertAllowed(self.check(endpoint="/t/cidr6", ip_address="2001:db8:1::5"), "cidr6",
                           1, 0)
        # Another spelling of the same address is the same counter.
        self.assertRejected(self.check(endpoint="/t/cidr6", ip_address="2001:DB8:1:0:0::5"),
                            "cidr6")
        self.assertAllowed(self.check(endpoint="/t/cidr6", ip_address="2001:db8:1:0:ffff::1"),
                           "cidr6", 1, 0)
        for ip in ("2001:db8:2::5", "2001:db8::1", "198.51.100.7"):
            self.assertNoRule(self.check(endpoint="/t/cidr6", ip_address=ip))

    def test_empty_string_never_matches_a_glob(self):
        # An empty attribute counts as absent, so even "*" does not match it.
        self.assertAllowed(self.check(user_id=unique(), endpoint="/t/any-tier", tier="x"),
                           "any-tier")
        self.assertNoRule(self.check(user_id=unique(), endpoint="/t/any-tier", tier=""))
        self.assertNoRule(self.check(user_id=unique(), endpoint="/t/any-tier"))

    def test_disabled_rule_does_not_apply(self):
        user = unique()
        for _ in range(3):
            self.assertNoRule(self.check(user_id=user, endpoint="/t/disabled"))


class GroupTest(CheckTestCase):
    def test_better_priority_replaces_the_other_rule_of_its_group(self):
        user = unique()
        # Premium (priority 10, second file) wins over free (priority 20) for premium requests.
        for i in range(3):
            self.assertAllowed(self.check(user_id=user, endpoint="/t/quota", tier="premium"),
                               "premium", 1000, 999 - i)
        # Free applies otherwise, and premium's requests were not charged to it.
        self.assertAllowed(self.check(user_id=user, endpoint="/t/quota"), "free", 5, 4)
        self.assertAllowed(self.check(user_id=user, endpoint="/t/quota", tier="free"), "free", 5, 3)
        self.assertAllowed(self.check(user_id=user, endpoint="/t/quota", tier="premium"),
                           "premium", 1000, 996)

    def test_ties_go_to_file_order_across_files(self):
        # tie-first (10-main.yaml) and tie-second (20-second.yaml): same group and priority.
        self.assertAllowed(self.check(user_id=unique(), endpoint="/t/tie"), "tie-first", 11, 10)

    def test_files_load_in_the_order_listed(self):
        # The folder is listed before 00-late.yaml, so its rule wins the tie despite the names.
        self.assertAllowed(self.check(user_id=unique(), endpoint="/t/tie2"), "tie2-dir", 33, 32)

    def test_a_rule_whose_key_is_absent_leaves_its_group_to_the_next(self):
        # src/rules/README.md: the per-user rule does not apply without a user_id, so the
        # per-IP rule of the same group does.
        self.assertAllowed(self.check(user_id=unique(), ip_address="192.0.2.10",
                                      endpoint="/t/fallback"), "fallback-user", 50, 49)
        self.assertAllowed(self.check(ip_address="192.0.2.10", endpoint="/t/fallback"),
                           "fallback-ip", 60, 59)

    def test_default_priority_is_100(self):
        # default-priority (100) loses to explicit-priority (99).
        self.assertAllowed(self.check(user_id=unique(), endpoint="/t/prio"),
                           "explicit-priority", 8, 7)


class ListTest(CheckTestCase):
    def test_allow_list_skips_rules(self):
        user = unique()
        for _ in range(3):  # `listed` has a limit of 1: the allow list skips it
            self.assertAllowlisted(self.check(user_id=user, endpoint="/t/lists",
                                              ip_address="10.1.2.3"))
        for _ in range(3):
            self.assertAllowlisted(self.check(user_id="ops-bot", endpoint="/t/lists"))
        # Not listed: the rule applies.
        self.assertAllowed(self.check(user_id=user, endpoint="/t/lists", ip_address="11.1.2.3"),
                           "listed", 1, 0)

    def test_allow_list_ipv6_cidr(self):
        for ip in ("fd00::1", "fdff:ffff::1"):
            self.assertAllowlisted(self.check(user_id=unique(), endpoint="/t/lists", ip_address=ip))
        self.assertAllowed(self.check(user_id=unique(), endpoint="/t/lists", ip_address="fe00::1"),
                           "listed")

    def test_allow_entry_with_several_attributes_needs_all(self):
        self.assertAllowlisted(self.check(user_id="pair-user", tier="pair-tier",
                                          endpoint="/t/lists/pair"))
        self.assertAllowed(self.check(user_id="pair-user", endpoint="/t/lists/pair"), "listed")
        self.assertAllowed(self.check(user_id=unique(), tier="pair-tier",
                                      endpoint="/t/lists/pair2"), "listed")

    def test_ipv4_mapped_ipv6_address_matches_ipv4_entries(self):
        # src/rules/README.md: IPv4 and IPv4-mapped IPv6 are the same address.
        self.assertAllowlisted(self.check(ip_address="::ffff:10.1.2.3"))
        self.assertBlocked(self.check(ip_address="::ffff:203.0.113.9"), "abuse")

    def test_allow_list_applies_without_any_rule(self):
        self.assertAllowlisted(self.check(ip_address="10.200.0.1", endpoint="/no/rule/here"))

    def test_deny_list_ipv4_cidr(self):
        self.assertBlocked(self.check(user_id=unique(), endpoint="/t/lists",
                                      ip_address="203.0.113.77"), "abuse")
        # Whatever the rules say: also when no rule applies at all.
        self.assertBlocked(self.check(ip_address="203.0.113.1"), "abuse")
        self.assertAllowed(self.check(user_id=unique(), endpoint="/t/lists",
                                      ip_address="203.0.114.77"), "listed")

    def test_deny_list_ipv6_cidr(self):
        self.assertBlocked(self.check(ip_address="2001:db8:bad:1::1"), "v6 abuse")
        self.assertBlocked(self.check(ip_address="2001:db8:bad::"), "v6 abuse")
        self.assertNoRule(self.check(ip_address="2001:db8:bae::1"))

    def test_deny_list_api_key(self):
        self.assertBlocked(self.check(api_key="sk_live_stolen", user_id=unique(),
                                      endpoint="/t/lists"), "leaked key")
        self.assertNoRule(self.check(api_key="sk_live_fine"))

    def test_deny_wins_over_allow(self):
        self.assertBlocked(self.check(user_id="in-both-lists"), "deny wins")
        self.assertBlocked(self.check(ip_address="10.9.9.9"), "inside the allowed 10/8")
        self.assertAllowlisted(self.check(ip_address="10.9.9.8"))
        # ops-bot is allow-listed, but its address is denied.
        self.assertBlocked(self.check(user_id="ops-bot", ip_address="203.0.113.5"), "abuse")

    def test_expired_entries_are_ignored(self):
        self.assertAllowed(self.check(user_id="expired-allow", endpoint="/t/lists/expired"),
                           "listed", 1, 0)
        self.assertAllowed(self.check(user_id="expired-deny", endpoint="/t/lists/expired"),
                           "listed", 1, 0)
        self.assertNoRule(self.check(user_id="expired-deny"))

    def test_entries_expiring_in_the_future_apply(self):
        self.assertAllowlisted(self.check(user_id="future-allow", endpoint="/t/lists"))
        self.assertBlocked(self.check(user_id="future-deny"), "until 2999")


class ShadowTest(CheckTestCase):
    def test_shadow_rule_never_rejects_nor_feeds_headers(self):
        user = unique()
        before = self.server.metrics()
        for _ in range(4):
            self.assertNoRule(self.check(user_id=user, endpoint="/t/shadow-only"))
        after = self.server.metrics()
        # Charged like an enforced rule: the first is admitted, the three others would be rejected.
        self.assertEqual(
            after.value("sluice_requests_total", rule_id="shadow-only", result="shadow_rejected")
            - before.value("sluice_requests_total", rule_id="shadow-only",
                           result="shadow_rejected"), 3)
        self.assertEqual(
            after.value("sluice_requests_total", rule_id="shadow-only", result="rejected")
            - before.value("sluice_requests_total", rule_id="shadow-only", result="rejected"), 0)

    def test_headers_come_from_the_enforced_rule(self):
        user = unique()
        # shadow-mix (limit 1) has less remaining than enforce-mix (limit 10): it is not reported.
        for i in range(4):
            self.assertAllowed(self.check(user_id=user, endpoint="/t/shadow-mix"),
                               "enforce-mix", 10, 9 - i)
            res = self.check(user_id=user, endpoint="/t/shadow-mix", cost=0)
            self.assertEqual(res.header("RateLimit-Policy"), '"enforce-mix";q=10;w=3600', res)


    def test_shadow_charges_are_given_back_when_an_enforced_rule_rejects(self):
        user = unique()

        def shadow_rejections():
            return self.server.metrics().value("sluice_requests_total", rule_id="shadow-refund",
                                               result="shadow_rejected")

        before = shadow_rejections()
        # Both rules: the shadow rule (limit 2) is charged 1.
        self.assertAllowed(self.check(user_id=user, endpoint="/t/shadow-refund", tier="both"),
                           "enforce-refund", 1, 0)
        # The enforced rule rejects: the shadow rule's charge is given back each time.
        for _ in range(3):
            self.assertRejected(self.check(user_id=user, endpoint="/t/shadow-refund", tier="both"),
                                "enforce-refund")
        self.assertEqual(shadow_rejections() - before, 0)
        # The shadow rule alone: one more fits, the next would be rejected.
        self.assertNoRule(self.check(user_id=user, endpoint="/t/shadow-refund"))
        self.assertEqual(shadow_rejections() - before, 0)
        self.assertNoRule(self.check(user_id=user, endpoint="/t/shadow-refund"))
        self.assertEqual(shadow_rejections() - before, 1)


class SeveralRulesTest(CheckTestCase):
    def test_headers_of_the_rule_with_least_remaining(self):
        user = unique()
        for i in range(3):
            res = self.check(user_id=user, endpoint="/t/multi")
            self.assertAllowed(res, "multi-small", 3, 2 - i)
            self.assertEqual(res.header("RateLimit-Policy"), '"multi-small";q=3;w=3600', res)
        self.assertRejected(self.check(user_id=user, endpoint="/t/multi"), "multi-small")

    def test_longest_retry_after_is_reported(self):
        user = unique()
        self.assertAllowed(self.check(user_id=user, endpoint="/t/longest"))
        res = self.check(user_id=user, endpoint="/t/longest")
        body = self.assertRejected(res, "long-2h")
        # The 2 h log frees its entry about 2 h after it was admitted; the others sooner.
        self.assertGreater(body["error"]["retry_after"], 3600)
        self.assertLessEqual(body["error"]["retry_after"], 7200)
        self.assertEqual(res.header("RateLimit-Policy"), '"long-2h";q=1;w=7200', res)

    def test_a_rejected_request_consumes_nothing(self):
        # For every algorithm: B rejects, so what A charged for the same request is given back.
        for alg in ALGORITHMS:
            with self.subTest(algorithm=alg):
                user = unique()
                endpoint = f"/t/refund/{alg}"
                # Both apply; B is left with 0 and is the one reported.
                self.assertAllowed(self.check(user_id=user, endpoint=endpoint, tier="both"),
                                   f"refund-b-{alg}", 1, 0)
                for _ in range(3):
                    self.assertRejected(self.check(user_id=user, endpoint=endpoint, tier="both"),
                                        f"refund-b-{alg}")
                # A alone (no tier), read with cost 0: only the first request was charged to it.
                self.assertAllowed(self.check(user_id=user, endpoint=endpoint, cost=0),
                                   f"refund-a-{alg}", 5, 4)
                self.assertAllowed(self.check(user_id=user, endpoint=endpoint),
                                   f"refund-a-{alg}", 5, 3)


class ConcurrencyTest(CheckTestCase):
    def hammer(self, clients=8, per_client=25, **fields):
        statuses = []
        lock = threading.Lock()

        def client():
            mine = []
            for _ in range(per_client):
                mine.append(self.check(user_id=unique(), **fields).status)
            with lock:
                statuses.extend(mine)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return statuses

    def test_concurrent_requests_admit_exactly_the_limit(self):
        statuses = self.hammer(endpoint="/t/race")
        self.assertEqual(len(statuses), 200)
        self.assertEqual(statuses.count(200), 100, statuses)
        self.assertEqual(statuses.count(429), 100, statuses)

    def test_concurrent_requests_with_refunds_admit_exactly_the_smallest_limit(self):
        # race-a (limit 100) and race-b (limit 30) both apply to every hammering request: race-b
        # admits exactly 30, and race-a is given back the charge of each of the 170 rejections.
        statuses = self.hammer(endpoint="/t/race2", tier="race")
        self.assertEqual(statuses.count(200), 30, statuses)
        self.assertEqual(statuses.count(429), 170, statuses)
        self.assertAllowed(self.check(endpoint="/t/race2", tier="race", cost=0), "race-b", 30, 0)
        # race-a alone (no tier), read with cost 0: 30 charged (a day-long window refills it by
        # one token in 864 s).
        self.assertAllowed(self.check(endpoint="/t/race2", cost=0), "race-a", 100, 70)


class CostTest(CheckTestCase):
    def test_cost_zero_reads_and_cost_two_consumes_two(self):
        user = unique()
        self.assertAllowed(self.check(user_id=user, endpoint="/t/cost", cost=0), "cost", 5, 5)
        self.assertAllowed(self.check(user_id=user, endpoint="/t/cost", cost=2), "cost", 5, 3)
        self.assertAllowed(self.check(user_id=user, endpoint="/t/cost", cost=0), "cost", 5, 3)
        self.assertAllowed(self.check(user_id=user, endpoint="/t/cost", cost=0), "cost", 5, 3)
        self.assertAllowed(self.check(user_id=user, endpoint="/t/cost"), "cost", 5, 2)
        # More than what is left: rejected, nothing consumed.
        self.assertRejected(self.check(user_id=user, endpoint="/t/cost", cost=3), "cost")
        self.assertAllowed(self.check(user_id=user, endpoint="/t/cost", cost=2), "cost", 5, 0)
        # cost 0 never rejects, even on an exhausted counter.
        for _ in range(2):
            self.assertAllowed(self.check(user_id=user, endpoint="/t/cost", cost=0), "cost", 5, 0)
        self.assertRejected(self.check(user_id=user, endpoint="/t/cost"), "cost")

    def test_invalid_costs_are_400_and_consume_nothing(self):
        user = unique()
        for cost in (2.0, 1e3, None, "1", -1, 1.5, True, [1], {"n": 1}):
            with self.subTest(cost=cost):
                res = self.check(user_id=user, endpoint="/t/cost", cost=cost)
                self.assertError(res, 400, "INVALID_REQUEST")
        # Also spelled as raw JSON (json.dumps would write 1000.0 for 1e3).
        for raw in (b'1e3', b'2.0', b'-0.5', b'1E2', b'-1', b'null', b'"2"'):
            with self.subTest(raw=raw):
                body = b'{"user_id": "' + user.encode() + b'", "endpoint": "/t/cost", "cost": ' + \
                    raw + b'}'
                self.assertError(self.server.check(body=body), 400, "INVALID_REQUEST")
        self.assertAllowed(self.check(user_id=user, endpoint="/t/cost", cost=0), "cost", 5, 5)

    def test_cost_above_the_limit_is_cost_exceeds_limit(self):
        user = unique()
        for cost in (6, 1000, 10**12):
            with self.subTest(cost=cost):
                res = self.check(user_id=user, endpoint="/t/cost", cost=cost)
                self.assertEqual(res.status, 429, res)
                body = res.json()
                self.assertIs(body["allowed"], False)
                self.assertEqual(body["error"]["code"], "COST_EXCEEDS_LIMIT", res)
                self.assertEqual(body["error"]["rule_id"], "cost", res)
                self.assertIsInstance(body["error"]["message"], str)
                self.assertFalse(res.has_header("Retry-After"), res)
        # Nothing was consumed, and exactly the limit is still admitted.
        self.assertAllowed(self.check(user_id=user, endpoint="/t/cost", cost=5), "cost", 5, 0)

    def test_cost_exceeding_one_of_several_rules_consumes_nothing(self):
        user = unique()
        endpoint = "/t/refund/sliding_window_log"
        # refund-b (limit 1) can never admit 3; refund-a (limit 5) could.
        res = self.check(user_id=user, endpoint=endpoint, tier="both", cost=3)
        self.assertEqual(res.status, 429, res)
        self.assertEqual(res.json()["error"]["code"], "COST_EXCEEDS_LIMIT", res)
        self.assertEqual(res.json()["error"]["rule_id"], "refund-b-sliding_window_log", res)
        self.assertFalse(res.has_header("Retry-After"), res)
        self.assertAllowed(self.check(user_id=user, endpoint=endpoint, cost=0),
                           "refund-a-sliding_window_log", 5, 5)

    def test_a_bucket_admits_up_to_its_burst(self):
        user = unique()
        # limit 2, burst 5: a cost of 5 fits; the limit reported is the rule's limit, not the burst.
        self.assertAllowed(self.check(user_id=user, endpoint="/t/cost-burst", cost=5),
                           "cost-burst", 2, 0)
        res = self.check(user_id=unique(), endpoint="/t/cost-burst", cost=6)
        self.assertEqual(res.status, 429, res)
        self.assertEqual(res.json()["error"]["code"], "COST_EXCEEDS_LIMIT", res)
        self.assertFalse(res.has_header("Retry-After"), res)

    def test_cost_is_validated_even_when_no_rule_applies(self):
        self.assertError(self.check(cost=-1), 400, "INVALID_REQUEST")
        self.assertNoRule(self.check(cost=7))


class AlgorithmTest(CheckTestCase):
    def test_every_algorithm_is_accepted_and_limits(self):
        for alg in ALGORITHMS:
            with self.subTest(algorithm=alg):
                user = unique()
                endpoint = f"/t/alg/{alg}"
                self.assertAllowed(self.check(user_id=user, endpoint=endpoint), f"alg-{alg}", 2, 1)
                self.assertAllowed(self.check(user_id=user, endpoint=endpoint), f"alg-{alg}", 2, 0)
                res = self.check(user_id=user, endpoint=endpoint)
                self.assertRejected(res, f"alg-{alg}")
                self.assertEqual(res.header("X-RateLimit-Remaining"), "0", res)
                # Another user is not affected.
                self.assertAllowed(self.check(user_id=unique(), endpoint=endpoint), f"alg-{alg}",
                                   2, 1)

    def test_retry_after_under_a_second_rounds_up_to_1(self):
        # An emptied bucket of 10 refilled over 1 s: 10 more are due in (1 s - elapsed), which
        # rounds up to 1. Should the second request come more than a second later (a very slow
        # machine), it is admitted: try again with a fresh counter rather than assume timings.
        for _ in range(5):
            user = unique()
            self.assertAllowed(self.check(user_id=user, endpoint="/t/fast-bucket", cost=10),
                               "fast-bucket", 10)
            res = self.check(user_id=user, endpoint="/t/fast-bucket", cost=10)
            if res.status == 429:
                body = self.assertRejected(res, "fast-bucket")
                self.assertEqual(body["error"]["retry_after"], 1, res)
                self.assertEqual(res.header("Retry-After"), "1", res)
                return
        self.fail("never saw the bucket empty")

    def test_window_units_in_the_policy_header(self):
        # RateLimit-Policy w= is the window in seconds (a sub-second rest rounds up).
        for unit, seconds in (("ms", 2), ("m", 120), ("w", 604800)):
            with self.subTest(unit=unit):
                res = self.check(user_id=unique(), endpoint=f"/t/window/{unit}")
                self.assertAllowed(res, f"window-{unit}", 5, 4)
                self.assertEqual(res.header("RateLimit-Policy"),
                                 f'"window-{unit}";q=5;w={seconds}', res)

    def test_only_leaky_bucket_adds_delay_ms(self):
        for alg in ALGORITHMS:
            with self.subTest(algorithm=alg):
                body = self.check(user_id=unique(), endpoint=f"/t/alg/{alg}").json()
                self.assertEqual("delay_ms" in body, alg == "leaky_bucket", body)

    def test_leaky_bucket_delay(self):
        user = unique()
        first = self.assertAllowed(self.check(user_id=user, endpoint="/t/leaky"), "leaky", 10, 9)
        self.assertEqual(first["delay_ms"], 0, first)  # first request into an empty queue
        second = self.assertAllowed(self.check(user_id=user, endpoint="/t/leaky"), "leaky", 10)
        # The queue drains one request per 360 s: the second must be held (almost) that long.
        self.assertIsInstance(second["delay_ms"], int, second)
        self.assertGreater(second["delay_ms"], 0, second)
        self.assertLessEqual(second["delay_ms"], 360_000, second)
        self.assertEqual(set(second),
                         {"allowed", "limit", "remaining", "reset_at", "rule_id", "delay_ms"})


if __name__ == "__main__":
    unittest.main()
