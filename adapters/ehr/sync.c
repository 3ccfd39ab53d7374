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
 * Writing a page (also used by bulk.c for NDJSON chunks):
 *   1. each resource is checked (structure against the FHIR model, id syntax)
 *      and hashed (SHA-256 of its JSON without meta); a bad one is a failed
 *      resource with its own error, the rest go on;
 *   2. the resources table says, per (type, id), the hash last written and the
 *      local version that write produced: same hash → unchanged, not written;
 *   3. changed ones that exist locally are read back from the FHIR store (one
 *      batch of GETs): a local version other than the one we wrote means the
 *      resource was also changed locally → a conflict, decided by the
 *      connection's policy (ehr-wins: overwrite; local-wins: keep the local
 *      version; keep-both: keep it and write the EHR's as a new resource tagged
 *      for review), recorded in the conflicts table;
 *   4. the rest are written with one FHIR batch (PUT [type]/[id], keeping the
 *      EHR's id) to the local FHIR store's REST API on loopback (ehr.store_url):
 *      each carries its source identity — meta.source = [base]/[type]/[id] and an
 *      identifier {system "urn:holovitals:ehr:<connection>", value <id>} on types
 *      that have identifiers; a channel bound to the connection (source type
 *      epic/cerner/fhir-pull) receives each as a message;
 *   5. one storage job records hashes and versions, then the run's counts and
 *      checkpoint.
 */
#include "config.h"
#include "adapters/ehr/ehr_int.h"
#include "fhir/fhir.h"

#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define IDENT_SYSTEM_PREFIX "urn:holovitals:ehr:"
#define CONFLICT_TAG_SYSTEM "urn:holovitals:ehr:conflict"

enum { ITEM_NEW = 0, ITEM_UNCHANGED, ITEM_CHANGED, ITEM_FAILED, ITEM_SKIP };

typedef struct item {
    char type[64];
    char id[72];
    char hash[65];
    char old_version[32];  /* the local version our last write produced */
    char cur_version[32];  /* the local version now (conflict check) */
    json_object *res;      /* transformed resource (owned) */
    int state;
    int known;             /* a row exists */
    int write;             /* 1 PUT, 2 POST copy (keep-both) */
    int conflict;
    const char *decision;
    char new_version[32];
    char copy_id[72];
} item_t;

typedef struct wctx {
    hv__ehr_run_t *r;
    hv__ehr_written_cb cb;
    item_t *items;
    size_t n;
    char conn[HV__EHR_ID_MAX];
} wctx_t;

static void step(hv__ehr_run_t *r);

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
    if (r->bulk_fp) fclose(r->bulk_fp);
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
    if (r->c->active == r) r->c->active = NULL;
}

int hv__ehr_run_start(hv__ehr_t *m, hv__ehr_conn_t *c, const char *mode, char run_id[HV__EHR_ID_MAX]) {
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
    step(r);
    return HV_OK;
}

void hv__ehr_run_resume(hv__ehr_run_t *r) {
    hv_logrec_t *lr = hv_log_begin(HV_LOG_INFO, "ehr.sync.resumed");
    if (lr) {
        hv_log_str(lr, "run", r->id);
        hv_log_int(lr, "type_idx", (int64_t)r->type_idx);
        hv_log_int(lr, "pages", r->pages);
        hv_log_end(lr);
    }
    step(r);
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
        txt = json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN);
        (void)hv_event_publish(r->m->e, HV_EVENT_EHR_SYNC_COMPLETED, txt, strlen(txt), published, NULL);
        json_object_put(ev);
    }
    hv__ehr_run_free(r);
}

