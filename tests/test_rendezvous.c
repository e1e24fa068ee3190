/*
 * Rendezvous: spawned helpers (connect back and announce), the inherited
 * ticket descriptor, helper process management, connection files.
 *
 * The helper program is tests/helpers/rdv_helper.c (LSEC_RDV_HELPER); each
 * test names the mode it runs.  Every security promise of issue 5 has its
 * negative test here: no secret in the helper's cmdline or environment,
 * only the intended descriptor inherited, helper death and timeouts
 * reported promptly with their cause, no helper outliving its parent,
 * connection files 0600 and never written through or read from anything
 * but our own regular file.
 */
#include "internal.h"
#include "testing.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

/* cmocka needs the three above first. */
#include <cmocka.h>

#ifndef LSEC_RDV_HELPER
#error "LSEC_RDV_HELPER must name the helper program"
#endif

static const char *const helper_path = LSEC_RDV_HELPER;

/* ------------------------------------------------------------------------ */
/* Utilities                                                                 */

static int rm_entry(const char *p, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void make_tmpdir(char *dir, size_t len)
{
    snprintf(dir, len, "/tmp/lsec-rdv-XXXXXX");
    assert_non_null(mkdtemp(dir));
}

static void remove_tree(const char *dir)
{
    (void)nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void assert_detail_has(const char *needle)
{
    const char *d = lsec_last_detail();
    if (strstr(d, needle) == NULL)
        fail_msg("detail \"%s\" does not contain \"%s\"", d, needle);
}

/* No child of ours is left, running or zombie. */
static void assert_no_children(void)
{
    errno = 0;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

static int spawn_mode(const char *mode, const char *arg, const lsec_opts *o,
                      int timeout_ms, lsec_helper **h, lsec_channel **ch)
{
    const char *argv[] = {helper_path, mode, arg, NULL};
    return lsec_spawn(argv, o, timeout_ms, h, ch);
}

static int spawn_listening_mode(const char *mode, const char *arg,
                                int timeout_ms, lsec_helper **h,
                                lsec_channel **ch)
{
    const char *argv[] = {helper_path, mode, arg, NULL};
    return lsec_spawn_listening(argv, NULL, timeout_ms, h, ch);
}

static void roundtrip(lsec_channel *ch, const char *msg)
{
    char buf[256];
    size_t len = 0;

    assert_int_equal(lsec_send(ch, msg, strlen(msg), 5000), 0);
    assert_int_equal(lsec_recv(ch, buf, sizeof(buf), &len, 5000), 0);
    assert_int_equal(len, strlen(msg));
    assert_memory_equal(buf, msg, len);
}

/* Close the channel and expect the helper to exit with `code`. */
static void finish(lsec_helper *h, lsec_channel *ch, int code)
{
    int st = -1;

    lsec_channel_close(ch);
    assert_int_equal(lsec_helper_wait(h, 5000, &st), 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), code);
    lsec_helper_free(h);
}

static char *read_whole(const char *path, size_t *len)
{
    static char buf[65536];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    *len = 0;
    if (fd < 0)
        return NULL;
    while ((n = read(fd, buf + *len, sizeof(buf) - 1 - *len)) > 0)
        *len += (size_t)n;
    close(fd);
    buf[*len] = '\0';
    return buf;
}

static void make_ticket(lsec__ticket *t, uint16_t port)
{
    memset(t, 0, sizeof(*t));
    assert_int_equal(lsec__addr_parse("127.0.0.1:0", 0, &t->addr), 0);
    t->addr.port = port;
    t->mode = LSEC_MODE_AUTH;
    lsec__random(t->id, sizeof(t->id));
    lsec__random(t->secret, sizeof(t->secret));
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

/* Accept one peer on another thread while this one connects. */
struct acceptor {
    pthread_t th;
    lsec_listener *l;
    lsec_channel *ch;
    int rc;
};

static void *accept_main(void *arg)
{
    struct acceptor *a = arg;
    a->rc = lsec_accept(a->l, 5000, &a->ch);
    return NULL;
}

static void acceptor_start(struct acceptor *a, lsec_listener *l)
{
    memset(a, 0, sizeof(*a));
    a->l = l;
    assert_int_equal(pthread_create(&a->th, NULL, accept_main, a), 0);
}

static void acceptor_join(struct acceptor *a)
{
    assert_int_equal(pthread_join(a->th, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* lsec_spawn                                                                */

static void test_spawn_roundtrip(void **state)
{
    lsec_helper *h;
    lsec_channel *ch;
    (void)state;

    assert_int_equal(spawn_mode("echo", NULL, NULL, 5000, &h, &ch), 0);
    assert_true(lsec_helper_pid(h) > 0);
    assert_int_equal(lsec_channel_mode(ch), LSEC_MODE_AUTH);
    roundtrip(ch, "break main");
    roundtrip(ch, "continue");
    finish(h, ch, 0);
    assert_no_children();
}

static void test_spawn_tls(void **state)
{
    lsec_helper *h;
    lsec_channel *ch;
    lsec_opts o;
    (void)state;

    lsec_opts_init(&o);
    o.mode = LSEC_MODE_TLS;
    assert_int_equal(spawn_mode("echo", NULL, &o, 10000, &h, &ch), 0);
    assert_int_equal(lsec_channel_mode(ch), LSEC_MODE_TLS);
    roundtrip(ch, "over tls");
    finish(h, ch, 0);
}

static void test_spawn_bad_args(void **state)
{
    const char *argv[] = {helper_path, "echo", NULL};
    const char *noprog[] = {NULL};
    const char *empty[] = {"", NULL};
    lsec_helper *h = (lsec_helper *)1;
    lsec_channel *ch = (lsec_channel *)1;
    (void)state;

    assert_int_equal(lsec_spawn(NULL, NULL, 1000, &h, &ch), LSEC_EINVAL);
    assert_null(h);
    assert_null(ch);
    assert_int_equal(lsec_spawn(noprog, NULL, 1000, &h, &ch), LSEC_EINVAL);
    assert_int_equal(lsec_spawn(empty, NULL, 1000, &h, &ch), LSEC_EINVAL);
    assert_int_equal(lsec_spawn(argv, NULL, 1000, NULL, &ch), LSEC_EINVAL);
    assert_int_equal(lsec_spawn(argv, NULL, 1000, &h, NULL), LSEC_EINVAL);
    assert_int_equal(lsec_spawn(argv, NULL, -2, &h, &ch), LSEC_EINVAL);
    assert_int_equal(lsec_spawn_listening(NULL, NULL, 1000, &h, &ch),
                     LSEC_EINVAL);
    assert_no_children();
}

/* The ticket never appears in what other users can read: /proc/PID/cmdline
 * and /proc/PID/environ, read while the helper is alive. */
static void test_spawn_secret_not_in_cmdline_or_environ(void **state)
{
    char ticket[LSEC_TICKET_MAX + 1], path[64];
    char *text;
    const char *sec;
    size_t len = 0, seclen;
    lsec__ticket t;
    lsec_helper *h;
    lsec_channel *ch;
    (void)state;

    assert_int_equal(spawn_mode("leak", NULL, NULL, 5000, &h, &ch), 0);
    assert_int_equal(lsec_recv(ch, ticket, LSEC_TICKET_MAX, &len, 5000), 0);
    ticket[len] = '\0';
    /* The helper really had our ticket: it is the one it connected with. */
    assert_int_equal(lsec__ticket_parse(ticket, len, 0, &t), 0);
    sec = strstr(ticket, "secret=");
    assert_non_null(sec);
    sec += strlen("secret=");
    seclen = strcspn(sec, "&");
    assert_true(seclen >= 40);

    snprintf(path, sizeof(path), "/proc/%d/cmdline", lsec_helper_pid(h));
    text = read_whole(path, &len);
    assert_non_null(text);
    assert_true(len > 0);
    assert_null(memmem(text, len, sec, seclen));
    assert_null(memmem(text, len, t.secret, sizeof(t.secret)));
    assert_null(memmem(text, len, "loopsec://", 10));

    snprintf(path, sizeof(path), "/proc/%d/environ", lsec_helper_pid(h));
    text = read_whole(path, &len);
    assert_non_null(text);
    assert_null(memmem(text, len, sec, seclen));
    assert_null(memmem(text, len, t.secret, sizeof(t.secret)));
    assert_null(memmem(text, len, "loopsec://", 10));
    /* Only the descriptor number travels in the environment. */
    assert_non_null(memmem(text, len, "LOOPSEC_TICKET_FD=3", 20));

    lsec__ticket_wipe(&t);
    lsec__wipe(ticket, sizeof(ticket));
    finish(h, ch, 0);
}

/* Only stdin/stdout/stderr and the ticket pipe reach the helper, even when
 * the parent holds descriptors without O_CLOEXEC. */
static void test_spawn_only_ticket_fd_inherited(void **state)
{
    char msg[1024], expect[1024];
    size_t len = 0, used = 0;
    lsec_helper *h;
    lsec_channel *ch;
    int leak1, leak2;
    (void)state;

    leak1 = open("/dev/null", O_RDONLY); /* deliberately not CLOEXEC */
    assert_true(leak1 >= 0);
    leak2 = dup2(leak1, 200);
    assert_int_equal(leak2, 200);
    assert_int_equal(fcntl(leak1, F_GETFD) & FD_CLOEXEC, 0);

    assert_int_equal(spawn_mode("fds", NULL, NULL, 5000, &h, &ch), 0);
    assert_int_equal(lsec_recv(ch, msg, sizeof(msg) - 1, &len, 5000), 0);
    msg[len] = '\0';

    /* Whichever of 0-2 we have, then 3 and nothing else; the variable
     * named 3 and was gone after lsec_connect_inherited. */
    used = (size_t)snprintf(expect, sizeof(expect), "fds=");
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            used += (size_t)snprintf(expect + used, sizeof(expect) - used,
                                     "%d,", fd);
    snprintf(expect + used, sizeof(expect) - used, "3;env=3;after=unset");
    assert_string_equal(msg, expect);

    close(leak1);
    close(leak2);
    finish(h, ch, 0);
}

/* A helper that dies at once is reported at once, with its status. */
static void test_spawn_helper_exits_at_once(void **state)
{
    lsec_helper *h;
    lsec_channel *ch;
    int64_t t0;
    (void)state;

    t0 = lsec__now_ms();
    assert_int_equal(spawn_mode("exit", "3", NULL, 10000, &h, &ch),
                     LSEC_ECHILD);
    assert_true(lsec__now_ms() - t0 < 1000);
    assert_null(h);
    assert_null(ch);
    assert_detail_has("exited with status 3");
    assert_no_children();

    t0 = lsec__now_ms();
    assert_int_equal(spawn_mode("signal", "9", NULL, 10000, &h, &ch),
                     LSEC_ECHILD);
    assert_true(lsec__now_ms() - t0 < 1000);
    assert_detail_has("killed by signal 9");
    assert_no_children();

    /* Also when it exits successfully without ever connecting. */
    t0 = lsec__now_ms();
    assert_int_equal(spawn_mode("exit", "0", NULL, -1, &h, &ch), LSEC_ECHILD);
    assert_true(lsec__now_ms() - t0 < 1000);
    assert_detail_has("exited with status 0");
    assert_no_children();
}

/* A helper that never connects: LSEC_ETIMEDOUT at the timeout; killed and
 * reaped. */
static void test_spawn_timeout(void **state)
{
    lsec_helper *h;
    lsec_channel *ch;
    int64_t t0, took;
    (void)state;

    t0 = lsec__now_ms();
    assert_int_equal(spawn_mode("sleep", "20000", NULL, 300, &h, &ch),
                     LSEC_ETIMEDOUT);
    took = lsec__now_ms() - t0;
    assert_true(took >= 290);
    assert_true(took < 1000);
    assert_null(h);
    assert_null(ch);
    assert_no_children();
}

static void test_spawn_exec_failures(void **state)
{
    const char *missing[] = {"/nonexistent/loopsec-helper", NULL};
    const char *unknown[] = {"loopsec-no-such-program-here", NULL};
    char dir[64], file[128];
    const char *noexec[] = {file, NULL};
    lsec_helper *h;
    lsec_channel *ch;
    int64_t t0 = lsec__now_ms();
    (void)state;

    assert_int_equal(lsec_spawn(missing, NULL, 5000, &h, &ch), LSEC_ENOTFOUND);
    assert_detail_has("cannot execute /nonexistent/loopsec-helper");
    assert_detail_has("No such file");
    assert_int_equal(lsec_spawn(unknown, NULL, 5000, &h, &ch), LSEC_ENOTFOUND);
    assert_detail_has("cannot execute loopsec-no-such-program-here");

    make_tmpdir(dir, sizeof(dir));
    snprintf(file, sizeof(file), "%s/not-executable", dir);
    write_text(file, "#!/bin/sh\nexit 0\n", 0600);
    /* No x bit at all: execve fails with EACCES, even for root. */
    assert_int_equal(lsec_spawn(noexec, NULL, 5000, &h, &ch), LSEC_ECHILD);
    assert_detail_has("cannot execute");
    assert_detail_has("Permission denied");
    assert_null(h);
    assert_null(ch);
    remove_tree(dir);
    assert_true(lsec__now_ms() - t0 < 1000);
    assert_no_children();
}

/* Fork an intermediate parent that spawns a "hold" helper and dies without
 * cleaning up; report the helper's pid.  This process is a subreaper, so
 * the orphaned helper becomes our child and its end can be observed. */
static pid_t orphan_helper(bool survives)
{
    int p[2], hp = -1, st;
    pid_t mid;

    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    mid = fork();
    assert_true(mid >= 0);
    if (mid == 0) {
        lsec_opts o;
        lsec_helper *h;
        lsec_channel *ch;
        const char *argv[] = {helper_path, "hold", NULL};

        lsec_opts_init(&o);
        if (survives)
            o.flags |= LSEC_OPT_HELPER_SURVIVES;
        if (lsec_spawn(argv, &o, 5000, &h, &ch) == 0)
            hp = lsec_helper_pid(h);
        (void)!write(p[1], &hp, sizeof(hp));
        _exit(0); /* h deliberately not freed: only PDEATHSIG may act */
    }
    close(p[1]);
    assert_int_equal(read(p[0], &hp, sizeof(hp)), (ssize_t)sizeof(hp));
    close(p[0]);
    assert_int_equal(waitpid(mid, &st, 0), mid);
    assert_true(hp > 0);
    return hp;
}

static void test_spawn_helper_dies_with_parent(void **state)
{
    int st = 0;
    pid_t hp, r = 0;
    (void)state;

    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    hp = orphan_helper(false);
    for (int i = 0; i < 300 && r == 0; i++) {
        r = waitpid(hp, &st, WNOHANG);
        if (r == 0)
            usleep(10000);
    }
    assert_int_equal(r, hp);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGKILL);
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 0), 0);
    assert_no_children();
}

static void test_spawn_helper_survives_when_asked(void **state)
{
    int st = 0;
    pid_t hp;
    (void)state;

    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    hp = orphan_helper(true);
    usleep(300000);
    /* Still running: not reaped, not dead. */
    assert_int_equal(waitpid(hp, &st, WNOHANG), 0);
    assert_int_equal(kill(hp, SIGKILL), 0);
    assert_int_equal(waitpid(hp, &st, 0), hp);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 0), 0);
    assert_no_children();
}

/* ------------------------------------------------------------------------ */
/* Helper handles                                                            */

static void test_helper_wait_kill_free(void **state)
{
    lsec_helper *h;
    lsec_channel *ch;
    int st = -1;
    int64_t t0;
    pid_t pid;
    (void)state;

    assert_int_equal(spawn_mode("hold", NULL, NULL, 5000, &h, &ch), 0);
    assert_int_equal(lsec_helper_wait(h, 0, &st), LSEC_EAGAIN);
    t0 = lsec__now_ms();
    assert_int_equal(lsec_helper_wait(h, 100, &st), LSEC_ETIMEDOUT);
    assert_true(lsec__now_ms() - t0 >= 95);
    assert_int_equal(lsec_helper_kill(h, SIGTERM), 0);
    assert_int_equal(lsec_helper_wait(h, 5000, &st), 0);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGTERM);
    /* Reaped: the same status again, and no signal to a reused pid. */
    st = -1;
    assert_int_equal(lsec_helper_wait(h, 0, &st), 0);
    assert_int_equal(WTERMSIG(st), SIGTERM);
    assert_int_equal(lsec_helper_kill(h, SIGTERM), LSEC_ECHILD);
    lsec_channel_close(ch);
    lsec_helper_free(h);

    /* Freeing a running helper kills and reaps it. */
    assert_int_equal(spawn_mode("hold", NULL, NULL, 5000, &h, &ch), 0);
    pid = lsec_helper_pid(h);
    lsec_helper_free(h);
    lsec_channel_close(ch);
    errno = 0;
    assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);

    /* NULL and misuse. */
    lsec_helper_free(NULL);
    assert_int_equal(lsec_helper_pid(NULL), LSEC_EINVAL);
    assert_int_equal(lsec_helper_wait(NULL, 0, &st), LSEC_EINVAL);
    assert_int_equal(lsec_helper_kill(NULL, SIGTERM), LSEC_EINVAL);
    assert_no_children();
}

