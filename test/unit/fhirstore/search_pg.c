/*
 * search_pg.c — the row-id pages of fhir/search_combo.c on PostgreSQL (issue 6): a single
 * token criterion pages from sp_tok_sr and a single string criterion from sp_str_rc
 * (migrations 7 and 8 of the index, PostgreSQL's 10 and 11 of the store) as on SQLite —
 * PostgreSQL's plans (EXPLAIN) read those covering indexes by key, never a sequential scan
 * of the index table, and the token page needs no sort (its range is in row-id order) —
 * and their pages and totals are the matching resources in row-id order, cursor after
 * cursor. Runs when HV_TEST_PG_URL names a server (scripts/test.sh starts one), else
 * prints NOT RUN, as the engine's database tests do (test/unit/engine/db.c).
 */
#include "tests.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fhir/search_int.h"

#define NOBS 200 /* Observations written through the store; one in ten has code "a" */
#define NPAT 80  /* Patients; one in four is named Smith */
#define NHAS 60  /* _has patients h<i> (store_test_put_has_population): code C1 observed for even i */
#define NNOS 30  /* Observations q<i> of code "n": without a system when i % 3 == 0, else of system urn:x */

static const char *pg_url;
static char pg_name[64];
static hv_db_t *pg_db; /* the group's store (pg_setup) */

/*
 * A fresh fhir schema on the server with NOBS Observations and NPAT Patients written by the
 * store, then rows of other resources and index rows of other values added in bulk (20,000
 * resources, 20,000 token, 20,000 string and 20,000 _has rows) so that the tables are large
 * enough for the planner's choice between an index and a scan to be the one a real store
 * gets, then VACUUM (as autovacuum would) and ANALYZE of the store's tables
 * (hv__search_analyze, as after an import). Shared by the group's tests, which only read.
 */
