"""check_address, port_owner and `python3 -m loopsec check|who`."""

import os
import socket
import subprocess
import sys
import unittest

if __package__:
    from . import support
else:  # run with -s tests as the top level
    import support

import loopsec

REFUSED_NOT_LOOPBACK = [
    "0.0.0.0:80", "10.0.0.1:80", "192.168.1.1:22", "8.8.8.8:53",
    "[::]:80", "[::ffff:127.0.0.1]:80", "[fe80::1%lo]:80",
    "example.com:80", "127.0.0.2:80",
]
REFUSED_ANY = REFUSED_NOT_LOOPBACK + [
    "127.1:80", "0x7f.0.0.1:80", "0177.0.0.1:80", "2130706433:80",
    "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:-1",
    "127.0.0.1:80x", " 127.0.0.1:80", "127.0.0.1:80 ", "::1:80",
    "[::1]", "LOCALHOST:80", "localhost.:80", "", "127.0.0.1:0x50",
]


class CheckAddressTest(unittest.TestCase):
    def test_accepted_forms(self):
        self.assertEqual(loopsec.check_address("127.0.0.1:80"), "127.0.0.1:80")
        self.assertEqual(loopsec.check_address("[::1]:443"), "[::1]:443")
        self.assertEqual(loopsec.check_address("localhost:8080"),
                         "127.0.0.1:8080")
        self.assertEqual(loopsec.check_address("127.0.0.1:0"), "127.0.0.1:0")

    def test_refused_forms(self):
        for text in REFUSED_ANY:
            with self.subTest(text=text):
                with self.assertRaises(ValueError) as cm:
                    loopsec.check_address(text)
                self.assertIsInstance(cm.exception, (
                    loopsec.NotLoopbackError, loopsec.InvalidArgumentError))

    def test_not_loopback_class(self):
        for text in REFUSED_NOT_LOOPBACK:
            with self.subTest(text=text):
                self.assertRaises(loopsec.NotLoopbackError,
                                  loopsec.check_address, text)

    def test_127_8_opt_in(self):
        self.assertEqual(loopsec.check_address("127.0.0.2:80",
                                               allow_127_8=True),
                         "127.0.0.2:80")

    def test_bad_arguments(self):
        self.assertRaises(TypeError, loopsec.check_address, 80)
        self.assertRaises(loopsec.InvalidArgumentError,
                          loopsec.check_address, "127.0.0.1:80\0junk")

    def test_message_has_reason(self):
        with self.assertRaises(loopsec.NotLoopbackError) as cm:
            loopsec.check_address("0.0.0.0:1")
        e = cm.exception
        self.assertEqual(e.code, loopsec.ENOTLOOPBACK)
        self.assertEqual(e.name, "LSEC_ENOTLOOPBACK")
        self.assertTrue(str(e).startswith(e.strerror))


class PortOwnerTest(unittest.TestCase):
    def test_own_listener(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            owner = loopsec.port_owner(s.getsockname()[1])
        self.assertIsNotNone(owner)
        self.assertEqual(owner.pid, os.getpid())
        self.assertEqual(owner.uid, os.getuid())
        self.assertTrue(owner.command)

    def test_nobody(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))   # bound, not listening
            self.assertIsNone(loopsec.port_owner(s.getsockname()[1]))

    def test_bad_port(self):
        self.assertRaises(loopsec.InvalidArgumentError, loopsec.port_owner,
                          70000)
        self.assertRaises(TypeError, loopsec.port_owner, "80")


def _run(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                          env=support.child_env())


