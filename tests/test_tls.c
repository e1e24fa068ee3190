/*
 * tls.c: TLS 1.3 with an external PSK over real loopback TCP sockets, both
 * ends inside the test.  Most tests drive both ends from one thread on
 * non-blocking descriptors with poll; one runs blocking descriptors with the
 * server in a thread.  Raw OpenSSL peers (a TLS 1.2 client, a certificate
 * server, a stock PSK client) stand in for foreign implementations.
 *
 * SIGPIPE keeps its default action on purpose: if the library ever raised
 * it, the test program would die.
 */
#include "internal.h"
#include "testing.h"
#include "tls_engine.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sodium.h>

#define ID "loopsec/1 0123456789abcdef"
#define OTHER_ID "loopsec/1 fedcba9876543210"
#define RAW_FAIL (-1000) /* a raw OpenSSL peer's handshake failed */
#define DONE_OK 0

static uint8_t secret_a[LSEC_SECRET_BYTES];
static uint8_t secret_b[LSEC_SECRET_BYTES];

/* ------------------------------------------------------------------------ */
/* Sockets                                                                   */

static void set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(
        fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK), 0);
}

/* A connected loopback TCP pair through a listener on 127.0.0.1:0. */
static void tcp_pair(int *cfd, int *sfd, int nonblock)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(l >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(l, 4), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
    *cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(*cfd >= 0);
    assert_int_equal(connect(*cfd, (struct sockaddr *)&a, sizeof(a)), 0);
    *sfd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    assert_true(*sfd >= 0);
    close(l);
    if (nonblock) {
        set_nonblock(*cfd, 1);
        set_nonblock(*sfd, 1);
    }
}

static int is_want(int rc)
{
    return rc == LSEC__WANT_READ || rc == LSEC__WANT_WRITE;
}

/* Wait (bounded) until `fd` can do what `want` asks. */
static void wait_fd(int fd, int want, int ms)
{
    struct pollfd p = {fd, want == LSEC__WANT_WRITE ? POLLOUT : POLLIN, 0};
    (void)poll(&p, 1, ms);
}

/* ------------------------------------------------------------------------ */
/* Stepping two ends of a handshake                                          */

typedef int (*step_fn)(void *obj);

struct end {
    step_fn step;
    void *obj;
    int fd;
    int rc;
};

static int tls_step(void *obj)
{
    return lsec__tls_handshake(obj);
}

static int raw_step(void *obj)
{
    SSL *ssl = obj;
    int r = SSL_do_handshake(ssl);
    int e;

    if (r == 1)
        return DONE_OK;
    e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return LSEC__WANT_READ;
    if (e == SSL_ERROR_WANT_WRITE)
        return LSEC__WANT_WRITE;
    ERR_clear_error();
    return RAW_FAIL;
}

/*
 * Step both ends, polling between rounds, until neither waits (bounded to
 * 5 s).  When one end has finished or failed and the other still waits for
 * it, the finished end's socket is shut for writing so the other sees EOF
 * instead of waiting forever.
 */
static void run_ends(struct end *a, struct end *b)
{
    int64_t deadline = lsec__now_ms() + 5000;
    int64_t one_done_at = 0;
    struct end *e[2] = {a, b};

    a->rc = LSEC__WANT_WRITE;
    b->rc = LSEC__WANT_WRITE;
    while ((is_want(a->rc) || is_want(b->rc)) && lsec__now_ms() < deadline) {
        struct pollfd p[2];
        int np = 0;
        for (int i = 0; i < 2; i++)
            if (is_want(e[i]->rc))
                e[i]->rc = e[i]->step(e[i]->obj);
        if (is_want(a->rc) != is_want(b->rc)) {
            if (one_done_at == 0)
                one_done_at = lsec__now_ms();
            else if (lsec__now_ms() - one_done_at > 500)
                (void)shutdown(is_want(a->rc) ? b->fd : a->fd, SHUT_WR);
        }
        for (int i = 0; i < 2; i++)
            if (is_want(e[i]->rc)) {
                p[np].fd = e[i]->fd;
                p[np].events = e[i]->rc == LSEC__WANT_WRITE ? POLLOUT : POLLIN;
                p[np].revents = 0;
                np++;
            }
        if (np > 0)
            (void)poll(p, (nfds_t)np, 50);
    }
    assert_false(is_want(a->rc));
    assert_false(is_want(b->rc));
}

/* Our client against our server. */
struct pair {
    int cfd, sfd;
    lsec__tls_ctx *sctx;
    lsec__tls *c, *s;
    int crc, src;
};

static void pair_open(struct pair *p, const uint8_t *csecret, const char *cid,
                      const uint8_t *ssecret, const char *sid)
{
    lsec__tls_ctx *cctx;

    memset(p, 0, sizeof(*p));
    tcp_pair(&p->cfd, &p->sfd, 1);
    assert_int_equal(lsec__tls_client_ctx(&cctx), 0);
    assert_int_equal(lsec__tls_ctx_new(LSEC__ROLE_SERVER, &p->sctx), 0);
    assert_int_equal(lsec__tls_new(cctx, p->cfd, csecret, cid, &p->c), 0);
    assert_int_equal(lsec__tls_new(p->sctx, p->sfd, ssecret, sid, &p->s), 0);
}

static void pair_handshake(struct pair *p)
{
    struct end c = {tls_step, p->c, p->cfd, 0};
    struct end s = {tls_step, p->s, p->sfd, 0};
    run_ends(&c, &s);
    p->crc = c.rc;
    p->src = s.rc;
}

static void pair_close(struct pair *p)
{
    lsec__tls_free(p->c);
    lsec__tls_free(p->s);
    lsec__tls_ctx_free(p->sctx);
    if (p->cfd >= 0)
        close(p->cfd);
    if (p->sfd >= 0)
        close(p->sfd);
}

static void pair_connected(struct pair *p)
{
    pair_open(p, secret_a, ID, secret_a, ID);
    pair_handshake(p);
    assert_int_equal(p->crc, 0);
    assert_int_equal(p->src, 0);
}

/* ------------------------------------------------------------------------ */
/* Data helpers                                                              */

/* Write (or read) exactly len bytes, polling on WANT_*, bounded in time. */
static int xfer_all(lsec__tls *t, int fd, uint8_t *buf, size_t len, int writing)
{
    size_t done = 0;
    int64_t deadline = lsec__now_ms() + 5000;

    while (done < len && lsec__now_ms() < deadline) {
        size_t n;
        int rc = writing ? lsec__tls_write(t, buf + done, len - done, &n)
                         : lsec__tls_read(t, buf + done, len - done, &n);
        if (is_want(rc)) {
            wait_fd(fd, rc, 50);
            continue;
        }
        if (rc != 0)
            return rc;
        done += n;
    }
    return done == len ? 0 : LSEC_ETIMEDOUT;
}

static int write_all(lsec__tls *t, int fd, const void *buf, size_t len)
{
    return xfer_all(t, fd, (uint8_t *)(uintptr_t)buf, len, 1);
}

static int read_all(lsec__tls *t, int fd, void *buf, size_t len)
{
    return xfer_all(t, fd, buf, len, 0);
}

