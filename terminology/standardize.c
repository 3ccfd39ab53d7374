/*
 * standardize.c — lab-result standardization (issue 9 §5): a local lab result (code,
 * text, value, unit, reference range) becomes a LOINC-coded result with a UCUM unit,
 * the value converted to the LOINC example unit, an interpretation and a
 * plausibility verdict. Also the HTTP endpoints that expose it:
 *
 *   POST /standardize/lab-result     one result (simple JSON or a FHIR Observation)
 *   POST /standardize/batch          {"results": [...]} or [...], at most 1000
 *   POST /validate/lab-result        checks only: LOINC code, UCUM unit, commensurability,
 *                                    plausibility
 *   GET  /standardize/review         results held for review (low confidence, implausible)
 *   PUT  /standardize/conceptmap/:sender   a FHIR ConceptMap (local code -> LOINC) of a sender
 *
 * Matching, in order (the first that answers wins):
 *   1. conceptmap   the sender's ConceptMap maps the local code            confidence 1.0
 *   2. loinc-code   the code given is itself a loaded LOINC code           confidence 1.0
 *   3. exact-name   the text equals a LOINC long common name or short name 0.95
 *   4. fuzzy-name   full-text candidates scored by word coverage (0.65), unit
 *                   commensurable with the LOINC example unit (+0.2, -0.4 if not),
 *                   specimen agreement (+0.1, -0.2); capped at 0.9, and lowered to
 *                   0.6 when the best two candidates are within 0.05 (ambiguous).
 * A match below terminology.min_confidence (default 0.8) is not applied: the result
 * is "review" and is recorded in the review list; so is an implausible value.
 *
 * Interpretation (HL7 v2 table 0078 / FHIR v3-ObservationInterpretation): N, L, H
 * against low/high, LL and HH against criticalLow/criticalHigh when given, A for a
 * text value that differs from the range's normal text.
 */
#include "config.h"

#include <ctype.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "terminology/terminology_int.h"

#define MAX_CANDIDATES 40
#define MAX_TOKENS 16
#define MAX_BATCH 1000

/* Common non-UCUM spellings in lab feeds, and their UCUM codes. */
static const struct {
    const char *from, *to;
} unit_synonyms[] = {
    {"mg/dl", "mg/dL"},     {"g/dl", "g/dL"},         {"mmol/l", "mmol/L"},
    {"umol/l", "umol/L"},   {"mcg", "ug"},            {"mcg/dl", "ug/dL"},
    {"mcg/l", "ug/L"},      {"x10E3/uL", "10*3/uL"},  {"K/uL", "10*3/uL"},
    {"K/ul", "10*3/uL"},    {"x10E6/uL", "10*6/uL"},  {"M/uL", "10*6/uL"},
    {"10^3/ul", "10*3/uL"}, {"IU/L", "[IU]/L"},       {"IU/mL", "[IU]/mL"},
    {"mIU/L", "m[IU]/L"},   {"mEq/L", "meq/L"},       {"mEq/l", "meq/L"},
    {"degC", "Cel"},        {"deg C", "Cel"},         {"C", "Cel"},
    {"\xc2\xb0" "C", "Cel"}, {"degF", "[degF]"},      {"F", "[degF]"},
    {"\xc2\xb0" "F", "[degF]"}, {"sec", "s"},         {"mm Hg", "mm[Hg]"},
    {"mmHg", "mm[Hg]"},     {"bpm", "/min"},          {"lbs", "[lb_av]"},
    {"lb", "[lb_av]"},      {"in", "[in_i]"},         {"pct", "%"},
};

/* Plausible limits by LOINC component and property, in the given UCUM unit (wide:
 * values outside are physiologically impossible or a unit error, not just abnormal). */
static const struct {
    const char *component, *property, *unit;
    double min, max;
} plausible[] = {
    {"Glucose", "MCnc", "mg/dL", 0, 2000},       {"Glucose", "SCnc", "mmol/L", 0, 111},
    {"Sodium", "SCnc", "mmol/L", 80, 200},       {"Potassium", "SCnc", "mmol/L", 0.5, 15},
    {"Hemoglobin", "MCnc", "g/dL", 0.5, 30},     {"Creatinine", "MCnc", "mg/dL", 0, 40},
    {"Body temperature", "Temp", "Cel", 20, 46}, {"Leukocytes", "NCnc", "10*3/uL", 0, 1000},
    {"Hemoglobin A1c/Hemoglobin.total", "MFr", "%", 2, 25},
    {"Cholesterol", "MCnc", "mg/dL", 0, 2000},
};

