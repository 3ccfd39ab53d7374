/* search_index.c — unit tests of fhir/search_index.c: date ranges by precision, prefixes,
 * string normalization, and index rows written and replaced with the version. */
#include "tests.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "fhir/search_int.h"

static void search_date_range_covers_the_precision(void **state)
{
    /* ms since the epoch of the first and last millisecond each value covers */
    static const struct { const char *s; int64_t lo, hi; } cases[] = {
        {"1970", 0, 31536000000LL - 1},
        {"1972", 63072000000LL, 63072000000LL + 366LL * 86400000 - 1}, /* a leap year */
        {"1970-02", 2678400000LL, 2678400000LL + 28LL * 86400000 - 1},
        {"1972-02", 65750400000LL, 65750400000LL + 29LL * 86400000 - 1},
        {"1970-01-02", 86400000LL, 2 * 86400000LL - 1},
        {"1970-01-01T00:00:01Z", 1000, 1999},
        {"1970-01-01T00:00:01.500Z", 1500, 1500},
        {"1970-01-01T01:00:00+01:00", 0, 999},
    };
    static const char *const bad[] = {"19x0", "1970-1", "1970-13", "70", "1970-01-01T00", "", "1970-01-01 ",
                                      "1970-01-01T00:00:00Zjunk"};
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t lo = -1, hi = -1;
        assert_int_equal(hv__search_date_range(cases[i].s, &lo, &hi), HV_OK);
        if (lo != cases[i].lo || hi != cases[i].hi)
            fail_msg("%s: [%lld, %lld] (want [%lld, %lld])", cases[i].s, (long long)lo, (long long)hi,
                     (long long)cases[i].lo, (long long)cases[i].hi);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t lo = 7, hi = 7;
        if (hv__search_date_range(bad[i], &lo, &hi) != HV_EINVAL)
            fail_msg("\"%s\" accepted as a date", bad[i]);
        assert_int_equal(lo, 7);
    }
}

static void search_prefix_reads_the_nine_prefixes(void **state)
{
    static const struct { const char *s; hv__sp_prefix_t p; const char *rest; } cases[] = {
        {"eq2020", HV__SP_EQ, "2020"}, {"ne2020", HV__SP_NE, "2020"}, {"gt5", HV__SP_GT, "5"},
        {"lt5", HV__SP_LT, "5"},       {"ge5", HV__SP_GE, "5"},       {"le5", HV__SP_LE, "5"},
        {"sa5", HV__SP_SA, "5"},       {"eb5", HV__SP_EB, "5"},       {"ap5", HV__SP_AP, "5"},
        {"2020", HV__SP_EQ, "2020"},   {"gt", HV__SP_EQ, "gt"},        {"ltx", HV__SP_EQ, "ltx"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *s = cases[i].s;
        assert_int_equal(hv__search_prefix(&s), cases[i].p);
        assert_string_equal(s, cases[i].rest);
    }
}

static void search_normalize_folds_case_and_accents(void **state)
{
    char out[32];
    (void)state;
    hv__search_normalize("MÜLLER Ça", out, sizeof(out));
    assert_string_equal(out, "muller ca");
    hv__search_normalize("Zoë–x", out, sizeof(out));
    assert_string_equal(out, "zoe\xe2\x80\x93x"); /* other UTF-8 kept whole */
    hv__search_normalize("abcdef", out, 4);
    assert_string_equal(out, "abc");
}

static void search_index_rows_follow_the_current_version(void **state)
{
    hv_db_t *db = store_test_db();
    struct json_object *p = json_tokener_parse(
        "{\"resourceType\":\"Patient\",\"id\":\"x\",\"name\":[{\"family\":\"Ünal\",\"given\":[\"A\",\"B\"]}],"
        "\"gender\":\"male\",\"birthDate\":\"1970\",\"generalPractitioner\":[{\"reference\":\"Practitioner/d\"}]}");
    (void)state;
    assert_non_null(p);
    assert_int_equal(hv__search_index_put(db, "Patient", "x", p, 0), HV_OK);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE code = 'family' AND value = 'unal'"), 1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE code = 'given'"), 2);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE code = 'gender' AND value = 'male'"), 1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_ref WHERE code = 'general-practitioner' AND"
                               " rtype = 'Practitioner' AND rid = 'd'"),
                     1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_date WHERE code = 'birthdate' AND lo = 0 AND"
                               " hi = 31535999999"),
                     1);
    /* a new version replaces the rows; a deletion drops them */
    json_object_object_del(p, "name");
    assert_int_equal(hv__search_index_put(db, "Patient", "x", p, 1), HV_OK);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str"), 0);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE code = 'gender'"), 1);
    assert_int_equal(hv__search_index_put(db, "Patient", "x", NULL, 1), HV_OK);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok"), 0);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_date"), 0);
    json_object_put(p);
    store_test_db_close(db);
}

/* Rows of one version are written in multi-row INSERTs of 32, 16 … 1 rows; exact
 * duplicates (a concept's text equal to its coding's display, a code twice) once. */
static void search_index_writes_each_distinct_row_once(void **state)
{
    hv_db_t *db = store_test_db();
    hv_buf_t b;
    struct json_object *o;
    (void)state;
    hv_buf_init(&b, 1 << 20);
    /* 45 distinct given names (32 + 8 + 4 + 1 rows under "given"), each twice. */
    hv_buf_puts(&b, "{\"resourceType\":\"Patient\",\"id\":\"many\",\"name\":[{\"given\":[");
    for (int i = 0; i < 90; i++)
        hv_buf_printf(&b, "%s\"g%02d\"", i ? "," : "", i % 45);
    hv_buf_puts(&b, "]}]}");
    o = json_tokener_parse(b.data);
    assert_non_null(o);
    assert_int_equal(hv__search_index_put(db, "Patient", "many", o, 0), HV_OK);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE code = 'given' AND id = 'many'"), 45);
    assert_int_equal(store_test_count(db, "SELECT COUNT(DISTINCT value) FROM sp_str WHERE code = 'given' AND id = 'many'"), 45);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE code = 'given' AND value = 'g44'"), 1);
    json_object_put(o);
    o = json_tokener_parse(
        "{\"resourceType\":\"Observation\",\"id\":\"o\",\"status\":\"final\",\"code\":{\"coding\":["
        "{\"system\":\"http://loinc.org\",\"code\":\"8867-4\",\"display\":\"Heart rate\"},"
        "{\"system\":\"http://loinc.org\",\"code\":\"8867-4\",\"display\":\"Heart rate\"}],\"text\":\"Heart rate\"}}");
    assert_non_null(o);
    assert_int_equal(hv__search_index_put(db, "Observation", "o", o, 0), HV_OK);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE id = 'o' AND code = 'code' AND value = '8867-4'"), 1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE id = 'o' AND code = 'code:text'"), 1);
    /* the same value under two parameters is two rows */
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE id = 'o' AND code = 'combo-code' AND"
                               " value = '8867-4'"),
                     1);
    json_object_put(o);
    hv_buf_release(&b);
    store_test_db_close(db);
}

/*
 * Expressions are specialized per resource type and skipped when the resource lacks
 * the top-level elements a plain path needs: a choice element (value[x]) still counts,
 * a primitive that has only its extension (_birthDate) is looked at, and an expression
 * that is not a plain path (deceased: "exists() and … != false") is always evaluated.
 */
