/*
 * fuzz_frame: the message framing as the channel really decodes it
 * (lsec_recv in lib/channel.c over lib/frame.c), and encodes it (lsec_send).
 *
 * The channel runs over a descriptor it owns, but the I/O seam is replaced:
 * recvmsg/recv hand out the fuzzer's stream in random chunks (1 byte, a
 * few, everything) with EAGAIN and EINTR between them, sendmsg takes bytes
 * in random short writes, and poll says "ready" or, for a zero timeout,
 * sometimes "not yet".  So every chunking of a stream is reachable.
 *
 * Decoding (arbitrary stream): lsec_recv delivers exactly the messages an
 * independent decoder finds, in order, whole; then exactly one end:
 * LSEC_EPROTO (a length above max_message), LSEC_ERESET (the stream ends
 * inside a frame) or LSEC_ECLOSED (it ends between frames), which then
 * sticks.  A too-small buffer gets LSEC_EMSGSIZE with the length, and the
 * message stays.  No single allocation while receiving exceeds
 * max_message (malloc is wrapped at link time to see it).
 *
 * Encoding: messages from the input sent with lsec_send (and lsec_flush
 * when it queued) produce exactly header || payload for each, and decoding
 * that stream gives the messages back: decode(encode(x)) == x.
 */
#include "fuzz_common.h"
#include "internal.h"
#include "testing.h"

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define STREAM_MAX (1u << 20)
#define MAX_MSGS 64

/* ---- allocation watch (linked with -Wl,--wrap=malloc,...) ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);

static size_t alloc_max; /* largest single request since the last reset */

void *__wrap_malloc(size_t n)
{
    if (n > alloc_max)
        alloc_max = n;
    return __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n)
{
    if (n != 0 && k <= SIZE_MAX / n && k * n > alloc_max)
        alloc_max = k * n;
    return __real_calloc(k, n);
}

void *__wrap_realloc(void *p, size_t n)
{
    if (n > alloc_max)
        alloc_max = n;
    return __real_realloc(p, n);
}

/* ---- the fake socket ---- */

static uint32_t rng;
static const uint8_t *in_p;
static size_t in_len, in_off;
static uint8_t *out_buf;
static uint8_t *recv_buf; /* LSEC_MAX_MESSAGE_DEFAULT bytes, allocated once */
static size_t out_len;
static int chan_fd = -1;
static unsigned eagain_run; /* consecutive EAGAINs, bounded for -1 waits */

static uint32_t next_rand(void)
{
    return fz_rand(&rng);
}

static size_t some(size_t n)
{
    return fz_some(&rng, n);
}

/* A hiccup now and then, never many in a row. */
static int hiccup(void)
{
    if (eagain_run < 3 && next_rand() % 6 == 0) {
        eagain_run++;
        errno = next_rand() % 2 ? EAGAIN : EINTR;
        return 1;
    }
    eagain_run = 0;
    return 0;
}

static ssize_t fake_recvmsg(int fd, struct msghdr *mh, int flags)
{
    size_t n, done = 0;

    (void)flags;
    FUZZ_ASSERT(fd == chan_fd);
    if (hiccup())
        return -1;
    if (in_off == in_len)
        return 0; /* the peer closed */
    n = some(in_len - in_off);
    for (size_t i = 0; i < mh->msg_iovlen && done < n; i++) {
        size_t k = mh->msg_iov[i].iov_len;
        if (k > n - done)
            k = n - done;
        memcpy(mh->msg_iov[i].iov_base, in_p + in_off + done, k);
        done += k;
    }
    in_off += done;
    return (ssize_t)done;
}

static ssize_t fake_recv(int fd, void *buf, size_t len, int flags)
{
    struct iovec iov = {buf, len};
    struct msghdr mh;

    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    return fake_recvmsg(fd, &mh, flags);
}

static ssize_t fake_sendmsg(int fd, const struct msghdr *mh, int flags)
{
    size_t total = 0, n, done = 0;

    (void)flags;
    FUZZ_ASSERT(fd == chan_fd);
    if (hiccup())
        return -1;
    for (size_t i = 0; i < mh->msg_iovlen; i++)
        total += mh->msg_iov[i].iov_len;
    n = some(total);
    FUZZ_ASSERT(out_len + n <= STREAM_MAX);
    for (size_t i = 0; i < mh->msg_iovlen && done < n; i++) {
        size_t k = mh->msg_iov[i].iov_len;
        if (k > n - done)
            k = n - done;
        memcpy(out_buf + out_len + done, mh->msg_iov[i].iov_base, k);
        done += k;
    }
    out_len += done;
    return (ssize_t)done;
}

