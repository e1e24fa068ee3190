/*
 * lib/port.c: binding with a port policy, and who holds a port.  Every port
 * comes from the kernel (port 0) or from a held socket; the holder tests
 * fork a real process that listens.
 */
/* cmocka.h needs these first. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include "internal.h"
#include "testing.h"

#include "harden_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static lsec__addr parse(const char *text)
{
    lsec__addr a;
    assert_int_equal(lsec__addr_parse(text, 0, &a), 0);
    return a;
}

static lsec_opts defaults(void)
{
    lsec_opts o;
    assert_int_equal(lsec__opts_resolve(NULL, &o), 0);
    return o;
}

/* Listen on `text` with `o`; assert success and return the fd. */
static int must_listen(const char *text, const lsec_opts *o, lsec__addr *b)
{
    lsec__addr a = parse(text);
    int fd = -1;
    int rc = lsec__port_listen(&a, o, &fd, b);
    if (rc != 0)
        print_error("listen %s: %s (%s)\n", text, lsec_errname(rc),
                    lsec_last_detail());
    assert_int_equal(rc, 0);
    assert_true(fd >= 0);
    return fd;
}

static int sockopt(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);
    assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

static void test_kernel_policy(void **state)
{
    (void)state;
    lsec_opts o = defaults();
    lsec__addr b;
    int fd = must_listen("127.0.0.1:0", &o, &b);

    assert_int_equal(b.family, AF_INET);
    assert_int_not_equal(b.port, 0);
    assert_true(lsec__addr_is_loopback(&b, 0));
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(sockopt(fd, SOL_SOCKET, SO_ACCEPTCONN), 1);
    assert_int_equal(sockopt(fd, SOL_SOCKET, SO_REUSEPORT), 0);
    assert_int_equal(sockopt(fd, SOL_SOCKET, SO_REUSEADDR), 1);
    close(fd);

    fd = must_listen("[::1]:0", &o, &b);
    assert_int_equal(b.family, AF_INET6);
    assert_int_not_equal(b.port, 0);
    assert_int_equal(sockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY), 1);
    assert_int_equal(sockopt(fd, SOL_SOCKET, SO_REUSEPORT), 0);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    close(fd);

    /* localhost is 127.0.0.1. */
    fd = must_listen("localhost:0", &o, &b);
    assert_int_equal(b.family, AF_INET);
    assert_int_equal(b.ip[0], 127);
    assert_int_equal(b.ip[3], 1);
    close(fd);
}

static void test_range_policy(void **state)
{
    (void)state;
    lsec_opts o = defaults();
    lsec__addr b;
    int fd;

    assert_int_equal(lsec__init(), 0);
    /* The default range (49152..65535): random probes. */
    o.port_policy = LSEC_PORT_RANGE;
    fd = must_listen("127.0.0.1:0", &o, &b);
    assert_true(b.port >= 49152);
    close(fd);

    /* A small range, tried whole: a port from it. */
    for (int round = 0; round < 3; round++) {
        o.port_min = (uint16_t)(50000 + randombytes_uniform(10000));
        o.port_max = (uint16_t)(o.port_min + 31);
        fd = must_listen("[::1]:0", &o, &b);
        assert_true(b.port >= o.port_min && b.port <= o.port_max);
        close(fd);
    }
}

static void test_range_exhausted(void **state)
{
    (void)state;
    lsec_opts o = defaults();
    lsec__addr b, a = parse("127.0.0.1:0");
    int held[4], n = 0, fd = -1;
    uint16_t p;

    held[n++] = must_listen("127.0.0.1:0", &o, &b);
    p = b.port > 65532 ? (uint16_t)(b.port - 3) : b.port;
    /* Hold every port of [p, p+3] we can; the ones we cannot hold are
     * held by someone else: the range is occupied either way. */
    for (uint16_t q = p; q <= p + 3; q++) {
        if (q == b.port)
            continue;
        a.port = q;
        int rc = lsec__port_listen(&a, &o, &fd, &b);
        assert_true(rc == 0 || rc == LSEC_EADDRINUSE);
        if (rc == 0)
            held[n++] = fd;
    }
    o.port_policy = LSEC_PORT_RANGE;
    o.port_min = p;
    o.port_max = (uint16_t)(p + 3);
    a.port = 0;
    assert_int_equal(lsec__port_listen(&a, &o, &fd, &b), LSEC_EADDRINUSE);
    assert_int_equal(fd, -1);
    assert_non_null(strstr(lsec_last_detail(), "no free port"));
    /* A one-port range. */
    o.port_max = p;
    assert_int_equal(lsec__port_listen(&a, &o, &fd, &b), LSEC_EADDRINUSE);
    while (n > 0)
        close(held[--n]);
}

