/* parse.c — tests of adapters/hl7v2/parse.c: delimiters, segments, terminators, batches, errors. */
#include <string.h>

#include "tests.h"

static int parse_status(const char *text, hv_error_t *err, int *code) {
    hv_arena_t *a = hv_arena_new(0);
    hv_hl7v2_msg_t m;
    int rc;
    hv_error_clear(err);
    rc = hv_hl7v2_parse(a, text, strlen(text), NULL, &m, err, code);
    hv_arena_free(a);
    return rc;
}

static void hl7v2_parse_splits_segments_on_cr_lf_and_crlf(void **state) {
    static const char *texts[] = {
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1\rPV1|1\r",
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\nPID|1\nPV1|1\n",
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\r\nPID|1\r\nPV1|1",
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\r\n\r\nPID|1\rPV1|1\n\n",
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(texts); i++) {
        hv_arena_t *a;
        hv_hl7v2_msg_t *m = test_parse(&a, texts[i]);
        hv_buf_t b;
        assert_int_equal(m->nsegs, 3);
        assert_string_equal(m->segs[1].id, "PID");
        assert_int_equal(m->segs[2].len, 5);
        hv_buf_init(&b, 0);
        assert_int_equal(hv_hl7v2_serialize(m, &b), HV_OK);
        assert_int_equal(b.len, strlen(texts[i]));
        assert_memory_equal(b.data, texts[i], b.len);
        hv_buf_release(&b);
        hv_arena_free(a);
    }
}

static void hl7v2_parse_reads_any_delimiters(void **state) {
    hv_arena_t *a;
    hv_hl7v2_msg_t *m = test_parse(&a, "MSH*@!$%#*APP*FAC*R*F*2024**ORU@R01*X9*P*2.8\rPID*1**A@B!C@D%E\r");
    hv_hl7v2_span_t s;
    (void)state;
    assert_int_equal(m->delims.field, '*');
    assert_int_equal(m->delims.comp, '@');
    assert_int_equal(m->delims.rep, '!');
    assert_int_equal(m->delims.esc, '$');
    assert_int_equal(m->delims.sub, '%');
    assert_int_equal(m->delims.trunc, '#');
    assert_int_equal(hv_hl7v2_get(m, "PID-3[2].2.2", &s), HV_OK);
    assert_int_equal(s.len, 1);
    assert_memory_equal(s.p, "E", 1);
    assert_int_equal(hv_hl7v2_get(m, "MSH-9.2", &s), HV_OK);
    assert_memory_equal(s.p, "R01", 3);
    hv_arena_free(a);
}

static void hl7v2_parse_accepts_three_encoding_characters(void **state) {
    hv_arena_t *a;
    hv_hl7v2_msg_t *m = test_parse(&a, "MSH|^~}|A|B|C|D|1||ADT^A01|9|P|2.1\rPID|1||7^^^X\r");
    hv_hl7v2_span_t s;
    (void)state;
    assert_int_equal(m->delims.esc, '}');
    assert_int_equal(m->delims.sub, 0);
    assert_int_equal(hv_hl7v2_get(m, "PID-3.4", &s), HV_OK);
    assert_memory_equal(s.p, "X", 1);
    hv_arena_free(a);
}

static void hl7v2_parse_keeps_bom_and_z_segments(void **state) {
    const char *t = "\xef\xbb\xbfMSH|^~\\&|A|B|C|D|1||ADT^A01|9|P|2.5\rZPI|1|custom^x\r";
    hv_arena_t *a;
    hv_hl7v2_msg_t *m = test_parse(&a, t);
    hv_hl7v2_span_t s;
    hv_buf_t b;
    (void)state;
    assert_int_equal(m->prefix_len, 3);
    assert_int_equal(hv_hl7v2_get(m, "ZPI-2.2", &s), HV_OK);
    assert_memory_equal(s.p, "x", 1);
    hv_buf_init(&b, 0);
    hv_hl7v2_serialize(m, &b);
    assert_string_equal(b.data, t);
    hv_buf_release(&b);
    hv_arena_free(a);
}

