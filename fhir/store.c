/*
 * store.c — the FHIR resource store: versioned resources in the fhir module's own
 * tables, on SQLite or PostgreSQL through engine/db (FHIR R4 http.html#versioning:
 * every version is kept; a DELETE writes a version marked deleted).
 *
 * The layout is described in fhir/store_int.h. The SQL is the same on both
 * backends except the integer primary key (SQLite's rowid alias, PostgreSQL's
 * identity column), so the two migration lists differ in that one line and a
 * separate store_sqlite.c/store_pg.c would hold nothing else.
 *
 * Key choice: the primary key is the insertion-ordered integer rid, not the
 * (type, id) text, so that inserts append to the table's tree (measured on this
 * machine: 214k rows/s sequential against 59k rows/s with random UUID keys); the
 * unique index on (type, id, version) finds the current version with one seek.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fhir/fhir_int.h"
#include "fhir/search_int.h"
#include "fhir/store_int.h"

static const char *const migrations_sqlite[] = {
    "CREATE TABLE resources (rid INTEGER PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL,"
    " version INTEGER NOT NULL, last_ms INTEGER NOT NULL, deleted INTEGER NOT NULL, json TEXT);"
    "CREATE UNIQUE INDEX resources_tiv ON resources (type, id, version);"
    "CREATE TABLE ident (type TEXT NOT NULL, id TEXT NOT NULL, system TEXT, value TEXT NOT NULL);"
    "CREATE INDEX ident_value ON ident (type, value);"
    "CREATE INDEX ident_id ON ident (type, id);",
    "CREATE TABLE refs (type TEXT NOT NULL, id TEXT NOT NULL, patient TEXT NOT NULL);"
    "CREATE INDEX refs_patient ON refs (patient, type);"
    "CREATE INDEX refs_id ON refs (type, id);",
    hv__search_migration, /* the search index, fhir/search_index.c */
    /* Bulk Data export jobs (fhir/rest_export.c). */
    "CREATE TABLE export_jobs (id TEXT PRIMARY KEY, request TEXT NOT NULL, level INTEGER NOT NULL, grp TEXT,"
    " types TEXT, since_ms BIGINT NOT NULL, started_ms BIGINT NOT NULL, state INTEGER NOT NULL, error TEXT,"
    " output TEXT, finished_ms BIGINT);"
    "CREATE INDEX export_jobs_state ON export_jobs (state, finished_ms);",
    hv__search_migration2,
    hv__search_migration3_sqlite, /* _text/_content, near: fhir/search_special.c */
    hv__search_migration4_sqlite, /* the deferred full-text index's mark, likewise */
    hv__search_migration4,        /* covering value indexes: fhir/search_plan.c */
    hv__search_migration5,        /* combined token + date / quantity rows: fhir/search_combo.c */
    hv__search_migration6_sqlite, /* covering string and reference indexes: fhir/search_plan.c */
    hv__search_migration7_sqlite, /* token rows with their row id: fhir/search_combo.c */
    /* The rows of one type in row-id order: the page of a _has without a selective
     * criterion reads its type's candidates from the cursor (fhir/search_run.c,
     * has_page) instead of scanning the whole table. Partial, on a condition no other
     * statement writes ("last_ms <> -1", always true), so that SQLite uses it only where
     * it is named (sqlite.org/partialindex.html#queries_using_partial_indexes): without
     * statistics of its own it would otherwise look more selective than resources_tiv
     * to every statement on r.type. */
    "CREATE INDEX IF NOT EXISTS resources_trid ON resources (type, rid) WHERE last_ms <> -1;",
    /* Search indexes an import into an empty store dropped until its end (fhir/import.c). */
    "CREATE TABLE import_deferred (name TEXT PRIMARY KEY, sql TEXT NOT NULL);",
    hv__search_migration8_sqlite, /* string rows with their row id: fhir/search_combo.c */
    hv__search_migration9_sqlite, /* reference x token rows of _has: fhir/search_has.c */
    hv__search_migration_fold,    /* Unicode string folding's upgrade mark: fhir/search_reindex.c */
    /* The identifier table (type, id, system, value) is gone: nothing searched it —
     * conditional creates and identifier searches read the identifier parameter's token
     * rows (sp_tok), which hold the same current values — and every write paid three
     * B-tree inserts (the table and its two indexes) per identifier for it (issue 5). */
    "DROP TABLE IF EXISTS ident;",
    hv__search_migration_raw_sqlite, /* string rows' unfolded value, for :exact: fhir/search_fold.c */
    hv__search_migration_row_alias,  /* phonetic reads name's rows: fhir/search_index.c, row_alias */
    hv__search_migration10_sqlite,   /* token rows by (value, system, row id): fhir/search_combo.c */
    hv__search_migration_text_nosize_sqlite, /* sp_text without per-row sizes: fhir/search_special.c */
    hv__search_migration11_sqlite, /* one token value index, sp_tok_sr with the id: fhir/search_combo.c */
    NULL,
};

