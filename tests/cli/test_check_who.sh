#!/bin/bash
# `loopsec check` and `loopsec who`: exit codes, normal forms, exactly one
# stderr line on refusal, and `who` naming a real holder with its pid.
# Usage: test_check_who.sh PATH-TO-loopsec
set -u
cli=$1
tmp=$(mktemp -d)
holder=
cleanup() {
    if [ -n "$holder" ]; then
        kill "$holder" 2>/dev/null
        wait "$holder" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
passed=0
failed=0

ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

# run ARGS...: sets rc, out, err, errlines
run() {
    "$cli" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
    errlines=$(wc -l <"$tmp/err")
}

accept() { # ADDR NORMAL [FLAGS...]
    local addr=$1 norm=$2
    shift 2
    run check "$@" "$addr"
    if [ "$rc" = 0 ] && [ "$out" = "$norm" ] && [ -z "$err" ]; then
        ok
    else
        bad "check $* '$addr': rc=$rc out='$out' err='$err' (want 0 '$norm')"
    fi
}

refuse() { # ADDR WORD-IN-REASON [FLAGS...]
    local addr=$1 word=$2
    shift 2
    run check "$@" "$addr"
    if [ "$rc" = 1 ] && [ -z "$out" ] && [ "$errlines" = 1 ] &&
        [[ "$err" == *"$word"* ]]; then
        ok
    else
        bad "check $* '$addr': rc=$rc out='$out' err='$err' ($errlines lines; want 1 with '$word')"
    fi
}

accept 127.0.0.1:80 127.0.0.1:80
accept 127.0.0.1:0 127.0.0.1:0
accept localhost:8080 127.0.0.1:8080
accept '[::1]:65535' '[::1]:65535'
accept 127.0.0.7:9 127.0.0.7:9 --allow-127-8
accept 127.0.0.1:9 127.0.0.1:9 --allow-127-8

refuse 0.0.0.0:80 "unspecified"
refuse 127.1:80 "canonical"
refuse 0177.0.0.1:80 "canonical"
refuse 0x7f.0.0.1:80 "canonical"
refuse 2130706433:80 "canonical"
refuse 127.0.0.7:9 "needs --allow-127-8"
refuse '[::ffff:127.0.0.1]:80' "IPv4-mapped"
refuse '[0:0:0:0:0:0:0:1]:80' "non-canonical"
refuse '[fe80::1%eth0]:80' "zone"
refuse localhost.:80 "never resolved"
refuse LOCALHOST:80 "never resolved"
refuse 127.0.0.1.nip.io:80 "never resolved"
refuse ::1:80 "brackets"
refuse 127.0.0.1:65536 "range"
refuse 127.0.0.1:080 "leading zero"
refuse '127.0.0.1:80 ' "space"
refuse '' "empty"
# A control character in the argument is never echoed back.
refuse $'127.0.0.1:80\e[2J' "control"
if grep -q $'\e' "$tmp/err"; then bad "escape echoed"; else ok; fi

# Usage errors: exit 2.
for args in "check" "check a b" "check --bogus 127.0.0.1:1" "who x" \
    "who 0" "who 65536" "who 1 2"; do
    # shellcheck disable=SC2086
    run $args
    if [ "$rc" = 2 ]; then ok; else bad "'$args': rc=$rc (want 2)"; fi
done

# who: a real holder, a python3 listener on 127.0.0.1:0, and one on the
# wildcard 0.0.0.0:0 (only bound and listening: nothing connects to it),
# printing their ports.
mkfifo "$tmp/fifo"
python3 -c '
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
w = socket.socket()
w.bind(("0.0.0.0", 0))
w.listen()
print(s.getsockname()[1], w.getsockname()[1], flush=True)
time.sleep(30)
' >"$tmp/fifo" &
holder=$!
read -r port wport <"$tmp/fifo"
run who "$port"
if [ "$rc" = 0 ] && [[ "$out" == "127.0.0.1:$port: pid $holder "* ]] &&
    [[ "$out" == *"uid $(id -u) "* ]] && [[ "$out" == *python* ]] &&
    [[ "$out" != *"reachable from other hosts"* ]] && [ -z "$err" ]; then
    ok
else
    bad "who $port: rc=$rc out='$out' err='$err' (want 127.0.0.1:$port: pid $holder)"
fi
run who "$wport"
if [ "$rc" = 0 ] && [[ "$out" == "0.0.0.0:$wport: pid $holder "* ]] &&
    [[ "$out" == *"reachable from other hosts"* ]] && [ -z "$err" ]; then
    ok
else
    bad "who $wport: rc=$rc out='$out' err='$err' (want 0.0.0.0:$wport, reachable)"
fi
# Without PORT: every listener, one line each, wildcards marked.
run who
lline=$(printf '%s\n' "$out" | grep "^127\.0\.0\.1:$port ")
wline=$(printf '%s\n' "$out" | grep "^0\.0\.0\.0:$wport ")
if [ "$rc" = 0 ] && [[ "$out" == "ADDRESS "* ]] &&
    [[ "$lline" == *" $holder "*python* ]] && [[ "$lline" == *" $(id -un) "* ]] &&
    [[ "$lline" != *"reachable"* ]] &&
    [[ "$wline" == *" $holder "*"reachable from other hosts"* ]] &&
    [ -z "$err" ]; then
    ok
else
    bad "who: rc=$rc out='$out' err='$err' (want both listeners, the wildcard marked)"
fi
run who --help
if [ "$rc" = 0 ] && [[ "$out" == *"who [PORT]"* ]]; then ok; else bad "who --help: rc=$rc"; fi
kill "$holder"
wait "$holder" 2>/dev/null
holder=

# Nobody listens any more: exit 1, one line.
run who "$port"
if [ "$rc" = 1 ] && [ -z "$out" ] && [ "$errlines" = 1 ] &&
    [[ "$err" == *"nobody listens"* ]]; then
    ok
else
    bad "who $port after exit: rc=$rc out='$out' err='$err'"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
