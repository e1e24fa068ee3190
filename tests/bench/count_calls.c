/*
 * User-space instructions per call of lsec_recv and lsec_send on an auth
 * channel, beside the raw system calls the benchmark's anchor makes (issue
 * 16: the 1,000-client test's difference is user space, not system
 * calls).  One process holds both ends of a loopback connection; every
 * measured call goes through a wrapper of its own (m_*), called exactly
 * CALLS times, so that callgrind's inclusive count of a wrapper divided by
 * CALLS is the call's cost (plus the wrapper's call and return).  Counts
 * are exact and do not depend on the machine's load, so two builds compare
 * call by call.  tests/bench/count_calls.sh builds this against one or
 * two builds of the library and prints the table.
 */
#define _GNU_SOURCE
#include "loopsec.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* noipa: no inlining, and no merging of the identical wrappers. */
#define NOINLINE __attribute__((noipa))

static NOINLINE int m_send_inf(lsec_channel *c, const void *m, size_t n)
{
    return lsec_send(c, m, n, -1);
}

static NOINLINE int m_send_0(lsec_channel *c, const void *m, size_t n)
{
    return lsec_send(c, m, n, 0);
}

static NOINLINE int m_recv_read(lsec_channel *c, void *b, size_t cap,
                                size_t *len)
{
    return lsec_recv(c, b, cap, len, 0);
}

static NOINLINE int m_recv_held(lsec_channel *c, void *b, size_t cap,
                                size_t *len)
{
    return lsec_recv(c, b, cap, len, 0);
}

static NOINLINE int m_recv_eagain(lsec_channel *c, void *b, size_t cap,
                                  size_t *len)
{
    return lsec_recv(c, b, cap, len, 0);
}

static NOINLINE ssize_t m_raw_writev(int fd, const struct iovec *iov, int n)
{
    return writev(fd, iov, n);
}

static NOINLINE ssize_t m_raw_recv(int fd, void *b, size_t cap)
{
    return recv(fd, b, cap, MSG_DONTWAIT);
}

static NOINLINE ssize_t m_raw_recv_eagain(int fd, void *b, size_t cap)
{
    return recv(fd, b, cap, MSG_DONTWAIT);
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "count_calls: %s: %s (%s)\n", what, lsec_strerror(rc),
            lsec_last_detail());
    exit(1);
}

struct acc {
    lsec_listener *l;
    lsec_channel *c;
    int rc;
};

static void *accept_main(void *p)
{
    struct acc *a = p;
    a->rc = lsec_accept(a->l, 10000, &a->c);
    return NULL;
}