static void search_index_specialized_expressions_index_the_same(void **state)
{
    hv_db_t *db = store_test_db();
    struct json_object *o = json_tokener_parse(
        "{\"resourceType\":\"Observation\",\"id\":\"q\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
        "\"subject\":{\"reference\":\"Patient/p1\"},\"effectiveDateTime\":\"2020-01-02\","
        "\"valueQuantity\":{\"value\":5,\"system\":\"http://unitsofmeasure.org\",\"code\":\"mg\"}}");
    struct json_object *p = json_tokener_parse("{\"resourceType\":\"Patient\",\"id\":\"p1\",\"gender\":\"female\"}");
    (void)state;
    assert_non_null(o);
    assert_non_null(p);
    assert_int_equal(hv__search_index_put(db, "Observation", "q", o, 0), HV_OK);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_num WHERE id = 'q' AND code = 'value-quantity' AND"
                               " value = 5"),
                     1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_date WHERE id = 'q' AND code = 'date'"), 1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_ref WHERE id = 'q' AND code = 'patient' AND rid = 'p1'"), 1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_ref WHERE id = 'q' AND code = 'subject' AND rid = 'p1'"), 1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE id = 'q' AND code = 'status' AND value = 'final'"),
                     1);
    /* no value[x] of type CodeableConcept, no component: nothing under those */
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE id = 'q' AND code = 'value-concept'"), 0);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE id = 'q' AND code = 'component-code'"), 0);
    assert_int_equal(hv__search_index_put(db, "Patient", "p1", p, 0), HV_OK);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE id = 'p1' AND code = 'deceased' AND"
                               " value = 'false'"),
                     1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE id = 'p1' AND code = 'gender'"), 1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_date WHERE id = 'p1'"), 0);
    json_object_put(o);
    json_object_put(p);
    store_test_db_close(db);
}

/* A composite parameter's group is written only when every component has a row, and its
 * components get no :text rows (no modifier applies to a composite): an Observation with
 * a coded code and a valueQuantity writes code-value-quantity's group but not
 * code-value-concept's, -date's or -string's; component-code-value-quantity writes the
 * component with a value and not the one without. */
static void search_index_writes_only_complete_composite_groups(void **state)
{
    hv_db_t *db = store_test_db();
    struct json_object *o = json_tokener_parse(
        "{\"resourceType\":\"Observation\",\"id\":\"cg\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":"
        "\"http://loinc.org\",\"code\":\"8867-4\",\"display\":\"Heart rate\"}],\"text\":\"hr\"},"
        "\"valueQuantity\":{\"value\":72,\"unit\":\"/min\"},"
        "\"component\":[{\"code\":{\"coding\":[{\"code\":\"a\"}]},\"valueQuantity\":{\"value\":120}},"
        "{\"code\":{\"coding\":[{\"code\":\"b\"}]}}]}");
    (void)state;
    assert_non_null(o);
    assert_int_equal(hv__search_index_put(db, "Observation", "cg", o, 0), HV_OK);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE code = 'code-value-quantity$0' AND grp = 1"
                               " AND value = '8867-4'"),
                     1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_num WHERE code = 'code-value-quantity$1' AND grp = 1"), 1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE code LIKE 'code-value-concept$%'"
                               " OR code LIKE 'code-value-date$%' OR code LIKE 'code-value-string$%'"),
                     0);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE code LIKE '%$_:%'"), 0);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE code = 'component-code-value-quantity$0'"
                               " AND value = 'a' AND grp = 1"),
                     1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE code = 'component-code-value-quantity$0'"
                               " AND value = 'b'"),
                     0);
    /* the plain rows are all there */
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE code = 'code:text'"), 2);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE code = 'component-code' AND value = 'b'"), 1);
    json_object_put(o);
    store_test_db_close(db);
}

/* Appends the one-column rows of each of the n queries to out, a line each. */
static void query_lines(hv_db_t *db, const char *const *q, size_t n, hv_buf_t *out)
{
    for (size_t i = 0; i < n; i++) {
        hv_db_stmt_t *st = NULL;
        int rc;
        assert_int_equal(hv_db_prepare(db, q[i], &st), HV_OK);
        while ((rc = hv_db_step(st)) == HV_DB_ROW) {
            size_t len = 0;
            const char *t = hv_db_column_text(st, 0, &len);
            hv_buf_append(out, t != NULL ? t : "", t != NULL ? len : 0);
            hv_buf_putc(out, '\n');
        }
        hv_db_done(st);
        assert_true(rc >= 0);
    }
}

/* Indexes res (id "s<seq>") into dbs[0] with a precheck on and into dbs[1] with it off
 * (enable switches it), and leaves it on. */
static void put_on_and_off(struct json_object *res, size_t seq, hv_db_t **dbs, void (*enable)(int on))
{
    const char *type = hv_json_get_str(res, "resourceType");
    char id[32];
    snprintf(id, sizeof(id), "s%zu", seq);
    enable(1);
    assert_int_equal(hv__search_index_put(dbs[0], type, id, res, 0), HV_OK);
    enable(0);
    assert_int_equal(hv__search_index_put(dbs[1], type, id, res, 0), HV_OK);
    enable(1);
}

/* The composite rows of db (code "<param>$<n>") in every search table, as one string. */
static void composite_rows(hv_db_t *db, hv_buf_t *out)
{
    static const char *const q[] = {
        "SELECT type || '/' || id || ' ' || code || ' ' || grp || ' ' || COALESCE(system, '') || '|' || "
        "COALESCE(value, '') FROM sp_tok WHERE code LIKE '%$%' ORDER BY 1",
        "SELECT type || '/' || id || ' ' || code || ' ' || grp || ' ' || value FROM sp_str WHERE code LIKE '%$%' "
        "ORDER BY 1",
        "SELECT type || '/' || id || ' ' || code || ' ' || grp || ' ' || lo || ' ' || hi FROM sp_date WHERE code "
        "LIKE '%$%' ORDER BY 1",
        "SELECT type || '/' || id || ' ' || code || ' ' || grp || ' ' || COALESCE(value, '') || ' ' || "
        "COALESCE(unit, '') FROM sp_num WHERE code LIKE '%$%' ORDER BY 1",
    };
    query_lines(db, q, sizeof(q) / sizeof(q[0]), out);
}

/* Commits and closes the two stores of an on/off comparison. */
static void close_on_and_off(hv_db_t **dbs)
{
    assert_int_equal(hv_db_commit(dbs[0]), HV_OK);
    assert_int_equal(hv_db_commit(dbs[1]), HV_OK);
    store_test_db_close(dbs[0]);
    store_test_db_close(dbs[1]);
}

/* Indexes one Synthea resource (id "s<seq>") with the composite precheck on into dbs[0] and
 * off into dbs[1]. */
static void put_both(struct json_object *res, size_t seq, void *ud)
{
    put_on_and_off(res, seq, ud, hv__search_composite_precheck_enable);
}

/* A composite one of whose components cannot match the resource's top-level elements is
 * skipped unevaluated (search_index.c components_may_match): the composite rows of every
 * Synthea resource, and of crafted Observations, must be those written with the check off. */
static void search_index_composite_precheck_keeps_every_row(void **state)
{
    hv_db_t *on = store_test_db(), *off = store_test_db();
    hv_db_t *dbs[2] = {on, off};
    hv_buf_t a, b;
    static const struct {
        const char *text;
    } crafted[] = {
        {"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"hr\"}}"},
        {"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"code\":\"x\"}]},"
         "\"valueQuantity\":{\"value\":1,\"unit\":\"mg\"}}"},
        {"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"code\":\"x\"}]},"
         "\"component\":[{\"code\":{\"coding\":[{\"code\":\"a\"}]},\"valueCodeableConcept\":{\"coding\":[{\"code\":"
         "\"b\"}]}},{\"code\":{\"coding\":[{\"code\":\"c\"}]},\"valueString\":\"s\"}]}"},
        {"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"code\":\"x\"}]},"
         "\"valueDateTime\":\"2020-01-02\"}"},
    };
    (void)state;
    hv_buf_init(&a, 0);
    hv_buf_init(&b, 0);
    assert_int_equal(hv_db_begin(on), HV_OK);
    assert_int_equal(hv_db_begin(off), HV_OK);
    for (size_t i = 0; i < sizeof(crafted) / sizeof(crafted[0]); i++) {
        struct json_object *o = json_tokener_parse(crafted[i].text);
        char id[32];
        snprintf(id, sizeof(id), "c%zu", i);
        hv__search_composite_precheck_enable(1);
        assert_int_equal(hv__search_index_put(on, "Observation", id, o, 0), HV_OK);
        hv__search_composite_precheck_enable(0);
        assert_int_equal(hv__search_index_put(off, "Observation", id, o, 0), HV_OK);
        json_object_put(o);
    }
    store_test_each_synthea_resource(put_both, dbs);
    hv__search_composite_precheck_enable(1);
    composite_rows(on, &a);
    composite_rows(off, &b);
    assert_true(b.len > 1000); /* Synthea's Observations have composite rows */
    assert_int_equal(hv_buf_putc(&a, '\0'), HV_OK);
    assert_int_equal(hv_buf_putc(&b, '\0'), HV_OK);
    assert_string_equal(a.data, b.data);
    hv_buf_release(&a);
    hv_buf_release(&b);
    close_on_and_off(dbs);
}