class MainTest(unittest.TestCase):
    """python3 -m loopsec mirrors the C tool: exit 0/1/2, one stderr line."""

    PY = [sys.executable, "-m", "loopsec"]

    def test_check(self):
        r = _run(self.PY + ["check", "localhost:80"])
        self.assertEqual((r.returncode, r.stdout, r.stderr),
                         (0, "127.0.0.1:80\n", ""))
        r = _run(self.PY + ["check", "0.0.0.0:80"])
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
        self.assertIn("not an accepted loopback address", r.stderr)

    def test_usage(self):
        self.assertEqual(_run(self.PY).returncode, 2)
        self.assertEqual(_run(self.PY + ["check"]).returncode, 2)
        self.assertEqual(_run(self.PY + ["frobnicate"]).returncode, 2)
        self.assertEqual(_run(self.PY + ["who", "x"]).returncode, 2)

    def test_who(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            r = _run(self.PY + ["who", str(port)])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(str(os.getpid()), r.stdout)
        r = _run(self.PY + ["who", str(port)])
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)

    def test_who_lists_listeners(self):
        with socket.socket() as s, socket.socket() as w:
            s.bind(("127.0.0.1", 0))
            s.listen()
            w.bind(("0.0.0.0", 0))   # only bound and listening
            w.listen()
            port, wport = s.getsockname()[1], w.getsockname()[1]
            r = _run(self.PY + ["who"])
            self.assertEqual(r.returncode, 0, r.stderr)
            lines = r.stdout.splitlines()
            self.assertTrue(lines[0].startswith("ADDRESS "), lines[0])
            mine = [x for x in lines if x.startswith("127.0.0.1:%d " % port)]
            wild = [x for x in lines if x.startswith("0.0.0.0:%d " % wport)]
            self.assertEqual(len(mine), 1, r.stdout)
            self.assertIn(" %d " % os.getpid(), mine[0])
            self.assertNotIn("reachable", mine[0])
            self.assertEqual(len(wild), 1, r.stdout)
            self.assertIn("reachable from other hosts", wild[0])
            r = _run(self.PY + ["who", str(wport)])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(r.stdout.startswith("0.0.0.0:%d: pid %d "
                                                % (wport, os.getpid())),
                            r.stdout)

    def test_listeners(self):
        with socket.socket() as s, socket.socket() as w:
            s.bind(("127.0.0.1", 0))
            s.listen()
            w.bind(("0.0.0.0", 0))
            w.listen()
            port, wport = s.getsockname()[1], w.getsockname()[1]
            every = loopsec.listeners()
            mine = [e for e in every if e.port == port]
            self.assertEqual(len(mine), 1, every)
            self.assertEqual(mine[0].address, "127.0.0.1:%d" % port)
            self.assertFalse(mine[0].wildcard)
            self.assertEqual(mine[0].pid, os.getpid())
            self.assertEqual(mine[0].uid, os.geteuid())
            self.assertTrue(mine[0].command)
            (wild,) = loopsec.listeners(wport)
            self.assertEqual(wild.address, "0.0.0.0:%d" % wport)
            self.assertTrue(wild.wildcard)
        self.assertEqual(loopsec.listeners(port), [])
        self.assertRaises(loopsec.InvalidArgumentError, loopsec.listeners, 0)
        self.assertRaises(TypeError, loopsec.listeners, "80")

    @unittest.skipUnless(support.CLI, "LOOPSEC_CLI not set")
    def test_same_as_c_tool(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = str(s.getsockname()[1])
            with socket.socket() as free:
                free.bind(("127.0.0.1", 0))    # bound, nobody listens
                nobody = str(free.getsockname()[1])
                cases = [
                    ["check", "localhost:80"], ["check", "0.0.0.0:80"],
                    ["check", "[::1]:1"], ["check", "127.1:80"],
                    ["check", "127.0.0.2:80"],
                    ["check", "--allow-127-8", "127.0.0.2:80"],
                    ["check", "--", "127.0.0.1:1"], ["check", "-x"],
                    ["check", "a", "b"], ["check", "127.0.0.1:99999"],
                    ["check"], ["who", port], ["who", nobody], ["who", "x"],
                    # (not a bare ["who"]: the machine's listeners may
                    # change between the two runs)
                    ["who", "080"], ["who", "0"], ["who", "1", "2"],
                    ["nope"], [],
                    ["--bogus"], ["--version"],
                ]
                for args in cases:
                    with self.subTest(args=args):
                        c = _run([support.CLI] + args)
                        p = _run(self.PY + args)
                        self.assertEqual(p.returncode, c.returncode,
                                         p.stderr + c.stderr)
                        self.assertEqual(p.stdout, c.stdout)
                        if c.returncode == 1:
                            self.assertEqual(p.stderr, c.stderr)


if __name__ == "__main__":
    unittest.main()
