/* block.c — tests destinations/audit/block.c: records stored in blocks, read back, walked
 * by verify together with the rows written before migration 6, and tampering inside a
 * block found at the record it touched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests.h"

static char tmpdir[128];

static int setup_dir(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/hv-audit-block-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state) {
    char cmd[256];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* n events by users u<first+i> about patient pt<i % 3>, as one list. */
static hv__aev_t *make_list(hv__audit_t *a, int first, int n) {
    hv__aev_t *head = NULL, *tail = NULL;
    for (int i = 0; i < n; i++) {
        hv_audit_event_t in = {0};
        char who[16], pid[16];
        const char *p[] = {pid};
        hv__aev_t *ev = hv__aev_new(a);
        assert_non_null(ev);
        snprintf(who, sizeof(who), "u%d", first + i);
        snprintf(pid, sizeof(pid), "pt%d", (first + i) % 3);
        in.action = 'R';
        in.subtype = "read";
        in.user = who;
        in.patients = p;
        in.npatients = 1;
        assert_int_equal(hv__aev_fill(ev, &in), HV_OK);
        if (tail) tail->next = ev;
        else head = ev;
        tail = ev;
    }
    return head;
}

static void free_list(hv__aev_t *ev) {
    while (ev != NULL) {
        hv__aev_t *next = ev->next;
        hv__aev_free(ev);
        ev = next;
    }
}

/* Appends n records as blocks in one transaction (the storage thread's batch). */
static void append_blocks(hv_db_t *db, hv__audit_t *a, int first, int n) {
    hv__aev_t *l = make_list(a, first, n);
    char prev[65];
    int64_t seq;
    assert_int_equal(hv_db_begin(db), HV_OK);
    assert_int_equal(hv__audit_tail(db, prev, &seq), HV_OK);
    assert_int_equal(hv__audit_append_blocks(db, l, prev, &seq), HV_OK);
    assert_int_equal(hv_db_commit(db), HV_OK);
    free_list(l);
}

/* Appends n records one row each (the format before migration 6, and PostgreSQL's). */
static void append_rows(hv_db_t *db, hv__audit_t *a, int first, int n) {
    hv__aev_t *l = make_list(a, first, n);
    assert_int_equal(hv_db_begin(db), HV_OK);
    for (hv__aev_t *ev = l; ev != NULL; ev = ev->next) assert_int_equal(hv__audit_append_job(db, ev), HV_OK);
    assert_int_equal(hv_db_commit(db), HV_OK);
    free_list(l);
}

static hv_db_t *open_store(const char *name, hv__audit_t *a, size_t nmigrations) {
    const char *const *all;
    const char *some[16] = {0};
    char dir[200];
    hv_db_t *db = NULL;
    hv_error_t err;
    size_t n = 0;
    hv_error_clear(&err);
    snprintf(dir, sizeof(dir), "%s/%s", tmpdir, name);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(hv__audit_key_load(dir, 1, &a->key, &err), HV_OK);
    assert_int_equal(hv_db_open(NULL, dir, "audit", &db, &err), HV_OK);
    all = hv__audit_migrations(db);
    while (all[n] != NULL) n++;
    assert_true(n >= 6 && n < HV_ARRAY_LEN(some));
    if (nmigrations == 0) nmigrations = n;
    for (size_t i = 0; i < nmigrations; i++) some[i] = all[i];
    assert_int_equal(hv_db_migrate(db, "audit", some, &err), HV_OK);
    return db;
}

