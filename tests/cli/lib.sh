# Shared by the tests/cli/test_*.sh scripts (sourced, not run): a temporary
# directory, the processes to end at exit (by pid), pass/fail counting and
# bounded waits.
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT
pass=0
failures=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
# wait_for FILE PATTERN: until grep finds PATTERN in FILE (at most 5 s).
wait_for() { for _ in $(seq 1 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.025; done; return 1; }
# wait_path PATH: until it exists (at most 5 s).
wait_path() { for _ in $(seq 1 200); do [ -e "$1" ] && return 0; sleep 0.025; done; return 1; }
# finish NAME: the summary line and the exit status.
finish() { echo "$1: $pass passed, $failures failed"; [ "$failures" = 0 ]; }
