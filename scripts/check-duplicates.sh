#!/bin/sh
# A duplicate-code scan of lib/: the pairs of places that share six or more
# lines (the same lines, or the same shape with other names), found by the
# `duplicates` tool.  Every pair is either removed (one function serves both)
# or explained in docs/ARCHITECTURE.md on a line that names both files as
# `A.c ~ B.c` (the names as the tool prints them, relative to lib/).
# Usage: scripts/check-duplicates.sh [DIR]   (default lib)
#   LOOPSEC_DUPLICATES_CHECK=enforce (the default): exit 1 on a pair that is
#     not explained, or on a scan that did not finish.  =warn: list the
#     pairs, exit 0.  Anything else: exit 2.
# `duplicates` is not a Debian package: where it is not installed, the check
# says so and is skipped (exit 0).
set -eu
cd "$(dirname "$0")/.."
mode=${LOOPSEC_DUPLICATES_CHECK:-enforce}
case "$mode" in
enforce | warn) ;;
*)
    echo "check-duplicates: LOOPSEC_DUPLICATES_CHECK is \"$mode\": use enforce or warn" >&2
    exit 2
    ;;
esac
dir=${1:-lib}
if [ ! -d "$dir" ]; then
    echo "check-duplicates: $dir: no such directory" >&2
    exit 2
fi
if ! command -v duplicates >/dev/null 2>&1; then
    echo "check-duplicates: SKIPPED: the duplicates tool is not installed here (it is not a Debian package); $dir/ was not scanned"
    exit 0
fi
doc=docs/ARCHITECTURE.md

out=$(duplicates --repo "$dir" --most 200 --seconds 120)
printf '%s\n' "$out" | sed "s|^|check-duplicates: $dir/: |"

bad=0
# Rows look like "D1 a.c:10-24 ~ b.c:40-54 shape (+2 more runs)".
pairs=$(printf '%s\n' "$out" |
    sed -n 's/^D[0-9][0-9]* \([^: ]*\):[0-9-]* ~ \([^: ]*\):[0-9-]*.*/\1 ~ \2/p')
if [ -n "$pairs" ]; then
    unexplained=$(printf '%s\n' "$pairs" | sort -u | while read -r pair; do
        if [ ! -f "$doc" ] || ! grep -qF -- "$pair" "$doc"; then
            echo "$pair"
        fi
    done)
    if [ -n "$unexplained" ]; then
        printf '%s\n' "$unexplained" |
            sed "s|^|check-duplicates: not explained in $doc: |"
        bad=1
    fi
fi
if printf '%s\n' "$out" | grep -q '^incomplete:'; then
    echo "check-duplicates: the scan did not finish (see incomplete: above)"
    bad=1
fi
if [ "$bad" = 0 ]; then
    echo "check-duplicates: $dir/ clean (no pair, or each explained in $doc)"
    exit 0
fi
if [ "$mode" = warn ]; then
    echo "check-duplicates: LOOPSEC_DUPLICATES_CHECK=warn: not failing"
    exit 0
fi
exit 1
