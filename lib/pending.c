/*
 * A listener's pending set: every accepted connection whose handshake is
 * still running, each an lsec__conn (conn.c) with an absolute deadline.
 *
 * The number of pending connections is capped, and when the cap is reached
 * one pending connection is dropped to make room -- the oldest of those
 * that have not sent a complete hello, and only if there is none the
 * oldest of all -- so a flood of stalled clients can neither lock good
 * clients out nor cost one that is about to finish (evict_one).  Nothing
 * is ever written to a peer before it has sent a valid hello, and a failed
 * attempt is closed at once without a word.
 */
#include "pending.h"

#include "sys.h"

#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* At most WARN_BURST failure lines per WARN_WINDOW_MS and listener. */
#define WARN_BURST 10
#define WARN_WINDOW_MS 1000

/* How many eviction candidates are probed for waiting bytes (and stepped
 * if they have some). */
#define EVICT_PROBES 8

void lsec__pending_warn_flush(lsec__pending *s)
{
    if (s->warn_suppressed > 0)
        lsec__log(LSEC_LOG_WARN,
                  "%llu similar suppressed (failed or refused connections; "
                  "at most %d lines a second are logged)",
                  (unsigned long long)s->warn_suppressed, WARN_BURST);
    s->warn_suppressed = 0;
}

void lsec__pending_warn(lsec__pending *s, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    int64_t now;

    s->failures++;
    if (!lsec__log_enabled(LSEC_LOG_WARN))
        return;
    now = lsec__now_ms();
    if (now - s->warn_window >= WARN_WINDOW_MS) {
        lsec__pending_warn_flush(s);
        s->warn_window = now;
        s->warn_lines = 0;
    }
    if (s->warn_lines >= WARN_BURST) {
        s->warn_suppressed++;
        return;
    }
    s->warn_lines++;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    lsec__log(LSEC_LOG_WARN, "%s", line);
}

/* Take conn[i] out of the array, keeping it dense (the last entry moves
 * into the hole). */
static lsec__conn take(lsec__pending *s, int i)
{
    lsec__conn c = s->conn[i];

    s->n--;
    if (i != s->n)
        s->conn[i] = s->conn[s->n];
    lsec__wipe(&s->conn[s->n], sizeof(s->conn[s->n]));
    return c;
}

void lsec__pending_drop(lsec__pending *s, int i, int level, const char *why)
{
    lsec__conn *c = &s->conn[i];

    if (c->ready)
        s->ready--;
    if (why != NULL && level == LSEC_LOG_WARN)
        lsec__pending_warn(s, "peer port %u uid %lld: %s", c->remote.port,
                           (long long)c->uid, why);
    else if (why != NULL)
        lsec__log(level, "peer port %u uid %lld: %s", c->remote.port,
                  (long long)c->uid, why);
    /* A closed socket leaves the readiness set by itself. */
    lsec__conn dropped = take(s, i);
    lsec__conn_free(&dropped);
}

/* The oldest connection that has not sent a complete hello, or -1. */
static int oldest_silent(const lsec__pending *s)
{
    int c = -1;

    for (int i = 0; i < s->n; i++)
        if (!lsec__conn_sent_hello(&s->conn[i]) &&
            (c < 0 || s->conn[i].deadline < s->conn[c].deadline))
            c = i;
    return c;
}

/*
 * Full: one pending handshake makes room.  The oldest of those that have
 * not sent a complete hello goes first -- a connection that stalls before
 * its hello is what a flood is made of -- and only when every one has,
 * the oldest of all (evicting the oldest regardless lost good clients
 * that were about to finish).
 */
static void evict_one(lsec__pending *s)
{
    int victim = -1;

    /* A candidate whose bytes are already waiting (its hello arrived
     * since the last round, unread) is not known to be stalled: it is
     * stepped first, which reads them.  A whole hello takes it out of the
     * candidates, a failure drops it (room made), a partial hello leaves
     * it a candidate with nothing waiting, evicted on the next probe.
     * Bounded: a few polls and steps per eviction at most. */
    for (int tries = 0; tries < EVICT_PROBES; tries++) {
        int c = oldest_silent(s);
        if (c < 0)
            break;
        victim = c;
        struct pollfd q = {s->conn[c].fd, POLLIN, 0};
        if (lsec__io.poll(&q, 1, 0) == 0)
            break;
        int rc = lsec__conn_step(&s->conn[c], &s->keys);
        if (rc < 0) {
            lsec__pending_drop(s, c, s->conn[c].why_level, s->conn[c].why);
            return;
        }
        /* A TLS server may be done as soon as its flight is out (the PSK
         * binder in the ClientHello proved the peer): it waits to be
         * handed out (lsec__pending_take_ready), never evicted. */
        if (rc == LSEC__DONE)
            s->ready++;
        victim = -1;
    }
    if (victim < 0)
        victim = oldest_silent(s);
    if (victim < 0) {
        victim = 0;
        for (int i = 1; i < s->n; i++)
            if (s->conn[i].deadline < s->conn[victim].deadline)
                victim = i;
    }
    lsec__pending_drop(s, victim, LSEC_LOG_WARN,
                       "dropped: too many pending handshakes");
}

