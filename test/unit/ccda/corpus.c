/*
 * corpus.c — every C-CDA document of the reference corpus
 * ($HV_SRCDIR/../shared/reference/ccda: the FHIR-Converter samples and the HL7
 * C-CDA-Examples files whose root is a ClinicalDocument) maps to a transaction
 * Bundle that passes hv_fhir_validate with no errors, twice to the same bytes.
 * Fragments (section or entry examples without a ClinicalDocument) are skipped.
 * Without the reference the test fails: it is not skipped.
 */
#define _XOPEN_SOURCE 700
#include "config.h"

#include <ftw.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhir.h"
#include "tests.h"

static hv_fhir_validator_t *validator;
static int documents, failures;

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b != NULL && fread(b, 1, (size_t)n, f) == (size_t)n) {
        b[n] = '\0';
        *len = (size_t)n;
    } else {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

static int visit(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)ftw;
    size_t n = strlen(path), len = 0;
    if (flag != FTW_F) return 0;
    if (!(n > 4 && (strcasecmp(path + n - 4, ".xml") == 0 || strcmp(path + n - 5, ".ccda") == 0)))
        return 0;
    char *text = slurp(path, &len);
    if (text == NULL) return 0;
    if (strstr(text, "<ClinicalDocument") == NULL) {
        free(text);
        return 0;
    }
    documents++;
    hv_map_result_t r = {0}, r2 = {0};
    hv_error_t err;
    hv_error_clear(&err);
    int rc = hv_map_ccda_to_fhir(text, len, NULL, &r, &err);
    if (rc == HV_EINVAL && strstr(err.message, "root element is not") != NULL) {
        documents--; /* a fragment that mentions ClinicalDocument (a Guide example) */
        goto out;
    }
    if (rc != HV_OK) {
        print_error("%s: mapping failed: %s (line %d)\n", path, err.message, err.line);
        failures++;
        goto out;
    }
    struct json_object *oo = NULL;
    int errors = -1;
    if (hv_fhir_validate(validator, r.bundle, NULL, 0, &oo, &errors) != HV_OK || errors != 0) {
        print_error("%s: %d validation errors: %.2000s\n", path, errors,
                    oo != NULL ? json_object_to_json_string(oo) : "");
        failures++;
    }
    json_object_put(oo);
    if (hv_map_ccda_to_fhir(text, len, NULL, &r2, &err) != HV_OK ||
        strcmp(json_object_to_json_string(r.bundle), json_object_to_json_string(r2.bundle)) != 0) {
        print_error("%s: a second mapping differs\n", path);
        failures++;
    }
out:
    hv_map_result_free(&r);
    hv_map_result_free(&r2);
    free(text);
    return 0;
}

static void ccda_reference_documents_map_to_valid_bundles(void **state) {
    (void)state;
    const char *src = getenv("HV_SRCDIR"), *ref = getenv("HV_REFERENCE_DIR");
    char dir[4096];
    if (src == NULL && ref == NULL)
        fail_msg("HV_SRCDIR is not set: cannot find the reference C-CDA corpus");
    /* HV_REFERENCE_DIR overrides the CI layout (a worktree has no shared/ beside it). */
    if (ref != NULL)
        snprintf(dir, sizeof(dir), "%s/ccda", ref);
    else
        snprintf(dir, sizeof(dir), "%s/../shared/reference/ccda", src);
    validator = hv_fhir_validator_new();
    assert_non_null(validator);
    documents = failures = 0;
    if (nftw(dir, visit, 16, FTW_PHYS) != 0) fail_msg("cannot read %s", dir);
    hv_fhir_validator_free(validator);
    print_message("C-CDA reference: %d documents, %d failed\n", documents, failures);
    /* The corpus holds 29 complete documents (9 FHIR-Converter + 20 HL7 examples). */
    if (documents < 29) fail_msg("only %d C-CDA documents found under %s", documents, dir);
    assert_int_equal(failures, 0);
}

int run_corpus_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ccda_reference_documents_map_to_valid_bundles),
    };
    return cmocka_run_group_tests_name("ccda_corpus", tests, NULL, NULL);
}
