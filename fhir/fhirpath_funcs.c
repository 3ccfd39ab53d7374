/*
 * fhirpath_funcs.c — the FHIRPath function library, part 1 (fhirpath.html#functions):
 * existence, filtering and projection, subsetting, combining, tree navigation,
 * aggregates, utility (trace, now, today, timeOfDay, iif, sort), types (is, as,
 * ofType, type), and the FHIR additions of FHIR R4 fhirpath.html#functions
 * (extension, hasValue, getValue, resolve, memberOf, conformsTo, htmlChecks).
 * String, math and conversion functions are in fhirpath_strfn.c. The table of all
 * functions, with their arities, closes this file.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fhir/fhirpath_int.h"

#define FN(name) static int fn_##name(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in, hv__fp_coll_t *out)

/* Evaluates the criterion argument for item i; *b is 1, 0 or -1 (empty). */
static int crit(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in, size_t i, int ai, int *b) {
    hv__fp_coll_t r = {0};
    int rc = hv__fp_eval_with_this(c, n->args[ai], &in->v[i], (int64_t)i, &r);
    if (rc != HV_OK) return rc;
    return hv__fp_as_bool(c, n, &r, b);
}

static int contains_item(hv__fp_ctx_t *c, const hv__fp_coll_t *coll, const hv__fp_item_t *it) {
    for (size_t i = 0; i < coll->n; i++)
        if (hv__fp_item_eq(c, &coll->v[i], it) == 1) return 1;
    return 0;
}

/* ---- existence (fhirpath.html#existence) ---- */

FN(empty) {
    (void)n;
    return hv__fp_push_bool(c, out, in->n == 0);
}

FN(exists) {
    if (n->nargs == 0) return hv__fp_push_bool(c, out, in->n > 0);
    for (size_t i = 0; i < in->n; i++) {
        int b, rc = crit(c, n, in, i, 0, &b);
        if (rc != HV_OK) return rc;
        if (b == 1) return hv__fp_push_bool(c, out, 1);
    }
    return hv__fp_push_bool(c, out, 0);
}

FN(all) {
    for (size_t i = 0; i < in->n; i++) {
        int b, rc = crit(c, n, in, i, 0, &b);
        if (rc != HV_OK) return rc;
        if (b != 1) return hv__fp_push_bool(c, out, 0);
    }
    return hv__fp_push_bool(c, out, 1);
}

/* allTrue, anyTrue, allFalse, anyFalse: want is the value looked for, any selects the quantifier. */
static int bool_quant(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in, hv__fp_coll_t *out,
                      int want, int any) {
    for (size_t i = 0; i < in->n; i++) {
        hv__fp_item_t v;
        hv__fp_prim(c, &in->v[i], &v);
        if (v.kind != HV__FP_BOOL) return hv__fp_fail(c, n, HV_EINVAL, "%s() needs Boolean items", n->name);
        if (any && v.u.b == want) return hv__fp_push_bool(c, out, 1);
        if (!any && v.u.b != want) return hv__fp_push_bool(c, out, 0);
    }
    return hv__fp_push_bool(c, out, !any);
}
FN(allTrue) { return bool_quant(c, n, in, out, 1, 0); }
FN(anyTrue) { return bool_quant(c, n, in, out, 1, 1); }
FN(allFalse) { return bool_quant(c, n, in, out, 0, 0); }
FN(anyFalse) { return bool_quant(c, n, in, out, 0, 1); }

FN(subsetOf) {
    hv__fp_coll_t other = {0};
    int rc = hv__fp_eval_arg(c, n->args[0], in, &other);
    if (rc != HV_OK) return rc;
    for (size_t i = 0; i < in->n; i++)
        if (!contains_item(c, &other, &in->v[i])) return hv__fp_push_bool(c, out, 0);
    return hv__fp_push_bool(c, out, 1);
}

FN(supersetOf) {
    hv__fp_coll_t other = {0};
    int rc = hv__fp_eval_arg(c, n->args[0], in, &other);
    if (rc != HV_OK) return rc;
    for (size_t i = 0; i < other.n; i++)
        if (!contains_item(c, in, &other.v[i])) return hv__fp_push_bool(c, out, 0);
    return hv__fp_push_bool(c, out, 1);
}

FN(count) {
    (void)n;
    return hv__fp_push_int(c, out, (int64_t)in->n);
}

