/*
 * ccda_to_fhir.c — C-CDA → FHIR. Placeholder until the C-CDA reader lands: it
 * answers "not supported" so that callers can be written against the interface.
 */
#include "config.h"

#include "mappings/mappings.h"

int hv_map_ccda_to_fhir(const char *xml, size_t len, const hv_map_opts_t *opts,
                        hv_map_result_t *out, hv_error_t *err) {
    (void)xml, (void)len, (void)opts, (void)out;
    hv_error_set(err, HV_ENOTSUP, NULL, "C-CDA to FHIR mapping is not supported yet");
    return HV_ENOTSUP;
}
