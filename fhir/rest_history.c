/*
 * rest_history.c — the history interaction of FHIR R4 http.html#history:
 *
 *   GET /fhir/:type/:id/_history   instance
 *   GET /fhir/:type/_history       type
 *   GET /fhir/_history             system
 *
 * Parameters: _count (page size, capped by fhir.history_max), _since (instant:
 * versions written at or after it), _at (the versions current at that instant),
 * and _cursor, the opaque paging cursor the `next` link carries (the storage row
 * after which the next page starts — stable while new versions are written, unlike
 * an offset). Newest first, as the specification asks.
 *
 * The answer is a Bundle of type history; each entry has the resource (absent for
 * a deletion), request (POST for version 1, PUT for later versions, DELETE for a
 * deletion) and response (status, etag, lastModified). The Bundle text is built
 * on the storage thread around the stored resource texts, without re-parsing them.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/rest_int.h"

typedef struct hist {
    hv__rreq_t *r;
    hv_buf_t body;      /* the entries, comma separated */
    const char *base;
    int64_t last_rid;
    size_t rows;        /* entries written */
    size_t seen;        /* rows the store returned (paging counts these) */
    int more;
    int exists;         /* instance level: the resource has any version */
    int check;          /* each version goes through the scope check (fhir/rest_authz.c) */
    int interaction;    /* HV_AUTH_READ (instance) or HV_AUTH_SEARCH (type, system) */
} hist_t;

static int add_row(void *ud, const hv__store_row_t *row)
{
    hist_t *h = ud;
    hv_buf_t *b = &h->body;
    char ts[40];
    int rc;
    if ((int64_t)h->seen >= h->r->hq.count) {
        h->more = 1;
        return HV_OK;
    }
    h->seen++;
    h->last_rid = row->rid;
    /* A version the token may not see is left out (a deletion, which has no content to
     * check, too); the cursor still moves past it. */
    if (h->check && (row->deleted || row->text == NULL ||
                     hv__authz_resource(h->r->principal, h->interaction, row->type, row->id, NULL, row->text) !=
                         HV_OK))
        return HV_OK;
    hv__fhir_instant(row->last_ms, ts, sizeof(ts));
    if (h->rows > 0)
        hv_buf_putc(b, ',');
    hv_buf_puts(b, "{\"fullUrl\":");
    {
        char url[512];
        snprintf(url, sizeof(url), "%s/%s/%s", h->base, row->type, row->id);
        hv_buf_json_str(b, url, strlen(url));
    }
    if (!row->deleted && row->text != NULL) {
        hv_buf_puts(b, ",\"resource\":");
        hv_buf_append(b, row->text, row->text_len);
    }
    hv_buf_printf(b, ",\"request\":{\"method\":\"%s\",\"url\":\"%s%s%s\"}",
                  row->deleted ? "DELETE" : row->version == 1 ? "POST" : "PUT", row->type,
                  row->version == 1 && !row->deleted ? "" : "/", row->version == 1 && !row->deleted ? "" : row->id);
    rc = hv_buf_printf(b, ",\"response\":{\"status\":\"%s\",\"etag\":\"W/\\\"%lld\\\"\",\"lastModified\":\"%s\"}}",
                       row->deleted ? "204" : row->version == 1 ? "201" : "200", (long long)row->version, ts);
    h->rows++;
    return rc;
}

