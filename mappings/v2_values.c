/*
 * v2_values.c — the small pieces the HL7 v2 → FHIR engine reads and writes values with:
 * fields, components and unescaped text of a message's spans (HL7 v2.5.1 §2.5-§2.7), the
 * issues of the OperationOutcome, and FHIR primitive values made from v2 text (HL7 v2.5.1
 * §2.A.22 DTM → FHIR R4 date/dateTime/instant/time, decimals, codes; FHIR R4 datatypes.html).
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mappings/v2_int.h"

/* ------------------------------------------------------------------------- */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------- */


/* "ORU_R01 OBX[Observation] > OBX[Observation] OBX-5 → valueQuantity > …": the rows that
 * are being applied, for an issue's location and for --explain. */
const char *hv__v2_rule_text(ctx_t *c) {
    size_t n = (size_t)snprintf(c->rule, sizeof(c->rule), "%s", c->rule_base ? c->rule_base : "");
    int i;
    for (i = 0; i < c->nframes && n < sizeof(c->rule); i++) {
        const hv__map_row_t *r = c->frames[i];
        /* The first frame is the segment map's row (SEG-F), the others data-type rows. */
        if (i == 0 && r->src_f)
            n += (size_t)snprintf(c->rule + n, sizeof(c->rule) - n, " > %s %.3s-%u%s%.0u → %s", r->map, r->map,
                                  r->src_f, r->src_c ? "." : "", r->src_c, r->target);
        else
            n += (size_t)snprintf(c->rule + n, sizeof(c->rule) - n, " > %s %u → %s", r->map, r->src_f, r->target);
        /* A row of mappings/v2/local.tsv or of an override file says where it comes from. */
        if (n < sizeof(c->rule) && r->origin != NULL && strcmp(r->origin, "mappings/v2") != 0)
            n += (size_t)snprintf(c->rule + n, sizeof(c->rule) - n, " (%s)", r->origin);
    }
    return c->rule;
}

void hv__v2_issue(ctx_t *c, const char *severity, const char *code, const char *where,
           const char *fmt, ...) {
    char msg[300];
    va_list ap;
    hv__jv_t *i, *ex;
    if (hv__jv_len(c->issues) >= MAX_ISSUES) return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    i = hv__jv_obj(c->arena);
    hv__jv_put_str(c->arena, i, "severity", severity, HV__JV_KCONST);
    hv__jv_put_str(c->arena, i, "code", code, HV__JV_KCONST);
    hv__jv_put_str(c->arena, i, "diagnostics", msg, HV__JV_KCONST);
    if (where != NULL && where[0]) {
        ex = hv__jv_arr(c->arena);
        hv__jv_push(c->arena, ex, hv__jv_str(c->arena, where));
        hv__jv_put(c->arena, i, "location", ex, HV__JV_KCONST);
    }
    hv__jv_push(c->arena, c->issues, i);
}

/* The text of a raw span, unescaped (HL7 v2.5.1 §2.7), trimmed; arena. */
char *hv__v2_span_text(ctx_t *c, span_t s) {
    size_t a = 0, b;
    hv_buf_reset(&c->tmp);
    if (s.p == NULL || s.len == 0) return hv_arena_strdup(c->arena, "");
    if ((c->msg.delims.esc == 0 || memchr(s.p, c->msg.delims.esc, s.len) == NULL) &&
        (c->tmp.max == 0 || s.len <= c->tmp.max)) {
        /* Nothing to unescape: the text is the span itself, trimmed (what unescaping
         * into c->tmp would have copied). */
        b = s.len;
        while (a < b && isspace((unsigned char)s.p[a])) a++;
        while (b > a && isspace((unsigned char)s.p[b - 1])) b--;
        return hv_arena_strndup(c->arena, s.p + a, b - a);
    }
    if (hv_hl7v2_unescape(&c->msg.delims, s.p, s.len, 0, &c->tmp) != HV_OK || c->tmp.data == NULL)
        return hv_arena_strndup(c->arena, s.p, s.len);
    b = c->tmp.len;
    while (a < b && isspace((unsigned char)c->tmp.data[a])) a++;
    while (b > a && isspace((unsigned char)c->tmp.data[b - 1])) b--;
    return hv_arena_strndup(c->arena, c->tmp.data + a, b - a);
}

