/*
 * rest_patch.c — the two patch formats of FHIR R4 http.html#patch, applied to a
 * resource's JSON tree in place:
 *
 *   JSON Patch (RFC 6902, application/json-patch+json): add, remove, replace,
 *   move, copy, test, with JSON Pointers (RFC 6901: "/a/0/b", "~0" is '~', "~1" is '/').
 *   Replacing the whole document (path "") is refused: a patch keeps the resource.
 *
 *   FHIRPath Patch (FHIR R4 fhirpatch.html): a Parameters resource with one
 *   "operation" parameter per step, whose parts are type (add, insert, delete,
 *   replace, move), path (a FHIRPath expression), name, value[x] (or value parts
 *   for an anonymous complex value), index, source and destination.
 *
 * The HTTP side is in fhir/rest_crud.c (PATCH) and fhir/rest_bundle.c; the
 * interaction (read, patch, check, write a new version) in fhir/store_ops.c.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhirpath.h"
#include "fhir/store_int.h"

#define MAX_POINTER_DEPTH 128

/* Inserts val (consumed) into arr at idx (0..length). */
static int array_insert(struct json_object *arr, size_t idx, struct json_object *val)
{
    size_t n = json_object_array_length(arr);
    if (idx > n) {
        json_object_put(val);
        return HV_EINVAL;
    }
    if (idx == n)
        return json_object_array_add(arr, val) == 0 ? HV_OK : HV_ENOMEM;
    /* json-c has no insert: append, then rotate the tail right by one. */
    if (json_object_array_add(arr, val) != 0)
        return HV_ENOMEM;
    for (size_t i = n; i > idx; i--) {
        struct json_object *prev = json_object_get(json_object_array_get_idx(arr, i - 1));
        struct json_object *cur = json_object_get(json_object_array_get_idx(arr, i));
        json_object_array_put_idx(arr, i, prev);
        json_object_array_put_idx(arr, i - 1, cur);
    }
    return HV_OK;
}

/* ---- JSON Pointer (RFC 6901) ---- */

typedef struct ptr {
    struct json_object *parent; /* the container holding the target */
    char key[512];              /* the last reference token, unescaped */
} ptr_t;

/* Unescapes one reference token into out. */
static int token(const char *s, size_t n, char *out, size_t outlen)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '~') {
            if (i + 1 >= n || (s[i + 1] != '0' && s[i + 1] != '1'))
                return HV_EINVAL;
            c = s[i + 1] == '0' ? '~' : '/';
            i++;
        }
        if (k + 1 >= outlen)
            return HV_ETOOBIG;
        out[k++] = c;
    }
    out[k] = '\0';
    return HV_OK;
}

/* An array index token: digits without a leading zero. */
static int array_index(const char *t, size_t *out)
{
    char *end = NULL;
    unsigned long long v;
    if (t[0] == '\0' || (t[0] == '0' && t[1] != '\0') || t[0] < '0' || t[0] > '9')
        return HV_EINVAL;
    v = strtoull(t, &end, 10);
    if (*end != '\0')
        return HV_EINVAL;
    *out = (size_t)v;
    return HV_OK;
}

/* Child of a container by token; NULL when absent. */
static struct json_object *child(struct json_object *c, const char *t)
{
    struct json_object *v = NULL;
    size_t i;
    if (json_object_is_type(c, json_type_object))
        return json_object_object_get_ex(c, t, &v) ? v : NULL;
    if (json_object_is_type(c, json_type_array) && array_index(t, &i) == HV_OK &&
        i < json_object_array_length(c))
        return json_object_array_get_idx(c, i);
    return NULL;
}

