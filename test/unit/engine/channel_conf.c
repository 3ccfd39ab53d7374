/* channel_conf.c — tests of engine/channel_conf.c (channel files) and the filter evaluator. */
#include "tests.h"

#include <stdio.h>
#include <string.h>

#include "engine/channel_int.h"

static const char lab_fanout[] =
    "// channels/lab-fanout.json\n"
    "{\n"
    "  \"id\": \"lab-fanout\",\n"
    "  \"source\": { \"type\": \"http\" },\n"
    "  \"destinations\": [\n"
    "    { \"name\": \"a\", \"type\": \"http-send\", \"url\": \"http://127.0.0.1:9001/in\" },\n"
    "    { \"name\": \"b\", \"type\": \"http-send\", \"url\": \"http://127.0.0.1:9002/in\",\n"
    "      \"queue\": { \"retry_interval_ms\": 500, \"max_attempts\": 1000 } }\n"
    "  ]\n"
    "}\n";

static void channel_conf_loads_lab_fanout_with_defaults(void **state) {
    hv__chan_conf_t *c = NULL;
    hv_error_t err;
    (void)state;
    hv_error_clear(&err);
    assert_int_equal(hv__chan_conf_parse(lab_fanout, strlen(lab_fanout), "lab.json", NULL, &c, &err),
                     HV_OK);
    assert_string_equal(c->id, "lab-fanout");
    assert_string_equal(c->name, "lab-fanout");
    assert_true(c->enabled);
    assert_string_equal(c->source_type, "http");
    assert_int_equal(c->ndests, 2);
    assert_int_equal(c->response, HV__RESP_AFTER_STORE);
    assert_int_equal(c->retention_days, 30);
    assert_int_equal(c->dests[0].queue.retry_interval_ms, 1000);
    assert_int_equal(c->dests[0].queue.max_attempts, 10);
    assert_int_equal(c->dests[1].queue.retry_interval_ms, 500);
    assert_int_equal(c->dests[1].queue.max_attempts, 1000);
    assert_int_equal(c->dests[1].queue.breaker_threshold, 5);
    assert_string_equal(hv_json_get_str(c->dests[1].conf, "url"), "http://127.0.0.1:9002/in");
    assert_null(hv_json_get_str(c->dests[1].conf, "name")); /* common keys are stripped */
    hv__chan_conf_free(c);
}

static void channel_conf_channel_queue_defaults_apply_to_every_destination(void **state) {
    const char *t = "{\"id\": \"q\", \"source\": {\"type\": \"http\"},"
                    " \"queue\": {\"max_attempts\": 3, \"backoff\": 1.5},"
                    " \"destinations\": [{\"name\": \"a\", \"type\": \"file-write\", \"dir\": \"/tmp\"},"
                    " {\"name\": \"b\", \"type\": \"file-write\", \"dir\": \"/tmp\","
                    "  \"queue\": {\"max_attempts\": 7, \"workers\": 4, \"ordering_key\": {\"path\": \"PID-3.1\"}}}]}";
    hv__chan_conf_t *c = NULL;
    hv_error_t err;
    (void)state;
    assert_int_equal(hv__chan_conf_parse(t, strlen(t), "q.json", NULL, &c, &err), HV_OK);
    assert_int_equal(c->dests[0].queue.max_attempts, 3);
    assert_int_equal(c->dests[1].queue.max_attempts, 7);
    assert_int_equal(c->dests[1].queue.workers, 4);
    assert_non_null(c->dests[1].queue.ordering_key);
    assert_string_equal(c->dests[1].queue.ordering_key->path, "PID-3.1");
    assert_null(c->dests[0].queue.ordering_key);
    assert_true(c->dests[1].queue.backoff > 1.49 && c->dests[1].queue.backoff < 1.51);
    hv__chan_conf_free(c);
}

