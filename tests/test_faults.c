/*
 * Fault injection through the I/O seam (lib/io.c): every socket call the
 * library makes (recv, send, sendmsg, recvmsg, accept4, connect, poll,
 * socket) can be made to fail at its Nth call with EINTR, EAGAIN,
 * ECONNRESET, EPIPE or EMFILE, or to move one byte at a time; in auth and
 * tls mode, on the connecting and on the listening side, with blocking
 * (-1) and non-blocking (0 plus poll) calls.
 *
 * Each case is a real exchange over loopback: connect, three messages
 * (16 bytes, 64 KiB, empty) each echoed back, close.  Every injected fault
 * must end in a retried success or a defined error code -- never a hang
 * (each side runs in a thread joined against a deadline), a busy loop (the
 * number of seam calls is bounded against a fault-free baseline), a lost,
 * altered or duplicated message (both sides check every message they get),
 * or a crash.  Faults are injected only into the calls of one thread (the
 * victim side); the other side runs clean.
 */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include "harden_util.h"
#include "testing.h"

#include <errno.h>
#include <signal.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* The injector                                                              */

enum op {
    OP_RECV,
    OP_SEND,
    OP_SENDMSG,
    OP_RECVMSG,
    OP_ACCEPT4,
    OP_CONNECT,
    OP_POLL,
    OP_SOCKET,
    NOPS
};
static const char *const op_name[NOPS] = {"recv",    "send",    "sendmsg",
                                          "recvmsg", "accept4", "connect",
                                          "poll",    "socket"};

enum fault {
    F_NONE,
    F_EINTR,
    F_EAGAIN,
    F_SHORT,
    F_ECONNRESET,
    F_EPIPE,
    F_EMFILE
};
static const char *const fault_name[] = {
    "none", "EINTR", "EAGAIN", "short", "ECONNRESET", "EPIPE", "EMFILE"};

/* What each call can realistically fail with. */
static const enum fault op_faults[NOPS][5] = {
    [OP_RECV] = {F_EINTR, F_EAGAIN, F_SHORT, F_ECONNRESET},
    [OP_SEND] = {F_EINTR, F_EAGAIN, F_SHORT, F_EPIPE, F_ECONNRESET},
    [OP_SENDMSG] = {F_EINTR, F_EAGAIN, F_SHORT, F_EPIPE, F_ECONNRESET},
    [OP_RECVMSG] = {F_EINTR, F_EAGAIN, F_SHORT, F_ECONNRESET},
    [OP_ACCEPT4] = {F_EINTR, F_EAGAIN, F_EMFILE},
    [OP_CONNECT] = {F_EINTR},
    [OP_POLL] = {F_EINTR},
    [OP_SOCKET] = {F_EMFILE},
};

static struct lsec__io_ops real;

static struct {
    pthread_t victim;
    int armed;
    enum op op;
    int nth; /* 1-based; 0 with F_SHORT: every call */
    enum fault fault;
    int count[NOPS]; /* the victim's calls, per op */
    int calls;       /* the victim's calls, all ops */
    int other;       /* the other side's calls */
    int other_count[NOPS];
    int injected;
} fi;

static enum fault hit(enum op op)
{
    if (!__atomic_load_n(&fi.armed, __ATOMIC_ACQUIRE) ||
        !pthread_equal(pthread_self(), fi.victim)) {
        __atomic_add_fetch(&fi.other, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&fi.other_count[op], 1, __ATOMIC_RELAXED);
        return F_NONE;
    }
    fi.calls++;
    int n = ++fi.count[op];
    if (op != fi.op || fi.fault == F_NONE)
        return F_NONE;
    if (fi.fault == F_SHORT && (fi.nth == 0 || n == fi.nth))
        return F_SHORT;
    if (n != fi.nth)
        return F_NONE;
    fi.injected++;
    return fi.fault;
}

static int fault_errno(enum fault f)
{
    switch (f) {
    case F_EINTR:
        return EINTR;
    case F_EAGAIN:
        return EAGAIN;
    case F_ECONNRESET:
        return ECONNRESET;
    case F_EPIPE:
        return EPIPE;
    default:
        return EMFILE;
    }
}

