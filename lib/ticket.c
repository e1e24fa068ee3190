/*
 * Tickets (PROTOCOL.md "Tickets"): the one string a client needs,
 *
 *   loopsec://HOST:PORT/?mode=auth|tls&id=<16 hex>&secret=<43 base64url>
 *
 * parsed strictly, in exactly that order, with nothing else accepted, so that
 * one ticket has exactly one spelling.  No I/O.  A ticket is a credential:
 * the detail text names the field that is wrong but never quotes the ticket
 * or its secret, and every copy of the secret is wiped on every path.
 */
#include "internal.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define SCHEME "loopsec://"
#define SECRET_CHARS 43 /* base64url of 32 bytes, no padding */
#define ID_CHARS (2 * LSEC__ID_BYTES)
#define PSK_HEX_CHARS (2 * LSEC__KEY_BYTES)

static const char *mode_name(int mode)
{
    switch (mode) {
    case LSEC_MODE_AUTH:
        return "auth";
    case LSEC_MODE_TLS:
        return "tls";
    default:
        return NULL;
    }
}

/* A cursor over the ticket text; `end` is one past its last byte. */
struct cursor {
    const char *p;
    const char *end;
};

/* Consume `lit` if the text continues with it. */
static bool take(struct cursor *c, const char *lit)
{
    size_t n = strlen(lit);

    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0)
        return false;
    c->p += n;
    return true;
}

static int bad(const char *why)
{
    return lsec__fail(LSEC_EBADTICKET, "ticket: %s", why);
}

/* HOST:PORT up to the next '/', exactly as PROTOCOL.md's grammar writes
 * it (the normal form lsec__addr_format writes), so that one listener has
 * one ticket text. */

/* Take a decimal number of 1..`maxdig` digits without a leading zero (a
 * lone "0" is fine) whose value is at most `max`. */
static bool take_decimal(struct cursor *c, int maxdig, unsigned long max)
{
    unsigned long v = 0;
    int n = 0;

    while (c->p < c->end && *c->p >= '0' && *c->p <= '9' && n < maxdig + 1) {
        if (n == 1 && v == 0)
            return false; /* leading zero */
        v = v * 10 + (unsigned long)(*c->p - '0');
        c->p++;
        n++;
    }
    return n >= 1 && n <= maxdig && v <= max;
}

/* hostport = ( ipv4 / "[::1]" ) ":" port, the whole of [p, end).  The
 * grammar admits port 0 here; the caller says why it cannot be used. */
static bool in_grammar(const char *p, size_t n)
{
    struct cursor c = {p, p + n};

    if (!take(&c, "[::1]")) {
        for (int i = 0; i < 4; i++)
            if ((i > 0 && !take(&c, ".")) || !take_decimal(&c, 3, 255))
                return false;
    }
    return take(&c, ":") && take_decimal(&c, 5, 65535) && c.p == c.end;
}

static int parse_addr(struct cursor *c, unsigned flags, lsec__addr *addr)
{
    char text[LSEC_ADDR_MAX];
    const char *slash = memchr(c->p, '/', (size_t)(c->end - c->p));
    size_t n;
    int rc;

    if (slash == NULL)
        return bad("no '/' after HOST:PORT");
    n = (size_t)(slash - c->p);
    if (n == 0 || n >= sizeof(text))
        return bad("HOST:PORT is empty or too long");
    /* Outside the grammar is a malformed ticket, whatever the text might
     * mean elsewhere ("localhost", "127.1", "127.0.0.01", "[::ffff:...]",
     * a name, a mangled ticket): EBADTICKET, never quoted (it may hold a
     * secret). */
    if (!in_grammar(c->p, n))
        return bad("HOST:PORT must be dotted-decimal IPV4:PORT or [::1]:PORT "
                   "in normal form (no leading zeros, port 1..65535)");
    memcpy(text, c->p, n);
    text[n] = '\0';
    /* Well-formed: the loopback policy decides (ENOTLOOPBACK). */
    rc = lsec__addr_parse(text, flags, addr);
    if (rc != 0 && rc != LSEC_ENOTLOOPBACK)
        rc = bad("HOST:PORT is not an address"); /* cannot happen */
    if (rc == 0 && addr->port == 0)
        rc = bad("port 0 cannot be connected to");
    sodium_memzero(text, sizeof(text));
    if (rc == 0)
        c->p = slash;
    return rc;
}

/* The secret: exactly 43 base64url characters, the canonical encoding of
 * 32 bytes, and the end of the ticket. */
