/*
 * Spawning a helper, the parent's side of the two ways a parent and the
 * process it starts meet without racing for a port or leaking the secret:
 *
 *   - lsec_spawn: the parent listens (one-shot), starts the helper with the
 *     ticket on an inherited pipe and waits for its authenticated connection,
 *     its death or the timeout, whichever comes first.
 *   - lsec_spawn_listening: the helper listens first and announces its ticket
 *     on a pipe the parent gave it; the parent then connects.
 *
 * The helper's side is inherit.c.  Tickets cross process boundaries only
 * through pipes, never through argv or the environment (docs/SECURITY.md),
 * and every buffer that held one is wiped before it goes out of scope.
 * Also here: fork/exec (only async-signal-safe calls in the child) and the
 * helper handle (lsec_helper_*).
 */
#include "internal.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* The descriptor number a helper finds its ticket (or announce) pipe on. */
#define CHILD_FD 3
#define CHILD_FD_TEXT "3"

/* After the helper died, how long a connection that had already arrived may
 * take to finish its handshake: the helper may have connected and exited. */
#define GRACE_MS 200

/* lsec__ticket_read_fd's check: has the helper died while we waited? */
static int helper_gone(void *arg)
{
    lsec_helper *h = arg;

    return lsec__helper_exited(h)
               ? lsec__helper_fail_exited(h, "before announcing")
               : 0;
}

/* ------------------------------------------------------------------------ */
/* Starting a helper                                                         */

/*
 * Find argv[0] the way execvp would, but in the parent, so that the child
 * runs nothing but async-signal-safe calls and so that "no such program" is
 * reported before anything is started.
 */
static int resolve_program(const char *name, char *out, size_t outlen)
{
    const char *path, *p;

    if (strchr(name, '/') != NULL) {
        if (strlen(name) >= outlen)
            return lsec__fail(LSEC_EINVAL, "program path is too long");
        strcpy(out, name);
        return 0;
    }
    path = getenv("PATH");
    if (path == NULL || path[0] == '\0')
        path = "/usr/local/bin:/usr/bin:/bin";
    for (p = path;; p++) {
        const char *end = strchr(p, ':');
        size_t dlen = end != NULL ? (size_t)(end - p) : strlen(p);
        struct stat st;
        int n;

        /* An empty PATH element means the current directory. */
        if (dlen == 0)
            n = snprintf(out, outlen, "%s", name);
        else
            n = snprintf(out, outlen, "%.*s/%s", (int)dlen, p, name);
        if (n > 0 && (size_t)n < outlen && stat(out, &st) == 0 &&
            S_ISREG(st.st_mode) && access(out, X_OK) == 0)
            return 0;
        if (end == NULL)
            break;
        p = end;
    }
    return lsec__fail(LSEC_ENOTFOUND,
                      "cannot execute %.200s: No such file in PATH", name);
}

/*
 * The helper's environment: ours without any LOOPSEC_*_FD left over from
 * our own start, plus `assign` ("LOOPSEC_TICKET_FD=3").  Only the number of
 * the descriptor goes into the environment, never the ticket.
 */
static char **build_env(const char *assign)
{
    size_t n = 0, k = 0;
    char **envp;

    for (char **e = environ; e != NULL && *e != NULL; e++)
        n++;
    envp = calloc(n + 2, sizeof(*envp));
    if (envp == NULL)
        return NULL;
    for (char **e = environ; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, LSEC_ENV_TICKET_FD "=", sizeof(LSEC_ENV_TICKET_FD)) ==
                0 ||
            strncmp(*e, LSEC_ENV_ANNOUNCE_FD "=",
                    sizeof(LSEC_ENV_ANNOUNCE_FD)) == 0)
            continue;
        envp[k++] = *e;
    }
    envp[k++] = (char *)assign;
    envp[k] = NULL;
    return envp;
}

struct child_plan {
    const char *path;
    char *const *argv;
    char *const *envp;
    int pass_fd;  /* becomes CHILD_FD in the helper */
    int err_fd;   /* CLOEXEC pipe: the exec errno, or EOF on success */
    pid_t parent; /* getpid() before fork, for the PDEATHSIG check */
    bool pdeathsig;
    long max_fd;   /* fallback bound when close_range is unavailable */
    sigset_t mask; /* the caller's signal mask, restored before exec */
};

