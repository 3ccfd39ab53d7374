/* json.c — tests of fhir/json.c: FHIR JSON parsing, ordered writing, exact decimals. */
#include "tests.h"

#include <json-c/json.h>
#include <string.h>

static struct json_object *parse_ok(const char *text) {
    struct json_object *o = NULL;
    hv_error_t err;
    hv_error_clear(&err);
    int rc = hv_fhir_json_parse(text, strlen(text), NULL, &o, &err);
    if (rc != HV_OK)
        print_error("parse failed: %s at %s %d:%d\n", err.message, err.location, err.line,
                    err.column);
    assert_int_equal(rc, HV_OK);
    return o;
}

static char *write_str(struct json_object *o, unsigned flags) {
    hv_buf_t b;
    hv_buf_init(&b, 0);
    assert_int_equal(hv_fhir_json_write(o, flags, &b), HV_OK);
    return hv_buf_take(&b);
}

static void fhir_json_keeps_decimal_text(void **state) {
    (void)state;
    struct json_object *o =
        parse_ok("{\"resourceType\":\"Observation\",\"status\":\"final\","
                 "\"code\":{\"text\":\"x\"},\"valueQuantity\":{\"value\":1.50}}");
    char *s = write_str(o, 0);
    assert_non_null(strstr(s, "\"value\":1.50"));
    struct json_object *q = json_object_object_get(o, "valueQuantity");
    assert_string_equal(hv_fhir_json_number_text(json_object_object_get(q, "value")), "1.50");
    hv_free(s);
    json_object_put(o);
}

static void fhir_json_writes_in_specification_order(void **state) {
    (void)state;
    struct json_object *o = parse_ok(
        "{\"gender\":\"male\",\"_birthDate\":{\"extension\":[{\"valueString\":\"x\",\"url\":\"u\"}]"
        "},"
        "\"birthDate\":\"1970\",\"id\":\"a\",\"resourceType\":\"Patient\",\"active\":true}");
    char *s = write_str(o, 0);
    assert_string_equal(
        s, "{\"resourceType\":\"Patient\",\"id\":\"a\",\"active\":true,\"gender\":\"male\","
           "\"birthDate\":\"1970\",\"_birthDate\":{\"extension\":[{\"url\":\"u\","
           "\"valueString\":\"x\"}]}}");
    hv_free(s);
    json_object_put(o);
}

static void fhir_json_pretty_indents_two_spaces(void **state) {
    (void)state;
    struct json_object *o =
        parse_ok("{\"resourceType\":\"Patient\",\"name\":[{\"given\":[\"A\"]}]}");
    char *s = write_str(o, HV_FHIR_WRITE_PRETTY);
    assert_string_equal(
        s, "{\n  \"resourceType\": \"Patient\",\n  \"name\": [\n    {\n      \"given\": [\n"
           "        \"A\"\n      ]\n    }\n  ]\n}");
    hv_free(s);
    json_object_put(o);
}

static void fhir_json_orders_contained_and_bundle_resources(void **state) {
    (void)state;
    struct json_object *o = parse_ok(
        "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[{\"resource\":"
        "{\"gender\":\"other\",\"resourceType\":\"Patient\",\"contained\":[{\"name\":\"n\","
        "\"resourceType\":\"Organization\",\"id\":\"o\"}]},\"fullUrl\":\"urn:x\"}]}");
    char *s = write_str(o, 0);
    assert_string_equal(
        s, "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[{\"fullUrl\":"
           "\"urn:x\",\"resource\":{\"resourceType\":\"Patient\",\"contained\":[{"
           "\"resourceType\":\"Organization\",\"id\":\"o\",\"name\":\"n\"}],"
           "\"gender\":\"other\"}}]}");
    hv_free(s);
    json_object_put(o);
}

static void fhir_json_reports_syntax_errors_with_position(void **state) {
    (void)state;
    static const struct {
        const char *text;
        int line, column;
    } cases[] = {
        {"{\"resourceType\":\"Patient\",\n  \"id\": x}", 2, 9},
        {"{\"resourceType\":\"Patient\",}", 1, 27},
        {"{\"resourceType\":\"Patient\" // c\n}", 1, 27},
        {"{\"resourceType\":\"Patient\"", 1, 26},
        {"{\"resourceType\":\"Patient\"} x", 1, 28},
        {"{\"resourceType\":\"Patient\",\n\"id\":\"a\xc1\xae\"}", 2, 8},
        {"{\"resourceType\":\"Patient\",\"id\":\"\xed\xa0\x80\"}", 1, 33},
        {"{\"resourceType\":\"Patient\",\"id\":\"\xe2\x82\"}", 1, 33},
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++) {
        struct json_object *o = NULL;
        hv_error_t err;
        hv_error_clear(&err);
        assert_int_equal(hv_fhir_json_parse(cases[i].text, strlen(cases[i].text), NULL, &o, &err),
                         HV_EPROTO);
        assert_null(o);
        assert_int_equal(err.line, cases[i].line);
        assert_int_equal(err.column, cases[i].column);
    }
}

