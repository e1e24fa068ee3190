/*
 * The listening side: bind with the port policy, accept, and drive every
 * pending handshake concurrently with one poll() so that a silent or slow
 * client never delays another.
 *
 * Each pending connection has an absolute deadline; the number of pending
 * connections is capped, and when the cap is reached one pending connection
 * is dropped to make room -- the oldest of those that have not sent a
 * complete hello, and only if there is none the oldest of all -- so a flood
 * of stalled clients can neither lock good clients out nor cost one that
 * is about to finish (evict_one).
 * Nothing is ever written to a peer before it has sent a valid hello, and a
 * failed attempt is closed at once without a word.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

struct pending {
    int fd;
    int64_t deadline;
    int64_t uid;
    lsec__addr local, remote;
    lsec__tls *tls; /* tls mode: NULL until a whole ClientHello record is in */
    int rcvlowat;   /* tls mode, before tls: SO_RCVLOWAT as set, 0 default */
    uint8_t hdr[LSEC__TLS_RECORD_HDR]; /* tls mode, before tls: first bytes */
    size_t hdr_len;
    lsec__hs hs; /* auth mode */
    short ev;    /* events registered in the listener's epoll set */
    int want;    /* tls mode: the LSEC__WANT_* of the last handshake step */
    uint8_t out[LSEC__HS_MSG_MAX];
    size_t out_len, out_off;
};

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
    struct pending *pend;
    struct pollfd *pfds;
    int npend;
    int accepted;
    /* The descriptor lsec_listener_fd hands out: an epoll set holding the
     * listening socket and, once the caller has asked for it, every pending
     * handshake, so that "readable" means "lsec_accept can make progress". */
    int efd;
    bool ep_used;
    /* A timerfd in that set, armed to the earliest pending deadline, so
     * that the set also becomes readable when a handshake runs out of time
     * `t_armed` is the deadline it is armed to, 0 when disarmed. */
    int tfd;
    int64_t t_armed;
    lsec__connfile_ref file; /* connection file to remove on close */
    /* A spare descriptor (on /dev/null) given back at the descriptor
     * limit so that a waiting connection can be taken and refused. */
    int reserve_fd;
    /* Out of descriptors and no spare: the listening socket stays readable
     * (the connection waits in the backlog), so it is left out of poll
     * until this time instead of failing accept4 in a busy loop. */
    int64_t accept_paused_until;
    /* lsec_listener_abort (any thread, a signal handler) sets `aborted`
     * (__atomic) and writes to this eventfd, which sits in every poll of
     * lsec_accept and in the epoll set, and lives until close. */
    int abort_fd;
    int aborted;
    /* Failed or refused connections, counted; their WARN lines are rate
     * limited (warn_failure). */
    uint64_t failures;
    int64_t warn_window;
    int warn_lines;
    uint64_t warn_suppressed;
};

/* sodium_malloc places an allocation against its trailing guard page, so
 * its address is as aligned as its size is: round up to 16. */
#define LISTENER_ALLOC ((sizeof(struct lsec_listener) + 15) & ~(size_t)15)

/* At most WARN_BURST failure lines per WARN_WINDOW_MS and listener. */
#define WARN_BURST 10
#define WARN_WINDOW_MS 1000

/* How many eviction candidates are probed for waiting bytes. */
#define EVICT_PROBES 4

/* At most this many connections are taken per round of lsec_accept. */
#define ACCEPT_BATCH 16

/* How long accepting pauses after EMFILE/ENFILE/ENOBUFS/ENOMEM. */
#define ACCEPT_BACKOFF_MS 100

/* ------------------------------------------------------------------------ */

/* Say how many failure lines the last window held back. */
static void warn_flush(lsec_listener *l)
{
    if (l->warn_suppressed > 0)
        lsec__log(LSEC_LOG_WARN,
                  "%llu similar suppressed (failed or refused connections; "
                  "at most %d lines a second are logged)",
                  (unsigned long long)l->warn_suppressed, WARN_BURST);
    l->warn_suppressed = 0;
}

/*
 * A failed or refused connection: counted, and logged as a WARN -- at most
 * WARN_BURST lines a second per listener, the rest summed up in one "N
 * similar suppressed" line when the next window opens (or at close), so a
 * flood cannot flood the log.
 */
