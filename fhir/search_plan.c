/*
 * search_plan.c — turns a FHIR search query (FHIR R4 search.html) into one SQL
 * statement over the resources table and the index tables of fhir/search_index.c,
 * and runs it.
 *
 * Semantics implemented (search.html sections in brackets):
 *   - a parameter repeated is AND, comma-separated values are OR [#combining];
 *   - string [#string]: starts-with on the normalized value, a range of its index;
 *     :exact (equality of the value as written, case and marks included: the
 *     normalized value's index narrows, the raw column decides), :contains (a LIKE scan);
 *   - token [#token]: code, system|code, |code, system|; :not; :missing;
 *   - reference [#reference]: Type/id, id, an absolute URL ending in Type/id; :missing;
 *   - date [#date]: prefixes eq ne gt lt ge le sa eb ap over the ranges the stored and
 *     searched values cover at their precision [#prefix];
 *   - number and quantity [#number, #quantity]: prefixes, equality within the
 *     precision of the value; quantity value|system|code;
 *   - uri: equality; _id, _lastUpdated on the resources table;
 *   - chaining and reverse chaining (_has), composite parameters, :text, :of-type,
 *     :identifier, :Type, uri :above/:below, UCUM-canonical quantities;
 *   - result parameters: _count, _total, _summary=count, _include/_revinclude
 *     (run by fhir/search_include.c); _sort and the keyset cursor are in
 *     fhir/search_run.c, which also runs the plan.
 * Every value is bound; the SQL text only holds placeholders and fixed fragments.
 */
#include "config.h"

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/search_int.h"

/*
 * The fourth migration of the index (the query side's): the value indexes of tokens,
 * dates and numbers become covering — they hold the resource id (and a token's
 * system, a date's end) after the searched columns — so that a count or a range scan
 * reads the index alone, never the table's rows (fhir/search_run.c, index_count).
 * The same SQL on both backends.
 */
const char hv__search_migration4[] =
    "DROP INDEX sp_tok_v; CREATE INDEX sp_tok_vc ON sp_tok (type, code, value, id, system);"
    "DROP INDEX sp_date_v; CREATE INDEX sp_date_vc ON sp_date (type, code, lo, hi, id);"
    "DROP INDEX sp_num_v; CREATE INDEX sp_num_vc ON sp_num (type, code, value, id);";

/*
 * The sixth (per backend): the string value index becomes covering too, (type, code,
 * value, id), so that a string's starts-with — a range of it (prefix_range) — and a
 * count read the index alone. On PostgreSQL the value column of the index is in the
 * "C" collation (byte order), which the range's COLLATE "C" matches. The stored values
 * are already the normalized ones (hv__search_normalize), so nothing is rewritten.
 * The reference index keyed by the target, (type, code, rid), gains the target type
 * and the referencing id: _revinclude, a chain's last step and a _has checked per
 * candidate (a patient's observations) read it alone, not one table row per reference.
 */
#define SP_REF_VC "DROP INDEX sp_ref_v; CREATE INDEX sp_ref_vc ON sp_ref (type, code, rid, rtype, id);"
const char hv__search_migration6_sqlite[] =
    "DROP INDEX sp_str_v; CREATE INDEX sp_str_vc ON sp_str (type, code, value, id);" SP_REF_VC;
const char hv__search_migration6_pg[] =
    "DROP INDEX sp_str_v; CREATE INDEX sp_str_vc ON sp_str (type, code, value COLLATE \"C\", id);" SP_REF_VC;

void hv__search_plan_init(hv__search_plan_t *p)
{
    memset(p, 0, sizeof(*p));
    p->crit = -1;
    hv_buf_init(&p->where, 64 * 1024);
    hv_buf_init(&p->unknown, 4096);
    hv_buf_init(&p->canon, 8192);
}

void hv__search_plan_clear(hv__search_plan_t *p)
{
    for (int i = 0; i < p->nbinds; i++)
        hv_free(p->binds[i].s);
    for (int i = 0; i < p->nckeys; i++)
        hv_free(p->ckeys[i].s);
    p->nckeys = 0;
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

#define VAL_MAX 1024 /* bytes of one search value */

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

/*
 * The smallest string greater than every string that starts with s (UTF-8), in
 * code-point order, which is UTF-8's byte order: s with its last code point raised
 * by one (a code point that cannot be raised — U+10FFFF — is dropped and the one
 * before it raised; surrogates are skipped). Written into out (cap bytes, at least
 * strlen(s) + 1). Returns 0 when no such string exists (s empty or all U+10FFFF):
 * then every string from s on starts with it.
 */
int hv__search_prefix_successor(const char *s, char *out, size_t cap)
{
    size_t n = strlen(s);
    if (cap < n + 1)
        return 0;
    memcpy(out, s, n + 1);
    while (n > 0) {
        size_t start = n - 1;
        uint32_t c;
        const unsigned char *u;
        while (start > 0 && ((unsigned char)out[start] & 0xc0) == 0x80)
            start--;
        u = (const unsigned char *)out + start;
        /* Decode the last sequence; a malformed tail is treated as its bytes. */
        if (u[0] < 0x80 || n - start == 1)
            c = u[0] < 0x80 ? u[0] : 0x110000;
        else if (u[0] < 0xe0 && n - start == 2)
            c = ((uint32_t)(u[0] & 0x1f) << 6) | (u[1] & 0x3f);
        else if (u[0] < 0xf0 && n - start == 3)
            c = ((uint32_t)(u[0] & 0x0f) << 12) | ((uint32_t)(u[1] & 0x3f) << 6) | (u[2] & 0x3f);
        else if (n - start == 4)
            c = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3f) << 12) | ((uint32_t)(u[2] & 0x3f) << 6) |
                (u[3] & 0x3f);
        else
            c = 0x110000;
        if (c >= 0x10ffff) {
            if (c == 0x110000 && (unsigned char)out[n - 1] < 0xff) {
                /* Not UTF-8: raise the last byte itself (byte order still holds). */
                out[n - 1] = (char)((unsigned char)out[n - 1] + 1);
                return 1;
            }
            n = c == 0x110000 ? n - 1 : start;
            out[n] = '\0';
            continue;
        }
        c = c + 1 == 0xd800 ? 0xe000 : c + 1;
        /* Encode c at start; it never needs more bytes than cap allows (c ≤ 0x10ffff
         * takes at most 4, and a raised code point of k bytes takes k or k + 1 — at
         * 0x7f, 0x7ff, 0xffff — so at most one more byte). */
        if (start + 5 > cap)
            return 0;
        if (c < 0x80) {
            out[start] = (char)c;
            n = start + 1;
        } else if (c < 0x800) {
            out[start] = (char)(0xc0 | (c >> 6));
            out[start + 1] = (char)(0x80 | (c & 0x3f));
            n = start + 2;
        } else if (c < 0x10000) {
            out[start] = (char)(0xe0 | (c >> 12));
            out[start + 1] = (char)(0x80 | ((c >> 6) & 0x3f));
            out[start + 2] = (char)(0x80 | (c & 0x3f));
            n = start + 3;
        } else {
            out[start] = (char)(0xf0 | (c >> 18));
            out[start + 1] = (char)(0x80 | ((c >> 12) & 0x3f));
            out[start + 2] = (char)(0x80 | ((c >> 6) & 0x3f));
            out[start + 3] = (char)(0x80 | (c & 0x3f));
            n = start + 4;
        }
        out[n] = '\0';
        return 1;
    }
    out[0] = '\0';
    return 0;
}

/*
 * A string's default match, starts-with on the normalized value (search.html#string),
 * as a range of the value index: value >= norm AND value < successor(norm). The
 * "@K@" marker after the column is where the run writes COLLATE "C" on PostgreSQL (its
 * index sp_str_rc (formerly sp_str_vc) is in that collation, byte order, whatever the database's default);
 * on SQLite text compares with memcmp (BINARY), the same order.
 */
