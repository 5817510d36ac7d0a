"""Charging after the fact (CONTRACT §4 "charge"): the check-now-charge-later flow over the HTTP
check API, for every algorithm, on the memory store and on a real Redis.

A client checks with `cost: 0` before the work (429 only while the key is in debt), then charges
the real usage with `"charge": "always"`, which consumes it even past the limit. Each store runs
the same tests against its own server; rules and user ids are per test, so tests share no
counter. Windows are long (1 h, or 1 d for the epoch-aligned window algorithms) so that the wall
clock never changes an answer while a test runs, except in the test that waits for a debt to be
paid back, whose rule refills in a second.
"""

import time
import unittest

from redis_helper import RedisProcess, RedisSluice
from sluice_server import SluiceServer, unique

ALGORITHMS = ["fixed_window", "sliding_window_counter", "sliding_window_log", "token_bucket",
              "gcra", "leaky_bucket"]


def _rules():
    out = ["rules:"]
    for alg in ALGORITHMS:
        window = "1d" if alg in ("fixed_window", "sliding_window_counter") else "1h"
        out.append(f"""
  - id: flow-{alg}
    match: {{endpoint: /flow/{alg}}}
    key: [user_id]
    limit: 2
    window: {window}
    algorithm: {alg}
  - id: wide-{alg}
    match: {{endpoint: /two/{alg}}}
    key: [user_id]
    limit: 5
    window: {window}
    algorithm: {alg}
  - id: narrow-{alg}
    match: {{endpoint: /two/{alg}, tier: both}}
    key: [user_id]
    limit: 1
    window: {window}
    algorithm: {alg}""")
    out.append("""
  - id: payback
    match: {endpoint: /payback}
    key: [user_id]
    limit: 10
    window: 1s
    algorithm: token_bucket
""")
    return "\n".join(out)


