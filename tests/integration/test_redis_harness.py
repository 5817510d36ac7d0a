"""The Redis Cluster and Sentinel harnesses of redis_helper themselves: a cluster forms, loses the
master of a slot and serves the slot from the promoted replica; a sentinel group loses its master
and the sentinels name a promoted replica that takes writes. No Sluice here; the waits are hang
detectors (generous for a loaded machine), never assertions on speed."""

import unittest

from redis_helper import CLUSTER_SLOTS, RedisCluster, RedisSentinelGroup

FAILOVER_TIMEOUT_S = 60


class RedisClusterHarnessTest(unittest.TestCase):
    def test_a_killed_master_is_replaced_and_comes_back_as_a_replica(self):
        cluster = RedisCluster()
        self.addCleanup(cluster.stop)
        cluster.start()
        self.assertEqual(len(cluster.seeds), 6)
        masters = cluster.master_ports()
        self.assertEqual(len(masters), 3)

        # Through any node: redis-cli -c follows the MOVED redirects.
        for i in range(30):
            self.assertEqual(cluster.cli(masters[i % 3], "-c", "SET", f"harness:{i}", i), "OK")
        self.assertEqual(cluster.cli(masters[0], "-c", "GET", "harness:7"), "7")

        key = "harness:{tagged}:1"
        slot = cluster.slot_of(key)
        self.assertEqual(slot, cluster.slot_of("tagged"))
        self.assertTrue(0 <= slot < CLUSTER_SLOTS)
        owner = cluster.master_of_slot(slot)
        self.assertIn(owner, masters)
        self.assertEqual(cluster.cli(owner, "SET", key, "before"), "OK")

        old = cluster.kill_master_of_slot(slot)
        self.assertEqual(old, owner)
        self.assertFalse(cluster.alive(old))
        new = cluster.wait_for_new_master(slot, old, timeout=FAILOVER_TIMEOUT_S)
        self.assertNotEqual(new, old)
        self.assertEqual(cluster.master_of_slot(slot), new)
        # Served there without a redirect.
        self.assertEqual(cluster.cli(new, "SET", key, "after"), "OK")
        self.assertEqual(cluster.cli(new, "GET", key), "after")
        self.assertEqual(sorted(cluster.master_ports()), sorted(set(masters) - {old} | {new}))

        cluster.restart(old, timeout=FAILOVER_TIMEOUT_S)
        self.assertEqual(cluster.command(old, "ROLE")[0], "slave")
        self.assertEqual(cluster.master_of_slot(slot), new)

        cluster.stop()
        cluster.stop()  # twice is fine
        self.assertEqual(cluster.seeds, [])


class RedisSentinelHarnessTest(unittest.TestCase):
    def test_a_killed_master_is_replaced_by_its_replica(self):
        with RedisSentinelGroup(name="harness") as group:
            self.assertEqual(group.name, "harness")
            self.assertEqual(len(group.sentinels), 3)
            old = group.master_port()
            self.assertEqual(group.cli(old, "SET", "k", "before"), "OK")

            self.assertEqual(group.kill_master(), old)
            new = group.wait_failover(old, timeout=FAILOVER_TIMEOUT_S)
            self.assertNotEqual(new, old)
            self.assertEqual(group.master_port(), new)
            self.assertEqual(group.command(new, "ROLE")[0], "master")
            self.assertEqual(group.cli(new, "SET", "k", "after"), "OK")
            self.assertEqual(group.cli(new, "GET", "k"), "after")
        self.assertEqual(group.sentinels, [])


if __name__ == "__main__":
    unittest.main()
