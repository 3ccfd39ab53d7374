/* eval.c — tests of fhir/fhirpath_eval.c: navigation with choice types and primitive
 * extensions, $this/$index, environment variables, errors and caps, the result API. */
#include "tests.h"

#include <json-c/json.h>
#include <string.h>

#include "fhir/fhir.h"

static void fhirpath_eval_navigates_elements(void **state) {
    static const fp_case_t t[] = {
        {"Patient.name.given", "[\"Peter\",\"James\",\"Jim\"]"},
        {"name.given", "[\"Peter\",\"James\",\"Jim\"]"},
        {"name[1].given", "[\"Jim\"]"},
        {"name[5].given", "[]"},
        {"Patient.contact.name.family", "[\"du Marché\"]"},
        {"Patient.birthDate", "[\"1974-12-25\"]"},
        {"Patient.active", "[true]"},
        {"Observation.status", "[]"},
        {"Patient.multipleBirth", "[2]"},
        {"Patient.multipleBirth is Integer", "[false]"},
        {"Patient.multipleBirth is integer", "[true]"},
        {"Patient.multipleBirthInteger", NULL},
        {"Patient.name.given1", NULL},
        {"Patient.birthDate.extension.value", "[\"1974-12-25T14:35:45-05:00\"]"},
        {"Patient.contained.name", "[\"Acme\"]"},
        {"Patient.contained.ofType(Organization).id", "[\"org1\"]"},
    };
    fp_check_table(t, HV_ARRAY_LEN(t), NULL);
}

static void fhirpath_eval_binds_this_and_index(void **state) {
    static const fp_case_t t[] = {
        {"name.where($this.use = 'usual').given", "[\"Jim\"]"},
        {"name.given.select($index)", "[0,1,2]"},
        {"name.select(given.select($index))", "[0,1,0]"},
        {"name.given.where($index = 1)", "[\"James\"]"},
        {"(1 | 2 | 3).aggregate($total + $this, 0)", "[6]"},
        {"name.select(given.where($this = 'Jim'))", "[\"Jim\"]"},
    };
    fp_check_table(t, HV_ARRAY_LEN(t), NULL);
}

static void fhirpath_eval_resolves_environment_variables(void **state) {
    static const fp_case_t t[] = {
        {"%resource.id", "[\"p1\"]"},
        {"%context.gender", "[\"male\"]"},
        {"%ucum", "[\"http://unitsofmeasure.org\"]"},
        {"%`vs-administrative-gender`", "[\"http://hl7.org/fhir/ValueSet/administrative-gender\"]"},
        {"%`ext-patient-birthTime`", "[\"http://hl7.org/fhir/StructureDefinition/patient-birthTime\"]"},
        {"%sct", "[\"http://snomed.info/sct\"]"},
        {"%nope", NULL},
    };
    fp_check_table(t, HV_ARRAY_LEN(t), NULL);
}

static void fhirpath_eval_takes_user_variables(void **state) {
    hv_fhirpath_t *fp = NULL;
    hv_fhirpath_result_t *r = NULL;
    hv_arena_t *a = hv_arena_new(0);
    struct json_object *res = json_tokener_parse(fp_patient_json), *v = json_object_new_string("Jim");
    hv_fhirpath_var_t vars[] = {{"who", v, NULL}};
    hv_fhirpath_env_t env;
    hv_error_t err;
    memset(&env, 0, sizeof(env));
    env.vars = vars;
    env.nvars = 1;
    assert_int_equal(hv_fhirpath_compile("name.where(given = %who).use", 0, NULL, &fp, &err), HV_OK);
    assert_int_equal(hv_fhirpath_eval(fp, res, &env, a, &r, &err), HV_OK);
    assert_int_equal(hv_fhirpath_result_count(r), 1);
    {
        hv_fhirpath_item_t it;
        assert_int_equal(hv_fhirpath_result_item(r, 0, &it), HV_OK);
        assert_int_equal(it.kind, HV_FHIRPATH_NODE);
        assert_string_equal(it.type, "code");
        assert_string_equal(json_object_get_string(it.json), "usual");
    }
    hv_fhirpath_free(fp);
    hv_arena_free(a);
    json_object_put(res);
    json_object_put(v);
}

static void fhirpath_eval_reports_errors(void **state) {
    hv_error_t err;
    assert_null(fp_eval("name.single()", NULL, &err));
    assert_non_null(strstr(err.message, "single()"));
    assert_int_equal(err.column, 6);
    assert_null(fp_eval("name.given + 1", NULL, &err));
    assert_null(fp_eval("'a' - 'b'", NULL, &err));
    assert_null(fp_eval("(1 | 2).not()", NULL, &err));
}

