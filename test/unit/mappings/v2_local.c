/* v2_local.c — tests of the rows of mappings/v2/local.tsv that correct IG rows (each could
 * not be applied as the IG tables wrote it) and of the override line that removes a row
 * (mappings/v2_load.c, FHIR-TYPE "-"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests.h"
#include "mappings/mappings_int.h"

/* PV1-7 attending and PV1-52 other provider, PV1-37 discharged-to location; PV2-11 length
 * of stay and PV2-13 referral source. */
static const char *adt =
    "MSH|^~\\&|SENDAPP|SENDFAC|RECAPP|RECFAC|20240101120000+0000||ADT^A03^ADT_A03|MSG9|P|2.5.1\r"
    "EVN|A03|20240101120000\r"
    "PID|1||12345^^^HOSP^MR||DOE^JANE||19800102|F\r"
    "PV1|1|I|WARD^101^A||||1234^SMITH^JOHN|||MED|||||||||V100^^^HOSP^VN||||||||||||||||||"
    "01&Discharged to home&HL70282|||||||||||||||777^OTHER^OLIVIA\r"
    "PV2|||||||||||12||555^REFERRER^RITA\r";

/* The index of the Encounter participant whose type code is code, or -1. */
static int participant_with(json_object *enc, const char *code) {
    char path[96];
    int i;
    for (i = 0; i < 16; i++) {
        const char *c;
        snprintf(path, sizeof(path), "participant[%d].type[0].coding[0].code", i);
        c = test_str(enc, path);
        if (c != NULL && strcmp(c, code) == 0) return i;
    }
    return -1;
}

/* The family name of the Practitioner participant i refers to (through the fullUrls). */
static const char *participant_family(json_object *bundle, json_object *enc, int i) {
    char path[96];
    const char *ref;
    size_t k, n = test_count(bundle, "Practitioner");
    snprintf(path, sizeof(path), "participant[%d].individual.reference", i);
    ref = test_str(enc, path);
    if (ref == NULL) return NULL;
    for (k = 0; k < n; k++) {
        json_object *entries = NULL, *e, *res = NULL, *url = NULL;
        size_t j;
        json_object *p = test_entry(bundle, "Practitioner", k, NULL);
        json_object_object_get_ex(bundle, "entry", &entries);
        for (j = 0; j < json_object_array_length(entries); j++) {
            e = json_object_array_get_idx(entries, j);
            if (json_object_object_get_ex(e, "resource", &res) && res == p &&
                json_object_object_get_ex(e, "fullUrl", &url) &&
                strcmp(json_object_get_string(url), ref) == 0)
                return test_str(p, "name[0].family");
        }
    }
    return NULL;
}

static void v2_local_pv1_and_pv2_participants_keep_their_types(void **state) {
    hv_map_result_t r;
    json_object *enc;
    int att, ref, part;
    (void)state;
    test_map(adt, NULL, &r);
    enc = test_entry(r.bundle, "Encounter", 0, NULL);
    assert_non_null(enc);
    /* PV2-13 no longer lands on participant[1] (PV1-7's) and overwrites ATND with REF. */
    att = participant_with(enc, "ATND");
    ref = participant_with(enc, "REF");
    part = participant_with(enc, "PART");
    assert_true(att >= 0);
    assert_true(ref >= 0);
    assert_true(part >= 0);
    assert_int_not_equal(att, ref);
    assert_string_equal(participant_family(r.bundle, enc, att), "SMITH");
    assert_string_equal(participant_family(r.bundle, enc, ref), "REFERRER");
    assert_string_equal(participant_family(r.bundle, enc, part), "OTHER");
    hv_map_result_free(&r);
}

static void v2_local_pv2_length_of_stay_is_a_ucum_duration(void **state) {
    hv_map_result_t r;
    json_object *enc;
    (void)state;
    test_map(adt, NULL, &r);
    enc = test_entry(r.bundle, "Encounter", 0, NULL);
    assert_string_equal(test_str(enc, "length.value"), "12");
    assert_string_equal(test_str(enc, "length.unit"), "days");
    assert_string_equal(test_str(enc, "length.system"), "http://unitsofmeasure.org");
    assert_string_equal(test_str(enc, "length.code"), "d");
    hv_map_result_free(&r);
}

