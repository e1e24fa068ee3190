/*
 * loopsec serve: one long-lived listener in front of a service that knows
 * nothing of loopsec.  Each authenticated peer gets, only after its
 * handshake succeeded, its own backend connection (--to) or its own process
 * (--exec, stdin/stdout = the channel, as inetd does), and one pump
 * (pump.c) between the two.  Everything runs in one poll loop; no call in
 * it waits for a peer or a backend, so a stalled one delays no other.
 *
 * Bounds: --max-peers relayed connections (default 64), the library's
 * pending-handshake cap (64), and per connection one chunk and one message
 * (at most SERVE_MAX_MESSAGE) in flight each way.
 */
#include "cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define SERVE_MAX_MESSAGE (1u << 20)
#define SERVE_DRAIN_MS 10000
#define SERVE_BACKEND_CONNECT_MS 10000

struct conn {
    bool used, connecting;
    cli_pump p;
    int bfd;          /* backend socket (--to), or -1 */
    int cin, cout;    /* --exec: the child's stdout (read), stdin (write) */
    pid_t pid;        /* --exec child, 0 when reaped or none */
    int64_t deadline; /* backend connect */
    unsigned long id;
};

struct serve {
    lsec_listener *l;
    /* backend */
    struct sockaddr_storage to;
    socklen_t tolen;
    char **exec_argv;
    struct conn *conns;
    long max_peers, active;
    unsigned long next_id;
};

/* "unix:PATH", "127.0.0.1:PORT" or "[::1]:PORT" into a sockaddr. */
static int parse_backend(struct serve *s, const char *to, unsigned flags)
{
    memset(&s->to, 0, sizeof(s->to));
    if (strncmp(to, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&s->to;
        size_t n = strlen(to + 5);
        if (n == 0 || n >= sizeof(un->sun_path)) {
            fprintf(stderr,
                    "loopsec: serve: --to unix:PATH needs a path of "
                    "1 to %zu bytes\n",
                    sizeof(un->sun_path) - 1);
            return 1;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, to + 5, n + 1);
        s->tolen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        return 0;
    }
    char norm[LSEC_ADDR_MAX];
    int rc = lsec_addr_check(to, flags, norm, sizeof(norm));
    if (rc != 0)
        return cli_addr_error("serve: --to", to, rc);
    char *colon = strrchr(norm, ':');
    long port;
    *colon = '\0';
    if (!cli_parse_count(colon + 1, 1, 65535, &port)) {
        fprintf(stderr, "loopsec: serve: --to needs a port 1..65535\n");
        return 1;
    }
    if (norm[0] == '[') {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&s->to;
        norm[strlen(norm) - 1] = '\0';
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, norm + 1, &a6->sin6_addr) != 1)
            return 1;
        s->tolen = sizeof(*a6);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&s->to;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, norm, &a4->sin_addr) != 1)
            return 1;
        s->tolen = sizeof(*a4);
    }
    return 0;
}

static void conn_log(const struct conn *c, const char *msg)
{
    fprintf(stderr, "loopsec: serve: connection %lu: %s\n", c->id, msg);
}

static void conn_end(struct serve *s, struct conn *c)
{
    bool failed = c->p.failed;
    bool out_closed = c->p.out_fd < 0; /* the pump ended a pipe itself */

    if (failed)
        conn_log(c, c->p.err);
    else if (cli_verbose)
        conn_log(c, "ended cleanly");
    cli_pump_free(&c->p);
    if (c->bfd >= 0) {
        if (failed)
            cli_abort_fd(c->bfd);
        close(c->bfd);
    }
    if (c->cin >= 0)
        close(c->cin);
    if (c->cout >= 0 && !out_closed)
        close(c->cout);
    /* An exec'd child is reaped on SIGCHLD; it sees the end of its stdin. */
    pid_t pid = c->pid;
    memset(c, 0, sizeof(*c));
    c->pid = pid;
    c->bfd = c->cin = c->cout = -1;
    s->active--;
}

