/*
 * rest.c — the FHIR R4 RESTful API at /fhir (FHIR R4 http.html): the module's
 * running state, content negotiation and the answer writers every interaction
 * family uses (fhir/rest_crud.c, rest_history.c, rest_bundle.c,
 * rest_capability.c).
 *
 * Formats (http.html#mime-type): the answer is XML when _format says xml
 * (xml, text/xml, application/xml, application/fhir+xml) or when Accept names XML
 * and not JSON; JSON otherwise. Request bodies are read by Content-Type
 * (application/fhir+json, application/json, application/fhir+xml,
 * application/xml; another type is 415). _pretty=true indents.
 *
 * Result parameters (search.html#summary, #elements): _summary=true keeps the
 * elements marked isSummary (recursively), =text keeps text, id, meta and the
 * mandatory top-level elements, =data drops text; _elements keeps the listed
 * top-level elements. A subsetted answer carries meta.tag SUBSETTED.
 *
 * Prefer (http.html#ops): return=minimal answers without a body,
 * return=OperationOutcome with an OperationOutcome, return=representation (the
 * default) with the resource.
 *
 * Every error is an OperationOutcome with the status (hv_router_set_error_format
 * makes the router's own 404/405/413 answers under /fhir OperationOutcomes too).
 */
#include "config.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "fhir/rest_int.h"
#include "fhir/search_int.h"

struct json_object *hv__outcome_new(const char *severity, const char *code, const char *msg)
{
    struct json_object *oo = json_object_new_object(), *issues = json_object_new_array(),
                       *is = json_object_new_object();
    hv_json_set_str(oo, "resourceType", "OperationOutcome");
    hv_json_set_str(is, "severity", severity);
    hv_json_set_str(is, "code", code);
    hv_json_set_str(is, "diagnostics", msg);
    json_object_array_add(issues, is);
    hv_json_set(oo, "issue", issues);
    return oo;
}

/* ---- format negotiation ---- */

static int is_xml_type(const char *s)
{
    return s != NULL && (strcasecmp(s, "xml") == 0 || strstr(s, "xml") != NULL);
}

static int is_json_type(const char *s)
{
    return s != NULL && (strcasecmp(s, "json") == 0 || strstr(s, "json") != NULL);
}

hv__rreq_t *hv__rreq_new(hv__fhir_t *f, hv_http_req_t *req)
{
    hv__rreq_t *r = hv_calloc(1, sizeof(*r));
    const char *fmt, *accept, *pretty, *prefer;
    if (r == NULL) {
        hv_http_respond_error(req, 503, "transient", "out of memory");
        return NULL;
    }
    r->f = f;
    r->req = req;
    r->principal = hv_auth_principal(req);
    fmt = hv_http_req_query_param(req, "_format");
    accept = hv_http_req_header(req, "Accept");
    if (fmt != NULL) {
        if (is_xml_type(fmt)) {
            r->xml = 1;
        } else if (!is_json_type(fmt)) {
            hv__rest_outcome(r, 406, "error", "not-supported",
                             "_format %.64s is not supported (json or xml)", fmt);
            hv_free(r);
            return NULL;
        }
    } else if (accept != NULL && strstr(accept, "xml") != NULL && strstr(accept, "json") == NULL) {
        r->xml = 1;
    }
    pretty = hv_http_req_query_param(req, "_pretty");
    r->pretty = pretty != NULL && strcmp(pretty, "true") == 0;
    r->summary = hv_http_req_query_param(req, "_summary");
    r->elements = hv_http_req_query_param(req, "_elements");
    if (r->summary != NULL && strcmp(r->summary, "true") != 0 && strcmp(r->summary, "false") != 0 &&
        strcmp(r->summary, "text") != 0 && strcmp(r->summary, "data") != 0 &&
        strcmp(r->summary, "count") != 0) {
        hv__rest_outcome(r, 400, "error", "invalid", "_summary must be true, false, text, data or count");
        hv_free(r);
        return NULL;
    }
    prefer = hv_http_req_header(req, "Prefer");
    if (prefer != NULL) {
        if (strstr(prefer, "return=minimal") != NULL)
            r->prefer = HV__PREFER_MINIMAL;
        else if (strstr(prefer, "return=OperationOutcome") != NULL)
            r->prefer = HV__PREFER_OUTCOME;
    }
    return r;
}

