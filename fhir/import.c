/*
 * import.c — `holovitals import FILE…`: bulk loading into the FHIR store.
 *
 * A FILE is a Bundle (transaction, batch or collection; JSON or XML) or NDJSON
 * (one resource per line, FHIR R4 / Bulk Data nd-json). Every Bundle runs through
 * the transaction path of POST /fhir (fhir/rest_bundle.c) in import mode: the
 * ids the source gave its resources are kept (a POSTed resource with an id is
 * stored under it), urn:uuid references are rewritten to Type/id. NDJSON lines
 * are grouped into collection Bundles of --batch resources (default 1000), one
 * Bundle each. Every Bundle is atomic (a savepoint); a Bundle that fails is rolled
 * back alone and named on standard error, the rest goes on. Bundles share commits
 * (group commit) of about --batch resources when it is given, else growing with the
 * import from a fifth of fhir.import_commit (default 5000) up to it (due_commit); the
 * summary counts only what committed.
 *
 * Three kinds of thread share the work. A reader thread reads the files and cuts
 * them into units (a Bundle file, or --batch lines of NDJSON); --workers threads
 * (default: the CPUs the process may use, at most IMPORT_MAX_WORKERS) each take the
 * oldest unit nobody has taken and prepare it: parse and check it against the model,
 * fix ids and references, compute every resource's search-index rows and serialize
 * the text a new resource's first version is stored as (hv__bundle_precompute), so that
 * the writer (the command's thread) only inserts,
 * in the files' order, whichever worker finished first. With two workers or more, the
 * first to start builds the tables preparing reads (warm_tables) before taking a unit.
 * Units wait in one bounded queue (2 x workers + 1); the trees the writer is done with
 * go back to the workers to be freed, off the writer's path.
 *
 * On a terminal, standard error shows a progress bar (bytes read, resources/s,
 * ETA); at the end a summary line is printed on standard output:
 *   imported 3495 resources from 13 files in 1.23 s (2841 resources/s), 0 failed
 * The exit status is 1 when any file or Bundle failed.
 */
#include "config.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fhir/rest_int.h"
#include "fhir/search_int.h"
#include "terminology/ucum.h"

#define IMPORT_MAX_FILE ((size_t)2 << 30)
#define IMPORT_MAX_WORKERS 16
/* The WAL's size in pages at which an import's commit checkpoints (1 GiB of 4 KiB pages). */
#define IMPORT_WAL_PAGES "262144"

/* What a unit's text is. */
enum { U_JSON = 1, U_XML, U_NDJSON };
/* Where a unit is: cut by the reader, taken by a worker, ready for the writer. */
enum { S_RAW = 0, S_BUSY, S_READY };

/* One Bundle to store: the text the reader cut (owned; freed once parsed), the
 * tree or prepared job a worker made of it, where it came from, and the bytes of
 * input it finishes (for the progress bar). */
typedef struct unit {
    int kind, state;
    char *text;
    size_t len;
    size_t first_line;          /* U_NDJSON: the file's line number of text's first line */
    char path[512];             /* the file */
    struct json_object *bundle; /* NULL once prepared into bj (or unreadable) */
    hv__bundle_job_t *bj;       /* the prepared job (worker), or NULL */
    int prep_rc;                /* HV_OK, or why the Bundle could not be prepared (prep_msg) */
    char prep_msg[600];
    char origin[600];
    uint64_t bytes;
    struct unit *next;
} unit_t;

/* The queue from the reader through the workers to the writer (the command's
 * thread), in the files' order, and the jobs the writer hands back to be freed. */
typedef struct uq {
    uv_mutex_t lock;
    uv_cond_t cond;
    unit_t *head, *tail;
    size_t n, cap;
    int done;                 /* the reader has pushed everything */
    int closed;               /* the writer is done: workers leave */
    int warm;                 /* a worker has taken the shared tables' first use (warm_tables) */
    uint64_t failed;          /* files, lines and Bundles the reader and workers could not parse */
    hv__bundle_job_t **garbage;
    size_t ngarbage, garbage_cap;
} uq_t;

typedef struct imp {
    hv_db_t *db;
    hv_fhir_parse_opts_t parse;
    uint64_t total_bytes, done_bytes;
    uint64_t resources, failed;
    uint64_t t0;
    int tty;
    uint64_t last_draw;
    int in_tx;                /* a transaction is open */
    uint64_t committed;       /* resources durable so far */
    uint64_t commit_every;    /* resources per commit: the most, when commit_grow */
    int commit_grow;          /* commits grow with the import (due_commit) */
    uint64_t commits;         /* commits made (reported with report_ahead) */
    uq_t q;
    char **files;
    int nfiles;
    size_t batch;
    int workers;
    int precompute;           /* the reader prepares the jobs and computes their index rows */
    int report_ahead;         /* HOLOVITALS_IMPORT_PRECOMPUTE=1: say how many Bundles were computed ahead */
    int warmed;               /* warm_tables ran (reported with report_ahead) */
    int ucum_read;            /* the reader loaded the UCUM table (reader_main; reported likewise) */
    uint64_t units, ahead;    /* Bundles the writer ran; of them, with ids, references and rows done ahead */
    /* The open transaction's Bundles that ran bare (without a savepoint), kept until its
     * commit so that they can run again if a later bare one fails (run_bundle). */
    hv__bundle_job_t **bare;
    size_t nbare, bare_cap;
    int guarded;              /* the open transaction runs every further Bundle in a savepoint */
    int deferred;             /* the store's search indexes are dropped until the end (defer_indexes) */
    int deferred_ids;         /* of them, the writer's (type, id ...) indexes (WRITER_INDEXES) */
    /* While deferred: an open-addressed set of the (type, id) hashes of the resources the
     * writer ran, 0 marking a free slot (ids_seen). */
    uint64_t *ids;
    size_t nids, ids_cap;
    int built_early;          /* deferred indexes built before the import's end: 1 the writer's, 2 all (reported) */
    int outside;              /* the Bundles are written in rollback-journal mode (leave_wal at the start) */
} imp_t;

/* ---- Search indexes deferred while importing into an empty store (SQLite) ----
 *
 * Every search-index row costs three B-tree inserts: its table, the (type, id, code)
 * index the writer uses to replace a resource's rows, and the value index searches
 * use, into which rows arrive in random order. Into an empty store both kinds of index
 * of the search tables are dropped for the import and built once at its end by CREATE
 * INDEX, which sorts (with PRAGMA threads helpers) and appends instead of seeking per
 * row. The dropped indexes' definitions are kept in table import_deferred
 * (fhir/store.c) in the same transaction as the DROP, and restored with its rows
 * deleted in one transaction (hv__import_restore_indexes), by the import at its end,
 * before any Bundle that needs them (run_bundle: one that searches the store, or one
 * that writes a resource this import stored already), and at every opening of the
 * store (hv__store_tune), so a store whose import was killed gets its indexes back at
 * the next start. Without them the store answers the same, only more slowly (searches
 * and the replacement of a resource's rows scan).
 *
 * Why the (type, id ...) indexes too: the ids are random (UUIDs), so each of those
 * indexes took one random leaf page per resource, and a commit writes every page it
 * changed to the WAL; at 30,000 resources they were about a quarter of the import's
 * writes (docs/performance.md, session 15). A first version of a resource needs none
 * of them: its combined rows come from the rows in hand (fhir/search_combo.c), and only
 * replacing a stored version's rows (DELETE ... WHERE type = $1 AND id = $2) seeks them.
 * Into a store that was empty, only a resource this import wrote can be stored, so the
 * writer keeps the hashes of the (type, id) pairs it ran (ids_seen) and restores the
 * indexes before the first Bundle that names one again.
 *
 * The import itself (not a Bulk sync, whose reconciliation reads refs by (type, id):
 * adapters/ehr) defers also refs' two indexes and resources_trid and resources_dead: a
 * first version's write reads none of them, and refs_id took a random leaf per resource
 * too. Deferring them cut the writer's Bundle-phase instructions by 15% (docs/performance.md,
 * session 19, s19-wr). refs_id and resources_dead, led by (type, id, are among the
 * writer's own; resources_tiv stays, unique and read for each resource's current version. */

/* The deferred indexes: every index of the search tables. */
#define DEFER_WHERE "type = 'index' AND sql IS NOT NULL AND tbl_name LIKE 'sp\\_%' ESCAPE '\\'"
/* The import's (defer_indexes): also refs' indexes, resources_trid and resources_dead. */
#define IMPORT_DEFER_WHERE \
    "type = 'index' AND sql IS NOT NULL AND (tbl_name LIKE 'sp\\_%' ESCAPE '\\'" \
    " OR tbl_name = 'refs' OR name IN ('resources_trid', 'resources_dead'))"
/* The same on PostgreSQL, over pg_indexes: the store's schema (the connection's search_path),
 * and not an index behind a constraint (sp_text's primary key is unique; none of the others). */
