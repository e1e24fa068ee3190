/*
 * The peer lookup of the anchors' "with checks" variants
 * (LOOPSEC_BENCH_RAW_FLIGHTS=auth+checks in tr_raw.c,
 * LOOPSEC_BENCH_OPENSSL_CHECKS=1 in tr_openssl.c): the same system calls
 * loopsec makes to learn the uid of the process at the other end of a
 * loopback TCP connection (lib/sys_linux_diag.c), and nothing else.
 */
#include "bench.h"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* The peer lookup: the peer's socket by its 4-tuple (its source is our
 * remote end), on one kept sock_diag socket whose identity is checked
 * before each use.  The peer's uid, or -1. */
static int64_t peer_uid(const struct sockaddr_in *local,
                        const struct sockaddr_in *remote)
{
    static int nl = -1;
    struct stat st;
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } msg;
    union {
        struct nlmsghdr nlh;
        uint8_t bytes[1024];
    } reply;

    if (nl < 0)
        nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0 || fstat(nl, &st) != 0)
        return -1;
    memset(&msg, 0, sizeof(msg));
    msg.nlh.nlmsg_len = sizeof(msg);
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST;
    msg.req.sdiag_family = AF_INET;
    msg.req.sdiag_protocol = IPPROTO_TCP;
    msg.req.idiag_states = ~0u;
    msg.req.id.idiag_sport = remote->sin_port;
    msg.req.id.idiag_dport = local->sin_port;
    memcpy(msg.req.id.idiag_src, &remote->sin_addr, 4);
    memcpy(msg.req.id.idiag_dst, &local->sin_addr, 4);
    msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    if (send(nl, &msg, sizeof(msg), 0) != (ssize_t)sizeof(msg))
        return -1;
    ssize_t n = recv(nl, reply.bytes, sizeof(reply.bytes), MSG_DONTWAIT);
    if (n < (ssize_t)NLMSG_LENGTH(sizeof(struct inet_diag_msg)) ||
        reply.nlh.nlmsg_type != SOCK_DIAG_BY_FAMILY)
        return -1;
    const struct inet_diag_msg *d = NLMSG_DATA(&reply.nlh);
    return d->id.idiag_sport == remote->sin_port &&
                   d->id.idiag_dport == local->sin_port
               ? (int64_t)d->idiag_uid
               : -1;
}

int b_peer_check(const struct sockaddr_in *local,
                 const struct sockaddr_in *remote)
{
    /* The peer's end can still be a request socket for a moment (its
     * kernel has not processed our ACK yet: softirq work deferred), as
     * loopsec's lookup also finds and waits out. */
    int64_t me = (int64_t)geteuid(), uid = peer_uid(local, remote);
    for (int t = 0; uid != me && t < 1000; t++) {
        (void)sched_yield();
        uid = peer_uid(local, remote);
    }
    return uid == me ? B_OK : B_ERR;
}
