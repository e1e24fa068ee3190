/*
 * kernel_parent — start a kernel-style helper and talk to it.
 *
 * What it shows: lsec_spawn_listening.  The parent starts kernel_helper
 * with a pipe in LOOPSEC_ANNOUNCE_FD, reads the ticket the helper announces
 * (within the timeout; a helper that dies first is reported at once with
 * its exit status), connects, sends a few requests and a shutdown.
 *
 * Usage: kernel_parent [PATH-TO-kernel_helper]
 * (by default, kernel_helper next to this program)
 */
#include <loopsec.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    static const char *const requests[] = {"6 * 7", "100 / 8", "2 ^ 3",
                                           "shutdown"};
    char path[PATH_MAX], reply[256];
    lsec_helper *kernel;
    lsec_channel *ch;
    size_t len;
    int rc, status = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1) {
        snprintf(path, sizeof(path), "%s", argv[1]);
    } else {
        ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
        char *slash;
        if (n <= 0 || (path[n] = '\0', slash = strrchr(path, '/')) == NULL ||
            (size_t)(slash - path) + sizeof("/kernel_helper") > sizeof(path)) {
            fprintf(stderr, "usage: kernel_parent [PATH-TO-kernel_helper]\n");
            return 2;
        }
        strcpy(slash, "/kernel_helper");
    }

    const char *kernel_argv[] = {path, NULL};
    rc = lsec_spawn_listening(kernel_argv, NULL, 5000, &kernel, &ch);
    if (rc != 0) {
        fprintf(stderr, "parent: %s (%s)\n", lsec_strerror(rc),
                lsec_last_detail());
        return 1;
    }
    printf("parent: connected to kernel pid %d\n", lsec_helper_pid(kernel));
    for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
        rc = lsec_send(ch, requests[i], strlen(requests[i]), 5000);
        if (rc == 0)
            rc = lsec_recv(ch, reply, sizeof(reply) - 1, &len, 5000);
        if (rc != 0) {
            fprintf(stderr, "parent: %s\n", lsec_strerror(rc));
            break;
        }
        reply[len] = '\0';
        printf("parent: %s -> %s\n", requests[i], reply);
    }
    lsec_channel_close(ch);
    if (rc == 0)
        rc = lsec_helper_wait(kernel, 5000, &status);
    lsec_helper_free(kernel);
    return rc == 0 && status == 0 ? 0 : 1;
}