#define IMPORT_DEFER_WHERE_PG \
    "schemaname = current_schema() AND indexdef NOT LIKE 'CREATE UNIQUE %' AND (tablename LIKE 'sp\\_%' ESCAPE '\\'" \
    " OR tablename = 'refs' OR indexname IN ('resources_trid', 'resources_dead'))"
/* The input an import into PostgreSQL defers its indexes for, at least (defer_indexes). */
#define IMPORT_DEFER_MIN_BYTES_PG (1024 * 1024)
/* Of them, the writer's own, led by (type, id): a filter of import_deferred's rows. */
#define WRITER_INDEXES " WHERE sql LIKE '%(type, id%'"
/* The names of the rows of query q (one text column), at most cap; sets *n. */
static int names_of(hv_db_t *db, const char *q, char (*names)[128], size_t cap, size_t *n)
{
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, q, &st);
    *n = 0;
    if (rc != HV_OK)
        return rc;
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t len = 0;
        const char *v = hv_db_column_text(st, 0, &len);
        if (*n >= cap || v == NULL || len >= 128) {
            rc = HV_ETOOBIG;
            break;
        }
        memcpy(names[*n], v, len);
        names[(*n)++][len] = '\0';
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

#define DEFER_MAX 64 /* indexes; the schema has about twenty */

/* The page cache while the deferred indexes are built, in KiB (SQLite's default). SQLite's
 * sorter cuts its input into sorted runs of cache_size bytes, each sorted and written by a
 * PRAGMA threads helper while the building thread reads on, and merges them; with the
 * store's 64 MiB cache (fhir.cache_size) most of an index's keys made one run, sorted on
 * the writer's thread alone while the workers' cores were idle. Runs of 2 MB halved the
 * build at 100k (docs/performance.md, session 16), for the price of the runs' temporary
 * files (temp_store=FILE). */
#define BUILD_CACHE_KIB 2000

/* The connection's PRAGMA cache_size (pages if positive, -KiB if negative) into *out. */
static int cache_size_of(hv_db_t *db, int64_t *out)
{
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "PRAGMA cache_size", &st);
    if (rc != HV_OK)
        return rc;
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW)
        *out = hv_db_column_int64(st, 0);
    hv_db_done(st);
    return rc == HV_DB_ROW ? HV_OK : rc < 0 ? rc : HV_EDB;
}

/* Builds deferred index name from the definition kept in import_deferred (SQLite's own, or
 * pg_indexes'), unless it exists again (a restore that raced this one). */
static int build_deferred(hv_db_t *db, const char *name)
{
    int pg = hv_db_kind(db) == HV_DB_PG, exists = 0, rc;
    char *ddl = NULL;
    hv_db_stmt_t *st = NULL;
    rc = hv_db_prepare(db,
                       pg ? "SELECT d.sql, (SELECT count(*) FROM pg_indexes m WHERE m.schemaname = current_schema()"
                            " AND m.indexname = d.name) FROM import_deferred d WHERE d.name = $1"
                          : "SELECT d.sql, (SELECT count(*) FROM sqlite_master m WHERE m.type = 'index' AND m.name = d.name)"
                            " FROM import_deferred d WHERE d.name = $1",
                       &st);
    if (rc != HV_OK)
        return rc;
    hv_db_bind_text(st, 1, name, strlen(name));
    if ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t len = 0;
        const char *v = hv_db_column_text(st, 0, &len);
        exists = hv_db_column_int64(st, 1) > 0;
        ddl = v != NULL ? hv_strndup(v, len) : NULL;
        rc = v != NULL && ddl == NULL ? HV_ENOMEM : HV_OK;
    }
    hv_db_done(st);
    if (rc < 0)
        return rc;
    rc = ddl != NULL && !exists ? hv_db_exec(db, ddl) : HV_OK;
    hv_free(ddl);
    return rc;
}

/* Builds the deferred indexes of import_deferred's rows matching where ("" for all)
 * and deletes those rows, in one transaction: its own, or the caller's (own_tx 0: a
 * storage job's, which must not begin or commit). */
static int restore_indexes(hv_db_t *db, const char *where, int own_tx)
{
    char q[160];
    char(*names)[128] = NULL;
    size_t n = 0;
    int rc, in_tx = 0, cache_set = 0;
    int64_t cache = 0;
    int pg = hv_db_kind(db) == HV_DB_PG;
    names = hv_malloc(DEFER_MAX * sizeof(*names));
    if (names == NULL)
        return HV_ENOMEM;
    snprintf(q, sizeof(q), "SELECT name FROM import_deferred%s", where);
    rc = names_of(db, q, names, DEFER_MAX, &n);
    if (rc != HV_OK || n == 0)
        goto out;
    if (!pg) {
        /* CREATE INDEX sorts with helper threads when allowed (sqlite.org/pragma.html#pragma_threads). */
        unsigned par = uv_available_parallelism();
        char sql[48];
        snprintf(sql, sizeof(sql), "PRAGMA threads=%u", par > 4 ? 4 : par);
        (void)hv_db_exec(db, sql);
        /* Sorted runs of BUILD_CACHE_KIB for the sorter's helpers; the cache is restored at out. */
        if (cache_size_of(db, &cache) == HV_OK) {
            snprintf(sql, sizeof(sql), "PRAGMA cache_size=-%d", BUILD_CACHE_KIB);
            cache_set = hv_db_exec(db, sql) == HV_OK;
        }
    }
    rc = own_tx ? hv_db_begin(db) : HV_OK;
    in_tx = own_tx && rc == HV_OK;
    /* PostgreSQL sorts an index's keys in maintenance_work_mem (64 MB by default) and
     * spills the rest to temporary files; for this transaction only. */
    if (rc == HV_OK && pg)
        rc = hv_db_exec(db, "SET LOCAL maintenance_work_mem = '256MB'");
    for (size_t i = 0; i < n && rc == HV_OK; i++)
        rc = build_deferred(db, names[i]);
    if (rc == HV_OK) {
        snprintf(q, sizeof(q), "DELETE FROM import_deferred%s", where);
        rc = hv_db_exec(db, q);
    }
    if (rc == HV_OK && in_tx) {
        in_tx = 0;
        rc = hv_db_commit(db);
    }
out:
    if (in_tx)
        hv_db_rollback(db);
    if (cache_set) {
        char sql[48];
        snprintf(sql, sizeof(sql), "PRAGMA cache_size=%lld", (long long)cache);
        (void)hv_db_exec(db, sql);
    }
    hv_free(names);
    return rc;
}

int hv__import_restore_indexes(hv_db_t *db)
{
    return restore_indexes(db, "", 1);
}

/* ---- PostgreSQL: the deferred indexes built on several connections at once ----
 *
 * One CREATE INDEX leaves part of the machine idle (its parallel workers only scan; the
 * leader merges and writes alone), so the end of an import into PostgreSQL, building its
 * ~30 indexes one after the other, took ~11 s of a 27 s import of 100,000 resources on two
 * cores. Here the import's connection and up to PG_BUILD_CONNS - 1 more (one per core)
 * take the indexes largest table first (import_deferred keeps each index's definition,
 * which names its table), each in a transaction of its own with its import_deferred row:
 * a kill leaves the ones not yet committed to the store's next opening (hv__store_tune), as
 * before. Two CREATE INDEX on one table take compatible locks (SHARE). The import ran 0.89×
 * the time on two connections (docs/performance.md, session 26); three were no faster than
 * two on two cores. */

#define PG_BUILD_CONNS 4

typedef struct pg_build {
    uv_mutex_t lock;
    char (*names)[128];
    size_t n, next;
    int rc;             /* the first failure */
    char err[512];      /* its message */
    const char *url, *data_dir;
} pg_build_t;

/* Builds one deferred index and deletes its row, in one transaction on db. */
static int pg_build_one(hv_db_t *db, const char *name)
{
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_begin(db);
    if (rc != HV_OK)
        return rc;
    rc = hv_db_exec(db, "SET LOCAL maintenance_work_mem = '256MB'");
    if (rc == HV_OK)
        rc = build_deferred(db, name);
    if (rc == HV_OK)
        rc = hv_db_prepare(db, "DELETE FROM import_deferred WHERE name = $1", &st);
    if (rc == HV_OK) {
        hv_db_bind_text(st, 1, name, strlen(name));
        rc = hv_db_step(st);
        hv_db_done(st);
    }
    if (rc == HV_OK)
        return hv_db_commit(db);
    hv_db_rollback(db);
    return rc;
}

/* Takes the next index until none is left or a connection failed. */
static void pg_build_loop(pg_build_t *b, hv_db_t *db)
{
    for (;;) {
        const char *name = NULL;
        int rc;
        uv_mutex_lock(&b->lock);
        if (b->rc == HV_OK && b->next < b->n)
            name = b->names[b->next++];
        uv_mutex_unlock(&b->lock);
        if (name == NULL)
            return;
        rc = pg_build_one(db, name);
        if (rc != HV_OK) {
            uv_mutex_lock(&b->lock);
            if (b->rc == HV_OK) {
                b->rc = rc;
                snprintf(b->err, sizeof(b->err), "%s", hv_db_errmsg(db) ? hv_db_errmsg(db) : hv_strerror(rc));
            }
            uv_mutex_unlock(&b->lock);
            return;
        }
    }
}

