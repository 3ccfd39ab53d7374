/*
 * patients.c — the patient-repository endpoints of the plan (reference/seed/holovitals-plan.md),
 * same paths, as JSON views over the FHIR store:
 *
 *   GET    /patients                     {"total", "patients": [view…]}  (?limit=50&offset=0)
 *   POST   /patients                     create: a FHIR Patient, or {"given"|"firstName",
 *                                        "family"|"lastName", "birthDate", "gender", "identifiers"}
 *   GET    /patients/:id                 the view
 *   PUT    /patients/:id                 update: the same fields, merged into the stored Patient
 *   DELETE /patients/:id                 204 (a versioned FHIR delete)
 *   GET    /patients/:id/fhir-resources  {"resources": [FHIR resources of the compartment]} (?type=)
 *   POST   /patients/:id/fhir-resources  store a FHIR resource for the patient (its subject or
 *                                        patient is set to the Patient when absent)
 *   GET    /patients/:id/medications     MedicationRequest and MedicationStatement
 *   GET    /patients/:id/allergies       AllergyIntolerance
 *   GET    /patients/:id/conditions      Condition
 *   GET    /patients/:id/vitals          Observation with category vital-signs
 *
 * A patient view: {"id", "versionId", "lastUpdated", "family", "given": [..], "name",
 * "birthDate", "gender", "identifiers": [{"system", "value"}], "fhir": the Patient}. A
 * clinical item: {"id", "resourceType", "status", "display", "date", "fhir": the resource}.
 * Errors are {"error", "message"} JSON (these are not FHIR endpoints). Everything runs
 * through the same store operations as /fhir (fhir/store_ops.c), so versions, history
 * and change events are the same.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/rest_int.h"

typedef struct pv {
    hv__fhir_t *f;
    hv_http_req_t *req;
    hv__fop_t op;
    int what;               /* a VIEW_* */
    char patient[HV__FHIR_ID_MAX];
    const char *types[2];   /* compartment types listed */
    const char *filter_type;
    int64_t limit, offset;
    int patient_live;
    size_t total;
    struct json_object *list; /* FHIR resources collected by the job */
    struct json_object *merge; /* PUT: the fields to merge */
    const hv_auth_principal_t *principal; /* who asks (engine/auth); NULL with auth off */
    int check;              /* rows go through the scope check (fhir/rest_authz.c) */
} pv_t;

enum { VIEW_LIST = 1, VIEW_ONE, VIEW_CREATE, VIEW_UPDATE, VIEW_DELETE, VIEW_ITEMS, VIEW_RESOURCES, VIEW_ADD };

static void pv_free(pv_t *p)
{
    if (p == NULL)
        return;
    hv__fop_clear(&p->op);
    json_object_put(p->list);
    json_object_put(p->merge);
    hv_free(p);
}

static pv_t *pv_new(hv__fhir_t *f, hv_http_req_t *req, int what)
{
    pv_t *p = hv_calloc(1, sizeof(*p));
    if (p == NULL) {
        hv_http_respond_error(req, 503, "overloaded", "out of memory");
        return NULL;
    }
    p->f = f;
    p->req = req;
    p->what = what;
    p->principal = hv_auth_principal(req);
    return p;
}

static const char *str_at(struct json_object *o, const char *key, size_t i)
{
    struct json_object *a = NULL;
    if (!json_object_object_get_ex(o, key, &a))
        return NULL;
    if (json_object_is_type(a, json_type_array))
        a = json_object_array_get_idx(a, i);
    return json_object_is_type(a, json_type_string) ? json_object_get_string(a) : NULL;
}

