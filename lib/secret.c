/*
 * Secrets, key derivation and the text encodings of binary values.  Pure
 * functions over bytes: no sockets, no files.  Everything secret goes through
 * libsodium, and every temporary copy of key material is wiped before the
 * function returns.
 */
#include "internal.h"

#include <sodium.h>
#include <string.h>

void lsec__random(void *buf, size_t len)
{
    /* randombytes_buf never fails once libsodium has picked its source;
     * lsec__init makes sure that happened (it is idempotent and cheap).  A
     * failing sodium_init leaves randombytes_buf on its default source,
     * which still reads the kernel's generator. */
    (void)lsec__init();
    randombytes_buf(buf, len);
}

void lsec__kdf(uint8_t key[LSEC__KEY_BYTES],
               const uint8_t secret[LSEC_SECRET_BYTES], const char *label)
{
    crypto_generichash_state st;

    /* PROTOCOL.md "Keys": keyed BLAKE2b-256 with the secret as the key and
     * the label, as ASCII without its NUL, as the message.  A distinct
     * label per purpose keeps any one derived key from ever serving two
     * purposes. */
    (void)crypto_generichash_init(&st, secret, LSEC_SECRET_BYTES,
                                  LSEC__KEY_BYTES);
    (void)crypto_generichash_update(&st, (const unsigned char *)label,
                                    strlen(label));
    (void)crypto_generichash_final(&st, key, LSEC__KEY_BYTES);
    /* The state held the secret's key block: wipe it. */
    sodium_memzero(&st, sizeof(st));
}

void lsec__tls_psk(uint8_t psk[LSEC__KEY_BYTES],
                   const uint8_t secret[LSEC_SECRET_BYTES])
{
    /* The raw secret never reaches TLS; only this derived key does. */
    lsec__kdf(psk, secret, LSEC__LABEL_TLS_PSK);
}

/* Characters of base64url text without padding that encode `n` bytes. */
static size_t b64_chars(size_t n)
{
    return n / 3 * 4 + (n % 3 * 4 + 2) / 3;
}

int lsec__b64_encode(char *out, size_t outlen, const uint8_t *in, size_t n)
{
    if (out == NULL || (in == NULL && n > 0))
        return LSEC_EINVAL;
    /* libsodium aborts on a short buffer, so check first (NUL included). */
    if (n > (SIZE_MAX - 1) / 4 * 3 - 3 || outlen < b64_chars(n) + 1)
        return LSEC_EMSGSIZE;
    sodium_bin2base64(out, outlen, in, n,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return 0;
}

int lsec__b64_decode(uint8_t *out, size_t outlen, const char *in, size_t n,
                     size_t *got)
{
    const char *end = NULL;
    size_t len = 0, need;

    if (got != NULL)
        *got = 0;
    if (out == NULL || got == NULL || (in == NULL && n > 0))
        return LSEC_EINVAL;
    /* A group of 4 characters carries 3 bytes; a final partial group of 1
     * character carries none and is never valid. */
    if (n % 4 == 1)
        return LSEC_EINVAL;
    need = n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1);
    if (outlen < need)
        return LSEC_EMSGSIZE;
    /* No characters are ignored (ignore = NULL): whitespace, padding and the
     * standard alphabet's '+' and '/' are errors.  libsodium also rejects
     * non-zero bits left over in the final character, so every byte string
     * has exactly one accepted text. */
    if (sodium_base642bin(out, outlen, in, n, NULL, &len, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        end != in + n || len != need) {
        sodium_memzero(out, outlen < need ? outlen : need);
        return LSEC_EINVAL;
    }
    *got = len;
    return 0;
}

int lsec__hex_encode(char *out, size_t outlen, const uint8_t *in, size_t n)
{
    if (out == NULL || (in == NULL && n > 0))
        return LSEC_EINVAL;
    /* libsodium aborts on a short buffer, so check first (NUL included). */
    if (n > (SIZE_MAX - 1) / 2 || outlen < 2 * n + 1)
        return LSEC_EMSGSIZE;
    /* sodium_bin2hex is constant-time and writes lowercase digits. */
    sodium_bin2hex(out, outlen, in, n);
    return 0;
}

/*
 * The value of a lowercase hex digit, or a value with bit 8 set for any other
 * character.  Branch-free (after libsodium's sodium_hex2bin), because the
 * digits may spell a key.
 */
static unsigned hex_digit(unsigned char c)
{
    /* Each *_ok is 0x00ffffff when its range matched and 0 otherwise: the
     * subtractions borrow into the high bits only inside the range. */
    unsigned num = (unsigned)c ^ 48U; /* '0'..'9' -> 0..9 */
    unsigned num_ok = (num - 10U) >> 8;
    unsigned alpha = (unsigned)c - 87U; /* 'a'..'f' -> 10..15 */
    unsigned alpha_ok = ((alpha - 10U) ^ (alpha - 16U)) >> 8;
    unsigned ok = num_ok | alpha_ok;

    return (num_ok & num) | (alpha_ok & alpha) | (~ok & 0x100U);
}

int lsec__hex_decode(uint8_t *out, size_t outlen, const char *in, size_t n)
{
    unsigned bad = 0;

    if (out == NULL || (in == NULL && n > 0) || n % 2 != 0)
        return LSEC_EINVAL;
    if (outlen < n / 2)
        return LSEC_EMSGSIZE;
    /* Only lowercase digits: the text forms in PROTOCOL.md have one
     * spelling each. */
    for (size_t i = 0; i < n / 2; i++) {
        unsigned hi = hex_digit((unsigned char)in[2 * i]);
        unsigned lo = hex_digit((unsigned char)in[2 * i + 1]);
        bad |= (hi | lo) & 0x100U;
        out[i] = (uint8_t)(hi << 4 | (lo & 0xfU));
    }
    if (bad != 0) {
        sodium_memzero(out, n / 2);
        return LSEC_EINVAL;
    }
    return 0;
}

void lsec__wipe(void *p, size_t n)
{
    if (p != NULL)
        sodium_memzero(p, n);
}
