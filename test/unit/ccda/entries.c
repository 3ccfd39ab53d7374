/* entries.c — tests of adapters/ccda/entries.c (and sections.c): each section kind's
 * entries → resources, with statuses, codes, values, units, times, and negationInd kept. */
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

static const char body[] =
    /* Problems: an active problem with onset, and a negated one ("does not have diabetes"). */
    SEC("5.1",
        "<entry><act classCode=\"ACT\" moodCode=\"EVN\">" TID("3") "<statusCode code=\"active\"/>"
        "<entryRelationship typeCode=\"SUBJ\"><observation classCode=\"OBS\" moodCode=\"EVN\">" TID("4")
        "<id root=\"ab1791b0-5c71-11db-b0de-0800200c9a66\"/>"
        "<code code=\"55607006\" " SCT "/><effectiveTime><low value=\"20080103\"/></effectiveTime>"
        "<value xsi:type=\"CD\" code=\"233604007\" " SCT " displayName=\"Pneumonia\"/>"
        "</observation></entryRelationship></act></entry>"
        "<entry><act classCode=\"ACT\" moodCode=\"EVN\">" TID("3") "<statusCode code=\"active\"/>"
        "<entryRelationship typeCode=\"SUBJ\"><observation classCode=\"OBS\" moodCode=\"EVN\" "
        "negationInd=\"true\">" TID("4") "<id root=\"1.2.3\" extension=\"p2\"/>"
        "<code code=\"55607006\" " SCT "/>"
        "<value xsi:type=\"CD\" code=\"44054006\" " SCT " displayName=\"Diabetes\"/>"
        "</observation></entryRelationship></act></entry>")
    /* Allergies: a refuted peanut allergy with a reaction, and "no known allergies". */
    SEC("6.1",
        "<entry><act classCode=\"ACT\" moodCode=\"EVN\">" TID("30") "<statusCode code=\"active\"/>"
        "<entryRelationship typeCode=\"SUBJ\"><observation classCode=\"OBS\" moodCode=\"EVN\" "
        "negationInd=\"true\">" TID("7") "<id root=\"1.2.3\" extension=\"a1\"/>"
        "<value xsi:type=\"CD\" code=\"414285001\" " SCT "/>"
        "<participant typeCode=\"CSM\"><participantRole><playingEntity><code code=\"256349002\" " SCT
        " displayName=\"Peanut\"/></playingEntity></participantRole></participant>"
        "<entryRelationship typeCode=\"MFST\"><observation classCode=\"OBS\" moodCode=\"EVN\">" TID("9")
        "<value xsi:type=\"CD\" code=\"247472004\" " SCT " displayName=\"Hives\"/>"
        "<entryRelationship typeCode=\"SUBJ\"><observation classCode=\"OBS\" moodCode=\"EVN\">" TID("8")
        "<value xsi:type=\"CD\" code=\"6736007\" " SCT "/></observation></entryRelationship>"
        "</observation></entryRelationship></observation></entryRelationship></act></entry>"
        "<entry><act classCode=\"ACT\" moodCode=\"EVN\">" TID("30") "<statusCode code=\"active\"/>"
        "<entryRelationship typeCode=\"SUBJ\"><observation classCode=\"OBS\" moodCode=\"EVN\" "
        "negationInd=\"true\">" TID("7") "<value xsi:type=\"CD\" code=\"419199007\" " SCT "/>"
        "<participant typeCode=\"CSM\"><participantRole><playingEntity><code nullFlavor=\"NA\"/>"
        "</playingEntity></participantRole></participant></observation></entryRelationship></act></entry>")
    /* Medications: a negated (not taken) activity with dose, route and frequency. */
    SEC("1.1",
        "<entry><substanceAdministration classCode=\"SBADM\" moodCode=\"EVN\" negationInd=\"true\">"
        TID("16") "<statusCode code=\"completed\"/>"
        "<effectiveTime xsi:type=\"IVL_TS\"><low value=\"20120806\"/><high value=\"20120813\"/></effectiveTime>"
        "<effectiveTime xsi:type=\"PIVL_TS\" operator=\"A\"><period value=\"12\" unit=\"h\"/></effectiveTime>"
        "<routeCode code=\"C38288\" codeSystem=\"2.16.840.1.113883.3.26.1.1\"/>"
        "<doseQuantity value=\"1\"/>"
        "<consumable><manufacturedProduct><manufacturedMaterial><code code=\"197380\" "
        "codeSystem=\"2.16.840.1.113883.6.88\" displayName=\"Atenolol 25 MG\"/></manufacturedMaterial>"
        "</manufacturedProduct></consumable></substanceAdministration></entry>")
    /* Immunizations: refused (not-done) with its reason. */
    SEC("2.1",
        "<entry><substanceAdministration classCode=\"SBADM\" moodCode=\"EVN\" negationInd=\"true\">"
        TID("52") "<statusCode code=\"completed\"/><effectiveTime value=\"20100815\"/>"
        "<consumable><manufacturedProduct><manufacturedMaterial><code code=\"88\" "
        "codeSystem=\"2.16.840.1.113883.12.292\"/><lotNumberText>L1</lotNumberText></manufacturedMaterial>"
        "</manufacturedProduct></consumable>"
        "<entryRelationship typeCode=\"RSON\"><observation classCode=\"OBS\" moodCode=\"EVN\">" TID("53")
        "<code code=\"PATOBJ\" codeSystem=\"2.16.840.1.113883.5.8\"/></observation></entryRelationship>"
        "</substanceAdministration></entry>")
    /* Procedures: one done, one not done (negated). */
    SEC("7.1",
        "<entry><procedure classCode=\"PROC\" moodCode=\"EVN\">" TID("14")
        "<code code=\"73761001\" " SCT "/><statusCode code=\"completed\"/>"
        "<effectiveTime value=\"20120512\"/><performer><assignedEntity><id root=\"2.16.840.1.113883.4.6\" "
        "extension=\"1112223334\"/><assignedPerson><name><family>Cutter</family></name></assignedPerson>"
        "</assignedEntity></performer></procedure></entry>"
        "<entry><procedure classCode=\"PROC\" moodCode=\"EVN\" negationInd=\"true\">" TID("14")
        "<code code=\"80146002\" " SCT "/><statusCode code=\"completed\"/></procedure></entry>")
    /* Results: an organizer with a numeric result, its unit, range and interpretation. */
    SEC("3.1",
        "<entry><organizer classCode=\"BATTERY\" moodCode=\"EVN\">" TID("1")
        "<id root=\"7d5a02b0-67a4-11db-bd13-0800200c9a66\"/>"
        "<code code=\"57021-8\" " LOINC "/><statusCode code=\"completed\"/>"
        "<effectiveTime><low value=\"200803190830-0800\"/></effectiveTime>"
        "<component><observation classCode=\"OBS\" moodCode=\"EVN\">" TID("2")
        "<code code=\"718-7\" " LOINC " displayName=\"Hemoglobin\"/><statusCode code=\"completed\"/>"
        "<effectiveTime value=\"200803190830-0800\"/><value xsi:type=\"PQ\" value=\"13.20\" unit=\"g/dL\"/>"
        "<interpretationCode code=\"N\" codeSystem=\"2.16.840.1.113883.5.83\"/>"
        "<referenceRange><observationRange><value xsi:type=\"IVL_PQ\"><low value=\"12\" unit=\"g/dL\"/>"
        "<high value=\"15.5\" unit=\"g/dL\"/></value></observationRange></referenceRange>"
        "</observation></component></organizer></entry>")
    /* Vital signs inside their organizer. */
    SEC("4.1",
        "<entry><organizer classCode=\"CLUSTER\" moodCode=\"EVN\">" TID("26")
        "<code code=\"46680005\" " SCT "/><statusCode code=\"completed\"/>"
        "<component><observation classCode=\"OBS\" moodCode=\"EVN\">" TID("27")
        "<code code=\"8480-6\" " LOINC "/><statusCode code=\"completed\"/>"
        "<effectiveTime value=\"20120910\"/><value xsi:type=\"PQ\" value=\"132\" unit=\"mm[Hg]\"/>"
        "</observation></component></organizer></entry>")
    /* Encounters and social history. */
    SEC("22.1",
        "<entry><encounter classCode=\"ENC\" moodCode=\"EVN\">" TID("49")
        "<code code=\"99213\" codeSystem=\"2.16.840.1.113883.6.12\"><translation code=\"AMB\" "
        "codeSystem=\"2.16.840.1.113883.5.4\"/></code><effectiveTime value=\"20120806\"/>"
        "</encounter></entry>")
    SEC("17",
        "<entry><observation classCode=\"OBS\" moodCode=\"EVN\">" TID("78")
        "<code code=\"72166-2\" " LOINC "/><statusCode code=\"completed\"/>"
        "<effectiveTime value=\"20120806\"/><value xsi:type=\"CD\" code=\"8517006\" " SCT
        " displayName=\"Former smoker\"/></observation></entry>")
    /* Family history (with age at onset and death) and medical equipment. */
    SEC("15",
        "<entry><organizer classCode=\"CLUSTER\" moodCode=\"EVN\">" TID("45") "<statusCode code=\"completed\"/>"
        "<subject><relatedSubject classCode=\"PRS\"><code code=\"FTH\" codeSystem=\"2.16.840.1.113883.5.111\"/>"
        "<subject><administrativeGenderCode code=\"M\" codeSystem=\"2.16.840.1.113883.5.1\"/>"
        "<birthTime value=\"1910\"/></subject></relatedSubject></subject>"
        "<component><observation classCode=\"OBS\" moodCode=\"EVN\">" TID("46")
        "<value xsi:type=\"CD\" code=\"22298006\" " SCT "/>"
        "<entryRelationship typeCode=\"SUBJ\" inversionInd=\"true\"><observation classCode=\"OBS\" "
        "moodCode=\"EVN\">" TID("31") "<value xsi:type=\"PQ\" value=\"57\" unit=\"a\"/></observation>"
        "</entryRelationship><entryRelationship typeCode=\"CAUS\"><observation classCode=\"OBS\" "
        "moodCode=\"EVN\">" TID("47") "<value xsi:type=\"CD\" code=\"419099009\" " SCT "/></observation>"
        "</entryRelationship></observation></component></organizer></entry>")
    SEC("23",
        "<entry><supply classCode=\"SPLY\" moodCode=\"EVN\">" TID("50") "<id root=\"1.2.3\" extension=\"d1\"/>"
        "<participant typeCode=\"PRD\"><participantRole classCode=\"MANU\"><playingDevice>"
        "<code code=\"87405001\" " SCT " displayName=\"Cane\"/></playingDevice></participantRole>"
        "</participant></supply></entry>")
    /* Plan of treatment: an ordered procedure and a goal. */
    SEC("10",
        "<entry><procedure classCode=\"PROC\" moodCode=\"RQO\">" TID("41")
        "<code code=\"73761001\" " SCT "/><statusCode code=\"active\"/>"
        "<effectiveTime value=\"20130612\"/></procedure></entry>"
        "<entry><observation classCode=\"OBS\" moodCode=\"GOL\">" TID("121")
        "<code code=\"8480-6\" " LOINC "/></observation></entry>");

