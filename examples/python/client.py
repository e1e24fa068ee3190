"""The README's Python client, a second process: connect through the
server's connection file.  Usage: python3 client.py PATH"""
import sys
import time

import loopsec

path = sys.argv[1]
for _ in range(100):                 # the server may not have written it yet
    try:
        ch = loopsec.connect_file(path, timeout=5)     # or loopsec.connect(ticket)
        break
    except loopsec.NotFoundError:
        time.sleep(0.1)
else:
    sys.exit("client: no connection file at " + path)
with ch:
    ch.send(b"hello")
    print("client:", ch.recv(timeout=5))
print("client:", loopsec.port_owner(1))        # None: nobody listens there
try:
    loopsec.check_address("0.0.0.0:80")
except loopsec.NotLoopbackError as e:          # a ValueError too
    print("client:", e.name)
