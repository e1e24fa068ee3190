#!/bin/sh
# User-space instructions per call of lsec_send (64 B) and lsec_recv (a
# read each; a message already held; nothing there: LSEC_EAGAIN) on an
# auth channel, beside the raw anchor's writev and recv, counted by
# callgrind (exact, load-independent) for one or more builds of the
# library, side by side:
#   tests/bench/count_calls.sh [-n CALLS] BUILD_DIR [BUILD_DIR...]
# e.g. tests/bench/count_calls.sh build-before build
# Each BUILD_DIR holds a built libloopsec.so.  Needs valgrind (installed
# through scripts/deps.sh) and a C compiler.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
n=2000
if [ "${1:-}" = "-n" ]; then n=$2; shift 2; fi
[ $# -ge 1 ] || { echo "usage: $0 [-n CALLS] BUILD_DIR..." >&2; exit 2; }
sh "$root/scripts/deps.sh" valgrind >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rows="m_send_inf m_send_0 m_recv_read m_recv_held m_recv_eagain m_raw_writev m_raw_recv m_raw_recv_eagain"
i=0
for b in "$@"; do
    d=$(cd "$b" && pwd)
    i=$((i + 1))
    # -fno-ipa-icf besides noipa: the identical wrappers stay apart.
    cc -O2 -fno-ipa-icf -I"$root/include" "$root/tests/bench/count_calls.c" \
        -o "$tmp/count_calls" -L"$d" -lloopsec -lpthread
    LD_LIBRARY_PATH=$d valgrind --tool=callgrind \
        --callgrind-out-file="$tmp/cg.$i" "$tmp/count_calls" "$n" \
        >"$tmp/out.$i" 2>"$tmp/err.$i" || { cat "$tmp/err.$i" >&2; exit 1; }
    callgrind_annotate --inclusive=yes --threshold=100 "$tmp/cg.$i" \
        2>/dev/null >"$tmp/ann.$i"
done
awk -v n="$n" -v k="$i" -v rows="$rows" -v names="$*" '
    BEGIN {
        split("lsec_send 64 B, timeout -1|lsec_send 64 B, timeout 0|lsec_recv(0), a read each|lsec_recv(0), message held|lsec_recv(0), LSEC_EAGAIN|raw writev 68 B|raw recv, a message there|raw recv, EAGAIN", label, "|")
        split(names, col, " ")
    }
    FNR == 1 { f++ }
    {
        for (j = 1; j <= 8; j++) {
            split(rows, r, " ")
            if (index($0, ":" r[j] " ") || index($0, ":" r[j] "[") || $0 ~ (":" r[j] "$") || index($0, ":" r[j] ".")) {
                v = $1; gsub(",", "", v); cnt[f, j] = v
            }
        }
    }
    END {
        printf "%-30s", "instructions per call"
        for (c = 1; c <= k; c++) printf " %14s", col[c]
        printf "\n"
        for (j = 1; j <= 8; j++) {
            printf "%-30s", label[j]
            for (c = 1; c <= k; c++) printf " %14.1f", cnt[c, j] / n
            printf "\n"
        }
    }' $(for j in $(seq 1 "$i"); do echo "$tmp/ann.$j"; done)
