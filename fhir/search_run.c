/*
 * search_run.c — sorting, keyset paging and running of a planned FHIR search
 * (FHIR R4 search.html#sort, #count, http.html#paging).
 *
 * _sort takes up to HV__SEARCH_MAX_SORT keys, "-" for descending: _lastUpdated, _id,
 * or a date, string, token, number, quantity or uri parameter. A parameter key
 * sorts by the resource's smallest value ascending and its largest descending;
 * resources without a value come last in either direction (search.html#sort leaves
 * this to the server). Ties are broken by the row id, so the order is total.
 *
 * The statement: WITH m AS (the matching current versions, with one sort value
 * column per parameter key) SELECT ... ORDER BY the keys, rid LIMIT count + 1.
 * Each row's cursor is the list of its sort column values and its row id
 * ("s<hex>", "i<int>", "d<double>", "~"-separated, the row id last); the next page
 * is the rows after it in the same order (a keyset, not an offset), so pages never
 * repeat or skip a resource while others are written, and page 1,000 costs what
 * page 1 costs.
 */
#include "config.h"

#include <json-c/json.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhirpath.h"
#include "fhir/search_int.h"

/* Deferrals of search indexes under way in the process (hv__search_values_deferred). */
static atomic_int values_deferred;

void hv__search_values_deferred(int delta)
{
    atomic_fetch_add(&values_deferred, delta);
}

int hv__search_values_deferring(void)
{
    return atomic_load(&values_deferred) > 0;
}

int hv__search_values_hinted(hv_db_t *db)
{
    return hv_db_kind(db) == HV_DB_SQLITE && atomic_load(&values_deferred) == 0;
}

/* The sortable type of parameter code of t (0 when t has none that can be sorted on). */
static hv_fhir_search_type_t sortable(const hv_fhir_type_t *t, const char *code)
{
    const hv_fhir_search_t *sp = t != NULL ? hv_fhir_search_find(t, code) : NULL;
    hv_fhir_search_type_t st = sp ? hv_fhir_search_type(sp) : HV_FHIR_SP_SPECIAL;
    if (sp == NULL || !hv__search_indexed(sp) ||
        !(st == HV_FHIR_SP_DATE || st == HV_FHIR_SP_STRING || st == HV_FHIR_SP_TOKEN || st == HV_FHIR_SP_NUMBER ||
          st == HV_FHIR_SP_QUANTITY || st == HV_FHIR_SP_URI))
        return 0;
    return st;
}

/*
 * _sort (FHIR R4 search.html#sort). In a system-level search a parameter key must
 * be sortable, with the same type, in every _type (without _type: a parameter of
 * every resource, Resource's); the sort values come from each row's own type's index.
 */
int hv__search_sort_parse(hv__search_plan_t *p, const char *v)
{
    const hv_fhir_type_t *t = p->system ? (p->nsystypes > 0 ? hv_fhir_resource_type(p->systypes[0])
                                                             : hv_fhir_type_find("Resource", 8))
                                        : hv_fhir_resource_type(p->type);
    char key[128];
    p->nsort = 0;
    while (*v) {
        size_t n = strcspn(v, ",");
        hv__sp_sort_t *k;
        const char *s = key;
        if (n == 0 || n >= sizeof(key)) {
            snprintf(p->msg, sizeof(p->msg), "_sort: an empty or too long key");
            return HV_EINVAL;
        }
        if (p->nsort >= HV__SEARCH_MAX_SORT) {
            snprintf(p->msg, sizeof(p->msg), "_sort: more than %d keys", HV__SEARCH_MAX_SORT);
            return HV_EINVAL;
        }
        snprintf(key, sizeof(key), "%.*s", (int)n, v);
        k = &p->sort[p->nsort];
        memset(k, 0, sizeof(*k));
        k->desc = s[0] == '-';
        if (k->desc)
            s++;
        if (strcmp(s, "_lastUpdated") == 0) {
            k->kind = HV__SORT_LASTUPDATED;
        } else if (strcmp(s, "_id") == 0) {
            k->kind = HV__SORT_ID;
        } else {
            hv_fhir_search_type_t st = sortable(t, s);
            /* The sort values are read under the code that holds the rows (phonetic reads
             * name on Patient: hv__search_row_code), one code for every _type. */
            const char *rows = hv__search_row_code(t, s);
            for (int i = 1; p->system && st != 0 && i < p->nsystypes; i++)
                if (sortable(hv_fhir_resource_type(p->systypes[i]), s) != st ||
                    strcmp(hv__search_row_code(hv_fhir_resource_type(p->systypes[i]), s), rows) != 0)
                    st = 0;
            if (st == 0 || strlen(s) >= sizeof(k->code)) {
                snprintf(p->msg, sizeof(p->msg),
                         "_sort: \"%.64s\" is not a date, string, token, number, quantity or uri parameter of %s", s,
                         p->system ? "every _type" : p->type);
                return HV_EINVAL;
            }
            k->kind = HV__SORT_PARAM;
            k->st = st;
            snprintf(k->code, sizeof(k->code), "%s", rows);
        }
        p->nsort++;
        v += n;
        if (*v == ',')
            v++;
    }
    return HV_OK;
}

/* The kind (0 text, 1 int64, 2 double) of the value column of a sort key. */
static int value_kind(const hv__sp_sort_t *k)
{
    if (k->kind == HV__SORT_ID)
        return 0;
    if (k->kind == HV__SORT_LASTUPDATED)
        return 1;
    switch (k->st) {
    case HV_FHIR_SP_DATE: return 1;
    case HV_FHIR_SP_NUMBER:
    case HV_FHIR_SP_QUANTITY: return 2;
    default: return 0;
    }
}

int hv__search_cursor_parse(hv__search_plan_t *p, const char *v)
{
    const char *t;
    char *end = NULL;
    long long rid;
    p->has_cursor = 1;
    for (int i = 0; i < p->nckeys; i++)
        hv_free(p->ckeys[i].s);
    p->nckeys = 0;
    if (strlen(v) > HV__SEARCH_CURSOR_MAX)
        return HV_EINVAL;
    while ((t = strchr(v, '~')) != NULL) {
        hv__sp_ckey_t *c;
        size_t n = (size_t)(t - v);
        if (p->nckeys >= 2 * HV__SEARCH_MAX_SORT || n == 0)
            return HV_EINVAL;
        c = &p->ckeys[p->nckeys];
        memset(c, 0, sizeof(*c));
        if (v[0] == 's' && (n - 1) % 2 == 0) {
            size_t len = (n - 1) / 2;
            c->s = hv_malloc(len + 1);
            if (c->s == NULL)
                return HV_ENOMEM;
            p->nckeys++;
            for (size_t i = 0; i < len; i++) {
                unsigned x;
                if (sscanf(v + 1 + 2 * i, "%2x", &x) != 1 || !strchr("0123456789abcdef", v[1 + 2 * i]) ||
                    !strchr("0123456789abcdef", v[2 + 2 * i]))
                    return HV_EINVAL;
                c->s[i] = (char)x;
            }
            c->s[len] = '\0';
            if (strlen(c->s) != len)
                return HV_EINVAL;
            c->kind = 0;
        } else if (v[0] == 'i') {
            c->i = strtoll(v + 1, &end, 10);
            if (end != t || end == v + 1)
                return HV_EINVAL;
            c->kind = 1;
            p->nckeys++;
        } else if (v[0] == 'd') {
            c->d = strtod(v + 1, &end);
            if (end != t || end == v + 1 || !isfinite(c->d))
                return HV_EINVAL;
            c->kind = 2;
            p->nckeys++;
        } else {
            return HV_EINVAL;
        }
        v = t + 1;
    }
    rid = strtoll(v, &end, 10);
    if (end == v || *end != '\0' || rid < 0)
        return HV_EINVAL;
    p->crid = rid;
    return HV_OK;
}

int hv__search_cursor_check(const hv__search_plan_t *p)
{
    int n = 0;
    for (int i = 0; i < p->nsort; i++) {
        if (p->sort[i].kind == HV__SORT_PARAM) {
            if (n >= p->nckeys || p->ckeys[n].kind != 1)
                return HV_EINVAL; /* the "no value" flag */
            n++;
        }
        if (n >= p->nckeys || p->ckeys[n].kind != value_kind(&p->sort[i]))
            return HV_EINVAL;
        n++;
    }
    return n == p->nckeys ? HV_OK : HV_EINVAL;
}

/* The sort columns: their SQL expressions over m, directions and kinds. */
typedef struct col {
    char expr[96];
    int desc, kind;
} col_t;

