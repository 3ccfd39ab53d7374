/*
 * module.c — the audit module: settings, lifecycle, the engine's audit sink and
 * response observer, the `audit` channel destination and the `audit` commands.
 *
 * Every event goes through one path: hv_audit_record (engine.h) → sink → a compact
 * record built on the loop thread → (audit.synchronous NORMAL/OFF) the crash-safe journal
 * (journal.c), after which the answer may leave → a batch job on the module's own storage
 * thread (group commit every audit.flush_interval or audit.batch records) that appends it
 * to the hash chain. With FULL the HTTP answer is held (hv_http_req_hold) until the
 * record's batch has committed instead. Either way a `kill -9` loses no event of a
 * completed request. Writes reserve their record's queue slot before they run (admit
 * hook); when the queue is full the request answers 503 (back-pressure, never a silent
 * drop), a write before it touches the store.
 *
 * FHIR REST interactions are recorded by the response observer (one place instead
 * of one call per handler): it classifies the request (read, vread, search-type,
 * history, create, update, patch, delete, export, everything, …) and takes the
 * patients from the path and from the resources in the body (for a search, every
 * patient whose data was returned).
 */
#include "config.h"
#include "destinations/audit/audit_int.h"
#include "engine/auth/auth.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const hv_setting_t settings[] = {
    {"audit.queue", NULL, HV_SET_INT, "20000", NULL,
     "audit events waiting to be written; when full, requests answer 503 instead of losing events"},
    {"audit.batch", NULL, HV_SET_INT, "2048", NULL, "audit events written per transaction at most"},
    {"audit.synchronous", NULL, HV_SET_ENUM, "NORMAL", "FULL|NORMAL|OFF",
     "when an answer may leave: NORMAL once its record is in the audit journal (survives a crash or kill of the"
     " engine, not a power loss), FULL once its record's batch is committed and on disk (survives a power loss,"
     " costs a commit wait per request); OFF as NORMAL, with the store not synced at all"},
    {"audit.flush_interval", NULL, HV_SET_DURATION, "50ms", NULL,
     "with audit.synchronous NORMAL or OFF: how long journaled records may wait to be committed together"
     " (a full batch goes at once)"},
    {"audit.checkpoint_every", NULL, HV_SET_INT, "1000", NULL,
     "sign a checkpoint of the hash chain every N records (Ed25519 key <data>/audit-signing.pem)"},
    {"audit.max_page", NULL, HV_SET_INT, "500", NULL, "most records one GET /audit/... page returns"},
    {"audit.dest_max_bytes", NULL, HV_SET_SIZE, "64KiB", NULL,
     "largest message the audit channel destination keeps in the record (larger: its hash only)"},
    {"audit.alerts.failed_logins", NULL, HV_SET_INT, "5", NULL,
     "failed logins per account or per IP within the window that raise an alert (0: off, at most 64)"},
    {"audit.alerts.failed_logins_window", NULL, HV_SET_DURATION, "10m", NULL, "window of the failed-login rule"},
    {"audit.alerts.patients", NULL, HV_SET_INT, "50", NULL,
     "distinct patients one user may read within the window; reaching it raises an alert (0: off, at most 64)"},
    {"audit.alerts.patients_window", NULL, HV_SET_DURATION, "1h", NULL, "window of the patient-volume rule"},
    {"audit.alerts.hours", NULL, HV_SET_STRING, "", NULL,
     "permitted hours of PHI access, UTC, \"07:00-19:00\"; access outside raises an alert (\"\": off)"},
    {"audit.alerts.new_ip", NULL, HV_SET_BOOL, "true", NULL,
     "alert when a user logs in from an address not seen for them before"},
    {"audit.retention.audit_days", NULL, HV_SET_INT, "2555", NULL, "retention of audit events (7 years)"},
    {"audit.retention.access_days", NULL, HV_SET_INT, "2190", NULL, "retention of access logs (6 years)"},
    {"audit.retention.alert_days", NULL, HV_SET_INT, "0", NULL, "retention of security alerts (0: indefinitely)"},
    {"audit.consent_refresh", NULL, HV_SET_DURATION, "5s", NULL,
     "how often the FHIR store is checked for Consents written by other processes (`holovitals import`, other"
     " engines on the same database); 0: only at start and on this process's own writes"},
    {"audit.consent_max", NULL, HV_SET_INT, "10000", NULL,
     "active FHIR Consent resources enforced at most (kept in memory, about 14 KiB each)"},
    {"audit.verify_interval", NULL, HV_SET_DURATION, "1h", NULL,
     "how often the running engine verifies the new part of the hash chain (0: never); a failure raises a"
     " chain-verification alert"},
    {"audit.hot_days", NULL, HV_SET_INT, "365", NULL,
     "records older than this are due for `holovitals audit archive` (they stay in the store until their"
     " retention ends)"},
    {NULL, NULL, 0, NULL, NULL, NULL},
};

/* ---- submitting ---- */

/*
 * Group commit at the module level: events that arrive while a batch is being written
 * wait in `pending`; when the batch commits, the next one (everything pending, up to
 * audit.batch) goes as one storage job — one transaction, one tail read, no savepoint
 * per event. Pending is bounded by audit.queue: beyond it events are refused (503).
 */
typedef struct batch {
    hv__audit_t *a;
    hv__aev_t *head;
    int64_t top_jid;     /* the highest journal id in the batch, 0 when none */
    const char *journal; /* the journal's name in audit_journal_pos */
} batch_t;

/*
 * On PostgreSQL several engines may share one audit schema: the append takes a
 * transaction-level advisory lock first, so one batch at a time, across processes, reads
 * the chain's tail and appends after it (one chain, no gaps, no forks). The lock is
 * released by the batch's COMMIT or ROLLBACK. SQLite needs none: BEGIN IMMEDIATE already
 * serialises writers of the file.
 */

/*
 * Runs (record.c): the records of FHIR reads the loop thread wrote straight into the
 * journal as HVJ3 frames arrive here as one list node per run of consecutive frames. The
 * storage job decodes each run into events held by one allocation (run_mem_t) — the
 * members in one arena, the stored content built — and splices them into the batch in
 * the run's place, so the append sees the same records an event per request gave. Their
 * on_done (loop thread, after the batch) frees the run once its last record is done; a
 * failed batch keeps them for the next one like any journaled event.
 */
