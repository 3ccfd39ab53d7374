/* search_plan.c — unit tests of fhir/search_plan.c and fhir/search_run.c: what the planner
 * accepts and refuses (chains, _has, composites, modifiers, _include, _sort, _cursor), the
 * keyset cursor of a sorted run continuing where the page ended, and the index rows of
 * composite parameters and UCUM quantities (fhir/search_index.c) that those plans read. */
#include "tests.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/search_int.h"

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
        store_test_put(db, 1, j);
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


/* The successor of a prefix bounds exactly the strings that start with it, in byte
 * (= code point) order: table of prefix, successor ("" none). */
static void search_prefix_successor_bounds_every_starts_with(void **state)
{
    static const struct { const char *in, *out; } cases[] = {
        {"smith", "smiti"},
        {"zz", "z{"},
        {"a\x7f", "a\xc2\x80"},                    /* U+007F → U+0080 (one byte more) */
        {"stra\xc3\x9f", "stra\xc3\xa0"},          /* ß U+00DF → à U+00E0 */
        {"x\xdf\xbf", "x\xe0\xa0\x80"},            /* U+07FF → U+0800 */
        {"\xed\x9f\xbf", "\xee\x80\x80"},          /* U+D7FF → U+E000 (no surrogates) */
        {"\xe6\x97\xa5\xe6\x9c\xac", "\xe6\x97\xa5\xe6\x9c\xad"}, /* 日本 → 日本+1 */
        {"\xef\xbf\xbf", "\xf0\x90\x80\x80"},      /* U+FFFF → U+10000 */
        {"a\xf4\x8f\xbf\xbf", "b"},                /* U+10FFFF cannot rise: dropped, a → b */
        {"\xf4\x8f\xbf\xbf", ""},                  /* nothing above */
        {"", ""},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[32];
        int has = hv__search_prefix_successor(cases[i].in, out, sizeof(out));
        if (has != (cases[i].out[0] != '\0') || (has && strcmp(out, cases[i].out) != 0))
            fail_msg("case %zu: %d \"%s\"", i, has, has ? out : "");
        /* every string with the prefix is below it, the prefix itself is not above */
        if (has) {
            char longer[64];
            snprintf(longer, sizeof(longer), "%s\xf4\x8f\xbf\xbe", cases[i].in);
            assert_true(strcmp(longer, out) < 0);
            assert_true(strcmp(cases[i].in, out) < 0);
        }
    }
}

typedef struct idlist {
    char ids[64][HV__FHIR_ID_MAX];
    char cursor[HV__SEARCH_CURSOR_MAX]; /* the cursor after row number `last` */
    int n, last;
} idlist_t;

static int on_id(void *ud, const hv__store_row_t *row)
{
    idlist_t *l = ud;
    if (l->n == l->last)
        snprintf(l->cursor, sizeof(l->cursor), "%s", row->cursor);
    if (l->n < 64)
        snprintf(l->ids[l->n], HV__FHIR_ID_MAX, "%s", row->id);
    l->n++;
    return HV_OK;
}

/* Every match of type?query, page by page (count per page) through the cursor, as
 * "id id ..." in the order they came; fails on a duplicate. */
static void run_all(hv_db_t *db, const char *type, const char *query, int count, char *out, size_t cap)
{
    char q[HV__SEARCH_CURSOR_MAX + 512];
    char seen[64][HV__FHIR_ID_MAX];
    int nseen = 0;
    snprintf(q, sizeof(q), "%s", query);
    out[0] = '\0';
    for (int pages = 0; pages < 64; pages++) {
        hv__search_plan_t p;
        idlist_t *pg = calloc(1, sizeof(*pg));
        int64_t total;
        int more;
        assert_non_null(pg);
        pg->last = count - 1;
        hv__search_plan_init(&p);
        if (hv__search_plan_build(&p, type, q, 1, count, 100) != HV_OK)
            fail_msg("%s?%s: %s", type, q, p.msg);
        assert_int_equal(hv__search_plan_run(db, &p, on_id, pg, &total), HV_OK);
        hv__search_plan_clear(&p);
        for (int i = 0; i < pg->n && i < count; i++) {
            for (int j = 0; j < nseen; j++)
                if (strcmp(seen[j], pg->ids[i]) == 0)
                    fail_msg("%s?%s: %s twice", type, query, pg->ids[i]);
            assert_true(nseen < 64);
            snprintf(seen[nseen++], HV__FHIR_ID_MAX, "%s", pg->ids[i]);
            snprintf(out + strlen(out), cap - strlen(out), "%s%s", out[0] ? " " : "", pg->ids[i]);
        }
        more = pg->n > count;
        if (more)
            snprintf(q, sizeof(q), "%s&_cursor=%s", query, pg->cursor);
        free(pg);
        if (!more)
            return;
    }
    fail_msg("%s?%s: too many pages", type, query);
}

