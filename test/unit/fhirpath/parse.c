/* parse.c — tests of fhir/fhirpath_lex.c and fhir/fhirpath_parse.c: syntax errors with
 * their column, precedence, literals, printing back, and the caps. */
#include "tests.h"

#include <json-c/json.h>
#include <string.h>

#include "fhir/fhirpath_int.h"

static void expect_syntax_error(const char *expr, int column, const char *words) {
    hv_fhirpath_t *fp = NULL;
    hv_error_t err;
    hv_error_clear(&err);
    assert_int_equal(hv_fhirpath_compile(expr, 0, NULL, &fp, &err), HV_EPROTO);
    assert_null(fp);
    if (err.column != column || strstr(err.message, words) == NULL)
        fprintf(stderr, "  %s: column %d, message %s\n", expr, err.column, err.message);
    assert_int_equal(err.column, column);
    assert_non_null(strstr(err.message, words));
}

static void fhirpath_parse_reports_column_of_syntax_errors(void **state) {
    expect_syntax_error("2 + 2 /", 8, "end of input");
    expect_syntax_error("2 + 2 /* not finished", 7, "unterminated comment");
    expect_syntax_error("name.given.", 12, "expected a name");
    expect_syntax_error("name.where(use = 'x'", 21, "expected ')'");
    expect_syntax_error("'abc", 1, "unterminated string");
    expect_syntax_error("name.frobnicate()", 6, "unknown function 'frobnicate'");
    expect_syntax_error("name.where()", 6, "wrong number of arguments");
    expect_syntax_error("1 +* 2", 4, "expected an expression");
    expect_syntax_error("name ]", 6, "unexpected");
    expect_syntax_error("@T14:34:28Z", 1, "invalid date/time literal");
    expect_syntax_error("$foo", 1, "unknown special variable");
    expect_syntax_error("a\n  .#", 4, "unexpected character");
}

static void fhirpath_parse_prints_canonical_text(void **state) {
    static const struct {
        const char *in, *out;
    } t[] = {
        {"1 + 2 * 3", "(1 + (2 * 3))"},
        {"(1 + 2) * 3", "((1 + 2) * 3)"},
        {"a or b and c implies d", "((`a` or (`b` and `c`)) implies `d`)"},
        {"Patient.name.where(use = 'official').given", "`Patient`.`name`.where((`use` = 'official')).`given`"},
        {"-1.convertsToInteger()", "-(1.convertsToInteger())"},
        {"x is FHIR.Quantity", "(`x` is `FHIR`.`Quantity`)"},
        {"@2015-02-04T14:34:28.123+10:00", "@2015-02-04T14:34:28.123+10:00"},
        {"@2015T", "@2015T"},
        {"7 days + 1 'mg'", "(7 'days' + 1 'mg')"},
        {"'it''s'.length()", "'it'.length()"},
        {"%`vs-x` | $this[0]", "(%`vs-x` | $this[0])"},
        {"'a\\nb\\u0041'", "'a\\nbA'"},
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(t); i++) {
        hv_fhirpath_t *fp = NULL;
        hv_error_t err;
        hv_buf_t b;
        hv_buf_init(&b, 0);
        if (hv_fhirpath_compile(t[i].in, 0, NULL, &fp, &err) != HV_OK) {
            /* 'it''s' is not FHIRPath quoting: the parser must stop at the second string */
            assert_string_equal(t[i].in, "'it''s'.length()");
            continue;
        }
        assert_int_equal(hv_fhirpath_print(fp, &b), HV_OK);
        if (strcmp(b.data, t[i].out) != 0) fprintf(stderr, "  %s printed %s\n", t[i].in, b.data);
        assert_string_equal(b.data, t[i].out);
        hv_buf_release(&b);
        hv_fhirpath_free(fp);
    }
}

static void fhirpath_parse_caps_length_and_depth(void **state) {
    hv_fhirpath_limits_t lim = {16, 10, 0, 0};
    hv_fhirpath_t *fp = NULL;
    hv_error_t err;
    char deep[400];
    assert_int_equal(hv_fhirpath_compile("name.given.first().length()", 0, &lim, &fp, &err), HV_ETOOBIG);
    lim.max_expression = 0;
    memset(deep, '(', 50);
    strcpy(deep + 50, "1");
    memset(deep + 51, ')', 50);
    deep[101] = '\0';
    assert_int_equal(hv_fhirpath_compile(deep, 0, &lim, &fp, &err), HV_EPROTO);
    assert_non_null(strstr(err.message, "nested too deeply"));
    assert_int_equal(hv_fhirpath_compile(deep, 0, NULL, &fp, &err), HV_OK);
    hv_fhirpath_free(fp);
}

