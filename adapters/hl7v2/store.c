/*
 * store.c — the durable store of inbound HL7 v2 messages, and its HTTP view.
 *
 * Every message received is written here before it is acknowledged: the write is
 * a storage job (engine storage thread, group commit); the ACK goes out from the
 * job's done callback, i.e. after the batch holding the message has committed
 * with the configured durability (synchronous FULL by default).
 *
 * Table hl7v2_messages (database "hl7v2": <data>/hl7v2.db, or schema hl7v2):
 *   id               integer key, increasing in arrival order
 *   channel          "hl7v2-inbound" until the channel engine lands
 *   control_id       MSH-10 as received (raw)
 *   sending_app      MSH-3, sending_facility MSH-4 (raw)
 *   type             MSH-9 as "ADT^A01" (first two components, raw)
 *   received_at      ms since the epoch
 *   raw              the message bytes exactly as received
 *   ack              the ACK bytes sent for it (sent again to a resend)
 *   status           "received" (later steps move it on)
 *   resend_count     how many duplicates of it arrived within the window
 *
 * Duplicates: a message whose (sending_app, sending_facility, control_id) matches
 * one received within the dedup window is not stored again; the original's
 * resend_count grows and the original ACK is returned. The check and the insert
 * run in the same storage job, and jobs run one at a time, so two copies in one
 * batch are caught too (within one process).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "adapters/hl7v2/hl7v2_int.h"

static const char *const migrations_sqlite[] = {
    "CREATE TABLE hl7v2_messages ("
    " id INTEGER PRIMARY KEY,"
    " channel TEXT NOT NULL,"
    " control_id TEXT NOT NULL,"
    " sending_app TEXT NOT NULL,"
    " sending_facility TEXT NOT NULL,"
    " type TEXT NOT NULL,"
    " received_at INTEGER NOT NULL,"
    " raw BLOB NOT NULL,"
    " ack BLOB,"
    " status TEXT NOT NULL,"
    " resend_count INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX hl7v2_messages_dedup ON hl7v2_messages"
    " (control_id, sending_app, sending_facility, received_at);"
    "CREATE INDEX hl7v2_messages_channel ON hl7v2_messages (channel, id);",
    NULL,
};

static const char *const migrations_pg[] = {
    "CREATE TABLE hl7v2_messages ("
    " id BIGSERIAL PRIMARY KEY,"
    " channel TEXT NOT NULL,"
    " control_id TEXT NOT NULL,"
    " sending_app TEXT NOT NULL,"
    " sending_facility TEXT NOT NULL,"
    " type TEXT NOT NULL,"
    " received_at BIGINT NOT NULL,"
    " raw BYTEA NOT NULL,"
    " ack BYTEA,"
    " status TEXT NOT NULL,"
    " resend_count INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX hl7v2_messages_dedup ON hl7v2_messages"
    " (control_id, sending_app, sending_facility, received_at);"
    "CREATE INDEX hl7v2_messages_channel ON hl7v2_messages (channel, id);",
    NULL,
};

int hv__hl7v2_store_open(hv_engine_t *e, const hv__hl7v2_conf_t *conf, hv_storage_t **out) {
    hv_db_t *db = NULL;
    hv_storage_t *st = NULL;
    hv_error_t err;
    int rc;
    hv_error_clear(&err);
    rc = hv_db_open(hv_engine_db_url(e), hv_engine_data_dir(e), "hl7v2", &db, &err);
    if (rc != HV_OK) goto fail;
    rc = hv_db_set_synchronous(db, conf->synchronous);
    if (rc != HV_OK) goto fail;
    rc = hv_db_migrate(db, "hl7v2",
                       hv_db_kind(db) == HV_DB_PG ? migrations_pg : migrations_sqlite, &err);
    if (rc != HV_OK) goto fail;
    rc = hv_storage_new(hv_engine_loop(e), db, conf->store_queue, conf->store_batch, &st);
    db = NULL; /* owned by the storage now, even on failure */
    if (rc != HV_OK) goto fail;
    *out = st;
    return HV_OK;