/* Names that sit at the boundaries of a starts-with range: case, Latin-1 accents
 * (folded), ß, a character just past "z", CJK, and the last code point. */
static const char *const range_names[] = {
    "Zz", "zZa", "Zy", "z{", "Zza\xcc\x81", "Stra\xc3\x9f" "e", "Strasse", "Stra\xc3\x9f", "Straa",
    "\xc3\x89mile", "emile", "Emilia", "\xe6\x97\xa5\xe6\x9c\xac", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
    "\xe6\x97\xa5\xe6\x9c\xad", "a\xf4\x8f\xbf\xbf", "a\xf4\x8f\xbf\xbf" "b", "b",
};

/* A string's default search (starts-with, a range of the value index now) matches
 * exactly the resources whose normalized value starts with the normalized query,
 * evaluated here by brute force over the names; :exact the names equal to the query as
 * written (FHIR R4 search.html#string: case and combining characters count). */
static void search_string_range_matches_starts_with_at_the_boundaries(void **state)
{
    static const char *const queries[] = {
        "zz", "ZZ", "z", "zza", "stra\xc3\x9f", "STRASS", "stras", "\xc3\x89mil", "emil", "EMILE",
        "\xe6\x97\xa5\xe6\x9c\xac", "\xe6\x97\xa5", "a\xf4\x8f\xbf\xbf", "a", "y", "%", "_", "Zz", "emile",
        "\xc3\x89mile",
    };
    hv_db_t *db = store_test_db();
    size_t n = sizeof(range_names) / sizeof(range_names[0]);
    (void)state;
    for (size_t i = 0; i < n; i++) {
        char j[256];
        snprintf(j, sizeof(j), "{\"resourceType\":\"Patient\",\"id\":\"n%zu\",\"name\":[{\"family\":\"%s\"}]}", i,
                 range_names[i]);
        store_test_put(db, 1, j);
    }
    for (size_t k = 0; k < sizeof(queries) / sizeof(queries[0]); k++) {
        for (int exact = 0; exact < 2; exact++) {
            char want[1024] = "", got[1024], nq[64], nn[64], q[160], enc[120];
            size_t o = 0;
            hv__search_normalize(queries[k], nq, sizeof(nq));
            for (size_t i = 0; i < n; i++) {
                hv__search_normalize(range_names[i], nn, sizeof(nn));
                if (exact ? strcmp(range_names[i], queries[k]) == 0 : strncmp(nn, nq, strlen(nq)) == 0)
                    snprintf(want + strlen(want), sizeof(want) - strlen(want), "%sn%zu", want[0] ? " " : "", i);
            }
            /* percent-encode the value for the query string */
            for (const unsigned char *c = (const unsigned char *)queries[k]; *c && o + 4 < sizeof(enc); c++)
                o += (size_t)snprintf(enc + o, sizeof(enc) - o, "%%%02X", *c);
            snprintf(q, sizeof(q), "name%s=%s", exact ? ":exact" : "", enc);
            run_all(db, "Patient", q, 2, got, sizeof(got));
            if (strcmp(got, want) != 0)
                fail_msg("%s: got \"%s\", want \"%s\"", q, got, want);
        }
    }
    store_test_db_close(db);
}

/* :exact compares the value as written (FHIR R4 search.html#string: case and combining
 * characters count), through the folded value's index; a row whose raw value is NULL (written
 * before the column existed) matches folded, as every row did before, until it is rewritten. */
