/* search_combo.c — unit tests of fhir/search_combo.c: the combined token + date / quantity
 * rows follow the current version (two codings, two dates, update, delete), the planner
 * folds a code criterion and a date or value-quantity criterion into one combined
 * criterion only when their shape allows it, and the combined plan answers the same
 * resources, pages and totals as the generic plan; the combined and _has rows the writer
 * computes from the rows in hand are the fill statements' rows, on both backends. */
#include "tests.h"

#include <dirent.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fhir/search_int.h"

static void search_combo_rows_follow_the_current_version(void **state)
{
    hv_db_t *db = store_test_db();
    (void)state;
    /* two codings × one date; two codings × one quantity */
    store_test_put(db, 1,
        "{\"resourceType\":\"Observation\",\"id\":\"o1\",\"status\":\"final\",\"code\":{\"coding\":["
        "{\"system\":\"http://loinc.org\",\"code\":\"a\"},{\"system\":\"urn:local\",\"code\":\"l1\"}]},"
        "\"effectiveDateTime\":\"2020-03-05\",\"valueQuantity\":{\"value\":5,\"unit\":\"mg\"}}");
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tokdate WHERE id = 'o1' AND tcode = 'code' AND dcode ="
                                    " 'date' AND rid = (SELECT MAX(rid) FROM resources WHERE id = 'o1')"),
                     2);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tokqty WHERE id = 'o1' AND qcode = 'value-quantity'"
                                    " AND value = 5 AND unit = 'mg'"),
                     2);
    /* an update replaces them, with the new version's row id */
    store_test_put(db, 2,
        "{\"resourceType\":\"Observation\",\"id\":\"o1\",\"status\":\"final\",\"code\":{\"coding\":["
        "{\"system\":\"http://loinc.org\",\"code\":\"b\"}]},\"effectiveDateTime\":\"2021-01-01\"}");
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tokdate WHERE id = 'o1'"), 1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tokdate WHERE id = 'o1' AND tval = 'b' AND rid ="
                                    " (SELECT rid FROM resources WHERE id = 'o1' AND version = 2)"),
                     1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tokqty WHERE id = 'o1'"), 0);
    /* a deletion drops them */
    assert_int_equal(hv__store_put(db, "Observation", "o1", 3, 2000, NULL, 0, NULL), HV_OK);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tokdate WHERE id = 'o1'"), 0);
    /* a Timing is not indexed as a date (fhir/search_index.c): no combined rows either */
    store_test_put(db, 1,
        "{\"resourceType\":\"Observation\",\"id\":\"o2\",\"status\":\"final\",\"code\":{\"coding\":["
        "{\"code\":\"a\"},{\"code\":\"c\"}]},\"effectiveTiming\":{\"event\":[\"2020-01-01\",\"2022-01-01\"]}}");
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_date WHERE id = 'o2' AND code = 'date'"), 0);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tokdate WHERE id = 'o2'"), 0);
    /* other types write none */
    store_test_put(db, 1, "{\"resourceType\":\"Condition\",\"id\":\"c1\",\"code\":{\"coding\":[{\"code\":\"a\"}]},"
               "\"recordedDate\":\"2020-01-01\",\"subject\":{\"reference\":\"Patient/p\"}}");
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tokdate WHERE type <> 'Observation'"), 0);
    store_test_db_close(db);
}

/* The plan of query on Observation: 1 folded into a combined criterion, 0 not, -1 refused. */
static int folded(const char *query, int *only)
{
    hv__search_plan_t p;
    int rc, f;
    hv__search_plan_init(&p);
    rc = hv__search_plan_build(&p, "Observation", query, 1, 10, 100);
    f = rc != HV_OK ? -1
        : p.where.data != NULL && (strstr(p.where.data, "sp_tokdate") != NULL || strstr(p.where.data, "sp_tokqty") != NULL)
            ? 1
            : 0;
    if (getenv("HV_DEBUG_COMBO") && p.where.data)
        fprintf(stderr, "%s -> %s\n", query, p.where.data);
    if (only != NULL)
        *only = rc == HV_OK && hv__search_combo_only(&p);
    hv__search_plan_clear(&p);
    return f;
}

