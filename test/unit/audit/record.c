/* record.c — tests destinations/audit/record.c: the patient scan's cache answers exactly
 * what the scanner answers (ids, order, cap), for hits, misses and replaced bodies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests.h"

/* The scanner's answer and the cache's, after the same prefilled ids, must be equal. */
static void check_same(hv__audit_t *a, const char *path, const char *body, const char *const *pre, size_t npre,
                       size_t max) {
    hv_arena_t *ar = hv_arena_new(0);
    const char *want[HV_AUDIT_MAX_PATIENTS], *got[HV_AUDIT_MAX_PATIENTS];
    size_t nw = 0, ng = 0;
    assert_non_null(ar);
    for (size_t i = 0; i < npre; i++) want[nw++] = got[ng++] = pre[i];
    hv__audit_scan_patients(body, strlen(body), ar, want, &nw, max);
    assert_int_equal(hv__audit_scan_cached(a, path, body, strlen(body), ar, got, &ng, max), HV_OK);
    if (ng != nw) fail_msg("%s: %zu ids from the cache, %zu from the scanner", body, ng, nw);
    for (size_t i = 0; i < nw; i++)
        if (strcmp(got[i], want[i]) != 0) fail_msg("%s: id %zu is %s, want %s", body, i, got[i], want[i]);
    hv_arena_free(ar);
}

static const char *const bodies[] = {
    "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"name\":[{\"family\":\"Bench\"}]}",
    "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"link\":[{\"other\":{\"reference\":\"Patient/p2\"}}]}",
    "{\"resourceType\":\"Observation\",\"id\":\"o1\",\"subject\":{\"reference\":\"Patient/p3\"},"
    "\"performer\":[{\"reference\":\"Patient/p1\"},{\"reference\":\"Practitioner/d\"}]}",
    "<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"px\"/><link><other><reference value=\"Patient/py\"/>"
    "</other></link></Patient>",
    "{\"resourceType\":\"Practitioner\",\"id\":\"d1\"}",
};

static void audit_scan_cache_answers_as_the_scanner(void **state) {
    hv__audit_t *a = hv_calloc(1, sizeof(*a));
    static const char *const pre1[] = {"p1"}, *const pre2[] = {"p2", "p9"};
    uint64_t hits, misses;
    (void)state;
    assert_non_null(a);
    /* Each body twice at its own path (a miss, then a hit), with and without ids before it. */
    for (int round = 0; round < 2; round++)
        for (size_t i = 0; i < HV_ARRAY_LEN(bodies); i++) {
            char path[64];
            snprintf(path, sizeof(path), "/fhir/X/%zu", i);
            check_same(a, path, bodies[i], NULL, 0, HV_AUDIT_MAX_PATIENTS);
            check_same(a, path, bodies[i], pre1, 1, HV_AUDIT_MAX_PATIENTS);
            check_same(a, path, bodies[i], pre2, 2, HV_AUDIT_MAX_PATIENTS);
            check_same(a, path, bodies[i], pre2, 2, 3); /* a cap reached by the prefilled ids */
        }
    hv__audit_scan_cache_stats(a, &hits, &misses);
    assert_int_equal(misses, HV_ARRAY_LEN(bodies));
    assert_int_equal(hits, 8 * HV_ARRAY_LEN(bodies) - misses);
    /* One path, its body changing (a new version): every answer is the new body's. */
    for (size_t i = 0; i < HV_ARRAY_LEN(bodies); i++) check_same(a, "/fhir/Patient/p1", bodies[i], pre1, 1, 64);
    /* Same length, one byte different. */
    check_same(a, "/fhir/Patient/q", "{\"reference\":\"Patient/aa\"}", NULL, 0, 64);
    check_same(a, "/fhir/Patient/q", "{\"reference\":\"Patient/ab\"}", NULL, 0, 64);
    hv__audit_scan_cache_free(a);
    hv_free(a);
}

