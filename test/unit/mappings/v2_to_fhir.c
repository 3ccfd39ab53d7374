/* v2_to_fhir.c — tests of mappings/v2_to_fhir.c: HL7 v2 messages to transaction Bundles. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests.h"

#define MSH_A01 "MSH|^~\\&|SENDAPP|SENDFAC|RECAPP|RECFAC|20240101120000+0000||ADT^A01^ADT_A01|MSG001|P|2.5.1\r"
#define PID_DOE                                                                                   \
    "PID|1||12345^^^HOSP^MR||DOE^JANE^Q||19800102|F|||1 MAIN ST^^SPRINGFIELD^IL^62701||^PRN^PH^^1^217^5551234\r"
/* The head of the ORU^R01 messages of the result tests: header and patient. */
#define ORU_HEAD "MSH|^~\\&|LAB|LABFAC|EHR|HOSP|20240102080000-0500||ORU^R01^ORU_R01|L1|P|2.5.1\r" \
    "PID|1||12345^^^HOSP^MR||DOE^JANE\r"
#define PV1_V100 "PV1|1|I|WARD^101^A||||1234^SMITH^JOHN|||MED|||||||||V100^^^HOSP^VN\r"

static const char *a01 = MSH_A01 "EVN|A01|20240101120000\r" PID_DOE PV1_V100;

static const char *oru =
    "MSH|^~\\&|LAB|LABFAC|EHR|HOSP|20240102080000-0500||ORU^R01^ORU_R01|LAB777|P|2.5.1\r"
    "PID|1||12345^^^HOSP^MR||DOE^JANE||19800102|F\r"
    "ORC|RE|PLC100^EHR|FIL200^LAB\r"
    "OBR|1|PLC100^EHR|FIL200^LAB|24331-1^Lipid panel^LN|||20240102070000-0500|||||||||||||||20240102075900-0500|||F\r"
    "OBX|1|NM|2093-3^Cholesterol^LN||185.5|mg/dL^mg/dL^UCUM|<200|N|||F|||20240102075000-0500\r"
    "OBX|2|ST|8251-1^Comment^LN||fasting sample||||||F\r";

static void v2_to_fhir_adt_a01_patient_is_a_conditional_update_on_pid3(void **state) {
    hv_map_result_t r;
    const char *url = NULL;
    json_object *p;
    (void)state;
    test_map(a01, NULL, &r);
    assert_string_equal(test_str(r.bundle, "type"), "transaction");
    p = test_entry(r.bundle, "Patient", 0, &url);
    assert_non_null(p);
    assert_string_equal(url, "Patient?identifier=HOSP|12345");
    assert_string_equal(test_str(p, "name[0].family"), "DOE");
    assert_string_equal(test_str(p, "name[0].given[0]"), "JANE");
    assert_string_equal(test_str(p, "gender"), "female");
    assert_string_equal(test_str(p, "birthDate"), "1980-01-02");
    assert_string_equal(test_str(p, "address[0].city"), "SPRINGFIELD");
    assert_int_equal(test_count(r.bundle, "Patient"), 1);
    /* The visit number (PV1-19) names the Encounter. */
    assert_non_null(test_entry(r.bundle, "Encounter", 0, &url));
    assert_string_equal(url, "Encounter?identifier=HOSP|V100");
    assert_string_equal(test_str(test_entry(r.bundle, "Encounter", 0, NULL), "status"), "in-progress");
    hv_map_result_free(&r);
}

static void v2_to_fhir_rejects_a_message_without_patient_identifier(void **state) {
    hv_map_result_t r;
    hv_error_t err;
    const char *msg = MSH_A01 "PID|1||||DOE^JANE\r" PV1_V100;
    hv_map_opts_t lenient;
    (void)state;
    static int sentinel;
    memset(&r, 0, sizeof(r));
    r.bundle = (json_object *)&sentinel; /* out is untouched on failure */
    hv_error_clear(&err);
    assert_int_equal(hv_map_v2_to_fhir(msg, strlen(msg), NULL, &r, &err), HV_EPROTO);
    assert_string_equal(err.location, "PID-3");
    assert_ptr_equal(r.bundle, &sentinel);
    memset(&lenient, 0, sizeof(lenient));
    lenient.lenient_identity = 1;
    test_map(msg, &lenient, &r);
    assert_int_equal(test_count(r.bundle, "Patient"), 1);
    hv_map_result_free(&r);
}