static void test_preferred_port(void **state)
{
    (void)state;
    lsec_opts o = defaults();
    lsec__addr b, b2, a = parse("127.0.0.1:0");
    int fd, fd2 = -1;
    char want[32];

    fd = must_listen("127.0.0.1:0", &o, &b);
    a.port = b.port;
    /* Taken, no fallback: EADDRINUSE naming us. */
    assert_int_equal(lsec__port_listen(&a, &o, &fd2, &b2), LSEC_EADDRINUSE);
    assert_int_equal(fd2, -1);
    snprintf(want, sizeof(want), "pid %d ", (int)getpid());
    assert_non_null(strstr(lsec_last_detail(), want));
    assert_non_null(strstr(lsec_last_detail(), "is in use by"));
    /* With the fallback: the kernel policy, then the range policy. */
    o.flags = LSEC_OPT_PORT_FALLBACK;
    assert_int_equal(lsec__port_listen(&a, &o, &fd2, &b2), 0);
    assert_int_not_equal(b2.port, b.port);
    assert_int_not_equal(b2.port, 0);
    close(fd2);
    o.port_policy = LSEC_PORT_RANGE;
    assert_int_equal(lsec__port_listen(&a, &o, &fd2, &b2), 0);
    assert_true(b2.port >= 49152);
    close(fd2);
    /* A range policy with an invalid range is refused even when only the
     * preferred port is needed. */
    o.port_min = 0;
    assert_int_equal(lsec__port_listen(&a, &o, &fd2, &b2), LSEC_EINVAL);
    close(fd);

    /* A free preferred port is used as given (test-only release and
     * re-bind of a port the kernel just picked). */
    o = defaults();
    fd = must_listen("[::1]:0", &o, &b);
    close(fd);
    a = parse("[::1]:0");
    a.port = b.port;
    assert_int_equal(lsec__port_listen(&a, &o, &fd2, &b2), 0);
    assert_int_equal(b2.port, b.port);
    close(fd2);
}

static void test_invalid(void **state)
{
    (void)state;
    lsec_opts o = defaults();
    lsec__addr b, a = parse("127.0.0.1:0");
    int fd = 7;

    assert_int_equal(lsec__port_listen(NULL, &o, &fd, &b), LSEC_EINVAL);
    assert_int_equal(fd, -1);
    assert_int_equal(lsec__port_listen(&a, NULL, &fd, &b), LSEC_EINVAL);
    assert_int_equal(lsec__port_listen(&a, &o, NULL, &b), LSEC_EINVAL);
    assert_int_equal(lsec__port_listen(&a, &o, &fd, NULL), LSEC_EINVAL);
    o.backlog = 0;
    assert_int_equal(lsec__port_listen(&a, &o, &fd, &b), LSEC_EINVAL);
    o = defaults();
    o.port_policy = 7;
    assert_int_equal(lsec__port_listen(&a, &o, &fd, &b), LSEC_EINVAL);
    o.port_policy = LSEC_PORT_RANGE;
    o.port_min = 0;
    o.port_max = 10;
    assert_int_equal(lsec__port_listen(&a, &o, &fd, &b), LSEC_EINVAL);
    o.port_min = 60001;
    o.port_max = 60000;
    assert_int_equal(lsec__port_listen(&a, &o, &fd, &b), LSEC_EINVAL);
    assert_non_null(strstr(lsec_last_detail(), "60001..60000"));

    /* Only loopback reaches bind, whatever the caller built by hand. */
    o = defaults();
    memset(&a, 0, sizeof(a));
    a.family = AF_INET;
    assert_int_equal(lsec__port_listen(&a, &o, &fd, &b), LSEC_ENOTLOOPBACK);
    a.ip[0] = 127;
    a.ip[3] = 2;
    assert_int_equal(lsec__port_listen(&a, &o, &fd, &b), LSEC_ENOTLOOPBACK);
    o.flags = LSEC_ADDR_ALLOW_127_8;
    assert_int_equal(lsec__port_listen(&a, &o, &fd, &b), 0);
    assert_int_equal(b.ip[3], 2);
    close(fd);
}