/* Every row of db's six search tables (all columns but the version's row id), as one string. */
static void all_rows(hv_db_t *db, hv_buf_t *out)
{
    static const char *const q[] = {
        "SELECT type || '/' || id || ' ' || code || ' ' || grp || ' ' || value || ' ' || COALESCE(raw, '') FROM sp_str "
        "ORDER BY 1",
        "SELECT type || '/' || id || ' ' || code || ' ' || grp || ' ' || COALESCE(system, '') || '|' || value FROM "
        "sp_tok ORDER BY 1",
        "SELECT type || '/' || id || ' ' || code || ' ' || grp || ' ' || COALESCE(rtype, '') || '/' || "
        "COALESCE(rid, '') FROM sp_ref ORDER BY 1",
        "SELECT type || '/' || id || ' ' || code || ' ' || grp || ' ' || lo || ' ' || hi FROM sp_date ORDER BY 1",
        "SELECT type || '/' || id || ' ' || code || ' ' || grp || ' ' || COALESCE(value, '') || ' ' || "
        "COALESCE(system, '') || ' ' || COALESCE(unit, '') || ' ' || COALESCE(cvalue, '') || ' ' || "
        "COALESCE(cunit, '') FROM sp_num ORDER BY 1",
        "SELECT type || '/' || id || ' ' || code || ' ' || grp || ' ' || value FROM sp_uri ORDER BY 1",
    };
    query_lines(db, q, sizeof(q) / sizeof(q[0]), out);
}

/* Indexes the crafted resources (ids s100000 on) and every Synthea resource with put into
 * dbs[0] and dbs[1], each in a transaction left open for the caller's own checks, and
 * asserts both hold the same rows. */
static void put_each_on_and_off(hv_db_t **dbs, const char *const *crafted, size_t n,
                                void (*put)(struct json_object *res, size_t seq, void *ud))
{
    hv_buf_t a, b;
    hv_buf_init(&a, 0);
    hv_buf_init(&b, 0);
    assert_int_equal(hv_db_begin(dbs[0]), HV_OK);
    assert_int_equal(hv_db_begin(dbs[1]), HV_OK);
    for (size_t i = 0; i < n; i++) {
        struct json_object *o = json_tokener_parse(crafted[i]);
        assert_non_null(o);
        put(o, 100000 + i, dbs);
        json_object_put(o);
    }
    store_test_each_synthea_resource(put, dbs);
    all_rows(dbs[0], &a);
    all_rows(dbs[1], &b);
    assert_true(b.len > 100000);
    assert_int_equal(hv_buf_putc(&a, '\0'), HV_OK);
    assert_int_equal(hv_buf_putc(&b, '\0'), HV_OK);
    assert_string_equal(a.data, b.data);
    hv_buf_release(&a);
    hv_buf_release(&b);
}

/* Indexes one resource (id "s<seq>") with the specialization precheck on into dbs[0] and
 * off into dbs[1]. */
static void put_both_spec(struct json_object *res, size_t seq, void *ud)
{
    put_on_and_off(res, seq, ud, hv__search_spec_precheck_enable);
}

/*
 * A parameter is skipped unevaluated when the resource lacks every top-level element its
 * specialized expression starts at; for "T.elem as X" on a choice element only the
 * variants elemY the filter keeps count (search_index.c choice_keys). Every row of every
 * Synthea resource, and of crafted resources holding each kind of choice variant (as a
 * value, as a primitive's extension only, in components), must be the rows written with
 * the check off.
 */
static void search_index_spec_precheck_keeps_every_row(void **state)
{
    hv_db_t *on = store_test_db(), *off = store_test_db();
    hv_db_t *dbs[2] = {on, off};
    static const char *const crafted[] = {
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"code\":\"x\"}]},"
        "\"valueQuantity\":{\"value\":1,\"unit\":\"mg\",\"system\":\"http://unitsofmeasure.org\",\"code\":\"mg\"}}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},"
        "\"valueCodeableConcept\":{\"coding\":[{\"system\":\"s\",\"code\":\"v\"}],\"text\":\"V\"}}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},\"valueString\":\"Some Text\"}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},"
        "\"_valueString\":{\"extension\":[{\"url\":\"u\",\"valueCode\":\"masked\"}]}}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},\"valueBoolean\":true}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},\"valueInteger\":7}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},"
        "\"valueRange\":{\"low\":{\"value\":1},\"high\":{\"value\":2}}}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},"
        "\"valueRatio\":{\"numerator\":{\"value\":1},\"denominator\":{\"value\":2}}}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},"
        "\"valueSampledData\":{\"origin\":{\"value\":0},\"period\":1,\"dimensions\":1,\"data\":\"1 2\"}}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},\"valueTime\":\"10:00:00\"}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"code\":\"d\"}]},"
        "\"valueDateTime\":\"2020-01-02T03:04:05Z\",\"effectiveInstant\":\"2020-01-02T03:04:05Z\"}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"code\":\"p\"}]},"
        "\"valuePeriod\":{\"start\":\"2020-01-01\",\"end\":\"2020-02-01\"},\"effectivePeriod\":{\"start\":\"2020\"}}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"code\":\"bp\"}]},"
        "\"component\":[{\"code\":{\"coding\":[{\"code\":\"a\"}]},\"valueQuantity\":{\"value\":120}},"
        "{\"code\":{\"coding\":[{\"code\":\"b\"}]},\"valueCodeableConcept\":{\"coding\":[{\"code\":\"z\"}]}},"
        "{\"code\":{\"coding\":[{\"code\":\"c\"}]},\"valueString\":\"s\"}]}",
        "{\"resourceType\":\"Condition\",\"subject\":{\"reference\":\"Patient/p\"},\"onsetAge\":{\"value\":40,"
        "\"system\":\"http://unitsofmeasure.org\",\"code\":\"a\"},\"abatementString\":\"later\"}",
        "{\"resourceType\":\"Condition\",\"subject\":{\"reference\":\"Patient/p\"},\"onsetPeriod\":{\"start\":\"2019\"},"
        "\"abatementDateTime\":\"2020-03\"}",
        "{\"resourceType\":\"Condition\",\"subject\":{\"reference\":\"Patient/p\"},\"onsetRange\":{\"low\":{\"value\":"
        "1}},\"abatementAge\":{\"value\":50}}",
        "{\"resourceType\":\"MedicationRequest\",\"status\":\"active\",\"intent\":\"order\",\"subject\":{\"reference\":"
        "\"Patient/p\"},\"medicationCodeableConcept\":{\"coding\":[{\"code\":\"m\"}]}}",
        "{\"resourceType\":\"MedicationRequest\",\"status\":\"active\",\"intent\":\"order\",\"subject\":{\"reference\":"
        "\"Patient/p\"},\"medicationReference\":{\"reference\":\"Medication/m\"}}",
        "{\"resourceType\":\"Patient\",\"deceasedDateTime\":\"2020-01-01\",\"multipleBirthInteger\":2}",
        "{\"resourceType\":\"Patient\",\"deceasedBoolean\":false}",
        "{\"resourceType\":\"RiskAssessment\",\"status\":\"final\",\"subject\":{\"reference\":\"Patient/p\"},"
        "\"occurrencePeriod\":{\"start\":\"2020\"}}",
        "{\"resourceType\":\"RiskAssessment\",\"status\":\"final\",\"subject\":{\"reference\":\"Patient/p\"},"
        "\"occurrenceDateTime\":\"2020-05\"}",
        "{\"resourceType\":\"Procedure\",\"status\":\"completed\",\"subject\":{\"reference\":\"Patient/p\"},"
        "\"performedString\":\"yesterday\"}",
        "{\"resourceType\":\"Immunization\",\"status\":\"completed\",\"vaccineCode\":{\"text\":\"v\"},\"patient\":"
        "{\"reference\":\"Patient/p\"},\"occurrenceString\":\"last spring\"}",
    };
    (void)state;
    put_each_on_and_off(dbs, crafted, sizeof(crafted) / sizeof(crafted[0]), put_both_spec);
    /* the crafted values are indexed (the check is not vacuous on them) */
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_str WHERE id = 's100002' AND code = 'value-string'"),
                     1);
    /* "(Observation.value as CodeableConcept).text": a precheck on valueCodeableConcept */
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_str WHERE id = 's100001' AND code = 'value-string' "
                                          "AND value = 'v'"),
                     1);
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_date WHERE id = 's100011' AND code = 'value-date'"),
                     1);
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_tok WHERE id = 's100012' AND "
                                          "code = 'component-code-value-concept$1' AND value = 'z'"),
                     1);
    close_on_and_off(dbs);
}

