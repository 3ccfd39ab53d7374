/*
 * fuzz_fhir_json_read.c — differential fuzzing of the fast JSON reader (fhir/json_read.c)
 * against json-c's tokener, which it stands in for.
 *
 * Invariant: whenever hv__fhir_json_read returns a tree, json_tokener_parse_ex in strict mode
 * with the same depth cap accepts the same text, to its end (whitespace after it), with a
 * tree equal node for node: the same json-c types, object keys in the same order, strings of
 * the same bytes and length, integers of the same value, doubles of the same value and the
 * same serialization (the text they keep). The reader may decline what json-c accepts; it
 * must never accept what json-c refuses, or build another tree. And since the reader is the
 * only UTF-8 check of a text it reads (hv_fhir_json_parse checks only what it declines), a
 * text it reads is well-formed UTF-8, by the decoding below (RFC 3629 §4, by code points).
 */
#include "config.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhir_int.h"
#include "test/support/json_same_tree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whether s[0..n) is well-formed UTF-8: each sequence decoded to its code point, which must
 * need that many bytes, not be a surrogate and not pass U+10FFFF. */
static int utf8_ok(const uint8_t *s, size_t n) {
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    for (size_t i = 0; i < n;) {
        size_t len = s[i] < 0x80       ? 1
                     : s[i] >> 5 == 6  ? 2
                     : s[i] >> 4 == 14 ? 3
                     : s[i] >> 3 == 30 ? 4
                                       : 0;
        if (len == 0 || n - i < len)
            return 0;
        uint32_t cp = len == 1 ? s[i] : s[i] & (0x7Fu >> len);
        for (size_t k = 1; k < len; k++) {
            if (s[i + k] >> 6 != 2)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3Fu);
        }
        if (cp < min[len] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return 0;
        i += len;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    /* The first byte picks the depth cap, so that the limit's edge is reached at small sizes. */
    int depth = size > 0 ? 2 + data[0] % 12 : 8;
    struct json_object *fast = hv__fhir_json_read(text, size, depth);
    if (fast == NULL || size > INT32_MAX)
        goto out;
    if (!utf8_ok(data, size))
        abort();
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
