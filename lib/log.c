/*
 * Logging: the installed sink and the lsec__log calls that reach it.  Log
 * lines never carry a secret (the same rule as details, error.c).
 */
#include "internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/*
 * The sink is one immutable record {fn, arg, level}, published through one
 * atomic pointer, so a caller always sees a fn with its own arg and level.
 * Records are never freed (a reader on another thread may hold one at any
 * time): each distinct triple is allocated once, kept on a list, and
 * reused when installed again, so memory is bounded by the number of
 * distinct loggers a process installs -- a handful in practice.
 */
struct log_sink {
    lsec_log_fn fn;
    void *arg;
    int level;
    struct log_sink *next; /* every record ever made; never freed */
};

static struct log_sink *log_current; /* NULL: silent */
static struct log_sink *log_all;     /* under log_lock */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void lsec_set_log(lsec_log_fn fn, void *arg, int max_level)
{
    struct log_sink *r = NULL;

    if (fn != NULL) {
        pthread_mutex_lock(&log_lock);
        for (r = log_all; r != NULL; r = r->next)
            if (r->fn == fn && r->arg == arg && r->level == max_level)
                break;
        if (r == NULL && (r = malloc(sizeof(*r))) != NULL) {
            r->fn = fn;
            r->arg = arg;
            r->level = max_level;
            r->next = log_all;
            log_all = r;
        }
        pthread_mutex_unlock(&log_lock);
        /* Out of memory: silent rather than a half-installed logger. */
    }
    __atomic_store_n(&log_current, r, __ATOMIC_RELEASE);
}

bool lsec__log_enabled(int level)
{
    const struct log_sink *r = __atomic_load_n(&log_current, __ATOMIC_ACQUIRE);
    return r != NULL && level <= r->level;
}

void lsec__log(int level, const char *fmt, ...)
{
    /* One load: fn, arg and level come from the same record. */
    const struct log_sink *r = __atomic_load_n(&log_current, __ATOMIC_ACQUIRE);
    char msg[512];
    va_list ap;

    if (r == NULL || level > r->level)
        return;
    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
        msg[0] = '\0';
    va_end(ap);
    r->fn(r->arg, level, msg);
}
