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
    const char *bind = "127.0.0.1:0", *file = NULL, *fdval = NULL;
    int timeout = -1, eof_wait = -1, rc;
    lsec_opts o;
    lsec_listener *l = NULL;
    lsec_channel *ch = NULL;

    lsec_opts_init(&o);
    o.max_accepts = 1; /* one peer, then nobody else may even try */
    for (int i = 1; i < argc; i++) {
        bool more = i + 1 < argc;
        if (strcmp(argv[i], "--tls") == 0) {
            o.mode = LSEC_MODE_TLS;
        } else if (strcmp(argv[i], "--allow-127-8") == 0) {
            o.flags |= LSEC_ADDR_ALLOW_127_8;
        } else if (strcmp(argv[i], "--bind") == 0 && more) {
            bind = argv[++i];
        } else if (strcmp(argv[i], "--ticket-file") == 0 && more) {
            file = argv[++i];
        } else if (strcmp(argv[i], "--ticket-fd") == 0 && more) {
            fdval = argv[++i];
        } else if (strcmp(argv[i], "--timeout") == 0 && more) {
            if ((rc = cli_duration_arg("listen", "--timeout", argv[++i],
                                       &timeout)) != 0)
                return rc;
        } else if (strcmp(argv[i], "--eof-timeout") == 0 && more) {
            if ((rc = cli_duration_arg("listen", "--eof-timeout", argv[++i],
                                       &eof_wait)) != 0)
                return rc;
        } else {
            return cli_bad_option("listen", argv[i]);
        }
    }
    if (file != NULL && fdval != NULL)
        return cli_usage_error("listen", "give only one of --ticket-file and "
                                         "--ticket-fd");
    rc = lsec_listen(bind, &o, &l);
    if (rc != 0)
        return cli_addr_error("listen", bind, rc);
    rc = cli_give_ticket(l, "listen", file, fdval);
    if (rc != 0) {
        lsec_listener_close(l);
        return rc;
    }
    rc = lsec_accept(l, timeout, &ch);
    /* One-shot: the listener has done its job; close it (and remove the
     * connection file) before relaying. */
    lsec_listener_close(l);
    if (rc != 0) {
        cli_error("accept", rc);
        return 1;
    }
    return cli_relay(ch, eof_wait);
}

int cmd_connect(int argc, char **argv)
{
    const char *file = NULL, *fdval = NULL;
    bool inherited = false;
    int timeout = 10000, eof_wait = -1, rc;
    lsec_opts o;
    lsec_channel *ch = NULL;
    cli_ticket t;

    lsec_opts_init(&o);
    for (int i = 1; i < argc; i++) {
        bool more = i + 1 < argc;
        if (strcmp(argv[i], "--tls") == 0) {
            o.mode = LSEC_MODE_TLS; /* refuse auth-mode tickets */
        } else if (strcmp(argv[i], "--allow-127-8") == 0) {
            o.flags |= LSEC_ADDR_ALLOW_127_8;
        } else if (strcmp(argv[i], "--ticket-file") == 0 && more) {
            file = argv[++i];
        } else if (strcmp(argv[i], "--ticket-fd") == 0 && more) {
            fdval = argv[++i];
        } else if (strcmp(argv[i], "--inherited") == 0) {
            inherited = true;
        } else if (strcmp(argv[i], "--timeout") == 0 && more) {
            if ((rc = cli_duration_arg("connect", "--timeout", argv[++i],
                                       &timeout)) != 0)
                return rc;
        } else if (strcmp(argv[i], "--eof-timeout") == 0 && more) {
            if ((rc = cli_duration_arg("connect", "--eof-timeout", argv[++i],
                                       &eof_wait)) != 0)
                return rc;
        } else if (argv[i][0] != '-') {
            return cli_refuse_ticket_arg("connect", argv[i]);
        } else {
            return cli_bad_option("connect", argv[i]);
        }
    }
    if (inherited) {
        if (file != NULL || fdval != NULL)
            return cli_usage_error("connect", "--inherited takes no other "
                                              "ticket source");
        rc = lsec_connect_inherited(&o, timeout, &ch);
    } else {
        if ((rc = cli_ticket_resolve("connect", file, fdval, &t)) != 0)
            return rc;
        rc = cli_ticket_connect(&t, &o, timeout, &ch);
        cli_ticket_wipe(&t);
    }
    if (rc != 0) {
        cli_error("connect", rc);
        return 1;
    }
    return cli_relay(ch, eof_wait);
}
