/* ack.c — tests of adapters/hl7v2/ack.c (HL7 v2.5.1 §2.9, MSA, ERR, tables 0008/0155/0357). */
#include <string.h>

#include "tests.h"

static char *build(const char *msg, int code, const hv_hl7v2_ack_err_t *errs, size_t nerrs) {
    hv_arena_t *a = NULL;
    hv_hl7v2_msg_t *m = msg != NULL ? test_parse(&a, msg) : NULL;
    hv_hl7v2_ack_opts_t o;
    hv_buf_t b;
    memset(&o, 0, sizeof(o));
    o.code = code;
    o.errs = errs;
    o.nerrs = nerrs;
    o.control_id = "ACK1";
    o.now_ms = 1700000000123ULL; /* 2023-11-14T22:13:20.123Z */
    hv_buf_init(&b, 0);
    assert_int_equal(hv_hl7v2_ack_build(m, &o, &b), HV_OK);
    if (m != NULL) hv_arena_free(a);
    return hv_buf_take(&b);
}

static void hl7v2_ack_original_mode_swaps_sender_and_receiver(void **state) {
    char *ack = build("MSH|^~\\&|LAB|HOSP|EHR|CLINIC|20240101||ORU^R01^ORU_R01|C42|P|2.5.1\rPID|1\r",
                      HV_HL7V2_ACK_ACCEPT, NULL, 0);
    (void)state;
    assert_string_equal(ack, "MSH|^~\\&|EHR|CLINIC|LAB|HOSP|20231114221320.123+0000||ACK^R01^ACK|"
                             "ACK1|P|2.5.1\rMSA|AA|C42\r");
    hv_free(ack);
}

static void hl7v2_ack_codes_follow_the_mode(void **state) {
    static const struct {
        const char *msg;
        int code;
        const char *msa;
    } cases[] = {
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5\r", HV_HL7V2_ACK_ACCEPT, "MSA|AA|X\r"},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5\r", HV_HL7V2_ACK_ERROR, "MSA|AE|X\r"},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5\r", HV_HL7V2_ACK_REJECT, "MSA|AR|X\r"},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5|||AL|NE\r", HV_HL7V2_ACK_ACCEPT, "MSA|CA|X\r"},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5|||AL|AL\r", HV_HL7V2_ACK_ERROR, "MSA|CE|X\r"},
        {"MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5|||ER|AL\r", HV_HL7V2_ACK_REJECT, "MSA|CR|X\r"},
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        char *ack = build(cases[i].msg, cases[i].code, NULL, 0);
        if (strstr(ack, cases[i].msa) == NULL) fail_msg("case %zu: %s", i, ack);
        /* An enhanced-mode ACK asks for no acknowledgement of itself. */
        if (strstr(cases[i].msg, "|||") != NULL) assert_non_null(strstr(ack, "|||NE|NE\r"));
        hv_free(ack);
    }
}

static void hl7v2_ack_wanted_follows_msh15(void **state) {
    static const struct {
        const char *msh15;
        int accept, error;
    } cases[] = {
        {"", 1, 1}, {"AL", 1, 1}, {"NE", 0, 0}, {"ER", 0, 1}, {"SU", 1, 0},
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        char msg[128];
        hv_arena_t *a;
        hv_hl7v2_msg_t *m;
        snprintf(msg, sizeof(msg), "MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5|||%s|AL\r",
                 cases[i].msh15);
        m = test_parse(&a, msg);
        assert_true(hv_hl7v2_ack_is_enhanced(m));
        assert_int_equal(hv_hl7v2_ack_wanted(m, HV_HL7V2_ACK_ACCEPT), cases[i].accept);
        assert_int_equal(hv_hl7v2_ack_wanted(m, HV_HL7V2_ACK_REJECT), cases[i].error);
        hv_arena_free(a);
    }
}

static void hl7v2_ack_err_segment_says_what_and_where(void **state) {
    hv_hl7v2_ack_err_t e[2] = {
        {"PID-3[2].1", HV_HL7V2_E_REQUIRED_MISSING, HV_HL7V2_SEV_ERROR, "patient id | missing"},
        {"OBX[3]", HV_HL7V2_E_SEGMENT_SEQUENCE, HV_HL7V2_SEV_WARNING, "order"},
    };
    char *ack = build("MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.6\r", HV_HL7V2_ACK_ERROR, e, 2);
    (void)state;
    assert_non_null(strstr(ack, "\rERR||PID^1^3^2^1|101^Required field missing^HL70357|E||||"
                                "patient id \\F\\ missing\r"));
    assert_non_null(strstr(ack, "\rERR||OBX^3|100^Segment sequence error^HL70357|W||||order\r"));
    hv_free(ack);
}

