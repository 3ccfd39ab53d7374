/*
 * api.c — the medical-standards HTTP API of the terminology module (the seed plan's
 * "Medical standards" service; documented in docs/openapi.yaml):
 *
 *   GET  /loinc/search?q=&limit=&offset=     full-text search of LOINC
 *   GET  /loinc/:code                        one LOINC code with its parts
 *   GET  /snomed/search  /icd10/search  /cpt/search   (same parameters)
 *   POST /convert/units  {"value": 100, "from": "mg/dL", "to": "g/L"}
 *
 * The standardization endpoints (under /standardize/, and /validate/lab-result) are in
 * standardize.c. Reads run on the module's storage thread (hv_storage jobs), never
 * on the loop thread; the job fills a result in its own arena and the done callback
 * (loop thread) writes the JSON answer. Search answers:
 *
 *   {"system": "http://loinc.org", "version": "2.77", "query": "glucose", "offset": 0,
 *    "count": 2, "results": [{"code": "2345-7", "display": "...", "active": true, ...}]}
 *
 * LOINC results carry their parts in "properties" (component, property, timeAspect,
 * system, scale, method, class, shortName, exampleUcumUnits, status); ICD-10-CM codes
 * {"billable": true|false}. Numbers are written with 15 significant digits, the
 * precision of a double (100 mg/dL -> 1 g/L, not 0.99999999999999989).
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "terminology/terminology_int.h"

#define DEFAULT_LIMIT 20

typedef struct lookup_job {
    hv__term_t *t;
    hv_http_req_t *req;
    hv_arena_t *arena;
    const char *system;
    char *q;    /* search words, or the code for a look-up */
    int is_get; /* look-up of one code rather than a search */
    size_t limit, offset;
    int rc;
    hv_terminology_concept_t *res;
    size_t n;
    const char *version;
} lookup_job_t;

/* Adds a concept's props (a JSON object text) as its "properties". */
static void add_props(struct json_object *o, const char *props) {
    struct json_object *p;
    if (props == NULL) return;
    p = json_tokener_parse(props);
    if (p == NULL) return;
    if (json_object_is_type(p, json_type_object)) hv_json_set(o, "properties", p);
    else json_object_put(p);
}

struct json_object *hv__json_number(double v) {
    char s[32];
    snprintf(s, sizeof s, "%.15g", v);
    return json_object_new_double_s(strtod(s, NULL), s);
}

struct json_object *hv__concept_json(const hv_terminology_concept_t *c) {
    struct json_object *o = json_object_new_object();
    if (o == NULL) return NULL;
    hv_json_set_str(o, "code", c->code);
    hv_json_set_str(o, "display", c->display);
    hv_json_set(o, "active", json_object_new_boolean(c->active));
    add_props(o, c->props);
    return o;
}

static int job_lookup(hv_db_t *db, void *arg) {
    lookup_job_t *j = arg;
    if (j->is_get) {
        j->res = hv_arena_alloc(j->arena, sizeof *j->res);
        j->rc = j->res == NULL ? HV_ENOMEM
                               : hv_terminology_lookup(db, j->system, j->q, j->arena, j->res);
        j->n = j->rc == HV_OK ? 1 : 0;
    } else {
        j->rc = hv_terminology_search(db, j->system, j->q, j->limit, j->offset, j->arena, &j->res,
                                      &j->n);
    }
    if (hv_terminology_version(db, j->system, j->arena, &j->version, NULL) != HV_OK)
        j->version = NULL;
    return HV_OK; /* a read: nothing to roll back */
}

static void free_job(lookup_job_t *j) {
    if (j == NULL) return;
    hv_arena_free(j->arena);
    hv_free(j);
}

