/*
 * Declarations shared inside lib/.  Never installed.  Every non-static
 * function here is lsec__*; nothing here is exported from the shared object.
 */
#ifndef LOOPSEC_INTERNAL_H
#define LOOPSEC_INTERNAL_H

#include "loopsec.h"

#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>

struct sockaddr;
struct sockaddr_storage;
struct msghdr;
struct iovec;
struct pollfd;

#if defined(__GNUC__)
#define LSEC__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LSEC__PRINTF(a, b)
#endif

/* ------------------------------------------------------------------------ */
/* error.c: codes and the detail text; log.c: logging; init.c: initialisation */

/*
 * Record `code` for this thread with a detail formatted from `fmt` (which must
 * never receive a secret) and return `code`, so that callers can write
 * `return lsec__fail(LSEC_EINVAL, "port %d out of range", p);`.
 */
int lsec__fail(int code, const char *fmt, ...) LSEC__PRINTF(2, 3);
/* Same, appending ": strerror(errno_value)". */
int lsec__fail_errno(int code, int errno_value, const char *fmt, ...)
    LSEC__PRINTF(3, 4);
/* Forget the detail (every public entry point calls it first). */
void lsec__clear_detail(void);
/* Log to the installed callback, if any and if `level` is enabled. */
void lsec__log(int level, const char *fmt, ...) LSEC__PRINTF(2, 3);
bool lsec__log_enabled(int level);
/* Initialise libsodium (and OpenSSL lazily in tls.c) once.  0 or LSEC_EIO. */
int lsec__init(void);
/*
 * A path (or program name) as it may appear in a detail.  A caller who
 * passes a ticket, a secret or a PSK where a path belongs must not find it
 * echoed in lsec_last_detail(), so anything that looks like one is
 * withheld (a fixed text is returned instead).
 */
const char *lsec__shown(const char *path);

/* ------------------------------------------------------------------------ */
/* opts.c: defaults, size-aware merge, validation (fail closed)              */

/* Every flag bit lsec_opts.flags may carry; any other bit is LSEC_EINVAL. */
#define LSEC__OPT_FLAGS_KNOWN                                                  \
    (LSEC_ADDR_ALLOW_127_8 | LSEC_OPT_PORT_FALLBACK |                          \
     LSEC_OPT_HELPER_SURVIVES | LSEC_OPT_NO_ROUTE_LOCALNET)
/* The largest max_pending (the header documents it). */
#define LSEC__MAX_PENDING_LIMIT 65536
/*
 * Effective options: defaults merged with the caller's (size-aware; `in`
 * NULL: defaults), then validated.  0, or LSEC_EINVAL with a detail: a size
 * below the first release's struct (not initialised by lsec_opts_init),
 * non-zero bytes beyond this library's struct, an unknown mode, peer or
 * port policy or flag bit, or a value out of its documented range.  `out`
 * holds the merged options either way.
 */
LSEC_CHECK int lsec__opts_resolve(const lsec_opts *in, lsec_opts *out);
/* 0 for a timeout of -1 (forever), 0 (never wait) or > 0 ms; below -1:
 * LSEC_EINVAL with a detail.  Every public call taking a timeout uses it. */
LSEC_CHECK int lsec__timeout_check(int timeout_ms);
/* The start of a public call that takes options and a timeout, after its
 * own argument checks: the timeout checked, the library initialised, the
 * deadline taken (*deadline), the options resolved (*out).  0 or the code,
 * with a detail. */
LSEC_CHECK int lsec__call_begin(const lsec_opts *in, int timeout_ms,
                                lsec_opts *out, int64_t *deadline);

/* ------------------------------------------------------------------------ */
/* clock.c: the monotonic clock and deadlines                                */

/* Monotonic clock in milliseconds. */
int64_t lsec__now_ms(void);
/* Deadline from a timeout (-1: none, encoded as INT64_MAX). */
int64_t lsec__deadline(int timeout_ms);
/* Milliseconds left until `deadline` for poll(): -1 forever, >= 0 else. */
int lsec__remaining(int64_t deadline);
/* Longest wait between two checks of something no descriptor wakes us for
 * (a helper without a pidfd), and `left` (lsec__remaining) clamped to it. */
#define LSEC__SLICE_MS 10
int lsec__slice(int left);