typedef struct run_mem {
    hv__aev_t *node; /* the run's list node, given back with the last record */
    size_t refs;
    hv_arena_t *arena;
    hv__aev_t ev[];
} run_mem_t;

static void run_ev_done(hv__aev_t *ev, int status) {
    run_mem_t *m = ev->done_ud;
    (void)ev;
    (void)status;
    if (--m->refs > 0) return;
    hv__aev_give(m->node);
    hv_arena_free(m->arena);
    hv_free(m);
}

/* Storage thread: every run of the batch's list decoded in place (see above). A run that
 * cannot be decoded stays as it is and the batch fails (it is tried again). */
static int expand_runs(batch_t *b) {
    hv__aev_t **link = &b->head;
    while (*link != NULL) {
        hv__aev_t *node = *link, *after = node->next;
        size_t bytes = (size_t)(node->run_end - node->run_first), used = 0;
        const unsigned char *p, *end;
        unsigned char *copy;
        run_mem_t *m;
        int rc = HV_OK;
        if (node->run_n == 0) {
            link = &node->next;
            continue;
        }
        /* The run's frames copied once: the events' strings point into the copy (the
         * journal file may be reused once they commit, the events live a little longer). */
        m = hv_calloc(1, sizeof(*m) + node->run_n * sizeof(hv__aev_t));
        if (m == NULL || (m->arena = hv_arena_new(64 * 1024)) == NULL ||
            (copy = hv_arena_alloc(m->arena, bytes)) == NULL) {
            if (m != NULL) hv_arena_free(m->arena);
            hv_free(m);
            return HV_ENOMEM;
        }
        memcpy(copy, node->run_first, bytes);
        p = copy;
        end = copy + bytes;
        for (size_t i = 0; i < node->run_n && rc == HV_OK; i++) {
            hv__aev_t *ev = &m->ev[i];
            ev->a = b->a;
            ev->arena = m->arena;
            rc = p + 12 <= end ? hv__journal_decode_own(p, &used, ev, i > 0 ? &m->ev[i - 1] : NULL) : HV_EPROTO;
            if (rc == HV_OK && used > (size_t)(end - p)) rc = HV_EPROTO;
            p += used;
            ev->on_done = run_ev_done;
            ev->done_ud = m;
            ev->next = i + 1 < node->run_n ? &m->ev[i + 1] : after;
        }
        if (rc == HV_OK && p != end) rc = HV_EPROTO;
        if (rc != HV_OK) {
            hv_arena_free(m->arena);
            hv_free(m);
            return rc;
        }
        m->node = node;
        m->refs = node->run_n;
        node->next = NULL;
        *link = &m->ev[0];
        link = &m->ev[node->run_n - 1].next;
    }
    return HV_OK;
}

static int job_batch(hv_db_t *db, void *arg) {
    batch_t *b = arg;
    char prev[65];
    int64_t seq;
    int rc = expand_runs(b);
    if (rc != HV_OK) return rc;
    if (hv_db_kind(db) == HV_DB_PG) rc = hv_db_exec(db, HV__AUDIT_PG_LOCK);
    if (rc == HV_OK) rc = hv__audit_tail(db, prev, &seq);
    if (rc == HV_OK)
        rc = hv__audit_has_blocks(db) ? hv__audit_append_blocks(db, b->head, prev, &seq)
                                      : hv__audit_append_list(db, b->head, prev, &seq);
    if (rc == HV_OK && b->top_jid > 0) rc = hv__journal_set_pos(db, b->journal, b->top_jid);
    return rc;
}

static void flush(hv__audit_t *a);
static void flush_one(hv__audit_t *a, int force);

/* Before a query of the store: everything recorded so far goes ahead of it (the storage
 * thread runs jobs in order), so that a reader sees its own request's records. */
void hv__audit_sync(hv__audit_t *a) {
    while (a->pending != NULL && a->storage != NULL) {
        size_t before = a->npending;
        flush_one(a, 1);
        if (a->npending == before) break; /* out of memory: tried again later */
    }
}

static void on_flush_timer(uv_timer_t *t) { flush(t->data); }

/* Starts a batch now when one is due (a held answer waits, a batch is full, or no timer
 * runs any more), otherwise once audit.flush_interval has passed. */
static void kick(hv__audit_t *a) {
    if (a->pending == NULL || a->inflight) return;
    if (a->nheld > 0 || a->npending >= a->batch_max || !a->flush_timer_on || a->flush_ms == 0) {
        flush(a);
        return;
    }
    if (!uv_is_active((uv_handle_t *)&a->flush_timer)) uv_timer_start(&a->flush_timer, on_flush_timer, a->flush_ms, 0);
}

static void finish(hv__audit_t *a, hv__aev_t *ev, int status) {
    if (status == HV_OK) {
        hv_counter_add(a->m_events, 1);
        hv__alerts_observe(a, ev);
    } else {
        hv_counter_add(a->m_failed, 1);
    }
    if (ev->on_done != NULL) {
        ev->on_done(ev, status);
        return;
    }
    if (ev->req != NULL) hv_http_req_release(ev->req, status);
    hv__aev_give(ev);
}

static void done_batch(int status, void *arg) {
    batch_t *b = arg;
    hv__audit_t *a = b->a;
    hv__aev_t *ev = b->head, *next, *keep = NULL, *keep_tail = NULL;
    size_t nkeep = 0;
    if (status != HV_OK)
        hv_log(HV_LOG_ERROR, "audit.write_failed", "a batch of audit records could not be written: %s",
               hv_strerror(status));
    else if (a->journal != NULL && b->top_jid > 0)
        hv__journal_committed(a->journal, b->top_jid);
    for (; ev != NULL; ev = next) {
        next = ev->next;
        if (status != HV_OK && ev->jid > 0 && a->storage != NULL) {
            /* Journaled: its answer may have left already, so the record must reach the
             * store; it goes back to the head of the queue, in order, and is written again
             * with the next batch (the journal keeps it across a restart meanwhile). */
            ev->next = NULL;
            if (keep_tail) keep_tail->next = ev;
            else keep = ev;
            keep_tail = ev;
            nkeep += ev->run_n ? ev->run_n : 1;
            continue;
        }
        finish(a, ev, status);
    }
    if (keep != NULL) {
        keep_tail->next = a->pending;
        if (a->pending == NULL) a->pending_tail = keep_tail;
        a->pending = keep;
        a->npending += nkeep;
    }
    hv_free(b);
    a->inflight--;
    if (keep == NULL) kick(a); /* after a failure: tried again at the next event */
}

