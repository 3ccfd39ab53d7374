/*
 * fhirpath_eval.c — the FHIRPath evaluator (fhirpath.html#path-selection, #navigation,
 * #environment-variables): walks the syntax tree over collections of items, navigates
 * FHIR elements held as json-c trees with choice types (`value` → `valueQuantity`) and
 * primitive extensions (`_birthDate`), and enforces the depth and size caps.
 *
 * A FHIR resource is the json-c tree of its JSON form (FHIR R4 json.html); its type
 * information comes from the model interface of fhirpath_int.h.
 */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fhir/fhirpath_int.h"

int hv__fp_fail(hv__fp_ctx_t *c, const hv__fp_node_t *n, int code, const char *fmt, ...) {
    va_list ap;
    char msg[400];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->err != NULL && c->err->code == 0) {
        hv_error_set(c->err, code, NULL, "%s", msg);
        if (n != NULL) {
            c->err->line = n->line;
            c->err->column = n->col;
        }
    }
    return code;
}

/* ------------------------------------------------------------------------- */
/* Collections                                                               */
/* ------------------------------------------------------------------------- */

static int grow(hv__fp_ctx_t *c, hv__fp_coll_t *o, size_t need) {
    size_t ncap;
    hv__fp_item_t *nv;
    if (need > c->fp->lim.max_items)
        return hv__fp_fail(c, NULL, HV_ETOOBIG, "collection larger than %zu items", c->fp->lim.max_items);
    if (need <= o->cap) return HV_OK;
    ncap = o->cap ? o->cap * 2 : 4;
    while (ncap < need) ncap *= 2;
    nv = hv_arena_alloc(c->arena, ncap * sizeof(*nv));
    if (nv == NULL) return hv__fp_fail(c, NULL, HV_ENOMEM, "out of memory");
    if (o->n > 0) memcpy(nv, o->v, o->n * sizeof(*nv));
    o->v = nv;
    o->cap = ncap;
    return HV_OK;
}

int hv__fp_push(hv__fp_ctx_t *c, hv__fp_coll_t *o, const hv__fp_item_t *it) {
    int rc = grow(c, o, o->n + 1);
    if (rc != HV_OK) return rc;
    o->v[o->n++] = *it;
    return HV_OK;
}

int hv__fp_push_all(hv__fp_ctx_t *c, hv__fp_coll_t *o, const hv__fp_coll_t *in) {
    int rc = grow(c, o, o->n + in->n);
    if (rc != HV_OK) return rc;
    if (in->n > 0) memcpy(o->v + o->n, in->v, in->n * sizeof(*o->v));
    o->n += in->n;
    return HV_OK;
}

int hv__fp_push_bool(hv__fp_ctx_t *c, hv__fp_coll_t *o, int b) {
    hv__fp_item_t it;
    it.kind = HV__FP_BOOL;
    it.u.b = b != 0;
    return hv__fp_push(c, o, &it);
}

int hv__fp_push_int(hv__fp_ctx_t *c, hv__fp_coll_t *o, int64_t i) {
    hv__fp_item_t it;
    it.kind = HV__FP_INT;
    it.u.i = i;
    return hv__fp_push(c, o, &it);
}

int hv__fp_push_dec(hv__fp_ctx_t *c, hv__fp_coll_t *o, hv__fp_dec_t d) {
    hv__fp_item_t it;
    it.kind = HV__FP_DEC;
    it.u.d = d;
    return hv__fp_push(c, o, &it);
}

int hv__fp_push_str(hv__fp_ctx_t *c, hv__fp_coll_t *o, const char *p, size_t len) {
    hv__fp_item_t it;
    it.kind = HV__FP_STR;
    it.u.s.p = p;
    it.u.s.len = len;
    return hv__fp_push(c, o, &it);
}

/* ------------------------------------------------------------------------- */
/* Nodes and navigation                                                      */
/* ------------------------------------------------------------------------- */

void hv__fp_make_node(hv__fp_item_t *it, struct json_object *j, struct json_object *ext,
                      const hv_fhir_type_t *t, const hv_fhir_elem_t *owner) {
    it->kind = HV__FP_NODE;
    it->u.n.j = j;
    it->u.n.ext = ext;
    if ((t == NULL || hv_fhir_type_kind(t) == HV_FHIR_KIND_RESOURCE) && j != NULL &&
        json_object_is_type(j, json_type_object)) {
        /* A resource (the root, contained, Bundle.entry.resource): its own type. */
        struct json_object *rt = NULL;
        if (hv_json_get_ex(j, "resourceType", &rt) && json_object_is_type(rt, json_type_string)) {
            const hv_fhir_type_t *r = hv_fhir_resource_type(json_object_get_string(rt));
            if (r != NULL) {
                t = r;
                owner = hv_fhir_type_root(r);
            }
        }
    }
    it->u.n.t = t;
    it->u.n.owner = owner;
}