static int prefix_range(hv__search_plan_t *p, const char *norm)
{
    char succ[VAL_MAX + 8];
    int rc;
    sql(p, "(value@K@ >= ");
    rc = b_text(p, norm);
    if (rc == HV_OK && hv__search_prefix_successor(norm, succ, sizeof(succ))) {
        sql(p, " AND value@K@ < ");
        rc = b_text(p, succ);
    }
    sql(p, ")");
    return rc;
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

/*
 * The number criterion over column col (FHIR R4 search.html#number): x the value,
 * [elo, ehi) the values equal to it within its precision, [alo, ahi] the values
 * approximately equal (10%).
 */
static int num_bounds(hv__search_plan_t *p, hv__sp_prefix_t pr, const char *col, double x, double elo, double ehi,
                      double alo, double ahi)
{
    char a[96];
    switch (pr) {
    case HV__SP_EQ:
    case HV__SP_NE:
        snprintf(a, sizeof(a), "%s(%s >= ", pr == HV__SP_NE ? "NOT " : "", col);
        sql(p, a);
        b_dbl(p, elo);
        snprintf(a, sizeof(a), " AND %s < ", col);
        sql(p, a);
        b_dbl(p, ehi);
        sql(p, ")");
        break;
    case HV__SP_GT:
    case HV__SP_SA:
        snprintf(a, sizeof(a), "%s > ", col);
        sql(p, a);
        b_dbl(p, x);
        break;
    case HV__SP_LT:
    case HV__SP_EB:
        snprintf(a, sizeof(a), "%s < ", col);
        sql(p, a);
        b_dbl(p, x);
        break;
    case HV__SP_GE:
        snprintf(a, sizeof(a), "%s >= ", col);
        sql(p, a);
        b_dbl(p, x);
        break;
    case HV__SP_LE:
        snprintf(a, sizeof(a), "%s <= ", col);
        sql(p, a);
        b_dbl(p, x);
        break;
    case HV__SP_AP:
        snprintf(a, sizeof(a), "(%s >= ", col);
        sql(p, a);
        b_dbl(p, alo);
        snprintf(a, sizeof(a), " AND %s <= ", col);
        sql(p, a);
        b_dbl(p, ahi);
        sql(p, ")");
        break;
    }
    return HV_OK;
}

/* Half the last digit of the decimal text v: 170 → 0.5, 170.5 → 0.05. */
static double half_digit(const char *v)
{
    const char *dot = strchr(v, '.');
    int decimals = 0;
    if (dot != NULL)
        for (const char *c = dot + 1; *c >= '0' && *c <= '9'; c++)
            decimals++;
    return 0.5 * pow(10.0, -decimals);
}

/* The number criterion: equality within the value's precision (FHIR R4 search.html#number). */
static int num_clause(hv__search_plan_t *p, hv__sp_prefix_t pr, const char *v, double x)
{
    double half = half_digit(v);
    return num_bounds(p, pr, "value", x, x - half, x + half, x - fabs(x) * 0.1, x + fabs(x) * 0.1);
}

/*
 * A UCUM quantity criterion on the canonical columns: the bounds are converted to
 * the canonical unit (every UCUM conversion is monotonic increasing), so that
 * 5 g finds 5000 mg. HV_EINVAL when code is not a UCUM unit.
 */
static int ucum_clause(hv__search_plan_t *p, hv__sp_prefix_t pr, const char *v, double x, const char *code)
{
    double half = half_digit(v), cx, elo, ehi, alo, ahi;
    char cu[64], cu2[64];
    if (hv__search_ucum_canon(x, code, &cx, cu, sizeof(cu)) != HV_OK ||
        hv__search_ucum_canon(x - half, code, &elo, cu2, sizeof(cu2)) != HV_OK ||
        hv__search_ucum_canon(x + half, code, &ehi, cu2, sizeof(cu2)) != HV_OK ||
        hv__search_ucum_canon(x - fabs(x) * 0.1, code, &alo, cu2, sizeof(cu2)) != HV_OK ||
        hv__search_ucum_canon(x + fabs(x) * 0.1, code, &ahi, cu2, sizeof(cu2)) != HV_OK)
        return HV_EINVAL;
    sql(p, "(cunit = ");
    b_text(p, cu);
    sql(p, " AND ");
    num_bounds(p, pr, "cvalue", cx, elo, ehi, alo, ahi);
    sql(p, ")");
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

/* Like piece() but keeps the escapes: an escaped c does not split, and "\c" stays. */
static const char *piece_keep(const char *s, char c, char *out, size_t cap)
{
    size_t o = 0;
    while (*s && *s != c) {
        if (*s == '\\' && s[1] != '\0') {
            if (o + 1 < cap)
                out[o++] = *s;
            s++;
        }
        if (o + 1 < cap)
            out[o++] = *s;
        s++;
    }
    out[o] = '\0';
    return s;
}

static int fail(hv__search_plan_t *p, const char *fmt, const char *name)
{
    snprintf(p->msg, sizeof(p->msg), fmt, name);
    return HV_EINVAL;
}

/* A valid request this server does not implement (501 at the REST layer). */
static int unsupported(hv__search_plan_t *p, const char *fmt, const char *name)
{
    snprintf(p->msg, sizeof(p->msg), fmt, name);
    return HV_ENOTSUP;
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
            /* FHIR R4 search.html#string: ":exact — the search parameter value must match
             * the exact string, including case and combining characters". The folded
             * equality keeps the value index's seek; the unfolded value (raw, as
             * hv__search_raw cuts it at write) decides among its rows. A row written
             * before raw existed (NULL) matches folded, as it did, until a reindex.
             * PostgreSQL: the equality in the value index's collation "C" ("@K@", as
             * prefix_range), else it is no condition of that index and the parameter's
             * whole range is read (every family name for family:exact=X). */
            char raw[HV__SEARCH_STR_MAX];
            hv__search_raw(v, raw, sizeof(raw));
            sql(p, "value@K@ = ");
            if ((rc = b_text(p, norm)) != HV_OK)
                return rc;
            sql(p, " AND (raw = ");
            rc = b_text(p, raw);
            sql(p, " OR raw IS NULL)");
            return rc;
        }
        if (strcmp(mod, "text") == 0) {
            /* token :text: a word of the display or text starts with the value */
            char *l1 = like_escape(norm, "", "%"), *l2 = like_escape(norm, "%", "%");
            if (l1 == NULL || l2 == NULL || strlen(l2) + 1 >= VAL_MAX) {
                hv_free(l1);
                hv_free(l2);
                return HV_ENOMEM;
            }
            l2[0] = ' ';
            snprintf(a, sizeof(a), "%%%s", l2);
            sql(p, "(value LIKE ");
            b_text(p, l1);
            sql(p, " ESCAPE '\\' OR value LIKE ");
            rc = b_text(p, a);
            sql(p, " ESCAPE '\\')");
            hv_free(l1);
            hv_free(l2);
            return rc;
        }
        if (strcmp(mod, "contains") != 0)
            return prefix_range(p, norm);
        like = like_escape(norm, "%", "%");
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
            if (strcmp(mod, "below") == 0) {
                /* the value, or a URL under it (path segments) */
                char *like = like_escape(v, "", "");
                if (like == NULL || strlen(like) + 3 > sizeof(a)) {
                    hv_free(like);
                    return fail(p, "search parameter \"%.64s\": the value is too long", name);
                }
                snprintf(a, sizeof(a), "%s/%%", like);
                hv_free(like);
                sql(p, "(value = ");
                b_text(p, v);
                sql(p, " OR value LIKE ");
                rc = b_text(p, a);
                sql(p, " ESCAPE '\\')");
                return rc;
            }
            if (strcmp(mod, "above") == 0) {
                /* the value, or a URL it is under: the stored value is a path prefix of it */
                int k = p->nbinds + 1;
                sql(p, "(value = ");
                rc = b_text(p, v);
                hv_buf_printf(&p->where, " OR SUBSTR($%d, 1, LENGTH(value) + 1) = value || '/')", k);
                return rc;
            }
            sql(p, "value = ");
            return b_text(p, v);
        }
        if (strcmp(mod, "of-type") == 0) {
            /* system|code|value: the identifier's type coding and its value */
            char c[VAL_MAX], *joined;
            rest = piece(v, '|', a, sizeof(a));
            if (*rest != '|')
                return fail(p, "search parameter \"%.64s\": :of-type takes system|code|value", name);
            rest = piece(rest + 1, '|', b, sizeof(b));
            if (*rest != '|' || b[0] == '\0')
                return fail(p, "search parameter \"%.64s\": :of-type takes system|code|value", name);
            piece(rest + 1, '\0', c, sizeof(c));
            joined = hv_malloc(strlen(b) + strlen(c) + 2);
            if (joined == NULL)
                return HV_ENOMEM;
            sprintf(joined, "%s|%s", b, c);
            sql(p, "(");
            if (a[0] != '\0') {
                sql(p, "system = ");
                b_text(p, a);
                sql(p, " AND ");
            }
            sql(p, "value = ");
            rc = b_text(p, joined);
            sql(p, ")");
            hv_free(joined);
            return rc;
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
            if (strcmp(sys, HV__UCUM_SYSTEM) == 0 && code[0] != '\0') {
                /* UCUM: compared in canonical units (search.html#quantity). */
                if (ucum_clause(p, pr, a, x, code) != HV_OK)
                    return fail(p, "search parameter \"%.64s\": the unit is not a UCUM unit", name);
                return HV_OK;
            }
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

#define MAX_CHAIN_DEPTH 4 /* levels of chaining and _has in one criterion */

/*
 * The type of the resources a condition is about: placeholder $tb, or with tb 0 the
 * outer row's own type column (r.type: a system-level search over several types).
 */
static const char *tref(int tb, char *buf, size_t cap)
{
    if (tb == 0)
        return "r.type";
    snprintf(buf, cap, "$%d", tb);
    return buf;
}
#define TREF(tb) tref((tb), (char[16]){0}, 16)

/*
 * The correlation marker of a top-level criterion's sub-select over idcol "r.id"
 * (see crank in fhir/search_int.h), c 'C' (the sub-select's id column is id) or 'R'
 * (rid); records rank as the criterion's selectivity guess. "" below the top level.
 */
static const char *corr(hv__search_plan_t *p, const char *idcol, int depth, int rank, char c, char *buf, size_t cap)
{
    if (depth == 1 && c == 'C' && p->crit >= 0 && p->crit <= HV__SEARCH_MAX_PARAMS && strcmp(idcol, "h.id") == 0) {
        /* Inside a top-level _has (has()): "@H<k>@" correlates the condition with the
         * referencing row h when the _has is checked per candidate (fhir/search_run.c). */
        snprintf(buf, cap, "@H%d@", p->crit);
        return buf;
    }
    if (depth != 0 || p->crit < 0 || p->crit > HV__SEARCH_MAX_PARAMS || strcmp(idcol, "r.id") != 0)
        return "";
    if (rank < p->crank[p->crit])
        p->crank[p->crit] = (unsigned char)rank;
    snprintf(buf, cap, "@%c%d@", c, p->crit);
    return buf;
}
#define CORR(idcol, depth, rank, c) corr(p, (idcol), (depth), (rank), (c), (char[24]){0}, 24)

/* The index marker "@I<k>:<table>@" written after the table of a correlated sub-select
 * (on SQLite the run names the table's (type, id, code) index for it). */
static const char *idx_mark(hv__search_plan_t *p, const char *idcol, int depth, const char *table, char *buf,
                            size_t cap)
{
    /* Inside a top-level _has ("h.id"), only a token's: a string, date or number is
     * probed by (type, code, value ... id) of its covering value index when the value is
     * an equality, better than (type, id, code); sp_tok's value index holds the id after
     * the system and the row id, so per referencing row it would read the value's whole
     * range (fhir/search_combo.c, the eleventh migration). */
    if (depth == 1 && p->crit >= 0 && p->crit <= HV__SEARCH_MAX_PARAMS && strcmp(idcol, "h.id") == 0 &&
        strcmp(table, "sp_tok") == 0) {
        snprintf(buf, cap, "@I%d:%s@", p->crit, table);
        return buf;
    }
    if (depth != 0 || p->crit < 0 || p->crit > HV__SEARCH_MAX_PARAMS || strcmp(idcol, "r.id") != 0)
        return "";
    snprintf(buf, cap, "@I%d:%s@", p->crit, table);
    return buf;
}
#define IDX(idcol, depth, table) idx_mark(p, (idcol), (depth), (table), (char[48]){0}, 48)

/* Binds s without writing a placeholder; returns the placeholder number, or <0 on error. */
static int bind_only(hv__search_plan_t *p, const char *s)
{
    if (p->nbinds >= HV__SEARCH_MAX_BINDS)
        return HV_ETOOBIG;
    p->binds[p->nbinds].kind = 0;
    p->binds[p->nbinds].s = hv_strdup(s);
    if (p->binds[p->nbinds].s == NULL)
        return HV_ENOMEM;
    return ++p->nbinds;
}

static int cond(hv__search_plan_t *p, const char *type, int tb, const char *idcol, const char *key,
                const char *val, int depth);

/* A resource type, or the abstract Resource (the parameters every resource has). */
static const hv_fhir_type_t *type_of(const char *type)
{
    const hv_fhir_type_t *t = hv_fhir_resource_type(type);
    return t != NULL ? t : hv_fhir_type_find(type, strlen(type));
}

/* The first parameter name of a chain remainder ("name", "name:exact", "patient.name" → "name"/"patient"). */
static void first_name(const char *rest, char *out, size_t cap)
{
    size_t n = strcspn(rest, ":.");
    snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), rest);
}

