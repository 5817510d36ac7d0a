"""Concurrency limits through the check API (CONTRACT §10): `algorithm: concurrency` holds at most
`limit` slots per key; the check's answer carries a `lease_id`, POST /v1/ratelimit/release gives
the slot back, and a slot no one releases expires after the rule's `lease_ttl`.

On the memory store (one server) and on a real Redis shared by three `sluice` processes: 24
client threads spread over the three take a slot, hold it a moment, and release it, over and
over, while the test counts how many hold a slot at once (incremented after an admission,
decremented before the release is sent): never more than the limit, and every slot comes back.
"""

import json
import threading
import time
import unittest

from redis_helper import RedisProcess, RedisSluice, server_config
from sluice_server import POLL_TIMEOUT_S, SluiceServer, unique

LIMIT = 5
RULES = f"""rules:
  - id: slots
    match: {{endpoint: "/slow*"}}
    key: [user_id]
    limit: {LIMIT}
    algorithm: concurrency
  - id: short
    match: {{endpoint: "/short"}}
    key: [user_id]
    limit: 1
    algorithm: concurrency
    lease_ttl: 1s
  - id: rate
    match: {{endpoint: "/slow/rated"}}
    key: [user_id]
    limit: 1
    window: 1h
    algorithm: fixed_window
"""


def release(server, lease_id):
    return server.request("POST", "/v1/ratelimit/release", body={"lease_id": lease_id})


