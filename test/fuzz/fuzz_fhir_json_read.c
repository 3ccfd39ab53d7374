/*
 * fuzz_fhir_json_read.c — differential fuzzing of the fast JSON reader (fhir/json_read.c)
 * against json-c's tokener, which it stands in for.
 *
 * Invariant: whenever hv__fhir_json_read returns a tree, json_tokener_parse_ex in strict mode
 * with the same depth cap accepts the same text, to its end (whitespace after it), with a
 * tree equal node for node: the same json-c types, object keys in the same order, strings of
 * the same bytes and length, integers of the same value, doubles of the same value and the
 * same serialization (the text they keep). The reader may decline what json-c accepts; it
 * must never accept what json-c refuses, or build another tree.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhir_int.h"
#include "test/support/json_same_tree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    /* The first byte picks the depth cap, so that the limit's edge is reached at small sizes. */
    int depth = size > 0 ? 2 + data[0] % 12 : 8;
    struct json_object *fast = hv__fhir_json_read(text, size, depth);
    if (fast == NULL || size > INT32_MAX)
        goto out;
    struct json_tokener *tok = json_tokener_new_ex(depth);
    if (tok == NULL)
        abort();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    struct json_object *ref = json_tokener_parse_ex(tok, text, (int)size);
    if (json_tokener_get_error(tok) != json_tokener_success || ref == NULL)
        abort();
    size_t end = json_tokener_get_parse_end(tok);
    while (end < size && (text[end] == ' ' || text[end] == '\t' || text[end] == '\n' ||
                          text[end] == '\r'))
        end++;
    if (end != size || !hv_test_json_same_tree(fast, ref))
        abort();
    json_object_put(ref);
    json_tokener_free(tok);
out:
    json_object_put(fast);
    return 0;
}
