/*
 * Error codes, their names, the version, and the thread-local detail text
 * (logging: log.c; initialisation: init.c).  Nothing here ever receives a
 * secret: callers format only addresses, ports, uids, pids, file names and
 * fixed reasons, and paths pass through lsec__shown first.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Version                                                                   */

const char *lsec_version(void)
{
    return LSEC_VERSION_STRING;
}

int lsec_version_number(void)
{
    return LSEC_VERSION_NUMBER;
}

size_t lsec_secret_bytes(void)
{
    return LSEC_SECRET_BYTES;
}
size_t lsec_id_bytes(void)
{
    return LSEC_ID_BYTES;
}

size_t lsec_ticket_max(void)
{
    return LSEC_TICKET_MAX;
}

size_t lsec_addr_max(void)
{
    return LSEC_ADDR_MAX;
}

/* ------------------------------------------------------------------------ */
/* Codes                                                                     */

const char *lsec_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define XX(name, code, text)                                                   \
    case (code):                                                               \
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
#define XX(name, code, text)                                                   \
    case (code):                                                               \
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

const char *lsec_last_detail(void)
{
    return detail;
}

void lsec__clear_detail(void)
{
    detail[0] = '\0';
}

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

/* Does `s` hold a run of 32 or more base64url characters (a secret is 43,
 * a PSK 64 hex digits; a connection file's name has a 16-digit id)? */
static bool has_secret_run(const char *s)
{
    size_t run = 0;

    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        bool b64 = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                   (c >= '0' && c <= '9') || c == '-' || c == '_';
        run = b64 ? run + 1 : 0;
        if (run >= 32)
            return true;
    }
    return false;
}

const char *lsec__shown(const char *path)
{
    if (strcasestr(path, "loopsec:") != NULL ||
        strcasestr(path, "secret=") != NULL)
        return "(withheld: it looks like a ticket)";
    if (has_secret_run(path))
        return "(withheld: it looks like a secret)";
    return path;
}
