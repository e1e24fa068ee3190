/*
 * Shared by the hardening tests (test_faults.c, test_load.c,
 * test_hygiene.c): process accounting (descriptors, heap), a raw TCP
 * client, and a listener served from a thread.  Include after cmocka.h.
 */
#ifndef LOOPSEC_HARDEN_UTIL_H
#define LOOPSEC_HARDEN_UTIL_H

#include "internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* valgrind's client-request header is optional: scripts/deps.sh does not
 * install valgrind (only scripts/valgrind.sh needs it), so without the
 * header the test recognises valgrind by the preload it always injects. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define HARDEN_VALGRIND_H 1
#endif
#endif

#if defined(__SANITIZE_ADDRESS__)
#define HARDEN_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HARDEN_ASAN 1
#endif
#endif
/* ThreadSanitizer (LOOPSEC_TSAN) has its own allocator too, with the same
 * count, and runs several times slower. */
#if defined(__SANITIZE_THREAD__)
#define HARDEN_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HARDEN_TSAN 1
#endif
#endif
#if defined(HARDEN_ASAN) || defined(HARDEN_TSAN)
#define HARDEN_SANITIZER_HEAP 1
/* From the sanitizer runtime (gcc ships no header declaring it). */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

/* Open descriptors of this process (/proc/self/fd, minus the one that
 * reads it). */
static inline int fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

/* Heap bytes in use: the sanitizer allocator's count under ASan or TSan,
 * glibc's otherwise. */
static inline size_t heap_in_use(void)
{
#ifdef HARDEN_SANITIZER_HEAP
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#endif
}

/* CPU time (user + system) this process has used, in milliseconds. */
static inline int64_t cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

/* Slow runtimes (valgrind, sanitizers) get smaller counts and wider time
 * bounds; the properties stay the same. */
static inline int slow_runtime(void)
{
#ifdef HARDEN_SANITIZER_HEAP
    return 1;
#else
#ifdef HARDEN_VALGRIND_H
    return RUNNING_ON_VALGRIND ? 1 : 0;
#else
    const char *pre = getenv("LD_PRELOAD");
    return pre != NULL && strstr(pre, "vgpreload") != NULL;
#endif
#endif
}

/* A plain TCP connection to 127.0.0.1:port, or -1. */
static inline int raw_connect(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Close with an RST instead of a FIN. */
static inline void close_reset(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

static inline lsec_listener *harden_listen(int mode, lsec_opts *o_in)
{
    lsec_opts o;
    lsec_listener *l = NULL;

    if (o_in != NULL)
        o = *o_in;
    else
        lsec_opts_init(&o);
    o.mode = mode;
    assert_int_equal(lsec_listen("127.0.0.1:0", &o, &l), 0);
    return l;
}

/*
 * A listener served from a thread: every accepted channel gets its first
 * message echoed back, then is closed.  Runs until `stop`.
 */
struct server {
    lsec_listener *l;
    pthread_t th;
    int stop;
    int served;  /* channels that echoed one message */
    int errors;  /* channels that failed before echoing */
    int recv_ms; /* how long a served channel may take to send */
};

static inline void *server_main(void *arg)
{
    struct server *s = arg;
    static _Thread_local uint8_t buf[65536];

    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
        lsec_channel *ch = NULL;
        size_t len = 0;
        int rc = lsec_accept(s->l, 20, &ch);
        if (rc != 0)
            continue;
        rc = lsec_recv(ch, buf, sizeof(buf), &len, s->recv_ms);
        if (rc == 0)
            rc = lsec_send(ch, buf, len, s->recv_ms);
        if (rc == 0)
            rc = lsec_flush(ch, s->recv_ms);
        if (rc == 0)
            __atomic_add_fetch(&s->served, 1, __ATOMIC_ACQ_REL);
        else
            __atomic_add_fetch(&s->errors, 1, __ATOMIC_ACQ_REL);
        lsec_channel_close(ch);
    }
    return NULL;
}

static inline void server_start(struct server *s, lsec_listener *l)
{
    memset(s, 0, sizeof(*s));
    s->l = l;
    s->recv_ms = 5000;
    assert_int_equal(pthread_create(&s->th, NULL, server_main, s), 0);
}

static inline void server_stop(struct server *s)
{
    __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
    pthread_join(s->th, NULL);
}

/* Connect, send `msg`, expect it back, close: 0 or the failing code. */
static inline int echo_client(const char *ticket, const lsec_opts *o,
                              const void *msg, size_t len, int timeout_ms)
{
    static _Thread_local uint8_t buf[65536];
    lsec_channel *c = NULL;
    size_t got = 0;
    int rc = lsec_connect(ticket, o, timeout_ms, &c);

    if (rc != 0)
        return rc;
    rc = lsec_send(c, msg, len, timeout_ms);
    if (rc == 0)
        rc = lsec_recv(c, buf, sizeof(buf), &got, timeout_ms);
    if (rc == 0 && (got != len || memcmp(buf, msg, len) != 0))
        rc = LSEC_EPROTO;
    lsec_channel_close(c);
    return rc;
}

#endif /* LOOPSEC_HARDEN_UTIL_H */
