/*
 * TLS mode, the I/O shell: moves ciphertext between the socket and the
 * engine's buffers (tls_engine.h) through the seam, lsec__io, and runs the
 * engine (tls.c) over what arrived.  No OpenSSL here.
 *
 * Reads: one recv takes as much as the socket holds (up to IN_CAP) into
 * the engine's `in`, many records at once; OpenSSL decrypts every whole one
 * from there into the caller's buffer while it has room, without another
 * system call.  Writes: every record of one
 * write goes out in one send from `out`.  Every send uses MSG_NOSIGNAL (a
 * peer that vanished gives EPIPE, never SIGPIPE) and every call
 * MSG_DONTWAIT: nothing here blocks, on blocking descriptors too; callers
 * wait with poll for the LSEC__WANT_* they are given.  Only the two calls
 * with a deadline, lsec__tls_close_notify and lsec__tls_shutdown, wait.
 */
#include "tls_engine.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>

/* One recv after the handshake reads at most IN_CAP: a 64 KiB message's
 * records at once.  The buffer starts at IN_START and doubles each time a
 * recv fills it, so a connection of small messages never holds more. */
#define IN_CAP (72 * 1024)
#define IN_START 4096
/* One recv during the handshake: every handshake message of ours fits, and
 * a pending handshake that waits for its peer holds no buffer at all. */
#define IN_CAP_HS 4096
/* Plaintext encrypted per write: four full records, sent in one call. */
#define WRITE_MAX (4 * 16384)
/* What TLS 1.3 adds to each record here: header, content type, AEAD tag. */
#define RECORD_OVERHEAD (5 + 1 + 16)
/* Engine runs per call, each after new input: a bound, not a limit (a
 * caller whose socket still has bytes is woken again at once). */
#define STEPS_MAX 64
/* How long lsec__tls_shutdown waits for room for its close_notify. */
#define SHUTDOWN_WAIT_MS 500

/* Send what `out` holds.  0 when it is empty, LSEC__WANT_WRITE, or the
 * sticky error (a connection that already failed: its code, no new one). */
static int push(lsec__tls *t)
{
    while (t->out.off < t->out.len) {
        ssize_t n =
            lsec__io.send(t->fd, t->out.b + t->out.off, t->out.len - t->out.off,
                          MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            t->out.off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK)
            return LSEC__WANT_WRITE;
        if (t->fatal != 0)
            return t->fatal;
        t->sys_errno = errno;
        return lsec__tlse_send_failed(t);
    }
    return 0;
}

/* Let go of an empty `in`: an IN_START block becomes the thread's spare
 * (spare.c: a connection that keeps up empties `in` on every read, and
 * pays no malloc/free for it; it only ever holds ciphertext, nothing to
 * wipe), anything else goes to lsec__tlsbuf_trim. */
static void in_release(lsec__tls *t)
{
    lsec__tlsbuf *b = &t->in;

    if (b->off < b->len)
        return;
    if (b->cap == IN_START && b->b != b->fixed &&
        lsec__spare_keep(LSEC__SPARE_TLS_IN, b->b)) {
        b->b = NULL;
        b->cap = b->off = b->len = 0;
        return;
    }
    lsec__tlsbuf_trim(b);
}

/* One recv into `in`.  1: something new for the engine (bytes, the end of
 * the stream, or a failure it classifies: t->eof, t->sys_errno); 0: nothing
 * yet; negative: out of memory. */
