/*
 * monitor.c — the engine's own endpoints: the monitoring service of the plan.
 *
 *   GET  /health       health check, draft-inadarei-api-health-check (application/health+json)
 *   GET  /metrics      Prometheus text exposition format 0.0.4
 *   GET  /errors       recent errors, kept in the engine's tables (newest first, ?limit=)
 *   POST /errors       a client reports an error: {"message", "source"?, "code"?, "trace_id"?}
 *   GET  /performance  latency percentiles per route since start
 *   POST /alerts       raise an operational alert: {"title", "severity"?, "message"?, "source"?}
 *   GET  /alerts       recent alerts (newest first, ?limit=)
 *
 * /health answers from state cached by the engine's tick (database round trip
 * through the storage thread, free disk space), so it costs no I/O per request.
 * Stored errors and alerts live in the engine's own tables (engine.db, or the
 * "engine" schema on PostgreSQL); ids are time-ordered (48-bit milliseconds, a
 * 16-bit sequence within the millisecond, 48 random bits; hex), so "newest first" is
 * ORDER BY id DESC on both backends (within one process; across processes sharing
 * PostgreSQL, records of the same millisecond are in no particular order).
 */
#include "config.h"
#include "engine/engine_int.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <pthread.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define MAX_FIELD 4096

static const char *const migrations[] = {
    "CREATE TABLE errors (id TEXT PRIMARY KEY, at TEXT NOT NULL, source TEXT NOT NULL,"
    " code TEXT NOT NULL, message TEXT NOT NULL, trace_id TEXT);"
    "CREATE TABLE alerts (id TEXT PRIMARY KEY, at TEXT NOT NULL, severity TEXT NOT NULL,"
    " title TEXT NOT NULL, message TEXT NOT NULL, source TEXT NOT NULL);",
    NULL,
};

typedef struct monitor {
    hv_engine_t *e;
    hv_storage_t *storage;
    int64_t keep;
    uint64_t disk_warn, disk_fail; /* health.disk_warn / health.disk_fail, bytes free */
    uint64_t last_check_ms;
    int db_probe_inflight;
    uint64_t db_probe_start;
    hv_counter_t *errors_dropped;
    hv_gauge_t *db_latency;
    /* the last /health answer, reused for up to HEALTH_CACHE_MS: load balancers and
     * orchestrators poll it often, and its state only changes on the engine's tick */
    hv_buf_t health_body;
    int health_status;
    uint64_t health_at_ns;
    /* disk and channel-directory readings, taken in the thread pool (no file-system calls
     * on the loop thread) and copied into the engine when the work completes */
    uv_work_t scan_req;
    int scan_inflight;
    int closing; /* freed by the scan's completion when it is still running */
    char *data_dir;
    char *channels_dir;
    struct scan_result {
        int disk_ok;
        uint64_t disk_free;
        int channels_ok;
        long channel_files;
    } scan;
} monitor_t;

#define HEALTH_CACHE_MS 250

/* A stored record: used for inserts and as the job of a listing. */
typedef struct record {
    monitor_t *m;
    hv_http_req_t *req; /* NULL for engine-internal inserts */
    int kind;           /* 0 error, 1 alert */
    char id[40];
    char at[40];
    char *f[4];          /* error: source, code, message, trace_id; alert: severity, title, message, source */
    int64_t limit;       /* listing */
    struct json_object *result;
} record_t;

static void record_free(record_t *r) {
    int i;
    if (r == NULL) return;
    for (i = 0; i < 4; i++) hv_free(r->f[i]);
    json_object_put(r->result);
    hv_free(r);
}

/* Ids of one process increase: two records made in the same millisecond (two POSTs in a
 * row on a fast machine) are told apart by a sequence number after the milliseconds, not by
 * the random bits, which would list them newest first only half the time. */
static void make_id(char *out) {
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static uint64_t last_ms;
    static unsigned seq;
    unsigned char b[14];
    uint64_t ms = hv_now_ms();
    int i;
    pthread_mutex_lock(&lock);
    if (ms > last_ms) {
        last_ms = ms;
        seq = 0;
    } else if (++seq > 0xFFFF) { /* 65,536 ids in one millisecond: borrow the next */
        last_ms++;
        seq = 0;
    }
    ms = last_ms;
    b[6] = (unsigned char)(seq >> 8);
    b[7] = (unsigned char)seq;
    pthread_mutex_unlock(&lock);
    for (i = 0; i < 6; i++) b[i] = (unsigned char)(ms >> (8 * (5 - i)));
    hv_random_fast(b + 8, 6);
    hv_hex(b, sizeof(b), out);
}

