/*
 * lib/handshake.c: the auth-mode handshake, run client against server in
 * memory.  The vectors come from docs/PROTOCOL.md itself; proofs that an
 * attacker would need are computed here with OpenSSL's BLAKE2BMAC,
 * independently of the library's libsodium code.
 */
/* cmocka.h needs these first. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include "internal.h"
#include "ref_mac.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CH LSEC__HS_HELLO_BYTES
#define SH LSEC__HS_SHELLO_BYTES
#define FIN LSEC__HS_FINISH_BYTES
#define AGAIN LSEC__AGAIN
#define DONE LSEC__DONE

static const uint8_t zero32[32];

/* ------------------------------------------------------------------------ */
/* Fixtures                                                                  */

static lsec__addr addr(const char *text)
{
    lsec__addr a;
    assert_int_equal(lsec__addr_parse(text, LSEC_ADDR_ALLOW_127_8, &a), 0);
    return a;
}

/* A client and a server with the same secret on a direct connection. */
struct pair {
    uint8_t secret[LSEC_SECRET_BYTES];
    lsec__addr caddr, saddr;
    lsec__hs c, s;
};

static void pair_init_views(struct pair *p, const char *cview_c,
                            const char *cview_s, const char *sview_c,
                            const char *sview_s)
{
    lsec__addr cc = addr(cview_c), cs = addr(cview_s);
    lsec__addr sc = addr(sview_c), ss = addr(sview_s);

    p->caddr = cc;
    p->saddr = cs;
    /* Each side passes (local, remote) as its own socket shows them. */
    assert_int_equal(lsec__hs_init(&p->c, LSEC__ROLE_CLIENT, LSEC_MODE_AUTH,
                                   p->secret, &cc, &cs, NULL),
                     0);
    assert_int_equal(lsec__hs_init(&p->s, LSEC__ROLE_SERVER, LSEC_MODE_AUTH,
                                   p->secret, &ss, &sc, NULL),
                     0);
}

/* New handshakes for the same secret on a direct connection, where both
 * sides see the same endpoints. */
static void pair_reinit(struct pair *p)
{
    pair_init_views(p, "127.0.0.1:50000", "127.0.0.1:62893", "127.0.0.1:50000",
                    "127.0.0.1:62893");
}

static void pair_init(struct pair *p)
{
    lsec__random(p->secret, sizeof(p->secret));
    pair_reinit(p);
}

/* One step; the output (if any) lands in `out`. */
static int step(lsec__hs *h, const void *in, size_t inlen, size_t *consumed,
                uint8_t out[LSEC__HS_MSG_MAX], size_t *outlen)
{
    return lsec__hs_step(h, in, inlen, consumed, out, LSEC__HS_MSG_MAX, outlen);
}

/* Feed `n` bytes in chunks of `chunk` (0: all at once); all must be
 * consumed.  Returns the last code; the output of the whole feed goes to
 * `out` (at most one message is produced). */
static int feed(lsec__hs *h, const uint8_t *in, size_t n, size_t chunk,
                uint8_t out[LSEC__HS_MSG_MAX], size_t *outlen)
{
    size_t off = 0, used, got;
    uint8_t tmp[LSEC__HS_MSG_MAX];
    int rc = AGAIN;

    *outlen = 0;
    if (chunk == 0)
        chunk = n;
    while (off < n && rc == AGAIN) {
        size_t k = n - off < chunk ? n - off : chunk;
        rc = step(h, in + off, k, &used, tmp, &got);
        if (rc < 0)
            return rc;
        assert_int_equal(used, k);
        off += used;
        if (got > 0) {
            assert_int_equal(*outlen, 0);
            memcpy(out, tmp, got);
            *outlen = got;
        }
    }
    assert_int_equal(off, n);
    return rc;
}

/* Run the whole handshake, recording each message (each buffer has the
 * room lsec__hs_step asks for, LSEC__HS_MSG_MAX). */
struct run {
    uint8_t ch[LSEC__HS_MSG_MAX], sh[LSEC__HS_MSG_MAX], fin[LSEC__HS_MSG_MAX];
};

/* The client's first step: its ClientHello. */
static void client_hello(struct pair *p, struct run *r)
{
    size_t n, used;

    assert_int_equal(step(&p->c, NULL, 0, &used, r->ch, &n), AGAIN);
    assert_int_equal(n, CH);
}

/* A fresh pair whose client has produced its ClientHello. */
static void start(struct pair *p, struct run *r)
{
    pair_init(p);
    client_hello(p, r);
}

static void run_ok(struct pair *p, size_t chunk, struct run *r)
{
    size_t n;

    client_hello(p, r);
    assert_int_equal(feed(&p->s, r->ch, CH, chunk, r->sh, &n), AGAIN);
    assert_int_equal(n, SH);
    assert_int_equal(feed(&p->c, r->sh, SH, chunk, r->fin, &n), DONE);
    assert_int_equal(n, FIN);
    assert_int_equal(feed(&p->s, r->fin, FIN, chunk, r->sh, &n), DONE);
    assert_int_equal(n, 0);
}

