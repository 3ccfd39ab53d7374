/* search_plan.c — unit tests of fhir/search_plan.c and fhir/search_run.c: what the planner
 * accepts and refuses (chains, _has, composites, modifiers, _include, _sort, _cursor), the
 * keyset cursor of a sorted run continuing where the page ended, and the index rows of
 * composite parameters and UCUM quantities (fhir/search_index.c) that those plans read. */
#include "tests.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "fhir/search_int.h"

static int64_t count_rows(hv_db_t *db, const char *sql)
{
    hv_db_stmt_t *st = NULL;
    int64_t n = -1;
    assert_int_equal(hv_db_prepare(db, sql, &st), HV_OK);
    if (hv_db_step(st) == HV_DB_ROW)
        n = hv_db_column_int64(st, 0);
    hv_db_done(st);
    return n;
}

static int plan(const char *type, const char *query, int system)
{
    hv__search_plan_t p;
    int rc;
    hv__search_plan_init(&p);
    p.system = system;
    rc = hv__search_plan_build(&p, type, query, 1, 10, 100);
    if (rc != HV_OK && p.msg[0] == '\0')
        fail_msg("%s?%s refused without a message", type, query);
    hv__search_plan_clear(&p);
    return rc;
}

static void search_plan_accepts_and_refuses_by_the_specification(void **state)
{
    static const struct { const char *type, *query; int system, rc; } cases[] = {
        {"Observation", "subject:Patient.name=anna", 0, HV_OK},
        {"Observation", "subject.name=anna", 0, HV_OK},
        {"Observation", "patient.general-practitioner.name=x", 0, HV_OK},
        {"Observation", "code.name=x", 0, HV_EINVAL},            /* a chain through a token */
        {"Observation", "subject:Nope.name=x", 0, HV_EINVAL},
        {"Observation", "subject:Patient.nosuch=x", 0, HV_EINVAL},
        {"Observation", "subject:Patient.link:Patient.link:Patient.link:Patient.link:Patient.name=x", 0, HV_EINVAL},
        {"Patient", "_has:Observation:patient:code=1", 0, HV_OK},
        {"Patient", "_has:Observation:patient:_has:Provenance:target:agent=x", 0, HV_OK},
        {"Patient", "_has:Observation:code:code=1", 0, HV_EINVAL}, /* code is not a reference */
        {"Patient", "_has:Observation:patient=1", 0, HV_EINVAL},
        {"Observation", "component-code-value-quantity=http://loinc.org|8480-6$gt100", 0, HV_OK},
        {"Observation", "component-code-value-quantity=8480-6", 0, HV_EINVAL},      /* one part */
        {"Observation", "component-code-value-quantity=8480-6$1$2", 0, HV_EINVAL},  /* three parts */
        {"Observation", "component-code-value-quantity:exact=a$1", 0, HV_EINVAL},
        {"Observation", "value-quantity=5|http://unitsofmeasure.org|mg", 0, HV_OK},
        {"Observation", "value-quantity=5|http://unitsofmeasure.org|notaunit", 0, HV_EINVAL},
        {"Observation", "code:text=pressure", 0, HV_OK},
        {"Observation", "code:in=http://x", 0, HV_OK},
        {"Observation", "code:not-in=http://x,http://y", 0, HV_OK},
        {"Observation", "code:above=http://x|1", 0, HV_OK},
        {"Observation", "code:below=1", 0, HV_EINVAL},
        {"Observation", "_text=x", 0, HV_OK},
        {"Observation", "_content=a b,c", 0, HV_OK},
        {"Observation", "_text=!!", 0, HV_EINVAL},                 /* no word */
        {"Observation", "_text:exact=x", 0, HV_EINVAL},
        {"Observation", "_query=x", 0, HV_ENOTSUP},
        {"Observation", "_filter=code eq x", 0, HV_ENOTSUP},
        {"Patient", "_list=l1", 0, HV_OK},
        {"Patient", "_list=$current-allergies", 0, HV_ENOTSUP},
        {"Location", "near=42.25|-83.69|10|km", 0, HV_OK},
        {"Location", "near=42.25|-83.69", 0, HV_OK},
        {"Location", "near=42.25", 0, HV_EINVAL},
        {"Location", "near=95|0|1", 0, HV_EINVAL},
        {"Location", "near=1|2|3|parsec", 0, HV_EINVAL},
        {"Observation", "date=ge2020&date=lt2021&date=ne2020-06", 0, HV_OK},
        {"Observation", "date=ge2020&date=lt2021-13", 0, HV_EINVAL},
        {"Observation", "date=ge2020,lt2019&date=lt2021", 0, HV_OK},
        {"Patient", "identifier:of-type=s|MR|1", 0, HV_OK},
        {"Patient", "identifier:of-type=MR", 0, HV_EINVAL},
        {"Observation", "subject:identifier=urn:x|1", 0, HV_OK},
        {"Observation", "subject:Patient=1", 0, HV_OK},
        {"ValueSet", "url:below=http://x/y", 0, HV_OK},
        {"ValueSet", "url:above=http://x/y", 0, HV_OK},
        {"Observation", "value-quantity:below=1", 0, HV_EINVAL},
        {"Observation", "_include=Observation:subject:Patient", 0, HV_OK},
        {"Observation", "_include:iterate=Patient:*", 0, HV_OK},
        {"Observation", "_include=Observation:code", 0, HV_EINVAL},
        {"Observation", "_revinclude=Nope:subject", 0, HV_EINVAL},
        {"Patient", "_sort=family,-birthdate,gender,_id", 0, HV_OK},
        {"Patient", "_sort=family,a,b,c,d", 0, HV_EINVAL},
        {"Patient", "_sort=link", 0, HV_EINVAL},                    /* a reference */
        {"Patient", "_sort=_id&_cursor=s7031~12", 0, HV_OK},
        {"Patient", "_sort=_id&_cursor=i5~12", 0, HV_EINVAL},       /* an integer for a text key */
        {"Patient", "_sort=family&_cursor=s61~12", 0, HV_EINVAL},   /* the no-value flag is missing */
        {"Patient", "_sort=family&_cursor=i0~s61~12", 0, HV_OK},
        {"Patient", "_cursor=s6~1", 0, HV_EINVAL},                  /* odd hex */
        {"", "_type=Patient,Practitioner&name=x", 1, HV_OK},
        {"", "_type=Patient,Practitioner&birthdate=2000", 1, HV_EINVAL},
        {"", "name=x", 1, HV_EINVAL},
        {"", "_id=a&_lastUpdated=gt2020", 1, HV_OK},
        {"", "_type=Nope", 1, HV_EINVAL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = plan(cases[i].type, cases[i].query, cases[i].system);
        if (rc != cases[i].rc)
            fail_msg("%s?%s: %d (want %d)", cases[i].type, cases[i].query, rc, cases[i].rc);
    }
}

static void put(hv_db_t *db, const char *json)
{
    struct json_object *o = json_tokener_parse(json);
    assert_non_null(o);
    assert_int_equal(hv__store_put(db, hv_json_get_str(o, "resourceType"), hv_json_get_str(o, "id"), 1, 1000, json,
                                   strlen(json), o),
                     HV_OK);
    json_object_put(o);
}

typedef struct page {
    char ids[8][HV__FHIR_ID_MAX];
    char cursor[HV__SEARCH_CURSOR_MAX];
    int n, max;
} page_t;

static int on_row(void *ud, const hv__store_row_t *row)
{
    page_t *pg = ud;
    if (pg->n < pg->max) {
        snprintf(pg->ids[pg->n], HV__FHIR_ID_MAX, "%s", row->id);
        snprintf(pg->cursor, sizeof(pg->cursor), "%s", row->cursor);
        pg->n++;
    }
    return HV_OK;
}

static void search_run_cursor_continues_after_the_page(void **state)
{
    hv_db_t *db = store_test_db();
    const char *fam[] = {"Berg", "Alt", NULL, "Berg", "Alt"};
    char q[HV__SEARCH_CURSOR_MAX + 64], got[64] = "";
    (void)state;
    for (int i = 0; i < 5; i++) {
        char j[256];
        snprintf(j, sizeof(j), "{\"resourceType\":\"Patient\",\"id\":\"q%d\"%s%s%s}", i,
                 fam[i] ? ",\"name\":[{\"family\":\"" : "", fam[i] ? fam[i] : "", fam[i] ? "\"}]" : "");
        put(db, j);
    }
    /* _sort=-family: Berg (q0, q3), Alt (q1, q4), none (q2); two per page */
    snprintf(q, sizeof(q), "_sort=-family");
    for (int pageno = 0; pageno < 3; pageno++) {
        hv__search_plan_t p;
        page_t pg;
        int64_t total;
        memset(&pg, 0, sizeof(pg));
        pg.max = 2;
        hv__search_plan_init(&p);
        assert_int_equal(hv__search_plan_build(&p, "Patient", q, 1, 2, 10), HV_OK);
        assert_int_equal(hv__search_plan_run(db, &p, on_row, &pg, &total), HV_OK);
        hv__search_plan_clear(&p);
        for (int i = 0; i < pg.n; i++)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s ", pg.ids[i]);
        snprintf(q, sizeof(q), "_sort=-family&_cursor=%s", pg.cursor);
    }
    assert_string_equal(got, "q0 q3 q1 q4 q2 ");
    store_test_db_close(db);
}

static void search_index_writes_composite_groups_and_ucum_values(void **state)
{
    hv_db_t *db = store_test_db();
    struct json_object *o = json_tokener_parse(
        "{\"resourceType\":\"Observation\",\"id\":\"bp\",\"status\":\"final\",\"code\":{\"coding\":[{\"code\":\"x\"}]},"
        "\"valueQuantity\":{\"value\":5500,\"system\":\"http://unitsofmeasure.org\",\"code\":\"mg\"},"
        "\"component\":[{\"code\":{\"coding\":[{\"code\":\"a\",\"display\":\"Systolic\"}]},\"valueQuantity\":{\"value\":120}},"
        "{\"code\":{\"coding\":[{\"code\":\"b\"}]},\"valueQuantity\":{\"value\":80}}]}");
    (void)state;
    assert_non_null(o);
    assert_int_equal(hv__search_index_put(db, "Observation", "bp", o, 0), HV_OK);
    /* each component in its own group, token and quantity under "<code>$<i>" */
    assert_int_equal(count_rows(db, "SELECT COUNT(*) FROM sp_tok WHERE code = 'component-code-value-quantity$0'"
                                    " AND ((grp = 1 AND value = 'a') OR (grp = 2 AND value = 'b'))"),
                     2);
    assert_int_equal(count_rows(db, "SELECT COUNT(*) FROM sp_num WHERE code = 'component-code-value-quantity$1'"
                                    " AND ((grp = 1 AND value = 120) OR (grp = 2 AND value = 80))"),
                     2);
    /* the canonical form of 5500 mg is 5.5 g */
    assert_int_equal(count_rows(db, "SELECT COUNT(*) FROM sp_num WHERE code = 'value-quantity' AND cunit = 'g'"
                                    " AND cvalue > 5.4999 AND cvalue < 5.5001"),
                     1);
    /* :text rows: the display, normalized */
    assert_int_equal(count_rows(db, "SELECT COUNT(*) FROM sp_str WHERE code = 'component-code:text' AND"
                                    " value = 'systolic'"),
                     1);
    json_object_put(o);
    store_test_db_close(db);
}

int run_search_plan_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(search_plan_accepts_and_refuses_by_the_specification),
        cmocka_unit_test(search_run_cursor_continues_after_the_page),
        cmocka_unit_test(search_index_writes_composite_groups_and_ucum_values),
    };
    return cmocka_run_group_tests_name("fhir_search_plan", tests, NULL, NULL);
}
