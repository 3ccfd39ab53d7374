/*
 * header.c — the C-CDA R2.1 US Realm Header (2.16.840.1.113883.10.20.22.1.1) →
 * Patient (US Core Patient: identifiers, names, telecom, address, gender,
 * birthDate, race and ethnicity extensions, language), authors → Practitioner /
 * Organization / Device, custodian → Organization, legalAuthenticator → attester,
 * encompassingEncounter → Encounter, and the Composition's own fields (identifier,
 * type, date, title, confidentiality, event, relatesTo).
 *
 * The patient's identity is the one thing the mapping cannot do without: a document
 * whose recordTarget has no usable id fails (HV_EINVAL) instead of producing
 * resources that could not be matched to anyone.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "adapters/ccda/ccda_int.h"

#define US_CORE "http://hl7.org/fhir/us/core/StructureDefinition/"
#define CDC_RACE_SYSTEM "urn:oid:2.16.840.1.113883.6.238"

/* A key that identifies a person or organization across the document, or NULL. */
static char *dedup_key(hv__ccda_ctx_t *c, const char *type, struct json_object *ids) {
    if (ids == NULL || json_object_array_length(ids) == 0) return NULL;
    struct json_object *id = json_object_array_get_idx(ids, 0);
    return hv_arena_sprintf(c->arena, "%s|%s|%s", type,
                            hv_json_get_str(id, "system") ? hv_json_get_str(id, "system") : "",
                            hv_json_get_str(id, "value") ? hv_json_get_str(id, "value") : "");
}


/* Organization (US Core Organization): org-1 needs a name or an identifier. */
const char *hv__ccda_organization(hv__ccda_ctx_t *c, xmlNodePtr org) {
    if (org == NULL) return NULL;
    struct json_object *o = json_object_new_object();
    struct json_object *ids = hv__ccda_identifiers(c, org);
    char *key = dedup_key(c, "Organization", ids);
    hv__ccda_set_if(o, "identifier", ids);
    char *name = hv__ccda_text(c, hv__ccda_child(org, "name"));
    if (name != NULL) hv_json_set_str(o, "name", name);
    hv__ccda_set_if(o, "telecom", hv__ccda_all(c, org, "telecom", hv__ccda_telecom));
    hv__ccda_set_if(o, "address", hv__ccda_all(c, org, "addr", hv__ccda_address));
    if (ids == NULL && name == NULL) {
        json_object_put(o);
        return NULL;
    }
    if (key == NULL && name != NULL) key = hv_arena_sprintf(c->arena, "Organization||%s", name);
    return hv__ccda_add(c, "Organization", o, key);
}

/* assignedAuthor / assignedEntity with an assignedPerson → Practitioner. */
const char *hv__ccda_practitioner(hv__ccda_ctx_t *c, xmlNodePtr assigned) {
    if (assigned == NULL) return NULL;
    xmlNodePtr person = hv__ccda_child(assigned, "assignedPerson");
    struct json_object *p = json_object_new_object();
    struct json_object *ids = hv__ccda_identifiers(c, assigned);
    char *key = dedup_key(c, "Practitioner", ids);
    hv__ccda_set_if(p, "identifier", ids);
    hv__ccda_set_if(p, "name", hv__ccda_all(c, person, "name", hv__ccda_name));
    hv__ccda_set_if(p, "telecom", hv__ccda_all(c, assigned, "telecom", hv__ccda_telecom));
    hv__ccda_set_if(p, "address", hv__ccda_all(c, assigned, "addr", hv__ccda_address));
    struct json_object *spec = hv__ccda_concept(c, hv__ccda_child(assigned, "code"));
    if (spec != NULL) {
        struct json_object *q = json_object_new_object(), *qa = json_object_new_array();
        hv_json_set(q, "code", spec);
        json_object_array_add(qa, q);
        hv_json_set(p, "qualification", qa);
    }
    if (json_object_object_length(p) == 0) {
        json_object_put(p);
        return NULL;
    }
    if (key == NULL) {
        struct json_object *names = NULL;
        if (json_object_object_get_ex(p, "name", &names))
            key = hv_arena_sprintf(c->arena, "Practitioner||%s",
                                   json_object_to_json_string_ext(names, JSON_C_TO_STRING_PLAIN));
    }
    return hv__ccda_add(c, "Practitioner", p, key);
}