/* The functions that de-duplicate build apart from out, which may hold items of an
 * enclosing select(). */
FN(distinct) {
    hv__fp_coll_t u = {0};
    int rc = HV_OK;
    (void)n;
    for (size_t i = 0; i < in->n && rc == HV_OK; i++)
        if (!contains_item(c, &u, &in->v[i])) rc = hv__fp_push(c, &u, &in->v[i]);
    return rc == HV_OK ? hv__fp_push_all(c, out, &u) : rc;
}

FN(isDistinct) {
    hv__fp_coll_t d = {0};
    int rc = fn_distinct(c, n, in, &d);
    if (rc != HV_OK) return rc;
    return hv__fp_push_bool(c, out, d.n == in->n);
}

/* ---- filtering and projection (fhirpath.html#filtering-and-projection) ---- */

static int repeat_into(hv__fp_ctx_t *c, const hv__fp_node_t *n, hv__fp_coll_t *start, hv__fp_coll_t *out);

FN(where) {
    for (size_t i = 0; i < in->n; i++) {
        int b, rc = crit(c, n, in, i, 0, &b);
        if (rc == HV_OK && b == 1) rc = hv__fp_push(c, out, &in->v[i]);
        if (rc != HV_OK) return rc;
    }
    return HV_OK;
}

FN(select) {
    for (size_t i = 0; i < in->n; i++) {
        int rc = hv__fp_eval_with_this(c, n->args[0], &in->v[i], (int64_t)i, out);
        if (rc != HV_OK) return rc;
    }
    return HV_OK;
}

FN(repeat) {
    hv__fp_coll_t cur = *in, all = {0};
    int rc0 = repeat_into(c, n, &cur, &all);
    return rc0 == HV_OK ? hv__fp_push_all(c, out, &all) : rc0;
}

static int repeat_into(hv__fp_ctx_t *c, const hv__fp_node_t *n, hv__fp_coll_t *start, hv__fp_coll_t *out) {
    hv__fp_coll_t cur = *start;
    for (;;) {
        hv__fp_coll_t next = {0};
        for (size_t i = 0; i < cur.n; i++) {
            hv__fp_coll_t r = {0};
            int rc = hv__fp_eval_with_this(c, n->args[0], &cur.v[i], (int64_t)i, &r);
            if (rc != HV_OK) return rc;
            for (size_t j = 0; j < r.n; j++) {
                if (contains_item(c, out, &r.v[j])) continue;
                rc = hv__fp_push(c, out, &r.v[j]);
                if (rc == HV_OK) rc = hv__fp_push(c, &next, &r.v[j]);
                if (rc != HV_OK) return rc;
            }
        }
        if (next.n == 0) break;
        cur = next;
    }
    return HV_OK;
}

static int fn_is(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in, hv__fp_coll_t *out);

static int type_arg(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_item_t *it, int *is) {
    int t = hv__fp_is_type(it, &n->right->tref, hv__fp_funcs[n->fn].fn != fn_is);
    if (t < 0) return hv__fp_fail(c, n, HV_EINVAL, "unknown type '%s'", n->right->name);
    *is = t;
    return HV_OK;
}

FN(ofType) {
    for (size_t i = 0; i < in->n; i++) {
        int is = 0, rc = type_arg(c, n, &in->v[i], &is);
        if (rc == HV_OK && is) rc = hv__fp_push(c, out, &in->v[i]);
        if (rc != HV_OK) return rc;
    }
    return HV_OK;
}

FN(is) {
    int is = 0, rc = 0;
    if (in->n == 0) return HV_OK;
    if (in->n > 1) return hv__fp_fail(c, n, HV_EINVAL, "is() needs a single item, got %zu", in->n);
    rc = type_arg(c, n, &in->v[0], &is);
    return rc == HV_OK ? hv__fp_push_bool(c, out, is) : rc;
}

FN(as) {
    int is = 0, rc = 0;
    if (in->n == 0) return HV_OK;
    if (in->n > 1) return hv__fp_fail(c, n, HV_EINVAL, "as() needs a single item, got %zu", in->n);
    rc = type_arg(c, n, &in->v[0], &is);
    if (rc == HV_OK && is) rc = hv__fp_push(c, out, &in->v[0]);
    return rc;
}

