/*
 * loopsec — safe local IPC over loopback.
 *
 * A process listens on 127.0.0.1 or ::1; a second process on the same machine
 * connects; both prove that they hold the same 32-byte secret before a single
 * application byte is accepted ("auth" mode), optionally inside TLS 1.3
 * ("tls" mode).  Every non-loopback address is refused, ports are allocated
 * without races, and helpers let a parent and a helper process meet.
 *
 * Conventions (they hold for every function below unless its comment says
 * otherwise):
 *   - Fallible functions return 0 on success or a negative LSEC_E* code.  The
 *     codes are stable and never reused.  lsec_last_detail() then says why, for
 *     the calling thread; it never contains a secret.
 *   - Results come back through out-parameters, which are set to NULL/0 on
 *     failure.  Inputs are copied; the caller keeps ownership of its buffers.
 *   - Timeouts are milliseconds: -1 waits forever, 0 never waits, > 0 waits
 *     that long; below -1 is LSEC_EINVAL, in every call that takes one.
 *   - Options fail closed: every call that takes an lsec_opts refuses, with
 *     LSEC_EINVAL and a detail, a struct not filled by lsec_opts_init, an
 *     unknown mode, policy or flag bit, and a value out of its range.
 *   - Every object has one *_close or *_free that accepts NULL.
 *   - No object is thread-safe: use one object from one thread at a time.
 *     Distinct objects may be used from distinct threads.  The library
 *     initialises itself once, thread-safely, on first use.  The only
 *     calls that may be made on an object from another thread, or from a
 *     signal handler, while its owner uses it are lsec_channel_abort and
 *     lsec_listener_abort: they wake a call blocked on the object, which
 *     then returns LSEC_ECLOSED, as does every later call but *_close;
 *     the owner (never the aborting thread) then closes the object.
 *     Closing an object while another thread is inside a call on it is
 *     undefined (use after free): abort, let the call return, then close.
 *   - The library never touches the process's signal state and never raises
 *     SIGPIPE.  Every descriptor it creates is close-on-exec, except the one
 *     that lsec_spawn deliberately hands to a helper.  Besides the objects'
 *     own descriptors it may keep one more, for peer lookups, opened on
 *     first use; it never takes an address or name the application might
 *     claim for itself (such as one derived from the process id).  Closing
 *     it behind the library's back is harmless: its identity is checked
 *     before each use, so another file that takes its number is never
 *     written to or closed (unless the close races with a lookup in another
 *     thread).  A child created by fork() opens its own.
 *
 * This header includes only <stddef.h> and <stdint.h>.
 */
#ifndef LOOPSEC_H
#define LOOPSEC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(LOOPSEC_BUILDING) && defined(__GNUC__)
#define LSEC_API __attribute__((visibility("default")))
#else
#define LSEC_API
#endif

#if defined(__GNUC__)
#define LSEC_CHECK __attribute__((warn_unused_result))
#else
#define LSEC_CHECK
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                   */

#define LSEC_VERSION_MAJOR 0
#define LSEC_VERSION_MINOR 1
#define LSEC_VERSION_PATCH 0
#define LSEC_VERSION_STRING "0.1.0"
/* MAJOR * 10000 + MINOR * 100 + PATCH */
#define LSEC_VERSION_NUMBER                                                    \
    (LSEC_VERSION_MAJOR * 10000 + LSEC_VERSION_MINOR * 100 + LSEC_VERSION_PATCH)

/** The version of the loaded library as "MAJOR.MINOR.PATCH". */
LSEC_API const char *lsec_version(void);
/** The version of the loaded library as LSEC_VERSION_NUMBER computes it. */
LSEC_API int lsec_version_number(void);

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */

/*
 * Error codes.  Stable: a code keeps its number and meaning forever; new codes
 * are added at the end.  LSEC_ERRNO_MAP is the one table from which
 * lsec_strerror and the bindings are generated.
 */
#define LSEC_ERRNO_MAP(XX)                                                     \
    XX(EINVAL, -1, "invalid argument")                                         \
    XX(ENOTLOOPBACK, -2, "address is not an accepted loopback address")        \
    XX(EADDRINUSE, -3, "address already in use")                               \
    XX(EAUTH, -4, "authentication failed")                                     \
    XX(ETIMEDOUT, -5, "timed out")                                             \
    XX(EAGAIN, -6, "operation would block")                                    \
    XX(ECLOSED, -7, "connection closed by peer")                               \
    XX(EPROTO, -8, "protocol error")                                           \
    XX(EMSGSIZE, -9, "message too large")                                      \
    XX(ENOMEM, -10, "out of memory")                                           \
    XX(EIO, -11, "system error")                                               \
    XX(EMODE, -12, "mode mismatch")                                            \
    XX(ETLS, -13, "TLS failure")                                               \
    XX(EPEER, -14, "peer refused by policy")                                   \
    XX(ENOTFOUND, -15, "not found")                                            \
    XX(EPERM, -16, "refused: unsafe ownership or permissions")                 \
    XX(ECHILD, -17, "helper process exited")                                   \
    XX(ERESET, -18, "connection lost")                                         \
    XX(ELIMIT, -19, "limit reached")                                           \
    XX(ENOSYS, -20, "not supported on this system")                            \
    XX(EBADTICKET, -21, "malformed ticket")

enum {
#define LSEC_XX_(name, code, text) LSEC_##name = (code),
    LSEC_ERRNO_MAP(LSEC_XX_)
#undef LSEC_XX_
        LSEC_OK = 0
};

/**
 * A constant, static description of an error code.  Unknown codes give
 * "unknown error".  Never NULL.  Thread-safe.
 */
LSEC_API const char *lsec_strerror(int err);

/**
 * The symbolic name of an error code ("LSEC_EAUTH"), or "LSEC_UNKNOWN".
 * Thread-safe.
 */
LSEC_API const char *lsec_errname(int err);

