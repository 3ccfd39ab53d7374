/*
 * module.c — the ehr module: its settings, its database and storage thread, the
 * key that seals private keys and secrets, the channel sources `epic`, `cerner`
 * and `fhir-pull`, the scheduler of connections' syncs, and the resumption at
 * start of runs a crash interrupted (from their checkpoints).
 */
#include "config.h"
#include "adapters/ehr/ehr_int.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const hv_setting_t settings[] = {
    {"ehr.secret_key", NULL, HV_SET_STRING, "", NULL,
     "AES-256-GCM key sealing EHR private keys and client secrets: 64 hex digits; empty keeps a generated key in "
     "<data>/ehr-secret.key (mode 0600)"},
    {"ehr.timeout", NULL, HV_SET_DURATION, "60s", NULL, "time allowed for one request to an EHR"},
    {"ehr.retry_base", NULL, HV_SET_DURATION, "500ms", NULL,
     "first backoff after a 429, 5xx or transport failure (doubles per attempt, ±25% jitter)"},
    {"ehr.max_retry_after", NULL, HV_SET_DURATION, "120s", NULL, "longest Retry-After honoured"},
    {"ehr.max_attempts", NULL, HV_SET_INT, "6", NULL, "attempts per request before its page is an error"},
    {"ehr.max_pages", NULL, HV_SET_INT, "100000", NULL, "most search pages per resource type in one run"},
    {"ehr.max_page_bytes", NULL, HV_SET_SIZE, "64MiB", NULL, "largest search page (or other answer) kept in memory"},
    {"ehr.max_download_bytes", NULL, HV_SET_SIZE, "8GiB", NULL, "largest Bulk Data NDJSON file downloaded"},
    {"ehr.bulk_poll", NULL, HV_SET_DURATION, "2s", NULL, "bulk status polling interval when the server gives no Retry-After"},
    {"ehr.bulk_chunk_max", NULL, HV_SET_INT, "2500", NULL,
     "most NDJSON lines a Bulk sync writes in one store commit (1000-100000); above 1000, chunks grow from 1000 "
     "to it as the run fetches (a quarter of what it fetched): faster at scale; 1000 keeps chunks at 1000 (docs/ehr.md)"},
    {"ehr.token_renew", NULL, HV_SET_DURATION, "60s", NULL, "access tokens are renewed this long before they expire"},
    {"ehr.rate_limit", NULL, HV_SET_INT, "20", NULL, "default requests per second per connection (0: no limit)"},
    {"ehr.incremental_overlap", NULL, HV_SET_DURATION, "1m", NULL,
     "an incremental sync asks for changes since the last completed run's start minus this (clock skew)"},
    {"ehr.deletions", NULL, HV_SET_ENUM, "delete", "delete|keep",
     "resources a full sync no longer finds in the EHR: deleted locally, or kept (a warning of the run)"},
    {"ehr.id_reconcile", NULL, HV_SET_BOOL, "on", NULL,
     "incremental syncs of vendors without type history (Epic, Oracle Health) list the EHR's ids"
     " (_elements=id) after the changes and delete what is gone, as a full sync does"},
    {"ehr.defer_indexes", NULL, HV_SET_BOOL, "on", NULL,
     "a Bulk sync into an empty SQLite store drops the search tables' value indexes and builds them when it"
     " ends, as holovitals import does: faster at scale; searches meanwhile answer the same, slower (docs/ehr.md)"},
    {"ehr.lease_ttl", NULL, HV_SET_DURATION, "10m", NULL,
     "a sync holds its connection's lease this long past its last checkpoint (engines sharing a database)"},
    {"ehr.schedule_check", NULL, HV_SET_DURATION, "30s", NULL, "how often scheduled syncs are looked for"},
    {NULL, NULL, 0, NULL, NULL, NULL},
};