static void test_helper_free_survivor(void **state)
{
    lsec_helper *h;
    lsec_channel *ch;
    lsec_opts o;
    int st;
    pid_t pid;
    (void)state;

    lsec_opts_init(&o);
    o.flags |= LSEC_OPT_HELPER_SURVIVES;
    assert_int_equal(spawn_mode("hold", NULL, &o, 5000, &h, &ch), 0);
    pid = lsec_helper_pid(h);
    lsec_helper_free(h);
    lsec_channel_close(ch);
    assert_int_equal(kill(pid, 0), 0);
    assert_int_equal(waitpid(pid, &st, WNOHANG), 0);
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_no_children();
}

/* ------------------------------------------------------------------------ */
/* lsec_spawn_listening / lsec_listener_announce                             */

static void test_spawn_listening_roundtrip(void **state)
{
    lsec_helper *h;
    lsec_channel *ch;
    (void)state;

    assert_int_equal(spawn_listening_mode("announce", NULL, 5000, &h, &ch), 0);
    roundtrip(ch, "execute 1+1");
    finish(h, ch, 0);
    assert_no_children();
}

static void test_spawn_listening_failures(void **state)
{
    lsec_helper *h;
    lsec_channel *ch;
    int64_t t0, took;
    (void)state;

    t0 = lsec__now_ms();
    assert_int_equal(spawn_listening_mode("announce-exit", "4", 10000, &h, &ch),
                     LSEC_ECHILD);
    assert_true(lsec__now_ms() - t0 < 1000);
    assert_detail_has("exited with status 4");
    assert_null(h);
    assert_null(ch);
    assert_no_children();

    assert_int_equal(
        spawn_listening_mode("announce-none", NULL, 10000, &h, &ch),
        LSEC_EPROTO);
    assert_detail_has("without announcing");
    assert_no_children();

    t0 = lsec__now_ms();
    assert_int_equal(spawn_listening_mode("sleep", "20000", 300, &h, &ch),
                     LSEC_ETIMEDOUT);
    took = lsec__now_ms() - t0;
    assert_true(took >= 290 && took < 1000);
    assert_no_children();
}

