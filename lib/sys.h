/*
 * The platform: every call that only one kernel has goes through here, so a
 * port to another system (kqueue, libproc, sysctl) replaces sys_linux.c and
 * touches no other file.  Each function states its behaviour, not how Linux
 * does it, and what a platform without the facility returns.  Never
 * installed.
 */
#ifndef LOOPSEC_SYS_H
#define LOOPSEC_SYS_H

#include "internal.h"

/* ------------------------------------------------------------------------ */
/* Processes                                                                 */

/* A descriptor that names exactly child `pid` (even once its pid could be
 * reused) and polls readable when it exits; CLOEXEC.  -1 where there is no
 * such thing. */
int lsec__sys_pidfd_open(pid_t pid);
/* Send `sig` through such a descriptor.  0, or -1 with errno (ENOSYS: the
 * caller falls back to kill(2)). */
int lsec__sys_pidfd_signal(int pidfd, int sig);
/* In a forked child, before exec, async-signal-safe: mark every descriptor
 * from `first` up close-on-exec (`max_fd` bounds the fallback loop). */
void lsec__sys_cloexec_from(int first, long max_fd);
/* This process becomes not dumpable: no core file, and other processes of
 * the same user may not read its memory or trace it.  0, or -1 with errno. */
int lsec__sys_no_dump(void);
/* pipe(2) with both ends close-on-exec from the start.  0, or -1 with
 * errno. */
int lsec__sys_pipe_cloexec(int p[2]);
/* In a forked child: be killed when the parent thread dies.  0, or -1 with
 * errno. */
int lsec__sys_pdeathsig_kill(void);

/* ------------------------------------------------------------------------ */
/* Moving bytes between descriptors inside the kernel                        */

/* A pipe, both ends non-blocking and close-on-exec.  0, or -1 with errno. */
int lsec__sys_pipe_nonblock(int p[2]);
/* Ask for a pipe of `want` bytes; what it holds now (the platform's
 * default where it cannot grow, e.g. past the user's pipe-memory limit). */
size_t lsec__sys_pipe_grow(int fd, size_t want);
/*
 * Move up to `len` bytes from `in` to `out`, one of which is a pipe, inside
 * the kernel (page references, not copies, where the kernel can), without
 * waiting on the pipe; `more`: more data follows (a hint to a socket).
 * Bytes moved, 0 at the end of `in`, or -1 with errno (EAGAIN: not ready;
 * EINVAL: a descriptor that cannot be used so; ENOSYS on a platform
 * without the facility).
 */
ssize_t lsec__sys_splice(int in, int out, size_t len, bool more);

/* ------------------------------------------------------------------------ */
/* Sockets of this machine                                                   */

/*
 * Besides the functions below, the platform provides lsec__proc_tcp_scan,
 * lsec__proc_socket_pid, lsec__tcp_state_live and lsec__route_localnet
 * (declared in internal.h, where listener.c, port.c and peer.c find them).
 */

/* The owner of a socket: the uid that created it, its inode (0: none). */
typedef struct lsec__sys_peer {
    int64_t uid;
    uint64_t inode;
} lsec__sys_peer;
/*
 * The exact lookup of the socket whose local endpoint is `remote` and whose
 * remote endpoint is `local` (the peer's own socket of a live connection).
 * 0 with *f filled, LSEC_ENOTFOUND when there is none, LSEC_EAGAIN while
 * the peer's end is still a request socket (ask again shortly),
 * LSEC_ENOSYS when the platform cannot answer this way (the caller scans
 * the tables instead).  No detail is recorded.  Thread-safe.
 */
int lsec__sys_peer_socket(const lsec__addr *local, const lsec__addr *remote,
                          lsec__sys_peer *f);
/* Is the connected TCP socket `fd` established (the handshake done, not
 * yet closing)?  false also when the platform cannot tell. */
bool lsec__sys_tcp_established(int fd);
/* Has the peer of the TCP socket `fd` never acknowledged a byte of the
 * data we sent (it was gone before any arrived)?  false when it has, when
 * we sent nothing, or when the platform cannot tell. */
bool lsec__sys_tcp_none_acked(int fd);
/* Drop any descriptor kept for lsec__sys_peer_socket (tests). */
void lsec__sys_peer_forget(void);
/* The short name of process `pid` (printable ASCII), or "" if unknown. */
void lsec__sys_process_name(int32_t pid, char *name, size_t cap);

/* ------------------------------------------------------------------------ */
/* Readiness sets and timers, for an event loop inside the library           */

/*
 * A readiness set: one descriptor that polls readable when any member is
 * ready.  Events are POLLIN/POLLOUT bits (<poll.h>).  Each returns 0 or
 * -1 with errno, except wait: the number of events (at most `cap`, and at
 * most 64 a call), 0 on timeout, -1.
 */
typedef struct lsec__sys_event {
    int fd;
    short events; /* POLLIN, POLLOUT, POLLERR, POLLHUP */
} lsec__sys_event;
int lsec__sys_set_new(void); /* the set's descriptor (CLOEXEC) or -1 */
int lsec__sys_set_add(int set, int fd, short events);
int lsec__sys_set_mod(int set, int fd, short events);
int lsec__sys_set_del(int set, int fd);
int lsec__sys_set_wait(int set, lsec__sys_event *ev, int cap, int timeout_ms);
/* A timer descriptor (CLOEXEC, non-blocking) that polls readable once armed
 * and due.  Arm with an absolute `deadline` on lsec__now_ms's clock (one in
 * the past is due at once; never drifts with the caller's delay); clear
 * disarms and consumes an expiry. */
int lsec__sys_timer_new(void);
int lsec__sys_timer_arm(int timer, int64_t deadline);
int lsec__sys_timer_clear(int timer);
/* A wake descriptor (CLOEXEC, non-blocking) that polls readable from the
 * first lsec__sys_wake_signal on, for good; signalling is
 * async-signal-safe and may come from any thread. */
int lsec__sys_wake_new(void);
void lsec__sys_wake_signal(int wake);

#endif /* LOOPSEC_SYS_H */