/* ---- the sealing key ---- */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int load_kek(hv__ehr_t *m, hv_error_t *err) {
    const char *hex = hv_config_str(hv_engine_config(m->e), "ehr.secret_key");
    char path[4096];
    size_t i;
    int fd, rc = HV_OK;
    if (hex != NULL && hex[0] != '\0') {
        if (strlen(hex) != 64) goto bad;
        for (i = 0; i < 32; i++) {
            int a = hexval(hex[2 * i]), b = hexval(hex[2 * i + 1]);
            if (a < 0 || b < 0) goto bad;
            m->kek[i] = (unsigned char)(a * 16 + b);
        }
        return HV_OK;
    }
    snprintf(path, sizeof(path), "%s/ehr-secret.key", hv_engine_data_dir(m->e));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, m->kek, 32);
        close(fd);
        if (n != 32) {
            hv_error_set(err, HV_ECONFIG, "ehr.secret_key", "%s is not a 32-byte key", path);
            return HV_ECONFIG;
        }
        return HV_OK;
    }
    if (hv_random_secure(m->kek, 32) != HV_OK) return HV_EIO;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, m->kek, 32) != 32 || fsync(fd) != 0) rc = HV_EIO;
    if (fd >= 0) close(fd);
    if (rc != HV_OK) {
        hv_error_set(err, HV_EIO, "ehr.secret_key", "cannot write %s: %s", path, strerror(errno));
        return rc;
    }
    hv_log(HV_LOG_WARN, "ehr.secret_key_generated",
           "ehr.secret_key is not set: EHR keys are sealed with a generated key kept in the data directory");
    return HV_OK;
bad:
    hv_error_set(err, HV_ECONFIG, "ehr.secret_key", "ehr.secret_key is 64 hexadecimal digits (32 bytes)");
    return HV_ECONFIG;
}

/* ---- channel sources ---- */

hv_channel_t *hv__ehr_channel_for(hv__ehr_t *m, const char *conn) {
    hv__ehr_binding_t *b;
    for (b = m->bindings; b != NULL; b = b->next)
        if (strcmp(b->conn, conn) == 0) return b->ch;
    return NULL;
}

static int src_check(struct json_object *conf, hv_error_t *err) {
    json_object_object_foreach(conf, k, v) {
        if (strcmp(k, "connection") == 0 && json_object_is_type(v, json_type_string) &&
            json_object_get_string_len(v) > 0 && json_object_get_string_len(v) < HV__EHR_ID_MAX)
            continue;
        hv_error_set(err, HV_ECONFIG, k,
                     strcmp(k, "connection") == 0 ? "\"connection\" is the id of an EHR connection (POST /ehr/connect)"
                                                  : "unknown key in an EHR source (known: connection)");
        return HV_ECONFIG;
    }
    if (hv_json_get_str(conf, "connection") == NULL) {
        hv_error_set(err, HV_ECONFIG, NULL, "an EHR source needs \"connection\"");
        return HV_ECONFIG;
    }
    return HV_OK;
}

typedef struct src {
    hv__ehr_t *m;
    hv__ehr_binding_t *b;
} src_t;

static int src_start(hv_channel_t *ch, struct json_object *conf, void **state, hv_error_t *err) {
    hv__ehr_t *m = hv_engine_module_state(hv_channel_engine(ch), "ehr");
    src_t *s;
    if (m == NULL) {
        hv_error_set(err, HV_ECONFIG, NULL, "the ehr module does not run in this process (--services)");
        return HV_ECONFIG;
    }
    s = hv_calloc(1, sizeof(*s));
    if (s == NULL) return HV_ENOMEM;
    s->b = hv_calloc(1, sizeof(*s->b));
    if (s->b == NULL) {
        hv_free(s);
        return HV_ENOMEM;
    }
    s->m = m;
    snprintf(s->b->conn, sizeof(s->b->conn), "%s", hv_json_get_str(conf, "connection"));
    s->b->ch = ch;
    s->b->next = m->bindings;
    m->bindings = s->b;
    *state = s;
    return HV_OK;
}

static void src_stop(void *state) {
    src_t *s = state;
    hv__ehr_binding_t **pp;
    if (s == NULL) return;
    for (pp = &s->m->bindings; *pp != NULL; pp = &(*pp)->next)
        if (*pp == s->b) {
            *pp = s->b->next;
            break;
        }
    hv_free(s->b);
    hv_free(s);
}

static const hv_channel_source_t src_epic = {"epic", src_check, src_start, src_stop};
static const hv_channel_source_t src_cerner = {"cerner", src_check, src_start, src_stop};
static const hv_channel_source_t src_fhir = {"fhir-pull", src_check, src_start, src_stop};

/* ---- scheduler ---- */

