/*
 * store.c — the ehr module's own tables (SQLite <data>/ehr.db or PostgreSQL
 * schema ehr), and the storage jobs that write them. The loop thread keeps the
 * connections in memory (loaded at init, before the storage thread exists);
 * every change is written through a storage job that receives a snapshot, so
 * the storage thread never reads what the loop thread may change.
 *
 *   connections  one row per connection; key_sealed/secret_sealed are
 *                AES-256-GCM sealed (seal.c), as hex text
 *   runs         one row per sync run: status running|completed|failed, counts,
 *                errors (JSON array), checkpoint (JSON: where a resumed run starts)
 *   resources    per connection and remote (type, id): the hash of the content
 *                last written, and the local version that write produced
 *   conflicts    each conflict met and the decision the policy took
 *
 * Engines sharing a database (PostgreSQL) see each other's connections without a
 * restart: every ehr.schedule_check the scheduler reloads the rows (a storage job,
 * hv__ehr_conn_refresh) and the loop thread merges them — a new row is a new
 * connection, a row gone is a connection disconnected elsewhere, a changed row (key
 * rotation, schedule, types) replaces the in-memory connection. A connection with
 * a run in progress on this engine is left as it is until the run ends. A reload
 * that raced with a write of this engine (m->conn_writes changed meanwhile) is
 * dropped and done again at the next tick, so that it never undoes a local change.
 *
 * Migration 2: resources.seen_run (the last run that saw the resource in the
 * EHR: a full sync deletes what it did not see, reconcile.c), runs.deleted, and
 * connections.lease_holder / lease_until (the engine that runs a sync of the
 * connection and until when).
 */
#include "config.h"
#include "adapters/ehr/ehr_int.h"

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

static const char *const migrations[] = {
    "CREATE TABLE connections (id TEXT PRIMARY KEY, vendor TEXT NOT NULL, base_url TEXT NOT NULL,"
    " client_id TEXT, scopes TEXT, schedule TEXT, key_id TEXT, alg TEXT, group_id TEXT, conflict TEXT,"
    " token_url TEXT, types TEXT, key_sealed TEXT, secret_sealed TEXT, page_size BIGINT, verify_tls BIGINT,"
    " rate_milli BIGINT, created_at BIGINT, since_ms BIGINT, next_run_at BIGINT);"
    "CREATE TABLE runs (id TEXT PRIMARY KEY, connection TEXT NOT NULL, mode TEXT NOT NULL, status TEXT NOT NULL,"
    " started_at BIGINT, finished_at BIGINT, fetched BIGINT, created BIGINT, updated BIGINT, unchanged BIGINT,"
    " failed BIGINT, conflicts BIGINT, errors TEXT, checkpoint TEXT);"
    "CREATE INDEX runs_by_connection ON runs (connection, started_at);"
    "CREATE TABLE resources (connection TEXT NOT NULL, rtype TEXT NOT NULL, rid TEXT NOT NULL, hash TEXT,"
    " local_version TEXT, synced_at BIGINT, PRIMARY KEY (connection, rtype, rid));"
    "CREATE TABLE conflicts (id TEXT PRIMARY KEY, connection TEXT NOT NULL, run_id TEXT, rtype TEXT, rid TEXT,"
    " policy TEXT, decision TEXT, local_version TEXT, copy_id TEXT, at BIGINT);",
    "ALTER TABLE resources ADD COLUMN seen_run TEXT;"
    "ALTER TABLE runs ADD COLUMN deleted BIGINT;"
    "ALTER TABLE connections ADD COLUMN lease_holder TEXT;"
    "ALTER TABLE connections ADD COLUMN lease_until BIGINT;",
    NULL,
};

int hv__ehr_store_migrate(hv_db_t *db, hv_error_t *err) { return hv_db_migrate(db, "ehr", migrations, err); }

/* ---- hex for the sealed columns ---- */

static char *to_hex(const unsigned char *p, size_t n) {
    char *s = hv_malloc(2 * n + 1);
    if (s != NULL) hv_hex(p, n, s);
    return s;
}