static void v2_to_fhir_rejects_what_is_not_hl7v2(void **state) {
    hv_map_result_t r;
    hv_error_t err;
    (void)state;
    memset(&r, 0, sizeof(r));
    assert_int_equal(hv_map_v2_to_fhir("{\"resourceType\":\"Patient\"}", 26, NULL, &r, &err), HV_EPROTO);
    assert_null(r.bundle);
}

static void v2_to_fhir_is_deterministic(void **state) {
    hv_map_result_t a, b;
    (void)state;
    test_map(oru, NULL, &a);
    test_map(oru, NULL, &b);
    assert_true(json_object_equal(a.bundle, b.bundle));
    hv_map_result_free(&a);
    hv_map_result_free(&b);
}

static void v2_to_fhir_a08_updates_the_resources_of_the_a01(void **state) {
    hv_map_result_t a, b;
    const char *ua = NULL, *ub = NULL;
    const char *a08 = "MSH|^~\\&|SENDAPP|SENDFAC|RECAPP|RECFAC|20240101130000+0000||ADT^A08^ADT_A01|MSG002|P|2.5.1\r"
                      "EVN|A08|20240101130000\r"
                      "PID|1||12345^^^HOSP^MR||DOE^JANET^Q||19800102|F|||2 OAK AVE^^SPRINGFIELD^IL^62702\r" PV1_V100;
    (void)state;
    test_map(a01, NULL, &a);
    test_map(a08, NULL, &b);
    assert_non_null(test_entry(a.bundle, "Patient", 0, &ua));
    assert_non_null(test_entry(b.bundle, "Patient", 0, &ub));
    assert_string_equal(ua, ub);
    assert_string_equal(test_str(test_entry(b.bundle, "Patient", 0, NULL), "name[0].given[0]"), "JANET");
    test_entry(a.bundle, "Encounter", 0, &ua);
    test_entry(b.bundle, "Encounter", 0, &ub);
    assert_string_equal(ua, ub);
    hv_map_result_free(&a);
    hv_map_result_free(&b);
}

static const char *full_url_of(json_object *bundle, json_object *res) {
    json_object *entries = NULL;
    size_t i;
    json_object_object_get_ex(bundle, "entry", &entries);
    for (i = 0; i < json_object_array_length(entries); i++) {
        json_object *e = json_object_array_get_idx(entries, i), *rr = NULL;
        json_object_object_get_ex(e, "resource", &rr);
        if (rr == res) return hv_json_get_str(e, "fullUrl");
    }
    return NULL;
}

static void v2_to_fhir_oru_results_are_typed_coded_and_linked(void **state) {
    hv_map_result_t r;
    json_object *o1, *o2, *dr, *pat;
    const char *u1 = NULL, *u1b = NULL;
    hv_map_result_t again;
    (void)state;
    test_map(oru, NULL, &r);
    assert_int_equal(test_count(r.bundle, "Observation"), 2);
    o1 = test_entry(r.bundle, "Observation", 0, &u1);
    o2 = test_entry(r.bundle, "Observation", 1, NULL);
    dr = test_entry(r.bundle, "DiagnosticReport", 0, NULL);
    pat = test_entry(r.bundle, "Patient", 0, NULL);
    assert_non_null(dr);
    assert_string_equal(test_str(o1, "code.coding[0].system"), "http://loinc.org");
    assert_string_equal(test_str(o1, "code.coding[0].code"), "2093-3");
    assert_string_equal(test_str(o1, "valueQuantity.value"), "185.5");
    assert_string_equal(test_str(o1, "valueQuantity.unit"), "mg/dL");
    assert_string_equal(test_str(o1, "status"), "final");
    assert_string_equal(test_str(o1, "effectiveDateTime"), "2024-01-02T07:50:00-05:00");
    assert_string_equal(test_str(o1, "referenceRange[0].text"), "<200");
    assert_string_equal(test_str(o2, "valueString"), "fasting sample");
    assert_string_equal(test_str(o1, "subject.reference"), full_url_of(r.bundle, pat));
    assert_string_equal(test_str(dr, "result[0].reference"), full_url_of(r.bundle, o1));
    assert_string_equal(test_str(dr, "result[1].reference"), full_url_of(r.bundle, o2));
    assert_string_equal(test_str(dr, "subject.reference"), full_url_of(r.bundle, pat));
    /* A corrected resend of the same order updates the same Observation. */
    {
        char *copy = strdup(oru), *p = strstr(copy, "185.5");
        memcpy(p, "190.0", 5);
        test_map(copy, NULL, &again);
        test_entry(again.bundle, "Observation", 0, &u1b);
        assert_string_equal(u1, u1b);
        assert_string_equal(test_str(test_entry(again.bundle, "Observation", 0, NULL), "valueQuantity.value"),
                            "190.0");
        hv_map_result_free(&again);
        free(copy);
    }
    hv_map_result_free(&r);
}

