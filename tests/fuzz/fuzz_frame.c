/*
 * fuzz_frame: the message framing codec (lib/frame.c) driven directly, as
 * the channel's I/O shell drives it, with no system call at all.
 *
 * Decoding (arbitrary stream): the stream reaches the streaming decoder in
 * random chunks, some fed in (lsec__frame_rx_feed), most "read" into the
 * iovecs that lsec__frame_rx_plan asks for; receive calls end at random
 * points as a timeout ends them (lsec__frame_rx_cut) and resume with another
 * buffer.  The decoder delivers exactly the messages an independent decoder
 * finds, in order, whole; then exactly one end: LSEC_EPROTO (a length above
 * max_message), or, when the stream runs out, LSEC_ERESET inside a frame
 * and LSEC_ECLOSED between frames, as the shell reports them.  A too-small
 * buffer gets LSEC_EMSGSIZE with the length, and the message stays.
 * Between calls, lsec__frame_rx_pending is exact: non-zero exactly when the
 * next call makes progress without reading.  No single allocation exceeds
 * the larger of max_message and the read-ahead size (malloc is wrapped at
 * link time to see it), and the read-ahead buffer is released whenever it
 * is empty at the end of a call.
 *
 * Encoding: lsec__frame_plan_send for each message gives exactly
 * header || payload, and decoding that stream gives the messages back:
 * decode(encode(x)) == x.
 */
#include "fuzz_common.h"
#include "internal.h"
#include "testing.h"

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

static uint32_t rng;
static uint8_t *out_buf;
static uint8_t *dst_a, *dst_b; /* LSEC_MAX_MESSAGE_DEFAULT bytes each */

static uint32_t next_rand(void)
{
    return fz_rand(&rng);
}

static size_t some(size_t n)
{
    return fz_some(&rng, n);
}

struct msg {
    const uint8_t *p;
    size_t len;
};

/* The reference decoder: the messages of `stream` and how it ends. */
static int reference(const uint8_t *stream, size_t *len, size_t max_message,
                     struct msg *ref, size_t nmax, size_t *nref,
                     size_t *trunc_len)
{
    size_t off = 0;

    *nref = 0;
    *trunc_len = SIZE_MAX;
    for (;;) {
        uint32_t n;
        if (off == *len)
            return LSEC_ECLOSED;
        if (*len - off < 4)
            return LSEC_ERESET;
        n = (uint32_t)stream[off] << 24 | (uint32_t)stream[off + 1] << 16 |
            (uint32_t)stream[off + 2] << 8 | stream[off + 3];
        if (n > max_message)
            return LSEC_EPROTO;
        if (*len - off - 4 < n) {
            /* A valid header whose body never comes: its length is known
             * (and may be reported as too big for a buffer) before the
             * stream runs out. */
            *trunc_len = n;
            return LSEC_ERESET;
        }
        ref[*nref].p = stream + off + 4;
        ref[*nref].len = n;
        (*nref)++;
        off += 4 + (size_t)n;
        if (*nref == nmax) {
            *len = off; /* enough: decode only this much */
            return LSEC_ECLOSED;
        }
    }
}

/* Stream state of one decode run. */
struct src {
    const uint8_t *p;
    size_t len, off;
};

/* One "read" into the plan's iovecs: up to `some` bytes of the stream.
 * Returns the count, 0 when the stream has run out. */
static size_t read_into(struct src *s, const struct iovec *iov, int iovcnt)
{
    size_t total = 0, n, done = 0;

    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    FUZZ_ASSERT(total > 0);
    if (s->off == s->len)
        return 0;
    n = some(s->len - s->off);
    if (n > total)
        n = total;
    for (int i = 0; i < iovcnt && done < n; i++) {
        size_t k = iov[i].iov_len;
        if (k > n - done)
            k = n - done;
        memcpy(iov[i].iov_base, s->p + s->off + done, k);
        done += k;
    }
    s->off += done;
    return done;
}

/*
 * One receive call, as channel.c makes it: 0 with a message, LSEC_EMSGSIZE,
 * LSEC_EPROTO, LSEC_ETIMEDOUT (the call ended early; its bytes are kept),
 * or the end of the stream (LSEC_ERESET / LSEC_ECLOSED).
 */
