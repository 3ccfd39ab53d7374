/*
 * search_plan.c — turns a FHIR search query (FHIR R4 search.html) into one SQL
 * statement over the resources table and the index tables of fhir/search_index.c,
 * and runs it.
 *
 * Semantics implemented (search.html sections in brackets):
 *   - a parameter repeated is AND, comma-separated values are OR [#combining];
 *   - string [#string]: starts-with on the normalized value; :exact (equality of the
 *     normalized value), :contains;
 *   - token [#token]: code, system|code, |code, system|; :not; :missing;
 *   - reference [#reference]: Type/id, id, an absolute URL ending in Type/id; :missing;
 *   - date [#date]: prefixes eq ne gt lt ge le sa eb ap over the ranges the stored and
 *     searched values cover at their precision [#prefix];
 *   - number and quantity [#number, #quantity]: prefixes, equality within the
 *     precision of the value; quantity value|system|code;
 *   - uri: equality; _id, _lastUpdated on the resources table;
 *   - result parameters: _count, _sort (_lastUpdated, _id, a date parameter; - for descending), _total,
 *     _summary=count; the paging cursor _cursor is keyset (sort key and row id).
 * Every value is bound; the SQL text only holds placeholders and fixed fragments.
 */
#include "config.h"

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/search_int.h"

void hv__search_plan_init(hv__search_plan_t *p)
{
    memset(p, 0, sizeof(*p));
    hv_buf_init(&p->where, 64 * 1024);
    hv_buf_init(&p->unknown, 4096);
    hv_buf_init(&p->canon, 8192);
}

void hv__search_plan_clear(hv__search_plan_t *p)
{
    for (int i = 0; i < p->nbinds; i++)
        hv_free(p->binds[i].s);
    hv_buf_release(&p->where);
    hv_buf_release(&p->unknown);
    hv_buf_release(&p->canon);
    p->nbinds = 0;
}

/* Adds a bound value and writes its placeholder into the SQL. */
static int b_text(hv__search_plan_t *p, const char *s)
{
    if (p->nbinds >= HV__SEARCH_MAX_BINDS)
        return HV_ETOOBIG;
    p->binds[p->nbinds].kind = 0;
    p->binds[p->nbinds].s = hv_strdup(s);
    if (p->binds[p->nbinds].s == NULL)
        return HV_ENOMEM;
    p->nbinds++;
    return hv_buf_printf(&p->where, "$%d", p->nbinds);
}

static int b_int(hv__search_plan_t *p, int64_t v)
{
    if (p->nbinds >= HV__SEARCH_MAX_BINDS)
        return HV_ETOOBIG;
    p->binds[p->nbinds].kind = 1;
    p->binds[p->nbinds].i = v;
    p->nbinds++;
    return hv_buf_printf(&p->where, "$%d", p->nbinds);
}

static int b_dbl(hv__search_plan_t *p, double v)
{
    if (p->nbinds >= HV__SEARCH_MAX_BINDS)
        return HV_ETOOBIG;
    p->binds[p->nbinds].kind = 2;
    p->binds[p->nbinds].d = v;
    p->nbinds++;
    return hv_buf_printf(&p->where, "$%d", p->nbinds);
}

static void sql(hv__search_plan_t *p, const char *s)
{
    hv_buf_puts(&p->where, s);
}

/* Escapes LIKE metacharacters (\ % _) with a backslash. */
static char *like_escape(const char *s, const char *pre, const char *post)
{
    size_t n = strlen(s);
    char *o = hv_malloc(2 * n + 3), *w = o;
    if (o == NULL)
        return NULL;
    if (*pre)
        *w++ = *pre;
    for (; *s; s++) {
        if (*s == '\\' || *s == '%' || *s == '_')
            *w++ = '\\';
        *w++ = *s;
    }
    if (*post)
        *w++ = *post;
    *w = '\0';
    return o;
}

