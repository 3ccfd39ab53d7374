/*
 * sections.c — the C-CDA R2.1 body: each section → a Composition.section (title,
 * code, narrative kept as XHTML, references to the resources its entries became,
 * nested sections), and the dispatch of a section's entries by the section's
 * templateId (C-CDA R2.1 Volume 2, section templates 2.16.840.1.113883.10.20.22.2.*).
 *
 * A section whose template is not known keeps its narrative and is reported with a
 * warning issue (its entries are not mapped); a known section that C-CDA defines as
 * narrative only, or whose entries this mapping does not cover, gets at most an
 * information issue. A nonXMLBody (unstructured document) becomes a
 * DocumentReference whose attachment carries the embedded data or the reference.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "adapters/ccda/ccda_int.h"

#define T(x) "2.16.840.1.113883.10.20.22.2." x

typedef void (*entries_fn)(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);

/* Sections whose entries are mapped, by template root (the "entries required" and
 * "entries optional" variants share their mapping). */
static const struct {
    const char *oid;
    entries_fn fn;
} mapped[] = {
    {T("5"), hv__ccda_problems},        {T("5.1"), hv__ccda_problems},
    {T("58"), hv__ccda_health_concerns}, {T("6"), hv__ccda_allergies},
    {T("6.1"), hv__ccda_allergies},      {T("1"), hv__ccda_medications},
    {T("1.1"), hv__ccda_medications},    {T("11"), hv__ccda_medications},
    {T("11.1"), hv__ccda_medications},   {T("38"), hv__ccda_medications},
    {T("44"), hv__ccda_medications},     {T("3"), hv__ccda_results},
    {T("3.1"), hv__ccda_results},        {T("4"), hv__ccda_vital_signs},
    {T("4.1"), hv__ccda_vital_signs},    {T("2"), hv__ccda_immunizations},
    {T("2.1"), hv__ccda_immunizations},  {T("7"), hv__ccda_procedures},
    {T("7.1"), hv__ccda_procedures},     {T("22"), hv__ccda_encounters},
    {T("22.1"), hv__ccda_encounters},    {T("17"), hv__ccda_social_history},
    {T("10"), hv__ccda_plan_of_care},    {T("24"), hv__ccda_diagnoses},
    {T("43"), hv__ccda_diagnoses},       {T("34"), hv__ccda_diagnoses},
    {T("35"), hv__ccda_diagnoses},       {T("36"), hv__ccda_diagnoses},
    {T("37"), hv__ccda_diagnoses},       {T("28"), hv__ccda_diagnoses},
    {T("25"), hv__ccda_anesthesia},      {T("14"), hv__ccda_assessments},
    {T("56"), hv__ccda_assessments},     {T("15"), hv__ccda_family_history},
    {T("23"), hv__ccda_medical_equipment}, {T("57"), hv__ccda_nutrition},
    {T("21"), hv__ccda_advance_directives}, {T("21.1"), hv__ccda_advance_directives},
    {T("18"), hv__ccda_payers},
    /* Reason for Referral: its Patient Referral Acts (.4.140, moodCode INT) are requests. */
    {"1.3.6.1.4.1.19376.1.5.3.1.3.1", hv__ccda_plan_of_care},
};

/* Sections C-CDA R2.1 defines that are narrative only here (their entries, if any,
 * are not mapped: functional status, …). */
static const char *const narrative_only[] = {
    T("8"),  T("9"),   T("12"), T("13"), T("20"), T("26"), T("27"), T("29"), T("30"), T("31"),
    T("39"),  T("40"), T("41"), T("42"), T("45"), T("60"), T("64"),
    T("61"), T("65"),  T("500"),
    "2.16.840.1.113883.10.20.2.10",          /* Physical Exam */
    "2.16.840.1.113883.10.20.2.5",           /* General Status */
    "2.16.840.1.113883.10.20.21.2.3",        /* Interventions */
    "2.16.840.1.113883.10.20.6.1.1",         /* DICOM Object Catalog */
    "2.16.840.1.113883.10.20.6.1.2",         /* Findings (imaging) */
    "2.16.840.1.113883.10.20.7.12",          /* Operative Note Fluids */
    "2.16.840.1.113883.10.20.7.14",          /* Operative Note Surgical Procedure */
    "2.16.840.1.113883.10.20.18.2.12",       /* Surgery Description */
    "1.3.6.1.4.1.19376.1.5.3.1.1.13.2.1",    /* Chief Complaint */
    "1.3.6.1.4.1.19376.1.5.3.1.3.4",         /* History of Present Illness */
    "1.3.6.1.4.1.19376.1.5.3.1.3.18",        /* Review of Systems */
    "1.3.6.1.4.1.19376.1.5.3.1.3.5",         /* Hospital Course */
    "1.3.6.1.4.1.19376.1.5.3.1.1.21.2.9",    /* Subjective */
    "1.3.6.1.4.1.19376.1.5.3.1.1.16.2.1",    /* Objective */
    "1.3.6.1.4.1.19376.1.5.3.1.1.9.15",      /* Hospital Discharge Physical */
    "1.3.6.1.4.1.19376.1.5.3.1.1.9.15.1",
    "1.3.6.1.4.1.19376.1.5.3.1.3.33",        /* Discharge Diet */
};