static const char *const migrations_pg[] = {
    "CREATE TABLE resources (rid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, type TEXT NOT NULL,"
    " id TEXT NOT NULL, version BIGINT NOT NULL, last_ms BIGINT NOT NULL, deleted INTEGER NOT NULL,"
    " json TEXT);"
    "CREATE UNIQUE INDEX resources_tiv ON resources (type, id, version);"
    "CREATE TABLE ident (type TEXT NOT NULL, id TEXT NOT NULL, system TEXT, value TEXT NOT NULL);"
    "CREATE INDEX ident_value ON ident (type, value);"
    "CREATE INDEX ident_id ON ident (type, id);",
    "CREATE TABLE refs (type TEXT NOT NULL, id TEXT NOT NULL, patient TEXT NOT NULL);"
    "CREATE INDEX refs_patient ON refs (patient, type);"
    "CREATE INDEX refs_id ON refs (type, id);",
    hv__search_migration, /* the search index, fhir/search_index.c */
    /* Bulk Data export jobs (fhir/rest_export.c). */
    "CREATE TABLE export_jobs (id TEXT PRIMARY KEY, request TEXT NOT NULL, level INTEGER NOT NULL, grp TEXT,"
    " types TEXT, since_ms BIGINT NOT NULL, started_ms BIGINT NOT NULL, state INTEGER NOT NULL, error TEXT,"
    " output TEXT, finished_ms BIGINT);"
    "CREATE INDEX export_jobs_state ON export_jobs (state, finished_ms);",
    hv__search_migration2,
    hv__search_migration3_pg, /* _text/_content, near: fhir/search_special.c */
    hv__search_migration4,    /* covering value indexes: fhir/search_plan.c */
    hv__search_migration5,    /* combined token + date / quantity rows: fhir/search_combo.c */
    hv__search_migration6_pg, /* covering string and reference indexes: fhir/search_plan.c */
    hv__search_migration7_pg, /* token rows with their row id: fhir/search_combo.c */
    hv__search_migration8_pg, /* string rows with their row id: fhir/search_combo.c */
    hv__search_migration9_pg, /* reference x token rows of _has: fhir/search_has.c */
    hv__search_migration_fold, /* Unicode string folding's upgrade mark: fhir/search_reindex.c */
    "DROP TABLE IF EXISTS ident;", /* as on SQLite, above */
    hv__search_migration_raw_pg, /* string rows' unfolded value, for :exact: fhir/search_fold.c */
    hv__search_migration_row_alias, /* phonetic reads name's rows: fhir/search_index.c, row_alias */
    hv__search_migration10_pg,   /* token rows by (value, system, row id): fhir/search_combo.c */
    hv__search_migration_nosys_pg, /* token rows without a system ("|code"): fhir/search_combo.c */
    /* The rows of one type in row-id order, as SQLite's resources_trid (above): a type's
     * page without criteria (fhir/search_run.c, type_page; a full sync's `Type?_count=1000`)
     * reads its row ids from the cursor, index-only (id, version and deleted included for
     * the current-version and liveness checks), and stops at the page. Without it
     * PostgreSQL walked resources_pkey and filtered on the type, reading every other type's
     * rows in between: 24,389 rows for a first page of 1,001 Immunizations (4 % of a 100k
     * store). Not partial: PostgreSQL has the statistics SQLite lacked. */
    "CREATE INDEX IF NOT EXISTS resources_trid ON resources (type, rid) INCLUDE (id, version, deleted);",
    hv__search_migration11_pg, /* one token value index, sp_tok_sr with the id: fhir/search_combo.c */
    hv__search_migration_idcv_pg, /* a token checked per candidate, one seek: fhir/search_combo.c */
    /* Search indexes an import into an empty store dropped until its end (fhir/import.c). */
    "CREATE TABLE IF NOT EXISTS import_deferred (name TEXT PRIMARY KEY, sql TEXT NOT NULL);",
    NULL,
};

/* The search indexes an import that was killed had deferred (fhir/import.c). A store
 * without them answers the same, only slower: a failure is logged, not fatal, and the
 * next opening tries again. */
static void restore_deferred(hv_db_t *db)
{
    if (hv__import_restore_indexes(db) != HV_OK)
        hv_log(HV_LOG_WARN, "fhir.import_indexes", "building the search indexes an import deferred failed: %s",
               hv_db_errmsg(db) ? hv_db_errmsg(db) : "");
}

