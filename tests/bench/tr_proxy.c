/*
 * For context only (--proxies): the raw anchor's program tunnelled through a
 * pair of stunnel4 (TLS 1.3, PSK) or spiped proxies, the way such tools are
 * deployed to protect a loopback service:
 *
 *   client -> client-side proxy -> server-side proxy -> raw server
 *
 * The server child starts both proxies and the raw server; the client
 * dials the client-side proxy.  The proxies' ports are picked by binding
 * port 0 and closing the socket before the proxy binds it: the very race
 * loopsec exists to avoid, tolerable here only because a lost race makes
 * the benchmark fail loudly, never measure the wrong thing.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/rand.h>

struct bsrv {
    bsrv *raw; /* the real server, behind the proxies */
    pid_t pids[2];
    char dir[64];
};

enum { STUNNEL, SPIPED };

/* A port that was free a moment ago (see the file comment). */
static int free_port(void)
{
    int port;
    int fd = b_tcp_listen(1, &port);
    if (fd < 0)
        return -1;
    close(fd);
    return port;
}

/* Is somebody listening on 127.0.0.1:port?  (/proc/net/tcp, state 0A) */
static bool listening(int port)
{
    char line[512], want[16];
    bool found = false;
    FILE *f = fopen("/proc/net/tcp", "r");
    if (f == NULL)
        return false;
    snprintf(want, sizeof(want), "0100007F:%04X", port);
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        char local[64], remote[64], state[8];
        if (sscanf(line, "%*s %63s %63s %7s", local, remote, state) == 3 &&
            strcmp(local, want) == 0 && strcmp(state, "0A") == 0)
            found = true;
    }
    fclose(f);
    return found;
}

static int write_file(const char *path, const char *text)
{
    int fd =
        open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return b_fail("create %s: %s", path, strerror(errno));
    int rc = b_write_all(fd, text, strlen(text));
    close(fd);
    return rc;
}

static pid_t spawn(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* The proxy dies with the server child, however that ends. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    execvp(argv[0], argv);
    _exit(127);
}

static int stunnel_conf(const char *dir, int which, int listen_port,
                        int target_port, char *path, size_t len)
{
    char text[1024];
    snprintf(path, len, "%s/stunnel-%d.conf", dir, which);
    snprintf(text, sizeof(text),
             "foreground = yes\npid =\nsyslog = no\ndebug = 3\n"
             "[bench]\nclient = %s\naccept = 127.0.0.1:%d\n"
             "connect = 127.0.0.1:%d\nPSKsecrets = %s/psk.txt\n"
             "sslVersionMin = TLSv1.3\n"
             "ciphersuites = TLS_AES_128_GCM_SHA256\n",
             which == 0 ? "no" : "yes", listen_port, target_port, dir);
    return write_file(path, text);
}

static void stop(bsrv *s)
{
    char path[128];
    for (int i = 0; i < 2; i++) {
        /* SIGKILL: by now every tunnelled connection is closed, and
         * spiped takes a second to honour SIGTERM. */
        if (s->pids[i] > 0) {
            kill(s->pids[i], SIGKILL);
            waitpid(s->pids[i], NULL, 0);
        }
    }
    static const char *const files[] = {"psk.txt", "key", "stunnel-0.conf",
                                        "stunnel-1.conf", "log"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", s->dir, files[i]);
        unlink(path);
    }
    rmdir(s->dir);
    if (s->raw != NULL)
        tr_raw.srv_close(s->raw);
    free(s);
}

