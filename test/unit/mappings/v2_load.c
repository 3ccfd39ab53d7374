/* v2_load.c — tests of mappings/v2_load.c: the built-in tables and override files. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests.h"
#include "mappings/mappings_int.h"

static char *write_tmp(const char *text) {
    static char path[64];
    FILE *f;
    int fd;
    snprintf(path, sizeof(path), "/tmp/hv-map-test-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void v2_load_builtin_tables_have_the_ig_maps(void **state) {
    const hv_map_tables_t *t = hv__map_tables_default();
    size_t n = 0;
    (void)state;
    assert_non_null(t);
    assert_non_null(hv__map_rows(t, "PID[Patient]", &n));
    assert_true(n > 20);
    /* Data-type maps are found whatever the case the tables spell them in. */
    assert_non_null(hv__map_rows(t, "cx[identifier]", &n));
    assert_true(hv__msg_structure_known(t, "ORU_R01"));
    assert_true(hv__msg_structure_known(t, "ADT_A01"));
    assert_false(hv__msg_structure_known(t, "XYZ_Q99"));
    assert_non_null(hv__msg_rows(t, "ORU_R01", "OBX", &n));
    assert_true(n >= 2);
    assert_string_equal(hv__vocab_find(t, "AdministrativeSex", "F")->fcode, "female");
    assert_null(hv__vocab_find(t, "AdministrativeSex", "Q"));
}

static void v2_load_local_rows_replace_generated_ones(void **state) {
    const hv_map_tables_t *t = hv__map_tables_default();
    const hv__msg_row_t *rows;
    size_t n = 0, i, found = 0;
    (void)state;
    rows = hv__msg_rows(t, "ORU_R01", "OBR", &n);
    for (i = 0; i < n; i++) {
        if (strcmp(rows[i].segmap, "OBR[ServiceRequest]") != 0 ||
            strcmp(rows[i].group, "ORU_R01.PATIENT_RESULT.ORDER_OBSERVATION") != 0)
            continue;
        found++;
        /* mappings/v2/local.tsv drops the IG's "IF ORC VALUED". */
        assert_string_equal(rows[i].cond, "");
    }
    assert_int_equal(found, 1);
}

static void v2_load_override_replaces_and_adds_rows(void **state) {
    hv_map_tables_t *t = NULL;
    hv_error_t err;
    const hv__map_row_t *rows;
    size_t n = 0, i, before = 0;
    const char *path = write_tmp("# a partner's rows\n"
                                 "vocab\tAdministrativeSex\tF\tmale\thttp://hl7.org/fhir/administrative-gender\tMale\n"
                                 "map\tZPI[Patient]\t1\t1\tST\t\tname[1].text\tstring\t\t\t\n");
    (void)state;
    hv__map_rows(hv__map_tables_default(), "ZPI[Patient]", &before);
    assert_int_equal(before, 0);
    hv_error_clear(&err);
    assert_int_equal(hv__map_tables_load(path, &t, &err), HV_OK);
    assert_string_equal(hv__vocab_find(t, "AdministrativeSex", "F")->fcode, "male");
    rows = hv__map_rows(t, "ZPI[Patient]", &n);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].target, "name[1].text");
    assert_string_equal(rows[0].origin, path);
    for (i = 0; i < t->nvocab; i++) /* replaced, not added twice */
        if (!strcmp(t->vocab[i].map, "AdministrativeSex") && !strcmp(t->vocab[i].code, "F")) n++;
    assert_int_equal(n, 2);
    hv__map_tables_free(t);
    unlink(path);
}

static void v2_load_override_rejects_a_bad_line_with_file_and_line(void **state) {
    hv_map_tables_t *t = NULL;
    hv_error_t err;
    const char *path = write_tmp("vocab\tA\tB\tC\tD\tE\nthis is not a row\n");
    (void)state;
    hv_error_clear(&err);
    assert_int_equal(hv__map_tables_load(path, &t, &err), HV_ECONFIG);
    assert_null(t);
    assert_int_equal(err.line, 2);
    assert_non_null(strstr(err.message, ":2:"));
    unlink(path);
    assert_int_equal(hv__map_tables_load("/nonexistent/override.tsv", &t, &err), HV_ECONFIG);
}