/* One byte at most, in the first non-empty iovec. */
static void shorten(const struct msghdr *in, struct msghdr *out,
                    struct iovec *one)
{
    *out = *in;
    for (size_t i = 0; i < in->msg_iovlen; i++) {
        if (in->msg_iov[i].iov_len > 0) {
            one->iov_base = in->msg_iov[i].iov_base;
            one->iov_len = 1;
            out->msg_iov = one;
            out->msg_iovlen = 1;
            return;
        }
    }
}

static ssize_t w_recv(int fd, void *buf, size_t len, int flags)
{
    enum fault f = hit(OP_RECV);
    if (f == F_SHORT)
        len = len > 0 ? 1 : 0;
    else if (f != F_NONE)
        return errno = fault_errno(f), -1;
    return real.recv(fd, buf, len, flags);
}

static ssize_t w_send(int fd, const void *buf, size_t len, int flags)
{
    enum fault f = hit(OP_SEND);
    if (f == F_SHORT)
        len = len > 0 ? 1 : 0;
    else if (f != F_NONE)
        return errno = fault_errno(f), -1;
    return real.send(fd, buf, len, flags);
}

static ssize_t w_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    enum fault f = hit(OP_SENDMSG);
    struct msghdr m;
    struct iovec one;
    if (f == F_SHORT) {
        shorten(msg, &m, &one);
        return real.sendmsg(fd, &m, flags);
    }
    if (f != F_NONE)
        return errno = fault_errno(f), -1;
    return real.sendmsg(fd, msg, flags);
}

static ssize_t w_recvmsg(int fd, struct msghdr *msg, int flags)
{
    enum fault f = hit(OP_RECVMSG);
    struct msghdr m;
    struct iovec one;
    if (f == F_SHORT) {
        ssize_t n;
        shorten(msg, &m, &one);
        n = real.recvmsg(fd, &m, flags);
        msg->msg_flags = m.msg_flags;
        return n;
    }
    if (f != F_NONE)
        return errno = fault_errno(f), -1;
    return real.recvmsg(fd, msg, flags);
}

static int w_accept4(int fd, struct sockaddr *sa, unsigned *salen, int flags)
{
    enum fault f = hit(OP_ACCEPT4);
    if (f != F_NONE && f != F_SHORT)
        return errno = fault_errno(f), -1;
    return real.accept4(fd, sa, salen, flags);
}

static int w_connect(int fd, const struct sockaddr *sa, unsigned salen)
{
    enum fault f = hit(OP_CONNECT);
    if (f != F_NONE && f != F_SHORT)
        return errno = fault_errno(f), -1;
    return real.connect(fd, sa, salen);
}

static int w_poll(struct pollfd *fds, unsigned long nfds, int timeout)
{
    enum fault f = hit(OP_POLL);
    if (f != F_NONE && f != F_SHORT)
        return errno = fault_errno(f), -1;
    return real.poll(fds, nfds, timeout);
}

static int w_socket(int domain, int type, int protocol)
{
    enum fault f = hit(OP_SOCKET);
    if (f != F_NONE && f != F_SHORT)
        return errno = fault_errno(f), -1;
    return real.socket(domain, type, protocol);
}

static void injector_install(void)
{
    lsec__io_reset();
    real = lsec__io;
    lsec__io.recv = w_recv;
    lsec__io.send = w_send;
    lsec__io.sendmsg = w_sendmsg;
    lsec__io.recvmsg = w_recvmsg;
    lsec__io.accept4 = w_accept4;
    lsec__io.connect = w_connect;
    lsec__io.poll = w_poll;
    lsec__io.socket = w_socket;
}

/* ------------------------------------------------------------------------ */
/* One exchange                                                              */

#define NMSG 3
static const size_t msg_len[NMSG] = {16, 64 * 1024, 0};

/* Message i: its index, then bytes 'a' + i. */
static void make_msg(int i, uint8_t *buf)
{
    memset(buf, 'a' + i, msg_len[i]);
    if (msg_len[i] >= 4)
        memcpy(buf, &i, sizeof(i));
}