static void fhirpath_eval_caps_collection_size(void **state) {
    hv_fhirpath_limits_t lim = {0, 0, 100, 0};
    hv_fhirpath_t *fp = NULL;
    hv_fhirpath_result_t *r = NULL;
    hv_arena_t *a = hv_arena_new(0);
    hv_error_t err;
    /* 2^7 = 128 items after seven combines */
    const char *x = "1.combine(1).select($this.combine($this)).select($this.combine($this))"
                    ".select($this.combine($this)).select($this.combine($this)).select($this.combine($this))"
                    ".select($this.combine($this)).count()";
    assert_int_equal(hv_fhirpath_compile(x, 0, &lim, &fp, &err), HV_OK);
    assert_int_equal(hv_fhirpath_eval(fp, NULL, NULL, a, &r, &err), HV_ETOOBIG);
    hv_fhirpath_free(fp);
    assert_int_equal(hv_fhirpath_compile(x, 0, NULL, &fp, &err), HV_OK);
    assert_int_equal(hv_fhirpath_eval(fp, NULL, NULL, a, &r, &err), HV_OK);
    assert_int_equal(hv_fhirpath_result_count(r), 1);
    hv_fhirpath_free(fp);
    hv_arena_free(a);
}

static void fhirpath_eval_result_items_have_types_and_text(void **state) {
    hv_fhirpath_t *fp = NULL;
    hv_fhirpath_result_t *r = NULL;
    hv_arena_t *a = hv_arena_new(0);
    hv_error_t err;
    hv_fhirpath_item_t it;
    assert_int_equal(hv_fhirpath_compile("1.5 'mg' | @2014-01-02 | 3 | true | 'x' | 0.10", 0, NULL, &fp, &err), HV_OK);
    assert_int_equal(hv_fhirpath_eval(fp, NULL, NULL, a, &r, &err), HV_OK);
    assert_int_equal(hv_fhirpath_result_count(r), 6);
    assert_int_equal(hv_fhirpath_result_item(r, 0, &it), HV_OK);
    assert_int_equal(it.kind, HV_FHIRPATH_QUANTITY);
    assert_string_equal(it.unit, "mg");
    assert_string_equal(it.text, "1.5 'mg'");
    assert_int_equal(hv_fhirpath_result_item(r, 1, &it), HV_OK);
    assert_int_equal(it.kind, HV_FHIRPATH_DATE);
    assert_string_equal(it.text, "2014-01-02");
    assert_int_equal(hv_fhirpath_result_item(r, 5, &it), HV_OK);
    assert_int_equal(it.kind, HV_FHIRPATH_DECIMAL);
    assert_string_equal(it.text, "0.10");
    assert_string_equal(it.type, "Decimal");
    assert_int_equal(hv_fhirpath_result_item(r, 6, &it), HV_ENOTFOUND);
    hv_fhirpath_free(fp);
    hv_arena_free(a);
}

/* An environment naming the resource's type (hv_fhirpath_env_t.resource_type, which the
 * search index passes so that the type is not looked up on each evaluation) gives the same
 * items, with the same types, as the evaluator's own lookup: type filters, choice
 * elements, primitive extensions, contained resources and type tests all depend on it. */
static void fhirpath_eval_given_resource_type_evaluates_the_same(void **state) {
    static const char *const exprs[] = {
        "Patient.name", "name.given", "Observation.status", "Patient.multipleBirth", "multipleBirth is integer",
        "Patient.birthDate.extension.value", "Patient.contained.ofType(Organization).id", "%resource.active",
        "Patient.contact.name.family | Patient.name.family", "Patient.name.where(given.exists()).family",
    };
    struct json_object *pat = json_tokener_parse(fp_patient_json);
    hv_arena_t *a = hv_arena_new(0);
    hv_fhirpath_env_t env;
    (void)state;
    assert_non_null(pat);
    memset(&env, 0, sizeof(env));
    env.resource_type = hv_fhir_resource_type("Patient");
    assert_non_null(env.resource_type);
    for (size_t i = 0; i < HV_ARRAY_LEN(exprs); i++) {
        hv_fhirpath_t *fp = NULL;
        hv_fhirpath_result_t *plain = NULL, *typed = NULL;
        hv_error_t err;
        hv_buf_t bp, bt;
        hv_buf_init(&bp, 0);
        hv_buf_init(&bt, 0);
        assert_int_equal(hv_fhirpath_compile(exprs[i], 0, NULL, &fp, &err), HV_OK);
        assert_int_equal(hv_fhirpath_eval(fp, pat, NULL, a, &plain, &err), HV_OK);
        assert_int_equal(hv_fhirpath_eval(fp, pat, &env, a, &typed, &err), HV_OK);
        assert_int_equal(hv_fhirpath_result_json(plain, &bp), HV_OK);
        assert_int_equal(hv_fhirpath_result_json(typed, &bt), HV_OK);
        assert_int_equal(hv_buf_putc(&bp, '\0'), HV_OK);
        assert_int_equal(hv_buf_putc(&bt, '\0'), HV_OK);
        assert_string_equal(bt.data, bp.data);
        assert_int_equal(hv_fhirpath_result_count(typed), hv_fhirpath_result_count(plain));
        for (size_t k = 0; k < hv_fhirpath_result_count(plain); k++) {
            hv_fhirpath_item_t ip, it;
            assert_int_equal(hv_fhirpath_result_item(plain, k, &ip), HV_OK);
            assert_int_equal(hv_fhirpath_result_item(typed, k, &it), HV_OK);
            assert_non_null(ip.type);
            assert_non_null(it.type);
            assert_string_equal(it.type, ip.type);
        }
        /* Every expression but Observation.status selects something on the sample. */
        assert_true(strcmp(exprs[i], "Observation.status") == 0 || hv_fhirpath_result_count(plain) > 0);
        hv_buf_release(&bp);
        hv_buf_release(&bt);
        hv_fhirpath_free(fp);
        hv_arena_reset(a);
    }
    json_object_put(pat);
    hv_arena_free(a);
}

