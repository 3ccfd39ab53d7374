/* journal.c — tests destinations/audit/journal.c: the frame format of the audit journal. */
#include "tests.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

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

/* Frames written before session 5 ("HVJ1", zlib CRC-32 of the generation and the payload)
 * still decode, so a journal an older binary left behind replays; the corpus files
 * journal2-*.bin (HVJ2) decode too, so their check is computed as documented. */
static void journal_reads_older_crc_frames_and_corpus_frames(void **state) {
    hv__audit_t a;
    hv__aev_t *ev, *back;
    hv_buf_t f;
    size_t used = 0;
    unsigned char g[8] = {7, 0, 0, 0, 0, 0, 0, 0};
    uint32_t crc, plen;
    (void)state;
    memset(&a, 0, sizeof(a));
    ev = sample(&a);
    back = hv__aev_new(&a);
    hv_buf_init(&f, 0);
    assert_int_equal(hv__journal_encode(ev, 7, &f), HV_OK);
    assert_memory_equal(f.data, "HVJ2", 4);
    memcpy(&plen, f.data + 4, 4); /* little-endian host (x86-64, aarch64) */
    crc = (uint32_t)crc32(crc32(0L, g, 8), (const unsigned char *)f.data + 12, plen);
    memcpy(f.data, "HVJ1", 4);
    assert_int_not_equal(hv__journal_decode(f.data, f.len, 7, &used, back), HV_OK); /* HVJ2's check is no CRC */
    memcpy(f.data + 8, &crc, 4);
    assert_int_equal(hv__journal_decode(f.data, f.len, 7, &used, back), HV_OK);
    assert_string_equal(back->who, "alice");
    assert_int_not_equal(hv__journal_decode(f.data, f.len, 8, &used, back), HV_OK); /* another generation */
    hv_buf_release(&f);
    hv__aev_free(ev);
    hv__aev_free(back);
    {
        const char *dir = getenv("HV_SRCDIR");
        static const char *const files[] = {"journal2-read.bin", "journal2-breakglass.bin", "journal3-read.bin",
                                            "journal3-search-breakglass.bin"};
        assert_non_null(dir);
        for (size_t i = 0; i < HV_ARRAY_LEN(files); i++) {
            char path[1024], buf[4096];
            FILE *fp;
            size_t n;
            hv__aev_t *x = hv__aev_new(&a);
            snprintf(path, sizeof(path), "%s/test/fuzz/corpus/audit/%s", dir, files[i]);
            fp = fopen(path, "rb");
            assert_non_null(fp);
            n = fread(buf, 1, sizeof(buf), fp);
            fclose(fp);
            assert_int_equal(hv__journal_decode(buf, n, 0, &used, x), HV_OK);
            hv__aev_free(x);
        }
    }
}

int run_journal_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(journal_frame_round_trips_and_splits_patients),
        cmocka_unit_test(journal_decode_rejects_torn_altered_and_stale_frames),
        cmocka_unit_test(journal_reads_older_crc_frames_and_corpus_frames),
    };
    return cmocka_run_group_tests_name("audit journal", tests, NULL, NULL);
}
