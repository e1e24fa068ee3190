/*
 * A listener's pending set (pending.c): the accepted connections whose
 * handshakes are still running, each an lsec__conn with a deadline, under
 * a cap.  listener.c owns one and drives it.  Never installed.
 */
#ifndef LOOPSEC_PENDING_H
#define LOOPSEC_PENDING_H

#include "conn.h"

typedef struct lsec__pending {
    lsec__conn *conn; /* dense: conn[0, n) */
    int n;
    int ready; /* how many of them are authenticated, not yet handed out */
    const lsec_opts *o;   /* the listener's resolved options */
    lsec__addr local;     /* the listener's address: our end of each */
    lsec__conn_keys keys; /* the listener's ticket, auth keys, TLS context */
    /* A readiness set the listener hands out: once `set_used`, every
     * pending connection is kept in it, and `timer` (in the set too) is
     * armed to the earliest deadline (`t_armed`, 0 when disarmed), so that
     * "readable" also means "a handshake ran out of time". */
    int set;
    bool set_used;
    int timer;
    int64_t t_armed;
    /* Failed or refused connections, counted; their WARN lines are rate
     * limited (lsec__pending_warn). */
    uint64_t failures;
    int64_t warn_window;
    int warn_lines;
    uint64_t warn_suppressed;
} lsec__pending;

/*
 * A failed or refused connection: counted, and logged as a WARN -- at most
 * a burst of lines a second, the rest summed up in one "N similar
 * suppressed" line when the next window opens (or at
 * lsec__pending_warn_flush), so a flood cannot flood the log.
 */
void lsec__pending_warn(lsec__pending *s, const char *fmt, ...)
    LSEC__PRINTF(2, 3);
void lsec__pending_warn_flush(lsec__pending *s);
/* Admit one accepted socket (non-blocking; owned from here on): loopback
 * re-check of the peer as accept reported it, peer policy, room (evicting
 * if full), then the handshake starts. */
void lsec__pending_admit(lsec__pending *s, int fd, const struct sockaddr *peer,
                         unsigned peerlen);
/* Close conn[i] (logging `why` at `level` if not NULL); the last entry
 * moves into its place. */
void lsec__pending_drop(lsec__pending *s, int i, int level, const char *why);
/* Step conn[i]: LSEC__DONE with the channel in *out (conn[i] is gone,
 * the last entry moved into its place), LSEC__AGAIN when it goes on,
 * negative when it failed (dropped likewise). */
int lsec__pending_step(lsec__pending *s, int i, lsec_channel **out);
/* Hand out a connection that an eviction's step authenticated: LSEC__DONE
 * with the channel in *out, or LSEC__AGAIN when there is none. */
int lsec__pending_take_ready(lsec__pending *s, lsec_channel **out);
/* Drop every connection whose deadline has passed at `now`; lower *wake to
 * the earliest deadline left. */
void lsec__pending_expire(lsec__pending *s, int64_t now, int64_t *wake);
/* The earliest deadline, INT64_MAX for none, 0 while one is ready. */
int64_t lsec__pending_earliest(const lsec__pending *s);
/* Bring the readiness set and its timer in step with what each pending
 * connection waits for (once the set is used). */
void lsec__pending_sync(lsec__pending *s);
/* Read the timer if it fired, so that it stops making the set readable. */
void lsec__pending_timer_clear(lsec__pending *s);

#endif /* LOOPSEC_PENDING_H */
