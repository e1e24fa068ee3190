/*
 * Error codes, the thread-local detail text, logging, options and one-time
 * initialisation.  Nothing here ever receives a secret: callers format only
 * addresses, ports, uids, pids, file names and fixed reasons.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
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

static lsec_log_fn log_fn;
static void *log_arg;
static int log_level;

void lsec_set_log(lsec_log_fn fn, void *arg, int max_level)
{
    __atomic_store_n(&log_arg, arg, __ATOMIC_RELEASE);
    __atomic_store_n(&log_level, max_level, __ATOMIC_RELEASE);
    __atomic_store_n(&log_fn, fn, __ATOMIC_RELEASE);
}

bool lsec__log_enabled(int level)
{
    return __atomic_load_n(&log_fn, __ATOMIC_ACQUIRE) != NULL &&
           level <= __atomic_load_n(&log_level, __ATOMIC_ACQUIRE);
}

void lsec__log(int level, const char *fmt, ...)
{
    lsec_log_fn fn = __atomic_load_n(&log_fn, __ATOMIC_ACQUIRE);
    char msg[512];
    va_list ap;

    if (fn == NULL || level > __atomic_load_n(&log_level, __ATOMIC_ACQUIRE))
        return;
    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
        msg[0] = '\0';
    va_end(ap);
    fn(__atomic_load_n(&log_arg, __ATOMIC_ACQUIRE), level, msg);
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
/* Options                                                                   */

static void opts_defaults(lsec_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->size = sizeof(*o);
    o->mode = LSEC_MODE_AUTH;
    o->handshake_timeout_ms = 5000;
    o->max_message = LSEC_MAX_MESSAGE_DEFAULT;
    o->peer_policy = LSEC_PEER_SAME_USER;
    o->port_policy = LSEC_PORT_KERNEL;
    o->port_min = 49152;
    o->port_max = 65535;
    o->backlog = 128;
    o->max_pending = 64;
    o->max_accepts = 0;
    o->flags = 0;
}

size_t lsec_opts_size(void) { return sizeof(lsec_opts); }

void lsec_opts_init_sized(lsec_opts *o, size_t size)
{
    lsec_opts d;

    if (o == NULL || size < sizeof(size_t))
        return;
    opts_defaults(&d);
    if (size > sizeof(d)) {
        /* A newer caller: zero what we do not know, fill what we do. */
        memset(o, 0, size);
        size = sizeof(d);
    }
    memcpy(o, &d, size);
    o->size = size;
}

void lsec__opts_resolve(const lsec_opts *in, lsec_opts *out)
{
    size_t n;

    opts_defaults(out);
    if (in == NULL || in->size < sizeof(size_t))
        return;
    /* Only members that lie within the caller's struct are read. */
    n = in->size < sizeof(*out) ? in->size : sizeof(*out);
    memcpy(out, in, n);
    out->size = sizeof(*out);
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