/* The date criterion of prefix pr and range [lo, hi] over columns LO/HI (FHIR R4 search.html#prefix). */
static int date_clause(hv__search_plan_t *p, hv__sp_prefix_t pr, int64_t lo, int64_t hi, const char *LO,
                       const char *HI)
{
    char a[64];
    int64_t d;
    switch (pr) {
    case HV__SP_EQ:
    case HV__SP_NE:
        snprintf(a, sizeof(a), "%s(%s >= ", pr == HV__SP_NE ? "NOT " : "", LO);
        sql(p, a);
        b_int(p, lo);
        snprintf(a, sizeof(a), " AND %s <= ", HI);
        sql(p, a);
        b_int(p, hi);
        sql(p, ")");
        break;
    case HV__SP_GT:
    case HV__SP_SA:
        snprintf(a, sizeof(a), "%s > ", pr == HV__SP_GT ? HI : LO);
        sql(p, a);
        b_int(p, hi);
        break;
    case HV__SP_LT:
    case HV__SP_EB:
        snprintf(a, sizeof(a), "%s < ", pr == HV__SP_LT ? LO : HI);
        sql(p, a);
        b_int(p, lo);
        break;
    case HV__SP_GE:
        snprintf(a, sizeof(a), "%s >= ", HI);
        sql(p, a);
        b_int(p, lo);
        break;
    case HV__SP_LE:
        snprintf(a, sizeof(a), "%s <= ", LO);
        sql(p, a);
        b_int(p, hi);
        break;
    case HV__SP_AP:
        /* Approximately: the ranges overlap once the searched one is widened by 10% of
         * its distance from now, at least a day (the specification leaves the gap to
         * the server). */
        d = (int64_t)hv_now_ms() - lo;
        d = (d < 0 ? -d : d) / 10;
        if (d < 86400000)
            d = 86400000;
        snprintf(a, sizeof(a), "(%s <= ", LO);
        sql(p, a);
        b_int(p, hi + d);
        snprintf(a, sizeof(a), " AND %s >= ", HI);
        sql(p, a);
        b_int(p, lo - d);
        sql(p, ")");
        break;
    }
    return HV_OK;
}

/* The number criterion: equality within the value's precision (FHIR R4 search.html#number). */
static int num_clause(hv__search_plan_t *p, hv__sp_prefix_t pr, const char *v, double x)
{
    const char *dot = strchr(v, '.');
    int decimals = 0;
    double half;
    if (dot != NULL)
        for (const char *c = dot + 1; *c >= '0' && *c <= '9'; c++)
            decimals++;
    half = 0.5 * pow(10.0, -decimals);
    switch (pr) {
    case HV__SP_EQ:
    case HV__SP_NE:
        sql(p, pr == HV__SP_NE ? "NOT (value >= " : "(value >= ");
        b_dbl(p, x - half);
        sql(p, " AND value < ");
        b_dbl(p, x + half);
        sql(p, ")");
        break;
    case HV__SP_GT:
    case HV__SP_SA:
        sql(p, "value > ");
        b_dbl(p, x);
        break;
    case HV__SP_LT:
    case HV__SP_EB:
        sql(p, "value < ");
        b_dbl(p, x);
        break;
    case HV__SP_GE:
        sql(p, "value >= ");
        b_dbl(p, x);
        break;
    case HV__SP_LE:
        sql(p, "value <= ");
        b_dbl(p, x);
        break;
    case HV__SP_AP:
        sql(p, "(value >= ");
        b_dbl(p, x - fabs(x) * 0.1);
        sql(p, " AND value <= ");
        b_dbl(p, x + fabs(x) * 0.1);
        sql(p, ")");
        break;
    }
    return HV_OK;
}

/* Splits on unescaped c; unescapes "\," "\|" "\$" "\\" (FHIR R4 search.html#escaping). Returns
 * the next piece's end (the separator or the NUL); the piece is unescaped in place into out. */
static const char *piece(const char *s, char c, char *out, size_t cap)
{
    size_t o = 0;
    while (*s && *s != c) {
        if (*s == '\\' && s[1] != '\0')
            s++;
        if (o + 1 < cap)
            out[o++] = *s;
        s++;
    }
    out[o] = '\0';
    return s;
}

#define VAL_MAX 1024

static int fail(hv__search_plan_t *p, const char *fmt, const char *name)
{
    snprintf(p->msg, sizeof(p->msg), fmt, name);
    return HV_EINVAL;
}

