/*
 * fhirpath_ops.c — FHIRPath operators and the conversions under them:
 * primitive FHIR elements as System values (fhirpath.html#models), singleton
 * evaluation of collections (#singleton-evaluation-of-collections), types (#types,
 * is/as), equality and equivalence (#equality), comparison (#comparison), math
 * (#math), date/time arithmetic (#date-time-arithmetic), collections (| in contains)
 * and string concatenation (&).
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhirpath_int.h"
#include "terminology/ucum.h"

/* ------------------------------------------------------------------------- */
/* Primitive FHIR elements as System values                                  */
/* ------------------------------------------------------------------------- */

int hv__fp_prim(hv__fp_ctx_t *c, const hv__fp_item_t *it, hv__fp_item_t *out) {
    struct json_object *j;
    int cls = 0;
    (void)c;
    *out = *it;
    if (it->kind != HV__FP_NODE) return 1;
    j = it->u.n.j;
    if (j == NULL) return 0;
    cls = hv__fp_prim_class(it->u.n.t);
    if (cls == 0 && it->u.n.t == NULL) {
        switch (json_object_get_type(j)) {
        case json_type_boolean: cls = 'b'; break;
        case json_type_int: cls = 'i'; break;
        case json_type_double: cls = 'd'; break;
        case json_type_string: cls = 's'; break;
        default: return 0;
        }
    }
    switch (cls) {
    case 'b':
        if (!json_object_is_type(j, json_type_boolean)) return 0;
        out->kind = HV__FP_BOOL;
        out->u.b = json_object_get_boolean(j);
        return 1;
    case 'i':
        if (!json_object_is_type(j, json_type_int)) return 0;
        out->kind = HV__FP_INT;
        out->u.i = json_object_get_int64(j);
        return 1;
    case 'd': {
        const char *s = json_object_get_string(j);
        hv__fp_dec_t d;
        if (s == NULL || hv__fp_dec_parse(s, strlen(s), &d) != HV_OK) return 0;
        out->kind = HV__FP_DEC;
        out->u.d = d;
        return 1;
    }
    case 's':
        if (!json_object_is_type(j, json_type_string)) return 0;
        out->kind = HV__FP_STR;
        out->u.s.p = json_object_get_string(j);
        out->u.s.len = (size_t)json_object_get_string_len(j);
        return 1;
    case 'D':
    case 'T':
    case 't': {
        const char *s = json_object_get_string(j);
        size_t n = s != NULL ? strlen(s) : 0;
        int kind = cls == 't' ? HV__FP_TIME : HV__FP_DATETIME;
        if (s == NULL) return 0;
        if (hv__fp_dt_parse(s, n, kind, &out->u.dt) != HV_OK) return 0;
        out->kind = (uint8_t)(cls == 'D' ? HV__FP_DATE : kind);
        return 1;
    }
    default:
        return 0;
    }
}

int hv__fp_node_quantity(hv__fp_ctx_t *c, const hv__fp_item_t *it, hv__fp_item_t *out) {
    struct json_object *j = it->u.n.j, *v = NULL;
    const char *unit = NULL;
    hv__fp_dec_t d;
    if (it->kind != HV__FP_NODE || j == NULL || !json_object_is_type(j, json_type_object)) return 0;
    if (!hv__fp_is_quantity_type(it->u.n.t)) return 0;
    if (!hv_json_get_ex(j, "value", &v)) return 0;
    if (hv__fp_dec_parse(json_object_get_string(v), strlen(json_object_get_string(v)), &d) != HV_OK) return 0;
    unit = hv_json_get_str(j, "code");
    if (unit == NULL) unit = hv_json_get_str(j, "unit");
    if (unit == NULL) unit = "1";
    out->kind = HV__FP_QTY;
    out->u.q.v = d;
    out->u.q.unit = unit;
    (void)c;
    return 1;
}

/* An item as a System value where one exists: primitives and Quantity elements. */
static void value_of(hv__fp_ctx_t *c, const hv__fp_item_t *it, hv__fp_item_t *out) {
    if (it->kind != HV__FP_NODE) {
        *out = *it;
        return;
    }
    if (hv__fp_prim(c, it, out)) return;
    if (hv__fp_node_quantity(c, it, out)) return;
    *out = *it;
}

int hv__fp_singleton(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in,
                     hv__fp_item_t *out, int *present) {
    if (in->n == 0) {
        *present = 0;
        return HV_OK;
    }
    if (in->n > 1) return hv__fp_fail(c, n, HV_EINVAL, "expected a single item, got a collection of %zu", in->n);
    value_of(c, &in->v[0], out);
    *present = 1;
    return HV_OK;
}

