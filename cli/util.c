/*
 * Shared command-line helpers: usage errors, durations, where a ticket
 * comes from, and the messages that translate library details into the
 * command line's own words.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "loopsec: %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'loopsec help %s')\n", cmd);
    return 2;
}

int cli_bad_option(const char *cmd, const char *arg)
{
    /* Echo only the option's name: whatever follows '=' could be a
     * credential typed in the wrong place. */
    if (arg[0] == '-' && strlen(arg) < 40 && strchr(arg, '=') == NULL &&
        strchr(arg, ':') == NULL)
        return cli_usage_error(cmd, "unknown option or missing value: '%s'",
                               arg);
    return cli_usage_error(cmd, "unexpected argument");
}

/*
 * DURATION: a whole number with a unit, "ms", "s" or "m"; a bare number is
 * milliseconds; "forever" is -1.  At most 24 hours.
 */
bool cli_parse_duration(const char *s, int *out_ms)
{
    unsigned long long v = 0;
    size_t i = 0;
    long long mult;

    if (strcmp(s, "forever") == 0) {
        *out_ms = -1;
        return true;
    }
    while (s[i] >= '0' && s[i] <= '9') {
        v = v * 10 + (unsigned long long)(s[i] - '0');
        if (v > 86400000ULL)
            return false;
        i++;
    }
    if (i == 0 || i > 9)
        return false;
    if (strcmp(s + i, "") == 0 || strcmp(s + i, "ms") == 0)
        mult = 1;
    else if (strcmp(s + i, "s") == 0)
        mult = 1000;
    else if (strcmp(s + i, "m") == 0)
        mult = 60000;
    else
        return false;
    if (v * (unsigned long long)mult > 86400000ULL)
        return false;
    *out_ms = (int)(v * (unsigned long long)mult);
    return true;
}

int cli_duration_arg(const char *cmd, const char *opt, const char *val,
                     int *out_ms)
{
    if (!cli_parse_duration(val, out_ms))
        return cli_usage_error(cmd,
                               "%s takes a duration such as 500ms, 2s, 1m or "
                               "forever (a bare number is milliseconds)",
                               opt);
    return 0;
}

bool cli_parse_count(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    if (s[0] < '0' || s[0] > '9')
        return false;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

const char *cli_ticket_hint =
    "give the ticket with --ticket-file PATH, --ticket-fd N or the "
    "environment variable LOOPSEC_TICKET (never as an argument: every user "
    "can read a command line)";

int cli_refuse_ticket_arg(const char *cmd, char *arg)
{
    /* It may be a ticket: take it out of our command line at once. */
    explicit_bzero(arg, strlen(arg));
    fprintf(stderr,
            "loopsec: %s: a ticket is not accepted as an argument; %s\n", cmd,
            cli_ticket_hint);
    return 2;
}

/* Read one ticket line (at most LSEC_TICKET_MAX bytes) from `fd`, one byte
 * at a time, so that nothing after the line is consumed: with --ticket-fd 0
 * the data that follows it is the relay's. */
static int read_ticket_fd(int fd, char *buf, size_t cap)
{
    size_t n = 0;

    while (n < cap - 1) {
        ssize_t r = read(fd, buf + n, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0 || buf[n] == '\n')
            break;
        n++;
    }
    buf[n] = '\0';
    n = strcspn(buf, "\r\n");
    buf[n] = '\0';
    return n > 0 ? 0 : -1;
}

static int cli_ticket_from_fd(const char *cmd, const char *val, char *buf,
                              size_t cap)
{
    long fd;

    if (!cli_parse_count(val, 0, 1000000, &fd))
        return cli_usage_error(cmd, "--ticket-fd takes a descriptor number");
    if (fcntl((int)fd, F_GETFD) < 0) {
        fprintf(stderr, "loopsec: %s: descriptor %ld is not open\n", cmd, fd);
        return 1;
    }
    int rc = read_ticket_fd((int)fd, buf, cap);
    if (fd > 2)
        close((int)fd);
    if (rc != 0) {
        explicit_bzero(buf, cap);
        fprintf(stderr, "loopsec: %s: no ticket line on descriptor %ld\n", cmd,
                fd);
        return 1;
    }
    return 0;
}

static int cli_ticket_from_env(const char *cmd, char *buf, size_t cap,
                               bool *found)
{
    char *v = getenv("LOOPSEC_TICKET");
    size_t n;

    *found = false;
    if (v == NULL)
        return 0;
    *found = true;
    n = strlen(v);
    if (n == 0 || n >= cap) {
        explicit_bzero(v, n);
        unsetenv("LOOPSEC_TICKET");
        fprintf(stderr, "loopsec: %s: LOOPSEC_TICKET does not hold a ticket\n",
                cmd);
        return 1;
    }
    memcpy(buf, v, n + 1);
    explicit_bzero(v, n);
    unsetenv("LOOPSEC_TICKET");
    return 0;
}

int cli_check_ticket_path(const char *cmd, const char *path)
{
    struct stat st;

    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr,
                "loopsec: %s: --ticket-file names a directory, not a file\n",
                cmd);
        return 1;
    }
    return 0;
}

