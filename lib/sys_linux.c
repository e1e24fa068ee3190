/*
 * The Linux platform (sys.h): pidfd, close_range, PR_SET_PDEATHSIG, epoll,
 * timerfd.  Every Linux-only call of the library that is not a socket call
 * through io.c's seam lives in this file.
 */
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
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
/* Processes                                                                 */

int lsec__sys_pidfd_open(pid_t pid)
{
    /* Safe to take after fork: an unreaped child's pid cannot be reused.
     * pidfd_open's descriptors are close-on-exec. */
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);

    if (fd >= 0 && lsec__fd_lift(&fd) != 0) {
        close(fd);
        return -1;
    }
    return fd;
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

int lsec__sys_timer_arm(int timer, int ms)
{
    struct itimerspec its = {{0, 0}, {0, 0}};

    if (ms < 0) {
        errno = EINVAL;
        return -1;
    }
    /* 0 would disarm: due now is one nanosecond from now. */
    its.it_value.tv_sec = ms / 1000;
    its.it_value.tv_nsec = (long)(ms % 1000) * 1000000L + (ms == 0 ? 1 : 0);
    return timerfd_settime(timer, 0, &its, NULL);
}

int lsec__sys_timer_clear(int timer)
{
    struct itimerspec its = {{0, 0}, {0, 0}};
    uint64_t n;

    (void)!read(timer, &n, sizeof(n));
    return timerfd_settime(timer, 0, &its, NULL);
}