static int from_hex(const char *s, size_t n, unsigned char **out, size_t *outlen) {
    unsigned char *p;
    size_t i;
    if (s == NULL || n == 0 || n % 2) return HV_ENOTFOUND;
    p = hv_malloc(n / 2);
    if (p == NULL) return HV_ENOMEM;
    for (i = 0; i < n / 2; i++) {
        unsigned v = 0;
        int k;
        for (k = 0; k < 2; k++) {
            char ch = s[2 * i + (size_t)k];
            v <<= 4;
            if (ch >= '0' && ch <= '9') v |= (unsigned)(ch - '0');
            else if (ch >= 'a' && ch <= 'f') v |= (unsigned)(ch - 'a' + 10);
            else {
                hv_free(p);
                return HV_EINVAL;
            }
        }
        p[i] = (unsigned char)v;
    }
    *out = p;
    *outlen = n / 2;
    return HV_OK;
}

void hv__ehr_conn_free(hv__ehr_conn_t *c) {
    if (c == NULL) return;
    hv_free(c->base_url);
    hv_free(c->client_id);
    hv_free(c->scopes);
    hv_free(c->schedule_text);
    hv_free(c->key_id);
    hv_free(c->alg);
    hv_free(c->group_id);
    hv_free(c->conflict);
    hv_free(c->token_url);
    json_object_put(c->types);
    if (c->key_sealed) OPENSSL_cleanse(c->key_sealed, c->key_sealed_len);
    hv_free(c->key_sealed);
    hv_free(c->secret_sealed);
    hv__ehr_token_drop(c);
    hv_free(c);
}

hv__ehr_conn_t *hv__ehr_conn_find(hv__ehr_t *m, const char *id) {
    hv__ehr_conn_t *c;
    for (c = m->conns; c != NULL; c = c->next)
        if (!c->removed && strcmp(c->id, id) == 0) return c;
    return NULL;
}

/* ---- connections ---- */

typedef struct conn_job {
    char *v[13]; /* id vendor base_url client_id scopes schedule key_id alg group_id conflict token_url types
                    key_sealed — secret_sealed separately */
    char *secret;
    int64_t page_size, verify_tls, rate_milli, created_at, since_ms, next_run_at;
    int remove;
    void (*done)(int, void *);
    void *ud;
} conn_job_t;

static void conn_job_free(conn_job_t *j) {
    size_t i;
    for (i = 0; i < HV_ARRAY_LEN(j->v); i++) hv_free(j->v[i]);
    hv_free(j->secret);
    hv_free(j);
}

static void bind_opt(hv_db_stmt_t *st, int idx, const char *s) {
    if (s == NULL) hv_db_bind_null(st, idx);
    else hv_db_bind_text(st, idx, s, strlen(s));
}

