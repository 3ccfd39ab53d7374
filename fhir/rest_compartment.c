/*
 * rest_compartment.c — the Patient compartment and the instance operations of
 * FHIR R4 (compartmentdefinition-patient.html, patient-operation-everything.html,
 * resource-operation-validate.html):
 *
 *   GET  /fhir/Patient/:id/:type          the compartment's resources of one type (searchset)
 *   GET  /fhir/Patient/:id/$everything     the Patient and everything in its compartment
 *   POST /fhir/:type/$validate             validate a resource (the body, or Parameters.resource)
 *   POST /fhir/:type/:id/$validate         likewise
 *
 * Membership comes from the store's refs index (fhir/store.c): the Patient and
 * every live resource whose current version references it. $everything returns
 * those resources only (not the resources they reference in turn), at most
 * fhir.max_bundle_entries entries; Bundle.total is the full count. The
 * compartment of another type (Encounter, Practitioner…) is not supported yet.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/rest_int.h"

typedef struct comp {
    hv__rreq_t *r;
    char patient[HV__FHIR_ID_MAX];
    const char *type;   /* NULL: $everything */
    const char *base;
    hv_buf_t body;
    size_t count, max;
    int patient_live;
    int check;          /* each resource goes through the scope check (fhir/rest_authz.c) */
} comp_t;

static int add_entry(void *ud, const hv__store_row_t *row)
{
    comp_t *c = ud;
    char url[512];
    if (c->check && hv__authz_resource(c->r->principal, HV_AUTH_SEARCH, row->type, row->id, NULL, row->text) != HV_OK)
        return HV_OK; /* not counted either: the total is what the token may see */
    if (c->count++ >= c->max)
        return HV_OK;
    if (c->body.len > 0)
        hv_buf_putc(&c->body, ',');
    snprintf(url, sizeof(url), "%s/%s/%s", c->base, row->type, row->id);
    hv_buf_puts(&c->body, "{\"fullUrl\":");
    hv_buf_json_str(&c->body, url, strlen(url));
    hv_buf_puts(&c->body, ",\"resource\":");
    hv_buf_append(&c->body, row->text, row->text_len);
    return hv_buf_puts(&c->body, ",\"search\":{\"mode\":\"match\"}}");
}

static int job_compartment(hv_db_t *db, void *arg)
{
    comp_t *c = arg;
    hv__store_row_t row;
    int rc = hv__store_get(db, "Patient", c->patient, 0, &row);
    if (rc == HV_ENOTFOUND)
        return HV_OK;
    if (rc != HV_OK)
        return rc;
    c->patient_live = !row.deleted;
    /* Another patient's compartment is answered as unknown (404), like a read: $everything
     * needs the Patient itself readable, a compartment search the compartment searchable. */
    if (c->patient_live && c->check &&
        (c->type == NULL
             ? hv__authz_resource(c->r->principal, HV_AUTH_READ, "Patient", c->patient, NULL, row.text) != HV_OK
             : hv__authz_compartment(c->r->principal, HV_AUTH_SEARCH, c->type, c->patient) != HV_OK))
        c->patient_live = 0;
    hv__store_row_clear(&row);
    if (!c->patient_live)
        return HV_OK;
    return hv__store_compartment(db, c->patient, c->type, add_entry, c);
}

static void done_compartment(int status, void *arg)
{
    comp_t *c = arg;
    hv__rreq_t *r = c->r;
    hv_buf_t out;
    hv_buf_init(&out, 0);
    if (status != HV_OK) {
        hv__rest_outcome(r, 500, "error", "exception", "the compartment could not be read: %s", hv_strerror(status));
    } else if (!c->patient_live) {
        hv__rest_outcome(r, 404, "error", "not-found", "Patient/%s is not known", c->patient);
    } else {
        char *self = hv_arena_sprintf(hv_http_req_arena(r->req), "%s/Patient/%s/%s", c->base, c->patient,
                                      c->type != NULL ? c->type : "$everything");
        hv_buf_printf(&out, "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":%zu,\"link\":[{"
                            "\"relation\":\"self\",\"url\":",
                      c->count);
        hv_buf_json_str(&out, self ? self : "", self ? strlen(self) : 0);
        hv_buf_puts(&out, "}],\"entry\":[");
        hv_buf_append(&out, c->body.data ? c->body.data : "", c->body.len);
        if (hv_buf_puts(&out, "]}") == HV_OK)
            hv__rest_send_text(r, 200, out.data, out.len);
        else
            hv__rest_outcome(r, 500, "error", "exception", "out of memory");
    }
    hv_buf_release(&out);
    hv_buf_release(&c->body);
    hv__rreq_free(r);
    hv_free(c);
}