static void v2_to_fhir_a40_links_the_merged_patient(void **state) {
    hv_map_result_t r;
    json_object *a, *b;
    const char *msg = "MSH|^~\\&|A|B|C|D|20240101120000||ADT^A40^ADT_A39|M40|P|2.5.1\r"
                      "EVN|A40|20240101120000\r"
                      "PID|1||12345^^^HOSP^MR||DOE^JANE\r"
                      "MRG|999^^^HOSP^MR\r";
    (void)state;
    test_map(msg, NULL, &r);
    assert_int_equal(test_count(r.bundle, "Patient"), 2);
    a = test_entry(r.bundle, "Patient", 0, NULL);
    b = test_entry(r.bundle, "Patient", 1, NULL);
    assert_string_equal(test_str(a, "link[0].type"), "replaces");
    assert_string_equal(test_str(b, "link[0].type"), "replaced-by");
    assert_string_equal(test_str(b, "identifier[0].value"), "999");
    assert_string_equal(test_str(b, "active"), "false");
    assert_string_equal(test_str(b, "link[0].other.reference"), full_url_of(r.bundle, a));
    hv_map_result_free(&r);
}

/* The entry resource whose fullUrl is url (borrowed), or NULL. */
static json_object *by_full_url(json_object *bundle, const char *url) {
    json_object *entries = NULL;
    size_t i;
    if (url == NULL || !json_object_object_get_ex(bundle, "entry", &entries)) return NULL;
    for (i = 0; i < json_object_array_length(entries); i++) {
        json_object *e = json_object_array_get_idx(entries, i), *res = NULL;
        const char *u = test_str(e, "fullUrl");
        if (u != NULL && strcmp(u, url) == 0 && json_object_object_get_ex(e, "resource", &res)) return res;
    }
    return NULL;
}

static void v2_to_fhir_rows_with_one_index_fill_one_referenced_resource(void **state) {
    /* NK1-13 (organization name), -31 (its phone) and -32 (its address): the IG writes them into
     * contact.organization[1](Organization…) — one Organization, referenced by the contact. */
    const char *msg = MSH_A01 PID_DOE
        "NK1|1||||||||||||ACME LABS||||||||||||||||||^WPN^PH^^1^555^1234567|9 ELM ST^^AURORA^CO^80010\r";
    hv_map_result_t r;
    json_object *p, *org;
    (void)state;
    test_map(msg, NULL, &r);
    p = test_entry(r.bundle, "Patient", 0, NULL);
    org = by_full_url(r.bundle, test_str(p, "contact[0].organization.reference"));
    assert_non_null(org);
    assert_string_equal(test_str(org, "resourceType"), "Organization");
    assert_string_equal(test_str(org, "name"), "ACME LABS");
    assert_string_equal(test_str(org, "contact[0].address.city"), "AURORA");
    assert_string_equal(test_str(org, "contact[0].address.line[0]"), "9 ELM ST");
    assert_string_equal(test_str(org, "contact[0].telecom[0].use"), "work");
    hv_map_result_free(&r);
}

#define DAR_URL "http://hl7.org/fhir/StructureDefinition/data-absent-reason"

