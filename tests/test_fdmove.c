/*
 * lsec_send_from_fd / lsec_recv_to_fd (lib/fdmove.c) over real loopback
 * channels: round trips mixed with lsec_send/lsec_recv, the end of the
 * input, exact codes for wrong descriptors, tls, oversized and cut
 * messages, abort from another thread, timeout 0, a full output, a full
 * socket (queueing; nothing taken before it has room), bytes the channel
 * already holds delivered first, and no SIGPIPE.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

struct acc {
    lsec_listener *l;
    lsec_channel *ch;
    int rc;
};

static void *accept_thread(void *arg)
{
    struct acc *j = arg;
    j->rc = lsec_accept(j->l, 5000, &j->ch);
    return NULL;
}

static void pair_mode(int mode, size_t max_message, lsec_channel **server,
                      lsec_channel **client)
{
    char ticket[LSEC_TICKET_MAX];
    struct acc j = {NULL, NULL, 99};
    pthread_t th;
    lsec_opts o;

    lsec_opts_init(&o);
    o.mode = mode;
    if (max_message > 0)
        o.max_message = max_message;
    assert_int_equal(lsec_listen("127.0.0.1:0", &o, &j.l), 0);
    assert_int_equal(lsec_listener_ticket(j.l, ticket, sizeof(ticket)), 0);
    assert_int_equal(pthread_create(&th, NULL, accept_thread, &j), 0);
    assert_int_equal(lsec_connect(ticket, &o, 5000, client), 0);
    pthread_join(th, NULL);
    assert_int_equal(j.rc, 0);
    *server = j.ch;
    lsec_listener_close(j.l);
}

static void pair(lsec_channel **server, lsec_channel **client)
{
    pair_mode(LSEC_MODE_AUTH, 0, server, client);
}

static void make_pipe(int p[2])
{
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    /* Room for a 64 KiB message however the kernel splits it into
     * buffers (a pipe holds 16 buffers, not 64 KiB). */
    (void)fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
}

static void close_pipe(const int p[2])
{
    close(p[0]);
    close(p[1]);
}

static void close_pair(lsec_channel *s, lsec_channel *c)
{
    lsec_channel_close(s);
    lsec_channel_close(c);
}

/* A pipe of the default size, for tests that fill it. */
static void small_pipe(int p[2])
{
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
}

static void fill(uint8_t *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(i * 31u + seed);
}

static void read_exact(int fd, uint8_t *b, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t r = read(fd, b + off, n - off);
        assert_true(r > 0);
        off += (size_t)r;
    }
}

/* Pipe -> send_from_fd -> recv_to_fd -> pipe, and each mixed with the
 * copying calls. */