static void test_announce_in_process(void **state)
{
    char got[LSEC_TICKET_MAX + 2], want[LSEC_TICKET_MAX + 1], num[16];
    lsec_listener *l;
    int p[2], fd;
    ssize_t n;
    (void)state;

    assert_int_equal(lsec_listen("127.0.0.1:0", NULL, &l), 0);
    unsetenv(LSEC_ENV_ANNOUNCE_FD);
    assert_int_equal(lsec_listener_announce(l), LSEC_ENOTFOUND);
    assert_int_equal(lsec_listener_announce(NULL), LSEC_EINVAL);

    /* A descriptor that is not a pipe (here a file) is refused: a stray
     * variable must not print the ticket somewhere else. */
    fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    snprintf(num, sizeof(num), "%d", fd);
    setenv(LSEC_ENV_ANNOUNCE_FD, num, 1);
    assert_int_equal(lsec_listener_announce(l), LSEC_EINVAL);
    close(fd);
    setenv(LSEC_ENV_ANNOUNCE_FD, "1", 1);
    assert_int_equal(lsec_listener_announce(l), LSEC_EINVAL);

    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    snprintf(num, sizeof(num), "%d", p[1]);
    setenv(LSEC_ENV_ANNOUNCE_FD, num, 1);
    assert_int_equal(lsec_listener_announce(l), 0);
    assert_null(getenv(LSEC_ENV_ANNOUNCE_FD));
    /* The write end was closed: after the ticket, EOF. */
    assert_int_equal(fcntl(p[1], F_GETFD), -1);
    n = read(p[0], got, sizeof(got) - 1);
    assert_true(n > 0);
    got[n] = '\0';
    assert_int_equal(read(p[0], got + n, 1), 0);
    close(p[0]);
    assert_int_equal(lsec_listener_ticket(l, want, sizeof(want)), 0);
    strcat(want, "\n");
    assert_string_equal(got, want);
    lsec__wipe(got, sizeof(got));
    lsec__wipe(want, sizeof(want));

    /* The parent is gone (the read end closed): LSEC_ECLOSED, and no
     * SIGPIPE although it is left at its default (which would kill us). */
    {
        struct sigaction sa;
        assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
        assert_true(sa.sa_handler == SIG_DFL);
    }
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    close(p[0]);
    snprintf(num, sizeof(num), "%d", p[1]);
    setenv(LSEC_ENV_ANNOUNCE_FD, num, 1);
    assert_int_equal(lsec_listener_announce(l), LSEC_ECLOSED);
    {
        sigset_t pending;
        assert_int_equal(sigpending(&pending), 0);
        assert_false(sigismember(&pending, SIGPIPE));
    }
    lsec_listener_close(l);
}

