/*
 * The one relay of the command line: a channel on one side, a pair of
 * descriptors (stdin/stdout, a socket, a child's pipes) on the other.
 *
 * Both directions move independently, each through one bounded buffer: a
 * chunk of at most CLI_CHUNK bytes read from the input waits to become one
 * message (the channel holds at most one partly written message more), and
 * one received message waits to be written out.  A side that stops reading
 * stops only its own direction.  No call here blocks (except writes to a
 * regular file or terminal, which do not wait for a peer): the owner polls
 * the descriptors that cli_pump_events names and calls cli_pump_step.
 *
 * In auth mode, a direction whose descriptor allows it (input: a socket;
 * output: a pipe or socket of our own) moves by splice
 * (lsec_send_from_fd, lsec_recv_to_fd): the bytes go between the
 * descriptor and the channel's socket as page references, never through
 * ubuf/dbuf, and the bounds are the same (one chunk read, at most one
 * message queued; one message under way to the output).
 *
 * End of data: at the end of the input, what was read is sent and the
 * channel's sending direction is ended (lsec_channel_shutdown); when the
 * peer ends its direction, the output is ended (shutdown(SHUT_WR) of a
 * socket, closing a pipe).  The pump is done when both directions ended.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(cli_pump *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof(p->err), fmt, ap);
    va_end(ap);
    p->failed = true;
    return -1;
}

static int fail_lsec(cli_pump *p, const char *what, int rc)
{
    const char *d = lsec_last_detail();
    if (d[0] != '\0')
        return fail(p, "%s: %s (%s)", what, lsec_strerror(rc), d);
    return fail(p, "%s: %s", what, lsec_strerror(rc));
}

bool cli_fd_is_socket(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

/*
 * The system's congestion control may pace: bbr (this machine's default)
 * has a timer release segments at its estimate of the link's rate, which
 * on loopback, where there is no link to share, only holds segments back
 * and sends some of them from the timer's CPU, out of order with the rest.
 * 4 GiB through serve/forward in a network namespace of its own: 518-530
 * out-of-order segments with bbr, 291-298 with reno, and 1.07-1.20x the
 * throughput; scripts/bench.sh --cli, serve/forward auth 1.13x the
 * unchanged build in the same run (docs/BENCHMARKS.md, "guard").  reno is
 * built into every kernel and allowed to unprivileged processes unless an
 * administrator removed it from net.ipv4.tcp_allowed_congestion_control;
 * cubic, Linux's usual default, does not pace either, but an unprivileged
 * process may choose only the default and what that list names (here:
 * reno and bbr).
 */
void cli_tcp_loopback(int fd)
{
    static const char cc[] = "reno";
    (void)setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc, sizeof(cc) - 1);
}

/*
 * Make writes to `fd` non-blocking without changing a description that
 * others share: a pipe is reopened through /proc (a new open file
 * description on the same pipe) and put in its place; a socket is written
 * with MSG_DONTWAIT.  Regular files and terminals stay as they are.
 * Returns true when writes will not block.
 */
static bool make_nonblocking_out(int fd, bool *sock)
{
    struct stat st;
    char path[64];

    *sock = false;
    if (fstat(fd, &st) != 0)
        return false;
    if (S_ISSOCK(st.st_mode)) {
        *sock = true;
        return true;
    }
    if (!S_ISFIFO(st.st_mode))
        return false;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK))
        return true; /* ours already, e.g. serve's pipes to a child */
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    /* The same access mode: a FIFO opened read-write may have no other
     * reader, and must not lose the one it has. */
    int acc = fl >= 0 && (fl & O_ACCMODE) == O_RDWR ? O_RDWR : O_WRONLY;
    int nfd = open(path, acc | O_NONBLOCK | O_CLOEXEC);
    if (nfd < 0)
        return false;
    if (dup3(nfd, fd, fd > 2 ? O_CLOEXEC : 0) < 0) {
        close(nfd);
        return false;
    }
    close(nfd);
    return true;
}