static ssize_t fake_send(int fd, const void *buf, size_t len, int flags)
{
    struct iovec iov = {(void *)buf, len};
    struct msghdr mh;

    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    return fake_sendmsg(fd, &mh, flags);
}

static int fake_poll(struct pollfd *fds, unsigned long nfds, int timeout)
{
    /* A zero timeout may find nothing ready; any other wait is over at
     * once (the data "arrives"), so that -1 never blocks here. */
    if (timeout == 0 && next_rand() % 4 == 0)
        return 0;
    for (unsigned long i = 0; i < nfds; i++)
        fds[i].revents = fds[i].events & (POLLIN | POLLOUT);
    return (int)nfds;
}

/* ---- helpers ---- */

static lsec_channel *open_channel(size_t max_message, const uint8_t *early,
                                  size_t early_len)
{
    lsec_opts o;
    lsec__addr a;
    lsec_channel *c = NULL;

    if (lsec__opts_resolve(NULL, &o) != 0)
        abort();
    o.max_message = max_message;
    memset(&a, 0, sizeof(a));
    a.family = AF_INET;
    a.ip[0] = 127;
    a.ip[3] = 1;
    a.port = 4242;
    /* A real descriptor for the channel to own and close; the seam keeps
     * every read and write away from it. */
    chan_fd = eventfd(0, EFD_CLOEXEC);
    FUZZ_ASSERT(chan_fd >= 0);
    alloc_max = 0;
    FUZZ_ASSERT(lsec__channel_new(chan_fd, NULL, &o, &a, &a, 0, early,
                                  early_len, &c) == 0);
    /* The channel itself is allocated: proof that the wrap sees the
     * library's allocations at all. */
    FUZZ_ASSERT(alloc_max > 0);
    return c;
}

struct msg {
    const uint8_t *p;
    size_t len;
};

/*
 * Decode `stream` through a channel and check it against the reference
 * decoder; `want` (may be NULL) lists the messages it must contain.
 */
static void decode_and_check(const uint8_t *stream, size_t len,
                             size_t max_message, int nowait,
                             const struct msg *want, size_t nwant)
{
    struct msg ref[MAX_MSGS * 8];
    size_t nref = 0, off = 0, got = 0, early_len = 0, trunc_len = SIZE_MAX;
    int ref_end;
    lsec_channel *c;
    uint8_t *buf;

    /* The reference decoder. */
    for (;;) {
        uint32_t n;
        if (off == len) {
            ref_end = LSEC_ECLOSED;
            break;
        }
        if (len - off < 4) {
            ref_end = LSEC_ERESET;
            break;
        }
        n = (uint32_t)stream[off] << 24 | (uint32_t)stream[off + 1] << 16 |
            (uint32_t)stream[off + 2] << 8 | stream[off + 3];
        if (n > max_message) {
            ref_end = LSEC_EPROTO;
            break;
        }
        if (len - off - 4 < n) {
            /* A valid header whose body never comes: its length is known
             * (and may be reported as too big for a buffer) before the
             * stream runs out. */
            ref_end = LSEC_ERESET;
            trunc_len = n;
            break;
        }
        FUZZ_ASSERT(nref < sizeof(ref) / sizeof(ref[0]));
        ref[nref].p = stream + off + 4;
        ref[nref].len = n;
        nref++;
        off += 4 + (size_t)n;
        if (nref == sizeof(ref) / sizeof(ref[0])) {
            /* Enough: decode only this much. */
            len = off;
            ref_end = LSEC_ECLOSED;
            break;
        }
    }
    if (want != NULL) {
        FUZZ_ASSERT(nref == nwant && ref_end == LSEC_ECLOSED);
        for (size_t i = 0; i < nwant; i++)
            FUZZ_ASSERT(ref[i].len == want[i].len &&
                        memcmp(ref[i].p, want[i].p, want[i].len) == 0);
    }

    /* Some bytes may arrive with the handshake ("early"). */
    if (next_rand() % 4 == 0) {
        early_len = next_rand() % (len + 1);
        if (early_len > 4096)
            early_len = 4096;
    }
    in_p = stream + early_len;
    in_len = len - early_len;
    in_off = 0;
    c = open_channel(max_message, stream, early_len);
    buf = recv_buf;

    for (unsigned guard = 0;; guard++) {
        size_t cap, mlen = 12345;
        int rc;

        FUZZ_ASSERT(guard < 100000);
        /* Sometimes a buffer that is too small. */
        cap = next_rand() % 5 == 0 ? next_rand() % (max_message + 1)
                                   : max_message;
        alloc_max = 0;
        rc = lsec_recv(c, buf, cap, &mlen, nowait ? 0 : -1);
        /* Nothing larger than one message is ever allocated for it. */
        FUZZ_ASSERT(alloc_max <= max_message);
        if (rc == LSEC_EAGAIN) {
            FUZZ_ASSERT(nowait);
            continue;
        }
        if (rc == LSEC_EMSGSIZE) {
            FUZZ_ASSERT(mlen > cap);
            FUZZ_ASSERT(got < nref ? mlen == ref[got].len : mlen == trunc_len);
            continue;
        }
        if (rc == 0) {
            FUZZ_ASSERT(got < nref);
            FUZZ_ASSERT(mlen == ref[got].len);
            FUZZ_ASSERT(memcmp(buf, ref[got].p, mlen) == 0);
            got++;
            continue;
        }
        FUZZ_ASSERT(got == nref);
        FUZZ_ASSERT(rc == ref_end);
        FUZZ_ASSERT(fz_printable(lsec_last_detail()));
        /* The end sticks: no resynchronising. */
        FUZZ_ASSERT(lsec_recv(c, buf, max_message, &mlen, 0) == rc);
        FUZZ_ASSERT(mlen == 0);
        break;
    }
    lsec_channel_close(c);
}

