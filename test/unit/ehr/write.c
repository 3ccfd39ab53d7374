/* write.c — tests of the pure parts of adapters/ehr/write.c: local ids and the rewriting of
 * references to them (namespacing per connection). */
#include <string.h>

#include <json-c/json.h>

#include "tests.h"
#include "adapters/ehr/ehr_int.h"

#define BASE "https://ehr.example.org/fhir/R4"

static void ehr_local_id_is_stable_and_per_connection(void **state) {
    char a[HV__EHR_LOCAL_ID_MAX], b[HV__EHR_LOCAL_ID_MAX], c[HV__EHR_LOCAL_ID_MAX], d[HV__EHR_LOCAL_ID_MAX];
    (void)state;
    hv__ehr_local_id("conn1", "Patient", "123", a);
    hv__ehr_local_id("conn1", "Patient", "123", b);
    hv__ehr_local_id("conn2", "Patient", "123", c);
    hv__ehr_local_id("conn1", "Observation", "123", d);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_string_not_equal(a, d);
    /* A version 8 UUID (RFC 9562 §5.8): 36 characters, version nibble 8, variant 10xx. */
    assert_int_equal(strlen(a), 36);
    assert_int_equal(a[14], '8');
    assert_true(strchr("89ab", a[19]) != NULL);
}

static void ehr_rewrite_refs_table(void **state) {
    static const struct {
        const char *in;
        const char *type, *id; /* the expected target, or NULL: unchanged */
    } cases[] = {
        {"Patient/123", "Patient", "123"},
        {"Patient/123/_history/4", "Patient", "123"},
        {BASE "/Patient/123", "Patient", "123"},
        {BASE "/Encounter/e-1/_history/2", "Encounter", "e-1"},
        {"urn:uuid:8c5a7e0c-1d7a-4c2e-9a55-1b2b9c3d4e5f", NULL, NULL},
        {"#med1", NULL, NULL},
        {"https://other.example.org/fhir/Patient/123", NULL, NULL},
        {"Patients/123", NULL, NULL},
        {"Patient/12 3", NULL, NULL},
        {"Patient/123/extra", NULL, NULL},
        {"Patient/", NULL, NULL},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_object *res = json_object_new_object(), *subj = json_object_new_object(), *v = NULL;
        char want[200], local[HV__EHR_LOCAL_ID_MAX];
        json_object_object_add(res, "resourceType", json_object_new_string("Observation"));
        json_object_object_add(subj, "reference", json_object_new_string(cases[i].in));
        json_object_object_add(res, "subject", subj);
        assert_int_equal(hv__ehr_rewrite_refs(res, "c1", BASE), HV_OK);
        json_object_object_get_ex(subj, "reference", &v);
        if (cases[i].type == NULL) {
            snprintf(want, sizeof(want), "%s", cases[i].in);
        } else {
            hv__ehr_local_id("c1", cases[i].type, cases[i].id, local);
            snprintf(want, sizeof(want), "%s/%s", cases[i].type, local);
        }
        if (strcmp(json_object_get_string(v), want) != 0)
            fail_msg("%s: got %s, want %s", cases[i].in, json_object_get_string(v), want);
        json_object_put(res);
    }
}

static void ehr_rewrite_refs_reaches_nested_and_contained(void **state) {
    const char *text = "{\"resourceType\":\"Encounter\",\"contained\":[{\"resourceType\":\"Condition\",\"id\":\"c\","
                       "\"subject\":{\"reference\":\"Patient/p\"}}],\"participant\":[{\"individual\":{\"reference\":"
                       "\"Practitioner/d\"}}],\"reasonReference\":[{\"reference\":\"#c\"}],\"note\":[{\"text\":\"Patient/p\"}]}";
    json_object *res = json_tokener_parse(text);
    char p[HV__EHR_LOCAL_ID_MAX], d[HV__EHR_LOCAL_ID_MAX], want[512];
    const char *got;
    (void)state;
    assert_non_null(res);
    assert_int_equal(hv__ehr_rewrite_refs(res, "c1", BASE), HV_OK);
    hv__ehr_local_id("c1", "Patient", "p", p);
    hv__ehr_local_id("c1", "Practitioner", "d", d);
    snprintf(want, sizeof(want),
             "{\"resourceType\":\"Encounter\",\"contained\":[{\"resourceType\":\"Condition\",\"id\":\"c\",\"subject\":"
             "{\"reference\":\"Patient/%s\"}}],\"participant\":[{\"individual\":{\"reference\":\"Practitioner/%s\"}}],"
             "\"reasonReference\":[{\"reference\":\"#c\"}],\"note\":[{\"text\":\"Patient/p\"}]}",
             p, d);
    got = json_object_to_json_string_ext(res, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    assert_string_equal(got, want);
    json_object_put(res);
}

static void ehr_rewrite_refs_refuses_absurd_nesting(void **state) {
    json_object *root = json_object_new_object(), *cur = root;
    int i;
    (void)state;
    for (i = 0; i < 100; i++) {
        json_object *next = json_object_new_object();
        json_object_object_add(cur, "x", next);
        cur = next;
    }
    assert_int_equal(hv__ehr_rewrite_refs(root, "c1", BASE), HV_EINVAL);
    json_object_put(root);
}

int run_write_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ehr_local_id_is_stable_and_per_connection),
        cmocka_unit_test(ehr_rewrite_refs_table),
        cmocka_unit_test(ehr_rewrite_refs_reaches_nested_and_contained),
        cmocka_unit_test(ehr_rewrite_refs_refuses_absurd_nesting),
    };
    return cmocka_run_group_tests_name("ehr_write", tests, NULL, NULL);
}
