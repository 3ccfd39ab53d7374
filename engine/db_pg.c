/*
 * db_pg.c — the PostgreSQL backend of the database layer (see db.c), on libpq.
 *
 * A connection works in the schema named after the module: hv_db_open creates it
 * if missing (under a transaction-scoped advisory lock, so that processes starting
 * together do not race) and sets search_path to it alone, so the modules' SQL
 * names tables without a schema on both backends.
 *
 * Statements (PostgreSQL protocol, "Extended Query", protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY):
 *   - prepared once with PQprepare under a generated name ("hv_<n>"), parameter
 *     types left to the server to infer from the SQL;
 *   - parameters are sent as text, except blobs, which are sent in binary format
 *     (raw bytes, so zero bytes survive and no escaping is needed);
 *   - results come back in text format: integers and floats are parsed from it,
 *     bytea columns arrive hex-encoded ("\x0a1b", datatype-binary.html, the
 *     default bytea_output since 9.0, which the connection sets explicitly) and
 *     are decoded once per row and column on demand;
 *   - hv_db_step executes on its first call and buffers the whole result, then
 *     iterates its rows, so statements can nest on one connection;
 *   - hv_db_step_later queues a statement in libpq's pipeline mode (libpq-pipeline-mode.html):
 *     its Bind/Execute go out with the next ones, in as few writes as libpq's 64 KiB output
 *     buffer allows, without a round trip each. Every other call first drains the pipeline
 *     (a Sync, then one result per queued statement), and so does a queue of PIPE_MAX.
 *     The results of INSERTs and DELETEs are a few bytes each, so the server never blocks
 *     writing them while the client is still sending.
 *
 * Error messages carry the server's primary message and SQLSTATE, not its DETAIL
 * field, which may quote the values of a row. A unique violation (SQLSTATE 23505)
 * is HV_ECONFLICT. Reconnection after a lost connection is not done here.
 */
#include "config.h"
#include "engine/db_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#define BYTEAOID 17
#define BOOLOID 16
/* Arbitrary constant key of the advisory lock taken while creating a schema. */
#define SCHEMA_LOCK_KEY "7243051108"

typedef struct pg_db {
    hv_db_t base;
    PGconn *conn;
    uint64_t next_id;   /* for statement names */
    int64_t changes;    /* rows changed by the last INSERT/UPDATE/DELETE/MERGE */
    hv_buf_t deferred;  /* "DEALLOCATE …;" commands to send when the connection is usable */
    int queued;         /* statements sent in pipeline mode whose results are not yet read */
} pg_db_t;

/* Statements queued by hv_db_step_later before the pipeline is drained anyway. */
#define PIPE_MAX 256

typedef struct pg_stmt {
    hv_db_stmt_t base;
    char name[32];
    int nparams;
    const char **values; /* per parameter: NULL for SQL NULL */
    int *lengths;
    int *formats;        /* 0 text, 1 binary */
    hv_buf_t *bufs;      /* per parameter storage, reused across executions */
    PGresult *res;
    int state;           /* 0 not executed, 1 iterating rows, 2 finished */
    int row, nrows, ncols;
    hv_buf_t *decoded;   /* per column: decoded bytea of row decoded_row[col] */
    int *decoded_row;
    int ndecoded;        /* entries in decoded and decoded_row */
} pg_stmt_t;

#define PDB(db) ((pg_db_t *)(db))
#define PST(s) ((pg_stmt_t *)(s))

static void notice_drop(void *arg, const char *message) {
    (void)arg;
    (void)message;
}

/* Records a failed result (or, if res is NULL, the connection's error) and maps it. */
static int fail_res(hv_db_t *db, const PGresult *res) {
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (primary != NULL)
        hv__db_set_error(db, "%s (SQLSTATE %s)", primary, state != NULL ? state : "?");
    else
        hv__db_set_error(db, "%s", PQerrorMessage(PDB(db)->conn));
    if (res == NULL && PQstatus(PDB(db)->conn) != CONNECTION_OK) return HV_EDB;
    if (state != NULL && strcmp(state, "23505") == 0) return HV_ECONFLICT;
    return HV_EDB;
}

/*
 * Ends pipeline mode: sends a Sync, reads the result of every queued statement and the
 * Sync's. Returns HV_OK, or the first failure (a statement after a failed one is not run:
 * PGRES_PIPELINE_ABORTED), whose message is the connection's error.
 */
