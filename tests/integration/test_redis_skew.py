"""Clock skew: two `sluice` processes whose system clocks differ share one Redis and still agree on
every window, because the scripts run on Redis `TIME`, never on the caller's clock.

Server A runs on the real clock (the one redis-server uses). Server B runs under libfaketime
(Debian package `faketime`) with its wall clock OFFSET_S behind: 37 min 30.25 s, which is not a
multiple of any window here (29.75 s off a 1-minute boundary, 1349.75 s off an hour's), so B's
local windows and A's never line up. The monotonic clocks stay real
(FAKETIME_DONT_FAKE_MONOTONIC=1): Asio timers and the over-limit cache run on them.

Asserted, for every algorithm, with requests alternating B, A, B, A... on one key:
- exactly `limit` admitted, the first `limit` requests, as with either server alone;
- every rejection, whichever server answers it, reports the same `RateLimit` t= (seconds until the
  state is fresh) and `Retry-After`, up to the time elapsed between the answers plus rounding;
- `X-RateLimit-Reset`, an absolute Unix time, is on each server's own clock: B's is OFFSET_S off A's
  (this, and B's log timestamps, show that the offset really applies inside B).
The Envoy path (`POST /json`) is checked the same way. As a contrast, two servers on the memory
store report fixed-window resets about 30 s apart.

No assertion depends on speed: a run that straddles a Redis window boundary, or lasts long enough
for a bucket to refill a token, is detected from Redis `TIME` read before and after, and repeated
on a fresh key.
"""

import contextlib
import datetime
import json
import math
import os
import re
import socket
import time
import unittest

from redis_helper import RedisProcess, RedisSluice
from sluice_server import SluiceServer, poll, unique

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
OFFSET_S = -2250.25  # server B's wall clock minus the real one

LIMIT = 10
REQUESTS = 2 * LIMIT + 4
ATTEMPTS = 4  # runs on fresh keys before a run that keeps straddling a boundary is a failure

WINDOW_S = {
    "fixed_window": 60, "sliding_window_counter": 60, "sliding_window_log": 60,
    "token_bucket": 3600, "gcra": 3600, "leaky_bucket": 3600,
}
ALGORITHMS = list(WINDOW_S)
ENVOY_UNIT = {60: "minute", 3600: "hour"}

RULES = "rules:\n" + "".join(
    f"  - id: {a}\n"
    f"    match: {{endpoint: /{a}}}\n"
    "    key: [user_id]\n"
    f"    limit: {LIMIT}\n"
    f"    window: {WINDOW_S[a]}s\n"
    f"    algorithm: {a}\n"
    for a in ALGORITHMS)

DOMAIN = "domain: skew\ndescriptors:\n" + "".join(
    f"  - key: {a}\n"
    "    rate_limit:\n"
    f"      unit: {ENVOY_UNIT[WINDOW_S[a]]}\n"
    f"      requests_per_unit: {LIMIT}\n"
    f"      algorithm: {a}\n"
    for a in ALGORITHMS)

FILES = {"rules.yaml": RULES, "envoy.yaml": DOMAIN}


def require_faketime():
    if not os.path.exists(FAKETIME_LIB):
        raise unittest.SkipTest(f"{FAKETIME_LIB} is missing (Debian package faketime)")


@contextlib.contextmanager
def skewed_clock(offset_s):
    """Processes started inside get a wall clock offset_s off the real one (the test's own
    clock is untouched: the environment only takes effect when a program is executed)."""
    changes = {"LD_PRELOAD": FAKETIME_LIB, "FAKETIME": f"{offset_s:+.2f}",
               "FAKETIME_DONT_FAKE_MONOTONIC": "1",
               # Under AddressSanitizer the preloaded library comes before ASan's runtime,
               # which ASan refuses unless told that this order is intended.
               "ASAN_OPTIONS": ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                      "verify_asan_link_order=0"]))}
    saved = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def redis_time_us(port):
    """Redis `TIME` in microseconds since the epoch."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"*1\r\n$4\r\nTIME\r\n")
        data = b""
        while data.count(b"\r\n") < 5:
            chunk = s.recv(256)
            if not chunk:
                raise AssertionError(f"redis closed the connection: {data!r}")
            data += chunk
    lines = data.split(b"\r\n")  # *2, $n, seconds, $n, microseconds
    return int(lines[2]) * 1_000_000 + int(lines[4])


def quiet(algorithm, before_us, after_us):
    """Whether a run between these two Redis times saw no window start and no refill, so that
    exactly LIMIT admissions is the only right answer."""
    w = WINDOW_S[algorithm] * 1_000_000
    if algorithm in ("fixed_window", "sliding_window_counter"):
        return before_us // w == after_us // w
    if algorithm == "sliding_window_log":
        return after_us - before_us < w
    return after_us - before_us < w // LIMIT  # a bucket refills one token per window / limit


def started_line(server):
    """The server's `started` log line, or None before it is written."""
    for line in server.logs_bytes().decode("utf-8", "replace").splitlines():
        if '"event":"started"' in line:
            return line
    return None


