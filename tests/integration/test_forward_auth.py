"""GET /v1/ratelimit/auth, the forward-auth endpoint (CONTRACT §10): the request attributes from
header fields, 204/429/403 with the limit headers of §5 and no body.

ForwardAuthTest asks the endpoint directly, as each gateway would (methods, Envoy's path_prefix
form, Traefik's and nginx's fallback fields). NginxAuthRequestTest puts a real nginx in front of a
small upstream server with the auth_request config of docs/gateways.md (NGINX_CONFIG below is that
config) and checks what a client and the upstream see. It skips only when nginx is not installed
(scripts/install-deps.sh installs nginx-light, which has auth_request).

Every test uses its own user ids, and every rule is a sliding_window_log of 1 h (no window
boundary to fall inside a test): no test shares a counter or depends on the clock.
"""

import http.client
import http.server
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from sluice_server import (REQUEST_TIMEOUT_S, START_TIMEOUT_S, STOP_TIMEOUT_S, ServerTestCase,
                           free_port, unique)

RULES = """
rules:
  - id: fa-user
    match: {endpoint: "/fa/user*"}
    key: [user_id]
    limit: 2
    window: 1h
    algorithm: sliding_window_log
  - id: fa-method
    match: {endpoint: /fa/method, method: DELETE}
    key: [user_id]
    limit: 1
    window: 1h
    algorithm: sliding_window_log
  - id: fa-header
    match: {endpoint: /fa/header, headers.x-client: mobile}
    key: [user_id]
    limit: 1
    window: 1h
    algorithm: sliding_window_log
  - id: fa-ip
    match: {endpoint: /fa/ip}
    key: [ip_address]
    limit: 1
    window: 1h
    algorithm: sliding_window_log
  - id: fa-cost
    match: {endpoint: /fa/cost}
    key: [user_id]
    limit: 5
    window: 1h
    algorithm: sliding_window_log
  - id: fa-tier
    match: {endpoint: /fa/tier, tier: free, api_key: "k-*"}
    key: [api_key]
    limit: 1
    window: 1h
    algorithm: sliding_window_log
  # Behind nginx.
  - id: ng-api
    match: {endpoint: "/api/*"}
    key: [user_id]
    limit: 2
    window: 1h
    algorithm: sliding_window_log
  - id: ng-exact
    match: {endpoint: /exact}
    key: [user_id]
    limit: 1
    window: 1h
    algorithm: sliding_window_log
  - id: ng-delete
    match: {endpoint: "/del/*", method: DELETE}
    key: [user_id]
    limit: 1
    window: 1h
    algorithm: sliding_window_log
lists:
  deny:
    - {ip_address: 192.0.2.66, reason: abuse}
    # The nginx tests' second client address (loopback: any 127.x.y.z is this host).
    - {ip_address: 127.0.0.2, reason: test}
"""

LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
                 "RateLimit-Policy", "RateLimit")
AUTH = "/v1/ratelimit/auth"