static int drain(pg_db_t *pdb) {
    PGconn *c = pdb->conn;
    PGresult *r;
    int rc = HV_OK;
    if (PQpipelineStatus(c) == PQ_PIPELINE_OFF) return HV_OK;
    if (PQpipelineSync(c) != 1) {
        rc = fail_res(&pdb->base, NULL);
        pdb->queued = 0;
        return rc;
    }
    for (int i = 0; i < pdb->queued; i++) {
        while ((r = PQgetResult(c)) != NULL) {
            if (PQresultStatus(r) == PGRES_FATAL_ERROR && rc == HV_OK) rc = fail_res(&pdb->base, r);
            PQclear(r);
        }
    }
    pdb->queued = 0;
    for (;;) {
        ExecStatusType es;
        r = PQgetResult(c);
        if (r == NULL) {
            if (rc == HV_OK) rc = fail_res(&pdb->base, NULL);
            break;
        }
        es = PQresultStatus(r);
        if (es == PGRES_FATAL_ERROR && rc == HV_OK) rc = fail_res(&pdb->base, r);
        PQclear(r);
        if (es == PGRES_PIPELINE_SYNC) break;
    }
    if (PQexitPipelineMode(c) != 1 && rc == HV_OK) rc = fail_res(&pdb->base, NULL);
    return rc;
}

static int pg_flush(hv_db_t *db) { return drain(PDB(db)); }

static int pg_exec(hv_db_t *db, const char *sql) {
    int drained = drain(PDB(db));
    PGresult *res;
    /* A failed queued statement fails the transaction: whatever comes next but a
     * rollback would be refused, or, for COMMIT, turned into a rollback. */
    if (drained != HV_OK && strncmp(sql, "ROLLBACK", 8) != 0) return drained;
    res = PQexec(PDB(db)->conn, sql);
    ExecStatusType s = PQresultStatus(res);
    int rc = HV_OK;
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_EMPTY_QUERY)
        rc = fail_res(db, res);
    PQclear(res);
    return rc;
}

static int pg_begin(hv_db_t *db) { return pg_exec(db, "BEGIN"); }

static void pg_close(hv_db_t *db) {
    (void)drain(PDB(db));
    PQfinish(PDB(db)->conn);
    hv_buf_release(&PDB(db)->deferred);
    hv_free(db);
}

/* Sends the deferred DEALLOCATEs unless the transaction has failed (they would fail too). */
static void flush_deferred(pg_db_t *db) {
    PGTransactionStatusType ts;
    PGresult *res;
    if (db->deferred.len == 0) return;
    if (drain(db) != HV_OK) return;
    ts = PQtransactionStatus(db->conn);
    if (ts != PQTRANS_IDLE && ts != PQTRANS_INTRANS) return;
    res = PQexec(db->conn, db->deferred.data);
    PQclear(res);
    hv_buf_reset(&db->deferred);
}

static void stmt_free(pg_stmt_t *s) {
    int i;
    if (s == NULL) return;
    PQclear(s->res);
    for (i = 0; s->bufs != NULL && i < s->nparams; i++) hv_buf_release(&s->bufs[i]);
    for (i = 0; i < s->ndecoded; i++) hv_buf_release(&s->decoded[i]);
    hv_free(s->values);
    hv_free(s->lengths);
    hv_free(s->formats);
    hv_free(s->bufs);
    hv_free(s->decoded);
    hv_free(s->decoded_row);
    hv_free(s->base.sql);
    hv_free(s);
}

static int pg_prepare(hv_db_t *db, const char *sql, int nparams, hv_db_stmt_t **out) {
    pg_db_t *pdb = PDB(db);
    pg_stmt_t *s = NULL;
    PGresult *res = NULL;
    int rc = drain(pdb), i;
    if (rc != HV_OK) return rc;
    rc = HV_ENOMEM;
    flush_deferred(pdb);
    s = hv_calloc(1, sizeof(*s));
    if (s == NULL) goto out;
    s->nparams = nparams;
    if (nparams > 0) {
        s->values = hv_calloc((size_t)nparams, sizeof(*s->values));
        s->lengths = hv_calloc((size_t)nparams, sizeof(*s->lengths));
        s->formats = hv_calloc((size_t)nparams, sizeof(*s->formats));
        s->bufs = hv_calloc((size_t)nparams, sizeof(*s->bufs));
        if (s->values == NULL || s->lengths == NULL || s->formats == NULL || s->bufs == NULL)
            goto out;
        for (i = 0; i < nparams; i++) hv_buf_init(&s->bufs[i], 0);
    }
    snprintf(s->name, sizeof(s->name), "hv_%llu", (unsigned long long)++pdb->next_id);
    res = PQprepare(pdb->conn, s->name, sql, nparams, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = fail_res(db, res);
        goto out;
    }
    *out = &s->base;
    s = NULL;
    rc = HV_OK;
out:
    if (rc == HV_ENOMEM) hv__db_set_error(db, "out of memory");
    PQclear(res);
    stmt_free(s);
    return rc;
}

