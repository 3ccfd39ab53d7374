/*
 * rest_crud.c — the instance-level HTTP interactions of FHIR R4 http.html:
 *
 *   GET    /fhir/:type/:id                 read   (If-None-Match, If-Modified-Since → 304)
 *   GET    /fhir/:type/:id/_history/:vid   vread
 *   POST   /fhir/:type                     create (If-None-Exist: conditional create)
 *   PUT    /fhir/:type/:id                 update, create-on-update (If-Match → 412)
 *   PUT    /fhir/:type?criteria            conditional update
 *   DELETE /fhir/:type/:id                 delete (If-Match) and /fhir/:type?criteria
 *   PATCH  /fhir/:type/:id                 JSON Patch (application/json-patch+json) or
 *                                          FHIRPath Patch (a Parameters resource); also ?criteria
 *   GET    /fhir/:type                     search (fhir/search.c); also POST /fhir/:type/_search
 *
 * The handlers check what can be checked on the loop thread (type, id, body,
 * validation), then run the interaction (fhir/store_ops.c) as a storage job and
 * answer from its done callback, after the commit: a 201 is only sent for a
 * version that is durable. A token whose scopes do not allow the interaction on
 * the type gets 403 here; the store checks the resource itself (compartment and
 * category, fhir/rest_authz.c): 404 for a read, 403 for a write.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "fhir/rest_int.h"
#include "fhir/search_int.h"

/* Copies s into dst (cap bytes), truncating; cheaper than snprintf("%s") per request. */
static void copy_str(char *dst, size_t cap, const char *s)
{
    size_t n = strnlen(s, cap - 1);
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* Checks the :type parameter; answers 404 for an unknown resource type. */
static int check_type(hv__rreq_t *r, const char *type)
{
    if (type == NULL || hv_fhir_resource_type(type) == NULL) {
        hv__rest_outcome(r, 404, "error", "not-supported", "unknown resource type \"%.64s\"", type ? type : "");
        return HV_EINVAL;
    }
    copy_str(r->op.type, sizeof(r->op.type), type);
    return HV_OK;
}

static int check_id(hv__rreq_t *r, const char *id)
{
    if (!hv__fhir_id_valid(id)) {
        hv__rest_outcome(r, 400, "error", "invalid", "\"%.80s\" is not a valid FHIR id ([A-Za-z0-9-.]{1,64})",
                         id ? id : "");
        return HV_EINVAL;
    }
    copy_str(r->op.id, sizeof(r->op.id), id);
    return HV_OK;
}

/* Parses an entity tag W/"n" (or "n", or n) into a version; -1 if it is not one. */
static int64_t parse_etag(const char *s)
{
    char *end = NULL;
    long long v;
    if (s == NULL)
        return -1;
    while (*s == ' ')
        s++;
    if (strncmp(s, "W/", 2) == 0)
        s += 2;
    if (*s == '"')
        s++;
    v = strtoll(s, &end, 10);
    if (end == s || v < 1 || (*end != '"' && *end != '\0' && *end != ' '))
        return -1;
    return v;
}

static int read_if_match(hv__rreq_t *r)
{
    const char *im = hv_http_req_header(r->req, "If-Match");
    if (im == NULL)
        return HV_OK;
    r->op.if_match = parse_etag(im);
    if (r->op.if_match < 1) {
        hv__rest_outcome(r, 400, "error", "invalid", "If-Match must be an ETag W/\"version\"");
        return HV_EINVAL;
    }
    return HV_OK;
}

#define DEFER_VERSIONS 8

static int job_op(hv_db_t *db, void *arg)
{
    hv__rreq_t *r = arg;
    int rc;
    /* A create that runs bare in its batch leaves its index rows to the batch's flush
     * (flush_deferred, fhir/rest.c); run again in its savepoint, it writes them itself. */
    hv__search_rows_join(r->op.ix_own, hv_storage_deferring() ? &r->f->deferred : NULL);
    rc = hv__fop_run(db, &r->op);
    /* Every DEFER_VERSIONS versions the rows go in at once, not all at the batch's end:
     * the thread writes them while the loop still parses the turn's requests, which wait
     * for the commit after them (a Patient's string rows then fill one 32-row INSERT). */
    if (rc == HV_OK && r->f->deferred.n >= DEFER_VERSIONS)
        rc = hv_storage_flush_deferred(db);
    return rc;
}

/* fhir/rest_int.h; read once. */
int hv__rest_write_ahead(void)
{
    static int on = -1;
    if (on < 0) {
        const char *v = getenv("HOLOVITALS_FHIR_WRITE_AHEAD");
        on = v == NULL || strcmp(v, "0") != 0;
    }
    return on;
}

/*
 * Computes the search-index rows of the op's resource ahead, here on the loop thread,
 * so that the storage thread — the bottleneck of writes — only inserts them. The rows
 * depend on the tree alone, not on the id or meta the write sets (fhir/search_int.h),
 * so they equal the rows the write would compute. A failure leaves them to the write.
 */
static void index_ahead(hv__rreq_t *r)
{
    if (hv__rest_write_ahead() && hv__search_index_rows(r->op.type, r->op.resource, &r->op.ix_own) == HV_OK)
        r->op.ix_pre = r->op.ix_own;
}

/*
 * Submits an instance interaction. hv__fop_run may run twice (hv_storage_submit_rerun):
 * each run starts from the op's inputs (a create keeps the id its first run chose, whose
 * version the rollback removed), sets every output again, and writes nothing outside
 * the database — the read cache's epoch raise (hv__rcache_invalidate) only makes a later
 * read go to the store. PATCH is submitted plainly: its patch document is applied to a
 * tree that shares values with it.
 */
static void done_op(int status, void *arg);
static void submit_op(hv__rreq_t *r)
{
    /* A plain create reads nothing of the index and writes a new id's first version: its
     * rows may wait for the flush. A conditional one searches first. */
    int defer = r->op.kind == HV__FOP_CREATE && r->op.cond == NULL;
    hv__rreq_submit_ex(r, job_op, done_op, defer ? HV__SUBMIT_DEFER : r->op.kind != HV__FOP_PATCH);
}

/* True when the If-None-Match or If-Modified-Since of a read says the client's copy is current. */
static int not_modified(hv__rreq_t *r)
{
    const char *inm = hv_http_req_header(r->req, "If-None-Match");
    const char *ims = hv_http_req_header(r->req, "If-Modified-Since");
    if (inm != NULL)
        return strcmp(inm, "*") == 0 || parse_etag(inm) == r->op.out_version;
    if (ims != NULL) {
        struct tm tm;
        memset(&tm, 0, sizeof(tm));
        if (strptime(ims, "%a, %d %b %Y %H:%M:%S GMT", &tm) != NULL) {
            int64_t t = (int64_t)timegm(&tm);
            return (int64_t)(r->op.out_ms / 1000) <= t;
        }
    }
    return 0;
}

/* Answers a completed write: Location, ETag, Last-Modified and the body Prefer asks for. */
static void answer_write(hv__rreq_t *r)
{
    hv__fop_t *op = &r->op;
    const char *base = hv__rest_base(r);
    if (op->status == 201 || op->status == 200) {
        char vbuf[24], *v = vbuf + sizeof(vbuf);
        uint64_t ver = op->out_version > 0 ? (uint64_t)op->out_version : 0;
        const char *parts[7];
        char *loc;
        *--v = '\0';
        do {
            *--v = (char)('0' + ver % 10);
            ver /= 10;
        } while (ver > 0);
        parts[0] = base;
        parts[1] = "/";
        parts[2] = op->type;
        parts[3] = "/";
        parts[4] = op->id;
        parts[5] = "/_history/";
        parts[6] = v;
        loc = base != NULL ? hv__rest_join(r, 7, parts) : NULL;
        if (loc != NULL && (op->status == 201 || op->kind == HV__FOP_UPDATE))
            hv_http_header_add(r->req, "Location", loc);
        hv__rest_version_headers(r, op->out_version, op->out_ms);
    }
    if (op->kind == HV__FOP_DELETE) {
        if (op->change == HV__CHANGE_DELETED)
            hv__rest_version_headers(r, op->out_version, 0);
        if (r->prefer == HV__PREFER_OUTCOME) {
            hv__rest_outcome(r, 200, "information", "informational", "%s/%s deleted", op->type, op->id);
            return;
        }
        hv_http_respond(r->req, 204, NULL, NULL, 0);
        return;
    }
    if (r->prefer == HV__PREFER_MINIMAL) {
        hv_http_respond(r->req, op->status, NULL, NULL, 0);
    } else if (r->prefer == HV__PREFER_OUTCOME || r->warnings != NULL) {
        if (r->prefer != HV__PREFER_OUTCOME) {
            /* Validation warnings (fhir.validation=warn) go with the resource only
             * when the client asked for the OperationOutcome; here it did not. */
            hv__rest_send_text(r, op->status, op->text, op->text_len);
            return;
        }
        if (r->warnings != NULL) {
            struct json_object *w = r->warnings;
            r->warnings = NULL;
            hv__rest_send_json(r, op->status, w);
            return;
        }
        hv__rest_outcome(r, op->status, "information", "informational", "%s/%s %s (version %lld)", op->type,
                         op->id, op->status == 201 ? "created" : "updated", (long long)op->out_version);
    } else {
        hv__rest_send_text(r, op->status, op->text, op->text_len);
    }
}

/* Answers a read or vread of the version in r->op (out_version, out_ms) whose text is given. */
static void answer_read(hv__rreq_t *r, const char *text, size_t len)
{
    hv_counter_add(r->f->m_reads, 1);
    hv__rest_version_headers(r, r->op.out_version, r->op.out_ms);
    if (not_modified(r)) {
        hv_http_respond(r->req, 304, NULL, NULL, 0);
        return;
    }
    hv__rest_send_text(r, 200, text, len);
}

static void done_op(int status, void *arg)
{
    hv__rreq_t *r = arg;
    hv__fop_t *op = &r->op;
    if (status != HV_OK && op->status < 400) {
        /* The job succeeded but its batch's commit failed: nothing was stored. */
        hv__rest_outcome(r, 500, "error", "exception", "the store could not commit: %s", hv_strerror(status));
        goto out;
    }
    if (op->status >= 400) {
        if (op->status == 410 && op->out_version > 0)
            hv__rest_version_headers(r, op->out_version, op->out_ms);
        hv__rest_outcome(r, op->status, "error", op->issue_code ? op->issue_code : "processing", "%s", op->msg);
        goto out;
    }
    hv__fhir_notify(r->f, op);
    if (op->kind == HV__FOP_READ || op->kind == HV__FOP_VREAD) {
        answer_read(r, op->text, op->text_len);
        goto out;
    }
    if (op->kind == HV__FOP_CREATE && op->status == 200) {
        /* A conditional create that found its resource answers like a read. */
        hv_counter_add(r->f->m_reads, 1);
        hv__rest_version_headers(r, op->out_version, op->out_ms);
        if (r->prefer == HV__PREFER_MINIMAL) {
            hv_http_respond(r->req, 200, NULL, NULL, 0);
            goto out;
        }
        hv__rest_send_text(r, 200, op->text, op->text_len);
        goto out;
    }
    answer_write(r);
out:
    hv__rreq_free(r);
}

/* A read's storage job: takes the read cache's epoch of the resource's bucket before it
 * reads, so that done_read can tell whether a write started since (fhir/read_cache.c). */
static int job_read(hv_db_t *db, void *arg)
{
    hv__rreq_t *r = arg;
    r->rc_epoch = hv__rcache_epoch(r->rc_hash);
    return hv__fop_run(db, &r->op);
}

/* Keeps what a read of the current version found in the read cache, then answers. */
static void done_read(int status, void *arg)
{
    hv__rreq_t *r = arg;
    hv__fop_t *op = &r->op;
    if (status == HV_OK && op->kind == HV__FOP_READ && op->status == 200 && op->text != NULL)
        hv__rcache_put(r->f->rcache, r->rc_hash, r->rc_epoch, op->type, op->id, op->out_version, op->out_ms,
                       op->text, op->text_len);
    done_op(status, arg);
}

/*
 * Answers a read or vread from the read cache when it holds the resource's current
 * version (for a vread: when that is the version asked for); returns 1 when it
 * answered. A token restricted to some resources of the type (a patient's own
 * compartment) is checked against the cached resource as the store would
 * (fhir/rest_authz.c); when it may not read it, the store answers (404).
 */
static int read_cached(hv__rreq_t *r)
{
    hv__rcache_hit_t hit;
    if (!hv__rcache_get(r->f->rcache, r->rc_hash, r->op.type, r->op.id, &hit))
        return 0;
    if (r->op.kind == HV__FOP_VREAD && r->op.version != hit.version)
        return 0;
    if (r->principal != NULL && hv__authz_resource(r->principal, HV_AUTH_READ, r->op.type, r->op.id, NULL,
                                                   hit.text) != HV_OK)
        return 0;
    r->op.status = 200;
    r->op.out_version = hit.version;
    r->op.out_ms = hit.ms;
    hv_counter_add(r->f->m_cache_hits, 1);
    answer_read(r, hit.text, hit.len);
    return 1;
}

static void h_read(hv_http_req_t *req, void *ud)
{
    hv__rreq_t *r = hv__rreq_new(ud, req);
    const char *vid, *type;
    if (r == NULL)
        return;
    /* /fhir/Patient/:id/_history/:vid has the type as a literal segment. */
    type = hv_http_req_param(req, "type") != NULL ? hv_http_req_param(req, "type") : "Patient";
    if (check_type(r, type) != HV_OK || hv__authz_type(r, HV_AUTH_READ, type) != HV_OK ||
        check_id(r, hv_http_req_param(req, "id")) != HV_OK)
        goto fail;
    vid = hv_http_req_param(req, "vid");
    hv__fop_init(&r->op, vid != NULL ? HV__FOP_VREAD : HV__FOP_READ);
    copy_str(r->op.type, sizeof(r->op.type), type);
    copy_str(r->op.id, sizeof(r->op.id), hv_http_req_param(req, "id"));
    if (vid != NULL) {
        char *end = NULL;
        long long v = strtoll(vid, &end, 10);
        if (end == vid || *end != '\0' || v < 1) {
            hv__rest_outcome(r, 404, "error", "not-found", "\"%.40s\" is not a version of %s/%s", vid, r->op.type,
                             r->op.id);
            goto fail;
        }
        r->op.version = v;
    }
    r->rc_hash = hv__rcache_hash(r->op.type, r->op.id);
    if (read_cached(r)) {
        hv__rreq_free(r);
        return;
    }
    hv__rreq_submit_ex(r, job_read, done_read, 1); /* a read writes nothing: it may run twice */
    return;
fail:
    hv__rreq_free(r);
}

/* Checks the body's resourceType against the URL's type. */
static int check_body_type(hv__rreq_t *r, struct json_object *res)
{
    const char *rt = hv_json_get_str(res, "resourceType");
    if (rt == NULL || strcmp(rt, r->op.type) != 0) {
        hv__rest_outcome(r, 400, "error", "invalid", "the body is a %.64s, the URL names %s", rt ? rt : "(none)",
                         r->op.type);
        return HV_EINVAL;
    }
    return HV_OK;
}

static void h_create(hv_http_req_t *req, void *ud)
{
    hv__rreq_t *r = hv__rreq_new(ud, req);
    const char *ine;
    struct json_object *res;
    if (r == NULL)
        return;
    hv__fop_init(&r->op, HV__FOP_CREATE);
    if (check_type(r, hv_http_req_param(req, "type")) != HV_OK ||
        hv__authz_type(r, HV_AUTH_CREATE, r->op.type) != HV_OK)
        goto fail;
    res = hv__rest_body(r);
    if (res == NULL)
        goto fail;
    r->op.resource = res;
    if (check_body_type(r, res) != HV_OK)
        goto fail;
    /* http.html#create: the server assigns the id; one in the body is ignored. */
    json_object_object_del(res, "id");
    if (hv__rest_validate(r, res) != HV_OK)
        goto fail;
    ine = hv_http_req_header(req, "If-None-Exist");
    if (ine != NULL) {
        const char *q = strchr(ine, '?');
        r->op.cond = hv_strdup(q != NULL ? q + 1 : ine);
    }
    index_ahead(r);
    /* An unconditional create stores a new id's first version: its id is chosen here and
     * its stored text and compartments are computed here too, off the storage thread
     * (a conditional one may answer a match instead, and keeps it all for the write). */
    if (r->op.cond == NULL && hv__rest_write_ahead()) {
        hv__fhir_new_id(r->op.id);
        hv__fop_ahead(&r->op, 1);
    }
    submit_op(r);
    return;
fail:
    hv__rreq_free(r);
}

static void h_update(hv_http_req_t *req, void *ud)
{
    hv__rreq_t *r = hv__rreq_new(ud, req);
    const char *id = hv_http_req_param(req, "id"), *body_id;
    struct json_object *res;
    if (r == NULL)
        return;
    hv__fop_init(&r->op, HV__FOP_UPDATE);
    if (check_type(r, hv_http_req_param(req, "type")) != HV_OK ||
        hv__authz_type(r, HV_AUTH_UPDATE, r->op.type) != HV_OK || read_if_match(r) != HV_OK)
        goto fail;
    if (id != NULL && check_id(r, id) != HV_OK)
        goto fail;
    res = hv__rest_body(r);
    if (res == NULL)
        goto fail;
    r->op.resource = res;
    if (check_body_type(r, res) != HV_OK)
        goto fail;
    body_id = hv_json_get_str(res, "id");
    if (id != NULL) {
        /* http.html#update: the body must carry the id of the URL. */
        if (body_id == NULL || strcmp(body_id, id) != 0) {
            hv__rest_outcome(r, 400, "error", "invalid", "the resource's id (%.70s) does not match the URL's (%s)",
                             body_id ? body_id : "missing", id);
            goto fail;
        }
    } else {
        if (hv_http_req_query(req)[0] == '\0') {
            hv__rest_outcome(r, 400, "error", "invalid", "PUT to a type needs search criteria (conditional update)");
            goto fail;
        }
        if (body_id != NULL && !hv__fhir_id_valid(body_id)) {
            hv__rest_outcome(r, 400, "error", "invalid", "the resource's id is not a valid FHIR id");
            goto fail;
        }
        r->op.cond = hv_strdup(hv_http_req_query(req));
    }
    if (hv__rest_validate(r, res) != HV_OK)
        goto fail;
    index_ahead(r);
    submit_op(r);
    return;
fail:
    hv__rreq_free(r);
}

static void h_delete(hv_http_req_t *req, void *ud)
{
    hv__rreq_t *r = hv__rreq_new(ud, req);
    const char *id = hv_http_req_param(req, "id");
    if (r == NULL)
        return;
    hv__fop_init(&r->op, HV__FOP_DELETE);
    if (check_type(r, hv_http_req_param(req, "type")) != HV_OK ||
        hv__authz_type(r, HV_AUTH_DELETE, r->op.type) != HV_OK || read_if_match(r) != HV_OK)
        goto fail;
    if (id != NULL) {
        if (check_id(r, id) != HV_OK)
            goto fail;
    } else {
        if (hv_http_req_query(req)[0] == '\0') {
            hv__rest_outcome(r, 400, "error", "invalid", "DELETE on a type needs search criteria (conditional delete)");
            goto fail;
        }
        r->op.cond = hv_strdup(hv_http_req_query(req));
    }
    submit_op(r);
    return;
fail:
    hv__rreq_free(r);
}

static void h_patch(hv_http_req_t *req, void *ud)
{
    hv__rreq_t *r = hv__rreq_new(ud, req);
    const char *id = hv_http_req_param(req, "id");
    const char *ct = hv_http_req_header(req, "Content-Type");
    size_t len = 0;
    const char *body = hv_http_req_body(req, &len);
    if (r == NULL)
        return;
    hv__fop_init(&r->op, HV__FOP_PATCH);
    if (check_type(r, hv_http_req_param(req, "type")) != HV_OK ||
        hv__authz_type(r, HV_AUTH_UPDATE, r->op.type) != HV_OK || read_if_match(r) != HV_OK)
        goto fail;
    if (id != NULL) {
        if (check_id(r, id) != HV_OK)
            goto fail;
    } else {
        if (hv_http_req_query(req)[0] == '\0') {
            hv__rest_outcome(r, 400, "error", "invalid", "PATCH on a type needs search criteria (conditional patch)");
            goto fail;
        }
        r->op.cond = hv_strdup(hv_http_req_query(req));
    }
    if (ct != NULL && strstr(ct, "json-patch+json") != NULL) {
        /* RFC 6902: the body is a JSON array of operations. */
        enum json_tokener_error jerr = json_tokener_success;
        r->op.patch = body != NULL && len > 0 && len <= r->f->parse.max_bytes
                          ? json_tokener_parse_verbose(hv_arena_strndup(hv_http_req_arena(req), body, len), &jerr)
                          : NULL;
        if (r->op.patch == NULL || !json_object_is_type(r->op.patch, json_type_array)) {
            hv__rest_outcome(r, 400, "error", "invalid", "a JSON Patch body must be a JSON array of operations");
            goto fail;
        }
    } else if (ct != NULL && (strstr(ct, "fhir+json") != NULL || strstr(ct, "fhir+xml") != NULL ||
                              strstr(ct, "application/json") != NULL || strstr(ct, "application/xml") != NULL)) {
        const char *rt;
        r->op.patch = hv__rest_body(r);
        if (r->op.patch == NULL)
            goto fail;
        rt = hv_json_get_str(r->op.patch, "resourceType");
        if (rt == NULL || strcmp(rt, "Parameters") != 0) {
            hv__rest_outcome(r, 400, "error", "invalid", "a FHIRPath Patch body must be a Parameters resource");
            goto fail;
        }
        r->op.patch_fhirpath = 1;
    } else {
        hv__rest_outcome(r, 415, "error", "not-supported",
                         "PATCH takes application/json-patch+json (JSON Patch) or application/fhir+json|xml "
                         "(FHIRPath Patch)");
        goto fail;
    }
    hv__rreq_submit(r, job_op, done_op);
    return;
fail:
    hv__rreq_free(r);
}

static void h_search(hv_http_req_t *req, void *ud)
{
    hv__rreq_t *r = hv__rreq_new(ud, req);
    if (r == NULL)
        return;
    if (check_type(r, hv_http_req_param(req, "type")) != HV_OK) {
        hv__rreq_free(r);
        return;
    }
    hv__search_handle(r); /* fhir/search.c */
}

int hv__rest_crud_routes(hv__fhir_t *f, hv_router_t *r)
{
    int rc = hv_router_add(r, HV_HTTP_GET, "/fhir/:type/:id", h_read, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_GET, "/fhir/:type/:id/_history/:vid", h_read, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_GET, "/fhir/Patient/:id/_history/:vid", h_read, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_POST, "/fhir/:type", h_create, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_GET, "/fhir/:type", h_search, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_POST, "/fhir/:type/_search", h_search, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_PUT, "/fhir/:type/:id", h_update, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_PUT, "/fhir/:type", h_update, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_DELETE, "/fhir/:type/:id", h_delete, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_DELETE, "/fhir/:type", h_delete, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_PATCH, "/fhir/:type/:id", h_patch, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_PATCH, "/fhir/:type", h_patch, f);
    return rc;
}
