/*
 * Shared by fuzz_handshake_server.c and fuzz_handshake_client.c: an
 * independent reference of the auth-mode handshake written from
 * docs/PROTOCOL.md ("Keys", "Endpoints", "Handshake"), used as the oracle
 * against which lib/handshake.c is judged, and a feeder that drives a state
 * machine with bytes in random chunks.
 */
#ifndef LOOPSEC_FUZZ_HS_H
#define LOOPSEC_FUZZ_HS_H

#include "fuzz_common.h"
#include "internal.h"

#include <sodium.h>
#include <sys/socket.h>

#define REF_HELLO 40
#define REF_SHELLO 72
#define REF_FINISH 32

static const uint8_t ref_magic[4] = {0x4c, 0x53, 0x45, 0x43};

/* key = MAC(key = secret, msg = label); MAC is keyed BLAKE2b-256 */
static inline void ref_key(uint8_t out[32], const uint8_t secret[32],
                           const char *label)
{
    crypto_generichash(out, 32, (const unsigned char *)label, strlen(label),
                       secret, 32);
}

/* The 18-byte endpoint: IPv4 as ::ffff:a.b.c.d, then the port big-endian. */
static inline void ref_ep(uint8_t out[18], const lsec__addr *a)
{
    memset(out, 0, 18);
    if (a->family == AF_INET) {
        out[10] = 0xff;
        out[11] = 0xff;
        memcpy(out + 12, a->ip, 4);
    } else {
        memcpy(out, a->ip, 16);
    }
    out[16] = (uint8_t)(a->port >> 8);
    out[17] = (uint8_t)a->port;
}

/*
 * server_proof: key label "loopsec/1 auth server->client", proof label
 * "loopsec/1 server proof", over CH || SH[0..40).  client_proof: key label
 * "loopsec/1 auth client->server", proof label "loopsec/1 client proof",
 * over CH || SH.  Both then ep_client || ep_server.
 */
static inline void ref_proof(uint8_t out[32], const uint8_t secret[32],
                             int server, const uint8_t *ch, const uint8_t *sh,
                             const lsec__addr *client, const lsec__addr *srv)
{
    crypto_generichash_state st;
    uint8_t key[32], epc[18], eps[18];
    const char *label =
        server ? "loopsec/1 server proof" : "loopsec/1 client proof";

    ref_key(key, secret,
            server ? "loopsec/1 auth server->client"
                   : "loopsec/1 auth client->server");
    ref_ep(epc, client);
    ref_ep(eps, srv);
    crypto_generichash_init(&st, key, sizeof(key), 32);
    crypto_generichash_update(&st, (const unsigned char *)label, strlen(label));
    crypto_generichash_update(&st, ch, REF_HELLO);
    crypto_generichash_update(&st, sh, server ? REF_HELLO : REF_SHELLO);
    crypto_generichash_update(&st, epc, sizeof(epc));
    crypto_generichash_update(&st, eps, sizeof(eps));
    crypto_generichash_final(&st, out, 32);
}

/*
 * The first wrong byte of a hello header, as the peer `role` checks it
 * (PROTOCOL.md "state machine"): returns its index and the expected code
 * in *code, or -1 if the first `n` bytes are fine so far.
 */
static inline int ref_header_error(const uint8_t *p, size_t n, int checker,
                                   int *code)
{
    for (size_t i = 0; i < n && i < 8; i++) {
        uint8_t b = p[i];
        if (i == 0 && checker == LSEC__ROLE_CLIENT &&
            (b == 0x15 || b == 0x16)) {
            *code = LSEC_EMODE;
            return (int)i;
        }
        if ((i < 4 && b != ref_magic[i]) || (i == 4 && b != 0x01) ||
            ((i == 6 || i == 7) && b != 0x00)) {
            *code = LSEC_EPROTO;
            return (int)i;
        }
        if (i == 5 && b != LSEC_MODE_AUTH) {
            *code = LSEC_EMODE;
            return (int)i;
        }
    }
    return -1;
}

/* The chunk sizes come from fz_rand, seeded from the input. */
typedef struct prng {
    uint32_t s;
} prng;

/* 0 (an empty step is legal), 1 (the worst case), or a few to many. */
static inline size_t prng_chunk(prng *r)
{
    uint32_t v = fz_rand(&r->s);
    switch (v % 8) {
    case 0:
        return 0;
    case 1:
    case 2:
    case 3:
        return 1;
    case 4:
        return (v >> 8) % 8 + 1;
    default:
        return (v >> 8) % 200 + 1;
    }
}

/* What feeding a state machine produced. */
typedef struct feed_result {
    int rc;          /* last return: LSEC__AGAIN, _DONE or an error */
    size_t consumed; /* input bytes taken, over all calls */
    uint8_t out[4 * LSEC__HS_MSG_MAX];
    size_t outlen; /* output bytes, over all calls */
    size_t calls;
} feed_result;