static void audit_block_record_round_trips(void **state) {
    hv__audit_t a;
    hv__aev_t *ev;
    hv_buf_t b;
    hv__arec_t r;
    size_t used = 0;
    char hash[65];
    (void)state;
    memset(&a, 0, sizeof(a));
    ev = make_list(&a, 7, 1);
    memset(hash, 'a', 64);
    hash[64] = '\0';
    hv_buf_init(&b, 0);
    assert_int_equal(hv__audit_block_encode(&b, 42, ev, hash), HV_OK);
    assert_int_equal(hv__audit_block_decode((const unsigned char *)b.data, b.len, &used, &r), HV_OK);
    assert_int_equal(used, b.len);
    assert_int_equal(r.seq, 42);
    assert_int_equal(r.recorded, ev->recorded);
    assert_string_equal(r.action, "R");
    assert_string_equal(r.subtype, "read");
    assert_string_equal(r.who, "u7");
    assert_string_equal(r.patients, "pt1");
    assert_int_equal(r.clen, ev->content.len);
    assert_memory_equal(r.content, ev->content.data, r.clen);
    assert_string_equal(r.hash, hash);
    /* every shorter prefix is refused, never read past */
    for (size_t k = 0; k < b.len; k++)
        assert_int_not_equal(hv__audit_block_decode((const unsigned char *)b.data, k, &used, &r), HV_OK);
    /* a length that runs past a string's NUL is refused */
    b.data[4 + 22] ^= 0x01;
    assert_int_not_equal(hv__audit_block_decode((const unsigned char *)b.data, b.len, &used, &r), HV_OK);
    hv_buf_release(&b);
    free_list(ev);
}

typedef struct collect {
    int64_t seqs[256];
    size_t n;
    int64_t stop_at;
} collect_t;

static int collect(const hv__arec_t *r, void *ud) {
    collect_t *c = ud;
    if (c->n < HV_ARRAY_LEN(c->seqs)) c->seqs[c->n++] = r->seq;
    return r->seq == c->stop_at;
}

/* Scans cross block boundaries in both directions, from a cursor inside a block, and the
 * who/patient indexes select exactly the blocks that hold a match. */
static void audit_block_scan_crosses_block_boundaries(void **state) {
    hv__audit_t a;
    hv_db_t *db;
    hv__ascan_t f;
    collect_t c;
    (void)state;
    memset(&a, 0, sizeof(a));
    db = open_store("scan", &a, 0);
    append_blocks(db, &a, 0, 5);  /* seq 1-5 */
    append_blocks(db, &a, 5, 4);  /* seq 6-9 */
    append_blocks(db, &a, 9, 6);  /* seq 10-15 */
    memset(&c, 0, sizeof(c));
    hv__audit_scan_init(&f);
    f.desc = 1;
    f.seq_lt = 12; /* a cursor inside the last block */
    assert_int_equal(hv__audit_block_scan(db, &f, collect, &c), HV_OK);
    assert_int_equal(c.n, 11);
    for (size_t i = 0; i < c.n; i++) assert_int_equal(c.seqs[i], 11 - (int64_t)i);
    /* ascending from inside the first block, stopped inside the second */
    memset(&c, 0, sizeof(c));
    c.stop_at = 7;
    hv__audit_scan_init(&f);
    f.seq_ge = 4;
    assert_int_equal(hv__audit_block_scan(db, &f, collect, &c), HV_OK);
    assert_int_equal(c.n, 4);
    assert_int_equal(c.seqs[0], 4);
    assert_int_equal(c.seqs[3], 7);
    /* user u7 is only in the second block: the others are not read */
    memset(&c, 0, sizeof(c));
    hv__audit_scan_init(&f);
    f.who = "u7";
    assert_int_equal(hv__audit_block_scan(db, &f, collect, &c), HV_OK);
    assert_int_equal(c.n, 4);
    assert_int_equal(c.seqs[0], 6);
    /* patient pt0 is in every block */
    memset(&c, 0, sizeof(c));
    hv__audit_scan_init(&f);
    f.patient = "pt0";
    assert_int_equal(hv__audit_block_scan(db, &f, collect, &c), HV_OK);
    assert_int_equal(c.n, 15);
    memset(&c, 0, sizeof(c));
    hv__audit_scan_init(&f);
    f.patient = "nobody";
    assert_int_equal(hv__audit_block_scan(db, &f, collect, &c), HV_OK);
    assert_int_equal(c.n, 0);
    hv_db_close(db);
    EVP_PKEY_free(a.key);
}

