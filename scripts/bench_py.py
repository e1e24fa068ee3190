#!/usr/bin/env python3
"""The Python binding's benchmark (issue 16 item 4), side by side in one run:

  a 64-byte message out and echoed back, timed one by one, through

    loopsec        the binding in this tree, auth mode (Channel.send/recv);
    loopsec-tls    the same in tls mode (context);
    mp             multiprocessing.connection with an authkey (Listener /
                   Client, send_bytes / recv_bytes): the standard library's
                   authenticated local IPC, the anchor;
    pyzmq          pyzmq REQ/REP over tcp://127.0.0.1 (Debian's
                   python3-zmq): the second anchor;
    socket         plain socket.socket with a 4-byte length prefix,
                   sendall / recv_into (context: what Python itself costs);
    ctypes         the client calls lsec_send / lsec_recv straight through
                   ctypes, without the binding's wrapper (context: the
                   floor of any ctypes binding; the server is the binding);
    before         (--before DIR) another checkout's bindings/python
                   against the same library, for after/before ratios.

Usage: bench_py.py [--quick] [--rounds N] [--count N] [--cpu N]
                   [--placement same|split|free] [--before DIR]
                   [--only NAME,NAME]

Every endpoint is a process of its own (client and server of each pair),
all started before the first round and held; with --placement same (the
default) all of them are pinned to one CPU, as scripts/bench.sh pins its
latency tests, so that the ratio measures the software path and not the
luck of cross-CPU wake-ups.  Rounds visit every pair back to back (odd
rounds in reverse); each round gives each pair's median; a ratio is the
median of the per-round ratios of the medians.  The verdict line says
which targets were met.  Exit status: 0, 1 when a target is missed (full
runs only), 2 when a measurement fails.

Credentials (the loopsec ticket, the multiprocessing authkey) travel over
pipes only, never argv or the environment.  Bounded: every child has an
alarm and is ended by pid; every wait has a timeout; only 127.0.0.1.
"""
import argparse
import json
import os
import secrets
import select
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
PKG = os.path.join(SRC, "bindings", "python")
MSG = 64
CHILD_ALARM = 900

TARGETS = (
    # (pair, anchor, limit, what the ratio means)
    ("loopsec", "mp", 1.0),
    ("loopsec", "pyzmq", 1.0),
)


# ---------------------------------------------------------------------------
# Endpoints (run in the child processes).