static void audit_scan_cache_keeps_the_cap_of_crowded_bodies(void **state) {
    hv__audit_t *a = hv_calloc(1, sizeof(*a));
    hv_buf_t b;
    static const char *const pre[] = {"p0", "p5"};
    (void)state;
    assert_non_null(a);
    hv_buf_init(&b, 0);
    /* More distinct patients than an event lists: never cached, still the scanner's answer. */
    assert_int_equal(hv_buf_append(&b, "[", 1), HV_OK);
    for (int i = 0; i < HV_AUDIT_MAX_PATIENTS + 6; i++) {
        char r[64];
        int k = snprintf(r, sizeof(r), "%s{\"reference\":\"Patient/p%d\"}", i ? "," : "", i);
        assert_int_equal(hv_buf_append(&b, r, (size_t)k), HV_OK);
    }
    assert_int_equal(hv_buf_append(&b, "]", 1), HV_OK);
    for (int round = 0; round < 2; round++) {
        check_same(a, "/fhir/Group/g", b.data, NULL, 0, HV_AUDIT_MAX_PATIENTS);
        check_same(a, "/fhir/Group/g", b.data, pre, 2, HV_AUDIT_MAX_PATIENTS);
    }
    hv_buf_release(&b);
    hv__audit_scan_cache_free(a);
    hv_free(a);
}


/* ---- the record without an event (HVJ3) against the event path ---- */

static const char *const pats_a[] = {"p1", "p2", "p1", "", "p3"};
static const char *const pats_b[] = {"x-1"};
static char long_id[300], long_query[5000];

/* A mix of the shapes the engine records: reads, searches, writes, logins, channel views. */
static hv_audit_event_t shapes[] = {
    {'R', "read", 0, NULL, "alice", "clinician", "app1", "10.0.0.1", "Patient", "p1", "", pats_a, 5, NULL, NULL},
    {'E', "search-type", 0, NULL, "bob", "admin", "", "::1", "Observation", "", "_count=5&subject=Patient/p2",
     pats_a, 5, "TREAT", NULL},
    {'C', "create", 4, NULL, "carol", "clinician", "c", "1.2.3.4", "Observation", "", NULL, pats_b, 1, NULL,
     "Bad Request"},
    {'E', "login-failure", 4, NULL, "mallory", "", NULL, "192.168.1.1", "User", "mallory", NULL, NULL, 0, NULL,
     "bad password \"quoted\"\n\x01\\ \t\r"},
    {'R', "message-viewed", 0, NULL, NULL, NULL, NULL, NULL, "Message", "adt/42", NULL, pats_b, 1, "HRESCH", NULL},
    {'D', "delete", 12, NULL, "dave", "auditor", "cli", "", "Patient", long_id, long_query, pats_b, 1, NULL, NULL},
};