static void put_json(void *p) {
    json_object_put(p);
}

/* type(): a TypeInfo {namespace, name} (fhirpath.html#reflection), as a JSON element. */
FN(type) {
    (void)n;
    for (size_t i = 0; i < in->n; i++) {
        const char *ns, *name = hv__fp_type_name(&in->v[i], &ns);
        struct json_object *o = json_object_new_object();
        hv__fp_item_t it;
        int rc = 0;
        if (o == NULL || hv_arena_cleanup_add(c->arena, put_json, o) != HV_OK) {
            json_object_put(o);
            return HV_ENOMEM;
        }
        hv_json_set_str(o, "namespace", ns);
        hv_json_set_str(o, "name", name);
        hv__fp_make_node(&it, o, NULL, NULL, NULL);
        rc = hv__fp_push(c, out, &it);
        if (rc != HV_OK) return rc;
    }
    return HV_OK;
}

/* ---- subsetting (fhirpath.html#subsetting) ---- */

FN(single) {
    if (in->n > 1) return hv__fp_fail(c, n, HV_EINVAL, "single() on a collection of %zu items", in->n);
    return hv__fp_push_all(c, out, in);
}

FN(first) {
    (void)n;
    return in->n > 0 ? hv__fp_push(c, out, &in->v[0]) : HV_OK;
}

FN(last) {
    (void)n;
    return in->n > 0 ? hv__fp_push(c, out, &in->v[in->n - 1]) : HV_OK;
}

FN(tail) {
    int rc = HV_OK;
    (void)n;
    for (size_t i = 1; i < in->n && rc == HV_OK; i++) rc = hv__fp_push(c, out, &in->v[i]);
    return rc;
}

FN(skip) {
    int64_t k = 0;
    int present, rc = hv__fp_arg_int(c, n, in, 0, &k, &present);
    if (rc != HV_OK || !present) return rc;
    for (size_t i = k < 0 ? 0 : (size_t)k; i < in->n && rc == HV_OK; i++) rc = hv__fp_push(c, out, &in->v[i]);
    return rc;
}

FN(take) {
    int64_t k = 0;
    int present, rc = hv__fp_arg_int(c, n, in, 0, &k, &present);
    if (rc != HV_OK || !present) return rc;
    for (size_t i = 0; (int64_t)i < k && i < in->n && rc == HV_OK; i++) rc = hv__fp_push(c, out, &in->v[i]);
    return rc;
}

FN(intersect) {
    hv__fp_coll_t other = {0}, u = {0};
    int rc = hv__fp_eval_arg(c, n->args[0], in, &other);
    for (size_t i = 0; i < in->n && rc == HV_OK; i++)
        if (contains_item(c, &other, &in->v[i]) && !contains_item(c, &u, &in->v[i])) rc = hv__fp_push(c, &u, &in->v[i]);
    return rc == HV_OK ? hv__fp_push_all(c, out, &u) : rc;
}

FN(exclude) {
    hv__fp_coll_t other = {0};
    int rc = hv__fp_eval_arg(c, n->args[0], in, &other);
    for (size_t i = 0; i < in->n && rc == HV_OK; i++)
        if (!contains_item(c, &other, &in->v[i])) rc = hv__fp_push(c, out, &in->v[i]);
    return rc;
}

/* ---- combining (fhirpath.html#combining) ---- */

FN(union) {
    hv__fp_coll_t other = {0}, u = {0};
    int rc = hv__fp_eval_arg(c, n->args[0], in, &other);
    for (size_t i = 0; i < in->n && rc == HV_OK; i++)
        if (!contains_item(c, &u, &in->v[i])) rc = hv__fp_push(c, &u, &in->v[i]);
    for (size_t i = 0; i < other.n && rc == HV_OK; i++)
        if (!contains_item(c, &u, &other.v[i])) rc = hv__fp_push(c, &u, &other.v[i]);
    return rc == HV_OK ? hv__fp_push_all(c, out, &u) : rc;
}

FN(combine) {
    hv__fp_coll_t other = {0};
    int rc = hv__fp_eval_arg(c, n->args[0], in, &other);
    if (rc == HV_OK) rc = hv__fp_push_all(c, out, in);
    if (rc == HV_OK) rc = hv__fp_push_all(c, out, &other);
    return rc;
}

/* ---- tree navigation (fhirpath.html#tree-navigation) ---- */

