/*
 * Anchor 1: raw TCP over loopback, written the way a careful hand-written
 * program would be: TCP_NODELAY on both ends, one writev() of the 4-byte
 * length prefix and the payload, and on the receiving side a read of the
 * header followed by a read of the payload straight into the caller's
 * buffer.  In event-loop use (the concurrent-clients test) it reads in bulk
 * into a per-connection buffer and parses whole messages out of it.
 *
 * With LOOPSEC_BENCH_RAW_FLIGHTS=auth in the environment, a connect also
 * carries the flights of loopsec's auth handshake, with the same sizes and
 * nothing computed or checked: 40 bytes out, 72 back, 32 out (the
 * connector does not wait after its last one), and accept returns once the
 * 32 are in.  The connect test then measures the floor that the
 * protocol's extra round trip sets (docs/BENCHMARKS.md).
 *
 * tr_raw_ra ("raw-ra", context for the 64-byte stream) is the same anchor
 * with the reader loopsec has: every read takes what the socket holds, up
 * to 4 KiB, and whole messages are parsed out of that buffer; the socket
 * stays blocking, so a reader that has caught up sleeps inside read() (one
 * system call per wake-up, the least any reader that keeps up can make).
 *
 * LOOPSEC_BENCH_RAW_FLIGHTS=auth+checks adds the checks loopsec makes,
 * with the same system and library calls and nothing else: the client's
 * getsockname, a fresh nonce (getrandom) on each side, the peer lookup on
 * each side (one sock_diag request by the 4-tuple on a kept netlink
 * socket, fstat of it first), geteuid, the client's two key derivations
 * and three keyed BLAKE2b MACs in all (libsodium crypto_generichash), the
 * proofs compared in constant time.  The floor with the required checks.
 */
#include "bench.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

struct bsrv {
    int fd;
    struct sockaddr_in addr; /* as bound */
};

static bool auth_flights(void);

struct bconn {
    int fd;
    b_rbuf *rb; /* event-loop mode only */
};

static int raw_srv_open(bsrv **out, char *info, size_t infolen)
{
    int port;
    bsrv *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return b_fail("out of memory");
    s->fd = b_tcp_listen(1024, &port);
    if (s->fd < 0) {
        free(s);
        return B_ERR;
    }
    b_loopback(&s->addr, port);
    snprintf(info, infolen, "%d", port);
    *out = s;
    return B_OK;
}

static int wrap(int fd, bconn **out)
{
    bconn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return b_fail("out of memory");
    }
    c->fd = fd;
    *out = c;
    return B_OK;
}

static int read_exact(int fd, uint8_t *p, size_t len);

/* LOOPSEC_BENCH_RAW_FLIGHTS=auth: model the auth handshake's flights;
 * =auth+checks: and its checks; =auth+checks+waits: and the waits of a
 * call with a deadline, as loopsec makes them. */
static const char *flights_mode(void)
{
    const char *v = getenv("LOOPSEC_BENCH_RAW_FLIGHTS");
    return v == NULL ? "" : v;
}

static bool auth_flights(void)
{
    return strncmp(flights_mode(), "auth", 4) == 0;
}

static bool auth_checks(void)
{
    return strncmp(flights_mode(), "auth+checks", 11) == 0;
}

/* The waits: non-blocking sockets (a connect that may be in progress, its
 * state read from TCP_INFO), a poll before every read of the handshake
 * (each follows a flight of ours or the accept), a read that would block
 * waits in poll (read_exact), and a read that drains the socket before
 * close. */
static bool auth_waits(void)
{
    return strcmp(flights_mode(), "auth+checks+waits") == 0;
}

static int waits_connect(int port)
{
    struct sockaddr_in sa;
    struct tcp_info ti;
    socklen_t tl = sizeof(ti);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return b_fail("socket: %s", strerror(errno));
    b_nodelay(fd);
    b_loopback(&sa, port);
    if ((connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 &&
         errno != EINPROGRESS) ||
        getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) != 0 ||
        (ti.tcpi_state != TCP_ESTABLISHED &&
         b_wait(fd, POLLOUT, 30000) != B_OK)) {
        close(fd);
        return b_fail("raw waits: connect failed");
    }
    return fd;
}