static void warn_failure(lsec_listener *l, const char *fmt, ...)
    LSEC__PRINTF(2, 3);
static void warn_failure(lsec_listener *l, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    int64_t now;

    l->failures++;
    if (!lsec__log_enabled(LSEC_LOG_WARN))
        return;
    now = lsec__now_ms();
    if (now - l->warn_window >= WARN_WINDOW_MS) {
        warn_flush(l);
        l->warn_window = now;
        l->warn_lines = 0;
    }
    if (l->warn_lines >= WARN_BURST) {
        l->warn_suppressed++;
        return;
    }
    l->warn_lines++;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    lsec__log(LSEC_LOG_WARN, "%s", line);
}

static void pending_drop(lsec_listener *l, int i, int level, const char *why)
{
    struct pending *p = &l->pend[i];

    if (why != NULL && level == LSEC_LOG_WARN)
        warn_failure(l, "peer port %u uid %lld: %s", p->remote.port,
                     (long long)p->uid, why);
    else if (why != NULL)
        lsec__log(level, "peer port %u uid %lld: %s", p->remote.port,
                  (long long)p->uid, why);
    if (p->tls != NULL)
        lsec__tls_free(p->tls);
    else
        lsec__hs_wipe(&p->hs);
    close(p->fd);
    lsec__wipe(p->out, sizeof(p->out));
    /* Keep the array dense: move the last entry into the hole. */
    l->npend--;
    if (i != l->npend)
        l->pend[i] = l->pend[l->npend];
    lsec__wipe(&l->pend[l->npend], sizeof(l->pend[l->npend]));
}

/* Has pend sent its whole first message (an auth ClientHello, or a TLS
 * ClientHello record)?  Such a client is most likely a good one on its way
 * to finishing, and one that may already think it is connected. */
static bool sent_hello(const lsec_listener *l, const struct pending *p)
{
    if (l->o.mode == LSEC_MODE_TLS)
        return p->tls != NULL;
    return p->hs.transcript_len >= LSEC__HS_HELLO_BYTES;
}

/*
 * Full: one pending handshake makes room.  The oldest of those that have
 * not sent a complete hello goes first -- a connection that stalls before
 * its hello is what a flood is made of -- and only when every one has,
 * the oldest of all (evicting the oldest regardless lost good clients
 * that were about to finish).
 */
static void evict_one(lsec_listener *l)
{
    int victim = -1;
    int64_t after = INT64_MIN;

    /* A candidate whose next bytes are already waiting (its hello arrived
     * since the last round) is not stalled: the next older one goes
     * instead.  Bounded: a few polls per eviction at most. */
    for (int tries = 0; tries < EVICT_PROBES; tries++) {
        int c = -1;
        for (int i = 0; i < l->npend; i++)
            if (!sent_hello(l, &l->pend[i]) && l->pend[i].deadline >= after &&
                (c < 0 || l->pend[i].deadline < l->pend[c].deadline))
                c = i;
        if (c < 0)
            break;
        if (victim < 0)
            victim = c;
        struct pollfd q = {l->pend[c].fd, POLLIN, 0};
        if (lsec__io.poll(&q, 1, 0) == 0) {
            victim = c;
            break;
        }
        after = l->pend[c].deadline + 1;
    }
    if (victim < 0) {
        victim = 0;
        for (int i = 1; i < l->npend; i++)
            if (l->pend[i].deadline < l->pend[victim].deadline)
                victim = i;
    }
    pending_drop(l, victim, LSEC_LOG_WARN,
                 "dropped: too many pending handshakes");
}

