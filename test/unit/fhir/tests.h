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

#endif