static void search_exact_is_case_and_mark_sensitive_null_raw_folds(void **state)
{
    static const char *const names[] = {"Smith", "SMITH", "smith", "Sm\xc3\xadth", "Smi\xcc\x81th", "Smithers"};
    static const struct {
        const char *query, *want, *want_null; /* want_null: after c1 and c3's rows lose raw */
    } cases[] = {
        {"family:exact=Smith", "c0", "c0 c1 c3"},
        {"family:exact=SMITH", "c1", "c1 c3"},
        {"family:exact=Sm%C3%ADth", "c3", "c1 c3"},
        {"family:exact=Smi%CC%81th", "c4", "c1 c3 c4"},
        {"family:exact=Smith,smith", "c0 c2", "c0 c1 c2 c3"},
        {"family:exact=Smit", "", ""},
        {"family=SMITH", "c0 c1 c2 c3 c4 c5", "c0 c1 c2 c3 c4 c5"},
    };
    hv_db_t *db = store_test_db();
    char got[256];
    (void)state;
    for (size_t i = 0; i < HV_ARRAY_LEN(names); i++) {
        char j[160];
        snprintf(j, sizeof(j), "{\"resourceType\":\"Patient\",\"id\":\"c%zu\",\"name\":[{\"family\":\"%s\"}]}", i,
                 names[i]);
        store_test_put(db, 1, j);
    }
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE raw IS NULL"), 0);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            assert_int_equal(hv_db_exec(db, "UPDATE sp_str SET raw = NULL WHERE id IN ('c1', 'c3')"), HV_OK);
        for (size_t k = 0; k < HV_ARRAY_LEN(cases); k++) {
            const char *want = pass ? cases[k].want_null : cases[k].want;
            run_all(db, "Patient", cases[k].query, 2, got, sizeof(got));
            if (strcmp(got, want) != 0)
                fail_msg("%s (pass %d): got \"%s\", want \"%s\"", cases[k].query, pass, got, want);
        }
    }
    store_test_db_close(db);
}

/* _has beside a selective criterion (checked per candidate, has_driver) and alone
 * (read whole) give the same matches, page after page without duplicates or gaps,
 * as the brute-force answer. */
static void search_has_pages_match_brute_force_driven_either_way(void **state)
{
    hv_db_t *db = store_test_db();
    char want[1024] = "", got[1024], alone[1024];
    (void)state;
    for (int i = 0; i < 12; i++) {
        store_test_put_has_population(db, "h", i);
        if (i % 2 == 0 && i % 3 != 0)
            snprintf(want + strlen(want), sizeof(want) - strlen(want), "%sh%d", want[0] ? " " : "", i);
    }
    /* h0's general practitioner is dr0 (h0 has a C1), h1's dr1 (no C1) */
    store_test_put(db, 1, "{\"resourceType\":\"Practitioner\",\"id\":\"dr0\"}");
    store_test_put(db, 1, "{\"resourceType\":\"Practitioner\",\"id\":\"dr1\"}");
    store_test_put(db, 1, "{\"resourceType\":\"Patient\",\"id\":\"g0\",\"generalPractitioner\":[{\"reference\":\"Practitioner/dr0\"}]}");
    store_test_put(db, 1, "{\"resourceType\":\"Observation\",\"id\":\"og0\",\"status\":\"final\",\"code\":{\"coding\":[{\"code\":"
            "\"C1\"}]},\"subject\":{\"reference\":\"Patient/g0\"}}");
    store_test_put(db, 1, "{\"resourceType\":\"Patient\",\"id\":\"g1\",\"generalPractitioner\":[{\"reference\":\"Practitioner/dr1\"}]}");
    /* Each query three ways: the default (no total: the page stops at its matches,
     * has_page), _total=accurate (every candidate checked and counted) and the default
     * with fhir.search_has_total=accurate — the same ids in the same order. */
    for (int way = 0; way < 3; way++) {
        const char *tail = way == 1 ? "&_total=accurate" : "";
        char q[256];
        hv__search_has_total_enable(way == 2);
        snprintf(q, sizeof(q), "_has:Observation:patient:code=C1&name=hasfam%s", tail);
        run_all(db, "Patient", q, 2, got, sizeof(got));
        assert_string_equal(got, want);
        snprintf(q, sizeof(q), "name=hasfam&_has:Observation:patient:code=http://loinc.org|C1%s", tail);
        run_all(db, "Patient", q, 3, got, sizeof(got));
        assert_string_equal(got, want);
        /* the _has alone: every even patient */
        snprintf(q, sizeof(q), "_has:Observation:patient:code=C1%s", tail);
        run_all(db, "Patient", q, 4, alone, sizeof(alone));
        assert_string_equal(alone, "h0 h2 h4 h6 h8 h10 g0");
        snprintf(q, sizeof(q), "_has:Observation:patient:code=C1%s", tail);
        run_all(db, "Patient", q, 1, alone, sizeof(alone));
        assert_string_equal(alone, "h0 h2 h4 h6 h8 h10 g0");
        /* beside an id list (it drives), and two _has (AND) */
        snprintf(q, sizeof(q), "_id=h1,h2,h3,h4,h9&_has:Observation:patient:code=C1%s", tail);
        run_all(db, "Patient", q, 1, got, sizeof(got));
        assert_string_equal(got, "h2 h4");
        snprintf(q, sizeof(q), "_has:Observation:patient:code=C2&_has:Observation:subject:code=C1%s", tail);
        run_all(db, "Patient", q, 5, got, sizeof(got));
        assert_string_equal(got, "h0 h2 h4 h6 h8 h10");
        /* nested: Observations of patients that have a C1 observation */
        snprintf(q, sizeof(q), "_has:Patient:general-practitioner:_has:Observation:patient:code=C1%s", tail);
        run_all(db, "Practitioner", q, 1, got, sizeof(got));
        assert_string_equal(got, "dr0");
        /* nothing matches: no candidate has a C3 */
        snprintf(q, sizeof(q), "_has:Observation:patient:code=C3&name=hasfam%s", tail);
        run_all(db, "Patient", q, 2, got, sizeof(got));
        assert_string_equal(got, "");
        snprintf(q, sizeof(q), "_has:Observation:patient:code=C3%s", tail);
        run_all(db, "Patient", q, 2, got, sizeof(got));
        assert_string_equal(got, "");
    }
    hv__search_has_total_enable(0);
    store_test_db_close(db);
}

