/*
 * loopsec benchmark: shared declarations.
 *
 * Four transports implement one interface (struct transport), and every
 * scenario is written once against that interface, so the anchors (raw TCP,
 * direct OpenSSL) and loopsec (auth, tls) run exactly the same client and
 * server loops.  The server side always runs in a forked child process and
 * the client side in the parent: two processes, as in real use, so that
 * each side has its own address space, allocator and scheduler entity.
 *
 * Only 127.0.0.1 is ever dialled or bound.
 */
#ifndef LOOPSEC_BENCH_H
#define LOOPSEC_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Results of the transport operations. */
#define B_OK 0
#define B_AGAIN 1 /* try_recv: no whole message yet */
#define B_EOF 2   /* the peer closed cleanly between messages */
#define B_ERR (-1)

/* Largest message the benchmark sends. */
#define B_MAX_MSG (1u << 20)
/* Largest connection text (a loopsec ticket, or "port psk-hex"). */
#define B_INFO_MAX 512
/* try_recv only serves small messages (the concurrent-clients test). */
#define B_TRY_MAX 1024

typedef struct bsrv bsrv;
typedef struct bconn bconn;

#define B_BATCH_MAX 64

typedef struct transport {
    const char *name;   /* "raw", "openssl", "auth", "tls" */
    const char *anchor; /* for loopsec transports, the anchor's name */
    /* Server side (in the child): listen on 127.0.0.1:0 and describe how to
     * connect in `info` (the ticket, or port and PSK). */
    int (*srv_open)(bsrv **out, char *info, size_t infolen);
    int (*srv_accept)(bsrv *s, int timeout_ms, bconn **out);
    void (*srv_close)(bsrv *s);
    /* Client side. */
    int (*connect)(const char *info, bconn **out);
    /* Whole messages, blocking (bounded by the peer's behaviour and by the
     * process's alarm). */
    int (*send)(bconn *c, const void *buf, size_t len);
    /* `n` (<= B_BATCH_MAX) messages of `len` bytes at `buf`, in one call
     * (one system call where the transport can); NULL: not offered. */
    int (*sendv)(bconn *c, const void *buf, size_t len, unsigned n);
    int (*recv)(bconn *c, void *buf, size_t cap, size_t *len);
    /* Never waits: B_OK with a message, B_AGAIN, B_EOF or B_ERR.  Messages
     * up to B_TRY_MAX bytes only. */
    int (*try_recv)(bconn *c, void *buf, size_t cap, size_t *len);
    /* Prepare for event-loop use (try_recv, epoll). */
    int (*set_nonblock)(bconn *c);
    int (*fd)(const bconn *c);
    void (*close)(bconn *c);
} transport;

extern const transport tr_raw;
extern const transport tr_openssl;
/* The anchors with a read-ahead reader (context for the 64-byte stream). */
extern const transport tr_raw_ra;
extern const transport tr_openssl_ra;
extern const transport tr_auth;
extern const transport tr_tls;
extern const transport tr_stunnel;
extern const transport tr_spiped;

/* Utilities (util.c). */
uint64_t b_now_ns(void);
/* Print a failure on stderr (prefixed with the process role) and return
 * B_ERR. */
int b_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Resident set size and open descriptors of this process. */
long b_rss_bytes(void);
/* Give the allocator's free pages back to the kernel, so that memory
 * freed by an earlier test (or inherited at fork) is not silently reused
 * and missed by the next RSS delta. */
void b_release_free_memory(void);
int b_fd_count(void);
/* Raise RLIMIT_NOFILE to at least `want` descriptors if the hard limit
 * allows (or, as root, up to `want`); returns the soft limit now in force. */
long b_raise_nofile(long want);
/* Sorting and statistics over nanosecond samples. */
void b_sort_u64(uint64_t *v, size_t n);
uint64_t b_percentile(const uint64_t *sorted, size_t n, double p);
/* Whole-buffer socket helpers for control pipes. */
int b_write_all(int fd, const void *buf, size_t len);
int b_read_all(int fd, void *buf, size_t len, int timeout_ms);
/* Set O_NONBLOCK; TCP_NODELAY. */
int b_nonblock(int fd);
void b_nodelay(int fd);
/* 127.0.0.1:port (the only address the benchmark binds or dials). */
struct sockaddr_in;
void b_loopback(struct sockaddr_in *sa, int port);
/* A TCP socket listening on 127.0.0.1:0; its port in *port. */
int b_tcp_listen(int backlog, int *port);
/* A TCP connection to 127.0.0.1:port (blocking), TCP_NODELAY set. */
int b_tcp_connect(int port);
/* Wait for `events` on fd, up to timeout_ms; 0 ready, B_ERR otherwise. */
int b_wait(int fd, short events, int timeout_ms);

/* The checks' peer lookup (peer_diag.c): the process at the other end of
 * the loopback connection local -> remote (this side's view) runs as our
 * euid.  One sock_diag request on a kept netlink socket (fstat first),
 * repeated while the peer's end is still a request socket; B_OK or B_ERR. */
struct sockaddr_in;
int b_peer_check(const struct sockaddr_in *local,
                 const struct sockaddr_in *remote);

/* A framed receive buffer for event loops (raw and openssl try_recv):
 * bytes are read in bulk into `buf` and whole messages parsed out of it. */
typedef struct b_rbuf {
    size_t off, len;
    uint8_t buf[4096];
} b_rbuf;
/* Take one whole message out of rb if it holds one: B_OK or B_AGAIN. */
int b_rbuf_take(b_rbuf *rb, void *out, size_t cap, size_t *len);
/* Make room at the end of rb (moves unread bytes to the front). */
void b_rbuf_compact(b_rbuf *rb);

/* 32-bit big-endian length prefix, as loopsec's framing. */
void b_put_len(uint8_t hdr[4], uint32_t len);
uint32_t b_get_len(const uint8_t hdr[4]);

#endif /* LOOPSEC_BENCH_H */