static int conn_job_run(hv_db_t *db, void *arg) {
    conn_job_t *j = arg;
    hv_db_stmt_t *st = NULL;
    int rc, i;
    if (j->remove) {
        rc = hv_db_prepare(db, "DELETE FROM connections WHERE id = $1", &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_text(st, 1, j->v[0], strlen(j->v[0]));
        rc = hv_db_step(st);
        hv_db_done(st);
        return rc < 0 ? rc : HV_OK;
    }
    rc = hv_db_prepare(db,
                       "INSERT INTO connections (id, vendor, base_url, client_id, scopes, schedule, key_id, alg,"
                       " group_id, conflict, token_url, types, key_sealed, secret_sealed, page_size, verify_tls,"
                       " rate_milli, created_at, since_ms, next_run_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
                       " $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) ON CONFLICT (id) DO UPDATE SET"
                       " vendor = excluded.vendor, base_url = excluded.base_url, client_id = excluded.client_id,"
                       " scopes = excluded.scopes, schedule = excluded.schedule, key_id = excluded.key_id,"
                       " alg = excluded.alg, group_id = excluded.group_id, conflict = excluded.conflict,"
                       " token_url = excluded.token_url, types = excluded.types, key_sealed = excluded.key_sealed,"
                       " secret_sealed = excluded.secret_sealed, page_size = excluded.page_size,"
                       " verify_tls = excluded.verify_tls, rate_milli = excluded.rate_milli,"
                       " since_ms = excluded.since_ms, next_run_at = excluded.next_run_at",
                       &st);
    if (rc != HV_OK) return rc;
    for (i = 0; i < 13; i++) bind_opt(st, i + 1, j->v[i]);
    bind_opt(st, 14, j->secret);
    hv_db_bind_int64(st, 15, j->page_size);
    hv_db_bind_int64(st, 16, j->verify_tls);
    hv_db_bind_int64(st, 17, j->rate_milli);
    hv_db_bind_int64(st, 18, j->created_at);
    hv_db_bind_int64(st, 19, j->since_ms);
    hv_db_bind_int64(st, 20, j->next_run_at);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static void conn_job_done(int status, void *arg) {
    conn_job_t *j = arg;
    if (status != HV_OK) hv_log(HV_LOG_ERROR, "ehr.store_failed", "saving a connection failed: %s", hv_strerror(status));
    if (j->done) j->done(status, j->ud);
    conn_job_free(j);
}

static char *dup_opt(const char *s) { return s ? hv_strdup(s) : NULL; }

int hv__ehr_conn_save(hv__ehr_t *m, hv__ehr_conn_t *c, void (*done)(int status, void *ud), void *ud) {
    conn_job_t *j = hv_calloc(1, sizeof(*j));
    int rc;
    if (j == NULL) return HV_ENOMEM;
    m->conn_writes++;
    j->v[0] = hv_strdup(c->id);
    j->v[1] = hv_strdup(c->vendor->name);
    j->v[2] = dup_opt(c->base_url);
    j->v[3] = dup_opt(c->client_id);
    j->v[4] = dup_opt(c->scopes);
    j->v[5] = dup_opt(c->schedule_text);
    j->v[6] = dup_opt(c->key_id);
    j->v[7] = dup_opt(c->alg);
    j->v[8] = dup_opt(c->group_id);
    j->v[9] = dup_opt(c->conflict);
    j->v[10] = dup_opt(c->token_url);
    j->v[11] = hv_strdup(json_object_to_json_string_ext(c->types, JSON_C_TO_STRING_PLAIN));
    if (c->key_sealed) j->v[12] = to_hex(c->key_sealed, c->key_sealed_len);
    if (c->secret_sealed) j->secret = to_hex(c->secret_sealed, c->secret_sealed_len);
    j->page_size = c->page_size;
    j->verify_tls = c->verify_tls;
    j->rate_milli = (int64_t)(c->rate * 1000);
    j->created_at = c->created_at;
    j->since_ms = c->since_ms;
    j->next_run_at = c->next_run_at;
    j->done = done;
    j->ud = ud;
    if (j->v[0] == NULL || j->v[1] == NULL || j->v[11] == NULL) {
        conn_job_free(j);
        return HV_ENOMEM;
    }
    rc = hv_storage_submit(m->storage, conn_job_run, conn_job_done, j);
    if (rc != HV_OK) conn_job_free(j);
    return rc;
}

int hv__ehr_conn_delete(hv__ehr_t *m, const char *id) {
    conn_job_t *j = hv_calloc(1, sizeof(*j));
    int rc;
    if (j == NULL) return HV_ENOMEM;
    m->conn_writes++;
    j->remove = 1;
    j->v[0] = hv_strdup(id);
    if (j->v[0] == NULL) {
        hv_free(j);
        return HV_ENOMEM;
    }
    rc = hv_storage_submit(m->storage, conn_job_run, conn_job_done, j);
    if (rc != HV_OK) conn_job_free(j);
    return rc;
}

static char *col_dup(hv_db_stmt_t *st, int col) {
    size_t n = 0;
    const char *s;
    if (hv_db_column_is_null(st, col)) return NULL;
    s = hv_db_column_text(st, col, &n);
    return hv_strndup(s ? s : "", n);
}

/* Reads every connection row into a new list (prepended to *list); any thread. */
static int load_rows(hv_db_t *db, hv__ehr_conn_t **list) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db,
                           "SELECT id, vendor, base_url, client_id, scopes, schedule, key_id, alg, group_id, conflict,"
                           " token_url, types, key_sealed, secret_sealed, page_size, verify_tls, rate_milli,"
                           " created_at, since_ms, next_run_at FROM connections ORDER BY created_at DESC",
                           &st);
    if (rc != HV_OK) return rc;
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        hv__ehr_conn_t *c = hv_calloc(1, sizeof(*c));
        size_t n = 0;
        const char *s;
        char *vendor;
        if (c == NULL) {
            rc = HV_ENOMEM;
            break;
        }
        s = hv_db_column_text(st, 0, &n);
        snprintf(c->id, sizeof(c->id), "%.*s", (int)n, s);
        vendor = col_dup(st, 1);
        c->vendor = hv_ehr_vendor_find(vendor);
        hv_free(vendor);
        if (c->vendor == NULL) c->vendor = &hv_ehr_vendor_fhir;
        c->base_url = col_dup(st, 2);
        c->client_id = col_dup(st, 3);
        c->scopes = col_dup(st, 4);
        c->schedule_text = col_dup(st, 5);
        c->key_id = col_dup(st, 6);
        c->alg = col_dup(st, 7);
        c->group_id = col_dup(st, 8);
        c->conflict = col_dup(st, 9);
        c->token_url = col_dup(st, 10);
        s = hv_db_column_text(st, 11, &n);
        if (hv_json_parse(s ? s : "[]", s ? n : 2, "types", &c->types, NULL) != HV_OK) c->types = json_object_new_array();
        s = hv_db_column_text(st, 12, &n);
        if (s != NULL && n > 0) from_hex(s, n, &c->key_sealed, &c->key_sealed_len);
        s = hv_db_column_text(st, 13, &n);
        if (s != NULL && n > 0) from_hex(s, n, &c->secret_sealed, &c->secret_sealed_len);
        c->page_size = (int)hv_db_column_int64(st, 14);
        c->verify_tls = (int)hv_db_column_int64(st, 15);
        c->rate = (double)hv_db_column_int64(st, 16) / 1000.0;
        c->created_at = hv_db_column_int64(st, 17);
        c->since_ms = hv_db_column_int64(st, 18);
        c->next_run_at = hv_db_column_int64(st, 19);
        if (hv_ehr_schedule_parse(c->schedule_text, &c->schedule, NULL) != HV_OK)
            c->schedule.kind = HV_EHR_SCHED_MANUAL;
        if (c->base_url == NULL || c->types == NULL) {
            hv__ehr_conn_free(c);
            continue;
        }
        c->next = *list;
        *list = c;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

int hv__ehr_store_load(hv__ehr_t *m, hv_db_t *db) { return load_rows(db, &m->conns); }

typedef struct refresh {
    hv__ehr_t *m;
    hv__ehr_conn_t *fresh;
    uint64_t writes; /* m->conn_writes when submitted */
} refresh_t;

static int refresh_job(hv_db_t *db, void *arg) {
    refresh_t *x = arg;
    return load_rows(db, &x->fresh);
}

static int same(const char *a, const char *b) { return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0); }

