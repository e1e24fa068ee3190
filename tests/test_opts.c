/*
 * Options and timeouts fail closed (lib/opts.c): a struct that was not
 * initialised, an unknown mode, policy or flag bit, non-zero bytes beyond
 * the library's struct, an out-of-range max_pending and a timeout below -1
 * are LSEC_EINVAL in every call that takes them -- never a default.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "internal.h"

#include "harden_util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */

struct target {
    lsec_listener *l;
    char ticket[LSEC_TICKET_MAX];
    char file[LSEC_PATH_MAX];
};

static void server_open(struct target *s)
{
    lsec_opts o;

    lsec_opts_init(&o);
    o.peer_policy = LSEC_PEER_SAME_USER;
    assert_int_equal(lsec_listen("127.0.0.1:0", &o, &s->l), 0);
    assert_int_equal(lsec_listener_ticket(s->l, s->ticket, sizeof(s->ticket)),
                     0);
    snprintf(s->file, sizeof(s->file), "/tmp/lsec-test-opts-%d.ticket",
             (int)getpid());
    assert_int_equal(lsec_listener_write_file(s->l, s->file, NULL, 0), 0);
}

static void server_close(struct target *s)
{
    lsec_listener_close(s->l);
}

/* Every call that takes options refuses `o` with LSEC_EINVAL and a detail
 * containing `why`, without connecting, listening or spawning. */
static void refused_everywhere(const struct target *s, const lsec_opts *o,
                               const char *why)
{
    const char *const argv[] = {"/bin/true", NULL};
    lsec_listener *l = NULL;
    lsec_channel *c = NULL;
    lsec_helper *h = NULL;

    assert_int_equal(lsec_listen("127.0.0.1:0", o, &l), LSEC_EINVAL);
    assert_null(l);
    assert_non_null(strstr(lsec_last_detail(), why));
    assert_int_equal(lsec_connect(s->ticket, o, 2000, &c), LSEC_EINVAL);
    assert_null(c);
    assert_non_null(strstr(lsec_last_detail(), why));
    assert_int_equal(lsec_connect_file(s->file, o, 2000, &c), LSEC_EINVAL);
    assert_non_null(strstr(lsec_last_detail(), why));
    assert_int_equal(lsec_connect_inherited(o, 2000, &c), LSEC_EINVAL);
    assert_non_null(strstr(lsec_last_detail(), why));
    assert_int_equal(lsec_spawn(argv, o, 2000, &h, &c), LSEC_EINVAL);
    assert_null(h);
    assert_non_null(strstr(lsec_last_detail(), why));
    assert_int_equal(lsec_spawn_listening(argv, o, 2000, &h, &c), LSEC_EINVAL);
    assert_non_null(strstr(lsec_last_detail(), why));
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                     */

/* `lsec_opts o = {0}; o.mode = LSEC_MODE_TLS;` once gave an auth-mode
 * listener: the struct was read as "all defaults". */
static void test_uninitialised_struct_refused(void **state)
{
    struct target s;
    lsec_opts o;
    (void)state;

    server_open(&s);
    memset(&o, 0, sizeof(o));
    o.mode = LSEC_MODE_TLS;
    refused_everywhere(&s, &o, "call lsec_opts_init");
    /* One byte short of the first release's struct. */
    lsec_opts_init(&o);
    o.size = offsetof(lsec_opts, flags) + sizeof(uint32_t) - 1;
    refused_everywhere(&s, &o, "call lsec_opts_init");
    server_close(&s);
}

static void test_unknown_values_refused(void **state)
{
    static const int modes[] = {0, 3, -1};
    static const int peers[] = {2, -1, 0x7fffffff};
    static const int ports[] = {2, -1};
    static const uint32_t flags[] = {0x0002u, 0x0800u, 0x8000u, 0x80000000u};
    struct target s;
    lsec_opts o;
    (void)state;

    server_open(&s);
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        lsec_opts_init(&o);
        o.mode = modes[i];
        refused_everywhere(&s, &o, "unknown mode");
    }
    /* peer_policy 2 once let any user connect: only == SAME_USER was
     * tested. */
    for (size_t i = 0; i < sizeof(peers) / sizeof(peers[0]); i++) {
        lsec_opts_init(&o);
        o.peer_policy = peers[i];
        refused_everywhere(&s, &o, "unknown peer_policy");
    }
    for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
        lsec_opts_init(&o);
        o.port_policy = ports[i];
        refused_everywhere(&s, &o, "unknown port_policy");
    }
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        lsec_opts_init(&o);
        o.flags = flags[i];
        refused_everywhere(&s, &o, "unknown flag bits");
    }
    server_close(&s);
}

static void test_known_flags_accepted(void **state)
{
    lsec_opts o, r;
    (void)state;

    lsec_opts_init(&o);
    o.flags = LSEC_ADDR_ALLOW_127_8 | LSEC_OPT_PORT_FALLBACK |
              LSEC_OPT_HELPER_SURVIVES | LSEC_OPT_NO_ROUTE_LOCALNET;
    assert_int_equal(lsec__opts_resolve(&o, &r), 0);
    assert_int_equal(r.flags, o.flags);
    assert_int_equal(lsec__opts_resolve(NULL, &r), 0);
    assert_int_equal(r.mode, LSEC_MODE_AUTH);
}