static int proxy_open(int kind, bsrv **out, char *info, size_t infolen)
{
    char rawinfo[B_INFO_MAX], path[128], log[128], conf[2][128];
    char src[2][64], dst[2][64];
    uint8_t key[32];
    bsrv *s = calloc(1, sizeof(*s));
    int p0, p1, p2;

    if (s == NULL)
        return b_fail("out of memory");
    snprintf(s->dir, sizeof(s->dir), "/tmp/loopsec-bench-XXXXXX");
    if (mkdtemp(s->dir) == NULL) {
        free(s);
        return b_fail("mkdtemp: %s", strerror(errno));
    }
    if (tr_raw.srv_open(&s->raw, rawinfo, sizeof(rawinfo)) != B_OK)
        goto fail;
    p0 = atoi(rawinfo);
    p1 = free_port();
    p2 = free_port();
    if (p1 < 0 || p2 < 0 || RAND_bytes(key, sizeof(key)) != 1)
        goto fail;
    snprintf(log, sizeof(log), "%s/log", s->dir);
    if (kind == STUNNEL) {
        char psk[128];
        int off = snprintf(psk, sizeof(psk), "bench:");
        for (size_t i = 0; i < sizeof(key); i++)
            off +=
                snprintf(psk + off, sizeof(psk) - (size_t)off, "%02x", key[i]);
        snprintf(psk + off, sizeof(psk) - (size_t)off, "\n");
        snprintf(path, sizeof(path), "%s/psk.txt", s->dir);
        if (write_file(path, psk) != B_OK ||
            stunnel_conf(s->dir, 0, p1, p0, conf[0], sizeof(conf[0])) != B_OK ||
            stunnel_conf(s->dir, 1, p2, p1, conf[1], sizeof(conf[1])) != B_OK)
            goto fail;
        for (int i = 0; i < 2; i++) {
            char *argv[] = {(char *)"stunnel4", conf[i], NULL};
            s->pids[i] = spawn(argv, log);
        }
    } else {
        snprintf(path, sizeof(path), "%s/key", s->dir);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 || b_write_all(fd, key, sizeof(key)) != B_OK) {
            if (fd >= 0)
                close(fd);
            goto fail;
        }
        close(fd);
        snprintf(src[0], sizeof(src[0]), "[127.0.0.1]:%d", p1);
        snprintf(dst[0], sizeof(dst[0]), "[127.0.0.1]:%d", p0);
        snprintf(src[1], sizeof(src[1]), "[127.0.0.1]:%d", p2);
        snprintf(dst[1], sizeof(dst[1]), "[127.0.0.1]:%d", p1);
        for (int i = 0; i < 2; i++) {
            char *argv[] = {(char *)"spiped",
                            (char *)(i == 0 ? "-d" : "-e"),
                            (char *)"-F",
                            (char *)"-s",
                            src[i],
                            (char *)"-t",
                            dst[i],
                            (char *)"-k",
                            path,
                            NULL};
            s->pids[i] = spawn(argv, log);
        }
    }
    if (s->pids[0] < 0 || s->pids[1] < 0)
        goto fail;
    /* Ready when both proxies listen (bounded: 10 s). */
    for (int k = 0; k < 1000 && !(listening(p1) && listening(p2)); k++)
        usleep(10000);
    if (!listening(p1) || !listening(p2)) {
        b_fail("%s did not start (see its log in %s)",
               kind == STUNNEL ? "stunnel4" : "spiped", s->dir);
        goto fail;
    }
    snprintf(info, infolen, "%d", p2);
    *out = s;
    return B_OK;
fail:
    stop(s);
    return b_fail("cannot start the %s proxies",
                  kind == STUNNEL ? "stunnel4" : "spiped");
}

static int stunnel_open(bsrv **out, char *info, size_t infolen)
{
    return proxy_open(STUNNEL, out, info, infolen);
}

static int spiped_open(bsrv **out, char *info, size_t infolen)
{
    return proxy_open(SPIPED, out, info, infolen);
}

static int proxy_accept(bsrv *s, int timeout_ms, bconn **out)
{
    return tr_raw.srv_accept(s->raw, timeout_ms, out);
}

/* Connections are the raw anchor's own. */
static int p_connect(const char *info, bconn **out)
{
    return tr_raw.connect(info, out);
}
static int p_send(bconn *c, const void *buf, size_t len)
{
    return tr_raw.send(c, buf, len);
}
static int p_recv(bconn *c, void *buf, size_t cap, size_t *len)
{
    return tr_raw.recv(c, buf, cap, len);
}
static int p_try_recv(bconn *c, void *buf, size_t cap, size_t *len)
{
    return tr_raw.try_recv(c, buf, cap, len);
}
static int p_set_nonblock(bconn *c)
{
    return tr_raw.set_nonblock(c);
}
static int p_fd(const bconn *c)
{
    return tr_raw.fd(c);
}
static void p_close(bconn *c)
{
    tr_raw.close(c);
}

#define PROXY_TRANSPORT(var, nm, open)                                         \
    const transport var = {                                                    \
        .name = nm,                                                            \
        .anchor = NULL,                                                        \
        .srv_open = open,                                                      \
        .srv_accept = proxy_accept,                                            \
        .srv_close = stop,                                                     \
        .connect = p_connect,                                                  \
        .send = p_send,                                                        \
        .recv = p_recv,                                                        \
        .try_recv = p_try_recv,                                                \
        .set_nonblock = p_set_nonblock,                                        \
        .fd = p_fd,                                                            \
        .close = p_close,                                                      \
    }

PROXY_TRANSPORT(tr_stunnel, "stunnel", stunnel_open);
PROXY_TRANSPORT(tr_spiped, "spiped", spiped_open);
