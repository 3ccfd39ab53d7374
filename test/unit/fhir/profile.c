/* profile.c — tests of fhir/profile.c: validation against profile StructureDefinitions. */
#include "tests.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

/* The US Core 5.0.1 profile with id `id`, from the reference data (a JSON array). */
static struct json_object *us_core(const char *id) {
    char path[1200];
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/fhir/definitions/uscore-v5.0.1-structuredefinitions.json",
             fhir_test_reference_dir());
    char *text = fhir_test_slurp(path, &len);
    assert_non_null(text);
    struct json_object *all = json_tokener_parse(text), *found = NULL;
    free(text);
    assert_non_null(all);
    for (size_t i = 0; i < json_object_array_length(all); i++) {
        struct json_object *sd = json_object_array_get_idx(all, i);
        if (strcmp(hv_json_get_str(sd, "id"), id) == 0)
            found = json_object_get(sd);
    }
    json_object_put(all);
    assert_non_null(found);
    return found;
}

/* Validates against profile url; returns the errors and collects "expression: diagnostics". */
static int check(hv_fhir_validator_t *v, struct json_object *res, const char *url, char *out,
                 size_t outlen) {
    struct json_object *oo = NULL;
    int errors = -1;
    assert_int_equal(hv_fhir_validate(v, res, url, 0, &oo, &errors), HV_OK);
    struct json_object *issues = json_object_object_get(oo, "issue");
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < json_object_array_length(issues); i++) {
        struct json_object *is = json_object_array_get_idx(issues, i);
        if (strcmp(hv_json_get_str(is, "severity"), "error") != 0)
            continue;
        int n = snprintf(out + used, outlen - used, "%s|",
                         json_object_get_string(json_object_array_get_idx(
                             json_object_object_get(is, "expression"), 0)));
        if (n > 0 && (size_t)n < outlen - used)
            used += (size_t)n;
    }
    json_object_put(oo);
    return errors;
}

static void fhir_profile_us_core_blood_pressure(void **state) {
    (void)state;
    hv_fhir_validator_t *v = hv_fhir_validator_new();
    struct json_object *sd = us_core("us-core-blood-pressure");
    hv_error_t err;
    hv_error_clear(&err);
    assert_int_equal(hv_fhir_validator_add_profile(v, sd, &err), HV_OK);
    const char *url = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-blood-pressure";
    char path[1200], got[2048];
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/fhir/examples/Observation-blood-pressure.json",
             fhir_test_reference_dir());
    char *text = fhir_test_slurp(path, &len);
    struct json_object *obs = json_tokener_parse(text);
    free(text);
    assert_int_equal(check(v, obs, url, got, sizeof(got)), 0);
    /* With a version suffix the URL still names it; an unknown one is HV_ENOTFOUND. */
    assert_int_equal(
        check(v, obs,
              "http://hl7.org/fhir/us/core/StructureDefinition/us-core-blood-pressure|5.0.1", got,
              sizeof(got)),
        0);
    struct json_object *oo = NULL;
    int e = 0;
    assert_int_equal(hv_fhir_validate(v, obs, "http://example.org/nope", 0, &oo, &e), HV_ENOTFOUND);

    /* Break it: category slice (value discriminator), code pattern, subject min, a fixed unit. */
    struct json_object *cat = json_object_array_get_idx(json_object_object_get(obs, "category"), 0);
    struct json_object *coding =
        json_object_array_get_idx(json_object_object_get(cat, "coding"), 0);
    hv_json_set_str(coding, "code", "laboratory");
    struct json_object *code0 = json_object_array_get_idx(
        json_object_object_get(json_object_object_get(obs, "code"), "coding"), 0);
    hv_json_set_str(code0, "code", "1234-5");
    json_object_object_del(obs, "subject");
    struct json_object *comp0 =
        json_object_array_get_idx(json_object_object_get(obs, "component"), 0);
    hv_json_set_str(json_object_object_get(comp0, "valueQuantity"), "code", "mmHg");
    int errors = check(v, obs, url, got, sizeof(got));
    assert_int_equal(errors, 4);
    assert_non_null(strstr(got, "Observation.category|"));
    assert_non_null(strstr(got, "Observation.code|"));
    assert_non_null(strstr(got, "Observation.subject|"));
    assert_non_null(strstr(got, "Observation.component[0].value.code|"));
    json_object_put(obs);
    json_object_put(sd);
    hv_fhir_validator_free(v);
}

