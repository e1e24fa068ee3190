/*
 * Between the TLS engine (tls.c, the only file that includes OpenSSL) and
 * its I/O shell (tls_io.c).  No other file includes this header: the rest
 * of lib/ sees only the lsec__tls_* entry points of internal.h.
 *
 * The engine does no I/O.  OpenSSL reads ciphertext from `in` and writes
 * ciphertext to `out`, two buffers the engine owns (a BIO over them, as
 * nng's TLS engine does); the shell moves bytes between them and the socket
 * through the seam (lsec__io) and tells the engine what it saw (end of
 * stream, a failed system call).  The shell reads many records in one recv
 * into `in` and sends every record of a write in one send from `out`.
 */
#ifndef LSEC_TLS_ENGINE_H
#define LSEC_TLS_ENGINE_H

#include "internal.h"

struct ssl_st;

/* The fatal protocol_version alert (70) that answers an auth-mode hello
 * (PROTOCOL.md "Mode mismatch"). */
#define LSEC__TLS_MODE_ALERT                                                   \
    {                                                                          \
        0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 70                                 \
    }

/* The connection's own storage for `out`: the records of a small write
 * (a 64-byte message is one 90-byte record) need no allocation of their
 * own, so a stream of small messages makes no malloc/free per write. */
#define LSEC__TLS_OUT_FIXED 256

/* Bytes b[off, len) are waiting; cap is the room at b (0: none).  b is
 * `fixed` (storage of the connection, never freed) or an allocation. */
typedef struct lsec__tlsbuf {
    uint8_t *b;
    size_t cap, off, len;
    uint8_t *fixed; /* NULL, or fixed_cap bytes used while they suffice */
    size_t fixed_cap;
} lsec__tlsbuf;

struct lsec__tls {
    struct ssl_st *ssl;
    int role;
    int fd;           /* the shell's: the engine never uses it */
    lsec__tlsbuf in;  /* ciphertext received, not yet taken by OpenSSL */
    lsec__tlsbuf out; /* ciphertext written by OpenSSL, not yet sent */
    size_t in_hint;   /* the shell's next allocation of `in` */
    size_t wr_held;   /* plaintext whose records wait in `out`: a write
                         reports it once they are sent */
    bool shut_queued; /* our close_notify is in `out` (or sent) */
    uint8_t psk[LSEC__KEY_BYTES];
    char identity[LSEC__PSK_IDENTITY_MAX];
    size_t identity_len;
    /* What arrived, to classify failures without OpenSSL's text. */
    bool got_bytes;   /* at least one byte arrived from the peer */
    uint8_t first[4]; /* the first bytes that arrived */
    size_t first_len;
    bool eof;         /* the shell's recv returned 0 */
    int sys_errno;    /* errno of the shell's last failed recv/send, or 0 */
    bool nomem;       /* a buffer could not grow */
    bool peek_failed; /* a record decrypted ahead failed: the next read says */
    bool identity_ok; /* server: the client offered our identity */
    bool done;        /* handshake complete and checked */
    int fatal;        /* sticky failure code, 0 while usable */
    const char *fatal_detail;
    uint8_t out_fixed[LSEC__TLS_OUT_FIXED]; /* out.fixed: ciphertext only */
};

/* Room for at least one byte at the end of `b`, growing or compacting it to
 * `cap` bytes; NULL (room 0) when out of memory. */
uint8_t *lsec__tlsbuf_room(lsec__tlsbuf *b, size_t cap, size_t *room);
/* Free the allocation once nothing waits in it (idle channels hold none;
 * the fixed storage is only let go). */
void lsec__tlsbuf_trim(lsec__tlsbuf *b);

/* One step of the handshake over what `in` holds: 0 done and checked,
 * LSEC__WANT_READ (more input needed), or the sticky error.  Whatever
 * OpenSSL has to say (its flight, an alert) is left in `out`. */
int lsec__tlse_handshake(lsec__tls *t);
/* SSL_read over `in`, of every whole record there while `buf` has room:
 * 0 with *n > 0, LSEC__WANT_READ, or an error. */
int lsec__tlse_read(lsec__tls *t, void *buf, size_t len, size_t *n);
/* Encrypt `len` bytes into `out`: 0 with *n == len, or an error. */
int lsec__tlse_write(lsec__tls *t, const void *buf, size_t len, size_t *n);
/* Queue our close_notify in `out`: 0, or LSEC_ETLS. */
int lsec__tlse_close(lsec__tls *t);
/* The shell's send failed (t->sys_errno set): the sticky error for it. */
int lsec__tlse_send_failed(lsec__tls *t);
/* The shell waits for the peer with `in` and `out` empty: let go of what
 * an unauthenticated peer need not cost us meanwhile. */
void lsec__tlse_waiting(lsec__tls *t);
/* Does the engine hold any input, decrypted or not (`in`, or inside
 * OpenSSL)?  If not, a read can only make progress after a recv. */
bool lsec__tlse_buffered(const lsec__tls *t);
/* Argument and state checks of a read or write: 0 or the error. */
int lsec__tlse_io_check(lsec__tls *t, const void *buf, size_t len, size_t *n);

#endif