static int sort_columns(const hv__search_plan_t *p, col_t *cols)
{
    int n = 0;
    for (int i = 0; i < p->nsort; i++) {
        const hv__sp_sort_t *k = &p->sort[i];
        if (k->kind == HV__SORT_LASTUPDATED) {
            snprintf(cols[n].expr, sizeof(cols[n].expr), "m.last_ms");
        } else if (k->kind == HV__SORT_ID) {
            snprintf(cols[n].expr, sizeof(cols[n].expr), "m.id");
        } else {
            /* resources without a value last: a flag column first, always ascending */
            snprintf(cols[n].expr, sizeof(cols[n].expr), "CASE WHEN m.sk%d IS NULL THEN 1 ELSE 0 END", i);
            cols[n].desc = 0;
            cols[n].kind = 1;
            n++;
            snprintf(cols[n].expr, sizeof(cols[n].expr), "COALESCE(m.sk%d, %s)", i,
                     value_kind(k) == 0 ? "''" : "0");
        }
        cols[n].desc = k->desc;
        cols[n].kind = value_kind(k);
        n++;
    }
    return n;
}

static const char *table_of(hv_fhir_search_type_t st)
{
    switch (st) {
    case HV_FHIR_SP_STRING: return "sp_str";
    case HV_FHIR_SP_TOKEN: return "sp_tok";
    case HV_FHIR_SP_DATE: return "sp_date";
    case HV_FHIR_SP_NUMBER:
    case HV_FHIR_SP_QUANTITY: return "sp_num";
    default: return "sp_uri";
    }
}

static void bind_key(hv_db_stmt_t *st, int idx, const hv__sp_ckey_t *c)
{
    if (c->kind == 0)
        hv_db_bind_text(st, idx, c->s, strlen(c->s));
    else if (c->kind == 1)
        hv_db_bind_int64(st, idx, c->i);
    else
        hv_db_bind_double(st, idx, c->d);
}


/* Text values bound after the plan's own (the members of :in value sets). */
typedef struct extra {
    char **s;
    int n, cap;
} extra_t;

static int extra_add(extra_t *x, const char *v)
{
    if (x->n == x->cap) {
        int cap = x->cap ? 2 * x->cap : 64;
        char **ns = hv_realloc(x->s, (size_t)cap * sizeof(*ns));
        if (ns == NULL)
            return HV_ENOMEM;
        x->s = ns;
        x->cap = cap;
    }
    x->s[x->n] = hv_strdup(v != NULL ? v : "");
    return x->s[x->n++] != NULL ? HV_OK : HV_ENOMEM;
}

static void extra_free(extra_t *x)
{
    for (int i = 0; i < x->n; i++)
        hv_free(x->s[i]);
    hv_free(x->s);
}

/*
 * The members of value set k (search.html#token, :in): every distinct system|code
 * stored under the parameter is asked of FHIRPath memberOf() — the terminology
 * module's provider (terminology/valueset.c) — and the members are written into sql
 * as "(system = $a AND value = $b) OR ...", their values appended to x from
 * placeholder *n + 1 on. HV_EINVAL with p->msg when the value set cannot be expanded.
 */
static int vs_clause(hv_db_t *db, hv__search_plan_t *p, int k, hv_buf_t *sql, extra_t *x, int *n)
{
    static const char expr[] = "%c.memberOf(%vs)";
    hv_fhirpath_t *fp = NULL;
    hv_db_stmt_t *st = NULL;
    hv_arena_t *arena = hv_arena_new(0);
    struct json_object *empty = json_object_new_object(), *url = json_object_new_string(p->vs[k].url);
    hv_error_t err;
    int rc, rows = 0, members = 0;
    memset(&err, 0, sizeof(err));
    if (arena == NULL || empty == NULL || url == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    rc = hv_fhirpath_compile(expr, 0, NULL, &fp, &err);
    if (rc != HV_OK)
        goto out;
    rc = hv_db_prepare(db, "SELECT DISTINCT system, value FROM sp_tok WHERE code = $1 LIMIT $2", &st);
    if (rc != HV_OK)
        goto out;
    hv_db_bind_text(st, 1, p->vs[k].code, strlen(p->vs[k].code));
    hv_db_bind_int64(st, 2, HV__SEARCH_MAX_VS_CODES + 1);
    hv_buf_puts(sql, "(");
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t sl = 0, cl = 0;
        const char *sys = hv_db_column_text(st, 0, &sl), *code = hv_db_column_text(st, 1, &cl);
        struct json_object *coding = json_object_new_object();
        hv_fhirpath_var_t vars[2];
        hv_fhirpath_env_t env;
        hv_fhirpath_result_t *res = NULL;
        hv_fhirpath_item_t it;
        char *syss = sys ? hv_strndup(sys, sl) : NULL, *codes = hv_strndup(code ? code : "", cl);
        int member = -1;
        if (++rows > HV__SEARCH_MAX_VS_CODES) {
            snprintf(p->msg, sizeof(p->msg),
                     "search parameter \"%.64s\": more than %d distinct codes are stored for it, too many to check"
                     " against a value set",
                     p->vs[k].code, HV__SEARCH_MAX_VS_CODES);
            rc = HV_EINVAL;
        }
        if (rc != HV_EINVAL && (coding == NULL || codes == NULL || (sys != NULL && syss == NULL)))
            rc = HV_ENOMEM;
        if (rc == HV_DB_ROW) {
            if (syss != NULL)
                json_object_object_add(coding, "system", json_object_new_string(syss));
            json_object_object_add(coding, "code", json_object_new_string(codes));
            memset(vars, 0, sizeof(vars));
            memset(&env, 0, sizeof(env));
            vars[0].name = "c";
            vars[0].json = coding;
            vars[0].type = "Coding";
            vars[1].name = "vs";
            vars[1].json = url;
            env.vars = vars;
            env.nvars = 2;
            hv_arena_reset(arena);
            if (hv_fhirpath_eval(fp, empty, &env, arena, &res, &err) == HV_OK && hv_fhirpath_result_count(res) == 1 &&
                hv_fhirpath_result_item(res, 0, &it) == HV_OK && it.kind == HV_FHIRPATH_BOOLEAN)
                member = strcmp(it.text, "true") == 0;
            if (member < 0) {
                /* memberOf() is empty for a value set the terminology does not know (or
                 * when no terminology runs), an error when it cannot expand it. */
                snprintf(p->msg, sizeof(p->msg), "search parameter \"%.64s\": the value set %.200s cannot be expanded",
                         p->vs[k].code, p->vs[k].url);
                rc = HV_EINVAL;
            } else if (member) {
                hv_buf_printf(sql, "%s(%s", members ? " OR " : "", syss ? "system = $" : "system IS NULL");
                if (syss) {
                    hv_buf_printf(sql, "%d", ++*n);
                    rc = extra_add(x, syss);
                }
                hv_buf_printf(sql, " AND value = $%d)", ++*n);
                if (rc == HV_DB_ROW || rc == HV_OK)
                    rc = extra_add(x, codes);
                if (rc == HV_OK)
                    rc = HV_DB_ROW;
                members++;
            }
        }
        json_object_put(coding);
        hv_free(syss);
        hv_free(codes);
        if (rc != HV_DB_ROW)
            break;
    }
    hv_db_done(st);
    if (rc < 0 || rc == HV_EINVAL)
        goto out;
    rc = HV_OK;
    hv_buf_puts(sql, members ? ")" : "1 = 0)");
out:
    hv_fhirpath_free(fp);
    json_object_put(empty);
    json_object_put(url);
    hv_arena_free(arena);
    return rc;
}

/*
 * Writes the criteria text w (from p->where) into q with its markers resolved
 * (fhir/search_int.h): criterion k's sub-select is correlated with r ("id = r.id AND",
 * on SQLite through its (type, id, code) index) unless k is the driver or driver is
 * -2 (nothing correlated); -3 correlates every criterion. The members of :in value sets
 * go in place of their markers, their values appended to x from placeholder *n + 1 on.
 */