static int pg_setup(void **state)
{
    hv_db_t *db = NULL;
    hv_error_t err;
    char sql[256];
    (void)state;
    hv_error_clear(&err);
    snprintf(pg_name, sizeof(pg_name), "hvt_fsearch_%ld", (long)getpid());
    if (hv_db_open(pg_url, "/tmp", pg_name, &db, &err) != HV_OK)
        fail_msg("hv_db_open(%s): %s", pg_url, err.message);
    /* a schema a killed run of the same process id left behind */
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS \"%s\" CASCADE; CREATE SCHEMA \"%s\"", pg_name, pg_name);
    assert_int_equal(hv_db_exec(db, sql), HV_OK);
    assert_int_equal(hv_db_migrate(db, pg_name, hv__store_migrations(db), &err), HV_OK);
    assert_int_equal(hv_db_set_synchronous(db, "OFF"), HV_OK);
    assert_int_equal(hv_db_begin(db), HV_OK);
    for (int i = 0; i < NOBS; i++) {
        char j[256];
        snprintf(j, sizeof(j),
                 "{\"resourceType\":\"Observation\",\"id\":\"o%d\",\"status\":\"final\",\"code\":{\"coding\":["
                 "{\"system\":\"http://loinc.org\",\"code\":\"%s\"}]}}",
                 i, i % 10 == 0 ? "a" : "b");
        store_test_put(db, 1, j);
    }
    for (int i = 0; i < NHAS; i++)
        store_test_put_has_population(db, "h", i);
    for (int i = 0; i < NNOS; i++) {
        char j[256];
        snprintf(j, sizeof(j),
                 "{\"resourceType\":\"Observation\",\"id\":\"q%d\",\"status\":\"final\",\"code\":{\"coding\":["
                 "{%s\"code\":\"n\"}]}}",
                 i, i % 3 == 0 ? "" : "\"system\":\"urn:x\",");
        store_test_put(db, 1, j);
    }
    for (int i = 0; i < NPAT; i++) {
        char j[256];
        snprintf(j, sizeof(j), "{\"resourceType\":\"Patient\",\"id\":\"p%d\",\"name\":[{\"family\":\"%s\"}]}", i,
                 i % 4 == 0 ? "Smith" : "Jones");
        store_test_put(db, 1, j);
    }
    assert_int_equal(hv_db_exec(db, "INSERT INTO resources (type, id, version, last_ms, deleted, json) SELECT 'Basic',"
                                    " 'b' || g, 1, 1000, 0, '{}' FROM generate_series(1, 20000) g;"
                                    "INSERT INTO sp_tok (type, id, code, system, value, rid) SELECT 'Observation',"
                                    " 'x' || g, 'code', 'http://loinc.org', 'z' || (g % 50), 100000 + g FROM"
                                    " generate_series(1, 20000) g;"
                                    "INSERT INTO sp_str (type, id, code, value, rid) SELECT 'Patient', 'y' || g,"
                                    " 'name', 'n' || (g % 500), 200000 + g FROM generate_series(1, 20000) g;"
                                    /* many Observations of code C1 whose patients are not stored: a
                                     * _has of C1 read whole is 20,000 index entries, as it is large
                                     * at 1M, so a plan that reads it all is the costly one */
                                    "INSERT INTO sp_reftok (type, id, rcode, rtype, rid, tcode, tsys, tval) SELECT"
                                    " 'Observation', 'zo' || g, 'patient', 'Patient', 'zz' || g, 'code',"
                                    " 'http://loinc.org', 'C1' FROM generate_series(1, 20000) g"),
                     HV_OK);
    assert_int_equal(hv_db_commit(db), HV_OK);
    /* VACUUM as autovacuum does on a real store: it sets the visibility map, without which
     * PostgreSQL costs an index-only scan as a heap fetch per row and the choice between it
     * and a bitmap scan turns on a few rows (it did when the Patients' phonetic rows went). */
    assert_int_equal(hv_db_exec(db, "VACUUM (ANALYZE) resources, sp_tok, sp_str"), HV_OK);
    assert_int_equal(hv__search_analyze(db, 0), HV_OK);
    pg_db = db;
    return 0;
}

static int pg_teardown(void **state)
{
    char sql[128];
    (void)state;
    if (pg_db == NULL)
        return 0;
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS \"%s\" CASCADE", pg_name);
    hv_db_exec(pg_db, sql);
    hv_db_close(pg_db);
    pg_db = NULL;
    return 0;
}

typedef struct {
    char ids[64][HV__FHIR_ID_MAX];
    char cursors[64][32];
    int n;
} page_t;

static int collect(void *ud, const hv__store_row_t *row)
{
    page_t *pg = ud;
    assert_true(pg->n < 64);
    snprintf(pg->ids[pg->n], sizeof(pg->ids[0]), "%s", row->id);
    snprintf(pg->cursors[pg->n++], sizeof(pg->cursors[0]), "%s", row->cursor);
    return HV_OK;
}

/*
 * Follows query's pages of `count` through the keyset cursor (a page holds count + 1 rows
 * when another follows; the next page starts after the count-th, as fhir/search.c cuts it)
 * and checks that they are the expected ids — every step-th of prefix<0..n), in row-id
 * order, which is their writing order — and, on the first page, the accurate total.
 */
