/* config.c — tests of engine/config.c. */
#include "tests.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const hv_setting_t settings[] = {
    {"http.listen", "http", HV_SET_HOSTPORT, "0.0.0.0:8080", NULL, "HTTP address"},
    {"http.max_body", NULL, HV_SET_SIZE, "32MiB", NULL, "largest request body"},
    {"log.format", "log-format", HV_SET_ENUM, "json", "json|text", "log format"},
    {"data", "data", HV_SET_STRING, "./var", NULL, "data directory"},
    {"auth", "auth", HV_SET_BOOL, "on", NULL, "authentication"},
    {NULL, NULL, 0, NULL, NULL, NULL},
};

static char *write_temp(const char *text) {
    char *path = strdup("/tmp/hv-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void config_defaults_apply(void **state) {
    hv_config_t *c = hv_config_new();
    assert_int_equal(hv_config_declare(c, settings), HV_OK);
    assert_string_equal(hv_config_str(c, "http.listen"), "0.0.0.0:8080");
    assert_int_equal(hv_config_size(c, "http.max_body"), 32u * 1024 * 1024);
    assert_true(hv_config_bool(c, "auth"));
    hv_config_free(c);
}

static void config_file_with_comments_sets_nested_keys(void **state) {
    char *path = write_temp("// engine settings\n{\n  \"http\": { /* where */ \"listen\": \"127.0.0.1:9\" },\n  \"data\": \"/srv\"\n}\n");
    hv_config_t *c = hv_config_new();
    hv_error_t err;
    hv_config_declare(c, settings);
    assert_int_equal(hv_config_load_file(c, path, &err), HV_OK);
    assert_string_equal(hv_config_str(c, "http.listen"), "127.0.0.1:9");
    assert_string_equal(hv_config_str(c, "data"), "/srv");
    hv_config_free(c);
    unlink(path);
    free(path);
}

static void config_unknown_key_reports_line_and_column(void **state) {
    char *path = write_temp("{\n  \"http\": {\n    \"lisen\": \"x\"\n  }\n}\n");
    hv_config_t *c = hv_config_new();
    hv_error_t err;
    char msg[600];
    hv_config_declare(c, settings);
    assert_int_equal(hv_config_load_file(c, path, &err), HV_ECONFIG);
    assert_int_equal(err.line, 3);
    assert_int_equal(err.column, 5); /* the key, not its value */
    hv_error_format(&err, msg, sizeof(msg));
    assert_non_null(strstr(msg, ":3:5: unknown setting \"http.lisen\""));
    hv_config_free(c);
    unlink(path);
    free(path);
}

static void config_bad_value_reports_position_and_keeps_default(void **state) {
    char *path = write_temp("{\"http\": {\"max_body\": \"huge\"}}");
    hv_config_t *c = hv_config_new();
    hv_error_t err;
    hv_config_declare(c, settings);
    assert_int_equal(hv_config_load_file(c, path, &err), HV_ECONFIG);
    assert_int_equal(err.line, 1);
    assert_int_equal(err.column, 23);
    assert_non_null(strstr(err.message, "not a size"));
    assert_int_equal(hv_config_size(c, "http.max_body"), 32u * 1024 * 1024);
    hv_config_free(c);
    unlink(path);
    free(path);
}

static void config_syntax_error_has_position(void **state) {
    char *path = write_temp("{\n  \"data\": \"x\",,\n}");
    hv_config_t *c = hv_config_new();
    hv_error_t err;
    hv_config_declare(c, settings);
    assert_int_equal(hv_config_load_file(c, path, &err), HV_EPROTO);
    assert_int_equal(err.line, 2);
    assert_true(err.column >= 14);
    hv_config_free(c);
    unlink(path);
    free(path);
}

static void config_env_overrides_file_and_flag_overrides_env(void **state) {
    hv_config_t *c = hv_config_new();
    hv_error_t err;
    char name[64];
    hv_config_declare(c, settings);
    hv_config_env_name(&settings[2], name, sizeof(name));
    assert_string_equal(name, "HOLOVITALS_LOG_FORMAT");
    setenv("HOLOVITALS_LOG_FORMAT", "text", 1);
    assert_int_equal(hv_config_load_env(c, &err), HV_OK);
    assert_string_equal(hv_config_str(c, "log.format"), "text");
    setenv("HOLOVITALS_LOG_FORMAT", "xml", 1);
    assert_int_equal(hv_config_load_env(c, &err), HV_ECONFIG);
    assert_non_null(strstr(err.message, "must be one of json|text"));
    unsetenv("HOLOVITALS_LOG_FORMAT");
    assert_int_equal(hv_config_set(c, "log.format", "json", "flag --log-format", &err), HV_OK);
    assert_string_equal(hv_config_str(c, "log.format"), "json");
    hv_config_free(c);
}

int run_config_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config_defaults_apply),
        cmocka_unit_test(config_file_with_comments_sets_nested_keys),
        cmocka_unit_test(config_unknown_key_reports_line_and_column),
        cmocka_unit_test(config_bad_value_reports_position_and_keeps_default),
        cmocka_unit_test(config_syntax_error_has_position),
        cmocka_unit_test(config_env_overrides_file_and_flag_overrides_env),
    };
    return cmocka_run_group_tests_name("engine/config", tests, NULL, NULL);
}
