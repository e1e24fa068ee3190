/*
 * Anchor 2: TLS 1.3 written directly against OpenSSL, configured as loopsec
 * configures its TLS mode (lib/tls.c): TLS 1.3 only, an external 32-byte
 * PSK offered through the session callbacks (RFC 9258 style, cipher
 * TLS_AES_128_GCM_SHA256), psk_dhe_ke only (SSL_OP_ALLOW_NO_DHE_KEX left
 * clear, so every handshake runs an (EC)DHE exchange with OpenSSL's default
 * group, X25519), no session tickets, no certificates.  One SSL_CTX per
 * listener and one per client process, OpenSSL's own socket BIO
 * (SSL_set_fd), default modes (auto-retry on, no read-ahead).
 *
 * Framing is the same as loopsec's: a 4-byte big-endian length, carried in
 * the same TLS record as the first part of the payload (a careful program
 * never sends a 4-byte record of its own).
 *
 * tr_openssl_ra ("openssl-ra", context for the 64-byte stream) is the same
 * anchor with OpenSSL's read-ahead on (SSL_CTX_set_read_ahead): each read
 * of the socket takes as many records as fit OpenSSL's record buffer, as
 * loopsec's TLS reader takes what the socket holds; the socket stays
 * blocking, so a reader that has caught up sleeps inside read().
 *
 * LOOPSEC_BENCH_OPENSSL_CHECKS=1 makes the OpenSSL anchors the
 * floor of the TLS handshake with loopsec's required checks, made with the
 * same calls and nothing else: the client connects a non-blocking socket
 * (getsockopt TCP_INFO for the state, poll only if the connection is not
 * yet established) and reads its local end (getsockname); each side looks
 * its peer up before its first TLS byte (b_peer_check: fstat and one
 * sock_diag request on a kept netlink socket, geteuid), the server with
 * the listener's address as its local end; both sockets are non-blocking
 * and every wait of the handshake has its deadline, waiting as loopsec's
 * shell does: a read just after our own flight polls first (its answer
 * cannot be there yet), any other read is tried first and polls only if it
 * would block.  After the handshake the same waits have no deadline (the
 * bench's lsec_recv passes timeout -1); event-loop mode has none of them.
 */
#include "bench.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#define PSK_BYTES 32
#define PSK_IDENTITY "loopsec-bench"
/* Plaintext per record: the largest TLS allows. */
#define REC_MAX 16384

struct bsrv {
    int fd;
    struct sockaddr_in addr; /* as bound (the checks' local end) */
    SSL_CTX *ctx;
    uint8_t psk[PSK_BYTES];
};

struct bconn {
    int fd;
    SSL *ssl;
    bool server;
    bool wrote;        /* checks: our flight went last, poll before a read */
    uint64_t deadline; /* checks: of the handshake, b_now_ns(); 0 after */
    uint8_t psk[PSK_BYTES];
    b_rbuf *rb; /* event-loop mode only */
};

static const unsigned char suite_aes128gcm[2] = {0x13, 0x01};

static SSL_SESSION *psk_session(SSL *ssl, const bconn *c)
{
    const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, suite_aes128gcm);
    SSL_SESSION *s;
    if (cipher == NULL || (s = SSL_SESSION_new()) == NULL)
        return NULL;
    if (!SSL_SESSION_set1_master_key(s, c->psk, sizeof(c->psk)) ||
        !SSL_SESSION_set_cipher(s, cipher) ||
        !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
        SSL_SESSION_free(s);
        return NULL;
    }
    return s;
}

static int use_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id,
                  size_t *idlen, SSL_SESSION **sess)
{
    const bconn *c = SSL_get_app_data(ssl);
    (void)md;
    *sess = psk_session(ssl, c);
    if (*sess == NULL)
        return 0;
    *id = (const unsigned char *)PSK_IDENTITY;
    *idlen = strlen(PSK_IDENTITY);
    return 1;
}

static int find_cb(SSL *ssl, const unsigned char *id, size_t idlen,
                   SSL_SESSION **sess)
{
    const bconn *c = SSL_get_app_data(ssl);
    *sess = NULL;
    if (idlen != strlen(PSK_IDENTITY) || memcmp(id, PSK_IDENTITY, idlen) != 0)
        return 1;
    *sess = psk_session(ssl, c);
    return *sess != NULL;
}

static SSL_CTX *make_ctx(bool server, bool read_ahead)
{
    SSL_CTX *ctx =
        SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (ctx == NULL)
        return NULL;
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256")) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    if (read_ahead)
        SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (server) {
        SSL_CTX_set_num_tickets(ctx, 0);
        SSL_CTX_set_psk_find_session_callback(ctx, find_cb);
    } else {
        SSL_CTX_set_psk_use_session_callback(ctx, use_cb);
    }
    return ctx;
}