/* The client's hello and the server's answer to it. */
static void run_to_server_hello(struct pair *p, struct run *r)
{
    size_t n;

    client_hello(p, r);
    assert_int_equal(feed(&p->s, r->ch, CH, 0, r->sh, &n), AGAIN);
    assert_int_equal(n, SH);
}

/* The independent MAC (OpenSSL's BLAKE2BMAC) over up to five parts. */
static void ref_mac(uint8_t out[32], const uint8_t key[32], const void *p1,
                    size_t n1, const void *p2, size_t n2, const void *p3,
                    size_t n3, const void *p4, size_t n4, const void *p5,
                    size_t n5)
{
    uint8_t buf[512];
    size_t n = 0;
    const void *parts[] = {p1, p2, p3, p4, p5};
    size_t lens[] = {n1, n2, n3, n4, n5};

    for (int i = 0; i < 5; i++) {
        assert_true(n + lens[i] <= sizeof(buf));
        if (lens[i] > 0)
            memcpy(buf + n, parts[i], lens[i]);
        n += lens[i];
    }
    lsec_test_ref_mac(out, key, buf, n);
}

/* The ClientFinish a client with `secret` and view (c, s) would send. */
static void forge_finish(uint8_t out[FIN], const uint8_t *secret,
                         const uint8_t ch[CH], const uint8_t sh[SH],
                         const char *view_c, const char *view_s)
{
    uint8_t k_c[32], epc[LSEC__EP_BYTES], eps[LSEC__EP_BYTES];
    lsec__addr c = addr(view_c), s = addr(view_s);

    ref_mac(k_c, secret, LSEC__LABEL_AUTH_CLIENT,
            strlen(LSEC__LABEL_AUTH_CLIENT), NULL, 0, NULL, 0, NULL, 0, NULL,
            0);
    lsec__addr_endpoint(&c, epc);
    lsec__addr_endpoint(&s, eps);
    ref_mac(out, k_c, "loopsec/1 client proof", 22, ch, CH, sh, SH, epc,
            sizeof(epc), eps, sizeof(eps));
}

static void assert_dead(lsec__hs *h, int code)
{
    uint8_t out[LSEC__HS_MSG_MAX], b = 'L';
    size_t used, n;

    /* Keys are gone, and every later step repeats the failure. */
    assert_memory_equal(h->k_client, zero32, 32);
    assert_memory_equal(h->k_server, zero32, 32);
    assert_int_equal(step(h, &b, 1, &used, out, &n), code);
    assert_int_equal(step(h, NULL, 0, &used, out, &n), code);
    assert_int_equal(n, 0);
    assert_int_equal(used, 0);
}

/* ------------------------------------------------------------------------ */
/* Vectors from docs/PROTOCOL.md                                             */

#define MAX_VECTORS 40

static struct vec {
    char name[32];
    char value[256];
} vecs[MAX_VECTORS];
static size_t nvecs;

