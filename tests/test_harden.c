/*
 * lib/harden.c and guarded memory: lsec_harden_process makes the process
 * non-dumpable with no core file (checked in a forked child, since it
 * cannot be undone), and a listener's secret and keys live in
 * sodium_malloc memory: excluded from core dumps and locked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_harden_process_in_child(void **state)
{
    int status;
    pid_t pid;
    (void)state;

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit rl;
        if (prctl(PR_GET_DUMPABLE) != 1)
            _exit(10); /* the test would prove nothing */
        if (lsec_harden_process() != 0)
            _exit(11);
        if (prctl(PR_GET_DUMPABLE) != 0)
            _exit(12);
        if (getrlimit(RLIMIT_CORE, &rl) != 0 || rl.rlim_cur != 0 ||
            rl.rlim_max != 0)
            _exit(13);
        /* Idempotent. */
        if (lsec_harden_process() != 0 || strcmp(lsec_last_detail(), "") != 0)
            _exit(14);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* This process is untouched. */
    assert_int_equal(prctl(PR_GET_DUMPABLE), 1);
}

/* The VmFlags of the mapping that holds `p`, from /proc/self/smaps. */
static void vm_flags_of(const void *p, char *flags, size_t len)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    bool inside = false;

    assert_non_null(f);
    flags[0] = '\0';
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') &&
            line[0] != 'V') {
            inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
            continue;
        }
        if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(flags, len, "%s", line + 8);
            break;
        }
    }
    fclose(f);
}

static bool has_flag(const char *flags, const char *f)
{
    char want[8];
    snprintf(want, sizeof(want), " %s", f);
    return strstr(flags, want) != NULL;
}

static void test_listener_secret_guarded(void **state)
{
    lsec_listener *l = NULL;
    struct rlimit rl;
    char flags[512];
    (void)state;

    assert_int_equal(lsec_listen("127.0.0.1:0", NULL, &l), 0);
    vm_flags_of(l, flags, sizeof(flags));
    print_message("listener mapping VmFlags:%s", flags);
    assert_true(flags[0] != '\0');
    /* Excluded from core dumps (MADV_DONTDUMP)... */
    assert_true(has_flag(flags, "dd"));
    /* ... and locked, where the limit lets libsodium lock it (ASan makes
     * mlock a no-op: not checked under it). */
#if !defined(__SANITIZE_ADDRESS__)
    if (geteuid() == 0 ||
        (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur >= (1u << 20)))
        assert_true(has_flag(flags, "lo"));
#else
    (void)rl;
#endif
    /* The secret itself is in there: the ticket (a copy) parses back to
     * it. */
    assert_true(lsec__listener_ticket(l) != NULL);
    vm_flags_of(lsec__listener_ticket(l)->secret, flags, sizeof(flags));
    assert_true(has_flag(flags, "dd"));
    lsec_listener_close(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_harden_process_in_child),
        cmocka_unit_test(test_listener_secret_guarded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