static int start_exec(struct serve *s, struct conn *c)
{
    int in[2], out[2]; /* child's stdin, child's stdout */

    if (pipe2(in, O_CLOEXEC) != 0)
        return -1;
    if (pipe2(out, O_CLOEXEC) != 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        return -1;
    }
    if (pid == 0) {
        /* The child: stdin/stdout are the channel, stderr is ours. */
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = SIG_DFL;
        for (int sig = 1; sig < NSIG; sig++)
            (void)sigaction(sig, &sa, NULL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0)
            _exit(127);
        close_range(3, ~0U, 0);
        execvp(s->exec_argv[0], s->exec_argv);
        fprintf(stderr, "loopsec: serve: --exec %s: %s\n", s->exec_argv[0],
                strerror(errno));
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    /* Our ends only: the child's stay blocking, as programs expect. */
    (void)fcntl(in[1], F_SETFL, fcntl(in[1], F_GETFL) | O_NONBLOCK);
    (void)fcntl(out[0], F_SETFL, fcntl(out[0], F_GETFL) | O_NONBLOCK);
    c->pid = pid;
    c->cin = out[0];
    c->cout = in[1];
    return 0;
}

static int start_backend(struct serve *s, struct conn *c)
{
    if (s->exec_argv != NULL)
        return start_exec(s, c);
    int fd =
        socket(s->to.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (s->to.ss_family != AF_UNIX) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        cli_tcp_loopback(fd);
    }
    if (connect(fd, (struct sockaddr *)&s->to, s->tolen) != 0 &&
        errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    c->bfd = fd;
    c->connecting = true;
    c->deadline = cli_now_ms() + SERVE_BACKEND_CONNECT_MS;
    return 0;
}

static void new_peer(struct serve *s, lsec_channel *ch)
{
    struct conn *c = NULL;
    char msg[128];

    for (long i = 0; i < s->max_peers; i++)
        if (!s->conns[i].used) {
            c = &s->conns[i];
            break;
        }
    if (c == NULL) { /* cannot happen: accepting stops at the cap */
        cli_abort_channel(ch);
        return;
    }
    pid_t stale = c->pid;
    memset(c, 0, sizeof(*c));
    c->pid = stale;
    c->bfd = c->cin = c->cout = -1;
    c->id = ++s->next_id;
    /* Only now, after the peer proved it holds the secret, does the
     * backend hear of it. */
    if (start_backend(s, c) != 0) {
        snprintf(msg, sizeof(msg), "backend: %s", strerror(errno));
        conn_log(c, msg);
        cli_abort_channel(ch);
        return;
    }
    if (cli_pump_init(&c->p, ch, c->bfd >= 0 ? c->bfd : c->cin,
                      c->bfd >= 0 ? c->bfd : c->cout, -1) != 0) {
        conn_log(c, "out of memory");
        cli_abort_channel(ch);
        if (c->bfd >= 0)
            close(c->bfd);
        if (c->cin >= 0)
            close(c->cin);
        if (c->cout >= 0)
            close(c->cout);
        c->bfd = c->cin = c->cout = -1;
        return;
    }
    c->p.in_name = c->p.out_name = "the backend";
    c->used = true;
    s->active++;
    if (cli_verbose) {
        lsec_peer peer;
        if (lsec_channel_peer(ch, &peer) == 0) {
            snprintf(msg, sizeof(msg), "peer uid %lld port %d accepted",
                     (long long)peer.uid, (int)peer.port);
            conn_log(c, msg);
        }
    }
}

static void reap(struct serve *s)
{
    int st;
    pid_t pid;

    while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
        for (long i = 0; i < s->max_peers; i++)
            if (s->conns[i].pid == pid)
                s->conns[i].pid = 0;
}

/* The key file: "loopsec-key-v1 <16 hex id> <64 hex secret>\n", 0600.
 * Secret and id come from libsodium, and so does the hex codec. */
static bool unhex(const char *s, uint8_t *out, size_t n)
{
    size_t got = 0;
    return sodium_hex2bin(out, n, s, 2 * n, NULL, &got, NULL) == 0 && got == n;
}

#define KEY_TAG "loopsec-key-v1 "
#define KEY_LINE                                                               \
    (sizeof(KEY_TAG) - 1 + 2 * LSEC_ID_BYTES + 1 + 2 * LSEC_SECRET_BYTES + 1)

static int create_key_file(const char *path, uint8_t *secret, uint8_t *id)
{
    char line[KEY_LINE + 1];
    size_t off = sizeof(KEY_TAG) - 1;
    int fd, rc = 0;

    if (sodium_init() < 0) {
        fprintf(stderr, "loopsec: serve: libsodium cannot start\n");
        return 1;
    }
    randombytes_buf(secret, LSEC_SECRET_BYTES);
    randombytes_buf(id, LSEC_ID_BYTES);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "loopsec: serve: creating --key-file: %s\n",
                strerror(errno));
        return 1;
    }
    memcpy(line, KEY_TAG, off);
    /* sodium_bin2hex writes a NUL after the digits: the next byte is set
     * right after, and the line has room for the last one. */
    sodium_bin2hex(line + off, 2 * LSEC_ID_BYTES + 1, id, LSEC_ID_BYTES);
    off += 2 * LSEC_ID_BYTES;
    line[off++] = ' ';
    sodium_bin2hex(line + off, 2 * LSEC_SECRET_BYTES + 1, secret,
                   LSEC_SECRET_BYTES);
    off += 2 * LSEC_SECRET_BYTES;
    line[off++] = '\n';
    if (write(fd, line, off) != (ssize_t)off || fsync(fd) != 0) {
        fprintf(stderr, "loopsec: serve: writing --key-file: %s\n",
                strerror(errno));
        rc = 1;
    }
    close(fd);
    explicit_bzero(line, sizeof(line));
    if (rc != 0)
        unlink(path);
    return rc;
}

