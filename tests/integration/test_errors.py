"""Bad input against the real server: JSON and field errors, unknown paths and methods, size limits,
malformed HTTP, slow clients (CONTRACT §5 "Errors" and the limits at the top of §5), and hostile
framing: chunk extensions and trailers, request smuggling through Transfer-Encoding, Expect,
Host, absolute-form targets, empty lines before a request (see docs/robustness.md).

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


# --- Hostile HTTP (issue 10): framing attacks answered over raw sockets. -----------------------

SMUGGLED = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
CHECK_LINE = b"POST /v1/ratelimit/check HTTP/1.1\r\nHost: sluice\r\n"


def json_chunked(body, extension=b""):
    """`body` as one chunk (with `extension` after its size) and the last chunk, no trailer."""
    return b"%x" % len(body) + extension + b"\r\n" + body + b"\r\n0\r\n"


class ChunkedLimitsTest(ErrorsTestCase):
    """Chunk extensions and trailer fields count against the header limits (16 KiB, 100 fields):
    neither can make the server buffer without bound."""

    def body(self):
        return b'{"user_id": "' + unique().encode() + b'"}'

    def assert431(self, payload):
        res = raw_exchange(self.server, payload)
        self.assertIsNotNone(res, "connection closed without a 431")
        self.assertErrorShape(res, 431, "HEADERS_TOO_LARGE")
        self.assertIn("close", res.header("Connection", "").lower(), res)

    def test_small_extensions_and_trailers_are_accepted(self):
        payload = (CHUNKED_HEAD + b"\r\n" + json_chunked(self.body(), b";name=value;flag") +
                   b"X-Trailer: a\r\nX-Other: b\r\n\r\n")
        res = raw_exchange(self.server, payload)
        self.assertEqual(res.status, 200, res)

    def test_huge_chunk_extension_is_431(self):
        ext = b";e=" + b"a" * (1 << 20)
        self.assert431(CHUNKED_HEAD + b"\r\n" + json_chunked(self.body(), ext) + b"\r\n")

    def test_extensions_over_many_chunks_add_up(self):
        # 8 chunks of one byte, each with a 4 KiB extension: 32 KiB of extensions in all, each
        # line well under 16 KiB.
        body = self.body()
        chunks = b"".join(b"1;e=" + b"a" * 4096 + b"\r\n" + body[i:i + 1] + b"\r\n"
                          for i in range(8))
        rest = body[8:]
        payload = (CHUNKED_HEAD + b"\r\n" + chunks + b"%x\r\n" % len(rest) + rest +
                   b"\r\n0\r\n\r\n")
        self.assert431(payload)

    def test_huge_trailer_is_431(self):
        trailer = b"X-Trailer: " + b"a" * (1 << 20) + b"\r\n"
        self.assert431(CHUNKED_HEAD + b"\r\n" + json_chunked(self.body()) + trailer + b"\r\n")

    def test_header_and_trailer_share_16_kib(self):
        # 10 KiB of header and 10 KiB of trailer: each fits alone, not together.
        head = CHUNKED_HEAD + b"X-Big: " + b"h" * 10_000 + b"\r\n\r\n"
        trailer = b"X-Trailer: " + b"t" * 10_000 + b"\r\n\r\n"
        self.assert431(head + json_chunked(self.body()) + trailer)

    def test_too_many_trailer_fields_is_431(self):
        trailer = b"".join(b"T%d: v\r\n" % i for i in range(200))
        self.assert431(CHUNKED_HEAD + b"\r\n" + json_chunked(self.body()) + trailer + b"\r\n")

    def test_trailer_fields_are_not_merged_into_the_header(self):
        # A trailer cannot turn a keep-alive request into a closing one, or anything else.
        with RawConnection(self.server) as c:
            c.send(CHUNKED_HEAD + b"\r\n" + json_chunked(self.body()) +
                   b"Connection: close\r\n\r\n")
            res = c.read_response()
            self.assertEqual(res.status, 200, res)
            self.assertNotIn("close", res.header("Connection", "").lower(), res)
            c.send(check_request(self.body()))
            self.assertEqual(c.read_response().status, 200)


def _peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


class ChunkedMemoryTest(unittest.TestCase):
    """A fresh server (its peak RSS untouched by other tests) fed 64 MiB of trailer."""

    def test_a_64_mib_trailer_does_not_grow_the_server(self):
        with SluiceServer(files={"rules.yaml": RULES}, rules=["rules.yaml"]) as server:
            if not os.path.exists(f"/proc/{server.proc.pid}/status"):
                self.skipTest("no /proc")
            before = _peak_rss_kib(server.proc.pid)
            with server.connect() as s:
                try:
                    s.sendall(CHUNKED_HEAD + b"\r\n" + json_chunked(b'{"user_id": "rss"}') +
                              b"X-Trailer: ")
                    piece = b"a" * (1 << 20)
                    for _ in range(64):
                        s.sendall(piece)
                    s.sendall(b"\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # refused early: what we want
                res = read_raw_response(s)
            self.assertIsNotNone(res, "connection closed without a 431")
            self.assertEqual(res.status, 431, res)
            grown_mib = (_peak_rss_kib(server.proc.pid) - before) / 1024
            self.assertLess(grown_mib, 16, f"peak RSS grew by {grown_mib:.1f} MiB")
            self.assertEqual(server.check(user_id="after").status, 200)


class SmugglingTest(ErrorsTestCase):
    """RFC 9112 §6.1 and §6.3: a Transfer-Encoding must end in (exactly one) chunked, else the
    body's length is unknown: 400 and close. Codings Sluice does not apply: 501 and close.
    Either way, what follows on the connection is never read as a request."""

    def assertRefusedAndClosed(self, payload, status, code):
        with RawConnection(self.server) as c:
            c.send(payload)
            res = c.read_response()
            self.assertIsNotNone(res, "closed without an answer")
            self.assertErrorShape(res, status, code)
            self.assertIn("close", res.header("Connection", "").lower(), res)
            # The smuggled GET /metrics (or a probe) is never answered.
            self.assertTrue(c.closed_by_server(check_request()),
                            "a request after the refused one was answered")

    def test_transfer_encoding_not_ending_in_chunked_is_400(self):
        for te in (b"xchunked", b"", b" ", b"chunked, gzip", b"gzip", b"chunked, chunked",
                   b"chunked;foo=bar", b"identity", b"chunkedx", b","):
            with self.subTest(te=te):
                payload = CHECK_LINE + b"Transfer-Encoding: " + te + b"\r\n\r\n" + SMUGGLED
                self.assertRefusedAndClosed(payload, 400, "INVALID_REQUEST")

    def test_transfer_encoding_and_content_length_is_400(self):
        # Transfer-Encoding first: the parser alone would read Content-Length's body.
        payload = (CHECK_LINE + b"Transfer-Encoding: xchunked\r\n" +
                   b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED + SMUGGLED)
        self.assertRefusedAndClosed(payload, 400, "INVALID_REQUEST")

    def test_chunked_with_content_length_is_400(self):
        body = json_chunked(b'{"user_id": "te-cl"}') + b"\r\n"
        for fields in (b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                       b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"):
            with self.subTest(fields=fields):
                self.assertRefusedAndClosed(CHECK_LINE + fields + b"\r\n" + body + SMUGGLED, 400,
                                            "INVALID_REQUEST")

    def test_two_transfer_encoding_fields_are_one_list(self):
        payload = (CHECK_LINE + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n" +
                   json_chunked(b'{"user_id": "te2"}') + b"\r\n" + SMUGGLED)
        self.assertRefusedAndClosed(payload, 400, "INVALID_REQUEST")

    def test_unknown_codings_are_501(self):
        for te in (b"gzip, chunked", b"deflate,chunked", b"x-custom, chunked",
                   b"gzip;q=1, chunked"):
            with self.subTest(te=te):
                payload = (CHECK_LINE + b"Transfer-Encoding: " + te + b"\r\n\r\n" +
                           json_chunked(b'{"user_id": "gz"}') + b"\r\n" + SMUGGLED)
                self.assertRefusedAndClosed(payload, 501, "NOT_IMPLEMENTED")
        # Split over two fields, the list is the same.
        payload = (CHECK_LINE + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n" +
                   json_chunked(b'{"user_id": "gz"}') + b"\r\n" + SMUGGLED)
        self.assertRefusedAndClosed(payload, 501, "NOT_IMPLEMENTED")

    def test_transfer_encoding_in_http10_is_400(self):
        payload = (b"POST /v1/ratelimit/check HTTP/1.0\r\nHost: x\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n" + json_chunked(b'{"user_id": "h10"}') +
                   b"\r\n" + SMUGGLED)
        self.assertRefusedAndClosed(payload, 400, "INVALID_REQUEST")

    def test_plain_chunked_still_works_and_keeps_the_connection(self):
        with RawConnection(self.server) as c:
            c.send(CHECK_LINE + b"Transfer-Encoding: Chunked\r\n\r\n" +
                   json_chunked(b'{"user_id": "' + unique().encode() + b'"}') + b"\r\n" +
                   SMUGGLED)
            self.assertEqual(c.read_response().status, 200)
            # The request after a correctly framed one is a request, and is answered.
            self.assertEqual(c.read_response().status, 200)


class ExpectContinueTest(ErrorsTestCase):
    """RFC 9110 §10.1.1: `Expect: 100-continue` gets an interim 100 before the body is sent,
    unless the request is refused from its header alone."""

    def head(self, length, extra=b""):
        return (CHECK_LINE + b"Content-Type: application/json\r\nExpect: 100-continue\r\n" +
                b"Content-Length: %d\r\n" % length + extra + b"\r\n")

    def read_interim(self, c):
        c.sock.settimeout(3)  # the 100 comes at once; without it clients wait (curl: 1 s)
        try:
            return c.read_response()
        except socket.timeout:
            self.fail("no 100 Continue before the body was sent")
        finally:
            c.sock.settimeout(10)

    def test_100_continue_before_the_body(self):
        body = b'{"user_id": "' + unique().encode() + b'"}'
        with RawConnection(self.server) as c:
            c.send(self.head(len(body)))
            interim = self.read_interim(c)
            self.assertEqual(interim.status, 100, interim)
            self.assertEqual(interim.body, b"")
            c.send(body)
            res = c.read_response()
            self.assertEqual(res.status, 200, res)
            # Keep-alive as usual: a second request on the connection.
            c.send(check_request(body))
            self.assertEqual(c.read_response().status, 200)

    def test_100_continue_for_a_chunked_body(self):
        body = b'{"user_id": "' + unique().encode() + b'"}'
        with RawConnection(self.server) as c:
            c.send(CHECK_LINE + b"Expect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n")
            self.assertEqual(self.read_interim(c).status, 100)
            c.send(json_chunked(body) + b"\r\n")
            self.assertEqual(c.read_response().status, 200)

    def test_body_over_the_limit_is_413_without_100(self):
        with RawConnection(self.server) as c:
            c.send(self.head(70_000))
            res = c.read_response()
            self.assertErrorShape(res, 413, "PAYLOAD_TOO_LARGE")

    def test_a_client_that_does_not_wait_is_served(self):
        body = b'{"user_id": "' + unique().encode() + b'"}'
        with RawConnection(self.server) as c:
            c.send(self.head(len(body)) + body)
            res = c.read_response()
            if res.status == 100:  # allowed, though the body had arrived already
                res = c.read_response()
            self.assertEqual(res.status, 200, res)


class RfcDetailsTest(ErrorsTestCase):
    def test_head_works_like_get_without_a_body(self):
        for path, content_type in (("/health", "application/json"),
                                   ("/metrics", "text/plain"), ("/healthcheck", "text/plain")):
            with self.subTest(path=path), RawConnection(self.server) as c:
                c.send(b"HEAD " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n"
                       b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\n")
                head = c.read_response(head_only=True)
                self.assertEqual(head.status, 200, head)
                self.assertTrue(head.header("Content-Type", "").startswith(content_type), head)
                self.assertGreater(int(head.header("Content-Length", "0")), 0, head)
                res = c.read_response()  # the GET's response, not stray body bytes
                self.assertEqual((res.status, res.body), (200, b"OK"), res)

    def test_get_only_endpoints_allow_head(self):
        res = self.server.request("POST", "/health", body=b"{}")
        self.assertErrorShape(res, 405, "METHOD_NOT_ALLOWED")
        allow = [m.strip() for m in res.header("Allow", "").split(",")]
        self.assertEqual(sorted(allow), ["GET", "HEAD"], res)
        with RawConnection(self.server) as c:
            c.send(b"HEAD /v1/ratelimit/check HTTP/1.1\r\nHost: x\r\n\r\n")
            res = c.read_response(head_only=True)
            self.assertEqual(res.status, 405, res)
            self.assertEqual(res.header("Allow"), "POST", res)

    def test_host_is_required_once_in_http11(self):
        cases = [
            b"GET /health HTTP/1.1\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            b"GET /health HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: a/b\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: a@b\r\n\r\n",
        ]
        for payload in cases:
            with self.subTest(payload=payload), RawConnection(self.server) as c:
                c.send(payload)
                res = c.read_response()
                self.assertIsNotNone(res)
                self.assertErrorShape(res, 400, "INVALID_REQUEST")
                self.assertTrue(c.closed_by_server(check_request()))
        # HTTP/1.0 needs no Host; ports, IPv6 literals and an empty value are fine.
        for payload in (b"GET /health HTTP/1.0\r\n\r\n",
                        b"GET /health HTTP/1.1\r\nHost: sluice.example:8080\r\n\r\n",
                        b"GET /health HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
                        b"GET /health HTTP/1.1\r\nHost:\r\n\r\n"):
            with self.subTest(payload=payload):
                self.assertEqual(raw_exchange(self.server, payload).status, 200)

    def test_absolute_form_targets_route_by_path(self):
        body = b'{"user_id": "' + unique().encode() + b'"}'
        res = raw_exchange(self.server, b"POST http://sluice.example/v1/ratelimit/check HTTP/1.1"
                           b"\r\nHost: sluice.example\r\nContent-Length: %d\r\n\r\n" % len(body)
                           + body)
        self.assertEqual(res.status, 200, res)
        self.assertTrue(res.json()["allowed"], res)
        for target, status in ((b"http://x:8080/health?verbose=1", 200),
                               (b"HTTP://X/healthcheck", 200), (b"https://x/metrics", 200),
                               (b"http://x", 404), (b"http://x?/health", 404),
                               (b"http://x/nope", 404)):
            with self.subTest(target=target):
                res = raw_exchange(self.server, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(res.status, status, res)

    def test_empty_lines_before_the_request_line_are_ignored(self):
        get = b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\n"
        for payload in (b"\r\n" + get, b"\r\n\r\n" + get, b"\n" + get):
            with self.subTest(payload=payload):
                res = raw_exchange(self.server, payload)
                self.assertIsNotNone(res)
                self.assertEqual((res.status, res.body), (200, b"OK"), res)
        with RawConnection(self.server) as c:
            # A CRLF after a body (old clients send one), and a CRLF in a packet of its own.
            c.send(check_request() + b"\r\n" + get)
            self.assertEqual(c.read_response().status, 200)
            self.assertEqual(c.read_response().body, b"OK")
            c.send(b"\r")
            time.sleep(0.05)
            c.send(b"\n")
            time.sleep(0.05)
            c.send(get)
            self.assertEqual(c.read_response().body, b"OK")


class NulInStringsTest(ErrorsTestCase):
    def test_ip_address_with_nul_is_400(self):
        for ip in ("1.2.3.4\u0000junk", "1.2.3.4\u0000", "::1\u0000", "\u00001.2.3.4"):
            with self.subTest(ip=ip):
                res = self.server.check(user_id=unique(), ip_address=ip)
                self.assertErrorShape(res, 400, "INVALID_REQUEST")
                self.assertIn("ip_address", res.json()["error"]["message"])

    def test_nul_in_other_attributes_is_kept_whole(self):
        # Attribute values are opaque bytes: a NUL neither truncates a value nor merges its
        # counter with a shorter one.
        user = unique()
        first = self.server.check(user_id=user + "\u0000x")
        self.assertEqual(first.status, 200, first)
        self.assertEqual(first.json()["remaining"], 999999, first)
        res = self.server.check(user_id=user)
        self.assertEqual(res.json()["remaining"], 999999, res)
        res = self.server.check(user_id=user + "\u0000x", headers={"x\u0000": "v\u0000"})
        self.assertEqual(res.json()["remaining"], 999998, res)


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