static void v2_local_pv1_37_is_the_discharge_destination(void **state) {
    hv_map_result_t r;
    json_object *enc, *loc = NULL;
    const char *ref;
    size_t i, n;
    (void)state;
    test_map(adt, NULL, &r);
    enc = test_entry(r.bundle, "Encounter", 0, NULL);
    ref = test_str(enc, "hospitalization.destination.reference");
    assert_non_null(ref);
    n = test_count(r.bundle, "Location");
    for (i = 0; i < n && loc == NULL; i++) {
        json_object *l = test_entry(r.bundle, "Location", i, NULL);
        const char *code = test_str(l, "type[0].coding[0].code");
        if (code != NULL && strcmp(code, "01") == 0) loc = l;
    }
    assert_non_null(loc);
    assert_string_equal(test_str(loc, "type[0].coding[0].display"), "Discharged to home");
    hv_map_result_free(&r);
}

/* PV1-45 (discharge date) valued: the IG row 'status="finished"' had its constant in the
 * target; scripts/gen-mappings.py now reads it as target status, assignment finished. */
static void v2_local_pv1_45_discharge_finishes_the_encounter(void **state) {
    static const char *oru =
        "MSH|^~\\&|LAB|LABFAC|EHR|HOSP|20240106080000+0000||ORU^R01^ORU_R01|L1|P|2.5.1\r"
        "PID|1||12345^^^HOSP^MR||DOE^JANE||19800102|F\r"
        "PV1|1|I|||||||||||||||||V200^^^HOSP^VN|||||||||||||||||||||||||20240101080000+0000|"
        "20240105100000+0000\r"
        "OBR|1|P1^EHR|F1^LAB|24331-1^Lipid panel^LN|||20240102070000+0000\r";
    hv_map_result_t r;
    json_object *enc;
    (void)state;
    test_map(oru, NULL, &r);
    enc = test_entry(r.bundle, "Encounter", 0, NULL);
    assert_non_null(enc);
    assert_string_equal(test_str(enc, "status"), "finished");
    assert_string_equal(test_str(enc, "period.end"), "2024-01-05T10:00:00+00:00");
    hv_map_result_free(&r);
}

/* SPM-2 placer/filler, SPM-31 other id and SPM-32 shipment id are four identifiers (the IG
 * gave SPM-31 the filler's index [2], and SPM-32's SHIP in its comments column); the
 * repeated SPM-30 accession id fills the single accessionIdentifier with its first
 * repetition instead of mixing both. */
static void v2_local_spm_identifiers_stay_apart(void **state) {
    static const char *oru =
        "MSH|^~\\&|LAB|LABFAC|EHR|HOSP|20240106080000+0000||ORU^R01^ORU_R01|L2|P|2.5.1\r"
        "PID|1||12345^^^HOSP^MR||DOE^JANE||19800102|F\r"
        "OBR|1|P1^EHR|F1^LAB|24331-1^Lipid panel^LN|||20240102070000+0000\r"
        "SPM|1|P100&LAB^F200&LAB||119297000^Blood^SCT||||||||||||||||||||||||||ACC1~ACC2|OTHER1|"
        "SHIP1\r";
    hv_map_result_t r;
    json_object *sp = NULL;
    size_t i, n;
    char path[64];
    const char *want[][2] = {{"P100", "PGN"}, {"F200", "FGN"}, {"SHIP1", "SHIP"}, {"OTHER1", NULL}};
    (void)state;
    test_map(oru, NULL, &r);
    n = test_count(r.bundle, "Specimen");
    for (i = 0; i < n && sp == NULL; i++) {
        json_object *s = test_entry(r.bundle, "Specimen", i, NULL);
        if (test_str(s, "type.coding[0].code") != NULL) sp = s;
    }
    assert_non_null(sp);
    for (i = 0; i < HV_ARRAY_LEN(want); i++) {
        size_t k;
        int found = 0;
        for (k = 0; k < 8 && !found; k++) {
            const char *v, *code;
            snprintf(path, sizeof(path), "identifier[%zu].value", k);
            v = test_str(sp, path);
            if (v == NULL || strcmp(v, want[i][0]) != 0) continue;
            snprintf(path, sizeof(path), "identifier[%zu].type.coding[0].code", k);
            code = test_str(sp, path);
            if (want[i][1] != NULL) assert_string_equal(code, want[i][1]);
            found = 1;
        }
        if (!found) fail_msg("no Specimen identifier %s", want[i][0]);
    }
    assert_string_equal(test_str(sp, "accessionIdentifier.value"), "ACC1");
    assert_non_null(strstr(json_object_to_json_string(r.outcome), "repetition 2 left out"));
    hv_map_result_free(&r);
}

