/*
 * json_same_tree.c — strict equality of two json-c trees (json_same_tree.h). fhir/json.c's
 * equality is FHIR's (key order ignored); the reader's contract is json-c's tree exactly.
 */
#include "config.h"

#include <string.h>

#include "test/support/json_same_tree.h"

int hv_test_json_same_tree(struct json_object *a, struct json_object *b) {
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
            if (!hv_test_json_same_tree(json_object_array_get_idx(a, i),
                                        json_object_array_get_idx(b, i)))
                return 0;
        return 1;
    }
    case json_type_object: {
        struct json_object_iterator ia = json_object_iter_begin(a), ea = json_object_iter_end(a);
        struct json_object_iterator ib = json_object_iter_begin(b);
        if (json_object_object_length(a) != json_object_object_length(b))
            return 0;
        for (; !json_object_iter_equal(&ia, &ea);
             json_object_iter_next(&ia), json_object_iter_next(&ib)) {
            if (strcmp(json_object_iter_peek_name(&ia), json_object_iter_peek_name(&ib)) != 0 ||
                !hv_test_json_same_tree(json_object_iter_peek_value(&ia),
                                        json_object_iter_peek_value(&ib)))
                return 0;
        }
        return 1;
    }
    }
    return 0;
}
