/*
 * channel_conf.c — reads and validates channel files (channels/NAME.json).
 *
 * A channel file is JSON with // and block comments (engine/json.c). Every key
 * is checked: an unknown key, a wrong type, a value out of range, a missing
 * required key or an unknown source/step/destination type is refused with
 * "file:line:column: message", the position being that of the offending key
 * or value (hv_json_pos). docs/channels.md documents each key; the defaults
 * are the ones set below, and only "id", "source.type" and each destination's
 * "name" and "type" (plus the type's own required keys) are required.
 *
 *   key            type     default        meaning
 *   id             string   (required)     [A-Za-z0-9_.-], at most 64 characters
 *   name           string   = id           shown in the console
 *   description    string   ""
 *   enabled        bool     true           a disabled channel is loaded but not started
 *   source         object   (required)     {"type": ..., type's own keys}
 *   filter         rule     none           all/any/not of path, fhirpath, metadata rules
 *   steps          array    []             [{"type": ..., step's own keys}]
 *   destinations   array    []             [{"name", "type", "when", "queue", type's keys}]
 *   queue          object   see below      defaults for every destination's queue
 *   response       string   "after-store"  when the source answers: after-store | after-filter
 *                                          | after-destinations
 *   response_destinations  array  all      after-destinations: the destination names waited for
 *   response_timeout_ms    int    30000    after-destinations: error answer after this long
 *   storage        object   {"content": "all", "retention_days": 30}
 */
#include "config.h"
#include "engine/channel_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CHANNEL_FILE_MAX (4u << 20)

/* The names the catalog knows: types that modules register later. A channel
 * naming one of these when no running module provides it fails to load with a
 * message that says so; a name outside the catalog is a plain "unknown type". */
static const char *const known_sources[] = {"http", "mllp", "file", "timer", "event", "fhir",
                                            "epic", "cerner", "fhir-pull", NULL};
static const char *const known_dests[] = {"http-send",  "file-write", "channel", "event",
                                          "mllp-send", "fhir-store", "audit",      NULL};
static const char *const known_steps[] = {"hl7v2-to-fhir",     "ccda-to-fhir", "fhir-to-hl7v2",
                                          "loinc-standardize", "validate",     "map-codes",
                                          "set",               "split-bundle", NULL};

typedef struct ctx {
    const char *path;
    const hv_json_pos_t *pos;
    const hv__chan_registry_t *reg;
    int strict; /* types must be registered (serve) */
    hv_error_t *err;
} ctx_t;

static int in_list(const char *const *list, const char *s) {
    for (; *list != NULL; list++)
        if (strcmp(*list, s) == 0) return 1;
    return 0;
}

/* Sets err at pointer: the key's position when key is true, else the value's. */
static int fail_at(ctx_t *c, const char *pointer, int key, const char *fmt, ...) HV_PRINTF(4, 5);
static int fail_at(ctx_t *c, const char *pointer, int key, const char *fmt, ...) {
    va_list ap;
    int line = 0, col = 0;
    if (c->err == NULL) return HV_ECONFIG;
    hv_error_clear(c->err);
    c->err->code = HV_ECONFIG;
    snprintf(c->err->location, sizeof(c->err->location), "%s", c->path);
    if (c->pos != NULL) {
        int rc = key ? hv_json_pos_get_key(c->pos, pointer, &line, &col)
                     : hv_json_pos_get(c->pos, pointer, &line, &col);
        if (rc != HV_OK && key) rc = hv_json_pos_get(c->pos, pointer, &line, &col);
        if (rc == HV_OK) {
            c->err->line = line;
            c->err->column = col;
        }
    }
    va_start(ap, fmt);
    vsnprintf(c->err->message, sizeof(c->err->message), fmt, ap);
    va_end(ap);
    return HV_ECONFIG;
}

/* Appends a JSON Pointer reference token (RFC 6901 §3: ~ → ~0, / → ~1). */
static void ptr_join(char *out, size_t outlen, const char *base, const char *tok) {
    size_t n = (size_t)snprintf(out, outlen, "%s/", base);
    for (; *tok && n + 3 < outlen; tok++) {
        if (*tok == '~' || *tok == '/') {
            out[n++] = '~';
            out[n++] = *tok == '~' ? '0' : '1';
        } else {
            out[n++] = *tok;
        }
    }
    if (n < outlen) out[n] = '\0';
}

static void ptr_index(char *out, size_t outlen, const char *base, size_t i) {
    char num[24];
    snprintf(num, sizeof(num), "%zu", i);
    ptr_join(out, outlen, base, num);
}

static int check_keys(ctx_t *c, json_object *obj, const char *ptr, const char *what,
                      const char *const *allowed) {
    json_object_object_foreach(obj, k, v) {
        char p[512];
        (void)v;
        if (in_list(allowed, k)) continue;
        ptr_join(p, sizeof(p), ptr, k);
        return fail_at(c, p, 1, "unknown key \"%s\" in %s", k, what);
    }
    return HV_OK;
}

static const char *type_name(json_object *v) {
    switch (json_object_get_type(v)) {
    case json_type_null: return "null";
    case json_type_boolean: return "a boolean";
    case json_type_double: return "a number";
    case json_type_int: return "an integer";
    case json_type_object: return "an object";
    case json_type_array: return "an array";
    case json_type_string: return "a string";
    }
    return "a value";
}

