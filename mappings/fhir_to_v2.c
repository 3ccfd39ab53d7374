/*
 * fhir_to_v2.c — FHIR R4 → HL7 v2.5.1 for outbound interfaces:
 *
 *   ADT^A08^ADT_A01  MSH, EVN, PID (from the Patient), PV1 (from the Encounter, or
 *                    PV1-2 "U" when there is none)
 *   ORU^R01^ORU_R01  MSH, PID, then per DiagnosticReport one OBR and one OBX per
 *                    result Observation (per component too); Observations that no
 *                    report lists get an OBR of their own
 *
 * The input is a Bundle (any type: its entries are looked up by fullUrl and by
 * Type/id) or a single resource. Text is escaped with the hl7v2 adapter
 * (HL7 v2.5.1 §2.7), so that any character in a FHIR string survives. The message
 * is parsed back with the hl7v2 parser before it is returned: a message this
 * function hands out always parses.
 *
 * Field mapping (HL7 v2-to-FHIR IG, read backwards):
 *   Patient.identifier      PID-3  CX  value^^^&universalId&ISO|URI^typeCode
 *   Patient.name            PID-5  XPN family^given^middle…^suffix^prefix^^L|D|N|M
 *   Patient.birthDate       PID-7  DTM;  gender PID-8 (M F O U)
 *   Patient.address         PID-11 XAD line1^line2^city^state^zip^country^H|B|C
 *   Patient.telecom         PID-13 (home) / PID-14 (work) XTN
 *   Patient.maritalStatus   PID-16 CWE; deceased PID-29 / PID-30
 *   Encounter.class         PV1-2 (IMP→I, AMB→O, EMER→E, PRENC→P, else U)
 *   Encounter.identifier    PV1-19; period PV1-44 / PV1-45
 *   DiagnosticReport        OBR-3 filler number, OBR-4 code, OBR-7 effective,
 *                           OBR-22 issued, OBR-25 status (F P C X I)
 *   Observation             OBX-2 value type (NM SN CWE ST TX DT TS TM), OBX-3 code,
 *                           OBX-5 value, OBX-6 units (UCUM code^unit^UCUM), OBX-7 range,
 *                           OBX-8 interpretation, OBX-11 status, OBX-14 effective time
 */
#include "config.h"

#include <ctype.h>
#include <json-c/json.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "adapters/hl7v2/hl7v2.h"
#include "fhir/fhir.h"
#include "mappings/mappings.h"

#define F2V_MAX_INPUT ((size_t)16 << 20)   /* largest FHIR input accepted */
#define F2V_MAX_MESSAGE ((size_t)32 << 20) /* largest message written */
#define F2V_MAX_REPEAT 32                  /* repetitions written per field */
#define F2V_MAX_OBX 10000                  /* OBX segments per message */

static const hv_hl7v2_delims_t delims = {'|', '^', '~', '\\', '&', 0};

typedef struct res_index {
    struct json_object *all;    /* array of every resource, in order */
    struct json_object *by_url; /* fullUrl and Type/id → resource */
} res_index_t;

typedef struct ctx {
    hv_buf_t *b;
    int field; /* the field the segment is at (0 = the segment id) */
    struct json_object *issues;
    int rc;    /* first buffer error */
    unsigned nobx;
} ctx_t;

static void issue(ctx_t *c, const char *severity, const char *code, const char *where,
                  const char *fmt, const char *arg) {
    char msg[300];
    if (json_object_array_length(c->issues) >= 1000) return;
    snprintf(msg, sizeof(msg), fmt, arg != NULL ? arg : "");
    struct json_object *is = json_object_new_object();
    hv_json_set_str(is, "severity", severity);
    hv_json_set_str(is, "code", code);
    hv_json_set_str(is, "diagnostics", msg);
    if (where != NULL) {
        struct json_object *ex = json_object_new_array();
        json_object_array_add(ex, json_object_new_string(where));
        hv_json_set(is, "expression", ex);
    }
    json_object_array_add(c->issues, is);
}

/* ---- writing ----------------------------------------------------------------------- */

static void chk(ctx_t *c, int rc) {
    if (rc != HV_OK && c->rc == HV_OK) c->rc = rc;
}

static void seg(ctx_t *c, const char *id) {
    if (c->b->len > 0) chk(c, hv_buf_putc(c->b, '\r'));
    chk(c, hv_buf_puts(c->b, id));
    c->field = 0;
}

/* Moves to field n of the current segment (n >= the current field). */
static void fld(ctx_t *c, int n) {
    while (c->field < n) {
        chk(c, hv_buf_putc(c->b, '|'));
        c->field++;
    }
}

