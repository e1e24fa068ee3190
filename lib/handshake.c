/*
 * The auth-mode handshake (PROTOCOL.md "Handshake"): a sans-I/O state machine
 * that takes received bytes and gives bytes to send.  It may be fed one byte
 * at a time or several messages at once; it never consumes a byte beyond the
 * end of the handshake, so application bytes that arrive in the same read are
 * left to the caller.
 *
 *   client                                   server
 *   ClientHello (40)        ------------->   checked byte by byte
 *                           <-------------   ServerHello (72), with proof
 *   checks the server proof
 *   ClientFinish (32), DONE ------------->   checks the client proof, DONE
 */
#include "internal.h"

#include <sodium.h>
#include <string.h>

enum {
    ST_CLIENT_START = 1, /* nothing sent yet */
    ST_CLIENT_WAIT_SH,   /* ClientHello sent, reading the ServerHello */
    ST_SERVER_WAIT_CH,   /* reading the ClientHello */
    ST_SERVER_WAIT_FIN,  /* ServerHello produced, reading the ClientFinish */
    ST_DONE,
    ST_FAILED
};

#define HELLO LSEC__HS_HELLO_BYTES
#define SHELLO LSEC__HS_SHELLO_BYTES
#define FINISH LSEC__HS_FINISH_BYTES
#define PROOF 32
#define VERSION 0x01

/* Proof labels (PROTOCOL.md "Transcript"); ASCII, no NUL on the wire. */
#define LABEL_SERVER_PROOF "loopsec/1 server proof"
#define LABEL_CLIENT_PROOF "loopsec/1 client proof"

static const uint8_t magic[4] = {0x4c, 0x53, 0x45, 0x43}; /* "LSEC" */

/* Both hellos share this 40-byte layout; the ServerHello appends a proof. */
static void write_hello(uint8_t p[HELLO], int mode,
                        const uint8_t nonce[LSEC__HS_NONCE_BYTES])
{
    memcpy(p, magic, sizeof(magic));
    p[4] = VERSION;
    p[5] = (uint8_t)mode;
    p[6] = 0x00; /* flags: none defined, must be zero */
    p[7] = 0x00;
    memcpy(p + 8, nonce, LSEC__HS_NONCE_BYTES);
}

/*
 * proof = BLAKE2b-256(key, label || transcript[0..tlen) || ep_client ||
 * ep_server), keyed BLAKE2b (RFC 7693).  Every part but the label has a
 * fixed length, and the label is fixed per role, so the concatenation is
 * unambiguous.
 */
static void compute_proof(uint8_t out[PROOF], const lsec__hs *h,
                          const uint8_t key[LSEC__KEY_BYTES], const char *label,
                          size_t tlen)
{
    crypto_generichash_state st;

    (void)crypto_generichash_init(&st, key, LSEC__KEY_BYTES, PROOF);
    (void)crypto_generichash_update(&st, (const unsigned char *)label,
                                    strlen(label));
    (void)crypto_generichash_update(&st, h->transcript, tlen);
    (void)crypto_generichash_update(&st, h->ep_client, LSEC__EP_BYTES);
    (void)crypto_generichash_update(&st, h->ep_server, LSEC__EP_BYTES);
    (void)crypto_generichash_final(&st, out, PROOF);
    /* The state held the key block: wipe it. */
    sodium_memzero(&st, sizeof(st));
}

static void wipe_keys(lsec__hs *h)
{
    sodium_memzero(h->k_client, sizeof(h->k_client));
    sodium_memzero(h->k_server, sizeof(h->k_server));
}

/* Every failure is final: the keys go at once and each later step repeats
 * the same code, so a caller cannot talk a dead handshake into life. */
static int die(lsec__hs *h, int code, const char *why)
{
    wipe_keys(h);
    h->state = ST_FAILED;
    h->err = code;
    return lsec__fail(code, "handshake: %s", why);
}

static int finish_ok(lsec__hs *h)
{
    /* Nothing secret is needed after this point. */
    wipe_keys(h);
    h->state = ST_DONE;
    return LSEC__DONE;
}

/*
 * Check byte `pos` of a hello's fixed header as it arrives, so that a peer
 * speaking another protocol is refused on its first wrong byte.
 */
static int check_hello_byte(lsec__hs *h, size_t pos, uint8_t b)
{
    if (pos == 0 && h->role == LSEC__ROLE_CLIENT && (b == 0x15 || b == 0x16))
        /* A TLS record (alert or handshake) where a ServerHello belongs:
         * the ticket says auth, the listener speaks TLS. */
        return die(h, LSEC_EMODE, "the server answered with TLS");
    if (pos < sizeof(magic)) {
        if (b != magic[pos])
            return die(h, LSEC_EPROTO, "not a loopsec hello");
    } else if (pos == 4) {
        if (b != VERSION)
            return die(h, LSEC_EPROTO, "unsupported protocol version");
    } else if (pos == 5) {
        /* The mode is local policy: a hello for any other mode ends the
         * handshake, it is never negotiated. */
        if (b != (uint8_t)h->mode)
            return die(h, LSEC_EMODE, "the peer's mode differs");
    } else if (pos == 6 || pos == 7) {
        if (b != 0x00)
            return die(h, LSEC_EPROTO, "unknown hello flags");
    }
    return 0;
}

