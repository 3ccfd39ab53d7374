/*
 * db_sqlite.c — the SQLite backend of the database layer (see db.c).
 *
 * One file per module, <dir>/<name>.db, created with mode 0600 (it holds PHI;
 * SQLite gives its -wal and -shm files the same permissions). The connection is
 * opened in multi-thread mode (SQLITE_OPEN_NOMUTEX): engine.h promises that one
 * connection is used by one thread at a time, so SQLite's per-connection mutex
 * would only cost time.
 *
 * Settings applied on open (sqlite.org/pragma.html):
 *
 *   auto_vacuum   INCREMENTAL  set before the first table exists, so that pruning
 *                              old rows can give pages back (PRAGMA incremental_vacuum)
 *   journal_mode  WAL          readers never block the writer (sqlite.org/wal.html)
 *   synchronous   FULL         a commit is durable when COMMIT returns; NORMAL by
 *                              hv_db_set_synchronous (WAL stays consistent, the last
 *                              commits may be lost on power failure)
 *   busy_timeout  5000 ms      another process or connection holding the write lock
 *   foreign_keys  ON
 *   temp_store    MEMORY       sub-journals and temporary tables in memory. A store whose
 *                              storage jobs are large sets FILE instead (the FHIR store,
 *                              hv__store_tune): with MEMORY the sub-journal of a savepoint is
 *                              an in-memory list of 1 KiB chunks, and every statement that
 *                              ends inside the storage thread's per-job savepoint truncates
 *                              it by walking that list from its head — quadratic in the job's
 *                              size (43% of the engine's CPU in an EHR page job of 1,000
 *                              writes). FILE keeps sub-journals in memory up to 64 KiB, then
 *                              in a temporary file; but for the many small jobs of the
 *                              channel store that spill cost 10% of MLLP intake.
 *   journal_size_limit 64 MiB  the WAL file is truncated back to this after a checkpoint
 *
 * Placeholders: $N is rewritten to ?N (see db.c), which SQLite binds by number.
 */
#include "config.h"
#include "engine/db_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <sqlite3.h>

#define BUSY_TIMEOUT_MS 5000

typedef struct sqlite_db {
    hv_db_t base;
    sqlite3 *h;
    hv__db_wal_t *wal; /* set while the connection commits without fsync (hv__db_wal_start) */
    hv__db_ckpt_t *ckpt; /* set while another thread checkpoints its WAL (hv__db_ckpt_start) */
} sqlite_db_t;

typedef struct sqlite_stmt {
    hv_db_stmt_t base;
    sqlite3_stmt *st;
} sqlite_stmt_t;

#define SDB(db) ((sqlite_db_t *)(db))
#define SST(s) ((sqlite_stmt_t *)(s))

/* Maps an SQLite result code to an HV status, recording the message. */
static int fail(hv_db_t *db, int src) {
    int ext = sqlite3_extended_errcode(SDB(db)->h);
    hv__db_set_error(db, "%s", sqlite3_errmsg(SDB(db)->h));
    if (src == SQLITE_NOMEM) return HV_ENOMEM;
    if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY) return HV_ECONFLICT;
    return HV_EDB;
}

static void sqlite_close(hv_db_t *db) {
    /* A connection still without fsync must not run its closing checkpoint unsynced. */
    if (SDB(db)->wal != NULL) hv__db_wal_stop(db);
    if (SDB(db)->ckpt != NULL) hv__db_ckpt_stop(db);
    /* close_v2 turns the handle into a zombie instead of failing if a statement
     * that escaped the cache is still open; it is then freed with that statement. */
    sqlite3_close_v2(SDB(db)->h);
    hv_free(db);
}

