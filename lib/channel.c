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
#include "channel.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* How long lsec_channel_close may spend flushing what lsec_send queued. */
#define CLOSE_FLUSH_MS 2000

/* ------------------------------------------------------------------------ */
/* Public channel calls                                                      */

/* A call's deadline.  A zero timeout never waits, so its deadline is one
 * that has passed, 0, without a clock read: event loops make such calls
 * for every message.  call_begin has refused timeouts below -1. */
static int64_t call_deadline(int timeout_ms)
{
    if (timeout_ms == 0)
        return 0;
    return timeout_ms < 0 ? INT64_MAX /* -1: never, as lsec__deadline says */
                          : lsec__deadline(timeout_ms);
}

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

/* How every data call begins: a fresh detail, its arguments (`args_ok`,
 * else `bad` says which), the timeout, the channel's state; a send also
 * needs our direction open. */
static inline int call_begin(const lsec_channel *c, bool args_ok,
                             const char *bad, int timeout_ms, bool sending)
{
    lsec__clear_detail();
    if (c == NULL || !args_ok)
        return lsec__fail(LSEC_EINVAL, "NULL %s", bad);
    if (timeout_ms < -1) /* the detail is lsec__timeout_check's */
        return lsec__timeout_check(timeout_ms);
    if (c->err != 0)
        return lsec__fail(c->err, "the channel is closed or broken");
    if (sending && c->tx_closed)
        return lsec__fail(LSEC_EINVAL, "the sending direction was shut down");
    return 0;
}

static int channel_send(lsec_channel *c, const void *msg, size_t len,
                        int timeout_ms)
{
    uint8_t hdr[LSEC__FRAME_HDR];
    int64_t deadline;
    bool nowait = timeout_ms == 0;
    int rc;

    rc = call_begin(c, msg != NULL || len == 0, "channel or message",
                    timeout_ms, true);
    if (rc != 0)
        return rc;
    struct iovec iov2[2];
    int iovcnt = lsec__frame_plan_send(hdr, msg, len, iov2);
    if (iovcnt < 0)
        return iovcnt;
    deadline = call_deadline(timeout_ms);
    if (c->wq_len > 0 &&
        (rc = lsec__chan_flush_queue(c, deadline, nowait)) != 0)
        return rc;
    c->sent_last = true;
    if (c->tls == NULL) /* header and payload in one system call */
        return lsec__chan_tx_frame(c, iov2, iovcnt, deadline, nowait);

    /* TLS: the first record carries the header and just enough of the
     * payload that the rest is whole records sent straight from the
     * caller's buffer: no more records than needed, and for a 64 KiB
     * message 4 bytes of plaintext copied (and wiped) instead of 16 KiB. */
    uint8_t first[LSEC__TLS_PLAIN_MAX + LSEC__FRAME_HDR];
    size_t head = lsec__frame_tls_head(len);
    memcpy(first, hdr, sizeof(hdr));
    if (head > 0)
        memcpy(first + sizeof(hdr), msg, head);
    /* Nothing is handed to TLS before the socket can take it, so that a
     * timeout before the first byte leaves the channel untouched (-1 never
     * times out: nothing to protect, no poll). */
    if (timeout_ms >= 0) {
        rc = lsec__wait_fd(c->fd, POLLOUT, deadline, nowait);
        if (rc != 0)
            goto done; /* `first` holds plaintext: wiped there */
    }
    /* From here on the message has started: tx_all queues what the
     * deadline leaves unwritten and returns 0. */
    struct iovec iov = {first, sizeof(hdr) + head};
    rc = lsec__chan_tx_all(c, &iov, 1, deadline, false);
    if (rc != 0 || head == len)
        goto done;
    if (c->wq_len > 0) {
        /* The first record is queued: queue the rest behind it. */
        struct iovec tail = {(uint8_t *)msg + head, len - head};
        rc = lsec__chan_queue_iov(c, &tail, 1);
        goto done;
    }
    iov.iov_base = (uint8_t *)msg + head;
    iov.iov_len = len - head;
    rc = lsec__chan_tx_all(c, &iov, 1, deadline, false);
done:
    lsec__wipe(first, sizeof(hdr) + head);
    return rc;
}

/* Messages per sendmsg in lsec_sendv: two iovecs each, within IOV_MAX. */
#define SENDV_BATCH 256

/* Frame one message into the send queue (after it, nothing may time out). */
static int queue_message(lsec_channel *c, const lsec_iov *m)
{
    uint8_t hdr[LSEC__FRAME_HDR];
    struct iovec iov[2];
    int iovcnt = lsec__frame_plan_send(hdr, m->base, m->len, iov);
    return iovcnt < 0 ? iovcnt : lsec__chan_queue_iov(c, iov, iovcnt);
}

/* TLS: one message after the other (records are per message anyway); once
 * the first has started, what the deadline leaves is queued. */
