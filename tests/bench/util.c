/*
 * Benchmark utilities: clocks, statistics, process figures, loopback
 * sockets.  Nothing here is specific to a transport.
 */
#include "bench.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint64_t b_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int b_fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "bench[%d]: ", (int)getpid());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return B_ERR;
}

long b_rss_bytes(void)
{
    /* /proc/self/statm: size resident shared text lib data dt, in pages. */
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

void b_release_free_memory(void)
{
    (void)malloc_trim(0); /* glibc: also the free pages inside the heap */
}

int b_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

long b_raise_nofile(long want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if ((long)rl.rlim_cur >= want)
        return (long)rl.rlim_cur;
    if ((long)rl.rlim_max < want) {
        /* Only root can raise the hard limit; the request is bounded by
         * the caller (a little above the channel count). */
        struct rlimit up = {(rlim_t)want, (rlim_t)want};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            return want;
    }
    rl.rlim_cur = (long)rl.rlim_max < want ? rl.rlim_max : (rlim_t)want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    return (long)rl.rlim_cur;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void b_sort_u64(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_u64);
}

uint64_t b_percentile(const uint64_t *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    /* Nearest rank. */
    size_t i = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (i < 1)
        i = 1;
    if (i > n)
        i = n;
    return sorted[i - 1];
}

int b_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return B_ERR;
        p += n;
        len -= (size_t)n;
    }
    return B_OK;
}

int b_read_all(int fd, void *buf, size_t len, int timeout_ms)
{
    uint8_t *p = buf;
    uint64_t end = b_now_ns() + (uint64_t)timeout_ms * 1000000u;
    while (len > 0) {
        uint64_t now = b_now_ns();
        if (now >= end)
            return B_ERR;
        struct pollfd pfd = {fd, POLLIN, 0};
        int r = poll(&pfd, 1, (int)((end - now) / 1000000u) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return B_ERR;
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n == 0 ? B_EOF : B_ERR;
        p += n;
        len -= (size_t)n;
    }
    return B_OK;
}

int b_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return B_ERR;
    return B_OK;
}

void b_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void b_loopback(struct sockaddr_in *sa, int port)
{
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* loopback only */
    sa->sin_port = htons((uint16_t)port);
}

int b_tcp_listen(int backlog, int *port)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return b_fail("socket: %s", strerror(errno));
    b_loopback(&sa, 0);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(fd, backlog) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        b_fail("bind/listen: %s", strerror(errno));
        close(fd);
        return B_ERR;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

int b_tcp_connect(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return b_fail("socket: %s", strerror(errno));
    b_nodelay(fd);
    b_loopback(&sa, port);
    while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        if (errno == EINTR)
            continue;
        b_fail("connect 127.0.0.1:%d: %s", port, strerror(errno));
        close(fd);
        return B_ERR;
    }
    return fd;
}

int b_wait(int fd, short events, int timeout_ms)
{
    struct pollfd pfd = {fd, events, 0};
    for (;;) {
        int r = poll(&pfd, 1, timeout_ms);
        if (r < 0 && errno == EINTR)
            continue;
        return r > 0 ? B_OK : B_ERR;
    }
}

void b_put_len(uint8_t hdr[4], uint32_t len)
{
    hdr[0] = (uint8_t)(len >> 24);
    hdr[1] = (uint8_t)(len >> 16);
    hdr[2] = (uint8_t)(len >> 8);
    hdr[3] = (uint8_t)len;
}

uint32_t b_get_len(const uint8_t hdr[4])
{
    return (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
           (uint32_t)hdr[2] << 8 | hdr[3];
}

int b_rbuf_take(b_rbuf *rb, void *out, size_t cap, size_t *len)
{
    size_t avail = rb->len - rb->off;
    if (avail < 4)
        return B_AGAIN;
    uint32_t n = b_get_len(rb->buf + rb->off);
    if (n > cap || n > sizeof(rb->buf) - 4)
        return b_fail("message of %u bytes too large for try_recv", n);
    if (avail < 4 + (size_t)n)
        return B_AGAIN;
    memcpy(out, rb->buf + rb->off + 4, n);
    rb->off += 4 + (size_t)n;
    *len = n;
    if (rb->off == rb->len)
        rb->off = rb->len = 0;
    return B_OK;
}

void b_rbuf_compact(b_rbuf *rb)
{
    if (rb->off > 0) {
        memmove(rb->buf, rb->buf + rb->off, rb->len - rb->off);
        rb->len -= rb->off;
        rb->off = 0;
    }
}
