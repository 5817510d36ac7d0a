"""The PostgreSQL harness on its own (postgres_helper.py): it starts, takes a database and a
query, dies on kill() with its connections cut, comes back on the same port with its data, and
stops. The admin and propagation suites rely on each of these steps."""

import socket
import subprocess
import unittest

from postgres_helper import PostgresProcess


class PostgresHarnessTest(unittest.TestCase):
    def test_start_query_kill_restart_stop(self):
        with PostgresProcess() as pg:
            port = pg.port
            self.assertTrue(pg.ready())
            url = pg.create_database("harness")
            self.assertEqual(url, f"postgresql://sluice@127.0.0.1:{port}/harness")
            pg.psql("CREATE TABLE t (v int); INSERT INTO t VALUES (42)", "harness")
            self.assertEqual(pg.psql("SELECT v FROM t", "harness"), "42")

            # A client session open across the kill: the crash cuts it.
            session = subprocess.Popen(
                [f"{pg.bin}/psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(port), "-U", "sluice",
                 "-d", "harness"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            self.addCleanup(session.kill)
            session.stdin.write(b"SELECT 1;\n")
            session.stdin.flush()

            pg.kill()
            self.assertFalse(pg.alive())
            self.assertFalse(pg.ready())
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            try:
                session.stdin.write(b"SELECT 2;\n")
                session.stdin.close()
            except BrokenPipeError:
                pass  # psql saw the connection die and left already
            self.assertNotEqual(session.wait(timeout=10), 0)

            pg.restart()
            self.assertEqual(pg.port, port)
            self.assertEqual(pg.psql("SELECT v FROM t", "harness"), "42")

            pg.stop()
            self.assertFalse(pg.ready())
            pg.restart()
            self.assertEqual(pg.psql("SELECT count(*) FROM t", "harness"), "1")
        self.assertIsNone(pg.dir)


if __name__ == "__main__":
    unittest.main()
