/* main.c — runs every audit unit-test group; the exit status is the failure count. */
#include "tests.h"

int main(void) {
    int failed = 0;
    failed += run_event_tests();
    failed += run_chain_tests();
    failed += run_alerts_tests();
    failed += run_consent_tests();
    failed += run_journal_tests();
    failed += run_block_tests();
    failed += run_record_tests();
    return failed;
}
