/*
 * search_combo.c — combined index rows for a token parameter together with a date or
 * quantity parameter of the same resource (FHIR R4 search.html#combining: criteria on
 * different parameters are ANDed), so that Observation?code=X&date=ge…&date=lt… and
 * Observation?code=X&value-quantity=gt240 are one range scan of one index instead of
 * the intersection of every match of the code with every match of the range.
 *
 * The shape follows FHIR's own composite parameters (code-value-quantity,
 * code-value-date: search.html#composite), but the rows are the cross product of the
 * parameters' plain index rows (sp_tok × sp_date, sp_tok × sp_num) of the current
 * version, so that "one of the codes matches and one of the dates matches" — the
 * meaning of two separate criteria — is "one combined row matches". Every row of the
 * product is written, up to HV__SEARCH_CROSS_MAX rows per pair (a resource with more is
 * refused: hv__search_refusal); an Observation's date and value-quantity have one value
 * each, so its product has one row per code row.
 *
 *   sp_tokdate  type, id, rid, tcode, tsys, tval, dcode, lo, hi
 *   sp_tokqty   type, id, rid, tcode, tsys, tval, qcode, value, system, unit, cvalue, cunit
 *
 * rid is the row id of the current version (resources.rid), so a page in row-id
 * order is read from the index alone and only the page's rows are read from
 * resources. The writer computes them in C from the plain rows of the version it holds
 * (hv__search_combo_put_rows, in the transaction of the version: writes, imports with
 * precomputed rows, reindex) and inserts them with bound multi-row INSERTs: the rows the
 * fill statements (hv__search_combo_put: INSERT ... SELECT over the plain rows just
 * written) would select, without the statements' joins and seeks on the writer thread.
 * Migration 5 fills them in SQL for the rows that exist; the per-resource fills remain
 * the reference the unit tests compare the computed rows with (a write never runs them:
 * the writer computes every product, whatever its factors' sizes). The planner
 * (hv__search_combo_rewrite) folds a plain token criterion and a date / quantity
 * criterion of a pair into one criterion over the combined table; fhir/search_run.c
 * counts it from the index (index_countable) and pages it by row id
 * (hv__search_combo_page).
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/search_int.h"

/*
 * The pairs the combined tables hold. Migration 5 below fills exactly these (a new
 * pair needs a new migration that fills it).
 */
static const struct {
    const char *type, *tcode, *vcode, *table;
    const char *vtable; /* the plain table of vcode's rows */
    int cross;          /* the table as hv__search_cross_insert names it */
} pairs[] = {
    {"Observation", "code", "date", "sp_tokdate", "sp_date", HV__CROSS_TOKDATE},
    {"Observation", "code", "value-quantity", "sp_tokqty", "sp_num", HV__CROSS_TOKQTY},
};

#define TOKDATE_FILL(where)                                                                                     \
    "INSERT INTO sp_tokdate (type, id, rid, tcode, tsys, tval, dcode, lo, hi) SELECT t.type, t.id,"             \
    " (SELECT MAX(x.rid) FROM resources x WHERE x.type = t.type AND x.id = t.id), t.code, t.system, t.value,"   \
    " d.code, d.lo, d.hi FROM sp_tok t JOIN sp_date d ON d.type = t.type AND d.id = t.id AND d.code = " where
/* Only rows of a stored resource (whose rid exists): index rows are never written without one
 * by the store, but a row without its resource must not fail the write or the migration. */
#define LIVE " AND EXISTS (SELECT 1 FROM resources x WHERE x.type = t.type AND x.id = t.id)"
#define TOKQTY_FILL(where)                                                                                      \
    "INSERT INTO sp_tokqty (type, id, rid, tcode, tsys, tval, qcode, value, system, unit, cvalue, cunit)"        \
    " SELECT t.type, t.id, (SELECT MAX(x.rid) FROM resources x WHERE x.type = t.type AND x.id = t.id), t.code,"  \
    " t.system, t.value, q.code, q.value, q.system, q.unit, q.cvalue, q.cunit FROM sp_tok t JOIN sp_num q ON"    \
    " q.type = t.type AND q.id = t.id AND q.code = " where

/*
 * The fifth migration (both backends): the combined tables, filled from the plain rows
 * of the current versions (plain rows: grp 0, not a composite's component), then
 * indexed. The value indexes are covering (the count and the row-id page read no table
 * row); sp_tokdate_long holds the values longer than 32 days (as sp_date_long does for
 * sp_date: a bound on hi bounds lo only for the short ones); *_idc serve the per-resource
 * deletion and a criterion checked per candidate row.
 */
const char hv__search_migration5[] =
    "CREATE TABLE sp_tokdate (type TEXT NOT NULL, id TEXT NOT NULL, rid BIGINT NOT NULL, tcode TEXT NOT NULL,"
    " tsys TEXT, tval TEXT NOT NULL, dcode TEXT NOT NULL, lo BIGINT NOT NULL, hi BIGINT NOT NULL);"
    "CREATE TABLE sp_tokqty (type TEXT NOT NULL, id TEXT NOT NULL, rid BIGINT NOT NULL, tcode TEXT NOT NULL,"
    " tsys TEXT, tval TEXT NOT NULL, qcode TEXT NOT NULL, value DOUBLE PRECISION NOT NULL, system TEXT, unit TEXT,"
    " cvalue DOUBLE PRECISION, cunit TEXT);"
    TOKDATE_FILL("'date' AND d.grp = 0 WHERE t.type = 'Observation' AND t.code = 'code' AND t.grp = 0" LIVE ";")
    TOKQTY_FILL("'value-quantity' AND q.grp = 0 WHERE t.type = 'Observation' AND t.code = 'code' AND t.grp = 0" LIVE
                ";")
    "CREATE INDEX sp_tokdate_v ON sp_tokdate (type, tcode, tval, dcode, lo, hi, tsys, rid, id);"
    "CREATE INDEX sp_tokdate_long ON sp_tokdate (type, tcode, tval, dcode, lo, hi, tsys, rid, id) WHERE hi - lo > "
    HV__SEARCH_DATE_SHORT_SQL ";"
    "CREATE INDEX sp_tokdate_idc ON sp_tokdate (type, id, tcode);"
    "CREATE INDEX sp_tokqty_v ON sp_tokqty (type, tcode, tval, qcode, value, tsys, system, unit, rid, id);"
    "CREATE INDEX sp_tokqty_c ON sp_tokqty (type, tcode, tval, qcode, cunit, cvalue, tsys, rid, id);"
    "CREATE INDEX sp_tokqty_idc ON sp_tokqty (type, id, tcode);";

/* The statements of hv__search_combo_put, per pair: $1 type, $2 id, $3 token code, $4 the other code. */
static const char *const fill_sql[] = {
    TOKDATE_FILL("$4 AND d.grp = 0 WHERE t.type = $1 AND t.id = $2 AND t.code = $3 AND t.grp = 0" LIVE),
    TOKQTY_FILL("$4 AND q.grp = 0 WHERE t.type = $1 AND t.id = $2 AND t.code = $3 AND t.grp = 0" LIVE),
};
static const char *const del_sql[] = {
    "DELETE FROM sp_tokdate WHERE type = $1 AND id = $2",
    "DELETE FROM sp_tokqty WHERE type = $1 AND id = $2",
};

