/*
 * lib/secret.c: key derivation (checked against OpenSSL's BLAKE2BMAC as an
 * independent implementation), base64url and hex codecs, randomness, wiping.
 */
/* cmocka.h needs these first. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include "internal.h"

#include "ref_mac.h"

#include <string.h>

static void kdf_is_mac_of_label(void **state)
{
    static const char *labels[] = {
        LSEC__LABEL_AUTH_CLIENT, LSEC__LABEL_AUTH_SERVER, LSEC__LABEL_TLS_PSK};
    uint8_t secret[LSEC_SECRET_BYTES], key[LSEC__KEY_BYTES], want[32];

    (void)state;
    for (int round = 0; round < 16; round++) {
        lsec__random(secret, sizeof(secret));
        for (size_t i = 0; i < 3; i++) {
            lsec__kdf(key, secret, labels[i]);
            lsec_test_ref_mac(want, secret, labels[i], strlen(labels[i]));
            assert_memory_equal(key, want, 32);
        }
        lsec__tls_psk(key, secret);
        lsec_test_ref_mac(want, secret, LSEC__LABEL_TLS_PSK,
                          strlen(LSEC__LABEL_TLS_PSK));
        assert_memory_equal(key, want, 32);
    }
}

static void one_key_per_purpose(void **state)
{
    uint8_t secret[LSEC_SECRET_BYTES] = {0};
    uint8_t kc[32], ks[32], psk[32];

    (void)state;
    /* Even the all-zero secret gives three unrelated keys. */
    lsec__kdf(kc, secret, LSEC__LABEL_AUTH_CLIENT);
    lsec__kdf(ks, secret, LSEC__LABEL_AUTH_SERVER);
    lsec__tls_psk(psk, secret);
    assert_memory_not_equal(kc, ks, 32);
    assert_memory_not_equal(kc, psk, 32);
    assert_memory_not_equal(ks, psk, 32);
    assert_memory_not_equal(kc, secret, 32);
    /* The labels as the protocol fixes them. */
    assert_string_equal(LSEC__LABEL_AUTH_CLIENT,
                        "loopsec/1 auth client->server");
    assert_string_equal(LSEC__LABEL_AUTH_SERVER,
                        "loopsec/1 auth server->client");
    assert_string_equal(LSEC__LABEL_TLS_PSK, "loopsec/1 tls psk server");
}

/* RFC 4648 section 10, in the URL-safe alphabet without padding. */
static const struct {
    const char *bin;
    const char *text;
} b64_vectors[] = {
    {"", ""},
    {"f", "Zg"},
    {"fo", "Zm8"},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg"},
    {"fooba", "Zm9vYmE"},
    {"foobar", "Zm9vYmFy"},
    /* The two characters where base64url differs from base64. */
    {"\xfb\xff", "-_8"},
    {"\xff\xff\xff", "____"},
    {"\xfb\xef\xbe", "----"},
};

static void b64_vectors_round_trip(void **state)
{
    char text[64];
    uint8_t bin[64];
    size_t got;

    (void)state;
    for (size_t i = 0; i < sizeof(b64_vectors) / sizeof(b64_vectors[0]); i++) {
        size_t n = strlen(b64_vectors[i].bin);
        size_t tn = strlen(b64_vectors[i].text);
        assert_int_equal(lsec__b64_encode(text, sizeof(text),
                                          (const uint8_t *)b64_vectors[i].bin,
                                          n),
                         0);
        assert_string_equal(text, b64_vectors[i].text);
        got = 99;
        assert_int_equal(
            lsec__b64_decode(bin, sizeof(bin), b64_vectors[i].text, tn, &got),
            0);
        assert_int_equal(got, n);
        assert_memory_equal(bin, b64_vectors[i].bin, n);
    }
}

static void b64_refuses_other_spellings(void **state)
{
    static const char *bad[] = {
        "Zg==",  "Zg=",   /* padding */
        "Z",     "Zm9vY", /* a lone final character carries no byte */
        "Zh",    "Zm9",   /* non-zero spare bits ("Zg", "Zm8" are canonical) */
        "Zm+v",  "Zm/v",  /* the standard alphabet */
        "Zm9 v", "Zm9\nv", " Zm9v", "Zm9v ", "Zm.v", "Zm9v=",
    };
    uint8_t bin[64];
    size_t got;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        got = 99;
        if (lsec__b64_decode(bin, sizeof(bin), bad[i], strlen(bad[i]), &got) !=
            LSEC_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(got, 0);
    }
    /* A NUL inside the counted length is a bad character. */
    assert_int_equal(lsec__b64_decode(bin, sizeof(bin), "Zm\0v", 4, &got),
                     LSEC_EINVAL);
    /* Every non-canonical spelling of the last character of a 32-byte
     * secret (2 spare bits) is refused; only one in 4 passes. */
    {
        uint8_t secret[32] = {0};
        char text[44];
        int accepted = 0;
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij"
                                       "klmnopqrstuvwxyz0123456789-_";
        assert_int_equal(lsec__b64_encode(text, sizeof(text), secret, 32), 0);
        assert_int_equal(strlen(text), 43);
        for (size_t c = 0; c < 64; c++) {
            text[42] = alphabet[c];
            if (lsec__b64_decode(bin, sizeof(bin), text, 43, &got) == 0)
                accepted++;
        }
        /* The 16 characters whose value has its low 2 bits zero. */
        assert_int_equal(accepted, 16);
    }
}

