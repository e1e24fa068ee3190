#!/bin/sh
# The CI's source checks can fail: scripts/check-format.sh refuses a file
# that is not formatted (enforce), only lists it (warn), refuses an unknown
# mode; scripts/check-duplicates.sh refuses a planted duplicate (enforce),
# lists it (warn), passes a clean tree, and says SKIPPED without the tool.
# Usage: check_tooling.sh SRCDIR.  Exit 77 (skipped) without clang-format.
set -u
src=$1
fails=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

expect() { # status description command...
    want=$1
    what=$2
    shift 2
    "$@" >"$tmp/out" 2>&1
    got=$?
    if [ "$got" != "$want" ]; then
        echo "FAIL: $what: exit $got, expected $want"
        sed 's/^/    /' "$tmp/out"
        fails=$((fails + 1))
    else
        echo "ok: $what"
    fi
}
expect_output() { # text description
    if grep -qF -- "$1" "$tmp/out"; then
        echo "ok: $2"
    else
        echo "FAIL: $2: no \"$1\" in"
        sed 's/^/    /' "$tmp/out"
        fails=$((fails + 1))
    fi
}

if command -v clang-format-14 >/dev/null 2>&1 ||
    command -v clang-format >/dev/null 2>&1; then
    printf 'int f(void) {\n  return 0; }\n' >"$tmp/ugly.c"
    printf 'int f(void)\n{\n    return 0;\n}\n' >"$tmp/tidy.c"
    expect 1 "format: unformatted file, enforce" \
        env LOOPSEC_FORMAT_CHECK=enforce sh "$src/scripts/check-format.sh" "$tmp/ugly.c"
    expect_output "ugly.c: not formatted" "format: names the file"
    expect 1 "format: enforce is the default" \
        env -u LOOPSEC_FORMAT_CHECK sh "$src/scripts/check-format.sh" "$tmp/tidy.c" "$tmp/ugly.c"
    expect 0 "format: unformatted file, warn" \
        env LOOPSEC_FORMAT_CHECK=warn sh "$src/scripts/check-format.sh" "$tmp/ugly.c"
    expect_output "ugly.c: not formatted" "format: warn still names the file"
    expect 0 "format: formatted file" \
        sh "$src/scripts/check-format.sh" "$tmp/tidy.c"
    expect 2 "format: unknown mode" \
        env LOOPSEC_FORMAT_CHECK=off sh "$src/scripts/check-format.sh" "$tmp/tidy.c"
    expect 2 "format: missing file" \
        sh "$src/scripts/check-format.sh" "$tmp/none.c"
    format=1
else
    echo "skip: no clang-format"
    format=0
fi

if command -v duplicates >/dev/null 2>&1; then
    mkdir "$tmp/dup" "$tmp/clean"
    # Eight lines of one function, twice.
    for name in one two; do
        printf 'int %s(int a, int b)\n{\n    int c = a + b;\n    c = c * 3;\n    c = c - a;\n    c = c ^ b;\n    c = c + 17;\n    c = c / 2;\n    return c;\n}\n' \
            "$name" >"$tmp/dup/$name.c"
    done
    printf 'int one(void)\n{\n    return 1;\n}\n' >"$tmp/clean/one.c"
    expect 1 "duplicates: planted pair, enforce" \
        env LOOPSEC_DUPLICATES_CHECK=enforce sh "$src/scripts/check-duplicates.sh" "$tmp/dup"
    expect_output "not explained in docs/ARCHITECTURE.md: one.c ~ two.c" \
        "duplicates: names the pair"
    expect 0 "duplicates: planted pair, warn" \
        env LOOPSEC_DUPLICATES_CHECK=warn sh "$src/scripts/check-duplicates.sh" "$tmp/dup"
    expect 0 "duplicates: clean tree" \
        sh "$src/scripts/check-duplicates.sh" "$tmp/clean"
    expect 2 "duplicates: unknown mode" \
        env LOOPSEC_DUPLICATES_CHECK=off sh "$src/scripts/check-duplicates.sh" "$tmp/clean"
    # Without the tool on PATH: skipped, said so, not failed.
    tooldir=$(dirname "$(command -v duplicates)")
    path=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$tooldir" | paste -sd: -)
    if PATH=$path command -v duplicates >/dev/null 2>&1; then
        echo "skip: duplicates is also elsewhere on PATH"
    else
        expect 0 "duplicates: tool missing" \
            env PATH="$path" sh "$src/scripts/check-duplicates.sh" "$tmp/dup"
        expect_output "SKIPPED: the duplicates tool is not installed" \
            "duplicates: says it skipped"
    fi
else
    echo "skip: no duplicates tool"
fi

if [ "$fails" != 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
[ "$format" = 1 ] || exit 77
exit 0
