/*
 * search_index.c — the write-time index of FHIR search (FHIR R4 search.html,
 * searchparameter-registry.html). For every search parameter of a resource's type
 * (its own, DomainResource's and Resource's), the parameter's FHIRPath expression
 * is evaluated on the resource and the values are written as rows of the index
 * table of the parameter's type (layout in fhir/search_int.h), in the transaction
 * that writes the version, so the index never disagrees with the current version.
 *
 * Expressions are compiled once per process (all of them, on first use) and kept
 * for its lifetime. An expression that fails to compile or to evaluate on a given
 * resource indexes nothing for that parameter (the failure is logged at debug).
 */
#include "config.h"

#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhirpath.h"
#include "fhir/search_int.h"

const char hv__search_migration[] =
    "CREATE TABLE sp_str (type TEXT NOT NULL, id TEXT NOT NULL, code TEXT NOT NULL, value TEXT NOT NULL);"
    "CREATE INDEX sp_str_v ON sp_str (type, code, value);"
    "CREATE INDEX sp_str_id ON sp_str (type, id);"
    "CREATE TABLE sp_tok (type TEXT NOT NULL, id TEXT NOT NULL, code TEXT NOT NULL, system TEXT,"
    " value TEXT NOT NULL);"
    "CREATE INDEX sp_tok_v ON sp_tok (type, code, value);"
    "CREATE INDEX sp_tok_id ON sp_tok (type, id);"
    "CREATE TABLE sp_ref (type TEXT NOT NULL, id TEXT NOT NULL, code TEXT NOT NULL, rtype TEXT,"
    " rid TEXT NOT NULL);"
    "CREATE INDEX sp_ref_v ON sp_ref (type, code, rid);"
    "CREATE INDEX sp_ref_id ON sp_ref (type, id);"
    "CREATE TABLE sp_date (type TEXT NOT NULL, id TEXT NOT NULL, code TEXT NOT NULL, lo BIGINT NOT NULL,"
    " hi BIGINT NOT NULL);"
    "CREATE INDEX sp_date_v ON sp_date (type, code, lo);"
    "CREATE INDEX sp_date_id ON sp_date (type, id);"
    "CREATE TABLE sp_num (type TEXT NOT NULL, id TEXT NOT NULL, code TEXT NOT NULL, value DOUBLE PRECISION NOT NULL,"
    " system TEXT, unit TEXT);"
    "CREATE INDEX sp_num_v ON sp_num (type, code, value);"
    "CREATE INDEX sp_num_id ON sp_num (type, id);"
    "CREATE TABLE sp_uri (type TEXT NOT NULL, id TEXT NOT NULL, code TEXT NOT NULL, value TEXT NOT NULL);"
    "CREATE INDEX sp_uri_v ON sp_uri (type, code, value);"
    "CREATE INDEX sp_uri_id ON sp_uri (type, id);";

#define MAX_VALUES_PER_PARAM 64 /* values one parameter indexes for one resource */
#define MAX_STR 256            /* longest indexed string value (bytes), longer ones truncated */

/* ---- the compiled expressions ---- */

typedef struct sp_entry {
    const hv_fhir_search_t *sp;
    hv_fhirpath_t *fp;
} sp_entry_t;

static sp_entry_t *entries; /* sorted by sp pointer */
static size_t nentries;
static pthread_once_t compile_once = PTHREAD_ONCE_INIT;

static int cmp_entry(const void *a, const void *b)
{
    const sp_entry_t *x = a, *y = b;
    return x->sp < y->sp ? -1 : x->sp > y->sp ? 1 : 0;
}

/*
 * Rewrites "where(resolve() is T)" into "where(reference.startsWith('T/'))": the
 * index has no resolver, and a relative reference names its target's type (absolute
 * URLs pointing elsewhere are therefore not restricted by type). Returns a new
 * string or NULL when there is nothing to rewrite.
 */
static char *rewrite_resolve(const char *expr)
{
    static const char pat[] = "where(resolve() is ";
    hv_buf_t b;
    const char *p = expr, *hit;
    char *out;
    if (strstr(expr, pat) == NULL)
        return NULL;
    hv_buf_init(&b, 64 * 1024);
    while ((hit = strstr(p, pat)) != NULL) {
        const char *t = hit + sizeof(pat) - 1, *e = strchr(t, ')');
        if (e == NULL)
            break;
        hv_buf_append(&b, p, (size_t)(hit - p));
        hv_buf_printf(&b, "where(reference.startsWith('%.*s/'))", (int)(e - t), t);
        p = e + 1;
    }
    hv_buf_puts(&b, p);
    out = b.data != NULL ? hv_strndup(b.data, b.len) : NULL;
    hv_buf_release(&b);
    return out;
}