/* Resolves all but the last token of path: the parent must exist. */
static int resolve(struct json_object *doc, const char *path, ptr_t *p, char *msg, size_t msglen)
{
    const char *s = path;
    struct json_object *cur = doc;
    int depth = 0;
    if (path[0] != '/') {
        snprintf(msg, msglen, "path \"%.100s\" is not a JSON Pointer to a member (it must start with '/')", path);
        return HV_EINVAL;
    }
    for (;;) {
        const char *e = strchr(s + 1, '/');
        size_t n = e != NULL ? (size_t)(e - s - 1) : strlen(s + 1);
        char t[512];
        if (token(s + 1, n, t, sizeof(t)) != HV_OK || ++depth > MAX_POINTER_DEPTH) {
            snprintf(msg, msglen, "path \"%.100s\" is not a valid JSON Pointer", path);
            return HV_EINVAL;
        }
        if (e == NULL) {
            p->parent = cur;
            snprintf(p->key, sizeof(p->key), "%s", t);
            return HV_OK;
        }
        cur = child(cur, t);
        if (cur == NULL) {
            snprintf(msg, msglen, "path \"%.100s\" does not exist", path);
            return HV_EINVAL;
        }
        s = e;
    }
}

static struct json_object *ptr_get(const ptr_t *p)
{
    return child(p->parent, p->key);
}

/* RFC 6902 §4.1 add: consumes val. */
static int ptr_add(const ptr_t *p, struct json_object *val, char *msg, size_t msglen)
{
    size_t i;
    if (json_object_is_type(p->parent, json_type_object))
        return hv_json_set(p->parent, p->key, val) == 0 ? HV_OK : HV_ENOMEM;
    if (json_object_is_type(p->parent, json_type_array)) {
        size_t n = json_object_array_length(p->parent);
        if (strcmp(p->key, "-") == 0)
            i = n;
        else if (array_index(p->key, &i) != HV_OK || i > n) {
            json_object_put(val);
            snprintf(msg, msglen, "array index %.40s is out of range", p->key);
            return HV_EINVAL;
        }
        return array_insert(p->parent, i, val);
    }
    json_object_put(val);
    snprintf(msg, msglen, "the target's parent is not an object or array");
    return HV_EINVAL;
}

static int ptr_remove(const ptr_t *p, char *msg, size_t msglen)
{
    size_t i;
    if (ptr_get(p) == NULL) {
        snprintf(msg, msglen, "the member %.100s does not exist", p->key);
        return HV_EINVAL;
    }
    if (json_object_is_type(p->parent, json_type_object)) {
        json_object_object_del(p->parent, p->key);
        return HV_OK;
    }
    array_index(p->key, &i);
    return json_object_array_del_idx(p->parent, i, 1) == 0 ? HV_OK : HV_EINVAL;
}

static int deep_copy(struct json_object *src, struct json_object **out)
{
    *out = NULL;
    if (src == NULL)
        return HV_OK; /* JSON null */
    return json_object_deep_copy(src, out, NULL) == 0 ? HV_OK : HV_ENOMEM;
}

/* True when a (a JSON Pointer) is a proper prefix of b at a token boundary. */
static int is_prefix(const char *a, const char *b)
{
    size_t n = strlen(a);
    return strncmp(a, b, n) == 0 && b[n] == '/';
}

