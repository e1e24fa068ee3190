/*
 * Options: defaults, the size-aware merge of a caller's struct, and the one
 * place where every option and every timeout is validated.  Fail closed: an
 * unknown value is LSEC_EINVAL with a detail, never a default.
 */
#include "internal.h"

#include <stddef.h>
#include <string.h>

/*
 * The first release's struct ends with `flags`: a smaller size cannot come
 * from lsec_opts_init (it is a struct that was never initialised, e.g.
 * `lsec_opts o = {0}`), so it is refused instead of silently read as "all
 * defaults".
 */
#define OPTS_SIZE_MIN (offsetof(lsec_opts, flags) + sizeof(uint32_t))

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

size_t lsec_opts_size(void)
{
    return sizeof(lsec_opts);
}

void lsec_opts_init_sized(lsec_opts *o, size_t size)
{
    lsec_opts d;
    size_t n = size;

    if (o == NULL || size < sizeof(size_t))
        return;
    opts_defaults(&d);
    if (size > sizeof(d)) {
        /* A newer caller: zero what we do not know, fill what we do.  The
         * caller's own size is kept, so that lsec__opts_resolve sees (and
         * refuses) a member of theirs that this library cannot honour. */
        memset(o, 0, size);
        n = sizeof(d);
    }
    memcpy(o, &d, n);
    o->size = size;
}

/* Bytes of a newer caller's struct that this library does not know must be
 * zero (the rule of Linux's extensible structs, e.g. clone3/openat2). */
static bool tail_is_zero(const lsec_opts *in)
{
    const unsigned char *p = (const unsigned char *)in;

    for (size_t i = sizeof(lsec_opts); i < in->size; i++)
        if (p[i] != 0)
            return false;
    return true;
}

static int validate(const lsec_opts *o)
{
    if (o->mode != LSEC_MODE_AUTH && o->mode != LSEC_MODE_TLS)
        return lsec__fail(LSEC_EINVAL,
                          "unknown mode %d (LSEC_MODE_AUTH or "
                          "LSEC_MODE_TLS)",
                          o->mode);
    if (o->peer_policy != LSEC_PEER_SAME_USER &&
        o->peer_policy != LSEC_PEER_ANY_USER)
        return lsec__fail(LSEC_EINVAL,
                          "unknown peer_policy %d (LSEC_PEER_SAME_USER or "
                          "LSEC_PEER_ANY_USER)",
                          o->peer_policy);
    if (o->port_policy != LSEC_PORT_KERNEL && o->port_policy != LSEC_PORT_RANGE)
        return lsec__fail(LSEC_EINVAL,
                          "unknown port_policy %d (LSEC_PORT_KERNEL or "
                          "LSEC_PORT_RANGE)",
                          o->port_policy);
    if (o->port_policy == LSEC_PORT_RANGE &&
        (o->port_min < 1 || o->port_min > o->port_max))
        return lsec__fail(LSEC_EINVAL,
                          "invalid port range %u..%u (need "
                          "1 <= port_min <= port_max)",
                          (unsigned)o->port_min, (unsigned)o->port_max);
    if (o->flags & ~(uint32_t)LSEC__OPT_FLAGS_KNOWN)
        return lsec__fail(
            LSEC_EINVAL, "unknown flag bits 0x%x in flags",
            (unsigned)(o->flags & ~(uint32_t)LSEC__OPT_FLAGS_KNOWN));
    if (o->handshake_timeout_ms <= 0)
        return lsec__fail(LSEC_EINVAL, "handshake_timeout_ms %d must be > 0",
                          o->handshake_timeout_ms);
    if (o->max_message > UINT32_MAX)
        return lsec__fail(LSEC_EINVAL, "max_message %zu exceeds %u",
                          o->max_message, (unsigned)UINT32_MAX);
    if (o->backlog < 1)
        return lsec__fail(LSEC_EINVAL, "backlog %d must be at least 1",
                          o->backlog);
    if (o->max_pending < 1 || o->max_pending > LSEC__MAX_PENDING_LIMIT)
        return lsec__fail(LSEC_EINVAL, "max_pending %d must be in 1..%d",
                          o->max_pending, LSEC__MAX_PENDING_LIMIT);
    if (o->max_accepts < 0)
        return lsec__fail(LSEC_EINVAL, "max_accepts %d must be >= 0",
                          o->max_accepts);
    return 0;
}

int lsec__opts_resolve(const lsec_opts *in, lsec_opts *out)
{
    size_t n;

    opts_defaults(out);
    if (in == NULL)
        return 0;
    if (in->size < OPTS_SIZE_MIN)
        return lsec__fail(LSEC_EINVAL,
                          "lsec_opts.size %zu is smaller than any lsec_opts "
                          "(%zu): call lsec_opts_init",
                          in->size, (size_t)OPTS_SIZE_MIN);
    if (!tail_is_zero(in))
        return lsec__fail(LSEC_EINVAL,
                          "lsec_opts (%zu bytes) sets options this library "
                          "(%zu bytes) does not know",
                          in->size, sizeof(lsec_opts));
    /* Only members that lie within the caller's struct are read. */
    n = in->size < sizeof(*out) ? in->size : sizeof(*out);
    memcpy(out, in, n);
    out->size = sizeof(*out);
    return validate(out);
}

int lsec__timeout_check(int timeout_ms)
{
    if (timeout_ms < -1)
        return lsec__fail(LSEC_EINVAL,
                          "timeout_ms %d: -1 waits forever, 0 never waits, "
                          "> 0 milliseconds",
                          timeout_ms);
    return 0;
}

int lsec__call_begin(const lsec_opts *in, int timeout_ms, lsec_opts *out,
                     int64_t *deadline)
{
    int rc;

    if (lsec__timeout_check(timeout_ms) != 0)
        return LSEC_EINVAL;
    if ((rc = lsec__init()) != 0)
        return rc;
    *deadline = lsec__deadline(timeout_ms);
    return lsec__opts_resolve(in, out);
}
