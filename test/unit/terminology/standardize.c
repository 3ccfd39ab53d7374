/*
 * standardize.c — unit tests of terminology/standardize.c: each path of lab-result
 * standardization (ConceptMap hit, LOINC code, exact name, fuzzy name, unit
 * conversion, incommensurable unit, interpretation, implausible value, review list),
 * validation, and ConceptMap loading, on the LOINC fixture.
 */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests.h"
#include "terminology/terminology.h"

typedef struct fixture {
    char dir[64];
    hv_db_t *db;
    hv_ucum_t *ucum;
} fixture_t;

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof *f);
    char path[4096];
    hv_error_t err;
    const char *src = getenv("HV_SRCDIR");
    if (f == NULL || src == NULL) return -1;
    if (test_store_open(f->dir, sizeof f->dir, &f->db) != 0) return -1;
    snprintf(path, sizeof path, "%s/test/data/terminology/Loinc.csv", src);
    if (hv_terminology_load(f->db, "loinc", path, NULL, NULL, &err) != HV_OK) return -1;
    if (hv_ucum_new(test_essence_path(), 0, &f->ucum, &err) != HV_OK) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    test_store_close(f->dir, f->db);
    hv_ucum_free(f->ucum);
    free(f);
    return 0;
}

/* Standardizes a JSON text; returns the result (to json_object_put). */
static struct json_object *run(fixture_t *f, const char *json) {
    struct json_object *in = json_tokener_parse(json), *out = NULL;
    hv_error_t err;
    assert_non_null(in);
    hv_error_clear(&err);
    if (hv_terminology_standardize(f->db, f->ucum, in, 0.8, 1, &out, &err) != HV_OK)
        fail_msg("standardize %s: %s", json, err.message);
    json_object_put(in);
    return out;
}

/* The string at a dotted path ("loinc.code"), or "" if absent. */
static const char *at(struct json_object *o, const char *path) {
    static char buf[256];
    char key[64];
    const char *dot;
    struct json_object *v = o;
    while (v != NULL && *path != '\0') {
        size_t n;
        dot = strchr(path, '.');
        n = dot != NULL ? (size_t)(dot - path) : strlen(path);
        snprintf(key, sizeof key, "%.*s", (int)n, path);
        if (!json_object_object_get_ex(v, key, &v)) v = NULL;
        path += n + (dot != NULL);
    }
    if (v == NULL) return "";
    snprintf(buf, sizeof buf, "%s", json_object_get_string(v));
    return buf;
}

static void standardize_matches_fuzzy_name_and_keeps_unit(void **state) {
    struct json_object *o = run(*state, "{\"code\":\"GLU\",\"text\":\"Glucose, serum\",\"value\":95,"
                                        "\"unit\":\"mg/dl\",\"referenceRange\":{\"low\":70,\"high\":99}}");
    assert_string_equal(at(o, "status"), "standardized");
    assert_string_equal(at(o, "loinc.code"), "2345-7");
    assert_string_equal(at(o, "loinc.method"), "fuzzy-name");
    assert_true(atof(at(o, "loinc.confidence")) >= 0.8);
    assert_string_equal(at(o, "value.unit"), "mg/dL");
    assert_string_equal(at(o, "interpretation"), "N");
    json_object_put(o);
}

static void standardize_prefers_the_code_whose_unit_is_commensurable(void **state) {
    /* Moles per volume: the SCnc glucose code, not the mass one. */
    struct json_object *o = run(*state, "{\"text\":\"Glucose serum\",\"value\":5.4,\"unit\":\"mmol/L\"}");
    assert_string_equal(at(o, "loinc.code"), "14749-6");
    json_object_put(o);
}