/* Admit one accepted socket: loopback re-check, peer policy, then start. */
static void admit(lsec_listener *l, int fd, const struct sockaddr *peer,
                  unsigned peerlen)
{
    struct pending *p;
    lsec__addr local = l->addr, remote;
    int64_t uid = -1;
    int32_t peer_pid = -1;
    int rc;

    /* The kernel's own view of the peer, as accept4 reported it, checked
     * as loopback again.  Our end is the address the listener is bound to
     * (a single loopback address, never a wildcard). */
    if (lsec__addr_from_sockaddr(peer, peerlen, l->o.flags, &remote) != 0) {
        warn_failure(l, "refused a connection: %s", lsec_last_detail());
        close(fd);
        return;
    }
    rc = lsec__peer_lookup(&local, &remote, false, &uid, &peer_pid);
    /* Fail closed: a peer we cannot identify is not "the same user". */
    if (l->o.peer_policy == LSEC_PEER_SAME_USER &&
        (rc != 0 || uid != (int64_t)geteuid())) {
        warn_failure(l,
                     "peer port %u uid %lld: refused by peer policy (same "
                     "user)",
                     remote.port, (long long)uid);
        close(fd);
        return;
    }
    if (l->npend == l->o.max_pending)
        evict_one(l);
    p = &l->pend[l->npend];
    memset(p, 0, sizeof(*p));
    p->fd = fd;
    p->uid = uid;
    p->local = local;
    p->remote = remote;
    /* Every unauthenticated connection has an absolute deadline. */
    p->deadline = lsec__deadline(l->o.handshake_timeout_ms);
    /* TLS mode: no TLS state yet.  It is allocated only once a whole
     * ClientHello record waits in the kernel (step_tls), so that a silent
     * or trickling client costs this struct and nothing more. */
    if (l->o.mode == LSEC_MODE_TLS) {
        rc = 0;
    } else {
        rc =
            lsec__hs_init_keys(&p->hs, LSEC__ROLE_SERVER, LSEC_MODE_AUTH,
                               l->k_client, l->k_server, &local, &remote, NULL);
    }
    if (rc != 0) {
        lsec__log(LSEC_LOG_ERROR, "cannot start a handshake: %s",
                  lsec_last_detail());
        close(fd);
        return;
    }
    l->npend++;
}

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
    bool idle = l->npend == 0;

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
                warn_failure(l, "accept: out of descriptors; refused a "
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
        admit(l, fd, (struct sockaddr *)&peer, peerlen);
        if (idle)
            return;
    }
}

/* Keep pend's registration in the epoll set in step with what it waits
 * for.  Only once the caller watches lsec_listener_fd: otherwise the two
 * system calls per connection buy nothing. */
static void ep_set(lsec_listener *l, struct pending *p, short want)
{
    struct epoll_event e;

    if (!l->ep_used || p->ev == want)
        return;
    memset(&e, 0, sizeof(e));
    e.events = want == POLLOUT ? EPOLLOUT : EPOLLIN;
    e.data.fd = p->fd;
    if (epoll_ctl(l->efd, p->ev == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, p->fd,
                  &e) == 0)
        p->ev = want;
}

static short pending_events(const lsec_listener *l, const struct pending *p);

/* Arm the timer to the earliest pending deadline (or disarm it), so that
 * a caller who polls lsec_listener_fd is woken to drop a stalled client. */