static int same_bytes(const unsigned char *a, size_t an, const unsigned char *b, size_t bn) {
    return an == bn && (an == 0 || (a != NULL && b != NULL && memcmp(a, b, an) == 0));
}

/* Loop thread: the rows replace the connections not syncing here. */
static void merge(hv__ehr_t *m, hv__ehr_conn_t *fresh) {
    hv__ehr_conn_t **pp, *f, *c;
    /* Gone from the database: disconnected on another engine. */
    for (c = m->conns; c != NULL; c = c->next) {
        if (c->removed || c->active != NULL) continue;
        for (f = fresh; f != NULL; f = f->next)
            if (strcmp(f->id, c->id) == 0) break;
        if (f == NULL) c->removed = 1;
    }
    while ((f = fresh) != NULL) {
        fresh = f->next;
        f->next = NULL;
        for (pp = &m->conns; *pp != NULL; pp = &(*pp)->next)
            if (!(*pp)->removed && strcmp((*pp)->id, f->id) == 0) break;
        c = *pp;
        if (c == NULL) {
            /* Made on another engine. */
            f->next = m->conns;
            m->conns = f;
            continue;
        }
        if (c->active != NULL) {
            hv__ehr_conn_free(f);
            continue;
        }
        if (f->token_url == NULL && c->token_url != NULL && same(c->base_url, f->base_url)) {
            f->token_url = c->token_url; /* discovered here, never stored */
            c->token_url = NULL;
        }
        /* The runtime state carries over; the token only while the credentials are the same. */
        if (same(c->base_url, f->base_url) && same(c->client_id, f->client_id) && same(c->token_url, f->token_url) &&
            same(c->scopes, f->scopes) && same_bytes(c->key_sealed, c->key_sealed_len, f->key_sealed, f->key_sealed_len) &&
            same_bytes(c->secret_sealed, c->secret_sealed_len, f->secret_sealed, f->secret_sealed_len)) {
            f->token = c->token;
            f->token_exp_ms = c->token_exp_ms;
            c->token = NULL;
        }
        f->rate_slot = c->rate_slot;
        if (c->since_ms > f->since_ms) f->since_ms = c->since_ms;
        f->next = c->next;
        *pp = f;
        hv__ehr_conn_free(c);
    }
}

