#!/bin/sh
# Counts per message of the 64-byte stream, one transport at a time:
# system calls by kind (the sender's and the receiver's are of different
# kinds), context switches, CPU time of both processes (perf stat), and TCP
# segments (/proc/net/snmp OutSegs: machine-wide, so run it under the
# benchmark lock on a machine whose other loopback traffic is small).
#   tests/bench/count_stream.sh BENCH [TRANSPORT...] [-- BENCH OPTIONS]
# e.g. flock /tmp/loopsec-bench.lock tests/bench/count_stream.sh \
#        build/tests/bench/loopsec_bench raw raw-ra auth openssl openssl-ra tls
set -eu
bench=$1
shift
trs=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do trs="$trs $1"; shift; done
[ "${1:-}" = "--" ] && shift
[ -n "$trs" ] || trs="raw raw-ra auth openssl openssl-ra tls"
ev=syscalls:sys_enter_writev,syscalls:sys_enter_sendmsg,syscalls:sys_enter_sendto,syscalls:sys_enter_write
ev=$ev,syscalls:sys_enter_read,syscalls:sys_enter_recvmsg,syscalls:sys_enter_recvfrom
ev=$ev,syscalls:sys_enter_poll,syscalls:sys_enter_ppoll,raw_syscalls:sys_enter
ev=$ev,context-switches,task-clock
segs() { awk '/^Tcp:/ { if (h) { print $12; exit } h = 1 }' /proc/net/snmp; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for t in $trs; do
    s0=$(segs)
    LOOPSEC_BENCH_COUNT=1 perf stat -x, -e "$ev" -o "$tmp/perf" \
        "$bench" --only bulk --bulk-sizes 64 --transports "$t" --repeat 1 \
        --no-gate "$@" >"$tmp/out" 2>"$tmp/err"
    s1=$(segs)
    msgs=$(awk '/messages$/ { n += $(NF-1) } END { print n + 0 }' "$tmp/err")
    awk -F, -v t="$t" -v m="$msgs" -v segs=$((s1 - s0)) '
        /^#/ || NF < 3 { next }
        { v[$3] = $1 }
        END {
            # A bench without LOOPSEC_BENCH_COUNT: one send per message.
            if (m == 0)
                m = v["syscalls:sys_enter_writev"] + v["syscalls:sys_enter_sendmsg"] + v["syscalls:sys_enter_sendto"] + v["syscalls:sys_enter_write"]
            printf "%-11s %9d msgs |", t, m
            n = split("writev sendmsg sendto write read recvmsg recvfrom poll ppoll", k, " ")
            for (i = 1; i <= n; i++) {
                x = v["syscalls:sys_enter_" k[i]]
                if (x > 0) printf " %s %.3f", k[i], x / m
            }
            printf " | all %.3f | cs %.4f | segs %.3f | cpu %.3f us\n",
                v["raw_syscalls:sys_enter"] / m, v["context-switches"] / m,
                segs / m, v["task-clock"] * 1000 / m
        }' "$tmp/perf"
done