FN(children) {
    (void)n;
    for (size_t i = 0; i < in->n; i++) {
        int rc = hv__fp_all_children(c, &in->v[i], out);
        if (rc != HV_OK) return rc;
    }
    return HV_OK;
}

FN(descendants) {
    hv__fp_coll_t cur = *in;
    (void)n;
    while (cur.n > 0) {
        hv__fp_coll_t next = {0};
        for (size_t i = 0; i < cur.n; i++) {
            int rc = hv__fp_all_children(c, &cur.v[i], &next);
            if (rc != HV_OK) return rc;
        }
        if (hv__fp_push_all(c, out, &next) != HV_OK) return HV_ETOOBIG;
        cur = next;
    }
    return HV_OK;
}

/* ---- utility ---- */

FN(trace) {
    (void)n;
    return hv__fp_push_all(c, out, in);
}

static uint64_t now_ms(hv__fp_ctx_t *c) {
    if (c->now_ms == 0) c->now_ms = hv_now_ms();
    return c->now_ms;
}

/* now(), today(), timeOfDay() in local time, stable within one evaluation. */
static int push_now(hv__fp_ctx_t *c, hv__fp_coll_t *out, int kind) {
    uint64_t ms = now_ms(c);
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    hv__fp_item_t it;
    long off;
    localtime_r(&t, &tm);
    memset(&it, 0, sizeof(it));
    it.kind = (uint8_t)kind;
    it.u.dt.year = tm.tm_year + 1900;
    it.u.dt.month = (int8_t)(tm.tm_mon + 1);
    it.u.dt.day = (int8_t)tm.tm_mday;
    it.u.dt.hour = (int8_t)tm.tm_hour;
    it.u.dt.minute = (int8_t)tm.tm_min;
    it.u.dt.second = (int8_t)tm.tm_sec;
    it.u.dt.ms = (int16_t)(ms % 1000);
    off = tm.tm_gmtoff / 60;
    it.u.dt.tz = (int16_t)off;
    it.u.dt.has_tz = kind == HV__FP_DATETIME;
    it.u.dt.prec = kind == HV__FP_DATE ? HV__FP_P_DAY : HV__FP_P_MS;
    return hv__fp_push(c, out, &it);
}
FN(now) { (void)n; (void)in; return push_now(c, out, HV__FP_DATETIME); }
FN(today) { (void)n; (void)in; return push_now(c, out, HV__FP_DATE); }
FN(timeOfDay) { (void)n; (void)in; return push_now(c, out, HV__FP_TIME); }

FN(iif) {
    hv__fp_coll_t r = {0};
    int rc = 0, b = 0;
    hv__fp_item_t v;
    if (in->n > 1) return hv__fp_fail(c, n, HV_EINVAL, "iif() on a collection of %zu items", in->n);
    if (in->n == 1 && n->left != NULL) rc = hv__fp_eval_with_this(c, n->args[0], &in->v[0], 0, &r);
    else rc = hv__fp_eval_arg(c, n->args[0], in, &r);
    if (rc != HV_OK) return rc;
    if (r.n > 1) return hv__fp_fail(c, n, HV_EINVAL, "iif() criterion is a collection");
    b = 0;
    if (r.n == 1) {
        hv__fp_prim(c, &r.v[0], &v);
        if (v.kind != HV__FP_BOOL) return hv__fp_fail(c, n, HV_EINVAL, "iif() criterion is not a Boolean");
        b = v.u.b;
    }
    if (b) {
        if (in->n == 1 && n->left != NULL) return hv__fp_eval_with_this(c, n->args[1], &in->v[0], 0, out);
        return hv__fp_eval_arg(c, n->args[1], in, out);
    }
    if (n->nargs < 3) return HV_OK;
    if (in->n == 1 && n->left != NULL) return hv__fp_eval_with_this(c, n->args[2], &in->v[0], 0, out);
    return hv__fp_eval_arg(c, n->args[2], in, out);
}

FN(not) {
    int b, rc = hv__fp_as_bool(c, n, in, &b);
    if (rc != HV_OK || b < 0) return rc;
    return hv__fp_push_bool(c, out, !b);
}

