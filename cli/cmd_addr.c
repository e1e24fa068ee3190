/*
 * `loopsec check ADDR` and `loopsec who PORT`: the address validator and the
 * port-owner lookup, for scripts and for people asking "what is using
 * 127.0.0.1:62893?".
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static int usage_check(FILE *f, int status)
{
    fprintf(f, "usage: loopsec check [--allow-127-8] ADDR\n"
               "  exit 0 and print the normal form if ADDR may be used;\n"
               "  otherwise exit 1 with one line on stderr saying why\n"
               "  --allow-127-8   accept all of 127.0.0.0/8 (default: only\n"
               "                  127.0.0.1 and ::1)\n");
    return status;
}

static int usage_who(FILE *f, int status)
{
    fprintf(f, "usage: loopsec who PORT\n"
               "  who listens on a loopback TCP port: pid, user, command\n");
    return status;
}

int cmd_check(int argc, char **argv)
{
    unsigned flags = 0;
    const char *addr = NULL;
    char norm[LSEC_ADDR_MAX];
    bool opts_done = false;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (!opts_done && strcmp(argv[i], "--allow-127-8") == 0) {
            flags |= LSEC_ADDR_ALLOW_127_8;
        } else if (!opts_done && strcmp(argv[i], "--") == 0) {
            opts_done = true;
        } else if (!opts_done && (strcmp(argv[i], "--help") == 0 ||
                                  strcmp(argv[i], "-h") == 0)) {
            return usage_check(stdout, 0);
        } else if (!opts_done && argv[i][0] == '-' && argv[i][1] != '\0') {
            return cli_bad_option("check", argv[i]);
        } else if (addr == NULL) {
            addr = argv[i];
        } else {
            return cli_usage_error("check", "exactly one ADDR expected");
        }
    }
    if (addr == NULL)
        return cli_usage_error("check", "exactly one ADDR expected");
    rc = lsec_addr_check(addr, flags, norm, sizeof(norm));
    if (rc != 0) {
        /* The detail quotes the address only after the library checked it
         * is printable, so the raw argument is never echoed here. */
        return cli_addr_error("check", addr, rc);
    }
    printf("%s\n", norm);
    return 0;
}

/* PORT: plain decimal 1..65535, nothing else. */
static int parse_port(const char *s)
{
    long v = 0;
    size_t n = strlen(s);

    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v >= 1 && v <= 65535 ? (int)v : -1;
}

int cmd_who(int argc, char **argv)
{
    lsec_port_owner ow;
    int port, rc;

    if (argc == 2 &&
        (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
        return usage_who(stdout, 0);
    if (argc != 2)
        return usage_who(stderr, 2);
    port = parse_port(argv[1]);
    if (port < 0) {
        fprintf(stderr, "loopsec: who: PORT must be a number 1..65535\n");
        return 2;
    }
    rc = lsec_port_owner_get(port, &ow);
    if (rc != 0) {
        cli_error("who", rc);
        return 1;
    }
    /* The library already replaced non-printable bytes in the command
     * name a process chose for itself. */
    if (ow.pid > 0)
        printf("port %d: pid %d user %s uid %lld command %s\n", port,
               (int)ow.pid, ow.user[0] != '\0' ? ow.user : "?",
               (long long)ow.uid, ow.command[0] != '\0' ? ow.command : "?");
    else
        printf("port %d: pid ? user %s uid %lld command ? (the process is "
               "not visible to this user)\n",
               port, ow.user[0] != '\0' ? ow.user : "?", (long long)ow.uid);
    return 0;
}
