/*
 * The channel's transport: one read or write on the socket or through TLS,
 * waiting with poll() until a deadline, the send queue (what a deadline
 * left of a started message), and the one way a channel records a sticky
 * failure.  channel.c decides what to read and write; this file moves it.
 */
#include "channel.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

int lsec__chan_fail(lsec_channel *c, int code, const char *why)
{
    c->err = code;
    if (why == NULL)
        return code;
    lsec__log(LSEC_LOG_INFO, "channel to port %u: %s", c->remote.port, why);
    return lsec__fail(code, "%s", why);
}

/* One TLS read into iov[0], waiting as TLS asks until the deadline. */
static int rx_tls(lsec_channel *c, struct iovec *iov, int64_t deadline,
                  bool nowait, size_t *n)
{
    for (;;) {
        int rc = lsec__tls_read(c->tls, iov[0].iov_base, iov[0].iov_len, n);
        if (rc == 0)
            return 0;
        /* With a timeout of 0, a read that would block is the answer: no
         * poll(0) to learn it again. */
        if (rc == LSEC__WANT_READ && nowait)
            return LSEC_EAGAIN;
        if (rc != LSEC__WANT_READ && rc != LSEC__WANT_WRITE)
            return rc;
        rc = lsec__wait_fd(c->fd, lsec__want_events(rc), deadline, nowait);
        if (rc != 0)
            return rc;
    }
}

/* One read into iov, waiting for readability until the deadline.  One
 * buffer (the read-ahead buffer alone: every read of a stream of small
 * messages) is a recv, which the kernel takes for less than a recvmsg: no
 * msghdr or iovec array to copy in (a failed one costs 20 % less). */
static int rx_plain(lsec_channel *c, struct iovec *iov, int iovcnt,
                    int64_t deadline, bool nowait, size_t *n)
{
    struct msghdr mh;

    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = iov;
    mh.msg_iovlen = (size_t)iovcnt;
    for (;;) {
        ssize_t got = iovcnt == 1 ? lsec__io.recv(c->fd, iov[0].iov_base,
                                                  iov[0].iov_len, MSG_DONTWAIT)
                                  : lsec__io.recvmsg(c->fd, &mh, MSG_DONTWAIT);
        if (got > 0) {
            *n = (size_t)got;
            return 0;
        }
        if (got == 0)
            return LSEC_ECLOSED;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            break;
        if (nowait)
            return LSEC_EAGAIN;
        int rc = lsec__wait_fd(c->fd, POLLIN, deadline, nowait);
        if (rc != 0)
            return rc;
    }
    if (errno == ECONNRESET || errno == EPIPE || errno == ETIMEDOUT)
        return lsec__fail_errno(LSEC_ERESET, errno, "connection lost");
    return lsec__fail_errno(LSEC_EIO, errno, "recv");
}

int lsec__chan_rx(lsec_channel *c, struct iovec *iov, int iovcnt,
                  int64_t deadline, bool nowait, size_t *n)
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
    if (c->tls != NULL)
        return rx_tls(c, iov, deadline, nowait, n);
    return rx_plain(c, iov, iovcnt, deadline, nowait, n);
}

/*
 * Write some of iov (TLS: iov[0] only) without waiting.  0 with *n > 0,
 * LSEC__WANT_READ/WRITE when the transport must wait, or an error.  One
 * buffer goes out with send (cheaper in the kernel than sendmsg, as recv is
 * than recvmsg), more with one sendmsg.
 */