/* ------------------------------------------------------------------------ */
/* lsec_connect_inherited                                                    */

/* A pipe holding `text` whose read end is at a descriptor named in
 * LOOPSEC_TICKET_FD. */
static int inherit_text(const char *text)
{
    char num[16];
    int p[2];

    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_int_equal(write(p[1], text, strlen(text)), (ssize_t)strlen(text));
    close(p[1]);
    snprintf(num, sizeof(num), "%d", p[0]);
    setenv(LSEC_ENV_TICKET_FD, num, 1);
    return p[0];
}

static void test_connect_inherited_env_checks(void **state)
{
    lsec_channel *ch = (lsec_channel *)1;
    static const char *const bad[] = {"",   "abc", "2",  "0",  "03",
                                      "+4", "4x",  " 4", "-5", "99999999999"};
    char num[16];
    int fd;
    (void)state;

    unsetenv(LSEC_ENV_TICKET_FD);
    assert_int_equal(lsec_connect_inherited(NULL, 1000, &ch), LSEC_ENOTFOUND);
    assert_null(ch);
    assert_detail_has("LOOPSEC_TICKET_FD");
    assert_int_equal(lsec_connect_inherited(NULL, 1000, NULL), LSEC_EINVAL);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv(LSEC_ENV_TICKET_FD, bad[i], 1);
        assert_int_equal(lsec_connect_inherited(NULL, 1000, &ch), LSEC_EINVAL);
        /* A malformed value is spent too: a grandchild never finds it. */
        assert_null(getenv(LSEC_ENV_TICKET_FD));
    }
    {
        lsec_listener *l = NULL;
        assert_int_equal(lsec_listen("127.0.0.1:0", NULL, &l), 0);
        setenv(LSEC_ENV_ANNOUNCE_FD, "03", 1);
        assert_int_equal(lsec_listener_announce(l), LSEC_EINVAL);
        assert_null(getenv(LSEC_ENV_ANNOUNCE_FD));
        lsec_listener_close(l);
    }

    /* A number that is not an open descriptor. */
    setenv(LSEC_ENV_TICKET_FD, "987", 1);
    assert_int_equal(lsec_connect_inherited(NULL, 1000, &ch), LSEC_ENOTFOUND);
    assert_null(getenv(LSEC_ENV_TICKET_FD));

    /* A regular file is not a ticket pipe. */
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    snprintf(num, sizeof(num), "%d", fd);
    setenv(LSEC_ENV_TICKET_FD, num, 1);
    assert_int_equal(lsec_connect_inherited(NULL, 1000, &ch), LSEC_EINVAL);
    close(fd);

    /* Empty pipe (already read) and garbage. */
    fd = inherit_text("");
    assert_int_equal(lsec_connect_inherited(NULL, 1000, &ch), LSEC_EBADTICKET);
    assert_int_equal(fcntl(fd, F_GETFD), -1);
    assert_null(getenv(LSEC_ENV_TICKET_FD));
    fd = inherit_text("not a ticket\n");
    assert_int_equal(lsec_connect_inherited(NULL, 1000, &ch), LSEC_EBADTICKET);
    assert_int_equal(fcntl(fd, F_GETFD), -1);
    assert_null(ch);
}

static void test_connect_inherited_reads_and_scrubs(void **state)
{
    char ticket[LSEC_TICKET_MAX + 2];
    struct acceptor a;
    lsec_listener *l;
    lsec_channel *ch;
    int fd;
    (void)state;

    assert_int_equal(lsec_listen("127.0.0.1:0", NULL, &l), 0);
    assert_int_equal(lsec_listener_ticket(l, ticket, LSEC_TICKET_MAX), 0);
    strcat(ticket, "\n");
    fd = inherit_text(ticket);
    lsec__wipe(ticket, sizeof(ticket));
    acceptor_start(&a, l);
    assert_int_equal(lsec_connect_inherited(NULL, 5000, &ch), 0);
    acceptor_join(&a);
    assert_int_equal(a.rc, 0);
    /* Read once: the pipe is closed (its number may already be reused by
     * the channel's socket) and the variable gone. */
    {
        struct stat st;
        assert_true(fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode));
    }
    assert_null(getenv(LSEC_ENV_TICKET_FD));
    {
        char buf[16];
        size_t len;
        assert_int_equal(lsec_send(ch, "ping", 4, 5000), 0);
        assert_int_equal(lsec_recv(a.ch, buf, sizeof(buf), &len, 5000), 0);
        assert_int_equal(len, 4);
        assert_memory_equal(buf, "ping", 4);
    }
    lsec_channel_close(ch);
    lsec_channel_close(a.ch);
    lsec_listener_close(l);
}

/* ------------------------------------------------------------------------ */
/* Connection files                                                          */

static void test_connfile_write_read(void **state)
{
    char dir[64], path[128], written[LSEC_PATH_MAX], text[LSEC_TICKET_MAX];
    lsec__ticket t, back;
    struct stat st;
    size_t len;
    mode_t old;
    char *content;
    (void)state;

    make_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/app.ticket", dir);
    make_ticket(&t, 4242);
    /* Whatever the umask, the file is 0600. */
    old = umask(0);
    assert_int_equal(lsec__connfile_write(&t, path, written, sizeof(written)),
                     0);
    umask(old);
    assert_string_equal(written, path);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_uid, geteuid());
    content = read_whole(path, &len);
    assert_int_equal(lsec__ticket_format(&t, text, sizeof(text)), 0);
    assert_int_equal(len, strlen(text) + 1);
    assert_memory_equal(content, text, strlen(text));
    assert_int_equal(content[len - 1], '\n');

    assert_int_equal(lsec__connfile_read(path, 0, &back), 0);
    assert_memory_equal(&back.addr, &t.addr, sizeof(t.addr));
    assert_int_equal(back.mode, t.mode);
    assert_memory_equal(back.id, t.id, sizeof(t.id));
    assert_memory_equal(back.secret, t.secret, sizeof(t.secret));

    /* Writing again replaces the file atomically; no temp file remains. */
    assert_int_equal(lsec__connfile_write(&t, path, NULL, 0), 0);
    {
        char cmd[160];
        snprintf(cmd, sizeof(cmd), "test $(ls -A %s | wc -l) -eq 1", dir);
        assert_int_equal(system(cmd), 0);
    }

    /* A buffer too small for the path: EMSGSIZE, nothing written. */
    unlink(path);
    assert_int_equal(lsec__connfile_write(&t, path, written, 8), LSEC_EMSGSIZE);
    assert_int_equal(access(path, F_OK), -1);

    /* Misuse and impossible places. */
    assert_int_equal(lsec__connfile_write(NULL, path, NULL, 0), LSEC_EINVAL);
    assert_int_equal(lsec__connfile_write(&t, "", NULL, 0), LSEC_EINVAL);
    snprintf(path, sizeof(path), "%s/", dir);
    assert_int_equal(lsec__connfile_write(&t, path, NULL, 0), LSEC_EINVAL);
    snprintf(path, sizeof(path), "%s/missing/app.ticket", dir);
    assert_int_equal(lsec__connfile_write(&t, path, NULL, 0), LSEC_ENOTFOUND);

    lsec__ticket_wipe(&t);
    lsec__ticket_wipe(&back);
    remove_tree(dir);
}

