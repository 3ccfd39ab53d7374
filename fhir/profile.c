/*
 * profile.c — validation against a profile StructureDefinition (FHIR R4
 * profiling.html): the constraints a profile adds on top of its base type.
 *
 * The profile's snapshot (or, without one, its differential) becomes a tree of
 * element nodes keyed by the segments of ElementDefinition.id ("Observation",
 * "component:systolic", "code"). The resource is walked along that tree; at each
 * node, for each value found under the parent value:
 *
 *   cardinality   min/max where they are tighter than the base element's (and for
 *                 every slice)
 *   fixed[x]      the value equals the fixed value exactly (profiling.html#fixed)
 *   pattern[x]    the value contains the pattern: every property of the pattern,
 *                 recursively; each pattern array item matches some value item
 *   types         a choice element uses one of the profile's types
 *   constraints   the profile's own invariants (keys the base element lacks), with
 *                 FHIRPath through invariants.c
 *   slicing       values are assigned to slices by the discriminators (value and
 *                 pattern: the slice's fixed/pattern value at the discriminator path;
 *                 type: the value's type; exists: presence at the path); each
 *                 slice's cardinality and children are checked on its values; with
 *                 rules "closed", a value in no slice is an error. Extension slices
 *                 discriminated by url use the slice's type profile URL.
 *
 * A value whose element type names a profile the validator also knows (an extension
 * slice and the extension's StructureDefinition) is checked against that one too.
 * Not done: discriminators of type "profile", bindings to value sets the base model
 * does not inline, and ordered slicing.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/validate_int.h"

typedef struct pnode pnode_t;
struct pnode {
    char *name;             /* "component", "value[x]" */
    char *slice;            /* slice name or NULL */
    struct json_object *el; /* the ElementDefinition (borrowed from the profile's copy) */
    pnode_t **kids;
    size_t nkids, capkids;
    int min;  /* -1: not constrained by the profile beyond the base */
    long max; /* -1: not constrained */
};

struct hv__fhir_profile {
    char *url;
    const hv_fhir_type_t *type;
    struct json_object *sd;
    hv_arena_t *arena;
    pnode_t *root;
    hv__fhir_profile_t *next;
};

/* ---- building the tree ----------------------------------------------------------- */

static pnode_t *node_new(hv_arena_t *a, const char *name, size_t nlen, const char *slice,
                         size_t slen) {
    pnode_t *n = hv_arena_calloc(a, sizeof(*n));
    if (n == NULL)
        return NULL;
    n->name = hv_arena_strndup(a, name, nlen);
    n->slice = slice != NULL ? hv_arena_strndup(a, slice, slen) : NULL;
    n->min = -1;
    n->max = -1;
    return n;
}

static pnode_t *child(hv_arena_t *a, pnode_t *p, const char *name, size_t nlen, const char *slice,
                      size_t slen) {
    for (size_t i = 0; i < p->nkids; i++) {
        pnode_t *k = p->kids[i];
        if (strlen(k->name) == nlen && memcmp(k->name, name, nlen) == 0 &&
            ((slice == NULL && k->slice == NULL) ||
             (slice != NULL && k->slice != NULL && strlen(k->slice) == slen &&
              memcmp(k->slice, slice, slen) == 0)))
            return k;
    }
    if (p->nkids == p->capkids) {
        size_t cap = p->capkids ? p->capkids * 2 : 8;
        pnode_t **kids = hv_arena_alloc(a, cap * sizeof(*kids));
        if (kids == NULL)
            return NULL;
        if (p->nkids > 0)
            memcpy(kids, p->kids, p->nkids * sizeof(*kids));
        p->kids = kids;
        p->capkids = cap;
    }
    pnode_t *k = node_new(a, name, nlen, slice, slen);
    if (k != NULL)
        p->kids[p->nkids++] = k;
    return k;
}

static long parse_max(const char *m) {
    if (m == NULL)
        return -1;
    if (strcmp(m, "*") == 0)
        return HV_FHIR_UNBOUNDED;
    return strtol(m, NULL, 10);
}