static void flush(hv__audit_t *a) { flush_one(a, 0); }

/* Starts one batch of what is pending: when none is being written, or always (force). */
static void flush_one(hv__audit_t *a, int force) {
    batch_t *b;
    hv__aev_t *last = NULL;
    size_t n = 0;
    int rc;
    if ((a->inflight && !force) || a->pending == NULL || a->storage == NULL) return;
    b = hv_calloc(1, sizeof(*b));
    if (b == NULL) return; /* tried again at the next event or batch */
    b->a = a;
    b->head = a->pending;
    b->journal = a->journal ? hv__journal_name(a->journal) : "";
    /* Up to audit.batch records (a run counts its records; one run at least). */
    for (hv__aev_t *ev = a->pending; ev != NULL; ev = ev->next) {
        size_t k = ev->run_n ? ev->run_n : 1;
        if (n > 0 && n + k > a->batch_max) break;
        last = ev;
        if (ev->jid > b->top_jid) b->top_jid = ev->jid;
        if (ev->jid == 0 && a->nheld > 0) a->nheld--;
        n += k;
    }
    if (a->flush_timer_on) uv_timer_stop(&a->flush_timer);
    a->pending = last->next;
    if (a->pending == NULL) a->pending_tail = NULL;
    last->next = NULL;
    a->npending -= n;
    a->inflight++;
    rc = hv_storage_submit(a->storage, job_batch, done_batch, b);
    if (rc != HV_OK) {
        /* Only when closing: the storage queue holds at most this one job of ours
         * (alerts and queries aside). The events fail like a failed commit (journaled
         * ones are written at the next start). */
        a->inflight--;
        for (hv__aev_t *ev = b->head, *next; ev != NULL; ev = next) {
            next = ev->next;
            finish(a, ev, rc);
        }
        hv_free(b);
        flush(a); /* the rest of pending fails the same way, so every held answer is released */
    }
}

/* Appends ev (an event or a run) to the pending list. */
static void enqueue(hv__audit_t *a, hv__aev_t *ev) {
    ev->next = NULL;
    if (a->pending_tail) a->pending_tail->next = ev;
    else a->pending = ev;
    a->pending_tail = ev;
}

int hv__audit_submit(hv__audit_t *a, hv__aev_t *ev, int reserved) {
    /* A reserved event (a write admitted by admit_hook) was counted at admission; the
     * others leave room for the reservations outstanding. */
    if (a->storage == NULL || (!reserved && a->npending + a->reserved >= a->queue_max)) {
        hv_counter_add(a->m_busy, 1);
        hv_log(HV_LOG_WARN, "audit.busy", "the audit queue is full: the request is refused");
        if (ev->req != NULL) {
            hv_http_req_hold(ev->req);
            hv_http_req_release(ev->req, HV_EBUSY);
        }
        hv__aev_give(ev);
        return HV_EBUSY;
    }
    if (a->journal != NULL && hv__journal_write(a->journal, ev) != HV_OK) {
        ev->jid = 0; /* not journaled: this one is held until its batch commits */
        hv_log(HV_LOG_WARN, "audit.journal_failed", "the audit journal cannot be written; answers wait for the store");
    }
    if (ev->jid > 0 && ev->on_done == NULL) ev->req = NULL; /* safe from a crash: the answer may leave now */
    if (ev->req != NULL && ev->on_done == NULL) hv_http_req_hold(ev->req);
    if (ev->jid == 0) a->nheld++;
    enqueue(a, ev);
    a->npending++;
    kick(a);
    return HV_OK;
}

int hv__audit_submit_frame(hv__audit_t *a, int64_t jid, const unsigned char *frame, size_t flen) {
    hv__aev_t *t = a->pending_tail;
    if (t != NULL && t->run_n > 0 && t->run_end == frame && t->run_n < a->batch_max) {
        t->run_end = frame + flen;
        t->run_n++;
        t->jid = jid;
    } else {
        hv__aev_t *ev = hv__aev_take(a);
        if (ev == NULL) return HV_ENOMEM;
        ev->jid = jid;
        ev->run_first = frame;
        ev->run_end = frame + flen;
        ev->run_n = 1;
        enqueue(a, ev);
    }
    a->npending++;
    kick(a);
    return HV_OK;
}

static int submit_event(hv__audit_t *a, const hv_audit_event_t *in, int reserved) {
    hv__aev_t *ev = hv__aev_take(a);
    int rc;
    if (ev == NULL) return HV_ENOMEM;
    if (in->req != NULL) hv_http_req_mark_audited(in->req);
    rc = hv__aev_fill(ev, in);
    if (rc != HV_OK) {
        hv__aev_give(ev);
        return rc;
    }
    return hv__audit_submit(a, ev, reserved);
}

static int sink(void *ud, const hv_audit_event_t *in) { return submit_event(ud, in, 0); }

/* The requests whose audit record gets a queue slot at admission: those that may change
 * what the FHIR store or a channel holds (and are recorded by respond_hook). */
static int is_write(hv_http_req_t *req) {
    int m = hv_http_req_method(req);
    const char *path = hv_http_req_path(req);
    if (m != HV_HTTP_POST && m != HV_HTTP_PUT && m != HV_HTTP_PATCH && m != HV_HTTP_DELETE) return 0;
    return (strncmp(path, "/fhir", 5) == 0 && (path[5] == '\0' || path[5] == '/')) ||
           strncmp(path, "/channels/", 10) == 0;
}

/*
 * The admission hook: a write runs only when its audit record has a slot in the queue.
 * Without it a write could commit and then have its record refused (queue full): the
 * client would see 503 for a change that happened, unaudited. Here the refusal comes
 * first — 503 with Retry-After before the store is touched — and the slot is kept
 * (a->reserved) until respond_hook submits the record, which is then never refused.
 */
static int admit_hook(hv_http_req_t *req, void *ud) {
    hv__audit_t *a = ud;
    if (!is_write(req)) return HV_OK;
    if (a->storage == NULL || a->npending + a->reserved >= a->queue_max) {
        hv_counter_add(a->m_busy, 1);
        hv_log(HV_LOG_WARN, "audit.busy", "the audit queue is full: a write is refused before it runs");
        hv_http_req_mark_audited(req); /* nothing happened: no record, no slot */
        hv_http_header_add(req, "Retry-After", "1");
        hv_http_respond_error(req, 503, "audit_unavailable",
                              "the audit trail cannot take more records now; nothing was changed, retry later");
        return HV_EBUSY;
    }
    a->reserved++;
    hv_http_req_set_reserved(req);
    return HV_OK;
}

