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

/* Format 2: records coded against the one before read back exactly (repeated strings,
 * break-glass, deltas that go backwards, an empty content), a repeated read costs a few
 * bytes besides its hash, and every prefix of the block is refused without reading past it. */
static void audit_block_format2_round_trips(void **state) {
    static const struct {
        int64_t seq, recorded;
        int outcome, breakglass;
        char action;
        const char *subtype, *who, *role, *ip, *patients, *content;
    } in[] = {
        {41, 1764150000123, 0, 0, 'R', "read", "alice", "clinician", "10.0.0.1", "p1", "{\"v\":2,\"t\":\"Patient\"}"},
        {42, 1764150000123, 0, 0, 'R', "read", "alice", "clinician", "10.0.0.1", "p1", "{\"v\":2,\"t\":\"Patient\"}"},
        {43, 1764150000100, -7, 1, 'E', "search-type", "bob", "", "::1", "p1,p2", ""},
        {44, 1764150009999, 12, 0, 'C', "login", "bob", "", "::1", "", "{\"v\":2}"},
        {40, 0, 4, 0, 'D', "delete", "", "", "", "", "x"},
    };
    size_t n = HV_ARRAY_LEN(in), len_before_last = 0;
    hv__ablock_wr_t w;
    hv__ablock_rd_t rd;
    hv_buf_t b;
    hv__arec_t r;
    (void)state;
    hv_buf_init(&b, 0);
    hv__audit_block_wr_init(&w);
    for (size_t i = 0; i < n; i++) {
        size_t before = b.len;
        memset(&r, 0, sizeof(r));
        r.seq = in[i].seq;
        r.recorded = in[i].recorded;
        r.outcome = in[i].outcome;
        r.breakglass = in[i].breakglass;
        r.action[0] = in[i].action;
        r.subtype = in[i].subtype;
        r.who = in[i].who;
        r.role = in[i].role;
        r.ip = in[i].ip;
        r.patients = in[i].patients;
        r.content = in[i].content;
        r.clen = strlen(in[i].content);
        for (int k = 0; k < 64; k++) r.hash[k] = "0123456789abcdef"[(k + (int)i) % 16];
        assert_int_equal(hv__audit_block_put(&b, &w, &r, NULL), HV_OK);
        /* the second record repeats every string of the first: flags, action, three
         * one-byte deltas and its hash */
        if (i == 1) assert_int_equal(b.len - before, 2 + 3 + 32);
        if (i == n - 1) len_before_last = before;
    }
    hv__audit_block_rd_init(&rd, b.data, b.len);
    assert_int_equal(rd.fmt, 2);
    for (size_t i = 0; i < n; i++) {
        char hash[65];
        assert_int_equal(hv__audit_block_next(&rd, &r), HV_OK);
        for (int k = 0; k < 64; k++) hash[k] = "0123456789abcdef"[(k + (int)i) % 16];
        hash[64] = '\0';
        assert_int_equal(r.seq, in[i].seq);
        assert_int_equal(r.recorded, in[i].recorded);
        assert_int_equal(r.outcome, in[i].outcome);
        assert_int_equal(r.breakglass, in[i].breakglass);
        assert_int_equal(r.action[0], in[i].action);
        assert_string_equal(r.subtype, in[i].subtype);
        assert_string_equal(r.who, in[i].who);
        assert_string_equal(r.role, in[i].role);
        assert_string_equal(r.ip, in[i].ip);
        assert_string_equal(r.patients, in[i].patients);
        assert_int_equal(r.clen, strlen(in[i].content));
        assert_memory_equal(r.content, in[i].content, r.clen);
        assert_string_equal(r.hash, hash);
    }
    assert_int_equal(hv__audit_block_next(&rd, &r), HV_ENOTFOUND);
    /* a prefix that ends inside a record is refused at that record, never read past */
    for (size_t k = len_before_last + 1; k < b.len; k++) {
        unsigned char *copy = malloc(k);
        size_t got = 0;
        int rc;
        assert_non_null(copy);
        memcpy(copy, b.data, k);
        hv__audit_block_rd_init(&rd, copy, k);
        while ((rc = hv__audit_block_next(&rd, &r)) == HV_OK) got++;
        assert_int_equal(rc, HV_EPROTO);
        assert_int_equal(got, n - 1);
        free(copy);
    }
    /* a first record that claims to repeat a string is refused */
    b.data[4] |= 0x02;
    hv__audit_block_rd_init(&rd, b.data, b.len);
    assert_int_equal(hv__audit_block_next(&rd, &r), HV_EPROTO);
    hv_buf_release(&b);
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

/* The records of the block that starts at first, decoded (strings point into *blob, which
 * the caller frees); returns how many. */
static size_t read_block(hv_db_t *db, int64_t first, hv__arec_t *recs, size_t max, unsigned char **blob) {
    hv_db_stmt_t *st = NULL;
    hv__ablock_rd_t rd;
    size_t len = 0, n = 0;
    assert_int_equal(hv_db_prepare(db, "SELECT records FROM audit_block WHERE seq_first = $1", &st), HV_OK);
    hv_db_bind_int64(st, 1, first);
    assert_int_equal(hv_db_step(st), HV_DB_ROW);
    {
        const void *data = hv_db_column_blob(st, 0, &len);
        *blob = malloc(len + 1);
        assert_non_null(*blob);
        memcpy(*blob, data, len);
    }
    hv_db_done(st);
    hv__audit_block_rd_init(&rd, *blob, len);
    while (n < max && hv__audit_block_next(&rd, &recs[n]) == HV_OK) n++;
    assert_true(rd.p == rd.end);
    return n;
}

/* Replaces the records of the block that starts at first with recs[0..n) (format 2 or 3 as
 * the records' hash format says; format 1 records are written as format 2; with
 * the update guard dropped; the row's other columns unchanged). */
static void write_block_records(hv_db_t *db, int64_t first, const hv__arec_t *recs, size_t n) {
    hv_db_stmt_t *st = NULL;
    hv__ablock_wr_t w;
    hv_buf_t b;
    hv_buf_init(&b, 0);
    hv__audit_block_wr_init(&w);
    for (size_t i = 0; i < n; i++) assert_int_equal(hv__audit_block_put(&b, &w, &recs[i], NULL), HV_OK);
    assert_int_equal(hv_db_exec(db, "DROP TRIGGER IF EXISTS audit_block_no_update"), HV_OK);
    assert_int_equal(hv_db_prepare(db, "UPDATE audit_block SET records = $1 WHERE seq_first = $2", &st), HV_OK);
    hv_db_bind_blob(st, 1, b.data, b.len);
    hv_db_bind_int64(st, 2, first);
    assert_int_equal(hv_db_step(st), HV_OK);
    hv_db_done(st);
    hv_buf_release(&b);
}

/* Rewrites the block that starts at first with one letter of record seq's who changed
 * ("u…" becomes "U…", and back). */
static void flip_who_byte(hv_db_t *db, int64_t first, int64_t seq) {
    hv__arec_t recs[64];
    unsigned char *blob = NULL;
    char who[64];
    size_t n = read_block(db, first, recs, HV_ARRAY_LEN(recs), &blob), i;
    for (i = 0; i < n && recs[i].seq != seq; i++) {}
    assert_true(i < n);
    snprintf(who, sizeof(who), "%s", recs[i].who);
    who[0] ^= 0x20;
    recs[i].who = who;
    write_block_records(db, first, recs, n);
    free(blob);
}

/* Cuts the last record off the block that starts at first (its row unchanged). */
static void cut_last(hv_db_t *db, int64_t first) {
    hv__arec_t recs[64];
    unsigned char *blob = NULL;
    size_t n = read_block(db, first, recs, HV_ARRAY_LEN(recs), &blob);
    assert_true(n > 1);
    write_block_records(db, first, recs, n - 1);
    free(blob);
}

/* Appends n records as one block in format 1 (as engines before session 7 wrote them) or
 * format 2 (session 7: hashes over the text input), with its who index rows. */
static void append_block_old(hv_db_t *db, hv__audit_t *a, int first, int n, int fmt) {
    hv__aev_t *l = make_list(a, first, n);
    hv_db_stmt_t *st = NULL;
    hv_buf_t b;
    hv__ablock_wr_t w;
    char prev[65], block_prev[65], hash[65];
    int64_t seq, seq_first, rmin = INT64_MAX, rmax = INT64_MIN;
    hv_buf_init(&b, 0);
    hv__audit_block_wr_init(&w);
    assert_int_equal(hv_db_begin(db), HV_OK);
    assert_int_equal(hv__audit_tail(db, prev, &seq), HV_OK);
    seq_first = seq;
    memcpy(block_prev, prev, 65);
    for (hv__aev_t *ev = l; ev != NULL; ev = ev->next, seq++) {
        hv__audit_hash(prev, seq, ev->recorded, ev->action, ev->subtype, ev->outcome, ev->who, ev->role, ev->ip,
                       ev->patients_csv, ev->content.data, ev->content.len, hash);
        if (fmt == 1) {
            assert_int_equal(hv__audit_block_encode(&b, seq, ev, hash), HV_OK);
        } else {
            hv__arec_t r;
            memset(&r, 0, sizeof(r));
            r.seq = seq;
            r.recorded = ev->recorded;
            r.outcome = ev->outcome;
            r.action[0] = ev->action[0];
            r.subtype = ev->subtype;
            r.who = ev->who;
            r.role = ev->role;
            r.ip = ev->ip;
            r.patients = ev->patients_csv;
            r.content = ev->content.data;
            r.clen = ev->content.len;
            memcpy(r.hash, hash, 65);
            assert_int_equal(hv__audit_block_put(&b, &w, &r, NULL), HV_OK);
        }
        memcpy(prev, hash, 65);
        if (ev->recorded < rmin) rmin = ev->recorded;
        if (ev->recorded > rmax) rmax = ev->recorded;
        assert_int_equal(hv_db_prepare(db, "INSERT OR IGNORE INTO audit_block_who (who, seq_first) VALUES ($1, $2)", &st),
                         HV_OK);
        hv_db_bind_text(st, 1, ev->who, strlen(ev->who));
        hv_db_bind_int64(st, 2, seq_first);
        assert_int_equal(hv_db_step(st), HV_OK);
        hv_db_done(st);
    }
    assert_int_equal(hv_db_prepare(db,
                                   "INSERT INTO audit_block (seq_first, seq_last, recorded_min, recorded_max, n, records,"
                                   " prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                                   &st),
                     HV_OK);
    hv_db_bind_int64(st, 1, seq_first);
    hv_db_bind_int64(st, 2, seq - 1);
    hv_db_bind_int64(st, 3, rmin);
    hv_db_bind_int64(st, 4, rmax);
    hv_db_bind_int64(st, 5, n);
    hv_db_bind_blob(st, 6, b.data, b.len);
    hv_db_bind_text(st, 7, block_prev, 64);
    hv_db_bind_text(st, 8, prev, 64);
    assert_int_equal(hv_db_step(st), HV_OK);
    hv_db_done(st);
    assert_int_equal(hv_db_commit(db), HV_OK);
    hv_buf_release(&b);
    free_list(l);
}

/* A store whose older blocks are in format 1 keeps verifying once format 3 blocks follow
 * them; the older blocks are listed by the who index like the new ones; and a record
 * altered inside an old block is still found at its number. */
static void audit_format1_blocks_then_format3_verify(void **state) {
    hv__audit_t a;
    hv_db_t *db;
    hv_audit_verify_t v;
    hv__ascan_t f;
    collect_t c;
    (void)state;
    memset(&a, 0, sizeof(a));
    a.checkpoint_every = 0;
    db = open_store("v1v2", &a, 0);
    append_block_old(db, &a, 0, 5, 1);  /* seq 1-5, format 1 */
    append_blocks(db, &a, 5, 5);        /* seq 6-10, format 3 */
    append_block_old(db, &a, 10, 3, 1); /* format 1 after format 3 (an older engine on the same store) */
    append_blocks(db, &a, 13, 4);
    assert_int_equal(hv__audit_verify_db(db, a.key, 0, &v), HV_OK);
    assert_string_equal(v.problem, "");
    assert_int_equal(v.checked, 17);
    hv__audit_scan_init(&f);
    memset(&c, 0, sizeof(c));
    c.stop_at = -1;
    f.desc = 1;
    assert_int_equal(hv__audit_block_scan(db, &f, collect, &c), HV_OK);
    assert_int_equal(c.n, 17);
    for (size_t i = 0; i < c.n; i++) assert_int_equal(c.seqs[i], 17 - (int64_t)i);
    hv__audit_scan_init(&f);
    memset(&c, 0, sizeof(c));
    c.stop_at = -1;
    f.who = "u2";
    assert_int_equal(hv__audit_block_scan(db, &f, collect, &c), HV_OK);
    assert_int_equal(c.n, 5); /* the format 1 block of seq 1-5, the only one that holds u2 */
    flip_who_byte(db, 1, 3); /* rewritten as format 2 by the helper: still found */
    assert_int_equal(hv__audit_verify_db(db, a.key, 0, &v), HV_OK);
    assert_string_equal(v.problem, "altered");
    assert_int_equal(v.first_bad, 3);
    hv_db_close(db);
    EVP_PKEY_free(a.key);
}

static int collect_hfmt(const hv__arec_t *r, void *ud) {
    int *fmts = ud;
    if (r->seq >= 1 && r->seq < 32) fmts[r->seq] = r->hfmt;
    return 0;
}

/* The four-letter magic of the block that starts at first ("" for format 1). */
static void block_magic(hv_db_t *db, int64_t first, char out[5]) {
    unsigned char *blob = NULL;
    hv__arec_t recs[64];
    size_t n = read_block(db, first, recs, HV_ARRAY_LEN(recs), &blob);
    assert_true(n > 0);
    out[0] = '\0';
    if (memcmp(blob, "HVB", 3) == 0) {
        memcpy(out, blob, 4);
        out[4] = '\0';
    }
    free(blob);
}

/* Blocks of formats 1, 2 (hashes over the text input) and 3 (over the binary input) in
 * one store, in any order, are one chain: verify, scans and an archive (verified offline)
 * take them all; each record says which input its hash is over; a record altered inside
 * a format 2 or a format 3 block, or cut from the end of a format 3 block, is found at its
 * number. */
static void audit_formats_1_2_3_mixed_in_one_store(void **state) {
    hv__audit_t a;
    hv_db_t *db;
    hv_audit_verify_t v;
    hv_error_t err;
    hv__audit_archived_t ar;
    hv__ascan_t f;
    char path[256], magic[5];
    int fmts[32] = {0};
    (void)state;
    memset(&a, 0, sizeof(a));
    hv_error_clear(&err);
    a.checkpoint_every = 3;
    db = open_store("f123", &a, 0);
    append_block_old(db, &a, 0, 4, 1);  /* seq 1-4 */
    append_block_old(db, &a, 4, 4, 2);  /* seq 5-8 */
    append_blocks(db, &a, 8, 4);        /* seq 9-12, format 3 */
    append_block_old(db, &a, 12, 3, 2); /* seq 13-15: a session-7 engine on the same store */
    append_blocks(db, &a, 15, 4);       /* seq 16-19 */
    block_magic(db, 1, magic);
    assert_string_equal(magic, "");
    block_magic(db, 5, magic);
    assert_string_equal(magic, "HVB2");
    block_magic(db, 9, magic);
    assert_string_equal(magic, "HVB3");
    block_magic(db, 13, magic);
    assert_string_equal(magic, "HVB2");
    block_magic(db, 16, magic);
    assert_string_equal(magic, "HVB3");
    assert_int_equal(hv__audit_verify_db(db, a.key, 0, &v), HV_OK);
    assert_string_equal(v.problem, "");
    assert_int_equal(v.checked, 19);
    assert_true(v.checkpoints >= 2); /* those signed by the format 3 writer (seq 9, 12, 18) */
    hv__audit_scan_init(&f);
    assert_int_equal(hv__audit_block_scan(db, &f, collect_hfmt, fmts), HV_OK);
    for (int seq = 1; seq <= 19; seq++)
        assert_int_equal(fmts[seq], (seq >= 9 && seq <= 12) || seq >= 16 ? HV__HASH_BIN : HV__HASH_TEXT);
    /* an archive of the whole mixed trail verifies offline */
    snprintf(path, sizeof(path), "%s/f123/a.ndjson.gz", tmpdir);
    assert_int_equal(hv__audit_archive(db, a.key, INT64_MAX, path, &ar, &err), HV_OK);
    assert_int_equal(ar.n, 19);
    assert_int_equal(hv__audit_verify_archive(path, a.key, &v, &err), HV_OK);
    assert_string_equal(v.problem, "");
    assert_int_equal(v.checked, 19);
    /* tampering inside a format 2 block and inside a format 3 block */
    flip_who_byte(db, 5, 6);
    assert_int_equal(hv__audit_verify_db(db, a.key, 0, &v), HV_OK);
    assert_string_equal(v.problem, "altered");
    assert_int_equal(v.first_bad, 6);
    flip_who_byte(db, 5, 6);
    block_magic(db, 5, magic);
    assert_string_equal(magic, "HVB2");
    flip_who_byte(db, 9, 10);
    block_magic(db, 9, magic);
    assert_string_equal(magic, "HVB3");
    assert_int_equal(hv__audit_verify_db(db, a.key, 0, &v), HV_OK);
    assert_string_equal(v.problem, "altered");
    assert_int_equal(v.first_bad, 10);
    assert_int_equal(v.checked, 9);
    flip_who_byte(db, 9, 10);
    assert_int_equal(hv__audit_verify_db(db, a.key, 0, &v), HV_OK);
    assert_string_equal(v.problem, "");
    cut_last(db, 16);
    assert_int_equal(hv__audit_verify_db(db, a.key, 0, &v), HV_OK);
    assert_string_equal(v.problem, "deleted");
    assert_int_equal(v.first_bad, 19);
    hv_db_close(db);
    EVP_PKEY_free(a.key);
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
        cmocka_unit_test(audit_block_format2_round_trips),
        cmocka_unit_test(audit_format1_blocks_then_format3_verify),
        cmocka_unit_test(audit_formats_1_2_3_mixed_in_one_store),
        cmocka_unit_test(audit_block_scan_crosses_block_boundaries),
        cmocka_unit_test(audit_rows_then_blocks_verify_and_tampering_is_located),
        cmocka_unit_test(audit_archive_and_purge_take_whole_blocks),
    };
    return cmocka_run_group_tests_name("audit_block", tests, setup_dir, teardown_dir);
}