void lsec__pending_admit(lsec__pending *s, int fd, const struct sockaddr *peer,
                         unsigned peerlen)
{
    lsec__addr remote;
    int64_t uid = -1;
    int32_t peer_pid = -1;
    int rc;

    /* The kernel's own view of the peer, as accept4 reported it, checked
     * as loopback again.  Our end is the address the listener is bound to
     * (a single loopback address, never a wildcard). */
    if (lsec__addr_from_sockaddr(peer, peerlen, s->o->flags, &remote) != 0) {
        lsec__pending_warn(s, "refused a connection: %s", lsec_last_detail());
        close(fd);
        return;
    }
    rc = lsec__peer_lookup(&s->local, &remote, false, &uid, &peer_pid);
    /* Fail closed: a peer we cannot identify is not "the same user". */
    if (s->o->peer_policy == LSEC_PEER_SAME_USER &&
        (rc != 0 || uid != (int64_t)geteuid())) {
        lsec__pending_warn(s,
                           "peer port %u uid %lld: refused by peer policy "
                           "(same user)",
                           remote.port, (long long)uid);
        close(fd);
        return;
    }
    if (s->n == s->o->max_pending)
        evict_one(s);
    lsec__conn *c = &s->conn[s->n];
    c->fd = fd;
    /* Every unauthenticated connection has an absolute deadline.  TLS
     * mode: no TLS state yet (conn.c makes it once a whole ClientHello
     * record waits in the kernel), so that a silent or trickling client
     * costs this struct and nothing more. */
    rc = lsec__conn_start(c, LSEC__ROLE_SERVER, s->o->mode, &s->local, &remote,
                          uid, lsec__deadline(s->o->handshake_timeout_ms),
                          &s->keys);
    if (rc != 0) {
        lsec__log(LSEC_LOG_ERROR, "cannot start a handshake: %s",
                  lsec_last_detail());
        lsec__conn_free(c);
        return;
    }
    s->n++;
}

int lsec__pending_step(lsec__pending *s, int i, lsec_channel **out)
{
    lsec__conn *c = &s->conn[i];
    bool was_ready = c->ready;
    int rc = lsec__conn_step(c, &s->keys);

    if (was_ready)
        s->ready--;

    if (rc == LSEC__WANT_READ || rc == LSEC__WANT_WRITE)
        return LSEC__AGAIN;
    if (rc < 0) {
        lsec__pending_drop(s, i, c->why_level, c->why);
        return LSEC_ECLOSED;
    }
    /* The socket lives on as a channel: it must leave the set.  (A dropped
     * one leaves it by itself when it is closed.) */
    if (c->set_events != 0)
        (void)lsec__sys_set_del(s->set, c->fd);
    lsec__conn done = take(s, i);
    rc = lsec__conn_channel(&done, s->o, out);
    return rc == 0 ? LSEC__DONE : rc;
}

int lsec__pending_take_ready(lsec__pending *s, lsec_channel **out)
{
    for (int i = 0; s->ready > 0 && i < s->n; i++)
        if (s->conn[i].ready)
            return lsec__pending_step(s, i, out);
    return LSEC__AGAIN;
}

void lsec__pending_expire(lsec__pending *s, int64_t now, int64_t *wake)
{
    for (int i = 0; i < s->n;) {
        if (s->conn[i].deadline <= now) {
            lsec__pending_drop(s, i, LSEC_LOG_INFO, "handshake timed out");
            continue;
        }
        if (s->conn[i].deadline < *wake)
            *wake = s->conn[i].deadline;
        i++;
    }
}

int64_t lsec__pending_earliest(const lsec__pending *s)
{
    int64_t earliest = INT64_MAX;

    if (s->ready > 0)
        return 0;
    for (int i = 0; i < s->n; i++)
        if (s->conn[i].deadline < earliest)
            earliest = s->conn[i].deadline;
    return earliest;
}

/* Arm the timer to the earliest pending deadline (or disarm it), so that
 * a caller who polls the set is woken to drop a stalled client. */
static void timer_sync(lsec__pending *s)
{
    int64_t earliest = lsec__pending_earliest(s);

    /* 0 disarms; a connection ready to be handed out is due at once. */
    if (earliest == INT64_MAX)
        earliest = 0;
    else if (earliest <= 0)
        earliest = 1;
    if (s->timer < 0 || earliest == s->t_armed)
        return;
    if ((earliest != 0 ? lsec__sys_timer_arm(s->timer, earliest)
                       : lsec__sys_timer_clear(s->timer)) == 0)
        s->t_armed = earliest;
}

void lsec__pending_timer_clear(lsec__pending *s)
{
    if (s->timer < 0 || s->t_armed == 0 || s->t_armed > lsec__now_ms())
        return;
    (void)lsec__sys_timer_clear(s->timer);
    s->t_armed = 0;
}

void lsec__pending_sync(lsec__pending *s)
{
    /* Only once the caller watches the set: otherwise the system calls
     * per connection buy nothing. */
    if (!s->set_used)
        return;
    for (int i = 0; i < s->n; i++) {
        lsec__conn *c = &s->conn[i];
        short want = c->events == POLLOUT ? POLLOUT : POLLIN;
        if (c->set_events == want)
            continue;
        if ((c->set_events == 0 ? lsec__sys_set_add(s->set, c->fd, want)
                                : lsec__sys_set_mod(s->set, c->fd, want)) == 0)
            c->set_events = want;
    }
    timer_sync(s);
}
