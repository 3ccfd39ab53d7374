/* main.c — runs every fhir unit-test group; the exit status is the failure count. */
#include "tests.h"

int main(void) {
    int failed = 0;
    failed += run_model_tests();
    failed += run_json_tests();
    failed += run_json_write_tests();
    failed += run_json_read_tests();
    failed += run_xml_tests();
    failed += run_validate_tests();
    failed += run_profile_tests();
    failed += run_examples_tests();
    return failed;
}