/* Read the key file, or create it when missing.  0, or 1 with a message. */
static int key_file(const char *path, uint8_t *secret, uint8_t *id)
{
    char line[KEY_LINE + 2];
    struct stat st;
    ssize_t n;
    size_t off = sizeof(KEY_TAG) - 1;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

    if (fd < 0 && errno == ENOENT)
        return create_key_file(path, secret, id);
    if (fd < 0) {
        fprintf(stderr, "loopsec: serve: --key-file: %s\n", strerror(errno));
        return 1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & 077) != 0) {
        close(fd);
        fprintf(stderr, "loopsec: serve: --key-file must be a regular file of "
                        "yours with mode 0600 (no group or other access)\n");
        return 1;
    }
    n = read(fd, line, sizeof(line) - 1);
    close(fd);
    if (n < (ssize_t)KEY_LINE - 1 || memcmp(line, KEY_TAG, off) != 0 ||
        !unhex(line + off, id, LSEC_ID_BYTES) ||
        line[off + 2 * LSEC_ID_BYTES] != ' ' ||
        !unhex(line + off + 2 * LSEC_ID_BYTES + 1, secret, LSEC_SECRET_BYTES)) {
        explicit_bzero(line, sizeof(line));
        explicit_bzero(secret, LSEC_SECRET_BYTES);
        fprintf(stderr, "loopsec: serve: --key-file is not a loopsec key "
                        "file\n");
        return 1;
    }
    explicit_bzero(line, sizeof(line));
    return 0;
}

