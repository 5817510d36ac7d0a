"""A real redis-server behind a network the test controls: its own network namespace, joined to
this one by a veth pair, with nftables rules inside the namespace for packet loss and partitions
and a delaying TCP relay (tests/integration/delay_relay.py) in front of Redis for latency.

    host (Sluice) 10.231.N.1 ──veth── 10.231.N.2 (namespace): relay :RELAY → redis 127.0.0.1:PORT

Faults, each on and off while traffic flows:
  - latency(ms): the relay holds every reply that long (a round trip grows by it);
  - loss(percent): nftables drops that share of the packets in each direction, at random (real
    TCP retransmissions, as on a lossy link);
  - partition(): every packet dropped both ways (connections hang, connects time out: no resets);
  - clear(): all of the above off.

Needs root (namespaces, veth, nftables); `require_netns()` skips otherwise. Nothing leaves this
machine: the addresses are private and exist only between the two ends of the pair.
"""

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
_serial = itertools.count()


def _run(*args, check=True):
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


def require_netns():
    missing = [t for t in ("ip", "nft", "redis-server") if shutil.which(t) is None]
    if missing:
        raise unittest.SkipTest(f"not installed: {', '.join(missing)} (scripts/install-deps.sh)")
    if os.geteuid() != 0:
        raise unittest.SkipTest("network namespaces need root")
    probe = f"slprobe{os.getpid() % 100000}"
    res = _run("ip", "netns", "add", probe, check=False)
    if res.returncode != 0:
        raise unittest.SkipTest(f"cannot create a network namespace here: {res.stderr.strip()}")
    _run("ip", "netns", "del", probe, check=False)


class NetnsRedis:
    def __init__(self):
        require_netns()
        self._dir = tempfile.TemporaryDirectory(prefix="sluice-chaos-")
        self._delay_file = os.path.join(self._dir.name, "delay_ms")
        n = (os.getpid() * 7 + next(_serial)) % 250 + 1
        self.ns = f"sluice-chaos-{os.getpid()}-{n}"
        self.host_if = f"slh{os.getpid() % 10000}x{n}"[:15]
        self.ns_if = f"sln{os.getpid() % 10000}x{n}"[:15]
        self.host_addr = f"10.231.{n}.1"
        self.addr = f"10.231.{n}.2"
        self.redis_port = 6379
        self.relay_port = 6380
        self.redis = None
        self.relay = None

    @property
    def url(self):
        """Where Sluice connects: the relay, inside the namespace."""
        return f"redis://{self.addr}:{self.relay_port}"

    def _ns(self, *args):
        return ["ip", "netns", "exec", self.ns, *args]

    def start(self):
        _run("ip", "netns", "add", self.ns)
        try:
            _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _run("ip", "link", "set", self.ns_if, "netns", self.ns)
            _run("ip", "addr", "add", f"{self.host_addr}/30", "dev", self.host_if)
            _run("ip", "link", "set", self.host_if, "up")
            _run(*self._ns("ip", "addr", "add", f"{self.addr}/30", "dev", self.ns_if))
            _run(*self._ns("ip", "link", "set", self.ns_if, "up"))
            _run(*self._ns("ip", "link", "set", "lo", "up"))
            self._nft(
                "add table inet chaos\n"
                "add chain inet chaos in { type filter hook input priority 0; policy accept; }\n"
                "add chain inet chaos out { type filter hook output priority 0; policy accept; }\n")
            self.redis = subprocess.Popen(
                self._ns("redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                         "--save", "", "--appendonly", "no", "--loglevel", "warning"),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            self.relay = subprocess.Popen(
                self._ns(sys.executable, os.path.join(HERE, "delay_relay.py"), self.addr,
                         str(self.relay_port), "127.0.0.1", str(self.redis_port),
                         self._delay_file),
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            if self.relay.stdout.readline().strip() != b"ready":
                raise AssertionError("the delaying relay did not start")
            deadline = time.monotonic() + 10
            while not self.ping():
                if time.monotonic() > deadline:
                    raise AssertionError("redis-server in the namespace did not answer")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def _nft(self, script):
        res = subprocess.run(self._ns("nft", "-f", "-"), input=script, capture_output=True,
                             text=True, timeout=30)
        if res.returncode != 0:
            raise AssertionError(f"nft failed: {res.stderr.strip()}\n{script}")

    def ping(self, timeout=1.0):
        """PING through the relay from the host side, as Sluice reaches Redis."""
        try:
            with socket.create_connection((self.addr, self.relay_port), timeout=timeout) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args):
        """One command straight to redis-server, inside the namespace (unaffected by faults)."""
        res = _run(*self._ns("redis-cli", "-p", str(self.redis_port), "--raw", *args),
                   check=True)
        return res.stdout

    # --- faults ---------------------------------------------------------------------------------

    def latency(self, ms):
        """Every reply held `ms` by the relay."""
        self.clear()
        with open(self._delay_file, "w") as f:
            f.write(str(int(ms)))
        self.relay.send_signal(signal.SIGUSR1)

    def loss(self, percent):
        self.clear()
        # numgen counts 0..99: drop the packets that draw below `percent`, each way.
        rule = f"numgen random mod 100 < {int(percent)} drop"
        self._nft(f"add rule inet chaos in iifname {self.ns_if} {rule}\n"
                  f"add rule inet chaos out oifname {self.ns_if} {rule}\n")

    def partition(self):
        self.clear()
        self._nft(f"add rule inet chaos in iifname {self.ns_if} drop\n"
                  f"add rule inet chaos out oifname {self.ns_if} drop\n")

    def clear(self):
        self._nft("flush chain inet chaos in\nflush chain inet chaos out\n")
        if self.relay is not None and self.relay.poll() is None:
            self.relay.send_signal(signal.SIGUSR2)

    def stop(self):
        for proc in (self.relay, self.redis):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        if self.relay is not None:
            self.relay.stdout.close()
        self.relay = self.redis = None
        _run("ip", "link", "del", self.host_if, check=False)
        _run("ip", "netns", "del", self.ns, check=False)
        self._dir.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