static void test_round_trip(void **state)
{
    (void)state;
    lsec_channel *s, *c;
    int in[2], out[2];
    static uint8_t a[65536], b[65536];
    size_t moved = 0, len = 0;

    pair(&s, &c);
    make_pipe(in);
    make_pipe(out);
    fill(a, sizeof(a), 1);
    assert_int_equal(write(in[1], a, sizeof(a)), (ssize_t)sizeof(a));
    assert_int_equal(lsec_send_from_fd(c, in[0], sizeof(a), &moved, 2000), 0);
    assert_int_equal(moved, sizeof(a));
    assert_int_equal(lsec_recv_to_fd(s, out[1], &moved, 2000), 0);
    assert_int_equal(moved, sizeof(a));
    read_exact(out[0], b, sizeof(b));
    assert_memory_equal(a, b, sizeof(a));

    /* max bounds the message; what is left stays in fd for the next one. */
    assert_int_equal(write(in[1], "hello world", 11), 11);
    assert_int_equal(lsec_send_from_fd(s, in[0], 5, &moved, 2000), 0);
    assert_int_equal(moved, 5);
    assert_int_equal(lsec_send_from_fd(s, in[0], 100, &moved, 2000), 0);
    assert_int_equal(moved, 6);
    assert_int_equal(lsec_recv(c, b, sizeof(b), &len, 2000), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(b, "hello", 5);
    assert_int_equal(lsec_recv(c, b, sizeof(b), &len, 2000), 0);
    assert_int_equal(len, 6);
    assert_memory_equal(b, " world", 6);

    /* lsec_send -> lsec_recv_to_fd, an empty message included. */
    assert_int_equal(lsec_send(c, "xyz", 3, 2000), 0);
    assert_int_equal(lsec_send(c, "", 0, 2000), 0);
    assert_int_equal(lsec_recv_to_fd(s, out[1], &moved, 2000), 0);
    assert_int_equal(moved, 3);
    assert_int_equal(lsec_recv_to_fd(s, out[1], &moved, 2000), 0);
    assert_int_equal(moved, 0);
    read_exact(out[0], b, 3);
    assert_memory_equal(b, "xyz", 3);

    /* The end of the input: 0 with nothing moved, and nothing sent. */
    close(in[1]);
    moved = 99;
    assert_int_equal(lsec_send_from_fd(c, in[0], 100, &moved, 2000), 0);
    assert_int_equal(moved, 0);
    assert_int_equal(lsec_recv_to_fd(s, out[1], &moved, 0), LSEC_EAGAIN);
    assert_int_equal(moved, 0);

    close(in[0]);
    close_pipe(out);
    close_pair(s, c);
}

static void test_wrong_fd(void **state)
{
    (void)state;
    lsec_channel *s, *c;
    int p[2];
    size_t moved = 7;

    pair(&s, &c);
    make_pipe(p);
    assert_int_equal(lsec_send_from_fd(c, -1, 10, &moved, 0), LSEC_EINVAL);
    assert_int_equal(moved, 0);
    assert_int_equal(lsec_send_from_fd(NULL, p[0], 10, &moved, 0), LSEC_EINVAL);
    assert_int_equal(lsec_send_from_fd(c, p[0], 10, NULL, 0), LSEC_EINVAL);
    assert_int_equal(lsec_send_from_fd(c, p[0], 0, &moved, 0), LSEC_EINVAL);
    assert_int_equal(lsec_send_from_fd(c, p[0], 10, &moved, -2), LSEC_EINVAL);
    assert_int_equal(lsec_recv_to_fd(s, -1, &moved, 0), LSEC_EINVAL);
    assert_int_equal(lsec_recv_to_fd(s, p[1], NULL, 0), LSEC_EINVAL);
    /* The channel's own socket. */
    assert_int_equal(lsec_send_from_fd(c, lsec_channel_fd(c), 10, &moved, 0),
                     LSEC_EINVAL);
    assert_int_equal(lsec_recv_to_fd(s, lsec_channel_fd(s), &moved, 0),
                     LSEC_EINVAL);
    /* A descriptor that is not open. */
    int dead = 1000;
    assert_int_equal(fcntl(dead, F_GETFD), -1);
    assert_int_equal(lsec_send_from_fd(c, dead, 10, &moved, 1000), LSEC_EINVAL);
    /* One that splice cannot read (a directory): nothing was sent. */
    int dir = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dir >= 0);
    assert_int_equal(lsec_send_from_fd(c, dir, 10, &moved, 1000), LSEC_EINVAL);
    close(dir);
    /* The channel is still fine after all of these. */
    assert_int_equal(write(p[1], "ok", 2), 2);
    assert_int_equal(lsec_send_from_fd(c, p[0], 10, &moved, 1000), 0);
    assert_int_equal(moved, 2);
    /* Writing a message to the read end of a pipe: EBADF, the message is
     * cut and the channel broken. */
    assert_int_equal(lsec_recv_to_fd(s, p[0], &moved, 1000), LSEC_EINVAL);
    assert_int_equal(lsec_recv_to_fd(s, p[1], &moved, 0), LSEC_EINVAL);
    close_pipe(p);
    close_pair(s, c);
}