static char *clip(const char *s) {
    size_t n;
    if (s == NULL) return hv_strdup("");
    n = strlen(s);
    return hv_strndup(s, n > MAX_FIELD ? MAX_FIELD : n);
}

/* A new record stamped now with a fresh id; the four fields are copied (clipped). */
static record_t *record_new(monitor_t *m, hv_http_req_t *req, int kind, const char *f0,
                            const char *f1, const char *f2, const char *f3) {
    record_t *r = hv_calloc(1, sizeof(*r));
    if (r == NULL) return NULL;
    r->m = m;
    r->req = req;
    r->kind = kind;
    make_id(r->id);
    hv_time_rfc3339(hv_now_ms(), r->at, sizeof(r->at));
    r->f[0] = clip(f0);
    r->f[1] = clip(f1);
    r->f[2] = clip(f2);
    r->f[3] = clip(f3);
    return r;
}

/* ---- storage jobs (storage thread) ---- */

static int job_insert(hv_db_t *db, void *arg) {
    record_t *r = arg;
    hv_db_stmt_t *st = NULL;
    const char *sql = r->kind == 0
                          ? "INSERT INTO errors (id, at, source, code, message, trace_id) VALUES ($1,$2,$3,$4,$5,$6)"
                          : "INSERT INTO alerts (id, at, severity, title, message, source) VALUES ($1,$2,$3,$4,$5,$6)";
    int i, rc = hv_db_prepare(db, sql, &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, r->id, strlen(r->id));
    hv_db_bind_text(st, 2, r->at, strlen(r->at));
    for (i = 0; i < 4; i++) {
        if (r->f[i] == NULL || (r->kind == 0 && i == 3 && r->f[i][0] == '\0')) hv_db_bind_null(st, 3 + i);
        else hv_db_bind_text(st, 3 + i, r->f[i], strlen(r->f[i]));
    }
    rc = hv_db_step(st);
    hv_db_done(st);
    if (rc < 0) return rc;
    if (r->kind == 0 && (r->id[11] & 0x0f) == 0) {
        /* now and then, keep only the newest `keep` errors */
        rc = hv_db_prepare(db,
                           hv_db_kind(db) == HV_DB_PG
                               ? "DELETE FROM errors WHERE id IN (SELECT id FROM errors ORDER BY id DESC OFFSET $1)"
                               : "DELETE FROM errors WHERE id IN (SELECT id FROM errors ORDER BY id DESC"
                                 " LIMIT -1 OFFSET $1)",
                           &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_int64(st, 1, r->m->keep);
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc < 0) return rc;
    }
    return HV_OK;
}

static int job_list(hv_db_t *db, void *arg) {
    record_t *r = arg;
    hv_db_stmt_t *st = NULL;
    const char *sql = r->kind == 0
                          ? "SELECT id, at, source, code, message, trace_id FROM errors ORDER BY id DESC LIMIT $1"
                          : "SELECT id, at, severity, title, message, source FROM alerts ORDER BY id DESC LIMIT $1";
    static const char *const enames[] = {"id", "time", "source", "code", "message", "trace_id"};
    static const char *const anames[] = {"id", "time", "severity", "title", "message", "source"};
    const char *const *names = r->kind == 0 ? enames : anames;
    struct json_object *arr = json_object_new_array();
    int rc, i;
    if (arr == NULL) return HV_ENOMEM;
    rc = hv_db_prepare(db, sql, &st);
    if (rc != HV_OK) {
        json_object_put(arr);
        return rc;
    }
    hv_db_bind_int64(st, 1, r->limit);
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        struct json_object *o = json_object_new_object();
        for (i = 0; i < 6; i++) {
            size_t len;
            const char *v = hv_db_column_text(st, i, &len);
            if (hv_db_column_is_null(st, i)) hv_json_set(o, names[i], NULL);
            else hv_json_set(o, names[i], json_object_new_string_len(v, (int)len));
        }
        json_object_array_add(arr, o);
    }
    hv_db_done(st);
    if (rc < 0) {
        json_object_put(arr);
        return rc;
    }
    r->result = arr;
    return HV_OK;
}

