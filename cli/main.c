/*
 * loopsec — command line front end of the library.
 *
 * Exit status: 0 on success, 1 on any failure (one line on stderr), 2 on a
 * usage error (one line on stderr).  A ticket is never taken from argv and
 * never printed to stdout, which carries only data.
 */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

bool cli_verbose;

#define CLI_VERSION "0.1.0"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
    const char *help; /* every option with its default; NULL: the command
                         prints its own for --help (cmd_addr.c) */
};

#define DURATION_NOTE                                                          \
    "DURATION: 500ms, 2s, 1m (a bare number is milliseconds) or forever.\n"
#define TICKET_SOURCES                                                         \
    "  --ticket-file PATH  read the ticket from a connection file (mode "      \
    "0600)\n"                                                                  \
    "  --ticket-fd N       read the ticket from inherited descriptor N\n"      \
    "  (neither: the environment variable LOOPSEC_TICKET, removed after\n"     \
    "  reading.  A ticket given as an argument is refused.)\n"

static const struct command commands[] = {
    {"check", cmd_check, "may ADDR be used? print its normal form", NULL},
    {"who", cmd_who, "who listens on loopback and wildcard addresses", NULL},
    {"listen", cmd_listen, "accept one peer, relay stdin/stdout",
     "usage: loopsec listen [--tls] [--bind ADDR] [--allow-127-8]\n"
     "                      [--ticket-file PATH | --ticket-fd N]\n"
     "                      [--timeout DURATION] [--eof-timeout DURATION]\n"
     "  Listen, give the ticket, accept one authenticated peer, relay\n"
     "  stdin/stdout.  stdout carries only data.\n"
     "  --tls               TLS 1.3 inside (default: auth mode)\n"
     "  --bind ADDR         address to bind (default 127.0.0.1:0, a free "
     "port)\n"
     "  --allow-127-8       accept all of 127.0.0.0/8 in --bind\n"
     "  --ticket-file PATH  write the ticket to PATH (mode 0600; removed at "
     "exit)\n"
     "  --ticket-fd N       write the ticket line to descriptor N (default 2,\n"
     "                      stderr; never 0 or 1)\n"
     "  --timeout DURATION  wait for the peer (default forever)\n"
     "  --eof-timeout DURATION  after stdin ends, wait this long for the peer\n"
     "                      to end its side, else exit 1 (default "
     "forever)\n" DURATION_NOTE},
    {"connect", cmd_connect, "connect, relay stdin/stdout",
     "usage: loopsec connect [--tls] [--allow-127-8]\n"
     "                       (--ticket-file PATH | --ticket-fd N | "
     "--inherited)\n"
     "                       [--timeout DURATION] [--eof-timeout DURATION]\n"
     "  Connect to a listener and relay stdin/stdout.\n" TICKET_SOURCES
     "  --inherited         the ticket of a helper started by loopsec spawn\n"
     "  --tls               refuse an auth-mode ticket (default: the ticket's "
     "mode)\n"
     "  --allow-127-8       accept all of 127.0.0.0/8 in the ticket\n"
     "  --timeout DURATION  connect and authenticate within (default 10s)\n"
     "  --eof-timeout DURATION  after stdin ends, wait this long for the peer\n"
     "                      to end its side, else exit 1 (default "
     "forever)\n" DURATION_NOTE},
    {"spawn", cmd_spawn, "run a helper that connects back; relay stdin/stdout",
     "usage: loopsec spawn [--tls] [--timeout DURATION] [--eof-timeout "
     "DURATION]\n"
     "                     [--] CMD [ARGS...]\n"
     "  Start CMD with a ticket on an inherited pipe (LOOPSEC_TICKET_FD), "
     "wait\n"
     "  for it to connect back, relay stdin/stdout; exit with its status.\n"
     "  --tls               TLS 1.3 inside (default: auth mode)\n"
     "  --timeout DURATION  wait for the helper to connect (default 10s), and\n"
     "                      for it to exit after the relay (default 10s)\n"
     "  --eof-timeout DURATION  after stdin ends (default "
     "forever)\n" DURATION_NOTE},
    {"serve", cmd_serve, "guard a service: each peer gets its own backend",
     "usage: loopsec serve [--tls] [--bind ADDR] [--allow-127-8]\n"
     "                     [--ticket-file PATH | --ticket-fd N] [--key-file "
     "K]\n"
     "                     [--max-peers N]\n"
     "                     (--to ADDR | --to unix:PATH | --exec CMD "
     "[ARGS...])\n"
     "  One long-lived listener; each authenticated peer gets a new backend\n"
     "  connection, opened only after its handshake, or a new process.\n"
     "  --to 127.0.0.1:PORT | [::1]:PORT   a loopback TCP backend\n"
     "  --to unix:PATH      a Unix stream socket backend\n"
     "  --exec CMD [ARGS...]  a process per peer, stdin/stdout = the channel,\n"
     "                      stderr = serve's (the rest of the line is CMD)\n"
     "  --tls               TLS 1.3 inside (default: auth mode)\n"
     "  --bind ADDR         address to bind (default 127.0.0.1:0, a free "
     "port)\n"
     "  --allow-127-8       accept all of 127.0.0.0/8 in --bind and --to\n"
     "  --ticket-file PATH  write the ticket to PATH (mode 0600; removed at "
     "exit)\n"
     "  --ticket-fd N       write the ticket line to descriptor N (default 2)\n"
     "  --key-file K        keep the secret in K (0600, created if missing), "
     "so\n"
     "                      the ticket stays the same across restarts (with a\n"
     "                      fixed port in --bind) (default: a fresh secret)\n"
     "  --max-peers N       concurrent peers (default 64); handshakes in\n"
     "                      progress are capped at 64 besides\n"
     "  SIGINT/SIGTERM: stop accepting, let open connections finish (10s), "
     "exit 0.\n"},
    {"forward", cmd_forward, "the client side of serve for unmodified programs",
     "usage: loopsec forward [--tls] [--allow-127-8]\n"
     "                       (--ticket-file PATH | --ticket-fd N)\n"
     "                       (--listen unix:PATH | --stdio) [--timeout "
     "DURATION]\n"
     "  Carry connections to a loopsec serve (or listen) over authenticated\n"
     "  channels.  No option opens a TCP port.\n" TICKET_SOURCES
     "  --listen unix:PATH  a Unix socket for this user only: its directory\n"
     "                      must be the user's own with mode 0700 (created if\n"
     "                      missing); each connection gets its own channel\n"
     "                      (at most 128 at once); removed at exit\n"
     "  --stdio             one channel over stdin/stdout (ProxyCommand "
     "style)\n"
     "  --tls               refuse an auth-mode ticket\n"
     "  --allow-127-8       accept all of 127.0.0.0/8 in the ticket\n"
     "  --timeout DURATION  connect and authenticate within (default "
     "10s)\n" DURATION_NOTE},
    {"psk", cmd_psk, "the TLS PSK and identity, for openssl s_client",
     "usage: loopsec psk (--ticket-file PATH | --ticket-fd N | -)\n"
     "  Print the TLS 1.3 PSK and identity of a tls-mode ticket:\n"
     "    psk HEX\n"
     "    identity ID\n"
     "  for: openssl s_client -tls1_3 -psk HEX -psk_identity \"ID\"\n"
     "  (the identity contains a space: quote it).\n" TICKET_SOURCES
     "  -                   read the ticket line from stdin\n"},
    {"version", cmd_version, "library and command-line versions",
     "usage: loopsec version   (or loopsec --version)\n"},
    {"help", cmd_help, "this text, or one command's",
     "usage: loopsec help [COMMAND]   (or loopsec COMMAND --help)\n"},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void overview(FILE *f)
{
    fprintf(f, "usage: loopsec [--verbose] COMMAND [ARGS]\n"
               "       loopsec --help | --version\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'loopsec help COMMAND' shows every option and its default.\n"
               "Exit status: 0 success, 1 failure, 2 usage error.\n");
}

int cli_help(const char *cmd)
{
    if (cmd == NULL) {
        overview(stdout);
        return 0;
    }
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(cmd, commands[i].name) == 0) {
            if (commands[i].help == NULL) {
                char name[16], opt[] = "--help";
                char *argv[] = {name, opt, NULL};
                snprintf(name, sizeof(name), "%s", commands[i].name);
                return commands[i].run(2, argv);
            }
            fputs(commands[i].help, stdout);
            return 0;
        }
    fprintf(stderr, "loopsec: help: unknown command (see 'loopsec help')\n");
    return 2;
}

