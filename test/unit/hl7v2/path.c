/* path.c — tests of adapters/hl7v2/path.c: path syntax, reads, null vs empty, writes. */
#include <string.h>

#include "tests.h"

static const char *MSG =
    "MSH|^~\\&|LAB|HOSP|EHR|CLINIC|20240101120000||ORU^R01^ORU_R01|CTRL1|P|2.5.1\r"
    "PID|1||111^^^MRN^MR~222^^^SSN^SS&x&y||DOE^JOHN||\"\"|\r"
    "OBR|1\r"
    "OBX|1|NM|A^Glucose||5.5|mmol/L\r"
    "OBX|2|NM|B^Sodium||140|mmol/L\r"
    "OBX|3|ST|C^Note||a\\S\\b\\F\\c|\r";

static void hl7v2_path_parses_the_grammar(void **state) {
    static const struct {
        const char *s;
        int rc;
        unsigned occ, field, rep, comp, sub;
    } cases[] = {
        {"PID", HV_OK, 1, 0, 1, 0, 0},
        {"PID-3", HV_OK, 1, 3, 1, 0, 0},
        {"PID-3[2].1", HV_OK, 1, 3, 2, 1, 0},
        {"PID-3(2).4.2", HV_OK, 1, 3, 2, 4, 2},
        {"OBX[3]-5.1", HV_OK, 3, 5, 1, 1, 0},
        {"ZZ1-1", HV_OK, 1, 1, 1, 0, 0},
        {"pid-3", HV_EINVAL, 0, 0, 0, 0, 0},
        {"PID-0", HV_EINVAL, 0, 0, 0, 0, 0},
        {"PID-3[", HV_EINVAL, 0, 0, 0, 0, 0},
        {"PID-3.", HV_EINVAL, 0, 0, 0, 0, 0},
        {"PID-3x", HV_EINVAL, 0, 0, 0, 0, 0},
        {"PI", HV_EINVAL, 0, 0, 0, 0, 0},
        {"PID-99999999", HV_EINVAL, 0, 0, 0, 0, 0},
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        hv_hl7v2_path_t p;
        int rc = hv_hl7v2_path_parse(cases[i].s, &p);
        if (rc != cases[i].rc) fail_msg("case %s: rc %d", cases[i].s, rc);
        if (rc != HV_OK) continue;
        assert_int_equal(p.occ, cases[i].occ);
        assert_int_equal(p.field, cases[i].field);
        assert_int_equal(p.rep, cases[i].rep);
        assert_int_equal(p.comp, cases[i].comp);
        assert_int_equal(p.sub, cases[i].sub);
    }
}

static void hl7v2_get_reads_fields_reps_components(void **state) {
    static const struct {
        const char *path;
        int rc;
        const char *raw;
    } cases[] = {
        {"MSH-1", HV_OK, "|"},
        {"MSH-2", HV_OK, "^~\\&"},
        {"MSH-3", HV_OK, "LAB"},
        {"MSH-9", HV_OK, "ORU^R01^ORU_R01"},
        {"MSH-9.2", HV_OK, "R01"},
        {"MSH-10", HV_OK, "CTRL1"},
        {"MSH-12", HV_OK, "2.5.1"},
        {"MSH-13", HV_ENOTFOUND, NULL},
        {"PID-3", HV_OK, "111^^^MRN^MR"},
        {"PID-3[2]", HV_OK, "222^^^SSN^SS&x&y"},
        {"PID-3[2].1", HV_OK, "222"},
        {"PID-3[2].5.3", HV_OK, "y"},
        {"PID-3[2].5.4", HV_ENOTFOUND, NULL},
        {"PID-3[3]", HV_ENOTFOUND, NULL},
        {"PID-3.2", HV_OK, ""},
        {"PID-5.2", HV_OK, "JOHN"},
        {"PID-7", HV_OK, "\"\""},
        {"PID-8", HV_OK, ""},
        {"PID-9", HV_ENOTFOUND, NULL},
        {"OBX[2]-5", HV_OK, "140"},
        {"OBX[3]-3.2", HV_OK, "Note"},
        {"OBX[4]-1", HV_ENOTFOUND, NULL},
        {"NK1-1", HV_ENOTFOUND, NULL},
    };
    hv_arena_t *a;
    hv_hl7v2_msg_t *m = test_parse(&a, MSG);
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        hv_hl7v2_span_t s;
        int rc = hv_hl7v2_get(m, cases[i].path, &s);
        if (rc != cases[i].rc) fail_msg("%s: rc %d", cases[i].path, rc);
        if (rc != HV_OK) continue;
        if (s.len != strlen(cases[i].raw) || memcmp(s.p, cases[i].raw, s.len) != 0)
            fail_msg("%s: got '%.*s'", cases[i].path, (int)s.len, s.p);
    }
    assert_int_equal(hv_hl7v2_seg_count(m, "OBX"), 3);
    hv_arena_free(a);
}