/**
 * Why the last failing call on this thread failed: which address, which port,
 * who holds it, which file check.  Never a secret, key, ticket, or peer bytes.
 * The text stays valid until the next library call on this thread.  "" when
 * nothing was recorded.  Thread-safe (thread-local).
 */
LSEC_API const char *lsec_last_detail(void);

/* ------------------------------------------------------------------------ */
/* Logging                                                                   */

#define LSEC_LOG_ERROR 1
#define LSEC_LOG_WARN 2
#define LSEC_LOG_INFO 3
#define LSEC_LOG_DEBUG 4

/**
 * A log callback.  Called from whichever thread the library is running in.
 * `msg` never contains a secret and is valid only during the call.
 */
typedef void (*lsec_log_fn)(void *arg, int level, const char *msg);

/**
 * Install a process-wide log callback (NULL: silent, the default).  Messages
 * above `max_level` are not formatted.  Reports refused peers, failed
 * handshakes, timeouts and mode mismatches, with the peer's port and uid.
 *
 * Thread-safe, also while other threads use the library and log: the
 * callback, its `arg` and `max_level` are published together, so every
 * call gets the `arg` and level that were installed with its `fn`.  Calls
 * that start after lsec_set_log returns use the new callback; a call that
 * another thread had already started may still be running the old one, so
 * keep the old `arg` (and the code of the old `fn`) valid until such calls
 * are over -- in practice, for as long as the process runs, or until the
 * threads that use the library have stopped.  Each distinct (fn, arg,
 * max_level) costs one small record, kept (and reused when installed
 * again) until the process exits; out of memory, logging is switched off.
 */
LSEC_API void lsec_set_log(lsec_log_fn fn, void *arg, int max_level);

/* ------------------------------------------------------------------------ */
/* Sizes (each macro has a function twin for bindings)                       */

#define LSEC_SECRET_BYTES 32
/** Largest ticket text, including the terminating NUL. */
#define LSEC_TICKET_MAX 256
/** Largest normalised "host:port" text, including the NUL. */
#define LSEC_ADDR_MAX 64
/** Default largest message: 16 MiB. */
#define LSEC_MAX_MESSAGE_DEFAULT (16u * 1024u * 1024u)
/** Largest path lsec_listener_write_file reports, including the NUL. */
#define LSEC_PATH_MAX 4096

/** Bytes of a listener's instance id (16 hex digits in the ticket). */
#define LSEC_ID_BYTES 8

LSEC_API size_t lsec_secret_bytes(void);
LSEC_API size_t lsec_id_bytes(void);
LSEC_API size_t lsec_ticket_max(void);
LSEC_API size_t lsec_addr_max(void);

/* ------------------------------------------------------------------------ */
/* Addresses                                                                 */

/* Address flags (lsec_addr_check, lsec_opts.flags). */
/** Accept all of 127.0.0.0/8, not only 127.0.0.1 (explicit opt-in), except
 *  127.0.0.0 and 127.255.255.255, which are never accepted. */
#define LSEC_ADDR_ALLOW_127_8 0x0001u

/**
 * Check that `hostport` may be used: canonical "127.0.0.1:PORT",
 * "[::1]:PORT" or "localhost:PORT" (mapped by the library to 127.0.0.1,
 * never resolved), PORT in 0..65535 written in plain decimal.  Every other
 * spelling, address or name is refused (a URL such as "tcp://..." is
 * LSEC_EINVAL).  On success the normal form ("127.0.0.1:PORT" or
 * "[::1]:PORT") is written to `norm` if it is not NULL.  The detail quotes
 * refused text in full only when it parsed as an IP address or is at most
 * 11 characters long; otherwise only its first 4 characters and its length
 * (it may be a secret pasted in the wrong place).
 *
 * Returns 0, LSEC_ENOTLOOPBACK (the host is not an accepted loopback
 * address), LSEC_EINVAL (malformed text, port or arguments), or
 * LSEC_EMSGSIZE (normlen too small).
 */
LSEC_API LSEC_CHECK int lsec_addr_check(const char *hostport, unsigned flags,
                                        char *norm, size_t normlen);

/* ------------------------------------------------------------------------ */
/* Options                                                                   */

#define LSEC_MODE_AUTH 1
#define LSEC_MODE_TLS 2

/* Peer policy.  The uid compared is the one the kernel records for the
 * peer's socket, which is the uid that created the socket, not
 * the uid of the process that holds it now: a socket passed on to a
 * process of another user keeps its creator's uid (docs/SECURITY.md). */
#define LSEC_PEER_SAME_USER 0
#define LSEC_PEER_ANY_USER 1

/** Port 0 in the bind address: the kernel picks the port (default). */
#define LSEC_PORT_KERNEL 0
/** Port 0 in the bind address: random ports in [port_min, port_max]. */
#define LSEC_PORT_RANGE 1

/* lsec_opts.flags (the LSEC_ADDR_* flags are accepted here too). */
/** A non-zero port in the bind address is a preference: when it is taken,
 *  fall back to the port policy instead of failing with EADDRINUSE. */
#define LSEC_OPT_PORT_FALLBACK 0x0100u
/** lsec_spawn: let the helper outlive the parent (no SIGKILL at its death). */
#define LSEC_OPT_HELPER_SURVIVES 0x0200u
/** lsec_listen on an IPv4 address: refuse (LSEC_EPERM, the detail names the
 *  interfaces) when net.ipv4.conf.{all,<interface>}.route_localnet is set --
 *  it lets packets addressed to 127.0.0.0/8 arrive from other hosts -- or
 *  cannot be read.  Without the flag a set route_localnet is logged as a
 *  WARN and the listener is made all the same.  IPv6 (::1) is not
 *  affected. */
#define LSEC_OPT_NO_ROUTE_LOCALNET 0x0400u