fail:
    {
        hv_logrec_t *r = hv_log_begin(HV_LOG_ERROR, "hl7v2.store.open_failed");
        if (r) {
            hv_log_str(r, "error", hv_strerror(rc));
            hv_log_str(r, "detail", err.message[0] ? err.message : (db ? hv_db_errmsg(db) : ""));
            hv_log_end(r);
        }
    }
    hv_db_close(db);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Inserting with dedup                                                      */
/* ------------------------------------------------------------------------- */

/* Runs on the storage thread. */
static int insert_job(hv_db_t *db, void *arg) {
    hv__hl7v2_rec_t *r = arg;
    hv_db_stmt_t *st = NULL;
    int rc;

    if (r->dedup_window_ms > 0) {
        rc = hv_db_prepare(db,
                           "SELECT id, ack FROM hl7v2_messages WHERE control_id = $1 AND"
                           " sending_app = $2 AND sending_facility = $3 AND received_at >= $4"
                           " ORDER BY id LIMIT 1",
                           &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_text(st, 1, r->control_id, strlen(r->control_id));
        hv_db_bind_text(st, 2, r->sending_app, strlen(r->sending_app));
        hv_db_bind_text(st, 3, r->sending_facility, strlen(r->sending_facility));
        hv_db_bind_int64(st, 4, (int64_t)(r->received_at - r->dedup_window_ms));
        rc = hv_db_step(st);
        if (rc == HV_DB_ROW) {
            size_t n = 0;
            const void *ack = hv_db_column_blob(st, 1, &n);
            r->id = hv_db_column_int64(st, 0);
            r->duplicate = 1;
            hv_buf_reset(&r->orig_ack);
            if (ack != NULL && n > 0 && (rc = hv_buf_append(&r->orig_ack, ack, n)) != HV_OK) {
                hv_db_done(st);
                return rc;
            }
            hv_db_done(st);
            rc = hv_db_prepare(db,
                               "UPDATE hl7v2_messages SET resend_count = resend_count + 1"
                               " WHERE id = $1",
                               &st);
            if (rc != HV_OK) return rc;
            hv_db_bind_int64(st, 1, r->id);
            rc = hv_db_step(st);
            hv_db_done(st);
            return rc < 0 ? rc : HV_OK;
        }
        hv_db_done(st);
        if (rc < 0) return rc;
    }
    rc = hv_db_prepare(db,
                       "INSERT INTO hl7v2_messages (channel, control_id, sending_app,"
                       " sending_facility, type, received_at, raw, ack, status)"
                       " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'received') RETURNING id",
                       &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, HV__HL7V2_CHANNEL, strlen(HV__HL7V2_CHANNEL));
    hv_db_bind_text(st, 2, r->control_id, strlen(r->control_id));
    hv_db_bind_text(st, 3, r->sending_app, strlen(r->sending_app));
    hv_db_bind_text(st, 4, r->sending_facility, strlen(r->sending_facility));
    hv_db_bind_text(st, 5, r->type, strlen(r->type));
    hv_db_bind_int64(st, 6, (int64_t)r->received_at);
    hv_db_bind_blob(st, 7, r->raw, r->raw_len);
    hv_db_bind_blob(st, 8, r->ack.data != NULL ? r->ack.data : "", r->ack.len);
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        r->id = hv_db_column_int64(st, 0);
        rc = HV_OK;
    } else if (rc == HV_OK) {
        rc = HV_EDB;
    }
    hv_db_done(st);
    return rc;
}

int hv__hl7v2_store_submit(hv_storage_t *s, hv__hl7v2_rec_t *r, hv_storage_done_cb done) {
    return hv_storage_submit(s, insert_job, done, r);
}

/* ------------------------------------------------------------------------- */
/* HTTP: GET /channels/hl7v2-inbound/messages[/:id]                           */
/* ------------------------------------------------------------------------- */

typedef struct query {
    hv_http_req_t *req;
    int64_t id;      /* one message, or the cursor (0: from the newest) */
    int64_t limit;   /* list size; 0 for a single message */
    int found;
    hv_buf_t body;   /* JSON built on the storage thread */
} query_t;

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int put_base64(hv_buf_t *b, const unsigned char *p, size_t n) {
    size_t i;
    int rc = hv_buf_putc(b, '"');
    for (i = 0; rc == HV_OK && i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        char o[4];
        if (i + 1 < n) v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        o[0] = b64[(v >> 18) & 63];
        o[1] = b64[(v >> 12) & 63];
        o[2] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        o[3] = i + 2 < n ? b64[v & 63] : '=';
        rc = hv_buf_append(b, o, 4);
    }
    return rc == HV_OK ? hv_buf_putc(b, '"') : rc;
}