def _pin(cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def _loopsec_path(pkg):
    if pkg not in sys.path:
        sys.path.insert(0, pkg)


def server(kind, pkg, out, inp):
    """Start the server of `kind`, tell the parent how to reach it (one
    JSON line on `out`), echo until the peer closes."""
    if kind in ("loopsec", "loopsec-tls", "before", "ctypes"):
        _loopsec_path(pkg)
        import loopsec
        srv = loopsec.listen("127.0.0.1:0", tls=kind == "loopsec-tls")
        out.write(json.dumps({"ticket": srv.ticket}) + "\n")
        out.flush()
        ch = srv.accept(timeout=60)
        try:
            for m in ch:
                ch.send(m)
        except loopsec.ClosedError:
            pass
        ch.close()
        srv.close()
    elif kind == "mp":
        from multiprocessing.connection import Listener
        key = bytes.fromhex(inp.readline().strip())
        with Listener(("127.0.0.1", 0), authkey=key) as lst:
            out.write(json.dumps({"port": lst.address[1]}) + "\n")
            out.flush()
            with lst.accept() as c:
                try:
                    while True:
                        c.send_bytes(c.recv_bytes())
                except EOFError:
                    pass
    elif kind == "pyzmq":
        import zmq
        ctx = zmq.Context()
        s = ctx.socket(zmq.REP)
        s.setsockopt(zmq.LINGER, 0)
        port = s.bind_to_random_port("tcp://127.0.0.1")
        out.write(json.dumps({"port": port}) + "\n")
        out.flush()
        while True:
            m = s.recv()
            if m == b"":
                s.send(b"")
                break
            s.send(m)
        s.close()
        ctx.term()
    elif kind == "socket":
        import socket
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        out.write(json.dumps({"port": lst.getsockname()[1]}) + "\n")
        out.flush()
        c, _ = lst.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(65536)
        view = memoryview(buf)
        while _recv_exact(c, view, 4):
            n = int.from_bytes(buf[:4], "big")
            if not _recv_exact(c, view[4:], n):
                break
            c.sendall(view[:4 + n])
        c.close()
        lst.close()


def _recv_exact(s, view, n):
    got = 0
    while got < n:
        k = s.recv_into(view[got:n])
        if k == 0:
            return False
        got += k
    return True


def client(kind, pkg, info, key):
    """Connect to the server of `kind`; return (one_round_trip, close)."""
    msg = bytes(range(MSG))
    if kind in ("loopsec", "loopsec-tls", "before"):
        _loopsec_path(pkg)
        import loopsec
        ch = loopsec.connect(info["ticket"], timeout=30)
        send, recv = ch.send, ch.recv

        def rt():
            send(msg)
            return recv()
        return rt, ch.close
    if kind == "ctypes":
        _loopsec_path(pkg)
        import ctypes
        import loopsec
        from loopsec._lib import LIB
        ch = loopsec.connect(info["ticket"], timeout=30)
        send, recv = LIB.unchecked["lsec_send"], LIB.unchecked["lsec_recv"]
        cp = ctypes.c_void_p.from_param(ch._ptr)
        buf = (ctypes.c_char * 65536)()
        bufp = ctypes.byref(buf)
        capp = ctypes.c_size_t.from_param(len(buf))
        n = ctypes.c_size_t()
        lenp = ctypes.byref(n)
        msgp = ctypes.c_size_t.from_param(len(msg))

        def rt():
            if send(cp, msg, msgp, 500) or recv(cp, bufp, capp, lenp, 500):
                raise SystemExit("bench_py: ctypes: a call failed")
            return buf[:n.value]
        return rt, ch.close
    if kind == "mp":
        from multiprocessing.connection import Client
        c = Client(("127.0.0.1", info["port"]), authkey=key)
        send, recv = c.send_bytes, c.recv_bytes

        def rt():
            send(msg)
            return recv()
        return rt, c.close
    if kind == "pyzmq":
        import zmq
        ctx = zmq.Context()
        s = ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.connect("tcp://127.0.0.1:%d" % info["port"])
        send, recv = s.send, s.recv

        def rt():
            send(msg)
            return recv()

        def close():
            send(b"")
            recv()
            s.close()
            ctx.term()
        return rt, close
    if kind == "socket":
        import socket
        s = socket.create_connection(("127.0.0.1", info["port"]))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        frame = len(msg).to_bytes(4, "big") + msg
        buf = bytearray(65536)
        view = memoryview(buf)

        def rt():
            s.sendall(frame)
            _recv_exact(s, view, 4)
            n = int.from_bytes(buf[:4], "big")
            _recv_exact(s, view, n)
            return bytes(view[:n])
        return rt, s.close
    raise SystemExit("bench_py: unknown kind %s" % kind)


def child_main(args):
    signal.alarm(CHILD_ALARM)
    _pin(args.child_cpu)
    inp, out = sys.stdin, sys.stdout
    if args.role == "server":
        server(args.kind, args.pkg, out, inp)
        return
    # Client: the server's info and the key come on stdin, then commands.
    info = json.loads(inp.readline())
    key = bytes.fromhex(inp.readline().strip())
    rt, close = client(args.kind, args.pkg, info, key)
    want = bytes(range(MSG))
    if rt() != want:
        raise SystemExit("bench_py: %s echoed the wrong bytes" % args.kind)
    out.write("ready\n")
    out.flush()
    clock = time.perf_counter_ns
    for line in inp:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        n, warm = int(cmd[1]), int(cmd[2])
        for _ in range(warm):
            rt()
        samples = [0] * n
        for i in range(n):
            t0 = clock()
            rt()
            samples[i] = clock() - t0
        samples.sort()
        out.write(json.dumps({
            "median": samples[n // 2] / 1e3,
            "p99": samples[min(n - 1, (n * 99) // 100)] / 1e3,
        }) + "\n")
        out.flush()
    close()


# ---------------------------------------------------------------------------
# The parent.


class Pair:
    def __init__(self, kind, pkg, cpus, python, key):
        self.kind = kind
        self.procs = []
        base = [python, os.path.abspath(__file__), "--kind", kind, "--pkg",
                pkg]
        env = dict(os.environ)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        srv = self._start(base + ["--role", "server"] + cpus[0], env)
        if kind == "mp":
            srv.stdin.write(key.hex() + "\n")
            srv.stdin.flush()
        info = self._line(srv, 30)
        cli = self._start(base + ["--role", "client"] + cpus[1], env)
        cli.stdin.write(info + "\n" + key.hex() + "\n")
        cli.stdin.flush()
        if self._line(cli, 60) != "ready":
            raise SystemExit("bench_py: %s client did not start" % kind)
        self.cli = cli

    def _start(self, argv, env):
        p = subprocess.Popen(argv, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=env, text=True)
        self.procs.append(p)
        return p

    def _line(self, p, timeout):
        r, _, _ = select.select([p.stdout], [], [], timeout)
        line = p.stdout.readline() if r else ""
        if not line:
            raise SystemExit("bench_py: %s: no answer from pid %d"
                             % (self.kind, p.pid))
        return line.strip()

    def run(self, n, warm):
        self.cli.stdin.write("run %d %d\n" % (n, warm))
        self.cli.stdin.flush()
        return json.loads(self._line(self.cli, 300))

    def stop(self):
        for p in reversed(self.procs):
            try:
                if p.stdin:
                    p.stdin.close()
            except OSError:
                pass
        for p in reversed(self.procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def have_zmq(python):
    return subprocess.call([python, "-c", "import zmq"],
                           stderr=subprocess.DEVNULL) == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--count", type=int, help="round trips per pair and round")
    ap.add_argument("--cpu", type=int, help="the CPU for --placement same")
    ap.add_argument("--placement", choices=("same", "split", "free"),
                    default="same")
    ap.add_argument("--before", help="another checkout's bindings/python")
    ap.add_argument("--only", help="comma-separated pairs")
    # Child roles (internal).
    ap.add_argument("--role", help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    ap.add_argument("--pkg", default=PKG, help=argparse.SUPPRESS)
    ap.add_argument("--child-cpu", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role:
        child_main(args)
        return 0

    rounds = args.rounds or (3 if args.quick else 9)
    count = args.count or (2000 if args.quick else 10000)
    warm = max(200, count // 10)
    python = sys.executable
    kinds = ["loopsec", "mp", "pyzmq", "socket", "ctypes", "loopsec-tls"]
    if args.before:
        kinds.append("before")
    if args.only:
        kinds = [k for k in args.only.split(",") if k in kinds]
    if "pyzmq" in kinds and not have_zmq(python):
        print("bench_py: pyzmq not importable by %s: skipped" % python)
        kinds.remove("pyzmq")
    avail = sorted(os.sched_getaffinity(0))
    if args.placement == "same":
        cpu = args.cpu if args.cpu is not None else avail[-1]
        cpus = (["--child-cpu", str(cpu)], ["--child-cpu", str(cpu)])
    elif args.placement == "split" and len(avail) > 1:
        cpus = (["--child-cpu", str(avail[0])], ["--child-cpu", str(avail[1])])
    else:
        cpus = ([], [])
    key = secrets.token_bytes(32)
    print("loopsec Python benchmark (%s): %d rounds x %d round trips of %d "
          "bytes, placement %s; load: %s"
          % ("quick" if args.quick else "full", rounds, count, MSG,
             args.placement, os.getloadavg()))
    print("python %s; pairs: %s" % (sys.version.split()[0], ", ".join(kinds)))
    pairs = []
    try:
        for k in kinds:
            pkg = args.before if k == "before" else PKG
            pairs.append(Pair(k, os.path.abspath(pkg), cpus, python, key))
        med = {k: [] for k in kinds}
        p99 = {k: [] for k in kinds}
        for r in range(rounds):
            order = pairs if r % 2 == 0 else list(reversed(pairs))
            for p in order:
                res = p.run(count, warm)
                med[p.kind].append(res["median"])
                p99[p.kind].append(res["p99"])
            print("round %d: %s" % (r + 1, "  ".join(
                "%s %.2f" % (k, med[k][-1]) for k in kinds)), flush=True)
    finally:
        for p in pairs:
            p.stop()

    print("\n%-14s %12s %12s %10s %10s" % ("64 B round trip", "median µs",
                                          "p99 µs", "/ mp", "/ pyzmq"))

    def ratio(a, b):
        if a not in med or b not in med:
            return float("nan")
        return statistics.median(x / y for x, y in zip(med[a], med[b]))
    def fmt(q):
        return "%9.3fx" % q if q == q else "%10s" % "-"
    for k in kinds:
        print("%-14s %12.2f %12.2f %s %s"
              % (k, statistics.median(med[k]), statistics.median(p99[k]),
                 fmt(ratio(k, "mp")), fmt(ratio(k, "pyzmq"))))
    if args.before:
        print("after / before (loopsec / before): %.3fx"
              % ratio("loopsec", "before"))
    missed = 0
    parts = []
    for a, b, lim in TARGETS:
        q = ratio(a, b)
        if q != q:
            parts.append("%s/%s not measured" % (a, b))
            missed += 1
            continue
        ok = q <= lim
        missed += not ok
        parts.append("%s/%s %.3fx <= %.1fx %s"
                     % (a, b, q, lim, "met" if ok else "MISSED"))
    print("\nverdict: %s (load %.2f)" % ("; ".join(parts), os.getloadavg()[0]))
    return 1 if missed and not args.quick else 0


if __name__ == "__main__":
    sys.exit(main())
