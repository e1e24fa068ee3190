/*
 * fuzz_handshake_client: the client side of the auth handshake
 * (lib/handshake.c), fed in random chunks either arbitrary bytes or the
 * ServerHello of a real server that may hold the wrong secret, see other
 * endpoints (a relay) or have a byte altered.
 *
 * Judged against the reference in fuzz_hs.h (docs/PROTOCOL.md):
 *   - bytes before the ClientHello was sent: LSEC_EPROTO;
 *   - the ClientHello is exactly the reference one;
 *   - LSEC__DONE exactly when the ServerHello carries the right server
 *     proof, and then the one output is the reference ClientFinish;
 *   - an error at the first wrong header byte (a TLS record byte first:
 *     LSEC_EMODE), having consumed exactly up to that byte, writing
 *     nothing;
 *   - never a byte consumed beyond the ServerHello; keys wiped at the end.
 */
#include "fuzz_hs.h"

static const uint8_t secret[LSEC_SECRET_BYTES] = {
    0xc1, 0x1e, 0x47, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
    0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12,
    0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c};

#define STREAM_MAX 1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = fz_init(data, size);
    uint8_t stream[STREAM_MAX], ch[REF_HELLO], out[LSEC__HS_MSG_MAX];
    uint8_t proof[32];
    size_t slen = 0, k, consumed, outlen;
    const uint8_t *p;
    struct hs_setup st;
    lsec__hs c, s;
    feed_result res;
    int code, bad, rc, honest_ok = 0;

    hs_setup_read(&f, &st);
    FUZZ_ASSERT(lsec__hs_init(&c, LSEC__ROLE_CLIENT, LSEC_MODE_AUTH, secret,
                              &st.cli, &st.srv, st.cli_nonce) == 0);

    if (st.flags & 0x80) {
        /* The server spoke first: refused before anything is sent. */
        uint8_t early[4] = {0x4c, 0x53, 0x45, 0x43};
        rc = lsec__hs_step(&c, early, 1 + fz_u8(&f) % 4, &consumed, out,
                           sizeof(out), &outlen);
        FUZZ_ASSERT(rc == LSEC_EPROTO);
        FUZZ_ASSERT(outlen == 0);
        check_final(&c, rc);
        check_keys_wiped(&c);
        lsec__hs_wipe(&c);
        return 0;
    }

    /* The ClientHello: header, then our nonce, nothing else. */
    rc = lsec__hs_step(&c, NULL, 0, &consumed, out, sizeof(out), &outlen);
    FUZZ_ASSERT(rc == LSEC__AGAIN && outlen == REF_HELLO);
    memcpy(ch, ref_magic, 4);
    ch[4] = 0x01;
    ch[5] = LSEC_MODE_AUTH;
    ch[6] = ch[7] = 0;
    memcpy(ch + 8, st.cli_nonce, 32);
    FUZZ_ASSERT(memcmp(out, ch, REF_HELLO) == 0);

    memset(&res, 0, sizeof(res));
    if (st.flags & 1) {
        /* A real server, possibly wrong in one way or another. */
        uint8_t ssecret[LSEC_SECRET_BYTES];
        lsec__addr sview = st.cli;
        feed_result sres;

        memcpy(ssecret, secret, sizeof(ssecret));
        if (st.flags & 2)
            ssecret[fz_u8(&f) % 32] ^= (uint8_t)(fz_u8(&f) | 1);
        if (st.flags & 4)
            sview.port ^= (uint16_t)(fz_u8(&f) | 1); /* a relay */
        FUZZ_ASSERT(lsec__hs_init(&s, LSEC__ROLE_SERVER, LSEC_MODE_AUTH,
                                  ssecret, &st.srv, &sview, st.srv_nonce) == 0);
        memset(&sres, 0, sizeof(sres));
        feed(&s, ch, REF_HELLO, &st.r, &sres);
        if (ref_nonce_bad(st.cli_nonce, st.srv_nonce)) {
            /* The server refuses our nonce; nothing to answer. */
            FUZZ_ASSERT(sres.rc == LSEC_EPROTO && sres.outlen == 0);
            lsec__hs_wipe(&s);
            lsec__hs_wipe(&c);
            return 0;
        }
        FUZZ_ASSERT(sres.rc == LSEC__AGAIN && sres.outlen == REF_SHELLO);
        memcpy(stream, sres.out, REF_SHELLO);
        slen = REF_SHELLO;
        if (st.flags & 8)
            stream[fz_u8(&f) % REF_SHELLO] ^= (uint8_t)(fz_u8(&f) | 1);
        /* Bytes behind the ServerHello (a server never sends any before
         * the ClientFinish, but the client must not take them). */
        k = fz_take(&f, 64, &p);
        memcpy(stream + slen, p, k);
        slen += k;
        feed(&c, stream, slen, &st.r, &res);
        honest_ok = !(st.flags & (2 | 4 | 8)) &&
                    !ref_nonce_bad(st.srv_nonce, st.cli_nonce);
        if (honest_ok) {
            /* The server accepts the finish the client produced. */
            FUZZ_ASSERT(res.rc == LSEC__DONE);
            memset(&sres, 0, sizeof(sres));
            feed(&s, res.out, res.outlen, &st.r, &sres);
            FUZZ_ASSERT(sres.rc == LSEC__DONE);
        }
        lsec__hs_wipe(&s);
    } else {
        slen = fz_take(&f, STREAM_MAX, &p);
        memcpy(stream, p, slen);
        feed(&c, stream, slen, &st.r, &res);
    }

    bad =
        ref_header_error(stream, slen < 8 ? slen : 8, LSEC__ROLE_CLIENT, &code);
    if (bad >= 0) {
        FUZZ_ASSERT(res.rc == code);
        FUZZ_ASSERT(res.consumed == (size_t)bad + 1);
        FUZZ_ASSERT(res.outlen == 0);
    } else if (slen >= REF_HELLO && ref_nonce_bad(stream + 8, st.cli_nonce)) {
        FUZZ_ASSERT(res.rc == LSEC_EPROTO);
        FUZZ_ASSERT(res.consumed == REF_HELLO);
        FUZZ_ASSERT(res.outlen == 0);
    } else if (slen < REF_SHELLO) {
        FUZZ_ASSERT(res.rc == LSEC__AGAIN);
        FUZZ_ASSERT(res.consumed == slen);
        FUZZ_ASSERT(res.outlen == 0);
    } else {
        FUZZ_ASSERT(res.consumed == REF_SHELLO);
        ref_proof(proof, secret, 1, ch, stream, &st.cli, &st.srv);
        if (memcmp(stream + REF_HELLO, proof, 32) == 0) {
            FUZZ_ASSERT(res.rc == LSEC__DONE);
            FUZZ_ASSERT(res.outlen == REF_FINISH);
            ref_proof(proof, secret, 0, ch, stream, &st.cli, &st.srv);
            FUZZ_ASSERT(memcmp(res.out, proof, 32) == 0);
        } else {
            FUZZ_ASSERT(res.rc == LSEC_EAUTH);
            FUZZ_ASSERT(res.outlen == 0);
        }
    }
    if (honest_ok)
        FUZZ_ASSERT(res.rc == LSEC__DONE);
    if (res.rc != LSEC__AGAIN) {
        check_final(&c, res.rc);
        check_keys_wiped(&c);
    }
    lsec__hs_wipe(&c);
    return 0;
}
