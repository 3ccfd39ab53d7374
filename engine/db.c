/*
 * db.c — the database dispatcher: one API over SQLite (db_sqlite.c) and
 * PostgreSQL (db_pg.c).
 *
 * What a URL selects (hv_db_open):
 *
 *   url                              backend      tables live in
 *   -------------------------------  -----------  ------------------------------
 *   NULL or ""                       SQLite       <data_dir>/<name>.db
 *   anything else not below          SQLite       <url>/<name>.db (url is a directory)
 *   "postgresql://…", "postgres://…" PostgreSQL   schema <name> of the URL's database
 *   any other "scheme://…"           refused with HV_ENOTSUP
 *
 * The module name must be 1-63 characters of [a-z0-9_]: it becomes a file name
 * and an SQL identifier.
 *
 * SQL is written once with PostgreSQL's $1, $2 … placeholders. For SQLite they
 * are rewritten at prepare time to ?1, ?2 …, which SQLite binds by number
 * (sqlite.org/lang_expr.html#varparam), so the same index works on both. The
 * rewrite skips string literals, quoted identifiers, comments and dollar-quoted
 * strings, so a '$1' inside a literal stays data.
 *
 * Prepared statements are cached per connection by SQL text: a hash table for
 * lookup and an LRU list for eviction (HV__DB_CACHE_MAX texts). hv_db_done
 * resets the statement, clears its bindings and puts it back.
 *
 * Migrations (hv_db_migrate) are kept in table hv_schema(module, version). Each
 * migration of an existing schema (an upgrade) runs in its own transaction together
 * with the version update; a new schema's (version 0) all run in one transaction,
 * which writes the version once. Either way the version is re-read under the write
 * lock (SQLite BEGIN IMMEDIATE, PostgreSQL a transaction-scoped advisory lock), so
 * two processes starting at once apply each migration exactly once.
 */
#include "config.h"
#include "engine/db_int.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* Arbitrary constant key of the PostgreSQL advisory lock that serializes schema changes. */
#define MIGRATE_LOCK_KEY "7243051109"

void hv__db_set_error(hv_db_t *db, const char *fmt, ...) {
    va_list ap;
    size_t n;
    va_start(ap, fmt);
    vsnprintf(db->errmsg, sizeof(db->errmsg), fmt, ap);
    va_end(ap);
    /* libpq messages end with a newline; a log field should not. */
    n = strlen(db->errmsg);
    while (n > 0 && (db->errmsg[n - 1] == '\n' || db->errmsg[n - 1] == '\r')) db->errmsg[--n] = '\0';
}

static int is_pg_url(const char *url) {
    return strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0;
}

/* A module name becomes a file name and an SQL identifier: keep it to [a-z0-9_]. */
static int valid_name(const char *name) {
    size_t i, n = strlen(name);
    if (n == 0 || n >= 64) return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!(islower(c) || isdigit(c) || c == '_')) return 0;
    }
    return 1;
}

int hv_db_open(const char *url, const char *data_dir, const char *name, hv_db_t **out,
               hv_error_t *err) {
    hv_db_t *db = NULL;
    int rc;
    if (name == NULL || !valid_name(name)) {
        hv_error_set(err, HV_EINVAL, "db", "module name must be 1-63 characters of [a-z0-9_]");
        return HV_EINVAL;
    }
    if (url != NULL && is_pg_url(url)) {
        rc = hv__db_pg_open(url, name, &db, err);
    } else if (url != NULL && strstr(url, "://") != NULL) {
        /* Only the scheme, never the whole URL: it may carry a password. */
        hv_error_set(err, HV_ENOTSUP, "db",
                     "unsupported database URL scheme \"%.*s\" (use postgresql:// or a directory)",
                     (int)(strstr(url, "://") - url), url);
        return HV_ENOTSUP;
    } else {
        const char *dir = (url != NULL && url[0] != '\0') ? url : data_dir;
        if (dir == NULL || dir[0] == '\0') {
            hv_error_set(err, HV_EINVAL, "db", "no data directory for the SQLite database");
            return HV_EINVAL;
        }
        rc = hv__db_sqlite_open(dir, name, &db, err);
    }
    if (rc != HV_OK) return rc;
    *out = db;
    return HV_OK;
}

