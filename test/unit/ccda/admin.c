/* admin.c — tests of adapters/ccda/admin.c (Advance Directives → Consent, Payers → Coverage)
 * and of the entry details added with it in entries.c: a procedure performer's organization
 * (onBehalfOf), a Procedure in Medical Equipment, a planned act's author (requester), and a
 * medication's rateQuantity. */
#include "config.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhir.h"
#include "tests.h"

#define SEC(tmpl, entries) \
    "<component><section><templateId root=\"2.16.840.1.113883.10.20.22.2." tmpl "\"/>" \
    "<title>S" tmpl "</title><text>s</text>" entries "</section></component>\n"
#define TID(x) "<templateId root=\"2.16.840.1.113883.10.20.22.4." x "\"/>"
#define SCT "codeSystem=\"2.16.840.1.113883.6.96\""
#define LOINC "codeSystem=\"2.16.840.1.113883.6.1\""
#define NURSE                                                                               \
    "<assignedAuthor><id root=\"20cf14fb-b65c-4c8c-a54d-b0cca834c18c\"/>"                   \
    "<assignedPerson><name><given>Nurse</given><family>Nightingale</family></name>"         \
    "</assignedPerson><representedOrganization><id root=\"2.16.840.1.113883.19.5\"/>"       \
    "<name>Good Health Hospital</name></representedOrganization></assignedAuthor>"