static void search_combo_planner_folds_only_plain_pairs(void **state)
{
    static const struct {
        const char *query;
        int folded, only;
    } cases[] = {
        {"code=8867-4&date=ge2020-01-01&date=lt2020-03-01", 1, 1},
        {"code=http://loinc.org|8867-4&date=2020", 1, 1},
        {"code=|x,http://loinc.org|&date=le2020", 1, 1},
        {"code=a&date=eq2020-01,eq2020-03", 1, 1},
        {"date=ge2020&code=a", 1, 1},
        {"code=2339-0&value-quantity=gt240", 1, 1},
        {"code=a&value-quantity=5.4|http://unitsofmeasure.org|mmol/L", 1, 1},
        {"code=a&value-quantity=lt5,gt10", 1, 1},
        {"subject=Patient/p1&code=a&date=ge2015", 1, 0},
        {"code=a&date=ge2020&_sort=date", 1, 0},
        {"code=a&date=ge2020&status=final", 1, 0},
        {"code:not=a&date=ge2020", 0, 0},
        {"code:text=glucose&date=ge2020", 0, 0},
        {"code=a&date:missing=false", 0, 0},
        {"code:missing=false&date=ge2020", 0, 0},
        {"code=a", 0, 0},
        {"date=ge2020", 0, 0},
        {"code=a&combo-code=b", 0, 0},
        {"code=a&date=ge2020-13", -1, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int only = 0, f = folded(cases[i].query, &only);
        if (f != cases[i].folded || only != cases[i].only)
            fail_msg("Observation?%s: folded %d only %d (want %d %d)", cases[i].query, f, only, cases[i].folded,
                     cases[i].only);
    }
    /* the setting turns the rule off */
    hv__search_combo_enable(0);
    assert_int_equal(folded("code=a&date=ge2020", NULL), 0);
    hv__search_combo_enable(1);
    assert_int_equal(folded("code=a&date=ge2020", NULL), 1);
}

/* The criteria after the folded pair are renumbered, every marker of theirs with them: a
 * _has's head, its referencing rows' and its sp_ref's markers ("@E", "@H", "@J") as the
 * correlation and index markers, so the run still finds the _has (is_has) and correlates it. */
static void search_combo_renumbers_every_marker_of_the_criteria_after_the_pair(void **state)
{
    hv__search_plan_t p;
    (void)state;
    hv__search_plan_init(&p);
    assert_int_equal(hv__search_plan_build(&p, "Observation",
                                           "code=a&date=ge2020&_has:DiagnosticReport:result:status=final", 1, 10, 100),
                     HV_OK);
    assert_int_equal(p.ncrit, 2);
    assert_non_null(strstr(p.where.data, "sp_tokdate"));
    if (strstr(p.where.data, "@E1@") == NULL)
        fail_msg("the _has is not criterion 1: %s", p.where.data);
    for (const char *m = strchr(p.where.data, '@'); m != NULL; m = strchr(m + 1, '@'))
        if (strchr("CRIHEJ", m[1]) != NULL && m[1] != '\0' && m[2] == '2')
            fail_msg("a marker of criterion 2 is left: %s", p.where.data);
    hv__search_plan_clear(&p);
}

typedef struct ids {
    char s[4096];
    char id[8][HV__FHIR_ID_MAX];
    char cursor[8][64];
    int n;
} ids_t;

static int on_row(void *ud, const hv__store_row_t *row)
{
    ids_t *x = ud;
    if (x->n < 8) {
        snprintf(x->id[x->n], sizeof(x->id[0]), "%s", row->id);
        snprintf(x->cursor[x->n], sizeof(x->cursor[0]), "%s", row->cursor);
    }
    x->n++;
    return HV_OK;
}

/* Every page of query (page size 3, following the cursor) with the rule (turned on and
 * off by enable) on or off: the ids in order and the first page's total. */
static void run_all_of(hv_db_t *db, const char *type, const char *query, void (*enable)(int), int on, ids_t *out,
                       int64_t *total);

static void run_all(hv_db_t *db, const char *query, void (*enable)(int), int on, ids_t *out, int64_t *total)
{
    run_all_of(db, "Observation", query, enable, on, out, total);
}

/* Every page of query on type (3 a page, following the cursor), the ids in out, the first page's total. */
static void run_all_of(hv_db_t *db, const char *type, const char *query, void (*enable)(int), int on, ids_t *out,
                       int64_t *total)
{
    char q[512];
    memset(out, 0, sizeof(*out));
    snprintf(q, sizeof(q), "%s", query);
    enable(on);
    for (int page = 0; page < 40; page++) {
        hv__search_plan_t p;
        ids_t pg;
        int64_t t = -1;
        memset(&pg, 0, sizeof(pg));
        hv__search_plan_init(&p);
        assert_int_equal(hv__search_plan_build(&p, type, q, 1, 3, 100), HV_OK);
        assert_int_equal(hv__search_plan_run(db, &p, on_row, &pg, &t), HV_OK);
        hv__search_plan_clear(&p);
        if (page == 0)
            *total = t;
        /* count + 1 rows: the last one only says that a next page exists */
        for (int i = 0; i < pg.n && i < 3; i++)
            snprintf(out->s + strlen(out->s), sizeof(out->s) - strlen(out->s), "%s ", pg.id[i]);
        if (pg.n <= 3)
            break;
        snprintf(q, sizeof(q), "%s&_cursor=%s", query, pg.cursor[2]);
    }
    enable(1);
}

static void search_combo_answers_as_the_generic_plan(void **state)
{
    hv_db_t *db = store_test_db();
    static const char *const queries[] = {
        "code=a&date=ge2020-01-01&date=lt2021-01-01",
        "code=http://loinc.org|a&date=ge2020",
        "code=a,b&date=le2021-06",
        "code=|b&date=ge2019",
        "code=a&date=sa2020-06&date=eb2022",
        "code=a&date=ne2020",
        "code=a&value-quantity=gt240",
        "code=b&value-quantity=le150",
        "code=a&value-quantity=ge240||mg/dL",
        "code=a&value-quantity=ap250",
        "date=ge2020&code=a&value-quantity=lt300",
        "code=a&date=ge2020-01-01&_total=none",
        "code=zzz&date=ge2020",
    };
    (void)state;
    for (int i = 0; i < 40; i++) {
        char j[768], eff[128], val[160];
        int y = 2018 + i % 5, m = 1 + (i * 7) % 12, v = 100 + (i * 37) % 300;
        if (i % 9 == 4)
            snprintf(eff, sizeof(eff), "\"effectivePeriod\":{\"start\":\"2019-02-01\",\"end\":\"2021-05-01\"}");
        else if (i % 9 == 7)
            snprintf(eff, sizeof(eff), "\"effectiveTiming\":{\"event\":[\"2018-05-01\",\"2020-09-09\"]}");
        else
            snprintf(eff, sizeof(eff), "\"effectiveDateTime\":\"%04d-%02d-15\"", y, m);
        if (i % 6 == 5)
            val[0] = '\0'; /* no value */
        else
            snprintf(val, sizeof(val),
                     ",\"valueQuantity\":{\"system\":\"http://unitsofmeasure.org\",\"code\":\"mg/dL\",\"value\":%d}", v);
        snprintf(j, sizeof(j),
                 "{\"resourceType\":\"Observation\",\"id\":\"g%02d\",\"status\":\"final\",\"code\":{\"coding\":["
                 "{%s\"code\":\"%s\"}%s]},%s%s}",
                 i, i % 4 == 3 ? "" : "\"system\":\"http://loinc.org\",", i % 3 == 0 ? "a" : "b",
                 i % 5 == 0 ? ",{\"system\":\"urn:local\",\"code\":\"a\"}" : "", eff, val);
        store_test_put(db, 1, j);
    }
    for (size_t k = 0; k < sizeof(queries) / sizeof(queries[0]); k++) {
        ids_t on, off;
        int64_t ton = -2, toff = -2;
        run_all(db, queries[k], hv__search_combo_enable, 1, &on, &ton);
        run_all(db, queries[k], hv__search_combo_enable, 0, &off, &toff);
        /* every query but the last matches something (the comparison is not of two empty sets) */
        if ((k + 1 < sizeof(queries) / sizeof(queries[0])) != (on.s[0] != '\0'))
            fail_msg("%s: [%s]", queries[k], on.s);
        if (strcmp(on.s, off.s) != 0 || ton != toff)
            fail_msg("%s: combined [%s] total %lld, generic [%s] total %lld", queries[k], on.s, (long long)ton, off.s,
                     (long long)toff);
    }
    store_test_db_close(db);
}

/* The EXPLAIN QUERY PLAN lines of the count of query, and its total. */
static void count_plan(hv_db_t *db, const char *query, hv_buf_t *eqp, int64_t *total)
{
    hv__search_plan_t p;
    hv__search_plan_init(&p);
    assert_int_equal(hv__search_plan_build(&p, "Observation", query, 1, 10, 100), HV_OK);
    assert_int_equal(hv__search_count_explain(db, &p, eqp), HV_OK);
    assert_int_equal(hv__search_plan_run(db, &p, on_row, &(ids_t){0}, total), HV_OK);
    hv__search_plan_clear(&p);
}

/* The count of query is want, read from sp_tok_sr's (type, code, value) ranges alone. */
static void count_from_sp_tok_sr(hv_db_t *db, const char *query, hv_buf_t *eqp, int64_t want)
{
    int64_t total = -1;
    eqp->len = 0;
    count_plan(db, query, eqp, &total);
    assert_int_equal(total, want);
    if (strstr(eqp->data, "COVERING INDEX sp_tok_sr (type=? AND code=? AND value=?)") == NULL ||
        strstr(eqp->data, "resources") != NULL || strstr(eqp->data, "SCAN sp_tok") != NULL)
        fail_msg("%s: %s", query, eqp->data);
}

static void search_count_of_one_code_is_a_covering_index_range(void **state)
{
    hv_db_t *db = store_test_db();
    hv_buf_t eqp;
    int64_t total = -1;
    (void)state;
    /* k1 holds the code twice (two systems): counted once */
    store_test_put(db, 1, "{\"resourceType\":\"Observation\",\"id\":\"k1\",\"status\":\"final\",\"code\":{\"coding\":["
               "{\"system\":\"http://loinc.org\",\"code\":\"x\"},{\"system\":\"urn:l\",\"code\":\"x\"}]},"
               "\"effectiveDateTime\":\"2020-02-02\"}");
    store_test_put(db, 1, "{\"resourceType\":\"Observation\",\"id\":\"k2\",\"status\":\"final\",\"code\":{\"coding\":["
               "{\"system\":\"http://loinc.org\",\"code\":\"x\"}]},\"effectiveDateTime\":\"2021-02-02\"}");
    store_test_put(db, 1, "{\"resourceType\":\"Observation\",\"id\":\"k3\",\"status\":\"final\",\"code\":{\"coding\":["
               "{\"code\":\"y\"}]}}");
    /* k4 holds the same coding twice and y without a system twice: one row each, counted once */
    store_test_put(db, 1, "{\"resourceType\":\"Observation\",\"id\":\"k4\",\"status\":\"final\",\"code\":{\"coding\":["
               "{\"system\":\"http://loinc.org\",\"code\":\"z\"},{\"system\":\"http://loinc.org\",\"code\":\"z\"},"
               "{\"code\":\"y\"},{\"code\":\"y\"}]}}");
    hv_buf_init(&eqp, 64 * 1024);
    /* x is held under two systems: the distinct row ids of its (type, code, value) range */
    count_plan(db, "code=x&_summary=count", &eqp, &total);
    assert_int_equal(total, 2);
    if (strstr(eqp.data, "COVERING INDEX sp_tok_sr (type=? AND code=? AND value=?)") == NULL ||
        strstr(eqp.data, "resources") != NULL || strstr(eqp.data, "SCAN sp_tok") != NULL)
        fail_msg("count of one code in two systems: %s", eqp.data);
    /* a system named, or the one system of a value pinned (z: loinc; y: none): COUNT(*) of
     * one range, no sorter, no table row — the value's range when all its rows have the
     * system named (three columns compared per entry), else the (value, system) range */
    {
        static const char three[] = "COVERING INDEX sp_tok_sr (type=? AND code=? AND value=?)";
        static const char four[] = "COVERING INDEX sp_tok_sr (type=? AND code=? AND value=? AND system=?)";
        static const struct {
            const char *query;
            int64_t total;
            const char *range;
        } cases[] = {
            {"code=http://loinc.org|x&_summary=count", 2, four},
            {"code=urn:l|x&_summary=count", 1, four},
            {"code=z&_summary=count", 1, three},
            {"code=http://loinc.org|z&_summary=count", 1, three},
            {"code=urn:l|z&_summary=count", 0, four},
            {"code=|z&_summary=count", 0, four},
            {"code=y&_summary=count", 2, three},
            {"code=|y&_summary=count", 2, three},
            {"code=urn:l|y&_summary=count", 0, four},
        };
        for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++) {
            eqp.len = 0;
            count_plan(db, cases[i].query, &eqp, &total);
            if (total != cases[i].total)
                fail_msg("%s: total %lld, want %lld", cases[i].query, (long long)total, (long long)cases[i].total);
            if (strstr(eqp.data, cases[i].range) == NULL ||
                strstr(eqp.data, "TEMP B-TREE") != NULL || strstr(eqp.data, "resources") != NULL ||
                strstr(eqp.data, "SCAN sp_tok") != NULL)
                fail_msg("%s: %s", cases[i].query, eqp.data);
        }
    }
    /* two values (OR): the distinct row ids of their ranges of sp_tok_sr */
    count_from_sp_tok_sr(db, "code=x,y&_summary=count", &eqp, 4);
    /* two criteria: the one of fewer index rows (code x: 2, status final: 4) drives, though
     * named second, and the other is checked per id through sp_tok_idc, not read whole */
    eqp.len = 0;
    count_plan(db, "status=final&code=x&_summary=count", &eqp, &total);
    assert_int_equal(total, 2);
    if (strstr(eqp.data, "COVERING INDEX sp_tok_sr (type=? AND code=? AND value=?)") == NULL ||
        strstr(eqp.data, "CORRELATED LIST SUBQUERY") == NULL ||
        strstr(eqp.data, "INDEX sp_tok_idc (type=? AND id=? AND code=?)") == NULL || strstr(eqp.data, "SCAN sp_tok") != NULL)
        fail_msg("count of two criteria: %s", eqp.data);
    /* the page turned off: the distinct row ids of sp_tok_sr (sp_tok_vc is gone) */
    hv__search_tok_enable(0);
    count_from_sp_tok_sr(db, "code=x&_summary=count", &eqp, 2);
    hv__search_tok_enable(1);
    /* code + date: the combined index */
    eqp.len = 0;
    count_plan(db, "code=x&date=lt2021&_summary=count", &eqp, &total);
    assert_int_equal(total, 1);
    if (strstr(eqp.data, "COVERING INDEX sp_tokdate_v") == NULL || strstr(eqp.data, "resources") != NULL)
        fail_msg("count of code + date: %s", eqp.data);
    hv_buf_release(&eqp);
    store_test_db_close(db);
}


