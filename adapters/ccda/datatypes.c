/*
 * datatypes.c — CDA R2 data types (HL7 V3 Data Types R1, as C-CDA R2.1 uses them)
 * to FHIR R4 data types, and the small XML helpers the other files walk with.
 *
 *   CDA        FHIR                       notes
 *   II         Identifier                 root+extension → system+value; root alone → URI value
 *   CD/CE/CV   CodeableConcept / Coding   codeSystem OID → system URI, translations kept
 *   TS         dateTime / date            precision kept; a time needs a zone (else date only)
 *   IVL_TS     Period                     low → start, high → end
 *   PQ         Quantity                   unit → UCUM code
 *   PN         HumanName                  use from @use (L → official, P → usual …)
 *   AD         Address                    streetAddressLine, city, state, postalCode, country
 *   TEL        ContactPoint               tel:/mailto:/fax:/http: schemes
 *   StrucDoc.Text  Narrative div          CDA R2 §4.3.5 elements → XHTML (FHIR narrative.html)
 */
#include "config.h"

#include <ctype.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "adapters/ccda/ccda_int.h"

/* ---- XML navigation ----------------------------------------------------------------- */

static int in_ns(xmlNodePtr n, const char *ns) {
    return n->ns != NULL && n->ns->href != NULL && strcmp((const char *)n->ns->href, ns) == 0;
}

int hv__ccda_is(xmlNodePtr n, const char *name) {
    return n != NULL && n->type == XML_ELEMENT_NODE && in_ns(n, HV__CCDA_NS) &&
           strcmp((const char *)n->name, name) == 0;
}

xmlNodePtr hv__ccda_child(xmlNodePtr n, const char *name) {
    if (n == NULL) return NULL;
    for (xmlNodePtr k = n->children; k != NULL; k = k->next)
        if (hv__ccda_is(k, name)) return k;
    return NULL;
}

xmlNodePtr hv__ccda_next(xmlNodePtr prev, const char *name) {
    if (prev == NULL) return NULL;
    for (xmlNodePtr k = prev->next; k != NULL; k = k->next)
        if (hv__ccda_is(k, name)) return k;
    return NULL;
}

xmlNodePtr hv__ccda_child_ns(xmlNodePtr n, const char *ns, const char *name) {
    if (n == NULL) return NULL;
    for (xmlNodePtr k = n->children; k != NULL; k = k->next)
        if (k->type == XML_ELEMENT_NODE && strcmp((const char *)k->name, name) == 0 &&
            (ns == NULL || in_ns(k, ns)))
            return k;
    return NULL;
}

const char *hv__ccda_attr(xmlNodePtr n, const char *name) {
    if (n == NULL || n->type != XML_ELEMENT_NODE) return NULL;
    for (xmlAttrPtr a = n->properties; a != NULL; a = a->next) {
        if (a->ns != NULL || strcmp((const char *)a->name, name) != 0) continue;
        if (a->children == NULL) return "";
        /* An attribute value is one text node unless it held entity references,
         * which this reader never substitutes (no XML_PARSE_NOENT). */
        if (a->children->type == XML_TEXT_NODE && a->children->content != NULL)
            return (const char *)a->children->content;
        return "";
    }
    return NULL;
}

const char *hv__ccda_xsi_type(xmlNodePtr n) {
    if (n == NULL || n->type != XML_ELEMENT_NODE) return NULL;
    for (xmlAttrPtr a = n->properties; a != NULL; a = a->next) {
        if (a->ns == NULL || a->ns->href == NULL ||
            strcmp((const char *)a->ns->href, HV__CCDA_XSI_NS) != 0 ||
            strcmp((const char *)a->name, "type") != 0)
            continue;
        if (a->children == NULL || a->children->content == NULL) return NULL;
        const char *v = (const char *)a->children->content;
        const char *colon = strchr(v, ':');
        return colon != NULL ? colon + 1 : v;
    }
    return NULL;
}

int hv__ccda_has_template(xmlNodePtr n, const char *oid) {
    for (xmlNodePtr t = hv__ccda_child(n, "templateId"); t != NULL; t = hv__ccda_next(t, "templateId")) {
        const char *root = hv__ccda_attr(t, "root");
        if (root != NULL && strcmp(root, oid) == 0) return 1;
    }
    return 0;
}

int hv__ccda_is_null(xmlNodePtr n) {
    return n == NULL || hv__ccda_attr(n, "nullFlavor") != NULL;
}

static void collect_text(xmlNodePtr n, hv_buf_t *b) {
    for (xmlNodePtr k = n->children; k != NULL; k = k->next) {
        if (k->type == XML_TEXT_NODE || k->type == XML_CDATA_SECTION_NODE) {
            if (k->content != NULL) hv_buf_puts(b, (const char *)k->content);
        } else if (k->type == XML_ELEMENT_NODE) {
            collect_text(k, b);
        }
    }
}

