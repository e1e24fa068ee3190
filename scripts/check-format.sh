#!/bin/sh
# The C sources formatted as the committed .clang-format says:
# `clang-format --dry-run -Werror` over each file.
# Usage: scripts/check-format.sh [FILE ...]
#   With no FILE: every tracked .c and .h file under lib/ cli/ include/
#   tests/ examples/.
#   LOOPSEC_FORMAT_CHECK=enforce (the default): exit 1 if a file is not
#     formatted.  =warn: list those files, exit 0.  Anything else: exit 2.
#   LOOPSEC_CLANG_FORMAT: the binary (default clang-format-14, else
#     clang-format).  The output is pinned to clang-format 14, Debian 12's:
#     another major version may format some constructs differently.
# Fix a file with: clang-format -i FILE
set -eu
cd "$(dirname "$0")/.."
mode=${LOOPSEC_FORMAT_CHECK:-enforce}
case "$mode" in
enforce | warn) ;;
*)
    echo "check-format: LOOPSEC_FORMAT_CHECK is \"$mode\": use enforce or warn" >&2
    exit 2
    ;;
esac

cf=${LOOPSEC_CLANG_FORMAT:-}
if [ -z "$cf" ]; then
    if command -v clang-format-14 >/dev/null 2>&1; then
        cf=clang-format-14
    else
        cf=clang-format
    fi
fi
if ! command -v "$cf" >/dev/null 2>&1; then
    # Debian's package; scripts/deps.sh installs it when run as root.
    sh scripts/deps.sh clang-format
fi
version=$("$cf" --version)
case "$version" in
*"version 14."*) ;;
*) echo "check-format: $version: results are pinned to clang-format 14" >&2 ;;
esac

if [ "$#" -eq 0 ]; then
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        set -- $(git ls-files -- 'lib/*.[ch]' 'cli/*.[ch]' 'include/*.[ch]' \
            'tests/*.[ch]' 'examples/*.[ch]')
    else
        set -- $(find lib cli include tests examples -name '*.[ch]' | sort)
    fi
fi

bad=0
checked=0
for f in "$@"; do
    if [ ! -f "$f" ]; then
        echo "check-format: $f: no such file" >&2
        exit 2
    fi
    checked=$((checked + 1))
    # --style=file finds the .clang-format above the file; a file outside
    # the tree would silently get LLVM's defaults, so name ours.
    out=$("$cf" --dry-run -Werror --style=file:.clang-format "$f" 2>&1) && continue
    bad=$((bad + 1))
    n=$(printf '%s\n' "$out" | grep -c ': error: ' || true)
    echo "check-format: $f: not formatted ($n differences)"
    if [ "$mode" = enforce ]; then
        printf '%s\n' "$out" | head -n 30
    fi
done
if [ "$bad" -eq 0 ]; then
    echo "check-format: $checked files formatted"
    exit 0
fi
echo "check-format: $bad of $checked files are not formatted (clang-format -i FILE)"
if [ "$mode" = warn ]; then
    echo "check-format: LOOPSEC_FORMAT_CHECK=warn: not failing"
    exit 0
fi
exit 1
