#!/bin/bash
# `loopsec psk`: the TLS PSK and identity of a tls-mode ticket, checked
# against the PROTOCOL.md test vectors, from argv and from stdin; auth-mode
# and malformed tickets refused with one stderr line and no PSK printed.
# Usage: test_psk.sh PATH-TO-loopsec
set -u
cli=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

# The vectors (docs/PROTOCOL.md "Test vectors").
secret_b64=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8
ticket_tls="loopsec://127.0.0.1:62893/?mode=tls&id=0011223344556677&secret=$secret_b64"
ticket_auth="loopsec://127.0.0.1:62893/?mode=auth&id=0011223344556677&secret=$secret_b64"
want="psk ceed8fd07b12582d37c52963a4388066bae98dabb0c387d8ef7bd96c67a8415a
identity loopsec/1 0011223344556677"

# run STDIN ARGS...: sets rc, out, err
run() {
    local input=$1
    shift
    printf '%s' "$input" | timeout 10 "$cli" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
}

expect_psk() { # LABEL STDIN ARGS...
    local label=$1
    shift
    run "$@"
    if [ "$rc" = 0 ] && [ "$out" = "$want" ] && [ -z "$err" ]; then
        ok
    else
        bad "$label: rc=$rc out='$out' err='$err'"
    fi
}

expect_refused() { # LABEL WANT-RC STDIN ARGS...
    local label=$1 want_rc=$2
    shift 2
    run "$@"
    # A refusal is one stderr line; a usage error (2) prints the usage.
    if [ "$rc" = "$want_rc" ] && [ -z "$out" ] && [ -n "$err" ] &&
        { [ "$want_rc" = 2 ] || [ "$(printf '%s\n' "$err" | wc -l)" = 1 ]; } &&
        ! printf '%s' "$err" | grep -q "$secret_b64"; then
        ok
    else
        bad "$label: rc=$rc (want $want_rc) out='$out' err='$err'"
    fi
}

# A ticket in argv is refused (usage error naming the three sources); the
# environment, a descriptor and a connection file work.
run "" psk "$ticket_tls"
if [ "$rc" = 2 ] && [ -z "$out" ] && [ "$(printf '%s\n' "$err" | wc -l)" = 1 ] &&
    printf '%s' "$err" | grep -q -- "--ticket-file" &&
    printf '%s' "$err" | grep -q -- "--ticket-fd" &&
    printf '%s' "$err" | grep -q "LOOPSEC_TICKET" &&
    ! printf '%s' "$err" | grep -q "$secret_b64"; then ok; else
    bad "argv ticket: rc=$rc out='$out' err='$err'"
fi
LOOPSEC_TICKET=$ticket_tls expect_psk "environment" "" psk
printf '%s\n' "$ticket_tls" >"$tmp/t.ticket"
chmod 600 "$tmp/t.ticket"
expect_psk "ticket file" "" psk --ticket-file "$tmp/t.ticket"
expect_psk "ticket fd" "" psk --ticket-fd 7 7<"$tmp/t.ticket"
chmod 644 "$tmp/t.ticket"
expect_refused "ticket file others can read" 1 "" psk --ticket-file "$tmp/t.ticket"
expect_psk "stdin" "$ticket_tls" psk -
expect_psk "stdin with newline" "$ticket_tls"$'\n' psk -
expect_psk "stdin with CRLF" "$ticket_tls"$'\r\n' psk -

# The PSK must be what the library derives: keyed BLAKE2b-256(secret,
# label), recomputed here with openssl's BLAKE2BMAC for a fresh random secret.
if command -v openssl >/dev/null && command -v xxd >/dev/null; then
    key=$(head -c 32 /dev/urandom | xxd -p -c 64)
    b64=$(printf '%s' "$key" | xxd -r -p | base64 -w0 | tr '+/' '-_' | tr -d '=')
    t="loopsec://127.0.0.1:1/?mode=tls&id=0123456789abcdef&secret=$b64"
    mac=$(printf '%s' "loopsec/1 tls psk server" |
        openssl mac -macopt "hexkey:$key" -macopt size:32 BLAKE2BMAC |
        tr 'A-F' 'a-f')
    run "$t" psk -
    if [ "$rc" = 0 ] &&
        [ "$out" = "psk $mac"$'\n'"identity loopsec/1 0123456789abcdef" ]; then
        ok
    else
        bad "random secret: rc=$rc out='$out' (want psk $mac)"
    fi
fi

LOOPSEC_TICKET=$ticket_auth expect_refused "auth ticket" 1 "" psk
expect_refused "auth ticket on stdin" 1 "$ticket_auth" psk -
LOOPSEC_TICKET="loopsec://127.0.0.1:62893/?mode=tls" expect_refused "malformed ticket" 1 "" psk
expect_refused "empty stdin" 1 "" psk -
expect_refused "no argument" 2 "" psk
expect_refused "two arguments" 2 "" psk - extra

echo "psk: $passed passed, $failed failed"
[ "$failed" = 0 ]