void hv_db_close(hv_db_t *db) {
    size_t i;
    if (db == NULL) return;
    db->closing = 1;
    /* Statements still outside the cache are a caller bug; they are finalized by the
     * backend's close (SQLite finalizes every statement of the connection, a
     * PostgreSQL connection takes its statements with it), but their memory leaks. */
    for (i = 0; i < HV__DB_CACHE_BUCKETS; i++) {
        hv_db_stmt_t *st = db->buckets[i], *next;
        for (; st != NULL; st = next) {
            next = st->hnext;
            db->ops->finalize(st);
        }
        db->buckets[i] = NULL;
    }
    db->ops->close(db);
}

int hv_db_kind(const hv_db_t *db) { return db->kind; }

const char *hv_db_errmsg(const hv_db_t *db) { return db->errmsg; }

int hv_db_exec(hv_db_t *db, const char *sql) { return db->ops->exec(db, sql); }

int hv_db_begin(hv_db_t *db) { return db->ops->begin(db); }

int hv_db_commit(hv_db_t *db) { return db->ops->exec(db, "COMMIT"); }

int hv_db_rollback(hv_db_t *db) { return db->ops->exec(db, "ROLLBACK"); }

int64_t hv_db_changes(hv_db_t *db) { return db->ops->changes(db); }
int64_t hv_db_last_insert_rowid(hv_db_t *db) {
    return db->kind == HV_DB_SQLITE ? hv__db_sqlite_last_insert_rowid(db) : 0;
}

int hv_db_set_synchronous(hv_db_t *db, const char *mode) {
    if (mode == NULL ||
        (strcmp(mode, "FULL") != 0 && strcmp(mode, "NORMAL") != 0 && strcmp(mode, "OFF") != 0)) {
        hv__db_set_error(db, "synchronous must be FULL, NORMAL or OFF");
        return HV_EINVAL;
    }
    {
        int rc = db->ops->set_synchronous(db, mode);
        if (rc == HV_OK) snprintf(db->sync, sizeof(db->sync), "%s", mode);
        return rc;
    }
}

const char *hv__db_synchronous(const hv_db_t *db) { return db->sync; }

/* ------------------------------------------------------------------------- */
/* Placeholders                                                              */
/* ------------------------------------------------------------------------- */

/* Length of a PostgreSQL dollar-quote tag ("$tag$" or "$$") starting at p, or 0. */
static size_t dollar_tag_len(const char *p) {
    size_t i = 1;
    if (p[0] != '$') return 0;
    if (isdigit((unsigned char)p[1])) return 0;
    while (isalnum((unsigned char)p[i]) || p[i] == '_' || (unsigned char)p[i] >= 0x80) i++;
    return p[i] == '$' ? i + 1 : 0;
}

static int ident_char(char c) {
    unsigned char u = (unsigned char)c;
    return isalnum(u) || u == '_' || u == '$' || u >= 0x80;
}

int hv__db_scan_params(const char *sql, hv_buf_t *out, int *maxn) {
    const char *p = sql, *start = sql;
    int max = 0, rc = HV_OK;
    while (*p != '\0') {
        if (*p == '\'' || *p == '"') {
            /* A literal or quoted identifier; a doubled quote is an escaped quote. */
            char q = *p++;
            while (*p != '\0') {
                if (*p == q && p[1] == q) {
                    p += 2;
                } else if (*p == q) {
                    p++;
                    break;
                } else {
                    p++;
                }
            }
        } else if (p[0] == '-' && p[1] == '-') {
            while (*p != '\0' && *p != '\n') p++;
        } else if (p[0] == '/' && p[1] == '*') {
            p += 2;
            while (*p != '\0' && !(p[0] == '*' && p[1] == '/')) p++;
            if (*p != '\0') p += 2;
        } else if (p[0] == '$' && p > sql && ident_char(p[-1])) {
            /* A $ inside an identifier ("a$1" is a name in PostgreSQL). */
            p++;
        } else if (p[0] == '$' && isdigit((unsigned char)p[1])) {
            long n = 0;
            const char *d = p + 1;
            while (isdigit((unsigned char)*d)) {
                n = n * 10 + (*d - '0');
                if (n > HV__DB_MAX_PARAMS) return HV_EINVAL;
                d++;
            }
            if (n == 0) return HV_EINVAL;
            if (n > max) max = (int)n;
            if (out != NULL) {
                rc = hv_buf_append(out, start, (size_t)(p - start));
                if (rc == HV_OK) rc = hv_buf_putc(out, '?');
                if (rc != HV_OK) return rc;
                start = p + 1; /* the digits are copied as they are */
            }
            p = d;
        } else if (p[0] == '$' && dollar_tag_len(p) > 0) {
            /* PostgreSQL $tag$ … $tag$ string: skip to the closing tag. */
            size_t tl = dollar_tag_len(p);
            const char *end;
            char tag[64];
            if (tl >= sizeof(tag)) return HV_EINVAL;
            memcpy(tag, p, tl);
            tag[tl] = '\0';
            end = strstr(p + tl, tag);
            p = end != NULL ? end + tl : p + strlen(p);
        } else {
            p++;
        }
    }
    if (out != NULL) {
        rc = hv_buf_append(out, start, (size_t)(p - start));
        if (rc != HV_OK) return rc;
    }
    *maxn = max;
    return HV_OK;
}

