/* tests.h — the registry of the FHIR store unit-test groups (one per source file of fhir/store*.c, rest_patch.c). */
#ifndef HV_TEST_FHIRSTORE_TESTS_H
#define HV_TEST_FHIRSTORE_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fhir/store_int.h"

int run_store_tests(void);
int run_store_ops_tests(void);
int run_patch_tests(void);
int run_rest_tests(void);
int run_search_tests(void); /* search_index.c */
int run_search_fold_tests(void); /* search_fold.c */
int run_search_plan_tests(void); /* search_plan.c */
int run_search_special_tests(void); /* search_special.c */
int run_search_combo_tests(void);   /* search_combo.c */
int run_search_has_tests(void);     /* search_has.c */
int run_search_pg_tests(void);      /* search_pg.c: the row-id pages on PostgreSQL (HV_TEST_PG_URL) */
int run_bundle_tests(void); /* rest_bundle.c */
int run_compartment_tests(void); /* rest_compartment.c */
int run_authz_tests(void);  /* rest_authz.c */

/* The reference data folder ($HV_SRCDIR/../shared/reference); fails the test when absent. */
const char *store_test_reference_dir(void);
/* Reads a whole file (hv_malloc'd, NUL-terminated); fails the test when it cannot. */
char *store_test_slurp(const char *path, size_t *len);
/* Calls fn with every resource of every Synthea bundle in the reference data, numbered from
 * 0 in reading order; fails the test when the bundles are missing or hold under 3,000
 * resources. Returns how many it read. */
struct json_object;
size_t store_test_each_synthea_resource(void (*fn)(struct json_object *res, size_t seq, void *ud), void *ud);
/* Opens the fhir tables in a fresh temporary SQLite database. */
hv_db_t *store_test_db(void);
/* The same, migrated only up to the migration stop (which is not applied; it must be in
 * the list): a store written by an older release, for testing a migration. */
hv_db_t *store_test_db_before(const char *stop);
void store_test_db_close(hv_db_t *db);
/* The one integer sql selects (-1 when it gives no row). */
int64_t store_test_count(hv_db_t *db, const char *sql);
/* Stores json (its resourceType and id) as version `version` at time 1000 + version. */
void store_test_put(hv_db_t *db, int64_t version, const char *json);
/* Stores Patient <prefix>i (family "Other<i>" when i % 3 == 0, else "Hasfam<i>") and its
 * Observations o<i>-1 (code C1, only when i is even) and o<i>-2 (code C2), version 1. */
void store_test_put_has_population(hv_db_t *db, const char *prefix, int i);
/* Steps st, an EXPLAIN QUERY PLAN statement, to its end and appends each row's detail and a
 * newline to plan (NUL-terminated); finishes st. */
void store_test_plan_lines(hv_db_stmt_t *st, hv_buf_t *plan);
struct hv__search_plan;
/* The plan of the row-id page (hv__search_page_sql) of query on type, which only() must take,
 * at cursor 0 with a page of 11, into plan (the caller releases it): SQLite's EXPLAIN QUERY
 * PLAN details or PostgreSQL's EXPLAIN lines, one per line. */
void store_test_page_plan(hv_db_t *db, const char *type, const char *query,
                          int (*only)(const struct hv__search_plan *), hv_buf_t *plan);

#endif