static int sqlite_exec(hv_db_t *db, const char *sql) {
    char *msg = NULL;
    int rc = sqlite3_exec(SDB(db)->h, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        int ext = sqlite3_extended_errcode(SDB(db)->h);
        hv__db_set_error(db, "%s", msg != NULL ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        if (rc == SQLITE_NOMEM) return HV_ENOMEM;
        if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
            return HV_ECONFLICT;
        return HV_EDB;
    }
    return HV_OK;
}

static void ckpt_settle(hv__db_ckpt_t *c);

static int sqlite_begin(hv_db_t *db) {
    if (SDB(db)->ckpt != NULL) ckpt_settle(SDB(db)->ckpt);
    return sqlite_exec(db, "BEGIN IMMEDIATE");
}

static int sqlite_prepare(hv_db_t *db, const char *sql, int nparams, hv_db_stmt_t **out) {
    hv_buf_t tr;
    sqlite_stmt_t *s = NULL;
    sqlite3_stmt *st = NULL;
    int rc;
    (void)nparams;
    hv_buf_init(&tr, 0);
    rc = hv__db_scan_params(sql, &tr, &nparams);
    if (rc != HV_OK) {
        hv__db_set_error(db, "cannot translate placeholders");
        goto out;
    }
    if (sqlite3_prepare_v3(SDB(db)->h, tr.data, (int)tr.len + 1, SQLITE_PREPARE_PERSISTENT, &st,
                           NULL) != SQLITE_OK) {
        rc = fail(db, sqlite3_errcode(SDB(db)->h));
        goto out;
    }
    if (st == NULL) {
        hv__db_set_error(db, "empty SQL statement");
        rc = HV_EINVAL;
        goto out;
    }
    s = hv_calloc(1, sizeof(*s));
    if (s == NULL) {
        hv__db_set_error(db, "out of memory");
        rc = HV_ENOMEM;
        goto out;
    }
    s->st = st;
    st = NULL;
    *out = &s->base;
out:
    sqlite3_finalize(st);
    hv_buf_release(&tr);
    return rc;
}

static void sqlite_finalize(hv_db_stmt_t *st) {
    sqlite3_finalize(SST(st)->st);
    hv_free(st->sql);
    hv_free(st);
}

/* The bindings stay (see hv__db_ops_t.reset): SQLITE_STATIC texts among them are not
 * read again, as every parameter is bound anew or set to NULL before the next step. */
static void sqlite_reset(hv_db_stmt_t *st) { sqlite3_reset(SST(st)->st); }

static int bind_rc(hv_db_stmt_t *st, int rc) {
    return rc == SQLITE_OK ? HV_OK : fail(st->db, rc);
}

static int sqlite_bind_text(hv_db_stmt_t *st, int idx, const char *s, size_t n) {
    return bind_rc(st, sqlite3_bind_text64(SST(st)->st, idx, s, (sqlite3_uint64)n, SQLITE_TRANSIENT,
                                           SQLITE_UTF8));
}

/* SQLITE_STATIC: SQLite keeps the pointer until the statement is reset or the
 * parameter rebound (sqlite.org/c3ref/bind_blob.html); hv_db_done resets it. */
int hv__db_sqlite_bind_text_static(hv_db_stmt_t *st, int idx, const char *s, size_t n) {
    return bind_rc(st, sqlite3_bind_text64(SST(st)->st, idx, s, (sqlite3_uint64)n, SQLITE_STATIC,
                                           SQLITE_UTF8));
}

static int sqlite_bind_blob(hv_db_stmt_t *st, int idx, const void *p, size_t n) {
    return bind_rc(st, sqlite3_bind_blob64(SST(st)->st, idx, p, (sqlite3_uint64)n, SQLITE_TRANSIENT));
}

static int sqlite_bind_int64(hv_db_stmt_t *st, int idx, int64_t v) {
    return bind_rc(st, sqlite3_bind_int64(SST(st)->st, idx, (sqlite3_int64)v));
}

static int sqlite_bind_double(hv_db_stmt_t *st, int idx, double v) {
    return bind_rc(st, sqlite3_bind_double(SST(st)->st, idx, v));
}

static int sqlite_bind_null(hv_db_stmt_t *st, int idx) {
    return bind_rc(st, sqlite3_bind_null(SST(st)->st, idx));
}

static int sqlite_step(hv_db_stmt_t *st) {
    int rc = sqlite3_step(SST(st)->st);
    if (rc == SQLITE_ROW) return HV_DB_ROW;
    if (rc == SQLITE_DONE) return HV_OK;
    return fail(st->db, rc);
}

static int sqlite_column_count(hv_db_stmt_t *st) { return sqlite3_column_count(SST(st)->st); }

static int sqlite_column_is_null(hv_db_stmt_t *st, int col) {
    return sqlite3_column_type(SST(st)->st, col) == SQLITE_NULL;
}

static const char *sqlite_column_text(hv_db_stmt_t *st, int col, size_t *len) {
    const unsigned char *p;
    if (sqlite3_column_type(SST(st)->st, col) == SQLITE_NULL) return NULL;
    p = sqlite3_column_text(SST(st)->st, col);
    if (p == NULL) return NULL; /* out of memory converting */
    *len = (size_t)sqlite3_column_bytes(SST(st)->st, col);
    return (const char *)p;
}

static const void *sqlite_column_blob(hv_db_stmt_t *st, int col, size_t *len) {
    const void *p;
    if (sqlite3_column_type(SST(st)->st, col) == SQLITE_NULL) return NULL;
    p = sqlite3_column_blob(SST(st)->st, col);
    *len = (size_t)sqlite3_column_bytes(SST(st)->st, col);
    /* SQLite returns NULL for a zero-length blob; engine.h promises non-NULL. */
    return p != NULL ? p : "";
}

static int64_t sqlite_column_int64(hv_db_stmt_t *st, int col) {
    return (int64_t)sqlite3_column_int64(SST(st)->st, col);
}

static double sqlite_column_double(hv_db_stmt_t *st, int col) {
    return sqlite3_column_double(SST(st)->st, col);
}

static int64_t sqlite_changes(hv_db_t *db) { return (int64_t)sqlite3_changes(SDB(db)->h); }
int64_t hv__db_sqlite_last_insert_rowid(hv_db_t *db) { return (int64_t)sqlite3_last_insert_rowid(SDB(db)->h); }

static int sqlite_set_synchronous(hv_db_t *db, const char *mode) {
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA synchronous=%s", mode);
    return sqlite_exec(db, sql);
}

static const hv__db_ops_t sqlite_ops = {
    sqlite_close,       sqlite_exec,          sqlite_begin,         sqlite_prepare,
    sqlite_finalize,    sqlite_reset,         sqlite_bind_text,     sqlite_bind_blob,
    sqlite_bind_int64,  sqlite_bind_double,   sqlite_bind_null,     sqlite_step,
    sqlite_column_count, sqlite_column_is_null, sqlite_column_text, sqlite_column_blob,
    sqlite_column_int64, sqlite_column_double, sqlite_changes,      sqlite_set_synchronous,
    NULL,               NULL,
};

/* Creates dir and its missing parents with mode 0700 (it will hold PHI). */
static int make_dirs(const char *dir) {
    char path[4096];
    size_t i, n = strlen(dir);
    if (n == 0 || n >= sizeof(path)) return HV_EINVAL;
    memcpy(path, dir, n + 1);
    for (i = 1; i <= n; i++) {
        if (path[i] == '/' || path[i] == '\0') {
            char c = path[i];
            path[i] = '\0';
            if (mkdir(path, 0700) != 0 && errno != EEXIST) return HV_EIO;
            path[i] = c;
        }
    }
    return HV_OK;
}

/*
 * Process-wide SQLite settings, set once before the first connection (sqlite3_config
 * works only before sqlite3_initialize: sqlite.org/c3ref/config.html). Memory
 * statistics off (SQLITE_CONFIG_MEMSTATUS): nothing here reads sqlite3_memory_used,
 * and with them on every allocation SQLite makes takes a global mutex to count it
 * (~130 allocations per stored resource). If the library was already initialized
 * (another user opened a database first), the call fails harmlessly.
 */
static pthread_once_t config_once = PTHREAD_ONCE_INIT;
static void sqlite_config(void) { (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); }

int hv__db_sqlite_open(const char *dir, const char *name, hv_db_t **out, hv_error_t *err) {
    static const char *const pragmas =
        "PRAGMA auto_vacuum=INCREMENTAL;"
        "PRAGMA journal_mode=WAL;"
        "PRAGMA synchronous=FULL;"
        "PRAGMA foreign_keys=ON;"
        "PRAGMA temp_store=MEMORY;"
        "PRAGMA journal_size_limit=67108864;";
    sqlite_db_t *db = NULL;
    char path[4096];
    int rc = HV_OK, fd;
    if (make_dirs(dir) != HV_OK) {
        hv_error_set(err, HV_EIO, dir, "cannot create the data directory: %s", strerror(errno));
        return HV_EIO;
    }
    if ((size_t)snprintf(path, sizeof(path), "%s/%s.db", dir, name) >= sizeof(path)) {
        hv_error_set(err, HV_EINVAL, dir, "data directory path too long");
        return HV_EINVAL;
    }
    /* Create the file ourselves so that it is private from the first byte. */
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        hv_error_set(err, HV_EIO, path, "cannot open: %s", strerror(errno));
        return HV_EIO;
    }
    close(fd);
    db = hv_calloc(1, sizeof(*db));
    if (db == NULL) {
        hv_error_set(err, HV_ENOMEM, path, "out of memory");
        return HV_ENOMEM;
    }
    pthread_once(&config_once, sqlite_config);
    db->base.ops = &sqlite_ops;
    db->base.kind = HV_DB_SQLITE;
    snprintf(db->base.name, sizeof(db->base.name), "%s", name);
    if (sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        hv_error_set(err, HV_EDB, path, "cannot open: %s",
                     db->h != NULL ? sqlite3_errmsg(db->h) : "out of memory");
        rc = HV_EDB;
        goto out;
    }
    sqlite3_extended_result_codes(db->h, 1);
    sqlite3_busy_timeout(db->h, BUSY_TIMEOUT_MS);
    rc = sqlite_exec(&db->base, pragmas);
    if (rc != HV_OK && (sqlite3_errcode(db->h) & 0xff) == SQLITE_BUSY) {
        /* SQLite's own words ("database is locked") leave the user to guess who holds it:
         * in practice a `holovitals import` into the same data directory, which writes
         * almost without a pause. */
        hv_error_set(err, rc, path,
                     "cannot configure: %s; another process has held its lock for over %d s (a "
                     "holovitals import into this data directory?): start again when it has finished",
                     db->base.errmsg, BUSY_TIMEOUT_MS / 1000);
        goto out;
    }
    if (rc != HV_OK) {
        hv_error_set(err, rc, path, "cannot configure: %s", db->base.errmsg);
        goto out;
    }
    *out = &db->base;
    db = NULL;
out:
    if (db != NULL) {
        sqlite3_close_v2(db->h);
        hv_free(db);
    }
    return rc;
}

