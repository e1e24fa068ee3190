/*
 * lib/frame.c: the 4-byte big-endian length prefix and its limit check.
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