/*
 * The seventh migration of the index (per backend): every token row carries the row id
 * of its resource's current version, as the combined rows do, and the covering index
 * sp_tok_rc (type, code, value, rid, system, id) delivers one value's matches in row-id
 * order — so the page of a single token criterion (Observation?code=X, status, category,
 * identifier) is a range of that index from the keyset cursor (rid > last) that stops
 * after count + 1 entries (hv__search_tok_only, hv__search_combo_page), instead of a scan
 * of resources in row-id order checking each row (about 1,400 rows for 51 matches of a
 * code held by one resource in 28 at 1M). The rows of existing versions are filled in SQL
 * (SQLite: one seek of resources_tiv per row; PostgreSQL: one join); new rows get the row
 * id when written (fhir/search_index.c, flush_rows). sp_tok_vc stayed (the distinct count
 * of a code read it in id order) until the eleventh migration, below.
 */
#define TOK_RC "CREATE INDEX sp_tok_rc ON sp_tok (type, code, value, rid, system, id);"
const char hv__search_migration7_sqlite[] =
    "ALTER TABLE sp_tok ADD COLUMN rid BIGINT;"
    "UPDATE sp_tok SET rid = (SELECT MAX(x.rid) FROM resources x WHERE x.type = sp_tok.type AND x.id = sp_tok.id);"
    TOK_RC;
const char hv__search_migration7_pg[] =
    "ALTER TABLE sp_tok ADD COLUMN rid BIGINT;"
    "UPDATE sp_tok t SET rid = x.rid FROM (SELECT type, id, MAX(rid) AS rid FROM resources GROUP BY type, id) x"
    " WHERE x.type = t.type AND x.id = t.id;" TOK_RC;

/*
 * The eighth migration of the index (per backend), the same for strings: every sp_str
 * row carries the row id of its resource's current version, and the covering index
 * sp_str_rc (type, code, value, rid, id) answers the page of a single string criterion
 * (Patient?name=smith, family, given, address; starts-with or :exact) from the index
 * alone: the range's row ids, each once, sorted and cut at count + 1 (a starts-with range
 * spans many values, so its entries are not in row-id order as one token value's are),
 * then only those rows of resources — instead of a B-tree seek of resources_tiv per match
 * to learn its row id (about 2,300 for Patient?name=smith at 1M). sp_str_rc replaces
 * sp_str_vc (type, code, value, id): every range of that index is the same range of this
 * one, which covers the id too, and SQLite chose between the two at random (equal
 * prefixes) — two indexes would only double the string rows' write and disk cost. An
 * import may have deferred sp_str_vc (fhir/import.c): its definition is forgotten too, so
 * that the import's end does not build it again. PostgreSQL's value column is in
 * collation "C" like sp_str_vc's was (fhir/search_plan.c, prefix_range).
 */
/*
 * The tenth migration of the index (per backend): sp_tok_rc (type, code, value, rid,
 * system, id) becomes sp_tok_sr (type, code, value, system, rid). With the system in the
 * key before the row id, one (system, value) pair is one range of the index, in row-id
 * order, that needs no check per entry — the exact total of Observation?code=sys|X is
 * COUNT(*) of that range (a resource writes one row per (code, system, value): the
 * duplicate check of fhir/search_index.c, add_row), not COUNT(DISTINCT rid) over the
 * (type, code, value) range with each entry's system read and compared (measured on the
 * 1,000,000-resource store, 35,760 entries: ~3x less CPU; docs/performance.md, session
 * 8). A value searched without a system (code=X) is pinned to its one system when it
 * has one (hv__search_tok_pin), so it pages and counts the same way; a value held under
 * several systems reads its (type, code, value) range and sorts its row ids. The id was
 * covered only for no reader of this index: it is left out (a shorter entry). An import
 * may have deferred sp_tok_rc (fhir/import.c): its definition is forgotten too.
 */
#define TOK_SR "CREATE INDEX IF NOT EXISTS sp_tok_sr ON sp_tok (type, code, value, system, rid);"
const char hv__search_migration10_sqlite[] =
    "DELETE FROM import_deferred WHERE name = 'sp_tok_rc';"
    "DROP INDEX IF EXISTS sp_tok_rc;" TOK_SR;
const char hv__search_migration10_pg[] = "DROP INDEX IF EXISTS sp_tok_rc;" TOK_SR;

/*
 * The eleventh migration of the index (per backend): one value index on sp_tok instead
 * of two. sp_tok_sr gains the id as its last column, (type, code, value, system, rid,
 * id), so it covers every reader of sp_tok_vc (type, code, value, id, system), which is
 * dropped: a token row goes into three B-trees, not four, and an import or a first Bulk
 * sync sorts and writes one index fewer at its end (fhir/import.c). The distinct count
 * of a code (system| alone, OR) reads the distinct row ids of sp_tok_sr (fhir/search_run.c,
 * count_sql): a resource's token rows all carry its current version's row id, so they
 * name the same resources as the distinct ids. An import may have deferred either index
 * (fhir/import.c): both are forgotten and sp_tok_sr built here, in its new definition.
 */
#define TOK_SRI "CREATE INDEX sp_tok_sr ON sp_tok (type, code, value, system, rid, id);"
const char hv__search_migration11_sqlite[] =
    "DELETE FROM import_deferred WHERE name IN ('sp_tok_vc', 'sp_tok_sr');"
    "DROP INDEX IF EXISTS sp_tok_vc; DROP INDEX IF EXISTS sp_tok_sr;" TOK_SRI;
const char hv__search_migration11_pg[] = "DROP INDEX IF EXISTS sp_tok_vc; DROP INDEX IF EXISTS sp_tok_sr;" TOK_SRI;

/*
 * A PostgreSQL migration of the index: sp_tok_idc (type, id, code) gains the value,
 * (type, id, code, value). A token criterion checked per candidate (the others of a
 * search driven by a reference or an id: Observation?subject=X&status=final, fhir/
 * search_run.c, index_ids) is "id = r.id AND code = $c AND value = $v". Until the
 * eleventh migration sp_tok_vc (type, code, value, id, system) answered it with one
 * seek; since, PostgreSQL's planner takes sp_tok_sr (type, code, value, system, rid, id),
 * covering, with the id a condition on its last column: it reads the value's whole range
 * per candidate — all 76,800 "final" rows for each of p7's Observations, 70 ms a page at
 * 100k instead of 2 — and the generic plan of a prepared statement does so even for a
 * value of a few thousand rows (Observation?subject=X&code=Y: 24 ms from the sixth
 * request on). (type, id, code) with the value checked on the table row was not chosen.
 * With the value in the key the check is one seek, index-only, and it is the index the
 * planner takes; the index stays one of three on sp_tok, 30 MB instead of 27 at 100k
 * (docs/performance.md, session 24). SQLite names sp_tok_idc for these checks
 * (fhir/search_plan.c, idx_mark) and keeps (type, id, code).
 */
