/*
 * ucum.c — UCUM canonical forms: their algebra, value conversion (including the
 * special units of UCUM §21 through their functions), canonical printing, display
 * names, and the bounded cache of parsed units. The parser is ucum_parse.c, the
 * essence loader ucum_load.c.
 *
 * Conversion (UCUM §§18-21): a value x of a ratio-scale unit is x * magnitude in
 * the base units. A special unit u defined as f(v U) (essence <function name=f
 * value=v Unit=U>) maps x to the ratio value r = f^-1(x * prefix) measured in v U,
 * that is r * magnitude in base units, magnitude being v times that of U. So
 * 37 Cel -> r = 37 + 273.15 -> 310.15 K, and 98.6 [degF] (degF(5 K/9)) ->
 * r = 98.6 + 459.67 Rankine -> 558.27 * 5/9 K = 310.15 K.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "terminology/ucum_int.h"

/* The printing order of the base units: the ASCII order of their codes. */
static const struct {
    int dim;
    const char *code;
} print_order[HV_UCUM_NDIM] = {
    {HV_UCUM_DIM_C, "C"}, {HV_UCUM_DIM_K, "K"},     {HV_UCUM_DIM_CD, "cd"}, {HV_UCUM_DIM_G, "g"},
    {HV_UCUM_DIM_M, "m"}, {HV_UCUM_DIM_RAD, "rad"}, {HV_UCUM_DIM_S, "s"},
};

void hv__ucum_unity(hv_ucum_canon_t *c) {
    memset(c, 0, sizeof *c);
    c->magnitude = 1.0;
}

static int magnitude_ok(double m) { return isfinite(m) && m != 0.0; }

static int mix_flags(const hv_ucum_canon_t *a, const hv_ucum_canon_t *b) {
    int special = (a->flags | b->flags) & (HV_UCUM_SPECIAL | HV_UCUM_SPECIAL_MIXED);
    return special ? HV_UCUM_SPECIAL_MIXED : 0;
}

int hv__ucum_combine(const hv_ucum_canon_t *a, const hv_ucum_canon_t *b, int sign,
                     hv_ucum_canon_t *out) {
    hv_ucum_canon_t r;
    size_t i = 0, j = 0;
    int d;
    hv__ucum_unity(&r);
    r.magnitude = sign > 0 ? a->magnitude * b->magnitude : a->magnitude / b->magnitude;
    if (!magnitude_ok(r.magnitude)) return HV_ETOOBIG;
    for (d = 0; d < HV_UCUM_NDIM; d++) {
        int v = a->dim[d] + sign * b->dim[d];
        if (v > INT16_MAX || v < INT16_MIN) return HV_ETOOBIG;
        r.dim[d] = (int16_t)v;
    }
    /* Merge the two sorted lists of arbitrary units, dropping zero exponents. */
    while (i < a->narb || j < b->narb) {
        uint16_t atom;
        int exp;
        if (j >= b->narb || (i < a->narb && a->arb[i].atom < b->arb[j].atom)) {
            atom = a->arb[i].atom;
            exp = a->arb[i++].exp;
        } else if (i >= a->narb || b->arb[j].atom < a->arb[i].atom) {
            atom = b->arb[j].atom;
            exp = sign * b->arb[j++].exp;
        } else {
            atom = a->arb[i].atom;
            exp = a->arb[i++].exp + sign * b->arb[j++].exp;
        }
        if (exp == 0) continue;
        if (exp > INT16_MAX || exp < INT16_MIN || r.narb >= HV_UCUM_MAX_ARB) return HV_ETOOBIG;
        r.arb[r.narb].atom = atom;
        r.arb[r.narb++].exp = (int16_t)exp;
    }
    if (r.narb > 0) r.flags |= HV_UCUM_ARBITRARY;
    r.flags |= (uint8_t)mix_flags(a, b);
    *out = r;
    return HV_OK;
}