static void test_tls_refused(void **state)
{
    (void)state;
    lsec_channel *s, *c;
    int p[2];
    size_t moved = 3;

    pair_mode(LSEC_MODE_TLS, 0, &s, &c);
    make_pipe(p);
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_int_equal(lsec_send_from_fd(c, p[0], 10, &moved, 1000), LSEC_EMODE);
    assert_int_equal(moved, 0);
    assert_int_equal(lsec_recv_to_fd(s, p[1], &moved, 1000), LSEC_EMODE);
    /* Nothing was taken from the pipe, and the channel still works. */
    char ch = 0;
    assert_int_equal(read(p[0], &ch, 1), 1);
    assert_int_equal(lsec_send(c, "t", 1, 1000), 0);
    char buf[4];
    size_t len = 0;
    assert_int_equal(lsec_recv(s, buf, sizeof(buf), &len, 1000), 0);
    assert_int_equal(len, 1);
    close_pipe(p);
    close_pair(s, c);
}

/* A message above the receiver's max_message: LSEC_EPROTO before any byte
 * of it is written, and for good. */
static void test_oversized(void **state)
{
    (void)state;
    lsec_channel *s, *c;
    int in[2], out[2];
    static uint8_t a[2000];
    size_t moved = 0;

    pair_mode(LSEC_MODE_AUTH, 1000, &s, &c);
    make_pipe(in);
    make_pipe(out);
    fill(a, sizeof(a), 3);
    assert_int_equal(write(in[1], a, 1000), 1000);
    assert_int_equal(lsec_send_from_fd(c, in[0], 1000, &moved, 1000), 0);
    assert_int_equal(write(in[1], a, 1001), 1001);
    assert_int_equal(lsec_send_from_fd(c, in[0], 2000, &moved, 1000), 0);
    assert_int_equal(moved, 1001);
    assert_int_equal(lsec_recv_to_fd(s, out[1], &moved, 1000), 0);
    assert_int_equal(moved, 1000);
    assert_int_equal(lsec_recv_to_fd(s, out[1], &moved, 1000), LSEC_EPROTO);
    assert_int_equal(moved, 0);
    assert_int_equal(lsec_recv_to_fd(s, out[1], &moved, 0), LSEC_EPROTO);
    uint8_t b[1000];
    read_exact(out[0], b, 1000);
    assert_memory_equal(a, b, 1000);
    assert_int_equal(fcntl(out[0], F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(read(out[0], b, 1), -1); /* nothing of the big one */
    close_pipe(in);
    close_pipe(out);
    close_pair(s, c);
}

/* The peer announces 100 bytes, sends 10 and ends: LSEC_ERESET, after the
 * 10 bytes were written out. */
static void test_peer_closes_mid_message(void **state)
{
    (void)state;
    lsec_channel *s, *c;
    int out[2];
    size_t moved = 0;
    uint8_t frame[14] = {0, 0, 0, 100, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};

    pair(&s, &c);
    make_pipe(out);
    assert_int_equal(
        send(lsec_channel_fd(c), frame, sizeof(frame), MSG_NOSIGNAL),
        (ssize_t)sizeof(frame));
    shutdown(lsec_channel_fd(c), SHUT_WR);
    assert_int_equal(lsec_recv_to_fd(s, out[1], &moved, 2000), LSEC_ERESET);
    assert_int_equal(lsec_recv_to_fd(s, out[1], &moved, 0), LSEC_ERESET);
    close_pipe(out);
    close_pair(s, c);
}

struct blocked {
    lsec_channel *ch;
    int fd;
    bool sending;
    int rc;
};

static void *blocked_call(void *arg)
{
    struct blocked *b = arg;
    size_t moved = 0;
    b->rc = b->sending ? lsec_send_from_fd(b->ch, b->fd, 100, &moved, 10000)
                       : lsec_recv_to_fd(b->ch, b->fd, &moved, 10000);
    return NULL;
}

/* lsec_channel_abort from another thread wakes a call waiting on the
 * socket, and one waiting on the caller's descriptor. */
static void test_abort_wakes(void **state)
{
    (void)state;
    for (int k = 0; k < 2; k++) {
        lsec_channel *s, *c;
        int p[2];
        pthread_t th;
        pair(&s, &c);
        make_pipe(p);
        /* k 0: recv waits for the socket; k 1: send waits for an input
         * pipe that stays empty. */
        struct blocked b = {k == 0 ? s : c, k == 0 ? p[1] : p[0], k == 1, 99};
        int64_t t0 = lsec__now_ms();
        assert_int_equal(pthread_create(&th, NULL, blocked_call, &b), 0);
        usleep(100 * 1000);
        lsec_channel_abort(b.ch);
        pthread_join(th, NULL);
        assert_int_equal(b.rc, LSEC_ECLOSED);
        assert_true(lsec__now_ms() - t0 < 5000);
        size_t moved = 0;
        assert_int_equal(lsec_recv_to_fd(b.ch, p[1], &moved, 0), LSEC_ECLOSED);
        close_pipe(p);
        close_pair(s, c);
    }
}

/* Timeout 0: LSEC_EAGAIN with nothing taken; an output that is full keeps
 * the message under way (its header taken, its payload on the way), and
 * lsec_channel_pending says the bytes wait for the descriptor. */
static void test_eagain(void **state)
{
    (void)state;
    lsec_channel *s, *c;
    int in[2], out[2];
    static uint8_t a[65536], b[65536];
    size_t moved = 5, total = 0;
    uint8_t tmp[64];

    pair(&s, &c);
    make_pipe(in);
    small_pipe(out);
    assert_int_equal(lsec_send_from_fd(c, in[0], 100, &moved, 0), LSEC_EAGAIN);
    assert_int_equal(moved, 0);
    int64_t t0 = lsec__now_ms();
    assert_int_equal(lsec_send_from_fd(c, in[0], 100, &moved, 100),
                     LSEC_ETIMEDOUT);
    assert_true(lsec__now_ms() - t0 >= 90);
    assert_int_equal(lsec_recv_to_fd(s, out[1], &moved, 0), LSEC_EAGAIN);
    assert_int_equal(moved, 0);
    assert_int_equal(lsec_channel_pending(s), 0);

    /* Fill the output pipe to its last slot (how many bytes that takes
     * depends on how the kernel packs pages, so the pipe is written until
     * it refuses). */
    assert_int_equal(fcntl(out[1], F_SETFL, O_NONBLOCK), 0);
    memset(a, 0, sizeof(a));
    size_t filler = 0;
    ssize_t w;
    while ((w = write(out[1], a, sizeof(a))) > 0)
        filler += (size_t)w;
    assert_int_equal(errno, EAGAIN);
    assert_true(filler > 0 && filler <= sizeof(b));
    fill(a, sizeof(a), 9);
    assert_int_equal(lsec_send(c, a, 20000, 1000), 0);
    int rc = LSEC_EAGAIN;
    for (int i = 0;
         i < 200 && rc == LSEC_EAGAIN && lsec_channel_pending(s) == 0; i++) {
        rc = lsec_recv_to_fd(s, out[1], &moved, 0);
        total += moved;
        if (rc == LSEC_EAGAIN && lsec_channel_pending(s) == 0)
            usleep(5000);
    }
    assert_int_equal(rc, LSEC_EAGAIN);
    assert_true(total < 20000);
    assert_true(lsec_channel_pending(s) > 0);
    /* Mixing in lsec_recv now is refused. */
    size_t len = 0;
    assert_int_equal(lsec_recv(s, tmp, sizeof(tmp), &len, 0), LSEC_EINVAL);
    /* Drain the filler; the rest of the message follows in order. */
    read_exact(out[0], b, filler);
    assert_int_equal(fcntl(out[0], F_SETFL, O_NONBLOCK), 0);
    size_t seen = 0;
    for (int i = 0; i < 400 && (rc != 0 || seen < total); i++) {
        if (rc != 0) {
            rc = lsec_recv_to_fd(s, out[1], &moved, 10);
            total += moved;
        }
        ssize_t r = read(out[0], b + seen, sizeof(b) - seen);
        if (r > 0)
            seen += (size_t)r;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(total, 20000);
    assert_int_equal(seen, 20000);
    assert_memory_equal(a, b, 20000);
    assert_int_equal(lsec_channel_pending(s), 0);
    /* And lsec_recv works again. */
    assert_int_equal(lsec_send(c, "z", 1, 1000), 0);
    assert_int_equal(lsec_recv(s, tmp, sizeof(tmp), &len, 1000), 0);
    assert_int_equal(len, 1);
    close_pipe(in);
    close_pipe(out);
    close_pair(s, c);
}

/* A socket that does not take a started message: the rest is queued, 0 is
 * returned, and every byte arrives in order. */
static void test_full_socket_queues(void **state)
{
    (void)state;
    lsec_channel *s, *c;
    int in[2];
    static uint8_t a[65536], b[65536];
    size_t moved = 0, len = 0;
    uint64_t sent = 0, got = 0;
    int rc;

    pair(&s, &c);
    make_pipe(in);
    int small = 4096;
    setsockopt(lsec_channel_fd(c), SOL_SOCKET, SO_SNDBUF, &small,
               sizeof(small));
    setsockopt(lsec_channel_fd(s), SOL_SOCKET, SO_RCVBUF, &small,
               sizeof(small));
    fill(a, sizeof(a), 5);
    bool queued = false;
    for (int i = 0; i < 64 && !queued; i++) {
        assert_int_equal(write(in[1], a, sizeof(a)), (ssize_t)sizeof(a));
        rc = lsec_send_from_fd(c, in[0], sizeof(a), &moved, 0);
        if (rc == LSEC_EAGAIN) {
            /* Nothing taken: empty the pipe for the next round. */
            read_exact(in[0], b, sizeof(a));
            break;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(moved, sizeof(a));
        sent++;
        queued = lsec_channel_queued(c) > 0;
    }
    assert_true(queued);
    /* The receiver takes everything; the sender flushes as it goes. */
    for (int i = 0; i < 5000 && got < sent; i++) {
        rc = lsec_flush(c, 0);
        assert_true(rc == 0 || rc == LSEC_EAGAIN);
        rc = lsec_recv(s, b, sizeof(b), &len, 1);
        if (rc == LSEC_ETIMEDOUT)
            continue;
        assert_int_equal(rc, 0);
        assert_int_equal(len, sizeof(a));
        assert_memory_equal(a, b, sizeof(a));
        got++;
    }
    assert_int_equal(got, sent);
    assert_int_equal(lsec_channel_queued(c), 0);
    close_pipe(in);
    close_pair(s, c);
}

/* A full socket and an empty queue: timeout 0 takes nothing from the input
 * (the socket is polled before fd is read), so no byte is lost or queued.
 * (A longer timeout is not tested: the kernel frees room in the socket
 * while the test waits.) */
static void test_full_socket_takes_nothing(void **state)
{
    (void)state;
    lsec_channel *s, *c;
    int in[2], avail = 0;
    static uint8_t junk[65536];
    size_t moved = 9;

    pair(&s, &c);
    make_pipe(in);
    int fd = lsec_channel_fd(c), small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    setsockopt(lsec_channel_fd(s), SOL_SOCKET, SO_RCVBUF, &small,
               sizeof(small));
    /* Fill the socket under the channel (the receiver never reads) until
     * poll no longer calls it writable: the peer's window is shut. */
    bool full = false;
    for (int round = 0; round < 200 && !full; round++) {
        struct pollfd pf = {fd, POLLOUT, 0};
        size_t chunk = round < 20 ? sizeof(junk) : 512;
        while (send(fd, junk, chunk, MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
            ;
        usleep(10 * 1000);
        full = poll(&pf, 1, 0) == 0;
    }
    assert_true(full);
    assert_int_equal(lsec_channel_queued(c), 0);
    assert_int_equal(write(in[1], "0123456789", 10), 10);
    assert_int_equal(lsec_send_from_fd(c, in[0], 100, &moved, 0), LSEC_EAGAIN);
    assert_int_equal(moved, 0);
    assert_int_equal(ioctl(in[0], FIONREAD, &avail), 0);
    assert_int_equal(avail, 10);
    assert_int_equal(lsec_channel_queued(c), 0);
    close_pipe(in);
    close_pair(s, c);
}

/* Bytes the channel holds before lsec_recv_to_fd starts (read ahead behind
 * an earlier message, or stashed by a lsec_recv that a timeout cut) are
 * written first, in order. */
static void test_buffered_first(void **state)
{
    (void)state;
    lsec_channel *s, *c;
    int out[2];
    uint8_t buf[64];
    size_t len = 0, moved = 0;

    pair(&s, &c);
    make_pipe(out);
    /* Three messages in one segment: lsec_recv reads all three ahead. */
    uint8_t three[] = {0,   0,   0, 1, 'a', 0, 0,   0,   2,
                       'b', 'c', 0, 0, 0,   3, 'd', 'e', 'f'};
    assert_int_equal(send(lsec_channel_fd(c), three, sizeof(three), 0),
                     (ssize_t)sizeof(three));
    usleep(20 * 1000);
    assert_int_equal(lsec_recv(s, buf, sizeof(buf), &len, 1000), 0);
    assert_int_equal(len, 1);
    assert_true(lsec_channel_pending(s) > 0);
    assert_int_equal(lsec_recv_to_fd(s, out[1], &moved, 1000), 0);
    assert_int_equal(moved, 2);
    assert_int_equal(lsec_recv_to_fd(s, out[1], &moved, 1000), 0);
    assert_int_equal(moved, 3);
    read_exact(out[0], buf, 5);
    assert_memory_equal(buf, "bcdef", 5);

    /* A stash: half a message, a lsec_recv that times out, the rest, then
     * lsec_recv_to_fd. */
    static uint8_t big[20000], back[20000];
    uint8_t hdr[4];
    fill(big, sizeof(big), 7);
    lsec__frame_header(hdr, sizeof(big));
    assert_int_equal(send(lsec_channel_fd(c), hdr, 4, 0), 4);
    assert_int_equal(send(lsec_channel_fd(c), big, 9000, 0), 9000);
    usleep(20 * 1000);
    assert_int_equal(lsec_recv(s, back, sizeof(back), &len, 50),
                     LSEC_ETIMEDOUT);
    assert_int_equal(
        send(lsec_channel_fd(c), big + 9000, sizeof(big) - 9000, 0),
        (ssize_t)(sizeof(big) - 9000));
    size_t total = 0;
    int rc;
    do {
        rc = lsec_recv_to_fd(s, out[1], &moved, 1000);
        total += moved;
    } while (rc == LSEC_ETIMEDOUT);
    assert_int_equal(rc, 0);
    assert_int_equal(total, sizeof(big));
    read_exact(out[0], back, sizeof(back));
    assert_memory_equal(big, back, sizeof(big));
    close_pipe(out);
    close_pair(s, c);
}

/* The reader of the output pipe is gone: LSEC_EIO, and no SIGPIPE (its
 * default action would end this test). */
static void test_no_sigpipe(void **state)
{
    (void)state;
    lsec_channel *s, *c;
    int out[2];
    static uint8_t a[8192];
    size_t moved = 0;

    signal(SIGPIPE, SIG_DFL);
    pair(&s, &c);
    make_pipe(out);
    close(out[0]);
    fill(a, sizeof(a), 2);
    assert_int_equal(lsec_send(c, a, sizeof(a), 1000), 0);
    assert_int_equal(lsec_recv_to_fd(s, out[1], &moved, 1000), LSEC_EIO);
    /* No SIGPIPE is left pending either. */
    sigset_t pend;
    sigemptyset(&pend);
    assert_int_equal(sigpending(&pend), 0);
    assert_false(sigismember(&pend, SIGPIPE));
    close(out[1]);
    close_pair(s, c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_wrong_fd),
        cmocka_unit_test(test_tls_refused),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_peer_closes_mid_message),
        cmocka_unit_test(test_abort_wakes),
        cmocka_unit_test(test_eagain),
        cmocka_unit_test(test_full_socket_queues),
        cmocka_unit_test(test_full_socket_takes_nothing),
        cmocka_unit_test(test_buffered_first),
        cmocka_unit_test(test_no_sigpipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