int hv__store_tune(hv_db_t *db, hv_config_t *cfg)
{
    char sql[64];
    int64_t kib;
    int rc = hv_db_set_synchronous(db, hv_config_str(cfg, "fhir.synchronous"));
    if (rc != HV_OK)
        return rc;
    if (hv_db_kind(db) != HV_DB_SQLITE) {
        restore_deferred(db);
        return HV_OK;
    }
    /* Imports, transactions, EHR pages and the full-text catch-up are large storage jobs:
     * sub-journals in a temporary file past 64 KiB, not the in-memory list whose truncation
     * is quadratic in the job's size (engine/db_sqlite.c). */
    rc = hv_db_exec(db, "PRAGMA temp_store=FILE");
    if (rc == HV_OK)
        restore_deferred(db);
    if (rc != HV_OK || hv_config_find(cfg, "fhir.cache_size") == NULL)
        return rc;
    /* A negative cache_size is in KiB (sqlite.org/pragma.html#pragma_cache_size). */
    kib = (int64_t)(hv_config_size(cfg, "fhir.cache_size") / 1024);
    if (kib < 64)
        kib = 64;
    snprintf(sql, sizeof(sql), "PRAGMA cache_size=-%lld", (long long)kib);
    return hv_db_exec(db, sql);
}

const char *const *hv__store_migrations(hv_db_t *db)
{
    return hv_db_kind(db) == HV_DB_PG ? migrations_pg : migrations_sqlite;
}

void hv__store_row_clear(hv__store_row_t *r)
{
    if (r == NULL)
        return;
    hv_free(r->text);
    memset(r, 0, sizeof(*r));
}

static void bind_str(hv_db_stmt_t *st, int idx, const char *s)
{
    hv_db_bind_text(st, idx, s, strlen(s));
}

/* As bind_str, for a string that stays valid until the statement's step has returned:
 * bound without a copy (the create path binds ~5 of them per version). */
static void bind_str_static(hv_db_stmt_t *st, int idx, const char *s)
{
    hv_db_bind_text_static(st, idx, s, strlen(s));
}

static void copy_str(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

void hv__store_row_head(hv_db_stmt_t *st, hv__store_row_t *r)
{
    size_t len = 0;
    const char *s;
    memset(r, 0, sizeof(*r));
    r->rid = hv_db_column_int64(st, 0);
    s = hv_db_column_text(st, 1, &len);
    copy_str(r->type, sizeof(r->type), s ? s : "", s ? len : 0);
    s = hv_db_column_text(st, 2, &len);
    copy_str(r->id, sizeof(r->id), s ? s : "", s ? len : 0);
    r->version = hv_db_column_int64(st, 3);
    r->last_ms = (uint64_t)hv_db_column_int64(st, 4);
}

/* Reads the columns rid, type, id, version, last_ms, deleted, json into a row. */
static int row_from(hv_db_stmt_t *st, hv__store_row_t *r)
{
    size_t len = 0;
    const char *s;
    hv__store_row_head(st, r);
    r->deleted = (int)hv_db_column_int64(st, 5);
    if (!hv_db_column_is_null(st, 6)) {
        s = hv_db_column_text(st, 6, &len);
        r->text = hv_strndup(s, len);
        if (r->text == NULL)
            return HV_ENOMEM;
        r->text_len = len;
    }
    return HV_OK;
}

#define ROW_COLS "rid, type, id, version, last_ms, deleted, json"

int hv__store_get(hv_db_t *db, const char *type, const char *id, int64_t version,
                  hv__store_row_t *out)
{
    hv_db_stmt_t *st = NULL;
    hv__store_row_t r;
    int rc;
    memset(&r, 0, sizeof(r));
    rc = hv_db_prepare(db,
                       version > 0 ? "SELECT " ROW_COLS " FROM resources WHERE type = $1 AND id = $2 AND version = $3"
                                   : "SELECT " ROW_COLS " FROM resources WHERE type = $1 AND id = $2"
                                     " ORDER BY version DESC LIMIT 1",
                       &st);
    if (rc != HV_OK)
        return rc;
    bind_str(st, 1, type);
    bind_str(st, 2, id);
    if (version > 0)
        hv_db_bind_int64(st, 3, version);
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW)
        rc = row_from(st, &r);
    else if (rc == HV_OK)
        rc = HV_ENOTFOUND;
    hv_db_done(st);
    if (rc != HV_OK) {
        hv__store_row_clear(&r);
        return rc;
    }
    *out = r;
    return HV_OK;
}

void hv__fhir_join(char *dst, size_t cap, const char *a, const char *sep, const char *b)
{
    const char *part[3] = {a, sep, b};
    size_t len = 0;
    for (int k = 0; k < 3; k++) {
        size_t n;
        if (part[k] == NULL)
            continue;
        n = strnlen(part[k], cap - 1 - len);
        memcpy(dst + len, part[k], n);
        len += n;
    }
    dst[len] = '\0';
}

