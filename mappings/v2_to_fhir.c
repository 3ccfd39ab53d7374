/*
 * v2_to_fhir.c — HL7 v2 → FHIR. Placeholder until the mapping engine lands: it
 * answers "not supported" so that callers can be written against the interface.
 */
#include "config.h"

#include "mappings/mappings.h"

int hv_map_v2_to_fhir(const char *msg, size_t len, const hv_map_opts_t *opts, hv_map_result_t *out,
                      hv_error_t *err) {
    (void)msg, (void)len, (void)opts, (void)out;
    hv_error_set(err, HV_ENOTSUP, NULL, "HL7 v2 to FHIR mapping is not supported yet");
    return HV_ENOTSUP;
}
