/*
 * epic.c — what Epic's FHIR R4 API does differently from the generic FHIR R4
 * client, from Epic's public documentation (fhir.epic.com, "Backend OAuth 2.0"
 * and "Bulk Data"); each difference is one field of the vendor table:
 *
 *  - Backend services only (SMART App Launch 2.0 §Backend Services): a private
 *    key is required, the client assertion is signed with RS384 and carries a
 *    unique `jti`, `aud` is the token endpoint found by discovery. Epic's access
 *    tokens are not persistent (no refresh token, about an hour): the client
 *    asks for a new one when the old one is near expiry and never stores them.
 *  - Searches of clinical resources need a patient: Epic answers 400 to
 *    `Observation?_lastUpdated=…` without `patient=`. Those types are searched
 *    once per Patient already synced from the connection (patient_scoped).
 *  - Search Bundles may hold OperationOutcome entries with search.mode
 *    "outcome" (warnings such as "some results were filtered"): the generic page
 *    parser keeps them apart and the sync records them as warnings.
 *  - Bulk export is at the Group level (Group/{id}/$export): the connection
 *    names its group with "group_id".
 *  - _count is honoured up to 1,000 per page.
 */
#include "config.h"
#include "adapters/epic/epic.h"

static const char *const epic_patient_scoped[] = {
    "AllergyIntolerance", "CarePlan", "CareTeam", "Condition", "Device", "DiagnosticReport",
    "DocumentReference", "Encounter", "Goal", "Immunization", "MedicationRequest",
    "MedicationStatement", "Observation", "Procedure", "ServiceRequest", NULL,
};

const hv_ehr_vendor_t hv_epic_vendor = {
    "epic",
    "Epic",
    "A backend-services client registered on Epic's App Orchard / Showroom: its client id, and the "
    "private key (PEM, RSA 2048+) whose public key (JWKS) is registered with the app; RS384 assertions. "
    "Bulk sync needs the Group id (group_id).",
    1,
    "RS384",
    100,
    1000,
    epic_patient_scoped,
    "group",
    NULL,
    0, /* Epic offers no _history on its R4 APIs */
};
