"""A real PostgreSQL for the integration tests, next to sluice_server.py and redis_helper.py.

PostgresProcess runs `initdb` into a temporary folder and `postgres` on a free loopback port (its
Unix socket in that folder too), as the `postgres` system user when the tests run as root
(PostgreSQL refuses to run as root). Durability against a power cut is off (fsync,
full_page_writes): these databases live for one test run. It can be stopped (fast shutdown),
killed (SIGKILL to the whole server, as in a crash) and started again on the same port and data.

synchronous_commit stays on (unlike tests/testing/postgres_server.h, which never kills): with it
off, a commit is acknowledged before its WAL reaches the kernel, and a SIGKILL right after loses
it; a test that kills the database must find every acknowledged change after the restart. With
fsync off it costs a write(2) per commit, nothing more.
The Python twin of tests/testing/postgres_server.h.

    with PostgresProcess() as pg:
        pg.create_database("a")
        url = pg.url("a")          # postgresql://sluice@127.0.0.1:PORT/a

PostgreSQL is installed by scripts/install-deps.sh: a test that needs it and finds no binaries
fails, it does not skip. Python standard library only.
"""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from sluice_server import free_port

USER = "sluice"  # the superuser initdb creates; trust auth, so no password
# Hang detectors, never assertions on speed (sanitizer CI is slow and has 2 cores).
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def find_bin_dir():
    """The newest /usr/lib/postgresql/*/bin that has initdb; fails when there is none."""
    found = [d for d in glob.glob("/usr/lib/postgresql/*/bin")
             if os.access(os.path.join(d, "initdb"), os.X_OK)]
    if not found:
        raise AssertionError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); "
                             "run scripts/install-deps.sh")
    return max(found, key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0)


class PostgresProcess:
    def __init__(self):
        self.bin = find_bin_dir()
        self.dir = None
        self.port = None
        self.proc = None
        self._ids = None  # (uid, gid) to run as, when running as root

    # --- life cycle ---

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def data(self):
        return os.path.join(self.dir, "data")

    @property
    def log_path(self):
        return os.path.join(self.dir, "postgres.log")

    def start(self):
        """initdb, then postgres on a free port (another one if a parallel test took it)."""
        self.dir = tempfile.mkdtemp(prefix="sluice-pg-")
        try:
            if os.getuid() == 0:
                try:
                    pw = pwd.getpwnam("postgres")
                except KeyError:
                    raise AssertionError("running as root and there is no 'postgres' user")
                self._ids = (pw.pw_uid, pw.pw_gid)
                os.chown(self.dir, *self._ids)
            res = subprocess.run(
                [os.path.join(self.bin, "initdb"), "-D", self.data, "-U", USER, "--auth=trust",
                 "-E", "UTF8", "--no-sync", "--no-instructions"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=self._preexec, cwd=self.dir, timeout=120)
            if res.returncode != 0:
                raise AssertionError(f"initdb failed ({res.returncode}):\n"
                                     f"{res.stdout.decode('utf-8', 'replace')}")
            for _ in range(5):
                self.port = free_port()
                if self._launch():
                    return self
            raise AssertionError(f"postgres did not start; log:\n{self.logs()}")
        except BaseException:
            self.close()
            raise

    def restart(self):
        """Starts the server again on the same port and data, after stop() or kill()."""
        if self.alive():
            raise AssertionError("postgres is running")
        # After a kill the old backends may take a moment to go; postgres refuses to start while
        # they still hold its shared memory, hence the retries.
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._launch():
                return self
            if time.monotonic() > deadline:
                raise AssertionError(f"postgres did not start again on port {self.port}; log:\n"
                                     f"{self.logs()}")
            time.sleep(0.2)

    def stop(self):
        """Fast shutdown (SIGINT): connections are cut, as when a database is taken down."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"postgres did not stop within {STOP_TIMEOUT_S}s")
        self.proc = None

    def kill(self):
        """SIGKILL to the postmaster and every backend at once, as in a crash of the machine:
        connections die without a goodbye, nothing is shut down cleanly."""
        if self.proc is None:
            return
        # Backends run in sessions of their own (postgres calls setsid() in each child), so a
        # process group kill would miss them: freeze the postmaster so that it forks no more,
        # then kill its children and it.
        children = []
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)
            children = _children(self.proc.pid)
            for pid in children:
                _signal(pid, signal.SIGKILL)
            _signal(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        self._wait_gone(children)

    def close(self):
        """Kills the server if it runs and removes its folder. Safe to call more than once."""
        self.kill()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _preexec(self):
        if self._ids is not None:
            os.setgroups([])
            os.setgid(self._ids[1])
            os.setuid(self._ids[0])

    def _launch(self):
        """Starts postgres on self.port and waits until it accepts connections; False if it
        exited instead (port taken, old shared memory still in use)."""
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [os.path.join(self.bin, "postgres"), "-D", self.data, "-p", str(self.port),
                 "-k", self.dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                 "-c", "full_page_writes=off",
                 "-c", "max_connections=200"],
                stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL, cwd=self.dir,
                preexec_fn=self._preexec,
                start_new_session=True)  # no terminal signals (^C) from the test's session
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                return False
            if self.ready():
                return True
            time.sleep(0.05)
        self.kill()
        return False

    def _wait_gone(self, pids, timeout=STOP_TIMEOUT_S):
        """Waits until none of `pids` is a live process (zombies do not count: the machine's
        init may be slow to reap orphans)."""
        deadline = time.monotonic() + timeout
        while any(_live(pid) for pid in pids):
            if time.monotonic() > deadline:
                raise AssertionError(f"postgres processes {pids} are still running")
            time.sleep(0.02)

    # --- using it ---

    def url(self, database="postgres"):
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def ready(self):
        """Whether it accepts connections now (pg_isready)."""
        res = subprocess.run(
            [os.path.join(self.bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", USER, "-d", "postgres", "-t", "2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        return res.returncode == 0

    def psql(self, sql, database="postgres"):
        """Runs `sql` with psql; returns its output (unaligned, tuples only), stripped. Fails on
        an error."""
        res = subprocess.run(
            [os.path.join(self.bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", database, "-c", sql],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        if res.returncode != 0:
            raise AssertionError(f"psql {sql!r} failed ({res.returncode}): {res.stderr}")
        return res.stdout.strip()

    def create_database(self, name):
        """CREATE DATABASE name (a fresh one per server keeps tests apart)."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def logs(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-8000:]
        except (OSError, TypeError):
            return ""


def _stat(pid):
    """/proc/PID/stat's fields after the command name (state, ppid, pgrp, ...), or None when the
    process is gone. The name may hold spaces and parentheses: split after the last ')'."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2:].split()


def _live(pid):
    fields = _stat(pid)
    return fields is not None and fields[0] not in (b"Z", b"X")


def _children(ppid):
    """The pids whose parent is `ppid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(entry)
            if fields is not None and len(fields) >= 2 and int(fields[1]) == ppid:
                found.append(int(entry))
    return found


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
