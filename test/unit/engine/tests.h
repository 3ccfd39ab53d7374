/* tests.h — the registry of engine unit-test groups (one per source file). */
#ifndef HV_TEST_ENGINE_TESTS_H
#define HV_TEST_ENGINE_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/engine.h"

int run_arena_tests(void);
int run_buf_tests(void);
int run_config_tests(void);
int run_json_tests(void);
int run_router_tests(void);
int run_db_tests(void);
int run_storage_tests(void);
int run_channel_conf_tests(void);
int run_channel_split_tests(void);
int run_channel_set_tests(void);
int run_channel_pipe_tests(void);

#endif
