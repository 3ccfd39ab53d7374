/* main.c — runs every hl7v2 unit-test group; the exit status is the failure count. */
#include <string.h>

#include "tests.h"

hv_hl7v2_msg_t *test_parse(hv_arena_t **arena, const char *text) {
    hv_hl7v2_msg_t *m;
    hv_error_t err;
    *arena = hv_arena_new(0);
    assert_non_null(*arena);
    m = hv_arena_calloc(*arena, sizeof(*m));
    assert_non_null(m);
    hv_error_clear(&err);
    if (hv_hl7v2_parse(*arena, text, strlen(text), NULL, m, &err, NULL) != HV_OK)
        fail_msg("parse failed: %s (%s)", err.message, err.location);
    return m;
}

int main(void) {
    int failed = 0;
    failed += run_parse_tests();
    failed += run_escape_tests();
    failed += run_charset_tests();
    failed += run_path_tests();
    failed += run_ack_tests();
    failed += run_mllp_tests();
    failed += run_sender_tests();
    failed += run_corpus_tests();
    return failed;
}
