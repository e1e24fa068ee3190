#!/usr/bin/env bash
# loopsec listen / connect: the ticket goes to stderr (never stdout), messages
# are relayed both ways, stdin's end half-closes and both exit 0, a wrong
# ticket fails fast with one stderr line and no secret in it, --tls works,
# and connection files work.  Usage: test_relay.sh PATH/TO/loopsec
set -u
cli=$1
. "$(dirname "$0")/lib.sh"

# A valid secret that is not the listener's.
other_secret() { head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }

# Wait (bounded) for the ticket line in a listener's stderr.
first_line() {
    for _ in $(seq 1 100); do
        if grep -q '^loopsec://' "$1" 2>/dev/null; then grep -m 1 '^loopsec://' "$1"; return 0; fi
        sleep 0.05
    done
    return 1
}
# connect with the ticket in the environment (never in argv).
connect_t() { # TICKET ARGS...
    local t=$1
    shift
    LOOPSEC_TICKET=$t timeout 10 "$cli" connect "$@"
}

# 1. connect -> listen, auth mode.
for mode in "" "--tls"; do
    out="$tmp/listen$mode.out"
    (timeout 15 "$cli" listen $mode >"$out" 2>"$tmp/listen$mode.err" </dev/null; echo $? >"$tmp/listen.rc") &
    pids+=($!)
    ticket=$(first_line "$tmp/listen$mode.err") || { bad "listen $mode printed no ticket"; continue; }
    case "$ticket" in loopsec://127.0.0.1:*) ok ;; *) bad "ticket form: $ticket" ;; esac
    start=$(date +%s%N)
    echo "hello over loopsec" | connect_t "$ticket" $mode >/dev/null 2>"$tmp/c.err"
    rc=$?
    took=$(( ($(date +%s%N) - start) / 1000000 ))
    [ "$rc" = 0 ] && ok || bad "connect $mode exit $rc: $(cat "$tmp/c.err")"
    [ "$took" -lt 3000 ] && ok || bad "echo | connect took $took ms (should return at once)"
    for _ in $(seq 1 100); do [ -s "$tmp/listen.rc" ] && break; sleep 0.05; done
    [ "$(cat "$tmp/listen.rc" 2>/dev/null)" = 0 ] && ok || bad "listen $mode exit $(cat "$tmp/listen.rc" 2>/dev/null)"
    [ "$(cat "$out")" = "hello over loopsec" ] && ok || bad "listener got: $(cat "$out")"
    grep -q "secret=" "$out" && bad "a ticket on listen's stdout" || ok
    rm -f "$tmp/listen.rc"
done

# 2. listen -> connect: the listener's stdin is relayed to the client.
out="$tmp/l2.out"
(printf 'from the listener\n' | timeout 15 "$cli" listen >"$out" 2>"$tmp/l2.err") &
pids+=($!)
ticket=$(first_line "$tmp/l2.err") || bad "no ticket (2)"
got=$(connect_t "$ticket" </dev/null 2>"$tmp/c2.err")
rc=$?
[ "$rc" = 0 ] && ok || bad "connect (2) exit $rc: $(cat "$tmp/c2.err")"
[ "$got" = "from the listener" ] && ok || bad "client got '$got'"

