/*
 * dbtest.h — what the database and storage tests share: a backend to run on
 * (SQLite in a private temporary directory, or PostgreSQL at $HV_TEST_PG_URL)
 * and fresh, uniquely named databases on it that are removed afterwards.
 */
#ifndef HV_TEST_ENGINE_DBTEST_H
#define HV_TEST_ENGINE_DBTEST_H

#include "tests.h"

typedef struct dbtest_backend {
    const char *label; /* "sqlite" or "postgresql" */
    const char *url;   /* NULL for SQLite */
    char dir[256];     /* SQLite: the temporary data directory */
} dbtest_backend_t;

/* Opens a database with a new unique module name on the backend; fails the test on error. */
hv_db_t *dbtest_open(const dbtest_backend_t *b);
/* Opens a second connection to the same module database as db. */
hv_db_t *dbtest_reopen(const dbtest_backend_t *b, hv_db_t *db);
/* Prepares the backend (temporary directory) — 0 on success. */
int dbtest_backend_setup(dbtest_backend_t *b, const char *label, const char *url);
/* Removes every database dbtest_open made on the backend. */
void dbtest_backend_teardown(dbtest_backend_t *b);
/* Runs SQL that returns one integer, and returns it (fails the test on error). */
int64_t dbtest_query_int(hv_db_t *db, const char *sql);
/* Runs a cmocka group once per available backend; prints a NOT RUN line for PostgreSQL
 * when HV_TEST_PG_URL is unset. Returns the number of failures. */
int dbtest_run_group(const char *name, const struct CMUnitTest *tests, size_t count);

#endif