static void compile_all(void)
{
    size_t n = hv_fhir_search_count();
    entries = hv_calloc(n ? n : 1, sizeof(*entries));
    if (entries == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        const hv_fhir_search_t *sp = hv_fhir_search_at(i);
        const char *expr = hv_fhir_search_expression(sp);
        hv_error_t err;
        hv_fhirpath_t *fp = NULL;
        hv_fhir_search_type_t t = hv_fhir_search_type(sp);
        entries[nentries].sp = sp;
        if (expr != NULL && t != HV_FHIR_SP_COMPOSITE && t != HV_FHIR_SP_SPECIAL) {
            char *rw = rewrite_resolve(expr);
            memset(&err, 0, sizeof(err));
            if (hv_fhirpath_compile(rw != NULL ? rw : expr, 0, NULL, &fp, &err) != HV_OK)
                fp = NULL;
            hv_free(rw);
        }
        entries[nentries++].fp = fp;
    }
    qsort(entries, nentries, sizeof(*entries), cmp_entry);
}

static const hv_fhirpath_t *expr_of(const hv_fhir_search_t *sp)
{
    sp_entry_t key = {sp, NULL}, *e;
    pthread_once(&compile_once, compile_all);
    if (entries == NULL)
        return NULL;
    e = bsearch(&key, entries, nentries, sizeof(*entries), cmp_entry);
    return e ? e->fp : NULL;
}

/* ---- value helpers ---- */