void cli_error(const char *what, int rc)
{
    const char *d = lsec_last_detail();
    char buf[512];
    const char *c = strstr(d, "LSEC_ADDR_ALLOW_127_8");

    /* The library speaks C; the user of the command line needs the flag. */
    if (c != NULL) {
        snprintf(buf, sizeof(buf), "%.*s--allow-127-8%s", (int)(c - d), d,
                 c + strlen("LSEC_ADDR_ALLOW_127_8"));
        d = buf;
    }
    if (d[0] != '\0')
        fprintf(stderr, "loopsec: %s: %s (%s)\n", what, lsec_strerror(rc), d);
    else
        fprintf(stderr, "loopsec: %s: %s\n", what, lsec_strerror(rc));
}

int cli_addr_error(const char *what, const char *addr, int rc)
{
    if (strstr(addr, "://") != NULL) {
        fprintf(stderr,
                "loopsec: %s: a URL is not an address; write HOST:PORT, "
                "e.g. 127.0.0.1:8080\n",
                what);
        return 1;
    }
    cli_error(what, rc);
    return 1;
}

int cli_ticket_resolve(const char *cmd, const char *file, const char *fdval,
                       cli_ticket *t)
{
    bool found = false;
    char envbuf[LSEC_TICKET_MAX];
    int rc;

    memset(t, 0, sizeof(*t));
    /* Read (and remove) the variable in every case, so that it never
     * reaches a child process. */
    rc = cli_ticket_from_env(cmd, envbuf, sizeof(envbuf), &found);
    if (rc != 0)
        return rc;
    if ((file != NULL) + (fdval != NULL) > 1) {
        explicit_bzero(envbuf, sizeof(envbuf));
        return cli_usage_error(cmd, "give only one of --ticket-file and "
                                    "--ticket-fd");
    }
    if (file != NULL) {
        explicit_bzero(envbuf, sizeof(envbuf));
        t->file = file;
        return cli_check_ticket_path(cmd, file);
    }
    if (fdval != NULL) {
        explicit_bzero(envbuf, sizeof(envbuf));
        rc = cli_ticket_from_fd(cmd, fdval, t->text, sizeof(t->text));
        t->have_text = rc == 0;
        return rc;
    }
    if (found) {
        memcpy(t->text, envbuf, sizeof(t->text));
        explicit_bzero(envbuf, sizeof(envbuf));
        t->have_text = true;
        return 0;
    }
    fprintf(stderr, "loopsec: %s: no ticket; %s\n", cmd, cli_ticket_hint);
    return 2;
}

int cli_ticket_connect(const cli_ticket *t, const lsec_opts *o, int timeout_ms,
                       lsec_channel **ch)
{
    if (t->file != NULL)
        return lsec_connect_file(t->file, o, timeout_ms, ch);
    return lsec_connect(t->text, o, timeout_ms, ch);
}

void cli_ticket_wipe(cli_ticket *t)
{
    explicit_bzero(t->text, sizeof(t->text));
    t->have_text = false;
}