static int expand(hv_db_t *db, hv__search_plan_t *p, const char *w, int driver, hv_buf_t *q, extra_t *extra, int *n)
{
    for (const char *mk; *w; w = mk) {
        int k;
        mk = strchr(w, '@');
        if (mk == NULL) {
            hv_buf_puts(q, w);
            break;
        }
        hv_buf_append(q, w, (size_t)(mk - w));
        if (strncmp(mk, "@I", 2) == 0) {
            /* "@I<k>:<table>@": a correlated sub-select on SQLite reads the table's
             * (type, id, code) index (migration 3), not an index on its values. */
            const char *colon = strchr(mk, ':'), *e = colon ? strchr(colon, '@') : NULL;
            k = atoi(mk + 2);
            if (e == NULL)
                return HV_EINVAL;
            if (k != driver && driver != -2 && hv__search_values_hinted(db))
                hv_buf_printf(q, " INDEXED BY %.*s_idc", (int)(e - colon - 1), colon + 1);
            mk = e + 1;
            continue;
        }
        if (strncmp(mk, "@C", 2) == 0 || strncmp(mk, "@R", 2) == 0) {
            /* A top-level criterion's correlation marker: the driver's sub-select is
             * read once, the others are checked per candidate row (fhir/search_int.h). */
            k = atoi(mk + 2);
            if (k != driver && driver != -2)
                hv_buf_puts(q, mk[1] == 'C' ? "id = r.id AND " : "rid = r.id AND ");
            mk = strchr(mk + 2, '@');
            if (mk == NULL)
                return HV_EINVAL;
            mk++;
            continue;
        }
        if (strncmp(mk, "@H", 2) == 0) {
            /* The condition on the referencing row inside criterion k's _has
             * (fhir/search_plan.c, has): correlated with it when k is checked per
             * candidate. */
            k = atoi(mk + 2);
            if (k != driver && driver != -2)
                hv_buf_puts(q, "id = h.id AND ");
            mk = strchr(mk + 2, '@');
            if (mk == NULL)
                return HV_EINVAL;
            mk++;
            continue;
        }
        if (strncmp(mk, "@E", 2) == 0) {
            /* A top-level _has's head (fhir/search_plan.c, has): an EXISTS when checked
             * per candidate (its "@R" marker correlates it with r.id), stopping at the
             * first match, else the membership of r.id in the _has read whole. */
            k = atoi(mk + 2);
            hv_buf_puts(q, k != driver && driver != -2 ? "EXISTS " : "r.id IN ");
            mk = strchr(mk + 2, '@');
            if (mk == NULL)
                return HV_EINVAL;
            mk++;
            continue;
        }
        if (strncmp(mk, "@J", 2) == 0) {
            /* A _has's sp_ref (fhir/search_plan.c, has): read from the referencing
             * resources' ids by (type, id, code) unless checked per candidate. */
            k = atoi(mk + 2);
            if (hv__search_values_hinted(db) && (k < 0 || k == driver || driver == -2))
                hv_buf_puts(q, " INDEXED BY sp_ref_idc");
            mk = strchr(mk + 2, '@');
            if (mk == NULL)
                return HV_EINVAL;
            mk++;
            continue;
        }
        if (strncmp(mk, "@K@", 3) == 0) {
            /* A string range's column (fhir/search_plan.c, prefix_range): byte order,
             * the collation of PostgreSQL's sp_str_rc; SQLite's BINARY already is. */
            if (hv_db_kind(db) == HV_DB_PG)
                hv_buf_puts(q, " COLLATE \"C\"");
            mk += 3;
            continue;
        }
        if (strncmp(mk, "@TX", 3) == 0) {
            /* _text / _content (fhir/search_plan.c): "@TX<column>:<placeholder>@", the
             * placeholder holding quoted words that must all occur in the column. */
            int col = atoi(mk + 3), b = atoi(strchr(mk, ':') ? strchr(mk, ':') + 1 : "0");
            const char *cn = col == 0 ? "narrative" : "content";
            if (b < 1 || b > p->nbinds)
                return HV_EINVAL;
            if (hv_db_kind(db) == HV_DB_PG)
                hv_buf_printf(q, "%s @@ plainto_tsquery('simple', $%d)", cn, b);
            else
                hv_buf_printf(q, "sp_text MATCH ('{%s} : (' || $%d || ')')", cn, b);
            mk = strchr(mk + 3, '@');
            if (mk == NULL)
                return HV_EINVAL;
            mk++;
            continue;
        }
        if (strncmp(mk, "@VS", 3) != 0)
            return HV_EINVAL;
        k = atoi(mk + 3);
        mk = strchr(mk + 3, '@');
        if (mk == NULL || k < 0 || k >= p->nvs)
            return HV_EINVAL;
        mk++;
        int rc = vs_clause(db, p, k, q, extra, n);
        if (rc != HV_OK)
            return rc;
    }
    return HV_OK;
}

/* Whether criterion k's text holds a marker "@X" with X one of kinds ('@' only ever starts
 * a marker: values are bound, never in the text). */
static int crit_marked(const hv__search_plan_t *p, int k, const char *kinds)
{
    const char *s = p->where.data + p->cspan[k][0];
    size_t len = p->cspan[k][1] - p->cspan[k][0];
    for (const char *m = memchr(s, '@', len); m != NULL && m + 1 < s + len;
         m = memchr(m + 1, '@', (size_t)(s + len - m - 1)))
        if (m[1] != '\0' && strchr(kinds, m[1]) != NULL)
            return 1;
    return 0;
}

/*
 * True when the plan's matches can be counted from the index tables alone: a search
 * of one type whose where clause is nothing but its criteria, each a plain sub-select
 * of the searched type's own index rows (" AND r.id IN (SELECT id FROM sp_str|tok|ref|
 * date|num|uri ...)") — no :not or :missing=true (NOT IN), no _id or _lastUpdated (on
 * the resources table), no _has or _list (ids of other resources, which may not
 * exist), no full text, value sets or compartment. The index holds rows for the current
 * version of live resources only (fhir/search_int.h), so such a criterion's ids are
 * exactly the current live resources it matches.
 */
static int index_countable(const hv__search_plan_t *p)
{
    static const char head[] = " AND r.id IN (SELECT id FROM sp_";
    static const char *const tabs[] = {"str", "tok", "ref", "date", "num", "uri", "tokdate", "tokqty"};
    size_t at = 0;
    if (p->system || p->compartment[0] != '\0' || p->nvs > 0 || p->ncrit < 1 || p->ncrit > HV__SEARCH_MAX_PARAMS + 1 ||
        p->where.data == NULL)
        return 0;
    for (int k = 0; k < p->ncrit; k++) {
        const char *s = p->where.data + p->cspan[k][0], *t = s + sizeof(head) - 1;
        size_t len = p->cspan[k][1] - p->cspan[k][0];
        int tab = 0;
        if (p->cspan[k][0] != at || len <= sizeof(head) || strncmp(s, head, sizeof(head) - 1) != 0 ||
            s[len - 1] != ')')
            return 0;
        for (size_t i = 0; i < HV_ARRAY_LEN(tabs); i++) {
            size_t n = strlen(tabs[i]);
            if (strncmp(t, tabs[i], n) == 0 && (t[n] == ' ' || t[n] == '@'))
                tab = 1;
        }
        if (!tab)
            return 0;
        if (crit_marked(p, k, "RTV"))
            return 0;
        at = p->cspan[k][1];
    }
    return at == p->where.len;
}

/* The criterion that drives the query: the one that looks most selective (the first of equals). */
static int driver_of(const hv__search_plan_t *p)
{
    int driver = -1;
    for (int k = 0, best = 99; k < p->ncrit && k <= HV__SEARCH_MAX_PARAMS; k++)
        if (p->crank[k] < best) {
            best = p->crank[k];
            driver = k;
        }
    return driver;
}

/* Binds the plan's value b at placeholder at of st. */
static void bind_value(hv_db_stmt_t *st, int at, const hv__sp_bind_t *b)
{
    if (b->kind == 0)
        hv_db_bind_text(st, at, b->s, strlen(b->s));
    else if (b->kind == 1)
        hv_db_bind_int64(st, at, b->i);
    else
        hv_db_bind_double(st, at, b->d);
}

void hv__search_bind_plan(hv_db_stmt_t *st, const hv__search_plan_t *p)
{
    for (int i = 0; i < p->nbinds; i++)
        bind_value(st, i + 1, &p->binds[i]);
}

#define HAS_DRIVE_MAX 2000 /* candidates up to which a plain criterion drives a _has search */
/* Index rows up to which a criterion drives an intersection (index_ids): each of them is
 * checked against every other criterion by a seek of its (type, id, code) index and a row
 * of its table, a few times the cost of an entry of a list read whole. */
#define INTERSECT_DRIVE_MAX 100

/* (fhir/search_int.h) */
int hv__search_prepare_used(hv_db_t *db, const hv__search_plan_t *p, const char *q, hv_db_stmt_t **st)
{
    int map[HV__SEARCH_MAX_BINDS], nmap = 0, rc;
    hv_buf_t w;
    hv_buf_init(&w, strlen(q) + 1024);
    for (const char *s = q; *s; s++) {
        char *end = NULL;
        long n;
        int m;
        if (*s != '$' || s[1] < '0' || s[1] > '9') {
            hv_buf_putc(&w, *s);
            continue;
        }
        n = strtol(s + 1, &end, 10);
        if (n < 1 || n > p->nbinds) {
            hv_buf_release(&w);
            return HV_EINVAL;
        }
        for (m = 0; m < nmap && map[m] != (int)n; m++)
            ;
        if (m == nmap)
            map[nmap++] = (int)n;
        hv_buf_printf(&w, "$%d", m + 1);
        s = end - 1;
    }
    rc = hv_buf_puts(&w, "");
    if (rc == HV_OK)
        rc = hv_db_prepare(db, w.data, st);
    for (int i = 0; rc == HV_OK && i < nmap; i++)
        bind_value(*st, i + 1, &p->binds[map[i] - 1]);
    hv_buf_release(&w);
    return rc;
}

/*
 * The plain index sub-select (" AND r.id IN (SELECT id FROM sp_...") of p selecting the
 * fewest index rows, fewer than cap — each counted from its index with the LIMIT of the
 * fewest so far, so that no count reads more than the answer needs — or -1: none.
 * Criteria ranked above 5 (:not) and those holding a _has, a value set or a _text are not
 * counted.
 */