static int rec_dir(char *dir, size_t n) {
    snprintf(dir, n, "/tmp/hv-audit-record-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static void rm_dir(const char *dir) {
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void fill_long(void) {
    memset(long_id, 'i', sizeof(long_id) - 1);
    memset(long_query, 'q', sizeof(long_query) - 1);
    shapes[5].entity_id = long_id;
    shapes[5].query = long_query;
}

/* The AuditEvent JSON of ev (rendered as every reader does) and its chain hash after prev. */
static void render_and_hash(const hv__aev_t *ev, hv_buf_t *json, char hash[65]) {
    hv_buf_reset(json);
    assert_int_equal(hv__aev_render(ev, json), HV_OK);
    hv__audit_hash(HV__AUDIT_ZERO_HASH, 7, ev->recorded, ev->action, ev->subtype, ev->outcome, ev->who, ev->role,
                   ev->ip, ev->patients_csv, ev->content.data, ev->content.len, hash);
}

/* Decoding a run of frames with each record's predecessor (module.c expand_runs) shares
 * the content and patient list of a record whose frame holds the same bytes for them, and
 * only then: every record decodes to what it decodes to alone. */
static void audit_decode_own_shares_only_equal_content(void **state) {
    static const size_t order[] = {0, 0, 0, 1, 1, 0, 2, 3, 3, 4, 5, 5, 0};
    enum { N = sizeof(order) / sizeof(order[0]) };
    hv__audit_t a;
    hv_buf_t frames;
    size_t at[N], used = 0;
    hv__aev_t *ev[N], *alone;
    hv_arena_t *ar = hv_arena_new(0);
    (void)state;
    fill_long();
    memset(&a, 0, sizeof(a));
    hv_buf_init(&frames, 0);
    assert_non_null(ar);
    for (size_t i = 0; i < N; i++) {
        hv__arec_src_t r;
        assert_int_equal(hv__audit_rec_gather(&shapes[order[i]], ar, &r), HV_OK);
        r.recorded = 1764150000000 + (int64_t)i;
        at[i] = frames.len;
        assert_int_equal(hv__journal_encode_src(&r, (int64_t)i + 1, 1, &frames), HV_OK);
    }
    for (size_t i = 0; i < N; i++) {
        const unsigned char *f = (const unsigned char *)frames.data + at[i];
        ev[i] = hv__aev_new(&a);
        alone = hv__aev_new(&a);
        assert_non_null(ev[i]);
        assert_non_null(alone);
        assert_int_equal(hv__journal_decode_own(f, &used, ev[i], i > 0 ? ev[i - 1] : NULL), HV_OK);
        assert_int_equal(hv__journal_decode_own(f, &used, alone, NULL), HV_OK);
        assert_int_equal(ev[i]->recorded, 1764150000000 + (int64_t)i);
        assert_int_equal(ev[i]->content.len, alone->content.len);
        assert_memory_equal(ev[i]->content.data, alone->content.data, alone->content.len);
        assert_int_equal(ev[i]->np, alone->np);
        for (size_t k = 0; k < alone->np; k++) assert_string_equal(ev[i]->patients[k], alone->patients[k]);
        assert_string_equal(ev[i]->patients_csv, alone->patients_csv);
        assert_string_equal(ev[i]->etype, alone->etype);
        assert_string_equal(ev[i]->eid, alone->eid);
        if (i > 0 && order[i] == order[i - 1])
            assert_ptr_equal(ev[i]->content.data, ev[i - 1]->content.data);
        else if (i > 0)
            assert_ptr_not_equal(ev[i]->content.data, ev[i - 1]->content.data);
        hv__aev_free(alone);
    }
    for (size_t i = 0; i < N; i++) hv__aev_free(ev[i]);
    hv_buf_release(&frames);
    hv_arena_free(ar);
}

static void audit_fast_record_reads_back_as_the_event_path_record(void **state) {
    hv__audit_t a;
    hv__journal_t *j = NULL;
    hv_error_t err;
    char dir[64];
    hv_buf_t ja, jb;
    (void)state;
    fill_long();
    memset(&a, 0, sizeof(a));
    hv_error_clear(&err);
    assert_int_equal(rec_dir(dir, sizeof(dir)), 0);
    assert_int_equal(hv__journal_open(dir, &j, &err), HV_OK);
    hv_buf_init(&ja, 0);
    hv_buf_init(&jb, 0);
    for (size_t i = 0; i < HV_ARRAY_LEN(shapes); i++) {
        hv__aev_t *ev = hv__aev_new(&a), *back = hv__aev_new(&a);
        hv_arena_t *ar = hv_arena_new(0);
        hv__arec_src_t r;
        const unsigned char *frame = NULL;
        size_t flen = 0, used = 0;
        int64_t jid = 0;
        char ha[65], hb[65];
        assert_non_null(ev);
        assert_non_null(back);
        assert_int_equal(hv__aev_fill(ev, &shapes[i]), HV_OK);
        assert_int_equal(hv__audit_rec_gather(&shapes[i], ar, &r), HV_OK);
        r.recorded = ev->recorded; /* the one member that is the time of the call */
        assert_int_equal(hv__journal_write_src(j, &r, &jid, &frame, &flen), HV_OK);
        {
            /* the frame in the file is the one hv__journal_encode_src makes (generation 1: a new journal) */
            hv_buf_t enc;
            hv_buf_init(&enc, 0);
            assert_int_equal(hv__journal_encode_src(&r, jid, 1, &enc), HV_OK);
            assert_int_equal(enc.len, flen);
            assert_memory_equal(enc.data, frame, flen);
            hv_buf_release(&enc);
        }
        assert_int_equal(hv__journal_decode_own(frame, &used, back, NULL), HV_OK);
        assert_int_equal(used, flen);
        assert_int_equal(back->jid, jid);
        /* the stored members, the stored content, the hash, and the AuditEvent read back */
        assert_string_equal(back->action, ev->action);
        assert_string_equal(back->subtype, ev->subtype);
        assert_string_equal(back->who, ev->who);
        assert_string_equal(back->role, ev->role);
        assert_string_equal(back->ip, ev->ip);
        assert_string_equal(back->patients_csv, ev->patients_csv);
        assert_int_equal(back->np, ev->np);
        assert_string_equal(back->breakglass, ev->breakglass);
        assert_int_equal(back->outcome, ev->outcome);
        if (back->content.len != ev->content.len || memcmp(back->content.data, ev->content.data, ev->content.len) != 0)
            fail_msg("shape %zu: content %s, want %s", i, back->content.data, ev->content.data);
        render_and_hash(ev, &ja, ha);
        render_and_hash(back, &jb, hb);
        assert_string_equal(hb, ha);
        if (strcmp(ja.data, jb.data) != 0) fail_msg("shape %zu: AuditEvent\n%s\nwant\n%s", i, jb.data, ja.data);
        hv__aev_free(ev);
        hv__aev_free(back);
        hv_arena_free(ar);
    }
    /* what is not a record is refused by both */
    {
        hv_audit_event_t bad = {'Q', "x", 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL};
        hv__arec_src_t r;
        hv_arena_t *ar = hv_arena_new(0);
        assert_int_equal(hv__audit_rec_gather(&bad, ar, &r), HV_EINVAL);
        bad.action = 'R';
        bad.subtype = "";
        assert_int_equal(hv__audit_rec_gather(&bad, ar, &r), HV_EINVAL);
        hv_arena_free(ar);
    }
    hv_buf_release(&ja);
    hv_buf_release(&jb);
    hv__journal_close(j);
    rm_dir(dir);
}

typedef struct seen {
    int n;
    char subtype[16][32];
    char content[16][256];
} seen_t;

static int collect(const hv__arec_t *r, void *ud) {
    seen_t *s = ud;
    if (s->n < 16) {
        snprintf(s->subtype[s->n], sizeof(s->subtype[0]), "%s", r->subtype);
        snprintf(s->content[s->n], sizeof(s->content[0]), "%.*s", (int)r->clen, r->content);
        s->n++;
    }
    return 0;
}

/* A journal left by a crash holding frames of both kinds — events (HVJ2, as an older
 * binary or the event path writes them) and records (HVJ3) — replays into one chain in
 * order, and the chain verifies. */
static void audit_journal_replays_event_and_record_frames_as_one_chain(void **state) {
    hv__audit_t a;
    hv__journal_t *j = NULL;
    hv_db_t *db = NULL;
    hv_error_t err;
    hv_audit_verify_t v;
    char dir[64];
    int64_t replayed = 0;
    seen_t seen;
    hv__ascan_t f;
    const char *want[8];
    size_t nw = 0;
    (void)state;
    fill_long();
    memset(&a, 0, sizeof(a));
    memset(&seen, 0, sizeof(seen));
    hv_error_clear(&err);
    assert_int_equal(rec_dir(dir, sizeof(dir)), 0);
    assert_int_equal(hv__journal_open(dir, &j, &err), HV_OK);
    for (size_t i = 0; i < 5; i++) {
        const hv_audit_event_t *in = &shapes[i];
        if (i % 2 == 0) {
            hv__aev_t *ev = hv__aev_new(&a);
            assert_int_equal(hv__aev_fill(ev, in), HV_OK);
            assert_int_equal(hv__journal_write(j, ev), HV_OK);
            hv__aev_free(ev);
        } else {
            hv_arena_t *ar = hv_arena_new(0);
            hv__arec_src_t r;
            const unsigned char *frame;
            size_t flen;
            int64_t jid;
            assert_int_equal(hv__audit_rec_gather(in, ar, &r), HV_OK);
            assert_int_equal(hv__journal_write_src(j, &r, &jid, &frame, &flen), HV_OK);
            hv_arena_free(ar);
        }
        want[nw++] = in->subtype;
    }
    hv__journal_close(j); /* as a kill -9 leaves it: nothing committed */
    j = NULL;
    assert_int_equal(hv_db_open(NULL, dir, "audit", &db, &err), HV_OK);
    assert_int_equal(hv_db_migrate(db, "audit", hv__audit_migrations(db), &err), HV_OK);
    assert_int_equal(hv__journal_open(dir, &j, &err), HV_OK);
    assert_int_equal(hv__journal_replay(j, &a, db, &replayed), HV_OK);
    assert_int_equal(replayed, 5);
    assert_int_equal(hv__audit_verify_db(db, NULL, 0, &v), HV_OK);
    assert_string_equal(v.problem, "");
    assert_int_equal(v.checked, 5);
    hv__audit_scan_init(&f);
    assert_int_equal(hv__audit_block_scan(db, &f, collect, &seen), HV_OK);
    assert_int_equal(seen.n, 5);
    for (size_t i = 0; i < nw; i++) assert_string_equal(seen.subtype[i], want[i]);
    /* the record frames' stored content is the event path's */
    {
        hv__aev_t *ev = hv__aev_new(&a);
        assert_int_equal(hv__aev_fill(ev, &shapes[1]), HV_OK);
        assert_string_equal(seen.content[1], ev->content.data);
        hv__aev_free(ev);
    }
    /* a second replay finds nothing new */
    hv__journal_close(j);
    assert_int_equal(hv__journal_open(dir, &j, &err), HV_OK);
    assert_int_equal(hv__journal_replay(j, &a, db, &replayed), HV_OK);
    assert_int_equal(replayed, 0);
    hv__journal_close(j);
    hv_db_close(db);
    rm_dir(dir);
}

/* A record frame altered on disk (a byte of its facts) is not replayed: its check fails
 * and the journal ends there, as for HVJ2 frames. */
static void audit_record_frame_check_rejects_an_altered_byte(void **state) {
    hv__audit_t a;
    hv__journal_t *j = NULL;
    hv_error_t err;
    hv_arena_t *ar = hv_arena_new(0);
    hv__arec_src_t r;
    const unsigned char *frame;
    size_t flen, used = 0;
    int64_t jid;
    char dir[64];
    unsigned char copy[512];
    hv__aev_t *ev;
    (void)state;
    memset(&a, 0, sizeof(a));
    hv_error_clear(&err);
    assert_int_equal(rec_dir(dir, sizeof(dir)), 0);
    assert_int_equal(hv__journal_open(dir, &j, &err), HV_OK);
    assert_int_equal(hv__audit_rec_gather(&shapes[0], ar, &r), HV_OK);
    assert_int_equal(hv__journal_write_src(j, &r, &jid, &frame, &flen), HV_OK);
    assert_true(flen < sizeof(copy));
    memcpy(copy, frame, flen);
    ev = hv__aev_new(&a);
    /* the journal's generation is 1 in a new file */
    assert_int_equal(hv__journal_decode((const char *)copy, flen, 1, &used, ev), HV_OK);
    copy[flen - 3] ^= 0x20;
    assert_int_equal(hv__journal_decode((const char *)copy, flen, 1, &used, ev), HV_EPROTO);
    hv__aev_free(ev);
    hv_arena_free(ar);
    hv__journal_close(j);
    rm_dir(dir);
}

int run_record_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(audit_scan_cache_answers_as_the_scanner),
        cmocka_unit_test(audit_scan_cache_keeps_the_cap_of_crowded_bodies),
        cmocka_unit_test(audit_fast_record_reads_back_as_the_event_path_record),
        cmocka_unit_test(audit_decode_own_shares_only_equal_content),
        cmocka_unit_test(audit_journal_replays_event_and_record_frames_as_one_chain),
        cmocka_unit_test(audit_record_frame_check_rejects_an_altered_byte),
    };
    return cmocka_run_group_tests_name("audit/record", tests, NULL, NULL);
}