static int job_history(hv_db_t *db, void *arg)
{
    hist_t *h = arg;
    int rc;
    if (h->check && h->r->hq.id != NULL) {
        /* Instance history of a resource whose current version the token may not read
         * answers 404, as a read does. */
        hv__store_row_t row;
        int g = hv__store_get(db, h->r->hq.type, h->r->hq.id, 0, &row);
        if (g != HV_OK && g != HV_ENOTFOUND)
            return g;
        if (g == HV_ENOTFOUND || row.deleted ||
            hv__authz_resource(h->r->principal, HV_AUTH_READ, row.type, row.id, NULL, row.text) != HV_OK) {
            if (g == HV_OK)
                hv__store_row_clear(&row);
            h->exists = 0;
            return HV_OK;
        }
        hv__store_row_clear(&row);
    }
    rc = hv__store_history(db, &h->r->hq, add_row, h);
    if (rc == HV_OK && h->seen == 0 && h->r->hq.id != NULL) {
        hv__store_row_t row;
        int g = hv__store_get(db, h->r->hq.type, h->r->hq.id, 0, &row);
        if (g == HV_OK) {
            h->exists = 1;
            hv__store_row_clear(&row);
        } else if (g != HV_ENOTFOUND) {
            rc = g;
        }
    } else {
        h->exists = 1;
    }
    return rc;
}

static void done_history(int status, void *arg)
{
    hist_t *h = arg;
    hv__rreq_t *r = h->r;
    hv_buf_t out;
    hv_buf_init(&out, 0);
    if (status != HV_OK) {
        hv__rest_outcome(r, 500, "error", "exception", "history could not be read: %s", hv_strerror(status));
        goto out;
    }
    if (!h->exists) {
        hv__rest_outcome(r, 404, "error", "not-found", "%s/%s is not known", r->hq.type, r->hq.id);
        goto out;
    }
    {
        /* The links repeat the query's own parameters, so that a next page keeps them. */
        const char *path = hv_http_req_path(r->req);
        const char *p = path + 5; /* after "/fhir" */
        char q[512] = "";
        char ts[40];
        size_t ql = 0;
        if (r->hq.since_ms >= 0) {
            hv__fhir_instant((uint64_t)r->hq.since_ms, ts, sizeof(ts));
            ql += (size_t)snprintf(q + ql, sizeof(q) - ql, "&_since=%s", ts);
        }
        if (r->hq.at_ms >= 0 && ql < sizeof(q)) {
            hv__fhir_instant((uint64_t)r->hq.at_ms, ts, sizeof(ts));
            ql += (size_t)snprintf(q + ql, sizeof(q) - ql, "&_at=%s", ts);
        }
        hv_buf_puts(&out, "{\"resourceType\":\"Bundle\",\"type\":\"history\",\"link\":[{\"relation\":\"self\",\"url\":");
        {
            char cur[40] = "";
            char *self;
            if (r->hq.before_rid > 0)
                snprintf(cur, sizeof(cur), "&_cursor=%lld", (long long)r->hq.before_rid);
            self = hv_arena_sprintf(hv_http_req_arena(r->req), "%s%s?_count=%lld%s%s", h->base, p,
                                    (long long)r->hq.count, q, cur);
            hv_buf_json_str(&out, self ? self : "", self ? strlen(self) : 0);
        }
        hv_buf_puts(&out, "}");
        if (h->more && r->hq.count > 0) {
            char *next = hv_arena_sprintf(hv_http_req_arena(r->req), "%s%s?_count=%lld%s&_cursor=%lld", h->base, p,
                                          (long long)r->hq.count, q, (long long)h->last_rid);
            hv_buf_puts(&out, ",{\"relation\":\"next\",\"url\":");
            hv_buf_json_str(&out, next ? next : "", next ? strlen(next) : 0);
            hv_buf_puts(&out, "}");
        }
        hv_buf_puts(&out, "],\"entry\":[");
        hv_buf_append(&out, h->body.data ? h->body.data : "", h->body.len);
        if (hv_buf_puts(&out, "]}") != HV_OK) {
            hv__rest_outcome(r, 500, "error", "exception", "out of memory");
            goto out;
        }
        hv__rest_send_text(r, 200, out.data, out.len);
    }
out:
    hv_buf_release(&out);
    hv_buf_release(&h->body);
    hv__rreq_free(r);
    hv_free(h);
}

