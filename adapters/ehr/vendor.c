/*
 * vendor.c — the table of EHR vendors: the generic FHIR R4 server here, Epic and
 * Oracle Health (Cerner) from their folders. The other vendors of the plan
 * (athenahealth, MEDITECH, Allscripts/Veradigm, NextGen, eClinicalWorks) expose
 * standard SMART backend-services FHIR R4 APIs (ONC §170.315(g)(10)) and connect
 * as "fhir", or send HL7 v2 feeds (docs/ehr.md).
 */
#include "config.h"
#include "adapters/ehr/ehr.h"
#include "adapters/cerner/cerner.h"
#include "adapters/epic/epic.h"

#include <string.h>

const hv_ehr_vendor_t hv_ehr_vendor_fhir = {
    "fhir",
    "Generic FHIR R4 (athenahealth, MEDITECH, Veradigm, NextGen, eClinicalWorks, HAPI, …)",
    "The FHIR base URL; for SMART backend services a client id and a private key (RS384 or ES384) or a "
    "client secret; nothing for an open server.",
    0,
    "RS384",
    100,
    1000,
    NULL,
    "system",
    NULL,
    1,
};

static const hv_ehr_vendor_t *const vendors[] = {&hv_epic_vendor, &hv_cerner_vendor, &hv_ehr_vendor_fhir,
                                                 NULL};

const hv_ehr_vendor_t *const *hv_ehr_vendors(void) { return vendors; }

const hv_ehr_vendor_t *hv_ehr_vendor_find(const char *name) {
    size_t i;
    for (i = 0; name != NULL && vendors[i] != NULL; i++)
        if (strcmp(vendors[i]->name, name) == 0) return vendors[i];
    return NULL;
}