/* Indexes one resource (id "s<seq>") with the expressions specialized per type into dbs[0]
 * and the whole expressions evaluated into dbs[1]. */
static void put_both_specialized(struct json_object *res, size_t seq, void *ud)
{
    put_on_and_off(res, seq, ud, hv__search_specialize_enable);
}

/*
 * Specializing an expression per resource type changes no row. Most (parameter, type)
 * pairs select nothing on their type ("successor" names 146 types, "patient" names Patient
 * among its bases): those are kept as a list of types answering "nothing can match", not
 * as specs (search_index.c specialize_bases). Every row of every Synthea resource, and of
 * crafted resources of such types, must be the rows the whole expressions give.
 */
static void search_index_specializations_keep_every_row(void **state)
{
    hv_db_t *on = store_test_db(), *off = store_test_db();
    hv_db_t *dbs[2] = {on, off};
    static const char *const crafted[] = {
        "{\"resourceType\":\"Library\",\"status\":\"active\",\"type\":{\"text\":\"logic\"},"
        "\"relatedArtifact\":[{\"type\":\"depends-on\",\"resource\":\"http://x.org/Library/a\"},"
        "{\"type\":\"successor\",\"resource\":\"http://x.org/Library/b\"},"
        "{\"type\":\"composed-of\",\"resource\":\"http://x.org/Library/c\"}]}",
        "{\"resourceType\":\"Account\",\"status\":\"active\",\"name\":\"acct\","
        "\"subject\":[{\"reference\":\"Patient/p\"}],\"owner\":{\"reference\":\"Organization/o\"}}",
        "{\"resourceType\":\"Group\",\"type\":\"person\",\"actual\":true,"
        "\"member\":[{\"entity\":{\"reference\":\"Patient/p\"}}]}",
        "{\"resourceType\":\"Endpoint\",\"status\":\"active\",\"connectionType\":{\"code\":\"hl7-fhir-rest\"},"
        "\"payloadType\":[{\"text\":\"any\"}],\"address\":\"http://x.org/fhir\","
        "\"managingOrganization\":{\"reference\":\"Organization/o\"}}",
        "{\"resourceType\":\"Location\",\"name\":\"ward\",\"partOf\":{\"reference\":\"Location/l\"},"
        "\"position\":{\"latitude\":42.1,\"longitude\":-71.2}}",
        "{\"resourceType\":\"Questionnaire\",\"status\":\"active\",\"name\":\"q\","
        "\"derivedFrom\":[\"http://x.org/Questionnaire/base\"],\"item\":[{\"linkId\":\"1\",\"type\":\"string\"}]}",
        "{\"resourceType\":\"EpisodeOfCare\",\"status\":\"active\",\"patient\":{\"reference\":\"Patient/p\"},"
        "\"managingOrganization\":{\"reference\":\"Organization/o\"}}",
    };
    (void)state;
    put_each_on_and_off(dbs, crafted, sizeof(crafted) / sizeof(crafted[0]), put_both_specialized);
    /* the crafted values are indexed (the comparison is not vacuous on them) */
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_ref WHERE id = 's100000' AND code = 'successor'"), 1);
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_ref WHERE id = 's100001' AND code = 'patient'"), 1);
    /* pairs with nothing to select write nothing */
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_ref WHERE type = 'Account' AND code = 'successor'"), 0);
    close_on_and_off(dbs);
}

/* Indexes one resource (id "s<seq>") with "T.elem" parameters read directly into dbs[0]
 * and evaluated as FHIRPath into dbs[1]. */
static void put_both_direct(struct json_object *res, size_t seq, void *ud)
{
    put_on_and_off(res, seq, ud, hv__search_direct_enable);
}

/*
 * A parameter whose expression for the resource's type is "T.elem" alone is read from the
 * member instead of evaluated (search_index.c index_direct). Every row of every Synthea
 * resource, and of crafted resources with arrays holding nulls, primitives with their
 * "_elem" twin or with the twin alone, values of the wrong JSON type and empty members,
 * References filtered by "where(resolve() is X)", must be the rows the evaluation writes.
 */
