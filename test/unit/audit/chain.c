/* chain.c — tests destinations/audit/chain.c: the hash, signatures, the append job and verification. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests.h"

static void audit_hash_covers_every_field(void **state) {
    char base[65], h[65];
    (void)state;
    hv__audit_hash(HV__AUDIT_ZERO_HASH, 1, 1000, "R", "read", 0, "alice", "clinician", "10.0.0.1", "p1", "{}", 2, base);
    assert_int_equal(strlen(base), 64);
    hv__audit_hash(HV__AUDIT_ZERO_HASH, 1, 1000, "R", "read", 0, "alice", "clinician", "10.0.0.1", "p1", "{}", 2, h);
    assert_string_equal(h, base);
#define DIFFERS(...)                                                                                               \
    do {                                                                                                           \
        hv__audit_hash(__VA_ARGS__, h);                                                                            \
        assert_string_not_equal(h, base);                                                                          \
    } while (0)
    DIFFERS("1000000000000000000000000000000000000000000000000000000000000000", 1, 1000, "R", "read", 0, "alice", "clinician", "10.0.0.1", "p1", "{}", 2);
    DIFFERS(HV__AUDIT_ZERO_HASH, 2, 1000, "R", "read", 0, "alice", "clinician", "10.0.0.1", "p1", "{}", 2);
    DIFFERS(HV__AUDIT_ZERO_HASH, 1, 1001, "R", "read", 0, "alice", "clinician", "10.0.0.1", "p1", "{}", 2);
    DIFFERS(HV__AUDIT_ZERO_HASH, 1, 1000, "U", "read", 0, "alice", "clinician", "10.0.0.1", "p1", "{}", 2);
    DIFFERS(HV__AUDIT_ZERO_HASH, 1, 1000, "R", "vread", 0, "alice", "clinician", "10.0.0.1", "p1", "{}", 2);
    DIFFERS(HV__AUDIT_ZERO_HASH, 1, 1000, "R", "read", 4, "alice", "clinician", "10.0.0.1", "p1", "{}", 2);
    DIFFERS(HV__AUDIT_ZERO_HASH, 1, 1000, "R", "read", 0, "alicf", "clinician", "10.0.0.1", "p1", "{}", 2);
    DIFFERS(HV__AUDIT_ZERO_HASH, 1, 1000, "R", "read", 0, "alice", "admin", "10.0.0.1", "p1", "{}", 2);
    DIFFERS(HV__AUDIT_ZERO_HASH, 1, 1000, "R", "read", 0, "alice", "clinician", "10.0.0.2", "p1", "{}", 2);
    DIFFERS(HV__AUDIT_ZERO_HASH, 1, 1000, "R", "read", 0, "alice", "clinician", "10.0.0.1", "p2", "{}", 2);
    DIFFERS(HV__AUDIT_ZERO_HASH, 1, 1000, "R", "read", 0, "alice", "clinician", "10.0.0.1", "p1", "{ }", 3);
    /* field boundaries are delimited: moving a character between fields changes the hash */
    DIFFERS(HV__AUDIT_ZERO_HASH, 1, 1000, "R", "read", 0, "alicec", "linician", "10.0.0.1", "p1", "{}", 2);
#undef DIFFERS
}

static char tmpdir[128];

