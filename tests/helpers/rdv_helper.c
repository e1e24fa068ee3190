/*
 * The helper that tests/test_rendezvous.c spawns.  argv[1] picks what it
 * does; each mode exercises one promise of lsec_spawn or
 * lsec_spawn_listening from the helper's side:
 *
 *   exit N          exit at once with status N (never connects)
 *   signal N        kill itself with signal N
 *   sleep MS        sleep, then exit 0 (never connects)
 *   echo            connect back, echo every message until the parent closes
 *   fds             list its own open descriptors before connecting, then
 *                   connect and send "fds=0,1,2,3;env=3;after=unset"
 *   leak            read the ticket itself, connect with it, send it to the
 *                   parent (so the test knows the secret to look for in
 *                   /proc/PID/cmdline and environ), wait for the close
 *   hold            connect back, then sleep 30 s whatever happens
 *   announce        listen, announce, accept one peer, echo
 *   announce-exit N exit with N without announcing
 *   announce-none   close the announce descriptor and sleep 30 s
 *
 * Exit status 0 on success; 10 and above name the step that failed.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int echo_loop(lsec_channel *ch)
{
    char buf[4096];
    size_t len;

    for (;;) {
        int rc = lsec_recv(ch, buf, sizeof(buf), &len, 10000);
        if (rc == LSEC_ECLOSED)
            return 0;
        if (rc != 0)
            return 20;
        if (lsec_send(ch, buf, len, 5000) != 0)
            return 21;
    }
}

/* Wait until the parent closes the channel (or 10 s pass). */
static void drain(lsec_channel *ch)
{
    char buf[256];
    size_t len;

    while (lsec_recv(ch, buf, sizeof(buf), &len, 10000) == 0)
        ;
}

/* "0,1,2,3": our open descriptors, without the one reading the list. */
static void list_fds(char *out, size_t cap)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int mine, fds[256], n = 0;
    size_t used = 0;

    out[0] = '\0';
    if (d == NULL)
        return;
    mine = dirfd(d);
    while ((e = readdir(d)) != NULL && n < 256) {
        if (e->d_name[0] == '.')
            continue;
        int fd = atoi(e->d_name);
        if (fd != mine)
            fds[n++] = fd;
    }
    closedir(d);
    /* readdir order is the kernel's; sort for a stable comparison. */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
            int t = fds[j];
            fds[j] = fds[j - 1];
            fds[j - 1] = t;
        }
    for (int i = 0; i < n && used < cap; i++)
        used += (size_t)snprintf(out + used, cap - used, "%s%d",
                                 i > 0 ? "," : "", fds[i]);
}

static int mode_fds(void)
{
    char fds[512], msg[700];
    const char *env = getenv(LSEC_ENV_TICKET_FD);
    char envcopy[32];
    lsec_channel *ch;

    list_fds(fds, sizeof(fds));
    snprintf(envcopy, sizeof(envcopy), "%s", env != NULL ? env : "unset");
    if (lsec_connect_inherited(NULL, 5000, &ch) != 0)
        return 10;
    snprintf(msg, sizeof(msg), "fds=%s;env=%s;after=%s", fds, envcopy,
             getenv(LSEC_ENV_TICKET_FD) != NULL ? "set" : "unset");
    if (lsec_send(ch, msg, strlen(msg), 5000) != 0)
        return 11;
    drain(ch);
    lsec_channel_close(ch);
    return 0;
}

static int mode_leak(void)
{
    char buf[LSEC_TICKET_MAX + 1];
    const char *env = getenv(LSEC_ENV_TICKET_FD);
    lsec__ticket t;
    lsec_channel *ch;
    ssize_t n;
    size_t got = 0;

    if (env == NULL)
        return 10;
    int fd = atoi(env);
    while (got < LSEC_TICKET_MAX &&
           (n = read(fd, buf + got, LSEC_TICKET_MAX - got)) > 0)
        got += (size_t)n;
    close(fd);
    while (got > 0 && buf[got - 1] == '\n')
        got--;
    buf[got] = '\0';
    if (lsec__ticket_parse(buf, got, 0, &t) != 0)
        return 11;
    if (lsec__connect_ticket(&t, NULL, 5000, &ch) != 0)
        return 12;
    if (lsec_send(ch, buf, got, 5000) != 0)
        return 13;
    drain(ch);
    lsec_channel_close(ch);
    return 0;
}

static int mode_announce(void)
{
    lsec_listener *l;
    lsec_channel *ch;
    int rc;

    if (lsec_listen("127.0.0.1:0", NULL, &l) != 0)
        return 10;
    if (lsec_listener_announce(l) != 0)
        return 11;
    if (getenv(LSEC_ENV_ANNOUNCE_FD) != NULL)
        return 12;
    if (lsec_accept(l, 5000, &ch) != 0)
        return 13;
    lsec_listener_close(l);
    rc = echo_loop(ch);
    lsec_channel_close(ch);
    return rc;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    int arg = argc > 2 ? atoi(argv[2]) : 0;
    lsec_channel *ch;
    int rc;

    if (strcmp(mode, "exit") == 0)
        return arg;
    if (strcmp(mode, "signal") == 0) {
        raise(arg);
        return 99;
    }
    if (strcmp(mode, "sleep") == 0) {
        usleep((useconds_t)arg * 1000);
        return 0;
    }
    if (strcmp(mode, "echo") == 0) {
        if (lsec_connect_inherited(NULL, 5000, &ch) != 0)
            return 10;
        rc = echo_loop(ch);
        lsec_channel_close(ch);
        return rc;
    }
    if (strcmp(mode, "fds") == 0)
        return mode_fds();
    if (strcmp(mode, "leak") == 0)
        return mode_leak();
    if (strcmp(mode, "hold") == 0) {
        if (lsec_connect_inherited(NULL, 5000, &ch) != 0)
            return 10;
        sleep(30);
        return 0;
    }
    if (strcmp(mode, "announce") == 0)
        return mode_announce();
    if (strcmp(mode, "announce-exit") == 0)
        return arg;
    if (strcmp(mode, "announce-none") == 0) {
        const char *env = getenv(LSEC_ENV_ANNOUNCE_FD);
        if (env != NULL)
            close(atoi(env));
        sleep(30);
        return 0;
    }
    fprintf(stderr, "rdv_helper: unknown mode '%s'\n", mode);
    return 2;
}
