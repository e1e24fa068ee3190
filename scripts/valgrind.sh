#!/bin/sh
# Valgrind memcheck over every C test program (unit tests, fuzz-corpus
# replays), in a plain build of its own.  Fails on any memcheck error or any
# definite or indirect leak.  Usage: scripts/valgrind.sh [REGEX]
#   e.g. scripts/valgrind.sh 'addr|ticket'     (default: all of them)
# The Python, CLI-script, install and symbol tests are not C programs of
# ours and are left out; so is test_load, whose timing bounds mean nothing
# at valgrind's speed.  Each program gets 30 minutes (ctest's own per-test
# timeouts are sized for native speed, so the programs are run directly,
# with the command lines ctest would use).  Logs: build-valgrind/valgrind/.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh valgrind
dir=build-valgrind
filter=${1:-.}
# No sanitizers here: valgrind and ASan cannot share a process.
cmake -S . -B "$dir" -DLOOPSEC_WERROR=ON -DLOOPSEC_SANITIZE=OFF \
    -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$dir" -j "$(nproc)" >"$dir/build.log" 2>&1 || {
    cat "$dir/build.log"; exit 1; }
mkdir -p "$dir/valgrind"
(cd "$dir" && ctest --show-only=json-v1 -LE 'python|cli|install' \
    -E '^(symbols|load)$' -R "$filter") >"$dir/valgrind/tests.json"
# One line per test: name, working directory, command (tab-separated).
python3 - "$dir/valgrind/tests.json" >"$dir/valgrind/tests.tsv" <<'PY'
import json, sys
for t in json.load(open(sys.argv[1]))["tests"]:
    props = {p["name"]: p["value"] for p in t.get("properties", [])}
    print("\t".join([t["name"], props.get("WORKING_DIRECTORY", ".")] + t["command"]))
PY
bad=0
total=0
while IFS="$(printf '\t')" read -r name wd cmd; do
    total=$((total + 1))
    log=$PWD/$dir/valgrind/$name.log
    start=$(date +%s)
    # Word splitting of $cmd is wanted: the program and its arguments.
    # shellcheck disable=SC2086
    if (cd "$wd" && timeout 1800 valgrind --error-exitcode=99 \
            --leak-check=full --errors-for-leak-kinds=definite,indirect \
            --show-leak-kinds=definite,indirect --track-origins=yes \
            --num-callers=30 --child-silent-after-fork=yes \
            --log-file="$log" $(printf '%s' "$cmd" | tr '\t' ' ') \
            >"$log.out" 2>&1); then
        echo "valgrind: $name clean ($(($(date +%s) - start)) s)"
    else
        echo "valgrind: $name FAILED ($(($(date +%s) - start)) s): $log" >&2
        bad=$((bad + 1))
    fi
done <"$dir/valgrind/tests.tsv"
[ "$total" -gt 0 ] || { echo "valgrind: no test matched" >&2; exit 1; }
if [ "$bad" -ne 0 ]; then
    echo "valgrind: $bad of $total programs failed" >&2
    exit 1
fi
echo "valgrind: all $total programs clean"
