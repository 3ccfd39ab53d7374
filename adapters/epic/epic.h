/*
 * epic.h — Epic's FHIR R4 quirks on top of the generic client of adapters/ehr
 * (see epic.c and docs/ehr.md, "Epic").
 */
#ifndef HV_EPIC_H
#define HV_EPIC_H
#include "adapters/ehr/ehr.h"

extern const hv_ehr_vendor_t hv_epic_vendor;

#endif /* HV_EPIC_H */
