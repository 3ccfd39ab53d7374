/* main.c — runs every terminology unit-test group; the exit status is the failure count. */
#include <stdio.h>
#include <stdlib.h>

#include "tests.h"

const char *test_essence_path(void) {
    static char path[4096];
    const char *src = getenv("HV_SRCDIR");
    if (src == NULL) return NULL;
    snprintf(path, sizeof path, "%s/terminology/data/ucum-essence.xml", src);
    return path;
}

const char *test_reference_dir(void) {
    static char path[4096];
    const char *src = getenv("HV_SRCDIR");
    const char *ref = getenv("HV_REFERENCE_DIR"); /* for worktrees not beside shared/ */
    if (ref != NULL && ref[0] != '\0') return ref;
    if (src == NULL) return NULL;
    snprintf(path, sizeof path, "%s/../shared/reference", src);
    return path;
}

int main(void) {
    int failed = 0;
    failed += run_ucum_tests();
    failed += run_ucum_functional_tests();
    failed += run_store_tests();
    return failed;
}