static int fail_socket(int domain, int type, int protocol)
{
    (void)domain;
    (void)type;
    (void)protocol;
    errno = EMFILE;
    return -1;
}

static void test_socket_failure(void **state)
{
    (void)state;
    lsec_opts o = defaults();
    lsec__addr b, a = parse("127.0.0.1:0");
    int fd;

    /* EMFILE is the descriptor limit: LSEC_ELIMIT, a resource code (issue
     * 13 item 16; it was LSEC_EIO). */
    lsec__io.socket = fail_socket;
    int rc = lsec__port_listen(&a, &o, &fd, &b);
    lsec__io_reset();
    assert_int_equal(rc, LSEC_ELIMIT);
    assert_int_equal(fd, -1);
    assert_non_null(strstr(lsec_last_detail(), "socket"));
}

/* A real process that listens on `text` (port 0) and reports its port on a
 * pipe, then waits to be killed. */
static pid_t spawn_holder(int family, uint16_t *port)
{
    int p[2];
    pid_t pid;

    assert_int_equal(pipe(p), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int one = 1, fd = socket(family, SOCK_STREAM, 0);
        uint16_t got = 0;
        memset(&ss, 0, sizeof(ss));
        if (family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            s6->sin6_family = AF_INET6;
            s6->sin6_addr = in6addr_loopback;
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
            len = sizeof(*s6);
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            s4->sin_family = AF_INET;
            s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            len = sizeof(*s4);
        }
        if (fd >= 0 && bind(fd, (struct sockaddr *)&ss, len) == 0 &&
            listen(fd, 1) == 0 &&
            getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
            got = ntohs(family == AF_INET6
                            ? ((struct sockaddr_in6 *)&ss)->sin6_port
                            : ((struct sockaddr_in *)&ss)->sin_port);
        if (write(p[1], &got, sizeof(got)) != sizeof(got))
            _exit(1);
        /* Bounded: never outlive the test by long. */
        sleep(30);
        _exit(0);
    }
    close(p[1]);
    assert_int_equal(read(p[0], port, sizeof(*port)), sizeof(*port));
    close(p[0]);
    assert_int_not_equal(*port, 0);
    return pid;
}

/* The kernel's view after bind must be exactly the address asked for: a
 * faked getsockname reporting another address (loopback or not) is
 * refused, and nothing is returned or left open. */
static uint32_t fake_v4; /* host order; 0: report the truth */
static int fake_getsockname(int fd, struct sockaddr *sa, unsigned *salen)
{
    int rc = getsockname(fd, sa, (socklen_t *)salen);
    if (rc == 0 && fake_v4 != 0 && sa->sa_family == AF_INET)
        ((struct sockaddr_in *)sa)->sin_addr.s_addr = htonl(fake_v4);
    return rc;
}

static void test_kernel_view_must_match(void **state)
{
    static const uint32_t fakes[] = {0x7f000002u, 0x7f010203u, 0x0a000001u};
    lsec_opts o = defaults();
    lsec__addr a = parse("127.0.0.1:0"), b;
    int fd, before = fd_count();

    (void)state;
    lsec__io.getsockname = fake_getsockname;
    for (int f = 0; f < 2; f++) {
        o.flags = f ? LSEC_ADDR_ALLOW_127_8 : 0;
        for (size_t i = 0; i < sizeof(fakes) / sizeof(fakes[0]); i++) {
            fake_v4 = fakes[i];
            fd = 7;
            assert_int_equal(lsec__port_listen(&a, &o, &fd, &b),
                             LSEC_ENOTLOOPBACK);
            assert_int_equal(fd, -1);
            assert_int_equal(b.family, 0);
        }
    }
    /* The same seam telling the truth: fine. */
    fake_v4 = 0;
    fd = must_listen("127.0.0.1:0", &o, &b);
    close(fd);
    lsec__io_reset();
    assert_int_equal(fd_count(), before);
}

static void reap(pid_t pid)
{
    int status;
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
}

static void check_holder(int family, const char *text)
{
    lsec_opts o = defaults();
    lsec__addr b, a = parse(text);
    lsec_port_owner ow;
    uint16_t port;
    char want[32];
    int fd;
    pid_t child = spawn_holder(family, &port);

    a.port = port;
    assert_int_equal(lsec__port_listen(&a, &o, &fd, &b), LSEC_EADDRINUSE);
    snprintf(want, sizeof(want), "pid %d ", (int)child);
    if (strstr(lsec_last_detail(), want) == NULL)
        print_error("detail: %s\n", lsec_last_detail());
    assert_non_null(strstr(lsec_last_detail(), want));

    assert_int_equal(lsec_port_owner_get(port, &ow), 0);
    assert_int_equal(ow.pid, child);
    assert_int_equal(ow.uid, (int64_t)geteuid());
    assert_true(strlen(ow.command) > 0);
    assert_string_equal(lsec_last_detail(), "");
    reap(child);
}

static void test_real_holder_v4(void **state)
{
    (void)state;
    check_holder(AF_INET, "127.0.0.1:0");
}

static void test_real_holder_v6(void **state)
{
    (void)state;
    check_holder(AF_INET6, "[::1]:0");
}

static void test_owner_of_self(void **state)
{
    (void)state;
    lsec_opts o = defaults();
    lsec__addr b;
    lsec_port_owner ow;
    int fd = must_listen("127.0.0.1:0", &o, &b);
    char comm[64] = "";
    FILE *f = fopen("/proc/self/comm", "r");

    assert_non_null(f);
    assert_non_null(fgets(comm, sizeof(comm), f));
    fclose(f);
    comm[strcspn(comm, "\n")] = '\0';
    assert_int_equal(lsec_port_owner_get(b.port, &ow), 0);
    assert_int_equal(ow.pid, getpid());
    assert_string_equal(ow.command, comm);
    close(fd);
}

static void test_owner_not_found(void **state)
{
    (void)state;
    lsec_port_owner ow;
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    /* A port bound but not listening: held by us, so nobody else listens
     * on it on 127.0.0.1, and it is not a listener itself. */
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    assert_int_equal(lsec_port_owner_get(ntohs(sin.sin_port), &ow),
                     LSEC_ENOTFOUND);
    assert_int_equal(ow.pid, -1);
    assert_int_equal(ow.uid, -1);
    assert_string_equal(ow.command, "");
    assert_non_null(strstr(lsec_last_detail(), "nobody listens"));
    close(fd);

    assert_int_equal(lsec_port_owner_get(0, &ow), LSEC_EINVAL);
    assert_int_equal(lsec_port_owner_get(65536, &ow), LSEC_EINVAL);
    assert_int_equal(lsec_port_owner_get(-1, &ow), LSEC_EINVAL);
    assert_int_equal(lsec_port_owner_get(80, NULL), LSEC_EINVAL);
}

/* A raw listening socket on `ip` (network order) port 0; its port. */
static int raw_listener(uint32_t ip, int *port)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = ip;
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

/* The entry for `port` in v[0..n): bound to `host`, held by this process. */
static void expect_listener(const lsec_port_listener *v, size_t n, int port,
                            const char *host, int wildcard)
{
    char want[64];

    snprintf(want, sizeof(want), "%s:%d", host, port);
    for (size_t i = 0; i < n; i++) {
        if (v[i].port != port)
            continue;
        assert_string_equal(v[i].addr, want);
        assert_int_equal(v[i].wildcard, wildcard);
        assert_int_equal(v[i].pid, getpid());
        assert_int_equal(v[i].uid, (int64_t)geteuid());
        assert_true(strlen(v[i].user) > 0);
        assert_true(strlen(v[i].command) > 0);
        return;
    }
    fail_msg("%s not listed", want);
}

/* Every listener, loopback and wildcard: a socket on 0.0.0.0 (only bound
 * and listening, never connected to) is listed and marked as reachable
 * from other hosts; one on 127.0.0.1 is listed with pid, user, command. */
static void test_listeners_all(void **state)
{
    (void)state;
    static lsec_port_listener v[512];
    size_t n = 0;
    int wport, lport;
    int wfd = raw_listener(htonl(INADDR_ANY), &wport);
    int lfd = raw_listener(htonl(INADDR_LOOPBACK), &lport);
    int bfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);

    /* Bound but not listening: not a listener, never listed. */
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(bfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(bfd, (struct sockaddr *)&sin, &len), 0);

    assert_int_equal(lsec_port_listeners(0, v, 512, &n), 0);
    assert_true(n >= 2);
    assert_string_equal(lsec_last_detail(), "");

    expect_listener(v, n, wport, "0.0.0.0", 1);
    expect_listener(v, n, lport, "127.0.0.1", 0);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(v[i].port, ntohs(sin.sin_port));
    close(wfd);
    close(lfd);
    close(bfd);
}