/**
 * Options: a plain struct filled with defaults by lsec_opts_init, then edited.
 *
 * Compatibility scheme: the first member is the struct's size, which
 * lsec_opts_init (a macro) passes from the caller's own header.  The library
 * reads only members that lie within that size and uses defaults for the
 * rest, so a program built against an older, smaller lsec_opts keeps working
 * with a newer library.  New members are only ever appended.  Validation
 * (LSEC_EINVAL, in lsec_listen, lsec_connect*, lsec_spawn*): a size smaller
 * than this first release's struct (a struct never given to lsec_opts_init,
 * such as `lsec_opts o = {0}`); a larger struct (a newer header) whose bytes
 * beyond this library's struct are not all zero, as Linux's extensible
 * structs do; a mode, peer_policy or port_policy other than the constants
 * below; a flag bit other than the LSEC_ADDR_* and LSEC_OPT_* ones; and each
 * member outside the range its comment gives.
 */
typedef struct lsec_opts {
    size_t size;              /* set by lsec_opts_init; do not edit */
    int mode;                 /* LSEC_MODE_AUTH (default) or LSEC_MODE_TLS */
    int handshake_timeout_ms; /* per connection, absolute, > 0; 5000 */
    size_t max_message;       /* <= 2^32-1; larger incoming: LSEC_EPROTO */
    int peer_policy;          /* LSEC_PEER_SAME_USER (default) */
    int port_policy;   /* LSEC_PORT_KERNEL (default) or LSEC_PORT_RANGE */
    uint16_t port_min; /* range policy, 1 <= min <= max; 49152 */
    uint16_t port_max; /* range policy; default 65535 */
    int backlog;       /* listen(2) backlog, >= 1; default 128 */
    int max_pending;   /* concurrent unauthenticated connections,
                          1..65536; default 64 */
    int max_accepts;   /* stop accepting after N peers, >= 0; 0: no
                          limit */
    uint32_t flags;    /* LSEC_ADDR_*, LSEC_OPT_* */
} lsec_opts;

/** Fill `o` with defaults; `size` is sizeof(lsec_opts) as the caller sees it.
 */
LSEC_API void lsec_opts_init_sized(lsec_opts *o, size_t size);
#define lsec_opts_init(o) lsec_opts_init_sized((o), sizeof(lsec_opts))
/** sizeof(lsec_opts) as this library was built (for bindings). */
LSEC_API size_t lsec_opts_size(void);

/* ------------------------------------------------------------------------ */
/* Tickets                                                                   */

/*
 * A ticket is the one string a client needs, e.g.
 *   loopsec://127.0.0.1:62893/?mode=auth&id=<16 hex>&secret=<43 base64url>
 * docs/PROTOCOL.md fixes the grammar.  It is a credential: print it only where
 * the user asked for it.
 */

/**
 * Write the redacted form of `ticket` (the secret replaced by "REDACTED") to
 * `buf`.  Fails with LSEC_EBADTICKET on malformed input, writing nothing.
 */
LSEC_API LSEC_CHECK int lsec_ticket_redact(const char *ticket, char *buf,
                                           size_t len);

/**
 * The TLS 1.3 external PSK (64 lowercase hex digits, NUL-terminated, so
 * hexlen >= 65) and PSK identity derived from a tls-mode ticket, for
 * `openssl s_client -psk HEX -psk_identity ID`.  The caller must wipe `hex`.
 */
LSEC_API LSEC_CHECK int lsec_ticket_psk(const char *ticket, char *hex,
                                        size_t hexlen, char *identity,
                                        size_t idlen);

/* ------------------------------------------------------------------------ */
/* Listening side                                                            */

typedef struct lsec_listener lsec_listener;
typedef struct lsec_channel lsec_channel;

/**
 * Bind and listen on `bind` (see lsec_addr_check; port 0 follows the port
 * policy) with a fresh 32-byte secret.  `o` may be NULL for defaults.
 *
 * Returns 0, LSEC_EINVAL (also invalid options), LSEC_ENOTLOOPBACK (also
 * when the kernel reports a bound address other than the one asked for),
 * LSEC_EADDRINUSE (the detail names the holder where the system shows it),
 * LSEC_EPERM (route_localnet is set under LSEC_OPT_NO_ROUTE_LOCALNET),
 * LSEC_ELIMIT (out of descriptors),
 * LSEC_ENOMEM, LSEC_EIO, LSEC_ETLS.
 */
LSEC_API LSEC_CHECK int lsec_listen(const char *bind, const lsec_opts *o,
                                    lsec_listener **out);

/**
 * As lsec_listen, with a secret and instance id the caller keeps (e.g. in a
 * 0600 key file), so that the ticket stays the same across restarts (with a
 * fixed port in `bind`).  `secret_len` must be LSEC_SECRET_BYTES and
 * `id_len` LSEC_ID_BYTES; an all-zero secret is refused.  Both are copied;
 * the listener's copy is wiped when it closes, the caller wipes its own.
 * The secret must come from a cryptographic random source.
 *
 * Returns lsec_listen's codes; LSEC_EINVAL for NULL, a wrong length or an
 * all-zero secret.
 */
LSEC_API LSEC_CHECK int lsec_listen_keyed(const char *bind, const lsec_opts *o,
                                          const uint8_t *secret,
                                          size_t secret_len, const uint8_t *id,
                                          size_t id_len, lsec_listener **out);

/** The bound port, or LSEC_EINVAL for NULL. */
LSEC_API int lsec_listener_port(const lsec_listener *l);

/**
 * Write the ticket (a credential) to `buf`.  LSEC_EMSGSIZE if `len` is too
 * small (LSEC_TICKET_MAX always suffices).
 */
LSEC_API LSEC_CHECK int lsec_listener_ticket(const lsec_listener *l, char *buf,
                                             size_t len);

