/*
 * Binding with a port policy, and who holds a port.
 *
 * The rule (docs/SECURITY.md): the socket that finds a port keeps it.
 * Nothing here ever binds a port, closes it and hands the number on, which
 * would let any local process take the port in between.
 *
 * Owners are found in the kernel's TCP tables (lsec__proc_tcp_scan: the uid
 * and socket inode of each socket), then the process holding the inode
 * among those we may look at (lsec__proc_socket_pid: our own user's, or all
 * of them as root); both are the platform's (sys_linux.c).
 */
#include "internal.h"
#include "sys.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TCP_STATE_LISTEN 10
/* Random probes of a large range before giving up; a range no larger than
 * this is tried exhaustively, in random order. */
#define RANGE_PROBES 64

/* ------------------------------------------------------------------------ */
/* Owners                                                                    */

/* Could a socket bound to `a` hold a loopback port: 127/8, ::1, the
 * wildcards, or their IPv4-mapped forms on a dual-stack socket? */
static bool covers_loopback(const lsec__addr *a)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0,    0,
                                       0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t zero[16];
    const uint8_t *v4 = NULL;

    if (a->family == AF_INET) {
        v4 = a->ip;
    } else {
        if (memcmp(a->ip, zero, 16) == 0 ||
            lsec__addr_is_loopback(a, LSEC_ADDR_ALLOW_127_8))
            return true;
        if (memcmp(a->ip, mapped, 12) == 0)
            v4 = a->ip + 12;
    }
    return v4 != NULL && (v4[0] == 127 || (v4[0] | v4[1] | v4[2] | v4[3]) == 0);
}

struct owner_match {
    uint16_t port;
    bool listen_only;
    lsec__tcp_sock found;
};

static bool match_owner(const lsec__tcp_sock *s, void *arg)
{
    struct owner_match *m = arg;

    if (s->local.port != m->port || !covers_loopback(&s->local))
        return false;
    /* Without listen_only, any socket a process holds: a bound or
     * connected socket also keeps others from binding its port. */
    if (m->listen_only ? s->state != TCP_STATE_LISTEN : s->inode == 0)
        return false;
    m->found = *s;
    return true;
}

/* Printable ASCII only: a process chooses its own name, and it must not
 * smuggle terminal escapes into our output. */
static void sanitize(char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            *s = '?';
}

static void owner_user(int64_t uid, char *user, size_t cap)
{
    struct passwd pw, *res = NULL;
    size_t buflen = 16384;
    char *buf = NULL;

    user[0] = '\0';
    if (uid < 0)
        return;
    /* getpwuid_r may ask for a bigger buffer (ERANGE); a bounded number of
     * doublings. */
    for (int i = 0; i < 4; i++, buflen *= 2) {
        char *nb = realloc(buf, buflen);
        int err;
        if (nb == NULL)
            break;
        buf = nb;
        err = getpwuid_r((uid_t)uid, &pw, buf, buflen, &res);
        if (err != ERANGE)
            break;
    }
    if (res != NULL && res->pw_name != NULL) {
        snprintf(user, cap, "%s", res->pw_name);
        sanitize(user);
    }
    free(buf);
}

/*
 * Find who holds `port`: listeners first, then (unless listen_only) any
 * socket that a process holds.  The table of `family` is searched first so
 * that a conflict on our own family is named before one on the other.
 */
static int owner_lookup(uint16_t port, int family, bool listen_only,
                        lsec_port_owner *out)
{
    int order[2] = {family, family == AF_INET6 ? AF_INET : AF_INET6};
    int unreadable = 0;
    struct owner_match m;

    memset(out, 0, sizeof(*out));
    out->uid = -1;
    out->pid = -1;
    memset(&m, 0, sizeof(m));
    m.port = port;
    for (int pass = 0; pass < (listen_only ? 1 : 2); pass++) {
        m.listen_only = pass == 0;
        for (int i = 0; i < 2; i++) {
            int rc = lsec__proc_tcp_scan(order[i], match_owner, &m);
            if (rc == LSEC_ENOSYS) {
                unreadable++;
                continue;
            }
            if (rc != 0)
                continue;
            out->uid = m.found.uid;
            out->pid = lsec__proc_socket_pid(m.found.inode);
            owner_user(out->uid, out->user, sizeof(out->user));
            lsec__sys_process_name(out->pid, out->command,
                                   sizeof(out->command));
            return 0;
        }
    }
    if (unreadable == (listen_only ? 2 : 4))
        return lsec__fail(LSEC_ENOSYS,
                          "the kernel's TCP tables (/proc/net/tcp, tcp6) "
                          "cannot be read");
    return lsec__fail(LSEC_ENOTFOUND, "nobody listens on port %u",
                      (unsigned)port);
}

