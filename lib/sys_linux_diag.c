/*
 * The Linux platform's exact peer lookup (sys.h lsec__sys_peer_socket):
 * one NETLINK_SOCK_DIAG request by the 4-tuple (no dump), answered by the
 * kernel within the send call.  It runs on every accepted and every dialled
 * connection, so the process keeps one netlink socket for it (creating and
 * destroying one costs more than the lookup itself).  peer.c falls back to
 * the /proc tables when this answers LSEC_ENOSYS.
 */
#include "sys.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* A request socket: the peer's end before the listener's kernel processed
 * our ACK. */
#define TCP_NEW_SYN_RECV 12

/* An address from a kernel socket id (4 or 16 bytes of network order). */
static void from_diag(int family, const __be32 ip[4], __be16 port,
                      lsec__addr *out)
{
    memset(out, 0, sizeof(*out));
    out->family = family;
    memcpy(out->ip, ip, family == AF_INET ? 4 : 16);
    out->port = ntohs(port);
}

/*
 * The process's sock_diag socket.  Whoever takes the lock uses it; a thread
 * that finds it taken opens a socket of its own for its one lookup, so
 * threads never wait for each other.  Three things could make a kept
 * descriptor lie, and each is handled:
 *  - the application closed our descriptor and the number now names one
 *    of its own files: the socket's inode is checked before every use, so
 *    a request is never written into somebody else's file;
 *  - fork: parent and child would share one socket and could read each
 *    other's replies; the child forgets it (pthread_atfork);
 *  - a failed exchange could leave a reply queued for the next request:
 *    the socket is dropped after any failure, and every reply must carry
 *    the sequence number of its request and the 4-tuple that was asked.
 * (An application that closes our descriptor while another thread is in
 * a lookup races with that thread; nothing can close that window.)  The
 * socket binds a random netlink address, never the process id (see
 * diag_open).
 */
static struct {
    pthread_mutex_t lock;
    int fd;
    dev_t dev;
    ino_t ino;
    uint32_t seq;
} diag = {PTHREAD_MUTEX_INITIALIZER, -1, 0, 0, 0};
static pthread_once_t diag_once = PTHREAD_ONCE_INIT;

static bool diag_is_ours(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
           st.st_dev == diag.dev && st.st_ino == diag.ino;
}

/* Drop the kept socket; close it only if the descriptor is still ours. */
static void diag_drop(void)
{
    if (diag.fd >= 0 && diag_is_ours(diag.fd))
        close(diag.fd);
    diag.fd = -1;
}

static void diag_atfork_child(void)
{
    /* One thread runs in the child; the lock may have been held by a
     * thread that does not exist here. */
    (void)pthread_mutex_init(&diag.lock, NULL);
    diag_drop();
}

static void diag_register(void)
{
    (void)pthread_atfork(NULL, NULL, diag_atfork_child);
}

/*
 * A new sock_diag socket.  Left to itself, the kernel would give the first
 * one of the process the process id as its netlink address and keep it
 * taken while we keep the socket, so that an application binding its own
 * sock_diag socket to getpid() (a common idiom) would fail with
 * EADDRINUSE.  So bind a random address in [2^30, 2^31), which neither
 * process ids (at most 2^22) nor the kernel's own choices (negative) use;
 * after four collisions, let the kernel choose.
 */
static int diag_open(void)
{
    struct sockaddr_nl sa;
    uint32_t r;
    int fd = lsec__io.socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC,
                             NETLINK_SOCK_DIAG);

    if (fd < 0)
        return -1;
    for (int i = 0; i < 4; i++) {
        lsec__random(&r, sizeof(r));
        memset(&sa, 0, sizeof(sa));
        sa.nl_family = AF_NETLINK;
        sa.nl_pid = (r & 0x3fffffffu) | 0x40000000u;
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ||
            errno != EADDRINUSE)
            break;
    }
    return fd;
}

void lsec__sys_peer_forget(void)
{
    (void)pthread_once(&diag_once, diag_register);
    if (pthread_mutex_lock(&diag.lock) != 0)
        return;
    diag_drop();
    pthread_mutex_unlock(&diag.lock);
}

__attribute__((destructor)) static void diag_unload(void)
{
    /* dlclose of the library or exit: nobody will use it again. */
    if (pthread_mutex_trylock(&diag.lock) != 0)
        return;
    diag_drop();
    pthread_mutex_unlock(&diag.lock);
}

/* Sequence numbers, one counter for the kept and the temporary sockets. */
static uint32_t next_seq(void)
{
    return __atomic_add_fetch(&diag.seq, 1, __ATOMIC_RELAXED);
}

