#!/bin/sh
# Build loopsec and run the demo: a debugger-style parent spawns its helper,
# which connects back over an authenticated loopback channel (the ticket on
# an inherited pipe, never in argv or the environment); then a kernel-style
# helper that listens first and announces its ticket.  Each side prints what
# it did.  Installs what a fresh Debian 12 machine lacks.
# Usage: scripts/demo.sh
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
dir=build-demo
cmake -S . -B "$dir" -DLOOPSEC_EXAMPLES=ON -DBUILD_TESTING=OFF >/dev/null
cmake --build "$dir" -j "$jobs" >"$dir/build.log" 2>&1 || { cat "$dir/build.log"; exit 1; }

echo "== debugger pattern: the parent listens, the helper connects back"
"$dir/examples/debug_parent" "$dir/examples/debug_helper"
echo
echo "== kernel pattern: the helper listens and announces, the parent connects"
"$dir/examples/kernel_parent" "$dir/examples/kernel_helper"
echo
echo "== addresses: only loopback, only canonical spellings"
for a in 127.0.0.1:8080 localhost:8080 '[::1]:8080' 0.0.0.0:8080 127.1:8080 0x7f.0.0.1:8080 '[::ffff:127.0.0.1]:8080' example.com:8080; do
    printf '%-28s ' "loopsec check $a"
    "$dir/loopsec" check "$a" 2>&1 || true
done
echo
echo "== who holds a port: a listener, then loopsec who"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The listener gives up after 2 s without a peer; it writes its ticket (a
# credential) into a private 0600 connection file, from which only the port
# is shown here.
"$dir/loopsec" listen --timeout 2s --ticket-file "$tmp/ticket" >/dev/null 2>&1 </dev/null &
for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
    [ -s "$tmp/ticket" ] && break
    sleep 0.1
done
port=$(sed -n 's|^loopsec://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/ticket")
echo "loopsec listen is on 127.0.0.1:$port"
echo "loopsec who $port:"
"$dir/loopsec" who "$port"
wait || true
