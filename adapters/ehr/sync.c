/*
 * sync.c — a sync run: what it fetches, how it writes, how it records.
 *
 * Search mode (full or incremental), per resource type of the connection:
 *   GET [base]/[type]?_count=N[&_lastUpdated=gt<since>][&patient=<id>], then each
 *   `next` link as given (FHIR R4 http.html#paging) until there is none. A URL
 *   seen twice in one type is a loop and ends the type with an error, as do
 *   ehr.max_pages pages. Types the vendor searches per patient (Epic) are
 *   searched once per Patient already synced from the connection.
 * A page is written only once it was fetched and parsed whole (hv_ehr_page_parse
 * takes a page whole or not at all); a page that fails after the retries is an
 * error of the run (the run ends "failed"; the checkpoint lets a later run redo it).
 *
 * Writing a page is write.c (also used by bulk.c for NDJSON chunks).
 *
 * Pipelining: while a page is written (the FHIR store's storage thread), its
 * `next` page is fetched, parsed and prepared (write.c step 1) on the loop
 * thread — whether the page written was fetched the ordinary way or ahead, so
 * that every page but a run's first is fetched ahead. The prepared page is used when the run gets there — after the page
 * before it was recorded and checkpointed, exactly as without prefetching — and
 * only if the run asks for that same URL; a prefetch that failed in any way
 * (HTTP error, a page that does not parse, a 401) is dropped and the page is
 * fetched again the ordinary way, with its retries and its precise errors (and
 * after a Retry-After the failed prefetch was told: http.c hold_back).
 */
#include "config.h"
#include "adapters/ehr/ehr_int.h"
#include "fhir/fhir.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_URL_MAX 4096 /* a page's URL as built here or read from a next link */

static void step(hv__ehr_run_t *r);
static void pf_drop(hv__ehr_run_t *r);

/* ---- errors ---- */

void hv__ehr_run_error(hv__ehr_run_t *r, const char *where, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    json_object *e;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    r->nerrors++;
    if (json_object_array_length(r->errors) >= HV__EHR_MAX_ERRORS) return;
    e = json_object_new_object();
    if (e == NULL) return;
    hv_json_set_str(e, "where", where);
    hv_json_set_str(e, "message", msg);
    json_object_array_add(r->errors, e);
    {
        hv_logrec_t *lr = hv_log_begin(HV_LOG_WARN, "ehr.sync.error");
        if (lr) {
            hv_log_str(lr, "run", r->id);
            hv_log_str(lr, "connection", r->c->id);
            hv_log_str(lr, "where", where);
            hv_log_end(lr);
        }
    }
}

/* ---- runs ---- */

void hv__ehr_run_free(hv__ehr_run_t *r) {
    size_t i;
    if (r == NULL) return;
    json_object_put(r->errors);
    json_object_put(r->bulk_outputs);
    hv__ehr_bulk_release(r);
    hv__ehr_bulk_drop_ahead(r);
    pf_drop(r);
    hv_free(r->next_url);
    hv_free(r->pending_next);
    hv_free(r->bulk_status_url);
    hv_free(r->seen);
    for (i = 0; i < r->npatients; i++) hv_free(r->patients[i]);
    hv_free(r->patients);
    hv_free(r);
}