/* A string member: *out is NULL when absent and not required. */
static int get_str(ctx_t *c, json_object *obj, const char *ptr, const char *key, int required,
                   const char **out) {
    json_object *v = NULL;
    char p[512];
    *out = NULL;
    if (!json_object_object_get_ex(obj, key, &v)) {
        if (required) return fail_at(c, ptr, 0, "missing required key \"%s\"", key);
        return HV_OK;
    }
    ptr_join(p, sizeof(p), ptr, key);
    if (!json_object_is_type(v, json_type_string))
        return fail_at(c, p, 0, "\"%s\" must be a string, not %s", key, type_name(v));
    if (required && json_object_get_string_len(v) == 0)
        return fail_at(c, p, 0, "\"%s\" must not be empty", key);
    *out = json_object_get_string(v);
    return HV_OK;
}

static int get_int(ctx_t *c, json_object *obj, const char *ptr, const char *key, int64_t min,
                   int64_t max, int64_t *out) {
    json_object *v = NULL;
    char p[512];
    int64_t n;
    if (!json_object_object_get_ex(obj, key, &v)) return HV_OK; /* keep the default */
    ptr_join(p, sizeof(p), ptr, key);
    if (!json_object_is_type(v, json_type_int))
        return fail_at(c, p, 0, "\"%s\" must be an integer, not %s", key, type_name(v));
    n = json_object_get_int64(v);
    if (n < min || n > max)
        return fail_at(c, p, 0, "\"%s\" must be between %lld and %lld", key, (long long)min,
                       (long long)max);
    *out = n;
    return HV_OK;
}

static int get_bool(ctx_t *c, json_object *obj, const char *ptr, const char *key, int *out) {
    json_object *v = NULL;
    char p[512];
    if (!json_object_object_get_ex(obj, key, &v)) return HV_OK;
    ptr_join(p, sizeof(p), ptr, key);
    if (!json_object_is_type(v, json_type_boolean))
        return fail_at(c, p, 0, "\"%s\" must be true or false, not %s", key, type_name(v));
    *out = json_object_get_boolean(v);
    return HV_OK;
}

static int get_obj(ctx_t *c, json_object *obj, const char *ptr, const char *key, int required,
                   json_object **out) {
    json_object *v = NULL;
    char p[512];
    *out = NULL;
    if (!json_object_object_get_ex(obj, key, &v)) {
        if (required) return fail_at(c, ptr, 0, "missing required key \"%s\"", key);
        return HV_OK;
    }
    ptr_join(p, sizeof(p), ptr, key);
    if (!json_object_is_type(v, json_type_object))
        return fail_at(c, p, 0, "\"%s\" must be an object, not %s", key, type_name(v));
    *out = v;
    return HV_OK;
}

static int get_arr(ctx_t *c, json_object *obj, const char *ptr, const char *key,
                   json_object **out) {
    json_object *v = NULL;
    char p[512];
    *out = NULL;
    if (!json_object_object_get_ex(obj, key, &v)) return HV_OK;
    ptr_join(p, sizeof(p), ptr, key);
    if (!json_object_is_type(v, json_type_array))
        return fail_at(c, p, 0, "\"%s\" must be an array, not %s", key, type_name(v));
    *out = v;
    return HV_OK;
}

static int id_valid(const char *s) {
    size_t n = strlen(s), i;
    if (n == 0 || n > HV__CHAN_ID_MAX) return 0;
    for (i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            return 0;
    }
    return 1;
}

/* Runs a type's check and maps the relative key it names to a position. */
static int run_check(ctx_t *c, int (*check)(json_object *, hv_error_t *), json_object *obj,
                     const char *ptr) {
    hv_error_t e;
    char p[512];
    int rc;
    if (check == NULL) return HV_OK;
    hv_error_clear(&e);
    rc = check(obj, &e);
    if (rc == HV_OK) return HV_OK;
    if (e.location[0] != '\0') snprintf(p, sizeof(p), "%s/%s", ptr, e.location);
    else snprintf(p, sizeof(p), "%s", ptr);
    return fail_at(c, p, e.location[0] != '\0', "%s",
                   e.message[0] ? e.message : hv_strerror(rc));
}

/* ------------------------------------------------------------------------- */
/* Queue settings                                                            */
/* ------------------------------------------------------------------------- */

static void queue_defaults(hv__queue_conf_t *q) {
    q->retry_interval_ms = 1000;
    q->max_interval_ms = 60000;
    q->backoff = 2.0;
    q->jitter_pct = 20;
    q->max_attempts = 10;
    q->breaker_threshold = 5;
    q->breaker_open_ms = 30000;
    q->batch = 64;
    q->workers = 1;
    q->ordering_key = NULL;
}

static const char *const queue_keys[] = {"retry_interval_ms", "max_interval_ms", "backoff",
                                         "jitter_pct",        "max_attempts",    "breaker_threshold",
                                         "breaker_open_ms",   "batch",           "workers",
                                         "ordering_key",      NULL};

static int parse_filter(ctx_t *c, json_object *o, const char *ptr, int depth, hv__filter_t **out);

