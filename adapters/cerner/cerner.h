/*
 * cerner.h — Oracle Health (Cerner) Millennium FHIR R4 quirks on top of the
 * generic client of adapters/ehr (see cerner.c and docs/ehr.md, "Oracle Health").
 */
#ifndef HV_CERNER_H
#define HV_CERNER_H
#include "adapters/ehr/ehr.h"

extern const hv_ehr_vendor_t hv_cerner_vendor;

/* Checks that a base URL ends in a tenant id segment (.../r4/{tenant}). */
int hv_cerner_check_base_url(const char *url, hv_error_t *err);

#endif /* HV_CERNER_H */