static struct json_object *view_patient(struct json_object *pat)
{
    struct json_object *v = json_object_new_object(), *names = NULL, *name = NULL, *meta = NULL, *ids = NULL,
                       *given = json_object_new_array(), *idents = json_object_new_array();
    hv_buf_t full;
    hv_buf_init(&full, 1024);
    hv_json_set_str(v, "id", hv_json_get_str(pat, "id"));
    if (json_object_object_get_ex(pat, "meta", &meta)) {
        hv_json_set_str(v, "versionId", hv_json_get_str(meta, "versionId"));
        hv_json_set_str(v, "lastUpdated", hv_json_get_str(meta, "lastUpdated"));
    }
    if (json_object_object_get_ex(pat, "name", &names) && json_object_array_length(names) > 0)
        name = json_object_array_get_idx(names, 0);
    if (name != NULL) {
        for (size_t i = 0; str_at(name, "given", i) != NULL; i++) {
            json_object_array_add(given, json_object_new_string(str_at(name, "given", i)));
            hv_buf_printf(&full, "%s%s", full.len ? " " : "", str_at(name, "given", i));
        }
        if (hv_json_get_str(name, "family") != NULL) {
            hv_json_set_str(v, "family", hv_json_get_str(name, "family"));
            hv_buf_printf(&full, "%s%s", full.len ? " " : "", hv_json_get_str(name, "family"));
        }
    }
    hv_json_set(v, "given", given);
    hv_json_set_str(v, "name", full.data != NULL ? full.data : "");
    hv_json_set_str(v, "birthDate", hv_json_get_str(pat, "birthDate"));
    hv_json_set_str(v, "gender", hv_json_get_str(pat, "gender"));
    if (json_object_object_get_ex(pat, "identifier", &ids))
        for (size_t i = 0; i < json_object_array_length(ids); i++) {
            struct json_object *id = json_object_array_get_idx(ids, i), *o = json_object_new_object();
            hv_json_set_str(o, "system", hv_json_get_str(id, "system"));
            hv_json_set_str(o, "value", hv_json_get_str(id, "value"));
            json_object_array_add(idents, o);
        }
    hv_json_set(v, "identifiers", idents);
    hv_json_set(v, "fhir", json_object_get(pat));
    hv_buf_release(&full);
    return v;
}

/* The text of a CodeableConcept: its text, else the first coding's display or code. */
static const char *concept_text(struct json_object *cc)
{
    struct json_object *codings = NULL, *c;
    if (cc == NULL)
        return NULL;
    if (hv_json_get_str(cc, "text") != NULL)
        return hv_json_get_str(cc, "text");
    if (!json_object_object_get_ex(cc, "coding", &codings) || json_object_array_length(codings) == 0)
        return NULL;
    c = json_object_array_get_idx(codings, 0);
    return hv_json_get_str(c, "display") != NULL ? hv_json_get_str(c, "display") : hv_json_get_str(c, "code");
}

static struct json_object *view_item(struct json_object *res)
{
    static const char *const code_keys[] = {"medicationCodeableConcept", "code"};
    static const char *const date_keys[] = {"authoredOn", "effectiveDateTime", "recordedDate", "onsetDateTime",
                                            "dateAsserted", "issued"};
    struct json_object *v = json_object_new_object(), *x = NULL;
    const char *display = NULL, *date = NULL;
    for (size_t i = 0; i < HV_ARRAY_LEN(code_keys) && display == NULL; i++)
        if (json_object_object_get_ex(res, code_keys[i], &x))
            display = concept_text(x);
    if (display == NULL && json_object_object_get_ex(res, "medicationReference", &x))
        display = hv_json_get_str(x, "display");
    for (size_t i = 0; i < HV_ARRAY_LEN(date_keys) && date == NULL; i++)
        date = hv_json_get_str(res, date_keys[i]);
    hv_json_set_str(v, "id", hv_json_get_str(res, "id"));
    hv_json_set_str(v, "resourceType", hv_json_get_str(res, "resourceType"));
    if (hv_json_get_str(res, "status") != NULL)
        hv_json_set_str(v, "status", hv_json_get_str(res, "status"));
    else if (json_object_object_get_ex(res, "clinicalStatus", &x))
        hv_json_set_str(v, "status", concept_text(x));
    hv_json_set_str(v, "display", display);
    hv_json_set_str(v, "date", date);
    if (json_object_object_get_ex(res, "valueQuantity", &x)) {
        struct json_object *val = NULL;
        if (json_object_object_get_ex(x, "value", &val))
            hv_json_set(v, "value", json_object_get(val));
        hv_json_set_str(v, "unit", hv_json_get_str(x, "unit"));
    }
    hv_json_set(v, "fhir", json_object_get(res));
    return v;
}

