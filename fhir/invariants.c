/*
 * invariants.c — evaluation of the StructureDefinition constraints (FHIR R4
 * conformance-rules.html#constraints, elementdefinition.html ElementDefinition.constraint)
 * with the FHIRPath engine, during the validation walk (validate.c).
 *
 * Each constraint of the model is compiled once per validator, on first use. The
 * walk calls hv__fhir_invariants_check for every value with its element, its type and
 * the owner element of its children; the focus is a FHIRPath node of that type (so
 * choice elements and backbone children resolve), %resource the resource that holds
 * the value (a contained one for values inside it) and %rootResource the outermost.
 *
 * ele-1 ("All FHIR elements must have a @value or children") is checked natively by
 * the walk, on every element, with the same meaning; evaluating it through FHIRPath
 * on each of the tens of thousands of elements of a Bundle would dominate the cost.
 * A constraint whose expression the engine cannot compile or evaluate is reported
 * once per resource as an "information" issue (code "not-supported") and does not
 * count as an error.
 */
#include "config.h"

#include <json-c/json.h>
#include <string.h>

#include "fhir/fhirpath_int.h"
#include "fhir/validate_int.h"

enum { CS_UNTRIED = 0, CS_OK, CS_FAILED };

struct hv__fhir_inv {
    size_t n;
    hv_fhirpath_t **fp;
    unsigned char *state;
    unsigned char *reported; /* per resource: "could not evaluate" already said */
    hv_arena_t *arena;
};

hv__fhir_inv_t *hv__fhir_inv_new(void)
{
    hv__fhir_inv_t *inv = hv_calloc(1, sizeof(*inv));
    if (inv == NULL)
        return NULL;
    inv->n = hv_fhir_constraint_count();
    inv->fp = hv_calloc(inv->n, sizeof(*inv->fp));
    inv->state = hv_calloc(inv->n, 1);
    inv->reported = hv_calloc(inv->n, 1);
    inv->arena = hv_arena_new(0);
    if (inv->fp == NULL || inv->state == NULL || inv->reported == NULL || inv->arena == NULL) {
        hv__fhir_inv_free(inv);
        return NULL;
    }
    return inv;
}

void hv__fhir_inv_free(hv__fhir_inv_t *inv)
{
    if (inv == NULL)
        return;
    for (size_t i = 0; inv->fp != NULL && i < inv->n; i++)
        hv_fhirpath_free(inv->fp[i]);
    hv_free(inv->fp);
    hv_free(inv->state);
    hv_free(inv->reported);
    hv_arena_free(inv->arena);
    hv_free(inv);
}

void hv__fhir_inv_begin(hv__fhir_inv_t *inv)
{
    memset(inv->reported, 0, inv->n);
}

static const hv_fhirpath_t *compiled(hv__fhir_inv_t *inv, const hv_fhir_constraint_t *k,
                                     hv_error_t *err)
{
    size_t id = hv_fhir_constraint_id(k);
    if (inv->state[id] == CS_UNTRIED) {
        const char *expr = hv_fhir_constraint_expression(k);
        inv->state[id] = CS_FAILED;
        if (expr[0] != '\0' && hv_fhirpath_compile(expr, 0, NULL, &inv->fp[id], err) == HV_OK)
            inv->state[id] = CS_OK;
    }
    return inv->state[id] == CS_OK ? inv->fp[id] : NULL;
}

/*
 * Evaluates constraint k on the focus; returns 1 (holds), 0 (violated) or a negative
 * status when it could not be evaluated (err filled). An empty result holds: the
 * constraint says nothing about the focus.
 */