static void pg_build_thread(void *arg)
{
    pg_build_t *b = arg;
    hv_db_t *db = NULL;
    hv_error_t err = {0};
    if (hv_db_open(b->url, b->data_dir, "fhir", &db, &err) != HV_OK) {
        /* The other connections build them all: this one adds nothing. */
        return;
    }
    pg_build_loop(b, db);
    hv_db_close(db);
}

/* The import's end on PostgreSQL; db is the import's connection. Returns HV_OK or the
 * first failure, with its message in why. */
static int restore_indexes_pg(hv_db_t *db, const char *url, const char *data_dir, char *why, size_t whylen)
{
    pg_build_t b;
    uv_thread_t threads[PG_BUILD_CONNS - 1];
    size_t nthreads = 0;
    unsigned par = uv_available_parallelism();
    int rc;
    memset(&b, 0, sizeof(b));
    b.names = hv_malloc(DEFER_MAX * sizeof(*b.names));
    if (b.names == NULL)
        return HV_ENOMEM;
    rc = names_of(db,
                  "SELECT name FROM import_deferred ORDER BY pg_relation_size(to_regclass(substring(sql FROM"
                  " ' ON ([^ ]+) USING '))) DESC NULLS LAST, name",
                  b.names, DEFER_MAX, &b.n);
    if (rc != HV_OK)
        snprintf(why, whylen, "%s", hv_db_errmsg(db) ? hv_db_errmsg(db) : hv_strerror(rc));
    if (rc != HV_OK || b.n == 0) {
        hv_free(b.names);
        return rc;
    }
    if (uv_mutex_init(&b.lock) != 0) { /* one connection, one transaction, as elsewhere */
        hv_free(b.names);
        return hv__import_restore_indexes(db);
    }
    b.url = url;
    b.data_dir = data_dir;
    for (size_t i = 0; i + 1 < PG_BUILD_CONNS && i + 1 < par && i + 1 < b.n; i++)
        if (uv_thread_create(&threads[nthreads], pg_build_thread, &b) == 0)
            nthreads++;
    pg_build_loop(&b, db);
    for (size_t i = 0; i < nthreads; i++)
        uv_thread_join(&threads[i]);
    /* A connection that failed to open left its share to the others; one that failed
     * stopped all: what is left stays deferred, for the next opening. */
    rc = b.rc;
    if (rc != HV_OK)
        snprintf(why, whylen, "%s", b.err);
    uv_mutex_destroy(&b.lock);
    hv_free(b.names);
    return rc;
}

int hv__import_restore_indexes_job(hv_db_t *db)
{
    return restore_indexes(db, "", 0);
}

int hv__import_restore_writer_indexes_job(hv_db_t *db)
{
    return restore_indexes(db, WRITER_INDEXES, 0);
}

/* ---- The import outside the WAL ----
 *
 * In WAL mode every page a commit changes goes to the WAL, and a checkpoint copies it again
 * into the database file: at 100,000 resources the Bundles' tables (~190 MB of the 737 MB
 * store) when the import's end leaves WAL, and before session 16 the deferred indexes' ~550 MB
 * too (docs/performance.md, sessions 16 and 17). Rollback-journal mode journals only the
 * pages that existed before the transaction, and writes every page once into the database
 * file; the pages appended past the file's end — most of an import into an empty store: the
 * tables' rows arrive in rowid order, the deferred indexes are built by appending — are not
 * journaled at all, and a rollback truncates the file back to its size. So an import that
 * holds the store alone leaves WAL at its start (journal_mode=DELETE), writes its Bundles,
 * builds the deferred indexes and runs ANALYZE in that mode, and returns to WAL at its end.
 *
 * The price is the commit: with synchronous=FULL a rollback commit syncs the journal twice,
 * the database file once, and deletes the journal (four syncs and an unlink against the WAL's
 * one sync), which the import's large commits (due_commit) amortize: at 100k, 26 commits,
 * ~1 s more syncing against the ~1.5 s checkpoint and 15% of the bytes written saved. The
 * commit interval stays as in WAL mode: commits of 10,000 wrote 8% less for more CPU and
 * memory (docs/performance.md, session 17).
 *
 * Leaving WAL needs the database alone: SQLite checkpoints the whole WAL, deletes it and
 * switches only under an exclusive lock, taken without waiting; with any other connection
 * open (an engine serving the store without its read cache, a reader) the pragma fails and
 * the import stays in WAL mode, as before, and tries again before the build at its end. A
 * connection that sets WAL during the import moves the store back to WAL (hv_db_open does,
 * if it gets the lock between two of the import's transactions: a store being imported into
 * refuses other writers in either mode, "database is locked"); the import's connection
 * follows, SQLite reading the mode from the file's header, and the end reports it.
 *
 * Crash safety: a commit is durable when COMMIT returns, as in WAL mode (the journal is
 * deleted only once the database file is synced). A kill during a transaction — a commit of
 * Bundles or the build — leaves a hot journal, which the next connection rolls back (the
 * transaction's Bundles, or the indexes and the deletion of import_deferred's rows);
 * hv_db_open switches the store back to WAL and hv__store_tune builds the deferred indexes,
 * as after a kill in WAL mode. */

/* The journal mode a PRAGMA journal_mode statement answers, into mode (cap bytes). */
static int journal_mode(hv_db_t *db, const char *sql, char *mode, size_t cap)
{
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, sql, &st);
    mode[0] = '\0';
    if (rc != HV_OK)
        return rc;
    if ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t len = 0;
        const char *v = hv_db_column_text(st, 0, &len);
        snprintf(mode, cap, "%.*s", v != NULL ? (int)len : 0, v != NULL ? v : "");
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/* Leaves WAL mode for the rollback journal (see above); returns 1 when it did or the store
 * is in that mode already, 0 when it stays in WAL mode (another connection is open, or not
 * SQLite). */
static int leave_wal(hv_db_t *db)
{
    char mode[16];
    if (hv_db_kind(db) != HV_DB_SQLITE)
        return 0;
    return journal_mode(db, "PRAGMA journal_mode=DELETE", mode, sizeof(mode)) == HV_OK && strcmp(mode, "delete") == 0;
}

/* Returns to WAL mode after leave_wal. A failure leaves the store in rollback mode until
 * its next opening (hv_db_open sets WAL): it answers the same. */
static void back_to_wal(hv_db_t *db)
{
    char mode[16];
    if (journal_mode(db, "PRAGMA journal_mode=WAL", mode, sizeof(mode)) != HV_OK || strcmp(mode, "wal") != 0)
        fprintf(stderr, "holovitals import: returning the store to WAL mode failed: %s\n",
                hv_db_errmsg(db) ? hv_db_errmsg(db) : mode);
}

/* ---- Larger pages for a new store ----
 *
 * A store the import creates gets pages of IMPORT_PAGE_SIZE bytes instead of SQLite's 4 KiB.
 * An import into an empty store writes ~740 MB at 100,000 resources in pages: each one a
 * write system call and a page-cache copy when its commit writes it, each read back by a
 * system call during the deferred indexes' build (whose 2 MB page cache holds none of the
 * tables), each allocation an entry in the auto_vacuum pointer map, and each B-tree split a
 * balance. With 16 KiB pages the import makes a quarter of those calls: at 100k its system
 * time fell by ~40% and its CPU by 3-14% (docs/performance.md, session 18). The price is paid
 * later, by a server writing into the store: a create changes as many pages as before, each
 * four times larger in the WAL (bytes written per create 2.1x in that measurement).
 *
 * The page size of a SQLite database is fixed once its first page is written, and opening a
 * store (hv_db_open) writes it when it sets WAL mode; outside WAL (leave_wal) VACUUM rebuilds
 * a database with a new page size (sqlite.org/pragma.html#pragma_page_size). The import does
 * that only while the store holds no resource — VACUUM copies the schema and nothing else —
 * and only when it holds the store alone (leave_wal succeeded); a failure leaves the store
 * as it was, with its 4 KiB pages (VACUUM is one transaction), and the import goes on. */
#define IMPORT_PAGE_SIZE 16384

/* The connection's PRAGMA page_size, or 0. */
static int64_t page_size_of(hv_db_t *db)
{
    hv_db_stmt_t *st = NULL;
    int64_t size = 0;
    if (hv_db_prepare(db, "PRAGMA page_size", &st) != HV_OK)
        return 0;
    if (hv_db_step(st) == HV_DB_ROW)
        size = hv_db_column_int64(st, 0);
    hv_db_done(st);
    return size;
}

