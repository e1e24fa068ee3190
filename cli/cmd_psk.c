/*
 * `loopsec psk TICKET`: the TLS 1.3 external PSK and identity derived from a
 * tls-mode ticket, so that a stock `openssl s_client -tls1_3 -psk HEX
 * -psk_identity ID` (or s_server) can talk to a loopsec peer.
 *
 * The PSK is a credential like the ticket: it is printed because the user
 * asked for it, and nowhere else.  TICKET "-" reads the ticket from stdin,
 * which keeps it out of argv (and so out of /proc/PID/cmdline); a ticket
 * given in argv is scrubbed from our argv at once.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static int usage_psk(FILE *f, int status)
{
    fprintf(f, "usage: loopsec psk (TICKET | -)\n"
               "  print the TLS 1.3 PSK and identity of a tls-mode ticket:\n"
               "    psk HEX\n"
               "    identity ID\n"
               "  for openssl s_client -tls1_3 -psk HEX -psk_identity ID;\n"
               "  '-' reads the ticket from stdin (keeps it out of argv)\n");
    return status;
}

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

int cmd_psk(int argc, char **argv)
{
    char ticket[LSEC_TICKET_MAX + 2]; /* room for "\r\n" from stdin */
    char hex[2 * LSEC_SECRET_BYTES + 1];
    char identity[64];
    int rc, status = 1;

    if (argc == 2 &&
        (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
        return usage_psk(stdout, 0);
    if (argc != 2)
        return usage_psk(stderr, 2);
    if (strcmp(argv[1], "-") == 0) {
        if (read_ticket_line(ticket, sizeof(ticket)) != 0) {
            fprintf(stderr, "loopsec: psk: no ticket line on stdin\n");
            goto out;
        }
    } else {
        size_t n = strlen(argv[1]);
        if (n >= sizeof(ticket)) {
            fprintf(stderr, "loopsec: psk: the ticket is too long\n");
            explicit_bzero(argv[1], n);
            goto out;
        }
        memcpy(ticket, argv[1], n + 1);
        /* Others can read our command line: keep the copy, wipe argv. */
        explicit_bzero(argv[1], n);
    }
    rc = lsec_ticket_psk(ticket, hex, sizeof(hex), identity, sizeof(identity));
    if (rc != 0) {
        cli_error("psk", rc);
        goto out;
    }
    printf("psk %s\nidentity %s\n", hex, identity);
    status = fflush(stdout) == 0 ? 0 : 1;
out:
    explicit_bzero(ticket, sizeof(ticket));
    explicit_bzero(hex, sizeof(hex));
    return status;
}
