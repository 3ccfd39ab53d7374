/* channel_split.c — tests of engine/channel_split.c (the split-bundle step) and of the
 * channel-file keys that go with it and with "response": "after-destinations". */
#include "tests.h"

#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "engine/channel_rt.h"

static const char bundle[] =
    "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["
    "{\"fullUrl\":\"urn:uuid:1\",\"resource\":{\"resourceType\":\"Patient\",\"id\":\"p1\"}},"
    "{\"resource\":{\"resourceType\":\"Observation\",\"id\":\"o1\"}},"
    "{\"request\":{\"method\":\"DELETE\",\"url\":\"Patient/x\"}},"
    "{\"resource\":[1,2]},"
    "{\"resource\":{\"resourceType\":\"Observation\",\"id\":\"o2\"}}]}";

/* Runs split-bundle with a step object given as JSON text; returns its status. */
static int split(const char *conf_text, const char *content, hv_arena_t *a, hv__part_t **parts,
                 size_t *n, hv_error_t *err) {
    json_object *conf = json_tokener_parse(conf_text);
    hv_channel_msg_t m;
    void *st = NULL;
    int rc;
    assert_non_null(conf);
    assert_int_equal(hv__step_split_bundle.check(conf, err), HV_OK);
    assert_int_equal(hv__step_split_bundle.init(NULL, conf, &st, err), HV_OK);
    memset(&m, 0, sizeof(m));
    m.content = content;
    m.len = strlen(content);
    m.content_type = "application/fhir+json";
    m.arena = a;
    *parts = NULL;
    *n = 0;
    hv_error_clear(err);
    rc = hv__split_run(st, &m, parts, n, err);
    hv__step_split_bundle.free(st);
    json_object_put(conf);
    return rc;
}

static void split_bundle_by_entry_makes_one_part_per_resource_in_order(void **state) {
    hv_arena_t *a = hv_arena_new(0);
    hv__part_t *p = NULL;
    size_t n = 0;
    hv_error_t err;
    (void)state;
    assert_int_equal(split("{}", bundle, a, &p, &n, &err), HV_OK);
    assert_int_equal(n, 3); /* the DELETE entry and the array resource are skipped */
    assert_string_equal(p[0].content, "{\"resourceType\":\"Patient\",\"id\":\"p1\"}");
    assert_string_equal(p[1].content, "{\"resourceType\":\"Observation\",\"id\":\"o1\"}");
    assert_string_equal(p[2].content, "{\"resourceType\":\"Observation\",\"id\":\"o2\"}");
    assert_int_equal(p[2].len, strlen(p[2].content));
    assert_string_equal(p[0].content_type, "application/fhir+json");
    hv_arena_free(a);
}

static void split_bundle_by_resource_type_groups_entries_into_collections(void **state) {
    hv_arena_t *a = hv_arena_new(0);
    hv__part_t *p = NULL;
    size_t n = 0;
    hv_error_t err;
    (void)state;
    assert_int_equal(split("{\"by\": \"resource-type\", \"content_type\": \"x/y\"}", bundle, a, &p,
                           &n, &err),
                     HV_OK);
    assert_int_equal(n, 2);
    assert_string_equal(p[0].content,
                        "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[{\"fullUrl\":"
                        "\"urn:uuid:1\",\"resource\":{\"resourceType\":\"Patient\",\"id\":\"p1\"}}]}");
    assert_non_null(strstr(p[1].content, "\"id\":\"o1\"}},{\"resource\""));
    assert_non_null(strstr(p[1].content, "\"id\":\"o2\""));
    assert_string_equal(p[1].content_type, "x/y");
    hv_arena_free(a);
}

static void split_bundle_refuses_what_is_not_a_bundle(void **state) {
    static const struct {
        const char *content, *needle;
    } cases[] = {
        {"not json", "not a JSON object"},
        {"[1]", "not a JSON object"},
        {"{\"resourceType\":\"Patient\"}", "not a FHIR Bundle"},
        {"{\"resourceType\":\"Bundle\",\"entry\":{}}", "not an array"},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        hv_arena_t *a = hv_arena_new(0);
        hv__part_t *p = NULL;
        size_t n = 0;
        hv_error_t err;
        assert_int_equal(split("{}", cases[i].content, a, &p, &n, &err), HV_EINVAL);
        assert_non_null(strstr(err.message, cases[i].needle));
        assert_int_equal(n, 0);
        hv_arena_free(a);
    }
}

