/*
 * echo_server — the plain listening side, with a connection file.
 *
 * What it shows: lsec_listen, lsec_listener_write_file and lsec_accept for
 * unrelated processes that meet through a connection file (the Jupyter
 * pattern).  The file is written atomically with mode 0600, never through a
 * symlink, and removed when the listener closes.  Only its path is printed;
 * the ticket inside is a credential.  Each authenticated client gets its
 * messages echoed back until it hangs up.
 *
 * Usage: echo_server [--tls] [--once] [FILE]
 *   FILE defaults to $XDG_RUNTIME_DIR/loopsec/<id>.ticket.
 *   Try it with: echo_client FILE hello world
 */
#include <loopsec.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void serve(lsec_channel *ch)
{
    char buf[65536];
    size_t len;
    lsec_peer peer;

    if (lsec_channel_peer(ch, &peer) == 0)
        printf("client from port %d (uid %lld) authenticated\n", peer.port,
               (long long)peer.uid);
    while (!stop) {
        int rc = lsec_recv(ch, buf, sizeof(buf), &len, 1000);
        if (rc == LSEC_ETIMEDOUT)
            continue;
        if (rc != 0 || lsec_send(ch, buf, len, 5000) != 0)
            break;
    }
    lsec_channel_close(ch);
    printf("client gone\n");
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    char written[LSEC_PATH_MAX];
    int once = 0, rc;
    lsec_opts o;
    lsec_listener *l;

    lsec_opts_init(&o);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tls") == 0)
            o.mode = LSEC_MODE_TLS;
        else if (strcmp(argv[i], "--once") == 0)
            once = 1;
        else if (argv[i][0] != '-' && file == NULL)
            file = argv[i];
        else {
            fprintf(stderr, "usage: echo_server [--tls] [--once] [FILE]\n");
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Close the listener (and so remove the file) on Ctrl-C. */
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    rc = lsec_listen("127.0.0.1:0", &o, &l);
    if (rc == 0)
        rc = lsec_listener_write_file(l, file, written, sizeof(written));
    if (rc != 0) {
        fprintf(stderr, "echo_server: %s (%s)\n", lsec_strerror(rc),
                lsec_last_detail());
        lsec_listener_close(l);
        return 1;
    }
    printf("listening on 127.0.0.1:%d; connection file %s\n",
           lsec_listener_port(l), written);
    while (!stop) {
        lsec_channel *ch;
        rc = lsec_accept(l, 1000, &ch);
        if (rc == LSEC_ETIMEDOUT)
            continue;
        if (rc != 0) {
            fprintf(stderr, "echo_server: accept: %s\n", lsec_strerror(rc));
            break;
        }
        serve(ch);
        if (once)
            break;
    }
    lsec_listener_close(l);
    return 0;
}