typedef struct lab {
    const char *sender, *code, *text, *unit;
    int has_value;
    double value;
    const char *value_text;
    int has_low, has_high, has_clow, has_chigh;
    double low, high, clow, chigh;
    const char *range_unit, *normal_text;
} lab_t;

typedef struct cand {
    hv_terminology_concept_t c;
    double score;
} cand_t;

/* ---- input ---------------------------------------------------------------- */

static struct json_object *get(struct json_object *o, const char *k) {
    struct json_object *v = NULL;
    if (o == NULL || !json_object_is_type(o, json_type_object)) return NULL;
    return json_object_object_get_ex(o, k, &v) ? v : NULL;
}

static int get_num(struct json_object *o, const char *k, double *out) {
    struct json_object *v = get(o, k);
    if (v == NULL) return 0;
    if (json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int)) {
        *out = json_object_get_double(v);
        return isfinite(*out);
    }
    if (json_object_is_type(v, json_type_string)) {
        const char *s = json_object_get_string(v);
        char *end = NULL;
        *out = strtod(s, &end);
        return end != s && *end == '\0' && isfinite(*out);
    }
    return 0;
}

static const char *get_str(struct json_object *o, const char *k) {
    struct json_object *v = get(o, k);
    return v != NULL && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static struct json_object *first(struct json_object *arr) {
    if (arr == NULL || !json_object_is_type(arr, json_type_array) ||
        json_object_array_length(arr) == 0)
        return NULL;
    return json_object_array_get_idx(arr, 0);
}

/* Reads either the simple form or a FHIR R4 Observation. */
static int read_lab(struct json_object *in, lab_t *l, hv_error_t *err) {
    struct json_object *rr;
    memset(l, 0, sizeof *l);
    if (!json_object_is_type(in, json_type_object)) {
        hv_error_set(err, HV_EINVAL, NULL, "a lab result must be a JSON object");
        return HV_EINVAL;
    }
    l->sender = get_str(in, "sender");
    if (get_str(in, "resourceType") != NULL) {
        struct json_object *code = get(in, "code"), *coding = first(get(code, "coding"));
        struct json_object *vq = get(in, "valueQuantity");
        if (strcmp(get_str(in, "resourceType"), "Observation") != 0) {
            hv_error_set(err, HV_EINVAL, NULL, "a FHIR input must be an Observation");
            return HV_EINVAL;
        }
        if (l->sender == NULL) l->sender = get_str(get(in, "meta"), "source");
        l->code = get_str(coding, "code");
        l->text = get_str(code, "text");
        if (l->text == NULL) l->text = get_str(coding, "display");
        if (vq != NULL) {
            l->has_value = get_num(vq, "value", &l->value);
            l->unit = get_str(vq, "code");
            if (l->unit == NULL) l->unit = get_str(vq, "unit");
        } else {
            l->value_text = get_str(in, "valueString");
        }
        rr = first(get(in, "referenceRange"));
        if (rr != NULL) {
            l->has_low = get_num(get(rr, "low"), "value", &l->low);
            l->has_high = get_num(get(rr, "high"), "value", &l->high);
            l->range_unit = get_str(get(rr, "low"), "code");
            if (l->range_unit == NULL) l->range_unit = get_str(get(rr, "high"), "code");
            l->normal_text = get_str(rr, "text");
        }
    } else {
        struct json_object *v = get(in, "value");
        l->code = get_str(in, "code");
        l->text = get_str(in, "text");
        if (l->text == NULL) l->text = get_str(in, "name");
        l->unit = get_str(in, "unit");
        if (v != NULL && json_object_is_type(v, json_type_string) && !get_num(in, "value", &l->value))
            l->value_text = json_object_get_string(v);
        else
            l->has_value = get_num(in, "value", &l->value);
        rr = get(in, "referenceRange");
        if (rr != NULL) {
            l->has_low = get_num(rr, "low", &l->low);
            l->has_high = get_num(rr, "high", &l->high);
            l->has_clow = get_num(rr, "criticalLow", &l->clow);
            l->has_chigh = get_num(rr, "criticalHigh", &l->chigh);
            l->range_unit = get_str(rr, "unit");
            l->normal_text = get_str(rr, "normal");
            if (l->normal_text == NULL) l->normal_text = get_str(rr, "text");
        }
    }
    if (l->code == NULL && l->text == NULL) {
        hv_error_set(err, HV_EINVAL, NULL, "a lab result needs a code or a text");
        return HV_EINVAL;
    }
    return HV_OK;
}

/* ---- units ---------------------------------------------------------------- */

/* The UCUM form of a unit as labs write it; NULL if neither it nor a synonym is UCUM. */
static const char *ucum_unit(hv_ucum_t *u, const char *unit, hv_ucum_canon_t *c) {
    size_t i;
    if (unit == NULL || u == NULL) return NULL;
    /* The lab spellings first: "K/uL" is valid UCUM (kelvin per microliter) but a lab
     * means thousands per microliter; "C" is the coulomb to UCUM and Celsius to a lab. */
    for (i = 0; i < HV_ARRAY_LEN(unit_synonyms); i++)
        if (strcmp(unit, unit_synonyms[i].from) == 0 &&
            hv_ucum_parse(u, unit_synonyms[i].to, c, NULL) == HV_OK)
            return unit_synonyms[i].to;
    if (hv_ucum_parse(u, unit, c, NULL) == HV_OK) return unit;
    return NULL;
}

/* The first example UCUM unit of a LOINC concept ("mg/dL;mmol/L" -> "mg/dL"). */
static int example_unit(const hv_terminology_concept_t *c, char *out, size_t outlen) {
    struct json_object *p = c->props != NULL ? json_tokener_parse(c->props) : NULL;
    const char *s = get_str(p, "exampleUcumUnits");
    int ok = 0;
    if (s != NULL && s[0] != '\0') {
        size_t n = strcspn(s, ";");
        if (n < outlen) {
            memcpy(out, s, n);
            out[n] = '\0';
            ok = 1;
        }
    }
    json_object_put(p);
    return ok;
}

static const char *prop(const hv_terminology_concept_t *c, const char *k, char *buf, size_t len) {
    struct json_object *p = c->props != NULL ? json_tokener_parse(c->props) : NULL;
    const char *s = get_str(p, k);
    if (s != NULL) snprintf(buf, len, "%s", s);
    json_object_put(p);
    return s != NULL ? buf : NULL;
}

/* ---- matching -------------------------------------------------------------- */

static size_t tokenize(const char *s, char tok[][32], size_t max) {
    static const char *const stop[] = {"in", "of", "by", "the", "and", "or", "at", "on", "for",
                                       "level", "test", "result", "mass", "volume", NULL};
    size_t n = 0;
    while (s != NULL && *s != '\0' && n < max) {
        size_t len = 0, k;
        int skip = 0;
        while (*s != '\0' && !isalnum((unsigned char)*s)) s++;
        while (*s != '\0' && isalnum((unsigned char)*s)) {
            if (len < 31) tok[n][len++] = (char)tolower((unsigned char)*s);
            s++;
        }
        tok[n][len] = '\0';
        if (len == 0) continue;
        for (k = 0; stop[k] != NULL; k++)
            if (strcmp(tok[n], stop[k]) == 0) skip = 1;
        if (!skip) n++;
    }
    return n;
}

/* The specimen a text names: "Ser/Plas", "Bld", "Urine", or NULL. */
static const char *specimen_of(char tok[][32], size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        if (!strcmp(tok[i], "serum") || !strcmp(tok[i], "plasma") || !strcmp(tok[i], "ser") ||
            !strcmp(tok[i], "serpl") || !strcmp(tok[i], "plas"))
            return "Ser/Plas";
        if (!strcmp(tok[i], "blood") || !strcmp(tok[i], "bld") || !strcmp(tok[i], "wb"))
            return "Bld";
        if (!strcmp(tok[i], "urine") || !strcmp(tok[i], "ur")) return "Urine";
    }
    return NULL;
}