/*
 * Runs in the child between fork and exec: only async-signal-safe calls
 * (no malloc, no stdio, no locks), since another thread of the parent may
 * have held any lock at the moment of fork.
 */
static void child_exec(const struct child_plan *c) __attribute__((noreturn));

static void child_exec(const struct child_plan *c)
{
    int err_fd = c->err_fd;
    int e;

    if (c->pdeathsig) {
        /* SIGKILL when the parent (thread) dies, and if it already died
         * before prctl took effect, go now: we were reparented. */
        if (lsec__sys_pdeathsig_kill() != 0)
            goto fail;
        if (getppid() != c->parent)
            _exit(127);
    }
    /* Free CHILD_FD for the pass-through pipe. */
    if (err_fd == CHILD_FD) {
        err_fd = fcntl(err_fd, F_DUPFD_CLOEXEC, CHILD_FD + 1);
        if (err_fd < 0)
            _exit(127);
    }
    if (c->pass_fd != CHILD_FD) {
        if (dup2(c->pass_fd, CHILD_FD) < 0)
            goto fail;
    }
    /* Only CHILD_FD crosses exec: clear its close-on-exec flag... */
    if (fcntl(CHILD_FD, F_SETFD, 0) != 0)
        goto fail;
    /* ...and mark every other descriptor above it close-on-exec, including
     * ones the application opened without O_CLOEXEC.  err_fd stays open
     * until exec succeeds, which closes it. */
    lsec__sys_cloexec_from(CHILD_FD + 1, c->max_fd);
    /* The parent's handlers must not run in the child; exec would reset
     * them anyway, this closes the window before it.  Ignored signals stay
     * ignored, as exec keeps them. */
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler != SIG_DFL &&
            sa.sa_handler != SIG_IGN) {
            memset(&sa, 0, sizeof(sa));
            sa.sa_handler = SIG_DFL;
            (void)sigaction(sig, &sa, NULL);
        }
    }
    (void)sigprocmask(SIG_SETMASK, &c->mask, NULL);
    execve(c->path, c->argv, c->envp);
fail:
    e = errno;
    (void)!write(err_fd, &e, sizeof(e));
    _exit(127);
}

/*
 * Fork and exec the helper with `pass_fd` as its descriptor CHILD_FD and
 * `assign` in its environment.  Returns once exec has succeeded (or
 * failed: LSEC_ENOTFOUND / LSEC_ECHILD with the reason).
 */
static int start_child(const char *const argv[], const lsec_opts *o,
                       int pass_fd, const char *assign, int64_t deadline,
                       lsec_helper **out)
{
    char path[LSEC_PATH_MAX];
    struct child_plan plan;
    struct rlimit rl;
    sigset_t all;
    lsec_helper *h;
    int errp[2], rc, e = 0;
    ssize_t n;
    pid_t pid;

    *out = NULL;
    rc = resolve_program(argv[0], path, sizeof(path));
    if (rc != 0)
        return rc;
    h = calloc(1, sizeof(*h));
    if (h == NULL)
        return lsec__fail(LSEC_ENOMEM, "out of memory");
    h->pidfd = -1;
    h->survives = (o->flags & LSEC_OPT_HELPER_SURVIVES) != 0;

    memset(&plan, 0, sizeof(plan));
    plan.path = path;
    plan.argv = (char *const *)argv;
    plan.envp = build_env(assign);
    plan.pass_fd = pass_fd;
    plan.parent = getpid();
    plan.pdeathsig = !h->survives;
    plan.max_fd = getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
                          rl.rlim_cur != RLIM_INFINITY &&
                          rl.rlim_cur < (rlim_t)(1 << 20)
                      ? (long)rl.rlim_cur
                      : (1L << 20);
    if (plan.envp == NULL) {
        free(h);
        return lsec__fail(LSEC_ENOMEM, "out of memory");
    }
    rc = lsec__pipe_cloexec(errp);
    if (rc != 0) {
        free((void *)plan.envp);
        free(h);
        return rc;
    }
    plan.err_fd = errp[1];

    /* Block every signal around fork so that no handler of the caller runs
     * in the child before it has reset them; the caller's mask is restored
     * in both processes right after. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &plan.mask);
    pid = fork();
    if (pid == 0)
        child_exec(&plan);
    e = errno;
    pthread_sigmask(SIG_SETMASK, &plan.mask, NULL);
    free((void *)plan.envp);
    close(errp[1]);
    if (pid < 0) {
        close(errp[0]);
        free(h);
        return lsec__fail_errno(LSEC_EIO, e, "fork");
    }
    h->pid = pid;
    /* The pidfd lets poll wake the moment the helper exits. */
    h->pidfd = lsec__sys_pidfd_open(pid);
    if (h->pidfd >= 0 && lsec__fd_lift(&h->pidfd) != 0) {
        close(h->pidfd);
        h->pidfd = -1;
    }

    /* Wait for exec: the error pipe closes on success, or carries errno. */
    for (;;) {
        struct pollfd p = {.fd = errp[0], .events = POLLIN};
        int left = lsec__remaining(deadline);
        int r = lsec__io.poll(&p, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0) {
            close(errp[0]);
            lsec__helper_abort(h);
            return lsec__fail(LSEC_ETIMEDOUT, "helper %.200s did not start",
                              lsec__shown(argv[0]));
        }
        do {
            n = read(errp[0], &e, sizeof(e));
        } while (n < 0 && errno == EINTR);
        break;
    }
    close(errp[0]);
    if (n == (ssize_t)sizeof(e)) {
        lsec__helper_abort(h);
        if (e == ENOENT)
            return lsec__fail(LSEC_ENOTFOUND,
                              "cannot execute %.200s: No such file",
                              lsec__shown(argv[0]));
        return lsec__fail_errno(LSEC_ECHILD, e, "cannot execute %.200s",
                                lsec__shown(argv[0]));
    }
    lsec__log(LSEC_LOG_DEBUG, "started helper %.200s as pid %d",
              lsec__shown(argv[0]), (int)pid);
    *out = h;
    return 0;
}

