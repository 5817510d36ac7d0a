"""`store.backend: redis_sharded` with the real binary: two shards, one a plain redis:// URL and
one a Sentinel-managed master (a master, its replica, three sentinels). Limits are exact across
the shards, and when the Sentinel-managed master is killed, the sentinels promote the replica,
Sluice follows it (+switch-master, or asking the sentinels) and the count continues."""

import unittest

from redis_helper import RedisProcess, RedisSentinelGroup, RedisSluice, _info
from sluice_server import poll, unique

RULES = (
    "rules:\n"
    "  - id: per-user\n"
    "    match: {}\n"
    "    key: [user_id]\n"
    "    limit: 20\n"
    "    window: 30d\n")

# Sentinel: down-after 1 s, then an election and a promotion.
FOLLOW_S = 30


def sharded_config(url, group, on_failure):
    return (
        "store:\n"
        "  backend: redis_sharded\n"
        "  shards:\n"
        f"    - url: {url}\n"
        f"    - sentinels: [{', '.join(group.sentinels)}]\n"
        f"      master: {group.name}\n"
        "  timeout: 200ms\n"
        "  pool: 2\n"
        f"  on_failure: {on_failure}\n"
        "log:\n"
        "  level: warn\n")


class RedisShardedTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.plain = RedisProcess().start()
        cls.group = None
        cls.servers = []
        try:
            cls.group = RedisSentinelGroup(name="shard-b").start()
            for _ in range(2):
                s = RedisSluice(files={"sluice.yaml": sharded_config(cls.plain.url, cls.group,
                                                                     "fail_closed"),
                                       "rules.yaml": RULES},
                                config="sluice.yaml", rules=["rules.yaml"])
                s.start()
                cls.servers.append(s)
            for s in cls.servers:
                poll(lambda: s.get("/health").json()["status"] == "healthy", timeout=20,
                     message="sluice healthy on both shards")
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for s in cls.servers:
            s.stop()
        if cls.group is not None:
            cls.group.stop()
        cls.plain.kill()

    def shard_keys(self, port):
        return self.group.command(port, "KEYS", "*") if port else []

    def test_1_users_spread_over_both_shards_with_exact_limits(self):
        users = [unique("spread") for _ in range(40)]
        for user in users:
            statuses = [self.servers[i % 2].check(user_id=user).status for i in range(22)]
            self.assertEqual(statuses.count(200), 20, (user, statuses))
        on_sentinel_shard = self.group.command(self.group.master_port(), "KEYS", "*spread*")
        on_plain_shard = self.group.command(self.plain.port, "KEYS", "*spread*")
        self.assertEqual(len(on_sentinel_shard) + len(on_plain_shard), len(users))
        self.assertGreater(len(on_sentinel_shard), 0)
        self.assertGreater(len(on_plain_shard), 0)

    def test_2_a_sentinel_failover_is_followed_and_the_count_continues(self):
        master = self.group.master_port()
        # A user whose counter lives on the Sentinel-managed shard.
        user = None
        for _ in range(100):
            candidate = unique("failover")
            self.assertEqual(self.servers[0].check(user_id=candidate).status, 200)
            if self.group.command(master, "KEYS", f"*{candidate}*"):
                user = candidate
                break
        self.assertIsNotNone(user, "no user landed on the Sentinel-managed shard")
        for _ in range(9):
            self.assertEqual(self.servers[0].check(user_id=user).status, 200)
        replica = next(p for p in self.group.server_ports() if p != master)

        def in_sync():
            offset = int(_info(self.group.command(master, "INFO", "replication"))
                         ["master_repl_offset"])
            return int(_info(self.group.command(replica, "INFO", "replication"))
                       ["slave_repl_offset"]) >= offset

        poll(in_sync, timeout=10, message="the replica in sync")
        killed = self.group.kill_master()
        new = self.group.wait_failover(killed, timeout=FOLLOW_S)
        self.assertEqual(new, replica)
        for s in self.servers:
            poll(lambda: s.check(user_id=user, cost=0).status != 503, timeout=FOLLOW_S,
                 message="every sluice follows the new master")
        statuses = [self.servers[i % 2].check(user_id=user).status for i in range(15)]
        self.assertEqual(statuses.count(200), 10, statuses)
        self.assertEqual(statuses.count(429), 5, statuses)
        # Users on the plain shard were served all along.
        other = unique("plain")
        self.assertEqual(self.servers[1].check(user_id=other).status, 200)


if __name__ == "__main__":
    unittest.main()
