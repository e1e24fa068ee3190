/*
 * The connecting side: a non-blocking connector (lsec_connect_start ...
 * lsec_connector_step) that an event loop drives, and lsec_connect, a loop
 * over it.
 *
 * The connector is a state machine over a non-blocking socket: TCP connect,
 * then the peer lookup of the listener, then the auth handshake (hello out,
 * ServerHello in, proof out) or the TLS handshake.  Each step does what it can
 * without waiting and says which events it waits for; the deadline is absolute
 * (opts.handshake_timeout_ms, or lsec_connect's timeout if shorter).
 */
#include "conn.h"
#include "sys.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h> /* TCP_NODELAY (POSIX) */
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum state {
    ST_CONNECTING, /* TCP connect in progress */
    ST_HANDSHAKE,  /* the conn's handshake (conn.c) */
    ST_DONE,       /* the channel was handed out */
};

/* How many times a connector dials again after the listener hung up before
 * our first byte (hung_up). */
#define REDIALS 3

struct lsec_connector {
    lsec_opts ro;
    lsec__ticket t;
    enum state st;
    int err;        /* sticky: once failed, every step returns it */
    bool intr;      /* connect() was interrupted */
    int rounds;     /* connect() calls after an interruption */
    bool looked_up; /* the peer lookup of the listener passed */
    int redials;    /* fresh connections after a hang-up before our hello */
    int64_t deadline;
    lsec__addr local, remote; /* as looked up, before the handshake */
    int64_t uid;
    lsec__conn_keys keys;
    /* The connection: its fd from the socket call on, its events (POLLOUT
     * while the TCP connect is in progress), the handshake once started. */
    lsec__conn conn;
};

/* getsockname, re-checked as loopback in the kernel's view. */
static int socket_local(int fd, unsigned flags, lsec__addr *local)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return lsec__fail_errno(LSEC_EIO, errno, "getsockname");
    return lsec__addr_from_sockaddr((struct sockaddr *)&ss, sl, flags, local);
}

/* getsockname/getpeername, re-checked as loopback in the kernel's view. */
int lsec__socket_endpoints(int fd, unsigned flags, lsec__addr *local,
                           lsec__addr *remote)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int rc;

    if ((rc = socket_local(fd, flags, local)) != 0)
        return rc;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        return lsec__fail_errno(LSEC_ERESET, errno, "getpeername");
    return lsec__addr_from_sockaddr((struct sockaddr *)&ss, sl, flags, remote);
}

/* Record a sticky failure: every later step returns it. */
static int sticky(lsec_connector *c, int rc)
{
    c->err = rc;
    c->conn.events = 0;
    return rc;
}

static int connect_failed(lsec_connector *c, int err)
{
    char where[LSEC_ADDR_MAX];

    (void)lsec__addr_format(&c->t.addr, where, sizeof(where));
    if (err == ECONNREFUSED)
        return lsec__fail(LSEC_ECLOSED,
                          "connection refused: nothing listens on %s "
                          "(a stale ticket?)",
                          where);
    /* Reset while connecting: the listener took the connection off its
     * queue and dropped it, or stopped listening with it queued.  A
     * refusal, like a reset during the handshake. */
    if (err == ECONNRESET)
        return lsec__fail(LSEC_ECLOSED,
                          "the listener on %s reset the connection before "
                          "the handshake (refused, or it stopped listening)",
                          where);
    return lsec__fail_errno(LSEC_EIO, err, "connect to %s", where);
}

/* One connect() call.  0: connected or in progress (c->st tells), or the
 * error. */
static int tcp_start(lsec_connector *c)
{
    struct sockaddr_storage ss;
    unsigned sl = lsec__addr_to_sockaddr(&c->t.addr, &ss);

    if (lsec__io.connect(c->conn.fd, (struct sockaddr *)&ss, sl) == 0)
        return 0;
    /* EINTR: the connection attempt goes on in the kernel (POSIX), so it
     * is waited for like EINPROGRESS -- poll for writability, then
     * SO_ERROR -- not started again.  EALREADY likewise. */
    c->intr = errno == EINTR;
    if (errno != EINPROGRESS && errno != EALREADY && !c->intr)
        return connect_failed(c, errno);
    /* On loopback the kernel has usually finished the three-way handshake
     * by the time connect() says EINPROGRESS: one getsockopt tells, where
     * poll would arm a timer to learn the same. */
    if (!lsec__sys_tcp_established(c->conn.fd)) {
        c->st = ST_CONNECTING;
        c->conn.events = POLLOUT;
    }
    return 0;
}

