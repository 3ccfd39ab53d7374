/*
 * record.c — the loop thread's share of an audited FHIR request made cheap: the record
 * written straight from the request's facts into the journal (no event object, no JSON),
 * and a cache of the patient scan (event.c hv__audit_scan_patients) per resource read.
 *
 * The record: hv__audit_record_fast gathers what hv__aev_fill would copy into an event —
 * who, role and client (the request's principal), the client address without its port,
 * the purpose of use and break-glass headers, action, subtype, outcome, entity type and
 * id, query, detail and the patients (deduplicated, comma-separated) — as pointers into
 * the request with the same caps, and writes them as one HVJ3 frame into the mapped
 * journal file (journal.c). The frame is the record: the answer may leave (it survives a
 * kill -9), and the queue holds runs of consecutive frames (module.c) that the storage
 * thread decodes into the events it appends, building the stored content there. The
 * trail therefore holds the same records, bytes and hashes as through hv__aev_fill (a
 * unit test compares both paths). Where the journal cannot take it (audit.synchronous
 * FULL, a full journal, a record too big) the event path runs as before.
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

#include "engine/auth/auth.h"

#include <string.h>
#include <strings.h>

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

/* Adds s to ids (deduplicated, at most max) as the scanner does, without a copy: s is in
 * the request's arena (a fresh scan) or in the cache entry, which only the next
 * hv__audit_scan_cached call replaces (see its contract in audit_int.h). */
static int merge(const char *s, const char **ids, size_t *n, size_t max) {
    for (size_t i = 0; i < *n; i++)
        if (strcmp(ids[i], s) == 0) return HV_OK;
    if (*n >= max) return HV_OK;
    ids[(*n)++] = s;
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
        for (size_t i = 0; i < e->nids && rc == HV_OK; i++) rc = merge(e->ids[i], ids, n, max);
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
    for (size_t i = 0; i < nf && rc == HV_OK; i++) rc = merge(found[i], ids, n, max);
    return rc;
}

void hv__audit_scan_cache_stats(const hv__audit_t *a, uint64_t *hits, uint64_t *misses) {
    *hits = a->scan_cache ? a->scan_cache->hits : 0;
    *misses = a->scan_cache ? a->scan_cache->misses : 0;
}

/* ---- the record without an event ---- */

static void put(hv__arec_src_t *r, int i, const char *s, size_t max) {
    if (s == NULL || s[0] == '\0') {
        r->s[i] = "";
        r->l[i] = 0;
        return;
    }
    r->s[i] = s;
    r->l[i] = max == SIZE_MAX ? strlen(s) : strnlen(s, max);
}

/*
 * The first X-Purpose-Of-Use (into *purpose, when purpose is not NULL) and X-Break-Glass
 * header of req, as hv_http_req_header finds them (the first of each name, any case), in
 * one pass over the headers: a name not starting with "X-" is passed over on two bytes.
 */
static void find_headers(const hv_http_req_t *req, const char **purpose, const char **bg) {
    const char *name, *value, *p = NULL, *b = NULL;
    for (size_t i = 0; hv_http_req_header_at(req, i, &name, &value) == HV_OK; i++) {
        if ((name[0] != 'x' && name[0] != 'X') || name[1] != '-') continue;
        if (p == NULL && purpose != NULL && strcasecmp(name, "X-Purpose-Of-Use") == 0) p = value;
        else if (b == NULL && strcasecmp(name, "X-Break-Glass") == 0) b = value;
    }
    if (purpose != NULL) *purpose = p;
    *bg = b;
}

