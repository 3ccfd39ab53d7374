/* journal.c — tests destinations/audit/journal.c: the frame format of the audit journal. */
#include "tests.h"

#include <string.h>

static hv__aev_t *sample(hv__audit_t *a) {
    hv__aev_t *ev = hv__aev_new(a);
    assert_non_null(ev);
    ev->jid = 42;
    ev->recorded = 1764115200123;
    ev->outcome = 4;
    ev->action[0] = 'R';
    ev->subtype = "search-type";
    ev->who = "alice";
    ev->role = "clinician";
    ev->ip = "10.0.0.1";
    ev->patients_csv = "p1,p2";
    ev->breakglass = "";
    ev->etype = "Observation";
    ev->eid = "";
    assert_int_equal(hv_buf_puts(&ev->content, "{\"v\":2,\"q\":\"_count=5\"}"), HV_OK);
    return ev;
}

static void journal_frame_round_trips_and_splits_patients(void **state) {
    hv__audit_t a;
    hv__aev_t *ev, *back;
    hv_buf_t f;
    size_t used = 0;
    (void)state;
    memset(&a, 0, sizeof(a));
    ev = sample(&a);
    back = hv__aev_new(&a);
    hv_buf_init(&f, 0);
    assert_int_equal(hv__journal_encode(ev, 7, &f), HV_OK);
    assert_int_equal(hv__journal_decode(f.data, f.len, 7, &used, back), HV_OK);
    assert_int_equal(used, f.len);
    assert_int_equal(back->jid, 42);
    assert_int_equal(back->recorded, 1764115200123);
    assert_int_equal(back->outcome, 4);
    assert_string_equal(back->action, "R");
    assert_string_equal(back->subtype, "search-type");
    assert_string_equal(back->who, "alice");
    assert_string_equal(back->patients_csv, "p1,p2");
    assert_int_equal(back->np, 2);
    assert_string_equal(back->patients[1], "p2");
    assert_int_equal(back->content.len, ev->content.len);
    assert_memory_equal(back->content.data, ev->content.data, ev->content.len);
    hv_buf_release(&f);
    hv__aev_free(ev);
    hv__aev_free(back);
}

/* A frame counts only whole, unaltered and of the file's generation (a reset file's old
 * frames end the replay). */
static void journal_decode_rejects_torn_altered_and_stale_frames(void **state) {
    hv__audit_t a;
    hv__aev_t *ev, *back;
    hv_buf_t f;
    size_t used = 0;
    (void)state;
    memset(&a, 0, sizeof(a));
    ev = sample(&a);
    back = hv__aev_new(&a);
    hv_buf_init(&f, 0);
    assert_int_equal(hv__journal_encode(ev, 3, &f), HV_OK);
    assert_int_equal(hv__journal_decode(f.data, f.len, 4, &used, back), HV_EPROTO); /* stale generation */
    for (size_t cut = 0; cut < f.len; cut += 7)
        assert_int_equal(hv__journal_decode(f.data, cut, 3, &used, back), HV_EPROTO); /* torn */
    for (size_t i = 0; i < f.len; i += 5) {
        f.data[i] ^= 0x20;
        assert_int_equal(hv__journal_decode(f.data, f.len, 3, &used, back), HV_EPROTO); /* altered */
        f.data[i] ^= 0x20;
    }
    assert_int_equal(hv__journal_decode(f.data, f.len, 3, &used, back), HV_OK);
    hv_buf_release(&f);
    hv__aev_free(ev);
    hv__aev_free(back);
}

int run_journal_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(journal_frame_round_trips_and_splits_patients),
        cmocka_unit_test(journal_decode_rejects_torn_altered_and_stale_frames),
    };
    return cmocka_run_group_tests_name("audit journal", tests, NULL, NULL);
}