/* hv_fhirpath_eval_item gives what "(<from>)[i].select(<expr>)" gives, $this, $index,
 * %resource and %context included, for every item of from; past the last item, nothing. */
static void fhirpath_eval_item_is_select_on_that_item(void **state) {
    static const char *const bases[] = {"Patient.name", "Patient | Patient.contact", "Patient.name.given"};
    static const char *const exprs[] = {"given", "family | given", "$this", "$index", "%resource.gender",
                                        "%context.birthDate", "name.given.first()", "use = 'official'"};
    struct json_object *pat = json_tokener_parse(fp_patient_json);
    hv_arena_t *a = hv_arena_new(0);
    hv_error_t err;
    char text[512];
    (void)state;
    assert_non_null(pat);
    for (size_t b = 0; b < HV_ARRAY_LEN(bases); b++) {
        hv_fhirpath_t *bfp = NULL;
        hv_fhirpath_result_t *from = NULL, *r = NULL;
        size_t n;
        assert_int_equal(hv_fhirpath_compile(bases[b], 0, NULL, &bfp, &err), HV_OK);
        assert_int_equal(hv_fhirpath_eval(bfp, pat, NULL, a, &from, &err), HV_OK);
        n = hv_fhirpath_result_count(from);
        assert_true(n >= 2);
        for (size_t e = 0; e < HV_ARRAY_LEN(exprs); e++) {
            hv_fhirpath_t *efp = NULL, *sfp = NULL;
            assert_int_equal(hv_fhirpath_compile(exprs[e], 0, NULL, &efp, &err), HV_OK);
            for (size_t i = 0; i < n; i++) {
                hv_fhirpath_result_t *want = NULL, *got = NULL;
                hv_buf_t bw, bg;
                int rw, rg;
                snprintf(text, sizeof(text), "(%s)[%zu].select(%s)", bases[b], i, exprs[e]);
                assert_int_equal(hv_fhirpath_compile(text, 0, NULL, &sfp, &err), HV_OK);
                rw = hv_fhirpath_eval(sfp, pat, NULL, a, &want, &err);
                rg = hv_fhirpath_eval_item(efp, from, i, NULL, a, &got, &err);
                assert_int_equal(rg, rw);
                hv_buf_init(&bw, 0);
                hv_buf_init(&bg, 0);
                if (rw == HV_OK) {
                    assert_int_equal(hv_fhirpath_result_json(want, &bw), HV_OK);
                    assert_int_equal(hv_fhirpath_result_json(got, &bg), HV_OK);
                    assert_int_equal(hv_buf_putc(&bw, '\0'), HV_OK);
                    assert_int_equal(hv_buf_putc(&bg, '\0'), HV_OK);
                    assert_string_equal(bg.data, bw.data);
                    for (size_t k = 0; k < hv_fhirpath_result_count(want); k++) {
                        hv_fhirpath_item_t iw, ig;
                        assert_int_equal(hv_fhirpath_result_item(want, k, &iw), HV_OK);
                        assert_int_equal(hv_fhirpath_result_item(got, k, &ig), HV_OK);
                        assert_string_equal(ig.type, iw.type);
                    }
                }
                hv_buf_release(&bw);
                hv_buf_release(&bg);
                hv_fhirpath_free(sfp);
            }
            assert_int_equal(hv_fhirpath_eval_item(efp, from, n, NULL, a, &r, &err), HV_ENOTFOUND);
            hv_fhirpath_free(efp);
        }
        hv_fhirpath_free(bfp);
        hv_arena_reset(a);
    }
    json_object_put(pat);
    hv_arena_free(a);
}

int run_fhirpath_eval_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fhirpath_eval_navigates_elements),
        cmocka_unit_test(fhirpath_eval_binds_this_and_index),
        cmocka_unit_test(fhirpath_eval_resolves_environment_variables),
        cmocka_unit_test(fhirpath_eval_takes_user_variables),
        cmocka_unit_test(fhirpath_eval_reports_errors),
        cmocka_unit_test(fhirpath_eval_caps_collection_size),
        cmocka_unit_test(fhirpath_eval_result_items_have_types_and_text),
        cmocka_unit_test(fhirpath_eval_given_resource_type_evaluates_the_same),
        cmocka_unit_test(fhirpath_eval_item_is_select_on_that_item),
    };
    return cmocka_run_group_tests_name("fhirpath_eval", tests, NULL, NULL);
}
