"""Chaos on the network between Sluice and Redis (CONTRACT §7), with the real binary and a real
redis-server behind a network namespace the test makes (tests/integration/netns_helper.py).
Under load from 8 connections, each fault in turn:

  - 100 ms more per round trip, under the store timeout: every check still decided by Redis,
    exactly, only slower;
  - 1000 ms per round trip, over it: the failure policy decides, no check waits more than twice
    the timeout;
  - 10 % of the packets lost each way: real TCP retransmissions, late replies; each check is
    answered within twice the timeout, by Redis or by the policy;
  - a full partition (every packet dropped, no resets): the policy decides, within twice the
    timeout, and a fresh key gets exactly what the policy promises.

After each fault clears, Redis decides again within 5 s (a check's counter appears in Redis).
Each policy runs the whole sequence: fail_open, fail_closed, local.

The bound measured is at the client, so it includes the client's own share of each request
(Python, the loopback): CLIENT_MARGIN_S on top of the contract's 2 x timeout.
"""

import statistics
import time
import unittest

from netns_helper import NetnsRedis, require_netns
from redis_helper import EachPolicy, Load, RedisSluice, server_config, timed_checks
from sluice_server import unique

TIMEOUT_MS = 300
BOUND_S = 2 * TIMEOUT_MS / 1000
CLIENT_MARGIN_S = 0.25
LIMIT = 10
SHARE = 0.5
PHASE_S = 3.0
RECOVERY_S = 5.0
RULES = (
    "rules:\n"
    "  - id: per-user\n"
    "    key: [user_id]\n"
    f"    limit: {LIMIT}\n"
    "    window: 1h\n"
    "    algorithm: fixed_window\n")
# What each policy may answer while the store cannot (429: a limit decided by Redis or locally).
POLICY_STATUSES = {"fail_open": {200, 429}, "fail_closed": {200, 429, 503}, "local": {200, 429}}
# ... and, for a user under its limit, while the store cannot answer at all.
POLICY_DOWN = {"fail_open": {200}, "fail_closed": {503}, "local": {200}}
REPORT = []


def setUpModule():
    require_netns()


