/*
 * Who is at the other end of a loopback TCP connection.
 *
 * Both ends of a loopback connection live in this machine's kernel, so the
 * peer's own socket can be looked up: its local endpoint is our remote one
 * and its remote endpoint our local one.  The kernel reports the uid that
 * created it and its inode; the pid is found, when asked, by looking for the
 * inode among the descriptors of the processes we may inspect.
 *
 * Fast path: one exact NETLINK_SOCK_DIAG request by the 4-tuple (no dump),
 * answered by the kernel within the send call; it runs on every accepted
 * connection.  Fallback when netlink is unavailable (old kernels, seccomp,
 * no inet_diag module): a scan of /proc/net/tcp and tcp6.
 */
#include "internal.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * Only a socket of a live connection answers.  A listener is not the peer
 * (see diag_lookup); a TIME_WAIT socket or a request socket (NEW_SYN_RECV)
 * is reported with uid 0 and no inode, which would pass for root.
 */
static bool live_state(int state)
{
    enum { TIME_WAIT = 6, CLOSE = 7, LISTEN = 10, NEW_SYN_RECV = 12 };
    return state >= 1 && state <= 11 && state != TIME_WAIT && state != CLOSE &&
           state != LISTEN && state != NEW_SYN_RECV;
}

/* Same endpoint?  Compared in the 18-byte encoding, where an IPv4 address
 * and its IPv4-mapped IPv6 form (a dual-stack socket's view of the same
 * connection) are equal. */
static bool same_endpoint(const lsec__addr *x, const lsec__addr *y)
{
    uint8_t ex[LSEC__EP_BYTES], ey[LSEC__EP_BYTES];

    lsec__addr_endpoint(x, ex);
    lsec__addr_endpoint(y, ey);
    return memcmp(ex, ey, sizeof(ex)) == 0;
}

/* An address from a kernel socket id (4 or 16 bytes of network order). */
static void from_diag(int family, const __be32 ip[4], __be16 port,
                      lsec__addr *out)
{
    memset(out, 0, sizeof(*out));
    out->family = family;
    memcpy(out->ip, ip, family == AF_INET ? 4 : 16);
    out->port = ntohs(port);
}

struct peer_found {
    int64_t uid;
    uint64_t inode;
};

/*
 * The exact netlink lookup.  0 with *f filled, LSEC_ENOTFOUND when the
 * kernel has no such socket, LSEC_ENOSYS when netlink cannot answer (the
 * caller then falls back to /proc).
 */
static int diag_lookup(const lsec__addr *local, const lsec__addr *remote,
                       struct peer_found *f)
{
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } msg;
    /* One reply: an inet_diag_msg without extensions, or an error. */
    union {
        struct nlmsghdr nlh;
        uint8_t bytes[1024];
    } reply;
    const struct nlmsghdr *h;
    const struct inet_diag_msg *d;
    lsec__addr got_local, got_remote;
    ssize_t n;
    int fd;

    fd = lsec__io.socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC,
                         NETLINK_SOCK_DIAG);
    if (fd < 0)
        return LSEC_ENOSYS;

    memset(&msg, 0, sizeof(msg));
    msg.nlh.nlmsg_len = sizeof(msg);
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    /* NLM_F_REQUEST alone, no NLM_F_DUMP: one socket by its 4-tuple. */
    msg.nlh.nlmsg_flags = NLM_F_REQUEST;
    msg.nlh.nlmsg_seq = 1;
    msg.req.sdiag_family = (uint8_t)local->family;
    msg.req.sdiag_protocol = IPPROTO_TCP;
    msg.req.idiag_states = ~0u;
    /* The peer's socket: its source is our remote endpoint. */
    msg.req.id.idiag_sport = htons(remote->port);
    msg.req.id.idiag_dport = htons(local->port);
    memcpy(msg.req.id.idiag_src, remote->ip, local->family == AF_INET ? 4 : 16);
    memcpy(msg.req.id.idiag_dst, local->ip, local->family == AF_INET ? 4 : 16);
    msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;

    do
        n = lsec__io.send(fd, &msg, sizeof(msg), 0);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(msg)) {
        close(fd);
        return LSEC_ENOSYS;
    }
    /* The kernel answers inside send(): the reply is already queued, so
     * MSG_DONTWAIT never turns a working kernel into a failure, and a
     * kernel that does not answer can never block us. */
    do
        n = lsec__io.recv(fd, reply.bytes, sizeof(reply.bytes), MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n < (ssize_t)sizeof(struct nlmsghdr))
        return LSEC_ENOSYS;

    h = &reply.nlh;
    if (!NLMSG_OK(h, (unsigned)n) || h->nlmsg_seq != 1)
        return LSEC_ENOSYS;
    if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = NLMSG_DATA(h);
        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
            return LSEC_ENOSYS;
        /* ENOENT: no such socket.  Anything else (EINVAL from a kernel
         * without exact lookups, EPERM under a sandbox): ask /proc. */
        return e->error == -ENOENT ? LSEC_ENOTFOUND : LSEC_ENOSYS;
    }
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
        h->nlmsg_len < NLMSG_LENGTH(sizeof(*d)))
        return LSEC_ENOSYS;
    d = NLMSG_DATA(h);
    if (d->idiag_family != AF_INET && d->idiag_family != AF_INET6)
        return LSEC_ENOSYS;
    /*
     * The kernel's lookup falls back to a listening socket on the source
     * endpoint when no connection matches the 4-tuple; only a connected
     * socket whose whole 4-tuple is ours may answer "who is the peer".
     */
    from_diag(d->idiag_family, d->id.idiag_src, d->id.idiag_sport, &got_local);
    from_diag(d->idiag_family, d->id.idiag_dst, d->id.idiag_dport, &got_remote);
    if (!live_state(d->idiag_state) || !same_endpoint(&got_local, remote) ||
        !same_endpoint(&got_remote, local))
        return LSEC_ENOTFOUND;
    f->uid = (int64_t)d->idiag_uid;
    f->inode = d->idiag_inode;
    return 0;
}