# 3. A wrong ticket: non-zero, fast, one stderr line, no secret in it.
out="$tmp/l3.out"
(timeout 15 "$cli" listen >"$out" 2>"$tmp/l3.err" </dev/null) &
lpid=$!
pids+=($lpid)
ticket=$(first_line "$tmp/l3.err") || bad "no ticket (3)"
secret=${ticket##*secret=}
wrong="${ticket%secret=*}secret=$(other_secret)"
start=$(date +%s%N)
echo x | connect_t "$wrong" >/dev/null 2>"$tmp/c3.err"
rc=$?
took=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$rc" = 1 ] && ok || bad "wrong ticket exit $rc"
[ "$took" -lt 2000 ] && ok || bad "wrong ticket took $took ms"
[ "$(wc -l <"$tmp/c3.err")" = 1 ] && ok || bad "stderr: $(cat "$tmp/c3.err")"
grep -q "authentication failed" "$tmp/c3.err" && ok || bad "stderr lacks the reason: $(cat "$tmp/c3.err")"
grep -qF -- "$secret" "$tmp/c3.err" && bad "secret in stderr" || ok
wrong_secret=${wrong##*secret=}
grep -qF -- "$wrong_secret" "$tmp/c3.err" && bad "wrong secret echoed in stderr" || ok
# The failed attempt did not end the listener: the right ticket still works.
echo "after a failure" | connect_t "$ticket" >/dev/null 2>&1 && ok || bad "listener ended by a failed attempt"
wait "$lpid" 2>/dev/null
grep -q "after a failure" "$out" && ok || bad "listener missed the good peer"
grep -v '^loopsec://' "$tmp/l3.err" | grep -qF -- "$secret" && bad "secret in listener stderr" || ok

# 4. --verbose reports the refused attempt on the listener, without secrets.
out="$tmp/l4.out"
(timeout 15 "$cli" --verbose listen --ticket-fd 3 3>"$tmp/l4.ticket" >"$out" 2>"$tmp/l4.err" < <(sleep 10)) &
lpid=$!
pids+=($lpid)
ticket=$(first_line "$tmp/l4.ticket") || bad "no ticket (4)"
secret=${ticket##*secret=}
wrong="${ticket%secret=*}secret=$(other_secret)"
echo x | connect_t "$wrong" >/dev/null 2>&1
sleep 0.2
grep -q "peer port [0-9]* uid [0-9]*: " "$tmp/l4.err" && ok || bad "verbose listener did not log the failure: $(cat "$tmp/l4.err")"
grep -qF -- "$secret" "$tmp/l4.err" && bad "secret in verbose log" || ok
kill "$lpid" 2>/dev/null

# 5. Connection files.
file="$tmp/conn.ticket"
(timeout 15 "$cli" listen --ticket-file "$file" >"$tmp/l5.out" 2>"$tmp/l5.err" </dev/null) &
lpid=$!
pids+=($lpid)
for _ in $(seq 1 100); do [ -s "$file" ] && break; sleep 0.05; done
[ "$(stat -c %a "$file" 2>/dev/null)" = 600 ] && ok || bad "ticket file mode $(stat -c %a "$file" 2>/dev/null)"
[ ! -s "$tmp/l5.out" ] && ok || bad "listen --ticket-file printed to stdout"
[ ! -s "$tmp/l5.err" ] && ok || bad "listen --ticket-file printed to stderr"
echo "via file" | timeout 10 "$cli" connect --ticket-file "$file" >/dev/null 2>"$tmp/c5.err" && ok || bad "connect --ticket-file: $(cat "$tmp/c5.err")"
wait "$lpid" 2>/dev/null
grep -q "via file" "$tmp/l5.out" && ok || bad "listener (file) got: $(cat "$tmp/l5.out")"
[ ! -e "$file" ] && ok || bad "ticket file not removed when the listener closed"

# 6. Usage errors exit 2; a tls-only client refuses an auth ticket.
"$cli" listen --bogus >/dev/null 2>&1; [ $? = 2 ] && ok || bad "usage exit"
"$cli" connect >/dev/null 2>&1; [ $? = 2 ] && ok || bad "connect usage exit"
out="$tmp/l6.out"
(timeout 15 "$cli" listen >"$out" 2>"$tmp/l6.err" < <(sleep 10)) &
lpid=$!
pids+=($lpid)
ticket=$(first_line "$tmp/l6.err") || bad "no ticket (6)"
echo x | connect_t "$ticket" --tls >/dev/null 2>"$tmp/c6.err"
[ $? = 1 ] && grep -q "mode mismatch" "$tmp/c6.err" && ok || bad "--tls with an auth ticket: $(cat "$tmp/c6.err")"
kill "$lpid" 2>/dev/null

# The relay never makes the stdin description it shares with the shell
# (and whatever runs after it) non-blocking, and every byte still arrives.
(timeout 15 "$cli" listen >"$tmp/nb.out" 2>"$tmp/nb.err" </dev/null) &
pids+=($!)
ticket=$(first_line "$tmp/nb.err") || bad "listen (shared stdin) printed no ticket"
fl=$( (printf 'first'; sleep 0.3; printf 'second') | {
    connect_t "$ticket" >/dev/null 2>"$tmp/nb.cerr"
    python3 -c 'import fcntl, os; print(fcntl.fcntl(0, fcntl.F_GETFL) & os.O_NONBLOCK)'
})
[ "$fl" = 0 ] && ok || bad "connect left its shared stdin non-blocking ($fl): $(cat "$tmp/nb.cerr")"
sleep 0.2
[ "$(cat "$tmp/nb.out")" = firstsecond ] && ok || bad "shared stdin: got '$(cat "$tmp/nb.out")'"

echo "$pass passed, $failures failed"
[ "$failures" = 0 ]