/* ------------------------------------------------------------------------- */
/* Statement cache                                                           */
/* ------------------------------------------------------------------------- */

/* FNV-1a, 32 bits. */
static uint32_t hash_sql(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

static void lru_unlink(hv_db_t *db, hv_db_stmt_t *st) {
    if (st->lru_prev != NULL) st->lru_prev->lru_next = st->lru_next;
    else db->lru_head = st->lru_next;
    if (st->lru_next != NULL) st->lru_next->lru_prev = st->lru_prev;
    else db->lru_tail = st->lru_prev;
    st->lru_prev = st->lru_next = NULL;
}

static void lru_push_front(hv_db_t *db, hv_db_stmt_t *st) {
    st->lru_prev = NULL;
    st->lru_next = db->lru_head;
    if (db->lru_head != NULL) db->lru_head->lru_prev = st;
    db->lru_head = st;
    if (db->lru_tail == NULL) db->lru_tail = st;
}

/* The memo slot of a text address: string literals and allocations are at least
 * 8-byte apart in practice, so the low bits are dropped. */
static size_t memo_slot(const char *sql) {
    uintptr_t a = (uintptr_t)sql;
    return (size_t)((a >> 3) ^ (a >> 10)) & (HV__DB_MEMO_SLOTS - 1);
}

/*
 * The memo's invariant: a statement is in at most one slot, the slot of its memo_key.
 * memo_drop takes it out of that slot (a slot since taken by another statement is
 * left alone); memo_put moves it to the slot of sql.
 */
static void memo_drop(hv_db_t *db, hv_db_stmt_t *st) {
    if (st->memo_key != NULL && db->memo[memo_slot(st->memo_key)] == st) db->memo[memo_slot(st->memo_key)] = NULL;
    st->memo_key = NULL;
}

static void memo_put(hv_db_t *db, hv_db_stmt_t *st, const char *sql, size_t slot) {
    memo_drop(db, st);
    st->memo_key = sql;
    db->memo[slot] = st;
}

static void cache_remove(hv_db_t *db, hv_db_stmt_t *st) {
    hv_db_stmt_t **pp = &db->buckets[st->hash & (HV__DB_CACHE_BUCKETS - 1)];
    while (*pp != NULL && *pp != st) pp = &(*pp)->hnext;
    if (*pp == st) *pp = st->hnext;
    st->hnext = NULL;
    memo_drop(db, st); /* it is about to be finalized */
    lru_unlink(db, st);
    st->cached = 0;
    db->ncached--;
}

/* Makes room for one more cached statement; 0 if every cached statement is in use. */
static int cache_make_room(hv_db_t *db) {
    hv_db_stmt_t *st;
    if (db->ncached < HV__DB_CACHE_MAX) return 1;
    for (st = db->lru_tail; st != NULL; st = st->lru_prev) {
        if (!st->in_use) {
            cache_remove(db, st);
            db->ops->finalize(st);
            return 1;
        }
    }
    return 0;
}

/* Hands out a cached statement that is not in use, remembering sql's address for it. */
static void cache_take(hv_db_t *db, hv_db_stmt_t *st, const char *sql, size_t slot) {
    /* hv_db_done already reset it and cleared its bindings. */
    st->in_use = 1;
    lru_unlink(db, st);
    lru_push_front(db, st);
    memo_put(db, st, sql, slot);
}

int hv_db_prepare(hv_db_t *db, const char *sql, hv_db_stmt_t **out) {
    size_t slot = memo_slot(sql);
    uint32_t h;
    hv_db_stmt_t *st = db->memo[slot], *found = NULL;
    int nparams = 0, rc, cache;
    /* The statement last prepared from this address, if the address still holds its text:
     * comparing two equal texts costs a fraction of hashing one (a search-index INSERT is
     * ~500 characters). */
    if (st != NULL && st->memo_key == sql && !st->in_use && strcmp(st->sql, sql) == 0) {
        cache_take(db, st, sql, slot);
        *out = st;
        return HV_OK;
    }
    h = hash_sql(sql);
    for (st = db->buckets[h & (HV__DB_CACHE_BUCKETS - 1)]; st != NULL; st = st->hnext) {
        if (st->hash == h && strcmp(st->sql, sql) == 0) {
            found = st;
            break;
        }
    }
    if (found != NULL && !found->in_use) {
        cache_take(db, found, sql, slot);
        *out = found;
        return HV_OK;
    }
    rc = hv__db_scan_params(sql, NULL, &nparams);
    if (rc != HV_OK) {
        hv__db_set_error(db, "bad placeholder in SQL (use $1 … $%d)", HV__DB_MAX_PARAMS);
        return rc;
    }
    /* A text whose statement is busy (a nested use) gets a private statement. */
    cache = found == NULL && cache_make_room(db);
    rc = db->ops->prepare(db, sql, nparams, &st);
    if (rc != HV_OK) return rc;
    st->db = db;
    st->sql = hv_strdup(sql);
    if (st->sql == NULL) {
        db->ops->finalize(st);
        hv__db_set_error(db, "out of memory");
        return HV_ENOMEM;
    }
    st->hash = h;
    st->nparams = nparams;
    st->in_use = 1;
    if (cache) {
        hv_db_stmt_t **b = &db->buckets[h & (HV__DB_CACHE_BUCKETS - 1)];
        st->hnext = *b;
        *b = st;
        lru_push_front(db, st);
        st->cached = 1;
        db->ncached++;
        memo_put(db, st, sql, slot);
    }
    *out = st;
    return HV_OK;
}

void hv_db_done(hv_db_stmt_t *st) {
    if (st == NULL) return;
    if (!st->cached) {
        st->db->ops->finalize(st);
        return;
    }
    st->db->ops->reset(st);
    /* The values stay bound in the backend (sqlite3_clear_bindings costs a write per
     * parameter, ~110 for a 16-row search-index INSERT); hv_db_step binds NULL to each
     * parameter not bound again before it runs, which is what clearing promised. */
    if (st->nbound > 0) memset(st->bound, 0, sizeof(st->bound[0]) * ((size_t)st->nparams / 64 + 1));
    st->nbound = 0;
    st->in_use = 0;
}

static int check_idx(hv_db_stmt_t *st, int idx) {
    if (idx < 1 || idx > st->nparams) {
        hv__db_set_error(st->db, "parameter $%d out of range (statement has %d)", idx, st->nparams);
        return 0;
    }
    return 1;
}

/* Passes rc on; on success records that $idx holds a value bound since the last done. */
static int bound(hv_db_stmt_t *st, int idx, int rc) {
    uint64_t bit = (uint64_t)1 << (idx & 63);
    if (rc == HV_OK && (st->bound[idx >> 6] & bit) == 0) {
        st->bound[idx >> 6] |= bit;
        st->nbound++;
    }
    return rc;
}

int hv_db_bind_text(hv_db_stmt_t *st, int idx, const char *s, size_t n) {
    if (!check_idx(st, idx)) return HV_EINVAL;
    if (s == NULL) return bound(st, idx, st->db->ops->bind_null(st, idx));
    return bound(st, idx, st->db->ops->bind_text(st, idx, s, n));
}

int hv_db_bind_text_static(hv_db_stmt_t *st, int idx, const char *s, size_t n) {
    if (!check_idx(st, idx)) return HV_EINVAL;
    if (s == NULL) return bound(st, idx, st->db->ops->bind_null(st, idx));
    if (st->db->kind == HV_DB_SQLITE) return bound(st, idx, hv__db_sqlite_bind_text_static(st, idx, s, n));
    /* libpq sends the value at step: copied anyway */
    return bound(st, idx, st->db->ops->bind_text(st, idx, s, n));
}

int hv_db_bind_blob(hv_db_stmt_t *st, int idx, const void *p, size_t n) {
    if (!check_idx(st, idx)) return HV_EINVAL;
    if (p == NULL && n > 0) return HV_EINVAL;
    return bound(st, idx, st->db->ops->bind_blob(st, idx, p != NULL ? p : "", n));
}

int hv_db_bind_int64(hv_db_stmt_t *st, int idx, int64_t v) {
    if (!check_idx(st, idx)) return HV_EINVAL;
    return bound(st, idx, st->db->ops->bind_int64(st, idx, v));
}

int hv_db_bind_double(hv_db_stmt_t *st, int idx, double v) {
    if (!check_idx(st, idx)) return HV_EINVAL;
    return bound(st, idx, st->db->ops->bind_double(st, idx, v));
}

int hv_db_bind_null(hv_db_stmt_t *st, int idx) {
    if (!check_idx(st, idx)) return HV_EINVAL;
    return bound(st, idx, st->db->ops->bind_null(st, idx));
}

/* A parameter not bound since the statement was last done is NULL (hv_db_done leaves the
 * backend's values in place). After this, every parameter is marked, so the later steps of
 * the same execution skip the loop. */
static void bind_unbound(hv_db_stmt_t *st) {
    if (st->nbound < st->nparams) {
        for (int i = 1; i <= st->nparams; i++) {
            if ((st->bound[i >> 6] & ((uint64_t)1 << (i & 63))) == 0) (void)bound(st, i, st->db->ops->bind_null(st, i));
        }
    }
}

int hv_db_step(hv_db_stmt_t *st) {
    bind_unbound(st);
    return st->db->ops->step(st);
}

int hv_db_step_later(hv_db_stmt_t *st) {
    int rc;
    if (st->db->ops->step_later == NULL) {
        rc = hv_db_step(st);
        return rc < 0 ? rc : HV_OK;
    }
    bind_unbound(st);
    return st->db->ops->step_later(st);
}

int hv_db_flush(hv_db_t *db) { return db->ops->flush != NULL ? db->ops->flush(db) : HV_OK; }

int hv_db_column_count(hv_db_stmt_t *st) { return st->db->ops->column_count(st); }

int hv_db_column_is_null(hv_db_stmt_t *st, int col) {
    if (col < 0 || col >= st->db->ops->column_count(st)) return 1;
    return st->db->ops->column_is_null(st, col);
}

const char *hv_db_column_text(hv_db_stmt_t *st, int col, size_t *len) {
    size_t dummy;
    if (len == NULL) len = &dummy;
    *len = 0;
    if (col < 0 || col >= st->db->ops->column_count(st)) return NULL;
    return st->db->ops->column_text(st, col, len);
}

const void *hv_db_column_blob(hv_db_stmt_t *st, int col, size_t *len) {
    size_t dummy;
    if (len == NULL) len = &dummy;
    *len = 0;
    if (col < 0 || col >= st->db->ops->column_count(st)) return NULL;
    return st->db->ops->column_blob(st, col, len);
}

int64_t hv_db_column_int64(hv_db_stmt_t *st, int col) {
    if (col < 0 || col >= st->db->ops->column_count(st)) return 0;
    return st->db->ops->column_int64(st, col);
}

double hv_db_column_double(hv_db_stmt_t *st, int col) {
    if (col < 0 || col >= st->db->ops->column_count(st)) return 0.0;
    return st->db->ops->column_double(st, col);
}

/* ------------------------------------------------------------------------- */
/* Migrations                                                                */
/* ------------------------------------------------------------------------- */

/* Reads the module's applied version inside the current transaction. */
static int read_version(hv_db_t *db, const char *module, int64_t *version) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "SELECT version FROM hv_schema WHERE module = $1", &st);
    if (rc != HV_OK) goto out;
    rc = hv_db_bind_text(st, 1, module, strlen(module));
    if (rc != HV_OK) goto out;
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        *version = hv_db_column_int64(st, 0);
        rc = HV_OK;
    } else if (rc == HV_OK) {
        *version = 0;
    }
