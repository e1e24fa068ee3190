/*
 * loopsec forward: the client side of `loopsec serve` for programs that
 * know nothing of loopsec.
 *
 *   --stdio              one channel over stdin/stdout (ProxyCommand style)
 *   --listen unix:PATH   a Unix socket only this user can reach; each
 *                        connection accepted there gets its own channel,
 *                        carried by its own thread (one stalled connection
 *                        delays no other; at most FORWARD_MAX at once)
 *
 * No option opens a TCP port: a plain TCP port would be open to every local
 * user and would undo the protection.  The socket's directory must be the
 * user's own with mode 0700 (created so if missing), so nobody else can
 * reach the socket or race for its name; an existing path that is not a
 * stale socket of ours is refused, never replaced.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define FORWARD_MAX 128
#define FORWARD_DRAIN_MS 10000
#define FORWARD_STACK (256 * 1024)
#define FORWARD_TMP_SUFFIX 9 /* ".PID~": pids have at most 7 digits */

/* The directory of `path` exists (or is created 0700), is ours and 0700. */
static int check_dir(const char *path)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    const char *slash = strrchr(path, '/');
    struct stat st;

    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");
    } else if (slash == path) {
        snprintf(dir, sizeof(dir), "/");
    } else {
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr,
                "loopsec: forward: creating the socket's directory: "
                "%s\n",
                strerror(errno));
        return 1;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "loopsec: forward: the socket's directory: %s\n",
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    close(fd);
    if (st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
        fprintf(stderr,
                "loopsec: forward: the socket's directory must be yours with "
                "mode 0700 (nobody else may reach the socket); e.g. a new "
                "directory under $XDG_RUNTIME_DIR or mktemp -d\n");
        return 1;
    }
    return 0;
}

/* A stale socket of ours (nobody accepts on it) may be replaced. */
static int take_path(const char *path, const struct sockaddr_un *un,
                     socklen_t len)
{
    struct stat st;

    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : 1;
    if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid()) {
        fprintf(stderr, "loopsec: forward: the socket path exists and is not "
                        "a socket of yours; refusing to replace it\n");
        return 1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (const struct sockaddr *)un, len) == 0) {
        close(fd);
        fprintf(stderr, "loopsec: forward: the socket path is in use by a "
                        "running program\n");
        return 1;
    }
    if (fd >= 0)
        close(fd);
    if (unlink(path) != 0) {
        fprintf(stderr, "loopsec: forward: removing the stale socket: %s\n",
                strerror(errno));
        return 1;
    }
    return 0;
}

/*
 * Connections are carried by threads, one per accepted connection, so that
 * a stalled one delays no other, and so that what a connection costs once
 * per process (OpenSSL's client context, the peer-lookup socket) is paid
 * once per forward, not once per connection as with a process each.
 * Workers block every signal (the main thread takes them) and tell the
 * main thread through a pipe when they end.  Each registers its two
 * sockets, so that a forward that stops before they finish resets them
 * rather than ending them as if cleanly.
 */
struct fwd_slot {
    bool used;
    int fd;   /* the local connection */
    int chfd; /* the channel's socket once connected, else -1 */
};

struct fwd {
    const cli_ticket *t;
    const lsec_opts *o;
    int timeout;
    int done_w; /* a byte per ended worker */
    pthread_mutex_t lock;
    struct fwd_slot slots[FORWARD_MAX];
};

struct fwd_job {
    struct fwd *f;
    int slot;
};

static void slot_set_channel(struct fwd *f, int slot, int chfd)
{
    pthread_mutex_lock(&f->lock);
    f->slots[slot].chfd = chfd;
    pthread_mutex_unlock(&f->lock);
}

/* One accepted connection. */
static void carry(struct fwd *f, int slot, int fd)
{
    lsec_channel *ch = NULL;
    cli_pump p;
    int rc = cli_ticket_connect(f->t, f->o, f->timeout, &ch);

    if (rc != 0) {
        cli_error("forward: connect", rc);
        cli_abort_fd(fd);
        return;
    }
    slot_set_channel(f, slot, lsec_channel_fd(ch));
    if (cli_pump_init(&p, ch, fd, fd, -1) != 0) {
        cli_abort_channel(ch);
        cli_abort_fd(fd);
        return;
    }
    p.in_name = p.out_name = "the local connection";
    for (;;) {
        struct pollfd pf[3] = {{-1, 0, 0}, {-1, 0, 0}, {-1, 0, 0}};
        int tmo = -1;
        cli_pump_events(&p, pf, &tmo);
        if (poll(pf, 3, tmo) < 0 && errno != EINTR) {
            p.failed = true;
            snprintf(p.err, sizeof(p.err), "poll: %s", strerror(errno));
            break;
        }
        if (cli_pump_step(&p, pf) != 0)
            break;
    }
    if (p.failed) {
        fprintf(stderr, "loopsec: forward: %s\n", p.err);
        cli_abort_fd(fd);
    }
    /* The main thread may reset this socket at its exit: not once it is
     * closed and its number free for reuse. */
    slot_set_channel(f, slot, -1);
    cli_pump_free(&p);
}

