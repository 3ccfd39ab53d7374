/*
 * fhir_to_v2.c — FHIR → HL7 v2. Placeholder until the outbound mapping lands: it
 * answers "not supported" so that callers can be written against the interface.
 */
#include "config.h"

#include "mappings/mappings.h"

int hv_map_fhir_to_v2(const char *json, size_t len, const char *structure,
                      const hv_map_opts_t *opts, hv_buf_t *msg, hv_map_result_t *out,
                      hv_error_t *err) {
    (void)json, (void)len, (void)structure, (void)opts, (void)msg, (void)out;
    hv_error_set(err, HV_ENOTSUP, NULL, "FHIR to HL7 v2 mapping is not supported yet");
    return HV_ENOTSUP;
}
