/* compartments_gen.c — generated from the FHIR R4 CompartmentDefinitions
 * (CompartmentDefinition-{patient,encounter,practitioner,relatedPerson,device}.json) by fhir/gen/gen_compartments.py — do not edit;
 * `make regen-fhir-compartments` regenerates it. The layout is fhir/compartment_int.h. */
#include "config.h"

#include "fhir/compartment_int.h"

static const char *const p_Patient_Account[] = {"subject", NULL};
static const char *const p_Patient_AdverseEvent[] = {"subject", NULL};
static const char *const p_Patient_AllergyIntolerance[] = {"patient", "recorder", "asserter", NULL};
static const char *const p_Patient_Appointment[] = {"actor", NULL};
static const char *const p_Patient_AppointmentResponse[] = {"actor", NULL};
static const char *const p_Patient_AuditEvent[] = {"patient", NULL};
static const char *const p_Patient_Basic[] = {"patient", "author", NULL};
static const char *const p_Patient_BodyStructure[] = {"patient", NULL};
static const char *const p_Patient_CarePlan[] = {"patient", "performer", NULL};
static const char *const p_Patient_CareTeam[] = {"patient", "participant", NULL};
static const char *const p_Patient_ChargeItem[] = {"subject", NULL};
static const char *const p_Patient_Claim[] = {"patient", "payee", NULL};
static const char *const p_Patient_ClaimResponse[] = {"patient", NULL};
static const char *const p_Patient_ClinicalImpression[] = {"subject", NULL};
static const char *const p_Patient_Communication[] = {"subject", "sender", "recipient", NULL};
static const char *const p_Patient_CommunicationRequest[] = {"subject", "sender", "recipient", "requester", NULL};
static const char *const p_Patient_Composition[] = {"subject", "author", "attester", NULL};
static const char *const p_Patient_Condition[] = {"patient", "asserter", NULL};
static const char *const p_Patient_Consent[] = {"patient", NULL};
static const char *const p_Patient_Coverage[] = {"policy-holder", "subscriber", "beneficiary", "payor", NULL};
static const char *const p_Patient_CoverageEligibilityRequest[] = {"patient", NULL};
static const char *const p_Patient_CoverageEligibilityResponse[] = {"patient", NULL};
static const char *const p_Patient_DetectedIssue[] = {"patient", NULL};
static const char *const p_Patient_DeviceRequest[] = {"subject", "performer", NULL};
static const char *const p_Patient_DeviceUseStatement[] = {"subject", NULL};
static const char *const p_Patient_DiagnosticReport[] = {"subject", NULL};
static const char *const p_Patient_DocumentManifest[] = {"subject", "author", "recipient", NULL};
static const char *const p_Patient_DocumentReference[] = {"subject", "author", NULL};
static const char *const p_Patient_Encounter[] = {"patient", NULL};
static const char *const p_Patient_EnrollmentRequest[] = {"subject", NULL};
static const char *const p_Patient_EpisodeOfCare[] = {"patient", NULL};
static const char *const p_Patient_ExplanationOfBenefit[] = {"patient", "payee", NULL};
static const char *const p_Patient_FamilyMemberHistory[] = {"patient", NULL};
static const char *const p_Patient_Flag[] = {"patient", NULL};
static const char *const p_Patient_Goal[] = {"patient", NULL};
static const char *const p_Patient_Group[] = {"member", NULL};
static const char *const p_Patient_ImagingStudy[] = {"patient", NULL};
static const char *const p_Patient_Immunization[] = {"patient", NULL};
static const char *const p_Patient_ImmunizationEvaluation[] = {"patient", NULL};
static const char *const p_Patient_ImmunizationRecommendation[] = {"patient", NULL};
static const char *const p_Patient_Invoice[] = {"subject", "patient", "recipient", NULL};
static const char *const p_Patient_List[] = {"subject", "source", NULL};
static const char *const p_Patient_MeasureReport[] = {"patient", NULL};
static const char *const p_Patient_Media[] = {"subject", NULL};
static const char *const p_Patient_MedicationAdministration[] = {"patient", "performer", "subject", NULL};
static const char *const p_Patient_MedicationDispense[] = {"subject", "patient", "receiver", NULL};
static const char *const p_Patient_MedicationRequest[] = {"subject", NULL};
static const char *const p_Patient_MedicationStatement[] = {"subject", NULL};
static const char *const p_Patient_MolecularSequence[] = {"patient", NULL};
static const char *const p_Patient_NutritionOrder[] = {"patient", NULL};
static const char *const p_Patient_Observation[] = {"subject", "performer", NULL};
static const char *const p_Patient_Patient[] = {"link", NULL};
static const char *const p_Patient_Person[] = {"patient", NULL};
static const char *const p_Patient_Procedure[] = {"patient", "performer", NULL};
static const char *const p_Patient_Provenance[] = {"patient", NULL};
static const char *const p_Patient_QuestionnaireResponse[] = {"subject", "author", NULL};
static const char *const p_Patient_RelatedPerson[] = {"patient", NULL};
static const char *const p_Patient_RequestGroup[] = {"subject", "participant", NULL};
static const char *const p_Patient_ResearchSubject[] = {"individual", NULL};
static const char *const p_Patient_RiskAssessment[] = {"subject", NULL};
static const char *const p_Patient_Schedule[] = {"actor", NULL};
static const char *const p_Patient_ServiceRequest[] = {"subject", "performer", NULL};
static const char *const p_Patient_Specimen[] = {"subject", NULL};
static const char *const p_Patient_SupplyDelivery[] = {"patient", NULL};
static const char *const p_Patient_SupplyRequest[] = {"subject", NULL};
static const char *const p_Patient_VisionPrescription[] = {"patient", NULL};
static const hv__compartment_res_t r_Patient[] = {
    {"Account", p_Patient_Account},
    {"AdverseEvent", p_Patient_AdverseEvent},
    {"AllergyIntolerance", p_Patient_AllergyIntolerance},
    {"Appointment", p_Patient_Appointment},
    {"AppointmentResponse", p_Patient_AppointmentResponse},
    {"AuditEvent", p_Patient_AuditEvent},
    {"Basic", p_Patient_Basic},
    {"BodyStructure", p_Patient_BodyStructure},
    {"CarePlan", p_Patient_CarePlan},
    {"CareTeam", p_Patient_CareTeam},
    {"ChargeItem", p_Patient_ChargeItem},
    {"Claim", p_Patient_Claim},
    {"ClaimResponse", p_Patient_ClaimResponse},
    {"ClinicalImpression", p_Patient_ClinicalImpression},
    {"Communication", p_Patient_Communication},
    {"CommunicationRequest", p_Patient_CommunicationRequest},
    {"Composition", p_Patient_Composition},
    {"Condition", p_Patient_Condition},
    {"Consent", p_Patient_Consent},
    {"Coverage", p_Patient_Coverage},
    {"CoverageEligibilityRequest", p_Patient_CoverageEligibilityRequest},
    {"CoverageEligibilityResponse", p_Patient_CoverageEligibilityResponse},
    {"DetectedIssue", p_Patient_DetectedIssue},
    {"DeviceRequest", p_Patient_DeviceRequest},
    {"DeviceUseStatement", p_Patient_DeviceUseStatement},
    {"DiagnosticReport", p_Patient_DiagnosticReport},
    {"DocumentManifest", p_Patient_DocumentManifest},
    {"DocumentReference", p_Patient_DocumentReference},
    {"Encounter", p_Patient_Encounter},
    {"EnrollmentRequest", p_Patient_EnrollmentRequest},
    {"EpisodeOfCare", p_Patient_EpisodeOfCare},
    {"ExplanationOfBenefit", p_Patient_ExplanationOfBenefit},
    {"FamilyMemberHistory", p_Patient_FamilyMemberHistory},
    {"Flag", p_Patient_Flag},
    {"Goal", p_Patient_Goal},
    {"Group", p_Patient_Group},
    {"ImagingStudy", p_Patient_ImagingStudy},
    {"Immunization", p_Patient_Immunization},
    {"ImmunizationEvaluation", p_Patient_ImmunizationEvaluation},
    {"ImmunizationRecommendation", p_Patient_ImmunizationRecommendation},
    {"Invoice", p_Patient_Invoice},
    {"List", p_Patient_List},
    {"MeasureReport", p_Patient_MeasureReport},
    {"Media", p_Patient_Media},
    {"MedicationAdministration", p_Patient_MedicationAdministration},
    {"MedicationDispense", p_Patient_MedicationDispense},
    {"MedicationRequest", p_Patient_MedicationRequest},
    {"MedicationStatement", p_Patient_MedicationStatement},
    {"MolecularSequence", p_Patient_MolecularSequence},
    {"NutritionOrder", p_Patient_NutritionOrder},
    {"Observation", p_Patient_Observation},
    {"Patient", p_Patient_Patient},
    {"Person", p_Patient_Person},
    {"Procedure", p_Patient_Procedure},
    {"Provenance", p_Patient_Provenance},
    {"QuestionnaireResponse", p_Patient_QuestionnaireResponse},
    {"RelatedPerson", p_Patient_RelatedPerson},
    {"RequestGroup", p_Patient_RequestGroup},
    {"ResearchSubject", p_Patient_ResearchSubject},
    {"RiskAssessment", p_Patient_RiskAssessment},
    {"Schedule", p_Patient_Schedule},
    {"ServiceRequest", p_Patient_ServiceRequest},
    {"Specimen", p_Patient_Specimen},
    {"SupplyDelivery", p_Patient_SupplyDelivery},
    {"SupplyRequest", p_Patient_SupplyRequest},
    {"VisionPrescription", p_Patient_VisionPrescription},
};

