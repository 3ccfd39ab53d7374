/* main.c — runs every terminology unit-test group; the exit status is the failure count. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests.h"
#include "terminology/terminology.h"

const char *test_essence_path(void) {
    static char path[4096];
    const char *src = getenv("HV_SRCDIR");
    if (src == NULL) return NULL;
    snprintf(path, sizeof path, "%s/terminology/data/ucum-essence.xml", src);
    return path;
}

const char *test_reference_dir(void) {
    static char path[4096];
    static const char *const rel[] = {"/../shared/reference", "/../../shared/reference"};
    const char *src = getenv("HV_SRCDIR");
    const char *ref = getenv("HV_REFERENCE_DIR");
    size_t i;
    struct stat st;
    if (ref != NULL && ref[0] != '\0') return ref;
    if (src == NULL) return NULL;
    /* Beside the checkout (CI), or beside the folder of worktrees (/work/wt/NAME). */
    for (i = 0; i < HV_ARRAY_LEN(rel); i++) {
        snprintf(path, sizeof path, "%s%s", src, rel[i]);
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return path;
    }
    snprintf(path, sizeof path, "%s%s", src, rel[0]);
    return path; /* absent: the tests that need it fail and name this path */
}

static const char *backend_url; /* NULL: SQLite */

int test_store_open(char *dir, size_t dirlen, hv_db_t **db) {
    hv_error_t err;
    snprintf(dir, dirlen, "/tmp/hv_term_test_XXXXXX");
    if (mkdtemp(dir) == NULL) return -1;
    hv_error_clear(&err);
    if (backend_url != NULL) {
        hv_db_t *admin = NULL;
        if (hv_db_open(backend_url, dir, "hvt_terminology", &admin, &err) != HV_OK) return -1;
        (void)hv_db_exec(admin, "DROP SCHEMA IF EXISTS hvt_terminology CASCADE");
        hv_db_close(admin);
    }
    if (hv_db_open(backend_url, dir, "hvt_terminology", db, &err) != HV_OK) {
        fprintf(stderr, "cannot open the test store: %s\n", err.message);
        return -1;
    }
    return hv_terminology_store_migrate(*db, &err) == HV_OK ? 0 : -1;
}

void test_store_close(const char *dir, hv_db_t *db) {
    char cmd[256];
    if (backend_url != NULL && db != NULL)
        (void)hv_db_exec(db, "DROP SCHEMA IF EXISTS hvt_terminology CASCADE");
    hv_db_close(db);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

int test_run_on_backends(const char *name, const struct CMUnitTest *tests, size_t count) {
    const char *pg = getenv("HV_TEST_PG_URL");
    char label[128];
    int failed;
    backend_url = NULL;
    snprintf(label, sizeof label, "%s[sqlite]", name);
    failed = _cmocka_run_group_tests(label, tests, count, NULL, NULL);
    if (pg == NULL || pg[0] == '\0') {
        printf("[ NOT RUN  ] %s[postgresql]: HV_TEST_PG_URL is not set, so the PostgreSQL variant "
               "of these %zu tests did not run (start one with scripts/pg.sh)\n", name, count);
        return failed;
    }
    backend_url = pg;
    snprintf(label, sizeof label, "%s[postgresql]", name);
    failed += _cmocka_run_group_tests(label, tests, count, NULL, NULL);
    backend_url = NULL;
    return failed;
}

int main(void) {
    int failed = 0;
    failed += run_ucum_tests();
    failed += run_ucum_functional_tests();
    failed += run_store_tests();
    failed += run_standardize_tests();
    return failed;
}