const char hv__search_migration_idcv_pg[] =
    "DROP INDEX IF EXISTS sp_tok_idc; CREATE INDEX sp_tok_idc ON sp_tok (type, id, code, value);";

const char hv__search_migration8_sqlite[] =
    "ALTER TABLE sp_str ADD COLUMN rid BIGINT;"
    "UPDATE sp_str SET rid = (SELECT MAX(x.rid) FROM resources x WHERE x.type = sp_str.type AND x.id = sp_str.id);"
    "CREATE INDEX sp_str_rc ON sp_str (type, code, value, rid, id);"
    "DELETE FROM import_deferred WHERE name = 'sp_str_vc';"
    "DROP INDEX IF EXISTS sp_str_vc;";
const char hv__search_migration8_pg[] =
    "ALTER TABLE sp_str ADD COLUMN rid BIGINT;"
    "UPDATE sp_str t SET rid = x.rid FROM (SELECT type, id, MAX(rid) AS rid FROM resources GROUP BY type, id) x"
    " WHERE x.type = t.type AND x.id = t.id;"
    "CREATE INDEX sp_str_rc ON sp_str (type, code, value COLLATE \"C\", rid, id);"
    "DROP INDEX IF EXISTS sp_str_vc;";

/*
 * A PostgreSQL migration of the index: the token rows without a system (a code given as
 * "|code", FHIR R4 search.html#token: "no system"), in their own partial index in row-id
 * order. sp_tok_rc and sp_tok_vc hold the system after the row id or the id, so
 * "system IS NULL AND value = x" read the whole value range of x and filtered it — every
 * "final" status row for status=|final (1.2 s at 1M) when no row lacks a system. The
 * planner takes this index when the statement says "system IS NULL" (its predicate,
 * sql-createindex.html#SQL-CREATEINDEX-PARTIAL): the page (rid > cursor, in order) and the
 * count read only the rows that lack a system, none when there are none. Rows with a
 * system are not in it, so it costs a write nothing for them.
 */
const char hv__search_migration_nosys_pg[] =
    "CREATE INDEX sp_tok_nosys ON sp_tok (type, code, value, rid, id) WHERE system IS NULL;";

static int combo_enabled = 1;

void hv__search_combo_enable(int on)
{
    combo_enabled = on != 0;
}

int hv__search_exec_tid(hv_db_t *db, const char *sql, const char *type, const char *id, const char *a, const char *b)
{
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, sql, &st);
    if (rc != HV_OK)
        return rc;
    hv_db_bind_text(st, 1, type, strlen(type));
    hv_db_bind_text(st, 2, id, strlen(id));
    if (a != NULL) {
        hv_db_bind_text(st, 3, a, strlen(a));
        hv_db_bind_text(st, 4, b, strlen(b));
    }
    rc = hv_db_step_later(st);
    hv_db_done(st);
    return rc;
}

int hv__search_combo_put(hv_db_t *db, const char *type, const char *id, int live, int replace,
                         hv__search_rows_has_fn has, void *ud)
{
    int rc = HV_OK;
    for (size_t k = 0; k < HV_ARRAY_LEN(pairs) && rc == HV_OK; k++) {
        if (strcmp(pairs[k].type, type) != 0)
            continue;
        if (replace)
            rc = hv__search_exec_tid(db, del_sql[k], type, id, NULL, NULL);
        /* The fill joins the resource's token rows of tcode with its rows of vcode: with
         * either side empty it selects nothing, and is not run (about 7,500 instructions
         * of seeks per statement on SQLite). */
        if (rc == HV_OK && live &&
            (has == NULL || (has(ud, "sp_tok", pairs[k].tcode) &&
                             has(ud, pairs[k].vtable, pairs[k].vcode))))
            rc = hv__search_exec_tid(db, fill_sql[k], type, id, pairs[k].tcode, pairs[k].vcode);
    }
    /* The reference x token rows of reverse chaining (fhir/search_has.c). */
    return rc == HV_OK ? hv__search_has_put(db, type, id, live, replace, has, ud) : rc;
}

/* ---- the combined rows from the rows in hand ---- */

/* Every row pick selects (table, code, grp0): into stack (room for HV__SEARCH_PICK_STACK)
 * when they fit, else into an array allocated here; *out is the one used. Returns the
 * count, (size_t)-1 when the writer does not hold the table, (size_t)-2 when the array
 * could not be allocated. */
static size_t pick_all(hv__search_rows_pick_fn pick, void *ud, const char *table, const char *code, int grp0,
                       const hv__search_val_t **stack, const hv__search_val_t ***out)
{
    size_t n = pick(ud, table, code, grp0, stack, HV__SEARCH_PICK_STACK);
    const hv__search_val_t **heap;
    *out = stack;
    if (n <= HV__SEARCH_PICK_STACK || n == (size_t)-1)
        return n;
    heap = hv_malloc(n * sizeof(*heap));
    if (heap == NULL)
        return (size_t)-2;
    *out = heap;
    return pick(ud, table, code, grp0, heap, n);
}

int hv__search_cross_pick(hv__search_rows_pick_fn pick, void *ud, const char *type, const char *atable,
                          const char *acode, const char *btable, const char *bcode, int grp0,
                          const hv__search_val_t **sa, const hv__search_val_t **sb, hv__search_cross_t *x)
{
    const hv__search_val_t **a, **b;
    size_t na = pick_all(pick, ud, atable, acode, grp0, sa, &a);
    size_t nb = pick_all(pick, ud, btable, bcode, grp0, sb, &b);
    *x = (hv__search_cross_t){acode, bcode, a, b, 0, 0};
    if (na == (size_t)-2 || nb == (size_t)-2)
        return HV_ENOMEM;
    /* A table the writer does not hold has nothing to join. */
    x->na = na == (size_t)-1 ? 0 : na;
    x->nb = nb == (size_t)-1 ? 0 : nb;
    if (x->na > 0 && x->nb > HV__SEARCH_CROSS_MAX / x->na)
        return hv__search_refuse("the search parameters '%s' and '%s' of %s would write %zu x %zu combined index "
                                 "rows, more than %d: the resource is refused",
                                 acode, bcode, type, x->na, x->nb, HV__SEARCH_CROSS_MAX);
    return HV_OK;
}

void hv__search_cross_release(hv__search_cross_t *x, const hv__search_val_t **sa, const hv__search_val_t **sb)
{
    if (x->a != sa)
        hv_free((void *)x->a);
    if (x->b != sb)
        hv_free((void *)x->b);
    x->a = sa;
    x->b = sb;
}

/* Per table: the INSERT's head, how many columns (type, id[, rid]) are bound once as
 * $1..$n, and each side's value columns. */