static void search_index_direct_keeps_every_row(void **state)
{
    hv_db_t *on = store_test_db(), *off = store_test_db();
    hv_db_t *dbs[2] = {on, off};
    static const char *const crafted[] = {
        "{\"resourceType\":\"Patient\",\"identifier\":[null,{\"system\":\"s\",\"value\":\"v\"},{\"value\":\"w\","
        "\"type\":{\"coding\":[{\"system\":\"t\",\"code\":\"MR\"}],\"text\":\"Medical record\"}}],"
        "\"gender\":\"female\",\"_gender\":{\"extension\":[{\"url\":\"u\",\"valueString\":\"x\"}]},"
        "\"_birthDate\":{\"extension\":[{\"url\":\"u\",\"valueCode\":\"masked\"}]},\"active\":true}",
        "{\"resourceType\":\"Patient\",\"gender\":null,\"birthDate\":19700101,\"active\":\"yes\","
        "\"telecom\":[{\"system\":\"phone\",\"value\":\"555\"},null,{\"value\":\"556\"}],\"identifier\":[]}",
        "{\"resourceType\":\"Patient\",\"identifier\":{\"system\":\"s\",\"value\":\"single\"},"
        "\"name\":[{\"family\":\"Ab\",\"given\":[\"C\",null,\"D\"]}],\"address\":[{\"city\":\"E\"}],"
        "\"generalPractitioner\":[{\"reference\":\"Practitioner/1\"},{\"identifier\":{\"value\":\"n\"}}]}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":\"not an object\","
        "\"category\":[{\"coding\":[{\"system\":\"c\",\"code\":\"vital-signs\"}]},null],"
        "\"subject\":{\"reference\":\"Patient/p\"},\"encounter\":\"Encounter/e\",\"issued\":\"2020-01-02T03:04:05Z\"}",
        "{\"resourceType\":\"Encounter\",\"status\":\"finished\",\"class\":{\"code\":\"AMB\"},"
        "\"period\":{\"start\":\"2020-01-01\"},\"type\":[{\"text\":\"T\"}],\"_status\":{\"id\":\"s\"}}",
        "{\"resourceType\":\"Condition\",\"subject\":{\"reference\":\"Patient/p\"},\"code\":{},"
        "\"recordedDate\":\"2020-02\",\"category\":[]}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},\"meta\":{\"tag\":"
        "[{\"system\":\"t\",\"code\":\"x\"},null],\"profile\":[\"http://p/1\",null,\"http://p/2\"],\"_profile\":"
        "[null,{\"id\":\"q\"}],\"security\":{\"code\":\"R\"},\"source\":\"http://src\"}}",
        "{\"resourceType\":\"Patient\",\"meta\":[{\"tag\":[{\"code\":\"in an array\"}]}],\"link\":[{\"other\":"
        "{\"reference\":\"Patient/x\"},\"type\":\"seealso\"},{\"type\":\"refer\"}]}",
        "{\"resourceType\":\"Claim\",\"status\":\"active\",\"patient\":{\"reference\":\"Patient/p\"},\"item\":"
        "[{\"sequence\":1,\"udi\":[{\"reference\":\"Device/d\"}],\"detail\":[{\"sequence\":1,\"udi\":"
        "[{\"reference\":\"Device/e\"},null],\"subDetail\":[{\"sequence\":1,\"udi\":{\"reference\":"
        "\"Device/f\"}}]}]},null,{\"sequence\":2,\"detail\":{\"udi\":[{\"reference\":\"Device/g\"}]}}]}",
        /* "T.a.where(resolve() is X)": References of other types, absolute, without a reference
         * (read directly); with a "_reference" twin, a reference that is no string or a
         * Reference that is no object (evaluated) */
        "{\"resourceType\":\"Encounter\",\"status\":\"finished\",\"class\":{\"code\":\"AMB\"},\"subject\":"
        "{\"reference\":\"Patient/p\",\"identifier\":{\"value\":\"i\"}},\"participant\":[{\"individual\":"
        "{\"reference\":\"Practitioner/1\"}},{\"individual\":{\"reference\":\"RelatedPerson/2\"}},{\"individual\":"
        "{\"display\":\"no reference\"}},null,{\"individual\":{\"reference\":\"http://h/Practitioner/3\"}},"
        "{\"individual\":{\"reference\":\"Practitioner/4\"}}]}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},\"subject\":"
        "{\"reference\":\"Group/g\"}}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},\"subject\":"
        "{\"reference\":\"Patient/p\",\"_reference\":{\"extension\":[{\"url\":\"u\",\"valueString\":\"x\"}]}}}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},\"subject\":"
        "{\"_reference\":{\"id\":\"r\"}}}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},\"subject\":"
        "{\"reference\":7}}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},\"subject\":"
        "\"Patient/p\"}",
        /* a choice element read directly ("Observation.effective", date): each effective[x]
         * type, a twin alone, two variants (the model's first counts), a variant of the
         * wrong JSON type; with a type filter ("Observation.component.value as Quantity"):
         * components with a valueQuantity among others, null, a twin, an array */
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},"
        "\"effectiveDateTime\":\"2020-01-02T03:04:05+01:00\"}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},"
        "\"effectivePeriod\":{\"start\":\"2019-05\",\"end\":\"2019-06-01\"}}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},"
        "\"effectiveTiming\":{\"event\":[\"2018-01-01\",\"2018-02-01\"]}}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},"
        "\"effectiveInstant\":\"2017-03-04T05:06:07.891Z\"}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},"
        "\"_effectiveDateTime\":{\"extension\":[{\"url\":\"u\",\"valueCode\":\"masked\"}]}}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},"
        "\"effectivePeriod\":{\"start\":\"2016\"},\"effectiveDateTime\":\"2015-07\"}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},"
        "\"effectiveDateTime\":[\"2014\",null,\"2013\"],\"valueQuantity\":[{\"value\":1},{\"value\":2}]}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},"
        "\"effectiveDateTime\":20200101,\"valueQuantity\":\"5 mg\"}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"code\":\"bp\"}]},"
        "\"component\":[{\"code\":{\"text\":\"a\"},\"valueQuantity\":{\"value\":120,\"unit\":\"mmHg\","
        "\"system\":\"http://unitsofmeasure.org\",\"code\":\"mm[Hg]\"}},null,{\"code\":{\"text\":\"b\"},"
        "\"valueString\":\"s\",\"valueQuantity\":{\"value\":9}},{\"code\":{\"text\":\"c\"},\"_valueQuantity\":"
        "{\"id\":\"q\"}},{\"code\":{\"text\":\"d\"},\"valueQuantity\":[{\"value\":80},{\"value\":81}]},"
        "{\"code\":{\"text\":\"e\"},\"valueQuantity\":{\"value\":120,\"unit\":\"mmHg\"}}]}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},"
        "\"component\":{\"code\":{\"text\":\"a\"},\"valueQuantity\":{\"value\":3,\"unit\":\"g\"}}}",
        /* "(MedicationRequest.medication as CodeableConcept)": kept, dropped (a Reference) */
        "{\"resourceType\":\"MedicationRequest\",\"status\":\"active\",\"intent\":\"order\",\"subject\":"
        "{\"reference\":\"Patient/p\"},\"medicationCodeableConcept\":{\"coding\":[{\"system\":\"r\",\"code\":\"m\"}]}}",
        "{\"resourceType\":\"MedicationRequest\",\"status\":\"active\",\"intent\":\"order\",\"subject\":"
        "{\"reference\":\"Patient/p\"},\"medicationReference\":{\"reference\":\"Medication/m\"}}",
        /* "(RiskAssessment.occurrence as dateTime)": a Period would give a date row unfiltered */
        "{\"resourceType\":\"RiskAssessment\",\"status\":\"final\",\"subject\":{\"reference\":\"Patient/p\"},"
        "\"occurrenceDateTime\":\"2020-05\"}",
        "{\"resourceType\":\"RiskAssessment\",\"status\":\"final\",\"subject\":{\"reference\":\"Patient/p\"},"
        "\"occurrencePeriod\":{\"start\":\"2020\"}}",
        /* "(Observation.value as CodeableConcept)" with two variants: the model's first,
         * valueQuantity, is the value, and the filter drops it */
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},\"valueQuantity\":"
        "{\"value\":1,\"system\":\"http://unitsofmeasure.org\",\"code\":\"mg\"},\"valueCodeableConcept\":"
        "{\"coding\":[{\"system\":\"s\",\"code\":\"z\"}]}}",
        /* "(ConceptMap.source as canonical)": sourceUri, the model's first, is the value */
        "{\"resourceType\":\"ConceptMap\",\"status\":\"draft\",\"sourceUri\":\"http://a/vs\","
        "\"sourceCanonical\":\"http://b/vs\",\"targetCanonical\":\"http://c/vs\"}",
        /* a variant that is JSON null is none: effectivePeriod is the value */
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},"
        "\"effectiveDateTime\":null,\"_effectiveDateTime\":null,\"effectivePeriod\":{\"start\":\"2012\"}}",
        /* unions of direct alternatives ("(Observation.value as Quantity) | (Observation.value
         * as SampledData)", combo-code, combo-value-quantity): one item in all read directly,
         * more evaluated — 1 g and 1000 mg, equal through UCUM, which '|' merges */
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":\"l\",\"code\":"
        "\"u1\"}]},\"valueQuantity\":{\"value\":4.5,\"unit\":\"mmol/L\",\"system\":\"http://unitsofmeasure.org\","
        "\"code\":\"mmol/L\"}}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},\"valueSampledData\":"
        "{\"origin\":{\"value\":0},\"period\":1,\"dimensions\":1,\"data\":\"1\"}}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"c\"},\"valueQuantity\":"
        "{\"value\":1,\"system\":\"http://unitsofmeasure.org\",\"code\":\"g\"},\"component\":[{\"code\":"
        "{\"text\":\"c\"},\"valueQuantity\":{\"value\":1000,\"system\":\"http://unitsofmeasure.org\","
        "\"code\":\"mg\"}}]}",
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"code\":\"x\"}]},"
        "\"component\":[{\"code\":{\"coding\":[{\"code\":\"x\"}]}}]}",
    };
    (void)state;
    put_each_on_and_off(dbs, crafted, sizeof(crafted) / sizeof(crafted[0]), put_both_direct);
    /* a choice read directly: an Observation's date from effectiveDateTime, effectivePeriod
     * and effectiveInstant (a Timing gives no date row, read or evaluated), and the
     * components' quantities */
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_date WHERE id IN ('s100015', 's100016', "
                                          "'s100018') AND code = 'date'"),
                     3);
    assert_true(store_test_count(on, "SELECT COUNT(*) FROM sp_num WHERE id = 's100023' AND "
                                     "code = 'component-value-quantity'") >= 4);
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_tok WHERE id = 's100025' AND code = 'code' AND "
                                          "value = 'm'"),
                     1);
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_tok WHERE id = 's100026' AND code = 'code'"), 0);
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_date WHERE id = 's100027' AND code = 'date'"), 1);
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_date WHERE id = 's100028' AND code = 'date'"), 0);
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_tok WHERE id = 's100029' AND "
                                          "code = 'value-concept'"),
                     0);
    assert_int_equal(store_test_count(on, "SELECT (SELECT COUNT(*) FROM sp_ref WHERE id = 's100030' AND "
                                          "code = 'source') + (SELECT COUNT(*) FROM sp_uri WHERE "
                                          "id = 's100030' AND code = 'source')"),
                     0);
    assert_int_equal(store_test_count(on, "SELECT (SELECT COUNT(*) FROM sp_ref WHERE id = 's100030' AND "
                                          "code = 'target') + (SELECT COUNT(*) FROM sp_uri WHERE "
                                          "id = 's100030' AND code = 'target')"),
                     1);
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_date WHERE id = 's100031' AND code = 'date'"), 1);
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_num WHERE id = 's100032' AND "
                                          "code = 'value-quantity'"),
                     1);
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_num WHERE id = 's100032' AND "
                                          "code = 'combo-value-quantity'"),
                     1);
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_tok WHERE id = 's100032' AND code = 'combo-code'"),
                     1);
    /* read directly: an identifier after a null, its :of-type, a telecom after a null */
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_tok WHERE id = 's100000' AND code = 'identifier' "
                                          "AND value = 'v'"),
                     1);
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_tok WHERE id = 's100000' AND "
                                          "code = 'identifier:of-type' AND value = 'MR|w'"),
                     1);
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_tok WHERE id = 's100001' AND code = 'telecom'"), 2);
    /* two steps from Resource on an Observation (_profile), three from Claim (detail-udi) */
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_uri WHERE id = 's100006' AND code = '_profile'"),
                     2);
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_ref WHERE id = 's100008' AND code = 'detail-udi'"),
                     2);
    /* where(resolve() is X) read directly: the Practitioners only, a Patient's :identifier */
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_ref WHERE id = 's100009' AND code = 'practitioner'"),
                     2);
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_tok WHERE id = 's100009' AND "
                                          "code = 'patient:identifier' AND value = 'i'"),
                     1);
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_ref WHERE id = 's100010' AND code = 'patient'"), 0);
    assert_int_equal(store_test_count(on, "SELECT COUNT(*) FROM sp_ref WHERE id = 's100011' AND code = 'patient'"), 1);
    close_on_and_off(dbs);
}