static void unlink_run(hv__ehr_run_t *r) {
    hv__ehr_run_t **pp;
    for (pp = &r->m->runs; *pp != NULL; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
}

/* The connection is free again once the run's final row is saved: until then the run still
 * uses it (on_final_saved), so neither a reload of the connections (store.c) nor a key
 * rotation may replace it. */
static void release_conn(hv__ehr_run_t *r) {
    if (r->c->active == r) r->c->active = NULL;
}

static void on_claimed(hv__ehr_t *m, hv__ehr_conn_t *c, int ok, const char *holder, void *ud) {
    hv__ehr_run_t *r = ud;
    (void)c;
    if (m->stopping) return; /* resumed at the next start */
    if (ok) {
        r->leased = 1;
        step(r);
        return;
    }
    if (r->resumed) {
        /* A run found "running" at start whose lease another engine holds is that engine's:
         * it is running it (engines sharing a database see each other's runs), or it will
         * resume it when it restarts or its lease expires. Its row is left as it is: saving
         * this run as failed would overwrite the outcome the holder records (a completed
         * run shown failed, seen with two engines on one database). */
        hv_logrec_t *lr = hv_log_begin(HV_LOG_INFO, "ehr.sync.left_to_holder");
        if (lr) {
            hv_log_str(lr, "run", r->id);
            hv_log_str(lr, "holder", holder[0] ? holder : "?");
            hv_log_end(lr);
        }
        unlink_run(r);
        release_conn(r);
        hv__ehr_run_free(r);
        return;
    }
    hv__ehr_run_error(r, "lease", "another engine (%s) is running a sync of this connection: this run did not start",
                      holder[0] ? holder : "?");
    r->page_failed = 1;
    hv__ehr_run_finish(r);
}

/* Takes the lease unless held, then goes on. */
static void lease_then_step(hv__ehr_run_t *r) {
    if (r->leased) {
        step(r);
        return;
    }
    if (hv__ehr_lease_claim(r->m, r->c, 0, on_claimed, r) != HV_OK) {
        hv__ehr_run_error(r, "lease", "the ehr store is busy: the run could not take the connection's lease");
        r->page_failed = 1;
        hv__ehr_run_finish(r);
    }
}

int hv__ehr_run_start(hv__ehr_t *m, hv__ehr_conn_t *c, const char *mode, char run_id[HV__EHR_ID_MAX], int leased) {
    hv__ehr_run_t *r;
    unsigned char rnd[8];
    char hex[17];
    int rc;
    if (c->active != NULL) return HV_EBUSY;
    r = hv_calloc(1, sizeof(*r));
    if (r == NULL) return HV_ENOMEM;
    r->m = m;
    r->c = c;
    r->errors = json_object_new_array();
    hv_random_secure(rnd, sizeof(rnd));
    hv_hex(rnd, sizeof(rnd), hex);
    r->started_at = (int64_t)hv_now_ms();
    snprintf(r->id, sizeof(r->id), "run-%013lld-%s", (long long)r->started_at, hex);
    snprintf(r->mode, sizeof(r->mode), "%s", mode);
    if (strcmp(mode, "incremental") == 0) r->since_ms = c->since_ms;
    if (strcmp(mode, "bulk-since") == 0) {
        /* A Bulk export of what changed since the last completed run (api.c). */
        snprintf(r->mode, sizeof(r->mode), "bulk");
        r->since_ms = c->since_ms;
    }
    if (r->errors == NULL) {
        hv__ehr_run_free(r);
        return HV_ENOMEM;
    }
    rc = hv__ehr_run_save(r, "running", NULL, NULL);
    if (rc != HV_OK) {
        hv__ehr_run_free(r);
        return rc;
    }
    c->active = r;
    r->next = m->runs;
    m->runs = r;
    {
        hv_logrec_t *lr = hv_log_begin(HV_LOG_INFO, "ehr.sync.started");
        if (lr) {
            hv_log_str(lr, "run", r->id);
            hv_log_str(lr, "connection", c->id);
            hv_log_str(lr, "mode", r->mode);
            hv_log_end(lr);
        }
    }
    snprintf(run_id, HV__EHR_ID_MAX, "%s", r->id);
    r->leased = leased;
    lease_then_step(r);
    return HV_OK;
}

void hv__ehr_run_resume(hv__ehr_run_t *r) {
    r->resumed = 1;
    hv_logrec_t *lr = hv_log_begin(HV_LOG_INFO, "ehr.sync.resumed");
    if (lr) {
        hv_log_str(lr, "run", r->id);
        hv_log_int(lr, "type_idx", (int64_t)r->type_idx);
        hv_log_int(lr, "pages", r->pages);
        hv_log_end(lr);
    }
    lease_then_step(r);
}

static void published(int status, int64_t id, void *ud) {
    (void)status;
    (void)id;
    (void)ud;
}

static void on_final_saved(int status, void *ud) {
    hv__ehr_run_t *r = ud;
    json_object *ev = json_object_new_object();
    (void)status;
    if (ev != NULL) {
        const char *txt;
        hv_json_set_str(ev, "run_id", r->id);
        hv_json_set_str(ev, "connection", r->c->id);
        hv_json_set_str(ev, "vendor", r->c->vendor->name);
        hv_json_set_str(ev, "mode", r->mode);
        hv_json_set_str(ev, "status", r->page_failed ? "failed" : "completed");
        hv_json_set_int(ev, "fetched", r->fetched);
        hv_json_set_int(ev, "created", r->created);
        hv_json_set_int(ev, "updated", r->updated);
        hv_json_set_int(ev, "unchanged", r->unchanged);
        hv_json_set_int(ev, "failed", r->failed);
        hv_json_set_int(ev, "conflicts", r->conflicts);
        hv_json_set_int(ev, "deleted", r->deleted);
        txt = json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN);
        (void)hv_event_publish(r->m->e, HV_EVENT_EHR_SYNC_COMPLETED, txt, strlen(txt), published, NULL);
        json_object_put(ev);
    }
    release_conn(r);
    hv__ehr_run_free(r);
}

