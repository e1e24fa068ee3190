/*
 * One pre-channel connection, driven by both sides: the listener's pending
 * set and the connector each hold an lsec__conn and call lsec__conn_step
 * when its descriptor is ready.  This is the one auth handshake pump (it
 * feeds lsec__hs_step and writes what it answers), the one TLS handshake
 * driver (the one caller of lsec__tls_handshake) and the one place where
 * their wants become poll events.
 *
 * The rules both sides keep: nothing is ever read beyond the handshake
 * (bytes behind it become the channel's first); after writing a message
 * the peer must answer, the next step waits for readability rather than
 * read at once (the answer cannot be there before the peer has run); a
 * server tells a failed peer nothing, it only closes.
 */
#include "conn.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int lsec__conn_start(lsec__conn *c, int role, int mode, const lsec__addr *local,
                     const lsec__addr *remote, int64_t uid, int64_t deadline,
                     const lsec__conn_keys *k)
{
    int fd = c->fd;
    char identity[LSEC__PSK_IDENTITY_MAX];
    size_t used = 0;
    int rc;

    memset(c, 0, sizeof(*c));
    c->fd = fd;
    c->role = role;
    c->mode = mode;
    c->deadline = deadline;
    c->uid = uid;
    c->local = *local;
    c->remote = *remote;
    c->events = role == LSEC__ROLE_CLIENT ? POLLOUT : POLLIN;
    if (mode == LSEC_MODE_TLS) {
        /* A server allocates its TLS state only once a whole ClientHello
         * record is in (first_record). */
        if (role == LSEC__ROLE_SERVER)
            return 0;
        rc = lsec__ticket_psk_identity(k->ticket, identity, sizeof(identity));
        if (rc == 0)
            rc = lsec__tls_new(k->tls_ctx, c->fd, k->ticket->secret, identity,
                               &c->tls);
        lsec__wipe(identity, sizeof(identity));
        return rc;
    }
    if (k->k_client != NULL)
        rc = lsec__hs_init_keys(&c->hs, role, LSEC_MODE_AUTH, k->k_client,
                                k->k_server, local, remote, NULL);
    else
        rc = lsec__hs_init(&c->hs, role, LSEC_MODE_AUTH, k->ticket->secret,
                           local, remote, NULL);
    if (rc != 0 || role == LSEC__ROLE_SERVER)
        return rc;
    /* The client speaks first: its hello is the first output. */
    rc = lsec__hs_step(&c->hs, NULL, 0, &used, c->out, sizeof(c->out),
                       &c->out_len);
    if (rc != LSEC__AGAIN)
        return rc < 0 ? rc : lsec__fail(LSEC_EPROTO, "handshake state");
    return 0;
}

/* A server's failure: why, for the listener's log; the peer is only
 * closed. */
static int drop(lsec__conn *c, int level, const char *why)
{
    c->why = why;
    c->why_level = level;
    return LSEC_ECLOSED;
}

/* A client that met a close or reset before any answer: the listener
 * refused it (peer policy, one-shot spent, a TLS listener that drops an
 * auth hello).  Whether that arrives as FIN or as a reset (our hello was
 * still unread) is timing, so both are the same LSEC_ECLOSED. */
static int refused(void)
{
    return lsec__fail(LSEC_ECLOSED, "the listener closed the connection "
                                    "without answering (refused, wrong "
                                    "mode, or not a loopsec listener)");
}

/* Writing what we owe the peer failed. */
static int lost_writing(lsec__conn *c)
{
    if (c->role == LSEC__ROLE_SERVER)
        return drop(c, LSEC_LOG_INFO, "connection lost during handshake");
    /* Before any answer, a reset is the listener refusing us. */
    if (c->got == 0)
        return refused();
    return lsec__fail_errno(LSEC_ERESET, errno,
                            "connection lost during the handshake");
}

/* The peer closed (n == 0) or the read failed. */
static int lost_reading(lsec__conn *c, ssize_t n)
{
    if (c->role == LSEC__ROLE_SERVER)
        /* After our ServerHello, a client that leaves has usually found
         * that our proof does not match its secret. */
        return drop(c, LSEC_LOG_INFO,
                    c->hs.transcript_len > LSEC__HS_HELLO_BYTES
                        ? "peer left after our proof (a different secret?)"
                        : "peer closed during handshake");
    if (c->got == 0)
        return refused();
    return lsec__fail(n == 0 ? LSEC_ECLOSED : LSEC_ERESET,
                      "the listener closed the connection during the "
                      "handshake");
}

/* The first three bytes of a TLS handshake record: type 0x16, then a
 * version 0x03 0x01..0x04 (PROTOCOL.md "Mode mismatch"), as the TLS
 * listener checks them. */
static bool is_tls_hello(const uint8_t *b, size_t n)
{
    return n >= 3 && b[0] == 0x16 &&
           lsec__tls_record_start(b, 3, NULL) == LSEC__AGAIN;
}