static int job_ping(hv_db_t *db, void *arg) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "SELECT 1", &st);
    (void)arg;
    if (rc != HV_OK) return rc;
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/* ---- completions (loop thread) ---- */

static void done_insert(int status, void *arg) {
    record_t *r = arg;
    if (r->req != NULL) {
        if (status != HV_OK) {
            hv_http_respond_error(r->req, 503, "storage_failed", "the record could not be stored: %s",
                                  hv_strerror(status));
        } else {
            struct json_object *o = json_object_new_object();
            hv_json_set_str(o, "id", r->id);
            hv_json_set_str(o, "time", r->at);
            hv_http_respond_json(r->req, 201, o);
        }
    }
    record_free(r);
}

static void done_list(int status, void *arg) {
    record_t *r = arg;
    if (status != HV_OK) {
        hv_http_respond_error(r->req, 503, "storage_failed", "cannot read: %s", hv_strerror(status));
    } else {
        struct json_object *o = json_object_new_object();
        hv_json_set(o, r->kind == 0 ? "errors" : "alerts", r->result);
        r->result = NULL;
        hv_http_respond_json(r->req, 200, o);
    }
    record_free(r);
}

static void done_ping(int status, void *arg) {
    monitor_t *m = arg;
    hv_engine_t *e = m->e;
    double ms = (double)(hv_mono_ns() - m->db_probe_start) / 1e6;
    m->db_probe_inflight = 0;
    e->db_status = status == HV_OK ? HV_HEALTH_PASS : HV_HEALTH_FAIL;
    if (status == HV_OK) snprintf(e->db_output, sizeof(e->db_output), "%.3f", ms);
    else snprintf(e->db_output, sizeof(e->db_output), "%s", hv_strerror(status));
    hv_gauge_set(m->db_latency, ms / 1000.0);
}

/* ---- engine errors ---- */

void hv_engine_report_error(hv_engine_t *e, const char *source, const char *code,
                            const char *message, const char *trace_id) {
    monitor_t *m = e->monitor;
    record_t *r;
    hv_counter_add(e->errors_total, 1);
    {
        hv_logrec_t *lr = hv_log_begin(HV_LOG_ERROR, "engine.error");
        hv_log_str(lr, "source", source);
        hv_log_str(lr, "code", code);
        hv_log_str(lr, "message", message);
        if (trace_id) hv_log_str(lr, "trace_id", trace_id);
        hv_log_end(lr);
    }
    if (m == NULL || m->storage == NULL) return;
    r = record_new(m, NULL, 0, source, code, message, trace_id);
    if (r == NULL) return;
    if (hv_storage_submit(m->storage, job_insert, done_insert, r) != HV_OK) {
        hv_counter_add(m->errors_dropped, 1);
        record_free(r);
    }
}

/* ---- handlers ---- */

static void add_check(struct json_object *checks, const char *name, const char *type, int status,
                      const char *value, const char *unit, const char *output, const char *now) {
    static const char *const st[] = {"pass", "warn", "fail"};
    struct json_object *arr = json_object_new_array(), *o = json_object_new_object();
    hv_json_set_str(o, "componentType", type);
    hv_json_set_str(o, "status", st[status]);
    if (value != NULL) hv_json_set(o, "observedValue", json_object_new_double_s(atof(value), value));
    if (unit != NULL) hv_json_set_str(o, "observedUnit", unit);
    if (output != NULL && output[0]) hv_json_set_str(o, "output", output);
    hv_json_set_str(o, "time", now);
    json_object_array_add(arr, o);
    hv_json_set(checks, name, arr);
}