/* True when type t can answer the chain remainder rest (its first parameter exists there). */
static int chain_fits(const hv_fhir_type_t *t, const char *rest)
{
    char name[128];
    if (strncmp(rest, "_has:", 5) == 0)
        return 1;
    first_name(rest, name, sizeof(name));
    return strcmp(name, "_id") == 0 || strcmp(name, "_lastUpdated") == 0 || hv_fhir_search_find(t, name) != NULL;
}

/*
 * A chained parameter (search.html#chaining): ref[:Type].rest=val over resources of
 * type (placeholder $tb). Matches when the reference ref points to a resource of
 * Type (each target type of ref that has rest's parameter when no Type is given)
 * that matches rest=val.
 */
static int chain(hv__search_plan_t *p, const char *type, int tb, const char *idcol, const char *left,
                 const char *rest, const char *val, int depth)
{
    const hv_fhir_type_t *t = type_of(type);
    char name[128];
    const char *colon = strchr(left, ':');
    const hv_fhir_search_t *sp;
    const hv_fhir_type_t *only = NULL;
    int first = 1, rc = HV_OK, code_b;
    snprintf(name, sizeof(name), "%.*s", (int)(colon ? (size_t)(colon - left) : strlen(left)), left);
    sp = hv_fhir_search_find(t, name);
    if (sp == NULL)
        return HV_ENOTFOUND;
    if (hv_fhir_search_type(sp) != HV_FHIR_SP_REFERENCE)
        return fail(p, "search parameter \"%.64s\": chaining needs a reference parameter", name);
    if (colon != NULL && (only = hv_fhir_resource_type(colon + 1)) == NULL)
        return fail(p, "search parameter \"%.64s\": the chain's type is not a resource type", name);
    if (rest[0] == '\0')
        return fail(p, "search parameter \"%.64s\": an empty chain", name);
    code_b = bind_only(p, name);
    if (code_b < 0)
        return code_b;
    hv_buf_printf(&p->where, "%s IN (SELECT id FROM sp_ref%s WHERE type = %s AND %scode = $%d AND (", idcol,
                  IDX(idcol, depth, "sp_ref"), TREF(tb), CORR(idcol, depth, 3, 'C'), code_b);
    for (size_t i = 0; i < (only ? 1 : hv_fhir_search_target_count(sp)); i++) {
        const hv_fhir_type_t *tt = only ? only : hv_fhir_search_target_at(sp, i);
        int ttb;
        if (tt == NULL || (!only && !chain_fits(tt, rest)))
            continue;
        if ((ttb = bind_only(p, hv_fhir_type_name(tt))) < 0)
            return ttb;
        hv_buf_printf(&p->where, "%s(rtype = $%d AND ", first ? "" : " OR ", ttb);
        rc = cond(p, hv_fhir_type_name(tt), ttb, "rid", rest, val, depth + 1);
        if (rc == HV_ENOTFOUND)
            return fail(p, "search parameter \"%.64s\": the chained parameter is not known", name);
        if (rc != HV_OK)
            return rc;
        sql(p, ")");
        first = 0;
    }
    if (first)
        return fail(p, "search parameter \"%.64s\": no target type of the reference has the chained parameter",
                    name);
    sql(p, "))");
    return HV_OK;
}

/*
 * Reverse chaining (search.html#has): _has:Type:ref:rest=val over resources of type
 * ($tb) matches those referenced through ref by a resource of Type matching rest=val.
 * rest may itself be a _has (nested).
 */
