"""Bad input against the real server: JSON and field errors, unknown paths and methods, size limits,
malformed HTTP, slow clients (CONTRACT §5 "Errors" and the limits at the top of §5).

After every test the server must still answer a normal check.
"""

import os
import resource
import socket
import time
import unittest

from sluice_server import (RawConnection, ServerTestCase, SluiceServer, poll, raw_exchange,
                           read_raw_response,
                           unique)

RULES = """
rules:
  - id: everyone
    match: {}
    key: [user_id]
    limit: 1000000
    window: 1h
"""

CHECK_HEAD = (b"POST /v1/ratelimit/check HTTP/1.1\r\nHost: sluice\r\n"
              b"Content-Type: application/json\r\n")
CHUNKED_HEAD = CHECK_HEAD + b"Transfer-Encoding: chunked\r\n"


def check_request(body=b'{"user_id": "raw"}', extra=b""):
    """A complete raw check request; `extra` is inserted as additional header lines."""
    return CHECK_HEAD + b"Content-Length: %d\r\n" % len(body) + extra + b"\r\n" + body


class ErrorsTestCase(ServerTestCase):
    SERVER_FILES = {"rules.yaml": RULES}
    SERVER_RULES = ["rules.yaml"]

    def tearDown(self):
        # After each bad input the server still serves a normal check.
        self.assertServes()

    def assertErrorShape(self, res, status, code):
        body = self.assertError(res, status, code)
        self.assertEqual(set(body), {"error"}, res)
        return body

    def assertBadRequestOrClosed(self, res):
        """Malformed HTTP: a 400 where a response can be framed, otherwise a closed connection."""
        if res is None:
            return
        self.assertEqual(res.status, 400, res)
        if res.body:
            self.assertEqual(res.json()["error"]["code"], "INVALID_REQUEST", res)


class JsonErrorsTest(ErrorsTestCase):
    def test_malformed_json(self):
        for body in (b'{"user_id": ', b'{user_id: "a"}', b"{'user_id': 'a'}", b'{"a" 1}',
                     b'nope', b'{"user_id": "a"} trailing', b'{"user_id": "a",}', b'',
                     b'{"cost": 01}', b'{"user_id": "a\x01b"}'):
            with self.subTest(body=body):
                self.assertErrorShape(self.server.check(body=body), 400, "INVALID_REQUEST")

    def test_deeply_nested_json_does_not_crash(self):
        # Under 64 KiB, but 30000 levels deep: answered (ignored field, or a 400), never a crash.
        for body in (b'{"x": ' + b'[' * 30000 + b']' * 30000 + b'}',
                     b'{"x": ' + b'{"a":' * 10000 + b'1' + b'}' * 10000 + b'}',
                     b'[' * 65000):
            with self.subTest(size=len(body)):
                res = self.server.check(body=body)
                self.assertIn(res.status, (200, 400), res)
                self.assertServes()

    def test_many_headers_in_the_body_are_fine(self):
        body = (b'{"user_id": "many", "headers": {' +
                b','.join(b'"h%d": "v"' % i for i in range(5000)) + b'}}')
        self.assertLess(len(body), 65536)
        self.assertEqual(self.server.check(body=body).status, 200)

    def test_body_must_be_an_object(self):
        for body in (b'[]', b'[{"user_id": "a"}]', b'"user"', b'5', b'null', b'true'):
            with self.subTest(body=body):
                self.assertErrorShape(self.server.check(body=body), 400, "INVALID_REQUEST")

    def test_wrong_types(self):
        cases = [
            {"user_id": 5}, {"user_id": True}, {"user_id": ["a"]}, {"user_id": {"a": "b"}},
            {"api_key": 1}, {"endpoint": ["/a"]}, {"method": {}}, {"tier": 1.5},
            {"ip_address": 167772161}, {"ip_address": ["10.0.0.1"]},
            {"headers": []}, {"headers": "x-client: mobile"}, {"headers": 1},
            {"headers": {"x-client": 1}}, {"headers": {"x-client": ["mobile"]}},
            {"headers": {"x-client": {"v": "mobile"}}}, {"headers": {"x-client": True}},
        ]
        for body in cases:
            with self.subTest(body=body):
                body = dict(body, **({} if "user_id" in body else {"user_id": unique()}))
                self.assertErrorShape(self.server.check(body=body), 400, "INVALID_REQUEST")

    def test_invalid_ip_address(self):
        for ip in ("999.1.1.1", "abc", "10.0.0.0/8", "1.2.3", "1.2.3.4.5", "::g", "1.2.3.4 ",
                   " 1.2.3.4", "2001:db8::1::2", "localhost", "1.2.3.-4"):
            with self.subTest(ip=ip):
                self.assertErrorShape(self.server.check(user_id=unique(), ip_address=ip), 400,
                                      "INVALID_REQUEST")
        # Valid spellings are fine, and an empty string is an absent attribute.
        for ip in ("10.0.0.1", "2001:db8::1", "::1", "::ffff:10.0.0.1", ""):
            with self.subTest(ip=ip):
                self.assertEqual(self.server.check(user_id=unique(), ip_address=ip).status, 200)

    def test_invalid_utf8(self):
        bodies = [
            b'{"user_id": "\xff\xfe"}',                     # bytes that never appear in UTF-8
            b'{"user_id": "\xc0\xaf"}',                     # overlong encoding of "/"
            b'{"user_id": "\xed\xa0\x80"}',                 # an encoded UTF-16 surrogate
            b'{"user_id": "a\xe2\x82"}',                    # truncated sequence
            b'{"user_id": "\xf4\x90\x80\x80"}',             # above U+10FFFF
            b'{"us\xe9r_id": "a"}',                         # Latin-1 in a key
            b'{"user_id": "a", "headers": {"x": "\x80"}}',  # in a header value
            b'{"user_id": "a", "colour": "\xfe"}',          # even in an ignored field
        ]
        for body in bodies:
            with self.subTest(body=body):
                self.assertErrorShape(self.server.check(body=body), 400, "INVALID_REQUEST")
        # Valid multi-byte UTF-8 is fine.
        res = self.server.check(body='{"user_id": "Zoë ☃ 𝄞"}'.encode("utf-8"))
        self.assertEqual(res.status, 200, res)


