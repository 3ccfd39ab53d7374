/* channel_set.c — tests of engine/channel_set.c: the set step's in-place edit of
 * canonical JSON gives exactly json-c's parse/set/serialize bytes, and content it does
 * not take (or that is not JSON) goes json-c's way with the same result or error. */
#include "tests.h"

#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "engine/channel_int.h"

/* Applies pointer = value (JSON text) to content both ways; returns the fast way's
 * status and its output in *out (arena a), after checking the two agree. */
static int apply_both(const char *content, const char *pointer, const char *value_json,
                      hv_arena_t *a, char **out) {
    json_object *v = json_tokener_parse(value_json);
    const char *vt;
    char *fast = NULL, *slow = NULL;
    size_t fn = 0, sn = 0;
    hv_error_t e1, e2;
    int r1, r2;
    if (strcmp(value_json, "null") != 0) assert_non_null(v); /* json-c's null is NULL */
    vt = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    hv_error_clear(&e1);
    hv_error_clear(&e2);
    r1 = hv__set_apply(content, strlen(content), pointer, v, vt, 1, a, &fast, &fn, &e1);
    r2 = hv__set_apply(content, strlen(content), pointer, v, vt, 0, a, &slow, &sn, &e2);
    assert_int_equal(r1, r2);
    if (r1 == HV_OK) {
        assert_int_equal(fn, sn);
        assert_memory_equal(fast, slow, fn);
        assert_int_equal(strlen(fast), fn);
    } else {
        assert_string_equal(e1.message, e2.message);
    }
    json_object_put(v);
    *out = fast;
    return r1;
}

/* Table: content, pointer, value, the expected output (NULL: an error). The canonical
 * rows take the in-place edit; the others (whitespace, escapes, -0, duplicates, big
 * integers, comments) go json-c's way — the same bytes either way. */
static const struct {
    const char *content, *pointer, *value, *want;
    int in_place; /* 1: the in-place edit takes it */
} cases[] = {
    {"{\"a\":1}", "/a", "2", "{\"a\":2}", 1},
    {"{\"a\":1,\"b\":{\"c\":true}}", "/b/c", "\"x\"", "{\"a\":1,\"b\":{\"c\":\"x\"}}", 1},
    {"{\"a\":1}", "/meta/source", "\"bench\"", "{\"a\":1,\"meta\":{\"source\":\"bench\"}}", 1},
    {"{}", "/x/y/z", "null", "{\"x\":{\"y\":{\"z\":null}}}", 1},
    {"{\"meta\":{}}", "/meta/source", "\"b\"", "{\"meta\":{\"source\":\"b\"}}", 1},
    {"{\"meta\":{\"v\":\"1\"},\"z\":[1,{\"q\":2}]}", "/meta/source", "{\"k\":[1,2]}",
     "{\"meta\":{\"v\":\"1\",\"source\":{\"k\":[1,2]}},\"z\":[1,{\"q\":2}]}", 1},
    {"{\"a~b\":1,\"c/d\":2}", "/c~1d", "3", "{\"a~b\":1,\"c/d\":3}", 1},
    {"{\"a~b\":1}", "/a~0b", "3", "{\"a~b\":3}", 1},
    {"{\"v\":5.40,\"w\":-1e5,\"n\":\"caf\xc3\xa9\"}", "/s", "1.50", "{\"v\":5.40,\"w\":-1e5,\"n\":\"caf\xc3\xa9\",\"s\":1.50}", 1},
    {"{\"a\":[1,2],\"b\":\"x\"}", "/a", "{}", "{\"a\":{},\"b\":\"x\"}", 1},
    /* json-c's way: */
    {"{ \"a\" : 1 }", "/b", "2", "{\"a\":1,\"b\":2}", 0},
    {"{\"a\":\"x\\/y\\u00e9\"}", "/b", "2", "{\"a\":\"x/y\xc3\xa9\",\"b\":2}", 0},
    {"{\"a\":-0}", "/b", "2", "{\"a\":0,\"b\":2}", 0},
    {"{\"a\":1,\"a\":3}", "/b", "2", "{\"a\":3,\"b\":2}", 0},
    {"{\"a\":1234567890123456789012}", "/b", "2", NULL /* compared, not asserted */, 0},
    {"{\"a\":1}\n", "/b", "2", "{\"a\":1,\"b\":2}", 0},
    /* errors, the same both ways: */
    {"not json", "/a", "1", NULL, 0},
    {"[1,2]", "/a", "1", NULL, 0},
    {"{\"a\":1}", "/a/b", "1", NULL, 0},
    {"{\"a\":[1]}", "/a/0", "1", NULL, 0},
};

