/*
 * TLS mode: OpenSSL glue.  This is the only file in the project that
 * includes OpenSSL headers.
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
 * I/O goes through a custom BIO over the socket that calls lsec__io.send
 * (with MSG_NOSIGNAL) and lsec__io.recv, so the library never raises
 * SIGPIPE and the fault-injection seam covers TLS too.  Callers drive every
 * operation with poll: WANT_READ / WANT_WRITE come back for every
 * SSL_ERROR_WANT_*, on blocking and non-blocking descriptors alike.
 *
 * OpenSSL's error queue is cleared before every SSL call and after every
 * failure, so nothing leaks into another call or into another library in the
 * same process.  OpenSSL's own text never reaches lsec_last_detail: every
 * failure is reported with a fixed reason.
 */
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

/*
 * Empty this thread's OpenSSL error queue, as SSL_get_error() requires
 * before every SSL call.  ERR_clear_error() walks and frees all the slots
 * of the queue on every call (OpenSSL 3.0), twice per SSL_read/SSL_write
 * here; a peek first makes the common case, an empty queue, cheap
 * (docs/BENCHMARKS.md).
 */
static void clear_errors(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

/* The cipher suites: both SHA-256 based, so that one 32-byte external PSK
 * fits either, and the first is what `openssl s_client -psk` assumes. */
#define TLS_SUITES "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256"
/* TLS_AES_128_GCM_SHA256 (RFC 8446 B.4): the PSK's session carries it; only
 * its hash (SHA-256) matters for the handshake. */
static const unsigned char psk_suite_id[2] = {0x13, 0x01};

/* How much rejected early data a server skips before it gives up: one
 * record's worth, as OpenSSL's default. */
#define EARLY_DATA_SKIP 16384

/* How long lsec__tls_shutdown waits for room for its close_notify. */
#define SHUTDOWN_WAIT_MS 500

/* The detail the client reports when the listener hangs up on its hello
 * without a word. */
#define DETAIL_REFUSED                                                         \
    "the listener closed the connection without a TLS answer (refused: "       \
    "descriptor limit, too many pending handshakes or peer policy; retry)"

struct lsec__tls_ctx {
    SSL_CTX *ssl_ctx;
    int role;
    bool shared; /* the process-wide client context: never freed */
};

struct lsec__tls {
    SSL *ssl;
    int role;
    int fd;
    uint8_t psk[LSEC__KEY_BYTES];
    char identity[LSEC__PSK_IDENTITY_MAX];
    size_t identity_len;
    /* What the BIO saw, to classify failures without OpenSSL's text. */
    uint8_t pre[8]; /* bytes read before the SSL object existed */
    size_t pre_len, pre_off;
    bool got_bytes;   /* at least one byte arrived from the peer */
    uint8_t first[4]; /* the first bytes that arrived */
    size_t first_len;
    bool eof;         /* recv returned 0 */
    int sys_errno;    /* errno of the last failed recv/send, 0 if none */
    bool dontwait;    /* add MSG_DONTWAIT to sends (shutdown) */
    bool identity_ok; /* server: the client offered our identity */
    bool done;        /* handshake complete and checked */
    int fatal;        /* sticky failure code, 0 while usable */
    const char *fatal_detail;
};

/* ------------------------------------------------------------------------ */
/* One-time initialisation                                                   */

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_init_result;
static BIO_METHOD *sock_method;
static int ex_index = -1;

static pthread_once_t client_once = PTHREAD_ONCE_INIT;
static lsec__tls_ctx *client_ctx;
static int client_result;

static int bio_create(BIO *b);
static int bio_destroy(BIO *b);
static int bio_write(BIO *b, const char *buf, int len);
static int bio_read(BIO *b, char *buf, int len);
static long bio_ctrl(BIO *b, int cmd, long num, void *ptr);

static void tls_init_run(void)
{
    int type;

    clear_errors();
    /* Loads libssl once for the process; OpenSSL makes this idempotent and
     * thread-safe, the once guard only keeps it off the hot path. */
    if (OPENSSL_init_ssl(0, NULL) != 1)
        goto fail;
    type = BIO_get_new_index();
    if (type == -1)
        goto fail;
    sock_method = BIO_meth_new(type | BIO_TYPE_SOURCE_SINK, "loopsec socket");
    if (sock_method == NULL || !BIO_meth_set_write(sock_method, bio_write) ||
        !BIO_meth_set_read(sock_method, bio_read) ||
        !BIO_meth_set_ctrl(sock_method, bio_ctrl) ||
        !BIO_meth_set_create(sock_method, bio_create) ||
        !BIO_meth_set_destroy(sock_method, bio_destroy))
        goto fail;
    ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (ex_index < 0)
        goto fail;
    tls_init_result = 0;
    return;
fail:
    BIO_meth_free(sock_method);
    sock_method = NULL;
    clear_errors();
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
/* The socket BIO                                                            */

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static int bio_destroy(BIO *b)
{
    /* The descriptor belongs to the channel or listener, never to us. */
    BIO_set_data(b, NULL);
    return 1;
}

static bool is_retry_errno(int e)
{
    return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

static int bio_write(BIO *b, const char *buf, int len)
{
    lsec__tls *t = BIO_get_data(b);
    ssize_t n;
    /* MSG_NOSIGNAL: a peer that vanished gives EPIPE, never SIGPIPE. */
    int flags = MSG_NOSIGNAL | (t->dontwait ? MSG_DONTWAIT : 0);

    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    /* EINTR is retried here, not reported as "retry later": the best-effort
     * close_notify of lsec__tls_shutdown gets no second call, and a signal
     * must not turn a clean close into a lost connection for the peer. */
    do
        n = lsec__io.send(t->fd, buf, (size_t)len, flags);
    while (n < 0 && errno == EINTR);
    if (n >= 0)
        return (int)n;
    if (is_retry_errno(errno)) {
        BIO_set_retry_write(b);
        return -1;
    }
    t->sys_errno = errno;
    return -1;
}

static int bio_read(BIO *b, char *buf, int len)
{
    lsec__tls *t = BIO_get_data(b);
    ssize_t n;

    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (t->pre_off < t->pre_len) {
        /* What the listener read to check the record header comes first. */
        n = (ssize_t)(t->pre_len - t->pre_off);
        if (n > len)
            n = len;
        memcpy(buf, t->pre + t->pre_off, (size_t)n);
        t->pre_off += (size_t)n;
    } else {
        do
            n = lsec__io.recv(t->fd, buf, (size_t)len, 0);
        while (n < 0 && errno == EINTR);
    }
    if (n > 0) {
        t->got_bytes = true;
        while (t->first_len < sizeof(t->first) && t->first_len < (size_t)n) {
            t->first[t->first_len] = (uint8_t)buf[t->first_len];
            t->first_len++;
        }
        return (int)n;
    }
    if (n == 0) {
        /* Kept to ourselves: BIO_CTRL_EOF stays 0, so OpenSSL reports
         * SSL_ERROR_SYSCALL and sends no alert after a peer that left (a
         * bare connect-and-close learns nothing, not even "TLS here"). */
        t->eof = true;
        return 0;
    }
    if (is_retry_errno(errno)) {
        BIO_set_retry_read(b);
        return -1;
    }
    t->sys_errno = errno;
    return -1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    /* Nothing is buffered here (every write went to the socket), so a
     * flush succeeds; nothing else is supported. */
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
    if (role != LSEC__HS_CLIENT && role != LSEC__HS_SERVER)
        return lsec__fail(LSEC_EINVAL, "unknown TLS role %d", role);
    rc = tls_init();
    if (rc != 0)
        return rc;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return lsec__fail(LSEC_ENOMEM, "out of memory for a TLS context");
    clear_errors();
    sc = SSL_CTX_new(role == LSEC__HS_SERVER ? TLS_server_method()
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
            sc, role == LSEC__HS_SERVER ? EARLY_DATA_SKIP : 0))
        goto fail;
    /* Callers poll, including on blocking descriptors: SSL_read must return
     * WANT_READ after a non-application record instead of blocking for the
     * next one.  Writes may be partial and resumed from a moved buffer, as
     * the channel's send queue needs. */
    SSL_CTX_clear_mode(sc, SSL_MODE_AUTO_RETRY);
    /* Once authenticated, read what the socket holds, not a 5-byte header
     * and then the body of each record: half the recv calls
     * (docs/BENCHMARKS.md).  Records read ahead wait inside OpenSSL; see
     * process_buffered().  Off during the handshake: lsec__tls_new. */
    SSL_CTX_set_read_ahead(sc, 1);
    SSL_CTX_set_mode(sc, SSL_MODE_ENABLE_PARTIAL_WRITE |
                             SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (role == LSEC__HS_SERVER) {
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
    clear_errors();
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
    client_result = lsec__tls_ctx_new(LSEC__HS_CLIENT, &client_ctx);
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

int lsec__tls_new(lsec__tls_ctx *ctx, int fd,
                  const uint8_t secret[LSEC_SECRET_BYTES], const char *identity,
                  lsec__tls **out)
{
    lsec__tls *t;
    BIO *bio = NULL;
    size_t idlen;

    if (out == NULL)
        return lsec__fail(LSEC_EINVAL, "no output for the TLS connection");
    *out = NULL;
    if (ctx == NULL || fd < 0 || secret == NULL || identity == NULL)
        return lsec__fail(LSEC_EINVAL, "missing TLS connection argument");
    idlen = strlen(identity);
    if (idlen == 0 || idlen >= LSEC__PSK_IDENTITY_MAX)
        return lsec__fail(LSEC_EINVAL, "PSK identity length %zu", idlen);
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return lsec__fail(LSEC_ENOMEM, "out of memory for a TLS connection");
    t->role = ctx->role;
    t->fd = fd;
    memcpy(t->identity, identity, idlen + 1);
    t->identity_len = idlen;
    /* Only the derived PSK is kept, never the secret itself. */
    lsec__tls_psk(t->psk, secret);

    clear_errors();
    t->ssl = SSL_new(ctx->ssl_ctx);
    if (t->ssl == NULL || !SSL_set_ex_data(t->ssl, ex_index, t))
        goto fail;
    bio = BIO_new(sock_method);
    if (bio == NULL)
        goto fail;
    BIO_set_data(bio, t);
    SSL_set_bio(t->ssl, bio, bio); /* the SSL owns the BIO from here */
    if (t->role == LSEC__HS_SERVER)
        SSL_set_accept_state(t->ssl);
    else
        SSL_set_connect_state(t->ssl);
    /* On a listener, read-ahead stays off until the peer is authenticated:
     * an unauthenticated peer's bytes wait in the kernel, not in a record
     * buffer of ours; lsec__tls_handshake turns it on.
     * A client talks to the one listener its ticket names: no flood to
     * bound there, so it keeps read-ahead (half the recv calls). */
    if (t->role == LSEC__HS_SERVER)
        SSL_set_read_ahead(t->ssl, 0);
    *out = t;
    return 0;
fail:
    clear_errors();
    lsec__tls_free(t);
    return lsec__fail(LSEC_ENOMEM, "cannot create a TLS connection");
}

bool lsec__tls_holds_psk(const lsec__tls *t)
{
    static const uint8_t zero[LSEC__KEY_BYTES];
    return t != NULL && CRYPTO_memcmp(t->psk, zero, sizeof(zero)) != 0;
}

int lsec__tls_prefix(lsec__tls *t, const uint8_t *b, size_t n)
{
    if (t == NULL || (b == NULL && n > 0) || n > sizeof(t->pre) ||
        t->got_bytes || t->pre_len != 0)
        return lsec__fail(LSEC_EINVAL, "bad TLS prefix");
    memcpy(t->pre, b, n);
    t->pre_len = n;
    return 0;
}

void lsec__tls_free(lsec__tls *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl); /* frees the BIO; cleanses the sessions' keys */
    OPENSSL_cleanse(t->psk, sizeof(t->psk));
    lsec__wipe(t, sizeof(*t));
    free(t);
}

/* ------------------------------------------------------------------------ */
/* Failure classification                                                    */

/* A failure after which the connection is unusable: remembered, so that a
 * later call reports the same code and reason. */
static int sticky(lsec__tls *t, int code, const char *detail)
{
    t->fatal = code;
    t->fatal_detail = detail;
    return lsec__fail(code, "%s", detail);
}

/* As sticky, for a failed system call under OpenSSL: its errno goes into
 * the detail. */
static int sticky_sys(lsec__tls *t, int code, const char *detail)
{
    t->fatal = code;
    t->fatal_detail = detail;
    return lsec__fail_errno(code, t->sys_errno, "%s", detail);
}

static bool is_version_reason(int reason)
{
    switch (reason) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_UNSUPPORTED_SSL_VERSION:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_VERSION_TOO_HIGH:
    case SSL_R_BAD_PROTOCOL_VERSION_NUMBER:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
        return true;
    default:
        return false;
    }
}

/* What OpenSSL's error queue says, reduced to what we act on; the queue is
 * emptied on the way. */
struct queue_summary {
    int alert;    /* alert received from the peer, -1 if none */
    bool version; /* a protocol version mismatch */
    bool nomem;   /* an allocation failed */
    int reason;   /* the first reason, for the debug log only */
    const char *text;
};

static void drain_queue(struct queue_summary *q)
{
    unsigned long e;

    q->alert = -1;
    q->version = false;
    q->nomem = false;
    q->reason = 0;
    q->text = NULL;
    while ((e = ERR_get_error()) != 0) {
        int reason = ERR_GET_REASON(e);
        if (q->reason == 0) {
            q->reason = reason;
            q->text = ERR_reason_error_string(e);
        }
        if (ERR_GET_LIB(e) == ERR_LIB_SSL && reason >= SSL_AD_REASON_OFFSET &&
            reason < SSL_AD_REASON_OFFSET + 256)
            q->alert = reason - SSL_AD_REASON_OFFSET;
        if (ERR_GET_LIB(e) == ERR_LIB_SSL && is_version_reason(reason))
            q->version = true;
        if (reason == ERR_R_MALLOC_FAILURE)
            q->nomem = true;
    }
    clear_errors();
}

static bool peer_vanished(const lsec__tls *t)
{
    return t->eof || t->sys_errno == ECONNRESET || t->sys_errno == EPIPE;
}

static const char *role_name(const lsec__tls *t)
{
    return t->role == LSEC__HS_SERVER ? "server" : "client";
}

static int want(int ssl_error)
{
    /* Every other SSL_ERROR_WANT_* (none occurs with this configuration)
     * is a wait for the peer too. */
    return ssl_error == SSL_ERROR_WANT_WRITE ||
                   ssl_error == SSL_ERROR_WANT_CONNECT
               ? LSEC__WANT_WRITE
               : LSEC__WANT_READ;
}

static bool is_want(int ssl_error)
{
    switch (ssl_error) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
    case SSL_ERROR_WANT_CONNECT:
    case SSL_ERROR_WANT_ACCEPT:
    case SSL_ERROR_WANT_X509_LOOKUP:
    case SSL_ERROR_WANT_ASYNC:
    case SSL_ERROR_WANT_ASYNC_JOB:
    case SSL_ERROR_WANT_CLIENT_HELLO_CB:
    case SSL_ERROR_WANT_RETRY_VERIFY:
        return true;
    default:
        return false;
    }
}

/*
 * An auth-mode ClientHello reached this TLS listener.  OpenSSL closes
 * without an alert on bytes that do not look like TLS; we answer this one
 * pattern with a single fatal protocol_version alert (PROTOCOL.md "TLS
 * mode"), so that the auth-mode client fails at once with EMODE instead of
 * guessing from a bare close.  It tells nothing a TLS ClientHello would not:
 * that this port speaks TLS.  Best effort, never blocking.
 */
void lsec__tls_send_mode_alert(int fd)
{
    static const uint8_t alert[] = {
        0x15, 0x03, 0x03, 0x00, 0x02, 0x02, SSL_AD_PROTOCOL_VERSION};
    (void)lsec__io.send(fd, alert, sizeof(alert), MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void send_mode_alert(lsec__tls *t)
{
    lsec__tls_send_mode_alert(t->fd);
}

static int handshake_failed(lsec__tls *t, int ssl_error)
{
    struct queue_summary q;

    drain_queue(&q);
    lsec__log(LSEC_LOG_DEBUG, "tls %s: handshake failed (SSL error %d, %s)",
              role_name(t), ssl_error, q.text != NULL ? q.text : "no reason");

    if (q.nomem)
        return sticky(t, LSEC_ENOMEM, "out of memory in the TLS handshake");
    if (ssl_error == SSL_ERROR_ZERO_RETURN)
        return sticky(t, LSEC_ECLOSED,
                      "the peer closed the TLS connection during the "
                      "handshake");
    /* The peer answered with an alert: it is a TLS endpoint that refused
     * us.  A version alert means an incompatible TLS stack; every other
     * alert (handshake_failure, decrypt_error, ...) means it does not hold
     * our PSK or identity, and every such case is the same EAUTH. */
    if (q.alert >= 0) {
        if (q.alert == SSL_AD_PROTOCOL_VERSION)
            return sticky(t, LSEC_ETLS, "the peer does not accept TLS 1.3");
        return sticky(t, LSEC_EAUTH, "TLS PSK authentication failed");
    }
    /* An auth client's hello reached this TLS listener: the mismatch is
     * positively known, and the alert tells the client so.  (An auth
     * listener never speaks first, so a client has no such case.) */
    if (t->role == LSEC__HS_SERVER && t->got_bytes && t->first_len >= 4 &&
        memcmp(t->first, "LSEC", 4) == 0) {
        send_mode_alert(t);
        return sticky(t, LSEC_EMODE,
                      "an auth-mode hello reached a TLS "
                      "endpoint (mode mismatch?)");
    }
    /* The peer hung up. */
    if (peer_vanished(t)) {
        if (t->got_bytes)
            return sticky(t, LSEC_ERESET,
                          "the connection was lost during the TLS handshake");
        /* A listener that refuses a connection (descriptor limit, too many
         * pending handshakes, peer policy) closes it without a word, and so
         * does an auth listener (a genuine ticket carries its listener's
         * mode: only a stale one meets the other mode).  A refusal the
         * caller may retry. */
        if (t->role == LSEC__HS_CLIENT)
            return sticky(t, LSEC_ECLOSED, DETAIL_REFUSED);
        return sticky(t, LSEC_ECLOSED,
                      "the client closed before its TLS hello");
    }
    if (t->sys_errno != 0)
        return sticky_sys(t, LSEC_EIO, "socket error in the TLS handshake");
    /* The peer's first bytes are not a TLS handshake record (0x16), nor an
     * alert (0x15, handled above). */
    if (t->got_bytes && t->first[0] != 0x16)
        return sticky(t, LSEC_EPROTO, "the peer's bytes are not TLS");
    if (q.version)
        return sticky(t, LSEC_ETLS, "the peer does not speak TLS 1.3");
    /* Every remaining handshake failure is about the PSK: the wrong
     * identity (no PSK, and no certificate to fall back on), a binder that
     * does not verify (wrong PSK), a certificate offered instead of the
     * PSK, or no (EC)DHE share with it.  They all look the same. */
    return sticky(t, LSEC_EAUTH, "TLS PSK authentication failed");
}

/* ------------------------------------------------------------------------ */
/* Operations                                                                */

static void process_buffered(lsec__tls *t);

static void reset_io_state(lsec__tls *t)
{
    t->sys_errno = 0;
    clear_errors();
}

int lsec__tls_handshake(lsec__tls *t)
{
    int r, e;

    if (t == NULL)
        return lsec__fail(LSEC_EINVAL, "no TLS connection");
    if (t->fatal != 0)
        return lsec__fail(t->fatal, "%s", t->fatal_detail);
    if (t->done)
        return 0;
    reset_io_state(t);
    r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        clear_errors();
        /* Belt and braces: the configuration allows nothing else, but the
         * connection is used only if it really is TLS 1.3 authenticated by
         * our PSK (a "reused" session is the external PSK's). */
        if (SSL_version(t->ssl) != TLS1_3_VERSION)
            return sticky(t, LSEC_ETLS, "the peer does not speak TLS 1.3");
        if (!SSL_session_reused(t->ssl) ||
            (t->role == LSEC__HS_SERVER && !t->identity_ok))
            return sticky(t, LSEC_EAUTH, "TLS PSK authentication failed");
        t->done = true;
        /* OpenSSL has what it needs: a channel's own copy of the PSK is
         * gone for the rest of its life. */
        OPENSSL_cleanse(t->psk, sizeof(t->psk));
        /* Authenticated: read what the socket holds from now on, not a
         * 5-byte header and then the body of each record. */
        SSL_set_read_ahead(t->ssl, 1);
        /* The peer's first records may have come with its last flight. */
        process_buffered(t);
        return 0;
    }
    e = SSL_get_error(t->ssl, r);
    if (is_want(e)) {
        clear_errors();
        return want(e);
    }
    return handshake_failed(t, e);
}

/* A failure of SSL_read/SSL_write after the handshake. */
static int io_failed(lsec__tls *t, int ssl_error, const char *what)
{
    struct queue_summary q;

    drain_queue(&q);
    if (ssl_error == SSL_ERROR_ZERO_RETURN)
        return lsec__fail(LSEC_ECLOSED, "the peer closed the TLS connection");
    lsec__log(LSEC_LOG_DEBUG, "tls %s: %s failed (SSL error %d, %s)",
              role_name(t), what, ssl_error,
              q.text != NULL ? q.text : "no reason");
    if (q.nomem)
        return sticky(t, LSEC_ENOMEM, "out of memory in TLS");
    if (peer_vanished(t))
        return sticky(t, LSEC_ERESET,
                      "the connection was lost without a TLS close_notify");
    if (t->sys_errno != 0)
        return sticky_sys(t, LSEC_ERESET, "socket error under TLS");
    if (q.alert >= 0)
        return sticky(t, LSEC_ETLS, "the peer aborted the TLS connection");
    return sticky(t, LSEC_ETLS, "invalid TLS record from the peer");
}

static int io_check(lsec__tls *t, const void *buf, size_t len, size_t *n)
{
    if (n != NULL)
        *n = 0;
    if (t == NULL || buf == NULL || n == NULL || len == 0)
        return lsec__fail(LSEC_EINVAL, "bad TLS read/write arguments");
    if (t->fatal != 0)
        return lsec__fail(t->fatal, "%s", t->fatal_detail);
    if (!t->done)
        return lsec__fail(LSEC_EINVAL, "the TLS handshake is not finished");
    return 0;
}

/* The outcome of SSL_read_ex/SSL_write_ex, whose result is `r`. */
static int io_result(lsec__tls *t, int r, size_t *n, const char *what)
{
    int e;

    if (r == 1) {
        clear_errors();
        return 0;
    }
    *n = 0;
    e = SSL_get_error(t->ssl, r);
    if (is_want(e)) {
        clear_errors();
        return want(e);
    }
    return io_failed(t, e, what);
}

/*
 * With read-ahead, a whole record can wait inside OpenSSL undecrypted, where
 * neither the socket nor SSL_pending() shows it, and a poll loop would wait
 * for it forever.  Decrypt the next record if it is complete, so that
 * lsec__tls_pending() counts its plaintext; a partial record stays (the
 * socket reports the rest when it comes).  Errors are left for the next
 * SSL_read to report.
 */
static void process_buffered(lsec__tls *t)
{
    unsigned char b;
    size_t got;

    if (SSL_pending(t->ssl) > 0 || !SSL_has_pending(t->ssl))
        return;
    /* The socket is non-blocking: a partial record costs one recv. */
    if (SSL_peek_ex(t->ssl, &b, 1, &got) != 1)
        clear_errors();
    t->sys_errno = 0;
}

int lsec__tls_read(lsec__tls *t, void *buf, size_t len, size_t *n)
{
    int rc = io_check(t, buf, len, n);

    if (rc != 0)
        return rc;
    reset_io_state(t);
    rc = io_result(t, SSL_read_ex(t->ssl, buf, len, n), n, "read");
    if (rc == 0)
        process_buffered(t);
    return rc;
}

int lsec__tls_write(lsec__tls *t, const void *buf, size_t len, size_t *n)
{
    int rc = io_check(t, buf, len, n);

    if (rc != 0)
        return rc;
    reset_io_state(t);
    return io_result(t, SSL_write_ex(t->ssl, buf, len, n), n, "write");
}

size_t lsec__tls_pending(const lsec__tls *t)
{
    int n;

    if (t == NULL || !t->done)
        return 0;
    n = SSL_pending(t->ssl);
    return n > 0 ? (size_t)n : 0;
}

void lsec__tls_shutdown(lsec__tls *t)
{
    int64_t deadline;

    /* OpenSSL forbids SSL_shutdown after a fatal error or mid-handshake. */
    if (t == NULL || !t->done || t->fatal != 0)
        return;
    reset_io_state(t);
    /* Best effort, never waiting for the peer's close_notify; but ours is
     * what tells the peer a clean end from a lost connection, so when the
     * socket is full right now it gets a short, bounded wait for room. */
    t->dontwait = true;
    deadline = lsec__deadline(SHUTDOWN_WAIT_MS);
    for (;;) {
        int r = SSL_shutdown(t->ssl);
        if (r >= 0 || SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_WRITE)
            break;
        ERR_clear_error();
        if (lsec__wait_fd(t->fd, POLLOUT, deadline, false) != 0)
            break;
    }
    t->dontwait = false;
    clear_errors();
}

int lsec__tls_close_notify(lsec__tls *t, int64_t deadline, bool nowait)
{
    if (t == NULL || !t->done || t->fatal != 0)
        return lsec__fail(LSEC_EINVAL, "no established TLS connection");
    reset_io_state(t);
    for (;;) {
        /* 0: sent, the peer's close_notify not yet seen (SSL_read goes on
         * until it comes); 1: both sent. */
        int r = SSL_shutdown(t->ssl);
        if (r >= 0) {
            clear_errors();
            return 0;
        }
        int e = SSL_get_error(t->ssl, r);
        if (e != SSL_ERROR_WANT_WRITE) {
            clear_errors();
            if (peer_vanished(t))
                return lsec__fail(LSEC_ERESET, "connection lost at shutdown");
            return lsec__fail(LSEC_ETLS, "TLS shutdown failed (SSL error %d)",
                              e);
        }
        ERR_clear_error();
        int rc = lsec__wait_fd(t->fd, POLLOUT, deadline, nowait);
        if (rc != 0)
            return rc;
    }
}

int lsec__tls_describe(const lsec__tls *t, char *buf, size_t len)
{
    const char *suite;
    int n;

    if (t == NULL || buf == NULL || len == 0)
        return lsec__fail(LSEC_EINVAL, "bad TLS describe arguments");
    buf[0] = '\0';
    if (!t->done)
        return lsec__fail(LSEC_EINVAL, "the TLS handshake is not finished");
    suite = SSL_CIPHER_get_name(SSL_get_current_cipher(t->ssl));
    n = snprintf(buf, len, "%s %s", SSL_get_version(t->ssl), suite);
    if (n < 0 || (size_t)n >= len) {
        buf[0] = '\0';
        return lsec__fail(LSEC_EMSGSIZE, "TLS description buffer too small");
    }
    return 0;
}
