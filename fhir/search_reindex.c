/*
 * search_reindex.c — rebuilding the search index (FHIR R4 search.html; the index of
 * fhir/search_index.c) for resources already stored: after an index migration, or
 * when the parameter definitions change.
 *
 *   POST /fhir/$reindex[?_type=T]   answers a Parameters resource ("reindexed": the
 *                                   count, "batches") once every batch is done
 *   holovitals reindex [--type T] [--batch N]
 *
 * The work is split into bounded jobs: each reindexes at most `batch` current,
 * live resources in row-id order (one storage-thread job, one transaction), and
 * the next job starts after the last row id done, so other requests run between
 * the batches and a reindex interrupted half-way can simply be run again.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fhir/rest_int.h"
#include "fhir/search_int.h"

#define REINDEX_BATCH 200       /* resources per job (HTTP) and default of --batch */
#define REINDEX_MAX_BATCH 10000 /* the largest --batch */

typedef struct rx_row {
    char type[HV__FHIR_TYPE_MAX];
    char id[HV__FHIR_ID_MAX];
    char *json;
} rx_row_t;

/*
 * Reads the rows (rid, type, id, json) statement st returns, at most batch of them
 * (*more set when there was another), then reindexes each from its JSON. *last is
 * the row id of the last row read, *done how many were reindexed.
 */
static int reindex_rows(hv_db_t *db, hv_db_stmt_t *st, size_t batch, int strings, int64_t *last, size_t *done,
                        int *more, hv__search_refused_t *refused)
{
    size_t kept = 0;
    rx_row_t *rows = hv_calloc(batch ? batch : 1, sizeof(*rows));
    size_t n = 0;
    int rc;
    if (rows == NULL) {
        hv_db_done(st);
        return HV_ENOMEM;
    }
    /* Read the batch first, then write: the statement is done before the index changes. */
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t len = 0;
        const char *s;
        if (n == batch) {
            *more = 1;
            break;
        }
        *last = hv_db_column_int64(st, 0);
        s = hv_db_column_text(st, 1, &len);
        snprintf(rows[n].type, sizeof(rows[n].type), "%.*s", (int)len, s ? s : "");
        s = hv_db_column_text(st, 2, &len);
        snprintf(rows[n].id, sizeof(rows[n].id), "%.*s", (int)len, s ? s : "");
        s = hv_db_column_text(st, 3, &len);
        rows[n].json = hv_strndup(s ? s : "", s ? len : 0);
        if (rows[n].json == NULL) {
            rc = HV_ENOMEM;
            break;
        }
        n++;
    }
    hv_db_done(st);
    if (rc < 0)
        goto out;
    rc = HV_OK;
    for (size_t i = 0; i < n && rc == HV_OK; i++) {
        struct json_object *tree = json_tokener_parse(rows[i].json);
        if (tree == NULL) {
            kept++; /* stored text is always JSON; a damaged row keeps its old index rows */
            continue;
        }
        /* A resource stored before the index's limits (or under other parameter
         * definitions) may now pass one: its savepoint undoes what its put deleted, it
         * keeps its old rows and the rest of the batch is reindexed. */
        rc = hv_db_exec(db, "SAVEPOINT hv_reindex");
        if (rc == HV_OK) {
            hv__search_refusal_clear();
            rc = strings ? hv__search_index_put_strings(db, rows[i].type, rows[i].id, tree)
                         : hv__search_index_put(db, rows[i].type, rows[i].id, tree, 1);
            if (rc == HV_ETOOBIG && hv__search_refusal()[0] != '\0') {
                if (refused != NULL && refused->n++ == 0)
                    snprintf(refused->first, sizeof(refused->first), "%s/%s: %s", rows[i].type, rows[i].id,
                             hv__search_refusal());
                kept++;
                rc = hv_db_exec(db, "ROLLBACK TO SAVEPOINT hv_reindex");
            }
            if (rc == HV_OK)
                rc = hv_db_exec(db, "RELEASE SAVEPOINT hv_reindex");
        }
        json_object_put(tree);
    }
    if (rc == HV_OK)
        *done = n - kept;