int hv__fp_as_bool(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in, int *b) {
    hv__fp_item_t v;
    int present, rc = hv__fp_singleton(c, n, in, &v, &present);
    if (rc != HV_OK) return rc;
    if (!present) {
        *b = -1;
        return HV_OK;
    }
    /* A single non-Boolean item is true (fhirpath.html#singleton-evaluation-of-collections). */
    *b = v.kind == HV__FP_BOOL ? v.u.b : 1;
    return HV_OK;
}

int hv__fp_arg_str(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *focus, int ai,
                   const char **s, size_t *len, int *present) {
    hv__fp_coll_t r = {0};
    hv__fp_item_t v;
    int rc = hv__fp_eval_arg(c, n->args[ai], focus, &r);
    if (rc == HV_OK) rc = hv__fp_singleton(c, n, &r, &v, present);
    if (rc != HV_OK || !*present) return rc;
    if (v.kind != HV__FP_STR) return hv__fp_fail(c, n, HV_EINVAL, "argument %d of %s must be a String", ai + 1, n->name);
    *s = v.u.s.p;
    *len = v.u.s.len;
    return HV_OK;
}

int hv__fp_arg_int(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *focus, int ai,
                   int64_t *out, int *present) {
    hv__fp_coll_t r = {0};
    hv__fp_item_t v;
    int rc = hv__fp_eval_arg(c, n->args[ai], focus, &r);
    if (rc == HV_OK) rc = hv__fp_singleton(c, n, &r, &v, present);
    if (rc != HV_OK || !*present) return rc;
    if (v.kind != HV__FP_INT) return hv__fp_fail(c, n, HV_EINVAL, "argument %d of %s must be an Integer", ai + 1, n->name);
    *out = v.u.i;
    return HV_OK;
}

/* ------------------------------------------------------------------------- */
/* Types                                                                     */
/* ------------------------------------------------------------------------- */

const char *hv__fp_type_name(const hv__fp_item_t *it, const char **ns) {
    *ns = "System";
    switch (it->kind) {
    case HV__FP_NODE:
        *ns = "FHIR";
        return it->u.n.t != NULL ? hv_fhir_type_name(it->u.n.t) : "Element";
    case HV__FP_BOOL: return "Boolean";
    case HV__FP_INT: return "Integer";
    case HV__FP_DEC: return "Decimal";
    case HV__FP_STR: return "String";
    case HV__FP_DATE: return "Date";
    case HV__FP_DATETIME: return "DateTime";
    case HV__FP_TIME: return "Time";
    case HV__FP_QTY: return "Quantity";
    default: return "Any";
    }
}

int hv__fp_is_type(const hv__fp_item_t *it, const hv__fp_typeref_t *tr, int exact_prim) {
    if (tr->fhir == NULL && tr->sys == 0) return tr->ns == 'S' ? 0 : -1; /* System.Patient: never */
    if (it->kind == HV__FP_NODE) {
        const hv_fhir_type_t *t = it->u.n.t;
        if (tr->fhir == NULL || t == NULL) return 0;
        /* For as() and ofType() a primitive matches exactly — a code is not cast to a
         * string (the R4 suite's testFHIRPathAsFunction11) — while is() follows the
         * base chain (testFHIRPathIsFunction2, testTypeA4). */
        if (exact_prim && hv_fhir_type_kind(t) == HV_FHIR_KIND_PRIMITIVE) return t == tr->fhir;
        return hv_fhir_type_is(t, tr->fhir) ? 1 : 0;
    }
    if (tr->ns == 'F' || tr->sys == 0) return 0;
    return tr->sys == 15 || tr->sys == it->kind;
}

/* ------------------------------------------------------------------------- */
/* Equality, equivalence, comparison                                         */
/* ------------------------------------------------------------------------- */

static int is_num(int k) {
    return k == HV__FP_INT || k == HV__FP_DEC;
}

static hv__fp_dec_t num_dec(const hv__fp_item_t *v) {
    return v->kind == HV__FP_INT ? hv__fp_dec_from_int(v->u.i) : v->u.d;
}

/* Calendar-duration words and their UCUM definite-duration codes compare equal for
 * week and below (fhirpath.html#time-valued-quantities). */
static const char *unit_canon(const char *u, int *cal) {
    int ucum = 0;
    int k = hv__fp_cal_unit(u, &ucum);
    static const char *names[] = {"", "year", "month", "day", "hour", "minute", "second", "millisecond", "week"};
    *cal = 0;
    if (k == 0) return u;
    *cal = ucum ? 1 : 2;
    return names[k];
}

