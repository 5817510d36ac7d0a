"""Concurrency limits in gateway mode (CONTRACT §10), end to end: a slot is held from the decision
until the upstream's answer has reached the client, or the client is gone, or the slot's
lease_ttl ends.

The upstream here counts the requests to /work it is serving at once (its own in-flight count,
raised when a request arrives and lowered before it answers) and holds each for `?ms=`. Three `sluice`
gateways share one real Redis: however many clients race through them, the upstream never serves
more than the rule's limit at once — the slot is given back only after the upstream answered.
"""

import http.client
import socket
import struct
import threading
import time
import unittest
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from redis_helper import RedisProcess, server_config
from sluice_server import POLL_TIMEOUT_S, SluiceServer, free_port, poll

REQUEST_TIMEOUT_S = 30.0


class CountingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        up = self.server.upstream
        counted = self.path.startswith("/work")  # the racing test's requests only
        with up.lock:
            up.served += 1
            if counted:
                up.in_flight += 1
                up.max_in_flight = max(up.max_in_flight, up.in_flight)
        try:
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            time.sleep(int(query.get("ms", "0")) / 1000.0)
        finally:
            if counted:
                with up.lock:
                    up.in_flight -= 1
        body = b"ok"
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class CountingUpstream:
    def __init__(self):
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.served = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), CountingHandler)
        self.server.daemon_threads = True
        self.server.upstream = self
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def gateway_config(proxy_port, upstream_port, store=""):
    return f"""{store}
proxy:
  listen: 127.0.0.1:{proxy_port}
  upstream: http://127.0.0.1:{upstream_port}
  timeout: 30s
  identity:
    user_id: header:X-User-Id
"""


RULES = """
rules:
  - id: three-at-once
    match: {endpoint: "/work*"}
    key: []
    algorithm: concurrency
    limit: 3
  - id: one-at-once
    match: {endpoint: "/one*"}
    key: [user_id]
    algorithm: concurrency
    limit: 1
  - id: short-lease
    match: {endpoint: "/short*"}
    key: [user_id]
    algorithm: concurrency
    limit: 1
    lease_ttl: 1s
"""


class GatewayProcess:
    def __init__(self, upstream_port, store=""):
        self.proxy_port = free_port()
        self.server = SluiceServer(
            files={"sluice.yaml": gateway_config(self.proxy_port, upstream_port, store),
                   "rules.yaml": RULES},
            config="sluice.yaml", rules=["rules.yaml"])

    def start(self):
        self.server.start()
        poll(self._listening, message="the gateway listening")
        return self

    def _listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.proxy_port), timeout=1).close()
            return True
        except OSError:
            return False

    def get(self, path, user="u", timeout=REQUEST_TIMEOUT_S):
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"X-User-Id": user})
            res = conn.getresponse()
            res.read()
            return res.status
        finally:
            conn.close()

    def remaining(self, endpoint, user="u"):
        """The rule's free slots, read through the check API (cost 0 takes none)."""
        res = self.server.check(user_id=user, endpoint=endpoint, cost=0)
        return res.json().get("remaining")


class GatewayConcurrencyTests:
    gateways = []
    upstream = None

    def test_a_killed_client_frees_its_slot(self):
        gw = self.gateways[0]
        user = f"killed-{time.monotonic_ns()}"
        sock = socket.create_connection(("127.0.0.1", gw.proxy_port), timeout=10)
        sock.sendall(f"GET /one?ms=20000 HTTP/1.1\r\nHost: t\r\nX-User-Id: {user}\r\n\r\n"
                     .encode())
        poll(lambda: gw.remaining("/one", user) == 0, message="the slot taken")
        self.assertEqual(gw.get("/one?ms=0", user), 429)
        # Gone without a word: RST, as a killed process's socket.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        # Freed long before the upstream's 20 s answer would have freed it.
        poll(lambda: gw.remaining("/one", user) == 1, timeout=POLL_TIMEOUT_S,
             message="the killed client's slot given back")
        self.assertEqual(gw.get("/one?ms=0", user), 200)

    def test_an_expired_lease_frees_its_slot(self):
        gw = self.gateways[0]
        user = f"expired-{time.monotonic_ns()}"
        holder = threading.Thread(target=gw.get, args=("/short?ms=10000", user))
        holder.start()
        try:
            poll(lambda: gw.remaining("/short", user) == 0, message="the slot taken")
            # The 1 s lease_ttl frees the slot while the first request is still upstream.
            status = poll(lambda: gw.get("/short?ms=0", user) == 200 or None, timeout=8,
                          interval=0.1, message="the expired slot free")
            self.assertTrue(status)
            self.assertTrue(holder.is_alive(), "the first request ended before its lease did")
        finally:
            holder.join()

    def test_a_finished_request_frees_its_slot(self):
        gw = self.gateways[-1]
        user = f"finished-{time.monotonic_ns()}"
        for _ in range(5):
            self.assertEqual(gw.get("/one?ms=0", user), 200)
        self.assertEqual(gw.remaining("/one", user), 1)

    def test_racing_clients_never_exceed_the_limit_upstream(self):
        up = self.upstream
        with up.lock:
            up.max_in_flight = 0
        statuses = []
        lock = threading.Lock()
        stop_at = time.monotonic() + 3.0

        def client(gw):
            while time.monotonic() < stop_at:
                status = gw.get("/work?ms=20")
                with lock:
                    statuses.append(status)

        threads = [threading.Thread(target=client, args=(self.gateways[i % len(self.gateways)],))
                   for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(set(statuses) - {200, 429}, set(), statuses)
        self.assertGreater(statuses.count(429), 0, "24 clients never competed for 3 slots")
        self.assertGreater(statuses.count(200), 3)
        self.assertLessEqual(up.max_in_flight, 3)
        self.assertGreaterEqual(up.max_in_flight, 2)
        poll(lambda: self.gateways[0].remaining("/work") == 3, message="every slot given back")


class MemoryGatewayConcurrencyTest(GatewayConcurrencyTests, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.upstream = CountingUpstream()
        cls.gateways = [GatewayProcess(cls.upstream.port).start()]

    @classmethod
    def tearDownClass(cls):
        for gw in cls.gateways:
            gw.server.stop()
        cls.upstream.close()


class RedisGatewayConcurrencyTest(GatewayConcurrencyTests, unittest.TestCase):
    """Three gateways on one Redis: the limit holds across them."""

    @classmethod
    def setUpClass(cls):
        cls.redis = RedisProcess().start()
        cls.upstream = CountingUpstream()
        cls.gateways = []
        try:
            for _ in range(3):
                store = server_config(cls.redis.url, "fail_closed", timeout="2s")
                cls.gateways.append(GatewayProcess(cls.upstream.port, store).start())
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for gw in cls.gateways:
            gw.server.stop()
        cls.upstream.close()
        cls.redis.kill()


if __name__ == "__main__":
    unittest.main()
