/*
 * kernel_helper — a kernel-style helper that listens and announces.
 *
 * What it shows: the "helper listens, parent connects" rendezvous (as a
 * notebook kernel does).  The helper binds first — so its port is already
 * held when anyone learns the number, and nothing can race for it — then
 * lsec_listener_announce writes the ticket to the pipe the parent gave it
 * (LOOPSEC_ANNOUNCE_FD), and the helper accepts exactly one authenticated
 * peer.  It then evaluates small requests "A OP B" (OP one of + - * /)
 * until "shutdown".
 *
 * Started by kernel_parent (lsec_spawn_listening); started by hand,
 * lsec_listener_announce fails with LSEC_ENOTFOUND.
 */
#include <loopsec.h>

#include <stdio.h>
#include <string.h>

static void evaluate(const char *req, char *out, size_t len)
{
    long a, b;
    char op;

    if (sscanf(req, "%ld %c %ld", &a, &op, &b) != 3) {
        snprintf(out, len, "error: expected \"A OP B\"");
        return;
    }
    switch (op) {
    case '+':
        snprintf(out, len, "%ld", a + b);
        break;
    case '-':
        snprintf(out, len, "%ld", a - b);
        break;
    case '*':
        snprintf(out, len, "%ld", a * b);
        break;
    case '/':
        if (b == 0)
            snprintf(out, len, "error: division by zero");
        else
            snprintf(out, len, "%ld", a / b);
        break;
    default:
        snprintf(out, len, "error: unknown operator '%c'", op);
    }
}

int main(void)
{
    lsec_opts o;
    lsec_listener *l;
    lsec_channel *ch;
    char req[256], out[128];
    size_t len;
    int rc;

    setvbuf(stdout, NULL, _IOLBF, 0);
    lsec_opts_init(&o);
    o.max_accepts = 1; /* one parent, then the port closes */
    rc = lsec_listen("127.0.0.1:0", &o, &l);
    if (rc == 0)
        rc = lsec_listener_announce(l);
    if (rc != 0) {
        fprintf(stderr, "kernel: %s (%s)\n", lsec_strerror(rc),
                lsec_last_detail());
        lsec_listener_close(l);
        return 1;
    }
    printf("  kernel: listening on 127.0.0.1:%d, ticket announced\n",
           lsec_listener_port(l));
    rc = lsec_accept(l, 10000, &ch);
    lsec_listener_close(l);
    if (rc != 0) {
        fprintf(stderr, "kernel: accept: %s\n", lsec_strerror(rc));
        return 1;
    }
    for (;;) {
        rc = lsec_recv(ch, req, sizeof(req) - 1, &len, 10000);
        if (rc != 0)
            break;
        req[len] = '\0';
        if (strcmp(req, "shutdown") == 0) {
            rc = lsec_send(ch, "ok", 2, 5000);
            break;
        }
        evaluate(req, out, sizeof(out));
        printf("  kernel: %s = %s\n", req, out);
        if ((rc = lsec_send(ch, out, strlen(out), 5000)) != 0)
            break;
    }
    lsec_channel_close(ch);
    printf("  kernel: shut down\n");
    return rc == 0 || rc == LSEC_ECLOSED ? 0 : 1;
}