static void h_health(hv_http_req_t *req, void *ud) {
    monitor_t *m = ud;
    hv_engine_t *e = m->e;
    uint64_t now_ns = hv_mono_ns();
    struct json_object *o, *checks;
    static const char *const st[] = {"pass", "warn", "fail"};
    char now[40], disk[32], out[256];
    int worst = HV_HEALTH_PASS;
    size_t i;
    const char *text;
    size_t len;
    if (m->health_body.len > 0 && !e->stopping &&
        now_ns - m->health_at_ns < (uint64_t)HEALTH_CACHE_MS * 1000000u) {
        hv_http_header_add(req, "Cache-Control", "no-store");
        hv_http_respond(req, m->health_status, "application/health+json", m->health_body.data,
                        m->health_body.len);
        return;
    }
    o = json_object_new_object();
    checks = json_object_new_object();
    hv_time_rfc3339(hv_now_ms(), now, sizeof(now));
    add_check(checks, "database:responseTime", "datastore", e->db_status,
              e->db_status == HV_HEALTH_FAIL ? NULL : e->db_output, e->db_status == HV_HEALTH_FAIL ? NULL : "ms",
              e->db_status == HV_HEALTH_FAIL ? e->db_output : (hv_engine_db_url(e) ? "postgresql" : "sqlite"), now);
    if (e->db_status > worst) worst = e->db_status;
    snprintf(disk, sizeof(disk), "%llu", (unsigned long long)e->disk_free);
    add_check(checks, "disk:free", "system", e->disk_status, disk, "bytes", e->data_dir, now);
    if (e->disk_status > worst) worst = e->disk_status;
    snprintf(disk, sizeof(disk), "%ld", e->channel_files);
    add_check(checks, "channels:files", "system", e->channels_status, disk, "files", e->channels_output, now);
    if (e->channels_status > worst) worst = e->channels_status;
    for (i = 0; i < e->nchecks; i++) {
        int s = HV_HEALTH_PASS;
        out[0] = '\0';
        e->checks[i].fn(e->checks[i].ud, &s, out, sizeof(out));
        if (s < HV_HEALTH_PASS || s > HV_HEALTH_FAIL) s = HV_HEALTH_FAIL;
        add_check(checks, e->checks[i].name, "component", s, NULL, NULL, out, now);
        if (s > worst) worst = s;
    }
    if (e->stopping) worst = HV_HEALTH_FAIL;
    hv_json_set_str(o, "status", st[worst]);
    hv_json_set_str(o, "version", "1");
    hv_json_set_str(o, "releaseId", PACKAGE_VERSION);
    hv_json_set_str(o, "serviceId", "holovitals");
    hv_json_set_str(o, "description", "HoloVitals integration engine");
    hv_json_set(o, "checks", checks);
    text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    m->health_status = worst == HV_HEALTH_FAIL ? 503 : 200;
    hv_buf_reset(&m->health_body);
    if (hv_buf_append(&m->health_body, text, len) == HV_OK) m->health_at_ns = now_ns;
    hv_http_header_add(req, "Cache-Control", "no-store");
    hv_http_respond(req, m->health_status, "application/health+json", text, len);
    json_object_put(o);
}

static double rss_bytes(void *ud) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    (void)ud;
    if (f == NULL) return 0;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    fclose(f);
    return (double)rss * (double)sysconf(_SC_PAGESIZE);
}

static double uptime_s(void *ud) {
    hv_engine_t *e = ud;
    return (double)(hv_now_ms() - e->started_ms) / 1000.0;
}

static double open_conns(void *ud) {
    hv_engine_t *e = ud;
    return e->http ? (double)hv__http_server_connections(e->http) : 0;
}

static double storage_queue(void *ud) {
    monitor_t *m = ud;
    return m->storage ? (double)hv_storage_queued(m->storage) : 0;
}

static void h_metrics(hv_http_req_t *req, void *ud) {
    monitor_t *m = ud;
    hv_buf_t out;
    hv_buf_init(&out, 0);
    hv_metrics_render(hv_engine_metrics(m->e), &out);
    hv_http_respond_buf(req, 200, "text/plain; version=0.0.4; charset=utf-8", &out);
}

static int64_t limit_param(hv_http_req_t *req, int64_t def, int64_t max, int *bad) {
    const char *v = hv_http_req_query_param(req, "limit");
    char *end;
    long long n;
    *bad = 0;
    if (v == NULL) return def;
    n = strtoll(v, &end, 10);
    if (end == v || *end != '\0' || n < 1 || n > max) {
        *bad = 1;
        return 0;
    }
    return n;
}

static void list_records(hv_http_req_t *req, monitor_t *m, int kind) {
    record_t *r;
    int bad, rc;
    int64_t limit = limit_param(req, 50, 1000, &bad);
    if (bad) {
        hv_http_respond_error(req, 400, "invalid_parameter", "limit must be an integer from 1 to 1000");
        return;
    }
    r = hv_calloc(1, sizeof(*r));
    if (r == NULL) {
        hv_http_respond_error(req, 503, "overloaded", "out of memory");
        return;
    }
    r->m = m;
    r->req = req;
    r->kind = kind;
    r->limit = limit;
    rc = hv_storage_submit(m->storage, job_list, done_list, r);
    if (rc != HV_OK) {
        record_free(r);
        hv_http_header_add(req, "Retry-After", "1");
        hv_http_respond_error(req, 503, "overloaded", "the storage queue is full");
    }
}