static void v2_to_fhir_an_unnamed_organization_gets_an_absent_name(void **state) {
    /* FHIR org-1: NK1-32 without NK1-13 gives an Organization with neither name nor identifier;
     * its address is kept and its name is absent for a known reason (data-absent-reason). */
    const char *msg = MSH_A01 PID_DOE "NK1|1|||||||||||||||||||||||||||||||9 ELM ST^^AURORA^CO^80010\r";
    hv_map_result_t r;
    json_object *p, *org;
    (void)state;
    test_map(msg, NULL, &r);
    p = test_entry(r.bundle, "Patient", 0, NULL);
    org = by_full_url(r.bundle, test_str(p, "contact[0].organization.reference"));
    assert_non_null(org);
    assert_string_equal(test_str(org, "contact[0].address.city"), "AURORA");
    assert_null(test_str(org, "name"));
    assert_string_equal(test_str(org, "_name.extension[0].url"), DAR_URL);
    assert_string_equal(test_str(org, "_name.extension[0].valueCode"), "unknown");
    assert_null(strstr(json_object_to_json_string(r.outcome), "FHIR org-1"));
    assert_int_equal(test_validate_errors(org), 0);
    hv_map_result_free(&r);
}

static void v2_to_fhir_a_contact_with_only_a_period_gets_an_absent_name(void **state) {
    /* FHIR pat-1: NK1-8/9 alone give a contact with only a period; the contact is kept with a
     * name that is absent for a known reason, and the named organization is not invented. */
    const char *msg = MSH_A01 PID_DOE "NK1|1|||||||20210102|20230304\r";
    hv_map_result_t r;
    json_object *p;
    (void)state;
    test_map(msg, NULL, &r);
    p = test_entry(r.bundle, "Patient", 0, NULL);
    assert_string_equal(test_str(p, "contact[0].period.start"), "2021-01-02");
    assert_string_equal(test_str(p, "contact[0].period.end"), "2023-03-04");
    assert_string_equal(test_str(p, "contact[0].name.extension[0].url"), DAR_URL);
    assert_null(test_str(p, "contact[0].organization.reference"));
    assert_int_equal(test_validate_errors(p), 0);
    hv_map_result_free(&r);
}

static void v2_to_fhir_a_report_without_obr4_gets_an_absent_code(void **state) {
    /* DiagnosticReport.code is 1..1: an OBR without OBR-4 still reports (status, results);
     * a sent OBR-4 is never replaced. */
    const char *none = ORU_HEAD
                       "OBR|1|PLC100^EHR|FIL200^LAB||||20240102070000-0500||||||||||||||||||F\r";
    const char *sent = ORU_HEAD
                       "OBR|1|PLC100^EHR|FIL200^LAB|24331-1^Lipid panel^LN|||20240102070000-0500||||||||||||||||||F\r";
    hv_map_result_t r;
    json_object *dr;
    (void)state;
    test_map(none, NULL, &r);
    dr = test_entry(r.bundle, "DiagnosticReport", 0, NULL);
    assert_non_null(dr);
    assert_string_equal(test_str(dr, "status"), "final");
    assert_string_equal(test_str(dr, "code.extension[0].url"), DAR_URL);
    assert_string_equal(test_str(dr, "code.extension[0].valueCode"), "unknown");
    assert_int_equal(test_validate_errors(dr), 0);
    hv_map_result_free(&r);
    test_map(sent, NULL, &r);
    dr = test_entry(r.bundle, "DiagnosticReport", 0, NULL);
    assert_string_equal(test_str(dr, "code.coding[0].code"), "24331-1");
    assert_null(test_str(dr, "code.extension[0].url"));
    hv_map_result_free(&r);
}

static void v2_to_fhir_each_nk1_is_its_own_contact(void **state) {
    /* Two NK1s map into the Patient PID made: each gives its own Patient.contact (the rows
     * name "contact.name" without an index), not one contact with both names. */
    const char *msg = MSH_A01 PID_DOE "NK1|1|DOE^JOHN|SPO\rNK1|2|ROE^JIM|FTH\r";
    hv_map_result_t r;
    json_object *p;
    (void)state;
    test_map(msg, NULL, &r);
    p = test_entry(r.bundle, "Patient", 0, NULL);
    assert_string_equal(test_str(p, "contact[0].name.given[0]"), "JOHN");
    assert_null(test_str(p, "contact[0].name.given[1]"));
    assert_string_equal(test_str(p, "contact[1].name.family"), "ROE");
    assert_string_equal(test_str(p, "contact[1].name.given[0]"), "JIM");
    assert_null(test_str(p, "contact[2].name.family"));
    hv_map_result_free(&r);
}