static SSL_CTX *client_ctx, *client_ctx_ra;
static pthread_once_t client_once = PTHREAD_ONCE_INIT;

static void client_ctx_init(void)
{
    client_ctx = make_ctx(false, false);
    client_ctx_ra = make_ctx(false, true);
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* The handshake's deadline, as lsec_connect's timeout (tr_loopsec.c). */
#define CHECKS_TIMEOUT_MS 10000

static bool with_checks(void)
{
    const char *v = getenv("LOOPSEC_BENCH_OPENSSL_CHECKS");
    return v != NULL && strcmp(v, "1") == 0;
}

/* Milliseconds left until c's deadline (at least 0); -1 without one (after
 * the handshake, as the bench's lsec_recv with timeout -1). */
static int remaining_ms(const bconn *c)
{
    uint64_t now = b_now_ns();
    if (c->deadline == 0)
        return -1;
    return now >= c->deadline ? 0 : (int)((c->deadline - now) / 1000000);
}

/* The checks' wait (a BIO callback on the socket BIO): before a read that
 * follows our own write, poll for the answer with the deadline. */
static long checks_bio_cb(BIO *b, int oper, const char *argp, size_t len,
                          int argi, long argl, int ret, size_t *processed)
{
    bconn *c = (bconn *)BIO_get_callback_arg(b);
    (void)argp, (void)len, (void)argi, (void)argl, (void)processed;
    if (oper == BIO_CB_WRITE)
        c->wrote = true;
    else if (oper == BIO_CB_READ && c->wrote) {
        c->wrote = false;
        if (b_wait(c->fd, POLLIN, remaining_ms(c)) != B_OK)
            return -1;
    }
    return ret;
}

/* Wait as OpenSSL asks after a non-fatal failure; B_ERR otherwise. */
static int ssl_wait(bconn *c, int r, const char *what)
{
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ && b_wait(c->fd, POLLIN, 30000) == B_OK)
        return B_OK;
    if (e == SSL_ERROR_WANT_WRITE && b_wait(c->fd, POLLOUT, 30000) == B_OK)
        return B_OK;
    if (e == SSL_ERROR_ZERO_RETURN)
        return B_EOF;
    ERR_clear_error();
    return b_fail("openssl %s: error %d", what, e);
}

static int handshake(bconn *c)
{
    for (;;) {
        int r = c->server ? SSL_accept(c->ssl) : SSL_connect(c->ssl);
        if (r == 1)
            return B_OK;
        if (ssl_wait(c, r, "handshake") != B_OK)
            return B_ERR;
    }
}

static void conn_free(bconn *c)
{
    if (c == NULL)
        return;
    SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    OPENSSL_cleanse(c->psk, sizeof(c->psk));
    free(c->rb);
    free(c);
}

/* Wrap a connected socket and run the handshake. */
static int conn_new(int fd, SSL_CTX *ctx, bool server, const uint8_t *psk,
                    bconn **out)
{
    bconn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return b_fail("out of memory");
    }
    c->fd = fd;
    c->server = server;
    memcpy(c->psk, psk, PSK_BYTES);
    c->ssl = SSL_new(ctx);
    if (c->ssl == NULL || !SSL_set_fd(c->ssl, fd)) {
        conn_free(c);
        return b_fail("SSL_new failed");
    }
    SSL_set_app_data(c->ssl, c);
    if (with_checks()) {
        /* The socket BIO reads and writes the non-blocking socket; the
         * server waits for the ClientHello, the client sends first. */
        BIO *b = SSL_get_rbio(c->ssl);
        c->wrote = server;
        c->deadline = b_now_ns() + (uint64_t)CHECKS_TIMEOUT_MS * 1000000;
        BIO_set_callback_arg(b, (char *)c);
        BIO_set_callback_ex(b, checks_bio_cb);
    }
    if (handshake(c) != B_OK) {
        conn_free(c);
        return B_ERR;
    }
    c->deadline = 0;
    *out = c;
    return B_OK;
}

static int srv_open(bool read_ahead, bsrv **out, char *info, size_t infolen)
{
    int port;
    bsrv *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return b_fail("out of memory");
    s->ctx = make_ctx(true, read_ahead);
    if (s->ctx == NULL || RAND_bytes(s->psk, sizeof(s->psk)) != 1) {
        SSL_CTX_free(s->ctx);
        free(s);
        return b_fail("cannot set up the OpenSSL server context");
    }
    s->fd = b_tcp_listen(1024, &port);
    if (s->fd < 0) {
        SSL_CTX_free(s->ctx);
        free(s);
        return B_ERR;
    }
    b_loopback(&s->addr, port);
    int off = snprintf(info, infolen, "%d ", port);
    for (size_t i = 0; i < PSK_BYTES && (size_t)off + 2 < infolen; i++)
        off += snprintf(info + off, infolen - (size_t)off, "%02x", s->psk[i]);
    *out = s;
    return B_OK;
}

