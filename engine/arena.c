/*
 * arena.c — per-message and per-request memory.
 *
 * An arena hands out memory from a chain of blocks and frees it all in one
 * call, after running the cleanups registered on it (last first), as nginx
 * pools and h2o's mem pools do. Requests larger than a quarter block get a
 * block of their own so that big fields do not waste the rest of a block.
 */
#include "config.h"
#include "engine/engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ARENA_ALIGN 16
#define ARENA_DEFAULT_BLOCK 8192

typedef struct block {
    struct block *next;
    size_t size; /* usable bytes after the header */
    size_t used;
    _Alignas(16) unsigned char data[];
} block_t;

typedef struct cleanup {
    struct cleanup *next;
    void (*fn)(void *);
    void *data;
} cleanup_t;

struct hv_arena {
    block_t *head;  /* the block small allocations come from; all blocks chain from here */
    block_t *first; /* kept by hv_arena_reset */
    cleanup_t *cleanups;
    size_t block_size;
    size_t bytes;
};

static block_t *block_new(size_t size) {
    block_t *b = hv_malloc(sizeof(block_t) + size);
    if (b == NULL) return NULL;
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

hv_arena_t *hv_arena_new(size_t block_size) {
    hv_arena_t *a = hv_calloc(1, sizeof(*a));
    if (a == NULL) return NULL;
    a->block_size = block_size ? block_size : ARENA_DEFAULT_BLOCK;
    a->first = block_new(a->block_size);
    if (a->first == NULL) {
        hv_free(a);
        return NULL;
    }
    a->head = a->first;
    return a;
}

static void run_cleanups(hv_arena_t *a) {
    while (a->cleanups != NULL) {
        cleanup_t *c = a->cleanups;
        a->cleanups = c->next;
        c->fn(c->data);
    }
}

static void free_blocks_but_first(hv_arena_t *a) {
    block_t *b = a->head;
    while (b != NULL) {
        block_t *next = b->next;
        if (b != a->first) hv_free(b);
        b = next;
    }
    a->head = a->first;
    a->first->used = 0;
    a->first->next = NULL;
}

void hv_arena_reset(hv_arena_t *a) {
    if (a == NULL) return;
    run_cleanups(a);
    free_blocks_but_first(a);
    a->bytes = 0;
}

void hv_arena_free(hv_arena_t *a) {
    if (a == NULL) return;
    run_cleanups(a);
    free_blocks_but_first(a);
    hv_free(a->first);
    hv_free(a);
}

void *hv_arena_alloc(hv_arena_t *a, size_t n) {
    block_t *b = a->head;
    size_t need = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (need < n) return NULL; /* overflow */
    if (b->size - b->used < need) {
        block_t *nb;
        if (need > a->block_size / 4) {
            /* A big allocation gets a block of its own, linked behind the current
             * one, so the current block's free space stays usable. */
            nb = block_new(need);
            if (nb == NULL) return NULL;
            nb->used = need;
            nb->next = b->next;
            b->next = nb;
            a->bytes += n;
            return nb->data;
        }
        nb = block_new(a->block_size);
        if (nb == NULL) return NULL;
        nb->next = a->head;
        a->head = nb;
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += need;
    a->bytes += n;
    return p;
}

void *hv_arena_calloc(hv_arena_t *a, size_t n) {
    void *p = hv_arena_alloc(a, n);
    if (p != NULL) memset(p, 0, n);
    return p;
}

char *hv_arena_strndup(hv_arena_t *a, const char *s, size_t n) {
    char *d = hv_arena_alloc(a, n + 1);
    if (d == NULL) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *hv_arena_strdup(hv_arena_t *a, const char *s) { return hv_arena_strndup(a, s, strlen(s)); }

char *hv_arena_sprintf(hv_arena_t *a, const char *fmt, ...) {
    va_list ap, ap2;
    int n;
    char *d;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return NULL;
    }
    d = hv_arena_alloc(a, (size_t)n + 1);
    if (d != NULL) vsnprintf(d, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return d;
}

int hv_arena_cleanup_add(hv_arena_t *a, void (*fn)(void *), void *data) {
    cleanup_t *c = hv_arena_alloc(a, sizeof(*c));
    if (c == NULL) return HV_ENOMEM;
    c->fn = fn;
    c->data = data;
    c->next = a->cleanups;
    a->cleanups = c;
    return HV_OK;
}

size_t hv_arena_bytes(const hv_arena_t *a) { return a->bytes; }
