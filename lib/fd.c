/*
 * Plain descriptors (pipes and files, never sockets: those go through the
 * seam in io.c): close-on-exec pipes kept above the standard descriptors,
 * writing everything, and writing without SIGPIPE.  Portable POSIX (the
 * atomic close-on-exec pipe is the platform's, sys.h).
 */
#include "internal.h"
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int lsec__fd_lift(int *fd)
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

int lsec__pipe_cloexec(int p[2])
{
    return lsec__pipe_made(lsec__sys_pipe_cloexec(p), p);
}

int lsec__pipe_made(int rc, int p[2])
{
    if (rc != 0)
        return lsec__fail_errno(lsec__sys_code(errno, LSEC_EIO), errno,
                                "cannot create a pipe");
    if (lsec__fd_lift(&p[0]) != 0 || lsec__fd_lift(&p[1]) != 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return lsec__fail_errno(LSEC_EIO, e, "cannot move a pipe above fd 2");
    }
    return 0;
}

int lsec__write_all(int fd, const char *buf, size_t len)
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
 * SIGPIPE is blocked in this thread for the write only, and one that the
 * write itself raised is consumed before the mask is restored (unless one
 * was already pending: that one is the caller's).  Nothing else of the
 * process's signal state is touched.
 */
void lsec__sigpipe_block(lsec__sigpipe_guard *g)
{
    struct sigaction sa;
    sigset_t pending;

    /* Ignored (as by most servers and the CLI): the kernel raises nothing,
     * and one query costs less than blocking and restoring. */
    g->blocked = false;
    g->was_pending = false;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
        return;
    sigemptyset(&g->pipe_set);
    sigaddset(&g->pipe_set, SIGPIPE);
    g->blocked = pthread_sigmask(SIG_BLOCK, &g->pipe_set, &g->old) == 0;
    sigemptyset(&pending);
    g->was_pending = g->blocked && sigpending(&pending) == 0 &&
                     sigismember(&pending, SIGPIPE);
}

void lsec__sigpipe_restore(lsec__sigpipe_guard *g, bool raised)
{
    int e = errno;

    if (!g->blocked)
        return;
    if (raised && !g->was_pending) {
        const struct timespec zero = {0, 0};
        while (sigtimedwait(&g->pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
    errno = e;
}

int lsec__write_nosigpipe(int fd, const char *buf, size_t len)
{
    lsec__sigpipe_guard g;
    int rc, e;

    lsec__sigpipe_block(&g);
    rc = lsec__write_all(fd, buf, len);
    e = errno;
    lsec__sigpipe_restore(&g, rc != 0 && e == EPIPE);
    errno = e;
    return rc;
}

void lsec__fdmove_free(lsec__fdmove *m)
{
    if (m == NULL)
        return;
    for (int i = 0; i < 2; i++) {
        if (m->tx[i] >= 0)
            close(m->tx[i]);
        if (m->rx[i] >= 0)
            close(m->rx[i]);
    }
    free(m);
}
