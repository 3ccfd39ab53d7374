/*
 * search_has.c — combined index rows for reverse chaining (FHIR R4 search.html#has):
 * a reference parameter of a resource together with a token parameter of the same
 * resource, so that Patient?_has:Observation:patient:code=X is answered from one index
 * keyed by the referenced resource and the code, not by the reference index and then a
 * token index probe per referencing resource.
 *
 *   sp_reftok  type, id, rcode, rtype, rid, tcode, tsys, tval
 *
 * A row says "type/id refers through rcode to rtype/rid and holds tcode = tsys|tval": the
 * cross product of the resource's sp_ref rows of rcode and its sp_tok rows of tcode (the
 * rows of the current version, so that "one reference matches and one code matches" —
 * the meaning of _has:Type:rcode:tcode=value — is "one combined row matches"). Every row
 * of the product is written, up to HV__SEARCH_CROSS_MAX rows per pair (more refuse the
 * resource: fhir/search_int.h, hv__search_refusal). The writer computes them in C from the plain rows of the
 * version it holds, in the transaction of the version (hv__search_has_put_rows, called with
 * the other combined rows by hv__search_combo_put_rows: writes, imports, reindex); they are
 * the rows the fill statement (hv__search_has_put: INSERT ... SELECT over the plain rows
 * just written, every group) would select, and the migration fills them in SQL for the
 * rows that exist. A write never runs the fill (it names sp_tok_idc, which an import may
 * have deferred): the unit tests compare the computed rows with it.
 *
 * The covering index sp_reftok_v (type, rcode, rtype, tcode, tval, rid, tsys) serves
 * both ways of reading a _has:
 *   - checked per candidate (a name or an id list drives): one seek of
 *     (type, rcode, rtype, tcode, tval, rid = candidate) — instead of the candidate's
 *     referencing resources (about 9 Observations per Patient at 1M) each probed in the
 *     token index (7,700 seeks for 840 candidates);
 *   - read whole (the _has alone): one range of the index, in referenced-id order, so its
 *     distinct ids need no sorter (hv__search_has_count).
 *
 * The planner's rule (hv__search_has_rewrite, from fhir/search_plan.c's has()) turns a
 * _has whose condition is a plain token criterion of a pair (code=X, system|X, |X, and
 * lists of those; no modifier) into a sub-select of sp_reftok; anything else keeps the
 * sp_ref + sp_tok form.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/search_int.h"

/*
 * The (referencing type, reference parameter, token parameter) triples the table holds.
 * The migration below fills exactly these (a new one needs a new migration that fills it).
 */
static const struct {
    const char *type, *rcode, *tcode;
} pairs[] = {
    {"Observation", "patient", "code"},
    {"Observation", "subject", "code"},
};

/*
 * SQLite without statistics would read either side of the join from its covering value
 * index by (type, code) — every row of the code for each row of the other side — so on
 * SQLite the reference rows drive (CROSS JOIN fixes the order) and the token rows are
 * sought by (type, id, code) (tx " INDEXED BY sp_tok_idc"); one resource's reference
 * rows too (hx " INDEXED BY sp_ref_idc"), the migration reading every reference row of
 * the codes from sp_ref_vc (hx ""). PostgreSQL: "", " JOIN", "".
 */
#define REFTOK_FILL(hx, jn, tx, where)                                                                         \
    "INSERT INTO sp_reftok (type, id, rcode, rtype, rid, tcode, tsys, tval) SELECT h.type, h.id, h.code,"      \
    " h.rtype, h.rid, t.code, t.system, t.value FROM sp_ref h" hx jn " sp_tok t" tx " ON t.type = h.type AND"   \
    " t.id = h.id AND t.code = " where

/*
 * The ninth migration of the index (per backend: SQLite names the token index, above):
 * sp_reftok filled from the plain rows of the pairs above (every row, as the criterion
 * it replaces reads every row of its code), then indexed; sp_reftok_id serves the per-resource deletion. resources_dead holds
 * the deleted versions only (few): the count of a _has read whole subtracts the
 * referenced ids whose current version is a deletion instead of reading every referenced
 * resource's row (hv__search_has_count). Partial, on "deleted <> 0", which no statement
 * but that count writes, so no other plan can pick it.
 */
