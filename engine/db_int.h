/*
 * db_int.h — internals shared by the database dispatcher (db.c) and its
 * backends (db_sqlite.c, db_pg.c). Not for modules: they use engine.h.
 *
 * A backend embeds hv_db_t first in its connection struct and hv_db_stmt_t
 * first in its statement struct, and provides an hv__db_ops_t vtable. The
 * dispatcher owns everything that is the same on both: argument checks, the
 * statement cache keyed by SQL text, the "$N" placeholder scan, migrations
 * and the last error message.
 *
 * This lives beside engine_int.h rather than in it so that the database layer
 * can change without touching the header every engine file includes.
 */
#ifndef HV_DB_INT_H
#define HV_DB_INT_H

#include "engine/engine_int.h"

typedef struct hv__db_ops hv__db_ops_t;

/* Capacity of the statement cache (distinct SQL texts kept prepared per connection). */
#define HV__DB_CACHE_MAX 256
#define HV__DB_CACHE_BUCKETS 512 /* a power of two, at least twice HV__DB_CACHE_MAX */
/*
 * Slots of the cache's address memo: the statement last prepared from each SQL text
 * address, found by the address alone, so that a caller passing the same string again
 * (a literal, a table of built texts) skips hashing the text. A power of two.
 */
#define HV__DB_MEMO_SLOTS 128
/* The largest $N a statement may use. */
#define HV__DB_MAX_PARAMS 999

struct hv_db_stmt {
    hv_db_t *db;
    char *sql;       /* the SQL text as the caller wrote it: the cache key */
    uint32_t hash;   /* hash of sql */
    const char *memo_key; /* the caller's address of the text it was last memoized under, or NULL */
    int nparams;     /* the largest $N in sql */
    int cached;      /* 1 when the statement belongs to the cache */
    int in_use;      /* 1 between hv_db_prepare and hv_db_done */
    /* Bit $N set: $N was bound since the statement was last done (hv_db_step binds
     * NULL to the others); nbound counts the bits. */
    uint64_t bound[HV__DB_MAX_PARAMS / 64 + 1];
    int nbound;
    hv_db_stmt_t *hnext;             /* hash bucket chain (cached statements) */
    hv_db_stmt_t *lru_prev, *lru_next; /* most recently used first (cached statements) */
};

struct hv_db {
    const hv__db_ops_t *ops;
    int kind;                 /* HV_DB_SQLITE or HV_DB_PG */
    int closing;              /* set by hv_db_close before it finalizes the cache */
    char name[64];            /* the module name: SQLite file stem or PostgreSQL schema */
    char errmsg[512];         /* the last error, "" if none */
    char sync[8];             /* the mode last set by hv_db_set_synchronous ("": the backend's default) */
    hv_db_stmt_t *buckets[HV__DB_CACHE_BUCKETS];
    hv_db_stmt_t *lru_head, *lru_tail;
    size_t ncached;
    /* Cached statements by the address of the text they were last prepared from (see
     * HV__DB_MEMO_SLOTS); a hit is still compared by text, as the address may since hold
     * another text. An evicted statement leaves its slot. */
    hv_db_stmt_t *memo[HV__DB_MEMO_SLOTS];
};

/*
 * A backend. Every function that can fail returns an HV_* status and, on
 * failure, has written the reason into db->errmsg. Statement functions receive
 * the backend's own statement (hv_db_stmt_t embedded first).
 */
