/*
 * fhir_to_v2.c — tests of mappings/fhir_to_v2.c: ADT^A08 and ORU^R01 from FHIR, each
 * message parsed back with the hl7v2 adapter to check that identifiers, names, codes,
 * values, units and times survive, escaping included. (A binary of its own so that
 * it does not collide with the v2 → FHIR tests of the mappings module.)
 */
#include "config.h"

#include <json-c/json.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "adapters/hl7v2/hl7v2.h"
#include "mappings/mappings.h"

typedef struct mapped {
    hv_arena_t *arena;
    hv_hl7v2_msg_t msg;
    hv_buf_t text;
    hv_map_result_t res;
} mapped_t;

static void map_ok(mapped_t *m, const char *json, const char *type) {
    hv_error_t err;
    memset(m, 0, sizeof(*m));
    hv_error_clear(&err);
    hv_buf_init(&m->text, 0);
    int rc = hv_map_fhir_to_v2(json, strlen(json), type, NULL, &m->text, &m->res, &err);
    if (rc != HV_OK) fail_msg("mapping failed: %d %s", rc, err.message);
    assert_non_null(m->res.outcome);
    assert_null(m->res.bundle);
    m->arena = hv_arena_new(0);
    if (hv_hl7v2_parse(m->arena, m->text.data, m->text.len, NULL, &m->msg, &err, NULL) != HV_OK)
        fail_msg("the message does not parse: %s (%s)", err.message, m->text.data);
}

static void mapped_free(mapped_t *m) {
    hv_arena_free(m->arena);
    hv_buf_release(&m->text);
    hv_map_result_free(&m->res);
}

static void expect(mapped_t *m, const char *path, const char *want) {
    char *got = NULL;
    size_t n = 0;
    if (hv_hl7v2_get_text(&m->msg, path, &got, &n) != HV_OK) got = NULL;
    if (got == NULL || strcmp(got, want) != 0)
        fail_msg("%s: expected '%s', got '%s'", path, want, got != NULL ? got : "(absent)");
}

/* True when OBX[k]-<rest> reads want. */
static int has(mapped_t *m, unsigned k, const char *rest, const char *want) {
    char p[64], *got = NULL;
    size_t n;
    snprintf(p, sizeof(p), "OBX[%u]-%s", k, rest);
    return want != NULL && hv_hl7v2_get_text(&m->msg, p, &got, &n) == HV_OK && strcmp(got, want) == 0;
}

