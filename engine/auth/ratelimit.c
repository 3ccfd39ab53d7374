/*
 * ratelimit.c — token buckets per key (client id, IP address, user name) in a
 * bounded table, and a bounded set of strings with expiry (revoked token ids).
 *
 * The bucket table is open-addressed with FNV-1a and a probe window of 8 slots;
 * when the window is full the least recently used slot in it is recycled, so
 * memory stays bounded however many distinct keys (addresses) arrive. A recycled
 * key starts with a full bucket: an attacker with more addresses than the table
 * holds can get a fresh burst per address, which per-IP limiting cannot stop
 * anyway. Both structures are used from the loop thread only.
 *
 * Both tables start small (INITIAL_SLOTS) and double, rehashing, up to their
 * configured limit (auth.rate.max_keys, auth.revocations_max): an idle engine
 * keeps a few kilobytes instead of the ~11 MB the limits allow, under any
 * allocator (an allocator that zeroes a fresh block makes all of it resident).
 * A table grows when a new key would fill it past half, or, for buckets, when the
 * key's probe window has no free slot; the growth is amortized over the keys that
 * caused it and never happens for a key already present. Only at the limit do the
 * documented full-table behaviours apply (a recycled bucket, HV_ETOOBIG); if a
 * growth cannot be allocated, the smaller table goes on as if it were the limit.
 */
#include "config.h"
#include "engine/auth/auth_int.h"

#include <string.h>

#define PROBE 8
#define KEY_MAX 96
#define INITIAL_SLOTS 64

typedef struct bucket {
    char key[KEY_MAX];
    double tokens;
    uint64_t last_ms;
    int used;
} bucket_t;

struct hv__ratelimit {
    bucket_t *b;
    size_t n;    /* slots allocated */
    size_t max;  /* the limit n grows to */
    size_t used; /* slots holding a key */
};

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ull;
    }
    return h;
}

/* The next size of a table of n slots growing to max: double, at most max. */
static size_t grown(size_t n, size_t max) { return n > max / 2 ? max : n * 2; }

hv__ratelimit_t *hv__ratelimit_new(size_t max_keys) {
    hv__ratelimit_t *rl = hv_calloc(1, sizeof(*rl));
    if (rl == NULL) return NULL;
    rl->max = max_keys < PROBE ? PROBE : max_keys;
    rl->n = rl->max < INITIAL_SLOTS ? rl->max : INITIAL_SLOTS;
    rl->b = hv_calloc(rl->n, sizeof(bucket_t));
    if (rl->b == NULL) {
        hv_free(rl);
        return NULL;
    }
    return rl;
}

void hv__ratelimit_free(hv__ratelimit_t *rl) {
    if (rl == NULL) return;
    hv_free(rl->b);
    hv_free(rl);
}

size_t hv__ratelimit_slots(const hv__ratelimit_t *rl) { return rl->n; }

/* Looks key up in the probe window of a table of n slots. Returns its bucket, or
 * NULL with *slot set to the first free slot of the window, or (*full set) to the
 * window's least recently used slot. */
static bucket_t *probe(bucket_t *t, size_t n, const char *key, size_t *slot, int *full) {
    size_t h = (size_t)(fnv1a(key) % n), i, victim = h;
    *full = 1;
    for (i = 0; i < PROBE; i++) {
        bucket_t *c = &t[(h + i) % n];
        if (c->used && strncmp(c->key, key, KEY_MAX - 1) == 0) return c;
        if (!c->used) {
            victim = (h + i) % n;
            *full = 0;
            break;
        }
        if (c->last_ms < t[victim].last_ms) victim = (h + i) % n;
    }
    *slot = victim;
    return NULL;
}

/* Moves every bucket into a table of the next size. A bucket whose new window is
 * full (possible, though unlikely, at half load) displaces its least recently used
 * occupant, as an insertion into a full window does. */
static int grow(hv__ratelimit_t *rl) {
    size_t n = grown(rl->n, rl->max), i, slot, used = 0;
    bucket_t *t = hv_calloc(n, sizeof(bucket_t));
    int full;
    if (t == NULL) return HV_ENOMEM;
    for (i = 0; i < rl->n; i++) {
        if (!rl->b[i].used) continue;
        (void)probe(t, n, rl->b[i].key, &slot, &full);
        if (!full) used++;
        t[slot] = rl->b[i];
    }
    hv_free(rl->b);
    rl->b = t;
    rl->n = n;
    rl->used = used;
    return HV_OK;
}