FN(aggregate) {
    hv__fp_coll_t total = {0};
    hv__fp_coll_t *saved = c->total;
    int rc = HV_OK;
    if (n->nargs > 1) rc = hv__fp_eval_arg(c, n->args[1], in, &total);
    for (size_t i = 0; i < in->n && rc == HV_OK; i++) {
        hv__fp_coll_t next = {0};
        c->total = &total;
        rc = hv__fp_eval_with_this(c, n->args[0], &in->v[i], (int64_t)i, &next);
        total = next;
    }
    c->total = saved;
    if (rc == HV_OK) rc = hv__fp_push_all(c, out, &total);
    return rc;
}

/* sort(keys...): a stable insertion-free merge sort by the keys, a key written -expr
 * sorting descending (FHIRPath 2.1 sort). */
typedef struct sort_ent {
    hv__fp_item_t it;
    hv__fp_item_t *keys;
    uint8_t *has;
} sort_ent_t;

static int sort_cmp(hv__fp_ctx_t *c, const hv__fp_node_t *n, const sort_ent_t *a, const sort_ent_t *b, int nk,
                    const int *desc) {
    for (int k = 0; k < nk; k++) {
        int r = 0;
        if (!a->has[k] || !b->has[k]) {
            /* An item without the key sorts first in either direction. */
            r = a->has[k] - b->has[k];
            if (r != 0) return r;
        } else if (hv__fp_item_cmp(c, n, &a->keys[k], &b->keys[k], &r) != 1) {
            r = 0;
        }
        if (r != 0) return desc[k] ? -r : r;
    }
    return 0;
}

FN(sort) {
    int nk = n->nargs ? n->nargs : 1, rc = HV_OK;
    int desc[16] = {0};
    sort_ent_t *e, *tmp;
    if (in->n == 0) return HV_OK;
    e = hv_arena_calloc(c->arena, sizeof(*e) * in->n * 2);
    if (e == NULL) return HV_ENOMEM;
    tmp = e + in->n;
    for (size_t i = 0; i < in->n; i++) {
        e[i].it = in->v[i];
        e[i].keys = hv_arena_calloc(c->arena, sizeof(hv__fp_item_t) * (size_t)nk);
        e[i].has = hv_arena_calloc(c->arena, (size_t)nk);
        if (e[i].keys == NULL || e[i].has == NULL) return HV_ENOMEM;
        for (int k = 0; k < nk; k++) {
            hv__fp_coll_t r = {0};
            const hv__fp_node_t *a = n->nargs ? n->args[k] : NULL;
            if (a != NULL && a->op == HV__FP_N_NEG) {
                desc[k] = 1;
                a = a->left;
            }
            if (a == NULL) rc = hv__fp_push(c, &r, &in->v[i]);
            else rc = hv__fp_eval_with_this(c, a, &in->v[i], (int64_t)i, &r);
            if (rc != HV_OK) return rc;
            if (r.n > 0) {
                int present = 0;
                rc = hv__fp_singleton(c, n, &r, &e[i].keys[k], &present);
                if (rc != HV_OK) return rc;
                e[i].has[k] = 1;
            }
        }
    }
    /* bottom-up merge sort: stable */
    for (size_t w = 1; w < in->n; w *= 2) {
        for (size_t lo = 0; lo < in->n; lo += 2 * w) {
            size_t mid = lo + w < in->n ? lo + w : in->n, hi = lo + 2 * w < in->n ? lo + 2 * w : in->n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = sort_cmp(c, n, &e[j], &e[i], nk, desc) < 0 ? e[j++] : e[i++];
            while (i < mid) tmp[k++] = e[i++];
            while (j < hi) tmp[k++] = e[j++];
        }
        memcpy(e, tmp, sizeof(*e) * in->n);
    }
    for (size_t i = 0; i < in->n && rc == HV_OK; i++) rc = hv__fp_push(c, out, &e[i].it);
    return rc;
}

/* ---- FHIR additions (FHIR R4 fhirpath.html#functions) ---- */