static void v2_to_fhir_nte_after_obx_is_a_note_of_that_observation(void **state) {
    /* The IG's ORU_R01 row "NTE → Observation[2].note" (NTE[ServiceRequest]): each NTE is one
     * note of the Observation of the OBX before it, with its author (NTE-5); an NTE after an
     * OBX that made no Observation makes none. */
    const char *msg = ORU_HEAD
                      "OBR|1|P1|F1|24331-1^Lipid^LN\r"
                      "OBX|1|NM|2093-3^Chol^LN||185|mg/dL|||||F\r"
                      "NTE|1|L|fasting|RE|99^STARR^RINGO\r"
                      "NTE|2|L|repeat advised\r"
                      "OBX|2|NM|2571-8^Trig^LN||120|mg/dL|||||F\r"
                      "NTE|1|L|third\r"
                      "OBX|3\r"
                      "NTE|1|L|stray\r";
    hv_map_result_t r;
    json_object *a, *b, *prac;
    (void)state;
    test_map(msg, NULL, &r);
    assert_int_equal(test_count(r.bundle, "Observation"), 2);
    a = test_entry(r.bundle, "Observation", 0, NULL);
    b = test_entry(r.bundle, "Observation", 1, NULL);
    assert_string_equal(test_str(a, "note[0].text"), "fasting");
    assert_string_equal(test_str(a, "note[1].text"), "repeat advised");
    assert_null(test_str(a, "note[1].authorReference.reference"));
    prac = by_full_url(r.bundle, test_str(a, "note[0].authorReference.reference"));
    assert_non_null(prac);
    assert_string_equal(test_str(prac, "name[0].family"), "STARR");
    assert_string_equal(test_str(b, "note[0].text"), "third");
    /* OBX|3 made nothing: its NTE is no note of the OBX before it. */
    assert_null(test_str(b, "note[1].text"));
    assert_null(test_str(a, "note[2].text"));
    hv_map_result_free(&r);
}

static void v2_to_fhir_obx_without_obx3_or_value(void **state) {
    /* An OBX with a value but no OBX-3 keeps its value with a code absent for a known reason;
     * OBX-11 "X" without a value: status cancelled, dataAbsentReason cannot-be-obtained (the
     * IG's concept map note); with a value, no dataAbsentReason (FHIR obs-6). */
    const char *msg = ORU_HEAD
                      "OBR|1|P1|F1|24331-1^Lipid^LN\r"
                      "OBX|1|ST|||free text|||||||F\r"
                      "OBX|2||8675-3^Fake^LN||||||||X\r"
                      "OBX|3|ST|8676-1^Other^LN||kept||||||X\r";
    hv_map_result_t r;
    json_object *o;
    (void)state;
    test_map(msg, NULL, &r);
    assert_int_equal(test_count(r.bundle, "Observation"), 3);
    o = test_entry(r.bundle, "Observation", 0, NULL);
    assert_string_equal(test_str(o, "valueString"), "free text");
    assert_string_equal(test_str(o, "code.extension[0].url"), DAR_URL);
    assert_int_equal(test_validate_errors(o), 0);
    o = test_entry(r.bundle, "Observation", 1, NULL);
    assert_string_equal(test_str(o, "status"), "cancelled");
    assert_string_equal(test_str(o, "dataAbsentReason.coding[0].code"), "cannot-be-obtained");
    assert_int_equal(test_validate_errors(o), 0);
    o = test_entry(r.bundle, "Observation", 2, NULL);
    assert_string_equal(test_str(o, "valueString"), "kept");
    assert_null(test_str(o, "dataAbsentReason.coding[0].code"));
    hv_map_result_free(&r);
}

