/* main.c — runs every FHIR store unit-test group, with the shared helpers; the exit status is the failure count. */
#include "tests.h"

#include <dirent.h>
#include <json-c/json.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fhir/search_int.h"

const char *store_test_reference_dir(void)
{
    static char dir[4096];
    const char *src = getenv("HV_SRCDIR");
    struct stat sb;
    snprintf(dir, sizeof(dir), "%s/../shared/reference", src != NULL ? src : ".");
    if (getenv("HV_REFERENCE_DIR") != NULL)
        snprintf(dir, sizeof(dir), "%s", getenv("HV_REFERENCE_DIR"));
    if (stat(dir, &sb) != 0)
        fail_msg("the reference data is missing: %s", dir);
    return dir;
}

char *store_test_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    hv_buf_t b;
    char chunk[65536];
    size_t n;
    if (f == NULL)
        fail_msg("cannot open %s", path);
    hv_buf_init(&b, 0);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        assert_int_equal(hv_buf_append(&b, chunk, n), HV_OK);
    fclose(f);
    if (len != NULL)
        *len = b.len;
    return hv_buf_take(&b);
}

size_t store_test_each_synthea_resource(void (*fn)(struct json_object *res, size_t seq, void *ud), void *ud)
{
    char dir[4096];
    DIR *d;
    struct dirent *de;
    size_t nres = 0;
    snprintf(dir, sizeof(dir), "%s/fhir/synthea", store_test_reference_dir());
    d = opendir(dir);
    if (d == NULL)
        fail_msg("the Synthea bundles are missing: %s", dir);
    while ((de = readdir(d)) != NULL) {
        char path[8192];
        char *text;
        struct json_object *bundle, *entries = NULL;
        if (strstr(de->d_name, ".json") == NULL)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        text = store_test_slurp(path, NULL);
        bundle = json_tokener_parse(text);
        assert_non_null(bundle);
        assert_true(json_object_object_get_ex(bundle, "entry", &entries));
        for (size_t i = 0; i < json_object_array_length(entries); i++) {
            struct json_object *res = NULL;
            if (!json_object_object_get_ex(json_object_array_get_idx(entries, i), "resource", &res))
                continue;
            fn(res, nres++, ud);
        }
        json_object_put(bundle);
        hv_free(text);
    }
    closedir(d);
    if (nres < 3000)
        fail_msg("only %zu Synthea resources read from %s", nres, dir);
    return nres;
}

static char dbdirs[256][64]; /* one per database a test opens (several tests open two) */
static int ndb;

hv_db_t *store_test_db(void)
{
    return store_test_db_before(NULL);
}

hv_db_t *store_test_db_before(const char *stop)
{
    const char *const *all;
    const char *part[256];
    size_t n = 0;
    hv_db_t *db = NULL;
    hv_error_t err;
    char *d;
    hv_error_clear(&err);
    assert_true(ndb < (int)HV_ARRAY_LEN(dbdirs));
    snprintf(dbdirs[ndb], sizeof(dbdirs[ndb]), "/tmp/hvfstoreXXXXXX");
    d = mkdtemp(dbdirs[ndb]);
    assert_non_null(d);
    ndb++;
    assert_int_equal(hv_db_open(NULL, d, "fhir", &db, &err), HV_OK);
    all = hv__store_migrations(db);
    if (stop != NULL) {
        /* the list up to stop, which must be in it */
        while (all[n] != NULL && all[n] != stop && n + 1 < HV_ARRAY_LEN(part)) {
            part[n] = all[n];
            n++;
        }
        assert_true(all[n] == stop);
        part[n] = NULL;
        all = part;
    }
    assert_int_equal(hv_db_migrate(db, "fhir", all, &err), HV_OK);
    assert_int_equal(hv_db_set_synchronous(db, "OFF"), HV_OK);
    return db;
}

void store_test_db_close(hv_db_t *db)
{
    hv_db_close(db);
}

int64_t store_test_count(hv_db_t *db, const char *sql)
{
    hv_db_stmt_t *st = NULL;
    int64_t n = -1;
    assert_int_equal(hv_db_prepare(db, sql, &st), HV_OK);
    if (hv_db_step(st) == HV_DB_ROW)
        n = hv_db_column_int64(st, 0);
    hv_db_done(st);
    return n;
}

