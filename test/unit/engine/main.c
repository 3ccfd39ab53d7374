/* main.c — runs every engine unit-test group; the exit status is the failure count. */
#include "tests.h"

int main(void) {
    int failed = 0;
    failed += run_arena_tests();
    failed += run_buf_tests();
    failed += run_config_tests();
    failed += run_json_tests();
    failed += run_router_tests();
    failed += run_db_tests();
    failed += run_storage_tests();
    failed += run_channel_conf_tests();
    failed += run_channel_split_tests();
    failed += run_channel_set_tests();
    failed += run_channel_pipe_tests();
    return failed;
}