/* Collects the distinct patient ids a resource refers to ("Patient/ID" references) in o,
 * a JSON object or array (t, its type). Each member's type is asked once, and a value is
 * entered only when it is an object or an array: this walk visits every member of every
 * resource stored, and json-c's type test is a call. */
static void collect_patients(struct json_object *o, enum json_type t, char (*out)[HV__FHIR_ID_MAX], size_t max,
                             size_t *n, int depth)
{
    if (depth > 64 || *n >= max)
        return;
    if (t == json_type_array) {
        size_t len = json_object_array_length(o);
        for (size_t i = 0; i < len; i++) {
            struct json_object *v = json_object_array_get_idx(o, i);
            enum json_type vt = json_object_get_type(v);
            if (vt == json_type_object || vt == json_type_array)
                collect_patients(v, vt, out, max, n, depth + 1);
        }
        return;
    }
    if (t != json_type_object)
        return;
    json_object_object_foreach(o, key, val)
    {
        enum json_type vt = json_object_get_type(val);
        /* First bytes before strcmp. */
        if (key[0] == 'r' && strcmp(key, "reference") == 0 && vt == json_type_string) {
            const char *ref = json_object_get_string(val);
            if (strncmp(ref, "Patient/", 8) == 0 && hv__fhir_id_valid(ref + 8)) {
                size_t i;
                for (i = 0; i < *n; i++)
                    if (strcmp(out[i], ref + 8) == 0)
                        break;
                if (i == *n && *n < max)
                    hv__fhir_join(out[(*n)++], HV__FHIR_ID_MAX, ref + 8, NULL, NULL);
            }
        } else if (key[0] != '_' && (key[0] != 'c' || strcmp(key, "contained") != 0) &&
                   (vt == json_type_object || vt == json_type_array)) {
            collect_patients(val, vt, out, max, n, depth + 1);
        }
    }
}

void hv__store_patients(const char *type, const char *id, struct json_object *resource, hv__store_pats_t *out)
{
    char pats[HV__STORE_MAX_PATIENTS][HV__FHIR_ID_MAX];
    size_t n = 0;
    out->n = 0;
    if (strcmp(type, "Patient") == 0) {
        /* A Patient is in its own compartment. */
        hv__fhir_join(pats[n++], HV__FHIR_ID_MAX, id, NULL, NULL);
    }
    if (resource != NULL)
        collect_patients(resource, json_object_get_type(resource), pats, HV__STORE_MAX_PATIENTS, &n, 0);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(type, "Patient") == 0 && i > 0 && strcmp(pats[i], id) == 0)
            continue;
        memcpy(out->ids[out->n++], pats[i], HV__FHIR_ID_MAX);
    }
}

static int refs_insert(hv_db_t *db, const char *type, const char *id, const hv__store_pats_t *pats)
{
    hv_db_stmt_t *st = NULL;
    int rc = HV_OK;
    for (size_t i = 0; i < pats->n && rc == HV_OK; i++) {
        rc = hv_db_prepare(db, "INSERT INTO refs (type, id, patient) VALUES ($1, $2, $3)", &st);
        if (rc != HV_OK)
            return rc;
        bind_str_static(st, 1, type);
        bind_str_static(st, 2, id);
        bind_str_static(st, 3, pats->ids[i]);
        rc = hv_db_step_later(st);
        hv_db_done(st);
    }
    return rc;
}

int hv__store_put(hv_db_t *db, const char *type, const char *id, int64_t version, uint64_t ms,
                  const char *text, size_t len, struct json_object *resource)
{
    return hv__store_put_pre(db, type, id, version, ms, text, len, resource, NULL, NULL, 0);
}