static void pg_finalize(hv_db_stmt_t *st) {
    pg_stmt_t *s = PST(st);
    pg_db_t *pdb = PDB(st->db);
    /* A closing connection takes its prepared statements with it. Otherwise the
     * server-side statement is released with the next command that is sent anyway,
     * since DEALLOCATE inside a failed transaction would itself fail. */
    if (!st->db->closing) hv_buf_printf(&pdb->deferred, "DEALLOCATE %s;", s->name);
    stmt_free(s);
}

static void pg_reset(hv_db_stmt_t *st) {
    pg_stmt_t *s = PST(st);
    int i;
    PQclear(s->res);
    s->res = NULL;
    s->state = 0;
    s->row = s->nrows = s->ncols = 0;
    for (i = 0; i < s->nparams; i++) {
        s->values[i] = NULL;
        s->lengths[i] = 0;
        s->formats[i] = 0;
    }
}

/* Copies n bytes into the parameter's own buffer (the caller's value is borrowed). */
static int set_param(pg_stmt_t *s, int idx, const void *p, size_t n, int format) {
    hv_buf_t *b = &s->bufs[idx - 1];
    int rc;
    if (n > INT32_MAX) return HV_ETOOBIG;
    hv_buf_reset(b);
    rc = hv_buf_reserve(b, n);
    if (rc == HV_OK) rc = hv_buf_append(b, p, n);
    if (rc != HV_OK) {
        hv__db_set_error(s->base.db, "cannot bind $%d: %s", idx, hv_strerror(rc));
        return rc;
    }
    s->values[idx - 1] = b->data;
    s->lengths[idx - 1] = (int)n;
    s->formats[idx - 1] = format;
    return HV_OK;
}

static int pg_bind_text(hv_db_stmt_t *st, int idx, const char *str, size_t n) {
    /* Text parameters travel NUL-terminated, and PostgreSQL text cannot hold NUL. */
    if (memchr(str, '\0', n) != NULL) {
        hv__db_set_error(st->db, "text for $%d contains a zero byte (bind it as a blob)", idx);
        return HV_EINVAL;
    }
    return set_param(PST(st), idx, str, n, 0);
}

static int pg_bind_blob(hv_db_stmt_t *st, int idx, const void *p, size_t n) {
    return set_param(PST(st), idx, p, n, 1);
}

static int pg_bind_int64(hv_db_stmt_t *st, int idx, int64_t v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
    return set_param(PST(st), idx, tmp, (size_t)n, 0);
}

static int pg_bind_double(hv_db_stmt_t *st, int idx, double v) {
    char tmp[40];
    int n;
    if (isnan(v)) n = snprintf(tmp, sizeof(tmp), "NaN");
    else if (isinf(v)) n = snprintf(tmp, sizeof(tmp), "%sInfinity", v < 0 ? "-" : "");
    else n = snprintf(tmp, sizeof(tmp), "%.17g", v);
    return set_param(PST(st), idx, tmp, (size_t)n, 0);
}

static int pg_bind_null(hv_db_stmt_t *st, int idx) {
    PST(st)->values[idx - 1] = NULL;
    PST(st)->lengths[idx - 1] = 0;
    PST(st)->formats[idx - 1] = 0;
    return HV_OK;
}

/* Makes sure there is a decode buffer per column for a result of ncols columns. */
static int ensure_decoded(pg_stmt_t *s, int ncols) {
    hv_buf_t *d;
    int *r, i;
    if (ncols <= s->ndecoded) {
        for (i = 0; i < s->ndecoded; i++) s->decoded_row[i] = -1;
        return HV_OK;
    }
    d = hv_realloc(s->decoded, (size_t)ncols * sizeof(*d));
    if (d == NULL) return HV_ENOMEM;
    s->decoded = d;
    r = hv_realloc(s->decoded_row, (size_t)ncols * sizeof(*r));
    if (r == NULL) return HV_ENOMEM;
    s->decoded_row = r;
    for (i = s->ndecoded; i < ncols; i++) hv_buf_init(&s->decoded[i], 0);
    s->ndecoded = ncols;
    for (i = 0; i < ncols; i++) s->decoded_row[i] = -1;
    return HV_OK;
}