static int parse_queue(ctx_t *c, json_object *q, const char *ptr, hv__queue_conf_t *out) {
    int64_t v;
    json_object *b = NULL;
    int rc = check_keys(c, q, ptr, "queue", queue_keys);
    if (rc != HV_OK) return rc;
    v = (int64_t)out->retry_interval_ms;
    if ((rc = get_int(c, q, ptr, "retry_interval_ms", 1, 86400000, &v)) != HV_OK) return rc;
    out->retry_interval_ms = (uint64_t)v;
    v = (int64_t)out->max_interval_ms;
    if ((rc = get_int(c, q, ptr, "max_interval_ms", 1, 86400000, &v)) != HV_OK) return rc;
    out->max_interval_ms = (uint64_t)v;
    v = out->jitter_pct;
    if ((rc = get_int(c, q, ptr, "jitter_pct", 0, 100, &v)) != HV_OK) return rc;
    out->jitter_pct = (int)v;
    if ((rc = get_int(c, q, ptr, "max_attempts", 1, 1000000000, &out->max_attempts)) != HV_OK)
        return rc;
    if ((rc = get_int(c, q, ptr, "breaker_threshold", 0, 1000000, &out->breaker_threshold)) !=
        HV_OK)
        return rc;
    v = (int64_t)out->breaker_open_ms;
    if ((rc = get_int(c, q, ptr, "breaker_open_ms", 1, 86400000, &v)) != HV_OK) return rc;
    out->breaker_open_ms = (uint64_t)v;
    if ((rc = get_int(c, q, ptr, "batch", 1, 10000, &out->batch)) != HV_OK) return rc;
    if ((rc = get_int(c, q, ptr, "workers", 1, 64, &out->workers)) != HV_OK) return rc;
    if (json_object_object_get_ex(q, "ordering_key", &b)) {
        char p[512];
        hv__filter_t *k = NULL;
        json_object *probe = NULL;
        ptr_join(p, sizeof(p), ptr, "ordering_key");
        if (!json_object_is_type(b, json_type_object) ||
            json_object_object_get_ex(b, "all", &probe) || json_object_object_get_ex(b, "any", &probe) ||
            json_object_object_get_ex(b, "not", &probe))
            return fail_at(c, p, 0,
                           "\"ordering_key\" is {\"path\": ...}, {\"fhirpath\": ...} or "
                           "{\"metadata\": ...}");
        /* Parsed as a rule with a dummy operator, so that the path syntax is checked too. */
        probe = json_object_get(b);
        if (!json_object_object_get_ex(b, "exists", NULL) && !json_object_object_get_ex(b, "fhirpath", NULL)) {
            json_object *copy = NULL;
            json_object_deep_copy(b, &copy, NULL);
            json_object_put(probe);
            probe = copy;
            if (probe == NULL || hv_json_set(probe, "exists", json_object_new_boolean(1)) != HV_OK) {
                json_object_put(probe);
                return HV_ENOMEM;
            }
        }
        rc = parse_filter(c, probe, p, 0, &k);
        json_object_put(probe);
        if (rc != HV_OK) return rc;
        hv__filter_free(out->ordering_key);
        out->ordering_key = k;
    }
    if (json_object_object_get_ex(q, "backoff", &b)) {
        char p[512];
        ptr_join(p, sizeof(p), ptr, "backoff");
        if (!json_object_is_type(b, json_type_double) && !json_object_is_type(b, json_type_int))
            return fail_at(c, p, 0, "\"backoff\" must be a number, not %s", type_name(b));
        out->backoff = json_object_get_double(b);
        if (!(out->backoff >= 1.0 && out->backoff <= 10.0))
            return fail_at(c, p, 0, "\"backoff\" must be between 1 and 10");
    }
    if (out->max_interval_ms < out->retry_interval_ms) out->max_interval_ms = out->retry_interval_ms;
    return HV_OK;
}

/* ------------------------------------------------------------------------- */
/* Filters                                                                   */
/* ------------------------------------------------------------------------- */

void hv__filter_free(hv__filter_t *f) {
    size_t i;
    if (f == NULL) return;
    for (i = 0; i < f->nkids; i++) hv__filter_free(f->kids[i]);
    for (i = 0; i < f->nvalues; i++) hv_free(f->values[i]);
    hv_free(f->kids);
    hv_free(f->values);
    hv_free(f->name);
    hv_free(f->path);
    hv_free(f);
}

static const char *const meta_keys[] = {"content_type", "channel", "size", NULL};
static const char *const leaf_keys[] = {"path",   "fhirpath", "metadata", "equals", "in",
                                        "exists", "contains", "name",     NULL};

static int parse_filter_list(ctx_t *c, json_object *arr, const char *ptr, int depth,
                             hv__filter_t *f) {
    size_t i, n = json_object_array_length(arr);
    if (n == 0) return fail_at(c, ptr, 0, "a rule list must not be empty");
    f->kids = hv_calloc(n, sizeof(*f->kids));
    if (f->kids == NULL) return HV_ENOMEM;
    for (i = 0; i < n; i++) {
        char p[512];
        int rc;
        ptr_index(p, sizeof(p), ptr, i);
        rc = parse_filter(c, json_object_array_get_idx(arr, i), p, depth + 1, &f->kids[i]);
        if (rc != HV_OK) return rc;
        f->nkids++;
    }
    return HV_OK;
}

static int add_value(hv__filter_t *f, json_object *v) {
    char **nv = hv_realloc(f->values, (f->nvalues + 1) * sizeof(*nv));
    if (nv == NULL) return HV_ENOMEM;
    f->values = nv;
    f->values[f->nvalues] = hv_strdup(json_object_get_string(v));
    if (f->values[f->nvalues] == NULL) return HV_ENOMEM;
    f->nvalues++;
    return HV_OK;
}