class RoutingErrorsTest(ErrorsTestCase):
    def test_unknown_path_is_404(self):
        for method, path in (("GET", "/"), ("GET", "/nope"), ("POST", "/v1/ratelimit"),
                             ("POST", "/v1/ratelimit/check/extra"),
                             ("POST", "/v1/ratelimit/checks"),
                             ("GET", "/HEALTH"), ("GET", "/health/"), ("DELETE", "/v2/x")):
            with self.subTest(method=method, path=path):
                self.assertErrorShape(self.server.request(method, path), 404, "NOT_FOUND")

    def test_query_string_is_not_part_of_the_path(self):
        self.assertEqual(self.server.get("/health?verbose=1").status, 200)
        res = self.server.request("POST", "/v1/ratelimit/check?x=1", body={"user_id": unique()})
        self.assertEqual(res.status, 200, res)

    def test_wrong_method_is_405_with_allow(self):
        cases = [("GET", "/v1/ratelimit/check", "POST"), ("PUT", "/v1/ratelimit/check", "POST"),
                 ("DELETE", "/v1/ratelimit/check", "POST"),
                 ("PATCH", "/v1/ratelimit/check", "POST"),
                 ("POST", "/health", "GET"), ("DELETE", "/health", "GET"),
                 ("POST", "/healthcheck", "GET"), ("PUT", "/metrics", "GET"),
                 ("POST", "/metrics", "GET")]
        for method, path, allowed in cases:
            with self.subTest(method=method, path=path):
                res = self.server.request(method, path, body=b"{}" if method != "GET" else None)
                self.assertErrorShape(res, 405, "METHOD_NOT_ALLOWED")
                allow = [m.strip() for m in res.header("Allow", "").split(",")]
                self.assertIn(allowed, allow, res)