out:
    for (size_t i = 0; i < n; i++)
        hv_free(rows[i].json);
    hv_free(rows);
    return rc;
}

int hv__search_reindex_batch(hv_db_t *db, const char *type, int64_t *after, size_t batch, size_t *done, int *more,
                             hv__search_refused_t *refused)
{
    hv_db_stmt_t *st = NULL;
    int64_t last = *after;
    int rc;
    *done = 0;
    *more = 0;
    rc = hv_db_prepare(db,
                       type != NULL
                           ? "SELECT r.rid, r.type, r.id, r.json FROM resources r WHERE r.rid > $1 AND r.type = $3"
                             " AND r.deleted = 0 AND NOT EXISTS (SELECT 1 FROM resources n WHERE n.type = r.type AND"
                             " n.id = r.id AND n.version > r.version) ORDER BY r.rid LIMIT $2"
                           : "SELECT r.rid, r.type, r.id, r.json FROM resources r WHERE r.rid > $1 AND r.deleted = 0"
                             " AND NOT EXISTS (SELECT 1 FROM resources n WHERE n.type = r.type AND n.id = r.id AND"
                             " n.version > r.version) ORDER BY r.rid LIMIT $2",
                       &st);
    if (rc != HV_OK)
        return rc;
    hv_db_bind_int64(st, 1, *after);
    hv_db_bind_int64(st, 2, (int64_t)batch + 1);
    if (type != NULL)
        hv_db_bind_text(st, 3, type, strlen(type));
    rc = reindex_rows(db, st, batch, 0, &last, done, more, refused);
    if (rc == HV_OK)
        *after = last;
    return rc;
}

/* ---- the fold upgrade (migration 16 SQLite / 13 PostgreSQL) ---- */

/*
 * The string normalization (fhir/search_fold.c) changed from "ASCII lower case and
 * Latin-1 accents" to Unicode's caseless form without marks. A stored folded value
 * cannot be folded again to the new form: the old fold had already mapped "æ",
 * "ø", "ß", "þ", "ð", "×" to ASCII ("a", "o", "s", ...), which the new fold keeps
 * ("æ", "ø", "ss", "þ"). So the rows are rebuilt from the resources, and only from
 * those that can differ: a resource whose JSON is pure ASCII (and has no "\u"
 * escape) folds exactly as before. The migration only creates the mark
 * sp_fold(after); this pass, run whenever the store is opened to serve (a full
 * `holovitals reindex` ends it too), rewrites the string rows and the full-text row
 * (hv__search_index_put_strings: nothing else depends on the fold) of the current
 * versions whose JSON has a byte >= 0x80 or a "\u", FOLD_SPAN row ids per
 * transaction, moving the mark past each span, and sets it to -1 when done. Interrupted, it resumes at the mark; a
 * resource written meanwhile was folded the new way already (reindexing it again
 * is harmless).
 */
const char hv__search_migration_fold[] =
    "CREATE TABLE sp_fold (after BIGINT NOT NULL);"
    "INSERT INTO sp_fold (after) VALUES (0);";

#define FOLD_SPAN 20000 /* row ids one transaction of the fold upgrade scans */

static int fold_mark(hv_db_t *db, int64_t *after)
{
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "SELECT after FROM sp_fold", &st);
    if (rc != HV_OK)
        return rc;
    *after = -1;
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW)
        *after = hv_db_column_int64(st, 0);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static int fold_set_mark(hv_db_t *db, int64_t after)
{
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "UPDATE sp_fold SET after = $1", &st);
    if (rc != HV_OK)
        return rc;
    hv_db_bind_int64(st, 1, after);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

int hv__search_fold_done(hv_db_t *db)
{
    return fold_set_mark(db, -1);
}

