/*
 * lib/addr.c: the strict address validator.  Every refused input is in one
 * table with the exact code it must get; every accepted one with its normal
 * form.
 */
/* cmocka.h needs these first. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include "internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

struct refused {
    const char *text;
    int code;
    const char *why; /* a word the detail must contain */
};

#define NL LSEC_ENOTLOOPBACK
#define IV LSEC_EINVAL

static const struct refused refused[] = {
    /* Lenient IPv4 spellings that inet_aton would take. */
    {"127.1:80", NL, "canonical"},
    {"127.0.1:80", NL, "canonical"},
    {"0177.0.0.1:80", NL, "canonical"},
    {"0x7f.0.0.1:80", NL, "canonical"},
    {"0X7F.0.0.1:80", NL, "canonical"},
    {"0x7f000001:80", NL, "canonical"},
    {"2130706433:80", NL, "canonical"},
    {"017700000001:80", NL, "canonical"},
    {"127.000.000.001:80", NL, "canonical"},
    {"127.0.0.01:80", NL, "canonical"},
    {"127.0.0.1.:80", NL, "canonical"},
    {"127.0.0.1.1:80", NL, "canonical"},
    {"127.0.0.256:80", NL, "canonical"},
    {"127..0.1:80", NL, "canonical"},
    /* Trailing junk and whitespace. */
    {"127.0.0.1:80x", IV, "decimal"},
    {"127.0.0.1x:80", NL, "resolved"},
    {"127.0.0.1:80/", IV, "decimal"},
    {"127.0.0.1 :80", IV, "space"},
    {" 127.0.0.1:80", IV, "space"},
    {"127.0.0.1:80 ", IV, "space"},
    {"127.0.0.1:80\n", IV, "control"},
    {"127.0.0.1:\t80", IV, "space"},
    {"127.0.0.1:80\x7f", IV, "control"},
    {"127.0.0.1:80\xc2\xa0", IV, "control"},
    /* Other addresses in 127/8 without the opt-in, and non-loopback. */
    {"127.0.0.2:80", NL, "127_8"},
    {"127.255.255.254:80", NL, "127_8"},
    {"127.0.0.0:80", NL, "127_8"},
    {"0.0.0.0:80", NL, "unspecified"},
    {"10.0.0.1:80", NL, "not a loopback"},
    {"192.168.1.1:80", NL, "not a loopback"},
    {"8.8.8.8:53", NL, "not a loopback"},
    {"255.255.255.255:80", NL, "not a loopback"},
    {"128.0.0.1:80", NL, "not a loopback"},
    /* IPv6: mapped, compatible, embedded, unspecified, link-local, zones. */
    {"[::ffff:127.0.0.1]:80", NL, "mapped"},
    {"[::ffff:7f00:1]:80", NL, "mapped"},
    {"[::FFFF:127.0.0.1]:80", NL, "mapped"},
    {"[0:0:0:0:0:ffff:7f00:1]:80", NL, "mapped"},
    {"[::127.0.0.1]:80", NL, "compatible"},
    {"[::7f00:1]:80", NL, "compatible"},
    {"[64:ff9b::127.0.0.1]:80", NL, "64:ff9b"},
    {"[64:ff9b::7f00:1]:80", NL, "64:ff9b"},
    {"[::]:80", NL, "unspecified"},
    {"[0:0:0:0:0:0:0:0]:80", NL, "unspecified"},
    {"[fe80::1]:80", NL, "link-local"},
    {"[fe80::1%eth0]:80", NL, "zone"},
    {"[fe80::1%lo]:80", NL, "zone"},
    {"[::1%lo]:80", NL, "zone"},
    {"[::1%1]:80", NL, "zone"},
    {"[2001:db8::1]:80", NL, "not the IPv6 loopback"},
    {"[::2]:80", NL, "compatible"},
    /* Non-canonical spellings of ::1. */
    {"[0:0:0:0:0:0:0:1]:80", NL, "non-canonical"},
    {"[::0001]:80", NL, "non-canonical"},
    {"[0::1]:80", NL, "non-canonical"},
    {"[::0:1]:80", NL, "non-canonical"},
    {"[0000:0000:0000:0000:0000:0000:0000:0001]:80", NL, "non-canonical"},
    {"[::0.0.0.1]:80", NL, "non-canonical"},
    /* Host names, including ones that resolve to loopback. */
    {"localhost.:80", NL, "never resolved"},
    {"LOCALHOST:80", NL, "never resolved"},
    {"Localhost:80", NL, "never resolved"},
    {"localhost.localdomain:80", NL, "never resolved"},
    {"localhost6:80", NL, "never resolved"},
    {"ip6-localhost:80", NL, "never resolved"},
    {"ip6-loopback:80", NL, "never resolved"},
    {"127.0.0.1.nip.io:80", NL, "never resolved"},
    {"example.com:80", NL, "never resolved"},
    {"loopback:80", NL, "never resolved"},
    {"[localhost]:80", NL, "never resolved"},
    {"[127.0.0.1]:80", NL, "only for IPv6"},
    {"[127.1]:80", NL, "not an IPv6"},
    /* Brackets. */
    {"::1:80", IV, "brackets"},
    {"::1", IV, "brackets"},
    {"::ffff:127.0.0.1:80", IV, "brackets"},
    {"[::1:80", IV, "closing"},
    {"[::1]80", IV, "after ]"},
    {"[::1]", IV, "after ]"},
    {"[::1]]:80", IV, "after ]"},
    {"::1]:80", IV, "unmatched"},
    {"127.0.0.1]:80", IV, "unmatched"},
    {"[]:80", IV, "empty host"},
    /* Ports. */
    {"127.0.0.1:-1", IV, "decimal"},
    {"127.0.0.1:65536", IV, "range"},
    {"127.0.0.1:99999", IV, "range"},
    {"127.0.0.1:100000", IV, "range"},
    {"127.0.0.1:4294967376", IV, "range"},
    {"127.0.0.1:080", IV, "leading zero"},
    {"127.0.0.1:00", IV, "leading zero"},
    {"127.0.0.1:+80", IV, "decimal"},
    {"127.0.0.1:0x50", IV, "decimal"},
    {"127.0.0.1:80:80", IV, "brackets"},
    {"127.0.0.1:", IV, "empty port"},
    {"127.0.0.1", IV, "no :PORT"},
    {"localhost", IV, "no :PORT"},
    {"localhost:", IV, "empty port"},
    {"localhost:65536", IV, "range"},
    {"[::1]:", IV, "empty port"},
    {"[::1]:65536", IV, "range"},
    {"[::1]:-0", IV, "decimal"},
    {":80", IV, "empty host"},
    {":", IV, "empty port"},
    {"", IV, "empty"},
    /* Port checked before host: both wrong is a syntax error. */
    {"0.0.0.0:99999", IV, "range"},
};