out:
    hv_db_done(st);
    return rc;
}

static int write_version(hv_db_t *db, const char *module, int64_t version) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db,
                           "INSERT INTO hv_schema(module, version) VALUES ($1, $2) "
                           "ON CONFLICT (module) DO UPDATE SET version = excluded.version",
                           &st);
    if (rc != HV_OK) goto out;
    rc = hv_db_bind_text(st, 1, module, strlen(module));
    if (rc == HV_OK) rc = hv_db_bind_int64(st, 2, version);
    if (rc == HV_OK) rc = hv_db_step(st);
out:
    hv_db_done(st);
    return rc;
}

/*
 * One step: in a transaction holding the schema lock, applies the next
 * migration if there is one, or all of them if the module has none applied (a
 * new schema). Sets *applied to how many it applied, and *from to the version
 * the step found.
 *
 * Why a new schema's migrations share one transaction: each commit costs a sync
 * (on SQLite in WAL mode with synchronous=FULL, an fdatasync of the WAL), and a
 * new FHIR store has over twenty migrations, which held the start of an import
 * and of every test's store for their syncs. Nothing is lost by it: a new schema
 * has no rows for a migration to rebuild, and if one fails the whole set is
 * rolled back, leaving the schema at version 0, a known version, which the next
 * start applies again. An upgrade keeps one transaction per migration, so that a
 * failing one leaves the store at the version before it, with the migrations that
 * succeeded (some rebuild large tables) kept, and each is logged as it completes.
 */
