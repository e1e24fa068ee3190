#!/bin/sh
# Compare the shared object's exported symbols with the pinned list.
# A difference is either an accidental export (fix the code) or a new API
# (add it to symbols.txt in the same commit).
set -eu
lib=$1
expected=$2
actual=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ {print $3}' | LC_ALL=C sort)
if ! printf '%s\n' "$actual" | diff -u "$expected" -; then
    echo "exported symbols differ from $expected" >&2
    exit 1
fi
bad=$(printf '%s\n' "$actual" | grep -v '^lsec_' || true)
if [ -n "$bad" ]; then
    echo "non-lsec_ symbols exported: $bad" >&2
    exit 1
fi
echo "symbols: $(printf '%s\n' "$actual" | wc -l) exported, all pinned"