/* A raw TCP loopback pair, non-blocking, as the benchmark's raw anchor. */
static void raw_pair(int fd[2])
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    int one = 1, ls = socket(AF_INET, SOCK_STREAM, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(ls, 1) != 0 || getsockname(ls, (struct sockaddr *)&sa, &sl))
        abort();
    fd[0] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (connect(fd[0], (struct sockaddr *)&sa, sizeof(sa)) != 0 &&
        errno != EINPROGRESS)
        abort();
    fd[1] = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
    if (fd[1] < 0)
        abort();
    setsockopt(fd[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    close(ls);
    usleep(10000);
}

/* Take `want` messages (waiting for each). */
static void drain(lsec_channel *b, uint8_t *buf, int want)
{
    size_t len;
    for (int i = 0; i < want; i++) {
        int rc = lsec_recv(b, buf, 4096, &len, 1000);
        if (rc != 0)
            die("drain", rc);
    }
}

/* Until `n` bytes are in the socket's receive queue. */
static void wait_bytes(int fd, int n)
{
    int have = 0;
    while (ioctl(fd, FIONREAD, &have) == 0 && have < n)
        ;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    uint8_t msg[64], buf[4096], hdr[4] = {0, 0, 0, 64};
    char ticket[LSEC_TICKET_MAX];
    lsec_opts o;
    pthread_t th;
    struct acc acc = {0};
    lsec_channel *a, *b;
    size_t len;
    ssize_t got;
    int rc, rfd[2];

    if (n < 1)
        n = 2000;
    memset(msg, 0x3c, sizeof(msg));
    lsec_opts_init(&o);
    if ((rc = lsec_listen("127.0.0.1:0", &o, &acc.l)) != 0)
        die("listen", rc);
    if ((rc = lsec_listener_ticket(acc.l, ticket, sizeof(ticket))) != 0)
        die("ticket", rc);
    pthread_create(&th, NULL, accept_main, &acc);
    if ((rc = lsec_connect(ticket, &o, 10000, &a)) != 0)
        die("connect", rc);
    pthread_join(th, NULL);
    if (acc.rc != 0)
        die("accept", acc.rc);
    b = acc.c;

    /* Warm up: every path once, the read-ahead buffer's spare made. */
    for (int i = 0; i < 64; i++)
        if ((rc = lsec_send(a, msg, sizeof(msg), -1)) != 0)
            die("send", rc);
    drain(b, buf, 64);

    /* lsec_send of 64 bytes as the 1,000-client test sends (timeout -1),
     * and with timeout 0; drained every 256 so the socket never fills. */
    for (int i = 0; i < n; i++) {
        if ((rc = m_send_inf(a, msg, sizeof(msg))) != 0)
            die("send", rc);
        if (i % 256 == 255)
            drain(b, buf, 256);
    }
    drain(b, buf, n % 256);
    for (int i = 0; i < n; i++) {
        if ((rc = m_send_0(a, msg, sizeof(msg))) != 0)
            die("send", rc);
        if (i % 256 == 255)
            drain(b, buf, 256);
    }
    drain(b, buf, n % 256);

    /* lsec_recv(0) with one message in the socket and none held: a read
     * per call, as in the 1,000-client test. */
    for (int i = 0; i < n; i++) {
        if ((rc = lsec_send(a, msg, sizeof(msg), -1)) != 0)
            die("send", rc);
        wait_bytes(lsec_channel_fd(b), 68);
        if ((rc = m_recv_read(b, buf, sizeof(buf), &len)) != 0 ||
            len != sizeof(msg))
            die("recv (a read each)", rc);
    }

    /* lsec_recv(0) of a message already in the read-ahead buffer. */
    for (int k = 0; k < n;) {
        for (int j = 0; j < 32; j++)
            if ((rc = lsec_send(a, msg, sizeof(msg), -1)) != 0)
                die("send", rc);
        /* All 32 in one read, every time. */
        wait_bytes(lsec_channel_fd(b), 32 * 68);
        for (int j = 0; j < 32; j++) {
            if (lsec_channel_pending(b) > 0 && k < n) {
                rc = m_recv_held(b, buf, sizeof(buf), &len);
                k++;
            } else {
                rc = lsec_recv(b, buf, sizeof(buf), &len, 1000);
            }
            if (rc != 0 || len != sizeof(msg))
                die("recv (held)", rc);
        }
    }

    /* lsec_recv(0) with nothing there: LSEC_EAGAIN. */
    for (int i = 0; i < n; i++)
        if ((rc = m_recv_eagain(b, buf, sizeof(buf), &len)) != LSEC_EAGAIN)
            die("recv (nothing there)", rc);

    /* The raw anchor's calls: a writev of header and payload; a recv into
     * its buffer; a recv that finds nothing. */
    raw_pair(rfd);
    for (int i = 0; i < n; i++) {
        struct iovec iov[2] = {{hdr, 4}, {msg, 64}};
        if (m_raw_writev(rfd[0], iov, 2) != 68)
            abort();
        wait_bytes(rfd[1], 68);
        if (m_raw_recv(rfd[1], buf, sizeof(buf)) != 68)
            abort();
    }
    for (int i = 0; i < n; i++)
        if ((got = m_raw_recv_eagain(rfd[1], buf, sizeof(buf))) != -1)
            abort();
    close(rfd[0]);
    close(rfd[1]);
    lsec_channel_close(a);
    lsec_channel_close(b);
    lsec_listener_close(acc.l);
    printf("calls %d\n", n);
    return 0;
}
