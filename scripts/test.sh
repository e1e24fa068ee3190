#!/bin/sh
# Build loopsec and run the whole test suite.  Installs what a fresh Debian 12
# machine lacks.  Usage: scripts/test.sh [--sanitize] [--tsan] [--no-plain]
#   --sanitize  also build with ASan+UBSan (LeakSanitizer on) and run it all
#   --tsan      also build with ThreadSanitizer and run the tests that start
#               threads (ctest -L threads)
set -eu
cd "$(dirname "$0")/.."
sanitize=0
tsan=0
plain=1
for a in "$@"; do
    case "$a" in
    --sanitize) sanitize=1 ;;
    --tsan) tsan=1 ;;
    --no-plain) plain=0 ;;
    *) echo "usage: scripts/test.sh [--sanitize] [--tsan] [--no-plain]" >&2; exit 2 ;;
    esac
done
sh scripts/deps.sh
jobs=$(nproc 2>/dev/null || echo 2)

ctest_extra=""
ctest_wrap=""
run() { # build-dir cmake-args...   (ctest arguments in $ctest_extra)
    dir=$1; shift
    cmake -S . -B "$dir" -DLOOPSEC_WERROR=ON "$@" >/dev/null
    cmake --build "$dir" -j "$jobs" >"$dir.build.log" 2>&1 || { cat "$dir.build.log"; exit 1; }
    (cd "$dir" && $ctest_wrap ctest --output-on-failure -j "$jobs" --timeout 300 $ctest_extra)
}

if [ "$plain" = 1 ]; then
    run build
fi
if [ "$sanitize" = 1 ]; then
    # Every C test, CLI script and fuzz-corpus replay again, under ASan,
    # UBSan and LeakSanitizer; any report fails its test.  The Python tests
    # are left out (CPython cannot dlopen an ASan-instrumented library
    # without preloading the runtime; they test the same library through
    # ctypes in the plain build), and so is the install test, whose
    # downstream consumer is built without the sanitizer runtime.
    ctest_extra="-LE python|install"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1 \
    LSAN_OPTIONS=report_objects=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        run build-sanitize -DLOOPSEC_SANITIZE=ON -DLOOPSEC_EXAMPLES=ON
fi
if [ "$tsan" = 1 ]; then
    # The tests that start threads (label "threads", tests/CMakeLists.txt),
    # under ThreadSanitizer; any report fails its test
    # (halt_on_error, and exitcode 66 is never a test's own status).
    # Suppressions, each with its reason: tests/tsan.supp.
    ctest_extra="-L threads"
    # gcc 12's TSan runtime expects the layout of at most 28 bits of mmap
    # randomisation; with more (newer kernels' default) it stops with
    # "unexpected memory mapping".  There the tests run with address
    # randomisation off for this run only (setarch -R, from util-linux).
    bits=$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 28)
    if [ "$bits" -gt 28 ]; then
        ctest_wrap="setarch $(uname -m) -R"
    fi
    TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1:history_size=4:suppressions=$(pwd)/tests/tsan.supp" \
        run build-tsan -DLOOPSEC_TSAN=ON
fi