/* The resource of the Bundle entry whose fullUrl is url, or NULL. */
static json_object *entry_by_url(json_object *bundle, const char *url) {
    json_object *entries = NULL, *e, *u = NULL, *res = NULL;
    size_t j;
    if (url == NULL || !json_object_object_get_ex(bundle, "entry", &entries)) return NULL;
    for (j = 0; j < json_object_array_length(entries); j++) {
        e = json_object_array_get_idx(entries, j);
        if (json_object_object_get_ex(e, "fullUrl", &u) && strcmp(json_object_get_string(u), url) == 0 &&
            json_object_object_get_ex(e, "resource", &res))
            return res;
    }
    return NULL;
}

/* The resource that identifier[0] of o refers to through the assigning-facility extension
 * (extension[2], after the IG's two check-digit extensions), or NULL. */
static json_object *facility_of(json_object *bundle, json_object *o, const char *id_path) {
    char path[96];
    const char *url, *ref;
    size_t k;
    for (k = 0; k < 4; k++) {
        snprintf(path, sizeof(path), "%sextension[%zu].url", id_path, k);
        url = test_str(o, path);
        if (url == NULL || strcmp(url, "https://holovitals.dev/fhir/StructureDefinition/"
                                       "identifier-assigning-facility") != 0)
            continue;
        snprintf(path, sizeof(path), "%sextension[%zu].valueReference.reference", id_path, k);
        ref = test_str(o, path);
        return entry_by_url(bundle, ref);
    }
    return NULL;
}

/* CX.6, XON.8 and XCN.14 (assigning facility): the IG's data-type maps make an Organization
 * (CX.6) or a Location (XON.8, XCN.14), which the identifier references through HoloVitals'
 * extension (the IG names only a proposed one); an identifier without it has no extension. */
static void v2_local_assigning_facility_is_referenced_from_the_identifier(void **state) {
    static const char *oru =
        "MSH|^~\\&|LAB|LABFAC|EHR|HOSP|20240106080000+0000||ORU^R01^ORU_R01|L3|P|2.5.1\r"
        "PID|1||12345^^^HOSP^MR^CLINIC&1.2.3.4&ISO~777^^^HOSP^PI\r"
        "OBR|1|P1^EHR|F1^LAB|24331-1^Lipid panel^LN|||20240102070000+0000|||||||||"
        "99^DOC^DAN^^^^^^NPI&2.16.840.1.113883.4.6&ISO^^^^NPI^WARDFAC&2.16.9.9&ISO\r"
        "OBX|1|NM|2093-3^Cholesterol^LN||185|mg/dL|||||F|||20240102075000+0000|||||||||"
        "Lab A^L^^^^CLIA&2.16.840.1.113883.4.7&ISO^XX^SITEFAC&2.16.8.8&ISO^^11D0668319\r";
    hv_map_result_t r;
    json_object *pat, *prac = NULL, *org = NULL, *fac;
    size_t i, n;
    (void)state;
    test_map(oru, NULL, &r);
    pat = test_entry(r.bundle, "Patient", 0, NULL);
    assert_non_null(pat);
    fac = facility_of(r.bundle, pat, "identifier[0].");
    assert_non_null(fac);
    assert_string_equal(test_str(fac, "resourceType"), "Organization");
    assert_string_equal(test_str(fac, "identifier[1].value"), "1.2.3.4");
    assert_null(facility_of(r.bundle, pat, "identifier[1]."));
    n = test_count(r.bundle, "Practitioner");
    for (i = 0; i < n; i++) {
        json_object *p = test_entry(r.bundle, "Practitioner", i, NULL);
        const char *v = test_str(p, "identifier[0].value");
        if (v != NULL && strcmp(v, "99") == 0) prac = p;
    }
    assert_non_null(prac);
    fac = facility_of(r.bundle, prac, "identifier[0].");
    assert_non_null(fac);
    assert_string_equal(test_str(fac, "resourceType"), "Location");
    assert_string_equal(test_str(fac, "name"), "WARDFAC");
    assert_string_equal(test_str(fac, "identifier[0].value"), "2.16.9.9");
    n = test_count(r.bundle, "Organization");
    for (i = 0; i < n; i++) {
        json_object *o = test_entry(r.bundle, "Organization", i, NULL);
        const char *v = test_str(o, "name");
        if (v != NULL && strcmp(v, "Lab A") == 0) org = o;
    }
    assert_non_null(org);
    fac = facility_of(r.bundle, org, "identifier[0].");
    assert_non_null(fac);
    assert_string_equal(test_str(fac, "resourceType"), "Location");
    assert_string_equal(test_str(fac, "identifier[0].value"), "2.16.8.8");
    hv_map_result_free(&r);
}