/* True when an Observation has category vital-signs (FHIR R4 observation-vitalsigns). */
static int is_vital(struct json_object *res)
{
    struct json_object *cats = NULL;
    if (!json_object_object_get_ex(res, "category", &cats))
        return 0;
    for (size_t i = 0; i < json_object_array_length(cats); i++) {
        struct json_object *codings = NULL;
        if (!json_object_object_get_ex(json_object_array_get_idx(cats, i), "coding", &codings))
            continue;
        for (size_t j = 0; j < json_object_array_length(codings); j++) {
            const char *code = hv_json_get_str(json_object_array_get_idx(codings, j), "code");
            if (code != NULL && strcmp(code, "vital-signs") == 0)
                return 1;
        }
    }
    return 0;
}

/* ---- storage jobs ---- */

static int collect(void *ud, const hv__store_row_t *row)
{
    pv_t *p = ud;
    struct json_object *res;
    /* What the token's scopes do not cover is neither listed nor counted. */
    if (p->check && hv__authz_resource(p->principal, HV_AUTH_SEARCH, row->type, row->id, NULL, row->text) != HV_OK)
        return HV_OK;
    p->total++;
    if (p->what == VIEW_LIST && ((int64_t)p->total <= p->offset || (int64_t)p->total > p->offset + p->limit))
        return HV_OK;
    res = json_tokener_parse(row->text);
    if (res == NULL)
        return HV_EDB;
    json_object_array_add(p->list, res);
    return HV_OK;
}

static int job_view(hv_db_t *db, void *arg)
{
    pv_t *p = arg;
    hv__store_row_t row;
    int rc;
    p->list = json_object_new_array();
    if (p->list == NULL)
        return HV_ENOMEM;
    if (p->what == VIEW_LIST)
        return hv__store_each_current(db, "Patient", collect, p);
    rc = hv__store_get(db, "Patient", p->patient, 0, &row);
    if (rc == HV_ENOTFOUND)
        return HV_OK;
    if (rc != HV_OK)
        return rc;
    p->patient_live = !row.deleted;
    /* Another patient's record answers 404, as an unknown one does. */
    if (p->patient_live && p->principal != NULL &&
        hv__authz_resource(p->principal, HV_AUTH_READ, "Patient", p->patient, NULL, row.text) != HV_OK &&
        hv__authz_compartment(p->principal, HV_AUTH_SEARCH, p->filter_type != NULL ? p->filter_type : "Patient",
                              p->patient) != HV_OK)
        p->patient_live = 0;
    hv__store_row_clear(&row);
    if (!p->patient_live)
        return HV_OK;
    if (p->what == VIEW_RESOURCES)
        return hv__store_compartment(db, p->patient, p->filter_type, collect, p);
    for (size_t i = 0; i < HV_ARRAY_LEN(p->types) && p->types[i] != NULL; i++) {
        rc = hv__store_compartment(db, p->patient, p->types[i], collect, p);
        if (rc != HV_OK)
            return rc;
    }
    return HV_OK;
}

/* PUT: read, merge the view's fields, write — one job, so no update is lost. */
static int job_update(hv_db_t *db, void *arg)
{
    pv_t *p = arg;
    hv__store_row_t row;
    struct json_object *res;
    int rc = hv__store_get(db, "Patient", p->patient, 0, &row);
    if (rc == HV_ENOTFOUND || (rc == HV_OK && row.deleted)) {
        hv__store_row_clear(&row);
        return hv__fop_fail(&p->op, 404, "not-found", "no patient %s", p->patient), HV_OK;
    }
    if (rc != HV_OK)
        return rc;
    res = json_tokener_parse(row.text);
    hv__store_row_clear(&row);
    if (res == NULL)
        return HV_EDB;
    json_object_object_foreach(p->merge, key, val)
    {
        if (strcmp(key, "resourceType") == 0 || strcmp(key, "id") == 0 || strcmp(key, "meta") == 0)
            continue;
        hv_json_set(res, key, json_object_get(val));
    }
    p->op.resource = res;
    return hv__fop_run(db, &p->op);
}

static int job_op(hv_db_t *db, void *arg)
{
    pv_t *p = arg;
    return hv__fop_run(db, &p->op);
}