/* ---- the page of a single token criterion (sp_tok.rid, sp_tok_sr) ---- */

static void search_tok_rows_carry_the_current_row_id(void **state)
{
    hv_db_t *db = store_test_db();
    (void)state;
    store_test_put(db, 1, "{\"resourceType\":\"Observation\",\"id\":\"t1\",\"status\":\"final\",\"code\":{\"coding\":["
               "{\"system\":\"http://loinc.org\",\"code\":\"a\"},{\"code\":\"l1\"}]}}");
    store_test_put(db, 1, "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"identifier\":[{\"system\":\"urn:m\",\"value\":\"1\"}]}");
    /* every token row of a version holds that version's row id */
    assert_true(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE id = 't1'") >= 3); /* code ×2, status */
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE rid IS NOT (SELECT MAX(rid) FROM resources r"
                                    " WHERE r.type = sp_tok.type AND r.id = sp_tok.id)"),
                     0);
    /* an update writes the new version's; a deletion drops them */
    store_test_put(db, 2, "{\"resourceType\":\"Observation\",\"id\":\"t1\",\"status\":\"amended\",\"code\":{\"coding\":["
               "{\"code\":\"b\"}]}}");
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE id = 't1' AND rid = (SELECT rid FROM resources"
                                    " WHERE id = 't1' AND version = 2)"),
                     store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE id = 't1'"));
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE id = 't1' AND value = 'a'"), 0);
    assert_int_equal(hv__store_put(db, "Observation", "t1", 3, 3000, NULL, 0, NULL), HV_OK);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE id = 't1'"), 0);
    assert_true(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE id = 'p1' AND rid IS NOT NULL") >= 1);
    store_test_db_close(db);
}

/* Whether query on type is paged from sp_tok_sr (-1: refused). */
static int tok_paged(const char *type, const char *query)
{
    hv__search_plan_t p;
    int rc, only;
    hv__search_plan_init(&p);
    rc = hv__search_plan_build(&p, type, query, 1, 10, 100);
    only = rc != HV_OK ? -1 : hv__search_tok_only(&p);
    if (getenv("HV_DEBUG_COMBO") && p.where.data)
        fprintf(stderr, "%s -> %s\n", query, p.where.data);
    hv__search_plan_clear(&p);
    return only;
}

static void search_tok_page_takes_only_one_value_of_one_token(void **state)
{
    static const struct {
        const char *type, *query;
        int paged;
    } cases[] = {
        {"Observation", "code=8867-4", 1},
        {"Observation", "code=http://loinc.org|8867-4", 1},
        {"Observation", "code=|8867-4", 1},
        {"Observation", "status=final", 1},
        {"Observation", "category=vital-signs&_count=5", 1},
        {"Observation", "code=a&_total=accurate", 1},
        {"Observation", "code=a&_include=Observation:subject", 1},
        {"Patient", "identifier=urn:m|1", 1},
        {"Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|1", 1},
        {"Observation", "code=a,b", 0},
        {"Observation", "code=http://loinc.org|", 0},
        {"Observation", "code:not=a", 0},
        {"Observation", "code:text=glucose", 0},
        {"Observation", "code:missing=false", 0},
        {"Observation", "code:in=http://example.org/vs", 0},
        {"Observation", "code=a&_sort=date", 0},
        {"Observation", "code=a&status=final", 0},
        {"Observation", "code=a&date=ge2020", 0}, /* the combined rows */
        {"Observation", "subject=Patient/p1", 0},
        {"Patient", "name=smith", 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = tok_paged(cases[i].type, cases[i].query);
        if (got != cases[i].paged)
            fail_msg("%s?%s: paged %d, want %d", cases[i].type, cases[i].query, got, cases[i].paged);
    }
    hv__search_tok_enable(0);
    assert_int_equal(tok_paged("Observation", "code=a"), 0);
    hv__search_tok_enable(1);
}

static void search_tok_page_answers_as_the_generic_plan(void **state)
{
    hv_db_t *db = store_test_db();
    static const char *const queries[] = {
        "code=a",
        "code=http://loinc.org|a",
        "code=|b",
        "code=urn:local|a",
        "status=final",
        "status=amended&_total=accurate",
        "code=b&_total=none",
        "code=a&_count=1",
        "code=zzz",
    };
    (void)state;
    /* 60 observations: codes a / b in two systems or none, some with two codings */
    for (int i = 0; i < 60; i++) {
        char j[512];
        snprintf(j, sizeof(j),
                 "{\"resourceType\":\"Observation\",\"id\":\"q%02d\",\"status\":\"%s\",\"code\":{\"coding\":["
                 "{%s\"code\":\"%s\"}%s]}}",
                 i, i % 7 == 0 ? "amended" : "final", i % 4 == 3 ? "" : "\"system\":\"http://loinc.org\",",
                 i % 3 == 0 ? "a" : "b", i % 5 == 0 ? ",{\"system\":\"urn:local\",\"code\":\"a\"}" : "");
        store_test_put(db, 1, j);
    }
    for (int round = 0; round < 2; round++) {
        for (size_t k = 0; k < sizeof(queries) / sizeof(queries[0]); k++) {
            ids_t on, off;
            int64_t ton = -2, toff = -2;
            run_all(db, queries[k], hv__search_tok_enable, 1, &on, &ton);
            run_all(db, queries[k], hv__search_tok_enable, 0, &off, &toff);
            /* every query but the last matches something (the comparison is not of two empty sets) */
            if ((k + 1 < sizeof(queries) / sizeof(queries[0])) != (on.s[0] != '\0'))
                fail_msg("round %d %s: [%s]", round, queries[k], on.s);
            if (strcmp(on.s, off.s) != 0 || ton != toff)
                fail_msg("round %d %s: token page [%s] total %lld, generic [%s] total %lld", round, queries[k], on.s,
                         (long long)ton, off.s, (long long)toff);
        }
        /* updates that change a token (a → b, b → a: a later row id) and deletions */
        for (int i = 0; i < 60 && round == 0; i += 4) {
            char j[512];
            snprintf(j, sizeof(j),
                     "{\"resourceType\":\"Observation\",\"id\":\"q%02d\",\"status\":\"final\",\"code\":{\"coding\":["
                     "{\"system\":\"http://loinc.org\",\"code\":\"%s\"}]}}",
                     i, i % 3 == 0 ? "b" : "a");
            store_test_put(db, 2, j);
        }
        for (int i = 2; i < 60 && round == 0; i += 9) {
            char id[8];
            snprintf(id, sizeof(id), "q%02d", i);
            assert_int_equal(hv__store_put(db, "Observation", id, i % 4 == 0 ? 3 : 2, 3000, NULL, 0, NULL), HV_OK);
        }
    }
    store_test_db_close(db);
}

/* The plan SQLite makes of the page of one code (EXPLAIN QUERY PLAN of hv__search_page_sql,
 * after hv__search_tok_pin): a range of the covering sp_tok_sr from the cursor's row id, in
 * its order (no sorter for the distinct row ids), then one row of resources per entry by
 * row id — never a scan. "code=a" names no system: pinned to its one (loinc). */
static void search_tok_page_is_a_covering_range_from_the_cursor(void **state)
{
    static const char *const queries[] = {"code=a", "code=http://loinc.org|a&_cursor=5", "code=|a"};
    hv_db_t *db = store_test_db();
    (void)state;
    for (int i = 0; i < 200; i++) {
        char j[256];
        snprintf(j, sizeof(j),
                 "{\"resourceType\":\"Observation\",\"id\":\"e%d\",\"status\":\"final\",\"code\":{\"coding\":["
                 "{\"system\":\"http://loinc.org\",\"code\":\"%s\"}]}}",
                 i, i % 20 == 0 ? "a" : "b");
        store_test_put(db, 1, j);
    }
    /* statistics as after an import (hv__search_analyze): the plan must not depend on their absence */
    assert_int_equal(hv__search_analyze(db, 0), HV_OK);
    for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
        hv_buf_t plan;
        store_test_page_plan(db, "Observation", queries[i], hv__search_tok_only, &plan);
        if (strstr(plan.data, "COVERING INDEX sp_tok_sr (type=? AND code=? AND value=? AND system=? AND rid>?)") == NULL ||
            strstr(plan.data, "TEMP B-TREE FOR DISTINCT") != NULL || strstr(plan.data, "SCAN r") != NULL ||
            strstr(plan.data, "SCAN sp_tok") != NULL || strstr(plan.data, "SEARCH r USING INTEGER PRIMARY KEY (rowid=?)") == NULL)
            fail_msg("%s: plan\n%s", queries[i], plan.data);
        hv_buf_release(&plan);
    }
    store_test_db_close(db);
}

/* hv__search_tok_pin: a value without a system is pinned to its one system (or to none),
 * left alone under two systems or with no row; COUNT(*) is taken only with a system. */
static void search_tok_pin_names_the_one_system_of_a_value(void **state)
{
    static const struct {
        const char *query;
        const char *cond;  /* in the criterion after pinning */
        const char *bound; /* the new last bind (NULL: none added) */
        int rows;          /* hv__search_tok_counts_rows after pinning */
        int one;           /* every row of the value has the system named: tok_one set */
    } cases[] = {
        {"code=a", "(system = $4 AND value = $3)", "http://loinc.org", 1, 1},
        {"code=n", "(system IS NULL AND value = $3)", NULL, 1, 1},
        {"code=m", "(value = $3)", NULL, 0, 0}, /* loinc and urn:l */
        {"code=none", "(value = $3)", NULL, 0, 0},
        {"code=urn:l|m", "(system = $3 AND value = $4)", NULL, 1, 0},
        {"code=http://loinc.org|a", "(system = $3 AND value = $4)", NULL, 1, 1},
        {"code=urn:l|a", "(system = $3 AND value = $4)", NULL, 1, 0},
        {"code=|a", "(system IS NULL AND value = $3)", NULL, 1, 0},
        {"code=|n", "(system IS NULL AND value = $3)", NULL, 1, 1},
        {"status=final", "(system IS NULL AND value = $3)", NULL, 1, 1},
        /* no total asked for: a named system is not probed (only the count would use it) */
        {"code=http://loinc.org|a&_total=none", "(system = $3 AND value = $4)", NULL, 1, 0},
        {"code=a&_total=none", "(system = $4 AND value = $3)", "http://loinc.org", 1, 1},
    };
    hv_db_t *db = store_test_db();
    (void)state;
    store_test_put(db, 1, "{\"resourceType\":\"Observation\",\"id\":\"p1\",\"status\":\"final\",\"code\":{\"coding\":["
               "{\"system\":\"http://loinc.org\",\"code\":\"a\"},{\"code\":\"n\"},{\"system\":\"urn:l\",\"code\":\"m\"}]}}");
    store_test_put(db, 1, "{\"resourceType\":\"Observation\",\"id\":\"p2\",\"status\":\"final\",\"code\":{\"coding\":["
               "{\"system\":\"http://loinc.org\",\"code\":\"a\"},{\"system\":\"http://loinc.org\",\"code\":\"m\"}]}}");
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++) {
        hv__search_plan_t p;
        int n0;
        hv__search_plan_init(&p);
        assert_int_equal(hv__search_plan_build(&p, "Observation", cases[i].query, 1, 10, 100), HV_OK);
        assert_true(hv__search_tok_only(&p));
        n0 = p.nbinds;
        assert_int_equal(hv__search_tok_pin(db, &p), HV_OK);
        if (strstr(p.where.data, cases[i].cond) == NULL || !hv__search_tok_only(&p) ||
            p.cspan[0][1] != p.where.len || p.nbinds != n0 + (cases[i].bound != NULL) ||
            (cases[i].bound != NULL && strcmp(p.binds[p.nbinds - 1].s, cases[i].bound) != 0) ||
            hv__search_tok_counts_rows(&p) != cases[i].rows || (p.tok_one > 0) != cases[i].one)
            fail_msg("%s: %s (binds %d, rows %d, one %d)", cases[i].query, p.where.data, p.nbinds,
                     hv__search_tok_counts_rows(&p), p.tok_one);
        hv__search_plan_clear(&p);
    }
    store_test_db_close(db);
}