/* One value of parameter name (type st, modifier mod) as a condition on the index row. */
static int value_clause(hv__search_plan_t *p, const char *name, hv_fhir_search_type_t st, const char *mod,
                        const char *v)
{
    char a[VAL_MAX], b[VAL_MAX];
    const char *rest;
    int rc = HV_OK;
    switch (st) {
    case HV_FHIR_SP_STRING: {
        char norm[VAL_MAX];
        char *like;
        hv__search_normalize(v, norm, sizeof(norm));
        if (strcmp(mod, "exact") == 0) {
            sql(p, "value = ");
            return b_text(p, norm);
        }
        like = like_escape(norm, strcmp(mod, "contains") == 0 ? "%" : "", "%");
        if (like == NULL)
            return HV_ENOMEM;
        sql(p, "value LIKE ");
        rc = b_text(p, like);
        sql(p, " ESCAPE '\\'");
        hv_free(like);
        return rc;
    }
    case HV_FHIR_SP_TOKEN:
    case HV_FHIR_SP_URI:
        if (st == HV_FHIR_SP_URI) {
            sql(p, "value = ");
            return b_text(p, v);
        }
        rest = piece(v, '|', a, sizeof(a));
        if (*rest == '\0') {
            /* no unescaped '|': a code alone, in any system */
            sql(p, "value = ");
            return b_text(p, a);
        }
        piece(rest + 1, '\0', b, sizeof(b));
        if (a[0] == '\0') {
            sql(p, "(system IS NULL AND value = ");
            rc = b_text(p, b);
            sql(p, ")");
        } else if (b[0] == '\0') {
            sql(p, "system = ");
            rc = b_text(p, a);
        } else {
            sql(p, "(system = ");
            b_text(p, a);
            sql(p, " AND value = ");
            rc = b_text(p, b);
            sql(p, ")");
        }
        return rc;
    case HV_FHIR_SP_REFERENCE: {
        const char *end = v + strlen(v), *q = end, *slash;
        while (q > v && q[-1] != '/')
            q--;
        if (!hv__fhir_id_valid(q))
            return fail(p, "search parameter \"%.64s\": not a reference (Type/id or id)", name);
        if (q > v) {
            slash = q - 1;
            const char *t = slash;
            while (t > v && t[-1] != '/')
                t--;
            snprintf(a, sizeof(a), "%.*s", (int)(slash - t), t);
            if (hv_fhir_resource_type(a) == NULL)
                return fail(p, "search parameter \"%.64s\": not a reference (Type/id or id)", name);
            sql(p, "(rtype = ");
            b_text(p, a);
            sql(p, " AND rid = ");
            rc = b_text(p, q);
            sql(p, ")");
        } else {
            sql(p, "rid = ");
            rc = b_text(p, q);
        }
        return rc;
    }
    case HV_FHIR_SP_DATE: {
        int64_t lo, hi;
        hv__sp_prefix_t pr = hv__search_prefix(&v);
        if (hv__search_date_range(v, &lo, &hi) != HV_OK)
            return fail(p, "search parameter \"%.64s\": not a date (YYYY[-MM[-DD[Thh:mm:ss[.sss][Z]]]])", name);
        return date_clause(p, pr, lo, hi, "lo", "hi");
    }
    case HV_FHIR_SP_NUMBER:
    case HV_FHIR_SP_QUANTITY: {
        hv__sp_prefix_t pr = hv__search_prefix(&v);
        char *e = NULL;
        double x;
        rest = piece(v, '|', a, sizeof(a));
        x = strtod(a, &e);
        if (a[0] == '\0' || e == NULL || *e != '\0' || !isfinite(x))
            return fail(p, "search parameter \"%.64s\": not a number", name);
        if (st == HV_FHIR_SP_QUANTITY && *rest == '|') {
            char sys[VAL_MAX], code[VAL_MAX];
            rest = piece(rest + 1, '|', sys, sizeof(sys));
            piece(*rest ? rest + 1 : rest, '\0', code, sizeof(code));
            sql(p, "(");
            num_clause(p, pr, a, x);
            if (sys[0]) {
                sql(p, " AND system = ");
                b_text(p, sys);
            }
            if (code[0]) {
                sql(p, " AND unit = ");
                b_text(p, code);
            }
            sql(p, ")");
            return HV_OK;
        }
        return num_clause(p, pr, a, x);
    }
    default:
        return fail(p, "search parameter \"%.64s\": this parameter type is not supported yet", name);
    }
}

