#!/bin/sh
# The README's Python example runs as written: its shell block (marked
# "readme-python"), run from the source tree, prints what the README says
# (pid, uid and user aside), and the scripts the README shows are the files
# in examples/python/, character for character.
# Usage: check_readme_python.sh SRCDIR   (LOOPSEC_LIBRARY: the built library)
set -eu
src=$1
readme=$src/README.md
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "readme-python: $*" >&2; exit 1; }

# The fenced block after the marker; then the one after "prints".
awk '/<!-- readme-python/ { on = 1; next }
     on == 1 && /^```sh$/ { on = 2; next }
     on == 2 && /^```$/ { exit }
     on == 2 { print }' "$readme" >"$tmp/run.sh"
[ -s "$tmp/run.sh" ] || fail "no readme-python block in README.md"
awk '/<!-- readme-python/ { on = 1; next }
     on == 1 && /^prints$/ { on = 2; next }
     on == 2 && /^```$/ { if (++fence == 2) exit; next }
     on == 2 && fence == 1 { print }' "$readme" >"$tmp/want"
[ -s "$tmp/want" ] || fail "no expected output after the block"

(cd "$src" && timeout 60 sh -eu "$tmp/run.sh") >"$tmp/got" 2>"$tmp/err" ||
    { cat "$tmp/got" "$tmp/err" >&2; fail "the README's commands failed"; }
norm() { sed "s/pid=[0-9]*/pid=N/; s/uid=[0-9]*/uid=N/; s/user='[^']*'/user=U/" "$1"; }
if ! norm "$tmp/want" | diff -u - "$(norm "$tmp/got" >"$tmp/gotn"; echo "$tmp/gotn")"; then
    fail "output differs from the README's"
fi
[ ! -s "$tmp/err" ] || { cat "$tmp/err" >&2; fail "stderr was not empty"; }

for f in server.py client.py; do
    awk -v name="\`examples/python/$f\`:" '$0 == name { on = 1; next }
         on == 1 && /^```python$/ { on = 2; next }
         on == 2 && /^```$/ { exit }
         on == 2 { print }' "$readme" >"$tmp/$f"
    cmp -s "$tmp/$f" "$src/examples/python/$f" ||
        { diff -u "$src/examples/python/$f" "$tmp/$f" >&2; fail "README's $f differs from examples/python/$f"; }
done
echo "readme-python: the README's server and client run as written"