void hv__ehr_run_finish(hv__ehr_run_t *r) {
    const char *status = r->page_failed ? "failed" : "completed";
    hv_logrec_t *lr;
    if (r->deferred) {
        /* Every end of the run builds the search indexes it deferred (bulk.c), before the
         * run is saved finished. */
        hv__ehr_bulk_restore(r, hv__ehr_run_finish);
        return;
    }
    lr = hv_log_begin(HV_LOG_INFO, "ehr.sync.finished");
    if (lr) {
        hv_log_str(lr, "run", r->id);
        hv_log_str(lr, "status", status);
        hv_log_int(lr, "fetched", r->fetched);
        hv_log_int(lr, "created", r->created);
        hv_log_int(lr, "updated", r->updated);
        hv_log_int(lr, "unchanged", r->unchanged);
        hv_log_int(lr, "failed", r->failed);
        hv_log_end(lr);
    }
    r->finished = 1;
    if (!r->page_failed) {
        /* The next incremental asks from a little before this run began (clock skew). */
        r->c->since_ms = r->started_at - (int64_t)r->m->overlap_ms;
        r->c->next_run_at = (int64_t)hv_ehr_schedule_next(&r->c->schedule, hv_now_ms());
    }
    unlink_run(r);
    if (hv__ehr_run_save(r, status, on_final_saved, r) != HV_OK) {
        release_conn(r);
        hv__ehr_run_free(r);
    }
    hv__ehr_schedule_arm(r->m);
}

static void on_checkpoint(int status, void *ud) {
    hv__ehr_run_t *r = ud;
    void (*next)(hv__ehr_run_t *) = r->after_checkpoint;
    (void)status;
    r->after_checkpoint = NULL;
    if (next) next(r);
}

void hv__ehr_run_checkpoint(hv__ehr_run_t *r, void (*next)(hv__ehr_run_t *r)) {
    r->after_checkpoint = next;
    if (hv__ehr_run_save(r, "running", on_checkpoint, r) != HV_OK) {
        r->after_checkpoint = NULL;
        hv__ehr_run_error(r, "checkpoint", "the checkpoint could not be saved");
        next(r);
    }
}

/* ---- search paging ---- */

static const char *cur_type(hv__ehr_run_t *r) {
    json_object *t = json_object_array_get_idx(r->c->types, r->type_idx);
    return t ? json_object_get_string(t) : NULL;
}

