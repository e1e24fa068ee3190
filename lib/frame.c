/*
 * Message framing (PROTOCOL.md "Framing"): a 4-byte big-endian length, then
 * that many payload bytes.  No I/O here; channel.c moves the bytes.
 */
#include "internal.h"

void lsec__frame_header(uint8_t hdr[LSEC__FRAME_HDR], uint32_t len)
{
    hdr[0] = (uint8_t)(len >> 24);
    hdr[1] = (uint8_t)(len >> 16);
    hdr[2] = (uint8_t)(len >> 8);
    hdr[3] = (uint8_t)len;
}

int lsec__frame_parse(const uint8_t hdr[LSEC__FRAME_HDR], size_t max,
                      uint32_t *len)
{
    uint32_t n;

    if (len != NULL)
        *len = 0;
    if (hdr == NULL || len == NULL)
        return LSEC_EINVAL;
    n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
        (uint32_t)hdr[2] << 8 | (uint32_t)hdr[3];
    /* Compared in 64 bits, so neither a 32-bit size_t nor a huge `max` can
     * wrap; the caller allocates only after this check passed, and a length
     * above the limit ends the connection (no resynchronising). */
    if ((uint64_t)n > (uint64_t)max)
        return lsec__fail(LSEC_EPROTO,
                          "frame length %lu exceeds the limit %llu",
                          (unsigned long)n, (unsigned long long)max);
    *len = n;
    return 0;
}