class ForwardAuthTest(ServerTestCase):
    SERVER_FILES = {"rules.yaml": RULES}
    SERVER_RULES = ["rules.yaml"]

    def auth(self, headers, method="GET", path=AUTH, body=None):
        return self.server.request(method, path, body=body, headers=headers)

    def assertBodiless(self, res):
        self.assertEqual(res.body, b"", res)
        self.assertIsNone(res.header("Content-Type"), res)

    def test_allowed_then_throttled_with_headers_and_no_body(self):
        user = unique()
        for remaining in (1, 0):
            res = self.auth({"X-Sluice-User-Id": user, "X-Sluice-Endpoint": "/fa/user"})
            self.assertEqual(res.status, 204, res)
            self.assertBodiless(res)
            self.assertIsNone(res.header("Content-Length"), res)  # RFC 9110 §8.6
            self.assertEqual(res.header("X-RateLimit-Limit"), "2")
            self.assertEqual(res.header("X-RateLimit-Remaining"), str(remaining))
            self.assertTrue(res.header("X-RateLimit-Reset").isdigit(), res)
            self.assertEqual(res.header("RateLimit-Policy"), '"fa-user";q=2;w=3600')
            self.assertTrue(res.header("RateLimit").startswith(f'"fa-user";r={remaining};t='))
            self.assertIsNone(res.header("Retry-After"), res)
        res = self.auth({"X-Sluice-User-Id": user, "X-Sluice-Endpoint": "/fa/user"})
        self.assertEqual(res.status, 429, res)
        self.assertBodiless(res)
        self.assertEqual(res.header("Content-Length"), "0")
        self.assertGreaterEqual(int(res.header("Retry-After")), 1)
        self.assertEqual(res.header("X-RateLimit-Remaining"), "0")
        for name in LIMIT_HEADERS:
            self.assertIsNotNone(res.header(name), f"{name} missing in {res!r}")

    def test_no_rule_and_no_headers(self):
        res = self.auth({})
        self.assertEqual(res.status, 204, res)
        self.assertBodiless(res)
        self.assertNoLimitHeaders(res)

    def test_deny_listed_ip_is_403_without_body(self):
        res = self.auth({"X-Sluice-Ip": "192.0.2.66"})
        self.assertEqual(res.status, 403, res)
        self.assertBodiless(res)
        # The last X-Forwarded-For address is the client the gateway saw.
        res = self.auth({"X-Forwarded-For": "10.9.9.9, 192.0.2.66"})
        self.assertEqual(res.status, 403, res)
        # An earlier address is whatever the client wrote: not read.
        res = self.auth({"X-Forwarded-For": "192.0.2.66, 10.9.9.9"})
        self.assertEqual(res.status, 204, res)

    def test_any_method_and_head(self):
        # Gateways send the original request's method; a body, if any, is ignored.
        user = unique()
        statuses = []
        for method in ("POST", "PUT", "PATCH", "OPTIONS"):
            res = self.auth({"X-Sluice-User-Id": user, "X-Sluice-Endpoint": "/fa/user"},
                            method=method, body=b'{"user_id":"someone-else"}')
            statuses.append(res.status)
            self.assertBodiless(res)
        self.assertEqual(statuses, [204, 204, 429, 429])
        res = self.auth({"X-Sluice-User-Id": user, "X-Sluice-Endpoint": "/fa/user"},
                        method="HEAD")
        self.assertEqual(res.status, 429, res)
        self.assertEqual(res.header("X-RateLimit-Remaining"), "0")
        self.assertIsNotNone(res.header("Retry-After"))

    def test_method_and_header_attributes(self):
        user = unique()
        headers = {"X-Sluice-User-Id": user, "X-Sluice-Endpoint": "/fa/method",
                   "x-sluice-method": "delete"}  # method: case-insensitive in rules
        self.assertEqual(self.auth(headers).status, 204)
        self.assertEqual(self.auth(headers).status, 429)
        headers["x-sluice-method"] = "GET"  # the rule does not match
        self.assertEqual(self.auth(headers).status, 204)

        user = unique()
        headers = {"X-Sluice-User-Id": user, "X-Sluice-Endpoint": "/fa/header",
                   "X-SLUICE-HEADER-X-CLIENT": "mobile"}
        self.assertEqual(self.auth(headers).status, 204)
        self.assertEqual(self.auth(headers).status, 429)
        headers["X-SLUICE-HEADER-X-CLIENT"] = "web"
        self.assertEqual(self.auth(headers).status, 204)

    def test_api_key_and_tier(self):
        key = unique("k")
        headers = {"X-Sluice-Api-Key": key, "X-Sluice-Tier": "free", "X-Sluice-Endpoint": "/fa/tier"}
        self.assertEqual(self.auth(headers).status, 204)
        self.assertEqual(self.auth(headers).status, 429)

    def test_cost(self):
        user = unique()
        headers = {"X-Sluice-User-Id": user, "X-Sluice-Endpoint": "/fa/cost", "X-Sluice-Cost": "4"}
        res = self.auth(headers)
        self.assertEqual(res.status, 204, res)
        self.assertEqual(res.header("X-RateLimit-Remaining"), "1")
        headers["X-Sluice-Cost"] = "2"
        self.assertEqual(self.auth(headers).status, 429)
        headers["X-Sluice-Cost"] = "0"
        self.assertEqual(self.auth(headers).status, 204)

    def test_bad_cost_and_ip_are_400_error_objects(self):
        for headers in ({"X-Sluice-Cost": "-1"}, {"X-Sluice-Cost": "1.5"}, {"X-Sluice-Cost": "x"},
                        {"X-Sluice-Cost": "99999999999999999999"}, {"X-Sluice-Ip": "999.1.1.1"},
                        {"X-Sluice-Ip": "1.2.3.4:80"}, {"X-Forwarded-For": "1.2.3.4, junk"}):
            res = self.auth(headers)
            body = self.assertError(res, 400, "INVALID_REQUEST")
            self.assertIn(next(iter(headers)), body["error"]["message"], res)
        self.assertServes()

    def test_envoy_path_prefix_form(self):
        # ext_authz appends the original path (and query) to path_prefix and keeps the method;
        # it takes only a 200 as OK, so this form allows with 200 (no body).
        user = unique()
        path = f"{AUTH}/fa/method?x=1"
        res = self.auth({"X-Sluice-User-Id": user}, method="DELETE", path=path)
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.body, b"")
        self.assertEqual(res.header("RateLimit-Policy"), '"fa-method";q=1;w=3600')
        res = self.auth({"X-Sluice-User-Id": user}, method="DELETE", path=path)
        self.assertEqual(res.status, 429, res)
        self.assertEqual(res.body, b"")
        self.assertIsNotNone(res.header("Retry-After"))
        self.assertEqual(self.auth({"X-Sluice-User-Id": user}, method="GET", path=path).status,
                         200)
        # Not the endpoint: a longer name.
        self.assertError(self.auth({}, path=AUTH + "x"), 404, "NOT_FOUND")

    def test_traefik_and_nginx_fallbacks(self):
        user = unique()
        traefik = {"X-Sluice-User-Id": user, "X-Forwarded-Uri": "/fa/method?q=1",
                   "X-Forwarded-Method": "DELETE", "X-Forwarded-For": "198.51.100.1"}
        self.assertEqual(self.auth(traefik).status, 204)
        self.assertEqual(self.auth(traefik).status, 429)
        user = unique()
        nginx = {"X-Sluice-User-Id": user, "X-Original-URI": "/fa/method?q=2",
                 "X-Original-Method": "DELETE"}
        self.assertEqual(self.auth(nginx).status, 204)
        self.assertEqual(self.auth(nginx).status, 429)
        # The explicit field wins over the fallbacks.
        nginx["X-Sluice-Endpoint"] = "/fa/other"
        self.assertEqual(self.auth(nginx).status, 204)
        # The ip from X-Forwarded-For's last address keys a rule as X-Sluice-Ip does.
        ip = f"198.51.100.{os.getpid() % 250 + 1}"
        self.assertEqual(self.auth({"X-Forwarded-Uri": "/fa/ip",
                                    "X-Forwarded-For": f"1.1.1.1, {ip}"}).status, 204)
        self.assertEqual(self.auth({"X-Sluice-Endpoint": "/fa/ip", "X-Sluice-Ip": ip}).status, 429)