/* The handshake refused the peer's bytes `in`. */
static int auth_failed(lsec__conn *c, int rc, const uint8_t *in, size_t n)
{
    if (c->role == LSEC__ROLE_CLIENT)
        return rc;
    /* A TLS hello too is closed at once and without a word: the client
     * reports a refusal (LSEC_ECLOSED), as for any other close. */
    return drop(c, LSEC_LOG_WARN,
                c->hs.transcript_len == 0 && is_tls_hello(in, n)
                    ? "mode mismatch (peer is a TLS client)"
                : rc == LSEC_EAUTH ? "authentication failed"
                : rc == LSEC_EMODE ? "mode mismatch (peer is not an "
                                     "auth-mode client)"
                                   : "malformed handshake");
}

/* Feed received bytes to the handshake; its answer goes to c->out and
 * any bytes behind the handshake to c->early. */
static int feed(lsec__conn *c, const uint8_t *in, size_t n)
{
    size_t off = 0;
    int rc = LSEC__AGAIN;

    /* The state machine stops at each message boundary and never
     * consumes application bytes that follow the last one. */
    while (off < n) {
        size_t used = 0, outlen = 0;
        rc =
            lsec__hs_step(&c->hs, in + off, n - off, &used, c->out + c->out_len,
                          sizeof(c->out) - c->out_len, &outlen);
        off += used;
        c->out_len += outlen;
        if (rc != LSEC__AGAIN || used == 0)
            break;
    }
    if (rc == LSEC__DONE) {
        memcpy(c->early, in + off, n - off);
        c->early_len = n - off;
    }
    return rc;
}

/* Write what we owe the peer: 0 when all is out (or nothing was owed),
 * LSEC__WANT_WRITE, or the failure. */
static int flush_out(lsec__conn *c)
{
    int rc;

    if (c->out_off >= c->out_len)
        return 0;
    rc = lsec__write_some(c->fd, c->out, c->out_len, &c->out_off);
    if (rc == LSEC__WANT_WRITE)
        return rc;
    if (rc < 0)
        return lost_writing(c);
    c->out_off = c->out_len = 0;
    return 0;
}

/* One read, fed to the handshake: LSEC__AGAIN (go on: read again, or
 * write the answer), LSEC__WANT_READ, LSEC__DONE, or the failure. */
static int read_feed(lsec__conn *c)
{
    uint8_t in[LSEC__HS_MSG_MAX];
    ssize_t n;
    int rc;

    do
        n = lsec__io.recv(c->fd, in, sizeof(in), MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return LSEC__WANT_READ;
    if (n <= 0)
        return lost_reading(c, n);
    c->got += (size_t)n;
    rc = feed(c, in, (size_t)n);
    if (rc < 0)
        rc = auth_failed(c, rc, in, (size_t)n);
    lsec__wipe(in, sizeof(in));
    if (rc == LSEC__DONE && c->role == LSEC__ROLE_CLIENT) {
        c->authed = true; /* the proof in c->out goes next */
        return LSEC__AGAIN;
    }
    if (rc != LSEC__AGAIN)
        return rc;
    /* A partial message and nothing more waiting (the read did not fill
     * the buffer): wait, rather than read again for EAGAIN. */
    return c->out_len == 0 && (size_t)n < sizeof(in) ? LSEC__WANT_READ
                                                     : LSEC__AGAIN;
}

/* The auth handshake pump: write what we owe, read, feed, repeat. */
static int auth_step(lsec__conn *c)
{
    for (;;) {
        bool owed = c->out_len > 0;
        int rc = flush_out(c);
        if (rc != 0)
            return rc;
        /* The client's proof is out: done.  Otherwise the peer must
         * answer first. */
        if (owed)
            return c->authed ? LSEC__DONE : LSEC__WANT_READ;
        if ((rc = read_feed(c)) != LSEC__AGAIN)
            return rc;
    }
}

/* Wake up for `n` bytes, not for each one (the peer's bytes stay in the
 * kernel until then).  Best effort: without it, the owner polls more. */
static void set_rcvlowat(lsec__conn *c, int n)
{
    if (c->rcvlowat == n)
        return;
    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &n, sizeof(n)) == 0)
        c->rcvlowat = n;
}