/* Pushes JSON value v (array or single) with its "_name" sibling x as nodes of type t. */
static int push_values(hv__fp_ctx_t *c, struct json_object *v, struct json_object *x,
                       const hv_fhir_type_t *t, const hv_fhir_elem_t *owner, hv__fp_coll_t *out) {
    hv__fp_item_t it;
    int rc = HV_OK;
    if (v != NULL && json_object_is_type(v, json_type_array)) {
        size_t n = json_object_array_length(v);
        int xa = x != NULL && json_object_is_type(x, json_type_array);
        for (size_t i = 0; i < n && rc == HV_OK; i++) {
            struct json_object *e = json_object_array_get_idx(v, i);
            struct json_object *xe = xa ? json_object_array_get_idx(x, i) : NULL;
            if (e == NULL && xe == NULL) continue;
            hv__fp_make_node(&it, e, xe, t, owner);
            rc = hv__fp_push(c, out, &it);
        }
        return rc;
    }
    if (v == NULL && x != NULL && json_object_is_type(x, json_type_array)) {
        size_t n = json_object_array_length(x);
        for (size_t i = 0; i < n && rc == HV_OK; i++) {
            struct json_object *xe = json_object_array_get_idx(x, i);
            if (xe == NULL) continue;
            hv__fp_make_node(&it, NULL, xe, t, owner);
            rc = hv__fp_push(c, out, &it);
        }
        return rc;
    }
    if (v == NULL && x == NULL) return HV_OK;
    hv__fp_make_node(&it, v, x, t, owner);
    return hv__fp_push(c, out, &it);
}

static struct json_object *get_key(struct json_object *obj, const char *key) {
    struct json_object *v = NULL;
    if (!hv_json_get_ex(obj, key, &v)) return NULL;
    return v;
}

/* obj's members key + 1 and key, a name and its twin ("_name"), as get_key finds each: in one
 * pass over the members of an object hv_json_get_ex would scan twice (every step of every
 * evaluation asks for both). */
static void get_pair(struct json_object *obj, const char *key, struct json_object **v, struct json_object **x) {
    struct lh_table *t = json_object_get_object(obj);
    const char *name = key + 1;
    *v = *x = NULL;
    if (t == NULL || lh_table_length(t) > 16) {
        *v = get_key(obj, name);
        *x = get_key(obj, key);
        return;
    }
    for (struct lh_entry *e = lh_table_head(t); e != NULL; e = lh_entry_next(e)) {
        const char *k = lh_entry_k(e);
        if (k[0] == name[0] && strcmp(k, name) == 0)
            *v = (struct json_object *)lh_entry_v(e);
        else if (k[0] == '_' && strcmp(k + 1, name) == 0)
            *x = (struct json_object *)lh_entry_v(e);
    }
}

/* The type named by a choice key's suffix ("Quantity", "String" → string). */
static const hv_fhir_type_t *suffix_type(const char *suf) {
    const hv_fhir_type_t *t = hv_fhir_type_find(suf, strlen(suf));
    char lower[64];
    if ((t == NULL || hv_fhir_type_kind(t) == HV_FHIR_KIND_SYSTEM) && strlen(suf) < sizeof(lower)) {
        snprintf(lower, sizeof(lower), "%s", suf);
        lower[0] = (char)tolower((unsigned char)lower[0]);
        t = hv_fhir_type_find(lower, strlen(lower));
    }
    return t != NULL && hv_fhir_type_kind(t) != HV_FHIR_KIND_SYSTEM ? t : NULL;
}

/* Navigation without model knowledge: the key itself, or a choice key name+Type. */
static int raw_children(hv__fp_ctx_t *c, struct json_object *obj, const char *name, size_t nl,
                        hv__fp_coll_t *out) {
    char key[256];
    struct json_object *v = get_key(obj, name), *x;
    if (nl + 2 > sizeof(key)) return HV_OK;
    key[0] = '_';
    memcpy(key + 1, name, nl + 1);
    x = get_key(obj, key);
    if (v != NULL || x != NULL) return push_values(c, v, x, NULL, NULL, out);
    json_object_object_foreach(obj, k, val) {
        if (strncmp(k, name, nl) == 0 && isupper((unsigned char)k[nl])) {
            const hv_fhir_type_t *t = suffix_type(k + nl);
            return push_values(c, val, NULL, t, t != NULL ? hv_fhir_type_root(t) : NULL, out);
        }
    }
    return HV_OK;
}

