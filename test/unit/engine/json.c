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

/* hv_json_get_ex keeps json_object_object_get_ex's contract: objects of 1 to 40 members
 * (scanned up to 16, hashed above), every key present and absent ones (a prefix, a longer
 * name, the same first byte, the empty key), JSON null values, a replaced duplicate,
 * non-objects and NULL, with and without out. */
static void json_get_ex_agrees_with_json_c(void **state) {
    static const char *const probes[] = {"", "k", "k1", "k10", "k100", "x", "k0k", "K1"};
    struct json_object *scalars[3];
    (void)state;
    for (int n = 0; n <= 40; n++) {
        struct json_object *o = json_object_new_object();
        char key[16];
        for (int i = 0; i < n; i++) {
            snprintf(key, sizeof(key), "k%d", i);
            json_object_object_add(o, key, i % 5 == 3 ? NULL : json_object_new_int(i));
        }
        if (n > 2) json_object_object_add(o, "k1", json_object_new_string("replaced"));
        for (int i = -1; i < n + (int)(sizeof(probes) / sizeof(probes[0])); i++) {
            struct json_object *a = (struct json_object *)1, *b = (struct json_object *)2;
            const char *k = key;
            if (i >= n)
                k = probes[i - n];
            else if (i >= 0)
                snprintf(key, sizeof(key), "k%d", i);
            else
                k = "k";
            assert_int_equal(hv_json_get_ex(o, k, &a), json_object_object_get_ex(o, k, &b));
            assert_ptr_equal(a, b);
            assert_int_equal(hv_json_get_ex(o, k, NULL), json_object_object_get_ex(o, k, NULL));
        }
        json_object_put(o);
    }
    scalars[0] = json_object_new_array();
    scalars[1] = json_object_new_string("k");
    scalars[2] = NULL;
    for (int i = 0; i < 3; i++) {
        struct json_object *a = (struct json_object *)1;
        assert_int_equal(hv_json_get_ex(scalars[i], "k", &a), 0);
        assert_null(a);
        json_object_put(scalars[i]);
    }
}

int run_json_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_parse_accepts_comments),
        cmocka_unit_test(json_parse_rejects_trailing_content),
        cmocka_unit_test(json_parse_reports_truncation),
        cmocka_unit_test(json_positions_by_pointer),
        cmocka_unit_test(json_get_ex_agrees_with_json_c),
    };
    return cmocka_run_group_tests_name("engine/json", tests, NULL, NULL);
}
