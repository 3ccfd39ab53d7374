/*
 * corpus.c — every HL7 v2 sample of the reference data ($HV_REFERENCE_DIR, else
 * $HV_SRCDIR/../shared/reference: hl7v2/fhir-converter, hl7v2/reportstream-*,
 * hl7-v2-to-fhir/samples) maps to a Bundle that the FHIR validator (fhir/validate.c)
 * passes with no error. Messages without a patient identifier are mapped leniently
 * (they are single-rule tests); a missing reference folder fails the test.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests.h"
#include "fhir/fhir.h"

typedef struct stats {
    int files, errors, strict_ok, failures;
    hv_fhir_validator_t *v;
} stats_t;

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf != NULL) buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

static void check_file(const char *path, stats_t *st) {
    size_t len = 0;
    char *text = slurp(path, &len);
    hv_map_result_t r;
    hv_map_opts_t o;
    hv_error_t err;
    json_object *oo = NULL;
    int errors = 0, rc;
    memset(&r, 0, sizeof(r));
    memset(&o, 0, sizeof(o));
    if (text == NULL) {
        print_message("%s: cannot read\n", path);
        st->failures++;
        return;
    }
    st->files++;
    rc = hv_map_v2_to_fhir(text, len, &o, &r, &err);
    if (rc == HV_OK) st->strict_ok++;
    if (rc == HV_EPROTO && strcmp(err.location, "PID-3") == 0) {
        o.lenient_identity = 1;
        rc = hv_map_v2_to_fhir(text, len, &o, &r, &err);
    }
    if (rc != HV_OK) {
        print_message("%s: not mapped: %s\n", path, err.message);
        st->failures++;
    } else if (hv_fhir_validate(st->v, r.bundle, NULL, 0, &oo, &errors) != HV_OK || errors > 0) {
        print_message("%s: %d validation errors: %s\n", path, errors,
                      oo ? json_object_to_json_string(oo) : "");
        st->errors += errors;
        st->failures++;
    }
    json_object_put(oo);
    hv_map_result_free(&r);
    free(text);
}

static void walk(const char *dir, stats_t *st) {
    DIR *d = opendir(dir);
    struct dirent *e;
    if (d == NULL) fail_msg("reference folder missing: %s", dir);
    while ((e = readdir(d)) != NULL) {
        char path[4096];
        struct stat sb;
        size_t n = strlen(e->d_name);
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (stat(path, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) walk(path, st);
        else if ((n > 4 && strcmp(e->d_name + n - 4, ".hl7") == 0) || strstr(e->d_name, "Message.hl7") != NULL)
            check_file(path, st);
    }
    closedir(d);
}

static void mappings_corpus_every_sample_maps_to_valid_fhir(void **state) {
    static const char *subdirs[] = {"hl7v2/fhir-converter", "hl7v2/reportstream-mapping-inventory",
                                    "hl7v2/reportstream-messages", "hl7-v2-to-fhir/samples"};
    const char *ref = test_reference_dir();
    stats_t st;
    size_t i;
    (void)state;
    memset(&st, 0, sizeof(st));
    st.v = hv_fhir_validator_new();
    assert_non_null(st.v);
    for (i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/%s", ref, subdirs[i]);
        walk(dir, &st);
    }
    hv_fhir_validator_free(st.v);
    print_message("corpus: %d messages mapped and validated, %d with a patient identifier\n", st.files,
                  st.strict_ok);
    assert_true(st.files >= 200);
    assert_int_equal(st.failures, 0);
}

int run_corpus_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mappings_corpus_every_sample_maps_to_valid_fhir),
    };
    return cmocka_run_group_tests_name("mappings/corpus", tests, NULL, NULL);
}
