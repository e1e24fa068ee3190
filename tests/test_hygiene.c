/*
 * Secret hygiene (secrets never reach an error detail, a log line or the
 * CLI's output; STYLE.md "Errors"): a known secret
 * is planted -- in tickets and connection files built with it, and as the
 * listeners' own secrets -- and every error path is driven with a log
 * callback installed at DEBUG: bad tickets, bad files, bad peers, TLS
 * failures, mode mismatches, broken channels, and the CLI's failing
 * commands.  Neither the secret nor anything derived from it (the auth keys,
 * the TLS PSK) may appear, raw, in base64url or in hex of either case, in
 * any error detail, log line, or CLI output; nor anything shaped like a
 * ticket's secret field.
 */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include "harden_util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* ------------------------------------------------------------------------ */
/* What must never appear                                                    */

#define MAX_SECRETS 8

struct forms {
    uint8_t raw[LSEC__KEY_BYTES];
    char b64[64];
    char hex[80];
    char HEX[80];
};

/* Every secret in play, and every key derived from each. */
static struct forms watched[MAX_SECRETS * 4];
static int nwatched;

static void watch_bytes(const uint8_t *b)
{
    struct forms *f = &watched[nwatched++];

    assert_true(nwatched <= MAX_SECRETS * 4);
    memcpy(f->raw, b, LSEC__KEY_BYTES);
    assert_int_equal(
        lsec__b64_encode(f->b64, sizeof(f->b64), b, LSEC__KEY_BYTES), 0);
    assert_int_equal(
        lsec__hex_encode(f->hex, sizeof(f->hex), b, LSEC__KEY_BYTES), 0);
    for (size_t i = 0; f->hex[i] != '\0'; i++)
        f->HEX[i] = (char)toupper((unsigned char)f->hex[i]);
}

static void watch_secret(const uint8_t secret[LSEC_SECRET_BYTES])
{
    uint8_t k[LSEC__KEY_BYTES];

    watch_bytes(secret);
    lsec__kdf(k, secret, LSEC__LABEL_AUTH_CLIENT);
    watch_bytes(k);
    lsec__kdf(k, secret, LSEC__LABEL_AUTH_SERVER);
    watch_bytes(k);
    lsec__tls_psk(k, secret);
    watch_bytes(k);
}

static void watch_ticket(const char *ticket)
{
    lsec__ticket t;
    assert_int_equal(
        lsec__ticket_parse(ticket, strlen(ticket), LSEC_ADDR_ALLOW_127_8, &t),
        0);
    watch_secret(t.secret);
    lsec__ticket_wipe(&t);
}

/* Does `text` hold 16 characters of `enc` (at any of several offsets)? */
static bool has_window(const char *text, size_t len, const char *enc)
{
    size_t n = strlen(enc);
    for (size_t off = 0; off + 16 <= n; off += 8)
        if (memmem(text, len, enc + off, 16) != NULL)
            return true;
    return false;
}

/* Why `text` is not clean, or NULL. */
static const char *dirt(const char *text, size_t len)
{
    for (int i = 0; i < nwatched; i++) {
        const struct forms *f = &watched[i];
        if (memmem(text, len, f->raw, 12) != NULL)
            return "raw secret bytes";
        if (has_window(text, len, f->b64))
            return "a secret in base64url";
        if (has_window(text, len, f->hex) || has_window(text, len, f->HEX))
            return "a secret in hex";
    }
    /* Anything shaped like a ticket's secret field, whoever's. */
    for (const char *p = text;
         (p = memmem(p, len - (size_t)(p - text), "secret=", 7)) != NULL;
         p += 7) {
        size_t run = 0;
        while (p + 7 + run < text + len &&
               (isalnum((unsigned char)p[7 + run]) || p[7 + run] == '-' ||
                p[7 + run] == '_'))
            run++;
        if (run >= 8 && strncmp(p + 7, "REDACTED", 8) != 0)
            return "a ticket's secret field";
    }
    return NULL;
}