char *hv__ccda_text(hv__ccda_ctx_t *c, xmlNodePtr n) {
    if (n == NULL) return NULL;
    hv_buf_t b;
    char *r = NULL;
    hv_buf_init(&b, 1 << 20);
    collect_text(n, &b);
    if (b.data != NULL) {
        /* Collapse runs of white space: CDA text is often pretty-printed. */
        size_t o = 0;
        int space = 1;
        for (size_t i = 0; i < b.len; i++) {
            unsigned char ch = (unsigned char)b.data[i];
            if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
                if (!space) b.data[o++] = ' ';
                space = 1;
            } else {
                b.data[o++] = (char)ch;
                space = 0;
            }
        }
        while (o > 0 && b.data[o - 1] == ' ') o--;
        if (o > 0) r = hv_arena_strndup(c->arena, b.data, o);
    }
    hv_buf_release(&b);
    return r;
}

/* ---- code systems --------------------------------------------------------------------- */

/* FHIR R4 terminologies-systems.html and the US Core / C-CDA on FHIR identifier systems. */
static const struct {
    const char *oid, *uri;
} systems[] = {
    {"2.16.840.1.113883.6.1", "http://loinc.org"},
    {"2.16.840.1.113883.6.96", "http://snomed.info/sct"},
    {"2.16.840.1.113883.6.88", "http://www.nlm.nih.gov/research/umls/rxnorm"},
    {"2.16.840.1.113883.12.292", "http://hl7.org/fhir/sid/cvx"},
    {"2.16.840.1.113883.6.59", "http://hl7.org/fhir/sid/cvx"}, /* CVX's older OID, still common */
    {"2.16.840.1.113883.12.227", "http://hl7.org/fhir/sid/mvx"},
    {"2.16.840.1.113883.6.90", "http://hl7.org/fhir/sid/icd-10-cm"},
    {"2.16.840.1.113883.6.3", "http://hl7.org/fhir/sid/icd-10"},
    {"2.16.840.1.113883.6.103", "http://hl7.org/fhir/sid/icd-9-cm"},
    {"2.16.840.1.113883.6.104", "http://hl7.org/fhir/sid/icd-9-cm"},
    {"2.16.840.1.113883.6.4", "http://www.cms.gov/Medicare/Coding/ICD10"},
    {"2.16.840.1.113883.6.69", "http://hl7.org/fhir/sid/ndc"},
    {"2.16.840.1.113883.6.12", "http://www.ama-assn.org/go/cpt"},
    {"2.16.840.1.113883.6.285", "urn:oid:2.16.840.1.113883.6.285"},
    {"2.16.840.1.113883.6.8", "http://unitsofmeasure.org"},
    {"2.16.840.1.113883.6.101", "http://nucc.org/provider-taxonomy"},
    {"2.16.840.1.113883.4.9", "http://fdasis.nlm.nih.gov"},
    {"2.16.840.1.113883.3.26.1.1", "http://ncimeta.nci.nih.gov"},
    {"2.16.840.1.113883.6.238", "urn:oid:2.16.840.1.113883.6.238"},
    {"2.16.840.1.113883.5.1", "http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender"},
    {"2.16.840.1.113883.5.2", "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"},
    {"2.16.840.1.113883.5.4", "http://terminology.hl7.org/CodeSystem/v3-ActCode"},
    {"2.16.840.1.113883.5.6", "http://terminology.hl7.org/CodeSystem/v3-ActClass"},
    {"2.16.840.1.113883.5.14", "http://terminology.hl7.org/CodeSystem/v3-ActStatus"},
    {"2.16.840.1.113883.5.25", "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"},
    {"2.16.840.1.113883.5.83", "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"},
    {"2.16.840.1.113883.5.111", "http://terminology.hl7.org/CodeSystem/v3-RoleCode"},
    {"2.16.840.1.113883.5.112", "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"},
    {"2.16.840.1.113883.5.1008", "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"},
    {"2.16.840.1.113883.5.1063", "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"},
    {"2.16.840.1.113883.5.1076", "http://terminology.hl7.org/CodeSystem/v3-ReligiousAffiliation"},
    {"2.16.840.1.113883.5.88", "http://terminology.hl7.org/CodeSystem/v3-ParticipationFunction"},
    {"2.16.840.1.113883.5.90", "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"},
    {"2.16.840.1.113883.5.139", "http://terminology.hl7.org/CodeSystem/v3-TimingEvent"},
    {"2.16.840.1.113883.1.11.19563", "http://terminology.hl7.org/CodeSystem/v3-RoleCode"},
    {"2.16.840.1.113883.4.1", "http://hl7.org/fhir/sid/us-ssn"},
    {"2.16.840.1.113883.4.6", "http://hl7.org/fhir/sid/us-npi"},
};

