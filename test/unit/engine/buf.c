/* buf.c — tests of engine/buf.c and the parsers in engine/util.c. */
#include "tests.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void buf_refuses_growth_past_its_cap(void **state) {
    hv_buf_t b;
    hv_buf_init(&b, 8);
    assert_int_equal(hv_buf_puts(&b, "12345678"), HV_OK);
    assert_int_equal(hv_buf_putc(&b, '9'), HV_ETOOBIG);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "12345678");
    assert_int_equal(hv_buf_printf(&b, "%d", 1), HV_ETOOBIG);
    assert_string_equal(b.data, "12345678");
    hv_buf_release(&b);
}

static void buf_printf_grows(void **state) {
    hv_buf_t b;
    int i;
    hv_buf_init(&b, 0);
    for (i = 0; i < 1000; i++) assert_int_equal(hv_buf_printf(&b, "%04d", i), HV_OK);
    assert_int_equal(b.len, 4000);
    assert_memory_equal(b.data + 3996, "0999", 4);
    hv_buf_consume(&b, 3996);
    assert_string_equal(b.data, "0999");
    hv_buf_release(&b);
}

static void buf_json_str_escapes_controls_quotes_and_backslashes(void **state) {
    hv_buf_t b;
    hv_buf_init(&b, 0);
    assert_int_equal(hv_buf_json_str(&b, "a\"b\\c\nd\x01\xc3\xa9", 10), HV_OK);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\nd\\u0001\xc3\xa9\"");
    hv_buf_release(&b);
}

static void parse_size_duration_hostport(void **state) {
    uint64_t v;
    char host[64];
    int port;
    assert_int_equal(hv_parse_size("16MiB", &v), HV_OK);
    assert_int_equal(v, 16u * 1024 * 1024);
    assert_int_equal(hv_parse_size("64k", &v), HV_OK);
    assert_int_equal(v, 65536);
    assert_int_equal(hv_parse_size("12 parsecs", &v), HV_EINVAL);
    assert_int_equal(hv_parse_size("-1", &v), HV_EINVAL);
    assert_int_equal(hv_parse_duration_ms("30s", &v), HV_OK);
    assert_int_equal(v, 30000);
    assert_int_equal(hv_parse_duration_ms("250", &v), HV_OK);
    assert_int_equal(v, 250);
    assert_int_equal(hv_parse_hostport("127.0.0.1:8080", host, sizeof(host), &port), HV_OK);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_int_equal(hv_parse_hostport("[::1]:2575", host, sizeof(host), &port), HV_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(hv_parse_hostport(":2575", host, sizeof(host), &port), HV_OK);
    assert_string_equal(host, "0.0.0.0");
    assert_int_equal(hv_parse_hostport("localhost:99999", host, sizeof(host), &port), HV_EINVAL);
    assert_int_equal(hv_parse_hostport("nohost", host, sizeof(host), &port), HV_EINVAL);
}

static void regex_too_costly_refuses_what_regcomp_would_blow_up(void **state) {
    static const char *const ok[] = {
        "[0-9]+", "-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?", "[0-9]{4}-[0-9]{2}-[0-9]{2}",
        "(a+)+", "[+*?{]+", "a[]+]b", "a\\+\\+\\+", "x{2,}", ".{0,1000}", "a{", "",
    };
    static const char *const bad[] = {
        "a++", "a*+", "a?{2}", "a{2}{3}", "library++++++++++++++++++++++++++++",
        "((a{200}){200}){200}", "a{30000}", "(a*)*\\1",
    };
    (void)state;
    for (size_t i = 0; i < HV_ARRAY_LEN(ok); i++) {
        const char *why = hv_regex_too_costly(ok[i], strlen(ok[i]));
        if (why != NULL) fail_msg("%s refused: %s", ok[i], why);
    }
    for (size_t i = 0; i < HV_ARRAY_LEN(bad); i++)
        if (hv_regex_too_costly(bad[i], strlen(bad[i])) == NULL) fail_msg("%s let through", bad[i]);
}

static void url_decode_handles_plus_and_rejects_bad_escapes(void **state) {
    char a[] = "a%20b+c", b[] = "bad%2", c[] = "%zz";
    assert_int_equal(hv_url_decode(a, strlen(a), 1), 5);
    assert_string_equal(a, "a b c");
    assert_int_equal(hv_url_decode(b, strlen(b), 0), -1);
    assert_int_equal(hv_url_decode(c, strlen(c), 0), -1);
}

/* A file of n bytes 'x' at path. */
static void write_bytes(const char *path, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < n; i++) fputc('x', f);
    assert_int_equal(fclose(f), 0);
}

static void file_read_gives_the_bytes_or_the_systems_reason(void **state) {
    char dir[] = "/tmp/hv-file-read-XXXXXX", path[64], *text = NULL;
    size_t len = 99;
    hv_error_t err;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/f", dir);
    /* exactly max bytes: read; one more: refused with the size */
    write_bytes(path, 100);
    hv_error_clear(&err);
    assert_int_equal(hv_file_read(path, 100, &text, &len, &err), HV_OK);
    assert_int_equal(len, 100);
    assert_int_equal(strlen(text), 100);
    hv_free(text);
    text = NULL;
    assert_int_equal(hv_file_read(path, 99, &text, &len, &err), HV_ETOOBIG);
    assert_null(text);
    assert_string_equal(err.location, path);
    assert_string_equal(err.message, "cannot read: larger than 99 bytes");
    /* an empty file: "", not NULL */
    write_bytes(path, 0);
    assert_int_equal(hv_file_read(path, 0, &text, &len, &err), HV_OK);
    assert_int_equal(len, 0);
    assert_string_equal(text, "");
    hv_free(text);
    text = NULL;
    /* a directory and a missing file: the system's reason */
    hv_error_clear(&err);
    assert_int_equal(hv_file_read(dir, 0, &text, &len, &err), HV_EIO);
    assert_string_equal(err.message, "cannot read: Is a directory");
    assert_int_equal(unlink(path), 0);
    assert_int_equal(hv_file_read(path, 0, &text, &len, &err), HV_EIO);
    assert_string_equal(err.message, "cannot read: No such file or directory");
    assert_null(text);
    assert_int_equal(rmdir(dir), 0);
}

int run_buf_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buf_refuses_growth_past_its_cap),
        cmocka_unit_test(buf_printf_grows),
        cmocka_unit_test(buf_json_str_escapes_controls_quotes_and_backslashes),
        cmocka_unit_test(parse_size_duration_hostport),
        cmocka_unit_test(regex_too_costly_refuses_what_regcomp_would_blow_up),
        cmocka_unit_test(url_decode_handles_plus_and_rejects_bad_escapes),
        cmocka_unit_test(file_read_gives_the_bytes_or_the_systems_reason),
    };
    return cmocka_run_group_tests_name("engine/buf", tests, NULL, NULL);
}