/* Send `msgs` through a channel; check the bytes, then decode them. */
static void encode_and_check(const struct msg *msgs, size_t n,
                             size_t max_message, int nowait)
{
    lsec_channel *c;
    uint8_t *p;

    out_len = 0;
    in_len = in_off = 0;
    c = open_channel(max_message, NULL, 0);
    for (size_t i = 0; i < n; i++) {
        int rc;
        unsigned guard = 0;
        do {
            rc = lsec_send(c, msgs[i].p, msgs[i].len, nowait ? 0 : -1);
            FUZZ_ASSERT(guard++ < 100000);
        } while (rc == LSEC_EAGAIN && nowait);
        FUZZ_ASSERT(rc == 0);
    }
    for (unsigned guard = 0;; guard++) {
        int rc = lsec_flush(c, nowait ? 0 : -1);
        FUZZ_ASSERT(guard < 100000);
        if (rc == 0)
            break;
        FUZZ_ASSERT(rc == LSEC_EAGAIN && nowait);
    }
    /* Exactly header || payload, message after message. */
    p = out_buf;
    for (size_t i = 0; i < n; i++) {
        FUZZ_ASSERT((size_t)(out_buf + out_len - p) >= 4 + msgs[i].len);
        FUZZ_ASSERT(p[0] == (uint8_t)(msgs[i].len >> 24) &&
                    p[1] == (uint8_t)(msgs[i].len >> 16) &&
                    p[2] == (uint8_t)(msgs[i].len >> 8) &&
                    p[3] == (uint8_t)msgs[i].len);
        FUZZ_ASSERT(memcmp(p + 4, msgs[i].p, msgs[i].len) == 0);
        p += 4 + msgs[i].len;
    }
    FUZZ_ASSERT(p == out_buf + out_len);
    lsec_channel_close(c);
    {
        /* decode(encode(x)) == x, with a fresh chunking. */
        uint8_t *copy = malloc(out_len > 0 ? out_len : 1);
        size_t copy_len = out_len;
        FUZZ_ASSERT(copy != NULL);
        memcpy(copy, out_buf, out_len);
        decode_and_check(copy, copy_len, max_message, nowait, msgs, n);
        free(copy);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (lsec__init() != 0)
        abort();
    out_buf = malloc(STREAM_MAX);
    recv_buf = malloc(LSEC_MAX_MESSAGE_DEFAULT);
    if (out_buf == NULL || recv_buf == NULL)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = fz_init(data, size);
    uint8_t flags = fz_u8(&f);
    size_t max_message;
    int nowait = flags & 2;

    rng = (uint32_t)fz_u16(&f) << 16 | fz_u16(&f);
    /* A small limit, so that lengths around it are reachable; 0 too. */
    max_message = fz_u16(&f) % 8192;
    if (flags & 4)
        max_message = LSEC_MAX_MESSAGE_DEFAULT;
    lsec__io.recvmsg = fake_recvmsg;
    lsec__io.recv = fake_recv;
    lsec__io.sendmsg = fake_sendmsg;
    lsec__io.send = fake_send;
    lsec__io.poll = fake_poll;
    if (flags & 1) {
        /* Messages from the input: a length byte pair, then the bytes. */
        struct msg msgs[MAX_MSGS];
        size_t n = 0;
        while (f.n > 0 && n < MAX_MSGS) {
            size_t want = fz_u16(&f);
            if (max_message < 65536)
                want %= max_message + 1;
            msgs[n].len = fz_take(&f, want, &msgs[n].p);
            n++;
        }
        encode_and_check(msgs, n, max_message, nowait);
    } else {
        decode_and_check(f.p, f.n, max_message, nowait, NULL, 0);
    }
    lsec__io_reset();
    return 0;
}
