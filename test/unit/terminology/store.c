/*
 * store.c — unit tests of terminology/store.c, csv.c and the loaders (load_*.c) on
 * the fixtures in test/data/terminology, against a SQLite store in a temporary folder.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests.h"
#include "terminology/terminology.h"
#include "terminology/terminology_int.h"

typedef struct fixture {
    char dir[64];
    hv_db_t *db;
    hv_arena_t *arena;
} fixture_t;

static const char *data_path(const char *name) {
    static char path[4096];
    const char *src = getenv("HV_SRCDIR");
    snprintf(path, sizeof path, "%s/test/data/terminology/%s", src != NULL ? src : ".", name);
    return path;
}

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof *f);
    if (f == NULL) return -1;
    if (test_store_open(f->dir, sizeof f->dir, &f->db) != 0) return -1;
    f->arena = hv_arena_new(0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    test_store_close(f->dir, f->db);
    hv_arena_free(f->arena);
    free(f);
    return 0;
}

static const char *temp_text(fixture_t *f, const char *name, const char *text) {
    static char path[256];
    FILE *fp;
    snprintf(path, sizeof path, "%s/%s", f->dir, name);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    return path;
}

static void load_ok(fixture_t *f, const char *kind, const char *path) {
    hv_error_t err;
    hv_error_clear(&err);
    if (hv_terminology_load(f->db, kind, path, NULL, NULL, &err) != HV_OK)
        fail_msg("load %s %s: %s (%s)", kind, path, err.message, err.location);
}

static int64_t count_of(fixture_t *f, const char *system) {
    int64_t n = -1;
    const char *v;
    if (hv_terminology_version(f->db, system, f->arena, &v, &n) != HV_OK) return -1;
    return n;
}

static void terminology_csv_reads_rfc4180_quotes_and_line_breaks(void **state) {
    fixture_t *f = *state;
    hv__csv_t *c = NULL;
    hv_error_t err;
    char **fl;
    size_t n;
    const char *p = temp_text(f, "q.csv", "a,\"b,1\",\"say \"\"hi\"\"\"\r\n\"multi\nline\",,x\n");
    assert_int_equal(hv__csv_open(p, ',', 1, &c, &err), HV_OK);
    assert_int_equal(hv__csv_next(c, &fl, &n, &err), HV_OK);
    assert_int_equal(n, 3);
    assert_string_equal(fl[0], "a");
    assert_string_equal(fl[1], "b,1");
    assert_string_equal(fl[2], "say \"hi\"");
    assert_int_equal(hv__csv_next(c, &fl, &n, &err), HV_OK);
    assert_int_equal(n, 3);
    assert_string_equal(fl[0], "multi\nline");
    assert_string_equal(fl[1], "");
    assert_int_equal(hv__csv_line(c), 2);
    assert_int_equal(hv__csv_next(c, &fl, &n, &err), HV_ENOTFOUND);
    hv__csv_close(c);
    p = temp_text(f, "bad.csv", "a,\"open\n");
    assert_int_equal(hv__csv_open(p, ',', 1, &c, &err), HV_OK);
    assert_int_equal(hv__csv_next(c, &fl, &n, &err), HV_EPROTO);
    assert_non_null(strstr(err.message, "not closed"));
    hv__csv_close(c);
}

/* A row may have up to 256 fields; the 257th is refused with the line, not written past
 * the reader's field table (found by fuzz_terminology_csv under UBSan). */
static void terminology_csv_takes_256_fields_and_refuses_257(void **state) {
    hv__csv_t *c = NULL;
    hv_error_t err;
    hv_buf_t text;
    char **fl;
    size_t n, i;
    (void)state;
    hv_buf_init(&text, 0);
    for (i = 0; i < 255; i++) hv_buf_puts(&text, "x\t");
    hv_buf_puts(&text, "last\n");
    for (i = 0; i < 256; i++) hv_buf_putc(&text, '\t');
    hv_buf_putc(&text, '\n');
    assert_int_equal(hv__csv_open_mem(text.data, text.len, '\t', 0, &c), HV_OK);
    assert_int_equal(hv__csv_next(c, &fl, &n, &err), HV_OK);
    assert_int_equal(n, 256);
    assert_string_equal(fl[0], "x");
    assert_string_equal(fl[255], "last");
    assert_int_equal(hv__csv_next(c, &fl, &n, &err), HV_ETOOBIG);
    assert_non_null(strstr(err.message, "line 2 has more than 256 fields"));
    hv__csv_close(c);
    hv_buf_release(&text);
}