static void timer_sync(lsec_listener *l)
{
    struct itimerspec its;
    int64_t earliest = 0;

    if (!l->ep_used || l->tfd < 0)
        return;
    for (int i = 0; i < l->npend; i++)
        if (earliest == 0 || l->pend[i].deadline < earliest)
            earliest = l->pend[i].deadline;
    if (earliest == l->t_armed)
        return;
    memset(&its, 0, sizeof(its));
    if (earliest != 0) {
        /* lsec__now_ms is CLOCK_MONOTONIC in milliseconds, as is the
         * timer; an absolute time never drifts with the call's delay. */
        its.it_value.tv_sec = (time_t)(earliest / 1000);
        its.it_value.tv_nsec = (long)(earliest % 1000) * 1000000L;
    }
    if (timerfd_settime(l->tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
        l->t_armed = earliest;
}

/* The timer has fired (or may have): read it, so that it stops making the
 * set readable; the deadline it stood for is dealt with by the caller. */
static void timer_clear(lsec_listener *l)
{
    uint64_t ticks;

    if (l->tfd < 0 || l->t_armed == 0 || l->t_armed > lsec__now_ms())
        return;
    if (read(l->tfd, &ticks, sizeof(ticks)) < 0) {
        /* EAGAIN: not fired yet (a coarse clock); nothing to clear. */
    }
    l->t_armed = 0;
}

static void ep_sync(lsec_listener *l)
{
    for (int i = 0; i < l->npend; i++)
        ep_set(l, &l->pend[i], pending_events(l, &l->pend[i]));
    timer_sync(l);
}

/* Take pend[i] out of the array without closing its socket. */
static struct pending pending_take(lsec_listener *l, int i)
{
    struct pending p = l->pend[i];
    /* The socket lives on as a channel: it must leave the set.  (A dropped
     * one leaves it by itself when it is closed.) */
    if (p.ev != 0)
        (void)epoll_ctl(l->efd, EPOLL_CTL_DEL, p.fd, NULL);
    p.ev = 0;
    l->npend--;
    if (i != l->npend)
        l->pend[i] = l->pend[l->npend];
    lsec__wipe(&l->pend[l->npend], sizeof(l->pend[l->npend]));
    return p;
}

/* Flush what we owe the peer (the ServerHello).  0 done, LSEC__WANT_WRITE,
 * or LSEC_ERESET (lost). */
static int flush_out(struct pending *p)
{
    int rc = lsec__write_some(p->fd, p->out, p->out_len, &p->out_off);

    /* All sent: the buffer is free again for the next message. */
    if (rc == 0)
        p->out_off = p->out_len = 0;
    return rc;
}

/* The first three bytes of a TLS handshake record: type 0x16, then a
 * version 0x03 0x01..0x04 (PROTOCOL.md "Mode mismatch"), as the TLS
 * listener checks them. */
static bool is_tls_hello(const uint8_t *b, size_t n)
{
    return n >= 3 && b[0] == 0x16 &&
           lsec__tls_record_start(b, 3, NULL) == LSEC__AGAIN;
}

/*
 * Make progress on one pending auth handshake.  Returns LSEC__DONE when it
 * completed (the channel is in *out), LSEC__AGAIN when it goes on, or a
 * negative code when it was dropped.
 */
static int step_auth(lsec_listener *l, int i, lsec_channel **out)
{
    struct pending *p = &l->pend[i];
    uint8_t in[LSEC__HS_MSG_MAX];
    size_t off = 0;
    ssize_t n;
    int rc = LSEC__AGAIN;

    if ((rc = flush_out(p)) != 0) {
        if (rc < 0)
            pending_drop(l, i, LSEC_LOG_INFO,
                         "connection lost during handshake");
        return rc < 0 ? LSEC_ECLOSED : LSEC__AGAIN;
    }
    do
        n = lsec__io.recv(p->fd, in, sizeof(in), MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return LSEC__AGAIN;
    if (n <= 0) {
        /* After our ServerHello, a client that leaves has usually found
         * that our proof does not match its secret. */
        pending_drop(l, i, LSEC_LOG_INFO,
                     p->hs.transcript_len > LSEC__HS_HELLO_BYTES
                         ? "peer left after our proof (a different secret?)"
                         : "peer closed during handshake");
        return LSEC_ECLOSED;
    }
    /* Feed everything; the state machine stops at each message boundary
     * and never consumes application bytes that follow the last one. */
    while (off < (size_t)n) {
        size_t used = 0, outlen = 0;
        rc = lsec__hs_step(&p->hs, in + off, (size_t)n - off, &used,
                           p->out + p->out_len, sizeof(p->out) - p->out_len,
                           &outlen);
        off += used;
        p->out_len += outlen;
        if (rc != LSEC__AGAIN || used == 0)
            break;
    }
    if (rc < 0) {
        bool tls_hello =
            p->hs.transcript_len == 0 && is_tls_hello(in, (size_t)n);
        lsec__wipe(in, sizeof(in));
        /* A TLS hello too is closed at once and without a word: the client
         * reports a refusal (LSEC_ECLOSED), as for any other close. */
        pending_drop(l, i, LSEC_LOG_WARN,
                     tls_hello          ? "mode mismatch (peer is a TLS client)"
                     : rc == LSEC_EAUTH ? "authentication failed"
                     : rc == LSEC_EMODE ? "mode mismatch (peer is not an "
                                          "auth-mode client)"
                                        : "malformed handshake");
        return LSEC_ECLOSED;
    }
    if (rc == LSEC__DONE) {
        struct pending done = pending_take(l, i);
        lsec__hs_wipe(&done.hs);
        /* Bytes behind the client's proof are its first messages. */
        rc = lsec__channel_new(done.fd, NULL, &l->o, &done.local, &done.remote,
                               done.uid, in + off, (size_t)n - off, out);
        lsec__wipe(in, sizeof(in));
        lsec__wipe(&done, sizeof(done));
        return rc == 0 ? LSEC__DONE : rc;
    }
    lsec__wipe(in, sizeof(in));
    if (flush_out(p) < 0) {
        pending_drop(l, i, LSEC_LOG_INFO, "connection lost during handshake");
        return LSEC_ECLOSED;
    }
    return LSEC__AGAIN;
}

/* Wake up for `n` bytes, not for each one (the peer's bytes stay in the
 * kernel until then).  Best effort: without it, the caller polls more. */
static void set_rcvlowat(struct pending *p, int n)
{
    if (p->rcvlowat == n)
        return;
    if (setsockopt(p->fd, SOL_SOCKET, SO_RCVLOWAT, &n, sizeof(n)) == 0)
        p->rcvlowat = n;
}

/* Has the peer ended its side (the last bytes it sent are all there is)? */
static bool peer_ended(int fd)
{
    struct pollfd q = {fd, POLLRDHUP, 0};
    return lsec__io.poll(&q, 1, 0) > 0 &&
           (q.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

/*
 * Before any TLS state: check the peer's first bytes as they arrive and
 * refuse at the first one that cannot start a TLS handshake record (an
 * HTTP request is closed at its 'G', as the auth listener closes at byte 0),
 * and allocate the SSL object only when the whole first record is in the
 * kernel, read with read-ahead off.  LSEC__AGAIN: wait,
 * LSEC__DONE: go on with the handshake, negative: dropped.
 */
static int tls_begin(lsec_listener *l, int i)
{
    struct pending *p = &l->pend[i];
    size_t total = 0;
    ssize_t n;
    int rc, avail = 0;
    char identity[LSEC__PSK_IDENTITY_MAX];

    /* The header is read, not peeked, so that a short read never repeats;
     * the TLS connection gets it back through lsec__tls_prefix. */
    if (p->hdr_len < sizeof(p->hdr)) {
        do
            n = lsec__io.recv(p->fd, p->hdr + p->hdr_len,
                              sizeof(p->hdr) - p->hdr_len, MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return LSEC__AGAIN;
        if (n <= 0) {
            pending_drop(l, i, LSEC_LOG_INFO,
                         p->hdr_len == 0 ? "peer closed during handshake"
                                         : "connection lost during handshake");
            return LSEC_ECLOSED;
        }
        p->hdr_len += (size_t)n;
    }
    rc = lsec__tls_record_start(p->hdr, p->hdr_len, &total);
    if (rc == LSEC_EMODE) {
        lsec__tls_send_mode_alert(p->fd);
        pending_drop(l, i, LSEC_LOG_WARN,
                     "mode mismatch (peer is not a TLS client)");
        return LSEC_ECLOSED;
    }
    if (rc < 0) {
        pending_drop(l, i, LSEC_LOG_WARN, "TLS handshake failed (not TLS)");
        return LSEC_ECLOSED;
    }
    if (rc == 0 && ioctl(p->fd, FIONREAD, &avail) == 0 &&
        (size_t)avail >= total - p->hdr_len) {
        if (p->rcvlowat > 1)
            set_rcvlowat(p, 1);
        rc = lsec__ticket_psk_identity(&l->ticket, identity, sizeof(identity));
        if (rc == 0)
            rc = lsec__tls_new(l->tls_ctx, p->fd, l->ticket.secret, identity,
                               &p->tls);
        if (rc == 0)
            rc = lsec__tls_prefix(p->tls, p->hdr, p->hdr_len);
        lsec__wipe(identity, sizeof(identity));
        if (rc != 0) {
            pending_drop(l, i, LSEC_LOG_ERROR, "cannot start a TLS handshake");
            return LSEC_ECLOSED;
        }
        return LSEC__DONE;
    }
    /* A valid start, more to come -- unless the peer has left. */
    if (peer_ended(p->fd)) {
        pending_drop(l, i, LSEC_LOG_INFO, "connection lost during handshake");
        return LSEC_ECLOSED;
    }
    set_rcvlowat(p, rc == 0 ? (int)(total - p->hdr_len)
                            : (int)(sizeof(p->hdr) - p->hdr_len));
    return LSEC__AGAIN;
}

static int step_tls(lsec_listener *l, int i, lsec_channel **out)
{
    struct pending *p = &l->pend[i];
    int rc;

    if (p->tls == NULL && (rc = tls_begin(l, i)) != LSEC__DONE)
        return rc;
    rc = lsec__tls_handshake(p->tls);

    if (rc == LSEC__WANT_READ || rc == LSEC__WANT_WRITE) {
        p->want = rc;
        return LSEC__AGAIN;
    }
    if (rc != 0) {
        pending_drop(l, i, LSEC_LOG_WARN,
                     rc == LSEC_EAUTH   ? "TLS authentication failed"
                     : rc == LSEC_EMODE ? "mode mismatch (peer is not a TLS "
                                          "client)"
                                        : "TLS handshake failed");
        return LSEC_ECLOSED;
    }
    struct pending done = pending_take(l, i);
    rc = lsec__channel_new(done.fd, done.tls, &l->o, &done.local, &done.remote,
                           done.uid, NULL, 0, out);
    return rc == 0 ? LSEC__DONE : rc;
}

static short pending_events(const lsec_listener *l, const struct pending *p)
{
    if (l->o.mode == LSEC_MODE_TLS)
        return lsec__want_events(p->want);
    return p->out_off < p->out_len ? POLLOUT : POLLIN;
}

/* One-shot: once the last allowed peer is in, nobody else may even try. */
static void stop_listening(lsec_listener *l)
{
    while (l->npend > 0)
        pending_drop(l, l->npend - 1, LSEC_LOG_DEBUG, NULL);
    if (l->fd >= 0)
        close(l->fd); /* leaves the epoll set by itself */
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
    l->efd = -1;
    l->abort_fd = -1;
    l->tfd = -1;
    l->file.dfd = -1;
    /* Taken while descriptors are plentiful; without one, the listener
     * still works and pauses at the limit instead. */
    l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if ((rc = lsec__opts_resolve(o, &l->o)) != 0)
        goto fail;
    if ((rc = lsec__addr_parse(bind, l->o.flags, &a)) != 0)
        goto fail;
    l->pend = calloc((size_t)l->o.max_pending, sizeof(*l->pend));
    /* The listening socket, each pending handshake, the abort eventfd. */
    l->pfds = calloc((size_t)l->o.max_pending + 2, sizeof(*l->pfds));
    if (l->pend == NULL || l->pfds == NULL) {
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
    l->efd = epoll_create1(EPOLL_CLOEXEC);
    if (l->efd < 0) {
        rc = lsec__fail_errno(lsec__sys_code(errno, LSEC_EIO), errno,
                              "epoll_create1");
        goto fail;
    }
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.fd = l->fd;
    if (epoll_ctl(l->efd, EPOLL_CTL_ADD, l->fd, &ev) != 0) {
        rc = lsec__fail_errno(LSEC_EIO, errno, "epoll_ctl");
        goto fail;
    }
    l->abort_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ev.data.fd = l->abort_fd;
    if (l->abort_fd < 0 ||
        epoll_ctl(l->efd, EPOLL_CTL_ADD, l->abort_fd, &ev) != 0) {
        rc =
            lsec__fail_errno(lsec__sys_code(errno, LSEC_EIO), errno, "eventfd");
        goto fail;
    }
    l->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    ev.data.fd = l->tfd;
    if (l->tfd < 0 || epoll_ctl(l->efd, EPOLL_CTL_ADD, l->tfd, &ev) != 0) {
        rc =
            lsec__fail_errno(lsec__sys_code(errno, LSEC_EIO), errno, "timerfd");
        goto fail;
    }
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
    if (!l->ep_used) {
        l->ep_used = true;
        ep_sync(l);
    }
    return l->efd;
}

int lsec_listener_timeout_ms(const lsec_listener *l)
{
    int64_t earliest = INT64_MAX;

    if (l == NULL)
        return -1;
    for (int i = 0; i < l->npend; i++)
        if (l->pend[i].deadline < earliest)
            earliest = l->pend[i].deadline;
    return lsec__remaining(earliest);
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

int lsec_accept(lsec_listener *l, int timeout_ms, lsec_channel **out)
{
    int64_t deadline;

    lsec__clear_detail();
    if (out != NULL)
        *out = NULL;
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
    deadline = lsec__deadline(timeout_ms);
    timer_clear(l);
    for (;;) {
        int64_t now = lsec__now_ms(), wake = deadline;
        int n = 0, rc, wait;

        /* Drop what has run out of time, then poll for the rest. */
        for (int i = 0; i < l->npend;) {
            if (l->pend[i].deadline <= now) {
                pending_drop(l, i, LSEC_LOG_INFO, "handshake timed out");
                continue;
            }
            if (l->pend[i].deadline < wake)
                wake = l->pend[i].deadline;
            i++;
        }
        /* A negative fd keeps its slot (pfds[k+1] is pend[k]) while poll
         * ignores it. */
        l->pfds[n].fd = l->fd;
        if (now < l->accept_paused_until) {
            l->pfds[n].fd = -1;
            if (l->accept_paused_until < wake)
                wake = l->accept_paused_until;
        }
        l->pfds[n].events = POLLIN;
        l->pfds[n].revents = 0;
        n++;
        for (int i = 0; i < l->npend; i++, n++) {
            l->pfds[n].fd = l->pend[i].fd;
            l->pfds[n].events = pending_events(l, &l->pend[i]);
            l->pfds[n].revents = 0;
        }
        l->pfds[n].fd = l->abort_fd; /* last: pfds[k+1] stays pend[k] */
        l->pfds[n].events = POLLIN;
        l->pfds[n].revents = 0;
        n++;
        wait = timeout_ms == 0 ? 0 : lsec__remaining(wake);
        rc = lsec__io.poll(l->pfds, (unsigned long)n, wait);
        if (__atomic_load_n(&l->aborted, __ATOMIC_ACQUIRE))
            return lsec__fail(LSEC_ECLOSED, "the listener was aborted");
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            return lsec__fail_errno(LSEC_EIO, errno, "poll");
        }
        /* Pending handshakes first, walking backwards so that a drop (which
         * moves the last entry into the hole) never skips one.  pfds[k+1]
         * belongs to pend[k] as laid out above. */
        for (int k = l->npend - 1; rc > 0 && k >= 0; k--) {
            if (l->pfds[k + 1].revents == 0)
                continue;
            int r = l->o.mode == LSEC_MODE_TLS ? step_tls(l, k, out)
                                               : step_auth(l, k, out);
            if (r == LSEC__DONE) {
                l->accepted++;
                if (l->o.max_accepts > 0 && l->accepted >= l->o.max_accepts)
                    stop_listening(l);
                ep_sync(l);
                return 0;
            }
        }
        if (rc > 0 && (l->pfds[0].revents & POLLIN))
            accept_new(l);
        ep_sync(l);
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
    static const uint64_t one = 1;

    /* Async-signal-safe: a lock-free atomic store and write(2) to an
     * eventfd that stays open until lsec_listener_close. */
    if (l == NULL)
        return;
    __atomic_store_n(&l->aborted, 1, __ATOMIC_RELEASE);
    if (l->abort_fd >= 0)
        (void)!write(l->abort_fd, &one, sizeof(one));
}

uint64_t lsec_listener_failures(const lsec_listener *l)
{
    return l == NULL ? 0 : l->failures;
}

void lsec_listener_close(lsec_listener *l)
{
    if (l == NULL)
        return;
    stop_listening(l);
    if (l->abort_fd >= 0)
        close(l->abort_fd);
    warn_flush(l);
    if (l->efd >= 0)
        close(l->efd);
    if (l->tfd >= 0)
        close(l->tfd);
    if (l->reserve_fd >= 0)
        close(l->reserve_fd);
    lsec__connfile_remove(&l->file);
    if (l->tls_ctx != NULL)
        lsec__tls_ctx_free(l->tls_ctx);
    lsec__ticket_wipe(&l->ticket);
    free(l->pend);
    free(l->pfds);
    sodium_free(l); /* wipes it first */
}