struct hv__db_ops {
    void (*close)(hv_db_t *db);
    int (*exec)(hv_db_t *db, const char *sql);
    int (*begin)(hv_db_t *db);
    /* Prepares sql; nparams is the largest $N found by the dispatcher. */
    int (*prepare)(hv_db_t *db, const char *sql, int nparams, hv_db_stmt_t **out);
    void (*finalize)(hv_db_stmt_t *st);
    /* Ends any execution. The bindings may stay: the dispatcher binds NULL to every
     * parameter not bound again before the next step. */
    void (*reset)(hv_db_stmt_t *st);
    int (*bind_text)(hv_db_stmt_t *st, int idx, const char *s, size_t n);
    int (*bind_blob)(hv_db_stmt_t *st, int idx, const void *p, size_t n);
    int (*bind_int64)(hv_db_stmt_t *st, int idx, int64_t v);
    int (*bind_double)(hv_db_stmt_t *st, int idx, double v);
    int (*bind_null)(hv_db_stmt_t *st, int idx);
    int (*step)(hv_db_stmt_t *st);
    int (*column_count)(hv_db_stmt_t *st);
    int (*column_is_null)(hv_db_stmt_t *st, int col);
    const char *(*column_text)(hv_db_stmt_t *st, int col, size_t *len);
    const void *(*column_blob)(hv_db_stmt_t *st, int col, size_t *len);
    int64_t (*column_int64)(hv_db_stmt_t *st, int col);
    double (*column_double)(hv_db_stmt_t *st, int col);
    int64_t (*changes)(hv_db_t *db);
    int (*set_synchronous)(hv_db_t *db, const char *mode);
    /* hv_db_step_later and hv_db_flush (engine.h); NULL: the statement is stepped at once
     * and there is nothing to flush (SQLite). */
    int (*step_later)(hv_db_stmt_t *st);
    int (*flush)(hv_db_t *db);
};

/* Backend constructors. name is already validated ([a-z0-9_], 1-63 characters). */
int hv__db_sqlite_open(const char *dir, const char *name, hv_db_t **out, hv_error_t *err);
int hv__db_sqlite_bind_text_static(hv_db_stmt_t *st, int idx, const char *s, size_t n);
int64_t hv__db_sqlite_last_insert_rowid(hv_db_t *db);
int hv__db_pg_open(const char *url, const char *name, hv_db_t **out, hv_error_t *err);

/*
 * Scans SQL for $N placeholders outside string literals, quoted identifiers,
 * comments and PostgreSQL dollar-quoted strings. Sets *maxn to the largest N
 * (0 if none). If out is not NULL, appends the SQL with every $N rewritten as
 * ?N (SQLite's numbered parameter syntax). HV_EINVAL if N exceeds
 * HV__DB_MAX_PARAMS.
 */
int hv__db_scan_params(const char *sql, hv_buf_t *out, int *maxn);

/*
 * Pipelined commits on SQLite (db_sqlite.c, engine/storage.c). hv__db_wal_start
 * switches the connection to synchronous=OFF without its automatic checkpoint;
 * hv__db_wal_sync (any one thread) makes every commit made before it durable;
 * hv__db_wal_checkpoint (the connection's thread, outside a transaction) checkpoints
 * with full syncs; hv__db_wal_frames is the WAL's size in frames after the last
 * commit; hv__db_wal_stop (the connection's thread, nothing else running) syncs,
 * restores FULL and the automatic checkpoint, and frees. Closing the connection
 * stops it too.
 */
typedef struct hv__db_wal hv__db_wal_t;
int hv__db_wal_start(hv_db_t *db, hv__db_wal_t **out);
int hv__db_wal_sync(hv__db_wal_t *w);
int hv__db_wal_checkpoint(hv_db_t *db);
int hv__db_wal_frames(hv__db_wal_t *w);
void hv__db_wal_stop(hv_db_t *db);

/*
 * Checkpoints on another thread (db_sqlite.c): hv__db_ckpt_start (the connection's
 * thread, outside a transaction; not with pipelined commits) opens a second connection
 * to the file and a thread that checkpoints it PASSIVE once per `pages` frames the
 * writer commits, instead of the writer's automatic checkpoint; after a commit that leaves
 * `limit` frames or more, the writer waits for a pass before it begins its next transaction
 * (not inside the commit), so the WAL stays bounded.
 * hv__db_ckpt_stop (nothing else running on the connection) restores the automatic
 * checkpoint; closing the connection stops it too.
 */
typedef struct hv__db_ckpt hv__db_ckpt_t;
int hv__db_ckpt_start(hv_db_t *db, int pages, int limit);
void hv__db_ckpt_stop(hv_db_t *db);
/* Tests only (db_sqlite.c): when set, the checkpoint thread calls it before each pass. */
extern void (*hv__db_ckpt_pass_hook)(void);

/* Formats db->errmsg. */
void hv__db_set_error(hv_db_t *db, const char *fmt, ...) HV_PRINTF(2, 3);
/* The mode last set by hv_db_set_synchronous, "" when never set (storage.c). */
const char *hv__db_synchronous(const hv_db_t *db);

#endif
