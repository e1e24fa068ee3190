/*
 * lib/error.c: codes, the thread-local detail, and the process-wide log
 * sink, which must hand every call the arg that belongs to its fn even
 * while other threads switch loggers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "internal.h"

#include <pthread.h>
#include <string.h>

static int arg_a, arg_b;
static long calls_a, calls_b, mismatches;

static void log_a(void *arg, int level, const char *msg)
{
    (void)level;
    (void)msg;
    __atomic_add_fetch(&calls_a, 1, __ATOMIC_RELAXED);
    if (arg != &arg_a)
        __atomic_add_fetch(&mismatches, 1, __ATOMIC_RELAXED);
}

static void log_b(void *arg, int level, const char *msg)
{
    (void)msg;
    __atomic_add_fetch(&calls_b, 1, __ATOMIC_RELAXED);
    /* B is installed with max level WARN: an INFO line never reaches it. */
    if (arg != &arg_b || level > LSEC_LOG_WARN)
        __atomic_add_fetch(&mismatches, 1, __ATOMIC_RELAXED);
}

static int stop;

/* Bounded in count and in time. */
#define SWITCHES 200000
#define RUN_MS 3000

static void *switcher(void *arg)
{
    int64_t end = lsec__now_ms() + RUN_MS;
    int off = *(const int *)arg;
    for (int i = 0; i < SWITCHES && lsec__now_ms() < end; i++) {
        if ((i + off) & 1)
            lsec_set_log(log_b, &arg_b, LSEC_LOG_WARN);
        else
            lsec_set_log(log_a, &arg_a, LSEC_LOG_DEBUG);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void *logger(void *unused)
{
    (void)unused;
    while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
        lsec__log(LSEC_LOG_WARN, "w");
        lsec__log(LSEC_LOG_INFO, "i");
    }
    return NULL;
}

static void test_log_switch_race(void **state)
{
    static const int offs[2] = {0, 1};
    pthread_t sw[2], lg[2];
    (void)state;

    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&lg[i], NULL, logger, NULL), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(
            pthread_create(&sw[i], NULL, switcher, (void *)&offs[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(sw[i], NULL), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(lg[i], NULL), 0);
    lsec_set_log(NULL, NULL, 0);
    print_message("calls: A %ld, B %ld, mismatched %ld\n", calls_a, calls_b,
                  mismatches);
    assert_true(calls_a + calls_b > 0);
    assert_int_equal(mismatches, 0);
}

static void test_log_levels_and_off(void **state)
{
    (void)state;
    calls_a = calls_b = mismatches = 0;
    lsec_set_log(log_b, &arg_b, LSEC_LOG_WARN);
    assert_true(lsec__log_enabled(LSEC_LOG_WARN));
    assert_false(lsec__log_enabled(LSEC_LOG_INFO));
    lsec__log(LSEC_LOG_INFO, "not formatted");
    lsec__log(LSEC_LOG_ERROR, "e");
    assert_int_equal(calls_b, 1);
    /* Installing the same logger again reuses its record. */
    lsec_set_log(log_a, &arg_a, LSEC_LOG_DEBUG);
    lsec_set_log(log_b, &arg_b, LSEC_LOG_WARN);
    lsec__log(LSEC_LOG_WARN, "w");
    assert_int_equal(calls_b, 2);
    assert_int_equal(calls_a, 0);
    lsec_set_log(NULL, &arg_a, LSEC_LOG_DEBUG);
    assert_false(lsec__log_enabled(LSEC_LOG_ERROR));
    lsec__log(LSEC_LOG_ERROR, "off");
    assert_int_equal(calls_a + calls_b, 2);
    assert_int_equal(mismatches, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_switch_race),
        cmocka_unit_test(test_log_levels_and_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
