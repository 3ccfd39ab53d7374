/*
 * admin.c — the administrative sections of a C-CDA R2.1 document that become FHIR R4
 * resources of their own:
 *
 *   Advance Directives (2.21 / 2.21.1)
 *     Advance Directive Organizer .4.108, or a lone     Consent (scope adr, category = the
 *     Advance Directive Observation .4.48                organizer's or observation's code,
 *                                                        provision.code = the directives)
 *     reference/externalDocument of an observation       DocumentReference (Consent.sourceReference)
 *     author (Author Participation .4.119)               Provenance (target the Consent, agent the
 *                                                        author's Practitioner, onBehalfOf its
 *                                                        organization) — Consent has no author
 *   Payers (2.18)
 *     Policy Activity .4.61 (in a Coverage Activity      Coverage: identifier, status, type (the
 *     .4.60)                                             policy's code), payor (Payer Performer
 *                                                        .4.87's organization), beneficiary (the
 *                                                        Patient), relationship and period (Covered
 *                                                        Party Participant .4.89), subscriberId
 *                                                        (Policy Holder Participant .4.90)
 *
 * FHIR R4 requires of a Consent a policy or policyRule (ppc-1) and a patient for scope adr
 * (ppc-4); of a Coverage a payor and a beneficiary. A Consent gets the directive document as
 * its policy when the observation references one, else policyRule text "advance directive";
 * a Policy Activity whose payer names no organization is left out with a warning.
 */
#include "config.h"

#include <json-c/json.h>
#include <string.h>

#include "adapters/ccda/ccda_int.h"

#define E(x) "2.16.840.1.113883.10.20.22.4." x

/* ---- advance directives --------------------------------------------------------------- */

/* The observation's reference/externalDocument (C-CDA R2.1 Advance Directive Observation,
 * "reference typeCode REFR … externalDocument") → DocumentReference; returns its fullUrl
 * and, in *url_out, the document's URL (NULL when none). */
static const char *directive_document(hv__ccda_ctx_t *c, xmlNodePtr obs, const char **url_out) {
    *url_out = NULL;
    for (xmlNodePtr r = hv__ccda_child(obs, "reference"); r != NULL;
         r = hv__ccda_next(r, "reference")) {
        xmlNodePtr ed = hv__ccda_child(r, "externalDocument");
        if (ed == NULL) continue;
        xmlNodePtr text = hv__ccda_child(ed, "text");
        const char *url = hv__ccda_attr(hv__ccda_child(text, "reference"), "value");
        struct json_object *ids = hv__ccda_identifiers(c, ed);
        if ((url == NULL || url[0] == '\0' || strchr(url, ' ') != NULL) && ids == NULL) continue;
        struct json_object *dr = json_object_new_object(), *att = json_object_new_object();
        hv__ccda_set_if(dr, "identifier", ids);
        hv_json_set_str(dr, "status", "current");
        hv__ccda_set_if(dr, "type", hv__ccda_concept(c, hv__ccda_child(ed, "code")));
        hv_json_set(dr, "subject", hv__ccda_ref(c->patient_url));
        const char *mt = hv__ccda_attr(text, "mediaType");
        if (mt != NULL && mt[0] != '\0') hv_json_set_str(att, "contentType", mt);
        if (url != NULL && url[0] != '\0' && strchr(url, ' ') == NULL) {
            hv_json_set_str(att, "url", url);
            *url_out = url;
        } else {
            hv_json_set_str(att, "title", "advance directive");
        }
        struct json_object *content = json_object_new_object(), *contents = json_object_new_array();
        hv_json_set(content, "attachment", att);
        json_object_array_add(contents, content);
        hv_json_set(dr, "content", contents);
        return hv__ccda_add(c, "DocumentReference", dr, NULL);
    }
    return NULL;
}

/* The entry's author → a Provenance of the Consent (US Core Provenance pattern: agent type
 * author, who the Practitioner, onBehalfOf the organization). Provenance.recorded is an
 * instant, so an author time without hour and zone leaves the Provenance out. */