static int has(hv__search_plan_t *p, int tb, const char *idcol, const char *spec, const char *val, int depth)
{
    char t2[HV__FHIR_TYPE_MAX], ref[128];
    const char *c1 = strchr(spec, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    const hv_fhir_type_t *tt;
    const hv_fhir_search_t *sp;
    int t2b, rb, rc, top;
    size_t start = p->where.len, inner;
    if (c1 == NULL || c2 == NULL || c2[1] == '\0' || (size_t)(c1 - spec) >= sizeof(t2) ||
        (size_t)(c2 - c1 - 1) >= sizeof(ref))
        return fail(p, "search parameter \"%.64s\": _has takes _has:Type:reference:parameter", "_has");
    snprintf(t2, sizeof(t2), "%.*s", (int)(c1 - spec), spec);
    snprintf(ref, sizeof(ref), "%.*s", (int)(c2 - c1 - 1), c1 + 1);
    if ((tt = hv_fhir_resource_type(t2)) == NULL)
        return fail(p, "search parameter \"_has:%.50s\": not a resource type", t2);
    sp = hv_fhir_search_find(tt, ref);
    if (sp == NULL || hv_fhir_search_type(sp) != HV_FHIR_SP_REFERENCE)
        return fail(p, "search parameter \"_has\": \"%.64s\" is not a reference parameter of the type", ref);
    if ((t2b = bind_only(p, t2)) < 0 || (rb = bind_only(p, ref)) < 0)
        return HV_ETOOBIG;
    /*
     * Reading a _has whole is a join over every referencing resource that matches
     * (Observation?code=X: tens of thousands at a million resources), so it ranks after
     * the plain criteria (6): with a selective criterion beside it, the run drives from
     * that one and checks the _has per candidate (fhir/search_run.c, has_driver) —
     * through the reference index keyed by the target (sp_ref_vc: type, code, rid, ...) and,
     * for the condition on the referencing resource, its (type, id, code) index ("h.id":
     * the marked correlation of corr()) — instead of reading it whole.
     */
    top = depth == 0 && p->crit >= 0 && p->crit <= HV__SEARCH_MAX_PARAMS && strcmp(idcol, "r.id") == 0;
    /* "@J<k>@" (k -1 below the top level): where the run names sp_ref's (type, id, code)
     * index on SQLite when the _has is read whole — the referencing resources' ids drive
     * it; without statistics SQLite would scan the covering sp_ref_vc over the code. */
    /* "@E<k>@" (top level): the run writes "EXISTS " when the _has is checked per
     * candidate (it stops at the first referencing resource that matches) and "r.id IN "
     * when it is read whole. */
    if (top)
        hv_buf_printf(&p->where, "@E%d@(SELECT rid FROM sp_ref h@J%d@ WHERE type = $%d AND %scode = $%d AND rtype = %s AND ",
                      p->crit, p->crit, t2b, CORR(idcol, depth, 6, 'R'), rb, TREF(tb));
    else
        hv_buf_printf(&p->where, "%s IN (SELECT rid FROM sp_ref@J-1@ WHERE type = $%d AND %scode = $%d AND rtype = %s AND ",
                      idcol, t2b, CORR(idcol, depth, 6, 'R'), rb, TREF(tb));
    inner = p->where.len;
    rc = cond(p, t2, t2b, top ? "h.id" : "id", c2 + 1, val, depth + 1);
    if (rc == HV_ENOTFOUND)
        return fail(p, "search parameter \"_has\": \"%.64s\" is not known", c2 + 1);
    if (rc != HV_OK)
        return rc;
    sql(p, ")");
    /* A plain token condition of a pair: one sub-select of the reference x token rows
     * (fhir/search_has.c) instead of sp_ref and a token probe per referencing row. */
    return hv__search_has_rewrite(p, start, inner, top ? p->crit : -1, idcol, t2, ref, t2b, rb, TREF(tb));
}

static int has_total_none = 1;

void hv__search_has_total_enable(int accurate)
{
    has_total_none = accurate == 0;
}

/*
 * The default _total of a search holding a top-level _has (search.html#total leaves the
 * default to the server): with fhir.search_has_total=none (the default) and no _total
 * in the query, the total is left out, so the page stops at its _count + 1 matches in
 * row-id order (fhir/search_run.c, has_page) instead of checking every candidate to
 * count them. _total=accurate or estimate, and _summary=count, still count them all.
 */
static void has_total_default(hv__search_plan_t *p, char *const *keys, int nparts)
{
    if (!has_total_none || p->where.data == NULL || strstr(p->where.data, "@E") == NULL)
        return;
    for (int i = 0; i < nparts; i++)
        if (strcmp(keys[i], "_total") == 0)
            return;
    p->total = HV__TOTAL_NONE;
}

/*
 * A composite parameter (search.html#composite): each value is c1$c2[$c3], every
 * component matched by its own type's rules, all in the same element (grp) of the
 * resource. Values are OR (comma).
 */
static int composite(hv__search_plan_t *p, const hv_fhir_search_t *sp, int tb, const char *idcol,
                     const char *name, const char *mod, const char *val)
{
    size_t nc = hv_fhir_search_component_count(sp);
    char one[VAL_MAX], part[VAL_MAX], code[160];
    const char *s, *q;
    int first = 1, rc;
    if (mod[0] != '\0')
        return fail(p, "search parameter \"%.64s\": composite parameters take no modifier", name);
    sql(p, "(");
    for (s = val;; s++) {
        s = piece_keep(s, ',', one, sizeof(one));
        if (!first)
            sql(p, " OR ");
        hv_buf_printf(&p->where, "%s IN (", idcol);
        q = one;
        for (size_t c = 0; c < nc; c++) {
            const hv_fhir_search_t *csp = hv_fhir_search_component_at(sp, c, NULL);
            hv_fhir_search_type_t cst = csp ? hv_fhir_search_type(csp) : HV_FHIR_SP_SPECIAL;
            const char *tab = table_of(cst);
            int cb;
            /* '$' separates the components; "\$" is a literal dollar (search.html#escaping). */
            q = piece_keep(q, '$', part, sizeof(part));
            if (tab == NULL)
                return fail(p, "search parameter \"%.64s\": a component type is not supported", name);
            if (part[0] == '\0' || (c + 1 < nc && *q != '$') || (c + 1 == nc && *q != '\0'))
                return fail(p, "search parameter \"%.64s\": a composite value has one part per component,"
                               " separated by $",
                            name);
            if (*q == '$')
                q++;
            snprintf(code, sizeof(code), "%s$%zu", name, c);
            if ((cb = bind_only(p, code)) < 0)
                return cb;
            if (c == 0)
                hv_buf_printf(&p->where, "SELECT id FROM %s c0 WHERE type = %s AND code = $%d AND (", tab, TREF(tb),
                              cb);
            else
                hv_buf_printf(&p->where, " AND EXISTS (SELECT 1 FROM %s WHERE type = c0.type AND id = c0.id AND grp ="
                                         " c0.grp AND code = $%d AND (", tab, cb);
            rc = value_clause(p, name, cst, "", part);
            if (rc != HV_OK)
                return rc;
            sql(p, ")");
        }
        for (size_t c = 1; c < nc; c++)
            sql(p, ")");
        sql(p, ")");
        first = 0;
        if (*s == '\0')
            break;
    }
    sql(p, ")");
    return p->nbinds >= HV__SEARCH_MAX_BINDS ? HV_ETOOBIG : HV_OK;
}

/* Parameter-specific modifiers this planner accepts for a parameter of type st. */
static int mod_ok(hv_fhir_search_type_t st, const char *mod)
{
    if (mod[0] == '\0' || strcmp(mod, "missing") == 0)
        return 1;
    if (st == HV_FHIR_SP_STRING)
        return strcmp(mod, "exact") == 0 || strcmp(mod, "contains") == 0;
    if (st == HV_FHIR_SP_TOKEN)
        return strcmp(mod, "not") == 0 || strcmp(mod, "text") == 0 || strcmp(mod, "of-type") == 0;
    if (st == HV_FHIR_SP_REFERENCE) /* :Type and :identifier (search.html#reference) */
        return hv_fhir_resource_type(mod) != NULL || strcmp(mod, "identifier") == 0;
    if (st == HV_FHIR_SP_URI)
        return strcmp(mod, "above") == 0 || strcmp(mod, "below") == 0;
    return 0;
}

#define TEXT_MAX_WORDS 16 /* words of one _text / _content value */
#define TEXT_MAX_WORD 64  /* bytes of one word */

/*
 * _text and _content (FHIR R4 search.html#text, #content): each value's words (runs
 * of letters and digits, normalized like the index, fhir/search_special.c) must all
 * occur in the resource's narrative (_text) or in any of its string values
 * (_content); comma-separated values are OR. The words are bound as one string of
 * quoted words, which fhir/search_run.c hands to the backend's full-text search in
 * place of the marker "@TX<column>:<placeholder>@" (FTS5 MATCH / tsvector @@).
 */
static int text_cond(hv__search_plan_t *p, int tb, const char *idcol, const char *name, const char *mod,
                     const char *val)
{
    char one[VAL_MAX], norm[VAL_MAX], words[TEXT_MAX_WORDS * (TEXT_MAX_WORD + 3) + 1];
    const char *s;
    int first = 1, col = strcmp(name, "_text") == 0 ? 0 : 1;
    if (mod[0] != '\0')
        return fail(p, "search parameter \"%.64s\": takes no modifier", name);
    sql(p, "(");
    for (s = val;; s++) {
        size_t o = 0, nw = 0;
        int nb;
        s = piece(s, ',', one, sizeof(one));
        hv__search_normalize(one, norm, sizeof(norm));
        for (const unsigned char *w = (const unsigned char *)norm; *w;) {
            size_t len = 0;
            while (*w && !(*w >= 0x80 || (*w >= 'a' && *w <= 'z') || (*w >= '0' && *w <= '9')))
                w++;
            while (w[len] && (w[len] >= 0x80 || (w[len] >= 'a' && w[len] <= 'z') || (w[len] >= '0' && w[len] <= '9')))
                len++;
            if (len == 0)
                break;
            if (nw == TEXT_MAX_WORDS || len > TEXT_MAX_WORD)
                return fail(p, "search parameter \"%.64s\": at most 16 words of at most 64 bytes", name);
            o += (size_t)snprintf(words + o, sizeof(words) - o, "%s\"%.*s\"", nw ? " " : "", (int)len, (const char *)w);
            nw++;
            w += len;
        }
        if (nw == 0)
            return fail(p, "search parameter \"%.64s\": no word to search for", name);
        if ((nb = bind_only(p, words)) < 0)
            return nb;
        hv_buf_printf(&p->where, "%s%s IN (SELECT id FROM sp_text WHERE type = %s AND @TX%d:%d@)", first ? "" : " OR ",
                      idcol, TREF(tb), col, nb);
        first = 0;
        if (*s == '\0')
            break;
    }
    sql(p, ")");
    return p->nbinds >= HV__SEARCH_MAX_BINDS ? HV_ETOOBIG : HV_OK;
}

/*
 * _list (FHIR R4 search.html#list): the resources that are items of the List with
 * the given id (List.entry.item, List's "item" reference parameter); comma: any of
 * the lists. Functional lists ($current-allergies...) are not supported (501).
 */
static int list_cond(hv__search_plan_t *p, int tb, const char *idcol, const char *mod, const char *val)
{
    char one[VAL_MAX];
    const char *s;
    int first = 1, lt, ct;
    if (mod[0] != '\0')
        return fail(p, "search parameter \"%.64s\": takes no modifier", "_list");
    if ((lt = bind_only(p, "List")) < 0 || (ct = bind_only(p, "item")) < 0)
        return HV_ETOOBIG;
    hv_buf_printf(&p->where, "%s IN (SELECT rid FROM sp_ref WHERE type = $%d AND %scode = $%d AND rtype = %s AND id IN (",
                  idcol, lt, CORR(idcol, 0, 1, 'R'), ct, TREF(tb));
    for (s = val;; s++) {
        s = piece(s, ',', one, sizeof(one));
        if (one[0] == '$')
            return unsupported(p, "search parameter \"%.64s\": functional lists ($name) are not supported", "_list");
        if (!hv__fhir_id_valid(one))
            return fail(p, "search parameter \"%.64s\": takes the id of a List", "_list");
        if (!first)
            sql(p, ", ");
        if (b_text(p, one) != HV_OK)
            return HV_ETOOBIG;
        first = 0;
        if (*s == '\0')
            break;
    }
    sql(p, "))");
    return HV_OK;
}

/* The metres in one unit of a near distance (UCUM codes; km when none is given). */
static double distance_unit(const char *u)
{
    static const struct { const char *code; double m; } units[] = {
        {"", 1000.0}, {"km", 1000.0}, {"m", 1.0}, {"[mi_i]", 1609.344}, {"[mi_us]", 1609.3472}, {"mi", 1609.344}};
    for (size_t i = 0; i < HV_ARRAY_LEN(units); i++)
        if (strcmp(u, units[i].code) == 0)
            return units[i].m;
    return 0.0;
}

#define NEAR_DEFAULT_M 10000.0 /* the distance of a near value that gives none (the server's choice) */

/*
 * Location near (FHIR R4 location.html#positional, search parameter "near"):
 * latitude|longitude[|distance[|units]] in WGS84 degrees, distance in UCUM length
 * units (km when absent; 10 km when no distance). A Location matches when the
 * great-circle distance from its position is at most the distance: a bounding box
 * on the index (latitude, and longitude unless the box crosses a pole or the
 * antimeridian) narrows the rows, then the exact test on the stored unit vectors
 * (chord c² ≤ (2·sin(d/2R))², the haversine distance; fhir/search_special.c).
 */
static int near_cond(hv__search_plan_t *p, int tb, const char *idcol, const char *name, const char *mod,
                     const char *val)
{
    char one[VAL_MAX], a[VAL_MAX];
    const char *s;
    int first = 1;
    if (mod[0] != '\0')
        return fail(p, "search parameter \"%.64s\": takes no modifier", name);
    sql(p, "(");
    for (s = val;; s++) {
        double v[3] = {0, 0, 0}, ang, c, dlat, x, y, z, unit = 1000.0;
        const char *q;
        int have_dist = 0, kx, np;
        s = piece_keep(s, ',', one, sizeof(one));
        q = one;
        for (np = 0; np < 4; np++) {
            char *e = NULL;
            q = piece(q, '|', a, sizeof(a));
            if (np == 3) {
                if ((unit = distance_unit(a)) <= 0.0)
                    return fail(p, "search parameter \"%.64s\": the distance unit is not km, m, [mi_i] or [mi_us]",
                                name);
            } else if (np < 2 || a[0] != '\0') {
                v[np] = strtod(a, &e);
                if (a[0] == '\0' || e == NULL || *e != '\0' || !isfinite(v[np]))
                    return fail(p, "search parameter \"%.64s\": takes latitude|longitude|distance|units", name);
                have_dist |= np == 2;
            }
            if (*q != '|')
                break;
            q++;
        }
        if (*q != '\0' || np < 1 || v[0] < -90 || v[0] > 90 || v[1] < -180 || v[1] > 180 || v[2] < 0)
            return fail(p, "search parameter \"%.64s\": takes latitude|longitude|distance|units", name);
        ang = (have_dist ? v[2] * unit : NEAR_DEFAULT_M) / HV__EARTH_RADIUS_M;
        hv__search_geo_vector(v[0], v[1], &x, &y, &z);
        if (!first)
            sql(p, " OR ");
        hv_buf_printf(&p->where, "%s IN (SELECT id FROM sp_geo WHERE type = %s", idcol, TREF(tb));
        if (ang < M_PI) {
            dlat = ang * 180.0 / M_PI;
            sql(p, " AND lat >= ");
            b_dbl(p, v[0] - dlat);
            sql(p, " AND lat <= ");
            b_dbl(p, v[0] + dlat);
            if (v[0] + dlat < 90.0 && v[0] - dlat > -90.0) {
                double dlon = asin(fmin(1.0, sin(ang) / cos(v[0] * M_PI / 180.0))) * 180.0 / M_PI;
                if (v[1] - dlon >= -180.0 && v[1] + dlon <= 180.0) {
                    sql(p, " AND lon >= ");
                    b_dbl(p, v[1] - dlon);
                    sql(p, " AND lon <= ");
                    b_dbl(p, v[1] + dlon);
                }
            }
        }
        c = ang < M_PI ? 2.0 * sin(ang / 2.0) : 2.0;
        sql(p, " AND (x - ");
        kx = p->nbinds + 1;
        b_dbl(p, x);
        hv_buf_printf(&p->where, ") * (x - $%d) + (y - ", kx);
        b_dbl(p, y);
        hv_buf_printf(&p->where, ") * (y - $%d) + (z - ", kx + 1);
        b_dbl(p, z);
        hv_buf_printf(&p->where, ") * (z - $%d) <= ", kx + 2);
        b_dbl(p, c * c * (1.0 + 1e-12));
        sql(p, ")");
        first = 0;
        if (*s == '\0')
            break;
    }
    sql(p, ")");
    return p->nbinds >= HV__SEARCH_MAX_BINDS ? HV_ETOOBIG : HV_OK;
}

/*
 * One criterion key=val as a condition on idcol, the id column of resources of
 * `type` whose type is bound as $tb: a plain parameter name[:modifier], a chain
 * (ref[:Type].rest) or a reverse chain (_has:...). HV_ENOTFOUND: an unknown
 * parameter (at the top level, ignored unless strict).
 */
static int cond(hv__search_plan_t *p, const char *type, int tb, const char *idcol, const char *key,
                const char *val, int depth)
{
    const hv_fhir_type_t *t = type_of(type);
    const hv_fhir_search_t *sp;
    const char *tab, *s, *dot, *mod = "";
    char name[128], one[VAL_MAX];
    int first = 1, rc = HV_OK, nb;
    hv_fhir_search_type_t st, vst;
    const char *vmod;
    if (depth > MAX_CHAIN_DEPTH)
        return fail(p, "search parameter \"%.64s\": chains deeper than 4 levels", key);
    if (strncmp(key, "_has:", 5) == 0)
        return has(p, tb, idcol, key + 5, val, depth);
    if ((dot = strchr(key, '.')) != NULL) {
        char left[192];
        if ((size_t)(dot - key) >= sizeof(left))
            return fail(p, "search parameter \"%.64s\": too long", key);
        snprintf(left, sizeof(left), "%.*s", (int)(dot - key), key);
        return chain(p, type, tb, idcol, left, dot + 1, val, depth);
    }
    s = strchr(key, ':');
    if (strlen(key) >= sizeof(name))
        return fail(p, "search parameter \"%.64s\": too long", key);
    snprintf(name, sizeof(name), "%.*s", (int)(s ? (size_t)(s - key) : strlen(key)), key);
    if (s != NULL)
        mod = s + 1;
    if (strcmp(name, "_id") == 0) {
        if (depth == 0 && p->crit >= 0 && p->crit <= HV__SEARCH_MAX_PARAMS && strcmp(idcol, "r.id") == 0)
            p->crank[p->crit] = 0; /* a list of ids: the driver */
        hv_buf_printf(&p->where, "%s IN (", idcol);
        for (s = val;; s++) {
            s = piece(s, ',', one, sizeof(one));
            if (!hv__fhir_id_valid(one))
                return fail(p, "search parameter \"%.64s\": not a valid id", name);
            if (!first)
                sql(p, ", ");
            if ((rc = b_text(p, one)) != HV_OK)
                return rc;
            first = 0;
            if (*s == '\0')
                break;
        }
        sql(p, ")");
        return HV_OK;
    }
    if (strcmp(name, "_lastUpdated") == 0) {
        /* The current version's time (the newest row of type/id, not deleted). */
        hv_buf_printf(&p->where,
                      "%s IN (SELECT lu.id FROM resources lu WHERE lu.type = %s AND lu.deleted = 0 AND NOT EXISTS"
                      " (SELECT 1 FROM resources ln WHERE ln.type = lu.type AND ln.id = lu.id AND ln.version >"
                      " lu.version) AND (",
                      idcol, TREF(tb));
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
            date_clause(p, pr, lo, hi, "lu.last_ms", "lu.last_ms");
            first = 0;
            if (*s == '\0')
                break;
        }
        sql(p, "))");
        return p->nbinds >= HV__SEARCH_MAX_BINDS ? HV_ETOOBIG : HV_OK;
    }
    if (strcmp(name, "_filter") == 0)
        return unsupported(p, "search parameter \"%.64s\": the _filter syntax is not supported", name);
    if (strcmp(name, "_list") == 0)
        return list_cond(p, tb, idcol, mod, val);
    sp = hv_fhir_search_find(t, name);
    if (sp == NULL)
        return HV_ENOTFOUND;
    st = hv_fhir_search_type(sp);
    if (strcmp(name, "_text") == 0 || strcmp(name, "_content") == 0) /* type "string" in R4, no expression */
        return text_cond(p, tb, idcol, name, mod, val);
    if (st == HV_FHIR_SP_SPECIAL && strcmp(name, "near") == 0 && strcmp(hv_fhir_type_name(t), "Location") == 0)
        return near_cond(p, tb, idcol, name, mod, val);
    if (st == HV_FHIR_SP_COMPOSITE && hv__search_indexed(sp))
        return composite(p, sp, tb, idcol, name, mod, val);
    tab = table_of(st);
    if (tab == NULL || !hv__search_indexed(sp))
        return unsupported(p, "search parameter \"%.64s\": special parameters other than _text, _content and"
                       " Location near (_filter, _list, _query...) are not supported",
                    name);
    if (st == HV_FHIR_SP_TOKEN && (strcmp(mod, "above") == 0 || strcmp(mod, "below") == 0)) {
        /* Subsumption (search.html#token): :below matches the code and the codes it
         * subsumes, :above the code and the codes that subsume it, over the terminology
         * store's is-a graph. Checked like :in, against the implicit value set
         * <system>?fhir_vs=isa/<code> (below) or the store's own form
         * <system>?fhir_vs=generalizes/<code> (above; terminology/valueset.c). */
        const char *bar = strchr(val, '|');
        if (bar == NULL || bar == val || bar[1] == '\0' || strchr(val, ',') != NULL ||
            strlen(val) + 32 >= sizeof(p->vs[0].url) || strlen(name) >= sizeof(p->vs[0].code))
            return fail(p, "search parameter \"%.64s\": :above and :below take one system|code", name);
        if (p->nvs >= HV__SEARCH_MAX_VS)
            return fail(p, "search parameter \"%.64s\": more than 4 value sets in one search", name);
        if ((nb = bind_only(p, name)) < 0)
            return nb;
        snprintf(p->vs[p->nvs].url, sizeof(p->vs[p->nvs].url), "%.*s?fhir_vs=%s/%s", (int)(bar - val), val,
                 strcmp(mod, "below") == 0 ? "isa" : "generalizes", bar + 1);
        snprintf(p->vs[p->nvs].code, sizeof(p->vs[p->nvs].code), "%s", name);
        hv_buf_printf(&p->where, "%s IN (SELECT id FROM sp_tok WHERE type = %s AND code = $%d AND (@VS%d@))", idcol,
                      TREF(tb), nb, p->nvs);
        p->nvs++;
        return HV_OK;
    }
    if (st == HV_FHIR_SP_TOKEN && (strcmp(mod, "in") == 0 || strcmp(mod, "not-in") == 0)) {
        /* The members are found when the plan runs (fhir/search_run.c) and replace the
         * marker; each value is one value set (comma: OR). */
        if ((nb = bind_only(p, name)) < 0)
            return nb;
        hv_buf_printf(&p->where, "%s %sIN (SELECT id FROM sp_tok WHERE type = %s AND code = $%d AND (", idcol,
                      strcmp(mod, "not-in") == 0 ? "NOT " : "", TREF(tb), nb);
        for (s = val;; s++) {
            s = piece(s, ',', one, sizeof(one));
            if (one[0] == '\0' || strlen(one) >= sizeof(p->vs[0].url) || strlen(name) >= sizeof(p->vs[0].code))
                return fail(p, "search parameter \"%.64s\": :in and :not-in take a value set URL", name);
            if (p->nvs >= HV__SEARCH_MAX_VS)
                return fail(p, "search parameter \"%.64s\": more than 4 value sets in one search", name);
            snprintf(p->vs[p->nvs].url, sizeof(p->vs[p->nvs].url), "%s", one);
            snprintf(p->vs[p->nvs].code, sizeof(p->vs[p->nvs].code), "%s", name);
            hv_buf_printf(&p->where, "%s@VS%d@", first ? "" : " OR ", p->nvs);
            p->nvs++;
            first = 0;
            if (*s == '\0')
                break;
        }
        sql(p, "))");
        return HV_OK;
    }
    if (!mod_ok(st, mod))
        return fail(p, "search parameter \"%.64s\": this modifier is not supported for its type", name);
    {
        /* The derived indexes of fhir/search_index.c: "<code>:text" (sp_str),
         * "<code>:identifier" and "<code>:of-type" (sp_tok). */
        char sub[160];
        int derived = strcmp(mod, "text") == 0 || strcmp(mod, "identifier") == 0 || strcmp(mod, "of-type") == 0;
        if (derived) {
            snprintf(sub, sizeof(sub), "%s:%s", name, mod);
            tab = strcmp(mod, "text") == 0 ? "sp_str" : "sp_tok";
            vst = strcmp(mod, "text") == 0 ? HV_FHIR_SP_STRING : HV_FHIR_SP_TOKEN;
            vmod = strcmp(mod, "identifier") == 0 ? "" : mod;
        } else {
            vst = st;
            vmod = st == HV_FHIR_SP_REFERENCE ? "" : mod;
        }
        /* The rows are read under the code that holds them (hv__search_row_code: Patient's
         * phonetic reads the name rows). */
        if ((nb = bind_only(p, derived ? sub : hv__search_row_code(t, name))) < 0)
            return nb;
    }
    if (strcmp(mod, "missing") == 0) {
        if (strcmp(val, "true") != 0 && strcmp(val, "false") != 0)
            return fail(p, "search parameter \"%.64s\": :missing takes true or false", name);
        hv_buf_printf(&p->where, "%s %sIN (SELECT id FROM %s%s WHERE type = %s AND %scode = $%d)", idcol,
                      strcmp(val, "true") == 0 ? "NOT " : "", tab, IDX(idcol, depth, tab), TREF(tb),
                      CORR(idcol, depth, 9, 'C'), nb);
        return HV_OK;
    }
    {
        /* How selective the criterion looks, for choosing the one that drives the query. */
        int rank = strcmp(mod, "not") == 0                                    ? 9
                   : st == HV_FHIR_SP_REFERENCE                               ? 1
                   : strcmp(mod, "text") == 0 || strcmp(mod, "contains") == 0 ? 4
                   : st == HV_FHIR_SP_TOKEN || st == HV_FHIR_SP_URI             ? 2
                   : st == HV_FHIR_SP_STRING                                  ? (strcmp(mod, "exact") == 0 ? 2 : 3)
                   : st == HV_FHIR_SP_DATE                                    ? 5
                                                                              : 4;
        /* A token's :not over the searched rows themselves: their row ids, not their ids.
         * The list of one value's row ids is built in the order of sp_tok_sr (type, code,
         * value, system, rid), by appending; its ids would arrive in that order, unsorted,
         * each a random insert (~1.8x the CPU of the whole search at 100k; docs/performance.md,
         * session 23). A resource's token rows carry its current version's row id, which is
         * r's (a search reads current versions). */
        int by_rid = rank == 9 && st == HV_FHIR_SP_TOKEN && depth == 0 && strcmp(idcol, "r.id") == 0;
        hv_buf_printf(&p->where, "%s %sIN (SELECT %s FROM %s%s WHERE type = %s AND %scode = $%d AND (",
                      by_rid ? "r.rid" : idcol, strcmp(mod, "not") == 0 ? "NOT " : "", by_rid ? "rid" : "id", tab,
                      IDX(idcol, depth, tab), TREF(tb), CORR(idcol, depth, rank, 'C'), nb);
    }
    for (s = val;; s++) {
        s = piece(s, ',', one, sizeof(one));
        if (one[0] == '\0')
            return fail(p, "search parameter \"%.64s\": an empty value", name);
        if (!first)
            sql(p, " OR ");
        if (st == HV_FHIR_SP_REFERENCE && vst == HV_FHIR_SP_REFERENCE && mod[0] != '\0' && strchr(one, '/') == NULL) {
            /* name:Type=id is name=Type/id (search.html#reference). */
            char tv[VAL_MAX + HV__FHIR_TYPE_MAX];
            snprintf(tv, sizeof(tv), "%s/%s", mod, one);
            rc = value_clause(p, name, vst, "", tv);
        } else {
            rc = value_clause(p, name, vst, vmod, one);
        }
        if (rc != HV_OK)
            return rc;
        first = 0;
        if (*s == '\0')
            break;
    }
    sql(p, "))");
    return p->nbinds >= HV__SEARCH_MAX_BINDS ? HV_ETOOBIG : HV_OK;
}