/* Rewrites the block that starts at first with one byte of record seq's who changed. */
static void flip_who_byte(hv_db_t *db, int64_t first, int64_t seq) {
    hv_db_stmt_t *st = NULL;
    unsigned char *copy;
    size_t len = 0, off = 0, used = 0;
    hv__arec_t r;
    assert_int_equal(hv_db_prepare(db, "SELECT records FROM audit_block WHERE seq_first = $1", &st), HV_OK);
    hv_db_bind_int64(st, 1, first);
    assert_int_equal(hv_db_step(st), HV_DB_ROW);
    {
        const void *blob = hv_db_column_blob(st, 0, &len);
        copy = malloc(len);
        assert_non_null(copy);
        memcpy(copy, blob, len);
    }
    hv_db_done(st);
    for (;;) {
        assert_int_equal(hv__audit_block_decode(copy + off, len - off, &used, &r), HV_OK);
        if (r.seq == seq) break;
        off += used;
    }
    ((unsigned char *)r.who)[0] ^= 0x20; /* "u…" becomes "U…" */
    assert_int_equal(hv_db_exec(db, "DROP TRIGGER IF EXISTS audit_block_no_update"), HV_OK);
    assert_int_equal(hv_db_prepare(db, "UPDATE audit_block SET records = $1 WHERE seq_first = $2", &st), HV_OK);
    hv_db_bind_blob(st, 1, copy, len);
    hv_db_bind_int64(st, 2, first);
    assert_int_equal(hv_db_step(st), HV_OK);
    hv_db_done(st);
    free(copy);
}

/* Cuts the last record off the block that starts at first (its row unchanged). */
static void cut_last(hv_db_t *db, int64_t first) {
    hv_db_stmt_t *st = NULL;
    size_t len = 0, off = 0, used = 0, last = 0;
    hv__arec_t r;
    unsigned char *copy;
    assert_int_equal(hv_db_prepare(db, "SELECT records FROM audit_block WHERE seq_first = $1", &st), HV_OK);
    hv_db_bind_int64(st, 1, first);
    assert_int_equal(hv_db_step(st), HV_DB_ROW);
    {
        const void *blob = hv_db_column_blob(st, 0, &len);
        copy = malloc(len);
        assert_non_null(copy);
        memcpy(copy, blob, len);
    }
    hv_db_done(st);
    while (off < len) {
        assert_int_equal(hv__audit_block_decode(copy + off, len - off, &used, &r), HV_OK);
        last = off;
        off += used;
    }
    assert_int_equal(hv_db_prepare(db, "UPDATE audit_block SET records = $1 WHERE seq_first = $2", &st), HV_OK);
    hv_db_bind_blob(st, 1, copy, last);
    hv_db_bind_int64(st, 2, first);
    assert_int_equal(hv_db_step(st), HV_OK);
    hv_db_done(st);
    free(copy);
}

/* A trail of rows (written before migration 6) then blocks is one chain: it verifies, its
 * checkpoints in both parts hold, and a byte changed inside a block is found at its record. */
