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
 * Also native: the narrative rules txt-1/txt-2 (htmlChecks()) and dom-3 (contained
 * resources are referenced), whose expression needs as() over collections; and dom-2,
 * dom-4, dom-5, dom-6, ref-1, qty-3, per-1, obs-6 and obs-7 when the focus object's shape
 * decides them (shortcut()).
 * A constraint whose expression the engine cannot compile or evaluate is reported
 * once per resource as an "information" issue (code "not-supported") and does not
 * count as an error.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "fhir/fhirpath_int.h"
#include "fhir/validate_int.h"

enum { CS_UNTRIED = 0, CS_OK, CS_FAILED };

enum {
    K_PLAIN = 0,
    K_ELE1,
    K_DOM6,
    K_TXT1,
    K_TXT2,
    K_DOM3,
    K_CONTAINED,
    K_REF1,
    K_QTY3,
    K_PER1,
    K_OBS6,
    K_OBS7
};

/*
 * Constraints of the data types and resources on nearly every write whose result the shape
 * of the focus object often decides (shortcut()), recognised by key and exact expression so
 * that a profile's constraint of the same key with another expression is evaluated.
 */
static const struct {
    const char *key, *expr;
    unsigned char kind;
} decided[] = {
    {"ref-1",
     "reference.startsWith('#').not() or (reference.substring(1).trace('url') in "
     "%rootResource.contained.id.trace('ids'))",
     K_REF1},
    {"qty-3", "code.empty() or system.exists()", K_QTY3},
    {"per-1", "start.hasValue().not() or end.hasValue().not() or (start <= end)", K_PER1},
    {"obs-6", "dataAbsentReason.empty() or value.empty()", K_OBS6},
    {"obs-7",
     "value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists())."
     "empty()",
     K_OBS7},
};

struct hv__fhir_inv {
    size_t n;
    unsigned char *special;  /* per constraint id: K_* (the keys handled natively) */
    struct json_object *div; /* the narrative last checked, and its txt-1/txt-2 results */
    int txt1, txt2;
    hv_fhirpath_t **fp;
    unsigned char *state;
    unsigned char *reported; /* per resource: "could not evaluate" already said */
    hv_arena_t *arena;
    struct extra *extra; /* expressions of profiles, compiled on first use */
    /* The FHIRPath nodes of %resource and %rootResource last made, and the objects they
     * were made from: every evaluation of a resource's constraints asks for the same two,
     * and making one looks its resourceType up in the model (~350 instructions). Valid
     * for one validation (hv__fhir_inv_begin forgets them: the tree may be freed). */
    struct json_object *node_json[2];
    hv__fp_item_t node[2];
};

/* A compiled expression that is not in the model (a profile's constraint). */
struct extra {
    char *expr;
    hv_fhirpath_t *fp; /* NULL when it does not compile */
    struct extra *next;
};

hv__fhir_inv_t *hv__fhir_inv_new(void) {
    hv__fhir_inv_t *inv = hv_calloc(1, sizeof(*inv));
    if (inv == NULL)
        return NULL;
    inv->n = hv_fhir_constraint_count();
    inv->fp = hv_calloc(inv->n, sizeof(*inv->fp));
    inv->state = hv_calloc(inv->n, 1);
    inv->reported = hv_calloc(inv->n, 1);
    inv->arena = hv_arena_new(0);
    inv->special = hv_calloc(inv->n, 1);
    for (size_t i = 0; inv->special != NULL && i < inv->n; i++) {
        const char *key = hv_fhir_constraint_key(hv_fhir_constraint_at(i));
        inv->special[i] = strcmp(key, "ele-1") == 0   ? K_ELE1
                          : strcmp(key, "dom-6") == 0 ? K_DOM6
                          : strcmp(key, "txt-1") == 0 ? K_TXT1
                          : strcmp(key, "txt-2") == 0 ? K_TXT2
                          : strcmp(key, "dom-3") == 0 ? K_DOM3
                          : strcmp(key, "dom-2") == 0 || strcmp(key, "dom-4") == 0 ||
                                  strcmp(key, "dom-5") == 0
                              ? K_CONTAINED
                              : K_PLAIN;
        for (size_t j = 0; inv->special[i] == K_PLAIN && j < HV_ARRAY_LEN(decided); j++)
            if (strcmp(key, decided[j].key) == 0 &&
                strcmp(hv_fhir_constraint_expression(hv_fhir_constraint_at(i)), decided[j].expr) ==
                    0)
                inv->special[i] = decided[j].kind;
    }
    if (inv->fp == NULL || inv->state == NULL || inv->reported == NULL || inv->arena == NULL ||
        inv->special == NULL) {
        hv__fhir_inv_free(inv);
        return NULL;
    }
    return inv;
}

