/* schedule.c — tests of adapters/ehr/schedule.c: the cron subset and next start times. */
#include <string.h>

#include "tests.h"

/* 2026-11-25T18:27:48Z, a Wednesday. */
#define NOW_MS (1795631268ULL * 1000)

static uint64_t next_of(const char *expr, uint64_t after) {
    hv_ehr_schedule_t s;
    hv_error_t err;
    hv_error_clear(&err);
    if (hv_ehr_schedule_parse(expr, &s, &err) != HV_OK) fail_msg("%s: %s", expr, err.message);
    return hv_ehr_schedule_next(&s, after);
}

static void ehr_schedule_cron_next_times(void **state) {
    static const struct {
        const char *expr;
        uint64_t want_s; /* seconds since the epoch */
    } cases[] = {
        {"* * * * *", 1795631280ULL},           /* 18:28 */
        {"30 18 * * *", 1795631400ULL},         /* 18:30 today */
        {"0 2 * * *", 1795658400ULL},           /* 02:00 tomorrow */
        {"*/15 * * * *", 1795631400ULL},        /* 18:30 */
        {"0 0 1 * *", 1796083200ULL},           /* 2026-12-01 */
        {"0 3 * * 0", 1795921200ULL},           /* Sunday 2026-11-29 03:00 */
        {"0 3 * * 7", 1795921200ULL},           /* 7 is Sunday too */
        {"0 9 1 * 1-5", 1795683600ULL},         /* either day field: Thu 26th 09:00 */
        {"0 0 1,15 1 *", 1798761600ULL},        /* 2027-01-01 */
        {"5-10/5 20 * * *", 1795637100ULL},     /* 20:05 */
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t got = next_of(cases[i].expr, NOW_MS);
        if (got != cases[i].want_s * 1000)
            fail_msg("%s: got %llu want %llu", cases[i].expr, (unsigned long long)got / 1000,
                     (unsigned long long)cases[i].want_s);
    }
}

static void ehr_schedule_words(void **state) {
    (void)state;
    assert_int_equal(next_of("daily", NOW_MS), NOW_MS + 86400000ULL);
    assert_int_equal(next_of("hourly", NOW_MS), NOW_MS + 3600000ULL);
    assert_int_equal(next_of("manual", NOW_MS), 0);
    assert_int_equal(next_of("every 2s", NOW_MS), NOW_MS + 2000ULL);
    assert_int_equal(next_of("every 15m", NOW_MS), NOW_MS + 900000ULL);
    assert_int_equal(next_of("0 0 30 2 *", NOW_MS), 0); /* February 30th never comes */
}

static void ehr_schedule_rejects_bad_expressions(void **state) {
    static const char *const bad[] = {
        "", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8",
        "5-1 * * * *", "*/0 * * * *", "1, * * * *", "MON * * * *", "@weekly", "a b c d e", "1-2-3 * * * *",
        "every", "every 500ms", "every 0s", "every soon", "every 400d",
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        hv_ehr_schedule_t s;
        hv_error_t err;
        hv_error_clear(&err);
        if (hv_ehr_schedule_parse(bad[i], &s, &err) != HV_EINVAL) fail_msg("accepted \"%s\"", bad[i]);
        assert_true(err.message[0] != '\0');
    }
}

int run_schedule_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ehr_schedule_cron_next_times),
        cmocka_unit_test(ehr_schedule_words),
        cmocka_unit_test(ehr_schedule_rejects_bad_expressions),
    };
    return cmocka_run_group_tests_name("ehr_schedule", tests, NULL, NULL);
}