static void test_refused_table(void **state)
{
    (void)state;
    size_t n = sizeof(refused) / sizeof(refused[0]);
    assert_true(n >= 60);
    for (size_t i = 0; i < n; i++) {
        lsec__addr a;
        char norm[LSEC_ADDR_MAX] = "sentinel";
        int rc = lsec__addr_parse(refused[i].text, 0, &a);
        if (rc != refused[i].code ||
            strstr(lsec_last_detail(), refused[i].why) == NULL)
            print_error("input \"%s\": rc %s detail \"%s\", want %s with "
                        "\"%s\"\n",
                        refused[i].text, lsec_errname(rc), lsec_last_detail(),
                        lsec_errname(refused[i].code), refused[i].why);
        assert_int_equal(rc, refused[i].code);
        assert_non_null(strstr(lsec_last_detail(), refused[i].why));
        /* The out-parameter is zeroed on failure. */
        assert_int_equal(a.family, 0);
        assert_int_equal(a.port, 0);
        /* The public function agrees, clears its output, and keeps the
         * same detail. */
        rc = lsec_addr_check(refused[i].text, 0, norm, sizeof(norm));
        assert_int_equal(rc, refused[i].code);
        assert_string_equal(norm, "");
        assert_true(strlen(lsec_last_detail()) > 0);
    }
}

struct accepted {
    const char *text;
    unsigned flags;
    const char *norm;
    int family;
    unsigned port;
};