static void fhir_json_reports_content_errors_with_path(void **state) {
    (void)state;
    static const struct {
        const char *text;
        const char *location;
    } cases[] = {
        {"{\"resourceType\":\"Patient\",\"name\":[{\"given\":[\"a\",\"b\"],\"x\":1}]}",
         "Patient.name[0].x"},
        {"{\"resourceType\":\"Patient\",\"name\":{\"family\":\"a\"}}", "Patient.name"},
        {"{\"resourceType\":\"Patient\",\"active\":\"true\"}", "Patient.active"},
        {"{\"resourceType\":\"Patient\",\"gender\":[\"male\"]}", "Patient.gender"},
        {"{\"resourceType\":\"Observation\",\"valueFoo\":1}", "Observation.valueFoo"},
        {"{\"resourceType\":\"Patient\",\"_gender\":\"x\"}", "Patient.gender"},
        {"{\"resourceType\":\"Patient\",\"contained\":[{\"resourceType\":\"Nope\"}]}",
         "Patient.contained[0]"},
        {"{\"resourceType\":\"Patient\",\"multipleBirthInteger\":1.5}",
         "Patient.multipleBirthInteger"},
        {"{\"resourceType\":\"Observation\",\"valueQuantity\":{\"value\":040e25}}",
         "Observation.valueQuantity.value"},
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++) {
        struct json_object *o = NULL;
        hv_error_t err;
        hv_error_clear(&err);
        assert_int_equal(hv_fhir_json_parse(cases[i].text, strlen(cases[i].text), NULL, &o, &err),
                         HV_EINVAL);
        assert_null(o);
        assert_string_equal(err.location, cases[i].location);
    }
    /* Lenient parsing accepts the same documents. */
    struct json_object *o = NULL;
    hv_fhir_parse_opts_t opts = {.flags = HV_FHIR_PARSE_LENIENT};
    assert_int_equal(hv_fhir_json_parse(cases[0].text, strlen(cases[0].text), &opts, &o, NULL),
                     HV_OK);
    json_object_put(o);
}

static void fhir_json_refuses_unknown_types_and_non_objects(void **state) {
    (void)state;
    static const char *const bad[] = {"[1]", "{\"id\":\"x\"}", "{\"resourceType\":\"Foo\"}",
                                      "{\"resourceType\":\"HumanName\"}", "\"Patient\""};
    for (size_t i = 0; i < HV_ARRAY_LEN(bad); i++) {
        struct json_object *o = NULL;
        assert_int_equal(hv_fhir_json_parse(bad[i], strlen(bad[i]), NULL, &o, NULL), HV_EINVAL);
    }
}

static void fhir_json_caps_depth_and_size(void **state) {
    (void)state;
    char deep[4096];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof(deep),
                          "{\"resourceType\":\"Questionnaire\",\"status\":\"draft\"");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(deep + n, sizeof(deep) - n,
                              ",\"item\":[{\"linkId\":\"a\",\"type\":\"group\"");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "}]");
    snprintf(deep + n, sizeof(deep) - n, "}");
    struct json_object *o = NULL;
    hv_fhir_parse_opts_t opts = {.max_depth = 50};
    assert_int_equal(hv_fhir_json_parse(deep, strlen(deep), &opts, &o, NULL), HV_ETOOBIG);
    opts.max_depth = 0;
    opts.max_bytes = 10;
    assert_int_equal(hv_fhir_json_parse(deep, strlen(deep), &opts, &o, NULL), HV_ETOOBIG);
    assert_null(o);
}

static void fhir_json_equal_compares_decimal_text(void **state) {
    (void)state;
    struct json_object *a = json_tokener_parse("{\"a\":[1.50,{\"b\":true}]}");
    struct json_object *b = json_tokener_parse("{\"a\":[1.5,{\"b\":true}]}");
    struct json_object *c = json_tokener_parse("{\"a\":[1.50,{\"b\":true}]}");
    assert_false(hv_fhir_json_equal(a, b));
    assert_true(hv_fhir_json_equal(a, c));
    json_object_put(a);
    json_object_put(b);
    json_object_put(c);
}

int run_json_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fhir_json_keeps_decimal_text),
        cmocka_unit_test(fhir_json_writes_in_specification_order),
        cmocka_unit_test(fhir_json_pretty_indents_two_spaces),
        cmocka_unit_test(fhir_json_orders_contained_and_bundle_resources),
        cmocka_unit_test(fhir_json_reports_syntax_errors_with_position),
        cmocka_unit_test(fhir_json_reports_content_errors_with_path),
        cmocka_unit_test(fhir_json_refuses_unknown_types_and_non_objects),
        cmocka_unit_test(fhir_json_caps_depth_and_size),
        cmocka_unit_test(fhir_json_equal_compares_decimal_text),
    };
    return cmocka_run_group_tests_name("fhir_json", tests, NULL, NULL);
}
