"""The embeddable library from the outside: `cmake --install` of this build into a temporary
prefix, then examples/embed (a Boost.Beast service with Sluice as middleware) configured and
built on its own against that prefix with find_package(Sluice), as another project would; then
the example serves: limits per user, 429 with the limit headers and the JSON error, 403 for the
deny list, its /metrics; two example processes sharing one real Redis admit exactly the limit
between them; and the library exports nothing but its API.

Needs SLUICE_BUILD_DIR (this build) and SLUICE_CXX (its compiler: a sanitized library needs the
same one).
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import unittest
import urllib.error
import urllib.request

from redis_helper import RedisProcess, require_redis
from sluice_server import free_port

BUILD = os.environ.get("SLUICE_BUILD_DIR", "")
CXX = os.environ.get("SLUICE_CXX", "")
SOURCE = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLE = os.path.join(SOURCE, "examples", "embed")


def run(*args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=900, **kwargs)


class Example:
    """One running embed_example on a free port."""

    def __init__(self, binary, rules, redis_url=None):
        self.port = free_port()
        args = [binary, str(self.port), rules] + ([redis_url] if redis_url else [])
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        line = self.process.stdout.readline()
        if not line.startswith("listening on"):
            self.process.kill()
            raise AssertionError(f"embed_example did not start: {line}{self.process.stdout.read()}")

    def get(self, path, user=None):
        """(status, headers, body) of GET path."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                     headers={"X-User-Id": user} if user else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode()

    def stop(self):
        self.process.terminate()
        code = self.process.wait(timeout=15)
        self.process.stdout.close()
        return code


@unittest.skipUnless(BUILD and CXX, "needs SLUICE_BUILD_DIR and SLUICE_CXX")
class EmbedTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sluice-embed-")
        cls.prefix = os.path.join(cls.tmp, "prefix")
        steps = [
            ("install", ["cmake", "--install", BUILD, "--prefix", cls.prefix,
                         "--component", "library"]),
            ("configure", ["cmake", "-S", EXAMPLE, "-B", os.path.join(cls.tmp, "build"), "-G",
                           "Ninja", f"-DCMAKE_PREFIX_PATH={cls.prefix}",
                           f"-DCMAKE_CXX_COMPILER={CXX}"]),
            ("build", ["cmake", "--build", os.path.join(cls.tmp, "build")]),
        ]
        for name, command in steps:
            done = run(*command)
            if done.returncode != 0:
                raise AssertionError(f"{name} failed: {' '.join(command)}\n{done.stdout}\n"
                                     f"{done.stderr}")
        cls.binary = os.path.join(cls.tmp, "build", "embed_example")
        cls.rules = os.path.join(EXAMPLE, "rules.yaml")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_installed_package_layout(self):
        for rel in ["include/sluice/sluice.h", "lib/cmake/Sluice/SluiceConfig.cmake",
                    "lib/cmake/Sluice/SluiceConfigVersion.cmake",
                    "lib/cmake/Sluice/SluiceTargets.cmake"]:
            found = [p for p in [os.path.join(self.prefix, rel),
                                 os.path.join(self.prefix, rel.replace("lib/", "lib/x86_64-linux-gnu/"))]
                     if os.path.exists(p)]
            self.assertTrue(found, rel)
        # The example ran against the installed library, not the build's.
        ldd = run("ldd", self.binary).stdout
        self.assertIn(os.path.realpath(self.prefix), os.path.realpath(
            [line.split("=>")[1].split()[0] for line in ldd.splitlines() if "libsluice" in line][0]))

    def test_only_the_api_is_exported(self):
        library = [os.path.join(root, f) for root, _, files in os.walk(self.prefix) for f in files
                   if f.startswith("libsluice.so.") and f.count(".") == 4][0]

        def defined(*flags):
            lines = run("nm", "-D", "--defined-only", *flags, library).stdout.splitlines()
            return [line.split(" ", 2) for line in lines]
        mangled, demangled = defined(), defined("-C")
        self.assertEqual(len(mangled), len(demangled))
        exported = [(m[2], d[2]) for m, d in zip(mangled, demangled) if m[1] in "TtWwVvDdBbRru"]
        self.assertTrue(exported)
        # Nothing of Sluice but sluice::embed, and nothing of the libraries linked inside. The
        # standard library's template instances that the API's std types need may be exported
        # (weak, as in any program that uses them); so may a sanitizer runtime's hooks.
        internal = re.compile(r"\bsluice::(?!embed::)|\b(absl|boost|YAML|prometheus|spdlog|fmt|"
                              r"nlohmann|google|grpc|grpc_impl)::")
        c_allowed = ("_init", "_fini", "__bss_start", "_edata", "_end", "__asan", "__ubsan",
                     "__sanitizer", "__sancov", "__odr_asan")
        foreign = [d for m, d in exported
                   if internal.search(d) or (not m.startswith("_Z") and not m.startswith(c_allowed))]
        self.assertEqual(foreign, [], "symbols exported beyond the API")
        for name in ["sluice::embed::Limiter::Create", "sluice::embed::Limiter::Check",
                     "sluice::embed::Limiter::Reload", "sluice::embed::Limiter::SetRules",
                     "sluice::embed::Limiter::Release", "sluice::embed::Version"]:
            self.assertTrue([d for _, d in exported if d.startswith(name + "(")], name)

    def test_memory_store(self):
        example = Example(self.binary, self.rules)
        try:
            for i in range(5):
                status, headers, body = example.get("/hello", user="alice")
                self.assertEqual((status, body), (200, "hello\n"))
                self.assertEqual(headers["X-RateLimit-Limit"], "5")
                self.assertEqual(headers["X-RateLimit-Remaining"], str(4 - i))
                self.assertIn('"per-user"', headers["RateLimit-Policy"])
            status, headers, body = example.get("/hello", user="alice")
            self.assertEqual(status, 429)
            self.assertGreaterEqual(int(headers["Retry-After"]), 1)
            self.assertEqual(json.loads(body)["error"]["code"], "RATE_LIMIT_EXCEEDED")
            self.assertEqual(example.get("/hello", user="bob")[0], 200, "a counter per user")
            status, _, body = example.get("/hello", user="mallory")
            self.assertEqual(status, 403)
            self.assertIn("abuse", body)
            status, _, metrics = example.get("/metrics")
            self.assertEqual(status, 200)
            self.assertIn('sluice_requests_total{result="rejected",rule_id="per-user"} 1', metrics)
        finally:
            self.assertEqual(example.stop(), 0)

    def test_two_processes_share_one_redis(self):
        require_redis()
        with RedisProcess() as redis:
            examples = [Example(self.binary, self.rules, redis.url) for _ in range(2)]
            statuses = []
            lock = threading.Lock()

            def hammer(example):
                for _ in range(20):
                    status = example.get("/hello", user="carol")[0]
                    with lock:
                        statuses.append(status)
            try:
                threads = [threading.Thread(target=hammer, args=(e,)) for e in examples for _ in range(2)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            finally:
                codes = [e.stop() for e in examples]
            self.assertEqual(codes, [0, 0])
            self.assertEqual(len(statuses), 80)
            self.assertEqual(statuses.count(200), 5, "exactly the limit, across both processes")
            self.assertEqual(statuses.count(429), 75)


if __name__ == "__main__":
    unittest.main()