int hv__search_supported(const hv_fhir_type_t *t, const hv_fhir_search_t *sp)
{
    const char *code = hv_fhir_search_code(sp);
    hv_fhir_search_type_t st = hv_fhir_search_type(sp);
    if (strcmp(code, "_id") == 0 || strcmp(code, "_lastUpdated") == 0 || strcmp(code, "_text") == 0 ||
        strcmp(code, "_content") == 0)
        return 1;
    if (strcmp(code, "near") == 0)
        return strcmp(hv_fhir_type_name(t), "Location") == 0;
    if (st == HV_FHIR_SP_COMPOSITE)
        return hv__search_indexed(sp);
    return table_of(st) != NULL && hv__search_indexed(sp);
}

/*
 * One top-level criterion key=val over the searched type ($1) or, in a system-level
 * search, over r.type: its parameter is looked up in the first _type (every _type
 * must have it) or among the parameters of all resources (Resource) without _type.
 */
static int criterion(hv__search_plan_t *p, const char *key, const char *val, const char (*types)[HV__FHIR_TYPE_MAX],
                     int ntypes)
{
    size_t len = p->where.len;
    int nb = p->nbinds, rc;
    if (p->system) {
        char name[128];
        first_name(key, name, sizeof(name));
        if (strncmp(key, "_has:", 5) != 0 && strcmp(name, "_id") != 0 && strcmp(name, "_lastUpdated") != 0) {
            if (ntypes == 0 && hv_fhir_search_find(hv_fhir_type_find("Resource", 8), name) == NULL)
                return fail(p, "search parameter \"%.64s\": a system-level search without _type takes only the"
                               " parameters of every resource",
                            name);
            for (int i = 0; i < ntypes; i++)
                if (hv_fhir_search_find(hv_fhir_resource_type(types[i]), name) == NULL)
                    return fail(p, "search parameter \"%.64s\": not a parameter of every _type", name);
            /* One code is bound for every _type: the rows must be held under the same one
             * (phonetic is Patient's name rows but Organization's own, row_alias). */
            for (int i = 1; i < ntypes; i++)
                if (strcmp(hv__search_row_code(hv_fhir_resource_type(types[i]), name),
                           hv__search_row_code(hv_fhir_resource_type(types[0]), name)) != 0)
                    return unsupported(p, "search parameter \"%.64s\": across these _types (its rows differ by type)"
                                          " is not supported",
                                       name);
        }
    }
    sql(p, " AND ");
    p->crit = p->ncrit <= HV__SEARCH_MAX_PARAMS ? p->ncrit : -1;
    if (p->crit >= 0)
        p->crank[p->crit] = 99;
    rc = cond(p, p->system ? (ntypes ? types[0] : "Resource") : p->type, p->system ? 0 : 1, "r.id", key, val, 0);
    if (rc == HV_OK && p->crit >= 0) {
        p->cspan[p->crit][0] = len;
        p->cspan[p->crit][1] = p->where.len;
        p->ncrit++;
    }
    p->crit = -1;
    if (rc == HV_ENOTFOUND) {
        /* An unknown parameter leaves nothing behind: the SQL and the binds as they were. */
        p->where.len = len;
        if (p->where.data != NULL)
            p->where.data[len] = '\0';
        while (p->nbinds > nb) {
            p->nbinds--;
            hv_free(p->binds[p->nbinds].s);
            p->binds[p->nbinds].s = NULL;
        }
    }
    return rc;
}