/* Gives an empty store outside WAL pages of IMPORT_PAGE_SIZE (see above). */
static void larger_pages(hv_db_t *db)
{
    char any[1][128], sql[48];
    size_t n = 1;
    int64_t cache = 0;
    if (hv_db_kind(db) != HV_DB_SQLITE || page_size_of(db) >= IMPORT_PAGE_SIZE)
        return;
    if (names_of(db, "SELECT 'x' FROM resources LIMIT 1", any, 1, &n) != HV_OK || n > 0 ||
        cache_size_of(db, &cache) != HV_OK)
        return;
    snprintf(sql, sizeof(sql), "PRAGMA page_size=%d", IMPORT_PAGE_SIZE);
    if (hv_db_exec(db, sql) != HV_OK || hv_db_exec(db, "VACUUM") != HV_OK)
        fprintf(stderr, "holovitals import: could not enlarge the new store's pages (%s); importing with %lld bytes\n",
                hv_db_errmsg(db) ? hv_db_errmsg(db) : "", (long long)page_size_of(db));
    /* SQLite gives the page cache of the new page size as many pages as the old one held
     * (a cache_size in KiB counted in 4 KiB pages): 256 MiB for the store's 64 MiB, which
     * the import then filled (+190 MB resident at 100k). Set again, the KiB count holds. */
    snprintf(sql, sizeof(sql), "PRAGMA cache_size=%lld", (long long)cache);
    (void)hv_db_exec(db, sql);
}

/* In the caller's transaction: drops the search indexes of sqlite_master's rows matching
 * which (PostgreSQL: of pg_indexes' rows matching which_pg; NULL: none) if the store is
 * empty and none are deferred already, recording them in import_deferred; *deferred says
 * whether it did. */