static int listen_with_key(const char *bind, const lsec_opts *o,
                           const char *key_path, lsec_listener **l)
{
    uint8_t secret[LSEC_SECRET_BYTES], id[LSEC_ID_BYTES];
    int rc;

    if (key_path == NULL)
        return lsec_listen(bind, o, l);
    if (key_file(key_path, secret, id) != 0)
        return 1;
    rc = lsec_listen_keyed(bind, o, secret, sizeof(secret), id, sizeof(id), l);
    explicit_bzero(secret, sizeof(secret));
    return rc;
}

int cmd_serve(int argc, char **argv)
{
    const char *to = NULL, *key_path = NULL;
    struct serve s;
    cli_args a;
    int rc, status = 0;
    bool stopping = false;
    int64_t drain_deadline = 0;

    memset(&s, 0, sizeof(s));
    s.max_peers = 64;
    cli_args_init(&a, -1);
    a.o.max_message = SERVE_MAX_MESSAGE;
    for (int i = 1; i < argc; i++) {
        bool more = i + 1 < argc;
        rc = cli_common_arg(
            "serve", CLI_OPT_TLS | CLI_OPT_127 | CLI_OPT_BIND | CLI_OPT_TICKET,
            argc, argv, &i, &a);
        if (rc == 1)
            continue;
        if (rc != 0)
            return rc;
        if (strcmp(argv[i], "--key-file") == 0 && more) {
            key_path = argv[++i];
        } else if (strcmp(argv[i], "--max-peers") == 0 && more) {
            if (!cli_parse_count(argv[++i], 1, 4096, &s.max_peers))
                return cli_usage_error("serve", "--max-peers takes a number "
                                                "1..4096");
        } else if (strcmp(argv[i], "--to") == 0 && more) {
            to = argv[++i];
        } else if (strcmp(argv[i], "--exec") == 0 && more) {
            s.exec_argv = argv + i + 1; /* NULL-terminated by the runtime */
            break;
        } else {
            return cli_bad_option("serve", argv[i]);
        }
    }
    if ((to != NULL) == (s.exec_argv != NULL))
        return cli_usage_error("serve", "give exactly one of --to ADDR, --to "
                                        "unix:PATH and --exec CMD");
    if (a.file != NULL && a.fdval != NULL)
        return cli_usage_error("serve", "give only one of --ticket-file and "
                                        "--ticket-fd");
    if (to != NULL &&
        parse_backend(&s, to, a.o.flags & LSEC_ADDR_ALLOW_127_8) != 0)
        return 1;
    s.conns = calloc((size_t)s.max_peers, sizeof(*s.conns));
    int sigfd = s.conns != NULL ? cli_signals_open() : -1;
    if (sigfd < 0) {
        fprintf(stderr, "loopsec: serve: out of resources\n");
        free(s.conns);
        return 1;
    }
    for (long i = 0; i < s.max_peers; i++)
        s.conns[i].bfd = s.conns[i].cin = s.conns[i].cout = -1;

    rc = listen_with_key(a.bind, &a.o, key_path, &s.l);
    if (rc != 0) {
        if (rc != 1)
            cli_addr_error("serve", a.bind, rc);
        status = 1;
        goto out;
    }
    if ((rc = cli_give_ticket(s.l, "serve", a.file, a.fdval)) != 0) {
        status = rc;
        goto out;
    }

    size_t nslots = 2 + 3 * (size_t)s.max_peers;
    struct pollfd *pf = calloc(nslots, sizeof(*pf));
    if (pf == NULL) {
        status = 1;
        goto out;
    }
    for (;;) {
        int timeout = stopping ? 200 : 1000;
        size_t n = 2;
        pf[0].fd = sigfd;
        pf[0].events = POLLIN;
        pf[1].fd =
            !stopping && s.active < s.max_peers ? lsec_listener_fd(s.l) : -1;
        pf[1].events = POLLIN;
        for (long i = 0; i < s.max_peers; i++) {
            struct conn *c = &s.conns[i];
            struct pollfd *q = &pf[n];
            n += 3;
            q[0].fd = q[1].fd = q[2].fd = -1;
            if (!c->used)
                continue;
            if (c->connecting) {
                q[0].fd = c->bfd;
                q[0].events = POLLOUT;
                int64_t left = c->deadline - cli_now_ms();
                if (left < timeout)
                    timeout = left > 0 ? (int)left : 0;
                continue;
            }
            cli_pump_events(&c->p, q, &timeout);
        }
        if (poll(pf, n, timeout) < 0 && errno != EINTR) {
            fprintf(stderr, "loopsec: serve: poll: %s\n", strerror(errno));
            status = 1;
            break;
        }
        if (pf[0].revents != 0) {
            unsigned char sig;
            while (read(sigfd, &sig, 1) == 1) {
                if (sig == SIGCHLD) {
                    reap(&s);
                } else if (!stopping) {
                    /* Stop accepting (the connection file goes with the
                     * listener); open connections get a bounded time. */
                    stopping = true;
                    drain_deadline = cli_now_ms() + SERVE_DRAIN_MS;
                    lsec_listener_close(s.l);
                    s.l = NULL;
                    pf[1].fd = -1;
                }
            }
        }
        for (long i = 0; i < s.max_peers; i++) {
            struct conn *c = &s.conns[i];
            struct pollfd *q = &pf[2 + 3 * (size_t)i];
            if (!c->used)
                continue;
            if (c->connecting) {
                int err = 0;
                socklen_t el = sizeof(err);
                if (q[0].revents != 0) {
                    (void)getsockopt(c->bfd, SOL_SOCKET, SO_ERROR, &err, &el);
                    if (err == 0) {
                        c->connecting = false;
                        continue;
                    }
                } else if (cli_now_ms() < c->deadline) {
                    continue;
                } else {
                    err = ETIMEDOUT;
                }
                snprintf(c->p.err, sizeof(c->p.err), "backend: %s",
                         strerror(err));
                c->p.failed = true;
                conn_end(&s, c);
                continue;
            }
            /* Only connections with something to do: an event, or bytes
             * the channel already holds. */
            if (q[0].revents == 0 && q[1].revents == 0 && q[2].revents == 0 &&
                !(q[2].fd >= 0 && (q[2].events & POLLIN) &&
                  lsec_channel_pending(c->p.ch) > 0))
                continue;
            if (cli_pump_step(&c->p, q) != 0)
                conn_end(&s, c);
        }
        if (pf[1].fd >= 0 && s.l != NULL) {
            /* Every readable wake, and once a second for the deadlines of
             * stalled handshakes. */
            while (s.active < s.max_peers) {
                lsec_channel *ch = NULL;
                rc = lsec_accept(s.l, 0, &ch);
                if (rc == LSEC_EAGAIN)
                    break;
                if (rc != 0) {
                    cli_error("serve: accept", rc);
                    break;
                }
                new_peer(&s, ch);
            }
        }
        if (stopping && (s.active == 0 || cli_now_ms() >= drain_deadline))
            break;
    }
    free(pf);
out:
    for (long i = 0; i < s.max_peers; i++)
        if (s.conns != NULL && s.conns[i].used) {
            s.conns[i].p.failed = true;
            snprintf(s.conns[i].p.err, sizeof(s.conns[i].p.err),
                     "still open when serve stopped: reset");
            conn_end(&s, &s.conns[i]);
        }
    for (long i = 0; i < s.max_peers; i++)
        if (s.conns != NULL && s.conns[i].pid > 0)
            kill(s.conns[i].pid, SIGTERM);
    for (int k = 0; k < 20; k++) {
        bool left = false;
        reap(&s);
        for (long i = 0; i < s.max_peers; i++)
            left = left || (s.conns != NULL && s.conns[i].pid > 0);
        if (!left)
            break;
        usleep(50000);
    }
    lsec_listener_close(s.l);
    free(s.conns);
    cli_signals_close();
    return status;
}