/* One port: exactly its listener; an IPv6 wildcard too. */
static void test_listeners_port(void **state)
{
    (void)state;
    lsec_port_listener v[4];
    size_t n = 99;
    int port;
    int fd = raw_listener(htonl(INADDR_LOOPBACK), &port);
    struct sockaddr_in6 s6;
    socklen_t len = sizeof(s6);
    int one = 1, fd6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    char want[64];

    assert_int_equal(lsec_port_listeners(port, v, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].port, port);
    assert_int_equal(v[0].pid, getpid());

    assert_true(fd6 >= 0);
    assert_int_equal(
        setsockopt(fd6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)), 0);
    memset(&s6, 0, sizeof(s6));
    s6.sin6_family = AF_INET6;
    s6.sin6_addr = in6addr_any;
    assert_int_equal(bind(fd6, (struct sockaddr *)&s6, sizeof(s6)), 0);
    assert_int_equal(listen(fd6, 1), 0);
    assert_int_equal(getsockname(fd6, (struct sockaddr *)&s6, &len), 0);
    assert_int_equal(lsec_port_listeners(ntohs(s6.sin6_port), v, 4, &n), 0);
    assert_int_equal(n, 1);
    snprintf(want, sizeof(want), "[::]:%d", ntohs(s6.sin6_port));
    assert_string_equal(v[0].addr, want);
    assert_int_equal(v[0].wildcard, 1);
    close(fd6);

    close(fd);
    /* Nobody listens on it any more. */
    assert_int_equal(lsec_port_listeners(port, v, 4, &n), LSEC_ENOTFOUND);
    assert_int_equal(n, 0);
    assert_non_null(strstr(lsec_last_detail(), "nobody listens"));
}