/* Does splicing `fd` pay?  Sockets only (read only once poll says
 * readable): serve's backend and forward's clients.  A pipe or a file
 * would go through the library's own pipe, a second splice, and measured
 * slower than copying: a 1 GiB relay from a pipe, side by side on a quiet
 * machine, 0.86-0.87x socat spliced against 1.00x copied (serve/forward
 * from sockets: 2.71-2.82x stunnel4 spliced, 2.31x copied). */
static bool splice_in_ok(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* Can splice write `fd` without blocking?  A pipe or socket whose own
 * description is non-blocking (make_nonblocking_out reopened a pipe so; a
 * socket someone else shares is left alone and written by copy, with
 * MSG_DONTWAIT). */
static bool splice_out_ok(int fd, bool out_nb)
{
    struct stat st;
    int fl = fcntl(fd, F_GETFL);
    return out_nb && fl >= 0 && (fl & O_NONBLOCK) && fstat(fd, &st) == 0 &&
           (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

int cli_pump_init(cli_pump *p, lsec_channel *ch, int in_fd, int out_fd,
                  int eof_wait_ms)
{
    memset(p, 0, sizeof(*p));
    p->ch = ch;
    p->in_fd = in_fd;
    p->out_fd = out_fd;
    p->eof_wait_ms = eof_wait_ms;
    p->in_sock = cli_fd_is_socket(in_fd);
    cli_tcp_loopback(lsec_channel_fd(ch));
    p->out_nb = make_nonblocking_out(out_fd, &p->out_sock);
    if (lsec_channel_mode(ch) == LSEC_MODE_AUTH &&
        getenv("LOOPSEC_NO_SPLICE") == NULL) {
        p->up_splice = splice_in_ok(in_fd);
        p->down_splice = splice_out_ok(out_fd, p->out_nb);
    }
    p->ubuf = malloc(CLI_CHUNK);
    p->dcap = CLI_CHUNK;
    p->dbuf = malloc(p->dcap);
    if (p->ubuf == NULL || p->dbuf == NULL) {
        free(p->ubuf);
        free(p->dbuf);
        p->ubuf = p->dbuf = NULL;
        return -1;
    }
    return 0;
}

bool cli_pump_done(const cli_pump *p)
{
    return p->up_done && p->down_done;
}

void cli_pump_events(const cli_pump *p, struct pollfd *pf, int *timeout_ms)
{
    short chev = 0;

    pf[0].fd = pf[1].fd = pf[2].fd = -1;
    pf[0].events = pf[1].events = pf[2].events = 0;
    pf[0].revents = pf[1].revents = pf[2].revents = 0;
    if (!p->up_done && !p->in_eof && p->ulen == 0 && !p->up_queued &&
        !p->up_need_out) {
        pf[0].fd = p->in_fd;
        pf[0].events = POLLIN;
    }
    if (!p->down_done &&
        ((p->doff < p->dlen && p->out_nb) || p->down_need_out)) {
        pf[1].fd = p->out_fd;
        pf[1].events = POLLOUT;
    }
    if (!p->down_done && !p->rx_eof && p->doff == p->dlen &&
        !p->down_need_out) {
        chev |= POLLIN;
        if (lsec_channel_pending(p->ch) > 0)
            *timeout_ms = 0;
    }
    if (!p->up_done &&
        (p->up_queued || p->ulen > 0 || p->in_eof || p->up_need_out))
        chev |= POLLOUT;
    if (chev != 0) {
        pf[2].fd = lsec_channel_fd(p->ch);
        pf[2].events = chev;
    }
    if (p->in_eof && !p->down_done && p->eof_wait_ms >= 0) {
        int64_t left = p->eof_deadline - cli_now_ms();
        int t = left > 0 ? (int)left : 0;
        if (*timeout_ms < 0 || t < *timeout_ms)
            *timeout_ms = t;
    }
}

/* Read one chunk of input into ubuf.  0 to go on (ulen set, or the end,
 * or nothing there yet), -1 failed. */
static int read_in(cli_pump *p)
{
    ssize_t n = p->in_sock ? recv(p->in_fd, p->ubuf, CLI_CHUNK, MSG_DONTWAIT)
                           : read(p->in_fd, p->ubuf, CLI_CHUNK);
    if (n > 0) {
        p->ulen = (size_t)n;
        p->in_bytes += (uint64_t)n;
    } else if (n == 0) {
        p->in_eof = true;
        p->eof_deadline = cli_now_ms() + p->eof_wait_ms;
    } else if (errno != EINTR && errno != EAGAIN) {
        return fail(p, "reading %s: %s", p->in_name, strerror(errno));
    }
    return 0;
}

/* Flush what the channel still holds of the last message: 0 when it is
 * out, 1 when it must wait for the socket, -1 failed. */
static int flush_up(cli_pump *p)
{
    int rc;

    if (!p->up_queued)
        return 0;
    rc = lsec_flush(p->ch, 0);
    if (rc == LSEC_EAGAIN)
        return 1;
    if (rc != 0)
        return fail_lsec(p, "send", rc);
    p->up_queued = false;
    return 0;
}

/* Send what ubuf holds and flush it.  0 to go on, -1 failed. */
static int send_up(cli_pump *p)
{
    int rc;

    if ((rc = flush_up(p)) != 0)
        return rc < 0 ? -1 : 0;
    if (p->ulen > 0) {
        rc = lsec_send(p->ch, p->ubuf, p->ulen, 0);
        if (rc == LSEC_EAGAIN)
            return 0;
        if (rc != 0)
            return fail_lsec(p, "send", rc);
        p->ulen = 0;
        rc = lsec_flush(p->ch, 0);
        if (rc == LSEC_EAGAIN) {
            p->up_queued = true;
            return 0;
        }
        if (rc != 0)
            return fail_lsec(p, "send", rc);
    }
    return 0;
}

/* Input -> channel by splice: one message straight from the input, when
 * the input is readable (or was, and the socket has room again).  0 to go
 * on, -1 failed. */
static int splice_up(cli_pump *p, const struct pollfd *pf)
{
    size_t moved = 0;
    int rc;

    if ((rc = flush_up(p)) != 0)
        return rc < 0 ? -1 : 0;
    bool ready = p->up_need_out
                     ? (pf[2].fd >= 0 &&
                        (pf[2].revents & (POLLOUT | POLLERR | POLLHUP)) != 0)
                     : (pf[0].fd >= 0 && pf[0].revents != 0);
    if (!ready || p->in_eof)
        return 0;
    rc = lsec_send_from_fd(p->ch, p->in_fd, CLI_SPLICE_CHUNK, &moved, 0);
    if (rc == LSEC_EAGAIN) {
        /* The input was readable: it is the socket that is full (or the
         * input was emptied by someone else: then the next poll of the
         * socket finds room, and we look at the input again). */
        p->up_need_out = !p->up_need_out;
        return 0;
    }
    p->up_need_out = false;
    if (rc != 0)
        return fail_lsec(p, "send", rc);
    if (moved == 0) {
        p->in_eof = true;
        p->eof_deadline = cli_now_ms() + p->eof_wait_ms;
        return 0;
    }
    p->in_bytes += moved;
    p->up_queued = lsec_channel_queued(p->ch) > 0;
    return 0;
}

/* Input -> channel.  0 to go on, -1 failed. */
static int step_up(cli_pump *p, const struct pollfd *pf)
{
    int rc;

    if (p->up_done)
        return 0;
    if (p->up_splice) {
        if (splice_up(p, pf) != 0)
            return -1;
    } else {
        if (pf[0].fd >= 0 && pf[0].revents != 0 && read_in(p) != 0)
            return -1;
        if (send_up(p) != 0)
            return -1;
    }
    if (p->in_eof && p->ulen == 0 && !p->up_queued) {
        rc = lsec_channel_shutdown(p->ch, 0);
        if (rc == LSEC_EAGAIN)
            return 0;
        if (rc != 0)
            return fail_lsec(p, "ending our side", rc);
        p->up_done = true;
    }
    return 0;
}

/* End the output: the peer has ended its direction. */
static void end_output(cli_pump *p)
{
    if (p->out_sock) {
        (void)shutdown(p->out_fd, SHUT_WR);
    } else if (p->out_fd > 2) {
        close(p->out_fd);
    } else {
        /* stdout: replace it with /dev/null so the reader sees the end and
         * the number is not reused by a later open. */
        int dn = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (dn >= 0) {
            dup2(dn, p->out_fd);
            close(dn);
        }
    }
    if (p->out_fd > 2 && !p->out_sock)
        p->out_fd = -1;
    p->down_done = true;
}

/* Write what is buffered.  0 to go on, -1 failed. */
static int flush_out(cli_pump *p)
{
    while (p->doff < p->dlen) {
        ssize_t w =
            p->out_sock
                ? send(p->out_fd, p->dbuf + p->doff, p->dlen - p->doff,
                       MSG_DONTWAIT | MSG_NOSIGNAL)
                : write(p->out_fd, p->dbuf + p->doff, p->dlen - p->doff);
        if (w > 0) {
            p->doff += (size_t)w;
            p->out_bytes += (uint64_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN && p->out_nb)
            return 0;
        return fail(p, "writing %s: %s", p->out_name,
                    w < 0 ? strerror(errno) : "nothing written");
    }
    p->doff = p->dlen = 0;
    return 0;
}

/* Channel -> output by splice.  0 to go on, -1 failed. */
static int splice_down(cli_pump *p, const struct pollfd *pf)
{
    if (p->down_need_out) {
        if (pf[1].fd < 0 || pf[1].revents == 0)
            return 0;
        p->down_need_out = false;
    } else if (!p->rx_eof && pf[2].fd >= 0 && (pf[2].events & POLLIN) != 0 &&
               (pf[2].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) == 0 &&
               lsec_channel_pending(p->ch) == 0) {
        return 0; /* as in step_down: nothing came */
    }
    for (int i = 0; i < 16 && !p->rx_eof; i++) {
        size_t moved = 0;
        int rc = lsec_recv_to_fd(p->ch, p->out_fd, &moved, 0);
        p->out_bytes += moved;
        if (rc == 0)
            continue;
        if (rc == LSEC_EAGAIN) {
            /* Held bytes wait for the output; none: for the socket. */
            p->down_need_out = lsec_channel_pending(p->ch) > 0;
            break;
        }
        if (rc == LSEC_ECLOSED) {
            p->rx_eof = true;
            break;
        }
        return fail_lsec(p, "receive", rc);
    }
    if (p->rx_eof)
        end_output(p);
    return 0;
}

/* Channel -> output.  0 to go on, -1 failed. */
static int step_down(cli_pump *p, const struct pollfd *pf)
{
    if (p->down_done)
        return 0;
    if (p->down_splice)
        return splice_down(p, pf);
    if (p->doff < p->dlen && flush_out(p) != 0)
        return -1;
    /* Skip the channel when its socket was polled for input and had none
     * and it holds nothing already: a receive that finds nothing is a
     * wasted system call (one per chunk sent, before).  Not polled for
     * input (output was still being written): try at once. */
    if (p->doff == p->dlen && !p->rx_eof && pf[2].fd >= 0 &&
        (pf[2].events & POLLIN) != 0 &&
        (pf[2].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) == 0 &&
        lsec_channel_pending(p->ch) == 0)
        return 0;
    /* A few messages per step, so one busy connection cannot starve the
     * others of a service's loop. */
    for (int i = 0; i < 16 && p->doff == p->dlen && !p->rx_eof; i++) {
        size_t len = 0;
        int rc = lsec_recv(p->ch, p->dbuf, p->dcap, &len, 0);
        if (rc == LSEC_EMSGSIZE) {
            uint8_t *nb = realloc(p->dbuf, len);
            if (nb == NULL)
                return fail(p, "out of memory for a %zu-byte message", len);
            p->dbuf = nb;
            p->dcap = len;
            continue;
        }
        if (rc == LSEC_EAGAIN)
            break;
        if (rc == LSEC_ECLOSED) {
            p->rx_eof = true;
            break;
        }
        if (rc != 0)
            return fail_lsec(p, "receive", rc);
        p->dlen = len;
        p->doff = 0;
        if (flush_out(p) != 0)
            return -1;
    }
    if (p->rx_eof && p->doff == p->dlen)
        end_output(p);
    return 0;
}

int cli_pump_step(cli_pump *p, const struct pollfd *pf)
{
    if (p->failed)
        return -1;
    if (step_up(p, pf) != 0 || step_down(p, pf) != 0)
        return -1;
    if (cli_pump_done(p))
        return 1;
    if (p->in_eof && p->eof_wait_ms >= 0 && cli_now_ms() >= p->eof_deadline)
        return fail(p,
                    "the peer did not end its side within %d ms after the "
                    "end of %s",
                    p->eof_wait_ms, p->in_name);
    return 0;
}

void cli_abort_fd(int fd)
{
    /* A failed relay must not look like a clean end to the peer: close
     * with a reset, not a FIN. */
    struct linger lg = {1, 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

void cli_abort_channel(lsec_channel *ch)
{
    int fd = lsec_channel_fd(ch);
    int dn = open("/dev/null", O_RDWR | O_CLOEXEC);

    /* The socket goes first, with a reset; /dev/null takes its number, so
     * that lsec_channel_close finds nothing to flush (it would wait up to
     * its flush bound: in serve's loop that would stall every other
     * connection) and sends no close_notify, which a peer would take for a
     * clean end.  (A library call for an abortive close would do this
     * properly.) */
    cli_abort_fd(fd);
    if (dn >= 0) {
        (void)dup3(dn, fd, O_CLOEXEC);
        close(dn);
    }
    lsec_channel_close(ch);
}

void cli_pump_free(cli_pump *p)
{
    if (p->ch != NULL) {
        if (p->failed)
            cli_abort_channel(p->ch);
        else
            lsec_channel_close(p->ch);
        p->ch = NULL;
    }
    if (p->ubuf != NULL) {
        explicit_bzero(p->ubuf, CLI_CHUNK);
        free(p->ubuf);
    }
    if (p->dbuf != NULL) {
        explicit_bzero(p->dbuf, p->dcap);
        free(p->dbuf);
    }
    p->ubuf = p->dbuf = NULL;
}

int cli_relay(lsec_channel *ch, int eof_wait_ms)
{
    cli_pump p;
    int status = 0;

    if (cli_pump_init(&p, ch, STDIN_FILENO, STDOUT_FILENO, eof_wait_ms) != 0) {
        fprintf(stderr, "loopsec: out of memory\n");
        cli_abort_channel(ch);
        return 1;
    }
    p.in_name = "stdin";
    p.out_name = "stdout";
    for (;;) {
        struct pollfd pf[3];
        int timeout = -1;
        cli_pump_events(&p, pf, &timeout);
        if (poll(pf, 3, timeout) < 0 && errno != EINTR) {
            fail(&p, "poll: %s", strerror(errno));
            break;
        }
        int r = cli_pump_step(&p, pf);
        if (r != 0)
            break;
    }
    if (p.failed) {
        fprintf(stderr, "loopsec: %s\n", p.err);
        status = 1;
    }
    cli_pump_free(&p);
    return status;
}
