/*
 * channel.c — the terminology module's channel steps (engine.h "Channels"),
 * registered by the small module hv_terminology_channels_module:
 *
 *   loinc-standardize  lab results (FHIR R4 Observations, alone or in a Bundle) are
 *                      standardized by hv_terminology_standardize (standardize.c):
 *                      the LOINC coding is put first in Observation.code.coding (the
 *                      local coding is kept after it), the value is converted to the
 *                      LOINC example UCUM unit (the original quantity is kept in an
 *                      extension), the interpretation is filled from the reference
 *                      range when the sender gave none, and meta.tag records the
 *                      verdict (standardized | review | unmatched). A result held for
 *                      review or unmatched is left as received (never a guess applied).
 *   map-codes          every Coding whose system is the source of a group of a FHIR R4
 *                      ConceptMap (conceptmap.html: group.source/target, element.code,
 *                      target.code/display/equivalence, group.unmapped) gains the
 *                      mapped Coding ("mode": "add", the default) or is replaced by it
 *                      ("mode": "replace").
 *
 * loinc-standardize keys: "sender" (the sender whose ConceptMap applies first;
 * default: the Observation's meta.source), "min_confidence" (percent, default the
 * setting terminology.min_confidence), "review" (boolean, default true: record held
 * results in the review list), "implausible" ("review", the default, or "error": an
 * implausible value errors the message).
 *
 * map-codes keys: "conceptmap" (a ConceptMap object, or the path of a JSON file that
 * holds one, read when the channel starts), "mode" ("add" | "replace"), "unmapped"
 * ("keep", the default, or "error": a Coding of a source system with no mapping errors
 * the message).
 *
 * Both take JSON content (a resource or a Bundle, whose entry resources are visited);
 * other content errors the message with a precise reason. Steps run on the loop
 * thread; loinc-standardize reads the terminology store through its own connection
 * (SQLite WAL lets it read while the module's storage thread writes).
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "terminology/terminology_int.h"

#define MAX_DEPTH 64               /* nesting visited when looking for Codings */
#define MAX_CONCEPTMAP_ROWS 100000 /* element/target pairs of one ConceptMap */
#define MAX_CONCEPTMAP_BYTES (16u << 20)

static const char TAG_SYSTEM[] = "https://holovitals.dev/fhir/CodeSystem/standardization";
static const char ORIGINAL_URL[] =
    "https://holovitals.dev/fhir/StructureDefinition/original-quantity";
static const char INTERP_SYSTEM[] =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";

static void put_json(void *p) { json_object_put(p); }

/* Parses the message content as JSON; the tree is released with the message's arena. */
static int content_json(hv_channel_msg_t *m, const char *step, struct json_object **out,
                        hv_error_t *err) {
    struct json_object *root = NULL;
    hv_error_t e;
    if (m->arena == NULL) return HV_EINVAL;
    if (hv_json_parse(m->content, m->len, "message", &root, &e) != HV_OK) {
        hv_error_set(err, HV_EINVAL, NULL,
                     "%s takes a FHIR resource or Bundle in JSON; the content is not JSON (%s)", step,
                     e.message);
        return HV_EINVAL;
    }
    if (hv_arena_cleanup_add(m->arena, put_json, root) != HV_OK) {
        json_object_put(root);
        return HV_ENOMEM;
    }
    *out = root;
    return HV_OK;
}

/* Writes the tree back as the message's content. */
static int content_set(hv_channel_msg_t *m, struct json_object *root) {
    const char *text =
        json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    char *copy = text != NULL ? hv_arena_strdup(m->arena, text) : NULL;
    if (copy == NULL) return HV_ENOMEM;
    m->content = copy;
    m->len = strlen(copy);
    return HV_OK;
}

/* Calls fn for the resource, or for each entry resource of a Bundle. */
typedef int (*visit_cb)(void *state, struct json_object *res, hv_error_t *err);

