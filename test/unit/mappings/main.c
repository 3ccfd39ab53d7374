/* main.c — runs every mappings unit-test group; the exit status is the failure count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"
#include "fhir/fhir.h"

void test_map(const char *msg, const hv_map_opts_t *opts, hv_map_result_t *out) {
    hv_error_t err;
    int rc;
    hv_error_clear(&err);
    memset(out, 0, sizeof(*out));
    rc = hv_map_v2_to_fhir(msg, strlen(msg), opts, out, &err);
    if (rc != HV_OK) fail_msg("map failed (%d): %s at %s", rc, err.message, err.location);
    assert_non_null(out->bundle);
    assert_non_null(out->outcome);
}

json_object *test_entry(json_object *bundle, const char *type, size_t nth, const char **request_url) {
    json_object *entries = NULL;
    size_t i, seen = 0;
    if (!json_object_object_get_ex(bundle, "entry", &entries)) return NULL;
    for (i = 0; i < json_object_array_length(entries); i++) {
        json_object *e = json_object_array_get_idx(entries, i), *r = NULL, *req = NULL;
        const char *t;
        json_object_object_get_ex(e, "resource", &r);
        t = hv_json_get_str(r, "resourceType");
        if (t == NULL || strcmp(t, type) != 0 || seen++ != nth) continue;
        if (request_url != NULL) {
            json_object_object_get_ex(e, "request", &req);
            *request_url = hv_json_get_str(req, "url");
        }
        return r;
    }
    return NULL;
}

size_t test_count(json_object *bundle, const char *type) {
    size_t n = 0;
    while (test_entry(bundle, type, n, NULL) != NULL) n++;
    return n;
}

const char *test_str(json_object *o, const char *path) {
    char buf[256], *p, *save = NULL;
    snprintf(buf, sizeof(buf), "%s", path);
    for (p = strtok_r(buf, ".", &save); p != NULL && o != NULL; p = strtok_r(NULL, ".", &save)) {
        char *br = strchr(p, '[');
        size_t idx = 0;
        if (br != NULL) {
            idx = strtoul(br + 1, NULL, 10);
            *br = '\0';
        }
        if (!json_object_object_get_ex(o, p, &o)) return NULL;
        if (br != NULL) {
            if (!json_object_is_type(o, json_type_array) || idx >= json_object_array_length(o)) return NULL;
            o = json_object_array_get_idx(o, idx);
        }
    }
    if (o == NULL) return NULL;
    return json_object_get_string(o);
}

int test_validate_errors(json_object *resource) {
    hv_fhir_validator_t *v = hv_fhir_validator_new();
    json_object *oo = NULL;
    int errors = -1;
    assert_non_null(v);
    assert_int_equal(hv_fhir_validate(v, resource, NULL, 0, &oo, &errors), HV_OK);
    if (errors > 0) print_message("validation: %s\n", json_object_to_json_string(oo));
    json_object_put(oo);
    hv_fhir_validator_free(v);
    return errors;
}

const char *test_reference_dir(void) {
    static char dir[4096];
    const char *ref = getenv("HV_REFERENCE_DIR"), *src = getenv("HV_SRCDIR");
    if (ref != NULL) return ref;
    if (src == NULL) fail_msg("neither HV_REFERENCE_DIR nor HV_SRCDIR is set: cannot find the reference data");
    snprintf(dir, sizeof(dir), "%s/../shared/reference", src);
    return dir;
}

int main(void) {
    int failed = 0;
    failed += run_v2_load_tests();
    failed += run_v2_to_fhir_tests();
    failed += run_v2_local_tests();
    failed += run_v2_cond_tests();
    failed += run_v2_apply_tests();
    failed += run_v2_values_tests();
    failed += run_corpus_tests();
    failed += run_jtree_tests();
    return failed;
}
