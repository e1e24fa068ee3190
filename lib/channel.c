/*
 * Channels: whole messages over an authenticated connection, in order, with
 * timeouts.  The connecting side is connect.c.
 *
 * Sockets are always non-blocking; every wait is a poll() bounded by an
 * absolute deadline, so timeouts never depend on signals and EINTR never
 * stretches them.  Every write uses MSG_NOSIGNAL (or the TLS BIO that does),
 * so the library never raises SIGPIPE.
 *
 * Receive path: a small read-ahead buffer holds headers and small messages;
 * a large message is read straight into the caller's buffer, with the
 * read-ahead buffer as a second iovec to catch the next header in the same
 * system call.  Only when a timeout cuts a message in half are its bytes
 * kept ("stashed") in memory of our own, bounded by max_message; the rest of
 * that message is then read into the stash, which grows geometrically, and
 * copied out once, so a message that arrives in many pieces costs time
 * linear in its size.
 */
#include "internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define RBUF_SIZE 4096
/* Plaintext per TLS write: one full record. */
#define TLS_CHUNK 16384
/* How long lsec_channel_close may spend flushing what lsec_send queued. */
#define CLOSE_FLUSH_MS 2000

struct lsec_channel {
    int fd;
    int mode;
    lsec__tls *tls;
    size_t max_message;
    int err; /* sticky: once broken, every call fails with it */
    /* Set by lsec_channel_abort (any thread, a signal handler): read with
     * __atomic loads; once set, every call ends with LSEC_ECLOSED. */
    int aborted;
    /* The peer ended its direction cleanly (FIN or close_notify between
     * messages).  Receiving is over; sending goes on (half-close). */
    bool rx_closed;
    /* lsec_channel_shutdown ended our direction: lsec_send is refused. */
    bool tx_closed;
    lsec__addr local, remote;
    int64_t peer_uid;
    /* receive state */
    size_t roff, rlen; /* unread bytes are rbuf[roff, rlen) */
    bool have_len;
    uint32_t msg_len;
    uint8_t *stash; /* the part of a message read before a timeout */
    size_t stash_have, stash_cap;
    /* bytes of the framed stream accepted by lsec_send, not yet written */
    uint8_t *wq;
    size_t wq_off, wq_len;
    bool sent_last; /* the last call was lsec_send: no answer is here yet */
    /* lsec_send_from_fd / lsec_recv_to_fd (fdmove.c): their pipes, and how
     * much of the current message they have taken */
    lsec__fdmove *fdm;
    uint32_t msg_done;
    uint8_t rbuf[RBUF_SIZE];
};

/* ------------------------------------------------------------------------ */
/* Transport: one read or write on the socket or through TLS                */

/* Record a sticky failure: every later call fails with `code`. */
static int sticky(lsec_channel *c, int code)
{
    c->err = code;
    return code;
}

/* sticky, with a log line and the detail `why`. */
static int broken(lsec_channel *c, int code, const char *why)
{
    (void)sticky(c, code);
    lsec__log(LSEC_LOG_INFO, "channel to port %u: %s", c->remote.port, why);
    return lsec__fail(code, "%s", why);
}

/*
 * Read at least one byte into iov (TLS uses only iov[0]) before `deadline`.
 * Returns 0 with *n > 0, LSEC_ECLOSED on a clean end of stream, or an error.
 */
