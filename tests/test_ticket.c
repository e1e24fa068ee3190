/*
 * lib/ticket.c: the strict ticket grammar, formatting, redaction and the
 * public lsec_ticket_redact / lsec_ticket_psk.  Every refused input is in one
 * table with its exact code; no detail may quote the ticket or its secret.
 */
/* cmocka.h needs these first. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include "internal.h"

#include <stdio.h>
#include <string.h>

/* The secret 00 01 .. 1f and its one canonical spelling. */
#define SECRET "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
#define ID "0011223344556677"
#define TAIL "/?mode=auth&id=" ID "&secret=" SECRET
#define GOOD "loopsec://127.0.0.1:62893" TAIL

#define BT LSEC_EBADTICKET
#define NL LSEC_ENOTLOOPBACK

static const struct {
    const char *text;
    int code;
    const char *why; /* a word the detail must contain */
} refused[] = {
    {"", BT, "loopsec://"},
    {"loopsec:/", BT, "loopsec://"},
    {"LOOPSEC://127.0.0.1:62893" TAIL, BT, "loopsec://"},
    {"http://127.0.0.1:62893" TAIL, BT, "loopsec://"},
    {" loopsec://127.0.0.1:62893" TAIL, BT, "loopsec://"},
    /* HOST:PORT: normal form only. */
    {"loopsec://localhost:62893" TAIL, BT, "HOST:PORT"},
    /* PROTOCOL.md's grammar: every spelling outside it is EBADTICKET, only
     * a well-formed address that is not loopback is ENOTLOOPBACK. */
    {"loopsec://127.0.0.01:62893" TAIL, BT, "HOST:PORT"},
    {"loopsec://127.0.0.256:62893" TAIL, BT, "HOST:PORT"},
    {"loopsec://127.1:62893" TAIL, BT, "HOST:PORT"},
    {"loopsec://[::ffff:127.0.0.1]:62893" TAIL, BT, "HOST:PORT"},
    {"loopsec://[0:0:0:0:0:0:0:1]:62893" TAIL, BT, "HOST:PORT"},
    {"loopsec://[::2]:62893" TAIL, BT, "HOST:PORT"},
    {"loopsec://[::1]:062893" TAIL, BT, "HOST:PORT"},
    {"loopsec://127.0.0.1:99999" TAIL, BT, "HOST:PORT"},
    {"loopsec://127.0.0.1:655350" TAIL, BT, "HOST:PORT"},
    {"loopsec://127.0.0.2:62893" TAIL, NL, ""},
    {"loopsec://127.0.0.0:62893" TAIL, NL, ""},
    {"loopsec://127.255.255.255:62893" TAIL, NL, ""},
    {"loopsec://0.0.0.0:62893" TAIL, NL, ""},
    {"loopsec://127.0.0.1" TAIL, BT, "HOST:PORT"},
    {"loopsec://127.0.0.1:" TAIL, BT, "HOST:PORT"},
    {"loopsec://:62893" TAIL, BT, "HOST:PORT"},
    {"loopsec://" TAIL, BT, "HOST:PORT"},
    {"loopsec://127.0.0.1:0" TAIL, BT, "port 0"},
    {"loopsec://127.0.0.1:062893" TAIL, BT, "HOST:PORT"},
    {"loopsec://127.0.0.1:65536" TAIL, BT, "HOST:PORT"},
    {"loopsec://127.0.0.1:+80" TAIL, BT, "HOST:PORT"},
    {"loopsec://::1:62893" TAIL, BT, "HOST:PORT"},
    {"loopsec://user@127.0.0.1:62893" TAIL, BT, "HOST:PORT"},
    {"loopsec://127.0.0.1:62893", BT, "'/'"},
    /* A mangled ticket whose secret comes before the first '/' is never
     * quoted in the detail. */
    {"loopsec://127.0.0.1:62893?mode=auth&id=" ID "&secret=" SECRET "/", BT,
     "too long"},
    {"loopsec://" SECRET "/", BT, "HOST:PORT"},
    {"loopsec://AAECAwQFBgcICQoLDA0O/" TAIL, BT, "HOST:PORT"},
    {"loopsec://AAECAwQF:1/" TAIL, BT, "[::1]:PORT"},
    {"loopsec://127.0.0.1:62893?mode=auth&id=" ID "&secret=" SECRET, BT, "'/'"},
    /* Not loopback: the address's own code. */
    {"loopsec://10.0.0.1:62893" TAIL, NL, ""},
    {"loopsec://example.com:62893" TAIL, BT, "HOST:PORT"},
    /* The query, in its one order. */
    {"loopsec://127.0.0.1:62893//?mode=auth&id=" ID "&secret=" SECRET, BT,
     "/?mode="},
    {"loopsec://127.0.0.1:62893/mode=auth&id=" ID "&secret=" SECRET, BT,
     "/?mode="},
    {"loopsec://127.0.0.1:62893/?id=" ID "&mode=auth&secret=" SECRET, BT,
     "/?mode="},
    {"loopsec://127.0.0.1:62893/?mode=AUTH&id=" ID "&secret=" SECRET, BT,
     "mode"},
    {"loopsec://127.0.0.1:62893/?mode=&id=" ID "&secret=" SECRET, BT, "mode"},
    {"loopsec://127.0.0.1:62893/?mode=plain&id=" ID "&secret=" SECRET, BT,
     "mode"},
    {"loopsec://127.0.0.1:62893/?mode=auths&id=" ID "&secret=" SECRET, BT,
     "&id="},
    {"loopsec://127.0.0.1:62893/?mode=tls1.3&id=" ID "&secret=" SECRET, BT,
     "&id="},
    {"loopsec://127.0.0.1:62893/?mode=auth&secret=" SECRET "&id=" ID, BT,
     "&id="},
    {"loopsec://127.0.0.1:62893/?mode=auth&x=1&id=" ID "&secret=" SECRET, BT,
     "&id="},
    {"loopsec://127.0.0.1:62893/?mode=auth&amp;id=" ID "&secret=" SECRET, BT,
     "&id="},
    /* The id: 16 lowercase hex digits. */
    {"loopsec://127.0.0.1:62893/?mode=auth&id=001122334455667&secret=" SECRET,
     BT, "id"},
    {"loopsec://127.0.0.1:62893/?mode=auth&id=00112233445566778&secret=" SECRET,
     BT, "&secret="},
    {"loopsec://127.0.0.1:62893/?mode=auth&id=00112233445566AA&secret=" SECRET,
     BT, "lowercase"},
    {"loopsec://127.0.0.1:62893/?mode=auth&id=001122334455667g&secret=" SECRET,
     BT, "lowercase"},
    {"loopsec://127.0.0.1:62893/?mode=auth&id=&secret=" SECRET, BT, "id"},
    {"loopsec://127.0.0.1:62893/?mode=auth&id=" ID, BT, "id"},
    {"loopsec://127.0.0.1:62893/?mode=auth&id=" ID "&x=1&secret=" SECRET, BT,
     "&secret="},
    /* The secret: 43 canonical base64url characters, then the end. */
    {"loopsec://127.0.0.1:62893/?mode=auth&id=" ID "&secret=", BT, "43"},
    {"loopsec://127.0.0.1:62893/?mode=auth&id=" ID "&secret", BT, "&secret="},
    {GOOD "A", BT, "43"},
    {GOOD "=", BT, "43"},
    {GOOD "\n", BT, "43"},
    {GOOD " ", BT, "43"},
    {GOOD "#", BT, "43"},
    {GOOD "&x=1", BT, "43"},
    {"loopsec://127.0.0.1:62893/?mode=auth&id=" ID
     "&secret=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh",
     BT, "43"},
    {"loopsec://127.0.0.1:62893/?mode=auth&id=" ID
     "&secret=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9",
     BT, "canonical"}, /* spare bits set: "Hh8" is the one spelling */
    {"loopsec://127.0.0.1:62893/?mode=auth&id=" ID
     "&secret=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh/",
     BT, "base64url"},
    {"loopsec://127.0.0.1:62893/?mode=auth&id=" ID
     "&secret=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd+h8",
     BT, "base64url"},
    {"loopsec://127.0.0.1:62893/?mode=auth&id=" ID
     "&secret=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxw%3Dh8",
     BT, "43"},
    {"loopsec://127.0.0.1:62893/?mode=auth&id=" ID
     "&secret=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh=",
     BT, "base64url"},
    {"loopsec://127.0.0.1:62893/?mode=auth&id=" ID
     "&secret=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGx dHh8",
     BT, "base64url"},
    {"loopsec://127.0.0.1:62893/?mode=auth&id=" ID "&secret=REDACTED", BT,
     "43"},
    /* 32 zero bytes are no secret. */
    {"loopsec://127.0.0.1:62893/?mode=auth&id=" ID
     "&secret=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
     BT, "all zero"},
};

