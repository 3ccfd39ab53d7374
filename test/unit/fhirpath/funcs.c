/* funcs.c — tests of fhir/fhirpath_funcs.c: existence, filtering and projection,
 * subsetting, combining, tree navigation, utility, types, and the FHIR functions
 * (extension, resolve in contained and Bundles, memberOf through a provider). */
#include "tests.h"

#include <json-c/json.h>
#include <string.h>

static void fhirpath_funcs_existence(void **state) {
    static const fp_case_t t[] = {
        {"name.empty()", "[false]"},
        {"telecom.empty()", "[true]"},
        {"name.exists(use = 'usual')", "[true]"},
        {"name.exists(use = 'nickname')", "[false]"},
        {"name.all(given.exists())", "[true]"},
        {"(true | false).allTrue()", "[false]"},
        {"(true | false).anyTrue()", "[true]"},
        {"(false).allFalse()", "[true]"},
        {"(true).anyFalse()", "[false]"},
        {"(1 | 2).subsetOf(1 | 2 | 3)", "[true]"},
        {"(1 | 2 | 3).supersetOf(4)", "[false]"},
        {"name.given.count()", "[3]"},
        {"(1 | 2).combine(2).distinct()", "[1,2]"},
        {"1.combine(1).isDistinct()", "[false]"},
        {"('a' | 1).allTrue()", NULL},
    };
    fp_check_table(t, HV_ARRAY_LEN(t), NULL);
}

static void fhirpath_funcs_filtering_and_subsetting(void **state) {
    static const fp_case_t t[] = {
        {"name.where(use = 'official').family", "[\"Chalmers\"]"},
        {"name.select(given.first())", "[\"Peter\",\"Jim\"]"},
        {"(1 | 2 | 3).ofType(Integer)", "[1,2,3]"},
        {"name.given.first()", "[\"Peter\"]"},
        {"name.given.last()", "[\"Jim\"]"},
        {"name.given.tail()", "[\"James\",\"Jim\"]"},
        {"name.given.skip(2)", "[\"Jim\"]"},
        {"name.given.take(2)", "[\"Peter\",\"James\"]"},
        {"name.given.take(-1)", "[]"},
        {"(1 | 2 | 3).intersect(2 | 3 | 4)", "[2,3]"},
        {"(1 | 2 | 3).exclude(2)", "[1,3]"},
        {"gender.single()", "[\"male\"]"},
        {"{}.single()", "[]"},
        {"name.given.single()", NULL},
    };
    fp_check_table(t, HV_ARRAY_LEN(t), NULL);
}

static void fhirpath_funcs_combining_and_tree(void **state) {
    static const fp_case_t t[] = {
        {"(1 | 2).union(2 | 3)", "[1,2,3]"},
        {"(1 | 2).combine(2 | 3)", "[1,2,2,3]"},
        {"contact.children().count()", "[2]"},
        {"contact.descendants().count()", "[3]"},
        {"descendants().where($this = 'Jim').count()", "[1]"},
        {"%resource.repeat(contained).id", "[\"org1\"]"},
    };
    fp_check_table(t, HV_ARRAY_LEN(t), NULL);
}

static void fhirpath_funcs_utility_and_types(void **state) {
    static const fp_case_t t[] = {
        {"iif(active, 'yes', 'no')", "[\"yes\"]"},
        {"iif({}, 'yes')", "[]"},
        {"iif('x', 1, 2)", NULL},
        {"(3 | 1 | 2).sort()", "[1,2,3]"},
        {"(3 | 1 | 2).sort(-$this)", "[3,2,1]"},
        {"name.sort(family).use", "[\"usual\",\"official\"]"},
        {"name.given.trace('g').count()", "[3]"},
        {"now() > @2020-01-01T00:00:00Z", "[true]"},
        {"today().is(Date)", "[true]"},
        {"timeOfDay().is(Time)", "[true]"},
        {"gender.type().name", "[\"code\"]"},
        {"1.type().namespace", "[\"System\"]"},
        {"Patient.is(DomainResource)", "[true]"},
        {"gender.as(code)", "[\"male\"]"},
        {"gender.as(string)", "[]"},
        {"gender.is(string)", "[true]"},
        {"gender.is(Frobnitz)", NULL},
        {"active.not()", "[false]"},
        {"{}.not()", "[]"},
    };
    fp_check_table(t, HV_ARRAY_LEN(t), NULL);
}