static void pg_pages(hv_db_t *db, const char *type, const char *query, int count, const char *prefix, int n, int step)
{
    char q[256], cur[32] = "";
    int want = 0, pages = 0;
    for (;;) {
        hv__search_plan_t p;
        page_t pg;
        int64_t total = -1;
        memset(&pg, 0, sizeof(pg));
        snprintf(q, sizeof(q), "%s&_count=%d%s%s", query, count, cur[0] ? "&_cursor=" : "", cur);
        hv__search_plan_init(&p);
        assert_int_equal(hv__search_plan_build(&p, type, q, 1, 10, 100), HV_OK);
        assert_int_equal(hv__search_plan_run(db, &p, collect, &pg, &total), HV_OK);
        if (pages == 0)
            assert_int_equal(total, (n + step - 1) / step);
        hv__search_plan_clear(&p);
        for (int i = 0; i < pg.n && i < count; i++) {
            char id[16];
            snprintf(id, sizeof(id), "%s%d", prefix, want);
            if (strcmp(pg.ids[i], id) != 0)
                fail_msg("%s: entry %d is %s, expected %s", q, i, pg.ids[i], id);
            want += step;
        }
        pages++;
        if (pg.n <= count)
            break;
        snprintf(cur, sizeof(cur), "%s", pg.cursors[count - 1]);
    }
    assert_int_equal(want, (n + step - 1) / step * step);
    assert_true(pages > 1);
}

/* Not "code=|a": with no row of a null system PostgreSQL rightly estimates none and may read
 * another index, then sort the (no) rows. "code=a" is pinned to its one system
 * (hv__search_tok_pin): the same range as "code=http://loinc.org|a". */
static void search_pg_tok_page_reads_sp_tok_sr_in_row_id_order(void **state)
{
    static const char *const queries[] = {"code=a", "code=http://loinc.org|a&_cursor=5"};
    hv_db_t *db = pg_db;
    (void)state;
    for (size_t i = 0; i < HV_ARRAY_LEN(queries); i++) {
        hv_buf_t plan;
        store_test_page_plan(db, "Observation", queries[i], hv__search_tok_only, &plan);
        if (strstr(plan.data, "Index Only Scan using sp_tok_sr on sp_tok") == NULL ||
            strstr(plan.data, "Seq Scan") != NULL || strstr(plan.data, "Sort Key: sp_tok.rid") != NULL ||
            strstr(plan.data, "Index Scan using resources_pkey on resources r") == NULL)
            fail_msg("%s: plan\n%s", queries[i], plan.data);
        hv_buf_release(&plan);
    }
    pg_pages(db, "Observation", "code=http://loinc.org|a", 4, "o", NOBS, 10);
}

static void search_pg_str_page_reads_sp_str_rc(void **state)
{
    static const char *const queries[] = {"name=smi", "family:exact=Smith&_cursor=5", "name=s"};
    hv_db_t *db = pg_db;
    (void)state;
    for (size_t i = 0; i < HV_ARRAY_LEN(queries); i++) {
        hv_buf_t plan;
        /* :exact reads each match's row for its raw value (not in the index). */
        int exact = strstr(queries[i], ":exact") != NULL;
        store_test_page_plan(db, "Patient", queries[i], hv__search_str_only, &plan);
        /* A range of sp_str_rc by key: index-only, or (this test's small tables, where the
         * heap's visibility is not always set) a bitmap scan of the same range — the choice
         * turned on a few rows when the Patients' phonetic rows went (s8-write). */
        if ((strstr(plan.data, exact ? "using sp_str_rc on sp_str" : "Index Only Scan using sp_str_rc on sp_str") == NULL &&
             (exact || strstr(plan.data, "Bitmap Index Scan on sp_str_rc") == NULL)) ||
            strstr(plan.data, "Seq Scan") != NULL || strstr(plan.data, "resources_tiv") != NULL ||
            strstr(plan.data, "Index Scan using resources_pkey on resources r") == NULL ||
            /* :exact seeks the value in the index's collation "C" (an index condition; in the
             * column's default collation it was only a filter over every family name) */
            (exact && strstr(plan.data, "(value)::text = 'smith'::text") == NULL))
            fail_msg("%s: plan\n%s", queries[i], plan.data);
        hv_buf_release(&plan);
    }
    pg_pages(db, "Patient", "name=smi", 7, "p", NPAT, 4);
}