/* Deletes the members named "drop..." of every object of o (the table keeps a freed slot in
 * the place of each). */
static void drop_members(struct json_object *o)
{
    if (json_object_is_type(o, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(o); i++)
            drop_members(json_object_array_get_idx(o, i));
    } else if (json_object_is_type(o, json_type_object)) {
        char drop[64][8];
        size_t n = 0;
        json_object_object_foreach(o, k, v)
        {
            if (strncmp(k, "drop", 4) == 0 && n < HV_ARRAY_LEN(drop) && strlen(k) < sizeof(drop[0]))
                strcpy(drop[n++], k);
            else
                drop_members(v);
        }
        for (size_t i = 0; i < n; i++)
            json_object_object_del(o, drop[i]);
    }
}

/* Indexes one resource (id "s<seq>") as the FHIR reader makes it (keys the model's own
 * strings) into dbs[0], and as json-c's tokener makes it (keys copied) into dbs[1]; the
 * members "drop..." deleted from both first. */
static void put_both_readers(struct json_object *res, size_t seq, void *ud)
{
    hv_db_t **dbs = ud;
    hv_fhir_parse_opts_t opts = {0, 0, HV_FHIR_PARSE_LENIENT};
    const char *text = json_object_to_json_string_ext(res, JSON_C_TO_STRING_PLAIN);
    const char *type = hv_json_get_str(res, "resourceType");
    struct json_object *read = NULL;
    hv_error_t err;
    char id[32];
    memset(&err, 0, sizeof(err));
    assert_int_equal(hv_fhir_json_parse(text, strlen(text), &opts, &read, &err), HV_OK);
    drop_members(read);
    drop_members(res);
    snprintf(id, sizeof(id), "s%zu", seq);
    assert_int_equal(hv__search_index_put(dbs[0], type, id, read, 0), HV_OK);
    assert_int_equal(hv__search_index_put(dbs[1], type, id, res, 0), HV_OK);
    json_object_put(read);
}

/*
 * The index reads members by their hash under json-c's string hash (search_index.c
 * member_get): the same rows whether the keys are the model's strings or copies, in objects
 * past 16 members (a table grown to 32 slots and more) from which members were deleted (freed
 * slots), for every Synthea resource and crafted ones.
 */
static void search_index_rows_same_from_either_reader(void **state)
{
    hv_db_t *a = store_test_db(), *b = store_test_db();
    hv_db_t *dbs[2] = {a, b};
    char big[4096], wide[4096];
    size_t n = 0, m = 0;
    /* A Coding and a Reference of 40 members, the indexed ones last, all others deleted. */
    n += (size_t)snprintf(big + n, sizeof(big) - n, "{\"resourceType\":\"Observation\",\"status\":\"final\","
                                                    "\"code\":{\"coding\":[{\"drop\":1");
    m += (size_t)snprintf(wide + m, sizeof(wide) - m, "{\"resourceType\":\"Observation\",\"status\":\"final\","
                                                      "\"code\":{\"text\":\"t\"},\"subject\":{\"drop\":1");
    for (int i = 0; i < 37; i++) {
        n += (size_t)snprintf(big + n, sizeof(big) - n, ",\"drop%02d\":%d", i, i);
        m += (size_t)snprintf(wide + m, sizeof(wide) - m, ",\"drop%02d\":%d", i, i);
    }
    snprintf(big + n, sizeof(big) - n, ",\"system\":\"http://s\",\"code\":\"c40\"}]}}");
    snprintf(wide + m, sizeof(wide) - m, ",\"reference\":\"Patient/p40\",\"identifier\":{\"system\":\"s\","
                                         "\"value\":\"v\"}}}");
    const char *const crafted[] = {
        big,
        wide,
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":\"s\",\"code\":"
        "\"c\",\"drop\":1}]},\"subject\":{\"_reference\":{\"extension\":[{\"url\":\"u\",\"valueString\":\"x\"}]},"
        "\"reference\":\"Patient/p\"},\"valueQuantity\":{\"drop\":1,\"value\":1.5,\"unit\":\"mg\",\"system\":"
        "\"http://unitsofmeasure.org\",\"code\":\"mg\"},\"effectivePeriod\":{\"start\":\"2020\",\"end\":\"2021\"}}",
        "{\"resourceType\":\"Patient\",\"drop\":1,\"identifier\":[{\"system\":\"s\",\"value\":\"v\",\"type\":{"
        "\"coding\":[{\"system\":\"t\",\"code\":\"MR\"}],\"text\":\"mr\"}}],\"telecom\":[{\"system\":\"phone\","
        "\"value\":\"1\"}],\"gender\":\"female\",\"_gender\":{\"extension\":[{\"url\":\"u\",\"valueCode\":\"x\"}]}}",
    };
    (void)state;
    put_each_on_and_off(dbs, crafted, sizeof(crafted) / sizeof(crafted[0]), put_both_readers);
    /* the members after the 16th are found, in both stores */
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(store_test_count(dbs[i], "SELECT COUNT(*) FROM sp_tok WHERE id = 's100000' AND "
                                                  "code = 'code' AND value = 'c40'"),
                         1);
        assert_int_equal(store_test_count(dbs[i], "SELECT COUNT(*) FROM sp_ref WHERE id = 's100001' AND "
                                                  "code = 'subject' AND rid = 'p40'"),
                         1);
    }
    close_on_and_off(dbs);
}