static int parse_leaf(ctx_t *c, json_object *o, const char *ptr, hv__filter_t *f) {
    const char *path = NULL, *fp = NULL, *meta = NULL, *name = NULL;
    json_object *v = NULL;
    char p[512];
    int rc, nops = 0;
    if ((rc = check_keys(c, o, ptr, "filter rule", leaf_keys)) != HV_OK) return rc;
    if ((rc = get_str(c, o, ptr, "path", 0, &path)) != HV_OK) return rc;
    if ((rc = get_str(c, o, ptr, "fhirpath", 0, &fp)) != HV_OK) return rc;
    if ((rc = get_str(c, o, ptr, "metadata", 0, &meta)) != HV_OK) return rc;
    if ((rc = get_str(c, o, ptr, "name", 0, &name)) != HV_OK) return rc;
    if ((path != NULL) + (fp != NULL) + (meta != NULL) != 1)
        return fail_at(c, ptr, 0,
                       "a filter rule needs exactly one of \"path\" (HL7 v2), \"fhirpath\" or "
                       "\"metadata\", or is {\"all\"|\"any\": [...]} or {\"not\": {...}}");
    f->kind = path ? HV__F_HL7 : fp ? HV__F_FHIRPATH : HV__F_META;
    f->path = hv_strdup(path ? path : fp ? fp : meta);
    f->name = hv_strdup(name ? name : ptr);
    if (f->path == NULL || f->name == NULL) return HV_ENOMEM;
    if (meta != NULL && !in_list(meta_keys, meta)) {
        ptr_join(p, sizeof(p), ptr, "metadata");
        return fail_at(c, p, 0, "unknown metadata \"%s\" (known: content_type, channel, size)",
                       meta);
    }
    if (json_object_object_get_ex(o, "equals", &v)) {
        nops++;
        f->op = HV__OP_EQUALS;
        ptr_join(p, sizeof(p), ptr, "equals");
        if (json_object_is_type(v, json_type_object) || json_object_is_type(v, json_type_array) ||
            json_object_is_type(v, json_type_null))
            return fail_at(c, p, 0, "\"equals\" must be a string, number or boolean");
        if ((rc = add_value(f, v)) != HV_OK) return rc;
    }
    if (json_object_object_get_ex(o, "contains", &v)) {
        nops++;
        f->op = HV__OP_CONTAINS;
        ptr_join(p, sizeof(p), ptr, "contains");
        if (!json_object_is_type(v, json_type_string))
            return fail_at(c, p, 0, "\"contains\" must be a string, not %s", type_name(v));
        if ((rc = add_value(f, v)) != HV_OK) return rc;
    }
    if (json_object_object_get_ex(o, "in", &v)) {
        size_t i;
        nops++;
        f->op = HV__OP_IN;
        ptr_join(p, sizeof(p), ptr, "in");
        if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) == 0)
            return fail_at(c, p, 0, "\"in\" must be a non-empty array of values");
        for (i = 0; i < json_object_array_length(v); i++) {
            json_object *e = json_object_array_get_idx(v, i);
            char pi[512];
            ptr_index(pi, sizeof(pi), p, i);
            if (!json_object_is_type(e, json_type_string) && !json_object_is_type(e, json_type_int))
                return fail_at(c, pi, 0, "values of \"in\" must be strings or integers");
            if ((rc = add_value(f, e)) != HV_OK) return rc;
        }
    }
    if (json_object_object_get_ex(o, "exists", &v)) {
        nops++;
        ptr_join(p, sizeof(p), ptr, "exists");
        if (!json_object_is_type(v, json_type_boolean))
            return fail_at(c, p, 0, "\"exists\" must be true or false");
        f->op = HV__OP_EXISTS;
        if (!json_object_get_boolean(v)) {
            /* "exists": false is not(exists): kept as a flag value "false". */
            json_object *fv = json_object_new_string("false");
            rc = fv ? add_value(f, fv) : HV_ENOMEM;
            json_object_put(fv);
            if (rc != HV_OK) return rc;
        }
    }
    if (f->kind == HV__F_FHIRPATH) {
        if (nops > 0) return fail_at(c, ptr, 0, "a \"fhirpath\" rule is a boolean expression: "
                                               "it takes no equals/in/exists/contains");
        f->op = HV__OP_EQUALS;
    } else if (nops != 1) {
        return fail_at(c, ptr, 0,
                       "a rule needs exactly one of \"equals\", \"in\", \"exists\", \"contains\"");
    }
    /* The path syntax is checked by its provider when one is registered. */
    if (c->reg != NULL && f->kind != HV__F_META) {
        const char *syn = f->kind == HV__F_HL7 ? "hl7v2" : "fhirpath";
        size_t i;
        int found = 0;
        for (i = 0; i < c->reg->npaths; i++) {
            const hv_channel_path_provider_t *pp = c->reg->paths[i];
            if (strcmp(pp->syntax, syn) != 0) continue;
            found = 1;
            if (pp->check != NULL) {
                hv_error_t e;
                hv_error_clear(&e);
                if (pp->check(f->path, &e) != HV_OK) {
                    ptr_join(p, sizeof(p), ptr, f->kind == HV__F_HL7 ? "path" : "fhirpath");
                    return fail_at(c, p, 0, "%s", e.message[0] ? e.message : "invalid path");
                }
            }
        }
        if (!found && c->strict)
            return fail_at(c, ptr, 0,
                           "%s filter rules are not available: no running module provides the "
                           "\"%s\" path syntax",
                           f->kind == HV__F_HL7 ? "HL7 v2" : "FHIRPath", syn);
    }
    return HV_OK;
}

