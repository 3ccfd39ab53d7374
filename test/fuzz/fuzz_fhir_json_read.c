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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(struct json_object *a, struct json_object *b) {
    enum json_type t = json_object_get_type(a);
    if (t != json_object_get_type(b))
        return 0;
    switch (t) {
    case json_type_null:
        return 1;
    case json_type_boolean:
        return json_object_get_boolean(a) == json_object_get_boolean(b);
    case json_type_int:
        return json_object_get_int64(a) == json_object_get_int64(b) &&
               json_object_get_uint64(a) == json_object_get_uint64(b);
    case json_type_double:
        return memcmp(&(double){json_object_get_double(a)}, &(double){json_object_get_double(b)},
                      sizeof(double)) == 0 &&
               strcmp(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN),
                      json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN)) == 0;
    case json_type_string:
        return json_object_get_string_len(a) == json_object_get_string_len(b) &&
               memcmp(json_object_get_string(a), json_object_get_string(b),
                      (size_t)json_object_get_string_len(a)) == 0;
    case json_type_array: {
        size_t n = json_object_array_length(a);
        if (n != json_object_array_length(b))
            return 0;
        for (size_t i = 0; i < n; i++)
            if (!same(json_object_array_get_idx(a, i), json_object_array_get_idx(b, i)))
                return 0;
        return 1;
    }
    case json_type_object: {
        struct json_object_iterator ia = json_object_iter_begin(a), ea = json_object_iter_end(a);
        struct json_object_iterator ib = json_object_iter_begin(b), eb = json_object_iter_end(b);
        if (json_object_object_length(a) != json_object_object_length(b))
            return 0;
        while (!json_object_iter_equal(&ia, &ea) && !json_object_iter_equal(&ib, &eb)) {
            if (strcmp(json_object_iter_peek_name(&ia), json_object_iter_peek_name(&ib)) != 0 ||
                !same(json_object_iter_peek_value(&ia), json_object_iter_peek_value(&ib)))
                return 0;
            json_object_iter_next(&ia);
            json_object_iter_next(&ib);
        }
        return 1;
    }
    }
    return 0;
}

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
    if (end != size || !same(fast, ref))
        abort();
    json_object_put(ref);
    json_tokener_free(tok);
out:
    json_object_put(fast);
    return 0;
}