/*
 * The peer's nonce (bytes 8..39 of its hello, complete): all zero is no
 * fresh nonce, and our own nonce sent back is a reflection.  Both are
 * LSEC_EPROTO, checked in constant time (nonces are public, but the check
 * costs nothing and leaks nothing either way).
 */
static int check_peer_nonce(lsec__hs *h, const uint8_t *peer_hello)
{
    const uint8_t *n = peer_hello + 8;

    if (sodium_is_zero(n, LSEC__HS_NONCE_BYTES))
        return die(h, LSEC_EPROTO, "the peer's nonce is all zero");
    if (sodium_memcmp(n, h->nonce_local, LSEC__HS_NONCE_BYTES) == 0)
        return die(h, LSEC_EPROTO, "the peer's nonce equals ours");
    return 0;
}

/* The ClientHello is complete: answer with the ServerHello and its proof. */
static void server_hello(lsec__hs *h)
{
    write_hello(h->transcript + HELLO, h->mode, h->nonce_local);
    compute_proof(h->transcript + 2 * HELLO, h, h->k_server, LABEL_SERVER_PROOF,
                  2 * HELLO);
    h->transcript_len = HELLO + SHELLO;
    h->state = ST_SERVER_WAIT_FIN;
}

/* The ClientFinish is complete: does it prove the client's key? */
static int server_verify(lsec__hs *h)
{
    uint8_t expect[PROOF];
    int bad;

    compute_proof(expect, h, h->k_client, LABEL_CLIENT_PROOF, HELLO + SHELLO);
    /* Constant time; every proof failure is the same LSEC_EAUTH. */
    bad = crypto_verify_32(expect, h->finish);
    sodium_memzero(expect, sizeof(expect));
    if (bad != 0)
        return die(h, LSEC_EAUTH, "the client's proof did not verify");
    return finish_ok(h);
}

/* The ServerHello is complete: check the server's proof, then prove ours. */
static int client_verify(lsec__hs *h, uint8_t *out, size_t *outlen)
{
    uint8_t expect[PROOF];
    int bad;

    compute_proof(expect, h, h->k_server, LABEL_SERVER_PROOF, 2 * HELLO);
    bad = crypto_verify_32(expect, h->transcript + 2 * HELLO);
    sodium_memzero(expect, sizeof(expect));
    if (bad != 0)
        return die(h, LSEC_EAUTH, "the server's proof did not verify");
    compute_proof(out, h, h->k_client, LABEL_CLIENT_PROOF, HELLO + SHELLO);
    *outlen = FINISH;
    return finish_ok(h);
}

int lsec__hs_init_keys(lsec__hs *h, int role, int mode,
                       const uint8_t k_client[LSEC__KEY_BYTES],
                       const uint8_t k_server[LSEC__KEY_BYTES],
                       const lsec__addr *local, const lsec__addr *remote,
                       const uint8_t *nonce)
{
    const lsec__addr *client, *server;

    if (h == NULL)
        return lsec__fail(LSEC_EINVAL, "handshake: no state");
    sodium_memzero(h, sizeof(*h));
    if ((role != LSEC__ROLE_CLIENT && role != LSEC__ROLE_SERVER) ||
        k_client == NULL || k_server == NULL || local == NULL || remote == NULL)
        return lsec__fail(LSEC_EINVAL, "handshake: bad arguments");
    /* This state machine is the auth mode; tls mode never runs it. */
    if (mode != LSEC_MODE_AUTH)
        return lsec__fail(LSEC_EINVAL, "handshake: mode %d is not auth", mode);
    h->role = role;
    h->mode = mode;
    memcpy(h->k_client, k_client, LSEC__KEY_BYTES);
    memcpy(h->k_server, k_server, LSEC__KEY_BYTES);
    /* Each side binds its own view of the connection: (local, remote) on
     * the client is (remote, local) on the server.  A relay between two
     * connections makes the views differ, and both proofs fail. */
    client = role == LSEC__ROLE_CLIENT ? local : remote;
    server = role == LSEC__ROLE_CLIENT ? remote : local;
    lsec__addr_endpoint(client, h->ep_client);
    lsec__addr_endpoint(server, h->ep_server);
    if (nonce != NULL)
        memcpy(h->nonce_local, nonce, LSEC__HS_NONCE_BYTES);
    else
        lsec__random(h->nonce_local, LSEC__HS_NONCE_BYTES);
    h->state = role == LSEC__ROLE_CLIENT ? ST_CLIENT_START : ST_SERVER_WAIT_CH;
    return 0;
}

