#!/bin/bash
# The long fuzz run: build every libFuzzer target (clang, ASan + UBSan) in
# build-fuzz and run each for a time or a number of executions, a few at a
# time, then print the execution count of each.
#
# Usage: scripts/fuzz.sh [-t SECONDS] [-n RUNS] [-j PARALLEL] [TARGET...]
#   -t SECONDS   per target (default 1800, the issue's 30 minutes)
#   -n RUNS      stop a target after RUNS executions (default: time only)
#   -j PARALLEL  targets at once (default 1; the machine is shared)
#   TARGET       addr, ticket, frame, ... (default: all of them)
# The working corpus of each target grows in build-fuzz/work/<target>/ and
# is kept between runs; the seeds in tests/fuzz/corpus/<target>/ are never
# written to.  A finding (crash, leak, timeout, out-of-memory) is saved to
# build-fuzz/findings/<target>/ and makes the script exit 1: fix it, add
# the input to tests/fuzz/corpus/<target>/ as regress-<what>, commit.
# To fold new coverage into the seeds, minimise with libFuzzer's -merge=1:
#   build-fuzz/tests/fuzz/fuzz_T -merge=1 tests/fuzz/corpus/T build-fuzz/work/T
set -eu
cd "$(dirname "$0")/.."
secs=1800
runs=-1
par=1
while getopts t:n:j: o; do
    case $o in
    t) secs=$OPTARG ;;
    n) runs=$OPTARG ;;
    j) par=$OPTARG ;;
    *) sed -n '2,20p' "$0" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))

dir=build-fuzz
CC=clang cmake -S . -B "$dir" -DLOOPSEC_FUZZ=ON -DLOOPSEC_WERROR=ON \
    -DLOOPSEC_EXAMPLES=OFF -DLOOPSEC_BENCH=OFF >/dev/null
cmake --build "$dir" -j "$(nproc)" >"$dir/build.log" 2>&1 || {
    cat "$dir/build.log"; exit 1; }

declare -A maxlen
while read -r name len; do maxlen[$name]=$len; done <"$dir/tests/fuzz/targets.txt"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=($(cut -d' ' -f1 "$dir/tests/fuzz/targets.txt"))

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_one() {
    local t=$1
    mkdir -p "$dir/work/$t" "$dir/findings/$t"
    "$dir/tests/fuzz/fuzz_$t" -max_total_time="$secs" -runs="$runs" \
        -max_len="${maxlen[$t]:-4096}" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$dir/findings/$t/" \
        "$dir/work/$t" "tests/fuzz/corpus/$t" >"$dir/findings/$t.log" 2>&1
}

pids=()
names=()
status=0
for t in "${targets[@]}"; do
    [ -n "${maxlen[$t]+x}" ] || { echo "fuzz: no target $t" >&2; exit 2; }
    echo "fuzz: $t for ${secs}s (runs $runs)"
    run_one "$t" &
    pids+=($!)
    names+=("$t")
    if [ ${#pids[@]} -ge "$par" ]; then
        wait "${pids[0]}" || { echo "fuzz: FINDING in ${names[0]}" >&2; status=1; }
        pids=("${pids[@]:1}")
        names=("${names[@]:1}")
    fi
done
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { echo "fuzz: FINDING in ${names[$i]}" >&2; status=1; }
done

printf '%-20s %14s %10s %s\n' target executions seconds corpus
for t in "${targets[@]}"; do
    log=$dir/findings/$t.log
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    s=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    c=$(ls "$dir/work/$t" | wc -l)
    printf '%-20s %14s %10s %s\n' "$t" "${n:-?}" "${s:-?}" "$c"
done
exit $status