static const struct accepted accepted[] = {
    {"127.0.0.1:0", 0, "127.0.0.1:0", AF_INET, 0},
    {"127.0.0.1:1", 0, "127.0.0.1:1", AF_INET, 1},
    {"127.0.0.1:80", 0, "127.0.0.1:80", AF_INET, 80},
    {"127.0.0.1:62893", 0, "127.0.0.1:62893", AF_INET, 62893},
    {"127.0.0.1:65535", 0, "127.0.0.1:65535", AF_INET, 65535},
    {"[::1]:0", 0, "[::1]:0", AF_INET6, 0},
    {"[::1]:8080", 0, "[::1]:8080", AF_INET6, 8080},
    {"[::1]:65535", 0, "[::1]:65535", AF_INET6, 65535},
    {"localhost:0", 0, "127.0.0.1:0", AF_INET, 0},
    {"localhost:443", 0, "127.0.0.1:443", AF_INET, 443},
    {"127.0.0.2:80", LSEC_ADDR_ALLOW_127_8, "127.0.0.2:80", AF_INET, 80},
    {"127.1.2.3:9", LSEC_ADDR_ALLOW_127_8, "127.1.2.3:9", AF_INET, 9},
    {"127.255.255.254:1", LSEC_ADDR_ALLOW_127_8, "127.255.255.254:1", AF_INET,
     1},
    {"127.0.0.1:5", LSEC_ADDR_ALLOW_127_8, "127.0.0.1:5", AF_INET, 5},
    {"[::1]:5", LSEC_ADDR_ALLOW_127_8, "[::1]:5", AF_INET6, 5},
};

static void test_accepted_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
        const struct accepted *t = &accepted[i];
        lsec__addr a;
        char norm[LSEC_ADDR_MAX];
        int rc = lsec__addr_parse(t->text, t->flags, &a);
        if (rc != 0)
            print_error("input \"%s\": %s (%s)\n", t->text, lsec_errname(rc),
                        lsec_last_detail());
        assert_int_equal(rc, 0);
        assert_int_equal(a.family, t->family);
        assert_int_equal(a.port, t->port);
        assert_true(lsec__addr_is_loopback(&a, t->flags));
        assert_int_equal(lsec__addr_format(&a, norm, sizeof(norm)), 0);
        assert_string_equal(norm, t->norm);
        assert_int_equal(lsec_addr_check(t->text, t->flags, norm, sizeof(norm)),
                         0);
        assert_string_equal(norm, t->norm);
        assert_string_equal(lsec_last_detail(), "");
        /* The normal form is a fixed point. */
        assert_int_equal(lsec_addr_check(norm, t->flags, norm, sizeof(norm)),
                         0);
        assert_string_equal(norm, t->norm);
    }
}

static void test_opt_in_127_8(void **state)
{
    (void)state;
    lsec__addr a;
    /* Even with the opt-in, only canonical spellings and only 127/8. */
    assert_int_equal(lsec__addr_parse("127.0.0.2:1", 0, &a), LSEC_ENOTLOOPBACK);
    assert_int_equal(lsec__addr_parse("127.0.0.2:1", LSEC_ADDR_ALLOW_127_8, &a),
                     0);
    assert_int_equal(lsec__addr_parse("127.2:1", LSEC_ADDR_ALLOW_127_8, &a),
                     LSEC_ENOTLOOPBACK);
    assert_int_equal(
        lsec__addr_parse("127.000.0.2:1", LSEC_ADDR_ALLOW_127_8, &a),
        LSEC_ENOTLOOPBACK);
    assert_int_equal(lsec__addr_parse("128.0.0.1:1", LSEC_ADDR_ALLOW_127_8, &a),
                     LSEC_ENOTLOOPBACK);
    assert_int_equal(lsec__addr_parse("0.0.0.0:1", LSEC_ADDR_ALLOW_127_8, &a),
                     LSEC_ENOTLOOPBACK);
    assert_int_equal(
        lsec__addr_parse("[::ffff:127.0.0.2]:1", LSEC_ADDR_ALLOW_127_8, &a),
        LSEC_ENOTLOOPBACK);
    /* Other LSEC_OPT_* bits in the flags do not widen anything. */
    assert_int_equal(
        lsec__addr_parse("127.0.0.2:1", LSEC_OPT_PORT_FALLBACK, &a),
        LSEC_ENOTLOOPBACK);
}