static int patient_scoped(hv__ehr_run_t *r, const char *type) {
    const char *const *p = r->c->vendor->patient_scoped;
    for (; p != NULL && *p != NULL; p++)
        if (strcmp(*p, type) == 0) return 1;
    return 0;
}

static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void next_type(hv__ehr_run_t *r) {
    const char *type = cur_type(r);
    hv_free(r->next_url);
    r->next_url = NULL;
    r->nseen = 0;
    r->auth_retried = 0;
    if (type != NULL && patient_scoped(r, type) && r->patient_idx + 1 < r->npatients) {
        r->patient_idx++;
        return;
    }
    r->patient_idx = 0;
    r->type_idx++;
    r->patients_loaded = 0;
}

typedef struct pjob {
    hv__ehr_run_t *r;
    char conn[HV__EHR_ID_MAX];
    char **ids;
    size_t n, cap;
} pjob_t;

static int patients_job(hv_db_t *db, void *arg) {
    pjob_t *p = arg;
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "SELECT rid FROM resources WHERE connection = $1 AND rtype = 'Patient' ORDER BY rid", &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, p->conn, strlen(p->conn));
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t len = 0;
        const char *s = hv_db_column_text(st, 0, &len);
        if (p->n == p->cap) {
            size_t nc = p->cap ? p->cap * 2 : 64;
            char **ni = hv_realloc(p->ids, nc * sizeof(*ni));
            if (ni == NULL) {
                rc = HV_ENOMEM;
                break;
            }
            p->ids = ni;
            p->cap = nc;
        }
        p->ids[p->n] = hv_strndup(s, len);
        if (p->ids[p->n] == NULL) {
            rc = HV_ENOMEM;
            break;
        }
        p->n++;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static void patients_done(int status, void *arg) {
    pjob_t *p = arg;
    hv__ehr_run_t *r = p->r;
    size_t i;
    for (i = 0; i < r->npatients; i++) hv_free(r->patients[i]);
    hv_free(r->patients);
    r->patients = p->ids;
    r->npatients = p->n;
    r->patients_loaded = 1;
    if (status != HV_OK) {
        hv__ehr_run_error(r, "patients", "the patients of the connection could not be read");
        r->page_failed = 1;
    }
    hv_free(p);
    step(r);
}

static void on_page(void *ud, hv__ehr_resp_t *resp);
static void page_written(hv__ehr_run_t *r, int status);

/* ---- the next page, ahead ---- */

enum { PF_FLIGHT = 0, PF_READY, PF_FAILED };

typedef struct hv__ehr_pf {
    hv__ehr_run_t *r;        /* NULL once the run let go of it: freed when its call ends */
    char *url;
    int state;               /* PF_* */
    int waiting;             /* the run asked for it while in flight */
    char *next;              /* its next link */
    json_object *warnings;   /* its OperationOutcome texts */
    hv__ehr_batch_t *b;      /* its resources, prepared */
    uint64_t fetch_ms;
    uint64_t started_ms;
} hv__ehr_pf_t;

static void pf_free(hv__ehr_pf_t *pf) {
    if (pf == NULL) return;
    hv_free(pf->url);
    hv_free(pf->next);
    json_object_put(pf->warnings);
    hv__ehr_batch_free(pf->b);
    hv_free(pf);
}

/* Lets go of the run's prefetch: freed now, or when its call ends. */
static void pf_drop(hv__ehr_run_t *r) {
    hv__ehr_pf_t *pf = r->pf;
    if (pf == NULL) return;
    r->pf = NULL;
    if (pf->state == PF_FLIGHT) pf->r = NULL;
    else pf_free(pf);
}

static void issue(hv__ehr_run_t *r, const char *url);
static void prefetch_after(hv__ehr_run_t *r);