/* Milliseconds in a definite time unit (week and below), 0 for others. */
static int64_t time_unit_ms(const char *u) {
    int ucum;
    static const int64_t ms[] = {0, 0, 0, 86400000LL, 3600000LL, 60000LL, 1000LL, 1LL, 604800000LL};
    return ms[hv__fp_cal_unit(u, &ucum)];
}

/* 1 equal, 0 not, -1 incomparable (different dimensions or calendar vs UCUM year/month). */
static int qty_eq(const hv__fp_item_t *a, const hv__fp_item_t *b, int *cmp) {
    int ca = 0, cb = 0;
    const char *ua = unit_canon(a->u.q.unit, &ca), *ub = unit_canon(b->u.q.unit, &cb);
    int64_t ma = time_unit_ms(a->u.q.unit), mb = time_unit_ms(b->u.q.unit);
    if (strcmp(ua, ub) != 0 && ma != 0 && mb != 0) {
        /* Time units of week and below convert exactly (fhirpath.html#time-valued-quantities). */
        hv__fp_dec_t x, y;
        if (hv__fp_dec_mul(a->u.q.v, hv__fp_dec_from_int(ma), &x) != HV_OK ||
            hv__fp_dec_mul(b->u.q.v, hv__fp_dec_from_int(mb), &y) != HV_OK)
            return -1;
        *cmp = hv__fp_dec_cmp(x, y);
        return 1;
    }
    if (strcmp(ua, ub) != 0) {
        /* Other units compare through UCUM when commensurable (fhirpath.html#quantity-equality):
         * b is converted into a's unit. Calendar words are not UCUM units. */
        hv__fp_dec_t y;
        if (ca == 2 || cb == 2 || hv__fp_qty_convert(b, a->u.q.unit, &y) != HV_OK) return -1;
        *cmp = hv__fp_dec_cmp(a->u.q.v, y);
        return 1;
    }
    if (ca != cb && (strcmp(ua, "year") == 0 || strcmp(ua, "month") == 0)) return -1;
    *cmp = hv__fp_dec_cmp(a->u.q.v, b->u.q.v);
    return 1;
}

int hv__fp_qty_convert(const hv__fp_item_t *q, const char *unit, hv__fp_dec_t *out) {
    hv_error_t err;
    hv_ucum_t *u = hv_ucum_shared(&err);
    double v;
    if (u == NULL) return HV_ENOTSUP;
    if (hv_ucum_convert(u, hv__fp_dec_to_double(q->u.q.v), q->u.q.unit, unit, &v, &err) != HV_OK) return HV_EINVAL;
    return hv__fp_dec_from_double(v, out);
}

static int json_deep_eq(struct json_object *a, struct json_object *b) {
    return json_object_equal(a, b);
}

int hv__fp_item_eq(hv__fp_ctx_t *c, const hv__fp_item_t *a0, const hv__fp_item_t *b0) {
    hv__fp_item_t a, b;
    if (a0->kind == HV__FP_NODE && b0->kind == HV__FP_NODE) {
        const hv_fhir_type_t *ta = a0->u.n.t, *tb = b0->u.n.t;
        /* The same element is equal to itself; complex elements of different types never
         * are (fhirpath.html#equality compares them property by property), which spares the
         * deep comparison when union() de-duplicates a resource against its parts. */
        if (a0->u.n.j == b0->u.n.j && a0->u.n.ext == b0->u.n.ext) return 1;
        if (ta != NULL && tb != NULL && ta != tb && hv_fhir_type_kind(ta) != HV_FHIR_KIND_PRIMITIVE &&
            hv_fhir_type_kind(tb) != HV_FHIR_KIND_PRIMITIVE)
            return 0;
    }
    value_of(c, a0, &a);
    value_of(c, b0, &b);
    if (a.kind == HV__FP_NODE || b.kind == HV__FP_NODE) {
        if (a.kind != b.kind) return 0;
        if (a.u.n.j == NULL || b.u.n.j == NULL) return a.u.n.j == b.u.n.j && a.u.n.ext == b.u.n.ext;
        return json_deep_eq(a.u.n.j, b.u.n.j);
    }
    if (is_num(a.kind) && is_num(b.kind)) return hv__fp_dec_cmp(num_dec(&a), num_dec(&b)) == 0;
    if ((a.kind == HV__FP_DATE || a.kind == HV__FP_DATETIME) && (b.kind == HV__FP_DATE || b.kind == HV__FP_DATETIME)) {
        int r = 0;
        if (!hv__fp_dt_cmp(&a.u.dt, &b.u.dt, HV__FP_DATETIME, &r)) return -1;
        return r == 0;
    }
    if (a.kind != b.kind) return 0;
    switch (a.kind) {
    case HV__FP_BOOL: return a.u.b == b.u.b;
    case HV__FP_STR: return a.u.s.len == b.u.s.len && memcmp(a.u.s.p, b.u.s.p, a.u.s.len) == 0;
    case HV__FP_TIME: {
        int r = 0;
        if (!hv__fp_dt_cmp(&a.u.dt, &b.u.dt, HV__FP_TIME, &r)) return -1;
        return r == 0;
    }
    case HV__FP_QTY: {
        int r, e = qty_eq(&a, &b, &r);
        return e < 0 ? -1 : r == 0;
    }
    default: return 0;
    }
}