static void raw(ctx_t *c, char ch) {
    chk(c, hv_buf_putc(c->b, ch));
}

/* Appends text escaped for a field (HL7 v2.5.1 §2.7); NULL writes nothing. */
static void txt(ctx_t *c, const char *s) {
    if (s != NULL) chk(c, hv_hl7v2_escape(&delims, s, strlen(s), c->b));
}

/* Writes `count` components separated by `sep`, trailing empty ones left out. */
static void comps(ctx_t *c, char sep, const char *const *v, int count) {
    int last = -1;
    for (int i = 0; i < count; i++)
        if (v[i] != NULL && v[i][0] != '\0') last = i;
    for (int i = 0; i <= last; i++) {
        if (i > 0) raw(c, sep);
        txt(c, v[i]);
    }
}

/* ---- FHIR access --------------------------------------------------------------------- */

static struct json_object *get(struct json_object *o, const char *key) {
    struct json_object *v = NULL;
    if (o == NULL || !json_object_is_type(o, json_type_object)) return NULL;
    return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static const char *str(struct json_object *o, const char *key) {
    struct json_object *v = get(o, key);
    return v != NULL && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static size_t alen(struct json_object *a) {
    return a != NULL && json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
}

static struct json_object *at(struct json_object *a, size_t i) {
    return i < alen(a) ? json_object_array_get_idx(a, i) : NULL;
}

static int eq(const char *a, const char *b) {
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* The text of a JSON number as written (decimals keep their digits), or NULL. */
static const char *number_text(struct json_object *v, char *buf, size_t n) {
    if (v == NULL) return NULL;
    if (json_object_is_type(v, json_type_int)) {
        snprintf(buf, n, "%lld", (long long)json_object_get_int64(v));
        return buf;
    }
    if (json_object_is_type(v, json_type_double)) {
        const char *t = hv_fhir_json_number_text(v);
        if (t != NULL) return t;
        snprintf(buf, n, "%.17g", json_object_get_double(v));
        return buf;
    }
    return NULL;
}

/* FHIR date/dateTime/instant → HL7 DTM (YYYY[MM[DD[HHMM[SS[.S]]]]][+/-ZZZZ]). */
static const char *dtm(const char *f, char *out, size_t n) {
    size_t o = 0;
    if (f == NULL || n < 32) return NULL;
    for (const char *p = f; *p && o + 6 < n; p++) {
        if (isdigit((unsigned char)*p) || *p == '.') {
            out[o++] = *p;
        } else if (*p == 'T' || *p == ':' || (*p == '-' && p - f < 8)) {
            continue;
        } else if (*p == 'Z') {
            memcpy(out + o, "+0000", 5);
            o += 5;
            break;
        } else if (*p == '+' || *p == '-') {
            out[o++] = *p;
            for (p++; *p && o + 1 < n; p++)
                if (isdigit((unsigned char)*p)) out[o++] = *p;
            break;
        } else {
            return NULL;
        }
    }
    out[o] = '\0';
    return o >= 4 ? out : NULL;
}

/* FHIR code-system URIs → HL7 table 0396 names; others stay as written. */
static const char *v2_system(const char *uri) {
    static const char *const map[][2] = {
        {"http://loinc.org", "LN"},
        {"http://snomed.info/sct", "SCT"},
        {"http://www.nlm.nih.gov/research/umls/rxnorm", "RXNORM"},
        {"http://hl7.org/fhir/sid/icd-10-cm", "I10C"},
        {"http://hl7.org/fhir/sid/icd-10", "I10"},
        {"http://hl7.org/fhir/sid/icd-9-cm", "I9CDX"},
        {"http://hl7.org/fhir/sid/cvx", "CVX"},
        {"http://hl7.org/fhir/sid/ndc", "NDC"},
        {"http://www.ama-assn.org/go/cpt", "C4"},
        {"http://unitsofmeasure.org", "UCUM"},
        {"http://terminology.hl7.org/CodeSystem/v2-0078", "HL70078"},
        {"http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "HL70078"},
        {"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "HL70002"},
        {"http://terminology.hl7.org/CodeSystem/v2-0002", "HL70002"},
        {"http://terminology.hl7.org/CodeSystem/v2-0203", "HL70203"},
    };
    if (uri == NULL) return NULL;
    for (size_t i = 0; i < HV_ARRAY_LEN(map); i++)
        if (strcmp(uri, map[i][0]) == 0) return map[i][1];
    return uri;
}

/* CodeableConcept → CWE: code^display^system^altCode^altDisplay^altSystem^^^originalText. */
static void cwe(ctx_t *c, struct json_object *cc) {
    struct json_object *codings = get(cc, "coding");
    struct json_object *c0 = at(codings, 0), *c1 = at(codings, 1);
    const char *v[9] = {str(c0, "code"), str(c0, "display"), v2_system(str(c0, "system")),
                        str(c1, "code"), str(c1, "display"), v2_system(str(c1, "system")),
                        NULL,            NULL,               str(cc, "text")};
    if (v[0] == NULL && v[1] == NULL) v[1] = v[8]; /* text only: CWE-2 */
    comps(c, '^', v, 9);
}

/* Identifier → CX (value^^^assigningAuthority^typeCode) or EI (value^namespace^uid^type). */
static void cx(ctx_t *c, struct json_object *id, int ei) {
    const char *sys = str(id, "system"), *uid = NULL, *uid_type = NULL;
    char oid[256];
    if (sys != NULL && strncmp(sys, "urn:oid:", 8) == 0) {
        snprintf(oid, sizeof(oid), "%s", sys + 8);
        uid = oid, uid_type = "ISO";
    } else if (sys != NULL) {
        uid = sys, uid_type = "URI";
    }
    const char *ns = str(get(id, "assigner"), "display");
    const char *type = str(at(get(get(id, "type"), "coding"), 0), "code");
    if (ei) {
        const char *v[4] = {str(id, "value"), ns, uid, uid_type};
        comps(c, '^', v, 4);
        return;
    }
    txt(c, str(id, "value"));
    if (ns == NULL && uid == NULL && type == NULL) return;
    raw(c, '^');
    raw(c, '^');
    raw(c, '^');
    const char *hd[3] = {ns, uid, uid_type};
    comps(c, '&', hd, 3);
    if (type != NULL) {
        raw(c, '^');
        txt(c, type);
    }
}

static void repeat(ctx_t *c, int n) {
    if (n > 0) raw(c, '~');
}

/* HumanName → XPN. */
static void xpn(ctx_t *c, struct json_object *name) {
    struct json_object *given = get(name, "given");
    char middle[512] = "";
    for (size_t i = 1; i < alen(given) && i < 8; i++) {
        const char *g = json_object_get_string(at(given, i));
        if (g == NULL) continue;
        if (middle[0] != '\0') strncat(middle, " ", sizeof(middle) - strlen(middle) - 1);
        strncat(middle, g, sizeof(middle) - strlen(middle) - 1);
    }
    const char *use = str(name, "use");
    /* FHIR name-use → HL7 table 0200 name type. */
    const char *type = eq(use, "official")  ? "L"
                       : eq(use, "usual")    ? "D"
                       : eq(use, "nickname") ? "N"
                       : eq(use, "maiden")   ? "M"
                       : eq(use, "anonymous") ? "S"
                                             : NULL;
    const char *family = str(name, "family");
    if (family == NULL && alen(given) == 0) family = str(name, "text");
    const char *v[7] = {family,
                        alen(given) > 0 ? json_object_get_string(at(given, 0)) : NULL,
                        middle[0] != '\0' ? middle : NULL,
                        alen(get(name, "suffix")) > 0
                            ? json_object_get_string(at(get(name, "suffix"), 0))
                            : NULL,
                        alen(get(name, "prefix")) > 0
                            ? json_object_get_string(at(get(name, "prefix"), 0))
                            : NULL,
                        NULL,
                        type};
    comps(c, '^', v, 7);
}

/* Address → XAD. */
static void xad(ctx_t *c, struct json_object *a) {
    struct json_object *lines = get(a, "line");
    const char *use = str(a, "use");
    const char *v[7] = {alen(lines) > 0 ? json_object_get_string(at(lines, 0)) : NULL,
                        alen(lines) > 1 ? json_object_get_string(at(lines, 1)) : NULL,
                        str(a, "city"),
                        str(a, "state"),
                        str(a, "postalCode"),
                        str(a, "country"),
                        eq(use, "home") ? "H" : eq(use, "work") ? "B" : eq(use, "temp") ? "C" : NULL};
    if (v[0] == NULL && v[2] == NULL) v[0] = str(a, "text");
    comps(c, '^', v, 7);
}

/* ContactPoint → XTN (v2.5.1: ^use^equipment^email^…; the number in XTN-1 and XTN-12). */
static void xtn(ctx_t *c, struct json_object *t) {
    const char *sys = str(t, "system"), *use = str(t, "use"), *value = str(t, "value");
    if (eq(sys, "email")) {
        const char *v[4] = {NULL, "NET", "Internet", value};
        comps(c, '^', v, 4);
        return;
    }
    const char *equip = eq(sys, "fax") ? "FX" : eq(use, "mobile") ? "CP" : eq(sys, "pager") ? "BP" : "PH";
    const char *v[12] = {value, eq(use, "work") ? "WPN" : "PRN", equip, NULL, NULL, NULL,
                         NULL,  NULL,                           NULL,  NULL, NULL, value};
    comps(c, '^', v, 12);
}

/* ---- segments ----------------------------------------------------------------------- */

static atomic_uint control_seq;

static void msh(ctx_t *c, const char *type) {
    char ts[32], ctrl[48];
    uint64_t now = hv_now_ms();
    time_t secs = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(ts, sizeof(ts), "%Y%m%d%H%M%S", &tm);
    snprintf(ts + strlen(ts), sizeof(ts) - strlen(ts), ".%03u+0000", (unsigned)(now % 1000));
    /* MSH-10: unique per message from this process — time and a counter. */
    snprintf(ctrl, sizeof(ctrl), "HV%llu%04u", (unsigned long long)now,
             atomic_fetch_add(&control_seq, 1) % 10000);
    chk(c, hv_buf_puts(c->b, "MSH|^~\\&|HOLOVITALS|HOLOVITALS|||"));
    c->field = 7; /* the text so far ends MSH-6: MSH-1 is the field separator itself */
    txt(c, ts);
    fld(c, 9);
    if (strcmp(type, "ADT_A08") == 0)
        chk(c, hv_buf_puts(c->b, "ADT^A08^ADT_A01"));
    else
        chk(c, hv_buf_puts(c->b, "ORU^R01^ORU_R01"));
    fld(c, 10);
    txt(c, ctrl);
    fld(c, 11);
    txt(c, "P");
    fld(c, 12);
    txt(c, "2.5.1");
    if (strcmp(type, "ADT_A08") == 0) {
        seg(c, "EVN");
        fld(c, 1);
        txt(c, "A08");
        fld(c, 2);
        txt(c, ts);
    }
}

static void pid(ctx_t *c, struct json_object *p, struct json_object *subject_ref) {
    char buf[64];
    seg(c, "PID");
    fld(c, 1);
    txt(c, "1");
    fld(c, 3);
    struct json_object *ids = get(p, "identifier");
    int n = 0;
    for (size_t i = 0; i < alen(ids) && n < F2V_MAX_REPEAT; i++) {
        if (str(at(ids, i), "value") == NULL) continue;
        repeat(c, n++);
        cx(c, at(ids, i), 0);
    }
    if (n == 0 && subject_ref != NULL && get(subject_ref, "identifier") != NULL)
        cx(c, get(subject_ref, "identifier"), 0);
    fld(c, 5);
    struct json_object *names = get(p, "name");
    for (size_t i = 0; i < alen(names) && (int)i < F2V_MAX_REPEAT; i++) {
        repeat(c, (int)i);
        xpn(c, at(names, i));
    }
    if (alen(names) == 0 && subject_ref != NULL) {
        const char *d = str(subject_ref, "display");
        txt(c, d);
    }
    fld(c, 7);
    txt(c, dtm(str(p, "birthDate"), buf, sizeof(buf)));
    fld(c, 8);
    const char *g = str(p, "gender");
    /* FHIR administrative-gender → HL7 table 0001. */
    txt(c, eq(g, "male") ? "M" : eq(g, "female") ? "F" : eq(g, "other") ? "O" : eq(g, "unknown") ? "U" : NULL);
    fld(c, 11);
    struct json_object *addrs = get(p, "address");
    for (size_t i = 0; i < alen(addrs) && (int)i < F2V_MAX_REPEAT; i++) {
        repeat(c, (int)i);
        xad(c, at(addrs, i));
    }
    struct json_object *tel = get(p, "telecom");
    for (int work = 0; work <= 1; work++) {
        fld(c, work ? 14 : 13);
        n = 0;
        for (size_t i = 0; i < alen(tel) && n < F2V_MAX_REPEAT; i++) {
            struct json_object *t = at(tel, i);
            if (str(t, "value") == NULL || eq(str(t, "use"), "work") != work) continue;
            repeat(c, n++);
            xtn(c, t);
        }
    }
    struct json_object *ms = get(p, "maritalStatus");
    if (ms != NULL) {
        fld(c, 16);
        cwe(c, ms);
    }
    const char *dt = str(p, "deceasedDateTime");
    struct json_object *db = get(p, "deceasedBoolean");
    if (dt != NULL || db != NULL) {
        fld(c, 29);
        txt(c, dtm(dt, buf, sizeof(buf)));
        fld(c, 30);
        txt(c, dt != NULL || (db != NULL && json_object_get_boolean(db)) ? "Y" : "N");
    }
}

static void pv1(ctx_t *c, struct json_object *e) {
    char buf[64];
    seg(c, "PV1");
    fld(c, 1);
    txt(c, "1");
    fld(c, 2);
    const char *cls = str(get(e, "class"), "code");
    /* v3 ActCode encounter class → HL7 table 0004 patient class. */
    txt(c, eq(cls, "IMP") || eq(cls, "ACUTE") || eq(cls, "NONAC") ? "I"
           : eq(cls, "AMB")                                        ? "O"
           : eq(cls, "EMER")                                       ? "E"
           : eq(cls, "PRENC")                                      ? "P"
                                                                   : "U");
    if (e == NULL) return;
    const char *loc = str(get(at(get(e, "location"), 0), "location"), "display");
    if (loc != NULL) {
        fld(c, 3);
        txt(c, loc);
    }
    struct json_object *id = at(get(e, "identifier"), 0);
    if (id != NULL && str(id, "value") != NULL) {
        fld(c, 19);
        cx(c, id, 0);
    }
    struct json_object *period = get(e, "period");
    const char *s = dtm(str(period, "start"), buf, sizeof(buf));
    if (s != NULL) {
        fld(c, 44);
        txt(c, s);
    }
    char buf2[64];
    const char *en = dtm(str(period, "end"), buf2, sizeof(buf2));
    if (en != NULL) {
        fld(c, 45);
        txt(c, en);
    }
}

/* FHIR observation/report status → HL7 table 0085 / 0123. */
static const char *result_status(const char *s) {
    return eq(s, "final")                                           ? "F"
           : eq(s, "preliminary") || eq(s, "partial")               ? "P"
           : eq(s, "amended") || eq(s, "corrected") || eq(s, "appended") ? "C"
           : eq(s, "cancelled")                                     ? "X"
           : eq(s, "entered-in-error")                              ? "W"
           : eq(s, "registered")                                    ? "I"
                                                                    : "R";
}

static void obr(ctx_t *c, unsigned n, struct json_object *dr, struct json_object *code) {
    char buf[64], num[16];
    seg(c, "OBR");
    fld(c, 1);
    snprintf(num, sizeof(num), "%u", n);
    txt(c, num);
    struct json_object *id = at(get(dr, "identifier"), 0);
    if (id != NULL && str(id, "value") != NULL) {
        fld(c, 3);
        cx(c, id, 1);
    }
    fld(c, 4);
    cwe(c, code);
    const char *t = str(dr, "effectiveDateTime");
    if (t == NULL) t = str(get(dr, "effectivePeriod"), "start");
    fld(c, 7);
    txt(c, dtm(t, buf, sizeof(buf)));
    const char *iss = str(dr, "issued");
    if (iss != NULL) {
        fld(c, 22);
        txt(c, dtm(iss, buf, sizeof(buf)));
    }
    fld(c, 25);
    txt(c, result_status(str(dr, "status")));
}

/* Quantity → NM or SN value, and its units. */
static const char *quantity_value(ctx_t *c, struct json_object *q, int write) {
    char nb[64];
    const char *v = number_text(get(q, "value"), nb, sizeof(nb));
    const char *cmp = str(q, "comparator");
    if (!write) return v == NULL ? NULL : cmp != NULL ? "SN" : "NM";
    if (cmp != NULL) {
        txt(c, cmp);
        raw(c, '^');
    }
    txt(c, v);
    return NULL;
}

static void units(ctx_t *c, struct json_object *q) {
    const char *code = str(q, "code"), *unit = str(q, "unit"), *sys = str(q, "system");
    const char *v[3] = {code, unit, code != NULL ? v2_system(sys) : NULL};
    if (code == NULL && unit != NULL) v[0] = unit, v[1] = NULL, v[2] = NULL;
    comps(c, '^', v, 3);
}

static void range_text(ctx_t *c, struct json_object *rr) {
    char lb[64], hb[64];
    const char *lo = number_text(get(get(rr, "low"), "value"), lb, sizeof(lb));
    const char *hi = number_text(get(get(rr, "high"), "value"), hb, sizeof(hb));
    if (lo != NULL && hi != NULL) {
        txt(c, lo);
        txt(c, "-");
        txt(c, hi);
    } else if (lo != NULL) {
        txt(c, ">");
        txt(c, lo);
    } else if (hi != NULL) {
        txt(c, "<");
        txt(c, hi);
    } else {
        txt(c, str(rr, "text"));
    }
}

/* Writes one OBX for an observation (or one of its components: obs is then the
 * component and parent the Observation for status and time). */
static void obx(ctx_t *c, struct json_object *obs, struct json_object *parent, const char *sub) {
    char buf[64], num[16];
    if (c->nobx >= F2V_MAX_OBX) {
        if (c->nobx++ == F2V_MAX_OBX)
            issue(c, "warning", "too-costly", "Observation",
                  "more than %s results; the rest are left out", "10000");
        return;
    }
    c->nobx++;
    struct json_object *v;
    const char *type = NULL;
    if ((v = get(obs, "valueQuantity")) != NULL) type = quantity_value(c, v, 0);
    else if ((v = get(obs, "valueCodeableConcept")) != NULL) type = "CWE";
    else if ((v = get(obs, "valueString")) != NULL) type = strlen(json_object_get_string(v)) > 199 ? "TX" : "ST";
    else if ((v = get(obs, "valueInteger")) != NULL) type = "NM";
    else if ((v = get(obs, "valueBoolean")) != NULL) type = "CWE";
    else if ((v = get(obs, "valueDateTime")) != NULL) /* HL7 v2.5.1 table 0125: TS, DT */
        type = strlen(json_object_get_string(v)) > 10 ? "TS" : "DT";
    else if ((v = get(obs, "valueTime")) != NULL) type = "TM";
    else if ((v = get(obs, "valueRange")) != NULL) type = "SN";
    else if ((v = get(obs, "valueRatio")) != NULL) type = "SN";
    else {
        json_object_object_foreach(obs, key, val) {
            (void)val;
            if (strncmp(key, "value", 5) == 0)
                issue(c, "warning", "not-supported", "Observation.value[x]",
                      "an Observation %s has no HL7 v2 value type; the value is left out", key);
        }
    }
    seg(c, "OBX");
    fld(c, 1);
    snprintf(num, sizeof(num), "%u", c->nobx);
    txt(c, num);
    fld(c, 2);
    txt(c, type);
    fld(c, 3);
    cwe(c, get(obs, "code"));
    fld(c, 4);
    txt(c, sub);
    fld(c, 5);
    if (type != NULL) {
        if (get(obs, "valueQuantity") != NULL) {
            quantity_value(c, v, 1);
        } else if (get(obs, "valueCodeableConcept") != NULL) {
            cwe(c, v);
        } else if (get(obs, "valueBoolean") != NULL) {
            const char *yn[3] = {json_object_get_boolean(v) ? "Y" : "N",
                                 json_object_get_boolean(v) ? "Yes" : "No", "HL70136"};
            comps(c, '^', yn, 3);
        } else if (get(obs, "valueDateTime") != NULL || get(obs, "valueTime") != NULL) {
            txt(c, dtm(json_object_get_string(v), buf, sizeof(buf)));
        } else if (get(obs, "valueRange") != NULL) {
            char lb[64], hb[64];
            const char *parts[4] = {NULL, number_text(get(get(v, "low"), "value"), lb, sizeof(lb)),
                                    "-", number_text(get(get(v, "high"), "value"), hb, sizeof(hb))};
            comps(c, '^', parts, 4);
        } else if (get(obs, "valueRatio") != NULL) {
            char lb[64], hb[64];
            const char *parts[4] = {
                NULL, number_text(get(get(v, "numerator"), "value"), lb, sizeof(lb)), ":",
                number_text(get(get(v, "denominator"), "value"), hb, sizeof(hb))};
            comps(c, '^', parts, 4);
        } else if (get(obs, "valueInteger") != NULL) {
            char nb[32];
            txt(c, number_text(v, nb, sizeof(nb)));
        } else {
            txt(c, json_object_get_string(v));
        }
    }
    struct json_object *q = get(obs, "valueQuantity");
    if (q == NULL) q = get(get(obs, "valueRange"), "low");
    if (q != NULL) {
        fld(c, 6);
        units(c, q);
    }
    struct json_object *rr = at(get(obs, "referenceRange"), 0);
    if (rr != NULL) {
        fld(c, 7);
        range_text(c, rr);
    }
    struct json_object *interp = get(obs, "interpretation");
    for (size_t i = 0; i < alen(interp) && i < F2V_MAX_REPEAT; i++) {
        fld(c, 8);
        repeat(c, (int)i);
        txt(c, str(at(get(at(interp, i), "coding"), 0), "code"));
    }
    fld(c, 11);
    struct json_object *src = parent != NULL ? parent : obs;
    txt(c, result_status(str(src, "status")));
    const char *t = str(src, "effectiveDateTime");
    if (t == NULL) t = str(get(src, "effectivePeriod"), "start");
    if (t == NULL) t = str(src, "effectiveInstant");
    if (t != NULL) {
        fld(c, 14);
        txt(c, dtm(t, buf, sizeof(buf)));
    }
}

static void observation_group(ctx_t *c, struct json_object *o) {
    obx(c, o, NULL, NULL);
    unsigned base = c->nobx;
    struct json_object *comp = get(o, "component");
    for (size_t k = 0; k < alen(comp); k++) {
        char sub[32];
        snprintf(sub, sizeof(sub), "%u.%zu", base, k + 1);
        obx(c, at(comp, k), o, sub);
    }
}

/* ---- input --------------------------------------------------------------------------- */

static void index_add(res_index_t *ix, struct json_object *r, const char *full_url) {
    json_object_array_add(ix->all, json_object_get(r));
    if (full_url != NULL) json_object_object_add(ix->by_url, full_url, json_object_get(r));
    const char *type = str(r, "resourceType"), *id = str(r, "id");
    if (type != NULL && id != NULL) {
        char key[256];
        snprintf(key, sizeof(key), "%s/%s", type, id);
        json_object_object_add(ix->by_url, key, json_object_get(r));
    }
}

static struct json_object *first_of(res_index_t *ix, const char *type) {
    for (size_t i = 0; i < alen(ix->all); i++)
        if (eq(str(at(ix->all, i), "resourceType"), type)) return at(ix->all, i);
    return NULL;
}

static struct json_object *resolve(res_index_t *ix, struct json_object *ref) {
    const char *r = str(ref, "reference");
    struct json_object *v = NULL;
    if (r == NULL) return NULL;
    if (json_object_object_get_ex(ix->by_url, r, &v)) return v;
    /* An absolute URL ending in Type/id. */
    const char *slash = strrchr(r, '/');
    if (slash != NULL && slash > r) {
        const char *prev = slash - 1;
        while (prev > r && *prev != '/') prev--;
        if (*prev == '/') prev++;
        if (json_object_object_get_ex(ix->by_url, prev, &v)) return v;
    }
    return NULL;
}

int hv_map_fhir_to_v2(const char *json, size_t len, const char *structure,
                      const hv_map_opts_t *opts, hv_buf_t *msg, hv_map_result_t *out,
                      hv_error_t *err) {
    struct json_object *root = NULL, *oo = NULL;
    res_index_t ix = {NULL, NULL};
    hv_buf_t b;
    hv_arena_t *arena = NULL;
    ctx_t c = {0};
    int rc;
    (void)opts; /* no override rows or explain trace for the outbound direction yet */
    hv_buf_init(&b, F2V_MAX_MESSAGE);
    if (json == NULL || structure == NULL || msg == NULL || out == NULL) {
        rc = HV_EINVAL;
        hv_error_set(err, rc, NULL, "missing input");
        goto out;
    }
    int adt = strcmp(structure, "ADT_A08") == 0 || strcmp(structure, "ADT^A08") == 0;
    int oru = strcmp(structure, "ORU_R01") == 0 || strcmp(structure, "ORU^R01") == 0;
    if (!adt && !oru) {
        rc = HV_ENOTSUP;
        hv_error_set(err, rc, NULL,
                     "message structure %.40s is not supported (ADT_A08 and ORU_R01 are)", structure);
        goto out;
    }
    hv_fhir_parse_opts_t po = {.max_bytes = F2V_MAX_INPUT, .max_depth = 64,
                               .flags = HV_FHIR_PARSE_LENIENT};
    rc = hv_fhir_json_parse(json, len, &po, &root, err);
    if (rc != HV_OK) goto out;
    ix.all = json_object_new_array();
    ix.by_url = json_object_new_object();
    c.issues = json_object_new_array();
    c.b = &b;
    if (eq(str(root, "resourceType"), "Bundle")) {
        struct json_object *entries = get(root, "entry");
        for (size_t i = 0; i < alen(entries); i++) {
            struct json_object *r = get(at(entries, i), "resource");
            if (r != NULL && str(r, "resourceType") != NULL)
                index_add(&ix, r, str(at(entries, i), "fullUrl"));
        }
    } else {
        index_add(&ix, root, NULL);
    }
    struct json_object *patient = first_of(&ix, "Patient");
    msh(&c, adt ? "ADT_A08" : "ORU_R01");
    if (adt) {
        if (patient == NULL) {
            rc = HV_EINVAL;
            hv_error_set(err, rc, "Patient", "an ADT^A08 needs a Patient; the input has none");
            goto out;
        }
        pid(&c, patient, NULL);
        pv1(&c, first_of(&ix, "Encounter"));
    } else {
        struct json_object *dr0 = first_of(&ix, "DiagnosticReport");
        struct json_object *obs0 = first_of(&ix, "Observation");
        if (dr0 == NULL && obs0 == NULL) {
            rc = HV_EINVAL;
            hv_error_set(err, rc, NULL,
                         "an ORU^R01 needs a DiagnosticReport or an Observation; the input has none");
            goto out;
        }
        struct json_object *subject = get(dr0 != NULL ? dr0 : obs0, "subject");
        if (patient == NULL) patient = resolve(&ix, subject);
        if (patient != NULL || subject != NULL) {
            pid(&c, patient, subject);
        } else {
            issue(&c, "warning", "required", "Patient",
                  "the results name no patient; the message has no PID", NULL);
        }
        /* Observations that a report lists are written under it; the others alone. */
        struct json_object *listed = json_object_new_object();
        unsigned nobr = 0;
        for (size_t i = 0; i < alen(ix.all); i++) {
            struct json_object *dr = at(ix.all, i);
            if (!eq(str(dr, "resourceType"), "DiagnosticReport")) continue;
            obr(&c, ++nobr, dr, get(dr, "code"));
            struct json_object *results = get(dr, "result");
            for (size_t k = 0; k < alen(results); k++) {
                struct json_object *o = resolve(&ix, at(results, k));
                if (o == NULL) {
                    issue(&c, "warning", "not-found", "DiagnosticReport.result",
                          "the result %s is not in the input; it is left out",
                          str(at(results, k), "reference"));
                    continue;
                }
                char key[32];
                snprintf(key, sizeof(key), "%p", (void *)o);
                json_object_object_add(listed, key, NULL);
                observation_group(&c, o);
            }
        }
        for (size_t i = 0; i < alen(ix.all); i++) {
            struct json_object *o = at(ix.all, i);
            char key[32];
            snprintf(key, sizeof(key), "%p", (void *)o);
            if (!eq(str(o, "resourceType"), "Observation") ||
                json_object_object_get_ex(listed, key, NULL))
                continue;
            obr(&c, ++nobr, o, get(o, "code"));
            observation_group(&c, o);
        }
        json_object_put(listed);
    }
    if (c.rc != HV_OK) {
        rc = c.rc;
        hv_error_set(err, rc, NULL, "the message exceeds the cap of %zu bytes", F2V_MAX_MESSAGE);
        goto out;
    }
    /* Self-check: what goes out must parse with the adapter's own parser. */
    {
        hv_hl7v2_msg_t m;
        hv_error_t perr;
        arena = hv_arena_new(0);
        if (arena == NULL ||
            hv_hl7v2_parse(arena, b.data, b.len, NULL, &m, &perr, NULL) != HV_OK) {
            rc = HV_EPROTO;
            hv_error_set(err, rc, NULL, "internal error: the generated message does not parse");
            goto out;
        }
    }
    oo = json_object_new_object();
    hv_json_set_str(oo, "resourceType", "OperationOutcome");
    if (json_object_array_length(c.issues) == 0) {
        struct json_object *is = json_object_new_object();
        hv_json_set_str(is, "severity", "information");
        hv_json_set_str(is, "code", "informational");
        hv_json_set_str(is, "diagnostics", "the message was mapped without problems");
        json_object_array_add(c.issues, is);
    }
    hv_json_set(oo, "issue", json_object_get(c.issues));
    rc = hv_buf_append(msg, b.data, b.len);
    if (rc != HV_OK) {
        hv_error_set(err, rc, NULL, "the message does not fit the output buffer");
        goto out;
    }
    out->bundle = NULL;
    out->explain = NULL;
    out->outcome = oo;
    oo = NULL;
    rc = HV_OK;
out:
    json_object_put(oo);
    json_object_put(root);
    json_object_put(ix.all);
    json_object_put(ix.by_url);
    json_object_put(c.issues);
    hv_arena_free(arena);
    hv_buf_release(&b);
    return rc;
}