static void *worker(void *arg)
{
    struct fwd_job *j = arg;
    struct fwd *f = j->f;
    int slot = j->slot;
    unsigned char b = 1;

    free(j);
    carry(f, slot, f->slots[slot].fd);
    pthread_mutex_lock(&f->lock);
    close(f->slots[slot].fd);
    f->slots[slot].used = false;
    f->slots[slot].fd = f->slots[slot].chfd = -1;
    pthread_mutex_unlock(&f->lock);
    while (write(f->done_w, &b, 1) < 0 && errno == EINTR)
        ;
    return NULL;
}

/* Start a worker for `cfd`: 0, or -1 (the caller resets and closes it). */
static int start_worker(struct fwd *f, int cfd)
{
    struct fwd_job *j = malloc(sizeof(*j));
    pthread_attr_t attr;
    pthread_t th;
    sigset_t all, old;
    int slot = -1, rc;

    if (j == NULL)
        return -1;
    pthread_mutex_lock(&f->lock);
    for (int i = 0; i < FORWARD_MAX && slot < 0; i++)
        if (!f->slots[i].used)
            slot = i;
    if (slot >= 0) {
        f->slots[slot].used = true;
        f->slots[slot].fd = cfd;
        f->slots[slot].chfd = -1;
    }
    pthread_mutex_unlock(&f->lock);
    if (slot < 0) {
        free(j);
        return -1;
    }
    j->f = f;
    j->slot = slot;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, FORWARD_STACK);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&th, &attr, worker, j);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_mutex_lock(&f->lock);
        f->slots[slot].used = false;
        pthread_mutex_unlock(&f->lock);
        free(j);
        return -1;
    }
    return 0;
}

/* At exit with workers still running: reset their sockets, so that
 * neither end takes the exit for a clean end of stream. */
static void reset_running(struct fwd *f)
{
    pthread_mutex_lock(&f->lock);
    for (int i = 0; i < FORWARD_MAX; i++) {
        if (!f->slots[i].used)
            continue;
        cli_abort_fd(f->slots[i].fd);
        if (f->slots[i].chfd >= 0)
            cli_abort_fd(f->slots[i].chfd);
    }
    pthread_mutex_unlock(&f->lock);
}

/*
 * Listen at `path`, which appears only once it accepts: bound and listening
 * under a temporary name beside it, then hard-linked into place (link never
 * replaces a name, so a forward that won a race keeps its socket), then the
 * temporary name removed.  A script that waits for the path to exist, and
 * another forward that probes it, never find it bound but not yet listening
 * (refused, as a stale socket is).  The listening descriptor, or -1 (said).
 */
