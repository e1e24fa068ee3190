/*
 * TLS mode, part one: OpenSSL's set-up.  The TLS files (tls_ctx.c, tls.c)
 * are the only ones in the project that include OpenSSL headers.
 *
 * What it enforces (docs/PROTOCOL.md "TLS mode", docs/SECURITY.md "TLS"):
 *   - TLS 1.3 only, SHA-256 cipher suites only, external PSK only: no
 *     certificate is ever sent or accepted, so a peer that does not hold the
 *     PSK can never complete a handshake.
 *   - (EC)DHE with the PSK (psk_dhe_ke), for forward secrecy; plain psk_ke
 *     is never allowed.
 *   - No 0-RTT, no session tickets, no resumption, no compression.
 *   - The PSK is derived from the secret under a label naming the server
 *     role, only a listener ever acts as the TLS server, and the server
 *     accepts only its own instance's identity: the PSK cannot be reflected
 *     back to the side that sent it ("Selfie").
 *
 * Here: the one-time initialisation, the BIO through which OpenSSL reads
 * and writes the engine's two buffers (no socket: tls_engine.h), the PSK
 * callbacks and the role contexts.  tls.c drives the connections.
 */
#include "tls_engine.h"
#include "tls_ossl.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* The cipher suites: both SHA-256 based, so that one 32-byte external PSK
 * fits either, and the first is what `openssl s_client -psk` assumes. */
#define TLS_SUITES "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256"
/* TLS_AES_128_GCM_SHA256 (RFC 8446 B.4): the PSK's session carries it; only
 * its hash (SHA-256) matters for the handshake. */
static const unsigned char psk_suite_id[2] = {0x13, 0x01};

/* How much rejected early data a server skips before it gives up: one
 * record's worth, as OpenSSL's default. */
#define EARLY_DATA_SKIP 16384

struct lsec__tls_ctx {
    SSL_CTX *ssl_ctx;
    int role;
    bool shared; /* the process-wide client context: never freed */
};

/* ------------------------------------------------------------------------ */
/* One-time initialisation                                                   */

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_init_result;
static BIO_METHOD *buf_method;
static int ex_index = -1;

static pthread_once_t client_once = PTHREAD_ONCE_INIT;
static lsec__tls_ctx *client_ctx;
static int client_result;

static int bio_create(BIO *b);
static int bio_destroy(BIO *b);
static int bio_write(BIO *b, const char *buf, int len);
static int bio_read(BIO *b, char *buf, int len);
static long bio_ctrl(BIO *b, int cmd, long num, void *ptr);