/* assignedAuthoringDevice → Device (a system that authored the document). */
static const char *device(hv__ccda_ctx_t *c, xmlNodePtr assigned) {
    xmlNodePtr dev = hv__ccda_child(assigned, "assignedAuthoringDevice");
    if (dev == NULL) return NULL;
    struct json_object *d = json_object_new_object(), *names = json_object_new_array();
    hv__ccda_set_if(d, "identifier", hv__ccda_identifiers(c, assigned));
    static const char *const parts[][2] = {{"manufacturerModelName", "manufacturer-name"},
                                           {"softwareName", "model-name"}};
    for (size_t i = 0; i < 2; i++) {
        char *t = hv__ccda_text(c, hv__ccda_child(dev, parts[i][0]));
        if (t == NULL) continue;
        struct json_object *n = json_object_new_object();
        hv_json_set_str(n, "name", t);
        hv_json_set_str(n, "type", parts[i][1]);
        json_object_array_add(names, n);
    }
    if (json_object_array_length(names) > 0)
        hv_json_set(d, "deviceName", names);
    else
        json_object_put(names);
    return hv__ccda_add(c, "Device", d, NULL);
}

/* US Core race/ethnicity (US Core 3.1.1 StructureDefinition-us-core-race): OMB categories
 * go to ombCategory, other CDC codes to detailed, the displays to the required text. */
static struct json_object *race_ext(hv__ccda_ctx_t *c, xmlNodePtr patient, const char *name,
                                    const char *url, const char *const *omb) {
    struct json_object *ext = json_object_new_object(), *subs = json_object_new_array();
    hv_buf_t text;
    hv_buf_init(&text, 1024);
    for (xmlNodePtr k = patient->children; k != NULL; k = k->next) {
        if (k->type != XML_ELEMENT_NODE || strcmp((const char *)k->name, name) != 0) continue;
        if (k->ns == NULL || k->ns->href == NULL ||
            (strcmp((const char *)k->ns->href, HV__CCDA_NS) != 0 &&
             strcmp((const char *)k->ns->href, HV__CCDA_SDTC_NS) != 0))
            continue;
        const char *code = hv__ccda_attr(k, "code");
        const char *sys = hv__ccda_attr(k, "codeSystem");
        if (code == NULL || hv__ccda_attr(k, "nullFlavor") != NULL ||
            (sys != NULL && strcmp(sys, "2.16.840.1.113883.6.238") != 0))
            continue;
        struct json_object *cg = hv__ccda_coding(c, k);
        if (cg == NULL) continue;
        hv_json_set_str(cg, "system", CDC_RACE_SYSTEM);
        int is_omb = 0;
        for (size_t i = 0; omb[i] != NULL; i++)
            if (strcmp(code, omb[i]) == 0) is_omb = 1;
        struct json_object *sub = json_object_new_object();
        hv_json_set_str(sub, "url", is_omb ? "ombCategory" : "detailed");
        const char *disp = hv_json_get_str(cg, "display");
        if (disp != NULL) {
            if (text.len > 0) hv_buf_puts(&text, ", ");
            hv_buf_puts(&text, disp);
        }
        hv_json_set(sub, "valueCoding", cg);
        json_object_array_add(subs, sub);
    }
    if (json_object_array_length(subs) == 0) {
        json_object_put(subs);
        json_object_put(ext);
        hv_buf_release(&text);
        return NULL;
    }
    struct json_object *t = json_object_new_object();
    hv_json_set_str(t, "url", "text");
    hv_json_set_str(t, "valueString", text.len > 0 ? text.data : "unknown");
    json_object_array_add(subs, t);
    hv_json_set_str(ext, "url", url);
    hv_json_set(ext, "extension", subs);
    hv_buf_release(&text);
    return ext;
}

/* ISO 639-2 codes that CDA documents use → the BCP 47 (ISO 639-1) tags FHIR expects. */
static const char *bcp47(const char *lang) {
    static const char *const map[][2] = {
        {"eng", "en"}, {"spa", "es"}, {"fra", "fr"}, {"fre", "fr"}, {"deu", "de"}, {"ger", "de"},
        {"ita", "it"}, {"por", "pt"}, {"rus", "ru"}, {"zho", "zh"}, {"chi", "zh"}, {"jpn", "ja"},
        {"kor", "ko"}, {"vie", "vi"}, {"ara", "ar"}, {"hin", "hi"}, {"pol", "pl"}, {"tgl", "tl"},
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(map); i++)
        if (strcmp(lang, map[i][0]) == 0) return map[i][1];
    return lang;
}