/* PL.5 (Location Status) → Location.status of the most specific Location the PL gives (the one
 * the element references), as the IG's NDL.8 rows do; a code outside FHIR's required binding
 * is dropped; PL.11 alone makes no Location. */
static void v2_local_pl_5_is_the_status_of_the_referenced_location(void **state) {
    static const struct {
        const char *pv1_6, *status, *ident; /* the referenced Location's status and identifier */
    } cases[] = {
        {"^^^Hospital A&2.4.4.4&ISO^active", "active", "Hospital A"},
        {"^^Bed A^Hospital A^inactive", "inactive", "Bed A"},
        {"^Room 10^^Hospital A^suspended^^Building B^Floor 2", "suspended", "Room 10"},
        {"Poc 1^^^Hospital A^active^^Building B", "active", "Poc 1"},
        {"^^^Hospital A^occupied", NULL, "Hospital A"},
    };
    size_t i, j;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        char msg[512];
        hv_map_result_t r;
        json_object *enc, *loc;
        size_t with_status = 0;
        snprintf(msg, sizeof(msg),
                 "MSH|^~\\&|A|B|C|D|20240101120000+0000||ADT^A01^ADT_A01|M1|P|2.5.1\r"
                 "PID|1||12345^^^HOSP^MR||DOE^JANE\rPV1|1|I|||||||||||||||||V100^^^HOSP^VN\r");
        /* PV1-6 (prior patient location): put after PV1-5. */
        {
            char *p = strstr(msg, "PV1|1|I|||");
            char tail[256];
            snprintf(tail, sizeof(tail), "%s", p + 10);
            snprintf(p, sizeof(msg) - (size_t)(p - msg), "PV1|1|I||||%s%s", cases[i].pv1_6, tail);
        }
        test_map(msg, NULL, &r);
        enc = test_entry(r.bundle, "Encounter", 0, NULL);
        loc = entry_by_url(r.bundle, test_str(enc, "location[0].location.reference"));
        assert_non_null(loc);
        assert_string_equal(test_str(loc, "identifier[0].value"), cases[i].ident);
        if (cases[i].status != NULL) assert_string_equal(test_str(loc, "status"), cases[i].status);
        else assert_null(test_str(loc, "status"));
        for (j = 0; j < test_count(r.bundle, "Location"); j++)
            if (test_str(test_entry(r.bundle, "Location", j, NULL), "status") != NULL) with_status++;
        assert_int_equal(with_status, cases[i].status != NULL ? 1 : 0);
        if (cases[i].status == NULL) assert_non_null(strstr(json_object_to_json_string(r.outcome), "occupied"));
        hv_map_result_free(&r);
    }
}

static void v2_local_pl_11_alone_makes_no_location(void **state) {
    static const char *msg = "MSH|^~\\&|A|B|C|D|20240101120000+0000||ADT^A01^ADT_A01|M1|P|2.5.1\r"
                             "PID|1||12345^^^HOSP^MR||DOE^JANE\r"
                             "PV1|1|I|||||||||||||||||V100^^^HOSP^VN|||||||||||||||||||||||"
                             "^^^^^^^^^^LODI HOSPITAL&LODI\r";
    hv_map_result_t r;
    (void)state;
    test_map(msg, NULL, &r);
    assert_int_equal(test_count(r.bundle, "Location"), 0);
    hv_map_result_free(&r);
}

/* IG rows that named no element, corrected in local.tsv: IN1-5 (the payer's address, "payer"),
 * IN1-10 (the employer's id, "policyHolder([1]Organization…"), XON.3 (an id in XON.3 only, a
 * condition on "XON-10"), and PV1-43 (no PV1[Encounter] row; a completed Encounter.location). */
