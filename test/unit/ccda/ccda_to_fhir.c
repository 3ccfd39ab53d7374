/* ccda_to_fhir.c — tests of adapters/ccda/ccda_to_fhir.c and header.c: the safe XML
 * reader, the header → Patient/Practitioner/Organization/Composition, the Bundle's
 * conditional requests, determinism and the outcome's issues. */
#include "config.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "tests.h"

static const char narrative_section[] =
    "<component><section>\n"
    "  <templateId root=\"2.16.840.1.113883.10.20.22.2.8\"/>\n"
    "  <code code=\"51848-0\" codeSystem=\"2.16.840.1.113883.6.1\" displayName=\"Assessment\"/>\n"
    "  <title>ASSESSMENT</title>\n"
    "  <text><paragraph>Stable &amp; improving <content styleCode=\"Bold\">&lt;b&gt;</content></paragraph>"
    "<list><item>one</item></list><table><tbody><tr><td colspan=\"2\">x</td></tr></tbody></table></text>\n"
    "</section></component>\n";

static struct json_object *first(struct json_object *bundle, const char *type) {
    struct json_object *a = test_resources(bundle, type);
    struct json_object *r = json_object_array_length(a) > 0 ? json_object_get(json_object_array_get_idx(a, 0)) : NULL;
    json_object_put(a);
    if (r == NULL) fail_msg("no %s in the Bundle", type);
    return r;
}

