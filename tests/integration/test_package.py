"""The Debian packages (packaging/): CPack makes them from this build; their contents, control
fields and conffiles are what Debian expects; the server package, unpacked with `dpkg -x` (no
root, no chroot: works here and in CI), validates its shipped config, serves checks from it and
reloads on SIGHUP (what `systemctl reload` sends); and its systemd unit passes
`systemd-analyze verify` with every hardening setting in place.

Needs SLUICE_BUILD_DIR (the CMake build folder: cpack runs there).
"""

import glob
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from sluice_server import free_port, poll

BUILD = os.environ.get("SLUICE_BUILD_DIR", "")


def run(*args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)


@unittest.skipUnless(BUILD and shutil.which("cpack") and shutil.which("dpkg-deb"),
                     "needs SLUICE_BUILD_DIR, cpack and dpkg-deb")
class DebianPackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sluice-package-")
        # gzip rather than xz: the same package, made in a fraction of the time.
        made = run("cpack", "-G", "DEB", "-B", cls.tmp, "-D", "CPACK_DEBIAN_COMPRESSION_TYPE=gzip",
                   cwd=BUILD)
        if made.returncode != 0:
            raise AssertionError(f"cpack failed:\n{made.stdout}\n{made.stderr}")
        debs = {os.path.basename(p).split("_")[0]: p for p in glob.glob(f"{cls.tmp}/*.deb")}
        cls.server_deb = debs.get("sluice")
        cls.library_deb = debs.get("libsluice-dev")
        if cls.server_deb is None or cls.library_deb is None:
            raise AssertionError(f"cpack made {sorted(debs)}, not sluice and libsluice-dev")
        cls.root = os.path.join(cls.tmp, "root")
        unpacked = run("dpkg-deb", "-x", cls.server_deb, cls.root)
        if unpacked.returncode != 0:
            raise AssertionError(unpacked.stderr)
        cls.binary = os.path.join(cls.root, "usr/bin/sluice")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def contents(self, deb):
        listing = run("dpkg-deb", "-c", deb)
        self.assertEqual(listing.returncode, 0, listing.stderr)
        return {line.split()[-1].lstrip(".") for line in listing.stdout.splitlines()}

    def field(self, deb, name):
        return run("dpkg-deb", "-f", deb, name).stdout.strip()

    def control_file(self, deb, name):
        """A file of the package's control archive (conffiles, postinst...), or None."""
        extracted = os.path.join(self.tmp, "control-" + os.path.basename(deb))
        if not os.path.isdir(extracted):
            done = run("dpkg-deb", "-e", deb, extracted)
            self.assertEqual(done.returncode, 0, done.stderr)
        path = os.path.join(extracted, name)
        return path if os.path.exists(path) else None

    def test_server_package_holds_the_service(self):
        files = self.contents(self.server_deb)
        for path in ["/usr/bin/sluice", "/etc/sluice/sluice.yaml", "/etc/sluice/rules/default.yaml",
                     "/etc/default/sluice", "/usr/lib/systemd/system/sluice.service",
                     "/usr/share/man/man1/sluice.1.gz", "/usr/share/doc/sluice/README.md",
                     "/usr/share/doc/sluice/operations.md"]:
            self.assertIn(path, files)
        self.assertFalse([f for f in files if "libsluice" in f or f.endswith(".h")],
                         "the library is libsluice-dev's")

    def test_library_package_holds_the_library(self):
        files = self.contents(self.library_deb)
        self.assertIn("/usr/include/sluice/sluice.h", files)
        self.assertTrue([f for f in files if re.search(r"/libsluice\.so\.\d", f)], files)
        for name in ["SluiceConfig.cmake", "SluiceConfigVersion.cmake", "SluiceTargets.cmake"]:
            self.assertTrue([f for f in files if f.endswith("/cmake/Sluice/" + name)], name)

    def test_control_fields(self):
        self.assertEqual(self.field(self.server_deb, "Package"), "sluice")
        self.assertEqual(self.field(self.server_deb, "Architecture"),
                         run("dpkg", "--print-architecture").stdout.strip())
        self.assertRegex(self.field(self.server_deb, "Version"), r"^\d+\.\d+\.\d+")
        self.assertTrue(self.field(self.server_deb, "Description"))
        # dpkg-shlibdeps wrote the shared libraries the binary needs; each is met here, where
        # the binary runs, by an installed package or one it provides (libspdlog1.10 provides
        # libspdlog1.10-fmt9); an alternative "a | b" is met by either.
        depends = self.field(self.server_deb, "Depends")
        self.assertIn("libc6", depends)
        met = set()
        for line in run("dpkg-query", "-W", "-f=${db:Status-Abbrev}|${Package}|${Provides}\n").stdout.splitlines():
            status, package, provides = line.split("|", 2)
            if status.startswith("ii"):
                met.add(package)
                met.update(p.strip().split()[0] for p in provides.split(",") if p.strip())
        for dep in depends.split(","):
            names = [alt.strip().split()[0] for alt in dep.split("|")]
            self.assertTrue(met.intersection(names), f"dependency {dep.strip()} is not met here")

    def test_configuration_is_conffiles(self):
        conffiles = self.control_file(self.server_deb, "conffiles")
        self.assertIsNotNone(conffiles, "no conffiles: an upgrade would overwrite edits")
        with open(conffiles) as f:
            listed = set(f.read().split())
        self.assertLessEqual({"/etc/sluice/sluice.yaml", "/etc/sluice/rules/default.yaml",
                              "/etc/default/sluice"}, listed)

    def test_maintainer_scripts(self):
        for name in ["postinst", "prerm", "postrm"]:
            path = self.control_file(self.server_deb, name)
            self.assertIsNotNone(path, name)
            self.assertTrue(os.access(path, os.X_OK), f"{name} is not executable")
            checked = run("sh", "-n", path)
            self.assertEqual(checked.returncode, 0, f"{name}: {checked.stderr}")

    def test_shipped_config_validates(self):
        etc = os.path.join(self.root, "etc/sluice")
        done = run(self.binary, "validate", os.path.join(etc, "sluice.yaml"),
                   os.path.join(etc, "rules"))
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.strip(), "ok")

    def test_man_page(self):
        page = run("sh", "-c", f"zcat {self.root}/usr/share/man/man1/sluice.1.gz")
        self.assertEqual(page.returncode, 0, page.stderr)
        for text in [".TH SLUICE", "serve", "validate", "--config", "/etc/sluice/sluice.yaml"]:
            self.assertIn(text, page.stdout)
        if shutil.which("groff"):
            rendered = run("sh", "-c",
                           f"zcat {self.root}/usr/share/man/man1/sluice.1.gz | groff -man -Tutf8 -ww -z")
            self.assertEqual(rendered.stderr, "", "groff warnings")

    def test_unpacked_package_serves_and_reloads(self):
        # The shipped config as it is but for what a test cannot have: /var/lib/sluice and
        # ports that may be taken. Its rules path stays relative (rules/, beside it).
        conf = os.path.join(self.tmp, "etc-sluice")
        shutil.copytree(os.path.join(self.root, "etc/sluice"), conf)
        http_port, grpc_port = free_port(), free_port()
        with open(os.path.join(conf, "sluice.yaml")) as f:
            text = f.read()
        text = text.replace("127.0.0.1:8080", f"127.0.0.1:{http_port}")
        text = text.replace("127.0.0.1:8081", f"127.0.0.1:{grpc_port}")
        text = text.replace("sqlite:///var/lib/sluice/rules.db",
                            f"sqlite://{self.tmp}/state/rules.db")
        os.makedirs(os.path.join(self.tmp, "state"))
        with open(os.path.join(conf, "sluice.yaml"), "w") as f:
            f.write(text)
        log = open(os.path.join(self.tmp, "serve.log"), "wb")
        server = subprocess.Popen([self.binary, "serve", "--config", os.path.join(conf, "sluice.yaml")],
                                  stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{http_port}"
        try:
            def healthy():
                try:
                    with urllib.request.urlopen(base + "/health", timeout=2) as r:
                        return r.status == 200
                except OSError:
                    return False
            poll(healthy, message="the unpacked server answers /health")
            # The shipped rule is in shadow: counted, never refusing.
            for _ in range(150):
                req = urllib.request.Request(base + "/v1/ratelimit/check", method="POST",
                                             data=b'{"ip_address": "198.51.100.7"}')
                with urllib.request.urlopen(req, timeout=5) as r:
                    self.assertEqual(r.status, 200)
            with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
                metrics = r.read().decode()
            self.assertRegex(metrics, r'sluice_requests_total\{result="shadow_rejected",'
                                      r'rule_id="per-address-shadow"\} [1-9]')
            # systemctl reload sends SIGHUP: a new rule comes in.
            with open(os.path.join(conf, "rules", "strict.yaml"), "w") as f:
                f.write("rules:\n  - {id: strict, match: {}, key: [ip_address], limit: 1, "
                        "window: 1m, algorithm: fixed_window}\n")
            server.send_signal(signal.SIGHUP)

            def rejected():
                req = urllib.request.Request(base + "/v1/ratelimit/check", method="POST",
                                             data=b'{"ip_address": "198.51.100.8"}')
                try:
                    urllib.request.urlopen(req, timeout=5).close()
                    return False
                except urllib.error.HTTPError as e:
                    return e.code == 429
            poll(rejected, message="the rule loaded on SIGHUP rejects")
        finally:
            server.send_signal(signal.SIGTERM)
            code = server.wait(timeout=15)
            log.close()
        self.assertEqual(code, 0, open(os.path.join(self.tmp, "serve.log")).read()[-2000:])

    @unittest.skipUnless(shutil.which("systemd-analyze"), "needs systemd-analyze")
    def test_systemd_unit_verifies(self):
        with open(os.path.join(self.root, "usr/lib/systemd/system/sluice.service")) as f:
            unit = f.read()
        settings = {}
        for line in unit.splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                settings.setdefault(key, []).append(value)
        for key, value in [("DynamicUser", "yes"), ("ProtectSystem", "strict"),
                           ("StateDirectory", "sluice"), ("ProtectHome", "yes"),
                           ("NoNewPrivileges", "yes"), ("PrivateTmp", "yes"),
                           ("CapabilityBoundingSet", ""), ("Type", "exec")]:
            self.assertIn(value, settings.get(key, []), key)
        self.assertEqual(settings["ExecReload"], ["/bin/kill -HUP $MAINPID"])
        self.assertEqual(settings["ExecStart"],
                         ["/usr/bin/sluice serve --config /etc/sluice/sluice.yaml"])
        # verify checks that the commands exist: point them at the unpacked binary. It warns
        # (on stderr, exit status 0) of a setting it cannot parse: any output is a failure.
        folder = os.path.join(self.tmp, "unit")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "sluice.service")
        with open(path, "w") as f:
            f.write(unit.replace("/usr/bin/sluice", self.binary))
        done = run("systemd-analyze", "verify", "--man=no", path)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual((done.stdout + done.stderr).strip(), "")


if __name__ == "__main__":
    unittest.main()