/* How many times table of schema has been analyzed by an ANALYZE command (not autovacuum's). */
static int64_t analyze_count(hv_db_t *db, const char *schema, const char *table)
{
    hv_db_stmt_t *st = NULL;
    int64_t n = -1;
    assert_int_equal(hv_db_prepare(db, "SELECT analyze_count FROM pg_stat_user_tables WHERE schemaname = $1 AND"
                                       " relname = $2", &st), HV_OK);
    hv_db_bind_text(st, 1, schema, strlen(schema));
    hv_db_bind_text(st, 2, table, strlen(table));
    if (hv_db_step(st) == HV_DB_ROW)
        n = hv_db_column_int64(st, 0);
    hv_db_done(st);
    if (n < 0)
        fail_msg("no statistics row for %s.%s", schema, table);
    return n;
}

/*
 * hv__search_analyze on PostgreSQL analyzes the tables a bulk write changed, in the store's
 * schema only: after a reindex (index_only) the index tables but not resources; after an
 * import resources too; never a table of another schema of the database, nor a table of
 * the store that bulk writes do not fill (export_jobs). A plain ANALYZE (before) read them all.
 */
static void search_pg_analyze_reads_only_the_store_tables_it_changed(void **state)
{
    static const char *const index[] = {"sp_str", "sp_tok", "sp_ref", "sp_date", "sp_num", "sp_uri", "sp_geo",
                                        "sp_tokdate", "sp_tokqty", "sp_reftok"};
    hv_db_t *db = pg_db;
    char other[96], sql[512];
    int64_t before[HV_ARRAY_LEN(index)], res, refs, jobs, oth;
    (void)state;
    snprintf(other, sizeof(other), "%s_other", pg_name);
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS \"%s\" CASCADE; CREATE SCHEMA \"%s\"; CREATE TABLE \"%s\".t (a int);"
             " INSERT INTO \"%s\".t VALUES (1)", other, other, other, other);
    assert_int_equal(hv_db_exec(db, sql), HV_OK);
    for (size_t i = 0; i < HV_ARRAY_LEN(index); i++)
        before[i] = analyze_count(db, pg_name, index[i]);
    res = analyze_count(db, pg_name, "resources");
    refs = analyze_count(db, pg_name, "refs");
    jobs = analyze_count(db, pg_name, "export_jobs");
    oth = analyze_count(db, other, "t");
    assert_int_equal(hv__search_analyze(db, 1), HV_OK);
    for (size_t i = 0; i < HV_ARRAY_LEN(index); i++)
        if (analyze_count(db, pg_name, index[i]) != before[i] + 1)
            fail_msg("reindex: %s was not analyzed once", index[i]);
    assert_int_equal(analyze_count(db, pg_name, "resources"), res);
    assert_int_equal(analyze_count(db, pg_name, "refs"), refs);
    assert_int_equal(hv__search_analyze(db, 0), HV_OK);
    assert_int_equal(analyze_count(db, pg_name, "resources"), res + 1);
    assert_int_equal(analyze_count(db, pg_name, "refs"), refs + 1);
    assert_int_equal(analyze_count(db, pg_name, "sp_tok"), before[1] + 2);
    assert_int_equal(analyze_count(db, pg_name, "export_jobs"), jobs);
    assert_int_equal(analyze_count(db, other, "t"), oth);
    snprintf(sql, sizeof(sql), "DROP SCHEMA \"%s\" CASCADE", other);
    assert_int_equal(hv_db_exec(db, sql), HV_OK);
}

/*
 * "|code" (no system) reads the partial index sp_tok_nosys (PostgreSQL migration of
 * fhir/search_combo.c), in row-id order, for the page and for the count — not the value's
 * whole range of sp_tok_rc, which holds the rows of every system — and finds exactly the
 * rows without a system, page after page, with their total.
 */
