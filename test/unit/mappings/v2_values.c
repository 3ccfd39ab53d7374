/*
 * v2_values.c — tests of mappings/v2_values.c's cached FHIR model look-ups and, through the
 * public entry point, of the compiled target paths of v2_apply.c: a cache may only make a
 * look-up cheaper, never change its answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"

#include "mappings/v2_int.h"

static const char *const types[] = {"Patient", "Observation", "HumanName", "CodeableConcept", "Bundle",
                                    "Identifier", "Encounter", "Quantity", "Timing", "Provenance"};

/* Every child of every owner element reachable in two steps from the types above is found
 * through the cache as the model finds it, the first time (filling the cache) and again
 * (from it); names that are not children, and the same name under other owners, are not
 * confused with them. */
static void v2_elem_child_cache_agrees_with_the_model(void **state) {
    ctx_t *c = calloc(1, sizeof(*c));
    size_t t, i, j, checked = 0;
    (void)state;
    assert_non_null(c);
    for (t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        const hv_fhir_type_t *ty = hv_fhir_type_find(types[t], strlen(types[t]));
        const hv_fhir_elem_t *root;
        assert_non_null(ty);
        root = hv_fhir_type_root(ty);
        for (i = 0; i < hv_fhir_elem_child_count(root); i++) {
            const hv_fhir_elem_t *owners[2];
            const hv_fhir_type_t *ch = NULL;
            const hv_fhir_elem_t *k = hv_fhir_elem_child_at(root, i);
            const char *kn = hv_fhir_elem_name(k);
            size_t o, kl = strcspn(kn, "[");
            owners[0] = root;
            owners[1] = hv_fhir_elem_child(root, kn, kl, &ch) != NULL && ch != NULL &&
                                hv_fhir_type_kind(ch) != HV_FHIR_KIND_PRIMITIVE
                            ? hv_fhir_elem_owner(hv_fhir_elem_child(root, kn, kl, &ch), ch)
                            : NULL;
            for (o = 0; o < 2 && owners[o] != NULL; o++) {
                const hv_fhir_elem_t *ow = owners[o];
                for (j = 0; j < hv_fhir_elem_child_count(ow); j++) {
                    const char *name = hv_fhir_elem_name(hv_fhir_elem_child_at(ow, j));
                    size_t nl = strcspn(name, "["), round;
                    for (round = 0; round < 2; round++) {
                        const hv_fhir_type_t *want_t = NULL, *got_t = NULL;
                        const hv_fhir_elem_t *want = hv_fhir_elem_child(ow, name, nl, &want_t);
                        const hv_fhir_elem_t *got = hv__v2_elem_child(c, ow, name, nl, &got_t);
                        assert_ptr_equal(got, want);
                        assert_ptr_equal(got_t, want_t);
                        checked++;
                    }
                }
                /* Not a child: NULL, and *chosen untouched, each time. */
                {
                    const hv_fhir_type_t *sentinel = (const hv_fhir_type_t *)&checked, *got_t = sentinel;
                    assert_null(hv__v2_elem_child(c, ow, "noSuchElement", 13, &got_t));
                    assert_null(hv__v2_elem_child(c, ow, "noSuchElement", 13, &got_t));
                    assert_ptr_equal(got_t, sentinel);
                }
            }
        }
    }
    assert_true(checked > 1000);
    free(c);
}

/* The cached required children of an owner are the model's children with min >= 1, in
 * the model's order, the first time and from the cache. */