void hv__rreq_free(hv__rreq_t *r)
{
    if (r == NULL)
        return;
    hv__fop_clear(&r->op);
    json_object_put(r->warnings);
    json_object_put(r->entries);
    hv__bundle_job_free(r->bj);
    hv_free(r);
}

void hv__rreq_submit(hv__rreq_t *r, hv_storage_job_cb job, hv_storage_done_cb done)
{
    hv__rreq_submit_ex(r, job, done, 0);
}

void hv__rreq_submit_ex(hv__rreq_t *r, hv_storage_job_cb job, hv_storage_done_cb done, int rerun)
{
    int rc;
    r->op.principal = r->principal; /* the store checks the resources themselves (fhir/rest_authz.c) */
    rc = rerun == HV__SUBMIT_DEFER ? hv_storage_submit_deferring(r->f->storage, job, done, r)
         : rerun                   ? hv_storage_submit_rerun(r->f->storage, job, done, r)
                                   : hv_storage_submit(r->f->storage, job, done, r);
    if (rc != HV_OK) {
        hv_http_header_add(r->req, "Retry-After", "1");
        hv__rest_outcome(r, 503, "error", "transient", "the store is busy (%s); retry later", hv_strerror(rc));
        hv__rreq_free(r);
    }
}

/* fhir/rest_int.h. Joins n strings into the request's arena (NULL on ENOMEM): cheaper
 * than hv_arena_sprintf on every write's Location (callgrind: ~6k instructions a create). */
char *hv__rest_join(hv__rreq_t *r, size_t n, const char *const *parts)
{
    size_t len[8], total = 0;
    char *out, *p;
    if (n > HV_ARRAY_LEN(len))
        return NULL;
    for (size_t i = 0; i < n; i++) {
        len[i] = strlen(parts[i]);
        total += len[i];
    }
    out = hv_arena_alloc(hv_http_req_arena(r->req), total + 1);
    if (out == NULL)
        return NULL;
    p = out;
    for (size_t i = 0; i < n; i++) {
        memcpy(p, parts[i], len[i]);
        p += len[i];
    }
    *p = '\0';
    return out;
}

const char *hv__rest_base(hv__rreq_t *r)
{
    const char *host, *parts[3];
    if (r->f->base_url[0] != '\0')
        return r->f->base_url;
    host = hv_http_req_header(r->req, "Host");
    parts[0] = hv_http_req_is_tls(r->req) ? "https://" : "http://";
    parts[1] = host != NULL && host[0] != '\0' && strpbrk(host, " \"<>") == NULL ? host : "localhost";
    parts[2] = "/fhir";
    return hv__rest_join(r, 3, parts);
}

/* ---- answers ---- */

/* Writes res in the negotiated format and answers; consumes res. */
static void respond_tree(hv__rreq_t *r, int status, struct json_object *res)
{
    hv_buf_t b;
    int rc;
    unsigned flags = r->pretty ? HV_FHIR_WRITE_PRETTY : 0;
    hv_buf_init(&b, 0);
    if (r->xml) {
        rc = hv_buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        if (rc == HV_OK)
            rc = hv_fhir_xml_write(res, flags, &b);
    } else {
        rc = hv_fhir_json_write(res, flags, &b);
    }
    json_object_put(res);
    if (rc != HV_OK) {
        hv_buf_release(&b);
        r->xml = 0;
        hv__rest_outcome(r, 500, "error", "exception", "the answer cannot be written as %s: %s",
                         r->xml ? "XML" : "JSON", hv_strerror(rc));
        return;
    }
    hv_http_respond_buf(r->req, status, r->xml ? "application/fhir+xml; charset=utf-8"
                                               : "application/fhir+json; charset=utf-8",
                        &b);
}