/* Inserts one ElementDefinition by its id ("Observation.component:systolic.code"). */
static int insert(hv__fhir_profile_t *p, struct json_object *el) {
    const char *id = hv_json_get_str(el, "id");
    if (id == NULL)
        id = hv_json_get_str(el, "path");
    if (id == NULL)
        return HV_EINVAL;
    pnode_t *n = p->root;
    const char *seg = strchr(id, '.');
    if (seg == NULL) {
        p->root->el = el;
        return HV_OK;
    }
    seg++;
    while (*seg != '\0') {
        /* A segment ends at the next '.' that is not inside a slice name; slice names
         * may contain '/' (re-slicing) but not '.'. */
        const char *end = strchr(seg, '.');
        size_t len = end != NULL ? (size_t)(end - seg) : strlen(seg);
        const char *colon = memchr(seg, ':', len);
        n = colon != NULL ? child(p->arena, n, seg, (size_t)(colon - seg), colon + 1,
                                  len - (size_t)(colon - seg) - 1)
                          : child(p->arena, n, seg, len, NULL, 0);
        if (n == NULL)
            return HV_ENOMEM;
        seg += len;
        if (*seg == '.')
            seg++;
    }
    n->el = el;
    /* Cardinality: kept when tighter than the base element's, and always for slices. */
    const char *path = hv_json_get_str(el, "path");
    const hv_fhir_elem_t *base = path != NULL ? hv_fhir_elem_find(path) : NULL;
    struct json_object *jmin = NULL;
    int min = json_object_object_get_ex(el, "min", &jmin) ? json_object_get_int(jmin) : -1;
    long max = parse_max(hv_json_get_str(el, "max"));
    if (n->slice != NULL || base == NULL) {
        n->min = min;
        n->max = max;
    } else {
        if (min > (int)hv_fhir_elem_min(base))
            n->min = min;
        if (max >= 0 && (uint32_t)max < hv_fhir_elem_max(base))
            n->max = max;
    }
    return HV_OK;
}

void hv__fhir_profile_free(hv__fhir_profile_t *p) {
    while (p != NULL) {
        hv__fhir_profile_t *next = p->next;
        json_object_put(p->sd);
        hv_arena_free(p->arena);
        hv_free(p->url);
        hv_free(p);
        p = next;
    }
}