static int ossl_srv_open(bsrv **out, char *info, size_t infolen)
{
    return srv_open(false, out, info, infolen);
}

static int ossl_ra_srv_open(bsrv **out, char *info, size_t infolen)
{
    return srv_open(true, out, info, infolen);
}

static int ossl_srv_accept(bsrv *s, int timeout_ms, bconn **out)
{
    if (b_wait(s->fd, POLLIN, timeout_ms) != B_OK)
        return b_fail("openssl accept: timed out");
    struct sockaddr_in peer;
    socklen_t pl = sizeof(peer);
    bool chk = with_checks();
    int fd = chk ? accept4(s->fd, (struct sockaddr *)&peer, &pl,
                           SOCK_CLOEXEC | SOCK_NONBLOCK)
                 : accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return b_fail("accept: %s", strerror(errno));
    b_nodelay(fd);
    if (chk && b_peer_check(&s->addr, &peer) != B_OK) {
        close(fd);
        return b_fail("openssl checks: peer lookup failed");
    }
    return conn_new(fd, s->ctx, true, s->psk, out);
}

static void ossl_srv_close(bsrv *s)
{
    if (s == NULL)
        return;
    close(s->fd);
    SSL_CTX_free(s->ctx);
    OPENSSL_cleanse(s->psk, sizeof(s->psk));
    free(s);
}

/* The checks' connect: a non-blocking socket, the connection's state from
 * TCP_INFO (on loopback it is established at once), the local end, the
 * peer lookup; the socket, or B_ERR. */
static int checks_connect(int port)
{
    struct sockaddr_in sa, local;
    struct tcp_info ti;
    socklen_t sl = sizeof(local), tl = sizeof(ti);
    int err = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return b_fail("socket: %s", strerror(errno));
    b_nodelay(fd);
    b_loopback(&sa, port);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 &&
        errno != EINPROGRESS)
        err = errno;
    else if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) != 0)
        err = errno;
    else if (ti.tcpi_state != TCP_ESTABLISHED) {
        socklen_t el = sizeof(err);
        if (b_wait(fd, POLLOUT, CHECKS_TIMEOUT_MS) != B_OK)
            err = ETIMEDOUT;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
            err = errno;
    }
    if (err == 0 && getsockname(fd, (struct sockaddr *)&local, &sl) != 0)
        err = errno;
    if (err != 0) {
        close(fd);
        return b_fail("openssl checks: connect: %s", strerror(err));
    }
    if (b_peer_check(&local, &sa) != B_OK) {
        close(fd);
        return b_fail("openssl checks: peer lookup failed");
    }
    return fd;
}

static int do_connect(bool read_ahead, const char *info, bconn **out)
{
    uint8_t psk[PSK_BYTES];
    const char *hex = strchr(info, ' ');
    if (hex == NULL || strlen(hex + 1) != 2 * PSK_BYTES)
        return b_fail("bad openssl connection info");
    for (size_t i = 0; i < PSK_BYTES; i++) {
        int hi = hexval(hex[1 + 2 * i]), lo = hexval(hex[2 + 2 * i]);
        if (hi < 0 || lo < 0)
            return b_fail("bad openssl connection info");
        psk[i] = (uint8_t)(hi << 4 | lo);
    }
    pthread_once(&client_once, client_ctx_init);
    SSL_CTX *ctx = read_ahead ? client_ctx_ra : client_ctx;
    if (ctx == NULL)
        return b_fail("cannot set up the OpenSSL client context");
    int fd =
        with_checks() ? checks_connect(atoi(info)) : b_tcp_connect(atoi(info));
    if (fd < 0) {
        OPENSSL_cleanse(psk, sizeof(psk));
        return B_ERR;
    }
    int rc = conn_new(fd, ctx, false, psk, out);
    OPENSSL_cleanse(psk, sizeof(psk));
    return rc;
}

static int ossl_connect(const char *info, bconn **out)
{
    return do_connect(false, info, out);
}

static int ossl_ra_connect(const char *info, bconn **out)
{
    return do_connect(true, info, out);
}