void hv__rest_outcome(hv__rreq_t *r, int status, const char *severity, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (status >= 400 && r->f != NULL && r->f->m_errors != NULL)
        hv_counter_add(r->f->m_errors, 1);
    respond_tree(r, status, hv__outcome_new(severity, code, msg));
}

/* The router's own errors under /fhir (404 no route, 405, 413…) as OperationOutcomes. */
static void error_format(hv_http_req_t *req, int status, const char *code, const char *message)
{
    hv__rreq_t r;
    const char *fmt = hv_http_req_query_param(req, "_format");
    memset(&r, 0, sizeof(r));
    r.req = req;
    {
        const char *accept = hv_http_req_header(req, "Accept");
        r.xml = fmt != NULL ? is_xml_type(fmt)
                            : accept != NULL && strstr(accept, "xml") != NULL && strstr(accept, "json") == NULL;
    }
    (void)code;
    respond_tree(&r, status,
                 hv__outcome_new("error",
                                 status == 404   ? "not-found"
                                 : status == 405 ? "not-supported"
                                 : status == 413 ? "too-costly"
                                 : status >= 500 ? "exception"
                                                 : "invalid",
                                 message));
}

static void add_subsetted(struct json_object *res)
{
    struct json_object *meta = NULL, *tags = NULL, *tag;
    if (!json_object_object_get_ex(res, "meta", &meta)) {
        meta = json_object_new_object();
        hv_json_set(res, "meta", meta);
    }
    if (!json_object_object_get_ex(meta, "tag", &tags)) {
        tags = json_object_new_array();
        hv_json_set(meta, "tag", tags);
    }
    tag = json_object_new_object();
    hv_json_set_str(tag, "system", "http://terminology.hl7.org/CodeSystem/v3-ObservationValue");
    hv_json_set_str(tag, "code", "SUBSETTED");
    json_object_array_add(tags, tag);
}

/* Keeps only the isSummary elements of obj (an object whose element is owner), recursively. */
static void summary_filter(struct json_object *obj, const hv_fhir_elem_t *owner, int depth)
{
    const char *drop[256];
    size_t nd = 0;
    if (owner == NULL || depth > 64)
        return;
    json_object_object_foreach(obj, key, val)
    {
        const char *name = key[0] == '_' ? key + 1 : key;
        const hv_fhir_type_t *chosen = NULL;
        const hv_fhir_elem_t *el;
        if (strcmp(key, "resourceType") == 0)
            continue;
        el = hv_fhir_elem_child(owner, name, strlen(name), &chosen);
        if (el == NULL || !hv_fhir_elem_is_summary(el)) {
            if (nd < HV_ARRAY_LEN(drop))
                drop[nd++] = key;
            continue;
        }
        if (chosen != NULL && hv_fhir_type_kind(chosen) == HV_FHIR_KIND_COMPLEX) {
            const hv_fhir_elem_t *sub = hv_fhir_elem_owner(el, chosen);
            if (json_object_is_type(val, json_type_object)) {
                summary_filter(val, sub, depth + 1);
            } else if (json_object_is_type(val, json_type_array)) {
                for (size_t i = 0; i < json_object_array_length(val); i++) {
                    struct json_object *it = json_object_array_get_idx(val, i);
                    if (json_object_is_type(it, json_type_object))
                        summary_filter(it, sub, depth + 1);
                }
            }
        }
    }
    for (size_t i = 0; i < nd; i++)
        json_object_object_del(obj, drop[i]);
}