/* Each bad file and the exact position and message it must be refused with. */
static const struct bad_case {
    const char *text;
    const char *want; /* prefix after "bad.json:" */
} bad_cases[] = {
    {"{\"id\": \"x\", \"source\": {\"type\": \"http\"}, \"bogus\": 1}",
     "1:41: unknown key \"bogus\" in channel"},
    {"{\"source\": {\"type\": \"http\"}}", "1:1: missing required key \"id\""},
    {"{\"id\": 5, \"source\": {\"type\": \"http\"}}", "1:8: \"id\" must be a string, not an integer"},
    {"{\"id\": \"a b\", \"source\": {\"type\": \"http\"}}", "1:8: a channel id is"},
    {"{\"id\": \"x\"}", "1:1: missing required key \"source\""},
    {"{\"id\": \"x\",\n \"source\": {\"type\": \"smtp\"}}", "2:21: unknown source type \"smtp\""},
    {"{\"id\": \"x\", \"source\": {\"type\": \"http\"},\n \"steps\": [{\"type\": \"nope\"}]}",
     "2:21: unknown step type \"nope\""},
    {"{\"id\": \"x\", \"source\": {\"type\": \"http\"},\n \"destinations\": [{\"type\": \"file-write\"}]}",
     "2:19: missing required key \"name\""},
    {"{\"id\": \"x\", \"source\": {\"type\": \"http\"}, \"destinations\": [\n"
     " {\"name\": \"a\", \"type\": \"channel\", \"channel\": \"y\"},\n"
     " {\"name\": \"a\", \"type\": \"channel\", \"channel\": \"z\"}]}",
     "3:11: destination name \"a\" is used twice"},
    {"{\"id\": \"x\", \"source\": {\"type\": \"http\"}, \"destinations\": [\n"
     " {\"name\": \"a\", \"type\": \"channel\", \"channel\": \"x\"}]}",
     "2:46: a channel cannot hand messages to itself"},
    {"{\"id\": \"x\", \"source\": {\"type\": \"http\"}, \"destinations\": [\n"
     " {\"name\": \"a\", \"type\": \"file-write\", \"dir\": \"/t\", \"queue\": {\"max_attempts\": 0}}]}",
     "2:77: \"max_attempts\" must be between 1 and"},
    {"{\"id\": \"x\", \"source\": {\"type\": \"http\"}, \"destinations\": [\n"
     " {\"name\": \"a\", \"type\": \"file-write\", \"dir\": \"/t\", \"queue\": {\"retry\": 1}}]}",
     "2:61: unknown key \"retry\" in queue"},
    {"{\"id\": \"x\", \"source\": {\"type\": \"http\"}, \"response\": \"later\"}",
     "1:53: \"response\" is after-store"},
    {"{\"id\": \"x\", \"source\": {\"type\": \"http\"},\n \"filter\": {\"path\": \"MSH-9\"}}",
     "2:12: a rule needs exactly one of"},
    {"{\"id\": \"x\", \"source\": {\"type\": \"http\"},\n \"filter\": {\"all\": []}}",
     "2:20: a rule list must not be empty"},
    {"{\"id\": \"x\", \"source\": {\"type\": \"http\"},\n \"filter\": {\"metadata\": \"colour\", \"equals\": 1}}",
     "2:25: unknown metadata \"colour\""},
    {"{\"id\": \"x\", \"source\": {\"type\": \"http\"},\n \"filter\": {\"not\": {\"path\": \"MSH-9\", \"in\": []}}}",
     "2:44: \"in\" must be a non-empty array"},
    {"{\"id\": \"x\", \"source\": {\"type\": \"http\"}, \"storage\": {\"content\": \"some\"}}",
     "1:64: \"content\" is all or metadata"},
    {"[1, 2]", "1:1: a channel file holds one JSON object, not an array"},
    {"{\"id\": \"x\", \"source\": {\"type\": \"http\"},\n \"queue\": {\"ordering_key\": {\"metadata\": \"size\"}}}",
     "2:12: \"ordering_key\" belongs in a destination's own \"queue\""},
    {"{\"id\": \"x\", \"source\": {\"type\": \"http\"}, \"destinations\": [\n"
     " {\"name\": \"a\", \"type\": \"file-write\", \"dir\": \"/t\", \"queue\": {\"workers\": 65}}]}",
     "2:72: \"workers\" must be between 1 and 64"},
    {"{\"id\": \"x\", \"source\": {\"type\": \"http\"}, \"destinations\": [\n"
     " {\"name\": \"a\", \"type\": \"file-write\", \"dir\": \"/t\", \"queue\": {\"ordering_key\": {\"all\": []}}}]}",
     "2:77: \"ordering_key\" is"},
    {"{\"id\": \"x\",, }", "1:11: invalid JSON"},
};

static void channel_conf_refuses_bad_files_at_their_position(void **state) {
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        hv__chan_conf_t *c = NULL;
        hv_error_t err;
        char msg[1024], want[600];
        hv_error_clear(&err);
        assert_int_equal(hv__chan_conf_parse(bad_cases[i].text, strlen(bad_cases[i].text),
                                             "bad.json", NULL, &c, &err),
                         HV_ECONFIG);
        assert_null(c);
        hv_error_format(&err, msg, sizeof(msg));
        snprintf(want, sizeof(want), "bad.json:%s", bad_cases[i].want);
        if (strncmp(msg, want, strlen(want)) != 0) fail_msg("case %zu: got '%s', want '%s'", i, msg, want);
    }
}