int hv__ucum_power(const hv_ucum_canon_t *a, int exp, hv_ucum_canon_t *out) {
    hv_ucum_canon_t r = *a;
    int d;
    size_t i;
    r.magnitude = pow(a->magnitude, exp);
    if (!magnitude_ok(r.magnitude)) return HV_ETOOBIG;
    for (d = 0; d < HV_UCUM_NDIM; d++) {
        long v = (long)a->dim[d] * exp;
        if (v > INT16_MAX || v < INT16_MIN) return HV_ETOOBIG;
        r.dim[d] = (int16_t)v;
    }
    for (i = 0; i < r.narb; i++) {
        long v = (long)a->arb[i].exp * exp;
        if (v > INT16_MAX || v < INT16_MIN) return HV_ETOOBIG;
        r.arb[i].exp = (int16_t)v;
    }
    if (exp == 0) {
        r.narb = 0;
        r.flags &= (uint8_t)~HV_UCUM_ARBITRARY;
    }
    if ((r.flags & HV_UCUM_SPECIAL) && exp != 1) {
        r.flags = (uint8_t)((r.flags & ~HV_UCUM_SPECIAL) | HV_UCUM_SPECIAL_MIXED);
        r.special_fn = 0;
        r.special_scale = 0;
    }
    *out = r;
    return HV_OK;
}

int hv_ucum_canon_commensurable(const hv_ucum_canon_t *a, const hv_ucum_canon_t *b) {
    size_t i;
    if (memcmp(a->dim, b->dim, sizeof a->dim) != 0 || a->narb != b->narb) return 0;
    for (i = 0; i < a->narb; i++)
        if (a->arb[i].atom != b->arb[i].atom || a->arb[i].exp != b->arb[i].exp) return 0;
    return 1;
}

/* ---- special functions (UCUM §21, essence <function>) -------------------- */

/* r = f^-1(x): the ratio-scale value of special value x. */
static int special_to_ratio(int fn, double x, double *r) {
    switch (fn) {
    case HV__UCUM_FN_CEL: *r = x + 273.15; break;
    case HV__UCUM_FN_DEGF: *r = x + 459.67; break;  /* in 5/9 K: Rankine */
    case HV__UCUM_FN_DEGRE: *r = x + 218.52; break; /* in 5/4 K: 273.15 * 4/5 */
    case HV__UCUM_FN_TANTIMES100: *r = atan(x / 100.0); break;                /* rad */
    case HV__UCUM_FN_100TAN: *r = atan(x / 100.0) * 180.0 / M_PI; break;       /* deg */
    case HV__UCUM_FN_HPX: *r = pow(10.0, -x); break;
    case HV__UCUM_FN_HPC: *r = pow(100.0, -x); break;
    case HV__UCUM_FN_HPM: *r = pow(1000.0, -x); break;
    case HV__UCUM_FN_HPQ: *r = pow(50000.0, -x); break;
    case HV__UCUM_FN_PH: *r = pow(10.0, -x); break;
    case HV__UCUM_FN_LN: *r = exp(x); break;
    case HV__UCUM_FN_LG: *r = pow(10.0, x); break;
    case HV__UCUM_FN_LGTIMES2: *r = pow(10.0, x / 2.0); break;
    case HV__UCUM_FN_SQRT: *r = x * x; break;
    case HV__UCUM_FN_LD: *r = pow(2.0, x); break;
    default: return HV_ENOTSUP;
    }
    return isfinite(*r) ? HV_OK : HV_EINVAL;
}

