/*
 * echo_client — the plain connecting side, from a connection file.
 *
 * What it shows: lsec_connect_file.  The file is refused unless it is a
 * regular file owned by this user with no permissions for anyone else
 * (each refusal has its own detail in lsec_last_detail()), and a stale file
 * whose listener is gone fails at once with LSEC_ECLOSED.  Each argument is
 * sent as one message and the echo printed.
 *
 * Usage: echo_client FILE MESSAGE...
 */
#include <loopsec.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    lsec_channel *ch;
    char buf[65536];
    size_t len;
    int rc;

    if (argc < 3) {
        fprintf(stderr, "usage: echo_client FILE MESSAGE...\n");
        return 2;
    }
    rc = lsec_connect_file(argv[1], NULL, 5000, &ch);
    if (rc != 0) {
        fprintf(stderr, "echo_client: %s (%s)\n", lsec_strerror(rc),
                lsec_last_detail());
        return 1;
    }
    for (int i = 2; i < argc; i++) {
        rc = lsec_send(ch, argv[i], strlen(argv[i]), 5000);
        if (rc == 0)
            rc = lsec_recv(ch, buf, sizeof(buf), &len, 5000);
        if (rc != 0) {
            fprintf(stderr, "echo_client: %s\n", lsec_strerror(rc));
            break;
        }
        printf("%.*s\n", (int)len, buf);
    }
    lsec_channel_close(ch);
    return rc == 0 ? 0 : 1;
}