static const struct {
    const char *head;
    int fixed, na, nb;
} cross_tabs[] = {
    [HV__CROSS_TOKDATE] = {"sp_tokdate (type, id, rid, tcode, tsys, tval, dcode, lo, hi)", 3, 2, 2},
    [HV__CROSS_TOKQTY] = {"sp_tokqty (type, id, rid, tcode, tsys, tval, qcode, value, system, unit, cvalue, cunit)",
                          3, 2, 5},
    [HV__CROSS_REFTOK] = {"sp_reftok (type, id, rcode, rtype, rid, tcode, tsys, tval)", 2, 2, 2},
};

/* The row counts of one INSERT (as fhir/search_index.c's plain rows: one statement for the
 * usual one to four rows, the chunks of 8 to 32 for a large product). */
static const int cross_chunks[] = {1, 2, 3, 4, 8, 16, 32};
#define NCROSS_CHUNKS ((int)HV_ARRAY_LEN(cross_chunks))
static char *cross_sql[2][HV_ARRAY_LEN(cross_tabs)][NCROSS_CHUNKS];
static pthread_once_t cross_once = PTHREAD_ONCE_INIT;

/* Builds the INSERT texts per backend: INSERT OR FAIL on SQLite, for the reason given
 * at fhir/search_index.c's insert_sql (no statement journal for a multi-row INSERT). */
static void cross_build(void)
{
    for (int be = 0; be < 2; be++)
        for (size_t t = 0; t < HV_ARRAY_LEN(cross_tabs); t++)
            for (int c = 0; c < NCROSS_CHUNKS; c++) {
                hv_buf_t b;
                int p = cross_tabs[t].fixed + 1, per = 2 + cross_tabs[t].na + cross_tabs[t].nb;
                hv_buf_init(&b, 64 * 1024);
                hv_buf_printf(&b, "INSERT %sINTO %s VALUES ", be == 0 ? "OR FAIL " : "", cross_tabs[t].head);
                for (int r = 0; r < cross_chunks[c]; r++) {
                    hv_buf_puts(&b, r > 0 ? ", (" : "(");
                    for (int k = 1; k <= cross_tabs[t].fixed; k++)
                        hv_buf_printf(&b, "%s$%d", k > 1 ? ", " : "", k);
                    for (int k = 0; k < per; k++)
                        hv_buf_printf(&b, ", $%d", p++);
                    hv_buf_putc(&b, ')');
                }
                cross_sql[be][t][c] = b.data != NULL ? hv_strndup(b.data, b.len) : NULL;
                hv_buf_release(&b);
            }
}

int hv__search_cross_insert(hv_db_t *db, int tab, const char *type, const char *id, int64_t rid,
                            const hv__search_cross_t *x, size_t nx)
{
    int be = hv_db_kind(db) == HV_DB_SQLITE ? 0 : 1;
    size_t left = 0, px = 0, k = 0; /* the next row: row k of product px */
    pthread_once(&cross_once, cross_build);
    for (size_t i = 0; i < nx; i++)
        left += x[i].na * x[i].nb;
    while (left > 0) {
        int c = NCROSS_CHUNKS - 1, p = cross_tabs[tab].fixed + 1, rc;
        hv_db_stmt_t *st = NULL;
        size_t n;
        while ((size_t)cross_chunks[c] > left)
            c--;
        n = (size_t)cross_chunks[c];
        if (cross_sql[be][tab][c] == NULL)
            return HV_ENOMEM;
        if ((rc = hv_db_prepare(db, cross_sql[be][tab][c], &st)) != HV_OK)
            return rc;
        hv_db_bind_text_static(st, 1, type, strlen(type));
        hv_db_bind_text_static(st, 2, id, strlen(id));
        if (cross_tabs[tab].fixed == 3)
            hv_db_bind_int64(st, 3, rid);
        for (size_t r = 0; r < n; r++, k++) {
            const hv__search_val_t *u, *v;
            while (k == x[px].na * x[px].nb) { /* left > 0: a later product has the row */
                px++;
                k = 0;
            }
            u = x[px].a[k / x[px].nb];
            v = x[px].b[k % x[px].nb];
            hv_db_bind_text_static(st, p++, x[px].acode, strlen(x[px].acode));
            for (int i = 0; i < cross_tabs[tab].na; i++)
                hv__search_bind_val(st, p++, &u[i]);
            hv_db_bind_text_static(st, p++, x[px].bcode, strlen(x[px].bcode));
            for (int i = 0; i < cross_tabs[tab].nb; i++)
                hv__search_bind_val(st, p++, &v[i]);
        }
        rc = hv_db_step_later(st);
        hv_db_done(st);
        if (rc < 0)
            return rc;
        left -= n;
    }
    return HV_OK;
}

/* The row id of the current version of type/id (the fills' MAX(rid)); 0 when no version
 * is stored (the fills' LIVE rule then writes nothing). */
static int64_t current_rid(hv_db_t *db, const char *type, const char *id)
{
    hv_db_stmt_t *st = NULL;
    int64_t rid = 0;
    int rc = hv_db_prepare(db, "SELECT MAX(rid) FROM resources WHERE type = $1 AND id = $2", &st);
    if (rc != HV_OK)
        return rc;
    hv_db_bind_text_static(st, 1, type, strlen(type));
    hv_db_bind_text_static(st, 2, id, strlen(id));
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW)
        rid = hv_db_column_int64(st, 0);
    hv_db_done(st);
    return rc < 0 ? rc : rid;
}

int hv__search_combo_put_rows(hv_db_t *db, const char *type, const char *id, int64_t rid,
                              hv__search_rows_pick_fn pick, void *ud)
{
    int rc = HV_OK, dead = 0;
    for (size_t k = 0; k < HV_ARRAY_LEN(pairs) && rc == HV_OK && !dead; k++) {
        const hv__search_val_t *ts[HV__SEARCH_PICK_STACK], *os[HV__SEARCH_PICK_STACK];
        hv__search_cross_t x;
        if (strcmp(pairs[k].type, type) != 0)
            continue;
        /* The fills join the grp-0 token rows of tcode with the grp-0 rows of vcode: with
         * either side empty nothing is written. Every row of the product is written (a
         * factor of any size), up to HV__SEARCH_CROSS_MAX rows: more refuse the resource. */
        rc = hv__search_cross_pick(pick, ud, type, "sp_tok", pairs[k].tcode, pairs[k].vtable, pairs[k].vcode, 1, ts,
                                   os, &x);
        if (rc == HV_OK && x.na > 0 && x.nb > 0) {
            if (rid <= 0 && (rid = current_rid(db, type, id)) <= 0) {
                if (rid < 0)
                    rc = (int)rid;
                dead = 1; /* no stored version: the fills' LIVE rule */
            } else {
                rc = hv__search_cross_insert(db, pairs[k].cross, type, id, rid, &x, 1);
            }
        }
        hv__search_cross_release(&x, ts, os);
    }
    /* The reference x token rows of reverse chaining (fhir/search_has.c). */
    return rc == HV_OK ? hv__search_has_put_rows(db, type, id, pick, ud) : rc;
}