/* Every "name = value" line inside the fenced blocks of "## Test vectors". */
static int load_vectors(void **state)
{
    static char doc[65536];
    char *sec, *end, *line;
    bool fenced = false;
    FILE *f = fopen(LSEC_TEST_SRCDIR "/docs/PROTOCOL.md", "r");
    size_t n;

    (void)state;
    if (f == NULL)
        return -1;
    n = fread(doc, 1, sizeof(doc) - 1, f);
    fclose(f);
    doc[n] = '\0';
    sec = strstr(doc, "\n## Test vectors\n");
    if (sec == NULL)
        return -1;
    end = strstr(sec + 1, "\n## ");
    if (end != NULL)
        *end = '\0';
    for (line = strtok(sec, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char name[32], value[256];
        if (strncmp(line, "```", 3) == 0) {
            fenced = !fenced;
            continue;
        }
        if (!fenced ||
            sscanf(line, "%31[a-z_0-9] = %255[^\n]", name, value) != 2)
            continue;
        if (nvecs == MAX_VECTORS)
            return -1;
        /* Trailing spaces are not part of a value. */
        for (size_t k = strlen(value); k > 0 && value[k - 1] == ' '; k--)
            value[k - 1] = '\0';
        snprintf(vecs[nvecs].name, sizeof(vecs[nvecs].name), "%s", name);
        snprintf(vecs[nvecs].value, sizeof(vecs[nvecs].value), "%s", value);
        nvecs++;
    }
    return nvecs > 0 ? 0 : -1;
}

static const char *vec(const char *name)
{
    for (size_t i = 0; i < nvecs; i++)
        if (strcmp(vecs[i].name, name) == 0)
            return vecs[i].value;
    fail_msg("PROTOCOL.md has no vector \"%s\"", name);
    return NULL;
}

static void vec_bytes(const char *name, uint8_t *out, size_t n)
{
    const char *hex = vec(name);
    assert_int_equal(strlen(hex), 2 * n);
    assert_int_equal(lsec__hex_decode(out, n, hex, 2 * n), 0);
}

static void assert_hex(const char *name, const uint8_t *got, size_t n)
{
    char hex[2 * LSEC__HS_MSG_MAX + 1];
    assert_int_equal(lsec__hex_encode(hex, sizeof(hex), got, n), 0);
    assert_string_equal(hex, vec(name));
}

static void vectors_keys_and_endpoints(void **state)
{
    uint8_t secret[32], key[32], ep[LSEC__EP_BYTES];
    lsec__addr a;

    (void)state;
    vec_bytes("secret", secret, 32);
    lsec__kdf(key, secret, LSEC__LABEL_AUTH_CLIENT);
    assert_hex("k_c", key, 32);
    lsec__kdf(key, secret, LSEC__LABEL_AUTH_SERVER);
    assert_hex("k_s", key, 32);
    lsec__tls_psk(key, secret);
    assert_hex("psk", key, 32);
    a = addr(vec("client_addr"));
    lsec__addr_endpoint(&a, ep);
    assert_hex("ep_client", ep, sizeof(ep));
    a = addr(vec("server_addr"));
    lsec__addr_endpoint(&a, ep);
    assert_hex("ep_server", ep, sizeof(ep));
    a = addr(vec("v6_addr"));
    lsec__addr_endpoint(&a, ep);
    assert_hex("ep_v6", ep, sizeof(ep));
}

static void vectors_messages(void **state)
{
    uint8_t secret[32], cn[32], sn[32], out[LSEC__HS_MSG_MAX];
    uint8_t sh[LSEC__HS_MSG_MAX];
    lsec__addr ca, sa;
    lsec__hs c, s;
    size_t used, n;

    (void)state;
    vec_bytes("secret", secret, 32);
    vec_bytes("client_nonce", cn, 32);
    vec_bytes("server_nonce", sn, 32);
    ca = addr(vec("client_addr"));
    sa = addr(vec("server_addr"));
    assert_int_equal(lsec__hs_init(&c, LSEC__ROLE_CLIENT, LSEC_MODE_AUTH,
                                   secret, &ca, &sa, cn),
                     0);
    assert_int_equal(lsec__hs_init(&s, LSEC__ROLE_SERVER, LSEC_MODE_AUTH,
                                   secret, &sa, &ca, sn),
                     0);

    assert_int_equal(step(&c, NULL, 0, &used, out, &n), AGAIN);
    assert_hex("client_hello", out, n);
    assert_int_equal(step(&s, out, n, &used, sh, &n), AGAIN);
    assert_hex("server_hello", sh, n);
    assert_hex("server_proof", sh + CH, 32);
    assert_int_equal(step(&c, sh, SH, &used, out, &n), DONE);
    assert_hex("client_finish", out, n);
    assert_int_equal(step(&s, out, n, &used, sh, &n), DONE);
    lsec__hs_wipe(&c);
    lsec__hs_wipe(&s);
}

static void vectors_tickets(void **state)
{
    char buf[LSEC_TICKET_MAX], hex[65], ident[LSEC__PSK_IDENTITY_MAX];
    uint8_t secret[32], id[8];
    const char *text = vec("ticket");
    lsec__ticket t;

    (void)state;
    vec_bytes("secret", secret, 32);
    vec_bytes("id", id, 8);
    assert_int_equal(lsec__ticket_parse(text, strlen(text), 0, &t), 0);
    assert_int_equal(t.mode, LSEC_MODE_AUTH);
    assert_memory_equal(t.secret, secret, 32);
    assert_memory_equal(t.id, id, 8);
    assert_int_equal(lsec__ticket_format(&t, buf, sizeof(buf)), 0);
    assert_string_equal(buf, text);
    assert_int_equal(lsec__b64_encode(buf, sizeof(buf), secret, 32), 0);
    assert_string_equal(buf, vec("secret_b64"));
    assert_int_equal(lsec_ticket_redact(text, buf, sizeof(buf)), 0);
    assert_string_equal(buf, vec("redacted"));

    text = vec("ticket_tls");
    assert_int_equal(lsec__ticket_parse(text, strlen(text), 0, &t), 0);
    assert_int_equal(t.mode, LSEC_MODE_TLS);
    assert_memory_equal(t.secret, secret, 32);
    assert_int_equal(
        lsec_ticket_psk(text, hex, sizeof(hex), ident, sizeof(ident)), 0);
    assert_string_equal(hex, vec("psk"));
    assert_string_equal(ident, vec("psk_identity"));
    lsec__ticket_wipe(&t);
}

/* ------------------------------------------------------------------------ */
/* Successful runs                                                           */

static void whole_messages(void **state)
{
    struct pair p;
    struct run r;

    (void)state;
    pair_init(&p);
    run_ok(&p, 0, &r);
    /* Layouts as PROTOCOL.md fixes them. */
    assert_memory_equal(r.ch, "LSEC\x01\x01\x00\x00", 8);
    assert_memory_equal(r.sh, "LSEC\x01\x01\x00\x00", 8);
    assert_memory_not_equal(r.ch + 8, r.sh + 8, 32);
    /* Nothing secret is kept once the handshake is done. */
    assert_memory_equal(p.c.k_client, zero32, 32);
    assert_memory_equal(p.s.k_server, zero32, 32);
}

static void one_byte_at_a_time(void **state)
{
    struct pair p;
    struct run r;

    (void)state;
    pair_init(&p);
    run_ok(&p, 1, &r);
}

static void odd_chunks(void **state)
{
    static const size_t chunks[] = {2, 3, 5, 7, 13, 31, 39, 41, 71};
    struct pair p;
    struct run r;

    (void)state;
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        pair_init(&p);
        run_ok(&p, chunks[i], &r);
    }
}