/* Strings are equivalent ignoring case and with whitespace runs as one space. */
static int str_equiv(const char *a, size_t an, const char *b, size_t bn) {
    size_t i = 0, j = 0;
    for (;;) {
        while (i < an && isspace((unsigned char)a[i]) && (i == 0 || i + 1 == an || isspace((unsigned char)a[i + 1]))) i++;
        while (j < bn && isspace((unsigned char)b[j]) && (j == 0 || j + 1 == bn || isspace((unsigned char)b[j + 1]))) j++;
        if (i >= an || j >= bn) break;
        {
            int ca = isspace((unsigned char)a[i]) ? ' ' : tolower((unsigned char)a[i]);
            int cb = isspace((unsigned char)b[j]) ? ' ' : tolower((unsigned char)b[j]);
            if (ca != cb) return 0;
        }
        i++;
        j++;
    }
    while (i < an && isspace((unsigned char)a[i])) i++;
    while (j < bn && isspace((unsigned char)b[j])) j++;
    return i >= an && j >= bn;
}

static int json_equiv(struct json_object *a, struct json_object *b);

int hv__fp_item_equiv(hv__fp_ctx_t *c, const hv__fp_item_t *a0, const hv__fp_item_t *b0) {
    hv__fp_item_t a, b;
    value_of(c, a0, &a);
    value_of(c, b0, &b);
    if (a.kind == HV__FP_NODE || b.kind == HV__FP_NODE) {
        if (a.kind != b.kind) return 0;
        if (a.u.n.j == NULL || b.u.n.j == NULL) return a.u.n.j == b.u.n.j;
        return json_equiv(a.u.n.j, b.u.n.j);
    }
    if (is_num(a.kind) && is_num(b.kind)) {
        /* Decimals are equivalent when equal at the precision of the less precise. */
        hv__fp_dec_t x = num_dec(&a), y = num_dec(&b);
        int s = x.s < y.s ? x.s : y.s;
        return hv__fp_dec_cmp(hv__fp_dec_round(x, s), hv__fp_dec_round(y, s)) == 0;
    }
    if ((a.kind == HV__FP_DATE || a.kind == HV__FP_DATETIME) && (b.kind == HV__FP_DATE || b.kind == HV__FP_DATETIME)) {
        int r = 0;
        if (!hv__fp_dt_cmp(&a.u.dt, &b.u.dt, HV__FP_DATETIME, &r)) return 0;
        return r == 0;
    }
    if (a.kind != b.kind) return 0;
    switch (a.kind) {
    case HV__FP_BOOL: return a.u.b == b.u.b;
    case HV__FP_STR: return str_equiv(a.u.s.p, a.u.s.len, b.u.s.p, b.u.s.len);
    case HV__FP_TIME: {
        int r = 0;
        if (!hv__fp_dt_cmp(&a.u.dt, &b.u.dt, HV__FP_TIME, &r)) return 0;
        return r == 0;
    }
    case HV__FP_QTY: {
        /* Equivalent when equal at the precision of the less precise value, after
         * converting b into a's unit. */
        int r = 0;
        hv__fp_item_t bb = b;
        if (qty_eq(&a, &b, &r) < 0) return 0;
        if (strcmp(a.u.q.unit, b.u.q.unit) != 0 && time_unit_ms(a.u.q.unit) == 0 &&
            hv__fp_qty_convert(&b, a.u.q.unit, &bb.u.q.v) != HV_OK)
            return 0;
        {
            int s = a.u.q.v.s < b.u.q.v.s ? a.u.q.v.s : b.u.q.v.s;
            if (bb.u.q.v.s < s) s = bb.u.q.v.s;
            if (time_unit_ms(a.u.q.unit) != 0) return r == 0;
            return hv__fp_dec_cmp(hv__fp_dec_round(a.u.q.v, s), hv__fp_dec_round(bb.u.q.v, s)) == 0;
        }
    }
    default: return 0;
    }
}