static int one_call(lsec__frame_rx *d, struct src *s, uint8_t *dst, size_t cap,
                    size_t *len, int *first)
{
    for (unsigned guard = 0;; guard++) {
        struct iovec iov[2];
        int rc = lsec__frame_rx_next(d, dst, cap, len);
        if (guard == 0)
            *first = rc;
        FUZZ_ASSERT(guard < 4 * STREAM_MAX);
        if (rc != LSEC__AGAIN)
            return rc;
        FUZZ_ASSERT(*len == 0);
        if (next_rand() % 8 == 0) {
            /* A timeout: the call ends here. */
            FUZZ_ASSERT(lsec__frame_rx_cut(d, dst) == 0);
            return LSEC_ETIMEDOUT;
        }
        if (next_rand() % 8 == 0 && s->off < s->len) {
            /* Bytes fed in, as the handshake's leftovers are. */
            size_t n = some(s->len - s->off);
            if (n > 64)
                n = 64;
            rc = lsec__frame_rx_feed(d, s->p + s->off, n);
            if (rc == 0) {
                s->off += n;
                continue;
            }
            /* Only a full read-ahead buffer refuses them. */
            FUZZ_ASSERT(rc == LSEC_EPROTO);
        }
        int iovcnt = lsec__frame_rx_plan(d, dst, iov);
        FUZZ_ASSERT(iovcnt == 1 || iovcnt == 2);
        for (int i = 0; i < iovcnt; i++)
            FUZZ_ASSERT(iov[i].iov_len > 0);
        size_t n = read_into(s, iov, iovcnt);
        if (n == 0)
            return lsec__frame_rx_mid(d) ? LSEC_ERESET : LSEC_ECLOSED;
        lsec__frame_rx_got(d, n);
    }
}

/*
 * Decode `stream` and check it against the reference decoder; `want` (may
 * be NULL) lists the messages it must contain.
 */
static void decode_and_check(const uint8_t *stream, size_t len,
                             size_t max_message, const struct msg *want,
                             size_t nwant)
{
    struct msg ref[MAX_MSGS * 8];
    size_t nref, got = 0, early_len = 0, trunc_len;
    size_t ra_max = max_message > LSEC__FRAME_RA ? max_message : LSEC__FRAME_RA;
    lsec__frame_rx d;
    struct src s;
    int ref_end;

    ref_end = reference(stream, &len, max_message, ref,
                        sizeof(ref) / sizeof(ref[0]), &nref, &trunc_len);
    if (want != NULL) {
        FUZZ_ASSERT(nref == nwant && ref_end == LSEC_ECLOSED);
        for (size_t i = 0; i < nwant; i++)
            FUZZ_ASSERT(ref[i].len == want[i].len &&
                        memcmp(ref[i].p, want[i].p, want[i].len) == 0);
    }

    lsec__frame_rx_init(&d, max_message);
    /* Some bytes may arrive with the handshake ("early"). */
    if (next_rand() % 4 == 0) {
        early_len = next_rand() % (len + 1);
        if (early_len > LSEC__FRAME_RA)
            early_len = LSEC__FRAME_RA;
        FUZZ_ASSERT(lsec__frame_rx_feed(&d, stream, early_len) == 0);
    }
    s.p = stream;
    s.len = len;
    s.off = early_len;

    for (unsigned guard = 0;; guard++) {
        size_t cap, mlen = 12345;
        size_t pending = lsec__frame_rx_pending(&d);
        uint8_t *dst = next_rand() % 2 ? dst_a : dst_b;
        int rc, first;

        FUZZ_ASSERT(guard < 4 * STREAM_MAX);
        /* Sometimes a buffer that is too small. */
        cap = next_rand() % 5 == 0 ? next_rand() % (max_message + 1)
                                   : max_message;
        alloc_max = 0;
        rc = one_call(&d, &s, dst, cap, &mlen, &first);
        lsec__frame_rx_release(&d);
        /* An empty read-ahead buffer is released. */
        FUZZ_ASSERT(d.off < d.len || d.ra == NULL);
        /* Nothing larger than a message (or the read-ahead buffer) is ever
         * allocated. */
        FUZZ_ASSERT(alloc_max <= ra_max);
        /* pending is exact: what it promised came without a read, and
         * without it the first step needed one (or found the buffer too
         * small for a length known from an earlier call). */
        if (pending > 0)
            FUZZ_ASSERT(rc == 0 || rc == LSEC_EMSGSIZE || rc == LSEC_EPROTO);
        else
            FUZZ_ASSERT(first == LSEC__AGAIN || first == LSEC_EMSGSIZE);
        if (rc == LSEC_ETIMEDOUT)
            continue;
        if (rc == LSEC_EMSGSIZE) {
            FUZZ_ASSERT(mlen > cap);
            FUZZ_ASSERT(got < nref ? mlen == ref[got].len : mlen == trunc_len);
            continue;
        }
        if (rc == 0) {
            FUZZ_ASSERT(got < nref);
            FUZZ_ASSERT(mlen == ref[got].len);
            FUZZ_ASSERT(memcmp(dst, ref[got].p, mlen) == 0);
            got++;
            continue;
        }
        FUZZ_ASSERT(mlen == 0);
        FUZZ_ASSERT(got == nref);
        FUZZ_ASSERT(rc == ref_end);
        if (rc == LSEC_EPROTO) {
            FUZZ_ASSERT(fz_printable(lsec_last_detail()));
            /* A length above the limit is refused again: no
             * resynchronising. */
            FUZZ_ASSERT(lsec__frame_rx_pending(&d) > 0);
            FUZZ_ASSERT(lsec__frame_rx_next(&d, dst, max_message, &mlen) ==
                        LSEC_EPROTO);
        } else {
            /* Ran out: between calls nothing made progress on its own. */
            FUZZ_ASSERT(lsec__frame_rx_pending(&d) == 0);
        }
        break;
    }
    lsec__frame_rx_free(&d);
    FUZZ_ASSERT(d.ra == NULL && d.stash == NULL);
}