static void h_errors_get(hv_http_req_t *req, void *ud) { list_records(req, ud, 0); }
static void h_alerts_get(hv_http_req_t *req, void *ud) { list_records(req, ud, 1); }

/* Parses the body as a JSON object; answers 400/415 itself and returns NULL on failure. */
static struct json_object *json_body(hv_http_req_t *req) {
    size_t len;
    const char *body = hv_http_req_body(req, &len);
    const char *ct = hv_http_req_header(req, "content-type");
    struct json_object *o = NULL;
    hv_error_t err;
    if (ct != NULL && strncmp(ct, "application/json", 16) != 0 && strstr(ct, "+json") == NULL) {
        hv_http_respond_error(req, 415, "unsupported_media_type", "the body must be application/json");
        return NULL;
    }
    hv_error_clear(&err);
    if (hv_json_parse(body, len, "body", &o, &err) != HV_OK) {
        hv_http_respond_error(req, 400, "invalid_json", "line %d, column %d: %s", err.line, err.column,
                              err.message);
        return NULL;
    }
    if (!json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        hv_http_respond_error(req, 400, "invalid_json", "the body must be a JSON object");
        return NULL;
    }
    return o;
}

/* Reads optional string field `key`; answers 400 and returns -1 if present but not a string. */
static int str_field(hv_http_req_t *req, struct json_object *o, const char *key, const char **out) {
    struct json_object *v;
    *out = NULL;
    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null)) return 0;
    if (!json_object_is_type(v, json_type_string)) {
        hv_http_respond_error(req, 400, "invalid_field", "\"%s\" must be a string", key);
        return -1;
    }
    *out = json_object_get_string(v);
    return 0;
}

static void submit_record(hv_http_req_t *req, monitor_t *m, record_t *r) {
    int rc = hv_storage_submit(m->storage, job_insert, done_insert, r);
    if (rc != HV_OK) {
        record_free(r);
        hv_http_header_add(req, "Retry-After", "1");
        hv_http_respond_error(req, 503, "overloaded", "the storage queue is full");
    }
}

static void h_errors_post(hv_http_req_t *req, void *ud) {
    monitor_t *m = ud;
    struct json_object *o = json_body(req);
    const char *msg, *source, *code, *trace;
    record_t *r;
    if (o == NULL) return;
    if (str_field(req, o, "message", &msg) || str_field(req, o, "source", &source) ||
        str_field(req, o, "code", &code) || str_field(req, o, "trace_id", &trace))
        goto out;
    if (msg == NULL || msg[0] == '\0') {
        hv_http_respond_error(req, 400, "missing_field", "\"message\" is required");
        goto out;
    }
    r = record_new(m, req, 0, source ? source : "client", code ? code : "client_error", msg,
                   trace ? trace : hv_http_req_trace_id(req));
    if (r == NULL) {
        hv_http_respond_error(req, 503, "overloaded", "out of memory");
        goto out;
    }
    hv_counter_add(m->e->errors_total, 1);
    submit_record(req, m, r);
out:
    json_object_put(o);
}

static void h_alerts_post(hv_http_req_t *req, void *ud) {
    monitor_t *m = ud;
    struct json_object *o = json_body(req);
    const char *title, *severity, *msg, *source;
    record_t *r;
    char labels[64];
    if (o == NULL) return;
    if (str_field(req, o, "title", &title) || str_field(req, o, "severity", &severity) ||
        str_field(req, o, "message", &msg) || str_field(req, o, "source", &source))
        goto out;
    if (title == NULL || title[0] == '\0') {
        hv_http_respond_error(req, 400, "missing_field", "\"title\" is required");
        goto out;
    }
    if (severity == NULL) severity = "warning";
    if (strcmp(severity, "critical") != 0 && strcmp(severity, "warning") != 0 &&
        strcmp(severity, "info") != 0) {
        hv_http_respond_error(req, 400, "invalid_field",
                              "\"severity\" must be one of critical, warning, info");
        goto out;
    }
    r = record_new(m, req, 1, severity, title, msg ? msg : "", source ? source : "api");
    if (r == NULL) {
        hv_http_respond_error(req, 503, "overloaded", "out of memory");
        goto out;
    }
    snprintf(labels, sizeof(labels), "severity=\"%s\"", severity);
    hv_counter_add(hv_metrics_counter(hv_engine_metrics(m->e), "hv_alerts_total",
                                      "Operational alerts raised, by severity.", labels),
                   1);
    {
        hv_logrec_t *lr = hv_log_begin(HV_LOG_WARN, "alert.raised");
        hv_log_str(lr, "severity", severity);
        hv_log_str(lr, "id", r->id);
        hv_log_end(lr);
    }
    submit_record(req, m, r);
out:
    json_object_put(o);
}