static int write_all(bconn *c, const uint8_t *p, size_t len)
{
    while (len > 0) {
        size_t n = 0;
        int r = SSL_write_ex(c->ssl, p, len, &n);
        if (r == 1) {
            p += n;
            len -= n;
            continue;
        }
        if (ssl_wait(c, r, "write") != B_OK)
            return B_ERR;
    }
    return B_OK;
}

static int ossl_send(bconn *c, const void *buf, size_t len)
{
    /* The header and the first part of the payload in one record; the rest
     * straight from the caller's buffer in full records. */
    uint8_t first[REC_MAX];
    size_t head = len < REC_MAX - 4 ? len : REC_MAX - 4;
    b_put_len(first, (uint32_t)len);
    memcpy(first + 4, buf, head);
    if (write_all(c, first, 4 + head) != B_OK)
        return B_ERR;
    if (head < len)
        return write_all(c, (const uint8_t *)buf + head, len - head);
    return B_OK;
}

static int read_exact(bconn *c, uint8_t *p, size_t len)
{
    size_t have = 0;
    while (have < len) {
        size_t n = 0;
        int r = SSL_read_ex(c->ssl, p + have, len - have, &n);
        if (r == 1) {
            have += n;
            continue;
        }
        r = ssl_wait(c, r, "read");
        if (r == B_EOF && have == 0)
            return B_EOF;
        if (r != B_OK)
            return r == B_EOF ? b_fail("openssl: truncated") : r;
    }
    return B_OK;
}

static int ossl_try_recv(bconn *c, void *buf, size_t cap, size_t *len)
{
    for (;;) {
        int rc = b_rbuf_take(c->rb, buf, cap, len);
        if (rc != B_AGAIN)
            return rc;
        b_rbuf_compact(c->rb);
        size_t n = 0;
        int r = SSL_read_ex(c->ssl, c->rb->buf + c->rb->len,
                            sizeof(c->rb->buf) - c->rb->len, &n);
        if (r == 1) {
            c->rb->len += n;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            return B_AGAIN;
        if (e == SSL_ERROR_ZERO_RETURN && c->rb->len == 0)
            return B_EOF;
        ERR_clear_error();
        return b_fail("openssl read: error %d", e);
    }
}

static int ossl_recv(bconn *c, void *buf, size_t cap, size_t *len)
{
    uint8_t hdr[4];
    int rc;

    if (c->rb != NULL) {
        for (;;) {
            rc = ossl_try_recv(c, buf, cap, len);
            if (rc != B_AGAIN)
                return rc;
            if (b_wait(c->fd, POLLIN, 30000) != B_OK)
                return b_fail("openssl recv: timed out");
        }
    }
    rc = read_exact(c, hdr, 4);
    if (rc != B_OK)
        return rc;
    uint32_t n = b_get_len(hdr);
    if (n > cap)
        return b_fail("openssl: message of %u bytes, buffer %zu", n, cap);
    rc = read_exact(c, buf, n);
    if (rc != B_OK)
        return rc == B_EOF ? b_fail("openssl: truncated") : rc;
    *len = n;
    return B_OK;
}

static int ossl_set_nonblock(bconn *c)
{
    if (c->rb == NULL && (c->rb = calloc(1, sizeof(*c->rb))) == NULL)
        return b_fail("out of memory");
    /* Event-loop mode reads when the loop says so: no waits of the checks'
     * kind. */
    BIO_set_callback_ex(SSL_get_rbio(c->ssl), NULL);
    return b_nonblock(c->fd);
}

static int ossl_fd(const bconn *c)
{
    return c->fd;
}

static void ossl_close(bconn *c)
{
    if (c == NULL)
        return;
    /* Send close_notify; do not wait for the peer's. */
    (void)SSL_shutdown(c->ssl);
    ERR_clear_error();
    conn_free(c);
}

const transport tr_openssl = {
    .name = "openssl",
    .anchor = NULL,
    .srv_open = ossl_srv_open,
    .srv_accept = ossl_srv_accept,
    .srv_close = ossl_srv_close,
    .connect = ossl_connect,
    .send = ossl_send,
    .recv = ossl_recv,
    .try_recv = ossl_try_recv,
    .set_nonblock = ossl_set_nonblock,
    .fd = ossl_fd,
    .close = ossl_close,
};

const transport tr_openssl_ra = {
    .name = "openssl-ra",
    .anchor = NULL,
    .srv_open = ossl_ra_srv_open,
    .srv_accept = ossl_srv_accept,
    .srv_close = ossl_srv_close,
    .connect = ossl_ra_connect,
    .send = ossl_send,
    .recv = ossl_recv,
    .try_recv = ossl_try_recv,
    .set_nonblock = ossl_set_nonblock,
    .fd = ossl_fd,
    .close = ossl_close,
};
