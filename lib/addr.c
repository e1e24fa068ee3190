/*
 * Strict parsing of "host:port" and loopback checks (DESIGN.md "Addresses",
 * docs/SECURITY.md rule 1).  No I/O: this file never resolves a name and never
 * touches a socket.
 *
 * Accepted, and nothing else:
 *   127.0.0.1:PORT     canonical dotted quad (the rest of 127.0.0.0/8, in
 *                      canonical form, only with LSEC_ADDR_ALLOW_127_8)
 *   [::1]:PORT         canonical IPv6 loopback, always in brackets
 *   localhost:PORT     the exact lower-case word, mapped here to 127.0.0.1;
 *                      it is never handed to a resolver, which might send
 *                      "localhost" to the network
 * PORT is plain decimal 0..65535: digits only, no sign, no leading zero
 * (except "0" itself), nothing after it.
 *
 * Parsing is inet_pton followed by inet_ntop, and the text must come back
 * identical: that single rule refuses every lenient spelling that
 * inet_aton/getaddrinfo would accept (127.1, 0177.0.0.1, 0x7f.0.0.1,
 * 2130706433, 127.000.000.001) and every non-canonical IPv6 spelling
 * (0:0:0:0:0:0:0:1, ::0001), so two texts name the same address only if they
 * are the same text.
 *
 * Which code for which refusal (callers and tests rely on it):
 *   LSEC_EINVAL        the text is malformed before the host is looked at:
 *                      NULL, empty, longer than LSEC_ADDR_MAX - 1, spaces
 *                      or control characters, no ":PORT", a bad port,
 *                      an empty host, an unbalanced bracket, or an IPv6
 *                      address without brackets.
 *   LSEC_ENOTLOOPBACK  the text is well-formed "HOST:PORT" but HOST is not
 *                      one of the accepted loopback forms: any other
 *                      address, a non-canonical spelling of a loopback
 *                      address, IPv4-mapped/compatible/embedded IPv6,
 *                      unspecified, link-local, a zone id, any host name.
 * The syntax checks run first, so text that is wrong in both ways gets
 * LSEC_EINVAL.  Every refusal records a detail saying why.  It quotes the
 * text only after the text was checked to be printable ASCII, so nothing
 * can smuggle terminal escapes into a log line, and never more of it than
 * cannot be a secret (a base64url secret or a ticket pasted where an
 * address belongs): text that parsed as an IP address is quoted in full,
 * any other text only when it is at most SHOW_FULL characters, else its
 * first SHOW_PREFIX characters and its length (see `shown`).
 */
#include "internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* Longest accepted text, excluding the NUL: LSEC_ADDR_MAX bounds it. */
#define TEXT_MAX (LSEC_ADDR_MAX - 1)
/* Untrusted text up to this many characters is quoted in full: too short
 * to be a secret (43 base64url characters) or a PSK (64 hex digits). */
#define SHOW_FULL 11
/* Of longer text, only this many leading characters, then its length. */
#define SHOW_PREFIX 4
/* Room for `shown`: "\"" SHOW_FULL chars "\"", or the prefix, "...\" (N
 * characters)", and the NUL. */
#define SHOWN_MAX 48

/*
 * `text` (printable ASCII, at most TEXT_MAX bytes) rendered for a detail in
 * `buf`: "\"127.0.0.2\"" in full when short, else "\"AAEC...\" (43
 * characters)".  Returns buf, for use as a printf argument.
 */
static const char *shown(const char *text, char buf[SHOWN_MAX])
{
    size_t n = strnlen(text, TEXT_MAX + 1);

    if (n <= SHOW_FULL)
        snprintf(buf, SHOWN_MAX, "\"%s\"", text);
    else
        snprintf(buf, SHOWN_MAX, "\"%.*s...\" (%zu characters)", SHOW_PREFIX,
                 text, n);
    return buf;
}

static const uint8_t v6_loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                        0, 0, 0, 0, 0, 0, 0, 1};