static int sendv_tls(lsec_channel *c, const lsec_iov *msgs, size_t n,
                     int timeout_ms)
{
    int64_t deadline = lsec__deadline(timeout_ms);
    int rc = channel_send(c, msgs[0].base, msgs[0].len, timeout_ms);

    for (size_t i = 1; rc == 0 && i < n; i++) {
        if (c->wq_len == 0) {
            rc = channel_send(c, msgs[i].base, msgs[i].len,
                              lsec__remaining(deadline));
            if (rc != LSEC_ETIMEDOUT && rc != LSEC_EAGAIN)
                continue;
        }
        rc = queue_message(c, &msgs[i]);
    }
    return rc;
}

/* Every message is checked before the first byte goes out. */
static int check_msgs(const lsec_iov *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].base == NULL && msgs[i].len > 0)
            return lsec__fail(LSEC_EINVAL, "message %zu is NULL", i);
        if (msgs[i].len > UINT32_MAX)
            return lsec__fail(LSEC_EMSGSIZE,
                              "message %zu of %zu bytes exceeds 4 GiB", i,
                              msgs[i].len);
    }
    return 0;
}

static int channel_sendv(lsec_channel *c, const lsec_iov *msgs, size_t n,
                         int timeout_ms)
{
    uint8_t hdr[SENDV_BATCH][LSEC__FRAME_HDR];
    struct iovec iov[2 * SENDV_BATCH];
    bool nowait = timeout_ms == 0;
    int64_t deadline;
    int rc;

    rc = call_begin(c, msgs != NULL || n == 0, "channel or messages",
                    timeout_ms, true);
    if (rc != 0)
        return rc;
    if ((rc = check_msgs(msgs, n)) != 0)
        return rc;
    if (n == 0)
        return 0;
    if (c->tls != NULL)
        return sendv_tls(c, msgs, n, timeout_ms);
    deadline = lsec__deadline(timeout_ms);
    if (c->wq_len > 0 &&
        (rc = lsec__chan_flush_queue(c, deadline, nowait)) != 0)
        return rc;
    c->sent_last = true;
    for (size_t i = 0; i < n;) {
        size_t k;
        int iovcnt = 0;
        for (k = 0; k < SENDV_BATCH && i + k < n; k++)
            iovcnt += lsec__frame_plan_send(hdr[k], msgs[i + k].base,
                                            msgs[i + k].len, iov + iovcnt);
        if (c->wq_len > 0) {
            rc = lsec__chan_queue_iov(c, iov, iovcnt);
        } else {
            rc = lsec__chan_tx_all(c, iov, iovcnt, deadline, nowait);
            /* Nothing of this batch went out, but an earlier one did: the
             * call has started, so the rest waits in the queue. */
            if ((rc == LSEC_ETIMEDOUT || rc == LSEC_EAGAIN) && i > 0)
                rc = lsec__chan_queue_iov(c, iov, iovcnt);
        }
        if (rc != 0)
            return rc;
        i += k;
    }
    return 0;
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
    return lsec__chan_flush_queue(c, lsec__deadline(timeout_ms),
                                  timeout_ms == 0);
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
    if (c->wq_len > 0 &&
        (rc = lsec__chan_flush_queue(c, deadline, timeout_ms == 0)) != 0)
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
                return lsec__chan_fail(c, rc, NULL);
            return rc;
        }
    }
    if (shutdown(c->fd, SHUT_WR) != 0) {
        if (errno == ENOTCONN)
            return lsec__chan_fail(c, LSEC_ERESET,
                                   "connection lost before shutdown");
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
        return lsec__chan_fail(c, LSEC_ERESET,
                               "the peer vanished in the middle of a message");
    if (rc == LSEC_ECLOSED) {
        c->rx_closed = true;
        lsec__log(LSEC_LOG_DEBUG,
                  "channel to port %u: the peer closed its side",
                  c->remote.port);
        return lsec__fail(LSEC_ECLOSED, "the peer closed the channel");
    }
    return lsec__chan_fail(c, rc, NULL);
}

/* The decoder said no message: an oversized length, or another failure. */
static int rx_decode_failed(lsec_channel *c, int rc)
{
    if (rc == LSEC_EPROTO)
        lsec__log(LSEC_LOG_WARN,
                  "channel to port %u: peer sent an oversized length",
                  c->remote.port);
    return lsec__chan_fail(c, rc, NULL);
}

/* One read where the decoder says (into `dst` inside a payload; with
 * `head_only`, no further than the next header), booked with the decoder:
 * 0, or what rx_failed makes of a failed read. */
