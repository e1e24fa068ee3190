/*
 * loopsec through its public API only (include/loopsec.h), in auth and tls
 * mode.  Options are the defaults (peer policy same-user, so the peer
 * lookup is part of every connect) except for the listen backlog, which
 * is raised to the anchors' 1024 for the concurrent-clients test.
 *
 * Blocking calls pass timeout -1, as the anchors block without a timeout;
 * the benchmark's own alarm bounds every process.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "loopsec.h"

struct bsrv {
    lsec_listener *l;
};

/* The channel itself is the connection: no wrapper, no extra memory. */
#define CH(c) ((lsec_channel *)(void *)(c))
#define CONN(ch) ((bconn *)(void *)(ch))

static int lfail(const char *what, int rc)
{
    return b_fail("loopsec %s: %s (%s)", what, lsec_errname(rc),
                  lsec_last_detail());
}

static void log_stderr(void *arg, int level, const char *msg)
{
    (void)arg;
    fprintf(stderr, "loopsec[%d] %d: %s\n", (int)getpid(), level, msg);
}

static void opts_for(lsec_opts *o, int mode)
{
    /* LOOPSEC_BENCH_LOG=1: the library's log lines on stderr (debugging). */
    static bool logging;
    if (!logging && getenv("LOOPSEC_BENCH_LOG") != NULL) {
        lsec_set_log(log_stderr, NULL, LSEC_LOG_DEBUG);
        logging = true;
    }
    lsec_opts_init(o);
    o->mode = mode;
    o->backlog = 1024;
}

static int srv_open(int mode, bsrv **out, char *info, size_t infolen)
{
    lsec_opts o;
    bsrv *s = calloc(1, sizeof(*s));
    int rc;

    if (s == NULL)
        return b_fail("out of memory");
    opts_for(&o, mode);
    rc = lsec_listen("127.0.0.1:0", &o, &s->l);
    if (rc != 0) {
        free(s);
        return lfail("listen", rc);
    }
    rc = lsec_listener_ticket(s->l, info, infolen);
    if (rc != 0) {
        lsec_listener_close(s->l);
        free(s);
        return lfail("ticket", rc);
    }
    *out = s;
    return B_OK;
}

static int auth_srv_open(bsrv **out, char *info, size_t infolen)
{
    return srv_open(LSEC_MODE_AUTH, out, info, infolen);
}

static int tls_srv_open(bsrv **out, char *info, size_t infolen)
{
    return srv_open(LSEC_MODE_TLS, out, info, infolen);
}

static int lsec_srv_accept(bsrv *s, int timeout_ms, bconn **out)
{
    lsec_channel *ch;
    int rc = lsec_accept(s->l, timeout_ms, &ch);
    if (rc != 0)
        return lfail("accept", rc);
    *out = CONN(ch);
    return B_OK;
}

static void lsec_srv_close(bsrv *s)
{
    if (s == NULL)
        return;
    lsec_listener_close(s->l);
    free(s);
}

static int do_connect(int mode, const char *info, bconn **out)
{
    lsec_opts o;
    lsec_channel *ch;
    int rc;

    opts_for(&o, mode);
    rc = lsec_connect(info, &o, 10000, &ch);
    if (rc != 0)
        return lfail("connect", rc);
    *out = CONN(ch);
    return B_OK;
}

static int auth_connect(const char *info, bconn **out)
{
    return do_connect(LSEC_MODE_AUTH, info, out);
}

static int tls_connect(const char *info, bconn **out)
{
    return do_connect(LSEC_MODE_TLS, info, out);
}

static int lsec_send_msg(bconn *c, const void *buf, size_t len)
{
    int rc = lsec_send(CH(c), buf, len, -1);
    return rc == 0 ? B_OK : lfail("send", rc);
}

static int lsec_sendv_msgs(bconn *c, const void *buf, size_t len, unsigned n)
{
    lsec_iov m[B_BATCH_MAX];
    for (unsigned i = 0; i < n; i++) {
        m[i].base = buf;
        m[i].len = len;
    }
    int rc = lsec_sendv(CH(c), m, n, -1);
    return rc == 0 ? B_OK : lfail("sendv", rc);
}

static int lsec_recv_msg(bconn *c, void *buf, size_t cap, size_t *len)
{
    int rc = lsec_recv(CH(c), buf, cap, len, -1);
    if (rc == 0)
        return B_OK;
    if (rc == LSEC_ECLOSED)
        return B_EOF;
    return lfail("recv", rc);
}

static int lsec_try_recv(bconn *c, void *buf, size_t cap, size_t *len)
{
    int rc = lsec_recv(CH(c), buf, cap, len, 0);
    if (rc == 0)
        return B_OK;
    if (rc == LSEC_EAGAIN)
        return B_AGAIN;
    if (rc == LSEC_ECLOSED)
        return B_EOF;
    return lfail("recv", rc);
}

static int lsec_set_nonblock(bconn *c)
{
    (void)c; /* loopsec sockets are always non-blocking inside */
    return B_OK;
}

static int lsec_fd(const bconn *c)
{
    return lsec_channel_fd((const lsec_channel *)(const void *)c);
}

static void lsec_close(bconn *c)
{
    lsec_channel_close(CH(c));
}

#define LOOPSEC_TRANSPORT(var, nm, anc, open, conn)                            \
    const transport var = {                                                    \
        .name = nm,                                                            \
        .anchor = anc,                                                         \
        .srv_open = open,                                                      \
        .srv_accept = lsec_srv_accept,                                         \
        .srv_close = lsec_srv_close,                                           \
        .connect = conn,                                                       \
        .send = lsec_send_msg,                                                 \
        .sendv = lsec_sendv_msgs,                                              \
        .recv = lsec_recv_msg,                                                 \
        .try_recv = lsec_try_recv,                                             \
        .set_nonblock = lsec_set_nonblock,                                     \
        .fd = lsec_fd,                                                         \
        .close = lsec_close,                                                   \
    }

LOOPSEC_TRANSPORT(tr_auth, "auth", "raw", auth_srv_open, auth_connect);
LOOPSEC_TRANSPORT(tr_tls, "tls", "openssl", tls_srv_open, tls_connect);