int lsec__hs_init(lsec__hs *h, int role, int mode,
                  const uint8_t secret[LSEC_SECRET_BYTES],
                  const lsec__addr *local, const lsec__addr *remote,
                  const uint8_t *nonce)
{
    uint8_t k_client[LSEC__KEY_BYTES], k_server[LSEC__KEY_BYTES];
    int rc;

    if (secret == NULL) {
        if (h != NULL)
            sodium_memzero(h, sizeof(*h));
        return lsec__fail(LSEC_EINVAL, "handshake: bad arguments");
    }
    lsec__hs_keys(secret, k_client, k_server);
    rc = lsec__hs_init_keys(h, role, mode, k_client, k_server, local, remote,
                            nonce);
    sodium_memzero(k_client, sizeof(k_client));
    sodium_memzero(k_server, sizeof(k_server));
    return rc;
}

void lsec__hs_keys(const uint8_t secret[LSEC_SECRET_BYTES],
                   uint8_t k_client[LSEC__KEY_BYTES],
                   uint8_t k_server[LSEC__KEY_BYTES])
{
    lsec__kdf(k_client, secret, LSEC__LABEL_AUTH_CLIENT);
    lsec__kdf(k_server, secret, LSEC__LABEL_AUTH_SERVER);
}

/* Take one received byte; LSEC__AGAIN while the handshake goes on. */
static int take_byte(lsec__hs *h, uint8_t b, uint8_t *out, size_t *outlen)
{
    int rc;

    switch (h->state) {
    case ST_SERVER_WAIT_CH:
        rc = check_hello_byte(h, h->transcript_len, b);
        if (rc != 0)
            return rc;
        h->transcript[h->transcript_len++] = b;
        if (h->transcript_len == HELLO) {
            if ((rc = check_peer_nonce(h, h->transcript)) != 0)
                return rc;
            server_hello(h);
            memcpy(out, h->transcript + HELLO, SHELLO);
            *outlen = SHELLO;
        }
        return LSEC__AGAIN;
    case ST_SERVER_WAIT_FIN:
        h->finish[h->finish_len++] = b;
        if (h->finish_len == FINISH)
            return server_verify(h);
        return LSEC__AGAIN;
    case ST_CLIENT_WAIT_SH:
        rc = check_hello_byte(h, h->transcript_len - HELLO, b);
        if (rc != 0)
            return rc;
        h->transcript[h->transcript_len++] = b;
        if (h->transcript_len == 2 * HELLO &&
            (rc = check_peer_nonce(h, h->transcript + HELLO)) != 0)
            return rc;
        if (h->transcript_len == HELLO + SHELLO)
            return client_verify(h, out, outlen);
        return LSEC__AGAIN;
    default:
        return die(h, LSEC_EINVAL, "corrupt state");
    }
}

int lsec__hs_step(lsec__hs *h, const uint8_t *in, size_t inlen,
                  size_t *consumed, uint8_t *out, size_t outcap, size_t *outlen)
{
    size_t used = 0;
    int rc = LSEC__AGAIN;

    if (consumed != NULL)
        *consumed = 0;
    if (outlen != NULL)
        *outlen = 0;
    if (h == NULL || consumed == NULL || out == NULL || outlen == NULL ||
        outcap < LSEC__HS_MSG_MAX || (in == NULL && inlen > 0))
        return lsec__fail(LSEC_EINVAL, "handshake: bad arguments");
    switch (h->state) {
    case ST_FAILED:
        return lsec__fail(h->err, "handshake: already failed");
    case ST_DONE:
        return lsec__fail(LSEC_EINVAL, "handshake: already complete");
    case ST_CLIENT_START:
        /* The server never speaks first: bytes before our hello are not
         * loopsec. */
        if (inlen > 0)
            return die(h, LSEC_EPROTO, "the server spoke first");
        write_hello(h->transcript, h->mode, h->nonce_local);
        h->transcript_len = HELLO;
        memcpy(out, h->transcript, HELLO);
        *outlen = HELLO;
        h->state = ST_CLIENT_WAIT_SH;
        return LSEC__AGAIN;
    case ST_CLIENT_WAIT_SH:
    case ST_SERVER_WAIT_CH:
    case ST_SERVER_WAIT_FIN:
        break;
    default:
        return lsec__fail(LSEC_EINVAL, "handshake: not initialised");
    }
    /* One byte at a time, stopping at the last byte of the handshake: what
     * follows it in `in` belongs to the application. */
    while (used < inlen && rc == LSEC__AGAIN)
        rc = take_byte(h, in[used++], out, outlen);
    *consumed = used;
    if (rc < 0)
        /* Nothing is sent after a failure, not even a ServerHello that was
         * produced in this call: the caller just closes. */
        *outlen = 0;
    return rc;
}

void lsec__hs_wipe(lsec__hs *h)
{
    if (h != NULL)
        sodium_memzero(h, sizeof(*h));
}