static int drop_indexes(hv_db_t *db, const char *which, const char *which_pg, int *deferred)
{
    char q[512];
    char(*names)[128] = NULL;
    size_t n = 0, any = 0;
    int rc, pg = hv_db_kind(db) == HV_DB_PG;
    *deferred = 0;
    if (pg && which_pg == NULL)
        return HV_OK;
    names = hv_malloc(DEFER_MAX * sizeof(*names));
    if (names == NULL)
        return HV_ENOMEM;
    rc = names_of(db, "SELECT 'x' FROM resources LIMIT 1", names, 1, &any);
    if (rc == HV_OK && any == 0)
        rc = names_of(db, "SELECT name FROM import_deferred LIMIT 1", names, 1, &any);
    if (rc != HV_OK || any > 0)
        goto out;
    snprintf(q, sizeof(q), "INSERT INTO import_deferred (name, sql) SELECT %s WHERE %s",
             pg ? "indexname, indexdef FROM pg_indexes" : "name, sql FROM sqlite_master", pg ? which_pg : which);
    rc = hv_db_exec(db, q);
    if (rc == HV_OK)
        rc = names_of(db, "SELECT name FROM import_deferred", names, DEFER_MAX, &n);
    for (size_t i = 0; i < n && rc == HV_OK; i++) {
        char sql[160];
        /* Index names come from the schema: letters, digits and underscores only. */
        if (strspn(names[i], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != strlen(names[i])) {
            rc = HV_EINVAL;
            break;
        }
        snprintf(sql, sizeof(sql), "DROP INDEX \"%s\"", names[i]);
        rc = hv_db_exec(db, sql);
    }
    if (rc == HV_OK)
        *deferred = n > 0;
out:
    hv_free(names);
    return rc;
}

int hv__import_defer_indexes_job(hv_db_t *db, int *deferred)
{
    return drop_indexes(db, DEFER_WHERE, NULL, deferred); /* PostgreSQL: a sync defers nothing */
}

/* Drops the search indexes if the store is empty and none are deferred already; sets
 * im->deferred and im->deferred_ids. HOLOVITALS_IMPORT_DEFER_INDEXES=0 keeps them (tests
 * compare both). */
static int defer_indexes(imp_t *im)
{
    char names[1][128];
    size_t any = 0;
    int rc, deferred = 0;
    const char *env = getenv("HOLOVITALS_IMPORT_DEFER_INDEXES");
    if (env != NULL && strcmp(env, "0") == 0)
        return HV_OK;
    /* PostgreSQL drops and builds its indexes in tens of milliseconds each whatever the rows:
     * for a small import that is more than inserting into them (one Synthea Bundle, 341 KB:
     * 0.53 s kept against 0.75 s deferred; three, 3.8 MB: 2.01 against 1.34 s). */
    if (hv_db_kind(im->db) == HV_DB_PG && im->total_bytes < IMPORT_DEFER_MIN_BYTES_PG)
        return HV_OK;
    rc = hv_db_begin(im->db);
    if (rc != HV_OK)
        return rc;
    rc = drop_indexes(im->db, IMPORT_DEFER_WHERE, IMPORT_DEFER_WHERE_PG, &deferred);
    if (rc != HV_OK) {
        hv_db_rollback(im->db);
        return rc;
    }
    rc = hv_db_commit(im->db);
    if (rc == HV_OK)
        im->deferred = deferred;
    if (rc == HV_OK && names_of(im->db, "SELECT name FROM import_deferred" WRITER_INDEXES " LIMIT 1", names, 1,
                                &any) == HV_OK)
        im->deferred_ids = any > 0;
    return rc;
}

/* Reader side: hands one unit over (text owned by the unit from now on), waiting
 * while the queue is full. */
static void push(imp_t *im, int kind, char *text, size_t len, size_t first_line, const char *path,
                 const char *origin, uint64_t bytes)
{
    unit_t *u = hv_calloc(1, sizeof(*u));
    if (u == NULL) {
        hv_free(text);
        uv_mutex_lock(&im->q.lock);
        im->q.failed++;
        uv_mutex_unlock(&im->q.lock);
        return;
    }
    u->kind = kind;
    u->text = text;
    u->len = len;
    u->first_line = first_line;
    u->bytes = bytes;
    u->state = S_RAW;
    snprintf(u->path, sizeof(u->path), "%s", path);
    snprintf(u->origin, sizeof(u->origin), "%s", origin);
    uv_mutex_lock(&im->q.lock);
    while (im->q.n >= im->q.cap && !im->q.closed)
        uv_cond_wait(&im->q.cond, &im->q.lock);
    if (im->q.closed) {
        /* Nobody will write it: the store could not be opened. */
        uv_mutex_unlock(&im->q.lock);
        hv_free(text);
        hv_free(u);
        return;
    }
    if (im->q.tail != NULL)
        im->q.tail->next = u;
    else
        im->q.head = u;
    im->q.tail = u;
    im->q.n++;
    uv_cond_broadcast(&im->q.cond);
    uv_mutex_unlock(&im->q.lock);
}

static void reader_failed(imp_t *im)
{
    uv_mutex_lock(&im->q.lock);
    im->q.failed++;
    uv_mutex_unlock(&im->q.lock);
}

/* Hands a job the writer is done with to the workers to free; frees it here when
 * the list cannot grow. */
static void discard(imp_t *im, hv__bundle_job_t *bj)
{
    int kept = 0;
    if (bj == NULL)
        return;
    uv_mutex_lock(&im->q.lock);
    if (im->q.ngarbage == im->q.garbage_cap && !im->q.closed) {
        size_t cap = im->q.garbage_cap ? im->q.garbage_cap * 2 : 64;
        hv__bundle_job_t **g = hv_realloc(im->q.garbage, cap * sizeof(*g));
        if (g != NULL) {
            im->q.garbage = g;
            im->q.garbage_cap = cap;
        }
    }
    if (im->q.ngarbage < im->q.garbage_cap && !im->q.closed) {
        im->q.garbage[im->q.ngarbage++] = bj;
        kept = 1;
        uv_cond_broadcast(&im->q.cond);
    }
    uv_mutex_unlock(&im->q.lock);
    if (!kept)
        hv__bundle_job_free(bj);
}

static struct json_object *new_collection(void)
{
    struct json_object *b = json_object_new_object();
    hv_json_set_str(b, "resourceType", "Bundle");
    hv_json_set_str(b, "type", "collection");
    hv_json_set(b, "entry", json_object_new_array());
    return b;
}

/* Worker: parses an NDJSON unit's lines into one collection Bundle; a line that
 * does not parse is named with its file's line number and left out. */
static struct json_object *parse_ndjson(imp_t *im, unit_t *u)
{
    struct json_object *bundle = NULL, *entries = NULL;
    size_t line = u->first_line - 1, pos = 0;
    const char *text = u->text;
    while (pos < u->len) {
        const char *nl = memchr(text + pos, '\n', u->len - pos);
        size_t end = nl != NULL ? (size_t)(nl - text) : u->len, n = end - pos;
        struct json_object *res = NULL;
        hv_error_t err;
        line++;
        while (n > 0 && (text[pos + n - 1] == '\r' || text[pos + n - 1] == ' '))
            n--;
        if (n > 0) {
            hv_error_clear(&err);
            if (hv_fhir_json_parse(text + pos, n, &im->parse, &res, &err) != HV_OK) {
                fprintf(stderr, "\nholovitals import: %s:%zu: %s (at %s)\n", u->path, line, err.message, err.location);
                reader_failed(im);
            } else {
                struct json_object *ent = json_object_new_object();
                if (bundle == NULL) {
                    bundle = new_collection();
                    json_object_object_get_ex(bundle, "entry", &entries);
                }
                hv_json_set(ent, "resource", res);
                json_object_array_add(entries, ent);
            }
        }
        pos = end + 1;
    }
    return bundle;
}

/* Worker: parses a JSON or XML document; a resource that is not a Bundle becomes a
 * collection of one. NULL (named on standard error) when it does not parse. */
static struct json_object *parse_document(imp_t *im, unit_t *u)
{
    struct json_object *res = NULL;
    hv_error_t err;
    int rc;
    hv_error_clear(&err);
    if (u->kind == U_XML)
        rc = hv_fhir_xml_parse(u->text, u->len, &im->parse, &res, &err);
    else
        rc = hv_fhir_json_parse(u->text, u->len, &im->parse, &res, &err);
    if (rc != HV_OK) {
        if (err.line > 0)
            fprintf(stderr, "\nholovitals import: %s:%d:%d: %s%s%s\n", u->path, err.line, err.column, err.message,
                    err.location[0] ? " at " : "", err.location);
        else /* a rule of FHIR's JSON or XML found after the parse: a place, not a position */
            fprintf(stderr, "\nholovitals import: %s: %s%s%s\n", u->path, err.location, err.location[0] ? ": " : "",
                    err.message);
        reader_failed(im);
        return NULL;
    }
    if (u->kind == U_JSON) {
        const char *rt = hv_json_get_str(res, "resourceType");
        if (rt == NULL || strcmp(rt, "Bundle") != 0) {
            struct json_object *b = new_collection(), *entries = NULL, *ent = json_object_new_object();
            json_object_object_get_ex(b, "entry", &entries);
            hv_json_set(ent, "resource", res);
            json_object_array_add(entries, ent);
            res = b;
        }
    }
    return res;
}

/* Worker: makes a unit ready for the writer. Preparing (and, where safe, fixing
 * ids, rewriting references and computing the index rows: hv__bundle_precompute)
 * needs no database, so it runs here; each worker has its own trees, and the
 * model, FHIRPath and search-parameter tables they read are built once
 * (pthread_once) and read-only after. */
static void prepare(imp_t *im, unit_t *u)
{
    struct json_object *bundle = u->kind == U_NDJSON ? parse_ndjson(im, u) : parse_document(im, u);
    hv_free(u->text);
    u->text = NULL;
    u->bundle = bundle;
    if (bundle != NULL && im->precompute) {
        int status = 0;
        u->bundle = NULL;
        u->prep_rc = hv__bundle_prepare(bundle, 1, NULL, &u->bj, &status, u->prep_msg, sizeof(u->prep_msg));
        if (u->prep_rc == HV_OK)
            (void)hv__bundle_precompute(u->bj);
    }
}

/*
 * Worker: builds the process-wide tables that preparing a unit reads and builds on
 * first use (pthread_once), by parsing and indexing one small resource: the model's
 * index (the parse), every search parameter's compiled FHIRPath (compile_all in
 * fhir/search_index.c) and the UCUM table (the quantity's canonical form, read from
 * ucum-essence.xml). Why: that first use cost ~45 M of the ~84 M instructions the
 * first unit of a 92-resource Bundle took, on the worker preparing it, while the
 * writer waited for that unit. Done by a second worker at the start, it overlaps the
 * first unit's parse instead of following it. A failure changes nothing: the
 * preparation builds whatever is missing itself.
 */
static void warm_tables(imp_t *im)
{
    static const char sample[] =
        "{\"resourceType\":\"Observation\",\"id\":\"warm\",\"status\":\"final\","
        "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"29463-7\"}]},"
        "\"subject\":{\"reference\":\"Patient/warm\"},\"effectiveDateTime\":\"2020-01-01\","
        "\"valueQuantity\":{\"value\":70,\"unit\":\"kg\",\"system\":\"http://unitsofmeasure.org\",\"code\":\"kg\"}}";
    struct json_object *res = NULL;
    hv__search_rows_t *rows = NULL;
    hv_error_t err;
    hv_error_clear(&err);
    if (hv_fhir_json_parse(sample, sizeof(sample) - 1, &im->parse, &res, &err) != HV_OK)
        return;
    if (hv__search_index_rows("Observation", res, &rows) == HV_OK)
        hv__search_rows_free(rows);
    json_object_put(res);
}

/* A worker thread: prepares the oldest unit nobody has taken, frees what the writer
 * handed back, until the writer closes the queue. With two workers or more, the
 * first to start builds the shared tables first (warm_tables) while the others take
 * the first units. */
static void worker_main(void *arg)
{
    imp_t *im = arg;
    uv_mutex_lock(&im->q.lock);
    if (im->workers > 1 && !im->q.warm && !im->q.closed) {
        im->q.warm = 1;
        uv_mutex_unlock(&im->q.lock);
        warm_tables(im);
        im->warmed = 1;
        uv_mutex_lock(&im->q.lock);
    }
    for (;;) {
        unit_t *u;
        if (im->q.ngarbage > 0) {
            hv__bundle_job_t *bj = im->q.garbage[--im->q.ngarbage];
            uv_mutex_unlock(&im->q.lock);
            hv__bundle_job_free(bj);
            uv_mutex_lock(&im->q.lock);
            continue;
        }
        /* Closed with units left only when the store could not be opened: nobody
         * would write them (drain frees them). */
        if (im->q.closed)
            break;
        for (u = im->q.head; u != NULL && u->state != S_RAW; u = u->next)
            ;
        if (u != NULL) {
            u->state = S_BUSY;
            uv_mutex_unlock(&im->q.lock);
            prepare(im, u);
            uv_mutex_lock(&im->q.lock);
            u->state = S_READY;
            uv_cond_broadcast(&im->q.cond);
            continue;
        }
        uv_cond_wait(&im->q.cond, &im->q.lock);
    }
    uv_mutex_unlock(&im->q.lock);
}

/* Frees the units left in the queue once every thread has left (the store could not
 * be opened; after a whole import the queue is empty). */
static void drain(imp_t *im)
{
    while (im->q.head != NULL) {
        unit_t *u = im->q.head;
        im->q.head = u->next;
        hv_free(u->text);
        if (u->bundle != NULL)
            json_object_put(u->bundle);
        if (u->bj != NULL)
            hv__bundle_job_free(u->bj);
        hv_free(u);
    }
    im->q.tail = NULL;
    im->q.n = 0;
}

/* Writer side: the next unit in order once a worker has made it ready, or NULL once
 * the reader is done and the queue empty. */
static unit_t *pop(imp_t *im)
{
    unit_t *u;
    uv_mutex_lock(&im->q.lock);
    while ((im->q.head == NULL && !im->q.done) || (im->q.head != NULL && im->q.head->state != S_READY))
        uv_cond_wait(&im->q.cond, &im->q.lock);
    u = im->q.head;
    if (u != NULL) {
        im->q.head = u->next;
        if (im->q.head == NULL)
            im->q.tail = NULL;
        im->q.n--;
        uv_cond_broadcast(&im->q.cond);
    }
    uv_mutex_unlock(&im->q.lock);
    return u;
}

/* Frees the Bundles kept for a re-run; the next transaction starts unguarded. */
static void bare_clear(imp_t *im)
{
    for (size_t i = 0; i < im->nbare; i++)
        discard(im, im->bare[i]);
    im->nbare = 0;
    im->guarded = 0;
}

/*
 * Whether the open transaction holds enough resources to commit. With --batch, every
 * --batch resources. Otherwise a commit holds at least a fifth of fhir.import_commit
 * resources and at least a quarter of what the import has committed before it, up to
 * fhir.import_commit: a commit writes every page it changed to the WAL once, and the
 * writer's (type, id ...) indexes take a random leaf per resource each, so what a commit
 * of k resources writes per resource grows with the indexes until k grows with them
 * (1,000-resource commits into a store of 100,000 wrote ~13,000 pages, 54 MB, each).
 * A small import keeps small commits: the transaction's prepared Bundles stay in
 * memory until its commit (for a re-run, bare), which a larger commit costs.
 */
static int due_commit(const imp_t *im)
{
    uint64_t want = im->commit_grow ? hv_batch_grown(im->committed, im->commit_every / 5, im->commit_every)
                                    : im->commit_every;
    return im->resources - im->committed >= want;
}

/* Commits what is pending; the resources counted so far are then durable. */
static int import_commit(imp_t *im)
{
    int rc;
    bare_clear(im);
    if (!im->in_tx)
        return HV_OK;
    im->in_tx = 0;
    rc = hv_db_commit(im->db);
    if (rc != HV_OK) {
        fprintf(stderr, "\nholovitals import: commit failed: %s\n", hv_db_errmsg(im->db));
        hv_db_rollback(im->db);
        im->failed += im->resources - im->committed;
        im->resources = im->committed;
        return rc;
    }
    im->committed = im->resources;
    im->commits++;
    return HV_OK;
}

static void draw(imp_t *im, int final)
{
    uint64_t now = hv_mono_ns();
    double secs, rate, frac;
    int width = 30, filled;
    char bar[64];
    if (!im->tty || (!final && now - im->last_draw < 100000000ull))
        return;
    im->last_draw = now;
    secs = (double)(now - im->t0) / 1e9;
    rate = secs > 0 ? (double)im->resources / secs : 0;
    frac = im->total_bytes > 0 ? (double)im->done_bytes / (double)im->total_bytes : 1;
    if (frac > 1)
        frac = 1;
    filled = (int)(frac * width);
    for (int i = 0; i < width; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r[%s] %3d%%  %llu resources  %.0f/s  ETA %.0fs   ", bar, (int)(frac * 100),
            (unsigned long long)im->resources, rate, frac > 0 && frac < 1 ? secs / frac - secs : 0.0);
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

/* Room for one more bare Bundle. */
static int bare_reserve(imp_t *im)
{
    hv__bundle_job_t **n;
    size_t cap;
    if (im->nbare < im->bare_cap)
        return HV_OK;
    cap = im->bare_cap ? im->bare_cap * 2 : 16;
    n = hv_realloc(im->bare, cap * sizeof(*n));
    if (n == NULL)
        return HV_ENOMEM;
    im->bare = n;
    im->bare_cap = cap;
    return HV_OK;
}

/*
 * A bare Bundle failed: only rolling the whole transaction back undoes it. The
 * Bundles that ran bare before it in this transaction run again, each in a
 * savepoint (a precomputed transaction may run twice: fhir/rest_bundle.c), and the
 * transaction goes on guarded, so that the failing Bundle, which runs next in its
 * savepoint, is undone alone as before. Their resources are counted again.
 */
static int rerun_guarded(imp_t *im)
{
    int rc;
    hv_db_rollback(im->db);
    im->resources = im->committed;
    im->guarded = 1;
    rc = hv_db_begin(im->db);
    im->in_tx = rc == HV_OK;
    for (size_t k = 0; k < im->nbare && rc == HV_OK; k++) {
        hv__bundle_job_t *bj = im->bare[k];
        rc = hv_db_exec(im->db, "SAVEPOINT hv_bundle");
        if (rc != HV_OK)
            break;
        if (hv__bundle_run(im->db, bj) == HV_OK) {
            for (size_t i = 0; i < hv__bundle_op_count(bj); i++)
                if (hv__bundle_op_at(bj, i)->change != HV__CHANGE_NONE)
                    im->resources++;
            rc = hv_db_exec(im->db, "RELEASE SAVEPOINT hv_bundle");
        } else {
            /* It ran before in this same state: cannot happen short of a database error. */
            im->failed++;
            rc = hv_db_exec(im->db, "ROLLBACK TO SAVEPOINT hv_bundle");
            if (rc == HV_OK)
                rc = hv_db_exec(im->db, "RELEASE SAVEPOINT hv_bundle");
        }
    }
    if (rc != HV_OK) {
        fprintf(stderr, "\nholovitals import: re-running a transaction failed: %s\n", hv_db_errmsg(im->db));
        if (im->in_tx)
            hv_db_rollback(im->db);
        im->in_tx = 0;
        im->resources = im->committed;
    }
    /* Kept until the commit: they are part of the open transaction still. */
    return rc;
}

/* The most slots of the set of ids written (8 bytes each: 256 MiB, half full at 16 M
 * resources). An import beyond it builds the deferred indexes then (ids_seen). */
#define IMPORT_MAX_ID_SLOTS ((size_t)1 << 25)

/* hv__fhir_key_hash, never 0 (the set's free slot). */
static uint64_t id_hash(const char *type, const char *id)
{
    uint64_t h = hv__fhir_key_hash(type, id);
    return h != 0 ? h : 1;
}

/* Adds h to the set; 1 if it was there already. */
static int ids_add(imp_t *im, uint64_t h)
{
    size_t i = (size_t)h & (im->ids_cap - 1);
    while (im->ids[i] != 0) {
        if (im->ids[i] == h)
            return 1;
        i = (i + 1) & (im->ids_cap - 1);
    }
    im->ids[i] = h;
    im->nids++;
    return 0;
}

/* Room for n more hashes at most half full, or HV_ENOMEM / HV_ETOOBIG. */
static int ids_reserve(imp_t *im, size_t n)
{
    uint64_t *old = im->ids;
    size_t cap = im->ids_cap ? im->ids_cap : 4096, old_cap = im->ids_cap;
    while ((im->nids + n) * 2 > cap && cap <= IMPORT_MAX_ID_SLOTS)
        cap *= 2;
    if (cap > IMPORT_MAX_ID_SLOTS)
        return HV_ETOOBIG;
    if (cap == old_cap)
        return HV_OK;
    im->ids = hv_calloc(cap, sizeof(*im->ids));
    if (im->ids == NULL) {
        im->ids = old;
        return HV_ENOMEM;
    }
    im->ids_cap = cap;
    im->nids = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i] != 0)
            (void)ids_add(im, old[i]);
    hv_free(old);
    return HV_OK;
}