static void v2_elem_required_lists_the_min1_children_in_model_order(void **state) {
    ctx_t *c = calloc(1, sizeof(*c));
    size_t t, round;
    (void)state;
    assert_non_null(c);
    for (round = 0; round < 2; round++) {
        for (t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
            const hv_fhir_elem_t *root = hv_fhir_type_root(hv_fhir_type_find(types[t], strlen(types[t])));
            const hv_fhir_elem_t *want[64];
            const hv_fhir_elem_t *const *got;
            size_t i, n = 0, gn = 0;
            for (i = 0; i < hv_fhir_elem_child_count(root); i++)
                if (hv_fhir_elem_min(hv_fhir_elem_child_at(root, i)) > 0 && n < 64)
                    want[n++] = hv_fhir_elem_child_at(root, i);
            got = hv__v2_elem_required(c, root, &gn);
            if (got == NULL) {
                assert_true(n > 7); /* more than the cache holds: the caller walks the model */
                continue;
            }
            assert_int_equal(gn, n);
            for (i = 0; i < n; i++) assert_ptr_equal(got[i], want[i]);
        }
    }
    /* Observation requires status and code, Bundle type: the lists are not all empty. */
    {
        size_t n = 0;
        assert_non_null(hv__v2_elem_required(c, hv_fhir_type_root(hv_fhir_type_find("Observation", 11)), &n));
        assert_int_equal(n, 2);
    }
    free(c);
}

/* A message mapped after other messages (plans, model look-ups and element keys cached)
 * gives the bytes it gives when mapped first; messages with different paths in between
 * fill the same cache slots with other entries. */
static void v2_cached_plans_map_a_message_as_the_first_mapping_does(void **state) {
    static const char *const msgs[] = {
        "MSH|^~\\&|LAB|LABFAC|EHR|HOSP|20240102080000-0500||ORU^R01^ORU_R01|LAB777|P|2.5.1\r"
        "PID|1||12345^^^HOSP^MR||DOE^JANE||19800102|F\r"
        "ORC|RE|PLC100^EHR|FIL200^LAB\r"
        "OBR|1|PLC100^EHR|FIL200^LAB|24331-1^Lipid panel^LN|||20240102070000-0500\r"
        "OBX|1|NM|2093-3^Cholesterol^LN||185|mg/dL^mg/dL^UCUM|<200|N|||F\r"
        "OBX|2|ST|8251-1^Comment^LN||fasting||||||F\r",
        "MSH|^~\\&|A|B|C|D|20240101120000+0000||ADT^A01^ADT_A01|MSG001|P|2.5.1\r"
        "EVN|A01|20240101120000\r"
        "PID|1||12345^^^HOSP^MR~987-65-4321^^^SSA^SS||DOE^JANE^Q^^MRS||19800102|F|||1 MAIN ST^^SPRINGFIELD^IL^62701^USA^H\r"
        "NK1|1|DOE^JOHN|SPO^Spouse^HL70063|1 MAIN ST^^SPRINGFIELD^IL^62701|^PRN^PH^^1^217^5551235\r"
        "PV1|1|I|WARD^101^A||||1234^SMITH^JOHN^^^DR|||MED|||||||||V100^^^HOSP^VN\r",
    };
    char *first[2] = {NULL, NULL};
    size_t round, m;
    (void)state;
    for (round = 0; round < 3; round++) {
        for (m = 0; m < 2; m++) {
            hv_map_result_t r;
            hv_map_opts_t opts;
            const char *s;
            memset(&opts, 0, sizeof(opts));
            opts.explain = 1;
            test_map(msgs[m], &opts, &r);
            s = json_object_to_json_string_ext(r.bundle, JSON_C_TO_STRING_PLAIN);
            if (round == 0) {
                first[m] = strdup(s);
                assert_non_null(first[m]);
                assert_non_null(strstr(s, m == 0 ? "\"Observation\"" : "\"Encounter\""));
            } else {
                assert_string_equal(s, first[m]);
            }
            hv_map_result_free(&r);
        }
    }
    free(first[0]);
    free(first[1]);
}

int run_v2_values_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v2_elem_child_cache_agrees_with_the_model),
        cmocka_unit_test(v2_elem_required_lists_the_min1_children_in_model_order),
        cmocka_unit_test(v2_cached_plans_map_a_message_as_the_first_mapping_does),
    };
    return cmocka_run_group_tests_name("mappings/v2_values", tests, NULL, NULL);
}