int hv__json_patch_apply(struct json_object *res, struct json_object *patch, int *test_failed, char *msg,
                         size_t msglen)
{
    size_t n;
    *test_failed = 0;
    if (!json_object_is_type(patch, json_type_array)) {
        snprintf(msg, msglen, "a JSON Patch is an array of operations");
        return HV_EINVAL;
    }
    n = json_object_array_length(patch);
    for (size_t k = 0; k < n; k++) {
        struct json_object *o = json_object_array_get_idx(patch, k), *value = NULL, *v = NULL;
        const char *opn = hv_json_get_str(o, "op"), *path = hv_json_get_str(o, "path"),
                   *from = hv_json_get_str(o, "from");
        int has_value = json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, "value", &value);
        ptr_t p, f;
        int rc;
        if (opn == NULL || path == NULL) {
            snprintf(msg, msglen, "operation %zu needs \"op\" and \"path\"", k);
            return HV_EINVAL;
        }
        if (path[0] == '\0') {
            if (strcmp(opn, "test") == 0) {
                if (!has_value || !hv_fhir_json_equal(res, value)) {
                    *test_failed = 1;
                    snprintf(msg, msglen, "operation %zu: test of the whole document failed", k);
                    return HV_EINVAL;
                }
                continue;
            }
            snprintf(msg, msglen, "operation %zu: a patch may not replace the whole resource", k);
            return HV_EINVAL;
        }
        rc = resolve(res, path, &p, msg, msglen);
        if (rc != HV_OK)
            return rc;
        if (strcmp(opn, "add") == 0 || strcmp(opn, "replace") == 0 || strcmp(opn, "test") == 0) {
            if (!has_value) {
                snprintf(msg, msglen, "operation %zu (%s) needs \"value\"", k, opn);
                return HV_EINVAL;
            }
        }
        if (strcmp(opn, "add") == 0) {
            if ((rc = deep_copy(value, &v)) != HV_OK)
                return rc;
            rc = ptr_add(&p, v, msg, msglen);
        } else if (strcmp(opn, "remove") == 0) {
            rc = ptr_remove(&p, msg, msglen);
        } else if (strcmp(opn, "replace") == 0) {
            if (ptr_get(&p) == NULL && !(json_object_is_type(p.parent, json_type_object) &&
                                         json_object_object_get_ex(p.parent, p.key, NULL))) {
                snprintf(msg, msglen, "operation %zu: replace of %.100s, which does not exist", k, path);
                return HV_EINVAL;
            }
            if ((rc = deep_copy(value, &v)) != HV_OK)
                return rc;
            if (json_object_is_type(p.parent, json_type_object)) {
                rc = hv_json_set(p.parent, p.key, v) == 0 ? HV_OK : HV_ENOMEM;
            } else {
                size_t i;
                array_index(p.key, &i);
                rc = json_object_array_put_idx(p.parent, i, v) == 0 ? HV_OK : HV_ENOMEM;
            }
        } else if (strcmp(opn, "move") == 0 || strcmp(opn, "copy") == 0) {
            struct json_object *src;
            if (from == NULL) {
                snprintf(msg, msglen, "operation %zu (%s) needs \"from\"", k, opn);
                return HV_EINVAL;
            }
            if (strcmp(opn, "move") == 0 && is_prefix(from, path)) {
                snprintf(msg, msglen, "operation %zu: cannot move a value into itself", k);
                return HV_EINVAL;
            }
            if (from[0] == '\0') {
                snprintf(msg, msglen, "operation %zu: cannot %s the whole document", k, opn);
                return HV_EINVAL;
            }
            rc = resolve(res, from, &f, msg, msglen);
            if (rc != HV_OK)
                return rc;
            src = ptr_get(&f);
            if (src == NULL && !(json_object_is_type(f.parent, json_type_object) &&
                                 json_object_object_get_ex(f.parent, f.key, NULL))) {
                snprintf(msg, msglen, "operation %zu: \"from\" %.100s does not exist", k, from);
                return HV_EINVAL;
            }
            if (strcmp(from, path) == 0 && strcmp(opn, "move") == 0)
                continue;
            if ((rc = deep_copy(src, &v)) != HV_OK)
                return rc;
            if (strcmp(opn, "move") == 0) {
                rc = ptr_remove(&f, msg, msglen);
                if (rc != HV_OK) {
                    json_object_put(v);
                    return rc;
                }
                /* The removal may have shifted the target's array: resolve again. */
                rc = resolve(res, path, &p, msg, msglen);
                if (rc != HV_OK) {
                    json_object_put(v);
                    return rc;
                }
            }
            rc = ptr_add(&p, v, msg, msglen);
        } else if (strcmp(opn, "test") == 0) {
            struct json_object *cur = ptr_get(&p);
            int exists = cur != NULL || (json_object_is_type(p.parent, json_type_object) &&
                                         json_object_object_get_ex(p.parent, p.key, NULL));
            if (!exists || !((cur == NULL && value == NULL) || (cur != NULL && value != NULL &&
                                                                 hv_fhir_json_equal(cur, value)))) {
                *test_failed = 1;
                snprintf(msg, msglen, "operation %zu: test of %.100s failed", k, path);
                return HV_EINVAL;
            }
            rc = HV_OK;
        } else {
            snprintf(msg, msglen, "operation %zu: unknown op \"%.40s\"", k, opn);
            return HV_EINVAL;
        }
        if (rc != HV_OK) {
            if (msg[0] == '\0')
                snprintf(msg, msglen, "operation %zu (%s) failed", k, opn);
            return rc;
        }
    }
    return HV_OK;
}