/*
 * Feed `len` bytes to `h` in random chunks until they run out or the state
 * machine stops (DONE or an error).  Per call: consumed <= offered; while
 * AGAIN, everything offered is consumed; on an error nothing is output.
 */
static inline void feed(lsec__hs *h, const uint8_t *in, size_t len, prng *r,
                        feed_result *res)
{
    size_t off = 0;
    uint8_t out[LSEC__HS_MSG_MAX + 16];

    for (;;) {
        size_t want = prng_chunk(r), consumed = 12345, outlen = 12345;
        size_t n = want < len - off ? want : len - off;
        int rc;

        /* Poison the output buffer: a call must not leave stale bytes
         * counted as output. */
        memset(out, 0xa5, sizeof(out));
        rc = lsec__hs_step(h, in + off, n, &consumed, out, LSEC__HS_MSG_MAX,
                           &outlen);
        res->calls++;
        res->rc = rc;
        FUZZ_ASSERT(rc == LSEC__AGAIN || rc == LSEC__DONE ||
                    rc == LSEC_EPROTO || rc == LSEC_EMODE || rc == LSEC_EAUTH);
        FUZZ_ASSERT(consumed <= n);
        FUZZ_ASSERT(outlen <= LSEC__HS_MSG_MAX);
        if (rc == LSEC__AGAIN)
            FUZZ_ASSERT(consumed == n);
        if (rc < 0) {
            FUZZ_ASSERT(outlen == 0);
            FUZZ_ASSERT(consumed >= 1);
            FUZZ_ASSERT(fz_printable(lsec_last_detail()));
        }
        FUZZ_ASSERT(res->outlen + outlen <= sizeof(res->out));
        memcpy(res->out + res->outlen, out, outlen);
        res->outlen += outlen;
        off += consumed;
        res->consumed += consumed;
        if (rc != LSEC__AGAIN || off == len)
            break;
        /* Bounded: every call either consumes or is one of the empty steps
         * the generator allows, which are a minority. */
        FUZZ_ASSERT(res->calls < 100000);
    }
}

/* After the end (DONE or an error), every further step fails the same way
 * and neither consumes nor writes. */
static inline void check_final(lsec__hs *h, int rc)
{
    uint8_t more[8] = {0}, out[LSEC__HS_MSG_MAX];
    size_t consumed = 1, outlen = 1;
    int again = lsec__hs_step(h, more, sizeof(more), &consumed, out,
                              sizeof(out), &outlen);

    FUZZ_ASSERT(consumed == 0 && outlen == 0);
    if (rc == LSEC__DONE)
        FUZZ_ASSERT(again == LSEC_EINVAL);
    else
        FUZZ_ASSERT(again == rc);
}

/* The keys are gone once the handshake has ended either way. */
static inline void check_keys_wiped(const lsec__hs *h)
{
    static const uint8_t zero[LSEC__KEY_BYTES];
    FUZZ_ASSERT(memcmp(h->k_client, zero, sizeof(zero)) == 0);
    FUZZ_ASSERT(memcmp(h->k_server, zero, sizeof(zero)) == 0);
}

static inline void fuzz_addr_v4(lsec__addr *a, uint16_t port)
{
    memset(a, 0, sizeof(*a));
    a->family = AF_INET;
    a->ip[0] = 127;
    a->ip[3] = 1;
    a->port = port;
}

/* PROTOCOL.md: a peer's nonce of 32 zero bytes, or equal to the
 * receiver's own, is EPROTO as soon as its last byte (hello byte 39) is
 * in. */
static inline bool ref_nonce_bad(const uint8_t peer[32], const uint8_t own[32])
{
    static const uint8_t zero[32];
    return memcmp(peer, zero, 32) == 0 || memcmp(peer, own, 32) == 0;
}

/* What both harnesses read first: flags, the chunking seed, both nonces;
 * and the two endpoints (IPv6 when flags has 0x40). */
struct hs_setup {
    uint8_t flags;
    prng r;
    uint8_t srv_nonce[32], cli_nonce[32];
    lsec__addr srv, cli;
};

static inline void hs_setup_read(fz *f, struct hs_setup *st)
{
    const uint8_t *p;
    size_t k;

    if (lsec__init() != 0)
        abort();
    memset(st, 0, sizeof(*st));
    st->flags = fz_u8(f);
    st->r.s = (uint32_t)fz_u16(f) << 16 | fz_u16(f);
    k = fz_take(f, 32, &p);
    memcpy(st->srv_nonce, p, k);
    k = fz_take(f, 32, &p);
    memcpy(st->cli_nonce, p, k);
    fuzz_addr_v4(&st->srv, 40000);
    fuzz_addr_v4(&st->cli, 50001);
    if (st->flags & 0x40) {
        st->srv.family = st->cli.family = AF_INET6;
        memset(st->srv.ip, 0, 16);
        memset(st->cli.ip, 0, 16);
        st->srv.ip[15] = st->cli.ip[15] = 1;
    }
}

#endif /* LOOPSEC_FUZZ_HS_H */