/* The opt-in widens to 127/8 but never to its network and broadcast
 * addresses (127.255.255.255 binds, and can never be reached). */
static void test_127_8_network_broadcast_refused(void **state)
{
    static const char *never[] = {"127.0.0.0:80", "127.255.255.255:80"};
    struct sockaddr_in sin;
    lsec__addr a;

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(lsec__addr_parse(never[i], 0, &a), LSEC_ENOTLOOPBACK);
        assert_int_equal(lsec__addr_parse(never[i], LSEC_ADDR_ALLOW_127_8, &a),
                         LSEC_ENOTLOOPBACK);
        assert_non_null(strstr(lsec_last_detail(), "network or broadcast"));
        assert_int_equal(
            lsec_addr_check(never[i], LSEC_ADDR_ALLOW_127_8, NULL, 0),
            LSEC_ENOTLOOPBACK);
    }
    /* The binary check (kernel views, tickets) agrees. */
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(80);
    sin.sin_addr.s_addr = htonl(0x7f000000u);
    assert_int_equal(lsec__addr_from_sockaddr((struct sockaddr *)&sin,
                                              sizeof(sin),
                                              LSEC_ADDR_ALLOW_127_8, &a),
                     LSEC_ENOTLOOPBACK);
    sin.sin_addr.s_addr = htonl(0x7fffffffu);
    assert_int_equal(lsec__addr_from_sockaddr((struct sockaddr *)&sin,
                                              sizeof(sin),
                                              LSEC_ADDR_ALLOW_127_8, &a),
                     LSEC_ENOTLOOPBACK);
    sin.sin_addr.s_addr = htonl(0x7ffffffeu);
    assert_int_equal(lsec__addr_from_sockaddr((struct sockaddr *)&sin,
                                              sizeof(sin),
                                              LSEC_ADDR_ALLOW_127_8, &a),
                     0);
    /* The hint names the option as the API spells it; the CLI and
     * `python3 -m loopsec` put their flag in its place. */
    assert_int_equal(lsec__addr_parse("127.0.0.2:80", 0, &a),
                     LSEC_ENOTLOOPBACK);
    assert_non_null(strstr(lsec_last_detail(), "LSEC_ADDR_ALLOW_127_8"));
}

/* A URL is diagnosed as a URL, not as an unbracketed IPv6 address. */
static void test_url_diagnosed(void **state)
{
    static const char *urls[] = {"tcp://127.0.0.1:0", "http://127.0.0.1:80",
                                 "https://[::1]:443",
                                 "loopsec://127.0.0.1:1/?mode=auth"};
    lsec__addr a;

    (void)state;
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        assert_int_equal(lsec__addr_parse(urls[i], 0, &a), LSEC_EINVAL);
        if (strstr(lsec_last_detail(), "not a URL") == NULL)
            fail_msg("%s: detail \"%s\"", urls[i], lsec_last_detail());
        assert_null(strstr(lsec_last_detail(), "brackets"));
        /* Nothing of it is quoted (it could be a ticket). */
        assert_null(strstr(lsec_last_detail(), "://"));
        assert_null(strstr(lsec_last_detail(), urls[i] + 4));
    }
}

/* A secret pasted where an address belongs is never quoted back: no
 * detail holds 12 consecutive characters of it, whatever the refusal. */
static void assert_no_piece(const char *detail, const char *secret)
{
    size_t n = strlen(secret);

    for (size_t i = 0; i + 12 <= n; i++) {
        char piece[13];
        memcpy(piece, secret + i, 12);
        piece[12] = '\0';
        if (strstr(detail, piece) != NULL)
            fail_msg("detail \"%s\" quotes \"%s\" of the secret", detail,
                     piece);
    }
}