/* The EXPLAIN QUERY PLAN of a has_page statement (fhir/search_run.c) for query. */
static void has_plan(hv_db_t *db, const char *type, const char *query, hv_buf_t *out)
{
    hv__search_plan_t p;
    hv__search_plan_init(&p);
    if (hv__search_plan_build(&p, type, query, 1, 20, 100) != HV_OK)
        fail_msg("%s?%s: %s", type, query, p.msg);
    assert_int_equal(hv__search_has_explain(db, &p, out), HV_OK);
    hv__search_plan_clear(&p);
}

/* The page of a _has without a total: beside a selective criterion, that criterion's
 * index drives and the _has is an EXISTS over the reference index keyed by the target
 * (sp_ref_vc) and the referencing resource's covering token index; alone, the type's
 * rows are read in row-id order from resources_trid (no sorter, no table scan), and a
 * _total or _summary=count takes the counting plan instead. */
static void search_has_page_plans_read_indexes_by_key(void **state)
{
    hv_db_t *db = store_test_db();
    hv_buf_t eqp;
    hv__search_plan_t p;
    (void)state;
    hv__search_has_total_enable(0);
    store_test_put(db, 1, "{\"resourceType\":\"Patient\",\"id\":\"x1\",\"name\":[{\"family\":\"Planfam\"}]}");
    hv_buf_init(&eqp, 65536);
    /* The sp_ref + sp_tok form (fhir.search_has_rows=false; sp_reftok's plans are tested
     * in search_has.c). */
    hv__search_has_rows_enable(0);
    has_plan(db, "Patient", "_has:Observation:patient:code=C1&name=planfam", &eqp);
    hv__search_has_rows_enable(1);
    if (strstr(eqp.data, "sp_str_rc (type=? AND code=? AND value>? AND value<?)") == NULL ||
        strstr(eqp.data, "CORRELATED SCALAR SUBQUERY") == NULL ||
        strstr(eqp.data, "sp_ref_vc (type=? AND code=? AND rid=? AND rtype=?)") == NULL ||
        strstr(eqp.data, "sp_tok_idc (type=? AND id=? AND code=?)") == NULL ||
        strstr(eqp.data, "SCAN sp_") != NULL)
        fail_msg("_has beside a name:\n%s", eqp.data);
    eqp.len = 0;
    has_plan(db, "Patient", "_has:Observation:patient:code=C1&_cursor=5", &eqp);
    if (strstr(eqp.data, "resources_trid (type=? AND rid>?)") == NULL || strstr(eqp.data, "SCAN sp_") != NULL)
        fail_msg("_has alone:\n%s", eqp.data);
    /* only the page's rows are sorted (the outer ORDER BY), never the candidates */
    {
        int sorts = 0;
        for (const char *t = strstr(eqp.data, "TEMP B-TREE"); t != NULL; t = strstr(t + 1, "TEMP B-TREE"))
            sorts++;
        if (sorts != 1)
            fail_msg("_has alone sorts its candidates:\n%s", eqp.data);
    }
    /* a total asked for, or _summary=count: not a has_page plan */
    hv__search_plan_init(&p);
    assert_int_equal(hv__search_plan_build(&p, "Patient", "_has:Observation:patient:code=C1&_total=accurate", 1, 20,
                                           100),
                     HV_OK);
    assert_int_equal(hv__search_has_explain(db, &p, &eqp), HV_ENOTFOUND);
    hv__search_plan_clear(&p);
    hv__search_plan_init(&p);
    assert_int_equal(hv__search_plan_build(&p, "Patient", "_has:Observation:patient:code=C1&_summary=count", 1, 20,
                                           100),
                     HV_OK);
    assert_int_equal(hv__search_has_explain(db, &p, &eqp), HV_ENOTFOUND);
    hv__search_plan_clear(&p);
    hv_buf_release(&eqp);
    store_test_db_close(db);
}