/* Writes the prefetched page as on_page would have (the run asked for its URL). */
static void pf_consume(hv__ehr_run_t *r) {
    hv__ehr_pf_t *pf = r->pf;
    hv__ehr_batch_t *b = pf->b;
    const char *type = cur_type(r);
    char where[96];
    size_t i;
    r->pf = NULL;
    r->fetch_ms = pf->fetch_ms;
    r->page_ahead = 1;
    r->auth_retried = 0;
    snprintf(where, sizeof(where), "%s page %lld", type ? type : "?", (long long)r->nseen);
    for (i = 0; pf->warnings != NULL && i < json_object_array_length(pf->warnings); i++)
        hv__ehr_run_error(r, where, "warning from the server: %.300s",
                          json_object_get_string(json_object_array_get_idx(pf->warnings, i)));
    hv_free(r->pending_next);
    r->pending_next = pf->next;
    pf->next = NULL;
    pf->b = NULL;
    pf_free(pf);
    /* As on_page: the page after this one is fetched and prepared while it is written, so
     * that every page, not every other one, is ready when its turn comes. */
    prefetch_after(r);
    hv__ehr_batch_write(r, b, page_written);
}

static void on_prefetch(void *ud, hv__ehr_resp_t *resp) {
    hv__ehr_pf_t *pf = ud;
    hv__ehr_run_t *r = pf->r;
    hv_ehr_page_t page;
    hv_error_t err;
    size_t i;
    if (r == NULL) {
        pf_free(pf);
        return;
    }
    pf->fetch_ms = hv_now_ms() - pf->started_ms;
    pf->state = PF_FAILED;
    if (resp->status == HV_ECLOSED) return; /* stopping: the run resumes from its checkpoint */
    hv_error_clear(&err);
    if (resp->status == HV_OK && resp->code == 200 &&
        hv_ehr_page_parse(resp->body.data, resp->body.len, (size_t)r->m->max_page_bytes, &page, &err) == HV_OK) {
        json_object *arr = json_object_new_array();
        pf->warnings = json_object_new_array();
        for (i = 0; i < page.noutcomes && pf->warnings != NULL; i++) {
            json_object *issues = NULL, *first, *d = NULL;
            const char *text = "an OperationOutcome entry";
            if (json_object_object_get_ex(page.outcomes[i], "issue", &issues) &&
                json_object_is_type(issues, json_type_array) && (first = json_object_array_get_idx(issues, 0)) &&
                json_object_object_get_ex(first, "diagnostics", &d) && json_object_is_type(d, json_type_string))
                text = json_object_get_string(d);
            json_object_array_add(pf->warnings, json_object_new_string(text));
        }
        for (i = 0; arr != NULL && i < page.nresources; i++)
            json_object_array_add(arr, json_object_get(page.resources[i]));
        pf->next = page.next ? hv_strdup(page.next) : NULL;
        hv_ehr_page_release(&page);
        if (arr != NULL && pf->warnings != NULL && (page.next == NULL || pf->next != NULL) &&
            (pf->b = hv__ehr_batch_prepare(r, arr)) != NULL)
            pf->state = PF_READY;
        json_object_put(arr);
    }
    if (!pf->waiting) return;
    pf->waiting = 0;
    if (pf->state == PF_READY) {
        pf_consume(r);
    } else {
        char *url = hv_strdup(pf->url);
        pf_drop(r);
        if (url != NULL) issue(r, url);
        else {
            r->page_failed = 1;
            hv__ehr_run_finish(r);
        }
        hv_free(url);
    }
}

/* Starts fetching url ahead (the page after the one being written). */
static void pf_start(hv__ehr_run_t *r, const char *url) {
    hv__ehr_conn_t *c = r->c;
    hv__ehr_pf_t *pf;
    hv__ehr_req_t q;
    pf_drop(r);
    pf = hv_calloc(1, sizeof(*pf));
    if (pf == NULL || (pf->url = hv_strdup(url)) == NULL) {
        hv_free(pf);
        return; /* no prefetch: the page is fetched when its turn comes */
    }
    pf->r = r;
    pf->started_ms = hv_now_ms();
    memset(&q, 0, sizeof(q));
    q.url = url;
    q.bearer = c->token;
    q.retry = 0; /* a failure is retried by the ordinary fetch */
    q.no_verify_tls = !c->verify_tls;
    q.rate_slot = &c->rate_slot;
    q.rate_interval_ms = c->rate > 0 ? (uint64_t)(1000.0 / c->rate) : 0;
    if (hv__ehr_call(r->m->http, &q, on_prefetch, pf) != HV_OK) {
        pf_free(pf);
        return;
    }
    r->pf = pf;
}