/*
 * The channel API (engine/channel_api.c) as audit events: the message browser and the
 * operations that change what a channel does or holds. Returns 0 for other paths.
 */
static int classify_channels(int method, const char *path, char *action, const char **subtype, char *id,
                             size_t idlen) {
    const char *seg[6];
    size_t len[6], n = 0;
    const char *p = path + 9;
    if (strncmp(path, "/channels/", 10) != 0) return 0;
    while (*p && n < HV_ARRAY_LEN(seg)) {
        while (*p == '/') p++;
        if (!*p) break;
        seg[n] = p;
        len[n] = strcspn(p, "/");
        p += len[n++];
    }
#define IS(i, lit) (n > (i) && len[i] == sizeof(lit) - 1 && memcmp(seg[i], lit, sizeof(lit) - 1) == 0)
    if (n < 2) return 0; /* the channel list and one channel's status hold no messages */
    snprintf(id, idlen, "%.*s", (int)len[0], seg[0]);
    if (IS(1, "messages") && n == 3 && method == HV_HTTP_GET) {
        *action = 'R';
        *subtype = "message-viewed";
        snprintf(id, idlen, "%.*s/%.*s", (int)len[0], seg[0], (int)len[2], seg[2]);
    } else if (IS(1, "messages") && n == 2) {
        *action = 'E';
        *subtype = "message-search";
    } else if ((IS(1, "messages") && IS(3, "reprocess")) || IS(1, "reprocess") || (IS(1, "deadletter") && IS(2, "requeue"))) {
        *action = 'U';
        *subtype = "message-reprocessed";
        if (n >= 3 && IS(1, "messages")) snprintf(id, idlen, "%.*s/%.*s", (int)len[0], seg[0], (int)len[2], seg[2]);
    } else if (IS(1, "prune") || (IS(1, "deadletter") && IS(2, "discard"))) {
        *action = 'D';
        *subtype = "message-deleted";
    } else if (IS(1, "deadletter") && method == HV_HTTP_GET) {
        *action = 'R';
        *subtype = "message-viewed";
    } else if (IS(1, "in")) {
        return 0; /* data coming in is the channel's own record, not an access */
    } else if (method == HV_HTTP_POST) {
        *action = 'E';
        *subtype = "config-change";
    } else {
        return 0;
    }
#undef IS
    return 1;
}

/*
 * A successful instance read answered by the FHIR store's read route (fhir/rest_crud.c
 * h_read, "/fhir/:type/:id"): its action, subtype, type and id without parsing the path
 * again. The route's parameters are the path's raw segments (engine/router.c), and a 200
 * means h_read accepted them (a known resource type, an id of [A-Za-z0-9.-]{1,64}), so they
 * are exactly what hv__audit_classify would copy from the path: action R, subtype "read".
 * Returns 0 for anything else, which then goes through hv__audit_classify.
 */
static int read_route(hv_http_req_t *req, int status, int method, char *action, const char **subtype,
                      const char **type, const char **id) {
    const char *t, *i;
    if (status != 200 || (method != HV_HTTP_GET && method != HV_HTTP_HEAD) ||
        strcmp(hv_http_req_route(req), "/fhir/:type/:id") != 0)
        return 0;
    t = hv_http_req_param(req, "type");
    i = hv_http_req_param(req, "id");
    if (t == NULL || i == NULL || t[0] == '\0' || i[0] == '\0' || strlen(t) >= 64 || strlen(i) >= 80) return 0;
    *action = 'R';
    *subtype = "read";
    *type = t;
    *id = i;
    return 1;
}

/* The response observer: FHIR REST interactions (and the /patients views), the channel API. */
static void respond_hook(hv_http_req_t *req, int status, const char *body, size_t len, void *ud) {
    hv__audit_t *a = ud;
    const char *path = hv_http_req_path(req), *subtype = NULL;
    char action = 0, type[64], id[80];
    const char *ids[HV_AUDIT_MAX_PATIENTS], *etype = NULL, *eid = NULL;
    size_t n = 0;
    hv_audit_event_t ev = {0};
    hv_arena_t *ar = hv_http_req_arena(req);
    int method = hv_http_req_method(req);
    int reserved = hv_http_req_take_reserved(req);
    if (reserved && a->reserved > 0) a->reserved--;
    if (path[0] != '/' || (path[1] != 'f' && path[1] != 'p' && path[1] != 'c')) return;
    if (path[1] == 'c') {
        if (!classify_channels(method, path, &action, &subtype, id, sizeof(id))) return;
        if (hv_http_req_mark_audited(req)) return;
        ev.action = action;
        ev.subtype = subtype;
        ev.outcome = hv_audit_outcome_http(status);
        ev.req = req;
        ev.entity_type = strchr(id, '/') ? "Message" : "Channel";
        ev.entity_id = id;
        ev.query = hv_http_req_query(req);
        if (status < 300 && action == 'R' && body != NULL)
            hv__audit_scan_patients(body, len, ar, ids, &n, HV_ARRAY_LEN(ids));
        ev.patients = ids;
        ev.npatients = n;
        (void)submit_event(a, &ev, reserved);
        return;
    }
    if (!read_route(req, status, method, &action, &subtype, &etype, &eid)) {
        if (!hv__audit_classify(method, path, &action, &subtype, type, sizeof(type), id, sizeof(id))) return;
        etype = type;
        eid = id;
    }
    if (hv_http_req_mark_audited(req)) return; /* a site recorded this request itself */
    if (strcmp(etype, "Patient") == 0 && eid[0]) ids[n++] = eid;
    if (status < 300 && body != NULL && len > 0) {
        /* An instance read answers the same bytes until the resource changes: its scan
         * comes from the cache (record.c) when the body is the one scanned before. */
        if (action == 'R' && eid[0] && (method == HV_HTTP_GET || method == HV_HTTP_HEAD))
            (void)hv__audit_scan_cached(a, path, body, len, ar, ids, &n, HV_ARRAY_LEN(ids));
        else
            hv__audit_scan_patients(body, len, ar, ids, &n, HV_ARRAY_LEN(ids));
    }
    if (a->nconsents > 0 && status == 200 && (action == 'R' || action == 'E') && n > 0 && body != NULL) {
        const hv_auth_principal_t *p = hv_auth_principal(req);
        int c = hv__consent_enforce(a, req, p ? p->sub : "", etype, body, len, ids, &n, &ev.detail);
        if (c == 1 || c == -1) status = c == 1 ? 403 : 500;
    }
    if (method != HV_HTTP_GET && method != HV_HTTP_HEAD) {
        size_t bl = 0;
        const char *rb = hv_http_req_body(req, &bl);
        if (rb != NULL && bl > 0) hv__audit_scan_patients(rb, bl, ar, ids, &n, HV_ARRAY_LEN(ids));
        if (strcmp(etype, "Consent") == 0) hv__consent_observe(a, method, eid, status, body, len, rb, bl);
        if (status < 300) hv__consent_hold_answer(a, req);
    }
    ev.action = action;
    ev.subtype = subtype;
    ev.outcome = hv_audit_outcome_http(status);
    ev.req = req;
    ev.entity_type = etype;
    ev.entity_id = eid;
    ev.query = hv_http_req_query(req);
    ev.patients = ids;
    ev.npatients = n;
    if (status >= 400 && ev.detail == NULL) ev.detail = hv_http_status_text(status);
    /* Straight into the journal when it can (record.c), else as an event. */
    if (hv__audit_record_fast(a, &ev, reserved) != HV_ENOTSUP) return;
    (void)submit_event(a, &ev, reserved); /* a refusal has already turned the answer into 503 */
}

