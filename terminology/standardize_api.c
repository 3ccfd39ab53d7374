/*
 * standardize_api.c — the HTTP endpoints of lab-result standardization (the logic is
 * standardize.c): each request's JSON is parsed on the loop thread, standardized on
 * the module's storage thread (which reads the store and records review items in
 * its transaction), and answered from the done callback.
 *
 *   POST /standardize/lab-result        -> 200 {status, loinc, value, interpretation, ...}
 *   POST /standardize/batch             -> 200 {"count": n, "results": [...]}   (<= 1000)
 *   POST /validate/lab-result           -> 200 {"valid": bool, "issues": [...]}
 *   GET  /standardize/review?limit=     -> 200 {"count": n, "items": [...]}
 *   PUT  /standardize/conceptmap/:sender (FHIR ConceptMap) -> 200 {"sender", "mappings"}
 */
#include "config.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "terminology/terminology_int.h"

#define MAX_BATCH 1000

enum { OP_ONE, OP_BATCH, OP_VALIDATE, OP_REVIEW, OP_CONCEPTMAP };

typedef struct std_job {
    hv__term_t *t;
    hv_http_req_t *req;
    int op;
    struct json_object *in;  /* owned */
    struct json_object *out; /* owned, built on the storage thread */
    char *sender;
    size_t limit;
    int rc;
    hv_error_t err;
} std_job_t;

static int job_run(hv_db_t *db, void *arg) {
    std_job_t *j = arg;
    hv__term_t *t = j->t;
    size_t i, n;
    hv_error_clear(&j->err);
    switch (j->op) {
    case OP_ONE:
        j->rc = hv_terminology_standardize(db, t->ucum, j->in, t->min_confidence, 1, &j->out, &j->err);
        break;
    case OP_VALIDATE:
        j->rc = hv_terminology_validate_lab(db, t->ucum, j->in, &j->out, &j->err);
        break;
    case OP_REVIEW: {
        struct json_object *items = NULL;
        j->rc = hv_terminology_review_list(db, j->limit, &items);
        if (j->rc == HV_OK) {
            j->out = json_object_new_object();
            hv_json_set_int(j->out, "count", (int64_t)json_object_array_length(items));
            hv_json_set(j->out, "items", items);
        }
        break;
    }
    case OP_CONCEPTMAP:
        j->rc = hv_terminology_conceptmap_put(db, j->sender, j->in, &n, &j->err);
        if (j->rc == HV_OK) {
            j->out = json_object_new_object();
            hv_json_set_str(j->out, "sender", j->sender);
            hv_json_set_int(j->out, "mappings", (int64_t)n);
        }
        return j->rc; /* a failed map is rolled back */
    case OP_BATCH: {
        struct json_object *arr = json_object_new_array();
        n = json_object_array_length(j->in);
        j->rc = arr != NULL ? HV_OK : HV_ENOMEM;
        for (i = 0; j->rc == HV_OK && i < n; i++) {
            struct json_object *r = NULL;
            hv_error_t e;
            hv_error_clear(&e);
            if (hv_terminology_standardize(db, t->ucum, json_object_array_get_idx(j->in, i),
                                           t->min_confidence, 1, &r, &e) != HV_OK) {
                r = json_object_new_object();
                hv_json_set_str(r, "status", "error");
                hv_json_set_str(r, "message", e.message);
            }
            json_object_array_add(arr, r);
        }
        if (j->rc == HV_OK) {
            j->out = json_object_new_object();
            hv_json_set_int(j->out, "count", (int64_t)n);
            hv_json_set(j->out, "results", arr);
        } else {
            json_object_put(arr);
        }
        break;
    }
    }
    return HV_OK;
}

static void free_job(std_job_t *j) {
    if (j == NULL) return;
    json_object_put(j->in);
    json_object_put(j->out);
    hv_free(j->sender);
    hv_free(j);
}

static void job_done(int status, void *arg) {
    std_job_t *j = arg;
    if (j->rc == HV_EINVAL) {
        hv_http_respond_error(j->req, 400, "invalid_request", "%s", j->err.message);
    } else if (status != HV_OK || j->rc != HV_OK || j->out == NULL) {
        hv_http_respond_error(j->req, 500, "terminology_error", "standardization failed (%s)",
                              hv_strerror(j->rc != HV_OK ? j->rc : status));
    } else {
        hv_http_respond_json(j->req, 200, j->out);
        j->out = NULL;
    }
    free_job(j);
}