static int token_match(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (strcmp(a, b) == 0) return 1;
    if (la >= 3 && lb >= la && strncmp(a, b, la) == 0) return 1; /* "glu" ~ "glucose" */
    if (lb >= 3 && la >= lb && strncmp(a, b, lb) == 0) return 1;
    return 0;
}

static double score(hv_ucum_t *u, const lab_t *l, const hv_ucum_canon_t *unit, int unit_ok,
                    const hv_terminology_concept_t *c) {
    char in[MAX_TOKENS][32], ct[3 * MAX_TOKENS][32], text[1024], sb[64], ex[64];
    const char *want = NULL, *sys;
    size_t ni, nc, i, j, hit = 0;
    double s;
    ni = tokenize(l->text != NULL ? l->text : l->code, in, MAX_TOKENS);
    snprintf(text, sizeof text, "%s %s %s", c->display, prop(c, "shortName", sb, sizeof sb) ? sb : "",
             prop(c, "component", ex, sizeof ex) ? ex : "");
    nc = tokenize(text, ct, 3 * MAX_TOKENS);
    for (i = 0; i < ni; i++)
        for (j = 0; j < nc; j++)
            if (token_match(in[i], ct[j])) {
                hit++;
                break;
            }
    s = ni > 0 ? 0.65 * (double)hit / (double)ni : 0;
    if (unit_ok && example_unit(c, ex, sizeof ex)) {
        hv_ucum_canon_t e;
        if (hv_ucum_parse(u, ex, &e, NULL) == HV_OK)
            s += hv_ucum_canon_commensurable(unit, &e) ? 0.2 : -0.4;
    }
    want = specimen_of(in, ni);
    sys = prop(c, "system", sb, sizeof sb);
    if (want != NULL && sys != NULL) s += strcmp(want, sys) == 0 ? 0.1 : -0.2;
    if (!c->active) s -= 0.3;
    return s > 0.9 ? 0.9 : s;
}