static inline int rx_more(lsec_channel *c, uint8_t *dst, bool head_only,
                          int64_t deadline, bool nowait)
{
    struct iovec iov[2];
    size_t n = 0;
    int rc;

    rc = head_only ? lsec__frame_rx_plan_head(&c->rx, iov)
                   : lsec__frame_rx_plan(&c->rx, dst, iov);
    if (rc < 0)
        return lsec__chan_fail(c, rc, NULL);
    rc = lsec__chan_rx(c, iov, rc, deadline, nowait, &n);
    if (rc != 0) {
        if (rc == LSEC_EAGAIN || rc == LSEC_ETIMEDOUT)
            return rc; /* what rx_failed makes of them, without its call */
        return rx_failed(c, rc, lsec__frame_rx_mid(&c->rx));
    }
    lsec__frame_rx_got(&c->rx, n);
    return 0;
}

/* The I/O shell around the decoder (frame.c): decode what is buffered,
 * else read where the decoder says, until a message is whole. */
static int recv_message(lsec_channel *c, uint8_t *dst, size_t cap, size_t *len,
                        int64_t deadline, bool nowait)
{
    /* A decoder that holds nothing has nothing to decode: read first. */
    int rc = lsec__frame_rx_idle(&c->rx)
                 ? LSEC__AGAIN
                 : lsec__frame_rx_next(&c->rx, dst, cap, len);
    for (;;) {
        if (rc == 0 || rc == LSEC_EMSGSIZE)
            return rc;
        if (rc != LSEC__AGAIN)
            return rx_decode_failed(c, rc);
        if ((rc = rx_more(c, dst, false, deadline, nowait)) != 0) {
            /* A timeout inside a message: keep what arrived so the next
             * call resumes. */
            if ((rc == LSEC_ETIMEDOUT || rc == LSEC_EAGAIN) &&
                lsec__frame_rx_cut(&c->rx, dst) != 0)
                return lsec__chan_fail(c, LSEC_ENOMEM, NULL);
            return rc;
        }
        rc = lsec__frame_rx_next(&c->rx, dst, cap, len);
    }
}

static int channel_recv(lsec_channel *c, void *buf, size_t cap, size_t *len,
                        int timeout_ms)
{
    int64_t deadline;
    int rc;

    if (len != NULL)
        *len = 0;
    rc = call_begin(c, len != NULL && (buf != NULL || cap == 0),
                    "channel, buffer or length", timeout_ms, false);
    if (rc != 0)
        return rc;
    if (c->rx_closed)
        return lsec__fail(LSEC_ECLOSED, "the peer closed the channel");
    if (c->fdm != NULL && c->fdm->rx_active)
        return lsec__fail(LSEC_EINVAL, "lsec_recv_to_fd has a message under "
                                       "way: finish it with lsec_recv_to_fd");
    deadline = call_deadline(timeout_ms);
    if (c->wq_len > 0) {
        /* Opportunistic: a queued request must not wait for its reply. */
        rc = lsec__chan_flush_queue(c, deadline, true);
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
    if (c->fdm != NULL && c->fdm->rx_active) {
        /* A message under way to a descriptor: what is held for it waits
         * for that descriptor, not for the socket. */
        const uint8_t *p;
        return c->fdm->rx_piped + lsec__frame_rx_held(&c->rx, &p);
    }
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
    (void)lsec__chan_fail(c, LSEC_ECLOSED, NULL);
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

int lsec_sendv(lsec_channel *c, const lsec_iov *msgs, size_t n, int timeout_ms)
{
    if (c != NULL && is_aborted(c))
        return end_aborted(c, LSEC_ECLOSED);
    return end_aborted(c, channel_sendv(c, msgs, n, timeout_ms));
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
        (void)lsec__chan_fail(c, LSEC_ECLOSED, NULL);
    if (c->wq_len > 0 && c->err == 0)
        (void)lsec__chan_flush_queue(c, lsec__deadline(CLOSE_FLUSH_MS), false);
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
    lsec__frame_rx_free(&c->rx);
    lsec__chan_queue_free(c);
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
    return lsec__chan_fail(c, code, why);
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
    size_t left = 0;

    *len = 0;
    for (;;) {
        int rc = lsec__frame_rx_head(&c->rx, &left);
        if (rc == 0) {
            *len = (uint32_t)left;
            return 0;
        }
        if (rc != LSEC__AGAIN)
            return rx_decode_failed(c, rc);
        /* The header alone: the payload is spliced, not copied. */
        if ((rc = rx_more(c, NULL, true, deadline, nowait)) != 0) {
            lsec__frame_rx_release(&c->rx);
            return rc;
        }
    }
}

uint32_t lsec__channel_rx_take(lsec_channel *c, size_t n)
{
    uint32_t left = (uint32_t)lsec__frame_rx_take(&c->rx, n);

    lsec__frame_rx_release(&c->rx);
    return left;
}

size_t lsec__channel_rx_held(const lsec_channel *c, const uint8_t **p)
{
    return lsec__frame_rx_held(&c->rx, p);
}