int lsec_port_owner_get(int port, lsec_port_owner *out)
{
    lsec__clear_detail();
    if (out == NULL)
        return lsec__fail(LSEC_EINVAL, "no output");
    memset(out, 0, sizeof(*out));
    out->uid = -1;
    out->pid = -1;
    if (port < 1 || port > 65535)
        return lsec__fail(LSEC_EINVAL, "port %d out of range 1..65535", port);
    return owner_lookup((uint16_t)port, AF_INET, true, out);
}

/* Every listener on a loopback or wildcard address (or on one port). */
struct list_ctx {
    uint16_t port; /* 0: every port */
    lsec_port_listener *out;
    size_t cap, n;
};

static bool is_wildcard(const lsec__addr *a)
{
    static const uint8_t zero[16];
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0,    0,
                                       0, 0, 0, 0, 0xff, 0xff};

    if (a->family == AF_INET)
        return memcmp(a->ip, zero, 4) == 0;
    return memcmp(a->ip, zero, 16) == 0 ||
           (memcmp(a->ip, mapped, 12) == 0 && memcmp(a->ip + 12, zero, 4) == 0);
}

static bool collect_listener(const lsec__tcp_sock *s, void *arg)
{
    struct list_ctx *c = arg;
    lsec_port_listener *e;
    char host[INET6_ADDRSTRLEN];

    if (s->state != TCP_STATE_LISTEN || !covers_loopback(&s->local) ||
        (c->port != 0 && s->local.port != c->port))
        return false;
    if (c->n++ >= c->cap)
        return false; /* counted only: the caller's array is full */
    e = &c->out[c->n - 1];
    memset(e, 0, sizeof(*e));
    if (inet_ntop(s->local.family, s->local.ip, host, sizeof(host)) == NULL)
        snprintf(host, sizeof(host), "?");
    snprintf(e->addr, sizeof(e->addr),
             s->local.family == AF_INET6 ? "[%s]:%u" : "%s:%u", host,
             (unsigned)s->local.port);
    e->port = s->local.port;
    e->wildcard = is_wildcard(&s->local) ? 1 : 0;
    e->uid = s->uid;
    e->pid = lsec__proc_socket_pid(s->inode);
    owner_user(e->uid, e->user, sizeof(e->user));
    lsec__sys_process_name(e->pid, e->command, sizeof(e->command));
    return false; /* go on: every listener */
}

