#!/usr/bin/env bash
# The relays never lose a byte (issue 14): a file sent by connect to a
# backgrounded `listen --ticket-file T > out` (stdin /dev/null) arrives whole,
# in both modes and both directions, and both exit 0; a peer that leaves
# early makes the sender exit 1 with one line on stderr; --eof-timeout bounds
# the wait after stdin ends; a relay whose stdout feeds its own stdin does
# not deadlock.
#
# Usage: test_lossless.sh PATH/TO/loopsec
# Environment: LOSSLESS_MB (default 8) and LOSSLESS_RUNS (default 1); the
# long run of issue 14 is LOSSLESS_MB=100 LOSSLESS_RUNS=20 (ctest -L long).
set -u
cli=$1
mb=${LOSSLESS_MB:-8}
runs=${LOSSLESS_RUNS:-1}
. "$(dirname "$0")/lib.sh"


head -c $((mb * 1024 * 1024)) /dev/urandom >"$tmp/big"
want=$(sha256sum <"$tmp/big" | cut -d' ' -f1)

# 1. Whole files, both modes, both directions.
# transfer LABEL MODE LISTEN_IN CONNECT_IN RECEIVED SILENT: one run; the file
# must arrive whole in RECEIVED, nothing in SILENT (the other side's stdout).
transfer() {
    local label=$1 mode=$2 lin=$3 cin=$4 received=$5 silent=$6 lpid crc lrc got
    rm -f "$tmp/T"
    timeout 120 "$cli" listen $mode --ticket-file "$tmp/T" <"$lin" >"$tmp/out" 2>"$tmp/lerr" &
    lpid=$!
    pids+=($lpid)
    wait_path "$tmp/T" || bad "no ticket file"
    timeout 120 "$cli" connect --ticket-file "$tmp/T" <"$cin" >"$tmp/cout" 2>"$tmp/cerr"
    crc=$?
    wait "$lpid"
    lrc=$?
    got=$(sha256sum <"$received" | cut -d' ' -f1)
    if [ "$crc" = 0 ] && [ "$lrc" = 0 ] && [ "$got" = "$want" ] && [ ! -s "$silent" ]; then ok; else
        bad "$label: connect $crc, listen $lrc, $(stat -c %s "$received") bytes: $(cat "$tmp/cerr" "$tmp/lerr")"
    fi
}
for run in $(seq 1 "$runs"); do
    for mode in "" --tls; do
        transfer "run $run $mode connect->listen" "$mode" /dev/null "$tmp/big" "$tmp/out" "$tmp/cout"
        transfer "run $run $mode listen->connect" "$mode" "$tmp/big" /dev/null "$tmp/cout" "$tmp/out"
    done
done

# 2. A peer that leaves early: the sender exits 1 with one line on stderr.
for mode in "" --tls; do
    rm -f "$tmp/T"
    (timeout 30 "$cli" listen $mode --ticket-file "$tmp/T" </dev/null 2>"$tmp/lerr" | head -c 1000 >/dev/null) &
    pids+=($!)
    wait_path "$tmp/T" || bad "no ticket file (2)"
    head -c $((32 * 1024 * 1024)) /dev/zero | timeout 30 "$cli" connect --ticket-file "$tmp/T" >/dev/null 2>"$tmp/cerr"
    crc=$?
    if [ "$crc" = 1 ] && [ "$(wc -l <"$tmp/cerr")" = 1 ]; then ok; else
        bad "$mode peer left early: connect exit $crc: $(cat "$tmp/cerr")"
    fi
    wait
done
# ... also when it is killed (no `timeout` wrapper: its pid is the one
# killed; the cleanup trap ends it otherwise).
rm -f "$tmp/T"
"$cli" listen --ticket-file "$tmp/T" </dev/null >/dev/null 2>&1 &
lpid=$!
pids+=($lpid)
wait_path "$tmp/T" || bad "no ticket file (2b)"
(sleep 0.3; kill -9 "$lpid") &
(cat "$tmp/big"; sleep 1; cat "$tmp/big") |
    timeout 30 "$cli" connect --ticket-file "$tmp/T" >/dev/null 2>"$tmp/cerr"
