/*
 * The frame codec (frame.c), sans-I/O: the header, the send plan and the
 * streaming decoder.  Included by internal.h after the progress enum.
 */
#ifndef LOOPSEC_FRAME_H
#define LOOPSEC_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

static inline void lsec__frame_header(uint8_t hdr[LSEC__FRAME_HDR],
                                      uint32_t len)
{
    hdr[0] = (uint8_t)(len >> 24);
    hdr[1] = (uint8_t)(len >> 16);
    hdr[2] = (uint8_t)(len >> 8);
    hdr[3] = (uint8_t)len;
}
/*
 * Decode a header from `hdr` (exactly LSEC__FRAME_HDR bytes).  0 with *len
 * set, or LSEC_EPROTO if it exceeds `max` (checked before any allocation).
 */
int lsec__frame_parse(const uint8_t hdr[LSEC__FRAME_HDR], size_t max,
                      uint32_t *len);

/*
 * The sending side's plan for one message: the header, written into `hdr`,
 * and the payload from the caller's buffer, as iovecs for one write.
 * Returns the iovec count (1 for an empty message, else 2), or
 * LSEC_EMSGSIZE when `len` does not fit the 32-bit length.
 */
int lsec__frame_too_long(size_t len); /* the failure: LSEC_EMSGSIZE */
/* Inline: every lsec_send plans one message. */
static inline int lsec__frame_plan_send(uint8_t hdr[LSEC__FRAME_HDR],
                                        const void *msg, size_t len,
                                        struct iovec iov[2])
{
    iov[0].iov_base = hdr;
    iov[0].iov_len = LSEC__FRAME_HDR;
    iov[1].iov_base = (void *)msg;
    iov[1].iov_len = len;
    if (len > UINT32_MAX)
        return lsec__frame_too_long(len);
    lsec__frame_header(hdr, (uint32_t)len);
    return len > 0 ? 2 : 1;
}

/* Read-ahead capacity: headers, small messages, bytes behind a handshake. */
#define LSEC__FRAME_RA 4096

/*
 * The streaming decoder: whole messages out of a byte stream, sans-I/O.
 * The I/O shell asks it where to read next (lsec__frame_rx_plan: the free
 * part of the read-ahead buffer, or, once a header is known, the rest of
 * the payload straight in the caller's buffer with the read-ahead buffer
 * behind it), reads, and reports the count (lsec__frame_rx_got); then
 * lsec__frame_rx_next hands out what the buffered bytes complete.  Bytes
 * can also be fed in (lsec__frame_rx_feed).
 *
 * The read-ahead buffer is allocated when a read needs it and released
 * (wiped) by lsec__frame_rx_release when it holds nothing, so an idle
 * channel keeps none.  When a call ends inside a payload that went to the
 * caller's buffer, lsec__frame_rx_cut keeps that part ("stash", memory of
 * our own, growing geometrically up to the message's length, so that a
 * message arriving in many pieces is copied O(1) times per byte).
 */
typedef struct lsec__frame_rx {
    size_t max;  /* larger lengths are LSEC_EPROTO */
    uint8_t *ra; /* read-ahead, NULL until needed; ra[off, len) unread */
    size_t off, len;
    size_t used;      /* ra[0, used) may hold bytes: wiped before free */
    bool have_len;    /* the current frame's header is decoded */
    uint32_t msg_len; /* ... and its length */
    size_t have;      /* payload bytes in the caller's buffer (this call) */
    size_t iov0;      /* length of the first iovec of the last plan */
    uint8_t *stash;   /* payload kept across calls */
    size_t stash_have, stash_cap;
} lsec__frame_rx;

void lsec__frame_rx_init(lsec__frame_rx *d, size_t max_message);
/* Wipe and free everything held. */
void lsec__frame_rx_free(lsec__frame_rx *d);
/* Append bytes to the read-ahead buffer: 0, LSEC_EPROTO when more than it
 * can hold arrive this way, LSEC_ENOMEM. */