/*
 * Whether precomputed Bundle bj may write a resource that is stored already, i.e. one
 * that this import ran before (the store was empty when the indexes were deferred) or
 * that bj names twice: then it would replace that resource's rows, which seeks the
 * deferred (type, id ...) indexes. Adds bj's resources to the set. A hash shared by two
 * resources, or a set that cannot grow, also answers 1: the indexes are then only built
 * earlier than needed. A Bundle that fails afterwards leaves its hashes in the set,
 * which errs the same way. An answer 0 also lets bj's updates skip reading a current
 * version (hv__bundle_mark_absent): none can exist.
 */
static int ids_seen(imp_t *im, const hv__bundle_job_t *bj)
{
    size_t n = hv__bundle_op_count(bj);
    int seen = 0;
    if (ids_reserve(im, n) != HV_OK)
        return 1;
    for (size_t i = 0; i < n; i++) {
        const hv__fop_t *op = hv__bundle_op_at(bj, i);
        seen |= ids_add(im, id_hash(op->type, op->id));
    }
    return seen;
}

/* Frees the set of ids written: once the indexes are back, nothing reads it. */
static void ids_free(imp_t *im)
{
    hv_free(im->ids);
    im->ids = NULL;
    im->nids = im->ids_cap = 0;
}

/* Runs one unit's Bundle in its own transaction, preparing it first unless the
 * reader did; the unit's job is consumed. Precomputed Bundles run bare (without a
 * savepoint: SQLite would copy every page they change into the sub-journal, two
 * pwrite calls per page with the FHIR store's temp_store=FILE — 43% of an import's
 * writes) while no Bundle of the transaction failed; see rerun_guarded. */
