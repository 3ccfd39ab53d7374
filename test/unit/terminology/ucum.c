/* ucum.c — unit tests of terminology/ucum*.c (placeholder, filled below). */
#include "tests.h"
#include "terminology/ucum.h"

static void ucum_loads_essence(void **state) {
    hv_ucum_t *u = NULL;
    hv_error_t err;
    (void)state;
    assert_int_equal(hv_ucum_new(test_essence_path(), 0, &u, &err), HV_OK);
    hv_ucum_free(u);
}

int run_ucum_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ucum_loads_essence),
    };
    return cmocka_run_group_tests_name("ucum", tests, NULL, NULL);
}
