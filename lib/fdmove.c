/*
 * Messages from and to descriptors without copying them through user space
 * (lsec_send_from_fd, lsec_recv_to_fd): auth mode only.
 *
 * Sending: the bytes go descriptor -> pipe -> socket by splice, so the
 * kernel hands page references along instead of copying; only the 4-byte
 * length prefix is written from here, between the two moves, once the
 * pipe says how long the message is.  Receiving: whatever of the message
 * the channel already holds in memory (its read-ahead buffer, a stash) is
 * written first, then the rest goes socket -> pipe -> descriptor.
 *
 * Each direction has its own pipe, made on first use and kept in the
 * channel (lsec__fdmove).  The send pipe is empty between calls: when the
 * socket does not take a started message in time, the rest is read out of
 * the pipe into the channel's send queue, as lsec_send queues the rest of
 * a message.  The receive pipe may hold bytes between calls, when the
 * descriptor does not take them: they are the next ones written, and
 * lsec_channel_pending counts them.
 *
 * Waits poll the descriptor together with the socket, so that
 * lsec_channel_abort (a shutdown of the socket) wakes a call that waits on
 * the descriptor too.
 */
#include "internal.h"
#include "sys.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The pipe size asked for: the most one message of lsec_send_from_fd
 * holds, and what lsec_recv_to_fd moves per splice.  Larger than Linux's
 * default (64 KiB) so that the fixed cost per message (the header, a poll,
 * two splices) spreads over more bytes; the kernel keeps it within the
 * user's pipe-memory limit (fs.pipe-user-pages-soft), past which a pipe
 * keeps the default size, or less. */
#define FDMOVE_PIPE (256u * 1024u)

/*
 * Wait until `fd` is ready for `fdev` and the socket for `sockev` (0: not
 * needed; the socket is polled anyway, for an abort).  0 ready (also on
 * POLLERR/POLLHUP of a needed one: the next call reports it), LSEC_EAGAIN
 * (nowait), LSEC_ETIMEDOUT, LSEC_ECLOSED (aborted), LSEC_EINVAL (`fd` is not
 * open), LSEC_EIO.
 */
static int wait_both(lsec_channel *c, int fd, short fdev, int sock,
                     short sockev, int64_t deadline, bool nowait)
{
    bool fd_ok = fdev == 0, sock_ok = sockev == 0, watch_sock = true;

    for (;;) {
        struct pollfd p[2];
        nfds_t n = 0;
        int left = nowait ? 0 : lsec__remaining(deadline);
        if (!fd_ok) {
            p[n].fd = fd;
            p[n].events = fdev;
            p[n++].revents = 0;
        }
        if (watch_sock) {
            p[n].fd = sock;
            p[n].events = sock_ok ? 0 : sockev;
            p[n++].revents = 0;
        } else {
            /* The socket hangs up for good (both directions ended): it
             * cannot wake us for an abort any more, so look again often. */
            left = lsec__slice(left);
        }
        int r = lsec__io.poll(p, n, left);
        if (lsec__channel_aborted(c))
            return lsec__fail(LSEC_ECLOSED, "the channel was aborted");
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return lsec__fail_errno(LSEC_EIO, errno, "poll");
        }
        for (nfds_t i = 0; i < n && r > 0; i++) {
            if (p[i].revents == 0)
                continue;
            if (p[i].fd == fd && !fd_ok) {
                if (p[i].revents & POLLNVAL)
                    return lsec__fail(LSEC_EINVAL, "descriptor %d is not open",
                                      fd);
                fd_ok = true;
            } else if (p[i].revents & POLLNVAL) {
                return lsec__fail(LSEC_EIO, "the channel's socket is closed");
            } else if (!sock_ok) {
                sock_ok = true;
            } else if (p[i].revents & (POLLHUP | POLLERR)) {
                watch_sock = false;
            }
        }
        if (fd_ok && sock_ok)
            return 0;
        if (r == 0) {
            if (nowait)
                return LSEC_EAGAIN;
            if (lsec__remaining(deadline) == 0)
                return lsec__fail(LSEC_ETIMEDOUT, "timed out");
        }
    }
}

/* A splice on the caller's descriptor failed: what that means for it. */
static int fd_failed(int fd, int e, const char *what)
{
    if (e == EBADF || e == EINVAL || e == ESPIPE)
        return lsec__fail_errno(
            LSEC_EINVAL, e, "descriptor %d cannot be %s by splice", fd, what);
    if (e == ENOSYS)
        return lsec__fail(LSEC_ENOSYS, "no splice on this system");
    return lsec__fail_errno(lsec__sys_code(e, LSEC_EIO), e,
                            "splice on descriptor %d", fd);
}

static int make_pipe(int p[2], size_t *cap)
{
    if (p[0] >= 0)
        return 0;
    int rc = lsec__pipe_made(lsec__sys_pipe_nonblock(p), p);
    if (rc != 0) {
        p[0] = p[1] = -1;
        return rc;
    }
    *cap = lsec__sys_pipe_grow(p[1], FDMOVE_PIPE);
    return 0;
}

