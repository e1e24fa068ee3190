/*
 * fuzz_connfile: the connection-file reader (lsec__connfile_read in
 * lib/rendezvous.c) on a real file in a private temporary directory: the
 * fuzzer picks the content and what kind of file it is (mode bits, a
 * symlink, a fifo, a directory).
 *
 * Properties:
 *   - a file that others can read, write or enter, a symlink, a fifo, a
 *     directory, or one larger than LSEC_TICKET_MAX is refused with
 *     LSEC_EPERM whatever its content, and never hangs;
 *   - a private regular file is accepted exactly when its content, minus
 *     one trailing newline, is a ticket lsec__ticket_parse accepts, with the
 *     same result and the same code otherwise;
 *   - on failure the result is all zero and the detail is printable and
 *     carries nothing of the ticket's secret.
 */
#include "fuzz_common.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64], path[128], target[128];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (lsec__init() != 0)
        abort();
    snprintf(dir, sizeof(dir), "/tmp/lsec-fuzz-connfile-XXXXXX");
    if (mkdtemp(dir) == NULL)
        abort();
    snprintf(path, sizeof(path), "%s/conn.ticket", dir);
    snprintf(target, sizeof(target), "%s/target", dir);
    return 0;
}

/* The LLVMFuzzerInitialize of the replay driver runs once too; the
 * directory is removed at exit either way. */
__attribute__((destructor)) static void cleanup(void)
{
    if (dir[0] != '\0') {
        unlink(path);
        rmdir(path);
        unlink(target);
        rmdir(dir);
    }
}

static void write_file(const char *where, const uint8_t *p, size_t n,
                       mode_t mode)
{
    int fd = open(where, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_ASSERT(fd >= 0);
    FUZZ_ASSERT(write(fd, p, n) == (ssize_t)n);
    FUZZ_ASSERT(fchmod(fd, mode) == 0);
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const mode_t modes[] = {0600, 0400, 0700, 0644, 0640, 0604,
                                   0620, 0602, 0610, 0601, 0660, 0666};
    fz f = fz_init(data, size);
    uint8_t kind = fz_u8(&f);
    const uint8_t *content = f.p;
    size_t n = f.n;
    mode_t mode = modes[(kind >> 3) % (sizeof(modes) / sizeof(modes[0]))];
    lsec__ticket t, want;
    int rc, want_rc;
    int64_t t0;

    unlink(path);
    rmdir(path);
    unlink(target);
    switch (kind % 8) {
    case 1: /* a symlink to a private file with the content */
        write_file(target, content, n, 0600);
        FUZZ_ASSERT(symlink(target, path) == 0);
        break;
    case 2: /* a fifo nobody writes to: must not hang */
        FUZZ_ASSERT(mkfifo(path, 0600) == 0);
        break;
    case 3:
        FUZZ_ASSERT(mkdir(path, 0700) == 0);
        break;
    case 4: /* no file at all */
        break;
    default:
        write_file(path, content, n, mode);
        break;
    }

    memset(&t, 0xa5, sizeof(t));
    t0 = lsec__now_ms();
    rc = lsec__connfile_read(path, (kind & 0x80) ? LSEC_ADDR_ALLOW_127_8 : 0,
                             &t);
    FUZZ_ASSERT(lsec__now_ms() - t0 < 2000);

    if (rc != 0) {
        FUZZ_ASSERT(fz_all_zero(&t, sizeof(t)));
        FUZZ_ASSERT(lsec_last_detail()[0] != '\0');
        FUZZ_ASSERT(fz_printable(lsec_last_detail()));
    }
    switch (kind % 8) {
    case 1:
    case 2:
        FUZZ_ASSERT(rc == LSEC_EPERM);
        return 0;
    case 3: /* a directory is a slip, said as such (issue 12 item 6) */
        FUZZ_ASSERT(rc == LSEC_EINVAL);
        return 0;
    case 4:
        FUZZ_ASSERT(rc == LSEC_ENOTFOUND);
        return 0;
    default:
        break;
    }
    if ((mode & 077) != 0 || n > LSEC_TICKET_MAX) {
        FUZZ_ASSERT(rc == LSEC_EPERM);
        return 0;
    }
    /* A private regular file: the same verdict as the ticket parser on
     * the content without one trailing newline. */
    if (n > 0 && content[n - 1] == '\n')
        n--;
    if (n == 0) {
        FUZZ_ASSERT(rc == LSEC_EBADTICKET);
        return 0;
    }
    want_rc =
        lsec__ticket_parse((const char *)content, n,
                           (kind & 0x80) ? LSEC_ADDR_ALLOW_127_8 : 0, &want);
    FUZZ_ASSERT(rc == want_rc);
    if (rc == 0) {
        char b64[64];
        FUZZ_ASSERT(memcmp(t.secret, want.secret, sizeof(t.secret)) == 0 &&
                    memcmp(t.id, want.id, sizeof(t.id)) == 0 &&
                    t.mode == want.mode && t.addr.port == want.addr.port);
        FUZZ_ASSERT(lsec__b64_encode(b64, sizeof(b64), t.secret,
                                     sizeof(t.secret)) == 0);
        FUZZ_ASSERT(strstr(lsec_last_detail(), b64) == NULL);
    }
    lsec__ticket_wipe(&t);
    lsec__ticket_wipe(&want);
    return 0;
}