void hv__ehr_run_finish(hv__ehr_run_t *r) {
    const char *status = r->page_failed ? "failed" : "completed";
    hv_logrec_t *lr = hv_log_begin(HV_LOG_INFO, "ehr.sync.finished");
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
    if (hv__ehr_run_save(r, status, on_final_saved, r) != HV_OK) hv__ehr_run_free(r);
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

static void fetch_page(hv__ehr_run_t *r, int status) {
    hv__ehr_conn_t *c = r->c;
    const char *type = cur_type(r);
    hv__ehr_req_t q;
    char url[4096];
    uint64_t h;
    size_t i;
    if (status == HV_ECLOSED) return; /* stopping: resumed at the next start */
    if (status != HV_OK) {
        /* No token: nothing can be fetched; the error is recorded already. */
        r->page_failed = 1;
        hv__ehr_run_finish(r);
        return;
    }
    if (r->next_url != NULL) {
        snprintf(url, sizeof(url), "%s", r->next_url);
    } else {
        int n = snprintf(url, sizeof(url), "%s/%s?_count=%d", c->base_url, type, c->page_size);
        if (r->since_ms > 0 && n > 0 && (size_t)n < sizeof(url)) {
            char ts[40];
            hv_time_rfc3339((uint64_t)r->since_ms, ts, sizeof(ts));
            n += snprintf(url + n, sizeof(url) - (size_t)n, "&_lastUpdated=gt%s", ts);
        }
        if (patient_scoped(r, type) && r->patient_idx < r->npatients && n > 0 && (size_t)n < sizeof(url))
            snprintf(url + n, sizeof(url) - (size_t)n, "&patient=%s", r->patients[r->patient_idx]);
    }
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
    memset(&q, 0, sizeof(q));
    q.url = url;
    q.bearer = c->token;
    q.retry = 1;
    q.no_verify_tls = !c->verify_tls;
    q.rate_slot = &c->rate_slot;
    q.rate_interval_ms = c->rate > 0 ? (uint64_t)(1000.0 / c->rate) : 0;
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
        hv__ehr_run_finish(r);
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

/* ---- writing resources ---- */

static void sha256_hex(const char *s, size_t n, char out[65]) {
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(s, n, md, &len, EVP_sha256(), NULL);
    hv_hex(md, 32, out);
}

static int id_ok(const char *id) {
    size_t n = 0;
    for (; id[n]; n++) {
        char ch = id[n];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.'))
            return 0;
    }
    return n >= 1 && n <= 64;
}

/* Adds the source identity: meta.source and the connection's identifier. */
static int add_identity(hv__ehr_run_t *r, json_object *res, const char *type, const char *id) {
    json_object *meta = NULL, *idents = NULL, *ident;
    const hv_fhir_type_t *t = hv_fhir_resource_type(type);
    const hv_fhir_elem_t *root = t ? hv_fhir_type_root(t) : NULL;
    char sys[128], src[2048];
    size_t i;
    snprintf(sys, sizeof(sys), IDENT_SYSTEM_PREFIX "%s", r->c->id);
    snprintf(src, sizeof(src), "%s/%s/%s", r->c->base_url, type, id);
    if (!json_object_object_get_ex(res, "meta", &meta) || !json_object_is_type(meta, json_type_object)) {
        meta = json_object_new_object();
        if (meta == NULL || hv_json_set(res, "meta", meta) != HV_OK) return HV_ENOMEM;
    }
    json_object_object_del(meta, "versionId");
    json_object_object_del(meta, "lastUpdated");
    if (hv_json_set_str(meta, "source", src) != HV_OK) return HV_ENOMEM;
    if (root == NULL || hv_fhir_elem_child(root, "identifier", 10, NULL) == NULL) return HV_OK;
    if (!json_object_object_get_ex(res, "identifier", &idents)) {
        idents = json_object_new_array();
        if (idents == NULL || hv_json_set(res, "identifier", idents) != HV_OK) return HV_ENOMEM;
    }
    if (!json_object_is_type(idents, json_type_array)) return HV_OK; /* single identifier (rare): leave it */
    for (i = 0; i < json_object_array_length(idents); i++) {
        const char *s = hv_json_get_str(json_object_array_get_idx(idents, i), "system");
        if (s != NULL && strcmp(s, sys) == 0) return HV_OK;
    }
    ident = json_object_new_object();
    if (ident == NULL) return HV_ENOMEM;
    hv_json_set_str(ident, "use", "secondary");
    hv_json_set_str(ident, "system", sys);
    hv_json_set_str(ident, "value", id);
    return json_object_array_add(idents, ident) == 0 ? HV_OK : HV_ENOMEM;
}

static void wctx_free(wctx_t *w) {
    size_t i;
    if (w == NULL) return;
    for (i = 0; i < w->n; i++) json_object_put(w->items[i].res);
    hv_free(w->items);
    hv_free(w);
}

static void w_end(wctx_t *w, int status) {
    hv__ehr_run_t *r = w->r;
    hv__ehr_written_cb cb = w->cb;
    wctx_free(w);
    cb(r, status);
}

static void version_of(const char *etag_or_loc, char *out, size_t outlen) {
    const char *p = strstr(etag_or_loc, "_history/"), *q;
    size_t n;
    out[0] = '\0';
    if (p != NULL) {
        p += 9;
        for (q = p; *q && *q != '/' && *q != '"'; q++) {}
    } else {
        p = strchr(etag_or_loc, '"');
        if (p == NULL) return;
        p++;
        for (q = p; *q && *q != '"'; q++) {}
    }
    n = (size_t)(q - p);
    if (n >= outlen) n = outlen - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

/* Step 5: the rows. */
static int rows_job(hv_db_t *db, void *arg) {
    wctx_t *w = arg;
    hv_db_stmt_t *st = NULL;
    int64_t now = (int64_t)hv_now_ms();
    size_t i;
    int rc;
    for (i = 0; i < w->n; i++) {
        item_t *it = &w->items[i];
        const char *ver;
        if (it->state == ITEM_FAILED || it->state == ITEM_UNCHANGED || it->state == ITEM_SKIP) continue;
        ver = it->write == 1 ? it->new_version : it->cur_version;
        rc = hv_db_prepare(db,
                           "INSERT INTO resources (connection, rtype, rid, hash, local_version, synced_at) VALUES"
                           " ($1, $2, $3, $4, $5, $6) ON CONFLICT (connection, rtype, rid) DO UPDATE SET"
                           " hash = excluded.hash, local_version = excluded.local_version, synced_at = excluded.synced_at",
                           &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_text(st, 1, w->conn, strlen(w->conn));
        hv_db_bind_text(st, 2, it->type, strlen(it->type));
        hv_db_bind_text(st, 3, it->id, strlen(it->id));
        hv_db_bind_text(st, 4, it->hash, strlen(it->hash));
        hv_db_bind_text(st, 5, ver, strlen(ver));
        hv_db_bind_int64(st, 6, now);
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc < 0) return rc;
        if (it->conflict) {
            unsigned char rnd[8];
            char cid[40];
            hv_random_secure(rnd, sizeof(rnd));
            hv_hex(rnd, sizeof(rnd), cid);
            rc = hv_db_prepare(db,
                               "INSERT INTO conflicts (id, connection, run_id, rtype, rid, policy, decision,"
                               " local_version, copy_id, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                               &st);
            if (rc != HV_OK) return rc;
            hv_db_bind_text(st, 1, cid, strlen(cid));
            hv_db_bind_text(st, 2, w->conn, strlen(w->conn));
            hv_db_bind_text(st, 3, w->r->id, strlen(w->r->id));
            hv_db_bind_text(st, 4, it->type, strlen(it->type));
            hv_db_bind_text(st, 5, it->id, strlen(it->id));
            hv_db_bind_text(st, 6, w->r->c->conflict, strlen(w->r->c->conflict));
            hv_db_bind_text(st, 7, it->decision, strlen(it->decision));
            hv_db_bind_text(st, 8, it->cur_version, strlen(it->cur_version));
            hv_db_bind_text(st, 9, it->copy_id, strlen(it->copy_id));
            hv_db_bind_int64(st, 10, now);
            rc = hv_db_step(st);
            hv_db_done(st);
            if (rc < 0) return rc;
        }
    }
    return HV_OK;
}

static void rows_done(int status, void *arg) {
    wctx_t *w = arg;
    if (status != HV_OK) hv__ehr_run_error(w->r, "store", "recording the synced resources failed: %s", hv_strerror(status));
    w_end(w, status);
}

static void commit_rows(wctx_t *w) {
    if (hv_storage_submit(w->r->m->storage, rows_job, rows_done, w) != HV_OK) {
        hv__ehr_run_error(w->r, "store", "the ehr store is busy");
        w_end(w, HV_EBUSY);
    }
}

static void store_req(hv__ehr_t *m, hv__ehr_req_t *q, const char *body, size_t len) {
    memset(q, 0, sizeof(*q));
    q->method = "POST";
    q->url = m->store_url;
    q->content_type = "application/fhir+json";
    q->body = body;
    q->body_len = len;
    q->bearer = m->store_token[0] ? m->store_token : NULL;
    q->retry = 1;
    q->no_verify_tls = 1; /* loopback to ourselves */
}

/* Step 4's answer. */
static void on_batch(void *ud, hv__ehr_resp_t *resp) {
    wctx_t *w = ud;
    hv__ehr_run_t *r = w->r;
    json_object *root = NULL, *entries = NULL;
    size_t i, k = 0;
    if (resp->status == HV_ECLOSED) {
        wctx_free(w);
        return;
    }
    if (resp->status != HV_OK || resp->code != 200 ||
        hv_json_parse(resp->body.data, resp->body.len, "batch", &root, NULL) != HV_OK ||
        !json_object_object_get_ex(root, "entry", &entries) || !json_object_is_type(entries, json_type_array)) {
        if (resp->status != HV_OK)
            hv__ehr_run_error(r, "store", "the FHIR store at ehr.store_url did not answer: %s", resp->error);
        else if (resp->code == 401 || resp->code == 403)
            hv__ehr_run_error(r, "store", "the FHIR store refused the write (HTTP %ld): with authentication on, "
                                          "set ehr.store_token", resp->code);
        else
            hv__ehr_run_error(r, "store", "the FHIR store answered the batch with HTTP %ld", resp->code);
        for (i = 0; i < w->n; i++)
            if (w->items[i].write) {
                w->items[i].state = ITEM_FAILED;
                r->failed++;
            }
        json_object_put(root);
        r->page_failed = 1;
        w_end(w, HV_EIO);
        return;
    }
    for (i = 0; i < w->n; i++) {
        item_t *it = &w->items[i];
        json_object *e, *rr = NULL;
        const char *st, *loc, *etag;
        int code;
        if (!it->write) continue;
        e = json_object_array_get_idx(entries, k++);
        if (e == NULL || !json_object_object_get_ex(e, "response", &rr)) {
            it->state = ITEM_FAILED;
            r->failed++;
            continue;
        }
        st = hv_json_get_str(rr, "status");
        code = st ? atoi(st) : 0;
        loc = hv_json_get_str(rr, "location");
        etag = hv_json_get_str(rr, "etag");
        if (code != 200 && code != 201) {
            json_object *oo = NULL, *issues = NULL, *first, *d = NULL;
            const char *text = st ? st : "no status";
            if (json_object_object_get_ex(rr, "outcome", &oo) && json_object_object_get_ex(oo, "issue", &issues) &&
                json_object_is_type(issues, json_type_array) && (first = json_object_array_get_idx(issues, 0)) &&
                json_object_object_get_ex(first, "diagnostics", &d))
                text = json_object_get_string(d);
            hv__ehr_run_error(r, it->type, "%s/%s was not stored: %.300s", it->type, it->id, text);
            it->state = ITEM_FAILED;
            r->failed++;
            continue;
        }
        if (it->write == 2) {
            /* keep-both: the EHR's version went to a new resource; our row keeps the local one. */
            if (loc) {
                const char *p = strchr(loc, '/');
                size_t n = 0;
                if (p) {
                    p++;
                    while (p[n] && p[n] != '/') n++;
                    snprintf(it->copy_id, sizeof(it->copy_id), "%.*s", (int)n, p);
                }
            }
            continue;
        }
        version_of(etag ? etag : (loc ? loc : ""), it->new_version, sizeof(it->new_version));
        if (code == 201) r->created++;
        else r->updated++;
    }
    json_object_put(root);
    commit_rows(w);
}

static void write_batch(wctx_t *w) {
    hv__ehr_run_t *r = w->r;
    json_object *b = json_object_new_object(), *entries = json_object_new_array();
    hv_channel_t *ch = hv__ehr_channel_for(r->m, r->c->id);
    hv__ehr_req_t q;
    const char *txt;
    size_t i, nw = 0;
    if (b == NULL || entries == NULL) {
        json_object_put(b);
        json_object_put(entries);
        w_end(w, HV_ENOMEM);
        return;
    }
    hv_json_set_str(b, "resourceType", "Bundle");
    hv_json_set_str(b, "type", "batch");
    hv_json_set(b, "entry", entries);
    for (i = 0; i < w->n; i++) {
        item_t *it = &w->items[i];
        json_object *e, *req;
        char url[160];
        if (!it->write) continue;
        e = json_object_new_object();
        req = json_object_new_object();
        if (e == NULL || req == NULL) {
            json_object_put(e);
            json_object_put(req);
            continue;
        }
        if (it->write == 2) {
            json_object *copy = NULL, *meta = NULL, *tags, *tag;
            json_object_deep_copy(it->res, &copy, NULL);
            json_object_object_del(copy, "id");
            if (json_object_object_get_ex(copy, "meta", &meta)) {
                tags = json_object_new_array();
                tag = json_object_new_object();
                hv_json_set_str(tag, "system", CONFLICT_TAG_SYSTEM);
                hv_json_set_str(tag, "code", "needs-review");
                hv_json_set_str(tag, "display", "EHR version kept beside a locally changed resource");
                json_object_array_add(tags, tag);
                hv_json_set(meta, "tag", tags);
            }
            hv_json_set(e, "resource", copy);
            hv_json_set_str(req, "method", "POST");
            hv_json_set_str(req, "url", it->type);
        } else {
            snprintf(url, sizeof(url), "%s/%s", it->type, it->id);
            hv_json_set(e, "resource", json_object_get(it->res));
            hv_json_set_str(req, "method", "PUT");
            hv_json_set_str(req, "url", url);
        }
        hv_json_set(e, "request", req);
        json_object_array_add(entries, e);
        nw++;
        /* The bound channel sees every resource written (filters, steps, destinations, audit). */
        if (ch != NULL && it->write == 1) {
            const char *t = json_object_to_json_string_ext(it->res, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
            (void)hv_channel_receive(ch, t, strlen(t), "application/fhir+json", NULL, NULL);
        }
    }
    if (nw == 0) {
        json_object_put(b);
        commit_rows(w);
        return;
    }
    txt = json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    store_req(r->m, &q, txt, strlen(txt));
    if (hv__ehr_call(r->m->http, &q, on_batch, w) != HV_OK) {
        json_object_put(b);
        wctx_free(w);
        return;
    }
    json_object_put(b);
}

/* Applies the connection's conflict policy to an item changed on both sides. */
static void decide(wctx_t *w, item_t *it) {
    hv__ehr_run_t *r = w->r;
    const char *policy = r->c->conflict;
    it->conflict = 1;
    r->conflicts++;
    if (strcmp(policy, "local-wins") == 0) {
        /* Not written; its row records the new hash and the local version, so the next
         * sync sees no change until either side changes again. */
        it->write = 0;
        it->decision = "local-wins: the EHR's change was not applied";
        r->unchanged++;
    } else if (strcmp(policy, "keep-both") == 0) {
        it->write = 2;
        it->decision = "keep-both: the EHR's version was stored as a new resource tagged needs-review";
        r->unchanged++;
    } else {
        it->write = 1;
        it->decision = "ehr-wins: the local change was overwritten";
    }
    hv__ehr_run_error(r, "conflict", "%s/%s changed locally (version %s, we wrote %s) and in the EHR: %s", it->type,
                      it->id, it->cur_version, it->old_version, it->decision);
}

/* Step 3's answer: the current local versions. */
static void on_local(void *ud, hv__ehr_resp_t *resp) {
    wctx_t *w = ud;
    json_object *root = NULL, *entries = NULL;
    size_t i, k = 0;
    if (resp->status == HV_ECLOSED) {
        wctx_free(w);
        return;
    }
    if (resp->status == HV_OK && resp->code == 200 &&
        hv_json_parse(resp->body.data, resp->body.len, "batch", &root, NULL) == HV_OK)
        json_object_object_get_ex(root, "entry", &entries);
    for (i = 0; i < w->n; i++) {
        item_t *it = &w->items[i];
        json_object *e, *res = NULL, *meta = NULL;
        const char *v = NULL;
        if (it->state != ITEM_CHANGED || !it->known) continue;
        e = entries ? json_object_array_get_idx(entries, k) : NULL;
        k++;
        if (e != NULL && json_object_object_get_ex(e, "resource", &res) && json_object_object_get_ex(res, "meta", &meta))
            v = hv_json_get_str(meta, "versionId");
        snprintf(it->cur_version, sizeof(it->cur_version), "%s", v ? v : "");
        if (v != NULL && it->old_version[0] && strcmp(v, it->old_version) != 0) decide(w, it);
        else it->write = 1;
    }
    json_object_put(root);
    write_batch(w);
}

/* Step 2's answer: hashes and versions of earlier writes. */
static int lookup_job(hv_db_t *db, void *arg) {
    wctx_t *w = arg;
    hv_db_stmt_t *st = NULL;
    size_t i;
    int rc;
    for (i = 0; i < w->n; i++) {
        item_t *it = &w->items[i];
        if (it->state == ITEM_FAILED) continue;
        rc = hv_db_prepare(db, "SELECT hash, local_version FROM resources WHERE connection = $1 AND rtype = $2 AND rid = $3",
                           &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_text(st, 1, w->conn, strlen(w->conn));
        hv_db_bind_text(st, 2, it->type, strlen(it->type));
        hv_db_bind_text(st, 3, it->id, strlen(it->id));
        rc = hv_db_step(st);
        if (rc == HV_DB_ROW) {
            size_t n = 0;
            const char *h = hv_db_column_text(st, 0, &n);
            it->known = 1;
            it->state = (h != NULL && n == 64 && memcmp(h, it->hash, 64) == 0) ? ITEM_UNCHANGED : ITEM_CHANGED;
            h = hv_db_column_text(st, 1, &n);
            snprintf(it->old_version, sizeof(it->old_version), "%.*s", (int)n, h ? h : "");
        }
        hv_db_done(st);
        if (rc < 0) return rc;
    }
    return HV_OK;
}

static void lookup_done(int status, void *arg) {
    wctx_t *w = arg;
    hv__ehr_run_t *r = w->r;
    json_object *b, *entries;
    hv__ehr_req_t q;
    size_t i, nget = 0;
    if (status != HV_OK) {
        hv__ehr_run_error(r, "store", "reading the synced resources failed: %s", hv_strerror(status));
        r->page_failed = 1;
        w_end(w, status);
        return;
    }
    b = json_object_new_object();
    entries = json_object_new_array();
    hv_json_set_str(b, "resourceType", "Bundle");
    hv_json_set_str(b, "type", "batch");
    hv_json_set(b, "entry", entries);
    for (i = 0; i < w->n; i++) {
        item_t *it = &w->items[i];
        if (it->state == ITEM_UNCHANGED) r->unchanged++;
        else if (it->state == ITEM_NEW) it->write = 1;
        else if (it->state == ITEM_CHANGED && !it->known) it->write = 1;
        else if (it->state == ITEM_CHANGED) {
            json_object *e = json_object_new_object(), *req = json_object_new_object();
            char url[160];
            snprintf(url, sizeof(url), "%s/%s", it->type, it->id);
            hv_json_set_str(req, "method", "GET");
            hv_json_set_str(req, "url", url);
            hv_json_set(e, "request", req);
            json_object_array_add(entries, e);
            nget++;
        }
    }
    if (nget == 0) {
        json_object_put(b);
        write_batch(w);
        return;
    }
    {
        const char *txt = json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        store_req(r->m, &q, txt, strlen(txt));
        if (hv__ehr_call(r->m->http, &q, on_local, w) != HV_OK) wctx_free(w);
    }
    json_object_put(b);
}

void hv__ehr_write_resources(hv__ehr_run_t *r, json_object *resources, hv__ehr_written_cb cb) {
    size_t n = json_object_array_length(resources), i;
    wctx_t *w = hv_calloc(1, sizeof(*w));
    if (w == NULL || (n > 0 && (w->items = hv_calloc(n, sizeof(item_t))) == NULL)) {
        hv_free(w);
        cb(r, HV_ENOMEM);
        return;
    }
    w->r = r;
    w->cb = cb;
    w->n = n;
    snprintf(w->conn, sizeof(w->conn), "%s", r->c->id);
    for (i = 0; i < n; i++) {
        item_t *it = &w->items[i];
        json_object *res = json_object_array_get_idx(resources, i), *copy = NULL, *bare = NULL;
        const char *type = hv_json_get_str(res, "resourceType"), *id = hv_json_get_str(res, "id");
        hv_error_t err;
        r->fetched++;
        snprintf(it->type, sizeof(it->type), "%s", type ? type : "?");
        snprintf(it->id, sizeof(it->id), "%s", id ? id : "");
        hv_error_clear(&err);
        if (type == NULL || hv_fhir_resource_type(type) == NULL) {
            hv__ehr_run_error(r, "resource", "entry with unknown resourceType %.64s", type ? type : "(none)");
            it->state = ITEM_FAILED;
        } else if (id == NULL || !id_ok(id)) {
            hv__ehr_run_error(r, type, "a %s without a valid id", type);
            it->state = ITEM_FAILED;
        } else if (hv_fhir_check_structure(res, 0, &err) != HV_OK) {
            hv__ehr_run_error(r, type, "%s/%s is not valid FHIR R4: %s: %s", type, id, err.location, err.message);
            it->state = ITEM_FAILED;
        }
        if (it->state == ITEM_FAILED) {
            r->failed++;
            continue;
        }
        if (json_object_deep_copy(res, &bare, NULL) != 0 || json_object_deep_copy(res, &copy, NULL) != 0) {
            json_object_put(bare);
            it->state = ITEM_FAILED;
            r->failed++;
            continue;
        }
        json_object_object_del(bare, "meta");
        {
            const char *t = json_object_to_json_string_ext(bare, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
            sha256_hex(t, strlen(t), it->hash);
        }
        json_object_put(bare);
        if (add_identity(r, copy, type, id) != HV_OK) {
            json_object_put(copy);
            it->state = ITEM_FAILED;
            r->failed++;
            continue;
        }
        it->res = copy;
        it->state = ITEM_NEW;
    }
    if (hv_storage_submit(r->m->storage, lookup_job, lookup_done, w) != HV_OK) {
        hv__ehr_run_error(r, "store", "the ehr store is busy");
        r->page_failed = 1;
        w_end(w, HV_EBUSY);
    }
}
