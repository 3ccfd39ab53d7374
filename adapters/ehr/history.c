/*
 * history.c — deletions in the EHR found by an incremental sync, from the EHR's
 * history (FHIR R4 http.html#history).
 *
 * A search answers only what exists, so an incremental search (_lastUpdated=gt…)
 * never shows a deletion. The type-level history does: after the incremental's
 * search pages, for each of the run's types, GET [base]/[type]/_history?_since=
 * <the run's since>&_count=<page size>, then every `next` link, reads each entry's
 * type, id and whether it is a deletion (request.method DELETE, no resource;
 * page.c hv_ehr_history_parse). History is newest first, so the first entry of an
 * id is its latest state: an id whose latest entry is a deletion is gone from the
 * EHR (one deleted and re-created in the window is not). Those the connection
 * synced are deleted locally as a full sync's reconciliation does (reconcile.c,
 * ehr.deletions: delete or keep).
 *
 * Only for vendors whose servers offer type-level history (hv_ehr_vendor_t
 * history_deletions: the generic `fhir` vendor; Epic and Oracle Health do not).
 * A server that answers a 4xx to a type's _history does not support it: one
 * warning, that type's deletions are left to the next full sync, the run is not
 * failed. A transport failure or a 5xx after the retries, or a page that is not a
 * history Bundle, fails the run, so that the next incremental asks from the same
 * point again. At most HV__EHR_HIST_MAX entries are read per run (newest first);
 * beyond, a warning, and older deletions are left to the next full sync.
 */
#include "config.h"
#include "adapters/ehr/ehr_int.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#define HV__EHR_HIST_MAX 200000

typedef struct hent {
    char type[HV_EHR_HIST_TYPE_MAX];
    char id[HV_EHR_HIST_ID_MAX];
    size_t seq;     /* position in the history: 0 is the newest */
    int deleted;
} hent_t;

struct hv__ehr_hist {
    hv__ehr_run_t *r;
    size_t type_idx;
    char *url;        /* the page to fetch */
    hent_t *e;
    size_t n, cap;
    int capped;       /* HV__EHR_HIST_MAX reached */
    int pages;        /* of the current type */
    uint64_t *seen;   /* FNV-1a of the page URLs of the current type (next-link loops) */
    size_t nseen;
};
typedef struct hv__ehr_hist hctx_t;

static void hist_free(hctx_t *h) {
    if (h == NULL) return;
    hv_free(h->url);
    hv_free(h->e);
    hv_free(h->seen);
    hv_free(h);
}

static uint64_t fnv(const char *s) {
    uint64_t x = 0xcbf29ce484222325ULL;
    while (*s) x = (x ^ (unsigned char)*s++) * 0x100000001b3ULL;
    return x;
}

static int by_key(const void *a, const void *b) {
    const hent_t *x = a, *y = b;
    int c = strcmp(x->type, y->type);
    if (c == 0) c = strcmp(x->id, y->id);
    if (c == 0) c = x->seq < y->seq ? -1 : x->seq > y->seq;
    return c;
}

/* The ids whose newest entry is a deletion, handed to reconcile.c; the run then ends. */
static void hist_end(hctx_t *h) {
    hv__ehr_run_t *r = h->r;
    hv__ehr_gone_t *g = NULL;
    size_t i, ng = 0;
    if (h->n > 0) qsort(h->e, h->n, sizeof(*h->e), by_key);
    for (i = 0; i < h->n; i++) {
        int first = i == 0 || strcmp(h->e[i].type, h->e[i - 1].type) != 0 || strcmp(h->e[i].id, h->e[i - 1].id) != 0;
        if (first && h->e[i].deleted) ng++;
    }
    if (ng > 0 && (g = hv_calloc(ng, sizeof(*g))) == NULL) {
        hv__ehr_run_error(r, "deletions", "out of memory reading the EHR's history");
        r->page_failed = 1;
        ng = 0;
    }
    ng = 0;
    for (i = 0; g != NULL && i < h->n; i++) {
        int first = i == 0 || strcmp(h->e[i].type, h->e[i - 1].type) != 0 || strcmp(h->e[i].id, h->e[i - 1].id) != 0;
        if (!first || !h->e[i].deleted) continue;
        snprintf(g[ng].type, sizeof(g[ng].type), "%s", h->e[i].type);
        snprintf(g[ng].id, sizeof(g[ng].id), "%s", h->e[i].id);
        ng++;
    }
    if (h->capped)
        hv__ehr_run_error(r, "deletions", "the EHR's history since the last sync has more than %d entries; older "
                                          "deletions are found by the next full sync", HV__EHR_HIST_MAX);
    r->hist = NULL;
    hist_free(h);
    hv__ehr_reconcile_gone(r, g, ng); /* takes g; ends the run */
}

static int add_entry(void *ud, const char *type, const char *id, int deleted) {
    hctx_t *h = ud;
    hv__ehr_run_t *r = h->r;
    const char *want = json_object_get_string(json_object_array_get_idx(r->c->types, h->type_idx));
    hent_t *e;
    if (want == NULL || strcmp(type, want) != 0) return HV_OK; /* another type: not this history's */
    if (h->n == HV__EHR_HIST_MAX) {
        h->capped = 1;
        return HV_ETOOBIG;
    }
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 256;
        hent_t *ne = hv_realloc(h->e, nc * sizeof(*ne));
        if (ne == NULL) return HV_ENOMEM;
        h->e = ne;
        h->cap = nc;
    }
    e = &h->e[h->n];
    snprintf(e->type, sizeof(e->type), "%s", type);
    snprintf(e->id, sizeof(e->id), "%s", id);
    e->deleted = deleted;
    e->seq = h->n++;
    return HV_OK;
}