/* x = f(r): the special value of ratio-scale value r. */
static int special_from_ratio(int fn, double r, double *x) {
    int logfn = fn == HV__UCUM_FN_HPX || fn == HV__UCUM_FN_HPC || fn == HV__UCUM_FN_HPM ||
                fn == HV__UCUM_FN_HPQ || fn == HV__UCUM_FN_PH || fn == HV__UCUM_FN_LN ||
                fn == HV__UCUM_FN_LG || fn == HV__UCUM_FN_LGTIMES2 || fn == HV__UCUM_FN_LD;
    if (logfn && !(r > 0)) return HV_EINVAL;
    if (fn == HV__UCUM_FN_SQRT && r < 0) return HV_EINVAL;
    switch (fn) {
    case HV__UCUM_FN_CEL: *x = r - 273.15; break;
    case HV__UCUM_FN_DEGF: *x = r - 459.67; break;
    case HV__UCUM_FN_DEGRE: *x = r - 218.52; break;
    case HV__UCUM_FN_TANTIMES100: *x = 100.0 * tan(r); break;
    case HV__UCUM_FN_100TAN: *x = 100.0 * tan(r * M_PI / 180.0); break;
    case HV__UCUM_FN_HPX: *x = -log10(r); break;
    case HV__UCUM_FN_HPC: *x = -log(r) / log(100.0); break;
    case HV__UCUM_FN_HPM: *x = -log(r) / log(1000.0); break;
    case HV__UCUM_FN_HPQ: *x = -log(r) / log(50000.0); break;
    case HV__UCUM_FN_PH: *x = -log10(r); break;
    case HV__UCUM_FN_LN: *x = log(r); break;
    case HV__UCUM_FN_LG: *x = log10(r); break;
    case HV__UCUM_FN_LGTIMES2: *x = 2.0 * log10(r); break;
    case HV__UCUM_FN_SQRT: *x = sqrt(r); break;
    case HV__UCUM_FN_LD: *x = log2(r); break;
    default: return HV_ENOTSUP;
    }
    return isfinite(*x) ? HV_OK : HV_EINVAL;
}

/* The value of x (in unit c) in canonical base units. */
static int to_canonical(const hv_ucum_canon_t *c, double x, double *out, hv_error_t *err) {
    double r;
    if (c->flags & HV_UCUM_SPECIAL_MIXED) {
        hv_error_set(err, HV_ENOTSUP, NULL,
                     "a special unit (on a non-ratio scale, such as Cel) combined with other "
                     "terms or an exponent has no defined conversion");
        return HV_ENOTSUP;
    }
    if (c->flags & HV_UCUM_SPECIAL) {
        if (special_to_ratio(c->special_fn, x * c->special_scale, &r) != HV_OK) {
            hv_error_set(err, HV_EINVAL, NULL, "the value %g is outside the special unit's scale", x);
            return HV_EINVAL;
        }
        *out = r * c->magnitude;
    } else {
        *out = x * c->magnitude;
    }
    if (!isfinite(*out)) {
        hv_error_set(err, HV_EINVAL, NULL, "the converted value is out of range");
        return HV_EINVAL;
    }
    return HV_OK;
}

static int from_canonical(const hv_ucum_canon_t *c, double v, double *out, hv_error_t *err) {
    double x;
    if (c->flags & HV_UCUM_SPECIAL_MIXED) return to_canonical(c, 0, &x, err);
    if (c->flags & HV_UCUM_SPECIAL) {
        if (special_from_ratio(c->special_fn, v / c->magnitude, &x) != HV_OK) {
            hv_error_set(err, HV_EINVAL, NULL,
                         "the value is outside the domain of the target unit's function");
            return HV_EINVAL;
        }
        x /= c->special_scale;
    } else {
        x = v / c->magnitude;
    }
    if (!isfinite(x)) {
        hv_error_set(err, HV_EINVAL, NULL, "the converted value is out of range");
        return HV_EINVAL;
    }
    *out = x;
    return HV_OK;
}

int hv_ucum_canon_convert(const hv_ucum_canon_t *from, double value, const hv_ucum_canon_t *to,
                          double *out, hv_error_t *err) {
    double c = 0, x = 0;
    int rc;
    if (!hv_ucum_canon_commensurable(from, to)) {
        hv_error_set(err, HV_EINVAL, NULL, "the units are not commensurable");
        return HV_EINVAL;
    }
    rc = to_canonical(from, value, &c, err);
    if (rc == HV_OK) rc = from_canonical(to, c, &x, err);
    if (rc == HV_OK) *out = x;
    return rc;
}