const char *hv__ccda_system(hv__ccda_ctx_t *c, const char *oid) {
    if (oid == NULL || oid[0] == '\0') return NULL;
    for (size_t i = 0; i < HV_ARRAY_LEN(systems); i++)
        if (strcmp(systems[i].oid, oid) == 0) return systems[i].uri;
    /* HL7 v2 tables registered under 2.16.840.1.113883.12.<n> (FHIR terminology v2-0nnn). */
    const char *v2 = "2.16.840.1.113883.12.";
    size_t v2n = strlen(v2);
    if (strncmp(oid, v2, v2n) == 0) {
        const char *d = oid + v2n;
        size_t n = strspn(d, "0123456789");
        if (n > 0 && n <= 4 && d[n] == '\0')
            return hv_arena_sprintf(c->arena, "http://terminology.hl7.org/CodeSystem/v2-%04d",
                                    atoi(d));
    }
    /* A UUID root is a URI of its own; anything else is an OID. */
    if (strlen(oid) == 36 && oid[8] == '-' && oid[13] == '-') {
        char *s = hv_arena_sprintf(c->arena, "urn:uuid:%s", oid);
        for (char *p = s; p != NULL && *p; p++) *p = (char)tolower((unsigned char)*p);
        return s;
    }
    return hv_arena_sprintf(c->arena, "urn:oid:%s", oid);
}

/* FHIR R4 datatypes.html#uri and #oid: a value FHIR accepts as a system. */
static int valid_oid(const char *s) {
    if (s == NULL || !isdigit((unsigned char)s[0])) return 0;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p) && *p != '.') return 0;
    return s[strlen(s) - 1] != '.' && strstr(s, "..") == NULL;
}

static int valid_uuid(const char *s) {
    if (s == NULL || strlen(s) != 36) return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return 0;
        } else if (!isxdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

/* ---- strings that FHIR accepts ---------------------------------------------------------- */

/* FHIR string values must not be empty and must not be only white space (ele-1 and the
 * string regex); code values must have no leading/trailing/double white space. */
static struct json_object *str_or_null(const char *s) {
    if (s == NULL) return NULL;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    if (n == 0) return NULL;
    return json_object_new_string_len(s, (int)n);
}

/* A code: trimmed, inner white space runs collapsed to one space (FHIR code regex). */
static struct json_object *code_or_null(const char *s) {
    char buf[256];
    size_t o = 0;
    int space = 0;
    if (s == NULL) return NULL;
    for (; *s && o < sizeof(buf) - 1; s++) {
        if (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') {
            space = o > 0;
            continue;
        }
        if (space && o < sizeof(buf) - 2) buf[o++] = ' ';
        space = 0;
        buf[o++] = *s;
    }
    if (o == 0) return NULL;
    return json_object_new_string_len(buf, (int)o);
}

/* ---- TS → dateTime ---------------------------------------------------------------------- */

static int digits(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i])) return 0;
    return 1;
}

static int num(const char *s, size_t n) {
    int v = 0;
    for (size_t i = 0; i < n; i++) v = v * 10 + (s[i] - '0');
    return v;
}

int hv__ccda_ts(const char *ts, int date_only, char *out, size_t outlen) {
    if (ts == NULL || outlen < 40) return HV_EINVAL;
    while (*ts == ' ') ts++;
    size_t n = strcspn(ts, "+- ");
    const char *zone = ts + n;
    size_t fraction_at = 0;
    /* Digits before the zone, with an optional fraction of seconds (YYYYMMDDHHMMSS.UUUU). */
    const char *dot = memchr(ts, '.', n);
    size_t dn = dot != NULL ? (size_t)(dot - ts) : n;
    if (!digits(ts, dn) || (dn != 4 && dn != 6 && dn != 8 && dn != 10 && dn != 12 && dn != 14))
        return HV_EINVAL;
    if (dot != NULL) {
        if (dn != 14 || n - dn < 2 || !digits(dot + 1, n - dn - 1)) return HV_EINVAL;
        fraction_at = dn;
    }
    int y = num(ts, 4), mo = dn >= 6 ? num(ts + 4, 2) : 1, d = dn >= 8 ? num(ts + 6, 2) : 1;
    int h = dn >= 10 ? num(ts + 8, 2) : 0, mi = dn >= 12 ? num(ts + 10, 2) : 0;
    int s = dn >= 14 ? num(ts + 12, 2) : 0;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || s > 60)
        return HV_EINVAL;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return HV_EINVAL;
    int has_zone = 0, zh = 0, zm = 0;
    char zsign = '+';
    if (*zone == '+' || *zone == '-') {
        if (strlen(zone) < 5 || !digits(zone + 1, 4)) return HV_EINVAL;
        zsign = *zone;
        zh = num(zone + 1, 2);
        zm = num(zone + 3, 2);
        if (zh > 14 || zm > 59) return HV_EINVAL;
        has_zone = 1;
    }
    if (dn == 4) {
        snprintf(out, outlen, "%04d", y);
    } else if (dn == 6) {
        snprintf(out, outlen, "%04d-%02d", y, mo);
    } else if (dn == 8 || date_only || !has_zone) {
        snprintf(out, outlen, "%04d-%02d-%02d", y, mo, d);
    } else {
        /* FHIR R4 datatypes.html#dateTime: hours and minutes need seconds and a zone. */
        char frac[16] = "";
        if (fraction_at) {
            size_t fl = n - dn - 1;
            if (fl > 9) fl = 9;
            frac[0] = '.';
            memcpy(frac + 1, dot + 1, fl);
            frac[fl + 1] = '\0';
        }
        if (s == 60) s = 59;
        snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d%s%c%02d:%02d", y, mo, d, h, mi, s,
                 frac, zsign, zh, zm);
    }
    return HV_OK;
}