static void on_sched_claimed(hv__ehr_t *m, hv__ehr_conn_t *c, int ok, const char *holder, void *ud) {
    char run_id[HV__EHR_ID_MAX];
    (void)holder;
    (void)ud;
    if (!ok || c == NULL || c->removed || c->active != NULL || m->stopping) return;
    if (hv__ehr_run_start(m, c, c->since_ms > 0 ? "incremental" : "full", run_id, 1) != HV_OK)
        hv_log(HV_LOG_WARN, "ehr.schedule_failed", "the scheduled sync of %s could not start", c->id);
}

static void on_tick(uv_timer_t *t) {
    hv__ehr_t *m = t->data;
    hv__ehr_conn_t *c;
    uint64_t now = hv_now_ms();
    if (m->stopping) return;
    for (c = m->conns; c != NULL; c = c->next) {
        if (c->removed || c->active != NULL || c->schedule.kind == HV_EHR_SCHED_MANUAL || c->next_run_at <= 0 ||
            (uint64_t)c->next_run_at > now)
            continue;
        /* The next start is computed now so that a failing sync is not retried every tick; the
         * claim (lease.c) sets it in the database too, or reads the one another engine set. */
        c->next_run_at = (int64_t)hv_ehr_schedule_next(&c->schedule, now);
        if (hv__ehr_lease_claim(m, c, 1, on_sched_claimed, NULL) != HV_OK)
            hv_log(HV_LOG_WARN, "ehr.schedule_failed", "the scheduled sync of %s could not start", c->id);
    }
    /* Connections made, changed or removed on other engines sharing the database (store.c). */
    if (hv__ehr_conn_refresh(m) != HV_OK)
        hv_log(HV_LOG_WARN, "ehr.refresh_failed", "the connections could not be reloaded from the database");
}

void hv__ehr_schedule_arm(hv__ehr_t *m) {
    uint64_t every = hv_config_duration_ms(hv_engine_config(m->e), "ehr.schedule_check");
    if (m->sched_started || m->stopping || every == 0) return;
    uv_timer_start(&m->sched, on_tick, every, every);
    m->sched_started = 1;
}

/* ---- lifecycle ---- */

static void module_free_state(hv__ehr_t *m) {
    while (m->runs != NULL) {
        hv__ehr_run_t *r = m->runs;
        m->runs = r->next;
        hv__ehr_run_free(r);
    }
    while (m->conns != NULL) {
        hv__ehr_conn_t *c = m->conns;
        m->conns = c->next;
        hv__ehr_conn_free(c);
    }
    while (m->bindings != NULL) {
        hv__ehr_binding_t *b = m->bindings;
        m->bindings = b->next;
        hv_free(b);
    }
    OPENSSL_cleanse(m->kek, sizeof(m->kek));
    hv_free(m);
}

