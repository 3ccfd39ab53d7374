/* event.c — tests destinations/audit/event.c: classification, patient scanning, POST bodies, content. */
#include <string.h>

#include "tests.h"

static const struct {
    int method;
    const char *path;
    int audited;
    char action;
    const char *subtype, *type, *id;
} cases[] = {
    {HV_HTTP_GET, "/fhir/Patient/p1", 1, 'R', "read", "Patient", "p1"},
    {HV_HTTP_GET, "/fhir/Patient/p1/_history/2", 1, 'R', "vread", "Patient", "p1"},
    {HV_HTTP_GET, "/fhir/Patient/p1/_history", 1, 'R', "history-instance", "Patient", "p1"},
    {HV_HTTP_GET, "/fhir/Observation/_history", 1, 'R', "history-type", "Observation", ""},
    {HV_HTTP_GET, "/fhir/_history", 1, 'R', "history-system", "", ""},
    {HV_HTTP_GET, "/fhir/Observation", 1, 'E', "search-type", "Observation", ""},
    {HV_HTTP_POST, "/fhir/Observation/_search", 1, 'E', "search-type", "Observation", ""},
    {HV_HTTP_GET, "/fhir", 1, 'E', "search-system", "", ""},
    {HV_HTTP_POST, "/fhir", 1, 'E', "batch", "", ""},
    {HV_HTTP_POST, "/fhir/Observation", 1, 'C', "create", "Observation", ""},
    {HV_HTTP_PUT, "/fhir/Patient/p1", 1, 'U', "update", "Patient", "p1"},
    {HV_HTTP_PATCH, "/fhir/Patient/p1", 1, 'U', "patch", "Patient", "p1"},
    {HV_HTTP_DELETE, "/fhir/Patient/p1", 1, 'D', "delete", "Patient", "p1"},
    {HV_HTTP_GET, "/fhir/$export", 1, 'E', "export", "", ""},
    {HV_HTTP_GET, "/fhir/Patient/p1/$everything", 1, 'E', "everything", "Patient", "p1"},
    {HV_HTTP_GET, "/fhir/Patient/p1/Observation", 1, 'E', "search-type", "Patient", "p1"},
    {HV_HTTP_GET, "/fhir/metadata", 0, 0, NULL, NULL, NULL},
    {HV_HTTP_OPTIONS, "/fhir/Patient", 0, 0, NULL, NULL, NULL},
    {HV_HTTP_GET, "/fhirx/Patient", 0, 0, NULL, NULL, NULL},
    {HV_HTTP_GET, "/health", 0, 0, NULL, NULL, NULL},
    {HV_HTTP_GET, "/patients/p9", 1, 'R', "read", "Patient", "p9"},
};

static void audit_classify_maps_fhir_interactions(void **state) {
    (void)state;
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++) {
        char action = 0, type[64], id[80];
        const char *sub = NULL;
        int got = hv__audit_classify(cases[i].method, cases[i].path, &action, &sub, type, sizeof(type), id, sizeof(id));
        if (got != cases[i].audited) fail_msg("%s: audited %d, want %d", cases[i].path, got, cases[i].audited);
        if (!got) continue;
        if (action != cases[i].action || strcmp(sub, cases[i].subtype) != 0 || strcmp(type, cases[i].type) != 0 ||
            strcmp(id, cases[i].id) != 0)
            fail_msg("%s: got %c %s %s %s", cases[i].path, action, sub, type, id);
    }
}

static size_t scan(const char *text, const char **ids, size_t max, size_t *found, hv_arena_t *a) {
    size_t n = 0;
    *found = hv__audit_scan_patients(text, strlen(text), a, ids, &n, max);
    return n;
}