static int smallest_criterion(hv_db_t *db, hv__search_plan_t *p, int cap)
{
    static const char head[] = " AND r.id IN (";
    static const char plain[] = " AND r.id IN (SELECT id FROM sp_";
    extra_t none = {NULL, 0, 0};
    int best = -1;
    int64_t best_n = cap;
    for (int k = 0; k < p->ncrit; k++) {
        const char *s = p->where.data + p->cspan[k][0];
        size_t len = p->cspan[k][1] - p->cspan[k][0];
        hv_buf_t q;
        hv_db_stmt_t *st = NULL;
        char *text;
        int n = p->nbinds, rc;
        if (len <= sizeof(plain) || strncmp(s, plain, sizeof(plain) - 1) != 0 || p->crank[k] > 5 ||
            crit_marked(p, k, "RTVH"))
            continue;
        text = hv_strndup(s + sizeof(head) - 1, len - sizeof(head));
        if (text == NULL)
            break;
        hv_buf_init(&q, 64 * 1024);
        hv_buf_puts(&q, "SELECT COUNT(*) FROM (");
        rc = expand(db, p, text, k, &q, &none, &n);
        if (rc == HV_OK)
            hv_buf_printf(&q, " LIMIT %lld) c", (long long)best_n);
        if (rc == HV_OK && hv_buf_puts(&q, "") == HV_OK && hv__search_prepare_used(db, p, q.data, &st) == HV_OK) {
            if (hv_db_step(st) == HV_DB_ROW && hv_db_column_int64(st, 0) < best_n) {
                best_n = hv_db_column_int64(st, 0);
                best = k;
            }
            hv_db_done(st);
        }
        hv_buf_release(&q);
        hv_free(text);
    }
    extra_free(&none);
    return best;
}

/*
 * The criterion that drives a search holding a top-level _has (its "@R" marker),
 * SQLite (PostgreSQL only when pg_too is set, below): a _has read whole is a join over all its referencing resources, so
 * when another criterion is a plain index sub-select selecting fewer than HAS_DRIVE_MAX
 * index rows (smallest_criterion), the smallest such drives and the _has is checked per
 * candidate (as the others). -1: none (the ranks decide, as without a _has). pg_too:
 * has_page's candidates, on either backend; PostgreSQL's general plan keeps its own choice.
 */
static int has_driver(hv_db_t *db, hv__search_plan_t *p, int pg_too)
{
    if ((hv_db_kind(db) == HV_DB_PG && !pg_too) || p->system || p->nvs > 0 || p->ncrit < 2 ||
        p->ncrit > HV__SEARCH_MAX_PARAMS || p->where.data == NULL)
        return -1;
    for (int k = 0; k < p->ncrit; k++)
        if (crit_marked(p, k, "R"))
            return smallest_criterion(db, p, HAS_DRIVE_MAX);
    return -1;
}

/*
 * The ids matching an index_countable plan, as a sub-select over the index tables
 * alone, written into q: the ids (not distinct) of the driving criterion's sub-select that
 * every other criterion also selects (checked per id through the (type, id, code)
 * indexes when the driver is a reference, each read once otherwise, as
 * hv__search_plan_run does). With the covering value indexes (migration 4) neither the
 * resources nor the index tables' rows are read.
 */
static int index_ids(hv_db_t *db, hv__search_plan_t *p, hv_buf_t *q)
{
    static const char head[] = " AND r.id IN (";
    extra_t none = {NULL, 0, 0};
    char *text = NULL;
    int rc, n = p->nbinds, driver = driver_of(p), others, k0;
    if (driver < 0)
        driver = 0;
    others = p->crank[driver] <= 1 ? driver : -2;
    /* PostgreSQL too: its per-id checks are one seek of the (type, id, code) indexes
     * (sp_tok_idc with the value, migration idcv) where both criteria read whole were a hash
     * of the larger one's range (a chain to a patient's name beside a date: 46,000 date rows
     * for 94 ids, docs/performance.md, session 24). SQLite only while its value indexes are
     * built (not deferred by a Bulk sync). */
    if (others == -2 && p->few == 0 && (hv_db_kind(db) == HV_DB_PG || hv__search_values_hinted(db)) && p->ncrit >= 2 &&
        p->ncrit <= HV__SEARCH_MAX_PARAMS) {
        k0 = smallest_criterion(db, p, INTERSECT_DRIVE_MAX);
        p->few = k0 >= 0 ? k0 + 1 : -1;
    }
    if (others == -2 && p->few > 0) {
        /* A criterion of few rows (Patient?gender=female&identifier=x: the identifier's
         * one) drives and the others are checked per id through their (type, id, code)
         * indexes: read whole, a token's list of ids would come from sp_tok_sr in row-id
         * order, each a random insert (3x the CPU at 100k, docs/performance.md, session
         * 23), and no value index of sp_tok holds the id right after the value to seek. */
        driver = p->few - 1;
        others = driver;
    }
    /* The driver's sub-select: its criterion's text without " AND r.id IN (" and ")". */
    text = hv_strndup(p->where.data + p->cspan[driver][0] + sizeof(head) - 1,
                      p->cspan[driver][1] - p->cspan[driver][0] - sizeof(head));
    if (text == NULL)
        return HV_ENOMEM;
    /* No DISTINCT here: it would make SQLite read the driver through the (type, id, code)
     * index, in id order, instead of its value index (duplicates do not matter to IN;
     * index_count removes them). */
    hv_buf_puts(q, "SELECT r.id FROM (");
    rc = expand(db, p, text, driver, q, &none, &n);
    if (rc != HV_OK)
        goto out;
    hv_buf_puts(q, ") r WHERE 1 = 1");
    for (int k = 0; k < p->ncrit; k++) {
        if (k == driver)
            continue;
        hv_free(text);
        text = hv_strndup(p->where.data + p->cspan[k][0], p->cspan[k][1] - p->cspan[k][0]);
        if (text == NULL) {
            rc = HV_ENOMEM;
            goto out;
        }
        rc = expand(db, p, text, others, q, &none, &n);
        if (rc != HV_OK)
            goto out;
    }
    rc = hv_buf_puts(q, "");
out:
    hv_free(text);
    extra_free(&none);
    return rc;
}

/*
 * True when p's one criterion is a token's sub-select over sp_tok (one code or several,
 * system|code, |code, system|): on SQLite it is counted as the distinct row ids of its
 * ranges of the covering value index sp_tok_sr (type, code, value, system, rid, id),
 * integers that arrive sorted within each (value, system) range — cheaper to tell apart
 * than the text ids, which arrive unsorted (two codes at 100k: 1.7 ms against 3.9 ms;
 * docs/performance.md, session 23). The index is named: without statistics SQLite may
 * otherwise read the (type, id, code) index (every row of the type).
 */
static int single_token(hv_db_t *db, const hv__search_plan_t *p)
{
    static const char head[] = " AND r.id IN (SELECT id FROM sp_tok@I0:sp_tok@ WHERE ";
    const char *s = p->where.data;
    size_t len = p->where.len;
    if (hv_db_kind(db) == HV_DB_PG || p->ncrit != 1 || s == NULL || len <= sizeof(head) ||
        strncmp(s, head, sizeof(head) - 1) != 0)
        return 0;
    for (size_t i = sizeof(head) - 1; i < len; i++) {
        if (s[i] == '@') {
            /* only correlation and index markers ("@C<k>@", "@I<k>:table@"), skipped whole */
            const char *e = memchr(s + i + 1, '@', len - i - 1);
            if (s[i + 1] != 'C' && s[i + 1] != 'I')
                return 0;
            if (e == NULL)
                return 0;
            i = (size_t)(e - s);
        }
    }
    return 1;
}

/* True when p's count is COUNT(*) of its token value's (type, code, value) range of
 * sp_tok_sr (hv__search_tok_pin set tok_one): a statement without the system's placeholder. */
static int counts_value_range(const hv__search_plan_t *p)
{
    return p->tok_one > 0 && hv__search_tok_only(p) && hv__search_tok_counts_rows(p);
}