/* Equivalence of complex elements: every property equivalent, strings as above. */
static int json_equiv(struct json_object *a, struct json_object *b) {
    enum json_type ta = json_object_get_type(a), tb = json_object_get_type(b);
    if (ta == json_type_string && tb == json_type_string)
        return str_equiv(json_object_get_string(a), (size_t)json_object_get_string_len(a),
                         json_object_get_string(b), (size_t)json_object_get_string_len(b));
    if (ta == json_type_object && tb == json_type_object) {
        if (json_object_object_length(a) != json_object_object_length(b)) return 0;
        json_object_object_foreach(a, k, v) {
            struct json_object *w = NULL;
            if (strcmp(k, "id") == 0) continue;
            if (!hv_json_get_ex(b, k, &w) || !json_equiv(v, w)) return 0;
        }
        return 1;
    }
    if (ta == json_type_array && tb == json_type_array) {
        size_t n = json_object_array_length(a);
        if (n != json_object_array_length(b)) return 0;
        for (size_t i = 0; i < n; i++)
            if (!json_equiv(json_object_array_get_idx(a, i), json_object_array_get_idx(b, i))) return 0;
        return 1;
    }
    return json_object_equal(a, b);
}

int hv__fp_item_cmp(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_item_t *a0,
                    const hv__fp_item_t *b0, int *r) {
    hv__fp_item_t a, b;
    value_of(c, a0, &a);
    value_of(c, b0, &b);
    if (is_num(a.kind) && is_num(b.kind)) {
        *r = hv__fp_dec_cmp(num_dec(&a), num_dec(&b));
        return 1;
    }
    if (a.kind == HV__FP_STR && b.kind == HV__FP_STR) {
        size_t m = a.u.s.len < b.u.s.len ? a.u.s.len : b.u.s.len;
        int d = memcmp(a.u.s.p, b.u.s.p, m);
        *r = d != 0 ? d : (a.u.s.len < b.u.s.len ? -1 : a.u.s.len > b.u.s.len);
        return 1;
    }
    if ((a.kind == HV__FP_DATE || a.kind == HV__FP_DATETIME) && (b.kind == HV__FP_DATE || b.kind == HV__FP_DATETIME))
        return hv__fp_dt_cmp(&a.u.dt, &b.u.dt, HV__FP_DATETIME, r);
    if (a.kind == HV__FP_TIME && b.kind == HV__FP_TIME) return hv__fp_dt_cmp(&a.u.dt, &b.u.dt, HV__FP_TIME, r);
    if (a.kind == HV__FP_QTY && b.kind == HV__FP_QTY) {
        int e = qty_eq(&a, &b, r);
        if (e < 0) return hv__fp_fail(c, n, HV_EINVAL, "cannot compare quantities in '%s' and '%s'", a.u.q.unit, b.u.q.unit);
        return 1;
    }
    {
        const char *na = NULL, *nb = NULL;
        return hv__fp_fail(c, n, HV_EINVAL, "cannot compare %s with %s", hv__fp_type_name(&a, &na),
                           hv__fp_type_name(&b, &nb));
    }
}

/* ------------------------------------------------------------------------- */
/* Text                                                                      */
/* ------------------------------------------------------------------------- */

const char *hv__fp_to_string(hv__fp_ctx_t *c, const hv__fp_item_t *it0, size_t *len) {
    char buf[96];
    hv__fp_item_t it;
    const char *s = NULL;
    value_of(c, it0, &it);
    switch (it.kind) {
    case HV__FP_STR:
        *len = it.u.s.len;
        return it.u.s.p;
    case HV__FP_BOOL: s = it.u.b ? "true" : "false"; break;
    case HV__FP_INT: snprintf(buf, sizeof(buf), "%lld", (long long)it.u.i); s = buf; break;
    case HV__FP_DEC: hv__fp_dec_str(it.u.d, buf, sizeof(buf)); s = buf; break;
    case HV__FP_DATE:
    case HV__FP_DATETIME:
    case HV__FP_TIME:
        hv__fp_dt_str(&it.u.dt, it.kind, buf, sizeof(buf));
        s = buf;
        break;
    case HV__FP_QTY: {
        char num[64];
        int cal = 0;
        hv__fp_dec_str(it.u.q.v, num, sizeof(num));
        unit_canon(it.u.q.unit, &cal);
        if (cal == 2) snprintf(buf, sizeof(buf), "%s %s", num, it.u.q.unit);
        else snprintf(buf, sizeof(buf), "%s '%s'", num, it.u.q.unit);
        s = buf;
        break;
    }
    default:
        return NULL;
    }
    *len = strlen(s);
    return hv_arena_strndup(c->arena, s, *len);
}

