/* page.c — tests of adapters/ehr/page.c: searchset pages, NDJSON lines, Retry-After. */
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "tests.h"

static int parse(const char *text, hv_ehr_page_t *p, hv_error_t *err) {
    hv_error_clear(err);
    return hv_ehr_page_parse(text, strlen(text), 0, p, err);
}

static void ehr_page_splits_matches_outcomes_and_next(void **state) {
    const char *text =
        "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":3,"
        "\"link\":[{\"relation\":\"self\",\"url\":\"http://x/fhir/Patient\"},"
        "{\"relation\":\"next\",\"url\":\"http://x/fhir/Patient?_cursor=2\"}],"
        "\"entry\":[{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"a\"},\"search\":{\"mode\":\"match\"}},"
        "{\"resource\":{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":\"warning\",\"code\":\"processing\"}]},"
        "\"search\":{\"mode\":\"outcome\"}},"
        "{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"b\"}}]}";
    hv_ehr_page_t p;
    hv_error_t err;
    (void)state;
    assert_int_equal(parse(text, &p, &err), HV_OK);
    assert_int_equal(p.nresources, 2);
    assert_int_equal(p.noutcomes, 1);
    assert_int_equal(p.total, 3);
    assert_string_equal(hv_json_get_str(p.resources[1], "id"), "b");
    assert_non_null(p.next);
    assert_string_equal(p.next, "http://x/fhir/Patient?_cursor=2");
    hv_ehr_page_release(&p);
}

static void ehr_page_last_page_has_no_next(void **state) {
    hv_ehr_page_t p;
    hv_error_t err;
    (void)state;
    assert_int_equal(parse("{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"link\":[{\"relation\":\"self\",\"url\":\"u\"}]}", &p, &err), HV_OK);
    assert_null(p.next);
    assert_int_equal(p.nresources, 0);
    assert_int_equal(p.total, -1);
    hv_ehr_page_release(&p);
}

static void ehr_page_rejects_bad_bodies(void **state) {
    static const struct {
        const char *text;
        int rc;
        const char *says;
    } cases[] = {
        {"<html><body>502 Bad Gateway</body></html>", HV_EPROTO, "HTML"},
        {"", HV_EPROTO, "empty"},
        {"{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"resourceType\":\"Pat", HV_EPROTO, "not valid JSON"},
        {"[1,2]", HV_EPROTO, "not an object"},
        {"{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"diagnostics\":\"patient is required\"}]}", HV_EPROTO,
         "patient is required"},
        {"{\"resourceType\":\"Patient\",\"id\":\"x\"}", HV_EPROTO, "not a Bundle"},
        {"{\"resourceType\":\"Bundle\",\"entry\":{}}", HV_EINVAL, "not an array"},
        {"{\"resourceType\":\"Bundle\",\"entry\":[{\"fullUrl\":\"x\"}]}", HV_EINVAL, "no resource"},
        {"{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":{\"id\":\"x\"}}]}", HV_EINVAL, "no resourceType"},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        hv_ehr_page_t p;
        hv_error_t err;
        memset(&p, 0, sizeof(p));
        assert_int_equal(parse(cases[i].text, &p, &err), cases[i].rc);
        if (strstr(err.message, cases[i].says) == NULL) fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.message, cases[i].says);
        assert_null(p.root);
    }
}

static void ehr_page_enforces_its_byte_cap(void **state) {
    hv_ehr_page_t p;
    hv_error_t err;
    const char *text = "{\"resourceType\":\"Bundle\"}";
    (void)state;
    hv_error_clear(&err);
    assert_int_equal(hv_ehr_page_parse(text, strlen(text), 10, &p, &err), HV_ETOOBIG);
}

typedef struct lines {
    int n;
    int64_t last_no;
    char last[64];
} lines_t;

static int on_line(void *ud, const char *line, size_t len, int64_t no) {
    lines_t *l = ud;
    l->n++;
    l->last_no = no;
    snprintf(l->last, sizeof(l->last), "%.*s", (int)len, line);
    return HV_OK;
}

static void ehr_ndjson_passes_every_line_and_a_truncated_tail(void **state) {
    const char *text = "{\"a\":1}\r\n\n{\"b\":2}\n{\"c\":";
    lines_t l;
    (void)state;
    memset(&l, 0, sizeof(l));
    assert_int_equal(hv_ehr_ndjson_each(text, strlen(text), 1, on_line, &l), HV_OK);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.last_no, 4);
    assert_string_equal(l.last, "{\"c\":");
}

typedef struct hist_seen {
    char got[8][160];
    int n;
} hist_seen_t;