static void v2_local_in1_xon_and_pv1_43_rows_are_applied(void **state) {
    static const char *msg =
        "MSH|^~\\&|A|B|C|D|20240101120000+0000||ADT^A01^ADT_A01|M1|P|2.5.1\r"
        "PID|1||12345^^^HOSP^MR||DOE^JANE\r"
        "PV1|1|I|||||||||||||||||V100^^^HOSP^VN||||||||||||||||||||||||^^^FAC 43\r"
        "IN1|1|EPO|80|AETNA^^77^^^^XX|PO BOX 9^^EL PASO^TX^79998|||||19^^^^SN|ACME EMPLOYER\r";
    hv_map_result_t r;
    json_object *cov, *org, *enc, *loc;
    (void)state;
    test_map(msg, NULL, &r);
    cov = test_entry(r.bundle, "Coverage", 0, NULL);
    assert_non_null(cov);
    org = entry_by_url(r.bundle, test_str(cov, "payor[0].reference"));
    assert_non_null(org);
    assert_string_equal(test_str(org, "name"), "AETNA");
    assert_string_equal(test_str(org, "address[0].city"), "EL PASO");
    assert_string_equal(test_str(org, "identifier[0].value"), "77");
    assert_string_equal(test_str(org, "identifier[0].type.coding[0].code"), "XX");
    org = entry_by_url(r.bundle, test_str(cov, "policyHolder.reference"));
    assert_non_null(org);
    assert_string_equal(test_str(org, "name"), "ACME EMPLOYER");
    assert_string_equal(test_str(org, "identifier[0].value"), "19");
    enc = test_entry(r.bundle, "Encounter", 0, NULL);
    assert_string_equal(test_str(enc, "location[0].status"), "completed");
    loc = entry_by_url(r.bundle, test_str(enc, "location[0].location.reference"));
    assert_non_null(loc);
    assert_string_equal(test_str(loc, "identifier[0].value"), "FAC 43");
    hv_map_result_free(&r);
}

/* ORM_O01's OBR maps into the ORC's ServiceRequest (the IG's "IF PID VALUED" row, with PID-3 as
 * the test) and makes the Specimen (OBR-10 collector) as ORU_R01 and OML_O21 do; ORC-4 (filler
 * group number) and OBR-53 (alternate placer number) both kept (the IG gave both identifier[3]). */
static void v2_local_orm_obr_gives_the_order_code_and_specimen(void **state) {
    static const char *msg =
        "MSH|^~\\&|EHR|HOSP|LAB|LABFAC|20240101120000+0000||ORM^O01^ORM_O01|M1|P|2.5.1\r"
        "PID|1||12345^^^HOSP^MR||DOE^JANE\r"
        "ORC|NW|PLC1^EHR||GRP7^EHR\r"
        "OBR|1|PLC1^EHR||24331-1^Lipid panel^LN|||20240101110000+0000|||77^COLLECTOR^BEA"
        "|||||||||||||||||||||||||||||||||||||||||||ALT9^^^EHR\r";
    hv_map_result_t r;
    json_object *sr, *sp, *prac;
    size_t i;
    int fgn = 0, alt = 0;
    (void)state;
    test_map(msg, NULL, &r);
    assert_int_equal(test_count(r.bundle, "ServiceRequest"), 1);
    sr = test_entry(r.bundle, "ServiceRequest", 0, NULL);
    assert_string_equal(test_str(sr, "code.coding[0].code"), "24331-1");
    for (i = 0; i < 8; i++) {
        char path[64];
        const char *v;
        snprintf(path, sizeof(path), "identifier[%zu].value", i);
        v = test_str(sr, path);
        if (v != NULL && strcmp(v, "GRP7") == 0) fgn = 1;
        if (v != NULL && strcmp(v, "ALT9") == 0) alt = 1;
    }
    assert_true(fgn);
    assert_true(alt);
    sp = entry_by_url(r.bundle, test_str(sr, "specimen[0].reference"));
    assert_non_null(sp);
    assert_string_equal(test_str(sp, "resourceType"), "Specimen");
    prac = entry_by_url(r.bundle, test_str(sp, "collection.collector.reference"));
    assert_non_null(prac);
    assert_string_equal(test_str(prac, "name[0].family"), "COLLECTOR");
    hv_map_result_free(&r);
}

/* OBX-15 (producer) and OBX-23/25 (performing organization and its medical director) are all
 * kept: the IG puts both on performer[2], local.tsv moves OBX-23..25 to performer[3]; OBX-25's
 * row names the PractitionerRole (MDIR) whose practitioner is the director. */
