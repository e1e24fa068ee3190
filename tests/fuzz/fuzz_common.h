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

#define FUZZ_ASSERT(c)                                                        \
    do {                                                                      \
        if (!(c)) {                                                           \
            fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__,       \
                    __LINE__, #c);                                            \
            abort();                                                          \
        }                                                                     \
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