void hv__fhir_inv_free(hv__fhir_inv_t *inv) {
    if (inv == NULL)
        return;
    for (size_t i = 0; inv->fp != NULL && i < inv->n; i++)
        hv_fhirpath_free(inv->fp[i]);
    hv_free(inv->fp);
    hv_free(inv->state);
    hv_free(inv->reported);
    hv_free(inv->special);
    while (inv->extra != NULL) {
        struct extra *x = inv->extra;
        inv->extra = x->next;
        hv_fhirpath_free(x->fp);
        hv_free(x->expr);
        hv_free(x);
    }
    hv_arena_free(inv->arena);
    hv_free(inv);
}

void hv__fhir_inv_begin(hv__fhir_inv_t *inv) {
    memset(inv->reported, 0, inv->n);
    inv->div = NULL;
    inv->node_json[0] = inv->node_json[1] = NULL;
}

/* The node of resource j for %resource (slot 0) or %rootResource (slot 1), made once per
 * resource and validation. */
static void resource_node(hv__fhir_inv_t *inv, int slot, struct json_object *j,
                          hv__fp_item_t *out) {
    if (j == NULL || inv->node_json[slot] != j) {
        hv__fp_make_node(&inv->node[slot], j, NULL, NULL, NULL);
        inv->node_json[slot] = j;
    }
    *out = inv->node[slot];
}

/* Does some string value under v (the narrative excepted) equal s? Depth-capped. */
static int has_string(struct json_object *v, const char *s, int depth) {
    if (v == NULL || depth > HV_FHIR_DEFAULT_MAX_DEPTH * 2)
        return 0;
    switch (json_object_get_type(v)) {
    case json_type_string:
        return strcmp(json_object_get_string(v), s) == 0;
    case json_type_array:
        for (size_t i = 0; i < json_object_array_length(v); i++)
            if (has_string(json_object_array_get_idx(v, i), s, depth + 1))
                return 1;
        return 0;
    case json_type_object: {
        json_object_object_foreach(v, k, x) {
            if (strcmp(k, "div") != 0 && has_string(x, s, depth + 1))
                return 1;
        }
        return 0;
    }
    default:
        return 0;
    }
}

/*
 * dom-3 (DomainResource): every contained resource is referenced from elsewhere in the
 * resource ("#id" as a reference, canonical, uri or url), or itself refers to its container
 * ("#"). Checked natively: the FHIRPath expression needs as() over collections. A string of
 * any type equal to "#id" counts as a reference here. Returns 1 when it holds, else 0 with
 * the id of the first unreferenced contained resource in bad.
 */
static int dom3_ok(struct json_object *res, char *bad, size_t badlen) {
    struct json_object *contained = NULL;
    if (!json_object_object_get_ex(res, "contained", &contained) ||
        !json_object_is_type(contained, json_type_array))
        return 1;
    for (size_t i = 0; i < json_object_array_length(contained); i++) {
        struct json_object *cr = json_object_array_get_idx(contained, i);
        const char *id = hv_json_get_str(cr, "id");
        char ref[160];
        if (id == NULL || snprintf(ref, sizeof(ref), "#%s", id) >= (int)sizeof(ref))
            continue;
        if (has_string(cr, "#", 0) || has_string(res, ref, 0))
            continue;
        snprintf(bad, badlen, "%s", id);
        return 0;
    }
    return 1;
}