static struct json_object *nth(struct json_object *bundle, const char *type, size_t i) {
    struct json_object *a = test_resources(bundle, type);
    if (json_object_array_length(a) <= i) fail_msg("fewer than %zu %s in the Bundle", i + 1, type);
    struct json_object *r = json_object_get(json_object_array_get_idx(a, i));
    json_object_put(a);
    return r;
}

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

static void ccda_problems_keep_status_onset_and_negation(void **state) {
    (void)state;
    struct json_object *a = nth(mapped.bundle, "Condition", 0), *b = nth(mapped.bundle, "Condition", 1);
    EXPECT(a, "code.coding.0.system", "http://snomed.info/sct");
    EXPECT(a, "code.coding.0.code", "233604007");
    EXPECT(a, "clinicalStatus.coding.0.code", "active");
    EXPECT(a, "category.0.coding.0.code", "problem-list-item");
    EXPECT(a, "onsetDateTime", "2008-01-03");
    EXPECT(a, "identifier.0.value", "urn:uuid:ab1791b0-5c71-11db-b0de-0800200c9a66");
    assert_null(at(a, "verificationStatus"));
    EXPECT(b, "verificationStatus.coding.0.code", "refuted");
    EXPECT(b, "code.coding.0.code", "44054006");
    json_object_put(a);
    json_object_put(b);
}