/* ------------------------------------------------------------------------ */
/* fd.c: plain descriptors (pipes, files), portable POSIX                    */

/* Move a descriptor above stdin/stdout/stderr (CLOEXEC), so that a parent
 * that runs with 0-2 closed never hands a ticket pipe to a helper as stdin.
 * 0, or -1 with errno. */
int lsec__fd_lift(int *fd);
/* A CLOEXEC pipe with both ends above fd 2.  0, or LSEC_EIO / LSEC_ELIMIT /
 * LSEC_ENOMEM with a detail. */
int lsec__pipe_cloexec(int p[2]);
/* The rest of lsec__pipe_cloexec for a pipe the platform just made (`rc`
 * its result, 0 or -1 with errno): lifted above fd 2, or closed. */
int lsec__pipe_made(int rc, int p[2]);
/* Write all of `buf`, retrying EINTR.  0, or -1 with errno. */
int lsec__write_all(int fd, const char *buf, size_t len);
/* lsec__write_all to a pipe whose reader may be gone, without SIGPIPE (the
 * library never raises it); EPIPE instead. */
int lsec__write_nosigpipe(int fd, const char *buf, size_t len);
/* Around writes that may raise SIGPIPE (a pipe or socket whose reader is
 * gone): block it in this thread; restore, consuming the one the writes
 * raised (`raised`: one of them failed with EPIPE), never the caller's. */
typedef struct lsec__sigpipe_guard {
    sigset_t pipe_set, old;
    bool blocked, was_pending;
} lsec__sigpipe_guard;
void lsec__sigpipe_block(lsec__sigpipe_guard *g);
void lsec__sigpipe_restore(lsec__sigpipe_guard *g, bool raised);

/* ------------------------------------------------------------------------ */
/* io.c: the seam through which every socket call goes (fault injection)     */

struct lsec__io_ops {
    ssize_t (*recv)(int fd, void *buf, size_t len, int flags);
    ssize_t (*send)(int fd, const void *buf, size_t len, int flags);
    ssize_t (*sendmsg)(int fd, const struct msghdr *msg, int flags);
    ssize_t (*recvmsg)(int fd, struct msghdr *msg, int flags);
    int (*accept4)(int fd, struct sockaddr *sa, unsigned *salen, int flags);
    int (*connect)(int fd, const struct sockaddr *sa, unsigned salen);
    int (*poll)(struct pollfd *fds, unsigned long nfds, int timeout);
    int (*socket)(int domain, int type, int protocol);
    int (*getsockname)(int fd, struct sockaddr *sa, unsigned *salen);
    /* Files of the kernel's settings (/proc/sys), so a test can fake them. */
    int (*open)(const char *path, int flags);
};
/* The live table; tests may replace members and must restore them
 * (lsec__io_reset, testing.h). */
extern struct lsec__io_ops lsec__io;
/*
 * Wait until `fd` is ready for `events` (POLLIN/POLLOUT) or `deadline`
 * (lsec__deadline) passes.  EINTR is retried against the same deadline.
 * 0 ready (also on POLLERR/POLLHUP: the next call reports the error),
 * LSEC_ETIMEDOUT, or LSEC_EAGAIN when `nowait` (a timeout of 0) and not
 * ready, LSEC_EIO if poll fails or reports POLLNVAL (`fd` is not open:
 * never "ready").
 */
int lsec__wait_fd(int fd, short events, int64_t deadline, bool nowait);
/*
 * The one non-blocking write-all for handshake messages (engine): send
 * buf[*off, len) with MSG_NOSIGNAL, advancing *off.  0 when all is out,
 * LSEC__WANT_WRITE when the socket is full, or LSEC_ERESET for a lost
 * connection (errno kept for the caller's detail).  Sets no detail.
 */
int lsec__write_some(int fd, const uint8_t *buf, size_t len, size_t *off);
/*
 * The code for a failed system call that made a descriptor or memory:
 * EMFILE/ENFILE are the descriptor limit, LSEC_ELIMIT (a resource, worth
 * retrying once descriptors are free), ENOMEM/ENOBUFS are LSEC_ENOMEM, and
 * everything else is `other`.
 */
int lsec__sys_code(int errno_value, int other);

/* ------------------------------------------------------------------------ */
/* addr.c: strict parsing and loopback checks, no I/O                        */