/* Reindexes the current versions in (lo, hi] whose JSON may fold differently. */
static int fold_span(hv_db_t *db, int64_t lo, int64_t hi, size_t *done, hv__search_refused_t *refused)
{
    hv_db_stmt_t *st = NULL;
    int64_t last = lo;
    int more = 0;
    /* length() counts characters of text and bytes of a blob (SQLite); PostgreSQL says it by name. */
    int rc = hv_db_prepare(
        db,
        hv_db_kind(db) == HV_DB_PG
            ? "SELECT r.rid, r.type, r.id, r.json FROM resources r WHERE r.rid > $1 AND r.rid <= $2 AND r.deleted = 0"
              " AND (octet_length(r.json) <> char_length(r.json) OR strpos(r.json, '\\u') > 0) AND NOT EXISTS"
              " (SELECT 1 FROM resources n WHERE n.type = r.type AND n.id = r.id AND n.version > r.version)"
              " ORDER BY r.rid"
            : "SELECT r.rid, r.type, r.id, r.json FROM resources r WHERE r.rid > $1 AND r.rid <= $2 AND r.deleted = 0"
              " AND (length(r.json) <> length(CAST(r.json AS BLOB)) OR instr(r.json, '\\u') > 0) AND NOT EXISTS"
              " (SELECT 1 FROM resources n WHERE n.type = r.type AND n.id = r.id AND n.version > r.version)"
              " ORDER BY r.rid",
        &st);
    if (rc != HV_OK)
        return rc;
    hv_db_bind_int64(st, 1, lo);
    hv_db_bind_int64(st, 2, hi);
    /* A span holds at most FOLD_SPAN rows: all of them fit one batch. */
    return reindex_rows(db, st, FOLD_SPAN, 1, &last, done, &more, refused);
}

int hv__search_fold_upgrade(hv_db_t *db, size_t *reindexed)
{
    hv_db_stmt_t *st = NULL;
    int64_t after = -1, max = 0;
    size_t total = 0;
    uint64_t t0 = hv_mono_ns();
    hv__search_refused_t refused = {0};
    int rc = fold_mark(db, &after);
    if (reindexed != NULL)
        *reindexed = 0;
    if (rc != HV_OK || after < 0)
        return rc;
    rc = hv_db_prepare(db, "SELECT COALESCE(MAX(rid), 0) FROM resources", &st);
    if (rc != HV_OK)
        return rc;
    if ((rc = hv_db_step(st)) == HV_DB_ROW)
        max = hv_db_column_int64(st, 0);
    hv_db_done(st);
    if (rc < 0)
        return rc;
    if (max > after)
        hv_log(HV_LOG_INFO, "fhir.fold_upgrade", "re-folding the string index of non-ASCII resources (row ids %lld..%lld)",
               (long long)after, (long long)max);
    while (rc >= 0) {
        int64_t hi = after + FOLD_SPAN;
        size_t done = 0;
        int last = hi >= max;
        rc = hv_db_begin(db);
        if (rc != HV_OK)
            break;
        rc = fold_span(db, after, hi, &done, &refused);
        if (rc == HV_OK)
            rc = fold_set_mark(db, last ? -1 : hi);
        if (rc == HV_OK)
            rc = hv_db_commit(db);
        else
            hv_db_rollback(db);
        if (rc != HV_OK)
            break;
        total += done;
        after = hi;
        if (last)
            break;
        if ((after / FOLD_SPAN) % 10 == 0)
            hv_log(HV_LOG_INFO, "fhir.fold_upgrade", "re-folding: row id %lld of %lld, %zu resources rewritten",
                   (long long)after, (long long)max, total);
    }
    if (rc == HV_OK && max > 0)
        hv_log(HV_LOG_INFO, "fhir.fold_upgrade", "string index re-folded: %zu resources reindexed in %.2f s", total,
               (double)(hv_mono_ns() - t0) / 1e9);
    if (refused.n > 0)
        hv_log(HV_LOG_WARN, "fhir.fold_upgrade",
               "%zu resources keep their string rows of the old fold: their new rows pass a limit of the search "
               "index; the first is %s",
               refused.n, refused.first);
    if (rc == HV_OK && reindexed != NULL)
        *reindexed = total;
    return rc;
}

