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
    if (lsec__sys_pipe_cloexec(p) != 0)
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
int lsec__write_nosigpipe(int fd, const char *buf, size_t len)
{
    sigset_t pipe_set, old, pending;
    bool was_pending;
    int rc, e;

    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    if (pthread_sigmask(SIG_BLOCK, &pipe_set, &old) != 0)
        return lsec__write_all(fd, buf, len);
    sigemptyset(&pending);
    was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
    rc = lsec__write_all(fd, buf, len);
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
