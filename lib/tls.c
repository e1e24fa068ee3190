/*
 * TLS mode, part two: the connection engine over OpenSSL (tls_ctx.c sets
 * OpenSSL up).  It does no I/O: OpenSSL reads the ciphertext that the
 * shell (tls_io.c) put in `in` and writes to `out`, which the shell sends
 * (tls_engine.h).  Every call here runs OpenSSL over what those buffers
 * hold and says what it needs next; the shell waits for the socket.
 *
 * OpenSSL's error queue is cleared before every SSL call and after every
 * failure, so nothing leaks into another call or into another library in the
 * same process.  OpenSSL's own text never reaches lsec_last_detail: every
 * failure is reported with a fixed reason.
 */
#include "testing.h"
#include "tls_engine.h"
#include "tls_ossl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The detail the client reports when the listener hangs up on its hello
 * without a word. */
#define DETAIL_REFUSED                                                         \
    "the listener closed the connection without a TLS answer (refused: "       \
    "descriptor limit, too many pending handshakes or peer policy; retry)"

/* How many bytes lsec__tls_prefix takes (what the listener read to check
 * the record header). */
#define PREFIX_MAX 8

#define clear_errors lsec__tls_clear_errors

/* ------------------------------------------------------------------------ */
/* Connections                                                               */

int lsec__tls_new(lsec__tls_ctx *ctx, int fd,
                  const uint8_t secret[LSEC_SECRET_BYTES], const char *identity,
                  lsec__tls **out)
{
    lsec__tls *t;
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
    t->role = lsec__tls_ctx_role(ctx);
    t->fd = fd;
    memcpy(t->identity, identity, idlen + 1);
    t->out.fixed = t->out_fixed;
    t->out.fixed_cap = sizeof(t->out_fixed);
    t->identity_len = idlen;
    /* Only the derived PSK is kept, never the secret itself. */
    lsec__tls_psk(t->psk, secret);
    t->ssl = lsec__tls_ssl_new(ctx, t);
    if (t->ssl == NULL) {
        lsec__tls_free(t);
        return lsec__fail(LSEC_ENOMEM, "cannot create a TLS connection");
    }
    *out = t;
    return 0;
}

bool lsec__tls_holds_psk(const lsec__tls *t)
{
    static const uint8_t zero[LSEC__KEY_BYTES];
    return t != NULL && CRYPTO_memcmp(t->psk, zero, sizeof(zero)) != 0;
}

int lsec__tls_prefix(lsec__tls *t, const uint8_t *b, size_t n)
{
    size_t room;
    uint8_t *p;

    if (t == NULL || (b == NULL && n > 0) || n > PREFIX_MAX || t->got_bytes ||
        t->in.len != 0)
        return lsec__fail(LSEC_EINVAL, "bad TLS prefix");
    if (n == 0)
        return 0;
    /* What the listener read comes first, as if the shell had read it. */
    p = lsec__tlsbuf_room(&t->in, PREFIX_MAX, &room);
    if (p == NULL)
        return lsec__fail(LSEC_ENOMEM, "out of memory for a TLS prefix");
    memcpy(p, b, n);
    t->in.len += n;
    return 0;
}

void lsec__tls_free(lsec__tls *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl); /* frees the BIO; cleanses the sessions' keys */
    t->in.off = t->in.len;
    t->out.off = t->out.len;
    lsec__tlsbuf_trim(&t->in);
    lsec__tlsbuf_trim(&t->out);
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
    lsec__tls_clear_errors();
}

static bool peer_vanished(const lsec__tls *t)
{
    return t->eof || t->sys_errno == ECONNRESET || t->sys_errno == EPIPE;
}

static const char *role_name(const lsec__tls *t)
{
    return t->role == LSEC__ROLE_SERVER ? "server" : "client";
}

/*
 * An auth-mode ClientHello reached this TLS listener.  OpenSSL closes
 * without an alert on bytes that do not look like TLS; we answer this one
 * pattern with a single fatal protocol_version alert (PROTOCOL.md "TLS
 * mode"), so that the auth-mode client fails at once with EMODE instead of
 * guessing from a bare close.  It tells nothing a TLS ClientHello would not:
 * that this port speaks TLS.  Queued after whatever OpenSSL wrote; the shell
 * sends it, best effort.
 */