/* A small hand-written profile: closed slicing by type, an exists discriminator, a fixed value,
 * a type restriction and an invariant of its own. */
static const char *test_profile =
    "{\"resourceType\":\"StructureDefinition\",\"url\":\"http://example.org/sd/"
    "obs\",\"type\":\"Observation\","
    "\"snapshot\":{\"element\":["
    "{\"id\":\"Observation\",\"path\":\"Observation\",\"constraint\":[{\"key\":\"tst-1\","
    "\"severity\":\"error\","
    "\"human\":\"needs a note\",\"expression\":\"note.exists()\"}]},"
    "{\"id\":\"Observation.status\",\"path\":\"Observation.status\",\"min\":1,\"max\":\"1\","
    "\"fixedCode\":\"final\"},"
    "{\"id\":\"Observation.value[x]\",\"path\":\"Observation.value[x]\",\"min\":0,\"max\":\"1\","
    "\"type\":[{\"code\":\"Quantity\"},{\"code\":\"string\"}]},"
    "{\"id\":\"Observation.identifier\",\"path\":\"Observation.identifier\",\"min\":0,\"max\":\"*"
    "\","
    "\"slicing\":{\"discriminator\":[{\"type\":\"exists\",\"path\":\"period\"}],\"rules\":"
    "\"closed\"}},"
    "{\"id\":\"Observation.identifier:timed\",\"path\":\"Observation.identifier\",\"sliceName\":"
    "\"timed\","
    "\"min\":1,\"max\":\"1\"},"
    "{\"id\":\"Observation.identifier:timed.period\",\"path\":\"Observation.identifier.period\","
    "\"min\":1,\"max\":\"1\"},"
    "{\"id\":\"Observation.identifier:timed.system\",\"path\":\"Observation.identifier.system\","
    "\"min\":1,\"max\":\"1\"}"
    "]}}";

static void fhir_profile_slicing_fixed_types_and_invariants(void **state) {
    (void)state;
    hv_fhir_validator_t *v = hv_fhir_validator_new();
    struct json_object *sd = json_tokener_parse(test_profile);
    assert_int_equal(hv_fhir_validator_add_profile(v, sd, NULL), HV_OK);
    char got[2048];
    static const struct {
        const char *resource;
        int errors;
        const char *where;
    } cases[] = {
        {"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
         "\"note\":[{\"text\":\"n\"}],"
         "\"identifier\":[{\"system\":\"s\",\"period\":{\"start\":\"2020\"}}],\"valueString\":"
         "\"v\"}",
         0, ""},
        {"{\"resourceType\":\"Observation\",\"status\":\"amended\",\"code\":{\"text\":\"x\"},"
         "\"note\":[{\"text\":\"n\"}],"
         "\"identifier\":[{\"system\":\"s\",\"period\":{\"start\":\"2020\"}}]}",
         1, "Observation.status|"},
        {"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
         "\"note\":[{\"text\":\"n\"}],"
         "\"identifier\":[{\"system\":\"s\",\"period\":{\"start\":\"2020\"}}],\"valueBoolean\":"
         "true}",
         1, "Observation.value|"},
        {"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
         "\"identifier\":[{\"system\":\"s\",\"period\":{\"start\":\"2020\"}}]}",
         1, "Observation|"},
        /* The timed slice is missing, and the untimed identifier is in no slice (closed). */
        {"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
         "\"note\":[{\"text\":\"n\"}],"
         "\"identifier\":[{\"system\":\"s\"}]}",
         2, "Observation.identifier[0]|Observation.identifier|"},
        /* In the slice but without the system the slice requires. */
        {"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
         "\"note\":[{\"text\":\"n\"}],"
         "\"identifier\":[{\"period\":{\"start\":\"2020\"}}]}",
         1, "Observation.identifier[0].system|"},
        {"{\"resourceType\":\"Patient\"}", 1, "Patient|"},
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++) {
        struct json_object *res = json_tokener_parse(cases[i].resource);
        int errors = check(v, res, "http://example.org/sd/obs", got, sizeof(got));
        if (errors != cases[i].errors || strcmp(got, cases[i].where) != 0)
            print_error("case %zu: %d errors at %s\n", i, errors, got);
        assert_int_equal(errors, cases[i].errors);
        assert_string_equal(got, cases[i].where);
        json_object_put(res);
    }
    json_object_put(sd);
    hv_fhir_validator_free(v);
}

