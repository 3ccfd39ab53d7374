/* alerts.c — tests destinations/audit/alerts.c: the hours window parser. The rules themselves
 * need the engine (storage, metrics, bus) and are tested end to end in test_audit.py. */
#include "tests.h"

static void audit_hours_parse_and_reject(void **state) {
    int f, t;
    (void)state;
    assert_int_equal(hv__alert_parse_hours("07:00-19:30", &f, &t), HV_OK);
    assert_int_equal(f, 420);
    assert_int_equal(t, 1170);
    assert_int_equal(hv__alert_parse_hours("", &f, &t), HV_OK);
    assert_int_equal(f, -1);
    assert_int_equal(hv__alert_parse_hours("7-19", &f, &t), HV_EINVAL);
    assert_int_equal(hv__alert_parse_hours("07:00-19:00x", &f, &t), HV_EINVAL);
    assert_int_equal(hv__alert_parse_hours("25:00-19:00", &f, &t), HV_EINVAL);
    assert_int_equal(hv__alert_parse_hours("07:60-19:00", &f, &t), HV_EINVAL);
}

int run_alerts_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(audit_hours_parse_and_reject),
    };
    return cmocka_run_group_tests_name("audit_alerts", tests, NULL, NULL);
}