int hv__v2_span_valued(span_t s) {
    size_t i;
    if (s.p == NULL || s.len == 0) return 0;
    /* Most values start with a byte that is neither a blank nor the quote of the null value. */
    if (s.p[0] != '"' && !isspace((unsigned char)s.p[0])) return 1;
    if (hv_hl7v2_span_is_null(s)) return 0;
    for (i = 0; i < s.len; i++)
        if (!isspace((unsigned char)s.p[i])) return 1;
    return 0;
}

/* The separator that splits a span of the given level: 0 segment → fields, 1 field
 * repetition → components, 2 component → subcomponents, 3 nothing. */
static char level_sep(const ctx_t *c, int level) {
    switch (level) {
    case 0: return c->msg.delims.field;
    case 1: return c->msg.delims.comp;
    case 2: return c->msg.delims.sub;
    default: return 0;
    }
}

/* Field f (1-based) of a segment span, all repetitions. MSH-1 is the separator itself.
 * The fields of the last segment asked for are found in one scan and kept. */
span_t hv__v2_seg_field(ctx_t *c, span_t seg, unsigned f) {
    span_t out = {NULL, 0};
    int is_msh = seg.len >= 3 && memcmp(seg.p, "MSH", 3) == 0;
    if (f == 0 || seg.p == NULL) return out;
    if (is_msh && f == 1) {
        out.p = seg.p + 3;
        out.len = seg.len > 3 ? 1 : 0;
        return out;
    }
    if (c->fc_seg != seg.p || c->fc_len != seg.len) {
        const char *p = seg.p, *end = seg.p + seg.len;
        c->fc_seg = seg.p;
        c->fc_len = seg.len;
        c->fc_n = 0;
        while (c->fc_n < HV_ARRAY_LEN(c->fc)) {
            const char *q = memchr(p, c->msg.delims.field, (size_t)(end - p));
            c->fc[c->fc_n].p = p;
            c->fc[c->fc_n].len = (size_t)((q ? q : end) - p);
            c->fc_n++;
            if (q == NULL) break;
            p = q + 1;
        }
    }
    f = is_msh ? f - 1 : f;
    if (f < c->fc_n) out = c->fc[f];
    return out;
}

/* Piece i (1-based) of a span at a level; the whole span at level 3 for i == 1. */
span_t hv__v2_piece(const ctx_t *c, span_t s, int level, unsigned i) {
    span_t out = {NULL, 0};
    char sep = level_sep(c, level);
    if (i == 0 || s.p == NULL) return out;
    if (sep == 0) return i == 1 ? s : out;
    if (hv_hl7v2_span_piece(s, sep, i - 1, &out) != HV_OK) out.p = NULL, out.len = 0;
    return out;
}

/* ------------------------------------------------------------------------- */
/* Values (FHIR R4 datatypes.html)                                           */
/* ------------------------------------------------------------------------- */

/*
 * HL7 v2 DTM (v2.5.1 §2.A.22: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]) → FHIR
 * date, dateTime, instant or time. A time without an offset is read as UTC (FHIR
 * requires a zone when a time is given). NULL when the text is not a DTM.
 */