/* Applies _summary and _elements to a resource tree; returns 1 when it subsetted. */
static int subset(hv__rreq_t *r, struct json_object *res)
{
    const char *rt = hv_json_get_str(res, "resourceType");
    const hv_fhir_type_t *t = rt != NULL ? hv_fhir_resource_type(rt) : NULL;
    const hv_fhir_elem_t *root = t != NULL ? hv_fhir_type_root(t) : NULL;
    const char *drop[512];
    size_t nd = 0;
    if (root == NULL)
        return 0;
    if (r->summary != NULL && strcmp(r->summary, "true") == 0) {
        summary_filter(res, root, 0);
        return 1;
    }
    if (r->summary != NULL && strcmp(r->summary, "data") == 0) {
        json_object_object_del(res, "text");
        return 1;
    }
    if (r->summary != NULL && strcmp(r->summary, "text") == 0) {
        json_object_object_foreach(res, key, val)
        {
            const hv_fhir_elem_t *el = hv_fhir_elem_child(root, key, strlen(key), NULL);
            (void)val;
            if (strcmp(key, "resourceType") == 0 || strcmp(key, "id") == 0 || strcmp(key, "meta") == 0 ||
                strcmp(key, "text") == 0 || (el != NULL && hv_fhir_elem_min(el) > 0))
                continue;
            if (nd < HV_ARRAY_LEN(drop))
                drop[nd++] = key;
        }
    } else if (r->elements != NULL) {
        json_object_object_foreach(res, key, val)
        {
            const char *name = key[0] == '_' ? key + 1 : key;
            size_t kl = strlen(name);
            const char *p = r->elements;
            int keep = strcmp(key, "resourceType") == 0 || strcmp(key, "id") == 0 || strcmp(key, "meta") == 0;
            (void)val;
            while (!keep && *p != '\0') {
                const char *c = strchr(p, ',');
                size_t n = c != NULL ? (size_t)(c - p) : strlen(p);
                while (n > 0 && *p == ' ') {
                    p++;
                    n--;
                }
                if (n == kl && strncmp(p, name, n) == 0)
                    keep = 1;
                p += n;
                if (*p == ',')
                    p++;
            }
            if (!keep && nd < HV_ARRAY_LEN(drop))
                drop[nd++] = key;
        }
    } else {
        return 0;
    }
    for (size_t i = 0; i < nd; i++)
        json_object_object_del(res, drop[i]);
    return 1;
}

int hv__rest_subset(hv__rreq_t *r, struct json_object *res)
{
    if (!subset(r, res))
        return 0;
    add_subsetted(res);
    return 1;
}

void hv__rest_send_json(hv__rreq_t *r, int status, struct json_object *res)
{
    if (subset(r, res))
        add_subsetted(res);
    respond_tree(r, status, res);
}

void hv__rest_send_text(hv__rreq_t *r, int status, const char *text, size_t len)
{
    struct json_object *res;
    int plain = !r->xml && !r->pretty && r->elements == NULL &&
                (r->summary == NULL || strcmp(r->summary, "false") == 0 || strcmp(r->summary, "count") == 0);
    if (plain) {
        /* The stored text is already the canonical JSON: send it as it is. */
        hv_http_respond(r->req, status, "application/fhir+json; charset=utf-8", text, len);
        return;
    }
    res = json_tokener_parse(text);
    if (res == NULL) {
        hv__rest_outcome(r, 500, "error", "exception", "a stored resource cannot be read");
        return;
    }
    hv__rest_send_json(r, status, res);
}