static void fetch(hctx_t *h);

static void next_type(hctx_t *h) {
    hv_free(h->url);
    h->url = NULL;
    h->type_idx++;
    h->pages = 0;
    h->nseen = 0;
}

static void on_hist_page(void *ud, hv__ehr_resp_t *resp) {
    hctx_t *h = ud;
    hv__ehr_run_t *r = h->r;
    const char *type = json_object_get_string(json_object_array_get_idx(r->c->types, h->type_idx));
    char *next = NULL;
    hv_error_t err;
    int rc;
    if (resp->status == HV_ECLOSED) {
        /* Stopping: the run stays running; resumed, it reads the history again. */
        r->hist = NULL;
        hist_free(h);
        return;
    }
    if (resp->status != HV_OK || resp->code >= 500) {
        if (resp->status != HV_OK)
            hv__ehr_run_error(r, "deletions", "%s/_history not fetched after %d attempts: %s", type, resp->attempts,
                              resp->error);
        else
            hv__ehr_run_error(r, "deletions", "%s/_history: HTTP %ld after %d attempts", type, resp->code,
                              resp->attempts);
        r->page_failed = 1;
        hist_end(h);
        return;
    }
    if (resp->code != 200) {
        hv__ehr_run_error(r, "deletions", "the EHR does not offer %s/_history (HTTP %ld): deletions of %s are found "
                                          "by full syncs only", type, resp->code, type);
        next_type(h);
        fetch(h);
        return;
    }
    hv_error_clear(&err);
    rc = hv_ehr_history_parse(resp->body.data, resp->body.len, (size_t)r->m->max_page_bytes, add_entry, h, &next,
                              &err);
    if (rc == HV_ETOOBIG && h->capped) {
        hist_end(h);
        return;
    }
    if (rc != HV_OK) {
        hv__ehr_run_error(r, "deletions", "%s/_history page %d: %s%s%s", type, h->pages + 1,
                          err.location[0] ? err.location : "", err.location[0] ? ": " : "",
                          err.message[0] ? err.message : hv_strerror(rc));
        r->page_failed = 1;
        hist_end(h);
        return;
    }
    h->pages++;
    hv_free(h->url);
    h->url = next;
    if (next == NULL) next_type(h);
    fetch(h);
}

static void fetch(hctx_t *h) {
    hv__ehr_run_t *r = h->r;
    hv__ehr_conn_t *c = r->c;
    const char *type = json_object_get_string(json_object_array_get_idx(c->types, h->type_idx));
    hv__ehr_req_t q;
    uint64_t x;
    size_t i;
    if (r->m->stopping) {
        r->hist = NULL;
        hist_free(h);
        return;
    }
    if (type == NULL) {
        hist_end(h);
        return;
    }
    if (h->url == NULL) {
        char ts[40];
        hv_time_rfc3339((uint64_t)r->since_ms, ts, sizeof(ts));
        size_t n = strlen(c->base_url) + strlen(type) + strlen(ts) + 64;
        if ((h->url = hv_malloc(n)) != NULL)
            snprintf(h->url, n, "%s/%s/_history?_since=%s&_count=%d", c->base_url, type, ts, c->page_size);
        if (h->url == NULL) {
            r->page_failed = 1;
            hist_end(h);
            return;
        }
    }
    x = fnv(h->url);
    for (i = 0; i < h->nseen; i++)
        if (h->seen[i] == x) break;
    if (i < h->nseen || h->pages >= r->m->max_pages) {
        hv__ehr_run_error(r, "deletions", "%s/_history: %s; the rest of its deletions are found by the next full sync",
                          type, i < h->nseen ? "the next link repeats an earlier page" : "more than ehr.max_pages pages");
        r->page_failed = 1;
        next_type(h);
        fetch(h);
        return;
    }
    {
        uint64_t *ns = hv_realloc(h->seen, (h->nseen + 1) * sizeof(*ns));
        if (ns == NULL) {
            r->page_failed = 1;
            hist_end(h);
            return;
        }
        h->seen = ns;
        h->seen[h->nseen++] = x;
    }
    memset(&q, 0, sizeof(q));
    q.url = h->url;
    q.bearer = c->token;
    q.retry = 1;
    q.no_verify_tls = !c->verify_tls;
    q.rate_slot = &c->rate_slot;
    q.rate_interval_ms = c->rate > 0 ? (uint64_t)(1000.0 / c->rate) : 0;
    if (hv__ehr_call(r->m->http, &q, on_hist_page, h) != HV_OK) {
        /* The engine is stopping: the run stays "running" and resumes at the next start. */
        r->hist = NULL;
        hist_free(h);
    }
}

static void with_token(hv__ehr_run_t *r, int status) {
    hctx_t *h = r->hist;
    if (status == HV_ECLOSED) {
        r->hist = NULL;
        hist_free(h);
        return;
    }
    if (status != HV_OK) {
        r->page_failed = 1; /* the token's error is recorded */
        hist_end(h);
        return;
    }
    fetch(h);
}

void hv__ehr_history_deletions(hv__ehr_run_t *r) {
    hctx_t *h = hv_calloc(1, sizeof(*h));
    r->reconciled = 1;
    if (h == NULL) {
        hv__ehr_run_error(r, "deletions", "out of memory");
        r->page_failed = 1;
        hv__ehr_run_finish(r);
        return;
    }
    h->r = r;
    r->hist = h;
    hv__ehr_token_get(r, with_token);
}