static char *dtm_to_fhir(ctx_t *c, const char *s, const char *type) {
    char d[20] = "", tz[8] = "", frac[8] = "";
    size_t n = 0, i;
    const char *p = s;
    char out[48];
    int want_date = strcmp(type, "date") == 0, want_time = strcmp(type, "time") == 0;
    int instant = strcmp(type, "instant") == 0;
    while (isdigit((unsigned char)*p) && n < 14) d[n++] = *p++;
    d[n] = '\0';
    if (*p == '.') {
        p++;
        for (i = 0; isdigit((unsigned char)*p) && i < 4; i++) frac[i] = *p++;
        frac[i] = '\0';
        while (isdigit((unsigned char)*p)) p++;
    }
    if ((*p == '+' || *p == '-') && strlen(p) >= 5 && isdigit((unsigned char)p[1]) &&
        isdigit((unsigned char)p[4])) {
        tz[0] = p[0], tz[1] = p[1], tz[2] = p[2], tz[3] = ':', tz[4] = p[3], tz[5] = p[4], tz[6] = '\0';
        p += 5;
    }
    if (*p != '\0') return NULL;
    if (want_time) {
        if (n < 4 || n % 2) return NULL;
        snprintf(out, sizeof(out), "%.2s:%.2s:%.2s%s%s", d, d + 2, n >= 6 ? d + 4 : "00",
                 frac[0] ? "." : "", frac);
        return hv_arena_strdup(c->arena, out);
    }
    if (n != 4 && n != 6 && n != 8 && n != 10 && n != 12 && n != 14) return NULL;
    if (memcmp(d, "0000", 4) == 0) return NULL; /* FHIR years start at 0001 */
    if (n >= 6 && (memcmp(d + 4, "01", 2) < 0 || memcmp(d + 4, "12", 2) > 0)) return NULL;
    if (n >= 8 && (memcmp(d + 6, "01", 2) < 0 || memcmp(d + 6, "31", 2) > 0)) return NULL;
    if (n >= 10 && memcmp(d + 8, "23", 2) > 0) return NULL;
    if (n >= 12 && memcmp(d + 10, "59", 2) > 0) return NULL;
    if (n >= 14 && memcmp(d + 12, "59", 2) > 0) return NULL;
    if (want_date || n <= 8) {
        if (instant) return NULL;
        /* YYYY, YYYY-MM or YYYY-MM-DD (d holds n >= 4 digits). */
        size_t o = 4;
        memcpy(out, d, 4);
        if (n >= 6) out[4] = '-', memcpy(out + 5, d + 4, 2), o = 7;
        if (n >= 8) out[7] = '-', memcpy(out + 8, d + 6, 2), o = 10;
        return hv_arena_strndup(c->arena, out, o);
    }
    {
        /* YYYY-MM-DDThh:mm:ss[.f][zone]: 19 characters, then the fraction and the zone. */
        size_t o = 0, k;
        memcpy(out, d, 4), out[4] = '-', memcpy(out + 5, d + 4, 2), out[7] = '-';
        memcpy(out + 8, d + 6, 2), out[10] = 'T', memcpy(out + 11, d + 8, 2), out[13] = ':';
        memcpy(out + 14, n >= 12 ? d + 10 : "00", 2), out[16] = ':';
        memcpy(out + 17, n >= 14 ? d + 12 : "00", 2);
        o = 19;
        if (frac[0]) {
            out[o++] = '.';
            for (k = 0; frac[k]; k++) out[o++] = frac[k];
        }
        if (tz[0]) {
            memcpy(out + o, tz, 6);
            o += 6;
        } else {
            out[o++] = 'Z';
        }
        out[o] = '\0';
    }
    return hv_arena_strdup(c->arena, out);
}