/* The checks' work on one side around its flights: `stage` 0 before its
 * first read (the endpoints, a nonce, the peer lookup, the euid; the
 * client's key derivations), 1 a proof made, 2 a proof checked.  `local`
 * and `remote`: this side's view (the client's local end comes from
 * getsockname). */
static int checks(int fd, int role, int stage, struct sockaddr_in *local,
                  const struct sockaddr_in *remote)
{
    static const uint8_t secret[32] = {1};
    uint8_t k[2][32], nonce[32], mac[32], in[170] = {0};
    socklen_t sl = sizeof(*local);

    if (stage == 0) {
        if (role == 0 && getsockname(fd, (struct sockaddr *)local, &sl) != 0)
            return b_fail("getsockname: %s", strerror(errno));
        if (getrandom(nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
            return b_fail("getrandom");
        if (b_peer_check(local, remote) != B_OK)
            return b_fail("raw flights: peer lookup failed");
        if (role == 0) /* the listener derives its keys once */
            for (int i = 0; i < 2; i++)
                crypto_generichash(k[i], 32, (const uint8_t *)"label", 5,
                                   secret, sizeof(secret));
        sodium_memzero(k, sizeof(k));
        return B_OK;
    }
    crypto_generichash(mac, 32, in, stage == 1 ? 138 : 170, secret, 32);
    if (stage == 2 && sodium_memcmp(mac, in, 32) == 0)
        return b_fail("raw flights: impossible proof");
    return B_OK;
}

/* The flights of one side: `role` 0 client, 1 server; `local` and `peer`
 * its view of the two ends (auth+checks). */
static int flights(int fd, int role, struct sockaddr_in *local,
                   const struct sockaddr_in *peer)
{
    static const size_t size[3] = {40, 72, 32};
    bool chk = auth_checks();
    uint8_t buf[72];

    memset(buf, 0x5a, sizeof(buf));
    /* Each side looks the other up before its first flight, as loopsec
     * does: the client before its hello, the listener before it reads. */
    if (chk && checks(fd, role, 0, local, peer) != B_OK)
        return B_ERR;
    for (int k = 0; k < 3; k++) {
        bool mine = k % 2 == role;
        /* A proof is made before its flight, checked after it. */
        if (chk && mine && k > 0 && checks(fd, role, 1, local, peer) != B_OK)
            return B_ERR;
        if (!mine && auth_waits() && b_wait(fd, POLLIN, 30000) != B_OK)
            return b_fail("raw waits: timed out");
        int rc =
            mine ? b_write_all(fd, buf, size[k]) : read_exact(fd, buf, size[k]);
        if (rc != B_OK)
            return b_fail("raw flights: %d", rc);
        if (chk && !mine && k > 0 && checks(fd, role, 2, local, peer) != B_OK)
            return B_ERR;
    }
    return B_OK;
}

static int raw_srv_accept(bsrv *s, int timeout_ms, bconn **out)
{
    struct sockaddr_in peer;
    socklen_t pl = sizeof(peer);
    if (b_wait(s->fd, POLLIN, timeout_ms) != B_OK)
        return b_fail("raw accept: timed out");
    int fd = accept4(s->fd, (struct sockaddr *)&peer, &pl,
                     SOCK_CLOEXEC | (auth_waits() ? SOCK_NONBLOCK : 0));
    if (fd < 0)
        return b_fail("accept: %s", strerror(errno));
    b_nodelay(fd);
    if (auth_flights() && flights(fd, 1, &s->addr, &peer) != B_OK) {
        close(fd);
        return B_ERR;
    }
    return wrap(fd, out);
}

static void raw_srv_close(bsrv *s)
{
    if (s == NULL)
        return;
    close(s->fd);
    free(s);
}

static int raw_connect(const char *info, bconn **out)
{
    int fd =
        auth_waits() ? waits_connect(atoi(info)) : b_tcp_connect(atoi(info));
    if (fd < 0)
        return B_ERR;
    struct sockaddr_in listener, local;
    b_loopback(&listener, atoi(info));
    if (auth_flights() && flights(fd, 0, &local, &listener) != B_OK) {
        close(fd);
        return B_ERR;
    }
    return wrap(fd, out);
}

/* Write all of iov (cnt entries) on the blocking socket. */
static int raw_writev_all(int fd, struct iovec *v, int cnt)
{
    while (cnt > 0) {
        ssize_t n = writev(fd, v, cnt);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (b_wait(fd, POLLOUT, 30000) != B_OK)
                return b_fail("raw send: timed out");
            continue;
        }
        if (n <= 0)
            return b_fail("writev: %s", strerror(errno));
        while (cnt > 0 && (size_t)n >= v->iov_len) {
            n -= (ssize_t)v->iov_len;
            v++;
            cnt--;
        }
        if (cnt > 0) {
            v->iov_base = (uint8_t *)v->iov_base + n;
            v->iov_len -= (size_t)n;
        }
    }
    return B_OK;
}

static int raw_send(bconn *c, const void *buf, size_t len)
{
    uint8_t hdr[4];
    struct iovec iov[2] = {{hdr, 4}, {(void *)buf, len}};

    b_put_len(hdr, (uint32_t)len);
    return raw_writev_all(c->fd, iov, len > 0 ? 2 : 1);
}

/* A batch as a careful program sends it: one writev of every header and
 * payload. */
static int raw_sendv(bconn *c, const void *buf, size_t len, unsigned n)
{
    uint8_t hdr[4];
    struct iovec iov[2 * B_BATCH_MAX];

    b_put_len(hdr, (uint32_t)len);
    for (unsigned i = 0; i < n; i++) {
        iov[2 * i] = (struct iovec){hdr, 4};
        iov[2 * i + 1] = (struct iovec){(void *)buf, len};
    }
    return raw_writev_all(c->fd, iov, (int)(2 * n));
}

/* Read exactly len bytes.  B_EOF if the stream ends before the first. */
static int read_exact(int fd, uint8_t *p, size_t len)
{
    size_t have = 0;
    while (have < len) {
        ssize_t n = read(fd, p + have, len - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (b_wait(fd, POLLIN, 30000) != B_OK)
                return b_fail("raw recv: timed out");
            continue;
        }
        if (n == 0 && have == 0)
            return B_EOF;
        if (n <= 0)
            return b_fail("read: %s", n == 0 ? "truncated" : strerror(errno));
        have += (size_t)n;
    }
    return B_OK;
}

static int raw_recv(bconn *c, void *buf, size_t cap, size_t *len)
{
    uint8_t hdr[4];
    int rc;

    if (c->rb != NULL) {
        /* Event-loop mode: drain the buffered bytes first. */
        for (;;) {
            rc = b_rbuf_take(c->rb, buf, cap, len);
            if (rc != B_AGAIN)
                return rc;
            if (b_wait(c->fd, POLLIN, 30000) != B_OK)
                return b_fail("raw recv: timed out");
            b_rbuf_compact(c->rb);
            ssize_t n = recv(c->fd, c->rb->buf + c->rb->len,
                             sizeof(c->rb->buf) - c->rb->len, MSG_DONTWAIT);
            if (n == 0)
                return c->rb->len == 0 ? B_EOF : b_fail("raw: truncated");
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                return b_fail("recv: %s", strerror(errno));
            if (n > 0)
                c->rb->len += (size_t)n;
        }
    }
    rc = read_exact(c->fd, hdr, 4);
    if (rc != B_OK)
        return rc;
    uint32_t n = b_get_len(hdr);
    if (n > cap)
        return b_fail("raw: message of %u bytes, buffer %zu", n, cap);
    rc = read_exact(c->fd, buf, n);
    if (rc != B_OK)
        return rc == B_EOF ? b_fail("raw: truncated") : rc;
    *len = n;
    return B_OK;
}

/* Whole messages out of the read-ahead buffer; when it holds none, one
 * read into it: a blocking read() (the raw-ra reader: the least a reader
 * that keeps up can make) or, `wait` false, a recv() that does not wait
 * (the event loop's). */
static int rbuf_recv(bconn *c, void *buf, size_t cap, size_t *len, bool wait)
{
    for (;;) {
        int rc = b_rbuf_take(c->rb, buf, cap, len);
        if (rc != B_AGAIN)
            return rc;
        b_rbuf_compact(c->rb);
        uint8_t *room = c->rb->buf + c->rb->len;
        size_t free_len = sizeof(c->rb->buf) - c->rb->len;
        ssize_t n = wait ? read(c->fd, room, free_len)
                         : recv(c->fd, room, free_len, MSG_DONTWAIT);
        if (n > 0) {
            c->rb->len += (size_t)n;
            continue;
        }
        if (n == 0)
            return c->rb->len == 0 ? B_EOF : b_fail("raw: truncated");
        if (errno == EINTR)
            continue;
        if (!wait && (errno == EAGAIN || errno == EWOULDBLOCK))
            return B_AGAIN;
        return b_fail("read: %s", strerror(errno));
    }
}

static int raw_ra_recv(bconn *c, void *buf, size_t cap, size_t *len)
{
    return rbuf_recv(c, buf, cap, len, true);
}

static int with_rbuf(int rc, bconn **out)
{
    if (rc != B_OK)
        return rc;
    if (((*out)->rb = calloc(1, sizeof(*(*out)->rb))) == NULL) {
        close((*out)->fd);
        free(*out);
        *out = NULL;
        return b_fail("out of memory");
    }
    return B_OK;
}

static int raw_ra_srv_accept(bsrv *s, int timeout_ms, bconn **out)
{
    return with_rbuf(raw_srv_accept(s, timeout_ms, out), out);
}

static int raw_ra_connect(const char *info, bconn **out)
{
    return with_rbuf(raw_connect(info, out), out);
}

static int raw_try_recv(bconn *c, void *buf, size_t cap, size_t *len)
{
    return rbuf_recv(c, buf, cap, len, false);
}

static int raw_set_nonblock(bconn *c)
{
    if (c->rb == NULL && (c->rb = calloc(1, sizeof(*c->rb))) == NULL)
        return b_fail("out of memory");
    return b_nonblock(c->fd);
}

static int raw_fd(const bconn *c)
{
    return c->fd;
}

static void raw_close(bconn *c)
{
    uint8_t drain[64];
    if (c == NULL)
        return;
    if (auth_waits()) /* what arrived unread would make close a reset */
        (void)recv(c->fd, drain, sizeof(drain), MSG_DONTWAIT);
    close(c->fd);
    free(c->rb);
    free(c);
}

const transport tr_raw = {
    .name = "raw",
    .anchor = NULL,
    .srv_open = raw_srv_open,
    .srv_accept = raw_srv_accept,
    .srv_close = raw_srv_close,
    .connect = raw_connect,
    .send = raw_send,
    .sendv = raw_sendv,
    .recv = raw_recv,
    .try_recv = raw_try_recv,
    .set_nonblock = raw_set_nonblock,
    .fd = raw_fd,
    .close = raw_close,
};

const transport tr_raw_ra = {
    .name = "raw-ra",
    .anchor = NULL,
    .srv_open = raw_srv_open,
    .srv_accept = raw_ra_srv_accept,
    .srv_close = raw_srv_close,
    .connect = raw_ra_connect,
    .send = raw_send,
    .sendv = raw_sendv,
    .recv = raw_ra_recv,
    .try_recv = raw_try_recv,
    .set_nonblock = raw_set_nonblock,
    .fd = raw_fd,
    .close = raw_close,
};