struct json_object *hv__ccda_ts_json(hv__ccda_ctx_t *c, xmlNodePtr ts, int date_only) {
    char buf[64];
    const char *v = hv__ccda_attr(ts, "value");
    if (v == NULL || hv__ccda_is_null(ts)) return NULL;
    if (hv__ccda_ts(v, date_only, buf, sizeof(buf)) != HV_OK) {
        hv__ccda_issue(c, "warning", "value", (const char *)ts->name,
                       "a time stamp is not a valid HL7 TS and was left out");
        return NULL;
    }
    return json_object_new_string(buf);
}

struct json_object *hv__ccda_period(hv__ccda_ctx_t *c, xmlNodePtr ivl) {
    struct json_object *p = json_object_new_object(), *v;
    v = hv__ccda_ts_json(c, hv__ccda_child(ivl, "low"), 0);
    if (v != NULL) hv_json_set(p, "start", v);
    v = hv__ccda_ts_json(c, hv__ccda_child(ivl, "high"), 0);
    if (v != NULL) hv_json_set(p, "end", v);
    if (json_object_object_length(p) == 0) {
        json_object_put(p);
        return NULL;
    }
    /* per-1: start <= end; a reversed interval keeps only its start. */
    const char *st = hv_json_get_str(p, "start"), *en = hv_json_get_str(p, "end");
    if (st != NULL && en != NULL && strlen(st) == strlen(en) && strcmp(st, en) > 0)
        json_object_object_del(p, "end");
    return p;
}

void hv__ccda_set_effective(hv__ccda_ctx_t *c, struct json_object *obj, const char *prefix,
                            xmlNodePtr et) {
    char key[64];
    if (et == NULL) return;
    if (hv__ccda_attr(et, "value") != NULL) {
        struct json_object *v = hv__ccda_ts_json(c, et, 0);
        if (v != NULL) {
            snprintf(key, sizeof(key), "%sDateTime", prefix);
            hv_json_set(obj, key, v);
        }
        return;
    }
    struct json_object *p = hv__ccda_period(c, et);
    if (p != NULL) {
        snprintf(key, sizeof(key), "%sPeriod", prefix);
        hv_json_set(obj, key, p);
    }
}

/* ---- codes ---------------------------------------------------------------------------- */

struct json_object *hv__ccda_coding(hv__ccda_ctx_t *c, xmlNodePtr cd) {
    if (cd == NULL || hv__ccda_attr(cd, "nullFlavor") != NULL) return NULL;
    struct json_object *code = code_or_null(hv__ccda_attr(cd, "code"));
    if (code == NULL) return NULL;
    struct json_object *cg = json_object_new_object(), *v;
    const char *sys = hv__ccda_system(c, hv__ccda_attr(cd, "codeSystem"));
    if (sys != NULL) hv_json_set_str(cg, "system", sys);
    hv_json_set(cg, "code", code);
    v = str_or_null(hv__ccda_attr(cd, "displayName"));
    if (v != NULL) hv_json_set(cg, "display", v);
    return cg;
}

struct json_object *hv__ccda_concept(hv__ccda_ctx_t *c, xmlNodePtr cd) {
    if (cd == NULL) return NULL;
    struct json_object *cc = json_object_new_object(), *codings = json_object_new_array(), *v;
    v = hv__ccda_coding(c, cd);
    if (v != NULL) json_object_array_add(codings, v);
    for (xmlNodePtr t = hv__ccda_child(cd, "translation"); t != NULL;
         t = hv__ccda_next(t, "translation")) {
        v = hv__ccda_coding(c, t);
        if (v != NULL) json_object_array_add(codings, v);
    }
    if (json_object_array_length(codings) > 0)
        hv_json_set(cc, "coding", codings);
    else
        json_object_put(codings);
    char *text = hv__ccda_text(c, hv__ccda_child(cd, "originalText"));
    /* originalText often holds only a <reference> to the narrative; its text is empty then. */
    if (text != NULL) hv_json_set_str(cc, "text", text);
    if (json_object_object_length(cc) == 0) {
        json_object_put(cc);
        return NULL;
    }
    return cc;
}