static void refresh_done(int status, void *arg) {
    refresh_t *x = arg;
    hv__ehr_t *m = x->m;
    m->refreshing = 0;
    if (status == HV_OK && x->writes == m->conn_writes && !m->stopping) {
        merge(m, x->fresh);
        x->fresh = NULL;
    }
    while (x->fresh != NULL) {
        hv__ehr_conn_t *c = x->fresh;
        x->fresh = c->next;
        hv__ehr_conn_free(c);
    }
    hv_free(x);
}

int hv__ehr_conn_refresh(hv__ehr_t *m) {
    refresh_t *x;
    int rc;
    if (m->refreshing) return HV_OK;
    if ((x = hv_calloc(1, sizeof(*x))) == NULL) return HV_ENOMEM;
    x->m = m;
    x->writes = m->conn_writes;
    rc = hv_storage_submit(m->storage, refresh_job, refresh_done, x);
    if (rc != HV_OK) hv_free(x);
    else m->refreshing = 1;
    return rc;
}

/* ---- runs ---- */

typedef struct run_job {
    char id[HV__EHR_ID_MAX], conn[HV__EHR_ID_MAX], mode[16], status[16];
    int64_t started_at, finished_at, n[7];
    char *errors, *checkpoint;
    /* when the run ended completed: the connection's new since and next run */
    int update_conn;
    int64_t since_ms, next_run_at;
    /* the run holds the connection's lease: renewed while running, given back at the end (lease.c) */
    int leased;
    int64_t lease_until;
    char holder[HV__EHR_HOLDER_MAX];
    void (*done)(int, void *);
    void *ud;
} run_job_t;

static int run_job_run(hv_db_t *db, void *arg) {
    run_job_t *j = arg;
    hv_db_stmt_t *st = NULL;
    int rc, i;
    rc = hv_db_prepare(db,
                       "INSERT INTO runs (id, connection, mode, status, started_at, finished_at, fetched, created,"
                       " updated, unchanged, failed, conflicts, errors, checkpoint, deleted) VALUES ($1, $2, $3, $4, $5,"
                       " $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
                       " finished_at = excluded.finished_at, fetched = excluded.fetched, created = excluded.created,"
                       " updated = excluded.updated, unchanged = excluded.unchanged, failed = excluded.failed,"
                       " conflicts = excluded.conflicts, errors = excluded.errors, checkpoint = excluded.checkpoint,"
                       " deleted = excluded.deleted",
                       &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, j->id, strlen(j->id));
    hv_db_bind_text(st, 2, j->conn, strlen(j->conn));
    hv_db_bind_text(st, 3, j->mode, strlen(j->mode));
    hv_db_bind_text(st, 4, j->status, strlen(j->status));
    hv_db_bind_int64(st, 5, j->started_at);
    if (j->finished_at) hv_db_bind_int64(st, 6, j->finished_at);
    else hv_db_bind_null(st, 6);
    for (i = 0; i < 6; i++) hv_db_bind_int64(st, 7 + i, j->n[i]);
    bind_opt(st, 13, j->errors);
    bind_opt(st, 14, j->checkpoint);
    hv_db_bind_int64(st, 15, j->n[6]);
    rc = hv_db_step(st);
    hv_db_done(st);
    if (rc < 0) return rc;
    if (j->leased) {
        rc = hv_db_prepare(db, "UPDATE connections SET lease_until = $1 WHERE id = $2 AND lease_holder = $3", &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_int64(st, 1, j->lease_until);
        hv_db_bind_text(st, 2, j->conn, strlen(j->conn));
        hv_db_bind_text(st, 3, j->holder, strlen(j->holder));
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc < 0) return rc;
    }
    if (j->update_conn) {
        rc = hv_db_prepare(db, "UPDATE connections SET since_ms = $1, next_run_at = $2 WHERE id = $3", &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_int64(st, 1, j->since_ms);
        hv_db_bind_int64(st, 2, j->next_run_at);
        hv_db_bind_text(st, 3, j->conn, strlen(j->conn));
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc < 0) return rc;
    }
    return HV_OK;
}