/* ---- FHIRPath Patch ---- */

/* Where a node sits: its container and key or index. */
typedef struct loc {
    struct json_object *parent;
    const char *key; /* object member, or NULL for an array */
    size_t idx;
} loc_t;

static int find_node(struct json_object *tree, struct json_object *node, loc_t *out, int depth)
{
    if (depth > 128)
        return 0;
    if (json_object_is_type(tree, json_type_object)) {
        json_object_object_foreach(tree, key, val)
        {
            if (val == node) {
                out->parent = tree;
                out->key = key;
                return 1;
            }
            if (val != NULL && find_node(val, node, out, depth + 1))
                return 1;
        }
    } else if (json_object_is_type(tree, json_type_array)) {
        size_t n = json_object_array_length(tree);
        for (size_t i = 0; i < n; i++) {
            struct json_object *val = json_object_array_get_idx(tree, i);
            if (val == node) {
                out->parent = tree;
                out->key = NULL;
                out->idx = i;
                return 1;
            }
            if (val != NULL && find_node(val, node, out, depth + 1))
                return 1;
        }
    }
    return 0;
}

static struct json_object *part(struct json_object *op, const char *name)
{
    struct json_object *parts = NULL;
    if (!json_object_object_get_ex(op, "part", &parts) || !json_object_is_type(parts, json_type_array))
        return NULL;
    for (size_t i = 0; i < json_object_array_length(parts); i++) {
        struct json_object *p = json_object_array_get_idx(parts, i);
        const char *n = hv_json_get_str(p, "name");
        if (n != NULL && strcmp(n, name) == 0)
            return p;
    }
    return NULL;
}

static const char *part_str(struct json_object *op, const char *name)
{
    struct json_object *p = part(op, name);
    if (p == NULL)
        return NULL;
    json_object_object_foreach(p, key, val)
    {
        if (strncmp(key, "value", 5) == 0 && json_object_is_type(val, json_type_string))
            return json_object_get_string(val);
    }
    return NULL;
}

static int part_int(struct json_object *op, const char *name, int64_t *out)
{
    struct json_object *p = part(op, name), *v = NULL;
    if (p == NULL || !json_object_object_get_ex(p, "valueInteger", &v) || !json_object_is_type(v, json_type_int))
        return HV_EINVAL;
    *out = json_object_get_int64(v);
    return HV_OK;
}

/* The value of an operation: value[x] of its "value" part, or an object built
 * from the value part's own parts (an anonymous type). Owned by the caller. */
static struct json_object *part_value(struct json_object *op, int depth)
{
    struct json_object *p = part(op, "value"), *out = NULL, *sub = NULL;
    if (p == NULL || depth > 16)
        return NULL;
    json_object_object_foreach(p, key, val)
    {
        if (strncmp(key, "value", 5) == 0 && key[5] >= 'A' && key[5] <= 'Z') {
            deep_copy(val, &out);
            return out;
        }
    }
    if (json_object_object_get_ex(p, "part", &sub) && json_object_is_type(sub, json_type_array)) {
        out = json_object_new_object();
        for (size_t i = 0; i < json_object_array_length(sub); i++) {
            struct json_object *sp = json_object_array_get_idx(sub, i), *v = NULL;
            const char *n = hv_json_get_str(sp, "name");
            if (n == NULL)
                continue;
            json_object_object_foreach(sp, k2, v2)
            {
                if (strncmp(k2, "value", 5) == 0 && k2[5] >= 'A' && k2[5] <= 'Z')
                    deep_copy(v2, &v);
            }
            if (v != NULL)
                hv_json_set(out, n, v);
        }
    }
    return out;
}