void hv__search_normalize(const char *s, char *out, size_t cap)
{
    /* Latin-1 supplement letters U+00C0..U+00FF folded to their base letter. */
    static const char fold[] = "aaaaaaaceeeeiiiidnooooo*ouuuuyts"
                               "aaaaaaaceeeeiiiidnooooo/ouuuuyty";
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    if (cap == 0)
        return;
    while (*p != '\0' && o + 1 < cap) {
        if (*p < 0x80) {
            out[o++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
            p++;
        } else if (*p == 0xc3 && p[1] >= 0x80 && p[1] <= 0xbf) {
            out[o++] = fold[(p[1] & 0x3f)];
            p += 2;
        } else {
            /* Another UTF-8 sequence: copied whole, or not at all when it does not fit. */
            size_t len = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : 2;
            size_t k;
            for (k = 0; k < len && p[k] != '\0'; k++)
                ;
            if (o + k + 1 > cap)
                break;
            memcpy(out + o, p, k);
            o += k;
            p += k;
        }
    }
    out[o] = '\0';
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* True when s has the shape YYYY[-MM[-DD[Thh:mm[:ss[.f+]][Z|(+|-)hh:mm]]]] digit for digit. */
static int date_shape(const char *s)
{
    static const char *const shapes[] = {"dddd", "dddd-dd", "dddd-dd-dd", "dddd-dd-ddTdd:dd:dd"};
    size_t n = strlen(s), k;
    for (k = 0; k < HV_ARRAY_LEN(shapes); k++) {
        const char *f = shapes[k];
        size_t fl = strlen(f), i;
        if (n < fl || (k < 3 && n != fl))
            continue;
        for (i = 0; i < fl; i++)
            if (f[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != f[i])
                break;
        if (i == fl)
            return 1;
    }
    return 0;
}

int hv__search_date_range(const char *s, int64_t *lo, int64_t *hi)
{
    int64_t l;
    size_t n;
    int y, m;
    const char *t;
    if (s == NULL || !date_shape(s) || hv__fhir_parse_time(s, &l) != HV_OK)
        return HV_EINVAL;
    n = strlen(s);
    y = atoi(s);
    if (n == 4) {
        *hi = l + (int64_t)(is_leap(y) ? 366 : 365) * 86400000 - 1;
    } else if (n == 7) {
        static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        m = atoi(s + 5);
        *hi = l + (int64_t)(days[m - 1] + (m == 2 && is_leap(y))) * 86400000 - 1;
    } else if (n == 10) {
        *hi = l + 86400000 - 1;
    } else {
        /* A time: second precision unless it has a fraction (FHIR R4 search.html#date). */
        t = strchr(s, 'T');
        if (t == NULL)
            return HV_EINVAL;
        *hi = strchr(t, '.') != NULL ? l : l + 999;
    }
    *lo = l;
    return HV_OK;
}

hv__sp_prefix_t hv__search_prefix(const char **s)
{
    static const char *const names[] = {"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"};
    const char *p = *s;
    for (size_t i = 0; i < HV_ARRAY_LEN(names); i++)
        if (p[0] == names[i][0] && p[1] == names[i][1] && p[2] != '\0' && !(p[2] >= 'a' && p[2] <= 'z')) {
            *s = p + 2;
            return (hv__sp_prefix_t)i;
        }
    return HV__SP_EQ;
}

/* ---- row writers ---- */

typedef struct ix {
    hv_db_t *db;
    const char *type, *id, *code;
    int rc;
    size_t nvalues;
} ix_t;

static void bind_opt(hv_db_stmt_t *st, int idx, const char *s)
{
    if (s != NULL)
        hv_db_bind_text(st, idx, s, strlen(s));
    else
        hv_db_bind_null(st, idx);
}

/* Inserts one row: sql has the placeholders $1 type, $2 id, $3 code, then the values. */
static void row(ix_t *x, const char *sql, const char *a, const char *b, int64_t n1, int64_t n2, int nums,
                const double *d)
{
    hv_db_stmt_t *st = NULL;
    int rc;
    if (x->rc != HV_OK || x->nvalues >= MAX_VALUES_PER_PARAM)
        return;
    x->nvalues++;
    rc = hv_db_prepare(x->db, sql, &st);
    if (rc != HV_OK) {
        x->rc = rc;
        return;
    }
    hv_db_bind_text(st, 1, x->type, strlen(x->type));
    hv_db_bind_text(st, 2, x->id, strlen(x->id));
    hv_db_bind_text(st, 3, x->code, strlen(x->code));
    if (d != NULL) {
        hv_db_bind_double(st, 4, *d);
        bind_opt(st, 5, a);
        bind_opt(st, 6, b);
    } else if (nums) {
        hv_db_bind_int64(st, 4, n1);
        hv_db_bind_int64(st, 5, n2);
    } else {
        bind_opt(st, 4, a);
        if (b != NULL || strstr(sql, "$5") != NULL)
            bind_opt(st, 5, b);
    }
    rc = hv_db_step(st);
    hv_db_done(st);
    if (rc < 0)
        x->rc = rc;
}

static void put_str(ix_t *x, const char *s)
{
    char norm[MAX_STR];
    if (s == NULL || s[0] == '\0')
        return;
    hv__search_normalize(s, norm, sizeof(norm));
    row(x, "INSERT INTO sp_str (type, id, code, value) VALUES ($1, $2, $3, $4)", norm, NULL, 0, 0, 0, NULL);
}

static void put_tok(ix_t *x, const char *system, const char *code)
{
    if (code == NULL || code[0] == '\0')
        return;
    row(x, "INSERT INTO sp_tok (type, id, code, system, value) VALUES ($1, $2, $3, $4, $5)", system, code, 0, 0, 0,
        NULL);
}

/* A date, or a Period (period set: start and end, either may be absent — open). */
static void put_date(ix_t *x, const char *s, const char *end, int period)
{
    const int64_t open_lo = -((int64_t)1 << 60), open_hi = (int64_t)1 << 60;
    int64_t lo = open_lo, hi = open_hi, l2, h2;
    int have = 0;
    if (s != NULL && hv__search_date_range(s, &lo, &h2) == HV_OK) {
        have = 1;
        if (!period)
            hi = h2;
    }
    if (period && end != NULL && hv__search_date_range(end, &l2, &h2) == HV_OK) {
        hi = h2;
        have = 1;
    }
    if (!have)
        return;
    row(x, "INSERT INTO sp_date (type, id, code, lo, hi) VALUES ($1, $2, $3, $4, $5)", NULL, NULL, lo, hi, 1, NULL);
}

static void put_num(ix_t *x, struct json_object *v, const char *system, const char *unit)
{
    double d;
    if (v == NULL || !(json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int)))
        return;
    d = json_object_get_double(v);
    row(x, "INSERT INTO sp_num (type, id, code, value, system, unit) VALUES ($1, $2, $3, $4, $5, $6)", system, unit,
        0, 0, 0, &d);
}

static void put_ref(ix_t *x, const char *ref)
{
    char rtype[HV__FHIR_TYPE_MAX] = "";
    const char *slash, *id;
    size_t tl;
    if (ref == NULL || ref[0] == '#' || ref[0] == '\0')
        return;
    /* "Type/id", "Type/id/_history/n" or an absolute URL ending in Type/id. */
    {
        const char *h = strstr(ref, "/_history/");
        const char *end = h ? h : ref + strlen(ref);
        const char *p = end;
        char buf[HV__FHIR_ID_MAX];
        while (p > ref && p[-1] != '/')
            p--;
        id = p;
        if ((size_t)(end - id) >= sizeof(buf))
            return;
        memcpy(buf, id, (size_t)(end - id));
        buf[end - id] = '\0';
        if (p > ref) {
            slash = p - 1;
            p = slash;
            while (p > ref && p[-1] != '/')
                p--;
            tl = (size_t)(slash - p);
            if (tl > 0 && tl < sizeof(rtype)) {
                memcpy(rtype, p, tl);
                rtype[tl] = '\0';
            }
        }
        if (!hv__fhir_id_valid(buf))
            return;
        row(x, "INSERT INTO sp_ref (type, id, code, rtype, rid) VALUES ($1, $2, $3, $4, $5)",
            rtype[0] ? rtype : NULL, buf, 0, 0, 0, NULL);
    }
}

static const char *jstr(struct json_object *o, const char *k)
{
    struct json_object *v = NULL;
    if (o == NULL || !json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* Calls put_str on every string of array-or-string member k of o. */
static void put_str_member(ix_t *x, struct json_object *o, const char *k)
{
    struct json_object *v = NULL;
    if (!json_object_object_get_ex(o, k, &v))
        return;
    if (json_object_is_type(v, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            struct json_object *e = json_object_array_get_idx(v, i);
            if (json_object_is_type(e, json_type_string))
                put_str(x, json_object_get_string(e));
        }
    } else if (json_object_is_type(v, json_type_string)) {
        put_str(x, json_object_get_string(v));
    }
}

static void put_coding(ix_t *x, struct json_object *c)
{
    put_tok(x, jstr(c, "system"), jstr(c, "code"));
}

/* Indexes one result item according to the parameter's type. */
static void index_item(ix_t *x, hv_fhir_search_type_t st, const hv_fhirpath_item_t *it)
{
    const char *ft = it->type ? it->type : "";
    struct json_object *j = it->json;
    if (it->kind != HV_FHIRPATH_NODE) {
        /* A computed value (a string, a date...): indexed by its text. */
        if (st == HV_FHIR_SP_STRING)
            put_str(x, it->text);
        else if (st == HV_FHIR_SP_TOKEN)
            put_tok(x, NULL, it->text);
        else if (st == HV_FHIR_SP_URI && it->text)
            row(x, "INSERT INTO sp_uri (type, id, code, value) VALUES ($1, $2, $3, $4)", it->text, NULL, 0, 0, 0,
                NULL);
        else if (st == HV_FHIR_SP_DATE)
            put_date(x, it->text, NULL, 0);
        return;
    }
    if (j == NULL)
        return;
    switch (st) {
    case HV_FHIR_SP_STRING:
        if (json_object_is_type(j, json_type_string)) {
            put_str(x, json_object_get_string(j));
        } else if (strcmp(ft, "HumanName") == 0) {
            put_str_member(x, j, "family");
            put_str_member(x, j, "given");
            put_str_member(x, j, "prefix");
            put_str_member(x, j, "suffix");
            put_str_member(x, j, "text");
        } else if (strcmp(ft, "Address") == 0) {
            static const char *const parts[] = {"line", "city", "district", "state", "postalCode", "country", "text"};
            for (size_t i = 0; i < HV_ARRAY_LEN(parts); i++)
                put_str_member(x, j, parts[i]);
        }
        break;
    case HV_FHIR_SP_TOKEN:
        if (json_object_is_type(j, json_type_string)) {
            put_tok(x, NULL, json_object_get_string(j));
        } else if (json_object_is_type(j, json_type_boolean)) {
            put_tok(x, NULL, json_object_get_boolean(j) ? "true" : "false");
        } else if (strcmp(ft, "Coding") == 0) {
            put_coding(x, j);
        } else if (strcmp(ft, "CodeableConcept") == 0) {
            struct json_object *cs = NULL;
            if (json_object_object_get_ex(j, "coding", &cs) && json_object_is_type(cs, json_type_array))
                for (size_t i = 0; i < json_object_array_length(cs); i++)
                    put_coding(x, json_object_array_get_idx(cs, i));
        } else if (strcmp(ft, "Identifier") == 0) {
            put_tok(x, jstr(j, "system"), jstr(j, "value"));
        } else if (strcmp(ft, "ContactPoint") == 0) {
            put_tok(x, jstr(j, "system"), jstr(j, "value"));
        }
        break;
    case HV_FHIR_SP_REFERENCE:
        if (json_object_is_type(j, json_type_string))
            put_ref(x, json_object_get_string(j)); /* canonical, uri */
        else
            put_ref(x, jstr(j, "reference"));
        break;
    case HV_FHIR_SP_DATE:
        if (json_object_is_type(j, json_type_string))
            put_date(x, json_object_get_string(j), NULL, 0);
        else if (strcmp(ft, "Period") == 0)
            put_date(x, jstr(j, "start"), jstr(j, "end"), 1);
        break;
    case HV_FHIR_SP_NUMBER:
        put_num(x, j, NULL, NULL);
        break;
    case HV_FHIR_SP_QUANTITY:
        if (json_object_is_type(j, json_type_object)) {
            struct json_object *v = NULL;
            const char *unit = jstr(j, "code");
            json_object_object_get_ex(j, "value", &v);
            put_num(x, v, jstr(j, "system"), unit ? unit : jstr(j, "unit"));
        } else {
            put_num(x, j, NULL, NULL);
        }
        break;
    case HV_FHIR_SP_URI:
        if (json_object_is_type(j, json_type_string))
            row(x, "INSERT INTO sp_uri (type, id, code, value) VALUES ($1, $2, $3, $4)", json_object_get_string(j),
                NULL, 0, 0, 0, NULL);
        break;
    default:
        break;
    }
}

static int index_params(ix_t *x, const hv_fhir_type_t *t, struct json_object *resource, hv_arena_t *arena)
{
    size_t n = hv_fhir_search_own_count(t);
    for (size_t i = 0; i < n && x->rc == HV_OK; i++) {
        const hv_fhir_search_t *sp = hv_fhir_search_own_at(t, i);
        const hv_fhirpath_t *fp = expr_of(sp);
        hv_fhirpath_result_t *res = NULL;
        hv_error_t err;
        hv_fhir_search_type_t st = hv_fhir_search_type(sp);
        if (fp == NULL)
            continue;
        x->code = hv_fhir_search_code(sp);
        if (strcmp(x->code, "_id") == 0 || strcmp(x->code, "_lastUpdated") == 0)
            continue; /* searched on the resources table itself */
        x->nvalues = 0;
        memset(&err, 0, sizeof(err));
        hv_arena_reset(arena);
        if (hv_fhirpath_eval(fp, resource, NULL, arena, &res, &err) != HV_OK)
            continue;
        for (size_t k = 0; k < hv_fhirpath_result_count(res) && x->rc == HV_OK; k++) {
            hv_fhirpath_item_t it;
            if (hv_fhirpath_result_item(res, k, &it) == HV_OK)
                index_item(x, st, &it);
        }
    }
    return x->rc;
}

int hv__search_index_put(hv_db_t *db, const char *type, const char *id, struct json_object *resource,
                         int replace)
{
    static const char *const del[] = {
        "DELETE FROM sp_str WHERE type = $1 AND id = $2",  "DELETE FROM sp_tok WHERE type = $1 AND id = $2",
        "DELETE FROM sp_ref WHERE type = $1 AND id = $2",  "DELETE FROM sp_date WHERE type = $1 AND id = $2",
        "DELETE FROM sp_num WHERE type = $1 AND id = $2",  "DELETE FROM sp_uri WHERE type = $1 AND id = $2"};
    ix_t x = {db, type, id, NULL, HV_OK, 0};
    hv_arena_t *arena = NULL;
    const hv_fhir_type_t *t;
    int rc = HV_OK;
    if (replace) {
        for (size_t k = 0; k < HV_ARRAY_LEN(del); k++) {
            hv_db_stmt_t *st = NULL;
            rc = hv_db_prepare(db, del[k], &st);
            if (rc != HV_OK)
                return rc;
            hv_db_bind_text(st, 1, type, strlen(type));
            hv_db_bind_text(st, 2, id, strlen(id));
            rc = hv_db_step(st);
            hv_db_done(st);
            if (rc < 0)
                return rc;
        }
        rc = HV_OK;
    }
    if (resource == NULL)
        return HV_OK;
    t = hv_fhir_resource_type(type);
    arena = hv_arena_new(0);
    if (arena == NULL)
        return HV_ENOMEM;
    /* The type's own parameters, then those inherited (DomainResource, Resource). */
    for (; t != NULL && rc == HV_OK; t = hv_fhir_type_base(t))
        rc = index_params(&x, t, resource, arena);
    hv_arena_free(arena);
    return rc;
}