int lsec__frame_rx_feed(lsec__frame_rx *d, const uint8_t *p, size_t n);
/*
 * Decode from what is buffered, into dst (cap bytes): 0 with a whole
 * message (*len), LSEC__AGAIN when more bytes must be read (plan, read,
 * got, next again, with the same dst), LSEC_EMSGSIZE when the next message
 * is larger than cap (*len = its length; it stays), LSEC_EPROTO for a
 * length above the limit (the stream is over: no resynchronising).
 */
int lsec__frame_rx_next(lsec__frame_rx *d, uint8_t *dst, size_t cap,
                        size_t *len);
/* Nothing held (no read-ahead buffer, no header): lsec__frame_rx_next
 * would answer LSEC__AGAIN without a look, so the shell reads first. */
static inline bool lsec__frame_rx_idle(const lsec__frame_rx *d)
{
    return d->ra == NULL && !d->have_len;
}
/* Where the next read goes (after LSEC__AGAIN, same dst): 1 or 2 iovecs
 * (the count), or LSEC_ENOMEM. */
int lsec__frame_rx_plan(lsec__frame_rx *d, uint8_t *dst, struct iovec iov[2]);
/* `n` bytes were read into the last plan's iovecs. */
void lsec__frame_rx_got(lsec__frame_rx *d, size_t n);
/* The call ends before the message is whole: keep its payload bytes that
 * are in dst (0 or LSEC_ENOMEM; the stream is broken then).  Inline: a
 * read that finds nothing between messages has nothing to keep. */
int lsec__frame_rx_keep(lsec__frame_rx *d, const uint8_t *dst);
static inline int lsec__frame_rx_cut(lsec__frame_rx *d, const uint8_t *dst)
{
    if (!d->have_len || d->stash != NULL || d->have == 0)
        return 0;
    return lsec__frame_rx_keep(d, dst);
}
/* Bytes of an unfinished frame are held (the stream may not end here). */
bool lsec__frame_rx_mid(const lsec__frame_rx *d);
/* Bytes with which the next lsec__frame_rx_next makes progress without a
 * read (a whole message, or a length above the limit); 0 when it needs
 * more. */
size_t lsec__frame_rx_pending(const lsec__frame_rx *d);
/* Release the read-ahead buffer if it holds nothing (inline: every
 * lsec_recv ends with it). */
void lsec__frame_rx_drop(lsec__frame_rx *d);
static inline void lsec__frame_rx_release(lsec__frame_rx *d)
{
    if (d->ra != NULL && d->off == d->len)
        lsec__frame_rx_drop(d);
}
/*
 * A payload moved elsewhere than a caller's buffer (lsec_recv_to_fd,
 * fdmove.c).  lsec__frame_rx_head parses the next header from what is held
 * (LSEC__AGAIN: less than a header) and says how much of the payload is
 * not yet taken; lsec__frame_rx_held points at the held bytes of it, in
 * order (the stash, then the read-ahead buffer); lsec__frame_rx_take books
 * n bytes taken (held ones first, then ones moved straight from the
 * socket) and returns what is left: at 0 the message is done.
 */
int lsec__frame_rx_head(lsec__frame_rx *d, size_t *left);
/* lsec__frame_rx_plan for a header alone: no byte of the payload read. */
int lsec__frame_rx_plan_head(lsec__frame_rx *d, struct iovec iov[2]);
size_t lsec__frame_rx_held(const lsec__frame_rx *d, const uint8_t **p);
size_t lsec__frame_rx_take(lsec__frame_rx *d, size_t n);

/*
 * The TLS record plan of one message: the first record carries the header
 * and the payload's first lsec__frame_tls_head(len) bytes (copied, then
 * wiped), so that the rest is whole records of LSEC__TLS_PLAIN_MAX written
 * straight from the caller's buffer: no more records than needed, and for
 * a 64 KiB message 4 bytes of plaintext copied instead of 16 KiB.  At most
 * LSEC__TLS_PLAIN_MAX.
 */
#define LSEC__TLS_PLAIN_MAX 16384 /* a TLS record's plaintext (RFC 8446) */
size_t lsec__frame_tls_head(size_t len);

#endif