/* A guardian (CDA R2 §4.2.2.1.1) or an IND participant's associatedEntity → RelatedPerson. */
static void related_person(hv__ccda_ctx_t *c, xmlNodePtr role, const char *person_elem) {
    struct json_object *rp = json_object_new_object();
    hv__ccda_set_if(rp, "identifier", hv__ccda_identifiers(c, role));
    hv_json_set(rp, "patient", hv__ccda_ref(c->patient_url));
    struct json_object *rel = hv__ccda_concept(c, hv__ccda_child(role, "code"));
    if (rel != NULL) {
        struct json_object *a = json_object_new_array();
        json_object_array_add(a, rel);
        hv_json_set(rp, "relationship", a);
    }
    hv__ccda_set_if(rp, "name", hv__ccda_all(c, hv__ccda_child(role, person_elem), "name", hv__ccda_name));
    hv__ccda_set_if(rp, "telecom", hv__ccda_all(c, role, "telecom", hv__ccda_telecom));
    hv__ccda_set_if(rp, "address", hv__ccda_all(c, role, "addr", hv__ccda_address));
    if (json_object_object_length(rp) <= 1) {
        json_object_put(rp);
        return;
    }
    hv__ccda_add(c, "RelatedPerson", rp, NULL);
}

static void related_people(hv__ccda_ctx_t *c, xmlNodePtr root) {
    xmlNodePtr pt =
        hv__ccda_child(hv__ccda_child(hv__ccda_child(root, "recordTarget"), "patientRole"), "patient");
    for (xmlNodePtr g = hv__ccda_child(pt, "guardian"); g != NULL; g = hv__ccda_next(g, "guardian"))
        related_person(c, g, "guardianPerson");
    for (xmlNodePtr p = hv__ccda_child(root, "participant"); p != NULL;
         p = hv__ccda_next(p, "participant")) {
        xmlNodePtr ae = hv__ccda_child(p, "associatedEntity");
        if (ae != NULL && hv__ccda_child(ae, "associatedPerson") != NULL)
            related_person(c, ae, "associatedPerson");
    }
}

