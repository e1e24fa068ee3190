/*
 * Inherited descriptors: the helper's side of the two spawn patterns
 * (spawn.c is the parent's).  lsec_connect_inherited reads the ticket from
 * the pipe named in LOOPSEC_TICKET_FD; lsec_listener_announce writes the
 * listener's ticket to the pipe named in LOOPSEC_ANNOUNCE_FD.  Only the
 * descriptor's number is in the environment, never the ticket, and every
 * buffer that held one is wiped before it goes out of scope.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

int lsec__ticket_read_fd(int fd, int wake_fd, int (*gone)(void *arg), void *arg,
                         int64_t deadline, char buf[LSEC_TICKET_MAX + 1],
                         size_t *len)
{
    size_t got = 0;
    int rc = 0;

    for (;;) {
        struct pollfd p[2] = {
            {.fd = fd, .events = POLLIN},
            {.fd = gone != NULL ? wake_fd : -1, .events = POLLIN},
        };
        int left = lsec__remaining(deadline);
        int wait = gone != NULL && wake_fd < 0 ? lsec__slice(left) : left;
        int r = lsec__io.poll(p, gone != NULL ? 2 : 1, wait);
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
        if (gone != NULL && (rc = gone(arg)) != 0)
            break;
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
    if ((rc = lsec__call_begin(o, timeout_ms, &opts, &deadline)) != 0)
        return rc;
    rc = take_inherited_fd(LSEC_ENV_TICKET_FD, &fd);
    if (rc != 0)
        return rc;
    rc = lsec__ticket_read_fd(fd, -1, NULL, NULL, deadline, buf, &len);
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
    rc = lsec__ticket_line(lsec__listener_ticket(l), buf, &len);
    if (rc == 0 && lsec__write_nosigpipe(fd, buf, len) != 0)
        rc = lsec__fail_errno(errno == EPIPE ? LSEC_ECLOSED : LSEC_EIO, errno,
                              "cannot announce the ticket");
    lsec__wipe(buf, sizeof(buf));
    close(fd);
    return rc;
}