static void run_job_done(int status, void *arg) {
    run_job_t *j = arg;
    if (status != HV_OK) hv_log(HV_LOG_ERROR, "ehr.store_failed", "saving run %s failed: %s", j->id, hv_strerror(status));
    if (j->done) j->done(status, j->ud);
    hv_free(j->errors);
    hv_free(j->checkpoint);
    hv_free(j);
}

static json_object *checkpoint_json(const hv__ehr_run_t *r) {
    json_object *o = json_object_new_object();
    if (o == NULL) return NULL;
    hv_json_set_int(o, "type_idx", (int64_t)r->type_idx);
    hv_json_set_int(o, "patient_idx", (int64_t)r->patient_idx);
    hv_json_set_int(o, "since_ms", r->since_ms);
    hv_json_set_int(o, "pages", r->pages);
    if (r->next_url) hv_json_set_str(o, "next", r->next_url);
    if (r->bulk_status_url) hv_json_set_str(o, "bulk_status", r->bulk_status_url);
    if (r->bulk_outputs) hv_json_set(o, "bulk_outputs", json_object_get(r->bulk_outputs));
    hv_json_set_int(o, "bulk_file", (int64_t)r->bulk_file);
    hv_json_set_int(o, "bulk_line", r->bulk_line);
    /* A line already imported was unreadable: a resumed run must not reconcile either. */
    if (r->unreadable) hv_json_set(o, "unreadable", json_object_new_boolean(1));
    if (r->ids_pass) hv_json_set(o, "ids_pass", json_object_new_boolean(1));
    return o;
}