#define REFTOK_MIGRATION(jn, tx)                                                                             \
    "CREATE TABLE sp_reftok (type TEXT NOT NULL, id TEXT NOT NULL, rcode TEXT NOT NULL, rtype TEXT,"           \
    " rid TEXT NOT NULL, tcode TEXT NOT NULL, tsys TEXT, tval TEXT NOT NULL);" REFTOK_FILL(                    \
        "", jn, tx, "'code' WHERE h.type = 'Observation' AND h.code IN ('patient', 'subject');")               \
    "CREATE INDEX sp_reftok_v ON sp_reftok (type, rcode, rtype, tcode, tval, rid, tsys);"                      \
    "CREATE INDEX sp_reftok_id ON sp_reftok (type, id);"                                                       \
    "CREATE INDEX resources_dead ON resources (type, id, version) WHERE deleted <> 0;"
const char hv__search_migration9_sqlite[] = REFTOK_MIGRATION(" CROSS JOIN", " INDEXED BY sp_tok_idc");
const char hv__search_migration9_pg[] = REFTOK_MIGRATION(" JOIN", "");

/* hv__search_has_put's statements: $1 type, $2 id, $3 the reference code, $4 the token code. */
#define FILL_ONE "$4 WHERE h.type = $1 AND h.id = $2 AND h.code = $3"
static const char fill_sqlite[] =
    REFTOK_FILL(" INDEXED BY sp_ref_idc", " CROSS JOIN", " INDEXED BY sp_tok_idc", FILL_ONE);
static const char fill_pg[] = REFTOK_FILL("", " JOIN", "", FILL_ONE);

const char *hv__search_has_fill_sql(hv_db_t *db)
{
    return hv_db_kind(db) == HV_DB_PG ? fill_pg : fill_sqlite;
}

static const char del_sql[] = "DELETE FROM sp_reftok WHERE type = $1 AND id = $2";

static int has_rows_enabled = 1;

void hv__search_has_rows_enable(int on)
{
    has_rows_enabled = on != 0;
}

int hv__search_has_put(hv_db_t *db, const char *type, const char *id, int live, int replace,
                       hv__search_rows_has_fn has, void *ud)
{
    int rc = HV_OK, any = 0;
    for (size_t k = 0; k < HV_ARRAY_LEN(pairs); k++)
        any |= strcmp(pairs[k].type, type) == 0;
    if (!any)
        return HV_OK;
    if (replace)
        rc = hv__search_exec_tid(db, del_sql, type, id, NULL, NULL);
    /* A pair one of whose sides has no plain row selects nothing: not run (has, NULL: all). */
    for (size_t k = 0; k < HV_ARRAY_LEN(pairs) && rc == HV_OK && live; k++)
        if (strcmp(pairs[k].type, type) == 0 &&
            (has == NULL || (has(ud, "sp_ref", pairs[k].rcode) && has(ud, "sp_tok", pairs[k].tcode))))
            rc = hv__search_exec_tid(db, hv__search_has_fill_sql(db), type, id, pairs[k].rcode, pairs[k].tcode);
    return rc;
}

int hv__search_has_put_rows(hv_db_t *db, const char *type, const char *id, hv__search_rows_pick_fn pick, void *ud)
{
    const hv__search_val_t *rs[HV_ARRAY_LEN(pairs)][HV__SEARCH_PICK_STACK];
    const hv__search_val_t *ts[HV_ARRAY_LEN(pairs)][HV__SEARCH_PICK_STACK];
    hv__search_cross_t x[HV_ARRAY_LEN(pairs)];
    size_t nx = 0;
    int rc = HV_OK;
    /* The pairs' rows go into one INSERT (the same table: an Observation's patient and
     * subject rows are one statement, not two). */
    for (size_t k = 0; k < HV_ARRAY_LEN(pairs) && rc == HV_OK; k++) {
        if (strcmp(pairs[k].type, type) != 0)
            continue;
        /* The fill joins the reference rows of rcode with the token rows of tcode, of every
         * group (no grp condition, unlike the combined rows of fhir/search_combo.c), and
         * has no LIVE rule: the caller writes a live version only. */
        rc = hv__search_cross_pick(pick, ud, type, "sp_ref", pairs[k].rcode, "sp_tok", pairs[k].tcode, 0, rs[nx],
                                   ts[nx], &x[nx]);
        if (rc == HV_OK && x[nx].na > 0 && x[nx].nb > 0)
            nx++;
        else
            hv__search_cross_release(&x[nx], rs[nx], ts[nx]);
    }
    if (rc == HV_OK && nx > 0)
        rc = hv__search_cross_insert(db, HV__CROSS_REFTOK, type, id, 0, x, nx);
    for (size_t i = 0; i < nx; i++)
        hv__search_cross_release(&x[i], rs[i], ts[i]);
    return rc;
}