int hv__fp_children(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_item_t *it,
                    const char *name, hv__fp_coll_t *out) {
    struct json_object *obj;
    const hv_fhir_elem_t *owner, *e = NULL;
    const hv_fhir_type_t *chosen = NULL;
    int choice = 0;
    size_t nl = n != NULL && n->name == name ? n->namelen : strlen(name);
    char key[256];

    if (it->kind != HV__FP_NODE) return HV_OK;
    owner = it->u.n.owner;
    /* A primitive's id and extension live in its "_name" twin. */
    obj = it->u.n.t != NULL && hv_fhir_type_kind(it->u.n.t) == HV_FHIR_KIND_PRIMITIVE ? it->u.n.ext : it->u.n.j;
    if (obj == NULL || !json_object_is_type(obj, json_type_object)) return HV_OK;
    if (owner == NULL) return raw_children(c, obj, name, nl, out);
    {
        hv__fp_node_t *cn = n != NULL && n->name == name ? (hv__fp_node_t *)n : NULL;
        uint64_t oid = (uint64_t)hv_fhir_elem_id(owner) + 1, cv = 0;
        if (cn != NULL) cv = atomic_load_explicit(&cn->cache, memory_order_relaxed);
        if (cv != 0 && (cv & 0xFFFF) == oid) {
            uint64_t tid = (cv >> 32) & 0xFFFF;
            e = hv_fhir_elem_at((size_t)((cv >> 16) & 0xFFFF) - 1);
            chosen = tid != 0 ? hv_fhir_type_at((size_t)tid - 1) : NULL;
            choice = (int)((cv >> 48) & 1);
        } else {
            if (hv__fp_model_child(owner, name, nl, &e, &choice, &chosen) != HV_OK) {
                if (n == NULL) return HV_OK;
                return hv__fp_fail(c, n, HV_EINVAL, "'%s' is not an element of %s", name,
                                   it->u.n.t != NULL ? hv_fhir_type_name(it->u.n.t) : hv_fhir_elem_path(owner));
            }
            if (cn != NULL && oid < 0xFFFF && hv_fhir_elem_id(e) + 1 < 0xFFFF &&
                (chosen == NULL || hv_fhir_type_id(chosen) + 1 < 0xFFFF)) {
                cv = oid | ((uint64_t)(hv_fhir_elem_id(e) + 1) << 16) |
                     ((uint64_t)(chosen != NULL ? hv_fhir_type_id(chosen) + 1 : 0) << 32) | ((uint64_t)choice << 48);
                atomic_store_explicit(&cn->cache, cv, memory_order_relaxed);
            }
        }
    }
    if (nl + 40 > sizeof(key)) return HV_OK;
    key[0] = '_';
    memcpy(key + 1, name, nl + 1);
    if (choice) {
        size_t nt = hv_fhir_elem_type_count(e);
        for (size_t i = 0; i < nt; i++) {
            const hv_fhir_type_t *t = hv_fhir_elem_type_at(e, i);
            const char *tn = hv_fhir_type_name(t);
            size_t tl = strlen(tn);
            struct json_object *v, *x;
            if (tl + nl + 2 >= sizeof(key)) continue;
            memcpy(key + 1 + nl, tn, tl + 1);
            key[1 + nl] = (char)toupper((unsigned char)key[1 + nl]);
            get_pair(obj, key, &v, &x);
            if (v != NULL || x != NULL) return push_values(c, v, x, t, hv_fhir_type_root(t), out);
        }
        return HV_OK;
    }
    {
        struct json_object *v, *x;
        get_pair(obj, key, &v, &x);
        if (v == NULL && x == NULL) return HV_OK;
        return push_values(c, v, x, chosen, hv_fhir_elem_owner(e, chosen), out);
    }
}