static const char *table_of(hv_fhir_search_type_t st)
{
    switch (st) {
    case HV_FHIR_SP_STRING: return "sp_str";
    case HV_FHIR_SP_TOKEN: return "sp_tok";
    case HV_FHIR_SP_REFERENCE: return "sp_ref";
    case HV_FHIR_SP_DATE: return "sp_date";
    case HV_FHIR_SP_NUMBER:
    case HV_FHIR_SP_QUANTITY: return "sp_num";
    case HV_FHIR_SP_URI: return "sp_uri";
    default: return NULL;
    }
}

/* One criterion: name[:mod]=v1,v2… */
static int criterion(hv__search_plan_t *p, const char *name, const char *mod, const char *val)
{
    const hv_fhir_type_t *t = hv_fhir_resource_type(p->type);
    const hv_fhir_search_t *sp;
    const char *tab, *s;
    char one[VAL_MAX];
    int first = 1, rc = HV_OK;
    if (strcmp(name, "_id") == 0) {
        sql(p, " AND r.id IN (");
        for (s = val;; s++) {
            s = piece(s, ',', one, sizeof(one));
            if (!hv__fhir_id_valid(one))
                return fail(p, "search parameter \"%.64s\": not a valid id", name);
            if (!first)
                sql(p, ", ");
            b_text(p, one);
            first = 0;
            if (*s == '\0')
                break;
        }
        sql(p, ")");
        return HV_OK;
    }
    if (strcmp(name, "_lastUpdated") == 0) {
        sql(p, " AND (");
        for (s = val;; s++) {
            const char *v = one;
            int64_t lo, hi;
            hv__sp_prefix_t pr;
            s = piece(s, ',', one, sizeof(one));
            pr = hv__search_prefix(&v);
            if (hv__search_date_range(v, &lo, &hi) != HV_OK)
                return fail(p, "search parameter \"%.64s\": not a date", name);
            if (!first)
                sql(p, " OR ");
            date_clause(p, pr, lo, hi, "r.last_ms", "r.last_ms");
            first = 0;
            if (*s == '\0')
                break;
        }
        sql(p, ")");
        return HV_OK;
    }
    sp = hv_fhir_search_find(t, name);
    if (sp == NULL)
        return HV_ENOTFOUND;
    tab = table_of(hv_fhir_search_type(sp));
    if (tab == NULL || hv_fhir_search_expression(sp) == NULL)
        return fail(p, "search parameter \"%.64s\": composite and special parameters are not supported yet", name);
    if (strcmp(mod, "missing") == 0) {
        if (strcmp(val, "true") != 0 && strcmp(val, "false") != 0)
            return fail(p, "search parameter \"%.64s\": :missing takes true or false", name);
        hv_buf_printf(&p->where, " AND r.id %sIN (SELECT id FROM %s WHERE type = $1 AND code = ",
                      strcmp(val, "true") == 0 ? "NOT " : "", tab);
        b_text(p, name);
        sql(p, ")");
        return HV_OK;
    }
    if (mod[0] != '\0' && !(strcmp(mod, "exact") == 0 || strcmp(mod, "contains") == 0 || strcmp(mod, "not") == 0))
        return fail(p, "search parameter \"%.64s\": this modifier is not supported", name);
    if (strcmp(mod, "not") == 0 && hv_fhir_search_type(sp) != HV_FHIR_SP_TOKEN)
        return fail(p, "search parameter \"%.64s\": :not applies to token parameters", name);
    if ((strcmp(mod, "exact") == 0 || strcmp(mod, "contains") == 0) && hv_fhir_search_type(sp) != HV_FHIR_SP_STRING)
        return fail(p, "search parameter \"%.64s\": :exact and :contains apply to string parameters", name);
    hv_buf_printf(&p->where, " AND r.id %sIN (SELECT id FROM %s WHERE type = $1 AND code = ",
                  strcmp(mod, "not") == 0 ? "NOT " : "", tab);
    b_text(p, name);
    sql(p, " AND (");
    for (s = val;; s++) {
        s = piece(s, ',', one, sizeof(one));
        if (one[0] == '\0')
            return fail(p, "search parameter \"%.64s\": an empty value", name);
        if (!first)
            sql(p, " OR ");
        rc = value_clause(p, name, hv_fhir_search_type(sp), mod, one);
        if (rc != HV_OK)
            return rc;
        first = 0;
        if (*s == '\0')
            break;
    }
    sql(p, "))");
    return HV_OK;
}