/* ---- the `audit` channel destination ---- */

typedef struct dest {
    hv__audit_t *a;
    char channel[128];
} dest_t;

typedef struct dest_send {
    hv_channel_sent_cb done;
    void *token;
} dest_send_t;

static int dest_check(struct json_object *conf, hv_error_t *err) {
    json_object_object_foreach(conf, key, val) {
        (void)val;
        if (strcmp(key, "type") && strcmp(key, "name") && strcmp(key, "queue") && strcmp(key, "when") &&
            strcmp(key, "subtype")) {
            hv_error_set(err, HV_EINVAL, key, "unknown key of the audit destination (subtype is the only one)");
            return HV_EINVAL;
        }
    }
    return HV_OK;
}

static int dest_open(hv_engine_t *e, const char *channel, struct json_object *conf, void **state, hv_error_t *err) {
    hv__audit_t *a = hv_engine_module_state(e, "audit");
    dest_t *d;
    (void)conf;
    if (a == NULL) {
        hv_error_set(err, HV_ENOTSUP, "type", "the audit module is not running in this process (--services)");
        return HV_ENOTSUP;
    }
    d = hv_calloc(1, sizeof(*d));
    if (d == NULL) return HV_ENOMEM;
    d->a = a;
    snprintf(d->channel, sizeof(d->channel), "%s", channel ? channel : "");
    *state = d;
    return HV_OK;
}

static void dest_done(hv__aev_t *ev, int status) {
    dest_send_t *x = ev->done_ud;
    dest_send_t s = *x;
    hv_free(x);
    hv__aev_give(ev);
    s.done(s.token, status == HV_OK ? HV_CHANNEL_DELIVERED : HV_CHANNEL_RETRY,
           status == HV_OK ? NULL : "audit store busy");
}

/* The message becomes an AuditEvent of subtype "channel-message" (action C: provenance of
 * data received), with its channel and message id and, up to audit.dest_max_bytes, its
 * content as the entity query (base64); larger content is recorded by its SHA-256. */
static int dest_send(void *state, const hv_channel_msg_t *m, hv_channel_sent_cb done, void *token) {
    dest_t *d = state;
    hv_audit_event_t in = {0};
    char mid[32], digest[80];
    const char *ids[HV_AUDIT_MAX_PATIENTS];
    size_t n = 0;
    hv__aev_t *ev;
    dest_send_t *x;
    int rc;
    if (d->a->npending >= d->a->queue_max) return HV_EBUSY;
    ev = hv__aev_new(d->a);
    x = hv_calloc(1, sizeof(*x));
    if (ev == NULL || x == NULL) {
        hv__aev_free(ev);
        hv_free(x);
        return HV_ENOMEM;
    }
    snprintf(mid, sizeof(mid), "%lld", (long long)m->id);
    hv__audit_scan_patients(m->content, m->len, ev->arena, ids, &n, HV_ARRAY_LEN(ids));
    in.action = 'C';
    in.subtype = "channel-message";
    in.user = d->channel;
    in.role = "channel";
    in.entity_type = "Message";
    in.entity_id = mid;
    in.patients = ids;
    in.npatients = n;
    if (m->len <= d->a->dest_max) {
        in.query = hv_arena_strndup(ev->arena, m->content, m->len);
    } else {
        unsigned char md[32];
        unsigned int ml = 0;
        EVP_Digest(m->content, m->len, md, &ml, EVP_sha256(), NULL);
        memcpy(digest, "sha256:", 7);
        hv_hex(md, 32, digest + 7);
        in.detail = digest;
    }
    ev->source = hv_arena_strdup(ev->arena, d->channel);
    rc = hv__aev_fill(ev, &in);
    if (rc != HV_OK) {
        hv__aev_free(ev);
        hv_free(x);
        return rc;
    }
    x->done = done;
    x->token = token;
    ev->on_done = dest_done;
    ev->done_ud = x;
    /* done must never run from inside send: the batch is written by the storage thread
     * and completes on a later loop iteration. */
    return hv__audit_submit(d->a, ev, 0);
}

static void dest_close(void *state) { hv_free(state); }

static const hv_channel_dest_t audit_dest = {"audit", dest_check, dest_open, dest_send, dest_close};

/* ---- lifecycle ---- */