/*
 * Patient's, Person's, Practitioner's and RelatedPerson's phonetic (individual-phonetic)
 * writes no rows: its rows would equal name's (fhir/search_index.c, row_alias). With the
 * alias off, both parameters' rows are computed from the model's expressions and must be
 * the same set for every kind of HumanName part; with it on, no phonetic rows are written
 * on those types, Organization keeps its own (its name adds the aliases), and the
 * migration deletes the rows written before.
 */
static void search_index_phonetic_rows_equal_name_rows(void **state)
{
    static const char *const types[] = {"Patient", "Person", "Practitioner", "RelatedPerson"};
    static const char name[] = "\"name\":[{\"use\":\"official\",\"text\":\"Dr. Ünal Ayşe-Marie Ng Jr\","
                               "\"family\":\"Ünal\",\"given\":[\"Ayşe\",\"Marie\"],\"prefix\":[\"Dr.\"],"
                               "\"suffix\":[\"Jr\"]},{\"family\":\"Ng\",\"period\":{\"start\":\"2001\"}}]";
    hv_db_t *db = store_test_db();
    char j[512];
    (void)state;
    hv__search_row_alias_enable(0);
    for (size_t i = 0; i < HV_ARRAY_LEN(types); i++) {
        struct json_object *o;
        char id[8];
        snprintf(id, sizeof(id), "a%zu", i);
        snprintf(j, sizeof(j), "{\"resourceType\":\"%s\",\"id\":\"%s\",%s}", types[i], id, name);
        o = json_tokener_parse(j);
        assert_non_null(o);
        assert_int_equal(hv__search_index_put(db, types[i], id, o, 0), HV_OK);
        json_object_put(o);
    }
    hv__search_row_alias_enable(1);
    /* 7 distinct values per resource (text, family x2, given x2, prefix, suffix) */
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE code = 'phonetic'"), 4 * 7);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM (SELECT type, id, value, raw, grp FROM sp_str WHERE"
                                          " code = 'phonetic' EXCEPT SELECT type, id, value, raw, grp FROM sp_str"
                                          " WHERE code = 'name')"),
                     0);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM (SELECT type, id, value, raw, grp FROM sp_str WHERE"
                                          " code = 'name' EXCEPT SELECT type, id, value, raw, grp FROM sp_str"
                                          " WHERE code = 'phonetic')"),
                     0);
    {
        struct json_object *o = json_tokener_parse(
            "{\"resourceType\":\"Organization\",\"id\":\"org\",\"name\":\"Meyer Clinic\",\"alias\":[\"Anna\"]}");
        assert_non_null(o);
        assert_int_equal(hv__search_index_put(db, "Organization", "org", o, 0), HV_OK);
        json_object_put(o);
    }
    /* the migration drops the four types' phonetic rows and keeps Organization's */
    assert_int_equal(hv_db_exec(db, hv__search_migration_row_alias), HV_OK);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE code = 'phonetic' AND type <> 'Organization'"),
                     0);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE code = 'phonetic' AND id = 'org'"), 1);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE code = 'name' AND id = 'org'"), 2);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE code = 'name'"), 4 * 7 + 2);
    /* with the alias on, a new version writes name's rows and no phonetic rows */
    {
        struct json_object *o;
        snprintf(j, sizeof(j), "{\"resourceType\":\"Patient\",\"id\":\"a0\",%s}", name);
        o = json_tokener_parse(j);
        assert_non_null(o);
        assert_int_equal(hv__search_index_put(db, "Patient", "a0", o, 1), HV_OK);
        json_object_put(o);
    }
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE id = 'a0' AND code = 'name'"), 7);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_str WHERE id = 'a0' AND code = 'phonetic'"), 0);
    assert_string_equal(hv__search_row_code(hv_fhir_resource_type("Patient"), "phonetic"), "name");
    assert_string_equal(hv__search_row_code(hv_fhir_resource_type("Organization"), "phonetic"), "phonetic");
    assert_string_equal(hv__search_row_code(hv_fhir_resource_type("Patient"), "family"), "family");
    store_test_db_close(db);
}

/* A Group of n members (Patient/p0 ... p<n-1>) as JSON in b. */
static void group_of(hv_buf_t *b, const char *id, int n)
{
    b->len = 0;
    hv_buf_printf(b, "{\"resourceType\":\"Group\",\"id\":\"%s\",\"type\":\"person\",\"actual\":true,\"member\":[", id);
    for (int i = 0; i < n; i++)
        hv_buf_printf(b, "%s{\"entity\":{\"reference\":\"Patient/p%d\"}}", i ? "," : "", i);
    hv_buf_puts(b, "]}");
}

/* An Observation "id" with n components k0..k(n-1), each with a quantity: n groups of
 * component-code-value-quantity. */
static void components_of(hv_buf_t *b, const char *id, int n)
{
    b->len = 0;
    hv_buf_printf(b, "{\"resourceType\":\"Observation\",\"id\":\"%s\",\"status\":\"final\",\"code\":{\"coding\":"
                     "[{\"code\":\"panel\"}]},\"component\":[",
                  id);
    for (int i = 0; i < n; i++)
        hv_buf_printf(b, "%s{\"code\":{\"coding\":[{\"code\":\"k%d\"}]},\"valueQuantity\":{\"value\":%d}}",
                      i ? "," : "", i, i);
    hv_buf_puts(b, "]}");
}

/*
 * Every value of a parameter is indexed, past the 64 of earlier writers (a Group's 100th
 * member; a composite's 30th element, past the 16 groups of earlier writers), up to the
 * hard limit of 10,000 values per parameter: one more and the resource is refused
 * (HV_ETOOBIG, with the refusal naming the parameter and the limit) and nothing of it is
 * indexed. A composite past 1,000 elements is refused the same way.
 */
static void search_index_writes_every_value_and_refuses_past_the_limit(void **state)
{
    hv_db_t *db = store_test_db();
    hv__search_rows_t *rows = NULL;
    hv_buf_t b;
    struct json_object *o;
    (void)state;
    hv_buf_init(&b, 0);
    group_of(&b, "g100", 100);
    o = json_tokener_parse(b.data);
    assert_non_null(o);
    assert_int_equal(hv__search_index_put(db, "Group", "g100", o, 0), HV_OK);
    json_object_put(o);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_ref WHERE id = 'g100' AND code = 'member'"), 100);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_ref WHERE id = 'g100' AND code = 'member' AND"
                                          " rid = 'p99'"), 1);
    /* 30 components, each its own group of component-code-value-quantity */
    components_of(&b, "c30", 30);
    o = json_tokener_parse(b.data);
    assert_non_null(o);
    assert_int_equal(hv__search_index_put(db, "Observation", "c30", o, 0), HV_OK);
    json_object_put(o);
    assert_int_equal(store_test_count(db, "SELECT COUNT(DISTINCT grp) FROM sp_tok WHERE id = 'c30' AND"
                                          " code = 'component-code-value-quantity$0'"), 30);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_tok WHERE id = 'c30' AND code = 'component-code'"),
                     30);
    /* the limit itself is indexed; one more is refused, with a word, and writes nothing */
    group_of(&b, "g10000", 10000);
    o = json_tokener_parse(b.data);
    assert_non_null(o);
    assert_int_equal(hv__search_index_put(db, "Group", "g10000", o, 0), HV_OK);
    json_object_put(o);
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_ref WHERE id = 'g10000' AND code = 'member'"),
                     10000);
    group_of(&b, "g10001", 10001);
    o = json_tokener_parse(b.data);
    assert_non_null(o);
    hv__search_refusal_clear();
    assert_int_equal(hv__search_index_rows("Group", o, &rows), HV_ETOOBIG);
    assert_null(rows);
    assert_non_null(strstr(hv__search_refusal(), "'member' of Group would index more than 10000 values"));
    hv__search_refusal_clear();
    assert_int_equal(hv__search_index_put(db, "Group", "g10001", o, 0), HV_ETOOBIG);
    assert_non_null(strstr(hv__search_refusal(), "'member'"));
    assert_int_equal(store_test_count(db, "SELECT COUNT(*) FROM sp_ref WHERE id = 'g10001'"), 0);
    json_object_put(o);
    /* a composite past its 1,000 elements: refused, naming the composite */
    components_of(&b, "c1001", 1001);
    o = json_tokener_parse(b.data);
    assert_non_null(o);
    hv__search_refusal_clear();
    assert_int_equal(hv__search_index_rows("Observation", o, &rows), HV_ETOOBIG);
    assert_non_null(strstr(hv__search_refusal(), "composite search parameter '"));
    assert_non_null(strstr(hv__search_refusal(), "more than 1000 elements"));
    json_object_put(o);
    hv_buf_release(&b);
    store_test_db_close(db);
}

