/* tests.h — the registry of auth unit-test groups (one per source file). */
#ifndef HV_TEST_AUTH_TESTS_H
#define HV_TEST_AUTH_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/auth/auth_int.h"

int run_scopes_tests(void);
int run_jwt_tests(void);
int run_password_tests(void);
int run_ratelimit_tests(void);

#endif