/**
 * Write the ticket to a connection file, atomically, mode 0600, never through
 * a symlink.  `path` NULL: $XDG_RUNTIME_DIR/loopsec/<id>.ticket, where
 * XDG_RUNTIME_DIR must be the user's own directory, mode 0700, not a
 * symlink (else LSEC_EPERM, the detail says what is wrong and what to do),
 * and loopsec/ in it is created 0700 and must be the user's own and 0700;
 * with XDG_RUNTIME_DIR unset there is no fallback: LSEC_EINVAL, pass a path.
 * A given path's directory may not be writable by others unless it is
 * sticky (like /tmp); another user's file at the path in a sticky directory
 * is LSEC_EPERM.  The file is written to a fresh temporary name beside the
 * target and renamed over it, so a symlink planted at the target is
 * replaced, never followed.  When the listener closes (or writes another
 * file) it removes the file -- only if it is still the file it created
 * (same inode, looked up through the directory it was written in, which
 * the listener keeps open: one descriptor), never one planted under the
 * name.  The path used is written to `written` when it is not NULL.
 *
 * Returns 0, LSEC_EINVAL, LSEC_EPERM (unsafe directory, another user's
 * file), LSEC_ENOTFOUND (no such directory), LSEC_EIO, LSEC_EMSGSIZE
 * (writtenlen too small).
 */
LSEC_API LSEC_CHECK int lsec_listener_write_file(lsec_listener *l,
                                                 const char *path,
                                                 char *written,
                                                 size_t writtenlen);

/**
 * Wait up to `timeout_ms` for one authenticated peer.  All pending handshakes
 * progress concurrently; a silent or slow client never delays another and is
 * dropped at its own deadline.  Failed attempts are logged and do not end the
 * call; their WARN lines are rate limited (at most 10 a second per
 * listener, then one "N similar suppressed" line, also at close).  The new
 * channel may already hold the peer's first messages (see lsec_channel_pending)
 * before its socket is readable.
 *
 * Returns 0, LSEC_ETIMEDOUT, LSEC_EAGAIN (timeout 0, nobody ready),
 * LSEC_ELIMIT (max_accepts peers were already accepted), LSEC_ECLOSED
 * (lsec_listener_abort was called), LSEC_EINVAL (also a timeout below -1),
 * LSEC_ENOMEM, LSEC_EIO.
 */
LSEC_API LSEC_CHECK int lsec_accept(lsec_listener *l, int timeout_ms,
                                    lsec_channel **out);

/**
 * One descriptor for an event loop's poll, select or epoll (never read,
 * write or close it), the same for the listener's life however many
 * handshakes are pending: readable when lsec_accept can make progress — a
 * new connection, bytes for a pending handshake, or the earliest pending
 * handshake's deadline passing — so an event loop calls
 * lsec_accept(l, 0, &ch) each time it is readable until LSEC_EAGAIN, and a
 * stalled client is dropped at its deadline without any periodic wake-up.
 * Pending handshakes only progress inside lsec_accept.  Watch it
 * level-triggered (not with EPOLLET): one lsec_accept call may leave
 * further connections waiting, and the descriptor stays readable for them.
 * Only readability is meaningful; what kind of descriptor it is, is not
 * part of the interface.
 */
LSEC_API int lsec_listener_fd(lsec_listener *l);

/**
 * Milliseconds until lsec_accept must next run for a pending handshake's
 * deadline (0: now), or -1 when no handshake is pending: the timeout an
 * event loop polling lsec_listener_fd passes to poll (like
 * uv_backend_timeout).  Changes only in lsec_accept.  NULL: -1.
 */
LSEC_API int lsec_listener_timeout_ms(const lsec_listener *l);

/**
 * Stop the listener from any thread or a signal handler (thread-safe and
 * async-signal-safe): a call blocked in lsec_accept returns LSEC_ECLOSED
 * promptly, as does every later lsec_accept, and lsec_listener_fd becomes
 * (and stays) readable.  Nothing is freed: the owner then calls
 * lsec_listener_close, after the blocked call has returned.  NULL: no-op.
 */
LSEC_API void lsec_listener_abort(lsec_listener *l);

/**
 * How many connections this listener has failed or refused so far: failed
 * handshakes (wrong secret, malformed or non-loopsec bytes, mode mismatch),
 * refusals (peer policy, evictions at max_pending, the descriptor limit),
 * not counting clients that simply left or timed out.  The WARN log lines
 * for them are rate limited; this count is not.  0 for NULL.  Not
 * thread-safe, like every call on a listener.
 */
LSEC_API uint64_t lsec_listener_failures(const lsec_listener *l);

/** Close, drop pending handshakes, remove the connection file, wipe. */
LSEC_API void lsec_listener_close(lsec_listener *l);

/* ------------------------------------------------------------------------ */
/* Connecting side                                                           */

/**
 * Connect to the listener named by `ticket` and authenticate within
 * `timeout_ms` (which bounds the whole call).  `o` may be NULL; if
 * o->mode is LSEC_MODE_TLS, an auth-mode ticket is refused (LSEC_EMODE):
 * the mode is local policy and is never negotiated down.  LSEC_EMODE is
 * reported only when the mismatch is known for certain (an auth client
 * meets a TLS listener's alert); a listener that closes without answering
 * has refused the connection (descriptor limit, too many pending
 * handshakes, peer policy, or an auth listener met by a tls client: a
 * stale ticket): LSEC_ECLOSED, which is worth retrying.  A listener that
 * dropped the connection before any byte of ours reached it (it was
 * evicting connections that had sent nothing yet) is dialled again by
 * this call itself, at most 3 times within the timeout; nothing was
 * received on either side, so nothing is repeated.
 *
 * Returns 0, LSEC_EBADTICKET, LSEC_ENOTLOOPBACK, LSEC_EMODE, LSEC_EAUTH,
 * LSEC_ETIMEDOUT, LSEC_ECLOSED (refused, or nothing listens), LSEC_EPEER
 * (the listener belongs to another user, under LSEC_PEER_SAME_USER),
 * LSEC_ERESET, LSEC_EPROTO, LSEC_ETLS, LSEC_ELIMIT (out of descriptors:
 * EMFILE/ENFILE), LSEC_EIO, LSEC_ENOMEM, LSEC_EINVAL.
 */
