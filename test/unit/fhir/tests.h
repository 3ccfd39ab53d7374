/* tests.h — the registry of fhir unit-test groups (one per source file). */
#ifndef HV_TEST_FHIR_TESTS_H
#define HV_TEST_FHIR_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fhir/fhir.h"

int run_model_tests(void);
int run_json_tests(void);
int run_json_write_tests(void);
int run_json_read_tests(void);
int run_examples_tests(void);
int run_xml_tests(void);
int run_validate_tests(void);
int run_profile_tests(void);

/* The reference data folder (fails the test when absent) and a file reader (malloc). */
const char *fhir_test_reference_dir(void);
char *fhir_test_slurp(const char *path, size_t *len);

#endif