static void ccda_allergies_keep_negation_reaction_and_no_known(void **state) {
    (void)state;
    struct json_object *a = nth(mapped.bundle, "AllergyIntolerance", 0);
    struct json_object *nka = nth(mapped.bundle, "AllergyIntolerance", 1);
    EXPECT(a, "verificationStatus.coding.0.code", "refuted");
    EXPECT(a, "code.coding.0.code", "256349002");
    EXPECT(a, "type", "allergy");
    EXPECT(a, "category.0", "food");
    EXPECT(a, "reaction.0.manifestation.0.coding.0.code", "247472004");
    EXPECT(a, "reaction.0.severity", "moderate");
    EXPECT(a, "clinicalStatus.coding.0.code", "active");
    EXPECT(nka, "code.coding.0.code", "716186003");
    EXPECT(nka, "verificationStatus.coding.0.code", "confirmed");
    json_object_put(a);
    json_object_put(nka);
}

static void ccda_medication_not_taken_with_dosage(void **state) {
    (void)state;
    struct json_object *m = nth(mapped.bundle, "MedicationStatement", 0);
    EXPECT(m, "status", "not-taken");
    EXPECT(m, "medicationCodeableConcept.coding.0.system", "http://www.nlm.nih.gov/research/umls/rxnorm");
    EXPECT(m, "medicationCodeableConcept.coding.0.code", "197380");
    EXPECT(m, "effectivePeriod.start", "2012-08-06");
    EXPECT(m, "effectivePeriod.end", "2012-08-13");
    EXPECT(m, "dosage.0.timing.repeat.period", "12");
    EXPECT(m, "dosage.0.timing.repeat.periodUnit", "h");
    EXPECT(m, "dosage.0.doseAndRate.0.doseQuantity.value", "1");
    json_object_put(m);
}