static int parse_secret(struct cursor *c, uint8_t secret[LSEC_SECRET_BYTES])
{
    char again[SECRET_CHARS + 1];
    size_t got = 0;
    int rc = 0;

    if (c->end - c->p != SECRET_CHARS)
        return bad("secret must be 43 base64url characters and end the "
                   "ticket");
    if (lsec__b64_decode(secret, LSEC_SECRET_BYTES, c->p, SECRET_CHARS, &got) !=
            0 ||
        got != LSEC_SECRET_BYTES)
        /* libsodium also refuses spare bits that are not zero. */
        return bad("secret is not canonical base64url");
    /* Re-encode and compare: the last character carries 2 spare bits, and
     * only the text with those bits zero is accepted, so a secret has one
     * spelling.  Compared in constant time since it is the secret. */
    if (lsec__b64_encode(again, sizeof(again), secret, LSEC_SECRET_BYTES) !=
            0 ||
        sodium_memcmp(again, c->p, SECRET_CHARS) != 0)
        rc = bad("secret is not in canonical base64url");
    /* All zero is no secret at all (a placeholder, an uninitialised
     * buffer): refused, in constant time. */
    if (rc == 0 && sodium_is_zero(secret, LSEC_SECRET_BYTES))
        rc = bad("secret is all zero");
    sodium_memzero(again, sizeof(again));
    c->p = c->end;
    return rc;
}

/* The fields in their one order; `t` is filled as they parse. */
static int parse_fields(struct cursor *c, unsigned addr_flags, lsec__ticket *t)
{
    int rc;

    if (!take(c, SCHEME))
        return bad("must start with loopsec://");
    if ((rc = parse_addr(c, addr_flags, &t->addr)) != 0)
        return rc;
    if (!take(c, "/?mode="))
        return bad("expected /?mode= after HOST:PORT");
    if (take(c, "auth"))
        t->mode = LSEC_MODE_AUTH;
    else if (take(c, "tls"))
        t->mode = LSEC_MODE_TLS;
    else
        return bad("mode must be auth or tls");
    if (!take(c, "&id="))
        return bad("expected &id= after the mode");
    if (c->end - c->p < ID_CHARS ||
        lsec__hex_decode(t->id, sizeof(t->id), c->p, ID_CHARS) != 0)
        return bad("id must be 16 lowercase hex digits");
    c->p += ID_CHARS;
    if (!take(c, "&secret="))
        return bad("expected &secret= after the 16-digit id");
    return parse_secret(c, t->secret);
}

int lsec__ticket_parse(const char *text, size_t len, unsigned addr_flags,
                       lsec__ticket *out)
{
    lsec__ticket t;
    struct cursor c;
    int rc;

    if (out != NULL)
        sodium_memzero(out, sizeof(*out));
    if (text == NULL || out == NULL)
        return lsec__fail(LSEC_EINVAL, "ticket: no text or no result");
    if (len >= LSEC_TICKET_MAX)
        return bad("longer than LSEC_TICKET_MAX - 1 characters");
    if (memchr(text, '\0', len) != NULL)
        return bad("contains a NUL byte");
    memset(&t, 0, sizeof(t));
    c.p = text;
    c.end = text + len;
    rc = parse_fields(&c, addr_flags, &t);
    if (rc == 0)
        *out = t;
    /* On failure *out stays wiped; the partial secret dies here either way. */
    sodium_memzero(&t, sizeof(t));
    return rc;
}

/* The ticket text with `secret` (the encoded secret or "REDACTED"). */
static int format_with(const lsec__ticket *t, const char *secret, char *buf,
                       size_t len)
{
    char addr[LSEC_ADDR_MAX], id[ID_CHARS + 1];
    const char *mode;
    int n;

    mode = mode_name(t->mode);
    if (mode == NULL)
        return lsec__fail(LSEC_EINVAL, "ticket: mode %d unknown", t->mode);
    if (lsec__addr_format(&t->addr, addr, sizeof(addr)) != 0 ||
        lsec__hex_encode(id, sizeof(id), t->id, sizeof(t->id)) != 0)
        return lsec__fail(LSEC_EINVAL, "ticket: bad address or id");
    n = snprintf(buf, len, SCHEME "%s/?mode=%s&id=%s&secret=%s", addr, mode, id,
                 secret);
    if (n < 0 || (size_t)n >= len) {
        /* A truncated text may hold part of the secret. */
        sodium_memzero(buf, len);
        return lsec__fail(LSEC_EMSGSIZE,
                          "ticket: buffer of %zu bytes too small", len);
    }
    return 0;
}