static void audit_scan_finds_patients_in_bundles_and_references(void **state) {
    hv_arena_t *a = hv_arena_new(0);
    const char *ids[8];
    size_t found, n;
    (void)state;
    n = scan("{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"p1\","
             "\"meta\":{}}},{\"resource\":{\"resourceType\":\"Observation\",\"id\":\"o1\",\"subject\":{\"reference\":"
             "\"Patient/p2\"}}},{\"resource\":{\"resourceType\":\"Observation\",\"subject\":{\"reference\":"
             "\"http://x/fhir/Patient/p1/_history/3\"}}}],\"link\":[{\"url\":\"http://x/fhir/Patient/p9\"}]}",
             ids, 8, &found, a);
    assert_int_equal(n, 2);
    assert_int_equal(found, 2);
    assert_string_equal(ids[0], "p2"); /* references are scanned first */
    assert_string_equal(ids[1], "p1");
    /* XML */
    n = scan("<Observation xmlns=\"http://hl7.org/fhir\"><subject><reference value=\"Patient/x-1\"/></subject>"
             "</Observation>", ids, 8, &found, a);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], "x-1");
    /* each format's patterns are looked for in its own bodies, after leading white space */
    n = scan("\n <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"px\"/>"
             "<link><other><reference value=\"Patient/py\"/></other></link></Patient>", ids, 8, &found, a);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], "py");
    assert_string_equal(ids[1], "px");
    n = scan("\r\n\t {\"resourceType\":\"Patient\",\"id\":\"pj\",\"link\":[{\"other\":{\"reference\":\"Patient/pk\"}}]}",
             ids, 8, &found, a);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], "pk");
    assert_string_equal(ids[1], "pj");
    /* not patient references, bad ids, and the cap */
    n = scan("{\"reference\":\"Practitioner/1\",\"x\":{\"reference\":\"NotPatient/2\"},\"y\":{\"reference\":"
             "\"Patient/bad id\"}}", ids, 8, &found, a);
    assert_int_equal(n, 0);
    n = scan("[{\"reference\":\"Patient/a\"},{\"reference\":\"Patient/b\"},{\"reference\":\"Patient/c\"}]", ids, 2,
             &found, a);
    assert_int_equal(n, 2);
    assert_int_equal(found, 3);
    hv_arena_free(a);
}

static void audit_parse_post_accepts_valid_event(void **state) {
    hv_arena_t *a = hv_arena_new(0);
    hv_audit_event_t ev;
    hv_error_t err;
    const char *source = NULL, *body = "{\"action\":\"R\",\"subtype\":\"chart-print\",\"outcome\":4,\"source\":\"ehr\","
                                       "\"entity\":{\"type\":\"Patient\",\"id\":\"p1\"},\"patients\":[\"p1\",\"p2\"]}";
    (void)state;
    hv_error_clear(&err);
    assert_int_equal(hv__audit_parse_post(body, strlen(body), a, &ev, &source, &err), HV_OK);
    assert_int_equal(ev.action, 'R');
    assert_string_equal(ev.subtype, "chart-print");
    assert_int_equal(ev.outcome, 4);
    assert_string_equal(source, "ehr");
    assert_int_equal(ev.npatients, 2);
    assert_string_equal(ev.patients[1], "p2");
    assert_string_equal(ev.entity_id, "p1");
    hv_arena_free(a);
}

static void audit_parse_post_rejects_forged_and_bad_fields(void **state) {
    static const char *const bad[] = {
        "{\"action\":\"R\",\"subtype\":\"x\",\"who\":\"mallory\"}",
        "{\"action\":\"Q\",\"subtype\":\"x\"}",
        "{\"action\":\"R\"}",
        "{\"action\":\"R\",\"subtype\":\"Bad Subtype\"}",
        "{\"action\":\"R\",\"subtype\":\"x\",\"outcome\":1}",
        "{\"action\":\"R\",\"subtype\":\"x\",\"outcome\":\"0\"}",
        "{\"action\":\"R\",\"subtype\":\"x\",\"patients\":\"p1\"}",
        "{\"action\":\"R\",\"subtype\":\"x\",\"patients\":[\"a b\"]}",
        "{\"action\":\"R\",\"subtype\":\"x\",\"entity\":[]}",
        "[1]",
        "{",
    };
    (void)state;
    for (size_t i = 0; i < HV_ARRAY_LEN(bad); i++) {
        hv_arena_t *a = hv_arena_new(0);
        hv_audit_event_t ev;
        hv_error_t err;
        const char *source = NULL;
        hv_error_clear(&err);
        if (hv__audit_parse_post(bad[i], strlen(bad[i]), a, &ev, &source, &err) == HV_OK)
            fail_msg("accepted: %s", bad[i]);
        assert_true(err.message[0] != '\0');
        hv_arena_free(a);
    }
}