/* ---- identifiers, names, addresses, telecoms --------------------------------------------- */

struct json_object *hv__ccda_identifier(hv__ccda_ctx_t *c, xmlNodePtr ii) {
    if (ii == NULL || hv__ccda_attr(ii, "nullFlavor") != NULL) return NULL;
    const char *root = hv__ccda_attr(ii, "root"), *ext = hv__ccda_attr(ii, "extension");
    struct json_object *id = json_object_new_object(), *v;
    v = str_or_null(ext);
    if (v != NULL) {
        if (root != NULL && (valid_oid(root) || valid_uuid(root)))
            hv_json_set_str(id, "system", hv__ccda_system(c, root));
        hv_json_set(id, "value", v);
    } else if (root != NULL && (valid_oid(root) || valid_uuid(root))) {
        /* An id with a root alone is itself the identifier (V3 II semantics). */
        hv_json_set_str(id, "system", "urn:ietf:rfc:3986");
        const char *sys = hv__ccda_system(c, root);
        if (strncmp(sys, "urn:", 4) != 0) sys = hv_arena_sprintf(c->arena, "urn:oid:%s", root);
        hv_json_set_str(id, "value", sys);
    } else if ((v = str_or_null(root)) != NULL) {
        /* A root that is neither an OID nor a UUID (a typo such as "…-957fd49d2ceg") names no
         * namespace: the value is kept as sent, without a system (so it never serves as a
         * conditional-update identity). */
        hv_json_set(id, "value", v);
    } else {
        json_object_put(id);
        return NULL;
    }
    return id;
}

struct json_object *hv__ccda_all(hv__ccda_ctx_t *c, xmlNodePtr n, const char *name,
                                 struct json_object *(*fn)(hv__ccda_ctx_t *, xmlNodePtr)) {
    struct json_object *a = json_object_new_array();
    for (xmlNodePtr k = hv__ccda_child(n, name); k != NULL; k = hv__ccda_next(k, name)) {
        struct json_object *v = fn(c, k);
        if (v != NULL) json_object_array_add(a, v);
    }
    if (json_object_array_length(a) == 0) {
        json_object_put(a);
        return NULL;
    }
    return a;
}

struct json_object *hv__ccda_identifiers(hv__ccda_ctx_t *c, xmlNodePtr n) {
    return hv__ccda_all(c, n, "id", hv__ccda_identifier);
}

/* CDA EntityNameUse / PostalAddressUse / TelecommunicationAddressUse → FHIR use codes. */
static const char *name_use(const char *u) {
    if (u == NULL) return NULL;
    if (strstr(u, "L") == u) return "official";
    if (strcmp(u, "P") == 0 || strcmp(u, "C") == 0) return "usual";
    if (strcmp(u, "A") == 0 || strcmp(u, "I") == 0) return "nickname";
    if (strcmp(u, "ASGN") == 0) return "official";
    return NULL;
}

static void add_parts(hv__ccda_ctx_t *c, xmlNodePtr pn, const char *part, struct json_object *obj,
                      const char *key) {
    struct json_object *a = NULL;
    for (xmlNodePtr k = hv__ccda_child(pn, part); k != NULL; k = hv__ccda_next(k, part)) {
        char *t = hv__ccda_text(c, k);
        if (t == NULL) continue;
        if (a == NULL) a = json_object_new_array();
        json_object_array_add(a, json_object_new_string(t));
    }
    if (a != NULL) hv_json_set(obj, key, a);
}

struct json_object *hv__ccda_name(hv__ccda_ctx_t *c, xmlNodePtr pn) {
    if (pn == NULL || hv__ccda_attr(pn, "nullFlavor") != NULL) return NULL;
    struct json_object *hn = json_object_new_object();
    const char *use = name_use(hv__ccda_attr(pn, "use"));
    if (use != NULL) hv_json_set_str(hn, "use", use);
    char *family = hv__ccda_text(c, hv__ccda_child(pn, "family"));
    if (family != NULL) hv_json_set_str(hn, "family", family);
    add_parts(c, pn, "given", hn, "given");
    add_parts(c, pn, "prefix", hn, "prefix");
    add_parts(c, pn, "suffix", hn, "suffix");
    if (family == NULL && hv__ccda_child(pn, "given") == NULL) {
        /* An unstructured name ("Dr. Henry Seven" as text). */
        char *t = hv__ccda_text(c, pn);
        if (t != NULL) hv_json_set_str(hn, "text", t);
    }
    struct json_object *v = hv__ccda_period(c, hv__ccda_child(pn, "validTime"));
    if (v != NULL) hv_json_set(hn, "period", v);
    if (json_object_object_length(hn) == 0 ||
        (json_object_object_length(hn) == 1 && use != NULL)) {
        json_object_put(hn);
        return NULL;
    }
    return hn;
}