static void search_pg_no_system_token_reads_its_partial_index(void **state)
{
    hv_db_t *db = pg_db;
    hv_buf_t plan;
    hv__search_plan_t p;
    (void)state;
    store_test_page_plan(db, "Observation", "code=|n", hv__search_tok_only, &plan);
    if (strstr(plan.data, "using sp_tok_nosys on sp_tok") == NULL || strstr(plan.data, "Seq Scan") != NULL ||
        strstr(plan.data, "Sort Key") != NULL)
        fail_msg("code=|n: page plan\n%s", plan.data);
    hv_buf_release(&plan);
    hv__search_plan_init(&p);
    hv_buf_init(&plan, 0);
    assert_int_equal(hv__search_plan_build(&p, "Observation", "code=|n&_total=accurate", 1, 10, 100), HV_OK);
    assert_int_equal(hv__search_count_explain(db, &p, &plan), HV_OK);
    if (strstr(plan.data, "using sp_tok_nosys on sp_tok") == NULL || strstr(plan.data, "Seq Scan") != NULL)
        fail_msg("code=|n: count plan\n%s", plan.data);
    hv_buf_release(&plan);
    hv__search_plan_clear(&p);
    pg_pages(db, "Observation", "code=|n", 3, "q", NNOS, 3);
}

/*
 * Two criteria where one selects few index rows (code "a": 20 rows, under
 * INTERSECT_DRIVE_MAX) and the other many (status "final": 230): as on SQLite, the small one
 * drives the count and the page (the plan's `few`, fhir/search_run.c, index_ids) and the
 * other is checked per id by a seek of its (type, id, code, value) index — not both ranges
 * read whole and intersected, which PostgreSQL hashes (a chain to a patient's name beside a
 * date read 46,000 date rows for 94 ids at 100k, docs/performance.md, session 24). Without
 * a small criterion (code "b": 180 rows) none drives. The answers are the same either way.
 */
static void search_pg_intersection_is_driven_by_a_criterion_of_few_rows(void **state)
{
    static const struct {
        const char *query;
        int few;
    } cases[] = {
        {"code=a&status=final&_total=accurate", 1},
        {"status=final&code=a&_total=accurate", 2},
        {"code=b&status=final&_total=accurate", -1},
    };
    hv_db_t *db = pg_db;
    (void)state;
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++) {
        hv_buf_t plan;
        hv__search_plan_t p;
        hv_buf_init(&plan, 0);
        hv__search_plan_init(&p);
        assert_int_equal(hv__search_plan_build(&p, "Observation", cases[i].query, 1, 10, 100), HV_OK);
        assert_int_equal(hv__search_count_explain(db, &p, &plan), HV_OK);
        if (p.few != cases[i].few || strstr(plan.data, "Seq Scan") != NULL)
            fail_msg("%s: driven by %d (want %d)\n%s", cases[i].query, p.few, cases[i].few, plan.data);
        hv__search_plan_clear(&p);
        hv_buf_release(&plan);
    }
    pg_pages(db, "Observation", "code=a&status=final", 3, "o", NOBS, 10);
    pg_pages(db, "Observation", "status=final&code=a", 3, "o", NOBS, 10);
}

/* The ids of every page of query on type (pages of count, cursor after cursor), in order,
 * each followed by a space, into ids (of size cap). */
static void all_pages(hv_db_t *db, const char *type, const char *query, int count, char *ids, size_t cap)
{
    char q[256], cur[32] = "";
    size_t at = 0;
    ids[0] = '\0';
    for (int pages = 0; pages < 100; pages++) {
        hv__search_plan_t p;
        page_t pg;
        int64_t total = -1;
        memset(&pg, 0, sizeof(pg));
        snprintf(q, sizeof(q), "%s&_count=%d%s%s", query, count, cur[0] ? "&_cursor=" : "", cur);
        hv__search_plan_init(&p);
        assert_int_equal(hv__search_plan_build(&p, type, q, 1, 10, 100), HV_OK);
        assert_int_equal(hv__search_plan_run(db, &p, collect, &pg, &total), HV_OK);
        hv__search_plan_clear(&p);
        for (int i = 0; i < pg.n && i < count; i++) {
            int n = snprintf(ids + at, cap - at, "%s ", pg.ids[i]);
            assert_true(n > 0 && (size_t)n < cap - at);
            at += (size_t)n;
        }
        if (pg.n <= count)
            return;
        snprintf(cur, sizeof(cur), "%.31s", pg.cursors[count - 1]);
    }
    fail_msg("%s: more than 100 pages", query);
}