static int lookup_map(hv_db_t *db, const char *sender, const char *code, hv_arena_t *a,
                      const char **loinc) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "SELECT loinc FROM local_code_map WHERE sender = $1 AND local_code = $2",
                           &st);
    if (rc == HV_OK) rc = hv_db_bind_text(st, 1, sender, strlen(sender));
    if (rc == HV_OK) rc = hv_db_bind_text(st, 2, code, strlen(code));
    if (rc == HV_OK) rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        size_t n;
        const char *s = hv_db_column_text(st, 0, &n);
        *loinc = hv_arena_strndup(a, s != NULL ? s : "", s != NULL ? n : 0);
        rc = *loinc != NULL ? HV_OK : HV_ENOMEM;
    } else if (rc == HV_OK) {
        rc = HV_ENOTFOUND;
    }
    if (st != NULL) hv_db_done(st);
    return rc;
}

/* Finds the LOINC concept; *method and *confidence say how. HV_ENOTFOUND if none. */
static int match(hv_db_t *db, hv_ucum_t *u, const lab_t *l, const hv_ucum_canon_t *unit,
                 int unit_ok, hv_arena_t *a, hv_terminology_concept_t *out, const char **method,
                 double *confidence) {
    const char *mapped = NULL;
    hv_terminology_concept_t *res = NULL;
    cand_t cands[MAX_CANDIDATES];
    size_t ncand = 0, n = 0, i, k;
    int rc;
    if (l->sender != NULL && l->code != NULL &&
        lookup_map(db, l->sender, l->code, a, &mapped) == HV_OK &&
        hv_terminology_lookup(db, HV_TERMINOLOGY_LOINC, mapped, a, out) == HV_OK) {
        *method = "conceptmap";
        *confidence = 1.0;
        return HV_OK;
    }
    if (l->code != NULL && hv_terminology_loinc_code_valid(l->code) &&
        hv_terminology_lookup(db, HV_TERMINOLOGY_LOINC, l->code, a, out) == HV_OK) {
        *method = "loinc-code";
        *confidence = 1.0;
        return HV_OK;
    }
    if (l->text == NULL) return HV_ENOTFOUND;
    /* Candidates: all words together first, else each word alone. */
    rc = hv_terminology_search(db, HV_TERMINOLOGY_LOINC, l->text, MAX_CANDIDATES, 0, a, &res, &n);
    for (i = 0; rc == HV_OK && i < n && ncand < MAX_CANDIDATES; i++) cands[ncand++].c = res[i];
    if (ncand == 0) {
        char tok[MAX_TOKENS][32];
        size_t nt = tokenize(l->text, tok, MAX_TOKENS), t;
        for (t = 0; t < nt; t++) {
            if (hv_terminology_search(db, HV_TERMINOLOGY_LOINC, tok[t], 10, 0, a, &res, &n) != HV_OK)
                continue;
            for (i = 0; i < n && ncand < MAX_CANDIDATES; i++) {
                for (k = 0; k < ncand; k++)
                    if (strcmp(cands[k].c.code, res[i].code) == 0) break;
                if (k == ncand) cands[ncand++].c = res[i];
            }
        }
    }
    if (ncand == 0) return HV_ENOTFOUND;
    for (i = 0; i < ncand; i++) {
        char sn[128];
        if (strcasecmp(l->text, cands[i].c.display) == 0 ||
            (prop(&cands[i].c, "shortName", sn, sizeof sn) && strcasecmp(l->text, sn) == 0)) {
            double s = score(u, l, unit, unit_ok, &cands[i].c);
            *out = cands[i].c;
            *method = "exact-name";
            /* An exact name with an incommensurable unit is suspect. */
            *confidence = s < 0.5 ? 0.6 : 0.95;
            return HV_OK;
        }
    }
    for (i = 0; i < ncand; i++) cands[i].score = score(u, l, unit, unit_ok, &cands[i].c);
    for (i = 1, k = 0; i < ncand; i++)
        if (cands[i].score > cands[k].score) k = i;
    *out = cands[k].c;
    *method = "fuzzy-name";
    *confidence = cands[k].score < 0 ? 0 : cands[k].score;
    for (i = 0; i < ncand; i++)
        if (i != k && cands[k].score - cands[i].score < 0.05 && *confidence > 0.6) *confidence = 0.6;
    return HV_OK;
}

