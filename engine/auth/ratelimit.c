/*
 * ratelimit.c — token buckets per key (client id, IP address, user name) in a
 * bounded table, and a bounded set of strings with expiry (revoked token ids).
 *
 * The bucket table is open-addressed with FNV-1a and a probe window of 8 slots;
 * when the window is full the least recently used slot in it is recycled, so
 * memory stays fixed however many distinct keys (addresses) arrive. A recycled
 * key starts with a full bucket: an attacker with more addresses than the table
 * holds can get a fresh burst per address, which per-IP limiting cannot stop
 * anyway. Both structures are used from the loop thread only.
 */
#include "config.h"
#include "engine/auth/auth_int.h"

#include <string.h>

#define PROBE 8
#define KEY_MAX 96

typedef struct bucket {
    char key[KEY_MAX];
    double tokens;
    uint64_t last_ms;
    int used;
} bucket_t;

struct hv__ratelimit {
    bucket_t *b;
    size_t n;
};

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ull;
    }
    return h;
}

hv__ratelimit_t *hv__ratelimit_new(size_t max_keys) {
    hv__ratelimit_t *rl = hv_calloc(1, sizeof(*rl));
    if (rl == NULL) return NULL;
    rl->n = max_keys < PROBE ? PROBE : max_keys;
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

int hv__ratelimit_take(hv__ratelimit_t *rl, const char *key, double rate, double burst,
                       uint64_t now_ms, unsigned *retry_after) {
    size_t h = (size_t)(fnv1a(key) % rl->n), i, victim = h;
    bucket_t *b = NULL;
    if (rate <= 0) return 1; /* unlimited */
    if (burst < 1) burst = 1;
    for (i = 0; i < PROBE; i++) {
        bucket_t *c = &rl->b[(h + i) % rl->n];
        if (c->used && strncmp(c->key, key, KEY_MAX - 1) == 0) {
            b = c;
            break;
        }
        if (!c->used) {
            victim = (h + i) % rl->n;
            break;
        }
        if (c->last_ms < rl->b[victim].last_ms) victim = (h + i) % rl->n;
    }
    if (b == NULL) {
        b = &rl->b[victim];
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
    size_t n, max;
};

hv__strset_t *hv__strset_new(size_t max) {
    hv__strset_t *s = hv_calloc(1, sizeof(*s));
    if (s == NULL) return NULL;
    s->max = max ? max : 1;
    s->e = hv_calloc(s->max, sizeof(entry_t));
    if (s->e == NULL) {
        hv_free(s);
        return NULL;
    }
    return s;
}

void hv__strset_free(hv__strset_t *s) {
    size_t i;
    if (s == NULL) return;
    for (i = 0; i < s->max; i++) hv_free(s->e[i].key);
    hv_free(s->e);
    hv_free(s);
}

/* Open addressing over the whole table, linear probing; expired entries are
 * tombstoned lazily. Full table: HV_ETOOBIG (the caller fails closed). */
int hv__strset_add(hv__strset_t *s, const char *key, int64_t expires, int64_t now) {
    size_t h = (size_t)(fnv1a(key) % s->max), i;
    for (i = 0; i < s->max; i++) {
        entry_t *x = &s->e[(h + i) % s->max];
        if (x->key == NULL) break; /* nothing is ever removed: a chain ends at an empty slot */
        if (strcmp(x->key, key) == 0) {
            if (expires > x->expires) x->expires = expires;
            return HV_OK;
        }
    }
    for (i = 0; i < s->max; i++) {
        entry_t *x = &s->e[(h + i) % s->max];
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
    size_t h = (size_t)(fnv1a(key) % s->max), i;
    for (i = 0; i < s->max; i++) {
        entry_t *x = &s->e[(h + i) % s->max];
        if (x->key == NULL) return 0;
        if (strcmp(x->key, key) == 0) return x->expires >= now;
    }
    return 0;
}