static void standardize_converts_to_the_loinc_unit(void **state) {
    struct json_object *o = run(*state, "{\"text\":\"Hemoglobin blood\",\"value\":140,\"unit\":\"g/L\","
                                        "\"referenceRange\":{\"low\":120,\"high\":160}}");
    assert_string_equal(at(o, "loinc.code"), "718-7");
    assert_string_equal(at(o, "value.unit"), "g/dL");
    assert_true(fabs(atof(at(o, "value.value")) - 14) < 1e-9);
    assert_string_equal(at(o, "value.converted"), "true");
    /* The range (in the original unit) is compared in the same unit: 14 g/dL is N. */
    assert_string_equal(at(o, "interpretation"), "N");
    json_object_put(o);
    o = run(*state, "{\"text\":\"Body temperature\",\"value\":101.3,\"unit\":\"[degF]\","
                    "\"referenceRange\":{\"low\":36.1,\"high\":37.2,\"unit\":\"Cel\"}}");
    assert_string_equal(at(o, "value.unit"), "Cel");
    assert_true(fabs(atof(at(o, "value.value")) - 38.5) < 1e-9);
    assert_string_equal(at(o, "interpretation"), "H");
    json_object_put(o);
    /* A range in the original unit on an affine scale: 97-99 [degF] is 36.1-37.2 Cel. */
    o = run(*state, "{\"text\":\"Body temperature\",\"value\":98.6,\"unit\":\"[degF]\","
                    "\"referenceRange\":{\"low\":97,\"high\":99}}");
    assert_string_equal(at(o, "interpretation"), "N");
    json_object_put(o);
    o = run(*state, "{\"text\":\"Body temperature\",\"value\":96.8,\"unit\":\"[degF]\","
                    "\"referenceRange\":{\"low\":97,\"high\":99}}");
    assert_string_equal(at(o, "interpretation"), "L");
    json_object_put(o);
    /* A lab spelling that is other UCUM: K/uL is thousands per microliter, not kelvin. */
    o = run(*state, "{\"text\":\"WBC\",\"value\":7.2,\"unit\":\"K/uL\"}");
    assert_string_equal(at(o, "loinc.code"), "6690-2");
    assert_string_equal(at(o, "value.unit"), "10*3/uL");
    assert_string_equal(at(o, "status"), "standardized");
    json_object_put(o);
}

static void standardize_uses_loinc_code_and_conceptmap(void **state) {
    fixture_t *f = *state;
    struct json_object *o, *cm;
    hv_error_t err;
    size_t n = 0;
    o = run(f, "{\"code\":\"2345-7\",\"value\":450,\"unit\":\"mg/dL\","
               "\"referenceRange\":{\"low\":70,\"high\":99,\"criticalHigh\":400}}");
    assert_string_equal(at(o, "loinc.method"), "loinc-code");
    assert_string_equal(at(o, "interpretation"), "HH");
    json_object_put(o);
    cm = json_tokener_parse(
        "{\"resourceType\":\"ConceptMap\",\"name\":\"labA\",\"group\":[{\"target\":\"http://loinc.org\","
        "\"element\":[{\"code\":\"K1\",\"target\":[{\"code\":\"2823-3\",\"equivalence\":\"equivalent\"}]},"
        "{\"code\":\"X\",\"target\":[{\"code\":\"2951-2\",\"equivalence\":\"disjoint\"}]}]}]}");
    assert_int_equal(hv_terminology_conceptmap_put(f->db, "LAB-A", cm, &n, &err), HV_OK);
    assert_int_equal(n, 1); /* the disjoint mapping is not used */
    json_object_put(cm);
    o = run(f, "{\"sender\":\"LAB-A\",\"code\":\"K1\",\"text\":\"anything\",\"value\":4.2,"
               "\"unit\":\"mmol/L\",\"referenceRange\":{\"low\":3.5,\"high\":5.1}}");
    assert_string_equal(at(o, "loinc.code"), "2823-3");
    assert_string_equal(at(o, "loinc.method"), "conceptmap");
    assert_string_equal(at(o, "status"), "standardized");
    json_object_put(o);
    /* Another sender's local code is not mapped. */
    o = run(f, "{\"sender\":\"LAB-B\",\"code\":\"K1\",\"text\":\"zzzz\",\"value\":4.2,\"unit\":\"mmol/L\"}");
    assert_string_equal(at(o, "status"), "unmatched");
    json_object_put(o);
    cm = json_tokener_parse("{\"resourceType\":\"Patient\"}");
    assert_int_equal(hv_terminology_conceptmap_put(f->db, "LAB-A", cm, &n, &err), HV_EINVAL);
    json_object_put(cm);
}

static void standardize_flags_implausible_and_incommensurable(void **state) {
    fixture_t *f = *state;
    struct json_object *o, *list = NULL;
    size_t before, after;
    assert_int_equal(hv_terminology_review_list(f->db, 100, &list), HV_OK);
    before = json_object_array_length(list);
    json_object_put(list);
    o = run(f, "{\"code\":\"2345-7\",\"value\":9000,\"unit\":\"mg/dL\"}");
    assert_string_equal(at(o, "status"), "review");
    assert_string_equal(at(o, "plausibility.plausible"), "false");
    assert_non_null(strstr(at(o, "plausibility.reason"), "9000 mg/dL"));
    json_object_put(o);
    /* A LOINC code with a unit of another kind: not converted, confidence lowered. */
    o = run(f, "{\"code\":\"2345-7\",\"value\":5,\"unit\":\"mmol/L\"}");
    assert_string_equal(at(o, "status"), "review");
    assert_string_equal(at(o, "value.converted"), "false");
    assert_non_null(strstr(at(o, "warnings"), "not commensurable"));
    json_object_put(o);
    assert_int_equal(hv_terminology_review_list(f->db, 100, &list), HV_OK);
    after = json_object_array_length(list);
    assert_int_equal(after, before + 2);
    assert_string_equal(at(json_object_array_get_idx(list, 1), "candidate"), "2345-7");
    json_object_put(list);
}