static void test_detail_never_quotes_secret(void **state)
{
    static const char *shapes[] = {
        "%s:0",         "%s",        "[%s]:0",
        "127.0.0.1:%s", "%s:%s",     "[::1]:%s",
        "[%s",          "%s]:0",     "[%s]",
        "%s:0:0",       "[%s%%1]:0", "localhost%s:0",
        "%s.%s:1",      "0x%s:1",    "[::1]%s:1",
        ":%s",          "[]:%s",     "127.0.0.1:0%s",
        "[%s]x:1",      "%s:",
    };
    uint8_t raw[LSEC_SECRET_BYTES];
    char secret[64], text[256];
    lsec_listener *l = NULL;
    lsec__addr a;

    (void)state;
    for (int round = 0; round < 50; round++) {
        lsec__random(raw, sizeof(raw));
        assert_int_equal(
            lsec__b64_encode(secret, sizeof(secret), raw, sizeof(raw)), 0);
        assert_int_equal(strlen(secret), 43);
        for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
            snprintf(text, sizeof(text), shapes[i], secret, secret);
#pragma GCC diagnostic pop
            for (unsigned f = 0; f < 2; f++) {
                unsigned flags = f ? LSEC_ADDR_ALLOW_127_8 : 0;
                int rc = lsec__addr_parse(text, flags, &a);
                if (rc == 0)
                    fail_msg("\"%s\" was accepted", text);
                assert_no_piece(lsec_last_detail(), secret);
                assert_int_not_equal(lsec_addr_check(text, flags, NULL, 0), 0);
                assert_no_piece(lsec_last_detail(), secret);
            }
            assert_int_not_equal(lsec_listen(text, NULL, &l), 0);
            assert_no_piece(lsec_last_detail(), secret);
        }
    }
}

static void test_misuse(void **state)
{
    (void)state;
    lsec__addr a;
    char norm[LSEC_ADDR_MAX];
    char longtext[300];

    assert_int_equal(lsec__addr_parse(NULL, 0, &a), LSEC_EINVAL);
    assert_int_equal(lsec__addr_parse("127.0.0.1:1", 0, NULL), LSEC_EINVAL);
    assert_int_equal(lsec_addr_check(NULL, 0, norm, sizeof(norm)), LSEC_EINVAL);
    /* NULL norm: only the check. */
    assert_int_equal(lsec_addr_check("127.0.0.1:1", 0, NULL, 0), 0);
    /* Unknown flag bits are misuse. */
    assert_int_equal(
        lsec_addr_check("127.0.0.1:1", 0x8000u, norm, sizeof(norm)),
        LSEC_EINVAL);
    assert_int_equal(lsec_addr_check("127.0.0.1:1", LSEC_OPT_PORT_FALLBACK,
                                     norm, sizeof(norm)),
                     LSEC_EINVAL);
    /* Too small a buffer for the normal form. */
    assert_int_equal(lsec_addr_check("127.0.0.1:65535", 0, norm, 15),
                     LSEC_EMSGSIZE);
    assert_string_equal(norm, "");
    assert_int_equal(lsec_addr_check("127.0.0.1:65535", 0, norm, 16), 0);
    assert_string_equal(norm, "127.0.0.1:65535");
    assert_int_equal(lsec_addr_check("[::1]:1", 0, norm, 0), LSEC_EMSGSIZE);

    /* Over-long input: refused, and the detail quotes only a bounded
     * prefix of it. */
    memset(longtext, '1', sizeof(longtext) - 1);
    longtext[sizeof(longtext) - 1] = '\0';
    memcpy(longtext, "127.0.0.1:", 10);
    assert_int_equal(lsec__addr_parse(longtext, 0, &a), LSEC_EINVAL);
    assert_non_null(strstr(lsec_last_detail(), "longer than"));
    assert_true(strlen(lsec_last_detail()) < 120);
    /* The longest acceptable length is LSEC_ADDR_MAX - 1. */
    memset(longtext, 0, sizeof(longtext));
    memcpy(longtext, "127.0.0.1:", 10);
    memset(longtext + 10, '1', LSEC_ADDR_MAX - 1 - 10);
    assert_int_equal(lsec__addr_parse(longtext, 0, &a), LSEC_EINVAL);
    assert_non_null(strstr(lsec_last_detail(), "range"));
    longtext[LSEC_ADDR_MAX - 1] = '1';
    assert_int_equal(lsec__addr_parse(longtext, 0, &a), LSEC_EINVAL);
    assert_non_null(strstr(lsec_last_detail(), "longer than"));
}