typedef struct perf_ctx {
    struct json_object *arr;
} perf_ctx_t;

static void perf_route(hv__route_t *rt, void *ud) {
    perf_ctx_t *pc = ud;
    struct json_object *o;
    static const struct { const char *name; double q; } qs[] = {
        {"p50_ms", 0.5}, {"p90_ms", 0.9}, {"p99_ms", 0.99}, {"p999_ms", 0.999}};
    size_t i;
    if (rt->latency.count == 0) return;
    o = json_object_new_object();
    hv_json_set_str(o, "route", rt->pattern);
    hv_json_set_int(o, "count", (int64_t)rt->latency.count);
    for (i = 0; i < HV_ARRAY_LEN(qs); i++)
        hv_json_set(o, qs[i].name, json_object_new_double(hv__latency_quantile(&rt->latency, qs[i].q) / 1000.0));
    json_object_array_add(pc->arr, o);
}

static void h_performance(hv_http_req_t *req, void *ud) {
    monitor_t *m = ud;
    struct json_object *o = json_object_new_object();
    perf_ctx_t pc;
    char since[40];
    pc.arr = json_object_new_array();
    hv__router_each(hv_engine_router(m->e), perf_route, &pc);
    hv_time_rfc3339(m->e->started_ms, since, sizeof(since));
    hv_json_set_str(o, "since", since);
    hv_json_set(o, "routes", pc.arr);
    hv_http_respond_json(req, 200, o);
}

/* Thread pool: reads the free space of the data directory and counts channel files. */
static void scan_fs(monitor_t *m) {
    struct statvfs sv;
    DIR *d;
    m->scan.disk_ok = statvfs(m->data_dir, &sv) == 0;
    m->scan.disk_free = m->scan.disk_ok ? (uint64_t)sv.f_bavail * sv.f_frsize : 0;
    m->scan.channel_files = 0;
    d = opendir(m->channels_dir);
    m->scan.channels_ok = d != NULL;
    if (d != NULL) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            size_t len = strlen(de->d_name);
            if (de->d_name[0] != '.' && len > 5 && strcmp(de->d_name + len - 5, ".json") == 0)
                m->scan.channel_files++;
        }
        closedir(d);
    }
}

static void monitor_release(monitor_t *m) {
    hv_free(m->data_dir);
    hv_free(m->channels_dir);
    hv_free(m);
}

/* Loop thread: publishes a scan into the engine's cached health state. */
static void apply_scan(monitor_t *m) {
    hv_engine_t *e = m->e;
    e->disk_free = m->scan.disk_free;
    e->disk_status = !m->scan.disk_ok                  ? HV_HEALTH_FAIL
                     : e->disk_free < m->disk_fail ? HV_HEALTH_FAIL
                     : e->disk_free < m->disk_warn ? HV_HEALTH_WARN
                                                   : HV_HEALTH_PASS;
    e->channel_files = m->scan.channel_files;
    e->channels_status = m->scan.channels_ok ? HV_HEALTH_PASS : HV_HEALTH_WARN;
    snprintf(e->channels_output, sizeof(e->channels_output), "%s%s", m->channels_dir,
             m->scan.channels_ok ? "" : " cannot be read");
}

static void on_scan_work(uv_work_t *w) { scan_fs(w->data); }

static void on_scan_done(uv_work_t *w, int status) {
    monitor_t *m = w->data;
    m->scan_inflight = 0;
    if (m->closing) {
        monitor_release(m);
        return;
    }
    if (status == 0) apply_scan(m);
}