static void page_written(hv__ehr_run_t *r, int status) {
    (void)status;
    r->pages++;
    if (r->pending_next != NULL) {
        hv_free(r->next_url);
        r->next_url = r->pending_next;
        r->pending_next = NULL;
    } else {
        next_type(r);
    }
    hv__ehr_run_checkpoint(r, step);
}

/* The URL of type's first page (for patient_idx's patient when the vendor searches type per
 * patient): fetch_page's, and the cross-type prefetch's, which must name the same page. */
static void first_url(hv__ehr_run_t *r, const char *type, size_t patient_idx, char *url, size_t size) {
    hv__ehr_conn_t *c = r->c;
    int n = snprintf(url, size, "%s/%s?_count=%d", c->base_url, type, c->page_size);
    if (r->ids_pass && n > 0 && (size_t)n < size)
        n += snprintf(url + n, size - (size_t)n, "&_elements=id");
    else if (r->since_ms > 0 && n > 0 && (size_t)n < size) {
        char ts[40];
        hv_time_rfc3339((uint64_t)r->since_ms, ts, sizeof(ts));
        n += snprintf(url + n, size - (size_t)n, "&_lastUpdated=gt%s", ts);
    }
    if (patient_scoped(r, type) && patient_idx < r->npatients && n > 0 && (size_t)n < size)
        snprintf(url + n, size - (size_t)n, "&patient=%s", r->patients[patient_idx]);
}

/* The first page the run will fetch after the current type's last one (where next_type
 * leads), when it is known now: 0 at the end of the types, and for a type searched per
 * patient whose patients are read only when its turn comes (the page being written may
 * add some). */
static int next_first_url(hv__ehr_run_t *r, char *url, size_t size) {
    const char *type = cur_type(r), *next;
    json_object *t;
    if (type == NULL) return 0;
    if (patient_scoped(r, type) && r->patient_idx + 1 < r->npatients) {
        first_url(r, type, r->patient_idx + 1, url, size);
        return 1;
    }
    t = json_object_array_get_idx(r->c->types, r->type_idx + 1);
    next = t ? json_object_get_string(t) : NULL;
    if (next == NULL || patient_scoped(r, next)) return 0;
    first_url(r, next, 0, url, size);
    return 1;
}

/* The page being written is followed by its next page, fetched and prepared meanwhile: the
 * type's next, or after its last the next type's first (issue() takes it when fetch_page asks
 * for that URL; another URL drops it). */
static void prefetch_after(hv__ehr_run_t *r) {
    char url[PAGE_URL_MAX];
    if (r->pending_next != NULL) pf_start(r, r->pending_next);
    else if (next_first_url(r, url, sizeof(url))) pf_start(r, url);
}

