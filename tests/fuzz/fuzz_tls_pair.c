/*
 * fuzz_tls_pair: a loopsec TLS client and server engine (lib/tls.c,
 * lib/tls_ctx.c) talking through their own buffers: the harness moves the
 * ciphertext each one leaves in `out` into the other's `in` (tls_engine.h),
 * so the fuzzer owns every byte between them and how it is cut up, with no
 * socket and no faked system call (the shell, lib/tls_io.c, only does this
 * same moving through the seam).
 *
 * Scenarios (first input byte):
 *   0  man in the middle: an honest pair with the right PSK, the fuzzer
 *      flips bytes at chosen offsets of either direction, or cuts a
 *      direction short (the end of the stream); short reads throughout;
 *   1  the server alone, fed the fuzzer's bytes as the client's stream;
 *   2  the client alone, fed the fuzzer's bytes as the server's stream;
 *   3  the client talking to itself (its bytes reflected: "Selfie");
 *   4  an honest pair that does not share the PSK (wrong secret or wrong
 *      identity).
 * Properties: no crash, leak or undefined behaviour; every failure is one of
 * the documented codes with a printable detail; no side that lacks the
 * peer's proof of the PSK ever completes a handshake (1, 2, 3, 4); what
 * arrives after a handshake is exactly what was sent, or the connection
 * fails; an untouched honest pair always completes and delivers.
 */
#include "fuzz_common.h"
#include "internal.h"
#include "testing.h"
#include "tls_engine.h"

#define FD_UNUSED 1000 /* the engine never touches its descriptor */
#define MAX_EDITS 8
#define PAYLOAD_MAX 4096
#define STREAM_MAX (256 * 1024)

static const uint8_t secret[LSEC_SECRET_BYTES] = {
    0x7e, 0x15, 0xf0, 0x22, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
    0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12,
    0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c};
static const char identity[] = "loopsec/1 0123456789abcdef";

/* One direction of the connection: what the middle does to it. */
struct pipe {
    size_t total; /* bytes ever delivered: the offset edits refer to */
    size_t cut;   /* the end of the stream after this many (SIZE_MAX: never) */
    bool discard; /* nobody reads: drop what is written */
    const uint8_t *feed; /* scenarios 1, 2: the fuzzer's stream */
    size_t feed_len, feed_off;
    struct {
        size_t at;
        uint8_t xor ;
    } edit[MAX_EDITS];
    int nedit;
};

static struct pipe c2s, s2c;
static uint32_t rng;

/* A short count now and then: 1 byte, a few, or everything. */
static size_t some(size_t n)
{
    return fz_some(&rng, n);
}

/* Deliver some of `n` bytes at `src` to `dst` through `p`; how many were
 * taken from src (all of them when dropped). */
static size_t deliver(struct pipe *p, const uint8_t *src, size_t n,
                      lsec__tls *dst)
{
    size_t room;
    uint8_t *q;

    if (p->discard || dst == NULL)
        return n;
    if (p->total >= p->cut) {
        dst->eof = true; /* the connection was cut here */
        return n;
    }
    n = some(n);
    if (n > p->cut - p->total)
        n = p->cut - p->total;
    if (dst->in.len - dst->in.off + n > STREAM_MAX)
        return 0; /* the reader's "socket buffer" is full */
    q = lsec__tlsbuf_room(&dst->in, dst->in.len - dst->in.off + n, &room);
    FUZZ_ASSERT(q != NULL && room >= n);
    memcpy(q, src, n);
    for (int i = 0; i < p->nedit; i++)
        if (p->edit[i].at >= p->total && p->edit[i].at < p->total + n)
            q[p->edit[i].at - p->total] ^= p->edit[i].xor ;
    dst->in.len += n;
    p->total += n;
    if (p->total >= p->cut)
        dst->eof = true;
    return n;
}

/* Move what `src` wrote (or the fuzzer's stream) towards `dst`; true if
 * anything moved. */
static bool move(struct pipe *p, lsec__tls *src, lsec__tls *dst)
{
    size_t n = 0;

    if (p->feed != NULL && p->feed_off < p->feed_len) {
        n = deliver(p, p->feed + p->feed_off, p->feed_len - p->feed_off, dst);
        p->feed_off += n;
        if (p->feed_off == p->feed_len && dst != NULL)
            dst->eof = true;
        return n > 0;
    }
    if (src == NULL || src->out.off == src->out.len)
        return false;
    n = deliver(p, src->out.b + src->out.off, src->out.len - src->out.off, dst);
    src->out.off += n;
    return n > 0;
}

