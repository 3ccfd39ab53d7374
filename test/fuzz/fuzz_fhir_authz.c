/*
 * fuzz_fhir_authz.c — fuzzes the SMART scope check of a stored resource
 * (hv__authz_resource, fhir/rest_authz.c): the JSON a store row holds is walked for
 * Patient references and category codings, whatever its shape.
 *
 * Input: one byte choosing the resource type (Observation, Patient, Condition), the
 * rest the resource text. Invariants:
 *   - the decision is the same from the text and from its parsed tree, and the same
 *     when asked twice (no hidden state);
 *   - an unrestricted token (user/ *.cruds) is always allowed, even on text that is
 *     not JSON;
 *   - a patient/ *.rs token of patient "p1" is allowed only when the text holds
 *     "Patient/p1" (or, for a Patient, the id "p1"): a grant never comes from nothing;
 *   - a category-limited token is allowed only when the text holds the category code.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/store_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static hv_auth_principal_t *principal(const char *scope, const char *patient)
{
    hv_auth_principal_t *p = hv_calloc(1, sizeof(*p));
    if (p == NULL || hv_auth_scopes_parse(scope, &p->scopes, NULL) != HV_OK)
        abort();
    strcpy(p->patient, patient);
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const types[] = {"Observation", "Patient", "Condition"};
    static hv_auth_principal_t *all, *pat, *cat;
    const char *type;
    char *text;
    struct json_object *tree;
    int a, b;
    if (all == NULL) {
        all = principal("user/*.cruds", "");
        pat = principal("patient/*.rs", "p1");
        cat = principal("user/*.rs?category=zq9", "");
    }
    if (size < 1 || size > 65536)
        return 0;
    type = types[data[0] % 3];
    text = hv_strndup((const char *)data + 1, size - 1);
    if (text == NULL || strlen(text) != size - 1) {
        hv_free(text);
        return 0;
    }
    if (hv__authz_resource(all, HV_AUTH_READ, type, NULL, NULL, text) != HV_OK)
        abort();
    a = hv__authz_resource(pat, HV_AUTH_READ, type, NULL, NULL, text);
    if (a != hv__authz_resource(pat, HV_AUTH_READ, type, NULL, NULL, text))
        abort();
    if (a == HV_OK && strstr(text, strcmp(type, "Patient") == 0 ? "p1" : "Patient/p1") == NULL)
        abort();
    b = hv__authz_resource(cat, HV_AUTH_SEARCH, type, NULL, NULL, text);
    if (b == HV_OK && strstr(text, "zq9") == NULL)
        abort();
    tree = json_tokener_parse(text);
    if (tree != NULL) {
        if (hv__authz_resource(pat, HV_AUTH_READ, type, NULL, tree, NULL) != a ||
            hv__authz_resource(cat, HV_AUTH_SEARCH, type, NULL, tree, NULL) != b)
            abort();
        json_object_put(tree);
    }
    hv_free(text);
    return 0;
}
