/* mllp.c — tests of adapters/hl7v2/mllp.c (MLLP release 2 framing, resumable). */
#include <string.h>

#include "tests.h"

static void hl7v2_mllp_reads_many_frames_in_one_read(void **state) {
    const char in[] = "\x0b" "A1\x1c\r" "\r\n" "\x0b" "B22\x1c\r" "\x0b\x1c\r";
    hv_mllp_framer_t f;
    const char *msg;
    size_t len, used, off = 0, n = sizeof(in) - 1;
    const char *want[] = {"A1", "B22", ""};
    int i;
    (void)state;
    hv_mllp_framer_init(&f, 100);
    for (i = 0; i < 3; i++) {
        assert_int_equal(hv_mllp_framer_feed(&f, in + off, n - off, &used, &msg, &len), HV_OK);
        assert_int_equal(len, strlen(want[i]));
        assert_memory_equal(msg, want[i], len);
        /* Whole frames inside the input are not copied. */
        assert_true(len == 0 || (msg >= in && msg < in + n));
        off += used;
    }
    assert_int_equal(off, n);
    assert_int_equal(hv_mllp_framer_feed(&f, in + off, 0, &used, &msg, &len), HV_AGAIN);
    assert_false(hv_mllp_framer_partial(&f));
    hv_mllp_framer_release(&f);
}

static void hl7v2_mllp_reassembles_a_frame_fed_byte_by_byte(void **state) {
    const char in[] = "\x0bMSH|^~\\&|A\rPID|1\r\x1c\r";
    hv_mllp_framer_t f;
    const char *msg = NULL;
    size_t len = 0, used, i, n = sizeof(in) - 1;
    int rc = HV_AGAIN;
    (void)state;
    hv_mllp_framer_init(&f, 100);
    for (i = 0; i < n; i++) {
        rc = hv_mllp_framer_feed(&f, in + i, 1, &used, &msg, &len);
        assert_int_equal(used, 1);
        if (i + 1 < n) {
            assert_int_equal(rc, HV_AGAIN);
            assert_true(hv_mllp_framer_partial(&f));
        }
    }
    assert_int_equal(rc, HV_OK);
    assert_int_equal(len, n - 3);
    assert_memory_equal(msg, in + 1, len);
    hv_mllp_framer_release(&f);
}

static void hl7v2_mllp_refuses_oversized_frames(void **state) {
    static const char *inputs[] = {"\x0b" "12345\x1c\r", "\x0b" "12345"};
    size_t i;
    (void)state;
    for (i = 0; i < 2; i++) {
        hv_mllp_framer_t f;
        const char *msg;
        size_t len, used;
        hv_mllp_framer_init(&f, 4);
        assert_int_equal(hv_mllp_framer_feed(&f, inputs[i], strlen(inputs[i]), &used, &msg, &len),
                         HV_ETOOBIG);
        hv_mllp_framer_release(&f);
    }
    {
        /* Exactly at the cap is fine, also across reads. */
        hv_mllp_framer_t f;
        const char *msg;
        size_t len, used;
        hv_mllp_framer_init(&f, 4);
        assert_int_equal(hv_mllp_framer_feed(&f, "\x0b" "12", 3, &used, &msg, &len), HV_AGAIN);
        assert_int_equal(hv_mllp_framer_feed(&f, "34\x1c\r", 4, &used, &msg, &len), HV_OK);
        assert_int_equal(len, 4);
        assert_int_equal(hv_mllp_framer_feed(&f, "\x0b" "12", 3, &used, &msg, &len), HV_AGAIN);
        assert_int_equal(hv_mllp_framer_feed(&f, "345", 3, &used, &msg, &len), HV_ETOOBIG);
        hv_mllp_framer_release(&f);
    }
}

static void hl7v2_mllp_rejects_garbage_and_bad_trailer(void **state) {
    static const char *inputs[] = {"GET / HTTP/1.1\r\n", "\x0b\x41\x1cX", "\x1c\r"};
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(inputs); i++) {
        hv_mllp_framer_t f;
        const char *msg;
        size_t len, used;
        hv_mllp_framer_init(&f, 100);
        assert_int_equal(hv_mllp_framer_feed(&f, inputs[i], strlen(inputs[i]), &used, &msg, &len),
                         HV_EPROTO);
        /* Once broken, the framer stays broken. */
        assert_int_equal(hv_mllp_framer_feed(&f, "\x0b" "A\x1c\r", 4, &used, &msg, &len), HV_EPROTO);
        hv_mllp_framer_release(&f);
    }
}

static void hl7v2_mllp_wrap_and_feed_round_trip(void **state) {
    hv_buf_t b;
    hv_mllp_framer_t f;
    const char *msg;
    size_t len, used;
    (void)state;
    hv_buf_init(&b, 0);
    assert_int_equal(hv_mllp_wrap("MSH|x", 5, &b), HV_OK);
    assert_int_equal(b.len, 8);
    hv_mllp_framer_init(&f, 10);
    assert_int_equal(hv_mllp_framer_feed(&f, b.data, b.len, &used, &msg, &len), HV_OK);
    assert_int_equal(used, 8);
    assert_memory_equal(msg, "MSH|x", 5);
    hv_mllp_framer_release(&f);
    hv_buf_release(&b);
}

int run_mllp_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hl7v2_mllp_reads_many_frames_in_one_read),
        cmocka_unit_test(hl7v2_mllp_reassembles_a_frame_fed_byte_by_byte),
        cmocka_unit_test(hl7v2_mllp_refuses_oversized_frames),
        cmocka_unit_test(hl7v2_mllp_rejects_garbage_and_bad_trailer),
        cmocka_unit_test(hl7v2_mllp_wrap_and_feed_round_trip),
    };
    return cmocka_run_group_tests_name("hl7v2_mllp", tests, NULL, NULL);
}