/* Read exactly `len` bytes out of a non-blocking pipe that holds them. */
static int pipe_read(int fd, uint8_t *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = read(fd, buf + off, len - off);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return -1;
    }
    return 0;
}

/*
 * The socket did not take a started message before the deadline: the
 * unwritten part of the header and the payload still in the pipe become
 * the channel's send queue, flushed like the rest of a lsec_send message.
 */
static int queue_rest(lsec_channel *c, lsec__fdmove *m, const uint8_t *hdr,
                      size_t hdr_left, size_t left)
{
    size_t total = hdr_left + left;
    uint8_t *q = malloc(total);

    if (q == NULL)
        return lsec__channel_break(c, LSEC_ENOMEM,
                                   "out of memory queueing a message");
    memcpy(q, hdr + LSEC__FRAME_HDR - hdr_left, hdr_left);
    if (pipe_read(m->tx[0], q + hdr_left, left) != 0 ||
        lsec__channel_queue(c, q, total) != 0) {
        lsec__wipe(q, total);
        free(q);
        return lsec__channel_break(c, LSEC_EIO, "cannot queue a message");
    }
    return 0;
}

static int send_failed(lsec_channel *c, int e)
{
    if (e == EPIPE || e == ECONNRESET)
        return lsec__channel_break(c, LSEC_ERESET,
                                   "connection lost while sending");
    errno = e;
    return lsec__channel_break(c, LSEC_EIO, "send failed");
}