static int migrate_step(hv_db_t *db, const char *module, const char *const *migrations,
                        int64_t count, int64_t *applied, int64_t *from, hv_error_t *err) {
    int64_t version = 0, to = 0;
    int rc = hv_db_begin(db), in_tx = 0;
    const char *what = "begin";
    *applied = 0;
    if (rc != HV_OK) goto out;
    in_tx = 1;
    if (db->kind == HV_DB_PG) {
        what = "lock";
        rc = hv_db_exec(db, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ")");
        if (rc != HV_OK) goto out;
    }
    what = "create hv_schema";
    rc = hv_db_exec(db, "CREATE TABLE IF NOT EXISTS hv_schema("
                        "module TEXT PRIMARY KEY, version INTEGER NOT NULL)");
    if (rc != HV_OK) goto out;
    what = "read version";
    rc = read_version(db, module, &version);
    if (rc != HV_OK) goto out;
    *from = version;
    if (version < 0 || version > count) {
        rc = HV_EDB;
        hv__db_set_error(db, "schema version %lld is newer than this program knows (%lld)",
                         (long long)version, (long long)count);
        what = "check version";
        goto out;
    }
    if (version < count) {
        to = version == 0 ? count : version + 1;
        what = "apply";
        for (; version < to; version++) {
            rc = hv_db_exec(db, migrations[version]);
            if (rc != HV_OK) goto out;
        }
        rc = write_version(db, module, to);
        if (rc != HV_OK) goto out;
        *applied = to - *from;
    }
    what = "commit";
    rc = hv_db_commit(db);
    if (rc != HV_OK) goto out;
    in_tx = 0;
out:
    if (rc != HV_OK) {
        char msg[sizeof(db->errmsg)];
        snprintf(msg, sizeof(msg), "%s", db->errmsg);
        hv_error_set(err, rc, module, "migration %lld: %s failed: %s", (long long)version + 1,
                     what, msg);
        if (in_tx) hv_db_rollback(db);
        /* Keep the migration's error, not the rollback's. */
        snprintf(db->errmsg, sizeof(db->errmsg), "%s", msg);
        *applied = 0;
    }
    return rc;
}

