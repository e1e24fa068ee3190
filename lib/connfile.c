/*
 * Connection files, how unrelated processes of one user meet: the ticket
 * written atomically, 0600, never through a symlink, into a directory that
 * must be the user's own; read only after checking the opened file; removed
 * only if it is still the file that was written.  lsec_connect_file reads
 * one and connects.  Nothing here knows about listeners: listener.c calls in.
 */
#include "internal.h"
#include "testing.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
        return lsec__fail_errno(LSEC_EIO, e, "fstat %s", lsec__shown(path));
    }
    if (st.st_uid != geteuid()) {
        close(fd);
        return lsec__fail(LSEC_EPERM,
                          "%s%s is owned by uid %u, not by you (uid %u): %s",
                          label, lsec__shown(path), (unsigned)st.st_uid,
                          (unsigned)geteuid(), advice);
    }
    if ((st.st_mode & 077) != 0) {
        close(fd);
        return lsec__fail(LSEC_EPERM,
                          "%s%s is open to others (mode 0%03o): it must be "
                          "0700 (chmod 700 it), or %s",
                          label, lsec__shown(path),
                          (unsigned)(st.st_mode & 0777), advice);
    }
    return fd;
}

#define XDG_ADVICE                                                             \
    "point XDG_RUNTIME_DIR at your own directory (mode 0700), or give the "    \
    "connection file an explicit path"