static void done_lookup(int status, void *arg) {
    lookup_job_t *j = arg;
    hv_http_req_t *req = j->req;
    struct json_object *o = NULL, *arr;
    size_t i;
    if (status != HV_OK || (j->rc != HV_OK && j->rc != HV_ENOTFOUND)) {
        hv_http_respond_error(req, 500, "terminology_error", "the terminology store failed (%s)",
                              hv_strerror(status != HV_OK ? status : j->rc));
        goto out;
    }
    if (j->is_get) {
        if (j->rc == HV_ENOTFOUND) {
            hv_http_respond_error(req, 404, "not_found", "%s has no code '%.64s'%s", j->system,
                                  j->q, j->version == NULL ? " (the code system is not loaded)" : "");
            goto out;
        }
        o = hv__concept_json(&j->res[0]);
        if (o != NULL) {
            hv_json_set_str(o, "system", j->system);
            if (j->version != NULL) hv_json_set_str(o, "version", j->version);
        }
    } else {
        o = json_object_new_object();
        arr = json_object_new_array();
        if (o == NULL || arr == NULL) {
            json_object_put(arr);
            goto nomem;
        }
        hv_json_set_str(o, "system", j->system);
        if (j->version != NULL) hv_json_set_str(o, "version", j->version);
        hv_json_set_str(o, "query", j->q);
        hv_json_set_int(o, "offset", (int64_t)j->offset);
        hv_json_set_int(o, "count", (int64_t)j->n);
        for (i = 0; i < j->n; i++) json_object_array_add(arr, hv__concept_json(&j->res[i]));
        hv_json_set(o, "results", arr);
    }
nomem:
    if (o == NULL) {
        hv_http_respond_error(req, 500, "no_memory", "out of memory");
    } else {
        /* Serialize once: the same bytes answer and go into the look-up cache. */
        size_t len;
        const char *text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
        hv__cache_put(j->t->cache, hv_http_req_target(req), 200, text, len);
        hv_http_respond(req, 200, "application/json", text, len);
        json_object_put(o);
    }
out:
    free_job(j);
}

/* Parses a non-negative integer query parameter; -1 if malformed. */
static long param_long(hv_http_req_t *req, const char *name, long def, long max) {
    const char *s = hv_http_req_query_param(req, name);
    char *end = NULL;
    long v;
    if (s == NULL || s[0] == '\0') return def;
    v = strtol(s, &end, 10);
    if (*end != '\0' || v < 0) return -1;
    return v > max ? max : v;
}

static void start_lookup(hv_http_req_t *req, hv__term_t *t, const char *system, const char *q,
                         int is_get) {
    lookup_job_t *j = NULL;
    long limit = 0, offset = 0;
    int rc;
    if (!is_get) {
        limit = param_long(req, "limit", DEFAULT_LIMIT, HV_TERMINOLOGY_MAX_RESULTS);
        offset = param_long(req, "offset", 0, 100000);
        if (limit < 0 || offset < 0) {
            hv_http_respond_error(req, 400, "invalid_parameter",
                                  "limit and offset must be non-negative integers");
            return;
        }
        if (q == NULL || q[0] == '\0') {
            hv_http_respond_error(req, 400, "missing_parameter", "the query parameter q is required");
            return;
        }
        if (strlen(q) > 256) {
            hv_http_respond_error(req, 400, "invalid_parameter", "q is longer than 256 bytes");
            return;
        }
    }
    {
        const char *body;
        size_t len;
        int status;
        if (hv__cache_get(t->cache, hv_http_req_target(req), &status, &body, &len)) {
            hv_http_respond(req, status, "application/json", body, len);
            return;
        }
    }
    j = hv_calloc(1, sizeof *j);
    if (j != NULL) j->arena = hv_arena_new(0);
    if (j == NULL || j->arena == NULL || (j->q = hv_arena_strdup(j->arena, q)) == NULL) {
        free_job(j);
        hv_http_respond_error(req, 500, "no_memory", "out of memory");
        return;
    }
    j->t = t;
    j->req = req;
    j->system = system;
    j->is_get = is_get;
    j->limit = (size_t)limit;
    j->offset = (size_t)offset;
    rc = hv_storage_submit(t->storage, job_lookup, done_lookup, j);
    if (rc != HV_OK) {
        free_job(j);
        if (rc == HV_EBUSY) {
            hv_http_header_add(req, "Retry-After", "1");
            hv_http_respond_error(req, 503, "busy", "the terminology store is busy, retry");
        } else {
            hv_http_respond_error(req, 503, "unavailable", "the terminology store is closing");
        }
    }
}