/* ---- the cache and the string API ---------------------------------------- */

int hv_ucum_parse(hv_ucum_t *u, const char *unit, hv_ucum_canon_t *out, hv_error_t *err) {
    size_t n;
    uint64_t h;
    hv__ucum_slot_t *slot;
    hv_ucum_canon_t c;
    int rc;
    if (unit == NULL) {
        hv_error_set(err, HV_EINVAL, NULL, "no unit given");
        return HV_EINVAL;
    }
    n = strlen(unit);
    if (n >= HV__UCUM_CACHE_KEY) return hv__ucum_parse(u, unit, n, out, NULL, err);
    h = hv__ucum_hash(unit, n);
    slot = &u->cache[h & u->cache_mask];
    uv_mutex_lock(&u->cache_lock);
    if (slot->hash == h && memcmp(slot->key, unit, n + 1) == 0) {
        c = slot->canon;
        u->hits++;
        uv_mutex_unlock(&u->cache_lock);
        *out = c;
        return HV_OK;
    }
    u->misses++;
    uv_mutex_unlock(&u->cache_lock);
    rc = hv__ucum_parse(u, unit, n, &c, NULL, err);
    if (rc != HV_OK) return rc;
    uv_mutex_lock(&u->cache_lock);
    slot->hash = h;
    memcpy(slot->key, unit, n + 1);
    slot->canon = c;
    uv_mutex_unlock(&u->cache_lock);
    *out = c;
    return HV_OK;
}

void hv_ucum_cache_stats(hv_ucum_t *u, uint64_t *hits, uint64_t *misses) {
    uv_mutex_lock(&u->cache_lock);
    if (hits != NULL) *hits = u->hits;
    if (misses != NULL) *misses = u->misses;
    uv_mutex_unlock(&u->cache_lock);
}

int hv_ucum_validate(hv_ucum_t *u, const char *unit, hv_error_t *err) {
    hv_ucum_canon_t c;
    return hv_ucum_parse(u, unit, &c, err);
}

int hv_ucum_commensurable(hv_ucum_t *u, const char *from, const char *to, hv_error_t *err) {
    hv_ucum_canon_t a, b;
    int rc = hv_ucum_parse(u, from, &a, err);
    if (rc == HV_OK) rc = hv_ucum_parse(u, to, &b, err);
    if (rc != HV_OK) return rc;
    return hv_ucum_canon_commensurable(&a, &b);
}

int hv_ucum_canon_print(const hv_ucum_t *u, const hv_ucum_canon_t *c, char *out, size_t outlen) {
    size_t len = 0, i;
    int k;
    if (outlen == 0) return HV_ETOOBIG;
    out[0] = '\0';
    for (k = 0; k < HV_UCUM_NDIM + HV_UCUM_MAX_ARB; k++) {
        const char *code;
        int exp, w;
        if (k < HV_UCUM_NDIM) {
            code = print_order[k].code;
            exp = c->dim[print_order[k].dim];
        } else {
            i = (size_t)(k - HV_UCUM_NDIM);
            if (i >= c->narb || c->arb[i].atom >= u->natoms) continue;
            code = u->atoms[c->arb[i].atom].code;
            exp = c->arb[i].exp;
        }
        if (exp == 0) continue;
        /* "." between terms, the code, the exponent unless 1 — what snprintf's
         * "%s%s%d" wrote, without its ~950 instructions a term: the search index
         * prints the canonical unit of every quantity it indexes. */
        {
            char digits[24], *d = digits + sizeof(digits);
            size_t cl = strlen(code), dl;
            if (exp != 1) {
                d = hv_u64_digits(exp < 0 ? 0ull - (uint64_t)exp : (uint64_t)exp, d);
                if (exp < 0) *--d = '-';
            }
            dl = (size_t)(digits + sizeof(digits) - d);
            w = (int)((len ? 1 : 0) + cl + dl);
            if ((size_t)w >= outlen - len) return HV_ETOOBIG;
            if (len) out[len++] = '.';
            memcpy(out + len, code, cl);
            memcpy(out + len + cl, d, dl);
            len += cl + dl;
            out[len] = '\0';
        }
    }
    if (len == 0) {
        if (outlen < 2) return HV_ETOOBIG;
        memcpy(out, "1", 2);
    }
    return HV_OK;
}

