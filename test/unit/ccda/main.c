/* main.c — runs every ccda unit-test group; the exit status is the failure count. */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"

hv_map_result_t test_map(const char *xml) {
    hv_map_result_t r = {0};
    hv_error_t err;
    hv_error_clear(&err);
    int rc = hv_map_ccda_to_fhir(xml, strlen(xml), NULL, &r, &err);
    if (rc != HV_OK) fail_msg("mapping failed: %d %s (line %d)", rc, err.message, err.line);
    assert_non_null(r.bundle);
    assert_non_null(r.outcome);
    return r;
}

struct json_object *test_resources(struct json_object *bundle, const char *type) {
    struct json_object *out = json_object_new_array(), *entries = NULL;
    json_object_object_get_ex(bundle, "entry", &entries);
    for (size_t i = 0; i < json_object_array_length(entries); i++) {
        struct json_object *r = NULL;
        json_object_object_get_ex(json_object_array_get_idx(entries, i), "resource", &r);
        if (r != NULL && strcmp(hv_json_get_str(r, "resourceType"), type) == 0)
            json_object_array_add(out, json_object_get(r));
    }
    return out;
}

static const char doc_head[] =
    "<?xml version=\"1.0\"?>\n"
    "<ClinicalDocument xmlns=\"urn:hl7-org:v3\" xmlns:sdtc=\"urn:hl7-org:sdtc\"\n"
    "    xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n"
    "  <templateId root=\"2.16.840.1.113883.10.20.22.1.1\"/>\n"
    "  <id root=\"2.16.840.1.113883.19.5\" extension=\"doc-1\"/>\n"
    "  <code code=\"34133-9\" codeSystem=\"2.16.840.1.113883.6.1\" displayName=\"Summary of episode note\"/>\n"
    "  <title>Test CCD</title>\n"
    "  <effectiveTime value=\"20240102103000-0500\"/>\n"
    "  <confidentialityCode code=\"N\" codeSystem=\"2.16.840.1.113883.5.25\"/>\n"
    "  <recordTarget><patientRole>\n"
    "    <id root=\"2.16.840.1.113883.19.5.99999.2\" extension=\"MRN-998991\"/>\n"
    "    <id root=\"2.16.840.1.113883.4.1\" extension=\"111-00-2330\"/>\n"
    "    <addr use=\"HP\"><streetAddressLine>1357 Amber Drive</streetAddressLine>"
    "<city>Beaverton</city><state>OR</state><postalCode>97867</postalCode><country>US</country></addr>\n"
    "    <telecom value=\"tel:+1(555)555-2003\" use=\"HP\"/>\n"
    "    <telecom value=\"mailto:eve@example.org\"/>\n"
    "    <patient>\n"
    "      <name use=\"L\"><given>Eve</given><given>Marie</given><family>Everywoman</family></name>\n"
    "      <administrativeGenderCode code=\"F\" codeSystem=\"2.16.840.1.113883.5.1\"/>\n"
    "      <birthTime value=\"19750501\"/>\n"
    "      <raceCode code=\"2106-3\" displayName=\"White\" codeSystem=\"2.16.840.1.113883.6.238\"/>\n"
    "      <sdtc:raceCode code=\"2076-8\" displayName=\"Native Hawaiian or Other Pacific Islander\" "
    "codeSystem=\"2.16.840.1.113883.6.238\"/>\n"
    "      <ethnicGroupCode code=\"2186-5\" displayName=\"Not Hispanic or Latino\" "
    "codeSystem=\"2.16.840.1.113883.6.238\"/>\n"
    "      <languageCommunication><languageCode code=\"eng\"/><preferenceInd value=\"true\"/>"
    "</languageCommunication>\n"
    "    </patient>\n"
    "  </patientRole></recordTarget>\n"
    "  <author><time value=\"20240102\"/><assignedAuthor>\n"
    "    <id root=\"2.16.840.1.113883.4.6\" extension=\"1234567890\"/>\n"
    "    <assignedPerson><name><given>Henry</given><family>Seven</family></name></assignedPerson>\n"
    "    <representedOrganization><name>Good Health Clinic</name></representedOrganization>\n"
    "  </assignedAuthor></author>\n"
    "  <custodian><assignedCustodian><representedCustodianOrganization>\n"
    "    <id root=\"2.16.840.1.113883.4.6\" extension=\"999\"/><name>Good Health HIE</name>\n"
    "  </representedCustodianOrganization></assignedCustodian></custodian>\n"
    "  <component><structuredBody>\n";

char *test_doc(const char *body) {
    static const char tail[] = "  </structuredBody></component>\n</ClinicalDocument>\n";
    size_t n = strlen(doc_head) + strlen(body) + strlen(tail) + 1;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%s%s%s", doc_head, body, tail);
    return s;
}

int main(void) {
    int failed = 0;
    failed += run_datatypes_tests();
    failed += run_ccda_to_fhir_tests();
    failed += run_entries_tests();
    failed += run_admin_tests();
    failed += run_corpus_tests();
    return failed;
}