static const char body[] =
    /* Advance Directives: an organizer holding one DNR observation with its document. */
    SEC("21.1",
        "<entry><organizer classCode=\"CLUSTER\" moodCode=\"EVN\">" TID("108")
        "<id root=\"af6ebdf2-d996-11e2-a5b8-f23c91aec05e\"/><code code=\"45473-6\" " LOINC "/>"
        "<statusCode code=\"completed\"/>"
        "<author>" TID("119") "<time value=\"201308011235-0800\"/>" NURSE "</author>"
        "<component><observation classCode=\"OBS\" moodCode=\"EVN\">" TID("48")
        "<id root=\"9b54c3c9-1673-49c7-aef9-b037ed72ed27\"/><code code=\"75278-2\" " LOINC "/>"
        "<statusCode code=\"completed\"/><effectiveTime><low value=\"20110219\"/>"
        "<high nullFlavor=\"NA\"/></effectiveTime>"
        "<value xsi:type=\"CD\" code=\"304253006\" " SCT " displayName=\"Do not resuscitate\"/>"
        "<reference typeCode=\"REFR\"><externalDocument><id root=\"b50b7910-7ffb-4f4c-bbe4-177ed68cbbf3\"/>"
        "<text mediaType=\"application/pdf\"><reference value=\"AD.pdf\"/></text>"
        "</externalDocument></reference></observation></component></organizer></entry>"
        /* A lone observation without a document: policyRule instead of policy. */
        "<entry><observation classCode=\"OBS\" moodCode=\"EVN\">" TID("48")
        "<id root=\"1.2.3\" extension=\"ad2\"/><code code=\"75278-2\" " LOINC "/>"
        "<statusCode code=\"completed\"/>"
        "<value xsi:type=\"CD\" code=\"71388002\" " SCT "/></observation></entry>")
    /* Payers: one policy with a payer and the patient as covered party; one without payer. */
    SEC("18",
        "<entry><act classCode=\"ACT\" moodCode=\"EVN\">" TID("60")
        "<statusCode code=\"completed\"/><entryRelationship typeCode=\"COMP\">"
        "<act classCode=\"ACT\" moodCode=\"EVN\">" TID("61")
        "<id root=\"3e676a50-7aac-11db-9fe1-0800200c9a66\"/>"
        "<code code=\"81\" codeSystem=\"2.16.840.1.113883.3.221.5\"/><statusCode code=\"completed\"/>"
        "<performer typeCode=\"PRF\">" TID("87") "<assignedEntity><id root=\"2.16.840.1.113883.19\"/>"
        "<code code=\"PAYOR\" codeSystem=\"2.16.840.1.113883.5.110\"/>"
        "<representedOrganization><name>Good Health Insurance</name></representedOrganization>"
        "</assignedEntity></performer>"
        "<participant typeCode=\"COV\">" TID("89") "<time><low value=\"20110101\"/></time>"
        "<participantRole classCode=\"PAT\"><id root=\"14d4a520-7aae-11db-9fe1-0800200c9a66\" "
        "extension=\"1138345\"/><code code=\"SELF\" codeSystem=\"2.16.840.1.113883.5.111\"/>"
        "</participantRole></participant></act></entryRelationship>"
        "<entryRelationship typeCode=\"COMP\"><act classCode=\"ACT\" moodCode=\"EVN\">" TID("61")
        "<id root=\"1.2.3\" extension=\"nopayer\"/><statusCode code=\"completed\"/></act>"
        "</entryRelationship></act></entry>")
    /* Medical Equipment: a stent placement procedure done for an organization. */
    SEC("23",
        "<entry><procedure classCode=\"PROC\" moodCode=\"EVN\">" TID("14")
        "<id root=\"d5b614bd-01ce-410d-8726-e1fd01dcc72a\"/><code code=\"103716009\" " SCT "/>"
        "<statusCode code=\"completed\"/><effectiveTime value=\"20130512\"/>"
        "<targetSiteCode code=\"28273000\" " SCT "/><performer><assignedEntity>"
        "<id root=\"2.16.840.1.113883.19\" extension=\"1234\"/><representedOrganization>"
        "<id root=\"2.16.840.1.113883.19.6\"/><name>Community Health and Hospitals</name>"
        "</representedOrganization></assignedEntity></performer></procedure></entry>")
    /* Reason for Referral: the referral's author is its requester. */
    "<component><section><templateId root=\"1.3.6.1.4.1.19376.1.5.3.1.3.1\"/><title>Referral</title>"
    "<text>r</text><entry><act classCode=\"PCPR\" moodCode=\"INT\">" TID("140")
    "<code code=\"44383000\" " SCT "/><statusCode code=\"active\"/>"
    "<author>" TID("119") "<time value=\"20130730\"/><assignedAuthor>"
    "<id root=\"d839038b-7171-4165-a760-467925b43857\"/><assignedPerson><name><given>Nurse</given>"
    "<family>Florence</family></name></assignedPerson></assignedAuthor></author></act></entry>"
    "</section></component>\n"
    /* Medications: an infusion with a dose and a rate. */
    SEC("38",
        "<entry><substanceAdministration classCode=\"SBADM\" moodCode=\"EVN\">" TID("16")
        "<statusCode code=\"completed\"/><effectiveTime value=\"20120512\"/>"
        "<doseQuantity value=\"20\" unit=\"mg\"/><rateQuantity value=\"2\" unit=\"mL/min\"/>"
        "<consumable><manufacturedProduct><manufacturedMaterial><code code=\"1807627\" "
        "codeSystem=\"2.16.840.1.113883.6.88\"/></manufacturedMaterial></manufacturedProduct>"
        "</consumable></substanceAdministration></entry>");

static const char *at(struct json_object *o, const char *path) {
    char buf[256], *save = NULL;
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *t = strtok_r(buf, ".", &save); t != NULL && o != NULL; t = strtok_r(NULL, ".", &save)) {
        if (json_object_is_type(o, json_type_array))
            o = json_object_array_get_idx(o, (size_t)atoi(t));
        else if (!json_object_object_get_ex(o, t, &o))
            o = NULL;
    }
    return o != NULL ? json_object_get_string(o) : NULL;
}

#define EXPECT(res, path, want)                                                     \
    do {                                                                              \
        const char *got_ = at(res, path);                                             \
        if (got_ == NULL || strcmp(got_, want) != 0)                                  \
            fail_msg("%s: expected '%s', got '%s'", path, want, got_ ? got_ : "(none)"); \
    } while (0)