void hv__monitor_tick(hv_engine_t *e) {
    monitor_t *m = e->monitor;
    uint64_t now = hv_now_ms();
    if (m == NULL || now - m->last_check_ms < 5000) return;
    m->last_check_ms = now;
    if (!m->scan_inflight) {
        m->scan_req.data = m;
        if (uv_queue_work(&e->loop, &m->scan_req, on_scan_work, on_scan_done) == 0) m->scan_inflight = 1;
    }
    if (!m->db_probe_inflight && m->storage != NULL) {
        m->db_probe_start = hv_mono_ns();
        if (hv_storage_submit(m->storage, job_ping, done_ping, m) == HV_OK) m->db_probe_inflight = 1;
    }
}

int hv__monitor_init(hv_engine_t *e) {
    monitor_t *m = NULL;
    hv_db_t *db = NULL;
    hv_error_t err;
    char msg[1024];
    hv_router_t *r = e->router;
    hv_metrics_t *mt = e->metrics;
    int rc;

    hv_error_clear(&err);
    m = hv_calloc(1, sizeof(*m));
    if (m == NULL) return HV_ENOMEM;
    m->e = e;
    m->keep = hv_config_int(e->config, "errors.keep");
    m->disk_warn = hv_config_size(e->config, "health.disk_warn");
    m->disk_fail = hv_config_size(e->config, "health.disk_fail");
    m->data_dir = hv_strdup(e->data_dir);
    m->channels_dir = hv_strdup(hv_config_str(e->config, "channels"));
    if (m->data_dir == NULL || m->channels_dir == NULL) {
        monitor_release(m);
        return HV_ENOMEM;
    }
    rc = hv_db_open(hv_engine_db_url(e), e->data_dir, "engine", &db, &err);
    if (rc == HV_OK) rc = hv_db_migrate(db, "engine", migrations, &err);
    if (rc != HV_OK) {
        hv_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "holovitals: cannot open the engine database: %s\n", msg);
        hv_db_close(db);
        monitor_release(m);
        return rc;
    }
    rc = hv_storage_new(&e->loop, db, 4096, 256, &m->storage);
    if (rc != HV_OK) {
        hv_db_close(db);
        monitor_release(m);
        return rc;
    }
    e->monitor = m;
    e->db_status = HV_HEALTH_PASS;
    snprintf(e->db_output, sizeof(e->db_output), "0");
    /* first readings now, before the loop runs (blocking is fine at start-up) */
    scan_fs(m);
    apply_scan(m);
    m->last_check_ms = 0;
    hv__monitor_tick(e);

    e->errors_total = hv_metrics_counter(mt, "hv_errors_total", "Errors recorded (engine and reported).", NULL);
    m->errors_dropped = hv_metrics_counter(mt, "hv_errors_dropped_total",
                                           "Errors not stored because the storage queue was full.", NULL);
    m->db_latency = hv_metrics_gauge(mt, "hv_engine_db_probe_seconds",
                                     "Round trip of the last database probe through the storage thread.", NULL);
    hv_metrics_gauge_fn(mt, "process_resident_memory_bytes", "Resident memory size in bytes.", NULL, rss_bytes, NULL);
    hv_metrics_gauge_fn(mt, "process_uptime_seconds", "Seconds since the engine started.", NULL, uptime_s, e);
    hv_metrics_gauge_fn(mt, "hv_http_connections", "Open HTTP connections (at scrape time).", NULL, open_conns, e);
    hv_metrics_gauge_fn(mt, "hv_engine_storage_queue", "Jobs waiting for the engine storage thread.", NULL,
                        storage_queue, m);

    rc = hv_router_add(r, HV_HTTP_GET, "/health", h_health, m);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/metrics", h_metrics, m);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/errors", h_errors_get, m);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/errors", h_errors_post, m);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/performance", h_performance, m);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/alerts", h_alerts_post, m);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/alerts", h_alerts_get, m);
    return rc;
}

void hv__monitor_free(hv_engine_t *e) {
    monitor_t *m = e->monitor;
    if (m == NULL) return;
    e->monitor = NULL;
    hv_buf_release(&m->health_body);
    hv_storage_free(m->storage);
    m->storage = NULL;
    if (m->scan_inflight) {
        /* cancelled or still running, its completion runs on the loop and frees m */
        uv_cancel((uv_req_t *)&m->scan_req);
        m->closing = 1;
        return;
    }
    monitor_release(m);
}
