/*
 * validator.c — the validator object and its entry point: runs the base
 * specification walk (validate.c), and builds the OperationOutcome (FHIR R4
 * operationoutcome.html) that reports the issues.
 */
#include "config.h"

#include <json-c/json.h>
#include <string.h>

#include "fhir/validate_int.h"

struct hv_fhir_validator {
    size_t max_issues;
    hv__fhir_inv_t *inv;
};

hv_fhir_validator_t *hv_fhir_validator_new(void)
{
    hv_fhir_validator_t *v = hv_calloc(1, sizeof(*v));
    if (v == NULL)
        return NULL;
    v->max_issues = 1000;
    v->inv = hv__fhir_inv_new();
    if (v->inv == NULL) {
        hv_free(v);
        return NULL;
    }
    return v;
}

void hv_fhir_validator_free(hv_fhir_validator_t *v)
{
    if (v == NULL)
        return;
    hv__fhir_inv_free(v->inv);
    hv_free(v);
}

void hv_fhir_validator_set_max_issues(hv_fhir_validator_t *v, size_t max)
{
    v->max_issues = max;
}

int hv_fhir_validator_add_profile(hv_fhir_validator_t *v, struct json_object *sd, hv_error_t *err)
{
    (void)v;
    (void)sd;
    hv_error_set(err, HV_ENOTSUP, NULL, "profiles are not supported yet");
    return HV_ENOTSUP;
}

int hv_fhir_validate(hv_fhir_validator_t *v, struct json_object *resource, const char *profile,
                     unsigned flags, struct json_object **outcome, int *errors)
{
    hv__fhir_vctx_t *c = NULL;
    struct json_object *oo = NULL;
    int rc = HV_ENOMEM;

    if (profile != NULL)
        return HV_ENOTFOUND;
    c = hv_calloc(1, sizeof(*c));
    oo = json_object_new_object();
    if (c == NULL || oo == NULL)
        goto out;
    c->v = v;
    c->flags = flags;
    if (!(flags & HV_FHIR_VALIDATE_NO_INVARIANTS)) {
        c->inv = v->inv;
        hv__fhir_inv_begin(v->inv);
    }
    c->max_depth = HV_FHIR_DEFAULT_MAX_DEPTH;
    c->max_issues = v->max_issues;
    c->issues = json_object_new_array();
    if (c->issues == NULL)
        goto out;
    hv__fhir_walk_resource(c, resource);
    if (c->oom)
        goto out;
    if (c->dropped > 0) {
        c->path.len = 0;
        c->path.buf[0] = '\0';
        c->max_issues++;
        hv__fhir_issue(c, "information", "too-costly", NULL, "%zu more issues were not listed",
                       c->dropped);
    }
    if (c->nissues == 0) {
        struct json_object *iss = json_object_new_object();
        hv_json_set_str(iss, "severity", "information");
        hv_json_set_str(iss, "code", "informational");
        hv_json_set_str(iss, "diagnostics", "No issues detected during validation");
        json_object_array_add(c->issues, iss);
    }
    hv_json_set_str(oo, "resourceType", "OperationOutcome");
    hv_json_set(oo, "issue", c->issues);
    c->issues = NULL;
    *outcome = oo;
    oo = NULL;
    if (errors != NULL)
        *errors = c->errors;
    rc = HV_OK;
out:
    if (c != NULL)
        json_object_put(c->issues);
    hv_free(c);
    json_object_put(oo);
    return rc;
}
