#!/usr/bin/env bash
# loopsec(1), docs/man/loopsec.1: groff renders it without a warning, man -l
# shows it, and it stays exact with the CLI: every command of `loopsec help`
# and every option of each `loopsec help CMD` is in the page, as are the
# exit codes, the environment and the "never opens a TCP port" rule.
# Usage: test_manpage.sh PATH/TO/loopsec
set -u
cli=$1
here=$(cd "$(dirname "$0")" && pwd)
page=$here/../../docs/man/loopsec.1
. "$here/lib.sh"
for p in groff man; do
    command -v "$p" >/dev/null || { echo "FAIL: $p is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done

groff -man -Tutf8 -ww -z "$page" 2>"$tmp/warn"
[ $? = 0 ] && [ ! -s "$tmp/warn" ] && ok || bad "groff warnings: $(cat "$tmp/warn")"
MANWIDTH=80 man -l "$page" >"$tmp/text" 2>"$tmp/err"
[ $? = 0 ] && [ ! -s "$tmp/err" ] && grep -q "^NAME" "$tmp/text" && ok || bad "man -l: $(cat "$tmp/err")"
# The rendered text, with hyphenation undone, is what a user reads.
tr -d '\n' <"$tmp/text" | sed 's/‐ *//g; s/  */ /g' >"$tmp/flat"

cmds=$("$cli" help | sed -n 's/^  \([a-z]*\) .*/\1/p')
[ -n "$cmds" ] && ok || bad "no commands in loopsec help"
for c in $cmds; do
    grep -q "loopsec $c" "$tmp/flat" && ok || bad "the man page lacks 'loopsec $c'"
    for opt in $("$cli" help "$c" | grep -o -- '--[a-z0-9][a-z0-9-]*' | sort -u); do
        grep -q -- "$opt" "$tmp/flat" || bad "the man page lacks $c's option $opt"
    done
done
for s in "EXIT STATUS" "ENVIRONMENT" "LOOPSEC_TICKET" "FILES" "EXAMPLES" "TICKETS" \
    "No option opens a TCP port" "default 64" "default 10s" "default forever"; do
    grep -q "$s" "$tmp/flat" && ok || bad "the man page lacks '$s'"
done

finish manpage
