#!/usr/bin/env bash
# No ticket on a command line (issue 14): connect, psk and forward refuse a
# ticket given as an argument with a usage error naming --ticket-file,
# --ticket-fd and LOOPSEC_TICKET; the environment variable works and its
# value is gone from /proc/PID/environ once read; another uid (65534, via
# setpriv) reading /proc/PID/cmdline of every loopsec process while
# listen, connect, serve and forward run finds no secret; the ticket never
# goes to stdout (--ticket-fd 1 is refused).
# Usage: test_tickets.sh PATH/TO/loopsec
set -u
cli=$1
. "$(dirname "$0")/lib.sh"
chmod 755 "$tmp"

secret_b64=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8
ticket="loopsec://127.0.0.1:1/?mode=tls&id=0011223344556677&secret=$secret_b64"

# 1. Refused as an argument, with the three sources named.
for cmd in "connect" "psk" "forward --stdio"; do
    timeout 5 "$cli" $cmd "$ticket" </dev/null >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ "$rc" = 2 ] && [ ! -s "$tmp/out" ] && [ "$(wc -l <"$tmp/err")" = 1 ] &&
        grep -q -- "--ticket-file" "$tmp/err" && grep -q -- "--ticket-fd" "$tmp/err" &&
        grep -q "LOOPSEC_TICKET" "$tmp/err" && ! grep -q "$secret_b64" "$tmp/err"; then ok; else
        bad "$cmd TICKET: exit $rc: $(cat "$tmp/err")"
    fi
done
# No ticket at all: the same three named.
timeout 5 "$cli" connect </dev/null >/dev/null 2>"$tmp/err"
[ $? = 2 ] && grep -q "LOOPSEC_TICKET" "$tmp/err" && ok || bad "connect without a ticket: $(cat "$tmp/err")"
# The ticket never shares stdout (or stdin) with data.
timeout 5 "$cli" listen --ticket-fd 1 </dev/null >"$tmp/out" 2>"$tmp/err"
[ $? = 2 ] && ! grep -q "secret=" "$tmp/out" && ok || bad "listen --ticket-fd 1 was accepted"

# --ticket-fd 0: the ticket line, then data; nothing after the line is lost.
rm -f "$tmp/z.ticket"
timeout 10 "$cli" listen --ticket-file "$tmp/z.ticket" </dev/null >"$tmp/z.out" 2>/dev/null &
zp=$!
pids+=($zp)
wait_path "$tmp/z.ticket"
{ cat "$tmp/z.ticket"; printf 'data after the ticket line\n'; } |
    timeout 10 "$cli" connect --ticket-fd 0 >/dev/null 2>"$tmp/err"
wait "$zp"
[ "$(cat "$tmp/z.out")" = "data after the ticket line" ] && ok || bad "--ticket-fd 0 lost data: '$(cat "$tmp/z.out")' $(cat "$tmp/err")"

# 2. Real runs; meanwhile another uid reads every loopsec command line.
command -v setpriv >/dev/null || { echo "FAIL: setpriv (util-linux) is missing" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "FAIL: needs root to read /proc as uid 65534 (setpriv)" >&2; exit 1; }
# listen: ticket to descriptor 3; connect: ticket in the environment.
timeout 20 "$cli" listen --ticket-fd 3 3>"$tmp/l.ticket" < <(sleep 3) >/dev/null 2>&1 &
pids+=($!)
wait_for "$tmp/l.ticket" "^loopsec://" || bad "listen gave no ticket on descriptor 3"
lticket=$(cat "$tmp/l.ticket")
lsecret=${lticket##*secret=}
(sleep 3 | LOOPSEC_TICKET=$lticket timeout 20 "$cli" connect >/dev/null 2>&1) &
pids+=($!)
# serve with a ticket file; forward with the ticket on a descriptor.
timeout 20 "$cli" serve --ticket-file "$tmp/s.ticket" --exec cat 2>/dev/null &
pids+=($!)
wait_path "$tmp/s.ticket" || bad "serve wrote no ticket file"
sticket=$(cat "$tmp/s.ticket")
ssecret=${sticket##*secret=}
mkdir -m 700 "$tmp/f"
timeout 20 "$cli" forward --ticket-fd 4 4<"$tmp/s.ticket" --listen "unix:$tmp/f/sock" 2>/dev/null &
pids+=($!)
(sleep 3 | timeout 20 "$cli" forward --stdio --ticket-file "$tmp/s.ticket" >/dev/null 2>&1) &
pids+=($!)
wait_path "$tmp/f/sock" || bad "forward made no socket"
sleep 0.5
# As uid 65534: every loopsec process's command line.
setpriv --reuid 65534 --regid 65534 --clear-groups sh -c '
    n=0
    for d in /proc/[0-9]*; do
        [ "$(cat "$d/comm" 2>/dev/null)" = loopsec ] || continue
        n=$((n + 1))
        tr "\0" " " <"$d/cmdline" 2>/dev/null; echo
    done
    echo "processes: $n"' >"$tmp/cmdlines" 2>/dev/null
nproc=$(sed -n 's/^processes: //p' "$tmp/cmdlines")
[ "${nproc:-0}" -ge 5 ] && ok || bad "saw only ${nproc:-0} loopsec processes: $(cat "$tmp/cmdlines")"
if grep -qF -- "$lsecret" "$tmp/cmdlines" || grep -qF -- "$ssecret" "$tmp/cmdlines" ||
    grep -q "secret=" "$tmp/cmdlines"; then
    bad "a secret in a command line: $(cat "$tmp/cmdlines")"
else ok; fi
# The environment of connect: others cannot read it; its own copy of the
# variable was wiped once read.
cpid=""
for d in /proc/[0-9]*; do
    [ "$(cat "$d/comm" 2>/dev/null)" = loopsec ] || continue
    tr '\0' '\n' <"$d/cmdline" 2>/dev/null | grep -qx connect && cpid=${d#/proc/}
done
if [ -n "$cpid" ]; then
    setpriv --reuid 65534 --regid 65534 --clear-groups cat "/proc/$cpid/environ" >/dev/null 2>&1 &&
        bad "another uid read connect's environment" || ok
    tr '\0' '\n' <"/proc/$cpid/environ" | grep -qF -- "$lsecret" &&
        bad "LOOPSEC_TICKET still holds the secret in /proc/$cpid/environ" || ok
else
    bad "no connect process found"
fi

finish tickets
