#!/usr/bin/env python3
"""The command-line benchmark (issue 14), side by side in one run:

  relay:  SIZE bytes through `loopsec listen`/`loopsec connect` (auth, tls)
          against socat and nc doing the same (one TCP stream on loopback,
          stdin to stdout);
  guard:  serve/forward against stunnel4 (TLS PSK) and spiped pairs doing
          the same job: client -> Unix socket -> client proxy -> loopback TCP
          -> server proxy -> TCP backend.  Throughput of 64 KiB writes, and
          connection setup plus one 64-byte request/response.

Usage: bench_cli.py PATH/TO/loopsec [--relay-mib N] [--guard-mib N]
                    [--setups N] [--repeat N] [--rounds N]
                    [--only relay|guard]
                    [--before PATH/TO/other/loopsec]
Prints every figure and the ratios: the relay takes the median of --repeat
runs; the guard runs --rounds rounds (default 9), each visiting every pair
(odd rounds in reverse), and its ratios are the medians of the per-round
ratios.
--before also runs a second loopsec build (e.g. main's) in the same run,
interleaved with the first, and prints the after/before ratios.
Bounded: every child is ended by pid, every wait has a timeout.
"""
import argparse
import os
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TMP = tempfile.mkdtemp(prefix="lsec-bench-")
os.chmod(TMP, 0o700)
CHILDREN = []


def start(argv, **kw):
    p = subprocess.Popen(argv, stdin=kw.pop("stdin", subprocess.DEVNULL),
                         stdout=kw.pop("stdout", subprocess.DEVNULL),
                         stderr=kw.pop("stderr", subprocess.DEVNULL), **kw)
    CHILDREN.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def free_port():
    # Only for the comparison tools, which cannot be told to pick one.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, what, secs=10):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.01)
    raise SystemExit("bench: %s did not come up" % what)


def can_connect(addr):
    fam = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    try:
        with socket.socket(fam) as s:
            s.connect(addr)
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# relay: SIZE bytes stdin -> stdout through one stream

def feed(n):
    """A process writing n zero bytes to its stdout (the same for all)."""
    return ["head", "-c", str(n), "/dev/zero"]


def time_pipeline(sender, receiver_start, n):
    recv = receiver_start()
    src = start(feed(n), stdout=subprocess.PIPE)
    t0 = time.monotonic()
    snd = start(sender, stdin=src.stdout)
    src.stdout.close()
    for p in (snd, recv, src):
        if p.wait(300) != 0:
            raise SystemExit("bench: %s exited %d" % (p.args, p.returncode))
    return time.monotonic() - t0


def relay_loopsec(cli, mode, n):
    t = os.path.join(TMP, "relay.ticket")

    def receiver():
        if os.path.exists(t):
            os.unlink(t)
        p = start([cli, "listen", "--ticket-file", t] + mode)
        wait_until(lambda: os.path.exists(t), "loopsec listen")
        return p
    return time_pipeline([cli, "connect", "--ticket-file", t] + mode,
                         receiver, n)


def relay_socat(n):
    port = free_port()

    def receiver():
        p = start(["socat", "-u", "-b", "65536",
                   "TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr" % port, "STDOUT"])
        wait_until(lambda: listening(port), "socat")
        return p
    return time_pipeline(["socat", "-u", "-b", "65536", "STDIN",
                          "TCP:127.0.0.1:%d" % port], receiver, n)


def relay_nc(n):
    port = free_port()

    def receiver():
        p = start(["nc", "-l", "127.0.0.1", str(port)])
        wait_until(lambda: listening(port), "nc")
        return p
    return time_pipeline(["nc", "-N", "127.0.0.1", str(port)], receiver, n)


def listening(port):
    with open("/proc/net/tcp") as f:
        want = ":%04X" % port
        return any(l.split()[1].endswith(want) and l.split()[3] == "0A"
                   for l in f.readlines()[1:])


# --------------------------------------------------------------------------
# guard: the backend (sink and echo in one, single-threaded), the pairs