/* ---- the planner's rule ---- */

/* The text bound at placeholder $n of p ("" when it is not a text bind). */
static const char *bound(const hv__search_plan_t *p, long n)
{
    if (n < 1 || n > p->nbinds || p->binds[n - 1].kind != 0 || p->binds[n - 1].s == NULL)
        return "";
    return p->binds[n - 1].s;
}

/* Reads "$<n>" at *s into *n and moves *s past it; 0 when *s does not start so. */
static int placeholder(const char **s, long *n)
{
    char *end = NULL;
    if (**s != '$')
        return 0;
    *n = strtol(*s + 1, &end, 10);
    if (end == NULL || end == *s + 1)
        return 0;
    *s = end;
    return 1;
}

/* Matches the literal lit at *s and moves past it; 0 when *s does not start with it. */
static int lit(const char **s, const char *lit)
{
    size_t n = strlen(lit);
    if (strncmp(*s, lit, n) != 0)
        return 0;
    *s += n;
    return 1;
}

int hv__search_has_rewrite(hv__search_plan_t *p, size_t start, size_t inner, int k, const char *idcol,
                           const char *type, const char *rcode, int tb, int rb, const char *tref)
{
    char head[128];
    const char *s, *e, *cs;
    long tn = 0;
    size_t pi;
    hv_buf_t nw;
    int rc;
    if (!has_rows_enabled || p->where.data == NULL || p->where.len < inner + 2)
        return HV_OK;
    for (pi = 0; pi < HV_ARRAY_LEN(pairs); pi++)
        if (strcmp(pairs[pi].type, type) == 0 && strcmp(pairs[pi].rcode, rcode) == 0)
            break;
    if (pi == HV_ARRAY_LEN(pairs))
        return HV_OK;
    /*
     * The condition on the referencing resource as fhir/search_plan.c's cond() writes a
     * token criterion (then the _has's closing parenthesis):
     *   h.id IN (SELECT id FROM sp_tok@I<k>:sp_tok@ WHERE type = $tb AND @H<k>@code = $tn AND (<values>)))
     * ("id IN ..." and no marker below the top level).
     */
    s = p->where.data + inner;
    e = p->where.data + p->where.len;
    if (k >= 0)
        snprintf(head, sizeof(head), "h.id IN (SELECT id FROM sp_tok@I%d:sp_tok@ WHERE type = $%d AND @H%d@code = ", k,
                 tb, k);
    else
        snprintf(head, sizeof(head), "id IN (SELECT id FROM sp_tok WHERE type = $%d AND code = ", tb);
    if (!lit(&s, head) || !placeholder(&s, &tn) || !lit(&s, " AND (") || e - s < 3 || strcmp(e - 3, ")))") != 0)
        return HV_OK;
    if (strcmp(bound(p, tn), pairs[pi].tcode) != 0 || !hv__search_token_cond_ok(s, e - 3))
        return HV_OK;
    cs = s;
    hv_buf_init(&nw, p->where.max);
    if (k >= 0)
        hv_buf_printf(&nw, "@E%d@(SELECT rid FROM sp_reftok h WHERE type = $%d AND @R%d@rcode = $%d", k, tb, k, rb);
    else
        hv_buf_printf(&nw, "%s IN (SELECT rid FROM sp_reftok WHERE type = $%d AND rcode = $%d", idcol, tb, rb);
    hv_buf_printf(&nw, " AND rtype = %s AND tcode = $%ld AND (", tref, tn);
    hv__search_token_cond(&nw, cs, e - 3);
    rc = hv_buf_puts(&nw, "))");
    if (rc == HV_OK) {
        p->where.len = start;
        rc = hv_buf_append(&p->where, nw.data, nw.len);
    }
    hv_buf_release(&nw);
    return rc;
}