/* Parse the port text strictly; 0 or LSEC_EINVAL. */
static int parse_port(const char *p, const char *text, uint16_t *port)
{
    size_t n = strlen(p);
    unsigned long v = 0;
    char q[SHOWN_MAX];

    if (n == 0)
        return lsec__fail(LSEC_EINVAL, "%s has an empty port", shown(text, q));
    /* More than 5 digits can only overflow; refusing them early also keeps
     * the loop below from ever wrapping. */
    if (n > 5)
        return lsec__fail(LSEC_EINVAL, "port %s is out of range 0..65535",
                          shown(p, q));
    for (size_t i = 0; i < n; i++) {
        /* Digits only: no sign, no spaces, no hex, nothing after it. */
        if (p[i] < '0' || p[i] > '9')
            return lsec__fail(LSEC_EINVAL,
                              "port %s is not plain decimal digits",
                              shown(p, q));
        v = v * 10 + (unsigned long)(p[i] - '0');
    }
    /* A leading zero is a second spelling of the same port ("080" might be
     * read as octal elsewhere): one port, one text. */
    if (n > 1 && p[0] == '0')
        return lsec__fail(LSEC_EINVAL, "port %s has a leading zero",
                          shown(p, q));
    if (v > 65535)
        return lsec__fail(LSEC_EINVAL, "port %s is out of range 0..65535",
                          shown(p, q));
    *port = (uint16_t)v;
    return 0;
}

/* Does `host` look like an attempt at a numeric IPv4 address?  Only used to
 * word the detail; the decision itself is the round trip. */
static bool looks_numeric_v4(const char *host)
{
    const char *c = host;

    /* Dot-separated parts, each decimal/octal digits or 0x + hex digits,
     * empty parts allowed ("127..1", "127.0.0.1."): what inet_aton-like
     * parsers might read as a number. */
    while (*c != '\0') {
        if (c[0] == '0' && (c[1] == 'x' || c[1] == 'X')) {
            c += 2;
            while (isxdigit((unsigned char)*c))
                c++;
        } else {
            while (isdigit((unsigned char)*c))
                c++;
        }
        if (*c == '.')
            c++;
        else if (*c != '\0')
            return false;
    }
    return isdigit((unsigned char)host[0]);
}

static int refuse_name(const char *host)
{
    char q[SHOWN_MAX];

    /* Near misses of "localhost" get their own hint: they are the ones
     * people expect to work, and every one of them would go to a resolver
     * ("localhost." and "LOCALHOST" can be sent to DNS). */
    if (strncasecmp(host, "localhost", 9) == 0 ||
        strncasecmp(host, "ip6-localhost", 13) == 0 ||
        strncasecmp(host, "ip6-loopback", 12) == 0)
        return lsec__fail(LSEC_ENOTLOOPBACK,
                          "host names are never resolved: %s is not the "
                          "exact word localhost; write 127.0.0.1 or [::1]",
                          shown(host, q));
    return lsec__fail(LSEC_ENOTLOOPBACK,
                      "host names are never resolved: %s is not a loopback "
                      "address; write 127.0.0.1 or [::1]",
                      shown(host, q));
}

static int parse_v4(const char *host, unsigned flags, lsec__addr *out)
{
    struct in_addr in;
    char back[INET_ADDRSTRLEN], q[SHOWN_MAX];

    /* inet_pton(AF_INET) takes only four dotted decimal parts; the round
     * trip then refuses leading zeros, which some libcs accept. */
    if (inet_pton(AF_INET, host, &in) != 1 ||
        inet_ntop(AF_INET, &in, back, sizeof(back)) == NULL ||
        strcmp(back, host) != 0) {
        if (looks_numeric_v4(host))
            return lsec__fail(LSEC_ENOTLOOPBACK,
                              "%s is not canonical dotted-quad "
                              "(shorthand, octal, hex, integer and "
                              "leading-zero forms are refused): "
                              "write 127.0.0.1",
                              shown(host, q));
        return refuse_name(host);
    }
    out->family = AF_INET;
    memcpy(out->ip, &in, 4);
    if (lsec__addr_is_loopback(out, flags))
        return 0;
    if (out->ip[0] == 127 && (flags & LSEC_ADDR_ALLOW_127_8))
        return lsec__fail(LSEC_ENOTLOOPBACK,
                          "%s is the network or broadcast address of "
                          "127.0.0.0/8: never accepted, even with "
                          "LSEC_ADDR_ALLOW_127_8",
                          back);
    if (out->ip[0] == 127)
        return lsec__fail(LSEC_ENOTLOOPBACK,
                          "%s: an address in 127.0.0.0/8 other than "
                          "127.0.0.1 needs LSEC_ADDR_ALLOW_127_8",
                          back);
    if (in.s_addr == htonl(INADDR_ANY))
        return lsec__fail(LSEC_ENOTLOOPBACK,
                          "0.0.0.0 is the unspecified address (every "
                          "interface): write 127.0.0.1");
    return lsec__fail(LSEC_ENOTLOOPBACK,
                      "%s is not a loopback address: write 127.0.0.1", back);
}