static void v2_to_fhir_pl_makes_a_family_of_locations(void **state) {
    /* PV1-3 PL: point of care ^ room ^ bed ^ facility ^^^ building ^ floor — the bed is the
     * Location the Encounter names; each level is a Location with partOf the next. */
    const char *msg = MSH_A01 PID_DOE
        "PV1|1|I|POC&2.1.1.1&ISO^Room 10&2.2.2.2&ISO^Bed A&2.3.3.3&ISO^Hospital A&2.4.4.4&ISO^^^"
        "Building B&2.7.7.7&ISO^Floor 2&2.8.8.8&ISO|||||||||||||||V100^^^HOSP^VN\r";
    hv_map_result_t r;
    json_object *enc, *loc;
    /* The IG's chain: bed [1] → room [2] → floor [3] → point of care [4] → facility [6] (its
     * building row [5] points at itself, so the building stands alone); the point of care's
     * physical type is prose in the IG ("=/extension??-poc/") and not written. */
    const char *want[][2] = {{"Bed A", "bd"}, {"Room 10", "ro"}, {"Floor 2", "lvl"}, {"POC", NULL},
                             {"Hospital A", "si"}};
    size_t i;
    (void)state;
    test_map(msg, NULL, &r);
    enc = test_entry(r.bundle, "Encounter", 0, NULL);
    loc = by_full_url(r.bundle, test_str(enc, "location[0].location.reference"));
    assert_int_equal(test_count(r.bundle, "Location"), 6);
    /* Bed → room → floor → building → facility through partOf (HD.1 and HD.2 two identifiers). */
    for (i = 0; i < HV_ARRAY_LEN(want); i++) {
        assert_non_null(loc);
        assert_string_equal(test_str(loc, "identifier[0].value"), want[i][0]);
        if (want[i][1] != NULL) assert_string_equal(test_str(loc, "physicalType.coding[0].code"), want[i][1]);
        else assert_null(test_str(loc, "physicalType.coding[0].code"));
        loc = by_full_url(r.bundle, test_str(loc, "partOf.reference"));
    }
    assert_null(loc); /* the facility is the top */
    hv_map_result_free(&r);
}

static void v2_to_fhir_sad_gives_address_lines(void **state) {
    const char *msg = MSH_A01
        "PID|1||12345^^^HOSP^MR||DOE^JANE||19800102|F|||4861&20TH AVE&1^Apt 2^THUNDER MOUNTAIN^IG^99999\r";
    hv_map_result_t r;
    json_object *p;
    (void)state;
    test_map(msg, NULL, &r);
    p = test_entry(r.bundle, "Patient", 0, NULL);
    assert_string_equal(test_str(p, "address[0].line[0]"), "4861");
    assert_string_equal(test_str(p, "address[0].line[1]"), "20TH AVE");
    assert_string_equal(test_str(p, "address[0].line[2]"), "1");
    assert_string_equal(test_str(p, "address[0].line[3]"), "Apt 2");
    hv_map_result_free(&r);
}

static void v2_to_fhir_concept_map_applies_to_codings(void **state) {
    const char *msg = MSH_A01 PID_DOE "PV1|1|O|||||||||||||||||V100^^^HOSP^VN\r";
    hv_map_result_t r;
    json_object *enc;
    (void)state;
    test_map(msg, NULL, &r);
    enc = test_entry(r.bundle, "Encounter", 0, NULL);
    assert_string_equal(test_str(enc, "class.code"), "AMB");
    assert_string_equal(test_str(enc, "class.system"), "http://terminology.hl7.org/CodeSystem/v3-ActCode");
    hv_map_result_free(&r);
}