static void terminology_loinc_code_check_digits(void **state) {
    static const struct {
        const char *code;
        int valid;
    } cases[] = {
        {"2345-7", 1}, {"718-7", 1}, {"14749-6", 1}, {"8310-5", 1}, {"2345-8", 0},
        {"2345", 0},   {"-7", 0},    {"23a5-7", 0},  {"12345678-9", 0}, {"", 0},
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++)
        if (hv_terminology_loinc_code_valid(cases[i].code) != cases[i].valid)
            fail_msg("'%s' should be %s", cases[i].code, cases[i].valid ? "valid" : "invalid");
}

static void terminology_loads_loinc_with_parts(void **state) {
    fixture_t *f = *state;
    hv_terminology_concept_t c;
    const char *v = NULL;
    int64_t n = 0;
    load_ok(f, "loinc", data_path("Loinc.csv"));
    assert_int_equal(hv_terminology_version(f->db, HV_TERMINOLOGY_LOINC, f->arena, &v, &n), HV_OK);
    assert_string_equal(v, "2.74"); /* the largest VersionLastChanged */
    assert_int_equal(n, 13);
    assert_int_equal(hv_terminology_lookup(f->db, HV_TERMINOLOGY_LOINC, "2345-7", f->arena, &c),
                     HV_OK);
    assert_string_equal(c.display, "Glucose [Mass/volume] in Serum or Plasma");
    assert_true(c.active);
    assert_non_null(strstr(c.props, "\"component\":\"Glucose\""));
    assert_non_null(strstr(c.props, "\"exampleUcumUnits\":\"mg\\/dL\""));
    assert_int_equal(hv_terminology_lookup(f->db, HV_TERMINOLOGY_LOINC, "99990-4", f->arena, &c),
                     HV_OK);
    assert_false(c.active);
    assert_int_equal(hv_terminology_lookup(f->db, HV_TERMINOLOGY_LOINC, "0000-0", f->arena, &c),
                     HV_ENOTFOUND);
}

static void terminology_failed_load_keeps_previous_version(void **state) {
    fixture_t *f = *state;
    hv_error_t err;
    const char *bad;
    load_ok(f, "loinc", data_path("Loinc.csv"));
    bad = temp_text(f, "Loinc.csv",
                    "\"LOINC_NUM\",\"COMPONENT\",\"PROPERTY\",\"TIME_ASPCT\",\"SYSTEM\",\"SCALE_TYP\","
                    "\"LONG_COMMON_NAME\"\n"
                    "\"2345-7\",\"Glucose\",\"MCnc\",\"Pt\",\"Ser/Plas\",\"Qn\",\"Glucose\"\n"
                    "\"2345-8\",\"Glucose\",\"MCnc\",\"Pt\",\"Ser/Plas\",\"Qn\",\"Corrupt\"\n");
    hv_error_clear(&err);
    assert_int_equal(hv_terminology_load(f->db, "loinc", bad, NULL, NULL, &err), HV_EPROTO);
    assert_non_null(strstr(err.message, "line 3"));
    assert_non_null(strstr(err.message, "check digit"));
    assert_int_equal(count_of(f, HV_TERMINOLOGY_LOINC), 13);
    bad = temp_text(f, "Other.csv", "\"CODE\",\"NAME\"\n\"1\",\"x\"\n");
    assert_int_equal(hv_terminology_load(f->db, "loinc", bad, NULL, NULL, &err), HV_EPROTO);
    assert_non_null(strstr(err.message, "no column LOINC_NUM"));
    assert_int_equal(hv_terminology_load(f->db, "loinc", "/nonexistent.csv", NULL, NULL, &err),
                     HV_EIO);
    assert_int_equal(hv_terminology_load(f->db, "rxnorm", bad, NULL, NULL, &err), HV_EINVAL);
    /* Loading the same file again gives the same tables. */
    load_ok(f, "loinc", data_path("Loinc.csv"));
    assert_int_equal(count_of(f, HV_TERMINOLOGY_LOINC), 13);
}