static void ipv6_connection(void **state)
{
    struct pair p;
    struct run r;

    (void)state;
    lsec__random(p.secret, sizeof(p.secret));
    pair_init_views(&p, "[::1]:40000", "[::1]:40001", "[::1]:40000",
                    "[::1]:40001");
    run_ok(&p, 0, &r);
}

static void fresh_nonces_each_time(void **state)
{
    struct pair p;
    struct run r1, r2;

    (void)state;
    pair_init(&p);
    run_ok(&p, 0, &r1);
    pair_reinit(&p);
    run_ok(&p, 0, &r2);
    assert_memory_not_equal(r1.ch, r2.ch, CH);
    assert_memory_not_equal(r1.sh, r2.sh, SH);
    assert_memory_not_equal(r1.fin, r2.fin, FIN);
}

/* Application bytes in the same read are left to the caller. */
static void trailing_bytes_not_consumed(void **state)
{
    struct pair p;
    struct run r;
    uint8_t buf[SH + 16], out[LSEC__HS_MSG_MAX];
    size_t used, n;

    (void)state;
    pair_init(&p);
    run_to_server_hello(&p, &r);
    memcpy(buf, r.sh, SH);
    memcpy(buf + SH, "\x00\x00\x00\x05hello", 9);
    assert_int_equal(step(&p.c, buf, SH + 9, &used, out, &n), DONE);
    assert_int_equal(used, SH);
    assert_int_equal(n, FIN);

    memcpy(buf, out, FIN);
    memcpy(buf + FIN, "\x00\x00\x00\x02hi", 6);
    assert_int_equal(step(&p.s, buf, FIN + 6, &used, out, &n), DONE);
    assert_int_equal(used, FIN);
    assert_int_equal(n, 0);
}

/* ------------------------------------------------------------------------ */
/* Attacks                                                                   */

static void wrong_secret(void **state)
{
    struct pair p;
    struct run r;
    uint8_t other[32], fin[FIN], out[LSEC__HS_MSG_MAX];
    lsec__addr c = addr("127.0.0.1:50000"), s = addr("127.0.0.1:62893");
    size_t used, n;

    (void)state;
    /* A server without the secret cannot prove it to the client. */
    pair_init(&p);
    lsec__random(other, sizeof(other));
    assert_int_equal(lsec__hs_init(&p.s, LSEC__ROLE_SERVER, LSEC_MODE_AUTH,
                                   other, &s, &c, NULL),
                     0);
    run_to_server_hello(&p, &r);
    assert_int_equal(step(&p.c, r.sh, SH, &used, out, &n), LSEC_EAUTH);
    assert_int_equal(n, 0);
    assert_dead(&p.c, LSEC_EAUTH);

    /* A client without the secret cannot prove it to the server. */
    pair_init(&p);
    run_to_server_hello(&p, &r);
    forge_finish(fin, other, r.ch, r.sh, "127.0.0.1:50000", "127.0.0.1:62893");
    assert_int_equal(step(&p.s, fin, FIN, &used, out, &n), LSEC_EAUTH);
    assert_dead(&p.s, LSEC_EAUTH);

    /* The same forgery with the right secret passes: the forger is right. */
    pair_init(&p);
    run_to_server_hello(&p, &r);
    forge_finish(fin, p.secret, r.ch, r.sh, "127.0.0.1:50000",
                 "127.0.0.1:62893");
    assert_int_equal(step(&p.s, fin, FIN, &used, out, &n), DONE);
}

static void every_finish_bit_matters(void **state)
{
    struct pair p;
    struct run r;
    uint8_t fin[LSEC__HS_MSG_MAX], out[LSEC__HS_MSG_MAX];
    size_t used, n;

    (void)state;
    for (size_t i = 0; i < FIN * 8; i += 7) {
        pair_init(&p);
        run_to_server_hello(&p, &r);
        assert_int_equal(step(&p.c, r.sh, SH, &used, fin, &n), DONE);
        fin[i / 8] ^= (uint8_t)(1u << (i % 8));
        assert_int_equal(step(&p.s, fin, FIN, &used, out, &n), LSEC_EAUTH);
    }
}

/* Each byte of the ServerHello, altered, fails the client with its code. */
static void altered_server_hello(void **state)
{
    struct pair p;
    struct run r;
    uint8_t out[LSEC__HS_MSG_MAX];
    size_t used, n;

    (void)state;
    for (size_t i = 0; i < SH; i++) {
        int want = i < 5 || i == 6 || i == 7 ? LSEC_EPROTO
                   : i == 5                  ? LSEC_EMODE
                                             : LSEC_EAUTH;
        pair_init(&p);
        run_to_server_hello(&p, &r);
        r.sh[i] ^= 0x01;
        /* Header errors stop at the altered byte; proof errors at the end. */
        assert_int_equal(step(&p.c, r.sh, SH, &used, out, &n), want);
        assert_int_equal(used, want == LSEC_EAUTH ? SH : i + 1);
        assert_int_equal(n, 0);
    }
}