static int pg_step(hv_db_stmt_t *st) {
    pg_stmt_t *s = PST(st);
    pg_db_t *pdb = PDB(st->db);
    if (s->state == 0) {
        ExecStatusType es;
        int rc = drain(pdb);
        if (rc != HV_OK) {
            s->state = 2;
            return rc;
        }
        s->res = PQexecPrepared(pdb->conn, s->name, s->nparams, s->values, s->lengths, s->formats, 0);
        es = PQresultStatus(s->res);
        if (es != PGRES_TUPLES_OK && es != PGRES_COMMAND_OK && es != PGRES_EMPTY_QUERY) {
            rc = fail_res(st->db, s->res);
            PQclear(s->res);
            s->res = NULL;
            s->state = 2;
            return rc;
        }
        {
            /* Only data-changing commands set the change count (engine.h contract). */
            const char *tag = PQcmdStatus(s->res);
            if (strncmp(tag, "INSERT", 6) == 0 || strncmp(tag, "UPDATE", 6) == 0 ||
                strncmp(tag, "DELETE", 6) == 0 || strncmp(tag, "MERGE", 5) == 0)
                pdb->changes = strtoll(PQcmdTuples(s->res), NULL, 10);
        }
        s->nrows = PQntuples(s->res);
        s->row = -1;
        s->state = 1;
        s->ncols = PQnfields(s->res);
        if (ensure_decoded(s, s->ncols) != HV_OK) {
            hv__db_set_error(st->db, "out of memory");
            s->state = 2;
            return HV_ENOMEM;
        }
    }
    if (s->state == 1) {
        s->row++;
        if (s->row < s->nrows) return HV_DB_ROW;
        s->state = 2;
    }
    return HV_OK;
}

static int pg_step_later(hv_db_stmt_t *st) {
    pg_stmt_t *s = PST(st);
    pg_db_t *pdb = PDB(st->db);
    if (PQpipelineStatus(pdb->conn) == PQ_PIPELINE_OFF) {
        flush_deferred(pdb);
        if (PQenterPipelineMode(pdb->conn) != 1) return fail_res(st->db, NULL);
    }
    s->state = 2; /* no rows: a step now is done */
    if (PQsendQueryPrepared(pdb->conn, s->name, s->nparams, s->values, s->lengths, s->formats, 0) != 1) {
        int rc = fail_res(st->db, NULL);
        (void)drain(pdb);
        return rc;
    }
    if (++pdb->queued >= PIPE_MAX) return drain(pdb);
    return HV_OK;
}

static int on_row(pg_stmt_t *s, int col) {
    return s->state == 1 && s->res != NULL && s->row >= 0 && s->row < s->nrows && col < s->ncols;
}

static int pg_column_count(hv_db_stmt_t *st) {
    pg_stmt_t *s = PST(st);
    return s->res != NULL ? PQnfields(s->res) : 0;
}