/* ---- POST /fhir/$reindex ---- */

typedef struct rx {
    hv__rreq_t *r;
    char type[HV__FHIR_TYPE_MAX]; /* "" all */
    int64_t after;
    size_t total, batches, done;
    int more;
    hv__search_refused_t refused; /* written by the jobs, read by done_reindex after each */
} rx_t;

static int job_reindex(hv_db_t *db, void *arg)
{
    rx_t *x = arg;
    return hv__search_reindex_batch(db, x->type[0] ? x->type : NULL, &x->after, REINDEX_BATCH, &x->done, &x->more,
                                    &x->refused);
}

static void done_reindex(int status, void *arg)
{
    rx_t *x = arg;
    hv__rreq_t *r = x->r;
    hv_buf_t body;
    int rc;
    if (status != HV_OK) {
        hv__rest_outcome(r, 500, "error", "exception", "reindexing failed after %zu resources: %s", x->total,
                         hv_strerror(status));
        goto out;
    }
    x->total += x->done;
    x->batches++;
    if (x->more) {
        /* The next bounded job; the storage thread serves other requests in between. */
        if (hv_storage_submit(r->f->storage, job_reindex, done_reindex, x) == HV_OK)
            return;
        hv__rest_outcome(r, 503, "error", "transient", "the store is busy; %zu resources were reindexed, run again",
                         x->total);
        goto out;
    }
    /* Resources past a limit of the index kept their old rows: how many, and the first
     * ("Type/id: why"), so that the reply says what a search may still not find. */
    hv_buf_init(&body, 0);
    rc = hv_buf_printf(&body,
                       "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"reindexed\",\"valueInteger\":%zu},"
                       "{\"name\":\"batches\",\"valueInteger\":%zu},{\"name\":\"refused\",\"valueInteger\":%zu}",
                       x->total, x->batches, x->refused.n);
    if (rc == HV_OK && x->refused.n > 0) {
        rc = hv_buf_puts(&body, ",{\"name\":\"refusal\",\"valueString\":");
        if (rc == HV_OK)
            rc = hv_buf_json_str(&body, x->refused.first, strlen(x->refused.first));
        if (rc == HV_OK)
            rc = hv_buf_putc(&body, '}');
    }
    if (rc == HV_OK)
        rc = hv_buf_puts(&body, "]}");
    if (rc == HV_OK)
        hv__rest_send_text(r, 200, body.data, body.len);
    else
        hv__rest_outcome(r, 503, "error", "transient", "out of memory");
    hv_buf_release(&body);
out:
    hv__rreq_free(r);
    hv_free(x);
}

static void h_reindex(hv_http_req_t *req, void *ud)
{
    hv__fhir_t *f = ud;
    hv__rreq_t *r = hv__rreq_new(f, req);
    const char *type = hv_http_req_query_param(req, "_type");
    rx_t *x;
    if (r == NULL)
        return;
    if (type != NULL && hv_fhir_resource_type(type) == NULL) {
        hv__rest_outcome(r, 400, "error", "invalid", "_type: \"%.64s\" is not a resource type", type);
        hv__rreq_free(r);
        return;
    }
    x = hv_calloc(1, sizeof(*x));
    if (x == NULL) {
        hv__rest_outcome(r, 503, "error", "transient", "out of memory");
        hv__rreq_free(r);
        return;
    }
    x->r = r;
    snprintf(x->type, sizeof(x->type), "%s", type ? type : "");
    if (hv_storage_submit(f->storage, job_reindex, done_reindex, x) != HV_OK) {
        hv__rest_outcome(r, 503, "error", "transient", "the store is busy; retry later");
        hv__rreq_free(r);
        hv_free(x);
    }
}