static const hv_fhirpath_t *compiled(hv__fhir_inv_t *inv, const hv_fhir_constraint_t *k,
                                     hv_error_t *err) {
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
                    const hv__fhir_focus_t *f, hv_error_t *err) {
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
    hv__fp_make_node(&ctx.context, f->json, f->ext, f->type, f->owner);
    resource_node(inv, 0, f->resource, &ctx.resource);
    resource_node(inv, 1, f->root_resource, &ctx.root);
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

/* Whether obj has neither member name nor its `_name` twin: FHIRPath's name is then empty. */
static int absent(struct json_object *obj, const char *name) {
    char us[32];
    if (json_object_object_get_ex(obj, name, NULL))
        return 0;
    us[0] = '_';
    snprintf(us + 1, sizeof(us) - 1, "%s", name);
    return !json_object_object_get_ex(obj, us, NULL);
}

/* Whether obj's member name is a JSON string (FHIRPath's name is then one value). */
static int is_string(struct json_object *obj, const char *name) {
    struct json_object *v = NULL;
    return json_object_object_get_ex(obj, name, &v) && json_object_is_type(v, json_type_string);
}

/*
 * The result of constraints that (nearly) every write is checked against, decided from
 * the JSON object alone where their FHIRPath is evaluated the same way (fhirpath.html §Path
 * selection: a path through an absent element is empty; §Boolean logic: `true or x` is true
 * without x, which the engine does not evaluate either; a constraint whose result is empty
 * holds):
 *   dom-2, dom-4, dom-5  "contained.….empty()" (and a conjunction of two): with no
 *                        `contained` member every path is empty, so they hold;
 *   dom-6                "text.`div`.exists()": no `text` member → false; `text` an
 *                        object whose `div` is a string → true;
 *   ref-1                `reference` a string not starting with '#' → the left side is true;
 *   qty-3                no `code` → code.empty() is true; `code` and `system` strings →
 *                        false or true;
 *   per-1                no `start` → the first operand is true; no `end` → the second is
 *                        (hasValue() of an empty collection is false);
 *   obs-6                no `dataAbsentReason` → the left side is true;
 *   obs-7                no `component` → the right side is `{}.empty()`, true, whatever
 *                        value.empty() gives.
 * Returns 1 or 0, or -1 when the shape is anything else (FHIRPath decides).
 */
static int shortcut(int special, const hv__fhir_focus_t *f) {
    struct json_object *text = NULL, *div = NULL, *ref = NULL, *o = f->json;
    if (o == NULL || f->ext != NULL || !json_object_is_type(o, json_type_object))
        return -1;
    switch (special) {
    case K_CONTAINED:
        return json_object_object_get_ex(o, "contained", NULL) ? -1 : 1;
    case K_DOM6:
        if (!json_object_object_get_ex(o, "text", &text))
            return 0;
        if (json_object_is_type(text, json_type_object) &&
            json_object_object_get_ex(text, "div", &div) &&
            json_object_is_type(div, json_type_string))
            return 1;
        return -1;
    case K_REF1:
        if (json_object_object_get_ex(o, "reference", &ref) &&
            json_object_is_type(ref, json_type_string) && json_object_get_string_len(ref) > 0 &&
            json_object_get_string(ref)[0] != '#')
            return 1;
        return -1;
    case K_QTY3:
        return absent(o, "code") || (is_string(o, "code") && is_string(o, "system")) ? 1 : -1;
    case K_PER1:
        return absent(o, "start") || absent(o, "end") ? 1 : -1;
    case K_OBS6:
        return absent(o, "dataAbsentReason") ? 1 : -1;
    case K_OBS7:
        return absent(o, "component") ? 1 : -1;
    default:
        return -1;
    }
}

static void check_one(hv__fhir_vctx_t *c, hv__fhir_inv_t *inv, const hv_fhir_constraint_t *k,
                      const hv__fhir_focus_t *f) {
    size_t cid = hv_fhir_constraint_id(k);
    int special = inv->special[cid];
    if (special == K_ELE1)
        return; /* checked natively by the walk */
    /* dom-6 (narrative, a best practice) is not asked of contained resources. */
    if (special == K_DOM6 && f->resource != f->root_resource && f->contained)
        return;
    const char *key = hv_fhir_constraint_key(k);
    hv_error_t err; /* read only when r < 0, which only compiled() and evaluate() give */
    int r;
    if ((special == K_TXT1 || special == K_TXT2) && f->json != NULL &&
        json_object_is_type(f->json, json_type_string)) {
        /* htmlChecks(): the narrative rules, checked natively, one parse for both. */
        if (inv->div != f->json) {
            hv__fhir_narrative_check(json_object_get_string(f->json),
                                     (size_t)json_object_get_string_len(f->json), &inv->txt1,
                                     &inv->txt2);
            inv->div = f->json;
        }
        r = special == K_TXT1 ? inv->txt1 : inv->txt2;
    } else if (special == K_DOM3 && f->json != NULL &&
               json_object_is_type(f->json, json_type_object)) {
        char bad[128];
        r = dom3_ok(f->json, bad, sizeof(bad));
        if (r == 0) {
            hv__fhir_issue(
                c, "error", "invariant", key,
                "Constraint failed: dom-3: the contained resource '%s' is not referenced "
                "from the resource and does not refer to it ('%s')",
                bad, hv_fhir_constraint_human(k));
            return;
        }
    } else {
        r = shortcut(special, f);
        if (r < 0) {
            hv_error_clear(&err); /* ~800 bytes zeroed: not for the constraints decided above */
            const hv_fhirpath_t *fp = compiled(inv, k, &err);
            r = fp != NULL ? evaluate(c, inv, fp, f, &err) : HV_ENOTSUP;
        }
    }
    if (r == 1)
        return;
    if (r == 0) {
        int warn = hv_fhir_constraint_severity(k) == HV_FHIR_SEV_WARNING;
        hv__fhir_issue(c, warn ? "warning" : "error", "invariant", key,
                       "Constraint failed: %s: '%s' (%s)", key, hv_fhir_constraint_human(k),
                       hv_fhir_constraint_expression(k));
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

/* The model's constraint ids are read straight from the element rows (fhir_int.h) and ele-1,
 * which every element carries and the walk checks natively, is passed over here: this runs
 * for every value of every resource, most of which have no other constraint. */
void hv__fhir_invariants_check(hv__fhir_vctx_t *c, const hv_fhir_elem_t *e,
                               const hv__fhir_focus_t *f) {
    hv__fhir_inv_t *inv = c->inv;
    const hv_fhir_elem_t *root = hv_fhir_type_root(f->type);
    const uint16_t *ids = e != NULL ? &hv__fhir_cidx[e->cfirst] : NULL;
    size_t n = e != NULL ? e->cn : 0;
    if (inv == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        if (inv->special[ids[i]] != K_ELE1)
            check_one(c, inv, &hv__fhir_constraints[ids[i]], f);
    /* The constraints of the value's type (qty-3 for a Quantity, ext-1 for an Extension),
     * unless e is that type's root itself or a backbone element. */
    if (root != NULL && root != e && (e == NULL || !hv_fhir_elem_is_backbone(e))) {
        const uint16_t *rids = &hv__fhir_cidx[root->cfirst];
        for (size_t i = 0; i < root->cn; i++) {
            int dup = inv->special[rids[i]] == K_ELE1;
            for (size_t j = 0; j < n && !dup; j++)
                dup = ids[j] == rids[i];
            if (!dup)
                check_one(c, inv, &hv__fhir_constraints[rids[i]], f);
        }
    }
}

void hv__fhir_invariant_expr(hv__fhir_vctx_t *c, const char *key, const char *expr,
                             const char *human, int warning, const hv__fhir_focus_t *f) {
    hv__fhir_inv_t *inv = c->inv;
    struct extra *x;
    hv_error_t err;
    if (inv == NULL)
        return;
    hv_error_clear(&err);
    for (x = inv->extra; x != NULL && strcmp(x->expr, expr) != 0; x = x->next)
        ;
    if (x == NULL) {
        x = hv_calloc(1, sizeof(*x));
        if (x == NULL || (x->expr = hv_strdup(expr)) == NULL) {
            hv_free(x);
            c->oom = 1;
            return;
        }
        if (hv_fhirpath_compile(expr, 0, NULL, &x->fp, &err) != HV_OK)
            x->fp = NULL;
        x->next = inv->extra;
        inv->extra = x;
    }
    int r = x->fp != NULL ? evaluate(c, inv, x->fp, f, &err) : HV_ENOTSUP;
    if (r == 1)
        return;
    if (r == 0)
        hv__fhir_issue(c, warning ? "warning" : "error", "invariant", key,
                       "Constraint failed: %s: '%s' (%s)", key, human != NULL ? human : "", expr);
    else
        hv__fhir_issue(c, "information", "not-supported", key,
                       "Constraint %s was not evaluated: %s", key,
                       err.message[0] != '\0' ? err.message : hv_strerror(r));
}