static void test_detail_quotes_text(void **state)
{
    (void)state;
    lsec__addr a;
    assert_int_equal(lsec__addr_parse("0177.0.0.1:80", 0, &a),
                     LSEC_ENOTLOOPBACK);
    assert_non_null(strstr(lsec_last_detail(), "0177.0.0.1"));
    assert_non_null(strstr(lsec_last_detail(), "write 127.0.0.1"));
    assert_int_equal(lsec__addr_parse("[::ffff:127.0.0.1]:80", 0, &a),
                     LSEC_ENOTLOOPBACK);
    assert_non_null(strstr(lsec_last_detail(), "IPv4-mapped IPv6 is refused"));
    assert_int_equal(lsec__addr_parse("localhost.:80", 0, &a),
                     LSEC_ENOTLOOPBACK);
    assert_non_null(
        strstr(lsec_last_detail(), "host names are never resolved"));
    /* Control characters are never echoed. */
    assert_int_equal(lsec__addr_parse("127.0.0.1:80\x1b[2J", 0, &a),
                     LSEC_EINVAL);
    assert_null(strchr(lsec_last_detail(), '\x1b'));
}

static void test_sockaddr_round_trip(void **state)
{
    (void)state;
    const char *texts[] = {"127.0.0.1:0", "127.0.0.1:65535", "[::1]:1",
                           "[::1]:40000"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        lsec__addr a, b;
        struct sockaddr_storage ss;
        unsigned len;
        assert_int_equal(lsec__addr_parse(texts[i], 0, &a), 0);
        len = lsec__addr_to_sockaddr(&a, &ss);
        assert_int_equal(len, a.family == AF_INET
                                  ? sizeof(struct sockaddr_in)
                                  : sizeof(struct sockaddr_in6));
        assert_int_equal(ss.ss_family, a.family);
        assert_int_equal(
            lsec__addr_from_sockaddr((struct sockaddr *)&ss, len, 0, &b), 0);
        assert_memory_equal(&a, &b, sizeof(a));
        /* A truncated length is refused. */
        assert_int_equal(
            lsec__addr_from_sockaddr((struct sockaddr *)&ss, len - 1, 0, &b),
            LSEC_ENOTLOOPBACK);
    }
}

static void test_sockaddr_refused(void **state)
{
    (void)state;
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    lsec__addr a;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(1234);
    /* 127.0.0.5 needs the opt-in also in the kernel's view. */
    inet_pton(AF_INET, "127.0.0.5", &sin.sin_addr);
    assert_int_equal(
        lsec__addr_from_sockaddr((struct sockaddr *)&sin, sizeof(sin), 0, &a),
        LSEC_ENOTLOOPBACK);
    assert_non_null(strstr(lsec_last_detail(), "127.0.0.5:1234"));
    assert_int_equal(lsec__addr_from_sockaddr((struct sockaddr *)&sin,
                                              sizeof(sin),
                                              LSEC_ADDR_ALLOW_127_8, &a),
                     0);
    assert_int_equal(a.port, 1234);
    inet_pton(AF_INET, "0.0.0.0", &sin.sin_addr);
    assert_int_equal(
        lsec__addr_from_sockaddr((struct sockaddr *)&sin, sizeof(sin), 0, &a),
        LSEC_ENOTLOOPBACK);
    assert_int_equal(a.family, 0);
    inet_pton(AF_INET, "192.168.0.1", &sin.sin_addr);
    assert_int_equal(
        lsec__addr_from_sockaddr((struct sockaddr *)&sin, sizeof(sin), 0, &a),
        LSEC_ENOTLOOPBACK);

    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(1);
    /* IPv4-mapped loopback seen on an IPv6 socket is refused. */
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6.sin6_addr);
    assert_int_equal(
        lsec__addr_from_sockaddr((struct sockaddr *)&sin6, sizeof(sin6), 0, &a),
        LSEC_ENOTLOOPBACK);
    inet_pton(AF_INET6, "::", &sin6.sin6_addr);
    assert_int_equal(
        lsec__addr_from_sockaddr((struct sockaddr *)&sin6, sizeof(sin6), 0, &a),
        LSEC_ENOTLOOPBACK);
    inet_pton(AF_INET6, "::1", &sin6.sin6_addr);
    sin6.sin6_scope_id = 1;
    assert_int_equal(
        lsec__addr_from_sockaddr((struct sockaddr *)&sin6, sizeof(sin6), 0, &a),
        LSEC_ENOTLOOPBACK);
    sin6.sin6_scope_id = 0;
    assert_int_equal(
        lsec__addr_from_sockaddr((struct sockaddr *)&sin6, sizeof(sin6), 0, &a),
        0);
    assert_int_equal(a.family, AF_INET6);

    /* Other families and misuse. */
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    assert_int_equal(
        lsec__addr_from_sockaddr((struct sockaddr *)&ss, sizeof(ss), 0, &a),
        LSEC_ENOTLOOPBACK);
    assert_int_equal(lsec__addr_from_sockaddr(NULL, 0, 0, &a), LSEC_EINVAL);
    assert_int_equal(lsec__addr_from_sockaddr((struct sockaddr *)&sin6,
                                              sizeof(sin6), 0, NULL),
                     LSEC_EINVAL);
    memset(&a, 0, sizeof(a));
    assert_int_equal(lsec__addr_to_sockaddr(&a, &ss), 0);
}

