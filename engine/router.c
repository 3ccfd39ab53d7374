/*
 * router.c — maps (method, path) to a handler.
 *
 * Patterns are split into segments at registration: a literal, ":name" (one
 * segment, captured), or a final "*" (the rest of the path, captured as "*").
 * A request path is split the same way and compared with every route; of the
 * routes that match, the most specific wins (literal > parameter > wildcard,
 * compared segment by segment), so "/patients/search" beats "/patients/:id".
 * A path that matches only with another method yields the allowed methods
 * (RFC 9110 §15.5.6: 405 with Allow).
 */
#include "config.h"
#include "engine/engine_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct prefix_fmt {
    char *prefix;
    hv_http_error_cb fn;
} prefix_fmt_t;

/*
 * The index by first segment (built at the first match after a route was added): the
 * routes whose first segment is a literal, ordered by that literal (length, then bytes)
 * and by registration; and the others (first segment ":name" or "*", or no segment).
 * A path can only match the routes of its first segment's run and the others, so those
 * are the only ones scored, in registration order as the full scan did; the scan over
 * every route (about 300, a strlen and memcmp each) was a third of a cached FHIR read's
 * instructions (callgrind).
 */
struct hv_router {
    hv__route_t **routes;
    size_t n, cap;
    prefix_fmt_t *fmts;
    size_t nfmt;
    size_t *lit;   /* indexes of the routes with a literal first segment, sorted */
    size_t nlit;
    size_t *other; /* indexes of the other routes, ascending */
    size_t nother;
    int indexed;   /* lit and other describe routes[0..n) */
};

hv_router_t *hv__router_new(void) { return hv_calloc(1, sizeof(hv_router_t)); }

static void route_free(hv__route_t *rt) {
    int i;
    if (rt == NULL) return;
    for (i = 0; i < rt->nseg; i++) hv_free(rt->seg[i]);
    hv_free(rt->pattern);
    hv_free(rt);
}

void hv__router_free(hv_router_t *r) {
    size_t i;
    if (r == NULL) return;
    for (i = 0; i < r->n; i++) route_free(r->routes[i]);
    for (i = 0; i < r->nfmt; i++) hv_free(r->fmts[i].prefix);
    hv_free(r->lit);
    hv_free(r->other);
    hv_free(r->routes);
    hv_free(r->fmts);
    hv_free(r);
}

int hv_router_add(hv_router_t *r, unsigned methods, const char *pattern, hv_http_handler_cb fn,
                  void *ud) {
    hv__route_t *rt = NULL;
    const char *p = pattern;
    int rc = HV_ENOMEM;
    if (pattern[0] != '/' || fn == NULL) return HV_EINVAL;
    rt = hv_calloc(1, sizeof(*rt));
    if (rt == NULL) goto out;
    rt->pattern = hv_strdup(pattern);
    if (rt->pattern == NULL) goto out;
    rt->methods = methods;
    rt->fn = fn;
    rt->ud = ud;
    while (*p == '/') p++;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (rt->nseg == HV_ROUTE_MAX_SEGMENTS) { rc = HV_ETOOBIG; goto out; }
        rt->seg[rt->nseg] = hv_strndup(p, len);
        if (rt->seg[rt->nseg] == NULL) goto out;
        rt->seglen[rt->nseg] = len;
        rt->wild = rt->seg[rt->nseg][0] == '*';
        rt->nseg++;
        if (rt->seg[rt->nseg - 1][0] == '*' && slash != NULL) { rc = HV_EINVAL; goto out; }
        p += len;
        while (*p == '/') p++;
    }
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 32;
        hv__route_t **nv = hv_realloc(r->routes, ncap * sizeof(*nv));
        if (nv == NULL) goto out;
        r->routes = nv;
        r->cap = ncap;
    }
    r->routes[r->n++] = rt;
    r->indexed = 0;
    return HV_OK;
out:
    route_free(rt);
    return rc;
}

int hv_router_set_error_format(hv_router_t *r, const char *prefix, hv_http_error_cb fn) {
    prefix_fmt_t *nv = hv_realloc(r->fmts, (r->nfmt + 1) * sizeof(*nv));
    if (nv == NULL) return HV_ENOMEM;
    r->fmts = nv;
    r->fmts[r->nfmt].prefix = hv_strdup(prefix);
    if (r->fmts[r->nfmt].prefix == NULL) return HV_ENOMEM;
    r->fmts[r->nfmt].fn = fn;
    r->nfmt++;
    return HV_OK;
}