static void h_compartment(hv_http_req_t *req, void *ud)
{
    hv__fhir_t *f = ud;
    hv__rreq_t *r = hv__rreq_new(f, req);
    const char *id = hv_http_req_param(req, "id"), *type = hv_http_req_param(req, "ctype");
    comp_t *c;
    if (r == NULL)
        return;
    if (!hv__fhir_id_valid(id)) {
        hv__rest_outcome(r, 400, "error", "invalid", "not a valid FHIR id");
        goto fail;
    }
    if (type != NULL && hv_fhir_resource_type(type) == NULL) {
        hv__rest_outcome(r, 404, "error", "not-supported", "unknown resource type \"%.64s\"", type);
        goto fail;
    }
    if (hv_http_req_query(req)[0] != '\0') {
        const char *q = hv_http_req_query(req);
        /* Result parameters are fine; criteria on a compartment search are not supported
         * yet (issue 6) and answer 501 "not-supported". */
        if (strstr(q, "=") != NULL && strncmp(q, "_format", 7) != 0 && strncmp(q, "_pretty", 7) != 0 &&
            strncmp(q, "_summary", 8) != 0 && strncmp(q, "_elements", 9) != 0) {
            hv__rest_outcome(r, 501, "error", "not-supported",
                             "search parameters on a compartment are not supported yet");
            goto fail;
        }
    }
    /* SMART: a compartment search is a search (s) of its type; $everything needs the
     * Patient readable (r) and returns, of the rest, what the token may search. */
    if (hv__authz_type(r, type != NULL ? HV_AUTH_SEARCH : HV_AUTH_READ, type != NULL ? type : "Patient") != HV_OK)
        goto fail;
    c = hv_calloc(1, sizeof(*c));
    if (c == NULL) {
        hv__rest_outcome(r, 503, "error", "transient", "out of memory");
        goto fail;
    }
    c->r = r;
    c->check = hv__authz_restricted(r->principal, HV_AUTH_SEARCH, type) ||
               (type == NULL && hv__authz_restricted(r->principal, HV_AUTH_READ, "Patient"));
    snprintf(c->patient, sizeof(c->patient), "%s", id);
    c->type = type;
    c->base = hv__rest_base(r);
    c->max = f->max_bundle_entries;
    hv_buf_init(&c->body, 0);
    if (hv_storage_submit(f->storage, job_compartment, done_compartment, c) != HV_OK) {
        hv_free(c);
        hv__rest_outcome(r, 503, "error", "transient", "the store is busy; retry later");
        goto fail;
    }
    return;
fail:
    hv__rreq_free(r);
}

/* POST [type]/$validate: validation.html — 200 with the OperationOutcome, whatever it says. */
static void h_validate(hv_http_req_t *req, void *ud)
{
    hv__fhir_t *f = ud;
    hv__rreq_t *r = hv__rreq_new(f, req);
    struct json_object *res = NULL, *oo = NULL, *target;
    const char *type = hv_http_req_param(req, "type"), *rt;
    int errors = 0, rc;
    if (r == NULL)
        return;
    if (type == NULL)
        type = "Patient"; /* the route /fhir/Patient/:id/$validate */
    if (hv_fhir_resource_type(type) == NULL) {
        hv__rest_outcome(r, 404, "error", "not-supported", "unknown resource type \"%.64s\"", type);
        goto out;
    }
    res = hv__rest_body(r);
    if (res == NULL)
        goto out;
    target = res;
    rt = hv_json_get_str(res, "resourceType");
    if (rt != NULL && strcmp(rt, "Parameters") == 0 && strcmp(type, "Parameters") != 0) {
        struct json_object *params = NULL;
        target = NULL;
        if (json_object_object_get_ex(res, "parameter", &params))
            for (size_t i = 0; i < json_object_array_length(params); i++) {
                struct json_object *p = json_object_array_get_idx(params, i), *pr = NULL;
                const char *n = hv_json_get_str(p, "name");
                if (n != NULL && strcmp(n, "resource") == 0 && json_object_object_get_ex(p, "resource", &pr))
                    target = pr;
            }
        if (target == NULL) {
            hv__rest_outcome(r, 400, "error", "required", "the Parameters has no \"resource\" parameter");
            goto out;
        }
        rt = hv_json_get_str(target, "resourceType");
    }
    if (rt == NULL || strcmp(rt, type) != 0) {
        hv__rest_outcome(r, 400, "error", "invalid", "the resource is a %.64s, the URL names %s", rt ? rt : "(none)",
                         type);
        goto out;
    }
    if (f->validator == NULL) {
        f->validator = hv_fhir_validator_new();
        if (f->validator == NULL) {
            hv__rest_outcome(r, 503, "error", "transient", "out of memory");
            goto out;
        }
    }
    rc = hv_fhir_validate(f->validator, target, NULL, 0, &oo, &errors);
    if (rc != HV_OK) {
        hv__rest_outcome(r, 500, "error", "exception", "validation could not run: %s", hv_strerror(rc));
        goto out;
    }
    hv__rest_send_json(r, 200, oo);
out:
    json_object_put(res);
    hv__rreq_free(r);
}

int hv__rest_compartment_routes(hv__fhir_t *f, hv_router_t *r)
{
    int rc = hv_router_add(r, HV_HTTP_GET, "/fhir/Patient/:id/:ctype", h_compartment, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_GET, "/fhir/Patient/:id/$everything", h_compartment, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_POST, "/fhir/:type/$validate", h_validate, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_POST, "/fhir/:type/:id/$validate", h_validate, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_POST, "/fhir/Patient/:id/$validate", h_validate, f);
    return rc;
}