static const char *const p_Encounter_CarePlan[] = {"encounter", NULL};
static const char *const p_Encounter_CareTeam[] = {"encounter", NULL};
static const char *const p_Encounter_ChargeItem[] = {"context", NULL};
static const char *const p_Encounter_Claim[] = {"encounter", NULL};
static const char *const p_Encounter_ClinicalImpression[] = {"encounter", NULL};
static const char *const p_Encounter_Communication[] = {"encounter", NULL};
static const char *const p_Encounter_CommunicationRequest[] = {"encounter", NULL};
static const char *const p_Encounter_Composition[] = {"encounter", NULL};
static const char *const p_Encounter_Condition[] = {"encounter", NULL};
static const char *const p_Encounter_DeviceRequest[] = {"encounter", NULL};
static const char *const p_Encounter_DiagnosticReport[] = {"encounter", NULL};
static const char *const p_Encounter_DocumentManifest[] = {"related-ref", NULL};
static const char *const p_Encounter_DocumentReference[] = {"encounter", NULL};
static const char *const p_Encounter_Encounter[] = {"{def}", NULL};
static const char *const p_Encounter_ExplanationOfBenefit[] = {"encounter", NULL};
static const char *const p_Encounter_Media[] = {"encounter", NULL};
static const char *const p_Encounter_MedicationAdministration[] = {"context", NULL};
static const char *const p_Encounter_MedicationRequest[] = {"encounter", NULL};
static const char *const p_Encounter_NutritionOrder[] = {"encounter", NULL};
static const char *const p_Encounter_Observation[] = {"encounter", NULL};
static const char *const p_Encounter_Procedure[] = {"encounter", NULL};
static const char *const p_Encounter_QuestionnaireResponse[] = {"encounter", NULL};
static const char *const p_Encounter_RequestGroup[] = {"encounter", NULL};
static const char *const p_Encounter_ServiceRequest[] = {"encounter", NULL};
static const char *const p_Encounter_VisionPrescription[] = {"encounter", NULL};
static const hv__compartment_res_t r_Encounter[] = {
    {"CarePlan", p_Encounter_CarePlan},
    {"CareTeam", p_Encounter_CareTeam},
    {"ChargeItem", p_Encounter_ChargeItem},
    {"Claim", p_Encounter_Claim},
    {"ClinicalImpression", p_Encounter_ClinicalImpression},
    {"Communication", p_Encounter_Communication},
    {"CommunicationRequest", p_Encounter_CommunicationRequest},
    {"Composition", p_Encounter_Composition},
    {"Condition", p_Encounter_Condition},
    {"DeviceRequest", p_Encounter_DeviceRequest},
    {"DiagnosticReport", p_Encounter_DiagnosticReport},
    {"DocumentManifest", p_Encounter_DocumentManifest},
    {"DocumentReference", p_Encounter_DocumentReference},
    {"Encounter", p_Encounter_Encounter},
    {"ExplanationOfBenefit", p_Encounter_ExplanationOfBenefit},
    {"Media", p_Encounter_Media},
    {"MedicationAdministration", p_Encounter_MedicationAdministration},
    {"MedicationRequest", p_Encounter_MedicationRequest},
    {"NutritionOrder", p_Encounter_NutritionOrder},
    {"Observation", p_Encounter_Observation},
    {"Procedure", p_Encounter_Procedure},
    {"QuestionnaireResponse", p_Encounter_QuestionnaireResponse},
    {"RequestGroup", p_Encounter_RequestGroup},
    {"ServiceRequest", p_Encounter_ServiceRequest},
    {"VisionPrescription", p_Encounter_VisionPrescription},
};