static void assert_clean_n(const char *where, const char *text, size_t len)
{
    const char *why = dirt(text, len);
    if (why != NULL)
        fail_msg("%s: %s in \"%.*s\"", where, why, (int)(len < 300 ? len : 300),
                 text);
}

static void assert_clean(const char *where, const char *text)
{
    assert_clean_n(where, text, strlen(text));
}

/* The log, all of it, at DEBUG. */
static char *log_buf;
static size_t log_len;
static int log_lines;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
#define LOG_CAP (4u << 20)

static void on_log(void *arg, int level, const char *msg)
{
    size_t n = strlen(msg);
    (void)arg;
    (void)level;
    pthread_mutex_lock(&log_lock);
    if (log_len + n + 1 < LOG_CAP) {
        memcpy(log_buf + log_len, msg, n);
        log_buf[log_len + n] = '\n';
        log_len += n + 1;
    }
    log_lines++;
    pthread_mutex_unlock(&log_lock);
}

/* Check the log, which must have something in it when `want` is set (a
 * check of an empty log proves nothing). */
static void check_log(const char *where, bool want)
{
    pthread_mutex_lock(&log_lock);
    if (want && log_len == 0)
        fail_msg("%s: nothing was logged", where);
    assert_clean_n(where, log_buf, log_len);
    log_len = 0;
    pthread_mutex_unlock(&log_lock);
}

/* A failing call: its code is one of ours, its detail is clean. */
static void check_failure(const char *where, int rc)
{
    if (rc >= 0)
        fail_msg("%s: expected a failure, got %d", where, rc);
    assert_string_not_equal(lsec_errname(rc), "LSEC_UNKNOWN");
    assert_clean(where, lsec_last_detail());
    assert_clean(where, lsec_strerror(rc));
}

/* The planted secret: distinctive, and unlike any random one. */
static const uint8_t planted[LSEC_SECRET_BYTES] = {
    0x5e, 0xc2, 0xe7, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x13, 0x37, 0xc0,
    0xff, 0xee, 0x42, 0x24, 0x99, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33,
    0x22, 0x11, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};

/* A ticket with the planted secret for `port` (and `id`, `mode`). */
static void planted_ticket(char *buf, int port, int mode, const uint8_t *id)
{
    lsec__ticket t;

    memset(&t, 0, sizeof(t));
    t.addr.family = AF_INET;
    t.addr.ip[0] = 127;
    t.addr.ip[3] = 1;
    t.addr.port = (uint16_t)port;
    t.mode = mode;
    if (id != NULL)
        memcpy(t.id, id, sizeof(t.id));
    memcpy(t.secret, planted, sizeof(planted));
    assert_int_equal(lsec__ticket_format(&t, buf, LSEC_TICKET_MAX), 0);
}

/* A loopback port nobody listens on (bound, then closed). */
static int closed_port(void)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static int setup(void **state)
{
    (void)state;
    log_buf = malloc(LOG_CAP);
    assert_non_null(log_buf);
    log_len = 0;
    nwatched = 0;
    watch_secret(planted);
    lsec_set_log(on_log, NULL, LSEC_LOG_DEBUG);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    lsec_set_log(NULL, NULL, 0);
    free(log_buf);
    log_buf = NULL;
    return 0;
}

/* The checker itself sees every form it claims to. */
static void test_checker_sees_secrets(void **state)
{
    (void)state;
    char text[256];
    uint8_t psk[LSEC__KEY_BYTES];

    snprintf(text, sizeof(text), "x %s y", watched[0].b64);
    assert_non_null(dirt(text, strlen(text)));
    snprintf(text, sizeof(text), "x %.20s y", watched[0].HEX + 30);
    assert_non_null(dirt(text, strlen(text)));
    lsec__tls_psk(psk, planted);
    assert_int_equal(lsec__hex_encode(text, sizeof(text), psk, sizeof(psk)), 0);
    assert_non_null(dirt(text, strlen(text)));
    memcpy(text, "ab", 2);
    memcpy(text + 2, planted, 16);
    assert_non_null(dirt(text, 18));
    snprintf(text, sizeof(text), "loopsec://h/?secret=abcdefgh123");
    assert_non_null(dirt(text, strlen(text)));
    snprintf(text, sizeof(text), "loopsec://h/?secret=REDACTED, port 80");
    assert_null(dirt(text, strlen(text)));
}