/*
 * A _has alone (Patient?_has:Observation:patient:code=C1, its page without a total) on
 * PostgreSQL: the candidates are not fenced into a sub-select planned for all its rows
 * (before: a scan of resources, an anti-join and a sort of every Patient, 0.8-0.95 s at
 * 1M) but walked in row-id order through resources_pkey until the page is full, serially
 * (no Gather: two workers for a page of 51); and its pages, cursor after cursor, are the
 * same ids SQLite's store returns for the same resources, which are the expected ones.
 */
static void search_pg_has_alone_walks_row_ids_serially_as_sqlite_answers(void **state)
{
    static const char *const queries[] = {"_has:Observation:patient:code=C1", "_has:Observation:subject:code=C2",
                                          "_has:Observation:patient:code=C1&name=hasfam"};
    hv_db_t *db = pg_db, *lite = store_test_db();
    char want[2048], got[2048], expect[2048];
    size_t at = 0;
    hv__search_plan_t p;
    hv_buf_t plan;
    (void)state;
    for (int i = 0; i < NHAS; i++)
        store_test_put_has_population(lite, "h", i);
    hv__search_plan_init(&p);
    hv_buf_init(&plan, 0);
    assert_int_equal(hv__search_plan_build(&p, "Patient", "_has:Observation:patient:code=C1&_count=5", 1, 10, 100),
                     HV_OK);
    /* Parallel plans made free, so that only has_page's own serial setting keeps them out;
     * the session's value comes back after it. */
    assert_int_equal(hv_db_exec(db, "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;"
                                    " SET min_parallel_table_scan_size = 0; SET min_parallel_index_scan_size = 0;"
                                    " SET max_parallel_workers_per_gather = 3"),
                     HV_OK);
    assert_int_equal(hv__search_has_explain(db, &p, &plan), HV_OK);
    assert_int_equal(store_test_count(db, "SELECT current_setting('max_parallel_workers_per_gather')::int"), 3);
    assert_int_equal(hv_db_exec(db, "RESET parallel_setup_cost; RESET parallel_tuple_cost; RESET"
                                    " min_parallel_table_scan_size; RESET min_parallel_index_scan_size;"
                                    " RESET max_parallel_workers_per_gather"),
                     HV_OK);
    if (strstr(plan.data, "Index Scan using resources_pkey on resources r") == NULL || strstr(plan.data, "Gather") != NULL ||
        strstr(plan.data, "Sort") != NULL || strstr(plan.data, "Seq Scan on resources") != NULL)
        fail_msg("_has alone: plan\n%s", plan.data);
    hv_buf_release(&plan);
    hv__search_plan_clear(&p);
    /* With a name to drive, its candidates are sorted first (the fence) and the _has checked
     * in that order until the page is full: the Sort lies under the semi-join, not over it. */
    hv__search_plan_init(&p);
    hv_buf_init(&plan, 0);
    assert_int_equal(hv__search_plan_build(&p, "Patient", "_has:Observation:patient:code=C1&name=hasfam&_count=5", 1,
                                           10, 100),
                     HV_OK);
    assert_int_equal(hv__search_has_explain(db, &p, &plan), HV_OK);
    {
        const char *semi = strstr(plan.data, "Semi Join"), *sort = strstr(plan.data, "Sort Key: r_1.rid");
        if (semi == NULL || sort == NULL || sort < semi)
            fail_msg("_has + name: plan\n%s", plan.data);
    }
    hv_buf_release(&plan);
    hv__search_plan_clear(&p);
    for (int i = 0; i < NHAS; i += 2)
        at += (size_t)snprintf(expect + at, sizeof(expect) - at, "h%d ", i);
    for (size_t k = 0; k < HV_ARRAY_LEN(queries); k++) {
        all_pages(lite, "Patient", queries[k], 7, want, sizeof(want));
        all_pages(db, "Patient", queries[k], 7, got, sizeof(got));
        if (strcmp(want, got) != 0)
            fail_msg("%s: PostgreSQL\n%s\nSQLite\n%s", queries[k], got, want);
        if (k == 0 && strcmp(got, expect) != 0)
            fail_msg("%s: %s, expected %s", queries[k], got, expect);
    }
    store_test_db_close(lite);
}