LSEC_API LSEC_CHECK int lsec_connect(const char *ticket, const lsec_opts *o,
                                     int timeout_ms, lsec_channel **out);

/**
 * A connect in progress, for event loops: lsec_connect without waiting.
 * lsec_connect_start checks the ticket and starts the TCP connect; then,
 * until lsec_connector_step returns something other than LSEC_EAGAIN, wait
 * until lsec_connector_fd is ready for lsec_connector_events (or
 * lsec_connector_timeout_ms passes) and call lsec_connector_step again.
 * The deadline is o->handshake_timeout_ms from lsec_connect_start, for the
 * whole connect.  Calling lsec_connector_step early is harmless.
 *
 * lsec_connect_start returns 0 (*out set), LSEC_EBADTICKET,
 * LSEC_ENOTLOOPBACK, LSEC_EMODE (local policy), LSEC_ECLOSED (nothing
 * listens), LSEC_EPEER, LSEC_ELIMIT, LSEC_EIO, LSEC_ENOMEM, LSEC_EINVAL.
 */
typedef struct lsec_connector lsec_connector;
LSEC_API LSEC_CHECK int lsec_connect_start(const char *ticket,
                                           const lsec_opts *o,
                                           lsec_connector **out);
/** The descriptor to poll; it changes in no step.  LSEC_EINVAL when NULL
 * or done. */
LSEC_API int lsec_connector_fd(const lsec_connector *c);
/** POLLIN and/or POLLOUT: what the last step waits for (0 when failed or
 * done). */
LSEC_API int lsec_connector_events(const lsec_connector *c);
/** Milliseconds until the deadline (0: step now, it will time out); -1
 * when there is none (failed or done). */
LSEC_API int lsec_connector_timeout_ms(const lsec_connector *c);
/**
 * Make progress without waiting.  0: connected and authenticated, the
 * channel is in *out (the connector keeps nothing; close it).
 * LSEC_EAGAIN: wait for the events again.  Otherwise lsec_connect's codes;
 * a failure is sticky (every later step returns it).
 */
LSEC_API LSEC_CHECK int lsec_connector_step(lsec_connector *c,
                                            lsec_channel **out);
/** Close the connection attempt (if any) and free, wiping the secret.
 * NULL is a no-op. */
LSEC_API void lsec_connector_close(lsec_connector *c);

/**
 * Read a connection file and connect.  The file is opened without following
 * a symlink and without blocking, and the opened file is refused
 * (LSEC_EPERM, each reason with its own detail) unless it is a regular file
 * owned by this user (the effective uid), with no group or other permission
 * bits, exactly one link (a hard-linked file is refused), and at most
 * LSEC_TICKET_MAX bytes.  A directory given as the path is LSEC_EINVAL
 * ("... is a directory, not a connection file").  Its content is one ticket
 * and an optional newline.  A stale file whose listener is gone gives
 * LSEC_ECLOSED (connection refused).
 * Returns lsec_connect's codes plus LSEC_EPERM, LSEC_EINVAL and
 * LSEC_ENOTFOUND (no file).
 */
LSEC_API LSEC_CHECK int lsec_connect_file(const char *path, const lsec_opts *o,
                                          int timeout_ms, lsec_channel **out);

/* ------------------------------------------------------------------------ */
/* Channels                                                                  */

/**
 * Send one whole message (0 <= len <= the peer's max_message).  Messages
 * arrive whole and in order.  If the timeout passes before any byte was
 * written, LSEC_ETIMEDOUT (or LSEC_EAGAIN for timeout 0) and nothing was
 * sent.  Once part of a message is written, the rest is queued inside the
 * channel and 0 is returned; it is flushed by the next lsec_send, lsec_recv
 * or lsec_flush.
 *
 * Returns 0, LSEC_EAGAIN, LSEC_ETIMEDOUT, LSEC_EMSGSIZE, LSEC_ERESET,
 * LSEC_ETLS, LSEC_ECLOSED (lsec_channel_abort was called), LSEC_EINVAL,
 * LSEC_ENOMEM, LSEC_EIO, or the error that broke the channel earlier (e.g.
 * LSEC_EPROTO from a receive).
 */
LSEC_API LSEC_CHECK int lsec_send(lsec_channel *c, const void *msg, size_t len,
                                  int timeout_ms);

/** One message for lsec_sendv: `len` bytes at `base`. */
typedef struct lsec_iov {
    const void *base;
    size_t len;
} lsec_iov;

/**
 * Send `n` whole messages, in order, each as lsec_send sends one (the peer
 * receives `n` messages), in as few system calls as the socket takes: in
 * auth mode up to 256 messages per write, so a burst of small messages
 * leaves in one segment.  Use it when several messages are ready at once;
 * a single lsec_send is never delayed to wait for company.  All or
 * nothing like lsec_send: every message is checked before the first byte
 * is written (LSEC_EINVAL for a NULL base with a length, LSEC_EMSGSIZE
 * above 4 GiB); if the timeout passes before any byte was written,
 * LSEC_ETIMEDOUT (LSEC_EAGAIN for timeout 0) and none was sent; once a
 * byte is written, what the timeout leaves is queued and 0 is returned.
 * `n` 0 sends nothing and returns 0.
 *
 * Returns lsec_send's codes.
 */
LSEC_API LSEC_CHECK int lsec_sendv(lsec_channel *c, const lsec_iov *msgs,
                                   size_t n, int timeout_ms);

/** Write out what lsec_send queued.  0 when nothing is left queued. */
LSEC_API LSEC_CHECK int lsec_flush(lsec_channel *c, int timeout_ms);

/** Bytes lsec_send has queued and not yet written: while non-zero, an event
 * loop watches the socket for POLLOUT and calls lsec_flush.  NULL: 0. */
LSEC_API size_t lsec_channel_queued(const lsec_channel *c);