/* Has the peer ended its side (the last bytes it sent are all there is)? */
static bool peer_ended(int fd)
{
    struct pollfd q = {fd, POLLRDHUP, 0};
    return lsec__io.poll(&q, 1, 0) > 0 &&
           (q.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

/* The TLS state of a server, made once the whole first record is in. */
static int tls_attach(lsec__conn *c, const lsec__conn_keys *k)
{
    char identity[LSEC__PSK_IDENTITY_MAX];
    int rc;

    if (c->rcvlowat > 1)
        set_rcvlowat(c, 1);
    rc = lsec__ticket_psk_identity(k->ticket, identity, sizeof(identity));
    if (rc == 0)
        rc = lsec__tls_new(k->tls_ctx, c->fd, k->ticket->secret, identity,
                           &c->tls);
    if (rc == 0)
        rc = lsec__tls_prefix(c->tls, c->hdr, c->hdr_len);
    lsec__wipe(identity, sizeof(identity));
    if (rc != 0)
        return drop(c, LSEC_LOG_ERROR, "cannot start a TLS handshake");
    return LSEC__DONE;
}

/*
 * A TLS server before any TLS state: check the peer's first bytes as they
 * arrive and refuse at the first one that cannot start a TLS handshake
 * record (an HTTP request is closed at its 'G', as the auth listener
 * closes at byte 0), and allocate the SSL object only when the whole
 * first record is in the kernel, read with read-ahead off.  LSEC__DONE:
 * go on with the handshake.
 */
static int first_record(lsec__conn *c, const lsec__conn_keys *k)
{
    size_t total = 0;
    ssize_t n;
    int rc, avail = 0;

    /* The header is read, not peeked, so that a short read never repeats;
     * the TLS connection gets it back through lsec__tls_prefix. */
    if (c->hdr_len < sizeof(c->hdr)) {
        do
            n = lsec__io.recv(c->fd, c->hdr + c->hdr_len,
                              sizeof(c->hdr) - c->hdr_len, MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return LSEC__WANT_READ;
        if (n <= 0)
            return drop(c, LSEC_LOG_INFO,
                        c->hdr_len == 0 ? "peer closed during handshake"
                                        : "connection lost during handshake");
        c->hdr_len += (size_t)n;
    }
    rc = lsec__tls_record_start(c->hdr, c->hdr_len, &total);
    if (rc == LSEC_EMODE) {
        lsec__tls_send_mode_alert(c->fd);
        return drop(c, LSEC_LOG_WARN,
                    "mode mismatch (peer is not a TLS client)");
    }
    if (rc < 0)
        return drop(c, LSEC_LOG_WARN, "TLS handshake failed (not TLS)");
    if (rc == 0 && ioctl(c->fd, FIONREAD, &avail) == 0 &&
        (size_t)avail >= total - c->hdr_len)
        return tls_attach(c, k);
    /* A valid start, more to come -- unless the peer has left. */
    if (peer_ended(c->fd))
        return drop(c, LSEC_LOG_INFO, "connection lost during handshake");
    set_rcvlowat(c, rc == 0 ? (int)(total - c->hdr_len)
                            : (int)(sizeof(c->hdr) - c->hdr_len));
    return LSEC__WANT_READ;
}

/* The TLS handshake driver. */
static int tls_step(lsec__conn *c, const lsec__conn_keys *k)
{
    int rc;

    if (c->tls == NULL && (rc = first_record(c, k)) != LSEC__DONE)
        return rc;
    rc = lsec__tls_handshake(c->tls);
    if (rc == 0)
        return LSEC__DONE;
    if (rc > 0 || c->role == LSEC__ROLE_CLIENT)
        return rc; /* LSEC__WANT_*, or the client's error with its detail */
    return drop(c, LSEC_LOG_WARN,
                rc == LSEC_EAUTH   ? "TLS authentication failed"
                : rc == LSEC_EMODE ? "mode mismatch (peer is not a TLS "
                                     "client)"
                                   : "TLS handshake failed");
}

int lsec__conn_step(lsec__conn *c, const lsec__conn_keys *k)
{
    int rc;

    if (c->ready)
        return LSEC__DONE;
    rc = c->mode == LSEC_MODE_TLS ? tls_step(c, k) : auth_step(c);
    c->ready = rc == LSEC__DONE;

    /* The one mapping of a step's want to the events to poll for. */
    c->events = rc == LSEC__WANT_READ || rc == LSEC__WANT_WRITE
                    ? lsec__want_events(rc)
                    : 0;
    return rc;
}

bool lsec__conn_sent_hello(const lsec__conn *c)
{
    if (c->mode == LSEC_MODE_TLS)
        return c->tls != NULL;
    return c->hs.transcript_len >= LSEC__HS_HELLO_BYTES;
}

int lsec__conn_channel(lsec__conn *c, const lsec_opts *o, lsec_channel **out)
{
    int rc;

    lsec__hs_wipe(&c->hs);
    rc = lsec__channel_new(c->fd, c->tls, o, &c->local, &c->remote, c->uid,
                           c->early, c->early_len, out);
    c->fd = -1; /* lsec__channel_new owns them now, also on failure */
    c->tls = NULL;
    lsec__conn_free(c);
    return rc;
}

void lsec__conn_free(lsec__conn *c)
{
    if (c->tls != NULL)
        lsec__tls_free(c->tls);
    lsec__hs_wipe(&c->hs);
    if (c->fd >= 0)
        close(c->fd);
    lsec__wipe(c, sizeof(*c));
    c->fd = -1;
}
