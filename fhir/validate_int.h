/*
 * validate_int.h — the validation walk's context, shared by validate.c (the base
 * specification checks), invariants.c (FHIRPath constraints) and validator.c (the
 * validator object, profiles and the OperationOutcome).
 */
#ifndef HV_FHIR_VALIDATE_INT_H
#define HV_FHIR_VALIDATE_INT_H

#include "fhir/fhir_int.h"

typedef struct hv__fhir_inv hv__fhir_inv_t;

/* One step of the element path below vctx.path ("name" or "name[index]"), kept in the
 * walk's stack frame. The walk visits every element but only an issue reads the path, so
 * the text is rendered from these steps when an issue is recorded (hv__fhir_issue), not
 * pushed for every element. name must outlive the step (a key of the tree or a model name). */
typedef struct hv__fhir_step {
    const struct hv__fhir_step *up; /* the enclosing step, or NULL: path is the rest */
    const char *name;
    long index; /* -1: none */
} hv__fhir_step_t;

typedef struct hv__fhir_vctx {
    hv__fhir_inv_t *inv; /* compiled invariants; NULL: invariants not checked */
    struct json_object *resource, *root_resource; /* %resource and %rootResource */
    hv_fhir_validator_t *v;                       /* NULL in the parser's structural check */
    unsigned flags;                               /* HV_FHIR_VALIDATE_* */
    int structure_only; /* only structure: no formats, bindings, minimums */
    int max_depth;
    hv_error_t *err;            /* first-error mode when not NULL */
    struct json_object *issues; /* OperationOutcome.issue being filled */
    size_t nissues, max_issues, dropped;
    int errors;
    int too_deep;
    int oom;
    hv__fhir_path_t path;        /* the path's head, pushed eagerly (resource type, profile.c) */
    const hv__fhir_step_t *step; /* the innermost step under path; NULL outside the walk */
} hv__fhir_vctx_t;

/* A value being checked against its invariants. */
typedef struct hv__fhir_focus {
    struct json_object *json;    /* the value (NULL for a primitive with only `_x`) */
    struct json_object *ext;     /* a primitive's `_x` twin, or NULL */
    const hv_fhir_type_t *type;  /* its type (the actual resource type for resources) */
    const hv_fhir_elem_t *owner; /* whose children describe it: backbone element or type root */
    struct json_object *resource, *root_resource;
    int contained; /* the focus is a contained resource (DomainResource.contained) */
} hv__fhir_focus_t;

/* invariants.c: the compiled constraints of a validator. */
hv__fhir_inv_t *hv__fhir_inv_new(void);
void hv__fhir_inv_free(hv__fhir_inv_t *inv);
/* Called at the start of each resource validation. */
void hv__fhir_inv_begin(hv__fhir_inv_t *inv);
/* Checks the constraints of element e (NULL: only the type's) and of the focus' type. */
void hv__fhir_invariants_check(hv__fhir_vctx_t *c, const hv_fhir_elem_t *e,
                               const hv__fhir_focus_t *f);

/* Records an issue at the current path, c->path followed by c->step's chain (severity
 * "fatal", "error", "warning", "information"; code from the IssueType value set; key an
 * invariant key or NULL). */
void hv__fhir_issue(hv__fhir_vctx_t *c, const char *severity, const char *code, const char *key,
                    const char *fmt, ...) HV_PRINTF(5, 6);
/* Walks a resource, recording the base-specification issues. */
void hv__fhir_walk_resource(hv__fhir_vctx_t *c, struct json_object *res);
/* 1 when the text s (n bytes) of a value of primitive type t matches its format. */
int hv__fhir_format_ok(const hv_fhir_type_t *t, const char *s, size_t n);

/* Evaluates an invariant given by its text (a profile's constraint) on the focus and
 * records an issue when it fails (compiled once per validator and expression). */
void hv__fhir_invariant_expr(hv__fhir_vctx_t *c, const char *key, const char *expr,
                             const char *human, int warning, const hv__fhir_focus_t *f);

/* profile.c: a profile StructureDefinition made ready for validation. */
typedef struct hv__fhir_profile hv__fhir_profile_t;
int hv__fhir_profile_new(struct json_object *sd, hv__fhir_profile_t **out, hv_error_t *err);
/* Frees p and every profile chained after it. */
void hv__fhir_profile_free(hv__fhir_profile_t *p);
const char *hv__fhir_profile_url(const hv__fhir_profile_t *p);
/* The link to the next profile of a validator's list. */
hv__fhir_profile_t **hv__fhir_profile_next(hv__fhir_profile_t *p);
/* The profile of v whose url is url (a "|version" suffix is ignored), or NULL. */
hv__fhir_profile_t *hv__fhir_validator_profile(hv_fhir_validator_t *v, const char *url);
/* Checks res against p, recording issues in c. */
int hv__fhir_profile_check(hv__fhir_vctx_t *c, hv__fhir_profile_t *p, struct json_object *res);

/* The narrative rules txt-1 and txt-2 on XHTML text s, both from one parse (1: holds). */
void hv__fhir_narrative_check(const char *s, size_t n, int *txt1, int *txt2);

#endif
