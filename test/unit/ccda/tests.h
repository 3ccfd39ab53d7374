/* tests.h — the registry of ccda unit-test groups (one per source file of adapters/ccda/). */
#ifndef HV_TEST_CCDA_TESTS_H
#define HV_TEST_CCDA_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "adapters/ccda/ccda.h"
#include "engine/engine.h"

struct json_object;

int run_datatypes_tests(void);
int run_ccda_to_fhir_tests(void);
int run_entries_tests(void);
int run_admin_tests(void);
int run_corpus_tests(void);

/* Maps a NUL-terminated document; asserts success and returns the result (free it). */
hv_map_result_t test_map(const char *xml);
/* The resources of a Bundle of one type, in order (a new array; put it). */
struct json_object *test_resources(struct json_object *bundle, const char *type);
/* A minimal C-CDA document with the given body (components of structuredBody). */
char *test_doc(const char *body);

#endif
