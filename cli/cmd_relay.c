/*
 * loopsec listen / loopsec connect: one authenticated channel relayed to
 * stdin/stdout (pump.c).
 *
 * A ticket is a credential.  `listen` writes it to a 0600 connection file
 * (--ticket-file) or to a descriptor (--ticket-fd, default stderr), never
 * to stdout, which carries only data.  `connect` takes it from a
 * connection file, an inherited descriptor or LOOPSEC_TICKET, never from
 * argv: every user can read /proc/PID/cmdline.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

int cmd_listen(int argc, char **argv)
{
    cli_args a;
    int rc;
    lsec_listener *l = NULL;
    lsec_channel *ch = NULL;

    cli_args_init(&a, -1);
    a.o.max_accepts = 1; /* one peer, then nobody else may even try */
    for (int i = 1; i < argc; i++) {
        rc = cli_common_arg("listen",
                            CLI_OPT_TLS | CLI_OPT_127 | CLI_OPT_BIND |
                                CLI_OPT_TICKET | CLI_OPT_TIMEOUT | CLI_OPT_EOF,
                            argc, argv, &i, &a);
        if (rc == 0)
            return cli_bad_option("listen", argv[i]);
        if (rc != 1)
            return rc;
    }
    if (a.file != NULL && a.fdval != NULL)
        return cli_usage_error("listen", "give only one of --ticket-file and "
                                         "--ticket-fd");
    rc = lsec_listen(a.bind, &a.o, &l);
    if (rc != 0)
        return cli_addr_error("listen", a.bind, rc);
    rc = cli_give_ticket(l, "listen", a.file, a.fdval);
    if (rc != 0) {
        lsec_listener_close(l);
        return rc;
    }
    rc = lsec_accept(l, a.timeout, &ch);
    /* One-shot: the listener has done its job; close it (and remove the
     * connection file) before relaying. */
    lsec_listener_close(l);
    if (rc != 0) {
        cli_error("accept", rc);
        return 1;
    }
    return cli_relay(ch, a.eof_wait);
}

int cmd_connect(int argc, char **argv)
{
    bool inherited = false;
    cli_args a;
    int rc;
    lsec_channel *ch = NULL;
    cli_ticket t;

    cli_args_init(&a, 10000);
    for (int i = 1; i < argc; i++) {
        /* --tls refuses auth-mode tickets. */
        rc = cli_common_arg("connect",
                            CLI_OPT_TLS | CLI_OPT_127 | CLI_OPT_TICKET |
                                CLI_OPT_TIMEOUT | CLI_OPT_EOF,
                            argc, argv, &i, &a);
        if (rc == 1)
            continue;
        if (rc != 0)
            return rc;
        if (strcmp(argv[i], "--inherited") == 0)
            inherited = true;
        else if (argv[i][0] != '-')
            return cli_refuse_ticket_arg("connect", argv[i]);
        else
            return cli_bad_option("connect", argv[i]);
    }
    if (inherited) {
        if (a.file != NULL || a.fdval != NULL)
            return cli_usage_error("connect", "--inherited takes no other "
                                              "ticket source");
        rc = lsec_connect_inherited(&a.o, a.timeout, &ch);
    } else {
        if ((rc = cli_ticket_resolve("connect", a.file, a.fdval, &t)) != 0)
            return rc;
        rc = cli_ticket_connect(&t, &a.o, a.timeout, &ch);
        cli_ticket_wipe(&t);
    }
    if (rc != 0) {
        cli_error("connect", rc);
        return 1;
    }
    return cli_relay(ch, a.eof_wait);
}
