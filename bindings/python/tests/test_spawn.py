"""Helper processes: spawn / connect_inherited, spawn_listening / announce."""

import os
import sys
import time
import unittest

if __package__:
    from . import support
else:  # run with -s tests as the top level
    import support

import loopsec



class _Env:
    def setUp(self):
        # The helpers import this loopsec with this library.
        self._saved = dict(os.environ)
        os.environ.update(support.child_env())

    def tearDown(self):
        os.environ.clear()
        os.environ.update(self._saved)


class SpawnTest(_Env, unittest.TestCase):
    def echo(self, helper, ch):
        with helper, ch:
            self.assertGreater(helper.pid, 0)
            self.assertEqual(ch.peer.pid, helper.pid)
            for msg in (b"one", b"", b"x" * 100000):
                ch.send(msg)
                self.assertEqual(ch.recv(timeout=10), msg)
            ch.close()
            self.assertEqual(helper.wait(timeout=10), 0)
            self.assertEqual(helper.poll(), 0)
            self.assertIn("returncode=0", repr(helper))

    def test_spawn_python_helper(self):
        self.echo(*loopsec.spawn(support.helper("helper_echo"), timeout=20))

    def test_spawn_tls(self):
        helper, ch = loopsec.spawn(support.helper("helper_echo") + ["--tls"],
                                   timeout=20, tls=True)
        self.assertEqual(ch.mode, "tls")
        self.echo(helper, ch)

    def test_helper_that_exits_at_once(self):
        t0 = time.monotonic()
        with self.assertRaises(loopsec.ChildExitedError) as cm:
            loopsec.spawn([sys.executable, "-c", "raise SystemExit(3)"],
                          timeout=20)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(cm.exception.code, loopsec.ECHILD)
        self.assertIn("3", cm.exception.detail)

    def test_helper_that_never_connects(self):
        t0 = time.monotonic()
        with self.assertRaises(loopsec.Timeout):
            loopsec.spawn([sys.executable, "-c",
                           "import time; time.sleep(30)"], timeout=0.5)
        self.assertLess(time.monotonic() - t0, 3)

    def test_kill_and_wait(self):
        helper, ch = loopsec.spawn(support.helper("helper_echo"), timeout=20)
        with helper, ch:
            self.assertIsNone(helper.poll())
            self.assertRaises(loopsec.Timeout, helper.wait, 0.1)
            helper.kill()
            self.assertEqual(helper.wait(timeout=10), -9)

    def test_bad_argv(self):
        self.assertRaises(ValueError, loopsec.spawn, [])
        self.assertRaises(ValueError, loopsec.spawn, "python3")
        self.assertRaises(ValueError, loopsec.spawn, ["a\0b"])


class InheritedTest(unittest.TestCase):
    def test_not_started_by_spawn(self):
        saved = os.environ.pop("LOOPSEC_TICKET_FD", None)
        try:
            self.assertRaises(loopsec.NotFoundError,
                              loopsec.connect_inherited, 1)
        finally:
            if saved is not None:
                os.environ["LOOPSEC_TICKET_FD"] = saved


class SpawnListeningTest(_Env, unittest.TestCase):
    def test_kernel_pattern(self):
        for tls in (False, True):
            with self.subTest(tls=tls):
                argv = support.helper("helper_listen") + (
                    ["--tls"] if tls else [])
                helper, ch = loopsec.spawn_listening(argv, timeout=20,
                                                     tls=tls)
                with helper, ch:
                    self.assertEqual(ch.mode, "tls" if tls else "auth")
                    ch.send(b"ping")
                    self.assertEqual(ch.recv(timeout=10), b"ping")
                    ch.close()
                    self.assertEqual(helper.wait(timeout=10), 0)

    def test_announce_not_started_so(self):
        saved = os.environ.pop("LOOPSEC_ANNOUNCE_FD", None)
        try:
            with loopsec.listen() as srv:
                self.assertRaises(loopsec.NotFoundError, loopsec.announce, srv)
        finally:
            if saved is not None:
                os.environ["LOOPSEC_ANNOUNCE_FD"] = saved


if __name__ == "__main__":
    unittest.main()