static void split_bundle_caps_the_number_of_parts(void **state) {
    hv_arena_t *a = hv_arena_new(0);
    hv__part_t *p = NULL;
    size_t n = 0;
    hv_error_t err;
    (void)state;
    assert_int_equal(split("{\"max_parts\": 2}", bundle, a, &p, &n, &err), HV_ETOOBIG);
    assert_non_null(strstr(err.message, "more than 2 parts"));
    assert_int_equal(n, 0);
    hv_arena_free(a);
    a = hv_arena_new(0);
    assert_int_equal(split("{\"max_parts\": 2, \"by\": \"resource-type\"}", bundle, a, &p, &n, &err),
                     HV_OK);
    assert_int_equal(n, 2);
    hv_arena_free(a);
}

static void split_bundle_checks_its_keys(void **state) {
    static const char *const bad[] = {"{\"by\": \"type\"}", "{\"max_parts\": 0}",
                                      "{\"max_parts\": \"3\"}", "{\"content_type\": \"\"}",
                                      "{\"parts\": 3}"};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_object *conf = json_tokener_parse(bad[i]);
        hv_error_t err;
        hv_error_clear(&err);
        assert_int_equal(hv__step_split_bundle.check(conf, &err), HV_ECONFIG);
        assert_true(err.message[0] != '\0');
        json_object_put(conf);
    }
}

static void channel_conf_response_keys(void **state) {
    static const struct {
        const char *extra;
        int ok;
        uint32_t mask;
        uint64_t timeout;
    } cases[] = {
        {"\"response\": \"after-destinations\"", 1, 0, 30000},
        {"\"response\": \"after-destinations\", \"response_destinations\": [\"b\"],"
         " \"response_timeout_ms\": 500",
         1, 2, 500},
        {"\"response\": \"after-destinations\", \"response_destinations\": [\"a\", \"b\"]", 1, 3, 30000},
        {"\"response_destinations\": [\"a\"]", 0, 0, 0},
        {"\"response_timeout_ms\": 100", 0, 0, 0},
        {"\"response\": \"after-destinations\", \"response_destinations\": [\"zz\"]", 0, 0, 0},
        {"\"response\": \"after-destinations\", \"response_destinations\": []", 0, 0, 0},
        {"\"response\": \"after-destinations\", \"response_timeout_ms\": 0", 0, 0, 0},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[1024];
        hv__chan_conf_t *c = NULL;
        hv_error_t err;
        int rc;
        snprintf(text, sizeof(text),
                 "{\"id\": \"r\", \"source\": {\"type\": \"http\"}, %s, \"destinations\": ["
                 "{\"name\": \"a\", \"type\": \"file-write\", \"dir\": \"/tmp/a\"},"
                 "{\"name\": \"b\", \"type\": \"file-write\", \"dir\": \"/tmp/b\"}]}",
                 cases[i].extra);
        hv_error_clear(&err);
        rc = hv__chan_conf_parse(text, strlen(text), "r.json", NULL, &c, &err);
        if (!cases[i].ok) {
            assert_int_equal(rc, HV_ECONFIG);
            assert_true(err.line >= 1);
            continue;
        }
        assert_int_equal(rc, HV_OK);
        assert_int_equal(c->response, HV__RESP_AFTER_DESTINATIONS);
        assert_int_equal(c->response_dests, cases[i].mask);
        assert_int_equal(c->response_timeout_ms, cases[i].timeout);
        hv__chan_conf_free(c);
    }
}

static void channel_conf_refuses_a_second_split(void **state) {
    const char *t = "{\"id\": \"s\", \"source\": {\"type\": \"http\"}, \"steps\": ["
                    "{\"type\": \"split-bundle\"}, {\"type\": \"set\", \"content_type\": \"a/b\"},"
                    "\n {\"type\": \"split-bundle\"}]}";
    hv__chan_conf_t *c = NULL;
    hv_error_t err;
    (void)state;
    hv_error_clear(&err);
    assert_int_equal(hv__chan_conf_parse(t, strlen(t), "s.json", NULL, &c, &err), HV_ECONFIG);
    assert_int_equal(err.line, 2);
    assert_non_null(strstr(err.message, "one split-bundle"));
}

int run_channel_split_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(split_bundle_by_entry_makes_one_part_per_resource_in_order),
        cmocka_unit_test(split_bundle_by_resource_type_groups_entries_into_collections),
        cmocka_unit_test(split_bundle_refuses_what_is_not_a_bundle),
        cmocka_unit_test(split_bundle_caps_the_number_of_parts),
        cmocka_unit_test(split_bundle_checks_its_keys),
        cmocka_unit_test(channel_conf_response_keys),
        cmocka_unit_test(channel_conf_refuses_a_second_split),
    };
    return cmocka_run_group_tests_name("channel_split", tests, NULL, NULL);
}
