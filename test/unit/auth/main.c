/* main.c — runs every auth unit-test group; the exit status is the failure count. */
#include "tests.h"

int main(void) {
    int failed = 0;
    failed += run_scopes_tests();
    failed += run_jwt_tests();
    failed += run_password_tests();
    failed += run_ratelimit_tests();
    return failed;
}