/* ---- string rows with their row id ---- */

static void search_str_rows_carry_the_current_row_id(void **state)
{
    hv_db_t *db = store_test_db();
    (void)state;
    store_test_put(db, 1, "{\"resourceType\":\"Patient\",\"id\":\"s1\",\"name\":[{\"family\":\"Smith\",\"given\":[\"Ann\"]}]}");
    assert_true(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE id = 's1'") >= 3); /* name ×2, family, given */
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE rid IS NOT (SELECT MAX(rid) FROM resources r"
                                    " WHERE r.type = sp_str.type AND r.id = sp_str.id)"),
                     0);
    store_test_put(db, 2, "{\"resourceType\":\"Patient\",\"id\":\"s1\",\"name\":[{\"family\":\"Jones\"}]}");
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE id = 's1' AND rid = (SELECT rid FROM resources"
                                    " WHERE id = 's1' AND version = 2)"),
                     store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE id = 's1'"));
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE id = 's1' AND value = 'smith'"), 0);
    assert_int_equal(hv__store_put(db, "Patient", "s1", 3, 3000, NULL, 0, NULL), HV_OK);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE id = 's1'"), 0);
    store_test_db_close(db);
}

/* Whether query on type is paged from sp_str_rc (-1: refused). */
static int str_paged(const char *type, const char *query)
{
    hv__search_plan_t p;
    int rc, only;
    hv__search_plan_init(&p);
    rc = hv__search_plan_build(&p, type, query, 1, 10, 100);
    only = rc != HV_OK ? -1 : hv__search_str_only(&p);
    if (getenv("HV_DEBUG_COMBO") && p.where.data)
        fprintf(stderr, "%s -> %s\n", query, p.where.data);
    hv__search_plan_clear(&p);
    return only;
}