/* The TCP connect in progress: LSEC_EAGAIN while it is, 0 when done. */
static int step_connecting(lsec_connector *c)
{
    int err = 0, rc;
    socklen_t el = sizeof(err);

    if (lsec__sys_tcp_established(c->conn.fd))
        return 0;
    rc = lsec__wait_fd(c->conn.fd, POLLOUT, c->deadline, true);
    if (rc != 0)
        return rc;
    if (getsockopt(c->conn.fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
        err = errno;
    if (err != 0)
        return connect_failed(c, err);
    /* Only a call interrupted before it started anything leaves the socket
     * unconnected (writable, no error): then, and only then, connect again
     * -- a bounded number of times. */
    if (c->intr && !lsec__sys_tcp_established(c->conn.fd) && c->rounds++ < 16) {
        c->st = ST_HANDSHAKE; /* anything but ST_CONNECTING */
        if ((rc = tcp_start(c)) != 0)
            return rc;
        return c->st == ST_CONNECTING ? LSEC_EAGAIN : 0;
    }
    return 0;
}

/*
 * The same-user policy on the connecting side, given what the peer lookup
 * found (`lookup_rc`, `uid`): 0 when the listener is ours, else why not.
 */
static int refuse_unless_ours(int fd, int lookup_rc, int64_t uid, unsigned port)
{
    int rc;

    if (lookup_rc == 0 && uid == (int64_t)geteuid())
        return 0;
    /* Nobody to ask: the listener dropped us before we could look (a
     * reset destroys its socket).  A refusal, not another user. */
    if (lookup_rc == LSEC_ENOTFOUND && !lsec__sys_tcp_established(fd))
        return lsec__fail(LSEC_ECLOSED, "the listener closed the connection "
                                        "before the handshake (refused?)");
    if (lookup_rc != 0)
        /* Fail closed: a listener we cannot identify is not "ours". */
        rc = lsec__fail(LSEC_EPEER,
                        "the owner of the listener on port %u cannot be "
                        "found (%s), so it is not known to be us (peer "
                        "policy same-user)",
                        port, lsec_errname(lookup_rc));
    else
        rc = lsec__fail(LSEC_EPEER,
                        "the listener on port %u belongs to uid %lld, not to "
                        "us (peer policy same-user)",
                        port, (long long)uid);
    lsec__log(LSEC_LOG_WARN, "%s", lsec_last_detail());
    return rc;
}

/* Who accepted us?  Under the same-user policy a listener of another user
 * (a squatter on a stale ticket's port) never gets a proof from us, nor
 * has any byte of its own read. */
static int look_up(lsec_connector *c)
{
    int32_t pid = -1;
    int rc = lsec__peer_lookup(&c->local, &c->remote, false, &c->uid, &pid);

    if (c->ro.peer_policy == LSEC_PEER_SAME_USER &&
        (rc = refuse_unless_ours(c->conn.fd, rc, c->uid, c->remote.port)) != 0)
        return rc;
    c->looked_up = true;
    return 0;
}

static int dial(lsec_connector *c);

/*
 * The listener hung up before a byte of ours reached it: it dropped the
 * connection unseen (a full pending set evicts the oldest connection that
 * has not sent its hello, and ours had not yet, while we looked the
 * listener up or made our first message).  Nothing of ours was received,
 * and no handshake can exist on its side without a byte from us (nor
 * without one from it, which we never got), so a fresh connection repeats
 * nothing: dial again, a bounded number of times and within the deadline;
 * then it is a refusal.
 */
static int hung_up(lsec_connector *c, int rc)
{
    if (c->redials >= REDIALS || lsec__remaining(c->deadline) == 0)
        return rc;
    c->redials++;
    c->looked_up = false;
    lsec__conn_free(&c->conn); /* the socket, and any handshake state */
    lsec__clear_detail();
    return dial(c);
}

/* After the TCP connect: our end, the lookup, and the first handshake
 * message. */
static int connected(lsec_connector *c)
{
    int rc;

    /* Our end as the kernel sees it; the other end is the ticket's literal
     * loopback address, which we just connected to. */
    c->remote = c->t.addr;
    if ((rc = socket_local(c->conn.fd, c->ro.flags, &c->local)) != 0)
        return rc;
    /* Looked up before our first byte: a listener that refuses us closes
     * with a FIN then, which leaves its socket to be found (with our hello
     * unread, its close would be a reset that destroys it). */
    rc = look_up(c);
    if (rc == LSEC_ECLOSED)
        return hung_up(c, rc);
    if (rc != 0)
        return rc;
    if (c->t.mode == LSEC_MODE_TLS &&
        (rc = lsec__tls_client_ctx(&c->keys.tls_ctx)) != 0)
        return rc;
    c->st = ST_HANDSHAKE;
    return lsec__conn_start(&c->conn, LSEC__ROLE_CLIENT, c->t.mode, &c->local,
                            &c->remote, c->uid, c->deadline, &c->keys);
}

/* The TCP connect in progress and what follows it (redials included): 0
 * once the handshake has started, LSEC_EAGAIN to wait, or the error. */
static int advance_connect(lsec_connector *c)
{
    while (c->st == ST_CONNECTING) {
        int rc = step_connecting(c);
        if (rc == LSEC_EAGAIN)
            c->conn.events = POLLOUT;
        if (rc != 0 || (rc = connected(c)) != 0)
            return rc;
    }
    return 0;
}

/* A refusal without an answer whose bytes the listener's kernel never
 * acknowledged: the listener was gone before our first message arrived
 * (hung_up). */
static bool dropped_unseen(const lsec_connector *c, int rc)
{
    return rc == LSEC_ECLOSED && c->conn.got == 0 &&
           lsec__sys_tcp_none_acked(c->conn.fd);
}

/* Advance as far as possible without waiting. */
static int advance(lsec_connector *c)
{
    for (;;) {
        int rc = advance_connect(c);
        if (rc != 0)
            return rc;
        rc = lsec__conn_step(&c->conn, &c->keys);
        if (rc == LSEC__WANT_READ || rc == LSEC__WANT_WRITE)
            return LSEC_EAGAIN;
        if (!dropped_unseen(c, rc))
            return rc == LSEC__DONE ? 0 : rc;
        if ((rc = hung_up(c, rc)) != 0)
            return rc;
    }
}

static int dial(lsec_connector *c)
{
    int rc, one = 1;

    c->conn.fd = lsec__io.socket(c->t.addr.family,
                                 SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c->conn.fd < 0) {
        int e = errno;
        return lsec__fail_errno(lsec__sys_code(e, LSEC_EIO), e,
                                e == EMFILE || e == ENFILE
                                    ? "socket (out of descriptors)"
                                    : "socket");
    }
    (void)setsockopt(c->conn.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->st = ST_HANDSHAKE; /* tcp_start sets ST_CONNECTING if it waits */
    c->intr = false;
    c->rounds = 0;
    if ((rc = tcp_start(c)) != 0)
        return rc;
    if (c->st != ST_CONNECTING)
        return connected(c);
    return 0;
}

static int connector_start(const lsec__ticket *t, const lsec_opts *o,
                           int timeout_ms, lsec_connector **out)
{
    lsec_connector *c;
    int rc;

    *out = NULL;
    if ((rc = lsec__init()) != 0)
        return rc;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return lsec__fail(LSEC_ENOMEM, "out of memory");
    c->conn.fd = -1;
    c->uid = -1;
    c->t = *t;
    c->keys.ticket = &c->t;
    if ((rc = lsec__opts_resolve(o, &c->ro)) != 0)
        goto fail;
    /* The mode is local policy: a tls-only client never accepts an auth
     * ticket, whatever the ticket says. */
    if (c->ro.mode == LSEC_MODE_TLS && t->mode != LSEC_MODE_TLS) {
        rc = lsec__fail(LSEC_EMODE, "the ticket is for auth mode but local "
                                    "policy requires tls");
        goto fail;
    }
    if (!lsec__addr_is_loopback(&t->addr, c->ro.flags)) {
        rc = lsec__fail(LSEC_ENOTLOOPBACK, "ticket address is not loopback");
        goto fail;
    }
    c->deadline = lsec__deadline(c->ro.handshake_timeout_ms);
    if (timeout_ms >= 0 && lsec__deadline(timeout_ms) < c->deadline)
        c->deadline = lsec__deadline(timeout_ms);
    if ((rc = dial(c)) != 0)
        goto fail;
    *out = c;
    return 0;
fail:
    lsec_connector_close(c);
    return rc;
}

int lsec_connector_step(lsec_connector *c, lsec_channel **out)
{
    int rc;

    lsec__clear_detail();
    if (out != NULL)
        *out = NULL;
    if (c == NULL || out == NULL)
        return lsec__fail(LSEC_EINVAL, "NULL connector or output");
    if (c->err != 0)
        return lsec__fail(c->err, "the connect failed before");
    if (c->st == ST_DONE)
        return lsec__fail(LSEC_EINVAL, "the connector is done");
    rc = advance(c);
    if (rc == LSEC_EAGAIN) {
        if (lsec__remaining(c->deadline) != 0)
            return LSEC_EAGAIN;
        char where[LSEC_ADDR_MAX];
        (void)lsec__addr_format(&c->t.addr, where, sizeof(where));
        if (c->st == ST_CONNECTING)
            rc =
                lsec__fail(LSEC_ETIMEDOUT, "timed out connecting to %s", where);
        else
            rc = lsec__fail(LSEC_ETIMEDOUT, "timed out waiting for the peer");
    }
    if (rc != 0) {
        if (c->looked_up)
            lsec__log(LSEC_LOG_WARN, "connect to port %u failed: %s (%s)",
                      c->t.addr.port, lsec_strerror(rc), lsec_last_detail());
        return sticky(c, rc);
    }
    c->st = ST_DONE;
    return lsec__conn_channel(&c->conn, &c->ro, out);
}

/* What lsec_connect and lsec_connect_start check first, then the parse. */
static int ticket_arg(const char *ticket, const lsec_opts *o, bool have_out,
                      lsec__ticket *t)
{
    lsec_opts ro;
    int rc;

    memset(t, 0, sizeof(*t));
    if (ticket == NULL || !have_out)
        return lsec__fail(LSEC_EINVAL, "NULL ticket or output");
    if ((rc = lsec__init()) != 0 || (rc = lsec__opts_resolve(o, &ro)) != 0)
        return rc;
    return lsec__ticket_parse(ticket, strlen(ticket), ro.flags, t);
}

int lsec_connect_start(const char *ticket, const lsec_opts *o,
                       lsec_connector **out)
{
    lsec__ticket t;
    int rc;

    lsec__clear_detail();
    if (out != NULL)
        *out = NULL;
    rc = ticket_arg(ticket, o, out != NULL, &t);
    if (rc == 0)
        rc = connector_start(&t, o, -1, out);
    lsec__ticket_wipe(&t);
    return rc;
}

int lsec_connector_fd(const lsec_connector *c)
{
    if (c == NULL)
        return lsec__fail(LSEC_EINVAL, "NULL connector");
    return c->conn.fd >= 0 ? c->conn.fd
                           : lsec__fail(LSEC_EINVAL, "the connector is "
                                                     "done");
}

int lsec_connector_events(const lsec_connector *c)
{
    return c != NULL ? c->conn.events : 0;
}

int lsec_connector_timeout_ms(const lsec_connector *c)
{
    if (c == NULL || c->err != 0 || c->st == ST_DONE)
        return -1;
    return lsec__remaining(c->deadline);
}

void lsec_connector_close(lsec_connector *c)
{
    if (c == NULL)
        return;
    lsec__conn_free(&c->conn);
    lsec__ticket_wipe(&c->t);
    lsec__wipe(c, sizeof(*c));
    free(c);
}

/* Connect with a parsed ticket: a loop over the connector. */
int lsec__connect_ticket(const lsec__ticket *t, const lsec_opts *o,
                         int timeout_ms, lsec_channel **out)
{
    lsec_connector *c;
    int rc;

    *out = NULL;
    if ((rc = lsec__timeout_check(timeout_ms)) != 0)
        return rc;
    if ((rc = connector_start(t, o, timeout_ms, &c)) != 0)
        return rc;
    while ((rc = lsec_connector_step(c, out)) == LSEC_EAGAIN) {
        rc = lsec__wait_fd(c->conn.fd, c->conn.events, c->deadline, false);
        if (rc == LSEC_ETIMEDOUT)
            continue; /* the step names what timed out */
        if (rc != 0)
            break;
    }
    lsec_connector_close(c);
    return rc;
}

int lsec_connect(const char *ticket, const lsec_opts *o, int timeout_ms,
                 lsec_channel **out)
{
    lsec__ticket t;
    int rc;

    lsec__clear_detail();
    if (out != NULL)
        *out = NULL;
    if ((rc = lsec__timeout_check(timeout_ms)) != 0)
        return rc;
    rc = ticket_arg(ticket, o, out != NULL, &t);
    if (rc == 0)
        rc = lsec__connect_ticket(&t, o, timeout_ms, out);
    lsec__ticket_wipe(&t);
    return rc;
}
