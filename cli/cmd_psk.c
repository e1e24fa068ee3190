/*
 * `loopsec psk`: the TLS 1.3 external PSK and identity derived from a
 * tls-mode ticket, so that a stock `openssl s_client -tls1_3 -psk HEX
 * -psk_identity ID` (or s_server) can talk to a loopsec peer.
 *
 * The PSK is a credential like the ticket: it is printed because the user
 * asked for it, and nowhere else.  The ticket comes from --ticket-file,
 * --ticket-fd, LOOPSEC_TICKET or stdin ("-"); never from argv.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One line from stdin into `buf`, without its line ending.  0, or -1 when
 * the line is empty or too long. */
static int read_ticket_line(char *buf, size_t cap)
{
    size_t n;

    if (fgets(buf, (int)cap, stdin) == NULL)
        return -1;
    n = strcspn(buf, "\r\n");
    if (buf[n] == '\0' && n == cap - 1)
        return -1; /* no line end within LSEC_TICKET_MAX: not a ticket */
    buf[n] = '\0';
    return n > 0 ? 0 : -1;
}

/* A connection file, with lsec_connect_file's checks: not a symlink, a
 * regular file of ours, no group/other bits, small. */
static int read_ticket_file(const char *path, char *buf, size_t cap)
{
    struct stat st;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

    if (fd < 0) {
        fprintf(stderr, "loopsec: psk: --ticket-file: %s\n", strerror(errno));
        return 1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & 077) != 0 || st.st_size >= (off_t)cap) {
        close(fd);
        fprintf(stderr, "loopsec: psk: --ticket-file must be a regular file "
                        "of yours with mode 0600 and one ticket in it\n");
        return 1;
    }
    n = read(fd, buf, cap - 1);
    close(fd);
    if (n <= 0) {
        fprintf(stderr, "loopsec: psk: the ticket file is empty\n");
        return 1;
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

int cmd_psk(int argc, char **argv)
{
    const char *file = NULL, *fdval = NULL;
    bool from_stdin = false;
    cli_ticket t;
    char hex[2 * LSEC_SECRET_BYTES + 1];
    char identity[64];
    int rc, status = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ticket-file") == 0 && i + 1 < argc)
            file = argv[++i];
        else if (strcmp(argv[i], "--ticket-fd") == 0 && i + 1 < argc)
            fdval = argv[++i];
        else if (strcmp(argv[i], "-") == 0)
            from_stdin = true;
        else if (argv[i][0] != '-')
            return cli_refuse_ticket_arg("psk", argv[i]);
        else
            return cli_bad_option("psk", argv[i]);
    }
    if (from_stdin && (file != NULL || fdval != NULL))
        return cli_usage_error("psk", "give only one ticket source");
    if (from_stdin) {
        memset(&t, 0, sizeof(t));
        char line[LSEC_TICKET_MAX + 2]; /* room for "\r\n" */
        rc = read_ticket_line(line, sizeof(line));
        if (rc == 0 && strlen(line) < sizeof(t.text))
            memcpy(t.text, line, strlen(line) + 1);
        else
            rc = -1;
        explicit_bzero(line, sizeof(line));
        if (rc != 0) {
            fprintf(stderr, "loopsec: psk: no ticket line on stdin\n");
            return 1;
        }
    } else {
        if ((rc = cli_ticket_resolve("psk", file, fdval, &t)) != 0)
            return rc;
        if (t.file != NULL &&
            read_ticket_file(t.file, t.text, sizeof(t.text)) != 0)
            goto out;
    }
    rc = lsec_ticket_psk(t.text, hex, sizeof(hex), identity, sizeof(identity));
    if (rc != 0) {
        cli_error("psk", rc);
        goto out;
    }
    printf("psk %s\nidentity %s\n", hex, identity);
    status = fflush(stdout) == 0 ? 0 : 1;
out:
    cli_ticket_wipe(&t);
    explicit_bzero(hex, sizeof(hex));
    return status;
}