int lsec_port_listeners(int port, lsec_port_listener *out, size_t cap,
                        size_t *count)
{
    static const int families[2] = {AF_INET, AF_INET6};
    struct list_ctx c;
    int unreadable = 0;

    lsec__clear_detail();
    if (count == NULL)
        return lsec__fail(LSEC_EINVAL, "no count output");
    *count = 0;
    if (out == NULL && cap != 0)
        return lsec__fail(LSEC_EINVAL, "no output array for %zu entries", cap);
    if (port < 0 || port > 65535)
        return lsec__fail(LSEC_EINVAL, "port %d out of range 0..65535", port);
    memset(&c, 0, sizeof(c));
    c.port = (uint16_t)port;
    c.out = out;
    c.cap = cap;
    for (int i = 0; i < 2; i++)
        if (lsec__proc_tcp_scan(families[i], collect_listener, &c) ==
            LSEC_ENOSYS)
            unreadable++;
    if (unreadable == 2)
        return lsec__fail(LSEC_ENOSYS, "the kernel's TCP tables "
                                       "(/proc/net/tcp, tcp6) cannot be read");
    lsec__clear_detail(); /* one unreadable table is not an error */
    *count = c.n;
    if (c.n > cap)
        return lsec__fail(LSEC_EMSGSIZE, "%zu listeners, room for %zu", c.n,
                          cap);
    if (port != 0 && c.n == 0)
        return lsec__fail(LSEC_ENOTFOUND, "nobody listens on port %d", port);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Binding                                                                   */

/* EADDRINUSE with a detail naming the holder where the system shows it. */
static int in_use(const lsec__addr *a, uint16_t port)
{
    char where[LSEC_ADDR_MAX];
    lsec__addr at = *a;
    lsec_port_owner ow;
    char who[96];

    at.port = port;
    if (lsec__addr_format(&at, where, sizeof(where)) != 0)
        snprintf(where, sizeof(where), "port %u", (unsigned)port);
    if (owner_lookup(port, a->family, false, &ow) != 0)
        return lsec__fail(LSEC_EADDRINUSE, "%s is in use (holder not visible)",
                          where);
    if (ow.user[0] != '\0')
        snprintf(who, sizeof(who), "user %s", ow.user);
    else
        snprintf(who, sizeof(who), "uid %lld", (long long)ow.uid);
    if (ow.pid > 0)
        return lsec__fail(
            LSEC_EADDRINUSE, "%s is in use by pid %d (%s, command %s)", where,
            (int)ow.pid, who, ow.command[0] != '\0' ? ow.command : "?");
    return lsec__fail(LSEC_EADDRINUSE,
                      "%s is in use by %s (process not visible)", where, who);
}

/* A system call failed: map errno to a code with a detail. */
static int sys_fail(int err, const char *what, const lsec__addr *a,
                    uint16_t port)
{
    char where[LSEC_ADDR_MAX];
    lsec__addr at = *a;

    at.port = port;
    if (lsec__addr_format(&at, where, sizeof(where)) != 0)
        where[0] = '\0';
    return lsec__fail_errno(lsec__sys_code(err, LSEC_EIO), err, "%s %s", what,
                            where);
}

/*
 * One attempt: a fresh socket bound to `a` with `port` and listening.
 * 0, LSEC_EADDRINUSE (no detail: the caller decides what to say) or another
 * code with a detail.
 */
static int listen_on(const lsec__addr *a, uint16_t port, int backlog, int *out)
{
    struct sockaddr_storage ss;
    lsec__addr at = *a;
    unsigned len;
    int one = 1, fd, err;

    at.port = port;
    len = lsec__addr_to_sockaddr(&at, &ss);
    fd = lsec__io.socket(at.family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0)
        return sys_fail(errno, "socket for", a, port);
    /* V6ONLY: an IPv6 socket must never also receive IPv4 traffic through
     * mapped addresses (it is ::1 anyway, but the kernel's default is a
     * sysctl, not something to rely on). */
    if (at.family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) {
        err = errno;
        close(fd);
        return sys_fail(err, "IPV6_V6ONLY on", a, port);
    }
    /*
     * SO_REUSEADDR lets a restarted server bind its port while connections
     * of its previous run linger in TIME_WAIT.  On Linux it never lets a
     * second socket take a port that is listening: bind conflicts with any
     * socket in LISTEN state whatever its options, and two sockets that
     * both set SO_REUSEADDR may share a bound port only until one of them
     * listens, after which the other's listen() fails with EADDRINUSE —
     * which is why EADDRINUSE from listen() counts as "taken" below.
     * SO_REUSEPORT, which does let sockets of the same user share a
     * listening port, is never set.
     */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
        err = errno;
        close(fd);
        return sys_fail(err, "SO_REUSEADDR on", a, port);
    }
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 ||
        listen(fd, backlog) != 0) {
        err = errno;
        close(fd);
        if (err == EADDRINUSE)
            return LSEC_EADDRINUSE;
        return sys_fail(err, "bind/listen", a, port);
    }
    *out = fd;
    return 0;
}

static int listen_range(const lsec__addr *a, const lsec_opts *o, int *fd)
{
    uint32_t size = (uint32_t)o->port_max - o->port_min + 1;
    uint16_t ports[RANGE_PROBES];
    uint32_t tries;
    char host[INET6_ADDRSTRLEN];
    int rc;

    if ((rc = lsec__init()) != 0)
        return rc;
    if (size <= RANGE_PROBES) {
        /* A small range is tried whole, in a random order (Fisher-Yates),
         * so "in use" then means every port of it is. */
        for (uint32_t i = 0; i < size; i++)
            ports[i] = (uint16_t)(o->port_min + i);
        for (uint32_t i = size - 1; i > 0; i--) {
            uint32_t j = randombytes_uniform(i + 1);
            uint16_t t = ports[i];
            ports[i] = ports[j];
            ports[j] = t;
        }
        tries = size;
    } else {
        /* A large range: random ports, unpredictable to other local users;
         * a repeat now and then costs one failed bind. */
        for (uint32_t i = 0; i < RANGE_PROBES; i++)
            ports[i] = (uint16_t)(o->port_min + randombytes_uniform(size));
        tries = RANGE_PROBES;
    }
    for (uint32_t i = 0; i < tries; i++) {
        rc = listen_on(a, ports[i], o->backlog, fd);
        if (rc != LSEC_EADDRINUSE)
            return rc;
    }
    if (lsec__addr_format_host(a, host, sizeof(host)) != 0)
        host[0] = '\0';
    return lsec__fail(
        LSEC_EADDRINUSE, "no free port on %s in %u..%u after %u tries", host,
        (unsigned)o->port_min, (unsigned)o->port_max, (unsigned)tries);
}