int hv__store_put_pre(hv_db_t *db, const char *type, const char *id, int64_t version, uint64_t ms,
                      const char *text, size_t len, struct json_object *resource,
                      const struct hv__search_rows *ix_pre, const hv__store_pats_t *pats_pre, int64_t rid_pre)
{
    hv_db_stmt_t *st = NULL;
    int rc, pre = rid_pre > 0 && hv_db_kind(db) == HV_DB_PG;
    int64_t rid = 0;
    /* Before the version exists, hence before its commit and its answer: a read
     * cached from an older version is never served again (fhir/read_cache.c). */
    hv__rcache_invalidate(type, id);
    /* The index rows get the version's row id from here, not from a look-up of
     * resources_tiv per version: SQLite's last insert rowid, PostgreSQL's RETURNING (on
     * SQLite RETURNING would cost an ephemeral table per INSERT: measured 31k against
     * 15k instructions). */
    rc = hv_db_prepare(db,
                       pre ? "INSERT INTO resources (rid, type, id, version, last_ms, deleted, json) OVERRIDING SYSTEM"
                             " VALUE VALUES ($7, $1, $2, $3, $4, $5, $6)"
                       : hv_db_kind(db) == HV_DB_PG ? "INSERT INTO resources (type, id, version, last_ms, deleted, json)"
                                                      " VALUES ($1, $2, $3, $4, $5, $6) RETURNING rid"
                                                    : "INSERT INTO resources (type, id, version, last_ms, deleted, json)"
                                                      " VALUES ($1, $2, $3, $4, $5, $6)",
                       &st);
    if (rc != HV_OK)
        return rc;
    bind_str_static(st, 1, type);
    bind_str_static(st, 2, id);
    hv_db_bind_int64(st, 3, version);
    hv_db_bind_int64(st, 4, (int64_t)ms);
    hv_db_bind_int64(st, 5, text == NULL ? 1 : 0);
    if (text != NULL)
        hv_db_bind_text_static(st, 6, text, len); /* text outlives the step below */
    else
        hv_db_bind_null(st, 6);
    if (pre) {
        hv_db_bind_int64(st, 7, rid_pre);
        rc = hv_db_step_later(st);
        rid = rid_pre;
    } else if ((rc = hv_db_step(st)) == HV_DB_ROW) {
        rid = hv_db_column_int64(st, 0);
        rc = HV_OK;
    } else if (rc >= 0) {
        rid = hv_db_last_insert_rowid(db);
    }
    hv_db_done(st);
    if (rc < 0)
        return rc;
    /* The patient-compartment rows hold the current version only: a first version has
     * nothing to replace, later ones drop their predecessor's rows. */
    if (version > 1) {
        rc = hv_db_prepare(db, "DELETE FROM refs WHERE type = $1 AND id = $2", &st);
        if (rc != HV_OK)
            return rc;
        bind_str(st, 1, type);
        bind_str(st, 2, id);
        rc = hv_db_step_later(st);
        hv_db_done(st);
        if (rc < 0)
            return rc;
    }
    /* The search index, also of the current version only (fhir/search_index.c). */
    rc = hv__search_index_put_pre(db, type, id, text != NULL ? resource : NULL, version > 1,
                                  text != NULL ? ix_pre : NULL, rid);
    if (rc != HV_OK)
        return rc;
    if (text == NULL)
        return HV_OK;
    if (pats_pre != NULL)
        return refs_insert(db, type, id, pats_pre);
    if (resource != NULL) {
        hv__store_pats_t pats;
        hv__store_patients(type, id, resource, &pats);
        return refs_insert(db, type, id, &pats);
    }
    return HV_OK;
}

int hv__store_find_identifier(hv_db_t *db, const char *type, const char *system,
                              const char *value, char (*ids)[HV__FHIR_ID_MAX], size_t max,
                              size_t *n)
{
    hv_db_stmt_t *st = NULL;
    size_t k = 0;
    /* The identifier search parameter's token rows (fhir/search_index.c), of the current
     * versions only, like the identifier table they replaced (dropped by a migration: store.c). */
#define IDENT_SQL "SELECT DISTINCT id FROM sp_tok WHERE type = $1 AND code = 'identifier' AND grp = 0 AND value = $2"
    const char *sql = system == NULL ? IDENT_SQL : system[0] == '\0' ? IDENT_SQL " AND system IS NULL"
                                                                     : IDENT_SQL " AND system = $3";
#undef IDENT_SQL
    /* Over the index rows the job's batch deferred too (engine/storage.c). */
    int rc = hv_storage_flush_deferred(db);
    if (rc == HV_OK)
        rc = hv_db_prepare(db, sql, &st);
    if (rc != HV_OK)
        return rc;
    bind_str(st, 1, type);
    bind_str(st, 2, value);
    if (system != NULL && system[0] != '\0')
        bind_str(st, 3, system);
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t len = 0;
        const char *s = hv_db_column_text(st, 0, &len);
        if (k < max)
            copy_str(ids[k], HV__FHIR_ID_MAX, s ? s : "", s ? len : 0);
        k++;
        if (k > max)
            break;
    }
    hv_db_done(st);
    if (rc < 0)
        return rc;
    *n = k;
    return HV_OK;
}

