/* tests.h — the registry of FHIRPath unit-test groups (one per source file of fhir/fhirpath_*). */
#ifndef HV_TEST_FHIRPATH_TESTS_H
#define HV_TEST_FHIRPATH_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/engine.h"
#include "fhir/fhirpath.h"

/* One table row: an expression, the resource it runs on (NULL: the sample Patient), and
 * the expected result as JSON ("[...]"), or NULL when an error is expected. */
typedef struct fp_case {
    const char *expr;
    const char *expect;
} fp_case_t;

/* Runs expr against json (NULL: the sample Patient); returns the result JSON (static buffer)
 * or NULL on error, with the error in *err when err is not NULL. */
const char *fp_eval(const char *expr, const char *json, hv_error_t *err);
/* Asserts every row of a table, printing the failing row. */
void fp_check_table(const fp_case_t *t, size_t n, const char *json);
extern const char *fp_patient_json;

int run_fhirpath_parse_tests(void);
int run_fhirpath_eval_tests(void);
int run_fhirpath_funcs_tests(void);
int run_fhirpath_strfn_tests(void);
int run_fhirpath_ops_tests(void);
int run_fhirpath_cmd_tests(void);

#endif