static void v2_to_fhir_provenance_names_what_the_message_wrote(void **state) {
    hv_map_result_t r, again;
    size_t i, n;
    int found_transformation = 0;
    (void)state;
    test_map(oru, NULL, &r);
    n = test_count(r.bundle, "Provenance");
    assert_true(n >= 2);
    for (i = 0; i < n; i++) {
        json_object *prov = test_entry(r.bundle, "Provenance", i, NULL), *targets = NULL;
        size_t k, nt;
        assert_non_null(test_str(prov, "recorded"));
        assert_non_null(test_str(prov, "agent[0].who.reference"));
        assert_true(json_object_object_get_ex(prov, "target", &targets));
        nt = json_object_array_length(targets);
        /* Patient, Observations, DiagnosticReport, ServiceRequest …: each once, each an entry. */
        assert_true(nt >= 4);
        for (k = 0; k < nt; k++) {
            const char *ref = test_str(json_object_array_get_idx(targets, k), "reference");
            json_object *t = by_full_url(r.bundle, ref);
            size_t j;
            assert_non_null(t);
            assert_string_not_equal(test_str(t, "resourceType"), "Provenance");
            for (j = 0; j < k; j++)
                assert_string_not_equal(test_str(json_object_array_get_idx(targets, j), "reference"), ref);
        }
        if (test_str(prov, "activity.coding[0].code") != NULL &&
            strcmp(test_str(prov, "activity.coding[0].code"), "v2-fhir-transformation") == 0) {
            found_transformation = 1;
            assert_string_equal(test_str(prov, "recorded"), "2024-01-02T08:00:00-05:00");
        }
    }
    assert_true(found_transformation);
    /* The same message gives the same Provenances (resends update them). */
    test_map(oru, NULL, &again);
    assert_true(json_object_equal(r.bundle, again.bundle));
    hv_map_result_free(&again);
    hv_map_result_free(&r);
}

static void v2_to_fhir_a11_cancels_the_encounter(void **state) {
    hv_map_result_t r;
    const char *msg = "MSH|^~\\&|A|B|C|D|20240101120000||ADT^A11^ADT_A09|M11|P|2.5.1\r"
                      "EVN|A11|20240101120000\r" PID_DOE PV1_V100;
    (void)state;
    test_map(msg, NULL, &r);
    assert_string_equal(test_str(test_entry(r.bundle, "Encounter", 0, NULL), "status"), "cancelled");
    hv_map_result_free(&r);
}

static void v2_to_fhir_override_file_replaces_a_row(void **state) {
    hv_map_result_t r;
    hv_map_opts_t o;
    char path[] = "/tmp/hv-map-ov-XXXXXX";
    int fd = mkstemp(path);
    FILE *f;
    (void)state;
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    /* A partner that sends 'F' for 'unknown' (a made-up case): one vocabulary row. */
    fputs("vocab\tAdministrativeSex\tF\tunknown\thttp://hl7.org/fhir/administrative-gender\tUnknown\n", f);
    fclose(f);
    memset(&o, 0, sizeof(o));
    o.override_file = path;
    test_map(a01, &o, &r);
    assert_string_equal(test_str(test_entry(r.bundle, "Patient", 0, NULL), "gender"), "unknown");
    hv_map_result_free(&r);
    unlink(path);
}

static void v2_to_fhir_explain_names_the_rows(void **state) {
    hv_map_result_t r;
    hv_map_opts_t o;
    size_t i, found = 0;
    (void)state;
    memset(&o, 0, sizeof(o));
    o.explain = 1;
    test_map(a01, &o, &r);
    assert_non_null(r.explain);
    for (i = 0; i < json_object_array_length(r.explain); i++) {
        json_object *e = json_object_array_get_idx(r.explain, i);
        if (strcmp(hv_json_get_str(e, "element"), "Patient.name[1].family") == 0) {
            assert_non_null(strstr(hv_json_get_str(e, "rule"), "PID-5"));
            assert_non_null(strstr(hv_json_get_str(e, "rule"), "XPN[HumanName]"));
            found++;
        }
    }
    assert_int_equal(found, 1);
    hv_map_result_free(&r);
    test_map(a01, NULL, &r);
    assert_null(r.explain);
    hv_map_result_free(&r);
}