hv_http_error_cb hv__router_error_format(hv_router_t *r, const char *path) {
    size_t i, best = 0;
    hv_http_error_cb fn = NULL;
    for (i = 0; i < r->nfmt; i++) {
        size_t n = strlen(r->fmts[i].prefix);
        if (strncmp(path, r->fmts[i].prefix, n) == 0 && (path[n] == '\0' || path[n] == '/' ||
                                                         path[n] == '?' || r->fmts[i].prefix[n - 1] == '/') &&
            n > best) {
            best = n;
            fn = r->fmts[i].fn;
        }
    }
    return fn;
}

/* Splits path into segments (pointers into a copy); returns the count or -1. */
typedef struct split {
    int n;
    const char *seg[HV_ROUTE_MAX_SEGMENTS];
    size_t len[HV_ROUTE_MAX_SEGMENTS];
    const char *rest[HV_ROUTE_MAX_SEGMENTS]; /* the path from this segment on */
} split_t;

static int split_path(const char *path, split_t *s) {
    const char *p = path;
    s->n = 0;
    while (*p == '/') p++;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (s->n == HV_ROUTE_MAX_SEGMENTS) return -1;
        s->seg[s->n] = p;
        s->len[s->n] = len;
        s->rest[s->n] = p;
        s->n++;
        p += len;
        while (*p == '/') p++;
    }
    return s->n;
}

/* Returns the specificity score of rt on the path, or -1 if it does not match. */
static int route_score(const hv__route_t *rt, const split_t *s) {
    int i, score = 0;
    if (!rt->wild && rt->nseg != s->n) return -1; /* the loop below would say so, later */
    for (i = 0; i < rt->nseg; i++) {
        const char *seg = rt->seg[i];
        if (seg[0] == '*') return score * 4 + 1;
        if (i >= s->n) return -1;
        if (seg[0] == ':') {
            score = score * 4 + 2;
        } else {
            if (rt->seglen[i] != s->len[i] || memcmp(seg, s->seg[i], s->len[i]) != 0) return -1;
            score = score * 4 + 3;
        }
    }
    return i == s->n ? score * 4 : -1;
}

static int is_literal_first(const hv__route_t *rt) {
    return rt->nseg > 0 && rt->seg[0][0] != ':' && rt->seg[0][0] != '*';
}

/* Orders literal first segments by length, then bytes. */
static int cmp_seg(const char *a, size_t alen, const char *b, size_t blen) {
    if (alen != blen) return alen < blen ? -1 : 1;
    return memcmp(a, b, alen);
}

static int cmp_lit(const void *x, const void *y, void *ud) {
    const hv_router_t *r = ud;
    size_t i = *(const size_t *)x, j = *(const size_t *)y;
    const char *a = r->routes[i]->seg[0], *b = r->routes[j]->seg[0];
    int c = cmp_seg(a, strlen(a), b, strlen(b));
    return c != 0 ? c : (i < j ? -1 : i > j);
}

/* Builds the index by first segment; HV_ENOMEM leaves the router unindexed (full scan). */
static int build_index(hv_router_t *r) {
    size_t *lit = hv_malloc((r->n + 1) * sizeof(*lit)), *other = hv_malloc((r->n + 1) * sizeof(*other));
    size_t nl = 0, no = 0;
    if (lit == NULL || other == NULL) {
        hv_free(lit);
        hv_free(other);
        return HV_ENOMEM;
    }
    for (size_t i = 0; i < r->n; i++) {
        if (is_literal_first(r->routes[i])) lit[nl++] = i;
        else other[no++] = i;
    }
    qsort_r(lit, nl, sizeof(*lit), cmp_lit, r);
    hv_free(r->lit);
    hv_free(r->other);
    r->lit = lit;
    r->nlit = nl;
    r->other = other;
    r->nother = no;
    r->indexed = 1;
    return HV_OK;
}

/* Scores route i on the path: keeps the best, or notes the methods a path match allows. */
static void consider(hv_router_t *r, size_t i, const split_t *s, unsigned want, int *best, int *i_best,
                     hv__route_match_t *m) {
    int sc = route_score(r->routes[i], s);
    if (sc < 0) return;
    if ((r->routes[i]->methods & want) == 0) {
        m->allowed |= r->routes[i]->methods;
        return;
    }
    if (sc > *best) {
        *best = sc;
        *i_best = (int)i;
    }
}