/* Every row of db's six search tables with every column, the version's row id too, as one
 * string. */
static void all_rows_with_rid(hv_db_t *db, hv_buf_t *out)
{
    static const char *const q[] = {
        "SELECT type || '/' || id || ' ' || COALESCE(rid, '-') || ' ' || code || ' ' || grp || ' ' || value || ' ' || "
        "COALESCE(raw, '') FROM sp_str ORDER BY 1",
        "SELECT type || '/' || id || ' ' || COALESCE(rid, '-') || ' ' || code || ' ' || grp || ' ' || "
        "COALESCE(system, '') || '|' || value FROM sp_tok ORDER BY 1",
        "SELECT type || '/' || id || ' ' || code || ' ' || grp || ' ' || COALESCE(rtype, '') || '/' || "
        "COALESCE(rid, '') FROM sp_ref ORDER BY 1",
        "SELECT type || '/' || id || ' ' || code || ' ' || grp || ' ' || lo || ' ' || hi FROM sp_date ORDER BY 1",
        "SELECT type || '/' || id || ' ' || code || ' ' || grp || ' ' || COALESCE(value, '') || ' ' || "
        "COALESCE(system, '') || ' ' || COALESCE(unit, '') || ' ' || COALESCE(cvalue, '') || ' ' || "
        "COALESCE(cunit, '') FROM sp_num ORDER BY 1",
        "SELECT type || '/' || id || ' ' || code || ' ' || grp || ' ' || value FROM sp_uri ORDER BY 1",
    };
    query_lines(db, q, sizeof(q) / sizeof(q[0]), out);
}

#define BATCH_OF 7 /* versions per flush: most tables get rows of several of them */

typedef struct batch_case {
    hv_db_t *alone, *batched;
    hv__search_batch_t batch;
    hv__search_rows_t *rows[BATCH_OF]; /* the batch's rows, freed after its flush */
    char type[BATCH_OF][64], id[BATCH_OF][32]; /* borrowed by the batch until its flush */
    size_t n, flushes;
} batch_case_t;

static void flush_case(batch_case_t *c)
{
    assert_int_equal(hv__search_batch_flush(c->batched, &c->batch), HV_OK);
    for (size_t i = 0; i < c->n; i++)
        hv__search_rows_free(c->rows[i]);
    c->n = 0;
    c->flushes++;
}

/* Writes res's rows computed ahead as version row id seq + 1 into c->alone at once and
 * into c->batched through the batch, flushed every BATCH_OF versions. */
static void put_alone_and_batched(struct json_object *res, size_t seq, void *ud)
{
    batch_case_t *c = ud;
    hv__search_rows_t *rows = NULL;
    snprintf(c->type[c->n], sizeof(c->type[0]), "%s", hv_json_get_str(res, "resourceType"));
    snprintf(c->id[c->n], sizeof(c->id[0]), "s%zu", seq);
    assert_int_equal(hv__search_index_rows(c->type[c->n], res, &rows), HV_OK);
    assert_int_equal(hv__search_index_put_pre(c->alone, c->type[c->n], c->id[c->n], res, 0, rows, (int64_t)seq + 1),
                     HV_OK);
    hv__search_rows_join(rows, &c->batch);
    assert_int_equal(hv__search_index_put_pre(c->batched, c->type[c->n], c->id[c->n], res, 0, rows, (int64_t)seq + 1),
                     HV_OK);
    hv__search_rows_join(rows, NULL);
    c->rows[c->n++] = rows;
    if (c->n == BATCH_OF)
        flush_case(c);
}

/*
 * A transaction's first versions write their index rows together (hv__search_batch_flush:
 * one INSERT per table for the rows of several versions, each row binding its own type, id
 * and row id). Every Synthea resource written through batches of seven must leave exactly
 * the rows, row ids included, that writing each alone leaves; a batch's rows are not in the
 * tables before its flush, and an empty batch flushes as a no-op.
 */
static void search_batch_writes_the_rows_each_version_writes_alone(void **state)
{
    batch_case_t c;
    hv_buf_t a, b;
    char q[256];
    (void)state;
    memset(&c, 0, sizeof(c));
    c.alone = store_test_db();
    c.batched = store_test_db();
    hv_buf_init(&a, 0);
    hv_buf_init(&b, 0);
    assert_int_equal(hv_db_begin(c.alone), HV_OK);
    assert_int_equal(hv_db_begin(c.batched), HV_OK);
    assert_int_equal(hv__search_batch_flush(c.batched, &c.batch), HV_OK);
    assert_true(store_test_each_synthea_resource(put_alone_and_batched, &c) > 3000);
    /* the last, partial batch's rows wait for its flush */
    assert_true(c.n > 0 && c.flushes > 0);
    snprintf(q, sizeof(q),
             "SELECT (SELECT COUNT(*) FROM sp_str WHERE id = '%s') + (SELECT COUNT(*) FROM sp_tok WHERE id = '%s')",
             c.id[0], c.id[0]);
    assert_true(store_test_count(c.alone, q) > 0);
    assert_int_equal(store_test_count(c.batched, q), 0);
    flush_case(&c);
    assert_true(store_test_count(c.batched, q) > 0);
    all_rows_with_rid(c.alone, &a);
    all_rows_with_rid(c.batched, &b);
    assert_true(a.len > 100000);
    assert_int_equal(hv_buf_putc(&a, '\0'), HV_OK);
    assert_int_equal(hv_buf_putc(&b, '\0'), HV_OK);
    assert_string_equal(a.data, b.data);
    hv_buf_release(&a);
    hv_buf_release(&b);
    hv__search_batch_clear(&c.batch);
    assert_int_equal(hv_db_commit(c.alone), HV_OK);
    assert_int_equal(hv_db_commit(c.batched), HV_OK);
    store_test_db_close(c.alone);
    store_test_db_close(c.batched);
}

int run_search_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(search_date_range_covers_the_precision),
        cmocka_unit_test(search_prefix_reads_the_nine_prefixes),
        cmocka_unit_test(search_normalize_folds_case_and_accents),
        cmocka_unit_test(search_index_rows_follow_the_current_version),
        cmocka_unit_test(search_index_writes_each_distinct_row_once),
        cmocka_unit_test(search_index_writes_every_value_and_refuses_past_the_limit),
        cmocka_unit_test(search_index_specialized_expressions_index_the_same),
        cmocka_unit_test(search_index_writes_only_complete_composite_groups),
        cmocka_unit_test(search_index_composite_precheck_keeps_every_row),
        cmocka_unit_test(search_index_spec_precheck_keeps_every_row),
        cmocka_unit_test(search_index_specializations_keep_every_row),
        cmocka_unit_test(search_index_direct_keeps_every_row),
        cmocka_unit_test(search_index_rows_same_from_either_reader),
        cmocka_unit_test(search_index_phonetic_rows_equal_name_rows),
        cmocka_unit_test(search_batch_writes_the_rows_each_version_writes_alone),
    };
    return cmocka_run_group_tests_name("fhir_search", tests, NULL, NULL);
}