static void submit(hv_http_req_t *req, hv__term_t *t, int op, struct json_object *in,
                   const char *sender, size_t limit) {
    std_job_t *j = hv_calloc(1, sizeof *j);
    int rc;
    if (j == NULL || (sender != NULL && (j->sender = hv_strdup(sender)) == NULL)) {
        json_object_put(in);
        free_job(j);
        hv_http_respond_error(req, 500, "no_memory", "out of memory");
        return;
    }
    j->t = t;
    j->req = req;
    j->op = op;
    j->in = in;
    j->limit = limit;
    if (t->ucum == NULL && op != OP_REVIEW && op != OP_CONCEPTMAP) {
        free_job(j);
        hv_http_respond_error(req, 503, "ucum_unavailable", "the UCUM table is not loaded");
        return;
    }
    rc = hv_storage_submit(t->storage, job_run, job_done, j);
    if (rc != HV_OK) {
        free_job(j);
        if (rc == HV_EBUSY) hv_http_header_add(req, "Retry-After", "1");
        hv_http_respond_error(req, 503, "busy", "the terminology store is busy or closing");
    }
}

static struct json_object *object_body(hv_http_req_t *req) {
    struct json_object *o = hv__json_body(req);
    if (o != NULL && !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        hv_http_respond_error(req, 400, "invalid_json", "the body must be a JSON object");
        return NULL;
    }
    return o;
}

static void h_standardize(hv_http_req_t *req, void *ud) {
    struct json_object *o = object_body(req);
    if (o != NULL) submit(req, ud, OP_ONE, o, NULL, 0);
}

static void h_validate(hv_http_req_t *req, void *ud) {
    struct json_object *o = object_body(req);
    if (o != NULL) submit(req, ud, OP_VALIDATE, o, NULL, 0);
}

static void h_batch(hv_http_req_t *req, void *ud) {
    struct json_object *o = hv__json_body(req), *arr = NULL;
    if (o == NULL) return;
    if (json_object_is_type(o, json_type_array)) {
        arr = json_object_get(o);
    } else if (json_object_object_get_ex(o, "results", &arr) &&
               json_object_is_type(arr, json_type_array)) {
        json_object_get(arr);
    } else {
        arr = NULL;
    }
    json_object_put(o);
    if (arr == NULL) {
        hv_http_respond_error(req, 400, "invalid_request",
                              "the body must be an array of lab results or {\"results\": [...]}");
        return;
    }
    if (json_object_array_length(arr) > MAX_BATCH) {
        json_object_put(arr);
        hv_http_respond_error(req, 413, "too_many_results", "a batch holds at most %d results",
                              MAX_BATCH);
        return;
    }
    submit(req, ud, OP_BATCH, arr, NULL, 0);
}

static void h_review(hv_http_req_t *req, void *ud) {
    const char *s = hv_http_req_query_param(req, "limit");
    long limit = s != NULL ? strtol(s, NULL, 10) : 100;
    if (limit <= 0 || limit > 1000) limit = 100;
    submit(req, ud, OP_REVIEW, NULL, NULL, (size_t)limit);
}

static void h_conceptmap(hv_http_req_t *req, void *ud) {
    const char *sender = hv_http_req_param(req, "sender");
    struct json_object *o;
    if (sender == NULL || sender[0] == '\0' || strlen(sender) > 128) {
        hv_http_respond_error(req, 400, "invalid_sender", "the sender must be 1-128 bytes");
        return;
    }
    o = object_body(req);
    if (o != NULL) submit(req, ud, OP_CONCEPTMAP, o, sender, 0);
}

int hv__standardize_register(hv__term_t *t) {
    hv_router_t *r = hv_engine_router(t->e);
    int rc = hv_router_add(r, HV_HTTP_POST, "/standardize/lab-result", h_standardize, t);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/standardize/batch", h_batch, t);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/validate/lab-result", h_validate, t);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/standardize/review", h_review, t);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_PUT, "/standardize/conceptmap/:sender", h_conceptmap, t);
    return rc;
}
