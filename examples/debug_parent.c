/*
 * debug_parent — the parent half of a debugger-style session.
 *
 * What it shows: lsec_spawn, the "parent listens, helper connects back"
 * rendezvous used by IDEs and their debug adapters.  One call binds a
 * one-shot listener on 127.0.0.1, starts the helper with the ticket on an
 * inherited pipe (never in argv or the environment) and returns once the
 * helper has connected and proved it holds the secret — or reports at once
 * that the helper died, with its exit status, or that it timed out.  The
 * parent then sends commands, prints each reply, and waits for the helper
 * to exit.  If the parent dies first, the helper is killed with it.
 *
 * Usage: debug_parent [PATH-TO-debug_helper]
 * (by default, debug_helper next to this program)
 */
#include <loopsec.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* debug_helper in the directory this program was started from. */
static int helper_next_to_me(char *buf, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    char *slash;

    if (n <= 0)
        return -1;
    buf[n] = '\0';
    slash = strrchr(buf, '/');
    if (slash == NULL || (size_t)(slash - buf) + sizeof("/debug_helper") > len)
        return -1;
    strcpy(slash, "/debug_helper");
    return 0;
}

int main(int argc, char **argv)
{
    static const char *const commands[] = {"break main", "continue", "quit"};
    char path[PATH_MAX], reply[256];
    lsec_helper *helper;
    lsec_channel *ch;
    size_t len;
    int rc, status;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1)
        snprintf(path, sizeof(path), "%s", argv[1]);
    else if (helper_next_to_me(path, sizeof(path)) != 0) {
        fprintf(stderr, "usage: debug_parent [PATH-TO-debug_helper]\n");
        return 2;
    }

    const char *helper_argv[] = {path, NULL};
    printf("parent: starting %s\n", path);
    rc = lsec_spawn(helper_argv, NULL, 5000, &helper, &ch);
    if (rc != 0) {
        /* e.g. "helper exited with status 1 before connecting" */
        fprintf(stderr, "parent: spawn failed: %s (%s)\n", lsec_strerror(rc),
                lsec_last_detail());
        return 1;
    }
    printf("parent: helper pid %d connected and authenticated\n",
           lsec_helper_pid(helper));

    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        printf("parent: sending \"%s\"\n", commands[i]);
        rc = lsec_send(ch, commands[i], strlen(commands[i]), 5000);
        if (rc == 0)
            rc = lsec_recv(ch, reply, sizeof(reply) - 1, &len, 5000);
        if (rc != 0) {
            fprintf(stderr, "parent: %s (%s)\n", lsec_strerror(rc),
                    lsec_last_detail());
            lsec_channel_close(ch);
            lsec_helper_free(helper);
            return 1;
        }
        reply[len] = '\0';
        printf("parent: reply \"%s\"\n", reply);
    }
    lsec_channel_close(ch);

    rc = lsec_helper_wait(helper, 5000, &status);
    if (rc == 0 && WIFEXITED(status))
        printf("parent: helper exited with status %d\n", WEXITSTATUS(status));
    else
        printf("parent: helper did not exit cleanly (%s)\n",
               rc != 0 ? lsec_strerror(rc) : "killed by a signal");
    lsec_helper_free(helper);
    return rc == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