/* ------------------------------------------------------------------------ */
/* Bad tickets                                                               */

/* Room for a ticket made too long on purpose. */
#define BAD_MAX 1024

/* Ticket text with the secret field edited by `how` (into BAD_MAX). */
static void mangle(const char *in, int how, char *out)
{
    const char *sec = strstr(in, "secret=") + 7;
    size_t head = (size_t)(sec - in);
    char tail[LSEC_TICKET_MAX];

    snprintf(tail, sizeof(tail), "%s", sec);
    switch (how) {
    case 0: /* one character short */
        tail[strlen(tail) - 1] = '\0';
        break;
    case 1: /* one too many */
        strcat(tail, "Q");
        break;
    case 2: /* a character outside base64url */
        tail[10] = '+';
        break;
    case 3: /* padding */
        strcat(tail, "=");
        break;
    case 4: /* the spare bits of the last character set */
        tail[strlen(tail) - 1] = tail[strlen(tail) - 1] == 'B' ? 'C' : 'B';
        break;
    case 5: /* a space */
        tail[20] = ' ';
        break;
    case 6: /* a newline, and more after it */
        strcat(tail, "\nsecond line");
        break;
    case 7: /* a field after the secret */
        strcat(tail, "&x=1");
        break;
    default:
        break;
    }
    snprintf(out, BAD_MAX, "%.*s%s", (int)head, in, tail);
}

static void test_bad_tickets(void **state)
{
    (void)state;
    char good[LSEC_TICKET_MAX], bad[BAD_MAX], buf[LSEC_TICKET_MAX];
    char hex[80], id[LSEC__PSK_IDENTITY_MAX];
    static const char *const edits[][2] = {
        {"mode=auth", "mode=AUTH"},
        {"mode=auth", "mode=tls2"},
        {"127.0.0.1", "10.0.0.1"},
        {"127.0.0.1", "localhost"},
        {"127.0.0.1", "127.1"},
        {"loopsec://", "http://"},
        {"id=", "id=X"},
        {"/?mode", "?mode"},
        {"127.0.0.1:", "[::ffff:127.0.0.1]:"},
    };
    lsec_channel *c = NULL;
    lsec_opts o;
    int port = closed_port(), rc;

    planted_ticket(good, port, LSEC_MODE_AUTH, NULL);
    /* The secret field itself, malformed in every way. */
    for (int how = 0; how < 8; how++) {
        mangle(good, how, bad);
        rc = lsec_connect(bad, NULL, 1000, &c);
        check_failure("connect with a malformed secret", rc);
        rc = lsec_ticket_redact(bad, buf, sizeof(buf));
        check_failure("redact a malformed secret", rc);
        rc = lsec_ticket_psk(bad, hex, sizeof(hex), id, sizeof(id));
        check_failure("psk of a malformed secret", rc);
        assert_clean("psk buffer after failure", hex);
    }
    /* Everything else malformed, the secret intact. */
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        char *at = strstr(good, edits[i][0]);
        assert_non_null(at);
        snprintf(bad, sizeof(bad), "%.*s%s%s", (int)(at - good), good,
                 edits[i][1], at + strlen(edits[i][0]));
        rc = lsec_connect(bad, NULL, 1000, &c);
        check_failure("connect with a malformed ticket", rc);
        rc = lsec_ticket_redact(bad, buf, sizeof(buf));
        check_failure("redact a malformed ticket", rc);
    }
    /* Over-long, with the secret inside. */
    snprintf(bad, sizeof(bad), "%s%0300d", good, 0);
    check_failure("connect with an over-long ticket",
                  lsec_connect(bad, NULL, 1000, &c));
    /* Well-formed, but nothing listens there. */
    check_failure("connect to a closed port",
                  lsec_connect(good, NULL, 1000, &c));
    /* Local policy tls, an auth ticket. */
    lsec_opts_init(&o);
    o.mode = LSEC_MODE_TLS;
    rc = lsec_connect(good, &o, 1000, &c);
    assert_int_equal(rc, LSEC_EMODE);
    check_failure("tls policy, auth ticket", rc);
    /* The PSK of an auth ticket does not exist. */
    rc = lsec_ticket_psk(good, hex, sizeof(hex), id, sizeof(id));
    assert_int_equal(rc, LSEC_EMODE);
    check_failure("psk of an auth ticket", rc);
    assert_clean("psk buffer", hex);
    /* Too small a buffer for the redacted form. */
    rc = lsec_ticket_redact(good, buf, 20);
    check_failure("redact into a small buffer", rc);
    assert_clean("small redact buffer", buf);
    assert_null(c);
    check_log("bad tickets", false);
}