int lsec__ticket_format(const lsec__ticket *t, char *buf, size_t len)
{
    char secret[SECRET_CHARS + 1];
    int rc;

    if (t == NULL || buf == NULL || len == 0)
        return lsec__fail(LSEC_EINVAL, "ticket: no ticket or buffer");
    rc = lsec__b64_encode(secret, sizeof(secret), t->secret, sizeof(t->secret));
    if (rc == 0)
        rc = format_with(t, secret, buf, len);
    sodium_memzero(secret, sizeof(secret));
    return rc;
}

int lsec__ticket_format_redacted(const lsec__ticket *t, char *buf, size_t len)
{
    if (t == NULL || buf == NULL || len == 0)
        return lsec__fail(LSEC_EINVAL, "ticket: no ticket or buffer");
    return format_with(t, "REDACTED", buf, len);
}

void lsec__ticket_wipe(lsec__ticket *t)
{
    if (t != NULL)
        sodium_memzero(t, sizeof(*t));
}

int lsec__ticket_psk_identity(const lsec__ticket *t, char *buf, size_t len)
{
    char id[ID_CHARS + 1];
    int n;

    if (t == NULL || buf == NULL || len == 0)
        return lsec__fail(LSEC_EINVAL, "ticket: no ticket or buffer");
    buf[0] = '\0';
    if (lsec__hex_encode(id, sizeof(id), t->id, sizeof(t->id)) != 0)
        return lsec__fail(LSEC_EINVAL, "ticket: bad id");
    /* PROTOCOL.md "TLS PSK": the identity names the protocol and the
     * listener instance, never anything secret. */
    n = snprintf(buf, len, "loopsec/1 %s", id);
    if (n < 0 || (size_t)n >= len) {
        buf[0] = '\0';
        return lsec__fail(LSEC_EMSGSIZE,
                          "PSK identity: buffer of %zu bytes too small", len);
    }
    return 0;
}

/*
 * The public functions parse with every loopback address allowed (127/8
 * included): they only look at a ticket, they never connect with it, and a
 * ticket made under LSEC_ADDR_ALLOW_127_8 must still be redactable.
 */
static int parse_public(const char *ticket, lsec__ticket *t)
{
    return lsec__ticket_parse(ticket, strnlen(ticket, LSEC_TICKET_MAX),
                              LSEC_ADDR_ALLOW_127_8, t);
}

int lsec_ticket_redact(const char *ticket, char *buf, size_t len)
{
    lsec__ticket t;
    int rc;

    lsec__clear_detail();
    if (ticket == NULL || buf == NULL || len == 0)
        return lsec__fail(LSEC_EINVAL, "no ticket or buffer");
    buf[0] = '\0';
    rc = parse_public(ticket, &t);
    if (rc == 0)
        rc = lsec__ticket_format_redacted(&t, buf, len);
    lsec__ticket_wipe(&t);
    return rc;
}

int lsec_ticket_psk(const char *ticket, char *hex, size_t hexlen,
                    char *identity, size_t idlen)
{
    lsec__ticket t;
    uint8_t psk[LSEC__KEY_BYTES];
    int rc;

    lsec__clear_detail();
    if (ticket == NULL || hex == NULL || identity == NULL || hexlen == 0 ||
        idlen == 0)
        return lsec__fail(LSEC_EINVAL, "no ticket or buffer");
    hex[0] = '\0';
    identity[0] = '\0';
    rc = parse_public(ticket, &t);
    if (rc != 0)
        return rc;
    if (t.mode != LSEC_MODE_TLS) {
        rc = lsec__fail(LSEC_EMODE, "an auth-mode ticket has no TLS PSK");
    } else if (hexlen < PSK_HEX_CHARS + 1) {
        rc = lsec__fail(LSEC_EMSGSIZE, "PSK buffer must hold %d bytes",
                        PSK_HEX_CHARS + 1);
    } else if ((rc = lsec__ticket_psk_identity(&t, identity, idlen)) == 0) {
        lsec__tls_psk(psk, t.secret);
        rc = lsec__hex_encode(hex, hexlen, psk, sizeof(psk));
        sodium_memzero(psk, sizeof(psk));
    }
    if (rc != 0)
        identity[0] = '\0';
    lsec__ticket_wipe(&t);
    return rc;
}

int lsec__ticket_line(const lsec__ticket *t, char buf[LSEC_TICKET_MAX + 1],
                      size_t *len)
{
    int rc = lsec__ticket_format(t, buf, LSEC_TICKET_MAX);

    if (rc != 0)
        return rc;
    *len = strlen(buf);
    buf[(*len)++] = '\n';
    return 0;
}