/* A decimal in FHIR form (json.html#number: no leading '+', no leading '.'). */
static hv__jv_t *decimal_value(ctx_t *c, const char *s) {
    char buf[64];
    size_t o = 0;
    const char *p = s;
    int digits = 0, dot = 0;
    if (*p == '+') p++;
    else if (*p == '-') buf[o++] = *p++;
    if (*p == '.') buf[o++] = '0';
    for (; *p && o < sizeof(buf) - 2; p++) {
        if (isdigit((unsigned char)*p)) digits++;
        else if (*p == '.' && !dot) dot = 1;
        else return NULL;
        buf[o++] = *p;
    }
    if (*p || digits == 0 || buf[o - 1] == '.') return NULL;
    buf[o] = '\0';
    /* Leading zeros are not JSON: "007" → "7". */
    {
        char *q = buf + (buf[0] == '-');
        while (q[0] == '0' && isdigit((unsigned char)q[1])) memmove(q, q + 1, strlen(q));
        /* An integer of more than 18 digits is refused like any other bad number: a JSON
         * reader with 64-bit integers (json-c, so this engine's own FHIR store) would read
         * it back as a different, saturated value. With a fraction it reads as written. */
        if (!dot && strlen(q) > 18) return NULL;
    }
    return hv__jv_num(c->arena, strtod(buf, NULL), buf);
}

/* HL7 table 0396 coding system names → FHIR system URIs (terminologies.html). */
static const char *const coding_systems[][2] = {
    {"LN", "http://loinc.org"},
    {"LOINC", "http://loinc.org"},
    {"SCT", "http://snomed.info/sct"},
    {"SNM", "http://snomed.info/sct"},
    {"SNOMED", "http://snomed.info/sct"},
    {"I10", "http://hl7.org/fhir/sid/icd-10"},
    {"I10C", "http://hl7.org/fhir/sid/icd-10-cm"},
    {"ICD10CM", "http://hl7.org/fhir/sid/icd-10-cm"},
    {"I9", "http://hl7.org/fhir/sid/icd-9-cm"},
    {"I9C", "http://hl7.org/fhir/sid/icd-9-cm"},
    {"I9CDX", "http://hl7.org/fhir/sid/icd-9-cm"},
    {"C4", "http://www.ama-assn.org/go/cpt"},
    {"CPT", "http://www.ama-assn.org/go/cpt"},
    {"CVX", "http://hl7.org/fhir/sid/cvx"},
    {"MVX", "http://terminology.hl7.org/CodeSystem/MVX"},
    {"NDC", "http://hl7.org/fhir/sid/ndc"},
    {"RXNORM", "http://www.nlm.nih.gov/research/umls/rxnorm"},
    {"RXN", "http://www.nlm.nih.gov/research/umls/rxnorm"},
    {"UCUM", "http://unitsofmeasure.org"},
    {"NUCC", "http://nucc.org/provider-taxonomy"},
    {"NPI", "http://hl7.org/fhir/sid/us-npi"},
    {"CDCREC", "urn:oid:2.16.840.1.113883.6.238"},
    {"ISO3166_1", "urn:iso:std:iso:3166"},
    {"ISO+", "urn:iso:std:iso:11073:10101"},
    {"ISO639", "urn:ietf:bcp:47"},
    {"HCPCS", "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"},
    {"HL7nnnn", ""},
};

const char *hv__v2_coding_system_uri(ctx_t *c, const char *name) {
    size_t i;
    if (strchr(name, ':') != NULL) return name; /* already a URI */
    if ((name[0] == 'H' || name[0] == 'h') && strncasecmp(name, "HL7", 3) == 0 &&
        strlen(name) == 7 && isdigit((unsigned char)name[3]))
        return hv_arena_sprintf(c->arena, "http://terminology.hl7.org/CodeSystem/v2-%s", name + 3);
    for (i = 0; i < HV_ARRAY_LEN(coding_systems) - 1; i++)
        if (strcasecmp(name, coding_systems[i][0]) == 0) return coding_systems[i][1];
    return hv_arena_sprintf(c->arena, "urn:id:%s", name);
}

/* Makes the JSON value of a primitive of FHIR type tname from text; NULL if the text
 * is not a valid value of that type. */
/* The FHIR primitive types primitive() treats apart (FHIR R4 datatypes.html#primitive). */
enum { P_TEXT, P_DATE, P_DECIMAL, P_INT, P_POSINT, P_BOOL, P_B64, P_TOKEN, P_ID };
#define P_IS_CODE 0x100 /* with a kind in ctx_t.pkcache: the type is "code" */