static int listen_at(const char *path, const struct sockaddr_un *un)
{
    struct sockaddr_un tu = *un;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int rc = fd < 0 ? -1 : 0;

    snprintf(tu.sun_path, sizeof(tu.sun_path), "%s.%ld~", path, (long)getpid());
    socklen_t tlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
                                 strlen(tu.sun_path) + 1);
    /* The directory is ours alone (check_dir): a name with this pid is a
     * dead process's leftover. */
    (void)unlink(tu.sun_path);
    mode_t old = umask(0177); /* the socket: 0600 */
    if (rc == 0 && (bind(fd, (struct sockaddr *)&tu, tlen) != 0 ||
                    listen(fd, 128) != 0 || link(tu.sun_path, path) != 0))
        rc = -1;
    umask(old);
    if (rc != 0)
        fprintf(stderr, "loopsec: forward: %s: %s\n", path,
                errno == EEXIST ? "the socket path is in use by a running "
                                  "program (it appeared meanwhile)"
                                : strerror(errno));
    (void)unlink(tu.sun_path);
    if (rc != 0 && fd >= 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static int serve_unix(const char *path, const cli_ticket *t, const lsec_opts *o,
                      int timeout)
{
    struct sockaddr_un un;
    struct stat st;
    size_t n = strlen(path);
    int lfd, status = 0, running = 0, done[2];
    bool stopping = false;
    int64_t drain_deadline = 0;
    static struct fwd f;

    /* Room for listen_at's temporary name beside it: ".PID~". */
    if (n == 0 || n >= sizeof(un.sun_path) - FORWARD_TMP_SUFFIX)
        return cli_usage_error("forward",
                               "--listen unix:PATH needs a path of "
                               "1 to %zu bytes",
                               sizeof(un.sun_path) - 1 - FORWARD_TMP_SUFFIX);
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    memcpy(un.sun_path, path, n + 1);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    if (check_dir(path) != 0 || take_path(path, &un, len) != 0)
        return 1;
    if (pipe2(done, O_CLOEXEC | O_NONBLOCK) != 0) {
        fprintf(stderr, "loopsec: forward: pipe: %s\n", strerror(errno));
        return 1;
    }
    lfd = listen_at(path, &un);
    if (lfd < 0 || lstat(path, &st) != 0) {
        if (lfd >= 0)
            close(lfd);
        close(done[0]);
        close(done[1]);
        return 1;
    }
    int sigfd = cli_signals_open();
    if (sigfd < 0) {
        close(lfd);
        unlink(path);
        close(done[0]);
        close(done[1]);
        return 1;
    }
    memset(&f, 0, sizeof(f));
    f.t = t;
    f.o = o;
    f.timeout = timeout;
    f.done_w = done[1];
    pthread_mutex_init(&f.lock, NULL);
    if (cli_verbose)
        fprintf(stderr, "loopsec: forward: listening on %s\n", path);
    for (;;) {
        struct pollfd pf[3] = {
            {sigfd, POLLIN, 0},
            {done[0], POLLIN, 0},
            {stopping || running >= FORWARD_MAX ? -1 : lfd, POLLIN, 0}};
        if (poll(pf, 3, stopping ? 200 : -1) < 0 && errno != EINTR) {
            status = 1;
            break;
        }
        if (pf[0].revents != 0) {
            unsigned char sig;
            while (read(sigfd, &sig, 1) == 1) {
                if (sig != SIGCHLD && !stopping) {
                    stopping = true;
                    drain_deadline = cli_now_ms() + FORWARD_DRAIN_MS;
                }
            }
        }
        if (pf[1].revents != 0) {
            unsigned char b[64];
            ssize_t k;
            while ((k = read(done[0], b, sizeof(b))) > 0)
                running -= (int)k;
        }
        if (stopping && (running == 0 || cli_now_ms() >= drain_deadline))
            break;
        if (pf[2].fd < 0 || pf[2].revents == 0)
            continue;
        int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (cfd < 0)
            continue;
        if (start_worker(&f, cfd) == 0) {
            running++;
        } else {
            cli_abort_fd(cfd);
            close(cfd);
        }
    }
    close(lfd);
    /* Remove the socket only if the name is still ours. */
    struct stat now;
    if (lstat(path, &now) == 0 && now.st_ino == st.st_ino &&
        now.st_dev == st.st_dev)
        unlink(path);
    cli_signals_close();
    if (running > 0) {
        /* The drain bound passed: reset what is still open, and end the
         * process without exit()'s cleanup, which would tear OpenSSL down
         * under the workers' feet. */
        reset_running(&f);
        fflush(stderr);
        _exit(status);
    }
    return status;
}

int cmd_forward(int argc, char **argv)
{
    const char *listen_at = NULL;
    bool stdio = false;
    cli_args a;
    int rc;
    cli_ticket t;
    lsec_channel *ch = NULL;

    cli_args_init(&a, 10000);
    for (int i = 1; i < argc; i++) {
        rc = cli_common_arg("forward",
                            CLI_OPT_TLS | CLI_OPT_127 | CLI_OPT_TICKET |
                                CLI_OPT_TIMEOUT,
                            argc, argv, &i, &a);
        if (rc == 1)
            continue;
        if (rc != 0)
            return rc;
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
            listen_at = argv[++i];
        else if (strcmp(argv[i], "--stdio") == 0)
            stdio = true;
        else if (argv[i][0] != '-')
            return cli_refuse_ticket_arg("forward", argv[i]);
        else
            return cli_bad_option("forward", argv[i]);
    }
    if ((listen_at != NULL) == stdio)
        return cli_usage_error("forward", "give exactly one of --listen "
                                          "unix:PATH and --stdio");
    if (listen_at != NULL && strncmp(listen_at, "unix:", 5) != 0)
        return cli_usage_error("forward", "--listen takes unix:PATH only (a "
                                          "TCP port would be open to every "
                                          "local user)");
    if ((rc = cli_ticket_resolve("forward", a.file, a.fdval, &t)) != 0)
        return rc;
    if (listen_at != NULL) {
        rc = serve_unix(listen_at + 5, &t, &a.o, a.timeout);
        cli_ticket_wipe(&t);
        return rc;
    }
    rc = cli_ticket_connect(&t, &a.o, a.timeout, &ch);
    cli_ticket_wipe(&t);
    if (rc != 0) {
        cli_error("forward: connect", rc);
        return 1;
    }
    return cli_relay(ch, -1);
}