static void v2_local_obx_producer_and_performing_director_both_kept(void **state) {
    static const char *oru =
        "MSH|^~\\&|LAB|LABFAC|EHR|HOSP|20240106080000+0000||ORU^R01^ORU_R01|L4|P|2.5.1\r"
        "PID|1||12345^^^HOSP^MR\r"
        "OBR|1|P1^EHR|F1^LAB|24331-1^Lipid panel^LN\r"
        "OBX|1|NM|2093-3^Cholesterol^LN||185|mg/dL|||||F||||454^Producer^ISO||||||||"
        "Lab A^L^^^^CLIA&2.16.840.1.113883.4.7&ISO^XX^^^11D0668319||77^DIRECTOR^DEB\r";
    hv_map_result_t r;
    json_object *obs, *res;
    size_t i;
    int producer = 0, director = 0;
    char path[64];
    (void)state;
    test_map(oru, NULL, &r);
    obs = test_entry(r.bundle, "Observation", 0, NULL);
    assert_non_null(obs);
    for (i = 0; i < 4; i++) {
        const char *type, *name;
        snprintf(path, sizeof(path), "performer[%zu].reference", i);
        res = entry_by_url(r.bundle, test_str(obs, path));
        if (res == NULL) continue;
        type = test_str(res, "resourceType");
        name = test_str(res, "name");
        if (strcmp(type, "Organization") == 0 && name != NULL && strcmp(name, "Producer") == 0) producer = 1;
        if (strcmp(type, "PractitionerRole") == 0) {
            json_object *org = entry_by_url(r.bundle, test_str(res, "organization.reference"));
            json_object *doc = entry_by_url(r.bundle, test_str(res, "practitioner.reference"));
            assert_string_equal(test_str(res, "code[0].coding[0].code"), "MDIR");
            assert_non_null(org);
            assert_string_equal(test_str(org, "name"), "Lab A");
            assert_non_null(doc);
            assert_string_equal(test_str(doc, "name[0].family"), "DIRECTOR");
            assert_string_equal(test_str(doc, "identifier[0].value"), "77");
            director = 1;
        }
    }
    assert_true(producer);
    assert_true(director);
    hv_map_result_free(&r);
}

/* The order's placer number: ORC-2 when the message has it (the common order segment), else
 * OBR-2 (the IG's OBR row, "IF ORC-2 NOT VALUED"). */
static void v2_local_orc_gives_the_placer_number_obr_without_orc(void **state) {
    static const char *both =
        "MSH|^~\\&|LAB|LABFAC|EHR|HOSP|20240106080000+0000||ORU^R01^ORU_R01|L3|P|2.5.1\r"
        "PID|1||12345^^^HOSP^MR||DOE^JANE||19800102|F\r"
        "ORC|RE|ORC-PLC^EHR\r"
        "OBR|1|OBR-PLC^EHR||24331-1^Lipid panel^LN|||20240102070000+0000\r";
    static const char *obr_only =
        "MSH|^~\\&|LAB|LABFAC|EHR|HOSP|20240106080000+0000||ORU^R01^ORU_R01|L4|P|2.5.1\r"
        "PID|1||12345^^^HOSP^MR||DOE^JANE||19800102|F\r"
        "OBR|1|OBR-PLC^EHR||24331-1^Lipid panel^LN|||20240102070000+0000\r";
    hv_map_result_t r;
    json_object *sr;
    (void)state;
    test_map(both, NULL, &r);
    sr = test_entry(r.bundle, "ServiceRequest", 0, NULL);
    assert_non_null(sr);
    assert_string_equal(test_str(sr, "identifier[0].value"), "ORC-PLC");
    assert_string_equal(test_str(sr, "identifier[0].type.coding[0].code"), "PLAC");
    assert_null(test_str(sr, "identifier[1].value"));
    hv_map_result_free(&r);
    test_map(obr_only, NULL, &r);
    sr = test_entry(r.bundle, "ServiceRequest", 0, NULL);
    assert_string_equal(test_str(sr, "identifier[0].value"), "OBR-PLC");
    hv_map_result_free(&r);
}

/* PID-21 is the mother's identifier: a RelatedPerson (MTH) of the patient, never one of the
 * patient's own identifiers (the IG's "$this" row wrote it into the Patient). */