/* The kind of a primitive type name: a switch on the first letter, one strcmp. */
static int prim_kind(const char *t) {
    switch (t[0]) {
    case 'b':
        if (!strcmp(t, "boolean")) return P_BOOL;
        if (!strcmp(t, "base64Binary")) return P_B64;
        break;
    case 'c':
        if (!strcmp(t, "code") || !strcmp(t, "canonical")) return P_TOKEN;
        break;
    case 'd':
        if (!strcmp(t, "date") || !strcmp(t, "dateTime")) return P_DATE;
        if (!strcmp(t, "decimal")) return P_DECIMAL;
        break;
    case 'i':
        if (!strcmp(t, "instant")) return P_DATE;
        if (!strcmp(t, "integer")) return P_INT;
        if (!strcmp(t, "id")) return P_ID;
        break;
    case 'o':
        if (!strcmp(t, "oid")) return P_TOKEN;
        break;
    case 'p':
        if (!strcmp(t, "positiveInt")) return P_POSINT;
        break;
    case 't':
        if (!strcmp(t, "time")) return P_DATE;
        break;
    case 'u':
        if (!strcmp(t, "unsignedInt")) return P_INT;
        if (!strcmp(t, "uri") || !strcmp(t, "url")) return P_TOKEN;
        break;
    default:
        break;
    }
    return P_TEXT;
}

hv__jv_t *hv__v2_primitive(ctx_t *c, const char *tname, const char *text) {
    size_t i;
    int kind, is_code;
    if (text[0] == '\0') return NULL;
    {
        /* The kind of a type name met before, without the comparisons. */
        struct hv__v2_pkcache *e = &c->pkcache[((uintptr_t)tname >> 3) & (HV_ARRAY_LEN(c->pkcache) - 1)];
        if (e->tname != tname) {
            e->tname = tname;
            e->kind = prim_kind(tname) | (strcmp(tname, "code") == 0 ? P_IS_CODE : 0);
        }
        kind = e->kind & ~P_IS_CODE;
        is_code = (e->kind & P_IS_CODE) != 0;
    }
    if (kind == P_DATE) {
        char *v = dtm_to_fhir(c, text, tname);
        size_t tl = strlen(text);
        /* A value already in FHIR form (a constant of the tables, "2024-01-02"). */
        if (v == NULL && ((tl > 4 && text[4] == '-' && isdigit((unsigned char)text[0])) ||
                          (tl > 2 && text[2] == ':' && isdigit((unsigned char)text[0]))))
            v = (char *)text;
        return v ? hv__jv_str_ref(c->arena, v) : NULL; /* arena or table text: outlives the tree */
    }
    if (kind == P_DECIMAL) return decimal_value(c, text);
    if (kind == P_INT || kind == P_POSINT) {
        char *end;
        long v = strtol(text, &end, 10);
        if (*end || end == text || v < 0 || v > 2147483647L) return NULL;
        if (kind == P_POSINT && v == 0) return NULL;
        return hv__jv_int(c->arena, (int)v);
    }
    if (kind == P_BOOL) {
        if (!strcasecmp(text, "Y") || !strcasecmp(text, "true")) return hv__jv_bool(c->arena, 1);
        if (!strcasecmp(text, "N") || !strcasecmp(text, "false")) return hv__jv_bool(c->arena, 0);
        return NULL;
    }
    if (kind == P_B64) {
        size_t k = 0;
        for (i = 0; text[i]; i++) {
            if (isspace((unsigned char)text[i])) continue;
            if (!isalnum((unsigned char)text[i]) && text[i] != '+' && text[i] != '/' && text[i] != '=')
                return NULL;
            k++;
        }
        if (k % 4 != 0) return NULL;
        return hv__jv_str(c->arena, text);
    }
    {
        /* One pass: a control character other than a line feed or tab makes the text no FHIR
         * string; a line feed or tab (tab_nl) makes it no token or id either. */
        int tab_nl = 0;
        for (i = 0; text[i]; i++) {
            unsigned char ch = (unsigned char)text[i];
            if (ch < 32) {
                if (ch != '\n' && ch != '\t') return NULL;
                tab_nl = 1;
            }
        }
        if (kind == P_TOKEN || kind == P_ID) {
            if (tab_nl) return NULL;
            if (kind == P_ID && i > 64) return NULL;
            if (!is_code && memchr(text, ' ', i) != NULL) return NULL;
        }
    }
    /* text is the message's arena text or the tables' (it outlives the tree), i its length. */
    return hv__jv_str_ref(c->arena, text);
}