/* The fullUrl of the entry whose resource is r (the same object). */
static const char *url_of(struct json_object *bundle, struct json_object *r) {
    struct json_object *entries = NULL, *res = NULL;
    json_object_object_get_ex(bundle, "entry", &entries);
    for (size_t i = 0; i < json_object_array_length(entries); i++) {
        struct json_object *e = json_object_array_get_idx(entries, i);
        if (json_object_object_get_ex(e, "resource", &res) && res == r)
            return at(e, "fullUrl");
    }
    return NULL;
}

/* The resource of a type whose path has the value (borrowed), or a failure. */
static struct json_object *find(struct json_object *bundle, const char *type, const char *path,
                                const char *want) {
    struct json_object *a = test_resources(bundle, type), *r = NULL;
    for (size_t i = 0; i < json_object_array_length(a) && r == NULL; i++) {
        const char *got = at(json_object_array_get_idx(a, i), path);
        if (got != NULL && strcmp(got, want) == 0) r = json_object_array_get_idx(a, i);
    }
    json_object_put(a); /* the Bundle still holds r */
    if (r == NULL) fail_msg("no %s with %s = %s", type, path, want);
    return r;
}

static size_t count(struct json_object *bundle, const char *type) {
    struct json_object *a = test_resources(bundle, type);
    size_t n = json_object_array_length(a);
    json_object_put(a);
    return n;
}

static hv_map_result_t mapped;

static int setup(void **state) {
    (void)state;
    char *doc = test_doc(body);
    mapped = test_map(doc);
    free(doc);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    hv_map_result_free(&mapped);
    return 0;
}

static void ccda_advance_directive_becomes_consent_with_document_and_author(void **state) {
    (void)state;
    struct json_object *b = mapped.bundle;
    struct json_object *cs = find(b, "Consent", "identifier.0.value",
                                  "urn:uuid:af6ebdf2-d996-11e2-a5b8-f23c91aec05e");
    EXPECT(cs, "status", "active");
    EXPECT(cs, "scope.coding.0.system", "http://terminology.hl7.org/CodeSystem/consentscope");
    EXPECT(cs, "scope.coding.0.code", "adr");
    EXPECT(cs, "category.0.coding.0.code", "45473-6");
    EXPECT(cs, "dateTime", "2011-02-19");
    EXPECT(cs, "provision.code.0.coding.0.code", "304253006");
    EXPECT(cs, "provision.period.start", "2011-02-19");
    EXPECT(cs, "policy.0.uri", "AD.pdf");
    struct json_object *pat = find(b, "Patient", "resourceType", "Patient");
    EXPECT(cs, "patient.reference", url_of(b, pat));
    /* The referenced document, as the Consent's source. */
    struct json_object *dr = find(b, "DocumentReference", "content.0.attachment.url", "AD.pdf");
    EXPECT(dr, "status", "current");
    EXPECT(dr, "content.0.attachment.contentType", "application/pdf");
    EXPECT(cs, "sourceReference.reference", url_of(b, dr));
    /* The author: a Provenance of the Consent naming the nurse for her hospital. */
    struct json_object *nurse = find(b, "Practitioner", "name.0.family", "Nightingale");
    struct json_object *org = find(b, "Organization", "name", "Good Health Hospital");
    struct json_object *pv = find(b, "Provenance", "target.0.reference", url_of(b, cs));
    EXPECT(pv, "recorded", "2013-08-01T12:35:00-08:00");
    EXPECT(pv, "agent.0.type.coding.0.code", "author");
    EXPECT(pv, "agent.0.who.reference", url_of(b, nurse));
    EXPECT(pv, "agent.0.onBehalfOf.reference", url_of(b, org));
    /* A lone observation without a document names its rule instead (FHIR ppc-1). */
    struct json_object *lone = find(b, "Consent", "identifier.0.value", "ad2");
    EXPECT(lone, "provision.code.0.coding.0.code", "71388002");
    EXPECT(lone, "category.0.coding.0.code", "75278-2");
    EXPECT(lone, "policyRule.text", "advance directive");
    assert_null(at(lone, "policy"));
    assert_int_equal(count(b, "Consent"), 2);
}

