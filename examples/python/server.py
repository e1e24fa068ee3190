"""The README's Python server: listen, write a connection file, answer one
client.  Usage: python3 server.py PATH   (the client reads PATH)"""
import sys

import loopsec

path = sys.argv[1]
with loopsec.listen("127.0.0.1:0", tls=True) as srv:   # Listener
    srv.write_file(path)             # 0600 connection file for the client
    print("server:", loopsec.port_owner(srv.port))     # PortOwner(...)
    with srv.accept(timeout=30) as ch:                 # Channel
        request = ch.recv(timeout=5)                   # one whole message
        ch.send(b"reply to " + request)