/* ------------------------------------------------------------------------- */
/* FHIR model look-ups, cached                                               */
/* ------------------------------------------------------------------------- */

/*
 * The rows and the cleaning pass ask the model for the same few hundred (owner, name) pairs
 * in every message; hv_fhir_elem_child hashes the name into the model's global index each
 * time. The context keeps the answers (the model is static): a hit costs one short hash and
 * a memcmp. A miss (or a name too long for a slot) asks the model and fills the slot.
 */
const hv_fhir_elem_t *hv__v2_elem_child(ctx_t *c, const hv_fhir_elem_t *owner, const char *name, size_t len,
                                        const hv_fhir_type_t **chosen) {
    struct hv__v2_ecache *e;
    const hv_fhir_type_t *t = NULL;
    const hv_fhir_elem_t *el;
    uint64_t h;
    if (owner == NULL || name == NULL) return NULL;
    if (len == 0 || len >= sizeof(e->name)) return hv_fhir_elem_child(owner, name, len, chosen);
    /* The owner, the length and three of the name's bytes pick the slot; memcmp decides. */
    h = ((uint64_t)(uintptr_t)owner >> 3) * 0x9e3779b97f4a7c15ULL;
    h ^= ((uint64_t)len << 24 | (uint64_t)(unsigned char)name[0] << 16 |
          (uint64_t)(unsigned char)name[len / 2] << 8 | (unsigned char)name[len - 1]) * 0xbf58476d1ce4e5b9ULL;
    e = &c->ecache[(h >> 40) & (HV_ARRAY_LEN(c->ecache) - 1)];
    if (e->owner == owner && e->len == len && memcmp(e->name, name, len) == 0) {
        if (e->elem != NULL && chosen != NULL) *chosen = e->chosen;
        return e->elem;
    }
    el = hv_fhir_elem_child(owner, name, len, &t);
    e->owner = owner;
    e->elem = el;
    e->chosen = t;
    e->len = (unsigned char)len;
    memcpy(e->name, name, len);
    if (el != NULL && chosen != NULL) *chosen = t;
    return el;
}

const hv_fhir_elem_t *const *hv__v2_elem_required(ctx_t *c, const hv_fhir_elem_t *owner, size_t *n) {
    struct hv__v2_rcache *e;
    uintptr_t h = (uintptr_t)owner;
    size_t i, cnt, k = 0;
    h ^= h >> 7;
    h ^= h >> 13;
    e = &c->rcache[h & (HV_ARRAY_LEN(c->rcache) - 1)];
    if (e->owner != owner) {
        cnt = hv_fhir_elem_child_count(owner);
        for (i = 0; i < cnt; i++) {
            const hv_fhir_elem_t *ch = hv_fhir_elem_child_at(owner, i);
            if (hv_fhir_elem_min(ch) == 0) continue;
            if (k == HV_ARRAY_LEN(e->req)) {
                k = 255;
                break;
            }
            e->req[k++] = ch;
        }
        e->owner = owner;
        e->n = (unsigned char)k;
    }
    if (e->n == 255) return NULL;
    *n = e->n;
    return e->req;
}
