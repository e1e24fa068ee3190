/*
 * loopsec forward: the client side of `loopsec serve` for programs that
 * know nothing of loopsec.
 *
 *   --stdio              one channel over stdin/stdout (ProxyCommand style)
 *   --listen unix:PATH   a Unix socket only this user can reach; each
 *                        connection accepted there gets its own channel,
 *                        in its own process (one stalled connection delays
 *                        no other; at most FORWARD_MAX at once)
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define FORWARD_MAX 128
#define FORWARD_DRAIN_MS 10000

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
        fprintf(stderr, "loopsec: forward: creating the socket's directory: "
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

/* One accepted connection, in its own process. */
static int carry(int fd, const cli_ticket *t, const lsec_opts *o, int timeout)
{
    lsec_channel *ch = NULL;
    cli_pump p;
    int rc = cli_ticket_connect(t, o, timeout, &ch);

    if (rc != 0) {
        cli_error("forward: connect", rc);
        cli_abort_fd(fd);
        return 1;
    }
    if (cli_pump_init(&p, ch, fd, fd, -1) != 0) {
        cli_abort_channel(ch);
        cli_abort_fd(fd);
        return 1;
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
    rc = p.failed ? 1 : 0;
    if (p.failed) {
        fprintf(stderr, "loopsec: forward: %s\n", p.err);
        cli_abort_fd(fd);
    }
    cli_pump_free(&p);
    close(fd);
    return rc;
}

static int serve_unix(const char *path, const cli_ticket *t,
                      const lsec_opts *o, int timeout)
{
    struct sockaddr_un un;
    struct stat st;
    size_t n = strlen(path);
    int lfd, status = 0, children = 0;
    bool stopping = false;
    int64_t drain_deadline = 0;

    if (n == 0 || n >= sizeof(un.sun_path))
        return cli_usage_error("forward", "--listen unix:PATH needs a path of "
                                          "1 to %zu bytes",
                               sizeof(un.sun_path) - 1);
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    memcpy(un.sun_path, path, n + 1);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    if (check_dir(path) != 0 || take_path(path, &un, len) != 0)
        return 1;
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    mode_t old = umask(0177); /* the socket: 0600 */
    int brc = lfd < 0 ? -1 : bind(lfd, (struct sockaddr *)&un, len);
    umask(old);
    if (brc != 0 || listen(lfd, 128) != 0 || lstat(path, &st) != 0) {
        fprintf(stderr, "loopsec: forward: %s: %s\n", path, strerror(errno));
        if (lfd >= 0)
            close(lfd);
        return 1;
    }
    int sigfd = cli_signals_open();
    if (sigfd < 0) {
        close(lfd);
        unlink(path);
        return 1;
    }
    if (cli_verbose)
        fprintf(stderr, "loopsec: forward: listening on %s\n", path);
    for (;;) {
        struct pollfd pf[2] = {{sigfd, POLLIN, 0},
                               {stopping || children >= FORWARD_MAX ? -1 : lfd,
                                POLLIN, 0}};
        if (poll(pf, 2, stopping ? 200 : -1) < 0 && errno != EINTR) {
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
            while (waitpid(-1, NULL, WNOHANG) > 0)
                children--;
        }
        if (stopping && (children == 0 || cli_now_ms() >= drain_deadline))
            break;
        if (pf[1].fd < 0 || pf[1].revents == 0)
            continue;
        int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0)
            continue;
        pid_t pid = fork();
        if (pid == 0) {
            cli_signals_close();
            close(lfd);
            _exit(carry(cfd, t, o, timeout));
        }
        if (pid > 0)
            children++;
        else
            cli_abort_fd(cfd);
        close(cfd);
    }
    close(lfd);
    /* Remove the socket only if the name is still ours. */
    struct stat now;
    if (lstat(path, &now) == 0 && now.st_ino == st.st_ino &&
        now.st_dev == st.st_dev)
        unlink(path);
    cli_signals_close();
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
        rc = cli_common_arg("forward", CLI_OPT_TLS | CLI_OPT_127 |
                                           CLI_OPT_TICKET | CLI_OPT_TIMEOUT,
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
