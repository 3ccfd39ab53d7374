/* search_has.c — unit tests of fhir/search_has.c: the reference x token rows follow the
 * current version (two codings, two references, update, delete, other types), the
 * planner rewrites a _has only when its condition is a plain token of a pair, the plans
 * seek sp_reftok_v per candidate and count its range without a sorter, and the rewritten
 * searches give the same pages, totals and counts as the sp_ref + sp_tok form — with
 * deleted, recreated and never-stored referenced resources. */
#include "tests.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/search_int.h"

static void search_has_rows_follow_the_current_version(void **state)
{
    hv_db_t *db = store_test_db();
    (void)state;
    /* two codings x two references (patient and subject are both Observation.subject) */
    store_test_put(db, 1,
          "{\"resourceType\":\"Observation\",\"id\":\"o1\",\"status\":\"final\",\"code\":{\"coding\":["
          "{\"system\":\"http://loinc.org\",\"code\":\"a\"},{\"code\":\"l1\"}]},"
          "\"subject\":{\"reference\":\"Patient/p1\"}}");
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_reftok WHERE id = 'o1' AND rcode = 'patient' AND rtype ="
                                 " 'Patient' AND rid = 'p1' AND tcode = 'code'"),
                     2);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_reftok WHERE id = 'o1' AND rcode = 'subject' AND tval = 'a'"
                                 " AND tsys = 'http://loinc.org'"),
                     1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_reftok WHERE id = 'o1' AND tval = 'l1' AND tsys IS NULL"), 2);
    /* an update replaces them */
    store_test_put(db, 2,
          "{\"resourceType\":\"Observation\",\"id\":\"o1\",\"status\":\"final\",\"code\":{\"coding\":["
          "{\"code\":\"b\"}]},\"subject\":{\"reference\":\"Patient/p2\"}}");
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_reftok WHERE id = 'o1'"), 2);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_reftok WHERE id = 'o1' AND rid = 'p2' AND tval = 'b'"), 2);
    /* without a code, or without a subject: none */
    store_test_put(db, 3, "{\"resourceType\":\"Observation\",\"id\":\"o1\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
                 "\"subject\":{\"reference\":\"Patient/p2\"}}");
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_reftok WHERE id = 'o1'"), 0);
    store_test_put(db, 4, "{\"resourceType\":\"Observation\",\"id\":\"o1\",\"status\":\"final\",\"code\":{\"coding\":["
                 "{\"code\":\"b\"}]}}");
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_reftok WHERE id = 'o1'"), 0);
    store_test_put(db, 5,
          "{\"resourceType\":\"Observation\",\"id\":\"o1\",\"status\":\"final\",\"code\":{\"coding\":["
          "{\"code\":\"b\"}]},\"subject\":{\"reference\":\"Patient/p2\"}}");
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_reftok WHERE id = 'o1'"), 2);
    /* a deletion drops them */
    assert_int_equal(hv__store_put(db, "Observation", "o1", 6, 2000, NULL, 0, NULL), HV_OK);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_reftok WHERE id = 'o1'"), 0);
    /* other types write none */
    store_test_put(db, 1, "{\"resourceType\":\"Condition\",\"id\":\"c1\",\"code\":{\"coding\":[{\"code\":\"a\"}]},"
                 "\"subject\":{\"reference\":\"Patient/p1\"}}");
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_reftok"), 0);
    /* the fill seeks the resource's rows by (type, id, code) on both sides, never a
     * range of every row of the code (which SQLite chose without the index clause) */
    {
        hv_buf_t eqp, q;
        hv_db_stmt_t *st = NULL;
        hv_buf_init(&eqp, 4096);
        hv_buf_init(&q, 4096);
        hv_buf_printf(&q, "EXPLAIN QUERY PLAN %s", hv__search_has_fill_sql(db));
        assert_int_equal(hv_db_prepare(db, q.data, &st), HV_OK);
        store_test_plan_lines(st, &eqp);
        if (strstr(eqp.data, "sp_tok_idc (type=? AND id=? AND code=?)") == NULL ||
            strstr(eqp.data, "sp_ref_idc (type=? AND id=? AND code=?)") == NULL)
            fail_msg("fill:\n%s", eqp.data);
        hv_buf_release(&eqp);
        hv_buf_release(&q);
    }
    store_test_db_close(db);
}

/* Whether the plan of Patient?query reads sp_reftok (1), the sp_ref + sp_tok form (0), or
 * is refused (-1). */
static int rewritten(const char *type, const char *query)
{
    hv__search_plan_t p;
    int r = -1;
    hv__search_plan_init(&p);
    if (hv__search_plan_build(&p, type, query, 1, 20, 100) == HV_OK)
        r = strstr(p.where.data, "sp_reftok") != NULL;
    if (r == 1 && (strstr(p.where.data, "sp_tok ") != NULL || strstr(p.where.data, "sp_tok@") != NULL))
        r = 2; /* both: a second _has or criterion kept its form */
    hv__search_plan_clear(&p);
    return r;
}