int cmd_help(int argc, char **argv)
{
    if (argc > 2)
        return cli_usage_error("help", "one COMMAND at most");
    return cli_help(argc == 2 ? argv[1] : NULL);
}

int cmd_version(int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        return cli_usage_error("version", "takes no arguments");
    printf("loopsec %s (library %s)\n", CLI_VERSION, lsec_version());
    return 0;
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

/* Does the command's own part of argv ask for help?  Not past "--" or
 * --exec, where another program's arguments begin. */
static bool wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0 || strcmp(argv[i], "--exec") == 0)
            return false;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    }
    return false;
}

int main(int argc, char **argv)
{
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0) {
            cli_verbose = true;
        } else if (strcmp(argv[i], "--help") == 0 ||
                   strcmp(argv[i], "-h") == 0) {
            return cli_help(NULL);
        } else if (strcmp(argv[i], "--version") == 0) {
            return cmd_version(1, argv);
        } else {
            fprintf(stderr, "loopsec: unknown option before the command "
                            "(see 'loopsec help')\n");
            return 2;
        }
        i++;
    }
    if (i >= argc) {
        fprintf(stderr, "loopsec: no command (see 'loopsec help')\n");
        return 2;
    }
    cli_setup_log();
    /* The program, not the library, decides: a closed stdout is an error
     * to report, not a signal to die of. */
    signal(SIGPIPE, SIG_IGN);
    for (size_t k = 0; k < NCOMMANDS; k++)
        if (strcmp(argv[i], commands[k].name) == 0) {
            if (commands[k].help != NULL && wants_help(argc - i, argv + i))
                return cli_help(commands[k].name);
            return commands[k].run(argc - i, argv + i);
        }
    fprintf(stderr, "loopsec: unknown command (see 'loopsec help')\n");
    return 2;
}
