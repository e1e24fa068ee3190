#!/bin/sh
# Build loopsec in Release and run the benchmark (issue 7, docs/BENCHMARKS.md):
# loopsec auth and tls side by side with raw TCP and direct OpenSSL TLS 1.3
# in one run, printing every figure and the ratio loopsec/anchor.
#
# Usage: scripts/bench.sh [--quick] [loopsec_bench options]
#   (no option)  full measurement, three runs, verdict on the median ratios;
#                exit 1 if a target is missed
#   --quick      smoke run in well under 20 s; targets reported, not gated
#   --proxies    also time stunnel4 and spiped (installed if missing)
#   --cli        the command-line benchmark instead (scripts/bench_cli.py):
#                listen/connect against socat and nc, serve/forward against
#                stunnel4 and spiped; further options go to bench_cli.py
#   --python     the Python binding's benchmark instead (scripts/bench_py.py):
#                64-byte round trips against multiprocessing.connection and
#                pyzmq (python3-zmq, installed if missing); further options
#                (--quick, --rounds N, --before DIR, ...) go to bench_py.py
# Other options (--repeat N, --only LIST, --transports LIST, --gate) are
# passed to the benchmark program; --help lists them.
set -eu
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--cli" ]; then
    shift
    sh scripts/deps.sh socat netcat-openbsd stunnel4 spiped
    dir=build-bench
    mkdir -p "$dir"
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DLOOPSEC_EXAMPLES=OFF \
        >"$dir/configure.log" 2>&1 || { cat "$dir/configure.log"; exit 2; }
    cmake --build "$dir" -j 2 --target loopsec_cli >"$dir/build.log" 2>&1 ||
        { cat "$dir/build.log"; exit 2; }
    exec python3 scripts/bench_cli.py "$dir/loopsec" "$@"
fi
if [ "${1:-}" = "--python" ]; then
    shift
    sh scripts/deps.sh python3-zmq
    dir=build-bench
    mkdir -p "$dir"
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DLOOPSEC_EXAMPLES=OFF \
        >"$dir/configure.log" 2>&1 || { cat "$dir/configure.log"; exit 2; }
    cmake --build "$dir" -j 2 --target loopsec >"$dir/build.log" 2>&1 ||
        { cat "$dir/build.log"; exit 2; }
    # Debian's python3, which python3-zmq is installed for (a python3
    # earlier in PATH, e.g. a pyenv one, would not see it).
    py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    LOOPSEC_LIBRARY="$(pwd)/$dir/libloopsec.so" exec "$py" scripts/bench_py.py "$@"
fi
extra=""
for a in "$@"; do
    [ "$a" = "--proxies" ] && extra="stunnel4 spiped"
done
# shellcheck disable=SC2086
sh scripts/deps.sh $extra
dir=build-bench
mkdir -p "$dir"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DLOOPSEC_BENCH=ON \
    -DLOOPSEC_EXAMPLES=OFF >"$dir/configure.log" 2>&1 ||
    { cat "$dir/configure.log"; exit 2; }
cmake --build "$dir" -j "$(nproc 2>/dev/null || echo 2)" --target loopsec_bench \
    >"$dir/build.log" 2>&1 || { cat "$dir/build.log"; exit 2; }
exec "$dir/tests/bench/loopsec_bench" "$@"