/* ------------------------------------------------------------------------- */
/*
 * Pipelined commits (engine/storage.c): the writer connection commits with
 * synchronous=OFF, and the storage's sync thread makes each commit durable with
 * fdatasync of the -wal file before any answer of it is released.
 *
 * Why this is as durable as synchronous=FULL for answered writes (sqlite.org/wal.html,
 * "Checkpointing" and "Automatic Checkpoint"; src/wal.c walCheckpoint, walRestartLog):
 *   - A WAL commit appends frames (page images, the last marked as a commit frame with
 *     a running checksum) to the -wal file with write(). With OFF, SQLite does not sync
 *     them. fdatasync of the file afterwards puts every frame written before it on disk,
 *     with the file size; recovery replays the frames up to the last valid commit frame.
 *     Frames written after the fdatasync and lost in a power failure fail the checksum
 *     chain and are ignored: only unanswered commits are lost.
 *   - Frames already synced are overwritten only when the WAL restarts from its start,
 *     and SQLite restarts it only after a checkpoint has copied every frame into the
 *     database file (nBackfill == mxFrame). So checkpoints decide durability. The
 *     writer's own automatic checkpoint would run with the writer's sync flags: none
 *     with OFF, which could copy frames into the database file without fsync and let
 *     the next commit overwrite them. The writer therefore has its automatic checkpoint
 *     off (sqlite3_wal_hook replaces it; the hook only records the WAL's size), and the
 *     storage thread checkpoints between batches with synchronous=FULL for the
 *     checkpoint (hv__db_wal_checkpoint): SQLite then syncs the WAL before copying and
 *     the database file after copying, before it records the frames as backfilled.
 *     (A checkpoint on a second connection, tried first, ran concurrently with the
 *     writer's commits and so seldom let the WAL restart: it kept checkpointing, two
 *     fsyncs each time, while the WAL grew.)
 *   - Closing the writer (the last connection checkpoints and deletes the WAL) happens
 *     after hv__db_wal_stop has set FULL again.
 * A process crash (kill -9) loses nothing either way: the frames are in the page cache.
 * Another connection (not the storage thread's jobs, whose answers wait for the sync too)
 * may read a commit before its fdatasync returns; a power failure in that window undoes a
 * write that was read but never answered (docs/fhir-store.md).
 */