int cli_give_ticket(const lsec_listener *l, const char *cmd, const char *file,
                    const char *fdval)
{
    char ticket[LSEC_TICKET_MAX];
    long fd = STDERR_FILENO;
    int rc;

    if (file != NULL) {
        if (cli_check_ticket_path(cmd, file) != 0)
            return 1;
        rc = lsec_listener_write_file((lsec_listener *)l, file, NULL, 0);
        if (rc != 0) {
            cli_error("writing the ticket file", rc);
            return 1;
        }
        return 0;
    }
    if (fdval != NULL && !cli_parse_count(fdval, 0, 1000000, &fd))
        return cli_usage_error(cmd, "--ticket-fd takes a descriptor number");
    if (fd == STDOUT_FILENO || fd == STDIN_FILENO)
        return cli_usage_error(cmd, "the ticket never shares stdin or stdout "
                                    "with data: use --ticket-fd 2 or 3 and up");
    rc = lsec_listener_ticket(l, ticket, sizeof(ticket));
    if (rc != 0) {
        cli_error("ticket", rc);
        return 1;
    }
    size_t n = strlen(ticket);
    ticket[n] = '\n';
    const char *p = ticket;
    size_t left = n + 1;
    while (left > 0) {
        ssize_t w = write((int)fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            explicit_bzero(ticket, sizeof(ticket));
            fprintf(stderr,
                    "loopsec: %s: writing the ticket to descriptor "
                    "%ld: %s\n",
                    cmd, fd, strerror(errno));
            return 1;
        }
        p += w;
        left -= (size_t)w;
    }
    explicit_bzero(ticket, sizeof(ticket));
    if (fd > 2)
        close((int)fd);
    return 0;
}

void cli_args_init(cli_args *a, int timeout_ms)
{
    memset(a, 0, sizeof(*a));
    lsec_opts_init(&a->o);
    a->bind = "127.0.0.1:0";
    a->timeout = timeout_ms;
    a->eof_wait = -1;
}

int cli_common_arg(const char *cmd, unsigned which, int argc, char **argv,
                   int *i, cli_args *a)
{
    const char *arg = argv[*i];
    bool more = *i + 1 < argc;
    int rc;

    if ((which & CLI_OPT_TLS) && strcmp(arg, "--tls") == 0) {
        a->o.mode = LSEC_MODE_TLS;
    } else if ((which & CLI_OPT_127) && strcmp(arg, "--allow-127-8") == 0) {
        a->o.flags |= LSEC_ADDR_ALLOW_127_8;
    } else if ((which & CLI_OPT_BIND) && strcmp(arg, "--bind") == 0 && more) {
        a->bind = argv[++*i];
    } else if ((which & CLI_OPT_TICKET) && strcmp(arg, "--ticket-file") == 0 &&
               more) {
        a->file = argv[++*i];
    } else if ((which & CLI_OPT_TICKET) && strcmp(arg, "--ticket-fd") == 0 &&
               more) {
        a->fdval = argv[++*i];
    } else if ((which & CLI_OPT_TIMEOUT) && strcmp(arg, "--timeout") == 0 &&
               more) {
        if ((rc = cli_duration_arg(cmd, arg, argv[++*i], &a->timeout)) != 0)
            return rc;
    } else if ((which & CLI_OPT_EOF) && strcmp(arg, "--eof-timeout") == 0 &&
               more) {
        if ((rc = cli_duration_arg(cmd, arg, argv[++*i], &a->eof_wait)) != 0)
            return rc;
    } else {
        return 0;
    }
    return 1;
}

/* The self-pipe of serve and forward: SIGINT, SIGTERM and SIGCHLD become
 * one byte each (the signal number) on cli_signals_fd(). */
static int sig_fds[2] = {-1, -1};

static void on_signal(int sig)
{
    unsigned char b = (unsigned char)sig;
    int saved = errno;
    (void)!write(sig_fds[1], &b, 1);
    errno = saved;
}

int cli_signals_open(void)
{
    struct sigaction sa;

    if (pipe2(sig_fds, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    return sig_fds[0];
}

void cli_signals_close(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    if (sig_fds[0] >= 0) {
        close(sig_fds[0]);
        close(sig_fds[1]);
    }
    sig_fds[0] = sig_fds[1] = -1;
}