int hv__fhir_profile_new(struct json_object *sd, hv__fhir_profile_t **out, hv_error_t *err) {
    hv__fhir_profile_t *p = NULL;
    struct json_object *els = NULL, *holder = NULL;
    int rc = HV_EINVAL;
    const char *rt = hv_json_get_str(sd, "resourceType");
    const char *url = hv_json_get_str(sd, "url");
    const char *type = hv_json_get_str(sd, "type");
    if (rt == NULL || strcmp(rt, "StructureDefinition") != 0 || url == NULL || type == NULL) {
        hv_error_set(err, HV_EINVAL, NULL, "not a StructureDefinition with a url and a type");
        return HV_EINVAL;
    }
    const hv_fhir_type_t *t = hv_fhir_type_find(type, strlen(type));
    if (t == NULL || hv_fhir_type_root(t) == NULL) {
        hv_error_set(err, HV_EINVAL, NULL, "the profile constrains unknown type %s", type);
        return HV_EINVAL;
    }
    p = hv_calloc(1, sizeof(*p));
    if (p == NULL)
        return HV_ENOMEM;
    p->arena = hv_arena_new(0);
    p->url = hv_strdup(url);
    if (p->arena == NULL || p->url == NULL || json_object_deep_copy(sd, &p->sd, NULL) != 0) {
        rc = HV_ENOMEM;
        goto out;
    }
    p->type = t;
    p->root = node_new(p->arena, type, strlen(type), NULL, 0);
    if (p->root == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    if ((json_object_object_get_ex(p->sd, "snapshot", &holder) ||
         json_object_object_get_ex(p->sd, "differential", &holder)) &&
        json_object_object_get_ex(holder, "element", &els) &&
        json_object_is_type(els, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(els); i++) {
            rc = insert(p, json_object_array_get_idx(els, i));
            if (rc != HV_OK) {
                hv_error_set(err, rc, NULL, "element %zu of the profile has no id or path", i);
                goto out;
            }
        }
    } else {
        hv_error_set(err, HV_EINVAL, NULL, "the profile has neither a snapshot nor a differential");
        goto out;
    }
    *out = p;
    p = NULL;
    rc = HV_OK;
out:
    hv__fhir_profile_free(p);
    return rc;
}

const char *hv__fhir_profile_url(const hv__fhir_profile_t *p) {
    return p->url;
}

hv__fhir_profile_t **hv__fhir_profile_next(hv__fhir_profile_t *p) {
    return &p->next;
}

/* ---- matching values ---------------------------------------------------------------- */

/* The fixed[x] or pattern[x] value of an ElementDefinition; *is_pattern says which. */
static struct json_object *fixed_or_pattern(struct json_object *el, int *is_pattern) {
    if (el == NULL)
        return NULL;
    json_object_object_foreach(el, k, v) {
        if (strncmp(k, "fixed", 5) == 0 && k[5] >= 'A' && k[5] <= 'Z') {
            *is_pattern = 0;
            return v;
        }
        if (strncmp(k, "pattern", 7) == 0 && k[7] >= 'A' && k[7] <= 'Z') {
            *is_pattern = 1;
            return v;
        }
    }
    return NULL;
}

/* profiling.html#pattern: value contains everything in pattern. */
static int pattern_match(struct json_object *pattern, struct json_object *value) {
    if (json_object_is_type(pattern, json_type_object)) {
        if (!json_object_is_type(value, json_type_object))
            return 0;
        json_object_object_foreach(pattern, k, pv) {
            struct json_object *vv = NULL;
            if (!json_object_object_get_ex(value, k, &vv) || !pattern_match(pv, vv))
                return 0;
        }
        return 1;
    }
    if (json_object_is_type(pattern, json_type_array)) {
        if (!json_object_is_type(value, json_type_array))
            return 0;
        for (size_t i = 0; i < json_object_array_length(pattern); i++) {
            int found = 0;
            for (size_t j = 0; j < json_object_array_length(value) && !found; j++)
                found = pattern_match(json_object_array_get_idx(pattern, i),
                                      json_object_array_get_idx(value, j));
            if (!found)
                return 0;
        }
        return 1;
    }
    return hv_fhir_json_equal(pattern, value);
}

/* The JSON key under which an element name occurs in obj: name itself, or for a choice
 * "value[x]" the first "valueXxx" key present. *tname gets the type suffix ("Quantity"). */
static const char *find_key(struct json_object *obj, const char *name, const char **tsuffix) {
    size_t n = strlen(name);
    *tsuffix = NULL;
    if (!json_object_is_type(obj, json_type_object))
        return NULL;
    if (n > 3 && strcmp(name + n - 3, "[x]") == 0) {
        json_object_object_foreach(obj, k, v) {
            (void)v;
            if (strncmp(k, name, n - 3) == 0 && k[n - 3] >= 'A' && k[n - 3] <= 'Z') {
                *tsuffix = k + n - 3;
                return k;
            }
        }
        return NULL;
    }
    return json_object_object_get_ex(obj, name, NULL) ? name : NULL;
}

/* The values at a dotted discriminator path below v ("coding.system", "$this"), appended. */
static void values_at(struct json_object *v, const char *path, struct json_object **out, size_t *n,
                      size_t cap) {
    if (v == NULL || *n >= cap)
        return;
    if (json_object_is_type(v, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(v); i++)
            values_at(json_object_array_get_idx(v, i), path, out, n, cap);
        return;
    }
    if (path == NULL || *path == '\0' || strcmp(path, "$this") == 0) {
        out[(*n)++] = v;
        return;
    }
    const char *dot = strchr(path, '.');
    char seg[128];
    size_t len = dot != NULL ? (size_t)(dot - path) : strlen(path);
    if (len >= sizeof(seg))
        return;
    memcpy(seg, path, len);
    seg[len] = '\0';
    const char *ts;
    const char *key = find_key(v, seg, &ts);
    struct json_object *c = NULL;
    if (key != NULL && json_object_object_get_ex(v, key, &c))
        values_at(c, dot != NULL ? dot + 1 : NULL, out, n, cap);
}

/* The profile node below slice at a dotted path ("coding.code"), or NULL. */
static pnode_t *node_at(pnode_t *n, const char *path) {
    while (n != NULL && path != NULL && *path != '\0' && strcmp(path, "$this") != 0) {
        const char *dot = strchr(path, '.');
        size_t len = dot != NULL ? (size_t)(dot - path) : strlen(path);
        pnode_t *next = NULL;
        for (size_t i = 0; i < n->nkids && next == NULL; i++)
            if (n->kids[i]->slice == NULL && strlen(n->kids[i]->name) == len &&
                memcmp(n->kids[i]->name, path, len) == 0)
                next = n->kids[i];
        n = next;
        path = dot != NULL ? dot + 1 : NULL;
    }
    return n;
}

/* The type code of the i-th type of an ElementDefinition, and its first profile. */
static const char *el_type(struct json_object *el, size_t i, const char **profile) {
    struct json_object *types = NULL, *t, *profs = NULL;
    if (profile != NULL)
        *profile = NULL;
    if (el == NULL || !json_object_object_get_ex(el, "type", &types) ||
        i >= json_object_array_length(types))
        return NULL;
    t = json_object_array_get_idx(types, i);
    if (profile != NULL && json_object_object_get_ex(t, "profile", &profs) &&
        json_object_array_length(profs) > 0)
        *profile = json_object_get_string(json_object_array_get_idx(profs, 0));
    return hv_json_get_str(t, "code");
}

/* Does value v (under key with type suffix ts) belong to slice s by the discriminators? */
static int in_slice(struct json_object *disc, pnode_t *s, struct json_object *v, const char *ts) {
    size_t nd = json_object_array_length(disc);
    for (size_t d = 0; d < nd; d++) {
        struct json_object *di = json_object_array_get_idx(disc, d);
        const char *type = hv_json_get_str(di, "type");
        const char *path = hv_json_get_str(di, "path");
        struct json_object *vals[64];
        size_t nv = 0;
        if (type == NULL || path == NULL)
            return 0;
        values_at(v, path, vals, &nv, HV_ARRAY_LEN(vals));
        if (strcmp(type, "value") == 0 || strcmp(type, "pattern") == 0) {
            pnode_t *at = node_at(s, path);
            int isp = 0;
            struct json_object *want = at != NULL ? fixed_or_pattern(at->el, &isp) : NULL;
            const char *prof = NULL;
            if (want == NULL && strcmp(path, "url") == 0 && el_type(s->el, 0, &prof) != NULL &&
                prof != NULL) {
                /* An extension slice: its url is the extension's canonical URL. */
                int found = 0;
                for (size_t i = 0; i < nv && !found; i++)
                    found = json_object_is_type(vals[i], json_type_string) &&
                            strcmp(json_object_get_string(vals[i]), prof) == 0;
                if (!found)
                    return 0;
                continue;
            }
            if (want == NULL)
                return 0; /* the slice does not say: it cannot be told apart */
            int found = 0;
            for (size_t i = 0; i < nv && !found; i++)
                found = isp || strcmp(type, "pattern") == 0 ? pattern_match(want, vals[i])
                                                            : hv_fhir_json_equal(want, vals[i]);
            if (!found)
                return 0;
        } else if (strcmp(type, "type") == 0) {
            const char *want = el_type(s->el, 0, NULL);
            const char *have = ts;
            if (have == NULL && json_object_is_type(v, json_type_object))
                have = hv_json_get_str(v, "resourceType");
            if (want == NULL || have == NULL ||
                !((have[0] == want[0] || have[0] == want[0] - 'a' + 'A') &&
                  strcmp(have + 1, want + 1) == 0))
                return 0;
        } else if (strcmp(type, "exists") == 0) {
            pnode_t *at = node_at(s, path);
            int want = at != NULL && at->min > 0;
            if ((nv > 0) != want)
                return 0;
        } else {
            return 0; /* "profile": not supported */
        }
    }
    return 1;
}

/* ---- the walk -------------------------------------------------------------------- */

static void check_node(hv__fhir_vctx_t *c, pnode_t *n, struct json_object *parent, int depth);

/* Checks one value of node n: fixed/pattern, types, constraints, children. */
static void check_value(hv__fhir_vctx_t *c, pnode_t *n, struct json_object *v, const char *ts,
                        int depth) {
    int isp = 0;
    struct json_object *want = fixed_or_pattern(n->el, &isp);
    if (want != NULL) {
        int ok = isp ? pattern_match(want, v) : hv_fhir_json_equal(want, v);
        if (!ok)
            hv__fhir_issue(c, "error", "value", NULL,
                           "The value does not match the profile's %s value %s",
                           isp ? "pattern" : "fixed",
                           json_object_to_json_string_ext(want, JSON_C_TO_STRING_PLAIN));
    }
    if (ts != NULL && n->el != NULL && n->slice == NULL) {
        struct json_object *types = NULL;
        if (json_object_object_get_ex(n->el, "type", &types) &&
            json_object_array_length(types) > 0) {
            int ok = 0;
            for (size_t i = 0; i < json_object_array_length(types) && !ok; i++) {
                const char *code = el_type(n->el, i, NULL);
                ok = code != NULL && (code[0] == ts[0] || code[0] - 'a' + 'A' == ts[0]) &&
                     strcmp(code + 1, ts + 1) == 0;
            }
            if (!ok)
                hv__fhir_issue(c, "error", "structure", NULL,
                               "The type %s is not allowed by the profile", ts);
        }
    }
    /* The profile's own invariants: keys the base element does not have. */
    struct json_object *cons = NULL;
    const char *path = n->el != NULL ? hv_json_get_str(n->el, "path") : NULL;
    const hv_fhir_elem_t *base = path != NULL ? hv_fhir_elem_find(path) : NULL;
    if (c->inv != NULL && n->el != NULL && json_object_object_get_ex(n->el, "constraint", &cons) &&
        base != NULL) {
        for (size_t i = 0; i < json_object_array_length(cons); i++) {
            struct json_object *k = json_object_array_get_idx(cons, i);
            const char *key = hv_json_get_str(k, "key");
            const char *expr = hv_json_get_str(k, "expression");
            int known = 0;
            if (key == NULL || expr == NULL)
                continue;
            for (size_t j = 0; j < hv_fhir_elem_constraint_count(base) && !known; j++)
                known =
                    strcmp(hv_fhir_constraint_key(hv_fhir_elem_constraint_at(base, j)), key) == 0;
            if (known)
                continue;
            const hv_fhir_type_t *t = NULL;
            if (ts != NULL)
                t = hv_fhir_elem_choice_type(base, ts, strlen(ts));
            else if (hv_fhir_elem_type_count(base) > 0)
                t = hv_fhir_elem_type_at(base, 0);
            if (hv_fhir_elem_parent(base) == NULL)
                t = hv_fhir_elem_owner_type(base);
            if (t == NULL)
                continue;
            const hv_fhir_elem_t *owner = hv_fhir_elem_owner(base, t);
            hv__fhir_focus_t f = {v, NULL, t, owner, c->resource, c->root_resource, 0};
            const char *sev = hv_json_get_str(k, "severity");
            hv__fhir_invariant_expr(c, key, expr, hv_json_get_str(k, "human"),
                                    sev != NULL && strcmp(sev, "warning") == 0, &f);
        }
    }
    if (json_object_is_type(v, json_type_object)) {
        check_node(c, n, v, depth + 1);
        /* An element whose type names a profile the validator knows (an extension slice
         * with its StructureDefinition, say) is checked against that profile too. */
        const char *prof = NULL;
        const char *code = el_type(n->el, 0, &prof);
        hv__fhir_profile_t *tp =
            prof != NULL && c->v != NULL ? hv__fhir_validator_profile(c->v, prof) : NULL;
        if (tp != NULL && code != NULL && strcmp(hv_fhir_type_name(tp->type), code) == 0 &&
            depth < c->max_depth)
            check_value(c, tp->root, v, NULL, depth + 1);
    }
}

/* Checks the children of profile node n against the JSON object parent. */
static void check_node(hv__fhir_vctx_t *c, pnode_t *n, struct json_object *parent, int depth) {
    if (depth > c->max_depth)
        return;
    for (size_t i = 0; i < n->nkids; i++) {
        pnode_t *k = n->kids[i];
        if (k->slice != NULL)
            continue; /* handled with the sliced element below */
        const char *ts = NULL;
        const char *key = find_key(parent, k->name, &ts);
        struct json_object *val = NULL;
        if (key != NULL)
            json_object_object_get_ex(parent, key, &val);
        size_t count = val == NULL                                 ? 0
                       : json_object_is_type(val, json_type_array) ? json_object_array_length(val)
                                                                   : 1;
        const char *pname = key != NULL && ts == NULL ? key : k->name;
        char nbuf[128];
        if (ts != NULL) {
            snprintf(nbuf, sizeof(nbuf), "%.*s", (int)(strlen(k->name) - 3), k->name);
            pname = nbuf;
        }
        size_t mark = hv__fhir_path_push(&c->path, pname, -1);
        if (k->min >= 0 && count < (size_t)k->min)
            hv__fhir_issue(c, "error", "required", NULL,
                           "The profile requires at least %d, found %zu", k->min, count);
        if (k->max >= 0 && k->max != (long)HV_FHIR_UNBOUNDED && count > (size_t)k->max)
            hv__fhir_issue(c, "error", "structure", NULL,
                           "The profile allows at most %ld, found %zu", k->max, count);
        hv__fhir_path_pop(&c->path, mark);
        /* Slices of this element, in the order the profile lists them. */
        pnode_t *slices[64];
        size_t ns = 0;
        for (size_t j = 0; j < n->nkids && ns < HV_ARRAY_LEN(slices); j++)
            if (n->kids[j]->slice != NULL && strcmp(n->kids[j]->name, k->name) == 0)
                slices[ns++] = n->kids[j];
        struct json_object *slicing = NULL, *disc = NULL;
        if (k->el != NULL)
            json_object_object_get_ex(k->el, "slicing", &slicing);
        if (slicing != NULL)
            json_object_object_get_ex(slicing, "discriminator", &disc);
        const char *rules = slicing != NULL ? hv_json_get_str(slicing, "rules") : NULL;
        size_t scount[64] = {0};
        for (size_t idx = 0; idx < count; idx++) {
            struct json_object *v = json_object_is_type(val, json_type_array)
                                        ? json_object_array_get_idx(val, idx)
                                        : val;
            mark = hv__fhir_path_push(&c->path, pname,
                                      json_object_is_type(val, json_type_array) ? (long)idx : -1);
            if (v != NULL)
                check_value(c, k, v, ts, depth);
            if (ns > 0 && v != NULL) {
                int matched = 0;
                for (size_t s = 0; s < ns && !matched; s++) {
                    /* A choice "slice" named after a type (value[x]:valueQuantity). */
                    int by_name = ts != NULL && strcmp(slices[s]->slice, key) == 0;
                    if (by_name || (disc != NULL && in_slice(disc, slices[s], v, ts))) {
                        matched = 1;
                        scount[s]++;
                        check_value(c, slices[s], v, ts, depth);
                    }
                }
                if (!matched && rules != NULL && strcmp(rules, "closed") == 0)
                    hv__fhir_issue(c, "error", "structure", NULL,
                                   "The value matches no slice of the profile (slicing is closed)");
            }
            hv__fhir_path_pop(&c->path, mark);
        }
        for (size_t s = 0; s < ns; s++) {
            mark = hv__fhir_path_push(&c->path, pname, -1);
            if (slices[s]->min > 0 && scount[s] < (size_t)slices[s]->min)
                hv__fhir_issue(c, "error", "required", NULL,
                               "Slice '%s' requires at least %d, found %zu", slices[s]->slice,
                               slices[s]->min, scount[s]);
            if (slices[s]->max >= 0 && slices[s]->max != (long)HV_FHIR_UNBOUNDED &&
                scount[s] > (size_t)slices[s]->max)
                hv__fhir_issue(c, "error", "structure", NULL,
                               "Slice '%s' allows at most %ld, found %zu", slices[s]->slice,
                               slices[s]->max, scount[s]);
            hv__fhir_path_pop(&c->path, mark);
        }
    }
}

int hv__fhir_profile_check(hv__fhir_vctx_t *c, hv__fhir_profile_t *p, struct json_object *res) {
    const char *rt = hv_json_get_str(res, "resourceType");
    c->path.len = 0;
    c->path.buf[0] = '\0';
    hv__fhir_path_push(&c->path, rt != NULL ? rt : "?", -1);
    if (rt == NULL || strcmp(rt, hv_fhir_type_name(p->type)) != 0) {
        hv__fhir_issue(c, "error", "structure", NULL, "The profile %s is for %s resources, not %s",
                       p->url, hv_fhir_type_name(p->type), rt != NULL ? rt : "this");
        return HV_OK;
    }
    c->resource = res;
    c->root_resource = res;
    check_value(c, p->root, res, NULL, 0);
    return HV_OK;
}