class ChargeTests:
    """The tests; a subclass provides `server` (started in setUpClass)."""

    server = None

    def check(self, **fields):
        return self.server.check(**fields)

    def test_token_quota_flow_runs_out_at_the_fourth_request(self):
        # Limit 2: requests 1-3 pass their cost-0 check (the third sees exactly the limit), the
        # third's charge takes the key over, and request 4's check is refused.
        for alg in ALGORITHMS:
            with self.subTest(algorithm=alg):
                user = unique("flow")
                endpoint = f"/flow/{alg}"
                for request in (1, 2, 3):
                    res = self.check(user_id=user, endpoint=endpoint, cost=0)
                    self.assertEqual(res.status, 200, (request, res))
                    charged = self.check(user_id=user, endpoint=endpoint, cost=1,
                                         charge="always")
                    self.assertEqual(charged.status, 200 if request < 3 else 429,
                                     (request, charged))
                fourth = self.check(user_id=user, endpoint=endpoint, cost=0)
                self.assertEqual(fourth.status, 429, fourth)
                error = fourth.json()["error"]
                self.assertEqual(error["code"], "RATE_LIMIT_EXCEEDED", fourth)
                self.assertEqual(error["remaining"], 0, fourth)
                self.assertGreaterEqual(int(fourth.header("Retry-After")), 1, fourth)
                self.assertEqual(fourth.header("X-RateLimit-Remaining"), "0", fourth)

    def test_without_charge_always_a_rejection_consumes_nothing(self):
        for alg in ALGORITHMS:
            with self.subTest(algorithm=alg):
                user = unique("ifallowed")
                endpoint = f"/flow/{alg}"
                self.assertEqual(self.check(user_id=user, endpoint=endpoint, cost=2).status, 200)
                for charge in ("if_allowed", None):
                    fields = {"user_id": user, "endpoint": endpoint, "cost": 1}
                    if charge is not None:
                        fields["charge"] = charge
                    self.assertEqual(self.check(**fields).status, 429)
                # At exactly the limit, not in debt: a cost-0 check passes.
                self.assertEqual(self.check(user_id=user, endpoint=endpoint, cost=0).status, 200)

    def test_a_cost_beyond_the_limit_is_charged_and_flagged(self):
        for alg in ALGORITHMS:
            with self.subTest(algorithm=alg):
                user = unique("huge")
                endpoint = f"/flow/{alg}"
                res = self.check(user_id=user, endpoint=endpoint, cost=1000, charge="always")
                self.assertEqual(res.status, 429, res)
                self.assertEqual(res.json()["error"]["code"], "COST_EXCEEDS_LIMIT", res)
                self.assertFalse(res.has_header("Retry-After"), res)
                after = self.check(user_id=user, endpoint=endpoint, cost=0)
                self.assertEqual(after.status, 429, after)
                self.assertEqual(after.json()["error"]["code"], "RATE_LIMIT_EXCEEDED", after)
                self.assertGreaterEqual(int(after.header("Retry-After")), 1, after)

    def test_charge_always_charges_every_applicable_rule(self):
        # `narrow` (limit 1) rejects; `wide` (limit 5) is charged all the same.
        for alg in ALGORITHMS:
            with self.subTest(algorithm=alg):
                user = unique("two")
                endpoint = f"/two/{alg}"
                first = self.check(user_id=user, endpoint=endpoint, tier="both", cost=1,
                                   charge="always")
                self.assertEqual(first.status, 200, first)
                second = self.check(user_id=user, endpoint=endpoint, tier="both", cost=1,
                                    charge="always")
                self.assertEqual(second.status, 429, second)
                self.assertEqual(second.json()["error"]["rule_id"], f"narrow-{alg}", second)
                wide = self.check(user_id=user, endpoint=endpoint, cost=0)
                self.assertEqual(wide.status, 200, wide)
                self.assertEqual(wide.json()["remaining"], 3, wide)

    def test_a_debt_is_paid_back_at_the_rules_rate(self):
        # 10 a second, burst 10: 15 charged leaves 5 tokens of debt, paid back in 0.5 s.
        user = unique("payback")
        res = self.check(user_id=user, endpoint="/payback", cost=15, charge="always")
        self.assertEqual(res.status, 429, res)
        refused = self.check(user_id=user, endpoint="/payback", cost=0)
        self.assertEqual(refused.status, 429, refused)
        retry_after = int(refused.header("Retry-After"))
        self.assertEqual(retry_after, 1, refused)
        deadline = time.monotonic() + retry_after + 2
        while True:
            res = self.check(user_id=user, endpoint="/payback", cost=0)
            if res.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(res.status, 200, res)

    def test_charge_must_be_if_allowed_or_always(self):
        for value in ("sometimes", "", 1, True, ["always"], {"when": "always"}):
            with self.subTest(charge=value):
                res = self.check(user_id=unique("bad"), endpoint="/flow/fixed_window",
                                 charge=value)
                self.assertEqual(res.status, 400, res)
                self.assertEqual(res.json()["error"]["code"], "INVALID_REQUEST", res)
                self.assertIn("charge", res.json()["error"]["message"], res)
        res = self.check(user_id=unique("null"), endpoint="/flow/fixed_window", charge=None)
        self.assertEqual(res.status, 200, res)


class MemoryChargeTest(ChargeTests, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = SluiceServer(files={"rules/charge.yaml": _rules()}, rules=["rules"])
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()


class RedisChargeTest(ChargeTests, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = RedisProcess().start()
        config = ("store:\n"
                  "  backend: redis\n"
                  f"  url: {cls.redis.url}\n"
                  "  timeout: 1s\n"
                  "  on_failure: fail_closed\n")
        cls.server = RedisSluice(files={"rules/charge.yaml": _rules(), "sluice.yaml": config},
                                 rules=["rules"], config="sluice.yaml")
        try:
            cls.server.start()
        except BaseException:
            cls.redis.kill()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.redis.kill()


if __name__ == "__main__":
    unittest.main()