/* Table: bad inputs and the location and table 0357 code the error must name. */
static void hl7v2_parse_rejects_bad_input_precisely(void **state) {
    static const struct {
        const char *text;
        int rc;
        const char *location;
        int line;
        int code;
    } cases[] = {
        {"", HV_EPROTO, "MSH", 1, 101},
        {"PID|1\r", HV_EPROTO, "MSH", 1, 101},
        {"garbage bytes", HV_EPROTO, "MSH", 1, 101},
        {"MSH|", HV_EPROTO, "MSH-2", 1, 102},
        {"MSH||A|B\r", HV_EPROTO, "MSH-2", 1, 102},
        {"MSH|^^\\&|A\r", HV_EPROTO, "MSH-2", 1, 102},
        {"MSHA^~\\&|A\r", HV_EPROTO, "MSH-1", 1, 102},
        /* Regression (fuzz_hl7v2): non-ASCII and control delimiters are refused. */
        {"MSH|~\x01\xca\x83|A|B\r", HV_EPROTO, "MSH-2", 1, 102},
        {"MSH\xc3^~\\&\xc3" "A\r", HV_EPROTO, "MSH-1", 1, 102},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|9|P|2.5\rpid|1\r", HV_EPROTO, "", 2, 100},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|9|P|2.5\rPI|1\r", HV_EPROTO, "", 2, 100},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|9|P|2.5\rPID|1\rMSH|^~\\&|A\r", HV_EPROTO, "MSH", 3, 100},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|9|P|2.5\rPID|1||\\Q\\\r", HV_EPROTO, "PID-3", 2, 102},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|9|P|2.5\rPID|1|a\\F|x\r", HV_EPROTO, "PID-2", 2, 102},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|9\\X1\\|P|2.5\r", HV_EPROTO, "MSH-10", 1, 102},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|9|P|2.5||||||KOI8\r", HV_ENOTSUP, "MSH-18", 1, 103},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|9|P|2.5||||||ASCII\rPID|\xe9\r", HV_EPROTO, "MSH-18", 1,
         102},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|9|P|2.5||||||UNICODE UTF-8\rPID|\xe9\r", HV_EPROTO,
         "MSH-18", 1, 102},
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        hv_error_t err;
        int code = -1, rc = parse_status(cases[i].text, &err, &code);
        if (rc != cases[i].rc || strcmp(err.location, cases[i].location) != 0 ||
            err.line != cases[i].line || code != cases[i].code)
            fail_msg("case %zu: rc %d loc '%s' line %d code %d (%s)", i, rc, err.location,
                     err.line, code, err.message);
    }
}

static void hl7v2_parse_enforces_segment_cap(void **state) {
    hv_arena_t *a = hv_arena_new(0);
    hv_hl7v2_msg_t m;
    hv_hl7v2_parse_opts_t o;
    hv_error_t err;
    const char *t = "MSH|^~\\&|A|B|C|D|1||ADT^A01|9|P|2.5\rNTE|1\rNTE|2\rNTE|3\r";
    (void)state;
    hv_hl7v2_parse_opts_default(&o);
    o.max_segments = 3;
    assert_int_equal(hv_hl7v2_parse(a, t, strlen(t), &o, &m, &err, NULL), HV_ETOOBIG);
    o.max_segments = 4;
    assert_int_equal(hv_hl7v2_parse(a, t, strlen(t), &o, &m, &err, NULL), HV_OK);
    o.max_bytes = 10;
    assert_int_equal(hv_hl7v2_parse(a, t, strlen(t), &o, &m, &err, NULL), HV_ETOOBIG);
    hv_arena_free(a);
}

static void hl7v2_parse_lenient_escapes_when_asked(void **state) {
    hv_arena_t *a = hv_arena_new(0);
    hv_hl7v2_msg_t m;
    hv_hl7v2_parse_opts_t o;
    hv_error_t err;
    const char *t = "MSH|^~\\&|A|B|C|D|1||ADT^A01|9|P|2.5\rNTE|1|C:\\dir\r";
    (void)state;
    hv_hl7v2_parse_opts_default(&o);
    assert_int_equal(hv_hl7v2_parse(a, t, strlen(t), &o, &m, &err, NULL), HV_EPROTO);
    o.strict_escapes = 0;
    assert_int_equal(hv_hl7v2_parse(a, t, strlen(t), &o, &m, &err, NULL), HV_OK);
    hv_arena_free(a);
}