struct json_object *hv__ccda_address(hv__ccda_ctx_t *c, xmlNodePtr ad) {
    if (ad == NULL || hv__ccda_attr(ad, "nullFlavor") != NULL) return NULL;
    struct json_object *a = json_object_new_object();
    const char *u = hv__ccda_attr(ad, "use");
    if (u != NULL) {
        if (strcmp(u, "H") == 0 || strcmp(u, "HP") == 0 || strcmp(u, "HV") == 0)
            hv_json_set_str(a, "use", "home");
        else if (strcmp(u, "WP") == 0 || strcmp(u, "DIR") == 0 || strcmp(u, "PUB") == 0)
            hv_json_set_str(a, "use", "work");
        else if (strcmp(u, "TMP") == 0)
            hv_json_set_str(a, "use", "temp");
        else if (strcmp(u, "OLD") == 0 || strcmp(u, "BAD") == 0)
            hv_json_set_str(a, "use", "old");
    }
    add_parts(c, ad, "streetAddressLine", a, "line");
    static const char *const parts[][2] = {{"city", "city"},
                                           {"county", "district"},
                                           {"state", "state"},
                                           {"postalCode", "postalCode"},
                                           {"country", "country"}};
    for (size_t i = 0; i < HV_ARRAY_LEN(parts); i++) {
        char *t = hv__ccda_text(c, hv__ccda_child(ad, parts[i][0]));
        if (t != NULL) hv_json_set_str(a, parts[i][1], t);
    }
    struct json_object *p = hv__ccda_period(c, hv__ccda_child(ad, "useablePeriod"));
    if (p != NULL) hv_json_set(a, "period", p);
    if (json_object_object_length(a) == 0 ||
        (json_object_object_length(a) == 1 && json_object_object_get_ex(a, "use", NULL))) {
        char *t = hv__ccda_text(c, ad);
        if (t != NULL) {
            hv_json_set_str(a, "text", t);
        } else {
            json_object_put(a);
            return NULL;
        }
    }
    return a;
}

struct json_object *hv__ccda_telecom(hv__ccda_ctx_t *c, xmlNodePtr tel) {
    (void)c;
    if (tel == NULL || hv__ccda_attr(tel, "nullFlavor") != NULL) return NULL;
    const char *v = hv__ccda_attr(tel, "value");
    if (v == NULL) return NULL;
    while (*v == ' ') v++;
    const char *system = "other", *value = v;
    static const struct {
        const char *scheme, *system;
    } schemes[] = {{"tel:", "phone"}, {"mailto:", "email"}, {"fax:", "fax"},
                   {"http:", "url"},  {"https:", "url"},    {"sms:", "sms"}};
    for (size_t i = 0; i < HV_ARRAY_LEN(schemes); i++) {
        size_t n = strlen(schemes[i].scheme);
        if (strncasecmp(v, schemes[i].scheme, n) == 0) {
            system = schemes[i].system;
            value = strcmp(schemes[i].system, "url") == 0 ? v : v + n;
            break;
        }
    }
    struct json_object *val = str_or_null(value);
    if (val == NULL) return NULL;
    struct json_object *cp = json_object_new_object();
    hv_json_set_str(cp, "system", system);
    hv_json_set(cp, "value", val);
    const char *u = hv__ccda_attr(tel, "use");
    if (u != NULL) {
        if (strcmp(u, "HP") == 0 || strcmp(u, "H") == 0 || strcmp(u, "HV") == 0)
            hv_json_set_str(cp, "use", "home");
        else if (strcmp(u, "WP") == 0 || strcmp(u, "DIR") == 0 || strcmp(u, "PUB") == 0)
            hv_json_set_str(cp, "use", "work");
        else if (strcmp(u, "MC") == 0 || strcmp(u, "PG") == 0)
            hv_json_set_str(cp, "use", "mobile");
        else if (strcmp(u, "TMP") == 0)
            hv_json_set_str(cp, "use", "temp");
        else if (strcmp(u, "BAD") == 0)
            hv_json_set_str(cp, "use", "old");
    }
    return cp;
}

/* ---- quantities and values ---------------------------------------------------------------- */

struct json_object *hv__ccda_decimal(const char *s) {
    char buf[64];
    size_t o = 0;
    if (s == NULL) return NULL;
    while (*s == ' ') s++;
    if (*s == '+') s++;
    if (*s == '-') buf[o++] = *s++;
    size_t ip = strspn(s, "0123456789");
    const char *frac = s + ip;
    size_t fp = 0;
    if (*frac == '.') fp = strspn(frac + 1, "0123456789");
    const char *rest = frac + (*frac == '.' ? 1 + fp : 0);
    while (*rest == ' ') rest++;
    if ((ip == 0 && fp == 0) || *rest != '\0' || ip + fp > 40) return NULL;
    /* FHIR decimal: -?(0|[1-9][0-9]*)(\.[0-9]+)? — no leading zeros, no bare point. */
    while (ip > 1 && *s == '0') s++, ip--;
    if (ip == 0)
        buf[o++] = '0';
    else
        memcpy(buf + o, s, ip), o += ip;
    if (fp > 0) {
        buf[o++] = '.';
        memcpy(buf + o, frac + 1, fp);
        o += fp;
    }
    buf[o] = '\0';
    if (strcmp(buf, "-0") == 0) return json_object_new_double_s(0, "0");
    return json_object_new_double_s(strtod(buf, NULL), buf);
}

