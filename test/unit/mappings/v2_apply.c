/*
 * v2_apply.c — tests of mappings/v2_apply.c: how the rows of a map meet the fields of a
 * segment and the components of a value. A map reads each source once per run of rows that
 * share it and skips the run when it is empty; these tests check, through override rows
 * (docs/mappings.md) that assign constants, that a skipped run takes no row of the next
 * run with it, that a field mapped again after another run is read again, and that a value
 * with more components than the split keeps (32) still gives its later ones.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests.h"

#define MSH "MSH|^~\\&|SENDAPP|SENDFAC|RECAPP|RECFAC|20240101120000+0000||ADT^A01^ADT_A01|MSG001|P|2.5.1\r"

/* Rows: segment map PID[Patient] (fields 8, 99 (never sent), 7, 8 again) and data-type map
 * XPN[HumanName] (components 20, 40 and 2), each assigning a marker. */
static const char *rows =
    "map\tPID[Patient]\t900\t8\tST\t\tname[5].text\tstring\t\t\tr8a\n"
    "map\tPID[Patient]\t901\t8\tST\t\tname[6].text\tstring\t\t\tr8b\n"
    "map\tPID[Patient]\t902\t99\tST\t\tname[7].text\tstring\t\t\tr99a\n"
    "map\tPID[Patient]\t903\t99\tST\t\tname[8].text\tstring\t\t\tr99b\n"
    "map\tPID[Patient]\t904\t7\tST\t\tname[9].text\tstring\t\t\tr7\n"
    "map\tPID[Patient]\t905\t8\tST\t\tname[10].text\tstring\t\t\tr8c\n"
    "map\tXPN[HumanName]\t900\t20\tST\t\t[1].suffix[4]\tstring\t\t\tx20a\n"
    "map\tXPN[HumanName]\t901\t20\tST\t\t[1].suffix[5]\tstring\t\t\tx20b\n"
    "map\tXPN[HumanName]\t902\t40\tST\t\t[1].suffix[6]\tstring\t\t\tx40\n"
    "map\tXPN[HumanName]\t903\t2\tST\t\t[1].suffix[7]\tstring\t\t\tx2\n";

/* Whether the Patient's JSON holds the string "want" (quoted). */
static int patient_has(json_object *bundle, const char *want) {
    json_object *p = test_entry(bundle, "Patient", 0, NULL);
    char q[32];
    snprintf(q, sizeof(q), "\"%s\"", want);
    return p != NULL && strstr(json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN), q) != NULL;
}

static void map_and_check(const hv_map_opts_t *o, const char *name, const char *const *yes, const char *const *no) {
    char msg[1024];
    hv_map_result_t r;
    snprintf(msg, sizeof(msg), MSH "PID|1||12345^^^HOSP^MR||%s||19800102|F\r", name);
    test_map(msg, o, &r);
    for (; *yes != NULL; yes++)
        if (!patient_has(r.bundle, *yes)) fail_msg("%s: '%s' missing", name, *yes);
    for (; *no != NULL; no++)
        if (patient_has(r.bundle, *no)) fail_msg("%s: '%s' should not be there", name, *no);
    hv_map_result_free(&r);
}

static void v2_apply_runs_of_one_source_skip_exactly_their_rows(void **state) {
    hv_map_opts_t o;
    char path[] = "/tmp/hv-map-apply-XXXXXX", longname[256];
    int fd = mkstemp(path), k;
    size_t n;
    FILE *f;
    static const char *const short_yes[] = {"r8a", "r8b", "r7", "r8c", "x2", NULL};
    static const char *const short_no[] = {"r99a", "r99b", "x20a", "x20b", "x40", NULL};
    static const char *const long_yes[] = {"r8a", "r8b", "r7", "r8c", "x2", "x20a", "x20b", "x40", NULL};
    static const char *const long_no[] = {"r99a", "r99b", NULL};
    (void)state;
    assert_true(fd >= 0);
    close(fd);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(rows, f);
    fclose(f);
    memset(&o, 0, sizeof(o));
    o.override_file = path;
    map_and_check(&o, "DOE^JANE", short_yes, short_no);
    /* 40 components: DOE^JANE^c3^...^c19^T^c21^...^c39^U. */
    n = (size_t)snprintf(longname, sizeof(longname), "DOE^JANE");
    for (k = 3; k <= 40; k++)
        n += (size_t)snprintf(longname + n, sizeof(longname) - n, "^%s", k == 20 ? "T" : k == 40 ? "U" : "c");
    map_and_check(&o, longname, long_yes, long_no);
    unlink(path);
}

int run_v2_apply_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v2_apply_runs_of_one_source_skip_exactly_their_rows),
    };
    return cmocka_run_group_tests_name("mappings/v2_apply", tests, NULL, NULL);
}