static void test_endpoint_encoding(void **state)
{
    (void)state;
    lsec__addr a;
    uint8_t ep[LSEC__EP_BYTES];
    static const uint8_t want4[LSEC__EP_BYTES] = {
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1, 0xf5, 0xad};
    static const uint8_t want6[LSEC__EP_BYTES] = {0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                  0, 0, 0, 0, 0, 0, 1, 0, 80};
    static const uint8_t want_l[LSEC__EP_BYTES] = {
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1, 0xff, 0xff};

    assert_int_equal(lsec__addr_parse("127.0.0.1:62893", 0, &a), 0);
    lsec__addr_endpoint(&a, ep);
    assert_memory_equal(ep, want4, sizeof(want4));
    assert_int_equal(lsec__addr_parse("[::1]:80", 0, &a), 0);
    lsec__addr_endpoint(&a, ep);
    assert_memory_equal(ep, want6, sizeof(want6));
    assert_int_equal(lsec__addr_parse("localhost:65535", 0, &a), 0);
    lsec__addr_endpoint(&a, ep);
    assert_memory_equal(ep, want_l, sizeof(want_l));
}

static void test_format(void **state)
{
    (void)state;
    lsec__addr a;
    char buf[LSEC_ADDR_MAX];

    assert_int_equal(lsec__addr_parse("[::1]:7", 0, &a), 0);
    assert_int_equal(lsec__addr_format_host(&a, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "::1");
    assert_int_equal(lsec__addr_format_host(&a, buf, 3), LSEC_EMSGSIZE);
    assert_int_equal(lsec__addr_format(&a, buf, 7), LSEC_EMSGSIZE);
    assert_string_equal(buf, "");
    assert_int_equal(lsec__addr_format(&a, buf, 8), 0);
    assert_string_equal(buf, "[::1]:7");
    assert_int_equal(lsec__addr_parse("localhost:7", 0, &a), 0);
    assert_int_equal(lsec__addr_format_host(&a, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "127.0.0.1");
    memset(&a, 0, sizeof(a));
    assert_int_equal(lsec__addr_format(&a, buf, sizeof(buf)), LSEC_EINVAL);
    assert_false(lsec__addr_is_loopback(&a, LSEC_ADDR_ALLOW_127_8));
    assert_false(lsec__addr_is_loopback(NULL, 0));
    assert_int_equal(lsec__addr_format(NULL, buf, sizeof(buf)), LSEC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_table),
        cmocka_unit_test(test_accepted_table),
        cmocka_unit_test(test_opt_in_127_8),
        cmocka_unit_test(test_127_8_network_broadcast_refused),
        cmocka_unit_test(test_url_diagnosed),
        cmocka_unit_test(test_detail_never_quotes_secret),
        cmocka_unit_test(test_misuse),
        cmocka_unit_test(test_detail_quotes_text),
        cmocka_unit_test(test_sockaddr_round_trip),
        cmocka_unit_test(test_sockaddr_refused),
        cmocka_unit_test(test_endpoint_encoding),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