/* Read until a final code (not WANT), bounded; returns it. */
static int read_until_error(lsec__tls *t, int fd)
{
    uint8_t buf[256];
    int64_t deadline = lsec__now_ms() + 5000;
    int rc = LSEC__WANT_READ;

    while (lsec__now_ms() < deadline) {
        size_t n;
        rc = lsec__tls_read(t, buf, sizeof(buf), &n);
        if (is_want(rc))
            wait_fd(fd, rc, 50);
        else if (rc != 0)
            break;
    }
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Handshake and data                                                        */

static void test_handshake_tls13_aes128(void **state)
{
    struct pair p;
    char d[128];
    uint8_t buf[16];

    (void)state;
    pair_open(&p, secret_a, ID, secret_a, ID);
    assert_true(lsec__tls_holds_psk(p.c));
    assert_true(lsec__tls_holds_psk(p.s));
    pair_handshake(&p);
    assert_int_equal(p.crc, 0);
    assert_int_equal(p.src, 0);
    /* Done: neither side keeps its own copy of the PSK for the life of the
     * connection. */
    assert_false(lsec__tls_holds_psk(p.c));
    assert_false(lsec__tls_holds_psk(p.s));
    assert_int_equal(lsec__tls_describe(p.c, d, sizeof(d)), 0);
    assert_string_equal(d, "TLSv1.3 TLS_AES_128_GCM_SHA256");
    assert_int_equal(lsec__tls_describe(p.s, d, sizeof(d)), 0);
    assert_string_equal(d, "TLSv1.3 TLS_AES_128_GCM_SHA256");
    assert_int_equal(lsec__tls_describe(p.s, d, 8), LSEC_EMSGSIZE);
    /* A handshake already done is done. */
    assert_int_equal(lsec__tls_handshake(p.c), 0);

    assert_int_equal(write_all(p.c, p.cfd, "ping", 4), 0);
    assert_int_equal(read_all(p.s, p.sfd, buf, 4), 0);
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(write_all(p.s, p.sfd, "pong!", 5), 0);
    assert_int_equal(read_all(p.c, p.cfd, buf, 5), 0);
    assert_memory_equal(buf, "pong!", 5);
    assert_int_equal(ERR_peek_error(), 0);
    pair_close(&p);
}

/* 1 MiB each way at once, in pieces of varying size. */
struct flow {
    lsec__tls *from, *to;
    int from_fd, to_fd;
    const uint8_t *src;
    uint8_t *dst;
    size_t sent, got, total;
    unsigned k;
};

static void flow_step(struct flow *f)
{
    size_t n;
    int rc;

    if (f->sent < f->total) {
        size_t piece = (f->k++ * 7919u) % 70000u + 1;
        if (piece > f->total - f->sent)
            piece = f->total - f->sent;
        rc = lsec__tls_write(f->from, f->src + f->sent, piece, &n);
        if (rc == 0)
            f->sent += n;
        else
            assert_true(is_want(rc));
    }
    while (f->got < f->total) {
        size_t piece = (f->k * 104729u) % 50000u + 1;
        if (piece > f->total - f->got)
            piece = f->total - f->got;
        rc = lsec__tls_read(f->to, f->dst + f->got, piece, &n);
        if (rc != 0) {
            assert_true(is_want(rc));
            break;
        }
        f->got += n;
    }
}

static void test_bulk_both_ways(void **state)
{
    enum { TOTAL = 1024 * 1024 };
    struct pair p;
    uint8_t *a = malloc(TOTAL), *b = malloc(TOTAL);
    uint8_t *ra = malloc(TOTAL), *rb = malloc(TOTAL);
    int64_t deadline = lsec__now_ms() + 20000;

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(ra);
    assert_non_null(rb);
    randombytes_buf(a, TOTAL);
    randombytes_buf(b, TOTAL);
    pair_connected(&p);
    struct flow up = {p.c, p.s, p.cfd, p.sfd, a, ra, 0, 0, TOTAL, 1};
    struct flow down = {p.s, p.c, p.sfd, p.cfd, b, rb, 0, 0, TOTAL, 2};
    while ((up.got < TOTAL || down.got < TOTAL) && lsec__now_ms() < deadline) {
        struct pollfd pf[2] = {{p.cfd, POLLIN | POLLOUT, 0},
                               {p.sfd, POLLIN | POLLOUT, 0}};
        flow_step(&up);
        flow_step(&down);
        (void)poll(pf, 2, 20);
    }
    assert_int_equal(up.got, TOTAL);
    assert_int_equal(down.got, TOTAL);
    assert_memory_equal(a, ra, TOTAL);
    assert_memory_equal(b, rb, TOTAL);
    pair_close(&p);
    free(a);
    free(b);
    free(ra);
    free(rb);
}

static void test_pending_reports_decrypted_bytes(void **state)
{
    struct pair p;
    uint8_t msg[1000], buf[1000];

    (void)state;
    memset(msg, 'x', sizeof(msg));
    pair_connected(&p);
    assert_int_equal(lsec__tls_pending(p.c), 0);
    assert_int_equal(write_all(p.s, p.sfd, msg, sizeof(msg)), 0);
    assert_int_equal(read_all(p.c, p.cfd, buf, 10), 0);
    /* The rest of the record is decrypted and buffered: poll would not
     * show it, lsec__tls_pending must. */
    assert_int_equal(lsec__tls_pending(p.c), sizeof(msg) - 10);
    assert_int_equal(read_all(p.c, p.cfd, buf, sizeof(msg) - 10), 0);
    assert_int_equal(lsec__tls_pending(p.c), 0);
    pair_close(&p);
}

/* Blocking descriptors, the server in its own thread. */
struct server_job {
    lsec__tls *t;
    int rc;
    uint8_t got[5];
};

static void *server_thread(void *arg)
{
    struct server_job *j = arg;
    int64_t deadline = lsec__now_ms() + 5000;

    do {
        j->rc = lsec__tls_handshake(j->t);
    } while (is_want(j->rc) && lsec__now_ms() < deadline);
    if (j->rc == 0)
        j->rc = read_all(j->t, -1, j->got, sizeof(j->got));
    return NULL;
}

static void test_blocking_descriptors(void **state)
{
    int cfd, sfd, rc;
    lsec__tls_ctx *cctx, *sctx;
    lsec__tls *c, *s;
    struct server_job j;
    pthread_t th;
    struct timeval tv = {5, 0};
    int64_t deadline = lsec__now_ms() + 5000;

    (void)state;
    tcp_pair(&cfd, &sfd, 0);
    /* Bound every blocking call in case of a bug. */
    setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(sfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(lsec__tls_client_ctx(&cctx), 0);
    assert_int_equal(lsec__tls_ctx_new(LSEC__ROLE_SERVER, &sctx), 0);
    assert_int_equal(lsec__tls_new(cctx, cfd, secret_a, ID, &c), 0);
    assert_int_equal(lsec__tls_new(sctx, sfd, secret_a, ID, &s), 0);
    memset(&j, 0, sizeof(j));
    j.t = s;
    assert_int_equal(pthread_create(&th, NULL, server_thread, &j), 0);
    do {
        rc = lsec__tls_handshake(c);
    } while (is_want(rc) && lsec__now_ms() < deadline);
    assert_int_equal(rc, 0);
    assert_int_equal(write_all(c, cfd, "hello", 5), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(j.rc, 0);
    assert_memory_equal(j.got, "hello", 5);
    lsec__tls_free(c);
    lsec__tls_free(s);
    lsec__tls_ctx_free(sctx);
    close(cfd);
    close(sfd);
}

/* One server context serves many connections. */
static void test_server_ctx_reused(void **state)
{
    lsec__tls_ctx *cctx, *sctx;

    (void)state;
    assert_int_equal(lsec__tls_client_ctx(&cctx), 0);
    assert_int_equal(lsec__tls_ctx_new(LSEC__ROLE_SERVER, &sctx), 0);
    for (int i = 0; i < 3; i++) {
        int cfd, sfd;
        lsec__tls *c, *s;
        tcp_pair(&cfd, &sfd, 1);
        assert_int_equal(lsec__tls_new(cctx, cfd, secret_a, ID, &c), 0);
        assert_int_equal(lsec__tls_new(sctx, sfd, secret_a, ID, &s), 0);
        struct end ec = {tls_step, c, cfd, 0}, es = {tls_step, s, sfd, 0};
        run_ends(&ec, &es);
        assert_int_equal(ec.rc, 0);
        assert_int_equal(es.rc, 0);
        lsec__tls_free(c);
        lsec__tls_free(s);
        close(cfd);
        close(sfd);
    }
    lsec__tls_ctx_free(sctx);
}

/* ------------------------------------------------------------------------ */
/* Authentication failures                                                   */

static void test_wrong_secret(void **state)
{
    struct pair p;

    (void)state;
    pair_open(&p, secret_b, ID, secret_a, ID);
    pair_handshake(&p);
    assert_int_equal(p.crc, LSEC_EAUTH);
    assert_int_equal(p.src, LSEC_EAUTH);
    assert_int_equal(ERR_peek_error(), 0);
    /* The detail is a fixed reason, never OpenSSL's text. */
    assert_string_equal(lsec_last_detail(), "TLS PSK authentication failed");
    /* A failed connection stays failed. */
    assert_int_equal(lsec__tls_handshake(p.c), LSEC_EAUTH);
    size_t n;
    uint8_t b[4];
    assert_int_equal(lsec__tls_read(p.c, b, sizeof(b), &n), LSEC_EAUTH);
    assert_int_equal(ERR_peek_error(), 0);
    pair_close(&p);
}

static void test_wrong_identity(void **state)
{
    static const char *ids[] = {OTHER_ID, "loopsec/1 0123456789abcdeF",
                                "loopsec/1 0123456789abcde", ID "0", "x"};
    (void)state;
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        struct pair p;
        /* Even with the right secret, another identity is refused. */
        pair_open(&p, secret_a, ids[i], secret_a, ID);
        pair_handshake(&p);
        assert_int_equal(p.crc, LSEC_EAUTH);
        assert_int_equal(p.src, LSEC_EAUTH);
        assert_int_equal(ERR_peek_error(), 0);
        pair_close(&p);
    }
}

/* ------------------------------------------------------------------------ */
/* Raw OpenSSL peers                                                         */

static void test_psk(uint8_t psk[32], const uint8_t *secret)
{
    /* PROTOCOL.md "Keys", written out here rather than through lib/. */
    crypto_generichash(psk, 32,
                       (const unsigned char *)"loopsec/1 tls psk server",
                       strlen("loopsec/1 tls psk server"), secret, 32);
}

/*
 * One of our ends (`our_role`) against a raw OpenSSL end built from `rctx`
 * (which the caller configured and still owns), handshake run.
 */
struct raw_run {
    int cfd, sfd, rfd, ofd;
    SSL *r;
    lsec__tls_ctx *sctx; /* ours, when we are the server */
    lsec__tls *t;
    int raw_rc, our_rc;
};

static void raw_run_open(struct raw_run *x, SSL_CTX *rctx, int our_role)
{
    lsec__tls_ctx *ctx;

    memset(x, 0, sizeof(*x));
    assert_non_null(rctx);
    tcp_pair(&x->cfd, &x->sfd, 1);
    x->ofd = our_role == LSEC__ROLE_SERVER ? x->sfd : x->cfd;
    x->rfd = our_role == LSEC__ROLE_SERVER ? x->cfd : x->sfd;
    x->r = SSL_new(rctx);
    assert_non_null(x->r);
    assert_int_equal(SSL_set_fd(x->r, x->rfd), 1);
    if (our_role == LSEC__ROLE_SERVER) {
        SSL_set_connect_state(x->r);
        assert_int_equal(lsec__tls_ctx_new(LSEC__ROLE_SERVER, &x->sctx), 0);
        ctx = x->sctx;
    } else {
        SSL_set_accept_state(x->r);
        assert_int_equal(lsec__tls_client_ctx(&ctx), 0);
    }
    assert_int_equal(lsec__tls_new(ctx, x->ofd, secret_a, ID, &x->t), 0);
    struct end er = {raw_step, x->r, x->rfd, 0};
    struct end eo = {tls_step, x->t, x->ofd, 0};
    run_ends(&er, &eo);
    x->raw_rc = er.rc;
    x->our_rc = eo.rc;
}

static void raw_run_close(struct raw_run *x, SSL_CTX *rctx)
{
    SSL_free(x->r);
    SSL_CTX_free(rctx);
    lsec__tls_free(x->t);
    lsec__tls_ctx_free(x->sctx);
    close(x->cfd);
    close(x->sfd);
    ERR_clear_error(); /* the raw end's errors, not ours */
}

/* A TLS 1.2-only client is refused: ETLS on our server. */
static void test_tls12_client_refused(void **state)
{
    SSL_CTX *rctx = SSL_CTX_new(TLS_client_method());
    struct raw_run x;

    (void)state;
    assert_int_equal(SSL_CTX_set_min_proto_version(rctx, TLS1_2_VERSION), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(rctx, TLS1_2_VERSION), 1);
    raw_run_open(&x, rctx, LSEC__ROLE_SERVER);
    assert_int_equal(x.raw_rc, RAW_FAIL);
    assert_int_equal(x.our_rc, LSEC_ETLS);
    assert_string_equal(lsec_last_detail(), "the peer does not speak TLS 1.3");
    assert_int_equal(ERR_peek_error(), 0);
    raw_run_close(&x, rctx);
}

/* A self-signed P-256 certificate for a server that has no PSK. */
static void add_self_signed(SSL_CTX *ctx)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();

    assert_non_null(k);
    assert_non_null(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, k), 1);
    X509_free(x);
    EVP_PKEY_free(k);
}