/* An extension slice is checked against the extension's own profile when it is loaded. */
static void fhir_profile_checks_extensions_against_their_profiles(void **state) {
    (void)state;
    hv_fhir_validator_t *v = hv_fhir_validator_new();
    struct json_object *pat_sd = us_core("us-core-patient"), *race_sd = us_core("us-core-race");
    assert_int_equal(hv_fhir_validator_add_profile(v, pat_sd, NULL), HV_OK);
    const char *url = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient";
    const char *text =
        "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"s\",\"value\":\"1\"}],"
        "\"name\":[{\"family\":\"F\"}],\"gender\":\"female\",\"extension\":[{\"url\":"
        "\"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race\",\"extension\":[{\"url\":"
        "\"ombCategory\",\"valueCoding\":{\"system\":\"urn:oid:2.16.840.1.113883.6.238\","
        "\"code\":\"2106-3\"}}]}]}";
    struct json_object *res = json_tokener_parse(text);
    char got[2048];
    /* Without the extension's profile, the race extension is not looked into. */
    assert_int_equal(check(v, res, url, got, sizeof(got)), 0);
    assert_int_equal(hv_fhir_validator_add_profile(v, race_sd, NULL), HV_OK);
    /* us-core-race requires its "text" sub-extension. */
    assert_int_equal(check(v, res, url, got, sizeof(got)), 1);
    assert_string_equal(got, "Patient.extension[0].extension|");
    json_object_put(res);
    json_object_put(pat_sd);
    json_object_put(race_sd);
    hv_fhir_validator_free(v);
}

static void fhir_profile_rejects_non_profiles(void **state) {
    (void)state;
    hv_fhir_validator_t *v = hv_fhir_validator_new();
    static const char *const bad[] = {
        "{\"resourceType\":\"Patient\"}",
        "{\"resourceType\":\"StructureDefinition\",\"url\":\"u\",\"type\":\"Nope\",\"snapshot\":{\"element\":[]}}",
        "{\"resourceType\":\"StructureDefinition\",\"url\":\"u\",\"type\":\"Patient\"}",
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(bad); i++) {
        struct json_object *sd = json_tokener_parse(bad[i]);
        hv_error_t err;
        hv_error_clear(&err);
        assert_int_equal(hv_fhir_validator_add_profile(v, sd, &err), HV_EINVAL);
        assert_true(err.message[0] != '\0');
        json_object_put(sd);
    }
    hv_fhir_validator_free(v);
}

int run_profile_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fhir_profile_us_core_blood_pressure),
        cmocka_unit_test(fhir_profile_slicing_fixed_types_and_invariants),
        cmocka_unit_test(fhir_profile_checks_extensions_against_their_profiles),
        cmocka_unit_test(fhir_profile_rejects_non_profiles),
    };
    return cmocka_run_group_tests_name("fhir_profile", tests, NULL, NULL);
}