static void ccda_immunization_refused_is_not_done(void **state) {
    (void)state;
    struct json_object *im = nth(mapped.bundle, "Immunization", 0);
    EXPECT(im, "status", "not-done");
    EXPECT(im, "statusReason.coding.0.code", "PATOBJ");
    EXPECT(im, "vaccineCode.coding.0.system", "http://hl7.org/fhir/sid/cvx");
    EXPECT(im, "vaccineCode.coding.0.code", "88");
    EXPECT(im, "occurrenceDateTime", "2010-08-15");
    EXPECT(im, "lotNumber", "L1");
    json_object_put(im);
}

static void ccda_procedures_done_and_not_done(void **state) {
    (void)state;
    struct json_object *a = nth(mapped.bundle, "Procedure", 0), *b = nth(mapped.bundle, "Procedure", 1);
    EXPECT(a, "status", "completed");
    EXPECT(a, "performedDateTime", "2012-05-12");
    /* The entry's performer is a Practitioner the Procedure points at. */
    const char *actor = at(a, "performer.0.actor.reference");
    assert_non_null(actor);
    struct json_object *entries = NULL;
    int found = 0;
    json_object_object_get_ex(mapped.bundle, "entry", &entries);
    for (size_t i = 0; i < json_object_array_length(entries); i++) {
        struct json_object *e = json_object_array_get_idx(entries, i);
        if (strcmp(at(e, "fullUrl"), actor) != 0) continue;
        EXPECT(e, "resource.resourceType", "Practitioner");
        EXPECT(e, "resource.identifier.0.value", "1112223334");
        EXPECT(e, "resource.name.0.family", "Cutter");
        found = 1;
    }
    assert_true(found);
    EXPECT(b, "status", "not-done");
    json_object_put(a);
    json_object_put(b);
}