static int time_param(hv__rreq_t *r, const char *name, int64_t *out)
{
    const char *v = hv_http_req_query_param(r->req, name);
    *out = -1;
    if (v == NULL)
        return HV_OK;
    if (hv__fhir_parse_time(v, out) != HV_OK) {
        hv__rest_outcome(r, 400, "error", "invalid", "%s must be a FHIR instant (2024-01-31T12:00:00Z)", name);
        return HV_EINVAL;
    }
    return HV_OK;
}

static void h_history(hv_http_req_t *req, void *ud)
{
    hv__fhir_t *f = ud;
    hv__rreq_t *r = hv__rreq_new(f, req);
    hist_t *h = NULL;
    const char *type = hv_http_req_param(req, "type"), *id = hv_http_req_param(req, "id");
    const char *count = hv_http_req_query_param(req, "_count"), *cursor = hv_http_req_query_param(req, "_cursor");
    if (r == NULL)
        return;
    if (type == NULL && id != NULL)
        type = "Patient"; /* the route /fhir/Patient/:id/_history */
    if (type != NULL && hv_fhir_resource_type(type) == NULL) {
        hv__rest_outcome(r, 404, "error", "not-supported", "unknown resource type \"%.64s\"", type);
        goto fail;
    }
    if (id != NULL && !hv__fhir_id_valid(id)) {
        hv__rest_outcome(r, 400, "error", "invalid", "not a valid FHIR id");
        goto fail;
    }
    r->hq.type = type;
    r->hq.id = id;
    r->hq.count = f->history_count;
    if (count != NULL) {
        char *end = NULL;
        long long c = strtoll(count, &end, 10);
        if (end == count || *end != '\0' || c < 0) {
            hv__rest_outcome(r, 400, "error", "invalid", "_count must be a non-negative integer");
            goto fail;
        }
        r->hq.count = c > f->history_max ? f->history_max : c;
    }
    if (cursor != NULL) {
        char *end = NULL;
        long long c = strtoll(cursor, &end, 10);
        if (end == cursor || *end != '\0' || c < 1) {
            hv__rest_outcome(r, 400, "error", "invalid", "_cursor is not a cursor this server made");
            goto fail;
        }
        r->hq.before_rid = c;
    }
    if (time_param(r, "_since", &r->hq.since_ms) != HV_OK || time_param(r, "_at", &r->hq.at_ms) != HV_OK)
        goto fail;
    /* SMART: instance history is a read (r), type and system history a search (s). */
    if (hv__authz_type(r, id != NULL ? HV_AUTH_READ : HV_AUTH_SEARCH, type) != HV_OK)
        goto fail;
    h = hv_calloc(1, sizeof(*h));
    if (h == NULL) {
        hv__rest_outcome(r, 503, "error", "transient", "out of memory");
        goto fail;
    }
    h->r = r;
    h->interaction = id != NULL ? HV_AUTH_READ : HV_AUTH_SEARCH;
    h->check = hv__authz_restricted(r->principal, h->interaction, type);
    h->base = hv__rest_base(r);
    hv_buf_init(&h->body, 0);
    if (hv_storage_submit(f->storage, job_history, done_history, h) != HV_OK) {
        hv_free(h);
        hv__rest_outcome(r, 503, "error", "transient", "the store is busy; retry later");
        goto fail;
    }
    return;
fail:
    hv__rreq_free(r);
}

int hv__rest_history_routes(hv__fhir_t *f, hv_router_t *r)
{
    int rc = hv_router_add(r, HV_HTTP_GET, "/fhir/_history", h_history, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_GET, "/fhir/:type/_history", h_history, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_GET, "/fhir/:type/:id/_history", h_history, f);
    if (rc == HV_OK) /* wins over the Patient compartment route /fhir/Patient/:id/:ctype */
        rc = hv_router_add(r, HV_HTTP_GET, "/fhir/Patient/:id/_history", h_history, f);
    return rc;
}