static int is_msg(int i, const uint8_t *buf, size_t len)
{
    static _Thread_local uint8_t want[64 * 1024];
    if (i >= NMSG || len != msg_len[i])
        return 0;
    make_msg(i, want);
    return memcmp(buf, want, len) == 0;
}

struct side {
    /* set up */
    int blocking;
    lsec_listener *l;
    const char *ticket;
    lsec_opts o;
    /* results */
    int rc;      /* first failure, 0 if none */
    int ok;      /* messages received intact, in order */
    int bad;     /* messages received altered, out of order or twice */
    int phase;   /* server: 0 accepting, 1 serving, 2 done */
    int timeout; /* a non-blocking wait ran past the case deadline */
    pthread_t th;
    uint8_t buf[64 * 1024];
};

static int64_t case_deadline;
/* Both sides wait here until the victim is named. */
static pthread_barrier_t start;

/* Non-blocking wait on `fd` between calls that said LSEC_EAGAIN.  A
 * listener's pending handshakes have no descriptor of their own for the
 * caller, so lsec_accept(0) is called again at least every `ms`. */
static int nb_wait(int fd, short ev, struct side *s, int ms)
{
    struct pollfd p = {fd, ev, 0};
    if (lsec__now_ms() > case_deadline) {
        s->timeout = 1;
        return -1;
    }
    poll(&p, 1, ms);
    return 0;
}

static int do_send(struct side *s, lsec_channel *c, const uint8_t *m,
                   size_t len)
{
    int rc;
    if (s->blocking) {
        rc = lsec_send(c, m, len, -1);
        return rc;
    }
    while ((rc = lsec_send(c, m, len, 0)) == LSEC_EAGAIN)
        if (nb_wait(lsec_channel_fd(c), POLLOUT, s, 100) != 0)
            return LSEC_ETIMEDOUT;
    if (rc != 0)
        return rc;
    while ((rc = lsec_flush(c, 0)) == LSEC_EAGAIN)
        if (nb_wait(lsec_channel_fd(c), POLLOUT, s, 100) != 0)
            return LSEC_ETIMEDOUT;
    return rc;
}

static int do_recv(struct side *s, lsec_channel *c, size_t *len)
{
    int rc;
    if (s->blocking)
        return lsec_recv(c, s->buf, sizeof(s->buf), len, -1);
    while ((rc = lsec_recv(c, s->buf, sizeof(s->buf), len, 0)) == LSEC_EAGAIN) {
        if (lsec_channel_pending(c) > 0)
            continue;
        if (nb_wait(lsec_channel_fd(c), POLLIN, s, 100) != 0)
            return LSEC_ETIMEDOUT;
    }
    return rc;
}

static void *echo_client_main(void *arg)
{
    struct side *s = arg;
    static _Thread_local uint8_t m[64 * 1024];
    lsec_channel *c = NULL;
    size_t len;
    int rc;

    pthread_barrier_wait(&start);
    rc = lsec_connect(s->ticket, &s->o, s->blocking ? -1 : 5000, &c);
    if (rc != 0) {
        s->rc = rc;
        assert_null(c);
        return NULL;
    }
    for (int i = 0; i < NMSG; i++) {
        make_msg(i, m);
        if ((rc = do_send(s, c, m, msg_len[i])) != 0)
            break;
        if ((rc = do_recv(s, c, &len)) != 0)
            break;
        if (is_msg(i, s->buf, len))
            s->ok++;
        else
            s->bad++;
    }
    s->rc = rc;
    lsec_channel_close(c);
    return NULL;
}

