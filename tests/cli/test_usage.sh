#!/usr/bin/env bash
# The command line talks to its user (issue 12, items 4, 6, 9):
#  - `loopsec --help`, `loopsec help [CMD]` and `loopsec CMD --help` print the
#    usage with every option and its default to stdout and exit 0;
#  - usage errors exit 2 with one line on stderr;
#  - `loopsec --version` / `loopsec version` print both versions;
#  - durations take units (500ms, 2s, 1m, forever; a bare number is ms) and
#    garbage is a usage error;
#  - --allow-127-8 exists on listen, connect and serve, and the refusal of
#    127.0.0.2 names that flag, not a C constant;
#  - a URL is diagnosed as a URL, a directory given as --ticket-file as a
#    directory.
# Usage: test_usage.sh PATH/TO/loopsec
set -u
cli=$1
. "$(dirname "$0")/lib.sh"
run() { timeout 10 "$cli" "$@" </dev/null >"$tmp/out" 2>"$tmp/err"; rc=$?; }

commands="check who listen connect spawn serve forward psk version help"

# 1. Help to stdout, exit 0, from all three spellings.
for c in $commands; do
    for form in "help $c" "$c --help" "$c -h"; do
        run $form
        [ "$rc" = 0 ] && [ -s "$tmp/out" ] && [ ! -s "$tmp/err" ] && grep -q "usage: loopsec $c" "$tmp/out" && ok ||
            bad "'$form': exit $rc, stderr '$(cat "$tmp/err")'"
    done
done
for form in "--help" "-h" "help"; do
    run $form
    [ "$rc" = 0 ] && [ ! -s "$tmp/err" ] && ok || bad "'loopsec $form': exit $rc"
    for c in $commands; do grep -q "^  $c " "$tmp/out" || bad "'loopsec $form' does not list $c"; done
done
# Every option of a command is in its help, with its default.
expect_help() { # CMD PATTERN...
    local c=$1
    shift
    "$cli" help "$c" >"$tmp/h"
    for p in "$@"; do grep -q -- "$p" "$tmp/h" || bad "help $c lacks '$p'"; done
    ok
}
expect_help listen --tls --bind "default 127.0.0.1:0" --allow-127-8 --ticket-file --ticket-fd "default 2" --timeout "default forever" --eof-timeout
expect_help connect --tls --allow-127-8 --ticket-file --ticket-fd LOOPSEC_TICKET --inherited "default 10s" --eof-timeout
expect_help spawn --tls --timeout "default 10s" --eof-timeout
expect_help serve --tls --bind --allow-127-8 --ticket-file --ticket-fd --key-file --max-peers "default 64" "--to 127.0.0.1:PORT" "--to unix:PATH" "--exec CMD"
expect_help forward --tls --ticket-file --ticket-fd "--listen unix:PATH" --stdio "No option opens a TCP port" "default 10s"
expect_help psk --ticket-file --ticket-fd LOOPSEC_TICKET '"ID"'
# `spawn -- CMD --help` is CMD's option, not ours.
run spawn --timeout 2s -- sh -c 'exit 3' --help
[ "$rc" = 1 ] && ! grep -q "usage: loopsec spawn" "$tmp/out" && grep -q "helper" "$tmp/err" && ok ||
    bad "spawn took CMD's --help for its own: exit $rc $(cat "$tmp/out" "$tmp/err")"

# 2. Versions.
for form in "--version" "version"; do
    run $form
    [ "$rc" = 0 ] && grep -Eq "^loopsec [0-9]+\.[0-9]+\.[0-9]+ \(library [0-9]+\.[0-9]+\.[0-9]+\)$" "$tmp/out" && ok ||
        bad "'$form': exit $rc: $(cat "$tmp/out")"
done

