/*
 * Message framing (PROTOCOL.md "Framing"): a 4-byte big-endian length, then
 * that many payload bytes.  The whole codec, sans-I/O: the header, the
 * sending side's plan, and the streaming decoder (internal.h says how the
 * I/O shell drives it); channel.c moves the bytes.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* The length in a header, in 64 bits so that neither a 32-bit size_t
 * nor a huge `max` can wrap in the comparison with it. */
static uint64_t header_len(const uint8_t hdr[LSEC__FRAME_HDR])
{
    return (uint64_t)((uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
                      (uint32_t)hdr[2] << 8 | (uint32_t)hdr[3]);
}

static int oversized(uint64_t n, size_t max)
{
    return lsec__fail(LSEC_EPROTO, "frame length %lu exceeds the limit %llu",
                      (unsigned long)n, (unsigned long long)max);
}

int lsec__frame_parse(const uint8_t hdr[LSEC__FRAME_HDR], size_t max,
                      uint32_t *len)
{
    uint64_t n;

    if (len != NULL)
        *len = 0;
    if (hdr == NULL || len == NULL)
        return LSEC_EINVAL;
    n = header_len(hdr);
    /* The caller allocates only after this check passed, and a length
     * above the limit ends the connection (no resynchronising). */
    if (n > (uint64_t)max)
        return oversized(n, max);
    *len = (uint32_t)n;
    return 0;
}

int lsec__frame_too_long(size_t len)
{
    return lsec__fail(LSEC_EMSGSIZE, "message of %zu bytes exceeds 4 GiB", len);
}

/* ------------------------------------------------------------------------ */
/* The streaming decoder                                                     */

void lsec__frame_rx_init(lsec__frame_rx *d, size_t max_message)
{
    memset(d, 0, sizeof(*d));
    d->max = max_message;
}

static void stash_free(lsec__frame_rx *d)
{
    if (d->stash != NULL) {
        lsec__wipe(d->stash, d->stash_have);
        free(d->stash);
    }
    d->stash = NULL;
    d->stash_have = d->stash_cap = 0;
}

/*
 * Room for `need` (<= msg_len) bytes in the stash.  Growth doubles, so that
 * a message arriving in many pieces is copied O(1) times per byte, and
 * never exceeds the message: memory stays within twice what has arrived.
 * The old block is wiped, not left behind by realloc.
 */
static int stash_reserve(lsec__frame_rx *d, size_t need)
{
    size_t cap;
    uint8_t *p;

    if (need <= d->stash_cap)
        return 0;
    cap = d->stash_cap > d->msg_len / 2 ? d->msg_len : 2 * d->stash_cap;
    if (cap < need)
        cap = need;
    if (cap < LSEC__FRAME_RA && d->msg_len >= LSEC__FRAME_RA)
        cap = LSEC__FRAME_RA;
    p = malloc(cap > 0 ? cap : 1);
    if (p == NULL)
        return lsec__fail(LSEC_ENOMEM, "out of memory keeping a message");
    if (d->stash != NULL) {
        memcpy(p, d->stash, d->stash_have);
        lsec__wipe(d->stash, d->stash_have);
        free(d->stash);
    }
    d->stash = p;
    d->stash_cap = cap;
    return 0;
}

/* Read-ahead buffers come and go with every message that a channel reads
 * whole (a round trip empties it each time): a released one is the
 * thread's spare for the next channel that needs one (spare.c).
 * Everything it held since it was allocated is in ra[0, used): wiped
 * before it is kept or freed. */
static void ra_drop(lsec__frame_rx *d)
{
    if (d->ra != NULL) {
        if (d->used > 0)
            lsec__wipe(d->ra, d->used);
        if (!lsec__spare_keep(LSEC__SPARE_FRAME_RA, d->ra))
            free(d->ra);
    }
    d->ra = NULL;
    d->off = d->len = d->used = 0;
}

static int ra_need(lsec__frame_rx *d)
{
    if (d->ra != NULL)
        return 0;
    d->ra = lsec__spare_take(LSEC__SPARE_FRAME_RA);
    if (d->ra == NULL && (d->ra = malloc(LSEC__FRAME_RA)) == NULL)
        return lsec__fail(LSEC_ENOMEM, "out of memory for a read buffer");
    d->off = d->len = d->used = 0;
    return 0;
}

void lsec__frame_rx_free(lsec__frame_rx *d)
{
    ra_drop(d);
    stash_free(d);
    d->have_len = false;
    d->have = 0;
}

void lsec__frame_rx_drop(lsec__frame_rx *d)
{
    ra_drop(d);
}

/* Move unread bytes to the front of the read-ahead buffer. */
static void ra_compact(lsec__frame_rx *d)
{
    if (d->off == 0)
        return;
    memmove(d->ra, d->ra + d->off, d->len - d->off);
    d->len -= d->off;
    d->off = 0;
}

int lsec__frame_rx_feed(lsec__frame_rx *d, const uint8_t *p, size_t n)
{
    int rc;

    if (n == 0)
        return 0;
    if ((rc = ra_need(d)) != 0)
        return rc;
    ra_compact(d);
    if (n > LSEC__FRAME_RA - d->len)
        return lsec__fail(LSEC_EPROTO, "more bytes than the read buffer holds");
    memcpy(d->ra + d->len, p, n);
    d->len += n;
    if (d->len > d->used)
        d->used = d->len;
    return 0;
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* Make the current frame's header known from the held bytes: 0,
 * LSEC__AGAIN (less than a header held), or the parse error. */
static int take_header(lsec__frame_rx *d)
{
    uint64_t n;

    if (d->have_len)
        return 0;
    if (d->len - d->off < LSEC__FRAME_HDR)
        return LSEC__AGAIN;
    /* lsec__frame_parse's check, without its argument checks. */
    n = header_len(d->ra + d->off);
    if (n > (uint64_t)d->max)
        return oversized(n, d->max);
    d->msg_len = (uint32_t)n;
    d->off += LSEC__FRAME_HDR;
    d->have_len = true;
    d->have = 0;
    return 0;
}

int lsec__frame_rx_next(lsec__frame_rx *d, uint8_t *dst, size_t cap,
                        size_t *len)
{
    size_t avail, take;
    int rc;

    *len = 0;
    if ((rc = take_header(d)) != 0)
        return rc;
    avail = d->len - d->off;
    if (d->msg_len > cap) {
        *len = d->msg_len;
        return lsec__fail(LSEC_EMSGSIZE,
                          "next message is %lu bytes; the buffer holds %zu",
                          (unsigned long)d->msg_len, cap);
    }
    if (d->stash != NULL) {
        /* A message cut by an earlier call continues in the stash and is
         * copied out once, whole. */
        take = min_size(avail, d->msg_len - d->stash_have);
        if ((rc = stash_reserve(d, d->stash_have + take)) != 0)
            return rc;
        if (take > 0)
            memcpy(d->stash + d->stash_have, d->ra + d->off, take);
        d->off += take;
        d->stash_have += take;
        if (d->stash_have < d->msg_len)
            return LSEC__AGAIN;
        memcpy(dst, d->stash, d->msg_len);
        stash_free(d);
    } else {
        take = min_size(avail, d->msg_len - d->have);
        if (take > 0)
            memcpy(dst + d->have, d->ra + d->off, take);
        d->off += take;
        d->have += take;
        if (d->have < d->msg_len)
            return LSEC__AGAIN;
    }
    d->have_len = false;
    d->have = 0;
    *len = d->msg_len;
    return 0;
}

int lsec__frame_rx_plan(lsec__frame_rx *d, uint8_t *dst, struct iovec iov[2])
{
    int rc;

    if ((rc = ra_need(d)) != 0)
        return rc;
    if (!d->have_len) {
        /* Less than a header is held: read behind it. */
        ra_compact(d);
        iov[0].iov_base = d->ra + d->len;
        iov[0].iov_len = LSEC__FRAME_RA - d->len;
        d->iov0 = iov[0].iov_len;
        return 1;
    }
    /* Inside a payload: lsec__frame_rx_next took all the read-ahead buffer
     * held, so the rest goes straight where it belongs (the caller's
     * buffer, or the stash), and the read-ahead buffer catches what
     * follows the message in the same read. */
    d->off = d->len = 0;
    if (d->stash != NULL) {
        if ((rc = stash_reserve(d, d->stash_have + 1)) != 0)
            return rc;
        iov[0].iov_base = d->stash + d->stash_have;
        iov[0].iov_len = d->stash_cap - d->stash_have;
    } else {
        iov[0].iov_base = dst + d->have;
        iov[0].iov_len = d->msg_len - d->have;
    }
    d->iov0 = iov[0].iov_len;
    if (d->stash != NULL && d->stash_cap < d->msg_len)
        return 1; /* the stash ends before the message does */
    iov[1].iov_base = d->ra;
    iov[1].iov_len = LSEC__FRAME_RA;
    return 2;
}

int lsec__frame_rx_plan_head(lsec__frame_rx *d, struct iovec iov[2])
{
    int rc = lsec__frame_rx_plan(d, NULL, iov);

    if (rc == 1 && !d->have_len && d->len - d->off < LSEC__FRAME_HDR) {
        /* Only the header's missing bytes: the payload stays in the socket
         * for the caller to move elsewhere. */
        iov[0].iov_len = LSEC__FRAME_HDR - (d->len - d->off);
        d->iov0 = iov[0].iov_len;
    }
    return rc;
}

void lsec__frame_rx_got(lsec__frame_rx *d, size_t n)
{
    size_t first = min_size(n, d->iov0);

    if (!d->have_len)
        d->len += first;
    else if (d->stash != NULL)
        d->stash_have += first;
    else
        d->have += first;
    if (n > first)
        d->len = n - first; /* behind the payload, from ra[0] */
    if (d->len > d->used)
        d->used = d->len;
    d->iov0 = 0;
}

int lsec__frame_rx_keep(lsec__frame_rx *d, const uint8_t *dst)
{
    int rc;

    if ((rc = stash_reserve(d, d->have)) != 0)
        return rc;
    memcpy(d->stash, dst, d->have);
    d->stash_have = d->have;
    d->have = 0;
    return 0;
}

bool lsec__frame_rx_mid(const lsec__frame_rx *d)
{
    return d->have_len || d->len > d->off;
}

size_t lsec__frame_rx_pending(const lsec__frame_rx *d)
{
    size_t held = d->len - d->off;

    /* Exact: a poll loop ("pending > 0 ? receive : wait for the socket")
     * neither sleeps on a message that is here nor spins on bytes that
     * need more from the socket (part of a header, or of a payload). */
    if (d->have_len)
        return d->stash_have + held >= d->msg_len ? d->stash_have + held : 0;
    if (held < LSEC__FRAME_HDR)
        return 0;
    uint64_t n = header_len(d->ra + d->off);
    if (n > (uint64_t)d->max)
        return held; /* the next call reports the error at once */
    return held - LSEC__FRAME_HDR >= n ? held : 0;
}

int lsec__frame_rx_head(lsec__frame_rx *d, size_t *left)
{
    int rc;

    *left = 0;
    if ((rc = take_header(d)) != 0)
        return rc;
    /* Moving a payload elsewhere, `have` counts what was taken of it. */
    *left = d->msg_len - d->have;
    return 0;
}

size_t lsec__frame_rx_held(const lsec__frame_rx *d, const uint8_t **p)
{
    size_t avail;

    *p = NULL;
    if (!d->have_len)
        return 0;
    /* A stash holds the payload's first stash_have bytes; the read-ahead
     * buffer what follows them. */
    if (d->have < d->stash_have) {
        *p = d->stash + d->have;
        return d->stash_have - d->have;
    }
    avail = d->ra != NULL ? d->len - d->off : 0;
    if (avail == 0)
        return 0;
    *p = d->ra + d->off;
    return min_size(avail, d->msg_len - d->have);
}

size_t lsec__frame_rx_take(lsec__frame_rx *d, size_t n)
{
    if (d->have >= d->stash_have && d->ra != NULL)
        d->off += min_size(n, d->len - d->off);
    d->have += n;
    if (d->have < d->msg_len)
        return d->msg_len - d->have;
    stash_free(d);
    d->have_len = false;
    d->have = 0;
    return 0;
}

size_t lsec__frame_tls_head(size_t len)
{
    size_t lead;

    if (len <= LSEC__TLS_PLAIN_MAX - LSEC__FRAME_HDR)
        return len;
    lead = (LSEC__FRAME_HDR + len) % LSEC__TLS_PLAIN_MAX;
    if (lead < LSEC__FRAME_HDR)
        lead += LSEC__TLS_PLAIN_MAX;
    return lead - LSEC__FRAME_HDR;
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