struct proc_match {
    const lsec__addr *local;
    const lsec__addr *remote;
    struct peer_found found;
};

static bool match_peer(const lsec__tcp_sock *s, void *arg)
{
    struct proc_match *m = arg;

    if (!live_state(s->state) || !same_endpoint(&s->local, m->remote) ||
        !same_endpoint(&s->remote, m->local))
        return false;
    m->found.uid = s->uid;
    m->found.inode = s->inode;
    return true;
}

/* The /proc fallback: the table of our family, then (for IPv4) tcp6, where
 * a dual-stack peer's socket is listed with IPv4-mapped addresses. */
static int proc_lookup(const lsec__addr *local, const lsec__addr *remote,
                       struct peer_found *f)
{
    struct proc_match m = {local, remote, {0, 0}};
    int rc = lsec__proc_tcp_scan(local->family, match_peer, &m);

    if (rc != 0 && local->family == AF_INET) {
        int rc6 = lsec__proc_tcp_scan(AF_INET6, match_peer, &m);
        if (rc6 == 0 || rc == LSEC_ENOSYS)
            rc = rc6;
    }
    if (rc == 0)
        *f = m.found;
    return rc;
}

int lsec__peer_lookup(const lsec__addr *local, const lsec__addr *remote,
                      bool want_pid, int64_t *uid, int32_t *pid)
{
    struct peer_found f = {-1, 0};
    char text[LSEC_ADDR_MAX];
    int rc;

    if (uid != NULL)
        *uid = -1;
    if (pid != NULL)
        *pid = -1;
    if (local == NULL || remote == NULL || uid == NULL || pid == NULL ||
        (local->family != AF_INET && local->family != AF_INET6) ||
        local->family != remote->family)
        return lsec__fail(LSEC_EINVAL, "peer lookup needs two endpoints of "
                                       "one IP family");
    rc = diag_lookup(local, remote, &f);
    if (rc == LSEC_ENOSYS)
        rc = proc_lookup(local, remote, &f);
    if (rc != 0) {
        if (lsec__addr_format(remote, text, sizeof(text)) != 0)
            text[0] = '\0';
        if (rc == LSEC_ENOSYS)
            return lsec__fail(LSEC_ENOSYS,
                              "neither sock_diag netlink nor /proc/net/tcp "
                              "can show the peer's socket");
        return lsec__fail(LSEC_ENOTFOUND,
                          "no socket of this machine is the peer at %s", text);
    }
    *uid = f.uid;
    /* The slow path, only when asked: a scan of /proc/PID/fd. */
    if (want_pid)
        *pid = lsec__proc_socket_pid(f.inode);
    return 0;
}