static int pg_column_is_null(hv_db_stmt_t *st, int col) {
    pg_stmt_t *s = PST(st);
    if (!on_row(s, col)) return 1;
    return PQgetisnull(s->res, s->row, col);
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes a hex-format bytea value ("\x…") of the current row into the column's buffer. */
static const char *decode_bytea(pg_stmt_t *s, int col, size_t *len) {
    const char *v = PQgetvalue(s->res, s->row, col);
    size_t n = (size_t)PQgetlength(s->res, s->row, col), i;
    hv_buf_t *b = &s->decoded[col];
    if (s->decoded_row[col] == s->row) {
        *len = b->len;
        return b->data;
    }
    if (n < 2 || v[0] != '\\' || v[1] != 'x' || (n % 2) != 0) return NULL;
    hv_buf_reset(b);
    if (hv_buf_reserve(b, (n - 2) / 2) != HV_OK) return NULL;
    for (i = 2; i < n; i += 2) {
        int hi = hexval((unsigned char)v[i]), lo = hexval((unsigned char)v[i + 1]);
        if (hi < 0 || lo < 0) return NULL;
        b->data[b->len++] = (char)(hi << 4 | lo);
    }
    b->data[b->len] = '\0';
    s->decoded_row[col] = s->row;
    *len = b->len;
    return b->data;
}

static const char *pg_column_text(hv_db_stmt_t *st, int col, size_t *len) {
    pg_stmt_t *s = PST(st);
    if (!on_row(s, col) || PQgetisnull(s->res, s->row, col)) return NULL;
    if (PQftype(s->res, col) == BYTEAOID) return decode_bytea(s, col, len);
    *len = (size_t)PQgetlength(s->res, s->row, col);
    return PQgetvalue(s->res, s->row, col);
}

static const void *pg_column_blob(hv_db_stmt_t *st, int col, size_t *len) {
    return pg_column_text(st, col, len);
}

static int64_t pg_column_int64(hv_db_stmt_t *st, int col) {
    pg_stmt_t *s = PST(st);
    const char *v;
    if (!on_row(s, col) || PQgetisnull(s->res, s->row, col)) return 0;
    v = PQgetvalue(s->res, s->row, col);
    if (PQftype(s->res, col) == BOOLOID) return v[0] == 't';
    return (int64_t)strtoll(v, NULL, 10);
}

static double pg_column_double(hv_db_stmt_t *st, int col) {
    pg_stmt_t *s = PST(st);
    if (!on_row(s, col) || PQgetisnull(s->res, s->row, col)) return 0.0;
    return strtod(PQgetvalue(s->res, s->row, col), NULL);
}

static int64_t pg_changes(hv_db_t *db) { return PDB(db)->changes; }

static int pg_set_synchronous(hv_db_t *db, const char *mode) {
    /* FULL waits for the WAL flush; NORMAL and OFF may lose the last commits on a
     * crash but never corrupt (runtime-config-wal.html#GUC-SYNCHRONOUS-COMMIT). */
    return pg_exec(db, strcmp(mode, "FULL") == 0 ? "SET synchronous_commit = on"
                                                 : "SET synchronous_commit = off");
}

static const hv__db_ops_t pg_ops = {
    pg_close,        pg_exec,          pg_begin,          pg_prepare,        pg_finalize,
    pg_reset,        pg_bind_text,     pg_bind_blob,      pg_bind_int64,     pg_bind_double,
    pg_bind_null,    pg_step,          pg_column_count,   pg_column_is_null, pg_column_text,
    pg_column_blob,  pg_column_int64,  pg_column_double,  pg_changes,        pg_set_synchronous,
    pg_step_later,   pg_flush,
};

int hv__db_pg_open(const char *url, const char *name, hv_db_t **out, hv_error_t *err) {
    pg_db_t *db = NULL;
    char sql[256];
    int rc = HV_OK;
    db = hv_calloc(1, sizeof(*db));
    if (db == NULL) {
        hv_error_set(err, HV_ENOMEM, "db", "out of memory");
        return HV_ENOMEM;
    }
    db->base.ops = &pg_ops;
    db->base.kind = HV_DB_PG;
    snprintf(db->base.name, sizeof(db->base.name), "%s", name);
    hv_buf_init(&db->deferred, 0);
    db->conn = PQconnectdb(url);
    if (db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK) {
        /* The message names host and port, never the password. */
        hv__db_set_error(&db->base, "%s", db->conn != NULL ? PQerrorMessage(db->conn) : "out of memory");
        hv_error_set(err, HV_EDB, name, "cannot connect to PostgreSQL: %s", db->base.errmsg);
        rc = HV_EDB;
        goto out;
    }
    PQsetNoticeProcessor(db->conn, notice_drop, NULL);
    if (PQsetClientEncoding(db->conn, "UTF8") != 0) {
        hv__db_set_error(&db->base, "%s", PQerrorMessage(db->conn));
        rc = HV_EDB;
        hv_error_set(err, rc, name, "cannot set client encoding: %s", db->base.errmsg);
        goto out;
    }
    /* name is [a-z0-9_]+ (checked by db.c), so quoting it is enough. */
    snprintf(sql, sizeof(sql),
             "SET client_min_messages = warning; SET bytea_output = hex;"
             "BEGIN; SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ");"
             "CREATE SCHEMA IF NOT EXISTS \"%s\"; COMMIT;"
             "SET search_path TO \"%s\"",
             name, name);
    rc = pg_exec(&db->base, sql);
    if (rc != HV_OK) {
        hv_error_set(err, rc, name, "cannot prepare schema: %s", db->base.errmsg);
        goto out;
    }
    *out = &db->base;
    db = NULL;
out:
    if (db != NULL) {
        PQfinish(db->conn);
        hv_buf_release(&db->deferred);
        hv_free(db);
    }
    return rc;
}