static void v2_local_pid_21_is_the_mother_not_the_patient(void **state) {
    static const char *a01 =
        "MSH|^~\\&|SENDAPP|SENDFAC|RECAPP|RECFAC|20240101120000+0000||ADT^A01^ADT_A01|M21|P|2.5.1\r"
        "EVN|A01|20240101120000\r"
        "PID|1||12345^^^HOSP^MR||DOE^BABY||20240101|F|||||||||||||MOM777^^^HOSP^MR\r";
    hv_map_result_t r;
    json_object *p, *rp;
    const char *url = NULL;
    size_t i;
    char path[64];
    (void)state;
    test_map(a01, NULL, &r);
    p = test_entry(r.bundle, "Patient", 0, &url);
    assert_string_equal(url, "Patient?identifier=HOSP|12345");
    for (i = 0; i < 4; i++) {
        const char *v;
        snprintf(path, sizeof(path), "identifier[%zu].value", i);
        v = test_str(p, path);
        if (v != NULL) assert_string_not_equal(v, "MOM777");
    }
    rp = test_entry(r.bundle, "RelatedPerson", 0, NULL);
    assert_non_null(rp);
    assert_string_equal(test_str(rp, "identifier[0].value"), "MOM777");
    assert_string_equal(test_str(rp, "relationship[0].coding[0].code"), "MTH");
    assert_string_equal(test_str(rp, "relationship[0].coding[0].system"),
                        "http://terminology.hl7.org/CodeSystem/v3-RoleCode");
    assert_non_null(test_str(rp, "patient.reference"));
    hv_map_result_free(&r);
}

static char *write_tmp(const char *text) {
    static char path[64];
    FILE *f;
    int fd;
    snprintf(path, sizeof(path), "/tmp/hv-map-local-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void v2_load_override_dash_type_removes_a_row(void **state) {
    hv_map_tables_t *t = NULL;
    hv_error_t err;
    const hv__map_row_t *rows;
    size_t n = 0, before = 0, i;
    const char *path = write_tmp("map\tPID[Patient]\t5\t5\tXPN\t\tname[1]\t-\t\t\t\n");
    (void)state;
    rows = hv__map_rows(hv__map_tables_default(), "PID[Patient]", &before);
    assert_non_null(rows);
    hv_error_clear(&err);
    assert_int_equal(hv__map_tables_load(path, &t, &err), HV_OK);
    rows = hv__map_rows(t, "PID[Patient]", &n);
    assert_int_equal(n, before - 1);
    for (i = 0; i < n; i++) assert_false(rows[i].src_f == 5 && !strcmp(rows[i].target, "name[1]"));
    hv__map_tables_free(t);
    unlink(path);
    /* Removing a row that does not exist names the file and line. */
    path = write_tmp("# nothing\nmap\tPID[Patient]\t5\t5\tXPN\t\tnickname\t-\t\t\t\n");
    t = NULL;
    assert_int_equal(hv__map_tables_load(path, &t, &err), HV_ECONFIG);
    assert_null(t);
    assert_int_equal(err.line, 2);
    unlink(path);
}

int run_v2_local_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v2_local_pv1_and_pv2_participants_keep_their_types),
        cmocka_unit_test(v2_local_pv2_length_of_stay_is_a_ucum_duration),
        cmocka_unit_test(v2_local_pv1_37_is_the_discharge_destination),
        cmocka_unit_test(v2_local_pv1_45_discharge_finishes_the_encounter),
        cmocka_unit_test(v2_local_spm_identifiers_stay_apart),
        cmocka_unit_test(v2_local_orc_gives_the_placer_number_obr_without_orc),
        cmocka_unit_test(v2_local_pid_21_is_the_mother_not_the_patient),
        cmocka_unit_test(v2_local_assigning_facility_is_referenced_from_the_identifier),
        cmocka_unit_test(v2_local_obx_producer_and_performing_director_both_kept),
        cmocka_unit_test(v2_local_pl_5_is_the_status_of_the_referenced_location),
        cmocka_unit_test(v2_local_pl_11_alone_makes_no_location),
        cmocka_unit_test(v2_local_in1_xon_and_pv1_43_rows_are_applied),
        cmocka_unit_test(v2_local_orm_obr_gives_the_order_code_and_specimen),
        cmocka_unit_test(v2_load_override_dash_type_removes_a_row),
    };
    return cmocka_run_group_tests_name("mappings/v2_local", tests, NULL, NULL);
}