/* ---- the planner's rule ---- */

/* The code bound at placeholder $n of p ("" when it is not a text bind). */
static const char *bound(const hv__search_plan_t *p, long n)
{
    if (n < 1 || n > p->nbinds || p->binds[n - 1].kind != 0 || p->binds[n - 1].s == NULL)
        return "";
    return p->binds[n - 1].s;
}

/*
 * Reads the head of one branch of a top-level criterion's sub-select over table tab,
 * "SELECT id FROM <tab>@I<k>:<tab>@ WHERE type = $1 AND @C<k>@code = $<n>", at s.
 * Returns the text after it and sets *n, or NULL when s is not such a head.
 */
static const char *branch_head(const char *s, const char *tab, int k, long *n)
{
    char head[160];
    char *end = NULL;
    int len = snprintf(head, sizeof(head), "SELECT id FROM %s@I%d:%s@ WHERE type = $1 AND @C%d@code = $", tab, k, tab, k);
    if (len <= 0 || (size_t)len >= sizeof(head) || strncmp(s, head, (size_t)len) != 0)
        return NULL;
    *n = strtol(s + len, &end, 10);
    return end != NULL && end > s + len ? end : NULL;
}

/*
 * Criterion k of p if it is "AND r.id IN (<one or more branches over tab>)" with
 * parameter code: sets *n (the code's placeholder) and the span [*body, *bend) of
 * the sub-select (without " AND r.id IN (" and the final ")"). 0 when it is not.
 */
static int criterion_over(const hv__search_plan_t *p, int k, const char *tab, const char *code, long *n,
                          const char **body, const char **bend)
{
    static const char in[] = " AND r.id IN (";
    const char *s = p->where.data + p->cspan[k][0], *e = p->where.data + p->cspan[k][1];
    if ((size_t)(e - s) <= sizeof(in) || strncmp(s, in, sizeof(in) - 1) != 0 || e[-1] != ')')
        return 0;
    s += sizeof(in) - 1;
    if (branch_head(s, tab, k, n) == NULL || strcmp(bound(p, *n), code) != 0)
        return 0;
    /* Only correlation and index markers ("@C<k>@", "@I<k>:table@"), each skipped whole: no
     * value set (:in, :below), full-text, _has or collation marker. */
    for (const char *m = memchr(s, '@', (size_t)(e - s)); m != NULL; m = memchr(m + 1, '@', (size_t)(e - m - 1))) {
        if (m + 1 >= e || (m[1] != 'C' && m[1] != 'I'))
            return 0;
        m = memchr(m + 1, '@', (size_t)(e - m - 1));
        if (m == NULL)
            return 0;
    }
    *body = s;
    *bend = e - 1;
    return 1;
}

/* Appends the token condition text [s, e) with its columns renamed (system → tsys, value → tval). */
void hv__search_token_cond(hv_buf_t *b, const char *s, const char *e)
{
    while (s < e) {
        if ((size_t)(e - s) >= 6 && strncmp(s, "system", 6) == 0) {
            hv_buf_puts(b, "tsys");
            s += 6;
        } else if ((size_t)(e - s) >= 5 && strncmp(s, "value", 5) == 0) {
            hv_buf_puts(b, "tval");
            s += 5;
        } else {
            hv_buf_putc(b, *s++);
        }
    }
}

/* True when [s, e) holds only what value_clause writes for a token: the columns system
 * and value, IS NULL, AND, OR, =, parentheses and placeholders. */
int hv__search_token_cond_ok(const char *s, const char *e)
{
    static const char *const words[] = {"system", "value", "IS NULL", "AND", "OR"};
    while (s < e) {
        size_t i;
        if (*s == ' ' || *s == '(' || *s == ')' || *s == '=') {
            s++;
            continue;
        }
        if (*s == '$') {
            s++;
            while (s < e && *s >= '0' && *s <= '9')
                s++;
            continue;
        }
        for (i = 0; i < HV_ARRAY_LEN(words); i++) {
            size_t n = strlen(words[i]);
            if ((size_t)(e - s) >= n && strncmp(s, words[i], n) == 0) {
                s += n;
                break;
            }
        }
        if (i == HV_ARRAY_LEN(words))
            return 0;
    }
    return 1;
}

/*
 * Writes the combined criterion into b: for each branch of the other criterion's
 * sub-select (between vbody and vend, over vtab, its code at placeholder vn), the same
 * branch over the combined table with the token's condition added.
 */
static int combine(hv_buf_t *b, int k, size_t pi, const char *tokcond, const char *tokend, long tn, const char *vbody,
                   const char *vend, const char *vtab, int vk, long vn)
{
    static const char uall[] = " UNION ALL ";
    const char *tab = pairs[pi].table, *vcol = strcmp(tab, "sp_tokdate") == 0 ? "dcode" : "qcode";
    hv_buf_puts(b, " AND r.id IN (");
    for (const char *s = vbody; s < vend;) {
        long n = 0;
        const char *rest = branch_head(s, vtab, vk, &n), *next;
        if (rest == NULL || n != vn)
            return HV_EINVAL;
        next = strstr(rest, uall);
        if (next == NULL || next > vend)
            next = vend;
        hv_buf_printf(b, "SELECT id FROM %s@I%d:%s@ WHERE type = $1 AND @C%d@tcode = $%ld AND ", tab, k, tab, k, tn);
        hv__search_token_cond(b, tokcond, tokend);
        hv_buf_printf(b, " AND %s = $%ld", vcol, vn);
        hv_buf_append(b, rest, (size_t)(next - rest));
        s = next;
        if (s < vend) {
            hv_buf_puts(b, uall);
            s += sizeof(uall) - 1;
        }
    }
    return hv_buf_puts(b, ")");
}