crc=$?
[ "$crc" = 1 ] && [ "$(wc -l <"$tmp/cerr")" = 1 ] && ok || bad "killed peer: connect exit $crc: $(cat "$tmp/cerr")"

# 3. --eof-timeout: a peer that never ends its side, bounded after stdin ends.
rm -f "$tmp/T"
(sleep 8 | timeout 15 "$cli" listen --ticket-file "$tmp/T" >/dev/null 2>&1) &
pids+=($!)
wait_path "$tmp/T" || bad "no ticket file (3)"
start=$(date +%s%N)
echo hi | timeout 10 "$cli" connect --ticket-file "$tmp/T" --eof-timeout 300ms >/dev/null 2>"$tmp/cerr"
crc=$?
took=$((($(date +%s%N) - start) / 1000000))
if [ "$crc" = 1 ] && [ "$took" -lt 3000 ] && grep -q "did not end its side within 300 ms" "$tmp/cerr" &&
    [ "$(wc -l <"$tmp/cerr")" = 1 ]; then ok; else
    bad "--eof-timeout: exit $crc after $took ms: $(cat "$tmp/cerr")"
fi

# 4. A reader that stops reading stalls only its direction, and memory
#    stays bounded on both sides (no buffering of what cannot be written).
rm -f "$tmp/T"
mkfifo "$tmp/slow"
"$cli" listen --ticket-file "$tmp/T" </dev/null 1<>"$tmp/slow" 2>/dev/null &
lpid=$!
pids+=($lpid)
(sleep 2.5; cat "$tmp/slow" >/dev/null) &
pids+=($!)
wait_path "$tmp/T" || bad "no ticket file (4)"
head -c $((256 * 1024 * 1024)) /dev/zero | "$cli" connect --ticket-file "$tmp/T" >/dev/null 2>"$tmp/cerr" &
cpid=$!
pids+=($cpid)
sleep 1
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
lr=$(rss "$lpid")
cr=$(rss "$cpid")
[ -n "$lr" ] && [ -n "$cr" ] && [ "$lr" -lt 32768 ] && [ "$cr" -lt 32768 ] && ok ||
    bad "memory while the reader stalls: listen ${lr:-?} kB, connect ${cr:-?} kB"
wait "$cpid"
crc=$?
wait "$lpid"
[ "$crc" = 0 ] && [ $? = 0 ] && ok || bad "stalled reader: connect exit $crc: $(cat "$tmp/cerr")"

# 5. listen's stdout feeds its own stdin (an echo through the relay), while
#    connect sends and receives at once: no deadlock, every byte back.
timeout 60 python3 - "$cli" "$tmp" <<'PY' && ok || bad "echo loop through listen"
import hashlib, os, subprocess, sys, threading, time
cli, tmp = sys.argv[1], sys.argv[2]
T = os.path.join(tmp, "E")
lst = subprocess.Popen([cli, "listen", "--ticket-file", T],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE)
for _ in range(200):
    if os.path.exists(T):
        break
    time.sleep(0.025)
def echo():
    while True:
        b = lst.stdout.read1(65536)
        if not b:
            break
        lst.stdin.write(b)
        lst.stdin.flush()
    lst.stdin.close()
threading.Thread(target=echo, daemon=True).start()
con = subprocess.Popen([cli, "connect", "--ticket-file", T],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE)
data = os.urandom(16 * 1024 * 1024)
def writer():
    con.stdin.write(data)
    con.stdin.close()
threading.Thread(target=writer, daemon=True).start()
h, n = hashlib.sha256(), 0
while True:
    b = con.stdout.read1(1 << 20)
    if not b:
        break
    h.update(b)
    n += len(b)
rc_c, rc_l = con.wait(30), lst.wait(30)
ok = n == len(data) and h.digest() == hashlib.sha256(data).digest()
if not ok or rc_c or rc_l:
    print("echo loop: %d of %d bytes back, connect %s, listen %s"
          % (n, len(data), rc_c, rc_l), file=sys.stderr)
    sys.exit(1)
PY

finish lossless
