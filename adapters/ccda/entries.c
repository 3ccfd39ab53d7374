/*
 * entries.c — C-CDA R2.1 entry templates → US Core-shaped FHIR R4 resources,
 * following the HL7 C-CDA on FHIR / "CDA to FHIR" mapping tables where they exist:
 *
 *   entry template (2.16.840.1.113883.10.20.22.4.*)     resource
 *   Problem Observation .4.4 (in a concern act .4.3)     Condition (problem-list-item,
 *                                                        health-concern, encounter-diagnosis)
 *   Allergy – Intolerance Observation .4.7               AllergyIntolerance (+ reactions)
 *   Medication Activity .4.16                            MedicationStatement
 *   Result Organizer .4.1 / Result Observation .4.2      DiagnosticReport + Observation
 *   Vital Sign Observation .4.27                         Observation (vital-signs)
 *   Immunization Activity .4.52                          Immunization
 *   Procedure Activity .4.12 / .4.13 / .4.14             Procedure
 *   Encounter Activity .4.49                             Encounter (+ diagnosis Conditions)
 *   Social History / Smoking Status observations         Observation (social-history)
 *   Planned act/encounter/observation/procedure          ServiceRequest
 *   Planned Medication / Immunization                    MedicationRequest
 *   Goal Observation .4.121                              Goal
 *
 * negationInd="true" is kept: a refuted Condition or AllergyIntolerance
 * (verificationStatus), an Immunization with status not-done, a MedicationStatement
 * not-taken, a Procedure not-done. nullFlavors leave the element out.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "adapters/ccda/ccda_int.h"

#define E(x) "2.16.840.1.113883.10.20.22.4." x
#define MAX_WALK_DEPTH 24

typedef void (*entry_fn)(hv__ccda_ctx_t *c, xmlNodePtr n, struct json_object *refs, void *ud);

/* Calls fn for every descendant element carrying one of the templates (NULL-terminated),
 * not descending into a match. */
static void walk(hv__ccda_ctx_t *c, xmlNodePtr n, const char *const *oids, entry_fn fn,
                 struct json_object *refs, void *ud, int depth) {
    if (n == NULL || depth > MAX_WALK_DEPTH) return;
    for (xmlNodePtr k = n->children; k != NULL; k = k->next) {
        if (k->type != XML_ELEMENT_NODE) continue;
        int hit = 0;
        for (size_t i = 0; oids[i] != NULL && !hit; i++) hit = hv__ccda_has_template(k, oids[i]);
        if (hit)
            fn(c, k, refs, ud);
        else if (!hv__ccda_is(k, "text") && !hv__ccda_is(k, "section"))
            walk(c, k, oids, fn, refs, ud, depth + 1);
    }
}

void hv__ccda_walk(hv__ccda_ctx_t *c, xmlNodePtr n, const char *const *oids, entry_fn fn,
                   struct json_object *refs, void *ud) {
    walk(c, n, oids, fn, refs, ud, 0);
}

void hv__ccda_add_ref(struct json_object *refs, const char *url) {
    if (url != NULL) json_object_array_add(refs, hv__ccda_ref(url));
}

struct json_object *hv__ccda_cc1(const char *system, const char *code, const char *display) {
    struct json_object *cc = json_object_new_object(), *a = json_object_new_array();
    struct json_object *cg = json_object_new_object();
    hv_json_set_str(cg, "system", system);
    hv_json_set_str(cg, "code", code);
    if (display != NULL) hv_json_set_str(cg, "display", display);
    json_object_array_add(a, cg);
    hv_json_set(cc, "coding", a);
    return cc;
}

static struct json_object *arr1(struct json_object *v) {
    struct json_object *a = json_object_new_array();
    json_object_array_add(a, v);
    return a;
}

static int negated(xmlNodePtr n) {
    const char *v = hv__ccda_attr(n, "negationInd");
    return v != NULL && strcmp(v, "true") == 0;
}

const char *hv__ccda_status_code(xmlNodePtr n) {
    return hv__ccda_attr(hv__ccda_child(n, "statusCode"), "code");
}

int hv__ccda_eq(const char *a, const char *b) {
    return a != NULL && strcmp(a, b) == 0;
}

void hv__ccda_set_if(struct json_object *o, const char *key, struct json_object *v) {
    if (v != NULL) hv_json_set(o, key, v);
}

/* The first coded value of the status observation nested in n (Problem Status .4.6,
 * Allergy Status .4.28): SNOMED 55561003 active, 73425007 inactive, 413322009 resolved. */
static const char *nested_status(xmlNodePtr n, const char *tmpl) {
    for (xmlNodePtr er = hv__ccda_child(n, "entryRelationship"); er != NULL;
         er = hv__ccda_next(er, "entryRelationship")) {
        xmlNodePtr o = hv__ccda_child(er, "observation");
        if (o == NULL || !hv__ccda_has_template(o, tmpl)) continue;
        const char *code = hv__ccda_attr(hv__ccda_child(o, "value"), "code");
        if (hv__ccda_eq(code, "55561003")) return "active";
        if (hv__ccda_eq(code, "73425007")) return "inactive";
        if (hv__ccda_eq(code, "413322009")) return "resolved";
    }
    return NULL;
}

/* The effectiveTime's low (or its value) and high as FHIR dateTimes. */
static void low_high(hv__ccda_ctx_t *c, xmlNodePtr n, struct json_object **low,
                     struct json_object **high) {
    xmlNodePtr et = hv__ccda_child(n, "effectiveTime");
    *low = *high = NULL;
    if (et == NULL) return;
    if (hv__ccda_attr(et, "value") != NULL) {
        *low = hv__ccda_ts_json(c, et, 0);
        return;
    }
    *low = hv__ccda_ts_json(c, hv__ccda_child(et, "low"), 0);
    *high = hv__ccda_ts_json(c, hv__ccda_child(et, "high"), 0);
}

/* An assigned entity/author names a person when it has an assignedPerson, or — not being
 * a device — an id that is not a nullFlavor (a clinician known by NPI, whose name the
 * document leaves out). */
static int names_person(xmlNodePtr a) {
    if (hv__ccda_child(a, "assignedPerson") != NULL) return 1;
    if (hv__ccda_child(a, "assignedAuthoringDevice") != NULL) return 0;
    for (xmlNodePtr id = hv__ccda_child(a, "id"); id != NULL; id = hv__ccda_next(id, "id"))
        if (hv__ccda_attr(id, "nullFlavor") == NULL && hv__ccda_attr(id, "root") != NULL) return 1;
    return 0;
}

struct json_object *hv__ccda_entry_actor(hv__ccda_ctx_t *c, xmlNodePtr entry) {
    static const char *const roles[][2] = {{"performer", "assignedEntity"},
                                           {"author", "assignedAuthor"}};
    for (size_t i = 0; i < HV_ARRAY_LEN(roles); i++) {
        xmlNodePtr a = hv__ccda_child(hv__ccda_child(entry, roles[i][0]), roles[i][1]);
        if (a == NULL || !names_person(a)) continue;
        const char *url = hv__ccda_practitioner(c, a);
        if (url != NULL) return hv__ccda_ref(url);
    }
    return NULL;
}

