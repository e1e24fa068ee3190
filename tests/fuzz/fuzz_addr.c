/*
 * fuzz_addr: the address validator (lib/addr.c), differentially.
 *
 * An independent oracle written here from DESIGN.md "Addresses" and
 * SECURITY-RULES rule 1 (inet_pton plus a round trip to the same text, the
 * exact word localhost, plain decimal ports) decides what must be accepted;
 * lsec__addr_parse must agree on every input, under both flag sets.  On
 * top: whatever is accepted is canonical loopback and formats back to the
 * same text; every refusal is EINVAL or ENOTLOOPBACK with a printable detail
 * and a zeroed result; the sockaddr conversions round-trip.
 */
#include "fuzz_common.h"
#include "internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* The oracle: 1 and the parsed address if `text` must be accepted. */
static int oracle(const char *text, unsigned flags, lsec__addr *out)
{
    size_t n = strlen(text);
    char host[LSEC_ADDR_MAX];
    const char *port;
    const char *colon;
    unsigned long v = 0;

    memset(out, 0, sizeof(*out));
    if (n == 0 || n > LSEC_ADDR_MAX - 1)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)text[i] <= 0x20 || (unsigned char)text[i] >= 0x7f)
            return 0;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return 0;
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = '\0';
        port = close + 2;
    } else {
        colon = strchr(text, ':');
        if (colon == NULL || strchr(colon + 1, ':') != NULL)
            return 0;
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = '\0';
        port = colon + 1;
    }
    /* Port: 1 to 5 decimal digits, no leading zero but "0", <= 65535. */
    if (port[0] == '\0' || strlen(port) > 5 ||
        (port[0] == '0' && port[1] != '\0'))
        return 0;
    for (const char *c = port; *c != '\0'; c++) {
        if (*c < '0' || *c > '9')
            return 0;
        v = v * 10 + (unsigned long)(*c - '0');
    }
    if (v > 65535)
        return 0;
    out->port = (uint16_t)v;

    if (text[0] == '[') {
        struct in6_addr in6;
        char back[INET6_ADDRSTRLEN];
        if (inet_pton(AF_INET6, host, &in6) != 1 ||
            inet_ntop(AF_INET6, &in6, back, sizeof(back)) == NULL ||
            strcmp(back, host) != 0 || !IN6_IS_ADDR_LOOPBACK(&in6))
            return 0;
        out->family = AF_INET6;
        memcpy(out->ip, &in6, 16);
        return 1;
    }
    out->family = AF_INET;
    if (strcmp(host, "localhost") == 0) {
        out->ip[0] = 127;
        out->ip[3] = 1;
        return 1;
    }
    struct in_addr in;
    char back4[INET_ADDRSTRLEN];
    if (inet_pton(AF_INET, host, &in) != 1 ||
        inet_ntop(AF_INET, &in, back4, sizeof(back4)) == NULL ||
        strcmp(back4, host) != 0)
        return 0;
    memcpy(out->ip, &in, 4);
    if (out->ip[0] != 127)
        return 0;
    if (!(flags & LSEC_ADDR_ALLOW_127_8) &&
        !(out->ip[1] == 0 && out->ip[2] == 0 && out->ip[3] == 1))
        return 0;
    /* 127.0.0.0 and 127.255.255.255: never, even with the opt-in. */
    if (strcmp(host, "127.0.0.0") == 0 || strcmp(host, "127.255.255.255") == 0)
        return 0;
    return 1;
}

static void check_one(const char *text, unsigned flags)
{
    static const lsec__addr zero;
    lsec__addr a, want, back;
    struct sockaddr_storage ss;
    char norm[LSEC_ADDR_MAX], small[8];
    unsigned salen;
    int rc, expect;

    rc = lsec__addr_parse(text, flags, &a);
    expect = oracle(text, flags, &want);
    if (rc != 0) {
        FUZZ_ASSERT(expect == 0);
        FUZZ_ASSERT(rc == LSEC_EINVAL || rc == LSEC_ENOTLOOPBACK);
        FUZZ_ASSERT(memcmp(&a, &zero, sizeof(a)) == 0);
        /* Every refusal says why, in printable text only. */
        FUZZ_ASSERT(lsec_last_detail()[0] != '\0');
        FUZZ_ASSERT(fz_printable(lsec_last_detail()));
        FUZZ_ASSERT(strlen(lsec_last_detail()) < 512);
        /* The public twin agrees and clears the caller's buffer. */
        memset(norm, 'x', sizeof(norm));
        FUZZ_ASSERT(lsec_addr_check(text, flags, norm, sizeof(norm)) == rc);
        FUZZ_ASSERT(norm[0] == '\0');
        return;
    }
    FUZZ_ASSERT(expect == 1);
    FUZZ_ASSERT(a.family == want.family && a.port == want.port &&
                memcmp(a.ip, want.ip, 16) == 0);
    FUZZ_ASSERT(lsec__addr_is_loopback(&a, flags));
    if (!(flags & LSEC_ADDR_ALLOW_127_8))
        FUZZ_ASSERT(lsec__addr_is_loopback(&a, 0));

    /* Canonical: the normal form is the text itself (localhost maps to
     * 127.0.0.1), and parsing the normal form gives the same address. */
    FUZZ_ASSERT(lsec__addr_format(&a, norm, sizeof(norm)) == 0);
    if (strncmp(text, "localhost:", 10) == 0) {
        char expect_text[LSEC_ADDR_MAX];
        snprintf(expect_text, sizeof(expect_text), "127.0.0.1:%s", text + 10);
        FUZZ_ASSERT(strcmp(norm, expect_text) == 0);
    } else {
        FUZZ_ASSERT(strcmp(norm, text) == 0);
    }
    FUZZ_ASSERT(lsec__addr_parse(norm, flags, &back) == 0);
    FUZZ_ASSERT(memcmp(&back, &a, sizeof(a)) == 0);

    /* The public twin writes the same normal form, and refuses a buffer
     * that is too small without overflowing it. */
    {
        char pub[LSEC_ADDR_MAX];
        FUZZ_ASSERT(lsec_addr_check(text, flags, pub, sizeof(pub)) == 0);
        FUZZ_ASSERT(strcmp(pub, norm) == 0);
        if (strlen(norm) >= sizeof(small))
            FUZZ_ASSERT(lsec_addr_check(text, flags, small, sizeof(small)) ==
                            LSEC_EMSGSIZE &&
                        small[0] == '\0');
    }

    /* sockaddr conversions round-trip and keep the loopback check. */
    salen = lsec__addr_to_sockaddr(&a, &ss);
    FUZZ_ASSERT(salen > 0);
    FUZZ_ASSERT(lsec__addr_from_sockaddr((struct sockaddr *)&ss, salen, flags,
                                         &back) == 0);
    FUZZ_ASSERT(memcmp(&back, &a, sizeof(a)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[256];
    size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;

    /* The parser takes a C string: it sees the input up to the first NUL.
     * Longer inputs still matter (the length cap), so keep up to 255. */
    memcpy(text, data, n);
    text[n] = '\0';
    check_one(text, 0);
    check_one(text, LSEC_ADDR_ALLOW_127_8);
    /* Unknown flag bits are misuse. */
    FUZZ_ASSERT(lsec_addr_check(text, 0x8000u, NULL, 0) == LSEC_EINVAL);
    return 0;
}