static void test_ranges_refused(void **state)
{
    struct target s;
    lsec_opts o, r;
    (void)state;

    server_open(&s);
    lsec_opts_init(&o);
    o.max_pending = LSEC__MAX_PENDING_LIMIT + 1;
    refused_everywhere(&s, &o, "max_pending");
    o.max_pending = 0;
    refused_everywhere(&s, &o, "max_pending");
    o.max_pending = LSEC__MAX_PENDING_LIMIT;
    assert_int_equal(lsec__opts_resolve(&o, &r), 0);
    lsec_opts_init(&o);
    o.handshake_timeout_ms = 0;
    refused_everywhere(&s, &o, "handshake_timeout_ms");
    lsec_opts_init(&o);
    o.max_accepts = -1;
    refused_everywhere(&s, &o, "max_accepts");
    lsec_opts_init(&o);
    o.backlog = 0;
    refused_everywhere(&s, &o, "backlog");
    lsec_opts_init(&o);
    o.port_policy = LSEC_PORT_RANGE;
    o.port_min = 50000;
    o.port_max = 49999;
    refused_everywhere(&s, &o, "port range");
    server_close(&s);
}

/* A caller built against a newer header: its extra bytes must be zero. */
static void test_larger_struct(void **state)
{
    struct target s;
    size_t big = sizeof(lsec_opts) + 16;
    unsigned char *buf = calloc(1, big);
    lsec_opts *o = (lsec_opts *)(void *)buf;
    lsec_listener *l = NULL;
    lsec_opts r;
    (void)state;

    assert_non_null(buf);
    server_open(&s);
    lsec_opts_init_sized(o, big);
    assert_int_equal(o->size, big);
    assert_int_equal(lsec_listen("127.0.0.1:0", o, &l), 0);
    lsec_listener_close(l);
    buf[sizeof(lsec_opts) + 7] = 1;
    refused_everywhere(&s, o, "does not know");
    buf[sizeof(lsec_opts) + 7] = 0;
    assert_int_equal(lsec__opts_resolve(o, &r), 0);
    assert_int_equal(r.size, sizeof(lsec_opts));
    server_close(&s);
    free(buf);
}

/* -1 forever, 0 never wait, > 0 ms; below -1 is LSEC_EINVAL everywhere
 * (-5 once meant "forever" in lsec_connect, lsec_accept, lsec_send and
 * lsec_recv). */
static void test_timeout_below_minus_one(void **state)
{
    const char *const argv[] = {"/bin/true", NULL};
    struct target s;
    lsec_channel *c = NULL, *x = NULL;
    struct server echo;
    lsec_helper *h = NULL;
    char buf[16];
    size_t len = 0;
    (void)state;

    server_open(&s);
    assert_int_equal(lsec_connect(s.ticket, NULL, -2, &x), LSEC_EINVAL);
    assert_null(x);
    assert_non_null(strstr(lsec_last_detail(), "timeout_ms -2"));
    assert_int_equal(lsec_connect_file(s.file, NULL, -5, &x), LSEC_EINVAL);
    assert_int_equal(lsec_connect_inherited(NULL, -2, &x), LSEC_EINVAL);
    assert_int_equal(lsec_spawn(argv, NULL, -2, &h, &x), LSEC_EINVAL);
    assert_int_equal(lsec_spawn_listening(argv, NULL, -2, &h, &x), LSEC_EINVAL);
    assert_int_equal(lsec_accept(s.l, -2, &x), LSEC_EINVAL);
    assert_non_null(strstr(lsec_last_detail(), "timeout_ms -2"));

    /* A live channel (to an echo server): each call would succeed at
     * once with a valid timeout. */
    server_start(&echo, s.l);
    assert_int_equal(lsec_connect(s.ticket, NULL, 5000, &c), 0);
    assert_int_equal(lsec_send(c, "hi", 2, -2), LSEC_EINVAL);
    assert_int_equal(lsec_flush(c, -3), LSEC_EINVAL);
    assert_int_equal(lsec_send(c, "hi", 2, 2000), 0);
    assert_int_equal(lsec_recv(c, buf, sizeof(buf), &len, INT32_MIN),
                     LSEC_EINVAL);
    assert_int_equal(lsec_recv(c, buf, sizeof(buf), &len, 2000), 0);
    assert_int_equal(len, 2);
    lsec_channel_close(c);
    server_stop(&echo);

    const char *const sh[] = {"/bin/sh", "-c", "exit 0", NULL};
    /* A helper that exits: lsec_spawn fails (ECHILD) but a valid timeout
     * is not refused. */
    assert_int_equal(lsec_spawn(sh, NULL, 5000, &h, &x), LSEC_ECHILD);
    server_close(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uninitialised_struct_refused),
        cmocka_unit_test(test_unknown_values_refused),
        cmocka_unit_test(test_known_flags_accepted),
        cmocka_unit_test(test_ranges_refused),
        cmocka_unit_test(test_larger_struct),
        cmocka_unit_test(test_timeout_below_minus_one),
    };
    /* A call that wrongly waits forever fails the program, not the suite's
     * time budget. */
    alarm(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