/* RFC 9110 §5.6.7 IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") of t; 0 when gmtime fails. */
static int imf_fixdate(time_t t, char out[32])
{
    static const char days[] = "SunMonTueWedThuFriSat", months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    struct tm tm;
    char *p = out;
    int y;
    if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
        return 0;
    y = tm.tm_year + 1900;
    memcpy(p, days + 3 * tm.tm_wday, 3);
    p += 3;
    *p++ = ',';
    *p++ = ' ';
    *p++ = (char)('0' + tm.tm_mday / 10);
    *p++ = (char)('0' + tm.tm_mday % 10);
    *p++ = ' ';
    memcpy(p, months + 3 * tm.tm_mon, 3);
    p += 3;
    *p++ = ' ';
    *p++ = (char)('0' + y / 1000);
    *p++ = (char)('0' + y / 100 % 10);
    *p++ = (char)('0' + y / 10 % 10);
    *p++ = (char)('0' + y % 10);
    *p++ = ' ';
    *p++ = (char)('0' + tm.tm_hour / 10);
    *p++ = (char)('0' + tm.tm_hour % 10);
    *p++ = ':';
    *p++ = (char)('0' + tm.tm_min / 10);
    *p++ = (char)('0' + tm.tm_min % 10);
    *p++ = ':';
    *p++ = (char)('0' + tm.tm_sec / 10);
    *p++ = (char)('0' + tm.tm_sec % 10);
    memcpy(p, " GMT", 5);
    return 1;
}

/* Built by hand, not with snprintf and strftime: they were an eighth of a cached read's
 * instructions (callgrind). The last date is kept, since most answers in a row carry the
 * same Last-Modified (per thread). */
void hv__rest_version_headers(hv__rreq_t *r, int64_t version, uint64_t ms)
{
    static _Thread_local time_t last_t = (time_t)-1;
    static _Thread_local char last_date[32];
    char etag[32], *p = etag + sizeof(etag);
    uint64_t v = version > 0 ? (uint64_t)version : 0;
    time_t t = (time_t)(ms / 1000);
    *--p = '\0';
    *--p = '"';
    p = hv_u64_digits(v, p);
    *--p = '"';
    *--p = '/';
    *--p = 'W';
    hv_http_header_add(r->req, "ETag", p);
    if (ms == 0)
        return;
    if (t != last_t) {
        if (!imf_fixdate(t, last_date))
            return;
        last_t = t;
    }
    hv_http_header_add(r->req, "Last-Modified", last_date);
}

struct json_object *hv__rest_body(hv__rreq_t *r)
{
    size_t len = 0;
    const char *body = hv_http_req_body(r->req, &len);
    const char *ct = hv_http_req_header(r->req, "Content-Type");
    struct json_object *res = NULL;
    hv_error_t err;
    int xml, rc;
    hv_error_clear(&err);
    if (body == NULL || len == 0) {
        hv__rest_outcome(r, 400, "error", "required", "the request has no body");
        return NULL;
    }
    if (ct != NULL && ct[0] != '\0') {
        if (is_json_type(ct)) {
            xml = 0;
        } else if (is_xml_type(ct)) {
            xml = 1;
        } else {
            hv__rest_outcome(r, 415, "error", "not-supported",
                             "Content-Type %.80s is not supported: send application/fhir+json or "
                             "application/fhir+xml",
                             ct);
            return NULL;
        }
    } else {
        size_t i = 0;
        while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
            i++;
        xml = i < len && body[i] == '<';
    }
    rc = xml ? hv_fhir_xml_parse(body, len, &r->f->parse, &res, &err)
             : hv_fhir_json_parse(body, len, &r->f->parse, &res, &err);
    if (rc != HV_OK) {
        char msg[1200];
        hv_error_format(&err, msg, sizeof(msg));
        hv__rest_outcome(r, rc == HV_ETOOBIG ? 413 : 400, "error", rc == HV_EPROTO ? "structure" : "invalid",
                         "the body is not a valid FHIR resource: %s", msg);
        return NULL;
    }
    return res;
}