/* ---- interpretation and plausibility --------------------------------------- */

/* A range bound in the result's unit: converted with UCUM (affine for Cel/[degF]), or
 * as is when either unit is unknown. */
static double bound(const hv_ucum_canon_t *from, const hv_ucum_canon_t *to, double x) {
    double v;
    if (from != NULL && to != NULL && hv_ucum_canon_convert(from, x, to, &v, NULL) == HV_OK)
        return v;
    return x;
}

static const char *interpret(const lab_t *l, double v, const hv_ucum_canon_t *from,
                             const hv_ucum_canon_t *to) {
    if (!l->has_value) {
        if (l->value_text != NULL && l->normal_text != NULL)
            return strcasecmp(l->value_text, l->normal_text) == 0 ? "N" : "A";
        return NULL;
    }
    if (l->has_clow && v < bound(from, to, l->clow)) return "LL";
    if (l->has_chigh && v > bound(from, to, l->chigh)) return "HH";
    if (l->has_low && v < bound(from, to, l->low)) return "L";
    if (l->has_high && v > bound(from, to, l->high)) return "H";
    if (l->has_low || l->has_high) return "N";
    return NULL;
}

/* NULL if plausible, else the reason (static text). */
static const char *implausible(hv_ucum_t *u, const hv_terminology_concept_t *c,
                               const hv_ucum_canon_t *unit, double value, char *buf, size_t len) {
    char comp[128], prop_[32], scale[16];
    size_t i;
    if (prop(c, "scale", scale, sizeof scale) && strcmp(scale, "Qn") == 0 && value < 0 &&
        !(prop(c, "property", prop_, sizeof prop_) && strcmp(prop_, "Temp") == 0)) {
        snprintf(buf, len, "a negative value for a quantity");
        return buf;
    }
    if (!prop(c, "component", comp, sizeof comp) || !prop(c, "property", prop_, sizeof prop_))
        return NULL;
    for (i = 0; i < HV_ARRAY_LEN(plausible); i++) {
        hv_ucum_canon_t lim;
        double v;
        if (strcmp(plausible[i].component, comp) != 0 || strcmp(plausible[i].property, prop_) != 0)
            continue;
        if (hv_ucum_parse(u, plausible[i].unit, &lim, NULL) != HV_OK ||
            hv_ucum_canon_convert(unit, value, &lim, &v, NULL) != HV_OK)
            continue;
        if (v < plausible[i].min || v > plausible[i].max) {
            snprintf(buf, len, "%g %s is outside the plausible range %g-%g %s for %s", v,
                     plausible[i].unit, plausible[i].min, plausible[i].max, plausible[i].unit, comp);
            return buf;
        }
    }
    return NULL;
}

