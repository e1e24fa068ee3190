/*
 * One-time library initialisation (libsodium; OpenSSL initialises lazily in
 * tls.c), idempotent and thread-safe.
 */
#include "internal.h"

#include <pthread.h>
#include <sodium.h>

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_result;

static void init_run(void)
{
    /* sodium_init is itself idempotent and thread-safe; the once guard only
     * spares repeated calls on hot paths. */
    init_result = sodium_init() < 0 ? LSEC_EIO : 0;
}

int lsec__init(void)
{
    pthread_once(&init_once, init_run);
    if (init_result != 0)
        return lsec__fail(LSEC_EIO, "libsodium failed to initialise");
    return 0;
}
