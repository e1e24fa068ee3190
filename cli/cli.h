/* The loopsec command line: shared helpers and the subcommand entry points. */
#ifndef LOOPSEC_CLI_H
#define LOOPSEC_CLI_H

#include <loopsec.h>
#include <stdbool.h>

/* Set by --verbose (anywhere before the subcommand's own arguments). */
extern bool cli_verbose;

/* Print "loopsec: <what>: <strerror> (<detail>)" on one stderr line. */
void cli_error(const char *what, int rc);
/* Install the stderr logger when --verbose was given. */
void cli_setup_log(void);

/*
 * Relay stdin/stdout over `ch` until both directions end, socat-style: each
 * chunk read from stdin is one message; each message received is written to
 * stdout.  When stdin ends, the channel is closed cleanly and the relay
 * returns.  Takes ownership of `ch`.  Returns the exit status.  (cmd_relay.c)
 */
int cli_relay(lsec_channel *ch);

/* Each returns the process exit status.  Add new ones to main.c's table. */
int cmd_check(int argc, char **argv);
int cmd_who(int argc, char **argv);
int cmd_listen(int argc, char **argv);
int cmd_connect(int argc, char **argv);
int cmd_psk(int argc, char **argv);
int cmd_spawn(int argc, char **argv); /* cmd_spawn.c */

#endif