static void ccda_payer_policy_becomes_coverage(void **state) {
    (void)state;
    struct json_object *b = mapped.bundle;
    struct json_object *cov = find(b, "Coverage", "identifier.0.value",
                                   "urn:uuid:3e676a50-7aac-11db-9fe1-0800200c9a66");
    EXPECT(cov, "status", "active");
    EXPECT(cov, "type.coding.0.code", "81");
    EXPECT(cov, "subscriberId", "1138345");
    EXPECT(cov, "relationship.coding.0.system",
           "http://terminology.hl7.org/CodeSystem/subscriber-relationship");
    EXPECT(cov, "relationship.coding.0.code", "self");
    EXPECT(cov, "relationship.coding.1.code", "SELF");
    EXPECT(cov, "period.start", "2011-01-01");
    struct json_object *pat = find(b, "Patient", "resourceType", "Patient");
    struct json_object *payer = find(b, "Organization", "name", "Good Health Insurance");
    EXPECT(cov, "beneficiary.reference", url_of(b, pat));
    EXPECT(cov, "subscriber.reference", url_of(b, pat));
    EXPECT(cov, "payor.0.reference", url_of(b, payer));
    /* The policy without a payer is left out (Coverage.payor is required), with a warning. */
    assert_int_equal(count(b, "Coverage"), 1);
    assert_non_null(strstr(json_object_to_json_string(mapped.outcome), "names no payer"));
}

static void ccda_equipment_procedure_referral_requester_and_rate(void **state) {
    (void)state;
    struct json_object *b = mapped.bundle;
    struct json_object *pr = find(b, "Procedure", "code.coding.0.code", "103716009");
    EXPECT(pr, "performedDateTime", "2013-05-12");
    EXPECT(pr, "bodySite.0.coding.0.code", "28273000");
    struct json_object *org = find(b, "Organization", "name", "Community Health and Hospitals");
    struct json_object *who = find(b, "Practitioner", "identifier.0.value", "1234");
    EXPECT(pr, "performer.0.actor.reference", url_of(b, who));
    EXPECT(pr, "performer.0.onBehalfOf.reference", url_of(b, org));
    struct json_object *sr = find(b, "ServiceRequest", "code.coding.0.code", "44383000");
    struct json_object *nurse = find(b, "Practitioner", "name.0.family", "Florence");
    EXPECT(sr, "requester.reference", url_of(b, nurse));
    struct json_object *ms = find(b, "MedicationStatement", "medicationCodeableConcept.coding.0.code",
                                  "1807627");
    EXPECT(ms, "dosage.0.doseAndRate.0.doseQuantity.value", "20");
    EXPECT(ms, "dosage.0.doseAndRate.0.rateQuantity.value", "2");
    EXPECT(ms, "dosage.0.doseAndRate.0.rateQuantity.code", "mL/min");
}

static void ccda_admin_bundle_validates(void **state) {
    (void)state;
    hv_fhir_validator_t *v = hv_fhir_validator_new();
    struct json_object *oo = NULL;
    int errors = -1;
    assert_int_equal(hv_fhir_validate(v, mapped.bundle, NULL, 0, &oo, &errors), HV_OK);
    if (errors != 0) fail_msg("validation errors: %s", json_object_to_json_string(oo));
    json_object_put(oo);
    hv_fhir_validator_free(v);
}

int run_admin_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ccda_advance_directive_becomes_consent_with_document_and_author),
        cmocka_unit_test(ccda_payer_policy_becomes_coverage),
        cmocka_unit_test(ccda_equipment_procedure_referral_requester_and_rate),
        cmocka_unit_test(ccda_admin_bundle_validates),
    };
    return cmocka_run_group_tests_name("ccda_admin", tests, setup, teardown);
}