static void *echo_server_main(void *arg)
{
    struct side *s = arg;
    lsec_channel *c = NULL;
    size_t len;
    int rc;

    pthread_barrier_wait(&start);
    for (;;) {
        if (s->blocking) {
            rc = lsec_accept(s->l, -1, &c);
        } else {
            rc = lsec_accept(s->l, 0, &c);
            if (rc == LSEC_EAGAIN) {
                if (nb_wait(lsec_listener_fd(s->l), POLLIN, s, 5) != 0)
                    break;
                continue;
            }
        }
        if (rc != 0) {
            s->rc = rc;
            break;
        }
        __atomic_store_n(&s->phase, 1, __ATOMIC_RELEASE);
        /* Echo until the client closes: messages in order, once each (a
         * kicker's "kick" ends the case). */
        for (int i = 0;; i++) {
            rc = do_recv(s, c, &len);
            if (rc != 0)
                break;
            if (len == 4 && memcmp(s->buf, "kick", 4) == 0) {
                rc = do_send(s, c, s->buf, len);
                i = -1;
                continue;
            }
            if (is_msg(i, s->buf, len))
                s->ok++;
            else
                s->bad++;
            if ((rc = do_send(s, c, s->buf, len)) != 0)
                break;
        }
        /* The expected end is the client's clean close. */
        if (rc != LSEC_ECLOSED)
            s->rc = rc;
        lsec_channel_close(c);
        break;
    }
    __atomic_store_n(&s->phase, 2, __ATOMIC_RELEASE);
    return NULL;
}