static void ccda_results_map_to_report_and_observations(void **state) {
    (void)state;
    struct json_object *dr = nth(mapped.bundle, "DiagnosticReport", 0);
    struct json_object *o = nth(mapped.bundle, "Observation", 0);
    EXPECT(dr, "status", "final");
    EXPECT(dr, "code.coding.0.code", "57021-8");
    EXPECT(dr, "effectivePeriod.start", "2008-03-19T08:30:00-08:00");
    assert_non_null(at(dr, "result.0.reference"));
    EXPECT(o, "code.coding.0.code", "718-7");
    EXPECT(o, "category.0.coding.0.code", "laboratory");
    EXPECT(o, "status", "final");
    EXPECT(o, "valueQuantity.value", "13.20");
    EXPECT(o, "valueQuantity.unit", "g/dL");
    EXPECT(o, "valueQuantity.system", "http://unitsofmeasure.org");
    EXPECT(o, "referenceRange.0.low.value", "12");
    EXPECT(o, "referenceRange.0.high.value", "15.5");
    EXPECT(o, "interpretation.0.coding.0.code", "N");
    json_object_put(dr);
    json_object_put(o);
}

static void ccda_vitals_encounters_social_and_plan(void **state) {
    (void)state;
    struct json_object *v = nth(mapped.bundle, "Observation", 1);
    EXPECT(v, "category.0.coding.0.code", "vital-signs");
    EXPECT(v, "valueQuantity.code", "mm[Hg]");
    struct json_object *sh = nth(mapped.bundle, "Observation", 2);
    EXPECT(sh, "category.0.coding.0.code", "social-history");
    EXPECT(sh, "valueCodeableConcept.coding.0.code", "8517006");
    struct json_object *e = nth(mapped.bundle, "Encounter", 0);
    EXPECT(e, "class.code", "AMB");
    EXPECT(e, "type.0.coding.0.system", "http://www.ama-assn.org/go/cpt");
    EXPECT(e, "status", "finished");
    struct json_object *sr = nth(mapped.bundle, "ServiceRequest", 0);
    EXPECT(sr, "intent", "order");
    EXPECT(sr, "status", "active");
    EXPECT(sr, "occurrenceDateTime", "2013-06-12");
    struct json_object *g = nth(mapped.bundle, "Goal", 0);
    EXPECT(g, "description.coding.0.code", "8480-6");
    json_object_put(v);
    json_object_put(sh);
    json_object_put(e);
    json_object_put(sr);
    json_object_put(g);
}

static void ccda_family_history_and_equipment(void **state) {
    (void)state;
    struct json_object *f = nth(mapped.bundle, "FamilyMemberHistory", 0);
    EXPECT(f, "relationship.coding.0.code", "FTH");
    EXPECT(f, "sex.coding.0.code", "M");
    EXPECT(f, "bornDate", "1910");
    EXPECT(f, "condition.0.code.coding.0.code", "22298006");
    EXPECT(f, "condition.0.onsetAge.value", "57");
    EXPECT(f, "condition.0.onsetAge.code", "a");
    EXPECT(f, "condition.0.contributedToDeath", "true");
    struct json_object *d = nth(mapped.bundle, "Device", 0);
    EXPECT(d, "type.coding.0.code", "87405001");
    EXPECT(d, "identifier.0.value", "d1");
    json_object_put(f);
    json_object_put(d);
}