/* ------------------------------------------------------------------------- */
/* Binary operators                                                          */
/* ------------------------------------------------------------------------- */

static int contains_item(hv__fp_ctx_t *c, const hv__fp_coll_t *coll, const hv__fp_item_t *it) {
    for (size_t i = 0; i < coll->n; i++)
        if (hv__fp_item_eq(c, &coll->v[i], it) == 1) return 1;
    return 0;
}

static int eq_coll(hv__fp_ctx_t *c, const hv__fp_coll_t *l, const hv__fp_coll_t *r, int equiv) {
    /* 1, 0, or -1 (empty result) */
    if (equiv) {
        if (l->n != r->n) return 0;
        for (size_t i = 0; i < l->n; i++) {
            int found = 0;
            for (size_t j = 0; j < r->n && !found; j++) found = hv__fp_item_equiv(c, &l->v[i], &r->v[j]);
            if (!found) return 0;
        }
        return 1;
    }
    if (l->n == 0 || r->n == 0) return -1;
    if (l->n != r->n) return 0;
    {
        int res = 1;
        for (size_t i = 0; i < l->n; i++) {
            int e = hv__fp_item_eq(c, &l->v[i], &r->v[i]);
            if (e == 0) return 0;
            if (e < 0) res = -1;
        }
        return res;
    }
}

static int unit_combine(hv__fp_ctx_t *c, const char *a, const char *b, int div, const char **out) {
    if (div && strcmp(a, b) == 0) *out = "1";
    else if (strcmp(b, "1") == 0) *out = a;
    else if (strcmp(a, "1") == 0 && !div) *out = b;
    else *out = hv_arena_sprintf(c->arena, div ? "%s/%s" : "%s.%s", a, b);
    return *out != NULL ? HV_OK : HV_ENOMEM;
}

