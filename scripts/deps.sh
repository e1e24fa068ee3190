#!/bin/sh
# Install the Debian packages loopsec needs, only those that are missing.
# Usage: scripts/deps.sh [extra-package ...]
set -eu
# python3-venv: the pip test's fresh venv; groff-base and man-db: the manual
# page tests (groff -ww, man -M on the installed pages).
need="gcc make cmake pkg-config libssl-dev libsodium-dev libcmocka-dev python3 openssl binutils python3-venv groff-base man-db"
# The CLI tests run loopsec in front of real programs (tests/cli/): a web
# server and client, an interactive calculator, a database; util-linux's
# setpriv reads /proc as another uid; iproute2's ss shows the congestion
# control of serve's and forward's sockets; strace holds forward between
# two system calls (delay injection); procps's pgrep finds its pid.
need="$need curl bc redis-server redis-tools util-linux iproute2 strace procps"
missing=""
for p in $need "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "deps: missing packages:$missing (run as root, or install them)" >&2
        exit 1
    fi
    echo "deps: installing$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