static void search_str_page_takes_only_one_value_of_one_string(void **state)
{
    static const struct {
        const char *type, *query;
        int paged;
    } cases[] = {
        {"Patient", "name=smith", 1},
        {"Patient", "name=Sm&_count=5", 1},
        {"Patient", "name:exact=Smith", 1},
        {"Patient", "family=smi&_total=accurate", 1},
        {"Patient", "given=ann", 1},
        {"Patient", "address=main", 1},
        {"Patient", "name=smith&_revinclude=Observation:subject", 1},
        {"Patient", "name:contains=mit", 0},
        {"Patient", "name=smith,jones", 0},
        {"Patient", "name:missing=true", 0},
        {"Patient", "name=smith&gender=female", 0},
        {"Patient", "name=smith&_sort=family", 0},
        {"Patient", "identifier=urn:m|1", 0},
        {"Observation", "code=a", 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = str_paged(cases[i].type, cases[i].query);
        if (got != cases[i].paged)
            fail_msg("%s?%s: paged %d, want %d", cases[i].type, cases[i].query, got, cases[i].paged);
    }
    hv__search_str_enable(0);
    assert_int_equal(str_paged("Patient", "name=smith"), 0);
    hv__search_str_enable(1);
}

static void search_str_page_answers_as_the_generic_plan(void **state)
{
    hv_db_t *db = store_test_db();
    static const char *const fam[] = {"Smith", "Smithers", "Smyth", "Jones", "Schmidt"};
    static const char *const queries[] = {
        "name=smith", "name=sm",          "family=smith&_total=accurate", "given=an", "name:exact=Smith",
        "address=main", "name=s&_total=none", "name=smith&_count=1",       "name=zzz",
    };
    (void)state;
    /* 50 patients: families sharing prefixes, a given name and an address for some, a second name for some */
    for (int i = 0; i < 50; i++) {
        char j[512];
        snprintf(j, sizeof(j),
                 "{\"resourceType\":\"Patient\",\"id\":\"n%02d\",\"name\":[{\"family\":\"%s\",\"given\":[\"%s\"]}%s]%s}",
                 i, fam[i % 5], i % 3 == 0 ? "Anna" : "Bob", i % 4 == 0 ? ",{\"family\":\"Smith\"}" : "",
                 i % 6 == 0 ? ",\"address\":[{\"line\":[\"1 Main St\"],\"city\":\"Mainz\"}]" : "");
        store_test_put(db, 1, j);
    }
    for (int round = 0; round < 2; round++) {
        for (size_t k = 0; k < sizeof(queries) / sizeof(queries[0]); k++) {
            ids_t on, off;
            int64_t ton = -2, toff = -2;
            run_all_of(db, "Patient", queries[k], hv__search_str_enable, 1, &on, &ton);
            run_all_of(db, "Patient", queries[k], hv__search_str_enable, 0, &off, &toff);
            if ((k + 1 < sizeof(queries) / sizeof(queries[0])) != (on.s[0] != '\0'))
                fail_msg("round %d %s: [%s]", round, queries[k], on.s);
            if (strcmp(on.s, off.s) != 0 || ton != toff)
                fail_msg("round %d %s: string page [%s] total %lld, generic [%s] total %lld", round, queries[k],
                         on.s, (long long)ton, off.s, (long long)toff);
        }
        /* updates that change a name (a later row id) and deletions */
        for (int i = 0; i < 50 && round == 0; i += 4) {
            char j[256];
            snprintf(j, sizeof(j), "{\"resourceType\":\"Patient\",\"id\":\"n%02d\",\"name\":[{\"family\":\"%s\"}]}", i,
                     i % 8 == 0 ? "Smith" : "Jonas");
            store_test_put(db, 2, j);
        }
        for (int i = 2; i < 50 && round == 0; i += 9) {
            char id[8];
            snprintf(id, sizeof(id), "n%02d", i);
            assert_int_equal(hv__store_put(db, "Patient", id, i % 4 == 0 ? 3 : 2, 3000, NULL, 0, NULL), HV_OK);
        }
    }
    store_test_db_close(db);
}

/* The plan SQLite makes of the page of one name (EXPLAIN QUERY PLAN of hv__search_page_sql):
 * a range of the covering sp_str_rc (no seek of resources per match), then one row of
 * resources per page entry by row id — never a scan, never resources_tiv. :exact seeks
 * the folded value in sp_str_rc too, then reads each match's row for its raw value
 * (case and marks: FHIR R4 search.html#string), which the index does not hold. */
static void search_str_page_is_a_covering_range(void **state)
{
    static const char *const queries[] = {"name=smi", "family:exact=Smith&_cursor=5", "name=s"};
    hv_db_t *db = store_test_db();
    (void)state;
    for (int i = 0; i < 200; i++) {
        char j[256];
        snprintf(j, sizeof(j), "{\"resourceType\":\"Patient\",\"id\":\"e%d\",\"name\":[{\"family\":\"%s\"}]}", i,
                 i % 20 == 0 ? "Smith" : "Jones");
        store_test_put(db, 1, j);
    }
    assert_int_equal(hv__search_analyze(db, 0), HV_OK);
    for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
        hv_buf_t plan;
        int exact = strstr(queries[i], ":exact") != NULL;
        store_test_page_plan(db, "Patient", queries[i], hv__search_str_only, &plan);
        if (strstr(plan.data, exact ? "USING INDEX sp_str_rc (type=? AND code=? AND value=?"
                                    : "COVERING INDEX sp_str_rc (type=? AND code=? AND value") == NULL ||
            strstr(plan.data, "resources_tiv") != NULL || strstr(plan.data, "SCAN r") != NULL ||
            strstr(plan.data, "SCAN sp_str") != NULL || strstr(plan.data, "SEARCH r USING INTEGER PRIMARY KEY (rowid=?)") == NULL)
            fail_msg("%s: plan\n%s", queries[i], plan.data);
        hv_buf_release(&plan);
    }
    store_test_db_close(db);
}

