/*
 * search.c — the search interaction of FHIR R4 http.html#search and search.html:
 *
 *   GET  /fhir/:type?criteria
 *   POST /fhir/:type/_search    criteria in the body (application/x-www-form-urlencoded)
 *                               and/or the URL
 *   GET  /fhir?criteria         system level (_type=T1,T2 or the parameters of every
 *   POST /fhir/_search          resource), http.html#search
 *
 * The query is planned on the loop thread (fhir/search_plan.c: malformed values
 * answer 400 naming the parameter; unknown parameters are ignored and listed in an
 * OperationOutcome entry of search mode "outcome", or answer 400 under
 * `Prefer: handling=strict`), run as one SQL statement on the storage thread, and
 * answered with a searchset Bundle with self and next links. The next link carries
 * a keyset cursor (_cursor: the last row's sort values and row id, fhir/search_run.c),
 * so pages never repeat or skip a resource while others are written. _include and
 * _revinclude add entries of search mode "include" (fhir/search_include.c).
 *
 * Conditional create/update/delete/patch resolve their criteria through the same
 * planner (hv__search_resolve).
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/rest_int.h"
#include "fhir/search_int.h"

/*
 * The bytes kept free at the start of the entries' buffer (srch_t.body): the Bundle's
 * head (type, total, links, "entry":[) is written there when the page is done, so the
 * page is sent from the one buffer its entries were written into, not copied after a
 * head. A head that does not fit (a very long query in the links) is sent the old way,
 * head and entries copied into a new buffer.
 */
#define SEARCH_HEAD_ROOM 4096

typedef struct srch {
    hv__rreq_t *r;
    hv__search_plan_t plan;
    hv_buf_t body;   /* SEARCH_HEAD_ROOM bytes, then the entries, comma separated */
    const char *base;
    const char *path; /* the search's URL without the query (base/type, base, base/Patient/id/type) */
    char *query;     /* the criteria (URL query and form body joined), raw */
    size_t rows;
    int more;
    int64_t total;
    char *cursor;    /* the cursor after the last row of the page */
    char (*mtypes)[HV__FHIR_TYPE_MAX]; /* the page's matches, for _include/_revinclude */
    char (*mids)[HV__FHIR_ID_MAX];
    size_t included;
    int subset;      /* _summary (true, text, data) or _elements apply to the entries */
    size_t seen;     /* rows the store returned for the page (paging counts these) */
    int check;       /* matches go through the scope check (fhir/rest_authz.c) */
    int check_inc;   /* included resources do */
} srch_t;