static int parse_filter(ctx_t *c, json_object *o, const char *ptr, int depth, hv__filter_t **out) {
    hv__filter_t *f = NULL;
    json_object *v = NULL;
    char p[512];
    int rc;
    if (depth > HV__CHAN_MAX_FILTER_DEPTH)
        return fail_at(c, ptr, 0, "filter nested deeper than %d", HV__CHAN_MAX_FILTER_DEPTH);
    if (!json_object_is_type(o, json_type_object))
        return fail_at(c, ptr, 0, "a filter rule must be an object, not %s", type_name(o));
    f = hv_calloc(1, sizeof(*f));
    if (f == NULL) return HV_ENOMEM;
    if (json_object_object_get_ex(o, "all", &v) || json_object_object_get_ex(o, "any", &v)) {
        const char *which = json_object_object_get_ex(o, "all", NULL) ? "all" : "any";
        static const char *const all_keys[] = {"all", "name", NULL};
        static const char *const any_keys[] = {"any", "name", NULL};
        f->kind = which[1] == 'l' ? HV__F_ALL : HV__F_ANY;
        rc = check_keys(c, o, ptr, "filter", f->kind == HV__F_ALL ? all_keys : any_keys);
        if (rc != HV_OK) goto out;
        ptr_join(p, sizeof(p), ptr, which);
        if (!json_object_is_type(v, json_type_array)) {
            rc = fail_at(c, p, 0, "\"%s\" must be an array of rules", which);
            goto out;
        }
        rc = parse_filter_list(c, v, p, depth, f);
    } else if (json_object_object_get_ex(o, "not", &v)) {
        static const char *const not_keys[] = {"not", "name", NULL};
        f->kind = HV__F_NOT;
        rc = check_keys(c, o, ptr, "filter", not_keys);
        if (rc != HV_OK) goto out;
        ptr_join(p, sizeof(p), ptr, "not");
        f->kids = hv_calloc(1, sizeof(*f->kids));
        if (f->kids == NULL) {
            rc = HV_ENOMEM;
            goto out;
        }
        rc = parse_filter(c, v, p, depth + 1, &f->kids[0]);
        if (rc == HV_OK) f->nkids = 1;
    } else {
        rc = parse_leaf(c, o, ptr, f);
    }
    if (rc == HV_OK && f->name == NULL) {
        const char *nm = NULL;
        if (json_object_object_get_ex(o, "name", &v) && json_object_is_type(v, json_type_string))
            nm = json_object_get_string(v);
        f->name = hv_strdup(nm ? nm : ptr[0] ? ptr : "/");
        if (f->name == NULL) rc = HV_ENOMEM;
    }
out:
    if (rc != HV_OK) {
        hv__filter_free(f);
        return rc;
    }
    *out = f;
    return HV_OK;
}

/* ------------------------------------------------------------------------- */
/* Types                                                                     */
/* ------------------------------------------------------------------------- */

/* Resolves a type name: a registered entry, or (not strict) a catalog name. */
static int resolve_type(ctx_t *c, const char *kind, const char *type, const char *ptr,
                        const char *const *catalog, int registered) {
    char p[512];
    ptr_join(p, sizeof(p), ptr, "type");
    if (registered) return HV_OK;
    if (in_list(catalog, type)) {
        if (!c->strict) return HV_OK;
        return fail_at(c, p, 0,
                       "%s type \"%s\" is not available in this engine: no running module "
                       "provides it (see docs/channels.md for which module does)",
                       kind, type);
    }
    {
        char known[512];
        size_t n = 0;
        const char *const *k;
        known[0] = '\0';
        for (k = catalog; *k && n < sizeof(known) - 40; k++)
            n += (size_t)snprintf(known + n, sizeof(known) - n, "%s%s", n ? ", " : "", *k);
        return fail_at(c, p, 0, "unknown %s type \"%s\" (known: %s)", kind, type, known);
    }
}

static const char *const dest_common[] = {"name", "type", "queue", "when", "enabled", "purpose", NULL};

/* Copies obj without the common keys, for the type's own check and open. */
static json_object *strip_keys(json_object *obj, const char *const *common) {
    json_object *o = json_object_new_object();
    if (o == NULL) return NULL;
    json_object_object_foreach(obj, k, v) {
        if (in_list(common, k)) continue;
        if (hv_json_set(o, k, json_object_get(v)) != HV_OK) {
            json_object_put(o);
            return NULL;
        }
    }
    return o;
}

static int parse_dest(ctx_t *c, json_object *o, const char *ptr, const hv__queue_conf_t *qdef,
                      hv__dest_conf_t *d) {
    const char *name = NULL, *type = NULL;
    const hv_channel_dest_t *impl = NULL;
    json_object *q = NULL, *when = NULL;
    int rc;
    if (!json_object_is_type(o, json_type_object))
        return fail_at(c, ptr, 0, "a destination must be an object, not %s", type_name(o));
    if ((rc = get_str(c, o, ptr, "name", 1, &name)) != HV_OK) return rc;
    if ((rc = get_str(c, o, ptr, "type", 1, &type)) != HV_OK) return rc;
    if (!id_valid(name)) {
        char p[512];
        ptr_join(p, sizeof(p), ptr, "name");
        return fail_at(c, p, 0, "a destination name is 1 to 64 of A-Z a-z 0-9 - _ .");
    }
    impl = c->reg ? hv__chan_find_dest(c->reg, type) : NULL;
    if ((rc = resolve_type(c, "destination", type, ptr, known_dests, impl != NULL)) != HV_OK)
        return rc;
    d->name = hv_strdup(name);
    d->type = hv_strdup(type);
    snprintf(d->pointer, sizeof(d->pointer), "%s", ptr);
    d->queue = *qdef;
    d->queue.ordering_key = NULL; /* only a destination's own queue has one */
    if (d->name == NULL || d->type == NULL) return HV_ENOMEM;
    if ((rc = get_obj(c, o, ptr, "queue", 0, &q)) != HV_OK) return rc;
    if (q != NULL) {
        char p[512];
        ptr_join(p, sizeof(p), ptr, "queue");
        if ((rc = parse_queue(c, q, p, &d->queue)) != HV_OK) return rc;
    }
    {
        /* "purpose": the purpose of use of what this destination receives; the consent
         * filter (hv_consent_withholds) keeps back the messages of patients who deny it. */
        const char *purpose = NULL;
        if ((rc = get_str(c, o, ptr, "purpose", 0, &purpose)) != HV_OK) return rc;
        if (purpose != NULL && (d->purpose = hv_strdup(purpose)) == NULL) return HV_ENOMEM;
    }
    if (json_object_object_get_ex(o, "enabled", NULL)) {
        int en = 1;
        if ((rc = get_bool(c, o, ptr, "enabled", &en)) != HV_OK) return rc;
    }
    if (json_object_object_get_ex(o, "when", &when)) {
        char p[512];
        ptr_join(p, sizeof(p), ptr, "when");
        if ((rc = parse_filter(c, when, p, 0, &d->when)) != HV_OK) return rc;
    }
    d->conf = strip_keys(o, dest_common);
    if (d->conf == NULL) return HV_ENOMEM;
    if (impl != NULL) return run_check(c, impl->check, d->conf, ptr);
    return HV_OK;
}