static const char *patient(hv__ccda_ctx_t *c, xmlNodePtr root, hv_error_t *err) {
    xmlNodePtr role = hv__ccda_child(hv__ccda_child(root, "recordTarget"), "patientRole");
    xmlNodePtr pt = hv__ccda_child(role, "patient");
    if (role == NULL) {
        hv_error_set(err, HV_EINVAL, "ClinicalDocument/recordTarget",
                     "the document names no patient (recordTarget/patientRole is missing)");
        return NULL;
    }
    struct json_object *ids = hv__ccda_identifiers(c, role);
    /* The patient's identity is an identifier with a namespace (system): a bare value from a
     * malformed root cannot match the same patient in another document. */
    int has_system = 0;
    for (size_t i = 0; ids != NULL && i < json_object_array_length(ids); i++)
        if (hv_json_get_str(json_object_array_get_idx(ids, i), "system") != NULL) has_system = 1;
    if (!has_system) {
        json_object_put(ids);
        ids = NULL;
    }
    if (ids == NULL) {
        hv_error_set(err, HV_EINVAL, "ClinicalDocument/recordTarget/patientRole/id",
                     "the patient has no usable identifier; the document cannot be matched to a "
                     "patient");
        return NULL;
    }
    struct json_object *p = json_object_new_object(), *a, *v;
    a = json_object_new_array();
    json_object_array_add(a, json_object_new_string(US_CORE "us-core-patient"));
    v = json_object_new_object();
    hv_json_set(v, "profile", a);
    hv_json_set(p, "meta", v);

    struct json_object *exts = json_object_new_array();
    if (pt != NULL) {
        static const char *const omb_race[] = {"1002-5", "2028-9", "2054-5", "2076-8", "2106-3",
                                               NULL};
        static const char *const omb_eth[] = {"2135-2", "2186-5", NULL};
        v = race_ext(c, pt, "raceCode", US_CORE "us-core-race", omb_race);
        if (v != NULL) json_object_array_add(exts, v);
        v = race_ext(c, pt, "ethnicGroupCode", US_CORE "us-core-ethnicity", omb_eth);
        if (v != NULL) json_object_array_add(exts, v);
    }
    if (json_object_array_length(exts) > 0)
        hv_json_set(p, "extension", exts);
    else
        json_object_put(exts);
    hv_json_set(p, "identifier", ids);
    hv__ccda_set_if(p, "name", hv__ccda_all(c, pt, "name", hv__ccda_name));
    hv__ccda_set_if(p, "telecom", hv__ccda_all(c, role, "telecom", hv__ccda_telecom));
    xmlNodePtr g = hv__ccda_child(pt, "administrativeGenderCode");
    const char *gc = hv__ccda_attr(g, "code");
    if (gc != NULL) {
        /* V3 AdministrativeGender → FHIR administrative-gender (C-CDA on FHIR mapping). */
        hv_json_set_str(p, "gender", strcmp(gc, "M") == 0   ? "male"
                                     : strcmp(gc, "F") == 0 ? "female"
                                     : strcmp(gc, "UN") == 0 ? "other"
                                                             : "unknown");
    } else if (g != NULL && hv__ccda_attr(g, "nullFlavor") != NULL) {
        hv_json_set_str(p, "gender", "unknown");
    }
    hv__ccda_set_if(p, "birthDate", hv__ccda_ts_json(c, hv__ccda_child(pt, "birthTime"), 1));
    xmlNodePtr dInd = hv__ccda_child_ns(pt, HV__CCDA_SDTC_NS, "deceasedInd");
    xmlNodePtr dTime = hv__ccda_child_ns(pt, HV__CCDA_SDTC_NS, "deceasedTime");
    struct json_object *dt = hv__ccda_ts_json(c, dTime, 0);
    const char *di = hv__ccda_attr(dInd, "value");
    if (dt != NULL)
        hv_json_set(p, "deceasedDateTime", dt);
    else if (di != NULL && (strcmp(di, "true") == 0 || strcmp(di, "false") == 0))
        hv_json_set(p, "deceasedBoolean", json_object_new_boolean(di[0] == 't'));
    hv__ccda_set_if(p, "address", hv__ccda_all(c, role, "addr", hv__ccda_address));
    hv__ccda_set_if(p, "maritalStatus", hv__ccda_concept(c, hv__ccda_child(pt, "maritalStatusCode")));
    struct json_object *comm = json_object_new_array();
    for (xmlNodePtr lc = hv__ccda_child(pt, "languageCommunication"); lc != NULL;
         lc = hv__ccda_next(lc, "languageCommunication")) {
        const char *lang = hv__ccda_attr(hv__ccda_child(lc, "languageCode"), "code");
        if (lang == NULL || lang[0] == '\0' || strchr(lang, ' ') != NULL) continue;
        struct json_object *cm = json_object_new_object(), *cc = json_object_new_object();
        struct json_object *codings = json_object_new_array(), *cg = json_object_new_object();
        hv_json_set_str(cg, "system", "urn:ietf:bcp:47");
        hv_json_set_str(cg, "code", bcp47(lang));
        json_object_array_add(codings, cg);
        hv_json_set(cc, "coding", codings);
        hv_json_set(cm, "language", cc);
        const char *pref = hv__ccda_attr(hv__ccda_child(lc, "preferenceInd"), "value");
        if (pref != NULL && (strcmp(pref, "true") == 0 || strcmp(pref, "false") == 0))
            hv_json_set(cm, "preferred", json_object_new_boolean(pref[0] == 't'));
        json_object_array_add(comm, cm);
    }
    if (json_object_array_length(comm) > 0)
        hv_json_set(p, "communication", comm);
    else
        json_object_put(comm);
    const char *org = hv__ccda_organization(c, hv__ccda_child(role, "providerOrganization"));
    if (org != NULL) hv_json_set(p, "managingOrganization", hv__ccda_ref(org));
    const char *url = hv__ccda_add(c, "Patient", p, NULL);
    if (url == NULL) hv_error_set(err, HV_ENOMEM, NULL, "the Patient could not be added");
    return url;
}

