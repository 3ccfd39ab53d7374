/* store.c — unit tests of fhir/store.c: ids, instants, versioned rows, the identifier index, history. */
#include "tests.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

static void fhir_id_valid_follows_the_id_regex(void **state)
{
    static const struct { const char *s; int ok; } cases[] = {
        {"a", 1}, {"abc-123.X", 1}, {"0123456789012345678901234567890123456789012345678901234567890123", 1},
        {"01234567890123456789012345678901234567890123456789012345678901234", 0}, {"", 0}, {"a b", 0},
        {"a_b", 0}, {"a/b", 0}, {"1'; DROP TABLE resources;--", 0}, {"é", 0}};
    (void)state;
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++)
        assert_int_equal(hv__fhir_id_valid(cases[i].s), cases[i].ok);
    assert_int_equal(hv__fhir_id_valid(NULL), 0);
}

static void fhir_new_id_is_a_time_ordered_uuid(void **state)
{
    char a[HV__FHIR_ID_MAX], b[HV__FHIR_ID_MAX];
    (void)state;
    hv__fhir_new_id(a);
    for (int i = 0; i < 1000; i++)
        hv__fhir_new_id(b);
    assert_int_equal(strlen(a), 36);
    assert_true(hv__fhir_id_valid(a));
    assert_int_equal(a[14], '7'); /* RFC 9562 version 7 */
    assert_true(strchr("89ab", a[19]) != NULL);
    assert_true(strcmp(a, b) < 0 || strncmp(a, b, 13) == 0);
    assert_string_not_equal(a, b);
}

/* The id's text is the RFC 9562 layout of its 16 bytes: 8-4-4-4-12 lowercase hex digits,
 * the first 48 bits the clock's milliseconds at the call, version 7, variant 10. */
static void fhir_new_id_spells_the_clock_and_the_layout(void **state)
{
    (void)state;
    for (int k = 0; k < 2000; k++) {
        char id[HV__FHIR_ID_MAX];
        uint64_t before = hv_now_ms(), after, ms = 0;
        hv__fhir_new_id(id);
        after = hv_now_ms();
        assert_int_equal(strlen(id), 36);
        for (int i = 0; i < 36; i++) {
            if (i == 8 || i == 13 || i == 18 || i == 23)
                assert_int_equal(id[i], '-');
            else
                assert_non_null(strchr("0123456789abcdef", id[i]));
        }
        for (int i = 0; i < 13; i++)
            if (i != 8)
                ms = ms * 16 + (uint64_t)(id[i] <= '9' ? id[i] - '0' : id[i] - 'a' + 10);
        assert_true(ms >= before && ms <= after);
        assert_int_equal(id[14], '7');
        assert_non_null(strchr("89ab", id[19]));
    }
}

/* hv__fhir_set_meta writes the version's decimal text (every digit count, as "%lld" does),
 * and a member that holds another string takes the new value, once, where it was. */
static void fhir_set_meta_writes_versions_and_replaces_values(void **state)
{
    static const int64_t versions[] = {1, 9, 10, 99, 100, 12345, 1000000007, 9223372036854775807LL, 0, -3};
    (void)state;
    for (size_t i = 0; i < HV_ARRAY_LEN(versions); i++) {
        struct json_object *res = json_tokener_parse(
            "{\"resourceType\":\"Patient\",\"id\":\"old\",\"meta\":{\"versionId\":\"7\",\"lastUpdated\":"
            "\"2001-01-01T00:00:00.000Z\",\"tag\":[{\"code\":\"t\"}]},\"gender\":\"male\"}");
        struct json_object *meta = NULL;
        char want[32], ts[40];
        assert_non_null(res);
        snprintf(want, sizeof(want), "%lld", (long long)versions[i]);
        hv__fhir_instant(1700000000123ull, ts, sizeof(ts));
        assert_int_equal(hv__fhir_set_meta(res, "new-id", versions[i], 1700000000123ull), HV_OK);
        assert_string_equal(hv_json_get_str(res, "id"), "new-id");
        assert_true(json_object_object_get_ex(res, "meta", &meta));
        assert_string_equal(hv_json_get_str(meta, "versionId"), want);
        assert_string_equal(hv_json_get_str(meta, "lastUpdated"), ts);
        assert_int_equal(json_object_object_length(meta), 3);
        {
            json_object_object_foreach(meta, key, val)
            {
                (void)val;
                assert_string_equal(key, "versionId"); /* the first member still */
                break;
            }
        }
        assert_int_equal(json_object_object_length(res), 4);
        json_object_put(res);
    }
}

/* A text for hv__fhir_parse_time, whether it parses, and the instant it gives. */
typedef struct time_case {
    const char *s;
    int64_t ms;
    int ok;
} time_case_t;

static void check_times(const time_case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int64_t ms = -1;
        int rc = hv__fhir_parse_time(cases[i].s, &ms);
        assert_int_equal(rc == HV_OK, cases[i].ok);
        if (cases[i].ok)
            assert_int_equal(ms, cases[i].ms);
    }
}