static int parse_step(ctx_t *c, json_object *o, const char *ptr, hv__step_conf_t *s) {
    static const char *const step_common[] = {"type", "name", NULL};
    const char *type = NULL;
    const hv_channel_step_t *impl = NULL;
    int rc;
    if (!json_object_is_type(o, json_type_object))
        return fail_at(c, ptr, 0, "a step must be an object, not %s", type_name(o));
    if ((rc = get_str(c, o, ptr, "type", 1, &type)) != HV_OK) return rc;
    impl = c->reg ? hv__chan_find_step(c->reg, type) : NULL;
    if ((rc = resolve_type(c, "step", type, ptr, known_steps, impl != NULL)) != HV_OK) return rc;
    s->type = hv_strdup(type);
    snprintf(s->pointer, sizeof(s->pointer), "%s", ptr);
    s->conf = strip_keys(o, step_common);
    if (s->type == NULL || s->conf == NULL) return HV_ENOMEM;
    if (impl != NULL) return run_check(c, impl->check, s->conf, ptr);
    return HV_OK;
}

static int parse_source(ctx_t *c, json_object *o, hv__chan_conf_t *cc) {
    static const char *const src_common[] = {"type", NULL};
    const char *type = NULL;
    const hv_channel_source_t *impl = NULL;
    int rc;
    if ((rc = get_str(c, o, "/source", "type", 1, &type)) != HV_OK) return rc;
    impl = c->reg ? hv__chan_find_source(c->reg, type) : NULL;
    if ((rc = resolve_type(c, "source", type, "/source", known_sources, impl != NULL)) != HV_OK)
        return rc;
    cc->source_type = hv_strdup(type);
    cc->source = strip_keys(o, src_common);
    if (cc->source_type == NULL || cc->source == NULL) return HV_ENOMEM;
    if (impl != NULL) return run_check(c, impl->check, cc->source, "/source");
    return HV_OK;
}

/* ------------------------------------------------------------------------- */
/* The file                                                                  */
/* ------------------------------------------------------------------------- */

static const char *const top_keys[] = {"id",      "name",         "description", "enabled",
                                       "source",  "filter",       "steps",       "destinations",
                                       "queue",   "response",     "storage",
                                       "response_destinations", "response_timeout_ms", NULL};

void hv__chan_conf_free(hv__chan_conf_t *c) {
    size_t i;
    if (c == NULL) return;
    for (i = 0; i < c->nsteps; i++) {
        hv_free(c->steps[i].type);
        json_object_put(c->steps[i].conf);
    }
    for (i = 0; i < c->ndests; i++) {
        hv_free(c->dests[i].name);
        hv_free(c->dests[i].type);
        hv_free(c->dests[i].purpose);
        json_object_put(c->dests[i].conf);
        hv__filter_free(c->dests[i].when);
        hv__filter_free(c->dests[i].queue.ordering_key);
    }
    hv_free(c->steps);
    hv_free(c->dests);
    hv__filter_free(c->filter);
    json_object_put(c->source);
    hv_free(c->source_type);
    hv_free(c->path);
    hv_free(c->id);
    hv_free(c->name);
    hv_free(c->text_hash);
    hv_free(c);
}

/* response_destinations (names of this channel's destinations) and
 * response_timeout_ms; both only with "response": "after-destinations". */
static int parse_response(ctx_t *c, json_object *root, hv__chan_conf_t *cc) {
    json_object *names = NULL;
    int64_t timeout = 30000;
    size_t i, j;
    int rc;
    if ((rc = get_int(c, root, "", "response_timeout_ms", 1, 3600000, &timeout)) != HV_OK) return rc;
    cc->response_timeout_ms = (uint64_t)timeout;
    if ((rc = get_arr(c, root, "", "response_destinations", &names)) != HV_OK) return rc;
    if ((names != NULL || json_object_object_get_ex(root, "response_timeout_ms", NULL)) &&
        cc->response != HV__RESP_AFTER_DESTINATIONS)
        return fail_at(c, names != NULL ? "/response_destinations" : "/response_timeout_ms", 1,
                       "this key goes with \"response\": \"after-destinations\"");
    if (names == NULL) return HV_OK;
    for (i = 0; i < json_object_array_length(names); i++) {
        json_object *v = json_object_array_get_idx(names, i);
        char p[64];
        ptr_index(p, sizeof(p), "/response_destinations", i);
        if (!json_object_is_type(v, json_type_string))
            return fail_at(c, p, 0, "a destination name is a string");
        for (j = 0; j < cc->ndests; j++)
            if (strcmp(cc->dests[j].name, json_object_get_string(v)) == 0) break;
        if (j == cc->ndests)
            return fail_at(c, p, 0, "no destination is named \"%s\"", json_object_get_string(v));
        cc->response_dests |= 1u << j;
    }
    if (cc->response_dests == 0)
        return fail_at(c, "/response_destinations", 0, "name at least one destination");
    return HV_OK;
}

