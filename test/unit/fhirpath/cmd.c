/* cmd.c — tests of fhir/fhirpath_cmd.c: the `fhirpath EXPRESSION [FILE]` command on JSON
 * and XML input, its errors and exit codes. */
#include "tests.h"

#include <stdio.h>
#include <string.h>

#include "fhir/fhirpath_int.h"

static int run(const char *expr, const char *input, char *out, size_t outlen, char *errs, size_t errlen) {
    FILE *in = tmpfile(), *o = tmpfile(), *e = tmpfile();
    char *argv[] = {(char *)expr, NULL};
    int rc;
    size_t n;
    fputs(input, in);
    rewind(in);
    rc = hv__fp_cli(NULL, expr != NULL ? 1 : 0, argv, in, o, e);
    rewind(o);
    n = fread(out, 1, outlen - 1, o);
    out[n] = '\0';
    rewind(e);
    n = fread(errs, 1, errlen - 1, e);
    errs[n] = '\0';
    fclose(in);
    fclose(o);
    fclose(e);
    return rc;
}

static void fhirpath_cmd_prints_json_array(void **state) {
    char out[1024], errs[1024];
    assert_int_equal(run("name.given | birthDate", fp_patient_json, out, sizeof(out), errs, sizeof(errs)), HV_EXIT_OK);
    assert_string_equal(out, "[\"Peter\",\"James\",\"Jim\",\"1974-12-25\"]\n");
}

static void fhirpath_cmd_reads_xml(void **state) {
    char out[1024], errs[1024];
    const char *xml = "<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"x\"/><active value=\"true\"/>"
                      "<name><given value=\"Ann\"/></name></Patient>";
    assert_int_equal(run("Patient.name.given.first() & id", xml, out, sizeof(out), errs, sizeof(errs)), HV_EXIT_OK);
    assert_string_equal(out, "[\"Annx\"]\n");
    assert_int_equal(run("active", xml, out, sizeof(out), errs, sizeof(errs)), HV_EXIT_OK);
    assert_string_equal(out, "[true]\n");
}

static void fhirpath_cmd_reports_errors(void **state) {
    char out[1024], errs[1024];
    assert_int_equal(run("name.given.", fp_patient_json, out, sizeof(out), errs, sizeof(errs)), HV_EXIT_FAILURE);
    assert_non_null(strstr(errs, "column 12"));
    assert_int_equal(run("name.single()", fp_patient_json, out, sizeof(out), errs, sizeof(errs)), HV_EXIT_FAILURE);
    assert_non_null(strstr(errs, "single()"));
    assert_int_equal(run("name", "{not json", out, sizeof(out), errs, sizeof(errs)), HV_EXIT_FAILURE);
    assert_int_equal(run(NULL, "", out, sizeof(out), errs, sizeof(errs)), HV_EXIT_USAGE);
}

int run_fhirpath_cmd_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fhirpath_cmd_prints_json_array),
        cmocka_unit_test(fhirpath_cmd_reads_xml),
        cmocka_unit_test(fhirpath_cmd_reports_errors),
    };
    return cmocka_run_group_tests_name("fhirpath_cmd", tests, NULL, NULL);
}