static void ccda_sections_reference_their_resources_and_validate(void **state) {
    (void)state;
    struct json_object *comp = nth(mapped.bundle, "Composition", 0);
    struct json_object *cond = nth(mapped.bundle, "Condition", 0);
    assert_non_null(at(comp, "section.0.entry.1.reference"));
    json_object_put(comp);
    json_object_put(cond);
    hv_fhir_validator_t *v = hv_fhir_validator_new();
    struct json_object *oo = NULL;
    int errors = -1;
    assert_int_equal(hv_fhir_validate(v, mapped.bundle, NULL, 0, &oo, &errors), HV_OK);
    if (errors != 0) fail_msg("validation errors: %s", json_object_to_json_string(oo));
    json_object_put(oo);
    hv_fhir_validator_free(v);
}

/* Nutrition, Reason for Referral, and the people and places of an encounter (a document of
 * its own, so that the other tests' resource positions stay as they are). */
static const char body2[] =
    SEC("57",
        "<entry><observation classCode=\"OBS\" moodCode=\"EVN\">" TID("124")
        "<code code=\"75305-3\" " LOINC "/><statusCode code=\"completed\"/>"
        "<effectiveTime value=\"20130512\"/><value xsi:type=\"CD\" code=\"248324001\" " SCT "/>"
        "<entryRelationship typeCode=\"SUBJ\"><observation classCode=\"OBS\" moodCode=\"EVN\">" TID("138")
        "<id root=\"ab1791b0-5c71-11db-b0de-0800200c9a66\"/><code code=\"75303-8\" " LOINC "/>"
        "<statusCode code=\"completed\"/><value xsi:type=\"CD\" code=\"386619000\" " SCT "/>"
        "<author>" TID("119") "<time value=\"20130512\"/><assignedAuthor>"
        "<id root=\"2.16.840.1.113883.4.6\" extension=\"333444444\"/>"
        "<code code=\"246Q00000X\" codeSystem=\"2.16.840.1.113883.6.101\"/></assignedAuthor></author>"
        "</observation></entryRelationship></observation></entry>")
    "<component><section><templateId root=\"1.3.6.1.4.1.19376.1.5.3.1.3.1\"/><title>Referral</title>"
    "<text>r</text><entry><act classCode=\"PCPR\" moodCode=\"INT\">" TID("140")
    "<id root=\"70bdd7db-e02d-4eff-9829-35e3b7d9e154\"/><code code=\"44383000\" " SCT "/>"
    "<statusCode code=\"active\"/><effectiveTime value=\"20130311\"/></act></entry></section></component>\n"
    SEC("22.1",
        "<entry><encounter classCode=\"ENC\" moodCode=\"EVN\">" TID("49")
        "<code code=\"99213\" codeSystem=\"2.16.840.1.113883.6.12\"/><effectiveTime value=\"20120806\"/>"
        "<performer><assignedEntity><id root=\"2.16.840.1.113883.4.6\" extension=\"555\"/>"
        "<code code=\"59058001\" " SCT "/><assignedPerson><name><given>Ann</given><family>Lee</family>"
        "</name></assignedPerson></assignedEntity></performer>"
        "<participant typeCode=\"LOC\"><participantRole classCode=\"SDLOC\">" TID("32")
        "<code code=\"1060-3\" codeSystem=\"2.16.840.1.113883.6.259\"/><addr><city>Blue Bell</city></addr>"
        "<playingEntity classCode=\"PLC\"><name>Good Health Clinic</name></playingEntity>"
        "</participantRole></participant></encounter></entry>");

/* The resource of a type whose path has the value (a new reference), or a failure. */
static struct json_object *find(struct json_object *bundle, const char *type, const char *path,
                                const char *want) {
    struct json_object *a = test_resources(bundle, type), *r = NULL;
    for (size_t i = 0; i < json_object_array_length(a) && r == NULL; i++) {
        const char *got = at(json_object_array_get_idx(a, i), path);
        if (got != NULL && strcmp(got, want) == 0) r = json_object_get(json_object_array_get_idx(a, i));
    }
    json_object_put(a);
    if (r == NULL) fail_msg("no %s with %s = %s", type, path, want);
    return r;
}

