/*
 * db.c — tests of engine/db.c, engine/db_sqlite.c and engine/db_pg.c.
 *
 * Every test that touches a database runs on SQLite, and again on PostgreSQL
 * when HV_TEST_PG_URL is set (scripts/pg.sh starts a private server and prints
 * the URL). Without it, a line says that the PostgreSQL variant did not run.
 */
#include "dbtest.h"

#include "engine/db_int.h"

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------- */
/* Shared helpers (declared in dbtest.h)                                     */
/* ------------------------------------------------------------------------- */

#define MAX_SCHEMAS 256

static char created[MAX_SCHEMAS][64];
static int ncreated;
static int name_counter;

hv_db_t *dbtest_open(const dbtest_backend_t *b) {
    hv_db_t *db = NULL;
    hv_error_t err;
    char name[64];
    int rc;
    snprintf(name, sizeof(name), "hvt_%ld_%d", (long)getpid(), ++name_counter);
    hv_error_clear(&err);
    rc = hv_db_open(b->url, b->dir, name, &db, &err);
    if (rc != HV_OK) fail_msg("hv_db_open(%s): %s", b->label, err.message);
    if (ncreated < MAX_SCHEMAS) snprintf(created[ncreated++], sizeof(created[0]), "%s", name);
    return db;
}

hv_db_t *dbtest_reopen(const dbtest_backend_t *b, hv_db_t *db) {
    hv_db_t *two = NULL;
    hv_error_t err;
    hv_error_clear(&err);
    if (hv_db_open(b->url, b->dir, db->name, &two, &err) != HV_OK)
        fail_msg("reopen(%s): %s", b->label, err.message);
    return two;
}

