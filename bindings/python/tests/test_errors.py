"""Each exception class from the failure it stands for, and no secret in any
message or repr."""

import os
import socket
import threading
import time
import unittest

if __package__:
    from . import support
else:  # run with -s tests as the top level
    import support

import loopsec



def closed_port():
    """A loopback port that nobody listens on (bound, not listening, so
    nobody else can take it while the test runs)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def accept_in_background(srv, timeout=3):
    """Run srv.accept in a thread (failed attempts do not end it)."""
    box = {}

    def run():
        try:
            box["ch"] = srv.accept(timeout=timeout)
        except Exception as e:
            box["err"] = e
    t = threading.Thread(target=run)
    t.start()
    return t, box


def capture_log(name):
    """A logger named `name` that keeps what it receives, and the list."""
    import logging
    records = []

    class Grab(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    log = logging.getLogger(name)
    log.propagate = False
    log.addHandler(Grab())
    log.setLevel(logging.DEBUG)
    return log, records


class ErrorClassTest(unittest.TestCase):
    def test_wrong_secret_is_auth_error(self):
        with loopsec.listen() as srv:
            forms, raw = support.secret_forms(srv.ticket)
            bad = support.with_param(srv.ticket, "secret", support.b64url(
                bytes(b ^ 0xFF for b in raw)))
            t, box = accept_in_background(srv, 1)
            t0 = time.monotonic()
            with self.assertRaises(loopsec.AuthError) as cm:
                loopsec.connect(bad, timeout=5)
            self.assertLess(time.monotonic() - t0, 2)
            t.join(5)
        self.assertEqual(cm.exception.code, loopsec.EAUTH)
        # The listener did not hand out a channel for the failed attempt.
        self.assertIsInstance(box.get("err"), loopsec.Timeout)

    def test_mode_mismatch(self):
        with loopsec.listen() as srv:
            with self.assertRaises(loopsec.ModeError):
                loopsec.connect(srv.ticket, timeout=5, tls=True)

    def test_mode_edited_in_ticket(self):
        # A tls listener met by an auth client (or the reverse) fails at
        # once, never by timing out, and never talks tls down to auth.  The
        # auth client gets ModeError from the TLS listener's alert; an auth
        # listener closes on a TLS hello without a word, so the tls client
        # sees a refusal (ClosedError, retryable).
        for tls in (True, False):
            with self.subTest(tls=tls), loopsec.listen(tls=tls) as srv:
                edited = support.with_param(srv.ticket, "mode",
                                            "auth" if tls else "tls")
                t, box = accept_in_background(srv, 1)
                t0 = time.monotonic()
                want = loopsec.ModeError if tls else loopsec.ClosedError
                with self.assertRaises(want):
                    loopsec.connect(edited, timeout=5)
                self.assertLess(time.monotonic() - t0, 1)
                t.join(5)
                self.assertNotIn("ch", box)

    def test_closed_port(self):
        s, port = closed_port()
        with s, loopsec.listen() as srv:
            with self.assertRaises(loopsec.ClosedError):
                loopsec.connect(support.with_port(srv.ticket, port), 5)

    def test_bad_ticket(self):
        for t in ("", "loopsec://", "http://127.0.0.1:80/", "loopsec://x"):
            with self.subTest(ticket=t):
                self.assertRaises(loopsec.BadTicketError, loopsec.connect,
                                  t, 1)

    def test_not_loopback_ticket(self):
        with loopsec.listen() as srv:
            t = srv.ticket.replace("127.0.0.1", "10.1.2.3")
            self.assertRaises(loopsec.NotLoopbackError, loopsec.connect, t, 1)

    def test_not_loopback_bind(self):
        self.assertRaises(loopsec.NotLoopbackError, loopsec.listen,
                          "0.0.0.0:1")

    def test_protocol_error_above_max_message(self):
        with support.paired(max_message=1024) as (srv, a, b):
            # The sender does not know the receiver's limit; the receiver
            # refuses the length before allocating anything.
            b.send(b"x" * 4096)
            with self.assertRaises(loopsec.ProtocolError) as cm:
                a.recv(timeout=5)
            self.assertEqual(cm.exception.code, loopsec.EPROTO)

    def test_connection_lost(self):
        with support.paired() as (srv, a, b):
            # Half a frame, then the socket vanishes: a reset, not a clean end.
            fd = os.dup(b.fileno())
            with socket.socket(fileno=fd) as raw:
                raw.send(b"\x00\x00")
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                               b"\x01\x00\x00\x00\x00\x00\x00\x00")
                b.close()
            with self.assertRaises(loopsec.ConnectionLostError) as cm:
                a.recv(timeout=5)
            self.assertEqual(cm.exception.code, loopsec.ERESET)
            self.assertIsInstance(cm.exception, loopsec.ClosedError)


# A known secret (docs/PROTOCOL.md's example), planted into failing calls.
PLANTED = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
PLANTED_TICKET = ("loopsec://127.0.0.1:%d/?mode=%s&id=0011223344556677"
                  "&secret=" + PLANTED)


class PlantedSecretTest(unittest.TestCase):
    def test_planted_secret_never_echoed(self):
        forms, _ = support.secret_forms(PLANTED_TICKET % (1, "auth"))
        s, port = closed_port()
        with s:
            tickets = [PLANTED_TICKET % (port, m) for m in ("auth", "tls")]
            tickets += [t + x for t in tickets for x in ("\n", "=", "&a=b")]
            tickets += [t.replace("127.0.0.1", "10.9.8.7") for t in tickets]
            tickets += [t.replace("secret=", "secret=x") for t in tickets]
            tickets += [t.replace("mode=auth", "mode=AUTH") for t in tickets]
        for t in tickets:
            for fn, args in ((loopsec.connect, (t, 2)),
                             (loopsec.ticket_redact, (t,)),
                             (loopsec.connect_file, (t, 2)),
                             (loopsec.check_address, (t,)),
                             (loopsec.listen, (t,))):
                with self.subTest(fn=fn.__name__, ticket=t.replace(
                        PLANTED, "<planted>")):
                    try:
                        fn(*args)
                    except loopsec.Error as e:
                        for text in (str(e), repr(e), str(e.args), e.detail):
                            for form in forms:
                                self.assertNotIn(form, text)
                    else:
                        if fn is not loopsec.ticket_redact:
                            self.fail("did not fail")


class NoSecretLeakTest(unittest.TestCase):
    """Plant a listener's secret into every failure we can drive; it must
    appear in no exception text, no repr, no log line."""

    def assertClean(self, forms, *texts):
        for text in texts:
            for form in forms:
                self.assertNotIn(form, text)

    def check(self, forms, fn, *args, **kw):
        try:
            fn(*args, **kw)
        except Exception as e:
            self.assertClean(forms, str(e), repr(e), str(e.args),
                             getattr(e, "detail", ""))
            return e
        self.fail("%s did not fail" % fn.__name__)

    def test_no_secret_anywhere(self):
        log, records = capture_log("loopsec.test.secret")
        loopsec.enable_logging(log, loopsec.LOG_DEBUG)
        s, port = closed_port()
        planted = set()
        try:
            for tls in (False, True):
                with loopsec.listen(tls=tls) as srv:
                    ticket = srv.ticket
                    forms, raw = support.secret_forms(ticket)
                    planted |= forms
                    flipped = support.b64url(bytes(b ^ 1 for b in raw))
                    self.assertClean(forms, repr(srv), str(srv),
                                     srv.redacted_ticket)
                    t, _ = accept_in_background(srv, 1)
                    errors = [
                        self.check(forms, loopsec.connect,
                                   support.with_param(ticket, "secret",
                                                      flipped), 3),
                        self.check(forms, loopsec.connect,
                                   support.with_port(ticket, port), 3),
                        self.check(forms, loopsec.connect,
                                   ticket + "\x01", 3),
                        self.check(forms, loopsec.connect, ticket + "\0", 3),
                        self.check(forms, loopsec.connect,
                                   ticket.replace("127.0.0.1", "10.0.0.1"), 3),
                        self.check(forms, loopsec.connect,
                                   ticket.replace("loopsec://", "loopsex://"),
                                   3),
                        self.check(forms, loopsec.connect,
                                   ticket.replace("secret=", "secret=A"), 3),
                        self.check(forms, loopsec.check_address, ticket),
                        self.check(forms, loopsec.listen, ticket),
                        self.check(forms, loopsec.connect_file, ticket, 1),
                    ]
                    if not tls:
                        errors.append(self.check(forms, loopsec.connect,
                                                 ticket, 3, tls=True))
                    t.join(5)
                    for e in errors:
                        self.assertIsInstance(e, loopsec.Error)
        finally:
            loopsec.disable_logging()
            s.close()
        self.assertTrue(planted)
        self.assertTrue(records)  # the failed handshakes were logged
        for line in records:
            self.assertClean(planted, line)

    def test_channel_repr(self):
        with support.paired(tls=True) as (srv, a, b):
            forms, _ = support.secret_forms(srv.ticket)
            self.assertClean(forms, repr(a), repr(b), repr(a.peer))


class LoggingThunkTest(unittest.TestCase):
    """A ctypes callback handed to lsec_set_log is never dropped: a C thread
    that began a log call before the switch may still be running it."""

    def test_thunks_outlive_disable_and_replace(self):
        import gc
        from loopsec import _core
        log, lines = capture_log("loopsec.test.thunks")
        before = len(_core._log_thunks)
        try:
            loopsec.enable_logging(log, loopsec.LOG_DEBUG)
            first = _core._log_callback
            loopsec.disable_logging()
            loopsec.enable_logging(log, loopsec.LOG_DEBUG)
            second = _core._log_callback
            loopsec.enable_logging(log, loopsec.LOG_DEBUG)
            gc.collect()
            kept = _core._log_thunks[before:]
            self.assertEqual(len(kept), 3)
            self.assertIs(kept[0], first)
            self.assertIs(kept[1], second)
            # The one installed last still logs (a failed handshake).
            with loopsec.listen() as srv:
                t, _ = accept_in_background(srv, 1)
                _, raw = support.secret_forms(srv.ticket)
                wrong = support.with_param(
                    srv.ticket, "secret",
                    support.b64url(bytes(x ^ 1 for x in raw)))
                with self.assertRaises(loopsec.Error):
                    loopsec.connect(wrong, 3)
                t.join(5)
        finally:
            loopsec.disable_logging()
        self.assertTrue(lines)


if __name__ == "__main__":
    unittest.main()