static void search_has_rewrite_takes_plain_tokens_of_a_pair_only(void **state)
{
    static const struct {
        const char *type, *query;
        int want;
    } cases[] = {
        {"Patient", "_has:Observation:patient:code=4548-4", 1},
        {"Patient", "_has:Observation:subject:code=http://loinc.org|4548-4", 1},
        {"Patient", "_has:Observation:patient:code=|4548-4", 1},
        {"Patient", "_has:Observation:patient:code=http://loinc.org|", 1},
        {"Patient", "_has:Observation:patient:code=a,http://loinc.org|b&name=x", 1},
        {"Practitioner", "_has:Patient:general-practitioner:_has:Observation:patient:code=a", 1},
        {"Patient", "_has:Observation:patient:code:not=a", 0},
        {"Patient", "_has:Observation:patient:code:text=a", 0},
        {"Patient", "_has:Observation:patient:code:missing=true", 0},
        {"Patient", "_has:Observation:patient:code:in=http://example.org/vs", 0},
        {"Patient", "_has:Observation:patient:status=final", 0},
        {"Patient", "_has:Observation:patient:date=ge2020", 0},
        {"Patient", "_has:Condition:patient:code=a", 0},
        {"Practitioner", "_has:Observation:performer:code=a", 0},
        {"Patient", "_has:Observation:patient:code=a&_has:Observation:patient:status=final", 2},
    };
    (void)state;
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++) {
        int got = rewritten(cases[i].type, cases[i].query);
        if (got != cases[i].want)
            fail_msg("case %zu %s?%s: got %d, want %d", i, cases[i].type, cases[i].query, got, cases[i].want);
    }
    hv__search_has_rows_enable(0);
    assert_int_equal(rewritten("Patient", "_has:Observation:patient:code=4548-4"), 0);
    hv__search_has_rows_enable(1);
}

typedef struct ids {
    char s[2048];
    int n;
} ids_t;

static int on_row(void *ud, const hv__store_row_t *row)
{
    ids_t *l = ud;
    size_t at = strlen(l->s);
    snprintf(l->s + at, sizeof(l->s) - at, "%s%s", at ? " " : "", row->id);
    l->n++;
    return HV_OK;
}

/* The first page (count 100: every match here) of type?query and its total (-1: none). */
static void search(hv_db_t *db, const char *type, const char *query, ids_t *out, int64_t *total)
{
    hv__search_plan_t p;
    memset(out, 0, sizeof(*out));
    hv__search_plan_init(&p);
    if (hv__search_plan_build(&p, type, query, 1, 100, 100) != HV_OK)
        fail_msg("%s?%s: %s", type, query, p.msg);
    assert_int_equal(hv__search_plan_run(db, &p, on_row, out, total), HV_OK);
    hv__search_plan_clear(&p);
}

/* The EXPLAIN QUERY PLAN of the count of type?query (hv__search_has_count_sql). */
static void count_plan(hv_db_t *db, const char *type, const char *query, hv_buf_t *out)
{
    hv__search_plan_t p;
    hv_buf_t q;
    hv_db_stmt_t *st = NULL;
    hv__search_plan_init(&p);
    hv_buf_init(&q, 65536);
    assert_int_equal(hv__search_plan_build(&p, type, query, 1, 20, 100), HV_OK);
    hv_buf_puts(&q, "EXPLAIN QUERY PLAN ");
    assert_int_equal(hv__search_has_count_sql(db, &p, &q), HV_OK);
    assert_int_equal(hv_db_prepare(db, q.data, &st), HV_OK);
    hv__search_bind_plan(st, &p);
    store_test_plan_lines(st, out);
    hv_buf_release(&q);
    hv__search_plan_clear(&p);
}

/*
 * Patients p0..p11: p(i) with i % 2 == 0 have an Observation of code C1 (p0 two), all one
 * of C2; p3 and p4 are deleted (p4 after its C1), p6 deleted and stored again; p8's C1
 * Observation is deleted; Observations refer to p99, never stored, and to a Group of the
 * same id as a Patient. Every query, pages and totals, the same with the rule on and off,
 * and as counted by hand.
 */
