/*
 * cache.c — the look-up cache of the medical-standards API (issue 9 §6): answers of
 * the GET look-up and search endpoints, keyed by the request target ("/loinc/2345-7",
 * "/icd10/search?q=diabetes"), kept in memory for terminology.cache_ttl and bounded
 * by terminology.cache_size entries (direct-mapped: a new entry replaces the one in
 * its slot). Used on the loop thread only, so it takes no lock.
 *
 * Invalidation: a timer asks the storage thread every 2 s for the code systems'
 * load times (loads may come from another process, `holovitals terminology load`);
 * when they change, every entry is dropped. Hits and misses are the counters
 * hv_terminology_cache_hits_total and hv_terminology_cache_misses_total in /metrics,
 * beside the UCUM parsed-unit cache (hv_ucum_cache_hits / _misses).
 */
#include "config.h"

#include <string.h>

#include "terminology/terminology_int.h"

#define MAX_KEY 300
#define CHECK_MS 2000

typedef struct slot {
    uint64_t hash;
    uint64_t expires_ms;
    char *key;
    char *body;
    size_t len;
    int status;
} slot_t;

struct hv__cache {
    hv__term_t *t;
    slot_t *slots;
    size_t mask;
    uint64_t ttl_ms;
    uv_timer_t timer;
    int timer_started;
    int check_inflight;
    int closing;
    char stamp[160];   /* the load times seen last */
    char pending[160]; /* filled by the storage job */
    hv_counter_t *hits, *misses, *flushes;
};

static uint64_t hash_key(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static void slot_clear(slot_t *s) {
    hv_free(s->key);
    hv_free(s->body);
    memset(s, 0, sizeof *s);
}

static void drop_all(hv__cache_t *c) {
    size_t i;
    for (i = 0; i <= c->mask; i++) slot_clear(&c->slots[i]);
}

void hv__cache_flush(hv__cache_t *c) {
    if (c == NULL) return;
    drop_all(c);
    hv_counter_add(c->flushes, 1);
}

int hv__cache_get(hv__cache_t *c, const char *key, int *status, const char **body, size_t *len) {
    slot_t *s;
    uint64_t h;
    if (c == NULL || strlen(key) >= MAX_KEY) return 0;
    h = hash_key(key);
    s = &c->slots[h & c->mask];
    if (s->key != NULL && s->hash == h && strcmp(s->key, key) == 0 && s->expires_ms > hv_now_ms()) {
        hv_counter_add(c->hits, 1);
        *status = s->status;
        *body = s->body;
        *len = s->len;
        return 1;
    }
    hv_counter_add(c->misses, 1);
    return 0;
}

void hv__cache_put(hv__cache_t *c, const char *key, int status, const char *body, size_t len) {
    slot_t *s;
    uint64_t h;
    char *k, *b;
    if (c == NULL || c->ttl_ms == 0 || strlen(key) >= MAX_KEY) return;
    h = hash_key(key);
    s = &c->slots[h & c->mask];
    k = hv_strdup(key);
    b = hv_malloc(len + 1);
    if (k == NULL || b == NULL) {
        hv_free(k);
        hv_free(b);
        return;
    }
    memcpy(b, body, len);
    b[len] = '\0';
    slot_clear(s);
    s->hash = h;
    s->key = k;
    s->body = b;
    s->len = len;
    s->status = status;
    s->expires_ms = hv_now_ms() + c->ttl_ms;
}

/* Storage thread: the code systems' versions and load times, as one string. */
static int job_stamp(hv_db_t *db, void *arg) {
    hv__cache_t *c = arg;
    hv_db_stmt_t *st = NULL;
    size_t used = 0;
    int rc = hv_db_prepare(db, "SELECT system, loaded_at FROM code_system_version ORDER BY system",
                           &st);
    c->pending[0] = '\0';
    while (rc == HV_OK && (rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t n;
        const char *s = hv_db_column_text(st, 1, &n);
        int w = snprintf(c->pending + used, sizeof c->pending - used, "%.*s;", (int)n,
                         s != NULL ? s : "");
        if (w > 0 && (size_t)w < sizeof c->pending - used) used += (size_t)w;
        rc = HV_OK;
    }
    if (st != NULL) hv_db_done(st);
    return HV_OK;
}

static void done_stamp(int status, void *arg) {
    hv__cache_t *c = arg;
    c->check_inflight = 0;
    if (status != HV_OK || c->closing) return;
    if (strcmp(c->pending, c->stamp) != 0) {
        if (c->stamp[0] != '\0') hv__cache_flush(c); /* a code system was (re)loaded */
        memcpy(c->stamp, c->pending, sizeof c->stamp);
    }
}

static void on_timer(uv_timer_t *t) {
    hv__cache_t *c = t->data;
    if (c->check_inflight || c->closing) return;
    if (hv_storage_submit(c->t->storage, job_stamp, done_stamp, c) == HV_OK) c->check_inflight = 1;
}

static double ucum_hits(void *ud) {
    uint64_t h = 0;
    hv_ucum_cache_stats(ud, &h, NULL);
    return (double)h;
}

static double ucum_misses(void *ud) {
    uint64_t m = 0;
    hv_ucum_cache_stats(ud, NULL, &m);
    return (double)m;
}

int hv__cache_new(hv__term_t *t, size_t entries, uint64_t ttl_ms, hv__cache_t **out) {
    hv__cache_t *c = hv_calloc(1, sizeof *c);
    hv_metrics_t *m = hv_engine_metrics(t->e);
    size_t slots = 16;
    if (c == NULL) return HV_ENOMEM;
    while (slots < entries && slots < ((size_t)1 << 20)) slots <<= 1;
    c->slots = hv_calloc(slots, sizeof *c->slots);
    if (c->slots == NULL) {
        hv_free(c);
        return HV_ENOMEM;
    }
    c->mask = slots - 1;
    c->ttl_ms = ttl_ms;
    c->t = t;
    c->hits = hv_metrics_counter(m, "hv_terminology_cache_hits_total",
                                 "Look-up and search answers served from the terminology cache.", NULL);
    c->misses = hv_metrics_counter(m, "hv_terminology_cache_misses_total",
                                   "Look-ups and searches the terminology cache did not hold.", NULL);
    c->flushes = hv_metrics_counter(m, "hv_terminology_cache_flushes_total",
                                    "Times the terminology cache was emptied after a code system load.",
                                    NULL);
    if (t->ucum != NULL) {
        hv_metrics_gauge_fn(m, "hv_ucum_cache_hits", "Parsed UCUM units found in the cache.", NULL,
                            ucum_hits, t->ucum);
        hv_metrics_gauge_fn(m, "hv_ucum_cache_misses", "UCUM units parsed because not cached.", NULL,
                            ucum_misses, t->ucum);
    }
    uv_timer_init(hv_engine_loop(t->e), &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, on_timer, 0, CHECK_MS);
    uv_unref((uv_handle_t *)&c->timer); /* never the reason the loop keeps running */
    c->timer_started = 1;
    *out = c;
    return HV_OK;
}

static void on_timer_closed(uv_handle_t *h) {
    hv__cache_t *c = h->data;
    drop_all(c);
    hv_free(c->slots);
    hv_free(c);
}

void hv__cache_stop(hv__cache_t *c) {
    if (c == NULL) return;
    c->closing = 1;
    uv_timer_stop(&c->timer);
}

void hv__cache_free(hv__cache_t *c) {
    if (c == NULL) return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}