static const char *const p_Practitioner_Account[] = {"subject", NULL};
static const char *const p_Practitioner_AdverseEvent[] = {"recorder", NULL};
static const char *const p_Practitioner_AllergyIntolerance[] = {"recorder", "asserter", NULL};
static const char *const p_Practitioner_Appointment[] = {"actor", NULL};
static const char *const p_Practitioner_AppointmentResponse[] = {"actor", NULL};
static const char *const p_Practitioner_AuditEvent[] = {"agent", NULL};
static const char *const p_Practitioner_Basic[] = {"author", NULL};
static const char *const p_Practitioner_CarePlan[] = {"performer", NULL};
static const char *const p_Practitioner_CareTeam[] = {"participant", NULL};
static const char *const p_Practitioner_ChargeItem[] = {"enterer", "performer-actor", NULL};
static const char *const p_Practitioner_Claim[] = {"enterer", "provider", "payee", "care-team", NULL};
static const char *const p_Practitioner_ClaimResponse[] = {"requestor", NULL};
static const char *const p_Practitioner_ClinicalImpression[] = {"assessor", NULL};
static const char *const p_Practitioner_Communication[] = {"sender", "recipient", NULL};
static const char *const p_Practitioner_CommunicationRequest[] = {"sender", "recipient", "requester", NULL};
static const char *const p_Practitioner_Composition[] = {"subject", "author", "attester", NULL};
static const char *const p_Practitioner_Condition[] = {"asserter", NULL};
static const char *const p_Practitioner_CoverageEligibilityRequest[] = {"enterer", "provider", NULL};
static const char *const p_Practitioner_CoverageEligibilityResponse[] = {"requestor", NULL};
static const char *const p_Practitioner_DetectedIssue[] = {"author", NULL};
static const char *const p_Practitioner_DeviceRequest[] = {"requester", "performer", NULL};
static const char *const p_Practitioner_DiagnosticReport[] = {"performer", NULL};
static const char *const p_Practitioner_DocumentManifest[] = {"subject", "author", "recipient", NULL};
static const char *const p_Practitioner_DocumentReference[] = {"subject", "author", "authenticator", NULL};
static const char *const p_Practitioner_Encounter[] = {"practitioner", "participant", NULL};
static const char *const p_Practitioner_EpisodeOfCare[] = {"care-manager", NULL};
static const char *const p_Practitioner_ExplanationOfBenefit[] = {"enterer", "provider", "payee", "care-team", NULL};
static const char *const p_Practitioner_Flag[] = {"author", NULL};
static const char *const p_Practitioner_Group[] = {"member", NULL};
static const char *const p_Practitioner_Immunization[] = {"performer", NULL};
static const char *const p_Practitioner_Invoice[] = {"participant", NULL};
static const char *const p_Practitioner_Linkage[] = {"author", NULL};
static const char *const p_Practitioner_List[] = {"source", NULL};
static const char *const p_Practitioner_Media[] = {"subject", "operator", NULL};
static const char *const p_Practitioner_MedicationAdministration[] = {"performer", NULL};
static const char *const p_Practitioner_MedicationDispense[] = {"performer", "receiver", NULL};
static const char *const p_Practitioner_MedicationRequest[] = {"requester", NULL};
static const char *const p_Practitioner_MedicationStatement[] = {"source", NULL};
static const char *const p_Practitioner_MessageHeader[] = {"receiver", "author", "responsible", "enterer", NULL};
static const char *const p_Practitioner_NutritionOrder[] = {"provider", NULL};
static const char *const p_Practitioner_Observation[] = {"performer", NULL};
static const char *const p_Practitioner_Patient[] = {"general-practitioner", NULL};
static const char *const p_Practitioner_PaymentNotice[] = {"provider", NULL};
static const char *const p_Practitioner_PaymentReconciliation[] = {"requestor", NULL};
static const char *const p_Practitioner_Person[] = {"practitioner", NULL};
static const char *const p_Practitioner_Practitioner[] = {"{def}", NULL};
static const char *const p_Practitioner_PractitionerRole[] = {"practitioner", NULL};
static const char *const p_Practitioner_Procedure[] = {"performer", NULL};
static const char *const p_Practitioner_Provenance[] = {"agent", NULL};
static const char *const p_Practitioner_QuestionnaireResponse[] = {"author", "source", NULL};
static const char *const p_Practitioner_RequestGroup[] = {"participant", "author", NULL};
static const char *const p_Practitioner_ResearchStudy[] = {"principalinvestigator", NULL};
static const char *const p_Practitioner_RiskAssessment[] = {"performer", NULL};
static const char *const p_Practitioner_Schedule[] = {"actor", NULL};
static const char *const p_Practitioner_ServiceRequest[] = {"performer", "requester", NULL};
static const char *const p_Practitioner_Specimen[] = {"collector", NULL};
static const char *const p_Practitioner_SupplyDelivery[] = {"supplier", "receiver", NULL};
static const char *const p_Practitioner_SupplyRequest[] = {"requester", NULL};
static const char *const p_Practitioner_VisionPrescription[] = {"prescriber", NULL};
static const hv__compartment_res_t r_Practitioner[] = {
    {"Account", p_Practitioner_Account},
    {"AdverseEvent", p_Practitioner_AdverseEvent},
    {"AllergyIntolerance", p_Practitioner_AllergyIntolerance},
    {"Appointment", p_Practitioner_Appointment},
    {"AppointmentResponse", p_Practitioner_AppointmentResponse},
    {"AuditEvent", p_Practitioner_AuditEvent},
    {"Basic", p_Practitioner_Basic},
    {"CarePlan", p_Practitioner_CarePlan},
    {"CareTeam", p_Practitioner_CareTeam},
    {"ChargeItem", p_Practitioner_ChargeItem},
    {"Claim", p_Practitioner_Claim},
    {"ClaimResponse", p_Practitioner_ClaimResponse},
    {"ClinicalImpression", p_Practitioner_ClinicalImpression},
    {"Communication", p_Practitioner_Communication},
    {"CommunicationRequest", p_Practitioner_CommunicationRequest},
    {"Composition", p_Practitioner_Composition},
    {"Condition", p_Practitioner_Condition},
    {"CoverageEligibilityRequest", p_Practitioner_CoverageEligibilityRequest},
    {"CoverageEligibilityResponse", p_Practitioner_CoverageEligibilityResponse},
    {"DetectedIssue", p_Practitioner_DetectedIssue},
    {"DeviceRequest", p_Practitioner_DeviceRequest},
    {"DiagnosticReport", p_Practitioner_DiagnosticReport},
    {"DocumentManifest", p_Practitioner_DocumentManifest},
    {"DocumentReference", p_Practitioner_DocumentReference},
    {"Encounter", p_Practitioner_Encounter},
    {"EpisodeOfCare", p_Practitioner_EpisodeOfCare},
    {"ExplanationOfBenefit", p_Practitioner_ExplanationOfBenefit},
    {"Flag", p_Practitioner_Flag},
    {"Group", p_Practitioner_Group},
    {"Immunization", p_Practitioner_Immunization},
    {"Invoice", p_Practitioner_Invoice},
    {"Linkage", p_Practitioner_Linkage},
    {"List", p_Practitioner_List},
    {"Media", p_Practitioner_Media},
    {"MedicationAdministration", p_Practitioner_MedicationAdministration},
    {"MedicationDispense", p_Practitioner_MedicationDispense},
    {"MedicationRequest", p_Practitioner_MedicationRequest},
    {"MedicationStatement", p_Practitioner_MedicationStatement},
    {"MessageHeader", p_Practitioner_MessageHeader},
    {"NutritionOrder", p_Practitioner_NutritionOrder},
    {"Observation", p_Practitioner_Observation},
    {"Patient", p_Practitioner_Patient},
    {"PaymentNotice", p_Practitioner_PaymentNotice},
    {"PaymentReconciliation", p_Practitioner_PaymentReconciliation},
    {"Person", p_Practitioner_Person},
    {"Practitioner", p_Practitioner_Practitioner},
    {"PractitionerRole", p_Practitioner_PractitionerRole},
    {"Procedure", p_Practitioner_Procedure},
    {"Provenance", p_Practitioner_Provenance},
    {"QuestionnaireResponse", p_Practitioner_QuestionnaireResponse},
    {"RequestGroup", p_Practitioner_RequestGroup},
    {"ResearchStudy", p_Practitioner_ResearchStudy},
    {"RiskAssessment", p_Practitioner_RiskAssessment},
    {"Schedule", p_Practitioner_Schedule},
    {"ServiceRequest", p_Practitioner_ServiceRequest},
    {"Specimen", p_Practitioner_Specimen},
    {"SupplyDelivery", p_Practitioner_SupplyDelivery},
    {"SupplyRequest", p_Practitioner_SupplyRequest},
    {"VisionPrescription", p_Practitioner_VisionPrescription},
};