static int arith(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_item_t *a, const hv__fp_item_t *b,
                 hv__fp_coll_t *out) {
    int op = n->op;
    hv__fp_item_t r;
    const char *na = NULL, *nb = NULL;
    memset(&r, 0, sizeof(r));
    if (op == HV__FP_N_ADD && a->kind == HV__FP_STR && b->kind == HV__FP_STR) {
        char *s = hv_arena_alloc(c->arena, a->u.s.len + b->u.s.len + 1);
        if (s == NULL) return HV_ENOMEM;
        memcpy(s, a->u.s.p, a->u.s.len);
        memcpy(s + a->u.s.len, b->u.s.p, b->u.s.len);
        s[a->u.s.len + b->u.s.len] = '\0';
        return hv__fp_push_str(c, out, s, a->u.s.len + b->u.s.len);
    }
    if (a->kind == HV__FP_INT && b->kind == HV__FP_INT && op != HV__FP_N_DIV) {
        int64_t x = a->u.i, y = b->u.i, v = 0;
        switch (op) {
        case HV__FP_N_ADD: if (__builtin_add_overflow(x, y, &v)) return HV_OK; break;
        case HV__FP_N_SUB: if (__builtin_sub_overflow(x, y, &v)) return HV_OK; break;
        case HV__FP_N_MUL: if (__builtin_mul_overflow(x, y, &v)) return HV_OK; break;
        case HV__FP_N_IDIV:
            if (y == 0 || (x == INT64_MIN && y == -1)) return HV_OK;
            v = x / y;
            break;
        case HV__FP_N_MOD:
            if (y == 0 || (x == INT64_MIN && y == -1)) return HV_OK;
            v = x % y;
            break;
        default: return HV_OK;
        }
        return hv__fp_push_int(c, out, v);
    }
    if (is_num(a->kind) && is_num(b->kind)) {
        hv__fp_dec_t x = num_dec(a), y = num_dec(b), v;
        int rc = HV_OK;
        switch (op) {
        case HV__FP_N_ADD: rc = hv__fp_dec_add(x, y, &v); break;
        case HV__FP_N_SUB: y.m = -y.m; rc = hv__fp_dec_add(x, y, &v); break;
        case HV__FP_N_MUL: rc = hv__fp_dec_mul(x, y, &v); break;
        case HV__FP_N_DIV:
            if (y.m == 0) return HV_OK; /* division by zero: empty */
            rc = hv__fp_dec_div(x, y, &v);
            break;
        case HV__FP_N_IDIV:
        case HV__FP_N_MOD: {
            hv__fp_dec_t q;
            if (y.m == 0) return HV_OK;
            rc = hv__fp_dec_div(x, y, &q);
            if (rc != HV_OK) break;
            q = hv__fp_dec_round(q, q.s); /* no-op; truncation below */
            while (q.s > 0) {
                q.m /= 10;
                q.s--;
            }
            if (op == HV__FP_N_IDIV) return hv__fp_push_int(c, out, q.m);
            rc = hv__fp_dec_mul(q, y, &q);
            if (rc == HV_OK) {
                q.m = -q.m;
                rc = hv__fp_dec_add(x, q, &v);
            }
            break;
        }
        default: return HV_OK;
        }
        if (rc != HV_OK) return HV_OK; /* overflow: empty */
        return hv__fp_push_dec(c, out, v);
    }
    if ((a->kind == HV__FP_DATE || a->kind == HV__FP_DATETIME || a->kind == HV__FP_TIME) && b->kind == HV__FP_QTY &&
        (op == HV__FP_N_ADD || op == HV__FP_N_SUB)) {
        int ucum, unit = hv__fp_cal_unit(b->u.q.unit, &ucum);
        hv__fp_dec_t v = b->u.q.v;
        int64_t amount = 0;
        if (unit == 0 || (ucum && (unit == 1 || unit == 2)))
            return hv__fp_fail(c, n, HV_EINVAL, "'%s' is not a calendar duration for date arithmetic", b->u.q.unit);
        while (v.s > 0) {
            v.m /= 10;
            v.s--;
        }
        amount = op == HV__FP_N_SUB ? -v.m : v.m;
        r = *a;
        if (a->kind == HV__FP_DATE && unit >= 4 && unit <= 7) {
            /* A Date only moves by whole days. */
            static const int64_t per_day[] = {0, 0, 0, 0, 24, 1440, 86400, 86400000};
            amount /= per_day[unit];
            unit = 3;
        }
        if (hv__fp_dt_add(&r.u.dt, a->kind, unit, amount) != HV_OK)
            return hv__fp_fail(c, n, HV_EINVAL, "invalid date/time arithmetic");
        return hv__fp_push(c, out, &r);
    }
    if (a->kind == HV__FP_QTY && b->kind == HV__FP_QTY) {
        int rc = HV_OK, cmpd = 0;
        r.kind = HV__FP_QTY;
        if (op == HV__FP_N_ADD || op == HV__FP_N_SUB) {
            hv__fp_dec_t y = b->u.q.v;
            if (qty_eq(a, b, &cmpd) < 0) return HV_OK;
            if (op == HV__FP_N_SUB) y.m = -y.m;
            rc = hv__fp_dec_add(a->u.q.v, y, &r.u.q.v);
            r.u.q.unit = a->u.q.unit;
        } else if (op == HV__FP_N_MUL) {
            rc = hv__fp_dec_mul(a->u.q.v, b->u.q.v, &r.u.q.v);
            if (rc == HV_OK) rc = unit_combine(c, a->u.q.unit, b->u.q.unit, 0, &r.u.q.unit);
        } else if (op == HV__FP_N_DIV) {
            if (b->u.q.v.m == 0) return HV_OK;
            rc = hv__fp_dec_div(a->u.q.v, b->u.q.v, &r.u.q.v);
            if (rc == HV_OK) rc = unit_combine(c, a->u.q.unit, b->u.q.unit, 1, &r.u.q.unit);
        } else {
            return HV_OK;
        }
        if (rc != HV_OK) return rc == HV_ENOMEM ? rc : HV_OK;
        return hv__fp_push(c, out, &r);
    }
    if ((a->kind == HV__FP_QTY && is_num(b->kind)) || (is_num(a->kind) && b->kind == HV__FP_QTY)) {
        const hv__fp_item_t *q = a->kind == HV__FP_QTY ? a : b, *k = a->kind == HV__FP_QTY ? b : a;
        int rc = 0;
        if (op == HV__FP_N_MUL) {
            rc = hv__fp_dec_mul(q->u.q.v, num_dec(k), &r.u.q.v);
        } else if (op == HV__FP_N_DIV && a->kind == HV__FP_QTY) {
            if (num_dec(b).m == 0) return HV_OK;
            rc = hv__fp_dec_div(q->u.q.v, num_dec(k), &r.u.q.v);
        } else {
            return hv__fp_fail(c, n, HV_EINVAL, "cannot apply this operator to a Quantity and a number");
        }
        if (rc != HV_OK) return HV_OK;
        r.kind = HV__FP_QTY;
        r.u.q.unit = q->u.q.unit;
        return hv__fp_push(c, out, &r);
    }
    return hv__fp_fail(c, n, HV_EINVAL, "cannot apply the operator to %s and %s", hv__fp_type_name(a, &na),
                       hv__fp_type_name(b, &nb));
}