int hv__rest_validate(hv__rreq_t *r, struct json_object *res)
{
    struct json_object *oo = NULL;
    int errors = 0, rc;
    if (r->f->validation == HV__VALIDATE_OFF || r->f->validator == NULL)
        return HV_OK;
    /* A clean resource's warnings are dropped below: they are not even formatted. */
    rc = hv_fhir_validate(r->f->validator, res, NULL, HV_FHIR_VALIDATE_OUTCOME_ON_ERROR, &oo, &errors);
    if (rc != HV_OK) {
        hv__rest_outcome(r, 500, "error", "exception", "validation could not run: %s", hv_strerror(rc));
        return HV_EINVAL;
    }
    if (errors > 0 && r->f->validation == HV__VALIDATE_REJECT) {
        respond_tree(r, 422, oo);
        return HV_EINVAL;
    }
    if (errors > 0)
        r->warnings = oo;
    else
        json_object_put(oo);
    return HV_OK;
}

void hv__fhir_notify(hv__fhir_t *f, const hv__fop_t *op)
{
    hv_fhir_change_t c;
    if (op->change == HV__CHANGE_NONE || op->status >= 400)
        return;
    c = op->change == HV__CHANGE_CREATED   ? HV_FHIR_CHANGE_CREATED
        : op->change == HV__CHANGE_UPDATED ? HV_FHIR_CHANGE_UPDATED
                                           : HV_FHIR_CHANGE_DELETED;
    if (f->m_writes != NULL)
        hv_counter_add(f->m_writes, 1);
    for (size_t i = 0; i < f->nlisteners; i++)
        f->listeners[i].cb(f->listeners[i].ud, op->type, op->id, op->out_version, c);
}

int hv_fhir_store_on_change(hv_engine_t *e, hv_fhir_change_cb cb, void *ud)
{
    hv__fhir_t *f = e != NULL ? hv_engine_module_state(e, "fhir") : NULL;
    if (f == NULL || cb == NULL)
        return HV_ENOTFOUND;
    if (f->nlisteners >= HV__FHIR_MAX_LISTENERS)
        return HV_ETOOBIG;
    f->listeners[f->nlisteners].cb = cb;
    f->listeners[f->nlisteners].ud = ud;
    f->nlisteners++;
    return HV_OK;
}

void hv__fhir_off_change(hv__fhir_t *f, hv_fhir_change_cb cb, void *ud)
{
    for (size_t i = 0; i < f->nlisteners; i++)
        if (f->listeners[i].cb == cb && f->listeners[i].ud == ud) {
            memmove(&f->listeners[i], &f->listeners[i + 1], (f->nlisteners - i - 1) * sizeof(f->listeners[0]));
            f->nlisteners--;
            return;
        }
}

/* ---- the module ---- */

/*
 * The storage's flush (engine/storage.c, hv_storage_set_flush): the search-index rows of
 * the REST creates that ran bare since the last flush, one INSERT per table for all of
 * them (hv__search_batch_flush), where each create would pay a statement per table; the
 * creates of a group commit share its transaction, so their rows go in together.
 */
static int flush_deferred(hv_db_t *db, int discard, void *ud)
{
    hv__fhir_t *f = ud;
    if (discard) {
        f->deferred.n = 0;
        return HV_OK;
    }
    return hv__search_batch_flush(db, &f->deferred);
}

