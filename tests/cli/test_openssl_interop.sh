#!/bin/bash
# tls mode against the real OpenSSL command line, both ways:
#   1. `openssl s_client -tls1_3 -psk HEX -psk_identity ID` (given what
#      `loopsec psk -` prints) against `loopsec listen --tls`: TLS 1.3 with
#      TLS_AES_128_GCM_SHA256 and (EC)DHE, no session ticket, one frame each
#      way; a wrong PSK, another identity and a TLS 1.2 client are refused
#      first and the listener still serves the right client afterwards.
#   2. `loopsec connect` with a hand-made tls ticket against
#      `openssl s_server -tls1_3 -nocert -psk HEX -psk_identity ID`.
#      s_server binds 127.0.0.1:0 itself and prints the port it got
#      ("ACCEPT 127.0.0.1:PORT"), so no port is ever picked and released:
#      nothing can race for it.
# Messages are loopsec frames (4-byte big-endian length, then the payload):
# the OpenSSL tools relay raw bytes, so this side writes and reads frames.
# Every wait is bounded (timeout, or a loop with a deadline).
# Usage: test_openssl_interop.sh PATH-TO-loopsec
set -u
cli=$1
if ! command -v openssl >/dev/null; then
    echo "openssl_interop: SKIP (no openssl command)"
    exit 0
