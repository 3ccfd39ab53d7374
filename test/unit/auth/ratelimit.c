/* ratelimit.c — tests of engine/auth/ratelimit.c: token buckets and the expiring set. */
#include "tests.h"

#include <stdio.h>

static void bucket_allows_burst_then_refills(void **state) {
    hv__ratelimit_t *rl = hv__ratelimit_new(64);
    unsigned retry = 0;
    int i;
    (void)state;
    for (i = 0; i < 5; i++) assert_true(hv__ratelimit_take(rl, "ip:1", 2, 5, 1000, &retry));
    assert_false(hv__ratelimit_take(rl, "ip:1", 2, 5, 1000, &retry));
    assert_int_equal(retry, 1);
    assert_true(hv__ratelimit_take(rl, "ip:2", 2, 5, 1000, &retry)); /* keys are separate */
    assert_false(hv__ratelimit_take(rl, "ip:1", 2, 5, 1400, &retry)); /* 0.8 tokens */
    assert_true(hv__ratelimit_take(rl, "ip:1", 2, 5, 1600, &retry));  /* 1.0 */
    assert_true(hv__ratelimit_take(rl, "ip:1", 2, 5, 100000, &retry));
    for (i = 0; i < 4; i++) assert_true(hv__ratelimit_take(rl, "ip:1", 2, 5, 100000, &retry)); /* capped at burst */
    assert_false(hv__ratelimit_take(rl, "ip:1", 2, 5, 100000, &retry));
    assert_true(hv__ratelimit_take(rl, "x", 0, 0, 0, &retry)); /* rate 0: unlimited */
    hv__ratelimit_free(rl);
}

static void retry_after_rounds_up_for_slow_rates(void **state) {
    hv__ratelimit_t *rl = hv__ratelimit_new(8);
    unsigned retry = 0;
    (void)state;
    assert_true(hv__ratelimit_take(rl, "login", 1.0 / 60, 1, 0, &retry));
    assert_false(hv__ratelimit_take(rl, "login", 1.0 / 60, 1, 0, &retry));
    assert_int_equal(retry, 60);
    hv__ratelimit_free(rl);
}

/* Takes from nkeys distinct keys (each allowed: a fresh bucket) in a table limited to
 * max_keys, and returns the slots the table then has. */
static size_t slots_after_distinct_keys(size_t max_keys, int nkeys) {
    hv__ratelimit_t *rl = hv__ratelimit_new(max_keys);
    char key[32];
    unsigned retry;
    size_t slots;
    for (int i = 0; i < nkeys; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        assert_true(hv__ratelimit_take(rl, key, 1, 1, (uint64_t)i, &retry));
    }
    slots = hv__ratelimit_slots(rl);
    hv__ratelimit_free(rl);
    return slots;
}

static void table_stays_bounded_with_many_keys(void **state) {
    (void)state;
    assert_int_equal(slots_after_distinct_keys(16, 10000), 16);
}

/* Every key taken below the limit keeps its bucket through the growths: a burst of 1
 * taken once is refused at the same instant, which a recycled bucket would allow. */
static void table_grows_on_demand_and_keeps_every_bucket(void **state) {
    hv__ratelimit_t *rl = hv__ratelimit_new(65536);
    char key[32];
    unsigned retry;
    int i;
    (void)state;
    assert_true(hv__ratelimit_slots(rl) <= 64);
    for (i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "ip:10.0.%d.%d", i / 256, i % 256);
        assert_true(hv__ratelimit_take(rl, key, 0.001, 1, 5000, &retry));
    }
    assert_true(hv__ratelimit_slots(rl) >= 2000);
    assert_true(hv__ratelimit_slots(rl) <= 8192);
    for (i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "ip:10.0.%d.%d", i / 256, i % 256);
        assert_false(hv__ratelimit_take(rl, key, 0.001, 1, 5000, &retry));
    }
    hv__ratelimit_free(rl);
}

/* A limit that is not a power of two is reached exactly, and the table then recycles. */
static void table_growth_stops_at_the_limit(void **state) {
    (void)state;
    assert_int_equal(slots_after_distinct_keys(100, 1000), 100);
}

static void strset_expires_and_refuses_when_full(void **state) {
    hv__strset_t *s = hv__strset_new(4);
    (void)state;
    assert_int_equal(hv__strset_add(s, "a", 100, 0), HV_OK);
    assert_int_equal(hv__strset_add(s, "b", 100, 0), HV_OK);
    assert_int_equal(hv__strset_add(s, "c", 10, 0), HV_OK);
    assert_int_equal(hv__strset_add(s, "d", 100, 0), HV_OK);
    assert_true(hv__strset_has(s, "a", 50));
    assert_true(hv__strset_has(s, "c", 10));
    assert_false(hv__strset_has(s, "c", 11));
    assert_false(hv__strset_has(s, "zz", 0));
    assert_int_equal(hv__strset_add(s, "e", 100, 0), HV_ETOOBIG);   /* full, nothing expired */
    assert_int_equal(hv__strset_add(s, "e", 100, 50), HV_OK);       /* c expired: its slot is reused */
    assert_true(hv__strset_has(s, "e", 50));
    assert_true(hv__strset_has(s, "a", 50));
    assert_int_equal(hv__strset_add(s, "a", 200, 50), HV_OK);       /* extends */
    assert_true(hv__strset_has(s, "a", 150));
    hv__strset_free(s);
}

/* Below the limit the set grows, keeping every key; at the limit it holds exactly max keys
 * and refuses the next, as a table allocated whole would. */
static void strset_grows_to_exactly_its_limit(void **state) {
    hv__strset_t *s = hv__strset_new(1000);
    char key[32];
    int i;
    (void)state;
    assert_true(hv__strset_slots(s) <= 64);
    for (i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "j:%d", i);
        assert_int_equal(hv__strset_add(s, key, 100 + i, 0), HV_OK);
    }
    assert_int_equal(hv__strset_slots(s), 1000);
    for (i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "j:%d", i);
        assert_true(hv__strset_has(s, key, 100 + i));
        assert_false(hv__strset_has(s, key, 101 + i));
    }
    assert_int_equal(hv__strset_add(s, "j:new", 5000, 0), HV_ETOOBIG);
    assert_int_equal(hv__strset_add(s, "j:new", 5000, 101), HV_OK); /* j:0 expired after 100 */
    assert_true(hv__strset_has(s, "j:new", 4000));
    hv__strset_free(s);
}

int run_ratelimit_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bucket_allows_burst_then_refills),
        cmocka_unit_test(retry_after_rounds_up_for_slow_rates),
        cmocka_unit_test(table_stays_bounded_with_many_keys),
        cmocka_unit_test(strset_expires_and_refuses_when_full),
        cmocka_unit_test(table_grows_on_demand_and_keeps_every_bucket),
        cmocka_unit_test(table_growth_stops_at_the_limit),
        cmocka_unit_test(strset_grows_to_exactly_its_limit),
    };
    return cmocka_run_group_tests_name("auth/ratelimit", tests, NULL, NULL);
}
