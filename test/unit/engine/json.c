/* json.c — tests of engine/json.c. */
#include "tests.h"

#include <json-c/json.h>
#include <string.h>

static void json_parse_accepts_comments(void **state) {
    const char *t = "/* c */ {\"a\": 1, // x\n \"b\": [true]}";
    struct json_object *o = NULL;
    hv_error_t err;
    assert_int_equal(hv_json_parse(t, strlen(t), "t", &o, &err), HV_OK);
    assert_int_equal(json_object_get_int(json_object_object_get(o, "a")), 1);
    json_object_put(o);
}

static void json_parse_rejects_trailing_content(void **state) {
    const char *t = "{\"a\": 1}\n  x";
    struct json_object *o = NULL;
    hv_error_t err;
    assert_int_equal(hv_json_parse(t, strlen(t), "t", &o, &err), HV_EPROTO);
    assert_null(o);
    assert_int_equal(err.line, 2);
    assert_int_equal(err.column, 3);
}

static void json_parse_reports_truncation(void **state) {
    const char *t = "{\"a\": [1, 2";
    struct json_object *o = NULL;
    hv_error_t err;
    assert_int_equal(hv_json_parse(t, strlen(t), "t", &o, &err), HV_EPROTO);
    assert_non_null(strstr(err.message, "unexpected end"));
}

static void json_positions_by_pointer(void **state) {
    const char *t = "{\n \"id\": \"x\",\n \"destinations\": [\n  {\"url\": \"u\"},\n  {\"a/b\": 2}\n ]\n}";
    hv_json_pos_t *p = hv_json_pos_new(t, strlen(t));
    int line, col;
    assert_int_equal(hv_json_pos_get(p, "/id", &line, &col), HV_OK);
    assert_int_equal(line, 2);
    assert_int_equal(col, 8);
    assert_int_equal(hv_json_pos_get(p, "/destinations/0/url", &line, &col), HV_OK);
    assert_int_equal(line, 4);
    assert_int_equal(col, 11);
    assert_int_equal(hv_json_pos_get(p, "/destinations/1/a~1b", &line, &col), HV_OK);
    assert_int_equal(line, 5);
    assert_int_equal(hv_json_pos_get(p, "/nope", &line, &col), HV_ENOTFOUND);
    hv_json_pos_free(p);
}

int run_json_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_parse_accepts_comments),
        cmocka_unit_test(json_parse_rejects_trailing_content),
        cmocka_unit_test(json_parse_reports_truncation),
        cmocka_unit_test(json_positions_by_pointer),
    };
    return cmocka_run_group_tests_name("engine/json", tests, NULL, NULL);
}