/* Evaluates path on res; fills up to max nodes. */
static int eval_nodes(struct json_object *res, const char *path, hv_arena_t *arena, struct json_object **nodes,
                      const char **types, size_t max, size_t *n, char *msg, size_t msglen)
{
    hv_fhirpath_t *fp = NULL;
    hv_fhirpath_result_t *r = NULL;
    hv_error_t err;
    int rc;
    hv_error_clear(&err);
    rc = hv_fhirpath_compile(path, 0, NULL, &fp, &err);
    if (rc == HV_OK)
        rc = hv_fhirpath_eval(fp, res, NULL, arena, &r, &err);
    if (rc != HV_OK) {
        snprintf(msg, msglen, "path \"%.100s\": %s", path, err.message);
        hv_fhirpath_free(fp);
        return HV_EINVAL;
    }
    *n = hv_fhirpath_result_count(r);
    for (size_t i = 0; i < *n && i < max; i++) {
        hv_fhirpath_item_t it;
        if (hv_fhirpath_result_item(r, i, &it) != HV_OK || it.kind != HV_FHIRPATH_NODE) {
            snprintf(msg, msglen, "path \"%.100s\" does not select elements of the resource", path);
            hv_fhirpath_free(fp);
            return HV_EINVAL;
        }
        nodes[i] = it.json;
        types[i] = it.type;
    }
    hv_fhirpath_free(fp);
    return HV_OK;
}

/* Whether element `name` of a value of FHIR type `type` (or of the element at `path`) repeats. */
static int repeats(const char *type, const char *path, const char *name)
{
    const hv_fhir_type_t *t = type != NULL ? hv_fhir_type_find(type, strlen(type)) : NULL;
    const hv_fhir_elem_t *owner = t != NULL ? hv_fhir_type_root(t) : NULL, *e = NULL;
    if (owner != NULL && strcmp(type, "BackboneElement") != 0)
        e = hv_fhir_elem_child(owner, name, strlen(name), NULL);
    if (e == NULL) {
        char full[512];
        snprintf(full, sizeof(full), "%s.%s", path, name);
        e = hv_fhir_elem_find(full);
        if (e == NULL) {
            /* The element's definition path: the path without its where()/first() parts. */
            const hv_fhir_elem_t *pe = hv_fhir_elem_find(path);
            if (pe != NULL)
                e = hv_fhir_elem_child(pe, name, strlen(name), NULL);
        }
    }
    return e != NULL && hv_fhir_elem_is_array(e);
}

#define FP_MAX_NODES 64

