/* record.c — tests destinations/audit/record.c: the patient scan's cache answers exactly
 * what the scanner answers (ids, order, cap), for hits, misses and replaced bodies. */
#include <stdio.h>
#include <string.h>

#include "tests.h"

/* The scanner's answer and the cache's, after the same prefilled ids, must be equal. */
static void check_same(hv__audit_t *a, const char *path, const char *body, const char *const *pre, size_t npre,
                       size_t max) {
    hv_arena_t *ar = hv_arena_new(0);
    const char *want[HV_AUDIT_MAX_PATIENTS], *got[HV_AUDIT_MAX_PATIENTS];
    size_t nw = 0, ng = 0;
    assert_non_null(ar);
    for (size_t i = 0; i < npre; i++) want[nw++] = got[ng++] = pre[i];
    hv__audit_scan_patients(body, strlen(body), ar, want, &nw, max);
    assert_int_equal(hv__audit_scan_cached(a, path, body, strlen(body), ar, got, &ng, max), HV_OK);
    if (ng != nw) fail_msg("%s: %zu ids from the cache, %zu from the scanner", body, ng, nw);
    for (size_t i = 0; i < nw; i++)
        if (strcmp(got[i], want[i]) != 0) fail_msg("%s: id %zu is %s, want %s", body, i, got[i], want[i]);
    hv_arena_free(ar);
}

static const char *const bodies[] = {
    "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"name\":[{\"family\":\"Bench\"}]}",
    "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"link\":[{\"other\":{\"reference\":\"Patient/p2\"}}]}",
    "{\"resourceType\":\"Observation\",\"id\":\"o1\",\"subject\":{\"reference\":\"Patient/p3\"},"
    "\"performer\":[{\"reference\":\"Patient/p1\"},{\"reference\":\"Practitioner/d\"}]}",
    "<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"px\"/><link><other><reference value=\"Patient/py\"/>"
    "</other></link></Patient>",
    "{\"resourceType\":\"Practitioner\",\"id\":\"d1\"}",
};

static void audit_scan_cache_answers_as_the_scanner(void **state) {
    hv__audit_t *a = hv_calloc(1, sizeof(*a));
    static const char *const pre1[] = {"p1"}, *const pre2[] = {"p2", "p9"};
    uint64_t hits, misses;
    (void)state;
    assert_non_null(a);
    /* Each body twice at its own path (a miss, then a hit), with and without ids before it. */
    for (int round = 0; round < 2; round++)
        for (size_t i = 0; i < HV_ARRAY_LEN(bodies); i++) {
            char path[64];
            snprintf(path, sizeof(path), "/fhir/X/%zu", i);
            check_same(a, path, bodies[i], NULL, 0, HV_AUDIT_MAX_PATIENTS);
            check_same(a, path, bodies[i], pre1, 1, HV_AUDIT_MAX_PATIENTS);
            check_same(a, path, bodies[i], pre2, 2, HV_AUDIT_MAX_PATIENTS);
            check_same(a, path, bodies[i], pre2, 2, 3); /* a cap reached by the prefilled ids */
        }
    hv__audit_scan_cache_stats(a, &hits, &misses);
    assert_int_equal(misses, HV_ARRAY_LEN(bodies));
    assert_int_equal(hits, 8 * HV_ARRAY_LEN(bodies) - misses);
    /* One path, its body changing (a new version): every answer is the new body's. */
    for (size_t i = 0; i < HV_ARRAY_LEN(bodies); i++) check_same(a, "/fhir/Patient/p1", bodies[i], pre1, 1, 64);
    /* Same length, one byte different. */
    check_same(a, "/fhir/Patient/q", "{\"reference\":\"Patient/aa\"}", NULL, 0, 64);
    check_same(a, "/fhir/Patient/q", "{\"reference\":\"Patient/ab\"}", NULL, 0, 64);
    hv__audit_scan_cache_free(a);
    hv_free(a);
}

static void audit_scan_cache_keeps_the_cap_of_crowded_bodies(void **state) {
    hv__audit_t *a = hv_calloc(1, sizeof(*a));
    hv_buf_t b;
    static const char *const pre[] = {"p0", "p5"};
    (void)state;
    assert_non_null(a);
    hv_buf_init(&b, 0);
    /* More distinct patients than an event lists: never cached, still the scanner's answer. */
    assert_int_equal(hv_buf_append(&b, "[", 1), HV_OK);
    for (int i = 0; i < HV_AUDIT_MAX_PATIENTS + 6; i++) {
        char r[64];
        int k = snprintf(r, sizeof(r), "%s{\"reference\":\"Patient/p%d\"}", i ? "," : "", i);
        assert_int_equal(hv_buf_append(&b, r, (size_t)k), HV_OK);
    }
    assert_int_equal(hv_buf_append(&b, "]", 1), HV_OK);
    for (int round = 0; round < 2; round++) {
        check_same(a, "/fhir/Group/g", b.data, NULL, 0, HV_AUDIT_MAX_PATIENTS);
        check_same(a, "/fhir/Group/g", b.data, pre, 2, HV_AUDIT_MAX_PATIENTS);
    }
    hv_buf_release(&b);
    hv__audit_scan_cache_free(a);
    hv_free(a);
}

int run_record_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(audit_scan_cache_answers_as_the_scanner),
        cmocka_unit_test(audit_scan_cache_keeps_the_cap_of_crowded_bodies),
    };
    return cmocka_run_group_tests_name("audit/record", tests, NULL, NULL);
}