/*
 * The writer skips a combined pair whose token or other side has no row (rows_has,
 * fhir/search_index.c): the combined rows it leaves — sp_tokdate, sp_tokqty, sp_reftok —
 * equal the rows every fill statement writes when run unconditionally, over crafted
 * Observations with either side missing, composite-only codes, updates that remove a side,
 * and one Synthea bundle's resources (Observations with code, effective, value and subject).
 */
static void search_combined_rows_skipped_only_when_a_side_is_empty(void **state)
{
    static const char *const res[] = {
        "{\"resourceType\":\"Observation\",\"id\":\"k1\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":"
        "\"http://loinc.org\",\"code\":\"8867-4\"}]},\"effectiveDateTime\":\"2020-01-02\",\"valueQuantity\":"
        "{\"value\":72,\"system\":\"http://unitsofmeasure.org\",\"code\":\"/min\"},\"subject\":{\"reference\":"
        "\"Patient/p1\"}}",
        "{\"resourceType\":\"Observation\",\"id\":\"k2\",\"status\":\"final\",\"code\":{\"text\":\"hr\"},"
        "\"effectiveDateTime\":\"2020-01-02\",\"valueQuantity\":{\"value\":1},\"subject\":{\"reference\":\"Patient/p1\"}}",
        "{\"resourceType\":\"Observation\",\"id\":\"k3\",\"status\":\"final\",\"code\":{\"coding\":[{\"code\":\"x\"}]}}",
        "{\"resourceType\":\"Observation\",\"id\":\"k4\",\"status\":\"final\",\"code\":{\"coding\":[{\"code\":\"y\"}]},"
        "\"effectivePeriod\":{\"start\":\"2019\"}}",
        "{\"resourceType\":\"Observation\",\"id\":\"k5\",\"status\":\"final\",\"code\":{\"coding\":[{\"code\":\"z\"}]},"
        "\"subject\":{\"reference\":\"Group/g\"},\"component\":[{\"code\":{\"coding\":[{\"code\":\"c\"}]},"
        "\"valueQuantity\":{\"value\":3}}]}",
        "{\"resourceType\":\"Observation\",\"id\":\"k6\",\"status\":\"final\",\"code\":{\"text\":\"t\"},"
        "\"component\":[{\"code\":{\"coding\":[{\"code\":\"c\"}]},\"valueQuantity\":{\"value\":3}}],"
        "\"subject\":{\"reference\":\"Patient/p2\"}}",
        "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"name\":[{\"family\":\"K\"}]}",
    };
    static const char *const tabs[] = {"sp_tokdate", "sp_tokqty", "sp_reftok"};
    hv_db_t *db = store_test_db();
    char path[4096], sql[512];
    char *text;
    struct json_object *bundle, *entries = NULL;
    int64_t n[3];
    (void)state;
    for (size_t i = 0; i < HV_ARRAY_LEN(res); i++)
        store_test_put(db, 1, res[i]);
    /* k1 loses its date and subject in version 2: its tokdate and reftok rows go */
    store_test_put(db, 2, "{\"resourceType\":\"Observation\",\"id\":\"k1\",\"status\":\"final\",\"code\":{\"coding\":"
                          "[{\"system\":\"http://loinc.org\",\"code\":\"8867-4\"}]},\"valueQuantity\":{\"value\":70}}");
    snprintf(path, sizeof(path), "%s/fhir/synthea", store_test_reference_dir());
    {
        /* the smallest bundle that holds Observations: any one is enough, take the first by name */
        DIR *d = opendir(path);
        struct dirent *de;
        char best[1024] = "";
        if (d == NULL)
            fail_msg("the Synthea bundles are missing: %s", path);
        while ((de = readdir(d)) != NULL)
            if (strstr(de->d_name, ".json") != NULL && (best[0] == '\0' || strcmp(de->d_name, best) < 0))
                snprintf(best, sizeof(best), "%s", de->d_name);
        closedir(d);
        if (best[0] == '\0')
            fail_msg("no Synthea bundle in %s", path);
        snprintf(path + strlen(path), sizeof(path) - strlen(path), "/%s", best);
    }
    text = store_test_slurp(path, NULL);
    bundle = json_tokener_parse(text);
    assert_non_null(bundle);
    assert_true(json_object_object_get_ex(bundle, "entry", &entries));
    for (size_t i = 0; i < json_object_array_length(entries); i++) {
        struct json_object *r = NULL;
        const char *j, *u;
        hv_buf_t b;
        if (!json_object_object_get_ex(json_object_array_get_idx(entries, i), "resource", &r) ||
            hv_json_get_str(r, "id") == NULL)
            continue;
        /* the bundle's urn:uuid: references as Patient/<uuid>, so that subject makes rows */
        hv_buf_init(&b, 1 << 22);
        for (j = json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN); (u = strstr(j, "urn:uuid:")) != NULL;
             j = u + 9) {
            hv_buf_append(&b, j, (size_t)(u - j));
            hv_buf_puts(&b, "Patient/");
        }
        hv_buf_puts(&b, j);
        store_test_put(db, 1, b.data);
        hv_buf_release(&b);
    }
    json_object_put(bundle);
    hv_free(text);
    assert_true(store_test_count(db, "SELECT COUNT(*) FROM sp_tokdate") > 10);
    assert_true(store_test_count(db, "SELECT COUNT(*) FROM sp_tokqty") > 10);
    assert_true(store_test_count(db, "SELECT COUNT(*) FROM sp_reftok") > 10);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tokdate WHERE id IN ('k1', 'k2', 'k3', 'k6')"), 0);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tokqty WHERE id = 'k1' AND value = 70"), 1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_reftok WHERE id IN ('k1', 'k2', 'k6')"), 0);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_reftok WHERE id = 'k5'"), 1);
    for (size_t t = 0; t < HV_ARRAY_LEN(tabs); t++) {
        snprintf(sql, sizeof(sql), "CREATE TABLE kept_%s AS SELECT * FROM %s", tabs[t], tabs[t]);
        assert_int_equal(hv_db_exec(db, sql), HV_OK);
        snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM %s", tabs[t]);
        n[t] = store_test_count(db, sql);
    }
    /* every pair's fill, unconditionally (no has callback), for every current resource */
    {
        hv_db_stmt_t *st = NULL;
        char(*ids)[2][80] = calloc(4096, sizeof(*ids));
        int nids = 0;
        assert_non_null(ids);
        assert_int_equal(hv_db_prepare(db, "SELECT DISTINCT type, id FROM resources", &st), HV_OK);
        while (hv_db_step(st) == HV_DB_ROW && nids < 4096) {
            snprintf(ids[nids][0], sizeof(ids[nids][0]), "%s", hv_db_column_text(st, 0, NULL));
            snprintf(ids[nids][1], sizeof(ids[nids][1]), "%s", hv_db_column_text(st, 1, NULL));
            nids++;
        }
        hv_db_done(st);
        for (int i = 0; i < nids; i++)
            assert_int_equal(hv__search_combo_put(db, ids[i][0], ids[i][1], 1, 1, NULL, NULL), HV_OK);
        free(ids);
    }
    for (size_t t = 0; t < HV_ARRAY_LEN(tabs); t++) {
        snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM %s", tabs[t]);
        assert_int_equal(store_test_count(db, sql), n[t]);
        snprintf(sql, sizeof(sql),
                 "SELECT COUNT(*) FROM (SELECT * FROM (SELECT * FROM %s EXCEPT SELECT * FROM kept_%s) UNION ALL"
                 " SELECT * FROM (SELECT * FROM kept_%s EXCEPT SELECT * FROM %s))",
                 tabs[t], tabs[t], tabs[t], tabs[t]);
        if (store_test_count(db, sql) != 0)
            fail_msg("%s differs from its unconditional fill", tabs[t]);
    }
    store_test_db_close(db);
}

