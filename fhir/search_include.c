/*
 * search_include.c — _include and _revinclude of FHIR R4 search.html#include: the
 * resources a page of search results references (_include=Type:param[:target],
 * Type:*) or is referenced by (_revinclude=...), added to the searchset Bundle with
 * search.mode "include". :iterate parameters are applied again to what was added,
 * round after round, until nothing new comes or HV__SEARCH_MAX_ITERATE rounds ran.
 *
 * Each parameter is answered from the reference index (sp_ref) by one statement
 * per resource type and per chunk of at most CHUNK ids — never one query per
 * result row. A resource is added once, never when it is a match itself, and at
 * most HV__SEARCH_MAX_INCLUDED resources are added to one page (search.html leaves
 * the limit to the server). Only current, live versions are included.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhirpath.h"
#include "fhir/search_int.h"

#define CHUNK 100 /* ids bound in one statement */

/* The resources in the Bundle so far (matches and included), a set of type/id. */
typedef struct seen {
    char (*types)[HV__FHIR_TYPE_MAX];
    char (*ids)[HV__FHIR_ID_MAX];
    size_t n, cap;
    uint32_t *slot; /* open addressing: index + 1, 0 = empty */
    size_t nslot;
} seen_t;

static uint32_t hash2(const char *a, const char *b)
{
    uint32_t h = 2166136261u;
    for (; *a; a++)
        h = (h ^ (unsigned char)*a) * 16777619u;
    h = (h ^ '/') * 16777619u;
    for (; *b; b++)
        h = (h ^ (unsigned char)*b) * 16777619u;
    return h;
}

/* Adds type/id; returns 1 when it was new, 0 when already there, <0 when full. */
static int seen_add(seen_t *s, const char *type, const char *id)
{
    size_t i = hash2(type, id) & (s->nslot - 1);
    while (s->slot[i] != 0) {
        size_t k = s->slot[i] - 1;
        if (strcmp(s->ids[k], id) == 0 && strcmp(s->types[k], type) == 0)
            return 0;
        i = (i + 1) & (s->nslot - 1);
    }
    if (s->n >= s->cap)
        return HV_ETOOBIG;
    snprintf(s->types[s->n], HV__FHIR_TYPE_MAX, "%s", type);
    snprintf(s->ids[s->n], HV__FHIR_ID_MAX, "%s", id);
    s->slot[i] = (uint32_t)++s->n;
    return 1;
}

typedef struct inc_run {
    hv_db_t *db;
    seen_t seen;
    size_t added;
    hv__store_row_cb cb;
    void *ud;
} inc_run_t;

#define ROW_COLS "r.rid, r.type, r.id, r.version, r.last_ms, r.deleted, r.json"

/* Hands every new resource of statement st (ROW_COLS) to the caller; HV_OK or an error. */
static int emit(inc_run_t *x, hv_db_stmt_t *st)
{
    int rc;
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        hv__store_row_t row;
        size_t len = 0;
        const char *s;
        int fresh;
        memset(&row, 0, sizeof(row));
        s = hv_db_column_text(st, 1, &len);
        snprintf(row.type, sizeof(row.type), "%.*s", (int)len, s ? s : "");
        s = hv_db_column_text(st, 2, &len);
        snprintf(row.id, sizeof(row.id), "%.*s", (int)len, s ? s : "");
        if (x->added >= HV__SEARCH_MAX_INCLUDED)
            break;
        fresh = seen_add(&x->seen, row.type, row.id);
        if (fresh <= 0)
            continue;
        row.rid = hv_db_column_int64(st, 0);
        row.version = hv_db_column_int64(st, 3);
        row.last_ms = (uint64_t)hv_db_column_int64(st, 4);
        s = hv_db_column_text(st, 6, &len);
        row.text = hv_strndup(s ? s : "", s ? len : 0);
        row.text_len = s ? len : 0;
        x->added++;
        rc = row.text ? x->cb(x->ud, &row) : HV_ENOMEM;
        hv__store_row_clear(&row);
        if (rc != HV_OK)
            break;
    }
    return rc < 0 ? rc : HV_OK;
}