/* How one exchange with the kernel ended. */
enum { X_ANSWER, X_NOSUCH, X_BROKEN, X_PENDING };

/*
 * One request on `fd` and its reply.  X_ANSWER with *f filled, X_NOSUCH
 * when the kernel has no such socket (the socket stays usable), X_PENDING
 * when the peer's end is still a request socket (the listener's kernel has
 * not yet processed our ACK: softirq work deferred under load), X_BROKEN
 * when netlink did not answer as it should (the socket is not reused).
 */
static int diag_exchange(int fd, uint32_t seq, const lsec__addr *local,
                         const lsec__addr *remote, lsec__sys_peer *f)
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

    memset(&msg, 0, sizeof(msg));
    msg.nlh.nlmsg_len = sizeof(msg);
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    /* NLM_F_REQUEST alone, no NLM_F_DUMP: one socket by its 4-tuple. */
    msg.nlh.nlmsg_flags = NLM_F_REQUEST;
    msg.nlh.nlmsg_seq = seq;
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
    if (n != (ssize_t)sizeof(msg))
        return X_BROKEN;
    /* The kernel answers inside send(): the reply is already queued, so
     * MSG_DONTWAIT never turns a working kernel into a failure, and a
     * kernel that does not answer can never block us. */
    do
        n = lsec__io.recv(fd, reply.bytes, sizeof(reply.bytes), MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < (ssize_t)sizeof(struct nlmsghdr))
        return X_BROKEN;

    h = &reply.nlh;
    if (!NLMSG_OK(h, (unsigned)n) || h->nlmsg_seq != seq)
        return X_BROKEN;
    if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = NLMSG_DATA(h);
        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
            return X_BROKEN;
        /* ENOENT: no such socket.  Anything else (EINVAL from a kernel
         * without exact lookups, EPERM under a sandbox): ask /proc. */
        return e->error == -ENOENT ? X_NOSUCH : X_BROKEN;
    }
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
        h->nlmsg_len < NLMSG_LENGTH(sizeof(*d)))
        return X_BROKEN;
    d = NLMSG_DATA(h);
    if (d->idiag_family != AF_INET && d->idiag_family != AF_INET6)
        return X_BROKEN;
    /*
     * The kernel's lookup falls back to a listening socket on the source
     * endpoint when no connection matches the 4-tuple; only a connected
     * socket whose whole 4-tuple is ours may answer "who is the peer".
     */
    from_diag(d->idiag_family, d->id.idiag_src, d->id.idiag_sport, &got_local);
    from_diag(d->idiag_family, d->id.idiag_dst, d->id.idiag_dport, &got_remote);
    if (!lsec__addr_same_endpoint(&got_local, remote) ||
        !lsec__addr_same_endpoint(&got_remote, local))
        return X_NOSUCH;
    if (d->idiag_state == TCP_NEW_SYN_RECV)
        return X_PENDING;
    if (!lsec__tcp_state_live(d->idiag_state))
        return X_NOSUCH;
    f->uid = (int64_t)d->idiag_uid;
    f->inode = d->idiag_inode;
    return X_ANSWER;
}

int lsec__sys_peer_socket(const lsec__addr *local, const lsec__addr *remote,
                          lsec__sys_peer *f)
{
    struct stat st;
    int fd, x;

    (void)pthread_once(&diag_once, diag_register);
    if (pthread_mutex_trylock(&diag.lock) == 0) {
        if (diag.fd >= 0 && !diag_is_ours(diag.fd))
            diag.fd = -1; /* closed behind our back: not ours to close */
        if (diag.fd < 0) {
            fd = diag_open();
            if (fd >= 0 && fstat(fd, &st) != 0) {
                close(fd);
                fd = -1;
            }
            if (fd < 0) {
                pthread_mutex_unlock(&diag.lock);
                return LSEC_ENOSYS;
            }
            /* Identity first: a fork in between finds a consistent pair. */
            diag.dev = st.st_dev;
            diag.ino = st.st_ino;
            diag.fd = fd;
        }
        x = diag_exchange(diag.fd, next_seq(), local, remote, f);
        if (x == X_BROKEN)
            diag_drop(); /* checked again: a failure may mean "not ours" */
        pthread_mutex_unlock(&diag.lock);
    } else {
        /* Another thread is asking: a socket of our own, this once. */
        fd = diag_open();
        if (fd < 0)
            return LSEC_ENOSYS;
        x = diag_exchange(fd, next_seq(), local, remote, f);
        close(fd);
    }
    return x == X_ANSWER    ? 0
           : x == X_NOSUCH  ? LSEC_ENOTFOUND
           : x == X_PENDING ? LSEC_EAGAIN
                            : LSEC_ENOSYS;
}