/* A TLS 1.3 server that ignores the PSK and presents a certificate must
 * never be accepted: only the PSK authenticates a server. */
static void test_certificate_server_refused(void **state)
{
    SSL_CTX *rctx = SSL_CTX_new(TLS_server_method());
    struct raw_run x;

    (void)state;
    assert_int_equal(SSL_CTX_set_min_proto_version(rctx, TLS1_3_VERSION), 1);
    add_self_signed(rctx);
    raw_run_open(&x, rctx, LSEC__ROLE_CLIENT);
    assert_int_equal(x.our_rc, LSEC_EAUTH);
    assert_int_equal(ERR_peek_error(), 0);
    assert_int_equal(x.raw_rc, RAW_FAIL);
    raw_run_close(&x, rctx);
}

/* What our client offers, as a raw server sees its ClientHello. */
static int hello_seen, hello_kex_ok, hello_early_data, hello_psk;
/* The cipher suites, supported_groups (10) and key_share (51) groups, as
 * "1301 1303 00ff" style text, for PROTOCOL.md "Parameters". */
static char hello_suites[128], hello_groups[128], hello_shares[64];

static void hex_list(char *out, size_t outlen, const unsigned char *p, size_t n)
{
    out[0] = '\0';
    for (size_t i = 0; i + 1 < n + 1 && i + 2 <= n; i += 2) {
        size_t used = strlen(out);
        snprintf(out + used, outlen - used, "%s%02x%02x", used ? " " : "", p[i],
                 p[i + 1]);
    }
}

static int capture_hello(SSL *ssl, int *alert, void *arg)
{
    const unsigned char *ext;
    size_t len;

    (void)arg;
    hello_seen = 1;
    len = SSL_client_hello_get0_ciphers(ssl, &ext);
    hex_list(hello_suites, sizeof(hello_suites), ext, len);
    hello_groups[0] = hello_shares[0] = '\0';
    /* supported_groups: a 2-byte length, then the groups. */
    if (SSL_client_hello_get0_ext(ssl, 10, &ext, &len) == 1 && len >= 2)
        hex_list(hello_groups, sizeof(hello_groups), ext + 2, len - 2);
    /* key_share: a 2-byte length, then (group, 2-byte length, key)... */
    if (SSL_client_hello_get0_ext(ssl, 51, &ext, &len) == 1 && len >= 2) {
        size_t off = 2;
        while (off + 4 <= len) {
            size_t used = strlen(hello_shares);
            size_t klen = (size_t)ext[off + 2] << 8 | ext[off + 3];
            snprintf(hello_shares + used, sizeof(hello_shares) - used,
                     "%s%02x%02x", used ? " " : "", ext[off], ext[off + 1]);
            off += 4 + klen;
        }
    }
    /* psk_key_exchange_modes (45): exactly one mode, psk_dhe_ke (1). */
    hello_kex_ok = SSL_client_hello_get0_ext(ssl, 45, &ext, &len) == 1 &&
                   len == 2 && ext[0] == 1 && ext[1] == 1;
    hello_early_data = SSL_client_hello_get0_ext(ssl, 42, &ext, &len) == 1;
    hello_psk = SSL_client_hello_get0_ext(ssl, 41, &ext, &len) == 1;
    *alert = SSL_AD_HANDSHAKE_FAILURE;
    return SSL_CLIENT_HELLO_ERROR; /* the hello is all this test needs */
}

static void test_client_offers_psk_dhe_ke_only(void **state)
{
    SSL_CTX *rctx = SSL_CTX_new(TLS_server_method());
    struct raw_run x;

    (void)state;
    hello_seen = hello_kex_ok = hello_early_data = hello_psk = 0;
    SSL_CTX_set_client_hello_cb(rctx, capture_hello, NULL);
    raw_run_open(&x, rctx, LSEC__ROLE_CLIENT);
    assert_int_equal(hello_seen, 1);
    assert_int_equal(hello_psk, 1);
    assert_int_equal(hello_kex_ok, 1);
    assert_int_equal(hello_early_data, 0);
    /* PROTOCOL.md "Parameters" states exactly what the C client sends:
     * the two TLS 1.3 suites and the renegotiation SCSV (0x00ff, which
     * OpenSSL always appends), OpenSSL 3's default groups, and one key
     * share, X25519 (0x001d). */
    print_message("suites: %s; groups: %s; key shares: %s\n", hello_suites,
                  hello_groups, hello_shares);
    assert_string_equal(hello_suites, "1301 1303 00ff");
    assert_string_equal(hello_shares, "001d");
    assert_true(strncmp(hello_groups, "001d", 4) == 0);
    assert_int_equal(x.our_rc, LSEC_EAUTH);
    assert_int_equal(x.raw_rc, RAW_FAIL);
    raw_run_close(&x, rctx);
}

/* A stock OpenSSL PSK client (as s_client -psk builds it) interoperates
 * with our server, and the server issues no session ticket. */
static uint8_t raw_psk[32];
static bool raw_early; /* the raw client's PSK session allows 0-RTT */
static int raw_tickets;

static int raw_use_psk(SSL *ssl, const EVP_MD *md, const unsigned char **id,
                       size_t *idlen, SSL_SESSION **sess)
{
    const unsigned char aes128[2] = {0x13, 0x01};
    SSL_SESSION *s = SSL_SESSION_new();

    (void)md;
    assert_non_null(s);
    assert_int_equal(SSL_SESSION_set1_master_key(s, raw_psk, 32), 1);
    assert_int_equal(SSL_SESSION_set_cipher(s, SSL_CIPHER_find(ssl, aes128)),
                     1);
    assert_int_equal(SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION), 1);
    if (raw_early)
        assert_int_equal(SSL_SESSION_set_max_early_data(s, 16384), 1);
    *sess = s;
    *id = (const unsigned char *)ID;
    *idlen = strlen(ID);
    return 1;
}

static int raw_new_session(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    (void)sess;
    raw_tickets++;
    return 0;
}

static void test_stock_psk_client_no_tickets(void **state)
{
    SSL_CTX *rctx = SSL_CTX_new(TLS_client_method());
    struct raw_run x;
    char buf[8];
    int64_t deadline;
    int got = 0;

    (void)state;
    test_psk(raw_psk, secret_a);
    raw_tickets = 0;
    assert_int_equal(SSL_CTX_set_min_proto_version(rctx, TLS1_3_VERSION), 1);
    SSL_CTX_set_session_cache_mode(rctx, SSL_SESS_CACHE_CLIENT);
    SSL_CTX_sess_set_new_cb(rctx, raw_new_session);
    SSL_CTX_set_psk_use_session_callback(rctx, raw_use_psk);
    /* This client also offers psk_ke (no key exchange); the handshake
     * still runs (EC)DHE.  (OpenSSL prefers psk_dhe_ke anyway; that the
     * server never allows psk_ke is its configuration, not observable with
     * an OpenSSL client, which cannot offer psk_ke alone.) */
    SSL_CTX_set_options(rctx, SSL_OP_ALLOW_NO_DHE_KEX);
    raw_run_open(&x, rctx, LSEC__ROLE_SERVER);
    assert_int_equal(x.raw_rc, DONE_OK);
    assert_int_equal(x.our_rc, 0);
    assert_true(SSL_get_negotiated_group(x.r) != 0);
    assert_string_equal(SSL_get_cipher_name(x.r), "TLS_AES_128_GCM_SHA256");
    assert_int_equal(SSL_session_reused(x.r), 1);
    /* Anything the server sent after its Finished (a ticket would be)
     * is processed before this byte. */
    assert_int_equal(write_all(x.t, x.sfd, "z", 1), 0);
    deadline = lsec__now_ms() + 5000;
    while (got <= 0 && lsec__now_ms() < deadline) {
        got = SSL_read(x.r, buf, sizeof(buf));
        if (got <= 0) {
            assert_int_equal(SSL_get_error(x.r, got), SSL_ERROR_WANT_READ);
            wait_fd(x.cfd, LSEC__WANT_READ, 50);
        }
    }
    assert_int_equal(got, 1);
    assert_int_equal(buf[0], 'z');
    assert_int_equal(raw_tickets, 0);
    raw_run_close(&x, rctx);
}