/**
 * Receive one whole message into `buf`; its length goes to `*len`.  If the
 * next message is longer than `cap`, LSEC_EMSGSIZE with `*len` set to its
 * length and the message left queued, so the caller can retry with a larger
 * buffer.  A partial message survives a timeout.
 *
 * Returns 0, LSEC_EAGAIN (timeout 0), LSEC_ETIMEDOUT, LSEC_ECLOSED (the peer
 * ended its side cleanly between messages; every later lsec_recv says so
 * too, while lsec_send may go on: half-close; or lsec_channel_abort was
 * called: then every later call says so), LSEC_ERESET (peer vanished,
 * mid-message too), LSEC_EPROTO (a length above max_message; the channel
 * cannot be resynchronised and stays broken), LSEC_EMSGSIZE, LSEC_ETLS,
 * LSEC_ENOMEM, LSEC_EIO, LSEC_EINVAL.
 */
LSEC_API LSEC_CHECK int lsec_recv(lsec_channel *c, void *buf, size_t cap,
                                  size_t *len, int timeout_ms);

/**
 * The socket, for poll/epoll: readable means lsec_recv may make progress.
 * In either mode, first call lsec_recv(timeout 0) while
 * lsec_channel_pending is non-zero: a whole message may already be read
 * ahead (or decrypted) inside the channel, and the socket will not say so.
 * That recipe is for level-triggered waits (poll, select, epoll without
 * EPOLLET).  With EPOLLET, call lsec_recv(timeout 0) until LSEC_EAGAIN
 * before each wait: when the channel holds only the start of a message,
 * pending is 0 while the socket holds the rest, which makes no new edge.
 * Do not read or write the socket directly.
 */
LSEC_API int lsec_channel_fd(const lsec_channel *c);

/**
 * Bytes lsec_recv can deliver without waiting for the socket: whole
 * messages read ahead, or TLS plaintext already decrypted.  One system call
 * may bring many messages, and the socket does not report the ones it
 * left inside the channel, so an event loop follows
 * "pending > 0 ? lsec_recv(timeout 0) : poll lsec_channel_fd" (waiting
 * level-triggered; for EPOLLET see lsec_channel_fd): in auth mode
 * the figure is exact, non-zero exactly when the next lsec_recv completes
 * a message (or reports the stream's error) without reading the socket.  A
 * partial message does not count, so the loop never spins on it.  An idle
 * channel holds no read buffer: it exists only while it holds bytes.
 * While lsec_recv_to_fd has a message under way: the bytes of it held for
 * its descriptor (non-zero: wait for the descriptor, not the socket).
 */
LSEC_API size_t lsec_channel_pending(const lsec_channel *c);

/** The channel's mode, LSEC_MODE_AUTH or LSEC_MODE_TLS. */
LSEC_API int lsec_channel_mode(const lsec_channel *c);

/** Who is at the other end.  -1 where the system does not show it.  `uid`
 *  is the uid that created the peer's socket (see LSEC_PEER_SAME_USER). */
typedef struct lsec_peer {
    int64_t uid;
    int32_t pid;
    int32_t port;       /* the peer's TCP port */
    int32_t local_port; /* our TCP port */
} lsec_peer;

LSEC_API LSEC_CHECK int lsec_channel_peer(const lsec_channel *c,
                                          lsec_peer *out);

/**
 * Stop the channel from any thread or a signal handler (thread-safe and
 * async-signal-safe): shuts the socket down in both directions, so a call
 * blocked in lsec_recv, lsec_send or lsec_flush returns LSEC_ECLOSED
 * promptly, as does every later one; what was queued is dropped.  Nothing
 * is freed: the owner then calls lsec_channel_close, after the blocked
 * call has returned.  NULL: no-op.
 */
LSEC_API void lsec_channel_abort(lsec_channel *c);

/**
 * Half-close: end the sending direction after every message lsec_send
 * accepted (what is queued is flushed first, within `timeout_ms`); receiving
 * goes on.  auth mode: the TCP write side is shut down (FIN); tls mode: a
 * TLS close_notify alert, then the same FIN (the TCP connection stays open
 * in the other direction).  Either way the peer's socket becomes readable
 * and its lsec_recv then reports LSEC_ECLOSED once it
 * has received every message, and the peer may go on sending.  Afterwards
 * lsec_send fails with LSEC_EINVAL; a second lsec_channel_shutdown returns
 * 0.  On LSEC_ETIMEDOUT / LSEC_EAGAIN (timeout 0) nothing is ended yet and
 * the call may be repeated (an event loop waits for the socket to be
 * writable).
 *
 * Returns 0, LSEC_ETIMEDOUT, LSEC_EAGAIN, LSEC_ERESET, LSEC_ETLS,
 * LSEC_EIO, LSEC_EINVAL, or the error that broke the channel earlier.
 */
LSEC_API LSEC_CHECK int lsec_channel_shutdown(lsec_channel *c, int timeout_ms);

/**
 * Send one message whose payload is read from descriptor `fd`, moved
 * inside the kernel (splice(2): page references, not copies, where the
 * kernel can).  auth mode only.  Waits (within `timeout_ms`) until `fd` is
 * readable and the socket writable, then takes what `fd` has now, at most
 * `max` and at most what the channel's pipe holds (256 KiB where the
 * system allows, else its default, 64 KiB on Linux; no more than the
 * peer's max_message should be asked for), and sends it as one message;
 * its length
 * goes to `*moved`.  0 with `*moved` 0: `fd` is at its end (nothing sent;
 * an empty message cannot be sent this way).  As with lsec_send, if the
 * timeout passes first, LSEC_ETIMEDOUT (LSEC_EAGAIN for timeout 0) and
 * nothing was read or sent; once read, the message is the channel's: what
 * the socket does not take in time is queued (lsec_channel_queued) and 0
 * is returned.  What an earlier lsec_send queued is flushed first.  `fd`
 * may be a pipe, a socket or a regular file (not the channel's own
 * socket); it need not be non-blocking.
 *
 * Returns 0, LSEC_EAGAIN, LSEC_ETIMEDOUT, LSEC_EMODE (a tls channel:
 * TLS encrypts in user space, so there is no copy to avoid; use lsec_send),
 * LSEC_EINVAL (NULL, `max` 0, `fd` < 0, not open or of a kind splice
 * cannot read, the sending direction shut down), LSEC_ENOSYS (no splice on
 * this system), LSEC_ELIMIT (no descriptor for the channel's pipe),
 * LSEC_ERESET, LSEC_ECLOSED (lsec_channel_abort), LSEC_ENOMEM, LSEC_EIO
 * (reading `fd` failed: nothing was sent), or the error that broke the
 * channel earlier.  On failure `*moved` is 0.
 */