struct hv__db_wal {
    char path[4096 + 8];     /* the -wal file */
    int fd;                  /* sync thread: the -wal file, opened at the first sync */
    int frames;              /* frames in the WAL after the writer's last commit (atomic) */
};

static int wal_hook(void *arg, sqlite3 *h, const char *dbname, int frames) {
    hv__db_wal_t *w = arg;
    (void)h;
    (void)dbname;
    __atomic_store_n(&w->frames, frames, __ATOMIC_RELAXED);
    return SQLITE_OK;
}

int hv__db_wal_start(hv_db_t *db, hv__db_wal_t **out) {
    hv__db_wal_t *w = NULL;
    const char *file;
    int rc;
    if (db->kind != HV_DB_SQLITE || SDB(db)->wal != NULL) return HV_EINVAL;
    file = sqlite3_db_filename(SDB(db)->h, "main");
    if (file == NULL || file[0] == '\0') return HV_EINVAL;
    w = hv_calloc(1, sizeof(*w));
    if (w == NULL) return HV_ENOMEM;
    w->fd = -1;
    if ((size_t)snprintf(w->path, sizeof(w->path), "%s-wal", file) >= sizeof(w->path)) {
        hv_free(w);
        return HV_EINVAL;
    }
    rc = sqlite_exec(db, "PRAGMA synchronous=OFF");
    if (rc != HV_OK) {
        hv_free(w);
        return rc;
    }
    /* Replaces SQLite's automatic checkpoint (sqlite3_wal_autocheckpoint is this hook). */
    sqlite3_wal_hook(SDB(db)->h, wal_hook, w);
    SDB(db)->wal = w;
    *out = w;
    return HV_OK;
}