/* Devices d0..d19 written as raw rows on both backends: version 1 of each, then version 2
 * of the even ones (later row ids), then a deletion of d3 (version 2, deleted): the type's
 * current live versions in row-id order are the odd ones but d3, then the even ones. */
static void put_versioned_devices(hv_db_t *db)
{
    static const char ins[] = "INSERT INTO resources (type, id, version, last_ms, deleted, json) VALUES ('Device',"
                              " $1, $2, 1000, $3, '{\"resourceType\":\"Device\"}')";
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < 20; i++) {
            hv_db_stmt_t *st = NULL;
            char id[16];
            if ((pass == 1 && i % 2 != 0) || (pass == 2 && i != 3))
                continue;
            snprintf(id, sizeof(id), "d%d", i);
            assert_int_equal(hv_db_prepare(db, ins, &st), HV_OK);
            hv_db_bind_text(st, 1, id, strlen(id));
            hv_db_bind_int64(st, 2, pass == 0 ? 1 : 2);
            hv_db_bind_int64(st, 3, pass == 2 ? 1 : 0);
            assert_int_equal(hv_db_step(st), HV_OK);
            hv_db_done(st);
        }
    }
}

/* The plan of the type page of query (a type without criteria) into a fresh plan text:
 * checked to read resources_trid index-only from the cursor, with no sort, no hash join
 * (a hash anti-join reads every version of the type) and no scan of resources. */
static void check_type_page_plan(hv_db_t *db, const char *type, const char *query)
{
    hv__search_plan_t p;
    hv_buf_t plan;
    hv__search_plan_init(&p);
    hv_buf_init(&plan, 0);
    assert_int_equal(hv__search_plan_build(&p, type, query, 1, 10, 100), HV_OK);
    assert_int_equal(hv__search_type_explain(db, &p, &plan), HV_OK);
    if (strstr(plan.data, "Index Only Scan using resources_trid on resources") == NULL ||
        strstr(plan.data, "Sort") != NULL || strstr(plan.data, "Hash") != NULL ||
        strstr(plan.data, "Seq Scan") != NULL || strstr(plan.data, "Filter: ((type") != NULL)
        fail_msg("%s?%s: plan\n%s", type, query, plan.data);
    hv_buf_release(&plan);
    hv__search_plan_clear(&p);
}

/*
 * A type's pages without criteria (a full sync's `Type?_count=1000` and its next links) on
 * PostgreSQL: each reads its type's row ids from the cursor through resources_trid,
 * index-only, and stops at the page, for a small type (before: a hash anti-join of every
 * version of the type and a sort) and a large one (before: a walk of resources_pkey that
 * filtered out the other types' rows). Its pages, cursor after cursor, and its total are
 * those of SQLite's store for the same rows: only current, live versions, once each.
 */