/* Why an IPv6 address other than ::1 is refused, for the detail. */
static const char *v6_reason(const uint8_t *b)
{
    static const uint8_t zero10[10];
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0,
                                      0, 0,    0,    0,    0, 0};

    if (memcmp(b, zero10, 10) == 0 && b[10] == 0xff && b[11] == 0xff)
        return "IPv4-mapped IPv6 is refused: write the IPv4 address itself";
    if (memcmp(b, zero10, 10) == 0 && b[10] == 0 && b[11] == 0) {
        if (memcmp(b + 12, v6_loopback + 12, 4) == 0)
            return "non-canonical spelling of ::1: write [::1]";
        bool zero = true;
        for (int i = 12; i < 16; i++)
            zero = zero && b[i] == 0;
        if (zero)
            return "the unspecified address :: (every interface) is "
                   "refused: write [::1]";
        return "IPv4-compatible IPv6 is refused";
    }
    if (memcmp(b, nat64, 12) == 0)
        return "IPv6 with embedded IPv4 (64:ff9b::/96) is refused";
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
        return "link-local IPv6 is refused";
    return "not the IPv6 loopback address: write [::1]";
}

static int parse_v6(const char *host, lsec__addr *out)
{
    struct in6_addr in6;
    char back[INET6_ADDRSTRLEN], q[SHOWN_MAX];

    /* A zone id is meaningful only for link-local addresses and is never
     * part of a loopback address; inet_pton would refuse it anyway, but the
     * detail should say so. */
    if (strchr(host, '%') != NULL)
        return lsec__fail(LSEC_ENOTLOOPBACK, "[%s]: zone ids are refused",
                          shown(host, q));
    if (inet_pton(AF_INET6, host, &in6) != 1) {
        struct in_addr in;
        if (inet_pton(AF_INET, host, &in) == 1)
            return lsec__fail(LSEC_ENOTLOOPBACK,
                              "[%s]: brackets are only for IPv6: "
                              "write 127.0.0.1:PORT",
                              host); /* a valid IPv4 address */
        if (looks_numeric_v4(host) || strchr(host, ':') != NULL)
            return lsec__fail(LSEC_ENOTLOOPBACK, "[%s] is not an IPv6 address",
                              shown(host, q));
        return refuse_name(host);
    }
    if (memcmp(in6.s6_addr, v6_loopback, 16) != 0)
        return lsec__fail(LSEC_ENOTLOOPBACK, "[%s]: %s", host,
                          v6_reason(in6.s6_addr)); /* a valid address */
    /* The binary value is ::1; only the text "::1" spells it (no
     * 0:0:0:0:0:0:0:1, ::0001, 0::1). */
    if (inet_ntop(AF_INET6, &in6, back, sizeof(back)) == NULL ||
        strcmp(back, host) != 0)
        return lsec__fail(LSEC_ENOTLOOPBACK,
                          "[%s]: non-canonical spelling of ::1: write "
                          "[::1]",
                          host); /* a valid address */
    out->family = AF_INET6;
    memcpy(out->ip, in6.s6_addr, 16);
    return 0;
}

