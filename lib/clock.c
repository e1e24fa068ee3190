/*
 * The monotonic clock and deadlines: every timeout becomes a deadline once,
 * at the start of a public call, and every wait asks how much is left.
 */
#include "internal.h"

#include <time.h>

int64_t lsec__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t lsec__deadline(int timeout_ms)
{
    if (timeout_ms < 0)
        return INT64_MAX;
    return lsec__now_ms() + timeout_ms;
}

int lsec__remaining(int64_t deadline)
{
    int64_t left;

    if (deadline == INT64_MAX)
        return -1;
    left = deadline - lsec__now_ms();
    if (left <= 0)
        return 0;
    if (left > INT32_MAX)
        return INT32_MAX;
    return (int)left;
}

int lsec__slice(int left)
{
    if (left < 0 || left > LSEC__SLICE_MS)
        return LSEC__SLICE_MS;
    return left;
}