/*
 * Open the default directory $XDG_RUNTIME_DIR/loopsec, creating it 0700, and
 * insist that it is ours and closed to everyone else.  There is no fallback
 * when XDG_RUNTIME_DIR is unset: every shared alternative (/tmp) is open to
 * pre-creation by other users, so the caller must name a path instead.
 */
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
     * symlink: in a directory another user owns or may
     * write to, that user can rename loopsec/ away and plant files in its
     * place.  Everything after works through this descriptor. */
    xfd = open(xdg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (xfd < 0) {
        int e = errno;
        if (e == ELOOP || e == ENOTDIR)
            return lsec__fail(LSEC_EPERM,
                              "XDG_RUNTIME_DIR %s is a symlink or not a "
                              "directory: " XDG_ADVICE,
                              lsec__shown(xdg));
        return lsec__fail_errno(e == ENOENT ? LSEC_ENOTFOUND : LSEC_EIO, e,
                                "cannot open XDG_RUNTIME_DIR %s",
                                lsec__shown(xdg));
    }
    if ((xfd = private_dir(xfd, "XDG_RUNTIME_DIR ", xdg, XDG_ADVICE)) < 0)
        return xfd;
    if (mkdirat(xfd, "loopsec", 0700) != 0 && errno != EEXIST) {
        int e = errno;
        close(xfd);
        return lsec__fail_errno(LSEC_EIO, e, "cannot create %s",
                                lsec__shown(dirpath));
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
                              lsec__shown(dirpath));
        return lsec__fail_errno(LSEC_EIO, e, "cannot open %s",
                                lsec__shown(dirpath));
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
                                "cannot open directory %s",
                                lsec__shown(dirpath));
    }
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return lsec__fail_errno(LSEC_EIO, e, "fstat %s", lsec__shown(dirpath));
    }
    if ((st.st_mode & 022) != 0 && (st.st_mode & S_ISVTX) == 0) {
        close(fd);
        return lsec__fail(LSEC_EPERM,
                          "directory %s is writable by others (mode 0%03o)",
                          lsec__shown(dirpath), (unsigned)(st.st_mode & 0777));
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
                              lsec__shown(path));
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

    rc = lsec__ticket_line(t, buf, &len);
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
                                "cannot create a file in %s",
                                lsec__shown(dirpath));
    }
    /* Whatever the umask says (and it can only remove bits), 0600 exactly. */
    if (fchmod(fd, 0600) != 0 || lsec__write_all(fd, buf, len) != 0 ||
        fsync(fd) != 0) {
        int e = errno;
        lsec__wipe(buf, sizeof(buf));
        close(fd);
        (void)unlinkat(dfd, tmp, 0);
        close(dfd);
        return lsec__fail_errno(LSEC_EIO, e, "cannot write %s",
                                lsec__shown(full));
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
         * not an I/O error. */
        if (e == EPERM || e == EACCES)
            return lsec__fail_errno(LSEC_EPERM, e,
                                    "cannot replace %s: it belongs to "
                                    "another user (sticky directory?); "
                                    "choose another path",
                                    lsec__shown(full));
        return lsec__fail_errno(e == EISDIR ? LSEC_EPERM : LSEC_EIO, e,
                                "cannot put the connection file at %s",
                                lsec__shown(full));
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
     * what it is. */
    if (S_ISDIR(st->st_mode))
        return lsec__fail(LSEC_EINVAL,
                          "%s is a directory, not a connection file: give "
                          "the path of the file",
                          lsec__shown(path));
    if (!S_ISREG(st->st_mode))
        return lsec__fail(LSEC_EPERM, "connection file %s is %s",
                          lsec__shown(path), kind_of(st->st_mode));
    /* Another name for the file may sit in a directory someone else
     * controls, or be the name its owner means to remove: a connection
     * file has exactly one. */
    if (st->st_nlink != 1)
        return lsec__fail(LSEC_EPERM,
                          "connection file %s has %lu hard links, expected "
                          "1: write it afresh",
                          lsec__shown(path), (unsigned long)st->st_nlink);
    if (st->st_uid != geteuid())
        return lsec__fail(LSEC_EPERM,
                          "connection file %s is owned by uid %u, not by us "
                          "(uid %u)",
                          lsec__shown(path), (unsigned)st->st_uid,
                          (unsigned)geteuid());
    if ((mode & 044) != 0)
        return lsec__fail(LSEC_EPERM,
                          "connection file %s is readable by others "
                          "(mode 0%03o)",
                          lsec__shown(path), mode);
    if ((mode & 022) != 0)
        return lsec__fail(LSEC_EPERM,
                          "connection file %s is writable by others "
                          "(mode 0%03o)",
                          lsec__shown(path), mode);
    if ((mode & 011) != 0)
        return lsec__fail(LSEC_EPERM,
                          "connection file %s is accessible by others "
                          "(mode 0%03o)",
                          lsec__shown(path), mode);
    if (st->st_size > LSEC_TICKET_MAX)
        return lsec__fail(LSEC_EPERM,
                          "connection file %s is too large (%lld bytes, at "
                          "most %d)",
                          lsec__shown(path), (long long)st->st_size,
                          LSEC_TICKET_MAX);
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
                              lsec__shown(path));
        if (e == ELOOP)
            return lsec__fail(LSEC_EPERM, "connection file %s is a symlink",
                              lsec__shown(path));
        if (e == EACCES)
            return lsec__fail_errno(LSEC_EPERM, e, "connection file %s",
                                    lsec__shown(path));
        return lsec__fail_errno(LSEC_EIO, e, "cannot open connection file %s",
                                lsec__shown(path));
    }
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return lsec__fail_errno(LSEC_EIO, e, "fstat %s", lsec__shown(path));
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
                                  lsec__shown(path));
            break;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (rc == 0 && got > LSEC_TICKET_MAX)
        rc = lsec__fail(LSEC_EPERM, "connection file %s is too large",
                        lsec__shown(path));
    if (rc == 0) {
        /* One trailing newline is the file format; nothing else may
         * follow the ticket. */
        if (got > 0 && buf[got - 1] == '\n')
            got--;
        if (got == 0)
            rc = lsec__fail(LSEC_EBADTICKET, "connection file %s is empty",
                            lsec__shown(path));
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
    if ((rc = lsec__call_begin(o, timeout_ms, &opts, &deadline)) != 0)
        return rc;
    rc = lsec__connfile_read(path, opts.flags & LSEC_ADDR_ALLOW_127_8, &t);
    if (rc != 0)
        return rc;
    rc = lsec__connect_ticket(&t, &opts, lsec__remaining(deadline), out);
    lsec__ticket_wipe(&t);
    return rc;
}