static void search_pg_type_page_walks_its_type_from_the_cursor_as_sqlite_answers(void **state)
{
    static const char *const types[] = {"Patient", "Device", "Observation"};
    static const char want_devices[] = "d1 d5 d7 d9 d11 d13 d15 d17 d19 d0 d2 d4 d6 d8 d10 d12 d14 d16 d18 ";
    hv_db_t *db = pg_db, *lite = store_test_db();
    char want[8192], got[8192];
    (void)state;
    for (int i = 0; i < NHAS; i++)
        store_test_put_has_population(lite, "h", i);
    for (int i = 0; i < NPAT; i++) {
        char j[256];
        snprintf(j, sizeof(j), "{\"resourceType\":\"Patient\",\"id\":\"p%d\",\"name\":[{\"family\":\"%s\"}]}", i,
                 i % 4 == 0 ? "Smith" : "Jones");
        store_test_put(lite, 1, j);
    }
    put_versioned_devices(lite);
    put_versioned_devices(db);
    assert_int_equal(hv_db_exec(db, "VACUUM (ANALYZE) resources"), HV_OK);
    check_type_page_plan(db, "Patient", "_count=5");
    check_type_page_plan(db, "Patient", "_count=5&_cursor=3");
    check_type_page_plan(db, "Basic", "_count=1000");
    check_type_page_plan(db, "Basic", "_count=1000&_cursor=10000");
    for (size_t k = 0; k < HV_ARRAY_LEN(types); k++) {
        hv__search_plan_t p;
        int64_t total = -1, lite_total = -2;
        page_t pg;
        all_pages(lite, types[k], "_total=none", 7, want, sizeof(want));
        all_pages(db, types[k], "_total=none", 7, got, sizeof(got));
        /* SQLite's store holds no Observation o<i> or q<i> of the setup: those compared on
         * PostgreSQL alone (the _has population's o<i>-<c> lie between them). */
        if (strcmp(types[k], "Observation") != 0 && strcmp(want, got) != 0)
            fail_msg("%s: PostgreSQL\n%s\nSQLite\n%s", types[k], got, want);
        if (strcmp(types[k], "Device") == 0 && strcmp(got, want_devices) != 0)
            fail_msg("Device: %s, expected %s", got, want_devices);
        for (int b = 0; b < 2; b++) {
            memset(&pg, 0, sizeof(pg));
            hv__search_plan_init(&p);
            assert_int_equal(hv__search_plan_build(&p, types[k], "_total=accurate&_count=3", 1, 10, 100), HV_OK);
            assert_int_equal(hv__search_plan_run(b ? db : lite, &p, collect, &pg, b ? &total : &lite_total), HV_OK);
            hv__search_plan_clear(&p);
        }
        if (strcmp(types[k], "Observation") != 0)
            assert_int_equal(total, lite_total);
        if (strcmp(types[k], "Device") == 0)
            assert_int_equal(total, 19);
        if (strcmp(types[k], "Observation") == 0)
            assert_int_equal(total, NOBS + NNOS + NHAS / 2 + NHAS);
    }
    store_test_db_close(lite);
}

int run_search_pg_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(search_pg_tok_page_reads_sp_tok_sr_in_row_id_order),
        cmocka_unit_test(search_pg_str_page_reads_sp_str_rc),
        cmocka_unit_test(search_pg_analyze_reads_only_the_store_tables_it_changed),
        cmocka_unit_test(search_pg_no_system_token_reads_its_partial_index),
        cmocka_unit_test(search_pg_intersection_is_driven_by_a_criterion_of_few_rows),
        cmocka_unit_test(search_pg_has_alone_walks_row_ids_serially_as_sqlite_answers),
        cmocka_unit_test(search_pg_type_page_walks_its_type_from_the_cursor_as_sqlite_answers),
    };
    pg_url = getenv("HV_TEST_PG_URL");
    if (pg_url == NULL || pg_url[0] == '\0') {
        printf("[ NOT RUN  ] fhir search_pg: HV_TEST_PG_URL is not set, so the PostgreSQL plans are not checked\n");
        return 0;
    }
    return cmocka_run_group_tests_name("fhir search_pg", tests, pg_setup, pg_teardown);
}