static const char *const p_RelatedPerson_AdverseEvent[] = {"recorder", NULL};
static const char *const p_RelatedPerson_AllergyIntolerance[] = {"asserter", NULL};
static const char *const p_RelatedPerson_Appointment[] = {"actor", NULL};
static const char *const p_RelatedPerson_AppointmentResponse[] = {"actor", NULL};
static const char *const p_RelatedPerson_Basic[] = {"author", NULL};
static const char *const p_RelatedPerson_CarePlan[] = {"performer", NULL};
static const char *const p_RelatedPerson_CareTeam[] = {"participant", NULL};
static const char *const p_RelatedPerson_ChargeItem[] = {"enterer", "performer-actor", NULL};
static const char *const p_RelatedPerson_Claim[] = {"payee", NULL};
static const char *const p_RelatedPerson_Communication[] = {"sender", "recipient", NULL};
static const char *const p_RelatedPerson_CommunicationRequest[] = {"sender", "recipient", "requester", NULL};
static const char *const p_RelatedPerson_Composition[] = {"author", NULL};
static const char *const p_RelatedPerson_Condition[] = {"asserter", NULL};
static const char *const p_RelatedPerson_Coverage[] = {"policy-holder", "subscriber", "payor", NULL};
static const char *const p_RelatedPerson_DocumentManifest[] = {"author", "recipient", NULL};
static const char *const p_RelatedPerson_DocumentReference[] = {"author", NULL};
static const char *const p_RelatedPerson_Encounter[] = {"participant", NULL};
static const char *const p_RelatedPerson_ExplanationOfBenefit[] = {"payee", NULL};
static const char *const p_RelatedPerson_Invoice[] = {"recipient", NULL};
static const char *const p_RelatedPerson_MedicationAdministration[] = {"performer", NULL};
static const char *const p_RelatedPerson_MedicationStatement[] = {"source", NULL};
static const char *const p_RelatedPerson_Observation[] = {"performer", NULL};
static const char *const p_RelatedPerson_Patient[] = {"link", NULL};
static const char *const p_RelatedPerson_Person[] = {"link", NULL};
static const char *const p_RelatedPerson_Procedure[] = {"performer", NULL};
static const char *const p_RelatedPerson_Provenance[] = {"agent", NULL};
static const char *const p_RelatedPerson_QuestionnaireResponse[] = {"author", "source", NULL};
static const char *const p_RelatedPerson_RelatedPerson[] = {"{def}", NULL};
static const char *const p_RelatedPerson_RequestGroup[] = {"participant", NULL};
static const char *const p_RelatedPerson_Schedule[] = {"actor", NULL};
static const char *const p_RelatedPerson_ServiceRequest[] = {"performer", NULL};
static const char *const p_RelatedPerson_SupplyRequest[] = {"requester", NULL};
static const hv__compartment_res_t r_RelatedPerson[] = {
    {"AdverseEvent", p_RelatedPerson_AdverseEvent},
    {"AllergyIntolerance", p_RelatedPerson_AllergyIntolerance},
    {"Appointment", p_RelatedPerson_Appointment},
    {"AppointmentResponse", p_RelatedPerson_AppointmentResponse},
    {"Basic", p_RelatedPerson_Basic},
    {"CarePlan", p_RelatedPerson_CarePlan},
    {"CareTeam", p_RelatedPerson_CareTeam},
    {"ChargeItem", p_RelatedPerson_ChargeItem},
    {"Claim", p_RelatedPerson_Claim},
    {"Communication", p_RelatedPerson_Communication},
    {"CommunicationRequest", p_RelatedPerson_CommunicationRequest},
    {"Composition", p_RelatedPerson_Composition},
    {"Condition", p_RelatedPerson_Condition},
    {"Coverage", p_RelatedPerson_Coverage},
    {"DocumentManifest", p_RelatedPerson_DocumentManifest},
    {"DocumentReference", p_RelatedPerson_DocumentReference},
    {"Encounter", p_RelatedPerson_Encounter},
    {"ExplanationOfBenefit", p_RelatedPerson_ExplanationOfBenefit},
    {"Invoice", p_RelatedPerson_Invoice},
    {"MedicationAdministration", p_RelatedPerson_MedicationAdministration},
    {"MedicationStatement", p_RelatedPerson_MedicationStatement},
    {"Observation", p_RelatedPerson_Observation},
    {"Patient", p_RelatedPerson_Patient},
    {"Person", p_RelatedPerson_Person},
    {"Procedure", p_RelatedPerson_Procedure},
    {"Provenance", p_RelatedPerson_Provenance},
    {"QuestionnaireResponse", p_RelatedPerson_QuestionnaireResponse},
    {"RelatedPerson", p_RelatedPerson_RelatedPerson},
    {"RequestGroup", p_RelatedPerson_RequestGroup},
    {"Schedule", p_RelatedPerson_Schedule},
    {"ServiceRequest", p_RelatedPerson_ServiceRequest},
    {"SupplyRequest", p_RelatedPerson_SupplyRequest},
};