static void terminology_search_ranks_and_pages(void **state) {
    fixture_t *f = *state;
    hv_terminology_concept_t *r = NULL;
    size_t n = 0, i;
    load_ok(f, "loinc", data_path("Loinc.csv"));
    assert_int_equal(hv_terminology_search(f->db, HV_TERMINOLOGY_LOINC, "gluc serum", 10, 0,
                                           f->arena, &r, &n), HV_OK);
    assert_true(n >= 2);
    for (i = 0; i < n; i++) assert_non_null(strstr(r[i].display, "Glucose"));
    assert_true(r[n - 1].active == 0 || n == 2); /* inactive concepts come last */
    /* By a related name (RELATEDNAMES2) and by short name. */
    assert_int_equal(hv_terminology_search(f->db, HV_TERMINOLOGY_LOINC, "kalium", 10, 0, f->arena,
                                           &r, &n), HV_OK);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].code, "2823-3");
    /* A code as the query comes first. */
    assert_int_equal(hv_terminology_search(f->db, HV_TERMINOLOGY_LOINC, "718-7", 10, 0, f->arena,
                                           &r, &n), HV_OK);
    assert_true(n >= 1);
    assert_string_equal(r[0].code, "718-7");
    /* Paging. */
    assert_int_equal(hv_terminology_search(f->db, HV_TERMINOLOGY_LOINC, "glucose", 1, 1, f->arena,
                                           &r, &n), HV_OK);
    assert_int_equal(n, 1);
    assert_int_equal(hv_terminology_search(f->db, HV_TERMINOLOGY_LOINC, " ,; ", 10, 0, f->arena,
                                           &r, &n), HV_EINVAL);
}

static void terminology_loads_snomed_rf2_with_is_a(void **state) {
    fixture_t *f = *state;
    hv_terminology_concept_t c, *r = NULL;
    size_t n = 0;
    const char *v;
    load_ok(f, "snomed", data_path("snomed"));
    assert_int_equal(hv_terminology_version(f->db, HV_TERMINOLOGY_SNOMED, f->arena, &v, NULL), HV_OK);
    assert_string_equal(v, "20240101");
    assert_int_equal(count_of(f, HV_TERMINOLOGY_SNOMED), 8);
    assert_int_equal(hv_terminology_lookup(f->db, HV_TERMINOLOGY_SNOMED, "44054006", f->arena, &c),
                     HV_OK);
    assert_string_equal(c.display, "Diabetes mellitus type 2 (disorder)");
    assert_int_equal(hv_terminology_lookup(f->db, HV_TERMINOLOGY_SNOMED, "190329007", f->arena, &c),
                     HV_OK);
    assert_false(c.active);
    assert_int_equal(hv_terminology_subsumes(f->db, HV_TERMINOLOGY_SNOMED, "73211009", "44054006"), 1);
    assert_int_equal(hv_terminology_subsumes(f->db, HV_TERMINOLOGY_SNOMED, "404684003", "46635009"), 1);
    assert_int_equal(hv_terminology_subsumes(f->db, HV_TERMINOLOGY_SNOMED, "44054006", "44054006"), 1);
    /* The inactive relationship 46635009 is-a 44054006 is not used. */
    assert_int_equal(hv_terminology_subsumes(f->db, HV_TERMINOLOGY_SNOMED, "44054006", "46635009"), 0);
    assert_int_equal(hv_terminology_subsumes(f->db, HV_TERMINOLOGY_SNOMED, "44054006", "73211009"), 0);
    /* A synonym finds its concept, once. */
    assert_int_equal(hv_terminology_search(f->db, HV_TERMINOLOGY_SNOMED, "diabetes mellitus", 20, 0,
                                           f->arena, &r, &n), HV_OK);
    assert_int_equal(n, 3);
    assert_int_equal(hv_terminology_search(f->db, HV_TERMINOLOGY_SNOMED, "non-insulin", 20, 0,
                                           f->arena, &r, &n), HV_OK);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].code, "44054006");
    {
        hv_error_t err;
        assert_int_equal(hv_terminology_load(f->db, "snomed", f->dir, NULL, NULL, &err),
                         HV_ENOTFOUND);
        assert_non_null(strstr(err.message, "RF2"));
    }
}

static void terminology_loads_icd10cm_order_file(void **state) {
    fixture_t *f = *state;
    hv_terminology_concept_t c;
    hv_error_t err;
    const char *bad;
    load_ok(f, "icd10cm", data_path("icd10cm-order-sample-2021.txt"));
    assert_int_equal(count_of(f, HV_TERMINOLOGY_ICD10CM), 24);
    assert_int_equal(hv_terminology_lookup(f->db, HV_TERMINOLOGY_ICD10CM, "E11.00", f->arena, &c),
                     HV_OK);
    assert_non_null(strstr(c.display, "without nonketotic hyperglycemic-hyperosmolar coma"));
    assert_string_equal(c.props, "{\"billable\":true}");
    assert_int_equal(hv_terminology_lookup(f->db, HV_TERMINOLOGY_ICD10CM, "E11", f->arena, &c), HV_OK);
    assert_string_equal(c.props, "{\"billable\":false}");
    assert_int_equal(hv_terminology_subsumes(f->db, HV_TERMINOLOGY_ICD10CM, "E11", "E11.00"), 1);
    assert_int_equal(hv_terminology_subsumes(f->db, HV_TERMINOLOGY_ICD10CM, "A00", "E11.00"), 0);
    bad = temp_text(f, "bad-order.txt", "00001 A00     0 Cholera\n");
    hv_error_clear(&err);
    assert_int_equal(hv_terminology_load(f->db, "icd10cm", bad, NULL, NULL, &err), HV_EPROTO);
    assert_non_null(strstr(err.message, "line 1"));
    assert_int_equal(count_of(f, HV_TERMINOLOGY_ICD10CM), 24);
}