static int parse_root(ctx_t *c, json_object *root, hv__chan_conf_t *cc) {
    const char *id = NULL, *name = NULL, *desc = NULL, *resp = NULL;
    json_object *src = NULL, *steps = NULL, *dests = NULL, *q = NULL, *filter = NULL, *stor = NULL;
    hv__queue_conf_t qdef;
    size_t i;
    int rc;

    if (!json_object_is_type(root, json_type_object))
        return fail_at(c, "", 0, "a channel file holds one JSON object, not %s", type_name(root));
    if ((rc = check_keys(c, root, "", "channel", top_keys)) != HV_OK) return rc;
    if ((rc = get_str(c, root, "", "id", 1, &id)) != HV_OK) return rc;
    if (!id_valid(id)) return fail_at(c, "/id", 0, "a channel id is 1 to 64 of A-Z a-z 0-9 - _ .");
    if ((rc = get_str(c, root, "", "name", 0, &name)) != HV_OK) return rc;
    if ((rc = get_str(c, root, "", "description", 0, &desc)) != HV_OK) return rc;
    cc->enabled = 1;
    if ((rc = get_bool(c, root, "", "enabled", &cc->enabled)) != HV_OK) return rc;
    cc->id = hv_strdup(id);
    cc->name = hv_strdup(name ? name : id);
    if (cc->id == NULL || cc->name == NULL) return HV_ENOMEM;

    if ((rc = get_str(c, root, "", "response", 0, &resp)) != HV_OK) return rc;
    if (resp == NULL || strcmp(resp, "after-store") == 0) cc->response = HV__RESP_AFTER_STORE;
    else if (strcmp(resp, "after-filter") == 0) cc->response = HV__RESP_AFTER_FILTER;
    else if (strcmp(resp, "after-destinations") == 0) cc->response = HV__RESP_AFTER_DESTINATIONS;
    else
        return fail_at(c, "/response", 0,
                       "\"response\" is after-store, after-filter or after-destinations");

    cc->keep = HV__KEEP_ALL;
    cc->retention_days = 30;
    if ((rc = get_obj(c, root, "", "storage", 0, &stor)) != HV_OK) return rc;
    if (stor != NULL) {
        static const char *const skeys[] = {"content", "retention_days", NULL};
        const char *content = NULL;
        if ((rc = check_keys(c, stor, "/storage", "storage", skeys)) != HV_OK) return rc;
        if ((rc = get_str(c, stor, "/storage", "content", 0, &content)) != HV_OK) return rc;
        if (content != NULL && strcmp(content, "all") != 0 && strcmp(content, "metadata") != 0)
            return fail_at(c, "/storage/content", 0, "\"content\" is all or metadata");
        if (content != NULL && content[0] == 'm') cc->keep = HV__KEEP_METADATA;
        if ((rc = get_int(c, stor, "/storage", "retention_days", 0, 36500, &cc->retention_days)) !=
            HV_OK)
            return rc;
    }

    if ((rc = get_obj(c, root, "", "source", 1, &src)) != HV_OK) return rc;
    if ((rc = parse_source(c, src, cc)) != HV_OK) return rc;

    if (json_object_object_get_ex(root, "filter", &filter))
        if ((rc = parse_filter(c, filter, "/filter", 0, &cc->filter)) != HV_OK) return rc;

    if ((rc = get_arr(c, root, "", "steps", &steps)) != HV_OK) return rc;
    if (steps != NULL) {
        size_t n = json_object_array_length(steps);
        if (n > HV__CHAN_MAX_STEPS)
            return fail_at(c, "/steps", 0, "at most %d steps", HV__CHAN_MAX_STEPS);
        cc->steps = hv_calloc(n ? n : 1, sizeof(*cc->steps));
        if (cc->steps == NULL) return HV_ENOMEM;
        for (i = 0; i < n; i++) {
            char p[64];
            ptr_index(p, sizeof(p), "/steps", i);
            rc = parse_step(c, json_object_array_get_idx(steps, i), p, &cc->steps[i]);
            cc->nsteps = i + 1;
            if (rc != HV_OK) return rc;
            if (i > 0 && strcmp(cc->steps[i].type, "split-bundle") == 0) {
                size_t j;
                for (j = 0; j < i; j++)
                    if (strcmp(cc->steps[j].type, "split-bundle") == 0)
                        return fail_at(c, p, 0, "a channel splits once: one split-bundle step");
            }
        }
    }

    queue_defaults(&qdef);
    if ((rc = get_obj(c, root, "", "queue", 0, &q)) != HV_OK) return rc;
    if (q != NULL && (rc = parse_queue(c, q, "/queue", &qdef)) != HV_OK) {
        hv__filter_free(qdef.ordering_key);
        return rc;
    }
    if (qdef.ordering_key != NULL) {
        hv__filter_free(qdef.ordering_key);
        return fail_at(c, "/queue/ordering_key", 1,
                       "\"ordering_key\" belongs in a destination's own \"queue\"");
    }

    if ((rc = get_arr(c, root, "", "destinations", &dests)) != HV_OK) return rc;
    if (dests != NULL) {
        size_t n = json_object_array_length(dests);
        if (n > HV__CHAN_MAX_DESTS)
            return fail_at(c, "/destinations", 0, "at most %d destinations", HV__CHAN_MAX_DESTS);
        cc->dests = hv_calloc(n ? n : 1, sizeof(*cc->dests));
        if (cc->dests == NULL) return HV_ENOMEM;
        for (i = 0; i < n; i++) {
            char p[64];
            size_t j;
            ptr_index(p, sizeof(p), "/destinations", i);
            rc = parse_dest(c, json_object_array_get_idx(dests, i), p, &qdef, &cc->dests[i]);
            cc->ndests = i + 1;
            if (rc != HV_OK) return rc;
            for (j = 0; j < i; j++) {
                if (strcmp(cc->dests[j].name, cc->dests[i].name) == 0) {
                    char pn[96];
                    snprintf(pn, sizeof(pn), "%s/name", p);
                    return fail_at(c, pn, 0, "destination name \"%s\" is used twice",
                                   cc->dests[i].name);
                }
            }
            if (strcmp(cc->dests[i].type, "channel") == 0) {
                const char *target = hv_json_get_str(cc->dests[i].conf, "channel");
                if (target != NULL && strcmp(target, cc->id) == 0) {
                    char pn[96];
                    snprintf(pn, sizeof(pn), "%s/channel", p);
                    return fail_at(c, pn, 0, "a channel cannot hand messages to itself (a cycle)");
                }
            }
        }
    }
    return parse_response(c, root, cc);
}