static int run_bundle(imp_t *im, unit_t *u)
{
    hv__bundle_job_t *bj = u->bj;
    const char *origin = u->origin;
    int status = 0, rc = u->prep_rc;
    u->bj = NULL;
    im->units++;
    if (bj != NULL && hv__bundle_is_precomputed(bj))
        im->ahead++;
    if (rc == HV_OK && bj == NULL) {
        rc = hv__bundle_prepare(u->bundle, 1, NULL, &bj, &status, u->prep_msg, sizeof(u->prep_msg));
        u->bundle = NULL;
    }
    if (rc != HV_OK) {
        fprintf(stderr, "\nholovitals import: %s: %s\n", origin, u->prep_msg);
        im->failed++;
        return rc;
    }
    if (im->deferred_ids && hv__bundle_is_precomputed(bj) && !ids_seen(im, bj)) {
        /* None of its resources is stored (the store was empty and this import has not
         * written them): its updates need not read a current version. */
        hv__bundle_mark_absent(bj);
    } else if (im->deferred_ids && hv__bundle_is_precomputed(bj)) {
        /* It may replace a stored resource's rows: with the writer's indexes back (the
         * value indexes stay deferred). */
        ids_free(im);
        im->deferred_ids = 0;
        im->built_early = 1;
        rc = import_commit(im);
        if (rc == HV_OK)
            rc = restore_indexes(im->db, WRITER_INDEXES, 1);
        if (rc != HV_OK) {
            fprintf(stderr, "\nholovitals import: restoring the search indexes failed: %s\n", hv_db_errmsg(im->db));
            hv__bundle_job_free(bj);
            im->failed++;
            return rc;
        }
    }
    if (im->deferred && !hv__bundle_is_precomputed(bj)) {
        /* It searches the store (conditional entries): with its search indexes back. */
        ids_free(im);
        im->deferred_ids = 0;
        im->built_early = 2;
        rc = import_commit(im);
        if (rc == HV_OK)
            rc = hv__import_restore_indexes(im->db);
        if (rc != HV_OK) {
            fprintf(stderr, "\nholovitals import: restoring the search indexes failed: %s\n", hv_db_errmsg(im->db));
            hv__bundle_job_free(bj);
            im->failed++;
            return rc;
        }
        im->deferred = 0;
    }
    /* Each Bundle is atomic; several share one commit (group commit: an fsync per
     * commit is what bounds the rate on a durable store). */
    rc = HV_OK;
    if (!im->in_tx) {
        rc = hv_db_begin(im->db);
        im->in_tx = rc == HV_OK;
    }
    if (rc == HV_OK && !im->guarded && hv__bundle_is_precomputed(bj) && bare_reserve(im) == HV_OK) {
        rc = hv__bundle_run(im->db, bj);
        if (rc == HV_OK)
            rc = hv_db_flush(im->db); /* a write it queued (hv_db_step_later) that failed is its own */
        if (rc == HV_OK) {
            im->bare[im->nbare++] = bj; /* freed at the commit */
            for (size_t i = 0; i < hv__bundle_op_count(bj); i++)
                if (hv__bundle_op_at(bj, i)->change != HV__CHANGE_NONE)
                    im->resources++;
            if (due_commit(im))
                rc = import_commit(im);
            return rc;
        }
        rc = rerun_guarded(im);
        if (rc != HV_OK) {
            hv__bundle_job_free(bj);
            return rc;
        }
    }
    if (rc == HV_OK)
        rc = hv_db_exec(im->db, "SAVEPOINT hv_bundle");
    if (rc == HV_OK)
        rc = hv__bundle_run(im->db, bj);
    if (rc == HV_OK)
        rc = hv_db_exec(im->db, "RELEASE SAVEPOINT hv_bundle");
    if (rc != HV_OK) {
        int st = 0;
        struct json_object *oo = hv__bundle_response(bj, "", &st);
        const char *d = NULL;
        struct json_object *issues = NULL;
        if (oo != NULL && json_object_object_get_ex(oo, "issue", &issues))
            d = hv_json_get_str(json_object_array_get_idx(issues, 0), "diagnostics");
        fprintf(stderr, "\nholovitals import: %s: rolled back: %s\n", origin,
                d != NULL && st >= 400 ? d : hv_db_errmsg(im->db));
        json_object_put(oo);
        if (im->in_tx && (hv_db_exec(im->db, "ROLLBACK TO SAVEPOINT hv_bundle") != HV_OK ||
                          hv_db_exec(im->db, "RELEASE SAVEPOINT hv_bundle") != HV_OK)) {
            hv_db_rollback(im->db);
            im->in_tx = 0;
            im->resources = im->committed;
        }
        im->failed++;
    } else {
        for (size_t i = 0; i < hv__bundle_op_count(bj); i++)
            if (hv__bundle_op_at(bj, i)->change != HV__CHANGE_NONE)
                im->resources++;
        if (due_commit(im))
            rc = import_commit(im);
    }
    discard(im, bj);
    return rc;
}

/* Reader: cuts NDJSON text into units of batch non-empty lines (copies). */
static void cut_ndjson(imp_t *im, const char *path, const char *text, size_t len, size_t batch)
{
    size_t line = 0, pos = 0, start = 0, start_line = 1, count = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl != NULL ? (size_t)(nl - text) : len;
        line++;
        if (end > pos)
            count++;
        pos = end + 1 < len ? end + 1 : len;
        if (count >= batch || pos >= len) {
            char origin[600];
            char *copy = hv_malloc(pos - start + 1);
            if (copy == NULL) {
                reader_failed(im);
            } else {
                memcpy(copy, text + start, pos - start);
                copy[pos - start] = '\0';
                snprintf(origin, sizeof(origin), "%s:%zu-%zu", path, start_line, line);
                push(im, U_NDJSON, copy, pos - start, start_line, path, origin, pos - start);
            }
            start = pos;
            start_line = line + 1;
            count = 0;
        }
    }
}

/* Reader thread: reads one file and cuts it into units. */
static void import_file(imp_t *im, const char *path, size_t batch)
{
    char *text = NULL;
    size_t len = 0, i = 0;
    hv_error_t err;
    hv_error_clear(&err);
    if (hv_file_read(path, IMPORT_MAX_FILE, &text, &len, &err) != HV_OK) {
        /* The system's reason (no such file, a directory, permission), or the size. */
        fprintf(stderr, "\nholovitals import: %s: %s\n", path, err.message);
        reader_failed(im);
        return;
    }
    while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\r' || text[i] == '\t'))
        i++;
    if (i < len && text[i] == '<') {
        push(im, U_XML, text, len, 1, path, path, len);
        return;
    }
    {
        /* One JSON document with a Bundle, or NDJSON: a document whose first line
         * is a whole resource is NDJSON. */
        const char *nl = memchr(text + i, '\n', len - i);
        struct json_object *res = NULL;
        hv_error_clear(&err);
        if (nl != NULL && hv_fhir_json_parse(text + i, (size_t)(nl - text - (long)i), &im->parse, &res, &err) == HV_OK) {
            json_object_put(res);
            cut_ndjson(im, path, text, len, batch);
            hv_free(text);
        } else {
            push(im, U_JSON, text, len, 1, path, path, len);
        }
    }
}

/* Reader thread: reads the files in order and cuts them into units. Once the first
 * file is handed over, it loads the process-wide UCUM table (hv_ucum_shared: the
 * canonical form of every quantity's index row needs it; reading and parsing
 * ucum-essence.xml was ~15 M instructions of the first unit's preparation), so that
 * the load overlaps the first unit's parse and the search parameters' compilation
 * (warm_tables) instead of following them on the worker the writer waits for. The
 * reader has nothing else to do then but wait for room in the queue. */
static void reader_main(void *arg)
{
    imp_t *im = arg;
    for (int i = 0; i < im->nfiles; i++) {
        int closed;
        uv_mutex_lock(&im->q.lock);
        closed = im->q.closed;
        uv_mutex_unlock(&im->q.lock);
        if (closed)
            break;
        import_file(im, im->files[i], im->batch);
        if (i == 0)
            im->ucum_read = hv_ucum_shared(NULL) != NULL;
    }
    uv_mutex_lock(&im->q.lock);
    im->q.done = 1;
    uv_cond_broadcast(&im->q.cond);
    uv_mutex_unlock(&im->q.lock);
}

/* The writer: stores the units in order as the reader hands them over. */
static void write_all(imp_t *im)
{
    unit_t *u;
    while ((u = pop(im)) != NULL) {
        if (u->bundle != NULL || u->bj != NULL || u->prep_rc != HV_OK)
            (void)run_bundle(im, u);
        im->done_bytes += u->bytes;
        draw(im, 0);
        hv_free(u);
    }
}