#define MAX_PARTS 128 /* key=value pairs of one query string */

/*
 * The criteria on one date parameter of the searched type, all its non-OR values
 * (date=ge2020-01-01&date=lt2021-01-01), as one range scan of sp_date: each value
 * must hold for the same index row (so a resource matches when one of its values is
 * in the range, as a range search means; HAPI and Blaze do the same). The values
 * bound the stored range's start lo from below and above:
 *
 *   eq  lo ≥ q.lo, lo ≤ q.hi        gt  hi > q.hi      ge  hi ≥ q.lo
 *   sa  lo > q.hi                   lt  lo < q.lo      le  lo ≤ q.hi     eb  lo ≤ hi < q.lo
 *
 * A bound on hi (gt, ge) bounds lo only for short values (hi - lo ≤ 32 days,
 * HV__SEARCH_DATE_SHORT), so the long ones are read from the partial index
 * sp_date_long in a second branch of the same sub-select. Returns 1 when the
 * criterion at i is not such a date criterion (the caller plans it alone), and
 * marks the criteria it took in used[].
 */
static int date_range(hv__search_plan_t *p, int i, char **keys, char **vals, int nparts, unsigned char *used)
{
    const hv_fhir_search_t *sp;
    const int64_t none = INT64_MIN;
    int64_t lo, hi, lo_min = none, lo_max = INT64_MAX, hi_min = none;
    int nb, take[MAX_PARTS], ntake = 0;
    if (p->system || keys[i][0] == '_' || strpbrk(keys[i], ":.") != NULL || strchr(vals[i], ',') != NULL ||
        (sp = hv_fhir_search_find(type_of(p->type), keys[i])) == NULL || hv_fhir_search_type(sp) != HV_FHIR_SP_DATE ||
        !hv__search_indexed(sp))
        return 1;
    for (int j = i; j < nparts; j++) {
        const char *v = vals[j];
        hv__sp_prefix_t pr;
        if (used[j] || strcmp(keys[j], keys[i]) != 0 || strchr(vals[j], ',') != NULL)
            continue;
        pr = hv__search_prefix(&v);
        if (hv__search_date_range(v, &lo, &hi) != HV_OK)
            return fail(p, "search parameter \"%.64s\": not a date (YYYY[-MM[-DD[Thh:mm:ss[.sss][Z]]]])", keys[i]);
        switch (pr) {
        case HV__SP_EQ: lo_min = lo > lo_min ? lo : lo_min; lo_max = hi < lo_max ? hi : lo_max; break;
        case HV__SP_SA: lo_min = hi + 1 > lo_min ? hi + 1 : lo_min; break;
        case HV__SP_GT: hi_min = hi + 1 > hi_min ? hi + 1 : hi_min; break;
        case HV__SP_GE: hi_min = lo > hi_min ? lo : hi_min; break;
        case HV__SP_LT:
        case HV__SP_EB: lo_max = lo - 1 < lo_max ? lo - 1 : lo_max; break;
        case HV__SP_LE: lo_max = hi < lo_max ? hi : lo_max; break;
        default: break; /* ne, ap: no bound */
        }
        take[ntake++] = j;
        used[j] = 1;
    }
    if ((nb = bind_only(p, keys[i])) < 0)
        return nb;
    /* A lower bound on hi bounds the start of the short values only; it is worth a
     * second branch unless a direct bound on lo is already at least as tight. */
    int branches = hi_min != none && (lo_min == none || lo_min < hi_min - HV__SEARCH_DATE_SHORT) ? 2 : 1;
    size_t start = p->where.len;
    hv_buf_printf(&p->where, " AND r.id IN (");
    p->crit = p->ncrit <= HV__SEARCH_MAX_PARAMS ? p->ncrit : -1;
    if (p->crit >= 0)
        p->crank[p->crit] = 99;
    for (int b = 0; b < branches; b++) {
        hv_buf_printf(&p->where, "%sSELECT id FROM sp_date%s WHERE type = $1 AND %scode = $%d", b ? " UNION ALL " : "",
                      IDX("r.id", 0, "sp_date"), CORR("r.id", 0, lo_min != none && lo_max != INT64_MAX ? 4 : 5, 'C'),
                      nb);
        if (b == 1) {
            sql(p, " AND hi - lo > " HV__SEARCH_DATE_SHORT_SQL);
        } else if (branches == 2) {
            sql(p, " AND lo >= ");
            b_int(p, lo_min != none && lo_min > hi_min - HV__SEARCH_DATE_SHORT ? lo_min : hi_min - HV__SEARCH_DATE_SHORT);
        } else if (lo_min != none) {
            sql(p, " AND lo >= ");
            b_int(p, lo_min);
        }
        if (lo_max != INT64_MAX) {
            sql(p, " AND lo <= ");
            b_int(p, lo_max);
        }
        for (int k = 0; k < ntake; k++) {
            const char *v = vals[take[k]];
            hv__sp_prefix_t pr = hv__search_prefix(&v);
            hv__search_date_range(v, &lo, &hi);
            sql(p, " AND (");
            date_clause(p, pr, lo, hi, "lo", "hi");
            sql(p, ")");
        }
    }
    sql(p, ")");
    if (p->crit >= 0) {
        p->cspan[p->crit][0] = start;
        p->cspan[p->crit][1] = p->where.len;
        p->ncrit++;
    }
    p->crit = -1;
    return p->nbinds >= HV__SEARCH_MAX_BINDS ? HV_ETOOBIG : HV_OK;
}