static int read_config(hv__audit_t *a, hv_config_t *c) {
    a->checkpoint_every = hv_config_int(c, "audit.checkpoint_every");
    a->max_page = hv_config_int(c, "audit.max_page");
    a->dest_max = (size_t)hv_config_size(c, "audit.dest_max_bytes");
    a->alert_cfg.failed_logins = hv_config_int(c, "audit.alerts.failed_logins");
    a->alert_cfg.failed_window_ms = hv_config_duration_ms(c, "audit.alerts.failed_logins_window");
    a->alert_cfg.patients = hv_config_int(c, "audit.alerts.patients");
    a->alert_cfg.patients_window_ms = hv_config_duration_ms(c, "audit.alerts.patients_window");
    a->alert_cfg.new_ip = hv_config_bool(c, "audit.alerts.new_ip");
    a->retention_audit_days = hv_config_int(c, "audit.retention.audit_days");
    a->retention_access_days = hv_config_int(c, "audit.retention.access_days");
    a->retention_alert_days = hv_config_int(c, "audit.retention.alert_days");
    a->hot_days = hv_config_int(c, "audit.hot_days");
    a->max_consents = (size_t)hv_config_int(c, "audit.consent_max");
    a->queue_max = (size_t)hv_config_int(c, "audit.queue");
    a->verify_interval_ms = hv_config_duration_ms(c, "audit.verify_interval");
    a->batch_max = (size_t)hv_config_int(c, "audit.batch");
    a->flush_ms = hv_config_duration_ms(c, "audit.flush_interval");
    a->consent_refresh_ms = hv_config_duration_ms(c, "audit.consent_refresh");
    if (hv__alert_parse_hours(hv_config_str(c, "audit.alerts.hours"), &a->alert_cfg.hours_from,
                              &a->alert_cfg.hours_to) != HV_OK) {
        fprintf(stderr, "holovitals: audit.alerts.hours must look like 07:00-19:00\n");
        return HV_ECONFIG;
    }
    if (a->alert_cfg.failed_logins < 0 || a->alert_cfg.failed_logins > 64 || a->alert_cfg.patients < 0 ||
        a->alert_cfg.patients > 64 || a->max_page < 1 || a->checkpoint_every < 0 || a->queue_max < 1 ||
        a->batch_max < 1) {
        fprintf(stderr, "holovitals: audit.alerts thresholds are 0-64, audit.max_page >= 1, "
                        "audit.checkpoint_every >= 0, audit.queue and audit.batch >= 1\n");
        return HV_ECONFIG;
    }
    return HV_OK;
}

static void audit_stop(hv_engine_t *e, void *state);

static int audit_init(hv_engine_t *e, void **state) {
    hv_config_t *c = hv_engine_config(e);
    hv__audit_t *a = hv_calloc(1, sizeof(*a));
    hv_db_t *db = NULL;
    hv_error_t err;
    int rc;
    hv_error_clear(&err);
    if (a == NULL) return HV_ENOMEM;
    a->e = e;
    a->metrics = hv_engine_metrics(e);
    if ((rc = read_config(a, c)) != HV_OK) goto fail;
    a->alerts = hv__alert_state_new();
    if (a->alerts == NULL) {
        rc = HV_ENOMEM;
        goto fail;
    }
    rc = hv__audit_key_load(hv_engine_data_dir(e), 1, &a->key, &err);
    if (rc == HV_OK) rc = hv_db_open(hv_engine_db_url(e), hv_engine_data_dir(e), "audit", &db, &err);
    if (rc == HV_OK) rc = hv_db_migrate(db, "audit", hv__audit_migrations(db), &err);
    if (rc == HV_OK) rc = hv_db_set_synchronous(db, hv_config_str(c, "audit.synchronous"));
    if (rc == HV_OK) rc = hv__journal_open(hv_engine_data_dir(e), &a->journal, &err);
    if (rc == HV_OK) {
        /* Records a crash left in the journal join the chain before anything else. */
        int64_t replayed = 0;
        rc = hv__journal_replay(a->journal, a, db, &replayed);
        if (rc == HV_OK && replayed > 0)
            hv_log(HV_LOG_WARN, "audit.journal_replayed",
                   "%lld audit records written after the last shutdown were recovered from the journal",
                   (long long)replayed);
        if (rc != HV_OK) hv_error_set(&err, rc, "audit.journal", "cannot recover the audit journal");
    }
    if (rc == HV_OK && strcmp(hv_config_str(c, "audit.synchronous"), "FULL") == 0) {
        hv__journal_close(a->journal); /* FULL: every answer waits for its record's commit */
        a->journal = NULL;
    }
    if (rc == HV_OK) rc = hv__consent_load(a, db);
    if (rc != HV_OK) {
        char msg[1024];
        hv_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "holovitals: cannot open the audit store: %s\n", msg[0] ? msg : hv_strerror(rc));
        hv_db_close(db);
        goto fail;
    }
    /* The storage queue holds at most one batch of events at a time, plus alerts, consent
     * updates and queries: audit.queue bounds the events themselves (pending). */
    rc = hv_storage_new(hv_engine_loop(e), db, 4096, 64, &a->storage);
    if (rc != HV_OK) {
        hv_db_close(db);
        goto fail;
    }
    a->m_events = hv_metrics_counter(a->metrics, "hv_audit_events_total", "Audit events committed to the chain.", NULL);
    a->m_failed = hv_metrics_counter(a->metrics, "hv_audit_write_failures_total", "Audit events that failed to commit.",
                                     NULL);
    a->m_busy = hv_metrics_counter(a->metrics, "hv_audit_busy_total",
                                   "Requests refused with 503 because the audit queue was full.", NULL);
    /* Every rule's series exists from the start, at 0, so a dashboard sees them. */
    {
        static const char *const rules[] = {"failed-logins", "patient-volume", "after-hours", "break-glass",
                                            "new-ip", "chain-verification", "audit-tamper", "external"};
        char labels[96];
        for (size_t i = 0; i < HV_ARRAY_LEN(rules); i++) {
            snprintf(labels, sizeof(labels), "rule=\"%s\"", rules[i]);
            hv_metrics_counter(a->metrics, "hv_audit_alerts_total", "Security alerts raised, by rule.", labels);
        }
    }
    if ((rc = hv__audit_routes(a, hv_engine_router(e))) != HV_OK) goto fail;
    if ((rc = hv_channel_register_dest(e, &audit_dest)) != HV_OK) goto fail;
    hv_audit_set_sink(e, sink, a);
    hv_http_set_respond_hook(e, respond_hook, a);
    hv_http_set_admit_hook(e, admit_hook, a);
    hv_consent_set_filter(e, hv__consent_filter, a);
    /* Last: a failure above frees a, which must not hold a live handle. */
    if (uv_timer_init(hv_engine_loop(e), &a->flush_timer) == 0) {
        a->flush_timer.data = a;
        a->flush_timer_on = 1;
    }
    *state = a;
    return HV_OK;
fail:
    if (a->storage != NULL) hv_storage_free(a->storage);
    hv__journal_close(a->journal);
    EVP_PKEY_free(a->key);
    hv__alert_state_free(a->alerts);
    hv__consent_free(a);
    hv_free(a);
    return rc;
}

