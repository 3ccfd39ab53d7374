/* arena.c — tests of engine/arena.c. */
#include "tests.h"

#include <string.h>

static int cleanup_calls;
static void count_cleanup(void *p) { cleanup_calls += *(int *)p; }

static void arena_allocations_are_aligned_and_distinct(void **state) {
    hv_arena_t *a = hv_arena_new(256);
    char *p1 = hv_arena_alloc(a, 3), *p2 = hv_arena_alloc(a, 5);
    assert_non_null(p1);
    assert_non_null(p2);
    assert_int_equal((uintptr_t)p1 % 16, 0);
    assert_int_equal((uintptr_t)p2 % 16, 0);
    assert_true(p2 >= p1 + 3);
    hv_arena_free(a);
}

static void arena_big_allocation_keeps_small_block_usable(void **state) {
    hv_arena_t *a = hv_arena_new(256);
    char *small1 = hv_arena_alloc(a, 16);
    char *big = hv_arena_alloc(a, 10000);
    char *small2 = hv_arena_alloc(a, 16);
    assert_non_null(big);
    memset(big, 'x', 10000);
    /* the second small allocation still comes from the first block */
    assert_ptr_equal(small2, small1 + 16);
    assert_int_equal(hv_arena_bytes(a), 10032);
    hv_arena_free(a);
}

static void arena_runs_cleanups_last_first_on_free_and_reset(void **state) {
    hv_arena_t *a = hv_arena_new(0);
    int one = 1, ten = 10;
    cleanup_calls = 0;
    assert_int_equal(hv_arena_cleanup_add(a, count_cleanup, &one), HV_OK);
    assert_int_equal(hv_arena_cleanup_add(a, count_cleanup, &ten), HV_OK);
    hv_arena_reset(a);
    assert_int_equal(cleanup_calls, 11);
    assert_int_equal(hv_arena_bytes(a), 0);
    assert_int_equal(hv_arena_cleanup_add(a, count_cleanup, &one), HV_OK);
    hv_arena_free(a);
    assert_int_equal(cleanup_calls, 12);
}

static void arena_sprintf_and_strndup(void **state) {
    hv_arena_t *a = hv_arena_new(64);
    char *s = hv_arena_sprintf(a, "%s-%d", "PID", 3);
    char *d = hv_arena_strndup(a, "abcdef", 3);
    int i;
    assert_string_equal(s, "PID-3");
    assert_string_equal(d, "abc");
    for (i = 0; i < 1000; i++) assert_non_null(hv_arena_sprintf(a, "%0100d", i));
    hv_arena_free(a);
}

int run_arena_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arena_allocations_are_aligned_and_distinct),
        cmocka_unit_test(arena_big_allocation_keeps_small_block_usable),
        cmocka_unit_test(arena_runs_cleanups_last_first_on_free_and_reset),
        cmocka_unit_test(arena_sprintf_and_strndup),
    };
    return cmocka_run_group_tests_name("engine/arena", tests, NULL, NULL);
}