static void fhir_parse_time_reads_dates_and_instants(void **state)
{
    static const time_case_t cases[] = {
        {"1970-01-01T00:00:00Z", 0, 1},
        {"1970-01-01T00:00:01.5Z", 1500, 1},
        {"2024-02-29T12:00:00+02:00", 1709200800000LL, 1},
        {"2024-02-29", 1709164800000LL, 1},
        {"2024", 1704067200000LL, 1},
        {"2024-13", 0, 0},
        {"yesterday", 0, 0},
        {"2024-01-01T10:00", 0, 0}};
    (void)state;
    check_times(cases, HV_ARRAY_LEN(cases));
}

/* hv__fhir_parse_time reads all-digit fields itself and leaves the other forms to sscanf,
 * which reads them as it always did: a sign in the year, a one-digit hour (and then the
 * nine characters it skips swallow the Z), a fraction and a negative offset with minutes. */
static void fhir_parse_time_reads_the_other_forms_as_before(void **state)
{
    static const time_case_t cases[] = {
        {"+024", -61409836800000LL, 1},
        {"2024-02-29T1:00:00Z", 1709168400000LL, 1},
        {"2024-02-29T12:00:00-05:30", 1709227800000LL, 1},
        {"2019-07-04T09:08:07.123456Z", 1562231287123LL, 1},
        {" 2024", 0, 0},
        {"2024-2-01", 0, 0},
        {"2024-02-29T12:00:00+0x:00", 0, 0},
        {"20240", 0, 0},
        /* A field shorter than its place ends the text inside it: refused, never read past. */
        {"2024-1", 0, 0},
        {"2024-01-1", 0, 0},
        {"2024-01-01T1:2:3", 0, 0},
        {"2024-01-01T10:00:00+1:0", 0, 0},
        {"2024-01-01T10:00:00+2:00", 0, 0}};
    (void)state;
    check_times(cases, HV_ARRAY_LEN(cases));
}

static int count_rows(void *ud, const hv__store_row_t *row)
{
    (void)row;
    (*(int *)ud)++;
    return HV_OK;
}

static void store_keeps_every_version_and_finds_the_current_one(void **state)
{
    hv_db_t *db = store_test_db();
    hv__store_row_t row;
    struct json_object *idents = json_tokener_parse(
        "{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"s\",\"value\":\"v1\"},{\"value\":\"v2\"}]}");
    char ids[HV__COND_MAX][HV__FHIR_ID_MAX];
    size_t n = 0;
    hv__store_hist_q_t q = {"Patient", "p1", -1, -1, 0, 10};
    int rows = 0;
    (void)state;
    assert_int_equal(hv__store_put(db, "Patient", "p1", 1, 1000, "{\"a\":1}", 7, idents), HV_OK);
    assert_int_equal(hv__store_put(db, "Patient", "p1", 2, 2000, "{\"a\":2}", 7, idents), HV_OK);
    /* the same version again is a conflict, not an overwrite */
    assert_int_equal(hv__store_put(db, "Patient", "p1", 2, 3000, "{\"a\":3}", 7, NULL), HV_ECONFLICT);
    assert_int_equal(hv__store_get(db, "Patient", "p1", 0, &row), HV_OK);
    assert_int_equal(row.version, 2);
    assert_string_equal(row.text, "{\"a\":2}");
    hv__store_row_clear(&row);
    assert_int_equal(hv__store_get(db, "Patient", "p1", 1, &row), HV_OK);
    assert_string_equal(row.text, "{\"a\":1}");
    hv__store_row_clear(&row);
    assert_int_equal(hv__store_get(db, "Patient", "p2", 0, &row), HV_ENOTFOUND);
    /* the identifier index holds the current version once */
    assert_int_equal(hv__store_find_identifier(db, "Patient", "s", "v1", ids, HV__COND_MAX, &n), HV_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], "p1");
    assert_int_equal(hv__store_find_identifier(db, "Patient", "", "v2", ids, HV__COND_MAX, &n), HV_OK);
    assert_int_equal(n, 1);
    assert_int_equal(hv__store_find_identifier(db, "Patient", "", "v1", ids, HV__COND_MAX, &n), HV_OK);
    assert_int_equal(n, 0);
    assert_int_equal(hv__store_find_identifier(db, "Observation", NULL, "v1", ids, HV__COND_MAX, &n), HV_OK);
    assert_int_equal(n, 0);
    /* a deletion is a version without text and leaves the index */
    assert_int_equal(hv__store_put(db, "Patient", "p1", 3, 4000, NULL, 0, NULL), HV_OK);
    assert_int_equal(hv__store_get(db, "Patient", "p1", 0, &row), HV_OK);
    assert_true(row.deleted);
    assert_null(row.text);
    hv__store_row_clear(&row);
    assert_int_equal(hv__store_find_identifier(db, "Patient", NULL, "v1", ids, HV__COND_MAX, &n), HV_OK);
    assert_int_equal(n, 0);
    assert_int_equal(hv__store_history(db, &q, count_rows, &rows), HV_OK);
    assert_int_equal(rows, 3);
    rows = 0;
    q.at_ms = 1500; /* the version current at 1.5 s: version 1 */
    assert_int_equal(hv__store_history(db, &q, count_rows, &rows), HV_OK);
    assert_int_equal(rows, 1);
    rows = 0;
    assert_int_equal(hv__store_each_current(db, "Patient", count_rows, &rows), HV_OK);
    assert_int_equal(rows, 0); /* deleted */
    json_object_put(idents);
    store_test_db_close(db);
}