static void set_in_place_edit_equals_jsonc_roundtrip(void **state) {
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        hv_arena_t *a = hv_arena_new(0);
        char *out = NULL;
        int rc = apply_both(cases[i].content, cases[i].pointer, cases[i].value, a, &out);
        json_object *v = json_tokener_parse(cases[i].value);
        char *edit = NULL;
        size_t en = 0;
        hv_error_t err;
        hv_error_clear(&err);
        /* The canonical rows are edited in place; every other row is not. */
        assert_int_equal(hv__set_apply(cases[i].content, strlen(cases[i].content), cases[i].pointer,
                                       v, json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN),
                                       2, a, &edit, &en, &err),
                         cases[i].in_place ? HV_OK : HV_ENOTSUP);
        json_object_put(v);
        if (cases[i].want != NULL) {
            if (rc != HV_OK || strcmp(out, cases[i].want) != 0)
                fprintf(stderr, "case %zu: rc %d out %s\n", i, rc, rc == HV_OK ? out : "-");
            assert_int_equal(rc, HV_OK);
            assert_string_equal(out, cases[i].want);
        }
        hv_arena_free(a);
    }
}

static void set_rejects_content_that_is_not_json_or_not_through_objects(void **state) {
    hv_arena_t *a = hv_arena_new(0);
    char *out = NULL;
    (void)state;
    assert_int_equal(apply_both("{\"a\":", "/a", "1", a, &out), HV_EINVAL);
    assert_int_equal(apply_both("{\"a\":1}", "/a/b", "1", a, &out), HV_EINVAL);
    assert_int_equal(apply_both("{\"a\":\"s\"}", "/a/b/c", "1", a, &out), HV_EINVAL);
    hv_arena_free(a);
}

/* Through the registered step: the message's content is replaced, the step's value
 * is written as json-c writes it, and content_type is set. */
static void set_step_runs_on_the_message_and_sets_content_type(void **state) {
    json_object *conf = json_tokener_parse(
        "{\"pointer\":\"/meta/source\",\"value\":{\"n\":1.0,\"s\":\"a/b\"},"
        "\"content_type\":\"application/fhir+json\"}");
    hv_arena_t *a = hv_arena_new(0);
    hv_channel_msg_t m;
    hv_error_t err;
    void *st = NULL;
    (void)state;
    hv_error_clear(&err);
    assert_int_equal(hv__step_set.check(conf, &err), HV_OK);
    assert_int_equal(hv__step_set.init(NULL, conf, &st, &err), HV_OK);
    memset(&m, 0, sizeof(m));
    m.content = "{\"resourceType\":\"Observation\",\"meta\":{\"versionId\":\"1\"}}";
    m.len = strlen(m.content);
    m.content_type = "application/json";
    m.arena = a;
    assert_int_equal(hv__step_set.run(st, &m, &err), HV_OK);
    assert_string_equal(m.content, "{\"resourceType\":\"Observation\",\"meta\":{\"versionId\":"
                                   "\"1\",\"source\":{\"n\":1.0,\"s\":\"a/b\"}}}");
    assert_int_equal(m.len, strlen(m.content));
    assert_string_equal(m.content_type, "application/fhir+json");
    hv__step_set.free(st);
    json_object_put(conf);
    hv_arena_free(a);
}

static void set_check_refuses_a_pointer_token_of_256_bytes(void **state) {
    char conf_text[600], tok[300];
    json_object *conf;
    hv_error_t err;
    (void)state;
    memset(tok, 'k', 255);
    tok[255] = '\0';
    snprintf(conf_text, sizeof(conf_text), "{\"pointer\":\"/a/%s\",\"value\":1}", tok);
    conf = json_tokener_parse(conf_text);
    hv_error_clear(&err);
    assert_int_equal(hv__step_set.check(conf, &err), HV_OK); /* 255 bytes fit */
    json_object_put(conf);
    snprintf(conf_text, sizeof(conf_text), "{\"pointer\":\"/a/%sk\",\"value\":1}", tok);
    conf = json_tokener_parse(conf_text);
    assert_int_equal(hv__step_set.check(conf, &err), HV_ECONFIG);
    json_object_put(conf);
}

int run_channel_set_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(set_in_place_edit_equals_jsonc_roundtrip),
        cmocka_unit_test(set_rejects_content_that_is_not_json_or_not_through_objects),
        cmocka_unit_test(set_step_runs_on_the_message_and_sets_content_type),
        cmocka_unit_test(set_check_refuses_a_pointer_token_of_256_bytes),
    };
    return cmocka_run_group_tests_name("channel_set", tests, NULL, NULL);
}