/* ---- the count of a _has read whole ---- */

/*
 * The span of the sp_reftok sub-select of p's only criterion, when p is one top-level
 * _has over sp_reftok alone (a search of one type, no compartment or value set):
 * [*body, *bend) is " WHERE ..." up to the sub-select's closing parenthesis.
 */
static int count_shape(const hv__search_plan_t *p, const char **body, const char **bend)
{
    static const char head[] = " AND @E0@(SELECT rid FROM sp_reftok h";
    const char *s = p->where.data, *e;
    if (!has_rows_enabled || p->system || p->compartment[0] != '\0' || p->nvs > 0 || p->ncrit != 1 || s == NULL ||
        p->cspan[0][0] != 0 || p->cspan[0][1] != p->where.len || p->where.len <= sizeof(head) ||
        strncmp(s, head, sizeof(head) - 1) != 0)
        return 0;
    e = s + p->where.len;
    if (e[-1] != ')')
        return 0;
    *body = s + sizeof(head) - 1;
    *bend = e - 1;
    return 1;
}

/*
 * The count statement of a count_shape plan ($1 the searched type, the criterion's
 * values after it): the distinct referenced ids of the sp_reftok range (index order, no
 * sorter) that name a stored resource of the type (one resources_tiv seek each, in id
 * order), less those whose current version is a deletion (read from resources_dead:
 * deleted versions only, each checked for being current and referenced). A referenced
 * id with no stored resource is not counted, as the search itself returns resources only.
 */
static int count_sql(hv_db_t *db, const hv__search_plan_t *p, hv_buf_t *q)
{
    const char *body, *bend;
    int pg = hv_db_kind(db) == HV_DB_PG;
    char *w = NULL;
    if (!count_shape(p, &body, &bend))
        return HV_ENOTFOUND;
    w = hv_strndup(body, (size_t)(bend - body));
    if (w == NULL)
        return HV_ENOMEM;
    /* The correlation marker "@R0@" is dropped in the range and becomes "rid = r.id AND "
     * in the per-deletion check (fhir/search_run.c's expand, here by hand: no other marker
     * occurs in a rewritten _has). */
    {
        char *m = strstr(w, "@R0@");
        if (m == NULL) {
            hv_free(w);
            return HV_EINVAL;
        }
        hv_buf_printf(q, "SELECT (SELECT COUNT(*) FROM (SELECT DISTINCT rid FROM sp_reftok h%.*s%s) x WHERE EXISTS"
                         " (SELECT 1 FROM resources e WHERE e.type = $1 AND e.id = x.rid))",
                      (int)(m - w), w, m + 4);
        hv_buf_printf(q, " - (SELECT COUNT(*) FROM resources r%s WHERE r.type = $1 AND r.deleted <> 0 AND NOT EXISTS"
                         " (SELECT 1 FROM resources n WHERE n.type = r.type AND n.id = r.id AND n.version > r.version)"
                         " AND EXISTS (SELECT 1 FROM sp_reftok h%.*srid = r.id AND %s))",
                      pg ? "" : " INDEXED BY resources_dead", (int)(m - w), w, m + 4);
    }
    hv_free(w);
    return hv_buf_puts(q, "");
}

int hv__search_has_count(hv_db_t *db, const hv__search_plan_t *p, int64_t *count)
{
    hv_buf_t q;
    int rc;
    hv_buf_init(&q, 64 * 1024);
    rc = count_sql(db, p, &q);
    if (rc == HV_OK)
        rc = hv__search_count_run(db, p, q.data, count);
    hv_buf_release(&q);
    return rc;
}

int hv__search_has_count_sql(hv_db_t *db, const hv__search_plan_t *p, hv_buf_t *q)
{
    return count_sql(db, p, q);
}
