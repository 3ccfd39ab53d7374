/*
 * fuzz_fhir_patch.c — fuzzes the patch engines of fhir/rest_patch.c: JSON Patch
 * (RFC 6902) and FHIRPath Patch (FHIR R4 fhirpatch.html).
 *
 * Input: a JSON document, a newline, then the patch — a JSON array (JSON Patch) or
 * a Parameters object (FHIRPath Patch). Invariants: applying never crashes; a
 * failure carries a message; applying the same patch to two copies of the
 * document gives the same status and equal results (the engines are
 * deterministic); a successful result is a JSON tree whose text parses back equal
 * to it; a successful JSON Patch followed by "test" operations of every top-level
 * member it left holds.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/store_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct json_object *parse(const char *s, size_t n)
{
    struct json_tokener *tok;
    struct json_object *o;
    if (n > (1 << 16))
        return NULL;
    tok = json_tokener_new_ex(32);
    if (tok == NULL)
        return NULL;
    o = json_tokener_parse_ex(tok, s, (int)n);
    if (json_tokener_get_error(tok) != json_tokener_success) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

static int apply(struct json_object *doc, struct json_object *patch, char *msg, size_t msglen)
{
    int failed = 0;
    msg[0] = '\0';
    if (json_object_is_type(patch, json_type_array))
        return hv__json_patch_apply(doc, patch, &failed, msg, msglen);
    return hv__fhirpath_patch_apply(doc, patch, msg, msglen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data, *nl = memchr(data, '\n', size);
    struct json_object *doc = NULL, *patch = NULL, *a = NULL, *b = NULL, *back = NULL;
    char m1[400], m2[400];
    int r1, r2;
    if (nl == NULL)
        return 0;
    doc = parse(s, (size_t)(nl - s));
    patch = parse(nl + 1, size - (size_t)(nl - s) - 1);
    if (doc == NULL || patch == NULL || !json_object_is_type(doc, json_type_object) ||
        !(json_object_is_type(patch, json_type_array) || json_object_is_type(patch, json_type_object)))
        goto out;
    if (json_object_deep_copy(doc, &a, NULL) != 0 || json_object_deep_copy(doc, &b, NULL) != 0)
        goto out;
    r1 = apply(a, patch, m1, sizeof(m1));
    r2 = apply(b, patch, m2, sizeof(m2));
    if (r1 != r2 || (r1 == HV_OK && !hv_fhir_json_equal(a, b)))
        abort(); /* not deterministic */
    if (r1 != HV_OK && r1 != HV_ENOMEM && m1[0] == '\0')
        abort(); /* a failure without a message */
    if (r1 == HV_OK) {
        const char *text = json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN);
        back = parse(text, strlen(text));
        if (back == NULL || !hv_fhir_json_equal(back, a))
            abort();
        if (json_object_is_type(patch, json_type_array)) {
            /* Every member the patch left is what a "test" finds there. */
            struct json_object *tests = json_object_new_array();
            int failed = 0;
            char m3[400];
            json_object_object_foreach(a, key, val)
            {
                struct json_object *t, *v = NULL;
                char path[600];
                size_t k = 1;
                if (strlen(key) > 250)
                    continue; /* the escaped pointer would not fit */
                t = json_object_new_object();
                path[0] = '/';
                for (const char *p = key; *p != '\0' && k + 3 < sizeof(path); p++) {
                    if (*p == '~' || *p == '/') {
                        path[k++] = '~';
                        path[k++] = *p == '~' ? '0' : '1';
                    } else {
                        path[k++] = *p;
                    }
                }
                path[k] = '\0';
                json_object_deep_copy(val, &v, NULL);
                hv_json_set_str(t, "op", "test");
                hv_json_set_str(t, "path", path);
                hv_json_set(t, "value", v);
                json_object_array_add(tests, t);
            }
            if (hv__json_patch_apply(a, tests, &failed, m3, sizeof(m3)) != HV_OK)
                abort();
            json_object_put(tests);
        }
    }
out:
    json_object_put(doc);
    json_object_put(patch);
    json_object_put(a);
    json_object_put(b);
    json_object_put(back);
    return 0;
}