static int each_resource(struct json_object *root, visit_cb fn, void *state, hv_error_t *err) {
    struct json_object *entries = NULL;
    const char *type = hv_json_get_str(root, "resourceType");
    size_t i;
    int rc = HV_OK;
    if (type == NULL) {
        hv_error_set(err, HV_EINVAL, NULL, "the content has no resourceType: not a FHIR resource");
        return HV_EINVAL;
    }
    if (strcmp(type, "Bundle") != 0) return fn(state, root, err);
    if (!json_object_object_get_ex(root, "entry", &entries) ||
        !json_object_is_type(entries, json_type_array))
        return HV_OK;
    for (i = 0; rc == HV_OK && i < json_object_array_length(entries); i++) {
        struct json_object *res = NULL;
        if (json_object_object_get_ex(json_object_array_get_idx(entries, i), "resource", &res) &&
            json_object_is_type(res, json_type_object))
            rc = fn(state, res, err);
    }
    return rc;
}

/* ------------------------------------------------------------------------- */
/* loinc-standardize                                                          */
/* ------------------------------------------------------------------------- */

typedef struct ls_step {
    hv_db_t *db;
    hv_ucum_t *ucum;
    char *sender;
    double min_confidence;
    int review;
    int implausible_error;
    size_t done; /* counters of the current message, for the error text */
} ls_step_t;

static int bad_key(hv_error_t *err, const char *step, const char *key, const char *known) {
    hv_error_set(err, HV_ECONFIG, key, "unknown or mistyped key \"%s\" in a %s step (known: %s)", key,
                 step, known);
    return HV_ECONFIG;
}

static int ls_check(struct json_object *conf, hv_error_t *err) {
    static const char known[] = "sender (string), min_confidence (integer 0-100), review (boolean), "
                                "implausible (\"review\" or \"error\")";
    json_object_object_foreach(conf, k, v) {
        if (strcmp(k, "type") == 0) continue;
        if (strcmp(k, "sender") == 0 && json_object_is_type(v, json_type_string)) continue;
        if (strcmp(k, "review") == 0 && json_object_is_type(v, json_type_boolean)) continue;
        if (strcmp(k, "min_confidence") == 0 && json_object_is_type(v, json_type_int)) {
            int64_t c = json_object_get_int64(v);
            if (c >= 0 && c <= 100) continue;
            hv_error_set(err, HV_ECONFIG, k, "min_confidence must be a percent from 0 to 100");
            return HV_ECONFIG;
        }
        if (strcmp(k, "implausible") == 0 && json_object_is_type(v, json_type_string) &&
            (strcmp(json_object_get_string(v), "review") == 0 ||
             strcmp(json_object_get_string(v), "error") == 0))
            continue;
        return bad_key(err, "loinc-standardize", k, known);
    }
    return HV_OK;
}

static void ls_free(void *state) {
    ls_step_t *s = state;
    if (s == NULL) return;
    hv_db_close(s->db);
    hv_free(s->sender);
    hv_free(s);
}

