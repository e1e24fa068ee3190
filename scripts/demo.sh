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
