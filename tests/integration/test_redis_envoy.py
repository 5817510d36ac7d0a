"""The Envoy face on Redis (`POST /json`, the same path as gRPC): a requests_per_unit 0
descriptor stops the others of its request from being charged, quota_mode's all-or-nothing and
share_threshold's one counter hold when two servers share the store (the all-or-nothing is
done inside the store, by the Redis scripts)."""

import json
import unittest

from redis_helper import RedisProcess, RedisSluice, server_config
from sluice_server import unique

DOMAIN = """
domain: edge
descriptors:
  - key: blocked
    rate_limit: {unit: minute, requests_per_unit: 0}
  - key: counted
    rate_limit: {unit: hour, requests_per_unit: 5}
  - key: quota_a
    quota_mode: true
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: quota_b
    quota_mode: true
    rate_limit: {unit: hour, requests_per_unit: 2}
  - key: path
    value: files/*
    share_threshold: true
    rate_limit: {unit: hour, requests_per_unit: 3}
"""


def body(*descriptors, hits=None):
    ds = []
    for entries in descriptors:
        d = {"entries": [{"key": k, "value": v} for k, v in entries]}
        if hits is not None:
            d["hits_addend"] = hits
        ds.append(d)
    return json.dumps({"domain": "edge", "descriptors": ds})


class RedisEnvoyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = RedisProcess().start()
        cls.servers = []
        try:
            for _ in range(2):
                s = RedisSluice(files={"sluice.yaml": server_config(cls.redis.url, "fail_closed",
                                                                    timeout="2s"),
                                       "edge.yaml": DOMAIN},
                                config="sluice.yaml", rules=["edge.yaml"])
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

    def post(self, i, payload):
        res = self.servers[i % 2].request("POST", "/json", body=payload,
                                          headers={"Content-Type": "application/json"})
        self.assertIn(res.status, (200, 429), res.body)
        return res

    def test_zero_requests_per_unit_charges_nothing_else(self):
        counted = [("counted", unique("c"))]
        for i in range(3):
            res = self.post(i, body([("blocked", "x")], counted))
            self.assertEqual(res.status, 429)
            statuses = res.json()["statuses"]
            self.assertEqual(statuses[0]["code"], "OVER_LIMIT")
            self.assertEqual(statuses[1]["code"], "OK")
        # Still 5 left: a read (hits 0) shows it.
        read = self.post(0, body(counted, hits=0)).json()
        self.assertEqual(read["statuses"][0]["limitRemaining"], 5)

    def test_quota_mode_is_over_only_when_every_quota_is(self):
        key = unique("q")
        a, b = [("quota_a", key)], [("quota_b", key)]
        self.assertEqual(self.post(0, body(a, b)).status, 200)
        second = self.post(1, body(a, b))
        self.assertEqual(second.status, 200)
        self.assertEqual(second.json()["statuses"][0]["code"], "OVER_LIMIT")
        third = self.post(0, body(a, b))
        self.assertEqual(third.status, 429)
        self.assertEqual(third.json()["statuses"][1]["code"], "OVER_LIMIT")

    def test_share_threshold_shares_one_counter_across_servers(self):
        # The shared counter is per pattern: one run per Redis, so the test runs once.
        codes = [self.post(i, body([("path", "files/" + unique("f"))])).status
                 for i in range(4)]
        self.assertEqual(codes, [200, 200, 200, 429])


if __name__ == "__main__":
    unittest.main()