/* Too small an array: LSEC_EMSGSIZE with the count; misuse: LSEC_EINVAL. */
static void test_listeners_errors(void **state)
{
    (void)state;
    lsec_port_listener v[1];
    size_t n = 99;
    int p1, p2;
    int fd1 = raw_listener(htonl(INADDR_LOOPBACK), &p1);
    int fd2 = raw_listener(htonl(INADDR_LOOPBACK), &p2);

    assert_int_equal(lsec_port_listeners(0, NULL, 0, &n), LSEC_EMSGSIZE);
    assert_true(n >= 2);
    assert_int_equal(lsec_port_listeners(0, v, 1, &n), LSEC_EMSGSIZE);
    assert_true(n >= 2);
    assert_int_equal(lsec_port_listeners(0, v, 1, NULL), LSEC_EINVAL);
    n = 99;
    assert_int_equal(lsec_port_listeners(0, NULL, 1, &n), LSEC_EINVAL);
    assert_int_equal(n, 0);
    assert_int_equal(lsec_port_listeners(-1, v, 1, &n), LSEC_EINVAL);
    assert_int_equal(lsec_port_listeners(65536, v, 1, &n), LSEC_EINVAL);
    close(fd1);
    close(fd2);
}

/* ------------------------------------------------------------------------ */
/* route_localnet, faked through the lsec__io.open seam (issue 13 item 15)   */

static char fake_conf[64]; /* stands in for /proc/sys/net/ipv4/conf */
static bool fake_unreadable;
static char rl_log[2048];

static int fake_open(const char *path, int flags)
{
    static const char real[] = "/proc/sys/net/ipv4/conf";
    char mapped[256];

    if (strncmp(path, real, sizeof(real) - 1) != 0)
        return open(path, flags);
    if (fake_unreadable) {
        errno = EACCES;
        return -1;
    }
    snprintf(mapped, sizeof(mapped), "%s%s", fake_conf,
             path + sizeof(real) - 1);
    return open(mapped, flags);
}

static void set_flag(const char *iface, const char *value)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/%s", fake_conf, iface);
    (void)mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/%s/route_localnet", fake_conf, iface);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(value, f);
    fclose(f);
}

static void rl_capture(void *arg, int level, const char *msg)
{
    size_t n = strlen(rl_log);
    (void)arg;
    if (level == LSEC_LOG_WARN)
        snprintf(rl_log + n, sizeof(rl_log) - n, "%s\n", msg);
}