/* Encode `msgs` with the send plan; check the bytes, then decode them. */
static void encode_and_check(const struct msg *msgs, size_t n,
                             size_t max_message)
{
    size_t out_len = 0;
    uint8_t *p;

    for (size_t i = 0; i < n; i++) {
        uint8_t hdr[LSEC__FRAME_HDR];
        struct iovec iov[2];
        int iovcnt = lsec__frame_plan_send(hdr, msgs[i].p, msgs[i].len, iov);
        FUZZ_ASSERT(iovcnt == (msgs[i].len > 0 ? 2 : 1));
        for (int k = 0; k < iovcnt; k++) {
            FUZZ_ASSERT(out_len + iov[k].iov_len <= STREAM_MAX);
            memcpy(out_buf + out_len, iov[k].iov_base, iov[k].iov_len);
            out_len += iov[k].iov_len;
        }
        /* The payload is sent from the caller's buffer, not copied. */
        if (iovcnt == 2)
            FUZZ_ASSERT(iov[1].iov_base == (const void *)msgs[i].p);
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
    {
        /* decode(encode(x)) == x, with a fresh chunking. */
        uint8_t *copy = malloc(out_len > 0 ? out_len : 1);
        FUZZ_ASSERT(copy != NULL);
        memcpy(copy, out_buf, out_len);
        decode_and_check(copy, out_len, max_message, msgs, n);
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
    dst_a = malloc(LSEC_MAX_MESSAGE_DEFAULT);
    dst_b = malloc(LSEC_MAX_MESSAGE_DEFAULT);
    if (out_buf == NULL || dst_a == NULL || dst_b == NULL)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = fz_init(data, size);
    uint8_t flags = fz_u8(&f);
    size_t max_message;

    rng = (uint32_t)fz_u16(&f) << 16 | fz_u16(&f);
    /* A small limit, so that lengths around it are reachable; 0 too. */
    max_message = fz_u16(&f) % 8192;
    if (flags & 4)
        max_message = LSEC_MAX_MESSAGE_DEFAULT;
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
        encode_and_check(msgs, n, max_message);
    } else {
        decode_and_check(f.p, f.n, max_message, NULL, 0);
    }
    return 0;
}