/*
 * A client that offers 0-RTT (early data, allowed by its PSK session) gets a
 * full handshake: the server rejects the early data, skips it, and the
 * handshake completes (issue 13 item 16); nothing sent early is delivered,
 * and data sent after the handshake is.
 */
static void test_early_data_client_falls_back(void **state)
{
    SSL_CTX *rctx = SSL_CTX_new(TLS_client_method());
    int cfd, sfd;
    lsec__tls_ctx *sctx;
    lsec__tls *t;
    SSL *r;
    size_t written = 0, n = 0;
    char buf[16];

    (void)state;
    test_psk(raw_psk, secret_a);
    raw_early = true;
    assert_non_null(rctx);
    assert_int_equal(SSL_CTX_set_min_proto_version(rctx, TLS1_3_VERSION), 1);
    SSL_CTX_set_psk_use_session_callback(rctx, raw_use_psk);
    tcp_pair(&cfd, &sfd, 1);
    r = SSL_new(rctx);
    assert_non_null(r);
    assert_int_equal(SSL_set_fd(r, cfd), 1);
    SSL_set_connect_state(r);
    assert_int_equal(lsec__tls_ctx_new(LSEC__ROLE_SERVER, &sctx), 0);
    assert_int_equal(lsec__tls_new(sctx, sfd, secret_a, ID, &t), 0);
    /* The ClientHello goes out with early data behind it. */
    assert_int_equal(SSL_write_early_data(r, "early", 5, &written), 1);
    assert_int_equal(written, 5);
    struct end er = {raw_step, r, cfd, 0};
    struct end eo = {tls_step, t, sfd, 0};
    run_ends(&er, &eo);
    if (eo.rc != 0)
        fail_msg("server: %s (%s)", lsec_errname(eo.rc), lsec_last_detail());
    assert_int_equal(er.rc, DONE_OK);
    assert_int_equal(SSL_get_early_data_status(r), SSL_EARLY_DATA_REJECTED);
    assert_int_equal(SSL_session_reused(r), 1);
    /* After the handshake: only what was sent then arrives. */
    assert_int_equal(SSL_write(r, "late", 4), 4);
    int64_t deadline = lsec__now_ms() + 5000;
    int rc;
    do {
        rc = lsec__tls_read(t, buf, sizeof(buf), &n);
        if (is_want(rc))
            wait_fd(sfd, rc, 50);
    } while (is_want(rc) && lsec__now_ms() < deadline);
    assert_int_equal(rc, 0);
    assert_int_equal(n, 4);
    assert_memory_equal(buf, "late", 4);
    raw_early = false;
    SSL_free(r);
    SSL_CTX_free(rctx);
    lsec__tls_free(t);
    lsec__tls_ctx_free(sctx);
    close(cfd);
    close(sfd);
    ERR_clear_error();
}

/* ------------------------------------------------------------------------ */
/* Mode mismatches and peers that hang up                                    */

/* Run the server end alone after a raw client sent `hello` and shut its
 * side for writing; what the server wrote back goes to `back`. */
static int server_against_bytes(const void *hello, size_t len, int64_t *ms,
                                uint8_t *back, size_t cap, ssize_t *backlen)
{
    int cfd, sfd, rc;
    lsec__tls_ctx *sctx;
    lsec__tls *s;
    int64_t t0, deadline;

    tcp_pair(&cfd, &sfd, 1);
    assert_int_equal(lsec__tls_ctx_new(LSEC__ROLE_SERVER, &sctx), 0);
    assert_int_equal(lsec__tls_new(sctx, sfd, secret_a, ID, &s), 0);
    if (len > 0)
        assert_int_equal(send(cfd, hello, len, MSG_NOSIGNAL), (ssize_t)len);
    /* The client is done: what follows is EOF unless the server answers. */
    assert_int_equal(shutdown(cfd, SHUT_WR), 0);
    t0 = lsec__now_ms();
    deadline = t0 + 5000;
    do {
        rc = lsec__tls_handshake(s);
        if (is_want(rc))
            wait_fd(sfd, rc, 50);
    } while (is_want(rc) && lsec__now_ms() < deadline);
    *ms = lsec__now_ms() - t0;
    assert_int_equal(ERR_peek_error(), 0);
    lsec__tls_free(s);
    lsec__tls_ctx_free(sctx);
    close(sfd);
    /* Whatever came back, up to the close (a FIN, or a reset when the
     * server left part of the hello unread). */
    *backlen = 0;
    for (int i = 0; i < 100 && (size_t)*backlen < cap; i++) {
        ssize_t n;
        wait_fd(cfd, LSEC__WANT_READ, 50);
        n = recv(cfd, back + *backlen, cap - (size_t)*backlen, MSG_DONTWAIT);
        if (n > 0)
            *backlen += n;
        else if (n == 0 || (errno != EAGAIN && errno != EINTR))
            break;
    }
    close(cfd);
    return rc;
}

static void test_auth_hello_to_tls_server(void **state)
{
    static const uint8_t alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46};
    uint8_t hello[8 + 32] = {'L', 'S', 'E', 'C', 1, 1, 0, 0};
    uint8_t back[64];
    ssize_t n;
    int64_t ms;

    (void)state;
    assert_int_equal(
        server_against_bytes(hello, sizeof(hello), &ms, back, sizeof(back), &n),
        LSEC_EMODE);
    assert_true(ms < 1000);
    /* Exactly one fatal protocol_version alert, so that the auth-mode
     * client can tell a TLS listener at once. */
    assert_int_equal(n, sizeof(alert));
    assert_memory_equal(back, alert, sizeof(alert));
}

static void test_http_to_tls_server(void **state)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    uint8_t back[64];
    ssize_t n;
    int64_t ms;

    (void)state;
    assert_int_equal(
        server_against_bytes(req, sizeof(req) - 1, &ms, back, sizeof(back), &n),
        LSEC_EPROTO);
    assert_true(ms < 1000);
    /* Not TLS: closed without a byte written. */
    assert_int_equal(n, 0);
}

/* Drive our client's handshake until it ends (bounded: 5 s from t0). */
static int client_to_end(lsec__tls *c, int cfd, int64_t t0)
{
    int64_t deadline = t0 + 5000;
    int rc;

    do {
        rc = lsec__tls_handshake(c);
        if (is_want(rc))
            wait_fd(cfd, rc, 50);
    } while (is_want(rc) && lsec__now_ms() < deadline);
    return rc;
}

/* Our client against a peer that reads `read_first` bytes of the hello
 * (all there is for SIZE_MAX), writes `answer`, and closes: the code and
 * detail the client ends with, at once. */
static void client_against_peer(size_t read_first, const uint8_t *answer,
                                size_t alen, int want, const char *detail)
{
    int cfd, sfd;
    lsec__tls_ctx *cctx;
    lsec__tls *c;
    uint8_t junk[2048];
    int64_t t0;

    tcp_pair(&cfd, &sfd, 1);
    assert_int_equal(lsec__tls_client_ctx(&cctx), 0);
    assert_int_equal(lsec__tls_new(cctx, cfd, secret_a, ID, &c), 0);
    t0 = lsec__now_ms();
    /* Sends the ClientHello. */
    assert_int_equal(lsec__tls_handshake(c), LSEC__WANT_READ);
    if (read_first > 0) {
        size_t n = read_first < sizeof(junk) ? read_first : sizeof(junk);
        wait_fd(sfd, LSEC__WANT_READ, 1000);
        ssize_t got = recv(sfd, junk, n, 0);
        assert_true(got > 0);
        if (read_first != SIZE_MAX)
            assert_int_equal(got, (ssize_t)read_first);
    }
    if (alen > 0)
        assert_int_equal(send(sfd, answer, alen, 0), (ssize_t)alen);
    close(sfd);
    assert_int_equal(client_to_end(c, cfd, t0), want);
    assert_true(lsec__now_ms() - t0 < 1000);
    assert_string_equal(lsec_last_detail(), detail);
    assert_int_equal(ERR_peek_error(), 0);
    lsec__tls_free(c);
    close(cfd);
}

/* A peer that hangs up without a byte of answer, as a listener that refuses
 * a connection does (descriptor limit, eviction, peer policy): ECLOSED at
 * once, retryable -- not EMODE, which an application may take as
 * permanent.  Also when it read part of the hello first, so that its close
 * becomes a reset. */
static void test_client_peer_closes_silently(void **state)
{
    static const char refused[] =
        "the listener closed the connection without a TLS answer (refused: "
        "descriptor limit, too many pending handshakes or peer policy; retry)";
    (void)state;
    client_against_peer(0, NULL, 0, LSEC_ECLOSED, refused);
    client_against_peer(40, NULL, 0, LSEC_ECLOSED, refused);
}

/* Auth-mode bytes ("LSEC" 01 01 00 00) answering a tls client are not TLS:
 * an auth listener never speaks first (it closes silently, ECLOSED above),
 * so the client takes no mode hint from a peer, EPROTO at once. */
static void test_client_meets_auth_bytes(void **state)
{
    static const uint8_t hello[8] = {'L', 'S', 'E', 'C', 1, 1, 0, 0};
    (void)state;
    client_against_peer(SIZE_MAX, hello, sizeof(hello), LSEC_EPROTO,
                        "the peer's bytes are not TLS");
}