class Backend:
    """Reads everything; answers every 64-byte request with 64 bytes; closes
    its side after the client's end of stream.  A process of its own, as a
    real service is: a thread would share the client's interpreter lock,
    and every hand-over of the lock would stall the path it measures."""

    def __init__(self):
        self.pid = None
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.sock, selectors.EVENT_READ, None)
        # One buffer for every read: recv(1 MiB) would allocate (and map)
        # a new 1 MiB object per call, twice the CPU of the read itself,
        # which the fast pairs would pay as the endpoint's cost.
        self.buf = memoryview(bytearray(1 << 20))

    def start(self):
        self.pid = os.fork()
        if self.pid == 0:
            try:
                self.run()
            finally:
                os._exit(0)
        self.sock.close()

    def stop(self):
        if self.pid:
            os.kill(self.pid, signal.SIGTERM)
            os.waitpid(self.pid, 0)
            self.pid = None

    def run(self):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        while True:
            for key, _ in self.sel.select():
                if key.data is None:
                    try:
                        c, _ = self.sock.accept()
                    except BlockingIOError:
                        continue
                    c.setblocking(False)
                    self.sel.register(c, selectors.EVENT_READ, [0])
                    continue
                c = key.fileobj
                try:
                    n = c.recv_into(self.buf)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    n = 0
                if not n:
                    self.sel.unregister(c)
                    c.close()
                    continue
                st = key.data
                st[0] += n
                if st[0] == 64:  # a request: answer it
                    c.setblocking(True)
                    c.sendall(b"r" * 64)
                    c.setblocking(False)


def throughput(addr, n):
    chunk = b"\0" * 65536
    fam = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    with socket.socket(fam) as s:
        s.connect(addr)
        t0 = time.monotonic()
        left = n
        while left > 0:
            k = min(left, len(chunk))
            s.sendall(chunk[:k])
            left -= k
        s.shutdown(socket.SHUT_WR)
        s.settimeout(120)
        while s.recv(65536):
            pass
        return time.monotonic() - t0


def setups(addr, count):
    fam = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    req = b"q" * 64
    times = []
    for _ in range(count):
        t0 = time.monotonic()
        with socket.socket(fam) as s:
            s.settimeout(10)
            s.connect(addr)
            s.sendall(req)
            got = b""
            while len(got) < 64:
                b = s.recv(64 - len(got))
                if not b:
                    raise SystemExit("bench: reply cut short")
                got += b
        times.append(time.monotonic() - t0)
    return statistics.median(times)


def pair_loopsec(cli, mode, backend_port, tag="loopsec"):
    t = os.path.join(TMP, "guard%s%s.ticket" % (tag, "".join(mode)))
    sock = os.path.join(TMP, "s", "%s%s" % (tag, "".join(mode)))
    os.makedirs(os.path.dirname(sock), mode=0o700, exist_ok=True)
    s = start([cli, "serve", "--to", "127.0.0.1:%d" % backend_port,
               "--ticket-file", t] + mode)
    wait_until(lambda: os.path.exists(t), "loopsec serve")
    f = start([cli, "forward", "--ticket-file", t, "--listen",
               "unix:" + sock] + mode)
    wait_until(lambda: can_connect(sock), "loopsec forward")
    return sock, [f, s]


def pair_stunnel(backend_port):
    port = free_port()
    sock = os.path.join(TMP, "s", "stunnel")
    psk = os.path.join(TMP, "psk.txt")
    with open(psk, "w") as f:
        f.write("bench:" + os.urandom(32).hex() + "\n")
    os.chmod(psk, 0o600)
    srv = os.path.join(TMP, "stunnel-s.conf")
    cli = os.path.join(TMP, "stunnel-c.conf")
    with open(srv, "w") as f:
        f.write("foreground = yes\npid =\n[s]\naccept = 127.0.0.1:%d\n"
                "connect = 127.0.0.1:%d\nPSKsecrets = %s\n"
                % (port, backend_port, psk))
    with open(cli, "w") as f:
        f.write("foreground = yes\npid =\n[c]\nclient = yes\naccept = %s\n"
                "connect = 127.0.0.1:%d\nPSKsecrets = %s\n"
                % (sock, port, psk))
    s = start(["stunnel4", srv])
    wait_until(lambda: listening(port), "stunnel server")
    c = start(["stunnel4", cli])
    wait_until(lambda: os.path.exists(sock), "stunnel client")
    return sock, [c, s]


def pair_spiped(backend_port):
    port = free_port()
    sock = os.path.join(TMP, "s", "spiped")
    key = os.path.join(TMP, "spiped.key")
    with open(key, "wb") as f:
        f.write(os.urandom(32))
    os.chmod(key, 0o600)
    s = start(["spiped", "-d", "-F", "-s", "[127.0.0.1]:%d" % port,
               "-t", "[127.0.0.1]:%d" % backend_port, "-k", key])
    wait_until(lambda: listening(port), "spiped server")
    c = start(["spiped", "-e", "-F", "-s", sock,
               "-t", "[127.0.0.1]:%d" % port, "-k", key])
    wait_until(lambda: os.path.exists(sock), "spiped client")
    return sock, [c, s]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cli")
    ap.add_argument("--relay-mib", type=int, default=1024)
    ap.add_argument("--guard-mib", type=int, default=256)
    ap.add_argument("--setups", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=9,
                    help="guard: rounds, each visiting every pair")
    ap.add_argument("--only", choices=("relay", "guard"))
    ap.add_argument("--before", help="a second loopsec binary to compare")
    a = ap.parse_args()
    for tool in ("socat", "nc", "stunnel4", "spiped"):
        if shutil.which(tool) is None:
            raise SystemExit("bench: %s is missing (scripts/bench.sh --cli "
                             "installs it)" % tool)
    med = statistics.median
    if a.only != "guard":
        relay(a)
    if a.only != "relay":
        guard(a)


