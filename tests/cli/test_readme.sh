#!/usr/bin/env bash
# The README's command-line examples run as written (issue 12 items 5, 9;
# issue 14 item 8): every ```sh block of the sections "Command line" and
# "Protect a service you already run", and the `loopsec spawn` example, is
# run in a fresh bash (in its own process group, bounded in time) with the
# built loopsec first in PATH, and must exit 0 and print what its comments
# promise.
# Usage: test_readme.sh PATH/TO/loopsec
set -u
cli=$1
here=$(cd "$(dirname "$0")" && pwd)
readme=$here/../../README.md
. "$here/lib.sh"
mkdir "$tmp/bin"
ln -s "$(cd "$(dirname "$cli")" && pwd)/$(basename "$cli")" "$tmp/bin/loopsec"

# Split the blocks out: block.N files.
python3 - "$readme" "$tmp" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def section(title):
    m = re.search(r"^## " + re.escape(title) + r"\n(.*?)(?=^## )", text, re.M | re.S)
    return m.group(1) if m else ""
blocks = []
for title in ("Command line", "Protect a service you already run"):
    blocks += re.findall(r"^```sh\n(.*?)^```", section(title), re.M | re.S)
blocks += [b for b in re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S)
           if b.startswith("loopsec spawn")]
for i, b in enumerate(blocks):
    open("%s/block.%d" % (sys.argv[2], i), "w").write(b)
print(len(blocks))
PY
n=$(ls "$tmp"/block.* 2>/dev/null | wc -l)
[ "$n" -ge 4 ] && ok || bad "found $n sh blocks in the README"

expect=("hello" "hello" "hello from a plain web server" "hello from the helper")
i=0
for f in $(ls "$tmp"/block.* | sort -t. -k2 -n); do
    # Each block in its own session, so that whatever it leaves running is
    # ended by its process group id.
    (cd "$tmp" && PATH="$tmp/bin:$PATH" timeout 30 setsid -w bash -c 'echo $$ >"$1.pgid"; exec bash -e "$1"' sh "$f" \
        >"$f.out" 2>"$f.err"; echo $? >"$f.rc")
    rc=$(cat "$f.rc")
    kill -KILL -- "-$(cat "$f.pgid")" 2>/dev/null
    want=${expect[$i]:-}
    if [ "$rc" = 0 ] && { [ -z "$want" ] || grep -q "$want" "$f.out"; }; then ok; else
        bad "README block $i: exit $rc, out '$(cat "$f.out")', err '$(cat "$f.err")'"
    fi
    i=$((i + 1))
done
grep -q "HTTP/1.0 200" "$tmp/block.2.out" && ok || bad "printf | loopsec connect in the README: $(cat "$tmp/block.2.out")"

finish readme