/* The plan SQLite makes of each include statement (EXPLAIN QUERY PLAN): sp_ref read by
 * its key — (type, code, rid) for _revinclude, (type, id, code) for _include — never
 * scanned, and resources looked up by (type, id). */
static void search_include_statements_read_the_reference_index_by_key(void **state)
{
    static const struct { int rev; const char *src, *code, *target, *want; } cases[] = {
        {1, "Observation", "subject", "", "COVERING INDEX sp_ref_vc (type=? AND code=? AND rid=?"},
        {1, "Observation", "", "", "COVERING INDEX sp_ref_vc (type=? AND code=? AND rid=?"},
        {0, "Observation", "subject", "", "sp_ref_idc (type=? AND id=? AND code=?)"},
        {0, "Observation", "subject", "Patient", "sp_ref_idc (type=? AND id=? AND code=?)"},
    };
    hv_db_t *db = store_test_db();
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        hv__sp_include_t in;
        hv_buf_t q, plan;
        hv_db_stmt_t *st = NULL;
        const char *codes[HV__SEARCH_MAX_REV_CODES];
        size_t ncodes = 0;
        memset(&in, 0, sizeof(in));
        in.rev = cases[i].rev;
        snprintf(in.src, sizeof(in.src), "%s", cases[i].src);
        snprintf(in.code, sizeof(in.code), "%s", cases[i].code);
        snprintf(in.target, sizeof(in.target), "%s", cases[i].target);
        hv_buf_init(&q, 65536);
        hv_buf_init(&plan, 65536);
        hv_buf_puts(&q, "EXPLAIN QUERY PLAN ");
        assert_int_equal(hv__search_include_sql(&in, 20, 1, &q, codes, &ncodes), HV_OK);
        if (cases[i].rev && cases[i].code[0] == '\0')
            assert_true(ncodes > 3); /* subject, patient, performer, ... */
        assert_int_equal(hv_db_prepare(db, q.data, &st), HV_OK);
        store_test_plan_lines(st, &plan);
        if (strstr(plan.data, cases[i].want) == NULL || strstr(plan.data, "SCAN sp_ref") != NULL ||
            strstr(plan.data, "resources_tiv (type=? AND id=?)") == NULL)
            fail_msg("case %zu: plan\n%s", i, plan.data);
        hv_buf_release(&q);
        hv_buf_release(&plan);
    }
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
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE code = 'component-code-value-quantity$0'"
                                    " AND ((grp = 1 AND value = 'a') OR (grp = 2 AND value = 'b'))"),
                     2);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_num WHERE code = 'component-code-value-quantity$1'"
                                    " AND ((grp = 1 AND value = 120) OR (grp = 2 AND value = 80))"),
                     2);
    /* the canonical form of 5500 mg is 5.5 g */
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_num WHERE code = 'value-quantity' AND cunit = 'g'"
                                    " AND cvalue > 5.4999 AND cvalue < 5.5001"),
                     1);
    /* :text rows: the display, normalized */
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE code = 'component-code:text' AND"
                                    " value = 'systolic'"),
                     1);
    json_object_put(o);
    store_test_db_close(db);
}