/* encompassingEncounter (CDA R2 §4.2.3.1) → Encounter. */
static const char *encounter(hv__ccda_ctx_t *c, xmlNodePtr root) {
    xmlNodePtr ee = hv__ccda_child(hv__ccda_child(root, "componentOf"), "encompassingEncounter");
    if (ee == NULL) return NULL;
    struct json_object *e = json_object_new_object();
    hv__ccda_set_if(e, "identifier", hv__ccda_identifiers(c, ee));
    xmlNodePtr et = hv__ccda_child(ee, "effectiveTime");
    struct json_object *period = hv__ccda_period(c, et);
    if (period == NULL && et != NULL) {
        struct json_object *v = hv__ccda_ts_json(c, et, 0);
        if (v != NULL) {
            period = json_object_new_object();
            hv_json_set(period, "start", v);
        }
    }
    hv_json_set_str(e, "status", period != NULL && json_object_object_get_ex(period, "end", NULL)
                                     ? "finished"
                                     : "unknown");
    struct json_object *code = hv__ccda_concept(c, hv__ccda_child(ee, "code"));
    /* Encounter.class is a required Coding from v3 ActCode; other code systems go to type. */
    struct json_object *cls = NULL;
    if (code != NULL) {
        struct json_object *codings = NULL;
        if (json_object_object_get_ex(code, "coding", &codings)) {
            for (size_t i = 0; i < json_object_array_length(codings); i++) {
                struct json_object *cg = json_object_array_get_idx(codings, i);
                const char *sys = hv_json_get_str(cg, "system");
                if (sys != NULL && strcmp(sys, "http://terminology.hl7.org/CodeSystem/v3-ActCode") == 0)
                    cls = json_object_get(cg);
            }
        }
        struct json_object *types = json_object_new_array();
        json_object_array_add(types, code);
        hv_json_set(e, "type", types);
    }
    if (cls == NULL) {
        cls = json_object_new_object();
        hv_json_set_str(cls, "system", "http://terminology.hl7.org/CodeSystem/v3-NullFlavor");
        hv_json_set_str(cls, "code", "UNK");
    }
    hv_json_set(e, "class", cls);
    hv_json_set(e, "subject", hv__ccda_ref(c->patient_url));
    if (period != NULL) hv_json_set(e, "period", period);
    return hv__ccda_add(c, "Encounter", e, NULL);
}

static const char *const confidentiality_codes[] = {"U", "L", "M", "N", "R", "V"};

