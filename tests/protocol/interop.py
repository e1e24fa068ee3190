#!/usr/bin/env python3
"""Live interoperability: the independent Python peer (ref_peer.py, written
from docs/PROTOCOL.md alone) against the C library, both ways, through the
loopsec CLI.  Usage: interop.py PATH/TO/loopsec"""

import os
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_peer  # noqa: E402

CLI = sys.argv[1]
failures = []
passed = [0]


def check(cond, what):
    if cond:
        passed[0] += 1
    else:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def c_listener_python_client():
    p = subprocess.Popen([CLI, "listen"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ticket = p.stderr.readline().decode().strip()  # never on stdout
        t = ref_peer.parse_ticket(ticket)
        # A wrong secret first: the Python client must see EAUTH, and the
        # listener must keep waiting for the right peer.
        bad = ref_peer.build_ticket(t["host"], t["port"], ref_peer.MODE_AUTH,
                                    t["id"], os.urandom(32))
        with socket.create_connection((t["host"], t["port"]), timeout=5) as s:
            try:
                ref_peer.handshake_client(s, bad)
                check(False, "wrong secret accepted by the C listener")
            except ref_peer.ProtocolError as e:
                check(e.code == "EAUTH", "wrong secret gave %s" % e.code)
        with socket.create_connection((t["host"], t["port"]), timeout=5) as s:
            ref_peer.handshake_client(s, ticket)
            ref_peer.send_msg(s, b"from the python client\n")
            p.stdin.write(b"from the C listener\n")
            p.stdin.close()
            check(ref_peer.recv_msg(s) == b"from the C listener\n",
                  "python client did not get the listener's message")
            check(ref_peer.recv_msg(s) is None, "no clean end after stdin EOF")
        p.wait(10)
        out, err = p.stdout.read(), p.stderr.read()
        check(out == b"from the python client\n", "listener printed %r" % out)
        check(p.returncode == 0, "listener exit %s: %r" % (p.returncode, err))
    finally:
        if p.poll() is None:
            p.kill()


def python_listener_c_client():
    secret = os.urandom(32)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)
    port = srv.getsockname()[1]
    ticket = ref_peer.build_ticket("127.0.0.1", port, ref_peer.MODE_AUTH,
                                   os.urandom(8), secret)
    result = {}

    def serve():
        try:
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(10)
                ref_peer.handshake_server(conn, secret)
                result["msg"] = ref_peer.recv_msg(conn)
                ref_peer.send_msg(conn, b"reply from python\n")
                result["end"] = ref_peer.recv_msg(conn)
        except Exception as e:  # reported below
            result["error"] = repr(e)

    th = threading.Thread(target=serve)
    th.start()
    # The ticket goes through a connection file, never argv.
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                        "loopsec-interop-%d.ticket" % os.getpid())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, ticket.encode() + b"\n")
    os.close(fd)
    try:
        r = subprocess.run([CLI, "connect", "--ticket-file", path],
                           input=b"hello from C\n", capture_output=True,
                           timeout=10)
    finally:
        os.unlink(path)
    th.join(10)
    srv.close()
    check("error" not in result, "python server: %s" % result.get("error"))
    check(result.get("msg") == b"hello from C\n", "python server got %r" %
          result.get("msg"))
    check(r.returncode == 0, "C client exit %d: %r" % (r.returncode, r.stderr))


c_listener_python_client()
python_listener_c_client()
print("%d passed, %d failed" % (passed[0], len(failures)))
sys.exit(1 if failures else 0)
