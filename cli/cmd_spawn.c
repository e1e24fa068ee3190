/*
 * loopsec spawn [--tls] [--timeout DURATION] [--eof-timeout DURATION]
 *               -- CMD ARGS...
 *
 * Start CMD as a helper that connects back (lsec_spawn: the ticket travels
 * on an inherited pipe, never in argv or the environment), then relay
 * stdin/stdout over the channel.  The helper side is typically
 * `loopsec connect --inherited` or a program calling
 * lsec_connect_inherited.
 *
 * Exit status: the helper's own (128 + N when killed by signal N) once the
 * relay has ended cleanly; 1 when spawning or relaying failed; 2 on a usage
 * error.
 */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* After the relay: give the helper `timeout_ms` to finish on its own, then
 * end it.  Returns the exit status to report. */
static int finish_helper(lsec_helper *h, int timeout_ms)
{
    int st = 0, rc;

    rc = lsec_helper_wait(h, timeout_ms, &st);
    if (rc == LSEC_ETIMEDOUT || rc == LSEC_EAGAIN) {
        fprintf(stderr,
                "loopsec: spawn: helper still running after %d ms; "
                "terminating it\n",
                timeout_ms);
        (void)lsec_helper_kill(h, SIGTERM);
        rc = lsec_helper_wait(h, 2000, &st);
    }
    lsec_helper_free(h); /* SIGKILL and reap if it is still there */
    if (rc != 0)
        return 1;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return 1;
}

int cmd_spawn(int argc, char **argv)
{
    int i, rc, status;
    cli_args a;
    lsec_helper *h = NULL;
    lsec_channel *ch = NULL;

    cli_args_init(&a, 10000);
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        rc =
            cli_common_arg("spawn", CLI_OPT_TLS | CLI_OPT_TIMEOUT | CLI_OPT_EOF,
                           argc, argv, &i, &a);
        if (rc == 1)
            continue;
        if (rc != 0)
            return rc;
        if (argv[i][0] != '-') {
            break; /* the command starts here ("--" is optional) */
        } else {
            return cli_bad_option("spawn", argv[i]);
        }
    }
    if (i >= argc)
        return cli_usage_error("spawn", "no command to run");
    /* argv is NULL-terminated by the C runtime, so argv + i is a ready
     * argument vector for the helper. */
    rc = lsec_spawn((const char *const *)(argv + i), &a.o, a.timeout, &h, &ch);
    if (rc != 0) {
        cli_error("spawn", rc);
        return 1;
    }
    if (cli_verbose)
        fprintf(stderr, "loopsec: spawn: helper pid %d connected\n",
                lsec_helper_pid(h));
    status = cli_relay(ch, a.eof_wait);
    rc = finish_helper(h, a.timeout < 0 ? 10000 : a.timeout);
    return status != 0 ? status : rc;
}