/* The ids of a system-level search (GET /fhir?query), sorted, space separated. */
static void run_system(hv_db_t *db, const char *query, char *out, size_t cap)
{
    hv__search_plan_t p;
    idlist_t *l = calloc(1, sizeof(*l));
    int64_t total;
    assert_non_null(l);
    l->last = -1;
    hv__search_plan_init(&p);
    p.system = 1;
    if (hv__search_plan_build(&p, "", query, 1, 50, 100) != HV_OK)
        fail_msg("?%s: %s", query, p.msg);
    assert_int_equal(hv__search_plan_run(db, &p, on_id, l, &total), HV_OK);
    hv__search_plan_clear(&p);
    qsort(l->ids, (size_t)(l->n < 64 ? l->n : 64), sizeof(l->ids[0]), (int (*)(const void *, const void *))strcmp);
    out[0] = '\0';
    for (int i = 0; i < l->n && i < 64; i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? " " : "", l->ids[i]);
    free(l);
}

/*
 * Patient's, Person's, Practitioner's and RelatedPerson's phonetic has no rows of its own
 * and reads name's (hv__search_row_code, fhir/search_index.c): in every form a string
 * parameter is searched — starts-with, :exact, :contains, :missing, a chain's end, _sort,
 * a system-level search over such types — it matches what name matches. Organization's
 * phonetic (its name only, without the aliases) keeps its own rows; a system-level search
 * mixing the two kinds is refused (one code is bound for every _type).
 */