# --- nginx auth_request -----------------------------------------------------------------------

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK)
                                  else None)

# The process settings of the test (one foreground process, files in the test's folder), then the
# config of docs/gateways.md with SLUICE_ADDR, APP_ADDR and LISTEN_ADDR filled in.
NGINX_PROCESS = """
daemon off;
master_process off;
worker_processes 1;
pid TMP/nginx.pid;
error_log TMP/error.log info;
events { worker_connections 256; }
http {
    access_log TMP/access.log;
    client_body_temp_path TMP/body;
    proxy_temp_path TMP/proxy;
    fastcgi_temp_path TMP/fastcgi;
    uwsgi_temp_path TMP/uwsgi;
    scgi_temp_path TMP/scgi;
    include TMP/sluice.conf;
}
"""

# docs/gateways.md shows this text (with example addresses): keep the two the same.
NGINX_CONFIG = r"""
upstream sluice {
    server SLUICE_ADDR;
    keepalive 16;
}
upstream app {
    server APP_ADDR;
}

server {
    listen LISTEN_ADDR;

    location / {
        auth_request /_sluice;
        # Sluice's answer, kept for the client's response whatever it was.
        auth_request_set $sluice_status      $upstream_status;
        auth_request_set $sluice_limit       $upstream_http_x_ratelimit_limit;
        auth_request_set $sluice_remaining   $upstream_http_x_ratelimit_remaining;
        auth_request_set $sluice_reset       $upstream_http_x_ratelimit_reset;
        auth_request_set $sluice_policy      $upstream_http_ratelimit_policy;
        auth_request_set $sluice_ratelimit   $upstream_http_ratelimit;
        auth_request_set $sluice_retry_after $upstream_http_retry_after;
        # auth_request passes 2xx (allow), 401 and 403 on and turns every other status of the
        # subrequest into a 500: Sluice's 429, its 503 and an unreachable Sluice all arrive as 500.
        error_page 500 = @sluice_refused;
        error_page 403 = @sluice_refused;

        # Empty values (no rule applied) add no header.
        add_header X-RateLimit-Limit     $sluice_limit always;
        add_header X-RateLimit-Remaining $sluice_remaining always;
        add_header X-RateLimit-Reset     $sluice_reset always;
        add_header RateLimit-Policy      $sluice_policy always;
        add_header RateLimit             $sluice_ratelimit always;

        proxy_pass http://app;
    }

    location = /_sluice {
        internal;
        proxy_pass http://sluice/v1/ratelimit/auth;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        # Only the fields set here reach Sluice: a client cannot send its own X-Sluice-*.
        proxy_pass_request_headers off;
        proxy_set_header X-Sluice-Ip       $remote_addr;
        proxy_set_header X-Original-URI    $request_uri;
        proxy_set_header X-Original-Method $request_method;
        proxy_set_header X-Sluice-User-Id  $http_x_user_id;
        proxy_set_header X-Request-Id      $request_id;
    }

    location @sluice_refused {
        add_header X-RateLimit-Limit     $sluice_limit always;
        add_header X-RateLimit-Remaining $sluice_remaining always;
        add_header X-RateLimit-Reset     $sluice_reset always;
        add_header RateLimit-Policy      $sluice_policy always;
        add_header RateLimit             $sluice_ratelimit always;
        add_header Retry-After           $sluice_retry_after always;
        default_type application/json;
        # $upstream_status lists every try ("502, 429" when a first try failed): the last one
        # is Sluice's answer.
        if ($sluice_status ~ "429$") {
            return 429 '{"error":{"code":"RATE_LIMIT_EXCEEDED","message":"Rate limit exceeded."}}\n';
        }
        if ($sluice_status ~ "403$") {
            return 403 '{"error":{"code":"BLOCKED","message":"Request blocked."}}\n';
        }
        return 503 '{"error":{"code":"RATE_LIMITER_UNAVAILABLE","message":"Try again later."}}\n';
    }
}
"""