/* ---- the rows computed from the rows in hand equal their fills ---- */

/* Writes json as version `version` (0: the next) of its resource: through hv__store_put_pre with the index
 * rows computed ahead (as an import's workers do) when pre is set, else hv__store_put. */
static void put_version(hv_db_t *db, int64_t version, const char *json, int pre)
{
    struct json_object *o = json_tokener_parse(json);
    hv__search_rows_t *rows = NULL;
    const char *type, *id;
    assert_non_null(o);
    type = hv_json_get_str(o, "resourceType");
    id = hv_json_get_str(o, "id");
    if (version == 0) {
        /* the next version (a resource several bundles hold is written again: an update) */
        hv_db_stmt_t *st = NULL;
        assert_int_equal(hv_db_prepare(db, "SELECT COALESCE(MAX(version), 0) + 1 FROM resources WHERE type = $1 AND"
                                           " id = $2", &st), HV_OK);
        hv_db_bind_text(st, 1, type, strlen(type));
        hv_db_bind_text(st, 2, id, strlen(id));
        assert_int_equal(hv_db_step(st), HV_DB_ROW);
        version = hv_db_column_int64(st, 0);
        hv_db_done(st);
    }
    if (pre)
        assert_int_equal(hv__search_index_rows(type, o, &rows), HV_OK);
    assert_int_equal(hv__store_put_pre(db, type, id, version, 1000 + (uint64_t)version, json, strlen(json), o, rows,
                                       NULL, 0),
                     HV_OK);
    hv__search_rows_free(rows);
    json_object_put(o);
}

/* A Synthea resource with its urn:uuid: references written Patient/<uuid> (so that subject
 * and patient make reference rows), stored as its next version, every other one with rows ahead. */
static void put_synthea(struct json_object *res, size_t seq, void *ud)
{
    const char *j, *u;
    hv_buf_t b;
    if (hv_json_get_str(res, "id") == NULL)
        return;
    hv_buf_init(&b, 1 << 22);
    for (j = json_object_to_json_string_ext(res, JSON_C_TO_STRING_PLAIN); (u = strstr(j, "urn:uuid:")) != NULL;
         j = u + 9) {
        hv_buf_append(&b, j, (size_t)(u - j));
        hv_buf_puts(&b, "Patient/");
    }
    hv_buf_puts(&b, j);
    put_version(ud, 0, b.data, (int)(seq % 2));
    hv_buf_release(&b);
}

#define OBS(id, rest) "{\"resourceType\":\"Observation\",\"id\":\"" id "\",\"status\":\"final\"," rest "}"
#define UCUM "\"system\":\"http://unitsofmeasure.org\""

/*
 * Stores every Synthea resource (odd ones with their rows computed ahead, as an import
 * does) and crafted Observations — several codes with and without a system, a date, a
 * period open at either end, an instant, quantities with a UCUM canonical value and without
 * one (no unit, a unit that is not UCUM, another system), components (composite rows of
 * group > 0 that the combined rows must not take), references to a Patient and a Group,
 * 70 codings (more than a product's first 64 rows, written from the heap), updates that change, drop and add either side, a
 * deletion and a deletion followed by a new version — then checks that the combined and
 * _has rows the writer computed (sp_tokdate, sp_tokqty, sp_reftok) are, row by row, the rows
 * the fill statements write from the tables (hv__search_combo_put, per current resource).
 */