/* A message row's reference read at load as the engine reads it: resource names with their
 * type part, the path's steps without "[...]" split at '.' (empty steps skipped), the last
 * step where nothing but one '.' follows; anything else not applied (ok 0). */
static void v2_load_message_references_read_as_the_engine_applies_them(void **state) {
    static const struct {
        const char *text;
        int ok;
        const char *a, *b;
        size_t a_type, b_type, nsteps;
        const char *steps[3];
        unsigned char last[3];
    } cases[] = {
        {"Observation[2].subject.reference=Patient[1].id", 1, "Observation[2]", "Patient[1]", 11, 7, 1,
         {"subject"}, {1}},
        {"Patient.contact.organization.reference=Organization[3].id", 1, "Patient", "Organization[3]", 7, 12, 2,
         {"contact", "organization"}, {0, 1}},
        {"Encounter[1].diagnosis[2].condition.reference=Condition.id", 1, "Encounter[1]", "Condition", 9, 9, 2,
         {"diagnosis", "condition"}, {0, 1}},
        /* Empty steps are skipped; a step followed by two dots is not the last (strtok_r). */
        {"A.x..y.reference=B.id", 1, "A", "B", 1, 1, 2, {"x", "y"}, {0, 1}},
        {"A.x...reference=B.id", 1, "A", "B", 1, 1, 1, {"x"}, {0}},
        {"A..reference=B.id", 1, "A", "B", 1, 1, 0, {NULL}, {0}},
        {"A.x.reference=B.identifier", 0, NULL, NULL, 0, 0, 0, {NULL}, {0}},
        {"A.x.reference(B).id=B.id", 0, NULL, NULL, 0, 0, 0, {NULL}, {0}},
        {"A.x.ref=B.id", 0, NULL, NULL, 0, 0, 0, {NULL}, {0}},
        {"Ax.reference=B.id", 0, NULL, NULL, 0, 0, 0, {NULL}, {0}},
        {"A.x.reference", 0, NULL, NULL, 0, 0, 0, {NULL}, {0}},
        {"A.x.reference=B[123456789012345678901234567890123456789012345].id", 0, NULL, NULL, 0, 0, 0, {NULL}, {0}},
    };
    hv_arena_t *a = hv_arena_new(0);
    size_t i, k;
    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        hv__msg_ref_t r;
        assert_int_equal(hv__map_ref_parse(a, cases[i].text, &r), HV_OK);
        assert_int_equal(r.ok, cases[i].ok);
        if (!r.ok) continue;
        assert_string_equal(r.a, cases[i].a);
        assert_string_equal(r.b, cases[i].b);
        assert_int_equal(r.a_type, cases[i].a_type);
        assert_int_equal(r.b_type, cases[i].b_type);
        assert_int_equal(r.nsteps, cases[i].nsteps);
        for (k = 0; k < r.nsteps; k++) {
            assert_string_equal(r.steps[k], cases[i].steps[k]);
            assert_int_equal(r.last[k], cases[i].last[k]);
        }
    }
    hv_arena_free(a);
}

int run_v2_load_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v2_load_builtin_tables_have_the_ig_maps),
        cmocka_unit_test(v2_load_local_rows_replace_generated_ones),
        cmocka_unit_test(v2_load_override_replaces_and_adds_rows),
        cmocka_unit_test(v2_load_override_rejects_a_bad_line_with_file_and_line),
        cmocka_unit_test(v2_load_message_references_read_as_the_engine_applies_them),
    };
    return cmocka_run_group_tests_name("mappings/v2_load", tests, NULL, NULL);
}
