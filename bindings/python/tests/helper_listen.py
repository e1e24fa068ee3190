"""A helper for spawn_listening(): listen, announce the ticket to the
parent over the inherited descriptor, accept one peer and echo."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import loopsec  # noqa: E402

tls = "--tls" in sys.argv[1:]
with loopsec.listen("127.0.0.1:0", tls=tls) as srv:
    loopsec.announce(srv)
    with srv.accept(timeout=10) as ch:
        for msg in ch:
            ch.send(msg)
