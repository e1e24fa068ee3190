"""An installed loopsec package, imported from outside the source tree,
makes one authenticated round trip in each mode (client in a thread).
Prints where the package and the library came from."""

import sys
import threading

import loopsec

if "/bindings/python" in loopsec.__file__:
    sys.exit("py_roundtrip: imported the source tree, not an install: "
             + loopsec.__file__)
for tls in (False, True):
    with loopsec.listen("127.0.0.1:0", tls=tls) as srv:
        got = []

        def client(ticket=srv.ticket):
            with loopsec.connect(ticket, timeout=10) as ch:
                ch.send(b"ping", timeout=10)
                got.append(ch.recv(timeout=10))

        t = threading.Thread(target=client)
        t.start()
        with srv.accept(timeout=10) as ch:
            if ch.recv(timeout=10) != b"ping":
                sys.exit("py_roundtrip: wrong request")
            ch.send(b"pong", timeout=10)
        t.join(20)
        if got != [b"pong"]:
            sys.exit("py_roundtrip: no reply (tls=%s): %r" % (tls, got))
print("py_roundtrip: ok, loopsec %s from %s, library %s at %s"
      % (loopsec.__version__, loopsec.__file__, loopsec.library_version(),
         loopsec.library_path))