static int setup_dir(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/hv-audit-unit-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state) {
    char cmd[256];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void audit_key_is_created_once_and_signatures_verify(void **state) {
    EVP_PKEY *k1 = NULL, *k2 = NULL;
    hv_error_t err;
    char sig[160];
    (void)state;
    hv_error_clear(&err);
    assert_int_equal(hv__audit_key_load(tmpdir, 0, &k1, &err), HV_ENOTFOUND);
    assert_int_equal(hv__audit_key_load(tmpdir, 1, &k1, &err), HV_OK);
    assert_int_equal(hv__audit_key_load(tmpdir, 0, &k2, &err), HV_OK);
    assert_int_equal(hv__audit_sign(k1, 7, HV__AUDIT_ZERO_HASH, 123, sig, sizeof(sig)), HV_OK);
    assert_true(hv__audit_sig_ok(k2, 7, HV__AUDIT_ZERO_HASH, 123, sig));
    assert_false(hv__audit_sig_ok(k2, 8, HV__AUDIT_ZERO_HASH, 123, sig));
    assert_false(hv__audit_sig_ok(k2, 7, HV__AUDIT_ZERO_HASH, 124, sig));
    sig[0] = sig[0] == 'a' ? 'b' : 'a';
    assert_false(hv__audit_sig_ok(k2, 7, HV__AUDIT_ZERO_HASH, 123, sig));
    assert_false(hv__audit_sig_ok(k2, 7, HV__AUDIT_ZERO_HASH, 123, "zz"));
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
}

/* Appends n events through the storage job, as the module does, in one transaction. */
static void append(hv_db_t *db, hv__audit_t *a, int n) {
    assert_int_equal(hv_db_begin(db), HV_OK);
    for (int i = 0; i < n; i++) {
        hv__aev_t *ev = hv__aev_new(a);
        hv_audit_event_t in = {0};
        char who[16];
        const char *p[] = {"p1"};
        snprintf(who, sizeof(who), "u%d", i);
        in.action = 'R';
        in.subtype = "read";
        in.user = who;
        in.patients = p;
        in.npatients = 1;
        assert_int_equal(hv__aev_fill(ev, &in), HV_OK);
        assert_int_equal(hv__audit_append_job(db, ev), HV_OK);
        hv__aev_free(ev);
    }
    assert_int_equal(hv_db_commit(db), HV_OK);
}

static void audit_chain_appends_and_verify_finds_each_kind_of_tampering(void **state) {
    hv__audit_t a;
    hv_db_t *db = NULL;
    hv_error_t err;
    hv_audit_verify_t v;
    char archive[256];
    hv__audit_archived_t ar;
    (void)state;
    memset(&a, 0, sizeof(a));
    hv_error_clear(&err);
    a.checkpoint_every = 5;
    assert_int_equal(hv__audit_key_load(tmpdir, 1, &a.key, &err), HV_OK);
    assert_int_equal(hv_db_open(NULL, tmpdir, "audit", &db, &err), HV_OK);
    assert_int_equal(hv_db_migrate(db, "audit", hv__audit_migrations(db), &err), HV_OK);
    append(db, &a, 12);
    assert_int_equal(hv__audit_verify_db(db, a.key, 0, &v), HV_OK);
    assert_int_equal(v.checked, 12);
    assert_int_equal(v.checkpoints, 2);
    assert_string_equal(v.problem, "");
    /* the store refuses updates and deletes */
    assert_int_not_equal(hv_db_exec(db, "UPDATE audit_event SET who = 'x' WHERE seq = 3"), HV_OK);
    assert_int_not_equal(hv_db_exec(db, "DELETE FROM audit_event WHERE seq = 3"), HV_OK);
    /* an archive of everything verifies */
    snprintf(archive, sizeof(archive), "%s/a.ndjson.gz", tmpdir);
    assert_int_equal(hv__audit_archive(db, a.key, INT64_MAX, archive, &ar, &err), HV_OK);
    assert_int_equal(ar.n, 12);
    assert_int_equal(ar.first_seq, 1);
    assert_int_equal(ar.last_seq, 12);
    assert_int_equal(hv__audit_verify_archive(archive, a.key, &v, &err), HV_OK);
    assert_int_equal(v.checked, 12);
    assert_string_equal(v.problem, "");
    /* behind the engine's back */
    assert_int_equal(hv_db_exec(db, "DROP TRIGGER audit_event_no_update; DROP TRIGGER audit_event_no_delete;"), HV_OK);
    assert_int_equal(hv_db_exec(db, "UPDATE audit_event SET outcome = 4 WHERE seq = 3"), HV_OK);
    assert_int_equal(hv__audit_verify_db(db, a.key, 0, &v), HV_OK);
    assert_string_equal(v.problem, "altered");
    assert_int_equal(v.first_bad, 3);
    assert_int_equal(v.checked, 2);
    assert_int_equal(hv_db_exec(db, "UPDATE audit_event SET outcome = 0 WHERE seq = 3"), HV_OK);
    assert_int_equal(hv_db_exec(db, "DELETE FROM audit_event WHERE seq = 9"), HV_OK);
    assert_int_equal(hv__audit_verify_db(db, a.key, 0, &v), HV_OK);
    assert_string_equal(v.problem, "deleted");
    assert_int_equal(v.first_bad, 9);
    assert_int_equal(hv_db_exec(db, "DELETE FROM audit_event WHERE seq >= 9"), HV_OK);
    assert_int_equal(hv__audit_verify_db(db, a.key, 0, &v), HV_OK);
    assert_string_equal(v.problem, "truncated");
    assert_int_equal(v.first_bad, 9);
    hv_db_close(db);
    EVP_PKEY_free(a.key);
}

/* SHA-256 of s as 64 hex digits, through a fresh EVP context (the reference). */
static void ref_sha256(const char *s, size_t n, char out[65]) {
    unsigned char d[32];
    unsigned int dl = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_non_null(md);
    assert_int_equal(EVP_DigestInit_ex(md, EVP_sha256(), NULL), 1);
    assert_int_equal(EVP_DigestUpdate(md, s, n), 1);
    assert_int_equal(EVP_DigestFinal_ex(md, d, &dl), 1);
    EVP_MD_CTX_free(md);
    hv_hex(d, 32, out);
}

/* The hash is over the documented layout (chain.c), for records that fit the one-buffer
 * path and for one whose content does not (the streaming path); trails written before
 * either path existed must keep verifying. */
static void audit_hash_is_sha256_of_the_documented_layout(void **state) {
    char got[65], want[65], *big, *text;
    size_t blen = 5000;
    (void)state;
    hv__audit_hash(HV__AUDIT_ZERO_HASH, 42, -7, "R", "read", 4, "alice", "clinician", "10.0.0.1", "p1,p2",
                   "{\"v\":2}", 7, got);
    text = "0000000000000000000000000000000000000000000000000000000000000000\n42\n-7\nR\nread\n4\nalice\n"
           "clinician\n10.0.0.1\np1,p2\n{\"v\":2}";
    ref_sha256(text, strlen(text), want);
    assert_string_equal(got, want);
    big = malloc(blen);
    assert_non_null(big);
    memset(big, 'x', blen);
    hv__audit_hash(HV__AUDIT_ZERO_HASH, 1, 1000, "E", "search", 0, "", "", "", "", big, blen, got);
    {
        char *all = malloc(blen + 200);
        size_t k;
        assert_non_null(all);
        k = (size_t)snprintf(all, 200, "%s\n1\n1000\nE\nsearch\n0\n\n\n\n\n", HV__AUDIT_ZERO_HASH);
        memcpy(all + k, big, blen);
        ref_sha256(all, k + blen, want);
        free(all);
    }
    assert_string_equal(got, want);
    free(big);
}

/* Hash format 3 is SHA-256 over the binary layout documented in chain.c and
 * docs/compliance.md; the expected digests were computed from that description alone
 * (Python's hashlib over struct.pack("<QqiB", …) and u32-length-prefixed strings). Both
 * paths (one buffer; a content past 2 KiB streamed) hash the same bytes, and every field
 * (each string's length too, so no field's end can move into the next) changes the hash. */
static void audit_hash3_is_sha256_of_the_documented_binary_layout(void **state) {
    const char *s[6] = {"read", "alice", "clinician", "10.0.0.1", "p1,p2", "{\"v\":2}"};
    size_t l[6] = {4, 5, 9, 8, 5, 7};
    const char *s2[6] = {"search-type", "", "", "::1", "", "x\0y"};
    size_t l2[6] = {11, 0, 0, 3, 0, 3};
    unsigned char prev[32] = {0}, d[32], d2[32], base[32];
    char hex[65], *big, want[65];
    (void)state;
    hv__audit_hash3(prev, 42, -7, 4, 'R', s, l, d);
    hv_hex(d, 32, hex);
    assert_string_equal(hex, "0b49b09e86e537f73abf43ac73662e07c0bb5ac40a47457800bb04f2fbb2261b");
    hv__audit_hash3(d, 43, 1764150000123, -1, 'E', s2, l2, d2);
    hv_hex(d2, 32, hex);
    assert_string_equal(hex, "c3dca2592f46620370ca714808b8cf9fdffafbb41d0c8cd0a4305de26dddae2f");
    /* prev and the digest may be the same bytes (the block writer chains in place) */
    hv__audit_hash3(d, 43, 1764150000123, -1, 'E', s2, l2, d);
    assert_memory_equal(d, d2, 32);
    /* the hex wrapper verify uses agrees, and refuses a prev that is not a hash */
    hv__audit_hash_fmt(HV__HASH_BIN, HV__AUDIT_ZERO_HASH, 42, -7, "R", "read", 4, "alice", "clinician", "10.0.0.1",
                       "p1,p2", "{\"v\":2}", 7, hex);
    assert_string_equal(hex, "0b49b09e86e537f73abf43ac73662e07c0bb5ac40a47457800bb04f2fbb2261b");
    hv__audit_hash_fmt(HV__HASH_BIN, "00", 42, -7, "R", "read", 4, "alice", "clinician", "10.0.0.1", "p1,p2", "", 0,
                       hex);
    assert_int_equal(strspn(hex, "x"), 64);
    hv__audit_hash_fmt(HV__HASH_BIN, HV__AUDIT_ZERO_HASH, 42, -7, "RR", "read", 4, "alice", "clinician", "10.0.0.1",
                       "p1,p2", "{\"v\":2}", 7, hex);
    assert_int_equal(strspn(hex, "x"), 64);
    /* text and binary inputs of the same record differ */
    hv__audit_hash_fmt(HV__HASH_TEXT, HV__AUDIT_ZERO_HASH, 42, -7, "R", "read", 4, "alice", "clinician", "10.0.0.1",
                       "p1,p2", "{\"v\":2}", 7, hex);
    assert_string_not_equal(hex, "0b49b09e86e537f73abf43ac73662e07c0bb5ac40a47457800bb04f2fbb2261b");
    /* every field counts, and moving a byte from one string to the next does too */
    memcpy(base, prev, 32);
    hv__audit_hash3(base, 42, -7, 4, 'R', s, l, base);
    {
        struct {
            int64_t seq, rec;
            int out;
            char act;
        } v[] = {{43, -7, 4, 'R'}, {42, -6, 4, 'R'}, {42, -7, 5, 'R'}, {42, -7, 4, 'E'}};
        for (size_t i = 0; i < HV_ARRAY_LEN(v); i++) {
            hv__audit_hash3(prev, v[i].seq, v[i].rec, v[i].out, v[i].act, s, l, d);
            assert_memory_not_equal(d, base, 32);
        }
        for (int i = 0; i < 6; i++) {
            size_t lk[6];
            memcpy(lk, l, sizeof(lk));
            lk[i]--;
            hv__audit_hash3(prev, 42, -7, 4, 'R', s, lk, d);
            assert_memory_not_equal(d, base, 32);
        }
        {
            const char *sm[6] = {"rea", "dalice", "clinician", "10.0.0.1", "p1,p2", "{\"v\":2}"};
            size_t lm[6] = {3, 6, 9, 8, 5, 7};
            hv__audit_hash3(prev, 42, -7, 4, 'R', sm, lm, d);
            assert_memory_not_equal(d, base, 32);
        }
        prev[31] = 1;
        hv__audit_hash3(prev, 42, -7, 4, 'R', s, l, d);
        assert_memory_not_equal(d, base, 32);
        prev[31] = 0;
    }
    /* a content past the one-buffer path streams the same bytes */
    big = malloc(5000);
    assert_non_null(big);
    memset(big, 'x', 5000);
    {
        const char *sb[6] = {"search", "", "", "", "", big};
        size_t lb[6] = {6, 0, 0, 0, 0, 5000};
        unsigned char *all = malloc(5200), *p = all;
        assert_non_null(all);
        hv__audit_hash3(prev, 1, 1000, 0, 'E', sb, lb, d);
        memcpy(p, "HVH3", 4);
        memset(p + 4, 0, 32);
        hv__audit_put64(p + 36, 1);
        hv__audit_put64(p + 44, 1000);
        hv__audit_put32(p + 52, 0);
        p[56] = 'E';
        p += 57;
        for (int i = 0; i < 6; i++) {
            hv__audit_put32(p, (uint32_t)lb[i]);
            memcpy(p + 4, sb[i], lb[i]);
            p += 4 + lb[i];
        }
        ref_sha256((const char *)all, (size_t)(p - all), want);
        hv_hex(d, 32, hex);
        assert_string_equal(hex, want);
        free(all);
    }
    free(big);
}

/* A trail written under the schema before migration 5 (seq a BIGINT key, the access log a
 * table with an index) keeps verifying after it, with its access-log rows, and grows. */
static void audit_migration_keeps_an_old_trail_verifiable(void **state) {
    const char *const *all;
    const char *old[8] = {0};
    char dir[200], *sql = NULL;
    hv__audit_t a;
    hv_db_t *db = NULL;
    hv_db_stmt_t *st = NULL;
    hv_error_t err;
    hv_audit_verify_t v;
    size_t n = 0;
    (void)state;
    memset(&a, 0, sizeof(a));
    hv_error_clear(&err);
    snprintf(dir, sizeof(dir), "%s/mig", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(hv_db_open(NULL, dir, "audit", &db, &err), HV_OK);
    all = hv__audit_migrations(db);
    while (all[n] != NULL) n++;
    assert_true(n >= 5 && n < HV_ARRAY_LEN(old));
    for (size_t i = 0; i < 4; i++) old[i] = all[i];
    assert_int_equal(hv_db_migrate(db, "audit", old, &err), HV_OK);
    append(db, &a, 6);
    assert_int_equal(hv_db_migrate(db, "audit", all, &err), HV_OK);
    assert_int_equal(hv_db_prepare(db, "SELECT sql FROM sqlite_master WHERE name = 'audit_event'", &st), HV_OK);
    assert_int_equal(hv_db_step(st), HV_DB_ROW);
    sql = strdup(hv_db_column_text(st, 0, NULL));
    hv_db_done(st);
    assert_non_null(strstr(sql, "seq INTEGER PRIMARY KEY"));
    free(sql);
    assert_int_equal(hv_db_prepare(db, "SELECT COUNT(*) FROM audit_patient WHERE patient = 'p1'", &st), HV_OK);
    assert_int_equal(hv_db_step(st), HV_DB_ROW);
    assert_int_equal(hv_db_column_int64(st, 0), 6);
    hv_db_done(st);
    assert_int_equal(hv__audit_verify_db(db, NULL, 0, &v), HV_OK);
    assert_int_equal(v.checked, 6);
    assert_string_equal(v.problem, "");
    append(db, &a, 3);
    assert_int_equal(hv__audit_verify_db(db, NULL, 0, &v), HV_OK);
    assert_int_equal(v.checked, 9);
    assert_string_equal(v.problem, "");
    assert_int_not_equal(hv_db_exec(db, "UPDATE audit_event SET who = 'x' WHERE seq = 3"), HV_OK);
    assert_int_not_equal(hv_db_exec(db, "DELETE FROM audit_event WHERE seq = 3"), HV_OK);
    hv_db_close(db);
}

/* A batch appended as a list (multi-row INSERTs of 16, then one by one) gives the chain the
 * same records one-by-one appends give: it verifies, continues where it ended, and every
 * record keeps its access-log row and its checkpoint. */
static void audit_list_append_writes_the_same_chain(void **state) {
    hv__audit_t a;
    hv_db_t *db = NULL;
    hv_db_stmt_t *st = NULL;
    hv_error_t err;
    hv_audit_verify_t v;
    hv__aev_t *evs[40];
    char dir[200], prev[65];
    int64_t seq;
    (void)state;
    memset(&a, 0, sizeof(a));
    hv_error_clear(&err);
    a.checkpoint_every = 7;
    snprintf(dir, sizeof(dir), "%s/list", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(hv__audit_key_load(dir, 1, &a.key, &err), HV_OK);
    assert_int_equal(hv_db_open(NULL, dir, "audit", &db, &err), HV_OK);
    assert_int_equal(hv_db_migrate(db, "audit", hv__audit_migrations(db), &err), HV_OK);
    append(db, &a, 3); /* one by one first */
    for (int i = 0; i < 40; i++) {
        hv_audit_event_t in = {0};
        char who[16], pid[16];
        const char *p[] = {pid};
        snprintf(who, sizeof(who), "w%d", i);
        snprintf(pid, sizeof(pid), "pt%d", i % 5);
        in.action = 'R';
        in.subtype = "read";
        in.user = who;
        in.patients = p;
        in.npatients = 1;
        evs[i] = hv__aev_new(&a);
        assert_non_null(evs[i]);
        assert_int_equal(hv__aev_fill(evs[i], &in), HV_OK);
        evs[i]->next = NULL;
        if (i > 0) evs[i - 1]->next = evs[i];
    }
    assert_int_equal(hv_db_begin(db), HV_OK);
    assert_int_equal(hv__audit_tail(db, prev, &seq), HV_OK);
    assert_int_equal(seq, 4);
    assert_int_equal(hv__audit_append_list(db, evs[0], prev, &seq), HV_OK);
    assert_int_equal(hv_db_commit(db), HV_OK);
    assert_int_equal(seq, 44);
    for (int i = 0; i < 40; i++) {
        assert_int_equal(evs[i]->seq, 4 + i);
        hv__aev_free(evs[i]);
    }
    append(db, &a, 2); /* and one by one after */
    assert_int_equal(hv__audit_verify_db(db, a.key, 0, &v), HV_OK);
    assert_string_equal(v.problem, "");
    assert_int_equal(v.checked, 45);
    assert_int_equal(v.checkpoints, 6);
    assert_int_equal(hv_db_prepare(db, "SELECT COUNT(*) FROM audit_patient WHERE patient LIKE 'pt%'", &st), HV_OK);
    assert_int_equal(hv_db_step(st), HV_DB_ROW);
    assert_int_equal(hv_db_column_int64(st, 0), 40);
    hv_db_done(st);
    assert_int_equal(hv_db_prepare(db, "SELECT who FROM audit_event WHERE seq = 20", &st), HV_OK);
    assert_int_equal(hv_db_step(st), HV_DB_ROW);
    assert_string_equal(hv_db_column_text(st, 0, NULL), "w16");
    hv_db_done(st);
    hv_db_close(db);
    EVP_PKEY_free(a.key);
}

int run_chain_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(audit_hash_covers_every_field),
        cmocka_unit_test(audit_key_is_created_once_and_signatures_verify),
        cmocka_unit_test(audit_chain_appends_and_verify_finds_each_kind_of_tampering),
        cmocka_unit_test(audit_hash_is_sha256_of_the_documented_layout),
        cmocka_unit_test(audit_hash3_is_sha256_of_the_documented_binary_layout),
        cmocka_unit_test(audit_migration_keeps_an_old_trail_verifiable),
        cmocka_unit_test(audit_list_append_writes_the_same_chain),
    };
    return cmocka_run_group_tests_name("audit_chain", tests, setup_dir, teardown_dir);
}