/* Appends one entry of search mode `mode` to the Bundle's entries. */
static int put_entry(srch_t *s, const hv__store_row_t *row, const char *mode)
{
    char url[512];
    if (s->body.len > SEARCH_HEAD_ROOM)
        hv_buf_putc(&s->body, ',');
    snprintf(url, sizeof(url), "%s/%s/%s", s->base, row->type, row->id);
    hv_buf_puts(&s->body, "{\"fullUrl\":");
    hv_buf_json_str(&s->body, url, strlen(url));
    hv_buf_puts(&s->body, ",\"resource\":");
    if (s->subset) {
        /* _summary=true|text|data or _elements: applied to each entry's resource. */
        struct json_object *res = json_tokener_parse(row->text);
        const char *t;
        if (res == NULL)
            return HV_EPROTO;
        hv__rest_subset(s->r, res);
        t = json_object_to_json_string_ext(res, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        hv_buf_puts(&s->body, t ? t : "{}");
        json_object_put(res);
    } else {
        hv_buf_append(&s->body, row->text, row->text_len);
    }
    hv_buf_printf(&s->body, ",\"search\":{\"mode\":\"%s\"}}", mode);
    return hv_buf_puts(&s->body, "");
}

static int add_included(void *ud, const hv__store_row_t *row)
{
    srch_t *s = ud;
    if (s->check_inc && hv__authz_resource(s->r->principal, HV_AUTH_SEARCH, row->type, row->id, NULL, row->text) != HV_OK)
        return HV_OK; /* _include/_revinclude: what the token may not see is left out */
    s->included++;
    return put_entry(s, row, "include");
}

static int add_row(void *ud, const hv__store_row_t *row)
{
    srch_t *s = ud;
    if ((int64_t)s->seen >= s->plan.count) {
        s->more = 1;
        return HV_OK;
    }
    s->seen++;
    hv_free(s->cursor);
    s->cursor = hv_strdup(row->cursor ? row->cursor : "");
    if (s->cursor == NULL)
        return HV_ENOMEM;
    /* A match the token may not see is left out (and includes nothing); the cursor
     * still moves past it. */
    if (s->check && hv__authz_resource(s->r->principal, HV_AUTH_SEARCH, row->type, row->id, NULL, row->text) != HV_OK)
        return HV_OK;
    if (s->mtypes != NULL) {
        snprintf(s->mtypes[s->rows], HV__FHIR_TYPE_MAX, "%s", row->type);
        snprintf(s->mids[s->rows], HV__FHIR_ID_MAX, "%s", row->id);
    }
    s->rows++;
    return put_entry(s, row, "match");
}

static int job_search(hv_db_t *db, void *arg)
{
    srch_t *s = arg;
    int rc = hv__search_plan_run(db, &s->plan, add_row, s, &s->total);
    if (rc == HV_OK && s->mtypes != NULL && s->rows > 0)
        rc = hv__search_include_run(db, &s->plan, (const char(*)[HV__FHIR_TYPE_MAX])s->mtypes,
                                    (const char(*)[HV__FHIR_ID_MAX])s->mids, s->rows, add_included, s);
    return rc;
}

/* The query without _cursor, for the links. */
static char *links_query(srch_t *s, hv_arena_t *a)
{
    hv_buf_t b;
    char *q = hv_strdup(s->query), *save = NULL, *part, *out;
    hv_buf_init(&b, 16384);
    for (part = q ? strtok_r(q, "&", &save) : NULL; part != NULL; part = strtok_r(NULL, "&", &save)) {
        if (strncmp(part, "_cursor=", 8) == 0)
            continue;
        hv_buf_printf(&b, "%s%s", b.len ? "&" : "", part);
    }
    out = hv_arena_sprintf(a, "%s", b.data ? b.data : "");
    hv_buf_release(&b);
    hv_free(q);
    return out;
}

static void done_search(int status, void *arg)
{
    srch_t *s = arg;
    hv__rreq_t *r = s->r;
    hv_arena_t *a = hv_http_req_arena(r->req);
    hv_buf_t out;
    char *lq, *self;
    const char *entries = s->body.data ? s->body.data + SEARCH_HEAD_ROOM : "";
    size_t nentries = s->body.len > SEARCH_HEAD_ROOM ? s->body.len - SEARCH_HEAD_ROOM : 0;
    hv_buf_init(&out, 0);
    if (status == HV_EINVAL && s->plan.msg[0] != '\0') {
        /* found when running: a value set of :in that cannot be expanded */
        hv__rest_outcome(r, 400, "error", "invalid", "%s", s->plan.msg);
        goto out;
    }
    if (status != HV_OK) {
        hv__rest_outcome(r, 500, "error", "exception", "search failed: %s", hv_strerror(status));
        goto out;
    }
    if (s->total < 0 && s->rows == 0 && !s->plan.has_cursor && s->plan.total == HV__TOTAL_ACCURATE)
        s->total = 0;
    lq = links_query(s, a);
    hv_buf_puts(&out, "{\"resourceType\":\"Bundle\",\"type\":\"searchset\"");
    if (s->total >= 0)
        hv_buf_printf(&out, ",\"total\":%lld", (long long)s->total);
    hv_buf_puts(&out, ",\"link\":[{\"relation\":\"self\",\"url\":");
    self = hv_arena_sprintf(a, "%s?%s", s->path, hv_http_req_query(r->req));
    if (hv_http_req_query(r->req)[0] == '\0' || hv_http_req_method(r->req) == HV_HTTP_POST)
        self = hv_arena_sprintf(a, "%s%s%s", s->path, lq && *lq ? "?" : "", lq ? lq : "");
    hv_buf_json_str(&out, self ? self : "", self ? strlen(self) : 0);
    hv_buf_puts(&out, "}");
    if (s->more && s->plan.count > 0 && s->cursor != NULL) {
        const char *cur = s->cursor;
        char *next;
        next = hv_arena_sprintf(a, "%s?%s%s_cursor=%s", s->path, lq ? lq : "",
                                lq && *lq ? "&" : "", cur);
        hv_buf_puts(&out, ",{\"relation\":\"next\",\"url\":");
        hv_buf_json_str(&out, next ? next : "", next ? strlen(next) : 0);
        hv_buf_puts(&out, "}");
    }
    hv_buf_puts(&out, "]");
    if (!s->plan.summary_count) {
        hv_buf_t *tail = &out;
        hv_buf_puts(&out, ",\"entry\":[");
        if (s->body.len >= SEARCH_HEAD_ROOM && out.len <= SEARCH_HEAD_ROOM)
            tail = &s->body; /* the head goes into the room before the entries, below */
        else
            hv_buf_append(&out, entries, nentries);
        if (s->plan.unknown.len > 0) {
            /* search.html#errors: the parameters that were ignored, in an outcome entry. */
            char *msg = hv_arena_sprintf(a, "unknown search parameters ignored: %.*s", (int)s->plan.unknown.len,
                                         s->plan.unknown.data);
            hv_buf_puts(tail, nentries ? "," : "");
            hv_buf_puts(tail, "{\"resource\":{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":"
                              "\"warning\",\"code\":\"not-supported\",\"diagnostics\":");
            hv_buf_json_str(tail, msg ? msg : "", msg ? strlen(msg) : 0);
            hv_buf_puts(tail, "}]},\"search\":{\"mode\":\"outcome\"}}");
        }
        if (tail == &s->body) {
            size_t at = SEARCH_HEAD_ROOM - out.len;
            if (hv_buf_puts(&s->body, "]}") != HV_OK) {
                hv__rest_outcome(r, 500, "error", "exception", "the result is too large; use a smaller _count");
                goto out;
            }
            memcpy(s->body.data + at, out.data, out.len);
            r->summary = NULL; /* _summary applies to the Bundle, handled above */
            r->elements = NULL;
            hv__rest_send_text(r, 200, s->body.data + at, s->body.len - at);
            goto out;
        }
        hv_buf_puts(&out, "]");
    }
    if (hv_buf_puts(&out, "}") != HV_OK) {
        hv__rest_outcome(r, 500, "error", "exception", "the result is too large; use a smaller _count");
        goto out;
    }
    r->summary = NULL; /* _summary applies to the Bundle, handled above */
    r->elements = NULL;
    hv__rest_send_text(r, 200, out.data, out.len);
out:
    hv_buf_release(&out);
    hv_buf_release(&s->body);
    hv__search_plan_clear(&s->plan);
    hv_free(s->query);
    hv_free(s->mtypes);
    hv_free(s->mids);
    hv_free(s->cursor);
    hv__rreq_free(r);
    hv_free(s);
}

/*
 * Starts a search: of r->op.type (valid), or system-level (system set; r->op.type is
 * ignored), or in the compartment of Patient/compartment (not NULL). Takes r.
 */
static void start(hv__rreq_t *r, int system, const char *compartment)
{
    hv__fhir_t *f = r->f;
    hv_http_req_t *req = r->req;
    srch_t *s = hv_calloc(1, sizeof(*s));
    const char *prefer = hv_http_req_header(req, "Prefer");
    const char *q = hv_http_req_query(req);
    size_t blen = 0;
    const char *body = hv_http_req_method(req) == HV_HTTP_POST ? hv_http_req_body(req, &blen) : NULL;
    int strict = prefer != NULL && strstr(prefer, "handling=strict") != NULL, rc;
    if (s == NULL) {
        hv__rest_outcome(r, 503, "error", "transient", "out of memory");
        goto fail;
    }
    hv__search_plan_init(&s->plan);
    s->r = r;
    s->total = -1;
    s->plan.system = system;
    if (compartment != NULL)
        snprintf(s->plan.compartment, sizeof(s->plan.compartment), "%s", compartment);
    /* POST _search: the form body's parameters join the URL's (http.html#search). */
    if (body != NULL && blen > 0)
        s->query = hv_arena_sprintf(hv_http_req_arena(req), "%s%s%.*s", q, q[0] ? "&" : "", (int)blen, body);
    else
        s->query = hv_arena_sprintf(hv_http_req_arena(req), "%s", q);
    s->query = s->query ? hv_strdup(s->query) : NULL;
    if (s->query == NULL) {
        hv__rest_outcome(r, 503, "error", "transient", "out of memory");
        goto fail;
    }
    rc = hv__search_plan_build(&s->plan, system ? "" : r->op.type, s->query, strict, f->history_count,
                               f->history_max < HV__SEARCH_MAX_RESULTS ? f->history_max : HV__SEARCH_MAX_RESULTS);
    if (rc == HV_ENOTSUP) {
        hv__rest_outcome(r, 501, "error", "not-supported", "%s", s->plan.msg);
        goto fail;
    }
    if (rc != HV_OK) {
        hv__rest_outcome(r, 400, "error", "invalid", "%s", s->plan.msg[0] ? s->plan.msg : "the search is invalid");
        goto fail;
    }
    /* SMART scopes (fhir/rest_authz.c): 403 for a type outside them (system level: a
     * wildcard scope is needed); a patient/-only token searches its patient's compartment
     * (in the SQL, so totals and pages hold); any other limit is checked row by row, and
     * every _include/_revinclude'd resource is. */
    if (hv__authz_type(r, HV_AUTH_SEARCH, system ? NULL : r->op.type) != HV_OK)
        goto fail;
    {
        const char *pid = NULL;
        if (hv_auth_patient_ids(r->principal, HV_AUTH_SEARCH, system ? NULL : r->op.type, &pid) == 1 &&
            hv__search_plan_compartment(&s->plan, pid) != HV_OK) {
            hv__rest_outcome(r, 400, "error", "too-costly", "the search has too many values");
            goto fail;
        }
        s->check = hv__authz_restricted(r->principal, HV_AUTH_SEARCH, system ? NULL : r->op.type);
        s->check_inc = hv__authz_restricted(r->principal, HV_AUTH_SEARCH, NULL);
    }
    s->base = hv__rest_base(r);
    if (system)
        s->path = s->base;
    else if (compartment != NULL)
        s->path = hv_arena_sprintf(hv_http_req_arena(req), "%s/Patient/%s/%s", s->base, compartment, r->op.type);
    else
        s->path = hv_arena_sprintf(hv_http_req_arena(req), "%s/%s", s->base, r->op.type);
    if (s->path == NULL) {
        hv__rest_outcome(r, 503, "error", "transient", "out of memory");
        goto fail;
    }
    s->subset = r->elements != NULL ||
                (r->summary != NULL && (strcmp(r->summary, "true") == 0 || strcmp(r->summary, "text") == 0 ||
                                        strcmp(r->summary, "data") == 0));
    hv_buf_init(&s->body, (size_t)256 << 20);
    if (hv_buf_reserve(&s->body, SEARCH_HEAD_ROOM) != HV_OK) {
        hv__rest_outcome(r, 503, "error", "transient", "out of memory");
        goto fail;
    }
    memset(s->body.data, ' ', SEARCH_HEAD_ROOM);
    s->body.len = SEARCH_HEAD_ROOM;
    if (s->plan.ninc > 0 && s->plan.count > 0) {
        s->mtypes = hv_calloc((size_t)s->plan.count, sizeof(*s->mtypes));
        s->mids = hv_calloc((size_t)s->plan.count, sizeof(*s->mids));
        if (s->mtypes == NULL || s->mids == NULL) {
            hv__rest_outcome(r, 503, "error", "transient", "out of memory");
            goto fail;
        }
    }
    if (hv_storage_submit(f->storage, job_search, done_search, s) != HV_OK) {
        hv__rest_outcome(r, 503, "error", "transient", "the store is busy; retry later");
        goto fail;
    }
    return;
fail:
    if (s != NULL) {
        hv_buf_release(&s->body);
        hv__search_plan_clear(&s->plan);
        hv_free(s->query);
        hv_free(s->mtypes);
        hv_free(s->mids);
        hv_free(s);
    }
    hv__rreq_free(r);
}

void hv__search_handle(hv__rreq_t *r)
{
    start(r, 0, NULL);
}

void hv__search_handle_system(hv__rreq_t *r)
{
    start(r, 1, NULL);
}

static void h_system(hv_http_req_t *req, void *ud)
{
    hv__rreq_t *r = hv__rreq_new(ud, req);
    if (r != NULL)
        hv__search_handle_system(r);
}

int hv__search_routes(hv__fhir_t *f, hv_router_t *r)
{
    int rc = hv_router_add(r, HV_HTTP_GET, "/fhir", h_system, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_POST, "/fhir/_search", h_system, f);
    return rc;
}

static int collect_id(void *ud, const hv__store_row_t *row)
{
    struct {
        char (*ids)[HV__FHIR_ID_MAX];
        size_t max, n;
    } *c = ud;
    if (c->n < c->max)
        snprintf(c->ids[c->n], HV__FHIR_ID_MAX, "%s", row->id);
    c->n++;
    return HV_OK;
}

int hv__search_resolve(hv_db_t *db, hv__fop_t *op, char (*ids)[HV__FHIR_ID_MAX], size_t max, size_t *n)
{
    hv__search_plan_t p;
    struct {
        char (*ids)[HV__FHIR_ID_MAX];
        size_t max, n;
    } c = {ids, max, 0};
    int64_t total = -1;
    int rc;
    hv__search_plan_init(&p);
    rc = hv__search_plan_build(&p, op->type, op->cond, 1, (int64_t)max, (int64_t)max);
    if (rc == HV_OK && p.where.len == 0) {
        rc = hv__fop_fail(op, 400, "invalid", "conditional criteria are empty");
        goto out;
    }
    if (rc != HV_OK) {
        rc = hv__fop_fail(op, 400, "invalid", "conditional criteria: %s", p.msg[0] ? p.msg : "invalid");
        goto out;
    }
    p.total = HV__TOTAL_NONE;
    p.count = (int64_t)max;
    rc = hv__search_plan_run(db, &p, collect_id, &c, &total);
    if (rc == HV_OK)
        *n = c.n > max ? max + 1 : c.n;
    else if (rc == HV_EINVAL && p.msg[0] != '\0')
        rc = hv__fop_fail(op, 400, "invalid", "conditional criteria: %s", p.msg);
out:
    hv__search_plan_clear(&p);
    return rc;
}