/*
 * The codes of the reference parameters of type src (its own and its bases'), which
 * _revinclude=src:* follows: at most HV__SEARCH_MAX_REV_CODES, into codes (pointers into the
 * definitions). Returns how many; 0 when there are none or more (then the statement
 * has no condition on the code: every row of the type is a candidate, as before).
 */
static size_t rev_codes(const char *src, const char **codes)
{
    const hv_fhir_type_t *t = hv_fhir_resource_type(src);
    size_t n = 0;
    for (const hv_fhir_type_t *bt = t; bt != NULL; bt = hv_fhir_type_base(bt))
        for (size_t i = 0; i < hv_fhir_search_own_count(bt); i++) {
            const hv_fhir_search_t *sp = hv_fhir_search_own_at(bt, i);
            if (hv_fhir_search_type(sp) != HV_FHIR_SP_REFERENCE)
                continue;
            if (n == HV__SEARCH_MAX_REV_CODES)
                return 0;
            codes[n++] = hv_fhir_search_code(sp);
        }
    return n;
}

/*
 * The statement of one include chunk (run_chunk): parameter in over nids result ids,
 * written into q. Its placeholders, in order: $1 in->src; for _revinclude $2 the
 * results' type; the nids ids; in->code when given, else for "*" of a _revinclude the
 * *ncodes codes of rev_codes(in->src) (set here, 0 otherwise); for _include
 * in->target when given.
 *
 * The index rows are read by their key first and the resources looked up by
 * (type, id) after (CROSS JOIN fixes that order on SQLite). _include reads the
 * sources' rows through sp_ref's (type, id, code) index; _revinclude the referencing
 * rows through its (type, code, rid) index — keyed by the target, one probe per
 * (code, result id) — for the code given or, for "*", for each reference parameter of
 * the source type (code IN (...)). No DISTINCT: without statistics SQLite chose an
 * index in the DISTINCT's order instead of the key's, reading every row of the source
 * type (_revinclude: 3.4 s at a million resources) or of the code (_include with a
 * target type); emit() drops the duplicates instead. The unit test
 * search_include_statements_read_the_reference_index_by_key checks the plans.
 */
int hv__search_include_sql(const hv__sp_include_t *in, size_t nids, int hint, hv_buf_t *q, const char **codes,
                           size_t *ncodes)
{
    int k;
    *ncodes = 0;
    /* SQLite without statistics prefers the covering sp_ref_vc (type, code, ...) — every
     * row of the code — to (type, id, code), the sources' own rows: it is told. */
    if (!in->rev)
        hv_buf_printf(q, "SELECT " ROW_COLS " FROM (SELECT rtype AS t, rid AS i FROM sp_ref%s WHERE type = $1"
                         " AND id IN (", hint ? " INDEXED BY sp_ref_idc" : "");
    else
        hv_buf_puts(q, "SELECT " ROW_COLS " FROM (SELECT type AS t, id AS i FROM sp_ref WHERE type = $1"
                       " AND rtype = $2 AND rid IN (");
    k = in->rev ? 2 : 1;
    for (size_t i = 0; i < nids; i++)
        hv_buf_printf(q, "%s$%d", i ? ", " : "", ++k);
    hv_buf_puts(q, ")");
    if (in->code[0] != '\0') {
        hv_buf_printf(q, " AND code = $%d", ++k);
    } else if (in->rev) {
        *ncodes = rev_codes(in->src, codes);
        for (size_t c = 0; c < *ncodes; c++)
            hv_buf_printf(q, "%s$%d", c ? ", " : " AND code IN (", ++k);
        if (*ncodes)
            hv_buf_puts(q, ")");
    }
    if (!in->rev && in->target[0] != '\0')
        hv_buf_printf(q, " AND rtype = $%d", ++k);
    hv_buf_puts(q, ") s CROSS JOIN resources r WHERE r.type = s.t AND r.id = s.i AND r.deleted = 0 AND NOT EXISTS"
                   " (SELECT 1 FROM resources n WHERE n.type = r.type AND n.id = r.id AND n.version > r.version)"
                   " ORDER BY r.rid");
    return hv_buf_puts(q, "");
}

/*
 * Runs one include statement over ids[from..to) of type `type` for parameter in and
 * hands every new resource to the caller.
 */
