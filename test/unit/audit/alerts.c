/* alerts.c — tests destinations/audit/alerts.c: the hours window parser, and that the rules'
 * window slots are allocated at first use. The rules themselves need the engine (storage,
 * metrics, bus) to raise an alert and are tested end to end in test_audit.py; the events
 * here stay below every threshold, so nothing is raised. */
#include "tests.h"

#include <string.h>

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

static void audit_alert_slots_are_allocated_at_first_use(void **state) {
    hv__audit_t a;
    hv__aev_t ev;
    const char *patients[] = {"Patient/1", "Patient/2"};
    (void)state;
    memset(&a, 0, sizeof(a));
    a.alert_cfg.failed_logins = 5;
    a.alert_cfg.failed_window_ms = 60000;
    a.alert_cfg.patients = 10;
    a.alert_cfg.patients_window_ms = 60000;
    a.alert_cfg.hours_from = a.alert_cfg.hours_to = -1;
    a.alerts = hv__alert_state_new();
    assert_non_null(a.alerts);
    assert_int_equal(hv__alert_state_slots(a.alerts), 0);

    memset(&ev, 0, sizeof(ev));
    ev.recorded = 1000;
    ev.action[0] = 'E';
    ev.subtype = "login-failure";
    ev.who = "alice";
    ev.ip = "192.0.2.1";
    ev.breakglass = "";
    ev.outcome = 4;
    hv__alerts_observe(&a, &ev);
    assert_int_equal(hv__alert_state_slots(a.alerts), 2); /* the account's window and the address's */
    ev.recorded = 2000;
    hv__alerts_observe(&a, &ev);
    assert_int_equal(hv__alert_state_slots(a.alerts), 2); /* the same keys reuse their slots */

    ev.action[0] = 'R';
    ev.subtype = "read";
    ev.outcome = 0;
    ev.patients = patients;
    ev.np = 2;
    hv__alerts_observe(&a, &ev);
    assert_int_equal(hv__alert_state_slots(a.alerts), 3); /* alice's patient window */
    hv__alert_state_free(a.alerts);
}

int run_alerts_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(audit_hours_parse_and_reject),
        cmocka_unit_test(audit_alert_slots_are_allocated_at_first_use),
    };
    return cmocka_run_group_tests_name("audit_alerts", tests, NULL, NULL);
}
