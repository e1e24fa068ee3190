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
    int timeout = 10000, eof_wait = -1, i, rc, status;
    lsec_opts o;
    lsec_helper *h = NULL;
    lsec_channel *ch = NULL;

    lsec_opts_init(&o);
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (strcmp(argv[i], "--tls") == 0) {
            o.mode = LSEC_MODE_TLS;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            if ((rc = cli_duration_arg("spawn", "--timeout", argv[++i],
                                       &timeout)) != 0)
                return rc;
        } else if (strcmp(argv[i], "--eof-timeout") == 0 && i + 1 < argc) {
            if ((rc = cli_duration_arg("spawn", "--eof-timeout", argv[++i],
                                       &eof_wait)) != 0)
                return rc;
        } else if (argv[i][0] != '-') {
            break; /* the command starts here ("--" is optional) */
        } else {
            return cli_bad_option("spawn", argv[i]);
        }
    }
    if (i >= argc)
        return cli_usage_error("spawn", "no command to run");
    /* argv is NULL-terminated by the C runtime, so argv + i is a ready
     * argument vector for the helper. */
    rc = lsec_spawn((const char *const *)(argv + i), &o, timeout, &h, &ch);
    if (rc != 0) {
        cli_error("spawn", rc);
        return 1;
    }
    if (cli_verbose)
        fprintf(stderr, "loopsec: spawn: helper pid %d connected\n",
                lsec_helper_pid(h));
    status = cli_relay(ch, eof_wait);
    rc = finish_helper(h, timeout < 0 ? 10000 : timeout);
    return status != 0 ? status : rc;
}
