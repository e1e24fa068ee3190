/*
 * Who is at the other end of a loopback TCP connection.
 *
 * Both ends of a loopback connection live in this machine's kernel, so the
 * peer's own socket can be looked up: its local endpoint is our remote one
 * and its remote endpoint our local one.  The kernel reports the uid that
 * created it and its inode; the pid is found, when asked, by looking for the
 * inode among the descriptors of the processes we may inspect.
 *
 * Fast path: the platform's exact lookup by the 4-tuple
 * (lsec__sys_peer_socket; on Linux sock_diag netlink, sys_linux_diag.c).
 * Fallback when it cannot answer (old kernels, seccomp, no inet_diag
 * module): a scan of the kernel's TCP tables (lsec__proc_tcp_scan).
 */
#include "internal.h"

#include "sys.h"
#include "testing.h"

#include <poll.h>
#include <sys/socket.h>

void lsec__peer_forget(void)
{
    lsec__sys_peer_forget();
}

#define PENDING_TRIES 50

struct proc_match {
    const lsec__addr *local;
    const lsec__addr *remote;
    lsec__sys_peer found;
};

static bool match_peer(const lsec__tcp_sock *s, void *arg)
{
    struct proc_match *m = arg;

    if (!lsec__tcp_state_live(s->state) ||
        !lsec__addr_same_endpoint(&s->local, m->remote) ||
        !lsec__addr_same_endpoint(&s->remote, m->local))
        return false;
    m->found.uid = s->uid;
    m->found.inode = s->inode;
    return true;
}

/* The /proc fallback: the table of our family, then (for IPv4) tcp6, where
 * a dual-stack peer's socket is listed with IPv4-mapped addresses. */
static int proc_lookup(const lsec__addr *local, const lsec__addr *remote,
                       lsec__sys_peer *f)
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
    lsec__sys_peer f = {-1, 0};
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
    /* A client may ask before the listener's kernel has turned its request
     * socket into a connection (our ACK still queued for softirq work):
     * give it up to PENDING_TRIES milliseconds, then it is not found. */
    for (int tries = 0;; tries++) {
        rc = lsec__sys_peer_socket(local, remote, &f);
        if (rc != LSEC_EAGAIN)
            break;
        if (tries == PENDING_TRIES) {
            rc = LSEC_ENOTFOUND;
            break;
        }
        (void)poll(NULL, 0, 1);
    }
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
