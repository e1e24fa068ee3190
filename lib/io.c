/*
 * The I/O seam.  Every socket call in lib/ goes through lsec__io so that the
 * fault-injection tests can make any call fail with EINTR, EAGAIN, a short
 * count, ECONNRESET, EPIPE or EMFILE.  In production the table holds the real
 * system calls and costs one indirect call.
 */
#include "internal.h"

#include "testing.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

static ssize_t real_recv(int fd, void *buf, size_t len, int flags)
{
    return recv(fd, buf, len, flags);
}

static ssize_t real_send(int fd, const void *buf, size_t len, int flags)
{
    return send(fd, buf, len, flags);
}

static ssize_t real_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    return sendmsg(fd, msg, flags);
}

static ssize_t real_recvmsg(int fd, struct msghdr *msg, int flags)
{
    return recvmsg(fd, msg, flags);
}

static int real_accept4(int fd, struct sockaddr *sa, unsigned *salen, int flags)
{
    return accept4(fd, sa, (socklen_t *)salen, flags);
}

static int real_connect(int fd, const struct sockaddr *sa, unsigned salen)
{
    return connect(fd, sa, (socklen_t)salen);
}

static int real_poll(struct pollfd *fds, unsigned long nfds, int timeout)
{
    return poll(fds, (nfds_t)nfds, timeout);
}

static int real_socket(int domain, int type, int protocol)
{
    return socket(domain, type, protocol);
}

static int real_getsockname(int fd, struct sockaddr *sa, unsigned *salen)
{
    return getsockname(fd, sa, (socklen_t *)salen);
}

static int real_open(const char *path, int flags)
{
    return open(path, flags);
}

struct lsec__io_ops lsec__io = {
    real_recv,    real_send, real_sendmsg, real_recvmsg,     real_accept4,
    real_connect, real_poll, real_socket,  real_getsockname, real_open,
};

void lsec__io_reset(void)
{
    lsec__io.recv = real_recv;
    lsec__io.send = real_send;
    lsec__io.sendmsg = real_sendmsg;
    lsec__io.recvmsg = real_recvmsg;
    lsec__io.accept4 = real_accept4;
    lsec__io.connect = real_connect;
    lsec__io.poll = real_poll;
    lsec__io.socket = real_socket;
    lsec__io.getsockname = real_getsockname;
    lsec__io.open = real_open;
}

int lsec__wait_fd(int fd, short events, int64_t deadline, bool nowait)
{
    struct pollfd p;
    int rc;

    for (;;) {
        p.fd = fd;
        p.events = events;
        p.revents = 0;
        rc = lsec__io.poll(&p, 1, nowait ? 0 : lsec__remaining(deadline));
        /* A descriptor that is not open is never "ready": the next call
         * would act on whatever file takes its number. */
        if (rc > 0 && (p.revents & POLLNVAL))
            return lsec__fail(LSEC_EIO, "poll: descriptor %d is not open", fd);
        if (rc > 0)
            return 0;
        if (rc == 0) {
            if (nowait)
                return LSEC_EAGAIN;
            if (lsec__remaining(deadline) == 0)
                return lsec__fail(LSEC_ETIMEDOUT,
                                  "timed out waiting for the peer");
            continue; /* woke early (coarse clock): wait for the rest */
        }
        if (errno == EINTR || errno == EAGAIN)
            continue;
        return lsec__fail_errno(LSEC_EIO, errno, "poll");
    }
}

int lsec__write_some(int fd, const uint8_t *buf, size_t len, size_t *off)
{
    while (*off < len) {
        ssize_t n = lsec__io.send(fd, buf + *off, len - *off,
                                  MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            *off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return LSEC__WANT_WRITE;
        return LSEC_ERESET;
    }
    return 0;
}

int lsec__sys_code(int errno_value, int other)
{
    if (errno_value == EMFILE || errno_value == ENFILE)
        return LSEC_ELIMIT;
    if (errno_value == ENOMEM || errno_value == ENOBUFS)
        return LSEC_ENOMEM;
    return other;
}
