"""`store.backend: redis_cluster` with the real binary against a real Redis Cluster (3 masters,
3 replicas): four `sluice` processes, 64 connections, 3000 checks on one key with a limit of
1000 admit exactly 1000 for every algorithm; a request whose counters live in different slots is
all-or-nothing; and when the master holding a counter is killed, the replica is promoted, Sluice
follows it and the count continues where it was."""

import unittest

from redis_helper import Load, RedisCluster, RedisSluice, _info
from sluice_server import poll, unique

ALGORITHMS = ["fixed_window", "sliding_window_counter", "sliding_window_log", "token_bucket",
              "gcra", "leaky_bucket"]

# 30-day windows: nothing refills during the test, so every algorithm must say "exactly".
RULES = "rules:\n" + "".join(
    f"  - id: {a}\n"
    f"    match: {{endpoint: /{a}}}\n"
    "    key: [user_id]\n"
    "    limit: 1000\n"
    "    window: 30d\n"
    f"    algorithm: {a}\n"
    for a in ALGORITHMS) + (
    # Two rules on one request, counted under different keys (so, almost surely, slots).
    "  - id: wide\n"
    "    match: {endpoint: /pair*}\n"
    "    key: [user_id]\n"
    "    limit: 5\n"
    "    window: 30d\n"
    "  - id: narrow\n"
    "    match: {endpoint: /pair/narrow}\n"
    "    key: [user_id]\n"
    "    limit: 3\n"
    "    window: 30d\n"
    "  - id: failover\n"
    "    match: {endpoint: /failover}\n"
    "    key: [user_id]\n"
    "    limit: 20\n"
    "    window: 30d\n")

SERVERS = 4
CONNECTIONS = 64
REQUESTS = 3000
# Failover: cluster-node-timeout is 1 s; promotion, the new slot map and reconnection follow.
FOLLOW_S = 30


def cluster_config(seeds, on_failure="fail_open"):
    return (
        "store:\n"
        "  backend: redis_cluster\n"
        f"  nodes: [{', '.join(seeds)}]\n"
        "  timeout: 1s\n"
        "  pool: 2\n"
        f"  on_failure: {on_failure}\n"
        "log:\n"
        "  level: warn\n")


class RedisClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = RedisCluster().start()
        cls.servers = []
        try:
            for _ in range(SERVERS):
                s = RedisSluice(files={"sluice.yaml": cluster_config(cls.cluster.seeds,
                                                                     "fail_closed"),
                                       "rules.yaml": RULES},
                                config="sluice.yaml", rules=["rules.yaml"])
                s.start()
                cls.servers.append(s)
            for s in cls.servers:
                poll(lambda: s.get("/health").json()["status"] == "healthy", timeout=20,
                     message="sluice healthy on the cluster")
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for s in cls.servers:
            s.stop()
        cls.cluster.stop()

    def test_1_health_names_the_cluster_backend(self):
        for s in self.servers:
            body = s.health()
            self.assertEqual(body["status"], "healthy", body)
            self.assertEqual(body["store"]["backend"], "redis_cluster", body)

    def test_2_exactly_the_limit_is_admitted_across_servers(self):
        for algorithm in ALGORITHMS:
            with self.subTest(algorithm=algorithm):
                user = unique("exact")
                results = Load(self.servers, CONNECTIONS,
                               lambda i: {"user_id": user, "endpoint": f"/{algorithm}"},
                               count=REQUESTS).start().join()
                self.assertEqual([r for r in results if r[0] is None], [],
                                 "requests without an answer")
                statuses = [r[0] for r in results]
                self.assertEqual(statuses.count(200), 1000, algorithm)
                self.assertEqual(statuses.count(429), REQUESTS - 1000, algorithm)
                for s in self.servers:
                    self.assertEqual(s.check(user_id=user, endpoint=f"/{algorithm}").status, 429)

    def test_3_a_request_across_slots_is_all_or_nothing(self):
        user = unique("pair")
        # Both rules apply: 3 admitted (narrow's limit), the other 5 rejected and not counted
        # by `wide` either, though its key lives in another slot.
        statuses = [self.servers[i % SERVERS].check(user_id=user,
                                                    endpoint="/pair/narrow").status
                    for i in range(8)]
        self.assertEqual(statuses.count(200), 3, statuses)
        # `wide` alone: 5 - 3 = 2 left.
        statuses = [self.servers[i % SERVERS].check(user_id=user, endpoint="/pair").status
                    for i in range(6)]
        self.assertEqual(statuses.count(200), 2, statuses)

    def test_4_a_killed_master_is_followed_and_the_count_continues(self):
        user = unique("failover")
        server = self.servers[0]
        for _ in range(10):
            self.assertEqual(server.check(user_id=user, endpoint="/failover").status, 200)
        # The master holding the counter: the node whose keyspace has it.
        key = None
        for port in self.cluster.master_ports():
            found = self.cluster.command(port, "KEYS", f"*{user}*")
            if found:
                key = found[0]
                break
        self.assertIsNotNone(key, "the counter is on no master")
        slot = self.cluster.slot_of(key)
        master = self.cluster.master_of_slot(slot)
        # Let the replica catch up (replication is asynchronous), then kill the master.
        replica = self.replica_of(master)

        def in_sync():
            offset = int(_info(self.cluster.command(master, "INFO", "replication"))
                         ["master_repl_offset"])
            return int(_info(self.cluster.command(replica, "INFO", "replication"))
                       ["slave_repl_offset"]) >= offset

        poll(in_sync, timeout=10, message="the replica in sync")
        killed = self.cluster.kill_master_of_slot(slot)
        new = self.cluster.wait_for_new_master(slot, killed, timeout=FOLLOW_S)
        self.assertNotEqual(new, killed)
        # fail_closed: 503 until Sluice follows; then the count continues from 10.
        for s in self.servers:
            poll(lambda: s.check(user_id=user, endpoint="/failover", cost=0).status != 503,
                 timeout=FOLLOW_S, message="every sluice follows the promoted replica")
        statuses = [self.servers[i % SERVERS].check(user_id=user, endpoint="/failover").status
                    for i in range(15)]
        self.assertEqual(statuses.count(200), 10, statuses)
        self.assertEqual(statuses.count(429), 5, statuses)

    def replica_of(self, master_port):
        for port in self.cluster.ports():
            if port != master_port and self.cluster.alive(port):
                role = self.cluster.command(port, "ROLE")
                if role[0] == "slave" and int(role[2]) == master_port:
                    return port
        raise AssertionError(f"no replica of {master_port}")


if __name__ == "__main__":
    unittest.main()