int hv__fp_binop(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *l,
                 const hv__fp_coll_t *r, hv__fp_coll_t *out) {
    int rc = HV_OK;
    switch (n->op) {
    case HV__FP_N_UNION: {
        /* out may already hold items of an enclosing select(): de-duplicate apart. */
        hv__fp_coll_t u = {0};
        for (size_t i = 0; i < l->n && rc == HV_OK; i++)
            if (!contains_item(c, &u, &l->v[i])) rc = hv__fp_push(c, &u, &l->v[i]);
        for (size_t i = 0; i < r->n && rc == HV_OK; i++)
            if (!contains_item(c, &u, &r->v[i])) rc = hv__fp_push(c, &u, &r->v[i]);
        if (rc == HV_OK) rc = hv__fp_push_all(c, out, &u);
        return rc;
    }
    case HV__FP_N_EQ:
    case HV__FP_N_NE: {
        int e = eq_coll(c, l, r, 0);
        if (e < 0) return HV_OK;
        return hv__fp_push_bool(c, out, n->op == HV__FP_N_EQ ? e : !e);
    }
    case HV__FP_N_EQUIV:
    case HV__FP_N_NEQUIV: {
        int e = eq_coll(c, l, r, 1);
        return hv__fp_push_bool(c, out, n->op == HV__FP_N_EQUIV ? e : !e);
    }
    case HV__FP_N_IN:
    case HV__FP_N_CONTAINS: {
        const hv__fp_coll_t *elem = n->op == HV__FP_N_IN ? l : r, *coll = n->op == HV__FP_N_IN ? r : l;
        if (elem->n == 0) return HV_OK;
        if (elem->n > 1) return hv__fp_fail(c, n, HV_EINVAL, "'%s' needs a single item", n->op == HV__FP_N_IN ? "in" : "contains");
        return hv__fp_push_bool(c, out, contains_item(c, coll, &elem->v[0]));
    }
    case HV__FP_N_CONCAT: {
        hv__fp_item_t a, b;
        int pa = 0, pb = 0;
        hv_buf_t buf;
        const char *sa = "", *sb = "";
        size_t la = 0, lb = 0;
        char *s;
        rc = hv__fp_singleton(c, n, l, &a, &pa);
        if (rc == HV_OK) rc = hv__fp_singleton(c, n, r, &b, &pb);
        if (rc != HV_OK) return rc;
        if (pa) {
            if (a.kind != HV__FP_STR) return hv__fp_fail(c, n, HV_EINVAL, "'&' needs strings");
            sa = a.u.s.p;
            la = a.u.s.len;
        }
        if (pb) {
            if (b.kind != HV__FP_STR) return hv__fp_fail(c, n, HV_EINVAL, "'&' needs strings");
            sb = b.u.s.p;
            lb = b.u.s.len;
        }
        (void)buf;
        s = hv_arena_alloc(c->arena, la + lb + 1);
        if (s == NULL) return HV_ENOMEM;
        memcpy(s, sa, la);
        memcpy(s + la, sb, lb);
        s[la + lb] = '\0';
        return hv__fp_push_str(c, out, s, la + lb);
    }
    case HV__FP_N_LT:
    case HV__FP_N_GT:
    case HV__FP_N_LE:
    case HV__FP_N_GE: {
        hv__fp_item_t a, b;
        int pa = 0, pb = 0, cmp = 0, ok = 0;
        rc = hv__fp_singleton(c, n, l, &a, &pa);
        if (rc == HV_OK) rc = hv__fp_singleton(c, n, r, &b, &pb);
        if (rc != HV_OK || !pa || !pb) return rc;
        ok = hv__fp_item_cmp(c, n, &a, &b, &cmp);
        if (ok < 0) return ok;
        if (ok == 0) return HV_OK;
        switch (n->op) {
        case HV__FP_N_LT: return hv__fp_push_bool(c, out, cmp < 0);
        case HV__FP_N_GT: return hv__fp_push_bool(c, out, cmp > 0);
        case HV__FP_N_LE: return hv__fp_push_bool(c, out, cmp <= 0);
        default: return hv__fp_push_bool(c, out, cmp >= 0);
        }
    }
    default: {
        hv__fp_item_t a, b;
        int pa = 0, pb = 0;
        rc = hv__fp_singleton(c, n, l, &a, &pa);
        if (rc == HV_OK) rc = hv__fp_singleton(c, n, r, &b, &pb);
        if (rc != HV_OK || !pa || !pb) return rc;
        return arith(c, n, &a, &b, out);
    }
    }
}