void lsec__tls_clear_errors(void)
{
    /* ERR_clear_error() walks and frees all the slots of the queue on every
     * call (OpenSSL 3.0), twice per SSL_read/SSL_write here; a peek first
     * makes the common case, an empty queue, cheap (docs/BENCHMARKS.md). */
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

static void tls_init_run(void)
{
    int type;

    lsec__tls_clear_errors();
    /* Loads libssl once for the process; OpenSSL makes this idempotent and
     * thread-safe, the once guard only keeps it off the hot path. */
    if (OPENSSL_init_ssl(0, NULL) != 1)
        goto fail;
    type = BIO_get_new_index();
    if (type == -1)
        goto fail;
    buf_method = BIO_meth_new(type | BIO_TYPE_SOURCE_SINK, "loopsec buffers");
    if (buf_method == NULL || !BIO_meth_set_write(buf_method, bio_write) ||
        !BIO_meth_set_read(buf_method, bio_read) ||
        !BIO_meth_set_ctrl(buf_method, bio_ctrl) ||
        !BIO_meth_set_create(buf_method, bio_create) ||
        !BIO_meth_set_destroy(buf_method, bio_destroy))
        goto fail;
    ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (ex_index < 0)
        goto fail;
    tls_init_result = 0;
    return;
fail:
    BIO_meth_free(buf_method);
    buf_method = NULL;
    lsec__tls_clear_errors();
    tls_init_result = LSEC_ETLS;
}

static int tls_init(void)
{
    int rc = lsec__init();
    if (rc != 0)
        return rc;
    pthread_once(&tls_once, tls_init_run);
    if (tls_init_result != 0)
        return lsec__fail(LSEC_ETLS, "OpenSSL failed to initialise");
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Buffers                                                                   */

uint8_t *lsec__tlsbuf_room(lsec__tlsbuf *b, size_t cap, size_t *room)
{
    size_t used = b->len - b->off;

    if (cap <= used)
        cap = used + 1;
    if (b->off > 0 && (b->off == b->len || b->cap - b->len < cap - used)) {
        /* Move what waits to the front rather than grow. */
        memmove(b->b, b->b + b->off, used);
        b->len = used;
        b->off = 0;
    }
    if (b->cap < cap && b->b == NULL && cap <= b->fixed_cap) {
        b->b = b->fixed;
        b->cap = b->fixed_cap;
        b->off = b->len = 0;
    }
    if (b->cap < cap) {
        /* Ciphertext and public handshake bytes only: no secret to wipe
         * from the old block. */
        uint8_t *nb = malloc(cap);
        if (nb == NULL) {
            *room = 0;
            return NULL;
        }
        if (used > 0)
            memcpy(nb, b->b + b->off, used);
        if (b->b != b->fixed)
            free(b->b);
        b->b = nb;
        b->cap = cap;
        b->off = 0;
        b->len = used;
    }
    *room = b->cap - b->len;
    return b->b + b->len;
}

void lsec__tlsbuf_trim(lsec__tlsbuf *b)
{
    if (b->off < b->len)
        return;
    if (b->b != b->fixed)
        free(b->b); /* records: nothing secret in them */
    b->b = NULL;
    b->cap = b->off = b->len = 0;
}

/* ------------------------------------------------------------------------ */
/* The BIO over the engine's buffers                                         */

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static int bio_destroy(BIO *b)
{
    /* The buffers belong to the connection, never to the BIO. */
    BIO_set_data(b, NULL);
    return 1;
}

/* OpenSSL's records go to `out`; the shell sends them all in one call. */
static int bio_write(BIO *b, const char *buf, int len)
{
    lsec__tls *t = BIO_get_data(b);
    size_t room;
    uint8_t *p;

    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    p = lsec__tlsbuf_room(&t->out, t->out.len - t->out.off + (size_t)len,
                          &room);
    if (p == NULL || room < (size_t)len) {
        t->nomem = true;
        return -1;
    }
    memcpy(p, buf, (size_t)len);
    t->out.len += (size_t)len;
    return len;
}

/* From `in`, which the shell filled; empty: "retry", or the end of the
 * stream, or the shell's failed recv (t->sys_errno). */
static int bio_read(BIO *b, char *buf, int len)
{
    lsec__tls *t = BIO_get_data(b);
    size_t n = t->in.len - t->in.off;

    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (n == 0) {
        /* Kept to ourselves: BIO_CTRL_EOF stays 0, so OpenSSL reports
         * SSL_ERROR_SYSCALL and sends no alert after a peer that left (a
         * bare connect-and-close learns nothing, not even "TLS here"). */
        if (t->eof)
            return 0;
        if (t->sys_errno == 0)
            BIO_set_retry_read(b);
        return -1;
    }
    if (n > (size_t)len)
        n = (size_t)len;
    memcpy(buf, t->in.b + t->in.off, n);
    t->in.off += n;
    t->got_bytes = true;
    while (t->first_len < sizeof(t->first) && t->first_len < n) {
        t->first[t->first_len] = (uint8_t)buf[t->first_len];
        t->first_len++;
    }
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    /* The shell sends what is written, so a flush succeeds; nothing else
     * is supported. */
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* PSK callbacks                                                             */

/* A session that carries the external PSK, as RFC 9258 calls it. */
static SSL_SESSION *psk_session(SSL *ssl, const lsec__tls *t)
{
    const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, psk_suite_id);
    SSL_SESSION *s;

    if (cipher == NULL)
        return NULL;
    s = SSL_SESSION_new();
    if (s == NULL)
        return NULL;
    /* No early data: the session's max_early_data stays 0, so neither side
     * ever sends or accepts 0-RTT data under this PSK. */
    if (!SSL_SESSION_set1_master_key(s, t->psk, sizeof(t->psk)) ||
        !SSL_SESSION_set_cipher(s, cipher) ||
        !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION) ||
        !SSL_SESSION_set_max_early_data(s, 0)) {
        SSL_SESSION_free(s); /* cleanses the master key */
        return NULL;
    }
    return s;
}

/* Client: offer our identity and PSK.  `md` is set on the second call after
 * a HelloRetryRequest; our PSK is SHA-256 and so are all our suites. */
static int psk_use_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id,
                      size_t *idlen, SSL_SESSION **sess)
{
    lsec__tls *t = SSL_get_ex_data(ssl, ex_index);

    *id = NULL;
    *idlen = 0;
    *sess = NULL;
    if (t == NULL)
        return 0;
    if (md != NULL && !EVP_MD_is_a(md, "SHA256"))
        return 1; /* offer no PSK: the handshake then fails */
    *sess = psk_session(ssl, t);
    if (*sess == NULL)
        return 0;
    *id = (const unsigned char *)t->identity;
    *idlen = t->identity_len;
    return 1;
}