static void audit_rows_then_blocks_verify_and_tampering_is_located(void **state) {
    hv__audit_t a;
    hv_db_t *db;
    hv_audit_verify_t v;
    hv_error_t err;
    const char *const *all;
    size_t n = 0;
    (void)state;
    memset(&a, 0, sizeof(a));
    hv_error_clear(&err);
    a.checkpoint_every = 4;
    db = open_store("mixed", &a, 5);
    append_rows(db, &a, 0, 6); /* seq 1-6 as rows */
    all = hv__audit_migrations(db);
    while (all[n] != NULL) n++;
    assert_int_equal(hv_db_migrate(db, "audit", all, &err), HV_OK);
    assert_true(hv__audit_has_blocks(db));
    append_blocks(db, &a, 6, 5); /* seq 7-11 */
    append_blocks(db, &a, 11, 5); /* seq 12-16 */
    assert_int_equal(hv__audit_verify_db(db, a.key, 0, &v), HV_OK);
    assert_string_equal(v.problem, "");
    assert_int_equal(v.checked, 16);
    assert_int_equal(v.checkpoints, 4);
    /* the append-only guard covers the blocks */
    assert_int_not_equal(hv_db_exec(db, "UPDATE audit_block SET n = 1"), HV_OK);
    assert_int_not_equal(hv_db_exec(db, "DELETE FROM audit_block"), HV_OK);
    /* one byte of record 14 (inside the second block) */
    flip_who_byte(db, 12, 14);
    assert_int_equal(hv__audit_verify_db(db, a.key, 0, &v), HV_OK);
    assert_string_equal(v.problem, "altered");
    assert_int_equal(v.first_bad, 14);
    assert_int_equal(v.checked, 13);
    flip_who_byte(db, 12, 14); /* back */
    assert_int_equal(hv__audit_verify_db(db, a.key, 0, &v), HV_OK);
    assert_string_equal(v.problem, "");
    /* the last record of a block removed: reported as deleted, at its number */
    cut_last(db, 7);
    assert_int_equal(hv__audit_verify_db(db, a.key, 0, &v), HV_OK);
    assert_string_equal(v.problem, "deleted");
    assert_int_equal(v.first_bad, 11);
    assert_int_equal(v.checked, 10);
    /* a block that no longer decodes is reported where it starts to fail */
    assert_int_equal(hv_db_exec(db, "UPDATE audit_block SET records = substr(records, 1, 10) WHERE seq_first = 7"),
                     HV_OK);
    assert_int_equal(hv__audit_verify_db(db, a.key, 0, &v), HV_OK);
    assert_string_equal(v.problem, "altered");
    assert_int_equal(v.first_bad, 7);
    assert_int_equal(v.checked, 6);
    hv_db_close(db);
    EVP_PKEY_free(a.key);
}

/* An archive of rows and blocks verifies offline, and a purge removes whole blocks, after
 * which the chain goes on from the archive's last hash. */
static void audit_archive_and_purge_take_whole_blocks(void **state) {
    hv__audit_t a;
    hv_db_t *db;
    hv_audit_verify_t v;
    hv_error_t err;
    hv__audit_archived_t ar;
    char path[256];
    int64_t purged = 0;
    (void)state;
    memset(&a, 0, sizeof(a));
    hv_error_clear(&err);
    db = open_store("purge", &a, 0);
    append_blocks(db, &a, 0, 4);
    append_blocks(db, &a, 4, 3);
    snprintf(path, sizeof(path), "%s/purge/a.ndjson.gz", tmpdir);
    assert_int_equal(hv__audit_archive(db, a.key, INT64_MAX, path, &ar, &err), HV_OK);
    assert_int_equal(ar.n, 7);
    assert_int_equal(hv__audit_verify_archive(path, a.key, &v, &err), HV_OK);
    assert_string_equal(v.problem, "");
    assert_int_equal(v.checked, 7);
    assert_int_equal(hv__audit_purge(db, a.key, path, &ar, INT64_MAX, &purged, &err), HV_OK);
    assert_int_equal(purged, 7);
    append_blocks(db, &a, 7, 2); /* seq 8-9, linked to the archive's end */
    assert_int_equal(hv__audit_verify_db(db, a.key, 0, &v), HV_OK);
    assert_string_equal(v.problem, "");
    assert_int_equal(v.checked, 2);
    hv_db_close(db);
    EVP_PKEY_free(a.key);
}

int run_block_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(audit_block_record_round_trips),
        cmocka_unit_test(audit_block_scan_crosses_block_boundaries),
        cmocka_unit_test(audit_rows_then_blocks_verify_and_tampering_is_located),
        cmocka_unit_test(audit_archive_and_purge_take_whole_blocks),
    };
    return cmocka_run_group_tests_name("audit_block", tests, setup_dir, teardown_dir);
}