int hv__store_history(hv_db_t *db, const hv__store_hist_q_t *q, hv__store_row_cb cb, void *ud)
{
    hv_buf_t sql;
    hv_db_stmt_t *st = NULL;
    int rc, idx = 0;
    hv_buf_init(&sql, 4096);
    hv_buf_puts(&sql, "SELECT " ROW_COLS " FROM resources r WHERE 1 = 1");
    /* Each clause takes the next placeholder number; the values are bound below in
     * the same order. */
    if (q->type != NULL)
        hv_buf_printf(&sql, " AND type = $%d", ++idx);
    if (q->id != NULL)
        hv_buf_printf(&sql, " AND id = $%d", ++idx);
    if (q->since_ms >= 0)
        hv_buf_printf(&sql, " AND last_ms >= $%d", ++idx);
    if (q->at_ms >= 0) {
        /* FHIR R4 http.html#history: _at — the versions that were current at that
         * instant: written no later than it and not yet replaced by then. */
        hv_buf_printf(&sql,
                      " AND last_ms <= $%d AND NOT EXISTS (SELECT 1 FROM resources n WHERE n.type = r.type"
                      " AND n.id = r.id AND n.version > r.version AND n.last_ms <= $%d)",
                      idx + 1, idx + 1);
        idx++;
    }
    if (q->before_rid > 0)
        hv_buf_printf(&sql, " AND rid < $%d", ++idx);
    rc = hv_buf_printf(&sql, " ORDER BY rid DESC LIMIT $%d", ++idx);
    if (rc != HV_OK)
        goto out;
    rc = hv_db_prepare(db, sql.data, &st);
    if (rc != HV_OK)
        goto out;
    idx = 0;
    if (q->type != NULL)
        bind_str(st, ++idx, q->type);
    if (q->id != NULL)
        bind_str(st, ++idx, q->id);
    if (q->since_ms >= 0)
        hv_db_bind_int64(st, ++idx, q->since_ms);
    if (q->at_ms >= 0)
        hv_db_bind_int64(st, ++idx, q->at_ms);
    if (q->before_rid > 0)
        hv_db_bind_int64(st, ++idx, q->before_rid);
    hv_db_bind_int64(st, ++idx, q->count + 1);
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        hv__store_row_t row;
        rc = row_from(st, &row);
        if (rc == HV_OK)
            rc = cb(ud, &row);
        hv__store_row_clear(&row);
        if (rc != HV_OK)
            break;
    }
    hv_db_done(st);
out:
    hv_buf_release(&sql);
    return rc < 0 ? rc : HV_OK;
}

