/*
 * `loopsec check ADDR` and `loopsec who [PORT]`: the address validator and
 * the listener lookup, for scripts and for people asking "what is using
 * 127.0.0.1:62893?" or "what here is reachable from the network?".
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
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
    fprintf(f, "usage: loopsec who [PORT]\n"
               "  without PORT: every TCP listener on a loopback or wildcard\n"
               "  address (0.0.0.0, ::), with address, pid, user, uid and\n"
               "  command; wildcard listeners are marked as reachable from\n"
               "  other hosts.  With PORT: who listens on that port\n");
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

#define WHO_WILDCARD_NOTE "(wildcard address: reachable from other hosts)"

/* The listeners, in a bounded number of tries: the set may grow between
 * counting and filling.  NULL with a message on failure. */
static lsec_port_listener *who_list(int port, size_t *n)
{
    lsec_port_listener *v = NULL;
    size_t cap = 64;

    for (int tries = 0; tries < 8; tries++) {
        lsec_port_listener *nv = realloc(v, cap * sizeof(*v));
        int rc;
        if (nv == NULL)
            break;
        v = nv;
        rc = lsec_port_listeners(port, v, cap, n);
        if (rc == 0)
            return v;
        if (rc != LSEC_EMSGSIZE) {
            cli_error("who", rc);
            free(v);
            return NULL;
        }
        cap = *n + 16;
    }
    free(v);
    fprintf(stderr, "loopsec: who: %s\n", lsec_strerror(LSEC_ENOMEM));
    return NULL;
}

int cmd_who(int argc, char **argv)
{
    lsec_port_listener *v;
    size_t n = 0;
    int port = 0;

    if (argc == 2 &&
        (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
        return usage_who(stdout, 0);
    if (argc > 2)
        return usage_who(stderr, 2);
    if (argc == 2) {
        port = parse_port(argv[1]);
        if (port < 0) {
            fprintf(stderr, "loopsec: who: PORT must be a number 1..65535\n");
            return 2;
        }
    }
    v = who_list(port, &n);
    if (v == NULL)
        return 1;
    /* The library already replaced non-printable bytes in the command
     * name a process chose for itself. */
    if (port != 0) {
        for (size_t i = 0; i < n; i++) {
            const lsec_port_listener *e = &v[i];
            const char *user = e->user[0] != '\0' ? e->user : "?";
            if (e->pid > 0)
                printf("%s: pid %d user %s uid %lld command %s", e->addr,
                       (int)e->pid, user, (long long)e->uid,
                       e->command[0] != '\0' ? e->command : "?");
            else
                printf("%s: pid ? user %s uid %lld command ? (the process "
                       "is not visible to this user)",
                       e->addr, user, (long long)e->uid);
            printf("%s\n", e->wildcard ? " " WHO_WILDCARD_NOTE : "");
        }
        free(v);
        return 0;
    }
    if (n == 0) {
        printf("no TCP listener on a loopback or wildcard address\n");
        free(v);
        return 0;
    }
    printf("%-26s %7s  %-12s %6s  %s\n", "ADDRESS", "PID", "USER", "UID",
           "COMMAND");
    for (size_t i = 0; i < n; i++) {
        const lsec_port_listener *e = &v[i];
        char pid[16];
        if (e->pid > 0)
            snprintf(pid, sizeof(pid), "%d", (int)e->pid);
        else
            snprintf(pid, sizeof(pid), "?");
        printf("%-26s %7s  %-12s %6lld  %s%s\n", e->addr, pid,
               e->user[0] != '\0' ? e->user : "?", (long long)e->uid,
               e->command[0] != '\0' ? e->command : "?",
               e->wildcard ? "  " WHO_WILDCARD_NOTE : "");
    }
    free(v);
    return 0;
}