/* Each byte of the ClientHello, altered: the header is refused by the
 * server at once; a changed nonce gets through the server but the client
 * then refuses the server's proof over what the server saw. */
static void altered_client_hello(void **state)
{
    struct pair p;
    struct run r;
    uint8_t sh[LSEC__HS_MSG_MAX], out[LSEC__HS_MSG_MAX];
    size_t used, n;

    (void)state;
    for (size_t i = 0; i < CH; i++) {
        start(&p, &r);
        r.ch[i] ^= 0x80;
        if (i < 8) {
            int want = i == 5 ? LSEC_EMODE : LSEC_EPROTO;
            assert_int_equal(step(&p.s, r.ch, CH, &used, sh, &n), want);
            assert_int_equal(used, i + 1);
            assert_int_equal(n, 0);
            assert_dead(&p.s, want);
            continue;
        }
        assert_int_equal(step(&p.s, r.ch, CH, &used, sh, &n), AGAIN);
        assert_int_equal(step(&p.c, sh, SH, &used, out, &n), LSEC_EAUTH);
    }
}

/* The mode byte, changed on the way in either direction (to the TLS mode
 * byte, the only other mode), is refused: never negotiated down. */
static void downgrade(void **state)
{
    struct pair p;
    struct run r;
    uint8_t out[LSEC__HS_MSG_MAX];
    size_t used, n;

    (void)state;
    start(&p, &r);
    r.ch[5] = LSEC_MODE_TLS;
    assert_int_equal(step(&p.s, r.ch, CH, &used, out, &n), LSEC_EMODE);
    assert_int_equal(used, 6);

    pair_init(&p);
    run_to_server_hello(&p, &r);
    r.sh[5] = LSEC_MODE_TLS;
    assert_int_equal(step(&p.c, r.sh, SH, &used, out, &n), LSEC_EMODE);
    assert_dead(&p.c, LSEC_EMODE);

    /* The state machine is the auth mode's; it refuses any other. */
    assert_int_equal(lsec__hs_init(&p.c, LSEC__ROLE_CLIENT, LSEC_MODE_TLS,
                                   p.secret, &p.caddr, &p.saddr, NULL),
                     LSEC_EINVAL);
}

static void reflection(void **state)
{
    struct pair p, q;
    struct run r, r2;
    uint8_t buf[CH + 32], out[LSEC__HS_MSG_MAX];
    size_t used, n;

    (void)state;
    /* The server's own proof sent back to it as the ClientFinish. */
    pair_init(&p);
    run_to_server_hello(&p, &r);
    assert_int_equal(step(&p.s, r.sh + CH, FIN, &used, out, &n), LSEC_EAUTH);

    /* The server's whole ServerHello sent back as a ClientHello and a
     * ClientFinish to a second server with the same secret: it parses as a
     * hello, but its proof is the server's, not a client's. */
    pair_init(&p);
    q = p;
    pair_reinit(&q);
    run_to_server_hello(&p, &r);
    assert_int_equal(step(&q.s, r.sh, SH, &used, out, &n), LSEC_EAUTH);
    assert_int_equal(used, SH);
    /* Nothing goes out after a failure, not even the ServerHello. */
    assert_int_equal(n, 0);

    /* The client's own hello reflected to it (a TCP self-connect or an
     * echo service): the header passes, the nonce is its own (EPROTO, at
     * the nonce's last byte, before any proof is looked at). */
    start(&p, &r);
    memcpy(buf, r.ch, CH);
    memcpy(buf + CH, r.ch + 8, 32);
    assert_int_equal(step(&p.c, buf, SH, &used, out, &n), LSEC_EPROTO);
    assert_int_equal(used, CH);

    /* Two servers as oracles for each other: the attacker opens one
     * connection to each, feeds each server's hello to the other; neither
     * ever produces a client proof. */
    pair_init(&p);
    q = p;
    pair_init_views(&q, "127.0.0.1:50001", "127.0.0.1:62893", "127.0.0.1:50001",
                    "127.0.0.1:62893");
    run_to_server_hello(&p, &r);
    run_to_server_hello(&q, &r2);
    assert_int_equal(step(&p.s, r2.sh + CH, FIN, &used, out, &n), LSEC_EAUTH);
    assert_int_equal(step(&q.s, r.sh + CH, FIN, &used, out, &n), LSEC_EAUTH);
}

/* `in` (a hello with a bad nonce) ends the handshake `h` with EPROTO at the
 * nonce's last byte: nothing sent, keys wiped, and the failure sticks. */
static void nonce_refused(lsec__hs *h, const uint8_t *in, size_t len)
{
    uint8_t out[LSEC__HS_MSG_MAX];
    size_t used, n;

    assert_int_equal(step(h, in, len, &used, out, &n), LSEC_EPROTO);
    assert_int_equal(used, CH);
    assert_int_equal(n, 0);
    assert_dead(h, LSEC_EPROTO);
}

