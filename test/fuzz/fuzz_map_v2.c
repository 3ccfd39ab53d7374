/*
 * fuzz_map_v2.c — HL7 v2 → FHIR (mappings/v2_to_fhir.c) under arbitrary input.
 * Invariants (abort on violation):
 *   - the mapper never crashes, and answers HV_OK or an error without a result;
 *   - on HV_OK the Bundle is a transaction whose JSON text parses back to the same text,
 *     every entry has a fullUrl and a PUT request, and an OperationOutcome is given;
 *   - mapping is deterministic: the same input gives the same Bundle;
 *   - the JSON text result (hv_map_opts_t.text) is exactly json-c's plain bytes (no slash
 *     escapes) of the object result, Bundle and OperationOutcome, and reads back to the same text;
 *   - in lenient mode a message the strict mode maps gives the same Bundle.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "mappings/mappings.h"

#define CHECK(c)                                                                        \
    do {                                                                                \
        if (!(c)) {                                                                     \
            fprintf(stderr, "fuzz_map_v2: invariant failed: %s (line %d)\n", #c, __LINE__); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

static void check_bundle(json_object *b) {
    json_object *entries = NULL, *back;
    const char *text;
    size_t i;
    CHECK(b != NULL);
    CHECK(strcmp(hv_json_get_str(b, "resourceType"), "Bundle") == 0);
    CHECK(strcmp(hv_json_get_str(b, "type"), "transaction") == 0);
    text = json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN);
    back = json_tokener_parse(text);
    CHECK(back != NULL);
    /* Compared as text: a decimal written as "5" reads back as an integer. */
    CHECK(strcmp(json_object_to_json_string_ext(back, JSON_C_TO_STRING_PLAIN), text) == 0);
    json_object_put(back);
    if (json_object_object_get_ex(b, "entry", &entries)) {
        CHECK(json_object_array_length(entries) > 0);
        for (i = 0; i < json_object_array_length(entries); i++) {
            json_object *e = json_object_array_get_idx(entries, i), *req = NULL;
            CHECK(hv_json_get_str(e, "fullUrl") != NULL);
            CHECK(json_object_object_get_ex(e, "request", &req));
            CHECK(strcmp(hv_json_get_str(req, "method"), "PUT") == 0);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hv_map_result_t a, b, c;
    hv_map_opts_t o, t;
    hv_error_t err;
    int ra, rb, rc;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    memset(&c, 0, sizeof(c));
    memset(&o, 0, sizeof(o));
    memset(&t, 0, sizeof(t));
    t.text = 1;
    if (size > (1u << 16)) return 0;
    ra = hv_map_v2_to_fhir((const char *)data, size, NULL, &a, &err);
    rb = hv_map_v2_to_fhir((const char *)data, size, &t, &b, &err);
    CHECK(ra == rb);
    if (ra == HV_OK) {
        const int plain = JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE;
        json_object *back;
        check_bundle(a.bundle);
        CHECK(a.outcome != NULL);
        CHECK(b.bundle == NULL && b.bundle_text != NULL && b.outcome_text != NULL);
        CHECK(strlen(b.bundle_text) == b.bundle_len);
        CHECK(strcmp(json_object_to_json_string_ext(a.bundle, plain), b.bundle_text) == 0);
        CHECK(strcmp(json_object_to_json_string_ext(a.outcome, plain), b.outcome_text) == 0);
        CHECK(a.clean == b.clean);
        back = json_tokener_parse(b.bundle_text);
        /* As text: a decimal written "5" reads back as an integer. */
        CHECK(back != NULL && strcmp(json_object_to_json_string_ext(back, plain), b.bundle_text) == 0);
        json_object_put(back);
    } else {
        CHECK(a.bundle == NULL && a.outcome == NULL);
        CHECK(b.bundle_text == NULL && b.outcome_text == NULL);
    }
    o.lenient_identity = 1;
    o.explain = 1;
    rc = hv_map_v2_to_fhir((const char *)data, size, &o, &c, &err);
    if (rc == HV_OK) {
        check_bundle(c.bundle);
        CHECK(c.explain != NULL);
        if (ra == HV_OK) CHECK(json_object_equal(a.bundle, c.bundle));
    } else {
        CHECK(ra != HV_OK);
    }
    hv_map_result_free(&a);
    hv_map_result_free(&b);
    hv_map_result_free(&c);
    return 0;
}
