/*
 * Channels: whole messages over an authenticated connection, in order, with
 * timeouts.  The connecting side is connect.c.
 *
 * Sockets are always non-blocking; every wait is a poll() bounded by an
 * absolute deadline, so timeouts never depend on signals and EINTR never
 * stretches them.  Every write uses MSG_NOSIGNAL (or the TLS BIO that does),
 * so the library never raises SIGPIPE.
 *
 * Receive path: the decoder in frame.c says where to read (its read-ahead
 * buffer, or a large payload straight into the caller's buffer with the
 * read-ahead buffer behind it to catch what follows in the same system
 * call); this file reads there and waits.  The read-ahead buffer exists
 * only while it holds bytes.
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
    lsec__frame_rx rx; /* the receive side's decoder and its buffers */
    /* bytes of the framed stream accepted by lsec_send, not yet written */
    uint8_t *wq;
    size_t wq_off, wq_len;
    bool sent_last; /* the last call was lsec_send: no answer is here yet */
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
    if (early_len > LSEC__FRAME_RA) {
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
    lsec__frame_rx_init(&c->rx, o->max_message);
    if (lsec__frame_rx_feed(&c->rx, early, early_len) != 0) {
        close(fd);
        if (tls != NULL)
            lsec__tls_free(tls);
        free(c);
        return LSEC_ENOMEM;
    }
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
    struct iovec iov2[2];
    int iovcnt = lsec__frame_plan_send(hdr, msg, len, iov2);
    if (iovcnt < 0)
        return iovcnt;
    deadline = lsec__deadline(timeout_ms);
    if (c->wq_len > 0 && (rc = flush_queue(c, deadline, nowait)) != 0)
        return rc;
    c->sent_last = true;

    if (c->tls == NULL) {
        /* One sendmsg carries header and payload: one segment for small
         * messages under TCP_NODELAY, no copy for large ones. */
        return tx_all(c, iov2, iovcnt, deadline, nowait);
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

/* The I/O shell around the decoder (frame.c): decode what is buffered,
 * else read where the decoder says, until a message is whole. */
static int recv_message(lsec_channel *c, uint8_t *dst, size_t cap, size_t *len,
                        int64_t deadline, bool nowait)
{
    for (;;) {
        struct iovec iov[2];
        size_t n = 0;
        int rc = lsec__frame_rx_next(&c->rx, dst, cap, len);
        if (rc == 0 || rc == LSEC_EMSGSIZE)
            return rc;
        if (rc == LSEC_EPROTO) {
            lsec__log(LSEC_LOG_WARN,
                      "channel to port %u: peer sent an oversized length",
                      c->remote.port);
            return sticky(c, rc);
        }
        if (rc != LSEC__AGAIN)
            return sticky(c, rc);
        if ((rc = lsec__frame_rx_plan(&c->rx, dst, iov)) < 0)
            return sticky(c, rc);
        rc = rx(c, iov, rc, deadline, nowait, &n);
        if (rc != 0) {
            rc = rx_failed(c, rc, lsec__frame_rx_mid(&c->rx));
            /* A timeout inside a message: keep what arrived so the next
             * call resumes. */
            if ((rc == LSEC_ETIMEDOUT || rc == LSEC_EAGAIN) &&
                lsec__frame_rx_cut(&c->rx, dst) != 0)
                return sticky(c, LSEC_ENOMEM);
            return rc;
        }
        lsec__frame_rx_got(&c->rx, n);
    }
}

static int channel_recv(lsec_channel *c, void *buf, size_t cap, size_t *len,
                        int timeout_ms)
{
    int64_t deadline;
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
    deadline = lsec__deadline(timeout_ms);
    if (c->wq_len > 0) {
        /* Opportunistic: a queued request must not wait for its reply. */
        rc = flush_queue(c, deadline, true);
        if (rc != 0 && rc != LSEC_EAGAIN && rc != LSEC_ETIMEDOUT)
            return rc;
    }
    rc = recv_message(c, buf, cap, len, deadline, timeout_ms == 0);
    /* An idle channel keeps no read buffer. */
    lsec__frame_rx_release(&c->rx);
    return rc;
}

int lsec_channel_fd(const lsec_channel *c)
{
    if (c == NULL)
        return LSEC_EINVAL;
    return c->fd;
}

size_t lsec_channel_pending(const lsec_channel *c)
{
    if (c == NULL)
        return 0;
    /* Callers poll with "pending > 0 ? do not wait : wait for the socket"
     * (lsec_channel_fd): the decoder counts only bytes that make a message
     * (or an error) without the socket. */
    return lsec__frame_rx_pending(&c->rx) +
           (c->tls != NULL ? lsec__tls_pending(c->tls) : 0);
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
    lsec__frame_rx_free(&c->rx);
    wq_free(c);
    free(c);
}