int hv__search_combo_rewrite(hv__search_plan_t *p)
{
    int tk = -1, vk = -1, ncrit = p->ncrit;
    size_t pi = 0, at = 0;
    long tn = 0, vn = 0;
    const char *tbody = NULL, *tend = NULL, *vbody = NULL, *vend = NULL, *tcond;
    hv_buf_t nw;
    int rc;
    if (!combo_enabled || p->system || p->where.data == NULL || ncrit < 2 || ncrit > HV__SEARCH_MAX_PARAMS)
        return HV_OK;
    for (pi = 0; pi < HV_ARRAY_LEN(pairs); pi++) {
        if (strcmp(p->type, pairs[pi].type) != 0)
            continue;
        tk = vk = -1;
        for (int k = 0; k < ncrit; k++) {
            if (tk < 0 && criterion_over(p, k, "sp_tok", pairs[pi].tcode, &tn, &tbody, &tend))
                tk = k;
            else if (vk < 0 && criterion_over(p, k, strcmp(pairs[pi].table, "sp_tokdate") == 0 ? "sp_date" : "sp_num",
                                              pairs[pi].vcode, &vn, &vbody, &vend))
                vk = k;
        }
        if (tk >= 0 && vk >= 0)
            break;
    }
    if (pi == HV_ARRAY_LEN(pairs))
        return HV_OK;
    /* The token criterion is one branch: "<head> AND (<condition>)" and nothing else. */
    tcond = branch_head(tbody, "sp_tok", tk, &tn);
    if (tcond == NULL || tcond + 6 > tend || strncmp(tcond, " AND (", 6) != 0 ||
        !hv__search_token_cond_ok(tcond + 5, tend))
        return HV_OK;
    /* The other criterion has a condition after its code (not :missing). */
    {
        long n = 0;
        const char *rest = branch_head(vbody, strcmp(pairs[pi].table, "sp_tokdate") == 0 ? "sp_date" : "sp_num", vk, &n);
        if (rest == NULL || strncmp(rest, " AND ", 5) != 0)
            return HV_OK;
    }
    /* The criteria are the whole where clause, in order (nothing else between them). */
    for (int k = 0; k < ncrit; k++) {
        if (p->cspan[k][0] != at)
            return HV_OK;
        at = p->cspan[k][1];
    }
    if (at != p->where.len)
        return HV_OK;
    /* The new where clause: the combined criterion in the token criterion's place
     * (numbered tk), the other criteria as they were, renumbered after it. */
    hv_buf_init(&nw, p->where.max > 0 ? p->where.max : 64 * 1024);
    {
        size_t spans[HV__SEARCH_MAX_PARAMS + 1][2];
        unsigned char ranks[HV__SEARCH_MAX_PARAMS + 1];
        int n = 0;
        rc = HV_OK;
        for (int k = 0; k < ncrit && rc == HV_OK; k++) {
            size_t start = nw.len;
            if (k == vk)
                continue;
            if (k == tk) {
                int nk = n;
                rc = combine(&nw, nk, pi, tcond + 5, tend, tn, vbody, vend,
                             strcmp(pairs[pi].table, "sp_tokdate") == 0 ? "sp_date" : "sp_num", vk, vn);
                ranks[n] = p->crank[tk];
            } else {
                /* Renumber the criterion's markers from k to n: every marker that names
                 * its criterion (fhir/search_run.c, expand), a _has's ("@E", "@H", "@J") too. */
                const char *s = p->where.data + p->cspan[k][0], *e = p->where.data + p->cspan[k][1];
                while (s < e) {
                    if (*s == '@' && s + 1 < e && s[1] != '\0' && strchr("CRIEHJ", s[1]) != NULL &&
                        strtol(s + 2, NULL, 10) == k) {
                        char *q = NULL;
                        strtol(s + 2, &q, 10);
                        hv_buf_printf(&nw, "@%c%d", s[1], n);
                        s = q;
                    } else {
                        hv_buf_putc(&nw, *s++);
                    }
                }
                ranks[n] = p->crank[k];
            }
            spans[n][0] = start;
            spans[n][1] = nw.len;
            n++;
        }
        if (rc == HV_OK)
            rc = hv_buf_puts(&nw, "");
        if (rc != HV_OK) {
            hv_buf_release(&nw);
            return rc == HV_EINVAL ? HV_OK : rc; /* an unexpected shape: the generic plan stays */
        }
        hv_buf_release(&p->where);
        p->where = nw;
        p->ncrit = n;
        for (int k = 0; k < n; k++) {
            p->cspan[k][0] = spans[k][0];
            p->cspan[k][1] = spans[k][1];
            p->crank[k] = ranks[k];
        }
    }
    return HV_OK;
}

/* ---- the page of a combined criterion alone ---- */

int hv__search_combo_only(const hv__search_plan_t *p)
{
    static const char a[] = " AND r.id IN (SELECT id FROM sp_tokdate@I0:", b[] = " AND r.id IN (SELECT id FROM sp_tokqty@I0:";
    return p->ncrit == 1 && p->nsort == 0 && !p->system && p->compartment[0] == '\0' && p->nvs == 0 &&
           p->where.data != NULL && p->cspan[0][0] == 0 && p->cspan[0][1] == p->where.len &&
           (strncmp(p->where.data, a, sizeof(a) - 1) == 0 || strncmp(p->where.data, b, sizeof(b) - 1) == 0);
}

/* ---- the page of a single token criterion ---- */

static int tok_enabled = 1;

void hv__search_tok_enable(int on)
{
    tok_enabled = on != 0;
}

int hv__search_tok_only(const hv__search_plan_t *p)
{
    static const char head[] = " AND r.id IN (SELECT id FROM sp_tok@I0:sp_tok@ WHERE type = $1 AND @C0@code = $";
    const char *s = p->where.data, *e, *cond;
    char *end = NULL;
    if (!tok_enabled || p->ncrit != 1 || p->nsort != 0 || p->system || p->compartment[0] != '\0' || p->nvs != 0 ||
        s == NULL || p->cspan[0][0] != 0 || p->cspan[0][1] != p->where.len || p->where.len <= sizeof(head) ||
        strncmp(s, head, sizeof(head) - 1) != 0 || s[p->where.len - 1] != ')')
        return 0;
    strtol(s + sizeof(head) - 1, &end, 10);
    if (end == NULL || end == s + sizeof(head) - 1 || strncmp(end, " AND (", 6) != 0)
        return 0;
    /* The condition: value_clause's token forms with exactly one value and no OR — "value =
     * $n", "(system = $n AND value = $m)", "(system IS NULL AND value = $n)" — so that the
     * rows of sp_tok_sr it selects are one range of (type, code, value, system) in row-id
     * order (a value without a system: once hv__search_tok_pin has pinned its one system;
     * a value under several systems is read whole and its row ids sorted). "system = $n"
     * alone (system|) and a list of values (code=a,b) are not: the matches would be sorted. */
    cond = end + 5;
    e = s + p->where.len - 1;
    if (!hv__search_token_cond_ok(cond, e))
        return 0;
    for (const char *m = cond; m + 4 <= e; m++)
        if (memcmp(m, " OR ", 4) == 0)
            return 0;
    {
        const char *v = strstr(cond, "value = $"), *v2 = v != NULL ? strstr(v + 1, "value = $") : NULL;
        if (v == NULL || v >= e || (v2 != NULL && v2 < e))
            return 0;
    }
    return 1;
}

static int sub_sql(const hv__search_plan_t *p, hv_buf_t *q, int ids, const char *indexed, int collate);

/*
 * Where the condition of a hv__search_tok_only plan starts ("(" after the code's
 * placeholder) and ends (the sub-select's ")"), and the code's placeholder; NULL when p
 * is not such a plan.
 */
static const char *tok_cond(const hv__search_plan_t *p, const char **e, long *code_at)
{
    static const char head[] = " AND r.id IN (SELECT id FROM sp_tok@I0:sp_tok@ WHERE type = $1 AND @C0@code = $";
    char *end = NULL;
    if (!hv__search_tok_only(p))
        return NULL;
    *code_at = strtol(p->where.data + sizeof(head) - 1, &end, 10);
    *e = p->where.data + p->where.len - 1;
    return end + 5;
}