static void queue_mode_alert(lsec__tls *t)
{
    static const uint8_t alert[] = LSEC__TLS_MODE_ALERT;
    size_t room;
    uint8_t *p = lsec__tlsbuf_room(
        &t->out, t->out.len - t->out.off + sizeof(alert), &room);

    if (p != NULL && room >= sizeof(alert)) {
        memcpy(p, alert, sizeof(alert));
        t->out.len += sizeof(alert);
    }
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
    if (t->role == LSEC__ROLE_SERVER && t->got_bytes && t->first_len >= 4 &&
        memcmp(t->first, "LSEC", 4) == 0) {
        queue_mode_alert(t);
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
        if (t->role == LSEC__ROLE_CLIENT)
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
static int io_result(lsec__tls *t, int r, size_t *n, const char *what);

/* Whether `in` holds a whole record (OpenSSL, without read-ahead, holds at
 * most the part of the record it is reading). */
static bool record_waiting(const lsec__tls *t)
{
    size_t avail = t->in.len - t->in.off;
    const uint8_t *h = t->in.b + t->in.off;

    return avail >= LSEC__TLS_RECORD_HDR &&
           avail - LSEC__TLS_RECORD_HDR >= ((size_t)h[3] << 8 | h[4]);
}

int lsec__tlse_handshake(lsec__tls *t)
{
    int r, e;

    if (t->fatal != 0)
        return lsec__fail(t->fatal, "%s", t->fatal_detail);
    if (t->done)
        return 0;
    clear_errors();
    r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        clear_errors();
        /* Belt and braces: the configuration allows nothing else, but the
         * connection is used only if it really is TLS 1.3 authenticated by
         * our PSK (a "reused" session is the external PSK's). */
        if (SSL_version(t->ssl) != TLS1_3_VERSION)
            return sticky(t, LSEC_ETLS, "the peer does not speak TLS 1.3");
        if (!SSL_session_reused(t->ssl) ||
            (t->role == LSEC__ROLE_SERVER && !t->identity_ok))
            return sticky(t, LSEC_EAUTH, "TLS PSK authentication failed");
        t->done = true;
        /* OpenSSL has what it needs: a channel's own copy of the PSK is
         * gone for the rest of its life. */
        OPENSSL_cleanse(t->psk, sizeof(t->psk));
        /* The peer's first records may have come with its last flight. */
        process_buffered(t);
        return 0;
    }
    e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ && !t->nomem) {
        clear_errors();
        return LSEC__WANT_READ;
    }
    if (t->nomem) {
        clear_errors();
        return sticky(t, LSEC_ENOMEM, "out of memory in the TLS handshake");
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

int lsec__tlse_io_check(lsec__tls *t, const void *buf, size_t len, size_t *n)
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
    if (e == SSL_ERROR_WANT_READ && !t->nomem) {
        clear_errors();
        return LSEC__WANT_READ;
    }
    return io_failed(t, e, what);
}

/*
 * A record decrypted ahead of the caller (behind bytes this call delivers)
 * failed: classified now, as the read that reports it would, while
 * OpenSSL's queue still says why (a fatal alert from the peer also marks
 * the connection shut, which a later SSL_read reports as a close_notify),
 * and left for the next read: a failure is sticky there, a close_notify
 * read again.  True after a KeyUpdate (WANT_READ): the next record may be
 * read.
 */
static bool ahead_failed(lsec__tls *t, size_t off)
{
    size_t none;

    if (io_result(t, 0, &none, "read") == LSEC__WANT_READ)
        return t->in.off != off; /* it took its record: try the next */
    t->peek_failed = true;
    lsec__clear_detail(); /* this call succeeds */
    return false;
}

/*
 * A whole record can wait in `in` undecrypted, where the socket no longer
 * shows it and SSL_pending() does not count it, and a poll loop would wait
 * for it forever.  Decrypt it, so that lsec__tls_pending() counts its
 * plaintext; a partial record stays (the socket reports the rest when it
 * comes).  Errors are left for the next SSL_read to report.
 */
static void process_buffered(lsec__tls *t)
{
    unsigned char b;
    size_t got;

    while (!t->peek_failed && record_waiting(t) && SSL_pending(t->ssl) == 0) {
        size_t off = t->in.off;
        if (SSL_peek_ex(t->ssl, &b, 1, &got) == 1 || !ahead_failed(t, off))
            return;
    }
}

/*
 * Every whole record that waits in `in` is decrypted straight into the
 * caller's buffer while it has room, one SSL_read_ex each: a stream of
 * small messages is read in as many records per call as one recv brought
 * (the channel's decoder then hands them out without another TLS call),
 * instead of one record per call and a peek ahead at the next.  A record
 * that fails behind the first one's bytes is left for the next call to
 * report, as process_buffered leaves it.
 */
int lsec__tlse_read(lsec__tls *t, void *buf, size_t len, size_t *n)
{
    uint8_t *p = buf;
    size_t got;
    int rc;

    clear_errors();
    for (;;) {
        size_t off = t->in.off;
        rc = io_result(t, SSL_read_ex(t->ssl, buf, len, n), n, "read");
        /* A KeyUpdate takes its record and says WANT_READ: the records
         * behind it may be here already (the socket will not say so). */
        if (rc != LSEC__WANT_READ || t->in.off == off || !record_waiting(t))
            break;
    }
    if (rc != 0)
        return rc;
    /* The queue is empty here (io_result cleared it after the success), and
     * only these reads add to it until the one clear after the loop (a
     * success leaves it empty: an error of our own there at worst makes
     * the failure below look like one, which the next call reads again). */
    bool more = false;
    while (*n < len && record_waiting(t) && SSL_pending(t->ssl) == 0) {
        size_t off = t->in.off;
        more = true;
        if (SSL_read_ex(t->ssl, p + *n, len - *n, &got) == 1)
            *n += got;
        else if (!ahead_failed(t, off))
            break;
    }
    if (more)
        clear_errors();
    process_buffered(t);
    return 0;
}

int lsec__tlse_write(lsec__tls *t, const void *buf, size_t len, size_t *n)
{
    clear_errors();
    return io_result(t, SSL_write_ex(t->ssl, buf, len, n), n, "write");
}

int lsec__tlse_close(lsec__tls *t)
{
    int r;

    clear_errors();
    /* 0: queued, the peer's close_notify not yet seen (SSL_read goes on
     * until it comes); 1: both.  Into a buffer: it never waits. */
    r = SSL_shutdown(t->ssl);
    clear_errors();
    if (r < 0)
        return lsec__fail(t->nomem ? LSEC_ENOMEM : LSEC_ETLS,
                          "TLS shutdown failed");
    t->shut_queued = true;
    return 0;
}

int lsec__tlse_send_failed(lsec__tls *t)
{
    if (!t->done)
        return handshake_failed(t, SSL_ERROR_SYSCALL);
    return io_failed(t, SSL_ERROR_SYSCALL, "write");
}

void lsec__tlse_waiting(lsec__tls *t)
{
    /* A listener's pending handshake holds no record buffer while it waits
     * for the client: OpenSSL allocates them again when the answer comes.
     * Only then, not per record (SSL_MODE_RELEASE_BUFFERS while
     * handshaking made every idle channel 18 KiB larger, from the churn
     * around the end of the handshake).  Fails harmlessly if one is not
     * empty.  docs/SECURITY.md "Pre-authentication memory". */
    if (t->role == LSEC__ROLE_SERVER && !t->done)
        (void)SSL_free_buffers(t->ssl);
}

bool lsec__tlse_buffered(const lsec__tls *t)
{
    /* The end of the stream or a failure that OpenSSL has seen counts: the
     * next SSL_read reports it without any input. */
    return t->in.off < t->in.len || t->peek_failed || SSL_has_pending(t->ssl) ||
           (SSL_get_shutdown(t->ssl) & SSL_RECEIVED_SHUTDOWN) != 0;
}

size_t lsec__tls_pending(const lsec__tls *t)
{
    int n;

    if (t == NULL || !t->done)
        return 0;
    n = SSL_pending(t->ssl);
    return n > 0 ? (size_t)n : 0;
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
