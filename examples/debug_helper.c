/*
 * debug_helper — the helper half of a debugger-style session.
 *
 * What it shows: the helper side of lsec_spawn.  A parent (here
 * debug_parent, in real life an IDE) starts this program; it finds its
 * ticket on the descriptor named in LOOPSEC_TICKET_FD and connects back
 * with lsec_connect_inherited.  The secret never appears in its argv or
 * environment, where other users could read it.  It then answers a few
 * debugger commands until "quit".
 *
 * Run it through debug_parent, not by hand: started any other way,
 * lsec_connect_inherited fails with LSEC_ENOTFOUND.
 */
#include <loopsec.h>

#include <stdio.h>
#include <string.h>

static const char *answer(const char *cmd)
{
    if (strcmp(cmd, "break main") == 0)
        return "breakpoint 1 set at main";
    if (strcmp(cmd, "continue") == 0)
        return "stopped at breakpoint 1, main ()";
    if (strcmp(cmd, "quit") == 0)
        return "bye";
    return "error: unknown command";
}

int main(void)
{
    lsec_channel *ch;
    char cmd[256];
    size_t len;
    int rc;

    /* Line-buffered, so that our lines interleave with the parent's. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    rc = lsec_connect_inherited(NULL, 5000, &ch);
    if (rc != 0) {
        fprintf(stderr, "helper: cannot connect back: %s (%s)\n",
                lsec_strerror(rc), lsec_last_detail());
        return 1;
    }
    printf("  helper: connected back to the parent, authenticated\n");
    for (;;) {
        rc = lsec_recv(ch, cmd, sizeof(cmd) - 1, &len, 10000);
        if (rc == LSEC_ECLOSED)
            break; /* the parent hung up */
        if (rc != 0) {
            fprintf(stderr, "helper: receive: %s\n", lsec_strerror(rc));
            lsec_channel_close(ch);
            return 1;
        }
        cmd[len] = '\0';
        const char *reply = answer(cmd);
        printf("  helper: got \"%s\", answering \"%s\"\n", cmd, reply);
        rc = lsec_send(ch, reply, strlen(reply), 5000);
        if (rc != 0) {
            fprintf(stderr, "helper: send: %s\n", lsec_strerror(rc));
            lsec_channel_close(ch);
            return 1;
        }
        if (strcmp(cmd, "quit") == 0)
            break;
    }
    lsec_channel_close(ch);
    printf("  helper: exiting\n");
    return 0;
}
