"""A helper for spawn(): connect back with the inherited ticket and echo
every message until the parent closes.  Exercises connect_inherited()."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import loopsec  # noqa: E402

tls = "--tls" in sys.argv[1:]
with loopsec.connect_inherited(timeout=10, tls=tls or None) as ch:
    # The library removed the variable naming the ticket descriptor; the
    # binding keeps os.environ in step, so our own children do not see it.
    assert "LOOPSEC_TICKET_FD" not in os.environ
    for msg in ch:
        ch.send(msg)