int hv__store_each_current(hv_db_t *db, const char *type, hv__store_row_cb cb, void *ud)
{
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(
        db,
        type != NULL
            ? "SELECT " ROW_COLS " FROM resources r WHERE type = $1 AND deleted = 0 AND NOT EXISTS"
              " (SELECT 1 FROM resources n WHERE n.type = r.type AND n.id = r.id AND n.version > r.version)"
              " ORDER BY rid"
            : "SELECT " ROW_COLS " FROM resources r WHERE deleted = 0 AND NOT EXISTS"
              " (SELECT 1 FROM resources n WHERE n.type = r.type AND n.id = r.id AND n.version > r.version)"
              " ORDER BY rid",
        &st);
    if (rc != HV_OK)
        return rc;
    if (type != NULL)
        bind_str(st, 1, type);
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        hv__store_row_t row;
        rc = row_from(st, &row);
        if (rc == HV_OK)
            rc = cb(ud, &row);
        hv__store_row_clear(&row);
        if (rc != HV_OK)
            break;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

int hv__store_compartment(hv_db_t *db, const char *patient, const char *type, hv__store_row_cb cb, void *ud)
{
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(
        db,
        type != NULL
            ? "SELECT r.rid, r.type, r.id, r.version, r.last_ms, r.deleted, r.json FROM refs c JOIN resources r"
              " ON r.type = c.type AND r.id = c.id WHERE c.patient = $1 AND c.type = $2 AND NOT EXISTS"
              " (SELECT 1 FROM resources n WHERE n.type = r.type AND n.id = r.id AND n.version > r.version)"
              " ORDER BY r.rid"
            : "SELECT r.rid, r.type, r.id, r.version, r.last_ms, r.deleted, r.json FROM refs c JOIN resources r"
              " ON r.type = c.type AND r.id = c.id WHERE c.patient = $1 AND NOT EXISTS"
              " (SELECT 1 FROM resources n WHERE n.type = r.type AND n.id = r.id AND n.version > r.version)"
              " ORDER BY r.rid",
        &st);
    if (rc != HV_OK)
        return rc;
    bind_str(st, 1, patient);
    if (type != NULL)
        bind_str(st, 2, type);
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        hv__store_row_t row;
        rc = row_from(st, &row);
        if (rc == HV_OK && !row.deleted)
            rc = cb(ud, &row);
        hv__store_row_clear(&row);
        if (rc != HV_OK)
            break;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/* ---- helpers ---- */

void hv__fhir_new_id(char out[HV__FHIR_ID_MAX])
{
    /* RFC 9562 §5.7: 48-bit Unix milliseconds, version 7, 74 random bits with the
     * variant. Time-ordered ids keep the index inserts near the right edge. */
    static const unsigned char group_end[] = {8, 12, 16, 20, 32}; /* in the 32 hex digits */
    unsigned char b[16];
    uint64_t ms = hv_now_ms();
    char hex[33], *p = out;
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (8 * (5 - i)));
    hv_random_fast(b + 6, 10);
    b[6] = (unsigned char)(0x70 | (b[6] & 0x0f));
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
    /* 8-4-4-4-12 lowercase hex digits (RFC 9562 §4), put together here rather than
     * through snprintf: two ids per two-entry transaction, ~2,000 instructions each that way. */
    hv_hex(b, 16, hex);
    for (size_t g = 0, from = 0; g < sizeof(group_end); from = group_end[g++]) {
        memcpy(p, hex + from, group_end[g] - from);
        p += group_end[g] - from;
        *p++ = g + 1 < sizeof(group_end) ? '-' : '\0';
    }
}

/* FHIR R4 datatypes.html#id: [A-Za-z0-9\-\.]{1,64}. The bytes an id may hold, one lookup a
 * byte: every reference indexed and every compartment link checks one (a UUID: 36 bytes). */
static const unsigned char id_byte[256] = {
    ['-'] = 1, ['.'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1,
    ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1,
    ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1,
    ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1,
    ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

int hv__fhir_id_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    if (s == NULL)
        return 0;
    while (n <= 64 && id_byte[p[n]])
        n++;
    return n >= 1 && n <= 64 && p[n] == '\0';
}

int hv__fhir_id_valid_n(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!id_byte[(unsigned char)s[i]])
            return 0;
    return 1;
}

/* hv_time_rfc3339's "YYYY-MM-DDThh:mm:ss.mmmZ" with the part up to the seconds kept per
 * thread: every version written needs one (meta.lastUpdated, on the storage thread), and
 * gmtime_r + snprintf were ~3k instructions each time. Other shapes go to hv_time_rfc3339. */
void hv__fhir_instant(uint64_t ms, char *out, size_t outlen)
{
    static _Thread_local uint64_t last_s = UINT64_MAX;
    static _Thread_local char last[40];
    uint64_t s = ms / 1000;
    unsigned m = (unsigned)(ms % 1000);
    if (s != last_s) {
        hv_time_rfc3339(s * 1000, last, sizeof(last));
        if (strlen(last) != 24 || last[19] != '.' || last[23] != 'Z') {
            last_s = UINT64_MAX;
            hv_time_rfc3339(ms, out, outlen);
            return;
        }
        last_s = s;
    }
    if (outlen < 25) {
        hv_time_rfc3339(ms, out, outlen);
        return;
    }
    memcpy(out, last, 20); /* through the '.' */
    out[20] = (char)('0' + m / 100);
    out[21] = (char)('0' + m / 10 % 10);
    out[22] = (char)('0' + m % 10);
    out[23] = 'Z';
    out[24] = '\0';
}

/* Sets obj's key to the string val; a member that already holds val is left as it is (a
 * tree prepared ahead carries its id and versionId), sparing a new object per field, and a
 * string member that holds another value takes val in place (the placeholder lastUpdated
 * of a tree prepared ahead): json-c copies val into the object it has, so the member's
 * key and its place stay, and readers of the tree see the new value as with a replaced
 * member. The contract this needs: no other tree holds the member's string object (a
 * shared leaf would change there too). The writers' trees are parsed, built or deep-copied
 * (fhir/rest_patch.c), and the id and meta leaves are never shared into them. */
/*
 * Sets obj's member key (of keylen bytes, a name of the model) to the string val. A new
 * member's key is the model's static copy (hv__fhir_key_static), as the reader adds the
 * model's names: no strdup, and the writer finds its element in its cache (fhir/json.c)
 * rather than in the model. This runs for every resource written (hv__fhir_set_meta).
 */
static int set_str_member(struct json_object *obj, const char *key, size_t keylen, const char *val)
{
    struct json_object *cur = NULL, *s;
    const char *name;
    if (hv_json_get_ex(obj, key, &cur) && json_object_is_type(cur, json_type_string)) {
        if (strcmp(json_object_get_string(cur), val) == 0)
            return 0;
        return json_object_set_string(cur, val) == 1 ? 0 : -1;
    }
    name = hv__fhir_key_static(key, keylen);
    if (name == NULL)
        return hv_json_set_str(obj, key, val);
    s = json_object_new_string(val);
    if (s == NULL)
        return -1;
    if (json_object_object_add_ex(obj, name, s, JSON_C_OBJECT_KEY_IS_CONSTANT) != 0) {
        json_object_put(s);
        return -1;
    }
    return 0;
}

int hv__fhir_set_meta(struct json_object *res, const char *id, int64_t version, uint64_t ms)
{
    struct json_object *meta = NULL;
    char vbuf[32], ts[40], *v = vbuf;
    int rc;
    if (id != NULL && set_str_member(res, "id", 2, id) != 0)
        return HV_ENOMEM;
    if (!hv_json_get_ex(res, "meta", &meta) || !json_object_is_type(meta, json_type_object)) {
        const char *name = hv__fhir_key_static("meta", 4);
        meta = json_object_new_object();
        if (meta == NULL)
            return HV_ENOMEM;
        if (name == NULL)
            rc = hv_json_set(res, "meta", meta);
        else if ((rc = json_object_object_add_ex(res, name, meta, JSON_C_OBJECT_KEY_IS_CONSTANT)) != 0)
            json_object_put(meta);
        if (rc != 0)
            return HV_ENOMEM;
    }
    /* The version's decimal digits without snprintf's ~600 instructions: this runs once
     * per write on the loop thread and once on the storage thread. */
    vbuf[sizeof(vbuf) - 1] = '\0';
    if (version >= 0)
        v = hv_u64_digits((uint64_t)version, vbuf + sizeof(vbuf) - 1);
    else
        snprintf(vbuf, sizeof(vbuf), "%lld", (long long)version);
    hv__fhir_instant(ms, ts, sizeof(ts));
    rc = set_str_member(meta, "versionId", 9, v);
    if (rc == 0)
        rc = set_str_member(meta, "lastUpdated", 11, ts);
    return rc == 0 ? HV_OK : HV_ENOMEM;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/*
 * Reads the n decimal digits at p into *v; 0 (and *v untouched) when one of them is not a
 * digit. Where hv__fhir_parse_time's fields are all digits it reads them with this, and
 * sscanf reads the same value from them; sscanf (~1,400 instructions a call, five calls for
 * a dateTime with an offset) is left for the other forms it accepts (signs, blanks, fewer
 * digits), so that every input parses as before. The search index parses every date it
 * indexes (~1.3 per Synthea resource).
 */
static int digits(const char *p, int n, int *v)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        x = x * 10 + (p[i] - '0');
    }
    *v = x;
    return 1;
}

