/* tests.h — what the audit unit-test groups share. */
#ifndef HV_TEST_AUDIT_TESTS_H
#define HV_TEST_AUDIT_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "destinations/audit/audit_int.h"

int run_event_tests(void);
int run_chain_tests(void);
int run_alerts_tests(void);
int run_consent_tests(void);
int run_journal_tests(void);
int run_block_tests(void);
int run_record_tests(void);

#endif
