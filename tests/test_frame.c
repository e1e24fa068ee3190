/*
 * lib/frame.c: the 4-byte big-endian length prefix and its limit check, the
 * send plan, and the streaming decoder.
 */
/* cmocka.h needs these first. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include "internal.h"

#include <stdint.h>
#include <string.h>

static void header_is_big_endian(void **state)
{
    uint8_t hdr[LSEC__FRAME_HDR];

    (void)state;
    lsec__frame_header(hdr, 0x01020304u);
    assert_memory_equal(hdr, "\x01\x02\x03\x04", 4);
    lsec__frame_header(hdr, 0);
    assert_memory_equal(hdr, "\x00\x00\x00\x00", 4);
    lsec__frame_header(hdr, 0xFFFFFFFFu);
    assert_memory_equal(hdr, "\xff\xff\xff\xff", 4);
    lsec__frame_header(hdr, 256);
    assert_memory_equal(hdr, "\x00\x00\x01\x00", 4);
}

static void round_trip_boundaries(void **state)
{
    static const uint32_t lens[] = {
        0,          1,          255,        256,       65535,
        65536,      0x00FFFFFF, 0x01000000, 16u << 20, 0x7FFFFFFF,
        0x80000000, 0xFFFFFFFE, 0xFFFFFFFF};
    uint8_t hdr[LSEC__FRAME_HDR];
    uint32_t got;

    (void)state;
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        lsec__frame_header(hdr, lens[i]);
        got = 1234;
        assert_int_equal(lsec__frame_parse(hdr, SIZE_MAX, &got), 0);
        assert_int_equal(got, lens[i]);
    }
}

static void limit_is_inclusive(void **state)
{
    uint8_t hdr[LSEC__FRAME_HDR];
    uint32_t got;
    const size_t max = LSEC_MAX_MESSAGE_DEFAULT;

    (void)state;
    lsec__frame_header(hdr, (uint32_t)max);
    assert_int_equal(lsec__frame_parse(hdr, max, &got), 0);
    assert_int_equal(got, max);

    lsec__frame_header(hdr, (uint32_t)max + 1);
    got = 1234;
    assert_int_equal(lsec__frame_parse(hdr, max, &got), LSEC_EPROTO);
    /* Nothing half-decoded escapes on failure. */
    assert_int_equal(got, 0);
    assert_non_null(strstr(lsec_last_detail(), "exceeds"));
}

static void empty_message_is_valid(void **state)
{
    uint8_t hdr[LSEC__FRAME_HDR];
    uint32_t got = 99;

    (void)state;
    lsec__frame_header(hdr, 0);
    assert_int_equal(lsec__frame_parse(hdr, LSEC_MAX_MESSAGE_DEFAULT, &got), 0);
    assert_int_equal(got, 0);
    /* Even a limit of 0 admits the empty message, and nothing else. */
    assert_int_equal(lsec__frame_parse(hdr, 0, &got), 0);
    lsec__frame_header(hdr, 1);
    assert_int_equal(lsec__frame_parse(hdr, 0, &got), LSEC_EPROTO);
}

static void all_ones_is_refused(void **state)
{
    static const uint8_t hdr[LSEC__FRAME_HDR] = {0xff, 0xff, 0xff, 0xff};
    uint32_t got;

    (void)state;
    assert_int_equal(lsec__frame_parse(hdr, LSEC_MAX_MESSAGE_DEFAULT, &got),
                     LSEC_EPROTO);
    assert_int_equal(lsec__frame_parse(hdr, 0xFFFFFFFEu, &got), LSEC_EPROTO);
    /* Overflow-safe: limits at and beyond 32 bits never wrap. */
    assert_int_equal(lsec__frame_parse(hdr, 0xFFFFFFFFu, &got), 0);
    assert_int_equal(got, 0xFFFFFFFFu);
    assert_int_equal(lsec__frame_parse(hdr, SIZE_MAX, &got), 0);
}

static void every_byte_counts(void **state)
{
    uint8_t hdr[LSEC__FRAME_HDR];
    uint32_t got;

    (void)state;
    /* A limit of 0x00FFFFFF: the high byte alone decides. */
    for (int i = 0; i < 4; i++) {
        memset(hdr, 0, sizeof(hdr));
        hdr[i] = 1;
        int rc = lsec__frame_parse(hdr, 0x00FFFFFF, &got);
        if (i == 0) {
            assert_int_equal(rc, LSEC_EPROTO);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(got, 1u << (8 * (3 - i)));
        }
    }
}