/* Moves *p past the n characters of a field sscanf read, or returns 0 when the text ends
 * among them: sscanf's widths are maxima ("%2d" reads "-1" from "-1"), so a short field
 * would otherwise carry *p past the terminator. */
static int advance(const char **p, size_t n)
{
    if (strnlen(*p, n) < n)
        return 0;
    *p += n;
    return 1;
}

int hv__fhir_parse_time(const char *s, int64_t *out_ms)
{
    /* FHIR R4 datatypes.html#dateTime: YYYY(-MM(-DD(Thh:mm:ss(.sss)(Z|+hh:mm))?)?)? */
    int y = 0, mo = 1, d = 1, h = 0, mi = 0, sec = 0, ms = 0, off = 0;
    const char *p = s;
    if (s == NULL || (!digits(p, 4, &y) && (sscanf(p, "%4d", &y) != 1 || strlen(s) < 4)))
        return HV_EINVAL;
    p += 4;
    if (*p == '-') {
        if ((!digits(p + 1, 2, &mo) && sscanf(p, "-%2d", &mo) != 1) || mo < 1 || mo > 12)
            return HV_EINVAL;
        if (!advance(&p, 3))
            return HV_EINVAL;
        if (*p == '-') {
            if ((!digits(p + 1, 2, &d) && sscanf(p, "-%2d", &d) != 1) || d < 1 || d > 31)
                return HV_EINVAL;
            if (!advance(&p, 3))
                return HV_EINVAL;
            if (*p == 'T') {
                int fast = digits(p + 1, 2, &h) && p[3] == ':' && digits(p + 4, 2, &mi) && p[6] == ':' &&
                           digits(p + 7, 2, &sec);
                if (!fast && sscanf(p, "T%2d:%2d:%2d", &h, &mi, &sec) != 3)
                    return HV_EINVAL;
                if (!advance(&p, 9))
                    return HV_EINVAL;
                if (*p == '.') {
                    int digits = 0;
                    p++;
                    while (*p >= '0' && *p <= '9') {
                        if (digits < 3) {
                            ms = ms * 10 + (*p - '0');
                            digits++;
                        }
                        p++;
                    }
                    while (digits++ < 3)
                        ms *= 10;
                }
                if (*p == 'Z') {
                    p++;
                } else if (*p == '+' || *p == '-') {
                    int oh = 0, om = 0;
                    int tz = digits(p + 1, 2, &oh) && p[3] == ':' && digits(p + 4, 2, &om);
                    if (!tz && sscanf(p + 1, "%2d:%2d", &oh, &om) != 2)
                        return HV_EINVAL;
                    off = (oh * 60 + om) * (*p == '-' ? -1 : 1);
                    if (!advance(&p, 6))
                        return HV_EINVAL;
                }
            }
        }
    }
    if (*p != '\0')
        return HV_EINVAL;
    *out_ms = ((days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec) - off * 60) *
                  1000 +
              ms;
    return HV_OK;
}
