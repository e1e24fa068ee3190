/*
 * Error codes, the thread-local detail text, logging and one-time
 * initialisation (options: opts.c).  Nothing here ever receives a secret:
 * callers format only addresses, ports, uids, pids, file names and fixed
 * reasons.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* Version                                                                   */

const char *lsec_version(void) { return LSEC_VERSION_STRING; }

int lsec_version_number(void) { return LSEC_VERSION_NUMBER; }

size_t lsec_secret_bytes(void) { return LSEC_SECRET_BYTES; }
size_t lsec_id_bytes(void) { return LSEC_ID_BYTES; }

size_t lsec_ticket_max(void) { return LSEC_TICKET_MAX; }

size_t lsec_addr_max(void) { return LSEC_ADDR_MAX; }

/* ------------------------------------------------------------------------ */
/* Codes                                                                     */

const char *lsec_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define XX(name, code, text)                                                  \
    case (code):                                                              \
        return text;
        LSEC_ERRNO_MAP(XX)
#undef XX
    default:
        return "unknown error";
    }
}

const char *lsec_errname(int err)
{
    switch (err) {
    case 0:
        return "LSEC_OK";
#define XX(name, code, text)                                                  \
    case (code):                                                              \
        return "LSEC_" #name;
        LSEC_ERRNO_MAP(XX)
#undef XX
    default:
        return "LSEC_UNKNOWN";
    }
}

/* ------------------------------------------------------------------------ */
/* Detail                                                                    */

/* One buffer per thread; 512 bytes hold an address, a path and an owner. */
static _Thread_local char detail[512];

const char *lsec_last_detail(void) { return detail; }

void lsec__clear_detail(void) { detail[0] = '\0'; }

static void set_detail(const char *fmt, va_list ap) LSEC__PRINTF(1, 0);

static void set_detail(const char *fmt, va_list ap)
{
    int n = vsnprintf(detail, sizeof(detail), fmt, ap);
    if (n < 0)
        detail[0] = '\0';
}

int lsec__fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_detail(fmt, ap);
    va_end(ap);
    return code;
}

int lsec__fail_errno(int code, int errno_value, const char *fmt, ...)
{
    va_list ap;
    char errbuf[128];
    size_t used;

    va_start(ap, fmt);
    set_detail(fmt, ap);
    va_end(ap);
    /* strerror_r (GNU flavour) may or may not use errbuf. */
    const char *s = strerror_r(errno_value, errbuf, sizeof(errbuf));
    used = strlen(detail);
    if (used < sizeof(detail))
        snprintf(detail + used, sizeof(detail) - used, ": %s", s);
    return code;
}

/* ------------------------------------------------------------------------ */
/* Logging                                                                   */

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

/* ------------------------------------------------------------------------ */
/* Initialisation                                                            */

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

/* ------------------------------------------------------------------------ */
/* Time                                                                      */

int64_t lsec__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t lsec__deadline(int timeout_ms)
{
    if (timeout_ms < 0)
        return INT64_MAX;
    return lsec__now_ms() + timeout_ms;
}

int lsec__remaining(int64_t deadline)
{
    int64_t left;

    if (deadline == INT64_MAX)
        return -1;
    left = deadline - lsec__now_ms();
    if (left <= 0)
        return 0;
    if (left > INT32_MAX)
        return INT32_MAX;
    return (int)left;
}