/* ---- answers (loop thread) ---- */

static void respond_resource_view(pv_t *p, int status)
{
    struct json_object *res = json_tokener_parse(p->op.text);
    if (res == NULL) {
        hv_http_respond_error(p->req, 500, "internal", "the stored resource cannot be read");
        return;
    }
    if (strcmp(p->op.type, "Patient") == 0) {
        char loc[128];
        snprintf(loc, sizeof(loc), "/patients/%s", p->op.id);
        if (status == 201)
            hv_http_header_add(p->req, "Location", loc);
        hv_http_respond_json(p->req, status, view_patient(res));
    } else {
        hv_http_respond_json(p->req, status, view_item(res));
    }
    json_object_put(res);
}

static void done_op(int status, void *arg)
{
    pv_t *p = arg;
    hv__fop_t *op = &p->op;
    if (status != HV_OK && op->status < 400) {
        hv_http_respond_error(p->req, 500, "storage_failed", "the store could not commit: %s", hv_strerror(status));
    } else if (op->status >= 400) {
        hv_http_respond_error(p->req, op->status,
                              op->status == 404   ? "not_found"
                              : op->status == 403 ? "forbidden"
                              : op->status == 410 ? "deleted"
                                                  : "invalid",
                              "%s", op->msg);
    } else {
        hv__fhir_notify(p->f, op);
        if (op->kind == HV__FOP_DELETE)
            hv_http_respond(p->req, 204, NULL, NULL, 0);
        else
            respond_resource_view(p, op->status);
    }
    pv_free(p);
}

static void done_view(int status, void *arg)
{
    pv_t *p = arg;
    struct json_object *out, *arr;
    size_t n;
    if (status != HV_OK) {
        hv_http_respond_error(p->req, 500, "storage_failed", "cannot read: %s", hv_strerror(status));
        goto out;
    }
    if (p->what != VIEW_LIST && !p->patient_live) {
        hv_http_respond_error(p->req, 404, "not_found", "no patient %s", p->patient);
        goto out;
    }
    n = json_object_array_length(p->list);
    out = json_object_new_object();
    arr = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        struct json_object *res = json_object_array_get_idx(p->list, i);
        if (p->what == VIEW_LIST)
            json_object_array_add(arr, view_patient(res));
        else if (p->what == VIEW_RESOURCES)
            json_object_array_add(arr, json_object_get(res));
        else if (strcmp(p->types[0], "Observation") != 0 || is_vital(res))
            json_object_array_add(arr, view_item(res));
    }
    if (p->what == VIEW_LIST) {
        hv_json_set_int(out, "total", (int64_t)p->total);
        hv_json_set_int(out, "limit", p->limit);
        hv_json_set_int(out, "offset", p->offset);
        hv_json_set(out, "patients", arr);
    } else {
        const char *key = p->what == VIEW_RESOURCES ? "resources"
                          : strcmp(p->types[0], "Observation") == 0 ? "vitals"
                          : strcmp(p->types[0], "Condition") == 0 ? "conditions"
                          : strcmp(p->types[0], "AllergyIntolerance") == 0 ? "allergies"
                                                                           : "medications";
        hv_json_set_str(out, "patientId", p->patient);
        hv_json_set_int(out, "total", (int64_t)json_object_array_length(arr));
        hv_json_set(out, key, arr);
    }
    hv_http_respond_json(p->req, 200, out);
out:
    pv_free(p);
}

static void submit(pv_t *p, hv_storage_job_cb job, hv_storage_done_cb done)
{
    /* The views are FHIR interactions under the token's SMART scopes (fhir/rest_authz.c):
     * writes and reads are checked by the store, lists row by row. */
    p->op.principal = p->principal;
    p->check = p->principal != NULL;
    if (hv_storage_submit(p->f->storage, job, done, p) != HV_OK) {
        hv_http_header_add(p->req, "Retry-After", "1");
        hv_http_respond_error(p->req, 503, "overloaded", "the store is busy; retry later");
        pv_free(p);
    }
}