/* A nonce of 32 zero bytes is no fresh nonce, and a side's own nonce sent
 * back is a reflection: LSEC_EPROTO on either side, when the nonce is
 * complete, with nothing sent and the keys wiped. */
static void peer_nonce_zero_or_reflected(void **state)
{
    static const uint8_t fixed[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    lsec__addr c = addr("127.0.0.1:50000"), s = addr("127.0.0.1:62893");
    uint8_t secret[LSEC_SECRET_BYTES], hello[SH], out[LSEC__HS_MSG_MAX];
    struct pair p;
    struct run r;
    lsec__hs h;
    size_t used, n;

    (void)state;
    lsec__random(secret, sizeof(secret));
    /* Server: a ClientHello whose nonce is all zero. */
    pair_init(&p);
    client_hello(&p, &r);
    memset(r.ch + 8, 0, 32);
    nonce_refused(&p.s, r.ch, CH);
    /* Server: a ClientHello carrying the server's own nonce. */
    assert_int_equal(lsec__hs_init(&h, LSEC__ROLE_SERVER, LSEC_MODE_AUTH,
                                   secret, &s, &c, fixed),
                     0);
    memcpy(hello, r.ch, 8);
    memcpy(hello + 8, fixed, 32);
    nonce_refused(&h, hello, CH);
    /* The same hello with one nonce byte changed is fine. */
    assert_int_equal(lsec__hs_init(&h, LSEC__ROLE_SERVER, LSEC_MODE_AUTH,
                                   secret, &s, &c, fixed),
                     0);
    hello[39] ^= 1;
    assert_int_equal(step(&h, hello, CH, &used, out, &n), AGAIN);
    assert_int_equal(n, SH);
    lsec__hs_wipe(&h);
    /* Client: a ServerHello whose nonce is all zero (its proof is never
     * looked at: the nonce ends the handshake first). */
    pair_init(&p);
    run_to_server_hello(&p, &r);
    memset(r.sh + 8, 0, 32);
    nonce_refused(&p.c, r.sh, SH);
}

static void replay(void **state)
{
    struct pair p;
    struct run old, r;
    uint8_t out[LSEC__HS_MSG_MAX], sh[LSEC__HS_MSG_MAX];
    size_t used, n;

    (void)state;
    pair_init(&p);
    run_ok(&p, 0, &old);

    /* A recorded ClientHello and ClientFinish against a fresh server
     * nonce. */
    pair_reinit(&p);
    assert_int_equal(step(&p.s, old.ch, CH, &used, sh, &n), AGAIN);
    assert_int_equal(n, SH);
    assert_memory_not_equal(sh, old.sh, SH);
    assert_int_equal(step(&p.s, old.fin, FIN, &used, out, &n), LSEC_EAUTH);

    /* A recorded ServerHello against a fresh client nonce. */
    pair_reinit(&p);
    client_hello(&p, &r);
    assert_int_equal(step(&p.c, old.sh, SH, &used, out, &n), LSEC_EAUTH);
}

/* A relay joins two TCP connections: client <-> relay:40001 <-> server.
 * Each side binds its own view, the views differ, both proofs fail. */
static void relay(void **state)
{
    struct pair p;
    struct run r;
    uint8_t fin[LSEC__HS_MSG_MAX], out[LSEC__HS_MSG_MAX];
    size_t used, n;

    (void)state;
    lsec__random(p.secret, sizeof(p.secret));
    /* The client dialled the relay on 127.0.0.1:62893; the server sees the
     * relay's own socket 127.0.0.1:40001 as its client. */
    pair_init_views(&p, "127.0.0.1:50000", "127.0.0.1:62893", "127.0.0.1:40001",
                    "127.0.0.1:62893");
    run_to_server_hello(&p, &r);
    assert_int_equal(step(&p.c, r.sh, SH, &used, fin, &n), LSEC_EAUTH);

    /* Had the client answered anyway, its proof binds its own view. */
    pair_init_views(&p, "127.0.0.1:50000", "127.0.0.1:62893", "127.0.0.1:40001",
                    "127.0.0.1:62893");
    run_to_server_hello(&p, &r);
    forge_finish(fin, p.secret, r.ch, r.sh, "127.0.0.1:50000",
                 "127.0.0.1:62893");
    assert_int_equal(step(&p.s, fin, FIN, &used, out, &n), LSEC_EAUTH);

    /* The server's address differs too (relay on another address/port). */
    pair_init_views(&p, "127.0.0.1:50000", "127.0.0.2:62893", "127.0.0.1:50000",
                    "127.0.0.1:62893");
    run_to_server_hello(&p, &r);
    assert_int_equal(step(&p.c, r.sh, SH, &used, fin, &n), LSEC_EAUTH);
    pair_init_views(&p, "127.0.0.1:50000", "[::1]:62893", "127.0.0.1:50000",
                    "127.0.0.1:62893");
    run_to_server_hello(&p, &r);
    assert_int_equal(step(&p.c, r.sh, SH, &used, fin, &n), LSEC_EAUTH);
}

/* ------------------------------------------------------------------------ */
/* Other protocols, order, truncation                                        */

static void other_protocols_fail_on_first_byte(void **state)
{
    static const char *const to_server[] = {
        "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        "SSH-2.0-OpenSSH_9.2\r\n",
        "\x00\x00\x00\x05hello",
        "lsec\x01\x01\x00\x00",
    };
    struct pair p;
    uint8_t out[LSEC__HS_MSG_MAX];
    size_t used, n;

    (void)state;
    for (size_t i = 0; i < sizeof(to_server) / sizeof(to_server[0]); i++) {
        pair_init(&p);
        assert_int_equal(
            step(&p.s, to_server[i], strlen(to_server[i]) + 1, &used, out, &n),
            LSEC_EPROTO);
        assert_int_equal(used, 1);
        assert_int_equal(n, 0);
        /* One byte alone is enough to decide. */
        pair_init(&p);
        assert_int_equal(step(&p.s, to_server[i], 1, &used, out, &n),
                         LSEC_EPROTO);
    }
}

/* A TLS listener answers an auth client's hello with a TLS record. */
static void tls_answer_is_mode_mismatch(void **state)
{
    static const uint8_t alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32};
    static const uint8_t hs[] = {0x16, 0x03, 0x03, 0x00, 0x7a, 0x02};
    struct pair p;
    struct run r;
    uint8_t out[LSEC__HS_MSG_MAX];
    size_t used, n;

    (void)state;
    start(&p, &r);
    assert_int_equal(step(&p.c, alert, sizeof(alert), &used, out, &n),
                     LSEC_EMODE);
    assert_int_equal(used, 1);
    start(&p, &r);
    assert_int_equal(step(&p.c, hs, 1, &used, out, &n), LSEC_EMODE);
    /* Any other foreign first byte is a protocol error. */
    start(&p, &r);
    assert_int_equal(step(&p.c, "HTTP/1.1 400", 12, &used, out, &n),
                     LSEC_EPROTO);
    assert_int_equal(used, 1);
    /* A TLS byte later in the header is only a wrong byte. */
    start(&p, &r);
    assert_int_equal(step(&p.c, "L\x16", 2, &used, out, &n), LSEC_EPROTO);
}