int hv__fhir_cmd_import(hv_engine_t *e, int argc, char **argv)
{
    hv_config_t *cfg = hv_engine_config(e);
    imp_t im;
    hv_error_t err;
    int first = 0, rc, status = HV_EXIT_OK, lock_fd = -1;
    size_t batch = 1000;
    int batch_given = 0;
    long workers = 0;
    uv_thread_t threads[IMPORT_MAX_WORKERS];
    int nthreads = 0, final_rc = HV_OK, solo = 0;
    double secs;
    memset(&im, 0, sizeof(im));
    hv_error_clear(&err);
    while (first < argc && strncmp(argv[first], "--", 2) == 0) {
        if (strcmp(argv[first], "--batch") == 0 && first + 1 < argc) {
            batch = (size_t)strtoul(argv[first + 1], NULL, 10);
            batch_given = 1;
            first += 2;
        } else if (strcmp(argv[first], "--workers") == 0 && first + 1 < argc) {
            workers = strtol(argv[first + 1], NULL, 10);
            if (workers < 1 || workers > IMPORT_MAX_WORKERS)
                batch = 0; /* the usage line below */
            first += 2;
        } else if (strcmp(argv[first], "--") == 0) {
            first++;
            break;
        } else {
            first = argc;
        }
    }
    if (first >= argc || batch == 0) {
        fprintf(stderr, "usage: holovitals import [--batch N] [--workers N (1-%d)] FILE...\n", IMPORT_MAX_WORKERS);
        return HV_EXIT_USAGE;
    }
    /* HOLOVITALS_IMPORT_PRECOMPUTE=0 keeps all the work on the writer (the
     * path a REST transaction takes); tests compare the two. */
    {
        const char *pc = getenv("HOLOVITALS_IMPORT_PRECOMPUTE");
        im.precompute = pc == NULL || strcmp(pc, "0") != 0;
        im.report_ahead = pc != NULL && strcmp(pc, "1") == 0;
    }
    im.parse.max_bytes = IMPORT_MAX_FILE;
    im.parse.max_depth = (int)hv_config_int(cfg, "fhir.max_depth");
    if (hv_engine_db_url(e) == NULL &&
        hv__rcache_writer_lock(hv_engine_data_dir(e), &lock_fd) != HV_OK) {
        fprintf(stderr, "holovitals import: an engine is serving %s with its read cache on "
                        "(fhir.read_cache), which would not see what import writes: stop it, POST "
                        "the Bundles to its /fhir, or run it with fhir.read_cache=off\n",
                hv_engine_data_dir(e));
        return HV_EXIT_USAGE;
    }
    for (int i = first; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) == 0)
            im.total_bytes += (uint64_t)sb.st_size;
    }
    im.tty = isatty(2);
    /* The summary's time counts from here: the store's opening included, which the
     * reader and the workers overlap (below). */
    im.t0 = hv_mono_ns();
    /* Commits of --batch resources, or growing up to fhir.import_commit (due_commit). */
    if (batch_given) {
        im.commit_every = batch;
    } else {
        int64_t every = hv_config_int(cfg, "fhir.import_commit");
        im.commit_every = every < 1 ? 1 : (uint64_t)every;
        im.commit_grow = 1;
    }
    im.files = argv + first;
    im.nfiles = argc - first;
    im.batch = batch;
    if (workers == 0) {
        unsigned par = uv_available_parallelism();
        workers = par < 1 ? 1 : par > IMPORT_MAX_WORKERS ? IMPORT_MAX_WORKERS : (long)par;
    }
    im.workers = (int)workers;
    im.q.cap = 2 * (size_t)workers + 1;
    {
        uv_thread_t reader;
        int started = 0, opened = 0;
        if (uv_mutex_init(&im.q.lock) != 0 || uv_cond_init(&im.q.cond) != 0) {
            fprintf(stderr, "holovitals import: cannot start the reader thread\n");
            if (lock_fd >= 0)
                close(lock_fd);
            return HV_EXIT_FAILURE;
        }
        /* The reader and the workers start before the store is opened: reading, parsing
         * and preparing the first units need no database, and the writer waits for the
         * first of them anyway, so opening the store (on a new one, creating its schema:
         * a commit and a sync per migration) happens meanwhile instead of before. */
        while (nthreads < im.workers && uv_thread_create(&threads[nthreads], worker_main, &im) == 0)
            nthreads++;
        if (nthreads > 0 && uv_thread_create(&reader, reader_main, &im) == 0)
            started = 1;
        else
            fprintf(stderr, "holovitals import: cannot start the reader and worker threads\n");
        if (started) {
            rc = hv_db_open(hv_engine_db_url(e), hv_engine_data_dir(e), "fhir", &im.db, &err);
            if (rc == HV_OK)
                rc = hv_db_migrate(im.db, "fhir", hv__store_migrations(im.db), &err);
            if (rc == HV_OK)
                rc = hv__store_tune(im.db, cfg);
            if (rc != HV_OK) {
                char msg[1024];
                hv_error_format(&err, msg, sizeof(msg));
                fprintf(stderr, "holovitals import: cannot open the FHIR store: %s\n", msg[0] ? msg : hv_strerror(rc));
            }
            opened = rc == HV_OK;
        }
        if (opened) {
            /* Alone with the store, the whole import runs outside the WAL (see above). */
            im.outside = leave_wal(im.db);
            if (im.outside)
                larger_pages(im.db);
            if (defer_indexes(&im) != HV_OK)
                fprintf(stderr, "holovitals import: could not defer the search indexes (%s); importing with them\n",
                        hv_db_errmsg(im.db) ? hv_db_errmsg(im.db) : "");
            if (hv_db_kind(im.db) == HV_DB_SQLITE) {
                /* SQLite checkpoints the WAL into the database file when a commit leaves it
                 * past 1,000 pages (4 MiB), on the committing thread, i.e. the writer: with an
                 * import's commits that was after every commit, each copying the pages the
                 * commit rewrote (the search tables' index pages, every time) and
                 * syncing the database file. An import in WAL mode (not alone with the store, or
                 * moved back to WAL by a connection opened meanwhile) lets the WAL grow to 1 GiB instead; the
                 * pages a later commit rewrites are copied once, and closing the store (the
                 * last connection) checkpoints the rest. Crash safety is the WAL's either way. */
                if (hv_db_exec(im.db, "PRAGMA wal_autocheckpoint=" IMPORT_WAL_PAGES) != HV_OK)
                    fprintf(stderr, "holovitals import: PRAGMA wal_autocheckpoint failed: %s\n",
                            hv_db_errmsg(im.db) ? hv_db_errmsg(im.db) : "");
            }
            write_all(&im);
            uv_thread_join(&reader);
            /* The last commit, while the workers still free what it hands back. */
            final_rc = import_commit(&im);
        }
        /* Closing the queue also makes a reader still waiting for room give up (push)
         * and the workers leave what nobody has taken (worker_main). */
        uv_mutex_lock(&im.q.lock);
        im.q.closed = 1;
        uv_cond_broadcast(&im.q.cond);
        uv_mutex_unlock(&im.q.lock);
        if (started && !opened)
            uv_thread_join(&reader);
        for (int i = 0; i < nthreads; i++)
            uv_thread_join(&threads[i]);
        for (size_t i = 0; i < im.q.ngarbage; i++)
            hv__bundle_job_free(im.q.garbage[i]);
        im.q.ngarbage = 0;
        hv_free(im.q.garbage);
        im.q.garbage = NULL;
        drain(&im);
        uv_cond_destroy(&im.q.cond);
        uv_mutex_destroy(&im.q.lock);
        if (!opened) {
            hv_db_close(im.db);
            if (lock_fd >= 0)
                close(lock_fd);
            return HV_EXIT_FAILURE;
        }
    }
    im.failed += im.q.failed;
    if (final_rc != HV_OK || im.failed > 0)
        status = HV_EXIT_FAILURE;
    /* Still in rollback-journal mode, unless a connection opened meanwhile set WAL. */
    if (im.outside) {
        char mode[16];
        im.outside = journal_mode(im.db, "PRAGMA journal_mode", mode, sizeof(mode)) == HV_OK &&
                     strcmp(mode, "delete") == 0;
    }
    /* The deferred indexes and the statistics outside the WAL, when the import holds the
     * store alone (leave_wal: at once when it is outside already). */
    solo = im.deferred && leave_wal(im.db);
    if (im.deferred) {
        char why[512] = "";
        if ((hv_db_kind(im.db) == HV_DB_PG
                 ? restore_indexes_pg(im.db, hv_engine_db_url(e), hv_engine_data_dir(e), why, sizeof(why))
                 : hv__import_restore_indexes(im.db)) != HV_OK) {
            /* Left in import_deferred: the next opening of the store builds them. */
            fprintf(stderr, "holovitals import: building the search indexes failed: %s\n",
                    why[0] ? why : hv_db_errmsg(im.db) ? hv_db_errmsg(im.db) : "");
            status = HV_EXIT_FAILURE;
        }
    }
    /* The planner's statistics of the indexes the import filled (fhir/search_combo.c). */
    if (im.resources > 0 && hv__search_analyze(im.db, 0) != HV_OK)
        fprintf(stderr, "holovitals import: ANALYZE failed: %s\n", hv_db_errmsg(im.db) ? hv_db_errmsg(im.db) : "");
    if (solo || im.outside)
        back_to_wal(im.db);
    hv_free(im.bare);
    ids_free(&im);
    /* Closing the store checkpoints its WAL into the database file. The import's user
     * waits for it, so the summary's time includes it: with larger commits it is
     * seconds at 100,000 resources (docs/performance.md, session 14). */
    hv_db_close(im.db);
    im.db = NULL;
    draw(&im, 1);
    secs = (double)(hv_mono_ns() - im.t0) / 1e9;
    printf("imported %llu resources from %d files in %.2f s (%.0f resources/s), %llu failed\n",
           (unsigned long long)im.resources, argc - first, secs, secs > 0 ? (double)im.resources / secs : 0.0,
           (unsigned long long)im.failed);
    if (im.report_ahead) {
        fprintf(stderr, "holovitals import: %llu of %llu Bundles computed ahead\n", (unsigned long long)im.ahead,
                (unsigned long long)im.units);
        fprintf(stderr, "holovitals import: shared tables built ahead: %s\n", im.warmed ? "yes" : "no");
        fprintf(stderr, "holovitals import: UCUM table loaded by the reader: %s\n", im.ucum_read ? "yes" : "no");
        fprintf(stderr, "holovitals import: %llu commits\n", (unsigned long long)im.commits);
        fprintf(stderr, "holovitals import: search indexes built before the end: %s\n",
                im.built_early == 2 ? "all" : im.built_early == 1 ? "the writer's" : "none");
        fprintf(stderr, "holovitals import: search indexes built outside the WAL: %s\n", solo ? "yes" : "no");
        fprintf(stderr, "holovitals import: Bundles written outside the WAL: %s\n", im.outside ? "yes" : "no");
    }
    if (lock_fd >= 0)
        close(lock_fd);
    return status;
}