FN(extension) {
    const char *url = NULL;
    size_t len = 0;
    int present, rc = hv__fp_arg_str(c, n, in, 0, &url, &len, &present);
    if (rc != HV_OK || !present) return rc;
    for (size_t i = 0; i < in->n; i++) {
        hv__fp_coll_t ext = {0};
        rc = hv__fp_children(c, NULL, &in->v[i], "extension", &ext);
        if (rc != HV_OK) return rc;
        for (size_t j = 0; j < ext.n; j++) {
            const char *u = ext.v[j].kind == HV__FP_NODE && ext.v[j].u.n.j != NULL ? hv_json_get_str(ext.v[j].u.n.j, "url") : NULL;
            if (u != NULL && strlen(u) == len && memcmp(u, url, len) == 0) {
                rc = hv__fp_push(c, out, &ext.v[j]);
                if (rc != HV_OK) return rc;
            }
        }
    }
    return HV_OK;
}

FN(hasValue) {
    hv__fp_item_t v;
    (void)n;
    if (in->n != 1) return hv__fp_push_bool(c, out, 0);
    return hv__fp_push_bool(c, out, in->v[0].kind != HV__FP_NODE || (hv__fp_prim(c, &in->v[0], &v) && v.kind != HV__FP_NODE));
}

FN(getValue) {
    hv__fp_item_t v;
    (void)n;
    if (in->n != 1) return HV_OK;
    if (in->v[0].kind != HV__FP_NODE) return hv__fp_push(c, out, &in->v[0]);
    if (hv__fp_prim(c, &in->v[0], &v) && v.kind != HV__FP_NODE) return hv__fp_push(c, out, &v);
    return HV_OK;
}

/* Finds the resource a reference names, among the contained resources of %resource and
 * the entries of %rootResource when it is a Bundle (FHIR R4 references.html#contained,
 * bundle.html#references). */
static struct json_object *find_ref(hv__fp_ctx_t *c, const char *ref) {
    struct json_object *res = c->resource.kind == HV__FP_NODE ? c->resource.u.n.j : NULL;
    struct json_object *root = c->root.kind == HV__FP_NODE ? c->root.u.n.j : NULL;
    struct json_object *arr = NULL;
    if (ref == NULL) return NULL;
    if (ref[0] == '#') {
        if (ref[1] == '\0') return res;
        if (res != NULL && json_object_object_get_ex(res, "contained", &arr) && json_object_is_type(arr, json_type_array)) {
            for (size_t i = 0; i < json_object_array_length(arr); i++) {
                struct json_object *r = json_object_array_get_idx(arr, i);
                const char *id = hv_json_get_str(r, "id");
                if (id != NULL && strcmp(id, ref + 1) == 0) return r;
            }
        }
        return NULL;
    }
    if (root != NULL && json_object_is_type(root, json_type_object) && json_object_object_get_ex(root, "entry", &arr) &&
        json_object_is_type(arr, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
            struct json_object *e = json_object_array_get_idx(arr, i), *r = NULL;
            const char *full = hv_json_get_str(e, "fullUrl"), *rt, *id;
            size_t fl, rl = strlen(ref);
            if (!json_object_object_get_ex(e, "resource", &r)) continue;
            if (full != NULL && strcmp(full, ref) == 0) return r;
            rt = hv_json_get_str(r, "resourceType");
            id = hv_json_get_str(r, "id");
            if (rt == NULL || id == NULL) continue;
            fl = strlen(rt) + 1 + strlen(id);
            /* "Type/id", possibly at the end of an absolute URL or followed by _history. */
            for (const char *p = ref; p != NULL && *p != '\0'; p = strchr(p + 1, '/')) {
                const char *s = *p == '/' ? p + 1 : p;
                if (strncmp(s, rt, strlen(rt)) == 0 && s[strlen(rt)] == '/' && strncmp(s + strlen(rt) + 1, id, strlen(id)) == 0 &&
                    (s[fl] == '\0' || strncmp(s + fl, "/_history", 9) == 0))
                    return r;
            }
            (void)rl;
        }
    }
    return NULL;
}

FN(resolve) {
    (void)n;
    for (size_t i = 0; i < in->n; i++) {
        const hv__fp_item_t *it = &in->v[i];
        const char *ref = NULL;
        struct json_object *r;
        if (it->kind == HV__FP_STR) ref = hv_arena_strndup(c->arena, it->u.s.p, it->u.s.len);
        else if (it->kind == HV__FP_NODE && it->u.n.j != NULL && json_object_is_type(it->u.n.j, json_type_object))
            ref = hv_json_get_str(it->u.n.j, "reference");
        else if (it->kind == HV__FP_NODE && it->u.n.j != NULL && json_object_is_type(it->u.n.j, json_type_string))
            ref = json_object_get_string(it->u.n.j);
        r = find_ref(c, ref);
        if (r != NULL) {
            hv__fp_item_t ri;
            int rc = 0;
            hv__fp_make_node(&ri, r, NULL, NULL, NULL);
            rc = hv__fp_push(c, out, &ri);
            if (rc != HV_OK) return rc;
        }
    }
    return HV_OK;
}

