/*
 * One pre-channel connection (conn.c): a connected socket on its way to
 * becoming a channel, on either side.  The listener keeps one per pending
 * handshake, the connector one for its dial; both drive it with
 * lsec__conn_step.  Never installed.
 */
#ifndef LOOPSEC_CONN_H
#define LOOPSEC_CONN_H

#include "internal.h"

typedef struct lsec__conn {
    int fd;           /* owned: closed by lsec__conn_free */
    int role;         /* LSEC__ROLE_CLIENT or LSEC__ROLE_SERVER */
    int mode;         /* LSEC_MODE_AUTH or LSEC_MODE_TLS */
    int64_t deadline; /* absolute (lsec__deadline) */
    int64_t uid;      /* the peer's, as looked up; -1 when unknown */
    lsec__addr local, remote;
    short events;     /* POLLIN or POLLOUT: what the last step waits for */
    short set_events; /* the owner's: what its readiness set holds for fd */
    bool authed;      /* auth client: the ServerHello verified */
    bool ready;       /* authenticated: every further step is LSEC__DONE */
    lsec__hs hs;      /* auth mode */
    /* tls mode; a server's stays NULL until a whole ClientHello record
     * waits in the kernel (a silent peer costs this struct only). */
    lsec__tls *tls;
    int rcvlowat; /* tls server, before tls: SO_RCVLOWAT as set, 0 default */
    uint8_t hdr[LSEC__TLS_RECORD_HDR]; /* tls server, before tls */
    size_t hdr_len;
    size_t got; /* handshake bytes received */
    uint8_t out[LSEC__HS_MSG_MAX];
    size_t out_len, out_off;
    uint8_t early[LSEC__HS_MSG_MAX]; /* bytes behind the handshake */
    size_t early_len;
    /* A server's failure, for the listener's log: why, and how loud. */
    const char *why;
    int why_level;
} lsec__conn;

/* What a connection authenticates with: the ticket (secret and id), the
 * two auth keys derived from it once (NULL: derived at start) and the TLS
 * context of its role. */
typedef struct lsec__conn_keys {
    const lsec__ticket *ticket;
    const uint8_t *k_client, *k_server;
    lsec__tls_ctx *tls_ctx;
} lsec__conn_keys;

/*
 * Start the handshake on c->fd (set by the caller, connected and
 * non-blocking): every other member is set here.  A client's first message
 * (the ClientHello, or the TLS state that writes it) is made now.  0 or
 * the code (the caller still owns and closes c->fd then).
 */
int lsec__conn_start(lsec__conn *c, int role, int mode, const lsec__addr *local,
                     const lsec__addr *remote, int64_t uid, int64_t deadline,
                     const lsec__conn_keys *k);
/*
 * Advance as far as possible without waiting.  LSEC__DONE: authenticated
 * (lsec__conn_channel makes the channel); LSEC__WANT_READ/WANT_WRITE: wait
 * for c->events; or a negative code.  A client's failure has a detail; a
 * server's is LSEC_ECLOSED with c->why and c->why_level for the log (the
 * peer is told nothing).
 */
int lsec__conn_step(lsec__conn *c, const lsec__conn_keys *k);
/* Has the peer sent its whole first message (an auth ClientHello, or a TLS
 * ClientHello record)?  Such a client is most likely a good one. */
bool lsec__conn_sent_hello(const lsec__conn *c);
/* The authenticated connection as a channel; c is left empty (fd -1),
 * also on failure. */
int lsec__conn_channel(lsec__conn *c, const lsec_opts *o, lsec_channel **out);
/* Close, free the TLS state, wipe.  Leaves fd -1. */
void lsec__conn_free(lsec__conn *c);

#endif /* LOOPSEC_CONN_H */