struct json_object *hv__ccda_quantity(hv__ccda_ctx_t *c, xmlNodePtr pq) {
    (void)c;
    if (pq == NULL || hv__ccda_attr(pq, "nullFlavor") != NULL) return NULL;
    struct json_object *v = hv__ccda_decimal(hv__ccda_attr(pq, "value"));
    if (v == NULL) return NULL;
    struct json_object *q = json_object_new_object();
    hv_json_set(q, "value", v);
    const char *unit = hv__ccda_attr(pq, "unit");
    struct json_object *u = code_or_null(unit);
    if (u != NULL && strchr(json_object_get_string(u), ' ') == NULL) {
        hv_json_set_str(q, "unit", json_object_get_string(u));
        hv_json_set_str(q, "system", "http://unitsofmeasure.org");
        hv_json_set(q, "code", u);
    } else if (u != NULL) {
        hv_json_set(q, "unit", u);
    }
    return q;
}

void hv__ccda_set_value(hv__ccda_ctx_t *c, struct json_object *obj, xmlNodePtr value) {
    if (value == NULL) return;
    const char *t = hv__ccda_xsi_type(value);
    struct json_object *v = NULL;
    const char *key = NULL;
    if (t == NULL) t = hv__ccda_attr(value, "code") != NULL ? "CD" : "ST";
    if (strcmp(t, "PQ") == 0) {
        v = hv__ccda_quantity(c, value), key = "valueQuantity";
    } else if (strcmp(t, "CD") == 0 || strcmp(t, "CE") == 0 || strcmp(t, "CV") == 0 ||
               strcmp(t, "CO") == 0 || strcmp(t, "CS") == 0) {
        v = hv__ccda_concept(c, value), key = "valueCodeableConcept";
    } else if (strcmp(t, "ST") == 0 || strcmp(t, "ED") == 0) {
        char *s = hv__ccda_text(c, value);
        v = s != NULL ? json_object_new_string(s) : NULL, key = "valueString";
    } else if (strcmp(t, "INT") == 0) {
        const char *s = hv__ccda_attr(value, "value");
        char *end = NULL;
        long n = s != NULL ? strtol(s, &end, 10) : 0;
        if (s != NULL && end != s && *end == '\0' && n >= INT32_MIN && n <= INT32_MAX)
            v = json_object_new_int((int32_t)n), key = "valueInteger";
    } else if (strcmp(t, "REAL") == 0 || strcmp(t, "MO") == 0) {
        struct json_object *d = hv__ccda_decimal(hv__ccda_attr(value, "value"));
        if (d != NULL) {
            v = json_object_new_object(), key = "valueQuantity";
            hv_json_set(v, "value", d);
        }
    } else if (strcmp(t, "BL") == 0) {
        const char *s = hv__ccda_attr(value, "value");
        if (s != NULL && (strcmp(s, "true") == 0 || strcmp(s, "false") == 0))
            v = json_object_new_boolean(s[0] == 't'), key = "valueBoolean";
    } else if (strcmp(t, "TS") == 0) {
        v = hv__ccda_ts_json(c, value, 0), key = "valueDateTime";
    } else if (strcmp(t, "IVL_PQ") == 0) {
        struct json_object *lo = hv__ccda_quantity(c, hv__ccda_child(value, "low"));
        struct json_object *hi = hv__ccda_quantity(c, hv__ccda_child(value, "high"));
        if (lo != NULL || hi != NULL) {
            v = json_object_new_object(), key = "valueRange";
            if (lo != NULL) hv_json_set(v, "low", lo);
            if (hi != NULL) hv_json_set(v, "high", hi);
        }
    } else if (strcmp(t, "IVL_TS") == 0) {
        v = hv__ccda_period(c, value), key = "valuePeriod";
    } else {
        hv__ccda_issue(c, "information", "not-supported", "value",
                       "an observation value of type %.32s is not mapped", t);
    }
    if (v != NULL) hv_json_set(obj, key, v);
}

/* ---- narrative ------------------------------------------------------------------------- */