static void fetch_page(hv__ehr_run_t *r, int status) {
    const char *type = cur_type(r);
    char url[PAGE_URL_MAX];
    uint64_t h;
    size_t i;
    if (status == HV_ECLOSED) return; /* stopping: resumed at the next start */
    if (status != HV_OK) {
        /* No token: nothing can be fetched; the error is recorded already. */
        r->page_failed = 1;
        hv__ehr_run_finish(r);
        return;
    }
    if (r->next_url != NULL) snprintf(url, sizeof(url), "%s", r->next_url);
    else first_url(r, type, r->patient_idx, url, sizeof(url));
    h = fnv(url);
    for (i = 0; i < r->nseen; i++)
        if (r->seen[i] == h) {
            hv__ehr_run_error(r, type, "page %zu: the next link repeats an earlier page (a paging loop); %s stopped",
                              r->nseen + 1, type);
            r->page_failed = 1;
            next_type(r);
            hv__ehr_run_checkpoint(r, step);
            return;
        }
    if ((int)r->nseen >= r->m->max_pages) {
        hv__ehr_run_error(r, type, "more than ehr.max_pages (%d) pages; %s stopped", r->m->max_pages, type);
        r->page_failed = 1;
        next_type(r);
        hv__ehr_run_checkpoint(r, step);
        return;
    }
    if (r->nseen == r->capseen) {
        size_t nc = r->capseen ? r->capseen * 2 : 64;
        uint64_t *ns = hv_realloc(r->seen, nc * sizeof(*ns));
        if (ns == NULL) {
            r->page_failed = 1;
            hv__ehr_run_finish(r);
            return;
        }
        r->seen = ns;
        r->capseen = nc;
    }
    r->seen[r->nseen++] = h;
    issue(r, url);
}

/* Fetches url: from the prefetch when it is that page, else with a request of its own. */
static void issue(hv__ehr_run_t *r, const char *url) {
    hv__ehr_conn_t *c = r->c;
    hv__ehr_req_t q;
    if (r->pf != NULL && strcmp(r->pf->url, url) == 0 && r->pf->state != PF_FAILED) {
        if (r->pf->state == PF_READY) pf_consume(r);
        else r->pf->waiting = 1;
        return;
    }
    pf_drop(r);
    memset(&q, 0, sizeof(q));
    q.url = url;
    q.bearer = c->token;
    q.retry = 1;
    q.no_verify_tls = !c->verify_tls;
    q.rate_slot = &c->rate_slot;
    q.rate_interval_ms = c->rate > 0 ? (uint64_t)(1000.0 / c->rate) : 0;
    r->fetch_started_ms = hv_now_ms();
    if (hv__ehr_call(r->m->http, &q, on_page, r) != HV_OK) {
        /* The engine is stopping: the run stays "running" and resumes at the next start. */
        return;
    }
}

static void on_page(void *ud, hv__ehr_resp_t *resp) {
    hv__ehr_run_t *r = ud;
    const char *type = cur_type(r);
    hv_ehr_page_t page;
    hv_error_t err;
    json_object *arr;
    size_t i;
    int rc;
    char where[96];
    snprintf(where, sizeof(where), "%s page %lld", type, (long long)r->nseen);
    if (resp->status == HV_ECLOSED) return;
    r->fetch_ms = hv_now_ms() - r->fetch_started_ms;
    r->page_ahead = 0;
    /* The page is fetched again when resumed: forget it was seen. */
    if (resp->status == HV_OK && resp->code == 401 && !r->auth_retried && (r->c->key_sealed || r->c->secret_sealed)) {
        r->auth_retried = 1;
        r->nseen--;
        hv__ehr_token_drop(r->c);
        step(r);
        return;
    }
    if (resp->status != HV_OK || resp->code != 200) {
        if (resp->status != HV_OK)
            hv__ehr_run_error(r, where, "not fetched after %d attempts: %s", resp->attempts, resp->error);
        else
            hv__ehr_run_error(r, where, "HTTP %ld after %d attempts%s%.100s", resp->code, resp->attempts,
                              resp->content_type[0] ? " (" : "", resp->content_type[0] ? resp->content_type : "");
        r->page_failed = 1;
        next_type(r);
        hv__ehr_run_checkpoint(r, step);
        return;
    }
    hv_error_clear(&err);
    rc = hv_ehr_page_parse(resp->body.data, resp->body.len, (size_t)r->m->max_page_bytes, &page, &err);
    if (rc != HV_OK) {
        hv__ehr_run_error(r, where, "%s%s%s", err.location[0] ? err.location : "", err.location[0] ? ": " : "",
                          err.message);
        r->page_failed = 1;
        next_type(r);
        hv__ehr_run_checkpoint(r, step);
        return;
    }
    r->auth_retried = 0;
    for (i = 0; i < page.noutcomes; i++) {
        json_object *issues = NULL, *first, *d = NULL;
        const char *text = "an OperationOutcome entry";
        if (json_object_object_get_ex(page.outcomes[i], "issue", &issues) &&
            json_object_is_type(issues, json_type_array) && (first = json_object_array_get_idx(issues, 0)) &&
            json_object_object_get_ex(first, "diagnostics", &d) && json_object_is_type(d, json_type_string))
            text = json_object_get_string(d);
        hv__ehr_run_error(r, where, "warning from the server: %.300s", text);
    }
    r->pending_next = page.next ? hv_strdup(page.next) : NULL;
    arr = json_object_new_array();
    for (i = 0; arr != NULL && i < page.nresources; i++) json_object_array_add(arr, json_object_get(page.resources[i]));
    hv_ehr_page_release(&page);
    if (arr == NULL) {
        r->page_failed = 1;
        hv__ehr_run_finish(r);
        return;
    }
    if (r->ids_pass) {
        hv__ehr_mark_seen(r, arr, page_written);
        json_object_put(arr);
        return;
    }
    prefetch_after(r);
    hv__ehr_write_resources(r, arr, page_written);
    json_object_put(arr);
}

