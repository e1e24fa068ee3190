/*
 * Internals that only the tests call (tests/, tests/fuzz/).  Library code
 * never uses them; only the files that define them include this header, to
 * keep their prototypes checked.  Never installed.
 */
#ifndef LOOPSEC_TESTING_H
#define LOOPSEC_TESTING_H

#include "internal.h"

/* io.c: restore every member of lsec__io to the real system call. */
void lsec__io_reset(void);

/* peer.c: close the process's kept peer-lookup descriptor; the next lookup
 * opens a new one through lsec__io.socket (for tests that replace the
 * seam). */
void lsec__peer_forget(void);

/* connfile.c: lsec__connfile_write_ref without keeping a reference. */
int lsec__connfile_write(const lsec__ticket *t, const char *path, char *written,
                         size_t writtenlen);

/* tls.c: does `t` still hold its own copy of the PSK?  Until the handshake
 * is done; wiped then. */
bool lsec__tls_holds_psk(const lsec__tls *t);

#endif /* LOOPSEC_TESTING_H */