static const char *path_str(struct json_object *o, const char *path) {
    /* "a.b.0.c": object keys and array indexes. */
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

static void ccda_maps_header_to_us_core_patient(void **state) {
    (void)state;
    char *doc = test_doc(narrative_section);
    hv_map_result_t r = test_map(doc);
    struct json_object *p = first(r.bundle, "Patient");
    assert_string_equal(path_str(p, "identifier.0.system"), "urn:oid:2.16.840.1.113883.19.5.99999.2");
    assert_string_equal(path_str(p, "identifier.0.value"), "MRN-998991");
    assert_string_equal(path_str(p, "identifier.1.system"), "http://hl7.org/fhir/sid/us-ssn");
    assert_string_equal(path_str(p, "name.0.family"), "Everywoman");
    assert_string_equal(path_str(p, "name.0.given.1"), "Marie");
    assert_string_equal(path_str(p, "name.0.use"), "official");
    assert_string_equal(path_str(p, "gender"), "female");
    assert_string_equal(path_str(p, "birthDate"), "1975-05-01");
    assert_string_equal(path_str(p, "address.0.city"), "Beaverton");
    assert_string_equal(path_str(p, "address.0.use"), "home");
    assert_string_equal(path_str(p, "telecom.0.system"), "phone");
    assert_string_equal(path_str(p, "telecom.0.value"), "+1(555)555-2003");
    assert_string_equal(path_str(p, "telecom.1.system"), "email");
    assert_string_equal(path_str(p, "communication.0.language.coding.0.code"), "en");
    /* US Core race: both OMB categories (one from sdtc:raceCode) and the text. */
    assert_string_equal(path_str(p, "extension.0.url"),
                        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race");
    assert_string_equal(path_str(p, "extension.0.extension.0.valueCoding.code"), "2106-3");
    assert_string_equal(path_str(p, "extension.0.extension.1.valueCoding.code"), "2076-8");
    assert_string_equal(path_str(p, "extension.0.extension.2.url"), "text");
    assert_string_equal(path_str(p, "extension.1.extension.0.valueCoding.code"), "2186-5");
    json_object_put(p);

    struct json_object *pr = first(r.bundle, "Practitioner");
    assert_string_equal(path_str(pr, "identifier.0.system"), "http://hl7.org/fhir/sid/us-npi");
    assert_string_equal(path_str(pr, "name.0.family"), "Seven");
    json_object_put(pr);

    struct json_object *comp = first(r.bundle, "Composition");
    assert_string_equal(path_str(comp, "date"), "2024-01-02T10:30:00-05:00");
    assert_string_equal(path_str(comp, "title"), "Test CCD");
    assert_string_equal(path_str(comp, "type.coding.0.system"), "http://loinc.org");
    assert_string_equal(path_str(comp, "confidentiality"), "N");
    assert_non_null(path_str(comp, "custodian.reference"));
    /* The narrative is kept as XHTML, its text escaped. */
    const char *div = path_str(comp, "section.0.text.div");
    assert_non_null(div);
    assert_non_null(strstr(div, "<p>Stable &amp; improving <span>&lt;b&gt;</span></p>"));
    assert_non_null(strstr(div, "<ul><li>one</li></ul>"));
    assert_non_null(strstr(div, "<td colspan=\"2\">x</td>"));
    json_object_put(comp);

    /* The Composition comes first; the Patient is a conditional update by its identifier. */
    struct json_object *entries = NULL;
    json_object_object_get_ex(r.bundle, "entry", &entries);
    assert_string_equal(path_str(json_object_array_get_idx(entries, 0), "resource.resourceType"),
                        "Composition");
    int found = 0;
    for (size_t i = 0; i < json_object_array_length(entries); i++) {
        struct json_object *e = json_object_array_get_idx(entries, i);
        if (strcmp(path_str(e, "resource.resourceType"), "Patient") != 0) continue;
        assert_string_equal(path_str(e, "request.method"), "PUT");
        assert_string_equal(path_str(e, "request.url"),
                            "Patient?identifier=urn:oid:2.16.840.1.113883.19.5.99999.2|MRN-998991");
        assert_memory_equal(path_str(e, "fullUrl"), "urn:uuid:", 9);
        found = 1;
    }
    assert_true(found);
    hv_map_result_free(&r);
    free(doc);
}

static void ccda_mapping_is_deterministic(void **state) {
    (void)state;
    char *doc = test_doc(narrative_section);
    hv_map_result_t a = test_map(doc), b = test_map(doc);
    assert_string_equal(json_object_to_json_string(a.bundle), json_object_to_json_string(b.bundle));
    hv_map_result_free(&a);
    hv_map_result_free(&b);
    free(doc);
}

static void ccda_unknown_section_is_an_issue_and_mapping_continues(void **state) {
    (void)state;
    char *doc = test_doc("<component><section><templateId root=\"1.2.3.4.5\"/>"
                         "<title>Custom</title><text>kept text</text></section></component>"
                         "<component><section><templateId root=\"2.16.840.1.113883.10.20.22.2.8\"/>"
                         "<title>Assessment</title><text>fine</text></section></component>");
    hv_map_result_t r = test_map(doc);
    const char *oo = json_object_to_json_string(r.outcome);
    assert_non_null(strstr(oo, "1.2.3.4.5"));
    assert_non_null(strstr(oo, "\"warning\""));
    struct json_object *comp = first(r.bundle, "Composition");
    assert_non_null(strstr(path_str(comp, "section.0.text.div"), "kept text"));
    assert_string_equal(path_str(comp, "section.1.title"), "Assessment");
    json_object_put(comp);
    hv_map_result_free(&r);
    free(doc);
}

static void ccda_malformed_xml_fails_with_line(void **state) {
    (void)state;
    static const char bad[] = "<ClinicalDocument xmlns=\"urn:hl7-org:v3\">\n<id root=\"1\">\n</Clinical>\n";
    hv_map_result_t r = {0};
    hv_error_t err;
    hv_error_clear(&err);
    assert_int_equal(hv_map_ccda_to_fhir(bad, strlen(bad), NULL, &r, &err), HV_EPROTO);
    if (err.line != 3) fail_msg("line %d: %s", err.line, err.message);
    assert_null(r.bundle);
    assert_int_equal(hv_map_ccda_to_fhir("", 0, NULL, &r, &err), HV_EPROTO);
}

static void ccda_refuses_doctype_and_external_entities(void **state) {
    (void)state;
    static const char xxe[] =
        "<?xml version=\"1.0\"?>\n<!DOCTYPE ClinicalDocument [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\n"
        "<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><title>&x;</title></ClinicalDocument>\n";
    hv_map_result_t r = {0};
    hv_error_t err;
    hv_error_clear(&err);
    assert_int_equal(hv_map_ccda_to_fhir(xxe, strlen(xxe), NULL, &r, &err), HV_EPROTO);
    assert_non_null(strstr(err.message, "DOCTYPE"));
    assert_null(r.bundle);
}

/* libxml2 resolves the unknown name "UTF08" to a converter that skips the bytes it cannot
 * convert: the patient's name lost a letter ("Wlma") without a word. ISO-8859-1 converts. */
static void ccda_refuses_bytes_its_declared_encoding_cannot_convert(void **state) {
    (void)state;
    static const char doc[] =
        "<?xml version=\"1.0\" encoding=\"%s\"?>\n<ClinicalDocument xmlns=\"urn:hl7-org:v3\">"
        "<title>W\xe9lma</title></ClinicalDocument>\n";
    char text[512];
    hv_map_result_t r = {0};
    hv_error_t err;
    hv_error_clear(&err);
    int n = snprintf(text, sizeof(text), doc, "UTF08");
    assert_int_equal(hv_map_ccda_to_fhir(text, (size_t)n, NULL, &r, &err), HV_EPROTO);
    if (strstr(err.message, "not valid UTF08") == NULL) fail_msg("%s", err.message);
    assert_int_equal(err.line, 1);
    assert_null(r.bundle);
    /* The same byte in a document that declares ISO-8859-1 is no conversion error. */
    hv_error_clear(&err);
    n = snprintf(text, sizeof(text), doc, "ISO-8859-1");
    int rc = hv_map_ccda_to_fhir(text, (size_t)n, NULL, &r, &err);
    if (rc == HV_EPROTO && strstr(err.message, "not valid") != NULL) fail_msg("%s", err.message);
    hv_map_result_free(&r);
}

static void ccda_refuses_too_deep_documents(void **state) {
    (void)state;
    hv_buf_t b;
    hv_buf_init(&b, 0);
    hv_buf_puts(&b, "<ClinicalDocument xmlns=\"urn:hl7-org:v3\">");
    for (int i = 0; i < HV_CCDA_MAX_DEPTH + 10; i++) hv_buf_puts(&b, "<a>");
    for (int i = 0; i < HV_CCDA_MAX_DEPTH + 10; i++) hv_buf_puts(&b, "</a>");
    hv_buf_puts(&b, "</ClinicalDocument>");
    hv_map_result_t r = {0};
    hv_error_t err;
    hv_error_clear(&err);
    assert_int_equal(hv_map_ccda_to_fhir(b.data, b.len, NULL, &r, &err), HV_ETOOBIG);
    hv_buf_release(&b);
}

static void ccda_without_patient_identity_fails(void **state) {
    (void)state;
    char *doc = test_doc("");
    /* Replace both patient ids by nullFlavors. */
    char *p = strstr(doc, "<id root=\"2.16.840.1.113883.19.5.99999.2\" extension=\"MRN-998991\"/>");
    assert_non_null(p);
    memcpy(p, "<id nullFlavor=\"UNK\"/>", strlen("<id nullFlavor=\"UNK\"/>"));
    memset(p + strlen("<id nullFlavor=\"UNK\"/>"), ' ',
           strlen("<id root=\"2.16.840.1.113883.19.5.99999.2\" extension=\"MRN-998991\"/>") -
               strlen("<id nullFlavor=\"UNK\"/>"));
    p = strstr(doc, "<id root=\"2.16.840.1.113883.4.1\" extension=\"111-00-2330\"/>");
    memset(p, ' ', strlen("<id root=\"2.16.840.1.113883.4.1\" extension=\"111-00-2330\"/>"));
    hv_map_result_t r = {0};
    hv_error_t err;
    hv_error_clear(&err);
    assert_int_equal(hv_map_ccda_to_fhir(doc, strlen(doc), NULL, &r, &err), HV_EINVAL);
    assert_non_null(strstr(err.location, "patientRole"));
    assert_null(r.bundle);
    free(doc);
}

/* An id root that is neither an OID nor a UUID is kept as a bare value (no system, so no
 * conditional update); it cannot be the patient's identity. */
static void ccda_malformed_id_root_is_a_bare_value_not_an_identity(void **state) {
    (void)state;
    static const char body[] =
        "<component><section><templateId root=\"2.16.840.1.113883.10.20.22.2.5.1\"/>"
        "<title>P</title><text>p</text><entry><act classCode=\"ACT\" moodCode=\"EVN\">"
        "<templateId root=\"2.16.840.1.113883.10.20.22.4.3\"/><statusCode code=\"active\"/>"
        "<entryRelationship typeCode=\"SUBJ\"><observation classCode=\"OBS\" moodCode=\"EVN\">"
        "<templateId root=\"2.16.840.1.113883.10.20.22.4.4\"/>"
        "<id root=\"37f76c51-6411-4e1d-8a37-957fd49d2ceg\"/>"
        "<value xsi:type=\"CD\" code=\"233604007\" codeSystem=\"2.16.840.1.113883.6.96\"/>"
        "</observation></entryRelationship></act></entry></section></component>\n";
    char *doc = test_doc(body);
    hv_map_result_t r = test_map(doc);
    struct json_object *conds = test_resources(r.bundle, "Condition"), *ids = NULL;
    assert_int_equal(json_object_array_length(conds), 1);
    assert_true(json_object_object_get_ex(json_object_array_get_idx(conds, 0), "identifier", &ids));
    struct json_object *id = json_object_array_get_idx(ids, 0);
    assert_string_equal(hv_json_get_str(id, "value"), "37f76c51-6411-4e1d-8a37-957fd49d2ceg");
    assert_null(hv_json_get_str(id, "system"));
    json_object_put(conds);
    hv_map_result_free(&r);
    /* The same kind of root as the patient's only ids: the document is refused. */
    static const char *const pids[] = {
        "<id root=\"2.16.840.1.113883.19.5.99999.2\" extension=\"MRN-998991\"/>",
        "<id root=\"2.16.840.1.113883.4.1\" extension=\"111-00-2330\"/>"};
    static const char bad[] = "<id root=\"not-an-oid\"/>";
    for (size_t i = 0; i < 2; i++) {
        char *p = strstr(doc, pids[i]);
        assert_non_null(p);
        memcpy(p, bad, strlen(bad));
        memset(p + strlen(bad), ' ', strlen(pids[i]) - strlen(bad));
    }
    hv_map_result_t r2 = {0};
    hv_error_t err;
    hv_error_clear(&err);
    assert_int_equal(hv_map_ccda_to_fhir(doc, strlen(doc), NULL, &r2, &err), HV_EINVAL);
    assert_null(r2.bundle);
    free(doc);
}

static void ccda_rejects_a_non_cda_root(void **state) {
    (void)state;
    static const char x[] = "<Patient xmlns=\"http://hl7.org/fhir\"/>";
    hv_map_result_t r = {0};
    hv_error_t err;
    hv_error_clear(&err);
    assert_int_equal(hv_map_ccda_to_fhir(x, strlen(x), NULL, &r, &err), HV_EINVAL);
}

int run_ccda_to_fhir_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ccda_maps_header_to_us_core_patient),
        cmocka_unit_test(ccda_mapping_is_deterministic),
        cmocka_unit_test(ccda_unknown_section_is_an_issue_and_mapping_continues),
        cmocka_unit_test(ccda_malformed_xml_fails_with_line),
        cmocka_unit_test(ccda_refuses_doctype_and_external_entities),
        cmocka_unit_test(ccda_refuses_bytes_its_declared_encoding_cannot_convert),
        cmocka_unit_test(ccda_refuses_too_deep_documents),
        cmocka_unit_test(ccda_without_patient_identity_fails),
        cmocka_unit_test(ccda_rejects_a_non_cda_root),
        cmocka_unit_test(ccda_malformed_id_root_is_a_bare_value_not_an_identity),
    };
    return cmocka_run_group_tests_name("ccda_to_fhir", tests, NULL, NULL);
}