static int rx(lsec_channel *c, struct iovec *iov, int iovcnt, int64_t deadline,
              bool nowait, size_t *n)
{
    /* Right after a send the answer is almost never here yet: wait first
     * rather than read, fail with EAGAIN and then wait (one system call
     * less per round trip).  Only for calls that may wait, and in TLS only
     * with nothing buffered inside OpenSSL. */
    if (c->sent_last && !nowait &&
        (c->tls == NULL || lsec__tls_pending(c->tls) == 0)) {
        int rc = lsec__wait_fd(c->fd, POLLIN, deadline, nowait);
        if (rc != 0)
            return rc;
    }
    c->sent_last = false;
    for (;;) {
        int rc;
        if (c->tls != NULL) {
            rc = lsec__tls_read(c->tls, iov[0].iov_base, iov[0].iov_len, n);
            if (rc == 0)
                return 0;
            /* With a timeout of 0, a read that would block is the answer:
             * no poll(0) to learn it again. */
            if (rc == LSEC__WANT_READ && nowait)
                return LSEC_EAGAIN;
            if (rc == LSEC__WANT_READ || rc == LSEC__WANT_WRITE)
                rc = lsec__wait_fd(c->fd, lsec__want_events(rc), deadline,
                                   nowait);
            if (rc != 0)
                return rc;
            continue;
        }
        struct msghdr mh;
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)iovcnt;
        ssize_t got = lsec__io.recvmsg(c->fd, &mh, MSG_DONTWAIT);
        if (got > 0) {
            *n = (size_t)got;
            return 0;
        }
        if (got == 0)
            return LSEC_ECLOSED;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (nowait)
                return LSEC_EAGAIN;
            rc = lsec__wait_fd(c->fd, POLLIN, deadline, nowait);
            if (rc != 0)
                return rc;
            continue;
        }
        if (errno == ECONNRESET || errno == EPIPE || errno == ETIMEDOUT)
            return lsec__fail_errno(LSEC_ERESET, errno, "connection lost");
        return lsec__fail_errno(LSEC_EIO, errno, "recv");
    }
}

/*
 * Write some of iov (TLS: iov[0] only) without waiting.  0 with *n > 0,
 * LSEC__WANT_READ/WRITE when the transport must wait, or an error.
 */
static int tx_once(lsec_channel *c, struct iovec *iov, int iovcnt, size_t *n)
{
    for (;;) {
        if (c->tls != NULL) {
            int rc =
                lsec__tls_write(c->tls, iov[0].iov_base, iov[0].iov_len, n);
            return rc;
        }
        struct msghdr mh;
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)iovcnt;
        ssize_t put = lsec__io.sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (put > 0) {
            *n = (size_t)put;
            return 0;
        }
        if (put < 0 && errno == EINTR)
            continue;
        if (put == 0 || errno == EAGAIN || errno == EWOULDBLOCK)
            return LSEC__WANT_WRITE;
        if (errno == EPIPE || errno == ECONNRESET)
            return lsec__fail_errno(LSEC_ERESET, errno, "connection lost");
        return lsec__fail_errno(LSEC_EIO, errno, "send");
    }
}

static void iov_advance(struct iovec *iov, int *iovcnt, size_t n)
{
    int i = 0;
    while (i < *iovcnt && n >= iov[i].iov_len) {
        n -= iov[i].iov_len;
        i++;
    }
    if (i > 0) {
        memmove(iov, iov + i, sizeof(*iov) * (size_t)(*iovcnt - i));
        *iovcnt -= i;
    }
    if (*iovcnt > 0) {
        iov[0].iov_base = (uint8_t *)iov[0].iov_base + n;
        iov[0].iov_len -= n;
    }
}

/* The send queue holds plaintext: wiped before it is freed. */
static void wq_free(lsec_channel *c)
{
    if (c->wq != NULL) {
        lsec__wipe(c->wq, c->wq_len);
        free(c->wq);
    }
    c->wq = NULL;
    c->wq_off = c->wq_len = 0;
}

/* Write the queue out.  0 when empty; ETIMEDOUT/EAGAIN leave the rest. */
static int flush_queue(lsec_channel *c, int64_t deadline, bool nowait)
{
    while (c->wq_off < c->wq_len) {
        struct iovec iov = {c->wq + c->wq_off, c->wq_len - c->wq_off};
        size_t n = 0;
        int rc = tx_once(c, &iov, 1, &n);
        if (rc == 0) {
            c->wq_off += n;
            continue;
        }
        if (rc == LSEC__WANT_READ || rc == LSEC__WANT_WRITE) {
            rc = lsec__wait_fd(c->fd, lsec__want_events(rc), deadline, nowait);
            if (rc != 0)
                return rc;
            continue;
        }
        return broken(c, rc,
                      rc == LSEC_ERESET ? "connection lost while sending"
                                        : "send failed");
    }
    wq_free(c);
    return 0;
}

