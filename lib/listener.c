/*
 * The listening side: bind with the port policy, accept, and drive every
 * pending handshake (the pending set, pending.c) concurrently with one
 * poll() so that a silent or slow client never delays another.
 */
#include "pending.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct lsec_listener {
    int fd;
    lsec_opts o;
    lsec__addr addr;
    lsec__ticket ticket;
    /* Auth mode: the two handshake keys, derived once for every connection
     * (wiped at close with the rest of the listener). */
    uint8_t k_client[LSEC__KEY_BYTES];
    uint8_t k_server[LSEC__KEY_BYTES];
    lsec__tls_ctx *tls_ctx;
    /* The pending handshakes.  Its readiness set is the descriptor
     * lsec_listener_fd hands out: it holds the listening socket, the abort
     * descriptor, the deadline timer and, once the caller has asked for
     * it, every pending handshake, so that "readable" means "lsec_accept
     * can make progress". */
    lsec__pending pend;
    struct pollfd *pfds;
    int accepted;
    lsec__connfile_ref file; /* connection file to remove on close */
    /* A spare descriptor (on /dev/null) given back at the descriptor
     * limit so that a waiting connection can be taken and refused. */
    int reserve_fd;
    /* Out of descriptors and no spare: the listening socket stays readable
     * (the connection waits in the backlog), so it is left out of poll
     * until this time instead of failing accept4 in a busy loop. */
    int64_t accept_paused_until;
    /* lsec_listener_abort (any thread, a signal handler) sets `aborted`
     * (__atomic) and signals this wake descriptor, which sits in every
     * poll of lsec_accept and in the readiness set, and lives until
     * close. */
    int abort_fd;
    int aborted;
};

/* sodium_malloc places an allocation against its trailing guard page, so
 * its address is as aligned as its size is: round up to 16. */
#define LISTENER_ALLOC ((sizeof(struct lsec_listener) + 15) & ~(size_t)15)

/* At most this many connections are taken per round of lsec_accept. */
#define ACCEPT_BATCH 16

/* How long accepting pauses after EMFILE/ENFILE/ENOBUFS/ENOMEM. */
#define ACCEPT_BACKOFF_MS 100

/*
 * At the descriptor limit a waiting connection keeps the listening socket
 * readable, so every poll -- ours, or the caller's on lsec_listener_fd --
 * would return at once and a caller would spin.  Give back the spare
 * descriptor, take the connection and close it at once (the client sees a
 * refusal, LSEC_ECLOSED, and may retry), then take the spare again.  True
 * if a connection was refused so.
 */
static bool refuse_one(lsec_listener *l)
{
    int fd;

    if (l->reserve_fd < 0)
        return false;
    close(l->reserve_fd);
    fd = lsec__io.accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0)
        close(fd);
    l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd >= 0;
}

static void accept_new(lsec_listener *l)
{
    /* An idle listener has most likely just been sent the one connection
     * there is: it takes that one and goes back to poll, which reports any
     * other, instead of paying for an accept4 that fails with EAGAIN.  A
     * busy one takes connections in batches. */
    bool idle = l->pend.n == 0;

    /* Bounded, in batches well below the cap: never starve the pending
     * handshakes, and let those admitted in the last batch read their
     * hellos before the next batch may evict them (evict_one). */
    int batch = l->o.max_pending / 4;
    if (batch < 1)
        batch = 1;
    if (batch > ACCEPT_BATCH)
        batch = ACCEPT_BATCH;
    for (int k = 0; k < batch; k++) {
        struct sockaddr_storage peer;
        unsigned peerlen = sizeof(peer);
        int fd = lsec__io.accept4(l->fd, (struct sockaddr *)&peer, &peerlen,
                                  SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            if ((errno == EMFILE || errno == ENFILE) && refuse_one(l)) {
                lsec__pending_warn(&l->pend,
                                   "accept: out of descriptors; refused a "
                                   "connection");
                continue;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                lsec__log(LSEC_LOG_ERROR, "accept: out of descriptors or "
                                          "memory; retrying later");
                l->accept_paused_until = lsec__now_ms() + ACCEPT_BACKOFF_MS;
            }
            /* EAGAIN and transient errors (ECONNABORTED...) end the round. */
            return;
        }
        lsec__pending_admit(&l->pend, fd, (struct sockaddr *)&peer, peerlen);
        if (idle)
            return;
    }
}