int hv__ratelimit_take(hv__ratelimit_t *rl, const char *key, double rate, double burst,
                       uint64_t now_ms, unsigned *retry_after) {
    size_t victim;
    int full;
    bucket_t *b;
    if (rate <= 0) return 1; /* unlimited */
    if (burst < 1) burst = 1;
    b = probe(rl->b, rl->n, key, &victim, &full);
    if (b == NULL) {
        if (rl->n < rl->max && (full || (rl->used + 1) * 2 > rl->n) && grow(rl) == HV_OK)
            (void)probe(rl->b, rl->n, key, &victim, &full);
        b = &rl->b[victim];
        if (!full) rl->used++;
        memset(b, 0, sizeof(*b));
        strncpy(b->key, key, KEY_MAX - 1);
        b->used = 1;
        b->tokens = burst;
        b->last_ms = now_ms;
    }
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * rate / 1000.0;
        if (b->tokens > burst) b->tokens = burst;
    }
    b->last_ms = now_ms;
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return 1;
    }
    if (retry_after) {
        double wait = (1.0 - b->tokens) / rate;
        unsigned s = (unsigned)wait;
        *retry_after = (double)s < wait ? s + 1 : (s == 0 ? 1 : s);
    }
    return 0;
}

/* ---- strset ---- */

typedef struct entry {
    char *key;
    int64_t expires;
} entry_t;

struct hv__strset {
    entry_t *e;
    size_t n;   /* slots holding a key, expired or not */
    size_t cap; /* slots allocated */
    size_t max; /* the limit cap grows to */
};

hv__strset_t *hv__strset_new(size_t max) {
    hv__strset_t *s = hv_calloc(1, sizeof(*s));
    if (s == NULL) return NULL;
    s->max = max ? max : 1;
    s->cap = s->max < INITIAL_SLOTS ? s->max : INITIAL_SLOTS;
    s->e = hv_calloc(s->cap, sizeof(entry_t));
    if (s->e == NULL) {
        hv_free(s);
        return NULL;
    }
    return s;
}

void hv__strset_free(hv__strset_t *s) {
    size_t i;
    if (s == NULL) return;
    for (i = 0; i < s->cap; i++) hv_free(s->e[i].key);
    hv_free(s->e);
    hv_free(s);
}

size_t hv__strset_slots(const hv__strset_t *s) { return s->cap; }

/* Moves every entry, expired ones too (a reader with an earlier clock may still
 * count them), into a table of the next size; the keys change hands, not copies. */
static int strset_grow(hv__strset_t *s) {
    size_t cap = grown(s->cap, s->max), i, j;
    entry_t *e = hv_calloc(cap, sizeof(entry_t));
    if (e == NULL) return HV_ENOMEM;
    for (i = 0; i < s->cap; i++) {
        if (s->e[i].key == NULL) continue;
        j = (size_t)(fnv1a(s->e[i].key) % cap);
        while (e[j].key != NULL) j = (j + 1) % cap;
        e[j] = s->e[i];
    }
    hv_free(s->e);
    s->e = e;
    s->cap = cap;
    return HV_OK;
}

/* Open addressing over the whole table, linear probing; expired entries are
 * tombstoned lazily. Below the limit a new key never fills the table past half
 * (it grows first); at the limit every slot can hold a key, and a full table
 * answers HV_ETOOBIG (the caller fails closed). */
int hv__strset_add(hv__strset_t *s, const char *key, int64_t expires, int64_t now) {
    size_t h = (size_t)(fnv1a(key) % s->cap), i;
    for (i = 0; i < s->cap; i++) {
        entry_t *x = &s->e[(h + i) % s->cap];
        if (x->key == NULL) break; /* nothing is ever removed: a chain ends at an empty slot */
        if (strcmp(x->key, key) == 0) {
            if (expires > x->expires) x->expires = expires;
            return HV_OK;
        }
    }
    /* A failed growth leaves a table at most half full: the key still fits. */
    if (s->cap < s->max && (s->n + 1) * 2 > s->cap && strset_grow(s) == HV_OK)
        h = (size_t)(fnv1a(key) % s->cap);
    for (i = 0; i < s->cap; i++) {
        entry_t *x = &s->e[(h + i) % s->cap];
        if (x->key == NULL || x->expires < now) {
            char *k = hv_strdup(key);
            if (k == NULL) return HV_ENOMEM;
            if (x->key == NULL) s->n++;
            hv_free(x->key);
            x->key = k;
            x->expires = expires;
            return HV_OK;
        }
    }
    return HV_ETOOBIG;
}

int hv__strset_has(hv__strset_t *s, const char *key, int64_t now) {
    size_t h = (size_t)(fnv1a(key) % s->cap), i;
    for (i = 0; i < s->cap; i++) {
        entry_t *x = &s->e[(h + i) % s->cap];
        if (x->key == NULL) return 0;
        if (strcmp(x->key, key) == 0) return x->expires >= now;
    }
    return 0;
}
