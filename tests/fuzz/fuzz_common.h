/*
 * Shared helpers for the libFuzzer harnesses in this directory.
 *
 * Every harness defines LLVMFuzzerTestOneInput and checks properties with
 * FUZZ_ASSERT, which aborts: libFuzzer (and the replay driver) reports an
 * abort as a finding, with the input that caused it.
 *
 * The "reader" below splits one fuzz input into decisions (chunk sizes,
 * flags) and payload, so that one input fully determines a run: a finding
 * replays exactly.
 */
#ifndef LOOPSEC_FUZZ_COMMON_H
#define LOOPSEC_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(c)                                                         \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__,        \
                    __LINE__, #c);                                             \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* A cursor over the fuzz input. */
typedef struct fz {
    const uint8_t *p;
    size_t n;
} fz;

static inline fz fz_init(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    return f;
}

/* One byte of decision, 0 when the input has run out. */
static inline uint8_t fz_u8(fz *f)
{
    uint8_t v;

    if (f->n == 0)
        return 0;
    v = f->p[0];
    f->p++;
    f->n--;
    return v;
}

static inline uint16_t fz_u16(fz *f)
{
    uint16_t hi = fz_u8(f);
    return (uint16_t)(hi << 8 | fz_u8(f));
}

/* Up to `want` bytes of payload; returns how many were taken. */
static inline size_t fz_take(fz *f, size_t want, const uint8_t **out)
{
    size_t k = want < f->n ? want : f->n;

    *out = f->p;
    f->p += k;
    f->n -= k;
    return k;
}

/* A small deterministic generator (xorshift32), seeded from the input, for
 * decisions that must not compete with the payload for input bytes (chunk
 * sizes, injected EAGAIN): one input still fully determines a run. */
static inline uint32_t fz_rand(uint32_t *state)
{
    uint32_t x = *state ? *state : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

/* A count of at most n (n > 0): 1, a few, any, or all of it. */
static inline size_t fz_some(uint32_t *state, size_t n)
{
    uint32_t v = fz_rand(state);
    if (n <= 1)
        return n;
    switch (v % 4) {
    case 0:
        return 1;
    case 1:
        return 1 + (v >> 8) % (n < 16 ? n : 16);
    case 2:
        return 1 + (v >> 8) % n;
    default:
        return n;
    }
}

static inline int fz_all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

/* Is every byte of the NUL-terminated `s` printable ASCII?  Details and
 * log lines must never carry control bytes from an attacker's input. */
static inline int fz_printable(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

/* Does `hay` (hlen bytes) contain `needle` (nlen bytes)? */
static inline int fz_contains(const void *hay, size_t hlen, const void *needle,
                              size_t nlen)
{
    const uint8_t *h = hay;

    if (nlen == 0 || hlen < nlen)
        return 0;
    for (size_t i = 0; i + nlen <= hlen; i++)
        if (memcmp(h + i, needle, nlen) == 0)
            return 1;
    return 0;
}

#endif /* LOOPSEC_FUZZ_COMMON_H */