static bool all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return false;
    return true;
}

/* No detail ever quotes the ticket or any part of its secret. */
static void assert_detail_clean(void)
{
    const char *d = lsec_last_detail();
    assert_null(strstr(d, "mode=auth&"));
    assert_null(strstr(d, "AAECAwQF"));
    assert_null(strstr(d, "GxwdH"));
    assert_null(strstr(d, "REDACTED"));
}

static void refuses_with_exact_codes(void **state)
{
    lsec__ticket t;

    (void)state;
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        const char *text = refused[i].text;
        int rc;

        memset(&t, 0xAA, sizeof(t));
        rc = lsec__ticket_parse(text, strlen(text), 0, &t);
        if (rc != refused[i].code)
            fail_msg("\"%s\": got %s, want %s", text, lsec_errname(rc),
                     lsec_errname(refused[i].code));
        /* *out is wiped on failure: no partial secret survives. */
        assert_true(all_zero(&t, sizeof(t)));
        if (strstr(lsec_last_detail(), refused[i].why) == NULL)
            fail_msg("\"%s\": detail \"%s\" lacks \"%s\"", text,
                     lsec_last_detail(), refused[i].why);
        assert_detail_clean();
    }
}

static void accepts_and_round_trips(void **state)
{
    static const char *good[] = {
        GOOD,
        "loopsec://[::1]:62893/?mode=tls&id=" ID "&secret=" SECRET,
        "loopsec://127.0.0.1:1/?mode=auth&id=ffffffffffffffff&secret=" SECRET,
        "loopsec://127.0.0.1:65535/?mode=tls&id=0000000000000000&secret="
        "__________________________________________8",
    };
    char buf[LSEC_TICKET_MAX];
    lsec__ticket t;

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(lsec__ticket_parse(good[i], strlen(good[i]), 0, &t),
                         0);
        assert_int_equal(lsec__ticket_format(&t, buf, sizeof(buf)), 0);
        assert_string_equal(buf, good[i]);
    }
    assert_int_equal(lsec__ticket_parse(GOOD, strlen(GOOD), 0, &t), 0);
    assert_int_equal(t.mode, LSEC_MODE_AUTH);
    assert_int_equal(t.addr.port, 62893);
    for (int i = 0; i < 32; i++)
        assert_int_equal(t.secret[i], i);
    assert_memory_equal(t.id, "\x00\x11\x22\x33\x44\x55\x66\x77", 8);
    lsec__ticket_wipe(&t);
    assert_true(all_zero(&t, sizeof(t)));
}