static void standardize_reads_fhir_observations_and_text_values(void **state) {
    struct json_object *o = run(
        *state,
        "{\"resourceType\":\"Observation\",\"code\":{\"coding\":[{\"system\":\"urn:x\",\"code\":\"NA\"}],"
        "\"text\":\"Sodium serum\"},\"valueQuantity\":{\"value\":128,\"unit\":\"mEq/L\"},"
        "\"referenceRange\":[{\"low\":{\"value\":135},\"high\":{\"value\":145}}]}");
    assert_string_equal(at(o, "loinc.code"), "2951-2");
    assert_string_equal(at(o, "value.unit"), "mmol/L");
    assert_string_equal(at(o, "interpretation"), "L");
    json_object_put(o);
    o = run(*state, "{\"text\":\"Glucose urine\",\"value\":\"positive\","
                    "\"referenceRange\":{\"normal\":\"negative\"}}");
    assert_string_equal(at(o, "interpretation"), "A");
    json_object_put(o);
}

static void standardize_rejects_non_lab_input(void **state) {
    fixture_t *f = *state;
    struct json_object *in = json_tokener_parse("{\"value\":1}"), *out = NULL;
    hv_error_t err;
    assert_int_equal(hv_terminology_standardize(f->db, f->ucum, in, 0.8, 0, &out, &err), HV_EINVAL);
    assert_null(out);
    json_object_put(in);
    in = json_tokener_parse("{\"resourceType\":\"Patient\",\"code\":{}}");
    assert_int_equal(hv_terminology_standardize(f->db, f->ucum, in, 0.8, 0, &out, &err), HV_EINVAL);
    json_object_put(in);
}

static void validate_lab_result_reports_issues(void **state) {
    static const struct {
        const char *json, *valid, *issue;
    } cases[] = {
        {"{\"code\":\"2345-7\",\"value\":95,\"unit\":\"mg/dL\"}", "true", ""},
        {"{\"code\":\"2345-7\",\"value\":5,\"unit\":\"mmol/L\"}", "false", "incommensurable-unit"},
        {"{\"code\":\"2345-8\",\"value\":5,\"unit\":\"mg/dL\"}", "false", "invalid-code"},
        {"{\"code\":\"1-8\",\"value\":5,\"unit\":\"mg/dL\"}", "false", "unknown-code"},
        {"{\"code\":\"2345-7\",\"value\":5,\"unit\":\"mg/12h\"}", "false", "invalid-unit"},
        {"{\"code\":\"2345-7\",\"value\":9000,\"unit\":\"mg/dL\"}", "false", "implausible-value"},
        {"{\"code\":\"99990-4\",\"value\":90,\"unit\":\"mg/dL\"}", "true", "deprecated-code"},
    };
    fixture_t *f = *state;
    size_t i;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        struct json_object *in = json_tokener_parse(cases[i].json), *out = NULL;
        hv_error_t err;
        const char *text;
        assert_int_equal(hv_terminology_validate_lab(f->db, f->ucum, in, &out, &err), HV_OK);
        text = json_object_to_json_string(out);
        if (strcmp(at(out, "valid"), cases[i].valid) != 0 || strstr(text, cases[i].issue) == NULL)
            fail_msg("%s -> %s", cases[i].json, text);
        json_object_put(in);
        json_object_put(out);
    }
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int run_standardize_tests(void) {
    const struct CMUnitTest tests[] = {
        T(standardize_matches_fuzzy_name_and_keeps_unit),
        T(standardize_prefers_the_code_whose_unit_is_commensurable),
        T(standardize_converts_to_the_loinc_unit),
        T(standardize_uses_loinc_code_and_conceptmap),
        T(standardize_flags_implausible_and_incommensurable),
        T(standardize_reads_fhir_observations_and_text_values),
        T(standardize_rejects_non_lab_input),
        T(validate_lab_result_reports_issues),
    };
    return test_run_on_backends("terminology_standardize", tests, HV_ARRAY_LEN(tests));
}