int hv__audit_rec_gather(const hv_audit_event_t *in, hv_arena_t *arena, hv__arec_src_t *r) {
    const hv_auth_principal_t *p = in->req ? hv_auth_principal(in->req) : NULL;
    const char *user = in->user, *role = in->role, *client = in->client_id, *ip = in->ip, *purpose = in->purpose;
    const char *bg = NULL, *ids[HV_AUDIT_MAX_PATIENTS];
    size_t np = 0, total = 0, off = 0, iplen = SIZE_MAX;
    char *csv;
    /* The same checks, members and caps as event.c hv__aev_fill. */
    if (in->subtype == NULL || in->subtype[0] == '\0' || in->action == 0 || strchr("CRUDE", in->action) == NULL)
        return HV_EINVAL;
    if (p != NULL) {
        user = p->sub;
        role = hv_auth_role_name(p->role);
        client = p->client_id;
    }
    if (in->req != NULL) {
        if (ip == NULL) {
            /* The peer without its port ("127.0.0.1:5555", "[::1]:80" → "::1"). */
            const char *peer = hv_http_req_peer(in->req), *end;
            if (peer == NULL) {
                ip = "";
            } else if (peer[0] == '[' && (end = strchr(peer, ']')) != NULL) {
                ip = peer + 1;
                iplen = (size_t)(end - peer - 1);
            } else if (peer[0] != '[' && (end = strrchr(peer, ':')) != NULL) {
                ip = peer;
                iplen = (size_t)(end - peer);
            } else {
                ip = peer;
            }
        }
        find_headers(in->req, purpose == NULL ? &purpose : NULL, &bg);
    }
    r->recorded = (int64_t)hv_now_ms();
    r->outcome = in->outcome;
    r->s[HV__REC_ACTION] = &in->action;
    r->l[HV__REC_ACTION] = 1;
    put(r, HV__REC_SUBTYPE, in->subtype, 64);
    put(r, HV__REC_WHO, user, 256);
    put(r, HV__REC_ROLE, role, 32);
    put(r, HV__REC_CLIENT, client, 256);
    put(r, HV__REC_IP, ip, 64);
    if (iplen != SIZE_MAX) {
        size_t k = iplen < 64 ? iplen : 64;
        /* ip[0..iplen) lies before the ']' or ':' found in the same string: no NUL in it. */
        r->l[HV__REC_IP] = k;
        if (k == 0) r->s[HV__REC_IP] = "";
    }
    put(r, HV__REC_PURPOSE, purpose, 32);
    put(r, HV__REC_BREAKGLASS, bg, 256);
    put(r, HV__REC_ETYPE, in->entity_type, SIZE_MAX);
    put(r, HV__REC_EID, in->entity_id, SIZE_MAX);
    put(r, HV__REC_QUERY, in->query, 4096);
    put(r, HV__REC_DETAIL, in->detail, 512);
    put(r, HV__REC_SOURCE, "", 0);
    /* The patients: deduplicated, each at most HV_AUTH_MAX_ID - 1 bytes, "p1,p2". */
    for (size_t i = 0; i < in->npatients && i < HV_AUDIT_MAX_PATIENTS; i++) {
        const char *pid = in->patients[i];
        size_t k;
        if (pid == NULL || pid[0] == '\0') continue;
        for (k = 0; k < np; k++)
            if (strcmp(ids[k], pid) == 0) break;
        if (k < np) continue;
        ids[np++] = pid;
        total += strnlen(pid, HV_AUTH_MAX_ID - 1) + 1;
    }
    if (np <= 1) {
        /* One patient is its own list: no copy. */
        put(r, HV__REC_PATIENTS, np ? ids[0] : "", HV_AUTH_MAX_ID - 1);
        return HV_OK;
    }
    if ((csv = hv_arena_alloc(arena, total)) == NULL) return HV_ENOMEM;
    for (size_t i = 0; i < np; i++) {
        size_t k = strnlen(ids[i], HV_AUTH_MAX_ID - 1);
        if (i > 0) csv[off++] = ',';
        memcpy(csv + off, ids[i], k);
        off += k;
    }
    r->s[HV__REC_PATIENTS] = csv;
    r->l[HV__REC_PATIENTS] = off;
    return HV_OK;
}

int hv__audit_record_fast(hv__audit_t *a, const hv_audit_event_t *in, int reserved) {
    hv__arec_src_t r;
    const unsigned char *frame = NULL;
    size_t flen = 0;
    int64_t jid = 0;
    if (a->journal == NULL || a->storage == NULL || in->req == NULL) return HV_ENOTSUP;
    /* Back-pressure as hv__audit_submit: the event path refuses it. */
    if (!reserved && a->npending + a->reserved >= a->queue_max) return HV_ENOTSUP;
    /* A list node for a new run must not fail once the frame is written. */
    if (a->spare == NULL) {
        hv__aev_t *ev = hv__aev_new(a);
        if (ev == NULL) return HV_ENOTSUP;
        hv__aev_give(ev);
        if (a->spare == NULL) return HV_ENOTSUP;
    }
    if (hv__audit_rec_gather(in, hv_http_req_arena(in->req), &r) != HV_OK) return HV_ENOTSUP;
    if (hv__journal_write_src(a->journal, &r, &jid, &frame, &flen) != HV_OK) return HV_ENOTSUP;
    hv_http_req_mark_audited(in->req);
    return hv__audit_submit_frame(a, jid, frame, flen) == HV_OK ? HV_OK : HV_EIO;
}
