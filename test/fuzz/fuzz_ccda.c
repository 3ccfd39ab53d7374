/*
 * fuzz_ccda.c — fuzzes the C-CDA reader (adapters/ccda: hv_map_ccda_to_fhir).
 *
 * Invariants: no crash on any bytes; a failure carries a message (and a syntax
 * error a line); a success yields a Bundle and an OperationOutcome whose JSON text
 * parses back to the same tree, and mapping the same input again gives the same
 * bytes (the mapping is deterministic).
 */
#include "config.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhir.h"
#include "mappings/mappings.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_json(struct json_object *o) {
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    struct json_object *back = json_tokener_parse(text);
    if (back == NULL || !hv_fhir_json_equal(o, back)) abort();
    json_object_put(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hv_map_result_t a = {0}, b = {0};
    hv_error_t err;
    hv_error_clear(&err);
    int rc = hv_map_ccda_to_fhir((const char *)data, size, NULL, &a, &err);
    if (rc != HV_OK) {
        if (err.message[0] == '\0' || a.bundle != NULL) abort();
        if (rc == HV_EPROTO && err.line <= 0) abort();
        return 0;
    }
    if (a.bundle == NULL || a.outcome == NULL) abort();
    check_json(a.bundle);
    check_json(a.outcome);
    if (hv_map_ccda_to_fhir((const char *)data, size, NULL, &b, &err) != HV_OK) abort();
    if (strcmp(json_object_to_json_string(a.bundle), json_object_to_json_string(b.bundle)) != 0)
        abort();
    hv_map_result_free(&a);
    hv_map_result_free(&b);
    return 0;
}