static void search_has_answers_equal_the_plain_form(void **state)
{
    hv_db_t *db = store_test_db();
    hv_buf_t eqp;
    (void)state;
    for (int i = 0; i < 12; i++)
        store_test_put_has_population(db, "p", i);
    store_test_put(db, 1, "{\"resourceType\":\"Observation\",\"id\":\"o0-x\",\"status\":\"final\",\"code\":{\"coding\":"
                 "[{\"code\":\"C1\"}]},\"subject\":{\"reference\":\"Patient/p0\"}}");
    store_test_put(db, 1, "{\"resourceType\":\"Observation\",\"id\":\"o99\",\"status\":\"final\",\"code\":{\"coding\":"
                 "[{\"code\":\"C1\"}]},\"subject\":{\"reference\":\"Patient/p99\"}}");
    store_test_put(db, 1, "{\"resourceType\":\"Observation\",\"id\":\"og\",\"status\":\"final\",\"code\":{\"coding\":"
                 "[{\"code\":\"C1\"}]},\"subject\":{\"reference\":\"Group/p5\"}}");
    assert_int_equal(hv__store_put(db, "Patient", "p3", 2, 2000, NULL, 0, NULL), HV_OK);
    assert_int_equal(hv__store_put(db, "Patient", "p4", 2, 2000, NULL, 0, NULL), HV_OK);
    assert_int_equal(hv__store_put(db, "Patient", "p6", 2, 2000, NULL, 0, NULL), HV_OK);
    store_test_put(db, 3, "{\"resourceType\":\"Patient\",\"id\":\"p6\",\"name\":[{\"family\":\"Hasfam6\"}]}");
    assert_int_equal(hv__store_put(db, "Observation", "o8-1", 2, 2000, NULL, 0, NULL), HV_OK);
    {
        static const struct {
            const char *query;
            const char *ids; /* the matches, in row-id order */
        } cases[] = {
            {"_has:Observation:patient:code=C1", "p0 p2 p10 p6"},
            {"_has:Observation:subject:code=http://loinc.org|C1", "p0 p2 p10 p6"},
            {"_has:Observation:patient:code=|C1", "p0"},
            {"_has:Observation:patient:code=C1&name=hasfam", "p2 p10 p6"},
            {"_has:Observation:patient:code=C2,C1&name=hasfam", "p1 p2 p5 p7 p8 p10 p11 p6"},
            {"_has:Observation:patient:code=C3", ""},
            {"_id=p0,p1,p2&_has:Observation:patient:code=C1", "p0 p2"},
        };
        for (int on = 1; on >= 0; on--) {
            hv__search_has_rows_enable(on);
            for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++) {
                char q[256];
                int n = 0;
                ids_t got;
                int64_t total = 0;
                for (const char *s = cases[i].ids; *s; s++)
                    n += (s == cases[i].ids || s[-1] == ' ') && *s != ' ';
                search(db, "Patient", cases[i].query, &got, &total);
                if (strcmp(got.s, cases[i].ids) != 0)
                    fail_msg("rule %d, %s: got \"%s\"", on, cases[i].query, got.s);
                snprintf(q, sizeof(q), "%s&_total=accurate", cases[i].query);
                search(db, "Patient", q, &got, &total);
                /* No rows and no total: the REST layer says 0 (fhir/search.c). */
                if (total < 0 && got.n == 0)
                    total = 0;
                if (strcmp(got.s, cases[i].ids) != 0 || total != n)
                    fail_msg("rule %d, %s: got \"%s\", total %lld", on, q, got.s, (long long)total);
                snprintf(q, sizeof(q), "%s&_summary=count", cases[i].query);
                search(db, "Patient", q, &got, &total);
                if (total != n)
                    fail_msg("rule %d, %s: count %lld, want %d", on, q, (long long)total, n);
            }
        }
        hv__search_has_rows_enable(1);
    }
    /* the plans: one sp_reftok_v seek per candidate; the count one range in rid order (its
     * DISTINCT without a sorter), a resources_tiv seek per id and the deleted versions */
    hv_buf_init(&eqp, 65536);
    hv__search_has_total_enable(0);
    {
        hv__search_plan_t p;
        hv__search_plan_init(&p);
        assert_int_equal(hv__search_plan_build(&p, "Patient", "_has:Observation:patient:code=C1&name=hasfam", 1, 20,
                                               100),
                         HV_OK);
        assert_int_equal(hv__search_has_explain(db, &p, &eqp), HV_OK);
        hv__search_plan_clear(&p);
    }
    if (strstr(eqp.data, "sp_reftok_v (type=? AND rcode=? AND rtype=? AND tcode=? AND tval=? AND rid=?)") == NULL ||
        strstr(eqp.data, "sp_str_rc") == NULL || strstr(eqp.data, "sp_tok") != NULL || strstr(eqp.data, "SCAN sp_") != NULL)
        fail_msg("_has beside a name:\n%s", eqp.data);
    eqp.len = 0;
    count_plan(db, "Patient", "_has:Observation:patient:code=http://loinc.org|C1&_summary=count", &eqp);
    if (strstr(eqp.data, "sp_reftok_v (type=? AND rcode=? AND rtype=? AND tcode=? AND tval=?)") == NULL ||
        strstr(eqp.data, "resources_tiv (type=? AND id=?)") == NULL ||
        strstr(eqp.data, "resources_dead (type=?)") == NULL || strstr(eqp.data, "TEMP B-TREE") != NULL ||
        strstr(eqp.data, "SCAN sp_") != NULL || strstr(eqp.data, "SCAN r\n") != NULL)
        fail_msg("count of a _has alone:\n%s", eqp.data);
    hv_buf_release(&eqp);
    store_test_db_close(db);
}

int run_search_has_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(search_has_rows_follow_the_current_version),
        cmocka_unit_test(search_has_rewrite_takes_plain_tokens_of_a_pair_only),
        cmocka_unit_test(search_has_answers_equal_the_plain_form),
    };
    return cmocka_run_group_tests_name("search_has", tests, NULL, NULL);
}
