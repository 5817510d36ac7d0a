"""Real redis-servers for the Redis store's integration tests, next to sluice_server.py.

Each RedisProcess runs `redis-server` on a free loopback port with no persistence, can be killed
(SIGKILL, as a crash) and started again on the same port, and is stopped at the end.
Python standard library only.
"""

import http.client
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest

from sluice_server import SluiceServer, free_port, START_TIMEOUT_S


def require_redis():
    if shutil.which("redis-server") is None:
        raise unittest.SkipTest("redis-server is not installed")


class RedisProcess:
    def __init__(self, port=None):
        require_redis()
        self.port = port or free_port()
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        for _ in range(5):
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self.ping():
                    return self
                time.sleep(0.02)
            self.kill()
            time.sleep(0.2)  # the port may still be held by the previous instance
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self):
        """SIGKILL: the store sees its connections die, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.kill()
        return False


class RedisSluice(SluiceServer):
    """A SluiceServer that counts as started once /health answers at all: with the store down
    and on_failure: fail_closed it answers 503, which is what such a server should say."""

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/health")
                res = conn.getresponse()
                res.read()
                conn.close()
                if res.status in (200, 503):
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False


def server_config(redis_url, on_failure, timeout="50ms", fallback_share=1.0):
    return (
        "store:\n"
        "  backend: redis\n"
        f"  url: {redis_url}\n"
        f"  timeout: {timeout}\n"
        "  pool: 4\n"
        f"  on_failure: {on_failure}\n"
        f"  fallback_share: {fallback_share}\n"
        "log:\n"
        "  level: warn\n")


class Load:
    """Client threads, each on its own keep-alive connection to one of `servers`, sending checks
    built by body(i) until stopped or `count` requests went out in all. Records (status, seconds,
    error) per request."""

    def __init__(self, servers, threads, body, count=None, request_timeout=10):
        self.servers = servers
        self.threads = threads
        self.body = body
        self.count = count
        self.request_timeout = request_timeout
        self.results = []
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._workers = []

    def _take(self):
        with self._lock:
            if self._stop.is_set() or (self.count is not None and self._next >= self.count):
                return None
            self._next += 1
            return self._next - 1

    def _run(self, server):
        import json
        conn = None
        while True:
            i = self._take()
            if i is None:
                break
            payload = json.dumps(self.body(i)).encode()
            started = time.monotonic()
            status, error = None, None
            for attempt in range(2):  # a connection the server closed is reopened once
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", server.port,
                                                          timeout=self.request_timeout)
                    conn.request("POST", "/v1/ratelimit/check", body=payload,
                                 headers={"Content-Type": "application/json"})
                    res = conn.getresponse()
                    res.read()
                    status = res.status
                    break
                except (http.client.RemoteDisconnected, ConnectionResetError,
                        BrokenPipeError) as e:
                    conn.close()
                    conn = None
                    error = e
                except OSError as e:  # a timeout: the server did not answer
                    error = e
                    if conn is not None:
                        conn.close()
                    conn = None
                    break
            with self._lock:
                self.results.append((status, time.monotonic() - started,
                                     None if status else repr(error)))
        if conn is not None:
            conn.close()

    def start(self):
        for t in range(self.threads):
            server = self.servers[t % len(self.servers)]
            w = threading.Thread(target=self._run, args=(server,), daemon=True)
            w.start()
            self._workers.append(w)
        return self

    def stop(self):
        self._stop.set()
        return self.join()

    def join(self):
        for w in self._workers:
            w.join()
        return self.results