static int listen_flags(const char *bind, uint32_t flags)
{
    lsec_opts o;
    lsec_listener *l = NULL;
    lsec_opts_init(&o);
    o.flags = flags;
    int rc = lsec_listen(bind, &o, &l);
    if (rc == 0)
        assert_non_null(l);
    else
        assert_null(l);
    lsec_listener_close(l);
    return rc;
}

static void test_route_localnet(void **state)
{
    char names[128];
    (void)state;

    snprintf(fake_conf, sizeof(fake_conf), "/tmp/lsec-conf-XXXXXX");
    assert_non_null(mkdtemp(fake_conf));
    set_flag("all", "0\n");
    set_flag("default", "0\n");
    set_flag("lo", "0\n");
    set_flag("eth0", "0\n");
    lsec__io.open = fake_open;
    lsec_set_log(rl_capture, NULL, LSEC_LOG_WARN);

    /* Not set anywhere: nothing said, the flag changes nothing. */
    assert_int_equal(lsec__route_localnet(names, sizeof(names)), 0);
    assert_int_equal(listen_flags("127.0.0.1:0", 0), 0);
    assert_int_equal(listen_flags("127.0.0.1:0", LSEC_OPT_NO_ROUTE_LOCALNET),
                     0);
    assert_null(strstr(rl_log, "route_localnet"));

    /* Set on one interface: a WARN naming it and the risk; refused under
     * the flag with LSEC_EPERM and a detail; ::1 is not affected. */
    set_flag("eth0", "1\n");
    assert_int_equal(lsec__route_localnet(names, sizeof(names)), 1);
    assert_string_equal(names, "eth0");
    assert_int_equal(listen_flags("127.0.0.1:0", 0), 0);
    assert_non_null(strstr(rl_log, "net.ipv4.conf.{eth0}.route_localnet is "
                                   "set: packets to 127.0.0.0/8 may arrive "
                                   "from other hosts"));
    assert_int_equal(listen_flags("127.0.0.1:0", LSEC_OPT_NO_ROUTE_LOCALNET),
                     LSEC_EPERM);
    assert_non_null(strstr(lsec_last_detail(), "{eth0}.route_localnet is set"));
    assert_non_null(strstr(lsec_last_detail(), "LSEC_OPT_NO_ROUTE_LOCALNET"));
    assert_int_equal(listen_flags("[::1]:0", LSEC_OPT_NO_ROUTE_LOCALNET), 0);
    set_flag("all", "1\n");
    assert_int_equal(lsec__route_localnet(names, sizeof(names)), 1);
    assert_non_null(strstr(names, "all"));
    assert_non_null(strstr(names, "eth0"));

    /* Unreadable: said nothing without the flag, fail closed with it. */
    fake_unreadable = true;
    assert_int_equal(lsec__route_localnet(names, sizeof(names)), LSEC_ENOSYS);
    assert_int_equal(listen_flags("127.0.0.1:0", 0), 0);
    assert_int_equal(listen_flags("127.0.0.1:0", LSEC_OPT_NO_ROUTE_LOCALNET),
                     LSEC_EPERM);
    assert_non_null(strstr(lsec_last_detail(), "cannot read"));
    fake_unreadable = false;

    lsec_set_log(NULL, NULL, 0);
    lsec__io_reset();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", fake_conf);
    assert_int_equal(system(cmd), 0);
}

/* The real settings can be read on Linux (the fake above is what tests
 * the decisions). */
static void test_route_localnet_real(void **state)
{
    char names[128];
    (void)state;
    int rc = lsec__route_localnet(names, sizeof(names));
    assert_true(rc == 0 || rc == 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_policy),
        cmocka_unit_test(test_range_policy),
        cmocka_unit_test(test_range_exhausted),
        cmocka_unit_test(test_preferred_port),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_socket_failure),
        cmocka_unit_test(test_kernel_view_must_match),
        cmocka_unit_test(test_real_holder_v4),
        cmocka_unit_test(test_real_holder_v6),
        cmocka_unit_test(test_owner_of_self),
        cmocka_unit_test(test_owner_not_found),
        cmocka_unit_test(test_listeners_all),
        cmocka_unit_test(test_listeners_port),
        cmocka_unit_test(test_listeners_errors),
        cmocka_unit_test(test_route_localnet),
        cmocka_unit_test(test_route_localnet_real),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
