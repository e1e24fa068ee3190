/*
 * lib/sys.h on this platform (sys_linux.c): readiness sets, timers, the
 * close-on-exec pipe, the process name, the TCP state filter.  (The process
 * calls are exercised through lsec_spawn in test_rendezvous.c.)
 */
/* cmocka.h needs these first. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include "internal.h"
#include "sys.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void set_reports_ready_members_only(void **state)
{
    lsec__sys_event ev[4];
    int set, p[2], q[2];

    (void)state;
    set = lsec__sys_set_new();
    assert_true(set > 2);
    assert_true(fcntl(set, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(lsec__sys_pipe_cloexec(p), 0);
    assert_int_equal(lsec__sys_pipe_cloexec(q), 0);
    assert_true(fcntl(p[0], F_GETFD) & FD_CLOEXEC);
    assert_true(fcntl(p[1], F_GETFD) & FD_CLOEXEC);
    assert_int_equal(lsec__sys_set_add(set, p[0], POLLIN), 0);
    assert_int_equal(lsec__sys_set_add(set, q[0], POLLIN), 0);
    /* Adding twice is an error, not a silent change. */
    assert_int_equal(lsec__sys_set_add(set, p[0], POLLIN), -1);
    assert_int_equal(errno, EEXIST);
    /* Nothing ready: 0 at the timeout. */
    assert_int_equal(lsec__sys_set_wait(set, ev, 4, 0), 0);
    assert_int_equal(write(q[1], "x", 1), 1);
    assert_int_equal(lsec__sys_set_wait(set, ev, 4, 1000), 1);
    assert_int_equal(ev[0].fd, q[0]);
    assert_int_equal(ev[0].events, POLLIN);
    /* Writable: POLLOUT once asked for. */
    assert_int_equal(lsec__sys_set_add(set, p[1], POLLIN), 0);
    assert_int_equal(lsec__sys_set_mod(set, p[1], POLLOUT), 0);
    assert_int_equal(lsec__sys_set_del(set, q[0]), 0);
    assert_int_equal(lsec__sys_set_wait(set, ev, 4, 1000), 1);
    assert_int_equal(ev[0].fd, p[1]);
    assert_int_equal(ev[0].events, POLLOUT);
    assert_int_equal(lsec__sys_set_del(set, q[0]), -1);
    assert_int_equal(lsec__sys_set_wait(set, ev, 0, 0), -1);
    assert_int_equal(errno, EINVAL);
    close(p[0]);
    close(p[1]);
    close(q[0]);
    close(q[1]);
    close(set);
}

static void timer_arms_and_clears(void **state)
{
    struct pollfd pf;
    int t;
    int64_t t0;

    (void)state;
    t = lsec__sys_timer_new();
    assert_true(t > 2);
    pf.fd = t;
    pf.events = POLLIN;
    /* Not armed: never readable. */
    assert_int_equal(poll(&pf, 1, 20), 0);
    t0 = lsec__now_ms();
    assert_int_equal(lsec__sys_timer_arm(t, t0 + 50), 0);
    assert_int_equal(poll(&pf, 1, 2000), 1);
    assert_true(lsec__now_ms() - t0 >= 45);
    /* Clear consumes the expiry and disarms. */
    assert_int_equal(lsec__sys_timer_clear(t), 0);
    assert_int_equal(poll(&pf, 1, 20), 0);
    /* A deadline in the past (or 0) is due at once, not "disarmed". */
    assert_int_equal(lsec__sys_timer_arm(t, lsec__now_ms() - 10), 0);
    assert_int_equal(poll(&pf, 1, 1000), 1);
    assert_int_equal(lsec__sys_timer_arm(t, 0), 0);
    assert_int_equal(poll(&pf, 1, 1000), 1);
    assert_int_equal(lsec__sys_timer_arm(t, lsec__now_ms() + 100), 0);
    assert_int_equal(lsec__sys_timer_clear(t), 0);
    assert_int_equal(poll(&pf, 1, 150), 0);
    close(t);
}

static void process_name_and_states(void **state)
{
    char name[64];

    (void)state;
    lsec__sys_process_name((int32_t)getpid(), name, sizeof(name));
    assert_string_equal(name, "test_sys");
    lsec__sys_process_name(0, name, sizeof(name));
    assert_string_equal(name, "");
    lsec__sys_process_name(-1, name, sizeof(name));
    assert_string_equal(name, "");
    /* ESTABLISHED and the closing states are live; LISTEN, TIME_WAIT,
     * CLOSE, a request socket and nonsense are not. */
    assert_true(lsec__tcp_state_live(1));
    assert_true(lsec__tcp_state_live(8));
    assert_false(lsec__tcp_state_live(6));
    assert_false(lsec__tcp_state_live(7));
    assert_false(lsec__tcp_state_live(10));
    assert_false(lsec__tcp_state_live(12));
    assert_false(lsec__tcp_state_live(0));
    assert_false(lsec__tcp_state_live(-1));
}

/* A TCP listener on a free 127.0.0.1 port (its address into *sa). */
static int loopback_listener(struct sockaddr_in *sa)
{
    socklen_t len = sizeof(*sa);
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(l >= 0);
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(l, (struct sockaddr *)sa, sizeof(*sa)), 0);
    assert_int_equal(listen(l, 2), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)sa, &len), 0);
    return l;
}

/* Nothing of ours acknowledged: only when we sent data and the peer's
 * socket was gone before it arrived (it answers with a reset).  A peer
 * that is there acknowledges what it takes in, read or not. */
static void tcp_none_acked_only_when_gone(void **state)
{
    struct sockaddr_in sa;
    int l, c, a;

    (void)state;
    l = loopback_listener(&sa);
    assert_false(lsec__sys_tcp_none_acked(-1));
    assert_false(lsec__sys_tcp_none_acked(l));
    /* The peer is there: nothing sent, then data taken in unread. */
    c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
    a = accept(l, NULL, NULL);
    assert_true(a >= 0);
    assert_false(lsec__sys_tcp_none_acked(c));
    assert_int_equal(send(c, "hello", 5, MSG_NOSIGNAL), 5);
    usleep(20 * 1000);
    assert_false(lsec__sys_tcp_none_acked(c));
    close(a);
    close(c);
    /* The peer closed before our data arrived. */
    c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
    a = accept(l, NULL, NULL);
    assert_true(a >= 0);
    close(a);
    usleep(20 * 1000);
    assert_false(lsec__sys_tcp_none_acked(c));
    assert_int_equal(send(c, "hello", 5, MSG_NOSIGNAL), 5);
    usleep(20 * 1000);
    assert_true(lsec__sys_tcp_none_acked(c));
    close(c);
    close(l);
}

static void tcp_established_on_loopback(void **state)
{
    struct sockaddr_in sa;
    int l, c, a;

    (void)state;
    l = loopback_listener(&sa);
    /* A listener is not an established connection; neither is a pipe or
     * a closed descriptor. */
    assert_false(lsec__sys_tcp_established(l));
    assert_false(lsec__sys_tcp_established(-1));
    c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
    a = accept(l, NULL, NULL);
    assert_true(a >= 0);
    assert_true(lsec__sys_tcp_established(c));
    assert_true(lsec__sys_tcp_established(a));
    close(a);
    close(c);
    close(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(set_reports_ready_members_only),
        cmocka_unit_test(timer_arms_and_clears),
        cmocka_unit_test(process_name_and_states),
        cmocka_unit_test(tcp_established_on_loopback),
        cmocka_unit_test(tcp_none_acked_only_when_gone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