static void terminology_icd10cm_rejects_truncated_gzip(void **state) {
    fixture_t *f = *state;
    char cmd[8192], path[256];
    hv_error_t err;
    snprintf(path, sizeof path, "%s/cut.txt.gz", f->dir);
    snprintf(cmd, sizeof cmd, "gzip -c '%s' | head -c 400 > '%s'",
             data_path("icd10cm-order-sample-2021.txt"), path);
    assert_int_equal(system(cmd), 0);
    hv_error_clear(&err);
    assert_int_equal(hv_terminology_load(f->db, "icd10cm", path, NULL, NULL, &err), HV_EIO);
    assert_int_equal(count_of(f, HV_TERMINOLOGY_ICD10CM), -1); /* nothing was loaded */
}

static void terminology_loads_cpt_csv(void **state) {
    fixture_t *f = *state;
    hv_terminology_concept_t c;
    hv_error_t err;
    const char *bad;
    load_ok(f, "cpt", data_path("cpt.csv"));
    assert_int_equal(count_of(f, HV_TERMINOLOGY_CPT), 6);
    assert_int_equal(hv_terminology_lookup(f->db, HV_TERMINOLOGY_CPT, "3044F", f->arena, &c), HV_OK);
    assert_non_null(strstr(c.display, "Category II"));
    bad = temp_text(f, "cpt-bad.csv", "code,description\n9921,too short\n");
    assert_int_equal(hv_terminology_load(f->db, "cpt", bad, NULL, NULL, &err), HV_EPROTO);
    assert_non_null(strstr(err.message, "not a CPT"));
    bad = temp_text(f, "cpt-nohdr.csv", "99213,visit\n");
    assert_int_equal(hv_terminology_load(f->db, "cpt", bad, NULL, NULL, &err), HV_EPROTO);
    assert_non_null(strstr(err.message, "header"));
}

static void terminology_loads_fhir_code_systems_and_value_sets(void **state) {
    fixture_t *f = *state;
    hv_terminology_concept_t c;
    hv_error_t err;
    const char *v = NULL;
    load_ok(f, "fhir", data_path("fhir-valuesets.json"));
    assert_int_equal(hv_terminology_version(f->db, "urn:holovitals:fhir", f->arena, &v, NULL), HV_OK);
    assert_string_equal(v, "3 code systems, 14 value sets");
    assert_int_equal(hv_terminology_lookup(f->db, "http://hl7.org/fhir/administrative-gender", "female",
                                           f->arena, &c), HV_OK);
    assert_string_equal(c.display, "Female");
    /* Nested concepts are is-a children. */
    assert_int_equal(hv_terminology_subsumes(f->db, "urn:holovitals:test:shapes", "polygon", "square"), 1);
    assert_int_equal(hv_terminology_subsumes(f->db, "urn:holovitals:test:shapes", "round", "square"), 0);
    hv_error_clear(&err);
    assert_int_equal(hv_terminology_load(f->db, "fhir", data_path("cpt.csv"), NULL, NULL, &err),
                     HV_EPROTO);
}

int run_store_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(terminology_csv_reads_rfc4180_quotes_and_line_breaks, setup,
                                        teardown),
        cmocka_unit_test(terminology_csv_takes_256_fields_and_refuses_257),
        cmocka_unit_test(terminology_loinc_code_check_digits),
        cmocka_unit_test_setup_teardown(terminology_loads_loinc_with_parts, setup, teardown),
        cmocka_unit_test_setup_teardown(terminology_failed_load_keeps_previous_version, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(terminology_search_ranks_and_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(terminology_loads_snomed_rf2_with_is_a, setup, teardown),
        cmocka_unit_test_setup_teardown(terminology_loads_icd10cm_order_file, setup, teardown),
        cmocka_unit_test_setup_teardown(terminology_icd10cm_rejects_truncated_gzip, setup, teardown),
        cmocka_unit_test_setup_teardown(terminology_loads_cpt_csv, setup, teardown),
        cmocka_unit_test_setup_teardown(terminology_loads_fhir_code_systems_and_value_sets, setup,
                                        teardown),
    };
    return test_run_on_backends("terminology_store", tests, HV_ARRAY_LEN(tests));
}