int hv__fhirpath_patch_apply(struct json_object *res, struct json_object *params, char *msg, size_t msglen)
{
    struct json_object *plist = NULL;
    hv_arena_t *arena = hv_arena_new(0);
    int rc = HV_OK;
    if (arena == NULL)
        return HV_ENOMEM;
    if (!json_object_object_get_ex(params, "parameter", &plist))
        goto out; /* no operation: nothing changes */
    if (!json_object_is_type(plist, json_type_array)) {
        snprintf(msg, msglen, "Parameters.parameter is not a list");
        rc = HV_EINVAL;
        goto out;
    }
    for (size_t k = 0; k < json_object_array_length(plist) && rc == HV_OK; k++) {
        struct json_object *op = json_object_array_get_idx(plist, k);
        const char *name = hv_json_get_str(op, "name");
        const char *type = part_str(op, "type"), *path = part_str(op, "path");
        struct json_object *nodes[FP_MAX_NODES];
        const char *types[FP_MAX_NODES];
        size_t n = 0;
        loc_t l;
        hv_arena_reset(arena);
        if (name == NULL || strcmp(name, "operation") != 0)
            continue;
        if (type == NULL || path == NULL) {
            snprintf(msg, msglen, "operation %zu needs a type and a path", k);
            rc = HV_EINVAL;
            break;
        }
        rc = eval_nodes(res, path, arena, nodes, types, FP_MAX_NODES, &n, msg, msglen);
        if (rc != HV_OK)
            break;
        memset(&l, 0, sizeof(l));
        if (strcmp(type, "add") == 0) {
            const char *el = part_str(op, "name");
            struct json_object *v = part_value(op, 0), *cur = NULL;
            if (el == NULL || v == NULL || n != 1 || !json_object_is_type(nodes[0], json_type_object)) {
                json_object_put(v);
                snprintf(msg, msglen, "operation %zu (add) needs a name, a value and a path to one element", k);
                rc = HV_EINVAL;
                break;
            }
            if (json_object_object_get_ex(nodes[0], el, &cur) && json_object_is_type(cur, json_type_array))
                rc = json_object_array_add(cur, v) == 0 ? HV_OK : HV_ENOMEM;
            else if (cur != NULL) {
                json_object_put(v);
                snprintf(msg, msglen, "operation %zu (add): %.60s has a value already", k, el);
                rc = HV_EINVAL;
            } else if (repeats(types[0], path, el)) {
                struct json_object *arr = json_object_new_array();
                json_object_array_add(arr, v);
                rc = hv_json_set(nodes[0], el, arr) == 0 ? HV_OK : HV_ENOMEM;
            } else {
                rc = hv_json_set(nodes[0], el, v) == 0 ? HV_OK : HV_ENOMEM;
            }
        } else if (strcmp(type, "delete") == 0) {
            if (n == 0)
                continue; /* fhirpatch.html: deleting nothing is not an error */
            if (n > 1 || !find_node(res, nodes[0], &l, 0)) {
                snprintf(msg, msglen, "operation %zu (delete): the path must select one element", k);
                rc = HV_EINVAL;
                break;
            }
            for (int up = 0; up < 64; up++) {
                struct json_object *container = l.parent;
                if (l.key != NULL)
                    json_object_object_del(container, l.key);
                else
                    json_object_array_del_idx(container, l.idx, 1);
                /* Empty objects and arrays are not valid FHIR JSON (json.html): a
                 * container the deletion emptied goes too, up to the resource. */
                if (container == res ||
                    (json_object_is_type(container, json_type_object) ? (size_t)json_object_object_length(container)
                                                                       : json_object_array_length(container)) > 0 ||
                    !find_node(res, container, &l, 0))
                    break;
            }
        } else if (strcmp(type, "replace") == 0) {
            struct json_object *v = part_value(op, 0);
            if (v == NULL || n != 1 || !find_node(res, nodes[0], &l, 0)) {
                json_object_put(v);
                snprintf(msg, msglen, "operation %zu (replace) needs a value and a path to one element", k);
                rc = HV_EINVAL;
                break;
            }
            if (l.key != NULL)
                rc = hv_json_set(l.parent, l.key, v) == 0 ? HV_OK : HV_ENOMEM;
            else
                rc = json_object_array_put_idx(l.parent, l.idx, v) == 0 ? HV_OK : HV_ENOMEM;
        } else if (strcmp(type, "insert") == 0 || strcmp(type, "move") == 0) {
            int64_t idx = 0, src = 0;
            int ins = strcmp(type, "insert") == 0;
            struct json_object *arr;
            if ((ins ? part_int(op, "index", &idx) : part_int(op, "destination", &idx)) != HV_OK ||
                (!ins && part_int(op, "source", &src) != HV_OK) || n == 0 ||
                !find_node(res, nodes[0], &l, 0) || l.key != NULL) {
                snprintf(msg, msglen, "operation %zu (%s) needs a path to a list and its index/source/destination",
                         k, type);
                rc = HV_EINVAL;
                break;
            }
            arr = l.parent;
            if (ins) {
                struct json_object *v = part_value(op, 0);
                if (v == NULL || idx < 0 || (size_t)idx > json_object_array_length(arr)) {
                    json_object_put(v);
                    snprintf(msg, msglen, "operation %zu (insert): index out of range", k);
                    rc = HV_EINVAL;
                    break;
                }
                rc = array_insert(arr, (size_t)idx, v);
            } else {
                size_t len = json_object_array_length(arr);
                struct json_object *v;
                if (src < 0 || idx < 0 || (size_t)src >= len || (size_t)idx >= len) {
                    snprintf(msg, msglen, "operation %zu (move): index out of range", k);
                    rc = HV_EINVAL;
                    break;
                }
                v = json_object_get(json_object_array_get_idx(arr, (size_t)src));
                json_object_array_del_idx(arr, (size_t)src, 1);
                rc = array_insert(arr, (size_t)idx, v);
            }
        } else {
            snprintf(msg, msglen, "operation %zu: unknown type \"%.40s\"", k, type);
            rc = HV_EINVAL;
        }
    }
out:
    hv_arena_free(arena);
    return rc;
}
