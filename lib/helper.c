/*
 * The handle on a started helper process (lsec_helper_*): waiting for it,
 * signalling it, reaping it exactly once.  A pidfd, where the kernel has
 * one, names exactly our child even after its pid could be reused, and
 * wakes poll the moment it exits.  spawn.c starts helpers.
 */
#include "internal.h"
#include "sys.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* Has the helper exited?  Reaps it if so.  Never blocks. */
bool lsec__helper_exited(lsec_helper *h)
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
    if (h->pidfd >= 0 && lsec__sys_pidfd_signal(h->pidfd, sig) == 0)
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
void lsec__helper_abort(lsec_helper *h)
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
int lsec__helper_fail_exited(const lsec_helper *h, const char *what)
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

        if (lsec__helper_exited(h)) {
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
            (void)lsec__io.poll(NULL, 0, lsec__slice(left));
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
        (void)lsec__helper_exited(h);
    }
    helper_destroy(h);
}