LSEC_API LSEC_CHECK int lsec_send_from_fd(lsec_channel *c, int fd, size_t max,
                                          size_t *moved, int timeout_ms);

/**
 * Receive one message and write its payload to descriptor `fd` (a pipe, a
 * socket or a regular file; not the channel's own socket), moved inside the
 * kernel as in lsec_send_from_fd.  auth mode only.  Bytes the channel
 * already holds (read ahead, or kept from a receive a timeout cut) are
 * written first, in order.  `*moved` counts the bytes this call wrote to
 * `fd`.  0: the whole message is written (an empty one too).  On
 * LSEC_ETIMEDOUT / LSEC_EAGAIN (timeout 0) the message is under way:
 * `*moved` bytes of it were written, and the next lsec_recv_to_fd goes on
 * with it (lsec_recv fails with LSEC_EINVAL until it is done).  Then
 * lsec_channel_pending says what to wait for: non-zero, bytes held for
 * `fd` (wait until `fd` is writable); 0, the socket.  The message's length
 * is checked against max_message as in lsec_recv; no buffer of that size is
 * needed.  If writing to `fd` fails, the message is cut and the channel
 * broken.  SIGPIPE from a descriptor whose reader left is never raised.
 *
 * Returns 0, LSEC_EAGAIN, LSEC_ETIMEDOUT, LSEC_ECLOSED (the peer ended its
 * side between messages, or lsec_channel_abort), LSEC_ERESET (peer vanished,
 * mid-message too), LSEC_EPROTO (a length above max_message: broken for
 * good), LSEC_EMODE (a tls channel), LSEC_EINVAL (NULL, `fd` < 0 or not
 * open; or writing to `fd` failed with EBADF/EINVAL), LSEC_EIO (writing to
 * `fd` failed otherwise, e.g. EPIPE), LSEC_ENOSYS, LSEC_ELIMIT,
 * LSEC_ENOMEM.
 */
LSEC_API LSEC_CHECK int lsec_recv_to_fd(lsec_channel *c, int fd, size_t *moved,
                                        int timeout_ms);

/** Flush what is queued (briefly), close cleanly, wipe, free.  After
 *  lsec_channel_abort nothing more is sent. */
LSEC_API void lsec_channel_close(lsec_channel *c);

/* ------------------------------------------------------------------------ */
/* Ports                                                                     */

/** Who listens on a loopback TCP port.  Strings are NUL-terminated. */
typedef struct lsec_port_owner {
    int64_t uid;
    int32_t pid;       /* -1 when the process is not visible to us */
    char user[64];     /* "" when unknown */
    char command[256]; /* the process's short name; "" when unknown */
} lsec_port_owner;

/**
 * Find who listens on `port` on 127.0.0.0/8 or ::1 (or a wildcard address).
 * Returns 0, LSEC_ENOTFOUND (nobody listens), LSEC_EINVAL, LSEC_ENOSYS.
 */
LSEC_API LSEC_CHECK int lsec_port_owner_get(int port, lsec_port_owner *out);

/** One listening TCP socket (lsec_port_listeners).  NUL-terminated strings. */
typedef struct lsec_port_listener {
    char addr[64]; /* LSEC_ADDR_MAX: "127.0.0.1:8080", "[::]:22" */
    int32_t port;
    int32_t wildcard;  /* 1: bound to 0.0.0.0 or :: (every interface), so
                          reachable from other hosts; 0: loopback only */
    int64_t uid;       /* from the kernel's table: known even when the
                          process is not visible */
    int32_t pid;       /* -1 when the process is not visible to us */
    char user[64];     /* "" when unknown */
    char command[256]; /* "" when unknown */
} lsec_port_listener;

/**
 * Every TCP socket listening on a loopback address (127.0.0.0/8, ::1) or on
 * a wildcard address (0.0.0.0, ::), which also takes loopback connections;
 * with `port` 1..65535 only those on that port (0: every port).  IPv4
 * first, then IPv6, in the kernel's order.  The first `cap` go to `out`
 * (NULL when cap is 0); `*count` is how many there are.
 *
 * Returns 0, LSEC_EMSGSIZE (more than `cap`: `*count` says how many, call
 * again with a larger array), LSEC_ENOTFOUND (a `port` was given and
 * nobody listens on it), LSEC_EINVAL, LSEC_ENOSYS (the kernel's tables
 * cannot be read).
 */
LSEC_API LSEC_CHECK int lsec_port_listeners(int port, lsec_port_listener *out,
                                            size_t cap, size_t *count);

/* ------------------------------------------------------------------------ */
/* Helper processes                                                          */

typedef struct lsec_helper lsec_helper;

/**
 * Name of the environment variable that tells a spawned helper which
 * inherited descriptor carries its ticket (the number, never the ticket).
 */
#define LSEC_ENV_TICKET_FD "LOOPSEC_TICKET_FD"
/** Same, for the descriptor on which a listening helper announces. */
#define LSEC_ENV_ANNOUNCE_FD "LOOPSEC_ANNOUNCE_FD"