/* ------------------------------------------------------------------------ */
/* Bad connection files                                                      */

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void test_bad_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/lsec-hygiene-XXXXXX";
    char path[256], good[LSEC_TICKET_MAX], text[BAD_MAX + 2], bad[BAD_MAX];
    static const mode_t modes[] = {0644, 0640, 0604, 0660, 0602, 0620, 0611};
    lsec_channel *c = NULL;
    int rc;

    assert_non_null(mkdtemp(dir));
    planted_ticket(good, closed_port(), LSEC_MODE_AUTH, NULL);
    snprintf(path, sizeof(path), "%s/t", dir);
    snprintf(text, sizeof(text), "%s\n", good);

    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        write_file(path, text, modes[i]);
        rc = lsec_connect_file(path, NULL, 1000, &c);
        assert_int_equal(rc, LSEC_EPERM);
        check_failure("a connection file others may read", rc);
    }
    /* Malformed contents, the secret inside. */
    for (int how = 0; how < 8; how++) {
        mangle(good, how, bad);
        snprintf(text, sizeof(text), "%s\n", bad);
        write_file(path, text, 0600);
        check_failure("a malformed connection file",
                      lsec_connect_file(path, NULL, 1000, &c));
    }
    snprintf(text, sizeof(text), "%s\n%s\n", good, good);
    write_file(path, text, 0600);
    check_failure("two tickets in one file",
                  lsec_connect_file(path, NULL, 1000, &c));
    snprintf(text, sizeof(text), "%s%0400d\n", good, 0);
    write_file(path, text, 0600);
    check_failure("an over-large file",
                  lsec_connect_file(path, NULL, 1000, &c));
    /* Not a regular file of ours. */
    snprintf(text, sizeof(text), "%s\n", good);
    write_file(path, text, 0600);
    {
        char link[300];
        snprintf(link, sizeof(link), "%s/link", dir);
        assert_int_equal(symlink(path, link), 0);
        check_failure("a symlink", lsec_connect_file(link, NULL, 1000, &c));
        unlink(link);
        snprintf(link, sizeof(link), "%s/fifo", dir);
        assert_int_equal(mkfifo(link, 0600), 0);
        check_failure("a fifo", lsec_connect_file(link, NULL, 1000, &c));
        unlink(link);
    }
    check_failure("a directory", lsec_connect_file(dir, NULL, 1000, &c));
    /* Good file, nothing listening. */
    check_failure("a stale file", lsec_connect_file(path, NULL, 1000, &c));
    unlink(path);
    check_failure("no file", lsec_connect_file(path, NULL, 1000, &c));
    rmdir(dir);
    assert_null(c);
    check_log("bad files", false);
}

/* ------------------------------------------------------------------------ */
/* Bad peers                                                                 */

/* A raw server that answers one connection with `reply`, then closes. */
struct fake_server {
    int fd, port;
    const void *reply;
    size_t len;
    pthread_t th;
};