static int run_chunk(inc_run_t *x, const hv__sp_include_t *in, const char *type, size_t from, size_t to)
{
    hv_buf_t q;
    hv_db_stmt_t *st = NULL;
    int rc, k = 0;
    const char *codes[HV__SEARCH_MAX_REV_CODES];
    size_t ncodes = 0;
    hv_buf_init(&q, 16384);
    rc = hv__search_include_sql(in, to - from, hv__search_values_hinted(x->db), &q, codes, &ncodes);
    if (rc != HV_OK)
        goto out;
    rc = hv_db_prepare(x->db, q.data, &st);
    if (rc != HV_OK)
        goto out;
    k = 0;
    hv_db_bind_text(st, ++k, in->src, strlen(in->src));
    if (in->rev)
        hv_db_bind_text(st, ++k, type, strlen(type));
    for (size_t i = from; i < to; i++)
        hv_db_bind_text(st, ++k, x->seen.ids[i], strlen(x->seen.ids[i]));
    if (in->code[0] != '\0')
        hv_db_bind_text(st, ++k, in->code, strlen(in->code));
    for (size_t c = 0; c < ncodes; c++)
        hv_db_bind_text(st, ++k, codes[c], strlen(codes[c]));
    if (!in->rev && in->target[0] != '\0')
        hv_db_bind_text(st, ++k, in->target, strlen(in->target));
    rc = emit(x, st);
    hv_db_done(st);
out:
    hv_buf_release(&q);
    return rc < 0 ? rc : HV_OK;
}

#define MAX_CANONICALS 256 /* canonical values one chunk of sources resolves */

/* The current, live resources of type whose url is url (and whose version is ver, unless NULL). */
static int resolve_canonical(inc_run_t *x, const char *type, const char *url, const char *ver)
{
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(x->db,
                           ver != NULL
                               ? "SELECT " ROW_COLS " FROM resources r WHERE r.type = $1 AND r.id IN (SELECT id FROM"
                                 " sp_uri WHERE type = $1 AND code = 'url' AND value = $2) AND r.id IN (SELECT id FROM"
                                 " sp_tok WHERE type = $1 AND code = 'version' AND value = $3) AND r.deleted = 0 AND"
                                 " NOT EXISTS (SELECT 1 FROM resources n WHERE n.type = r.type AND n.id = r.id AND"
                                 " n.version > r.version) ORDER BY r.rid"
                               : "SELECT " ROW_COLS " FROM resources r WHERE r.type = $1 AND r.id IN (SELECT id FROM"
                                 " sp_uri WHERE type = $1 AND code = 'url' AND value = $2) AND r.deleted = 0 AND"
                                 " NOT EXISTS (SELECT 1 FROM resources n WHERE n.type = r.type AND n.id = r.id AND"
                                 " n.version > r.version) ORDER BY r.rid",
                           &st);
    if (rc != HV_OK)
        return rc;
    hv_db_bind_text(st, 1, type, strlen(type));
    hv_db_bind_text(st, 2, url, strlen(url));
    if (ver != NULL)
        hv_db_bind_text(st, 3, ver, strlen(ver));
    rc = emit(x, st);
    hv_db_done(st);
    return rc;
}

/*
 * _include of canonical references (FHIR R4 references.html#canonical): a reference
 * parameter over a canonical element (QuestionnaireResponse.questionnaire,
 * MedicationRequest.instantiates-canonical...) holds "url[|version]", which the
 * reference index (Type/id) does not resolve. For the sources seen[from..to) (of
 * in->src) the parameter's expression is evaluated and every canonical value adds the
 * resources of its target types (in->target, or the parameter's targets that have a
 * url parameter) whose url — and version, when the value has one — equal it.
 */