static int send_from_fd(lsec_channel *c, int fd, size_t max, size_t *moved,
                        int timeout_ms)
{
    lsec__fdmove *m;
    uint8_t hdr[LSEC__FRAME_HDR];
    int64_t deadline = lsec__deadline(timeout_ms);
    bool nowait = timeout_ms == 0;
    size_t hdr_left, left;
    ssize_t n;
    int sock, rc;

    if ((rc = lsec__channel_fd_begin(c, true, &m, &sock)) != 0)
        return rc;
    if (fd == sock)
        return lsec__fail(LSEC_EINVAL, "the channel's own socket");
    if (lsec_channel_queued(c) > 0 &&
        (rc = lsec_flush(c, nowait ? 0 : lsec__remaining(deadline))) != 0)
        return rc;
    if ((rc = make_pipe(m->tx, &m->tx_cap)) != 0)
        return rc;
    if (max > m->tx_cap)
        max = m->tx_cap;
    /* Nothing is taken from fd before the socket can take the header, so
     * that a timeout before the first byte leaves both untouched. */
    for (;;) {
        rc = wait_both(c, fd, POLLIN, sock, POLLOUT, deadline, nowait);
        if (rc != 0)
            return rc;
        n = lsec__sys_splice(fd, m->tx[1], max, false);
        if (n >= 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return fd_failed(fd, errno, "read");
        /* Readable but nothing there (another reader took it): wait again,
         * or, not waiting, it is EAGAIN. */
        if (nowait)
            return LSEC_EAGAIN;
    }
    if (n == 0)
        return 0; /* the end of fd: nothing sent */
    *moved = (size_t)n;

    /* From here on the message is accepted: written now, or queued. */
    lsec__frame_header(hdr, (uint32_t)n);
    hdr_left = sizeof(hdr);
    left = (size_t)n;
    while (hdr_left > 0) {
        ssize_t w = lsec__io.send(sock, hdr + sizeof(hdr) - hdr_left, hdr_left,
                                  MSG_NOSIGNAL | MSG_DONTWAIT | MSG_MORE);
        if (w > 0) {
            hdr_left -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return queue_rest(c, m, hdr, hdr_left, left);
        return send_failed(c, w < 0 ? errno : EPIPE);
    }
    while (left > 0) {
        n = lsec__sys_splice(m->tx[0], sock, left, false);
        if (n > 0) {
            left -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            rc = lsec__wait_fd(sock, POLLOUT, deadline, nowait);
            if (rc == 0)
                continue;
            if (rc == LSEC_ETIMEDOUT || rc == LSEC_EAGAIN)
                return queue_rest(c, m, hdr, 0, left);
            return lsec__channel_break(c, rc, "poll failed while sending");
        }
        return send_failed(c, n < 0 ? errno : EPIPE);
    }
    return 0;
}

int lsec_send_from_fd(lsec_channel *c, int fd, size_t max, size_t *moved,
                      int timeout_ms)
{
    int rc;

    lsec__clear_detail();
    if (moved != NULL)
        *moved = 0;
    if (c == NULL || moved == NULL || fd < 0 || max == 0)
        return lsec__fail(LSEC_EINVAL, "NULL channel or count, fd < 0 or "
                                       "max 0");
    if ((rc = lsec__timeout_check(timeout_ms)) != 0)
        return rc;
    if (lsec__channel_aborted(c))
        return lsec__channel_fd_end(c, LSEC_ECLOSED);
    rc = lsec__channel_fd_end(c, send_from_fd(c, fd, max, moved, timeout_ms));
    if (rc != 0)
        *moved = 0;
    return rc;
}

/* Write what the channel holds of the message to fd (a copy: at most its
 * read-ahead buffer, or what an earlier lsec_recv stashed). */
static int write_held(int fd, const uint8_t *p, size_t len, size_t *wrote)
{
    ssize_t w;

    *wrote = 0;
    for (;;) {
        w = write(fd, p, len);
        if (w >= 0 || errno != EINTR)
            break;
    }
    if (w > 0) {
        *wrote = (size_t)w;
        return 0;
    }
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return LSEC_EAGAIN;
    return w < 0 ? errno : EIO;
}

static int fd_write_failed(lsec_channel *c, int fd, int e)
{
    /* The message is cut: the channel cannot go on. */
    errno = e;
    (void)lsec__channel_break(
        c, e == EBADF || e == EINVAL ? LSEC_EINVAL : LSEC_EIO,
        "writing a message to a descriptor failed");
    return lsec__fail_errno(e == EBADF || e == EINVAL ? LSEC_EINVAL : LSEC_EIO,
                            e, "writing to descriptor %d", fd);
}

static int recv_to_fd(lsec_channel *c, int fd, size_t *moved, int timeout_ms,
                      bool *epipe)
{
    lsec__fdmove *m;
    int64_t deadline = lsec__deadline(timeout_ms);
    bool nowait = timeout_ms == 0;
    int sock, rc;

    if ((rc = lsec__channel_fd_begin(c, false, &m, &sock)) != 0)
        return rc;
    if (fd == sock)
        return lsec__fail(LSEC_EINVAL, "the channel's own socket");
    if ((rc = make_pipe(m->rx, &m->rx_cap)) != 0)
        return rc;
    if (!m->rx_active) {
        uint32_t len;
        rc = lsec__channel_rx_next(c, deadline, nowait, &len);
        if (rc != 0)
            return rc;
        m->rx_active = true;
        m->rx_piped = 0;
        /* An empty message is over at once. */
        m->rx_left = len > 0 ? len : lsec__channel_rx_take(c, 0);
    }
    for (;;) {
        const uint8_t *p;
        size_t held, w = 0;
        ssize_t n;

        if (m->rx_piped > 0) {
            /* First what came through the pipe: it precedes everything
             * still in the socket, and nothing is held in memory then. */
            n = lsec__sys_splice(m->rx[0], fd, m->rx_piped, false);
            if (n > 0) {
                m->rx_piped -= (size_t)n;
                *moved += (size_t)n;
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno == EAGAIN) {
                rc = wait_both(c, fd, POLLOUT, sock, 0, deadline, nowait);
                if (rc != 0)
                    return rc;
                continue;
            }
            *epipe = n < 0 && errno == EPIPE;
            return fd_write_failed(c, fd, n < 0 ? errno : EIO);
        }
        if (m->rx_left == 0)
            break;
        held = lsec__channel_rx_held(c, &p);
        if (held > 0) {
            rc = write_held(fd, p, held, &w);
            if (rc == 0) {
                m->rx_left = lsec__channel_rx_take(c, w);
                *moved += w;
                continue;
            }
            if (rc == LSEC_EAGAIN) {
                rc = wait_both(c, fd, POLLOUT, sock, 0, deadline, nowait);
                if (rc != 0)
                    return rc;
                continue;
            }
            *epipe = rc == EPIPE;
            return fd_write_failed(c, fd, rc);
        }
        /* The rest of the message is in the socket (or on its way). */
        n = lsec__sys_splice(sock, m->rx[1],
                             m->rx_left < m->rx_cap ? m->rx_left : m->rx_cap,
                             false);
        if (n > 0) {
            m->rx_left = lsec__channel_rx_take(c, (size_t)n);
            m->rx_piped = (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            rc = wait_both(c, fd, 0, sock, POLLIN, deadline, nowait);
            if (rc != 0)
                return rc;
            continue;
        }
        if (n == 0)
            return lsec__channel_break(
                c, LSEC_ERESET, "the peer vanished in the middle of a message");
        if (errno == ECONNRESET || errno == EPIPE || errno == ETIMEDOUT)
            return lsec__channel_break(c, LSEC_ERESET, "connection lost");
        return lsec__channel_break(c, LSEC_EIO, "recv failed");
    }
    m->rx_active = false;
    return 0;
}

int lsec_recv_to_fd(lsec_channel *c, int fd, size_t *moved, int timeout_ms)
{
    lsec__sigpipe_guard g;
    bool epipe = false;
    int rc;

    lsec__clear_detail();
    if (moved != NULL)
        *moved = 0;
    if (c == NULL || moved == NULL || fd < 0)
        return lsec__fail(LSEC_EINVAL, "NULL channel or count, or fd < 0");
    if ((rc = lsec__timeout_check(timeout_ms)) != 0)
        return rc;
    if (lsec__channel_aborted(c))
        return lsec__channel_fd_end(c, LSEC_ECLOSED);
    /* A pipe or socket whose reader is gone raises SIGPIPE on splice: the
     * library never leaves it to the process. */
    lsec__sigpipe_block(&g);
    rc = recv_to_fd(c, fd, moved, timeout_ms, &epipe);
    lsec__sigpipe_restore(&g, epipe);
    return lsec__channel_fd_end(c, rc);
}