/* The statement counting the matches of an index_countable plan, into q. */
static int count_sql(hv_db_t *db, hv__search_plan_t *p, hv_buf_t *q)
{
    int rc, tok = hv__search_tok_only(p), str = hv__search_str_only(p);
    if (str) {
        static const char head[] = " AND r.id IN (SELECT id FROM sp_str@I0:sp_str@ WHERE ";
        extra_t none = {NULL, 0, 0};
        int n = p->nbinds;
        char *text = hv_strndup(p->where.data + sizeof(head) - 1, p->where.len - sizeof(head));
        if (text == NULL)
            return HV_ENOMEM;
        /* One string criterion (hv__search_str_only): the distinct row ids of its range of
         * sp_str_rc — integers, one per current resource, cheaper to tell apart than the
         * text ids (a prefix range spans many values: a sorter either way). */
        hv_buf_printf(q, "SELECT COUNT(DISTINCT rid) FROM sp_str%s WHERE ",
                      hv__search_values_hinted(db) ? " INDEXED BY sp_str_rc" : "");
        rc = expand(db, p, text, 0, q, &none, &n);
        hv_free(text);
        extra_free(&none);
        return rc;
    }
    if (counts_value_range(p)) {
        /* Every row of the value has the system the criterion names (hv__search_tok_pin
         * probed it): the (type, code, value) range holds the same entries as the (type,
         * code, value, system) one, and its end is found comparing three columns, not four
         * (~30 % less CPU at 1M). Run with hv__search_prepare_used: the system's
         * placeholder is not used. */
        return hv_buf_printf(q, "SELECT COUNT(*) FROM sp_tok%s WHERE type = $1 AND code = $%d AND value = $%d",
                             hv__search_values_hinted(db) ? " INDEXED BY sp_tok_sr" : "", p->tok_code, p->tok_one);
    }
    if (tok || single_token(db, p)) {
        static const char head[] = " AND r.id IN (SELECT id FROM sp_tok@I0:sp_tok@ WHERE ";
        extra_t none = {NULL, 0, 0};
        int n = p->nbinds;
        char *text = hv_strndup(p->where.data + sizeof(head) - 1, p->where.len - sizeof(head));
        if (text == NULL)
            return HV_ENOMEM;
        /* One value of one token with its system (hv__search_tok_counts_rows: system|X, |X,
         * or code=X pinned to its one system by hv__search_tok_pin): the entries of its
         * range of sp_tok_sr (type, code, value, system, rid), one per matching resource,
         * counted without reading a column of each (measured at 1M, 35,760 matches:
         * COUNT(DISTINCT rid) of sp_tok_rc with each entry's system compared cost ~3x the
         * CPU; docs/performance.md, session 8). A value under several systems: the
         * distinct row ids of its (type, code, value) range, and so are those of the
         * other forms (system| alone, OR; single_token). */
        hv_buf_printf(q, "SELECT %s FROM sp_tok%s WHERE ",
                      tok && hv__search_tok_counts_rows(p) ? "COUNT(*)" : "COUNT(DISTINCT rid)",
                      hv__search_values_hinted(db) ? " INDEXED BY sp_tok_sr" : "");
        rc = expand(db, p, text, 0, q, &none, &n);
        hv_free(text);
        extra_free(&none);
        return rc;
    }
    /* The ids once each (a resource may match through several index rows). On SQLite
     * "LIMIT -1" keeps the sub-select from being flattened into the distinct count,
     * which would again prefer an index in id order over the value index. */
    hv_buf_puts(q, "SELECT COUNT(DISTINCT id) FROM (");
    rc = index_ids(db, p, q);
    if (rc == HV_OK)
        rc = hv_buf_puts(q, hv_db_kind(db) == HV_DB_PG ? ") c" : " LIMIT -1) c");
    return rc;
}

/* Steps st, a prepared and bound count, into *count; finishes st. */
static int count_step(hv_db_stmt_t *st, int64_t *count)
{
    int rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        *count = hv_db_column_int64(st, 0);
        rc = HV_OK;
    } else if (rc >= 0) {
        rc = HV_EIO;
    }
    hv_db_done(st);
    return rc;
}

int hv__search_count_run(hv_db_t *db, const hv__search_plan_t *p, const char *q, int64_t *count)
{
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, q, &st);
    if (rc != HV_OK)
        return rc;
    hv__search_bind_plan(st, p);
    return count_step(st, count);
}

/* The number of matches of an index_countable plan (index_ids): _summary=count and
 * the accurate _total cost an index range scan. */
static int index_count(hv_db_t *db, hv__search_plan_t *p, int64_t *count)
{
    hv_buf_t q;
    hv_db_stmt_t *st = NULL;
    int rc;
    hv_buf_init(&q, 128 * 1024);
    rc = count_sql(db, p, &q);
    if (rc == HV_OK && counts_value_range(p)) {
        /* the statement uses some of the plan's placeholders only */
        if ((rc = hv__search_prepare_used(db, p, q.data, &st)) == HV_OK)
            rc = count_step(st, count);
    } else if (rc == HV_OK) {
        rc = hv__search_count_run(db, p, q.data, count);
    }
    hv_buf_release(&q);
    return rc;
}

/* The statement that explains a query: SQLite's EXPLAIN QUERY PLAN, PostgreSQL's EXPLAIN. */
static const char *explain_head(hv_db_t *db)
{
    return hv_db_kind(db) == HV_DB_PG ? "EXPLAIN " : "EXPLAIN QUERY PLAN ";
}

/* The detail lines of the plan st explains (a statement starting with explain_head, its
 * values bound), appended to out one per line (the unit tests check the plans): SQLite's
 * detail column, PostgreSQL's one text column. Finishes st. */
static int plan_rows(hv_db_t *db, hv_db_stmt_t *st, hv_buf_t *out)
{
    int rc, col = hv_db_kind(db) == HV_DB_PG ? 0 : 3;
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t len = 0;
        const char *d = hv_db_column_text(st, col, &len);
        hv_buf_append(out, d ? d : "", d ? len : 0);
        hv_buf_putc(out, '\n');
    }
    hv_db_done(st);
    return rc < 0 ? rc : hv_buf_puts(out, "");
}

/* The plan of q (which starts with explain_head), p's values bound, into out (plan_rows). */
static int explain_lines(hv_db_t *db, const hv__search_plan_t *p, const char *q, hv_buf_t *out)
{
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, q, &st);
    if (rc != HV_OK)
        return rc;
    hv__search_bind_plan(st, p);
    return plan_rows(db, st, out);
}

int hv__search_count_explain(hv_db_t *db, hv__search_plan_t *p, hv_buf_t *out)
{
    hv_buf_t q;
    int rc;
    if (!index_countable(p))
        return HV_ENOTFOUND;
    if ((rc = hv__search_tok_pin(db, p)) != HV_OK)
        return rc;
    hv_buf_init(&q, 128 * 1024);
    hv_buf_puts(&q, explain_head(db));
    rc = count_sql(db, p, &q);
    if (rc == HV_OK)
        rc = explain_lines(db, p, q.data, out);
    hv_buf_release(&q);
    return rc;
}

/* The largest row id of the resources table (0 when empty). */
static int64_t max_rid(hv_db_t *db)
{
    hv_db_stmt_t *st = NULL;
    int64_t v = 0;
    if (hv_db_prepare(db, "SELECT MAX(rid) FROM resources", &st) != HV_OK)
        return 0;
    if (hv_db_step(st) == HV_DB_ROW)
        v = hv_db_column_int64(st, 0);
    hv_db_done(st);
    return v;
}

/* True when criterion k of p is a top-level _has (its "@E<k>@" head: a criterion's markers
 * carry its own number, fhir/search_combo.c renumbering them with it). */
static int is_has(const hv__search_plan_t *p, int k)
{
    return crit_marked(p, k, "E");
}

/*
 * True when p's page can stop at its matches (has_page): a search of one type holding a
 * top-level _has, in row-id order (no _sort), not _summary=count. has_pageable: and its
 * total is not asked for.
 */
static int has_page_shape(const hv__search_plan_t *p)
{
    int any = 0;
    if (p->system || p->nsort > 0 || p->summary_count || p->where.data == NULL || p->ncrit < 1 ||
        p->ncrit > HV__SEARCH_MAX_PARAMS + 1)
        return 0;
    for (int k = 0; k < p->ncrit && !any; k++)
        any = is_has(p, k);
    return any;
}

/* Both backends: PostgreSQL reads the candidates the same way, in row-id order, its
 * sub-select flattened into the outer select (has_page_sql). */
static int has_pageable(hv_db_t *db, const hv__search_plan_t *p)
{
    (void)db;
    return p->total == HV__TOTAL_NONE && has_page_shape(p);
}

/*
 * The statement of has_page into q, its extra values (value sets) in extra and the
 * placeholders of the cursor and of the limit in *cur_at and *limit_at:
 *
 *   WITH pg AS (SELECT ... FROM (SELECT ... FROM resources r WHERE <type, current, live>
 *       <every criterion but the _has> [AND r.rid > cursor] ORDER BY r.rid LIMIT -1) r
 *     WHERE <each _has, correlated: EXISTS ...> LIMIT count + 1)
 *   SELECT ..., r.json FROM pg JOIN resources r ON r.rid = pg.rid ORDER BY pg.rid
 *
 * The inner select is the candidates in row-id order: driven by driver's sub-select
 * (read once, then sorted) or, with driver -3, the type's rows from the cursor in
 * row-id order (resources_trid, no sorter; "last_ms <> -1" is its partial index's
 * condition, fhir/store.c) with every criterion checked per row. Its LIMIT keeps SQLite from flattening it into the outer select, which reads it
 * as a co-routine and so checks the _has of candidates only until the page is full.
 */