int hv__search_reindex_routes(hv__fhir_t *f, hv_router_t *r)
{
    return hv_router_add(r, HV_HTTP_POST, "/fhir/$reindex", h_reindex, f);
}

/* ---- holovitals reindex ---- */

int hv__fhir_cmd_reindex(hv_engine_t *e, int argc, char **argv)
{
    hv_db_t *db = NULL;
    hv_error_t err;
    const char *type = NULL;
    size_t batch = REINDEX_BATCH * 5, done = 0, total = 0;
    hv__search_refused_t refused = {0};
    int64_t after = 0;
    int more = 1, rc, tty = isatty(2);
    uint64_t t0 = hv_mono_ns();
    double secs;
    hv_error_clear(&err);
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--type") == 0 && i + 1 < argc) {
            type = argv[++i];
        } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
            batch = (size_t)strtoul(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: holovitals reindex [--type T] [--batch N]\n");
            return HV_EXIT_USAGE;
        }
    }
    if (batch == 0 || batch > REINDEX_MAX_BATCH || (type != NULL && hv_fhir_resource_type(type) == NULL)) {
        fprintf(stderr, "holovitals reindex: --batch takes 1..%d, --type a resource type\n", REINDEX_MAX_BATCH);
        return HV_EXIT_USAGE;
    }
    rc = hv_db_open(hv_engine_db_url(e), hv_engine_data_dir(e), "fhir", &db, &err);
    if (rc == HV_OK)
        rc = hv_db_migrate(db, "fhir", hv__store_migrations(db), &err);
    if (rc != HV_OK) {
        char msg[1024];
        hv_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "holovitals reindex: cannot open the FHIR store: %s\n", msg[0] ? msg : hv_strerror(rc));
        hv_db_close(db);
        return HV_EXIT_FAILURE;
    }
    while (more && rc == HV_OK) {
        rc = hv_db_begin(db);
        if (rc == HV_OK)
            rc = hv__search_reindex_batch(db, type, &after, batch, &done, &more, &refused);
        if (rc == HV_OK)
            rc = hv_db_commit(db);
        else
            hv_db_rollback(db);
        if (rc == HV_OK)
            total += done;
        if (tty) {
            secs = (double)(hv_mono_ns() - t0) / 1e9;
            fprintf(stderr, "\rreindexing: %zu resources (%.0f/s)  ", total, secs > 0 ? (double)total / secs : 0.0);
        }
    }
    if (tty)
        fputc('\n', stderr);
    /* A full reindex folded every string the new way: the fold upgrade has nothing left. */
    if (rc == HV_OK && type == NULL)
        rc = hv__search_fold_done(db);
    /* The planner's statistics of the rewritten index (fhir/search_combo.c). */
    if (rc == HV_OK && total > 0)
        rc = hv__search_analyze(db, 1);
    secs = (double)(hv_mono_ns() - t0) / 1e9;
    if (rc != HV_OK) {
        fprintf(stderr, "holovitals reindex: failed after %zu resources: %s\n", total,
                hv_db_errmsg(db) ? hv_db_errmsg(db) : hv_strerror(rc));
        hv_db_close(db);
        return HV_EXIT_FAILURE;
    }
    printf("reindexed %zu resources in %.2f s (%.0f resources/s)\n", total, secs,
           secs > 0 ? (double)total / secs : 0.0);
    hv_db_close(db);
    if (refused.n > 0) {
        /* Their old rows stay: a search may not find them by every value (docs/fhir-search.md). */
        fprintf(stderr,
                "holovitals reindex: %zu resources kept their old index rows, their new rows passing a limit "
                "of the search index; the first: %s\n",
                refused.n, refused.first);
        return HV_EXIT_FAILURE;
    }
    return HV_EXIT_OK;
}