static void out_of_order(void **state)
{
    struct pair p;
    struct run r;
    uint8_t out[LSEC__HS_MSG_MAX];
    size_t used, n;

    (void)state;
    /* A ClientFinish first. */
    pair_init(&p);
    run_ok(&p, 0, &r);
    pair_reinit(&p);
    r.fin[0] = 0x00;
    assert_int_equal(step(&p.s, r.fin, FIN, &used, out, &n), LSEC_EPROTO);

    /* The server speaking before the client's hello. */
    pair_init(&p);
    assert_int_equal(step(&p.c, r.sh, SH, &used, out, &n), LSEC_EPROTO);
    assert_int_equal(n, 0);
    assert_dead(&p.c, LSEC_EPROTO);

    /* The ClientHello twice: the second is taken as the ClientFinish. */
    start(&p, &r);
    assert_int_equal(step(&p.s, r.ch, CH, &used, out, &n), AGAIN);
    assert_int_equal(step(&p.s, r.ch, CH, &used, out, &n), LSEC_EAUTH);
    assert_int_equal(used, FIN);

    /* The ClientHello and a forged Finish in one read: the ServerHello
     * produced on the way is not sent. */
    pair_init(&p);
    {
        uint8_t both[LSEC__HS_MSG_MAX];
        assert_int_equal(step(&p.c, NULL, 0, &used, both, &n), AGAIN);
        memset(both + CH, 0x42, FIN);
        assert_int_equal(step(&p.s, both, CH + FIN, &used, out, &n),
                         LSEC_EAUTH);
        assert_int_equal(n, 0);
    }
}

/* Every prefix of every message leaves the state waiting, never done, and
 * the rest completes it. */
static void truncation(void **state)
{
    struct pair p;
    struct run r;
    uint8_t out[LSEC__HS_MSG_MAX];
    size_t used, n;

    (void)state;
    for (size_t cut = 0; cut < SH; cut++) {
        start(&p, &r);
        size_t cc = cut < CH ? cut : CH - 1;
        assert_int_equal(step(&p.s, r.ch, cc, &used, r.sh, &n), AGAIN);
        assert_int_equal(used, cc);
        assert_int_equal(n, 0);
        assert_int_equal(step(&p.s, r.ch + cc, CH - cc, &used, r.sh, &n),
                         AGAIN);
        assert_int_equal(n, SH);

        assert_int_equal(step(&p.c, r.sh, cut, &used, out, &n), AGAIN);
        assert_int_equal(used, cut);
        assert_int_equal(n, 0);
        assert_int_equal(step(&p.c, r.sh + cut, SH - cut, &used, r.fin, &n),
                         DONE);

        size_t fc = cut < FIN ? cut : FIN - 1;
        assert_int_equal(step(&p.s, r.fin, fc, &used, out, &n), AGAIN);
        assert_int_equal(step(&p.s, r.fin + fc, FIN - fc, &used, out, &n),
                         DONE);
    }
}