typedef struct lsec__addr {
    int family;     /* AF_INET or AF_INET6 */
    uint8_t ip[16]; /* network order; 4 bytes used for AF_INET */
    uint16_t port;  /* host order */
} lsec__addr;

/*
 * Parse "127.0.0.1:PORT", "[::1]:PORT" or "localhost:PORT" strictly (see
 * DESIGN.md "Addresses").  `flags`: LSEC_ADDR_*.  0, LSEC_ENOTLOOPBACK or
 * LSEC_EINVAL with a detail.
 */
int lsec__addr_parse(const char *hostport, unsigned flags, lsec__addr *out);
/* Normal form "127.0.0.1:PORT" / "[::1]:PORT".  0 or LSEC_EMSGSIZE. */
int lsec__addr_format(const lsec__addr *a, char *buf, size_t len);
/* Host part only ("127.0.0.1", "::1"). */
int lsec__addr_format_host(const lsec__addr *a, char *buf, size_t len);
/* Is `a` an accepted loopback address under `flags`? */
bool lsec__addr_is_loopback(const lsec__addr *a, unsigned flags);
/* Conversions; from_sockaddr also checks loopback (LSEC_ENOTLOOPBACK). */
unsigned lsec__addr_to_sockaddr(const lsec__addr *a,
                                struct sockaddr_storage *ss);
int lsec__addr_from_sockaddr(const struct sockaddr *sa, unsigned salen,
                             unsigned flags, lsec__addr *out);
/* 18-byte endpoint encoding for the handshake transcript (PROTOCOL.md). */
#define LSEC__EP_BYTES 18
void lsec__addr_endpoint(const lsec__addr *a, uint8_t out[LSEC__EP_BYTES]);
/* Same endpoint?  Compared in the 18-byte encoding, where an IPv4 address
 * and its IPv4-mapped IPv6 form (a dual-stack socket's view of the same
 * connection) are equal. */
bool lsec__addr_same_endpoint(const lsec__addr *x, const lsec__addr *y);

/* ------------------------------------------------------------------------ */
/* The platform's socket tables and settings (sys_linux.c; see sys.h)        */

/* One TCP socket of the kernel's tables (port.c and peer.c read them). */
typedef struct lsec__tcp_sock {
    lsec__addr local;
    lsec__addr remote;
    int state;      /* TCP state, RFC 793 order: 1 ESTABLISHED, 10 LISTEN */
    int64_t uid;    /* the uid that created the socket */
    uint64_t inode; /* 0 when no process holds it (e.g. TIME_WAIT) */
} lsec__tcp_sock;
/*
 * Visit each TCP socket of `family` (on Linux /proc/net/tcp, tcp6) until
 * `fn` returns true.  0 when `fn` stopped the scan, LSEC_ENOTFOUND
 * when the table ran out, LSEC_ENOSYS when the table cannot be read.
 */
int lsec__proc_tcp_scan(int family,
                        bool (*fn)(const lsec__tcp_sock *s, void *arg),
                        void *arg);
/*
 * Is net.ipv4.conf.*.route_localnet set (for "all" or any interface)?  It
 * lets packets addressed to 127.0.0.0/8 arrive from other hosts.  1 set
 * (the first few names, e.g. "all, eth0", go to `names`), 0 not set,
 * LSEC_ENOSYS when the settings cannot be read.  Reads through
 * lsec__io.open.
 */
int lsec__route_localnet(char *names, size_t len);
/* The pid of a process holding socket `inode` (a scan of /proc/PID/fd), or
 * -1 when no process we may look at holds it. */
int32_t lsec__proc_socket_pid(uint64_t inode);
/* Is `state` that of a live connection (not LISTEN, TIME_WAIT, CLOSE or a
 * request socket)?  Only such a socket may name a peer. */
bool lsec__tcp_state_live(int state);

/* ------------------------------------------------------------------------ */
/* port.c: binding with a port policy; who holds a port                      */

/*
 * Create a listening socket on `a` following the port policy in `o`
 * (resolved options), CLOEXEC, V6ONLY for IPv6, never SO_REUSEPORT.  The
 * socket that found the port keeps it.  On success `*fd` listens and
 * `*bound` holds the kernel's own view (getsockname), re-checked as loopback.
 * LSEC_EADDRINUSE names the holder in the detail where visible.
 */