static void *fake_main(void *arg)
{
    struct fake_server *f = arg;
    char buf[512];
    int c = accept(f->fd, NULL, NULL);
    if (c >= 0) {
        struct pollfd p = {c, POLLIN, 0};
        /* Read what the client says first (if anything), then answer. */
        if (poll(&p, 1, 500) > 0)
            (void)recv(c, buf, sizeof(buf), 0);
        if (f->len > 0)
            (void)send(c, f->reply, f->len, MSG_NOSIGNAL);
        usleep(50 * 1000);
        close(c);
    }
    return NULL;
}

static void fake_start(struct fake_server *f, const void *reply, size_t len)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);

    f->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(f->fd, 4), 0);
    assert_int_equal(getsockname(f->fd, (struct sockaddr *)&sa, &sl), 0);
    f->port = ntohs(sa.sin_port);
    f->reply = reply;
    f->len = len;
    assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake_server *f)
{
    pthread_join(f->th, NULL);
    close(f->fd);
}

static void garbage_at(int port, const void *bytes, size_t len)
{
    char buf[256];
    int fd = raw_connect(port);
    assert_true(fd >= 0);
    (void)send(fd, bytes, len, MSG_NOSIGNAL);
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 2000) > 0)
        while (recv(fd, buf, sizeof(buf), 0) > 0)
            ;
    close(fd);
}