int hv__search_tok_counts_rows(const hv__search_plan_t *p)
{
    const char *e = NULL, *cond;
    long code_at = 0;
    if ((cond = tok_cond(p, &e, &code_at)) == NULL)
        return 0;
    /* A composite's component rows ("<code>$<i>", grp > 0) may repeat a value per
     * element; plain codes never reach here with one, but the claim is checked. */
    if (strchr(bound(p, code_at), '$') != NULL)
        return 0;
    for (const char *m = cond; m + 6 <= e; m++)
        if (memcmp(m, "system", 6) == 0)
            return 1;
    return 0;
}

/* The first (desc: last) system of the (type, code, value) range of p's one token value
 * (type $1, code $code_at, value $value_at) in the order of sp_tok_sr into *sys (NULL: a
 * row without a system); HV_ENOTFOUND: no row. */
static int tok_edge_system(hv_db_t *db, const hv__search_plan_t *p, long code_at, long value_at, int desc, char **sys)
{
    char q[256];
    hv_db_stmt_t *st = NULL;
    int rc;
    snprintf(q, sizeof(q), "SELECT system FROM sp_tok%s WHERE type = $1 AND code = $%ld AND value = $%ld"
             " ORDER BY system%s LIMIT 1", hv__search_values_hinted(db) ? " INDEXED BY sp_tok_sr" : "",
             code_at, value_at, desc ? " DESC" : "");
    if ((rc = hv__search_prepare_used(db, p, q, &st)) != HV_OK)
        return rc;
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        size_t len = 0;
        const char *s = hv_db_column_text(st, 0, &len);
        *sys = s != NULL ? hv_strndup(s, len) : NULL;
        rc = s != NULL && *sys == NULL ? HV_ENOMEM : HV_OK;
    } else if (rc >= 0) {
        rc = HV_ENOTFOUND;
    }
    hv_db_done(st);
    return rc;
}

/* The placeholder number after "<col> = $" in [s, e), 0 when there is none. */
static long placeholder_after(const char *s, const char *e, const char *col)
{
    size_t n = strlen(col);
    for (const char *m = s; m + n + 4 <= e; m++)
        if (memcmp(m, col, n) == 0 && memcmp(m + n, " = $", 4) == 0 && (m == s || m[-1] == '(' || m[-1] == ' '))
            return strtol(m + n + 4, NULL, 10);
    return 0;
}

int hv__search_tok_pin(hv_db_t *db, hv__search_plan_t *p)
{
    const char *e = NULL, *cond, *named = NULL;
    char *first = NULL, *last = NULL;
    long code_at = 0, value_at, system_at;
    int rc, has_system = 0, null_system = 0;
    hv_buf_t w;
    p->tok_one = 0;
    if ((cond = tok_cond(p, &e, &code_at)) == NULL || (value_at = placeholder_after(cond, e, "value")) <= 0)
        return HV_OK;
    for (const char *m = cond; m + 6 <= e; m++)
        has_system |= memcmp(m, "system", 6) == 0;
    for (const char *m = cond; m + 14 <= e; m++)
        null_system |= memcmp(m, "system IS NULL", 14) == 0;
    system_at = placeholder_after(cond, e, "system");
    if (has_system && !null_system && (system_at <= 0 || (named = bound(p, system_at))[0] == '\0'))
        return HV_OK;
    /* A named system is probed for the count only (its page is ordered already). */
    if (has_system && !p->summary_count && p->total != HV__TOTAL_ACCURATE)
        return HV_OK;
    if (!has_system && p->nbinds >= HV__SEARCH_MAX_BINDS)
        return HV_OK;
    rc = tok_edge_system(db, p, code_at, value_at, 0, &first);
    if (rc == HV_ENOTFOUND)
        return HV_OK; /* no match: nothing to pin, the count is 0 */
    if (rc == HV_OK)
        rc = tok_edge_system(db, p, code_at, value_at, 1, &last);
    if (rc != HV_OK || (first == NULL) != (last == NULL) || (first != NULL && strcmp(first, last) != 0)) {
        /* several systems (or the value changed between the probes): left as it is */
        hv_free(first);
        hv_free(last);
        return rc == HV_ENOTFOUND ? HV_OK : rc;
    }
    if (has_system) {
        /* Named: the count may read the value's range when all its rows have that system. */
        if (null_system ? first == NULL : first != NULL && strcmp(first, named) == 0) {
            p->tok_one = (int)value_at;
            p->tok_code = (int)code_at;
        }
        hv_free(first);
        hv_free(last);
        return HV_OK;
    }
    /* One system: "(value = $v)" becomes "(system = $n AND value = $v)" (or "system IS
     * NULL AND"), the same rows, one range of sp_tok_sr. */
    hv_buf_init(&w, p->where.max);
    hv_buf_append(&w, p->where.data, (size_t)(cond + 1 - p->where.data));
    if (first != NULL)
        hv_buf_printf(&w, "system = $%d AND ", p->nbinds + 1);
    else
        hv_buf_puts(&w, "system IS NULL AND ");
    hv_buf_puts(&w, cond + 1);
    rc = hv_buf_puts(&w, "");
    if (rc == HV_OK) {
        if (first != NULL) {
            p->binds[p->nbinds].kind = 0;
            p->binds[p->nbinds].s = first;
            p->nbinds++;
            first = NULL;
        }
        hv_buf_release(&p->where);
        p->where = w;
        p->cspan[0][1] = p->where.len;
        p->tok_one = (int)value_at;
        p->tok_code = (int)code_at;
    } else {
        hv_buf_release(&w);
    }
    hv_free(first);
    hv_free(last);
    return rc;
}

/* ---- the page of a single string criterion ---- */

static int str_enabled = 1;

void hv__search_str_enable(int on)
{
    str_enabled = on != 0;
}

/* True when s (up to e) is pattern pat, where "#" in pat stands for "$" and a placeholder number. */
static int match_binds(const char *s, const char *e, const char *pat)
{
    for (; *pat != '\0'; pat++) {
        if (*pat == '#') {
            const char *d;
            if (s >= e || *s != '$')
                return 0;
            for (d = ++s; s < e && *s >= '0' && *s <= '9'; s++)
                ;
            if (s == d)
                return 0;
        } else if (s >= e || *s++ != *pat) {
            return 0;
        }
    }
    return s == e;
}

