"""What one client may take (issue 10, docs/robustness.md): connections per client address on
both listeners, and /health telling when a listener is out of file descriptors.

127.0.0.2 stands for a second client: every 127.x.y.z address is the loopback interface on Linux,
so a socket bound to it reaches the server from another address.
"""

import http.client
import json
import resource
import socket
import time
import unittest

from sluice_server import SluiceServer, free_port, poll

PER_ADDRESS = 5
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def connect(port, source="127.0.0.1", timeout=3.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def closed_by_server(sock, timeout=3.0):
    """Whether the server closed `sock` (end of stream or reset) within `timeout`, having sent
    nothing; False when it is still open (a read timed out) or data came."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def health_on(sock):
    """GET /health on an open keep-alive socket; (status, JSON body)."""
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: sluice\r\n\r\n")
    res = http.client.HTTPResponse(sock)
    res.begin()
    return res.status, json.loads(res.read())


def grpc_served(sock):
    """Whether the gRPC listener took `sock`: it answers the HTTP/2 preface with its SETTINGS."""
    sock.sendall(HTTP2_PREFACE)
    try:
        return len(sock.recv(9)) > 0
    except (ConnectionResetError, socket.timeout):
        return False


class ConnectionsPerAddressTest(unittest.TestCase):
    """A client address gets at most limits.max_connections_per_address connections on each
    listener; one over it is closed at once, while other addresses are served."""

    @classmethod
    def setUpClass(cls):
        cls.http_port = free_port()
        cls.grpc_port = free_port()
        config = (f"listen:\n  http: 127.0.0.1:{cls.http_port}\n"
                  f"  grpc: 127.0.0.1:{cls.grpc_port}\n"
                  f"limits:\n  max_connections_per_address: {PER_ADDRESS}\n")
        cls.server = SluiceServer(files={"sluice.yaml": config}, config="sluice.yaml", http=False)
        cls.server.start(port=cls.http_port)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_http_connections_per_address(self):
        held = [connect(self.http_port) for _ in range(PER_ADDRESS)]
        try:
            for s in held:  # each one is served (and so counted)
                self.assertEqual(health_on(s)[0], 200)
            extra = connect(self.http_port)
            self.assertTrue(closed_by_server(extra), "a connection over the cap was kept")
            extra.close()
            # Another client is served meanwhile.
            other = connect(self.http_port, source="127.0.0.2")
            self.assertEqual(health_on(other)[0], 200)
            other.close()
        finally:
            for s in held:
                s.close()
        # The places are given back once the connections close.
        def served_again():
            s = connect(self.http_port)
            try:
                return health_on(s)[0] == 200
            except OSError:
                return False
            finally:
                s.close()
        poll(served_again, message="a connection from 127.0.0.1 served again")
        self.assertIn(b'"event":"connection_refused"', self.server.logs_bytes())

    def test_grpc_connections_per_address(self):
        held = [connect(self.grpc_port) for _ in range(PER_ADDRESS)]
        try:
            for s in held:
                self.assertTrue(grpc_served(s))
            extra = connect(self.grpc_port)
            self.assertTrue(closed_by_server(extra), "a connection over the cap was kept")
            extra.close()
            other = connect(self.grpc_port, source="127.0.0.2")
            self.assertTrue(grpc_served(other))
            other.close()
        finally:
            for s in held:
                s.close()
        # gRPC closes the connections; the listener sees it and gives the places back.
        def served_again():
            socks = [connect(self.grpc_port) for _ in range(PER_ADDRESS)]
            try:
                return all(grpc_served(s) for s in socks)
            finally:
                for s in socks:
                    s.close()
        poll(served_again, message=f"{PER_ADDRESS} gRPC connections from 127.0.0.1 served again")


class ExhaustedListenerHealthTest(unittest.TestCase):
    """Out of file descriptors, /health (asked on a connection opened before) says the HTTP
    listener is exhausted and the server degraded; healthy again once descriptors are free."""

    def test_health_reports_an_exhausted_listener(self):
        limit = 64

        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        with SluiceServer(preexec_fn=low_limit) as server:
            keep = connect(server.port, timeout=10)
            status, body = health_on(keep)
            self.assertEqual((status, body["status"], body["listeners"]),
                             (200, "healthy", {"http": "accepting"}), body)
            flood = []
            try:
                for _ in range(limit + 16):
                    flood.append(connect(server.port))
                poll(lambda: b"accept_failed" in server.logs_bytes(), message="accept_failed")
                status, body = health_on(keep)
                self.assertEqual((status, body["status"], body["listeners"]),
                                 (200, "degraded", {"http": "exhausted"}), body)
            finally:
                for s in flood:
                    s.close()
                keep.close()

            def healthy():
                try:
                    body = server.health()
                except OSError:
                    return False
                return body["status"] == "healthy" and body["listeners"] == {"http": "accepting"}
            poll(healthy, timeout=15, message="healthy again")


if __name__ == "__main__":
    unittest.main()


class HealthReserveTest(unittest.TestCase):
    """A full HTTP listener keeps a reserve of 16 places that answer only health checks, one
    request each: an orchestrator's probe still gets its answer while clients hold every place."""

    MAX = 3

    @classmethod
    def setUpClass(cls):
        cls.http_port = free_port()
        config = (f"listen:\n  http: 127.0.0.1:{cls.http_port}\n  grpc: \"\"\n"
                  f"limits:\n  max_connections: {cls.MAX}\n")
        cls.server = SluiceServer(files={"sluice.yaml": config}, config="sluice.yaml", http=False)
        cls.server.start(port=cls.http_port)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def fill(self):
        held = [connect(self.http_port) for _ in range(self.MAX)]
        for s in held:  # each one is served, so counted
            self.assertEqual(health_on(s)[0], 200)
        return held

    def test_full_listener_answers_health_checks_only(self):
        held = self.fill()
        try:
            probe = connect(self.http_port)
            status, body = health_on(probe)
            self.assertEqual(status, 200)
            self.assertIn(body["status"], ("healthy", "degraded"))
            self.assertTrue(closed_by_server(probe), "a reserved place answers one request")
            probe.close()

            check = connect(self.http_port)
            check.sendall(b"POST /v1/ratelimit/check HTTP/1.1\r\nHost: sluice\r\n"
                          b"Content-Length: 2\r\n\r\n{}")
            res = http.client.HTTPResponse(check)
            res.begin()
            self.assertEqual(res.status, 503)
            self.assertEqual(res.getheader("Retry-After"), "1")
            self.assertEqual(json.loads(res.read())["error"]["code"], "SERVER_BUSY")
            check.close()
        finally:
            for s in held:
                s.close()
        # Places given back: checks are served again.
        poll(lambda: self.server.check(user_id="u").status == 200, message="served again")

    def test_reserve_is_bounded(self):
        held = self.fill()
        reserved = []
        try:
            reserved = [connect(self.http_port) for _ in range(16)]
            time.sleep(0.5)  # accepted, each holding a reserved place
            extra = connect(self.http_port)
            self.assertTrue(closed_by_server(extra), "past the reserve, connections are refused")
            extra.close()
        finally:
            for s in held + reserved:
                s.close()
