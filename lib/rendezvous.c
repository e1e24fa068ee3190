/*
 * Rendezvous: how two processes meet without racing for a port and without
 * leaking the secret.
 *
 *   - lsec_spawn: the parent listens (one-shot), starts the helper with the
 *     ticket on an inherited pipe and waits for its authenticated connection,
 *     its death or the timeout, whichever comes first.
 *   - lsec_spawn_listening: the helper listens first and announces its ticket
 *     on a pipe the parent gave it; the parent then connects.
 *   - Connection files for unrelated processes: written atomically, 0600,
 *     never through a symlink; read only after checking the opened file.
 *
 * Tickets cross process boundaries only through pipes and 0600 files, never
 * through argv or the environment (SECURITY-RULES rule 5), and every buffer
 * that held one is wiped before it goes out of scope.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* The descriptor number a helper finds its ticket (or announce) pipe on. */
#define CHILD_FD 3
#define CHILD_FD_TEXT "3"

/* Longest wait between two checks of the helper when no pidfd can wake us. */
#define SLICE_MS 10
/* After the helper died, how long a connection that had already arrived may
 * take to finish its handshake: the helper may have connected and exited. */
#define GRACE_MS 200

struct lsec_helper {
    pid_t pid;
    int pidfd;     /* -1 when pidfd_open is unavailable (Linux < 5.3) */
    bool reaped;   /* once true, pid may belong to someone else: never use */
    bool survives; /* LSEC_OPT_HELPER_SURVIVES */
    int status;    /* wait status, valid once reaped */
    bool lost;     /* reaped by someone else: status unknown */
};

/* ------------------------------------------------------------------------ */
/* Small utilities                                                           */

static int clamp_slice(int left)
{
    if (left < 0 || left > SLICE_MS)
        return SLICE_MS;
    return left;
}

/* Move a descriptor above stdin/stdout/stderr, so that a parent that runs
 * with 0-2 closed never hands its ticket pipe to the helper as stdin. */
static int lift_fd(int *fd)
{
    int nfd;

    if (*fd > 2)
        return 0;
    nfd = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
    if (nfd < 0)
        return -1;
    close(*fd);
    *fd = nfd;
    return 0;
}

static int cloexec_pipe(int p[2])
{
    if (pipe2(p, O_CLOEXEC) != 0)
        return lsec__fail_errno(lsec__sys_code(errno, LSEC_EIO), errno,
                                "cannot create a pipe");
    if (lift_fd(&p[0]) != 0 || lift_fd(&p[1]) != 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return lsec__fail_errno(LSEC_EIO, e, "cannot move a pipe above fd 2");
    }
    return 0;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * write_all to a pipe whose reader may be gone, without SIGPIPE: the library
 * never raises it.  SIGPIPE is blocked in this thread for the write only,
 * and one that the write itself raised is consumed before the mask is
 * restored (unless one was already pending: that one is the caller's).
 * Nothing else of the process's signal state is touched.
 */
static int write_nosigpipe(int fd, const char *buf, size_t len)
{
    sigset_t pipe_set, old, pending;
    bool was_pending;
    int rc, e;

    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    if (pthread_sigmask(SIG_BLOCK, &pipe_set, &old) != 0)
        return write_all(fd, buf, len);
    sigemptyset(&pending);
    was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
    rc = write_all(fd, buf, len);
    e = errno;
    if (rc != 0 && e == EPIPE && !was_pending) {
        const struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return rc;
}

/* Does `s` hold a run of 32 or more base64url characters (a secret is 43,
 * a PSK 64 hex digits; a connection file's name has a 16-digit id)? */
static bool has_secret_run(const char *s)
{
    size_t run = 0;

    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        bool b64 = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                   (c >= '0' && c <= '9') || c == '-' || c == '_';
        run = b64 ? run + 1 : 0;
        if (run >= 32)
            return true;
    }
    return false;
}

/*
 * A path (or program name) as it may appear in a detail.  A caller who
 * passes a ticket, a secret or a PSK where a path belongs must not find it
 * echoed in lsec_last_detail(), so anything that looks like one is
 * withheld.
 */
static const char *shown(const char *path)
{
    if (strcasestr(path, "loopsec:") != NULL ||
        strcasestr(path, "secret=") != NULL)
        return "(withheld: it looks like a ticket)";
    if (has_secret_run(path))
        return "(withheld: it looks like a secret)";
    return path;
}

/* "exited with status 3", "killed by signal 9". */
static void describe_status(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d%s", WTERMSIG(status),
                 WCOREDUMP(status) ? " (core dumped)" : "");
    else
        snprintf(buf, len, "ended with wait status 0x%x", status);
}

/*
 * Strictly parse the descriptor number in environment variable `name`:
 * plain decimal, no sign, no leading zero, at least 3 (0-2 are stdio and
 * never carry a ticket).  LSEC_ENOTFOUND when unset, LSEC_EINVAL otherwise.
 */
static int env_fd(const char *name, int *fd)
{
    const char *s = getenv(name);
    long v = 0;

    *fd = -1;
    if (s == NULL)
        return lsec__fail(LSEC_ENOTFOUND,
                          "%s is not set: this process was not started by "
                          "lsec_spawn",
                          name);
    if (s[0] < '1' || s[0] > '9' || strlen(s) > 9)
        return lsec__fail(LSEC_EINVAL, "%s is not a descriptor number", name);
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return lsec__fail(LSEC_EINVAL, "%s is not a descriptor number",
                              name);
        v = v * 10 + (*p - '0');
    }
    if (v < 3)
        return lsec__fail(LSEC_EINVAL, "%s names a standard descriptor (%ld)",
                          name, v);
    *fd = (int)v;
    return 0;
}