static void ccda_nutrition_referral_and_encounter_people_and_places(void **state) {
    (void)state;
    char *doc = test_doc(body2);
    hv_map_result_t m = test_map(doc);
    free(doc);
    /* Nutritional Status (.4.124) and the Nutrition Assessment (.4.138) it holds, which takes
     * its time; its author, known by NPI only, is a Practitioner with the specialty. */
    struct json_object *st = nth(m.bundle, "Observation", 0), *as = nth(m.bundle, "Observation", 1);
    EXPECT(st, "code.coding.0.code", "75305-3");
    EXPECT(st, "valueCodeableConcept.coding.0.code", "248324001");
    EXPECT(st, "effectiveDateTime", "2013-05-12");
    EXPECT(as, "code.coding.0.code", "75303-8");
    EXPECT(as, "valueCodeableConcept.coding.0.code", "386619000");
    EXPECT(as, "effectiveDateTime", "2013-05-12");
    assert_non_null(at(as, "performer.0.reference"));
    struct json_object *pr = find(m.bundle, "Practitioner", "identifier.0.value", "333444444");
    EXPECT(pr, "identifier.0.value", "333444444");
    EXPECT(pr, "qualification.0.code.coding.0.code", "246Q00000X");
    /* Patient Referral Act (.4.140, INT) → ServiceRequest. */
    struct json_object *sr = nth(m.bundle, "ServiceRequest", 0);
    EXPECT(sr, "code.coding.0.code", "44383000");
    EXPECT(sr, "intent", "plan");
    EXPECT(sr, "occurrenceDateTime", "2013-03-11");
    /* Encounter performer → participant; Service Delivery Location (.4.32) → Location. */
    struct json_object *e = nth(m.bundle, "Encounter", 0), *loc = nth(m.bundle, "Location", 0);
    struct json_object *doc_pr = find(m.bundle, "Practitioner", "identifier.0.value", "555");
    assert_non_null(at(e, "participant.0.individual.reference"));
    assert_non_null(at(e, "location.0.location.reference"));
    EXPECT(doc_pr, "name.0.family", "Lee");
    EXPECT(doc_pr, "qualification.0.code.coding.0.code", "59058001");
    EXPECT(loc, "name", "Good Health Clinic");
    EXPECT(loc, "type.0.coding.0.code", "1060-3");
    EXPECT(loc, "address.city", "Blue Bell");
    hv_fhir_validator_t *v = hv_fhir_validator_new();
    struct json_object *oo = NULL;
    int errors = -1;
    assert_int_equal(hv_fhir_validate(v, m.bundle, NULL, 0, &oo, &errors), HV_OK);
    if (errors != 0) fail_msg("validation errors: %s", json_object_to_json_string(oo));
    json_object_put(oo);
    hv_fhir_validator_free(v);
    json_object_put(st);
    json_object_put(as);
    json_object_put(pr);
    json_object_put(sr);
    json_object_put(e);
    json_object_put(loc);
    json_object_put(doc_pr);
    hv_map_result_free(&m);
}

int run_entries_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ccda_problems_keep_status_onset_and_negation),
        cmocka_unit_test(ccda_allergies_keep_negation_reaction_and_no_known),
        cmocka_unit_test(ccda_medication_not_taken_with_dosage),
        cmocka_unit_test(ccda_immunization_refused_is_not_done),
        cmocka_unit_test(ccda_procedures_done_and_not_done),
        cmocka_unit_test(ccda_results_map_to_report_and_observations),
        cmocka_unit_test(ccda_vitals_encounters_social_and_plan),
        cmocka_unit_test(ccda_family_history_and_equipment),
        cmocka_unit_test(ccda_sections_reference_their_resources_and_validate),
        cmocka_unit_test(ccda_nutrition_referral_and_encounter_people_and_places),
    };
    return cmocka_run_group_tests_name("ccda_entries", tests, setup, teardown);
}
