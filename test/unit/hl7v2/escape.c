/* escape.c — tests of adapters/hl7v2/escape.c (HL7 v2.5.1 §2.7). */
#include <string.h>

#include "tests.h"

static const hv_hl7v2_delims_t D = {'|', '^', '~', '\\', '&', '#'};

static void hl7v2_unescape_decodes_every_sequence(void **state) {
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain", "plain"},
        {"a\\F\\b", "a|b"},
        {"\\S\\\\R\\\\T\\\\E\\\\P\\", "^~&\\#"},
        {"x\\X0D0A\\y", "x\r\ny"},
        {"line1\\.br\\line2", "line1\nline2"},
        {"\\H\\bold\\N\\", "bold"},
        {"\\.sp2\\a\\.in+4\\b\\.ce\\", "ab"},
        {"\\C2842\\\\M2442\\\\Zlocal\\z", "z"},
        {"\\X41\\\\Xe9\\", "A\xe9"},
        {"", ""},
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        hv_buf_t b;
        hv_buf_init(&b, 0);
        assert_int_equal(hv_hl7v2_unescape(&D, cases[i].in, strlen(cases[i].in), 1, &b), HV_OK);
        assert_int_equal(b.len, strlen(cases[i].out));
        if (b.len) assert_memory_equal(b.data, cases[i].out, b.len);
        hv_buf_release(&b);
    }
}

static void hl7v2_unescape_rejects_bad_sequences_when_strict(void **state) {
    static const char *bad[] = {"\\", "a\\F", "\\Q\\", "\\X1\\", "\\XZZ\\", "\\.xx\\", "\\\\",
                                "\\C12\\"};
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(bad); i++) {
        hv_buf_t b;
        size_t at = 99;
        hv_buf_init(&b, 0);
        if (hv_hl7v2_unescape(&D, bad[i], strlen(bad[i]), 1, &b) != HV_EPROTO)
            fail_msg("case %zu accepted", i);
        assert_int_equal(hv_hl7v2_escape_check(&D, bad[i], strlen(bad[i]), &at), HV_EPROTO);
        assert_true(at < strlen(bad[i]));
        hv_buf_reset(&b);
        /* Lenient: the escape character stands for itself. */
        assert_int_equal(hv_hl7v2_unescape(&D, bad[i], strlen(bad[i]), 0, &b), HV_OK);
        assert_non_null(memchr(b.data, '\\', b.len));
        hv_buf_release(&b);
    }
}

static void hl7v2_escape_round_trips_any_bytes(void **state) {
    char in[256];
    hv_buf_t e, d;
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(in); i++) in[i] = (char)i;
    hv_buf_init(&e, 0);
    hv_buf_init(&d, 0);
    assert_int_equal(hv_hl7v2_escape(&D, in, sizeof(in), &e), HV_OK);
    assert_null(memchr(e.data, '|', e.len));
    assert_null(memchr(e.data, '^', e.len));
    assert_null(memchr(e.data, '\r', e.len));
    assert_int_equal(hv_hl7v2_escape_check(&D, e.data, e.len, NULL), HV_OK);
    assert_int_equal(hv_hl7v2_unescape(&D, e.data, e.len, 1, &d), HV_OK);
    assert_int_equal(d.len, sizeof(in));
    assert_memory_equal(d.data, in, sizeof(in));
    hv_buf_release(&e);
    hv_buf_release(&d);
}

static void hl7v2_escape_writes_standard_sequences(void **state) {
    hv_buf_t e;
    (void)state;
    hv_buf_init(&e, 0);
    assert_int_equal(hv_hl7v2_escape(&D, "a|b^c~d\\e&f#g", 13, &e), HV_OK);
    assert_string_equal(e.data, "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f\\P\\g");
    hv_buf_release(&e);
}

int run_escape_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hl7v2_unescape_decodes_every_sequence),
        cmocka_unit_test(hl7v2_unescape_rejects_bad_sequences_when_strict),
        cmocka_unit_test(hl7v2_escape_round_trips_any_bytes),
        cmocka_unit_test(hl7v2_escape_writes_standard_sequences),
    };
    return cmocka_run_group_tests_name("hl7v2_escape", tests, NULL, NULL);
}
