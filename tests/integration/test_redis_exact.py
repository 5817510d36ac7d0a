"""Exactness under races: four `sluice` processes share one Redis (`--store redis://...`), 64
concurrent client connections spread over them send 3000 checks on one key whose limit is 1000,
and exactly 1000 are admitted, for every algorithm."""

import os
import unittest

from redis_helper import Load, RedisProcess, RedisSluice, server_config
from sluice_server import unique

ALGORITHMS = ["fixed_window", "sliding_window_counter", "sliding_window_log", "token_bucket",
              "gcra", "leaky_bucket"]

# 30-day windows: the buckets refill 1000 tokens a month, so none refills during the test and
# "exactly 1000" is what every algorithm must say.
RULES = "rules:\n" + "".join(
    f"  - id: {a}\n"
    f"    match: {{endpoint: /{a}}}\n"
    "    key: [user_id]\n"
    "    limit: 1000\n"
    "    window: 30d\n"
    f"    algorithm: {a}\n"
    for a in ALGORITHMS)

SERVERS = 4
CONNECTIONS = 64
REQUESTS = 3000


class RedisExactnessTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = RedisProcess().start()
        cls.servers = []
        try:
            for _ in range(SERVERS):
                # fail_closed and a generous timeout: on a loaded machine a slow answer must
                # never pass as an admission (fail_open would allow it).
                s = RedisSluice(files={"sluice.yaml": server_config(cls.redis.url, "fail_closed",
                                                                    timeout="2s"),
                                       "rules.yaml": RULES},
                                config="sluice.yaml", rules=["rules.yaml"])
                s.start()
                cls.servers.append(s)
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for s in cls.servers:
            s.stop()
        cls.redis.kill()

    def test_all_servers_use_the_shared_store(self):
        for s in self.servers:
            health = s.health()
            self.assertEqual(health["status"], "healthy", health)
            self.assertEqual(health["store"]["backend"], "redis", health)

    def test_exactly_the_limit_is_admitted_across_servers(self):
        for algorithm in ALGORITHMS:
            with self.subTest(algorithm=algorithm):
                user = unique("exact")
                results = Load(self.servers, CONNECTIONS,
                               lambda i: {"user_id": user, "endpoint": f"/{algorithm}"},
                               count=REQUESTS).start().join()
                self.assertEqual(len(results), REQUESTS)
                errors = [r for r in results if r[0] is None]
                self.assertEqual(errors, [], "requests without an answer")
                statuses = [r[0] for r in results]
                self.assertEqual(statuses.count(200), 1000, algorithm)
                self.assertEqual(statuses.count(429), REQUESTS - 1000, algorithm)
                # Every server saw the shared count: one more check anywhere is rejected.
                for s in self.servers:
                    res = s.check(user_id=user, endpoint=f"/{algorithm}")
                    self.assertEqual(res.status, 429, res)


if __name__ == "__main__":
    unittest.main()
