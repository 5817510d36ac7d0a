"""Real redis-servers for the Redis store's integration tests, next to sluice_server.py.

Each RedisProcess runs `redis-server` on a free loopback port with no persistence, can be killed
(SIGKILL, as a crash) and started again on the same port, and is stopped at the end.
RedisCluster runs a Redis Cluster (masters with replicas) and RedisSentinelGroup a master, its
replica and three sentinels, both in a temporary folder, for failover tests.
Python standard library only.
"""

import collections
import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
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


def timed_checks(case, server, user, count, within_s, what):
    """`count` checks for `user`, one after another, each asserted (on the TestCase `case`) to be
    answered within `within_s`; the responses."""
    answers = []
    for _ in range(count):
        started = time.monotonic()
        res = server.check(user_id=user)
        took = time.monotonic() - started
        case.assertLess(took, within_s, f"{what}: a check took {took:.2f}s: {res!r}")
        answers.append(res)
    return answers


class EachPolicy:
    """Mixin for a TestCase with run_policy(policy): one test per failure policy (CONTRACT §7)."""

    def test_fail_open(self):
        self.run_policy("fail_open")

    def test_fail_closed(self):
        self.run_policy("fail_closed")

    def test_local(self):
        self.run_policy("local")


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


# --- Redis Cluster and Sentinel ---------------------------------------------------------------
#
# The waits below are hang detectors, never assertions on speed: a failover takes a few seconds
# on an idle machine and may take several times that on a loaded one.

CLUSTER_SLOTS = 16384
GROUP_START_TIMEOUT_S = 60.0


class RespError(Exception):
    """An error reply (`-ERR ...`, `-MOVED ...`) from a redis-server."""


def redis_command(port, *args, timeout=2.0):
    """One command on a fresh connection to 127.0.0.1:PORT. The reply as Python values: simple and
    bulk strings as str, integers as int, arrays as lists, nil as None. Raises RespError on an error
    reply and OSError when nothing answers."""
    payload = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        payload.append(b"$%d\r\n%s\r\n" % (len(b), b))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"".join(payload))
        with s.makefile("rb") as f:
            return _read_reply(f)


def _read_reply(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed mid-reply")
    kind, rest = line[:1], line[1:-2].decode(errors="replace")
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RespError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        if int(rest) < 0:
            return None
        data = f.read(int(rest) + 2)
        if len(data) != int(rest) + 2:
            raise ConnectionError("connection closed mid-reply")
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        return None if int(rest) < 0 else [_read_reply(f) for _ in range(int(rest))]
    raise ConnectionError(f"unexpected reply {line!r}")


def redis_cli(port, *args, timeout=30):
    """`redis-cli -h 127.0.0.1 -p PORT ARGS...` (options such as -c may lead ARGS); its output,
    stripped. An error reply is output too (`MOVED 3999 127.0.0.1:7002`); only a redis-cli that
    fails (nothing listening) raises."""
    res = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *map(str, args)],
                         capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise AssertionError(f"redis-cli -p {port} {' '.join(map(str, args))} exited "
                             f"{res.returncode}: {res.stderr.strip()}")
    return res.stdout.strip()


