/*
 * model.c — the FHIR R4 (4.0.1) resource model: lookups over the tables that
 * fhir/gen/gen_model.py generates from the official StructureDefinitions,
 * SearchParameters and ValueSets (FHIR R4 structuredefinition.html,
 * elementdefinition.html, searchparameter.html).
 *
 * The tables are read-only; four open-addressing hash indexes (type names,
 * canonical URLs, element paths, child property names) live in zero-initialized
 * storage of model_gen.c and are filled once, on first use, under pthread_once.
 * After that every lookup is a hash probe and a string compare; nothing allocates.
 */
#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "fhir/fhir_int.h"

static pthread_once_t index_once = PTHREAD_ONCE_INIT;

/* FNV-1a over n bytes. */
static uint32_t hash_bytes(const char *s, size_t n, uint32_t seed) {
    uint32_t h = 2166136261u ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static uint32_t hash_owner(uint32_t owner) {
    return owner * 2654435761u;
}

static void put(uint32_t *slots, uint32_t mask, uint32_t h, uint32_t value) {
    uint32_t i = h & mask;
    while (slots[i] != 0)
        i = (i + 1) & mask;
    slots[i] = value + 1;
}

static void build_index(void) {
    for (uint32_t i = 0; i < hv__fhir_types_count; i++) {
        const char *n = HV__S(hv__fhir_types[i].name);
        put(hv__fhir_h_types, hv__fhir_h_types_mask, hash_bytes(n, strlen(n), 0), i);
        const char *u = HV__S(hv__fhir_types[i].url);
        put(hv__fhir_h_urls, hv__fhir_h_urls_mask, hash_bytes(u, strlen(u), 0), i);
    }
    for (uint32_t i = 0; i < hv__fhir_search_count; i++) {
        const char *u = HV__S(hv__fhir_search[i].url);
        put(hv__fhir_h_urls, hv__fhir_h_urls_mask, hash_bytes(u, strlen(u), 0),
            hv__fhir_types_count + i);
    }
    for (uint32_t i = 0; i < hv__fhir_elems_count; i++) {
        const char *p = HV__S(hv__fhir_elems[i].path);
        put(hv__fhir_h_paths, hv__fhir_h_paths_mask, hash_bytes(p, strlen(p), 0), i);
    }
    for (uint32_t i = 0; i < hv__fhir_childkeys_count; i++) {
        const hv__fhir_childkey_row_t *k = &hv__fhir_childkeys[i];
        const char *n = HV__S(k->name);
        put(hv__fhir_h_childkeys, hv__fhir_h_childkeys_mask,
            hash_bytes(n, strlen(n), hash_owner((uint32_t)k->owner)), i);
    }
}

static inline void ensure_index(void) {
    pthread_once(&index_once, build_index);
}

/* Compares the NUL-terminated s with name[0..len). */
static int eqn(const char *s, const char *name, size_t len) {
    return strncmp(s, name, len) == 0 && s[len] == '\0';
}

/*
 * The distinct JSON property names of the model (the child keys, choice elements expanded,
 * and "resourceType"), one slot each: pool offset + 1 (UINT32_MAX for "resourceType"), 0
 * empty, and the name's length beside it, which settles most probes without a compare.
 * At most 8,406 names (8,405 child keys, far fewer distinct) in 8,192 slots: filling stops
 * at half, so a probe always ends at an empty slot, and a name left out is only not shared.
 */
#define KEY_SLOTS 8192
static uint32_t key_slots[KEY_SLOTS];
static uint8_t key_lens[KEY_SLOTS];
/* Each name's hash under json-c's string hash (key_jc_fn, the hash of json-c's tables of
 * string keys; NULL when it could not be had): see hv__fhir_key_static_hashed. */
static unsigned long key_jc_hash[KEY_SLOTS];
static hv__fhir_key_hash_fn *key_jc_fn;
static const char key_resource_type[] = "resourceType";
static pthread_once_t keys_once = PTHREAD_ONCE_INIT;
/* Set (release) at the end of build_keys: key_find reads it (acquire) rather than calling
 * pthread_once for each of the ~70 keys of a resource read. */
static atomic_int keys_built;

/* The key table's hash. Every key of every document read is looked up here, so it takes a
 * word at a time where FNV-1a takes a byte: the 8-byte words, then the last 8 bytes (they may
 * overlap the words), or for a shorter name its first and last 4 bytes, or 3 of its bytes. */
static uint32_t key_hash(const char *s, size_t len) {
    const uint64_t mul = UINT64_C(0x9E3779B97F4A7C15);
    uint64_t h = (uint64_t)len * mul, w;
    uint32_t a, b;
    if (len >= 8) {
        for (size_t i = 0; i + 8 < len; i += 8) {
            memcpy(&w, s + i, sizeof(w));
            h = (h ^ w) * mul;
        }
        memcpy(&w, s + len - 8, sizeof(w));
    } else if (len >= 4) {
        memcpy(&a, s, sizeof(a));
        memcpy(&b, s + len - 4, sizeof(b));
        w = (uint64_t)a << 32 | b;
    } else if (len > 0) {
        w = (uint64_t)(unsigned char)s[0] << 16 | (uint64_t)(unsigned char)s[len / 2] << 8 |
            (unsigned char)s[len - 1];
    } else {
        w = 0;
    }
    h = (h ^ w) * mul;
    return (uint32_t)(h >> 32);
}

uint32_t hv__fhir_str_hash(const char *s, size_t len) {
    return key_hash(s, len);
}

static const char *key_at(uint32_t slot) {
    return slot == UINT32_MAX ? key_resource_type : HV__S(slot - 1);
}

static void build_keys(void) {
    uint32_t filled = 0;
    struct json_object *probe = json_object_new_object();
    /* json-c's own function, as its tables of string keys call it (json-c seeds it per
     * process, so the hashes below are only good in this one). */
    if (probe != NULL)
        key_jc_fn = json_object_get_object(probe)->hash_fn;
    json_object_put(probe);
    for (uint32_t i = 0; i <= hv__fhir_childkeys_count && filled < KEY_SLOTS / 2; i++) {
        /* The last round is "resourceType", which is no element's name. */
        uint32_t v = i < hv__fhir_childkeys_count ? hv__fhir_childkeys[i].name + 1 : UINT32_MAX;
        const char *n = key_at(v);
        size_t len = strlen(n);
        if (len > UINT8_MAX)
            continue;
        uint32_t j = key_hash(n, len) & (KEY_SLOTS - 1);
        while (key_slots[j] != 0 && strcmp(key_at(key_slots[j]), n) != 0)
            j = (j + 1) & (KEY_SLOTS - 1);
        if (key_slots[j] == 0) {
            key_slots[j] = v;
            key_lens[j] = (uint8_t)len;
            if (key_jc_fn != NULL)
                key_jc_hash[j] = key_jc_fn(n);
            filled++;
        }
    }
    atomic_store_explicit(&keys_built, 1, memory_order_release);
}

/* Whether the len bytes at a equal those at b, for names (len <= UINT8_MAX): two
 * overlapping words, or two overlapping halves of one, or the bytes, where a libc memcmp
 * call cost as much as the rest of the look-up. */
static inline int key_eq(const char *a, const char *b, size_t len) {
    uint64_t x, y, u, v;
    uint32_t p, q, r, t;
    if (len >= 8) {
        for (size_t i = 0; i + 8 < len; i += 8) {
            memcpy(&x, a + i, sizeof(x));
            memcpy(&y, b + i, sizeof(y));
            if (x != y)
                return 0;
        }
        memcpy(&u, a + len - 8, sizeof(u));
        memcpy(&v, b + len - 8, sizeof(v));
        return u == v;
    }
    if (len >= 4) {
        memcpy(&p, a, sizeof(p));
        memcpy(&q, b, sizeof(q));
        memcpy(&r, a + len - 4, sizeof(r));
        memcpy(&t, b + len - 4, sizeof(t));
        return p == q && r == t;
    }
    for (size_t i = 0; i < len; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

/* The slot of name[0..len), or KEY_SLOTS when the model has no such name. */
static uint32_t key_find(const char *name, size_t len) {
    if (!atomic_load_explicit(&keys_built, memory_order_acquire))
        pthread_once(&keys_once, build_keys);
    uint32_t j = key_hash(name, len) & (KEY_SLOTS - 1);
    for (; key_slots[j] != 0; j = (j + 1) & (KEY_SLOTS - 1))
        if (key_lens[j] == len && key_eq(key_at(key_slots[j]), name, len))
            return j;
    return KEY_SLOTS;
}

const char *hv__fhir_key_static(const char *name, size_t len) {
    uint32_t j = key_find(name, len);
    return j < KEY_SLOTS ? key_at(key_slots[j]) : NULL;
}

hv__fhir_key_hash_fn *hv__fhir_json_key_hash(const char *name, unsigned long *hash) {
    if (!atomic_load_explicit(&keys_built, memory_order_acquire))
        pthread_once(&keys_once, build_keys);
    if (key_jc_fn != NULL)
        *hash = key_jc_fn(name);
    return key_jc_fn;
}

const char *hv__fhir_key_static_hashed(const char *name, size_t len, hv__fhir_key_hash_fn **fn,
                                       unsigned long *hash) {
    uint32_t j = key_find(name, len);
    if (j == KEY_SLOTS)
        return NULL;
    *fn = key_jc_fn;
    *hash = key_jc_hash[j];
    return key_at(key_slots[j]);
}

/* ---- types ---------------------------------------------------------------- */

size_t hv_fhir_type_count(void) {
    return hv__fhir_types_count;
}

const hv_fhir_type_t *hv_fhir_type_at(size_t id) {
    return id < hv__fhir_types_count ? &hv__fhir_types[id] : NULL;
}

size_t hv_fhir_type_id(const hv_fhir_type_t *t) {
    return (size_t)(t - hv__fhir_types);
}

const hv_fhir_type_t *hv_fhir_type_find(const char *name, size_t len) {
    if (name == NULL)
        return NULL;
    ensure_index();
    /* FHIRPath §Types: FHIR types may be qualified with the namespace "FHIR". */
    if (len > 5 && memcmp(name, "FHIR.", 5) == 0) {
        name += 5;
        len -= 5;
    }
    uint32_t i = hash_bytes(name, len, 0) & hv__fhir_h_types_mask;
    for (; hv__fhir_h_types[i] != 0; i = (i + 1) & hv__fhir_h_types_mask) {
        const hv_fhir_type_t *t = &hv__fhir_types[hv__fhir_h_types[i] - 1];
        if (eqn(HV__S(t->name), name, len))
            return t;
    }
    return NULL;
}

static uint32_t find_url(const char *url) {
    ensure_index();
    size_t len = strlen(url);
    const char *bar = memchr(url, '|', len); /* canonical|version */
    if (bar != NULL)
        len = (size_t)(bar - url);
    uint32_t i = hash_bytes(url, len, 0) & hv__fhir_h_urls_mask;
    for (; hv__fhir_h_urls[i] != 0; i = (i + 1) & hv__fhir_h_urls_mask) {
        uint32_t v = hv__fhir_h_urls[i] - 1;
        const char *u = v < hv__fhir_types_count
                            ? HV__S(hv__fhir_types[v].url)
                            : HV__S(hv__fhir_search[v - hv__fhir_types_count].url);
        if (eqn(u, url, len))
            return v;
    }
    return UINT32_MAX;
}

const hv_fhir_type_t *hv_fhir_type_by_url(const char *url) {
    if (url == NULL)
        return NULL;
    uint32_t v = find_url(url);
    return v < hv__fhir_types_count ? &hv__fhir_types[v] : NULL;
}

/* hv_fhir_resource_type by the model's own index (FNV-1a a byte at a time, ~330
 * instructions a call). */
static const hv_fhir_type_t *resource_type_slow(const char *name) {
    const hv_fhir_type_t *t = hv_fhir_type_find(name, strlen(name));
    if (t == NULL || t->kind != HV_FHIR_KIND_RESOURCE || t->abstract ||
        strcmp(HV__S(t->name), name) != 0)
        return NULL;
    return t;
}

/*
 * The concrete resource types by name, hashed as the key table is (a word at a time): the
 * writer, the structural check, the index rows and the Bundle's preparation each ask for a
 * resource's type, ~8 times a resource an import reads. Filled with exactly the names
 * resource_type_slow answers, with its answers, so both give the same type for any name.
 */
#define RTYPE_SLOTS 512
static const hv_fhir_type_t *rtype_slots[RTYPE_SLOTS];
static uint8_t rtype_lens[RTYPE_SLOTS];
static pthread_once_t rtypes_once = PTHREAD_ONCE_INIT;
static atomic_int rtypes_built;

static void build_rtypes(void) {
    size_t filled = 0;
    for (size_t i = 0; i < hv__fhir_types_count && filled < RTYPE_SLOTS / 2; i++) {
        const hv_fhir_type_t *t = &hv__fhir_types[i];
        const char *n = HV__S(t->name);
        size_t len = strlen(n);
        if (t->kind != HV_FHIR_KIND_RESOURCE || t->abstract || len > UINT8_MAX || resource_type_slow(n) != t)
            continue;
        uint32_t j = key_hash(n, len) & (RTYPE_SLOTS - 1);
        while (rtype_slots[j] != NULL && rtype_slots[j] != t)
            j = (j + 1) & (RTYPE_SLOTS - 1);
        if (rtype_slots[j] == NULL) {
            rtype_slots[j] = t;
            rtype_lens[j] = (uint8_t)len;
            filled++;
        }
    }
    atomic_store_explicit(&rtypes_built, 1, memory_order_release);
}

const hv_fhir_type_t *hv_fhir_resource_type(const char *name) {
    if (name == NULL)
        return NULL;
    if (!atomic_load_explicit(&rtypes_built, memory_order_acquire))
        pthread_once(&rtypes_once, build_rtypes);
    size_t len = strlen(name);
    uint32_t j = key_hash(name, len) & (RTYPE_SLOTS - 1);
    for (const hv_fhir_type_t *t; (t = rtype_slots[j]) != NULL; j = (j + 1) & (RTYPE_SLOTS - 1))
        if (rtype_lens[j] == len && key_eq(HV__S(t->name), name, len))
            return t;
    return NULL;
}

const char *hv_fhir_type_name(const hv_fhir_type_t *t) {
    return HV__S(t->name);
}

const char *hv_fhir_type_url(const hv_fhir_type_t *t) {
    return HV__S(t->url);
}

hv_fhir_kind_t hv_fhir_type_kind(const hv_fhir_type_t *t) {
    return (hv_fhir_kind_t)t->kind;
}

int hv_fhir_type_is_abstract(const hv_fhir_type_t *t) {
    return t->abstract;
}

const hv_fhir_type_t *hv_fhir_type_base(const hv_fhir_type_t *t) {
    return t->base >= 0 ? &hv__fhir_types[t->base] : NULL;
}

int hv_fhir_type_is(const hv_fhir_type_t *t, const hv_fhir_type_t *base) {
    while (t != NULL) {
        if (t == base)
            return 1;
        t = t->base >= 0 ? &hv__fhir_types[t->base] : NULL;
    }
    return 0;
}

const hv_fhir_type_t *hv_fhir_type_system(const hv_fhir_type_t *t) {
    return t->systype >= 0 ? &hv__fhir_types[t->systype] : NULL;
}

const char *hv_fhir_type_regex(const hv_fhir_type_t *t) {
    return t->regex != 0 ? HV__S(t->regex) : NULL;
}

size_t hv_fhir_type_max_length(const hv_fhir_type_t *t) {
    return t->maxlen;
}

const hv_fhir_elem_t *hv_fhir_type_root(const hv_fhir_type_t *t) {
    return t != NULL && t->root >= 0 ? &hv__fhir_elems[t->root] : NULL;
}

/* ---- elements ------------------------------------------------------------- */

size_t hv_fhir_elem_count(void) {
    return hv__fhir_elems_count;
}

const hv_fhir_elem_t *hv_fhir_elem_at(size_t id) {
    return id < hv__fhir_elems_count ? &hv__fhir_elems[id] : NULL;
}

size_t hv_fhir_elem_id(const hv_fhir_elem_t *e) {
    return (size_t)(e - hv__fhir_elems);
}

const hv_fhir_elem_t *hv_fhir_elem_find(const char *path) {
    if (path == NULL)
        return NULL;
    ensure_index();
    size_t len = strlen(path);
    uint32_t i = hash_bytes(path, len, 0) & hv__fhir_h_paths_mask;
    for (; hv__fhir_h_paths[i] != 0; i = (i + 1) & hv__fhir_h_paths_mask) {
        const hv_fhir_elem_t *e = &hv__fhir_elems[hv__fhir_h_paths[i] - 1];
        if (strcmp(HV__S(e->path), path) == 0)
            return e;
    }
    return NULL;
}

const hv_fhir_elem_t *hv_fhir_elem_child(const hv_fhir_elem_t *owner, const char *name, size_t len,
                                         const hv_fhir_type_t **chosen) {
    if (owner == NULL || name == NULL)
        return NULL;
    ensure_index();
    uint32_t oid = (uint32_t)(owner - hv__fhir_elems);
    uint32_t i = hash_bytes(name, len, hash_owner(oid)) & hv__fhir_h_childkeys_mask;
    for (; hv__fhir_h_childkeys[i] != 0; i = (i + 1) & hv__fhir_h_childkeys_mask) {
        const hv__fhir_childkey_row_t *k = &hv__fhir_childkeys[hv__fhir_h_childkeys[i] - 1];
        if ((uint32_t)k->owner == oid && eqn(HV__S(k->name), name, len)) {
            if (chosen != NULL)
                *chosen = &hv__fhir_types[k->type];
            return &hv__fhir_elems[k->elem];
        }
    }
    return NULL;
}

const hv_fhir_elem_t *hv_fhir_elem_owner(const hv_fhir_elem_t *e, const hv_fhir_type_t *t) {
    if (e != NULL && e->kn > 0)
        return e;
    if (e != NULL && e->cref >= 0)
        return &hv__fhir_elems[e->cref];
    return hv_fhir_type_root(t);
}

const char *hv_fhir_elem_path(const hv_fhir_elem_t *e) {
    return HV__S(e->path);
}

const char *hv_fhir_elem_name(const hv_fhir_elem_t *e) {
    return HV__S(e->name);
}

const hv_fhir_elem_t *hv_fhir_elem_parent(const hv_fhir_elem_t *e) {
    return e->parent >= 0 ? &hv__fhir_elems[e->parent] : NULL;
}

const hv_fhir_type_t *hv_fhir_elem_owner_type(const hv_fhir_elem_t *e) {
    return &hv__fhir_types[e->owner];
}

uint32_t hv_fhir_elem_min(const hv_fhir_elem_t *e) {
    return e->min;
}

uint32_t hv_fhir_elem_max(const hv_fhir_elem_t *e) {
    return e->max;
}

int hv_fhir_elem_is_array(const hv_fhir_elem_t *e) {
    return (e->flags & HV__EF_ARRAY) != 0;
}

int hv_fhir_elem_is_choice(const hv_fhir_elem_t *e) {
    return (e->flags & HV__EF_CHOICE) != 0;
}

int hv_fhir_elem_is_backbone(const hv_fhir_elem_t *e) {
    return (e->flags & HV__EF_BACKBONE) != 0;
}

int hv_fhir_elem_is_modifier(const hv_fhir_elem_t *e) {
    return (e->flags & HV__EF_MODIFIER) != 0;
}

int hv_fhir_elem_is_summary(const hv_fhir_elem_t *e) {
    return (e->flags & HV__EF_SUMMARY) != 0;
}

int hv_fhir_elem_is_xml_attr(const hv_fhir_elem_t *e) {
    return (e->flags & HV__EF_XMLATTR) != 0;
}

int hv_fhir_elem_is_xhtml(const hv_fhir_elem_t *e) {
    return (e->flags & HV__EF_XHTML) != 0;
}

const hv_fhir_elem_t *hv_fhir_elem_content_ref(const hv_fhir_elem_t *e) {
    return e->cref >= 0 ? &hv__fhir_elems[e->cref] : NULL;
}

size_t hv_fhir_elem_type_count(const hv_fhir_elem_t *e) {
    return e->tn;
}

const hv_fhir_type_t *hv_fhir_elem_type_at(const hv_fhir_elem_t *e, size_t i) {
    return i < e->tn ? &hv__fhir_types[hv__fhir_typerefs[e->tfirst + i].type] : NULL;
}

size_t hv_fhir_elem_target_count(const hv_fhir_elem_t *e, size_t i) {
    return i < e->tn ? hv__fhir_typerefs[e->tfirst + i].tgn : 0;
}

const hv_fhir_type_t *hv_fhir_elem_target_at(const hv_fhir_elem_t *e, size_t i, size_t j) {
    if (i >= e->tn)
        return NULL;
    const hv__fhir_typeref_row_t *r = &hv__fhir_typerefs[e->tfirst + i];
    return j < r->tgn ? &hv__fhir_types[hv__fhir_targets[r->tgfirst + j]] : NULL;
}

const hv_fhir_type_t *hv_fhir_elem_choice_type(const hv_fhir_elem_t *e, const char *suffix,
                                               size_t len) {
    if (!(e->flags & HV__EF_CHOICE) || len == 0)
        return NULL;
    for (size_t i = 0; i < e->tn; i++) {
        const hv_fhir_type_t *t = &hv__fhir_types[hv__fhir_typerefs[e->tfirst + i].type];
        const char *n = HV__S(t->name);
        if ((n[0] == suffix[0] || n[0] - 'a' + 'A' == suffix[0]) && eqn(n + 1, suffix + 1, len - 1))
            return t;
    }
    return NULL;
}

size_t hv_fhir_elem_child_count(const hv_fhir_elem_t *owner) {
    return owner->kn;
}

const hv_fhir_elem_t *hv_fhir_elem_child_at(const hv_fhir_elem_t *owner, size_t i) {
    return i < owner->kn ? &hv__fhir_elems[hv__fhir_children[owner->kfirst + i]] : NULL;
}

size_t hv_fhir_elem_index(const hv_fhir_elem_t *child) {
    return child->index;
}

/* ---- constraints and bindings --------------------------------------------- */

size_t hv_fhir_elem_constraint_count(const hv_fhir_elem_t *e) {
    return e->cn;
}

const hv_fhir_constraint_t *hv_fhir_elem_constraint_at(const hv_fhir_elem_t *e, size_t i) {
    return i < e->cn ? &hv__fhir_constraints[hv__fhir_cidx[e->cfirst + i]] : NULL;
}

const char *hv_fhir_constraint_key(const hv_fhir_constraint_t *c) {
    return HV__S(c->key);
}

hv_fhir_severity_t hv_fhir_constraint_severity(const hv_fhir_constraint_t *c) {
    return (hv_fhir_severity_t)c->severity;
}

const char *hv_fhir_constraint_human(const hv_fhir_constraint_t *c) {
    return HV__S(c->human);
}

const char *hv_fhir_constraint_expression(const hv_fhir_constraint_t *c) {
    return HV__S(c->expression);
}

const char *hv_fhir_constraint_source(const hv_fhir_constraint_t *c) {
    return HV__S(c->source);
}

size_t hv_fhir_constraint_count(void) {
    return hv__fhir_constraints_count;
}

const hv_fhir_constraint_t *hv_fhir_constraint_at(size_t id) {
    return id < hv__fhir_constraints_count ? &hv__fhir_constraints[id] : NULL;
}

size_t hv_fhir_constraint_id(const hv_fhir_constraint_t *c) {
    return (size_t)(c - hv__fhir_constraints);
}

const hv_fhir_binding_t *hv_fhir_elem_binding(const hv_fhir_elem_t *e) {
    return e->binding >= 0 ? &hv__fhir_bindings[e->binding] : NULL;
}

hv_fhir_strength_t hv_fhir_binding_strength(const hv_fhir_binding_t *b) {
    return (hv_fhir_strength_t)b->strength;
}

const char *hv_fhir_binding_valueset(const hv_fhir_binding_t *b) {
    return HV__S(b->valueset);
}

int hv_fhir_binding_inlined(const hv_fhir_binding_t *b) {
    return b->inlined;
}

size_t hv_fhir_binding_code_count(const hv_fhir_binding_t *b) {
    return b->cn;
}

void hv_fhir_binding_code_at(const hv_fhir_binding_t *b, size_t i, const char **system,
                             const char **code) {
    const hv__fhir_code_row_t *r = &hv__fhir_codes[b->cfirst + i];
    if (system != NULL)
        *system = i < b->cn ? HV__S(r->system) : NULL;
    if (code != NULL)
        *code = i < b->cn ? HV__S(r->code) : NULL;
}

int hv_fhir_binding_has(const hv_fhir_binding_t *b, const char *system, const char *code) {
    if (!b->inlined)
        return HV_ENOTSUP;
    if (code == NULL)
        return 0;
    for (uint32_t i = 0; i < b->cn; i++) {
        const hv__fhir_code_row_t *r = &hv__fhir_codes[b->cfirst + i];
        if (strcmp(HV__S(r->code), code) == 0 &&
            (system == NULL || strcmp(HV__S(r->system), system) == 0))
            return 1;
    }
    return 0;
}

/* ---- search parameters ---------------------------------------------------- */

static const char *const search_type_names[] = {
    "number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"};

size_t hv_fhir_search_count(void) {
    return hv__fhir_search_count;
}

const hv_fhir_search_t *hv_fhir_search_at(size_t id) {
    return id < hv__fhir_search_count ? &hv__fhir_search[id] : NULL;
}

size_t hv_fhir_search_own_count(const hv_fhir_type_t *t) {
    return t->sn;
}

const hv_fhir_search_t *hv_fhir_search_own_at(const hv_fhir_type_t *t, size_t i) {
    return i < t->sn ? &hv__fhir_search[hv__fhir_search_idx[t->sfirst + i].param] : NULL;
}

const hv_fhir_search_t *hv_fhir_search_find(const hv_fhir_type_t *t, const char *code) {
    if (code == NULL)
        return NULL;
    /* Binary search over the type's own parameters (sorted by code), then its bases. */
    for (; t != NULL; t = t->base >= 0 ? &hv__fhir_types[t->base] : NULL) {
        size_t lo = 0, hi = t->sn;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            const hv_fhir_search_t *s =
                &hv__fhir_search[hv__fhir_search_idx[t->sfirst + mid].param];
            int c = strcmp(HV__S(s->code), code);
            if (c == 0)
                return s;
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
    }
    return NULL;
}

const hv_fhir_search_t *hv_fhir_search_by_url(const char *url) {
    if (url == NULL)
        return NULL;
    uint32_t v = find_url(url);
    if (v == UINT32_MAX || v < hv__fhir_types_count)
        return NULL;
    return &hv__fhir_search[v - hv__fhir_types_count];
}

const char *hv_fhir_search_code(const hv_fhir_search_t *s) {
    return HV__S(s->code);
}

const char *hv_fhir_search_url(const hv_fhir_search_t *s) {
    return HV__S(s->url);
}

hv_fhir_search_type_t hv_fhir_search_type(const hv_fhir_search_t *s) {
    return (hv_fhir_search_type_t)s->type;
}

const char *hv_fhir_search_type_name(hv_fhir_search_type_t type) {
    return (unsigned)type < HV_ARRAY_LEN(search_type_names) ? search_type_names[type] : "?";
}

const char *hv_fhir_search_expression(const hv_fhir_search_t *s) {
    return s->expression != 0 ? HV__S(s->expression) : NULL;
}

const char *hv_fhir_search_usage(const hv_fhir_search_t *s) {
    return HV__S(s->usage);
}

size_t hv_fhir_search_base_count(const hv_fhir_search_t *s) {
    return s->bn;
}

const hv_fhir_type_t *hv_fhir_search_base_at(const hv_fhir_search_t *s, size_t i) {
    return i < s->bn ? &hv__fhir_types[hv__fhir_targets[s->bfirst + i]] : NULL;
}

size_t hv_fhir_search_target_count(const hv_fhir_search_t *s) {
    return s->tgn;
}

const hv_fhir_type_t *hv_fhir_search_target_at(const hv_fhir_search_t *s, size_t i) {
    return i < s->tgn ? &hv__fhir_types[hv__fhir_targets[s->tgfirst + i]] : NULL;
}

size_t hv_fhir_search_component_count(const hv_fhir_search_t *s) {
    return s->cn;
}

const hv_fhir_search_t *hv_fhir_search_component_at(const hv_fhir_search_t *s, size_t i,
                                                    const char **expression) {
    if (i >= s->cn)
        return NULL;
    const hv__fhir_comp_row_t *c = &hv__fhir_comps[s->cfirst + i];
    if (expression != NULL)
        *expression = HV__S(c->expression);
    return c->param >= 0 ? &hv__fhir_search[c->param] : NULL;
}