static void check_failure(int rc)
{
    /* EIO needs a socket error, and there is no socket. */
    FUZZ_ASSERT(rc == LSEC_EAUTH || rc == LSEC_EMODE || rc == LSEC_ETLS ||
                rc == LSEC_ECLOSED || rc == LSEC_ERESET || rc == LSEC_EPROTO);
    FUZZ_ASSERT(fz_printable(lsec_last_detail()));
}

/* Log lines must be printable and never carry the PSK or the secret. */
static char psk_hex[2 * LSEC__KEY_BYTES + 1], secret_b64[64];

static void on_log(void *arg, int level, const char *msg)
{
    (void)arg;
    (void)level;
    FUZZ_ASSERT(fz_printable(msg));
    FUZZ_ASSERT(strstr(msg, psk_hex) == NULL);
    FUZZ_ASSERT(strstr(msg, secret_b64) == NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    uint8_t psk[LSEC__KEY_BYTES];

    (void)argc;
    (void)argv;
    if (lsec__init() != 0)
        abort();
    lsec__tls_psk(psk, secret);
    if (lsec__hex_encode(psk_hex, sizeof(psk_hex), psk, sizeof(psk)) != 0 ||
        lsec__b64_encode(secret_b64, sizeof(secret_b64), secret,
                         sizeof(secret)) != 0)
        abort();
    lsec_set_log(on_log, NULL, LSEC_LOG_DEBUG);
    return 0;
}

/* One side's progress: its handshake, then its share of the data. */
struct side {
    lsec__tls *t;
    int hs; /* 0 done, WANT_*, or the failure */
    int io; /* 0, or the failure after the handshake */
    const uint8_t *out;
    size_t out_len, out_done;
    uint8_t in[PAYLOAD_MAX];
    size_t in_len, in_want;
};

/* Advance `s` once; true if anything happened. */
static bool drive(struct side *s)
{
    size_t n;
    int rc;

    if (s->t == NULL || s->io != 0 || (s->hs != 0 && s->hs != LSEC__WANT_READ))
        return false;
    if (s->hs != 0) {
        size_t before = s->t->in.off, wrote = s->t->out.len;
        rc = lsec__tlse_handshake(s->t);
        if (rc < 0)
            check_failure(rc);
        else
            FUZZ_ASSERT(rc == 0 || rc == LSEC__WANT_READ);
        s->hs = rc;
        return rc != LSEC__WANT_READ || s->t->in.off != before ||
               s->t->out.len != wrote;
    }
    if (s->out_done < s->out_len) {
        size_t len = s->out_len - s->out_done;
        if ((rc = lsec__tlse_io_check(s->t, s->out + s->out_done, len, &n)) !=
            0) {
            /* Only the sticky failure of a record read ahead (tls.c). */
            FUZZ_ASSERT(rc == s->t->fatal);
            check_failure(rc);
            s->io = rc;
            return true;
        }
        rc = lsec__tlse_write(s->t, s->out + s->out_done, len, &n);
        if (rc == 0) {
            FUZZ_ASSERT(n == len);
            s->out_done += n;
            return true;
        }
        FUZZ_ASSERT(rc < 0);
        check_failure(rc);
        s->io = rc;
        return true;
    }
    if (s->in_len < s->in_want) {
        size_t before = s->t->in.off;
        size_t len = s->in_want - s->in_len;
        if ((rc = lsec__tlse_io_check(s->t, s->in + s->in_len, len, &n)) != 0) {
            /* Only the sticky failure of a record read ahead (tls.c). */
            FUZZ_ASSERT(rc == s->t->fatal);
            check_failure(rc);
            s->io = rc;
            return true;
        }
        rc = lsec__tlse_read(s->t, s->in + s->in_len, len, &n);
        if (rc == 0) {
            FUZZ_ASSERT(n > 0 && n <= len);
            s->in_len += n;
            return true;
        }
        if (rc < 0) {
            check_failure(rc);
            s->io = rc;
            return true;
        }
        FUZZ_ASSERT(rc == LSEC__WANT_READ);
        return s->t->in.off != before;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lsec__tls_ctx *server_ctx, *client_ctx;
    fz f = fz_init(data, size);
    uint8_t scenario, csecret[LSEC_SECRET_BYTES];
    char cident[sizeof(identity)];
    struct side cl, sv;
    const uint8_t *p;
    size_t k, round;
    int pristine = 1;

    if (server_ctx == NULL &&
        (lsec__tls_ctx_new(LSEC__ROLE_SERVER, &server_ctx) != 0 ||
         lsec__tls_client_ctx(&client_ctx) != 0))
        abort();
    scenario = fz_u8(&f) % 5;
    rng = (uint32_t)fz_u16(&f) << 16 | fz_u16(&f);
    memset(&c2s, 0, sizeof(c2s));
    memset(&s2c, 0, sizeof(s2c));
    c2s.cut = s2c.cut = SIZE_MAX;
    memset(&cl, 0, sizeof(cl));
    memset(&sv, 0, sizeof(sv));
    cl.hs = sv.hs = LSEC__WANT_READ;
    memcpy(csecret, secret, sizeof(csecret));
    memcpy(cident, identity, sizeof(cident));

    if (scenario == 0) {
        /* Edits: which direction, where, what; or a cut. */
        int n = fz_u8(&f) % (MAX_EDITS + 1);
        for (int i = 0; i < n; i++) {
            uint8_t how = fz_u8(&f);
            struct pipe *d = how & 1 ? &s2c : &c2s;
            size_t at = fz_u16(&f) % 2048;
            if (how & 2) {
                d->cut = at;
            } else {
                d->edit[d->nedit].at = at;
                d->edit[d->nedit].xor = (uint8_t)(fz_u8(&f) | 1);
                d->nedit++;
            }
            pristine = 0;
        }
    } else if (scenario == 4) {
        uint8_t which = fz_u8(&f);
        if (which & 1)
            csecret[fz_u8(&f) % sizeof(csecret)] ^= (uint8_t)(fz_u8(&f) | 1);
        else
            cident[10 + fz_u8(&f) % 16] ^= 0x01; /* "a"<->"`", "0"<->"1" */
    }

    /* Both directions' application data, from the input. */
    k = fz_take(&f, 2, &p);
    {
        size_t split = k == 2 ? ((size_t)p[0] << 8 | p[1]) : 0;
        size_t rest = f.n;
        if (split > rest)
            split = rest;
        if (split > PAYLOAD_MAX)
            split = PAYLOAD_MAX;
        cl.out = f.p;
        cl.out_len = split;
        sv.out = f.p + split;
        sv.out_len = rest - split > PAYLOAD_MAX ? PAYLOAD_MAX : rest - split;
    }
    sv.in_want = cl.out_len;
    cl.in_want = sv.out_len;

    if (scenario != 1)
        FUZZ_ASSERT(
            lsec__tls_new(client_ctx, FD_UNUSED, csecret, cident, &cl.t) == 0);
    if (scenario != 2 && scenario != 3)
        FUZZ_ASSERT(
            lsec__tls_new(server_ctx, FD_UNUSED, secret, identity, &sv.t) == 0);
    if (scenario == 1) {
        /* The input is the client's whole stream; the server's answers
         * go nowhere. */
        c2s.feed = sv.out;
        c2s.feed_len = sv.out_len;
        s2c.discard = true;
        sv.out_len = 0;
        sv.in_want = 0;
    } else if (scenario == 2) {
        s2c.feed = cl.out;
        s2c.feed_len = cl.out_len;
        c2s.discard = true;
        cl.out_len = 0;
        cl.in_want = 0;
    } else if (scenario == 3) {
        cl.in_want = 0;
    }

    /* Run both until neither moves; each step moves bytes or state, and
     * the rounds are bounded, so a stall ends the run rather than hang. */
    for (round = 0; round < 4000; round++) {
        bool moved = drive(&cl);
        moved = drive(&sv) || moved;
        /* The client reflected onto itself reads what it wrote. */
        moved = move(&c2s, cl.t, scenario == 3 ? cl.t : sv.t) || moved;
        moved = move(&s2c, sv.t, cl.t) || moved;
        if (!moved)
            break;
    }

    /* Nobody completes without the peer's proof of the PSK. */
    if (scenario == 1 || scenario == 4)
        FUZZ_ASSERT(sv.hs != 0);
    if (scenario == 2 || scenario == 3 || scenario == 4)
        FUZZ_ASSERT(cl.hs != 0);
    /* What arrived is exactly a prefix of what was sent, whatever the
     * middle did: integrity, or a failure, never altered data. */
    if (sv.in_len > 0)
        FUZZ_ASSERT(memcmp(sv.in, cl.out, sv.in_len) == 0);
    if (cl.in_len > 0)
        FUZZ_ASSERT(memcmp(cl.in, sv.out, cl.in_len) == 0);
    /* Left alone, an honest pair completes and delivers everything. */
    if (scenario == 0 && pristine) {
        FUZZ_ASSERT(cl.hs == 0 && sv.hs == 0);
        FUZZ_ASSERT(cl.io == 0 && sv.io == 0);
        FUZZ_ASSERT(sv.in_len == cl.out_len && cl.in_len == sv.out_len);
    }

    lsec__tls_free(cl.t);
    lsec__tls_free(sv.t);
    return 0;
}
