/* main.c — runs every ehr unit-test group; the exit status is the failure count. */
#include "tests.h"

int main(void) {
    int failed = 0;
    failed += run_page_tests();
    failed += run_schedule_tests();
    failed += run_seal_tests();
    failed += run_vendor_tests();
    failed += run_write_tests();
    return failed;
}