int hv__ccda_header(hv__ccda_ctx_t *c, xmlNodePtr root, struct json_object *comp,
                    hv_error_t *err) {
    c->patient_url = patient(c, root, err);
    if (c->patient_url == NULL) return err != NULL && err->code != 0 ? err->code : HV_EINVAL;
    related_people(c, root);

    hv__ccda_set_if(comp, "identifier", hv__ccda_identifier(c, hv__ccda_child(root, "id")));
    hv_json_set_str(comp, "status", "final");
    struct json_object *type = hv__ccda_concept(c, hv__ccda_child(root, "code"));
    if (type == NULL) {
        hv__ccda_issue(c, "warning", "required", "ClinicalDocument/code",
                       "the document has no type code");
        type = json_object_new_object();
        hv_json_set_str(type, "text", "Clinical document");
    }
    const char *type_text = NULL;
    struct json_object *codings = NULL;
    if (json_object_object_get_ex(type, "coding", &codings))
        type_text = hv_json_get_str(json_object_array_get_idx(codings, 0), "display");
    hv_json_set(comp, "type", type);
    hv_json_set(comp, "subject", hv__ccda_ref(c->patient_url));
    c->encounter_url = encounter(c, root);
    if (c->encounter_url != NULL) hv_json_set(comp, "encounter", hv__ccda_ref(c->encounter_url));
    struct json_object *date = hv__ccda_ts_json(c, hv__ccda_child(root, "effectiveTime"), 0);
    if (date == NULL) {
        hv_error_set(err, HV_EINVAL, "ClinicalDocument/effectiveTime",
                     "the document has no valid effectiveTime (the Composition date is required)");
        return HV_EINVAL;
    }
    hv_json_set(comp, "date", date);

    struct json_object *authors = json_object_new_array();
    for (xmlNodePtr au = hv__ccda_child(root, "author"); au != NULL; au = hv__ccda_next(au, "author")) {
        xmlNodePtr aa = hv__ccda_child(au, "assignedAuthor");
        const char *url = hv__ccda_child(aa, "assignedPerson") != NULL ? hv__ccda_practitioner(c, aa)
                                                                        : device(c, aa);
        if (url != NULL) json_object_array_add(authors, hv__ccda_ref(url));
        const char *org = hv__ccda_organization(c, hv__ccda_child(aa, "representedOrganization"));
        if (org != NULL && url == NULL) json_object_array_add(authors, hv__ccda_ref(org));
    }
    if (json_object_array_length(authors) == 0) {
        /* Composition.author is 1..*; say that the source named none. */
        struct json_object *r = json_object_new_object();
        hv_json_set_str(r, "display", "unknown author");
        json_object_array_add(authors, r);
        hv__ccda_issue(c, "warning", "required", "ClinicalDocument/author",
                       "the document names no author that could be mapped");
    }
    hv_json_set(comp, "author", authors);

    char *title = hv__ccda_text(c, hv__ccda_child(root, "title"));
    hv_json_set_str(comp, "title", title != NULL       ? title
                                   : type_text != NULL ? type_text
                                                       : "Clinical document");
    const char *conf = hv__ccda_attr(hv__ccda_child(root, "confidentialityCode"), "code");
    for (size_t i = 0; conf != NULL && i < HV_ARRAY_LEN(confidentiality_codes); i++)
        if (strcmp(conf, confidentiality_codes[i]) == 0) hv_json_set_str(comp, "confidentiality", conf);

    xmlNodePtr la = hv__ccda_child(root, "legalAuthenticator");
    if (la != NULL) {
        const char *party = hv__ccda_practitioner(c, hv__ccda_child(la, "assignedEntity"));
        struct json_object *at = json_object_new_object(), *ats = json_object_new_array();
        hv_json_set_str(at, "mode", "legal");
        hv__ccda_set_if(at, "time", hv__ccda_ts_json(c, hv__ccda_child(la, "time"), 0));
        if (party != NULL) hv_json_set(at, "party", hv__ccda_ref(party));
        json_object_array_add(ats, at);
        hv_json_set(comp, "attester", ats);
    }
    const char *cust = hv__ccda_organization(
        c, hv__ccda_child(hv__ccda_child(hv__ccda_child(root, "custodian"), "assignedCustodian"),
                          "representedCustodianOrganization"));
    if (cust != NULL) hv_json_set(comp, "custodian", hv__ccda_ref(cust));

    struct json_object *rel = json_object_new_array();
    for (xmlNodePtr rd = hv__ccda_child(root, "relatedDocument"); rd != NULL;
         rd = hv__ccda_next(rd, "relatedDocument")) {
        const char *tc = hv__ccda_attr(rd, "typeCode");
        struct json_object *tid =
            hv__ccda_identifier(c, hv__ccda_child(hv__ccda_child(rd, "parentDocument"), "id"));
        if (tid == NULL || tc == NULL) {
            json_object_put(tid);
            continue;
        }
        /* CDA x_ActRelationshipDocument → FHIR document-relationship-type. */
        const char *code = strcmp(tc, "RPLC") == 0 ? "replaces"
                           : strcmp(tc, "XFRM") == 0 ? "transforms"
                                                     : "appends";
        struct json_object *r = json_object_new_object();
        hv_json_set_str(r, "code", code);
        hv_json_set(r, "targetIdentifier", tid);
        json_object_array_add(rel, r);
    }
    if (json_object_array_length(rel) > 0)
        hv_json_set(comp, "relatesTo", rel);
    else
        json_object_put(rel);

    struct json_object *events = json_object_new_array();
    for (xmlNodePtr d = hv__ccda_child(root, "documentationOf"); d != NULL;
         d = hv__ccda_next(d, "documentationOf")) {
        xmlNodePtr se = hv__ccda_child(d, "serviceEvent");
        if (se == NULL) continue;
        struct json_object *ev = json_object_new_object();
        struct json_object *code = hv__ccda_concept(c, hv__ccda_child(se, "code"));
        if (code != NULL) {
            struct json_object *codes = json_object_new_array();
            json_object_array_add(codes, code);
            hv_json_set(ev, "code", codes);
        }
        hv__ccda_set_if(ev, "period", hv__ccda_period(c, hv__ccda_child(se, "effectiveTime")));
        /* The performers of the service event (usually the care team). */
        struct json_object *who = json_object_new_array();
        for (xmlNodePtr pf = hv__ccda_child(se, "performer"); pf != NULL;
             pf = hv__ccda_next(pf, "performer")) {
            xmlNodePtr ae = hv__ccda_child(pf, "assignedEntity");
            if (hv__ccda_child(ae, "assignedPerson") == NULL) continue;
            const char *url = hv__ccda_practitioner(c, ae);
            if (url != NULL) json_object_array_add(who, hv__ccda_ref(url));
        }
        if (json_object_array_length(who) > 0)
            hv_json_set(ev, "detail", who);
        else
            json_object_put(who);
        if (json_object_object_length(ev) > 0)
            json_object_array_add(events, ev);
        else
            json_object_put(ev);
    }
    if (json_object_array_length(events) > 0)
        hv_json_set(comp, "event", events);
    else
        json_object_put(events);
    return HV_OK;
}