class ChaosTest(EachPolicy, unittest.TestCase):
    def run_policy(self, policy):
        with NetnsRedis() as net:
            server = RedisSluice(
                files={"sluice.yaml": server_config(net.url, policy, timeout=f"{TIMEOUT_MS}ms",
                                                    fallback_share=SHARE),
                       "rules.yaml": RULES},
                config="sluice.yaml", rules=["rules.yaml"])
            server.start()
            try:
                self.assert_exact(server, "calm")
                self.latency_under_timeout(server, net, policy)
                self.recovery(server, net, policy, "latency 100 ms")
                self.latency_over_timeout(server, net, policy)
                self.recovery(server, net, policy, "latency 1000 ms")
                self.loss(server, net, policy)
                self.recovery(server, net, policy, "loss 10 %")
                self.partition(server, net, policy)
                self.recovery(server, net, policy, "partition")
            finally:
                server.stop()

    # --- phases ---------------------------------------------------------------------------------

    def under_load(self, server, policy, fault):
        """Runs PHASE_S of load from 8 connections, each check for a user of its own (so that
        each needs the store: none is refused from the over-limit cache); returns the results
        after checking that each was answered, in time, with a status of the policy."""
        phase = unique(fault.replace(" ", ""))
        load = Load([server], 8, lambda i: {"user_id": f"{phase}-{i}"}).start()
        time.sleep(PHASE_S)
        results = load.stop()
        self.assertGreater(len(results), 0)
        unanswered = [r for r in results if r[0] is None]
        self.assertEqual(unanswered, [], f"{fault}: checks that got no answer")
        slowest = max(r[1] for r in results)
        self.assertLess(slowest, BOUND_S + CLIENT_MARGIN_S,
                        f"{fault}: a check took {slowest * 1000:.0f} ms, over twice the store "
                        f"timeout ({TIMEOUT_MS} ms)")
        statuses = {r[0] for r in results}
        self.assertLessEqual(statuses, POLICY_STATUSES[policy], f"{fault}: {statuses}")
        times = sorted(r[1] for r in results)
        REPORT.append(
            f"{policy:<11} {fault:<15} {len(results):>6} checks  p50 {statistics.median(times) * 1000:6.1f} ms"
            f"  max {slowest * 1000:6.1f} ms  statuses "
            + " ".join(f"{s}:{sum(1 for r in results if r[0] == s)}" for s in sorted(statuses)))
        return results

    def assert_exact(self, server, fault):
        """A fresh user gets exactly LIMIT: Redis decides (the policy would grant another count,
        or none)."""
        user = unique(f"exact-{fault.replace(' ', '')}")
        statuses = [server.check(user_id=user).status for _ in range(LIMIT + 2)]
        self.assertEqual(statuses, [200] * LIMIT + [429] * 2, f"{fault}: {statuses}")

    def latency_under_timeout(self, server, net, policy):
        net.latency(100)
        try:
            results = self.under_load(server, policy, "latency 100 ms")
            # Decided by Redis all along: no policy answer, and slower by the delay.
            if policy == "fail_closed":
                self.assertNotIn(503, {r[0] for r in results})
            self.assertGreaterEqual(statistics.median(r[1] for r in results), 0.1,
                                    "the delay is not on the path")
            self.assert_exact(server, "latency 100 ms")
        finally:
            net.clear()

    def latency_over_timeout(self, server, net, policy):
        net.latency(1000)
        try:
            results = self.under_load(server, policy, "latency 1000 ms")
            self.assertEqual({r[0] for r in results}, POLICY_DOWN[policy], "latency 1000 ms")
            self.assert_policy_decides(server, policy, "latency 1000 ms")
        finally:
            net.clear()

    def loss(self, server, net, policy):
        net.loss(10)
        try:
            self.under_load(server, policy, "loss 10 %")
        finally:
            net.clear()

    def partition(self, server, net, policy):
        net.partition()
        try:
            results = self.under_load(server, policy, "partition")
            self.assertEqual({r[0] for r in results}, POLICY_DOWN[policy], "partition")
            self.assert_policy_decides(server, policy, "partition")
            health = server.get("/health")
            self.assertEqual(health.json()["store"]["status"], "down", health.json())
        finally:
            net.clear()

    def assert_policy_decides(self, server, policy, fault):
        """The store cannot answer in time: a fresh user gets what the policy says, each check
        within the bound."""
        answers = [r.status for r in timed_checks(self, server, unique(f"down-{policy}"),
                                                   LIMIT + 3, BOUND_S + CLIENT_MARGIN_S, fault)]
        if policy == "fail_open":
            self.assertEqual(answers, [200] * (LIMIT + 3), fault)
        elif policy == "fail_closed":
            self.assertEqual(answers, [503] * (LIMIT + 3), fault)
        else:
            local = int(LIMIT * SHARE)
            self.assertEqual(answers, [200] * local + [429] * (LIMIT + 3 - local), fault)

    def recovery(self, server, net, policy, fault):
        """The fault is cleared: within RECOVERY_S a fresh user gets exactly LIMIT, every check
        decided by Redis (under any policy a check Redis did not decide breaks the pattern: one
        more 200, a 503, or the local share's 429 early)."""
        cleared = time.monotonic()
        while True:
            user = unique("back")
            statuses = [server.check(user_id=user).status for _ in range(LIMIT + 2)]
            if statuses == [200] * LIMIT + [429] * 2:
                break
            waited = time.monotonic() - cleared
            self.assertLess(waited, RECOVERY_S,
                            f"{policy}: Redis not deciding {waited:.1f}s after the {fault} "
                            f"cleared: {statuses}")
            time.sleep(0.05)
        REPORT.append(f"{policy:<11} {fault:<15} recovered in {time.monotonic() - cleared:.2f} s")


def tearDownModule():
    if REPORT:
        print("\n" + "\n".join(REPORT), flush=True)


if __name__ == "__main__":
    unittest.main()
