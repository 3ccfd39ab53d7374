/*
 * read_cache.c — the FHIR store's read cache: the stored JSON of the current
 * version of recently read resources, kept on the loop thread, so that a read
 * (FHIR R4 http.html#read) of a cached resource is answered without a storage
 * job — no thread hand-off, no transaction, no SQLite call.
 *
 * Why: a read-by-id costs little in SQLite (one seek), but as a storage job it
 * waits for the storage thread, runs inside a batch's BEGIN/COMMIT, and comes
 * back through the loop's async handle; under `wrk -c64` those hand-offs bounded
 * reads at a third of nginx's static-file rate (docs/performance.md).
 *
 * Correctness — a read after a write never serves the replaced version:
 *   - Every version written in this process goes through hv__store_put (create,
 *     update, patch, delete, Bundles, the fhir-store channel destination), which
 *     first calls hv__rcache_invalidate: it raises the write epoch of the
 *     resource's bucket (a table of HV__RCACHE_EPOCHS atomic counters shared by the
 *     process, indexed by a hash of type and id). It does so on the storage thread,
 *     inside the job, i.e. before the write's commit and so before its answer
 *     leaves.
 *   - An entry records the epoch of its bucket as it was when the storage job that
 *     read the version started (hv__rcache_epoch, called on the storage thread
 *     before the SELECT). It is put into the cache only if the epoch is still that
 *     value when the read's done callback runs (after the commit), and it is served
 *     only while the epoch is unchanged. A write to any resource of the bucket
 *     therefore makes the entry unusable at once, from any thread, without touching
 *     the cache itself (which only the loop thread touches).
 *   - Only reads of the current version (not vreads, not deleted versions) fill
 *     the cache; a vread is answered from it only when it asks for the cached
 *     version (versions are immutable).
 * This holds for the writers of this process. Another process writing the same
 * store (a second engine on a shared PostgreSQL database, `holovitals import` into
 * the data directory of a running engine) does not raise this process's epochs:
 * fhir.read_cache "auto" (the default) therefore enables the cache on SQLite only;
 * "off" disables it; "on" enables it on PostgreSQL too, for a single engine.
 *
 * Bounds: a direct-mapped table (one entry per slot, a newer read replaces the
 * slot's entry) of fhir.read_cache_size / 4 KiB slots (a power of two, at least
 * 64); an entry larger than 1/16 of the size is not cached; the texts together never
 * exceed fhir.read_cache_size (a put that would is skipped).
 *
 * The table starts at 64 slots and doubles up to that size when a put would replace
 * another resource's entry or fill it past half, so an engine that reads little
 * keeps ~12 KB of slots instead of 1.5 MB (under an allocator that zeroes fresh
 * blocks, all of it resident). Doubling keeps every entry (an entry of slot i moves
 * to i or i + the old size, which no other entry can take), and below the full size
 * no entry is replaced by another; a growth that cannot be allocated leaves the
 * smaller table to replace as the full one does.
 */
#include "config.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "fhir/rest_int.h"

#define HV__RCACHE_EPOCHS 4096u /* power of two */

/* The write epochs: any thread raises them, the loop thread reads them. */
static _Atomic uint64_t epochs[HV__RCACHE_EPOCHS];

typedef struct rc_ent {
    uint32_t hash;
    uint64_t epoch; /* the bucket's epoch when the read that filled it started */
    int64_t version;
    uint64_t ms;
    char key[HV__FHIR_TYPE_MAX + HV__FHIR_ID_MAX]; /* "type/id", "" when the slot is empty */
    char *text;
    size_t len;
} rc_ent_t;

struct hv__rcache {
    rc_ent_t *slots;
    size_t nslots; /* a power of two */
    size_t max_slots; /* the power of two nslots grows to */
    size_t used;   /* slots holding an entry */
    size_t bytes;  /* the texts held */
    size_t cap;    /* fhir.read_cache_size */
    uint64_t hits, misses;
    int lock_fd; /* <data>/fhir.read-cache.lock, held exclusively while serving; -1 if none */
};

uint64_t hv__fhir_key_hash(const char *type, const char *id)
{
    uint64_t h = 14695981039346656037ull;
    for (const char *p = type; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ '/') * 1099511628211ull;
    for (const char *p = id; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

/* The low half of hv__fhir_key_hash. */
uint32_t hv__rcache_hash(const char *type, const char *id)
{
    return (uint32_t)hv__fhir_key_hash(type, id);
}

void hv__rcache_invalidate(const char *type, const char *id)
{
    atomic_fetch_add_explicit(&epochs[hv__rcache_hash(type, id) & (HV__RCACHE_EPOCHS - 1)], 1,
                              memory_order_acq_rel);
}

uint64_t hv__rcache_epoch(uint32_t hash)
{
    return atomic_load_explicit(&epochs[hash & (HV__RCACHE_EPOCHS - 1)], memory_order_acquire);
}

int hv__rcache_new(size_t size, hv__rcache_t **out)
{
    hv__rcache_t *c;
    size_t n = 64;
    while (n < size / 4096 && n < ((size_t)1 << 20))
        n <<= 1;
    c = hv_calloc(1, sizeof(*c));
    if (c == NULL)
        return HV_ENOMEM;
    c->lock_fd = -1;
    c->slots = hv_calloc(64, sizeof(*c->slots));
    if (c->slots == NULL) {
        hv_free(c);
        return HV_ENOMEM;
    }
    c->nslots = 64;
    c->max_slots = n;
    c->cap = size;
    *out = c;
    return HV_OK;
}

void hv__rcache_free(hv__rcache_t *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->nslots; i++)
        hv_free(c->slots[i].text);
    hv_free(c->slots);
    if (c->lock_fd >= 0)
        close(c->lock_fd);
    hv_free(c);
}

/* The cache only sees writes of its own process (hv__store_put's epochs). Another process
 * writing the same SQLite store — `holovitals import` into the data directory of a running
 * engine — would leave replaced versions in it. So a serving engine with the cache holds an
 * exclusive flock(2) on <data>/fhir.read-cache.lock, and the writing commands take it shared
 * (hv__rcache_writer_lock): whichever comes second learns of the other. */
static int open_lock(const char *data_dir)
{
    char path[4096];
    if (data_dir == NULL || snprintf(path, sizeof(path), "%s/fhir.read-cache.lock", data_dir) >= (int)sizeof(path))
        return -1;
    return open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
}

int hv__rcache_lock(hv__rcache_t *c, const char *data_dir)
{
    int fd = open_lock(data_dir);
    if (fd < 0)
        return HV_EIO;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return HV_EBUSY;
    }
    c->lock_fd = fd;
    return HV_OK;
}