/*
 * Take the descriptor named in environment variable `name`: parse it,
 * remove the variable (it is spent either way: a grandchild must not find
 * it), check that the descriptor is open and is a pipe or a socket (never a
 * terminal or a file that stdout happens to share, so a stray variable
 * cannot make us read a tty or print a ticket into a log), and make it
 * close-on-exec at once, so that nothing this process starts inherits it.
 */
static int take_inherited_fd(const char *name, int *out)
{
    struct stat st;
    int fd, rc;

    rc = env_fd(name, &fd);
    /* Spent either way, a malformed value too: a grandchild must not find
     * it (unset does nothing when it was not set). */
    unsetenv(name);
    if (rc != 0)
        return rc;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
        return lsec__fail(LSEC_ENOTFOUND,
                          "descriptor %d named in %s is not open", fd, name);
    if (fstat(fd, &st) != 0)
        return lsec__fail_errno(LSEC_EIO, errno, "fstat of descriptor %d", fd);
    if (!S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode))
        return lsec__fail(LSEC_EINVAL,
                          "descriptor %d named in %s is not a pipe", fd, name);
    *out = fd;
    return 0;
}

/* The listener's ticket and a newline, the form that travels on pipes and
 * in files.  The caller wipes `buf`. */
static int ticket_line(const lsec__ticket *t, char buf[LSEC_TICKET_MAX + 1],
                       size_t *len)
{
    int rc = lsec__ticket_format(t, buf, LSEC_TICKET_MAX);

    if (rc != 0)
        return rc;
    *len = strlen(buf);
    buf[(*len)++] = '\n';
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Helper handles                                                            */

/* Has the helper exited?  Reaps it if so.  Never blocks. */
static bool helper_exited(lsec_helper *h)
{
    int st;
    pid_t r;

    if (h->reaped)
        return true;
    do {
        r = waitpid(h->pid, &st, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == h->pid) {
        h->reaped = true;
        h->status = st;
        return true;
    }
    if (r < 0 && errno == ECHILD) {
        /* The application reaped it (SIGCHLD ignored, or a waitpid(-1)
         * loop): it is gone, but its status is lost to us. */
        h->reaped = true;
        h->lost = true;
        return true;
    }
    return false;
}

/* Block until the helper is reaped (used after SIGKILL). */
static void helper_reap(lsec_helper *h)
{
    int st;
    pid_t r;

    if (h->reaped)
        return;
    do {
        r = waitpid(h->pid, &st, 0);
    } while (r < 0 && errno == EINTR);
    h->reaped = true;
    if (r == h->pid)
        h->status = st;
    else
        h->lost = true;
}

static int helper_signal(lsec_helper *h, int sig)
{
    /* A pidfd names exactly our child even if it was reaped behind our
     * back and its pid reused; kill(2) is the fallback. */
    if (h->pidfd >= 0 &&
        syscall(SYS_pidfd_send_signal, h->pidfd, sig, NULL, 0) == 0)
        return 0;
    if (h->pidfd >= 0 && errno != ENOSYS)
        return -1;
    return kill(h->pid, sig);
}

static void helper_destroy(lsec_helper *h)
{
    if (h->pidfd >= 0)
        close(h->pidfd);
    free(h);
}

/* Failure path: the helper must not outlive a failed lsec_spawn. */
static void helper_abort(lsec_helper *h)
{
    if (h == NULL)
        return;
    if (!h->reaped) {
        (void)helper_signal(h, SIGKILL);
        helper_reap(h);
    }
    helper_destroy(h);
}

/* The detail for a helper that is gone, with its status. */
static int fail_exited(const lsec_helper *h, const char *what)
{
    char how[64];

    if (h->lost)
        return lsec__fail(LSEC_ECHILD,
                          "helper (pid %d) exited %s; its status was "
                          "collected elsewhere",
                          (int)h->pid, what);
    describe_status(h->status, how, sizeof(how));
    return lsec__fail(LSEC_ECHILD, "helper (pid %d) %s %s", (int)h->pid, how,
                      what);
}

int lsec_helper_pid(const lsec_helper *h)
{
    lsec__clear_detail();
    if (h == NULL)
        return lsec__fail(LSEC_EINVAL, "helper is NULL");
    return (int)h->pid;
}

int lsec_helper_wait(lsec_helper *h, int timeout_ms, int *status)
{
    int64_t deadline;

    lsec__clear_detail();
    if (status != NULL)
        *status = 0;
    if (h == NULL || status == NULL)
        return lsec__fail(LSEC_EINVAL, "helper_wait: bad arguments");
    if (lsec__timeout_check(timeout_ms) != 0)
        return LSEC_EINVAL;
    deadline = lsec__deadline(timeout_ms);
    for (;;) {
        int left;

        if (helper_exited(h)) {
            if (h->lost)
                return lsec__fail(LSEC_ECHILD,
                                  "helper (pid %d) was reaped elsewhere; its "
                                  "status is unknown",
                                  (int)h->pid);
            *status = h->status;
            return 0;
        }
        left = lsec__remaining(deadline);
        if (left == 0)
            return timeout_ms == 0
                       ? lsec__fail(LSEC_EAGAIN, "helper is still running")
                       : lsec__fail(LSEC_ETIMEDOUT,
                                    "helper still running after %d ms",
                                    timeout_ms);
        if (h->pidfd >= 0) {
            /* The pidfd becomes readable when the helper exits. */
            struct pollfd p = {.fd = h->pidfd, .events = POLLIN};
            if (lsec__io.poll(&p, 1, left) < 0 && errno != EINTR)
                return lsec__fail_errno(LSEC_EIO, errno, "poll on helper");
        } else {
            (void)lsec__io.poll(NULL, 0, clamp_slice(left));
        }
    }
}

int lsec_helper_kill(lsec_helper *h, int sig)
{
    lsec__clear_detail();
    if (h == NULL || sig < 0)
        return lsec__fail(LSEC_EINVAL, "helper_kill: bad arguments");
    /* Once reaped, the pid may already name an unrelated process. */
    if (h->reaped)
        return lsec__fail(LSEC_ECHILD, "helper (pid %d) has already exited",
                          (int)h->pid);
    if (helper_signal(h, sig) != 0) {
        int e = errno;
        if (e == EINVAL)
            return lsec__fail(LSEC_EINVAL, "bad signal %d", sig);
        if (e == ESRCH)
            return lsec__fail(LSEC_ECHILD, "helper (pid %d) has exited",
                              (int)h->pid);
        return lsec__fail_errno(LSEC_EIO, e, "cannot signal helper %d",
                                (int)h->pid);
    }
    return 0;
}

void lsec_helper_free(lsec_helper *h)
{
    lsec__clear_detail();
    if (h == NULL)
        return;
    if (!h->reaped && !h->survives) {
        (void)helper_signal(h, SIGKILL);
        helper_reap(h);
    } else if (!h->reaped) {
        /* A surviving helper keeps running; collect it only if it is
         * already gone, so that it does not linger as a zombie. */
        (void)helper_exited(h);
    }
    helper_destroy(h);
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
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
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
    if (syscall(SYS_close_range, CHILD_FD + 1, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        for (long fd = CHILD_FD + 1; fd < c->max_fd; fd++)
            (void)fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    }
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
    rc = cloexec_pipe(errp);
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
    /* The pidfd lets poll wake the moment the helper exits.  It is safe to
     * take after fork: an unreaped child's pid cannot be reused. */
    h->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (h->pidfd >= 0 && lift_fd(&h->pidfd) != 0) {
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
            helper_abort(h);
            return lsec__fail(LSEC_ETIMEDOUT, "helper %.200s did not start",
                              shown(argv[0]));
        }
        do {
            n = read(errp[0], &e, sizeof(e));
        } while (n < 0 && errno == EINTR);
        break;
    }
    close(errp[0]);
    if (n == (ssize_t)sizeof(e)) {
        helper_abort(h);
        if (e == ENOENT)
            return lsec__fail(LSEC_ENOTFOUND,
                              "cannot execute %.200s: No such file",
                              shown(argv[0]));
        return lsec__fail_errno(LSEC_ECHILD, e, "cannot execute %.200s",
                                shown(argv[0]));
    }
    lsec__log(LSEC_LOG_DEBUG, "started helper %.200s as pid %d", shown(argv[0]),
              (int)pid);
    *out = h;
    return 0;
}

static int check_spawn_args(const char *const argv[], int timeout_ms,
                            lsec_helper **helper, lsec_channel **chan)
{
    if (helper != NULL)
        *helper = NULL;
    if (chan != NULL)
        *chan = NULL;
    if (argv == NULL || argv[0] == NULL || argv[0][0] == '\0' ||
        helper == NULL || chan == NULL)
        return lsec__fail(LSEC_EINVAL, "spawn: bad arguments");
    if (lsec__timeout_check(timeout_ms) != 0)
        return LSEC_EINVAL;
    return lsec__init();
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
                lsec__io.poll(p, np, h->pidfd >= 0 ? left : clamp_slice(left));
            if (r < 0 && errno != EINTR)
                return lsec__fail_errno(LSEC_EIO, errno, "poll");
            if (r > 0 && p[0].revents != 0)
                arrived = true;
        }
        if (arrived) {
            rc = lsec_accept(l, clamp_slice(left), out);
            if (rc == 0)
                return 0;
            if (rc != LSEC_ETIMEDOUT && rc != LSEC_EAGAIN)
                return rc;
        }
        if (helper_exited(h)) {
            /* It may have connected, said its piece and exited: take a
             * connection that was already on its way. */
            if (arrived && lsec_accept(l, GRACE_MS, out) == 0)
                return 0;
            return fail_exited(h, "before connecting");
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
    rc = check_spawn_args(argv, timeout_ms, helper, chan);
    if (rc != 0)
        return rc;
    deadline = lsec__deadline(timeout_ms);
    if ((rc = lsec__opts_resolve(o, &opts)) != 0)
        return rc;
    /* One-shot: the listener exists for this one helper only. */
    opts.max_accepts = 1;
    rc = lsec_listen("127.0.0.1:0", &opts, &l);
    if (rc != 0)
        return rc;
    rc = ticket_line(lsec__listener_ticket(l), ticket, &len);
    if (rc != 0)
        goto out;
    rc = cloexec_pipe(p);
    if (rc != 0)
        goto out;
    /* The ticket goes into the pipe before the helper exists (a ticket is
     * far below PIPE_BUF, so this never blocks and is atomic), and the
     * write end is closed before fork: the helper only ever holds the read
     * end, and reads EOF right after the ticket.  We hold the read end,
     * so this write cannot raise SIGPIPE. */
    if (write_all(p[1], ticket, len) != 0) {
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
        helper_abort(h);
        *chan = NULL;
        return rc;
    }
    *helper = h;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Reading a ticket from a descriptor                                        */

/*
 * Read "TICKET\n" (or TICKET then EOF) from `fd` within `deadline`, at most
 * LSEC_TICKET_MAX - 1 ticket bytes.  If `h` is given, its death ends the
 * wait.  0 with buf NUL-terminated and the newline stripped; on failure the
 * buffer is wiped.
 */
static int read_ticket_fd(int fd, lsec_helper *h, int64_t deadline,
                          char buf[LSEC_TICKET_MAX + 1], size_t *len)
{
    size_t got = 0;
    int rc = 0;

    for (;;) {
        struct pollfd p[2] = {
            {.fd = fd, .events = POLLIN},
            {.fd = h != NULL ? h->pidfd : -1, .events = POLLIN},
        };
        int left = lsec__remaining(deadline);
        int wait = h != NULL && h->pidfd < 0 ? clamp_slice(left) : left;
        int r = lsec__io.poll(p, h != NULL ? 2 : 1, wait);
        ssize_t n;
        char *nl;

        if (r < 0 && errno != EINTR) {
            rc = lsec__fail_errno(LSEC_EIO, errno, "poll");
            break;
        }
        if (r > 0 && p[0].revents != 0) {
            n = read(fd, buf + got, LSEC_TICKET_MAX - got);
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (n < 0) {
                rc = lsec__fail_errno(LSEC_EIO, errno, "read ticket");
                break;
            }
            if (n == 0) {
                if (got > 0)
                    break; /* a ticket without its newline */
                rc = 1;    /* EOF before any byte: the caller decides */
                break;
            }
            got += (size_t)n;
            nl = memchr(buf, '\n', got);
            if (nl != NULL) {
                got = (size_t)(nl - buf);
                break;
            }
            if (got >= LSEC_TICKET_MAX) {
                rc = lsec__fail(LSEC_EBADTICKET, "ticket too long");
                break;
            }
            continue;
        }
        if (h != NULL && helper_exited(h)) {
            rc = fail_exited(h, "before announcing");
            break;
        }
        if (lsec__remaining(deadline) == 0) {
            rc = lsec__fail(LSEC_ETIMEDOUT, "no ticket arrived in time");
            break;
        }
    }
    if (rc != 0) {
        lsec__wipe(buf, LSEC_TICKET_MAX + 1);
        *len = 0;
        return rc;
    }
    buf[got] = '\0';
    *len = got;
    return 0;
}

int lsec_connect_inherited(const lsec_opts *o, int timeout_ms,
                           lsec_channel **out)
{
    char buf[LSEC_TICKET_MAX + 1];
    lsec__ticket t;
    lsec_opts opts;
    int64_t deadline;
    size_t len = 0;
    int fd, rc;

    lsec__clear_detail();
    if (out != NULL)
        *out = NULL;
    if (out == NULL)
        return lsec__fail(LSEC_EINVAL, "connect_inherited: bad arguments");
    if (lsec__timeout_check(timeout_ms) != 0)
        return LSEC_EINVAL;
    rc = lsec__init();
    if (rc != 0)
        return rc;
    deadline = lsec__deadline(timeout_ms);
    if ((rc = lsec__opts_resolve(o, &opts)) != 0)
        return rc;
    rc = take_inherited_fd(LSEC_ENV_TICKET_FD, &fd);
    if (rc != 0)
        return rc;
    rc = read_ticket_fd(fd, NULL, deadline, buf, &len);
    close(fd);
    if (rc == 1)
        rc = lsec__fail(LSEC_EBADTICKET,
                        "the ticket descriptor was empty (already read?)");
    if (rc != 0)
        return rc;
    rc = lsec__ticket_parse(buf, len, opts.flags & LSEC_ADDR_ALLOW_127_8, &t);
    lsec__wipe(buf, sizeof(buf));
    if (rc != 0)
        return rc;
    rc = lsec__connect_ticket(&t, &opts, lsec__remaining(deadline), out);
    lsec__ticket_wipe(&t);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Helper listens, parent connects                                           */

int lsec_listener_announce(const lsec_listener *l)
{
    char buf[LSEC_TICKET_MAX + 1];
    size_t len;
    int fd, rc;

    lsec__clear_detail();
    if (l == NULL)
        return lsec__fail(LSEC_EINVAL, "listener is NULL");
    rc = take_inherited_fd(LSEC_ENV_ANNOUNCE_FD, &fd);
    if (rc != 0)
        return rc;
    rc = ticket_line(lsec__listener_ticket(l), buf, &len);
    if (rc == 0 && write_nosigpipe(fd, buf, len) != 0)
        rc = lsec__fail_errno(errno == EPIPE ? LSEC_ECLOSED : LSEC_EIO, errno,
                              "cannot announce the ticket");
    lsec__wipe(buf, sizeof(buf));
    close(fd);
    return rc;
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
    rc = check_spawn_args(argv, timeout_ms, helper, chan);
    if (rc != 0)
        return rc;
    deadline = lsec__deadline(timeout_ms);
    if ((rc = lsec__opts_resolve(o, &opts)) != 0)
        return rc;
    rc = cloexec_pipe(p);
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
    rc = read_ticket_fd(p[0], h, deadline, buf, &len);
    close(p[0]);
    if (rc == 1) {
        /* EOF: usually the helper died; give its exit a moment to show. */
        struct pollfd pp = {.fd = h->pidfd, .events = POLLIN};
        if (h->pidfd >= 0)
            (void)lsec__io.poll(&pp, 1, GRACE_MS);
        else
            (void)lsec__io.poll(NULL, 0, GRACE_MS);
        rc = helper_exited(h)
                 ? fail_exited(h, "before announcing")
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
            if (rc != 0 && rc != LSEC_ETIMEDOUT && helper_exited(h))
                rc = fail_exited(h, "while the parent connected");
        }
    }
    if (rc != 0) {
        helper_abort(h);
        *chan = NULL;
        return rc;
    }
    *helper = h;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Connection files                                                          */

/*
 * Open the default directory $XDG_RUNTIME_DIR/loopsec, creating it 0700, and
 * insist that it is ours and closed to everyone else.  There is no fallback
 * when XDG_RUNTIME_DIR is unset: every shared alternative (/tmp) is open to
 * pre-creation by other users, so the caller must name a path instead.
 */
/*
 * The checks on an opened directory that must be the user's own and closed
 * to everyone else: `fd` is kept on success, closed on failure.  `label`
 * prefixes the name in the detail; `advice` says what to do.
 */
static int private_dir(int fd, const char *label, const char *path,
                       const char *advice)
{
    struct stat st;

    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return lsec__fail_errno(LSEC_EIO, e, "fstat %s", shown(path));
    }
    if (st.st_uid != geteuid()) {
        close(fd);
        return lsec__fail(LSEC_EPERM,
                          "%s%s is owned by uid %u, not by you (uid %u): %s",
                          label, shown(path), (unsigned)st.st_uid,
                          (unsigned)geteuid(), advice);
    }
    if ((st.st_mode & 077) != 0) {
        close(fd);
        return lsec__fail(LSEC_EPERM,
                          "%s%s is open to others (mode 0%03o): it must be "
                          "0700 (chmod 700 it), or %s",
                          label, shown(path), (unsigned)(st.st_mode & 0777),
                          advice);
    }
    return fd;
}

#define XDG_ADVICE                                                             \
    "point XDG_RUNTIME_DIR at your own directory (mode 0700), or give the "    \
    "connection file an explicit path"

static int open_default_dir(char *dirpath, size_t len)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int xfd, fd, n;

    if (xdg == NULL || xdg[0] == '\0')
        return lsec__fail(LSEC_EINVAL,
                          "XDG_RUNTIME_DIR is not set: give the connection "
                          "file an explicit path");
    if (xdg[0] != '/')
        return lsec__fail(LSEC_EINVAL,
                          "XDG_RUNTIME_DIR is not an absolute path");
    n = snprintf(dirpath, len, "%s/loopsec", xdg);
    if (n < 0 || (size_t)n >= len)
        return lsec__fail(LSEC_EINVAL, "XDG_RUNTIME_DIR is too long");
    /* XDG_RUNTIME_DIR itself must be the user's own 0700 directory, not a
     * symlink (issue 13 item 10): in a directory another user owns or may
     * write to, that user can rename loopsec/ away and plant files in its
     * place.  Everything after works through this descriptor. */
    xfd = open(xdg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (xfd < 0) {
        int e = errno;
        if (e == ELOOP || e == ENOTDIR)
            return lsec__fail(LSEC_EPERM,
                              "XDG_RUNTIME_DIR %s is a symlink or not a "
                              "directory: " XDG_ADVICE,
                              shown(xdg));
        return lsec__fail_errno(e == ENOENT ? LSEC_ENOTFOUND : LSEC_EIO, e,
                                "cannot open XDG_RUNTIME_DIR %s", shown(xdg));
    }
    if ((xfd = private_dir(xfd, "XDG_RUNTIME_DIR ", xdg, XDG_ADVICE)) < 0)
        return xfd;
    if (mkdirat(xfd, "loopsec", 0700) != 0 && errno != EEXIST) {
        int e = errno;
        close(xfd);
        return lsec__fail_errno(LSEC_EIO, e, "cannot create %s",
                                shown(dirpath));
    }
    /* O_NOFOLLOW: a symlink planted in place of the directory is refused,
     * and everything after works on this descriptor, not on the name. */
    fd =
        openat(xfd, "loopsec", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close(xfd);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP || e == ENOTDIR)
            return lsec__fail(LSEC_EPERM, "%s is not a directory (symlink?)",
                              shown(dirpath));
        return lsec__fail_errno(LSEC_EIO, e, "cannot open %s", shown(dirpath));
    }
    /* Never repaired: a loopsec/ open to others was made so by someone. */
    return private_dir(fd, "", dirpath, "remove it to have it made afresh");
}

/*
 * Open the directory of an explicit path.  Its owner is the user's choice,
 * but a directory that others may write to without the sticky bit lets
 * them swap the file under the reader: refused.
 */
static int open_given_dir(const char *dirpath)
{
    struct stat st;
    int fd = open(dirpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0) {
        int e = errno;
        return lsec__fail_errno(e == ENOENT ? LSEC_ENOTFOUND : LSEC_EIO, e,
                                "cannot open directory %s", shown(dirpath));
    }
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return lsec__fail_errno(LSEC_EIO, e, "fstat %s", shown(dirpath));
    }
    if ((st.st_mode & 022) != 0 && (st.st_mode & S_ISVTX) == 0) {
        close(fd);
        return lsec__fail(LSEC_EPERM,
                          "directory %s is writable by others (mode 0%03o)",
                          shown(dirpath), (unsigned)(st.st_mode & 0777));
    }
    return fd;
}

int lsec__connfile_write(const lsec__ticket *t, const char *path, char *written,
                         size_t writtenlen)
{
    return lsec__connfile_write_ref(t, path, written, writtenlen, NULL);
}

void lsec__connfile_remove(lsec__connfile_ref *ref)
{
    struct stat st;

    if (ref == NULL || ref->dfd < 0)
        return;
    /* Only the file this listener created: the same inode, looked up
     * through the directory it was written in (which follows that
     * directory if it was renamed), never a file planted under the name. */
    if (ref->ino != 0 &&
        fstatat(ref->dfd, ref->base, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        (uint64_t)st.st_dev == ref->dev && (uint64_t)st.st_ino == ref->ino &&
        (int64_t)st.st_ctim.tv_sec == ref->ctime_s &&
        (int64_t)st.st_ctim.tv_nsec == ref->ctime_ns)
        (void)unlinkat(ref->dfd, ref->base, 0);
    close(ref->dfd);
    ref->dfd = -1;
}

int lsec__connfile_write_ref(const lsec__ticket *t, const char *path,
                             char *written, size_t writtenlen,
                             lsec__connfile_ref *ref)
{
    struct stat fst;
    char dirpath[LSEC_PATH_MAX], full[LSEC_PATH_MAX], tmp[64 + NAME_MAX];
    char buf[LSEC_TICKET_MAX + 1];
    const char *base;
    char idhex[2 * LSEC__ID_BYTES + 1];
    uint8_t rnd[8];
    char rndhex[sizeof(rnd) * 2 + 1];
    int dfd, fd, rc, n;
    size_t len;

    if (ref != NULL)
        ref->dfd = -1;
    if (t == NULL)
        return lsec__fail(LSEC_EINVAL, "connection file: bad arguments");
    if (path == NULL) {
        dfd = open_default_dir(dirpath, sizeof(dirpath));
        if (dfd < 0)
            return dfd;
        if (lsec__hex_encode(idhex, sizeof(idhex), t->id, sizeof(t->id)) != 0) {
            close(dfd);
            return lsec__fail(LSEC_EINVAL, "cannot encode the listener id");
        }
        n = snprintf(full, sizeof(full), "%s/%s.ticket", dirpath, idhex);
        base = strrchr(full, '/') + 1;
    } else {
        const char *slash = strrchr(path, '/');
        size_t dlen;

        n = snprintf(full, sizeof(full), "%s", path);
        if (path[0] == '\0' || n < 0 || (size_t)n >= sizeof(full))
            return lsec__fail(LSEC_EINVAL, "connection file path is empty or "
                                           "too long");
        base = slash != NULL ? slash + 1 : path;
        if (base[0] == '\0' || strcmp(base, ".") == 0 ||
            strcmp(base, "..") == 0)
            return lsec__fail(LSEC_EINVAL,
                              "connection file path %s names a directory",
                              shown(path));
        dlen = slash == NULL ? 0 : (slash == path ? 1 : (size_t)(slash - path));
        if (dlen == 0)
            snprintf(dirpath, sizeof(dirpath), ".");
        else
            snprintf(dirpath, sizeof(dirpath), "%.*s", (int)dlen, path);
        dfd = open_given_dir(dirpath);
        if (dfd < 0)
            return dfd;
        base = full + (base - path);
    }
    if (n < 0 || (size_t)n >= sizeof(full) || strlen(base) > NAME_MAX - 32) {
        close(dfd);
        return lsec__fail(LSEC_EINVAL, "connection file path is too long");
    }
    if (written != NULL && strlen(full) >= writtenlen) {
        close(dfd);
        return lsec__fail(LSEC_EMSGSIZE,
                          "connection file path does not fit the buffer");
    }

    rc = ticket_line(t, buf, &len);
    if (rc != 0) {
        close(dfd);
        return rc;
    }

    /* A fresh temp file beside the target: O_EXCL|O_NOFOLLOW means nothing
     * pre-planted (file or symlink) is ever opened; rename then replaces
     * whatever is at the target (a planted symlink included) atomically,
     * without following it. */
    lsec__random(rnd, sizeof(rnd));
    (void)lsec__hex_encode(rndhex, sizeof(rndhex), rnd, sizeof(rnd));
    snprintf(tmp, sizeof(tmp), ".%s.%s.tmp", base, rndhex);
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                0600);
    if (fd < 0) {
        int e = errno;
        lsec__wipe(buf, sizeof(buf));
        close(dfd);
        return lsec__fail_errno(e == EACCES ? LSEC_EPERM : LSEC_EIO, e,
                                "cannot create a file in %s", shown(dirpath));
    }
    /* Whatever the umask says (and it can only remove bits), 0600 exactly. */
    if (fchmod(fd, 0600) != 0 || write_all(fd, buf, len) != 0 ||
        fsync(fd) != 0) {
        int e = errno;
        lsec__wipe(buf, sizeof(buf));
        close(fd);
        (void)unlinkat(dfd, tmp, 0);
        close(dfd);
        return lsec__fail_errno(LSEC_EIO, e, "cannot write %s", shown(full));
    }
    lsec__wipe(buf, sizeof(buf));
    if (fstat(fd, &fst) != 0)
        memset(&fst, 0, sizeof(fst));
    close(fd);
    if (renameat(dfd, tmp, dfd, base) != 0) {
        int e = errno;
        (void)unlinkat(dfd, tmp, 0);
        close(dfd);
        /* EPERM/EACCES: another user's file in a sticky directory (like
         * /tmp), which only its owner may replace -- a permission refusal,
         * not an I/O error (issue 13 item 11). */
        if (e == EPERM || e == EACCES)
            return lsec__fail_errno(LSEC_EPERM, e,
                                    "cannot replace %s: it belongs to "
                                    "another user (sticky directory?); "
                                    "choose another path",
                                    shown(full));
        return lsec__fail_errno(e == EISDIR ? LSEC_EPERM : LSEC_EIO, e,
                                "cannot put the connection file at %s",
                                shown(full));
    }
    /* Make the rename itself durable; failure here loses nothing now. */
    (void)fsync(dfd);
    if (ref != NULL) {
        /* Kept for lsec__connfile_remove: the directory, the inode and its
         * change time as the rename left it (an inode number alone can be
         * reused by a file created after ours was removed). */
        struct stat now;
        ref->dfd = dfd;
        ref->dev = (uint64_t)fst.st_dev;
        ref->ino = (uint64_t)fst.st_ino;
        if (fstatat(dfd, base, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
            now.st_dev == fst.st_dev && now.st_ino == fst.st_ino) {
            ref->ctime_s = (int64_t)now.st_ctim.tv_sec;
            ref->ctime_ns = (int64_t)now.st_ctim.tv_nsec;
        } else {
            ref->ino = 0; /* not ours any more: never remove */
        }
        snprintf(ref->base, sizeof(ref->base), "%s", base);
    } else {
        close(dfd);
    }
    if (written != NULL)
        snprintf(written, writtenlen, "%s", full);
    return 0;
}

static const char *kind_of(mode_t m)
{
    if (S_ISDIR(m))
        return "a directory";
    if (S_ISFIFO(m))
        return "a fifo";
    if (S_ISSOCK(m))
        return "a socket";
    if (S_ISCHR(m) || S_ISBLK(m))
        return "a device";
    return "not a regular file";
}

/* The checks on the opened file, each refusal with its own detail. */
static int check_connfile(const char *path, const struct stat *st)
{
    unsigned mode = (unsigned)(st->st_mode & 0777);

    /* A directory is a slip (`--ticket-file /tmp`), not an attack: said as
     * what it is (issue 12 item 6). */
    if (S_ISDIR(st->st_mode))
        return lsec__fail(LSEC_EINVAL,
                          "%s is a directory, not a connection file: give "
                          "the path of the file",
                          shown(path));
    if (!S_ISREG(st->st_mode))
        return lsec__fail(LSEC_EPERM, "connection file %s is %s", shown(path),
                          kind_of(st->st_mode));
    /* Another name for the file may sit in a directory someone else
     * controls, or be the name its owner means to remove (issue 13 item
     * 11): a connection file has exactly one. */
    if (st->st_nlink != 1)
        return lsec__fail(LSEC_EPERM,
                          "connection file %s has %lu hard links, expected "
                          "1: write it afresh",
                          shown(path), (unsigned long)st->st_nlink);
    if (st->st_uid != geteuid())
        return lsec__fail(LSEC_EPERM,
                          "connection file %s is owned by uid %u, not by us "
                          "(uid %u)",
                          shown(path), (unsigned)st->st_uid,
                          (unsigned)geteuid());
    if ((mode & 044) != 0)
        return lsec__fail(LSEC_EPERM,
                          "connection file %s is readable by others "
                          "(mode 0%03o)",
                          shown(path), mode);
    if ((mode & 022) != 0)
        return lsec__fail(LSEC_EPERM,
                          "connection file %s is writable by others "
                          "(mode 0%03o)",
                          shown(path), mode);
    if ((mode & 011) != 0)
        return lsec__fail(LSEC_EPERM,
                          "connection file %s is accessible by others "
                          "(mode 0%03o)",
                          shown(path), mode);
    if (st->st_size > LSEC_TICKET_MAX)
        return lsec__fail(LSEC_EPERM,
                          "connection file %s is too large (%lld bytes, at "
                          "most %d)",
                          shown(path), (long long)st->st_size, LSEC_TICKET_MAX);
    return 0;
}

int lsec__connfile_read(const char *path, unsigned addr_flags,
                        lsec__ticket *out)
{
    char buf[LSEC_TICKET_MAX + 2];
    struct stat st;
    size_t got = 0;
    int fd, rc;

    /* On every failure the result is all zero (STYLE.md "Errors"), also
     * when the file is refused before it is parsed. */
    if (out != NULL)
        lsec__ticket_wipe(out);
    if (path == NULL || path[0] == '\0' || out == NULL)
        return lsec__fail(LSEC_EINVAL, "connection file: bad arguments");
    /* A common slip: the ticket itself instead of the file holding it. */
    if (strncasecmp(path, "loopsec:", 8) == 0)
        return lsec__fail(LSEC_EINVAL, "a ticket was given where the path of "
                                       "a connection file belongs");
    /* O_NOFOLLOW: a symlink is refused, never followed; O_NONBLOCK: a fifo
     * planted at the path cannot hang us in open or read.  Every check
     * below is on this descriptor, so the file cannot be swapped between
     * check and read. */
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return lsec__fail(LSEC_ENOTFOUND, "no connection file at %s",
                              shown(path));
        if (e == ELOOP)
            return lsec__fail(LSEC_EPERM, "connection file %s is a symlink",
                              shown(path));
        if (e == EACCES)
            return lsec__fail_errno(LSEC_EPERM, e, "connection file %s",
                                    shown(path));
        return lsec__fail_errno(LSEC_EIO, e, "cannot open connection file %s",
                                shown(path));
    }
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return lsec__fail_errno(LSEC_EIO, e, "fstat %s", shown(path));
    }
    rc = check_connfile(path, &st);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    /* Read one byte beyond the limit to catch a file that grew since
     * fstat. */
    while (got < sizeof(buf) - 1) {
        ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = lsec__fail_errno(LSEC_EIO, errno, "cannot read %s",
                                  shown(path));
            break;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (rc == 0 && got > LSEC_TICKET_MAX)
        rc = lsec__fail(LSEC_EPERM, "connection file %s is too large",
                        shown(path));
    if (rc == 0) {
        /* One trailing newline is the file format; nothing else may
         * follow the ticket. */
        if (got > 0 && buf[got - 1] == '\n')
            got--;
        if (got == 0)
            rc = lsec__fail(LSEC_EBADTICKET, "connection file %s is empty",
                            shown(path));
        else
            rc = lsec__ticket_parse(buf, got, addr_flags, out);
    }
    lsec__wipe(buf, sizeof(buf));
    return rc;
}

int lsec_connect_file(const char *path, const lsec_opts *o, int timeout_ms,
                      lsec_channel **out)
{
    lsec__ticket t;
    lsec_opts opts;
    int64_t deadline;
    int rc;

    lsec__clear_detail();
    if (out != NULL)
        *out = NULL;
    if (path == NULL || out == NULL)
        return lsec__fail(LSEC_EINVAL, "connect_file: bad arguments");
    if (lsec__timeout_check(timeout_ms) != 0)
        return LSEC_EINVAL;
    rc = lsec__init();
    if (rc != 0)
        return rc;
    deadline = lsec__deadline(timeout_ms);
    if ((rc = lsec__opts_resolve(o, &opts)) != 0)
        return rc;
    rc = lsec__connfile_read(path, opts.flags & LSEC_ADDR_ALLOW_127_8, &t);
    if (rc != 0)
        return rc;
    rc = lsec__connect_ticket(&t, &opts, lsec__remaining(deadline), out);
    lsec__ticket_wipe(&t);
    return rc;
}
