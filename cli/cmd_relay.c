/*
 * loopsec listen / loopsec connect, and the stdin/stdout relay they share.
 *
 * A ticket is a credential.  `listen` prints it as the first line of stdout
 * (the user asked for it) or writes it to a 0600 connection file; `connect`
 * takes it from a connection file, an inherited descriptor, or argv.  A
 * ticket in argv is visible to other users through /proc/PID/cmdline, so it
 * is scrubbed from our argv at once and the docs recommend --ticket-file.
 */
#include "cli.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK 65536

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Receive every message that is ready and write it to stdout.
 * 0 to go on, 1 when the peer closed cleanly, -1 on failure. */
static int drain_channel(lsec_channel *ch, uint8_t **buf, size_t *cap,
                         int timeout_ms)
{
    for (;;) {
        size_t len = 0;
        int rc = lsec_recv(ch, *buf, *cap, &len, timeout_ms);
        if (rc == LSEC_EMSGSIZE) {
            uint8_t *nb = realloc(*buf, len);
            if (nb == NULL) {
                fprintf(stderr, "loopsec: out of memory\n");
                return -1;
            }
            *buf = nb;
            *cap = len;
            continue;
        }
        if (rc == LSEC_EAGAIN)
            return 0;
        if (rc == LSEC_ECLOSED)
            return 1;
        if (rc != 0) {
            cli_error("receive", rc);
            return -1;
        }
        if (write_all(STDOUT_FILENO, *buf, len) != 0) {
            fprintf(stderr, "loopsec: writing stdout: %s\n", strerror(errno));
            return -1;
        }
        timeout_ms = 0;
    }
}

int cli_relay(lsec_channel *ch)
{
    size_t cap = CHUNK;
    uint8_t *buf = malloc(cap), *in = malloc(CHUNK);
    int status = 0;
    bool stdin_ended = false;

    if (buf == NULL || in == NULL) {
        fprintf(stderr, "loopsec: out of memory\n");
        status = 1;
        goto out;
    }
    for (;;) {
        struct pollfd p[2] = {{STDIN_FILENO, POLLIN, 0},
                              {lsec_channel_fd(ch), POLLIN, 0}};
        /* Data already buffered inside the channel needs no poll. */
        int wait = lsec_channel_pending(ch) > 0 ? 0 : -1;
        if (poll(p, 2, wait) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "loopsec: poll: %s\n", strerror(errno));
            status = 1;
            break;
        }
        if (p[1].revents != 0 || lsec_channel_pending(ch) > 0) {
            int r = drain_channel(ch, &buf, &cap, 0);
            if (r != 0) {
                status = r < 0 ? 1 : 0;
                break;
            }
        }
        if (p[0].revents != 0) {
            ssize_t n = read(STDIN_FILENO, in, CHUNK);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                fprintf(stderr, "loopsec: reading stdin: %s\n", strerror(errno));
                status = 1;
                break;
            }
            if (n == 0) {
                stdin_ended = true; /* close cleanly below */
                break;
            }
            int rc = lsec_send(ch, in, (size_t)n, -1);
            if (rc != 0) {
                cli_error("send", rc);
                status = 1;
                break;
            }
        }
    }
    if (stdin_ended) {
        int rc = lsec_flush(ch, 5000);
        if (rc != 0) {
            cli_error("flush", rc);
            status = 1;
        }
    }
out:
    lsec_channel_close(ch);
    free(buf);
    free(in);
    return status;
}

static int usage_listen(void)
{
    fprintf(stderr, "usage: loopsec listen [--tls] [--bind ADDR] "
                    "[--ticket-file PATH] [--timeout MS]\n");
    return 2;
}

int cmd_listen(int argc, char **argv)
{
    const char *bind = "127.0.0.1:0", *file = NULL;
    int timeout = -1, rc;
    lsec_opts o;
    lsec_listener *l = NULL;
    lsec_channel *ch = NULL;

    lsec_opts_init(&o);
    o.max_accepts = 1; /* one peer, then nobody else may even try */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tls") == 0)
            o.mode = LSEC_MODE_TLS;
        else if (strcmp(argv[i], "--bind") == 0 && i + 1 < argc)
            bind = argv[++i];
        else if (strcmp(argv[i], "--ticket-file") == 0 && i + 1 < argc)
            file = argv[++i];
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            timeout = atoi(argv[++i]);
        else
            return usage_listen();
    }
    rc = lsec_listen(bind, &o, &l);
    if (rc != 0) {
        cli_error("listen", rc);
        return 1;
    }
    if (file != NULL) {
        char used[LSEC_PATH_MAX];
        rc = lsec_listener_write_file(l, file, used, sizeof(used));
        if (rc != 0) {
            cli_error("writing the ticket file", rc);
            lsec_listener_close(l);
            return 1;
        }
    } else {
        char ticket[LSEC_TICKET_MAX];
        rc = lsec_listener_ticket(l, ticket, sizeof(ticket));
        if (rc != 0) {
            cli_error("ticket", rc);
            lsec_listener_close(l);
            return 1;
        }
        /* The user asked for the ticket: it is the first line of stdout. */
        printf("%s\n", ticket);
        fflush(stdout);
        explicit_bzero(ticket, sizeof(ticket));
    }
    rc = lsec_accept(l, timeout, &ch);
    /* One-shot: the listener has done its job; close it (and remove the
     * connection file) before relaying. */
    lsec_listener_close(l);
    if (rc != 0) {
        cli_error("accept", rc);
        return 1;
    }
    return cli_relay(ch);
}

static int usage_connect(void)
{
    fprintf(stderr, "usage: loopsec connect [--tls] [--timeout MS] "
                    "(TICKET | --ticket-file PATH | --inherited)\n");
    return 2;
}

int cmd_connect(int argc, char **argv)
{
    char ticket[LSEC_TICKET_MAX] = "";
    const char *file = NULL;
    bool inherited = false, have_ticket = false;
    int timeout = 10000, rc;
    lsec_opts o;
    lsec_channel *ch = NULL;

    lsec_opts_init(&o);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tls") == 0) {
            o.mode = LSEC_MODE_TLS; /* refuse auth-mode tickets */
        } else if (strcmp(argv[i], "--ticket-file") == 0 && i + 1 < argc) {
            file = argv[++i];
        } else if (strcmp(argv[i], "--inherited") == 0) {
            inherited = true;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            timeout = atoi(argv[++i]);
        } else if (argv[i][0] != '-' && !have_ticket) {
            size_t n = strlen(argv[i]);
            if (n >= sizeof(ticket)) {
                /* Too long to be a ticket, but it may hold one: wipe it. */
                explicit_bzero(argv[i], n);
                fprintf(stderr, "loopsec: connect: malformed ticket\n");
                return 1;
            }
            memcpy(ticket, argv[i], n + 1);
            /* Shorten the window in which /proc/PID/cmdline shows it. */
            explicit_bzero(argv[i], n);
            have_ticket = true;
        } else {
            return usage_connect();
        }
    }
    if ((int)have_ticket + (file != NULL) + (int)inherited != 1)
        return usage_connect();
    if (inherited)
        rc = lsec_connect_inherited(&o, timeout, &ch);
    else if (file != NULL)
        rc = lsec_connect_file(file, &o, timeout, &ch);
    else
        rc = lsec_connect(ticket, &o, timeout, &ch);
    explicit_bzero(ticket, sizeof(ticket));
    if (rc != 0) {
        cli_error("connect", rc);
        return 1;
    }
    return cli_relay(ch);
}