static void step(hv__ehr_run_t *r) {
    const char *type;
    if (r->m->stopping) return; /* resumed from the checkpoint at the next start */
    if (strcmp(r->mode, "bulk") == 0) {
        hv__ehr_bulk_step(r);
        return;
    }
    type = cur_type(r);
    if (type == NULL) {
        /* A full search sync saw everything the EHR has of its types: what it did not see was deleted. */
        if (strcmp(r->mode, "full") == 0 && !r->page_failed && !r->reconciled) hv__ehr_reconcile(r);
        /* An incremental one reads the deletions from the EHR's history (history.c). */
        else if (strcmp(r->mode, "incremental") == 0 && r->since_ms > 0 && !r->page_failed && !r->reconciled &&
                 r->c->vendor->history_deletions)
            hv__ehr_history_deletions(r);
        /* Vendors without type history (Epic, Oracle Health): the id pass lists every id of the
         * run's types (_elements=id, pages only mark them seen), then reconciles as a full sync. */
        else if (strcmp(r->mode, "incremental") == 0 && r->since_ms > 0 && !r->page_failed && !r->reconciled &&
                 r->m->id_reconcile && !r->ids_pass) {
            r->ids_pass = 1;
            r->type_idx = 0;
            r->patient_idx = 0;
            r->patients_loaded = 0;
            r->nseen = 0;
            hv_free(r->next_url);
            r->next_url = NULL;
            hv__ehr_run_checkpoint(r, step);
        } else if (r->ids_pass && !r->page_failed && !r->reconciled)
            hv__ehr_reconcile(r);
        else hv__ehr_run_finish(r);
        return;
    }
    if (patient_scoped(r, type)) {
        if (!r->patients_loaded) {
            pjob_t *p = hv_calloc(1, sizeof(*p));
            if (p == NULL) {
                r->page_failed = 1;
                hv__ehr_run_finish(r);
                return;
            }
            p->r = r;
            snprintf(p->conn, sizeof(p->conn), "%s", r->c->id);
            if (hv_storage_submit(r->m->storage, patients_job, patients_done, p) != HV_OK) {
                hv_free(p);
                r->page_failed = 1;
                hv__ehr_run_finish(r);
            }
            return;
        }
        if (r->npatients == 0) {
            hv__ehr_run_error(r, type, "%s is searched per patient at this vendor and no Patient was synced yet "
                                       "(list Patient before it in resource_types)", type);
            next_type(r);
            step(r);
            return;
        }
    }
    hv__ehr_token_get(r, fetch_page);
}
