/*
 * fuzz_search_text.c — differential fuzzing of the full text of `_text` and `_content`
 * (fhir/search_special.c): the SQLite catch-up reads a stored version's text with its own
 * JSON scan (hv__search_text_of_json), typing every member by the FHIR model as it
 * descends; the write path and PostgreSQL compute it from the json-c tree
 * (hv__search_text_of_tree). Both must give the same bytes.
 *
 * Input: any bytes (at most 64 KiB). Invariants: the scan never crashes and answers
 * HV_OK or HV_EINVAL; when json-c reads the input as JSON (depth 1024, as the catch-up
 * reads), the scan of json-c's writing of that tree (what the store keeps: one member per
 * key) gives exactly the tree's narrative and content, in the plain and the pretty form —
 * unless the tree holds a NaN or an infinity, which json-c reads and writes ("NaN") but
 * JSON (RFC 8259 §6) has not, and the scan refuses.
 */
#include "config.h"

#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/search_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* True when o holds a double that is not finite. */
static int non_finite(struct json_object *o)
{
    switch (json_object_get_type(o)) {
    case json_type_double:
        return !isfinite(json_object_get_double(o));
    case json_type_array:
        for (size_t i = 0; i < json_object_array_length(o); i++)
            if (non_finite(json_object_array_get_idx(o, i)))
                return 1;
        return 0;
    case json_type_object: {
        json_object_object_foreach(o, k, v)
        {
            (void)k;
            if (non_finite(v))
                return 1;
        }
        return 0;
    }
    default:
        return 0;
    }
}

/* Aborts unless the scan of s gives the narrative and content n, c. */
static void same_as_tree(const char *s, const char *n, const char *c)
{
    char *jn = NULL, *jc = NULL;
    if (hv__search_text_of_json(s, strlen(s), &jn, &jc) != HV_OK || strcmp(jn, n) != 0 || strcmp(jc, c) != 0)
        abort();
    hv_free(jn);
    hv_free(jc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct json_tokener *tok;
    struct json_object *tree;
    char *n = NULL, *c = NULL;
    int rc;
    if (size > (1 << 16))
        return 0;
    rc = hv__search_text_of_json((const char *)data, size, &n, &c);
    if (rc != HV_OK && rc != HV_EINVAL)
        abort();
    hv_free(n);
    hv_free(c);
    n = c = NULL;
    tok = json_tokener_new_ex(1024);
    if (tok == NULL)
        return 0;
    tree = json_tokener_parse_ex(tok, (const char *)data, (int)size);
    json_tokener_free(tok);
    if (tree == NULL)
        return 0;
    if (non_finite(tree)) {
        json_object_put(tree);
        return 0;
    }
    if (hv__search_text_of_tree(tree, &n, &c) != HV_OK)
        abort();
    same_as_tree(json_object_to_json_string_ext(tree, JSON_C_TO_STRING_PLAIN), n, c);
    same_as_tree(json_object_to_json_string_ext(tree, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE), n, c);
    hv_free(n);
    hv_free(c);
    json_object_put(tree);
    return 0;
}