static void join_or_fail(pthread_t th, int64_t until, const char *what)
{
    struct timespec ts;
    int64_t left = until - lsec__now_ms();

    if (left < 0)
        left = 0;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += left / 1000;
    ts.tv_nsec += (left % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    if (pthread_timedjoin_np(th, NULL, &ts) != 0)
        fail_msg("%s hangs (fault %s at %s #%d)", what, fault_name[fi.fault],
                 op_name[fi.op], fi.nth);
}

struct config {
    int mode;
    int victim_server;
    int blocking;
};

struct outcome {
    struct side cl, sv;
    int calls, other;
    int64_t ms;
};

/* A clean client that makes a server stuck in accept return. */
static void kick(const char *ticket, const lsec_opts *o, const int *phase)
{
    for (int tries = 0; tries < 5; tries++) {
        if (__atomic_load_n(phase, __ATOMIC_ACQUIRE) != 0 ||
            echo_client(ticket, o, "kick", 4, 1000) == 0)
            return;
    }
}

static void run_case(const struct config *cf, lsec_listener *l,
                     const char *ticket, enum op op, enum fault f, int nth,
                     struct outcome *out)
{
    int64_t t0 = lsec__now_ms();

    memset(out, 0, sizeof(*out));
    out->cl.blocking = out->sv.blocking = cf->blocking;
    out->cl.ticket = ticket;
    lsec_opts_init(&out->cl.o);
    out->cl.o.mode = cf->mode;
    out->sv.l = l;
    case_deadline = t0 + 8000;

    memset(&fi, 0, sizeof(fi));
    fi.op = op;
    fi.fault = f;
    fi.nth = nth;
    assert_int_equal(
        pthread_create(&out->sv.th, NULL, echo_server_main, &out->sv), 0);
    assert_int_equal(
        pthread_create(&out->cl.th, NULL, echo_client_main, &out->cl), 0);
    fi.victim = cf->victim_server ? out->sv.th : out->cl.th;
    __atomic_store_n(&fi.armed, 1, __ATOMIC_RELEASE);
    pthread_barrier_wait(&start);
    join_or_fail(out->cl.th, t0 + 10000, "the client");
    /* A server whose handshake failed is still accepting: once it has
     * had 50 ms to finish the client's handshake, kick it. */
    for (int i = 0;
         i < 200 && __atomic_load_n(&out->sv.phase, __ATOMIC_ACQUIRE) != 2;
         i++) {
        if (__atomic_load_n(&out->sv.phase, __ATOMIC_ACQUIRE) == 0 && i >= 10) {
            __atomic_store_n(&fi.armed, 0, __ATOMIC_RELEASE);
            kick(ticket, &out->cl.o, &out->sv.phase);
        }
        usleep(5000);
    }
    join_or_fail(out->sv.th, t0 + 10000, "the server");
    __atomic_store_n(&fi.armed, 0, __ATOMIC_RELEASE);
    out->calls = fi.calls;
    out->other = fi.other;
    out->ms = lsec__now_ms() - t0;
}

/* ------------------------------------------------------------------------ */
/* The matrix                                                                */

static int benign(enum op op, enum fault f)
{
    /* EMFILE from accept4 makes the listener refuse the waiting
     * connection (so that nobody polls a readable socket in a loop): a
     * defined failure for that client. */
    (void)op;
    return f == F_EINTR || f == F_EAGAIN || f == F_SHORT;
}

static int defined_failure(int rc)
{
    return rc == LSEC_ECLOSED || rc == LSEC_ERESET || rc == LSEC_EIO ||
           rc == LSEC_EMODE || rc == LSEC_ETLS || rc == LSEC_ELIMIT;
}

static void check_case(const struct config *cf, enum op op, enum fault f,
                       int nth, const struct outcome *o, int base_calls,
                       int base_other)
{
    char what[160];

    snprintf(what, sizeof(what), "%s %s %s: %s at %s call #%d",
             cf->mode == LSEC_MODE_TLS ? "tls" : "auth",
             cf->victim_server ? "server" : "client",
             cf->blocking ? "blocking" : "non-blocking", fault_name[f],
             op_name[op], nth);
    if (o->cl.bad != 0 || o->sv.bad != 0)
        fail_msg("%s: a message arrived altered, out of order or twice "
                 "(client %d, server %d)",
                 what, o->cl.bad, o->sv.bad);
    if (o->cl.timeout || o->sv.timeout)
        fail_msg("%s: a non-blocking wait never ended", what);
    /* The echo never gets ahead of what the server received. */
    if (o->cl.ok > o->sv.ok)
        fail_msg("%s: the client got %d echoes of %d messages", what, o->cl.ok,
                 o->sv.ok);
    /* The descriptor limit at the client's socket() (its first: the TCP
     * one; the second is the peer lookup's) is a resource code, LSEC_ELIMIT,
     * never LSEC_EIO (issue 13 item 16). */
    if (f == F_EMFILE && op == OP_SOCKET && nth == 1 && !cf->victim_server &&
        o->cl.rc != LSEC_ELIMIT)
        fail_msg("%s: the descriptor limit gave %s, not LSEC_ELIMIT", what,
                 lsec_errname(o->cl.rc));
    if (benign(op, f)) {
        if (o->cl.rc != 0 || o->sv.rc != 0 || o->cl.ok != NMSG ||
            o->sv.ok != NMSG)
            fail_msg("%s: not retried to success (client %s, %d echoes; "
                     "server %s, %d messages; detail \"%s\")",
                     what, lsec_errname(o->cl.rc), o->cl.ok,
                     lsec_errname(o->sv.rc), o->sv.ok, lsec_last_detail());
    } else {
        if ((o->cl.rc != 0 && !defined_failure(o->cl.rc)) ||
            (o->sv.rc != 0 && !defined_failure(o->sv.rc)))
            fail_msg("%s: undefined outcome (client %s, server %s)", what,
                     lsec_errname(o->cl.rc), lsec_errname(o->sv.rc));
    }
    /* No busy loop: one fault costs a bounded number of extra calls.  The
     * non-blocking loops call again at least every few milliseconds, so a
     * slow case (a loaded machine) may add a few calls per millisecond; a
     * spin adds hundreds. */
    if (f != F_SHORT && (o->calls > 4 * base_calls + 200 + 2 * o->ms ||
                         o->other > 4 * base_other + 400 + 2 * o->ms))
        fail_msg("%s: %d + %d seam calls against a baseline of %d + %d in "
                 "%lld ms (victim poll %d recv %d recvmsg %d; other poll %d "
                 "recv %d recvmsg %d send %d sendmsg %d)",
                 what, o->calls, o->other, base_calls, base_other,
                 (long long)o->ms, fi.count[OP_POLL], fi.count[OP_RECV],
                 fi.count[OP_RECVMSG], fi.other_count[OP_POLL],
                 fi.other_count[OP_RECV], fi.other_count[OP_RECVMSG],
                 fi.other_count[OP_SEND], fi.other_count[OP_SENDMSG]);
}

#define NTH_CAP 8

static void run_config(const struct config *cf)
{
    char ticket[LSEC_TICKET_MAX];
    int counts[NOPS], base_calls, base_other, cases = 0, failed = 0;
    int64_t t0 = lsec__now_ms();
    struct outcome *o = calloc(1, sizeof(*o));
    lsec_listener *l;

    assert_non_null(o);
    injector_install();
    l = harden_listen(cf->mode, NULL);
    assert_int_equal(lsec_listener_ticket(l, ticket, sizeof(ticket)), 0);
    assert_int_equal(pthread_barrier_init(&start, NULL, 3), 0);

    /* The fault-free baseline: how many calls of each kind a case makes. */
    run_case(cf, l, ticket, OP_RECV, F_NONE, 0, o);
    check_case(cf, OP_RECV, F_NONE, 0, o, o->calls, o->other);
    memcpy(counts, fi.count, sizeof(counts));
    base_calls = o->calls;
    base_other = o->other;

    for (int op = 0; op < NOPS; op++) {
        for (int k = 0; k < 5 && op_faults[op][k] != F_NONE; k++) {
            enum fault f = op_faults[op][k];
            int last = counts[op] < NTH_CAP ? counts[op] : NTH_CAP;
            if (counts[op] == 0)
                continue;
            if (f == F_SHORT)
                last = 1; /* nth 0: every call */
            for (int nth = 1; nth <= last + (last < counts[op]); nth++) {
                /* Beyond the cap, the victim's very last call. */
                int at = f == F_SHORT ? 0 : nth > last ? counts[op] : nth;
                run_case(cf, l, ticket, (enum op)op, f, at, o);
                check_case(cf, (enum op)op, f, at, o, base_calls, base_other);
                if (o->ms > 1000)
                    print_message("slow: %s at %s #%d: %lld ms (client %s, "
                                  "server %s)\n",
                                  fault_name[f], op_name[op], at,
                                  (long long)o->ms, lsec_errname(o->cl.rc),
                                  lsec_errname(o->sv.rc));
                cases++;
                failed += o->cl.rc != 0 || o->sv.rc != 0;
            }
        }
    }
    print_message("%s %s %s: %d cases (%d ended in a defined error) in %lld "
                  "ms; baseline %d calls on the victim side\n",
                  cf->mode == LSEC_MODE_TLS ? "tls" : "auth",
                  cf->victim_server ? "server" : "client",
                  cf->blocking ? "blocking" : "non-blocking", cases, failed,
                  (long long)(lsec__now_ms() - t0), base_calls);
    pthread_barrier_destroy(&start);
    lsec_listener_close(l);
    lsec__io_reset();
    free(o);
}

#define CONFIG_TEST(name, mode, server, blocking)                              \
    static void name(void **state)                                             \
    {                                                                          \
        static const struct config cf = {mode, server, blocking};              \
        (void)state;                                                           \
        run_config(&cf);                                                       \
    }

CONFIG_TEST(test_auth_client_blocking, LSEC_MODE_AUTH, 0, 1)
CONFIG_TEST(test_auth_client_nonblocking, LSEC_MODE_AUTH, 0, 0)
CONFIG_TEST(test_auth_server_blocking, LSEC_MODE_AUTH, 1, 1)
CONFIG_TEST(test_auth_server_nonblocking, LSEC_MODE_AUTH, 1, 0)
CONFIG_TEST(test_tls_client_blocking, LSEC_MODE_TLS, 0, 1)
CONFIG_TEST(test_tls_client_nonblocking, LSEC_MODE_TLS, 0, 0)
CONFIG_TEST(test_tls_server_blocking, LSEC_MODE_TLS, 1, 1)
CONFIG_TEST(test_tls_server_nonblocking, LSEC_MODE_TLS, 1, 0)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_client_blocking),
        cmocka_unit_test(test_auth_client_nonblocking),
        cmocka_unit_test(test_auth_server_blocking),
        cmocka_unit_test(test_auth_server_nonblocking),
        cmocka_unit_test(test_tls_client_blocking),
        cmocka_unit_test(test_tls_client_nonblocking),
        cmocka_unit_test(test_tls_server_blocking),
        cmocka_unit_test(test_tls_server_nonblocking),
    };
    /* The default SIGPIPE disposition: an injected EPIPE must never turn
     * into a real one. */
    signal(SIGPIPE, SIG_DFL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