/* Our server against a client that leaves: before any byte it is a clean
 * close (ECLOSED), after part of a hello a lost connection (ERESET). */
static void test_server_client_leaves(void **state)
{
    static const uint8_t part[] = {0x16, 0x03, 0x01, 0x01, 0x00, 0x01};
    uint8_t back[64];
    ssize_t n;
    int64_t ms;

    (void)state;
    assert_int_equal(server_against_bytes(NULL, 0, &ms, back, sizeof(back), &n),
                     LSEC_ECLOSED);
    assert_true(ms < 1000);
    assert_int_equal(n, 0);
    assert_int_equal(
        server_against_bytes(part, sizeof(part), &ms, back, sizeof(back), &n),
        LSEC_ERESET);
    assert_true(ms < 1000);
    /* A client that left hears nothing, not even an alert. */
    assert_int_equal(n, 0);
}

/* The peer sends half a record and vanishes. */
static void test_close_mid_record(void **state)
{
    static const uint8_t half[] = {0x17, 0x03, 0x03, 0x00, 0x40, 1, 2, 3, 4, 5};
    struct pair p;

    (void)state;
    pair_connected(&p);
    assert_int_equal(send(p.sfd, half, sizeof(half), MSG_NOSIGNAL),
                     (ssize_t)sizeof(half));
    close(p.sfd);
    p.sfd = -1;
    assert_int_equal(read_until_error(p.c, p.cfd), LSEC_ERESET);
    assert_int_equal(ERR_peek_error(), 0);
    pair_close(&p);
}

/* EOF at a record boundary without close_notify is a lost connection. */
static void test_eof_without_close_notify(void **state)
{
    struct pair p;

    (void)state;
    pair_connected(&p);
    close(p.sfd);
    p.sfd = -1;
    assert_int_equal(read_until_error(p.c, p.cfd), LSEC_ERESET);
    assert_int_equal(ERR_peek_error(), 0);
    pair_close(&p);
}

/* close_notify is a clean end; reads keep saying so, writes still work
 * (TLS 1.3 half-close). */
static void test_close_notify(void **state)
{
    struct pair p;
    uint8_t b[4];

    (void)state;
    pair_connected(&p);
    assert_int_equal(write_all(p.s, p.sfd, "bye", 3), 0);
    lsec__tls_shutdown(p.s);
    assert_int_equal(read_all(p.c, p.cfd, b, 3), 0);
    assert_memory_equal(b, "bye", 3);
    assert_int_equal(read_until_error(p.c, p.cfd), LSEC_ECLOSED);
    assert_int_equal(read_until_error(p.c, p.cfd), LSEC_ECLOSED);
    assert_int_equal(ERR_peek_error(), 0);
    assert_int_equal(write_all(p.c, p.cfd, "ack", 3), 0);
    assert_int_equal(read_all(p.s, p.sfd, b, 3), 0);
    assert_memory_equal(b, "ack", 3);
    pair_close(&p);
}

/* ------------------------------------------------------------------------ */
/* The I/O shell over the engine's buffers                                   */

static int recv_count, send_count, recv_limit, recv_eagain_after;

static ssize_t counting_recv(int fd, void *buf, size_t len, int flags)
{
    /* recv_eagain_after >= 0: that many calls get bytes, then EAGAIN once. */
    if (recv_count++ == recv_eagain_after) {
        recv_eagain_after = -1;
        errno = EAGAIN;
        return -1;
    }
    if (recv_limit > 0 && len > (size_t)recv_limit)
        len = (size_t)recv_limit;
    return recv(fd, buf, len, flags);
}

static ssize_t counting_send(int fd, const void *buf, size_t len, int flags)
{
    send_count++;
    return send(fd, buf, len, flags);
}

static ssize_t full_send(int fd, const void *buf, size_t len, int flags)
{
    (void)fd;
    (void)buf;
    (void)len;
    (void)flags;
    send_count++;
    errno = EAGAIN;
    return -1;
}

/* Wait until `fd` holds at least `n` unread bytes (bounded). */
static void wait_unread(int fd, int n)
{
    int avail = 0;
    for (int i = 0; i < 500; i++) {
        assert_int_equal(ioctl(fd, FIONREAD, &avail), 0);
        if (avail >= n)
            return;
        usleep(1000);
    }
    fail_msg("only %d of %d bytes arrived", avail, n);
}

/* A record whose first 10 bytes come in one read and the rest later:
 * WANT_READ with nothing pending, then the whole message. */
static void test_record_split_across_reads(void **state)
{
    struct pair p;
    uint8_t msg[100], buf[100];
    size_t n;

    (void)state;
    randombytes_buf(msg, sizeof(msg));
    pair_connected(&p);
    assert_int_equal(write_all(p.s, p.sfd, msg, sizeof(msg)), 0);
    wait_unread(p.cfd, (int)sizeof(msg) + 22);
    recv_count = 0;
    recv_limit = 10;
    recv_eagain_after = 1;
    lsec__io.recv = counting_recv;
    assert_int_equal(lsec__tls_read(p.c, buf, sizeof(buf), &n),
                     LSEC__WANT_READ);
    assert_int_equal(n, 0);
    assert_int_equal(lsec__tls_pending(p.c), 0);
    assert_int_equal(recv_count, 2); /* 10 bytes, then EAGAIN */
    recv_limit = 0;
    assert_int_equal(lsec__tls_read(p.c, buf, sizeof(buf), &n), 0);
    assert_int_equal(n, sizeof(msg));
    assert_memory_equal(buf, msg, sizeof(msg));
    lsec__io_reset();
    pair_close(&p);
}

/* An application-data record of 20 bytes that no key opens. */
static const uint8_t bad_record[] = {
    0x17, 0x03, 0x03, 0x00, 0x14, 1,  2,  3,  4,  5,  6,  7, 8,
    9,    10,   11,   12,   13,   14, 15, 16, 17, 18, 19, 20};

/* One read of at most `cap` bytes (<= 64) brings exactly `want`, and
 * leaves OpenSSL's error queue empty. */
static void read_is(struct pair *p, size_t cap, const char *want)
{
    uint8_t buf[64];
    size_t n;

    assert_true(cap <= sizeof(buf));
    assert_int_equal(lsec__tls_read(p->c, buf, cap, &n), 0);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(buf, want, n);
    assert_int_equal(ERR_peek_error(), 0);
}

/* The next `times` reads fail with `code`, delivering nothing. */
static void reads_fail(struct pair *p, int code, int times)
{
    uint8_t buf[64];
    size_t n;

    for (int i = 0; i < times; i++) {
        assert_int_equal(lsec__tls_read(p->c, buf, sizeof(buf), &n), code);
        assert_int_equal(n, 0);
    }
    assert_int_equal(ERR_peek_error(), 0);
}

/* A connected pair whose client socket holds three records ("one",
 * "two!", "three"), its recv counted from here on. */
static void three_records(struct pair *p)
{
    pair_connected(p);
    assert_int_equal(write_all(p->s, p->sfd, "one", 3), 0);
    assert_int_equal(write_all(p->s, p->sfd, "two!", 4), 0);
    assert_int_equal(write_all(p->s, p->sfd, "three", 5), 0);
    wait_unread(p->cfd, 3 * 22 + 12);
    recv_count = 0;
    recv_limit = 0;
    recv_eagain_after = -1;
    lsec__io.recv = counting_recv;
}

/* Three records in the socket: one recv takes them all, and one read
 * decrypts every whole one into the caller's buffer (before: one record
 * per read, the next decrypted ahead with SSL_peek). */
static void test_several_records_one_recv(void **state)
{
    struct pair p;
    uint8_t buf[64];
    size_t n;

    (void)state;
    three_records(&p);
    assert_int_equal(lsec__tls_read(p.c, buf, sizeof(buf), &n), 0);
    assert_int_equal(n, 12);
    assert_memory_equal(buf, "onetwo!three", 12);
    assert_int_equal(lsec__tls_pending(p.c), 0);
    assert_int_equal(p.c->in.off, p.c->in.len);
    assert_int_equal(recv_count, 1);
    assert_int_equal(ERR_peek_error(), 0);
    lsec__io_reset();
    pair_close(&p);
}

/* The same records into a 5-byte buffer: a read fills it across records,
 * and what a record has left over is plaintext lsec__tls_pending counts. */