static inline int tx_once(lsec_channel *c, struct iovec *iov, int iovcnt,
                          size_t *n)
{
    for (;;) {
        if (c->tls != NULL) {
            int rc =
                lsec__tls_write(c->tls, iov[0].iov_base, iov[0].iov_len, n);
            return rc;
        }
        ssize_t put;
        if (iovcnt == 1) {
            put = lsec__io.send(c->fd, iov[0].iov_base, iov[0].iov_len,
                                MSG_NOSIGNAL | MSG_DONTWAIT);
        } else {
            struct msghdr mh;
            memset(&mh, 0, sizeof(mh));
            mh.msg_iov = iov;
            mh.msg_iovlen = (size_t)iovcnt;
            put = lsec__io.sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
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
    if (i == *iovcnt && n == 0) { /* all of it: the common case */
        *iovcnt = 0;
        return;
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

void lsec__chan_queue_free(lsec_channel *c)
{
    if (c->wq != NULL) {
        lsec__wipe(c->wq, c->wq_len);
        free(c->wq);
    }
    c->wq = NULL;
    c->wq_off = c->wq_len = 0;
}

int lsec__chan_flush_queue(lsec_channel *c, int64_t deadline, bool nowait)
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
        return lsec__chan_fail(c, rc,
                               rc == LSEC_ERESET
                                   ? "connection lost while sending"
                                   : "send failed");
    }
    lsec__chan_queue_free(c);
    return 0;
}

/* The write loop of lsec__chan_tx_all, from the result of its first
 * tx_once (rc, and n bytes written). */
static int tx_loop(lsec_channel *c, struct iovec *iov, int iovcnt,
                   int64_t deadline, bool nowait, int rc, size_t n)
{
    bool started = false;
    for (;;) {
        if (rc == 0) {
            started = true;
            iov_advance(iov, &iovcnt, n);
            if (iovcnt == 0)
                return 0;
        } else if (rc == LSEC__WANT_READ || rc == LSEC__WANT_WRITE) {
            /* TLS may have taken bytes into a record even when it asks us to
             * wait; from the first call on, the message counts as started. */
            if (c->tls != NULL)
                started = true;
            rc = lsec__wait_fd(c->fd, lsec__want_events(rc), deadline, nowait);
            if (rc == LSEC_ETIMEDOUT || rc == LSEC_EAGAIN) {
                if (!started)
                    return rc;
                return lsec__chan_queue_iov(c, iov, iovcnt);
            }
            if (rc != 0)
                return rc;
        } else {
            return lsec__chan_fail(c, rc,
                                   rc == LSEC_ERESET
                                       ? "connection lost while sending"
                                       : "send failed");
        }
        n = 0;
        rc = tx_once(c, iov, iovcnt, &n);
    }
}

int lsec__chan_tx_all(lsec_channel *c, struct iovec *iov, int iovcnt,
                      int64_t deadline, bool nowait)
{
    size_t n = 0;

    if (iovcnt == 0)
        return 0;
    int rc = tx_once(c, iov, iovcnt, &n);
    return tx_loop(c, iov, iovcnt, deadline, nowait, rc, n);
}

/* Auth mode: a payload up to this size is copied behind its header and
 * leaves in one send (the copy and its wipe cost less than what sendmsg
 * adds in the kernel); a larger one goes from the caller's buffer. */
#define SEND_FLAT_MAX 1024

int lsec__chan_tx_frame(lsec_channel *c, struct iovec plan[2], int iovcnt,
                        int64_t deadline, bool nowait)
{
    uint8_t flat[LSEC__FRAME_HDR + SEND_FLAT_MAX];
    size_t len = iovcnt > 1 ? plan[1].iov_len : 0;
    int rc;

    if (len > SEND_FLAT_MAX)
        return lsec__chan_tx_all(c, plan, iovcnt, deadline, nowait);
    memcpy(flat, plan[0].iov_base, LSEC__FRAME_HDR);
    if (len > 0)
        memcpy(flat + LSEC__FRAME_HDR, plan[1].iov_base, len);
    struct iovec one = {flat, LSEC__FRAME_HDR + len};
    size_t n = 0;
    /* Almost always the socket takes the frame whole: done without the
     * loop, which takes over (as lsec__chan_tx_all) otherwise. */
    rc = tx_once(c, &one, 1, &n);
    if (rc != 0 || n < one.iov_len)
        rc = tx_loop(c, &one, 1, deadline, nowait, rc, n);
    /* Plaintext: wiped (what tx_all could not write, it queued a copy of). */
    lsec__wipe(flat, LSEC__FRAME_HDR + len);
    return rc;
}

int lsec__chan_queue_iov(lsec_channel *c, const struct iovec *iov, int iovcnt)
{
    size_t keep = c->wq_len - c->wq_off, total = keep, off;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > SIZE_MAX - total)
            return lsec__chan_fail(c, LSEC_ENOMEM,
                                   "out of memory queueing a message");
        total += iov[i].iov_len;
    }
    /* Not realloc: the old block is wiped before it is freed. */
    uint8_t *q = malloc(total > 0 ? total : 1);
    if (q == NULL)
        return lsec__chan_fail(c, LSEC_ENOMEM,
                               "out of memory queueing a message");
    if (keep > 0)
        memcpy(q, c->wq + c->wq_off, keep);
    off = keep;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > 0)
            memcpy(q + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    lsec__chan_queue_free(c);
    c->wq = q;
    c->wq_off = 0;
    c->wq_len = total;
    return 0;
}