static void directive_author(hv__ccda_ctx_t *c, xmlNodePtr n, const char *target) {
    xmlNodePtr au = hv__ccda_child(n, "author");
    xmlNodePtr a = hv__ccda_child(au, "assignedAuthor");
    if (a == NULL || target == NULL) return;
    const char *who = hv__ccda_child(a, "assignedPerson") != NULL ? hv__ccda_practitioner(c, a)
                                                                  : NULL;
    const char *org = hv__ccda_organization(c, hv__ccda_child(a, "representedOrganization"));
    if (who == NULL) who = org, org = NULL;
    if (who == NULL) return;
    char when[64];
    const char *tv = hv__ccda_attr(hv__ccda_child(au, "time"), "value");
    if (tv == NULL || hv__ccda_ts(tv, 0, when, sizeof(when)) != HV_OK || strlen(when) <= 10)
        return;
    struct json_object *p = json_object_new_object(), *targets = json_object_new_array();
    json_object_array_add(targets, hv__ccda_ref(target));
    hv_json_set(p, "target", targets);
    hv_json_set_str(p, "recorded", when);
    struct json_object *agent = json_object_new_object(), *agents = json_object_new_array();
    hv_json_set(agent, "type",
                hv__ccda_cc1("http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                          "author", "Author"));
    hv_json_set(agent, "who", hv__ccda_ref(who));
    if (org != NULL) hv_json_set(agent, "onBehalfOf", hv__ccda_ref(org));
    json_object_array_add(agents, agent);
    hv_json_set(p, "agent", agents);
    hv__ccda_add(c, "Provenance", p, NULL);
}

/* One Consent for an Advance Directive Organizer (its observations are the provisions) or
 * for a lone Advance Directive Observation. */
static void directive(hv__ccda_ctx_t *c, xmlNodePtr n, struct json_object *refs, void *ud) {
    (void)ud;
    int organizer = hv__ccda_is(n, "organizer");
    struct json_object *codes = json_object_new_array();
    struct json_object *start = NULL, *end = NULL;
    const char *doc = NULL, *doc_url = NULL;
    unsigned nobs = 0;
    xmlNodePtr first = NULL;
    /* The observations: the organizer's components, or n itself. */
    for (xmlNodePtr k = organizer ? hv__ccda_child(n, "component") : n; k != NULL;
         k = organizer ? hv__ccda_next(k, "component") : NULL) {
        xmlNodePtr o = organizer ? hv__ccda_child(k, "observation") : k;
        if (o == NULL || !hv__ccda_has_template(o, E("48"))) continue;
        nobs++;
        if (first == NULL) first = o;
        struct json_object *v = hv__ccda_concept(c, hv__ccda_child(o, "value"));
        if (v == NULL) v = hv__ccda_concept(c, hv__ccda_child(o, "code"));
        if (v != NULL) json_object_array_add(codes, v);
        xmlNodePtr et = hv__ccda_child(o, "effectiveTime");
        if (start == NULL) start = hv__ccda_ts_json(c, hv__ccda_child(et, "low"), 0);
        if (end == NULL && nobs == 1) end = hv__ccda_ts_json(c, hv__ccda_child(et, "high"), 0);
        if (doc == NULL) doc = directive_document(c, o, &doc_url);
    }
    if (nobs == 0) {
        json_object_put(codes);
        return;
    }
    struct json_object *cs = json_object_new_object();
    struct json_object *ids = hv__ccda_identifiers(c, n);
    hv__ccda_set_if(cs, "identifier", ids);
    const char *sc = hv__ccda_status_code(n);
    /* ActStatus → ConsentState: a nullified entry was recorded in error, a cancelled or
     * aborted one is no longer in force; a completed (documented) directive is active. */
    hv_json_set_str(cs, "status", hv__ccda_eq(sc, "nullified")                        ? "entered-in-error"
                                  : hv__ccda_eq(sc, "cancelled") || hv__ccda_eq(sc, "aborted") ? "inactive"
                                                                             : "active");
    hv_json_set(cs, "scope", hv__ccda_cc1("http://terminology.hl7.org/CodeSystem/consentscope", "adr",
                                       "Advanced Care Directive"));
    struct json_object *cat = hv__ccda_concept(c, hv__ccda_child(organizer ? n : first, "code"));
    if (cat == NULL)
        cat = hv__ccda_cc1("http://loinc.org", "42348-3", "Advance healthcare directives");
    struct json_object *cats = json_object_new_array();
    json_object_array_add(cats, cat);
    hv_json_set(cs, "category", cats);
    hv_json_set(cs, "patient", hv__ccda_ref(c->patient_url));
    if (start != NULL) hv_json_set(cs, "dateTime", json_object_get(start));
    /* The grantor is the patient whose directive it is (the author only recorded it). */
    struct json_object *performers = json_object_new_array();
    json_object_array_add(performers, hv__ccda_ref(c->patient_url));
    hv_json_set(cs, "performer", performers);
    if (doc != NULL) hv_json_set(cs, "sourceReference", hv__ccda_ref(doc));
    /* ppc-1: the directive document is the policy; without one, the rule is named. */
    if (doc_url != NULL) {
        struct json_object *pol = json_object_new_object(), *pols = json_object_new_array();
        hv_json_set_str(pol, "uri", doc_url);
        json_object_array_add(pols, pol);
        hv_json_set(cs, "policy", pols);
    } else {
        struct json_object *rule = json_object_new_object();
        hv_json_set_str(rule, "text", "advance directive");
        hv_json_set(cs, "policyRule", rule);
    }
    struct json_object *prov = json_object_new_object();
    if (start != NULL || end != NULL) {
        struct json_object *per = json_object_new_object();
        hv__ccda_set_if(per, "start", start);
        hv__ccda_set_if(per, "end", end);
        hv_json_set(prov, "period", per);
    }
    if (json_object_array_length(codes) > 0)
        hv_json_set(prov, "code", codes);
    else
        json_object_put(codes);
    if (json_object_object_length(prov) > 0)
        hv_json_set(cs, "provision", prov);
    else
        json_object_put(prov);
    const char *url = hv__ccda_add(c, "Consent", cs, NULL);
    hv__ccda_add_ref(refs, url);
    directive_author(c, hv__ccda_child(n, "author") != NULL ? n : first, url);
}

void hv__ccda_advance_directives(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs) {
    static const char *const t[] = {E("108"), E("48"), NULL};
    hv__ccda_walk(c, section, t, directive, refs, NULL);
}

/* ---- payers ------------------------------------------------------------------------- */

/* v3 RoleCode of the covered party (C-CDA R2.1 Coverage Role Type) → FHIR
 * subscriber-relationship (http://terminology.hl7.org/CodeSystem/subscriber-relationship). */
static const char *subscriber_relationship(const char *role) {
    static const char *const map[][2] = {
        {"SELF", "self"},     {"SPS", "spouse"},    {"HUSB", "spouse"},   {"WIFE", "spouse"},
        {"DOMPART", "common"}, {"CHILD", "child"},   {"NCHILD", "child"},  {"SON", "child"},
        {"DAU", "child"},     {"STPCHLD", "child"}, {"CHLDADOPT", "child"}, {"CHLDFOST", "child"},
        {"FTH", "parent"},    {"MTH", "parent"},    {"PRN", "parent"},    {"NPRN", "parent"},
        {"INJ", "injured"},
    };
    if (role == NULL) return NULL;
    for (size_t i = 0; i < HV_ARRAY_LEN(map); i++)
        if (strcmp(role, map[i][0]) == 0) return map[i][1];
    return "other";
}

/* The participant of a Policy Activity with the given typeCode (COV, HLD). */
static xmlNodePtr participant(xmlNodePtr act, const char *type) {
    for (xmlNodePtr p = hv__ccda_child(act, "participant"); p != NULL;
         p = hv__ccda_next(p, "participant"))
        if (hv__ccda_eq(hv__ccda_attr(p, "typeCode"), type)) return p;
    return NULL;
}

/* The payer: the performer with the Payer Performer template (.4.87) or the role PAYOR /
 * PAYER, as its organization. */
static const char *payer(hv__ccda_ctx_t *c, xmlNodePtr act) {
    for (xmlNodePtr pf = hv__ccda_child(act, "performer"); pf != NULL;
         pf = hv__ccda_next(pf, "performer")) {
        xmlNodePtr a = hv__ccda_child(pf, "assignedEntity");
        const char *role = hv__ccda_attr(hv__ccda_child(a, "code"), "code");
        if (a == NULL || !(hv__ccda_has_template(pf, E("87")) || hv__ccda_eq(role, "PAYOR") ||
                           hv__ccda_eq(role, "PAYER")))
            continue;
        const char *org = hv__ccda_organization(c, hv__ccda_child(a, "representedOrganization"));
        if (org != NULL) return org;
    }
    return NULL;
}

static void policy(hv__ccda_ctx_t *c, xmlNodePtr act, struct json_object *refs, void *ud) {
    (void)ud;
    const char *payor = payer(c, act);
    if (payor == NULL) {
        hv__ccda_issue(c, "warning", "incomplete", "Policy Activity",
                       "a policy activity names no payer organization (Coverage.payor is "
                       "required) and was not mapped");
        return;
    }
    struct json_object *cov = json_object_new_object();
    hv__ccda_set_if(cov, "identifier", hv__ccda_identifiers(c, act));
    const char *sc = hv__ccda_status_code(act);
    /* ActStatus → FinancialResourceStatusCodes. */
    hv_json_set_str(cov, "status", hv__ccda_eq(sc, "nullified")                        ? "entered-in-error"
                                   : hv__ccda_eq(sc, "cancelled") || hv__ccda_eq(sc, "aborted") ? "cancelled"
                                                                              : "active");
    hv__ccda_set_if(cov, "type", hv__ccda_concept(c, hv__ccda_child(act, "code")));
    xmlNodePtr holder = hv__ccda_child(participant(act, "HLD"), "participantRole");
    xmlNodePtr cp = participant(act, "COV");
    xmlNodePtr covered = hv__ccda_child(cp, "participantRole");
    /* The member / subscriber id: the policy holder's id extension, else the covered party's. */
    xmlNodePtr roles[2] = {holder, covered};
    for (size_t i = 0; i < 2; i++) {
        const char *ext = hv__ccda_attr(hv__ccda_child(roles[i], "id"), "extension");
        if (ext != NULL && ext[0] != '\0') {
            hv_json_set_str(cov, "subscriberId", ext);
            break;
        }
    }
    hv_json_set(cov, "beneficiary", hv__ccda_ref(c->patient_url));
    xmlNodePtr rc = hv__ccda_child(covered, "code");
    const char *role = hv__ccda_attr(rc, "code");
    const char *rel = subscriber_relationship(role);
    if (rel != NULL) {
        struct json_object *cc =
            hv__ccda_cc1("http://terminology.hl7.org/CodeSystem/subscriber-relationship", rel, NULL);
        struct json_object *sent = hv__ccda_coding(c, rc), *codings = NULL;
        if (sent != NULL && json_object_object_get_ex(cc, "coding", &codings))
            json_object_array_add(codings, sent);
        hv_json_set(cov, "relationship", cc);
        if (hv__ccda_eq(rel, "self")) hv_json_set(cov, "subscriber", hv__ccda_ref(c->patient_url));
    }
    hv__ccda_set_if(cov, "period", hv__ccda_period(c, hv__ccda_child(cp, "time")));
    struct json_object *payors = json_object_new_array();
    json_object_array_add(payors, hv__ccda_ref(payor));
    hv_json_set(cov, "payor", payors);
    hv__ccda_add_ref(refs, hv__ccda_add(c, "Coverage", cov, NULL));
}

void hv__ccda_payers(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs) {
    static const char *const t[] = {E("61"), NULL};
    hv__ccda_walk(c, section, t, policy, refs, NULL);
}
