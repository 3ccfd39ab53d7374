/* charset.c — tests of adapters/hl7v2/charset.c (MSH-18, table 0211). */
#include <string.h>

#include "tests.h"

static void hl7v2_charset_maps_table_0211_names(void **state) {
    static const struct {
        const char *hl7, *iconv;
        int rc;
    } cases[] = {
        {"", NULL, HV_OK},
        {"ASCII", "ASCII", HV_OK},
        {"8859/1", "ISO-8859-1", HV_OK},
        {"8859/15", "ISO-8859-15", HV_OK},
        {"UNICODE UTF-8", "UTF-8", HV_OK},
        {"UNICODE UTF-8 ", "UTF-8", HV_OK},
        {"ISO IR100", "ISO-8859-1", HV_OK},
        {"UNICODE UTF-16", NULL, HV_ENOTSUP},
        {"EBCDIC", NULL, HV_ENOTSUP},
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        const char *n = "unset";
        int rc = hv_hl7v2_charset_iconv_name(cases[i].hl7, strlen(cases[i].hl7), &n);
        assert_int_equal(rc, cases[i].rc);
        if (rc == HV_OK && cases[i].iconv == NULL) assert_null(n);
        if (rc == HV_OK && cases[i].iconv != NULL) assert_string_equal(n, cases[i].iconv);
    }
}

static void hl7v2_charset_latin1_message_becomes_utf8_and_back(void **state) {
    const char *t = "MSH|^~\\&|A|B|C|D|1||ADT^A01|9|P|2.5||||||8859/1\rPID|1||||M\xfcller^J\xf6rg\r";
    hv_arena_t *a;
    hv_hl7v2_msg_t *m = test_parse(&a, t);
    char *name;
    size_t n;
    hv_buf_t b;
    (void)state;
    assert_string_equal(m->charset, "8859/1");
    assert_int_equal(hv_hl7v2_get_text(m, "PID-5.1", &name, &n), HV_OK);
    assert_string_equal(name, "M\xc3\xbcller");
    hv_buf_init(&b, 0);
    assert_int_equal(hv_hl7v2_serialize(m, &b), HV_OK);
    assert_int_equal(b.len, strlen(t));
    assert_memory_equal(b.data, t, b.len);
    hv_buf_release(&b);
    hv_arena_free(a);
}

static void hl7v2_charset_repeated_msh18_uses_the_first(void **state) {
    hv_arena_t *a;
    hv_hl7v2_msg_t *m = test_parse(
        &a, "MSH|^~\\&|A|B|C|D|1||ADT^A01|9|P|2.5||||||UNICODE UTF-8~8859/1\rPID|1||||\xc3\xa9\r");
    (void)state;
    assert_string_equal(m->charset, "UNICODE UTF-8");
    assert_null(m->iconv_name);
    hv_arena_free(a);
}

static void hl7v2_charset_undeclared_non_utf8_reads_as_latin1(void **state) {
    hv_arena_t *a;
    hv_hl7v2_msg_t *m = test_parse(&a, "MSH|^~\\&|A|B|C|D|1||ADT^A01|9|P|2.3\rPID|1||||Jos\xe9\r");
    char *v;
    (void)state;
    assert_int_equal(hv_hl7v2_get_text(m, "PID-5", &v, NULL), HV_OK);
    assert_string_equal(v, "Jos\xc3\xa9");
    hv_arena_free(a);
}

static void hl7v2_utf8_validation_follows_rfc3629(void **state) {
    (void)state;
    assert_true(hv_hl7v2_utf8_valid("abc\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 12));
    assert_false(hv_hl7v2_utf8_valid("\xc0\xaf", 2));     /* overlong */
    assert_false(hv_hl7v2_utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
    assert_false(hv_hl7v2_utf8_valid("\xe2\x82", 2));     /* truncated */
    assert_false(hv_hl7v2_utf8_valid("\xff", 1));
}

int run_charset_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hl7v2_charset_maps_table_0211_names),
        cmocka_unit_test(hl7v2_charset_latin1_message_becomes_utf8_and_back),
        cmocka_unit_test(hl7v2_charset_repeated_msh18_uses_the_first),
        cmocka_unit_test(hl7v2_charset_undeclared_non_utf8_reads_as_latin1),
        cmocka_unit_test(hl7v2_utf8_validation_follows_rfc3629),
    };
    return cmocka_run_group_tests_name("hl7v2_charset", tests, NULL, NULL);
}
