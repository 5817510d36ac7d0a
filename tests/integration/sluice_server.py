"""A small harness that runs the real `sluice` binary for integration tests.

The binary is found through the SLUICE_BIN environment variable (CTest sets it to the built
target), falling back to build/src/app/sluice next to the sources. Each server gets its own
temporary folder for its config and rules files, a free loopback port, and is stopped with
SIGTERM at the end; a server that does not exit 0 fails the test that owns it.

Python standard library only: the build machine has nothing else.

Run them with `ctest --test-dir build -L integration`, or by hand:
    SLUICE_BIN=build/src/app/sluice python3 -m unittest discover -s tests/integration -v
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# How long a server may take to start or stop before the harness gives up on it. These are hang
# detectors, never assertions on speed; sanitizer builds are slow, hence the generous values.
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0
# Socket timeout for a request: an answer that takes longer is a hang.
REQUEST_TIMEOUT_S = 10.0
# How long a test waits for an asynchronous effect (a reload) to become visible.
POLL_TIMEOUT_S = 8.0


def sluice_bin():
    path = os.environ.get("SLUICE_BIN")
    if path:
        # Named explicitly (CTest does): a missing binary is a failure, not a skip.
        if not os.access(path, os.X_OK):
            raise AssertionError(f"SLUICE_BIN={path} is not an executable")
        return os.path.abspath(path)  # servers run in their own folders
    path = os.path.join(REPO, "build", "src", "app", "sluice")
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest(f"sluice binary not found at {path}; set SLUICE_BIN")
    return path


def run_cli(*args, timeout=30):
    """Runs `sluice ARGS...` to completion; returns the CompletedProcess (text mode)."""
    return subprocess.run([sluice_bin(), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def free_port(host="127.0.0.1"):
    """A loopback port that was free a moment ago (the server may still lose a race for it:
    SluiceServer.start retries with another port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def poll(predicate, timeout=POLL_TIMEOUT_S, interval=0.05, message="condition"):
    """Calls predicate() until it returns a truthy value, which is returned; fails after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message} (last value: {last!r})")
        time.sleep(interval)


class Response:
    """A finished HTTP exchange: status, headers (case-insensitive lookup), raw body, JSON."""

    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.header_list = headers
        self.body = body

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.header_list:
            if k.lower() == name:
                return v
        return default

    def has_header(self, name):
        return self.header(name) is not None

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return f"<Response {self.status} {self.header_list} {self.body[:300]!r}>"


def parse_metrics(text):
    """Prometheus text format → {(name, frozenset of (label, value))): float}."""
    samples = {}
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = line_re.match(line)
        if not m:
            continue
        labels = frozenset(label_re.findall(m.group(3) or ""))
        samples[(m.group(1), labels)] = float(m.group(4))
    return samples


class Metrics:
    def __init__(self, text):
        self.text = text
        self.samples = parse_metrics(text)

    def get(self, name, **labels):
        """The sample `name{labels}` (exact label set), or None when absent."""
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name, **labels):
        """Like get(), but 0 when absent (a counter not yet created counts nothing)."""
        v = self.get(name, **labels)
        return 0.0 if v is None else v

    def names(self):
        return {name for name, _ in self.samples}

    def with_name(self, name):
        return {labels: v for (n, labels), v in self.samples.items() if n == name}


class SluiceServer:
    """One `sluice serve` process.

    files:  {relative path: text} written into the server's temporary folder before it starts
            (sub-folders are created as needed).
    rules:  list of rules paths relative to that folder, each passed as `--rules`.
    config: relative path of a server config file to pass as `--config` (among `files`).
    http:   whether to pass `--http <host>:<free port>` (False: the config file's address,
            whose port is then given to start()).
    host:   the loopback address to listen on and connect to (127.0.0.1 or ::1).
    before_start: called once the files are written, before the process starts.
    preexec_fn: run in the child before exec (e.g. to set resource limits).
    env:    environment variables to set for the server ({name: value}; a None value removes
            one the tests inherited), e.g. SLUICE_ADMIN_TOKEN.
    """

    def __init__(self, files=None, rules=None, config=None, http=True, extra_args=(),
                 before_start=None, host="127.0.0.1", preexec_fn=None, env=None):
        self.files = dict(files or {})
        self.rules = list(rules or [])
        self.config = config
        self.pass_http = http
        self.extra_args = list(extra_args)
        self.before_start = before_start
        self.host = host
        self.preexec_fn = preexec_fn
        self.env = dict(env or {})
        self.tmp = None
        self.dir = None
        self.proc = None
        self.port = None
        self.log_path = None

    # --- life cycle ---

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop()
        else:
            self.kill()
        return False

    def path(self, rel):
        return os.path.join(self.dir, rel)

    def write(self, rel, text):
        """Writes a file in the server's folder in place (truncate + write, as editors do)."""
        full = self.path(rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as f:
            f.write(text)

    def write_atomic(self, rel, text):
        """Replaces a file in the server's folder atomically (write a dot-file, rename over)."""
        full = self.path(rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        tmp = os.path.join(os.path.dirname(full), "." + os.path.basename(full) + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, full)

    def start(self, port=None):
        self.tmp = tempfile.TemporaryDirectory(prefix="sluice-it-")
        self.dir = self.tmp.name
        for rel, text in self.files.items():
            self.write(rel, text)
        if self.before_start is not None:
            self.before_start()
        self.log_path = os.path.join(self.dir, "server.log")
        attempts = 1 if port is not None else 5
        for attempt in range(attempts):
            self.port = port if port is not None else (
                free_port(self.host) if self.pass_http else None)
            args = [sluice_bin(), "serve"]
            if self.config:
                args += ["--config", self.path(self.config)]
            if self.pass_http:
                address = f"[{self.host}]" if ":" in self.host else self.host
                args += ["--http", f"{address}:{self.port}"]
            if not self.config or self.pass_http:
                args += ["--grpc", ""]  # no gRPC listener: tests run in parallel
            for r in self.rules:
                args += ["--rules", self.path(r)]
            args += self.extra_args
            self.log = open(self.log_path, "ab")
            env = None
            if self.env:
                env = {k: v for k, v in os.environ.items() if k not in self.env}
                env.update({k: v for k, v in self.env.items() if v is not None})
            self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.dir,
                                         preexec_fn=self.preexec_fn, env=env)
            if self._wait_ready():
                return self
            rc = self.proc.poll()
            if rc is not None and b"listen_failed" in self.logs_bytes() and attempt + 1 < attempts:
                self.log.close()
                continue  # lost the race for the port: try another
            logs = self.logs()
            self.kill()
            raise AssertionError(f"sluice did not start (exit {rc}); log:\n{logs}")
        raise AssertionError("unreachable")

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
                conn.request("GET", "/health")
                res = conn.getresponse()
                res.read()
                conn.close()
                if res.status == 200:
                    # Ours, not a parallel test's server that won the race for the port: a
                    # server that failed to bind exits at once.
                    time.sleep(0.05)
                    return self.proc.poll() is None
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM):
        """Sends `sig` (SIGTERM), waits for the exit and returns its code; kills on a hang."""
        if self.proc is None:
            return None
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            try:
                rc = self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"sluice did not exit within {STOP_TIMEOUT_S}s of {sig!r}; log:\n{self.logs()}")
            if rc != 0:
                raise AssertionError(f"sluice exited {rc} after {sig!r}; log:\n{self.logs()}")
            return rc
        finally:
            self._cleanup()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._cleanup()

    def _cleanup(self):
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()
        if self.tmp is not None:
            self.tmp.cleanup()
            self.tmp = None

    def logs_bytes(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def logs(self):
        return self.logs_bytes().decode("utf-8", "replace")[-8000:]

    # --- HTTP ---

    def request(self, method, path, body=None, headers=None):
        """One request on a fresh connection; body may be bytes, str or a JSON-able value."""
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode("utf-8")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            res = conn.getresponse()
            data = res.read()
            return Response(res.status, res.reason, res.getheaders(), data)
        finally:
            conn.close()

    def check(self, body=None, **fields):
        """POST /v1/ratelimit/check with `body` (any JSON value, or raw bytes) or with `fields`."""
        if body is None:
            body = fields
        return self.request("POST", "/v1/ratelimit/check", body=body,
                            headers={"Content-Type": "application/json"})

    def get(self, path):
        return self.request("GET", path)

    def health(self):
        res = self.get("/health")
        return res.json()

    def metrics(self):
        res = self.get("/metrics")
        assert res.status == 200, res
        return Metrics(res.body.decode("utf-8"))

    def connect(self, timeout=REQUEST_TIMEOUT_S):
        """A raw TCP connection to the HTTP port, for malformed requests."""
        s = socket.create_connection((self.host, self.port), timeout=timeout)
        return s


def read_raw_response(sock):
    """Reads one HTTP response from a raw socket. Returns (status, headers, body), or None when the
    connection was closed (or reset) before a status line arrived."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None if not data else _parse_head(data, sock)
            data += chunk
    except ConnectionResetError:
        return None if not data else _parse_head(data, sock)
    return _parse_head(data, sock)


def _parse_head(data, sock):
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if not m:
        raise AssertionError(f"not an HTTP response: {data[:200]!r}")
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    length = None
    for k, v in headers:
        if k.lower() == "content-length":
            length = int(v)
    body = rest
    if length is not None:
        try:
            while len(body) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
        except ConnectionResetError:
            pass
    return Response(int(m.group(1)), "", headers, body)


class RawConnection:
    """A raw keep-alive connection that reads responses one at a time, keeping whatever bytes
    follow a response for the next one (pipelining, HEAD)."""

    def __init__(self, server, timeout=REQUEST_TIMEOUT_S):
        self.sock = server.connect(timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def send(self, payload):
        """Sends; False when the server has already closed the connection."""
        try:
            self.sock.sendall(payload)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def closed_by_server(self, probe):
        """Whether the server closed the connection: `probe` (a complete request) sent on it gets
        no response. Deterministic, unlike waiting for an EOF that may come with a timeout."""
        if not self.send(probe):
            return True
        return self.read_response() is None

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        self.buf += chunk
        return bool(chunk)

    def read_response(self, head_only=False):
        """One response; the body is read by Content-Length unless `head_only` (a HEAD request:
        no body follows, whatever Content-Length says). None when closed before a status line."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                if self.buf:
                    raise AssertionError(f"connection closed mid-response: {self.buf[:200]!r}")
                return None
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
        if not m:
            raise AssertionError(f"not an HTTP status line: {head[:200]!r}")
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        length = 0
        for k, v in headers:
            if k.lower() == "content-length":
                length = int(v)
        if head_only:
            length = 0
        while len(self.buf) < length:
            if not self._fill():
                raise AssertionError("connection closed mid-body")
        body, self.buf = self.buf[:length], self.buf[length:]
        return Response(int(m.group(1)), lines[0], headers, body)


def raw_exchange(server, payload, timeout=REQUEST_TIMEOUT_S):
    """Sends raw bytes on a new connection and reads one response (None: closed without one)."""
    with server.connect(timeout=timeout) as s:
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_raw_response(s)


class ServerTestCase(unittest.TestCase):
    """A test class sharing one server across its tests; subclasses set SERVER_FILES and
    SERVER_RULES (and optionally SERVER_CONFIG / SERVER_HTTP)."""

    SERVER_FILES = {}
    SERVER_RULES = []
    SERVER_CONFIG = None
    SERVER_HTTP = True

    @classmethod
    def setUpClass(cls):
        cls.server = SluiceServer(files=cls.SERVER_FILES, rules=cls.SERVER_RULES,
                                  config=cls.SERVER_CONFIG, http=cls.SERVER_HTTP)
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        # SIGTERM must end the server with exit code 0 (CONTRACT §1).
        cls.server.stop()

    def assertNoLimitHeaders(self, res):
        for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
                     "RateLimit-Policy", "RateLimit", "Retry-After"):
            self.assertFalse(res.has_header(name), f"unexpected header {name} in {res!r}")

    def assertError(self, res, status, code):
        """An error response of the contract: {"error": {"code", "message"}} as JSON."""
        self.assertEqual(res.status, status, res)
        self.assertTrue(res.header("Content-Type", "").startswith("application/json"), res)
        body = res.json()
        self.assertIn("error", body, res)
        self.assertEqual(body["error"]["code"], code, res)
        self.assertIsInstance(body["error"]["message"], str)
        self.assertTrue(body["error"]["message"], res)
        return body

    def assertServes(self):
        """The server still answers a normal check (after a bad input)."""
        res = self.server.check(user_id="still-alive")
        self.assertEqual(res.status, 200, res)
        self.assertTrue(res.json()["allowed"], res)


_counter = [0]


def unique(prefix="u"):
    """A value no other test uses (counters are per server, tests share servers)."""
    _counter[0] += 1
    return f"{prefix}-{os.getpid()}-{_counter[0]}"
