/*
 * fuzz_fhir_to_v2.c — fuzzes the outbound mapping (mappings/fhir_to_v2.c).
 *
 * The first byte picks the structure (even: ADT_A08, odd: ORU_R01); the rest is the
 * FHIR JSON. Invariants: no crash; a failure carries a message and writes nothing;
 * a success writes a message that the hl7v2 parser accepts, whose MSH-9 is the
 * structure asked for, with an OperationOutcome.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/hl7v2/hl7v2.h"
#include "mappings/mappings.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hv_map_result_t r = {0};
    hv_error_t err;
    hv_buf_t out;
    if (size < 1) return 0;
    const char *type = (data[0] & 1) ? "ORU_R01" : "ADT_A08";
    hv_error_clear(&err);
    hv_buf_init(&out, 0);
    int rc = hv_map_fhir_to_v2((const char *)data + 1, size - 1, type, NULL, &out, &r, &err);
    if (rc != HV_OK) {
        if (err.message[0] == '\0' || out.len != 0 || r.outcome != NULL) abort();
        goto done;
    }
    if (r.outcome == NULL || out.len == 0) abort();
    {
        hv_arena_t *arena = hv_arena_new(0);
        hv_hl7v2_msg_t m;
        char *msh9 = NULL;
        size_t n = 0;
        if (hv_hl7v2_parse(arena, out.data, out.len, NULL, &m, &err, NULL) != HV_OK) abort();
        if (hv_hl7v2_get_text(&m, "MSH-9.3", &msh9, &n) != HV_OK) abort();
        if (strcmp(msh9, (data[0] & 1) ? "ORU_R01" : "ADT_A01") != 0) abort();
        hv_arena_free(arena);
    }
done:
    hv_map_result_free(&r);
    hv_buf_release(&out);
    return 0;
}