static int is_result_param(const char *k)
{
    static const char *const names[] = {"_format", "_pretty", "_summary", "_elements", "_count", "_cursor",
                                        "_total",  "_sort"};
    for (size_t i = 0; i < HV_ARRAY_LEN(names); i++)
        if (strcmp(k, names[i]) == 0)
            return 1;
    return 0;
}

static int result_param(hv__search_plan_t *p, const char *k, const char *v, int64_t max_count)
{
    char *end = NULL;
    if (strcmp(k, "_count") == 0) {
        long long c = strtoll(v, &end, 10);
        if (end == v || *end != '\0' || c < 0)
            return fail(p, "%s must be a non-negative integer", k);
        p->count = c > max_count ? max_count : c;
    } else if (strcmp(k, "_total") == 0) {
        if (strcmp(v, "none") == 0)
            p->total = HV__TOTAL_NONE;
        else if (strcmp(v, "accurate") == 0 || strcmp(v, "estimate") == 0)
            p->total = HV__TOTAL_ACCURATE;
        else
            return fail(p, "%s must be none, estimate or accurate", k);
    } else if (strcmp(k, "_summary") == 0) {
        p->summary_count = strcmp(v, "count") == 0;
    } else if (strcmp(k, "_sort") == 0) {
        const char *s = v;
        p->desc = s[0] == '-';
        if (p->desc)
            s++;
        if (strcmp(s, "_lastUpdated") == 0)
            p->sort = HV__SORT_LASTUPDATED;
        else if (strcmp(s, "_id") == 0)
            p->sort = HV__SORT_ID;
        else {
            /* A date parameter: ascending by the earliest value, descending by the latest;
             * resources without one come last either way. */
            const hv_fhir_search_t *sp = hv_fhir_search_find(hv_fhir_resource_type(p->type), s);
            if (sp == NULL || hv_fhir_search_type(sp) != HV_FHIR_SP_DATE || strlen(s) >= sizeof(p->sort_code))
                return fail(p, "_sort: only _lastUpdated, _id and date parameters are supported yet (\"%.64s\")",
                            s);
            p->sort = HV__SORT_DATE;
            snprintf(p->sort_code, sizeof(p->sort_code), "%s", s);
        }
    } else if (strcmp(k, "_cursor") == 0) {
        /* "rid" or "key~rid" — made by this server (fhir/search.c). */
        const char *t = strchr(v, '~');
        long long rid;
        p->has_cursor = 1;
        if (t != NULL) {
            if ((size_t)(t - v) >= sizeof(p->ckey_s))
                return fail(p, "%s is not a cursor this server made", k);
            snprintf(p->ckey_s, sizeof(p->ckey_s), "%.*s", (int)(t - v), v);
            p->ckey_i = strtoll(p->ckey_s, NULL, 10);
            v = t + 1;
        }
        rid = strtoll(v, &end, 10);
        if (end == v || *end != '\0' || rid < 0)
            return fail(p, "%s is not a cursor this server made", k);
        p->crid = rid;
    }
    return HV_OK;
}

