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
/* The reference data folder: $HV_REFERENCE_DIR if set, else $HV_SRCDIR/../shared/reference
 * (or ../../shared/reference for a worktree); NULL if HV_SRCDIR is not set either. */
const char *test_reference_dir(void);

/*
 * The store's tests run on SQLite (a temporary folder) and again on PostgreSQL when
 * HV_TEST_PG_URL is set (scripts/pg.sh), in the private schema hvt_terminology.
 * test_store_open opens a fresh, empty store for the current backend into dir
 * (a temporary folder, also used for scratch files); test_store_close drops it.
 */
int test_store_open(char *dir, size_t dirlen, hv_db_t **db);
void test_store_close(const char *dir, hv_db_t *db);
/* Runs a group once per available backend; returns the failures. */
int test_run_on_backends(const char *name, const struct CMUnitTest *tests, size_t count);

int run_ucum_tests(void);
int run_ucum_functional_tests(void);
int run_store_tests(void);
int run_standardize_tests(void);

#endif