static int has_page_sql(hv_db_t *db, hv__search_plan_t *p, int driver, hv_buf_t *q, extra_t *extra, int *cur_at,
                        int *limit_at)
{
    static const char cols[] = "r.rid, r.type, r.id, r.version, r.last_ms";
    char *text = NULL;
    size_t at = 0;
    int rc = HV_OK, n = p->nbinds;
    int pgsql = hv_db_kind(db) == HV_DB_PG;
    hv_buf_printf(q, "WITH pg AS (SELECT %s FROM (SELECT %s FROM resources r%s WHERE %s AND r.deleted = 0 AND NOT"
                     " EXISTS (SELECT 1 FROM resources n WHERE n.type = r.type AND n.id = r.id AND n.version >"
                     " r.version)",
                  cols, cols, driver == -3 && !pgsql ? " INDEXED BY resources_trid" : "",
                  driver == -3 && !pgsql ? "r.type = $1 AND r.last_ms <> -1" : "r.type = $1");
    /* The where text but the _has criteria (with whatever lies between criteria). */
    for (int k = 0; k <= p->ncrit && rc == HV_OK; k++) {
        size_t end = k < p->ncrit ? p->cspan[k][0] : p->where.len;
        hv_free(text);
        text = hv_strndup(p->where.data + at, end - at);
        if (text == NULL) {
            rc = HV_ENOMEM;
            break;
        }
        rc = expand(db, p, text, driver, q, extra, &n);
        if (k < p->ncrit && rc == HV_OK && !is_has(p, k)) {
            hv_free(text);
            text = hv_strndup(p->where.data + p->cspan[k][0], p->cspan[k][1] - p->cspan[k][0]);
            rc = text ? expand(db, p, text, driver, q, extra, &n) : HV_ENOMEM;
        }
        if (k < p->ncrit)
            at = p->cspan[k][1];
    }
    if (rc != HV_OK)
        goto out;
    *cur_at = 0;
    if (p->has_cursor) {
        *cur_at = ++n;
        hv_buf_printf(q, " AND r.rid > $%d", n);
    }
    /* PostgreSQL: with a driver (a criterion of few candidates: Patient?_has:...&name=x)
     * "ORDER BY r.rid OFFSET 0" keeps the sub-select whole: its candidates are read and
     * sorted once (840 for name=zyx at 1M), then the _has is checked in row-id order only
     * until the page is full (about 120 checks, not 840: flattened, PostgreSQL checks every
     * candidate then sorts the matches, 2.5 times the work). Without one (the _has alone,
     * driver -3) no fence: planned on its own the sub-select was every row of the type (a
     * scan of resources, an anti-join of every current version and a sort: 0.8-0.95 s for
     * Patient?_has:... at 1M) before the _has stopped after a few hundred candidates;
     * flattened, the outer ORDER BY r.rid LIMIT walks resources_pkey in row-id order with
     * the (anti-)semi-joins per candidate and stops at the page (has_page runs it serially). */
    if (pgsql)
        hv_buf_puts(q, driver == -3 ? ") r WHERE 1 = 1" : " ORDER BY r.rid OFFSET 0) r WHERE 1 = 1");
    else
        hv_buf_puts(q, " ORDER BY r.rid LIMIT -1) r WHERE 1 = 1");
    for (int k = 0; k < p->ncrit && rc == HV_OK; k++) {
        if (!is_has(p, k))
            continue;
        hv_free(text);
        text = hv_strndup(p->where.data + p->cspan[k][0], p->cspan[k][1] - p->cspan[k][0]);
        rc = text ? expand(db, p, text, driver, q, extra, &n) : HV_ENOMEM;
    }
    if (rc != HV_OK)
        goto out;
    *limit_at = ++n;
    /* PostgreSQL may turn the EXISTS checks into hash semi-joins, which do not keep the
     * candidates' order: its LIMIT needs the order stated (a nested-loop semi-join over
     * the ordered candidates still stops at the page). */
    hv_buf_printf(q, "%s LIMIT $%d) SELECT pg.rid, pg.type, pg.id, pg.version, pg.last_ms, 0, r.json FROM pg JOIN"
                     " resources r ON r.rid = pg.rid ORDER BY pg.rid",
                  pgsql ? " ORDER BY r.rid" : "", n);
    rc = hv_buf_puts(q, "");
out:
    hv_free(text);
    return rc;
}

/* The driver of has_page: a plain criterion that selects few candidates (has_driver), a
 * reference or an id list (rank 0-1), else -3 (the row-id scan). */
static int has_page_driver(hv_db_t *db, hv__search_plan_t *p)
{
    int d = has_driver(db, p, 1), r = driver_of(p);
    if (d >= 0)
        return d;
    return r >= 0 && p->crank[r] <= 1 && !is_has(p, r) ? r : -3;
}

int hv__search_rid_rows(hv_db_stmt_t *st, int textcol, hv__store_row_cb cb, void *ud)
{
    char cur[32];
    int rc;
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        hv__store_row_t row;
        size_t len = 0;
        const char *s;
        hv__store_row_head(st, &row);
        /* The row's text is the statement's column, not a copy (hv__store_row_cb: valid
         * for the call only): a page of large resources is not copied once more. */
        s = hv_db_column_text(st, textcol, &len);
        row.text = (char *)(s ? s : "");
        row.text_len = s ? len : 0;
        /* The cursor of the default order: the row id alone. */
        snprintf(cur, sizeof(cur), "%lld", (long long)row.rid);
        row.cursor = cur;
        rc = cb(ud, &row);
        row.cursor = NULL;
        row.text = NULL;
        hv__store_row_clear(&row);
        if (rc != HV_OK)
            break;
    }
    return rc;
}

/*
 * The statement of has_page, prepared with every value bound (the plan's, the value sets',
 * the cursor and the page's count + 1), into *out; head ("" or explain_head) comes first.
 */
static int has_page_stmt(hv_db_t *db, hv__search_plan_t *p, const char *head, hv_db_stmt_t **out)
{
    hv_buf_t q;
    hv_db_stmt_t *st = NULL;
    extra_t extra = {NULL, 0, 0};
    int rc, cur_at = 0, limit_at = 0;
    hv_buf_init(&q, 128 * 1024);
    hv_buf_puts(&q, head);
    rc = has_page_sql(db, p, has_page_driver(db, p), &q, &extra, &cur_at, &limit_at);
    if (rc == HV_OK)
        rc = hv_db_prepare(db, q.data, &st);
    if (rc != HV_OK)
        goto out;
    hv__search_bind_plan(st, p);
    for (int i = 0; i < extra.n; i++)
        hv_db_bind_text(st, p->nbinds + 1 + i, extra.s[i], strlen(extra.s[i]));
    if (cur_at > 0)
        hv_db_bind_int64(st, cur_at, p->crid);
    hv_db_bind_int64(st, limit_at, p->count + 1);
    *out = st;
out:
    hv_buf_release(&q);
    extra_free(&extra);
    return rc;
}

/*
 * PostgreSQL plans has_page's statement serially: serial_begin sets
 * max_parallel_workers_per_gather to 0 and keeps the session's value in saved, serial_end
 * sets it back (a setting changed in a transaction that aborts is undone with it). The
 * statement's walk of resources_pkey stops at the page, but the planner cannot know after
 * how many candidates and, with the setting at its default 2, chose a Gather Merge of the
 * same walk: two workers started for a page of 51 (80 ms at load 15, against 3.7 ms
 * serial). SQLite: nothing.
 */
#define SERIAL_SAVED_MAX 32
static int serial_begin(hv_db_t *db, char saved[SERIAL_SAVED_MAX])
{
    hv_db_stmt_t *st = NULL;
    size_t len = 0;
    const char *v;
    int rc;
    saved[0] = '\0';
    if (hv_db_kind(db) != HV_DB_PG)
        return HV_OK;
    rc = hv_db_prepare(db, "SELECT current_setting('max_parallel_workers_per_gather'),"
                           " set_config('max_parallel_workers_per_gather', '0', false)", &st);
    if (rc != HV_OK)
        return rc;
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW && (v = hv_db_column_text(st, 0, &len)) != NULL && len < SERIAL_SAVED_MAX) {
        memcpy(saved, v, len);
        saved[len] = '\0';
        rc = HV_OK;
    } else if (rc >= 0) {
        rc = HV_EIO;
    }
    hv_db_done(st);
    return rc;
}