static int check_spawn_args(const char *const argv[], lsec_helper **helper,
                            lsec_channel **chan)
{
    if (helper != NULL)
        *helper = NULL;
    if (chan != NULL)
        *chan = NULL;
    if (argv == NULL || argv[0] == NULL || argv[0][0] == '\0' ||
        helper == NULL || chan == NULL)
        return lsec__fail(LSEC_EINVAL, "spawn: bad arguments");
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Parent listens, helper connects back                                      */

/*
 * Wait for the helper's authenticated connection.  While nobody has
 * connected, poll sleeps on the listener and the pidfd together, so a helper
 * that dies is noticed at once; once a connection has arrived, lsec_accept
 * drives its handshake in short slices with a check of the helper between.
 */
static int await_connection(lsec_helper *h, lsec_listener *l, int64_t deadline,
                            int timeout_ms, lsec_channel **out)
{
    bool arrived = false;
    int rc;

    for (;;) {
        int left = lsec__remaining(deadline);

        if (!arrived) {
            struct pollfd p[2] = {
                {.fd = lsec_listener_fd(l), .events = POLLIN},
                {.fd = h->pidfd, .events = POLLIN},
            };
            unsigned long np = h->pidfd >= 0 ? 2 : 1;
            int r =
                lsec__io.poll(p, np, h->pidfd >= 0 ? left : lsec__slice(left));
            if (r < 0 && errno != EINTR)
                return lsec__fail_errno(LSEC_EIO, errno, "poll");
            if (r > 0 && p[0].revents != 0)
                arrived = true;
        }
        if (arrived) {
            rc = lsec_accept(l, lsec__slice(left), out);
            if (rc == 0)
                return 0;
            if (rc != LSEC_ETIMEDOUT && rc != LSEC_EAGAIN)
                return rc;
        }
        if (lsec__helper_exited(h)) {
            /* It may have connected, said its piece and exited: take a
             * connection that was already on its way. */
            if (arrived && lsec_accept(l, GRACE_MS, out) == 0)
                return 0;
            return lsec__helper_fail_exited(h, "before connecting");
        }
        if (lsec__remaining(deadline) == 0)
            return lsec__fail(LSEC_ETIMEDOUT,
                              "helper did not connect within %d ms",
                              timeout_ms);
    }
}

int lsec_spawn(const char *const argv[], const lsec_opts *o, int timeout_ms,
               lsec_helper **helper, lsec_channel **chan)
{
    char ticket[LSEC_TICKET_MAX + 1];
    lsec_listener *l = NULL;
    lsec_helper *h = NULL;
    lsec_opts opts;
    int64_t deadline;
    int p[2], rc;
    size_t len;

    lsec__clear_detail();
    if ((rc = check_spawn_args(argv, helper, chan)) != 0 ||
        (rc = lsec__call_begin(o, timeout_ms, &opts, &deadline)) != 0)
        return rc;
    /* One-shot: the listener exists for this one helper only. */
    opts.max_accepts = 1;
    rc = lsec_listen("127.0.0.1:0", &opts, &l);
    if (rc != 0)
        return rc;
    rc = lsec__ticket_line(lsec__listener_ticket(l), ticket, &len);
    if (rc != 0)
        goto out;
    rc = lsec__pipe_cloexec(p);
    if (rc != 0)
        goto out;
    /* The ticket goes into the pipe before the helper exists (a ticket is
     * far below PIPE_BUF, so this never blocks and is atomic), and the
     * write end is closed before fork: the helper only ever holds the read
     * end, and reads EOF right after the ticket.  We hold the read end,
     * so this write cannot raise SIGPIPE. */
    if (lsec__write_all(p[1], ticket, len) != 0) {
        rc = lsec__fail_errno(LSEC_EIO, errno, "cannot write the ticket pipe");
        close(p[0]);
        close(p[1]);
        goto out;
    }
    close(p[1]);
    rc = start_child(argv, &opts, p[0], LSEC_ENV_TICKET_FD "=" CHILD_FD_TEXT,
                     deadline, &h);
    close(p[0]);
    if (rc != 0)
        goto out;
    rc = await_connection(h, l, deadline, timeout_ms, chan);
out:
    lsec__wipe(ticket, sizeof(ticket));
    /* The channel outlives the listener; nobody else may connect now. */
    lsec_listener_close(l);
    if (rc != 0) {
        lsec__helper_abort(h);
        *chan = NULL;
        return rc;
    }
    *helper = h;
    return 0;
}

int lsec_spawn_listening(const char *const argv[], const lsec_opts *o,
                         int timeout_ms, lsec_helper **helper,
                         lsec_channel **chan)
{
    char buf[LSEC_TICKET_MAX + 1];
    lsec_helper *h = NULL;
    lsec__ticket t;
    lsec_opts opts;
    int64_t deadline;
    size_t len = 0;
    int p[2], rc;

    lsec__clear_detail();
    if ((rc = check_spawn_args(argv, helper, chan)) != 0 ||
        (rc = lsec__call_begin(o, timeout_ms, &opts, &deadline)) != 0)
        return rc;
    rc = lsec__pipe_cloexec(p);
    if (rc != 0)
        return rc;
    rc = start_child(argv, &opts, p[1], LSEC_ENV_ANNOUNCE_FD "=" CHILD_FD_TEXT,
                     deadline, &h);
    /* Only the helper holds the write end now, so its death is EOF here. */
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        return rc;
    }
    rc = lsec__ticket_read_fd(p[0], h->pidfd, helper_gone, h, deadline, buf,
                              &len);
    close(p[0]);
    if (rc == 1) {
        /* EOF: usually the helper died; give its exit a moment to show. */
        struct pollfd pp = {.fd = h->pidfd, .events = POLLIN};
        if (h->pidfd >= 0)
            (void)lsec__io.poll(&pp, 1, GRACE_MS);
        else
            (void)lsec__io.poll(NULL, 0, GRACE_MS);
        rc = lsec__helper_exited(h)
                 ? lsec__helper_fail_exited(h, "before announcing")
                 : lsec__fail(LSEC_EPROTO,
                              "helper closed its announce descriptor "
                              "without announcing");
    }
    if (rc == 0) {
        rc = lsec__ticket_parse(buf, len, opts.flags & LSEC_ADDR_ALLOW_127_8,
                                &t);
        lsec__wipe(buf, sizeof(buf));
        if (rc == 0) {
            rc = lsec__connect_ticket(&t, &opts, lsec__remaining(deadline),
                                      chan);
            lsec__ticket_wipe(&t);
            /* A helper that died during the handshake says more than
             * "connection refused". */
            if (rc != 0 && rc != LSEC_ETIMEDOUT && lsec__helper_exited(h))
                rc = lsec__helper_fail_exited(h, "while the parent connected");
        }
    }
    if (rc != 0) {
        lsec__helper_abort(h);
        *chan = NULL;
        return rc;
    }
    *helper = h;
    return 0;
}
