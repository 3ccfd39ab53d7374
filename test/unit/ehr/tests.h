/* tests.h — the registry of ehr unit-test groups (one per pure source file of adapters/ehr/). */
#ifndef HV_TEST_EHR_TESTS_H
#define HV_TEST_EHR_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "adapters/ehr/ehr.h"
#include "engine/engine.h"

int run_page_tests(void);
int run_schedule_tests(void);
int run_seal_tests(void);
int run_vendor_tests(void);
int run_write_tests(void);

#endif