static int is_narrative_only(xmlNodePtr section) {
    for (size_t i = 0; i < HV_ARRAY_LEN(narrative_only); i++)
        if (hv__ccda_has_template(section, narrative_only[i])) return 1;
    return 0;
}

int hv__ccda_section_entries(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs) {
    for (size_t i = 0; i < HV_ARRAY_LEN(mapped); i++) {
        if (hv__ccda_has_template(section, mapped[i].oid)) {
            mapped[i].fn(c, section, refs);
            return 0;
        }
    }
    return -1;
}

static void section(hv__ccda_ctx_t *c, xmlNodePtr sec, struct json_object *out, int depth,
                    const char *where) {
    struct json_object *s = json_object_new_object(), *refs = json_object_new_array();
    char *title = hv__ccda_text(c, hv__ccda_child(sec, "title"));
    struct json_object *code = hv__ccda_concept(c, hv__ccda_child(sec, "code"));
    const char *code_text = NULL;
    if (code != NULL) {
        struct json_object *codings = NULL;
        if (json_object_object_get_ex(code, "coding", &codings))
            code_text = hv_json_get_str(json_object_array_get_idx(codings, 0), "display");
    }
    if (title != NULL) hv_json_set_str(s, "title", title);
    if (code != NULL) hv_json_set(s, "code", code);

    const char *tmpl = hv__ccda_attr(hv__ccda_child(sec, "templateId"), "root");
    if (hv__ccda_section_entries(c, sec, refs) != 0) {
        int has_entries = hv__ccda_child(sec, "entry") != NULL;
        if (is_narrative_only(sec)) {
            if (has_entries)
                hv__ccda_issue(c, "information", "not-supported", where,
                               "the entries of section %s (%.64s) are not mapped; its narrative is "
                               "kept",
                               tmpl != NULL ? tmpl : "", title != NULL ? title : "untitled");
        } else {
            hv__ccda_issue(c, "warning", "not-supported", where,
                           "section template %s (%.64s) is not known; its narrative is kept and "
                           "its entries are not mapped",
                           tmpl != NULL ? tmpl : "(none)", title != NULL ? title : "untitled");
        }
    }
    /* FHIR R4 Composition cmp-1: a section has text, entries or sections; the narrative
     * falls back to the title so that it never is empty (txt-2). */
    const char *fallback = title != NULL ? title : code_text != NULL ? code_text : "No narrative";
    char *div = hv__ccda_narrative(c, hv__ccda_child(sec, "text"), fallback);
    if (div != NULL) {
        struct json_object *text = json_object_new_object();
        /* "additional": the narrative is the source's own, not generated from the entries. */
        hv_json_set_str(text, "status", "additional");
        hv_json_set_str(text, "div", div);
        hv_json_set(s, "text", text);
    }
    if (json_object_array_length(refs) > 0)
        hv_json_set(s, "entry", refs);
    else
        json_object_put(refs);
    struct json_object *subs = json_object_new_array();
    int i = 0;
    for (xmlNodePtr comp = hv__ccda_child(sec, "component"); comp != NULL;
         comp = hv__ccda_next(comp, "component"), i++) {
        xmlNodePtr sub = hv__ccda_child(comp, "section");
        if (sub == NULL) continue;
        if (depth + 1 >= HV_CCDA_MAX_SECTION_DEPTH) {
            hv__ccda_issue(c, "warning", "too-costly", where,
                           "sections nested deeper than %d levels are not mapped",
                           HV_CCDA_MAX_SECTION_DEPTH);
            break;
        }
        char *w = hv_arena_sprintf(c->arena, "%s/component[%d]/section", where, i + 1);
        section(c, sub, subs, depth + 1, w != NULL ? w : where);
    }
    if (json_object_array_length(subs) > 0)
        hv_json_set(s, "section", subs);
    else
        json_object_put(subs);
    json_object_array_add(out, s);
}

