/*
 * The Linux platform's TCP counters (sys.h lsec__sys_tcp_none_acked).  Its
 * own file because the kernel's full struct tcp_info (<linux/tcp.h>)
 * cannot be included beside the C library's <netinet/tcp.h>.
 */
#include "sys.h"

#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

bool lsec__sys_tcp_none_acked(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    /* A peer whose socket was closed before our data arrived answers it
     * with a reset and never acknowledges it; a live one acknowledges
     * every byte it takes in, read or not.  The kernel counts our SYN as
     * one acknowledged byte of a connection we opened. */
    return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
           len >= offsetof(struct tcp_info, tcpi_bytes_sent) +
                      sizeof(ti.tcpi_bytes_sent) &&
           ti.tcpi_bytes_sent > 0 && ti.tcpi_bytes_acked <= 1;
}