static void audit_content_is_balp_shaped_and_deterministic(void **state) {
    hv__audit_t a;
    hv__aev_t *ev1, *ev2;
    const char *pats[] = {"p1", "p1", "p2"};
    hv_audit_event_t in = {0};
    (void)state;
    memset(&a, 0, sizeof(a));
    in.action = 'R';
    in.subtype = "read";
    in.user = "alice";
    in.role = "clinician";
    in.ip = "10.0.0.1";
    in.entity_type = "Patient";
    in.entity_id = "p1";
    in.patients = pats;
    in.npatients = 3;
    ev1 = hv__aev_new(&a);
    ev2 = hv__aev_new(&a);
    assert_int_equal(hv__aev_fill(ev1, &in), HV_OK);
    assert_int_equal(hv__aev_fill(ev2, &in), HV_OK);
    ev2->recorded = ev1->recorded;
    /* rebuild ev2 at the same time: same bytes */
    assert_int_equal(ev1->np, 2); /* duplicates dropped */
    assert_string_equal(ev1->patients_csv, "p1,p2");
    /* Stored compact; the AuditEvent is rendered from the row, and the same from a row
     * loaded back as from the event that was filled. */
    assert_true(hv__aev_compact(ev1->content.data, ev1->content.len));
    assert_null(strstr(ev1->content.data, "AuditEvent"));
    {
        hv_buf_t r1, r2;
        hv__aev_t *back = hv__aev_new(&a);
        hv_buf_init(&r1, 0);
        hv_buf_init(&r2, 0);
        assert_int_equal(hv__aev_render(ev1, &r1), HV_OK);
        assert_non_null(strstr(r1.data, "\"code\":\"rest\""));
        assert_non_null(strstr(r1.data, "\"reference\":\"Patient/p2\""));
        assert_non_null(strstr(r1.data, "\"value\":\"alice\""));
        assert_non_null(strstr(r1.data, "\"reference\":\"Patient/p1\""));
        assert_true(strncmp(r1.data, "{\"resourceType\":\"AuditEvent\",", 29) == 0);
        assert_int_equal(hv__aev_load(back, ev1->recorded, ev1->action, ev1->subtype, ev1->outcome, ev1->who,
                                      ev1->role, ev1->ip, ev1->patients_csv, ev1->content.data, ev1->content.len),
                         HV_OK);
        assert_int_equal(hv__aev_render(back, &r2), HV_OK);
        assert_string_equal(r1.data, r2.data);
        assert_int_equal(hv__aev_load(back, 0, "R", "read", 0, "", "", "", "", "{\"resourceType\":1}", 17),
                         HV_EINVAL);
        hv_buf_release(&r1);
        hv_buf_release(&r2);
        hv__aev_free(back);
    }
    in.action = 'X';
    assert_int_equal(hv__aev_fill(ev2, &in), HV_EINVAL);
    hv__aev_free(ev1);
    hv__aev_free(ev2);
}

int run_event_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(audit_classify_maps_fhir_interactions),
        cmocka_unit_test(audit_scan_finds_patients_in_bundles_and_references),
        cmocka_unit_test(audit_parse_post_accepts_valid_event),
        cmocka_unit_test(audit_parse_post_rejects_forged_and_bad_fields),
        cmocka_unit_test(audit_content_is_balp_shaped_and_deterministic),
    };
    return cmocka_run_group_tests_name("audit_event", tests, NULL, NULL);
}