static int take_id(pv_t *p)
{
    const char *id = hv_http_req_param(p->req, "id");
    if (!hv__fhir_id_valid(id)) {
        hv_http_respond_error(p->req, 400, "invalid_id", "not a valid patient id");
        return HV_EINVAL;
    }
    snprintf(p->patient, sizeof(p->patient), "%s", id);
    return HV_OK;
}

static int64_t int_param(hv_http_req_t *req, const char *name, int64_t def, int64_t max)
{
    const char *s = hv_http_req_query_param(req, name);
    char *end = NULL;
    long long v;
    if (s == NULL)
        return def;
    v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || v < 0)
        return -1;
    return v > max ? max : v;
}

/* Reads a JSON body; answers 400 and returns NULL when it is not a JSON object. */
static struct json_object *json_body(hv_http_req_t *req, size_t max)
{
    size_t len = 0;
    const char *body = hv_http_req_body(req, &len);
    struct json_object *o = NULL;
    hv_error_t err;
    hv_error_clear(&err);
    if (body == NULL || len == 0 || len > max || hv_json_parse(body, len, "body", &o, &err) != HV_OK ||
        !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        hv_http_respond_error(req, 400, "invalid_body", "the body must be a JSON object");
        return NULL;
    }
    return o;
}

/* Builds a FHIR Patient (consumed: o) from the plan's simple fields, or takes a FHIR Patient as it is. */
static struct json_object *patient_from(struct json_object *o)
{
    struct json_object *pat, *name, *x = NULL;
    const char *given, *family;
    if (hv_json_get_str(o, "resourceType") != NULL)
        return o;
    pat = json_object_new_object();
    name = json_object_new_object();
    hv_json_set_str(pat, "resourceType", "Patient");
    family = hv_json_get_str(o, "family") != NULL ? hv_json_get_str(o, "family") : hv_json_get_str(o, "lastName");
    given = hv_json_get_str(o, "firstName");
    if (family != NULL)
        hv_json_set_str(name, "family", family);
    if (json_object_object_get_ex(o, "given", &x) && json_object_is_type(x, json_type_array))
        hv_json_set(name, "given", json_object_get(x));
    else if (given != NULL || hv_json_get_str(o, "given") != NULL) {
        struct json_object *g = json_object_new_array();
        json_object_array_add(g, json_object_new_string(given != NULL ? given : hv_json_get_str(o, "given")));
        hv_json_set(name, "given", g);
    }
    if (json_object_object_length(name) > 0) {
        struct json_object *names = json_object_new_array();
        json_object_array_add(names, name);
        hv_json_set(pat, "name", names);
    } else {
        json_object_put(name);
    }
    if (hv_json_get_str(o, "birthDate") != NULL)
        hv_json_set_str(pat, "birthDate", hv_json_get_str(o, "birthDate"));
    if (hv_json_get_str(o, "gender") != NULL)
        hv_json_set_str(pat, "gender", hv_json_get_str(o, "gender"));
    if (json_object_object_get_ex(o, "identifiers", &x) && json_object_is_type(x, json_type_array))
        hv_json_set(pat, "identifier", json_object_get(x));
    json_object_put(o);
    return pat;
}

/* Checks a resource about to be written: structure (the model) and the configured validation. */
static int check_resource(pv_t *p, struct json_object *res)
{
    hv_error_t err;
    struct json_object *oo = NULL;
    int errors = 0;
    hv_error_clear(&err);
    if (hv_fhir_check_structure(res, 0, &err) != HV_OK) {
        hv_http_respond_error(p->req, 400, "invalid_resource", "%s at %s", err.message, err.location);
        return HV_EINVAL;
    }
    if (p->f->validation == HV__VALIDATE_REJECT && p->f->validator != NULL &&
        hv_fhir_validate(p->f->validator, res, NULL, 0, &oo, &errors) == HV_OK && errors > 0) {
        struct json_object *e = json_object_new_object();
        hv_json_set_str(e, "error", "invalid_resource");
        hv_json_set_str(e, "message", "the resource is not valid FHIR R4");
        hv_json_set(e, "outcome", oo);
        hv_http_respond_json(p->req, 422, e);
        return HV_EINVAL;
    }
    json_object_put(oo);
    return HV_OK;
}