/* {"actor": ref} in an array (Procedure.performer, Immunization.performer). */
static struct json_object *performer_actor(hv__ccda_ctx_t *c, xmlNodePtr entry) {
    struct json_object *ref = hv__ccda_entry_actor(c, entry);
    if (ref == NULL) return NULL;
    struct json_object *p = json_object_new_object(), *a = json_object_new_array();
    hv_json_set(p, "actor", ref);
    json_object_array_add(a, p);
    return a;
}

/* Procedure.performer: the performer's Practitioner as actor with its representedOrganization
 * as onBehalfOf (C-CDA on FHIR Procedure mapping); a performer that names no person is
 * performed by its organization (actor). NULL when neither maps. */
static struct json_object *procedure_performers(hv__ccda_ctx_t *c, xmlNodePtr p) {
    struct json_object *out = json_object_new_array();
    for (xmlNodePtr pf = hv__ccda_child(p, "performer"); pf != NULL;
         pf = hv__ccda_next(pf, "performer")) {
        xmlNodePtr a = hv__ccda_child(pf, "assignedEntity");
        if (a == NULL) continue;
        const char *who = names_person(a) ? hv__ccda_practitioner(c, a) : NULL;
        const char *org = hv__ccda_organization(c, hv__ccda_child(a, "representedOrganization"));
        if (who == NULL && org == NULL) continue;
        struct json_object *e = json_object_new_object();
        hv_json_set(e, "actor", hv__ccda_ref(who != NULL ? who : org));
        if (who != NULL && org != NULL) hv_json_set(e, "onBehalfOf", hv__ccda_ref(org));
        json_object_array_add(out, e);
    }
    if (json_object_array_length(out) == 0) {
        json_object_put(out);
        return NULL;
    }
    return out;
}

/* ---- problems ------------------------------------------------------------------------- */

typedef struct problem_ud {
    const char *category;   /* condition-category code */
    const char *concern;    /* the enclosing concern act's statusCode */
} problem_ud_t;

static void problem_obs(hv__ccda_ctx_t *c, xmlNodePtr obs, struct json_object *refs, void *ud) {
    problem_ud_t *pu = ud;
    struct json_object *cond = json_object_new_object(), *low, *high;
    hv__ccda_set_if(cond, "identifier", hv__ccda_identifiers(c, obs));
    low_high(c, obs, &low, &high);
    /* Clinical status: the Problem Status observation, else an abatement date means
     * resolved, else the concern act's status (C-CDA on FHIR ConceptMap). */
    const char *st = nested_status(obs, E("6"));
    if (high != NULL && (st == NULL || hv__ccda_eq(st, "active"))) st = "resolved";
    if (st == NULL) st = hv__ccda_eq(pu->concern, "active")      ? "active"
                         : hv__ccda_eq(pu->concern, "completed") ? "resolved"
                         : hv__ccda_eq(pu->concern, "suspended") ? "inactive"
                                                        : NULL;
    if (st != NULL)
        hv_json_set(cond, "clinicalStatus",
                    hv__ccda_cc1("http://terminology.hl7.org/CodeSystem/condition-clinical", st, NULL));
    if (negated(obs))
        hv_json_set(cond, "verificationStatus",
                    hv__ccda_cc1("http://terminology.hl7.org/CodeSystem/condition-ver-status", "refuted",
                        NULL));
    hv_json_set(cond, "category",
                arr1(hv__ccda_cc1("http://terminology.hl7.org/CodeSystem/condition-category", pu->category,
                         NULL)));
    struct json_object *code = hv__ccda_concept(c, hv__ccda_child(obs, "value"));
    if (code == NULL) code = hv__ccda_concept(c, hv__ccda_child(obs, "code"));
    hv__ccda_set_if(cond, "code", code);
    hv_json_set(cond, "subject", hv__ccda_ref(c->patient_url));
    hv__ccda_set_if(cond, "onsetDateTime", low);
    hv__ccda_set_if(cond, "abatementDateTime", high);
    hv__ccda_set_if(cond, "recorder", hv__ccda_entry_actor(c, obs));
    hv__ccda_add_ref(refs, hv__ccda_add(c, "Condition", cond, NULL));
}

static const char *const problem_obs_t[] = {E("4"), NULL};

static void concern_act(hv__ccda_ctx_t *c, xmlNodePtr act, struct json_object *refs, void *ud) {
    problem_ud_t pu = *(problem_ud_t *)ud;
    pu.concern = hv__ccda_status_code(act);
    walk(c, act, problem_obs_t, problem_obs, refs, &pu, 0);
}

static void problems_as(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs,
                        const char *category) {
    /* Concern acts: Problem Concern .4.3, Health Concern .4.132, Hospital Admission
     * Diagnosis .4.34, Discharge Diagnosis .4.33, Postprocedure .4.51, Preop .4.65, Postop .4.66. */
    static const char *const acts[] = {E("3"),  E("132"), E("34"), E("33"),
                                       E("51"), E("65"),  E("66"), NULL};
    problem_ud_t pu = {category, NULL};
    walk(c, section, acts, concern_act, refs, &pu, 0);
    /* Problem observations placed directly in an entry (no concern act). */
    for (xmlNodePtr e = hv__ccda_child(section, "entry"); e != NULL; e = hv__ccda_next(e, "entry")) {
        xmlNodePtr o = hv__ccda_child(e, "observation");
        if (o != NULL && hv__ccda_has_template(o, E("4"))) problem_obs(c, o, refs, &pu);
    }
}

void hv__ccda_problems(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs) {
    problems_as(c, section, refs, "problem-list-item");
}

void hv__ccda_health_concerns(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs) {
    problems_as(c, section, refs, "health-concern");
}

void hv__ccda_diagnoses(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs) {
    problems_as(c, section, refs, "encounter-diagnosis");
}

/* ---- allergies ------------------------------------------------------------------------ */

/* The Allergy/Intolerance type value (SNOMED) → FHIR type and category. */
static void allergy_kind(const char *code, const char **type, const char **category) {
    static const struct {
        const char *code, *type, *category;
    } kinds[] = {
        {"419199007", "allergy", NULL},           {"416098002", "allergy", "medication"},
        {"414285001", "allergy", "food"},         {"426232007", "allergy", "environment"},
        {"59037007", "intolerance", "medication"}, {"235719002", "intolerance", "food"},
        {"419511003", NULL, "medication"},         {"418471000", NULL, "food"},
        {"418038007", NULL, NULL},                 {"420134006", NULL, NULL},
    };
    *type = *category = NULL;
    for (size_t i = 0; code != NULL && i < HV_ARRAY_LEN(kinds); i++)
        if (strcmp(code, kinds[i].code) == 0) {
            *type = kinds[i].type;
            *category = kinds[i].category;
        }
}

static const char *severity_of(xmlNodePtr n) {
    for (xmlNodePtr er = hv__ccda_child(n, "entryRelationship"); er != NULL;
         er = hv__ccda_next(er, "entryRelationship")) {
        xmlNodePtr o = hv__ccda_child(er, "observation");
        if (o == NULL || !hv__ccda_has_template(o, E("8"))) continue;
        const char *code = hv__ccda_attr(hv__ccda_child(o, "value"), "code");
        if (hv__ccda_eq(code, "255604002")) return "mild";
        if (hv__ccda_eq(code, "6736007")) return "moderate";
        if (hv__ccda_eq(code, "24484000") || hv__ccda_eq(code, "442452003")) return "severe";
    }
    return NULL;
}

