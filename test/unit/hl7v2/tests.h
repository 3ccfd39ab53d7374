/* tests.h — the registry of hl7v2 unit-test groups (one per source file of adapters/hl7v2/). */
#ifndef HV_TEST_HL7V2_TESTS_H
#define HV_TEST_HL7V2_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "adapters/hl7v2/hl7v2.h"
#include "engine/engine.h"

int run_corpus_tests(void);
int run_parse_tests(void);
int run_escape_tests(void);
int run_charset_tests(void);
int run_path_tests(void);
int run_ack_tests(void);
int run_mllp_tests(void);
int run_sender_tests(void);

/* Parses a NUL-terminated message into a fresh arena (freed by the caller); asserts success. */
hv_hl7v2_msg_t *test_parse(hv_arena_t **arena, const char *text);

#endif
