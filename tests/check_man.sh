#!/bin/sh
# The manual pages: warning-free roff; every exported function
# (tests/symbols.txt) and every error code documented in loopsec(3); its
# example compiles against the library and runs.
# Usage: check_man.sh SRCDIR BUILDDIR CC [CFLAGS]  (the sanitizer's, if any)
set -eu
src=$1
build=$2
cc=$3
cflags=${4:-}
man3=$src/docs/man/loopsec.3
fail() { echo "man: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for page in "$src/docs/man/loopsec.1" "$man3"; do
    groff -t -man -ww -z "$page" 2>"$tmp/warn" || fail "groff failed on $page"
    [ ! -s "$tmp/warn" ] || { cat "$tmp/warn" >&2; fail "groff warns on $page"; }
    # ... and as man shows it on an 80-column terminal.
    MANWIDTH=80 MANPAGER=cat man -l "$page" >/dev/null 2>"$tmp/warn" ||
        fail "man -l failed on $page"
    [ ! -s "$tmp/warn" ] || { cat "$tmp/warn" >&2; fail "man warns on $page"; }
done

# Each function has an entry under FUNCTIONS: a .BI line declaring it.
missing=""
while read -r sym; do
    [ -n "$sym" ] || continue
    grep -q "^\.BI \"[^\"]*[ *]$sym(" "$man3" || missing="$missing $sym"
done <"$src/tests/symbols.txt"
[ -z "$missing" ] || fail "loopsec(3) does not document:$missing"
# Each error code is in the ERRORS table with its number.
sed -n 's/^ *XX(\(E[A-Z]*\), \(-[0-9]*\),.*/LSEC_\1 \2/p' "$src/include/loopsec.h" >"$tmp/codes"
[ -s "$tmp/codes" ] || fail "no error codes read from loopsec.h"
while read -r name code; do
    grep -q "^$name	\\\\$code	" "$man3" || missing="$missing $name"
done <"$tmp/codes"
[ -z "$missing" ] || fail "loopsec(3) ERRORS lacks:$missing"

# The EXAMPLES program, unescaped from roff, builds and runs.
sed -n '/^\.SH EXAMPLES/,/^\.SH /p' "$man3" | sed -n '/^\.EX/,/^\.EE/p' |
    sed '/^\.EX/d; /^\.EE/d; s/\\e/\\/g; s/\\-/-/g' >"$tmp/example.c"
grep -q "int main" "$tmp/example.c" || fail "no example program"
# shellcheck disable=SC2086 # $cflags is a list of flags
"$cc" -Wall -Werror $cflags -o "$tmp/example" "$tmp/example.c" -I"$src/include" \
    -L"$build" -lloopsec || fail "the example does not compile"
out=$(LD_LIBRARY_PATH=$build "$tmp/example") || fail "the example failed"
[ "$out" = 'got "hello" from the client' ] || fail "example printed: $out"
echo "man: pages clean, $(wc -l <"$src/tests/symbols.txt") functions and $(wc -l <"$tmp/codes") codes documented, example runs"
