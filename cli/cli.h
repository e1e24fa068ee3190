/* The loopsec command line: shared helpers and the subcommand entry points. */
#ifndef LOOPSEC_CLI_H
#define LOOPSEC_CLI_H

#include <loopsec.h>
#include <stdbool.h>
#include <stdint.h>

struct pollfd;

/* Set by --verbose (anywhere before the subcommand's own arguments). */
extern bool cli_verbose;

/* ---- messages and arguments (util.c) ---------------------------------- */

/* Print "loopsec: <what>: <strerror> (<detail>)" on one stderr line, with
 * library names (LSEC_ADDR_ALLOW_127_8) in the command line's words. */
void cli_error(const char *what, int rc);
/* cli_error for an address argument; a URL gets its own message.  1. */
int cli_addr_error(const char *what, const char *addr, int rc);
/* Install the stderr logger when --verbose was given. */
void cli_setup_log(void);
/* One stderr line "loopsec: CMD: ... (see 'loopsec help CMD')"; returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Usage error for an unknown option (its name echoed, never a value). */
int cli_bad_option(const char *cmd, const char *arg);
/* DURATION: "500ms", "2s", "1m", a bare number of milliseconds, or
 * "forever" (-1).  At most 24 h.  False for anything else. */
bool cli_parse_duration(const char *s, int *out_ms);
/* cli_parse_duration, or a usage error (2) naming the option. */
int cli_duration_arg(const char *cmd, const char *opt, const char *val,
                     int *out_ms);
/* Plain decimal in [lo, hi]. */
bool cli_parse_count(const char *s, long lo, long hi, long *out);
/* Print the help of one command (NULL: the overview) to stdout; 0, or 2
 * for an unknown command. (main.c) */
int cli_help(const char *cmd);

/* The options several commands share, parsed in one place. */
#define CLI_OPT_TLS 0x01u     /* --tls */
#define CLI_OPT_127 0x02u     /* --allow-127-8 */
#define CLI_OPT_BIND 0x04u    /* --bind ADDR */
#define CLI_OPT_TICKET 0x08u  /* --ticket-file P, --ticket-fd N */
#define CLI_OPT_TIMEOUT 0x10u /* --timeout DURATION */
#define CLI_OPT_EOF 0x20u     /* --eof-timeout DURATION */
typedef struct cli_args {
    lsec_opts o;
    const char *bind, *file, *fdval;
    int timeout, eof_wait; /* ms; -1 forever */
} cli_args;
void cli_args_init(cli_args *a, int timeout_ms);
/* argv[*i] is one of the options in `which`: consume it (and its value,
 * advancing *i) and return 1; 0 if it is not; 2 after a usage error. */
int cli_common_arg(const char *cmd, unsigned which, int argc, char **argv,
                   int *i, cli_args *a);

/* SIGINT, SIGTERM, SIGCHLD as bytes (the signal number) on a pipe: its
 * read end, or -1.  cli_signals_close restores the defaults (in a child
 * too, where it also closes the pipe). */
int cli_signals_open(void);
void cli_signals_close(void);

/* ---- tickets (util.c) -------------------------------------------------- */

extern const char *cli_ticket_hint;
typedef struct cli_ticket {
    const char *file;           /* --ticket-file, checked at connect */
    char text[LSEC_TICKET_MAX]; /* from --ticket-fd or LOOPSEC_TICKET */
    bool have_text;
} cli_ticket;
/* Wipe a ticket given as an argument and refuse it; returns 2. */
int cli_refuse_ticket_arg(const char *cmd, char *arg);
/* Where the ticket comes from: --ticket-file, --ticket-fd, else
 * LOOPSEC_TICKET (always removed from the environment).  0, 1, or 2. */
int cli_ticket_resolve(const char *cmd, const char *file, const char *fdval,
                       cli_ticket *t);
int cli_ticket_connect(const cli_ticket *t, const lsec_opts *o, int timeout_ms,
                       lsec_channel **ch);
void cli_ticket_wipe(cli_ticket *t);
/* The listening side: write the ticket to a connection file, or to the
 * descriptor --ticket-fd names (default stderr; never stdin/stdout). */
int cli_give_ticket(const lsec_listener *l, const char *cmd, const char *file,
                    const char *fdval);
/* 1 with a message when `path` is a directory. */
int cli_check_ticket_path(const char *cmd, const char *path);

/* ---- the relay (pump.c) ------------------------------------------------ */

#define CLI_CHUNK 65536
/* The most one message moved by splice carries (the library may take less:
 * what its pipe holds). */
#define CLI_SPLICE_CHUNK (256 * 1024)

typedef struct cli_pump {
    lsec_channel *ch;
    int in_fd, out_fd; /* may be one socket */
    bool in_sock, out_sock, out_nb;
    const char *in_name, *out_name; /* for messages: "stdin", "the backend" */
    int eof_wait_ms;                /* after the input ends; -1 forever */
    int64_t eof_deadline;
    /* input -> channel: one chunk, then at most one message queued */
    uint8_t *ubuf;
    size_t ulen;
    bool in_eof, up_queued, up_done;
    /* channel -> output: one message */
    uint8_t *dbuf;
    size_t dcap, dlen, doff;
    bool rx_eof, down_done;
    /* auth mode: a direction moved by splice (lsec_send_from_fd,
     * lsec_recv_to_fd) instead of through ubuf/dbuf, and what it waits
     * for after a call that could not go on: the channel's socket to take
     * more (up), the output to take what the channel holds for it (down). */
    bool up_splice, down_splice, up_need_out, down_need_out;
    uint64_t in_bytes, out_bytes;
    bool failed;
    char err[512];
} cli_pump;

int64_t cli_now_ms(void);
bool cli_fd_is_socket(int fd);
/* A TCP socket of ours on loopback (a channel, serve's backend
 * connection) sends with "reno": no pacing.  Best effort: anything else
 * (not TCP, refused) is left as it is. */
void cli_tcp_loopback(int fd);
/* Set a socket to close with a reset (a failure is never a clean end). */
void cli_abort_fd(int fd);
/* Close a channel with a reset, at once: no flush, no clean end. */
void cli_abort_channel(lsec_channel *ch);
/* 0, or -1 out of memory.  Does not own the descriptors; owns `ch`. */
int cli_pump_init(cli_pump *p, lsec_channel *ch, int in_fd, int out_fd,
                  int eof_wait_ms);
/* Fill three poll slots (fd -1 when unused); lower *timeout_ms as needed. */
void cli_pump_events(const cli_pump *p, struct pollfd *pf, int *timeout_ms);
/* After poll: 0 go on, 1 both directions ended cleanly, -1 failed (p->err). */
int cli_pump_step(cli_pump *p, const struct pollfd *pf);
bool cli_pump_done(const cli_pump *p);
/* Close the channel (with a reset if the pump failed) and free buffers. */
void cli_pump_free(cli_pump *p);
/* Relay stdin/stdout over `ch` until both directions ended; owns `ch`.
 * 0 when every byte was delivered and the peer ended cleanly, else 1 with
 * one line on stderr. */
int cli_relay(lsec_channel *ch, int eof_wait_ms);

/* ---- commands: each returns the exit status ---------------------------- */
int cmd_check(int argc, char **argv);
int cmd_who(int argc, char **argv);
int cmd_listen(int argc, char **argv);
int cmd_connect(int argc, char **argv);
int cmd_psk(int argc, char **argv);
int cmd_spawn(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_help(int argc, char **argv);

#endif