static void test_bad_peers(void **state)
{
    (void)state;
    static const uint8_t sh_wrong[72] = {'L', 'S', 'E', 'C', 1, 1, 0, 0, 7};
    static const uint8_t tls_alert[] = {0x15, 0x03, 0x03, 0x00,
                                        0x02, 0x02, 0x28};
    static const char tls_hello[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03"
                                    "\x03";
    char ta[LSEC_TICKET_MAX], tt[LSEC_TICKET_MAX], mine[LSEC_TICKET_MAX];
    struct server sa, st;
    lsec_channel *c = NULL;
    lsec__ticket t;
    lsec_listener *la, *lt;
    int rc;

    la = harden_listen(LSEC_MODE_AUTH, NULL);
    lt = harden_listen(LSEC_MODE_TLS, NULL);
    assert_int_equal(lsec_listener_ticket(la, ta, sizeof(ta)), 0);
    assert_int_equal(lsec_listener_ticket(lt, tt, sizeof(tt)), 0);
    /* The listeners' own secrets are watched too. */
    watch_ticket(ta);
    watch_ticket(tt);
    server_start(&sa, la);
    server_start(&st, lt);

    /* The planted secret against the real listeners: wrong secret, in
     * both modes (with the tls listener's own id, and without). */
    planted_ticket(mine, lsec_listener_port(la), LSEC_MODE_AUTH, NULL);
    rc = lsec_connect(mine, NULL, 5000, &c);
    assert_int_equal(rc, LSEC_EAUTH);
    check_failure("auth, wrong secret", rc);
    assert_int_equal(lsec__ticket_parse(tt, strlen(tt), 0, &t), 0);
    planted_ticket(mine, lsec_listener_port(lt), LSEC_MODE_TLS, t.id);
    lsec__ticket_wipe(&t);
    rc = lsec_connect(mine, NULL, 5000, &c);
    assert_int_equal(rc, LSEC_EAUTH);
    check_failure("tls, wrong secret", rc);
    planted_ticket(mine, lsec_listener_port(lt), LSEC_MODE_TLS, NULL);
    rc = lsec_connect(mine, NULL, 5000, &c);
    assert_int_equal(rc, LSEC_EAUTH);
    check_failure("tls, wrong identity", rc);
    /* Mode mismatches, both ways, with the right secrets. */
    planted_ticket(mine, lsec_listener_port(lt), LSEC_MODE_AUTH, NULL);
    rc = lsec_connect(mine, NULL, 5000, &c);
    check_failure("auth client, tls listener", rc);
    planted_ticket(mine, lsec_listener_port(la), LSEC_MODE_TLS, NULL);
    rc = lsec_connect(mine, NULL, 5000, &c);
    check_failure("tls client, auth listener", rc);

    /* Garbage at both listeners (their logs are checked below). */
    garbage_at(lsec_listener_port(la), "GET / HTTP/1.1\r\n\r\n", 18);
    garbage_at(lsec_listener_port(lt), "GET / HTTP/1.1\r\n\r\n", 18);
    garbage_at(lsec_listener_port(la), tls_hello, sizeof(tls_hello) - 1);
    garbage_at(lsec_listener_port(lt), "LSEC\x01\x01\x00\x00", 8);
    garbage_at(lsec_listener_port(la), "LSEC\x01\x01\x00\x00", 8);
    for (int i = 0; i < 2; i++) {
        struct fake_server f;
        /* Fake servers answering a client that holds the planted secret. */
        fake_start(&f, i ? (const void *)sh_wrong : "HTTP/1.0 400 Bad\r\n\r\n",
                   i ? sizeof(sh_wrong) : 20);
        planted_ticket(mine, f.port, LSEC_MODE_AUTH, NULL);
        rc = lsec_connect(mine, NULL, 3000, &c);
        check_failure("a fake auth server", rc);
        fake_stop(&f);
        fake_start(&f, i ? (const void *)tls_alert : sh_wrong,
                   i ? sizeof(tls_alert) : sizeof(sh_wrong));
        planted_ticket(mine, f.port, LSEC_MODE_TLS, NULL);
        rc = lsec_connect(mine, NULL, 3000, &c);
        check_failure("a fake tls server", rc);
        fake_stop(&f);
        fake_start(&f, NULL, 0);
        planted_ticket(mine, f.port, i ? LSEC_MODE_TLS : LSEC_MODE_AUTH, NULL);
        rc = lsec_connect(mine, NULL, 3000, &c);
        check_failure("a server that hangs up", rc);
        fake_stop(&f);
    }
    usleep(100 * 1000);
    server_stop(&sa);
    server_stop(&st);
    assert_int_equal(sa.served + st.served, 0);
    lsec_listener_close(la);
    lsec_listener_close(lt);
    assert_null(c);
    check_log("bad peers", true);
}

/* ------------------------------------------------------------------------ */
/* Broken channels                                                           */

static void test_broken_channels(void **state)
{
    (void)state;
    for (int mode = LSEC_MODE_AUTH; mode <= LSEC_MODE_TLS; mode++) {
        char ticket[LSEC_TICKET_MAX], buf[64];
        lsec_opts o;
        lsec_listener *l;
        lsec_channel *s = NULL;
        size_t len;
        int rc;

        lsec_opts_init(&o);
        o.max_message = 16;
        l = harden_listen(mode, &o);
        assert_int_equal(lsec_listener_ticket(l, ticket, sizeof(ticket)), 0);
        watch_ticket(ticket);
        /* A forked client breaks the rules. */
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) {
            lsec_channel *cc = NULL;
            char big[64] = {0};
            if (lsec_connect(ticket, &o, 5000, &cc) != 0)
                _exit(1);
            /* Too long for the server's max_message. */
            int r = lsec_send(cc, big, sizeof(big), 5000);
            if (r == 0)
                r = lsec_flush(cc, 5000);
            (void)r;
            usleep(200 * 1000);
            lsec_channel_close(cc);
            _exit(0);
        }
        assert_int_equal(lsec_accept(l, 5000, &s), 0);
        rc = lsec_recv(s, buf, sizeof(buf), &len, 5000);
        assert_int_equal(rc, LSEC_EPROTO);
        check_failure("an oversized message", rc);
        rc = lsec_send(s, "x", 1, 1000);
        check_failure("send on a broken channel", rc);
        lsec_channel_close(s);
        int status;
        assert_int_equal(waitpid(child, &status, 0), child);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        lsec_listener_close(l);
    }
    check_log("broken channels", true);
}