void store_test_put(hv_db_t *db, int64_t version, const char *json)
{
    struct json_object *o = json_tokener_parse(json);
    assert_non_null(o);
    assert_int_equal(hv__store_put(db, hv_json_get_str(o, "resourceType"), hv_json_get_str(o, "id"), version,
                                   1000 + (uint64_t)version, json, strlen(json), o),
                     HV_OK);
    json_object_put(o);
}

/* Steps st to its end, appending column col of each row and a newline to plan; finishes st. */
static void plan_column_lines(hv_db_stmt_t *st, int col, hv_buf_t *plan)
{
    while (hv_db_step(st) == HV_DB_ROW) {
        size_t len = 0;
        const char *d = hv_db_column_text(st, col, &len);
        hv_buf_append(plan, d ? d : "", d ? len : 0);
        hv_buf_puts(plan, "\n");
    }
    hv_db_done(st);
    hv_buf_puts(plan, "");
}

void store_test_put_has_population(hv_db_t *db, const char *prefix, int i)
{
    char j[512];
    snprintf(j, sizeof(j), "{\"resourceType\":\"Patient\",\"id\":\"%s%d\",\"name\":[{\"family\":\"%s%d\"}]}", prefix,
             i, i % 3 == 0 ? "Other" : "Hasfam", i);
    store_test_put(db, 1, j);
    /* patients with i % 2 == 0 have an observation of code C1; all have one of C2 */
    for (int c = 1; c <= 2; c++) {
        if (c == 1 && i % 2 != 0)
            continue;
        snprintf(j, sizeof(j),
                 "{\"resourceType\":\"Observation\",\"id\":\"o%d-%d\",\"status\":\"final\",\"code\":{\"coding\":"
                 "[{\"system\":\"http://loinc.org\",\"code\":\"C%d\"}]},\"subject\":{\"reference\":\"Patient/%s%d\"}}",
                 i, c, c, prefix, i);
        store_test_put(db, 1, j);
    }
}

void store_test_plan_lines(hv_db_stmt_t *st, hv_buf_t *plan)
{
    plan_column_lines(st, 3, plan);
}

void store_test_page_plan(hv_db_t *db, const char *type, const char *query, int (*only)(const hv__search_plan_t *),
                          hv_buf_t *plan)
{
    hv__search_plan_t p;
    hv_buf_t q;
    hv_db_stmt_t *st = NULL;
    int pg = hv_db_kind(db) == HV_DB_PG;
    hv__search_plan_init(&p);
    assert_int_equal(hv__search_plan_build(&p, type, query, 1, 10, 100), HV_OK);
    assert_true(only(&p));
    /* as hv__search_plan_run does before the page: code=X pinned to its one system */
    assert_int_equal(hv__search_tok_pin(db, &p), HV_OK);
    hv_buf_init(&q, 128 * 1024);
    hv_buf_init(plan, 65536);
    hv_buf_puts(&q, pg ? "EXPLAIN " : "EXPLAIN QUERY PLAN ");
    assert_int_equal(hv__search_page_sql(db, &p, &q), HV_OK);
    assert_int_equal(hv_db_prepare(db, q.data, &st), HV_OK);
    hv__search_bind_plan(st, &p);
    hv_db_bind_int64(st, p.nbinds + 1, 0);
    hv_db_bind_int64(st, p.nbinds + 2, 11);
    /* PostgreSQL's EXPLAIN: one text column, one line of the plan per row */
    plan_column_lines(st, pg ? 0 : 3, plan);
    hv_buf_release(&q);
    hv__search_plan_clear(&p);
}

int main(void)
{
    int failed = 0;
    failed += run_store_tests();
    failed += run_store_ops_tests();
    failed += run_patch_tests();
    failed += run_rest_tests();
    failed += run_search_tests();
    failed += run_search_fold_tests();
    failed += run_search_plan_tests();
    failed += run_search_special_tests();
    failed += run_search_combo_tests();
    failed += run_search_has_tests();
    failed += run_search_pg_tests();
    failed += run_bundle_tests();
    failed += run_compartment_tests();
    failed += run_authz_tests();
    for (int i = 0; i < ndb; i++) {
        static const char *const files[] = {"fhir.db", "fhir.db-wal", "fhir.db-shm"};
        char f[256];
        for (size_t k = 0; k < HV_ARRAY_LEN(files); k++) {
            snprintf(f, sizeof(f), "%.64s/%s", dbdirs[i], files[k]);
            unlink(f);
        }
        rmdir(dbdirs[i]);
    }
    return failed;
}
