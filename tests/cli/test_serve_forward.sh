#!/usr/bin/env bash
# loopsec serve / loopsec forward in front of real programs (issue 14):
#  - python3 -m http.server behind `serve --to`, 20 concurrent
#    `curl --unix-socket` requests through `forward --listen`: all 200, bodies
#    intact; `printf 'GET ...' | loopsec connect` prints the whole reply;
#  - a connection without the ticket reaches nothing: the backend sees no
#    connection at all;
#  - bc and python3 -i behind `serve --exec`, driven through `forward --stdio`;
#  - redis-server behind `serve --to unix:PATH`, redis-cli -s through forward;
#  - half-close passed through both ways;
#  - forward's socket: a directory not 0700 or not ours is refused, an
#    existing path that is not its socket is never replaced, the socket is
#    removed at exit; serve on SIGTERM exits 0 and removes its ticket file;
#  - --key-file: created 0600, the same ticket after a restart, unsafe
#    permissions refused.
# Usage: test_serve_forward.sh PATH/TO/loopsec
set -u
cli=$1
. "$(dirname "$0")/lib.sh"
for p in curl python3 bc redis-server redis-cli ss; do
    command -v "$p" >/dev/null || { echo "FAIL: $p is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done
mkdir -m 700 "$tmp/s"

# --------------------------------------------------------------------------
# 1. http.server behind serve, curl through forward.
mkdir "$tmp/www"
head -c 200000 /dev/urandom >"$tmp/www/blob"
echo "hello from http.server" >"$tmp/www/index.html"
(cd "$tmp/www" && exec python3 -u -m http.server --bind 127.0.0.1 0 >"$tmp/http.out" 2>"$tmp/http.log") &
hpid=$!
pids+=($hpid)
wait_for "$tmp/http.out" "port [0-9]" || bad "http.server did not start"
hport=$(sed -n 's/.* port \([0-9]*\) .*/\1/p' "$tmp/http.out" | head -n 1)
"$cli" serve --to "127.0.0.1:$hport" --ticket-file "$tmp/web.ticket" 2>"$tmp/serve.err" &
spid=$!
pids+=($spid)
wait_path "$tmp/web.ticket" || bad "serve wrote no ticket file: $(cat "$tmp/serve.err")"
[ "$(stat -c %a "$tmp/web.ticket")" = 600 ] && ok || bad "ticket file mode"
"$cli" forward --ticket-file "$tmp/web.ticket" --listen "unix:$tmp/s/web" 2>"$tmp/fwd.err" &
fpid=$!
pids+=($fpid)
wait_path "$tmp/s/web" || bad "forward made no socket: $(cat "$tmp/fwd.err")"
[ "$(stat -c %a "$tmp/s/web")" = 600 ] && ok || bad "forward socket mode $(stat -c %a "$tmp/s/web")"
cpids=()
for i in $(seq 1 20); do
    timeout 30 curl -s -o "$tmp/r$i" -w '%{http_code}' --unix-socket "$tmp/s/web" "http://local/blob" >"$tmp/code$i" &
    cpids+=($!)
done
wait "${cpids[@]}"
good=0
for i in $(seq 1 20); do
    [ "$(cat "$tmp/code$i")" = 200 ] && cmp -s "$tmp/r$i" "$tmp/www/blob" && good=$((good + 1))
done
[ "$good" = 20 ] && ok || bad "$good of 20 concurrent requests came back 200 and whole: $(cat "$tmp/serve.err" "$tmp/fwd.err")"

# forward carries each connection in a thread of its own, not a process
# (a process each paid OpenSSL's context and the peer-lookup socket per
# connection): three stalled local clients hold three workers and no child
# process, a fourth request still gets its answer, and the workers end with
# their connections.
fw=$(python3 - "$tmp/s/web" "$fpid" <<'PY'
import os, socket, sys, time
path, pid = sys.argv[1], int(sys.argv[2])
def threads():
    return len(os.listdir("/proc/%d/task" % pid))
def children():
    return open("/proc/%d/task/%d/children" % (pid, pid)).read().split()
held = []
for _ in range(3):
    h = socket.socket(socket.AF_UNIX)
    h.connect(path)
    held.append(h)
end = time.monotonic() + 5
while threads() < 4 and time.monotonic() < end:
    time.sleep(0.02)
busy, kids = threads(), children()
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(path)
s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
s.close()
for h in held:
    h.close()
end = time.monotonic() + 5
while threads() > 1 and time.monotonic() < end:
    time.sleep(0.02)
print("threads=%d children=%d answered=%s after=%d" % (
    busy, len(kids), b"hello from http.server" in data, threads()))
PY
)
[ "$fw" = "threads=4 children=0 answered=True after=1" ] && ok || bad "forward's workers: $fw"

# loopsec's own TCP sockets (the channel on both sides, serve's connection
# to the backend) send with reno, whatever the system's default: bbr, for
# one, paces segments through a timer, which on loopback only holds them
# back (docs/BENCHMARKS.md, "guard").  ss shows each socket's algorithm; one
# local connection held open gives serve two sockets and forward one.
python3 - "$tmp/s/web" <<'PY' &
import socket, sys, time
h = socket.socket(socket.AF_UNIX)
h.connect(sys.argv[1])
time.sleep(5)
PY
hold=$!
pids+=($hold)
ccs=""
for _ in $(seq 1 100); do
    ccs=$(ss -tinpH state established 2>/dev/null | awk -v s="pid=$spid," -v f="pid=$fpid," '
        /^[^ \t]/ { who = index($0, s) ? "serve" : index($0, f) ? "forward" : ""; next }
        who != "" { print who ":" $1; who = "" }' | sort | tr '\n' ' ')
    [ "$(printf '%s' "$ccs" | wc -w)" = 3 ] && break
    sleep 0.05
done
[ "$ccs" = "forward:reno serve:reno serve:reno " ] && ok ||
    bad "congestion control of serve's and forward's sockets: '$ccs' (system default: $(cat /proc/sys/net/ipv4/tcp_congestion_control))"
kill "$hold" 2>/dev/null
wait "$hold" 2>/dev/null

# printf request | loopsec connect prints the whole reply.
reply=$(printf 'GET /index.html HTTP/1.0\r\n\r\n' | timeout 10 "$cli" connect --ticket-file "$tmp/web.ticket")
crc=$?
if [ "$crc" = 0 ] && printf '%s' "$reply" | grep -q "^HTTP/1.0 200" &&
    printf '%s' "$reply" | grep -q "hello from http.server"; then ok; else
    bad "printf | connect: exit $crc, reply '$reply'"
fi

# --------------------------------------------------------------------------
# 2. Without the ticket, nothing reaches the backend.
python3 -u - "$tmp/acc" >"$tmp/acc.port" <<'PY' &
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
n = 0
while True:
    c, _ = s.accept()
    n += 1
    open(sys.argv[1], "w").write(str(n))
    c.close()
PY
apid=$!
pids+=($apid)
wait_for "$tmp/acc.port" "[0-9]" || bad "accept counter did not start"
"$cli" serve --to "127.0.0.1:$(cat "$tmp/acc.port")" --ticket-file "$tmp/acc.ticket" 2>"$tmp/serve2.err" &
s2pid=$!
pids+=($s2pid)
wait_path "$tmp/acc.ticket" || bad "serve (2) wrote no ticket"
sport=$(sed -n 's|^loopsec://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$tmp/acc.ticket")
# A raw connection with garbage, one that says nothing, and a wrong secret.
python3 - "$sport" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
a = socket.create_connection(("127.0.0.1", port)); a.sendall(b"GET / HTTP/1.0\r\n\r\n")
b = socket.create_connection(("127.0.0.1", port))
time.sleep(0.5)
a.close(); b.close()
PY
wrong=$(sed 's/secret=.*/secret=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8/' "$tmp/acc.ticket")
echo x | LOOPSEC_TICKET=$wrong timeout 10 "$cli" connect >/dev/null 2>&1
sleep 0.3
[ ! -e "$tmp/acc" ] && ok || bad "the backend saw $(cat "$tmp/acc") connection(s) from clients without the ticket"
timeout 10 "$cli" connect --ticket-file "$tmp/acc.ticket" </dev/null >/dev/null 2>&1
for _ in $(seq 1 100); do [ -e "$tmp/acc" ] && break; sleep 0.02; done
[ "$(cat "$tmp/acc" 2>/dev/null)" = 1 ] && ok || bad "the backend did not see the authenticated peer"
# SIGTERM: exit 0, ticket file removed.
kill -TERM "$s2pid"
wait "$s2pid"
src=$?
[ "$src" = 0 ] && ok || bad "serve exit $src after SIGTERM: $(cat "$tmp/serve2.err")"
[ ! -e "$tmp/acc.ticket" ] && ok || bad "serve left its ticket file"

# A stalled backend delays no other connection: the first connection's
# backend never reads while its peer floods it; a second one is answered.
python3 -u - >"$tmp/st.port" <<'PY' &
import socket, threading
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
held = []
def echo(c):
    got = b""
    while len(got) < 64:
        b = c.recv(64 - len(got))
        if not b:
            break
        got += b
    c.sendall(got)
    c.close()
while True:
    c, _ = s.accept()
    if not held:
        held.append(c)  # never read
    else:
        threading.Thread(target=echo, args=(c,), daemon=True).start()
PY
pids+=($!)
wait_for "$tmp/st.port" "[0-9]" || bad "the stalling backend did not start"
"$cli" serve --to "127.0.0.1:$(cat "$tmp/st.port")" --ticket-file "$tmp/st.ticket" 2>"$tmp/st.err" &
pids+=($!)
wait_path "$tmp/st.ticket" || bad "serve (stall): no ticket"
( (head -c 30000000 /dev/zero; sleep 10) | timeout 15 "$cli" connect --ticket-file "$tmp/st.ticket" >/dev/null 2>&1) &
pids+=($!)
sleep 1
start=$(date +%s%N)
got=$(head -c 64 /dev/zero | tr '\0' q | timeout 5 "$cli" connect --ticket-file "$tmp/st.ticket" | wc -c)
took=$((($(date +%s%N) - start) / 1000000))
[ "$got" = 64 ] && [ "$took" -lt 2000 ] && ok || bad "a stalled backend delayed another connection: $got bytes after $took ms: $(cat "$tmp/st.err")"

# --------------------------------------------------------------------------
# 3. Interactive programs behind serve --exec, through forward --stdio.
"$cli" serve --ticket-file "$tmp/bc.ticket" --exec bc -q 2>"$tmp/bc.err" &
pids+=($!)
wait_path "$tmp/bc.ticket" || bad "serve --exec bc: no ticket"
out=$(printf '2+3\n2^70\n' | timeout 10 "$cli" forward --stdio --ticket-file "$tmp/bc.ticket")
[ "$out" = $'5\n1180591620717411303424' ] && ok || bad "bc through forward --stdio: '$out'"
# --max-peers: at the cap, a further peer waits (its handshake does not
# progress) until a relayed connection ends.
"$cli" serve --max-peers 1 --ticket-file "$tmp/cap.ticket" --exec bc -q 2>"$tmp/cap.err" &
pids+=($!)
wait_path "$tmp/cap.ticket" || bad "serve --max-peers 1: no ticket"
( (echo 1+1; sleep 1.5) | timeout 10 "$cli" forward --stdio --ticket-file "$tmp/cap.ticket" >"$tmp/capA" 2>&1) &
capa=$!
pids+=($capa)
sleep 0.3
echo 2+2 | timeout 10 "$cli" forward --stdio --timeout 500ms --ticket-file "$tmp/cap.ticket" >"$tmp/capB" 2>&1
[ $? = 1 ] && grep -q "timed out" "$tmp/capB" && ok || bad "a peer above --max-peers was served: $(cat "$tmp/capB")"
wait "$capa"
out=$(echo 3+3 | timeout 10 "$cli" forward --stdio --ticket-file "$tmp/cap.ticket")
[ "$(cat "$tmp/capA")" = 2 ] && [ "$out" = 6 ] && ok || bad "--max-peers 1: A '$(cat "$tmp/capA")', C '$out'"
"$cli" serve --ticket-file "$tmp/py.ticket" --exec python3 -i -q -u 2>"$tmp/py.err" &
pids+=($!)
wait_path "$tmp/py.ticket" || bad "serve --exec python3: no ticket"
out=$(printf 'x = 6\nprint(x * 7)\n' | timeout 10 "$cli" forward --stdio --ticket-file "$tmp/py.ticket")
[ "$out" = "42" ] && ok || bad "python3 -i through forward --stdio: '$out'"
# Half-close both ways: the backend ends its output first and then still
# receives; the client ends its input and still receives.
"$cli" serve --ticket-file "$tmp/hc.ticket" --exec sh -c "printf first; exec 1>&-; cat >'$tmp/hc.got'" 2>"$tmp/hc.err" &
pids+=($!)
wait_path "$tmp/hc.ticket" || bad "serve --exec sh: no ticket"
out=$( (sleep 0.3; head -c 300000 "$tmp/www/blob") | timeout 10 "$cli" forward --stdio --ticket-file "$tmp/hc.ticket")
frc=$?
sleep 0.2
[ "$frc" = 0 ] && [ "$out" = first ] && cmp -s "$tmp/hc.got" "$tmp/www/blob" && ok ||
    bad "half-close through serve --exec: exit $frc, got '$out', $(stat -c %s "$tmp/hc.got" 2>/dev/null) bytes"

# --------------------------------------------------------------------------
# 4. redis-server on a Unix socket behind serve, redis-cli through forward.
mkdir -m 700 "$tmp/rd"
redis-server --port 0 --unixsocket "$tmp/rd/redis.sock" --unixsocketperm 700 --save '' \
    --appendonly no --dir "$tmp/rd" >"$tmp/rd/log" 2>&1 &
pids+=($!)
wait_path "$tmp/rd/redis.sock" || bad "redis-server did not start: $(cat "$tmp/rd/log")"
"$cli" serve --to "unix:$tmp/rd/redis.sock" --ticket-file "$tmp/rd.ticket" 2>"$tmp/rds.err" &
pids+=($!)
wait_path "$tmp/rd.ticket" || bad "serve (redis): no ticket"
"$cli" forward --ticket-file "$tmp/rd.ticket" --listen "unix:$tmp/s/redis" 2>"$tmp/rdf.err" &
pids+=($!)
wait_path "$tmp/s/redis" || bad "forward (redis): no socket"
r1=$(timeout 10 redis-cli -s "$tmp/s/redis" SET greeting "over loopsec")
r2=$(timeout 10 redis-cli -s "$tmp/s/redis" GET greeting)
[ "$r1" = OK ] && [ "$r2" = "over loopsec" ] && ok || bad "redis-cli through forward: '$r1' '$r2': $(cat "$tmp/rds.err" "$tmp/rdf.err")"

# --------------------------------------------------------------------------
# 5. forward's socket is private and never replaces what is not its own.
kill -TERM "$fpid"
wait "$fpid"
frc=$?
[ "$frc" = 0 ] && ok || bad "forward exit $frc after SIGTERM"
[ ! -e "$tmp/s/web" ] && ok || bad "forward left its socket"
mkdir -m 755 "$tmp/open"
timeout 5 "$cli" forward --ticket-file "$tmp/web.ticket" --listen "unix:$tmp/open/sock" 2>"$tmp/e1"
[ $? = 1 ] && grep -q "0700" "$tmp/e1" && [ ! -e "$tmp/open/sock" ] && ok || bad "a 0755 directory was accepted: $(cat "$tmp/e1")"
echo "keep me" >"$tmp/s/file"
timeout 5 "$cli" forward --ticket-file "$tmp/web.ticket" --listen "unix:$tmp/s/file" 2>"$tmp/e2"
[ $? = 1 ] && [ "$(cat "$tmp/s/file")" = "keep me" ] && ok || bad "an existing file was replaced: $(cat "$tmp/e2")"
timeout 5 "$cli" forward --ticket-file "$tmp/web.ticket" --listen "127.0.0.1:8080" 2>"$tmp/e3"
[ $? = 2 ] && grep -q "unix:PATH only" "$tmp/e3" && ok || bad "forward --listen TCP: $(cat "$tmp/e3")"
# A socket path in use by a running forward is refused too.
"$cli" forward --ticket-file "$tmp/web.ticket" --listen "unix:$tmp/s/web2" 2>/dev/null &
f2=$!
pids+=($f2)
wait_path "$tmp/s/web2"
timeout 5 "$cli" forward --ticket-file "$tmp/web.ticket" --listen "unix:$tmp/s/web2" 2>"$tmp/e4"
[ $? = 1 ] && grep -q "in use" "$tmp/e4" && ok || bad "a live socket was taken over: $(cat "$tmp/e4")"
kill -TERM "$f2"
# The path appears only once forward listens: with half a second held
# between its bind and its listen (strace's delay injection), a client that
# waits for the path and connects at once is accepted, never refused (a
# second forward probing then took a refused path for stale, and replaced
# a live socket: seen in CI).
strace -f -qq -o /dev/null -e trace=listen -e inject=listen:delay_enter=500000 \
    "$cli" forward --ticket-file "$tmp/web.ticket" --listen "unix:$tmp/s/web3" 2>"$tmp/e5" &
st=$!
pids+=($st)
wait_path "$tmp/s/web3"
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$tmp/s/web3" 2>"$tmp/e6" &&
    ok || bad "forward's socket path appeared before it listened: $(cat "$tmp/e6" "$tmp/e5")"
f3=$(pgrep -P "$st" -x loopsec || true)
[ -n "$f3" ] && kill -TERM "$f3"
wait "$st"
[ ! -e "$tmp/s/web3" ] && [ -z "$(ls "$tmp/s" | grep '~$')" ] && ok || bad "forward left a socket name: $(ls "$tmp/s")"

# --------------------------------------------------------------------------
# 6. --key-file: a stable ticket across restarts.
"$cli" serve --to "127.0.0.1:$hport" --key-file "$tmp/k" --ticket-fd 3 3>"$tmp/t1" 2>"$tmp/k.err" &
k1=$!
pids+=($k1)
wait_for "$tmp/t1" "^loopsec://" || bad "serve --key-file (1): no ticket: $(cat "$tmp/k.err")"
[ "$(stat -c %a "$tmp/k" 2>/dev/null)" = 600 ] && ok || bad "key file mode $(stat -c %a "$tmp/k" 2>/dev/null)"
kport=$(sed -n 's|^loopsec://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$tmp/t1")
kill -TERM "$k1"
wait "$k1"
"$cli" serve --to "127.0.0.1:$hport" --bind "127.0.0.1:$kport" --key-file "$tmp/k" --ticket-fd 3 3>"$tmp/t2" 2>"$tmp/k.err" &
k2=$!
pids+=($k2)
wait_for "$tmp/t2" "^loopsec://" || bad "serve --key-file (2): no ticket: $(cat "$tmp/k.err")"
cmp -s "$tmp/t1" "$tmp/t2" && ok || bad "the ticket changed across a restart with the same key file"
reply=$(printf 'GET /index.html HTTP/1.0\r\n\r\n' | LOOPSEC_TICKET=$(cat "$tmp/t1") timeout 10 "$cli" connect)
printf '%s' "$reply" | grep -q "hello from http.server" && ok || bad "the old ticket does not work after a restart"
kill -TERM "$k2"
wait "$k2"
chmod 644 "$tmp/k"
timeout 5 "$cli" serve --to "127.0.0.1:$hport" --key-file "$tmp/k" 2>"$tmp/k.err"
[ $? = 1 ] && grep -q "mode 0600" "$tmp/k.err" && ok || bad "a key file others can read was used: $(cat "$tmp/k.err")"
# A key file whose secret is not 64 hex digits is refused, not half read.
chmod 600 "$tmp/k"
sed 's/.$/g/' "$tmp/k" >"$tmp/k.bad" && chmod 600 "$tmp/k.bad"
timeout 5 "$cli" serve --to "127.0.0.1:$hport" --key-file "$tmp/k.bad" 2>"$tmp/k.err"
[ $? = 1 ] && grep -q "not a loopsec key file" "$tmp/k.err" && ok || bad "a key file with a non-hex digit was used: $(cat "$tmp/k.err")"

finish serve_forward