/* HL7 v2 DTM → FHIR date/dateTime (v2.5.1 §2.A.22; FHIR datatypes.html#dateTime). */
static void v2_to_fhir_converts_dtm_values(void **state) {
    static const struct {
        const char *dtm, *birth, *effective;
    } cases[] = {
        {"19800102", "1980-01-02", "1980-01-02"},
        {"198001", "1980-01", "1980-01"},
        {"1980", "1980", "1980"},
        {"198001021230", "1980-01-02", "1980-01-02T12:30:00Z"},
        {"19800102123015.25-0500", "1980-01-02", "1980-01-02T12:30:15.25-05:00"},
        {"19801302", NULL, NULL},  /* month 13 */
        {"1980AB", NULL, NULL},    /* not a DTM */
        {"00000101", NULL, NULL},  /* FHIR years start at 0001 */
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char msg[1024];
        hv_map_result_t r;
        const char *b, *e;
        snprintf(msg, sizeof(msg),
                 "MSH|^~\\&|L|F|E|H|20240102||ORU^R01^ORU_R01|X%zu|P|2.5.1\r"
                 "PID|1||1^^^H^MR||DOE^J||%s\r"
                 "OBR|1|P1|F1|1-8^T^LN\r"
                 "OBX|1|ST|1-8^T^LN||v||||||F|||%s\r",
                 i, cases[i].dtm, cases[i].dtm);
        test_map(msg, NULL, &r);
        b = test_str(test_entry(r.bundle, "Patient", 0, NULL), "birthDate");
        e = test_str(test_entry(r.bundle, "Observation", 0, NULL), "effectiveDateTime");
        if (cases[i].birth == NULL) {
            assert_null(b);
            assert_null(e);
            assert_non_null(strstr(json_object_to_json_string(r.outcome), "not valid as FHIR"));
        } else {
            assert_string_equal(b, cases[i].birth);
            assert_string_equal(e, cases[i].effective);
        }
        hv_map_result_free(&r);
    }
}

static void v2_to_fhir_reports_unmapped_segments_and_codes(void **state) {
    hv_map_result_t r;
    const char *msg = MSH_A01 "PID|1||12345^^^HOSP^MR||DOE^JANE||19800102|Q\r" "ZZZ|custom\r" "GT1|1\r";
    const char *oo;
    (void)state;
    test_map(msg, NULL, &r);
    oo = json_object_to_json_string(r.outcome);
    assert_string_equal(test_str(r.outcome, "resourceType"), "OperationOutcome");
    assert_non_null(strstr(oo, "segment GT1 is not mapped"));
    assert_non_null(strstr(oo, "code 'Q' has no mapping in AdministrativeSex"));
    assert_null(test_str(test_entry(r.bundle, "Patient", 0, NULL), "gender"));
    hv_map_result_free(&r);
}

int run_v2_to_fhir_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v2_to_fhir_adt_a01_patient_is_a_conditional_update_on_pid3),
        cmocka_unit_test(v2_to_fhir_rejects_a_message_without_patient_identifier),
        cmocka_unit_test(v2_to_fhir_rejects_what_is_not_hl7v2),
        cmocka_unit_test(v2_to_fhir_is_deterministic),
        cmocka_unit_test(v2_to_fhir_a08_updates_the_resources_of_the_a01),
        cmocka_unit_test(v2_to_fhir_oru_results_are_typed_coded_and_linked),
        cmocka_unit_test(v2_to_fhir_a40_links_the_merged_patient),
        cmocka_unit_test(v2_to_fhir_a11_cancels_the_encounter),
        cmocka_unit_test(v2_to_fhir_override_file_replaces_a_row),
        cmocka_unit_test(v2_to_fhir_explain_names_the_rows),
        cmocka_unit_test(v2_to_fhir_converts_dtm_values),
        cmocka_unit_test(v2_to_fhir_reports_unmapped_segments_and_codes),
        cmocka_unit_test(v2_to_fhir_rows_with_one_index_fill_one_referenced_resource),
        cmocka_unit_test(v2_to_fhir_an_unnamed_organization_gets_an_absent_name),
        cmocka_unit_test(v2_to_fhir_a_contact_with_only_a_period_gets_an_absent_name),
        cmocka_unit_test(v2_to_fhir_a_report_without_obr4_gets_an_absent_code),
        cmocka_unit_test(v2_to_fhir_each_nk1_is_its_own_contact),
        cmocka_unit_test(v2_to_fhir_nte_after_obx_is_a_note_of_that_observation),
        cmocka_unit_test(v2_to_fhir_obx_without_obx3_or_value),
        cmocka_unit_test(v2_to_fhir_pl_makes_a_family_of_locations),
        cmocka_unit_test(v2_to_fhir_sad_gives_address_lines),
        cmocka_unit_test(v2_to_fhir_concept_map_applies_to_codings),
        cmocka_unit_test(v2_to_fhir_provenance_names_what_the_message_wrote),
    };
    return cmocka_run_group_tests_name("mappings/v2_to_fhir", tests, NULL, NULL);
}
