/* strfn.c — tests of fhir/fhirpath_strfn.c: string, math and conversion functions and the
 * 2.1 boundary functions. */
#include "tests.h"

static void fhirpath_strfn_strings(void **state) {
    static const fp_case_t t[] = {
        {"'abcdefg'.indexOf('bc')", "[1]"},
        {"'abcdefg'.indexOf('x')", "[-1]"},
        {"'abcabc'.lastIndexOf('bc')", "[4]"},
        {"'abcdefg'.substring(3)", "[\"defg\"]"},
        {"'abcdefg'.substring(1, 2)", "[\"bc\"]"},
        {"'abcdefg'.substring(7)", "[]"},
        {"'abc'.startsWith('ab')", "[true]"},
        {"'abc'.endsWith('bc')", "[true]"},
        {"'abc'.contains('d')", "[false]"},
        {"'aBc'.upper() & 'aBc'.lower()", "[\"ABCabc\"]"},
        {"'abc'.replace('b', 'xx')", "[\"axxc\"]"},
        {"'abc'.replace('', 'x')", "[\"xaxbxcx\"]"},
        {"'2023-01-05'.matches('\\\\d{4}-\\\\d{2}')", "[true]"},
        {"'abc'.matchesFull('b')", "[false]"},
        {"'a1b22'.replaceMatches('[0-9]+', '#')", "[\"a#b#\"]"},
        {"'John Smith'.replaceMatches('(\\\\w+) (\\\\w+)', '$2, $1')", "[\"Smith, John\"]"},
        {"'abc'.length()", "[3]"},
        {"'ab'.toChars()", "[\"a\",\"b\"]"},
        {"'a,,b'.split(',')", "[\"a\",\"\",\"b\"]"},
        {"name.given.join('+')", "[\"Peter+James+Jim\"]"},
        {"'  a b  '.trim()", "[\"a b\"]"},
        {"'test'.encode('base64')", "[\"dGVzdA==\"]"},
        {"'dGVzdA=='.decode('base64')", "[\"test\"]"},
        {"'test'.encode('hex')", "[\"74657374\"]"},
        {"'<a>'.escape('html')", "[\"&lt;a&gt;\"]"},
        {"'&lt;a&gt;'.unescape('html')", "[\"<a>\"]"},
        {"name.startsWith('x')", NULL},
        {"{}.upper()", "[]"},
        {"'Marché'.length()", "[6]"},
        {"'Marché x'.indexOf('x')", "[7]"},
        {"'éa'.lastIndexOf('a')", "[1]"},
        {"'Marché'.substring(4, 2)", "[\"hé\"]"},
        {"'hé'.toChars()", "[\"h\",\"é\"]"},
        /* Patterns regcomp would expand into gigabytes are refused (hv_regex_too_costly):
         * stacked quantifiers (libFuzzer's out-of-memory input, session 20) and counts. */
        {"'library'.matches('library++++++++++++++++++++++++++++')", NULL},
        {"'aa'.matches('a{1000}{1000}')", NULL},
        {"'a'.matches('((a{200}){200}){200}')", NULL},
        {"'aaa'.matches('(a+)+')", "[true]"},
        {"'+*'.matchesFull('[+*]+')", "[true]"},
        {"'a]b'.matchesFull('a[]]b')", "[true]"},
    };
    fp_check_table(t, HV_ARRAY_LEN(t), NULL);
}

static void fhirpath_strfn_math(void **state) {
    static const fp_case_t t[] = {
        {"(-5).abs()", "[5]"},
        {"(-5.5 'mg').abs()", "[{\"value\":5.5,\"unit\":\"mg\"}]"},
        {"1.1.ceiling()", "[2]"},
        {"(-1.1).ceiling()", "[-1]"},
        {"(-1.1).floor()", "[-2]"},
        {"3.14159.round(3)", "[3.142]"},
        {"(-1.56).truncate()", "[-1]"},
        {"81.sqrt()", "[9]"},
        {"(-1).sqrt()", "[]"},
        {"0.exp()", "[1]"},
        {"1.ln()", "[0]"},
        {"100.log(10)", "[2]"},
        {"2.power(10)", "[1024]"},
        {"2.5.power(2)", "[6.25]"},
        {"'a'.abs()", NULL},
    };
    fp_check_table(t, HV_ARRAY_LEN(t), NULL);
}

static void fhirpath_strfn_conversions(void **state) {
    static const fp_case_t t[] = {
        {"'yes'.toBoolean()", "[true]"},
        {"'maybe'.convertsToBoolean()", "[false]"},
        {"'-12'.toInteger()", "[-12]"},
        {"'1.5'.toInteger()", "[]"},
        {"true.toInteger()", "[1]"},
        {"'1.50'.toDecimal()", "[1.50]"},
        {"1.toDecimal()", "[1]"},
        {"1.5.toString()", "[\"1.5\"]"},
        {"@2014-01-01.toString()", "[\"2014-01-01\"]"},
        {"5 'mg'.toString()", "[\"5 'mg'\"]"},
        {"'2014-01-01T10:00:00Z'.toDateTime()", "[\"2014-01-01T10:00:00Z\"]"},
        {"'2014-01-01T10:00:00Z'.toDate()", "[\"2014-01-01\"]"},
        {"'14:30'.toTime()", "[\"14:30\"]"},
        {"'2014-13-01'.convertsToDate()", "[false]"},
        {"'5.5 \\'mg\\''.toQuantity()", "[{\"value\":5.5,\"unit\":\"mg\"}]"},
        {"'4 days'.toQuantity()", "[{\"value\":4,\"unit\":\"days\"}]"},
        {"1000 'mg'.toQuantity('g')", "[{\"value\":1,\"unit\":\"g\"}]"},
        {"5 'mg'.convertsToQuantity('mL')", "[false]"},
        {"(1 | 2).toInteger()", NULL},
    };
    fp_check_table(t, HV_ARRAY_LEN(t), NULL);
}

static void fhirpath_strfn_boundaries(void **state) {
    static const fp_case_t t[] = {
        {"1.587.lowBoundary()", "[1.58650000]"},
        {"1.587.highBoundary(2)", "[1.59]"},
        {"(-1.587).lowBoundary(2)", "[-1.59]"},
        {"1.lowBoundary(0)", "[0]"},
        {"@2014.lowBoundary(6)", "[\"2014-01\"]"},
        {"@2014-02.highBoundary(8)", "[\"2014-02-28\"]"},
        {"@2014-01-01T08:05+08:00.lowBoundary(17)", "[\"2014-01-01T08:05:00.000+08:00\"]"},
        {"@T10:30.highBoundary(9)", "[\"10:30:59.999\"]"},
        {"1.587.lowBoundary(-1)", "[]"},
        {"1.587.precision()", "[3]"},
        {"@2014-01-05T10:30:00.000.precision()", "[17]"},
        {"1 'cm'.comparable(1 '[in_i]')", "[true]"},
        {"1 'cm'.comparable(1 's')", "[false]"},
    };
    fp_check_table(t, HV_ARRAY_LEN(t), NULL);
}

int run_fhirpath_strfn_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fhirpath_strfn_strings),
        cmocka_unit_test(fhirpath_strfn_math),
        cmocka_unit_test(fhirpath_strfn_conversions),
        cmocka_unit_test(fhirpath_strfn_boundaries),
    };
    return cmocka_run_group_tests_name("fhirpath_strfn", tests, NULL, NULL);
}