static int check_fails_on_url(struct json_object *conf, hv_error_t *err) {
    if (hv_json_get_str(conf, "url") != NULL) {
        hv_error_set(err, HV_ECONFIG, "url", "bad url for the test");
        return HV_ECONFIG;
    }
    return HV_OK;
}
static int send_nothing(void *s, const hv_channel_msg_t *m, hv_channel_sent_cb d, void *t) {
    (void)s; (void)m; (void)d; (void)t;
    return HV_OK;
}

static void channel_conf_strict_mode_needs_registered_types(void **state) {
    hv__chan_registry_t reg;
    static const hv_channel_dest_t dest = {"http-send", check_fails_on_url, NULL, send_nothing, NULL};
    static const hv_channel_source_t src = {"http", NULL, NULL, NULL};
    const char *t = "{\"id\": \"x\", \"source\": {\"type\": \"http\"},\n"
                    " \"destinations\": [{\"name\": \"s\", \"type\": \"fhir-store\"}]}";
    const char *t2 = "{\"id\": \"x\", \"source\": {\"type\": \"http\"},\n"
                     " \"destinations\": [{\"name\": \"s\", \"type\": \"http-send\", \"url\": \"u\"}]}";
    hv__chan_conf_t *c = NULL;
    hv_error_t err;
    (void)state;
    memset(&reg, 0, sizeof(reg));
    reg.dests[reg.ndests++] = &dest;
    reg.sources[reg.nsources++] = &src;
    /* lenient (channel validate): a catalog type is accepted by name */
    assert_int_equal(hv__chan_conf_parse(t, strlen(t), "m.json", NULL, &c, &err), HV_OK);
    hv__chan_conf_free(c);
    c = NULL;
    /* strict (serve): refused with a message that says why */
    assert_int_equal(hv__chan_conf_parse(t, strlen(t), "m.json", &reg, &c, &err), HV_ECONFIG);
    assert_int_equal(err.line, 2);
    assert_int_equal(err.column, 41);
    assert_non_null(strstr(err.message, "\"fhir-store\" is not available"));
    /* a registered type's own check runs and its key gets the position */
    assert_int_equal(hv__chan_conf_parse(t2, strlen(t2), "m.json", &reg, &c, &err), HV_ECONFIG);
    assert_int_equal(err.line, 2);
    assert_int_equal(err.column, 54);
    assert_string_equal(err.message, "bad url for the test");
}

static void filter_eval_all_any_not_names_the_rule(void **state) {
    const char *t =
        "{\"id\": \"x\", \"source\": {\"type\": \"http\"}, \"filter\": {\"all\": ["
        " {\"metadata\": \"content_type\", \"in\": [\"a/b\", \"c/d\"], \"name\": \"type-ok\"},"
        " {\"not\": {\"metadata\": \"size\", \"equals\": 0}, \"name\": \"not-empty\"},"
        " {\"any\": [{\"metadata\": \"channel\", \"contains\": \"x\"},"
        "           {\"metadata\": \"channel\", \"exists\": false}]}]}}";
    hv__chan_conf_t *c = NULL;
    hv__chan_registry_t reg;
    hv_channel_msg_t m;
    hv_error_t err;
    const char *rule = NULL;
    (void)state;
    memset(&reg, 0, sizeof(reg));
    assert_int_equal(hv__chan_conf_parse(t, strlen(t), "f.json", NULL, &c, &err), HV_OK);
    memset(&m, 0, sizeof(m));
    m.channel = "x";
    m.content = "abc";
    m.len = 3;
    m.content_type = "c/d";
    assert_int_equal(hv__filter_eval(&reg, c->filter, &m, &rule), 1);
    m.content_type = "e/f";
    assert_int_equal(hv__filter_eval(&reg, c->filter, &m, &rule), 0);
    assert_string_equal(rule, "type-ok");
    m.content_type = "a/b";
    m.len = 0;
    assert_int_equal(hv__filter_eval(&reg, c->filter, &m, &rule), 0);
    assert_string_equal(rule, "not-empty");
    m.len = 3;
    m.channel = "y";
    assert_int_equal(hv__filter_eval(&reg, c->filter, &m, &rule), 0);
    assert_string_equal(rule, "/filter/all/2");
    hv__chan_conf_free(c);
}

int run_channel_conf_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(channel_conf_loads_lab_fanout_with_defaults),
        cmocka_unit_test(channel_conf_channel_queue_defaults_apply_to_every_destination),
        cmocka_unit_test(channel_conf_refuses_bad_files_at_their_position),
        cmocka_unit_test(channel_conf_strict_mode_needs_registered_types),
        cmocka_unit_test(filter_eval_all_any_not_names_the_rule),
    };
    return cmocka_run_group_tests_name("channel_conf", tests, NULL, NULL);
}