static void hl7v2_ack_old_versions_use_eld_and_msa3(void **state) {
    hv_hl7v2_ack_err_t e = {"PID-3", HV_HL7V2_E_DATA_TYPE, HV_HL7V2_SEV_ERROR, "bad id"};
    char *ack = build("MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.3\r", HV_HL7V2_ACK_REJECT, &e, 1);
    (void)state;
    assert_non_null(strstr(ack, "||ACK^A01|ACK1|P|2.3\r"));
    assert_non_null(strstr(ack, "\rMSA|AR|X|bad id\r"));
    assert_non_null(strstr(ack, "\rERR|PID^1^3^102&Data type error&HL70357\r"));
    hv_free(ack);
}

static void hl7v2_ack_survives_absurd_versions(void **state) {
    /* Regression (fuzz_hl7v2 under UBSan): a long MSH-12 overflowed the version number. */
    char *ack = build("MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|99999999999999999999.99999999999999\r",
                      HV_HL7V2_ACK_ACCEPT, NULL, 0);
    (void)state;
    assert_non_null(strstr(ack, "|ACK^A01^ACK|"));
    hv_free(ack);
}

static void hl7v2_ack_keeps_delimiters_and_charset(void **state) {
    char *ack = build("MSH*@!$%*A*B*C*D*1**ADT@A01*X*T*2.5******UNICODE UTF-8\r",
                      HV_HL7V2_ACK_ACCEPT, NULL, 0);
    char code[3];
    hv_hl7v2_span_t ctl;
    (void)state;
    assert_memory_equal(ack, "MSH*@!$%*C*D*A*B*", 17);
    assert_non_null(strstr(ack, "*ACK@A01@ACK*ACK1*T*2.5******UNICODE UTF-8\r"));
    assert_int_equal(hv_hl7v2_ack_read(ack, strlen(ack), code, &ctl), HV_OK);
    assert_string_equal(code, "AA");
    assert_memory_equal(ctl.p, "X", 1);
    hv_free(ack);
}

static void hl7v2_ack_without_message_uses_defaults(void **state) {
    char *ack = build(NULL, HV_HL7V2_ACK_REJECT, NULL, 0);
    (void)state;
    assert_non_null(strstr(ack, "MSH|^~\\&|||||20231114221320.123+0000||ACK|ACK1|P|2.5.1\rMSA|AR|\r"));
    hv_free(ack);
}

static void hl7v2_ack_for_broken_body_echoes_control_id(void **state) {
    const char *raw = "MSH|^~\\&|A|B|C|D|1||ADT^A01|CTL9|P|2.5\rPID|\\Q\\\r";
    hv_arena_t *a = hv_arena_new(0);
    hv_hl7v2_msg_t m;
    hv_hl7v2_ack_opts_t o;
    hv_buf_t b;
    char code[3];
    hv_hl7v2_span_t ctl;
    (void)state;
    assert_int_equal(hv_hl7v2_parse(a, raw, strlen(raw), NULL, &m, NULL, NULL), HV_EPROTO);
    assert_int_equal(hv_hl7v2_msh_peek(a, raw, strlen(raw), &m), HV_OK);
    memset(&o, 0, sizeof(o));
    o.code = HV_HL7V2_ACK_REJECT;
    hv_buf_init(&b, 0);
    assert_int_equal(hv_hl7v2_ack_build(&m, &o, &b), HV_OK);
    assert_int_equal(hv_hl7v2_ack_read(b.data, b.len, code, &ctl), HV_OK);
    assert_string_equal(code, "AR");
    assert_int_equal(ctl.len, 4);
    assert_memory_equal(ctl.p, "CTL9", 4);
    hv_buf_release(&b);
    hv_arena_free(a);
}

static void hl7v2_ack_read_rejects_non_acks(void **state) {
    char code[3];
    (void)state;
    assert_int_equal(hv_hl7v2_ack_read("MSH|^~\\&|A\rPID|1\r", 17, code, NULL), HV_EPROTO);
    assert_int_equal(hv_hl7v2_ack_read("garbage", 7, code, NULL), HV_EPROTO);
    assert_int_equal(hv_hl7v2_ack_read("MSH|^~\\&|A\rMSA|AAA|1\r", 21, code, NULL), HV_EPROTO);
}

int run_ack_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hl7v2_ack_original_mode_swaps_sender_and_receiver),
        cmocka_unit_test(hl7v2_ack_codes_follow_the_mode),
        cmocka_unit_test(hl7v2_ack_wanted_follows_msh15),
        cmocka_unit_test(hl7v2_ack_err_segment_says_what_and_where),
        cmocka_unit_test(hl7v2_ack_old_versions_use_eld_and_msa3),
        cmocka_unit_test(hl7v2_ack_survives_absurd_versions),
        cmocka_unit_test(hl7v2_ack_keeps_delimiters_and_charset),
        cmocka_unit_test(hl7v2_ack_without_message_uses_defaults),
        cmocka_unit_test(hl7v2_ack_for_broken_body_echoes_control_id),
        cmocka_unit_test(hl7v2_ack_read_rejects_non_acks),
    };
    return cmocka_run_group_tests_name("hl7v2_ack", tests, NULL, NULL);
}