static void hl7v2_get_distinguishes_null_from_empty(void **state) {
    hv_arena_t *a;
    hv_hl7v2_msg_t *m = test_parse(&a, MSG);
    hv_hl7v2_span_t s;
    (void)state;
    assert_int_equal(hv_hl7v2_get(m, "PID-7", &s), HV_OK);
    assert_true(hv_hl7v2_span_is_null(s));
    assert_int_equal(hv_hl7v2_get(m, "PID-8", &s), HV_OK);
    assert_false(hv_hl7v2_span_is_null(s));
    assert_int_equal(s.len, 0);
    hv_arena_free(a);
}

static void hl7v2_get_text_unescapes(void **state) {
    hv_arena_t *a;
    hv_hl7v2_msg_t *m = test_parse(&a, MSG);
    char *t;
    size_t n;
    (void)state;
    assert_int_equal(hv_hl7v2_get_text(m, "OBX[3]-5", &t, &n), HV_OK);
    assert_string_equal(t, "a^b|c");
    assert_int_equal(n, 5);
    hv_arena_free(a);
}

static void hl7v2_set_text_replaces_and_pads(void **state) {
    static const struct {
        const char *path, *value, *seg;
    } cases[] = {
        {"PID-5.2", "JANE", "PID|1||111^^^MRN^MR~222^^^SSN^SS&x&y||DOE^JANE||\"\"|"},
        {"PID-3[2].5.2", "q|r", "PID|1||111^^^MRN^MR~222^^^SSN^SS&q\\F\\r&y||DOE^JOHN||\"\"|"},
        {"PID-3[4].2", "z", "PID|1||111^^^MRN^MR~222^^^SSN^SS&x&y~~^z||DOE^JOHN||\"\"|"},
        {"PID-11.3.2", "c", "PID|1||111^^^MRN^MR~222^^^SSN^SS&x&y||DOE^JOHN||\"\"||||^^&c"},
        {"PID-1", "", "PID|||111^^^MRN^MR~222^^^SSN^SS&x&y||DOE^JOHN||\"\"|"},
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        hv_arena_t *a;
        hv_hl7v2_msg_t *m = test_parse(&a, MSG);
        hv_buf_t b;
        hv_hl7v2_msg_t m2;
        char *t;
        assert_int_equal(hv_hl7v2_set_text(m, cases[i].path, cases[i].value, strlen(cases[i].value)),
                         HV_OK);
        if (m->segs[1].len != strlen(cases[i].seg) ||
            memcmp(m->segs[1].p, cases[i].seg, m->segs[1].len) != 0)
            fail_msg("%s: got '%.*s'", cases[i].path, (int)m->segs[1].len, m->segs[1].p);
        /* The rest of the message is untouched and the change reads back. */
        hv_buf_init(&b, 0);
        assert_int_equal(hv_hl7v2_serialize(m, &b), HV_OK);
        assert_int_equal(hv_hl7v2_parse(a, b.data, b.len, NULL, &m2, NULL, NULL), HV_OK);
        assert_int_equal(m2.nsegs, 6);
        assert_int_equal(hv_hl7v2_get_text(&m2, cases[i].path, &t, NULL), HV_OK);
        assert_string_equal(t, cases[i].value);
        assert_memory_equal(m2.segs[3].p, "OBX|1|NM|A^Glucose||5.5|mmol/L", m2.segs[3].len);
        hv_buf_release(&b);
        hv_arena_free(a);
    }
}

static void hl7v2_set_text_refuses_delimiter_fields(void **state) {
    hv_arena_t *a;
    hv_hl7v2_msg_t *m = test_parse(&a, MSG);
    (void)state;
    assert_int_equal(hv_hl7v2_set_text(m, "MSH-1", "#", 1), HV_EPERM);
    assert_int_equal(hv_hl7v2_set_text(m, "MSH-2", "#", 1), HV_EPERM);
    assert_int_equal(hv_hl7v2_set_text(m, "NK1-1", "x", 1), HV_ENOTFOUND);
    assert_int_equal(hv_hl7v2_set_text(m, "MSH-10", "NEW", 3), HV_OK);
    assert_int_equal(m->modified, 1);
    hv_arena_free(a);
}

static void hl7v2_path_format_round_trips(void **state) {
    static const char *paths[] = {"PID", "PID-3", "PID-3[2].1", "OBX[3]-5.1", "PID-3.4.2"};
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(paths); i++) {
        hv_hl7v2_path_t p;
        char out[64];
        assert_int_equal(hv_hl7v2_path_parse(paths[i], &p), HV_OK);
        hv_hl7v2_path_format(&p, out, sizeof(out));
        assert_string_equal(out, paths[i]);
    }
}

int run_path_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hl7v2_path_parses_the_grammar),
        cmocka_unit_test(hl7v2_get_reads_fields_reps_components),
        cmocka_unit_test(hl7v2_get_distinguishes_null_from_empty),
        cmocka_unit_test(hl7v2_get_text_unescapes),
        cmocka_unit_test(hl7v2_set_text_replaces_and_pads),
        cmocka_unit_test(hl7v2_set_text_refuses_delimiter_fields),
        cmocka_unit_test(hl7v2_path_format_round_trips),
    };
    return cmocka_run_group_tests_name("hl7v2_path", tests, NULL, NULL);
}