static const char adt_bundle[] =
    "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":["
    "{\"fullUrl\":\"urn:uuid:1\",\"resource\":{\"resourceType\":\"Patient\","
    "\"identifier\":[{\"system\":\"urn:oid:2.16.840.1.113883.19.5\",\"value\":\"MRN-1\","
    "\"type\":{\"coding\":[{\"code\":\"MR\"}]}},{\"system\":\"http://hl7.org/fhir/sid/us-ssn\",\"value\":\"111-00-2330\"}],"
    "\"name\":[{\"use\":\"official\",\"family\":\"O|Brien^~\\\\&\",\"given\":[\"Eve\",\"Marie\",\"Ann\"],"
    "\"prefix\":[\"Ms\"]}],"
    "\"gender\":\"female\",\"birthDate\":\"1975-05-01\","
    "\"address\":[{\"use\":\"home\",\"line\":[\"1357 Amber Drive\"],\"city\":\"Beaverton\","
    "\"state\":\"OR\",\"postalCode\":\"97867\",\"country\":\"US\"}],"
    "\"telecom\":[{\"system\":\"phone\",\"value\":\"+1(555)555-2003\",\"use\":\"home\"},"
    "{\"system\":\"email\",\"value\":\"eve@example.org\"},"
    "{\"system\":\"phone\",\"value\":\"555-1000\",\"use\":\"work\"}],"
    "\"deceasedBoolean\":false}},"
    "{\"fullUrl\":\"urn:uuid:2\",\"resource\":{\"resourceType\":\"Encounter\",\"status\":\"finished\","
    "\"class\":{\"system\":\"http://terminology.hl7.org/CodeSystem/v3-ActCode\",\"code\":\"IMP\"},"
    "\"identifier\":[{\"system\":\"urn:oid:1.2.3\",\"value\":\"V100\"}],"
    "\"period\":{\"start\":\"2024-01-02T10:30:00-05:00\",\"end\":\"2024-01-05\"}}}]}";

static void fhir_to_v2_adt_a08_carries_patient_and_visit(void **state) {
    (void)state;
    mapped_t m;
    map_ok(&m, adt_bundle, "ADT_A08");
    expect(&m, "MSH-9", "ADT^A08^ADT_A01");
    expect(&m, "MSH-12", "2.5.1");
    expect(&m, "EVN-1", "A08");
    char *ctrl = NULL;
    size_t n = 0;
    assert_int_equal(hv_hl7v2_get_text(&m.msg, "MSH-10", &ctrl, &n), HV_OK);
    assert_true(n > 2);
    assert_int_equal(hv_hl7v2_get_text(&m.msg, "MSH-7", &ctrl, &n), HV_OK);
    assert_true(n >= 14);
    expect(&m, "PID-3[1].1", "MRN-1");
    expect(&m, "PID-3[1].4.2", "2.16.840.1.113883.19.5");
    expect(&m, "PID-3[1].4.3", "ISO");
    expect(&m, "PID-3[1].5", "MR");
    expect(&m, "PID-3[2].1", "111-00-2330");
    expect(&m, "PID-3[2].4.2", "http://hl7.org/fhir/sid/us-ssn");
    /* Delimiters inside a name survive through the escapes. */
    expect(&m, "PID-5.1", "O|Brien^~\\&");
    expect(&m, "PID-5.2", "Eve");
    expect(&m, "PID-5.3", "Marie Ann");
    expect(&m, "PID-5.5", "Ms");
    expect(&m, "PID-5.7", "L");
    expect(&m, "PID-7", "19750501");
    expect(&m, "PID-8", "F");
    expect(&m, "PID-11.1", "1357 Amber Drive");
    expect(&m, "PID-11.3", "Beaverton");
    expect(&m, "PID-11.5", "97867");
    expect(&m, "PID-11.7", "H");
    expect(&m, "PID-13[1].1", "+1(555)555-2003");
    expect(&m, "PID-13[2].4", "eve@example.org");
    expect(&m, "PID-14.1", "555-1000");
    expect(&m, "PID-30", "N");
    expect(&m, "PV1-2", "I");
    expect(&m, "PV1-19.1", "V100");
    expect(&m, "PV1-44", "20240102103000-0500");
    expect(&m, "PV1-45", "20240105");
    mapped_free(&m);
}

static const char oru_bundle[] =
    "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["
    "{\"fullUrl\":\"urn:uuid:p\",\"resource\":{\"resourceType\":\"Patient\","
    "\"identifier\":[{\"system\":\"urn:oid:1.2.3\",\"value\":\"P1\"}],\"name\":[{\"family\":\"Doe\",\"given\":[\"Jo\"]}]}},"
    "{\"fullUrl\":\"urn:uuid:dr\",\"resource\":{\"resourceType\":\"DiagnosticReport\",\"status\":\"final\","
    "\"identifier\":[{\"system\":\"urn:oid:1.2.3.4\",\"value\":\"ACC-9\"}],"
    "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"24323-8\",\"display\":\"CMP\"}]},"
    "\"effectiveDateTime\":\"2024-03-01T08:30:00Z\",\"issued\":\"2024-03-01T12:00:00.250+01:00\","
    "\"subject\":{\"reference\":\"urn:uuid:p\"},"
    "\"result\":[{\"reference\":\"urn:uuid:o1\"},{\"reference\":\"Observation/o2\"},"
    "{\"reference\":\"urn:uuid:o3\"},{\"reference\":\"urn:uuid:o4\"},{\"reference\":\"urn:uuid:o5\"}]}},"
    "{\"fullUrl\":\"urn:uuid:o1\",\"resource\":{\"resourceType\":\"Observation\",\"status\":\"final\","
    "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"2345-7\",\"display\":\"Glucose\"}]},"
    "\"effectiveDateTime\":\"2024-03-01T08:30:00Z\","
    "\"valueQuantity\":{\"value\":5.50,\"unit\":\"mmol/L\",\"system\":\"http://unitsofmeasure.org\",\"code\":\"mmol/L\"},"
    "\"interpretation\":[{\"coding\":[{\"code\":\"H\"}]}],"
    "\"referenceRange\":[{\"low\":{\"value\":3.9},\"high\":{\"value\":5.5}}]}},"
    "{\"fullUrl\":\"http://x/fhir/Observation/o2\",\"resource\":{\"resourceType\":\"Observation\",\"id\":\"o2\","
    "\"status\":\"corrected\","
    "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"94500-6\"}]},"
    "\"valueCodeableConcept\":{\"coding\":[{\"system\":\"http://snomed.info/sct\",\"code\":\"260385009\","
    "\"display\":\"Negative\"}]}}},"
    "{\"fullUrl\":\"urn:uuid:o3\",\"resource\":{\"resourceType\":\"Observation\",\"status\":\"final\","
    "\"code\":{\"text\":\"eGFR\"},\"valueQuantity\":{\"value\":60,\"comparator\":\">\",\"unit\":\"mL/min\"}}},"
    "{\"fullUrl\":\"urn:uuid:o4\",\"resource\":{\"resourceType\":\"Observation\",\"status\":\"preliminary\","
    "\"code\":{\"text\":\"comment\"},\"valueString\":\"a|b^c\\nline2\"}},"
    "{\"fullUrl\":\"urn:uuid:o5\",\"resource\":{\"resourceType\":\"Observation\",\"status\":\"final\","
    "\"code\":{\"text\":\"date\"},\"valueDateTime\":\"2024-02-29\"}}]}";

static void fhir_to_v2_oru_r01_carries_results(void **state) {
    (void)state;
    mapped_t m;
    map_ok(&m, oru_bundle, "ORU_R01");
    expect(&m, "MSH-9", "ORU^R01^ORU_R01");
    expect(&m, "PID-3.1", "P1");
    expect(&m, "PID-5.1", "Doe");
    expect(&m, "OBR-3.1", "ACC-9");
    expect(&m, "OBR-3.3", "1.2.3.4");
    expect(&m, "OBR-4.1", "24323-8");
    expect(&m, "OBR-4.3", "LN");
    expect(&m, "OBR-7", "20240301083000+0000");
    expect(&m, "OBR-22", "20240301120000.250+0100");
    expect(&m, "OBR-25", "F");
    expect(&m, "OBX[1]-2", "NM");
    expect(&m, "OBX[1]-3.1", "2345-7");
    expect(&m, "OBX[1]-3.3", "LN");
    expect(&m, "OBX[1]-5", "5.50");
    expect(&m, "OBX[1]-6.1", "mmol/L");
    expect(&m, "OBX[1]-6.3", "UCUM");
    expect(&m, "OBX[1]-7", "3.9-5.5");
    expect(&m, "OBX[1]-8", "H");
    expect(&m, "OBX[1]-11", "F");
    expect(&m, "OBX[1]-14", "20240301083000+0000");
    expect(&m, "OBX[2]-2", "CWE");
    expect(&m, "OBX[2]-5.1", "260385009");
    expect(&m, "OBX[2]-5.3", "SCT");
    expect(&m, "OBX[2]-11", "C");
    expect(&m, "OBX[3]-2", "SN");
    expect(&m, "OBX[3]-3.2", "eGFR");
    expect(&m, "OBX[3]-5.1", ">");
    expect(&m, "OBX[3]-5.2", "60");
    expect(&m, "OBX[4]-2", "ST");
    expect(&m, "OBX[4]-5", "a|b^c\nline2");
    expect(&m, "OBX[4]-11", "P");
    expect(&m, "OBX[5]-2", "DT");
    expect(&m, "OBX[5]-5", "20240229");
    assert_int_equal(hv_hl7v2_seg_count(&m.msg, "OBR"), 1);
    mapped_free(&m);
}

static void fhir_to_v2_single_observation_gets_its_own_obr(void **state) {
    (void)state;
    static const char obs[] =
        "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":"
        "\"http://loinc.org\",\"code\":\"8480-6\"}]},\"subject\":{\"identifier\":{\"system\":"
        "\"urn:oid:9.9\",\"value\":\"X1\"}},\"component\":[{\"code\":{\"coding\":[{\"code\":\"a\"}]},"
        "\"valueQuantity\":{\"value\":120,\"unit\":\"mm[Hg]\"}},{\"code\":{\"text\":\"t\"},"
        "\"valueDateTime\":\"2024-01-02T03:04:05+01:00\"}]}";
    mapped_t m;
    map_ok(&m, obs, "ORU_R01");
    expect(&m, "PID-3.1", "X1");
    expect(&m, "OBR-4.1", "8480-6");
    expect(&m, "OBX[2]-3.1", "a");
    expect(&m, "OBX[2]-4", "1.1");
    expect(&m, "OBX[2]-5", "120");
    expect(&m, "OBX[2]-6.1", "mm[Hg]");
    expect(&m, "OBX[3]-2", "TS");
    expect(&m, "OBX[3]-5", "20240102030405+0100");
    mapped_free(&m);
}

static void fhir_to_v2_refuses_what_it_cannot_map(void **state) {
    (void)state;
    hv_buf_t b;
    hv_map_result_t r = {0};
    hv_error_t err;
    hv_buf_init(&b, 0);
    hv_error_clear(&err);
    assert_int_equal(hv_map_fhir_to_v2(adt_bundle, strlen(adt_bundle), "SIU_S12", NULL, &b, &r, &err),
                     HV_ENOTSUP);
    static const char enc_only[] = "{\"resourceType\":\"Encounter\",\"status\":\"finished\"}";
    assert_int_equal(hv_map_fhir_to_v2(enc_only, strlen(enc_only), "ADT_A08", NULL, &b, &r, &err),
                     HV_EINVAL);
    assert_int_equal(hv_map_fhir_to_v2(enc_only, strlen(enc_only), "ORU_R01", NULL, &b, &r, &err),
                     HV_EINVAL);
    assert_int_equal(hv_map_fhir_to_v2("{", 1, "ORU_R01", NULL, &b, &r, &err), HV_EPROTO);
    assert_int_equal(b.len, 0);
    assert_null(r.outcome);
    hv_buf_release(&b);
}

/* C-CDA → FHIR → ORU^R01 → parse: every result of a reference document keeps its
 * code, value, unit and time. */
static void fhir_to_v2_round_trips_ccda_results(void **state) {
    (void)state;
    const char *src = getenv("HV_SRCDIR"), *ref = getenv("HV_REFERENCE_DIR");
    char path[4096];
    if (src == NULL && ref == NULL) fail_msg("HV_SRCDIR is not set: cannot find the reference");
    if (ref != NULL)
        snprintf(path, sizeof(path), "%s/ccda/fhir-converter/Consultation_Note.ccda", ref);
    else
        snprintf(path, sizeof(path), "%s/../shared/reference/ccda/fhir-converter/Consultation_Note.ccda", src);
    FILE *f = fopen(path, "rb");
    if (f == NULL) fail_msg("cannot open %s", path);
    static char xml[1 << 20];
    size_t n = fread(xml, 1, sizeof(xml) - 1, f);
    fclose(f);
    hv_map_result_t cr = {0};
    hv_error_t err;
    hv_error_clear(&err);
    assert_int_equal(hv_map_ccda_to_fhir(xml, n, NULL, &cr, &err), HV_OK);
    const char *json = json_object_to_json_string_ext(cr.bundle, JSON_C_TO_STRING_PLAIN);
    mapped_t m;
    map_ok(&m, json, "ORU_R01");
    struct json_object *entries = NULL;
    json_object_object_get_ex(cr.bundle, "entry", &entries);
    int checked = 0;
    for (size_t i = 0; i < json_object_array_length(entries); i++) {
        struct json_object *r = NULL, *q = NULL, *codings = NULL;
        json_object_object_get_ex(json_object_array_get_idx(entries, i), "resource", &r);
        if (strcmp(hv_json_get_str(r, "resourceType"), "Observation") != 0) continue;
        if (!json_object_object_get_ex(r, "valueQuantity", &q)) continue;
        json_object_object_get_ex(json_object_object_get(r, "code"), "coding", &codings);
        const char *code = hv_json_get_str(json_object_array_get_idx(codings, 0), "code");
        /* Find an OBX with this code, value, unit and time (codes may repeat). */
        const char *want_v = json_object_to_json_string_ext(json_object_object_get(q, "value"),
                                                            JSON_C_TO_STRING_PLAIN);
        const char *want_u = hv_json_get_str(q, "code");
        const char *t = hv_json_get_str(r, "effectiveDateTime");
        char want_t[16] = "";
        if (t != NULL && strlen(t) == 10) snprintf(want_t, sizeof(want_t), "%.4s%.2s%.2s", t, t + 5, t + 8);
        int found = 0;
        for (unsigned k = 1; k <= hv_hl7v2_seg_count(&m.msg, "OBX") && !found; k++) {
            found = has(&m, k, "3.1", code) && has(&m, k, "5", want_v) && has(&m, k, "6.1", want_u) &&
                    (want_t[0] == '\0' || has(&m, k, "14", want_t));
        }
        checked += found;
        if (!found) fail_msg("no OBX carries observation %s = %s %s", code, want_v, want_u);
    }
    assert_true(checked >= 5);
    /* The patient's identifier and name. */
    expect(&m, "PID-3.1", "444-22-2222");
    expect(&m, "PID-5.1", "Betterhalf");
    mapped_free(&m);
    hv_map_result_free(&cr);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fhir_to_v2_adt_a08_carries_patient_and_visit),
        cmocka_unit_test(fhir_to_v2_oru_r01_carries_results),
        cmocka_unit_test(fhir_to_v2_single_observation_gets_its_own_obr),
        cmocka_unit_test(fhir_to_v2_refuses_what_it_cannot_map),
        cmocka_unit_test(fhir_to_v2_round_trips_ccda_results),
    };
    return cmocka_run_group_tests_name("fhir_to_v2", tests, NULL, NULL);
}