/**
 * Parent listens, helper connects back.  Binds 127.0.0.1:0, starts
 * argv[0] (searched in PATH) with the ticket on an inherited pipe whose
 * number (3) is in LOOPSEC_TICKET_FD, and waits for the helper's
 * authenticated connection, the helper's death or the timeout, whichever
 * comes first; a helper that dies at once is reported at once.  The
 * helper's environment is the caller's plus that variable.  Only that pipe
 * is inherited besides stdin/stdout/stderr (which are inherited as they
 * are): every other descriptor, CLOEXEC or not, is closed in the helper.
 * Unless LSEC_OPT_HELPER_SURVIVES is set, the helper gets SIGKILL when the
 * parent dies (strictly, when the thread that called lsec_spawn ends, as
 * the kernel's parent-death signal follows that thread: call it from a
 * thread that lives as long as the helper should).  The listener accepts
 * exactly one peer and is closed before return.  `timeout_ms` bounds the whole
 * call.
 *
 * Returns 0, LSEC_ECHILD (the helper exited or could not be executed: the
 * detail has its status or the reason), LSEC_ENOTFOUND (no such program),
 * LSEC_ETIMEDOUT, LSEC_EINVAL, LSEC_EIO, LSEC_ENOMEM, or lsec_listen's
 * codes.  On failure the helper, if it was started, is killed and reaped.
 */
LSEC_API LSEC_CHECK int lsec_spawn(const char *const argv[], const lsec_opts *o,
                                   int timeout_ms, lsec_helper **helper,
                                   lsec_channel **chan);

/**
 * Helper listens, parent connects (kernel pattern).  Starts argv with a pipe
 * in LOOPSEC_ANNOUNCE_FD, reads the ticket the helper announces with
 * lsec_listener_announce, then connects.  The helper's port is held before
 * anyone learns its number.  `timeout_ms` bounds the whole call.  Codes as
 * lsec_spawn, plus LSEC_EPROTO (the helper closed the descriptor without
 * announcing but lives on), LSEC_EBADTICKET, and lsec_connect's codes.
 */
LSEC_API LSEC_CHECK int lsec_spawn_listening(const char *const argv[],
                                             const lsec_opts *o, int timeout_ms,
                                             lsec_helper **helper,
                                             lsec_channel **chan);

/**
 * In a helper started by lsec_spawn: read the ticket from the descriptor
 * named in LOOPSEC_TICKET_FD (then close it and remove the variable) and
 * connect, all within `timeout_ms`.  The variable must be plain decimal and
 * at least 3, and the descriptor a pipe or socket.  Not thread-safe
 * (unsetenv): call it early, before starting threads.
 * Returns lsec_connect's codes, LSEC_ENOTFOUND when not started so (the
 * variable is unset or its descriptor is not open), LSEC_EINVAL (malformed
 * variable, or not a pipe), LSEC_EBADTICKET (nothing or garbage to read).
 */
LSEC_API LSEC_CHECK int
lsec_connect_inherited(const lsec_opts *o, int timeout_ms, lsec_channel **out);

/**
 * In a helper started by lsec_spawn_listening: write the listener's ticket
 * and a newline to the descriptor named in LOOPSEC_ANNOUNCE_FD, then close
 * it and remove the variable (checked as for lsec_connect_inherited; not
 * thread-safe).  LSEC_ENOTFOUND when not started so, LSEC_EINVAL,
 * LSEC_ECLOSED (the parent is gone), LSEC_EIO.
 */
LSEC_API LSEC_CHECK int lsec_listener_announce(const lsec_listener *l);

/** The helper's process id. */
LSEC_API int lsec_helper_pid(const lsec_helper *h);

/**
 * Wait up to `timeout_ms` for the helper to exit; its wait status (as from
 * waitpid: WIFEXITED, WEXITSTATUS...) goes to `*status`.  Once reaped, later
 * calls return the same status.  Returns 0, LSEC_ETIMEDOUT, LSEC_EAGAIN
 * (timeout 0, still running), LSEC_EINVAL, LSEC_ECHILD (the application
 * reaped it itself, e.g. with SIGCHLD ignored: status unknown).
 */
LSEC_API LSEC_CHECK int lsec_helper_wait(lsec_helper *h, int timeout_ms,
                                         int *status);

/**
 * Send `sig` to the helper.  Returns 0, LSEC_ECHILD (already reaped: its
 * pid may belong to another process now, so nothing is sent), LSEC_EINVAL.
 */
LSEC_API int lsec_helper_kill(lsec_helper *h, int sig);

/**
 * Free the handle.  A helper still running is killed (SIGKILL) and reaped,
 * unless LSEC_OPT_HELPER_SURVIVES was set (then it keeps running, still a
 * child of this process).
 */
LSEC_API void lsec_helper_free(lsec_helper *h);

/* ------------------------------------------------------------------------ */
/* Process hardening (opt-in)                                                */

/**
 * Make secrets in this process's memory harder to reach, for applications
 * that want it (the library never calls it itself): the core-file limit
 * becomes 0, soft and hard (RLIMIT_CORE; the hard limit cannot be raised
 * again without privilege), and the process becomes non-dumpable
 * (prctl PR_SET_DUMPABLE 0): no core dump, and other processes of the same
 * user can no longer ptrace it or read its /proc/PID/mem, environ or fd.
 * A side effect: such a process's own peers see pid -1 for it in
 * lsec_channel_peer (they cannot look at its /proc/PID/fd).  Root is not
 * stopped.  Both settings last for the process's life and are inherited
 * by fork(); execve() of a program that is not set-id makes the new image
 * dumpable again (the core limit stays 0).  Independently of this call,
 * a listener keeps its secret and keys in guarded memory (libsodium's
 * sodium_malloc: guard pages, locked where RLIMIT_MEMLOCK allows, excluded
 * from core dumps).
 *
 * Returns 0 or LSEC_EIO (the detail names the step that failed).
 */
LSEC_API LSEC_CHECK int lsec_harden_process(void);

#ifdef __cplusplus
}
#endif

#endif /* LOOPSEC_H */