class DocsTest(unittest.TestCase):
    def test_docs_show_the_tested_config(self):
        # docs/gateways.md's nginx block is NGINX_CONFIG with example addresses.
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                            "gateways.md")
        with open(path, encoding="utf-8") as f:
            docs = f.read()
        start = docs.index("```nginx\n") + len("```nginx\n")
        shown = docs[start:docs.index("```", start)]
        expected = (NGINX_CONFIG.replace("SLUICE_ADDR", "127.0.0.1:8080")
                    .replace("APP_ADDR", "127.0.0.1:9000")
                    .replace("LISTEN_ADDR", "0.0.0.0:8000"))
        self.assertEqual(shown.strip(), expected.strip())


class Upstream:
    """The application behind nginx: answers 200 to anything, recording each request."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seen = []  # (method, path, headers dict lowercased, body)
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with upstream.lock:
                    upstream.seen.append((self.command, self.path,
                                          {k.lower(): v for k, v in self.headers.items()}, body))
                reply = b"from upstream"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def requests_of(self, user):
        with self.lock:
            return [r for r in self.seen if r[2].get("x-user-id") == user]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class Nginx:
    """A foreground nginx (`-c FILE -p PREFIX`) on a free loopback port, its files in a
    temporary folder; stopped with SIGQUIT (graceful), killed on a hang."""

    def __init__(self, sluice_port, app_port):
        self.tmp = tempfile.TemporaryDirectory(prefix="sluice-nginx-")
        self.dir = self.tmp.name
        self.sluice_port = sluice_port
        self.app_port = app_port
        self.proc = None
        self.port = None

    def write_config(self):
        with open(os.path.join(self.dir, "nginx.conf"), "w", encoding="utf-8") as f:
            f.write(NGINX_PROCESS.replace("TMP", self.dir))
        with open(os.path.join(self.dir, "sluice.conf"), "w", encoding="utf-8") as f:
            f.write(NGINX_CONFIG.replace("SLUICE_ADDR", f"127.0.0.1:{self.sluice_port}")
                    .replace("APP_ADDR", f"127.0.0.1:{self.app_port}")
                    .replace("LISTEN_ADDR", f"127.0.0.1:{self.port}"))

    def start(self):
        for _ in range(5):  # a parallel test may take the free port first
            self.port = free_port()
            self.write_config()
            log = open(os.path.join(self.dir, "stderr.log"), "ab")
            self.proc = subprocess.Popen(
                [NGINX, "-c", os.path.join(self.dir, "nginx.conf"), "-p", self.dir + "/"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            if self._wait_ready():
                return self
            self.proc.kill()
            self.proc.wait()
            if "Address already in use" not in self.logs():
                break
        logs = self.logs()
        self.tmp.cleanup()
        raise AssertionError(f"nginx did not start; log:\n{logs}")

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.connect()
                conn.close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def logs(self):
        out = []
        for name in ("stderr.log", "error.log"):
            try:
                with open(os.path.join(self.dir, name), encoding="utf-8", errors="replace") as f:
                    out.append(f.read()[-4000:])
            except OSError:
                pass
        return "\n".join(out)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(3)  # SIGQUIT: graceful shutdown
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.tmp.cleanup()

    def request(self, method, path, body=None, headers=None, source="127.0.0.1"):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S,
                                          source_address=(source, 0))
        try:
            conn.request(method, path, body=body, headers=headers or {})
            res = conn.getresponse()
            return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
        finally:
            conn.close()


@unittest.skipIf(NGINX is None, "nginx is not installed (scripts/install-deps.sh installs it)")
class NginxAuthRequestTest(ServerTestCase):
    SERVER_FILES = {"rules.yaml": RULES}
    SERVER_RULES = ["rules.yaml"]

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.upstream = Upstream()
        cls.nginx = Nginx(cls.server.port, cls.upstream.port)
        try:
            cls.nginx.start()
        except BaseException:
            cls.upstream.close()
            cls.server.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.nginx.stop()
        cls.upstream.close()
        super().tearDownClass()

    def send(self, method, path, user, body=None, headers=None, source="127.0.0.1"):
        hdrs = {"X-User-Id": user, **(headers or {})}
        return self.nginx.request(method, path, body=body, headers=hdrs, source=source)

    def assertLimitHeaders(self, headers, rule, limit, remaining):
        self.assertEqual(headers.get("x-ratelimit-limit"), str(limit), headers)
        self.assertEqual(headers.get("x-ratelimit-remaining"), str(remaining), headers)
        self.assertTrue(headers.get("x-ratelimit-reset", "").isdigit(), headers)
        self.assertEqual(headers.get("ratelimit-policy"), f'"{rule}";q={limit};w=3600', headers)
        self.assertTrue(headers.get("ratelimit", "").startswith(f'"{rule}";r={remaining};t='),
                        headers)

    def test_allowed_reaches_upstream_with_body_and_limit_headers(self):
        user = unique()
        status, headers, body = self.send("POST", "/api/orders?id=7", user, body=b"order #7",
                                          headers={"Content-Type": "text/plain"})
        self.assertEqual(status, 200, (headers, body, self.nginx.logs()))
        self.assertEqual(body, b"from upstream")
        self.assertLimitHeaders(headers, "ng-api", 2, 1)
        self.assertNotIn("retry-after", headers)
        [(method, path, seen_headers, seen_body)] = self.upstream.requests_of(user)
        self.assertEqual((method, path, seen_body), ("POST", "/api/orders?id=7", b"order #7"))

    def test_throttled_gets_429_with_retry_after_and_never_reaches_upstream(self):
        user = unique()
        for remaining in (1, 0):
            status, headers, _ = self.send("GET", "/api/items", user)
            self.assertEqual(status, 200, headers)
            self.assertLimitHeaders(headers, "ng-api", 2, remaining)
        status, headers, body = self.send("POST", "/api/items", user, body=b"x" * 1000)
        self.assertEqual(status, 429, (headers, body, self.nginx.logs()))
        self.assertGreaterEqual(int(headers["retry-after"]), 1)
        self.assertLimitHeaders(headers, "ng-api", 2, 0)
        self.assertIn(b"RATE_LIMIT_EXCEEDED", body)
        self.assertEqual(len(self.upstream.requests_of(user)), 2)

    def test_client_cannot_set_its_own_attributes(self):
        # proxy_pass_request_headers off: a client's X-Sluice-* never reaches Sluice.
        user = unique()
        sneaky = {"X-Sluice-Cost": "0", "X-Sluice-User-Id": unique(), "X-Sluice-Ip": "10.0.0.1",
                  "X-Sluice-Endpoint": "/elsewhere"}
        statuses = [self.send("GET", "/api/a", user, headers=sneaky)[0] for _ in range(3)]
        self.assertEqual(statuses, [200, 200, 429])
        self.assertEqual(len(self.upstream.requests_of(user)), 2)

    def test_endpoint_is_the_path_without_query(self):
        # X-Original-URI $request_uri carries the query: Sluice cuts it off.
        user = unique()
        self.assertEqual(self.send("GET", "/exact?a=1", user)[0], 200)
        status, headers, _ = self.send("GET", "/exact?a=2", user)
        self.assertEqual(status, 429, headers)
        self.assertEqual(headers.get("ratelimit-policy"), '"ng-exact";q=1;w=3600')
        self.assertEqual(len(self.upstream.requests_of(user)), 1)

    def test_method_from_x_original_method(self):
        user = unique()
        self.assertEqual(self.send("DELETE", "/del/1", user)[0], 200)
        self.assertEqual(self.send("DELETE", "/del/1", user)[0], 429)
        status, headers, _ = self.send("GET", "/del/1", user)  # the rule is for DELETE only
        self.assertEqual(status, 200)
        self.assertNotIn("x-ratelimit-limit", headers)  # no rule applied: no limit headers
        self.assertEqual([r[0] for r in self.upstream.requests_of(user)], ["DELETE", "GET"])

    def test_deny_listed_client_gets_403(self):
        # $remote_addr is 127.0.0.2, on the deny list.
        user = unique()
        status, headers, body = self.send("POST", "/api/x", user, body=b"data", source="127.0.0.2")
        self.assertEqual(status, 403, (headers, body))
        self.assertIn(b"BLOCKED", body)
        self.assertEqual(self.upstream.requests_of(user), [])

    def test_sluice_unreachable_is_503(self):
        # The same config pointed at a port nothing listens on: the subrequest fails (502 to
        # auth_request, a 500 to the main request) and the named location answers 503.
        nginx = Nginx(free_port(), self.upstream.port).start()
        try:
            user = unique()
            status, headers, body = nginx.request("GET", "/api/x", headers={"X-User-Id": user})
            self.assertEqual(status, 503, (headers, body))
            self.assertIn(b"RATE_LIMITER_UNAVAILABLE", body)
            self.assertNotIn("retry-after", headers)
            self.assertEqual(self.upstream.requests_of(user), [])
        finally:
            nginx.stop()

    def test_unlimited_path_passes_without_limit_headers(self):
        user = unique()
        status, headers, _ = self.send("HEAD", "/free", user)
        self.assertEqual(status, 200)
        self.assertNotIn("x-ratelimit-limit", headers)
        self.assertEqual(len(self.upstream.requests_of(user)), 1)


if __name__ == "__main__":
    unittest.main()