/* The process-wide provider (hv_fhirpath_set_member_provider): set and cleared by the
 * terminology module's init and free, while no evaluation runs. */
static hv_fhirpath_member_cb default_member;
static void *default_member_ud;

void hv_fhirpath_set_member_provider(hv_fhirpath_member_cb fn, void *ud) {
    default_member = fn;
    default_member_ud = ud;
}

/* memberOf(valueset): asks the terminology provider of the environment, else the
 * process-wide one; with none, or for an unknown value set, the result is empty
 * (FHIR R4 fhirpath.html#functions). */
FN(memberOf) {
    const char *vs = NULL;
    size_t len = 0;
    int present, rc = hv__fp_arg_str(c, n, in, 0, &vs, &len, &present);
    char *vsz;
    if (rc != HV_OK || !present || in->n != 1) return rc;
    hv_fhirpath_member_cb cb = c->env != NULL && c->env->member_of != NULL ? c->env->member_of : default_member;
    void *ud = c->env != NULL && c->env->member_of != NULL ? c->env->member_ud : default_member_ud;
    if (cb == NULL) return HV_OK;
    vsz = hv_arena_strndup(c->arena, vs, len);
    if (vsz == NULL) return HV_ENOMEM;
    {
        const hv__fp_item_t *it = &in->v[0];
        struct json_object *j = it->kind == HV__FP_NODE ? it->u.n.j : NULL;
        const char *t = it->kind == HV__FP_NODE && it->u.n.t != NULL ? hv_fhir_type_name(it->u.n.t) : NULL;
        int member = 0, any = 0, known = 1;
        if (it->kind == HV__FP_STR || (j != NULL && json_object_is_type(j, json_type_string))) {
            const char *code = it->kind == HV__FP_STR ? hv_arena_strndup(c->arena, it->u.s.p, it->u.s.len) : json_object_get_string(j);
            rc = cb(ud, vsz, NULL, code, &member);
            if (rc == HV_ENOTFOUND) return HV_OK;
            if (rc != HV_OK) return hv__fp_fail(c, n, rc, "memberOf: terminology provider failed");
            return hv__fp_push_bool(c, out, member);
        }
        if (j == NULL || !json_object_is_type(j, json_type_object)) return HV_OK;
        if (t != NULL && strcmp(t, "CodeableConcept") == 0) {
            struct json_object *codings = NULL;
            if (json_object_object_get_ex(j, "coding", &codings) && json_object_is_type(codings, json_type_array)) {
                for (size_t i = 0; i < json_object_array_length(codings) && !any; i++) {
                    struct json_object *cd = json_object_array_get_idx(codings, i);
                    rc = cb(ud, vsz, hv_json_get_str(cd, "system"),
                                           hv_json_get_str(cd, "code"), &member);
                    if (rc == HV_ENOTFOUND) known = 0;
                    else if (rc != HV_OK) return hv__fp_fail(c, n, rc, "memberOf: terminology provider failed");
                    else any = member;
                }
            }
        } else {
            rc = cb(ud, vsz, hv_json_get_str(j, "system"), hv_json_get_str(j, "code"), &any);
            if (rc == HV_ENOTFOUND) known = 0;
            else if (rc != HV_OK) return hv__fp_fail(c, n, rc, "memberOf: terminology provider failed");
        }
        if (!known && !any) return HV_OK;
        return hv__fp_push_bool(c, out, any);
    }
}

