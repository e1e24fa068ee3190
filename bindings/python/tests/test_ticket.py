"""Tickets: redaction, and the PROTOCOL.md example vector."""

import unittest

if __package__:
    from . import support
else:  # run with -s tests as the top level
    import support

import loopsec

# docs/PROTOCOL.md "Tickets" example.
SECRET = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
TICKET = ("loopsec://127.0.0.1:62893/?mode=auth&id=0011223344556677&secret="
          + SECRET)
REDACTED = ("loopsec://127.0.0.1:62893/?mode=auth&id=0011223344556677"
            "&secret=REDACTED")


class RedactTest(unittest.TestCase):
    def test_vector(self):
        self.assertEqual(loopsec.ticket_redact(TICKET), REDACTED)
        self.assertEqual(loopsec.ticket_redact(TICKET.encode()), REDACTED)

    def test_malformed(self):
        for bad in (TICKET + "\n", TICKET.upper(), TICKET + "&x=1",
                    TICKET.replace("62893", "062893"), TICKET[:-1], ""):
            with self.subTest(bad=bad):
                with self.assertRaises(loopsec.BadTicketError) as cm:
                    loopsec.ticket_redact(bad)
                self.assertIsInstance(cm.exception, ValueError)
                self.assertNotIn(SECRET, str(cm.exception))
                self.assertNotIn(SECRET[:20], repr(cm.exception))

    def test_not_loopback(self):
        t = TICKET.replace("127.0.0.1", "10.0.0.1")
        with self.assertRaises((loopsec.NotLoopbackError,
                                loopsec.BadTicketError)):
            loopsec.ticket_redact(t)

    def test_secret_forms_helper(self):
        forms, raw = support.secret_forms(TICKET)
        self.assertEqual(raw, bytes(range(32)))
        self.assertIn(SECRET, forms)
        self.assertIn(raw.hex(), forms)


if __name__ == "__main__":
    unittest.main()
