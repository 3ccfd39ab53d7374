/* main.c — runs every FHIRPath unit-test group; the exit status is the failure count. Also
 * holds the shared helpers of tests.h. */
#include "tests.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

const char *fp_patient_json =
    "{\"resourceType\":\"Patient\",\"id\":\"p1\","
    "\"extension\":[{\"url\":\"http://example.org/ext\",\"valueString\":\"x\"}],"
    "\"active\":true,"
    "\"name\":[{\"use\":\"official\",\"family\":\"Chalmers\",\"given\":[\"Peter\",\"James\"]},"
    "{\"use\":\"usual\",\"given\":[\"Jim\"]}],"
    "\"gender\":\"male\",\"birthDate\":\"1974-12-25\","
    "\"_birthDate\":{\"extension\":[{\"url\":\"http://hl7.org/fhir/StructureDefinition/patient-birthTime\","
    "\"valueDateTime\":\"1974-12-25T14:35:45-05:00\"}]},"
    "\"multipleBirthInteger\":2,"
    "\"contained\":[{\"resourceType\":\"Organization\",\"id\":\"org1\",\"name\":\"Acme\"}],"
    "\"managingOrganization\":{\"reference\":\"#org1\"},"
    "\"contact\":[{\"name\":{\"family\":\"du Marché\"},\"gender\":\"female\"}]}";

const char *fp_eval(const char *expr, const char *json, hv_error_t *err) {
    static char out[8192];
    hv_fhirpath_t *fp = NULL;
    hv_fhirpath_result_t *r = NULL;
    struct json_object *res = json_tokener_parse(json != NULL ? json : fp_patient_json);
    hv_arena_t *a = hv_arena_new(0);
    hv_error_t e;
    hv_buf_t b;
    const char *ret = NULL;
    hv_buf_init(&b, 0);
    hv_error_clear(&e);
    if (hv_fhirpath_compile(expr, 0, NULL, &fp, &e) == HV_OK && hv_fhirpath_eval(fp, res, NULL, a, &r, &e) == HV_OK &&
        hv_fhirpath_result_json(r, &b) == HV_OK) {
        snprintf(out, sizeof(out), "%s", b.data);
        ret = out;
    }
    if (err != NULL) *err = e;
    hv_buf_release(&b);
    hv_fhirpath_free(fp);
    hv_arena_free(a);
    json_object_put(res);
    return ret;
}

void fp_check_table(const fp_case_t *t, size_t n, const char *json) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        hv_error_t err;
        const char *got = fp_eval(t[i].expr, json, &err);
        int ok = t[i].expect == NULL ? got == NULL : (got != NULL && strcmp(got, t[i].expect) == 0);
        if (!ok) {
            fprintf(stderr, "  %s\n    expected %s, got %s%s%s\n", t[i].expr, t[i].expect ? t[i].expect : "an error",
                    got ? got : "error: ", got ? "" : err.message, "");
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

int main(void) {
    int failed = 0;
    failed += run_fhirpath_parse_tests();
    failed += run_fhirpath_eval_tests();
    failed += run_fhirpath_funcs_tests();
    failed += run_fhirpath_strfn_tests();
    failed += run_fhirpath_ops_tests();
    failed += run_fhirpath_cmd_tests();
    return failed;
}
