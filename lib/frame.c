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

int lsec__tls_record_start(const uint8_t *b, size_t n, size_t *total)
{
    static const uint8_t magic[4] = {'L', 'S', 'E', 'C'};

    if (total != NULL)
        *total = 0;
    if (b == NULL && n > 0)
        return LSEC_EINVAL;
    if (n == 0)
        return LSEC__AGAIN;
    /* An auth-mode hello, byte by byte: the listener answers it with an
     * alert (PROTOCOL.md "Mode mismatch and other first bytes"). */
    if (b[0] == magic[0]) {
        for (size_t i = 1; i < n && i < sizeof(magic); i++)
            if (b[i] != magic[i])
                return LSEC_EPROTO;
        return n >= sizeof(magic) ? LSEC_EMODE : LSEC__AGAIN;
    }
    /* A TLS handshake record: type 22, legacy version 3.1 to 3.4, a length
     * of 1 to 2^14 (RFC 8446 5.1), each refused at its first wrong byte. */
    if (b[0] != 0x16)
        return LSEC_EPROTO;
    if (n >= 2 && b[1] != 0x03)
        return LSEC_EPROTO;
    if (n >= 3 && (b[2] < 0x01 || b[2] > 0x04))
        return LSEC_EPROTO;
    if (n >= 4 && b[3] > 0x40)
        return LSEC_EPROTO;
    if (n < LSEC__TLS_RECORD_HDR)
        return LSEC__AGAIN;
    size_t len = (size_t)b[3] << 8 | b[4];
    if (len == 0 || len > 16384)
        return LSEC_EPROTO;
    if (total != NULL)
        *total = LSEC__TLS_RECORD_HDR + len;
    return 0;
}
