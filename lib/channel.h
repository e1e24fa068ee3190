/*
 * The channel object, shared by its two files: channel.c (the object and
 * the public calls) and transport.c (moving its bytes: one read or write on
 * the socket or through TLS, the send queue, write-all).  Private to them.
 */
#ifndef LOOPSEC_CHANNEL_H
#define LOOPSEC_CHANNEL_H

#include "internal.h"

struct lsec_channel {
    int fd;
    int mode;
    lsec__tls *tls;
    size_t max_message;
    int err; /* sticky: once broken, every call fails with it */
    /* Set by lsec_channel_abort (any thread, a signal handler): read with
     * __atomic loads; once set, every call ends with LSEC_ECLOSED. */
    int aborted;
    /* The peer ended its direction cleanly (FIN or close_notify between
     * messages).  Receiving is over; sending goes on (half-close). */
    bool rx_closed;
    /* lsec_channel_shutdown ended our direction: lsec_send is refused. */
    bool tx_closed;
    lsec__addr local, remote;
    int64_t peer_uid;
    lsec__frame_rx rx; /* the receive side's decoder and its buffers */
    /* bytes of the framed stream accepted by lsec_send, not yet written */
    uint8_t *wq;
    size_t wq_off, wq_len;
    bool sent_last; /* the last call was lsec_send: no answer is here yet */
    /* lsec_send_from_fd / lsec_recv_to_fd (fdmove.c): their pipes */
    lsec__fdmove *fdm;
};

/* transport.c */

/*
 * Record a sticky failure: every later call fails with `code`.  With `why`,
 * also a log line and the detail `why`; without, the detail already set
 * stays.  Returns `code`.
 */
int lsec__chan_fail(lsec_channel *c, int code, const char *why);
/*
 * Read at least one byte into iov (TLS uses only iov[0]) before `deadline`.
 * Returns 0 with *n > 0, LSEC_ECLOSED on a clean end of stream, or an error.
 */
int lsec__chan_rx(lsec_channel *c, struct iovec *iov, int iovcnt,
                  int64_t deadline, bool nowait, size_t *n);
/*
 * Write all of iov before the deadline.  Nothing written when the deadline
 * passes: ETIMEDOUT/EAGAIN.  Part written: the rest is queued, 0.
 */
int lsec__chan_tx_all(lsec_channel *c, struct iovec *iov, int iovcnt,
                      int64_t deadline, bool nowait);
/*
 * One auth-mode frame, as lsec__frame_plan_send planned it (header, then
 * payload), written as lsec__chan_tx_all writes: header and payload in one
 * system call, a small payload copied behind the header (one buffer).
 */
int lsec__chan_tx_frame(lsec_channel *c, struct iovec plan[2], int iovcnt,
                        int64_t deadline, bool nowait);
/* Write the queue out.  0 when empty; ETIMEDOUT/EAGAIN leave the rest. */
int lsec__chan_flush_queue(lsec_channel *c, int64_t deadline, bool nowait);
/* Queue the bytes of iov behind what is queued and not yet written (the
 * old block wiped, not realloc'd): 0 or LSEC_ENOMEM, which breaks the
 * channel. */
int lsec__chan_queue_iov(lsec_channel *c, const struct iovec *iov, int iovcnt);
/* The send queue holds plaintext: wiped before it is freed. */
void lsec__chan_queue_free(lsec_channel *c);

#endif