/*
 * A migration of a store that already had a schema (an upgrade) is logged at info
 * with its duration, as it runs: one that rebuilds a large table can hold the
 * start-up for a while (a 1M-resource store's full-text rebuild takes ~30 s), and
 * the admin should see why. A new store's migrations are logged at debug.
 */
int hv_db_migrate(hv_db_t *db, const char *module, const char *const *migrations,
                  hv_error_t *err) {
    int64_t count = 0, from = 0, first = -1, applied = 1;
    int rc;
    while (migrations[count] != NULL) count++;
    while (applied) {
        uint64_t t0 = hv_mono_ns();
        hv_logrec_t *r;
        rc = migrate_step(db, module, migrations, count, &applied, &from, err);
        if (rc != HV_OK) return rc;
        if (first < 0) first = from;
        if (!applied) break;
        r = hv_log_begin(first > 0 ? HV_LOG_INFO : HV_LOG_DEBUG, "db.migrated");
        if (r != NULL) {
            hv_log_str(r, "module", module);
            hv_log_int(r, "version", from + applied);
            hv_log_int(r, "of", count);
            if (applied > 1) hv_log_int(r, "applied", applied);
            hv_log_int(r, "ms", (int64_t)((hv_mono_ns() - t0) / 1000000));
            hv_log_end(r);
        }
    }
    return HV_OK;
}