static int serial_end(hv_db_t *db, const char *saved)
{
    hv_db_stmt_t *st = NULL;
    int rc;
    if (hv_db_kind(db) != HV_DB_PG || saved[0] == '\0')
        return HV_OK;
    rc = hv_db_prepare(db, "SELECT set_config('max_parallel_workers_per_gather', $1, false)", &st);
    if (rc != HV_OK)
        return rc;
    hv_db_bind_text(st, 1, saved, strlen(saved));
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/*
 * The page of a has_pageable plan: up to p->count + 1 rows after the cursor, in row-id
 * order, the _has checked per candidate only until the page is full (instead of for
 * every candidate, which the accurate total needs). No total.
 */
static int has_page(hv_db_t *db, hv__search_plan_t *p, hv__store_row_cb cb, void *ud)
{
    hv_db_stmt_t *st = NULL;
    char saved[SERIAL_SAVED_MAX];
    int rc = serial_begin(db, saved), rc2;
    if (rc == HV_OK)
        rc = has_page_stmt(db, p, "", &st);
    if (rc == HV_OK) {
        rc = hv__search_rid_rows(st, 6, cb, ud);
        hv_db_done(st);
    }
    rc2 = serial_end(db, saved);
    if (rc == HV_OK && rc2 != HV_OK)
        rc = rc2;
    return rc < 0 || rc == HV_EINVAL ? rc : HV_OK;
}

int hv__search_has_explain(hv_db_t *db, hv__search_plan_t *p, hv_buf_t *out)
{
    hv_db_stmt_t *st = NULL;
    char saved[SERIAL_SAVED_MAX];
    int rc, rc2;
    if (!has_pageable(db, p))
        return HV_ENOTFOUND;
    rc = serial_begin(db, saved);
    if (rc == HV_OK)
        rc = has_page_stmt(db, p, explain_head(db), &st);
    if (rc == HV_OK)
        rc = plan_rows(db, st, out);
    rc2 = serial_end(db, saved);
    return rc == HV_OK ? rc2 : rc;
}

/*
 * True when p is a search of one type with no criterion and no _sort (a full sync's
 * `Type?_count=1000` and its next pages): type_page answers it without the general
 * statement, which materialises every current version of the type and sorts them for
 * each page (and counts them through each row's table record for the total).
 */
static int type_page_shape(const hv__search_plan_t *p)
{
    return !p->system && p->compartment[0] == '\0' && p->ncrit == 0 && p->where.len == 0 && p->nsort == 0 &&
           p->nbinds == 1 && strcmp(p->typesql, "r.type = $1") == 0;
}

/*
 * The page statement of a type_page_shape plan, its values bound (the type, the cursor, the
 * page's count + 1), into *out; head ("" or explain_head) comes first. The page is the
 * type's current, live versions after the cursor's row id in row-id order, read from the
 * cursor and stopping at count + 1 rows, so page 1,000 costs what page 1 does:
 *
 * - SQLite: resources_trid, named, as its partial index is used only where named
 *   (fhir/store.c); the current version by NOT EXISTS of a newer one in resources_tiv.
 * - PostgreSQL: the page's row ids first, from resources_trid (type, rid) INCLUDE (id,
 *   version, deleted), an index-only walk from the cursor, then only those rows' JSON by
 *   resources_pkey. The current version is "version = (SELECT MAX ...)", one backward
 *   probe of resources_tiv per row: written as NOT EXISTS, PostgreSQL planned a hash
 *   anti-join over every version of the type and a sort for the types it thought small
 *   (10,594 Procedures read to page 1,001 of them at 100k), and without the covering index
 *   it walked resources_pkey, filtering out every other type's rows (24,389 rows read for
 *   a first page of 1,001 Immunizations). The LIMIT keeps the sub-select from being
 *   flattened into the join.
 */
static int type_page_stmt(hv_db_t *db, hv__search_plan_t *p, const char *head, hv_db_stmt_t **out)
{
    char q[1024];
    int rc;
    if (hv_db_kind(db) == HV_DB_PG)
        snprintf(q, sizeof(q),
                 "%sWITH pg AS (SELECT r.rid FROM resources r WHERE r.type = $1 AND r.deleted = 0 AND r.version ="
                 " (SELECT MAX(n.version) FROM resources n WHERE n.type = r.type AND n.id = r.id)%s ORDER BY r.rid"
                 " LIMIT $%d) SELECT r.rid, r.type, r.id, r.version, r.last_ms, 0, r.json FROM pg JOIN resources r"
                 " ON r.rid = pg.rid ORDER BY pg.rid",
                 head, p->has_cursor ? " AND r.rid > $2" : "", p->has_cursor ? 3 : 2);
    else
        snprintf(q, sizeof(q),
                 "%sSELECT r.rid, r.type, r.id, r.version, r.last_ms, 0, r.json FROM resources r INDEXED BY"
                 " resources_trid WHERE r.type = $1 AND r.last_ms <> -1 AND r.deleted = 0 AND NOT EXISTS (SELECT 1"
                 " FROM resources n WHERE n.type = r.type AND n.id = r.id AND n.version > r.version)%s ORDER BY r.rid"
                 " LIMIT $%d",
                 head, p->has_cursor ? " AND r.rid > $2" : "", p->has_cursor ? 3 : 2);
    if ((rc = hv_db_prepare(db, q, out)) != HV_OK)
        return rc;
    hv__search_bind_plan(*out, p);
    if (p->has_cursor)
        hv_db_bind_int64(*out, 2, p->crid);
    hv_db_bind_int64(*out, p->has_cursor ? 3 : 2, p->count + 1);
    return HV_OK;
}

/*
 * The page (or, _summary=count, only the count) of a type_page_shape plan: its rows from
 * type_page_stmt. The total (into *total when want_total) is the type's distinct ids (the
 * covering resources_tiv, no table record read) less those whose current version is a
 * deletion (resources_dead: deleted versions only), as hv__search_has_count counts: the
 * same number as counting the current live versions, without reading each one's record.
 */
static int type_page(hv_db_t *db, hv__search_plan_t *p, hv__store_row_cb cb, void *ud, int want_total, int64_t *total)
{
    int pg = hv_db_kind(db) == HV_DB_PG, rc = HV_OK;
    hv_db_stmt_t *st = NULL;
    if (want_total) {
        char q[512];
        snprintf(q, sizeof(q),
                 "SELECT (SELECT COUNT(*) FROM (SELECT DISTINCT id FROM resources WHERE type = $1) x) - (SELECT"
                 " COUNT(*) FROM resources r%s WHERE r.type = $1 AND r.deleted <> 0 AND NOT EXISTS (SELECT 1 FROM"
                 " resources n WHERE n.type = r.type AND n.id = r.id AND n.version > r.version))",
                 pg ? "" : " INDEXED BY resources_dead");
        if ((rc = hv__search_count_run(db, p, q, total)) != HV_OK || p->summary_count)
            return rc;
    }
    if ((rc = type_page_stmt(db, p, "", &st)) != HV_OK)
        return rc;
    rc = hv__search_rid_rows(st, 6, cb, ud);
    hv_db_done(st);
    return rc;
}

int hv__search_type_explain(hv_db_t *db, hv__search_plan_t *p, hv_buf_t *out)
{
    hv_db_stmt_t *st = NULL;
    int rc;
    if (!type_page_shape(p))
        return HV_ENOTFOUND;
    if ((rc = type_page_stmt(db, p, explain_head(db), &st)) != HV_OK)
        return rc;
    return plan_rows(db, st, out);
}

int hv__search_plan_run(hv_db_t *db, hv__search_plan_t *p, hv__store_row_cb cb, void *ud, int64_t *total)
{
    hv_buf_t q, cur;
    hv_db_stmt_t *st = NULL;
    extra_t extra = {NULL, 0, 0};
    col_t cols[2 * HV__SEARCH_MAX_SORT];
    int rc, n = p->nbinds, ncols = sort_columns(p, cols), want_total = p->summary_count || p->total == HV__TOTAL_ACCURATE;
    int code0 = n + 1, key0, limit_at, extra0, driver = -1, ridscan = 0;
    /* One combined criterion alone, one token criterion with one value, or one string
     * criterion with one value (fhir/search_combo.c):
     * the page's row ids come from its index in row-id order, so only the page's rows are
     * read from resources, and nothing is counted unless a total is asked for. */
    int rowpage = hv__search_combo_only(p) || hv__search_tok_only(p) || hv__search_str_only(p);
    int64_t counted = -1;
    *total = -1;
    /* code=X under one system only: pinned to it, one range of sp_tok_sr (hv__search_tok_pin). */
    if (rowpage && (rc = hv__search_tok_pin(db, p)) != HV_OK)
        return rc;
    /* _text/_content rows are written after the commit (fhir/search_special.c): a
     * search using them first indexes every committed version, in its own job. */
    if (p->where.len > 0 && strstr(p->where.data, "@TX") != NULL && (rc = hv__search_text_catch_up(db, 0, NULL)) != HV_OK)
        return rc;
    if (type_page_shape(p)) {
        rc = type_page(db, p, cb, ud, want_total, total);
        return rc < 0 || rc == HV_EINVAL ? rc : HV_OK;
    }
    hv_buf_init(&q, 128 * 1024);
    hv_buf_init(&cur, HV__SEARCH_CURSOR_MAX + 64);
    /* Counted from the index alone when the criteria allow it (index_countable): the
     * total, and in the default order the choice between the two plans below. */
    if (index_countable(p) && (want_total || (p->nsort == 0 && hv_db_kind(db) != HV_DB_PG && !rowpage))) {
        rc = index_count(db, p, &counted);
        if (rc != HV_OK)
            goto out;
        if (p->summary_count) {
            *total = counted;
            goto out;
        }
        /*
         * In row-id order (no _sort) a page is either the first count + 1 matches of a
         * scan of the resources table in row-id order, each row checked against every
         * criterion through the (type, id, code) indexes (about (count + 1) * rows /
         * matches rows read, and it stops there: a frequent code), or all matches read
         * from the criteria and sorted (cost ∝ matches: a rare one). Each page after a
         * cursor starts the scan at the cursor's row id, so page 1,000 costs what page 1
         * does. SQLite only (NOT INDEXED).
         */
        if (p->nsort == 0 && hv_db_kind(db) != HV_DB_PG && counted > 0)
            ridscan = (double)(p->count + 1) * (double)max_rid(db) / (double)counted < (double)counted;
    }
    if (rowpage) {
        rc = counted == 0 ? HV_OK : hv__search_combo_page(db, p, cb, ud);
        if (want_total && counted >= 0)
            *total = counted;
        goto out;
    }
    /* A _has alone over the reference x token rows (fhir/search_has.c): its count from the
     * index, and its page stopping at its matches as without a total. */
    if (want_total && (p->summary_count || has_page_shape(p)) &&
        (rc = hv__search_has_count(db, p, &counted)) != HV_ENOTFOUND) {
        if (rc == HV_OK && !p->summary_count)
            rc = has_page(db, p, cb, ud);
        if (rc == HV_OK)
            *total = counted;
        goto out;
    }
    /* A _has whose total is not asked for: the page stops at its matches (has_page). */
    if (has_pageable(db, p)) {
        rc = has_page(db, p, cb, ud);
        goto out;
    }
    /* m: the matches without their JSON (sorting the rows with it would carry every
     * match's text through the sorter); the page's texts are read after the LIMIT. */
    hv_buf_puts(&q, "WITH m AS (SELECT r.rid, r.type, r.id, r.version, r.last_ms");
    /* One value column per parameter key; its code is bound after the criteria's values. */
    for (int i = 0; i < p->nsort; i++) {
        const hv__sp_sort_t *k = &p->sort[i];
        const char *col = k->st == HV_FHIR_SP_DATE ? (k->desc ? "hi" : "lo") : "value";
        if (k->kind != HV__SORT_PARAM)
            continue;
        hv_buf_printf(&q, ", (SELECT %s(d.%s) FROM %s d WHERE d.type = r.type AND d.id = r.id AND d.code = $%d) AS sk%d",
                      k->desc ? "MAX" : "MIN", col, table_of(k->st), ++n, i);
    }
    hv_buf_printf(&q, " FROM resources r%s WHERE %s AND r.deleted = 0 AND NOT EXISTS (SELECT 1 FROM"
                      " resources n WHERE n.type = r.type AND n.id = r.id AND n.version > r.version)",
                  ridscan ? " NOT INDEXED" : "", p->typesql[0] ? p->typesql : "r.type = $1");
    /* The criterion that drives the query: the one that looks most selective (the
     * first of equals); with none ranked, every marked criterion stays uncorrelated. */
    driver = driver_of(p);
    /* Correlated checks pay one index probe per candidate: worth it when the driver is
     * an id list, a reference or a List (a patient's rows), not for population-wide
     * criteria, whose sub-selects are each read once and intersected (measured at
     * 390,000 resources: subject+code+date 7.2 s → 25 ms correlated; code+date and
     * code+value-quantity slower correlated than intersected; docs/performance.md). */
    if (driver >= 0 && p->crank[driver] > 1)
        driver = -2; /* nothing is correlated */
    if ((rc = has_driver(db, p, 0)) >= 0 && (driver < 0 || p->crank[driver] > 1))
        driver = rc; /* a selective criterion beside a _has: the _has is checked per candidate */
    if (ridscan)
        driver = -3; /* every criterion is checked per row of the scan */
    /* The criteria, with the members of each :in value set in place of its marker;
     * read from the index alone (index_ids, the intersection first) when counted so and
     * not scanned in row-id order. */
    extra0 = n + 1;
    if (counted >= 0 && !ridscan) {
        hv_buf_puts(&q, " AND r.id IN (");
        rc = index_ids(db, p, &q);
        if (rc == HV_OK)
            rc = hv_buf_puts(&q, ")");
    } else {
        rc = expand(db, p, p->where.data ? p->where.data : "", driver, &q, &extra, &n);
    }
    if (rc != HV_OK)
        goto out;
    hv_buf_puts(&q, ") ");
    key0 = n + 1;
    if (p->summary_count) {
        hv_buf_puts(&q, "SELECT COUNT(*) FROM m");
    } else {
        hv_buf_puts(&q, ", pg AS (SELECT m.rid, m.type, m.id, m.version, m.last_ms");
        for (int c = 0; c < ncols; c++)
            hv_buf_printf(&q, ", %s AS k%d", cols[c].expr, c);
        hv_buf_puts(&q, " FROM m");
        if (p->has_cursor) {
            /* After the cursor: (c1, ..., ck, rid) greater in the sort order, column by
             * column — the cursor's values are $key0.. and the row id follows them. */
            hv_buf_puts(&q, " WHERE (");
            for (int j = 0; j <= ncols; j++) {
                hv_buf_puts(&q, j ? " OR (" : "(");
                for (int e = 0; e < j; e++)
                    hv_buf_printf(&q, "%s = $%d AND ", cols[e].expr, key0 + e);
                if (j < ncols)
                    hv_buf_printf(&q, "%s %s $%d)", cols[j].expr, cols[j].desc ? "<" : ">", key0 + j);
                else
                    hv_buf_printf(&q, "m.rid > $%d)", key0 + ncols);
            }
            hv_buf_puts(&q, ")");
            n += ncols + 1;
        }
        hv_buf_puts(&q, " ORDER BY ");
        for (int c = 0; c < ncols; c++)
            hv_buf_printf(&q, "%s%s, ", cols[c].expr, cols[c].desc ? " DESC" : "");
        hv_buf_printf(&q, "m.rid LIMIT $%d) ", ++n);
        hv_buf_puts(&q, "SELECT pg.rid, pg.type, pg.id, pg.version, pg.last_ms, 0, r.json");
        for (int c = 0; c < ncols; c++)
            hv_buf_printf(&q, ", pg.k%d", c);
        hv_buf_printf(&q, "%s FROM pg JOIN resources r ON r.rid = pg.rid ORDER BY ",
                      want_total && counted < 0 ? ", (SELECT COUNT(*) FROM m)" : "");
        for (int c = 0; c < ncols; c++)
            hv_buf_printf(&q, "pg.k%d%s, ", c, cols[c].desc ? " DESC" : "");
        hv_buf_puts(&q, "pg.rid");
    }
    limit_at = n;
    rc = hv_buf_puts(&q, "");
    if (rc != HV_OK)
        goto out;
    rc = hv_db_prepare(db, q.data, &st);
    if (rc != HV_OK)
        goto out;
    hv__search_bind_plan(st, p);
    for (int i = 0, k = code0; i < p->nsort; i++)
        if (p->sort[i].kind == HV__SORT_PARAM)
            hv_db_bind_text(st, k++, p->sort[i].code, strlen(p->sort[i].code));
    for (int i = 0; i < extra.n; i++)
        hv_db_bind_text(st, extra0 + i, extra.s[i], strlen(extra.s[i]));
    if (!p->summary_count) {
        if (p->has_cursor) {
            for (int c = 0; c < ncols; c++)
                bind_key(st, key0 + c, &p->ckeys[c]);
            hv_db_bind_int64(st, key0 + ncols, p->crid);
        }
        hv_db_bind_int64(st, limit_at, p->count + 1);
    }
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        hv__store_row_t row;
        size_t len = 0;
        const char *s;
        if (p->summary_count) {
            *total = hv_db_column_int64(st, 0);
            continue;
        }
        hv__store_row_head(st, &row);
        s = hv_db_column_text(st, 6, &len);
        row.text = (char *)(s ? s : ""); /* the column itself, as in hv__search_rid_rows */
        row.text_len = s ? len : 0;
        /* The cursor continuing after this row. */
        cur.len = 0;
        for (int c = 0; c < ncols; c++) {
            if (cols[c].kind == 0) {
                s = hv_db_column_text(st, 7 + c, &len);
                hv_buf_putc(&cur, 's');
                for (size_t i = 0; s != NULL && i < len; i++)
                    hv_buf_printf(&cur, "%02x", (unsigned char)s[i]);
            } else if (cols[c].kind == 1) {
                hv_buf_printf(&cur, "i%lld", (long long)hv_db_column_int64(st, 7 + c));
            } else {
                /* "%.17g" round-trips; a '+' (of "e+20") is left out so the cursor is URL-safe. */
                char d[40];
                size_t o = 0;
                snprintf(d, sizeof(d), "%.17g", hv_db_column_double(st, 7 + c));
                for (size_t i = 0; d[i]; i++)
                    if (d[i] != '+')
                        d[o++] = d[i];
                d[o] = '\0';
                hv_buf_printf(&cur, "d%s", d);
            }
            hv_buf_putc(&cur, '~');
        }
        hv_buf_printf(&cur, "%lld", (long long)row.rid);
        row.cursor = cur.data;
        if (want_total && counted < 0)
            *total = hv_db_column_int64(st, 7 + ncols);
        rc = cb(ud, &row);
        row.cursor = NULL;
        row.text = NULL;
        hv__store_row_clear(&row);
        if (rc != HV_OK)
            break;
    }
    hv_db_done(st);
    if (want_total && counted >= 0)
        *total = counted;
out:
    hv_buf_release(&q);
    hv_buf_release(&cur);
    extra_free(&extra);
    return rc < 0 || rc == HV_EINVAL ? rc : HV_OK;
}