/* ------------------------------------------------------------------------ */
/* The command line                                                          */

/* Run the CLI with `args` (NULL-terminated); its stdout and stderr, and
 * its exit status. */
static int run_cli(const char *const *args, const char *stdin_text, char *out,
                   size_t outlen)
{
    char tmpl[] = "/tmp/lsec-hygiene-out-XXXXXX";
    int ofd = mkstemp(tmpl), in[2], status = 0;
    const char *argv[16];
    int64_t end = lsec__now_ms() + 15000;
    pid_t pid;
    ssize_t n;
    size_t k = 0;

    assert_true(ofd >= 0);
    assert_int_equal(pipe(in), 0);
    argv[k++] = LSEC_TEST_CLI;
    for (size_t i = 0; args[i] != NULL && k < 15; i++)
        argv[k++] = args[i];
    argv[k] = NULL;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(ofd, 1);
        dup2(ofd, 2);
        close(in[1]);
        execv(LSEC_TEST_CLI, (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    if (stdin_text != NULL)
        (void)write(in[1], stdin_text, strlen(stdin_text));
    close(in[1]);
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (lsec__now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("the CLI did not finish: %s", args[0]);
        }
        usleep(10 * 1000);
    }
    n = pread(ofd, out, outlen - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    close(ofd);
    unlink(tmpl);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void cli_fails(const char *what, const char *const *args,
                      const char *stdin_text)
{
    char out[8192];
    int status = run_cli(args, stdin_text, out, sizeof(out));
    if (status == 0)
        fail_msg("%s: the CLI succeeded", what);
    if (out[0] == '\0')
        fail_msg("%s: the CLI failed without a word", what);
    assert_clean(what, out);
}

static void test_cli_failures(void **state)
{
    (void)state;
    char good[LSEC_TICKET_MAX], bad[BAD_MAX], mine[LSEC_TICKET_MAX];
    char ta[LSEC_TICKET_MAX], dir[] = "/tmp/lsec-hygiene-XXXXXX", path[256];
    char text[LSEC_TICKET_MAX + 2];
    struct server sa;
    lsec_listener *la;

    planted_ticket(good, closed_port(), LSEC_MODE_AUTH, NULL);
    for (int how = 0; how < 8; how += 3) {
        mangle(good, how, bad);
        /* The CLI takes no ticket from argv: on descriptor 0 here. */
        cli_fails("cli connect, malformed ticket",
                  (const char *[]){"--verbose", "connect", "--timeout", "1000",
                                   "--ticket-fd", "0", NULL},
                  bad);
        cli_fails("cli connect, malformed ticket in argv",
                  (const char *[]){"--verbose", "connect", bad, NULL}, "");
        cli_fails("cli psk, malformed ticket",
                  (const char *[]){"psk", "--ticket-fd", "0", NULL}, bad);
        cli_fails("cli psk -, malformed ticket",
                  (const char *[]){"psk", "-", NULL}, bad);
    }
    cli_fails("cli connect, nothing listening",
              (const char *[]){"--verbose", "connect", "--timeout", "1000",
                               "--ticket-fd", "0", NULL},
              good);
    cli_fails("cli connect --tls, auth ticket",
              (const char *[]){"--verbose", "connect", "--tls", "--ticket-fd",
                               "0", NULL},
              good);
    cli_fails("cli psk, auth ticket",
              (const char *[]){"psk", "--ticket-fd", "0", NULL}, good);

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/t", dir);
    snprintf(text, sizeof(text), "%s\n", good);
    write_file(path, text, 0644);
    cli_fails(
        "cli connect, readable file",
        (const char *[]){"--verbose", "connect", "--ticket-file", path, NULL},
        "");
    unlink(path);
    rmdir(dir);

    /* A live listener, the planted (wrong) secret. */
    la = harden_listen(LSEC_MODE_AUTH, NULL);
    assert_int_equal(lsec_listener_ticket(la, ta, sizeof(ta)), 0);
    watch_ticket(ta);
    server_start(&sa, la);
    planted_ticket(mine, lsec_listener_port(la), LSEC_MODE_AUTH, NULL);
    char text2[LSEC_TICKET_MAX + 16];
    snprintf(text2, sizeof(text2), "%s\nhello\n", mine);
    cli_fails("cli connect, wrong secret",
              (const char *[]){"--verbose", "connect", "--timeout", "3000",
                               "--ticket-fd", "0", NULL},
              text2);
    /* Listening where it may not: the refusal comes before any secret,
     * and still none may show. */
    cli_fails(
        "cli listen, bad bind",
        (const char *[]){"--verbose", "listen", "--bind", "0.0.0.0:0", NULL},
        "");
    server_stop(&sa);
    lsec_listener_close(la);
    /* Failing after a secret exists inside the CLI: a helper that dies,
     * a ticket file that cannot be written. */
    cli_fails("cli spawn, helper exits",
              (const char *[]){"--verbose", "spawn", "--timeout", "3000", "--",
                               "false", NULL},
              "");
    cli_fails("cli listen, unwritable ticket file",
              (const char *[]){"--verbose", "listen", "--ticket-file",
                               "/nonexistent-dir/t", NULL},
              "");
    check_log("cli", true);
}

/*
 * `loopsec --verbose listen --ticket-fd 3` writes its ticket (asked for) to
 * descriptor 3 and nothing to stdout; its stderr, while a wrong-secret
 * client and garbage come and the accept times out, must not show that
 * ticket's secret, now known to us.
 */
static void test_cli_listen_keeps_its_secret(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/lsec-hygiene-err-XXXXXX", ticket[LSEC_TICKET_MAX];
    char mine[LSEC_TICKET_MAX], err[8192], rest[256];
    int efd = mkstemp(tmpl), out[2], so[2], status = 0;
    size_t got = 0;
    lsec__ticket t;
    lsec_channel *c = NULL;
    pid_t pid;
    ssize_t n;

    assert_true(efd >= 0);
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(so), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(so[1], 1);
        dup2(efd, 2);
        dup2(out[1], 3);
        execl(LSEC_TEST_CLI, LSEC_TEST_CLI, "--verbose", "listen", "--timeout",
              "1500", "--ticket-fd", "3", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    close(so[1]);
    /* The line on descriptor 3 is the ticket. */
    while (got < sizeof(ticket) - 1 && memchr(ticket, '\n', got) == NULL) {
        struct pollfd p = {out[0], POLLIN, 0};
        assert_true(poll(&p, 1, 5000) > 0);
        n = read(out[0], ticket + got, sizeof(ticket) - 1 - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
    ticket[got] = '\0';
    *strchr(ticket, '\n') = '\0';
    watch_ticket(ticket);
    assert_int_equal(lsec__ticket_parse(ticket, strlen(ticket), 0, &t), 0);

    planted_ticket(mine, t.addr.port, LSEC_MODE_AUTH, NULL);
    assert_int_equal(lsec_connect(mine, NULL, 3000, &c), LSEC_EAUTH);
    garbage_at(t.addr.port, "GET / HTTP/1.1\r\n\r\n", 18);
    lsec__ticket_wipe(&t);

    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    n = read(so[0], rest, sizeof(rest));
    assert_int_equal(n, 0); /* nothing on stdout at all */
    close(so[0]);
    close(out[0]);
    n = pread(efd, err, sizeof(err) - 1, 0);
    err[n > 0 ? n : 0] = '\0';
    close(efd);
    unlink(tmpl);
    if (err[0] == '\0')
        fail_msg("loopsec listen failed without a word");
    assert_clean("loopsec --verbose listen, stderr", err);
    check_log("cli listen", false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_checker_sees_secrets, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_tickets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_peers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_channels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_listen_keeps_its_secret, setup,
                                        teardown),
    };
    signal(SIGPIPE, SIG_DFL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