static int is_result_param(const char *k)
{
    static const char *const names[] = {"_format",  "_pretty",          "_summary",           "_elements",
                                        "_count",   "_cursor",          "_total",             "_sort",
                                        "_include", "_include:iterate", "_include:recurse",   "_revinclude",
                                        "_revinclude:iterate", "_revinclude:recurse", "_contained",
                                        "_containedType"};
    for (size_t i = 0; i < HV_ARRAY_LEN(names); i++)
        if (strcmp(k, names[i]) == 0)
            return 1;
    return 0;
}

/* _include / _revinclude: Type:param[:target] or Type:* (search.html#include). */
static int include_param(hv__search_plan_t *p, const char *k, const char *v)
{
    hv__sp_include_t *in;
    const char *c1 = strchr(v, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    const hv_fhir_type_t *t;
    const hv_fhir_search_t *sp;
    if (p->ninc >= HV__SEARCH_MAX_INCLUDE_PARAMS)
        return fail(p, "more than 16 %s parameters", k);
    in = &p->inc[p->ninc];
    memset(in, 0, sizeof(*in));
    in->rev = strncmp(k, "_revinclude", 11) == 0;
    in->iterate = strchr(k, ':') != NULL;
    if (c1 == NULL || (size_t)(c1 - v) >= sizeof(in->src) ||
        (size_t)((c2 ? c2 : c1 + strlen(c1)) - c1 - 1) >= sizeof(in->code) || (c2 && strlen(c2 + 1) >= sizeof(in->target)))
        return fail(p, "%s takes Type:parameter[:targetType] or Type:*", k);
    snprintf(in->src, sizeof(in->src), "%.*s", (int)(c1 - v), v);
    snprintf(in->code, sizeof(in->code), "%.*s", (int)((c2 ? c2 : c1 + strlen(c1)) - c1 - 1), c1 + 1);
    if (c2 != NULL)
        snprintf(in->target, sizeof(in->target), "%s", c2 + 1);
    if ((t = hv_fhir_resource_type(in->src)) == NULL)
        return fail(p, "%s: the source is not a resource type", k);
    if (in->target[0] != '\0' && hv_fhir_resource_type(in->target) == NULL)
        return fail(p, "%s: the target is not a resource type", k);
    if (strcmp(in->code, "*") == 0) {
        in->code[0] = '\0';
    } else {
        sp = hv_fhir_search_find(t, in->code);
        if (sp == NULL || hv_fhir_search_type(sp) != HV_FHIR_SP_REFERENCE)
            return fail(p, "%s: not a reference parameter of the source type", k);
    }
    p->ninc++;
    return HV_OK;
}

static int result_param(hv__search_plan_t *p, const char *k, const char *v, int64_t max_count)
{
    char *end = NULL;
    if (strncmp(k, "_include", 8) == 0 || strncmp(k, "_revinclude", 11) == 0) {
        return include_param(p, k, v);
    } else if (strcmp(k, "_count") == 0) {
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
        return hv__search_sort_parse(p, v);
    } else if (strcmp(k, "_contained") == 0 || strcmp(k, "_containedType") == 0) {
        /* search.html#contained: contained resources are not searched by this server;
         * _contained=false (the default) is what every search does. */
        if (strcmp(k, "_contained") == 0 && strcmp(v, "false") == 0)
            return HV_OK;
        if (strcmp(k, "_contained") == 0 && strcmp(v, "true") != 0 && strcmp(v, "both") != 0)
            return fail(p, "%s must be true, false or both", k);
        return unsupported(p, "%s: searching contained resources is not supported", k);
    } else if (strcmp(k, "_cursor") == 0) {
        if (hv__search_cursor_parse(p, v) != HV_OK)
            return fail(p, "%s is not a cursor this server made", k);
    }
    return HV_OK;
}

int hv__search_plan_build(hv__search_plan_t *p, const char *type, const char *query, int strict,
                          int64_t def_count, int64_t max_count)
{
    char *q = hv_strdup(query ? query : ""), *save = NULL, *part;
    char types[HV__SEARCH_MAX_TYPES][HV__FHIR_TYPE_MAX];
    char *keys[MAX_PARTS], *vals[MAX_PARTS];
    unsigned char used[MAX_PARTS] = {0};
    int rc = HV_OK, ncrit = 0, ntypes = 0, nparts = 0;
    if (q == NULL)
        return HV_ENOMEM;
    snprintf(p->type, sizeof(p->type), "%s", p->system ? "" : type);
    p->count = def_count;
    if (p->system) {
        /* _type=T1,T2 (http.html#search, system level): read before the criteria that depend on it. */
        const char *t = strstr(query ? query : "", "_type=");
        while (t != NULL && t != query && t[-1] != '&')
            t = strstr(t + 1, "_type=");
        if (t != NULL) {
            char list[2048];
            long n;
            snprintf(list, sizeof(list), "%.*s", (int)strcspn(t + 6, "&"), t + 6);
            if ((n = hv_url_decode(list, strlen(list), 1)) < 0) {
                rc = fail(p, "a bad percent escape in \"%.64s\"", "_type");
                goto out;
            }
            list[n] = '\0';
            for (char *sv = NULL, *tt = strtok_r(list, ",", &sv); tt != NULL; tt = strtok_r(NULL, ",", &sv)) {
                if (hv_fhir_resource_type(tt) == NULL) {
                    rc = fail(p, "_type: \"%.64s\" is not a resource type", tt);
                    goto out;
                }
                if (ntypes >= HV__SEARCH_MAX_TYPES) {
                    rc = fail(p, "_type: more than %s types", "32");
                    goto out;
                }
                snprintf(types[ntypes++], HV__FHIR_TYPE_MAX, "%s", tt);
            }
        }
    }
    p->systypes = (const char(*)[HV__FHIR_TYPE_MAX])types;
    p->nsystypes = ntypes;
    /* $1 is the resource type (system level: the first _type, or "" matching no type). */
    p->binds[0].kind = 0;
    p->binds[0].s = hv_strdup(p->system ? (ntypes ? types[0] : "") : type);
    p->nbinds = 1;
    if (p->binds[0].s == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    if (!p->system) {
        snprintf(p->typesql, sizeof(p->typesql), "r.type = $1");
    } else if (ntypes == 0) {
        snprintf(p->typesql, sizeof(p->typesql), "r.type <> $1");
    } else {
        size_t o = (size_t)snprintf(p->typesql, sizeof(p->typesql), "r.type IN ($1");
        for (int i = 1; i < ntypes; i++) {
            int k = bind_only(p, types[i]);
            if (k < 0) {
                rc = k;
                goto out;
            }
            o += (size_t)snprintf(p->typesql + o, sizeof(p->typesql) - o, ", $%d", k);
        }
        snprintf(p->typesql + o, sizeof(p->typesql) - o, ")");
    }
    if (p->compartment[0] != '\0') {
        /* The Patient compartment (compartmentdefinition-patient.html) from the store's
         * refs index; a Patient is in its own compartment. */
        int k = bind_only(p, p->compartment);
        if (k < 0) {
            rc = k;
            goto out;
        }
        hv_buf_printf(&p->where, " AND (r.id IN (SELECT id FROM refs WHERE type = $1 AND patient = $%d)%s", k,
                      strcmp(type, "Patient") == 0 ? " OR r.id = $" : "");
        if (strcmp(type, "Patient") == 0)
            hv_buf_printf(&p->where, "%d", k);
        sql(p, ")");
    }
    /* Decoded first, so that the criteria of one date parameter can be planned together. */
    for (part = strtok_r(q, "&", &save); part != NULL; part = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(part, '='), *key = part, *val;
        long kl, vl;
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
        if (nparts == MAX_PARTS) {
            rc = fail(p, "more than %s parameters", "128");
            goto out;
        }
        keys[nparts] = key;
        vals[nparts++] = val;
    }
    for (int i = 0; i < nparts; i++) {
        char *key = keys[i], *val = vals[i], *colon;
        if (used[i])
            continue;
        if (is_result_param(key)) {
            rc = result_param(p, key, val, max_count);
            if (rc != HV_OK)
                goto out;
            continue;
        }
        if (++ncrit > HV__SEARCH_MAX_PARAMS) {
            rc = fail(p, "more than %s search parameters", "32");
            goto out;
        }
        if (p->system && strcmp(key, "_type") == 0)
            continue;
        rc = date_range(p, i, keys, vals, nparts, used);
        if (rc == 1)
            rc = criterion(p, key, val, (const char(*)[HV__FHIR_TYPE_MAX])types, ntypes);
        if (rc == HV_ENOTFOUND) {
            colon = strchr(key, ':');
            if (colon != NULL)
                *colon = '\0';
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
    /* Token + date / quantity criteria of one resource: one combined index (fhir/search_combo.c). */
    if (rc == HV_OK)
        rc = hv__search_combo_rewrite(p);
    if (rc == HV_OK)
        has_total_default(p, keys, nparts);
    if (p->has_cursor && hv__search_cursor_check(p) != HV_OK)
        rc = fail(p, "%s is not a cursor this server made for this _sort", "_cursor");
out:
    p->systypes = NULL;
    p->nsystypes = 0;
    hv_free(q);
    return rc;
}

int hv__search_plan_compartment(hv__search_plan_t *p, const char *patient)
{
    /* The Patient itself for a Patient row, else the store's refs index (fhir/store.c); works
     * for a typed and a system-level search alike. The id is bound once and used twice. */
    sql(p, " AND ((r.type = 'Patient' AND r.id = ");
    if (b_text(p, patient) != HV_OK)
        return HV_ETOOBIG;
    hv_buf_printf(&p->where,
                  ") OR (r.type <> 'Patient' AND EXISTS (SELECT 1 FROM refs c WHERE c.patient = $%d"
                  " AND c.type = r.type AND c.id = r.id)))",
                  p->nbinds);
    return hv_buf_puts(&p->where, "");
}