int lsec__port_listen(const lsec__addr *a, const lsec_opts *o, int *fd,
                      lsec__addr *bound);

/* ------------------------------------------------------------------------ */
/* peer.c: who is at the other end of a loopback TCP connection              */

/*
 * Look up the socket whose local endpoint is `remote` and whose remote
 * endpoint is `local` (i.e. the peer's own socket) and report its owner uid
 * and, if `want_pid`, the pid holding it (-1 if not visible).
 * 0, LSEC_ENOTFOUND, LSEC_ENOSYS.
 */
int lsec__peer_lookup(const lsec__addr *local, const lsec__addr *remote,
                      bool want_pid, int64_t *uid, int32_t *pid);

/* ------------------------------------------------------------------------ */
/* secret.c: secrets, key derivation, encodings, no I/O                      */

#define LSEC__KEY_BYTES 32
#define LSEC__ID_BYTES                                                         \
    LSEC_ID_BYTES /* instance id: 8 random bytes, 16 hex digits */

/* Fill with random bytes (libsodium). */
void lsec__random(void *buf, size_t len);
/* key = BLAKE2b-256(key=secret, msg=label) — PROTOCOL.md "Keys". */
void lsec__kdf(uint8_t key[LSEC__KEY_BYTES],
               const uint8_t secret[LSEC_SECRET_BYTES], const char *label);
/* base64url without padding.  Return 0 or LSEC_EMSGSIZE / LSEC_EINVAL. */
int lsec__b64_encode(char *out, size_t outlen, const uint8_t *in, size_t n);
int lsec__b64_decode(uint8_t *out, size_t outlen, const char *in, size_t n,
                     size_t *got);
/* Lowercase hex. */
int lsec__hex_encode(char *out, size_t outlen, const uint8_t *in, size_t n);
int lsec__hex_decode(uint8_t *out, size_t outlen, const char *in, size_t n);
/* Wipe. */
void lsec__wipe(void *p, size_t n);
/*
 * Wipe a copy of message plaintext on the per-message path (the send
 * buffer of a small frame, the read-ahead buffer), inline: the
 * construction of glibc's explicit_bzero, which sodium_memzero calls
 * (memset, then a barrier after which the compiler must assume the bytes
 * are read, so the stores cannot be dropped), without the three calls.
 * Keys and secrets go through lsec__wipe.
 */