int hv__ehr_run_save(hv__ehr_run_t *r, const char *status, void (*done)(int status, void *ud), void *ud) {
    run_job_t *j = hv_calloc(1, sizeof(*j));
    json_object *cp;
    int rc;
    if (j == NULL) return HV_ENOMEM;
    snprintf(j->id, sizeof(j->id), "%s", r->id);
    snprintf(j->conn, sizeof(j->conn), "%s", r->c->id);
    snprintf(j->mode, sizeof(j->mode), "%s", r->mode);
    snprintf(j->status, sizeof(j->status), "%s", status);
    j->started_at = r->started_at;
    j->finished_at = strcmp(status, "running") == 0 ? 0 : (int64_t)hv_now_ms();
    j->n[0] = r->fetched;
    j->n[1] = r->created;
    j->n[2] = r->updated;
    j->n[3] = r->unchanged;
    j->n[4] = r->failed;
    j->n[5] = r->conflicts;
    j->n[6] = r->deleted;
    j->errors = hv_strdup(json_object_to_json_string_ext(r->errors, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    cp = checkpoint_json(r);
    j->checkpoint = cp ? hv_strdup(json_object_to_json_string_ext(cp, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)) : NULL;
    json_object_put(cp);
    if (strcmp(status, "completed") == 0) {
        j->update_conn = 1;
        r->m->conn_writes++;
        j->since_ms = r->c->since_ms;
        j->next_run_at = r->c->next_run_at;
    }
    if (r->leased) {
        r->lease_saved_ms = hv_now_ms();
        j->leased = 1;
        j->lease_until = strcmp(status, "running") == 0 ? (int64_t)(hv_now_ms() + r->m->lease_ttl_ms) : 0;
        snprintf(j->holder, sizeof(j->holder), "%s", r->m->holder);
    }
    j->done = done;
    j->ud = ud;
    rc = hv_storage_submit(r->m->storage, run_job_run, run_job_done, j);
    if (rc != HV_OK) {
        hv_free(j->errors);
        hv_free(j->checkpoint);
        hv_free(j);
    }
    return rc;
}

/* Runs left "running" by a crash: rebuilt from their rows, resumed at start. */
int hv__ehr_store_pending_runs(hv__ehr_t *m, hv_db_t *db) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db,
                           "SELECT id, connection, mode, started_at, fetched, created, updated, unchanged, failed,"
                           " conflicts, errors, checkpoint, deleted FROM runs WHERE status = 'running' ORDER BY started_at",
                           &st);
    if (rc != HV_OK) return rc;
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t n = 0;
        const char *s = hv_db_column_text(st, 1, &n);
        char conn[HV__EHR_ID_MAX];
        hv__ehr_conn_t *c;
        hv__ehr_run_t *r;
        json_object *cp = NULL, *v = NULL;
        snprintf(conn, sizeof(conn), "%.*s", (int)n, s);
        c = hv__ehr_conn_find(m, conn);
        if (c == NULL || c->active != NULL) continue;
        r = hv_calloc(1, sizeof(*r));
        if (r == NULL) {
            rc = HV_ENOMEM;
            break;
        }
        r->m = m;
        r->c = c;
        s = hv_db_column_text(st, 0, &n);
        snprintf(r->id, sizeof(r->id), "%.*s", (int)n, s);
        s = hv_db_column_text(st, 2, &n);
        snprintf(r->mode, sizeof(r->mode), "%.*s", (int)n, s);
        r->started_at = hv_db_column_int64(st, 3);
        r->fetched = hv_db_column_int64(st, 4);
        r->created = hv_db_column_int64(st, 5);
        r->updated = hv_db_column_int64(st, 6);
        r->unchanged = hv_db_column_int64(st, 7);
        r->failed = hv_db_column_int64(st, 8);
        r->conflicts = hv_db_column_int64(st, 9);
        r->deleted = hv_db_column_int64(st, 12);
        s = hv_db_column_text(st, 10, &n);
        if (s == NULL || hv_json_parse(s, n, "errors", &r->errors, NULL) != HV_OK ||
            !json_object_is_type(r->errors, json_type_array)) {
            json_object_put(r->errors);
            r->errors = json_object_new_array();
        }
        r->nerrors = (int64_t)json_object_array_length(r->errors);
        s = hv_db_column_text(st, 11, &n);
        if (s != NULL && hv_json_parse(s, n, "checkpoint", &cp, NULL) == HV_OK) {
            if (json_object_object_get_ex(cp, "type_idx", &v)) r->type_idx = (size_t)json_object_get_int64(v);
            if (json_object_object_get_ex(cp, "patient_idx", &v)) r->patient_idx = (size_t)json_object_get_int64(v);
            if (json_object_object_get_ex(cp, "since_ms", &v)) r->since_ms = json_object_get_int64(v);
            if (json_object_object_get_ex(cp, "pages", &v)) r->pages = json_object_get_int64(v);
            if (hv_json_get_str(cp, "next")) r->next_url = hv_strdup(hv_json_get_str(cp, "next"));
            if (hv_json_get_str(cp, "bulk_status")) r->bulk_status_url = hv_strdup(hv_json_get_str(cp, "bulk_status"));
            if (json_object_object_get_ex(cp, "bulk_outputs", &v)) r->bulk_outputs = json_object_get(v);
            if (json_object_object_get_ex(cp, "bulk_file", &v)) r->bulk_file = (size_t)json_object_get_int64(v);
            if (json_object_object_get_ex(cp, "bulk_line", &v)) r->bulk_line = json_object_get_int64(v);
            if (json_object_object_get_ex(cp, "unreadable", &v)) r->unreadable = json_object_get_boolean(v);
            if (json_object_object_get_ex(cp, "ids_pass", &v)) r->ids_pass = json_object_get_boolean(v);
        }
        json_object_put(cp);
        c->active = r;
        r->next = m->runs;
        m->runs = r;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}