/* Rewrites a canon_convert error in terms of the two unit strings. */
static void explain(hv_ucum_t *u, const char *from, const hv_ucum_canon_t *a, const char *to,
                    const hv_ucum_canon_t *b, hv_error_t *err) {
    char pa[128], pb[128];
    if (err == NULL || err->code != HV_EINVAL || hv_ucum_canon_commensurable(a, b)) return;
    if (hv_ucum_canon_print(u, a, pa, sizeof pa) != HV_OK) snprintf(pa, sizeof pa, "?");
    if (hv_ucum_canon_print(u, b, pb, sizeof pb) != HV_OK) snprintf(pb, sizeof pb, "?");
    hv_error_set(err, HV_EINVAL, NULL, "cannot convert '%.100s' (%s) to '%.100s' (%s): not commensurable",
                 from, pa, to, pb);
}

int hv_ucum_convert(hv_ucum_t *u, double value, const char *from, const char *to, double *out,
                    hv_error_t *err) {
    hv_ucum_canon_t a, b;
    int rc = hv_ucum_parse(u, from, &a, err);
    if (rc == HV_OK) rc = hv_ucum_parse(u, to, &b, err);
    if (rc != HV_OK) return rc;
    rc = hv_ucum_canon_convert(&a, value, &b, out, err);
    if (rc != HV_OK) explain(u, from, &a, to, &b, err);
    return rc;
}

int hv_ucum_canonicalize(hv_ucum_t *u, double value, const char *unit, double *value_out,
                         char *canonical_unit, size_t unit_len, hv_error_t *err) {
    hv_ucum_canon_t c;
    double v;
    int rc = hv_ucum_parse(u, unit, &c, err);
    if (rc == HV_OK) rc = to_canonical(&c, value, &v, err);
    if (rc == HV_OK && canonical_unit != NULL) {
        rc = hv_ucum_canon_print(u, &c, canonical_unit, unit_len);
        if (rc != HV_OK) hv_error_set(err, rc, NULL, "the canonical unit does not fit the buffer");
    }
    if (rc == HV_OK) *value_out = v;
    return rc;
}

int hv_ucum_canon_mul(const hv_ucum_canon_t *a, const hv_ucum_canon_t *b, hv_ucum_canon_t *out) {
    if (mix_flags(a, b)) return HV_ENOTSUP;
    return hv__ucum_combine(a, b, 1, out);
}

int hv_ucum_canon_div(const hv_ucum_canon_t *a, const hv_ucum_canon_t *b, hv_ucum_canon_t *out) {
    if (mix_flags(a, b)) return HV_ENOTSUP;
    return hv__ucum_combine(a, b, -1, out);
}

int hv_ucum_display_name(hv_ucum_t *u, const char *unit, hv_buf_t *out, hv_error_t *err) {
    hv_ucum_canon_t c;
    size_t mark = out->len;
    int rc;
    if (unit == NULL) {
        hv_error_set(err, HV_EINVAL, NULL, "no unit given");
        return HV_EINVAL;
    }
    rc = hv__ucum_parse(u, unit, strlen(unit), &c, out, err);
    if (rc != HV_OK && out->data != NULL) {
        out->len = mark;
        out->data[mark] = '\0';
    }
    return rc;
}