static void test_connfile_default_dir(void **state)
{
    char dir[64], sub[128], want[256], written[LSEC_PATH_MAX];
    char idhex[2 * LSEC__ID_BYTES + 1];
    char *saved = getenv("XDG_RUNTIME_DIR");
    lsec__ticket t;
    struct stat st;
    (void)state;

    saved = saved != NULL ? strdup(saved) : NULL;
    make_tmpdir(dir, sizeof(dir));
    make_ticket(&t, 4243);
    snprintf(sub, sizeof(sub), "%s/loopsec", dir);

    unsetenv("XDG_RUNTIME_DIR");
    assert_int_equal(lsec__connfile_write(&t, NULL, written, sizeof(written)),
                     LSEC_EINVAL);
    assert_detail_has("XDG_RUNTIME_DIR");
    setenv("XDG_RUNTIME_DIR", "relative/dir", 1);
    assert_int_equal(lsec__connfile_write(&t, NULL, NULL, 0), LSEC_EINVAL);

    setenv("XDG_RUNTIME_DIR", dir, 1);
    assert_int_equal(lsec__connfile_write(&t, NULL, written, sizeof(written)),
                     0);
    assert_int_equal(lsec__hex_encode(idhex, sizeof(idhex), t.id, sizeof(t.id)),
                     0);
    snprintf(want, sizeof(want), "%s/%s.ticket", sub, idhex);
    assert_string_equal(written, want);
    assert_int_equal(stat(sub, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(stat(written, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    unlink(written);

    /* A directory open to others is refused, not repaired. */
    assert_int_equal(chmod(sub, 0755), 0);
    assert_int_equal(lsec__connfile_write(&t, NULL, NULL, 0), LSEC_EPERM);
    assert_detail_has("mode 0755");
    assert_int_equal(chmod(sub, 0700), 0);

    /* A directory someone else owns is refused. */
    if (geteuid() == 0) {
        assert_int_equal(chown(sub, 65534, 65534), 0);
        assert_int_equal(lsec__connfile_write(&t, NULL, NULL, 0), LSEC_EPERM);
        assert_detail_has("owned by uid 65534");
    } else {
        print_message("skipped: the foreign-owner directory check needs "
                      "root\n");
    }

    /* A symlink in place of the directory is refused, not followed. */
    assert_int_equal(rmdir(sub), 0);
    assert_int_equal(symlink("/tmp", sub), 0);
    assert_int_equal(lsec__connfile_write(&t, NULL, NULL, 0), LSEC_EPERM);
    assert_detail_has("symlink");

    if (saved != NULL) {
        setenv("XDG_RUNTIME_DIR", saved, 1);
        free(saved);
    } else {
        unsetenv("XDG_RUNTIME_DIR");
    }
    lsec__ticket_wipe(&t);
    remove_tree(dir);
}

static void test_connfile_given_dir_checks(void **state)
{
    char dir[64], open_dir[128], sticky[128], path[192];
    lsec__ticket t;
    (void)state;

    make_tmpdir(dir, sizeof(dir));
    make_ticket(&t, 4244);
    snprintf(open_dir, sizeof(open_dir), "%s/open", dir);
    snprintf(sticky, sizeof(sticky), "%s/sticky", dir);
    assert_int_equal(mkdir(open_dir, 0700), 0);
    assert_int_equal(chmod(open_dir, 0777), 0);
    assert_int_equal(mkdir(sticky, 0700), 0);
    assert_int_equal(chmod(sticky, 01777), 0);

    /* Others could swap the file in a writable, non-sticky directory. */
    snprintf(path, sizeof(path), "%s/app.ticket", open_dir);
    assert_int_equal(lsec__connfile_write(&t, path, NULL, 0), LSEC_EPERM);
    assert_detail_has("writable by others");
    /* A sticky shared directory (like /tmp) is fine. */
    snprintf(path, sizeof(path), "%s/app.ticket", sticky);
    assert_int_equal(lsec__connfile_write(&t, path, NULL, 0), 0);

    lsec__ticket_wipe(&t);
    remove_tree(dir);
}

/* A symlink planted at the target is replaced, never written through. */
static void test_connfile_planted_symlink(void **state)
{
    char dir[64], victim[128], path[128], dangling[128];
    lsec__ticket t;
    struct stat st;
    size_t len;
    char *content;
    (void)state;

    make_tmpdir(dir, sizeof(dir));
    make_ticket(&t, 4245);
    snprintf(victim, sizeof(victim), "%s/victim", dir);
    snprintf(path, sizeof(path), "%s/app.ticket", dir);
    write_text(victim, "precious\n", 0644);
    assert_int_equal(symlink(victim, path), 0);

    assert_int_equal(lsec__connfile_write(&t, path, NULL, 0), 0);
    content = read_whole(victim, &len);
    assert_string_equal(content, "precious\n");
    assert_int_equal(stat(victim, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);

    /* A dangling symlink must not create its target either. */
    snprintf(dangling, sizeof(dangling), "%s/created-through-link", dir);
    unlink(path);
    assert_int_equal(symlink(dangling, path), 0);
    assert_int_equal(lsec__connfile_write(&t, path, NULL, 0), 0);
    assert_int_equal(access(dangling, F_OK), -1);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));

    lsec__ticket_wipe(&t);
    remove_tree(dir);
}

/* A secret or a PSK passed where a path belongs is never echoed. */
static void test_path_detail_withholds_secrets(void **state)
{
    uint8_t raw[LSEC_SECRET_BYTES];
    char secret[64], hex[65], path[128];
    lsec_channel *c = NULL;
    (void)state;

    lsec__random(raw, sizeof(raw));
    assert_int_equal(lsec__b64_encode(secret, sizeof(secret), raw, 32), 0);
    assert_int_equal(lsec__hex_encode(hex, sizeof(hex), raw, 32), 0);
    const char *texts[] = {secret, hex, path};
    snprintf(path, sizeof(path), "/tmp/%s.ticket", secret);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(lsec_connect_file(texts[i], NULL, 1000, &c),
                         LSEC_ENOTFOUND);
        assert_detail_has("withheld");
        const char *d = lsec_last_detail();
        for (size_t k = 0; k + 12 <= strlen(hex); k++) {
            assert_null(memmem(d, strlen(d), hex + k, 12));
            if (k + 12 <= strlen(secret))
                assert_null(memmem(d, strlen(d), secret + k, 12));
        }
    }
    /* An ordinary path is still named. */
    assert_int_equal(
        lsec_connect_file("/tmp/lsec-no-such/0011223344556677.ticket", NULL,
                          1000, &c),
        LSEC_ENOTFOUND);
    assert_detail_has("0011223344556677.ticket");
}

/* 32 zero bytes in a connection file are no secret: EBADTICKET, through
 * lsec__connfile_read and lsec_connect_file alike.  A file without its
 * final line feed is valid (PROTOCOL.md "Connection files"). */
static void test_connfile_zero_secret(void **state)
{
    char dir[64], path[128], text[LSEC_TICKET_MAX + 1];
    lsec_channel *c = NULL;
    lsec__ticket t, back;
    (void)state;

    make_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/z.ticket", dir);
    make_ticket(&t, 4247);
    /* Without the final line feed: read as the same ticket. */
    assert_int_equal(lsec__ticket_format(&t, text, sizeof(text)), 0);
    write_text(path, text, 0600);
    assert_int_equal(lsec__connfile_read(path, 0, &back), 0);
    assert_memory_equal(back.secret, t.secret, sizeof(t.secret));
    /* Two line feeds: refused. */
    strcat(text, "\n\n");
    write_text(path, text, 0600);
    assert_int_equal(lsec__connfile_read(path, 0, &back), LSEC_EBADTICKET);
    memset(t.secret, 0, sizeof(t.secret));
    assert_int_equal(lsec__ticket_format(&t, text, sizeof(text)), 0);
    strcat(text, "\n");
    write_text(path, text, 0600);
    assert_int_equal(lsec__connfile_read(path, 0, &back), LSEC_EBADTICKET);
    assert_detail_has("all zero");
    assert_int_equal(lsec_connect_file(path, NULL, 2000, &c), LSEC_EBADTICKET);
    assert_null(c);
    remove_tree(dir);
}

static void test_connfile_read_refusals(void **state)
{
    char dir[64], path[128], text[LSEC_TICKET_MAX + 1], big[400];
    lsec__ticket t, back;
    int64_t t0;
    (void)state;

    make_tmpdir(dir, sizeof(dir));
    make_ticket(&t, 4246);
    assert_int_equal(lsec__ticket_format(&t, text, sizeof(text)), 0);
    strcat(text, "\n");
    snprintf(path, sizeof(path), "%s/f.ticket", dir);

    /* Missing. */
    assert_int_equal(lsec__connfile_read(path, 0, &back), LSEC_ENOTFOUND);

    /* Readable or writable by others. */
    write_text(path, text, 0644);
    assert_int_equal(lsec__connfile_read(path, 0, &back), LSEC_EPERM);
    assert_detail_has("readable by others (mode 0644)");
    write_text(path, text, 0620);
    assert_int_equal(lsec__connfile_read(path, 0, &back), LSEC_EPERM);
    assert_detail_has("writable by others (mode 0620)");
    write_text(path, text, 0640);
    assert_int_equal(lsec__connfile_read(path, 0, &back), LSEC_EPERM);
    write_text(path, text, 0601);
    assert_int_equal(lsec__connfile_read(path, 0, &back), LSEC_EPERM);
    write_text(path, text, 0400);
    assert_int_equal(lsec__connfile_read(path, 0, &back), 0);

    /* Owned by another user. */
    if (geteuid() == 0) {
        write_text(path, text, 0600);
        assert_int_equal(chown(path, 65534, 65534), 0);
        assert_int_equal(lsec__connfile_read(path, 0, &back), LSEC_EPERM);
        assert_detail_has("owned by uid 65534");
    } else {
        print_message("skipped: the foreign-owner file check needs root\n");
    }
    unlink(path);

    /* A symlink to a good file is refused, not followed. */
    {
        char real[160];
        snprintf(real, sizeof(real), "%s/real.ticket", dir);
        write_text(real, text, 0600);
        assert_int_equal(symlink(real, path), 0);
        assert_int_equal(lsec__connfile_read(path, 0, &back), LSEC_EPERM);
        assert_detail_has("symlink");
        unlink(path);
    }

    /* A directory (`--ticket-file /tmp`): said as what it is, LSEC_EINVAL,
     * not "unsafe permissions" (issue 12 item 6). */
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(lsec__connfile_read(path, 0, &back), LSEC_EINVAL);
    assert_detail_has("is a directory, not a connection file");
    rmdir(path);
    assert_int_equal(lsec__connfile_read("/tmp", 0, &back), LSEC_EINVAL);
    assert_detail_has("/tmp is a directory");

    /* A hard-linked file (issue 13 item 11): refused, whichever name. */
    {
        char other[160];
        snprintf(other, sizeof(other), "%s/other.ticket", dir);
        write_text(path, text, 0600);
        assert_int_equal(link(path, other), 0);
        assert_int_equal(lsec__connfile_read(path, 0, &back), LSEC_EPERM);
        assert_detail_has("has 2 hard links, expected 1");
        assert_int_equal(lsec__connfile_read(other, 0, &back), LSEC_EPERM);
        unlink(other);
        assert_int_equal(lsec__connfile_read(path, 0, &back), 0);
        unlink(path);
    }

    /* A fifo: refused at once, never blocking on it. */
    assert_int_equal(mkfifo(path, 0600), 0);
    t0 = lsec__now_ms();
    assert_int_equal(lsec__connfile_read(path, 0, &back), LSEC_EPERM);
    assert_true(lsec__now_ms() - t0 < 500);
    assert_detail_has("a fifo");
    unlink(path);

    /* Oversized. */
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    write_text(path, big, 0600);
    assert_int_equal(lsec__connfile_read(path, 0, &back), LSEC_EPERM);
    assert_detail_has("too large");

    /* Empty, garbage, two lines. */
    write_text(path, "", 0600);
    assert_int_equal(lsec__connfile_read(path, 0, &back), LSEC_EBADTICKET);
    write_text(path, "\n", 0600);
    assert_int_equal(lsec__connfile_read(path, 0, &back), LSEC_EBADTICKET);
    write_text(path, "hello\n", 0600);
    assert_int_equal(lsec__connfile_read(path, 0, &back), LSEC_EBADTICKET);
    {
        char two[2 * LSEC_TICKET_MAX];
        snprintf(two, sizeof(two), "%s%s", text, "x\n");
        write_text(path, two, 0600);
        assert_int_equal(lsec__connfile_read(path, 0, &back), LSEC_EBADTICKET);
    }
    /* Without the trailing newline it is still one ticket. */
    text[strlen(text) - 1] = '\0';
    write_text(path, text, 0600);
    assert_int_equal(lsec__connfile_read(path, 0, &back), 0);
    assert_memory_equal(back.secret, t.secret, sizeof(t.secret));

    /* A ticket passed as a path: refused, and the secret not echoed in the
     * detail (for the write, the path is withheld). */
    {
        char as_path[LSEC_TICKET_MAX + 1];
        const char *sec;
        snprintf(as_path, sizeof(as_path), "%s", text);
        sec = strstr(as_path, "secret=") + strlen("secret=");
        assert_int_equal(lsec__connfile_read(as_path, 0, &back), LSEC_EINVAL);
        assert_null(strstr(lsec_last_detail(), sec));
        assert_int_equal(
            lsec_connect_file(as_path, NULL, 100, &(lsec_channel *){NULL}),
            LSEC_EINVAL);
        assert_null(strstr(lsec_last_detail(), sec));
        assert_int_equal(lsec__connfile_write(&t, as_path, NULL, 0),
                         LSEC_ENOTFOUND);
        assert_null(strstr(lsec_last_detail(), sec));
        assert_detail_has("withheld");
    }
    assert_int_equal(lsec__connfile_read(NULL, 0, &back), LSEC_EINVAL);
    assert_int_equal(lsec__connfile_read(path, 0, NULL), LSEC_EINVAL);
    lsec__wipe(text, sizeof(text));
    lsec__ticket_wipe(&t);
    lsec__ticket_wipe(&back);
    remove_tree(dir);
}

/* End to end: the listener writes, a client connects; the file goes when
 * the listener closes; a stale file fails cleanly. */
static void test_connect_file(void **state)
{
    char dir[64], path[128], stale[128], written[LSEC_PATH_MAX];
    struct acceptor a;
    lsec_listener *l;
    lsec_channel *ch = (lsec_channel *)1;
    (void)state;

    make_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/app.ticket", dir);
    snprintf(stale, sizeof(stale), "%s/stale.ticket", dir);

    assert_int_equal(lsec_listen("127.0.0.1:0", NULL, &l), 0);
    assert_int_equal(
        lsec_listener_write_file(l, path, written, sizeof(written)), 0);
    assert_string_equal(written, path);
    /* A copy the listener does not know about, to go stale. */
    assert_int_equal(
        lsec__connfile_write(lsec__listener_ticket(l), stale, NULL, 0), 0);

    acceptor_start(&a, l);
    assert_int_equal(lsec_connect_file(path, NULL, 5000, &ch), 0);
    acceptor_join(&a);
    assert_int_equal(a.rc, 0);
    assert_int_equal(lsec_send(ch, "hi", 2, 5000), 0);
    {
        char buf[8];
        size_t len;
        assert_int_equal(lsec_recv(a.ch, buf, sizeof(buf), &len, 5000), 0);
        assert_int_equal(len, 2);
    }
    lsec_channel_close(ch);
    lsec_channel_close(a.ch);

    lsec_listener_close(l);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(errno, ENOENT);

    /* The listener is gone: a clean, prompt refusal. */
    assert_int_equal(lsec_connect_file(stale, NULL, 2000, &ch), LSEC_ECLOSED);
    assert_null(ch);
    assert_int_equal(lsec_connect_file(path, NULL, 2000, &ch), LSEC_ENOTFOUND);
    assert_int_equal(chmod(stale, 0644), 0);
    assert_int_equal(lsec_connect_file(stale, NULL, 2000, &ch), LSEC_EPERM);
    assert_int_equal(lsec_connect_file(NULL, NULL, 2000, &ch), LSEC_EINVAL);
    assert_int_equal(lsec_connect_file(stale, NULL, 2000, NULL), LSEC_EINVAL);
    remove_tree(dir);
}

static void test_connect_file_default_removed_on_close(void **state)
{
    char dir[64], written[LSEC_PATH_MAX];
    char *saved = getenv("XDG_RUNTIME_DIR");
    lsec_listener *l;
    struct stat st;
    (void)state;

    saved = saved != NULL ? strdup(saved) : NULL;
    make_tmpdir(dir, sizeof(dir));
    setenv("XDG_RUNTIME_DIR", dir, 1);
    assert_int_equal(lsec_listen("127.0.0.1:0", NULL, &l), 0);
    assert_int_equal(
        lsec_listener_write_file(l, NULL, written, sizeof(written)), 0);
    assert_int_equal(stat(written, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    lsec_listener_close(l);
    assert_int_equal(access(written, F_OK), -1);
    if (saved != NULL) {
        setenv("XDG_RUNTIME_DIR", saved, 1);
        free(saved);
    } else {
        unsetenv("XDG_RUNTIME_DIR");
    }
    remove_tree(dir);
}

/* Save and restore XDG_RUNTIME_DIR around a test. */
static char *xdg_save(void)
{
    char *saved = getenv("XDG_RUNTIME_DIR");
    return saved != NULL ? strdup(saved) : NULL;
}

static void xdg_restore(char *saved)
{
    if (saved != NULL) {
        setenv("XDG_RUNTIME_DIR", saved, 1);
        free(saved);
    } else {
        unsetenv("XDG_RUNTIME_DIR");
    }
}

/*
 * An unsafe XDG_RUNTIME_DIR is refused (issue 13 item 10): owned by another
 * uid, mode 0755 or 0777, or a symlink -- LSEC_EPERM with a detail naming
 * what is wrong and what to do, and nothing written there.
 */
static void test_xdg_runtime_dir_must_be_ours(void **state)
{
    char dir[64], xdg[128], link_path[128], written[LSEC_PATH_MAX];
    char *saved = xdg_save();
    lsec_listener *l;
    (void)state;

    make_tmpdir(dir, sizeof(dir));
    snprintf(xdg, sizeof(xdg), "%s/run", dir);
    snprintf(link_path, sizeof(link_path), "%s/run-link", dir);
    assert_int_equal(mkdir(xdg, 0700), 0);
    assert_int_equal(lsec_listen("127.0.0.1:0", NULL, &l), 0);
    setenv("XDG_RUNTIME_DIR", xdg, 1);

    static const mode_t open_modes[] = {0755, 0777, 0710};
    for (size_t i = 0; i < sizeof(open_modes) / sizeof(open_modes[0]); i++) {
        char want[64];
        assert_int_equal(chmod(xdg, open_modes[i]), 0);
        assert_int_equal(
            lsec_listener_write_file(l, NULL, written, sizeof(written)),
            LSEC_EPERM);
        snprintf(want, sizeof(want), "open to others (mode 0%03o)",
                 (unsigned)open_modes[i]);
        assert_detail_has(want);
        assert_detail_has("chmod 700");
        assert_string_equal(written, "");
    }
    assert_int_equal(chmod(xdg, 0700), 0);

    if (geteuid() == 0) {
        assert_int_equal(chown(xdg, 65534, 65534), 0);
        assert_int_equal(lsec_listener_write_file(l, NULL, NULL, 0),
                         LSEC_EPERM);
        assert_detail_has("is owned by uid 65534, not by you");
        assert_int_equal(chown(xdg, geteuid(), getegid()), 0);
    } else {
        print_message("skipped: the foreign-owner XDG_RUNTIME_DIR check "
                      "needs root\n");
    }

    assert_int_equal(symlink(xdg, link_path), 0);
    setenv("XDG_RUNTIME_DIR", link_path, 1);
    assert_int_equal(lsec_listener_write_file(l, NULL, NULL, 0), LSEC_EPERM);
    assert_detail_has("is a symlink or not a directory");

    /* Nothing was created under any of them. */
    char sub[160];
    snprintf(sub, sizeof(sub), "%s/loopsec", xdg);
    assert_int_equal(access(sub, F_OK), -1);
    /* The same directory, safe again, works. */
    setenv("XDG_RUNTIME_DIR", xdg, 1);
    assert_int_equal(lsec_listener_write_file(l, NULL, NULL, 0), 0);
    lsec_listener_close(l);
    xdg_restore(saved);
    remove_tree(dir);
}

/*
 * Close removes only the file this listener created (issue 13 item 10):
 * after loopsec/ is renamed away and a file planted under the same name in
 * a new loopsec/, the planted file stays and the real one is removed (it
 * is found through the directory the listener wrote it in).
 */
static void test_close_leaves_planted_file(void **state)
{
    char dir[64], written[LSEC_PATH_MAX], sub[128], moved[128];
    char moved_file[LSEC_PATH_MAX + 16];
    char *saved = xdg_save();
    const char *base;
    lsec_listener *l;
    (void)state;

    make_tmpdir(dir, sizeof(dir));
    setenv("XDG_RUNTIME_DIR", dir, 1);
    snprintf(sub, sizeof(sub), "%s/loopsec", dir);
    snprintf(moved, sizeof(moved), "%s/loopsec.moved", dir);
    assert_int_equal(lsec_listen("127.0.0.1:0", NULL, &l), 0);
    assert_int_equal(
        lsec_listener_write_file(l, NULL, written, sizeof(written)), 0);
    base = strrchr(written, '/') + 1;
    snprintf(moved_file, sizeof(moved_file), "%s/%s", moved, base);

    assert_int_equal(rename(sub, moved), 0);
    assert_int_equal(mkdir(sub, 0700), 0);
    write_text(written, "planted\n", 0600);
    lsec_listener_close(l);
    /* The planted file is left alone; the listener's own is gone. */
    assert_int_equal(access(written, F_OK), 0);
    assert_int_equal(access(moved_file, F_OK), -1);
    assert_int_equal(errno, ENOENT);

    /* A file replaced in place (another inode under the same name) is left
     * alone too. */
    assert_int_equal(lsec_listen("127.0.0.1:0", NULL, &l), 0);
    assert_int_equal(
        lsec_listener_write_file(l, NULL, written, sizeof(written)), 0);
    assert_int_equal(unlink(written), 0);
    write_text(written, "planted\n", 0600);
    lsec_listener_close(l);
    assert_int_equal(access(written, F_OK), 0);

    xdg_restore(saved);
    remove_tree(dir);
}

/*
 * A non-root writer meeting another user's file in a sticky directory (like
 * /tmp) is refused with LSEC_EPERM, not LSEC_EIO (issue 13 item 11): a
 * child that setuid's to 65534 writes over a root-owned file.
 */
static void test_sticky_foreign_file_is_eperm(void **state)
{
    char dir[64], path[128];
    lsec__ticket t;
    int status = 0;
    pid_t pid;
    (void)state;

    if (geteuid() != 0) {
        print_message("skipped: the sticky-directory check needs root (a "
                      "child becomes uid 65534)\n");
        return;
    }
    make_tmpdir(dir, sizeof(dir));
    assert_int_equal(chmod(dir, 01777), 0);
    snprintf(path, sizeof(path), "%s/app.ticket", dir);
    write_text(path, "root's\n", 0600);
    make_ticket(&t, 4245);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(100);
        int rc = lsec__connfile_write(&t, path, NULL, 0);
        if (rc != LSEC_EPERM)
            _exit(rc == LSEC_EIO ? 101 : 102);
        _exit(strstr(lsec_last_detail(), "belongs to another user") != NULL
                  ? 0
                  : 103);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0)
        fail_msg("child: exit %d (101: LSEC_EIO, 102: another code, 103: "
                 "detail)",
                 WEXITSTATUS(status));
    /* The root-owned file is untouched, and no temp file is left. */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_uid, 0);
    lsec__ticket_wipe(&t);
    remove_tree(dir);
}

/* ------------------------------------------------------------------------ */
/* loopsec spawn                                                             */

/* Run `cmd` under sh with stdin a pipe we hold open until its output ends
 * (so the relay's stdin never ends first), stdout and stderr captured.
 * Returns the exit status. */
static int run_shell(const char *cmd, char *out, size_t cap)
{
    int in[2], op[2], st;
    size_t got = 0;
    pid_t pid;

    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(op, O_CLOEXEC), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(op[1], 1);
        dup2(op[1], 2);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(op[1]);
    for (int i = 0; i < 200; i++) {
        struct pollfd p = {.fd = op[0], .events = POLLIN};
        ssize_t n;
        if (poll(&p, 1, 100) <= 0)
            continue;
        n = read(op[0], out + got, cap - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    out[got] = '\0';
    close(op[0]);
    close(in[1]);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void test_cli_spawn(void **state)
{
    char cmd[2048], out[1024];
    (void)state;

    /* The helper connects back with `loopsec connect --inherited`, sends one
     * line and hangs up; the parent relays it to stdout.  (Its stdin stays
     * open: the relay ends because the helper closed.) */
    snprintf(cmd, sizeof(cmd),
             "%s spawn --timeout 5000 -- sh -c "
             "'echo hello from the helper | %s connect --inherited' 2>&1",
             LSEC_TEST_CLI, LSEC_TEST_CLI);
    assert_int_equal(run_shell(cmd, out, sizeof(out)), 0);
    assert_string_equal(out, "hello from the helper\n");

    /* A helper that dies: exit 1 and one line naming its status. */
    snprintf(cmd, sizeof(cmd), "%s spawn -- %s exit 3 2>&1 </dev/null",
             LSEC_TEST_CLI, helper_path);
    assert_int_equal(run_shell(cmd, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "exited with status 3"));

    snprintf(cmd, sizeof(cmd), "%s spawn 2>&1 </dev/null", LSEC_TEST_CLI);
    assert_int_equal(run_shell(cmd, out, sizeof(out)), 2);
    snprintf(cmd, sizeof(cmd), "%s spawn --timeout x -- true 2>&1",
             LSEC_TEST_CLI);
    assert_int_equal(run_shell(cmd, out, sizeof(out)), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spawn_roundtrip),
        cmocka_unit_test(test_spawn_tls),
        cmocka_unit_test(test_spawn_bad_args),
        cmocka_unit_test(test_spawn_secret_not_in_cmdline_or_environ),
        cmocka_unit_test(test_spawn_only_ticket_fd_inherited),
        cmocka_unit_test(test_spawn_helper_exits_at_once),
        cmocka_unit_test(test_spawn_timeout),
        cmocka_unit_test(test_spawn_exec_failures),
        cmocka_unit_test(test_spawn_helper_dies_with_parent),
        cmocka_unit_test(test_spawn_helper_survives_when_asked),
        cmocka_unit_test(test_helper_wait_kill_free),
        cmocka_unit_test(test_helper_free_survivor),
        cmocka_unit_test(test_spawn_listening_roundtrip),
        cmocka_unit_test(test_spawn_listening_failures),
        cmocka_unit_test(test_announce_in_process),
        cmocka_unit_test(test_connect_inherited_env_checks),
        cmocka_unit_test(test_connect_inherited_reads_and_scrubs),
        cmocka_unit_test(test_connfile_write_read),
        cmocka_unit_test(test_connfile_default_dir),
        cmocka_unit_test(test_connfile_given_dir_checks),
        cmocka_unit_test(test_connfile_planted_symlink),
        cmocka_unit_test(test_connfile_read_refusals),
        cmocka_unit_test(test_connfile_zero_secret),
        cmocka_unit_test(test_path_detail_withholds_secrets),
        cmocka_unit_test(test_connect_file),
        cmocka_unit_test(test_connect_file_default_removed_on_close),
        cmocka_unit_test(test_xdg_runtime_dir_must_be_ours),
        cmocka_unit_test(test_close_leaves_planted_file),
        cmocka_unit_test(test_sticky_foreign_file_is_eperm),
        cmocka_unit_test(test_cli_spawn),
    };
    /* Every spawn below must find its helper; say so early if it is not
     * there rather than failing forty assertions. */
    if (access(helper_path, X_OK) != 0) {
        fprintf(stderr, "helper %s missing\n", helper_path);
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