# 3. Usage errors: exit 2, one line on stderr, nothing on stdout.
usage_error() { # ARGS...
    run "$@"
    [ "$rc" = 2 ] && [ ! -s "$tmp/out" ] && [ "$(wc -l <"$tmp/err")" = 1 ] && ok ||
        bad "'$*': exit $rc, stderr: $(cat "$tmp/err")"
}
usage_error
usage_error bogus
usage_error --bogus
usage_error listen --bogus
usage_error connect --bogus
usage_error serve
usage_error serve --to 127.0.0.1:1 --exec cat
usage_error forward --ticket-file x
usage_error spawn
usage_error help bogus
usage_error check
usage_error check --bogus 127.0.0.1:1
usage_error check 127.0.0.1:1 127.0.0.1:2
for v in abc -5 1.5 2x 10h "" 99999999999; do
    usage_error listen --timeout "$v"
    usage_error connect --timeout "$v" --ticket-file x
    usage_error spawn --timeout "$v" -- true
done
grep -q "500ms, 2s" "$tmp/err" && ok || bad "the duration error does not show the form: $(cat "$tmp/err")"
# Valid durations are taken.
for v in 500ms 2s 1m 250 forever; do
    run listen --timeout "$v" --bind 0.0.0.0:0
    [ "$rc" = 1 ] && ok || bad "--timeout $v refused: exit $rc $(cat "$tmp/err")"
done
run listen --timeout 100ms
[ "$rc" = 1 ] && grep -q "timed out" "$tmp/err" && ok || bad "--timeout 100ms: exit $rc $(cat "$tmp/err")"

# 4. --allow-127-8 on listen, connect and serve; the hint names the flag.
run listen --bind 127.0.0.2:0 --timeout 10ms
[ "$rc" = 1 ] && grep -q -- "--allow-127-8" "$tmp/err" && ! grep -q "LSEC_" "$tmp/err" && ok ||
    bad "listen 127.0.0.2: $(cat "$tmp/err")"
timeout 10 "$cli" listen --allow-127-8 --bind 127.0.0.2:0 --ticket-fd 3 3>"$tmp/t" </dev/null >"$tmp/lout" 2>"$tmp/lerr" &
pids+=($!)
for _ in $(seq 1 200); do grep -q '^loopsec://' "$tmp/t" 2>/dev/null && break; sleep 0.025; done
grep -q '^loopsec://127.0.0.2:' "$tmp/t" && ok || bad "listen --allow-127-8: $(cat "$tmp/lerr")"
echo hi | LOOPSEC_TICKET=$(cat "$tmp/t") timeout 10 "$cli" connect >/dev/null 2>"$tmp/err"
[ $? = 1 ] && grep -q -- "--allow-127-8" "$tmp/err" && ok || bad "connect without --allow-127-8: $(cat "$tmp/err")"
echo hi | LOOPSEC_TICKET=$(cat "$tmp/t") timeout 10 "$cli" connect --allow-127-8 >/dev/null 2>"$tmp/err"
[ $? = 0 ] && ok || bad "connect --allow-127-8: $(cat "$tmp/err")"
run serve --to 127.0.0.2:80
[ "$rc" = 1 ] && grep -q -- "--allow-127-8" "$tmp/err" && ok || bad "serve --to 127.0.0.2: $(cat "$tmp/err")"
timeout 1 "$cli" serve --allow-127-8 --to 127.0.0.2:80 --ticket-fd 3 3>/dev/null </dev/null >/dev/null 2>"$tmp/err"
[ $? = 124 ] && ok || bad "serve --allow-127-8 --to 127.0.0.2 did not start: $(cat "$tmp/err")"

# 5. URLs and directories get their own words.
for u in tcp://127.0.0.1:0 http://127.0.0.1:80; do
    run check "$u"
    [ "$rc" = 1 ] && grep -q "URL" "$tmp/err" && ! grep -q "brackets" "$tmp/err" && ok || bad "check $u: $(cat "$tmp/err")"
    run listen --bind "$u"
    [ "$rc" = 1 ] && grep -q "URL" "$tmp/err" && ok || bad "listen --bind $u: $(cat "$tmp/err")"
done
mkdir "$tmp/dir"
run connect --ticket-file "$tmp/dir"
[ "$rc" = 1 ] && grep -q "directory" "$tmp/err" && ! grep -q "permissions" "$tmp/err" && ok || bad "connect --ticket-file DIR: $(cat "$tmp/err")"
run listen --ticket-file "$tmp/dir"
[ "$rc" = 1 ] && grep -q "directory" "$tmp/err" && ok || bad "listen --ticket-file DIR: $(cat "$tmp/err")"

finish usage
