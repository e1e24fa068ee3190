/*
 * fuzz_ticket: the ticket parser (lib/ticket.c) and the public functions
 * built on it.
 *
 * Properties, on arbitrary bytes:
 *   - parse never crashes; a refusal is LSEC_EBADTICKET or
 *     LSEC_ENOTLOOPBACK, leaves the result all zero, and its detail is
 *     printable and never quotes what follows "secret=";
 *   - what parses has one spelling: formatting it gives back exactly the
 *     input, and parsing that gives the same ticket;
 *   - the redacted form hides the secret in every encoding (raw, base64url,
 *     hex), and the public lsec_ticket_redact / lsec_ticket_psk agree with
 *     the internal functions.
 * And from structured input: format then parse is the identity (except
 * for an all-zero secret, EBADTICKET, and 127.0.0.0 / 127.255.255.255,
 * ENOTLOOPBACK).
 */
#include "fuzz_common.h"
#include "internal.h"

#include <arpa/inet.h>
#include <sodium.h>
#include <sys/socket.h>

/* Field by field: struct padding is not part of a ticket's value. */
static int ticket_eq(const lsec__ticket *a, const lsec__ticket *b)
{
    return a->addr.family == b->addr.family &&
           memcmp(a->addr.ip, b->addr.ip, sizeof(a->addr.ip)) == 0 &&
           a->addr.port == b->addr.port && a->mode == b->mode &&
           memcmp(a->id, b->id, sizeof(a->id)) == 0 &&
           memcmp(a->secret, b->secret, sizeof(a->secret)) == 0;
}

/* The ticket text with `secret_text` in place of the secret, built here
 * independently of ticket.c. */
static void expected_text(const lsec__ticket *t, const char *secret_text,
                          char *buf, size_t len)
{
    char addr[LSEC_ADDR_MAX], id[2 * LSEC__ID_BYTES + 1];

    FUZZ_ASSERT(lsec__addr_format(&t->addr, addr, sizeof(addr)) == 0);
    for (size_t i = 0; i < LSEC__ID_BYTES; i++)
        snprintf(id + 2 * i, 3, "%02x", t->id[i]);
    snprintf(buf, len, "loopsec://%s/?mode=%s&id=%s&secret=%s", addr,
             t->mode == LSEC_MODE_TLS ? "tls" : "auth", id, secret_text);
}

static void check_parsed(const uint8_t *data, size_t size, unsigned flags,
                         const lsec__ticket *t)
{
    char text[LSEC_TICKET_MAX], red[LSEC_TICKET_MAX], pub[LSEC_TICKET_MAX];
    char hex[80], ident[LSEC__PSK_IDENTITY_MAX], ident2[LSEC__PSK_IDENTITY_MAX];
    char want[LSEC_TICKET_MAX];
    lsec__ticket back;
    int rc;

    FUZZ_ASSERT(lsec__addr_is_loopback(&t->addr, flags));
    FUZZ_ASSERT(t->addr.port != 0);
    FUZZ_ASSERT(t->mode == LSEC_MODE_AUTH || t->mode == LSEC_MODE_TLS);

    /* One spelling. */
    FUZZ_ASSERT(lsec__ticket_format(t, text, sizeof(text)) == 0);
    FUZZ_ASSERT(strlen(text) == size && memcmp(text, data, size) == 0);
    FUZZ_ASSERT(lsec__ticket_parse(text, strlen(text), flags, &back) == 0);
    FUZZ_ASSERT(ticket_eq(&back, t));

    /* Redacted: exactly the ticket with "REDACTED" for the secret; the
     * public twin agrees. */
    FUZZ_ASSERT(lsec__ticket_format_redacted(t, red, sizeof(red)) == 0);
    expected_text(t, "REDACTED", want, sizeof(want));
    FUZZ_ASSERT(strcmp(red, want) == 0);
    FUZZ_ASSERT(lsec_ticket_redact(text, pub, sizeof(pub)) == 0);
    FUZZ_ASSERT(strcmp(pub, red) == 0);
    /* Too small a buffer: refused, and no part of the secret left behind
     * (a truncated text would end in a prefix of it). */
    memset(pub, 'x', sizeof(pub));
    rc = lsec__ticket_format(t, pub, strlen(text));
    FUZZ_ASSERT(rc == LSEC_EMSGSIZE);
    {
        const char *tail = memmem(pub, strlen(text), "&secret=", 8);
        FUZZ_ASSERT(tail == NULL || tail[8] == '\0');
    }

    /* The PSK only for tls tickets, and equal to the documented KDF. */
    rc = lsec_ticket_psk(text, hex, sizeof(hex), ident, sizeof(ident));
    if (t->mode == LSEC_MODE_TLS) {
        uint8_t psk[LSEC__KEY_BYTES];
        char psk_hex[80];
        FUZZ_ASSERT(rc == 0);
        lsec__tls_psk(psk, t->secret);
        FUZZ_ASSERT(
            lsec__hex_encode(psk_hex, sizeof(psk_hex), psk, sizeof(psk)) == 0);
        FUZZ_ASSERT(strcmp(psk_hex, hex) == 0);
        FUZZ_ASSERT(lsec__ticket_psk_identity(t, ident2, sizeof(ident2)) == 0);
        FUZZ_ASSERT(strcmp(ident, ident2) == 0);
        expected_text(t, "", want, sizeof(want));
        FUZZ_ASSERT(strlen(ident) == 10 + 16 &&
                    strncmp(ident, "loopsec/1 ", 10) == 0 &&
                    strstr(want, ident + 10) != NULL);
    } else {
        FUZZ_ASSERT(rc == LSEC_EMODE);
        FUZZ_ASSERT(hex[0] == '\0' && ident[0] == '\0');
    }
}