static void fhirpath_parse_keeps_literal_types(void **state) {
    static const fp_case_t t[] = {
        {"1", "[1]"},
        {"1.50", "[1.50]"},
        {"2147483648L", "[2147483648]"},
        {"'a\\'b'", "[\"a'b\"]"},
        {"@2014-01", "[\"2014-01\"]"},
        {"@T10:30", "[\"10:30\"]"},
        {"5.5 'mg'", "[{\"value\":5.5,\"unit\":\"mg\"}]"},
        {"{}", "[]"},
        {"`given`", "[]"},
        {"2147483648", NULL},
    };
    hv_fhirpath_t *fp = NULL;
    hv_error_t err;
    fp_check_table(t, HV_ARRAY_LEN(t) - 1, "{}");
    assert_int_equal(hv_fhirpath_compile(t[HV_ARRAY_LEN(t) - 1].expr, 0, NULL, &fp, &err), HV_EPROTO);
}

static void fhirpath_parse_strict_mode_checks_statically(void **state) {
    hv_fhirpath_limits_t strict = {0, 0, 0, HV_FHIRPATH_STRICT};
    static const struct {
        const char *expr;
        int ok_lenient, ok_strict;
    } t[] = {
        {"(Observation.value as Period).unit", 1, 0},
        {"(Observation.value as Quantity).unit", 1, 1},
        {"Observation.value.as(Period).unit", 1, 0},
        {"Patient.children().skip(1)", 1, 0},
        {"Patient.descendants()[0]", 1, 0},
        {"Patient.children().count()", 1, 1},
        {"Patient.name.skip(1)", 1, 1},
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(t); i++) {
        hv_fhirpath_t *fp = NULL;
        hv_error_t err;
        int a = hv_fhirpath_compile(t[i].expr, 0, NULL, &fp, &err) == HV_OK;
        hv_fhirpath_free(fp);
        fp = NULL;
        int b = hv_fhirpath_compile(t[i].expr, 0, &strict, &fp, &err) == HV_OK;
        hv_fhirpath_free(fp);
        if (a != t[i].ok_lenient || b != t[i].ok_strict) fprintf(stderr, "  %s: lenient %d strict %d\n", t[i].expr, a, b);
        assert_int_equal(a, t[i].ok_lenient);
        assert_int_equal(b, t[i].ok_strict);
    }
}

static void fhirpath_eval_strict_mode_refuses_another_resource_type(void **state) {
    hv_fhirpath_limits_t strict = {0, 0, 0, HV_FHIRPATH_STRICT};
    hv_fhirpath_t *fp = NULL;
    hv_fhirpath_result_t *r = NULL;
    hv_arena_t *a = hv_arena_new(0);
    struct json_object *res = json_tokener_parse(fp_patient_json);
    hv_error_t err;
    assert_int_equal(hv_fhirpath_compile("Encounter.status", 0, NULL, &fp, &err), HV_OK);
    assert_int_equal(hv_fhirpath_eval(fp, res, NULL, a, &r, &err), HV_OK);
    assert_int_equal(hv_fhirpath_result_count(r), 0);
    hv_fhirpath_free(fp);
    assert_int_equal(hv_fhirpath_compile("Encounter.status", 0, &strict, &fp, &err), HV_OK);
    assert_int_equal(hv_fhirpath_eval(fp, res, NULL, a, &r, &err), HV_EINVAL);
    assert_non_null(strstr(err.message, "Encounter"));
    hv_fhirpath_free(fp);
    hv_arena_free(a);
    json_object_put(res);
}

int run_fhirpath_parse_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fhirpath_parse_reports_column_of_syntax_errors),
        cmocka_unit_test(fhirpath_parse_prints_canonical_text),
        cmocka_unit_test(fhirpath_parse_caps_length_and_depth),
        cmocka_unit_test(fhirpath_parse_keeps_literal_types),
        cmocka_unit_test(fhirpath_parse_strict_mode_checks_statically),
        cmocka_unit_test(fhirpath_eval_strict_mode_refuses_another_resource_type),
    };
    return cmocka_run_group_tests_name("fhirpath_parse", tests, NULL, NULL);
}
