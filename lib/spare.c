/*
 * Per-thread spare blocks.  A read buffer that comes and goes with every
 * message (a connection that keeps up with its peer empties it on each
 * read) is kept, once released, for the next connection the same thread
 * reads with: idle connections hold none, and a busy one pays no
 * malloc/free per read.  One block per slot and thread; what a slot holds
 * is its user's to wipe before it is kept.  Freed when the thread exits.
 */
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>

/* One thread-local object: each thread-local of a shared library is a
 * look-up (__tls_get_addr), so a call makes one. */
static _Thread_local struct {
    void *slot[LSEC__SPARE_SLOTS];
    bool key_set; /* this thread's exit frees them */
} spares;
static pthread_key_t spares_key;
static pthread_once_t spares_once = PTHREAD_ONCE_INIT;
static bool spares_key_ok;

static void spares_exit(void *unused)
{
    (void)unused;
    for (int i = 0; i < LSEC__SPARE_SLOTS; i++) {
        free(spares.slot[i]);
        spares.slot[i] = NULL;
    }
    /* Another key's destructor may still read on this thread: the spare it
     * leaves registers again, and is freed in the next round. */
    spares.key_set = false;
}

static void spares_init(void)
{
    spares_key_ok = pthread_key_create(&spares_key, spares_exit) == 0;
}

void *lsec__spare_take(int slot)
{
    void *p = spares.slot[slot];
    spares.slot[slot] = NULL;
    return p;
}

bool lsec__spare_keep(int slot, void *p)
{
    if (spares.slot[slot] != NULL)
        return false;
    if (!spares.key_set) {
        /* The first spare of this thread: its exit must free it. */
        pthread_once(&spares_once, spares_init);
        spares.key_set =
            spares_key_ok && pthread_setspecific(spares_key, &spares) == 0;
        if (!spares.key_set)
            return false;
    }
    spares.slot[slot] = p;
    return true;
}