static const char *const p_Device_Account[] = {"subject", NULL};
static const char *const p_Device_Appointment[] = {"actor", NULL};
static const char *const p_Device_AppointmentResponse[] = {"actor", NULL};
static const char *const p_Device_AuditEvent[] = {"agent", NULL};
static const char *const p_Device_ChargeItem[] = {"enterer", "performer-actor", NULL};
static const char *const p_Device_Claim[] = {"procedure-udi", "item-udi", "detail-udi", "subdetail-udi", NULL};
static const char *const p_Device_Communication[] = {"sender", "recipient", NULL};
static const char *const p_Device_CommunicationRequest[] = {"sender", "recipient", NULL};
static const char *const p_Device_Composition[] = {"author", NULL};
static const char *const p_Device_DetectedIssue[] = {"author", NULL};
static const char *const p_Device_DeviceRequest[] = {"device", "subject", "requester", "performer", NULL};
static const char *const p_Device_DeviceUseStatement[] = {"device", NULL};
static const char *const p_Device_DiagnosticReport[] = {"subject", NULL};
static const char *const p_Device_DocumentManifest[] = {"subject", "author", NULL};
static const char *const p_Device_DocumentReference[] = {"subject", "author", NULL};
static const char *const p_Device_ExplanationOfBenefit[] = {"procedure-udi", "item-udi", "detail-udi", "subdetail-udi", NULL};
static const char *const p_Device_Flag[] = {"author", NULL};
static const char *const p_Device_Group[] = {"member", NULL};
static const char *const p_Device_Invoice[] = {"participant", NULL};
static const char *const p_Device_List[] = {"subject", "source", NULL};
static const char *const p_Device_Media[] = {"subject", NULL};
static const char *const p_Device_MedicationAdministration[] = {"device", NULL};
static const char *const p_Device_MessageHeader[] = {"target", NULL};
static const char *const p_Device_Observation[] = {"subject", "device", NULL};
static const char *const p_Device_Provenance[] = {"agent", NULL};
static const char *const p_Device_QuestionnaireResponse[] = {"author", NULL};
static const char *const p_Device_RequestGroup[] = {"author", NULL};
static const char *const p_Device_RiskAssessment[] = {"performer", NULL};
static const char *const p_Device_Schedule[] = {"actor", NULL};
static const char *const p_Device_ServiceRequest[] = {"performer", "requester", NULL};
static const char *const p_Device_Specimen[] = {"subject", NULL};
static const char *const p_Device_SupplyRequest[] = {"requester", NULL};
static const hv__compartment_res_t r_Device[] = {
    {"Account", p_Device_Account},
    {"Appointment", p_Device_Appointment},
    {"AppointmentResponse", p_Device_AppointmentResponse},
    {"AuditEvent", p_Device_AuditEvent},
    {"ChargeItem", p_Device_ChargeItem},
    {"Claim", p_Device_Claim},
    {"Communication", p_Device_Communication},
    {"CommunicationRequest", p_Device_CommunicationRequest},
    {"Composition", p_Device_Composition},
    {"DetectedIssue", p_Device_DetectedIssue},
    {"DeviceRequest", p_Device_DeviceRequest},
    {"DeviceUseStatement", p_Device_DeviceUseStatement},
    {"DiagnosticReport", p_Device_DiagnosticReport},
    {"DocumentManifest", p_Device_DocumentManifest},
    {"DocumentReference", p_Device_DocumentReference},
    {"ExplanationOfBenefit", p_Device_ExplanationOfBenefit},
    {"Flag", p_Device_Flag},
    {"Group", p_Device_Group},
    {"Invoice", p_Device_Invoice},
    {"List", p_Device_List},
    {"Media", p_Device_Media},
    {"MedicationAdministration", p_Device_MedicationAdministration},
    {"MessageHeader", p_Device_MessageHeader},
    {"Observation", p_Device_Observation},
    {"Provenance", p_Device_Provenance},
    {"QuestionnaireResponse", p_Device_QuestionnaireResponse},
    {"RequestGroup", p_Device_RequestGroup},
    {"RiskAssessment", p_Device_RiskAssessment},
    {"Schedule", p_Device_Schedule},
    {"ServiceRequest", p_Device_ServiceRequest},
    {"Specimen", p_Device_Specimen},
    {"SupplyRequest", p_Device_SupplyRequest},
};

const hv__compartment_t hv__compartments[] = {
    {"Patient", r_Patient, 66},
    {"Encounter", r_Encounter, 25},
    {"Practitioner", r_Practitioner, 59},
    {"RelatedPerson", r_RelatedPerson, 32},
    {"Device", r_Device, 32},
};
const size_t hv__ncompartments = 5;
