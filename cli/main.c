/*
 * loopsec — command line front end of the library.
 *
 * Exit status: 0 on success, 1 on any failure (one line on stderr), 2 on a
 * usage error.  Secrets are never taken from argv except a ticket the user
 * typed on purpose; tickets are printed only where asked for.
 */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

bool cli_verbose;

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
};

/* Later subcommands add their line here. */
static const struct command commands[] = {
    {"check", cmd_check, "check ADDR           may ADDR be used? print its normal form"},
    {"who", cmd_who, "who PORT             who holds a loopback port"},
    {"listen", cmd_listen,
     "listen [--tls] [--bind ADDR] [--ticket-file P] [--timeout MS]\n"
     "                         print the ticket, accept one peer, relay stdin/stdout"},
    {"connect", cmd_connect,
     "connect [--tls] [--timeout MS] (TICKET | --ticket-file P | --inherited)\n"
     "                         connect and relay stdin/stdout"},
    {"psk", cmd_psk, "psk (TICKET | -)     the TLS PSK and identity, for openssl s_client"},
    {"spawn", cmd_spawn, "spawn [--tls] [--timeout MS] -- CMD [ARGS...]\n"
     "                         run a helper that connects back; relay stdin/stdout"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: loopsec [--verbose] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  loopsec %s\n", commands[i].usage);
}

void cli_error(const char *what, int rc)
{
    const char *d = lsec_last_detail();
    if (d[0] != '\0')
        fprintf(stderr, "loopsec: %s: %s (%s)\n", what, lsec_strerror(rc), d);
    else
        fprintf(stderr, "loopsec: %s: %s\n", what, lsec_strerror(rc));
}

static void log_stderr(void *arg, int level, const char *msg)
{
    static const char *names[] = {"", "error", "warn", "info", "debug"};
    (void)arg;
    fprintf(stderr, "loopsec[%s]: %s\n",
            level >= 1 && level <= 4 ? names[level] : "?", msg);
}

void cli_setup_log(void)
{
    if (cli_verbose)
        lsec_set_log(log_stderr, NULL, LSEC_LOG_DEBUG);
}

int main(int argc, char **argv)
{
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0) {
            cli_verbose = true;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("loopsec %s\n", lsec_version());
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    cli_setup_log();
    /* The program, not the library, decides: a closed stdout is an error
     * to report, not a signal to die of. */
    signal(SIGPIPE, SIG_IGN);
    for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
        if (strcmp(argv[i], commands[k].name) == 0)
            return commands[k].run(argc - i, argv + i);
    fprintf(stderr, "loopsec: unknown command '%s'\n", argv[i]);
    usage(stderr);
    return 2;
}