int dbtest_backend_setup(dbtest_backend_t *b, const char *label, const char *url) {
    const char *tmp = getenv("TMPDIR");
    b->label = label;
    b->url = url;
    snprintf(b->dir, sizeof(b->dir), "%s/hvdbtest.XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp");
    return mkdtemp(b->dir) != NULL ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void dbtest_backend_teardown(dbtest_backend_t *b) {
    int i;
    if (b->url != NULL) {
        hv_db_t *admin = NULL;
        hv_error_t err;
        if (hv_db_open(b->url, NULL, "hvt_admin", &admin, &err) == HV_OK) {
            for (i = 0; i < ncreated; i++) {
                char sql[128];
                snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS \"%.63s\" CASCADE", created[i]);
                hv_db_exec(admin, sql);
            }
            hv_db_exec(admin, "DROP SCHEMA IF EXISTS hvt_admin CASCADE");
            hv_db_close(admin);
        }
    }
    ncreated = 0;
    nftw(b->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int64_t dbtest_query_int(hv_db_t *db, const char *sql) {
    hv_db_stmt_t *st = NULL;
    int64_t v;
    assert_int_equal(hv_db_prepare(db, sql, &st), HV_OK);
    assert_int_equal(hv_db_step(st), HV_DB_ROW);
    v = hv_db_column_int64(st, 0);
    assert_int_equal(hv_db_step(st), HV_OK);
    hv_db_done(st);
    return v;
}

int dbtest_run_group(const char *name, const struct CMUnitTest *tests, size_t count) {
    struct CMUnitTest copy[64];
    dbtest_backend_t b;
    char label[128];
    const char *pg = getenv("HV_TEST_PG_URL");
    size_t i;
    int failed = 0;
    if (count > HV_ARRAY_LEN(copy)) return 1;
    for (int pass = 0; pass < 2; pass++) {
        const char *kind = pass == 0 ? "sqlite" : "postgresql";
        if (pass == 1 && (pg == NULL || pg[0] == '\0')) {
            printf("[ NOT RUN  ] %s[postgresql]: HV_TEST_PG_URL is not set, so the PostgreSQL "
                   "variant of these %zu tests did not run (start one with scripts/pg.sh)\n",
                   name, count);
            fflush(stdout);
            break;
        }
        if (dbtest_backend_setup(&b, kind, pass == 0 ? NULL : pg) != 0) return failed + 1;
        for (i = 0; i < count; i++) {
            copy[i] = tests[i];
            copy[i].initial_state = &b;
        }
        snprintf(label, sizeof(label), "%s[%s]", name, kind);
        printf("[ BACKEND  ] %s%s%s\n", label, b.url != NULL ? " at " : " in ",
               b.url != NULL ? "HV_TEST_PG_URL" : b.dir);
        fflush(stdout);
        failed += _cmocka_run_group_tests(label, copy, count, NULL, NULL);
        dbtest_backend_teardown(&b);
    }
    return failed;
}

#define BACKEND(state) ((const dbtest_backend_t *)*(state))

/* ------------------------------------------------------------------------- */
/* Placeholder translation (no database)                                     */
/* ------------------------------------------------------------------------- */

static void db_placeholders_translate_outside_literals(void **state) {
    static const struct {
        const char *in, *out;
        int rc, max;
    } cases[] = {
        {"SELECT $1", "SELECT ?1", HV_OK, 1},
        {"SELECT '$1', $2", "SELECT '$1', ?2", HV_OK, 2},
        {"SELECT 'it''s $3', $1", "SELECT 'it''s $3', ?1", HV_OK, 1},
        {"SELECT \"a$1\" FROM t WHERE a=$10 AND b=$2", "SELECT \"a$1\" FROM t WHERE a=?10 AND b=?2",
         HV_OK, 10},
        {"-- $5 here\nSELECT $1", "-- $5 here\nSELECT ?1", HV_OK, 1},
        {"/* $7 */ SELECT $2", "/* $7 */ SELECT ?2", HV_OK, 2},
        {"SELECT $$ $1 $$, $tag$ it's $9 $tag$, $3", "SELECT $$ $1 $$, $tag$ it's $9 $tag$, ?3",
         HV_OK, 3},
        {"SELECT 'unterminated $1", "SELECT 'unterminated $1", HV_OK, 0},
        {"SELECT $", "SELECT $", HV_OK, 0},
        {"SELECT a$1, x=$1", "SELECT a$1, x=?1", HV_OK, 1},
        {"SELECT $0", NULL, HV_EINVAL, 0},
        {"SELECT $1000", NULL, HV_EINVAL, 0},
    };
    size_t i;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        hv_buf_t out;
        int max = -1, rc;
        hv_buf_init(&out, 0);
        rc = hv__db_scan_params(cases[i].in, &out, &max);
        if (rc != cases[i].rc) fail_msg("case %zu (%s): rc %d", i, cases[i].in, rc);
        if (rc == HV_OK) {
            if (strcmp(out.data, cases[i].out) != 0)
                fail_msg("case %zu: got \"%s\", want \"%s\"", i, out.data, cases[i].out);
            assert_int_equal(max, cases[i].max);
        }
        hv_buf_release(&out);
    }
}

static void db_open_rejects_bad_module_names(void **state) {
    static const char *const bad[] = {"", "Patient", "a-b", "a;drop", "a\"b", "x y"};
    hv_db_t *db = NULL;
    hv_error_t err;
    size_t i;
    for (i = 0; i < HV_ARRAY_LEN(bad); i++) {
        assert_int_equal(hv_db_open(NULL, "/nonexistent", bad[i], &db, &err), HV_EINVAL);
        assert_null(db);
    }
    assert_int_equal(hv_db_open(NULL, NULL, "ok", &db, &err), HV_EINVAL);
    assert_null(db);
    assert_int_equal(hv_db_open("mysql://u:secret@h/d", NULL, "ok", &db, &err), HV_ENOTSUP);
    assert_null(db);
    assert_non_null(strstr(err.message, "\"mysql\""));
    assert_null(strstr(err.message, "secret"));
}

static void db_open_sqlite_url_is_a_directory(void **state) {
    dbtest_backend_t b;
    hv_db_t *db = NULL;
    hv_error_t err;
    char dir[512], path[600];
    struct stat sb;
    assert_int_equal(dbtest_backend_setup(&b, "sqlite", NULL), 0);
    /* A URL that is a path names the data directory, created with missing parents. */
    snprintf(dir, sizeof(dir), "%s/nested/data", b.dir);
    assert_int_equal(hv_db_open(dir, "/ignored/when/url/is/given", "fhir", &db, &err), HV_OK);
    assert_int_equal(hv_db_kind(db), HV_DB_SQLITE);
    hv_db_close(db);
    snprintf(path, sizeof(path), "%s/fhir.db", dir);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(stat(dir, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    /* An empty URL means the data directory. */
    assert_int_equal(hv_db_open("", b.dir, "audit", &db, &err), HV_OK);
    hv_db_close(db);
    snprintf(path, sizeof(path), "%s/audit.db", b.dir);
    assert_int_equal(stat(path, &sb), 0);
    dbtest_backend_teardown(&b);
}

/* ------------------------------------------------------------------------- */
/* Per backend                                                               */
/* ------------------------------------------------------------------------- */

static const char *blob_type(hv_db_t *db) { return hv_db_kind(db) == HV_DB_PG ? "BYTEA" : "BLOB"; }

static void create_types_table(hv_db_t *db) {
    char sql[256];
    snprintf(sql, sizeof(sql),
             "CREATE TABLE types(id INTEGER PRIMARY KEY, i BIGINT, d DOUBLE PRECISION, s TEXT, b %s)",
             blob_type(db));
    assert_int_equal(hv_db_exec(db, sql), HV_OK);
}

static void db_bind_and_read_back_every_type(void **state) {
    static const unsigned char zeros[] = {0, 1, 0, 255, 0, '\\', 'x', 0};
    static const struct {
        int64_t i;
        double d;
        const char *s;
        const unsigned char *b;
        size_t blen;
    } rows[] = {
        {INT64_MAX, 1.5, "plain", zeros, sizeof(zeros)},
        {INT64_MIN, -0.25, "Gr\xc3\xbc\xc3\x9f" "e \xe2\x9c\x93", (const unsigned char *)"", 0},
        {-1, 1e300, "", (const unsigned char *)"x", 1},
        {0, 0.1, "line\nbreak\ttab", zeros + 1, 1},
    };
    hv_db_t *db = dbtest_open(BACKEND(state));
    hv_db_stmt_t *st = NULL;
    size_t i, len;
    create_types_table(db);
    for (i = 0; i < HV_ARRAY_LEN(rows); i++) {
        assert_int_equal(hv_db_prepare(db, "INSERT INTO types(id, i, d, s, b) VALUES ($1, $2, $3, $4, $5)",
                                       &st),
                         HV_OK);
        assert_int_equal(hv_db_bind_int64(st, 1, (int64_t)i), HV_OK);
        assert_int_equal(hv_db_bind_int64(st, 2, rows[i].i), HV_OK);
        assert_int_equal(hv_db_bind_double(st, 3, rows[i].d), HV_OK);
        assert_int_equal(hv_db_bind_text(st, 4, rows[i].s, strlen(rows[i].s)), HV_OK);
        assert_int_equal(hv_db_bind_blob(st, 5, rows[i].b, rows[i].blen), HV_OK);
        assert_int_equal(hv_db_step(st), HV_OK);
        assert_int_equal(hv_db_changes(db), 1);
        hv_db_done(st);
    }
    /* A row of NULLs, bound explicitly and by leaving parameters unbound. */
    assert_int_equal(hv_db_prepare(db, "INSERT INTO types(id, i, d, s, b) VALUES ($1, $2, $3, $4, $5)", &st),
                     HV_OK);
    assert_int_equal(hv_db_bind_int64(st, 1, 100), HV_OK);
    assert_int_equal(hv_db_bind_null(st, 2), HV_OK);
    assert_int_equal(hv_db_bind_text(st, 4, NULL, 0), HV_OK);
    assert_int_equal(hv_db_step(st), HV_OK);
    hv_db_done(st);

    assert_int_equal(hv_db_prepare(db, "SELECT id, i, d, s, b FROM types ORDER BY id", &st), HV_OK);
    for (i = 0; i < HV_ARRAY_LEN(rows); i++) {
        const char *s;
        const void *b;
        assert_int_equal(hv_db_step(st), HV_DB_ROW);
        assert_int_equal(hv_db_column_count(st), 5);
        assert_int_equal(hv_db_column_int64(st, 0), (int64_t)i);
        assert_true(hv_db_column_int64(st, 1) == rows[i].i);
        assert_true(hv_db_column_double(st, 2) == rows[i].d);
        s = hv_db_column_text(st, 3, &len);
        assert_non_null(s);
        assert_int_equal(len, strlen(rows[i].s));
        assert_memory_equal(s, rows[i].s, len);
        assert_int_equal(s[len], '\0');
        b = hv_db_column_blob(st, 4, &len);
        assert_non_null(b); /* even the empty blob */
        assert_false(hv_db_column_is_null(st, 4));
        assert_int_equal(len, rows[i].blen);
        if (len > 0) assert_memory_equal(b, rows[i].b, len);
    }
    assert_int_equal(hv_db_step(st), HV_DB_ROW);
    assert_int_equal(hv_db_column_int64(st, 0), 100);
    for (i = 1; i < 5; i++) assert_true(hv_db_column_is_null(st, (int)i));
    assert_null(hv_db_column_text(st, 3, &len));
    assert_int_equal(len, 0);
    assert_null(hv_db_column_blob(st, 4, &len));
    assert_int_equal(hv_db_column_int64(st, 1), 0);
    assert_true(hv_db_column_double(st, 2) == 0.0);
    assert_int_equal(hv_db_step(st), HV_OK);
    /* Out-of-range columns read as NULL rather than crashing. */
    assert_true(hv_db_column_is_null(st, 9));
    hv_db_done(st);
    hv_db_close(db);
}

static void db_sql_metacharacters_in_values_stay_data(void **state) {
    static const char *const evil[] = {
        "'); DROP TABLE notes; --", "$1", "?1", "\\x00ff", "%s%n", "\"quoted\"", "a''b", ";",
        "$$ dollar $$", "/* c */",
    };
    hv_db_t *db = dbtest_open(BACKEND(state));
    hv_db_stmt_t *st = NULL;
    size_t i, len;
    assert_int_equal(hv_db_exec(db, "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)"), HV_OK);
    for (i = 0; i < HV_ARRAY_LEN(evil); i++) {
        assert_int_equal(hv_db_prepare(db, "INSERT INTO notes(id, body) VALUES ($1, $2)", &st), HV_OK);
        hv_db_bind_int64(st, 1, (int64_t)i);
        hv_db_bind_text(st, 2, evil[i], strlen(evil[i]));
        assert_int_equal(hv_db_step(st), HV_OK);
        hv_db_done(st);
    }
    for (i = 0; i < HV_ARRAY_LEN(evil); i++) {
        const char *s;
        assert_int_equal(hv_db_prepare(db, "SELECT body, '$1' FROM notes WHERE body = $1", &st), HV_OK);
        hv_db_bind_text(st, 1, evil[i], strlen(evil[i]));
        assert_int_equal(hv_db_step(st), HV_DB_ROW);
        s = hv_db_column_text(st, 0, &len);
        assert_int_equal(len, strlen(evil[i]));
        assert_memory_equal(s, evil[i], len);
        /* The '$1' literal was not taken for a placeholder. */
        assert_string_equal(hv_db_column_text(st, 1, &len), "$1");
        assert_int_equal(hv_db_step(st), HV_OK);
        hv_db_done(st);
    }
    assert_int_equal(dbtest_query_int(db, "SELECT COUNT(*) FROM notes"), (int64_t)HV_ARRAY_LEN(evil));
    hv_db_close(db);
}

static void db_statement_cache_reuses_and_clears_bindings(void **state) {
    hv_db_t *db = dbtest_open(BACKEND(state));
    hv_db_stmt_t *a = NULL, *b = NULL, *c = NULL;
    const char *sql = "SELECT $1";
    size_t len;
    assert_int_equal(hv_db_prepare(db, sql, &a), HV_OK);
    assert_int_equal(hv_db_bind_text(a, 1, "first", 5), HV_OK);
    assert_int_equal(hv_db_step(a), HV_DB_ROW);
    assert_string_equal(hv_db_column_text(a, 0, &len), "first");
    /* The same text while the first is in use: a separate statement that works too. */
    assert_int_equal(hv_db_prepare(db, sql, &b), HV_OK);
    assert_ptr_not_equal(a, b);
    assert_int_equal(hv_db_bind_text(b, 1, "nested", 6), HV_OK);
    assert_int_equal(hv_db_step(b), HV_DB_ROW);
    assert_string_equal(hv_db_column_text(b, 0, &len), "nested");
    hv_db_done(b);
    assert_string_equal(hv_db_column_text(a, 0, &len), "first");
    hv_db_done(a);
    /* Preparing again returns the cached statement, reset, with no bindings left. */
    assert_int_equal(hv_db_prepare(db, sql, &c), HV_OK);
    assert_ptr_equal(c, a);
    assert_int_equal(hv_db_step(c), HV_DB_ROW);
    assert_true(hv_db_column_is_null(c, 0));
    hv_db_done(c);
    hv_db_close(db);
}

static void db_statement_cache_evicts_beyond_capacity(void **state) {
    hv_db_t *db = dbtest_open(BACKEND(state));
    hv_db_stmt_t *st = NULL, *first = NULL;
    char sql[64];
    int i, round;
    for (round = 0; round < 2; round++) {
        for (i = 0; i < HV__DB_CACHE_MAX + 20; i++) {
            snprintf(sql, sizeof(sql), "SELECT %d + $1", i);
            assert_int_equal(hv_db_prepare(db, sql, &st), HV_OK);
            if (round == 0 && i == 0) first = st;
            hv_db_bind_int64(st, 1, 1000);
            assert_int_equal(hv_db_step(st), HV_DB_ROW);
            assert_int_equal(hv_db_column_int64(st, 0), 1000 + i);
            hv_db_done(st);
        }
    }
    assert_true(db->ncached <= HV__DB_CACHE_MAX);
    (void)first;
    hv_db_close(db);
}

/* The cache remembers a statement by the address of its text too (HV__DB_MEMO_SLOTS):
 * an address that now holds another text must get that text's statement. */
static void db_statement_cache_address_holding_new_text_prepares_that_text(void **state) {
    hv_db_t *db = dbtest_open(BACKEND(state));
    hv_db_stmt_t *st = NULL;
    char sql[64];
    int i;
    for (i = 0; i < 3; i++) {
        snprintf(sql, sizeof(sql), "SELECT %d + $1", 10 * i);
        assert_int_equal(hv_db_prepare(db, sql, &st), HV_OK);
        assert_int_equal(hv_db_bind_int64(st, 1, 1), HV_OK);
        assert_int_equal(hv_db_step(st), HV_DB_ROW);
        assert_int_equal(hv_db_column_int64(st, 0), 10 * i + 1);
        hv_db_done(st);
    }
    /* Back to the first text at the same address: its cached statement again. */
    snprintf(sql, sizeof(sql), "SELECT %d + $1", 0);
    assert_int_equal(hv_db_prepare(db, sql, &st), HV_OK);
    assert_int_equal(hv_db_bind_int64(st, 1, 5), HV_OK);
    assert_int_equal(hv_db_step(st), HV_DB_ROW);
    assert_int_equal(hv_db_column_int64(st, 0), 5);
    hv_db_done(st);
    hv_db_close(db);
}

/* One text prepared from two addresses, then evicted by a full cache of other texts:
 * neither address may hand out the finalized statement (a sanitizer build reports the
 * use after free that a stale memo slot would be). */
static void db_statement_cache_evicted_statement_is_prepared_again_from_any_address(void **state) {
    hv_db_t *db = dbtest_open(BACKEND(state));
    hv_db_stmt_t *st = NULL, *first = NULL;
    char a[64], b[64], other[64];
    int i, k;
    snprintf(a, sizeof(a), "SELECT 7 + $1");
    snprintf(b, sizeof(b), "SELECT 7 + $1");
    assert_int_equal(hv_db_prepare(db, a, &first), HV_OK);
    hv_db_done(first);
    assert_int_equal(hv_db_prepare(db, b, &st), HV_OK);
    assert_ptr_equal(st, first); /* the same text from another address: the cached statement */
    hv_db_done(st);
    for (i = 0; i < HV__DB_CACHE_MAX + 20; i++) {
        snprintf(other, sizeof(other), "SELECT %d - $1", i);
        assert_int_equal(hv_db_prepare(db, other, &st), HV_OK);
        hv_db_done(st);
    }
    for (k = 0; k < 2; k++) {
        assert_int_equal(hv_db_prepare(db, k == 0 ? a : b, &st), HV_OK);
        assert_int_equal(hv_db_bind_int64(st, 1, k), HV_OK);
        assert_int_equal(hv_db_step(st), HV_DB_ROW);
        assert_int_equal(hv_db_column_int64(st, 0), 7 + k);
        hv_db_done(st);
    }
    hv_db_close(db);
}

/* hv_db_done leaves the backend's values bound; a parameter not bound again before the
 * next step must read as NULL, also when its old value was a static text since freed. */
static void db_statement_parameter_not_bound_again_is_null(void **state) {
    hv_db_t *db = dbtest_open(BACKEND(state));
    hv_db_stmt_t *st = NULL;
    const char *sql = "SELECT $1, $2, $3";
    char *heap = hv_strdup("gone");
    size_t len;
    int rows = 0;
    assert_non_null(heap);
    assert_int_equal(hv_db_prepare(db, sql, &st), HV_OK);
    assert_int_equal(hv_db_bind_text_static(st, 1, heap, 4), HV_OK);
    assert_int_equal(hv_db_bind_int64(st, 2, 5), HV_OK);
    assert_int_equal(hv_db_bind_text(st, 3, "kept", 4), HV_OK);
    assert_int_equal(hv_db_step(st), HV_DB_ROW);
    assert_string_equal(hv_db_column_text(st, 0, &len), "gone");
    hv_db_done(st);
    hv_free(heap);
    assert_int_equal(hv_db_prepare(db, sql, &st), HV_OK);
    assert_int_equal(hv_db_bind_int64(st, 2, 6), HV_OK);
    assert_int_equal(hv_db_bind_int64(st, 2, 7), HV_OK); /* bound twice: still one parameter */
    assert_int_equal(hv_db_step(st), HV_DB_ROW);
    assert_true(hv_db_column_is_null(st, 0));
    assert_int_equal(hv_db_column_int64(st, 1), 7);
    assert_true(hv_db_column_is_null(st, 2));
    hv_db_done(st);
    /* A statement stepped over several rows keeps its values for the whole execution. */
    assert_int_equal(hv_db_exec(db, "CREATE TABLE nb(x INTEGER); INSERT INTO nb VALUES (1), (2), (3)"), HV_OK);
    assert_int_equal(hv_db_prepare(db, "SELECT x FROM nb WHERE x > $1 ORDER BY x", &st), HV_OK);
    assert_int_equal(hv_db_bind_int64(st, 1, 1), HV_OK);
    while (hv_db_step(st) == HV_DB_ROW) assert_int_equal(hv_db_column_int64(st, 0), 2 + rows++);
    assert_int_equal(rows, 2);
    hv_db_done(st);
    hv_db_close(db);
}

static void db_bind_rejects_out_of_range_index(void **state) {
    hv_db_t *db = dbtest_open(BACKEND(state));
    hv_db_stmt_t *st = NULL;
    assert_int_equal(hv_db_prepare(db, "SELECT $1, $2", &st), HV_OK);
    assert_int_equal(hv_db_bind_int64(st, 0, 1), HV_EINVAL);
    assert_int_equal(hv_db_bind_int64(st, 3, 1), HV_EINVAL);
    assert_int_equal(hv_db_bind_int64(st, 2, 1), HV_OK);
    assert_true(strstr(hv_db_errmsg(db), "$3") != NULL);
    hv_db_done(st);
    hv_db_close(db);
}

static void db_rollback_discards_and_commit_keeps(void **state) {
    hv_db_t *db = dbtest_open(BACKEND(state));
    assert_int_equal(hv_db_exec(db, "CREATE TABLE r(x INTEGER)"), HV_OK);
    assert_int_equal(hv_db_begin(db), HV_OK);
    assert_int_equal(hv_db_exec(db, "INSERT INTO r VALUES (1); INSERT INTO r VALUES (2)"), HV_OK);
    assert_int_equal(dbtest_query_int(db, "SELECT COUNT(*) FROM r"), 2);
    assert_int_equal(hv_db_rollback(db), HV_OK);
    assert_int_equal(dbtest_query_int(db, "SELECT COUNT(*) FROM r"), 0);
    assert_int_equal(hv_db_begin(db), HV_OK);
    assert_int_equal(hv_db_exec(db, "INSERT INTO r VALUES (3)"), HV_OK);
    assert_int_equal(hv_db_commit(db), HV_OK);
    assert_int_equal(dbtest_query_int(db, "SELECT SUM(x) FROM r"), 3);
    hv_db_close(db);
}

static void db_changes_counts_rows_of_last_write(void **state) {
    hv_db_t *db = dbtest_open(BACKEND(state));
    hv_db_stmt_t *st = NULL;
    assert_int_equal(hv_db_exec(db, "CREATE TABLE c(x INTEGER)"), HV_OK);
    assert_int_equal(hv_db_exec(db, "INSERT INTO c VALUES (1), (2), (3)"), HV_OK);
    assert_int_equal(hv_db_prepare(db, "UPDATE c SET x = x + $1", &st), HV_OK);
    hv_db_bind_int64(st, 1, 10);
    assert_int_equal(hv_db_step(st), HV_OK);
    hv_db_done(st);
    assert_int_equal(hv_db_changes(db), 3);
    assert_int_equal(hv_db_prepare(db, "DELETE FROM c WHERE x > $1", &st), HV_OK);
    hv_db_bind_int64(st, 1, 11);
    assert_int_equal(hv_db_step(st), HV_OK);
    hv_db_done(st);
    assert_int_equal(hv_db_changes(db), 2);
    /* A SELECT does not change the count. */
    assert_int_equal(dbtest_query_int(db, "SELECT COUNT(*) FROM c"), 1);
    assert_int_equal(hv_db_changes(db), 2);
    hv_db_close(db);
}

static void db_unique_violation_is_conflict_without_values(void **state) {
    hv_db_t *db = dbtest_open(BACKEND(state));
    hv_db_stmt_t *st = NULL;
    int i, rc = HV_OK;
    assert_int_equal(hv_db_exec(db, "CREATE TABLE u(k TEXT PRIMARY KEY)"), HV_OK);
    for (i = 0; i < 2; i++) {
        assert_int_equal(hv_db_prepare(db, "INSERT INTO u(k) VALUES ($1)", &st), HV_OK);
        hv_db_bind_text(st, 1, "SECRET-MRN-123", 14);
        rc = hv_db_step(st);
        hv_db_done(st);
    }
    assert_int_equal(rc, HV_ECONFLICT);
    assert_true(hv_db_errmsg(db)[0] != '\0');
    assert_null(strstr(hv_db_errmsg(db), "SECRET-MRN"));
    /* A syntax error is a database error with a message. */
    assert_int_equal(hv_db_exec(db, "SELEC nonsense"), HV_EDB);
    assert_true(hv_db_errmsg(db)[0] != '\0');
    assert_int_not_equal(hv_db_prepare(db, "SELECT FROM WHERE $1", &st), HV_OK);
    hv_db_close(db);
}

/* Inserts k into q through hv_db_step_later; returns what it returned. */
static int insert_later(hv_db_t *db, int64_t k) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "INSERT INTO q(k, v) VALUES ($1, $2)", &st);
    assert_int_equal(rc, HV_OK);
    hv_db_bind_int64(st, 1, k);
    hv_db_bind_text(st, 2, "SECRET-MRN-123", 14);
    rc = hv_db_step_later(st);
    hv_db_done(st);
    return rc;
}

/*
 * hv_db_step_later: statements queued (PostgreSQL's pipeline; SQLite runs them at once)
 * are seen by the next statement, survive a queue longer than one drain, and a failure
 * among them is reported once — by the call itself or by the next one that waits — with
 * no bound value in the message; a COMMIT after a queued failure keeps nothing.
 */
static void db_statements_run_later_report_their_failure_once(void **state) {
    hv_db_t *db = dbtest_open(BACKEND(state));
    int rc1, rc2;
    assert_int_equal(hv_db_exec(db, "CREATE TABLE q(k INTEGER PRIMARY KEY, v TEXT)"), HV_OK);
    assert_int_equal(hv_db_begin(db), HV_OK);
    for (int64_t k = 1; k <= 600; k++) assert_int_equal(insert_later(db, k), HV_OK);
    assert_int_equal(dbtest_query_int(db, "SELECT COUNT(*) FROM q"), 600); /* waits: sees them */
    assert_int_equal(insert_later(db, 601), HV_OK);
    assert_int_equal(hv_db_flush(db), HV_OK);
    assert_int_equal(hv_db_flush(db), HV_OK); /* nothing queued: nothing to report */
    assert_int_equal(hv_db_commit(db), HV_OK);
    assert_int_equal(dbtest_query_int(db, "SELECT SUM(k) FROM q"), 601 * 602 / 2);

    /* A duplicate key: reported by the call or by the flush, not both. */
    assert_int_equal(hv_db_begin(db), HV_OK);
    rc1 = insert_later(db, 5);
    rc2 = hv_db_flush(db);
    assert_true((rc1 == HV_ECONFLICT && rc2 == HV_OK) || (rc1 == HV_OK && rc2 == HV_ECONFLICT));
    assert_null(strstr(hv_db_errmsg(db), "SECRET-MRN"));
    assert_int_equal(hv_db_rollback(db), HV_OK);

    /* Queued behind a good row, a failure fails the COMMIT, which keeps neither. */
    assert_int_equal(hv_db_begin(db), HV_OK);
    assert_int_equal(insert_later(db, 700), HV_OK);
    rc1 = insert_later(db, 6);
    rc2 = hv_db_commit(db);
    if (rc1 == HV_OK) {
        assert_int_equal(rc2, HV_ECONFLICT);
        assert_int_equal(hv_db_rollback(db), HV_OK);
        assert_int_equal(dbtest_query_int(db, "SELECT COUNT(*) FROM q WHERE k = 700"), 0);
    } else { /* SQLite: the statement failed alone, the transaction went on */
        assert_int_equal(rc1, HV_ECONFLICT);
        assert_int_equal(rc2, HV_OK);
    }
    /* A failure among many queued: before the drain of a full queue (PostgreSQL: reported
     * by the call that fills it) or after it (by the flush), reported once; nothing of the
     * transaction kept. */
    for (int at = 40; at <= 280; at += 240) {
        int failures = 0, rc = HV_OK;
        assert_int_equal(hv_db_begin(db), HV_OK);
        for (int64_t i = 1; i <= 300 && rc == HV_OK; i++) {
            rc = insert_later(db, i == at ? 7 : 1000 + i);
            failures += rc != HV_OK;
            if (rc != HV_OK) assert_int_equal(rc, HV_ECONFLICT);
        }
        rc = hv_db_flush(db);
        failures += rc != HV_OK;
        if (rc != HV_OK) assert_int_equal(rc, HV_ECONFLICT);
        assert_int_equal(failures, 1);
        assert_null(strstr(hv_db_errmsg(db), "SECRET-MRN"));
        assert_int_equal(hv_db_rollback(db), HV_OK);
        assert_int_equal(dbtest_query_int(db, "SELECT COUNT(*) FROM q WHERE k > 1000"), 0);
    }
    /* The connection works as before. */
    assert_int_equal(dbtest_query_int(db, "SELECT COUNT(*) FROM q WHERE k <= 601"), 601);
    hv_db_close(db);
}

static void db_migrations_apply_once_and_in_order(void **state) {
    static const char *const v3[] = {
        "CREATE TABLE m(x INTEGER)",
        "INSERT INTO m VALUES (1)",
        "UPDATE m SET x = x * 10 + 2", /* gives 12 only if applied after the insert */
        NULL,
    };
    static const char *const v4[] = {
        "CREATE TABLE m(x INTEGER)", "INSERT INTO m VALUES (1)", "UPDATE m SET x = x * 10 + 2",
        "UPDATE m SET x = x * 10 + 3", NULL,
    };
    static const char *const v5_broken[] = {
        "CREATE TABLE m(x INTEGER)", "INSERT INTO m VALUES (1)", "UPDATE m SET x = x * 10 + 2",
        "UPDATE m SET x = x * 10 + 3",
        "INSERT INTO m VALUES (99); INSERT INTO no_such_table VALUES (1)", NULL,
    };
    hv_db_t *db = dbtest_open(BACKEND(state));
    hv_error_t err;
    hv_error_clear(&err);
    assert_int_equal(hv_db_migrate(db, "test", v3, &err), HV_OK);
    assert_int_equal(dbtest_query_int(db, "SELECT x FROM m"), 12);
    assert_int_equal(dbtest_query_int(db, "SELECT version FROM hv_schema WHERE module = 'test'"), 3);
    /* Applied once: running again changes nothing. */
    assert_int_equal(hv_db_migrate(db, "test", v3, &err), HV_OK);
    assert_int_equal(dbtest_query_int(db, "SELECT x FROM m"), 12);
    /* A new migration appended: only it runs. */
    assert_int_equal(hv_db_migrate(db, "test", v4, &err), HV_OK);
    assert_int_equal(dbtest_query_int(db, "SELECT x FROM m"), 123);
    assert_int_equal(dbtest_query_int(db, "SELECT version FROM hv_schema WHERE module = 'test'"), 4);
    /* A failing migration is rolled back whole and the version stays. */
    assert_int_equal(hv_db_migrate(db, "test", v5_broken, &err), HV_EDB);
    assert_true(strstr(err.message, "migration 5") != NULL);
    assert_string_equal(err.location, "test");
    assert_int_equal(dbtest_query_int(db, "SELECT COUNT(*) FROM m"), 1);
    assert_int_equal(dbtest_query_int(db, "SELECT version FROM hv_schema WHERE module = 'test'"), 4);
    /* Another module's versions are its own. */
    assert_int_equal(hv_db_migrate(db, "other", v3 + 2, &err), HV_OK);
    assert_int_equal(dbtest_query_int(db, "SELECT x FROM m"), 1232);
    /* A database newer than the program refuses to run. */
    assert_int_equal(hv_db_migrate(db, "test", v3, &err), HV_EDB);
    hv_db_close(db);
}

/* Runs hv_db_migrate with standard error in a temporary file at log level `level`,
 * and returns how many lines of that file hold needle. */
static int migrate_logged_at(hv_db_t *db, const char *const *migrations, int level, const char *needle) {
    char line[1024];
    hv_error_t err;
    int n = 0, saved = dup(2), prev = hv_log_level();
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_true(saved >= 0);
    hv_log_flush();
    hv_log_configure(level, HV_LOG_JSON);
    assert_int_equal(dup2(fileno(f), 2), 2);
    hv_error_clear(&err);
    assert_int_equal(hv_db_migrate(db, "logged", migrations, &err), HV_OK);
    hv_log_flush();
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    hv_log_configure(prev, HV_LOG_JSON);
    rewind(f);
    while (fgets(line, sizeof(line), f) != NULL) n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static int migrate_logged(hv_db_t *db, const char *const *migrations, const char *needle) {
    return migrate_logged_at(db, migrations, HV_LOG_INFO, needle);
}

/* An upgrade of an existing schema says at info which migration ran and for how long
 * (one that rebuilds a large table holds the start-up); a new schema's do not. */
static void db_migrations_of_an_existing_schema_are_logged_at_info(void **state) {
    static const char *const v2[] = {"CREATE TABLE lg(x INTEGER)", "INSERT INTO lg VALUES (1)", NULL};
    static const char *const v4[] = {"CREATE TABLE lg(x INTEGER)", "INSERT INTO lg VALUES (1)",
                                     "INSERT INTO lg VALUES (2)", "INSERT INTO lg VALUES (3)", NULL};
    hv_db_t *db = dbtest_open(BACKEND(state));
    assert_int_equal(migrate_logged(db, v2, "\"event\":\"db.migrated\""), 0);
    assert_int_equal(migrate_logged(db, v4, "\"event\":\"db.migrated\""), 2);
    assert_int_equal(dbtest_query_int(db, "SELECT COUNT(*) FROM lg"), 3);
    hv_db_close(db);
    /* A fresh database and a current one log nothing at info either. */
    db = dbtest_open(BACKEND(state));
    assert_int_equal(migrate_logged(db, v4, "db.migrated"), 0);
    assert_int_equal(migrate_logged(db, v4, "db.migrated"), 0);
    hv_db_close(db);
}

/* A new schema's migrations run in one transaction: one step, logged once (at debug)
 * with the number applied, and the version written once. */
static void db_new_schema_migrations_run_in_one_transaction(void **state) {
    static const char *const v3[] = {"CREATE TABLE one(x INTEGER)", "INSERT INTO one VALUES (1)",
                                     "INSERT INTO one VALUES (2)", NULL};
    hv_db_t *db = dbtest_open(BACKEND(state));
    assert_int_equal(migrate_logged_at(db, v3, HV_LOG_DEBUG, "\"event\":\"db.migrated\""), 1);
    assert_int_equal(dbtest_query_int(db, "SELECT COUNT(*) FROM one"), 2);
    assert_int_equal(dbtest_query_int(db, "SELECT version FROM hv_schema WHERE module = 'logged'"), 3);
    hv_db_close(db);
    db = dbtest_open(BACKEND(state));
    assert_int_equal(migrate_logged_at(db, v3, HV_LOG_DEBUG, "\"applied\":3"), 1);
    hv_db_close(db);
}

/* A failing migration of a new schema rolls back the whole set: the schema stays at
 * version 0, with none of the earlier migrations' tables, and the next run applies
 * the (fixed) list from the start. */
static void db_new_schema_failing_migration_leaves_version_zero(void **state) {
    static const char *const broken[] = {"CREATE TABLE nz(x INTEGER)", "INSERT INTO nz VALUES (1)",
                                         "INSERT INTO no_such_table VALUES (1)", NULL};
    static const char *const fixed[] = {"CREATE TABLE nz(x INTEGER)", "INSERT INTO nz VALUES (1)",
                                        "INSERT INTO nz VALUES (2)", NULL};
    static const char *const other[] = {"CREATE TABLE ot(x INTEGER)", NULL};
    hv_db_t *db = dbtest_open(BACKEND(state));
    hv_error_t err;
    hv_error_clear(&err);
    /* Another module's version row, so that hv_schema outlives the rollback. */
    assert_int_equal(hv_db_migrate(db, "other", other, &err), HV_OK);
    assert_int_equal(hv_db_migrate(db, "fresh", broken, &err), HV_EDB);
    assert_true(strstr(err.message, "migration 3") != NULL);
    assert_string_equal(err.location, "fresh");
    assert_int_equal(dbtest_query_int(db, "SELECT COUNT(*) FROM hv_schema WHERE module = 'fresh'"), 0);
    /* The next run starts again from the first migration (CREATE TABLE nz would fail
     * had it been kept). */
    hv_error_clear(&err);
    assert_int_equal(hv_db_migrate(db, "fresh", fixed, &err), HV_OK);
    assert_int_equal(dbtest_query_int(db, "SELECT SUM(x) FROM nz"), 3);
    assert_int_equal(dbtest_query_int(db, "SELECT version FROM hv_schema WHERE module = 'fresh'"), 3);
    hv_db_close(db);
}

/* An upgrade still applies one migration per transaction: when the second of two new
 * migrations fails, the first stays applied and the version names it. */
static void db_upgrade_keeps_each_migration_that_succeeded(void **state) {
    static const char *const v1[] = {"CREATE TABLE up(x INTEGER)", NULL};
    static const char *const v3_broken[] = {"CREATE TABLE up(x INTEGER)", "INSERT INTO up VALUES (7)",
                                            "INSERT INTO no_such_table VALUES (1)", NULL};
    hv_db_t *db = dbtest_open(BACKEND(state));
    hv_error_t err;
    hv_error_clear(&err);
    assert_int_equal(hv_db_migrate(db, "up", v1, &err), HV_OK);
    assert_int_equal(hv_db_migrate(db, "up", v3_broken, &err), HV_EDB);
    assert_true(strstr(err.message, "migration 3") != NULL);
    assert_int_equal(dbtest_query_int(db, "SELECT version FROM hv_schema WHERE module = 'up'"), 2);
    assert_int_equal(dbtest_query_int(db, "SELECT SUM(x) FROM up"), 7);
    hv_db_close(db);
}

typedef struct migrate_arg {
    hv_db_t *db;
    const char *const *migrations;
    int rc;
} migrate_arg_t;

static void migrate_thread(void *p) {
    migrate_arg_t *a = p;
    hv_error_t err;
    a->rc = hv_db_migrate(a->db, "race", a->migrations, &err);
    hv_log_thread_exit();
}

static void db_concurrent_migrations_apply_each_once(void **state) {
    static const char *const migrations[] = {
        "CREATE TABLE m(x INTEGER); INSERT INTO m VALUES (1)",
        "UPDATE m SET x = x * 10 + 2",
        "UPDATE m SET x = x * 10 + 3",
        "UPDATE m SET x = x * 10 + 4",
        NULL,
    };
    const dbtest_backend_t *b = BACKEND(state);
    migrate_arg_t args[2];
    uv_thread_t threads[2];
    int i, round;
    for (round = 0; round < 3; round++) {
        hv_db_t *first = dbtest_open(b);
        args[0].db = first;
        args[1].db = dbtest_reopen(b, first);
        /* Two connections (two processes, in production) start together. */
        for (i = 0; i < 2; i++) {
            args[i].migrations = migrations;
            args[i].rc = -100;
            assert_int_equal(uv_thread_create(&threads[i], migrate_thread, &args[i]), 0);
        }
        for (i = 0; i < 2; i++) uv_thread_join(&threads[i]);
        assert_int_equal(args[0].rc, HV_OK);
        assert_int_equal(args[1].rc, HV_OK);
        assert_int_equal(dbtest_query_int(first, "SELECT x FROM m"), 1234);
        assert_int_equal(dbtest_query_int(args[1].db, "SELECT COUNT(*) FROM m"), 1);
        hv_db_close(args[1].db);
        hv_db_close(first);
    }
}

static void db_open_configures_backend(void **state) {
    const dbtest_backend_t *b = BACKEND(state);
    hv_db_t *db = dbtest_open(b);
    hv_db_stmt_t *st = NULL;
    size_t len;
    if (hv_db_kind(db) == HV_DB_SQLITE) {
        struct stat sb;
        char path[512];
        assert_int_equal(hv_db_exec(db, "CREATE TABLE t(x INTEGER)"), HV_OK);
        assert_int_equal(dbtest_query_int(db, "PRAGMA auto_vacuum"), 2); /* INCREMENTAL */
        assert_int_equal(dbtest_query_int(db, "PRAGMA synchronous"), 2); /* FULL */
        assert_int_equal(dbtest_query_int(db, "PRAGMA foreign_keys"), 1);
        assert_int_equal(dbtest_query_int(db, "PRAGMA busy_timeout"), 5000);
        assert_int_equal(hv_db_prepare(db, "PRAGMA journal_mode", &st), HV_OK);
        assert_int_equal(hv_db_step(st), HV_DB_ROW);
        assert_string_equal(hv_db_column_text(st, 0, &len), "wal");
        hv_db_done(st);
        assert_int_equal(hv_db_set_synchronous(db, "NORMAL"), HV_OK);
        assert_int_equal(dbtest_query_int(db, "PRAGMA synchronous"), 1);
        snprintf(path, sizeof(path), "%s/%s.db", b->dir, db->name);
        assert_int_equal(stat(path, &sb), 0);
        assert_int_equal(sb.st_mode & 0777, 0600);
    } else {
        assert_int_equal(hv_db_prepare(db, "SELECT current_schema()", &st), HV_OK);
        assert_int_equal(hv_db_step(st), HV_DB_ROW);
        assert_string_equal(hv_db_column_text(st, 0, &len), db->name);
        hv_db_done(st);
        assert_int_equal(hv_db_set_synchronous(db, "NORMAL"), HV_OK);
        assert_int_equal(hv_db_prepare(db, "SELECT current_setting('synchronous_commit')", &st),
                         HV_OK);
        assert_int_equal(hv_db_step(st), HV_DB_ROW);
        assert_string_equal(hv_db_column_text(st, 0, &len), "off");
        hv_db_done(st);
    }
    assert_int_equal(hv_db_set_synchronous(db, "sometimes"), HV_EINVAL);
    hv_db_close(db);
}

static void db_each_module_has_its_own_tables(void **state) {
    const dbtest_backend_t *b = BACKEND(state);
    hv_db_t *one = dbtest_open(b), *two = dbtest_open(b);
    assert_int_equal(hv_db_exec(one, "CREATE TABLE same(x INTEGER); INSERT INTO same VALUES (1)"),
                     HV_OK);
    assert_int_equal(hv_db_exec(two, "CREATE TABLE same(x INTEGER); INSERT INTO same VALUES (2)"),
                     HV_OK);
    assert_int_equal(dbtest_query_int(one, "SELECT x FROM same"), 1);
    assert_int_equal(dbtest_query_int(two, "SELECT x FROM same"), 2);
    hv_db_close(one);
    hv_db_close(two);
}

static void db_double_special_values_round_trip(void **state) {
    static const double values[] = {0.1, -1e-300, 123456789.125, 1.0 / 3.0};
    hv_db_t *db = dbtest_open(BACKEND(state));
    hv_db_stmt_t *st = NULL;
    size_t i;
    assert_int_equal(hv_db_exec(db, "CREATE TABLE f(d DOUBLE PRECISION)"), HV_OK);
    for (i = 0; i < HV_ARRAY_LEN(values); i++) {
        assert_int_equal(hv_db_prepare(db, "INSERT INTO f(d) VALUES ($1)", &st), HV_OK);
        hv_db_bind_double(st, 1, values[i]);
        assert_int_equal(hv_db_step(st), HV_OK);
        hv_db_done(st);
        assert_int_equal(hv_db_prepare(db, "SELECT d FROM f WHERE d = $1", &st), HV_OK);
        hv_db_bind_double(st, 1, values[i]);
        assert_int_equal(hv_db_step(st), HV_DB_ROW);
        assert_true(hv_db_column_double(st, 0) == values[i]);
        hv_db_done(st);
    }
    hv_db_close(db);
}

int run_db_tests(void) {
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(db_placeholders_translate_outside_literals),
        cmocka_unit_test(db_open_rejects_bad_module_names),
        cmocka_unit_test(db_open_sqlite_url_is_a_directory),
    };
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(db_bind_and_read_back_every_type),
        cmocka_unit_test(db_sql_metacharacters_in_values_stay_data),
        cmocka_unit_test(db_statement_cache_reuses_and_clears_bindings),
        cmocka_unit_test(db_statement_cache_evicts_beyond_capacity),
        cmocka_unit_test(db_statement_cache_address_holding_new_text_prepares_that_text),
        cmocka_unit_test(db_statement_cache_evicted_statement_is_prepared_again_from_any_address),
        cmocka_unit_test(db_statement_parameter_not_bound_again_is_null),
        cmocka_unit_test(db_bind_rejects_out_of_range_index),
        cmocka_unit_test(db_rollback_discards_and_commit_keeps),
        cmocka_unit_test(db_changes_counts_rows_of_last_write),
        cmocka_unit_test(db_unique_violation_is_conflict_without_values),
        cmocka_unit_test(db_statements_run_later_report_their_failure_once),
        cmocka_unit_test(db_migrations_apply_once_and_in_order),
        cmocka_unit_test(db_migrations_of_an_existing_schema_are_logged_at_info),
        cmocka_unit_test(db_new_schema_migrations_run_in_one_transaction),
        cmocka_unit_test(db_new_schema_failing_migration_leaves_version_zero),
        cmocka_unit_test(db_upgrade_keeps_each_migration_that_succeeded),
        cmocka_unit_test(db_concurrent_migrations_apply_each_once),
        cmocka_unit_test(db_open_configures_backend),
        cmocka_unit_test(db_each_module_has_its_own_tables),
        cmocka_unit_test(db_double_special_values_round_trip),
    };
    int failed = cmocka_run_group_tests_name("engine/db", pure, NULL, NULL);
    return failed + dbtest_run_group("engine/db", tests, HV_ARRAY_LEN(tests));
}