int hv__rcache_writer_lock(const char *data_dir, int *fd_out)
{
    int fd = open_lock(data_dir);
    *fd_out = -1;
    if (fd < 0)
        return HV_OK; /* no lock file can be made: no engine can hold one either */
    if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
        close(fd);
        return HV_EBUSY;
    }
    *fd_out = fd;
    return HV_OK;
}

/* Writes "type/id" into key (sized HV__FHIR_TYPE_MAX + HV__FHIR_ID_MAX); 0 when too long. */
static int make_key(char *key, const char *type, const char *id)
{
    size_t tl = strlen(type), il = strlen(id);
    if (tl >= HV__FHIR_TYPE_MAX || il >= HV__FHIR_ID_MAX)
        return 0;
    memcpy(key, type, tl);
    key[tl] = '/';
    memcpy(key + tl + 1, id, il + 1);
    return 1;
}

static void slot_clear(hv__rcache_t *c, rc_ent_t *e)
{
    c->bytes -= e->len;
    c->used--;
    hv_free(e->text);
    memset(e, 0, sizeof(*e));
}

size_t hv__rcache_slots(const hv__rcache_t *c)
{
    return c->nslots;
}

/* Doubles the table; the entries (and their texts) move, none is lost. */
static int grow(hv__rcache_t *c)
{
    size_t n = c->nslots * 2;
    rc_ent_t *t = hv_calloc(n, sizeof(*t));
    if (t == NULL)
        return HV_ENOMEM;
    for (size_t i = 0; i < c->nslots; i++)
        if (c->slots[i].text != NULL)
            t[c->slots[i].hash & (n - 1)] = c->slots[i];
    hv_free(c->slots);
    c->slots = t;
    c->nslots = n;
    return HV_OK;
}

/* Whether a put of key into slot e should grow the table first: below the full size,
 * when e holds another resource's entry or when filling it would pass half load. */
static int wants_room(const hv__rcache_t *c, const rc_ent_t *e, uint32_t hash, const char *key)
{
    if (c->nslots >= c->max_slots)
        return 0;
    if (e->text != NULL)
        return e->hash != hash || strcmp(e->key, key) != 0;
    return (c->used + 1) * 2 > c->nslots;
}

int hv__rcache_get(hv__rcache_t *c, uint32_t hash, const char *type, const char *id, hv__rcache_hit_t *out)
{
    char key[HV__FHIR_TYPE_MAX + HV__FHIR_ID_MAX];
    rc_ent_t *e;
    if (c == NULL || !make_key(key, type, id))
        return 0;
    e = &c->slots[hash & (c->nslots - 1)];
    if (e->text == NULL || e->hash != hash || strcmp(e->key, key) != 0) {
        c->misses++;
        return 0;
    }
    if (e->epoch != hv__rcache_epoch(hash)) {
        /* Written since (or another resource of the bucket was): never served again. */
        slot_clear(c, e);
        c->misses++;
        return 0;
    }
    c->hits++;
    out->version = e->version;
    out->ms = e->ms;
    out->text = e->text;
    out->len = e->len;
    return 1;
}

void hv__rcache_put(hv__rcache_t *c, uint32_t hash, uint64_t epoch, const char *type, const char *id,
                    int64_t version, uint64_t ms, const char *text, size_t len)
{
    char key[HV__FHIR_TYPE_MAX + HV__FHIR_ID_MAX];
    rc_ent_t *e;
    char *copy;
    if (c == NULL || text == NULL || len > c->cap / 16 || !make_key(key, type, id))
        return;
    if (epoch != hv__rcache_epoch(hash))
        return; /* a write started after this read's job did: the text may be stale */
    e = &c->slots[hash & (c->nslots - 1)];
    while (wants_room(c, e, hash, key) && grow(c) == HV_OK)
        e = &c->slots[hash & (c->nslots - 1)];
    if (e->text != NULL)
        slot_clear(c, e);
    if (c->bytes + len > c->cap)
        return;
    copy = hv_malloc(len + 1);
    if (copy == NULL)
        return; /* a cache: nothing is lost */
    memcpy(copy, text, len);
    copy[len] = '\0';
    e->hash = hash;
    e->epoch = epoch;
    e->version = version;
    e->ms = ms;
    memcpy(e->key, key, strlen(key) + 1);
    e->text = copy;
    e->len = len;
    c->bytes += len;
    c->used++;
}

void hv__rcache_stats(const hv__rcache_t *c, uint64_t *hits, uint64_t *misses, size_t *bytes)
{
    *hits = c != NULL ? c->hits : 0;
    *misses = c != NULL ? c->misses : 0;
    *bytes = c != NULL ? c->bytes : 0;
}