static void random_round_trips(void **state)
{
    char buf[LSEC_TICKET_MAX];
    lsec__ticket t, back;

    (void)state;
    for (int i = 0; i < 500; i++) {
        uint16_t port;
        memset(&t, 0, sizeof(t));
        assert_int_equal(
            lsec__addr_parse(i % 2 ? "[::1]:1" : "127.0.0.1:1", 0, &t.addr), 0);
        lsec__random(&port, sizeof(port));
        t.addr.port = port == 0 ? 1 : port;
        t.mode = i % 3 ? LSEC_MODE_AUTH : LSEC_MODE_TLS;
        lsec__random(t.id, sizeof(t.id));
        lsec__random(t.secret, sizeof(t.secret));
        assert_int_equal(lsec__ticket_format(&t, buf, sizeof(buf)), 0);
        assert_true(strlen(buf) < LSEC_TICKET_MAX);
        assert_int_equal(lsec__ticket_parse(buf, strlen(buf), 0, &back), 0);
        assert_memory_equal(&t, &back, sizeof(t));
    }
}

static void length_and_nul(void **state)
{
    char big[LSEC_TICKET_MAX + 8];
    lsec__ticket t;

    (void)state;
    /* A NUL inside the counted text. */
    memcpy(big, GOOD, sizeof(GOOD));
    assert_int_equal(lsec__ticket_parse(big, sizeof(GOOD), 0, &t), BT);
    big[20] = '\0';
    assert_int_equal(lsec__ticket_parse(big, strlen(GOOD), 0, &t), BT);
    /* Too long, whatever it holds: checked before anything else. */
    memset(big, 'A', sizeof(big));
    memcpy(big, GOOD, strlen(GOOD));
    assert_int_equal(lsec__ticket_parse(big, LSEC_TICKET_MAX, 0, &t), BT);
    assert_non_null(strstr(lsec_last_detail(), "longer"));
    assert_int_equal(lsec__ticket_parse(big, LSEC_TICKET_MAX - 1, 0, &t), BT);
    /* Only the first len bytes count. */
    assert_int_equal(lsec__ticket_parse(big, strlen(GOOD), 0, &t), 0);
    assert_int_equal(lsec__ticket_parse(NULL, 0, 0, &t), LSEC_EINVAL);
    assert_int_equal(lsec__ticket_parse(GOOD, strlen(GOOD), 0, NULL),
                     LSEC_EINVAL);
}

