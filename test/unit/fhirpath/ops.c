/* ops.c — tests of fhir/fhirpath_ops.c and fhir/fhirpath_value.c: three-valued logic,
 * equality and equivalence, comparison with precision, exact decimal arithmetic,
 * date/time arithmetic, quantities (calendar durations and UCUM), collections. */
#include "tests.h"

static void fhirpath_ops_three_valued_logic(void **state) {
    static const fp_case_t t[] = {
        {"true and {}", "[]"},   {"false and {}", "[false]"}, {"true or {}", "[true]"},
        {"false or {}", "[]"},   {"{} implies true", "[true]"}, {"false implies {}", "[true]"},
        {"true implies {}", "[]"}, {"true xor false", "[true]"}, {"true xor {}", "[]"},
        {"(1 | 2) and true", NULL},
    };
    fp_check_table(t, HV_ARRAY_LEN(t), "{}");
}

static void fhirpath_ops_equality_and_equivalence(void **state) {
    static const fp_case_t t[] = {
        {"1 = 1.0", "[true]"},
        {"'a' = 'A'", "[false]"},
        {"'a' ~ 'A'", "[true]"},
        {"'a  b' ~ 'A B'", "[true]"},
        {"{} = 1", "[]"},
        {"{} ~ {}", "[true]"},
        {"(1 | 2) = (1 | 2)", "[true]"},
        {"(1 | 2) = (2 | 1)", "[false]"},
        {"(1 | 2) ~ (2 | 1)", "[true]"},
        {"1.2 / 1.8 ~ 0.67", "[true]"},
        {"@2012-04-15 = @2012-04-15T10:00:00", "[]"},
        {"@2012-04-15T15:00:00+02:00 = @2012-04-15T13:00:00Z", "[true]"},
        {"@2012-04 ~ @2012-04-15", "[false]"},
        {"name = name", "[true]"},
        {"name[0] = name[1]", "[false]"},
        {"1 != 2", "[true]"},
        {"'a' !~ 'B'", "[true]"},
    };
    fp_check_table(t, HV_ARRAY_LEN(t), NULL);
}

static void fhirpath_ops_comparison_with_precision(void **state) {
    static const fp_case_t t[] = {
        {"1 < 1.5", "[true]"},
        {"'abc' < 'abd'", "[true]"},
        {"@2014 < @2015-01-01", "[true]"},
        {"@2015 < @2015-01-01", "[]"},
        {"@T10:30 > @T10:29:59", "[true]"},
        {"birthDate < @2000-01-01", "[true]"},
        {"1 < 'a'", NULL},
        {"5 'mg' < 1 'g'", "[true]"},
        {"1 'a' < 1 year", NULL},
    };
    fp_check_table(t, HV_ARRAY_LEN(t), NULL);
}

static void fhirpath_ops_arithmetic_is_exact(void **state) {
    static const fp_case_t t[] = {
        {"0.1 + 0.2", "[0.3]"},
        {"0.1 + 0.2 = 0.3", "[true]"},
        {"1.10 * 2", "[2.20]"},
        {"7 / 2", "[3.5]"},
        {"1 / 3", "[0.33333333]"},
        {"7 div 2", "[3]"},
        {"7 mod 2", "[1]"},
        {"5.5 mod 2", "[1.5]"},
        {"1 / 0", "[]"},
        {"2147483647 + 1", "[2147483648]"},
        {"'a' + 'b'", "[\"ab\"]"},
        {"'a' & {}", "[\"a\"]"},
        {"-(3)", "[-3]"},
        {"2.0 'cm' * 2.0 'm' = 0.040 'm2'", "[true]"},
        {"4 'g' / 2 'g'", "[{\"value\":2,\"unit\":\"1\"}]"},
    };
    fp_check_table(t, HV_ARRAY_LEN(t), "{}");
}

static void fhirpath_ops_date_arithmetic(void **state) {
    static const fp_case_t t[] = {
        {"@2014-01-31 + 1 month", "[\"2014-02-28\"]"},
        {"@2016-02-29 + 1 year", "[\"2017-02-28\"]"},
        {"@2014-01-01 - 1 day", "[\"2013-12-31\"]"},
        {"@2014-01-01T23:30:00Z + 1 hour", "[\"2014-01-02T00:30:00Z\"]"},
        {"@T23:30 + 1 hour", "[\"00:30\"]"},
        {"@2014-01-01 + 7.9 days", "[\"2014-01-08\"]"},
        {"@2014-01-01 + 2 weeks", "[\"2014-01-15\"]"},
        {"@2014-01-01 + 1 'wk'", "[\"2014-01-08\"]"},
        {"@2014-01-01 + 1 'a'", NULL},
        {"@2014-01-01 + 1 'cm'", NULL},
        {"7 days = 1 week", "[true]"},
        {"1 year = 12 months", "[]"},
        {"4 'g' = 4000 'mg'", "[true]"},
        {"4 'g' ~ 4040 'mg'", "[true]"},
    };
    fp_check_table(t, HV_ARRAY_LEN(t), "{}");
}

static void fhirpath_ops_collections(void **state) {
    static const fp_case_t t[] = {
        {"(1 | 2 | 2 | 3).count()", "[3]"},
        {"2 in (1 | 2)", "[true]"},
        {"(1 | 2) contains 3", "[false]"},
        {"{} in (1 | 2)", "[]"},
        {"(1 | 2) in (1 | 2)", NULL},
        {"name.given | name.family", "[\"Peter\",\"James\",\"Jim\",\"Chalmers\"]"},
    };
    fp_check_table(t, HV_ARRAY_LEN(t), NULL);
}

int run_fhirpath_ops_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fhirpath_ops_three_valued_logic),
        cmocka_unit_test(fhirpath_ops_equality_and_equivalence),
        cmocka_unit_test(fhirpath_ops_comparison_with_precision),
        cmocka_unit_test(fhirpath_ops_arithmetic_is_exact),
        cmocka_unit_test(fhirpath_ops_date_arithmetic),
        cmocka_unit_test(fhirpath_ops_collections),
    };
    return cmocka_run_group_tests_name("fhirpath_ops", tests, NULL, NULL);
}