static void h_list(hv_http_req_t *req, void *ud)
{
    pv_t *p = pv_new(ud, req, VIEW_LIST);
    if (p == NULL)
        return;
    p->limit = int_param(req, "limit", 50, 1000);
    p->offset = int_param(req, "offset", 0, INT64_MAX / 2);
    if (p->limit < 0 || p->offset < 0) {
        hv_http_respond_error(req, 400, "invalid_parameter", "limit and offset are non-negative integers");
        pv_free(p);
        return;
    }
    submit(p, job_view, done_view);
}

static void h_create(hv_http_req_t *req, void *ud)
{
    pv_t *p = pv_new(ud, req, VIEW_CREATE);
    struct json_object *o;
    const char *rt;
    if (p == NULL)
        return;
    o = json_body(req, p->f->parse.max_bytes);
    if (o == NULL)
        goto fail;
    o = patient_from(o);
    rt = hv_json_get_str(o, "resourceType");
    hv__fop_init(&p->op, HV__FOP_CREATE);
    p->op.resource = o;
    if (rt == NULL || strcmp(rt, "Patient") != 0) {
        hv_http_respond_error(req, 400, "invalid_resource", "POST /patients takes a Patient");
        goto fail;
    }
    json_object_object_del(o, "id");
    if (check_resource(p, o) != HV_OK)
        goto fail;
    snprintf(p->op.type, sizeof(p->op.type), "Patient");
    submit(p, job_op, done_op);
    return;
fail:
    pv_free(p);
}

static void h_one(hv_http_req_t *req, void *ud)
{
    pv_t *p = pv_new(ud, req, VIEW_ONE);
    if (p == NULL)
        return;
    if (take_id(p) != HV_OK)
        goto fail;
    hv__fop_init(&p->op, HV__FOP_READ);
    snprintf(p->op.type, sizeof(p->op.type), "Patient");
    snprintf(p->op.id, sizeof(p->op.id), "%s", p->patient);
    submit(p, job_op, done_op);
    return;
fail:
    pv_free(p);
}

static void h_update(hv_http_req_t *req, void *ud)
{
    pv_t *p = pv_new(ud, req, VIEW_UPDATE);
    struct json_object *o;
    if (p == NULL)
        return;
    if (take_id(p) != HV_OK)
        goto fail;
    o = json_body(req, p->f->parse.max_bytes);
    if (o == NULL)
        goto fail;
    /* The merged fields are FHIR Patient elements: the simple form becomes one. */
    p->merge = patient_from(o);
    hv__fop_init(&p->op, HV__FOP_UPDATE);
    snprintf(p->op.type, sizeof(p->op.type), "Patient");
    snprintf(p->op.id, sizeof(p->op.id), "%s", p->patient);
    {
        /* The merge result must still be a valid Patient: check the fields on their own. */
        struct json_object *probe = NULL;
        json_object_deep_copy(p->merge, &probe, NULL);
        if (probe == NULL) {
            hv_http_respond_error(req, 503, "overloaded", "out of memory");
            goto fail;
        }
        hv_json_set_str(probe, "resourceType", "Patient");
        if (check_resource(p, probe) != HV_OK) {
            json_object_put(probe);
            goto fail;
        }
        json_object_put(probe);
    }
    submit(p, job_update, done_op);
    return;
fail:
    pv_free(p);
}

static void h_delete(hv_http_req_t *req, void *ud)
{
    pv_t *p = pv_new(ud, req, VIEW_DELETE);
    if (p == NULL)
        return;
    if (take_id(p) != HV_OK)
        goto fail;
    hv__fop_init(&p->op, HV__FOP_DELETE);
    snprintf(p->op.type, sizeof(p->op.type), "Patient");
    snprintf(p->op.id, sizeof(p->op.id), "%s", p->patient);
    submit(p, job_op, done_op);
    return;
fail:
    pv_free(p);
}

static void h_resources(hv_http_req_t *req, void *ud)
{
    pv_t *p = pv_new(ud, req, VIEW_RESOURCES);
    if (p == NULL)
        return;
    if (take_id(p) != HV_OK)
        goto fail;
    p->filter_type = hv_http_req_query_param(req, "type");
    if (p->filter_type != NULL && hv_fhir_resource_type(p->filter_type) == NULL) {
        hv_http_respond_error(req, 400, "invalid_parameter", "type is not a FHIR resource type");
        goto fail;
    }
    submit(p, job_view, done_view);
    return;
fail:
    pv_free(p);
}