/* conformsTo(url): only the base definitions of the core specification are known. */
FN(conformsTo) {
    const char *url = NULL;
    size_t len = 0;
    static const char base[] = "http://hl7.org/fhir/StructureDefinition/";
    int present, rc = hv__fp_arg_str(c, n, in, 0, &url, &len, &present);
    if (rc != HV_OK || !present) return rc;
    if (len <= sizeof(base) - 1 || memcmp(url, base, sizeof(base) - 1) != 0)
        return hv__fp_fail(c, n, HV_ENOTSUP, "conformsTo: unknown profile");
    {
        hv__fp_typeref_t tr;
        memset(&tr, 0, sizeof(tr));
        tr.fhir = hv_fhir_type_find(url + sizeof(base) - 1, len - (sizeof(base) - 1));
        if (tr.fhir == NULL || hv_fhir_type_kind(tr.fhir) == HV_FHIR_KIND_SYSTEM)
            return hv__fp_fail(c, n, HV_ENOTSUP, "conformsTo: unknown profile");
        for (size_t i = 0; i < in->n; i++) {
            rc = hv__fp_push_bool(c, out, hv__fp_is_type(&in->v[i], &tr, 0) == 1);
            if (rc != HV_OK) return rc;
        }
    }
    return HV_OK;
}

/* htmlChecks(): the narrative rules of the XHTML type are checked by the validator. */
FN(htmlChecks) {
    (void)n;
    return in->n > 0 ? hv__fp_push_bool(c, out, 1) : HV_OK;
}

/* subsumes/subsumedBy need a terminology server: empty (FHIR R4 fhirpath.html#functions). */
FN(noterm) {
    (void)c; (void)n; (void)in; (void)out;
    return HV_OK;
}

/* ---- the table ---- */

const hv__fp_func_t hv__fp_funcs[] = {
    {"empty", 0, 0, fn_empty}, {"exists", 0, 1, fn_exists}, {"all", 1, 1, fn_all},
    {"allTrue", 0, 0, fn_allTrue}, {"anyTrue", 0, 0, fn_anyTrue}, {"allFalse", 0, 0, fn_allFalse},
    {"anyFalse", 0, 0, fn_anyFalse}, {"subsetOf", 1, 1, fn_subsetOf}, {"supersetOf", 1, 1, fn_supersetOf},
    {"count", 0, 0, fn_count}, {"distinct", 0, 0, fn_distinct}, {"isDistinct", 0, 0, fn_isDistinct},
    {"where", 1, 1, fn_where}, {"select", 1, 1, fn_select}, {"repeat", 1, 1, fn_repeat},
    {"ofType", 1, 1, fn_ofType}, {"is", 1, 1, fn_is}, {"as", 1, 1, fn_as}, {"type", 0, 0, fn_type},
    {"single", 0, 0, fn_single}, {"first", 0, 0, fn_first}, {"last", 0, 0, fn_last}, {"tail", 0, 0, fn_tail},
    {"skip", 1, 1, fn_skip}, {"take", 1, 1, fn_take}, {"intersect", 1, 1, fn_intersect},
    {"exclude", 1, 1, fn_exclude}, {"union", 1, 1, fn_union}, {"combine", 1, 1, fn_combine},
    {"children", 0, 0, fn_children}, {"descendants", 0, 0, fn_descendants}, {"trace", 1, 2, fn_trace},
    {"now", 0, 0, fn_now}, {"today", 0, 0, fn_today}, {"timeOfDay", 0, 0, fn_timeOfDay},
    {"iif", 2, 3, fn_iif}, {"not", 0, 0, fn_not}, {"aggregate", 1, 2, fn_aggregate}, {"sort", 0, 16, fn_sort},
    {"extension", 1, 1, fn_extension}, {"hasValue", 0, 0, fn_hasValue}, {"getValue", 0, 0, fn_getValue},
    {"resolve", 0, 0, fn_resolve}, {"memberOf", 1, 1, fn_memberOf}, {"conformsTo", 1, 1, fn_conformsTo},
    {"htmlChecks", 0, 0, fn_htmlChecks}, {"htmlchecks", 0, 0, fn_htmlChecks},
    {"subsumes", 1, 1, fn_noterm}, {"subsumedBy", 1, 1, fn_noterm},
    HV__FP_STRFN_TABLE
    {NULL, 0, 0, NULL}};

int hv__fp_func_find(const char *name) {
    for (int i = 0; hv__fp_funcs[i].name != NULL; i++)
        if (strcmp(hv__fp_funcs[i].name, name) == 0) return i;
    return -1;
}

int hv__fp_func_takes_type(int fi) {
    return hv__fp_funcs[fi].fn == fn_is || hv__fp_funcs[fi].fn == fn_as || hv__fp_funcs[fi].fn == fn_ofType;
}