static void addr_127_8_needs_opt_in(void **state)
{
    const char *text = "loopsec://127.1.2.3:80" TAIL;
    char buf[LSEC_TICKET_MAX];
    lsec__ticket t;

    (void)state;
    assert_int_equal(lsec__ticket_parse(text, strlen(text), 0, &t), NL);
    assert_int_equal(
        lsec__ticket_parse(text, strlen(text), LSEC_ADDR_ALLOW_127_8, &t), 0);
    assert_int_equal(lsec__ticket_format(&t, buf, sizeof(buf)), 0);
    assert_string_equal(buf, text);
    /* The public helpers only look at a ticket: they accept it. */
    assert_int_equal(lsec_ticket_redact(text, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "loopsec://127.1.2.3:80/?mode=auth&id=" ID
                             "&secret=REDACTED");
    /* Canonical spelling still required: outside the grammar. */
    text = "loopsec://127.001.2.3:80" TAIL;
    assert_int_equal(
        lsec__ticket_parse(text, strlen(text), LSEC_ADDR_ALLOW_127_8, &t), BT);
    /* The network and broadcast addresses of 127/8 never. */
    text = "loopsec://127.0.0.0:80" TAIL;
    assert_int_equal(
        lsec__ticket_parse(text, strlen(text), LSEC_ADDR_ALLOW_127_8, &t), NL);
    text = "loopsec://127.255.255.255:80" TAIL;
    assert_int_equal(
        lsec__ticket_parse(text, strlen(text), LSEC_ADDR_ALLOW_127_8, &t), NL);
}

static void format_sizes(void **state)
{
    char buf[LSEC_TICKET_MAX];
    lsec__ticket t;
    size_t n = strlen(GOOD);

    (void)state;
    assert_int_equal(lsec__ticket_parse(GOOD, n, 0, &t), 0);
    assert_int_equal(lsec__ticket_format(&t, buf, n + 1), 0);
    /* One byte short: nothing of the secret is left in the buffer. */
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(lsec__ticket_format(&t, buf, n), LSEC_EMSGSIZE);
    assert_true(all_zero(buf, n));
    assert_int_equal(lsec__ticket_format_redacted(&t, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "loopsec://127.0.0.1:62893/?mode=auth&id=" ID
                             "&secret=REDACTED");
    assert_int_equal(lsec__ticket_format_redacted(&t, buf, strlen(buf)),
                     LSEC_EMSGSIZE);
    assert_int_equal(lsec__ticket_format(&t, NULL, 10), LSEC_EINVAL);
    assert_int_equal(lsec__ticket_format(NULL, buf, 10), LSEC_EINVAL);
    t.mode = 7;
    assert_int_equal(lsec__ticket_format(&t, buf, sizeof(buf)), LSEC_EINVAL);
    lsec__ticket_wipe(&t);
}

static void psk_identity(void **state)
{
    char buf[LSEC__PSK_IDENTITY_MAX];
    lsec__ticket t;

    (void)state;
    assert_int_equal(lsec__ticket_parse(GOOD, strlen(GOOD), 0, &t), 0);
    assert_int_equal(lsec__ticket_psk_identity(&t, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "loopsec/1 " ID);
    assert_int_equal(lsec__ticket_psk_identity(&t, buf, 27), 0);
    assert_int_equal(lsec__ticket_psk_identity(&t, buf, 26), LSEC_EMSGSIZE);
    assert_string_equal(buf, "");
    lsec__ticket_wipe(&t);
}

static void public_redact(void **state)
{
    char buf[LSEC_TICKET_MAX];

    (void)state;
    assert_int_equal(lsec_ticket_redact(GOOD, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "loopsec://127.0.0.1:62893/?mode=auth&id=" ID
                             "&secret=REDACTED");
    assert_string_equal(lsec_last_detail(), "");
    /* Refused input leaves an empty string, never a partial copy. */
    strcpy(buf, "junk");
    assert_int_equal(lsec_ticket_redact(GOOD "\n", buf, sizeof(buf)), BT);
    assert_string_equal(buf, "");
    assert_detail_clean();
    assert_int_equal(
        lsec_ticket_redact("loopsec://10.0.0.1:1" TAIL, buf, sizeof(buf)), NL);
    assert_int_equal(lsec_ticket_redact(GOOD, buf, 20), LSEC_EMSGSIZE);
    assert_int_equal(lsec_ticket_redact(NULL, buf, sizeof(buf)), LSEC_EINVAL);
    assert_int_equal(lsec_ticket_redact(GOOD, NULL, 10), LSEC_EINVAL);
    assert_int_equal(lsec_ticket_redact(GOOD, buf, 0), LSEC_EINVAL);
}

static void public_psk(void **state)
{
#define TLS_TICKET "loopsec://[::1]:62893/?mode=tls&id=" ID "&secret=" SECRET
    const char *tls = TLS_TICKET;
    char hex[65], want[65], ident[64];
    uint8_t secret[32], psk[32];

    (void)state;
    for (int i = 0; i < 32; i++)
        secret[i] = (uint8_t)i;
    lsec__tls_psk(psk, secret);
    assert_int_equal(lsec__hex_encode(want, sizeof(want), psk, 32), 0);

    assert_int_equal(
        lsec_ticket_psk(tls, hex, sizeof(hex), ident, sizeof(ident)), 0);
    assert_string_equal(hex, want);
    assert_string_equal(ident, "loopsec/1 " ID);
    /* The PSK is not the secret, nor its plain hex. */
    assert_null(strstr(hex, "000102030405"));

    /* An auth ticket has no PSK. */
    strcpy(hex, "x");
    strcpy(ident, "x");
    assert_int_equal(
        lsec_ticket_psk(GOOD, hex, sizeof(hex), ident, sizeof(ident)),
        LSEC_EMODE);
    assert_string_equal(hex, "");
    assert_string_equal(ident, "");
    assert_int_equal(lsec_ticket_psk(tls, hex, 64, ident, sizeof(ident)),
                     LSEC_EMSGSIZE);
    assert_int_equal(lsec_ticket_psk(tls, hex, sizeof(hex), ident, 26),
                     LSEC_EMSGSIZE);
    assert_string_equal(ident, "");
    assert_string_equal(hex, "");
    assert_int_equal(
        lsec_ticket_psk(TLS_TICKET "x", hex, sizeof(hex), ident, sizeof(ident)),
        BT);
    assert_detail_clean();
    assert_int_equal(
        lsec_ticket_psk(NULL, hex, sizeof(hex), ident, sizeof(ident)),
        LSEC_EINVAL);
    assert_int_equal(lsec_ticket_psk(tls, NULL, 65, ident, sizeof(ident)),
                     LSEC_EINVAL);
    assert_int_equal(lsec_ticket_psk(tls, hex, sizeof(hex), NULL, 64),
                     LSEC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(refuses_with_exact_codes),
        cmocka_unit_test(accepts_and_round_trips),
        cmocka_unit_test(random_round_trips),
        cmocka_unit_test(length_and_nul),
        cmocka_unit_test(addr_127_8_needs_opt_in),
        cmocka_unit_test(format_sizes),
        cmocka_unit_test(psk_identity),
        cmocka_unit_test(public_redact),
        cmocka_unit_test(public_psk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