static void h_add_resource(hv_http_req_t *req, void *ud)
{
    pv_t *p = pv_new(ud, req, VIEW_ADD);
    struct json_object *o;
    const hv_fhir_type_t *t;
    const char *rt;
    if (p == NULL)
        return;
    if (take_id(p) != HV_OK)
        goto fail;
    o = json_body(req, p->f->parse.max_bytes);
    if (o == NULL)
        goto fail;
    hv__fop_init(&p->op, HV__FOP_CREATE);
    p->op.resource = o;
    rt = hv_json_get_str(o, "resourceType");
    t = rt != NULL ? hv_fhir_resource_type(rt) : NULL;
    if (t == NULL || strcmp(rt, "Patient") == 0) {
        hv_http_respond_error(req, 400, "invalid_resource", "the body must be a FHIR resource other than Patient");
        goto fail;
    }
    /* Link it to the patient through its subject or patient element when it has one and it is empty. */
    {
        static const char *const links[] = {"subject", "patient"};
        for (size_t i = 0; i < HV_ARRAY_LEN(links); i++) {
            if (hv_fhir_elem_child(hv_fhir_type_root(t), links[i], strlen(links[i]), NULL) != NULL) {
                if (!json_object_object_get_ex(o, links[i], NULL)) {
                    struct json_object *ref = json_object_new_object();
                    char r[HV__FHIR_ID_MAX + 16];
                    snprintf(r, sizeof(r), "Patient/%s", p->patient);
                    hv_json_set_str(ref, "reference", r);
                    hv_json_set(o, links[i], ref);
                }
                break;
            }
        }
    }
    json_object_object_del(o, "id");
    if (check_resource(p, o) != HV_OK)
        goto fail;
    snprintf(p->op.type, sizeof(p->op.type), "%s", rt);
    submit(p, job_op, done_op);
    return;
fail:
    pv_free(p);
}

static void items(hv_http_req_t *req, void *ud, const char *t1, const char *t2)
{
    pv_t *p = pv_new(ud, req, VIEW_ITEMS);
    if (p == NULL)
        return;
    if (take_id(p) != HV_OK) {
        pv_free(p);
        return;
    }
    p->types[0] = t1;
    p->types[1] = t2;
    submit(p, job_view, done_view);
}

static void h_medications(hv_http_req_t *req, void *ud)
{
    items(req, ud, "MedicationRequest", "MedicationStatement");
}

static void h_allergies(hv_http_req_t *req, void *ud)
{
    items(req, ud, "AllergyIntolerance", NULL);
}

static void h_conditions(hv_http_req_t *req, void *ud)
{
    items(req, ud, "Condition", NULL);
}

static void h_vitals(hv_http_req_t *req, void *ud)
{
    items(req, ud, "Observation", NULL);
}

int hv__patients_routes(hv__fhir_t *f, hv_router_t *r)
{
    static const struct {
        unsigned m;
        const char *path;
        hv_http_handler_cb fn;
    } routes[] = {
        {HV_HTTP_GET, "/patients", h_list},
        {HV_HTTP_POST, "/patients", h_create},
        {HV_HTTP_GET, "/patients/:id", h_one},
        {HV_HTTP_PUT, "/patients/:id", h_update},
        {HV_HTTP_DELETE, "/patients/:id", h_delete},
        {HV_HTTP_GET, "/patients/:id/fhir-resources", h_resources},
        {HV_HTTP_POST, "/patients/:id/fhir-resources", h_add_resource},
        {HV_HTTP_GET, "/patients/:id/medications", h_medications},
        {HV_HTTP_GET, "/patients/:id/allergies", h_allergies},
        {HV_HTTP_GET, "/patients/:id/conditions", h_conditions},
        {HV_HTTP_GET, "/patients/:id/vitals", h_vitals},
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(routes); i++) {
        int rc = hv_router_add(r, routes[i].m, routes[i].path, routes[i].fn, f);
        if (rc != HV_OK)
            return rc;
    }
    return HV_OK;
}