int hv__db_wal_frames(hv__db_wal_t *w) { return __atomic_load_n(&w->frames, __ATOMIC_RELAXED); }

/* Opens the -wal file and makes its directory entry durable (the file may be new). */
static int wal_open(hv__db_wal_t *w) {
    char dir[sizeof(w->path)];
    char *slash;
    int dfd;
    w->fd = open(w->path, O_RDWR | O_CLOEXEC);
    if (w->fd < 0) return HV_EIO;
    memcpy(dir, w->path, sizeof(dir));
    slash = strrchr(dir, '/');
    if (slash == NULL) {
        dir[0] = '.';
        dir[1] = '\0';
    } else if (slash == dir) {
        dir[1] = '\0';
    } else {
        *slash = '\0';
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0 && fsync(dfd) == 0) {
        close(dfd);
        return HV_OK;
    }
    if (dfd >= 0) close(dfd);
    /* Try again at the next sync, directory entry included. */
    close(w->fd);
    w->fd = -1;
    errno = EIO;
    return HV_EIO;
}

int hv__db_wal_sync(hv__db_wal_t *w) {
    struct stat st;
    /* The writer keeps the -wal file while it is open, but a file unlinked under us
     * (st_nlink 0) would make our fdatasync meaningless: open it again. */
    if (w->fd >= 0 && (fstat(w->fd, &st) != 0 || st.st_nlink == 0)) {
        close(w->fd);
        w->fd = -1;
    }
    if (w->fd < 0 && wal_open(w) != HV_OK) {
        /* No -wal file yet (no commit has written one): then the database file holds
         * everything; sync it instead of failing every write. */
        char db[sizeof(w->path)];
        int fd, ok;
        if (errno != ENOENT) return HV_EIO;
        memcpy(db, w->path, sizeof(db));
        db[strlen(db) - 4] = '\0'; /* strip "-wal" */
        fd = open(db, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return HV_EIO;
        ok = fsync(fd) == 0;
        close(fd);
        return ok ? HV_OK : HV_EIO;
    }
    return fdatasync(w->fd) == 0 ? HV_OK : HV_EIO;
}

int hv__db_wal_checkpoint(hv_db_t *db) {
    int log = 0, done = 0, rc, rc2;
    /* The checkpoint syncs with the connection's flags: FULL for it, OFF again after. */
    rc = sqlite_exec(db, "PRAGMA synchronous=FULL");
    if (rc != HV_OK) return rc;
    rc = sqlite3_wal_checkpoint_v2(SDB(db)->h, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    /* SQLITE_BUSY: another connection checkpoints; the next one catches up. */
    rc = rc == SQLITE_OK || rc == SQLITE_BUSY ? HV_OK : fail(db, rc);
    rc2 = sqlite_exec(db, "PRAGMA synchronous=OFF");
    return rc != HV_OK ? rc : rc2;
}

void hv__db_wal_stop(hv_db_t *db) {
    hv__db_wal_t *w = SDB(db)->wal;
    if (w == NULL) return;
    SDB(db)->wal = NULL;
    /* Back to fsync on commit and SQLite's own automatic checkpoint (default 1000 pages). */
    sqlite_exec(db, "PRAGMA synchronous=FULL");
    sqlite3_wal_autocheckpoint(SDB(db)->h, 1000);
    if (w->fd >= 0) {
        /* Everything committed while pipelined is synced before the caller goes on. */
        if (fdatasync(w->fd) != 0) hv__db_set_error(db, "fdatasync of the WAL failed");
        close(w->fd);
    }
    hv_free(w);
}

/* ------------------------------------------------------------------------- */
/*
 * Checkpoints on a thread of their own (hv__db_ckpt_start): the writer keeps its
 * synchronous mode and commits as before, but its automatic checkpoint (SQLite runs it
 * inside the COMMIT that takes the WAL past 1,000 pages, on the writing thread: 16 % of
 * the FHIR storage thread in a Bulk EHR sync, docs/performance.md) is replaced by a
 * wal hook that hands the checkpoint to a thread with its own connection to the same
 * file, which runs it PASSIVE (sqlite.org/c3ref/wal_checkpoint_v2.html: never waits for
 * a lock, copies what no reader still needs) while the writer goes on.
 *
 * Durability is SQLite's own: a checkpoint on any connection syncs the WAL before it
 * copies frames and the database file before it records them as copied (with that
 * connection's synchronous, set to the writer's), exactly as the writer's automatic
 * checkpoint did; a kill -9 during one leaves the WAL to replay (sqlite.org/wal.html).
 *
 * Bounding the WAL: SQLite writes the WAL from its start again only when a write
 * transaction begins on a WAL whose every frame has been copied. A checkpointer that
 * runs beside a busy writer seldom sees that moment (the writer commits again before
 * the copy ends; db_sqlite.c's pipelined commits tried a second connection for this
 * reason and gave up), so the WAL would grow without end. The writer therefore waits,
 * before the next transaction it begins (ckpt_settle, from sqlite_begin) after the commit
 * that takes the WAL to `limit` frames, for one pass that began after that commit: the
 * writer writes nothing meanwhile, so the pass copies everything (unless a reader still
 * reads an older snapshot; then the writer goes on and waits again after its next commit,
 * for a pass that finds nothing it may copy and returns at once); that transaction
 * restarts the WAL, and journal_size_limit truncates the file. Passes in between (one per
 * `pages` frames) keep what is left to copy then small, so the wait is short. It is not
 * taken in the hook, inside the COMMIT: the commit is done there, and whoever waits for it
 * (the storage thread's done callbacks) need not wait for the copy too — after the one
 * large transaction that builds a Bulk sync's deferred indexes (~250 MB of WAL) that copy
 * and its sync were seconds of the sync's wall time (docs/performance.md, "EHR sync,
 * session 19").
 */
struct hv__db_ckpt {
    sqlite3 *h;            /* the checkpointer's connection */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;   /* signalled when a pass is asked for, or to stop */
    pthread_cond_t passed; /* broadcast when a pass ends */
    int pages, limit;      /* a pass per `pages` new frames; the writer waits at `limit` */
    int asked_at;          /* writer: the WAL's size in frames when it last asked */
    uint64_t owed;         /* writer: the pass to see end before its next transaction; 0: none */
    uint64_t asked, done;  /* under lock: passes asked for, and the last one run */
    int stop;              /* under lock */
};

void (*hv__db_ckpt_pass_hook)(void);

static void *ckpt_thread(void *arg) {
    hv__db_ckpt_t *c = arg;
#ifdef __linux__
    (void)prctl(PR_SET_NAME, "hv-checkpoint", 0, 0, 0); /* top -H, perf: diagnostics only */
#endif
    pthread_mutex_lock(&c->lock);
    for (;;) {
        uint64_t want;
        int log = 0, copied = 0;
        while (!c->stop && c->done == c->asked) pthread_cond_wait(&c->cond, &c->lock);
        if (c->stop) break;
        want = c->asked;
        pthread_mutex_unlock(&c->lock);
        if (hv__db_ckpt_pass_hook != NULL) hv__db_ckpt_pass_hook();
        /* SQLITE_BUSY: another connection checkpoints; the next pass catches up. Other
         * errors (I/O) leave the frames in the WAL, where they are safe; the writer's next
         * commit asks again. */
        (void)sqlite3_wal_checkpoint_v2(c->h, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
        pthread_mutex_lock(&c->lock);
        c->done = want;
        pthread_cond_broadcast(&c->passed);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* The writer's thread, after each commit: frames is the WAL's size. */
static int ckpt_hook(void *arg, sqlite3 *h, const char *dbname, int frames) {
    hv__db_ckpt_t *c = arg;
    uint64_t mine;
    (void)h;
    (void)dbname;
    if (frames < c->asked_at) c->asked_at = 0; /* the WAL was restarted */
    if (frames - c->asked_at < c->pages && frames < c->limit) return SQLITE_OK;
    c->asked_at = frames;
    pthread_mutex_lock(&c->lock);
    mine = ++c->asked;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    if (frames >= c->limit) c->owed = mine;
    return SQLITE_OK;
}

/* The writer's thread, before it begins a transaction: waits for the pass owed (above). */
static void ckpt_settle(hv__db_ckpt_t *c) {
    if (c->owed == 0) return;
    pthread_mutex_lock(&c->lock);
    while (c->done < c->owed && !c->stop) pthread_cond_wait(&c->passed, &c->lock);
    pthread_mutex_unlock(&c->lock);
    c->owed = 0;
}

int hv__db_ckpt_start(hv_db_t *db, int pages, int limit) {
    hv__db_ckpt_t *c = NULL;
    const char *file, *mode;
    char sql[64];
    int rc = HV_EDB;
    if (db->kind != HV_DB_SQLITE || SDB(db)->wal != NULL || SDB(db)->ckpt != NULL || pages <= 0 ||
        limit < pages)
        return HV_EINVAL;
    file = sqlite3_db_filename(SDB(db)->h, "main");
    if (file == NULL || file[0] == '\0') return HV_EINVAL;
    c = hv_calloc(1, sizeof(*c));
    if (c == NULL) return HV_ENOMEM;
    c->pages = pages;
    c->limit = limit;
    if (sqlite3_open_v2(file, &c->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        hv__db_set_error(db, "checkpoint connection: %s", c->h != NULL ? sqlite3_errmsg(c->h) : "out of memory");
        goto fail;
    }
    /* The checkpoint syncs as the writer's own would have: its mode, FULL when never set. */
    mode = hv__db_synchronous(db);
    snprintf(sql, sizeof(sql), "PRAGMA synchronous=%s", mode[0] != '\0' ? mode : "FULL");
    if (sqlite3_exec(c->h, sql, NULL, NULL, NULL) != SQLITE_OK) {
        hv__db_set_error(db, "checkpoint connection: %s", sqlite3_errmsg(c->h));
        goto fail;
    }
    if (pthread_mutex_init(&c->lock, NULL) != 0) goto fail_io;
    if (pthread_cond_init(&c->cond, NULL) != 0) {
        pthread_mutex_destroy(&c->lock);
        goto fail_io;
    }
    if (pthread_cond_init(&c->passed, NULL) != 0) {
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        goto fail_io;
    }
    if (pthread_create(&c->thread, NULL, ckpt_thread, c) != 0) {
        pthread_cond_destroy(&c->passed);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        goto fail_io;
    }
    /* Replaces SQLite's automatic checkpoint (sqlite3_wal_autocheckpoint is this hook). */
    sqlite3_wal_hook(SDB(db)->h, ckpt_hook, c);
    SDB(db)->ckpt = c;
    return HV_OK;
fail_io:
    rc = HV_EIO;
    hv__db_set_error(db, "cannot start the checkpoint thread");
fail:
    sqlite3_close_v2(c->h);
    hv_free(c);
    return rc;
}

void hv__db_ckpt_stop(hv_db_t *db) {
    hv__db_ckpt_t *c = SDB(db)->ckpt;
    if (c == NULL) return;
    /* Back to SQLite's automatic checkpoint before the thread goes. */
    sqlite3_wal_autocheckpoint(SDB(db)->h, 1000);
    SDB(db)->ckpt = NULL;
    pthread_mutex_lock(&c->lock);
    c->stop = 1;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    pthread_cond_destroy(&c->passed);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    /* Closed before the writer: the writer, the last connection, then checkpoints and
     * removes the WAL on its own close. */
    sqlite3_close_v2(c->h);
    hv_free(c);
}