/* ---- periodic verification ---- */

typedef struct vjob {
    hv__audit_t *a;
    int64_t since, started;
    hv_audit_verify_t v;
} vjob_t;

static int job_verify(hv_db_t *db, void *arg) {
    vjob_t *j = arg;
    return hv__audit_verify_db(db, j->a->key, j->since, &j->v);
}

static void done_verify(int status, void *arg) {
    vjob_t *j = arg;
    hv__audit_t *a = j->a;
    a->verifying = 0;
    if (status == HV_OK && j->v.problem[0] == '\0') {
        /* Records older than the start of this walk (less a margin for clocks) were intact. */
        a->verified_since = j->started - 60000 > a->verified_since ? j->started - 60000 : a->verified_since;
    } else if (status == HV_OK && !a->verify_failed) {
        a->verify_failed = 1; /* once: the alert stands until someone looks */
        hv__alert_raise(a, "chain-verification", "critical", "", "", j->v.detail);
    }
    hv_free(j);
}

static void on_verify_timer(uv_timer_t *t) {
    hv__audit_t *a = t->data;
    vjob_t *j;
    if (a->verifying || a->verify_failed) return;
    j = hv_calloc(1, sizeof(*j));
    if (j == NULL) return;
    j->a = a;
    j->since = a->verified_since;
    j->started = (int64_t)hv_now_ms();
    a->verifying = 1;
    if (hv_storage_submit(a->storage, job_verify, done_verify, j) != HV_OK) {
        a->verifying = 0;
        hv_free(j);
    }
}

static int audit_start(hv_engine_t *e, void *state) {
    hv__audit_t *a = state;
    int rc = hv__consent_store_start(a);
    if (rc != HV_OK) {
        fprintf(stderr, "holovitals: the audit module cannot read Consents from the FHIR store: %s\n", hv_strerror(rc));
        return rc;
    }
    if (a->verify_interval_ms == 0) return HV_OK;
    rc = uv_timer_init(hv_engine_loop(e), &a->verify_timer);
    if (rc != 0) return HV_EIO;
    a->verify_timer.data = a;
    a->timer_on = 1;
    uv_timer_start(&a->verify_timer, on_verify_timer, a->verify_interval_ms, a->verify_interval_ms);
    return HV_OK;
}

/* The timer is part of the state: the state is freed only once the handle has closed
 * (libuv: a handle's memory is released in its close callback). */
static void on_timer_closed(uv_handle_t *h) {
    hv__audit_t *a = h->data;
    if (--a->handles_closing == 0 && a->free_on_close) hv_free(a);
}

static void audit_stop(hv_engine_t *e, void *state) {
    hv__audit_t *a = state;
    (void)e;
    if (a->timer_on) {
        uv_timer_stop(&a->verify_timer);
        a->handles_closing++;
        uv_close((uv_handle_t *)&a->verify_timer, on_timer_closed);
        a->timer_on = 0;
    }
    a->fhir_storage = NULL; /* the fhir module stops too: no more reloads */
    if (a->consent_timer_on) {
        uv_timer_stop(&a->consent_timer);
        a->handles_closing++;
        uv_close((uv_handle_t *)&a->consent_timer, on_timer_closed);
        a->consent_timer_on = 0;
    }
    if (a->flush_timer_on) {
        /* From now on batches start at once; what waits goes now. */
        uv_timer_stop(&a->flush_timer);
        a->handles_closing++;
        uv_close((uv_handle_t *)&a->flush_timer, on_timer_closed);
        a->flush_timer_on = 0;
        flush(a);
    }
}

static void audit_free(hv_engine_t *e, void *state) {
    hv__audit_t *a = state;
    audit_stop(e, state);
    /* The modules listed after this one have stopped and freed: nothing records any more.
     * Unhook first, then run what is queued (releasing the answers it holds). */
    hv_audit_set_sink(e, NULL, NULL);
    hv_http_set_respond_hook(e, NULL, NULL);
    hv_http_set_admit_hook(e, NULL, NULL);
    hv_consent_set_filter(e, NULL, NULL);
    hv_storage_free(a->storage);
    a->storage = NULL;
    hv__journal_close(a->journal);
    a->journal = NULL;
    EVP_PKEY_free(a->key);
    a->key = NULL;
    hv__alert_state_free(a->alerts);
    a->alerts = NULL;
    hv__consent_free(a);
    hv__aev_spare_free(a);
    hv__audit_scan_cache_free(a);
    if (a->handles_closing > 0) a->free_on_close = 1;
    else hv_free(a);
}

/* ---- commands ---- */

/* "2026-11-25", "2026-11-25T10:00:00Z" or milliseconds since the epoch → ms. */
int hv__audit_parse_time(const char *s, int64_t *out);
int hv__audit_parse_time(const char *s, int64_t *out) {
    struct tm tm;
    int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
    char *end;
    long long v;
    if (s == NULL || s[0] == '\0') return HV_EINVAL;
    v = strtoll(s, &end, 10);
    if (*end == '\0' && end - s > 8) {
        *out = v;
        return HV_OK;
    }
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3) return HV_EINVAL;
    if (s[n] == 'T' || s[n] == ' ') {
        int m = 0;
        if (sscanf(s + n + 1, "%2d:%2d:%2d%n", &h, &mi, &sec, &m) != 3) return HV_EINVAL;
        n += 1 + m;
        if (s[n] == '.') {
            n++;
            while (s[n] >= '0' && s[n] <= '9') n++;
        }
        if (s[n] == 'Z') n++;
    }
    if (s[n] != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return HV_EINVAL;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    *out = (int64_t)timegm(&tm) * 1000;
    return HV_OK;
}

static int open_store(hv_engine_t *e, hv_db_t **db, EVP_PKEY **key) {
    hv_error_t err;
    int rc;
    hv_error_clear(&err);
    rc = hv__audit_key_load(hv_engine_data_dir(e), 0, key, &err);
    if (rc == HV_OK) rc = hv_db_open(hv_engine_db_url(e), hv_engine_data_dir(e), "audit", db, &err);
    if (rc == HV_OK) rc = hv_db_migrate(*db, "audit", hv__audit_migrations(*db), &err);
    if (rc != HV_OK) {
        char msg[1024];
        hv_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "holovitals: cannot open the audit store: %s\n", msg[0] ? msg : hv_strerror(rc));
        hv_db_close(*db);
        *db = NULL;
        EVP_PKEY_free(*key);
        *key = NULL;
    }
    return rc;
}