static void combined_rows_equal_their_fills(hv_db_t *db)
{
    static const char *const tabs[] = {"sp_tokdate", "sp_tokqty", "sp_reftok"};
    static const struct {
        int64_t version;
        const char *json; /* NULL: a deletion of id */
        const char *id;
    } ops[] = {
        {1, OBS("m1", "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"8867-4\"},{\"code\":\"hr\"},"
                      "{\"system\":\"urn:x\",\"code\":\"h\"}],\"text\":\"Heart rate\"},\"effectiveDateTime\":"
                      "\"2020-01-02T10:00:00Z\",\"valueQuantity\":{\"value\":72," UCUM ",\"code\":\"/min\"},"
                      "\"subject\":{\"reference\":\"Patient/p1\"}"), "m1"},
        {1, OBS("m2", "\"code\":{\"coding\":[{\"code\":\"a\"},{\"code\":\"b\"}]},\"effectivePeriod\":{\"start\":"
                      "\"2019-05\"},\"valueQuantity\":{\"value\":1.5,\"unit\":\"mg\"},\"subject\":{\"reference\":"
                      "\"Group/g1\"}"), "m2"},
        {1, OBS("m3", "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"x\"}]},\"effectivePeriod\":"
                      "{\"end\":\"2021-02-03\"},\"valueQuantity\":{\"value\":3,\"unit\":\"furlong\",\"system\":"
                      "\"urn:units\",\"code\":\"fl\"},\"subject\":{\"reference\":\"Patient/p2\"}"), "m3"},
        {1, OBS("m4", "\"code\":{\"coding\":[{\"code\":\"y\"}]},\"effectiveInstant\":\"2022-03-04T05:06:07.123Z\","
                      "\"valueQuantity\":{\"value\":120," UCUM ",\"code\":\"mm[Hg]\",\"unit\":\"mmHg\"},"
                      "\"component\":[{\"code\":{\"coding\":[{\"code\":\"sys\"}]},\"valueQuantity\":{\"value\":"
                      "120," UCUM ",\"code\":\"mm[Hg]\"}},{\"code\":{\"coding\":[{\"code\":\"dia\"}]},"
                      "\"valueQuantity\":{\"value\":80," UCUM ",\"code\":\"mm[Hg]\"}}],\"subject\":{\"reference\":"
                      "\"http://example.org/fhir/Patient/p3/_history/2\"}"), "m4"},
        {1, OBS("m5", "\"code\":{\"text\":\"no coding\"},\"effectiveDateTime\":\"2020\",\"valueQuantity\":"
                      "{\"value\":5},\"subject\":{\"reference\":\"Patient/p1\"}"), "m5"},
        {1, OBS("m6", "\"code\":{\"coding\":[{\"code\":\"q\"}]},\"valueQuantity\":{\"value\":0.25,\"unit\":"
                      "\"g/dL\"," UCUM ",\"code\":\"g/dL\"},\"effectivePeriod\":{\"start\":\"2018-01-01\",\"end\":"
                      "\"2018-01-02\"}"), "m6"},
        {1, NULL, NULL}, /* placeholder for the 70 codings (below) */
        /* updates: another code and date; the date dropped; a subject added; a deletion; a
         * deletion followed by a new version */
        {2, OBS("m1", "\"code\":{\"coding\":[{\"code\":\"z1\"},{\"code\":\"z2\"}]},\"effectiveDateTime\":"
                      "\"2023-06-07\",\"valueQuantity\":{\"value\":60," UCUM ",\"code\":\"/min\"},"
                      "\"subject\":{\"reference\":\"Patient/p9\"}"), "m1"},
        {2, OBS("m2", "\"code\":{\"coding\":[{\"code\":\"a\"}]},\"valueQuantity\":{\"value\":2,\"unit\":\"mg\"}"),
         "m2"},
        {2, OBS("m6", "\"code\":{\"coding\":[{\"code\":\"q\"}]},\"effectiveDateTime\":\"2018-01-01\","
                      "\"subject\":{\"reference\":\"Patient/p6\"}"), "m6"},
        {2, NULL, "m3"},
        {2, NULL, "m5"},
        {3, OBS("m5", "\"code\":{\"coding\":[{\"code\":\"back\"}]},\"effectiveDateTime\":\"2024\","
                      "\"subject\":{\"reference\":\"Patient/p5\"}"), "m5"},
    };
    char sql[1024];
    int64_t n[3];
    hv_buf_t many;
    assert_int_equal(hv_db_begin(db), HV_OK);
    store_test_each_synthea_resource(put_synthea, db);
    hv_buf_init(&many, 0);
    hv_buf_puts(&many, "{\"resourceType\":\"Observation\",\"id\":\"m7\",\"status\":\"final\",\"code\":{\"coding\":[");
    for (int i = 0; i < 70; i++)
        hv_buf_printf(&many, "%s{\"system\":\"urn:many\",\"code\":\"c%d\"}", i > 0 ? "," : "", i);
    hv_buf_puts(&many, "]},\"effectiveDateTime\":\"2020-01-01\",\"valueQuantity\":{\"value\":1},"
                       "\"subject\":{\"reference\":\"Patient/p7\"}}");
    for (size_t i = 0; i < HV_ARRAY_LEN(ops); i++) {
        const char *json = ops[i].json != NULL ? ops[i].json : ops[i].id == NULL ? many.data : NULL;
        if (json != NULL)
            put_version(db, ops[i].version, json, (int)(i % 2));
        else
            assert_int_equal(hv__store_put(db, "Observation", ops[i].id, ops[i].version, 2000, NULL, 0, NULL), HV_OK);
    }
    hv_buf_release(&many);
    assert_int_equal(hv_db_commit(db), HV_OK);
    /* the crafted cases wrote what they are for */
    /* every coding of the 70 (no cap of 64 any more), with the date, and with each reference */
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tokdate WHERE id = 'm7'"), 70);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tokqty WHERE id = 'm7'"), 70);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_reftok WHERE id = 'm7'"), 140);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE id = 'm7' AND code = 'code'"), 70);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tokdate WHERE id IN ('m3', 'm2')"), 0);
    assert_true(store_test_count(db, "SELECT COUNT(*) FROM sp_tokqty WHERE cvalue IS NOT NULL") > 0);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_reftok WHERE id = 'm5' AND rid = 'p5'"), 2);
    assert_true(store_test_count(db, "SELECT COUNT(*) FROM sp_tokqty WHERE cvalue IS NULL") > 0);
    for (size_t t = 0; t < HV_ARRAY_LEN(tabs); t++) {
        snprintf(sql, sizeof(sql), "CREATE TABLE kept_%s AS SELECT * FROM %s", tabs[t], tabs[t]);
        assert_int_equal(hv_db_exec(db, sql), HV_OK);
        snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM %s", tabs[t]);
        n[t] = store_test_count(db, sql);
        if (n[t] < 1000)
            fail_msg("%s: only %lld rows", tabs[t], (long long)n[t]);
    }
    /* the fills, per current resource (a deletion's: nothing) */
    {
        hv_db_stmt_t *st = NULL;
        char(*ids)[2][80] = calloc(8192, sizeof(*ids));
        int nids = 0;
        assert_non_null(ids);
        assert_int_equal(hv_db_prepare(db, "SELECT DISTINCT type, id FROM resources", &st), HV_OK);
        while (hv_db_step(st) == HV_DB_ROW && nids < 8192) {
            snprintf(ids[nids][0], sizeof(ids[nids][0]), "%s", hv_db_column_text(st, 0, NULL));
            snprintf(ids[nids][1], sizeof(ids[nids][1]), "%s", hv_db_column_text(st, 1, NULL));
            nids++;
        }
        hv_db_done(st);
        assert_true(nids > 3000 && nids < 8192);
        assert_int_equal(hv_db_begin(db), HV_OK);
        for (int i = 0; i < nids; i++)
            assert_int_equal(hv__search_combo_put(db, ids[i][0], ids[i][1], 1, 1, NULL, NULL), HV_OK);
        assert_int_equal(hv_db_commit(db), HV_OK);
        free(ids);
    }
    /* the same multiset of rows: as many, none twice on either side, none on one side only */
    for (size_t t = 0; t < HV_ARRAY_LEN(tabs); t++) {
        snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM %s", tabs[t]);
        if (store_test_count(db, sql) != n[t])
            fail_msg("%s: %lld rows computed, %lld filled", tabs[t], (long long)n[t],
                     (long long)store_test_count(db, sql));
        snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM (SELECT DISTINCT * FROM kept_%s) d", tabs[t]);
        assert_int_equal(store_test_count(db, sql), n[t]);
        snprintf(sql, sizeof(sql),
                 "SELECT COUNT(*) FROM (SELECT * FROM (SELECT * FROM %s EXCEPT SELECT * FROM kept_%s) a UNION ALL"
                 " SELECT * FROM (SELECT * FROM kept_%s EXCEPT SELECT * FROM %s) b) c",
                 tabs[t], tabs[t], tabs[t], tabs[t]);
        if (store_test_count(db, sql) != 0)
            fail_msg("%s: the computed rows differ from the fill's", tabs[t]);
    }
}

static void search_combined_rows_computed_in_hand_equal_the_fills_sqlite(void **state)
{
    hv_db_t *db = store_test_db();
    (void)state;
    combined_rows_equal_their_fills(db);
    store_test_db_close(db);
}

static void search_combined_rows_computed_in_hand_equal_the_fills_pg(void **state)
{
    const char *url = getenv("HV_TEST_PG_URL");
    hv_db_t *db = NULL;
    hv_error_t err;
    char name[64], sql[256];
    (void)state;
    if (url == NULL || url[0] == '\0') {
        printf("[ NOT RUN  ] the PostgreSQL half: HV_TEST_PG_URL is not set\n");
        skip();
    }
    hv_error_clear(&err);
    snprintf(name, sizeof(name), "hvt_fcombo_%ld", (long)getpid());
    if (hv_db_open(url, "/tmp", name, &db, &err) != HV_OK)
        fail_msg("hv_db_open(%s): %s", url, err.message);
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS \"%s\" CASCADE; CREATE SCHEMA \"%s\"", name, name);
    assert_int_equal(hv_db_exec(db, sql), HV_OK);
    assert_int_equal(hv_db_migrate(db, name, hv__store_migrations(db), &err), HV_OK);
    assert_int_equal(hv_db_set_synchronous(db, "OFF"), HV_OK);
    combined_rows_equal_their_fills(db);
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS \"%s\" CASCADE", name);
    assert_int_equal(hv_db_exec(db, sql), HV_OK);
    hv_db_close(db);
}

int run_search_combo_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(search_combo_rows_follow_the_current_version),
        cmocka_unit_test(search_combo_planner_folds_only_plain_pairs),
        cmocka_unit_test(search_combo_renumbers_every_marker_of_the_criteria_after_the_pair),
        cmocka_unit_test(search_combo_answers_as_the_generic_plan),
        cmocka_unit_test(search_count_of_one_code_is_a_covering_index_range),
        cmocka_unit_test(search_tok_rows_carry_the_current_row_id),
        cmocka_unit_test(search_tok_page_takes_only_one_value_of_one_token),
        cmocka_unit_test(search_tok_page_answers_as_the_generic_plan),
        cmocka_unit_test(search_tok_page_is_a_covering_range_from_the_cursor),
        cmocka_unit_test(search_tok_pin_names_the_one_system_of_a_value),
        cmocka_unit_test(search_str_rows_carry_the_current_row_id),
        cmocka_unit_test(search_str_page_takes_only_one_value_of_one_string),
        cmocka_unit_test(search_str_page_answers_as_the_generic_plan),
        cmocka_unit_test(search_str_page_is_a_covering_range),
        cmocka_unit_test(search_combined_rows_skipped_only_when_a_side_is_empty),
        cmocka_unit_test(search_combined_rows_computed_in_hand_equal_the_fills_sqlite),
        cmocka_unit_test(search_combined_rows_computed_in_hand_equal_the_fills_pg),
    };
    return cmocka_run_group_tests_name("fhir search_combo", tests, NULL, NULL);
}