static void h_loinc_search(hv_http_req_t *req, void *ud) {
    start_lookup(req, ud, HV_TERMINOLOGY_LOINC, hv_http_req_query_param(req, "q"), 0);
}
static void h_snomed_search(hv_http_req_t *req, void *ud) {
    start_lookup(req, ud, HV_TERMINOLOGY_SNOMED, hv_http_req_query_param(req, "q"), 0);
}
static void h_icd10_search(hv_http_req_t *req, void *ud) {
    start_lookup(req, ud, HV_TERMINOLOGY_ICD10CM, hv_http_req_query_param(req, "q"), 0);
}
static void h_cpt_search(hv_http_req_t *req, void *ud) {
    start_lookup(req, ud, HV_TERMINOLOGY_CPT, hv_http_req_query_param(req, "q"), 0);
}

static void h_loinc_get(hv_http_req_t *req, void *ud) {
    const char *code = hv_http_req_param(req, "code");
    if (code == NULL || !hv_terminology_loinc_code_valid(code)) {
        hv_http_respond_error(req, 400, "invalid_code",
                              "'%.32s' is not a LOINC code (digits, '-', check digit)",
                              code != NULL ? code : "");
        return;
    }
    start_lookup(req, ud, HV_TERMINOLOGY_LOINC, code, 1);
}

/* POST /convert/units — runs on the loop thread: UCUM conversion is microseconds. */
static void h_convert_units(hv_http_req_t *req, void *ud) {
    hv__term_t *t = ud;
    struct json_object *body = NULL, *v = NULL, *out;
    const char *from, *to;
    double value, result;
    hv_error_t err;
    int rc;
    body = hv__json_body(req);
    if (body == NULL) return;
    from = hv_json_get_str(body, "from");
    to = hv_json_get_str(body, "to");
    if (!json_object_object_get_ex(body, "value", &v) ||
        !(json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int)) ||
        from == NULL || to == NULL) {
        hv_http_respond_error(req, 400, "invalid_request",
                              "the body needs \"value\" (a number), \"from\" and \"to\" (UCUM units)");
        goto out;
    }
    value = json_object_get_double(v);
    if (t->ucum == NULL) {
        hv_http_respond_error(req, 503, "ucum_unavailable", "the UCUM table is not loaded");
        goto out;
    }
    hv_error_clear(&err);
    rc = hv_ucum_convert(t->ucum, value, from, to, &result, &err);
    if (rc != HV_OK) {
        struct json_object *e = json_object_new_object();
        hv_json_set_str(e, "error", rc == HV_ENOTSUP ? "unsupported_conversion"
                                    : err.column > 0 ? "invalid_unit"
                                                     : "incommensurable_units");
        hv_json_set_str(e, "message", err.message);
        if (err.column > 0) hv_json_set_int(e, "column", err.column);
        hv_http_respond_json(req, 422, e);
        goto out;
    }
    out = json_object_new_object();
    hv_json_set(out, "value", hv__json_number(value));
    hv_json_set_str(out, "from", from);
    hv_json_set_str(out, "to", to);
    hv_json_set(out, "result", hv__json_number(result));
    hv_http_respond_json(req, 200, out);
out:
    json_object_put(body);
}

struct json_object *hv__json_body(hv_http_req_t *req) {
    size_t len;
    const char *text = hv_http_req_body(req, &len);
    const char *ct = hv_http_req_header(req, "content-type");
    struct json_object *o = NULL;
    hv_error_t err;
    if (ct != NULL && strncmp(ct, "application/json", 16) != 0 && strstr(ct, "+json") == NULL) {
        hv_http_respond_error(req, 415, "unsupported_media_type", "the body must be application/json");
        return NULL;
    }
    hv_error_clear(&err);
    if (text == NULL || hv_json_parse(text, len, "body", &o, &err) != HV_OK) {
        hv_http_respond_error(req, 400, "invalid_json", "line %d, column %d: %s", err.line,
                              err.column, text == NULL ? "no body" : err.message);
        return NULL;
    }
    if (!json_object_is_type(o, json_type_object) && !json_object_is_type(o, json_type_array)) {
        json_object_put(o);
        hv_http_respond_error(req, 400, "invalid_json", "the body must be a JSON object");
        return NULL;
    }
    return o;
}

int hv__api_register(hv__term_t *t) {
    hv_router_t *r = hv_engine_router(t->e);
    int rc = hv_router_add(r, HV_HTTP_GET, "/loinc/search", h_loinc_search, t);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/loinc/:code", h_loinc_get, t);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/snomed/search", h_snomed_search, t);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/icd10/search", h_icd10_search, t);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/cpt/search", h_cpt_search, t);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/convert/units", h_convert_units, t);
    return rc;
}