static void b64_sizes(void **state)
{
    uint8_t bin[32] = {1, 2, 3};
    char text[44];
    size_t got;

    (void)state;
    /* 32 bytes need 43 characters plus the NUL. */
    assert_int_equal(lsec__b64_encode(text, 43, bin, 32), LSEC_EMSGSIZE);
    assert_int_equal(lsec__b64_encode(text, 44, bin, 32), 0);
    assert_int_equal(strlen(text), 43);
    assert_int_equal(lsec__b64_decode(bin, 31, text, 43, &got), LSEC_EMSGSIZE);
    assert_int_equal(lsec__b64_decode(bin, 32, text, 43, &got), 0);
    assert_int_equal(got, 32);
    assert_int_equal(lsec__b64_encode(NULL, 44, bin, 32), LSEC_EINVAL);
    assert_int_equal(lsec__b64_encode(text, 44, NULL, 32), LSEC_EINVAL);
    assert_int_equal(lsec__b64_decode(bin, 32, text, 43, NULL), LSEC_EINVAL);
    assert_int_equal(lsec__b64_decode(NULL, 32, text, 43, &got), LSEC_EINVAL);
    assert_int_equal(lsec__b64_encode(text, 1, bin, 0), 0);
    assert_string_equal(text, "");
}

static void hex_round_trip(void **state)
{
    static const uint8_t bin[] = {0x00, 0x01, 0x7f, 0x80,
                                  0xab, 0xcd, 0xef, 0xff};
    char text[17];
    uint8_t back[8];

    (void)state;
    assert_int_equal(lsec__hex_encode(text, sizeof(text), bin, 8), 0);
    assert_string_equal(text, "00017f80abcdefff");
    assert_int_equal(lsec__hex_decode(back, sizeof(back), text, 16), 0);
    assert_memory_equal(back, bin, 8);
    /* Every digit value in both positions. */
    for (unsigned v = 0; v < 256; v++) {
        uint8_t b = (uint8_t)v, r;
        char t[3];
        assert_int_equal(lsec__hex_encode(t, sizeof(t), &b, 1), 0);
        assert_int_equal(lsec__hex_decode(&r, 1, t, 2), 0);
        assert_int_equal(r, b);
    }
}

static void hex_refuses(void **state)
{
    uint8_t out[8];
    char t[3] = {0};
    int ok = 0;

    (void)state;
    assert_int_equal(lsec__hex_decode(out, 8, "00017F80", 8), LSEC_EINVAL);
    assert_int_equal(lsec__hex_decode(out, 8, "0001780", 7), LSEC_EINVAL);
    assert_int_equal(lsec__hex_decode(out, 8, "0g", 2), LSEC_EINVAL);
    assert_int_equal(lsec__hex_decode(out, 8, " 0", 2), LSEC_EINVAL);
    assert_int_equal(lsec__hex_decode(out, 8, "0\0", 2), LSEC_EINVAL);
    assert_int_equal(lsec__hex_decode(out, 1, "0011", 4), LSEC_EMSGSIZE);
    assert_int_equal(lsec__hex_encode((char *)out, 4, out, 2), LSEC_EMSGSIZE);
    /* Exactly the 16 lowercase digits are accepted, for every byte value. */
    for (unsigned c = 0; c < 256; c++) {
        t[0] = (char)c;
        t[1] = '0';
        if (lsec__hex_decode(out, 1, t, 2) == 0)
            ok++;
    }
    assert_int_equal(ok, 16);
}

static void random_and_wipe(void **state)
{
    uint8_t a[32] = {0}, b[32] = {0}, zero[32] = {0};

    (void)state;
    lsec__random(a, sizeof(a));
    lsec__random(b, sizeof(b));
    assert_memory_not_equal(a, b, 32);
    assert_memory_not_equal(a, zero, 32);
    lsec__wipe(a, sizeof(a));
    assert_memory_equal(a, zero, 32);
    lsec__wipe(NULL, 8); /* harmless */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kdf_is_mac_of_label),
        cmocka_unit_test(one_key_per_purpose),
        cmocka_unit_test(b64_vectors_round_trip),
        cmocka_unit_test(b64_refuses_other_spellings),
        cmocka_unit_test(b64_sizes),
        cmocka_unit_test(hex_round_trip),
        cmocka_unit_test(hex_refuses),
        cmocka_unit_test(random_and_wipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