/* Server: accept only our own instance's identity.  Anything else gets no
 * PSK (not a callback failure, which would send internal_error): with no
 * PSK and no certificate the handshake fails with a handshake_failure alert
 * (40).  A wrong PSK under our identity fails the binder check instead,
 * and OpenSSL answers that with illegal_parameter (47): the two do NOT
 * look alike from outside.  That tells a client only whether it guessed
 * the instance id, which is public (it is in the ticket and the file name);
 * docs/SECURITY.md "TLS mode" says why this is left so. */
static int psk_find_cb(SSL *ssl, const unsigned char *id, size_t idlen,
                       SSL_SESSION **sess)
{
    lsec__tls *t = SSL_get_ex_data(ssl, ex_index);

    *sess = NULL;
    if (t == NULL)
        return 0;
    if (idlen != t->identity_len || memcmp(id, t->identity, idlen) != 0)
        return 1;
    *sess = psk_session(ssl, t);
    if (*sess == NULL)
        return 0;
    t->identity_ok = true;
    return 1;
}

/* Client: a server certificate is never acceptable.  Only a server that
 * proves the PSK may complete the handshake. */
static int refuse_certificate(int preverify_ok, X509_STORE_CTX *store)
{
    (void)preverify_ok;
    (void)store;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Contexts                                                                  */

int lsec__tls_ctx_new(int role, lsec__tls_ctx **out)
{
    lsec__tls_ctx *c;
    SSL_CTX *sc;
    int rc;

    if (out == NULL)
        return lsec__fail(LSEC_EINVAL, "no output for the TLS context");
    *out = NULL;
    if (role != LSEC__ROLE_CLIENT && role != LSEC__ROLE_SERVER)
        return lsec__fail(LSEC_EINVAL, "unknown TLS role %d", role);
    rc = tls_init();
    if (rc != 0)
        return rc;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return lsec__fail(LSEC_ENOMEM, "out of memory for a TLS context");
    lsec__tls_clear_errors();
    sc = SSL_CTX_new(role == LSEC__ROLE_SERVER ? TLS_server_method()
                                               : TLS_client_method());
    if (sc == NULL)
        goto fail;
    /* TLS 1.3 only: nothing older can be negotiated. */
    if (!SSL_CTX_set_min_proto_version(sc, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(sc, TLS1_3_VERSION) ||
        !SSL_CTX_set_ciphersuites(sc, TLS_SUITES))
        goto fail;
    /* No session tickets, no resumption (every connection uses the
     * external PSK afresh), no compression, no renegotiation.
     * SSL_OP_ALLOW_NO_DHE_KEX is deliberately NOT set: the PSK is only ever
     * used with an (EC)DHE exchange (psk_dhe_ke), for forward secrecy. */
    SSL_CTX_set_options(sc, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION |
                                SSL_OP_CIPHER_SERVER_PREFERENCE |
                                SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_clear_options(sc, SSL_OP_ALLOW_NO_DHE_KEX);
    SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
    /* No 0-RTT in either direction: early data is never accepted
     * (max_early_data 0).  A server still lets a client that offers it
     * fall back to a full handshake: it rejects the early data and skips
     * up to recv_max_early_data bytes of it unread (RFC 8446 4.2.10).  With
     * 0 there, every such client failed. */
    if (!SSL_CTX_set_max_early_data(sc, 0) ||
        !SSL_CTX_set_recv_max_early_data(
            sc, role == LSEC__ROLE_SERVER ? EARLY_DATA_SKIP : 0))
        goto fail;
    /* SSL_read returns WANT_READ after a non-application record instead of
     * looking for the next one: the shell decides when to read the socket.
     * Writes go to a buffer that never fills, so they are never partial. */
    SSL_CTX_clear_mode(sc, SSL_MODE_AUTO_RETRY);
    /* No read-ahead inside OpenSSL: the shell already reads many records in
     * one recv into the engine's `in`, where lsec__tls_pending() sees them
     * (a record read ahead inside OpenSSL is visible to neither). */
    SSL_CTX_set_read_ahead(sc, 0);
    if (role == LSEC__ROLE_SERVER) {
        if (!SSL_CTX_set_num_tickets(sc, 0))
            goto fail;
        SSL_CTX_set_psk_find_session_callback(sc, psk_find_cb);
        /* Never ask the client for a certificate. */
        SSL_CTX_set_verify(sc, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_psk_use_session_callback(sc, psk_use_cb);
        SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, refuse_certificate);
    }
    c->ssl_ctx = sc;
    c->role = role;
    *out = c;
    return 0;
fail:
    SSL_CTX_free(sc);
    free(c);
    lsec__tls_clear_errors();
    return lsec__fail(LSEC_ETLS, "cannot set up the TLS 1.3 PSK context");
}

void lsec__tls_ctx_free(lsec__tls_ctx *ctx)
{
    /* The process-wide client context lives as long as the process. */
    if (ctx == NULL || ctx->shared)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}

static void client_ctx_run(void)
{
    client_result = lsec__tls_ctx_new(LSEC__ROLE_CLIENT, &client_ctx);
    if (client_result == 0)
        client_ctx->shared = true;
}

int lsec__tls_client_ctx(lsec__tls_ctx **out)
{
    if (out == NULL)
        return lsec__fail(LSEC_EINVAL, "no output for the TLS context");
    *out = NULL;
    pthread_once(&client_once, client_ctx_run);
    if (client_result != 0)
        return lsec__fail(client_result,
                          "cannot set up the TLS 1.3 PSK client context");
    *out = client_ctx;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Connections                                                               */

SSL *lsec__tls_ssl_new(lsec__tls_ctx *ctx, lsec__tls *t)
{
    SSL *ssl;
    BIO *bio;

    lsec__tls_clear_errors();
    ssl = SSL_new(ctx->ssl_ctx);
    if (ssl == NULL)
        return NULL;
    bio = BIO_new(buf_method);
    if (!SSL_set_ex_data(ssl, ex_index, t) || bio == NULL) {
        BIO_free(bio);
        SSL_free(ssl);
        lsec__tls_clear_errors();
        return NULL;
    }
    BIO_set_data(bio, t);
    SSL_set_bio(ssl, bio, bio); /* the SSL owns the BIO from here */
    if (ctx->role == LSEC__ROLE_SERVER)
        SSL_set_accept_state(ssl);
    else
        SSL_set_connect_state(ssl);
    return ssl;
}

int lsec__tls_ctx_role(const lsec__tls_ctx *ctx)
{
    return ctx->role;
}