static int pull(lsec__tls *t)
{
    size_t room;
    ssize_t n;
    size_t cap = t->done ? t->in_hint : IN_CAP_HS;
    uint8_t *p;

    if (t->in.b == NULL && cap == IN_START &&
        (t->in.b = lsec__spare_take(LSEC__SPARE_TLS_IN)) != NULL) {
        t->in.cap = IN_START;
        t->in.off = t->in.len = 0;
    }
    p = lsec__tlsbuf_room(&t->in, cap, &room);

    if (p == NULL)
        return lsec__fail(LSEC_ENOMEM, "out of memory for TLS records");
    do
        n = lsec__io.recv(t->fd, p, room, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        t->in.len += (size_t)n;
        if ((size_t)n == room && t->done && t->in_hint < IN_CAP)
            t->in_hint = t->in_hint * 2 < IN_CAP ? t->in_hint * 2 : IN_CAP;
        return 1;
    }
    if (n == 0) {
        t->eof = true;
        return 1;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
    t->sys_errno = errno;
    return 1;
}

/* A small buffer is not held by an idle connection (`in` goes to the
 * thread's spare); a large one is kept, while the stream goes one way. */
static void small_trim(lsec__tls *t)
{
    if (t->in.cap <= IN_START)
        in_release(t);
    if (t->out.cap <= IN_START)
        lsec__tlsbuf_trim(&t->out);
}

int lsec__tls_handshake(lsec__tls *t)
{
    bool sent;
    int rc;

    if (t == NULL)
        return lsec__fail(LSEC_EINVAL, "no TLS connection");
    if (t->fatal != 0)
        return lsec__fail(t->fatal, "%s", t->fatal_detail);
    t->sys_errno = 0;
    for (int i = 0; i < STEPS_MAX; i++) {
        /* Our flight goes out before anything else: the peer answers it. */
        if ((rc = push(t)) != 0)
            return rc;
        lsec__tlsbuf_trim(&t->out);
        if (t->done) {
            t->in_hint = IN_START;
            in_release(t);
            return 0;
        }
        rc = lsec__tlse_handshake(t);
        if (rc == 0)
            continue; /* done: our last flight (if any) goes out first */
        if (rc != LSEC__WANT_READ) {
            (void)push(t); /* the alert, best effort */
            return rc;
        }
        /* A flight just sent is answered later, never already: wait for
         * the answer rather than read, fail with EAGAIN and then wait (one
         * system call less per flight). */
        sent = t->out.off < t->out.len;
        if ((rc = push(t)) != 0)
            return rc;
        if (sent || (rc = pull(t)) == 0) {
            /* Waiting for the peer: no buffer held meanwhile. */
            lsec__tlsbuf_trim(&t->out);
            lsec__tlsbuf_trim(&t->in);
            if (t->out.cap == 0 && t->in.cap == 0)
                lsec__tlse_waiting(t);
            return LSEC__WANT_READ;
        }
        if (rc < 0)
            return rc;
    }
    return LSEC__WANT_READ;
}

int lsec__tls_read(lsec__tls *t, void *buf, size_t len, size_t *n)
{
    int rc = lsec__tlse_io_check(t, buf, len, n);

    if (rc != 0)
        return rc;
    t->sys_errno = 0;
    /* Buffers are kept while a connection goes one way (no allocation per
     * call in a stream) and freed when it turns: an idle connection holds
     * at most the one it used last. */
    lsec__tlsbuf_trim(&t->out);
    for (int i = 0; i < STEPS_MAX; i++) {
        /* Nothing buffered: OpenSSL could only fail with WANT_READ (a
         * failed SSL_read costs more than the recv it waits for). */
        if (i > 0 || lsec__tlse_buffered(t))
            rc = lsec__tlse_read(t, buf, len, n);
        else
            rc = LSEC__WANT_READ;
        if (rc != LSEC__WANT_READ)
            break;
        if ((rc = pull(t)) <= 0) {
            rc = rc < 0 ? rc : LSEC__WANT_READ;
            break;
        }
        rc = LSEC__WANT_READ; /* if this was the last step */
    }
    /* What OpenSSL had to answer (an alert, a key update), best effort;
     * a write in progress finds the rest. */
    if (t->out.off < t->out.len)
        (void)push(t);
    small_trim(t);
    return rc;
}

int lsec__tls_write(lsec__tls *t, const void *buf, size_t len, size_t *n)
{
    size_t m = 0;
    int rc = lsec__tlse_io_check(t, buf, len, n);

    if (rc != 0)
        return rc;
    t->sys_errno = 0;
    in_release(t); /* see lsec__tls_read */
    if (t->wr_held > 0) {
        /* The retry of a write that waited: its records are in `out`,
         * nothing is encrypted twice. */
        if (len < t->wr_held)
            return lsec__fail(LSEC_EINVAL, "a TLS write retried shorter");
        if ((rc = push(t)) != 0)
            return rc;
        *n = t->wr_held;
        t->wr_held = 0;
        return 0;
    }
    if ((rc = push(t)) != 0)
        return rc;
    if (len > WRITE_MAX)
        len = WRITE_MAX;
    /* Room for all the records at once: one allocation, not one per
     * record. */
    size_t room;
    if (lsec__tlsbuf_room(&t->out, len + RECORD_OVERHEAD * (len / 16384 + 1),
                          &room) == NULL)
        return lsec__fail(LSEC_ENOMEM, "out of memory for TLS records");
    rc = lsec__tlse_write(t, buf, len, &m);
    if (rc != 0)
        return rc;
    rc = push(t);
    if (rc == 0)
        *n = m;
    else if (rc == LSEC__WANT_WRITE)
        t->wr_held = m;
    small_trim(t);
    return rc;
}

int lsec__tls_close_notify_step(lsec__tls *t)
{
    int rc;

    if (t == NULL || !t->done || t->fatal != 0)
        return lsec__fail(LSEC_EINVAL, "no established TLS connection");
    /* The end goes after every byte a write reported, never after bytes a
     * write still owes its caller (it said WANT_WRITE: they are not sent). */
    if (t->wr_held > 0)
        return lsec__fail(LSEC_EINVAL, "a TLS write is still in progress");
    t->sys_errno = 0;
    if (!t->shut_queued && (rc = lsec__tlse_close(t)) != 0)
        return rc;
    return push(t);
}

int lsec__tls_close_notify(lsec__tls *t, int64_t deadline, bool nowait)
{
    for (int i = 0; i < STEPS_MAX; i++) {
        int rc = lsec__tls_close_notify_step(t);
        if (rc != LSEC__WANT_WRITE)
            return rc;
        if ((rc = lsec__wait_fd(t->fd, POLLOUT, deadline, nowait)) != 0)
            return rc;
    }
    return nowait ? LSEC_EAGAIN : LSEC_ETIMEDOUT;
}

void lsec__tls_shutdown(lsec__tls *t)
{
    /* OpenSSL forbids SSL_shutdown after a fatal error or mid-handshake. */
    if (t == NULL || !t->done || t->fatal != 0)
        return;
    /* Best effort, never waiting for the peer's close_notify; but ours is
     * what tells the peer a clean end from a lost connection, so when the
     * socket is full right now it gets a short, bounded wait for room. */
    (void)lsec__tls_close_notify(t, lsec__deadline(SHUTDOWN_WAIT_MS), false);
}

void lsec__tls_send_mode_alert(int fd)
{
    static const uint8_t alert[] = LSEC__TLS_MODE_ALERT;
    (void)lsec__io.send(fd, alert, sizeof(alert), MSG_NOSIGNAL | MSG_DONTWAIT);
}