static void misuse(void **state)
{
    uint8_t hdr[LSEC__FRAME_HDR] = {0};
    uint32_t got;

    (void)state;
    assert_int_equal(lsec__frame_parse(NULL, 10, &got), LSEC_EINVAL);
    assert_int_equal(lsec__frame_parse(hdr, 10, NULL), LSEC_EINVAL);
}

/* The TLS listener's check of a peer's first bytes (issue 13 item 8):
 * every wrong byte refused where it stands, exact codes. */
static void test_tls_record_start(void **state)
{
    size_t total = 99;
    (void)state;
    assert_int_equal(lsec__tls_record_start((const uint8_t *)"", 0, &total),
                     LSEC__AGAIN);
    for (size_t k = 1; k <= 4; k++)
        assert_int_equal(
            lsec__tls_record_start((const uint8_t *)"GET ", k, &total),
            LSEC_EPROTO);
    assert_int_equal(lsec__tls_record_start((const uint8_t *)"\x16", 1, &total),
                     LSEC__AGAIN);
    assert_int_equal(
        lsec__tls_record_start((const uint8_t *)"\x16\x02", 2, &total),
        LSEC_EPROTO);
    assert_int_equal(
        lsec__tls_record_start((const uint8_t *)"\x16\x03\x00", 3, &total),
        LSEC_EPROTO);
    assert_int_equal(
        lsec__tls_record_start((const uint8_t *)"\x16\x03\x05", 3, &total),
        LSEC_EPROTO);
    assert_int_equal(
        lsec__tls_record_start((const uint8_t *)"\x16\x03\x04\x41", 4, &total),
        LSEC_EPROTO);
    assert_int_equal(lsec__tls_record_start(
                         (const uint8_t *)"\x16\x03\x01\x40\x01", 5, &total),
                     LSEC_EPROTO);
    assert_int_equal(lsec__tls_record_start(
                         (const uint8_t *)"\x16\x03\x01\x00\x00", 5, &total),
                     LSEC_EPROTO);
    assert_int_equal(total, 0);
    assert_int_equal(lsec__tls_record_start(
                         (const uint8_t *)"\x16\x03\x01\x40\x00", 5, &total),
                     0);
    assert_int_equal(total, 5 + 16384);
    assert_int_equal(lsec__tls_record_start(
                         (const uint8_t *)"\x16\x03\x01\x01\x02", 5, &total),
                     0);
    assert_int_equal(total, 5 + 258);
    /* The auth magic, byte by byte, then LSEC_EMODE at its fourth. */
    assert_int_equal(lsec__tls_record_start((const uint8_t *)"LS", 2, &total),
                     LSEC__AGAIN);
    assert_int_equal(lsec__tls_record_start((const uint8_t *)"LX", 2, &total),
                     LSEC_EPROTO);
    assert_int_equal(
        lsec__tls_record_start((const uint8_t *)"LSEC\x01", 5, &total),
        LSEC_EMODE);
    assert_int_equal(lsec__tls_record_start(NULL, 1, &total), LSEC_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* The streaming decoder, driven as channel.c drives it                      */

/* The stream source of one run: reads hand out bytes up to `stop`, then
 * (once `stop` is moved) the rest. */
struct src {
    const uint8_t *p;
    size_t len, off, stop;
    unsigned reads;
};

static size_t src_read(struct src *s, const struct iovec *iov, int iovcnt)
{
    size_t done = 0, n = s->stop - s->off;
    for (int i = 0; i < iovcnt && done < n; i++) {
        size_t k = iov[i].iov_len < n - done ? iov[i].iov_len : n - done;
        memcpy(iov[i].iov_base, s->p + s->off + done, k);
        done += k;
    }
    s->off += done;
    s->reads++;
    return done;
}

/*
 * One receive call: 0 with a message, the decoder's error, or LSEC_EAGAIN
 * when the source has nothing more before `stop` (the payload part in dst
 * is then kept, as a timeout keeps it).
 */
static int call(lsec__frame_rx *d, struct src *s, uint8_t *dst, size_t cap,
                size_t *len)
{
    for (int guard = 0; guard < 100000; guard++) {
        struct iovec iov[2];
        int rc = lsec__frame_rx_next(d, dst, cap, len);
        if (rc != LSEC__AGAIN)
            return rc;
        int iovcnt = lsec__frame_rx_plan(d, dst, iov);
        assert_true(iovcnt == 1 || iovcnt == 2);
        if (s->off == s->stop) {
            assert_int_equal(lsec__frame_rx_cut(d, dst), 0);
            return LSEC_EAGAIN;
        }
        lsec__frame_rx_got(d, src_read(s, iov, iovcnt));
    }
    fail();
    return -1;
}

/* A stream of frames: an empty message, small ones, one larger than the
 * read-ahead buffer. */
static size_t build_stream(uint8_t *out, const size_t *lens, size_t n)
{
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        lsec__frame_header(out + off, (uint32_t)lens[i]);
        off += LSEC__FRAME_HDR;
        for (size_t k = 0; k < lens[i]; k++)
            out[off + k] = (uint8_t)(i * 31 + k);
        off += lens[i];
    }
    return off;
}

static const size_t stream_lens[] = {3, 0, 64, LSEC__FRAME_RA + 700, 1, 200};
#define NSTREAM (sizeof(stream_lens) / sizeof(stream_lens[0]))

/* Every split of the stream into two reads yields the same messages. */
static void decoder_split_at_every_byte(void **state)
{
    static uint8_t stream[2 * LSEC__FRAME_RA];
    static uint8_t dst[2 * LSEC__FRAME_RA];
    size_t total = build_stream(stream, stream_lens, NSTREAM);

    (void)state;
    for (size_t split = 0; split <= total; split++) {
        lsec__frame_rx d;
        struct src s = {stream, total, 0, split, 0};
        size_t got = 0, off = 0;
        lsec__frame_rx_init(&d, LSEC_MAX_MESSAGE_DEFAULT);
        while (got < NSTREAM) {
            size_t len = 99;
            int rc = call(&d, &s, dst, sizeof(dst), &len);
            if (rc == LSEC_EAGAIN) {
                assert_int_equal(s.off, split);
                assert_int_equal(len, 0);
                s.stop = total; /* the rest arrives */
                continue;
            }
            assert_int_equal(rc, 0);
            assert_int_equal(len, stream_lens[got]);
            off += LSEC__FRAME_HDR;
            assert_memory_equal(dst, stream + off, len);
            off += len;
            got++;
            lsec__frame_rx_release(&d);
        }
        assert_int_equal(s.off, total);
        assert_int_equal(lsec__frame_rx_pending(&d), 0);
        assert_false(lsec__frame_rx_mid(&d));
        /* Empty at the end: nothing held. */
        assert_null(d.ra);
        assert_null(d.stash);
        lsec__frame_rx_free(&d);
    }
}

/* Bytes fed in one at a time (the handshake's leftovers) decode the same. */
static void decoder_fed_byte_by_byte(void **state)
{
    static uint8_t stream[LSEC__FRAME_RA];
    static const size_t lens[] = {5, 0, 300};
    uint8_t dst[512];
    size_t total = build_stream(stream, lens, 3), off = 0, got = 0, len;
    lsec__frame_rx d;

    (void)state;
    lsec__frame_rx_init(&d, 1000);
    for (size_t i = 0; i < total; i++) {
        assert_int_equal(lsec__frame_rx_feed(&d, stream + i, 1), 0);
        int rc = lsec__frame_rx_next(&d, dst, sizeof(dst), &len);
        if (rc == LSEC__AGAIN)
            continue;
        assert_int_equal(rc, 0);
        assert_int_equal(len, lens[got]);
        off += LSEC__FRAME_HDR;
        assert_memory_equal(dst, stream + off, len);
        off += len;
        got++;
    }
    assert_int_equal(got, 3);
    lsec__frame_rx_free(&d);
}

/* A length above the limit is LSEC_EPROTO wherever the stream is split,
 * after exactly the messages before it, and stays so. */
static void decoder_oversize_exact(void **state)
{
    uint8_t stream[64], dst[64];
    size_t len;

    (void)state;
    lsec__frame_header(stream, 2);
    memcpy(stream + 4, "ok", 2);
    lsec__frame_header(stream + 6, 41); /* the limit is 40 */
    memset(stream + 10, 'x', 41);
    for (size_t split = 0; split <= 51; split++) {
        lsec__frame_rx d;
        struct src s = {stream, 51, 0, split, 0};
        int rc;
        lsec__frame_rx_init(&d, 40);
        while ((rc = call(&d, &s, dst, sizeof(dst), &len)) == LSEC_EAGAIN)
            s.stop = 51;
        assert_int_equal(rc, 0);
        assert_int_equal(len, 2);
        while ((rc = call(&d, &s, dst, sizeof(dst), &len)) == LSEC_EAGAIN)
            s.stop = 51;
        assert_int_equal(rc, LSEC_EPROTO);
        assert_int_equal(len, 0);
        assert_non_null(strstr(lsec_last_detail(), "exceeds"));
        /* No resynchronising, and pending says "call now": the error is
         * the progress. */
        assert_true(lsec__frame_rx_pending(&d) >= LSEC__FRAME_HDR);
        assert_int_equal(lsec__frame_rx_next(&d, dst, sizeof(dst), &len),
                         LSEC_EPROTO);
        lsec__frame_rx_free(&d);
    }
}

/* Where the stream may end: only between frames.  mid() is what makes the
 * channel say LSEC_ERESET (inside a frame) rather than LSEC_ECLOSED. */
static void decoder_end_mid_message(void **state)
{
    static uint8_t stream[2 * LSEC__FRAME_RA];
    static uint8_t dst[2 * LSEC__FRAME_RA];
    size_t total = build_stream(stream, stream_lens, NSTREAM);
    size_t bounds[NSTREAM + 1], nb = 0, off = 0;

    (void)state;
    bounds[nb++] = 0;
    for (size_t i = 0; i < NSTREAM; i++) {
        off += LSEC__FRAME_HDR + stream_lens[i];
        bounds[nb++] = off;
    }
    for (size_t end = 0; end <= total; end++) {
        lsec__frame_rx d;
        struct src s = {stream, total, 0, end, 0};
        size_t len;
        bool boundary = false;
        lsec__frame_rx_init(&d, LSEC_MAX_MESSAGE_DEFAULT);
        while (call(&d, &s, dst, sizeof(dst), &len) == 0)
            ;
        for (size_t i = 0; i < nb; i++)
            boundary |= bounds[i] == end;
        assert_int_equal(lsec__frame_rx_mid(&d), !boundary);
        lsec__frame_rx_free(&d);
    }
}

/* pending is exact between calls: non-zero exactly when the next call
 * completes a message (or fails) without a read. */
static void decoder_pending_exact(void **state)
{
    static uint8_t stream[2 * LSEC__FRAME_RA];
    static uint8_t dst[2 * LSEC__FRAME_RA];
    size_t total = build_stream(stream, stream_lens, NSTREAM);

    (void)state;
    for (size_t split = 0; split <= total; split++) {
        lsec__frame_rx d;
        struct src s = {stream, total, 0, split, 0};
        size_t len;
        int rc;
        lsec__frame_rx_init(&d, LSEC_MAX_MESSAGE_DEFAULT);
        for (int k = 0; k < 2 * (int)NSTREAM; k++) {
            size_t pending = lsec__frame_rx_pending(&d);
            unsigned reads = s.reads;
            rc = call(&d, &s, dst, sizeof(dst), &len);
            if (pending > 0) {
                assert_int_equal(rc, 0);
                assert_int_equal(s.reads, reads); /* no read needed */
            } else if (rc == 0) {
                assert_true(s.reads > reads); /* it needed one */
            }
            if (rc == LSEC_EAGAIN)
                s.stop = total;
            lsec__frame_rx_release(&d);
        }
        lsec__frame_rx_free(&d);
    }
}

/* A payload larger than the read-ahead buffer goes straight into the
 * caller's buffer, with the read-ahead buffer behind it. */
static void decoder_large_payload_direct(void **state)
{
    static uint8_t stream[3 * LSEC__FRAME_RA];
    static uint8_t dst[3 * LSEC__FRAME_RA];
    static const size_t lens[] = {2 * LSEC__FRAME_RA, 5};
    size_t total = build_stream(stream, lens, 2), len;
    lsec__frame_rx d;
    struct iovec iov[2];

    (void)state;
    lsec__frame_rx_init(&d, LSEC_MAX_MESSAGE_DEFAULT);
    assert_int_equal(lsec__frame_rx_next(&d, dst, sizeof(dst), &len),
                     LSEC__AGAIN);
    assert_int_equal(lsec__frame_rx_plan(&d, dst, iov), 1);
    assert_int_equal(iov[0].iov_len, LSEC__FRAME_RA);
    memcpy(iov[0].iov_base, stream, 100);
    lsec__frame_rx_got(&d, 100);
    assert_int_equal(lsec__frame_rx_next(&d, dst, sizeof(dst), &len),
                     LSEC__AGAIN);
    /* 96 payload bytes are in dst: the rest goes right behind them. */
    assert_int_equal(lsec__frame_rx_plan(&d, dst, iov), 2);
    assert_ptr_equal(iov[0].iov_base, dst + 96);
    assert_int_equal(iov[0].iov_len, lens[0] - 96);
    assert_ptr_equal(iov[1].iov_base, d.ra);
    assert_int_equal(iov[1].iov_len, LSEC__FRAME_RA);
    /* One read brings the rest and the whole next frame. */
    memcpy(iov[0].iov_base, stream + 100, iov[0].iov_len);
    memcpy(iov[1].iov_base, stream + 100 + iov[0].iov_len, 9);
    lsec__frame_rx_got(&d, iov[0].iov_len + 9);
    assert_int_equal(lsec__frame_rx_next(&d, dst, sizeof(dst), &len), 0);
    assert_int_equal(len, lens[0]);
    assert_memory_equal(dst, stream + 4, len);
    assert_int_equal(lsec__frame_rx_pending(&d), 9);
    assert_int_equal(lsec__frame_rx_next(&d, dst, sizeof(dst), &len), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(dst, stream + total - 5, 5);
    lsec__frame_rx_free(&d);
}

/* A buffer too small: LSEC_EMSGSIZE with the length, the message stays;
 * a payload cut by a timeout continues in the stash into another buffer. */
static void decoder_emsgsize_and_cut(void **state)
{
    static uint8_t stream[3 * LSEC__FRAME_RA];
    static uint8_t a[3 * LSEC__FRAME_RA], b[3 * LSEC__FRAME_RA];
    static const size_t lens[] = {2 * LSEC__FRAME_RA};
    size_t total = build_stream(stream, lens, 1), len;
    lsec__frame_rx d;
    struct src s = {stream, total, 0, 3000, 0};

    (void)state;
    lsec__frame_rx_init(&d, LSEC_MAX_MESSAGE_DEFAULT);
    assert_int_equal(call(&d, &s, a, 10, &len), LSEC_EMSGSIZE);
    assert_int_equal(len, lens[0]);
    assert_int_equal(call(&d, &s, a, sizeof(a), &len), LSEC_EAGAIN);
    assert_int_equal(len, 0);
    /* What reached `a` is kept, and the read-ahead buffer is empty. */
    assert_int_equal(d.stash_have, 2996);
    lsec__frame_rx_release(&d);
    assert_null(d.ra);
    assert_int_equal(lsec__frame_rx_pending(&d), 0);
    assert_true(lsec__frame_rx_mid(&d));
    /* Still too small for a small buffer. */
    assert_int_equal(call(&d, &s, b, 10, &len), LSEC_EMSGSIZE);
    assert_int_equal(len, lens[0]);
    s.stop = total;
    memset(a, 0, sizeof(a));
    assert_int_equal(call(&d, &s, b, sizeof(b), &len), 0);
    assert_int_equal(len, lens[0]);
    assert_memory_equal(b, stream + 4, len);
    assert_null(d.stash);
    lsec__frame_rx_free(&d);
}

/* The read-ahead buffer is released when it holds nothing, kept while it
 * holds part of a frame; more bytes than it holds are refused when fed. */
static void decoder_memory_released(void **state)
{
    uint8_t dst[16], big[LSEC__FRAME_RA + 1] = {0};
    size_t len;
    lsec__frame_rx d;

    (void)state;
    lsec__frame_rx_init(&d, 100);
    assert_null(d.ra);
    assert_int_equal(
        lsec__frame_rx_feed(&d, (const uint8_t *)"\0\0\0\2hi\0", 7), 0);
    assert_non_null(d.ra);
    assert_int_equal(lsec__frame_rx_next(&d, dst, sizeof(dst), &len), 0);
    lsec__frame_rx_release(&d);
    assert_non_null(d.ra); /* one byte of the next header */
    assert_int_equal(lsec__frame_rx_feed(&d, (const uint8_t *)"\0\0\0", 3), 0);
    assert_int_equal(lsec__frame_rx_next(&d, dst, sizeof(dst), &len), 0);
    assert_int_equal(len, 0);
    lsec__frame_rx_release(&d);
    assert_null(d.ra);
    assert_int_equal(lsec__frame_rx_feed(&d, big, sizeof(big)), LSEC_EPROTO);
    lsec__frame_rx_free(&d);
    assert_null(d.ra);
}

/* The TLS record plan: the first record takes the header and just enough
 * of the payload that the rest is whole 16 KiB records. */
static void tls_record_plan(void **state)
{
    (void)state;
    assert_int_equal(lsec__frame_tls_head(0), 0);
    assert_int_equal(lsec__frame_tls_head(64), 64);
    assert_int_equal(lsec__frame_tls_head(16380), 16380); /* one record */
    assert_int_equal(lsec__frame_tls_head(16381), 16381); /* 16385: two */
    assert_int_equal(lsec__frame_tls_head(16384), 0);
    assert_int_equal(lsec__frame_tls_head(65536), 0);
    assert_int_equal(lsec__frame_tls_head(65537), 1);
    assert_int_equal(lsec__frame_tls_head(100000), 1696); /* 6 * 16384 + 1696 */
    for (size_t len = 16381; len < 4 * 16384 + 8; len += 997) {
        size_t head = lsec__frame_tls_head(len);
        assert_true(head <= LSEC__TLS_PLAIN_MAX);
        assert_int_equal((len - head) % LSEC__TLS_PLAIN_MAX, 0);
    }
}

static void send_plan(void **state)
{
    uint8_t hdr[LSEC__FRAME_HDR];
    struct iovec iov[2];
    static const char msg[] = "hello";

    (void)state;
    assert_int_equal(lsec__frame_plan_send(hdr, msg, 5, iov), 2);
    assert_ptr_equal(iov[0].iov_base, hdr);
    assert_int_equal(iov[0].iov_len, 4);
    assert_memory_equal(hdr, "\0\0\0\5", 4);
    assert_ptr_equal(iov[1].iov_base, msg); /* no copy */
    assert_int_equal(iov[1].iov_len, 5);
    assert_int_equal(lsec__frame_plan_send(hdr, NULL, 0, iov), 1);
    assert_memory_equal(hdr, "\0\0\0\0", 4);
#if SIZE_MAX > UINT32_MAX
    assert_int_equal(
        lsec__frame_plan_send(hdr, msg, (size_t)UINT32_MAX + 1, iov),
        LSEC_EMSGSIZE);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(header_is_big_endian),
        cmocka_unit_test(round_trip_boundaries),
        cmocka_unit_test(limit_is_inclusive),
        cmocka_unit_test(empty_message_is_valid),
        cmocka_unit_test(all_ones_is_refused),
        cmocka_unit_test(every_byte_counts),
        cmocka_unit_test(misuse),
        cmocka_unit_test(test_tls_record_start),
        cmocka_unit_test(decoder_split_at_every_byte),
        cmocka_unit_test(decoder_fed_byte_by_byte),
        cmocka_unit_test(decoder_oversize_exact),
        cmocka_unit_test(decoder_end_mid_message),
        cmocka_unit_test(decoder_pending_exact),
        cmocka_unit_test(decoder_large_payload_direct),
        cmocka_unit_test(decoder_emsgsize_and_cut),
        cmocka_unit_test(decoder_memory_released),
        cmocka_unit_test(send_plan),
        cmocka_unit_test(tls_record_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