static void print_result(const char *what, const hv_audit_verify_t *v) {
    if (v->first_bad == 0 && v->problem[0] == '\0')
        printf("ok: %s: %lld records and %lld signed checkpoints verified\n", what, (long long)v->checked,
               (long long)v->checkpoints);
    else
        printf("FAILED: %s: %s at record %lld: %s (%lld records verified before it)\n", what, v->problem,
               (long long)v->first_bad, v->detail, (long long)v->checked);
}

static int cmd_verify(hv_engine_t *e, int argc, char **argv) {
    const char *since = NULL, *archive = NULL;
    int64_t since_ms = 0;
    hv_db_t *db = NULL;
    EVP_PKEY *key = NULL;
    hv_audit_verify_t v;
    int rc;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--since") == 0 && i + 1 < argc) since = argv[++i];
        else if (strcmp(argv[i], "--archive") == 0 && i + 1 < argc) archive = argv[++i];
        else {
            fprintf(stderr, "usage: holovitals audit verify [--since DATE] [--archive FILE]\n");
            return HV_EXIT_USAGE;
        }
    }
    if (since != NULL && hv__audit_parse_time(since, &since_ms) != HV_OK) {
        fprintf(stderr, "holovitals: --since takes a date (2026-11-25 or 2026-11-25T10:00:00Z)\n");
        return HV_EXIT_USAGE;
    }
    if (archive != NULL) {
        hv_error_t err;
        hv_error_clear(&err);
        /* Offline: only the public half of the key in the data directory is needed. */
        if (hv__audit_key_load(hv_engine_data_dir(e), 0, &key, &err) != HV_OK) {
            fprintf(stderr, "holovitals: %s: %s\n", err.location, err.message);
            return HV_EXIT_FAILURE;
        }
        rc = hv__audit_verify_archive(archive, key, &v, &err);
        EVP_PKEY_free(key);
        if (rc != HV_OK) {
            fprintf(stderr, "holovitals: %s: %s\n", err.location, err.message);
            return HV_EXIT_FAILURE;
        }
        print_result(archive, &v);
        return v.problem[0] ? HV_EXIT_FAILURE : HV_EXIT_OK;
    }
    if (open_store(e, &db, &key) != HV_OK) return HV_EXIT_FAILURE;
    rc = hv__audit_verify_db(db, key, since_ms, &v);
    hv_db_close(db);
    EVP_PKEY_free(key);
    if (rc != HV_OK) {
        fprintf(stderr, "holovitals: the audit store cannot be read: %s\n", hv_strerror(rc));
        return HV_EXIT_FAILURE;
    }
    print_result("audit trail", &v);
    return v.problem[0] ? HV_EXIT_FAILURE : HV_EXIT_OK;
}

static int cmd_archive(hv_engine_t *e, int argc, char **argv) {
    const char *before = NULL, *out = NULL;
    int64_t before_ms = 0, purged = 0;
    int64_t cutoff = (int64_t)hv_now_ms() - hv_config_int(hv_engine_config(e), "audit.hot_days") * 86400000LL;
    int purge = 0;
    hv__audit_archived_t ar;
    hv_db_t *db = NULL;
    EVP_PKEY *key = NULL;
    hv_error_t err;
    int rc;
    hv_error_clear(&err);
    memset(&ar, 0, sizeof(ar));
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--before") == 0 && i + 1 < argc) before = argv[++i];
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out = argv[++i];
        else if (strcmp(argv[i], "--purge") == 0) purge = 1;
        else {
            out = NULL;
            break;
        }
    }
    if (out == NULL) {
        fprintf(stderr, "usage: holovitals audit archive --out FILE.ndjson.gz [--before DATE] [--purge]\n");
        return HV_EXIT_USAGE;
    }
    if (before == NULL) {
        before_ms = cutoff;
    } else if (hv__audit_parse_time(before, &before_ms) != HV_OK) {
        fprintf(stderr, "holovitals: --before takes a date (2026-11-25 or 2026-11-25T10:00:00Z)\n");
        return HV_EXIT_USAGE;
    }
    if (open_store(e, &db, &key) != HV_OK) return HV_EXIT_FAILURE;
    rc = hv__audit_archive(db, key, before_ms, out, &ar, &err);
    if (rc == HV_OK && purge) rc = hv__audit_purge(db, key, out, &ar, cutoff, &purged, &err);
    hv_db_close(db);
    EVP_PKEY_free(key);
    if (rc != HV_OK) {
        fprintf(stderr, "holovitals: %s: %s\n", err.location, err.message);
        return HV_EXIT_FAILURE;
    }
    if (purge)
        printf("archived %lld records to %s, verified it, and removed them from the store (records %lld to %lld;"
               " keep the file until their retention ends)\n",
               (long long)ar.n, out, (long long)ar.first_seq, (long long)ar.last_seq);
    else
        printf("archived %lld records to %s (they stay in the store; --purge removes them once verified)\n",
               (long long)ar.n, out);
    return HV_EXIT_OK;
}

static const hv_command_t commands[] = {
    {"audit verify", "audit verify [--since DATE] [--archive FILE]", "verify the audit trail's hash chain",
     "Walks the hash chain of the audit store (or of an archive written by `audit archive`) and\n"
     "checks every signed checkpoint with the key <data>/audit-signing.pem. Prints the first record\n"
     "that was altered, deleted or inserted and exits 1, or prints ok and exits 0.",
     cmd_verify},
    {"audit archive", "audit archive --out FILE [--before DATE] [--purge]",
     "copy audit records to a gzip'd NDJSON archive with their chain, signed; optionally purge them",
     "Writes the oldest records, in chain order up to the first recorded at or after DATE (default:\n"
     "older than audit.hot_days), to FILE, one JSON object per line, ending with a checkpoint signed by\n"
     "the engine's audit key, so that `audit verify --archive FILE` checks it offline. With --purge the\n"
     "archive is read back and verified, then its records are removed from the store (only records\n"
     "older than audit.hot_days; the store keeps a register of archives so that `audit verify` goes on\n"
     "from the last archived record). Keep archives until their retention (audit.retention.*) ends.",
     cmd_archive},
    {NULL, NULL, NULL, NULL, NULL},
};

const hv_module_t hv_audit_module = {
    "audit", settings, commands, audit_init, audit_start, audit_stop, audit_free,
};