static int run_canonical(inc_run_t *x, const hv__sp_include_t *in, const hv_fhir_search_t *sp, size_t from,
                         size_t to)
{
    hv_buf_t q;
    hv_db_stmt_t *st = NULL;
    hv_fhirpath_t *fp = NULL;
    hv_arena_t *arena = NULL;
    hv_error_t err;
    char (*canon)[512] = NULL;
    size_t ncanon = 0;
    int rc, k = 1;
    const char *expr = hv_fhir_search_expression(sp);
    int canonical_target = 0;
    /* Only a parameter with a target that has a url (a canonical resource) can hold a
     * canonical; the others (Observation:subject...) cost nothing here. */
    for (size_t t = 0; t < (in->target[0] ? 1 : hv_fhir_search_target_count(sp)); t++) {
        const hv_fhir_type_t *tt = in->target[0] ? hv_fhir_resource_type(in->target) : hv_fhir_search_target_at(sp, t);
        canonical_target |= tt != NULL && hv_fhir_search_find(tt, "url") != NULL;
    }
    if (expr == NULL || !canonical_target)
        return HV_OK;
    memset(&err, 0, sizeof(err));
    hv_buf_init(&q, 16384);
    canon = hv_calloc(MAX_CANONICALS, sizeof(*canon));
    arena = hv_arena_new(0);
    if (canon == NULL || arena == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    if (hv_fhirpath_compile(expr, 0, NULL, &fp, &err) != HV_OK) {
        rc = HV_OK; /* an expression this engine cannot compile indexes nothing either */
        goto out;
    }
    hv_buf_puts(&q, "SELECT r.json FROM resources r WHERE r.type = $1 AND r.id IN (");
    for (size_t i = from; i < to; i++)
        hv_buf_printf(&q, "%s$%d", i > from ? ", " : "", ++k);
    hv_buf_puts(&q, ") AND r.deleted = 0 AND NOT EXISTS (SELECT 1 FROM resources n WHERE n.type = r.type AND"
                    " n.id = r.id AND n.version > r.version)");
    if ((rc = hv_buf_puts(&q, "")) != HV_OK || (rc = hv_db_prepare(x->db, q.data, &st)) != HV_OK)
        goto out;
    hv_db_bind_text(st, 1, in->src, strlen(in->src));
    k = 1;
    for (size_t i = from; i < to; i++)
        hv_db_bind_text(st, ++k, x->seen.ids[i], strlen(x->seen.ids[i]));
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t len = 0;
        const char *s = hv_db_column_text(st, 0, &len);
        struct json_object *tree = s ? json_tokener_parse(s) : NULL;
        hv_fhirpath_result_t *res = NULL;
        if (tree == NULL)
            continue;
        hv_arena_reset(arena);
        if (hv_fhirpath_eval(fp, tree, NULL, arena, &res, &err) == HV_OK) {
            for (size_t i = 0; i < hv_fhirpath_result_count(res) && ncanon < MAX_CANONICALS; i++) {
                hv_fhirpath_item_t it;
                const char *v;
                if (hv_fhirpath_result_item(res, i, &it) != HV_OK || it.kind != HV_FHIRPATH_NODE || it.type == NULL ||
                    strcmp(it.type, "canonical") != 0 || it.json == NULL ||
                    !json_object_is_type(it.json, json_type_string))
                    continue;
                v = json_object_get_string(it.json);
                if (v[0] != '\0' && v[0] != '#' && strlen(v) < sizeof(canon[0]))
                    snprintf(canon[ncanon++], sizeof(canon[0]), "%s", v);
            }
        }
        json_object_put(tree);
    }
    hv_db_done(st);
    if (rc < 0)
        goto out;
    rc = HV_OK;
    for (size_t c = 0; c < ncanon && rc == HV_OK; c++) {
        char *bar = strchr(canon[c], '|');
        if (bar != NULL)
            *bar = '\0';
        for (size_t t = 0; t < (in->target[0] ? 1 : hv_fhir_search_target_count(sp)) && rc == HV_OK; t++) {
            const hv_fhir_type_t *tt = in->target[0] ? hv_fhir_resource_type(in->target)
                                                     : hv_fhir_search_target_at(sp, t);
            if (tt == NULL || hv_fhir_search_find(tt, "url") == NULL)
                continue;
            rc = resolve_canonical(x, hv_fhir_type_name(tt), canon[c], bar != NULL && bar[1] ? bar + 1 : NULL);
        }
    }
out:
    hv_fhirpath_free(fp);
    hv_arena_free(arena);
    hv_free(canon);
    hv_buf_release(&q);
    return rc;
}

/* Canonical includes of the chunk seen[from..to): of parameter in->code, or of every
 * reference parameter of the source type for "*". */