static int looks_like_key(const uint8_t *p, size_t n)
{
    int lower = 0, upper = 0, digit = 0;

    for (size_t i = 0; i < n; i++) {
        lower |= p[i] >= 'a' && p[i] <= 'z';
        upper |= p[i] >= 'A' && p[i] <= 'Z';
        digit |= p[i] >= '0' && p[i] <= '9';
        if (!(p[i] >= 'a' && p[i] <= 'z') && !(p[i] >= 'A' && p[i] <= 'Z') &&
            !(p[i] >= '0' && p[i] <= '9') && p[i] != '-' && p[i] != '_')
            return 0;
    }
    return lower && upper && digit;
}

static void check_refused(const uint8_t *data, size_t size, int rc,
                          const lsec__ticket *t)
{
    const char *detail = lsec_last_detail();
    const uint8_t *sec;
    size_t at = 0;

    FUZZ_ASSERT(rc == LSEC_EBADTICKET || rc == LSEC_ENOTLOOPBACK);
    FUZZ_ASSERT(fz_all_zero(t, sizeof(*t)));
    FUZZ_ASSERT(detail[0] != '\0');
    FUZZ_ASSERT(fz_printable(detail));
    /* Whatever follows "secret=" is treated as secret: the detail must not
     * quote 12 bytes of it.  To keep the detail's own fixed words from
     * counting (the fuzzer will happily write "contains a NUL" after
     * "secret="), only windows that look like key material are checked:
     * base64url characters only, with lower case, upper case and digits
     * all present (no fixed English detail text is like that); and not
     * those that also occur earlier in the input, which the detail may
     * legitimately quote (an address). */
    while (at + 7 <= size && memcmp(data + at, "secret=", 7) != 0)
        at++;
    if (at + 7 + 12 <= size) {
        sec = data + at + 7;
        for (size_t off = 0; off + 12 <= size - (at + 7); off++) {
            if (!looks_like_key(sec + off, 12) ||
                fz_contains(data, at, sec + off, 12))
                continue;
            FUZZ_ASSERT(!fz_contains(detail, strlen(detail), sec + off, 12));
        }
    }
}

/* Structured direction: any ticket value formats and parses back. */
static void check_roundtrip(fz *f)
{
    lsec__ticket t, back;
    char text[LSEC_TICKET_MAX];
    const uint8_t *p;
    uint8_t sel = fz_u8(f);
    size_t k;
    int rc;

    memset(&t, 0, sizeof(t));
    t.mode = sel & 1 ? LSEC_MODE_TLS : LSEC_MODE_AUTH;
    if (sel & 2) {
        t.addr.family = AF_INET6;
        t.addr.ip[15] = 1;
    } else {
        t.addr.family = AF_INET;
        t.addr.ip[0] = 127;
        t.addr.ip[1] = sel & 4 ? fz_u8(f) : 0;
        t.addr.ip[2] = sel & 4 ? fz_u8(f) : 0;
        t.addr.ip[3] = sel & 4 ? fz_u8(f) : 1;
    }
    t.addr.port = fz_u16(f);
    if (t.addr.port == 0)
        t.addr.port = 1;
    k = fz_take(f, sizeof(t.id), &p);
    memcpy(t.id, p, k);
    k = fz_take(f, sizeof(t.secret), &p);
    memcpy(t.secret, p, k);
    FUZZ_ASSERT(lsec__ticket_format(&t, text, sizeof(text)) == 0);
    rc = lsec__ticket_parse(text, strlen(text), LSEC_ADDR_ALLOW_127_8, &back);
    if (t.addr.family == AF_INET && t.addr.ip[1] == t.addr.ip[2] &&
        t.addr.ip[2] == t.addr.ip[3] &&
        (t.addr.ip[3] == 0 || t.addr.ip[3] == 255)) {
        /* 127/8's network and broadcast addresses: never loopback. */
        FUZZ_ASSERT(rc == LSEC_ENOTLOOPBACK);
    } else if (sodium_is_zero(t.secret, sizeof(t.secret))) {
        /* 32 zero bytes are no secret. */
        FUZZ_ASSERT(rc == LSEC_EBADTICKET);
    } else {
        FUZZ_ASSERT(rc == 0);
        FUZZ_ASSERT(ticket_eq(&back, &t));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned flag_sets[2] = {0, LSEC_ADDR_ALLOW_127_8};
    lsec__ticket t;
    int rc;

    if (lsec__init() != 0)
        abort();
    for (int i = 0; i < 2; i++) {
        /* The parser takes (text, len): embedded NULs must be refused, and
         * it must not read past len (ASan sees the exact-size input). */
        rc = lsec__ticket_parse((const char *)data, size, flag_sets[i], &t);
        if (rc == 0)
            check_parsed(data, size, flag_sets[i], &t);
        else
            check_refused(data, size, rc, &t);
        lsec__ticket_wipe(&t);
    }
    {
        fz f = fz_init(data, size);
        check_roundtrip(&f);
    }
    return 0;
}