static int ls_init(hv_engine_t *e, struct json_object *conf, void **state, hv_error_t *err) {
    ls_step_t *s = hv_calloc(1, sizeof *s);
    struct json_object *v = NULL;
    int rc;
    if (s == NULL) return HV_ENOMEM;
    s->review = 1;
    s->min_confidence =
        (double)hv_config_int(hv_engine_config(e), "terminology.min_confidence") / 100.0;
    if (json_object_object_get_ex(conf, "min_confidence", &v))
        s->min_confidence = (double)json_object_get_int64(v) / 100.0;
    if (json_object_object_get_ex(conf, "review", &v)) s->review = json_object_get_boolean(v);
    s->implausible_error = hv_json_get_str(conf, "implausible") != NULL &&
                           strcmp(hv_json_get_str(conf, "implausible"), "error") == 0;
    if (hv_json_get_str(conf, "sender") != NULL &&
        (s->sender = hv_strdup(hv_json_get_str(conf, "sender"))) == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    s->ucum = hv_ucum_shared(err);
    if (s->ucum == NULL) {
        rc = err->code != 0 ? err->code : HV_EIO;
        goto out;
    }
    rc = hv_db_open(hv_engine_db_url(e), hv_engine_data_dir(e), "terminology", &s->db, err);
    if (rc == HV_OK) rc = hv_terminology_store_migrate(s->db, err);
out:
    if (rc != HV_OK) {
        ls_free(s);
        return rc;
    }
    *state = s;
    return HV_OK;
}

static struct json_object *coding_new(const char *system, const char *code, const char *display) {
    struct json_object *c = json_object_new_object();
    if (c == NULL) return NULL;
    hv_json_set_str(c, "system", system);
    hv_json_set_str(c, "code", code);
    if (display != NULL && display[0] != '\0') hv_json_set_str(c, "display", display);
    return c;
}

/* Puts the LOINC coding first in code.coding unless it is already there. */
static int put_loinc(struct json_object *obs, struct json_object *loinc) {
    struct json_object *code = NULL, *codings = NULL, *fresh;
    const char *lc = hv_json_get_str(loinc, "code");
    size_t i, n;
    if (lc == NULL) return HV_OK;
    if (!json_object_object_get_ex(obs, "code", &code) || !json_object_is_type(code, json_type_object)) {
        code = json_object_new_object();
        if (code == NULL || hv_json_set(obs, "code", code) != HV_OK) return HV_ENOMEM;
    }
    json_object_object_get_ex(code, "coding", &codings);
    n = json_object_is_type(codings, json_type_array) ? json_object_array_length(codings) : 0;
    for (i = 0; i < n; i++) {
        struct json_object *c = json_object_array_get_idx(codings, i);
        const char *sys = hv_json_get_str(c, "system"), *cd = hv_json_get_str(c, "code");
        if (sys != NULL && cd != NULL && strcmp(sys, HV_TERMINOLOGY_LOINC) == 0 && strcmp(cd, lc) == 0)
            return HV_OK;
    }
    fresh = json_object_new_array();
    if (fresh == NULL) return HV_ENOMEM;
    json_object_array_add(fresh, coding_new(HV_TERMINOLOGY_LOINC, lc, hv_json_get_str(loinc, "display")));
    for (i = 0; i < n; i++) json_object_array_add(fresh, json_object_get(json_object_array_get_idx(codings, i)));
    return hv_json_set(code, "coding", fresh);
}

/* Sets valueQuantity to the value in the LOINC unit (with its UCUM system and code),
 * keeping the received quantity in an extension when the unit changed. */
static int put_value(struct json_object *obs, struct json_object *value) {
    struct json_object *vq = NULL, *conv = NULL, *q, *ext, *exts = NULL;
    const char *unit = hv_json_get_str(value, "unit"), *orig_unit;
    if (!json_object_object_get_ex(value, "converted", &conv) || !json_object_get_boolean(conv) ||
        unit == NULL || !json_object_object_get_ex(obs, "valueQuantity", &vq))
        return HV_OK;
    orig_unit = hv_json_get_str(value, "originalUnit");
    if (orig_unit != NULL && strcmp(orig_unit, unit) == 0) goto set; /* nothing to keep */
    ext = json_object_new_object();
    if (ext == NULL) return HV_ENOMEM;
    hv_json_set_str(ext, "url", ORIGINAL_URL);
    hv_json_set(ext, "valueQuantity", json_object_get(vq));
    if (!json_object_object_get_ex(obs, "extension", &exts) || !json_object_is_type(exts, json_type_array)) {
        exts = json_object_new_array();
        if (exts == NULL || hv_json_set(obs, "extension", exts) != HV_OK) {
            json_object_put(ext);
            return HV_ENOMEM;
        }
    }
    json_object_array_add(exts, ext);
set:
    q = json_object_new_object();
    if (q == NULL) return HV_ENOMEM;
    hv_json_set(q, "value", json_object_get(json_object_object_get(value, "value")));
    hv_json_set_str(q, "unit", unit);
    hv_json_set_str(q, "system", "http://unitsofmeasure.org");
    hv_json_set_str(q, "code", unit);
    return hv_json_set(obs, "valueQuantity", q);
}

static int put_interpretation(struct json_object *obs, const char *code) {
    struct json_object *arr, *cc, *codings;
    if (code == NULL || json_object_object_get_ex(obs, "interpretation", NULL)) return HV_OK;
    arr = json_object_new_array();
    cc = json_object_new_object();
    codings = json_object_new_array();
    if (arr == NULL || cc == NULL || codings == NULL) {
        json_object_put(arr), json_object_put(cc), json_object_put(codings);
        return HV_ENOMEM;
    }
    json_object_array_add(codings, coding_new(INTERP_SYSTEM, code, NULL));
    hv_json_set(cc, "coding", codings);
    json_object_array_add(arr, cc);
    return hv_json_set(obs, "interpretation", arr);
}

/* Records the verdict as a meta.tag, replacing an earlier one of this step. */
static int put_tag(struct json_object *obs, const char *status) {
    struct json_object *meta = NULL, *tags = NULL, *fresh;
    size_t i;
    if (!json_object_object_get_ex(obs, "meta", &meta) || !json_object_is_type(meta, json_type_object)) {
        meta = json_object_new_object();
        if (meta == NULL || hv_json_set(obs, "meta", meta) != HV_OK) return HV_ENOMEM;
    }
    fresh = json_object_new_array();
    if (fresh == NULL) return HV_ENOMEM;
    if (json_object_object_get_ex(meta, "tag", &tags) && json_object_is_type(tags, json_type_array))
        for (i = 0; i < json_object_array_length(tags); i++) {
            struct json_object *t = json_object_array_get_idx(tags, i);
            const char *sys = hv_json_get_str(t, "system");
            if (sys == NULL || strcmp(sys, TAG_SYSTEM) != 0) json_object_array_add(fresh, json_object_get(t));
        }
    json_object_array_add(fresh, coding_new(TAG_SYSTEM, status, NULL));
    return hv_json_set(meta, "tag", fresh);
}

static int ls_visit(void *state, struct json_object *res, hv_error_t *err) {
    ls_step_t *s = state;
    struct json_object *out = NULL, *loinc = NULL, *value = NULL, *pl = NULL, *plausible = NULL;
    const char *status;
    int rc;
    if (strcmp(hv_json_get_str(res, "resourceType"), "Observation") != 0) return HV_OK;
    /* An Observation without a value (a panel, a narrative result) is not a lab value. */
    if (!json_object_object_get_ex(res, "valueQuantity", NULL) &&
        !json_object_object_get_ex(res, "valueString", NULL))
        return HV_OK;
    if (s->sender != NULL) {
        /* The configured sender wins over meta.source: the standardizer reads a
         * "sender" member first; it is set for the call and removed after it. */
        if (hv_json_set_str(res, "sender", s->sender) != HV_OK) return HV_ENOMEM;
        rc = hv_terminology_standardize(s->db, s->ucum, res, s->min_confidence, s->review, &out, err);
        json_object_object_del(res, "sender");
    } else {
        rc = hv_terminology_standardize(s->db, s->ucum, res, s->min_confidence, s->review, &out, err);
    }
    if (rc != HV_OK) return rc;
    status = hv_json_get_str(out, "status");
    if (status == NULL) status = "unmatched";
    if (s->implausible_error && json_object_object_get_ex(out, "plausibility", &pl) &&
        json_object_object_get_ex(pl, "plausible", &plausible) && !json_object_get_boolean(plausible)) {
        const char *why = hv_json_get_str(pl, "reason");
        hv_error_set(err, HV_EINVAL, hv_json_get_str(res, "id"), "implausible lab value: %s",
                     why != NULL ? why : "outside the plausible range");
        json_object_put(out);
        return HV_EINVAL;
    }
    rc = HV_OK;
    if (strcmp(status, "standardized") == 0) {
        if (json_object_object_get_ex(out, "loinc", &loinc)) rc = put_loinc(res, loinc);
        if (rc == HV_OK && json_object_object_get_ex(out, "value", &value)) rc = put_value(res, value);
        if (rc == HV_OK) rc = put_interpretation(res, hv_json_get_str(out, "interpretation"));
    }
    if (rc == HV_OK) rc = put_tag(res, status);
    if (rc == HV_OK) s->done++;
    json_object_put(out);
    return rc;
}

static int ls_run(void *state, hv_channel_msg_t *m, hv_error_t *err) {
    ls_step_t *s = state;
    struct json_object *root = NULL;
    int rc = content_json(m, "loinc-standardize", &root, err);
    if (rc != HV_OK) return rc;
    s->done = 0;
    rc = each_resource(root, ls_visit, s, err);
    if (rc == HV_OK && s->done > 0) rc = content_set(m, root);
    return rc;
}

static const hv_channel_step_t loinc_step = {"loinc-standardize", ls_check, ls_init, ls_run, ls_free};

/* ------------------------------------------------------------------------- */
/* map-codes                                                                  */
/* ------------------------------------------------------------------------- */

typedef struct cm_row {
    const char *src_system, *src_code; /* the key */
    const char *tgt_system, *tgt_code, *tgt_display;
} cm_row_t;

typedef struct cm_unmapped {
    const char *src_system, *tgt_system;
    const char *mode; /* "provided" | "fixed" */
    const char *code, *display;
} cm_unmapped_t;

typedef struct mc_step {
    hv_arena_t *arena;
    cm_row_t *rows;
    size_t nrows;
    cm_unmapped_t *unmapped;
    size_t nunmapped;
    const char **sources; /* the source systems, for "unmapped": "error" */
    size_t nsources;
    int replace;
    int unmapped_error;
    size_t changed;
} mc_step_t;

static int mc_check(struct json_object *conf, hv_error_t *err) {
    static const char known[] = "conceptmap (object or file path), mode (\"add\" or \"replace\"), "
                                "unmapped (\"keep\" or \"error\")";
    int has_map = 0;
    json_object_object_foreach(conf, k, v) {
        const char *sv = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
        if (strcmp(k, "type") == 0) continue;
        if (strcmp(k, "conceptmap") == 0 &&
            (json_object_is_type(v, json_type_object) || (sv != NULL && sv[0] != '\0'))) {
            if (json_object_is_type(v, json_type_object)) {
                const char *rt = hv_json_get_str(v, "resourceType");
                if (rt == NULL || strcmp(rt, "ConceptMap") != 0) {
                    hv_error_set(err, HV_ECONFIG, k, "conceptmap must be a FHIR ConceptMap "
                                                     "(resourceType \"ConceptMap\")");
                    return HV_ECONFIG;
                }
            }
            has_map = 1;
            continue;
        }
        if (strcmp(k, "mode") == 0 && sv != NULL && (strcmp(sv, "add") == 0 || strcmp(sv, "replace") == 0))
            continue;
        if (strcmp(k, "unmapped") == 0 && sv != NULL && (strcmp(sv, "keep") == 0 || strcmp(sv, "error") == 0))
            continue;
        return bad_key(err, "map-codes", k, known);
    }
    if (!has_map) {
        hv_error_set(err, HV_ECONFIG, NULL, "a map-codes step needs \"conceptmap\"");
        return HV_ECONFIG;
    }
    return HV_OK;
}

static void mc_free(void *state) {
    mc_step_t *s = state;
    if (s == NULL) return;
    hv_arena_free(s->arena);
    hv_free(s);
}

static int row_cmp(const void *a, const void *b) {
    const cm_row_t *x = a, *y = b;
    int c = strcmp(x->src_system, y->src_system);
    return c != 0 ? c : strcmp(x->src_code, y->src_code);
}

/* Reads a ConceptMap file into *out (owned by the caller). */
static int read_map_file(const char *path, struct json_object **out, hv_error_t *err) {
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    size_t n = 0;
    int rc = HV_OK;
    if (f == NULL) {
        hv_error_set(err, HV_ECONFIG, path, "cannot open the ConceptMap file %s", path);
        return HV_ECONFIG;
    }
    text = hv_malloc(MAX_CONCEPTMAP_BYTES + 1);
    if (text == NULL) rc = HV_ENOMEM;
    if (rc == HV_OK) {
        n = fread(text, 1, MAX_CONCEPTMAP_BYTES + 1, f);
        if (ferror(f)) {
            hv_error_set(err, HV_ECONFIG, path, "cannot read the ConceptMap file %s", path);
            rc = HV_ECONFIG;
        } else if (n > MAX_CONCEPTMAP_BYTES) {
            hv_error_set(err, HV_ECONFIG, path, "the ConceptMap file %s is larger than %u MiB", path,
                         MAX_CONCEPTMAP_BYTES >> 20);
            rc = HV_ECONFIG;
        }
    }
    if (rc == HV_OK) rc = hv_json_parse(text, n, path, out, err);
    if (rc == HV_OK && (hv_json_get_str(*out, "resourceType") == NULL ||
                        strcmp(hv_json_get_str(*out, "resourceType"), "ConceptMap") != 0)) {
        json_object_put(*out);
        *out = NULL;
        hv_error_set(err, HV_ECONFIG, path, "%s does not hold a FHIR ConceptMap", path);
        rc = HV_ECONFIG;
    }
    hv_free(text);
    fclose(f);
    return rc;
}

static int add_source(mc_step_t *s, const char *system) {
    size_t i;
    for (i = 0; i < s->nsources; i++)
        if (strcmp(s->sources[i], system) == 0) return HV_OK;
    s->sources[s->nsources++] = system;
    return HV_OK;
}

/* FHIR R4 ConceptMapEquivalence: these equivalences say the target does not map. */
static int equivalence_maps(const char *eq) {
    return eq == NULL || (strcmp(eq, "unmatched") != 0 && strcmp(eq, "disjoint") != 0);
}

/* Builds the lookup table of a ConceptMap: one row per (source code, target). */
static int mc_load(mc_step_t *s, struct json_object *cm, hv_error_t *err) {
    struct json_object *groups = NULL;
    size_t g, e, t, rows = 0, ngroups;
    if (!json_object_object_get_ex(cm, "group", &groups) || !json_object_is_type(groups, json_type_array) ||
        (ngroups = json_object_array_length(groups)) == 0) {
        hv_error_set(err, HV_ECONFIG, "conceptmap", "the ConceptMap has no group");
        return HV_ECONFIG;
    }
    for (g = 0; g < ngroups; g++) {
        struct json_object *els = NULL;
        if (json_object_object_get_ex(json_object_array_get_idx(groups, g), "element", &els) &&
            json_object_is_type(els, json_type_array))
            for (e = 0; e < json_object_array_length(els); e++) {
                struct json_object *tg = NULL;
                if (json_object_object_get_ex(json_object_array_get_idx(els, e), "target", &tg) &&
                    json_object_is_type(tg, json_type_array))
                    rows += json_object_array_length(tg);
            }
    }
    if (rows > MAX_CONCEPTMAP_ROWS) {
        hv_error_set(err, HV_ECONFIG, "conceptmap", "the ConceptMap has more than %d mappings",
                     MAX_CONCEPTMAP_ROWS);
        return HV_ECONFIG;
    }
    s->rows = hv_arena_alloc(s->arena, (rows + 1) * sizeof *s->rows);
    s->unmapped = hv_arena_alloc(s->arena, ngroups * sizeof *s->unmapped);
    s->sources = hv_arena_alloc(s->arena, ngroups * sizeof *s->sources);
    if (s->rows == NULL || s->unmapped == NULL || s->sources == NULL) return HV_ENOMEM;
    for (g = 0; g < ngroups; g++) {
        struct json_object *grp = json_object_array_get_idx(groups, g), *els = NULL, *um = NULL;
        const char *src = hv_json_get_str(grp, "source"), *tgt = hv_json_get_str(grp, "target");
        char where[64];
        snprintf(where, sizeof where, "conceptmap.group[%zu]", g);
        if (src == NULL || tgt == NULL) {
            hv_error_set(err, HV_ECONFIG, where, "a ConceptMap group needs source and target (the code "
                                                 "systems it maps between)");
            return HV_ECONFIG;
        }
        src = hv_arena_strdup(s->arena, src);
        tgt = hv_arena_strdup(s->arena, tgt);
        if (src == NULL || tgt == NULL) return HV_ENOMEM;
        add_source(s, src);
        if (json_object_object_get_ex(grp, "unmapped", &um)) {
            cm_unmapped_t *u = &s->unmapped[s->nunmapped];
            const char *mode = hv_json_get_str(um, "mode");
            if (mode == NULL || (strcmp(mode, "provided") != 0 && strcmp(mode, "fixed") != 0)) {
                hv_error_set(err, HV_ECONFIG, where, "group.unmapped.mode \"%s\" is not supported (known: "
                                                     "provided, fixed)",
                             mode != NULL ? mode : "");
                return HV_ECONFIG;
            }
            u->src_system = src;
            u->tgt_system = tgt;
            u->mode = strcmp(mode, "fixed") == 0 ? "fixed" : "provided";
            u->code = hv_json_get_str(um, "code") ? hv_arena_strdup(s->arena, hv_json_get_str(um, "code")) : NULL;
            u->display = hv_json_get_str(um, "display") ? hv_arena_strdup(s->arena, hv_json_get_str(um, "display"))
                                                        : NULL;
            if (strcmp(u->mode, "fixed") == 0 && u->code == NULL) {
                hv_error_set(err, HV_ECONFIG, where, "group.unmapped with mode fixed needs a code");
                return HV_ECONFIG;
            }
            s->nunmapped++;
        }
        if (!json_object_object_get_ex(grp, "element", &els) || !json_object_is_type(els, json_type_array))
            continue;
        for (e = 0; e < json_object_array_length(els); e++) {
            struct json_object *el = json_object_array_get_idx(els, e), *tg = NULL;
            const char *code = hv_json_get_str(el, "code");
            if (code == NULL || !json_object_object_get_ex(el, "target", &tg) ||
                !json_object_is_type(tg, json_type_array))
                continue;
            code = hv_arena_strdup(s->arena, code);
            if (code == NULL) return HV_ENOMEM;
            for (t = 0; t < json_object_array_length(tg); t++) {
                struct json_object *x = json_object_array_get_idx(tg, t);
                cm_row_t *r = &s->rows[s->nrows];
                if (hv_json_get_str(x, "code") == NULL ||
                    !equivalence_maps(hv_json_get_str(x, "equivalence")))
                    continue;
                r->src_system = src;
                r->src_code = code;
                r->tgt_system = tgt;
                r->tgt_code = hv_arena_strdup(s->arena, hv_json_get_str(x, "code"));
                r->tgt_display = hv_json_get_str(x, "display")
                                     ? hv_arena_strdup(s->arena, hv_json_get_str(x, "display"))
                                     : NULL;
                if (r->tgt_code == NULL) return HV_ENOMEM;
                s->nrows++;
            }
        }
    }
    qsort(s->rows, s->nrows, sizeof *s->rows, row_cmp);
    return HV_OK;
}

static int mc_init(hv_engine_t *e, struct json_object *conf, void **state, hv_error_t *err) {
    mc_step_t *s = hv_calloc(1, sizeof *s);
    struct json_object *cm = NULL, *owned = NULL;
    const char *v;
    int rc;
    (void)e;
    if (s == NULL) return HV_ENOMEM;
    s->arena = hv_arena_new(0);
    if (s->arena == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    v = hv_json_get_str(conf, "mode");
    s->replace = v != NULL && strcmp(v, "replace") == 0;
    v = hv_json_get_str(conf, "unmapped");
    s->unmapped_error = v != NULL && strcmp(v, "error") == 0;
    json_object_object_get_ex(conf, "conceptmap", &cm);
    if (json_object_is_type(cm, json_type_string)) {
        rc = read_map_file(json_object_get_string(cm), &owned, err);
        if (rc != HV_OK) goto out;
        cm = owned;
    }
    rc = mc_load(s, cm, err);
out:
    json_object_put(owned);
    if (rc != HV_OK) {
        mc_free(s);
        return rc;
    }
    *state = s;
    return HV_OK;
}

/* Finds the targets of (system, code): a run of rows [*first, *first + *n). */
static void mc_find(const mc_step_t *s, const char *system, const char *code, size_t *first, size_t *n) {
    size_t lo = 0, hi = s->nrows;
    cm_row_t key;
    key.src_system = system;
    key.src_code = code;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (row_cmp(&s->rows[mid], &key) < 0) lo = mid + 1;
        else hi = mid;
    }
    *first = lo;
    for (hi = lo; hi < s->nrows && row_cmp(&s->rows[hi], &key) == 0; hi++)
        ;
    *n = hi - lo;
}

static int has_coding(struct json_object *arr, const char *system, const char *code) {
    size_t i;
    for (i = 0; i < json_object_array_length(arr); i++) {
        struct json_object *c = json_object_array_get_idx(arr, i);
        const char *sys = hv_json_get_str(c, "system"), *cd = hv_json_get_str(c, "code");
        if (sys != NULL && cd != NULL && strcmp(sys, system) == 0 && strcmp(cd, code) == 0) return 1;
    }
    return 0;
}

static int is_source(const mc_step_t *s, const char *system) {
    size_t i;
    for (i = 0; i < s->nsources; i++)
        if (strcmp(s->sources[i], system) == 0) return 1;
    return 0;
}

/* Maps the Codings of one "coding" array; returns the array to keep (maybe a new one). */
static int mc_codings(mc_step_t *s, struct json_object *owner, struct json_object *arr, hv_error_t *err) {
    struct json_object *fresh = json_object_new_array();
    size_t i, n = json_object_array_length(arr), changed = 0;
    if (fresh == NULL) return HV_ENOMEM;
    for (i = 0; i < n; i++) {
        struct json_object *c = json_object_array_get_idx(arr, i);
        const char *sys = hv_json_get_str(c, "system"), *code = hv_json_get_str(c, "code");
        size_t first = 0, k, m = 0, u;
        int mapped = 0;
        if (sys == NULL || code == NULL || !is_source(s, sys)) {
            json_object_array_add(fresh, json_object_get(c));
            continue;
        }
        if (!s->replace) json_object_array_add(fresh, json_object_get(c));
        mc_find(s, sys, code, &first, &m);
        for (k = first; k < first + m; k++) {
            const cm_row_t *r = &s->rows[k];
            mapped = 1;
            if (!has_coding(arr, r->tgt_system, r->tgt_code) && !has_coding(fresh, r->tgt_system, r->tgt_code))
                json_object_array_add(fresh, coding_new(r->tgt_system, r->tgt_code, r->tgt_display));
        }
        for (u = 0; !mapped && u < s->nunmapped; u++) {
            const cm_unmapped_t *um = &s->unmapped[u];
            const char *tc = strcmp(um->mode, "fixed") == 0 ? um->code : code;
            const char *td = strcmp(um->mode, "fixed") == 0 ? um->display : hv_json_get_str(c, "display");
            if (strcmp(um->src_system, sys) != 0) continue;
            mapped = 1;
            if (!has_coding(fresh, um->tgt_system, tc))
                json_object_array_add(fresh, coding_new(um->tgt_system, tc, td));
        }
        if (!mapped) {
            if (s->unmapped_error) {
                json_object_put(fresh);
                hv_error_set(err, HV_EINVAL, sys, "map-codes: the code %s of %s has no mapping", code, sys);
                return HV_EINVAL;
            }
            if (s->replace) json_object_array_add(fresh, json_object_get(c));
        } else {
            changed++;
        }
    }
    if (changed == 0) {
        json_object_put(fresh);
        return HV_OK;
    }
    s->changed += changed;
    return hv_json_set(owner, "coding", fresh);
}

/* Visits every object of the tree: each "coding" array (the Codings of a
 * CodeableConcept, wherever it is) is mapped. A bare Coding (valueCoding) is not. */
static int mc_walk(mc_step_t *s, struct json_object *o, int depth, hv_error_t *err) {
    int rc = HV_OK;
    if (depth > MAX_DEPTH) {
        hv_error_set(err, HV_ETOOBIG, NULL, "map-codes: the resource nests deeper than %d", MAX_DEPTH);
        return HV_ETOOBIG;
    }
    if (json_object_is_type(o, json_type_array)) {
        size_t i;
        for (i = 0; rc == HV_OK && i < json_object_array_length(o); i++)
            rc = mc_walk(s, json_object_array_get_idx(o, i), depth + 1, err);
        return rc;
    }
    if (!json_object_is_type(o, json_type_object)) return HV_OK;
    {
        struct json_object *coding = NULL;
        if (json_object_object_get_ex(o, "coding", &coding) && json_object_is_type(coding, json_type_array)) {
            rc = mc_codings(s, o, coding, err);
            if (rc != HV_OK) return rc;
        }
    }
    json_object_object_foreach(o, k, v) {
        if (strcmp(k, "coding") == 0) continue;
        if (json_object_is_type(v, json_type_object) || json_object_is_type(v, json_type_array))
            rc = mc_walk(s, v, depth + 1, err);
        if (rc != HV_OK) break;
    }
    return rc;
}

static int mc_visit(void *state, struct json_object *res, hv_error_t *err) {
    return mc_walk(state, res, 0, err);
}

static int mc_run(void *state, hv_channel_msg_t *m, hv_error_t *err) {
    mc_step_t *s = state;
    struct json_object *root = NULL;
    int rc = content_json(m, "map-codes", &root, err);
    if (rc != HV_OK) return rc;
    s->changed = 0;
    rc = each_resource(root, mc_visit, s, err);
    if (rc == HV_OK && s->changed > 0) rc = content_set(m, root);
    return rc;
}

static const hv_channel_step_t map_codes_step = {"map-codes", mc_check, mc_init, mc_run, mc_free};

static int channels_init(hv_engine_t *e, void **state) {
    int rc = hv_channel_register_step(e, &loinc_step);
    if (rc == HV_OK) rc = hv_channel_register_step(e, &map_codes_step);
    *state = NULL;
    return rc;
}

const hv_module_t hv_terminology_channels_module = {
    "terminology-channels", NULL, NULL, channels_init, NULL, NULL, NULL,
};