def log_time(line):
    """The `time` of a JSON log line, as seconds since the epoch."""
    stamp = json.loads(line)["time"]
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


class Answer:
    """One check: which server, its response, and when (test's monotonic clock) it was sent and
    its answer received."""

    def __init__(self, name, res, sent, received):
        self.name, self.res, self.sent, self.received = name, res, sent, received
        self.status = res.status

    def t(self):
        """`RateLimit: ...;t=N` (HTTP check) or `RateLimit-Reset: N` (Envoy): whole seconds until
        the state is fresh, rounded up."""
        m = re.search(r";t=(\d+)", self.res.header("RateLimit", ""))
        if m:
            return int(m.group(1))
        return int(self.res.header("RateLimit-Reset"))

    def retry_after(self):
        return int(self.res.header("Retry-After"))

    def reset_at(self):
        return int(self.res.header("X-RateLimit-Reset"))

    def duration_until_reset(self):
        return float(self.res.json()["statuses"][0]["durationUntilReset"].rstrip("s"))

    def __repr__(self):
        return f"<{self.name} {self.res!r}>"


def slack(first, later):
    """Allowed difference in whole seconds between two rounded-up times reported by answers
    `first` and `later`: the time from sending the first to receiving the later, rounded up,
    plus one for each value's rounding."""
    return math.ceil(later.received - first.sent) + 2


class RedisSkewTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_faketime()
        cls.redis = RedisProcess().start()
        cls.a = cls.b = None
        try:
            # The real time (this process's clock) before and after each server started.
            cls.start_window = {}
            cls.a = RedisSluice(files=FILES, rules=["rules.yaml", "envoy.yaml"],
                                extra_args=["--store", cls.redis.url])
            started = time.time()
            cls.a.start()
            cls.start_window["a"] = (started, time.time())
            cls.b = RedisSluice(files=FILES, rules=["rules.yaml", "envoy.yaml"],
                                extra_args=["--store", cls.redis.url])
            started = time.time()
            with skewed_clock(OFFSET_S):
                cls.b.start()
            cls.start_window["b"] = (started, time.time())
            cls.started_lines = {name: poll(lambda: started_line(s), message="a started event")
                                 for name, s in (("a", cls.a), ("b", cls.b))}
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for s in (cls.a, cls.b):
            if s is not None and s.proc is not None:
                s.stop()
        cls.redis.kill()

    # --- helpers ---

    def send(self, names, key, algorithm, envoy=False, count=REQUESTS):
        """`count` checks on `key`, cycling through servers `names` ("a", "b")."""
        answers = []
        for i in range(count):
            name = names[i % len(names)]
            server = getattr(self, name)
            sent = time.monotonic()
            if envoy:
                res = server.request("POST", "/json", body={
                    "domain": "skew",
                    "descriptors": [{"entries": [{"key": algorithm, "value": key}]}]})
            else:
                res = server.check(user_id=key, endpoint=f"/{algorithm}")
            answers.append(Answer(name, res, sent, time.monotonic()))
        return answers

    def run_quietly(self, algorithm, names, envoy=False):
        """send() on fresh keys until a run fits in a stretch of Redis time where nothing
        refills or rolls over (almost always the first)."""
        for _ in range(ATTEMPTS):
            before = redis_time_us(self.redis.port)
            answers = self.send(names, unique(algorithm), algorithm, envoy)
            if quiet(algorithm, before, redis_time_us(self.redis.port)):
                return answers
        self.fail(f"{ATTEMPTS} runs in a row crossed a window boundary or a refill")

    def assertExactlyTheLimit(self, answers):
        self.assertEqual([a.status for a in answers],
                         [200] * LIMIT + [429] * (len(answers) - LIMIT), answers)

    def assertRejectionsAgree(self, answers, envoy=False, algorithm=None):
        """Every rejection reports the state as the first rejection did, whichever server
        answers. On the check API rejections charge nothing, so the state does not change; on
        the Envoy API an over-limit descriptor is charged its hit (CONTRACT §6), so a bucket's
        reset moves one emission interval later per rejection, on either server alike."""
        rejected = [a for a in answers if a.status == 429]
        self.assertEqual({a.name for a in rejected}, {"a", "b"})
        first = rejected[0]
        step = 0
        if envoy and algorithm in ("token_bucket", "gcra", "leaky_bucket"):
            step = WINDOW_S[algorithm] / LIMIT
        for k, later in enumerate(rejected[1:], start=1):
            margin = slack(first, later)
            if envoy:
                self.assertLessEqual(
                    abs(later.duration_until_reset() - first.duration_until_reset() - k * step),
                    margin, (first, later))
            else:
                self.assertLessEqual(abs(later.t() - first.t()), margin, (first, later))
                self.assertEqual(later.res.json()["error"]["remaining"], 0, later)
                self.assertLessEqual(abs(later.retry_after() - first.retry_after()), margin,
                                     (first, later))

    # --- tests ---

    def test_the_offset_applies_inside_server_b(self):
        for name, offset in (("a", 0), ("b", OFFSET_S)):
            lo, hi = (t + offset for t in self.start_window[name])
            line = self.started_lines[name]
            # Log times have microseconds; one second either side for the test's own reading.
            self.assertGreaterEqual(log_time(line), lo - 1, line)
            self.assertLessEqual(log_time(line), hi + 1, line)
        for s in (self.a, self.b):
            health = s.health()
            self.assertEqual(health["status"], "healthy", health)
            self.assertEqual(health["store"]["backend"], "redis", health)

    def test_alternating_servers_admit_exactly_what_one_server_admits(self):
        for algorithm in ALGORITHMS:
            for names in (("b", "a"), ("a",), ("b",)):
                with self.subTest(algorithm=algorithm, servers=names):
                    # B first: had it counted on its own clock, 37 minutes behind, A's newer
                    # window or refill would then hand out more than the limit.
                    self.assertExactlyTheLimit(self.run_quietly(algorithm, names))

    def test_both_servers_report_the_same_reset_and_retry_after(self):
        for algorithm in ALGORITHMS:
            with self.subTest(algorithm=algorithm):
                answers = self.run_quietly(algorithm, ("b", "a"))
                self.assertExactlyTheLimit(answers)
                self.assertRejectionsAgree(answers)
                # The relative times are Redis's; the absolute one is each server's now plus
                # them, so B's is on B's clock.
                for prev, cur in zip(answers, answers[1:]):
                    if prev.status == cur.status == 429:
                        a, b = (prev, cur) if prev.name == "a" else (cur, prev)
                        self.assertLessEqual(abs(b.reset_at() - a.reset_at() - OFFSET_S),
                                             slack(prev, cur), (a, b))

    def test_envoy_json_agrees_across_servers(self):
        for algorithm in ALGORITHMS:
            if algorithm == "fixed_window":
                continue  # test_envoy_json_fixed_window_agrees_across_servers
            with self.subTest(algorithm=algorithm):
                answers = self.run_quietly(algorithm, ("b", "a"), envoy=True)
                self.assertExactlyTheLimit(answers)
                self.assertRejectionsAgree(answers, envoy=True, algorithm=algorithm)

    # The Envoy path reports a fixed window's durationUntilReset as the time to the end of the
    # window; for a used window that end comes from the store (Redis's clock), so B and A agree.
    def test_envoy_json_fixed_window_agrees_across_servers(self):
        answers = self.run_quietly("fixed_window", ("b", "a"), envoy=True)
        self.assertExactlyTheLimit(answers)
        self.assertRejectionsAgree(answers, envoy=True)

    def test_contrast_memory_stores_disagree_on_fixed_windows(self):
        """The same pair on the memory store, each on its own clock: a fresh key's fixed window
        ends about 29.75 s apart (OFFSET_S modulo 60 s), where the shared store says the same."""
        a = SluiceServer(files=FILES, rules=["rules.yaml", "envoy.yaml"])
        b = SluiceServer(files=FILES, rules=["rules.yaml", "envoy.yaml"])
        with a:
            with skewed_clock(OFFSET_S):
                b.start()
            try:
                self.a_mem, self.b_mem = a, b
                key = unique("memory")
                first, second = self.send_pair(key)
            finally:
                b.stop()
        for x in (first, second):
            self.assertEqual(x.status, 200, x)
        margin = slack(first, second)
        if margin >= 28:
            self.skipTest(f"{margin} s between two requests: too slow to tell 30 s apart")
        diff = (first.t() - second.t()) % 60
        self.assertGreater(min(diff, 60 - diff), margin, (first, second))

    def send_pair(self, key):
        answers = []
        for name, server in (("a", self.a_mem), ("b", self.b_mem)):
            sent = time.monotonic()
            res = server.check(user_id=key, endpoint="/fixed_window")
            answers.append(Answer(name, res, sent, time.monotonic()))
        return answers


if __name__ == "__main__":
    unittest.main()