static void fhirpath_funcs_fhir_additions(void **state) {
    static const fp_case_t t[] = {
        {"extension('http://example.org/ext').value", "[\"x\"]"},
        {"birthDate.extension(%`ext-patient-birthTime`).exists()", "[true]"},
        {"extension('http://example.org/none')", "[]"},
        {"birthDate.hasValue()", "[true]"},
        {"name.hasValue()", "[false]"},
        {"birthDate.getValue()", "[\"1974-12-25\"]"},
        {"managingOrganization.resolve().name", "[\"Acme\"]"},
        {"managingOrganization.resolve() is Organization", "[true]"},
        {"conformsTo('http://hl7.org/fhir/StructureDefinition/Patient')", "[true]"},
        {"conformsTo('http://example.org/x')", NULL},
        {"gender.memberOf('http://hl7.org/fhir/ValueSet/administrative-gender')", "[]"},
    };
    fp_check_table(t, HV_ARRAY_LEN(t), NULL);
}

static void fhirpath_funcs_resolve_in_bundle(void **state) {
    static const fp_case_t t[] = {
        {"entry[1].resource.subject.resolve().name.family", "[\"Doe\"]"},
        {"entry[1].resource.performer.resolve().id", "[\"pr1\"]"},
        {"entry[1].resource.encounter.resolve()", "[]"},
    };
    const char *bundle =
        "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":["
        "{\"fullUrl\":\"http://x.org/fhir/Patient/pt1\",\"resource\":{\"resourceType\":\"Patient\",\"id\":\"pt1\","
        "\"name\":[{\"family\":\"Doe\"}]}},"
        "{\"fullUrl\":\"urn:uuid:0b5f\",\"resource\":{\"resourceType\":\"Observation\",\"id\":\"o1\",\"status\":\"final\","
        "\"code\":{\"text\":\"x\"},\"subject\":{\"reference\":\"Patient/pt1\"},"
        "\"performer\":[{\"reference\":\"urn:uuid:1234\"}],\"encounter\":{\"reference\":\"Encounter/none\"}}},"
        "{\"fullUrl\":\"urn:uuid:1234\",\"resource\":{\"resourceType\":\"Practitioner\",\"id\":\"pr1\"}}]}";
    fp_check_table(t, HV_ARRAY_LEN(t), bundle);
}

static int member_cb(void *ud, const char *vs, const char *system, const char *code, int *member) {
    int *calls = ud;
    (*calls)++;
    if (strcmp(vs, "http://example.org/vs") != 0) return HV_ENOTFOUND;
    *member = code != NULL && strcmp(code, "male") == 0;
    return HV_OK;
}

static void fhirpath_funcs_member_of_asks_the_provider(void **state) {
    hv_fhirpath_t *fp = NULL;
    hv_fhirpath_result_t *r = NULL;
    hv_arena_t *a = hv_arena_new(0);
    struct json_object *res = json_tokener_parse(fp_patient_json);
    hv_fhirpath_env_t env;
    hv_error_t err;
    hv_buf_t b;
    int calls = 0;
    memset(&env, 0, sizeof(env));
    env.member_of = member_cb;
    env.member_ud = &calls;
    hv_buf_init(&b, 0);
    assert_int_equal(hv_fhirpath_compile("gender.memberOf('http://example.org/vs') | "
                                         "contact.gender.memberOf('http://example.org/vs') | "
                                         "gender.memberOf('http://example.org/unknown')",
                                         0, NULL, &fp, &err),
                     HV_OK);
    assert_int_equal(hv_fhirpath_eval(fp, res, &env, a, &r, &err), HV_OK);
    assert_int_equal(hv_fhirpath_result_json(r, &b), HV_OK);
    assert_string_equal(b.data, "[true,false]");
    assert_int_equal(calls, 3);
    hv_buf_release(&b);
    hv_fhirpath_free(fp);
    hv_arena_free(a);
    json_object_put(res);
}

int run_fhirpath_funcs_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fhirpath_funcs_existence),
        cmocka_unit_test(fhirpath_funcs_filtering_and_subsetting),
        cmocka_unit_test(fhirpath_funcs_combining_and_tree),
        cmocka_unit_test(fhirpath_funcs_utility_and_types),
        cmocka_unit_test(fhirpath_funcs_fhir_additions),
        cmocka_unit_test(fhirpath_funcs_resolve_in_bundle),
        cmocka_unit_test(fhirpath_funcs_member_of_asks_the_provider),
    };
    return cmocka_run_group_tests_name("fhirpath_funcs", tests, NULL, NULL);
}
