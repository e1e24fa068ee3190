#!/bin/sh
# Valgrind memcheck over every C test program (unit tests, fuzz-corpus
# replays), in a plain build of its own.  Fails on any memcheck error or any
# definite or indirect leak.  Usage: scripts/valgrind.sh [ctest args...]
#   e.g. scripts/valgrind.sh -R addr
# The Python, CLI-script, install and symbol tests are not C programs of
# ours and are left out; so is the "load" label, whose timing bounds mean
# nothing at valgrind's speed.  Test programs that detect valgrind
# (RUNNING_ON_VALGRIND) shrink their loop counts.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh valgrind
dir=build-valgrind
jobs=$(nproc 2>/dev/null || echo 2)
# No sanitizers here: valgrind and ASan cannot share a process.
cmake -S . -B "$dir" -DLOOPSEC_WERROR=ON -DLOOPSEC_SANITIZE=OFF \
    -DCMAKE_BUILD_TYPE=Debug \
    -DMEMORYCHECK_COMMAND="$(command -v valgrind)" \
    "-DMEMORYCHECK_COMMAND_OPTIONS=--error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect --track-origins=yes --num-callers=30 --child-silent-after-fork=yes" \
    >/dev/null
cmake --build "$dir" -j "$jobs" >"$dir/build.log" 2>&1 || { cat "$dir/build.log"; exit 1; }
# ctest -T memcheck runs each test under MEMORYCHECK_COMMAND; with
# --error-exitcode a test with any report fails, and so does this script.
cd "$dir"
ctest -T memcheck -j "$jobs" --timeout 900 --output-on-failure \
    -LE 'python|cli|install' -E '^(symbols|load)$' "$@"
echo "valgrind: clean"
