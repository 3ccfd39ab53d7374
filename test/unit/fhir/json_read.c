/*
 * json_read.c — tests of fhir/json_read.c: the fast reader builds the tree json-c's strict
 * tokener builds, node for node, and leaves to the tokener what it declines.
 */
#include "tests.h"

#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fhir/fhir_int.h"
#include "test/support/json_same_tree.h"

static struct json_object *tokener_tree(const char *text, size_t len, int depth) {
    struct json_tokener *tok = json_tokener_new_ex(depth);
    assert_non_null(tok);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    struct json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    if (json_tokener_get_error(tok) != json_tokener_success) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

/* hv_fhir_json_parse (lenient) of text: the reader's tree when it reads it, the tokener's
 * otherwise; either way the tokener's tree. reads says which path it was. */
static void assert_parses_as_tokener(const char *text, size_t len, int reads) {
    struct json_object *fast = hv__fhir_json_read(text, len, HV_FHIR_DEFAULT_MAX_DEPTH);
    struct json_object *want = tokener_tree(text, len, HV_FHIR_DEFAULT_MAX_DEPTH), *got = NULL;
    hv_fhir_parse_opts_t opts = {.flags = HV_FHIR_PARSE_LENIENT};
    if ((fast != NULL) != reads)
        print_error("%s: the reader %s\n", text, fast != NULL ? "read it" : "declined");
    assert_int_equal(fast != NULL, reads);
    assert_non_null(want);
    assert_int_equal(hv_fhir_json_parse(text, len, &opts, &got, NULL), HV_OK);
    assert_true(hv_test_json_same_tree(got, want));
    if (fast != NULL)
        assert_true(hv_test_json_same_tree(fast, want));
    json_object_put(fast);
    json_object_put(want);
    json_object_put(got);
}

#define DOC(s) {"{\"resourceType\":\"Basic\"," s "}", sizeof("{\"resourceType\":\"Basic\"," s "}") - 1}

static void fhir_json_read_builds_the_tokeners_tree(void **state) {
    (void)state;
    static const struct {
        const char *text;
        size_t len;
    } cases[] = {
        /* "-0" is json-c's integer 0; decimals keep their text; 18 digits stay int64. */
        DOC("\"a\":[0,-0,1,-1,123456789012345678,-123456789012345678,1e5,1E+5,2e-0,-0.0,"
            "0.5e-3,1.50,-1.25E-2,100]"),
        DOC("\"s\":\"a\\u0000b\\n\\t\\\"\\\\\\/\\u00e9\\u20AC\\b\\f\\r\",\"t\":\"caf\xc3\xa9\""),
        /* A duplicate replaces the value in the first one's place, model name or not. */
        DOC("\"a\":1,\"code\":2,\"a\":3,\"code\":[4],\"id\":\"x\",\"id\":null"),
        DOC("\"a\":[],\"b\":{},\"c\":[[],{}],\"d\":[true,false,null],\"\":\"\""),
        {" \r\n\t{ \"resourceType\" : \"Basic\" ,\n    \"a\" : [ 1 , 2 ]\t}\n  ", 0},
        /* More model names in one object than the reader tracks (16). */
        DOC("\"id\":\"1\",\"meta\":{},\"text\":{},\"language\":\"en\",\"extension\":[],"
            "\"modifierExtension\":[],\"identifier\":[],\"code\":{},\"subject\":{},"
            "\"created\":\"2020\",\"author\":{},\"status\":\"x\",\"system\":\"s\","
            "\"display\":\"d\",\"value\":1,\"url\":\"u\",\"reference\":\"r\",\"id\":\"2\","
            "\"code\":{\"text\":\"t\"},\"_status\":{}"),
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++)
        assert_parses_as_tokener(cases[i].text,
                                 cases[i].len > 0 ? cases[i].len : strlen(cases[i].text), 1);
}

/* What the reader declines json-c reads in its own way: the tokener's tree, as before. */
static void fhir_json_read_declines_what_json_c_reads_its_own_way(void **state) {
    (void)state;
    static const char *const cases[] = {
        "{\"resourceType\":\"Basic\",\"a\":[-01]}",                /* json-c: -1 */
        "{\"resourceType\":\"Basic\",\"a\":[1234567890123456789]}", /* 19 digits */
        "{\"resourceType\":\"Basic\",\"a\":[18446744073709551615]}", /* uint64 */
        "{\"resourceType\":\"Basic\",\"a\":[99999999999999999999]}", /* saturates */
        "{\"resourceType\":\"Basic\",\"s\":\"\\ud83d\\ude00\"}",     /* a pair joined */
        "{\"resourceType\":\"Basic\",\"s\":\"\\udc00x\"}",           /* U+FFFD */
        "{\"resourceType\":\"Basic\",\"k\\u0000x\":1}",              /* key cut at the NUL */
        "{\"resourceType\":\"Basic\",\"s\":\"a\x01z\"}",             /* raw control byte */
        /* a decimal over 63 bytes (parenthesized: one literal, not a missing comma) */
        ("{\"resourceType\":\"Basic\",\"a\":0.1234567890123456789012345678901234567890123456789"
         "012345678901234567890}"),
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++)
        assert_parses_as_tokener(cases[i], strlen(cases[i]), 0);
}

/*
 * The reader is the only UTF-8 check of a text it reads (hv_fhir_json_parse checks only what
 * it declines): well-formed sequences of every length, at the bounds of each, are read in
 * values, keys and escaped strings wherever they fall in an 8-byte word; each ill-formed one
 * there is declined, so that hv_fhir_json_parse words the error.
 */
static void fhir_json_read_checks_utf8_in_strings(void **state) {
    (void)state;
    static const char *const good[] = {
        "\xc2\x80",     "\xdf\xbf",         "\xe0\xa0\x80",     "\xed\x9f\xbf", "\xee\x80\x80",
        "\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf", "caf\xc3\xa9",
    };
    static const char *const bad[] = {
        "\xc1\xae",         "\xc0\x80",     "\xe0\x80\xaf",
        "\xf0\x80\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
        "\xf5\x80\x80\x80", "\xff",         "\x80",
        "\xe2\x82",         "\xc3",         "\xf0\x9f\x98",
    };
    /* %s: the sequence; after 0..8 bytes of padding, in a value, a key, an escaped value. */
    static const char *const forms[] = {
        "{\"resourceType\":\"Basic\",\"s\":\"%.*s%s\"}",
        "{\"resourceType\":\"Basic\",\"%.*s%s\":1}",
        "{\"resourceType\":\"Basic\",\"s\":\"%.*s\\n%s\\t\"}",
    };
    char text[128];
    for (size_t f = 0; f < HV_ARRAY_LEN(forms); f++) {
        for (int pad = 0; pad <= 8; pad++) {
            for (size_t i = 0; i < HV_ARRAY_LEN(good); i++) {
                int n = snprintf(text, sizeof(text), forms[f], pad, "abcdefgh", good[i]);
                assert_parses_as_tokener(text, (size_t)n, 1);
            }
            for (size_t i = 0; i < HV_ARRAY_LEN(bad); i++) {
                int n = snprintf(text, sizeof(text), forms[f], pad, "abcdefgh", bad[i]);
                struct json_object *o = hv__fhir_json_read(text, (size_t)n, 16);
                if (o != NULL)
                    print_error("%s: the reader read it\n", text);
                assert_null(o);
            }
        }
    }
}

/* At every depth cap around the nesting, the verdict is json-c's: the same tree, or its
 * depth error. */
static void fhir_json_read_nesting_at_the_depth_cap_is_json_cs(void **state) {
    (void)state;
    for (int nest = 1; nest <= 8; nest++) {
        char text[128];
        size_t n = (size_t)snprintf(text, sizeof(text), "{\"resourceType\":\"Basic\",\"a\":");
        for (int i = 0; i < nest; i++) {
            if (i % 2 == 0)
                text[n++] = '[';
            else
                n += (size_t)snprintf(text + n, sizeof(text) - n, "{\"b\":");
        }
        text[n++] = '1';
        for (int i = nest - 1; i >= 0; i--)
            text[n++] = i % 2 == 0 ? ']' : '}';
        text[n++] = '}';
        for (int depth = 2; depth <= 12; depth++) {
            hv_fhir_parse_opts_t opts = {.max_depth = depth, .flags = HV_FHIR_PARSE_LENIENT};
            struct json_object *want = tokener_tree(text, n, depth), *got = NULL;
            int rc = hv_fhir_json_parse(text, n, &opts, &got, NULL);
            assert_int_equal(rc, want != NULL ? HV_OK : HV_ETOOBIG);
            if (want != NULL)
                assert_true(hv_test_json_same_tree(got, want));
            json_object_put(want);
            json_object_put(got);
        }
    }
}

/* Keys that are the model's names are json-c's constant keys: they come off, go back,
 * copy and compare as any key does. */
static void fhir_json_read_model_keys_behave_as_keys(void **state) {
    (void)state;
    static const char text[] =
        "{\"resourceType\":\"Patient\",\"id\":\"p\",\"birthDate\":\"2000-01-01\",\"x-own\":1}";
    struct json_object *o = hv__fhir_json_read(text, sizeof(text) - 1, HV_FHIR_DEFAULT_MAX_DEPTH);
    struct json_object *want = tokener_tree(text, sizeof(text) - 1, HV_FHIR_DEFAULT_MAX_DEPTH);
    assert_non_null(o);
    struct json_object *copy = NULL;
    assert_int_equal(json_object_deep_copy(o, &copy, NULL), 0);
    assert_true(hv_test_json_same_tree(copy, want));
    json_object_object_del(o, "birthDate");
    json_object_object_del(o, "x-own");
    assert_int_equal(json_object_object_length(o), 2);
    json_object_object_add(o, "birthDate", json_object_new_string("2000-01-01"));
    json_object_object_add(o, "x-own", json_object_new_int(1));
    assert_true(hv_test_json_same_tree(o, want));
    assert_true(hv_fhir_json_equal(copy, o));
    json_object_put(copy);
    json_object_put(o);
    json_object_put(want);
}

/* Every decimal without exponent reads as json-c's tokener reads it, to the bit: the reader
 * divides the digits by a power of ten where that is exact (decimal_fast) and calls strtod
 * otherwise. Decimals of 1 to 22 digits, at the bounds of the division's range (2^53, 19
 * digits, 10^-22) and pseudo-random ones, negative ones among them. */
static void fhir_json_read_decimals_are_the_tokeners(void **state) {
    static const char *const edges[] = {
        "9007199254740992.0", "9007199254740993.0", "900719925474099.3", "900719925474099.5",
        "0.9007199254740993", "1234567890123456789.0", "0.1234567890123456789", "0.0000000000000000000001",
        "0.00000000000000000000001", "-0.0", "0.0", "82.38483958302345", "98.6", "0.1", "0.3",
        "1.7976931348623157", "4.9406564584124654", "2.2250738585072014", "123.456", "-1.5",
        "0.000000000000000000000000000000000001", "10000000000000000000000.1"};
    char text[40000];
    uint64_t x = 88172645463325252u;
    (void)state;
    for (int round = 0; round < 40; round++) {
        size_t n = (size_t)snprintf(text, sizeof(text), "{\"resourceType\":\"Basic\",\"a\":[");
        for (int k = 0; k < 500; k++) {
            char num[64];
            size_t w = 0;
            if (round == 0 && k < (int)HV_ARRAY_LEN(edges)) {
                w = (size_t)snprintf(num, sizeof(num), "%s", edges[k]);
            } else {
                int nint, nfrac;
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                nint = (int)(x % 12);
                nfrac = 1 + (int)((x >> 8) % 22);
                if ((x >> 20) % 5 == 0)
                    num[w++] = '-';
                if (nint == 0)
                    num[w++] = '0';
                for (int d = 0; d < nint; d++) {
                    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                    num[w++] = (char)('0' + (d == 0 ? 1 + x % 9 : x % 10));
                }
                num[w++] = '.';
                for (int d = 0; d < nfrac; d++) {
                    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                    num[w++] = (char)('0' + x % 10);
                }
                num[w] = '\0';
            }
            n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%s", k > 0 ? "," : "", num);
        }
        n += (size_t)snprintf(text + n, sizeof(text) - n, "]}");
        assert_true(n < sizeof(text));
        assert_parses_as_tokener(text, n, 1);
    }
}

/* The model's names the reader files under their hash computed once per process are found
 * by json-c's own look-ups (hashing the name again), in small and in large objects. */
static void fhir_json_read_model_keys_are_found_by_json_c(void **state) {
    static const char text[] =
        "{\"resourceType\":\"Observation\",\"id\":\"1\",\"meta\":{\"versionId\":\"1\"},"
        "\"text\":{},\"language\":\"en\",\"extension\":[],\"modifierExtension\":[],"
        "\"identifier\":[],\"code\":{},\"subject\":{},\"issued\":\"2020\",\"performer\":[],"
        "\"status\":\"x\",\"category\":[],\"focus\":[],\"valueString\":\"v\",\"note\":[],"
        "\"method\":{},\"device\":{},\"id\":\"2\",\"x-own\":3}";
    static const char *const names[] = {"resourceType", "id", "meta", "text", "language", "extension",
                                        "identifier", "code", "subject", "issued", "status", "focus",
                                        "valueString", "note", "method", "device", "x-own"};
    struct json_object *o = hv__fhir_json_read(text, sizeof(text) - 1, HV_FHIR_DEFAULT_MAX_DEPTH), *v = NULL;
    (void)state;
    assert_non_null(o);
    for (size_t i = 0; i < HV_ARRAY_LEN(names); i++)
        assert_true(json_object_object_get_ex(o, names[i], NULL));
    assert_true(json_object_object_get_ex(o, "id", &v));
    assert_string_equal(json_object_get_string(v), "2");
    assert_true(json_object_object_get_ex(o, "meta", &v));
    assert_true(json_object_object_get_ex(v, "versionId", NULL));
    assert_false(json_object_object_get_ex(o, "effectiveDateTime", NULL));
    json_object_object_del(o, "status");
    assert_false(json_object_object_get_ex(o, "status", NULL));
    json_object_put(o);
}

int run_json_read_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fhir_json_read_builds_the_tokeners_tree),
        cmocka_unit_test(fhir_json_read_declines_what_json_c_reads_its_own_way),
        cmocka_unit_test(fhir_json_read_nesting_at_the_depth_cap_is_json_cs),
        cmocka_unit_test(fhir_json_read_model_keys_behave_as_keys),
        cmocka_unit_test(fhir_json_read_checks_utf8_in_strings),
        cmocka_unit_test(fhir_json_read_decimals_are_the_tokeners),
        cmocka_unit_test(fhir_json_read_model_keys_are_found_by_json_c),
    };
    return cmocka_run_group_tests_name("fhir_json_read", tests, NULL, NULL);
}
