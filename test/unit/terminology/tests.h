/* tests.h — the registry of terminology unit-test groups (one per source file). */
#ifndef HV_TEST_TERMINOLOGY_TESTS_H
#define HV_TEST_TERMINOLOGY_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/engine.h"

/* The essence in the source tree ($HV_SRCDIR/terminology/data/ucum-essence.xml), or
 * NULL if HV_SRCDIR is not set (the test then fails). */
const char *test_essence_path(void);
/* The reference data folder: $HV_REFERENCE_DIR if set, else $HV_SRCDIR/../shared/reference;
 * NULL if neither is set. */
const char *test_reference_dir(void);

int run_ucum_tests(void);
int run_ucum_functional_tests(void);
int run_store_tests(void);

#endif