int hv__fp_all_children(hv__fp_ctx_t *c, const hv__fp_item_t *it, hv__fp_coll_t *out) {
    struct json_object *obj;
    int rc = HV_OK;
    int prim;
    if (it->kind != HV__FP_NODE) return HV_OK;
    prim = it->u.n.t != NULL && hv_fhir_type_kind(it->u.n.t) == HV_FHIR_KIND_PRIMITIVE;
    obj = prim ? it->u.n.ext : it->u.n.j;
    if (obj == NULL || !json_object_is_type(obj, json_type_object)) return HV_OK;
    json_object_object_foreach(obj, k, v) {
        const char *name = k;
        char base[128];
        (void)v;
        if (k[0] == '_') {
            /* A primitive with only an extension is visited through its "_name". */
            if (get_key(obj, k + 1) != NULL) continue;
            name = k + 1;
        }
        if (strcmp(k, "resourceType") == 0) continue;
        if (it->u.n.owner != NULL) {
            const hv_fhir_elem_t *e;
            const hv_fhir_type_t *chosen;
            int choice;
            if (hv__fp_model_child(it->u.n.owner, name, strlen(name), &e, &choice, &chosen) == HV_OK) {
                rc = hv__fp_children(c, NULL, it, name, out);
            } else {
                /* A choice key "valueQuantity": navigate its base name. */
                size_t i = 0;
                while (name[i] != '\0' && !isupper((unsigned char)name[i])) i++;
                if (name[i] == '\0' || i >= sizeof(base)) continue;
                memcpy(base, name, i);
                base[i] = '\0';
                rc = hv__fp_children(c, NULL, it, base, out);
            }
        } else {
            rc = raw_children(c, obj, name, strlen(name), out);
        }
        if (rc != HV_OK) return rc;
    }
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Evaluation                                                                */
/* ------------------------------------------------------------------------- */

static int eval_var(hv__fp_ctx_t *c, const hv__fp_node_t *n, hv__fp_coll_t *out) {
    const char *name = n->name;
    const hv_fhirpath_env_t *env = c->env;
    if (env != NULL) {
        for (size_t i = 0; i < env->nvars; i++) {
            const hv_fhirpath_var_t *v = &env->vars[i];
            if (strcmp(v->name, name) == 0) {
                hv__fp_item_t it;
                if (v->json == NULL) return HV_OK;
                const hv_fhir_type_t *t = v->type != NULL ? hv_fhir_type_find(v->type, strlen(v->type)) : NULL;
                const hv_fhir_elem_t *owner = t != NULL ? hv_fhir_type_root(t) : NULL;
                if (json_object_is_type(v->json, json_type_array)) return push_values(c, v->json, NULL, t, owner, out);
                if (json_object_is_type(v->json, json_type_string) && t == NULL)
                    return hv__fp_push_str(c, out, json_object_get_string(v->json),
                                           (size_t)json_object_get_string_len(v->json));
                hv__fp_make_node(&it, v->json, NULL, t, owner);
                return hv__fp_push(c, out, &it);
            }
        }
    }
    if (strcmp(name, "resource") == 0) return c->resource.kind == HV__FP_NODE ? hv__fp_push(c, out, &c->resource) : HV_OK;
    if (strcmp(name, "rootResource") == 0) return c->root.kind == HV__FP_NODE ? hv__fp_push(c, out, &c->root) : HV_OK;
    if (strcmp(name, "context") == 0) return c->context.kind == HV__FP_NODE ? hv__fp_push(c, out, &c->context) : HV_OK;
    if (strcmp(name, "ucum") == 0) return hv__fp_push_str(c, out, "http://unitsofmeasure.org", 25);
    if (strcmp(name, "sct") == 0) return hv__fp_push_str(c, out, "http://snomed.info/sct", 22);
    if (strcmp(name, "loinc") == 0) return hv__fp_push_str(c, out, "http://loinc.org", 16);
    if (strncmp(name, "vs-", 3) == 0) {
        const char *s = hv_arena_sprintf(c->arena, "http://hl7.org/fhir/ValueSet/%s", name + 3);
        return s != NULL ? hv__fp_push_str(c, out, s, strlen(s)) : HV_ENOMEM;
    }
    if (strncmp(name, "ext-", 4) == 0) {
        const char *s = hv_arena_sprintf(c->arena, "http://hl7.org/fhir/StructureDefinition/%s", name + 4);
        return s != NULL ? hv__fp_push_str(c, out, s, strlen(s)) : HV_ENOMEM;
    }
    return hv__fp_fail(c, n, HV_EINVAL, "unknown environment variable %%%s", name);
}

/* IDENT: the focus itself when it is of the named type (a resource type at the start of
 * a path, fhirpath.html#path-selection), else the children of that name. */
static int eval_ident(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *focus,
                      hv__fp_coll_t *out) {
    const hv_fhir_type_t *tn = n->tref.fhir;
    for (size_t i = 0; i < focus->n; i++) {
        const hv__fp_item_t *it = &focus->v[i];
        int rc;
        if (tn != NULL && it->kind == HV__FP_NODE) {
            if (it->u.n.t != NULL && hv_fhir_type_is(it->u.n.t, tn)) {
                rc = hv__fp_push(c, out, it);
                if (rc != HV_OK) return rc;
                continue;
            }
            /* Another resource type's name selects nothing ("Patient.name | Practitioner.name"),
             * or is an error in strict mode. */
            if (hv_fhir_type_kind(tn) == HV_FHIR_KIND_RESOURCE && (c->fp->lim.flags & HV_FHIRPATH_STRICT))
                return hv__fp_fail(c, n, HV_EINVAL, "'%s' is not the type of the focus (%s)", n->name,
                                   it->u.n.t != NULL ? hv_fhir_type_name(it->u.n.t) : "unknown");
            if (hv_fhir_type_kind(tn) == HV_FHIR_KIND_RESOURCE || it->u.n.owner == NULL) continue;
        }
        rc = hv__fp_children(c, n, it, n->name, out);
        if (rc != HV_OK) return rc;
    }
    return HV_OK;
}

int hv__fp_eval_with_this(hv__fp_ctx_t *c, const hv__fp_node_t *a, const hv__fp_item_t *it,
                          int64_t index, hv__fp_coll_t *out) {
    hv__fp_coll_t one;
    hv__fp_coll_t *saved_this = c->this_;
    int64_t saved_index = c->index;
    int rc;
    one.v = (hv__fp_item_t *)it;
    one.n = one.cap = 1;
    c->this_ = &one;
    c->index = index;
    rc = hv__fp_eval(c, a, &one, out);
    c->this_ = saved_this;
    c->index = saved_index;
    return rc;
}

int hv__fp_eval_arg(hv__fp_ctx_t *c, const hv__fp_node_t *a, const hv__fp_coll_t *focus,
                    hv__fp_coll_t *out) {
    (void)focus;
    return hv__fp_eval(c, a, c->this_, out);
}

int hv__fp_eval(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *focus,
                hv__fp_coll_t *out) {
    int rc = HV_OK;
    hv__fp_coll_t l = {0}, r = {0};

    if (++c->depth > c->fp->lim.max_depth) {
        c->depth--;
        return hv__fp_fail(c, n, HV_ETOOBIG, "evaluation nested deeper than %u", c->fp->lim.max_depth);
    }
    switch (n->op) {
    case HV__FP_N_LIT:
        rc = hv__fp_push(c, out, &n->lit);
        break;
    case HV__FP_N_EMPTY:
        break;
    case HV__FP_N_IDENT:
        rc = eval_ident(c, n, focus, out);
        break;
    case HV__FP_N_MEMBER: {
        /* A name that is not an element of the input's type is an error when the input is
         * of one type (a static path); over mixed types (descendants()) it selects nothing. */
        int same = 1;
        rc = hv__fp_eval(c, n->left, focus, &l);
        for (size_t i = 1; i < l.n && same; i++)
            same = l.v[i].kind == HV__FP_NODE && l.v[0].kind == HV__FP_NODE && l.v[i].u.n.owner == l.v[0].u.n.owner;
        for (size_t i = 0; rc == HV_OK && i < l.n; i++) rc = hv__fp_children(c, same ? n : NULL, &l.v[i], n->name, out);
        break;
    }
    case HV__FP_N_FUNC:
        if (n->left != NULL) {
            rc = hv__fp_eval(c, n->left, focus, &l);
            if (rc == HV_OK) rc = hv__fp_funcs[n->fn].fn(c, n, &l, out);
        } else {
            rc = hv__fp_funcs[n->fn].fn(c, n, focus, out);
        }
        break;
    case HV__FP_N_INDEX: {
        hv__fp_item_t idx;
        int present = 0;
        rc = hv__fp_eval(c, n->left, focus, &l);
        if (rc == HV_OK) rc = hv__fp_eval(c, n->right, c->this_, &r);
        if (rc == HV_OK) rc = hv__fp_singleton(c, n, &r, &idx, &present);
        if (rc != HV_OK || !present) break;
        if (idx.kind != HV__FP_INT) {
            rc = hv__fp_fail(c, n, HV_EINVAL, "an index must be an Integer");
            break;
        }
        if (idx.u.i >= 0 && (size_t)idx.u.i < l.n) rc = hv__fp_push(c, out, &l.v[idx.u.i]);
        break;
    }
    case HV__FP_N_VAR:
        rc = eval_var(c, n, out);
        break;
    case HV__FP_N_THIS:
        if (c->this_ != NULL) rc = hv__fp_push_all(c, out, c->this_);
        break;
    case HV__FP_N_INDEXVAR:
        rc = hv__fp_push_int(c, out, c->index);
        break;
    case HV__FP_N_TOTAL:
        if (c->total != NULL) rc = hv__fp_push_all(c, out, c->total);
        break;
    case HV__FP_N_NEG:
    case HV__FP_N_POS: {
        hv__fp_item_t v;
        int present = 0;
        rc = hv__fp_eval(c, n->left, focus, &l);
        if (rc == HV_OK) rc = hv__fp_singleton(c, n, &l, &v, &present);
        if (rc != HV_OK || !present) break;
        if (n->op == HV__FP_N_NEG) {
            if (v.kind == HV__FP_INT) v.u.i = -v.u.i;
            else if (v.kind == HV__FP_DEC) v.u.d.m = -v.u.d.m;
            else if (v.kind == HV__FP_QTY) v.u.q.v.m = -v.u.q.v.m;
            else {
                rc = hv__fp_fail(c, n, HV_EINVAL, "unary '-' needs a number or a quantity");
                break;
            }
        } else if (v.kind != HV__FP_INT && v.kind != HV__FP_DEC && v.kind != HV__FP_QTY) {
            rc = hv__fp_fail(c, n, HV_EINVAL, "unary '+' needs a number or a quantity");
            break;
        }
        rc = hv__fp_push(c, out, &v);
        break;
    }
    case HV__FP_N_IS:
    case HV__FP_N_AS: {
        rc = hv__fp_eval(c, n->left, focus, &l);
        if (rc != HV_OK || l.n == 0) break;
        if (l.n > 1 && n->op == HV__FP_N_AS) {
            /* The R4 search parameters apply `as` to collections ("Observation.component.value
             * as Quantity"): like fhirpath.js, the operator then filters as ofType() does. */
            for (size_t i = 0; i < l.n && rc == HV_OK; i++) {
                int t = hv__fp_is_type(&l.v[i], &n->tref, 1);
                if (t < 0) rc = hv__fp_fail(c, n, HV_EINVAL, "unknown type '%s'", n->name);
                else if (t) rc = hv__fp_push(c, out, &l.v[i]);
            }
            break;
        }
        if (l.n > 1) {
            rc = hv__fp_fail(c, n, HV_EINVAL, "'%s' needs a single item, got %zu",
                             n->op == HV__FP_N_IS ? "is" : "as", l.n);
            break;
        }
        {
            int t = hv__fp_is_type(&l.v[0], &n->tref, n->op == HV__FP_N_AS);
            if (t < 0) {
                rc = hv__fp_fail(c, n, HV_EINVAL, "unknown type '%s'", n->name);
                break;
            }
            if (n->op == HV__FP_N_IS) rc = hv__fp_push_bool(c, out, t);
            else if (t) rc = hv__fp_push(c, out, &l.v[0]);
        }
        break;
    }
    case HV__FP_N_AND:
    case HV__FP_N_OR:
    case HV__FP_N_IMPLIES: {
        int a, b;
        rc = hv__fp_eval(c, n->left, focus, &l);
        if (rc == HV_OK) rc = hv__fp_as_bool(c, n, &l, &a);
        if (rc != HV_OK) break;
        /* Short circuits of the three-valued tables (fhirpath.html#boolean-logic). */
        if (n->op == HV__FP_N_AND && a == 0) {
            rc = hv__fp_push_bool(c, out, 0);
            break;
        }
        if (n->op == HV__FP_N_OR && a == 1) {
            rc = hv__fp_push_bool(c, out, 1);
            break;
        }
        if (n->op == HV__FP_N_IMPLIES && a == 0) {
            rc = hv__fp_push_bool(c, out, 1);
            break;
        }
        rc = hv__fp_eval(c, n->right, focus, &r);
        if (rc == HV_OK) rc = hv__fp_as_bool(c, n, &r, &b);
        if (rc != HV_OK) break;
        if (n->op == HV__FP_N_AND) {
            if (b == 0) rc = hv__fp_push_bool(c, out, 0);
            else if (a == 1 && b == 1) rc = hv__fp_push_bool(c, out, 1);
        } else if (n->op == HV__FP_N_OR) {
            if (b == 1) rc = hv__fp_push_bool(c, out, 1);
            else if (a == 0 && b == 0) rc = hv__fp_push_bool(c, out, 0);
        } else {
            if (b == 1) rc = hv__fp_push_bool(c, out, 1);
            else if (a == 1 && b == 0) rc = hv__fp_push_bool(c, out, 0);
        }
        break;
    }
    case HV__FP_N_XOR: {
        int a, b;
        rc = hv__fp_eval(c, n->left, focus, &l);
        if (rc == HV_OK) rc = hv__fp_as_bool(c, n, &l, &a);
        if (rc == HV_OK) rc = hv__fp_eval(c, n->right, focus, &r);
        if (rc == HV_OK) rc = hv__fp_as_bool(c, n, &r, &b);
        if (rc == HV_OK && a >= 0 && b >= 0) rc = hv__fp_push_bool(c, out, a != b);
        break;
    }
    default:
        rc = hv__fp_eval(c, n->left, focus, &l);
        if (rc == HV_OK) rc = hv__fp_eval(c, n->right, focus, &r);
        if (rc == HV_OK) rc = hv__fp_binop(c, n, &l, &r, out);
        break;
    }
    c->depth--;
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Public entry                                                              */
/* ------------------------------------------------------------------------- */

struct hv_fhirpath_result {
    hv__fp_ctx_t ctx;
    hv__fp_coll_t items;
};

/* A result of fp in arena, its context holding what every evaluation sets; err cleared
 * (cheaper than hv_error_clear's memset of the whole struct, on every evaluation). */
static hv_fhirpath_result_t *result_new(const hv_fhirpath_t *fp, const hv_fhirpath_env_t *env,
                                        hv_arena_t *arena, hv_error_t *err) {
    hv_fhirpath_result_t *res;
    if (err != NULL) {
        err->code = 0;
        err->line = err->column = 0;
        err->location[0] = err->message[0] = '\0';
    }
    res = hv_arena_calloc(arena, sizeof(*res));
    if (res == NULL) return NULL;
    res->ctx.arena = arena;
    res->ctx.env = env;
    res->ctx.fp = fp;
    res->ctx.err = err;
    return res;
}

/* Runs res's expression on focus into res; sets err from the status where nothing did. */
static int result_eval(hv_fhirpath_result_t *res, hv__fp_coll_t *focus, hv_error_t *err,
                       hv_fhirpath_result_t **out) {
    int rc = hv__fp_eval(&res->ctx, res->ctx.fp->root, focus, &res->items);
    if (rc != HV_OK) {
        if (err != NULL && err->code == 0) hv_error_set(err, rc, NULL, "%s", hv_strerror(rc));
        return rc;
    }
    *out = res;
    return HV_OK;
}

int hv_fhirpath_eval(const hv_fhirpath_t *fp, struct json_object *resource,
                     const hv_fhirpath_env_t *env, hv_arena_t *arena,
                     hv_fhirpath_result_t **out, hv_error_t *err) {
    hv_fhirpath_result_t *res;
    hv__fp_coll_t focus = {0};
    hv__fp_ctx_t *c;
    int rc;

    if (fp == NULL || arena == NULL || out == NULL) return HV_EINVAL;
    res = result_new(fp, env, arena, err);
    if (res == NULL) return HV_ENOMEM;
    c = &res->ctx;
    c->now_ms = env != NULL ? env->now_ms : 0;
    if (resource != NULL && env != NULL && env->resource_type != NULL) {
        /* What hv__fp_make_node finds from the resource's resourceType, given by the caller. */
        c->context.kind = HV__FP_NODE;
        c->context.u.n.j = resource;
        c->context.u.n.ext = NULL;
        c->context.u.n.t = env->resource_type;
        c->context.u.n.owner = hv_fhir_type_root(env->resource_type);
    } else if (resource != NULL) {
        hv__fp_make_node(&c->context, resource, NULL, NULL, NULL);
    } else {
        c->context.kind = 0xff;
    }
    c->resource = c->context;
    c->root = c->context;
    if (env != NULL && env->resource != NULL) hv__fp_make_node(&c->resource, env->resource, NULL, NULL, NULL);
    if (env != NULL && env->root_resource != NULL)
        hv__fp_make_node(&c->root, env->root_resource, NULL, NULL, NULL);
    else c->root = c->resource;
    if (resource != NULL) {
        rc = hv__fp_push(c, &focus, &c->context);
        if (rc != HV_OK) return rc;
    }
    c->this_ = &focus;
    return result_eval(res, &focus, err, out);
}

int hv_fhirpath_eval_item(const hv_fhirpath_t *fp, const hv_fhirpath_result_t *from, size_t i,
                          const hv_fhirpath_env_t *env, hv_arena_t *arena,
                          hv_fhirpath_result_t **out, hv_error_t *err) {
    hv_fhirpath_result_t *res;
    hv__fp_coll_t one;
    hv__fp_ctx_t *c;

    if (fp == NULL || from == NULL || arena == NULL || out == NULL) return HV_EINVAL;
    if (i >= from->items.n) return HV_ENOTFOUND;
    res = result_new(fp, env, arena, err);
    if (res == NULL) return HV_ENOMEM;
    c = &res->ctx;
    c->now_ms = from->ctx.now_ms; /* the instant of from's evaluation */
    c->context = from->ctx.context;
    c->resource = from->ctx.resource;
    c->root = from->ctx.root;
    /* As select() evaluates its argument on one item: focus and $this that item, $index 0. */
    one.v = (hv__fp_item_t *)&from->items.v[i];
    one.n = one.cap = 1;
    c->this_ = &one;
    c->index = 0;
    return result_eval(res, &one, err, out);
}

size_t hv_fhirpath_result_count(const hv_fhirpath_result_t *r) {
    return r != NULL ? r->items.n : 0;
}

int hv_fhirpath_result_item(hv_fhirpath_result_t *r, size_t i, hv_fhirpath_item_t *out) {
    const hv__fp_item_t *it;
    const char *ns;
    size_t len;
    if (r == NULL || i >= r->items.n) return HV_ENOTFOUND;
    it = &r->items.v[i];
    memset(out, 0, sizeof(*out));
    out->type = hv__fp_type_name(it, &ns);
    switch (it->kind) {
    case HV__FP_NODE: out->kind = HV_FHIRPATH_NODE; out->json = it->u.n.j; return HV_OK;
    case HV__FP_BOOL: out->kind = HV_FHIRPATH_BOOLEAN; break;
    case HV__FP_INT: out->kind = HV_FHIRPATH_INTEGER; break;
    case HV__FP_DEC: out->kind = HV_FHIRPATH_DECIMAL; break;
    case HV__FP_STR: out->kind = HV_FHIRPATH_STRING; break;
    case HV__FP_DATE: out->kind = HV_FHIRPATH_DATE; break;
    case HV__FP_DATETIME: out->kind = HV_FHIRPATH_DATETIME; break;
    case HV__FP_TIME: out->kind = HV_FHIRPATH_TIME; break;
    case HV__FP_QTY: out->kind = HV_FHIRPATH_QUANTITY; out->unit = it->u.q.unit; break;
    default: return HV_EINVAL;
    }
    out->text = hv__fp_to_string(&r->ctx, it, &len);
    return out->text != NULL ? HV_OK : HV_ENOMEM;
}

int hv_fhirpath_result_json(hv_fhirpath_result_t *r, hv_buf_t *out) {
    int rc = hv_buf_putc(out, '[');
    for (size_t i = 0; r != NULL && i < r->items.n && rc == HV_OK; i++) {
        const hv__fp_item_t *it = &r->items.v[i];
        size_t len;
        const char *s;
        if (i > 0) rc = hv_buf_putc(out, ',');
        if (rc != HV_OK) break;
        switch (it->kind) {
        case HV__FP_NODE:
            if (it->u.n.j != NULL) rc = hv_buf_puts(out, json_object_to_json_string_ext(it->u.n.j, JSON_C_TO_STRING_PLAIN));
            else rc = hv_buf_puts(out, "null");
            break;
        case HV__FP_BOOL:
        case HV__FP_INT:
        case HV__FP_DEC:
            s = hv__fp_to_string(&r->ctx, it, &len);
            rc = s != NULL ? hv_buf_append(out, s, len) : HV_ENOMEM;
            break;
        case HV__FP_QTY: {
            char num[64];
            hv__fp_dec_str(it->u.q.v, num, sizeof(num));
            rc = hv_buf_printf(out, "{\"value\":%s,\"unit\":", num);
            if (rc == HV_OK) rc = hv_buf_json_str(out, it->u.q.unit, strlen(it->u.q.unit));
            if (rc == HV_OK) rc = hv_buf_putc(out, '}');
            break;
        }
        default:
            s = hv__fp_to_string(&r->ctx, it, &len);
            rc = s != NULL ? hv_buf_json_str(out, s, len) : HV_ENOMEM;
            break;
        }
    }
    if (rc == HV_OK) rc = hv_buf_putc(out, ']');
    return rc;
}