/* Keep the unwritten rest of a message for a later flush. */
static int queue_rest(lsec_channel *c, struct iovec *iov, int iovcnt)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    uint8_t *q = malloc(total > 0 ? total : 1);
    if (q == NULL)
        return broken(c, LSEC_ENOMEM, "out of memory queueing a message");
    size_t off = 0;
    for (int i = 0; i < iovcnt; i++) {
        memcpy(q + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    c->wq = q;
    c->wq_off = 0;
    c->wq_len = total;
    return 0;
}

/*
 * Write all of iov before the deadline.  Nothing written when the deadline
 * passes: ETIMEDOUT/EAGAIN.  Part written: the rest is queued, 0.
 */
static int tx_all(lsec_channel *c, struct iovec *iov, int iovcnt,
                  int64_t deadline, bool nowait)
{
    bool started = false;
    while (iovcnt > 0) {
        size_t n = 0;
        int rc = tx_once(c, iov, iovcnt, &n);
        if (rc == 0) {
            started = true;
            iov_advance(iov, &iovcnt, n);
            continue;
        }
        if (rc == LSEC__WANT_READ || rc == LSEC__WANT_WRITE) {
            /* TLS may have taken bytes into a record even when it asks us to
             * wait; from the first call on, the message counts as started. */
            if (c->tls != NULL)
                started = true;
            rc = lsec__wait_fd(c->fd, lsec__want_events(rc), deadline, nowait);
            if (rc == 0)
                continue;
            if (rc == LSEC_ETIMEDOUT || rc == LSEC_EAGAIN) {
                if (!started)
                    return rc;
                return queue_rest(c, iov, iovcnt);
            }
            return rc;
        }
        return broken(c, rc,
                      rc == LSEC_ERESET ? "connection lost while sending"
                                        : "send failed");
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Public channel calls                                                      */

int lsec__channel_new(int fd, lsec__tls *tls, const lsec_opts *o,
                      const lsec__addr *local, const lsec__addr *remote,
                      int64_t peer_uid, const uint8_t *early, size_t early_len,
                      lsec_channel **out)
{
    lsec_channel *c;

    *out = NULL;
    if (early_len > RBUF_SIZE) {
        if (tls != NULL)
            lsec__tls_free(tls);
        close(fd);
        return lsec__fail(LSEC_EPROTO, "too many bytes after the handshake");
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        if (tls != NULL)
            lsec__tls_free(tls);
        close(fd);
        return lsec__fail(LSEC_ENOMEM, "out of memory");
    }
    c->fd = fd;
    c->tls = tls;
    c->mode = tls != NULL ? LSEC_MODE_TLS : LSEC_MODE_AUTH;
    c->max_message = o->max_message;
    c->local = *local;
    c->remote = *remote;
    c->peer_uid = peer_uid;
    if (early_len > 0)
        memcpy(c->rbuf, early, early_len);
    c->rlen = early_len;
    *out = c;
    return 0;
}

static int channel_send(lsec_channel *c, const void *msg, size_t len,
                        int timeout_ms)
{
    uint8_t hdr[LSEC__FRAME_HDR];
    int64_t deadline;
    bool nowait = timeout_ms == 0;
    int rc;

    lsec__clear_detail();
    if (c == NULL || (msg == NULL && len > 0))
        return lsec__fail(LSEC_EINVAL, "NULL channel or message");
    if ((rc = lsec__timeout_check(timeout_ms)) != 0)
        return rc;
    if (c->err != 0)
        return lsec__fail(c->err, "the channel is closed or broken");
    if (c->tx_closed)
        return lsec__fail(LSEC_EINVAL, "the sending direction was shut down");
    if (len > UINT32_MAX)
        return lsec__fail(LSEC_EMSGSIZE, "message of %zu bytes exceeds 4 GiB",
                          len);
    deadline = lsec__deadline(timeout_ms);
    if (c->wq_len > 0 && (rc = flush_queue(c, deadline, nowait)) != 0)
        return rc;
    lsec__frame_header(hdr, (uint32_t)len);
    c->sent_last = true;

    if (c->tls == NULL) {
        /* One sendmsg carries header and payload: one segment for small
         * messages under TCP_NODELAY, no copy for large ones. */
        struct iovec iov[2] = {{hdr, sizeof(hdr)}, {(void *)msg, len}};
        return tx_all(c, iov, len > 0 ? 2 : 1, deadline, nowait);
    }

    /* TLS: the first record carries the header and just enough of the
     * payload that the rest is whole records sent straight from the
     * caller's buffer: no more records than needed, and for a 64 KiB
     * message 4 bytes of plaintext copied (and wiped) instead of 16 KiB. */
    uint8_t first[TLS_CHUNK + LSEC__FRAME_HDR];
    size_t head;
    if (len <= TLS_CHUNK - sizeof(hdr)) {
        head = len;
    } else {
        size_t lead = (sizeof(hdr) + len) % TLS_CHUNK;
        if (lead < sizeof(hdr))
            lead += TLS_CHUNK;
        head = lead - sizeof(hdr);
    }
    memcpy(first, hdr, sizeof(hdr));
    if (head > 0)
        memcpy(first + sizeof(hdr), msg, head);
    /* Nothing is handed to TLS before the socket can take it, so that a
     * timeout before the first byte leaves the channel untouched. */
    if (timeout_ms >= 0) { /* -1 never times out: nothing to protect */
        rc = lsec__wait_fd(c->fd, POLLOUT, deadline, nowait);
        if (rc != 0)
            goto done; /* `first` holds plaintext: wiped there */
    }
    /* From here on the message has started: tx_all queues what the
     * deadline leaves unwritten and returns 0. */
    struct iovec iov = {first, sizeof(hdr) + head};
    rc = tx_all(c, &iov, 1, deadline, false);
    if (rc != 0 || head == len)
        goto done;
    if (c->wq_len > 0) {
        /* The first record is queued: queue the rest behind it. */
        size_t rest = len - head;
        /* Not realloc: the old block is wiped before it is freed. */
        uint8_t *q = malloc(c->wq_len + rest);
        if (q == NULL) {
            rc = broken(c, LSEC_ENOMEM, "out of memory queueing a message");
            goto done;
        }
        memcpy(q, c->wq, c->wq_len);
        memcpy(q + c->wq_len, (const uint8_t *)msg + head, rest);
        size_t off = c->wq_off, qlen = c->wq_len + rest;
        wq_free(c);
        c->wq = q;
        c->wq_off = off;
        c->wq_len = qlen;
        goto done;
    }
    iov.iov_base = (uint8_t *)msg + head;
    iov.iov_len = len - head;
    rc = tx_all(c, &iov, 1, deadline, false);
done:
    lsec__wipe(first, sizeof(hdr) + head);
    return rc;
}

static int channel_flush(lsec_channel *c, int timeout_ms)
{
    lsec__clear_detail();
    if (c == NULL)
        return lsec__fail(LSEC_EINVAL, "NULL channel");
    if (lsec__timeout_check(timeout_ms) != 0)
        return LSEC_EINVAL;
    if (c->wq_len == 0)
        return 0;
    if (c->err != 0)
        return lsec__fail(c->err, "the channel is closed or broken");
    return flush_queue(c, lsec__deadline(timeout_ms), timeout_ms == 0);
}

int lsec_channel_shutdown(lsec_channel *c, int timeout_ms)
{
    int64_t deadline;
    int rc;

    lsec__clear_detail();
    if (c == NULL)
        return lsec__fail(LSEC_EINVAL, "NULL channel");
    if (c->err != 0)
        return lsec__fail(c->err, "the channel is closed or broken");
    if (c->tx_closed)
        return 0;
    deadline = lsec__deadline(timeout_ms);
    /* Every message accepted by lsec_send goes out before the end. */
    if (c->wq_len > 0 && (rc = flush_queue(c, deadline, timeout_ms == 0)) != 0)
        return rc;
    if (c->tls != NULL) {
        /* close_notify, then the end of our TCP direction: the peer may
         * have read and processed the alert together with the last record
         * (read-ahead), and its socket must still wake a poll loop that
         * follows "pending > 0 ? recv : poll".  The peer's records, and its
         * own close_notify, still arrive. */
        rc = lsec__tls_close_notify(c->tls, deadline, timeout_ms == 0);
        if (rc != 0) {
            if (rc != LSEC_EAGAIN && rc != LSEC_ETIMEDOUT)
                return sticky(c, rc);
            return rc;
        }
    }
    if (shutdown(c->fd, SHUT_WR) != 0) {
        if (errno == ENOTCONN)
            return broken(c, LSEC_ERESET, "connection lost before shutdown");
        return lsec__fail_errno(LSEC_EIO, errno, "shutdown");
    }
    c->tx_closed = true;
    lsec__log(LSEC_LOG_DEBUG, "channel to port %u: our side ended",
              c->remote.port);
    return 0;
}

/*
 * Make room for `need` (<= msg_len) bytes in the stash.  Growth doubles, so
 * that a message arriving in many pieces is copied O(1) times per byte, and
 * never exceeds the message: memory stays within twice what has arrived.
 * The old block is wiped, not left behind by realloc.
 */
static int stash_reserve(lsec_channel *c, size_t need)
{
    size_t cap;
    uint8_t *p;

    if (need <= c->stash_cap)
        return 0;
    cap = c->stash_cap > c->msg_len / 2 ? c->msg_len : 2 * c->stash_cap;
    if (cap < need)
        cap = need;
    if (cap < RBUF_SIZE && c->msg_len >= RBUF_SIZE)
        cap = RBUF_SIZE;
    p = malloc(cap > 0 ? cap : 1);
    if (p == NULL)
        return broken(c, LSEC_ENOMEM, "out of memory keeping a message");
    if (c->stash != NULL) {
        memcpy(p, c->stash, c->stash_have);
        lsec__wipe(c->stash, c->stash_have);
        free(c->stash);
    }
    c->stash = p;
    c->stash_cap = cap;
    return 0;
}

static void stash_free(lsec_channel *c)
{
    if (c->stash != NULL) {
        lsec__wipe(c->stash, c->stash_have);
        free(c->stash);
    }
    c->stash = NULL;
    c->stash_have = c->stash_cap = 0;
}

/* A timeout inside a message: keep what arrived so the next call resumes. */
static int stash_partial(lsec_channel *c, const uint8_t *buf, size_t have,
                         int rc)
{
    if (have > 0) {
        int e = stash_reserve(c, have);
        if (e != 0)
            return e;
        memcpy(c->stash, buf, have);
        c->stash_have = have;
    }
    return rc;
}

static int rx_failed(lsec_channel *c, int rc, bool mid_message);

/*
 * Go on with a stashed message: what the read-ahead buffer holds, then the
 * socket, straight into the stash.  0 once the whole payload is in; a
 * timeout leaves it stashed.
 */
static int stash_fill(lsec_channel *c, int64_t deadline, bool nowait)
{
    size_t avail = c->rlen - c->roff, n;
    size_t take =
        avail < c->msg_len - c->stash_have ? avail : c->msg_len - c->stash_have;
    int rc;

    if ((rc = stash_reserve(c, c->stash_have + take)) != 0)
        return rc;
    memcpy(c->stash + c->stash_have, c->rbuf + c->roff, take);
    c->roff += take;
    c->stash_have += take;
    while (c->stash_have < c->msg_len) {
        if ((rc = stash_reserve(c, c->stash_have + 1)) != 0)
            return rc;
        /* As in lsec_recv: the read-ahead buffer is empty here, and catches
         * what follows the message once the stash reaches its end. */
        struct iovec iov[2] = {
            {c->stash + c->stash_have, c->stash_cap - c->stash_have},
            {c->rbuf, RBUF_SIZE}};
        int iovcnt = c->stash_cap == c->msg_len ? 2 : 1;
        c->roff = c->rlen = 0;
        rc = rx(c, iov, iovcnt, deadline, nowait, &n);
        if (rc != 0)
            return rx_failed(c, rc, true);
        if (n <= iov[0].iov_len) {
            c->stash_have += n;
        } else {
            c->rlen = n - iov[0].iov_len;
            c->stash_have += iov[0].iov_len;
        }
    }
    return 0;
}

static int rx_failed(lsec_channel *c, int rc, bool mid_message)
{
    if (rc == LSEC_ETIMEDOUT || rc == LSEC_EAGAIN)
        return rc;
    if (rc == LSEC_ECLOSED && mid_message)
        return broken(c, LSEC_ERESET,
                      "the peer vanished in the middle of a message");
    if (rc == LSEC_ECLOSED) {
        c->rx_closed = true;
        lsec__log(LSEC_LOG_DEBUG,
                  "channel to port %u: the peer closed its side",
                  c->remote.port);
        return lsec__fail(LSEC_ECLOSED, "the peer closed the channel");
    }
    return sticky(c, rc);
}

/* Make the next message's length known (c->msg_len), reading the socket as
 * needed.  0, or what rx_failed makes of a failed read. */
static int rx_header(lsec_channel *c, int64_t deadline, bool nowait)
{
    size_t avail, n;
    int rc;

    if (c->wq_len > 0) {
        /* Opportunistic: a queued request must not wait for its reply. */
        rc = flush_queue(c, deadline, true);
        if (rc != 0 && rc != LSEC_EAGAIN && rc != LSEC_ETIMEDOUT)
            return rc;
    }
    while (!c->have_len) {
        avail = c->rlen - c->roff;
        if (avail >= LSEC__FRAME_HDR) {
            rc = lsec__frame_parse(c->rbuf + c->roff, c->max_message,
                                   &c->msg_len);
            if (rc != 0) {
                (void)sticky(c, rc);
                lsec__log(LSEC_LOG_WARN,
                          "channel to port %u: peer sent an oversized length",
                          c->remote.port);
                return rc;
            }
            c->roff += LSEC__FRAME_HDR;
            c->have_len = true;
            break;
        }
        if (c->roff > 0) {
            memmove(c->rbuf, c->rbuf + c->roff, avail);
            c->roff = 0;
            c->rlen = avail;
        }
        struct iovec iov = {c->rbuf + c->rlen, RBUF_SIZE - c->rlen};
        rc = rx(c, &iov, 1, deadline, nowait, &n);
        if (rc != 0)
            return rx_failed(c, rc, avail > 0);
        c->rlen += n;
    }
    return 0;
}

static int channel_recv(lsec_channel *c, void *buf, size_t cap, size_t *len,
                        int timeout_ms)
{
    uint8_t *dst = buf;
    int64_t deadline;
    bool nowait = timeout_ms == 0;
    size_t have, take, avail, n;
    int rc;

    lsec__clear_detail();
    if (len != NULL)
        *len = 0;
    if (c == NULL || len == NULL || (buf == NULL && cap > 0))
        return lsec__fail(LSEC_EINVAL, "NULL channel, buffer or length");
    if ((rc = lsec__timeout_check(timeout_ms)) != 0)
        return rc;
    if (c->err != 0)
        return lsec__fail(c->err, "the channel is closed or broken");
    if (c->rx_closed)
        return lsec__fail(LSEC_ECLOSED, "the peer closed the channel");
    if (c->fdm != NULL && c->fdm->rx_active)
        return lsec__fail(LSEC_EINVAL, "lsec_recv_to_fd has a message under "
                                       "way: finish it with lsec_recv_to_fd");
    deadline = lsec__deadline(timeout_ms);
    if ((rc = rx_header(c, deadline, nowait)) != 0)
        return rc;

    if (c->msg_len > cap) {
        *len = c->msg_len;
        return lsec__fail(LSEC_EMSGSIZE,
                          "next message is %u bytes; the buffer holds %zu",
                          c->msg_len, cap);
    }
    if (c->stash != NULL) {
        /* A message cut by an earlier timeout continues in the stash and
         * is copied out once, whole. */
        if ((rc = stash_fill(c, deadline, nowait)) != 0)
            return rc;
        if (c->msg_len > 0)
            memcpy(dst, c->stash, c->msg_len);
        stash_free(c);
        c->have_len = false;
        *len = c->msg_len;
        return 0;
    }
    have = 0;
    avail = c->rlen - c->roff;
    take = avail < c->msg_len - have ? avail : c->msg_len - have;
    if (take > 0)
        memcpy(dst + have, c->rbuf + c->roff, take);
    c->roff += take;
    have += take;
    while (have < c->msg_len) {
        /* The read-ahead buffer is empty here: read the payload straight
         * into the caller's buffer and catch what follows behind it. */
        struct iovec iov[2] = {{dst + have, c->msg_len - have},
                               {c->rbuf, RBUF_SIZE}};
        c->roff = c->rlen = 0;
        rc = rx(c, iov, 2, deadline, nowait, &n);
        if (rc != 0) {
            rc = rx_failed(c, rc, true);
            if (rc == LSEC_ETIMEDOUT || rc == LSEC_EAGAIN)
                return stash_partial(c, dst, have, rc);
            return rc;
        }
        if (n <= c->msg_len - have) {
            have += n;
        } else {
            c->rlen = n - (c->msg_len - have);
            have = c->msg_len;
        }
    }
    c->have_len = false;
    *len = c->msg_len;
    return 0;
}

int lsec_channel_fd(const lsec_channel *c)
{
    if (c == NULL)
        return LSEC_EINVAL;
    return c->fd;
}

size_t lsec_channel_pending(const lsec_channel *c)
{
    size_t held;

    if (c == NULL)
        return 0;
    if (c->fdm != NULL && c->fdm->rx_active) {
        /* A message under way to a descriptor: what is held for it waits
         * for that descriptor, not for the socket. */
        const uint8_t *p;
        return c->fdm->rx_piped + lsec__channel_rx_held(c, &p);
    }
    /* Callers poll with "pending > 0 ? do not wait : wait for the socket"
     * (lsec_channel_fd).  Bytes that cannot make a message by themselves,
     * part of a header or the start of a payload whose rest is still on
     * its way, need the socket: counting them would make such a loop spin
     * until the peer sends more. */
    held = c->rlen - c->roff;
    if (!c->have_len ? held < LSEC__FRAME_HDR
                     : c->stash_have + held < c->msg_len)
        held = 0;
    else
        held += c->stash_have;
    return held + (c->tls != NULL ? lsec__tls_pending(c->tls) : 0);
}

int lsec_channel_mode(const lsec_channel *c)
{
    if (c == NULL)
        return LSEC_EINVAL;
    return c->mode;
}

int lsec_channel_peer(const lsec_channel *c, lsec_peer *out)
{
    int64_t uid = -1;
    int32_t pid = -1;

    lsec__clear_detail();
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (c == NULL || out == NULL)
        return lsec__fail(LSEC_EINVAL, "NULL channel or output");
    /* The uid was established when the channel was made; the pid is looked
     * up now, as it is costly and rarely needed. */
    if (lsec__peer_lookup(&c->local, &c->remote, true, &uid, &pid) != 0)
        pid = -1;
    out->uid = c->peer_uid;
    out->pid = pid;
    out->port = c->remote.port;
    out->local_port = c->local.port;
    lsec__clear_detail();
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Abort: the one call another thread (or a signal handler) may make         */

static bool is_aborted(const lsec_channel *c)
{
    return __atomic_load_n(&c->aborted, __ATOMIC_ACQUIRE) != 0;
}

/* After a call on an aborted channel: LSEC_ECLOSED, for good. */
static int end_aborted(lsec_channel *c, int rc)
{
    if (c == NULL || !is_aborted(c) || rc == 0)
        return rc;
    (void)sticky(c, LSEC_ECLOSED);
    return lsec__fail(LSEC_ECLOSED, "the channel was aborted");
}

void lsec_channel_abort(lsec_channel *c)
{
    /* Async-signal-safe: a lock-free atomic store and shutdown(2), nothing
     * else (no detail, no log, no allocation).  The descriptor stays open
     * until the owner calls lsec_channel_close, so it cannot have been
     * reused for another file. */
    if (c == NULL)
        return;
    __atomic_store_n(&c->aborted, 1, __ATOMIC_RELEASE);
    (void)shutdown(c->fd, SHUT_RDWR);
}

int lsec_send(lsec_channel *c, const void *msg, size_t len, int timeout_ms)
{
    if (c != NULL && is_aborted(c))
        return end_aborted(c, LSEC_ECLOSED);
    return end_aborted(c, channel_send(c, msg, len, timeout_ms));
}

int lsec_flush(lsec_channel *c, int timeout_ms)
{
    if (c != NULL && is_aborted(c))
        return end_aborted(c, LSEC_ECLOSED);
    return end_aborted(c, channel_flush(c, timeout_ms));
}

int lsec_recv(lsec_channel *c, void *buf, size_t cap, size_t *len,
              int timeout_ms)
{
    if (c != NULL && is_aborted(c)) {
        if (len != NULL)
            *len = 0;
        return end_aborted(c, LSEC_ECLOSED);
    }
    return end_aborted(c, channel_recv(c, buf, cap, len, timeout_ms));
}

size_t lsec_channel_queued(const lsec_channel *c)
{
    return c != NULL ? c->wq_len - c->wq_off : 0;
}

void lsec_channel_close(lsec_channel *c)
{
    if (c == NULL)
        return;
    /* Aborted: nothing more goes out, nothing is drained. */
    if (is_aborted(c) && c->err == 0)
        (void)sticky(c, LSEC_ECLOSED);
    if (c->wq_len > 0 && c->err == 0)
        (void)flush_queue(c, lsec__deadline(CLOSE_FLUSH_MS), false);
    if (c->tls != NULL) {
        if (c->err == 0 && !c->tx_closed)
            lsec__tls_shutdown(c->tls);
        lsec__tls_free(c->tls);
    }
    /* Unread bytes in the kernel's receive queue would turn close() into a
     * reset that can discard what we sent last: drain them first. */
    if (c->err == 0) {
        uint8_t sink[1024];
        int guard = 64;
        while (guard-- > 0 &&
               lsec__io.recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
            ;
    }
    close(c->fd);
    lsec__fdmove_free(c->fdm);
    lsec__wipe(c->rbuf, sizeof(c->rbuf));
    stash_free(c);
    wq_free(c);
    free(c);
}

/* ------------------------------------------------------------------------ */
/* What lsec_send_from_fd / lsec_recv_to_fd (fdmove.c) build on              */

bool lsec__channel_aborted(const lsec_channel *c)
{
    return is_aborted(c);
}

int lsec__channel_fd_end(lsec_channel *c, int rc)
{
    return end_aborted(c, rc);
}

int lsec__channel_fd_begin(lsec_channel *c, bool sending, lsec__fdmove **m,
                           int *sock)
{
    if (c->err != 0)
        return lsec__fail(c->err, "the channel is closed or broken");
    if (c->tls != NULL)
        return lsec__fail(LSEC_EMODE, "a tls channel cannot splice: use "
                                      "lsec_send and lsec_recv");
    if (sending && c->tx_closed)
        return lsec__fail(LSEC_EINVAL, "the sending direction was shut down");
    if (!sending && c->rx_closed)
        return lsec__fail(LSEC_ECLOSED, "the peer closed the channel");
    if (c->fdm == NULL) {
        c->fdm = calloc(1, sizeof(*c->fdm));
        if (c->fdm == NULL)
            return lsec__fail(LSEC_ENOMEM, "out of memory");
        c->fdm->tx[0] = c->fdm->tx[1] = c->fdm->rx[0] = c->fdm->rx[1] = -1;
    }
    *m = c->fdm;
    *sock = c->fd;
    return 0;
}

int lsec__channel_break(lsec_channel *c, int code, const char *why)
{
    return broken(c, code, why);
}

int lsec__channel_queue(lsec_channel *c, uint8_t *q, size_t len)
{
    if (c->wq_len > 0)
        return LSEC_EINVAL;
    c->wq = q;
    c->wq_off = 0;
    c->wq_len = len;
    return 0;
}

int lsec__channel_rx_next(lsec_channel *c, int64_t deadline, bool nowait,
                          uint32_t *len)
{
    int rc = rx_header(c, deadline, nowait);
    *len = rc == 0 ? c->msg_len - c->msg_done : 0;
    return rc;
}

size_t lsec__channel_rx_held(const lsec_channel *c, const uint8_t **p)
{
    size_t avail, left;

    *p = NULL;
    if (!c->have_len)
        return 0;
    /* A stash holds the message's first stash_have bytes; the read-ahead
     * buffer what follows them. */
    if (c->msg_done < c->stash_have) {
        *p = c->stash + c->msg_done;
        return c->stash_have - c->msg_done;
    }
    avail = c->rlen - c->roff;
    left = c->msg_len - c->msg_done;
    *p = c->rbuf + c->roff;
    return avail < left ? avail : left;
}

uint32_t lsec__channel_rx_take(lsec_channel *c, size_t n)
{
    if (c->msg_done >= c->stash_have) {
        size_t avail = c->rlen - c->roff;
        c->roff += n < avail ? n : avail;
    }
    c->msg_done += (uint32_t)n;
    if (c->msg_done < c->msg_len)
        return c->msg_len - c->msg_done;
    stash_free(c);
    c->have_len = false;
    c->msg_done = 0;
    return 0;
}
