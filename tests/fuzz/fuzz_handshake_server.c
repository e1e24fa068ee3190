/*
 * fuzz_handshake_server: the server side of the auth handshake
 * (lib/handshake.c), fed in random chunks either arbitrary bytes or the
 * messages of a real client that may hold the wrong secret, see other
 * endpoints (a relay) or have a byte of its messages altered.
 *
 * Judged against the reference in fuzz_hs.h (docs/PROTOCOL.md):
 *   - LSEC__DONE exactly when the 32 bytes after a well-formed
 *     ClientHello are the right client proof, never otherwise;
 *   - an error at the first wrong header byte, with the code PROTOCOL.md
 *     gives it, having consumed exactly up to that byte;
 *   - nothing written but the one ServerHello, only after a complete,
 *     well-formed ClientHello, and it is exactly the reference ServerHello;
 *   - never a byte consumed beyond the ClientFinish; keys wiped at the end;
 *     every later step repeats the outcome.
 */
#include "fuzz_hs.h"

static const uint8_t secret[LSEC_SECRET_BYTES] = {
    0x5e, 0xc7, 0x3e, 0x7a, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
    0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12,
    0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c};

#define STREAM_MAX 1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = fz_init(data, size);
    uint8_t stream[STREAM_MAX], exp_sh[REF_SHELLO], proof[32];
    size_t slen = 0, k;
    const uint8_t *p;
    struct hs_setup st;
    lsec__hs s, c;
    feed_result res;
    int code, bad, honest_ok = 0;

    hs_setup_read(&f, &st);
    memset(&res, 0, sizeof(res));
    FUZZ_ASSERT(lsec__hs_init(&s, LSEC__ROLE_SERVER, LSEC_MODE_AUTH, secret,
                              &st.srv, &st.cli, st.srv_nonce) == 0);

    if (st.flags & 1) {
        /* A real client, possibly wrong in one way or another. */
        uint8_t csecret[LSEC_SECRET_BYTES], out[LSEC__HS_MSG_MAX];
        lsec__addr cview = st.srv;
        size_t consumed, outlen;
        feed_result cres;

        memcpy(csecret, secret, sizeof(csecret));
        if (st.flags & 2)
            csecret[fz_u8(&f) % 32] ^= (uint8_t)(fz_u8(&f) | 1);
        if (st.flags & 4)
            cview.port ^= (uint16_t)(fz_u8(&f) | 1); /* a relay */
        FUZZ_ASSERT(lsec__hs_init(&c, LSEC__ROLE_CLIENT, LSEC_MODE_AUTH,
                                  csecret, &st.cli, &cview, st.cli_nonce) == 0);
        FUZZ_ASSERT(lsec__hs_step(&c, NULL, 0, &consumed, out, sizeof(out),
                                  &outlen) == LSEC__AGAIN);
        FUZZ_ASSERT(outlen == REF_HELLO);
        memcpy(stream, out, REF_HELLO);
        slen = REF_HELLO;
        if (st.flags & 8)
            stream[fz_u8(&f) % REF_HELLO] ^= (uint8_t)(fz_u8(&f) | 1);
        feed(&s, stream, slen, &st.r, &res);
        memset(&cres, 0, sizeof(cres));
        if (res.rc == LSEC__AGAIN && res.outlen == REF_SHELLO)
            feed(&c, res.out, res.outlen, &st.r, &cres);
        if (cres.rc == LSEC__DONE) {
            FUZZ_ASSERT(cres.outlen == REF_FINISH);
            memcpy(stream + slen, cres.out, REF_FINISH);
            if (st.flags & 16)
                stream[slen + fz_u8(&f) % REF_FINISH] ^=
                    (uint8_t)(fz_u8(&f) | 1);
            slen += REF_FINISH;
            /* Application bytes in the same read: never consumed. */
            k = fz_take(&f, 64, &p);
            memcpy(stream + slen, p, k);
            slen += k;
            feed(&s, stream + res.consumed, slen - res.consumed, &st.r, &res);
        }
        honest_ok = !(st.flags & (2 | 4 | 8 | 16)) &&
                    !ref_nonce_bad(st.cli_nonce, st.srv_nonce) &&
                    !ref_nonce_bad(st.srv_nonce, st.cli_nonce);
        if (honest_ok)
            FUZZ_ASSERT(cres.rc == LSEC__DONE);
        lsec__hs_wipe(&c);
    } else {
        slen = fz_take(&f, STREAM_MAX, &p);
        memcpy(stream, p, slen);
        feed(&s, stream, slen, &st.r, &res);
    }

    /* The reference ServerHello for this ClientHello. */
    memcpy(exp_sh, ref_magic, 4);
    exp_sh[4] = 0x01;
    exp_sh[5] = LSEC_MODE_AUTH;
    exp_sh[6] = exp_sh[7] = 0;
    memcpy(exp_sh + 8, st.srv_nonce, 32);
    if (slen >= REF_HELLO)
        ref_proof(exp_sh + REF_HELLO, secret, 1, stream, exp_sh, &st.cli,
                  &st.srv);

    bad =
        ref_header_error(stream, slen < 8 ? slen : 8, LSEC__ROLE_SERVER, &code);
    if (bad >= 0) {
        FUZZ_ASSERT(res.rc == code);
        FUZZ_ASSERT(res.consumed == (size_t)bad + 1);
        FUZZ_ASSERT(res.outlen == 0);
    } else if (slen < REF_HELLO) {
        FUZZ_ASSERT(res.rc == LSEC__AGAIN);
        FUZZ_ASSERT(res.consumed == slen);
        FUZZ_ASSERT(res.outlen == 0);
    } else if (ref_nonce_bad(stream + 8, st.srv_nonce)) {
        FUZZ_ASSERT(res.rc == LSEC_EPROTO);
        FUZZ_ASSERT(res.consumed == REF_HELLO);
        FUZZ_ASSERT(res.outlen == 0);
    } else {
        /* Only ever the ServerHello, byte for byte. */
        FUZZ_ASSERT(res.outlen == 0 || res.outlen == REF_SHELLO);
        if (res.outlen == REF_SHELLO)
            FUZZ_ASSERT(memcmp(res.out, exp_sh, REF_SHELLO) == 0);
        if (slen < REF_HELLO + REF_FINISH) {
            FUZZ_ASSERT(res.rc == LSEC__AGAIN);
            FUZZ_ASSERT(res.consumed == slen);
            FUZZ_ASSERT(res.outlen == REF_SHELLO);
        } else {
            ref_proof(proof, secret, 0, stream, exp_sh, &st.cli, &st.srv);
            FUZZ_ASSERT(res.consumed == REF_HELLO + REF_FINISH);
            if (memcmp(stream + REF_HELLO, proof, 32) == 0) {
                FUZZ_ASSERT(res.rc == LSEC__DONE);
                FUZZ_ASSERT(res.outlen == REF_SHELLO);
            } else {
                FUZZ_ASSERT(res.rc == LSEC_EAUTH);
            }
        }
    }
    if (honest_ok)
        FUZZ_ASSERT(res.rc == LSEC__DONE);
    if (res.rc != LSEC__AGAIN) {
        check_final(&s, res.rc);
        check_keys_wiped(&s);
    }
    lsec__hs_wipe(&s);
    return 0;
}