static int record_review(hv_db_t *db, const lab_t *l, const char *candidate, double confidence,
                         const char *method, const char *reason) {
    hv_db_stmt_t *st = NULL;
    char when[32];
    const char *vals[5];
    int rc, i;
    hv_time_rfc3339(hv_now_ms(), when, sizeof when);
    vals[0] = l->sender;
    vals[1] = l->code;
    vals[2] = l->text;
    vals[3] = l->unit;
    vals[4] = candidate;
    rc = hv_db_prepare(db,
                       "INSERT INTO review (received_at, sender, local_code, text, unit, candidate,"
                       " confidence, method, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                       &st);
    if (rc == HV_OK) rc = hv_db_bind_text(st, 1, when, strlen(when));
    for (i = 0; rc == HV_OK && i < 5; i++)
        rc = vals[i] != NULL ? hv_db_bind_text(st, i + 2, vals[i], strlen(vals[i]))
                             : hv_db_bind_null(st, i + 2);
    if (rc == HV_OK) rc = hv_db_bind_double(st, 7, confidence);
    if (rc == HV_OK) rc = method != NULL ? hv_db_bind_text(st, 8, method, strlen(method))
                                         : hv_db_bind_null(st, 8);
    if (rc == HV_OK) rc = hv_db_bind_text(st, 9, reason, strlen(reason));
    if (rc == HV_OK) rc = hv_db_step(st);
    if (st != NULL) hv_db_done(st);
    return rc;
}

/* ---- the public operation --------------------------------------------------- */

int hv_terminology_standardize(hv_db_t *db, hv_ucum_t *u, struct json_object *input,
                               double min_confidence, int review, struct json_object **out,
                               hv_error_t *err) {
    hv_arena_t *a = NULL;
    lab_t l;
    hv_ucum_canon_t unit, target;
    hv_terminology_concept_t c;
    const char *method = NULL, *uunit = NULL, *status = "standardized", *interp = NULL;
    const char *reason = NULL;
    char ex[64], why[256];
    double confidence = 0, value = 0;
    int rc, unit_ok, matched, converted = 0;
    struct json_object *o = NULL, *warnings = NULL, *tmp;

    rc = read_lab(input, &l, err);
    if (rc != HV_OK) return rc;
    a = hv_arena_new(0);
    o = json_object_new_object();
    warnings = json_object_new_array();
    if (a == NULL || o == NULL || warnings == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    uunit = ucum_unit(u, l.unit, &unit);
    unit_ok = uunit != NULL;
    if (l.unit != NULL && !unit_ok)
        json_object_array_add(warnings, json_object_new_string("the unit is not valid UCUM"));
    rc = match(db, u, &l, &unit, unit_ok, a, &c, &method, &confidence);
    if (rc != HV_OK && rc != HV_ENOTFOUND) goto out;
    matched = rc == HV_OK;
    rc = HV_OK;
    value = l.value;
    if (matched) {
        tmp = json_object_new_object();
        hv_json_set_str(tmp, "code", c.code);
        hv_json_set_str(tmp, "display", c.display);
        hv_json_set_str(tmp, "system", HV_TERMINOLOGY_LOINC);
        hv_json_set(tmp, "confidence", hv__json_number(floor(confidence * 100 + 0.5) / 100));
        hv_json_set_str(tmp, "method", method);
        hv_json_set(o, "loinc", tmp);
        /* The value in the LOINC example unit, where commensurable. */
        if (unit_ok && l.has_value && example_unit(&c, ex, sizeof ex) &&
            hv_ucum_parse(u, ex, &target, NULL) == HV_OK) {
            if (hv_ucum_canon_commensurable(&unit, &target)) {
                double v;
                if (hv_ucum_canon_convert(&unit, l.value, &target, &v, NULL) == HV_OK) {
                    value = v;
                    uunit = hv_arena_strdup(a, ex);
                    converted = 1;
                }
            } else {
                json_object_array_add(
                    warnings, json_object_new_string("the unit is not commensurable with the LOINC "
                                                     "code's unit: the value was not converted"));
                if (confidence > 0.7) confidence = 0.7;
                if (json_object_object_get_ex(o, "loinc", &tmp))
                    hv_json_set(tmp, "confidence", hv__json_number(confidence));
            }
        }
    }
    if (l.has_value) {
        tmp = json_object_new_object();
        hv_json_set(tmp, "value", hv__json_number(value));
        if (uunit != NULL) hv_json_set_str(tmp, "unit", uunit);
        hv_json_set(tmp, "original", hv__json_number(l.value));
        if (l.unit != NULL) hv_json_set_str(tmp, "originalUnit", l.unit);
        hv_json_set(tmp, "converted", json_object_new_boolean(converted));
        hv_json_set(o, "value", tmp);
    } else if (l.value_text != NULL) {
        hv_json_set_str(o, "valueText", l.value_text);
    }
    /* The range is in the result's original unit unless it names its own; it is compared
     * in the unit of the value reported. */
    {
        hv_ucum_canon_t ru;
        const hv_ucum_canon_t *from = unit_ok ? &unit : NULL;
        if (l.range_unit != NULL && ucum_unit(u, l.range_unit, &ru) != NULL) from = &ru;
        interp = interpret(&l, value, from, converted ? &target : (unit_ok ? &unit : NULL));
    }
    if (interp != NULL) hv_json_set_str(o, "interpretation", interp);
    if (matched && l.has_value && unit_ok) {
        reason = implausible(u, &c, &unit, l.value, why, sizeof why);
        tmp = json_object_new_object();
        hv_json_set(tmp, "plausible", json_object_new_boolean(reason == NULL));
        if (reason != NULL) hv_json_set_str(tmp, "reason", reason);
        hv_json_set(o, "plausibility", tmp);
    }
    if (!matched) {
        status = "unmatched";
        reason = "no LOINC candidate";
    } else if (reason != NULL) {
        status = "review";
    } else if (confidence < min_confidence) {
        status = "review";
        reason = "low confidence";
    }
    hv_json_set_str(o, "status", status);
    if (json_object_array_length(warnings) > 0) {
        hv_json_set(o, "warnings", warnings);
        warnings = NULL;
    }
    if (review && strcmp(status, "standardized") != 0) {
        if (record_review(db, &l, matched ? c.code : NULL, confidence, method, reason) != HV_OK) {
            hv_error_set(err, HV_EDB, NULL, "cannot record the review item: %s", hv_db_errmsg(db));
            rc = HV_EDB;
            goto out;
        }
    }
    *out = o;
    o = NULL;
out:
    json_object_put(o);
    json_object_put(warnings);
    hv_arena_free(a);
    return rc;
}

int hv_terminology_validate_lab(hv_db_t *db, hv_ucum_t *u, struct json_object *input,
                                struct json_object **out, hv_error_t *err) {
    hv_arena_t *a = NULL;
    lab_t l;
    hv_ucum_canon_t unit, target;
    hv_terminology_concept_t c;
    struct json_object *o = NULL, *issues = NULL;
    char ex[64], why[256];
    int rc, known = 0, errors = 0;
#define ISSUE(sev, code_, ...)                                                                     \
    do {                                                                                           \
        char m_[800];                                                                              \
        struct json_object *i_ = json_object_new_object();                                         \
        snprintf(m_, sizeof m_, __VA_ARGS__);                                                      \
        hv_json_set_str(i_, "severity", sev);                                                      \
        hv_json_set_str(i_, "code", code_);                                                        \
        hv_json_set_str(i_, "message", m_);                                                        \
        json_object_array_add(issues, i_);                                                         \
        if (strcmp(sev, "error") == 0) errors++;                                                   \
    } while (0)
    rc = read_lab(input, &l, err);
    if (rc != HV_OK) return rc;
    a = hv_arena_new(0);
    o = json_object_new_object();
    issues = json_object_new_array();
    if (a == NULL || o == NULL || issues == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    if (l.code == NULL) {
        ISSUE("error", "missing-code", "no LOINC code given");
    } else if (!hv_terminology_loinc_code_valid(l.code)) {
        ISSUE("error", "invalid-code", "'%.32s' is not a LOINC code (format or check digit)", l.code);
    } else if (hv_terminology_lookup(db, HV_TERMINOLOGY_LOINC, l.code, a, &c) != HV_OK) {
        ISSUE("error", "unknown-code", "'%.32s' is not in the loaded LOINC table", l.code);
    } else {
        known = 1;
        if (!c.active) ISSUE("warning", "deprecated-code", "'%.32s' is deprecated", l.code);
    }
    if (l.unit == NULL) {
        if (l.has_value) ISSUE("warning", "missing-unit", "a numeric value without a unit");
    } else if (hv_ucum_parse(u, l.unit, &unit, err) != HV_OK) {
        ISSUE("error", "invalid-unit", "'%.64s' is not valid UCUM: column %d: %s", l.unit,
              err != NULL ? err->column : 0, err != NULL ? err->message : "");
    } else if (known && example_unit(&c, ex, sizeof ex) &&
               hv_ucum_parse(u, ex, &target, NULL) == HV_OK &&
               !hv_ucum_canon_commensurable(&unit, &target)) {
        ISSUE("error", "incommensurable-unit", "'%.64s' does not measure what %s measures (%s)",
              l.unit, l.code, ex);
    } else if (known && l.has_value) {
        const char *r = implausible(u, &c, &unit, l.value, why, sizeof why);
        if (r != NULL) ISSUE("error", "implausible-value", "%s", r);
    }
    if (!l.has_value && l.value_text == NULL) ISSUE("warning", "missing-value", "no value given");
    hv_json_set(o, "valid", json_object_new_boolean(errors == 0));
    hv_json_set(o, "issues", issues);
    issues = NULL;
    *out = o;
    o = NULL;
    rc = HV_OK;
out:
    json_object_put(o);
    json_object_put(issues);
    hv_arena_free(a);
    return rc;
#undef ISSUE
}

int hv_terminology_conceptmap_put(hv_db_t *db, const char *sender, struct json_object *cm,
                                  size_t *count, hv_error_t *err) {
    struct json_object *groups = get(cm, "group");
    const char *p[2] = {sender, NULL};
    hv_db_stmt_t *st = NULL;
    size_t gi, ei, ti, n = 0;
    int rc;
    if (!json_object_is_type(cm, json_type_object) || get_str(cm, "resourceType") == NULL ||
        strcmp(get_str(cm, "resourceType"), "ConceptMap") != 0 || groups == NULL ||
        !json_object_is_type(groups, json_type_array)) {
        hv_error_set(err, HV_EINVAL, NULL, "the body must be a FHIR ConceptMap with groups");
        return HV_EINVAL;
    }
    if (hv_db_prepare(db, "DELETE FROM local_code_map WHERE sender = $1", &st) != HV_OK ||
        hv_db_bind_text(st, 1, p[0], strlen(p[0])) != HV_OK || hv_db_step(st) != HV_OK) {
        if (st != NULL) hv_db_done(st);
        hv_error_set(err, HV_EDB, NULL, "%s", hv_db_errmsg(db));
        return HV_EDB;
    }
    hv_db_done(st);
    for (gi = 0; gi < json_object_array_length(groups); gi++) {
        struct json_object *g = json_object_array_get_idx(groups, gi), *els = get(g, "element");
        const char *target = get_str(g, "target");
        if (target != NULL && strcmp(target, HV_TERMINOLOGY_LOINC) != 0) continue;
        for (ei = 0; els != NULL && ei < json_object_array_length(els); ei++) {
            struct json_object *el = json_object_array_get_idx(els, ei), *ts = get(el, "target");
            const char *code = get_str(el, "code");
            for (ti = 0; code != NULL && ts != NULL && ti < json_object_array_length(ts); ti++) {
                struct json_object *t = json_object_array_get_idx(ts, ti);
                const char *loinc = get_str(t, "code"), *eq = get_str(t, "equivalence");
                /* FHIR R4 concept-map-equivalence: only mappings that preserve meaning. */
                if (loinc == NULL || (eq != NULL && strcmp(eq, "equivalent") != 0 &&
                                      strcmp(eq, "equal") != 0 && strcmp(eq, "relatedto") != 0))
                    continue;
                if (!hv_terminology_loinc_code_valid(loinc)) {
                    hv_error_set(err, HV_EINVAL, NULL, "group %zu element %zu: '%.32s' is not a LOINC code",
                                 gi, ei, loinc);
                    return HV_EINVAL;
                }
                rc = hv_db_prepare(db,
                                   "INSERT INTO local_code_map (sender, local_code, loinc, map_name)"
                                   " VALUES ($1, $2, $3, $4) ON CONFLICT (sender, local_code)"
                                   " DO UPDATE SET loinc = excluded.loinc",
                                   &st);
                if (rc == HV_OK) rc = hv_db_bind_text(st, 1, sender, strlen(sender));
                if (rc == HV_OK) rc = hv_db_bind_text(st, 2, code, strlen(code));
                if (rc == HV_OK) rc = hv_db_bind_text(st, 3, loinc, strlen(loinc));
                if (rc == HV_OK)
                    rc = get_str(cm, "name") != NULL
                             ? hv_db_bind_text(st, 4, get_str(cm, "name"), strlen(get_str(cm, "name")))
                             : hv_db_bind_null(st, 4);
                if (rc == HV_OK) rc = hv_db_step(st);
                if (st != NULL) hv_db_done(st);
                if (rc != HV_OK) {
                    hv_error_set(err, HV_EDB, NULL, "%s", hv_db_errmsg(db));
                    return HV_EDB;
                }
                n++;
                break; /* the first usable target */
            }
        }
    }
    *count = n;
    return HV_OK;
}

int hv_terminology_review_list(hv_db_t *db, size_t limit, struct json_object **out) {
    hv_db_stmt_t *st = NULL;
    struct json_object *arr = json_object_new_array();
    static const char *const cols[] = {"receivedAt", "sender", "localCode", "text", "unit",
                                       "candidate"};
    int rc;
    if (arr == NULL) return HV_ENOMEM;
    rc = hv_db_prepare(db,
                       "SELECT received_at, sender, local_code, text, unit, candidate, confidence,"
                       " method, reason, id FROM review ORDER BY id DESC LIMIT $1",
                       &st);
    if (rc == HV_OK) rc = hv_db_bind_int64(st, 1, (int64_t)limit);
    while (rc == HV_OK && (rc = hv_db_step(st)) == HV_DB_ROW) {
        struct json_object *o = json_object_new_object();
        size_t i, n;
        rc = HV_OK;
        hv_json_set_int(o, "id", hv_db_column_int64(st, 9));
        for (i = 0; i < HV_ARRAY_LEN(cols); i++)
            if (!hv_db_column_is_null(st, (int)i)) {
                const char *s = hv_db_column_text(st, (int)i, &n);
                hv_json_set(o, cols[i], json_object_new_string_len(s != NULL ? s : "", (int)n));
            }
        hv_json_set(o, "confidence", hv__json_number(hv_db_column_double(st, 6)));
        if (!hv_db_column_is_null(st, 7)) hv_json_set_str(o, "method", hv_db_column_text(st, 7, &n));
        if (!hv_db_column_is_null(st, 8)) hv_json_set_str(o, "reason", hv_db_column_text(st, 8, &n));
        json_object_array_add(arr, o);
    }
    if (st != NULL) hv_db_done(st);
    if (rc != HV_OK) {
        json_object_put(arr);
        return HV_EDB;
    }
    *out = arr;
    return HV_OK;
}