static void test_several_records_small_buffer(void **state)
{
    struct pair p;
    uint8_t buf[5];
    size_t n;

    (void)state;
    three_records(&p);
    assert_int_equal(lsec__tls_read(p.c, buf, sizeof(buf), &n), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "onetw", 5);
    assert_int_equal(lsec__tls_pending(p.c), 2);
    assert_int_equal(lsec__tls_read(p.c, buf, sizeof(buf), &n), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "o!thr", 5);
    assert_int_equal(lsec__tls_pending(p.c), 2);
    assert_int_equal(lsec__tls_read(p.c, buf, sizeof(buf), &n), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(buf, "ee", 2);
    assert_int_equal(lsec__tls_pending(p.c), 0);
    assert_int_equal(recv_count, 1);
    assert_int_equal(ERR_peek_error(), 0);
    lsec__io_reset();
    pair_close(&p);
}

/* A bad record behind a good one in the same recv: the good one is
 * delivered, and the next read reports the bad one at once (it was
 * decrypted ahead, so nothing is left for a poll to wait for). */
static void test_bad_record_read_ahead(void **state)
{
    struct pair p;
    uint8_t buf[16];
    size_t n;

    (void)state;
    pair_connected(&p);
    assert_int_equal(write_all(p.s, p.sfd, "one", 3), 0);
    assert_int_equal(send(p.sfd, bad_record, sizeof(bad_record), MSG_NOSIGNAL),
                     (ssize_t)sizeof(bad_record));
    wait_unread(p.cfd, 22 + 3 + (int)sizeof(bad_record));
    assert_int_equal(lsec__tls_read(p.c, buf, sizeof(buf), &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(lsec__tls_pending(p.c), 0);
    assert_int_equal(lsec__tls_read(p.c, buf, sizeof(buf), &n), LSEC_ETLS);
    assert_int_equal(lsec__tls_read(p.c, buf, sizeof(buf), &n), LSEC_ETLS);
    assert_int_equal(ERR_peek_error(), 0);
    pair_close(&p);
}

/* Review of the many-records read: what stands behind good records in the
 * same recv.  Each good byte comes once, in order; what follows is
 * reported by the next read, with the error queue empty after every call. */

/* A close_notify behind two records: both delivered by one read, then
 * LSEC_ECLOSED, again on the next read. */
static void test_close_notify_behind_records(void **state)
{
    struct pair p;

    (void)state;
    pair_connected(&p);
    assert_int_equal(write_all(p.s, p.sfd, "one", 3), 0);
    assert_int_equal(write_all(p.s, p.sfd, "two!", 4), 0);
    assert_int_equal(lsec__tls_close_notify_step(p.s), 0);
    /* Two records of 22 + 3 and 22 + 4, the alert's 5 + 2 + 1 + 16. */
    wait_unread(p.cfd, 2 * 22 + 7 + 24);
    read_is(&p, 64, "onetwo!");
    assert_int_equal(lsec__tls_pending(p.c), 0);
    reads_fail(&p, LSEC_ECLOSED, 2);
    pair_close(&p);
}

/* A KeyUpdate (update requested) between records: one read goes through
 * it and delivers every record behind it; our answering KeyUpdate reaches
 * the peer, which reads what we write next under the new keys. */
static void test_key_update_between_records(void **state)
{
    struct pair p;
    uint8_t buf[64];
    size_t n;

    (void)state;
    pair_connected(&p);
    assert_int_equal(write_all(p.s, p.sfd, "one", 3), 0);
    assert_int_equal(SSL_key_update(p.s->ssl, SSL_KEY_UPDATE_REQUESTED), 1);
    assert_int_equal(write_all(p.s, p.sfd, "two!", 4), 0);
    assert_int_equal(write_all(p.s, p.sfd, "three", 5), 0);
    /* The KeyUpdate record: 5 + (4 + 1) + 1 + 16. */
    wait_unread(p.cfd, 3 * 22 + 12 + 27);
    recv_count = 0;
    recv_limit = 0;
    recv_eagain_after = -1;
    lsec__io.recv = counting_recv;
    assert_int_equal(lsec__tls_read(p.c, buf, sizeof(buf), &n), 0);
    assert_int_equal(n, 12);
    assert_memory_equal(buf, "onetwo!three", 12);
    assert_int_equal(lsec__tls_pending(p.c), 0);
    assert_int_equal(recv_count, 1);
    assert_int_equal(ERR_peek_error(), 0);
    lsec__io_reset();
    assert_int_equal(write_all(p.c, p.cfd, "ack", 3), 0);
    assert_int_equal(read_all(p.s, p.sfd, buf, 3), 0);
    assert_memory_equal(buf, "ack", 3);
    assert_int_equal(write_all(p.s, p.sfd, "four", 4), 0);
    assert_int_equal(read_all(p.c, p.cfd, buf, 4), 0);
    assert_memory_equal(buf, "four", 4);
    assert_int_equal(ERR_peek_error(), 0);
    pair_close(&p);
}

/* A KeyUpdate as the first record a read meets, a record behind it: the
 * same read delivers the record (before: LSEC__WANT_READ, the record left
 * in `in` where neither the socket nor lsec__tls_pending shows it). */
static void test_key_update_first(void **state)
{
    struct pair p;

    (void)state;
    pair_connected(&p);
    assert_int_equal(SSL_key_update(p.s->ssl, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
    assert_int_equal(write_all(p.s, p.sfd, "two!", 4), 0);
    wait_unread(p.cfd, 27 + 22 + 4);
    read_is(&p, 64, "two!");
    pair_close(&p);
}

/* Two KeyUpdates behind a record that fills the caller's buffer, a record
 * behind them: the read decrypts ahead through both, so that
 * lsec__tls_pending counts the record (before: 0 after the first
 * KeyUpdate, and a poll loop slept on a record that was here). */
static void test_key_updates_behind_full_read(void **state)
{
    struct pair p;

    (void)state;
    pair_connected(&p);
    assert_int_equal(write_all(p.s, p.sfd, "one", 3), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(SSL_key_update(p.s->ssl, SSL_KEY_UPDATE_NOT_REQUESTED),
                         1);
        assert_int_equal(SSL_do_handshake(p.s->ssl), 1);
    }
    assert_int_equal(write_all(p.s, p.sfd, "two", 3), 0);
    wait_unread(p.cfd, 2 * 22 + 6 + 2 * 27);
    read_is(&p, 3, "one");
    assert_int_equal(lsec__tls_pending(p.c), 3);
    read_is(&p, 3, "two");
    pair_close(&p);
}
/* The peer's fatal alert behind a record: the record, then LSEC_ETLS for
 * good (the peer failed on a bad record of ours and said so). */
static void test_alert_behind_record(void **state)
{
    struct pair p;

    (void)state;
    pair_connected(&p);
    assert_int_equal(write_all(p.s, p.sfd, "one", 3), 0);
    assert_int_equal(send(p.cfd, bad_record, sizeof(bad_record), MSG_NOSIGNAL),
                     (ssize_t)sizeof(bad_record));
    assert_int_equal(read_until_error(p.s, p.sfd), LSEC_ETLS);
    /* The record, and the server's encrypted alert: 5 + 2 + 1 + 16. */
    wait_unread(p.cfd, 22 + 3 + 24);
    read_is(&p, 64, "one");
    reads_fail(&p, LSEC_ETLS, 2);
    pair_close(&p);
}

/* A bad record between good ones: the first is delivered, nothing behind
 * the bad one ever is, and the failure is sticky. */
static void test_bad_record_between_records(void **state)
{
    struct pair p;

    (void)state;
    pair_connected(&p);
    assert_int_equal(write_all(p.s, p.sfd, "one", 3), 0);
    assert_int_equal(write_all(p.s, p.sfd, "two!", 4), 0);
    assert_int_equal(send(p.sfd, bad_record, sizeof(bad_record), MSG_NOSIGNAL),
                     (ssize_t)sizeof(bad_record));
    assert_int_equal(write_all(p.s, p.sfd, "three", 5), 0);
    wait_unread(p.cfd, 3 * 22 + 12 + (int)sizeof(bad_record));
    read_is(&p, 64, "onetwo!");
    reads_fail(&p, LSEC_ETLS, 3);
    pair_close(&p);
}

/* A record larger than the room a read has left, behind a small one: the
 * read stops inside it, and every byte of it comes with the next reads,
 * counted by lsec__tls_pending meanwhile. */
static void test_large_record_behind_small_one(void **state)
{
    struct pair p;
    uint8_t big[3000], buf[1000], got[3003];
    size_t n, have = 0;

    (void)state;
    randombytes_buf(big, sizeof(big));
    pair_connected(&p);
    assert_int_equal(write_all(p.s, p.sfd, "one", 3), 0);
    assert_int_equal(write_all(p.s, p.sfd, big, sizeof(big)), 0);
    wait_unread(p.cfd, 2 * 22 + 3 + (int)sizeof(big));
    assert_int_equal(lsec__tls_read(p.c, buf, sizeof(buf), &n), 0);
    assert_int_equal(n, sizeof(buf));
    assert_int_equal(lsec__tls_pending(p.c), sizeof(got) - sizeof(buf));
    memcpy(got, buf, n);
    have = n;
    while (have < sizeof(got)) {
        assert_int_equal(lsec__tls_read(p.c, buf, sizeof(buf), &n), 0);
        memcpy(got + have, buf, n);
        have += n;
        assert_int_equal(lsec__tls_pending(p.c), sizeof(got) - have);
    }
    assert_memory_equal(got, "one", 3);
    assert_memory_equal(got + 3, big, sizeof(big));
    assert_int_equal(ERR_peek_error(), 0);
    pair_close(&p);
}
/* Every record of one write leaves in one send (before: one per record),
 * and a connection that has turned around holds no buffer of the shell's
 * but the small one it read with. */
static void test_one_send_per_write(void **state)
{
    static uint8_t big[4 * 16384], got[4 * 16384];
    int sz = 1 << 20;
    struct pair p;
    size_t n;

    (void)state;
    randombytes_buf(big, sizeof(big));
    pair_connected(&p);
    assert_int_equal(setsockopt(p.cfd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)),
                     0);
    assert_int_equal(setsockopt(p.sfd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)),
                     0);
    send_count = 0;
    lsec__io.send = counting_send;
    assert_int_equal(lsec__tls_write(p.c, big, sizeof(big), &n), 0);
    assert_int_equal(n, sizeof(big));
    assert_int_equal(send_count, 1);
    lsec__io_reset();
    assert_int_equal(read_all(p.s, p.sfd, got, sizeof(got)), 0);
    assert_memory_equal(got, big, sizeof(big));
    assert_int_equal(write_all(p.s, p.sfd, "ok", 2), 0);
    assert_int_equal(read_all(p.c, p.cfd, got, 2), 0);
    assert_int_equal(p.c->out.cap, 0);
    assert_true(p.c->in.cap <= 4096);
    pair_close(&p);
}

/* Where the last send took its bytes from. */
static const void *sent_from;

static ssize_t where_send(int fd, const void *buf, size_t len, int flags)
{
    sent_from = buf;
    send_count++;
    return send(fd, buf, len, flags);
}

static bool inside(const void *p, const void *base, size_t size)
{
    return (uintptr_t)p >= (uintptr_t)base &&
           (uintptr_t)p < (uintptr_t)base + size;
}

/* The record of a small write goes out from the connection's own storage
 * (no allocation per write: before, each 64-byte message allocated and
 * freed `out`); a larger one from an allocation; a small one that waits
 * stays there until its retry; an idle connection holds no block in
 * either case. */
static void test_small_write_in_own_storage(void **state)
{
    static uint8_t msg[4096], got[3 * 4096];
    struct pair p;
    size_t n;

    (void)state;
    randombytes_buf(msg, sizeof(msg));
    pair_connected(&p);
    send_count = 0;
    lsec__io.send = where_send;
    assert_int_equal(lsec__tls_write(p.c, msg, 64, &n), 0);
    assert_int_equal(n, 64);
    assert_int_equal(send_count, 1);
    assert_true(inside(sent_from, p.c, sizeof(*p.c)));
    assert_int_equal(p.c->out.cap, 0);
    assert_int_equal(lsec__tls_write(p.c, msg, 1024, &n), 0);
    assert_int_equal(n, 1024);
    assert_int_equal(send_count, 2);
    assert_false(inside(sent_from, p.c, sizeof(*p.c)));
    assert_int_equal(p.c->out.cap, 0);
    /* A small write that waits: its record stays in the fixed storage,
     * the retry sends it; then a write larger than the storage. */
    lsec__io.send = full_send;
    assert_int_equal(lsec__tls_write(p.c, msg, 64, &n), LSEC__WANT_WRITE);
    assert_int_equal(n, 0);
    assert_true(inside(p.c->out.b, p.c, sizeof(*p.c)));
    lsec__io.send = where_send;
    assert_int_equal(lsec__tls_write(p.c, msg, 64, &n), 0);
    assert_int_equal(n, 64);
    assert_true(inside(sent_from, p.c, sizeof(*p.c)));
    assert_int_equal(lsec__tls_write(p.c, msg + 64, 4096 - 64, &n), 0);
    assert_int_equal(n, 4096 - 64);
    assert_int_equal(p.c->out.cap, 0);
    lsec__io_reset();
    assert_int_equal(read_all(p.s, p.sfd, got, 64 + 1024 + 4096), 0);
    assert_memory_equal(got, msg, 64);
    assert_memory_equal(got + 64, msg, 1024);
    assert_memory_equal(got + 64 + 1024, msg, 4096);
    assert_int_equal(ERR_peek_error(), 0);
    pair_close(&p);
}

static uint8_t *recv_into;
static size_t recv_room;

static ssize_t where_recv(int fd, void *buf, size_t len, int flags)
{
    recv_into = buf;
    recv_room = len;
    return recv(fd, buf, len, flags);
}

/* A connection that reads a message at a time holds no `in` between its
 * reads, and its reads reuse one block (the thread's spare): no
 * malloc/free per read.  Before, every read freed its 4 KiB block and
 * allocated another: the test's own allocation of the same size, made
 * between two reads, then took the freed block and the next read got a
 * new one. */
static void test_small_reads_reuse_one_buffer(void **state)
{
    static const uint8_t msg[64] = {1, 2, 3};
    uint8_t buf[64], *first = NULL, *held[4];
    struct pair p;
    size_t n;

    (void)state;
    pair_connected(&p);
    lsec__io.recv = where_recv;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(write_all(p.s, p.sfd, msg, sizeof(msg)), 0);
        wait_unread(p.cfd, (int)sizeof(msg) + 22);
        assert_int_equal(lsec__tls_read(p.c, buf, sizeof(buf), &n), 0);
        assert_int_equal(n, sizeof(msg));
        assert_memory_equal(buf, msg, sizeof(msg));
        assert_int_equal(recv_room, 4096);
        if (i == 0)
            first = recv_into;
        assert_ptr_equal(recv_into, first);
        /* Idle between reads: no buffer of its own. */
        assert_int_equal(p.c->in.cap, 0);
        assert_null(p.c->in.b);
        held[i] = malloc(4096);
        assert_non_null(held[i]);
    }
    /* Turned around and back: the write lets go of nothing it needs. */
    assert_int_equal(write_all(p.c, p.cfd, msg, sizeof(msg)), 0);
    assert_int_equal(read_all(p.s, p.sfd, buf, sizeof(msg)), 0);
    assert_int_equal(write_all(p.s, p.sfd, msg, sizeof(msg)), 0);
    wait_unread(p.cfd, (int)sizeof(msg) + 22);
    assert_int_equal(lsec__tls_read(p.c, buf, sizeof(buf), &n), 0);
    assert_ptr_equal(recv_into, first);
    assert_int_equal(p.c->in.cap, 0);
    for (int i = 0; i < 4; i++)
        free(held[i]);
    lsec__io_reset();
    assert_int_equal(ERR_peek_error(), 0);
    pair_close(&p);
}

/* A server handshake that waits for the client's Finished holds no
 * buffer of the shell's (docs/SECURITY.md "Pre-authentication memory"). */
static void test_pending_handshake_holds_no_buffer(void **state)
{
    struct pair p;
    int rc;

    (void)state;
    pair_open(&p, secret_a, ID, secret_a, ID);
    assert_int_equal(lsec__tls_handshake(p.c), LSEC__WANT_READ);
    wait_unread(p.sfd, 100);
    rc = lsec__tls_handshake(p.s);
    assert_int_equal(rc, LSEC__WANT_READ);
    assert_int_equal(p.s->in.cap, 0);
    assert_int_equal(p.s->out.cap, 0);
    pair_close(&p);
}

/*
 * close_notify when the peer's window is full: the step returns
 * LSEC__WANT_WRITE at once (no poll inside), the waiting form with nowait
 * EAGAIN; once there is room the same step completes, and nothing is
 * queued twice.  Before, lsec__tls_close_notify polled inside tls.c and,
 * with a socket that poll called writable but that refused the bytes, never
 * returned.
 */
static void test_close_notify_full_window(void **state)
{
    struct pair p;
    uint8_t b[8];
    int64_t t0;

    (void)state;
    pair_connected(&p);
    assert_int_equal(write_all(p.c, p.cfd, "last", 4), 0);
    send_count = 0;
    lsec__io.send = full_send;
    t0 = lsec__now_ms();
    assert_int_equal(lsec__tls_close_notify_step(p.c), LSEC__WANT_WRITE);
    assert_int_equal(lsec__tls_close_notify_step(p.c), LSEC__WANT_WRITE);
    assert_int_equal(lsec__tls_close_notify(p.c, lsec__deadline(0), true),
                     LSEC_EAGAIN);
    assert_true(lsec__now_ms() - t0 < 100);
    assert_true(send_count >= 3);
    lsec__io_reset();
    send_count = 0;
    lsec__io.send = counting_send;
    assert_int_equal(lsec__tls_close_notify_step(p.c), 0);
    assert_int_equal(send_count, 1);
    assert_int_equal(lsec__tls_close_notify_step(p.c), 0);
    assert_int_equal(send_count, 1); /* sent once */
    lsec__io_reset();
    assert_int_equal(read_all(p.s, p.sfd, b, 4), 0);
    assert_memory_equal(b, "last", 4);
    assert_int_equal(read_until_error(p.s, p.sfd), LSEC_ECLOSED);
    /* Misuse: before the handshake, or with a write still owed. */
    assert_int_equal(lsec__tls_close_notify_step(NULL), LSEC_EINVAL);
    pair_close(&p);
}

/* A write that waited owes its bytes: close_notify refuses to go first. */
static void test_close_notify_after_waiting_write(void **state)
{
    static uint8_t chunk[16384];
    struct pair p;
    size_t n;

    (void)state;
    pair_connected(&p);
    lsec__io.send = full_send;
    assert_int_equal(lsec__tls_write(p.c, chunk, sizeof(chunk), &n),
                     LSEC__WANT_WRITE);
    assert_int_equal(n, 0);
    assert_int_equal(lsec__tls_close_notify_step(p.c), LSEC_EINVAL);
    lsec__io_reset();
    /* The retry with the same bytes reports them; then the end may go. */
    assert_int_equal(lsec__tls_write(p.c, chunk, sizeof(chunk), &n), 0);
    assert_int_equal(n, sizeof(chunk));
    assert_int_equal(lsec__tls_close_notify_step(p.c), 0);
    pair_close(&p);
}

/* Writing to a peer that is gone: ERESET, never SIGPIPE (whose default
 * action would kill this program). */
static void test_write_to_closed_peer_no_sigpipe(void **state)
{
    struct pair p;
    static uint8_t chunk[16384];
    int rc = 0;

    (void)state;
    pair_connected(&p);
    close(p.sfd);
    p.sfd = -1;
    for (int i = 0; i < 200 && rc == 0; i++) {
        rc = write_all(p.c, p.cfd, chunk, sizeof(chunk));
        if (rc == 0)
            usleep(1000);
    }
    assert_int_equal(rc, LSEC_ERESET);
    assert_int_equal(ERR_peek_error(), 0);
    /* A lost connection stays lost; shutdown and free are still safe. */
    size_t n;
    assert_int_equal(lsec__tls_write(p.c, chunk, 1, &n), LSEC_ERESET);
    lsec__tls_shutdown(p.c);
    pair_close(&p);
}

/* ------------------------------------------------------------------------ */
/* The fault-injection seam covers TLS                                       */

static int recv_calls, send_calls;

/* Restore the real system calls even when a test failed half-way. */
static int io_reset(void **state)
{
    (void)state;
    lsec__io_reset();
    return 0;
}

static ssize_t flaky_recv(int fd, void *buf, size_t len, int flags)
{
    /* Every third call, so that two ends calling in turn both get hit. */
    if (recv_calls++ % 3 == 0) {
        errno = EINTR;
        return -1;
    }
    /* Short reads too: at most 7 bytes at a time. */
    return recv(fd, buf, len < 7 ? len : 7, flags);
}

static ssize_t flaky_send(int fd, const void *buf, size_t len, int flags)
{
    /* The BIO must ask for MSG_NOSIGNAL on every send. */
    assert_true(flags & MSG_NOSIGNAL);
    if (send_calls++ % 3 == 0) {
        errno = EAGAIN;
        return -1;
    }
    return send(fd, buf, len < 100 ? len : 100, flags);
}

static void test_seam_eintr_eagain_short(void **state)
{
    struct pair p;
    uint8_t msg[5000], buf[5000];

    (void)state;
    randombytes_buf(msg, sizeof(msg));
    recv_calls = send_calls = 0;
    lsec__io.recv = flaky_recv;
    lsec__io.send = flaky_send;
    pair_connected(&p);
    assert_int_equal(write_all(p.c, p.cfd, msg, sizeof(msg)), 0);
    assert_int_equal(read_all(p.s, p.sfd, buf, sizeof(buf)), 0);
    lsec__io_reset();
    assert_memory_equal(msg, buf, sizeof(msg));
    assert_true(recv_calls > 10);
    assert_true(send_calls > 10);
    pair_close(&p);
}

static ssize_t reset_recv(int fd, void *buf, size_t len, int flags)
{
    (void)fd;
    (void)buf;
    (void)len;
    (void)flags;
    errno = ECONNRESET;
    return -1;
}

static void test_seam_reset(void **state)
{
    struct pair p;

    (void)state;
    pair_connected(&p);
    assert_int_equal(write_all(p.s, p.sfd, "x", 1), 0);
    lsec__io.recv = reset_recv;
    assert_int_equal(read_until_error(p.c, p.cfd), LSEC_ERESET);
    lsec__io_reset();
    assert_int_equal(ERR_peek_error(), 0);
    pair_close(&p);
}

/* ------------------------------------------------------------------------ */
/* Contexts and misuse                                                       */

static void *get_client_ctx(void *arg)
{
    lsec__tls_ctx **out = arg;
    if (lsec__tls_client_ctx(out) != 0)
        *out = NULL;
    return NULL;
}

static void test_client_ctx_once(void **state)
{
    lsec__tls_ctx *got[4], *again;
    pthread_t th[4];

    (void)state;
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, get_client_ctx, &got[i]),
                         0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_non_null(got[0]);
    for (int i = 1; i < 4; i++)
        assert_ptr_equal(got[i], got[0]);
    /* Freeing the shared client context is a no-op. */
    lsec__tls_ctx_free(got[0]);
    assert_int_equal(lsec__tls_client_ctx(&again), 0);
    assert_ptr_equal(again, got[0]);
    struct pair p;
    pair_connected(&p);
    pair_close(&p);
}

static void test_misuse(void **state)
{
    lsec__tls_ctx *ctx = (lsec__tls_ctx *)1, *cctx;
    lsec__tls *t = (lsec__tls *)1;
    char big[LSEC__PSK_IDENTITY_MAX + 1];
    uint8_t b[4];
    size_t n = 7;
    int cfd, sfd;

    (void)state;
    assert_int_equal(lsec__tls_ctx_new(0, &ctx), LSEC_EINVAL);
    assert_null(ctx);
    assert_int_equal(lsec__tls_ctx_new(LSEC__ROLE_SERVER, NULL), LSEC_EINVAL);
    assert_int_equal(lsec__tls_client_ctx(NULL), LSEC_EINVAL);
    assert_int_equal(lsec__tls_client_ctx(&cctx), 0);
    assert_int_equal(lsec__tls_new(NULL, 3, secret_a, ID, &t), LSEC_EINVAL);
    assert_null(t);
    assert_int_equal(lsec__tls_new(cctx, -1, secret_a, ID, &t), LSEC_EINVAL);
    assert_int_equal(lsec__tls_new(cctx, 3, NULL, ID, &t), LSEC_EINVAL);
    assert_int_equal(lsec__tls_new(cctx, 3, secret_a, NULL, &t), LSEC_EINVAL);
    assert_int_equal(lsec__tls_new(cctx, 3, secret_a, "", &t), LSEC_EINVAL);
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(lsec__tls_new(cctx, 3, secret_a, big, &t), LSEC_EINVAL);
    assert_int_equal(lsec__tls_new(cctx, 3, secret_a, ID, NULL), LSEC_EINVAL);
    assert_int_equal(lsec__tls_handshake(NULL), LSEC_EINVAL);
    assert_int_equal(lsec__tls_read(NULL, b, 4, &n), LSEC_EINVAL);
    assert_int_equal(n, 0);
    assert_int_equal(lsec__tls_write(NULL, b, 4, &n), LSEC_EINVAL);
    assert_int_equal(lsec__tls_pending(NULL), 0);
    lsec__tls_shutdown(NULL);
    lsec__tls_free(NULL);
    lsec__tls_ctx_free(NULL);

    /* Reading, writing or describing before the handshake is misuse. */
    tcp_pair(&cfd, &sfd, 1);
    assert_int_equal(lsec__tls_new(cctx, cfd, secret_a, ID, &t), 0);
    assert_int_equal(lsec__tls_read(t, b, 4, &n), LSEC_EINVAL);
    assert_int_equal(lsec__tls_write(t, b, 4, &n), LSEC_EINVAL);
    assert_int_equal(lsec__tls_read(t, b, 0, &n), LSEC_EINVAL);
    assert_int_equal(lsec__tls_describe(t, (char *)b, 4), LSEC_EINVAL);
    assert_int_equal(lsec__tls_pending(t), 0);
    lsec__tls_shutdown(t); /* before the handshake: nothing to do */
    lsec__tls_free(t);
    close(cfd);
    close(sfd);
    assert_int_equal(ERR_peek_error(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_tls13_aes128),
        cmocka_unit_test(test_bulk_both_ways),
        cmocka_unit_test(test_pending_reports_decrypted_bytes),
        cmocka_unit_test(test_blocking_descriptors),
        cmocka_unit_test(test_server_ctx_reused),
        cmocka_unit_test(test_wrong_secret),
        cmocka_unit_test(test_wrong_identity),
        cmocka_unit_test(test_tls12_client_refused),
        cmocka_unit_test(test_certificate_server_refused),
        cmocka_unit_test(test_client_offers_psk_dhe_ke_only),
        cmocka_unit_test(test_stock_psk_client_no_tickets),
        cmocka_unit_test(test_early_data_client_falls_back),
        cmocka_unit_test(test_auth_hello_to_tls_server),
        cmocka_unit_test(test_http_to_tls_server),
        cmocka_unit_test(test_client_peer_closes_silently),
        cmocka_unit_test(test_client_meets_auth_bytes),
        cmocka_unit_test(test_server_client_leaves),
        cmocka_unit_test(test_close_mid_record),
        cmocka_unit_test(test_eof_without_close_notify),
        cmocka_unit_test(test_close_notify),
        cmocka_unit_test_teardown(test_record_split_across_reads, io_reset),
        cmocka_unit_test_teardown(test_several_records_one_recv, io_reset),
        cmocka_unit_test_teardown(test_several_records_small_buffer, io_reset),
        cmocka_unit_test(test_bad_record_read_ahead),
        cmocka_unit_test(test_close_notify_behind_records),
        cmocka_unit_test_teardown(test_key_update_between_records, io_reset),
        cmocka_unit_test(test_key_update_first),
        cmocka_unit_test(test_key_updates_behind_full_read),
        cmocka_unit_test(test_alert_behind_record),
        cmocka_unit_test(test_bad_record_between_records),
        cmocka_unit_test(test_large_record_behind_small_one),
        cmocka_unit_test_teardown(test_one_send_per_write, io_reset),
        cmocka_unit_test_teardown(test_small_write_in_own_storage, io_reset),
        cmocka_unit_test_teardown(test_small_reads_reuse_one_buffer, io_reset),
        cmocka_unit_test(test_pending_handshake_holds_no_buffer),
        cmocka_unit_test_teardown(test_close_notify_full_window, io_reset),
        cmocka_unit_test_teardown(test_close_notify_after_waiting_write,
                                  io_reset),
        cmocka_unit_test(test_write_to_closed_peer_no_sigpipe),
        cmocka_unit_test_teardown(test_seam_eintr_eagain_short, io_reset),
        cmocka_unit_test_teardown(test_seam_reset, io_reset),
        cmocka_unit_test(test_client_ctx_once),
        cmocka_unit_test(test_misuse),
    };

    if (sodium_init() < 0)
        return 1;
    randombytes_buf(secret_a, sizeof(secret_a));
    randombytes_buf(secret_b, sizeof(secret_b));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