/* ------------------------------------------------------------------------ */
/* Misuse                                                                    */

static void after_done_is_misuse(void **state)
{
    struct pair p;
    struct run r;
    uint8_t out[LSEC__HS_MSG_MAX];
    size_t used, n;

    (void)state;
    pair_init(&p);
    run_ok(&p, 0, &r);
    assert_int_equal(step(&p.c, NULL, 0, &used, out, &n), LSEC_EINVAL);
    assert_int_equal(step(&p.s, r.fin, FIN, &used, out, &n), LSEC_EINVAL);
    assert_int_equal(used, 0);
}

static void misuse(void **state)
{
    struct pair p;
    lsec__hs h;
    uint8_t out[LSEC__HS_MSG_MAX], all_zero[sizeof(lsec__hs)] = {0};
    size_t used, n;
    lsec__addr a = addr("127.0.0.1:1");

    (void)state;
    pair_init(&p);
    assert_int_equal(
        lsec__hs_step(&p.c, NULL, 0, &used, out, LSEC__HS_MSG_MAX - 1, &n),
        LSEC_EINVAL);
    assert_int_equal(
        lsec__hs_step(NULL, NULL, 0, &used, out, LSEC__HS_MSG_MAX, &n),
        LSEC_EINVAL);
    assert_int_equal(
        lsec__hs_step(&p.c, NULL, 0, NULL, out, LSEC__HS_MSG_MAX, &n),
        LSEC_EINVAL);
    assert_int_equal(
        lsec__hs_step(&p.c, NULL, 0, &used, NULL, LSEC__HS_MSG_MAX, &n),
        LSEC_EINVAL);
    assert_int_equal(
        lsec__hs_step(&p.c, NULL, 5, &used, out, LSEC__HS_MSG_MAX, &n),
        LSEC_EINVAL);
    /* Misuse does not kill a live handshake. */
    assert_int_equal(step(&p.c, NULL, 0, &used, out, &n), AGAIN);
    /* Zero bytes while waiting: nothing happens. */
    assert_int_equal(step(&p.c, NULL, 0, &used, out, &n), AGAIN);
    assert_int_equal(n, 0);
    assert_int_equal(step(&p.s, NULL, 0, &used, out, &n), AGAIN);
    assert_int_equal(n, 0);

    memset(&h, 0, sizeof(h));
    assert_int_equal(step(&h, NULL, 0, &used, out, &n), LSEC_EINVAL);
    assert_int_equal(
        lsec__hs_init(&h, 3, LSEC_MODE_AUTH, p.secret, &a, &a, NULL),
        LSEC_EINVAL);
    assert_int_equal(step(&h, NULL, 0, &used, out, &n), LSEC_EINVAL);
    assert_int_equal(lsec__hs_init(&h, LSEC__ROLE_CLIENT, LSEC_MODE_AUTH, NULL,
                                   &a, &a, NULL),
                     LSEC_EINVAL);
    assert_int_equal(lsec__hs_init(&h, LSEC__ROLE_CLIENT, LSEC_MODE_AUTH,
                                   p.secret, NULL, &a, NULL),
                     LSEC_EINVAL);
    assert_int_equal(lsec__hs_init(NULL, LSEC__ROLE_CLIENT, LSEC_MODE_AUTH,
                                   p.secret, &a, &a, NULL),
                     LSEC_EINVAL);

    /* Wipe leaves nothing behind, and a wiped state is unusable. */
    lsec__hs_wipe(&p.s);
    assert_memory_equal(&p.s, all_zero, sizeof(p.s));
    assert_int_equal(step(&p.s, NULL, 0, &used, out, &n), LSEC_EINVAL);
    lsec__hs_wipe(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(vectors_keys_and_endpoints),
        cmocka_unit_test(vectors_messages),
        cmocka_unit_test(vectors_tickets),
        cmocka_unit_test(whole_messages),
        cmocka_unit_test(one_byte_at_a_time),
        cmocka_unit_test(odd_chunks),
        cmocka_unit_test(ipv6_connection),
        cmocka_unit_test(fresh_nonces_each_time),
        cmocka_unit_test(peer_nonce_zero_or_reflected),
        cmocka_unit_test(trailing_bytes_not_consumed),
        cmocka_unit_test(wrong_secret),
        cmocka_unit_test(every_finish_bit_matters),
        cmocka_unit_test(altered_server_hello),
        cmocka_unit_test(altered_client_hello),
        cmocka_unit_test(downgrade),
        cmocka_unit_test(reflection),
        cmocka_unit_test(replay),
        cmocka_unit_test(relay),
        cmocka_unit_test(other_protocols_fail_on_first_byte),
        cmocka_unit_test(tls_answer_is_mode_mismatch),
        cmocka_unit_test(out_of_order),
        cmocka_unit_test(truncation),
        cmocka_unit_test(after_done_is_misuse),
        cmocka_unit_test(misuse),
    };
    return cmocka_run_group_tests(tests, load_vectors, NULL);
}