static int put_text_col(hv_buf_t *b, hv_db_stmt_t *st, int col) {
    size_t n = 0;
    const char *t = hv_db_column_text(st, col, &n);
    return hv_buf_json_str(b, t != NULL ? t : "", n);
}

static int put_summary(hv_buf_t *b, hv_db_stmt_t *st) {
    char ts[40];
    int rc;
    hv_time_rfc3339((uint64_t)hv_db_column_int64(st, 4), ts, sizeof(ts));
    rc = hv_buf_printf(b, "{\"id\":\"%lld\",\"control_id\":", (long long)hv_db_column_int64(st, 0));
    if (rc == HV_OK) rc = put_text_col(b, st, 1);
    if (rc == HV_OK) rc = hv_buf_puts(b, ",\"type\":");
    if (rc == HV_OK) rc = put_text_col(b, st, 2);
    if (rc == HV_OK) rc = hv_buf_puts(b, ",\"status\":");
    if (rc == HV_OK) rc = put_text_col(b, st, 3);
    if (rc == HV_OK) rc = hv_buf_printf(b, ",\"received_at\":\"%s\"", ts);
    return rc;
}

static int list_job(hv_db_t *db, void *arg) {
    query_t *q = arg;
    hv_db_stmt_t *st = NULL;
    int64_t n = 0, last = 0;
    int rc;
    rc = hv_db_prepare(db,
                       "SELECT id, control_id, type, status, received_at FROM hl7v2_messages"
                       " WHERE channel = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                       &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, HV__HL7V2_CHANNEL, strlen(HV__HL7V2_CHANNEL));
    hv_db_bind_int64(st, 2, q->id > 0 ? q->id : INT64_MAX);
    hv_db_bind_int64(st, 3, q->limit + 1);
    rc = hv_buf_puts(&q->body, "{\"messages\":[");
    while (rc == HV_OK && (rc = hv_db_step(st)) == HV_DB_ROW) {
        rc = HV_OK;
        if (n == q->limit) {
            rc = HV_OK; /* one more row exists: there is a next page */
            n++;
            break;
        }
        if (n > 0) rc = hv_buf_putc(&q->body, ',');
        if (rc == HV_OK) rc = put_summary(&q->body, st);
        if (rc == HV_OK) rc = hv_buf_putc(&q->body, '}');
        last = hv_db_column_int64(st, 0);
        n++;
    }
    hv_db_done(st);
    if (rc < 0) return rc;
    if (n > q->limit) rc = hv_buf_printf(&q->body, "],\"next\":\"%lld\"}", (long long)last);
    else rc = hv_buf_puts(&q->body, "],\"next\":null}");
    q->found = 1;
    return rc;
}

static int get_job(hv_db_t *db, void *arg) {
    query_t *q = arg;
    hv_db_stmt_t *st = NULL;
    int rc;
    rc = hv_db_prepare(db,
                       "SELECT id, control_id, type, status, received_at, sending_app,"
                       " sending_facility, resend_count, raw FROM hl7v2_messages"
                       " WHERE channel = $1 AND id = $2",
                       &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, HV__HL7V2_CHANNEL, strlen(HV__HL7V2_CHANNEL));
    hv_db_bind_int64(st, 2, q->id);
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        size_t n = 0;
        const void *raw = hv_db_column_blob(st, 8, &n);
        q->found = 1;
        rc = put_summary(&q->body, st);
        if (rc == HV_OK) rc = hv_buf_puts(&q->body, ",\"sending_application\":");
        if (rc == HV_OK) rc = put_text_col(&q->body, st, 5);
        if (rc == HV_OK) rc = hv_buf_puts(&q->body, ",\"sending_facility\":");
        if (rc == HV_OK) rc = put_text_col(&q->body, st, 6);
        if (rc == HV_OK)
            rc = hv_buf_printf(&q->body, ",\"resend_count\":%lld,\"size\":%zu",
                               (long long)hv_db_column_int64(st, 7), n);
        /* JSON text must be UTF-8: other bytes go as base64. */
        if (rc == HV_OK && hv_hl7v2_utf8_valid(raw, n)) {
            rc = hv_buf_puts(&q->body, ",\"raw\":");
            if (rc == HV_OK) rc = hv_buf_json_str(&q->body, raw, n);
        } else if (rc == HV_OK) {
            rc = hv_buf_puts(&q->body, ",\"raw\":null,\"raw_base64\":");
            if (rc == HV_OK) rc = put_base64(&q->body, raw, n);
        }
        if (rc == HV_OK) rc = hv_buf_putc(&q->body, '}');
    } else if (rc == HV_OK) {
        q->found = 0;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static void query_done(int status, void *arg) {
    query_t *q = arg;
    if (status != HV_OK)
        hv_http_respond_error(q->req, 503, "storage", "the message store is unavailable");
    else if (!q->found)
        hv_http_respond_error(q->req, 404, "not-found", "no such message");
    else
        hv_http_respond_buf(q->req, 200, "application/json", &q->body);
    hv_buf_release(&q->body);
    hv_free(q);
}

static void submit_query(hv_http_req_t *req, hv_storage_t *s, query_t *q, hv_storage_job_cb job) {
    int rc = hv_storage_submit(s, job, query_done, q);
    if (rc != HV_OK) {
        hv_http_respond_error(req, 503, "busy", "the message store is busy; retry");
        hv_buf_release(&q->body);
        hv_free(q);
    }
}

static int parse_id(const char *s, int64_t *out) {
    char *end = NULL;
    long long v;
    if (s == NULL || *s < '0' || *s > '9') return HV_EINVAL;
    v = strtoll(s, &end, 10);
    if (*end != 0 || v <= 0) return HV_EINVAL;
    *out = v;
    return HV_OK;
}

static void route_list(hv_http_req_t *req, void *ud) {
    hv__hl7v2_state_t *st = ud;
    const char *lim = hv_http_req_query_param(req, "limit");
    const char *cur = hv_http_req_query_param(req, "cursor");
    query_t *q;
    int64_t limit = 50, cursor = 0;
    if (st->storage == NULL) {
        hv_http_respond_error(req, 503, "unavailable", "the message store is not open");
        return;
    }
    if (lim != NULL && (parse_id(lim, &limit) != HV_OK || limit > 1000)) {
        hv_http_respond_error(req, 400, "invalid", "limit must be 1 to 1000");
        return;
    }
    if (cur != NULL && parse_id(cur, &cursor) != HV_OK) {
        hv_http_respond_error(req, 400, "invalid", "cursor is not valid");
        return;
    }
    q = hv_calloc(1, sizeof(*q));
    if (q == NULL) {
        hv_http_respond_error(req, 503, "memory", "out of memory");
        return;
    }
    q->req = req;
    q->id = cursor;
    q->limit = limit;
    hv_buf_init(&q->body, 0);
    submit_query(req, st->storage, q, list_job);
}

static void route_get(hv_http_req_t *req, void *ud) {
    hv__hl7v2_state_t *st = ud;
    query_t *q;
    int64_t id;
    if (parse_id(hv_http_req_param(req, "id"), &id) != HV_OK) {
        hv_http_respond_error(req, 404, "not-found", "no such message");
        return;
    }
    if (st->storage == NULL) {
        hv_http_respond_error(req, 503, "unavailable", "the message store is not open");
        return;
    }
    q = hv_calloc(1, sizeof(*q));
    if (q == NULL) {
        hv_http_respond_error(req, 503, "memory", "out of memory");
        return;
    }
    q->req = req;
    q->id = id;
    hv_buf_init(&q->body, 0);
    submit_query(req, st->storage, q, get_job);
}

int hv__hl7v2_routes_add(hv_engine_t *e, hv__hl7v2_state_t *st) {
    hv_router_t *r = hv_engine_router(e);
    int rc;
    if (r == NULL) return HV_OK;
    rc = hv_router_add(r, HV_HTTP_GET, "/channels/" HV__HL7V2_CHANNEL "/messages", route_list, st);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_GET, "/channels/" HV__HL7V2_CHANNEL "/messages/:id",
                           route_get, st);
    return rc;
}