int hv__search_str_only(const hv__search_plan_t *p)
{
    static const char head[] = " AND r.id IN (SELECT id FROM sp_str@I0:sp_str@ WHERE type = $1 AND @C0@code = $";
    /* value_clause's string forms of one value (fhir/search_plan.c): the starts-with range
     * (prefix_range, with or without its upper bound) and :exact (the folded value's seek,
     * then each match's raw value from its row). Not :contains (LIKE) nor :text, nor a list
     * of values (OR). */
    static const char *const conds[] = {
        " AND ((value@K@ >= # AND value@K@ < #)))",
        " AND ((value@K@ >= #)))",
        " AND (value@K@ = # AND (raw = # OR raw IS NULL)))",
    };
    const char *s = p->where.data, *e;
    char *end = NULL;
    if (!str_enabled || p->ncrit != 1 || p->nsort != 0 || p->system || p->compartment[0] != '\0' || p->nvs != 0 ||
        s == NULL || p->cspan[0][0] != 0 || p->cspan[0][1] != p->where.len || p->where.len <= sizeof(head) ||
        strncmp(s, head, sizeof(head) - 1) != 0)
        return 0;
    strtol(s + sizeof(head) - 1, &end, 10);
    if (end == NULL || end == s + sizeof(head) - 1)
        return 0;
    e = s + p->where.len;
    for (size_t i = 0; i < HV_ARRAY_LEN(conds); i++)
        if (match_binds(end, e, conds[i]))
            return 1;
    return 0;
}

/* hv__search_combo_sql, with an index marker ("@I<k>:table@") written as "INDEXED BY
 * <indexed>" when indexed is not NULL, and the collation marker ("@K@") as COLLATE "C"
 * when collate is set (PostgreSQL: the collation of sp_str_rc's value). */
static int sub_sql(const hv__search_plan_t *p, hv_buf_t *q, int ids, const char *indexed, int collate)
{
    static const char in[] = " AND r.id IN (";
    const char *s = p->where.data + sizeof(in) - 1, *e = p->where.data + p->where.len - 1;
    /* The sub-select with its markers dropped (nothing is correlated) and, for the page,
     * the row id of each matching row instead of its resource id. */
    while (s < e) {
        if (*s == '@') {
            const char *m = memchr(s + 1, '@', (size_t)(e - s - 1));
            if (m == NULL)
                return HV_EINVAL;
            if (indexed != NULL && s[1] == 'I')
                hv_buf_printf(q, " INDEXED BY %s", indexed);
            if (collate && m == s + 2 && s[1] == 'K')
                hv_buf_puts(q, " COLLATE \"C\"");
            s = m + 1;
        } else if (!ids && (size_t)(e - s) > 10 && strncmp(s, "SELECT id ", 10) == 0) {
            hv_buf_puts(q, "SELECT rid ");
            s += 10;
        } else {
            hv_buf_putc(q, *s++);
        }
    }
    return hv_buf_puts(q, "");
}

int hv__search_combo_sql(const hv__search_plan_t *p, hv_buf_t *q, int ids)
{
    return sub_sql(p, q, ids, NULL, 0);
}

int hv__search_page_sql(hv_db_t *db, const hv__search_plan_t *p, hv_buf_t *q)
{
    int rc, str = hv__search_str_only(p), lite = hv_db_kind(db) == HV_DB_SQLITE, hint = hv__search_values_hinted(db);
    /* The page's row ids from the combined index alone (each once: a resource may match
     * through several rows), then only those rows of resources. A single token criterion
     * (hv__search_tok_only) reads its range of sp_tok_sr, named on SQLite (whose planner,
     * without statistics, could otherwise take another index and sort every match by row
     * id); a single string criterion (hv__search_str_only) its range of sp_str_rc,
     * likewise (sp_str_vc has no row id: a seek of resources per match). */
    hv_buf_puts(q, "WITH pg AS (SELECT DISTINCT c.rid FROM (");
    rc = sub_sql(p, q, 0, hint && str ? "sp_str_rc" : hint && !hv__search_combo_only(p) ? "sp_tok_sr" : NULL,
                 str && !lite);
    if (rc != HV_OK)
        return rc;
    hv_buf_printf(q, ") c WHERE c.rid > $%d ORDER BY c.rid LIMIT $%d) SELECT r.rid, r.type, r.id, r.version,"
                     " r.last_ms, r.json FROM pg CROSS JOIN resources r WHERE r.rid = pg.rid ORDER BY r.rid",
                  p->nbinds + 1, p->nbinds + 2);
    return hv_buf_puts(q, "");
}

int hv__search_combo_page(hv_db_t *db, const hv__search_plan_t *p, hv__store_row_cb cb, void *ud)
{
    hv_buf_t q;
    hv_db_stmt_t *st = NULL;
    int rc, after = p->nbinds + 1, limit = p->nbinds + 2;
    hv_buf_init(&q, 128 * 1024);
    if ((rc = hv__search_page_sql(db, p, &q)) != HV_OK || (rc = hv_db_prepare(db, q.data, &st)) != HV_OK)
        goto out;
    hv__search_bind_plan(st, p);
    hv_db_bind_int64(st, after, p->has_cursor ? p->crid : 0);
    hv_db_bind_int64(st, limit, p->count + 1);
    rc = hv__search_rid_rows(st, 5, cb, ud);
    hv_db_done(st);
out:
    hv_buf_release(&q);
    return rc;
}

/*
 * The tables a bulk write of the store fills (fhir/store.c, fhir/search_index.c,
 * fhir/search_combo.c, fhir/search_has.c, fhir/search_special.c's geo rows), the index
 * tables first: index_only starts after "resources" and "refs". sp_text is written
 * after the commit, by the first full-text search (autovacuum analyzes it).
 */
static const char *const analyzed[] = {"resources", "refs",       "sp_str",     "sp_tok",    "sp_ref",
                                       "sp_date",   "sp_num",     "sp_uri",     "sp_geo",    "sp_tokdate",
                                       "sp_tokqty", "sp_reftok"};

int hv__search_analyze(hv_db_t *db, int index_only)
{
    hv_buf_t q;
    int rc;
    /* SQLite: statistics from a sample of each index (analysis_limit rows per index:
     * seconds, not minutes, on a store of millions), so that the query planner knows
     * which value index is selective (sqlite.org/lang_analyze.html). */
    if (hv_db_kind(db) != HV_DB_PG)
        return hv_db_exec(db, "PRAGMA analysis_limit = 1000; ANALYZE");
    /* PostgreSQL keeps its own statistics (autovacuum) but a bulk load is analyzed at
     * once, and only the tables it changed, in the store's schema (the search_path the
     * connection set): a plain ANALYZE reads every table of every schema of the
     * database, 16 s beside a 1M store (sql-analyze.html). The store's migrations have
     * created every table listed before an import or a reindex runs. */
    hv_buf_init(&q, 4096);
    hv_buf_puts(&q, "ANALYZE ");
    for (size_t i = index_only ? 2 : 0; i < HV_ARRAY_LEN(analyzed); i++)
        hv_buf_printf(&q, "%s%s", i > (index_only ? 2u : 0u) ? ", " : "", analyzed[i]);
    rc = hv_buf_puts(&q, "");
    if (rc == HV_OK)
        rc = hv_db_exec(db, q.data);
    hv_buf_release(&q);
    return rc;
}