static int hist_cb(void *ud, const char *type, const char *id, int deleted) {
    hist_seen_t *s = ud;
    if (s->n < 8) snprintf(s->got[s->n], sizeof(s->got[0]), "%s/%s%s", type, id, deleted ? " deleted" : "");
    s->n++;
    return HV_OK;
}

static void ehr_history_names_each_entry_and_its_deletions(void **state) {
    /* FHIR R4 http.html#history: a deletion has no resource; request.url (or fullUrl) names it. */
    const char *body =
        "{\"resourceType\":\"Bundle\",\"type\":\"history\",\"link\":[{\"relation\":\"next\",\"url\":\"https://e/fhir/Condition/_history?_cursor=9\"}],"
        "\"entry\":[{\"fullUrl\":\"https://e/fhir/Condition/c1\",\"request\":{\"method\":\"DELETE\",\"url\":\"Condition/c1\"}},"
        "{\"resource\":{\"resourceType\":\"Condition\",\"id\":\"c2\"},\"request\":{\"method\":\"PUT\",\"url\":\"Condition/c2\"}},"
        "{\"fullUrl\":\"https://e/fhir/Condition/c3/_history/4\",\"request\":{\"method\":\"DELETE\",\"url\":\"https://e/fhir/Condition/c3/_history/4?x=1\"}},"
        "{\"fullUrl\":\"https://e/fhir/Condition/c4\",\"request\":{\"method\":\"DELETE\"}}]}";
    hist_seen_t s;
    hv_error_t err;
    char *next = NULL;
    (void)state;
    memset(&s, 0, sizeof(s));
    hv_error_clear(&err);
    assert_int_equal(hv_ehr_history_parse(body, strlen(body), 0, hist_cb, &s, &next, &err), HV_OK);
    assert_int_equal(s.n, 4);
    assert_string_equal(s.got[0], "Condition/c1 deleted");
    assert_string_equal(s.got[1], "Condition/c2");
    assert_string_equal(s.got[2], "Condition/c3 deleted");
    assert_string_equal(s.got[3], "Condition/c4 deleted");
    assert_non_null(next);
    assert_string_equal(next, "https://e/fhir/Condition/_history?_cursor=9");
    hv_free(next);
}

static void ehr_history_rejects_entries_naming_nothing_and_non_bundles(void **state) {
    static const char *const bad[] = {
        "{\"resourceType\":\"Bundle\",\"entry\":[{\"request\":{\"method\":\"DELETE\",\"url\":\"nothing\"}}]}",
        "{\"resourceType\":\"Bundle\",\"entry\":[{\"request\":{\"method\":\"PUT\"}}]}",
        "{\"resourceType\":\"Bundle\",\"entry\":[7]}",
        "{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"diagnostics\":\"no history here\"}]}",
        "<html>not found</html>",
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        hist_seen_t s;
        hv_error_t err;
        char *next = NULL;
        memset(&s, 0, sizeof(s));
        hv_error_clear(&err);
        assert_int_not_equal(hv_ehr_history_parse(bad[i], strlen(bad[i]), 0, hist_cb, &s, &next, &err), HV_OK);
        assert_null(next);
        assert_true(err.message[0] != '\0');
    }
}

static void ehr_retry_after_reads_seconds_and_dates(void **state) {
    /* 2026-11-25T18:00:00Z = 1795629600 s. */
    uint64_t now = 1795629600ULL * 1000;
    (void)state;
    assert_int_equal(hv_ehr_retry_after_ms("120", now), 120000);
    assert_int_equal(hv_ehr_retry_after_ms(" 0 ", now), 0);
    assert_int_equal(hv_ehr_retry_after_ms("Wed, 25 Nov 2026 18:00:30 GMT", now), 30000);
    assert_int_equal(hv_ehr_retry_after_ms("Wed, 25 Nov 2026 17:00:00 GMT", now), 0);
    assert_int_equal(hv_ehr_retry_after_ms("soon", now), -1);
    assert_int_equal(hv_ehr_retry_after_ms("12abc", now), -1);
    assert_int_equal(hv_ehr_retry_after_ms("", now), -1);
}

int run_page_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ehr_page_splits_matches_outcomes_and_next),
        cmocka_unit_test(ehr_page_last_page_has_no_next),
        cmocka_unit_test(ehr_page_rejects_bad_bodies),
        cmocka_unit_test(ehr_page_enforces_its_byte_cap),
        cmocka_unit_test(ehr_ndjson_passes_every_line_and_a_truncated_tail),
        cmocka_unit_test(ehr_retry_after_reads_seconds_and_dates),
        cmocka_unit_test(ehr_history_names_each_entry_and_its_deletions),
        cmocka_unit_test(ehr_history_rejects_entries_naming_nothing_and_non_bundles),
    };
    return cmocka_run_group_tests_name("ehr_page", tests, NULL, NULL);
}