static int listen_policy(const lsec__addr *a, const lsec_opts *o, int *fd)
{
    int rc;

    if (o->port_policy == LSEC_PORT_RANGE)
        return listen_range(a, o, fd);
    /* Port 0: the kernel picks a free ephemeral port atomically with the
     * bind, and this socket holds it from then on. */
    rc = listen_on(a, 0, o->backlog, fd);
    if (rc == LSEC_EADDRINUSE)
        return lsec__fail(LSEC_EADDRINUSE,
                          "the kernel has no free ephemeral port left");
    return rc;
}

int lsec__port_listen(const lsec__addr *a, const lsec_opts *o, int *fd,
                      lsec__addr *bound)
{
    struct sockaddr_storage ss;
    unsigned sslen = sizeof(ss);
    int s = -1, rc;

    if (fd != NULL)
        *fd = -1;
    if (bound != NULL)
        memset(bound, 0, sizeof(*bound));
    if (a == NULL || o == NULL || fd == NULL || bound == NULL)
        return lsec__fail(LSEC_EINVAL, "missing argument to port_listen");
    /* Callers parsed the address already; checking again here means no
     * path can reach bind() with anything but loopback. */
    if (!lsec__addr_is_loopback(a, o->flags))
        return lsec__fail(LSEC_ENOTLOOPBACK,
                          "refusing to bind a non-loopback address");
    if (o->backlog < 1)
        return lsec__fail(LSEC_EINVAL, "backlog %d must be at least 1",
                          o->backlog);
    if (o->port_policy == LSEC_PORT_RANGE) {
        if (o->port_min < 1 || o->port_min > o->port_max)
            return lsec__fail(LSEC_EINVAL,
                              "invalid port range %u..%u (need "
                              "1 <= port_min <= port_max)",
                              (unsigned)o->port_min, (unsigned)o->port_max);
    } else if (o->port_policy != LSEC_PORT_KERNEL) {
        return lsec__fail(LSEC_EINVAL, "unknown port policy %d",
                          o->port_policy);
    }

    if (a->port != 0) {
        rc = listen_on(a, a->port, o->backlog, &s);
        if (rc == LSEC_EADDRINUSE && !(o->flags & LSEC_OPT_PORT_FALLBACK)) {
            rc = in_use(a, a->port);
        } else if (rc == LSEC_EADDRINUSE) {
            /* The owner lookup scans /proc: only when someone reads it. */
            if (lsec__log_enabled(LSEC_LOG_INFO)) {
                (void)in_use(a, a->port);
                lsec__log(LSEC_LOG_INFO, "%s; falling back to the port policy",
                          lsec_last_detail());
                lsec__clear_detail();
            }
            rc = listen_policy(a, o, &s);
        }
    } else {
        rc = listen_policy(a, o, &s);
    }
    if (rc != 0)
        return rc;

    /* The kernel's own view of what we hold, checked again as loopback,
     * and as exactly the address asked for: a listener never publishes an
     * address it did not request. */
    if (lsec__io.getsockname(s, (struct sockaddr *)&ss, &sslen) != 0) {
        rc = sys_fail(errno, "getsockname on", a, a->port);
        close(s);
        return rc;
    }
    if ((rc = lsec__addr_from_sockaddr((struct sockaddr *)&ss, sslen, o->flags,
                                       bound)) != 0) {
        close(s);
        return rc;
    }
    if (bound->family != a->family ||
        memcmp(bound->ip, a->ip, a->family == AF_INET ? 4 : 16) != 0 ||
        bound->port == 0 ||
        (a->port != 0 && bound->port != a->port &&
         !(o->flags & LSEC_OPT_PORT_FALLBACK))) {
        char want[LSEC_ADDR_MAX], got[LSEC_ADDR_MAX];
        if (lsec__addr_format(a, want, sizeof(want)) != 0)
            snprintf(want, sizeof(want), "?");
        if (lsec__addr_format(bound, got, sizeof(got)) != 0)
            snprintf(got, sizeof(got), "?");
        rc =
            lsec__fail(LSEC_ENOTLOOPBACK,
                       "asked to bind %s but the kernel reports %s", want, got);
        memset(bound, 0, sizeof(*bound));
        close(s);
        return rc;
    }
    *fd = s;
    return 0;
}