fi
tmp=$(mktemp -d)
bg=()
cleanup() {
    exec 3>&- 4>&- 5>&- 2>/dev/null
    for p in "${bg[@]}"; do
        kill "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
passed=0
failed=0

ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

# One loopsec frame around a short payload (under 256 bytes).
frame() {
    printf '\000\000\000'"\\$(printf '%03o' "${#1}")"'%s' "$1"
}

# wait_for FILE PATTERN [SECONDS]: until grep finds PATTERN (bounded).
wait_for() {
    local i limit=$((${3:-10} * 20))
    for ((i = 0; i < limit; i++)); do
        grep -aq -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# PSK and identity of a ticket, through `loopsec psk -` (stdin, not argv).
psk_of() {
    local lines
    lines=$(printf '%s\n' "$1" | timeout 10 "$cli" psk -) || return 1
    psk=$(printf '%s\n' "$lines" | sed -n 's/^psk //p')
    identity=$(printf '%s\n' "$lines" | sed -n 's/^identity //p')
    [ ${#psk} = 64 ] && [ -n "$identity" ]
}

# --------------------------------------------------------------------------
# 1. openssl s_client against loopsec listen --tls

mkfifo "$tmp/lin"
timeout 60 "$cli" listen --tls --timeout 30000 <"$tmp/lin" >"$tmp/lout" \
    2>"$tmp/lerr" &
lpid=$!
bg+=("$lpid")
exec 3>"$tmp/lin" # the listener's stdin: open until we close it

if ! wait_for "$tmp/lerr" '^loopsec://'; then
    bad "listen --tls printed no ticket: $(cat "$tmp/lerr")"
else
    ticket=$(grep -m 1 '^loopsec://' "$tmp/lerr")
    port=$(printf '%s' "$ticket" | sed -n 's|^loopsec://127\.0\.0\.1:\([0-9]*\)/?mode=tls&.*|\1|p')
    [ -n "$port" ] && ok || bad "not a tls ticket on 127.0.0.1"
    if psk_of "$ticket"; then ok; else bad "loopsec psk failed"; fi

    # s_client: stdin is a file with one frame; -ign_eof keeps it
    # connected after that until the listener closes.
    s_client() { # OUT ARGS...
        local out=$1
        shift
        timeout 15 openssl s_client -connect "127.0.0.1:$port" -ign_eof \
            "$@" <"$tmp/cin" >"$out" 2>&1
    }
    frame "hello from openssl" >"$tmp/cin"

    # Refused first: a wrong PSK, another identity, TLS 1.2.
    wrong=$(printf '%s' "$psk" | tr '0-9a-f' '1-9a-f0')
    s_client "$tmp/c_wrongpsk" -tls1_3 -psk "$wrong" -psk_identity "$identity"
    if grep -aq "alert" "$tmp/c_wrongpsk" &&
        ! grep -aq "hello from openssl" "$tmp/lout"; then ok; else
        bad "wrong PSK was not refused: $(cat "$tmp/c_wrongpsk")"
    fi
    s_client "$tmp/c_wrongid" -tls1_3 -psk "$psk" \
        -psk_identity "loopsec/1 0000000000000000"
    if grep -aq "alert" "$tmp/c_wrongid"; then ok; else
        bad "another identity was not refused: $(cat "$tmp/c_wrongid")"
    fi
    s_client "$tmp/c_tls12" -tls1_2 -psk "$psk" -psk_identity "$identity"
    if grep -aq "alert" "$tmp/c_tls12" &&
        ! grep -aq "Cipher is TLS_" "$tmp/c_tls12"; then ok; else
        bad "a TLS 1.2 client was not refused: $(cat "$tmp/c_tls12")"
    fi

    # The right client, in the background; the listener relays its frame.
    # 3>&-: the listener's stdin must not stay open through this child.
    s_client "$tmp/c_ok" -tls1_3 -psk "$psk" -psk_identity "$identity" 3>&- &
    cpid=$!
    bg+=("$cpid")
    if wait_for "$tmp/lout" "hello from openssl"; then ok; else
        bad "listen did not receive the s_client frame: $(cat "$tmp/lerr")"
    fi
    printf 'reply from loopsec' >&3 # one stdin chunk: one frame
    if wait_for "$tmp/c_ok" "reply from loopsec"; then ok; else
        bad "s_client did not receive the listener's frame"
    fi
    exec 3>&- # stdin ends: the listener closes cleanly and exits
    wait "$cpid"
    wait "$lpid"
    lrc=$?
    [ "$lrc" = 0 ] && ok || bad "listen exit $lrc: $(cat "$tmp/lerr")"
    if grep -aq "TLSv1.3" "$tmp/c_ok" &&
        grep -aq "Cipher is TLS_AES_128_GCM_SHA256" "$tmp/c_ok"; then ok; else
        bad "s_client did not negotiate TLSv1.3 TLS_AES_128_GCM_SHA256: $(cat "$tmp/c_ok")"
    fi
    # The PSK came with an (EC)DHE exchange (psk_dhe_ke).
    if grep -aq "Server Temp Key: " "$tmp/c_ok"; then ok; else
        bad "s_client saw no (EC)DHE key exchange"
    fi
    # The listener issues no session tickets.
    if ! grep -aq "New Session Ticket" "$tmp/c_ok"; then ok; else
        bad "the listener sent a session ticket"
    fi
fi

# --------------------------------------------------------------------------
# 2. loopsec connect against openssl s_server

id=$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')
b64=$(head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')
# The PSK does not depend on the port: derive it before s_server starts.
if ! psk_of "loopsec://127.0.0.1:1/?mode=tls&id=$id&secret=$b64"; then
    bad "loopsec psk failed for a hand-made ticket"
else
    mkfifo "$tmp/sin" "$tmp/kin"
    timeout 60 openssl s_server -tls1_3 -nocert -psk "$psk" \
        -psk_identity "$identity" -accept 127.0.0.1:0 -naccept 1 \
        <"$tmp/sin" >"$tmp/sout" 2>&1 &
    spid=$!
    bg+=("$spid")
    exec 4>"$tmp/sin"
    if ! wait_for "$tmp/sout" '^ACCEPT 127\.0\.0\.1:[0-9]'; then
        bad "s_server did not start: $(cat "$tmp/sout")"
    else
        sport=$(sed -n 's/^ACCEPT 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/sout")
        ticket="loopsec://127.0.0.1:$sport/?mode=tls&id=$id&secret=$b64"
        LOOPSEC_TICKET=$ticket timeout 30 "$cli" connect --tls --timeout 10000 \
            <"$tmp/kin" >"$tmp/kout" 2>"$tmp/kerr" 4>&- &
        kpid=$!
        bg+=("$kpid")
        exec 5>"$tmp/kin"
        printf 'hello from loopsec' >&5
        if wait_for "$tmp/sout" "hello from loopsec"; then ok; else
            bad "s_server did not receive the frame: $(cat "$tmp/kerr")"
        fi
        frame "reply from openssl" >&4
        if wait_for "$tmp/kout" "reply from openssl"; then ok; else
            bad "connect did not receive s_server's frame: $(cat "$tmp/kerr")"
        fi
        exec 5>&- # connect's stdin ends: it closes cleanly and exits
        wait "$kpid"
        krc=$?
        [ "$krc" = 0 ] && ok || bad "connect exit $krc: $(cat "$tmp/kerr")"
        if grep -aq "CIPHER is TLS_AES_128_GCM_SHA256" "$tmp/sout"; then
            ok
        else
            bad "s_server did not negotiate TLS_AES_128_GCM_SHA256: $(cat "$tmp/sout")"
        fi
    fi
    exec 4>&-
    wait "$spid" 2>/dev/null
fi

echo "openssl_interop: $passed passed, $failed failed"
[ "$failed" = 0 ]
