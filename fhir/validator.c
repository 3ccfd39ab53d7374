/*
 * validator.c — the validator object and its entry point: runs the base
 * specification walk (validate.c, with the invariants of invariants.c), then the
 * profile asked for (profile.c), and builds the OperationOutcome (FHIR R4
 * operationoutcome.html) that reports the issues. A validator holds the compiled
 * invariants and the profiles added to it; one thread uses it at a time.
 */
#include "config.h"

#include <json-c/json.h>
#include <string.h>

#include "fhir/validate_int.h"

struct hv_fhir_validator {
    size_t max_issues;
    hv__fhir_inv_t *inv;
    hv__fhir_profile_t *profiles; /* a list, most recently added first */
};

hv_fhir_validator_t *hv_fhir_validator_new(void) {
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

void hv_fhir_validator_free(hv_fhir_validator_t *v) {
    if (v == NULL)
        return;
    hv__fhir_inv_free(v->inv);
    hv__fhir_profile_free(v->profiles);
    hv_free(v);
}

void hv_fhir_validator_set_max_issues(hv_fhir_validator_t *v, size_t max) {
    v->max_issues = max;
}

int hv_fhir_validator_add_profile(hv_fhir_validator_t *v, struct json_object *sd, hv_error_t *err) {
    hv__fhir_profile_t *p = NULL;
    int rc = hv__fhir_profile_new(sd, &p, err);
    if (rc != HV_OK)
        return rc;
    *hv__fhir_profile_next(p) = v->profiles;
    v->profiles = p;
    return HV_OK;
}

/* The profile whose url is `url` (a "|version" suffix is ignored), or NULL. */
hv__fhir_profile_t *hv__fhir_validator_profile(hv_fhir_validator_t *v, const char *url) {
    size_t n = strcspn(url, "|");
    for (hv__fhir_profile_t *p = v->profiles; p != NULL; p = *hv__fhir_profile_next(p)) {
        const char *u = hv__fhir_profile_url(p);
        if (strncmp(u, url, n) == 0 && (u[n] == '\0' || u[n] == '|'))
            return p;
    }
    return NULL;
}

/* Sets up a zeroed walk context c for one validation with `flags` (and starts the
 * invariant evaluator's per-resource state unless invariants are off). */
static void vctx_start(hv__fhir_vctx_t *c, hv_fhir_validator_t *v, unsigned flags)
{
    c->v = v;
    c->flags = flags;
    if (!(flags & HV_FHIR_VALIDATE_NO_INVARIANTS)) {
        c->inv = v->inv;
        hv__fhir_inv_begin(v->inv);
    }
    c->max_depth = HV_FHIR_DEFAULT_MAX_DEPTH;
    c->max_issues = v->max_issues;
}

int hv_fhir_validate(hv_fhir_validator_t *v, struct json_object *resource, const char *profile,
                     unsigned flags, struct json_object **outcome, int *errors) {
    hv__fhir_vctx_t *c = NULL;
    struct json_object *oo = NULL;
    int rc = HV_ENOMEM;

    hv__fhir_profile_t *prof = NULL;
    if (profile != NULL && (prof = hv__fhir_validator_profile(v, profile)) == NULL)
        return HV_ENOTFOUND;
    c = hv_calloc(1, sizeof(*c));
    oo = json_object_new_object();
    if (c == NULL || oo == NULL)
        goto out;
    vctx_start(c, v, flags);
    if (flags & HV_FHIR_VALIDATE_OUTCOME_ON_ERROR) {
        /* A first walk only counts (hv__fhir_issue formats nothing without c->issues);
         * a resource with errors is walked again below for the full list. */
        hv__fhir_walk_resource(c, resource);
        if (prof != NULL)
            hv__fhir_profile_check(c, prof, resource);
        if (c->oom)
            goto out;
        if (c->errors == 0) {
            *outcome = NULL;
            if (errors != NULL)
                *errors = 0;
            rc = HV_OK;
            goto out;
        }
        memset(c, 0, sizeof(*c));
        vctx_start(c, v, flags);
    }
    c->issues = json_object_new_array();
    if (c->issues == NULL)
        goto out;
    hv__fhir_walk_resource(c, resource);
    if (prof != NULL)
        hv__fhir_profile_check(c, prof, resource);
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