def _info(text):
    """INFO / CLUSTER INFO text → {field: value}."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            fields[key] = value
    return fields


def _free_ports(n):
    """n distinct loopback ports that were free a moment ago (all held while they are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class _NotYet(Exception):
    """Raised by a wait's check: not there yet, and why."""


def _wait_for(check, timeout, what, interval=0.1):
    """Calls check() until it returns without raising _NotYet / OSError / RespError; returns what it
    returned. Fails after `timeout` seconds with the last reason."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (_NotYet, OSError, RespError) as e:
            last = str(e) or repr(e)
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} "
                                 f"(last: {last})")
        time.sleep(interval)


class _Daemon:
    """One redis-server (or sentinel) process of a group on a fixed port: started, SIGKILLed and
    started again with the same arguments as often as a test likes."""

    def __init__(self, port, args):
        self.port = port
        self.args = args
        self.proc = None

    def start(self, timeout=10):
        """False if it exited or did not answer PING within `timeout` (then it is killed)."""
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if redis_command(self.port, "PING", timeout=1) == "PONG":
                    return True
            except (OSError, RespError):
                pass
            time.sleep(0.02)
        self.kill()
        return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None


def _start_daemon(make_args, ports_needed=1):
    """A _Daemon from make_args(ports) on fresh free ports, retried on other ports if it lost the
    race for one."""
    for _ in range(5):
        ports = _free_ports(ports_needed)
        d = _Daemon(ports[0], make_args(ports))
        if d.start():
            return d
        time.sleep(0.2)
    raise AssertionError(f"could not start {d.args[0]} {d.args[1]} (5 attempts)")


_ClusterNode = collections.namedtuple("_ClusterNode", "id port flags master slots")


def _parse_cluster_nodes(text):
    """CLUSTER NODES → [_ClusterNode]; slots as (first, last) ranges, migrating slots left out."""
    nodes = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 8:
            continue
        address = f[1].split("@")[0]  # ip:port@cport[,hostname]
        slots = []
        for s in f[8:]:
            if s.startswith("["):
                continue
            first, _, last = s.partition("-")
            slots.append((int(first), int(last or first)))
        nodes.append(_ClusterNode(f[0], int(address.rpartition(":")[2]), frozenset(f[2].split(",")),
                                  f[3], tuple(slots)))
    return nodes


def _owns(node, slot):
    return any(first <= slot <= last for first, last in node.slots)


class RedisCluster:
    """A Redis Cluster of `masters` masters (at least 3) with `replicas` replicas each, every node
    a redis-server on a free loopback port (its cluster bus on another free port) with no
    persistence, working in its own folder of a temporary folder. Tuned for quick failovers:
    cluster-node-timeout 1 s, and replicas always eligible (cluster-replica-validity-factor 0).

        with RedisCluster() as cluster:
            old = cluster.kill_master_of_slot(slot)
            new = cluster.wait_for_new_master(slot, old)
    """

    def __init__(self, masters=3, replicas=1):
        require_redis()
        self.masters = masters
        self.replicas = replicas
        self.dir = None
        self._nodes = []  # _Daemon, in start order

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self, timeout=GROUP_START_TIMEOUT_S):
        """Starts the nodes, creates the cluster and waits until every node says cluster_state:ok,
        knows every other node, agrees on who serves which of the 16384 slots, and every replica
        is in sync with its master."""
        self.dir = tempfile.mkdtemp(prefix="sluice-redis-cluster-")
        try:
            for _ in range(self.masters * (1 + self.replicas)):
                self._nodes.append(_start_daemon(self._node_args, ports_needed=2))
            res = subprocess.run(
                ["redis-cli", "--cluster", "create", *self.seeds,
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
            if res.returncode != 0:
                raise AssertionError(f"redis-cli --cluster create exited {res.returncode}:\n"
                                     f"{res.stdout}\n{res.stderr}")
            _wait_for(lambda: self._check_healthy(complete=True), timeout, "the cluster to form")
        except BaseException:
            self.stop()
            raise
        return self

    def _node_args(self, ports):
        port, bus = ports
        work = os.path.join(self.dir, str(port))
        os.makedirs(work, exist_ok=True)
        return ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-port", str(bus),
                "--cluster-config-file", os.path.join(self.dir, f"nodes-{port}.conf"),
                "--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0",
                "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0",
                "--dir", work, "--daemonize", "no",
                "--logfile", os.path.join(self.dir, f"redis-{port}.log"), "--loglevel", "notice"]

    def stop(self):
        """Kills every node and removes the temporary folder. Safe to call more than once."""
        for n in self._nodes:
            n.kill()
        self._nodes = []
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    @property
    def seeds(self):
        """Every node, live or not, as "127.0.0.1:PORT"."""
        return [f"127.0.0.1:{n.port}" for n in self._nodes]

    def ports(self):
        return [n.port for n in self._nodes]

    def alive(self, port):
        return self._node(port).alive()

    def master_ports(self):
        """The live nodes that say they are a master serving slots, by port."""
        ports = []
        for n in self._live():
            try:
                me = self._myself(n.port)
            except (OSError, RespError):
                continue
            if "master" in me.flags and me.slots:
                ports.append(n.port)
        return ports

    def cli(self, port, *args):
        """redis-cli -p PORT ARGS... → its output, stripped (see redis_cli)."""
        return redis_cli(port, *args)

    def command(self, port, *args):
        """One command to a node → its reply (see redis_command)."""
        return redis_command(port, *args)

    def slot_of(self, key):
        for n in self._live():
            try:
                return redis_command(n.port, "CLUSTER", "KEYSLOT", key)
            except (OSError, RespError):
                continue
        raise AssertionError("no live cluster node answers")

    def master_of_slot(self, slot):
        """The port of the live node that says it is the master serving `slot`; when none says so
        (its master is down and not yet replaced), the master the live nodes name."""
        views = []
        for n in self._live():
            try:
                view = _parse_cluster_nodes(redis_command(n.port, "CLUSTER", "NODES"))
            except (OSError, RespError):
                continue
            views.append(view)
            if any("myself" in e.flags and "master" in e.flags and _owns(e, slot) for e in view):
                return n.port
        for view in views:
            for e in view:
                if "master" in e.flags and _owns(e, slot):
                    return e.port
        raise AssertionError(f"no live node knows the master of slot {slot}")

    def kill_master_of_slot(self, slot):
        """SIGKILLs the master serving `slot`; returns its port."""
        port = self.master_of_slot(slot)
        self._node(port).kill()
        return port

    def wait_for_new_master(self, slot, old_port, timeout=20):
        """Waits until a live node other than `old_port` says it is the master serving `slot`,
        every live node names it so and says cluster_state:ok; returns its port."""

        def check():
            live = [n for n in self._live() if n.port != old_port]
            new = None
            for n in live:
                me = self._myself(n.port)
                if "master" in me.flags and _owns(me, slot):
                    new = n.port
            if new is None:
                raise _NotYet(f"no live node is the master of slot {slot} yet")
            for n in live:
                state = _info(redis_command(n.port, "CLUSTER", "INFO")).get("cluster_state")
                if state != "ok":
                    raise _NotYet(f"{n.port} says cluster_state:{state}")
                owners = [e.port for e in _parse_cluster_nodes(
                    redis_command(n.port, "CLUSTER", "NODES"))
                    if "master" in e.flags and "fail" not in e.flags and _owns(e, slot)]
                if owners != [new]:
                    raise _NotYet(f"{n.port} says slot {slot} is served by {owners}, not {new}")
            return new

        return _wait_for(check, timeout, f"a new master of slot {slot} (was {old_port})")

    def restart(self, port, timeout=30):
        """Starts a killed node again, with its cluster config file (a killed master comes back as
        a replica of the node that replaced it), and waits until the cluster is healthy again
        (see start)."""
        node = self._node(port)
        if node.alive():
            raise AssertionError(f"node {port} is running")
        # Keys from before the kill would make it claim slots it no longer serves: start empty.
        try:
            os.unlink(os.path.join(self.dir, str(port), "dump.rdb"))
        except FileNotFoundError:
            pass
        for _ in range(5):
            if node.start():
                break
            time.sleep(0.2)  # the port may still be held
        else:
            raise AssertionError(f"node {port} did not start again")
        _wait_for(self._check_healthy, timeout, f"the cluster to take node {port} back")

    def _node(self, port):
        for n in self._nodes:
            if n.port == port:
                return n
        raise KeyError(f"no cluster node on port {port}")

    def _live(self):
        return [n for n in self._nodes if n.alive()]

    def _myself(self, port):
        for e in _parse_cluster_nodes(redis_command(port, "CLUSTER", "NODES")):
            if "myself" in e.flags:
                return e
        raise _NotYet(f"{port}: no myself in CLUSTER NODES")

    def _check_healthy(self, complete=False):
        """Raises _NotYet unless every live node: says cluster_state:ok with all slots assigned;
        knows every node, and no live one as failing; names the same live master for every slot;
        and, if a replica, is in sync. `complete`: also `masters` masters with `replicas` live
        replicas each."""
        live = self._live()
        live_ports = {n.port for n in live}
        layout = None
        for n in live:
            info = _info(redis_command(n.port, "CLUSTER", "INFO"))
            if info.get("cluster_state") != "ok":
                raise _NotYet(f"{n.port} says cluster_state:{info.get('cluster_state')}")
            if info.get("cluster_slots_assigned") != str(CLUSTER_SLOTS):
                raise _NotYet(f"{n.port} has {info.get('cluster_slots_assigned')} slots assigned")
            view = _parse_cluster_nodes(redis_command(n.port, "CLUSTER", "NODES"))
            if len(view) != len(self._nodes):
                raise _NotYet(f"{n.port} knows {len(view)} of {len(self._nodes)} nodes")
            for e in view:
                if e.port in live_ports and e.flags & {"fail", "fail?", "handshake", "noaddr"}:
                    raise _NotYet(f"{n.port} flags {e.port} {','.join(sorted(e.flags))}")
            masters = sorted((e.slots, e.port, e.id) for e in view
                             if "master" in e.flags and e.slots)
            if any(port not in live_ports for _, port, _ in masters):
                raise _NotYet(f"{n.port} says a node that is down serves slots")
            if complete:
                if len(masters) != self.masters:
                    raise _NotYet(f"{n.port} sees {len(masters)} masters")
                for _, port, node_id in masters:
                    replicas = [e for e in view if e.master == node_id and e.port in live_ports]
                    if len(replicas) != self.replicas:
                        raise _NotYet(f"{n.port} sees {len(replicas)} replicas of {port}")
            if layout is None:
                layout = masters
            elif masters != layout:
                raise _NotYet("the nodes do not agree yet on who serves which slots")
            me = next(e for e in view if "myself" in e.flags)
            if "slave" in me.flags:
                repl = _info(redis_command(n.port, "INFO", "replication"))
                if (repl.get("master_link_status") != "up"
                        or repl.get("master_sync_in_progress") != "0"):
                    raise _NotYet(f"replica {n.port} is not in sync yet")
        if not live:
            raise AssertionError("no cluster node is running")


class RedisSentinelGroup:
    """A master, one replica of it and three sentinels monitoring it as `name` (quorum 2), each a
    process on a free loopback port working in a temporary folder. Tuned for quick failovers:
    down-after-milliseconds 1000, failover-timeout 5000.

        with RedisSentinelGroup() as group:
            old = group.kill_master()
            new = group.wait_failover(old)
    """

    SENTINELS = 3

    def __init__(self, name="shard1"):
        require_redis()
        self.name = name
        self.dir = None
        self._servers = []  # _Daemon: the first master, then its replica
        self._sentinels = []  # _Daemon

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self, timeout=GROUP_START_TIMEOUT_S):
        """Starts the master, its replica and the sentinels; waits until the replica is in sync and
        every sentinel knows the master, the replica and the other sentinels."""
        self.dir = tempfile.mkdtemp(prefix="sluice-redis-sentinel-")
        try:
            master = _start_daemon(lambda ports: self._server_args(ports[0], None))
            self._servers.append(master)
            self._servers.append(
                _start_daemon(lambda ports: self._server_args(ports[0], master.port)))
            for _ in range(self.SENTINELS):
                self._sentinels.append(
                    _start_daemon(lambda ports: self._sentinel_args(ports[0], master.port)))
            _wait_for(self._check_ready, timeout, "the sentinel group to be ready")
        except BaseException:
            self.stop()
            raise
        return self

    def _server_args(self, port, replica_of):
        work = os.path.join(self.dir, str(port))
        os.makedirs(work, exist_ok=True)
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--repl-diskless-sync-delay", "0", "--dir", work,
                "--daemonize", "no", "--logfile", os.path.join(self.dir, f"redis-{port}.log"),
                "--loglevel", "notice"]
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        return args

    def _sentinel_args(self, port, master_port):
        # Each sentinel owns its config file: it rewrites it (its id, the replicas and sentinels
        # it found, the current master), so it is written once here and never shared.
        conf = os.path.join(self.dir, f"sentinel-{port}.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(f"port {port}\n"
                    "bind 127.0.0.1\n"
                    "daemonize no\n"
                    f"dir {self.dir}\n"
                    f"logfile {os.path.join(self.dir, f'sentinel-{port}.log')}\n"
                    "sentinel resolve-hostnames no\n"
                    f"sentinel monitor {self.name} 127.0.0.1 {master_port} 2\n"
                    f"sentinel down-after-milliseconds {self.name} 1000\n"
                    f"sentinel failover-timeout {self.name} 5000\n"
                    f"sentinel parallel-syncs {self.name} 1\n")
        return ["redis-server", conf, "--sentinel"]

    def stop(self):
        """Kills the sentinels, then the servers; removes the temporary folder. Safe to call more
        than once."""
        for d in self._sentinels + self._servers:
            d.kill()
        self._sentinels = []
        self._servers = []
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    @property
    def sentinels(self):
        """The sentinels as "127.0.0.1:PORT"."""
        return [f"127.0.0.1:{s.port}" for s in self._sentinels]

    def server_ports(self):
        """The master and the replica it started with, by port, running or not."""
        return [s.port for s in self._servers]

    def cli(self, port, *args):
        """redis-cli -p PORT ARGS... → its output, stripped (see redis_cli)."""
        return redis_cli(port, *args)

    def command(self, port, *args):
        """One command to a server or sentinel → its reply (see redis_command)."""
        return redis_command(port, *args)

    def master_port(self):
        """The master's port, as the first sentinel that answers says."""
        for s in self._sentinels:
            if not s.alive():
                continue
            try:
                addr = redis_command(s.port, "SENTINEL", "get-master-addr-by-name", self.name)
            except (OSError, RespError):
                continue
            if addr:
                return int(addr[1])
        raise AssertionError(f"no sentinel knows the master of {self.name}")

    def kill_master(self):
        """SIGKILLs the current master; returns its port."""
        port = self.master_port()
        for s in self._servers:
            if s.port == port:
                s.kill()
                return port
        raise AssertionError(f"the master {port} is not one of this group's servers")

    def wait_failover(self, old_port, timeout=30):
        """Waits until every sentinel names a master other than `old_port` (the same one) and that
        server says ROLE master; returns its port."""

        def check():
            named = {int(redis_command(s.port, "SENTINEL", "get-master-addr-by-name",
                                       self.name)[1])
                     for s in self._sentinels if s.alive()}
            if len(named) != 1 or old_port in named:
                raise _NotYet(f"the sentinels name {sorted(named)}")
            new = named.pop()
            role = redis_command(new, "ROLE")
            if role[0] != "master":
                raise _NotYet(f"{new} says ROLE {role[0]}")
            return new

        return _wait_for(check, timeout, f"a failover of {self.name} away from {old_port}")

    def _check_ready(self):
        master, replica = (s.port for s in self._servers)
        repl = _info(redis_command(replica, "INFO", "replication"))
        if repl.get("master_link_status") != "up" or repl.get("master_sync_in_progress") != "0":
            raise _NotYet(f"replica {replica} is not in sync yet")
        for s in self._sentinels:
            addr = redis_command(s.port, "SENTINEL", "get-master-addr-by-name", self.name)
            if addr is None or int(addr[1]) != master:
                raise _NotYet(f"sentinel {s.port} names the master {addr}")
            replicas = [_pairs(r) for r in redis_command(s.port, "SENTINEL", "replicas",
                                                         self.name)]
            # (Its master-link-status there is refreshed only every 10 s: the replica's own INFO
            # above is what says it is in sync.)
            if not any(int(r["port"]) == replica and r["flags"] == "slave" for r in replicas):
                raise _NotYet(f"sentinel {s.port} does not know the replica yet: {replicas}")
            others = [_pairs(r) for r in redis_command(s.port, "SENTINEL", "sentinels",
                                                       self.name)]
            known = {int(o["port"]) for o in others if o["flags"] == "sentinel"}
            wanted = {o.port for o in self._sentinels if o is not s}
            if known != wanted:
                raise _NotYet(f"sentinel {s.port} knows the sentinels {sorted(known)}")


def _pairs(flat):
    """[k1, v1, k2, v2, ...] (a SENTINEL reply entry) → {k1: v1, ...}."""
    return dict(zip(flat[::2], flat[1::2]))


def start_fleet(test_class, count, files, **kwargs):
    """Starts a RedisProcess as test_class.redis and `count` RedisSluice servers on it as
    test_class.servers, each with `files(redis_url)` (and `kwargs` for RedisSluice); all are
    stopped by the class cleanup, also when one fails to start."""
    test_class.redis = RedisProcess().start()
    test_class.addClassCleanup(test_class.redis.kill)
    test_class.servers = []
    for _ in range(count):
        s = RedisSluice(files=files(test_class.redis.url), **kwargs)
        test_class.addClassCleanup(s.stop)
        s.start()
        test_class.servers.append(s)
