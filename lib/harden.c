/*
 * Opt-in process hardening (lsec_harden_process): for applications that
 * want secrets in their memory to be harder to reach through core dumps or
 * by another process of the same user.  The library never calls it itself.
 */
#include "internal.h"
#include "sys.h"

#include <errno.h>
#include <sys/resource.h>

int lsec_harden_process(void)
{
    struct rlimit none = {0, 0};

    lsec__clear_detail();
    /* No core file, ever: soft and hard limit 0 (the hard one cannot be
     * raised again without privilege). */
    if (setrlimit(RLIMIT_CORE, &none) != 0)
        return lsec__fail_errno(LSEC_EIO, errno, "setrlimit(RLIMIT_CORE, 0)");
    /* Not dumpable: no core dump either, and /proc/PID/mem, environ, fd...
     * and ptrace are refused to other processes of the same user. */
    if (lsec__sys_no_dump() != 0)
        return lsec__fail_errno(LSEC_EIO, errno, "prctl(PR_SET_DUMPABLE, 0)");
    return 0;
}