/* CDA R2 §4.3.5 narrative block elements → XHTML elements FHIR allows (narrative.html, txt-1). */
static const char *xhtml_name(const char *cda) {
    static const char *const same[] = {"table", "thead", "tbody", "tfoot", "tr", "th", "td",
                                       "caption", "br", "sub", "sup", "col", "colgroup"};
    for (size_t i = 0; i < HV_ARRAY_LEN(same); i++)
        if (strcmp(cda, same[i]) == 0) return same[i];
    if (strcmp(cda, "paragraph") == 0) return "p";
    if (strcmp(cda, "item") == 0) return "li";
    if (strcmp(cda, "linkHtml") == 0) return "a";
    if (strcmp(cda, "content") == 0 || strcmp(cda, "footnote") == 0 ||
        strcmp(cda, "footnoteRef") == 0)
        return "span";
    return NULL;
}

static void xml_escape(hv_buf_t *b, const char *s, int attr) {
    /* Copies runs of ordinary characters at once; escapes the XML specials. */
    const char *specials = attr ? "<>&\"" : "<>&";
    while (*s) {
        size_t run = strcspn(s, specials);
        if (run > 0) hv_buf_append(b, s, run);
        s += run;
        switch (*s) {
        case '<': hv_buf_puts(b, "&lt;"); break;
        case '>': hv_buf_puts(b, "&gt;"); break;
        case '&': hv_buf_puts(b, "&amp;"); break;
        case '"': hv_buf_puts(b, "&quot;"); break;
        default: return;
        }
        s++;
    }
}

static int narrative_walk(xmlNodePtr n, hv_buf_t *b, int depth, int *chars) {
    if (depth > 64) return 0;
    for (xmlNodePtr k = n->children; k != NULL; k = k->next) {
        if (k->type == XML_TEXT_NODE || k->type == XML_CDATA_SECTION_NODE) {
            if (k->content == NULL) continue;
            xml_escape(b, (const char *)k->content, 0);
            if (*chars == 0 && ((const char *)k->content)[strspn((const char *)k->content, " \t\r\n")] != '\0')
                *chars = 1;
            continue;
        }
        if (k->type != XML_ELEMENT_NODE || !hv__ccda_is(k, (const char *)k->name)) continue;
        const char *name = (const char *)k->name;
        if (strcmp(name, "list") == 0) {
            const char *lt = hv__ccda_attr(k, "listType");
            name = lt != NULL && strcmp(lt, "ordered") == 0 ? "ol" : "ul";
        } else {
            name = xhtml_name(name);
        }
        if (name == NULL) {
            /* renderMultiMedia and unknown elements: keep their text only. */
            narrative_walk(k, b, depth + 1, chars);
            continue;
        }
        hv_buf_printf(b, "<%s", name);
        if (strcmp(name, "a") == 0) {
            const char *href = hv__ccda_attr(k, "href");
            /* Only plain web and fragment links; txt-1 refuses scripts. */
            if (href != NULL && (strncmp(href, "http://", 7) == 0 ||
                                 strncmp(href, "https://", 8) == 0 || href[0] == '#')) {
                hv_buf_puts(b, " href=\"");
                xml_escape(b, href, 1);
                hv_buf_putc(b, '"');
            }
        }
        if (strcmp(name, "td") == 0 || strcmp(name, "th") == 0) {
            static const char *const span_attrs[] = {"colspan", "rowspan"};
            for (size_t i = 0; i < 2; i++) {
                const char *v = hv__ccda_attr(k, span_attrs[i]);
                if (v != NULL && v[0] != '\0' && strspn(v, "0123456789") == strlen(v))
                    hv_buf_printf(b, " %s=\"%s\"", span_attrs[i], v);
            }
        }
        if (strcmp(name, "br") == 0) {
            hv_buf_puts(b, "/>");
            continue;
        }
        hv_buf_putc(b, '>');
        narrative_walk(k, b, depth + 1, chars);
        hv_buf_printf(b, "</%s>", name);
    }
    return 0;
}

char *hv__ccda_narrative(hv__ccda_ctx_t *c, xmlNodePtr text, const char *fallback) {
    hv_buf_t b;
    int chars = 0;
    char *r = NULL;
    hv_buf_init(&b, 4 << 20);
    hv_buf_puts(&b, "<div xmlns=\"http://www.w3.org/1999/xhtml\">");
    if (text != NULL) narrative_walk(text, &b, 0, &chars);
    if (chars == 0) {
        /* txt-2: the narrative must have some non-whitespace content. */
        hv_buf_reset(&b);
        if (fallback == NULL) goto out;
        hv_buf_puts(&b, "<div xmlns=\"http://www.w3.org/1999/xhtml\">");
        xml_escape(&b, fallback, 0);
    }
    if (hv_buf_puts(&b, "</div>") != HV_OK) {
        hv__ccda_issue(c, "warning", "too-costly", "text", "a section narrative is too large");
        goto out;
    }
    r = hv_arena_strndup(c->arena, b.data, b.len);
out:
    hv_buf_release(&b);
    return r;
}