static void hl7v2_batch_split_finds_messages_and_checks_envelopes(void **state) {
    static const struct {
        const char *text;
        int rc;
        size_t count;
    } cases[] = {
        {"MSH|^~\\&|A\rPID|1\r", HV_OK, 1},
        {"FHS|^~\\&\rBHS|^~\\&\rMSH|^~\\&|A\rPID|1\rMSH|^~\\&|B\rBTS|2\rFTS|1\r", HV_OK, 2},
        {"BHS|^~\\&\nMSH|^~\\&|A\nMSH|^~\\&|B\nMSH|^~\\&|C\nBTS|3\n", HV_OK, 3},
        {"BHS|^~\\&\rMSH|^~\\&|A\r", HV_OK, 1},
        {"BHS|^~\\&\rPID|1\rBTS|1\r", HV_EPROTO, 0},
        {"FHS|^~\\&\rFHS|^~\\&\rFTS|0\rFTS|0\r", HV_EPROTO, 0},
        {"BTS|0\r", HV_OK, 0},
        {"MSH|^~\\&|A\rFTS|1\r", HV_OK, 1},
        {"MSH|^~\\&|A\rFTS|1\rMSH|^~\\&|B\r", HV_EPROTO, 0},
        {"BHS|^~\\&\rMSH|^~\\&|A\rBHS|^~\\&\r", HV_EPROTO, 0},
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        hv_arena_t *a = hv_arena_new(0);
        hv_hl7v2_span_t *spans = NULL;
        size_t cnt = 0;
        hv_error_t err;
        int rc = hv_hl7v2_batch_split(a, cases[i].text, strlen(cases[i].text), 10, &spans, &cnt,
                                      &err);
        if (rc != cases[i].rc || (rc == HV_OK && cnt != cases[i].count))
            fail_msg("case %zu: rc %d count %zu", i, rc, cnt);
        if (rc == HV_OK && cnt > 0) assert_memory_equal(spans[0].p, "MSH", 3);
        hv_arena_free(a);
    }
}

static void hl7v2_batch_split_caps_message_count(void **state) {
    hv_arena_t *a = hv_arena_new(0);
    hv_hl7v2_span_t *spans;
    size_t cnt;
    const char *t = "MSH|^~\\&|A\rMSH|^~\\&|B\rMSH|^~\\&|C\r";
    (void)state;
    assert_int_equal(hv_hl7v2_batch_split(a, t, strlen(t), 2, &spans, &cnt, NULL), HV_ETOOBIG);
    assert_int_equal(hv_hl7v2_batch_split(a, t, strlen(t), 3, &spans, &cnt, NULL), HV_OK);
    assert_int_equal(cnt, 3);
    /* Regression (found by fuzz_hl7v2): an MSH right after a byte order mark was not
     * counted when sizing the array, so a BOM file could hold max + 1 messages and
     * overflow it. */
    t = "\xef\xbb\xbfMSH|^~\\&|A\rMSH|^~\\&|B\r";
    assert_int_equal(hv_hl7v2_batch_split(a, t, strlen(t), 1, &spans, &cnt, NULL), HV_ETOOBIG);
    assert_int_equal(hv_hl7v2_batch_split(a, t, strlen(t), 2, &spans, &cnt, NULL), HV_OK);
    assert_int_equal(cnt, 2);
    assert_memory_equal(spans[1].p, "MSH|^~\\&|B", 10);
    hv_arena_free(a);
}

static void hl7v2_to_json_writes_the_tree(void **state) {
    hv_arena_t *a;
    hv_hl7v2_msg_t *m =
        test_parse(&a, "MSH|^~\\&|A||C|D|1||ADT^A01|9|P|2.5\rPID|1||7^^^X&Y~8||O\\T\\N\r");
    hv_buf_t b;
    (void)state;
    hv_buf_init(&b, 0);
    assert_int_equal(hv_hl7v2_to_json(m, &b), HV_OK);
    assert_non_null(strstr(b.data, "{\"id\":\"PID\",\"fields\":[null,\"1\",\"\",[[\"7\",\"\",\"\",[\"X\",\"Y\"]],\"8\"],\"\",\"O&N\"]}"));
    assert_non_null(strstr(b.data, "\"fields\":[null,\"|\",\"^~\\\\&\",\"A\",\"\""));
    hv_buf_release(&b);
    hv_arena_free(a);
}

int run_parse_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hl7v2_parse_splits_segments_on_cr_lf_and_crlf),
        cmocka_unit_test(hl7v2_parse_reads_any_delimiters),
        cmocka_unit_test(hl7v2_parse_accepts_three_encoding_characters),
        cmocka_unit_test(hl7v2_parse_keeps_bom_and_z_segments),
        cmocka_unit_test(hl7v2_parse_rejects_bad_input_precisely),
        cmocka_unit_test(hl7v2_parse_enforces_segment_cap),
        cmocka_unit_test(hl7v2_parse_lenient_escapes_when_asked),
        cmocka_unit_test(hl7v2_batch_split_finds_messages_and_checks_envelopes),
        cmocka_unit_test(hl7v2_batch_split_caps_message_count),
        cmocka_unit_test(hl7v2_to_json_writes_the_tree),
    };
    return cmocka_run_group_tests_name("hl7v2_parse", tests, NULL, NULL);
}
