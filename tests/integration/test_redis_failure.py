"""The failure policy with a real Redis that dies, comes back, or is down when Sluice starts
(CONTRACT §7): fail_open allows, fail_closed refuses with 503, local decides from a local store
with each limit scaled by fallback_share; no check waits much longer than the store timeout; and
once Redis is back the shared limits are enforced again within 5 s, with no restart."""

import time
import unittest

from redis_helper import (EachPolicy, Load, RedisProcess, RedisSluice, server_config,
                          timed_checks)
from sluice_server import free_port, poll, unique

LIMIT = 10
SHARE = 0.5
RULES = (
    "rules:\n"
    "  - id: per-user\n"
    "    match: {}\n"
    "    key: [user_id]\n"
    f"    limit: {LIMIT}\n"
    "    window: 1h\n"
    "    algorithm: fixed_window\n")

# What every answer must arrive within: the store timeout (50 ms) plus a generous margin for a
# loaded machine. A hang detector, not a speed test.
ANSWER_WITHIN_S = 2.0
# Redis back → enforced again within this long (CONTRACT: reconnection is automatic).
RECOVERY_S = 5.0


def make_server(redis_url, policy):
    return RedisSluice(
        files={"sluice.yaml": server_config(redis_url, policy, fallback_share=SHARE),
               "rules.yaml": RULES},
        config="sluice.yaml", rules=["rules.yaml"])


class PolicyChecks:
    """Mixin: what each policy must answer while the store is down."""

    def assert_down_answers(self, server, policy):
        answers = timed_checks(self, server, unique(f"down-{policy}"), LIMIT + 3, ANSWER_WITHIN_S,
                               "store down")
        statuses = [r.status for r in answers]
        if policy == "fail_open":
            self.assertEqual(set(statuses), {200}, answers)
            self.assertTrue(all(r.json()["allowed"] for r in answers))
        elif policy == "fail_closed":
            self.assertEqual(set(statuses), {503}, answers)
            for r in answers:
                self.assertEqual(r.json()["error"]["code"], "STORE_UNAVAILABLE", r)
                self.assertEqual(r.header("Retry-After"), "1", r)
        else:  # local: this server alone grants its share of the limit
            local_limit = int(LIMIT * SHARE)
            self.assertEqual(statuses.count(200), local_limit, answers)
            self.assertEqual(statuses.count(429), len(answers) - local_limit, answers)
            self.assertEqual(answers[0].json()["limit"], LIMIT, answers[0])
        health = server.get("/health")
        body = health.json()
        self.assertEqual(body["store"]["status"], "down", body)
        if policy == "fail_closed":
            self.assertEqual(health.status, 503, body)
            self.assertEqual(body["status"], "unhealthy", body)
        else:
            self.assertEqual(health.status, 200, body)
            self.assertEqual(body["status"], "degraded", body)

    def assert_enforced_again(self, server):
        """Redis is back: within RECOVERY_S /health is healthy and the shared limit holds."""
        started = time.monotonic()
        poll(lambda: server.get("/health").json()["status"] == "healthy", timeout=RECOVERY_S,
             message="/health healthy after Redis came back")
        self.assertLess(time.monotonic() - started, RECOVERY_S)
        user = unique("back")
        statuses = [server.check(user_id=user).status for _ in range(LIMIT + 2)]
        self.assertEqual(statuses.count(200), LIMIT, statuses)
        self.assertEqual(statuses.count(429), 2, statuses)


class RedisKilledMidLoadTest(PolicyChecks, EachPolicy, unittest.TestCase):
    def run_policy(self, policy):
        with RedisProcess() as redis:
            server = make_server(redis.url, policy)
            server.start()
            try:
                # Enforced through Redis before anything fails.
                user = unique("before")
                statuses = [server.check(user_id=user).status for _ in range(LIMIT + 1)]
                self.assertEqual(statuses.count(200), LIMIT, statuses)

                # Load from 16 connections; Redis dies in the middle of it.
                load = Load([server], 16, lambda i: {"user_id": f"load-{i % 50}"}).start()
                time.sleep(0.5)
                redis.kill()
                time.sleep(1.0)
                self.assert_down_answers(server, policy)
                results = load.stop()

                self.assertGreater(len(results), 0)
                unanswered = [r for r in results if r[0] is None]
                self.assertEqual(unanswered, [], "checks that got no answer")
                slowest = max(r[1] for r in results)
                self.assertLess(slowest, ANSWER_WITHIN_S, f"slowest check took {slowest:.2f}s")
                expected = {"fail_open": {200}, "fail_closed": {200, 503},
                            "local": {200, 429}}[policy]
                self.assertLessEqual({r[0] for r in results}, expected | {429})

                redis.start()  # same port, empty: the store reconnects by itself
                self.assert_enforced_again(server)
            finally:
                server.stop()


class RedisDownAtStartTest(PolicyChecks, EachPolicy, unittest.TestCase):
    def run_policy(self, policy):
        redis = RedisProcess(port=free_port())  # not started yet
        server = make_server(redis.url, policy)
        server.start()
        try:
            self.assert_down_answers(server, policy)
            redis.start()
            self.assert_enforced_again(server)
        finally:
            server.stop()
            redis.kill()


if __name__ == "__main__":
    unittest.main()