static void search_phonetic_reads_the_name_rows(void **state)
{
    static const char *const res[] = {
        "{\"resourceType\":\"Patient\",\"id\":\"ph1\",\"name\":[{\"family\":\"Meyer\",\"given\":[\"Anna\"]}]}",
        "{\"resourceType\":\"Patient\",\"id\":\"ph2\",\"name\":[{\"family\":\"Adams\",\"prefix\":[\"Dr\"]}]}",
        "{\"resourceType\":\"Patient\",\"id\":\"ph3\",\"gender\":\"male\"}",
        "{\"resourceType\":\"Practitioner\",\"id\":\"ph4\",\"name\":[{\"text\":\"Anna Meyer\"}]}",
        "{\"resourceType\":\"Person\",\"id\":\"ph5\",\"name\":[{\"family\":\"Meyers\"}]}",
        "{\"resourceType\":\"RelatedPerson\",\"id\":\"ph6\",\"patient\":{\"reference\":\"Patient/ph1\"},"
        "\"name\":[{\"family\":\"Meyer\"}]}",
        "{\"resourceType\":\"Organization\",\"id\":\"ph7\",\"name\":\"Meyer Clinic\",\"alias\":[\"Anna\"]}",
        "{\"resourceType\":\"Observation\",\"id\":\"ph8\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
        "\"subject\":{\"reference\":\"Patient/ph1\"}}",
        "{\"resourceType\":\"Observation\",\"id\":\"ph9\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
        "\"subject\":{\"reference\":\"Patient/ph2\"}}",
    };
    static const struct {
        const char *type, *query, *want;
        int same_as_name; /* the query with name for phonetic must give the same answer */
    } cases[] = {
        {"Patient", "phonetic=mey", "ph1", 1},
        {"Patient", "phonetic=anna", "ph1", 1},
        {"Patient", "phonetic=dr", "ph2", 1},
        {"Patient", "phonetic=meyer,adams", "ph1 ph2", 1},
        {"Patient", "phonetic:exact=Adams", "ph2", 1},
        {"Patient", "phonetic:exact=adams", "", 1},
        {"Patient", "phonetic:contains=dam", "ph2", 1},
        {"Patient", "phonetic:missing=true", "ph3", 1},
        {"Patient", "phonetic:missing=false", "ph1 ph2", 1},
        {"Patient", "_sort=phonetic", "ph2 ph1 ph3", 1},
        {"Patient", "phonetic=a&_summary=count", "", 1},
        {"Observation", "subject:Patient.phonetic=meyer", "ph8", 1},
        {"Observation", "patient.phonetic=adams", "ph9", 1},
        {"Practitioner", "phonetic=anna", "ph4", 1},
        {"Person", "phonetic=meyer", "ph5", 1},
        {"RelatedPerson", "phonetic=mey", "ph6", 1},
        {"Organization", "phonetic=anna", "", 0}, /* Organization.name only */
        {"Organization", "name=anna", "ph7", 0},
        {"Organization", "phonetic=meyer", "ph7", 0},
    };
    hv_db_t *db = store_test_db();
    char got[512], alt[512], q[160];
    (void)state;
    for (size_t i = 0; i < HV_ARRAY_LEN(res); i++)
        store_test_put(db, 1, res[i]);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE code = 'phonetic' AND type <> 'Organization'"),
                     0);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE code = 'phonetic' AND type = 'Organization'"),
                     1);
    for (size_t k = 0; k < HV_ARRAY_LEN(cases); k++) {
        if (strstr(cases[k].query, "_summary") == NULL) {
            run_all(db, cases[k].type, cases[k].query, 2, got, sizeof(got));
            if (strcmp(got, cases[k].want) != 0)
                fail_msg("%s?%s: got \"%s\", want \"%s\"", cases[k].type, cases[k].query, got, cases[k].want);
        }
        if (cases[k].same_as_name) {
            /* the same query with name: the same ids (the count's total too) */
            const char *ph = strstr(cases[k].query, "phonetic");
            hv__search_plan_t a, b;
            idlist_t *la = calloc(1, sizeof(*la)), *lb = calloc(1, sizeof(*lb));
            int64_t ta = -1, tb = -2;
            assert_non_null(ph);
            assert_non_null(la);
            assert_non_null(lb);
            la->last = lb->last = -1;
            snprintf(q, sizeof(q), "%.*sname%s", (int)(ph - cases[k].query), cases[k].query, ph + 8);
            hv__search_plan_init(&a);
            hv__search_plan_init(&b);
            assert_int_equal(hv__search_plan_build(&a, cases[k].type, cases[k].query, 1, 50, 100), HV_OK);
            assert_int_equal(hv__search_plan_build(&b, cases[k].type, q, 1, 50, 100), HV_OK);
            a.total = b.total = HV__TOTAL_ACCURATE;
            assert_int_equal(hv__search_plan_run(db, &a, on_id, la, &ta), HV_OK);
            assert_int_equal(hv__search_plan_run(db, &b, on_id, lb, &tb), HV_OK);
            got[0] = alt[0] = '\0';
            for (int i = 0; i < la->n && i < 64; i++)
                snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s ", la->ids[i]);
            for (int i = 0; i < lb->n && i < 64; i++)
                snprintf(alt + strlen(alt), sizeof(alt) - strlen(alt), "%s ", lb->ids[i]);
            if (strcmp(got, alt) != 0 || ta != tb)
                fail_msg("%s?%s: \"%s\" (total %lld), with name \"%s\" (total %lld)", cases[k].type, cases[k].query,
                         got, (long long)ta, alt, (long long)tb);
            hv__search_plan_clear(&a);
            hv__search_plan_clear(&b);
            free(la);
            free(lb);
        }
    }
    run_system(db, "_type=Patient,Practitioner&phonetic=anna", got, sizeof(got));
    assert_string_equal(got, "ph1 ph4");
    run_system(db, "_type=Patient,Person,RelatedPerson&phonetic=meyer", got, sizeof(got));
    assert_string_equal(got, "ph1 ph5 ph6");
    assert_int_equal(plan("", "_type=Patient,Practitioner&_sort=phonetic", 1), HV_OK);
    assert_int_equal(plan("", "_type=Patient,Organization&phonetic=anna", 1), HV_ENOTSUP);
    assert_int_equal(plan("", "_type=Patient,Organization&_sort=phonetic", 1), HV_EINVAL);
    assert_int_equal(plan("", "_type=Organization,InsurancePlan&phonetic=x", 1), HV_OK);
    store_test_db_close(db);
}

int run_search_plan_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(search_plan_accepts_and_refuses_by_the_specification),
        cmocka_unit_test(search_run_cursor_continues_after_the_page),
        cmocka_unit_test(search_index_writes_composite_groups_and_ucum_values),
        cmocka_unit_test(search_prefix_successor_bounds_every_starts_with),
        cmocka_unit_test(search_string_range_matches_starts_with_at_the_boundaries),
        cmocka_unit_test(search_exact_is_case_and_mark_sensitive_null_raw_folds),
        cmocka_unit_test(search_phonetic_reads_the_name_rows),
        cmocka_unit_test(search_has_pages_match_brute_force_driven_either_way),
        cmocka_unit_test(search_has_page_plans_read_indexes_by_key),
        cmocka_unit_test(search_include_statements_read_the_reference_index_by_key),
    };
    return cmocka_run_group_tests_name("fhir_search_plan", tests, NULL, NULL);
}