/* hv__fhir_instant keeps the date and time up to the second per thread: it must write what
 * hv_time_rfc3339 writes for every instant, in the same second or not, and for a year
 * past 9999 (another length). */
static void fhir_instant_equals_rfc3339(void **state)
{
    static const uint64_t ms[] = {0, 999, 1000, 1764172900342ull, 1764172900343ull, 1764172900999ull,
                                  1764172901000ull, 1764172900001ull, 253402300799999ull, 253402300800000ull,
                                  1764172901000ull};
    (void)state;
    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
        char a[40], b[40];
        hv__fhir_instant(ms[i], a, sizeof(a));
        hv_time_rfc3339(ms[i], b, sizeof(b));
        assert_string_equal(a, b);
    }
}

/* hv__import_restore_indexes builds the indexes an import deferred (their definitions in
 * import_deferred) and empties import_deferred; it builds them with a page cache of its own
 * (the sorter's run size, fhir/import.c) and gives the connection its cache back. */
static void import_restore_indexes_builds_them_and_keeps_the_page_cache(void **state)
{
    static const char *const defer_where =
        " FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name LIKE 'sp\\_%' ESCAPE '\\'";
    char q[256];
    int64_t nidx, rows;
    hv_db_t *db = store_test_db();
    (void)state;
    for (int i = 0; i < 40; i++)
        store_test_put_has_population(db, "p", i);
    snprintf(q, sizeof(q), "SELECT count(*)%s", defer_where);
    nidx = store_test_count(db, q);
    assert_true(nidx > 10);
    rows = store_test_count(db, "SELECT count(*) FROM sp_tok");
    assert_true(rows > 0);
    /* The state an import leaves while it defers them. */
    snprintf(q, sizeof(q), "INSERT INTO import_deferred (name, sql) SELECT name, sql%s", defer_where);
    assert_int_equal(hv_db_exec(db, q), HV_OK);
    {
        hv_db_stmt_t *st = NULL;
        char drop[64][160];
        size_t n = 0;
        assert_int_equal(hv_db_prepare(db, "SELECT name FROM import_deferred", &st), HV_OK);
        while (hv_db_step(st) == HV_DB_ROW && n < 64) {
            size_t len = 0;
            const char *v = hv_db_column_text(st, 0, &len);
            snprintf(drop[n++], sizeof(drop[0]), "DROP INDEX \"%.*s\"", (int)len, v);
        }
        hv_db_done(st);
        assert_int_equal((int64_t)n, nidx);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(hv_db_exec(db, drop[i]), HV_OK);
    }
    snprintf(q, sizeof(q), "SELECT count(*)%s", defer_where);
    assert_int_equal(store_test_count(db, q), 0);
    assert_int_equal(hv_db_exec(db, "PRAGMA cache_size=-65536"), HV_OK);
    assert_int_equal(hv__import_restore_indexes(db), HV_OK);
    assert_int_equal(store_test_count(db, q), nidx);
    assert_int_equal(store_test_count(db, "SELECT count(*) FROM import_deferred"), 0);
    assert_int_equal(store_test_count(db, "PRAGMA cache_size"), -65536);
    assert_int_equal(store_test_count(db, "SELECT count(*) FROM sp_tok INDEXED BY sp_tok_idc"), rows);
    store_test_db_close(db);
}

int run_store_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fhir_id_valid_follows_the_id_regex),
        cmocka_unit_test(fhir_new_id_is_a_time_ordered_uuid),
        cmocka_unit_test(fhir_new_id_spells_the_clock_and_the_layout),
        cmocka_unit_test(fhir_set_meta_writes_versions_and_replaces_values),
        cmocka_unit_test(fhir_parse_time_reads_dates_and_instants),
        cmocka_unit_test(fhir_parse_time_reads_the_other_forms_as_before),
        cmocka_unit_test(fhir_instant_equals_rfc3339),
        cmocka_unit_test(store_keeps_every_version_and_finds_the_current_one),
        cmocka_unit_test(import_restore_indexes_builds_them_and_keeps_the_page_cache),
    };
    return cmocka_run_group_tests_name("fhir store", tests, NULL, NULL);
}