class ConcurrencyChecks:
    """The cases every store must pass; `servers` is set by the subclass."""

    servers = []

    def test_the_limit_plus_one_is_refused_and_a_release_frees_a_slot(self):
        s = self.servers[0]
        user = unique("n1")
        leases = []
        for i in range(LIMIT):
            res = s.check(user_id=user, endpoint="/slow")
            self.assertEqual(res.status, 200, res)
            body = res.json()
            self.assertEqual(body["remaining"], LIMIT - i - 1)
            self.assertIn("lease_id", body)
            leases.append(body["lease_id"])
        self.assertEqual(len(set(leases)), LIMIT)
        over = s.check(user_id=user, endpoint="/slow")
        self.assertEqual(over.status, 429, over)
        self.assertNotIn("lease_id", over.json())
        self.assertEqual(over.header("Retry-After"), "1")
        self.assertEqual(over.json()["error"]["rule_id"], "slots")
        # Another user has slots of their own.
        self.assertEqual(s.check(user_id=unique("other"), endpoint="/slow").status, 200)
        # Released on any server: the slot is free everywhere.
        res = release(self.servers[-1], leases[0])
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json(), {"released": True})
        self.assertEqual(release(s, leases[0]).status, 200)  # twice: nothing more happens
        again = s.check(user_id=user, endpoint="/slow")
        self.assertEqual(again.status, 200, again)
        self.assertEqual(s.check(user_id=user, endpoint="/slow").status, 429)
        # A read (cost 0) takes no slot and gets no lease; as for every algorithm (CONTRACT §4)
        # it is refused only when the key is over its limit, and a full key is not.
        read = s.check(user_id=user, endpoint="/slow", cost=0)
        self.assertEqual(read.status, 200, read)
        self.assertEqual(read.json()["remaining"], 0)
        for lease in leases[1:] + [again.json()["lease_id"]]:
            self.assertEqual(release(s, lease).status, 200)
        read = s.check(user_id=user, endpoint="/slow", cost=0)
        self.assertEqual(read.status, 200, read)
        self.assertEqual(read.json()["remaining"], LIMIT)
        self.assertNotIn("lease_id", read.json())

    def test_a_rejected_request_holds_no_slot(self):
        s = self.servers[0]
        user = unique("rejected")
        first = s.check(user_id=user, endpoint="/slow/rated")
        self.assertEqual(first.status, 200, first)
        self.assertEqual(s.check(user_id=user, endpoint="/slow/rated").status, 429)
        read = s.check(user_id=user, endpoint="/slow", cost=0)
        self.assertEqual(read.json()["remaining"], LIMIT - 1)  # only the first request's slot

    def test_an_expired_lease_frees_its_slot(self):
        s = self.servers[0]
        user = unique("ttl")
        self.assertEqual(s.check(user_id=user, endpoint="/short").status, 200)
        self.assertEqual(s.check(user_id=user, endpoint="/short").status, 429)
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while time.monotonic() < deadline:
            res = s.check(user_id=user, endpoint="/short")
            if res.status == 200:
                break
            time.sleep(0.1)
        self.assertEqual(res.status, 200, "the 1 s lease never expired")

    def test_bad_release_requests(self):
        s = self.servers[0]
        for body, what in [("{", "not JSON"), ("[]", "not an object"), ({}, "no lease_id"),
                           ({"lease_id": 5}, "not a string"), ({"lease_id": ""}, "empty"),
                           ({"lease_id": "abc"}, "not a lease"),
                           ({"lease_id": "0" * 32}, "no counter"),
                           ({"lease_id": "0" * 32 + ".!!"}, "bad base64")]:
            with self.subTest(what):
                res = release(s, body)
                self.assertEqual(res.status, 400, res)
                self.assertEqual(res.json()["error"]["code"], "INVALID_REQUEST")
        res = s.request("GET", "/v1/ratelimit/release")
        self.assertEqual(res.status, 405)
        self.assertEqual(res.header("Allow"), "POST")

    def test_racing_holders_never_exceed_the_limit(self):
        user = unique("race")
        lock = threading.Lock()
        state = {"in_flight": 0, "max": 0, "admitted": 0, "refused": 0, "errors": []}
        stop_at = time.monotonic() + 3.0

        def worker(server):
            conn = None
            try:
                import http.client
                conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
                while time.monotonic() < stop_at:
                    conn.request("POST", "/v1/ratelimit/check",
                                 body=json.dumps({"user_id": user, "endpoint": "/slow"}),
                                 headers={"Content-Type": "application/json"})
                    res = conn.getresponse()
                    body = json.loads(res.read())
                    if res.status == 429:
                        with lock:
                            state["refused"] += 1
                        continue
                    if res.status != 200:
                        raise AssertionError(f"check answered {res.status}: {body}")
                    with lock:
                        state["in_flight"] += 1
                        state["admitted"] += 1
                        state["max"] = max(state["max"], state["in_flight"])
                    time.sleep(0.005)  # the work the slot guards
                    with lock:
                        state["in_flight"] -= 1
                    conn.request("POST", "/v1/ratelimit/release",
                                 body=json.dumps({"lease_id": body["lease_id"]}),
                                 headers={"Content-Type": "application/json"})
                    res = conn.getresponse()
                    res.read()
                    if res.status != 200:
                        raise AssertionError(f"release answered {res.status}")
            except Exception as e:  # noqa: BLE001 - reported by the test
                with lock:
                    state["errors"].append(repr(e))
            finally:
                if conn is not None:
                    conn.close()

        threads = [threading.Thread(target=worker, args=(self.servers[i % len(self.servers)],))
                   for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(state["errors"], [])
        # The test's count lags the store's (a slot is counted after its answer arrives and
        # uncounted before its release is sent), so it can only be lower: never above the limit.
        self.assertLessEqual(state["max"], LIMIT)
        self.assertGreater(state["admitted"], LIMIT)
        self.assertGreater(state["refused"], 0, "24 holders never competed for 5 slots")
        read = self.servers[0].check(user_id=user, endpoint="/slow", cost=0)
        self.assertEqual(read.json()["remaining"], LIMIT, "a slot was not given back")


class MemoryConcurrencyTest(ConcurrencyChecks, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        server = SluiceServer(files={"rules.yaml": RULES}, rules=["rules.yaml"])
        server.start()
        cls.servers = [server]

    @classmethod
    def tearDownClass(cls):
        for s in cls.servers:
            s.stop()


class RedisConcurrencyTest(ConcurrencyChecks, unittest.TestCase):
    """Three servers share one Redis: the limit holds across them."""

    @classmethod
    def setUpClass(cls):
        cls.redis = RedisProcess().start()
        cls.servers = []
        try:
            for _ in range(3):
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

    def test_release_when_redis_is_down_is_a_503(self):
        s = self.servers[0]
        user = unique("down")
        lease = s.check(user_id=user, endpoint="/slow").json()["lease_id"]
        redis = type(self).redis
        redis.kill()
        try:
            res = release(s, lease)
            self.assertEqual(res.status, 503, res)
            self.assertEqual(res.json()["error"]["code"], "STORE_UNAVAILABLE")
            self.assertEqual(res.header("Retry-After"), "1")
        finally:
            type(self).redis = RedisProcess(port=redis.port).start()
            # The servers reconnect by themselves; the other cases need them connected.
            deadline = time.monotonic() + POLL_TIMEOUT_S
            for server in self.servers:
                while server.health()["status"] != "healthy" and time.monotonic() < deadline:
                    time.sleep(0.05)


if __name__ == "__main__":
    unittest.main()