int lsec__addr_parse(const char *hostport, unsigned flags, lsec__addr *out)
{
    char buf[LSEC_ADDR_MAX];
    const char *host, *port_text;
    char q[SHOWN_MAX];
    lsec__addr a;
    size_t n;
    int rc;

    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (hostport == NULL || out == NULL)
        return lsec__fail(LSEC_EINVAL, "no address given");
    /* Bound the work before looking at the text: strnlen never reads past
     * TEXT_MAX + 1 bytes. */
    n = strnlen(hostport, TEXT_MAX + 1);
    if (n == 0)
        return lsec__fail(LSEC_EINVAL, "empty address: write 127.0.0.1:PORT");
    /* Printable ASCII only: spaces, tabs, newlines and control bytes are
     * refused outright, and are never quoted back in a detail.  This runs
     * before the length check, whose detail quotes a prefix of the text. */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)hostport[i];
        if (c <= 0x20 || c >= 0x7f)
            return lsec__fail(LSEC_EINVAL,
                              "address contains a space or control "
                              "character at offset %zu",
                              i);
    }
    if (n > TEXT_MAX)
        return lsec__fail(LSEC_EINVAL,
                          "address longer than %d characters: \"%.*s...\"",
                          TEXT_MAX, SHOW_PREFIX, hostport);
    /* "tcp://127.0.0.1:0", "http://...": a URL is not HOST:PORT (and could
     * be a ticket: nothing of it is quoted). */
    if (strstr(hostport, "://") != NULL)
        return lsec__fail(LSEC_EINVAL, "address is a URL: give HOST:PORT, "
                                       "not a URL (e.g. 127.0.0.1:8080)");
    memcpy(buf, hostport, n + 1);
    memset(&a, 0, sizeof(a));

    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (close == NULL)
            return lsec__fail(LSEC_EINVAL, "%s has no closing ]",
                              shown(hostport, q));
        if (close[1] != ':')
            return lsec__fail(LSEC_EINVAL, "%s: expected :PORT after ]",
                              shown(hostport, q));
        *close = '\0';
        host = buf + 1;
        port_text = close + 2;
    } else {
        char *colon = strchr(buf, ':');
        if (strchr(buf, ']') != NULL)
            return lsec__fail(LSEC_EINVAL, "%s has an unmatched ]",
                              shown(hostport, q));
        if (colon == NULL)
            return lsec__fail(LSEC_EINVAL, "%s has no :PORT",
                              shown(hostport, q));
        /* A second colon means an IPv6 address written without brackets,
         * where the port could not be told from the address. */
        if (strchr(colon + 1, ':') != NULL)
            return lsec__fail(LSEC_EINVAL,
                              "%s: IPv6 addresses must be in "
                              "brackets, as in [::1]:PORT",
                              shown(hostport, q));
        *colon = '\0';
        host = buf;
        port_text = colon + 1;
    }
    /* Syntax first (port, empty host), then what the host names. */
    if ((rc = parse_port(port_text, hostport, &a.port)) != 0)
        return rc;
    if (host[0] == '\0')
        return lsec__fail(LSEC_EINVAL, "%s has an empty host",
                          shown(hostport, q));
    if (host != buf) {
        if ((rc = parse_v6(host, &a)) != 0)
            return rc;
    } else if (strcmp(host, "localhost") == 0) {
        /* The exact word, mapped here and never resolved. */
        a.family = AF_INET;
        a.ip[0] = 127;
        a.ip[3] = 1;
    } else if ((rc = parse_v4(host, flags, &a)) != 0) {
        return rc;
    }
    *out = a;
    return 0;
}

bool lsec__addr_is_loopback(const lsec__addr *a, unsigned flags)
{
    if (a == NULL)
        return false;
    if (a->family == AF_INET) {
        if (a->ip[0] != 127)
            return false;
        if (a->ip[1] == 0 && a->ip[2] == 0 && a->ip[3] == 1)
            return true;
        /* The rest of 127/8 on request, except its network and broadcast
         * addresses: 127.0.0.0 and 127.255.255.255 are never accepted. */
        if (!(flags & LSEC_ADDR_ALLOW_127_8))
            return false;
        if (a->ip[1] == 0 && a->ip[2] == 0 && a->ip[3] == 0)
            return false;
        return !(a->ip[1] == 255 && a->ip[2] == 255 && a->ip[3] == 255);
    }
    if (a->family == AF_INET6)
        return memcmp(a->ip, v6_loopback, 16) == 0;
    return false;
}

int lsec__addr_format_host(const lsec__addr *a, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];

    if (a == NULL || buf == NULL)
        return lsec__fail(LSEC_EINVAL, "no address or buffer");
    if (len > 0)
        buf[0] = '\0';
    if ((a->family != AF_INET && a->family != AF_INET6) ||
        inet_ntop(a->family, a->ip, host, sizeof(host)) == NULL)
        return lsec__fail(LSEC_EINVAL, "address family %d is not IP",
                          a->family);
    if (strlen(host) >= len)
        return lsec__fail(LSEC_EMSGSIZE, "buffer of %zu bytes too small for %s",
                          len, host);
    memcpy(buf, host, strlen(host) + 1);
    return 0;
}

int lsec__addr_format(const lsec__addr *a, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];
    int rc, n;

    if (a == NULL || buf == NULL)
        return lsec__fail(LSEC_EINVAL, "no address or buffer");
    if (len > 0)
        buf[0] = '\0';
    if ((rc = lsec__addr_format_host(a, host, sizeof(host))) != 0)
        return rc;
    if (a->family == AF_INET6)
        n = snprintf(buf, len, "[%s]:%u", host, (unsigned)a->port);
    else
        n = snprintf(buf, len, "%s:%u", host, (unsigned)a->port);
    if (n < 0 || (size_t)n >= len) {
        if (len > 0)
            buf[0] = '\0';
        return lsec__fail(LSEC_EMSGSIZE,
                          "buffer of %zu bytes too small for the address", len);
    }
    return 0;
}