class SizeLimitTest(ErrorsTestCase):
    def test_body_of_exactly_64_kib_is_accepted(self):
        head = b'{"user_id": "' + unique().encode() + b'", "pad": "'
        body = head + b"x" * (65536 - len(head) - 2) + b'"}'
        self.assertEqual(len(body), 65536)
        res = self.server.check(body=body)
        self.assertEqual(res.status, 200, res)

    def test_body_over_64_kib_is_413(self):
        head = b'{"user_id": "' + unique().encode() + b'", "pad": "'
        body = head + b"x" * (65537 - len(head) - 2) + b'"}'
        self.assertEqual(len(body), 65537)
        res = raw_exchange(self.server, check_request(body))
        self.assertIsNotNone(res, "connection closed without a 413")
        self.assertErrorShape(res, 413, "PAYLOAD_TOO_LARGE")

    def test_large_bodies_are_413(self):
        for size in (100_000, 1 << 20, 8 << 20):
            with self.subTest(size=size):
                # The client writes its whole body before reading (the server may refuse early
                # and stop reading: a failed write is fine, the 413 must still be readable).
                res = raw_exchange(self.server, check_request(b" " * size))
                self.assertIsNotNone(res, "connection closed without a 413")
                self.assertErrorShape(res, 413, "PAYLOAD_TOO_LARGE")

    def test_announced_length_over_64_kib_is_refused_before_the_body(self):
        res = raw_exchange(self.server, CHECK_HEAD + b"Content-Length: 70000\r\n\r\n")
        self.assertIsNotNone(res)
        self.assertErrorShape(res, 413, "PAYLOAD_TOO_LARGE")

    def test_chunked_body_over_64_kib_is_413(self):
        chunk = b"x" * 0x8000
        payload = (CHUNKED_HEAD + b"\r\n" + (b"8000\r\n" + chunk + b"\r\n") * 3 + b"0\r\n\r\n")
        res = raw_exchange(self.server, payload)
        self.assertIsNotNone(res)
        self.assertErrorShape(res, 413, "PAYLOAD_TOO_LARGE")

    def test_small_chunked_body_is_accepted(self):
        body = b'{"user_id": "' + unique().encode() + b'"}'
        payload = (CHUNKED_HEAD + b"\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
        res = raw_exchange(self.server, payload)
        self.assertEqual(res.status, 200, res)

    def test_header_block_over_16_kib_is_431(self):
        for extra in (b"X-Big: " + b"a" * 17_000 + b"\r\n",
                      b"".join(b"X-Part-%d: %s\r\n" % (i, b"b" * 2000) for i in range(10)),
                      b"X-Huge: " + b"c" * 200_000 + b"\r\n"):
            with self.subTest(size=len(extra)):
                res = raw_exchange(self.server, check_request(extra=extra))
                self.assertIsNotNone(res, "connection closed without a 431")
                self.assertEqual(res.status, 431, res)
                self.assertEqual(res.json()["error"]["code"], "HEADERS_TOO_LARGE", res)
                self.assertTrue(res.json()["error"]["message"])

    def test_header_block_under_16_kib_is_accepted(self):
        res = raw_exchange(self.server, check_request(extra=b"X-Big: " + b"a" * 12_000 + b"\r\n"))
        self.assertEqual(res.status, 200, res)

    def test_more_than_100_header_fields_is_431(self):
        # check_request sends Host, Content-Type and Content-Length: 3 + 98 = 101 fields.
        extra = b"".join(b"X-F%d: v\r\n" % i for i in range(98))
        res = raw_exchange(self.server, check_request(extra=extra))
        self.assertIsNotNone(res, "connection closed without a 431")
        self.assertEqual(res.status, 431, res)
        # 1000 tiny fields: about 6 KiB in all, under the size limit but far over 100 fields.
        extra = b"".join(b"A: b\r\n" for _ in range(1000))
        res = raw_exchange(self.server, check_request(extra=extra))
        self.assertIsNotNone(res, "connection closed without a 431")
        self.assertEqual(res.status, 431, res)

    def test_exactly_100_header_fields_is_accepted(self):
        extra = b"".join(b"X-F%d: v\r\n" % i for i in range(97))
        res = raw_exchange(self.server, check_request(extra=extra))
        self.assertEqual(res.status, 200, res)


class MalformedHttpTest(ErrorsTestCase):
    def test_garbage_bytes_get_400_or_a_closed_connection(self):
        payloads = [
            b"\x00\x01\x02garbage\r\n\r\n",
            b"HELLO WORLD\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
            b"GET /he\x00alth HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /v1/ratelimit/check HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
            b"POST /v1/ratelimit/check HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
            b"POST /v1/ratelimit/check HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Content-Length: 6\r\n\r\n123456",
            b"POST /v1/ratelimit/check HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\nabc\r\n0\r\n\r\n",
            # The start of a TLS ClientHello.
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",
            bytes((i * 37 + 11) % 256 for i in range(4096)),
            b"\r\n" * 5000,
        ]
        for payload in payloads:
            with self.subTest(payload=payload[:40]):
                self.assertBadRequestOrClosed(raw_exchange(self.server, payload))

    def test_a_closed_half_request_does_not_hurt(self):
        for partial in (b"POST /v1/ratelimit/check HTTP/1.1\r\nHost: x\r\nContent-Len",
                        check_request(b'{"user_id": "abc"}')[:-5], b"G"):
            with self.server.connect() as s:
                s.sendall(partial)
            self.assertServes()

    def test_no_leak_after_many_bad_connections(self):
        pid = self.server.proc.pid
        fd_dir = f"/proc/{pid}/fd"
        if not os.path.isdir(fd_dir):
            self.skipTest("no /proc")
        self.assertServes()
        baseline = len(os.listdir(fd_dir))
        for i in range(200):
            payload = [b"GARBAGE\r\n\r\n", check_request(extra=b"X: " + b"a" * 17_000 + b"\r\n"),
                       b"POST /v1/ratelimit/check HTTP/1.1\r\n"][i % 3]
            with self.server.connect() as s:
                s.sendall(payload)
                if i % 3 != 2:
                    read_raw_response(s)
        # Every connection was closed by the client or the server: the descriptors come back.
        poll(lambda: len(os.listdir(fd_dir)) <= baseline + 2, message="file descriptors freed")


class HttpProtocolTest(ErrorsTestCase):
    """Plain HTTP/1.1 framing that every client relies on (CONTRACT: where silent, what a user
    of nginx would expect)."""

    def check_payload(self, user, version=b"HTTP/1.1", extra=b""):
        body = b'{"user_id": "%s"}' % user.encode()
        return (b"POST /v1/ratelimit/check " + version + b"\r\nHost: x\r\n"
                b"Content-Length: %d\r\n" % len(body) + extra + b"\r\n" + body)

    def test_pipelined_requests_are_answered_in_order(self):
        user = unique()
        with RawConnection(self.server) as c:
            c.send(self.check_payload(user) * 3)
            for remaining in (999999, 999998, 999997):
                res = c.read_response()
                self.assertEqual(res.status, 200, res)
                self.assertEqual(res.json()["remaining"], remaining, res)

    def test_connection_close_is_honoured(self):
        with RawConnection(self.server) as c:
            c.send(self.check_payload(unique(), extra=b"Connection: close\r\n"))
            res = c.read_response()
            self.assertEqual(res.status, 200, res)
            self.assertIn("close", res.header("Connection", "").lower(), res)
            self.assertTrue(c.closed_by_server(self.check_payload(unique())),
                            "a request after 'Connection: close' was answered")

    def test_http10_without_keep_alive_is_closed(self):
        with RawConnection(self.server) as c:
            c.send(self.check_payload(unique(), version=b"HTTP/1.0"))
            res = c.read_response()
            self.assertEqual(res.status, 200, res)
            self.assertTrue(c.closed_by_server(self.check_payload(unique(), version=b"HTTP/1.0")),
                            "an HTTP/1.0 connection without keep-alive was kept open")

    # BUG (found by this suite, in the hand-written response serializer of commit f19a7c3; the
    # binary built before it passes): an HTTP/1.0 client asking for keep-alive gets no
    # "Connection: keep-alive" back, so it must take the connection as closing (RFC 9112 §9.3),
    # yet the server keeps it open (until the 10 s header timeout) and answers further requests
    # on it. ApacheBench -k, for one, then waits for a close that never comes. Expected:
    # "Connection: keep-alive" in the response (as nginx), or the connection closed.
    def test_http10_keep_alive_is_acknowledged_or_closed(self):
        keep = b"Connection: keep-alive\r\n"
        with RawConnection(self.server) as c:
            c.send(self.check_payload(unique(), version=b"HTTP/1.0", extra=keep))
            res = c.read_response()
            self.assertEqual(res.status, 200, res)
            acknowledged = "keep-alive" in res.header("Connection", "").lower()
            closed = c.closed_by_server(self.check_payload(unique(), version=b"HTTP/1.0",
                                                           extra=keep))
            self.assertNotEqual(acknowledged, closed,
                                f"keep-alive acknowledged: {acknowledged}, connection closed: "
                                f"{closed}; response: {res!r}")

    # BUG (found by this suite): a response to HEAD carries a body (RFC 9110 §9.3.2: it must
    # not), so on a keep-alive connection the next response starts with the stray body bytes.
    # Expected: HEAD answered with headers only (whatever the status: 405, or 200 as for GET).
    def test_head_response_has_no_body(self):
        for path in ("/health", "/v1/ratelimit/check", "/nope"):
            with self.subTest(path=path), RawConnection(self.server) as c:
                c.send(b"HEAD " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n"
                       b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\n")
                c.read_response(head_only=True)
                res = c.read_response()  # must be the GET's response
                self.assertEqual((res.status, res.body), (200, b"OK"), res)


class SlowClientTest(ErrorsTestCase):
    def test_slowloris_does_not_stop_other_clients(self):
        slow = []
        try:
            for i in range(50):
                s = self.server.connect()
                # A partial header block, then nothing.
                s.sendall(b"POST /v1/ratelimit/check HTTP/1.1\r\nHost: x\r\nX-Slow-%d: a" % i)
                slow.append(s)
            for _ in range(10):
                self.assertServes()
            # Dribble one more byte on each, and still everybody else is served.
            for s in slow:
                s.sendall(b"b")
            for _ in range(10):
                self.assertServes()
            self.assertEqual(self.server.get("/health").status, 200)
        finally:
            for s in slow:
                s.close()

    def test_slow_body_does_not_stop_other_clients(self):
        slow = []
        try:
            for _ in range(20):
                s = self.server.connect()
                s.sendall(CHECK_HEAD + b"Content-Length: 100\r\n\r\n{\"user_id\": ")
                slow.append(s)
            for _ in range(10):
                self.assertServes()
        finally:
            for s in slow:
                s.close()

    def test_idle_keep_alive_connections_do_not_block(self):
        conns = []
        try:
            for _ in range(20):
                s = self.server.connect()
                s.sendall(check_request(b'{"user_id": "keepalive"}'))
                self.assertEqual(read_raw_response(s).status, 200)
                conns.append(s)  # kept open, idle
            for _ in range(5):
                self.assertServes()
            # And they are still usable for a second request.
            conns[0].sendall(check_request(b'{"user_id": "keepalive"}'))
            self.assertEqual(read_raw_response(conns[0]).status, 200)
        finally:
            for s in conns:
                s.close()


if __name__ == "__main__":
    unittest.main()


def _cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _open_files_limit(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3]), int(line.split()[4])
    raise AssertionError("no open files limit")


class FileDescriptorLimitTest(unittest.TestCase):
    """Running out of file descriptors: the acceptor backs off instead of spinning a core, and
    serves again once descriptors are free; the soft limit is raised to the hard one at start."""

    def test_soft_limit_is_raised_to_the_hard_one(self):
        def low_soft_limit():
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))

        with SluiceServer(preexec_fn=low_soft_limit) as server:
            soft, hard = _open_files_limit(server.proc.pid)
            self.assertEqual(soft, hard)

    def test_exhausted_descriptors_do_not_spin_the_acceptor(self):
        limit = 64

        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        with SluiceServer(preexec_fn=low_limit) as server:
            clients = []
            try:
                # More connections than the server has descriptors: it accepts what it can,
                # the rest wait in the listen backlog.
                for _ in range(limit + 16):
                    clients.append(socket.create_connection((server.host, server.port), 2))
                time.sleep(0.5)  # the acceptor meets EMFILE and backs off
                before = _cpu_seconds(server.proc.pid)
                time.sleep(2)
                used = _cpu_seconds(server.proc.pid) - before
                # A spinning acceptor burns the whole 2 s of a core; backing off, almost nothing.
                self.assertLess(used, 0.25, f"{used:.2f} s of CPU in 2 s while out of descriptors")
            finally:
                for c in clients:
                    c.close()
            # Descriptors are free again: the server accepts and answers (within the 1 s
            # maximum backoff).
            deadline = time.monotonic() + 10
            while True:
                try:
                    self.assertEqual(server.get("/health").status, 200)
                    break
                except (OSError, AssertionError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            self.assertIn(b"accept_failed", server.logs_bytes())