int hv__router_match(hv_router_t *r, int method, const char *path, hv_arena_t *arena,
                     hv__route_match_t *m) {
    split_t s;
    size_t i;
    int best = -1, i_best = -1, k;
    hv__route_t *rt;
    unsigned want = method == HV_HTTP_HEAD ? (HV_HTTP_HEAD | HV_HTTP_GET) : (unsigned)method;

    memset(m, 0, sizeof(*m));
    if (split_path(path, &s) < 0) return HV_ETOOBIG;
    if (!r->indexed) (void)build_index(r);
    if (!r->indexed) {
        for (i = 0; i < r->n; i++) consider(r, i, &s, want, &best, &i_best, m);
    } else {
        /* The run of routes whose literal first segment is the path's, then a merge of it
         * with the other routes by registration order. */
        size_t lo = 0, hi = r->nlit, end, a, b;
        if (s.n > 0) {
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                const hv__route_t *c = r->routes[r->lit[mid]];
                if (cmp_seg(c->seg[0], c->seglen[0], s.seg[0], s.len[0]) < 0) lo = mid + 1;
                else hi = mid;
            }
            end = lo;
            while (end < r->nlit) {
                const hv__route_t *c = r->routes[r->lit[end]];
                if (cmp_seg(c->seg[0], c->seglen[0], s.seg[0], s.len[0]) != 0) break;
                end++;
            }
        } else {
            end = lo = 0; /* "/": no literal first segment can match */
        }
        a = lo;
        b = 0;
        while (a < end || b < r->nother) {
            if (b >= r->nother || (a < end && r->lit[a] < r->other[b])) consider(r, r->lit[a++], &s, want, &best, &i_best, m);
            else consider(r, r->other[b++], &s, want, &best, &i_best, m);
        }
    }
    if (i_best < 0) return HV_ENOTFOUND;
    rt = r->routes[i_best];
    m->route = rt;
    for (k = 0; k < rt->nseg && m->nparam < HV_ROUTE_MAX_PARAMS; k++) {
        const char *seg = rt->seg[k];
        char *v;
        if (seg[0] == ':') {
            v = hv_arena_strndup(arena, s.seg[k], s.len[k]);
        } else if (seg[0] == '*') {
            v = hv_arena_strdup(arena, k < s.n ? s.rest[k] : "");
        } else {
            continue;
        }
        if (v == NULL) return HV_ENOMEM;
        m->pname[m->nparam] = seg[0] == ':' ? seg + 1 : "*";
        m->pval[m->nparam] = v;
        m->nparam++;
    }
    return HV_OK;
}

void hv__router_each(hv_router_t *r, void (*fn)(hv__route_t *route, void *ud), void *ud) {
    size_t i;
    for (i = 0; i < r->n; i++) fn(r->routes[i], ud);
}

/* Bucket b covers [lo, hi) where for b < 8, value == b; otherwise exponent e = b/8 + 2,
 * mantissa m = b%8: lo = 2^(e-1) + m * 2^(e-4). */
static int lat_bucket(uint64_t us) {
    int e, m, b;
    if (us < 8) return (int)us;
    e = 63 - __builtin_clzll(us); /* floor(log2) >= 3 */
    m = (int)((us >> (e - 3)) & 7);
    b = (e - 2) * 8 + m;
    return b < HV_LAT_BUCKETS ? b : HV_LAT_BUCKETS - 1;
}

static double lat_bucket_mid(int b) {
    int e, m;
    double lo, width;
    if (b < 8) return b;
    e = b / 8 + 2;
    m = b % 8;
    lo = ldexp(1.0, e) + m * ldexp(1.0, e - 3);
    width = ldexp(1.0, e - 3);
    return lo + width / 2;
}

void hv__latency_add(hv__latency_t *l, uint64_t us) {
    l->buckets[lat_bucket(us)]++;
    l->count++;
}

double hv__latency_quantile(const hv__latency_t *l, double q) {
    uint64_t rank, seen = 0;
    int b;
    if (l->count == 0) return 0;
    rank = (uint64_t)ceil(q * (double)l->count);
    if (rank == 0) rank = 1;
    for (b = 0; b < HV_LAT_BUCKETS; b++) {
        seen += l->buckets[b];
        if (seen >= rank) return lat_bucket_mid(b);
    }
    return lat_bucket_mid(HV_LAT_BUCKETS - 1);
}