static int run_canonicals(inc_run_t *x, const hv__sp_include_t *in, size_t from, size_t to)
{
    const hv_fhir_type_t *t = hv_fhir_resource_type(in->src);
    int rc = HV_OK;
    if (in->code[0] != '\0') {
        const hv_fhir_search_t *sp = hv_fhir_search_find(t, in->code);
        return sp != NULL ? run_canonical(x, in, sp, from, to) : HV_OK;
    }
    for (const hv_fhir_type_t *bt = t; bt != NULL && rc == HV_OK; bt = hv_fhir_type_base(bt))
        for (size_t i = 0; i < hv_fhir_search_own_count(bt) && rc == HV_OK; i++) {
            const hv_fhir_search_t *sp = hv_fhir_search_own_at(bt, i);
            if (hv_fhir_search_type(sp) == HV_FHIR_SP_REFERENCE)
                rc = run_canonical(x, in, sp, from, to);
        }
    return rc;
}

/* Applies parameter in to the resources seen[from..to) (the previous round's). */
static int apply(inc_run_t *x, const hv__sp_include_t *in, size_t from, size_t to)
{
    /* The ids must be contiguous per type for a chunk: walk type by type. */
    int rc = HV_OK;
    char done[160][HV__FHIR_TYPE_MAX]; /* the types already applied (more than all resource types) */
    size_t ndone = 0;
    for (size_t i = from; i < to && rc == HV_OK; i++) {
        const char *type = x->seen.types[i];
        size_t k, a, b;
        int skip = 0;
        for (k = 0; k < ndone; k++)
            if (strcmp(done[k], type) == 0)
                skip = 1;
        if (skip)
            continue;
        if (ndone < HV_ARRAY_LEN(done))
            snprintf(done[ndone++], HV__FHIR_TYPE_MAX, "%s", type);
        if (!in->rev && strcmp(type, in->src) != 0)
            continue;
        if (in->rev && in->target[0] != '\0' && strcmp(type, in->target) != 0)
            continue;
        /* Runs of this type inside [from, to): each run is chunked. */
        for (a = i; a < to && rc == HV_OK; a = b) {
            while (a < to && strcmp(x->seen.types[a], type) != 0)
                a++;
            for (b = a; b < to && b - a < CHUNK && strcmp(x->seen.types[b], type) == 0; b++)
                ;
            if (a < b)
                rc = run_chunk(x, in, type, a, b);
            if (a < b && rc == HV_OK && !in->rev)
                rc = run_canonicals(x, in, a, b);
        }
    }
    return rc;
}

int hv__search_include_run(hv_db_t *db, const hv__search_plan_t *p, const char (*types)[HV__FHIR_TYPE_MAX],
                           const char (*ids)[HV__FHIR_ID_MAX], size_t n, hv__store_row_cb cb, void *ud)
{
    inc_run_t x;
    int rc = HV_OK, any_iterate = 0;
    size_t from, to;
    if (p->ninc == 0 || n == 0)
        return HV_OK;
    memset(&x, 0, sizeof(x));
    x.db = db;
    x.cb = cb;
    x.ud = ud;
    x.seen.cap = n + HV__SEARCH_MAX_INCLUDED;
    x.seen.nslot = 1;
    while (x.seen.nslot < 2 * x.seen.cap)
        x.seen.nslot <<= 1;
    x.seen.types = hv_calloc(x.seen.cap, sizeof(*x.seen.types));
    x.seen.ids = hv_calloc(x.seen.cap, sizeof(*x.seen.ids));
    x.seen.slot = hv_calloc(x.seen.nslot, sizeof(*x.seen.slot));
    if (x.seen.types == NULL || x.seen.ids == NULL || x.seen.slot == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        seen_add(&x.seen, types[i], ids[i]);
    for (int i = 0; i < p->ninc; i++)
        any_iterate |= p->inc[i].iterate;
    from = 0;
    to = x.seen.n;
    for (int round = 0; round <= HV__SEARCH_MAX_ITERATE && from < to && rc == HV_OK; round++) {
        for (int i = 0; i < p->ninc && rc == HV_OK; i++)
            if (round == 0 || p->inc[i].iterate)
                rc = apply(&x, &p->inc[i], from, to);
        if (!any_iterate)
            break;
        from = to;
        to = x.seen.n;
    }
out:
    hv_free(x.seen.types);
    hv_free(x.seen.ids);
    hv_free(x.seen.slot);
    return rc;
}