static char *hash_text(const char *text, size_t len) {
    uint64_t h = 1469598103934665603ull;
    size_t i;
    char out[17];
    for (i = 0; i < len; i++) {
        h ^= (unsigned char)text[i];
        h *= 1099511628211ull;
    }
    snprintf(out, sizeof(out), "%016llx", (unsigned long long)h);
    return hv_strdup(out);
}

static int conf_parse(const char *text, size_t len, const char *path,
                      const hv__chan_registry_t *reg, int strict, hv__chan_conf_t **out,
                      hv_error_t *err) {
    json_object *root = NULL;
    hv_json_pos_t *pos = NULL;
    hv__chan_conf_t *cc = NULL;
    ctx_t c;
    int rc;

    if (len > CHANNEL_FILE_MAX) {
        hv_error_set(err, HV_ETOOBIG, path, "a channel file is at most %u bytes", CHANNEL_FILE_MAX);
        return HV_ETOOBIG;
    }
    rc = hv_json_parse(text, len, path, &root, err);
    if (rc != HV_OK) {
        if (err) err->code = HV_ECONFIG;
        return HV_ECONFIG;
    }
    pos = hv_json_pos_new(text, len);
    cc = hv_calloc(1, sizeof(*cc));
    if (pos == NULL || cc == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    c.path = path;
    c.pos = pos;
    c.reg = reg;
    c.strict = strict;
    c.err = err;
    cc->path = hv_strdup(path);
    cc->text_hash = hash_text(text, len);
    if (cc->path == NULL || cc->text_hash == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    rc = parse_root(&c, root, cc);
out:
    json_object_put(root);
    hv_json_pos_free(pos);
    if (rc != HV_OK) {
        if (rc == HV_ENOMEM) hv_error_set(err, HV_ENOMEM, path, "out of memory");
        hv__chan_conf_free(cc);
        return rc;
    }
    *out = cc;
    return HV_OK;
}

int hv__chan_conf_parse(const char *text, size_t len, const char *path,
                        const hv__chan_registry_t *reg, hv__chan_conf_t **out, hv_error_t *err) {
    return conf_parse(text, len, path, reg, reg != NULL, out, err);
}

static int conf_load(const char *path, const hv__chan_registry_t *reg, int strict,
                     hv__chan_conf_t **out, hv_error_t *err) {
    FILE *f = NULL;
    hv_buf_t b;
    char chunk[65536];
    size_t n;
    int rc = HV_OK;
    hv_buf_init(&b, CHANNEL_FILE_MAX + 1);
    f = fopen(path, "rb");
    if (f == NULL) {
        hv_error_set(err, HV_EIO, path, "cannot read: %s", strerror(errno));
        return HV_EIO;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        rc = hv_buf_append(&b, chunk, n);
        if (rc != HV_OK) {
            hv_error_set(err, rc, path, "a channel file is at most %u bytes", CHANNEL_FILE_MAX);
            goto out;
        }
    }
    if (ferror(f)) {
        hv_error_set(err, HV_EIO, path, "read error");
        rc = HV_EIO;
        goto out;
    }
    rc = conf_parse(b.data ? b.data : "", b.len, path, reg, strict, out, err);
out:
    fclose(f);
    hv_buf_release(&b);
    return rc;
}

int hv__chan_conf_load(const char *path, const hv__chan_registry_t *reg, hv__chan_conf_t **out,
                       hv_error_t *err) {
    return conf_load(path, reg, reg != NULL, out, err);
}

int hv__chan_conf_load_lenient(const char *path, const hv__chan_registry_t *reg,
                               hv__chan_conf_t **out, hv_error_t *err) {
    return conf_load(path, reg, 0, out, err);
}