static inline void lsec__wipe_plain(void *p, size_t n)
{
    /* n through the barrier too: the compiler, knowing no bound, calls
     * libc's memset rather than expanding a slow `rep stos`. */
    __asm__("" : "+r"(n));
    memset(p, 0, n);
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

/* Labels (PROTOCOL.md "Keys"): one purpose, one label. */
#define LSEC__LABEL_AUTH_CLIENT "loopsec/1 auth client->server"
#define LSEC__LABEL_AUTH_SERVER "loopsec/1 auth server->client"
#define LSEC__LABEL_TLS_PSK "loopsec/1 tls psk server"

/* ------------------------------------------------------------------------ */
/* ticket.c: the ticket text, no I/O                                         */

typedef struct lsec__ticket {
    lsec__addr addr;
    int mode; /* LSEC_MODE_* */
    uint8_t id[LSEC__ID_BYTES];
    uint8_t secret[LSEC_SECRET_BYTES];
} lsec__ticket;

/* Strict parse; wipes *out on failure.  0 or LSEC_EBADTICKET /
 * LSEC_ENOTLOOPBACK (the address part) with a detail without the secret. */
int lsec__ticket_parse(const char *text, size_t len, unsigned addr_flags,
                       lsec__ticket *out);
int lsec__ticket_format(const lsec__ticket *t, char *buf, size_t len);
int lsec__ticket_format_redacted(const lsec__ticket *t, char *buf, size_t len);
void lsec__ticket_wipe(lsec__ticket *t);
/* PSK identity for tls mode: "loopsec/1 " + 16 hex id (PROTOCOL.md). */
#define LSEC__PSK_IDENTITY_MAX 64
int lsec__ticket_psk_identity(const lsec__ticket *t, char *buf, size_t len);
/* The ticket and a newline, the form that travels on pipes and in files.
 * The caller wipes `buf`. */
int lsec__ticket_line(const lsec__ticket *t, char buf[LSEC_TICKET_MAX + 1],
                      size_t *len);

/* ------------------------------------------------------------------------ */
/* frame.c: message framing, no I/O                                          */

#define LSEC__FRAME_HDR 4 /* 32-bit big-endian length */

/* ------------------------------------------------------------------------ */
/* Progress of a sans-I/O step (engine)                                      */

/* The one vocabulary of "not failed, not finished" for every internal step
 * (handshake, TLS, record checks, listener and connector steps, writes):
 * distinct positive values, so that no code means two things; errors are
 * the negative LSEC_E* codes, and 0 is "finished" where a step has no
 * output to hand over. */
enum lsec__progress {
    LSEC__AGAIN = 1,      /* need more input */
    LSEC__WANT_READ = 2,  /* wait until the socket is readable */
    LSEC__WANT_WRITE = 3, /* wait until the socket is writable */
    LSEC__DONE = 4,       /* finished, with output to hand over */
};

/* The poll events a LSEC__WANT_* code waits for. */
static inline short lsec__want_events(int want)
{
    return want == LSEC__WANT_WRITE ? POLLOUT : POLLIN;
}

/* frame.c: the frame codec (encoder, streaming decoder) */
#include "frame.h"

/*
 * The first `n` bytes a TLS listener received, checked before any TLS state
 * exists.  LSEC__AGAIN: a valid start so far, wait
 * for more; 0: a complete record header of a TLS handshake record, whose
 * whole length (header included) goes to *total; LSEC_EMODE: the auth magic
 * "LSEC"; LSEC_EPROTO: the first byte that cannot start a TLS handshake
 * record (0x16, 0x03, 0x01..0x04, a length of 1..2^14).
 */
#define LSEC__TLS_RECORD_HDR 5
int lsec__tls_record_start(const uint8_t *b, size_t n, size_t *total);

/* ------------------------------------------------------------------------ */
/* handshake.c: auth-mode mutual authentication, bytes in / bytes out        */

/* The two roles of a connection, of its handshake and of a TLS context. */
#define LSEC__ROLE_CLIENT 1
#define LSEC__ROLE_SERVER 2
#define LSEC__HS_NONCE_BYTES 32
#define LSEC__HS_MSG_MAX 128 /* no handshake message is longer */
/* Message sizes on the wire (PROTOCOL.md "Messages"). */
#define LSEC__HS_HELLO_BYTES 40  /* ClientHello */
#define LSEC__HS_SHELLO_BYTES 72 /* ServerHello: a hello plus the proof */
#define LSEC__HS_FINISH_BYTES 32 /* ClientFinish: the client's proof */

typedef struct lsec__hs {
    int role;  /* LSEC__ROLE_CLIENT or LSEC__ROLE_SERVER */
    int state; /* handshake.c's private state; 0: not initialised */
    int mode;  /* LSEC_MODE_AUTH: the mode byte both hellos must carry */
    int err;   /* the sticky error once state is "failed" */
    uint8_t k_client[LSEC__KEY_BYTES]; /* proves the client's messages */
    uint8_t k_server[LSEC__KEY_BYTES]; /* proves the server's messages */
    uint8_t nonce_local[LSEC__HS_NONCE_BYTES];
    uint8_t ep_client[LSEC__EP_BYTES]; /* this side's view */
    uint8_t ep_server[LSEC__EP_BYTES];
    /* ClientHello || ServerHello as sent and received: the transcript. */
    uint8_t transcript[LSEC__HS_HELLO_BYTES + LSEC__HS_SHELLO_BYTES];
    size_t transcript_len;
    uint8_t finish[LSEC__HS_FINISH_BYTES]; /* partial incoming ClientFinish */
    size_t finish_len;
} lsec__hs;

/*
 * Start a handshake.  `local`/`remote` are this side's own view of the TCP
 * endpoints (getsockname/getpeername).  `nonce` NULL draws a random nonce
 * (tests pass fixed ones for the PROTOCOL.md vectors).
 */
int lsec__hs_init(lsec__hs *h, int role, int mode,
                  const uint8_t secret[LSEC_SECRET_BYTES],
                  const lsec__addr *local, const lsec__addr *remote,
                  const uint8_t *nonce);
/* The two auth keys of a secret (PROTOCOL.md "Keys"). */
void lsec__hs_keys(const uint8_t secret[LSEC_SECRET_BYTES],
                   uint8_t k_client[LSEC__KEY_BYTES],
                   uint8_t k_server[LSEC__KEY_BYTES]);
/* lsec__hs_init with keys derived once beforehand (a listener derives them
 * once for all its connections). */
int lsec__hs_init_keys(lsec__hs *h, int role, int mode,
                       const uint8_t k_client[LSEC__KEY_BYTES],
                       const uint8_t k_server[LSEC__KEY_BYTES],
                       const lsec__addr *local, const lsec__addr *remote,
                       const uint8_t *nonce);
/*
 * Feed `inlen` received bytes (may be 0).  Consumes what it can, reports
 * how much in *consumed, and writes at most `outcap` (>= LSEC__HS_MSG_MAX)
 * bytes to send into `out` (length in *outlen).  Returns LSEC__AGAIN (need more
 * input), LSEC__DONE (authenticated: send `out` and go), or a negative
 * code: LSEC_EAUTH for every failed proof, LSEC_EPROTO for malformed bytes
 * (rejected at the first wrong byte), LSEC_EMODE for a hello of the
 * other mode.  Never consumes bytes beyond the handshake.
 */
int lsec__hs_step(lsec__hs *h, const uint8_t *in, size_t inlen,
                  size_t *consumed, uint8_t *out, size_t outcap,
                  size_t *outlen);
void lsec__hs_wipe(lsec__hs *h);

/* ------------------------------------------------------------------------ */
/* tls.c: the only file that includes OpenSSL headers                        */

typedef struct lsec__tls_ctx lsec__tls_ctx;
typedef struct lsec__tls lsec__tls;

/* Role-specific context, reused for every connection of a listener (server)
 * or of the process (client). */
int lsec__tls_ctx_new(int role, lsec__tls_ctx **out);
void lsec__tls_ctx_free(lsec__tls_ctx *ctx);
/* The process-wide client context, created once, thread-safely. */
int lsec__tls_client_ctx(lsec__tls_ctx **out);

/* A connection over `fd` (blocking or not; not owned, never closed here)
 * authenticated by the PSK derived from `secret` and the identity
 * `identity`.  Only the derived PSK is kept, and it is wiped on free. */
int lsec__tls_new(lsec__tls_ctx *ctx, int fd,
                  const uint8_t secret[LSEC_SECRET_BYTES], const char *identity,
                  lsec__tls **out);
/* Bytes already read from fd (at most 8, before the first handshake call):
 * the TLS connection reads them first.  0 or LSEC_EINVAL. */
int lsec__tls_prefix(lsec__tls *t, const uint8_t *b, size_t n);
/* 0 done, LSEC__WANT_READ/WRITE, or LSEC_EAUTH / LSEC_EMODE (an auth
 * hello or mode notice arrived) / LSEC_ETLS / LSEC_ECLOSED (also: the
 * listener closed without a byte, a refusal) / LSEC_ERESET. */
int lsec__tls_handshake(lsec__tls *t);
/* 0 with *n > 0, WANT_*, LSEC_ECLOSED (close_notify), LSEC_ERESET, ETLS;
 * len 0 is LSEC_EINVAL.  Writes may be partial (at least one record).  After
 * WANT_* from a write, retry with the same leading bytes and at least the
 * same len (the buffer may move). */
int lsec__tls_read(lsec__tls *t, void *buf, size_t len, size_t *n);
int lsec__tls_write(lsec__tls *t, const void *buf, size_t len, size_t *n);
size_t lsec__tls_pending(const lsec__tls *t);
/* Answer an auth-mode hello on `fd` with the fixed protocol_version alert
 * (PROTOCOL.md "Mode mismatch"); best effort, never blocking. */
void lsec__tls_send_mode_alert(int fd);
/* "TLSv1.3 TLS_AES_128_GCM_SHA256" after the handshake (logs, tests). */
int lsec__tls_describe(const lsec__tls *t, char *buf, size_t len);
/* Send close_notify, best effort, non-blocking. */
void lsec__tls_shutdown(lsec__tls *t);
/* Send close_notify before `deadline` (half-close: reading goes on).  0,
 * LSEC_EAGAIN (nowait) / LSEC_ETIMEDOUT (no room yet: call again),
 * LSEC_ERESET, LSEC_ETLS, LSEC_EINVAL (handshake not done or failed). */
int lsec__tls_close_notify(lsec__tls *t, int64_t deadline, bool nowait);
/* The same without waiting, for a caller that polls: 0 sent, LSEC__WANT_WRITE
 * (no room yet: poll for POLLOUT and call again; nothing is queued twice),
 * LSEC_ERESET, LSEC_ETLS, LSEC_EINVAL. */
int lsec__tls_close_notify_step(lsec__tls *t);
void lsec__tls_free(lsec__tls *t);
/* The derived PSK (for the CLI's `psk` command and tests); defined in
 * secret.c, since it is only lsec__kdf under LSEC__LABEL_TLS_PSK. */
void lsec__tls_psk(uint8_t psk[LSEC__KEY_BYTES],
                   const uint8_t secret[LSEC_SECRET_BYTES]);

/* ------------------------------------------------------------------------ */
/* channel.c                                                                 */

/* Wrap a connected, authenticated socket (and its TLS state, if any) in a
 * channel.  Takes ownership of fd and tls, also on failure.  `early` holds
 * bytes that arrived behind the handshake (at most 4096). */
int lsec__channel_new(int fd, lsec__tls *tls, const lsec_opts *o,
                      const lsec__addr *local, const lsec__addr *remote,
                      int64_t peer_uid, const uint8_t *early, size_t early_len,
                      lsec_channel **out);

/*
 * What lsec_send_from_fd / lsec_recv_to_fd (fdmove.c) keep inside a channel:
 * one pipe per direction, made on first use.  Its own file owns the logic;
 * channel.c only frees it (lsec__fdmove_free, fd.c), counts rx_piped in
 * lsec_channel_pending and refuses lsec_recv while rx_active.
 */
typedef struct lsec__fdmove {
    int tx[2];             /* fd -> tx -> socket; empty between calls */
    int rx[2];             /* socket -> rx -> fd */
    size_t rx_piped;       /* payload bytes in rx, not yet written to the fd */
    uint32_t rx_left;      /* payload bytes not yet taken from the channel */
    size_t tx_cap, rx_cap; /* what each pipe holds */
    bool rx_active;        /* a message is being moved to a descriptor */
} lsec__fdmove;
/* Close the pipes and free (NULL: no-op).  Pipes hold payload only in
 * the kernel: there is nothing of ours to wipe. */
void lsec__fdmove_free(lsec__fdmove *m);

/* The channel calls fdmove.c builds on (channel.c).  Each checks or
 * changes the state exactly as lsec_send / lsec_recv do. */
/* The checks lsec_send (`sending`) or lsec_recv make, then the channel's
 * fdmove state (made on first use) and socket.  LSEC_EMODE for a TLS
 * channel. */
int lsec__channel_fd_begin(lsec_channel *c, bool sending, lsec__fdmove **m,
                           int *sock);
/* A call's result, made LSEC_ECLOSED for good if the channel was aborted. */
int lsec__channel_fd_end(lsec_channel *c, int rc);
bool lsec__channel_aborted(const lsec_channel *c);
/* Break the channel for good with `code` (a log line, the detail `why`). */
int lsec__channel_break(lsec_channel *c, int code, const char *why);
/* Hand `q` (malloc'd, `len` bytes of the framed stream) to the empty send
 * queue; the channel wipes and frees it once written.  0 or LSEC_EINVAL. */
int lsec__channel_queue(lsec_channel *c, uint8_t *q, size_t len);
/* Make the next message's header known, as lsec_recv does (its errors,
 * its sticky failures); *len its payload length. */
int lsec__channel_rx_next(lsec_channel *c, int64_t deadline, bool nowait,
                          uint32_t *len);
/* Payload bytes of that message the channel holds in memory (a stash, the
 * read-ahead buffer): a pointer to the next run of them and its length. */
size_t lsec__channel_rx_held(const lsec_channel *c, const uint8_t **p);
/* `n` payload bytes are taken: from what rx_held showed, or, once it shows
 * nothing, read from the socket by the caller.  Returns what is left of the
 * message; at 0 the channel moves on to the next message. */
uint32_t lsec__channel_rx_take(lsec_channel *c, size_t n);

/* ------------------------------------------------------------------------ */
/* connect.c (engine)                                                        */

/* getsockname/getpeername of a connected socket, re-checked as loopback. */
int lsec__socket_endpoints(int fd, unsigned flags, lsec__addr *local,
                           lsec__addr *remote);
/* Connect with a parsed ticket (spawn.c, inherit.c, connfile.c use it). */
int lsec__connect_ticket(const lsec__ticket *t, const lsec_opts *o,
                         int timeout_ms, lsec_channel **out);

/* ------------------------------------------------------------------------ */
/* listener.c                                                                */

/* The listener's parsed ticket (spawn.c and inherit.c need it). */
const lsec__ticket *lsec__listener_ticket(const lsec_listener *l);

/* ------------------------------------------------------------------------ */
/* helper.c: the handle on a started helper (spawn.c starts it)              */

struct lsec_helper {
    pid_t pid;
    int pidfd;     /* -1 when the platform has none (lsec__sys_pidfd_open) */
    bool reaped;   /* once true, pid may belong to someone else: never use */
    bool survives; /* LSEC_OPT_HELPER_SURVIVES */
    int status;    /* wait status, valid once reaped */
    bool lost;     /* reaped by someone else: status unknown */
};
/* Has the helper exited?  Reaps it if so.  Never blocks. */
bool lsec__helper_exited(lsec_helper *h);
/* Failure path: kill and reap the helper (unless gone), free the handle.
 * NULL: nothing. */
void lsec__helper_abort(lsec_helper *h);
/* LSEC_ECHILD with a detail for a helper that is gone, with its status and
 * `what` ("before connecting"). */
int lsec__helper_fail_exited(const lsec_helper *h, const char *what);

/* ------------------------------------------------------------------------ */
/* inherit.c: the helper's side of the spawn patterns                        */

/*
 * Read "TICKET\n" (or TICKET then EOF) from `fd` within `deadline`, at most
 * LSEC_TICKET_MAX - 1 ticket bytes.  With `gone`, poll also waits on
 * `wake_fd` (or wakes every LSEC__SLICE_MS when it is -1), and `gone(arg)`
 * returning an error code ends the wait with it.  0 with buf NUL-terminated
 * and the newline stripped; 1 at EOF before any byte (the caller decides);
 * on failure the buffer is wiped.
 */
int lsec__ticket_read_fd(int fd, int wake_fd, int (*gone)(void *arg), void *arg,
                         int64_t deadline, char buf[LSEC_TICKET_MAX + 1],
                         size_t *len);

/* ------------------------------------------------------------------------ */
/* connfile.c: connection files (listener.c calls in; nothing calls back)    */

/* Where a connection file was written, so that only that file is removed:
 * its directory, held open, and its inode. */
typedef struct lsec__connfile_ref {
    int dfd;           /* -1: none */
    uint64_t dev, ino; /* ino 0: never remove */
    int64_t ctime_s, ctime_ns;
    char base[256];
} lsec__connfile_ref;
/*
 * Write `t` as a connection file: `path`, or NULL for the default under
 * $XDG_RUNTIME_DIR/loopsec/ (created 0700, must be ours; XDG_RUNTIME_DIR
 * itself must be our own 0700 directory, not a symlink).  Atomic (temp file
 * with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, then rename), never through a
 * symlink.  The path used goes to `written`.  0, LSEC_EPERM, LSEC_EIO,
 * LSEC_EINVAL, LSEC_EMSGSIZE.  `ref` (NULL: nothing kept) records where,
 * so that lsec__connfile_remove removes only that file.
 */
int lsec__connfile_write_ref(const lsec__ticket *t, const char *path,
                             char *written, size_t writtenlen,
                             lsec__connfile_ref *ref);
/* Remove the file `ref` names if it is still the same inode (unlinkat
 * through the directory descriptor); closes the descriptor.  NULL or an
 * empty ref: nothing. */
void lsec__connfile_remove(lsec__connfile_ref *ref);
/* Read and check a connection file (owner, mode, regular, one link, size)
 * and parse the ticket in it.  0, LSEC_EPERM, LSEC_ENOTFOUND, LSEC_EINVAL
 * (a directory), LSEC_EBADTICKET, ... */
int lsec__connfile_read(const char *path, unsigned addr_flags,
                        lsec__ticket *out);

#endif /* LOOPSEC_INTERNAL_H */