static int evaluate(hv__fhir_vctx_t *c, hv__fhir_inv_t *inv, const hv_fhirpath_t *fp,
                    const hv__fhir_focus_t *f, hv_error_t *err)
{
    hv__fp_ctx_t ctx;
    hv__fp_coll_t focus = {0}, out = {0};
    hv_fhirpath_env_t env;
    int b = -1, rc;

    hv_arena_reset(inv->arena);
    memset(&env, 0, sizeof(env));
    env.resource = f->resource;
    env.root_resource = f->root_resource;
    memset(&ctx, 0, sizeof(ctx));
    ctx.arena = inv->arena;
    ctx.env = &env;
    ctx.fp = fp;
    ctx.err = err;
    const char *tname = hv_fhir_type_name(f->type);
    const char *mtype = hv__fp_model_type(tname, strlen(tname));
    hv__fp_make_node(&ctx.context, f->json, f->ext, mtype, f->path);
    hv__fp_make_node(&ctx.resource, f->resource, NULL, NULL, NULL);
    hv__fp_make_node(&ctx.root, f->root_resource, NULL, NULL, NULL);
    rc = hv__fp_push(&ctx, &focus, &ctx.context);
    if (rc == HV_OK) {
        ctx.this_ = &focus;
        rc = hv__fp_eval(&ctx, fp->root, &focus, &out);
    }
    if (rc == HV_OK)
        rc = hv__fp_as_bool(&ctx, fp->root, &out, &b);
    (void)c;
    if (rc != HV_OK)
        return rc;
    return b != 0;
}

static void check_one(hv__fhir_vctx_t *c, hv__fhir_inv_t *inv, const hv_fhir_constraint_t *k,
                      const hv__fhir_focus_t *f)
{
    const char *key = hv_fhir_constraint_key(k);
    hv_error_t err;
    if (strcmp(key, "ele-1") == 0)
        return; /* checked natively by the walk */
    /* dom-6 (narrative, a best practice) is not asked of contained resources. */
    if (strcmp(key, "dom-6") == 0 && f->resource != f->root_resource && f->contained)
        return;
    hv_error_clear(&err);
    int r;
    if ((strcmp(key, "txt-1") == 0 || strcmp(key, "txt-2") == 0) && f->json != NULL &&
        json_object_is_type(f->json, json_type_string)) {
        /* htmlChecks(): the narrative rules, checked natively. */
        r = hv__fhir_narrative_ok(key, json_object_get_string(f->json),
                                  (size_t)json_object_get_string_len(f->json));
    } else {
        const hv_fhirpath_t *fp = compiled(inv, k, &err);
        r = fp != NULL ? evaluate(c, inv, fp, f, &err) : HV_ENOTSUP;
    }
    if (r == 1)
        return;
    if (r == 0) {
        int warn = hv_fhir_constraint_severity(k) == HV_FHIR_SEV_WARNING;
        hv__fhir_issue(c, warn ? "warning" : "error", "invariant", key, "Constraint failed: %s: '%s' (%s)",
                       key, hv_fhir_constraint_human(k), hv_fhir_constraint_expression(k));
        return;
    }
    size_t id = hv_fhir_constraint_id(k);
    if (!inv->reported[id]) {
        inv->reported[id] = 1;
        hv__fhir_issue(c, "information", "not-supported", key,
                       "Constraint %s was not evaluated: %s", key,
                       err.message[0] != '\0' ? err.message : hv_strerror(r));
    }
}

void hv__fhir_invariants_check(hv__fhir_vctx_t *c, const hv_fhir_elem_t *e, const hv__fhir_focus_t *f)
{
    hv__fhir_inv_t *inv = c->inv;
    const hv_fhir_elem_t *root = hv_fhir_type_root(f->type);
    size_t n = e != NULL ? hv_fhir_elem_constraint_count(e) : 0;
    if (inv == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        check_one(c, inv, hv_fhir_elem_constraint_at(e, i), f);
    /* The constraints of the value's type (qty-3 for a Quantity, ext-1 for an Extension),
     * unless e is that type's root itself or a backbone element. */
    if (root != NULL && root != e && (e == NULL || !hv_fhir_elem_is_backbone(e))) {
        size_t rn = hv_fhir_elem_constraint_count(root);
        for (size_t i = 0; i < rn; i++) {
            const hv_fhir_constraint_t *k = hv_fhir_elem_constraint_at(root, i);
            int dup = 0;
            for (size_t j = 0; j < n && !dup; j++)
                dup = hv_fhir_elem_constraint_at(e, j) == k;
            if (!dup)
                check_one(c, inv, k, f);
        }
    }
}