/* nonXMLBody (CDA R2 §4.3.2) → DocumentReference with the attachment. */
static void non_xml_body(hv__ccda_ctx_t *c, xmlNodePtr root, xmlNodePtr body,
                         struct json_object *comp) {
    xmlNodePtr text = hv__ccda_child(body, "text");
    struct json_object *att = json_object_new_object();
    const char *mt = hv__ccda_attr(text, "mediaType");
    hv_json_set_str(att, "contentType", mt != NULL && mt[0] != '\0' ? mt : "text/plain");
    const char *rep = hv__ccda_attr(text, "representation");
    xmlNodePtr ref = hv__ccda_child(text, "reference");
    const char *refv = hv__ccda_attr(ref, "value");
    if (refv != NULL && refv[0] != '\0' && strchr(refv, ' ') == NULL) {
        hv_json_set_str(att, "url", refv);
    } else if (text != NULL) {
        /* Base64 content is kept as it is (white space removed); text is encoded here. */
        hv_buf_t b;
        hv_buf_init(&b, HV_CCDA_MAX_BYTES * 2);
        if (rep != NULL && strcmp(rep, "B64") == 0) {
            /* RFC 4648 §4 alphabet; runs of valid characters are copied at once. */
            static const char b64[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
            for (xmlNodePtr k = text->children; k != NULL; k = k->next) {
                if (k->type != XML_TEXT_NODE || k->content == NULL) continue;
                const char *p = (const char *)k->content;
                while (*p) {
                    size_t run = strspn(p, b64);
                    if (run > 0) hv_buf_append(&b, p, run);
                    p += run;
                    p += strcspn(p, b64);
                }
            }
        } else {
            static const char tbl[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            char *plain = hv__ccda_text(c, text);
            size_t n = plain != NULL ? strlen(plain) : 0;
            for (size_t i = 0; i < n; i += 3) {
                unsigned v = (unsigned char)plain[i] << 16;
                if (i + 1 < n) v |= (unsigned char)plain[i + 1] << 8;
                if (i + 2 < n) v |= (unsigned char)plain[i + 2];
                hv_buf_putc(&b, tbl[(v >> 18) & 63]);
                hv_buf_putc(&b, tbl[(v >> 12) & 63]);
                hv_buf_putc(&b, i + 1 < n ? tbl[(v >> 6) & 63] : '=');
                hv_buf_putc(&b, i + 2 < n ? tbl[v & 63] : '=');
            }
        }
        if (b.len > 0) hv_json_set_str(att, "data", b.data);
        hv_buf_release(&b);
    }
    struct json_object *dr = json_object_new_object(), *contents = json_object_new_array();
    struct json_object *content = json_object_new_object();
    hv_json_set_str(dr, "status", "current");
    struct json_object *type = hv__ccda_concept(c, hv__ccda_child(root, "code"));
    if (type != NULL) hv_json_set(dr, "type", type);
    hv_json_set(dr, "subject", hv__ccda_ref(c->patient_url));
    const char *date = hv_json_get_str(comp, "date");
    /* DocumentReference.date is an instant: only a full date-time fits. */
    if (date != NULL && strlen(date) > 10) hv_json_set_str(dr, "date", date);
    hv_json_set(content, "attachment", att);
    json_object_array_add(contents, content);
    hv_json_set(dr, "content", contents);
    const char *url = hv__ccda_add(c, "DocumentReference", dr, NULL);
    if (url == NULL) return;
    struct json_object *s = json_object_new_object(), *entries = json_object_new_array();
    struct json_object *t = json_object_new_object();
    hv_json_set_str(s, "title", "Document");
    hv_json_set_str(t, "status", "generated");
    hv_json_set_str(t, "div", "<div xmlns=\"http://www.w3.org/1999/xhtml\">Unstructured document "
                              "(see the referenced DocumentReference)</div>");
    hv_json_set(s, "text", t);
    json_object_array_add(entries, hv__ccda_ref(url));
    hv_json_set(s, "entry", entries);
    struct json_object *secs = json_object_new_array();
    json_object_array_add(secs, s);
    hv_json_set(comp, "section", secs);
}

void hv__ccda_body(hv__ccda_ctx_t *c, xmlNodePtr root, struct json_object *comp) {
    xmlNodePtr body = hv__ccda_child(root, "component");
    xmlNodePtr sb = hv__ccda_child(body, "structuredBody");
    if (sb == NULL) {
        xmlNodePtr nx = hv__ccda_child(body, "nonXMLBody");
        if (nx != NULL)
            non_xml_body(c, root, nx, comp);
        else
            hv__ccda_issue(c, "warning", "incomplete", "ClinicalDocument/component",
                           "the document has no body");
        return;
    }
    struct json_object *secs = json_object_new_array();
    int i = 0;
    for (xmlNodePtr k = hv__ccda_child(sb, "component"); k != NULL;
         k = hv__ccda_next(k, "component"), i++) {
        xmlNodePtr sec = hv__ccda_child(k, "section");
        if (sec == NULL) continue;
        char *where = hv_arena_sprintf(c->arena,
                                       "ClinicalDocument/component/structuredBody/component[%d]/section",
                                       i + 1);
        section(c, sec, secs, 0, where != NULL ? where : "section");
    }
    if (json_object_array_length(secs) > 0)
        hv_json_set(comp, "section", secs);
    else
        json_object_put(secs);
}