int hv__search_plan_build(hv__search_plan_t *p, const char *type, const char *query, int strict,
                          int64_t def_count, int64_t max_count)
{
    char *q = hv_strdup(query ? query : ""), *save = NULL, *part;
    int rc = HV_OK, ncrit = 0;
    if (q == NULL)
        return HV_ENOMEM;
    snprintf(p->type, sizeof(p->type), "%s", type);
    p->count = def_count;
    /* $1 is the resource type. */
    p->binds[0].kind = 0;
    p->binds[0].s = hv_strdup(type);
    p->nbinds = 1;
    if (p->binds[0].s == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    for (part = strtok_r(q, "&", &save); part != NULL; part = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(part, '='), *key = part, *val, *colon;
        long kl, vl;
        const char *mod = "";
        if (eq == NULL) {
            rc = fail(p, "search parameter \"%.64s\" has no value", part);
            goto out;
        }
        *eq = '\0';
        val = eq + 1;
        if ((kl = hv_url_decode(key, strlen(key), 1)) < 0 || (vl = hv_url_decode(val, strlen(val), 1)) < 0) {
            rc = fail(p, "a bad percent escape in \"%.64s\"", key);
            goto out;
        }
        key[kl] = '\0';
        val[vl] = '\0';
        if (is_result_param(key)) {
            rc = result_param(p, key, val, max_count);
            if (rc != HV_OK)
                goto out;
            continue;
        }
        colon = strchr(key, ':');
        if (colon != NULL) {
            *colon = '\0';
            mod = colon + 1;
        }
        if (++ncrit > HV__SEARCH_MAX_PARAMS) {
            rc = fail(p, "more than %s search parameters", "32");
            goto out;
        }
        rc = criterion(p, key, mod, val);
        if (rc == HV_ENOTFOUND) {
            if (strict) {
                rc = fail(p, "unknown search parameter \"%.64s\"", key);
                goto out;
            }
            hv_buf_printf(&p->unknown, "%s%s", p->unknown.len ? ", " : "", key);
            rc = HV_OK;
            continue;
        }
        if (rc == HV_ETOOBIG) {
            rc = fail(p, "too many values (at \"%.64s\")", key);
            goto out;
        }
        if (rc != HV_OK)
            goto out;
    }
out:
    hv_free(q);
    return rc;
}

int hv__search_plan_compartment(hv__search_plan_t *p, const char *patient)
{
    if (strcmp(p->type, "Patient") == 0)
        sql(p, " AND r.id = ");
    else
        sql(p, " AND r.id IN (SELECT c.id FROM refs c WHERE c.type = $1 AND c.patient = ");
    if (b_text(p, patient) != HV_OK)
        return HV_ETOOBIG;
    if (strcmp(p->type, "Patient") != 0)
        sql(p, ")");
    return hv_buf_puts(&p->where, "");
}

#define ROW_COLS_M "m.rid, m.type, m.id, m.version, m.last_ms, m.deleted, m.json"

int hv__search_plan_run(hv_db_t *db, const hv__search_plan_t *p, hv__store_row_cb cb, void *ud, int64_t *total)
{
    hv_buf_t q;
    hv_db_stmt_t *st = NULL;
    int rc, n = p->nbinds, want_total = p->summary_count || p->total == HV__TOTAL_ACCURATE;
    const char *key = p->sort == HV__SORT_LASTUPDATED ? "m.last_ms"
                      : p->sort == HV__SORT_ID        ? "m.id"
                      : p->sort == HV__SORT_DATE      ? "m.sk"
                                                      : NULL;
    int sortbind = p->sort == HV__SORT_DATE; /* the sorted parameter's code is bound as $n+1 */
    const char *gt = p->desc ? "<" : ">";
    *total = -1;
    hv_buf_init(&q, 128 * 1024);
    hv_buf_puts(&q, "WITH m AS (SELECT r.rid, r.type, r.id, r.version, r.last_ms, r.deleted, r.json");
    if (sortbind)
        hv_buf_printf(&q,
                      p->desc ? ", COALESCE((SELECT MAX(d.hi) FROM sp_date d WHERE d.type = r.type AND d.id = r.id"
                                " AND d.code = $%d), -1152921504606846976) AS sk"
                              : ", COALESCE((SELECT MIN(d.lo) FROM sp_date d WHERE d.type = r.type AND d.id = r.id"
                                " AND d.code = $%d), 1152921504606846976) AS sk",
                      n + 1);
    n += sortbind;
    hv_buf_puts(&q, " FROM resources r WHERE r.type = $1 AND r.deleted = 0 AND NOT EXISTS (SELECT 1 FROM"
                    " resources n WHERE n.type = r.type AND n.id = r.id AND n.version > r.version)");
    hv_buf_append(&q, p->where.data ? p->where.data : "", p->where.len);
    hv_buf_puts(&q, ") ");
    if (p->summary_count) {
        hv_buf_puts(&q, "SELECT COUNT(*) FROM m");
    } else {
        hv_buf_printf(&q, "SELECT " ROW_COLS_M "%s%s FROM m", sortbind ? ", m.sk" : "", want_total ? ", (SELECT COUNT(*) FROM m)" : "");
        if (p->has_cursor) {
            if (key == NULL)
                hv_buf_printf(&q, " WHERE m.rid > $%d", n + 1);
            else
                hv_buf_printf(&q, " WHERE (%s %s $%d OR (%s = $%d AND m.rid %s $%d))", key, gt, n + 1, key, n + 1,
                              gt, n + 2);
        }
        if (key == NULL)
            hv_buf_puts(&q, " ORDER BY m.rid");
        else
            hv_buf_printf(&q, " ORDER BY %s%s, m.rid%s", key, p->desc ? " DESC" : "", p->desc ? " DESC" : "");
        hv_buf_printf(&q, " LIMIT $%d", n + (p->has_cursor ? (key ? 3 : 2) : 1));
    }
    rc = hv_buf_puts(&q, "");
    if (rc != HV_OK)
        goto out;
    rc = hv_db_prepare(db, q.data, &st);
    if (rc != HV_OK)
        goto out;
    if (sortbind)
        hv_db_bind_text(st, n, p->sort_code, strlen(p->sort_code));
    for (int i = 0; i < p->nbinds; i++) {
        const hv__sp_bind_t *b = &p->binds[i];
        if (b->kind == 0)
            hv_db_bind_text(st, i + 1, b->s, strlen(b->s));
        else if (b->kind == 1)
            hv_db_bind_int64(st, i + 1, b->i);
        else
            hv_db_bind_double(st, i + 1, b->d);
    }
    if (!p->summary_count) {
        int k = n;
        if (p->has_cursor) {
            if (key == NULL) {
                hv_db_bind_int64(st, ++k, p->crid);
            } else {
                if (p->sort == HV__SORT_ID)
                    hv_db_bind_text(st, ++k, p->ckey_s, strlen(p->ckey_s));
                else if (p->sort == HV__SORT_DATE)
                    hv_db_bind_int64(st, ++k, p->ckey_i);
                else
                    hv_db_bind_int64(st, ++k, p->ckey_i);
                hv_db_bind_int64(st, ++k, p->crid);
            }
        }
        hv_db_bind_int64(st, ++k, p->count + 1);
    }
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        hv__store_row_t row;
        size_t len = 0;
        const char *s;
        if (p->summary_count) {
            *total = hv_db_column_int64(st, 0);
            continue;
        }
        memset(&row, 0, sizeof(row));
        row.rid = hv_db_column_int64(st, 0);
        s = hv_db_column_text(st, 1, &len);
        snprintf(row.type, sizeof(row.type), "%.*s", (int)len, s ? s : "");
        s = hv_db_column_text(st, 2, &len);
        snprintf(row.id, sizeof(row.id), "%.*s", (int)len, s ? s : "");
        row.version = hv_db_column_int64(st, 3);
        row.last_ms = (uint64_t)hv_db_column_int64(st, 4);
        s = hv_db_column_text(st, 6, &len);
        row.text = hv_strndup(s ? s : "", s ? len : 0);
        row.text_len = s ? len : 0;
        if (p->sort == HV__SORT_DATE)
            row.sort_key = hv_db_column_int64(st, 7);
        if (want_total)
            *total = hv_db_column_int64(st, p->sort == HV__SORT_DATE ? 8 : 7);
        rc = row.text ? cb(ud, &row) : HV_ENOMEM;
        hv__store_row_clear(&row);
        if (rc != HV_OK)
            break;
    }
    hv_db_done(st);
out:
    hv_buf_release(&q);
    return rc < 0 ? rc : HV_OK;
}