int hv__fhir_rest_init(hv_engine_t *e, void **state)
{
    hv_config_t *cfg = hv_engine_config(e);
    hv_metrics_t *m = hv_engine_metrics(e);
    hv__fhir_t *f = hv_calloc(1, sizeof(*f));
    hv_db_t *db = NULL;
    hv_error_t err;
    const char *v;
    int rc;
    hv_error_clear(&err);
    if (f == NULL)
        return HV_ENOMEM;
    f->e = e;
    v = hv_config_str(cfg, "fhir.validation");
    f->validation = strcmp(v, "off") == 0 ? HV__VALIDATE_OFF : strcmp(v, "warn") == 0 ? HV__VALIDATE_WARN
                                                                                      : HV__VALIDATE_REJECT;
    f->max_bundle_entries = (size_t)hv_config_int(cfg, "fhir.max_bundle_entries");
    f->history_count = hv_config_int(cfg, "fhir.history_count");
    f->history_max = hv_config_int(cfg, "fhir.history_max");
    hv__search_combo_enable(hv_config_bool(cfg, "fhir.search_combined"));
    hv__search_has_total_enable(strcmp(hv_config_str(cfg, "fhir.search_has_total"), "accurate") == 0);
    hv__search_tok_enable(hv_config_bool(cfg, "fhir.search_token_rid"));
    hv__search_str_enable(hv_config_bool(cfg, "fhir.search_string_rid"));
    hv__search_has_rows_enable(hv_config_bool(cfg, "fhir.search_has_rows"));
    snprintf(f->base_url, sizeof(f->base_url), "%s", hv_config_str(cfg, "fhir.base_url"));
    f->parse.max_bytes = (size_t)hv_config_size(cfg, "fhir.max_resource_bytes");
    f->parse.max_depth = (int)hv_config_int(cfg, "fhir.max_depth");
    if (f->history_count < 1 || f->history_max < f->history_count || f->max_bundle_entries < 1) {
        rc = HV_ECONFIG;
        fprintf(stderr, "holovitals: fhir.history_count, fhir.history_max and fhir.max_bundle_entries must be "
                        "positive (history_count <= history_max)\n");
        goto fail;
    }
    if (f->validation != HV__VALIDATE_OFF) {
        f->validator = hv_fhir_validator_new();
        if (f->validator == NULL) {
            rc = HV_ENOMEM;
            goto fail;
        }
    }
    rc = hv_db_open(hv_engine_db_url(e), hv_engine_data_dir(e), "fhir", &db, &err);
    if (rc == HV_OK)
        rc = hv_db_migrate(db, "fhir", hv__store_migrations(db), &err);
    if (rc == HV_OK) /* the fhir channel source's outbox (fhir/channel_store.c) */
        rc = hv_event_outbox_migrate(db, &err);
    if (rc == HV_OK)
        rc = hv__store_tune(db, cfg);
    if (rc == HV_OK) /* strings indexed before the Unicode fold (fhir/search_reindex.c) */
        rc = hv__search_fold_upgrade(db, NULL);
    if (rc != HV_OK) {
        char msg[1024];
        hv_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "holovitals: cannot open the FHIR store: %s\n", msg[0] ? msg : hv_strerror(rc));
        hv_db_close(db);
        goto fail;
    }
    v = hv_config_str(cfg, "fhir.read_cache");
    if (strcmp(v, "on") == 0 || (strcmp(v, "auto") == 0 && hv_db_kind(db) == HV_DB_SQLITE)) {
        size_t size = (size_t)hv_config_size(cfg, "fhir.read_cache_size");
        rc = size > 0 ? hv__rcache_new(size, &f->rcache) : HV_OK;
        if (rc != HV_OK) {
            hv_db_close(db);
            goto fail;
        }
        /* On SQLite, writing commands of other processes learn of the cache by its lock; when
         * one is writing now (or another engine serves this directory), the cache stays off. */
        if (f->rcache != NULL && hv_db_kind(db) == HV_DB_SQLITE &&
            hv__rcache_lock(f->rcache, hv_engine_data_dir(e)) != HV_OK) {
            hv_log(HV_LOG_WARN, "fhir.read_cache_off",
                   "another process is writing this data directory's FHIR store: the read cache is off");
            hv__rcache_free(f->rcache);
            f->rcache = NULL;
        }
    }
    rc = hv_storage_new(hv_engine_loop(e), db, (size_t)hv_config_int(cfg, "fhir.storage_queue"),
                        (size_t)hv_config_int(cfg, "fhir.storage_batch"), &f->storage);
    if (rc != HV_OK) {
        hv_db_close(db);
        goto fail;
    }
    hv_storage_set_flush(f->storage, flush_deferred, f);
    /* SQLite with fhir.synchronous FULL: the next batch runs during the WAL's fdatasync
     * (engine/storage.c); other modes and PostgreSQL keep their own commit. */
    if (hv_config_bool(cfg, "fhir.commit_pipeline") && hv_db_kind(db) == HV_DB_SQLITE &&
        strcmp(hv_config_str(cfg, "fhir.synchronous"), "FULL") == 0) {
        int ckpt = (int)hv_config_int(cfg, "fhir.checkpoint_pages");
        rc = hv_storage_pipeline(f->storage, ckpt > 0 ? ckpt : 1000);
        if (rc != HV_OK)
            goto fail;
    } else if (hv_config_bool(cfg, "fhir.checkpoint_thread") && hv_db_kind(db) == HV_DB_SQLITE) {
        /* Otherwise SQLite checkpoints inside the storage thread's COMMIT, the serial
         * bound of large writes (a Bulk EHR sync: docs/performance.md). */
        int ckpt = (int)hv_config_int(cfg, "fhir.checkpoint_pages");
        rc = hv_storage_checkpoint_thread(f->storage, ckpt > 0 ? ckpt : 1000);
        if (rc != HV_OK)
            goto fail;
    }
    f->m_reads = hv_metrics_counter(m, "hv_fhir_reads_total", "FHIR reads answered from the store.", NULL);
    f->m_writes = hv_metrics_counter(m, "hv_fhir_writes_total", "FHIR resource versions written.", NULL);
    f->m_errors = hv_metrics_counter(m, "hv_fhir_errors_total", "FHIR requests answered with an error.", NULL);
    f->m_cache_hits = hv_metrics_counter(m, "hv_fhir_read_cache_hits_total",
                                         "FHIR reads answered from the read cache (fhir/read_cache.c).", NULL);
    {
        hv_router_t *r = hv_engine_router(e);
        rc = hv_router_set_error_format(r, "/fhir", error_format);
        if (rc == HV_OK)
            rc = hv__rest_capability_routes(f, r);
        if (rc == HV_OK)
            rc = hv__rest_crud_routes(f, r);
        if (rc == HV_OK)
            rc = hv__rest_history_routes(f, r);
        if (rc == HV_OK)
            rc = hv__rest_bundle_routes(f, r);
        if (rc == HV_OK)
            rc = hv__rest_compartment_routes(f, r);
        if (rc == HV_OK)
            rc = hv__search_routes(f, r);
        if (rc == HV_OK)
            rc = hv__search_reindex_routes(f, r);
        if (rc == HV_OK)
            rc = hv__patients_routes(f, r);
        if (rc == HV_OK)
            rc = hv__rest_export_routes(f, r);
        if (rc != HV_OK)
            goto fail;
    }
    if ((rc = hv__search_text_start(f)) != HV_OK)
        goto fail;
    hv__authz_register_picker(f, 1);
    *state = f;
    return HV_OK;
fail:
    if (f->storage != NULL)
        hv_storage_free(f->storage);
    hv__search_batch_clear(&f->deferred);
    hv__export_free(f);
    hv__rcache_free(f->rcache);
    hv_fhir_validator_free(f->validator);
    hv_free(f);
    return rc;
}

void hv__fhir_rest_stop(hv_engine_t *e, void *state)
{
    hv__fhir_t *f = state;
    (void)e;
    if (f != NULL) {
        hv__export_stop(f);
        hv__search_text_stop(f);
    }
}

void hv__fhir_rest_free(hv_engine_t *e, void *state)
{
    hv__fhir_t *f = state;
    (void)e;
    if (f == NULL)
        return;
    hv__authz_register_picker(f, 0);
    hv__export_stop(f); /* no export starts from the done callbacks below */
    if (f->storage != NULL)
        hv_storage_free(f->storage); /* runs the queued jobs and their done callbacks */
    hv__export_free(f);
    hv__search_text_free(f); /* after the storage thread: a tick's done callback uses it */
    hv__search_batch_clear(&f->deferred);
    hv__rcache_free(f->rcache);
    hv_fhir_validator_free(f->validator);
    hv_free(f);
}