/* One-shot: once the last allowed peer is in, nobody else may even try. */
static void stop_listening(lsec_listener *l)
{
    while (l->pend.n > 0)
        lsec__pending_drop(&l->pend, l->pend.n - 1, LSEC_LOG_DEBUG, NULL);
    if (l->fd >= 0)
        close(l->fd); /* leaves the readiness set by itself */
    l->fd = -1;
}

/*
 * route_localnet: when set, packets addressed to
 * 127.0.0.0/8 may arrive from other hosts, and loopback stops meaning "this
 * machine".  Checked for IPv4 listeners (::1 is never routed so): a WARN,
 * or a refusal under LSEC_OPT_NO_ROUTE_LOCALNET, which also fails closed
 * when the setting cannot be read.
 */
static int check_route_localnet(const lsec_opts *o)
{
    char names[128];
    bool refuse = (o->flags & LSEC_OPT_NO_ROUTE_LOCALNET) != 0;
    int rc = lsec__route_localnet(names, sizeof(names));

    if (rc == 1 && refuse)
        return lsec__fail(LSEC_EPERM,
                          "net.ipv4.conf.{%s}.route_localnet is set: packets "
                          "to 127.0.0.0/8 may come from other hosts, and "
                          "LSEC_OPT_NO_ROUTE_LOCALNET refuses to listen "
                          "(set it to 0, or listen on [::1])",
                          names);
    if (rc == 1)
        lsec__log(LSEC_LOG_WARN,
                  "net.ipv4.conf.{%s}.route_localnet is set: packets to "
                  "127.0.0.0/8 may arrive from other hosts (set it to 0, "
                  "listen on [::1], or refuse with "
                  "LSEC_OPT_NO_ROUTE_LOCALNET)",
                  names);
    if (rc < 0 && refuse)
        return lsec__fail(LSEC_EPERM,
                          "cannot read net.ipv4.conf.*.route_localnet, and "
                          "LSEC_OPT_NO_ROUTE_LOCALNET refuses to listen "
                          "without knowing it is 0");
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Public calls                                                              */

/* The readiness set lsec_listener_fd hands out, with the listening
 * socket, the abort descriptor and the deadline timer in it. */
static int make_set(lsec_listener *l)
{
    l->pend.set = lsec__sys_set_new();
    if (l->pend.set < 0 || lsec__sys_set_add(l->pend.set, l->fd, POLLIN) != 0)
        return lsec__fail_errno(lsec__sys_code(errno, LSEC_EIO), errno,
                                "readiness set");
    l->abort_fd = lsec__sys_wake_new();
    if (l->abort_fd < 0 ||
        lsec__sys_set_add(l->pend.set, l->abort_fd, POLLIN) != 0)
        return lsec__fail_errno(lsec__sys_code(errno, LSEC_EIO), errno,
                                "wake descriptor");
    l->pend.timer = lsec__sys_timer_new();
    if (l->pend.timer < 0 ||
        lsec__sys_set_add(l->pend.set, l->pend.timer, POLLIN) != 0)
        return lsec__fail_errno(lsec__sys_code(errno, LSEC_EIO), errno,
                                "timer");
    return 0;
}

/* Both listen calls: `secret` and `id` NULL for fresh random ones. */
static int listen_common(const char *bind, const lsec_opts *o,
                         const uint8_t *secret, const uint8_t *id,
                         lsec_listener **out)
{
    lsec_listener *l;
    lsec__addr a;
    int rc;

    if ((rc = lsec__init()) != 0)
        return rc;
    /* The listener holds its secret and both auth keys for its whole
     * life: the struct lives in guarded memory (libsodium: guard pages,
     * mlock where the limit allows, excluded from core dumps), wiped and
     * unmapped by sodium_free at close. */
    l = sodium_malloc(LISTENER_ALLOC); /* a multiple of 16: aligned */
    if (l == NULL)
        return lsec__fail(LSEC_ENOMEM, "out of memory");
    memset(l, 0, LISTENER_ALLOC);
    l->fd = -1;
    l->pend.set = -1;
    l->abort_fd = -1;
    l->pend.timer = -1;
    l->file.dfd = -1;
    /* Taken while descriptors are plentiful; without one, the listener
     * still works and pauses at the limit instead. */
    l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if ((rc = lsec__opts_resolve(o, &l->o)) != 0)
        goto fail;
    if ((rc = lsec__addr_parse(bind, l->o.flags, &a)) != 0)
        goto fail;
    l->pend.conn = calloc((size_t)l->o.max_pending, sizeof(*l->pend.conn));
    /* The listening socket, each pending handshake, the abort descriptor. */
    l->pfds = calloc((size_t)l->o.max_pending + 2, sizeof(*l->pfds));
    if (l->pend.conn == NULL || l->pfds == NULL) {
        rc = lsec__fail(LSEC_ENOMEM, "out of memory");
        goto fail;
    }
    if (l->o.mode == LSEC_MODE_TLS &&
        (rc = lsec__tls_ctx_new(LSEC__ROLE_SERVER, &l->tls_ctx)) != 0)
        goto fail;
    if (a.family == AF_INET && (rc = check_route_localnet(&l->o)) != 0)
        goto fail;
    if ((rc = lsec__port_listen(&a, &l->o, &l->fd, &l->addr)) != 0)
        goto fail;
    if ((rc = make_set(l)) != 0)
        goto fail;
    /* Accepted sockets inherit TCP_NODELAY from the listening socket (as
     * Linux clones it): one system call here instead of one per peer. */
    int one = 1;
    (void)setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* accept_new drains the queue until EAGAIN: never block in accept. */
    int fl = fcntl(l->fd, F_GETFL);
    if (fl < 0 || fcntl(l->fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        rc = lsec__fail_errno(LSEC_EIO, errno, "fcntl");
        goto fail;
    }
    /* The kernel-assigned port is known only now; the ticket carries the
     * address as bound, a fresh secret and a fresh instance id. */
    l->ticket.addr = l->addr;
    l->ticket.mode = l->o.mode;
    if (secret != NULL) {
        memcpy(l->ticket.id, id, sizeof(l->ticket.id));
        memcpy(l->ticket.secret, secret, sizeof(l->ticket.secret));
    } else {
        lsec__random(l->ticket.id, sizeof(l->ticket.id));
        lsec__random(l->ticket.secret, sizeof(l->ticket.secret));
    }
    lsec__hs_keys(l->ticket.secret, l->k_client, l->k_server);
    l->pend.o = &l->o;
    l->pend.local = l->addr;
    l->pend.keys =
        (lsec__conn_keys){&l->ticket, l->k_client, l->k_server, l->tls_ctx};
    *out = l;
    return 0;
fail:
    lsec_listener_close(l);
    return rc;
}

int lsec_listen(const char *bind, const lsec_opts *o, lsec_listener **out)
{
    lsec__clear_detail();
    if (out != NULL)
        *out = NULL;
    if (bind == NULL || out == NULL)
        return lsec__fail(LSEC_EINVAL, "NULL bind address or output");
    return listen_common(bind, o, NULL, NULL, out);
}

int lsec_listen_keyed(const char *bind, const lsec_opts *o,
                      const uint8_t *secret, size_t secret_len,
                      const uint8_t *id, size_t id_len, lsec_listener **out)
{
    uint8_t acc = 0;

    lsec__clear_detail();
    if (out != NULL)
        *out = NULL;
    if (bind == NULL || out == NULL || secret == NULL || id == NULL)
        return lsec__fail(LSEC_EINVAL,
                          "NULL bind address, secret, id or output");
    if (secret_len != LSEC_SECRET_BYTES || id_len != LSEC_ID_BYTES)
        return lsec__fail(LSEC_EINVAL,
                          "the secret must be %d bytes and the id %d",
                          LSEC_SECRET_BYTES, LSEC_ID_BYTES);
    /* Constant time: how much of the secret is zero says nothing. */
    for (size_t i = 0; i < secret_len; i++)
        acc |= secret[i];
    if (acc == 0)
        return lsec__fail(LSEC_EINVAL, "an all-zero secret is refused");
    return listen_common(bind, o, secret, id, out);
}

int lsec_listener_port(const lsec_listener *l)
{
    if (l == NULL)
        return LSEC_EINVAL;
    return l->addr.port;
}

int lsec_listener_fd(lsec_listener *l)
{
    if (l == NULL)
        return LSEC_EINVAL;
    /* From now on pending handshakes are kept in the set too. */
    if (!l->pend.set_used) {
        l->pend.set_used = true;
        lsec__pending_sync(&l->pend);
    }
    return l->pend.set;
}

int lsec_listener_timeout_ms(const lsec_listener *l)
{
    if (l == NULL)
        return -1;
    return lsec__remaining(lsec__pending_earliest(&l->pend));
}

const lsec__ticket *lsec__listener_ticket(const lsec_listener *l)
{
    return &l->ticket;
}

int lsec_listener_ticket(const lsec_listener *l, char *buf, size_t len)
{
    lsec__clear_detail();
    if (l == NULL || buf == NULL)
        return lsec__fail(LSEC_EINVAL, "NULL listener or buffer");
    return lsec__ticket_format(&l->ticket, buf, len);
}

int lsec_listener_write_file(lsec_listener *l, const char *path, char *written,
                             size_t writtenlen)
{
    char used[LSEC_PATH_MAX];
    lsec__connfile_ref ref;
    int rc;

    lsec__clear_detail();
    if (written != NULL && writtenlen > 0)
        written[0] = '\0';
    if (l == NULL)
        return lsec__fail(LSEC_EINVAL, "NULL listener");
    rc = lsec__connfile_write_ref(&l->ticket, path, used, sizeof(used), &ref);
    if (rc != 0)
        return rc;
    if (written != NULL) {
        size_t n = strlen(used);
        if (n >= writtenlen) {
            lsec__connfile_remove(&ref);
            return lsec__fail(LSEC_EMSGSIZE, "path buffer too small");
        }
        memcpy(written, used, n + 1);
    }
    /* One file per listener: a second write replaces the first.  (Written
     * again at the same name, the first file is gone already: the rename
     * replaced it, and its inode no longer matches.) */
    lsec__connfile_remove(&l->file);
    l->file = ref;
    return 0;
}

/* Lay out the poll set: the listening socket (left out, as -1, while
 * accepting pauses), pfds[k + 1] for pending handshake k, the abort
 * descriptor last.  Lowers *wake to when accepting resumes.  The count. */
static int poll_set(lsec_listener *l, int64_t now, int64_t *wake)
{
    int n = 0;

    l->pfds[n].fd = l->fd;
    if (now < l->accept_paused_until) {
        l->pfds[n].fd = -1; /* keeps its slot while poll ignores it */
        if (l->accept_paused_until < *wake)
            *wake = l->accept_paused_until;
    }
    l->pfds[n++].events = POLLIN;
    for (int i = 0; i < l->pend.n; i++, n++) {
        l->pfds[n].fd = l->pend.conn[i].fd;
        l->pfds[n].events = l->pend.conn[i].events;
    }
    l->pfds[n].fd = l->abort_fd;
    l->pfds[n++].events = POLLIN;
    for (int i = 0; i < n; i++)
        l->pfds[i].revents = 0;
    return n;
}

/* Step the pending handshakes poll found ready, walking backwards so that
 * a drop (which moves the last entry into the hole) never skips one.
 * LSEC__DONE with the channel in *out, else LSEC__AGAIN. */
static int step_ready(lsec_listener *l, lsec_channel **out)
{
    for (int k = l->pend.n - 1; k >= 0; k--) {
        if (l->pfds[k + 1].revents != 0 &&
            lsec__pending_step(&l->pend, k, out) == LSEC__DONE)
            return LSEC__DONE;
    }
    return LSEC__AGAIN;
}

/* One round: drop what has run out of time, poll for the rest, step what
 * is ready, take new connections.  LSEC__DONE (*out is the channel),
 * LSEC__AGAIN, or the error. */
static int accept_round(lsec_listener *l, int64_t deadline, bool nowait,
                        lsec_channel **out)
{
    int64_t now = lsec__now_ms(), wake = deadline;
    int n, rc;

    if (lsec__pending_take_ready(&l->pend, out) == LSEC__DONE)
        return LSEC__DONE;
    lsec__pending_expire(&l->pend, now, &wake);
    n = poll_set(l, now, &wake);
    rc = lsec__io.poll(l->pfds, (unsigned long)n,
                       nowait ? 0 : lsec__remaining(wake));
    if (__atomic_load_n(&l->aborted, __ATOMIC_ACQUIRE))
        return lsec__fail(LSEC_ECLOSED, "the listener was aborted");
    if (rc < 0)
        return errno == EINTR ? LSEC__AGAIN
                              : lsec__fail_errno(LSEC_EIO, errno, "poll");
    if (rc > 0 && step_ready(l, out) == LSEC__DONE)
        return LSEC__DONE;
    if (rc > 0 && (l->pfds[0].revents & POLLIN))
        accept_new(l);
    return LSEC__AGAIN;
}

/* The checks before lsec_accept waits: 0 or the code. */
static int accept_check(lsec_listener *l, int timeout_ms, lsec_channel **out)
{
    if (l == NULL || out == NULL)
        return lsec__fail(LSEC_EINVAL, "NULL listener or output");
    if (lsec__timeout_check(timeout_ms) != 0)
        return LSEC_EINVAL;
    if (__atomic_load_n(&l->aborted, __ATOMIC_ACQUIRE))
        return lsec__fail(LSEC_ECLOSED, "the listener was aborted");
    if (l->o.max_accepts > 0 && l->accepted >= l->o.max_accepts)
        return lsec__fail(LSEC_ELIMIT,
                          "this listener already accepted its "
                          "%d peer(s)",
                          l->o.max_accepts);
    return 0;
}

int lsec_accept(lsec_listener *l, int timeout_ms, lsec_channel **out)
{
    int64_t deadline;
    int rc;

    lsec__clear_detail();
    if (out != NULL)
        *out = NULL;
    if ((rc = accept_check(l, timeout_ms, out)) != 0)
        return rc;
    deadline = lsec__deadline(timeout_ms);
    lsec__pending_timer_clear(&l->pend);
    for (;;) {
        rc = accept_round(l, deadline, timeout_ms == 0, out);
        if (rc == LSEC__DONE) {
            l->accepted++;
            if (l->o.max_accepts > 0 && l->accepted >= l->o.max_accepts)
                stop_listening(l);
        }
        lsec__pending_sync(&l->pend);
        if (rc != LSEC__AGAIN)
            return rc == LSEC__DONE ? 0 : rc;
        if (timeout_ms == 0)
            return LSEC_EAGAIN;
        /* Checked after every round, not only after a poll that timed out:
         * a listener that is never idle (a flood of connections, a client
         * trickling bytes) must not hold the caller past its timeout. */
        if (lsec__remaining(deadline) == 0)
            return lsec__fail(LSEC_ETIMEDOUT, "no authenticated peer "
                                              "within the timeout");
    }
}

void lsec_listener_abort(lsec_listener *l)
{
    /* Async-signal-safe: a lock-free atomic store and a signal to a wake
     * descriptor that stays open until lsec_listener_close. */
    if (l == NULL)
        return;
    __atomic_store_n(&l->aborted, 1, __ATOMIC_RELEASE);
    if (l->abort_fd >= 0)
        lsec__sys_wake_signal(l->abort_fd);
}

uint64_t lsec_listener_failures(const lsec_listener *l)
{
    return l == NULL ? 0 : l->pend.failures;
}

void lsec_listener_close(lsec_listener *l)
{
    if (l == NULL)
        return;
    stop_listening(l);
    if (l->abort_fd >= 0)
        close(l->abort_fd);
    lsec__pending_warn_flush(&l->pend);
    if (l->pend.set >= 0)
        close(l->pend.set);
    if (l->pend.timer >= 0)
        close(l->pend.timer);
    if (l->reserve_fd >= 0)
        close(l->reserve_fd);
    lsec__connfile_remove(&l->file);
    if (l->tls_ctx != NULL)
        lsec__tls_ctx_free(l->tls_ctx);
    lsec__ticket_wipe(&l->ticket);
    free(l->pend.conn);
    free(l->pfds);
    sodium_free(l); /* wipes it first */
}
