/*
 * The Linux platform (sys.h): procfs (the TCP tables, which process holds
 * a socket, a process's name, route_localnet), TCP_INFO, pidfd, close_range,
 * PR_SET_PDEATHSIG, epoll, timerfd, splice.  With sys_linux_diag.c (sock_diag)
 * it holds every Linux-only call of the library's own files.
 */
#include "sys.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* ------------------------------------------------------------------------ */
/* route_localnet                                                            */

#define CONF_DIR "/proc/sys/net/ipv4/conf"
/* Bounded: no host has more interfaces than this worth reading. */
#define CONF_MAX_ENTRIES 4096

/* The value of one conf/<name>/route_localnet: 1, 0, or -1 unreadable. */
static int read_flag(const char *name)
{
    char path[sizeof(CONF_DIR) + NAME_MAX + 32], v[16];
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), CONF_DIR "/%s/route_localnet", name);
    fd = lsec__io.open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    do
        n = read(fd, v, sizeof(v) - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0)
        return -1;
    v[n] = '\0';
    return v[0] == '0' && (v[1] == '\n' || v[1] == '\0') ? 0 : 1;
}

int lsec__route_localnet(char *names, size_t len)
{
    struct dirent *e;
    DIR *d;
    int fd, found = 0, read_any = 0;
    size_t used = 0;

    if (names != NULL && len > 0)
        names[0] = '\0';
    /* The kernel ORs conf/all with the incoming interface's setting, so
     * "all" and every interface count. */
    fd = lsec__io.open(CONF_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || (d = fdopendir(fd)) == NULL) {
        if (fd >= 0)
            close(fd);
        return LSEC_ENOSYS;
    }
    for (int k = 0; k < CONF_MAX_ENTRIES && (e = readdir(d)) != NULL; k++) {
        if (e->d_name[0] == '.')
            continue;
        int v = read_flag(e->d_name);
        if (v < 0)
            continue;
        read_any = 1;
        if (v == 0)
            continue;
        if (found++ < 4 && names != NULL && used < len) {
            int n = snprintf(names + used, len - used, "%s%s",
                             used > 0 ? ", " : "", e->d_name);
            if (n > 0)
                used += (size_t)n;
        }
    }
    closedir(d);
    if (!read_any)
        return LSEC_ENOSYS;
    return found > 0 ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* The kernel's TCP tables                                                   */

/*
 * Decode the kernel's hex address: each group of 8 hex digits is one 32-bit
 * word printed in host byte order from the address's in-memory bytes, so
 * storing the word back in host order restores network order on any
 * endianness.
 */
static bool hex_ip(const char *hex, int family, uint8_t *ip)
{
    size_t words = family == AF_INET ? 1 : 4;
    char group[9];

    if (strlen(hex) != words * 8)
        return false;
    for (size_t i = 0; i < words; i++) {
        char *end;
        uint32_t w;
        memcpy(group, hex + 8 * i, 8);
        group[8] = '\0';
        w = (uint32_t)strtoul(group, &end, 16);
        if (*end != '\0')
            return false;
        memcpy(ip + 4 * i, &w, 4);
    }
    return true;
}

static bool parse_tcp_line(const char *line, int family, lsec__tcp_sock *s)
{
    char lhex[33], rhex[33];
    unsigned lport, rport, state;
    long long uid;
    unsigned long long inode;

    /* sl local:port rem:port st tx:rx tr:when retrnsmt uid timeout inode */
    if (sscanf(line,
               " %*d: %32[0-9A-Fa-f]:%x %32[0-9A-Fa-f]:%x %x %*x:%*x %*x:%*x "
               "%*x %lld %*d %llu",
               lhex, &lport, rhex, &rport, &state, &uid, &inode) != 7)
        return false;
    memset(s, 0, sizeof(*s));
    s->local.family = s->remote.family = family;
    if (!hex_ip(lhex, family, s->local.ip) ||
        !hex_ip(rhex, family, s->remote.ip) || lport > 65535 || rport > 65535)
        return false;
    s->local.port = (uint16_t)lport;
    s->remote.port = (uint16_t)rport;
    s->state = (int)state;
    s->uid = uid;
    s->inode = inode;
    return true;
}

int lsec__proc_tcp_scan(int family,
                        bool (*fn)(const lsec__tcp_sock *s, void *arg),
                        void *arg)
{
    const char *path = family == AF_INET6 ? "/proc/net/tcp6" : "/proc/net/tcp";
    char line[512];
    lsec__tcp_sock s;
    FILE *f;
    int rc = LSEC_ENOTFOUND;

    /* "e": close-on-exec, like every descriptor the library opens. */
    f = fopen(path, "re");
    if (f == NULL)
        return lsec__fail_errno(LSEC_ENOSYS, errno, "cannot read %s", path);
    while (fgets(line, sizeof(line), f) != NULL) {
        /* The header line and anything unexpected fail to parse and are
         * skipped. */
        if (parse_tcp_line(line, family, &s) && fn(&s, arg)) {
            rc = 0;
            break;
        }
    }
    fclose(f);
    return rc;
}

static bool all_digits(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

/* Does process `pid_dir` (a /proc entry name) hold a descriptor whose link
 * text is `want`? */
static bool holds_socket(const char *pid_dir, const char *want, size_t wantlen)
{
    char path[64], link[64];
    struct dirent *e;
    bool found = false;
    DIR *fds;

    snprintf(path, sizeof(path), "/proc/%s/fd", pid_dir);
    /* Other users' processes fail here with EACCES: not visible to us. */
    fds = opendir(path);
    if (fds == NULL)
        return false;
    while (!found && (e = readdir(fds)) != NULL) {
        ssize_t n;
        if (e->d_name[0] == '.')
            continue;
        n = readlinkat(dirfd(fds), e->d_name, link, sizeof(link));
        found = n == (ssize_t)wantlen && memcmp(link, want, wantlen) == 0;
    }
    closedir(fds);
    return found;
}

int32_t lsec__proc_socket_pid(uint64_t inode)
{
    char want[48], self[24];
    struct dirent *e;
    int32_t pid = -1;
    size_t wantlen;
    DIR *proc;

    if (inode == 0)
        return -1;
    wantlen = (size_t)snprintf(want, sizeof(want), "socket:[%llu]",
                               (unsigned long long)inode);
    /* Our own process first: cheap, and the usual answer when both ends
     * live in one program. */
    snprintf(self, sizeof(self), "%d", (int)getpid());
    if (holds_socket(self, want, wantlen))
        return (int32_t)getpid();
    proc = opendir("/proc");
    if (proc == NULL)
        return -1;
    while (pid < 0 && (e = readdir(proc)) != NULL) {
        if (all_digits(e->d_name) && strcmp(e->d_name, self) != 0 &&
            holds_socket(e->d_name, want, wantlen))
            pid = (int32_t)atoi(e->d_name);
    }
    closedir(proc);
    return pid;
}

/*
 * Only a socket of a live connection answers.  A listener is not the peer;
 * a TIME_WAIT socket or a request socket (NEW_SYN_RECV) is reported with
 * uid 0 and no inode, which would pass for root.
 */
enum { TIME_WAIT = 6, CLOSE = 7, LISTEN = 10, NEW_SYN_RECV = 12 };

bool lsec__tcp_state_live(int state)
{
    return state >= 1 && state <= 11 && state != TIME_WAIT && state != CLOSE &&
           state != LISTEN && state != NEW_SYN_RECV;
}

void lsec__sys_process_name(int32_t pid, char *cmd, size_t cap)
{
    char path[64];
    ssize_t n;
    int fd;

    cmd[0] = '\0';
    if (pid <= 0)
        return;
    snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    n = read(fd, cmd, cap - 1);
    close(fd);
    if (n <= 0) {
        cmd[0] = '\0';
        return;
    }
    cmd[n] = '\0';
    cmd[strcspn(cmd, "\n")] = '\0';
    /* Printable ASCII only: a process chooses its own name. */
    for (char *p = cmd; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
}

bool lsec__sys_tcp_established(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
           len >= offsetof(struct tcp_info, tcpi_state) + 1 &&
           ti.tcpi_state == TCP_ESTABLISHED;
}

/* ------------------------------------------------------------------------ */
/* Processes                                                                 */

int lsec__sys_pidfd_open(pid_t pid)
{
    /* Safe to take after fork: an unreaped child's pid cannot be reused.
     * pidfd_open's descriptors are close-on-exec. */
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int lsec__sys_pidfd_signal(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

void lsec__sys_cloexec_from(int first, long max_fd)
{
    if (syscall(SYS_close_range, first, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        for (long fd = first; fd < max_fd; fd++)
            (void)fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    }
}

int lsec__sys_pdeathsig_kill(void)
{
    return prctl(PR_SET_PDEATHSIG, SIGKILL);
}

int lsec__sys_no_dump(void)
{
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

int lsec__sys_pipe_cloexec(int p[2])
{
    return pipe2(p, O_CLOEXEC);
}

int lsec__sys_pipe_nonblock(int p[2])
{
    return pipe2(p, O_CLOEXEC | O_NONBLOCK);
}

size_t lsec__sys_pipe_grow(int fd, size_t want)
{
    (void)fcntl(fd, F_SETPIPE_SZ, (int)want);
    int cap = fcntl(fd, F_GETPIPE_SZ);
    return cap > 0 ? (size_t)cap : 65536;
}

ssize_t lsec__sys_splice(int in, int out, size_t len, bool more)
{
    unsigned flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

    if (more)
        flags |= SPLICE_F_MORE;
    return splice(in, NULL, out, NULL, len, flags);
}

/* ------------------------------------------------------------------------ */
/* Readiness sets and timers                                                 */

static uint32_t to_epoll(short events)
{
    return ((events & POLLIN) ? EPOLLIN : 0) |
           ((events & POLLOUT) ? EPOLLOUT : 0);
}

static short from_epoll(uint32_t e)
{
    return (
        short)(((e & EPOLLIN) ? POLLIN : 0) | ((e & EPOLLOUT) ? POLLOUT : 0) |
               ((e & EPOLLERR) ? POLLERR : 0) | ((e & EPOLLHUP) ? POLLHUP : 0));
}

static int set_ctl(int set, int op, int fd, short events)
{
    struct epoll_event ev = {.events = to_epoll(events), .data.fd = fd};

    return epoll_ctl(set, op, fd, &ev);
}

int lsec__sys_set_new(void)
{
    return epoll_create1(EPOLL_CLOEXEC);
}

int lsec__sys_set_add(int set, int fd, short events)
{
    return set_ctl(set, EPOLL_CTL_ADD, fd, events);
}

int lsec__sys_set_mod(int set, int fd, short events)
{
    return set_ctl(set, EPOLL_CTL_MOD, fd, events);
}

int lsec__sys_set_del(int set, int fd)
{
    return set_ctl(set, EPOLL_CTL_DEL, fd, 0);
}

int lsec__sys_set_wait(int set, lsec__sys_event *ev, int cap, int timeout_ms)
{
    struct epoll_event e[64];
    int n;

    if (cap <= 0) {
        errno = EINVAL;
        return -1;
    }
    if (cap > 64)
        cap = 64;
    n = epoll_wait(set, e, cap, timeout_ms);
    for (int i = 0; i < n; i++) {
        ev[i].fd = e[i].data.fd;
        ev[i].events = from_epoll(e[i].events);
    }
    return n;
}

int lsec__sys_timer_new(void)
{
    return timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
}

int lsec__sys_timer_arm(int timer, int64_t deadline)
{
    struct itimerspec its = {{0, 0}, {0, 0}};

    /* lsec__now_ms is CLOCK_MONOTONIC in milliseconds, as is the timer.
     * An all-zero value would disarm: "long past" is 1 ns after boot. */
    if (deadline <= 0) {
        its.it_value.tv_nsec = 1;
    } else {
        its.it_value.tv_sec = (time_t)(deadline / 1000);
        its.it_value.tv_nsec = (long)(deadline % 1000) * 1000000L;
    }
    return timerfd_settime(timer, TFD_TIMER_ABSTIME, &its, NULL);
}

int lsec__sys_timer_clear(int timer)
{
    struct itimerspec its = {{0, 0}, {0, 0}};
    uint64_t n;

    (void)!read(timer, &n, sizeof(n));
    return timerfd_settime(timer, 0, &its, NULL);
}

int lsec__sys_wake_new(void)
{
    return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

void lsec__sys_wake_signal(int wake)
{
    static const uint64_t one = 1;

    /* write(2) to an eventfd: async-signal-safe, never blocks (the counter
     * cannot overflow from ones in any real lifetime). */
    (void)!write(wake, &one, sizeof(one));
}