def modes(a):
    """(label, binary, mode arguments) of every loopsec variant run."""
    out = [("loopsec auth", a.cli, []), ("loopsec tls", a.cli, ["--tls"])]
    if a.before:
        out += [("before auth", a.before, []),
                ("before tls", a.before, ["--tls"])]
    return out


def relay(a):
    med = statistics.median
    rn = a.relay_mib << 20
    res = {}
    print("relay: %d MiB stdin -> stdout, median of %d" % (a.relay_mib,
                                                           a.repeat))
    runs = {name: (lambda b=b, m=m: relay_loopsec(b, m, rn))
            for name, b, m in modes(a)}
    runs["socat"] = lambda: relay_socat(rn)
    runs["nc"] = lambda: relay_nc(rn)
    for _ in range(a.repeat):  # interleaved, so drift hits all alike
        for name, fn in runs.items():
            res.setdefault(name, []).append(fn())
    for name in runs:
        t = med(res[name])
        print("  %-14s %8.3f s  %8.1f MiB/s" % (name, t, a.relay_mib / t))
    for name, _, _ in modes(a):
        print("  %-14s %.2fx socat, %.2fx nc" % (
            name, med(res["socat"]) / med(res[name]),
            med(res["nc"]) / med(res[name])))
    if a.before:
        for m in ("auth", "tls"):
            print("  %-14s after/before %.2fx" % (
                m, med(res["before " + m]) / med(res["loopsec " + m])))


def guard(a):
    med = statistics.median
    be = Backend()
    be.start()
    gn = a.guard_mib << 20
    # "direct": the client talks to the backend itself, no proxy: the
    # ceiling that the shared Python endpoints put on every pair.
    pairs = {"direct": lambda: (("127.0.0.1", be.port), [])}
    for name, b, m in modes(a):
        pairs[name] = lambda b=b, m=m, name=name: pair_loopsec(
            b, m, be.port, name.split()[0])
    pairs["stunnel4"] = lambda: pair_stunnel(be.port)
    pairs["spiped"] = lambda: pair_spiped(be.port)
    # Every pair up at once, then the measurements interleaved round by
    # round (odd rounds in reverse), so that drift in the machine's load
    # falls on all alike.
    socks, procs = {}, []
    try:
        for name, mk in pairs.items():
            socks[name], ps = mk()
            procs += ps
            setups(socks[name], 5)  # warm up
        tp, su = {}, {}
        names = list(pairs)
        for r in range(a.rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                tp.setdefault(name, []).append(throughput(socks[name], gn))
                su.setdefault(name, []).append(setups(socks[name], a.setups))
    finally:
        for p in procs:
            stop(p)
        be.stop()

    def ratio(num, den, table):
        """Median of the per-round ratios: each round measured the two
        back to back, so a burst of load elsewhere skews one round only."""
        return med([x / y for x, y in zip(table[num], table[den])])
    print("guard: client -> unix socket -> proxy pair -> backend; %d MiB in "
          "64 KiB writes; setup + 64-byte request/response (median of %d); "
          "%d rounds, medians" % (a.guard_mib, a.setups, a.rounds))
    for name in pairs:
        print("  %-14s %8.1f MiB/s  setup+exchange %7.3f ms" % (
            name, a.guard_mib / med(tp[name]), med(su[name]) * 1000))
    print("  ratios: the median of the per-round ratios")
    for name, _, _ in modes(a):
        print("  %-14s throughput %.2fx stunnel4, %.2fx spiped; setup "
              "%.2fx faster than stunnel4, %.2fx than spiped" % (
                  name, ratio("stunnel4", name, tp), ratio("spiped", name, tp),
                  ratio("stunnel4", name, su), ratio("spiped", name, su)))
    if a.before:
        for m in ("auth", "tls"):
            print("  %-14s after/before: throughput %.2fx, setup %.2fx "
                  "faster" % (m, ratio("before " + m, "loopsec " + m, tp),
                              ratio("before " + m, "loopsec " + m, su)))

try:
    main()
finally:
    for p in CHILDREN:
        stop(p)
    shutil.rmtree(TMP, ignore_errors=True)
