#!/usr/bin/env bash
# loopsec listen, relaying, does not spin while a message is only partly in:
# a peer (the independent Python peer of tests/protocol) sends a header and
# part of a payload, then pauses; the relay must sleep in poll meanwhile, not
# burn CPU, and still deliver the whole message once the rest arrives.
# Usage: test_relay_idle.sh PATH/TO/loopsec
set -u
cli=$1
here=$(cd "$(dirname "$0")" && pwd)
command -v python3 >/dev/null || { echo "SKIP: no python3"; exit 0; }
exec python3 - "$cli" "$here/../protocol" <<'PY'
import os, socket, subprocess, sys, time
cli, protodir = sys.argv[1], sys.argv[2]
sys.path.insert(0, protodir)
import ref_peer

def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime

p = subprocess.Popen([cli, "listen", "--timeout", "10000"],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)
try:
    ticket = p.stderr.readline().decode().strip()
    t = ref_peer.parse_ticket(ticket)
    with socket.create_connection((t["host"], t["port"]), timeout=5) as s:
        ref_peer.handshake_client(s, ticket)
        payload = bytes(range(100))
        s.sendall((100).to_bytes(4, "big") + payload[:10])
        time.sleep(0.2)
        before = cpu_ticks(p.pid)
        time.sleep(1.0)
        spent = cpu_ticks(p.pid) - before
        s.sendall(payload[10:])
        p.stdin.close()
        rest = ref_peer.recv_msg(s)
    p.wait(10)
    out = p.stdout.read()
    hz = os.sysconf("SC_CLK_TCK")
    fails = []
    if spent > hz // 4:
        fails.append("relay used %d ticks of CPU in 1 s waiting for the rest "
                     "of a message (busy loop)" % spent)
    if out != payload:
        fails.append("relay printed %r" % out[:40])
    if p.returncode != 0 or rest is not None:
        fails.append("listen exit %s, %r" % (p.returncode, p.stderr.read()))
    for f in fails:
        print("FAIL:", f, file=sys.stderr)
    sys.exit(1 if fails else 0)
finally:
    if p.poll() is None:
        p.kill()
PY