static void allergy_obs(hv__ccda_ctx_t *c, xmlNodePtr obs, struct json_object *refs, void *ud) {
    const char *concern = ud;
    struct json_object *ai = json_object_new_object(), *low, *high;
    hv__ccda_set_if(ai, "identifier", hv__ccda_identifiers(c, obs));
    const char *st = nested_status(obs, E("28"));
    if (st == NULL) st = hv__ccda_eq(concern, "completed") ? "resolved" : hv__ccda_eq(concern, "suspended") ? "inactive"
                                                                                         : "active";
    /* ait-1: clinicalStatus is required unless the record is entered-in-error. */
    hv_json_set(ai, "clinicalStatus",
                hv__ccda_cc1("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", st, NULL));
    xmlNodePtr pe = hv__ccda_child(
        hv__ccda_child(hv__ccda_child(obs, "participant"), "participantRole"), "playingEntity");
    xmlNodePtr pcode = hv__ccda_child(pe, "code");
    struct json_object *code = hv__ccda_concept(c, pcode);
    int neg = negated(obs);
    if (neg && code == NULL) {
        /* "No known allergies": negated, with no substance (C-CDA R2.1 §5.3 example). */
        code = hv__ccda_cc1("http://snomed.info/sct", "716186003", "No known allergy (situation)");
        hv_json_set(ai, "verificationStatus",
                    hv__ccda_cc1("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                        "confirmed", NULL));
    } else {
        hv_json_set(ai, "verificationStatus",
                    hv__ccda_cc1("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                        neg ? "refuted" : "confirmed", NULL));
    }
    const char *type, *category;
    allergy_kind(hv__ccda_attr(hv__ccda_child(obs, "value"), "code"), &type, &category);
    if (type != NULL) hv_json_set_str(ai, "type", type);
    if (category != NULL) hv_json_set(ai, "category", arr1(json_object_new_string(category)));
    /* Criticality Observation .4.145: CRITL low, CRITH high, CRITU unable-to-assess. */
    for (xmlNodePtr er = hv__ccda_child(obs, "entryRelationship"); er != NULL;
         er = hv__ccda_next(er, "entryRelationship")) {
        xmlNodePtr o = hv__ccda_child(er, "observation");
        if (o == NULL || !hv__ccda_has_template(o, E("145"))) continue;
        const char *cr = hv__ccda_attr(hv__ccda_child(o, "value"), "code");
        if (hv__ccda_eq(cr, "CRITL")) hv_json_set_str(ai, "criticality", "low");
        if (hv__ccda_eq(cr, "CRITH")) hv_json_set_str(ai, "criticality", "high");
        if (hv__ccda_eq(cr, "CRITU")) hv_json_set_str(ai, "criticality", "unable-to-assess");
    }
    hv__ccda_set_if(ai, "code", code);
    hv_json_set(ai, "patient", hv__ccda_ref(c->patient_url));
    low_high(c, obs, &low, &high);
    hv__ccda_set_if(ai, "onsetDateTime", low);
    json_object_put(high);
    hv__ccda_set_if(ai, "recorder", hv__ccda_entry_actor(c, obs));
    /* Reactions (.4.9, typeCode MFST) with their severity (.4.8). */
    struct json_object *reactions = json_object_new_array();
    const char *overall = severity_of(obs);
    for (xmlNodePtr er = hv__ccda_child(obs, "entryRelationship"); er != NULL;
         er = hv__ccda_next(er, "entryRelationship")) {
        xmlNodePtr o = hv__ccda_child(er, "observation");
        if (o == NULL || !hv__ccda_has_template(o, E("9"))) continue;
        struct json_object *m = hv__ccda_concept(c, hv__ccda_child(o, "value"));
        if (m == NULL) continue;
        struct json_object *r = json_object_new_object(), *rl, *rh;
        hv_json_set(r, "manifestation", arr1(m));
        low_high(c, o, &rl, &rh);
        hv__ccda_set_if(r, "onset", rl);
        json_object_put(rh);
        const char *sev = severity_of(o);
        if (sev == NULL) sev = overall;
        if (sev != NULL) hv_json_set_str(r, "severity", sev);
        json_object_array_add(reactions, r);
    }
    if (json_object_array_length(reactions) > 0)
        hv_json_set(ai, "reaction", reactions);
    else
        json_object_put(reactions);
    hv__ccda_add_ref(refs, hv__ccda_add(c, "AllergyIntolerance", ai, NULL));
}

static void allergy_act(hv__ccda_ctx_t *c, xmlNodePtr act, struct json_object *refs, void *ud) {
    static const char *const obs_t[] = {E("7"), NULL};
    (void)ud;
    walk(c, act, obs_t, allergy_obs, refs, (void *)hv__ccda_status_code(act), 0);
}

void hv__ccda_allergies(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs) {
    static const char *const acts[] = {E("30"), NULL};
    walk(c, section, acts, allergy_act, refs, NULL, 0);
}

/* ---- medications -------------------------------------------------------------------- */

static struct json_object *product_code(hv__ccda_ctx_t *c, xmlNodePtr sa, xmlNodePtr *material) {
    xmlNodePtr mm = hv__ccda_child(
        hv__ccda_child(hv__ccda_child(sa, "consumable"), "manufacturedProduct"),
        "manufacturedMaterial");
    if (material != NULL) *material = mm;
    struct json_object *code = hv__ccda_concept(c, hv__ccda_child(mm, "code"));
    if (code == NULL) {
        char *name = hv__ccda_text(c, hv__ccda_child(mm, "name"));
        if (name != NULL) {
            code = json_object_new_object();
            hv_json_set_str(code, "text", name);
        }
    }
    return code;
}

/* doseQuantity, routeCode and a PIVL_TS frequency → Dosage. */
static struct json_object *dosage(hv__ccda_ctx_t *c, xmlNodePtr sa) {
    struct json_object *d = json_object_new_object();
    hv__ccda_set_if(d, "route", hv__ccda_concept(c, hv__ccda_child(sa, "routeCode")));
    xmlNodePtr dq = hv__ccda_child(sa, "doseQuantity");
    struct json_object *q = hv__ccda_quantity(c, dq);
    if (q == NULL && dq != NULL) {
        struct json_object *v = hv__ccda_decimal(hv__ccda_attr(dq, "value"));
        if (v != NULL) {
            q = json_object_new_object();
            hv_json_set(q, "value", v);
        }
    }
    /* rateQuantity (an infusion rate, e.g. mL/min) → Dosage.doseAndRate.rateQuantity. */
    struct json_object *rate = hv__ccda_quantity(c, hv__ccda_child(sa, "rateQuantity"));
    if (q != NULL || rate != NULL) {
        struct json_object *dr = json_object_new_object();
        hv__ccda_set_if(dr, "doseQuantity", q);
        hv__ccda_set_if(dr, "rateQuantity", rate);
        hv_json_set(d, "doseAndRate", arr1(dr));
    }
    for (xmlNodePtr et = hv__ccda_child(sa, "effectiveTime"); et != NULL;
         et = hv__ccda_next(et, "effectiveTime")) {
        const char *t = hv__ccda_xsi_type(et);
        if (!hv__ccda_eq(t, "PIVL_TS")) continue;
        xmlNodePtr per = hv__ccda_child(et, "period");
        struct json_object *v = hv__ccda_decimal(hv__ccda_attr(per, "value"));
        const char *u = hv__ccda_attr(per, "unit");
        /* UCUM time units → FHIR units-of-time (s | min | h | d | wk | mo | a). */
        static const char *const units[] = {"s", "min", "h", "d", "wk", "mo", "a"};
        const char *unit = NULL;
        for (size_t i = 0; u != NULL && i < HV_ARRAY_LEN(units); i++)
            if (strcmp(u, units[i]) == 0) unit = units[i];
        if (v == NULL || unit == NULL) {
            json_object_put(v);
            continue;
        }
        struct json_object *rep = json_object_new_object(), *tm = json_object_new_object();
        hv_json_set(rep, "period", v);
        hv_json_set_str(rep, "periodUnit", unit);
        hv_json_set(tm, "repeat", rep);
        hv_json_set(d, "timing", tm);
        break;
    }
    char *text = hv__ccda_text(c, hv__ccda_child(hv__ccda_child(sa, "text"), "reference") == NULL
                                      ? hv__ccda_child(sa, "text")
                                      : NULL);
    if (text != NULL) hv_json_set_str(d, "text", text);
    if (json_object_object_length(d) == 0) {
        json_object_put(d);
        return NULL;
    }
    return d;
}

/* The first effectiveTime that is not a frequency (IVL_TS or TS). */
static xmlNodePtr main_time(xmlNodePtr sa) {
    for (xmlNodePtr et = hv__ccda_child(sa, "effectiveTime"); et != NULL;
         et = hv__ccda_next(et, "effectiveTime")) {
        const char *t = hv__ccda_xsi_type(et);
        if (t == NULL || hv__ccda_eq(t, "IVL_TS") || hv__ccda_eq(t, "TS")) return et;
    }
    return NULL;
}

static void medication(hv__ccda_ctx_t *c, xmlNodePtr sa, struct json_object *refs, void *ud) {
    (void)ud;
    struct json_object *code = product_code(c, sa, NULL);
    if (code == NULL) {
        hv__ccda_issue(c, "warning", "incomplete", "substanceAdministration",
                       "a medication activity names no medication and was not mapped");
        return;
    }
    struct json_object *ms = json_object_new_object();
    hv__ccda_set_if(ms, "identifier", hv__ccda_identifiers(c, sa));
    const char *sc = hv__ccda_status_code(sa), *mood = hv__ccda_attr(sa, "moodCode");
    /* ActStatus → MedicationStatement.status (C-CDA on FHIR medication ConceptMap). */
    const char *st = negated(sa)                ? "not-taken"
                     : hv__ccda_eq(sc, "active")         ? "active"
                     : hv__ccda_eq(sc, "completed")      ? "completed"
                     : hv__ccda_eq(sc, "aborted")        ? "stopped"
                     : hv__ccda_eq(sc, "suspended")      ? "on-hold"
                     : hv__ccda_eq(sc, "held")           ? "on-hold"
                     : hv__ccda_eq(sc, "nullified")      ? "entered-in-error"
                     : hv__ccda_eq(sc, "cancelled")      ? "not-taken"
                     : hv__ccda_eq(mood, "INT")          ? "intended"
                                                : "unknown";
    hv_json_set_str(ms, "status", st);
    hv_json_set(ms, "medicationCodeableConcept", code);
    hv_json_set(ms, "subject", hv__ccda_ref(c->patient_url));
    hv__ccda_set_effective(c, ms, "effective", main_time(sa));
    hv__ccda_set_if(ms, "informationSource", hv__ccda_entry_actor(c, sa));
    struct json_object *d = dosage(c, sa);
    if (d != NULL) hv_json_set(ms, "dosage", arr1(d));
    hv__ccda_add_ref(refs, hv__ccda_add(c, "MedicationStatement", ms, NULL));
}

void hv__ccda_medications(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs) {
    static const char *const t[] = {E("16"), NULL};
    walk(c, section, t, medication, refs, NULL, 0);
}

/* ---- results and vital signs ---------------------------------------------------------- */

static const char *obs_status(xmlNodePtr n) {
    const char *sc = hv__ccda_status_code(n);
    return hv__ccda_eq(sc, "completed")   ? "final"
           : hv__ccda_eq(sc, "active")    ? "preliminary"
           : hv__ccda_eq(sc, "aborted")   ? "cancelled"
           : hv__ccda_eq(sc, "cancelled") ? "cancelled"
           : hv__ccda_eq(sc, "nullified") ? "entered-in-error"
           : sc == NULL          ? "final"
                                 : "unknown";
}

static struct json_object *reference_ranges(hv__ccda_ctx_t *c, xmlNodePtr obs) {
    struct json_object *a = json_object_new_array();
    for (xmlNodePtr rr = hv__ccda_child(obs, "referenceRange"); rr != NULL;
         rr = hv__ccda_next(rr, "referenceRange")) {
        xmlNodePtr orng = hv__ccda_child(rr, "observationRange");
        xmlNodePtr v = hv__ccda_child(orng, "value");
        struct json_object *r = json_object_new_object();
        if (v != NULL && hv__ccda_eq(hv__ccda_xsi_type(v), "IVL_PQ")) {
            hv__ccda_set_if(r, "low", hv__ccda_quantity(c, hv__ccda_child(v, "low")));
            hv__ccda_set_if(r, "high", hv__ccda_quantity(c, hv__ccda_child(v, "high")));
        }
        xmlNodePtr t = hv__ccda_child(orng, "text");
        char *text = hv__ccda_child(t, "reference") == NULL ? hv__ccda_text(c, t) : NULL;
        if (text != NULL) hv_json_set_str(r, "text", text);
        /* obs-3: a range has at least a low, a high or a text. */
        if (json_object_object_length(r) > 0)
            json_object_array_add(a, r);
        else
            json_object_put(r);
    }
    if (json_object_array_length(a) == 0) {
        json_object_put(a);
        return NULL;
    }
    return a;
}

static const char *observation(hv__ccda_ctx_t *c, xmlNodePtr obs, const char *category,
                               const char *fallback_time) {
    struct json_object *o = json_object_new_object();
    hv__ccda_set_if(o, "identifier", hv__ccda_identifiers(c, obs));
    hv_json_set_str(o, "status", obs_status(obs));
    hv_json_set(o, "category",
                arr1(hv__ccda_cc1("http://terminology.hl7.org/CodeSystem/observation-category", category,
                         NULL)));
    struct json_object *code = hv__ccda_concept(c, hv__ccda_child(obs, "code"));
    if (code == NULL) {
        code = json_object_new_object();
        hv_json_set_str(code, "text", "unknown observation");
        hv__ccda_issue(c, "warning", "incomplete", "observation/code",
                       "an observation has no code; its code is recorded as unknown");
    }
    hv_json_set(o, "code", code);
    hv_json_set(o, "subject", hv__ccda_ref(c->patient_url));
    hv__ccda_set_effective(c, o, "effective", hv__ccda_child(obs, "effectiveTime"));
    if (!json_object_object_get_ex(o, "effectiveDateTime", NULL) &&
        !json_object_object_get_ex(o, "effectivePeriod", NULL) && fallback_time != NULL)
        hv_json_set_str(o, "effectiveDateTime", fallback_time);
    xmlNodePtr value = hv__ccda_child(obs, "value");
    hv__ccda_set_value(c, o, value);
    if (value != NULL && hv__ccda_attr(value, "nullFlavor") != NULL &&
        !json_object_object_get_ex(o, "valueCodeableConcept", NULL)) {
        /* A value whose nullFlavor says it is unknown → dataAbsentReason (obs-6). */
        hv_json_set(o, "dataAbsentReason",
                    hv__ccda_cc1("http://terminology.hl7.org/CodeSystem/data-absent-reason", "unknown", NULL));
    }
    struct json_object *interp = hv__ccda_all(c, obs, "interpretationCode", hv__ccda_concept);
    hv__ccda_set_if(o, "interpretation", interp);
    hv__ccda_set_if(o, "referenceRange", reference_ranges(c, obs));
    struct json_object *actor = hv__ccda_entry_actor(c, obs);
    if (actor != NULL) {
        struct json_object *a = json_object_new_array();
        json_object_array_add(a, actor);
        hv_json_set(o, "performer", a);
    }
    return hv__ccda_add(c, "Observation", o, NULL);
}

static void result_organizer(hv__ccda_ctx_t *c, xmlNodePtr org, struct json_object *refs,
                             void *ud) {
    (void)ud;
    struct json_object *dr = json_object_new_object(), *results = json_object_new_array();
    hv__ccda_set_if(dr, "identifier", hv__ccda_identifiers(c, org));
    const char *sc = hv__ccda_status_code(org);
    hv_json_set_str(dr, "status", hv__ccda_eq(sc, "completed")   ? "final"
                                  : hv__ccda_eq(sc, "active")    ? "partial"
                                  : hv__ccda_eq(sc, "aborted")   ? "cancelled"
                                  : hv__ccda_eq(sc, "nullified") ? "entered-in-error"
                                  : sc == NULL          ? "final"
                                                        : "unknown");
    hv_json_set(dr, "category",
                arr1(hv__ccda_cc1("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB", "Laboratory")));
    struct json_object *code = hv__ccda_concept(c, hv__ccda_child(org, "code"));
    if (code == NULL) {
        code = json_object_new_object();
        hv_json_set_str(code, "text", "Results");
    }
    hv_json_set(dr, "code", code);
    hv_json_set(dr, "subject", hv__ccda_ref(c->patient_url));
    hv__ccda_set_effective(c, dr, "effective", hv__ccda_child(org, "effectiveTime"));
    const char *when = hv_json_get_str(dr, "effectiveDateTime");
    for (xmlNodePtr comp = hv__ccda_child(org, "component"); comp != NULL;
         comp = hv__ccda_next(comp, "component")) {
        xmlNodePtr o = hv__ccda_child(comp, "observation");
        if (o == NULL) continue;
        const char *url = observation(c, o, "laboratory", when);
        if (url != NULL) json_object_array_add(results, hv__ccda_ref(url));
        if (!json_object_object_get_ex(dr, "effectiveDateTime", NULL) &&
            !json_object_object_get_ex(dr, "effectivePeriod", NULL))
            hv__ccda_set_effective(c, dr, "effective", hv__ccda_child(o, "effectiveTime"));
    }
    if (json_object_array_length(results) > 0)
        hv_json_set(dr, "result", results);
    else
        json_object_put(results);
    hv__ccda_add_ref(refs, hv__ccda_add(c, "DiagnosticReport", dr, NULL));
}

static void loose_result(hv__ccda_ctx_t *c, xmlNodePtr obs, struct json_object *refs, void *ud) {
    hv__ccda_add_ref(refs, observation(c, obs, ud != NULL ? ud : "laboratory", NULL));
}

void hv__ccda_results(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs) {
    static const char *const orgs[] = {E("1"), NULL};
    static const char *const obs_t[] = {E("2"), NULL};
    walk(c, section, orgs, result_organizer, refs, NULL, 0);
    for (xmlNodePtr e = hv__ccda_child(section, "entry"); e != NULL; e = hv__ccda_next(e, "entry")) {
        xmlNodePtr o = hv__ccda_child(e, "observation");
        if (o != NULL && hv__ccda_has_template(o, E("2"))) loose_result(c, o, refs, NULL);
    }
    (void)obs_t;
}

void hv__ccda_vital_signs(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs) {
    static const char *const t[] = {E("27"), NULL};
    walk(c, section, t, loose_result, refs, (void *)"vital-signs", 0);
}

void hv__ccda_social_history(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs) {
    for (xmlNodePtr e = hv__ccda_child(section, "entry"); e != NULL; e = hv__ccda_next(e, "entry")) {
        xmlNodePtr o = hv__ccda_child(e, "observation");
        if (o != NULL) hv__ccda_add_ref(refs, observation(c, o, "social-history", NULL));
    }
}

/* Functional Status (.2.14) and Mental Status (.2.56): their observations, also those
 * inside organizers (.4.66, .4.75), → Observation (category survey). */
void hv__ccda_assessments(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs) {
    for (xmlNodePtr e = hv__ccda_child(section, "entry"); e != NULL; e = hv__ccda_next(e, "entry")) {
        xmlNodePtr o = hv__ccda_child(e, "observation"), org = hv__ccda_child(e, "organizer");
        if (o != NULL) hv__ccda_add_ref(refs, observation(c, o, "survey", NULL));
        for (xmlNodePtr k = hv__ccda_child(org, "component"); k != NULL;
             k = hv__ccda_next(k, "component")) {
            xmlNodePtr ko = hv__ccda_child(k, "observation");
            if (ko != NULL) hv__ccda_add_ref(refs, observation(c, ko, "survey", NULL));
        }
    }
}

/* Nutrition (.2.57): each Nutritional Status Observation (.4.124) → Observation (category
 * exam), and the Nutrition Assessments (.4.138) it holds → Observation (category survey);
 * the assessment takes the status observation's time when it has none of its own. */
static void nutrition_status(hv__ccda_ctx_t *c, xmlNodePtr obs, struct json_object *refs, void *ud) {
    (void)ud;
    const char *url = observation(c, obs, "exam", NULL);
    struct json_object *time = NULL;
    hv__ccda_add_ref(refs, url);
    time = hv__ccda_ts_json(c, hv__ccda_child(obs, "effectiveTime"), 0);
    for (xmlNodePtr er = hv__ccda_child(obs, "entryRelationship"); er != NULL;
         er = hv__ccda_next(er, "entryRelationship")) {
        xmlNodePtr a = hv__ccda_child(er, "observation");
        if (a != NULL && hv__ccda_has_template(a, E("138")))
            hv__ccda_add_ref(refs, observation(c, a, "survey", time != NULL ? json_object_get_string(time) : NULL));
    }
    json_object_put(time);
}

void hv__ccda_nutrition(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs) {
    static const char *const t[] = {E("124"), NULL};
    static const char *const a[] = {E("138"), NULL};
    walk(c, section, t, nutrition_status, refs, NULL, 0);
    /* Assessments recorded directly as entries of the section. */
    for (xmlNodePtr e = hv__ccda_child(section, "entry"); e != NULL; e = hv__ccda_next(e, "entry")) {
        xmlNodePtr o = hv__ccda_child(e, "observation");
        if (o != NULL && hv__ccda_has_template(o, a[0])) hv__ccda_add_ref(refs, observation(c, o, "survey", NULL));
    }
}

/* ---- family history and medical equipment ------------------------------------------- */

/* Family History Organizer (.4.45) → FamilyMemberHistory; its Family History
 * Observations (.4.46) → condition[], a Family History Death Observation (.4.47) →
 * contributedToDeath. */
static void family_member(hv__ccda_ctx_t *c, xmlNodePtr org, struct json_object *refs, void *ud) {
    (void)ud;
    struct json_object *f = json_object_new_object();
    xmlNodePtr rs = hv__ccda_child(hv__ccda_child(org, "subject"), "relatedSubject");
    xmlNodePtr who = hv__ccda_child(rs, "subject");
    hv__ccda_set_if(f, "identifier", hv__ccda_identifiers(c, org));
    hv_json_set_str(f, "status", "completed");
    hv_json_set(f, "patient", hv__ccda_ref(c->patient_url));
    struct json_object *rel = hv__ccda_concept(c, hv__ccda_child(rs, "code"));
    if (rel == NULL)
        rel = hv__ccda_cc1("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "FAMMEMB", "family member");
    hv_json_set(f, "relationship", rel);
    hv__ccda_set_if(f, "sex", hv__ccda_concept(c, hv__ccda_child(who, "administrativeGenderCode")));
    hv__ccda_set_if(f, "bornDate", hv__ccda_ts_json(c, hv__ccda_child(who, "birthTime"), 1));
    struct json_object *conds = json_object_new_array();
    for (xmlNodePtr k = hv__ccda_child(org, "component"); k != NULL; k = hv__ccda_next(k, "component")) {
        xmlNodePtr o = hv__ccda_child(k, "observation");
        struct json_object *code = hv__ccda_concept(c, hv__ccda_child(o, "value"));
        if (code == NULL) continue;
        struct json_object *cond = json_object_new_object();
        hv_json_set(cond, "code", code);
        for (xmlNodePtr er = hv__ccda_child(o, "entryRelationship"); er != NULL;
             er = hv__ccda_next(er, "entryRelationship")) {
            xmlNodePtr d = hv__ccda_child(er, "observation");
            if (d != NULL && hv__ccda_has_template(d, E("47")))
                hv_json_set(cond, "contributedToDeath", json_object_new_boolean(1));
            /* Age Observation (.4.31): the age at onset, in UCUM time units. */
            if (d != NULL && hv__ccda_has_template(d, E("31")) &&
                !json_object_object_get_ex(cond, "onsetAge", NULL))
                hv__ccda_set_if(cond, "onsetAge", hv__ccda_quantity(c, hv__ccda_child(d, "value")));
        }
        json_object_array_add(conds, cond);
    }
    if (json_object_array_length(conds) > 0)
        hv_json_set(f, "condition", conds);
    else
        json_object_put(conds);
    hv__ccda_add_ref(refs, hv__ccda_add(c, "FamilyMemberHistory", f, NULL));
}

void hv__ccda_family_history(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs) {
    static const char *const t[] = {E("45"), NULL};
    walk(c, section, t, family_member, refs, NULL, 0);
}

/* Non-Medicinal Supply Activity (.4.50) with a playingDevice → Device for the patient. */
static void supply_device(hv__ccda_ctx_t *c, xmlNodePtr sup, struct json_object *refs, void *ud) {
    (void)ud;
    xmlNodePtr pr = hv__ccda_child(hv__ccda_child(sup, "participant"), "participantRole");
    xmlNodePtr dev = hv__ccda_child(pr, "playingDevice");
    struct json_object *type = hv__ccda_concept(c, hv__ccda_child(dev, "code"));
    if (type == NULL) return;
    struct json_object *d = json_object_new_object();
    struct json_object *ids = hv__ccda_identifiers(c, sup);
    if (ids == NULL) ids = hv__ccda_identifiers(c, pr);
    hv__ccda_set_if(d, "identifier", ids);
    hv_json_set(d, "type", type);
    hv_json_set(d, "patient", hv__ccda_ref(c->patient_url));
    hv__ccda_add_ref(refs, hv__ccda_add(c, "Device", d, NULL));
}

static void procedure(hv__ccda_ctx_t *c, xmlNodePtr p, struct json_object *refs, void *ud);

/* Medical Equipment (2.23): Non-Medicinal Supply Activities (.4.50) → Device, and the
 * Procedure Activity Procedures (.4.14) the section allows for implanted devices →
 * Procedure (C-CDA R2.1 Medical Equipment Section entries). */
void hv__ccda_medical_equipment(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs) {
    static const char *const t[] = {E("50"), NULL};
    static const char *const pt[] = {E("14"), NULL};
    walk(c, section, t, supply_device, refs, NULL, 0);
    walk(c, section, pt, procedure, refs, NULL, 0);
}

/* ---- immunizations ----------------------------------------------------------------- */

static void immunization(hv__ccda_ctx_t *c, xmlNodePtr sa, struct json_object *refs, void *ud) {
    (void)ud;
    xmlNodePtr mm = NULL;
    struct json_object *im = json_object_new_object();
    hv__ccda_set_if(im, "identifier", hv__ccda_identifiers(c, sa));
    const char *sc = hv__ccda_status_code(sa);
    int neg = negated(sa);
    hv_json_set_str(im, "status", neg                    ? "not-done"
                                  : hv__ccda_eq(sc, "nullified") ? "entered-in-error"
                                                        : "completed");
    if (neg) {
        /* Immunization Refusal Reason (.4.53, typeCode RSON) → statusReason. */
        for (xmlNodePtr er = hv__ccda_child(sa, "entryRelationship"); er != NULL;
             er = hv__ccda_next(er, "entryRelationship")) {
            xmlNodePtr o = hv__ccda_child(er, "observation");
            if (o == NULL || !hv__ccda_has_template(o, E("53"))) continue;
            hv__ccda_set_if(im, "statusReason", hv__ccda_concept(c, hv__ccda_child(o, "code")));
            break;
        }
    }
    struct json_object *code = product_code(c, sa, &mm);
    if (code == NULL)
        code = hv__ccda_cc1("http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "UNK", "unknown");
    hv_json_set(im, "vaccineCode", code);
    hv_json_set(im, "patient", hv__ccda_ref(c->patient_url));
    struct json_object *low, *high;
    low_high(c, sa, &low, &high);
    json_object_put(high);
    if (low != NULL)
        hv_json_set(im, "occurrenceDateTime", low);
    else
        hv_json_set_str(im, "occurrenceString", "unknown");
    char *lot = hv__ccda_text(c, hv__ccda_child(mm, "lotNumberText"));
    if (lot != NULL) hv_json_set_str(im, "lotNumber", lot);
    hv__ccda_set_if(im, "route", hv__ccda_concept(c, hv__ccda_child(sa, "routeCode")));
    hv__ccda_set_if(im, "doseQuantity", hv__ccda_quantity(c, hv__ccda_child(sa, "doseQuantity")));
    hv__ccda_set_if(im, "performer", performer_actor(c, sa));
    hv__ccda_add_ref(refs, hv__ccda_add(c, "Immunization", im, NULL));
}

void hv__ccda_immunizations(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs) {
    static const char *const t[] = {E("52"), NULL};
    walk(c, section, t, immunization, refs, NULL, 0);
}

/* ---- procedures ---------------------------------------------------------------------- */

static void procedure(hv__ccda_ctx_t *c, xmlNodePtr p, struct json_object *refs, void *ud) {
    (void)ud;
    struct json_object *pr = json_object_new_object();
    hv__ccda_set_if(pr, "identifier", hv__ccda_identifiers(c, p));
    const char *sc = hv__ccda_status_code(p);
    /* ActStatus → EventStatus (C-CDA on FHIR procedure status ConceptMap). */
    hv_json_set_str(pr, "status", negated(p)              ? "not-done"
                                  : hv__ccda_eq(sc, "completed")   ? "completed"
                                  : hv__ccda_eq(sc, "active")      ? "in-progress"
                                  : hv__ccda_eq(sc, "aborted")     ? "stopped"
                                  : hv__ccda_eq(sc, "cancelled")   ? "not-done"
                                  : hv__ccda_eq(sc, "new")         ? "preparation"
                                  : hv__ccda_eq(sc, "held")        ? "on-hold"
                                  : hv__ccda_eq(sc, "suspended")   ? "on-hold"
                                  : hv__ccda_eq(sc, "nullified")   ? "entered-in-error"
                                                          : "unknown");
    hv__ccda_set_if(pr, "code", hv__ccda_concept(c, hv__ccda_child(p, "code")));
    hv_json_set(pr, "subject", hv__ccda_ref(c->patient_url));
    hv__ccda_set_effective(c, pr, "performed", hv__ccda_child(p, "effectiveTime"));
    hv__ccda_set_if(pr, "bodySite", hv__ccda_all(c, p, "targetSiteCode", hv__ccda_concept));
    struct json_object *perf = procedure_performers(c, p);
    /* Without a performer, the author is the one who did it (as before). */
    hv__ccda_set_if(pr, "performer", perf != NULL ? perf : performer_actor(c, p));
    hv__ccda_add_ref(refs, hv__ccda_add(c, "Procedure", pr, NULL));
}

void hv__ccda_procedures(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs) {
    static const char *const t[] = {E("14"), E("13"), E("12"), NULL};
    walk(c, section, t, procedure, refs, NULL, 0);
}

/* Anesthesia (.2.25): the anesthesia procedure and the medications given. */
void hv__ccda_anesthesia(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs) {
    hv__ccda_procedures(c, section, refs);
    hv__ccda_medications(c, section, refs);
}

/* ---- encounters ---------------------------------------------------------------------- */

/* A participant typeCode LOC with a Service Delivery Location (.4.32) → Location: the
 * playing entity's name, the HSLOC type, address and telecom. NULL when it names nothing. */
static const char *service_location(hv__ccda_ctx_t *c, xmlNodePtr participant) {
    xmlNodePtr role = hv__ccda_child(participant, "participantRole");
    const char *tc = hv__ccda_attr(participant, "typeCode");
    if (role == NULL || !hv__ccda_eq(tc, "LOC")) return NULL;
    struct json_object *l = json_object_new_object();
    char *name = hv__ccda_text(c, hv__ccda_child(hv__ccda_child(role, "playingEntity"), "name"));
    hv__ccda_set_if(l, "identifier", hv__ccda_identifiers(c, role));
    if (name != NULL) hv_json_set_str(l, "name", name);
    struct json_object *type = hv__ccda_concept(c, hv__ccda_child(role, "code"));
    if (type != NULL) hv_json_set(l, "type", arr1(type));
    xmlNodePtr addr = hv__ccda_child(role, "addr");
    if (addr != NULL) hv__ccda_set_if(l, "address", hv__ccda_address(c, addr));
    hv__ccda_set_if(l, "telecom", hv__ccda_all(c, role, "telecom", hv__ccda_telecom));
    if (json_object_object_length(l) == 0) {
        json_object_put(l);
        return NULL;
    }
    /* The same place named by several encounters is one Location. */
    return hv__ccda_add(c, "Location", l,
                        hv_arena_sprintf(c->arena, "Location||%s",
                                         json_object_to_json_string_ext(l, JSON_C_TO_STRING_PLAIN)));
}

static void encounter(hv__ccda_ctx_t *c, xmlNodePtr en, struct json_object *refs, void *ud) {
    (void)ud;
    struct json_object *e = json_object_new_object();
    hv__ccda_set_if(e, "identifier", hv__ccda_identifiers(c, en));
    const char *sc = hv__ccda_status_code(en);
    xmlNodePtr et = hv__ccda_child(en, "effectiveTime");
    struct json_object *period = hv__ccda_period(c, et);
    if (period == NULL && et != NULL) {
        struct json_object *v = hv__ccda_ts_json(c, et, 0);
        if (v != NULL) {
            period = json_object_new_object();
            hv_json_set(period, "start", v);
        }
    }
    hv_json_set_str(e, "status", hv__ccda_eq(sc, "completed")   ? "finished"
                                 : hv__ccda_eq(sc, "active")    ? "in-progress"
                                 : hv__ccda_eq(sc, "cancelled") ? "cancelled"
                                 : hv__ccda_eq(sc, "nullified") ? "entered-in-error"
                                 : period != NULL      ? "finished"
                                                       : "unknown");
    struct json_object *code = hv__ccda_concept(c, hv__ccda_child(en, "code"));
    struct json_object *cls = NULL, *codings = NULL;
    if (code != NULL && json_object_object_get_ex(code, "coding", &codings)) {
        for (size_t i = 0; i < json_object_array_length(codings) && cls == NULL; i++) {
            struct json_object *cg = json_object_array_get_idx(codings, i);
            if (hv__ccda_eq(hv_json_get_str(cg, "system"), "http://terminology.hl7.org/CodeSystem/v3-ActCode"))
                cls = json_object_get(cg);
        }
    }
    if (cls == NULL) {
        /* Encounter.class is required; the source did not say which. */
        cls = json_object_new_object();
        hv_json_set_str(cls, "system", "http://terminology.hl7.org/CodeSystem/v3-NullFlavor");
        hv_json_set_str(cls, "code", "UNK");
    }
    hv_json_set(e, "class", cls);
    if (code != NULL) hv_json_set(e, "type", arr1(code));
    hv_json_set(e, "subject", hv__ccda_ref(c->patient_url));
    if (period != NULL) hv_json_set(e, "period", period);
    /* Indications (.4.19, typeCode RSON) → reasonCode; Encounter Diagnosis (.4.80) → diagnosis. */
    struct json_object *reasons = json_object_new_array(), *dx = json_object_new_array();
    for (xmlNodePtr er = hv__ccda_child(en, "entryRelationship"); er != NULL;
         er = hv__ccda_next(er, "entryRelationship")) {
        xmlNodePtr o = hv__ccda_child(er, "observation");
        xmlNodePtr a = hv__ccda_child(er, "act");
        if (o != NULL && hv__ccda_has_template(o, E("19"))) {
            struct json_object *v = hv__ccda_concept(c, hv__ccda_child(o, "value"));
            if (v != NULL) json_object_array_add(reasons, v);
        }
        if (a != NULL && hv__ccda_has_template(a, E("80"))) {
            struct json_object *crefs = json_object_new_array();
            static const char *const pt[] = {E("4"), NULL};
            problem_ud_t pu = {"encounter-diagnosis", hv__ccda_status_code(a)};
            walk(c, a, pt, problem_obs, crefs, &pu, 0);
            for (size_t i = 0; i < json_object_array_length(crefs); i++) {
                struct json_object *d = json_object_new_object();
                hv_json_set(d, "condition", json_object_get(json_object_array_get_idx(crefs, i)));
                json_object_array_add(dx, d);
                json_object_array_add(refs, json_object_get(json_object_array_get_idx(crefs, i)));
            }
            json_object_put(crefs);
        }
    }
    if (json_object_array_length(reasons) > 0)
        hv_json_set(e, "reasonCode", reasons);
    else
        json_object_put(reasons);
    if (json_object_array_length(dx) > 0)
        hv_json_set(e, "diagnosis", dx);
    else
        json_object_put(dx);
    /* Encounter performers → participant.individual; Service Delivery Locations (.4.32,
     * participant typeCode LOC) → location. */
    struct json_object *parts = json_object_new_array(), *locs = json_object_new_array();
    for (xmlNodePtr pf = hv__ccda_child(en, "performer"); pf != NULL; pf = hv__ccda_next(pf, "performer")) {
        xmlNodePtr a = hv__ccda_child(pf, "assignedEntity");
        const char *url = a != NULL && names_person(a) ? hv__ccda_practitioner(c, a) : NULL;
        if (url == NULL) continue;
        struct json_object *p = json_object_new_object();
        hv_json_set(p, "individual", hv__ccda_ref(url));
        json_object_array_add(parts, p);
    }
    for (xmlNodePtr pt = hv__ccda_child(en, "participant"); pt != NULL; pt = hv__ccda_next(pt, "participant")) {
        const char *url = service_location(c, pt);
        if (url == NULL) continue;
        struct json_object *l = json_object_new_object();
        hv_json_set(l, "location", hv__ccda_ref(url));
        json_object_array_add(locs, l);
    }
    if (json_object_array_length(parts) > 0)
        hv_json_set(e, "participant", parts);
    else
        json_object_put(parts);
    if (json_object_array_length(locs) > 0)
        hv_json_set(e, "location", locs);
    else
        json_object_put(locs);
    hv__ccda_add_ref(refs, hv__ccda_add(c, "Encounter", e, NULL));
}

void hv__ccda_encounters(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs) {
    static const char *const t[] = {E("49"), NULL};
    walk(c, section, t, encounter, refs, NULL, 0);
}

/* ---- plan of treatment ------------------------------------------------------------- */

/* V3 x_DocumentActMood (planned moods) → FHIR request intent. */
static const char *intent_of(const char *mood) {
    return hv__ccda_eq(mood, "RQO") || hv__ccda_eq(mood, "ARQ") || hv__ccda_eq(mood, "APT") ? "order"
           : hv__ccda_eq(mood, "PRP")                                    ? "proposal"
           : hv__ccda_eq(mood, "PRMS")                                   ? "directive"
                                                                : "plan";
}

static const char *request_status(xmlNodePtr n) {
    const char *sc = hv__ccda_status_code(n);
    return hv__ccda_eq(sc, "completed")                          ? "completed"
           : hv__ccda_eq(sc, "cancelled") || hv__ccda_eq(sc, "aborted")   ? "revoked"
           : hv__ccda_eq(sc, "new")                              ? "draft"
           : hv__ccda_eq(sc, "held") || hv__ccda_eq(sc, "suspended")      ? "on-hold"
           : hv__ccda_eq(sc, "nullified")                        ? "entered-in-error"
                                                        : "active";
}

/* The author of a planned act (Author Participation .4.119) is who asks for it:
 * ServiceRequest/MedicationRequest.requester (C-CDA on FHIR). NULL when it names no person. */
static struct json_object *requester(hv__ccda_ctx_t *c, xmlNodePtr n) {
    xmlNodePtr a = hv__ccda_child(hv__ccda_child(n, "author"), "assignedAuthor");
    if (a == NULL || !names_person(a)) return NULL;
    const char *url = hv__ccda_practitioner(c, a);
    return url != NULL ? hv__ccda_ref(url) : NULL;
}

static void planned(hv__ccda_ctx_t *c, xmlNodePtr n, struct json_object *refs) {
    const char *mood = hv__ccda_attr(n, "moodCode");
    if (mood == NULL || hv__ccda_eq(mood, "EVN")) return;
    if (hv__ccda_eq(mood, "GOL")) {
        /* Goal Observation (.4.121) → Goal. */
        struct json_object *g = json_object_new_object();
        hv__ccda_set_if(g, "identifier", hv__ccda_identifiers(c, n));
        hv_json_set_str(g, "lifecycleStatus", "active");
        struct json_object *d = hv__ccda_concept(c, hv__ccda_child(n, "value"));
        if (d == NULL) d = hv__ccda_concept(c, hv__ccda_child(n, "code"));
        if (d == NULL) {
            d = json_object_new_object();
            hv_json_set_str(d, "text", "goal");
        }
        hv_json_set(g, "description", d);
        hv_json_set(g, "subject", hv__ccda_ref(c->patient_url));
        hv__ccda_add_ref(refs, hv__ccda_add(c, "Goal", g, NULL));
        return;
    }
    if (hv__ccda_is(n, "substanceAdministration")) {
        struct json_object *code = product_code(c, n, NULL);
        if (code == NULL) return;
        struct json_object *mr = json_object_new_object();
        hv__ccda_set_if(mr, "identifier", hv__ccda_identifiers(c, n));
        /* Request status → MedicationRequest.status (revoked is "cancelled" there). */
        const char *rs = request_status(n);
        hv_json_set_str(mr, "status", negated(n) || hv__ccda_eq(rs, "revoked") ? "cancelled" : rs);
        hv_json_set_str(mr, "intent", intent_of(mood));
        if (negated(n)) hv_json_set(mr, "doNotPerform", json_object_new_boolean(1));
        hv_json_set(mr, "medicationCodeableConcept", code);
        hv_json_set(mr, "subject", hv__ccda_ref(c->patient_url));
        hv__ccda_set_if(mr, "requester", requester(c, n));
        struct json_object *d = dosage(c, n);
        if (d != NULL) hv_json_set(mr, "dosageInstruction", arr1(d));
        hv__ccda_add_ref(refs, hv__ccda_add(c, "MedicationRequest", mr, NULL));
        return;
    }
    struct json_object *code = hv__ccda_concept(c, hv__ccda_child(n, "code"));
    if (code == NULL) return;
    struct json_object *sr = json_object_new_object();
    hv__ccda_set_if(sr, "identifier", hv__ccda_identifiers(c, n));
    hv_json_set_str(sr, "status", request_status(n));
    hv_json_set_str(sr, "intent", intent_of(mood));
    if (negated(n)) hv_json_set(sr, "doNotPerform", json_object_new_boolean(1));
    hv_json_set(sr, "code", code);
    hv_json_set(sr, "subject", hv__ccda_ref(c->patient_url));
    hv__ccda_set_effective(c, sr, "occurrence", hv__ccda_child(n, "effectiveTime"));
    hv__ccda_set_if(sr, "requester", requester(c, n));
    hv__ccda_add_ref(refs, hv__ccda_add(c, "ServiceRequest", sr, NULL));
}

void hv__ccda_plan_of_care(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs) {
    static const char *const kinds[] = {"act",       "encounter", "observation",
                                        "procedure", "substanceAdministration"};
    for (xmlNodePtr e = hv__ccda_child(section, "entry"); e != NULL; e = hv__ccda_next(e, "entry")) {
        int done = 0;
        for (size_t i = 0; i < HV_ARRAY_LEN(kinds) && !done; i++) {
            xmlNodePtr n = hv__ccda_child(e, kinds[i]);
            if (n != NULL) {
                planned(c, n, refs);
                done = 1;
            }
        }
        if (!done)
            hv__ccda_issue(c, "information", "not-supported", "Plan of Treatment",
                           "a planned entry of this kind (supply, …) is not mapped");
    }
}
