/* tests.h — the registry of mappings unit-test groups (one per source file of mappings/). */
#ifndef HV_TEST_MAPPINGS_TESTS_H
#define HV_TEST_MAPPINGS_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "engine/engine.h"
#include "mappings/mappings.h"

int run_v2_load_tests(void);
int run_v2_to_fhir_tests(void);
int run_v2_local_tests(void);
int run_v2_cond_tests(void);
int run_v2_apply_tests(void);
int run_v2_values_tests(void);
int run_corpus_tests(void);
int run_jtree_tests(void);

/* Maps a NUL-terminated message (segments separated by \r); asserts HV_OK. The result is
 * the caller's (hv_map_result_free). */
void test_map(const char *msg, const hv_map_opts_t *opts, hv_map_result_t *out);
/* The first entry resource of a type in a Bundle (borrowed), or NULL; *request_url (may be
 * NULL) receives its request.url. */
json_object *test_entry(json_object *bundle, const char *type, size_t nth, const char **request_url);
/* The number of entries of a type. */
size_t test_count(json_object *bundle, const char *type);
/* The string at a dotted path with [n] indexes ("name[0].family"), or NULL. */
const char *test_str(json_object *o, const char *path);
/* The number of errors hv_fhir_validate finds in a resource (the OperationOutcome is printed
 * when there are any). */
int test_validate_errors(json_object *resource);
/* The reference folder: $HV_REFERENCE_DIR, else $HV_SRCDIR/../shared/reference; fails the
 * test when neither is set. */
const char *test_reference_dir(void);

#endif