unsigned lsec__addr_to_sockaddr(const lsec__addr *a,
                                struct sockaddr_storage *ss)
{
    if (a == NULL || ss == NULL)
        return 0;
    memset(ss, 0, sizeof(*ss));
    if (a->family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(a->port);
        memcpy(&sin->sin_addr, a->ip, 4);
        return sizeof(*sin);
    }
    if (a->family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(a->port);
        memcpy(&sin6->sin6_addr, a->ip, 16);
        return sizeof(*sin6);
    }
    return 0;
}

int lsec__addr_from_sockaddr(const struct sockaddr *sa, unsigned salen,
                             unsigned flags, lsec__addr *out)
{
    lsec__addr a;
    char text[LSEC_ADDR_MAX];

    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (sa == NULL || out == NULL)
        return lsec__fail(LSEC_EINVAL, "no socket address");
    memset(&a, 0, sizeof(a));
    if (salen >= sizeof(struct sockaddr_in) && sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        a.family = AF_INET;
        a.port = ntohs(sin->sin_port);
        memcpy(a.ip, &sin->sin_addr, 4);
    } else if (salen >= sizeof(struct sockaddr_in6) &&
               sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        a.family = AF_INET6;
        a.port = ntohs(sin6->sin6_port);
        memcpy(a.ip, &sin6->sin6_addr, 16);
        /* ::1 has no zone; a scope id means the kernel speaks of some
         * other, link-scoped address. */
        if (sin6->sin6_scope_id != 0)
            return lsec__fail(LSEC_ENOTLOOPBACK,
                              "kernel reports an IPv6 address with zone %u",
                              (unsigned)sin6->sin6_scope_id);
    } else {
        return lsec__fail(LSEC_ENOTLOOPBACK,
                          "kernel reports a non-IP socket address (family "
                          "%d, length %u)",
                          (int)sa->sa_family, salen);
    }
    /* The kernel's own view is checked again in binary: an IPv4-mapped
     * ::ffff:127.0.0.1 on an IPv6 socket is refused like any other, since
     * our IPv6 sockets are V6ONLY and should never see one. */
    if (!lsec__addr_is_loopback(&a, flags)) {
        if (lsec__addr_format(&a, text, sizeof(text)) != 0)
            snprintf(text, sizeof(text), "?");
        return lsec__fail(LSEC_ENOTLOOPBACK,
                          "kernel reports %s, which is not an accepted "
                          "loopback address",
                          text);
    }
    *out = a;
    return 0;
}

void lsec__addr_endpoint(const lsec__addr *a, uint8_t out[LSEC__EP_BYTES])
{
    memset(out, 0, LSEC__EP_BYTES);
    if (a->family == AF_INET) {
        /* IPv4 as IPv4-mapped ::ffff:a.b.c.d, so both families share one
         * fixed-size encoding. */
        out[10] = 0xff;
        out[11] = 0xff;
        memcpy(out + 12, a->ip, 4);
    } else {
        memcpy(out, a->ip, 16);
    }
    out[16] = (uint8_t)(a->port >> 8);
    out[17] = (uint8_t)(a->port & 0xff);
}

int lsec_addr_check(const char *hostport, unsigned flags, char *norm,
                    size_t normlen)
{
    lsec__addr a;
    int rc;

    lsec__clear_detail();
    /* Unknown flag bits are misuse, not something to ignore silently: a
     * caller who passes them expects some behaviour we do not have. */
    if (flags & ~LSEC_ADDR_ALLOW_127_8)
        rc = lsec__fail(LSEC_EINVAL, "unknown address flags 0x%x",
                        flags & ~LSEC_ADDR_ALLOW_127_8);
    else
        rc = lsec__addr_parse(hostport, flags, &a);
    /* `norm` is written only after the text was read, so that checking a
     * buffer in place (hostport == norm) works. */
    if (norm == NULL)
        return rc;
    if (rc != 0) {
        if (normlen > 0)
            norm[0] = '\0';
        return rc;
    }
    return lsec__addr_format(&a, norm, normlen);
}

bool lsec__addr_same_endpoint(const lsec__addr *x, const lsec__addr *y)
{
    uint8_t ex[LSEC__EP_BYTES], ey[LSEC__EP_BYTES];

    lsec__addr_endpoint(x, ex);
    lsec__addr_endpoint(y, ey);
    return memcmp(ex, ey, sizeof(ex)) == 0;
}