static int module_init(hv_engine_t *e, void **state) {
    hv__ehr_t *m = hv_calloc(1, sizeof(*m));
    hv_config_t *cfg = hv_engine_config(e);
    hv_db_t *db = NULL;
    hv_error_t err;
    char msg[1024];
    int rc;
    if (m == NULL) return HV_ENOMEM;
    hv_error_clear(&err);
    m->e = e;
    m->timeout_ms = hv_config_duration_ms(cfg, "ehr.timeout");
    m->retry_base_ms = hv_config_duration_ms(cfg, "ehr.retry_base");
    m->max_retry_after_ms = hv_config_duration_ms(cfg, "ehr.max_retry_after");
    m->max_attempts = (int)hv_config_int(cfg, "ehr.max_attempts");
    m->max_pages = (int)hv_config_int(cfg, "ehr.max_pages");
    m->max_page_bytes = hv_config_size(cfg, "ehr.max_page_bytes");
    m->max_download_bytes = hv_config_size(cfg, "ehr.max_download_bytes");
    m->bulk_poll_ms = hv_config_duration_ms(cfg, "ehr.bulk_poll");
    m->bulk_chunk_max = hv_config_int(cfg, "ehr.bulk_chunk_max");
    m->token_renew_ms = hv_config_duration_ms(cfg, "ehr.token_renew");
    m->rate_default = (double)hv_config_int(cfg, "ehr.rate_limit");
    m->overlap_ms = hv_config_duration_ms(cfg, "ehr.incremental_overlap");
    m->id_reconcile = hv_config_bool(cfg, "ehr.id_reconcile");
    m->defer_indexes = hv_config_bool(cfg, "ehr.defer_indexes");
    m->lease_ttl_ms = hv_config_duration_ms(cfg, "ehr.lease_ttl");
    if (m->lease_ttl_ms < 1000) m->lease_ttl_ms = 1000;
    if (m->max_attempts < 1) m->max_attempts = 1;
    if (m->max_pages < 1) m->max_pages = 1;
    if (m->bulk_chunk_max < 1000) m->bulk_chunk_max = 1000;
    if (m->bulk_chunk_max > 100000) m->bulk_chunk_max = 100000;
    if (m->timeout_ms == 0) m->timeout_ms = 60000;
    rc = load_kek(m, &err);
    if (rc == HV_OK) rc = hv__ehr_engine_id(m);
    if (rc == HV_OK) rc = hv_db_open(hv_engine_db_url(e), hv_engine_data_dir(e), "ehr", &db, &err);
    if (rc == HV_OK) rc = hv__ehr_store_migrate(db, &err);
    if (rc == HV_OK) rc = hv__ehr_store_load(m, db);
    if (rc == HV_OK) rc = hv__ehr_store_pending_runs(m, db);
    if (rc != HV_OK) {
        hv_error_format(&err, msg, sizeof(msg));
        hv_log(HV_LOG_ERROR, "ehr.init_failed", "%s (%s)", msg, hv_strerror(rc));
        goto out;
    }
    rc = hv_storage_new(hv_engine_loop(e), db, 4096, 64, &m->storage);
    if (rc != HV_OK) goto out;
    db = NULL;
    rc = hv__ehr_http_new(m, &m->http);
    if (rc == HV_OK) rc = hv__ehr_api_register(m);
    if (rc == HV_OK) rc = hv_channel_register_source(e, &src_epic);
    if (rc == HV_OK) rc = hv_channel_register_source(e, &src_cerner);
    if (rc == HV_OK) rc = hv_channel_register_source(e, &src_fhir);
    if (rc != HV_OK) goto out;
    uv_timer_init(hv_engine_loop(e), &m->sched);
    m->sched.data = m;
    *state = m;
    m = NULL;
out:
    hv_db_close(db);
    if (m != NULL) {
        if (m->http) hv__ehr_http_free(m->http);
        if (m->storage) hv_storage_free(m->storage);
        module_free_state(m);
    }
    return rc;
}

static int module_start(hv_engine_t *e, void *state) {
    hv__ehr_t *m = state;
    hv__ehr_run_t *r, *next;
    (void)e;
    hv__ehr_schedule_arm(m);
    /* Runs a crash interrupted go on from their checkpoints. */
    for (r = m->runs; r != NULL; r = next) {
        next = r->next;
        hv__ehr_run_resume(r);
    }
    return HV_OK;
}


/* The state is freed here when module_free had to close the timer itself. */
static void on_sched_closed(uv_handle_t *h) {
    hv__ehr_t *m = h->data;
    m->sched_done = 1;
    if (m->free_pending) module_free_state(m);
}

/* Stops the scheduler and the HTTP client; their memory goes in close callbacks, which the
 * engine's last loop run calls. Calls in flight end with HV_ECLOSED: their runs stay
 * "running" and resume at the next start. */
static void close_handles(hv__ehr_t *m) {
    if (!m->sched_closed) {
        uv_timer_stop(&m->sched);
        uv_close((uv_handle_t *)&m->sched, on_sched_closed);
        m->sched_closed = 1;
    }
    hv__ehr_http_free(m->http);
    m->http = NULL;
}

static void module_stop(hv_engine_t *e, void *state) {
    hv__ehr_t *m = state;
    (void)e;
    if (m == NULL) return;
    m->stopping = 1;
    close_handles(m);
}

static void module_free(hv_engine_t *e, void *state) {
    hv__ehr_t *m = state;
    (void)e;
    if (m == NULL) return;
    m->stopping = 1;
    hv__ehr_http_free(m->http);
    m->http = NULL;
    hv_storage_free(m->storage);
    m->storage = NULL;
    if (m->sched_done) {
        module_free_state(m);
        return;
    }
    /* The timer's close callback has not run yet: either stop closed it and the loop has not
     * turned since (a module after us failed to start), or stop never ran. The state goes in
     * that callback, which the engine's last loop run calls. */
    m->free_pending = 1;
    if (!m->sched_closed) {
        m->sched_closed = 1;
        uv_timer_stop(&m->sched);
        uv_close((uv_handle_t *)&m->sched, on_sched_closed);
    }
}

const hv_module_t hv_ehr_module = {
    "ehr", settings, NULL, module_init, module_start, module_stop, module_free,
};
