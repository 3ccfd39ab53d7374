/*
 * record.c — the loop thread's share of an audited FHIR read made cheap: a cache of the
 * patient scan (event.c hv__audit_scan_patients) per resource read.
 *
 * A read answers the same bytes again and again until the resource changes (the store's
 * read cache serves them), and the patients a body names are a function of its bytes
 * alone. The scan of a JSON body (memchr passes for "reference", "resourceType":"Patient")
 * was a third of the audit's loop-thread instructions per read (callgrind, session 6).
 * The cache keeps, per read path, a copy of the last body and the patients it named; a
 * read whose body is byte-for-byte the same takes the patients from there — a memcmp
 * instead of the scan. Any other body is scanned and replaces the entry. So the result is
 * exactly the scanner's: same ids, same order, same cap (bodies naming HV_AUDIT_MAX_PATIENTS
 * patients or more are never cached, see hv__audit_scan_cached).
 *
 * Loop thread only (the respond hook); HV__SCAN_CACHE entries of bodies up to
 * HV__SCAN_CACHE_BODY bytes (at most 64 × 8 KiB of copies).
 */
#include "config.h"
#include "destinations/audit/audit_int.h"

#include <string.h>

#define HV__SCAN_CACHE 64
#define HV__SCAN_CACHE_BODY 8192u

typedef struct scan_entry {
    uint64_t key;
    size_t len;    /* of the body copy */
    char *mem;     /* the body, then the ids (NUL-terminated, one after another) */
    const char **ids;
    size_t nids;
} scan_entry_t;

struct hv__scan_cache {
    scan_entry_t e[HV__SCAN_CACHE];
    uint64_t hits, misses;
};

/* FNV-1a, 64 bits, of the request path: which entry a body may be in. */
static uint64_t path_key(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

static void entry_clear(scan_entry_t *e) {
    hv_free(e->mem);
    memset(e, 0, sizeof(*e));
}

void hv__audit_scan_cache_free(hv__audit_t *a) {
    if (a->scan_cache == NULL) return;
    for (size_t i = 0; i < HV__SCAN_CACHE; i++) entry_clear(&a->scan_cache->e[i]);
    hv_free(a->scan_cache);
    a->scan_cache = NULL;
}

/* Adds s to ids (deduplicated, at most max) as the scanner does; s stays owned by the caller's arena. */
static int merge(const char *s, hv_arena_t *arena, const char **ids, size_t *n, size_t max) {
    for (size_t i = 0; i < *n; i++)
        if (strcmp(ids[i], s) == 0) return HV_OK;
    if (*n >= max) return HV_OK;
    if ((ids[*n] = hv_arena_strdup(arena, s)) == NULL) return HV_ENOMEM;
    (*n)++;
    return HV_OK;
}

/* Keeps body and its ids in e: one allocation, the body, then (aligned) the id pointers,
 * then the ids. On failure the entry is left empty. */
static void entry_fill(scan_entry_t *e, uint64_t key, const char *body, size_t len, const char **ids, size_t nids) {
    size_t at = (len + sizeof(char *) - 1) / sizeof(char *) * sizeof(char *);
    size_t need = at + nids * sizeof(char *), off;
    for (size_t i = 0; i < nids; i++) need += strlen(ids[i]) + 1;
    entry_clear(e);
    if ((e->mem = hv_malloc(need + 1)) == NULL) return;
    memcpy(e->mem, body, len);
    e->ids = (const char **)(void *)(e->mem + at);
    off = at + nids * sizeof(char *);
    for (size_t i = 0; i < nids; i++) {
        size_t k = strlen(ids[i]) + 1;
        memcpy(e->mem + off, ids[i], k);
        e->ids[i] = e->mem + off;
        off += k;
    }
    e->key = key;
    e->len = len;
    e->nids = nids;
}

int hv__audit_scan_cached(hv__audit_t *a, const char *path, const char *text, size_t len, hv_arena_t *arena,
                          const char **ids, size_t *n, size_t max) {
    const char *found[HV_AUDIT_MAX_PATIENTS];
    size_t nf = 0, total;
    uint64_t key;
    scan_entry_t *e;
    int rc = HV_OK;
    if (text == NULL || len == 0) return HV_OK;
    if (len > HV__SCAN_CACHE_BODY || path == NULL) {
        hv__audit_scan_patients(text, len, arena, ids, n, max);
        return HV_OK;
    }
    if (a->scan_cache == NULL && (a->scan_cache = hv_calloc(1, sizeof(*a->scan_cache))) == NULL) {
        hv__audit_scan_patients(text, len, arena, ids, n, max);
        return HV_OK;
    }
    key = path_key(path);
    e = &a->scan_cache->e[key % HV__SCAN_CACHE];
    if (e->mem != NULL && e->key == key && e->len == len && memcmp(e->mem, text, len) == 0) {
        a->scan_cache->hits++;
        for (size_t i = 0; i < e->nids && rc == HV_OK; i++) rc = merge(e->ids[i], arena, ids, n, max);
        return rc;
    }
    a->scan_cache->misses++;
    /* Scanned alone (from an empty list), then merged: the same ids in the same order as
     * scanning after what ids already holds, as long as the body named fewer than the
     * list's cap — only then is it kept. */
    total = hv__audit_scan_patients(text, len, arena, found, &nf, HV_ARRAY_LEN(found));
    if (total < HV_ARRAY_LEN(found)) entry_fill(e, key, text, len, found, nf);
    else entry_clear(e);
    if (total >= HV_ARRAY_LEN(found)) {
        /* Too many to merge exactly: the plain scan after what ids holds. */
        hv__audit_scan_patients(text, len, arena, ids, n, max);
        return HV_OK;
    }
    for (size_t i = 0; i < nf && rc == HV_OK; i++) rc = merge(found[i], arena, ids, n, max);
    return rc;
}

void hv__audit_scan_cache_stats(const hv__audit_t *a, uint64_t *hits, uint64_t *misses) {
    *hits = a->scan_cache ? a->scan_cache->hits : 0;
    *misses = a->scan_cache ? a->scan_cache->misses : 0;
}
