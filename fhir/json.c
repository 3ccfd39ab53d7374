/*
 * json.c — the FHIR R4 JSON format (FHIR R4 json.html): parsing into the json-c
 * tree that is the in-memory form of a resource, and writing that tree back in
 * the specification's element order.
 *
 * Reading: our own UTF-8 check (RFC 3629), then the fast reader of json_read.c, which
 * builds the tree json-c's tokener would or declines; when it declines, json-c's tokener
 * in strict mode with a depth cap; syntax errors get a line and column (counted in
 * characters, 1-based). Then,
 * unless the caller asks for leniency, the structural check of validate.c runs
 * and the first content error is reported with its element path.
 *
 * Writing (json.html §Resource and element ordering): the properties of every
 * object follow the order of the elements in the StructureDefinition; the `_x`
 * twin of a primitive follows `x`; `resourceType` comes first; properties the model
 * does not know keep their relative order at the end. Decimals are written with
 * the text they were parsed from (json-c's json_object_new_double_s).
 */
#include "config.h"

#include <json-c/json.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhir_int.h"

/* ---- helpers shared by the walkers ----------------------------------------- */

size_t hv__fhir_path_push(hv__fhir_path_t *p, const char *name, long index) {
    /* Called for every element of every validated resource: no printf here. */
    size_t old = p->len, cap = sizeof(p->buf) - 1, n = strlen(name);
    char digits[24];
    size_t nd = 0;
    if (index >= 0) {
        unsigned long v = (unsigned long)index;
        do {
            digits[nd++] = (char)('0' + v % 10);
            v /= 10;
        } while (v > 0);
    }
    size_t need = (p->len > 0 ? 1 : 0) + n + (index >= 0 ? nd + 2 : 0);
    if (p->len + need > cap)
        return old; /* too long: the path stays a prefix */
    char *w = p->buf + p->len;
    if (p->len > 0)
        *w++ = '.';
    memcpy(w, name, n);
    w += n;
    if (index >= 0) {
        *w++ = '[';
        while (nd > 0)
            *w++ = digits[--nd];
        *w++ = ']';
    }
    *w = '\0';
    p->len = (size_t)(w - p->buf);
    return old;
}

void hv__fhir_path_pop(hv__fhir_path_t *p, size_t len) {
    p->len = len;
    p->buf[len] = '\0';
}

/* hv__fhir_prop_resolve of a key whose length (len bytes) the caller has measured. */
static int prop_resolve_n(const hv_fhir_elem_t *owner, const char *key, size_t len,
                          hv__fhir_prop_t *p) {
    int us = key[0] == '_';
    const hv_fhir_type_t *t = NULL;
    const hv_fhir_elem_t *e = hv_fhir_elem_child(owner, key + us, len - (size_t)us, &t);
    if (e == NULL)
        return HV_ENOTFOUND;
    p->elem = e;
    p->type = t;
    p->underscore = us;
    return HV_OK;
}

/*
 * Element look-ups remembered per thread by owner and key pointer, for the model's own
 * names only: the reader adds every key that is a name of the model as the model's static
 * string (hv__fhir_key_static), a pointer into hv__fhir_pool, whose bytes never change, so
 * one pointer is always one name. Any other key (strdup'd: its pointer may be freed and
 * reused for another name) is looked up in the model as before. The model's hash look-up
 * (hv_fhir_elem_child, ~160 instructions) was a sixth of the stored-text writer and a
 * third of the structural check.
 */
#define PROP_CACHE 1024 /* slots, a power of two */

typedef struct prop_slot {
    const hv_fhir_elem_t *owner;
    const char *key;
    hv__fhir_prop_t prop;
    long order;      /* when found: prop_order(&prop), the writer's sort key */
    uint32_t keylen; /* when found: strlen(key) */
    int found;
} prop_slot_t;

/* Allocated by the first look-up on a thread (64 KB: a static thread-local array would be
 * zeroed, so resident, in every thread of the engine), freed when the thread ends. */
static _Thread_local prop_slot_t *prop_cache;
static pthread_key_t prop_key;
static pthread_once_t prop_once = PTHREAD_ONCE_INIT;
static int prop_key_ok;

static void prop_key_create(void) {
    prop_key_ok = pthread_key_create(&prop_key, hv_free) == 0;
}

/* The thread's cache, or NULL (no memory: look-ups go uncached). */
static prop_slot_t *prop_cache_get(void) {
    prop_slot_t *c = prop_cache;
    if (c != NULL)
        return c;
    pthread_once(&prop_once, prop_key_create);
    if (!prop_key_ok || (c = hv_calloc(PROP_CACHE, sizeof(*c))) == NULL)
        return NULL;
    if (pthread_setspecific(prop_key, c) != 0) {
        hv_free(c);
        return NULL;
    }
    return prop_cache = c;
}

static inline int key_is_static(const char *key) {
    return (uintptr_t)key - (uintptr_t)hv__fhir_pool < hv__fhir_pool_size;
}

static inline size_t prop_slot(const hv_fhir_elem_t *owner, const char *key) {
    uintptr_t h = ((uintptr_t)owner >> 3) * 31u + ((uintptr_t)key >> 2);
    return (h ^ (h >> 10)) & (PROP_CACHE - 1);
}

/* A member's place in the order the writer puts them in: XML attributes (Extension.url)
 * first, as the official serializers write them in JSON too; then the specification order,
 * the `_x` twin after x. */
static long prop_order(const hv__fhir_prop_t *p) {
    return (long)hv_fhir_elem_index(p->elem) * 2 + p->underscore - (hv_fhir_elem_is_xml_attr(p->elem) ? 100000 : 0);
}

/* prop_resolve_n through the cache; len is key's length, or 0 when not measured. */
static int prop_resolve_key(const hv_fhir_elem_t *owner, const char *key, size_t len, hv__fhir_prop_t *p) {
    prop_slot_t *sl, *cache;
    if (len == 0)
        len = strlen(key);
    if (!key_is_static(key) || (cache = prop_cache_get()) == NULL)
        return prop_resolve_n(owner, key, len, p);
    sl = &cache[prop_slot(owner, key)];
    if (sl->owner != owner || sl->key != key) {
        sl->found = prop_resolve_n(owner, key, len, &sl->prop) == HV_OK;
        if (sl->found) {
            sl->order = prop_order(&sl->prop);
            sl->keylen = (uint32_t)len; /* a name of the model: short */
        }
        sl->owner = owner;
        sl->key = key;
    }
    if (!sl->found)
        return HV_ENOTFOUND;
    *p = sl->prop;
    return HV_OK;
}

/* The thread's cache slot holding (owner, key) when key is a model name, else NULL. */
static inline const prop_slot_t *cached_slot(const hv_fhir_elem_t *owner, const char *key) {
    const prop_slot_t *c = prop_cache, *sl;
    if (c == NULL || !key_is_static(key))
        return NULL;
    sl = &c[prop_slot(owner, key)];
    return sl->owner == owner && sl->key == key ? sl : NULL;
}

/* prop_resolve_key with its hit inlined: every member of every object the writer and the
 * structural check walk asks, and a hit is found in the thread's cache, so a call (~55
 * instructions with its frame) costs more than the look-up itself. */
static inline int prop_lookup(const hv_fhir_elem_t *owner, const char *key, size_t len, hv__fhir_prop_t *p) {
    const prop_slot_t *sl = cached_slot(owner, key);
    if (sl != NULL) {
        if (!sl->found)
            return HV_ENOTFOUND;
        *p = sl->prop;
        return HV_OK;
    }
    return prop_resolve_key(owner, key, len, p);
}

int hv__fhir_prop_resolve(const hv_fhir_elem_t *owner, const char *key, hv__fhir_prop_t *p) {
    return prop_lookup(owner, key, 0, p);
}

const hv_fhir_elem_t *hv__fhir_resource_root(struct json_object *obj) {
    struct json_object *rt = NULL;
    if (!hv_json_get_ex(obj, "resourceType", &rt) ||
        !json_object_is_type(rt, json_type_string))
        return NULL;
    return hv_fhir_type_root(hv_fhir_resource_type(json_object_get_string(rt)));
}

/* ---- parsing ---------------------------------------------------------------- */

static void offset_to_linecol(const char *text, size_t off, int *line, int *col) {
    int l = 1, c = 1;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

/*
 * The offset of the first byte that is not well-formed UTF-8 (RFC 3629 §4: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or len. json-c's own check lets some
 * overlong forms (0xC1 0xAE) through, which XML then refuses.
 */
static size_t utf8_invalid_at(const char *text, size_t len) {
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        /* ASCII runs, which are nearly all of a FHIR document, go 8 bytes at a time: a
         * word with no high bit set holds 8 one-byte characters, each valid wherever the
         * word starts (an ASCII byte never continues a sequence, and a sequence cut by the
         * word's end is not in it). memcpy is the load: no alignment assumed, no aliasing. */
        while (len - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, sizeof(w));
            if ((w & UINT64_C(0x8080808080808080)) != 0)
                break;
            i += 8;
        }
        if (i >= len)
            break;
        size_t n = hv__fhir_utf8_len(text + i, text + len);
        if (n == 0)
            return i;
        i += n;
    }
    return len;
}

/*
 * Each thread keeps the tokener of its last clean parse for its next document:
 * json_tokener_new_ex callocs a stack of max_depth entries and a print buffer (~5,000
 * instructions, about 1% of a REST create), json_tokener_reset readies it again for a
 * handful. Only a tokener that finished a document is kept: after an error or an
 * incomplete document json-c leaves state that json_tokener_reset does not clear (a
 * pending high surrogate of a \uD800 escape would join the next document's first \u).
 * One kept tokener per thread, of the depth last asked for; one that read a document
 * over TOKENER_KEEP_BYTES is freed instead, as its print buffer grew to that document's
 * longest string and would keep that size for the thread's life: a thread holds at most
 * the stack (32 bytes a level) and a print buffer under twice TOKENER_KEEP_BYTES. Bundles
 * of an import or a sync page are larger and take a new tokener each, as before. The
 * key's destructor frees a thread's tokener when the thread ends.
 */
#define TOKENER_KEEP_BYTES ((size_t)64 << 10)

typedef struct tokener_cache {
    struct json_tokener *tok; /* NULL, or ready after json_tokener_reset */
    int depth;                /* its max_depth */
    int registered;           /* pthread_setspecific done: the destructor will run */
} tokener_cache_t;

static _Thread_local tokener_cache_t tokener_cache;
static pthread_key_t tokener_key;
static pthread_once_t tokener_once = PTHREAD_ONCE_INIT;
static int tokener_key_ok;

static void tokener_cache_free(void *p) {
    tokener_cache_t *c = p;
    if (c->tok != NULL)
        json_tokener_free(c->tok);
    c->tok = NULL;
}

static void tokener_key_create(void) {
    tokener_key_ok = pthread_key_create(&tokener_key, tokener_cache_free) == 0;
}

/* A tokener of max_depth depth, ready to parse: the thread's kept one, or a new one. */
static struct json_tokener *tokener_take(int depth) {
    tokener_cache_t *c = &tokener_cache;
    struct json_tokener *tok = c->tok;
    if (tok != NULL && c->depth == depth) {
        c->tok = NULL;
        json_tokener_reset(tok);
        return tok;
    }
    return json_tokener_new_ex(depth);
}

/* Takes tok, which just parsed a document of len bytes to its end without error: kept
 * for the thread's next parse, or freed. */
static void tokener_keep(struct json_tokener *tok, int depth, size_t len) {
    tokener_cache_t *c = &tokener_cache;
    pthread_once(&tokener_once, tokener_key_create);
    if (tokener_key_ok && !c->registered && pthread_setspecific(tokener_key, c) == 0)
        c->registered = 1;
    if (!c->registered || len > TOKENER_KEEP_BYTES) {
        json_tokener_free(tok);
        return;
    }
    if (c->tok != NULL)
        json_tokener_free(c->tok); /* of another depth */
    c->tok = tok;
    c->depth = depth;
}

/*
 * json-c's tokener (strict mode, depth max_depth) on text: *out is its tree, or err says where
 * and why not. The slow path of hv_fhir_json_parse, and the one that words its errors.
 */
static int tokener_parse(const char *text, size_t len, int max_depth, struct json_object **out,
                         hv_error_t *err) {
    struct json_tokener *tok = NULL;
    struct json_object *obj = NULL;
    int rc = HV_EPROTO;

    tok = tokener_take(max_depth);
    if (tok == NULL)
        return HV_ENOMEM;
    /*
     * json-c's JSON_TOKENER_VALIDATE_UTF8 costs a call per byte and cannot refuse what
     * utf8_invalid_at accepted, so the first pass goes without it. In json-c 0.16 every
     * byte is peeked once, in order (PEEK_CHAR follows each ADVANCE_CHAR; redo_char
     * re-reads none), and its check accepts every well-formed sequence; the flag's only
     * other effect is at the end of a failed pass: when the last byte read is not the last
     * of its character (a lead byte outside a string, say), the error becomes "invalid
     * utf-8 string". Success and end-of-input are therefore the same with and without
     * it, and a failure is parsed again with the flag, by a new tokener, so that its
     * message and position stay what they were.
     */
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    obj = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    if (jerr != json_tokener_success && jerr != json_tokener_continue) {
        json_object_put(obj);
        obj = NULL;
        json_tokener_free(tok);
        tok = json_tokener_new_ex(max_depth);
        if (tok == NULL)
            return HV_ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        obj = json_tokener_parse_ex(tok, text, (int)len);
        jerr = json_tokener_get_error(tok);
    }
    size_t end = json_tokener_get_parse_end(tok);
    if (jerr == json_tokener_continue && obj == NULL) {
        /* The whole text was consumed without completing a value. */
        hv_error_set(err, HV_EPROTO, NULL, "invalid JSON: unexpected end of input");
        if (err != NULL)
            offset_to_linecol(text, len, &err->line, &err->column);
        goto out;
    }
    if (jerr != json_tokener_success) {
        rc = jerr == json_tokener_error_depth ? HV_ETOOBIG : HV_EPROTO;
        hv_error_set(err, rc, NULL, "invalid JSON: %s", json_tokener_error_desc(jerr));
        if (err != NULL)
            offset_to_linecol(text, end, &err->line, &err->column);
        goto out;
    }
    tokener_keep(tok, max_depth, len);
    tok = NULL;
    while (end < len &&
           (text[end] == ' ' || text[end] == '\t' || text[end] == '\n' || text[end] == '\r'))
        end++;
    if (end < len) {
        hv_error_set(err, HV_EPROTO, NULL, "invalid JSON: content after the document");
        if (err != NULL)
            offset_to_linecol(text, end, &err->line, &err->column);
        goto out;
    }
    *out = obj;
    obj = NULL;
    rc = HV_OK;
out:
    json_object_put(obj);
    if (tok != NULL)
        json_tokener_free(tok); /* json-c 0.16's free is not NULL-safe */
    return rc;
}

int hv_fhir_json_parse(const char *text, size_t len, const hv_fhir_parse_opts_t *opts,
                       struct json_object **out, hv_error_t *err) {
    struct json_object *obj = NULL;
    size_t max_bytes =
        opts != NULL && opts->max_bytes > 0 ? opts->max_bytes : HV_FHIR_DEFAULT_MAX_BYTES;
    int max_depth =
        opts != NULL && opts->max_depth > 0 ? opts->max_depth : HV_FHIR_DEFAULT_MAX_DEPTH;
    unsigned flags = opts != NULL ? opts->flags : 0;
    int rc = HV_EPROTO;

    if (len > max_bytes || len > INT32_MAX) {
        hv_error_set(err, HV_ETOOBIG, NULL, "document of %zu bytes exceeds the cap of %zu", len,
                     max_bytes);
        return HV_ETOOBIG;
    }
    /* The fast reader (json_read.c) builds the tree json-c's tokener would, or declines;
     * json-c's tokener then reads the text and words any error. A text the reader reads is
     * valid UTF-8 (it checks the strings' bytes as it scans them), so only a declined one is
     * checked here, before the tokener, with the same error as before. */
    obj = hv__fhir_json_read(text, len, max_depth);
    if (obj == NULL) {
        size_t bad = utf8_invalid_at(text, len);
        if (bad < len) {
            hv_error_set(err, HV_EPROTO, NULL, "invalid JSON: the text is not valid UTF-8");
            if (err != NULL)
                offset_to_linecol(text, bad, &err->line, &err->column);
            return HV_EPROTO;
        }
        rc = tokener_parse(text, len, max_depth, &obj, err);
        if (rc != HV_OK)
            return rc;
    }
    if (!json_object_is_type(obj, json_type_object)) {
        hv_error_set(err, HV_EINVAL, NULL, "a FHIR resource must be a JSON object");
        rc = HV_EINVAL;
        goto out;
    }
    struct json_object *rt = NULL;
    if (!hv_json_get_ex(obj, "resourceType", &rt) ||
        !json_object_is_type(rt, json_type_string)) {
        hv_error_set(err, HV_EINVAL, NULL, "the resource has no resourceType");
        rc = HV_EINVAL;
        goto out;
    }
    if (hv_fhir_resource_type(json_object_get_string(rt)) == NULL) {
        hv_error_set(err, HV_EINVAL, NULL, "unknown resourceType");
        rc = HV_EINVAL;
        goto out;
    }
    if (!(flags & HV_FHIR_PARSE_LENIENT)) {
        rc = hv_fhir_check_structure(obj, max_depth, err);
        if (rc != HV_OK)
            goto out;
    }
    *out = obj;
    obj = NULL;
    rc = HV_OK;
out:
    json_object_put(obj);
    return rc;
}

/* ---- writing ---------------------------------------------------------------- */

typedef struct prop_ent {
    const char *key;
    size_t keylen;
    struct json_object *val;
    long order;
    size_t seq;
    hv__fhir_prop_t prop;
    int known;
} prop_ent_t;

static int cmp_prop(const void *a, const void *b) {
    const prop_ent_t *x = a, *y = b;
    if (x->order != y->order)
        return x->order < y->order ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* cmp_prop's order for the few members of an object on the stack, which are nearly in
 * order (a resource's meta, added last, moves up once): insertion passes an entry only
 * over greater orders, so equal orders keep their sequence. glibc's qsort cost ~2,000
 * instructions for a resource's dozen. */
static void sort_props(prop_ent_t *ents, size_t n) {
    for (size_t i = 1; i < n; i++) {
        prop_ent_t t;
        size_t j = i;
        if (ents[i].order >= ents[i - 1].order)
            continue;
        t = ents[i];
        while (j > 0 && ents[j - 1].order > t.order) {
            ents[j] = ents[j - 1];
            j--;
        }
        ents[j] = t;
    }
}

static int write_value(hv_buf_t *out, struct json_object *v, const hv_fhir_elem_t *e,
                       const hv_fhir_type_t *t, int underscore, unsigned flags, int depth);

/* prop_lookup for the writer, which also takes the member's order and its key's length from
 * the cache (a model name's length and order are the same every time): pe's prop, order and
 * keylen, or HV_ENOTFOUND with none of them set. */
static inline int prop_lookup_ent(const hv_fhir_elem_t *owner, const char *key, prop_ent_t *pe) {
    const prop_slot_t *sl = cached_slot(owner, key);
    if (sl != NULL) {
        if (!sl->found)
            return HV_ENOTFOUND;
        pe->prop = sl->prop;
        pe->order = sl->order;
        pe->keylen = sl->keylen;
        return HV_OK;
    }
    pe->keylen = strlen(key);
    if (prop_resolve_key(owner, key, pe->keylen, &pe->prop) != HV_OK)
        return HV_ENOTFOUND;
    pe->order = prop_order(&pe->prop);
    return HV_OK;
}

/* hv_buf_putc without the call when the byte fits: the writer puts a few bytes of
 * punctuation per element. */
static inline int put_byte(hv_buf_t *out, char c) {
    if (hv_buf_has_room(out, 1)) {
        out->data[out->len++] = c;
        out->data[out->len] = '\0';
        return HV_OK;
    }
    return hv_buf_putc(out, c);
}

/* An integer as json-c writes it ("%" PRId64), without json-c's per-object print
 * buffer (two allocations per number otherwise). */
static int put_int64(hv_buf_t *out, int64_t x) {
    char digits[24], *end = digits + sizeof(digits);
    char *p = hv_u64_digits(x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x, end);
    if (x < 0)
        *--p = '-';
    return hv_buf_append(out, p, (size_t)(end - p));
}

static int indent(hv_buf_t *out, unsigned flags, int depth) {
    int rc = HV_OK;
    if (!(flags & HV_FHIR_WRITE_PRETTY))
        return HV_OK;
    rc = hv_buf_putc(out, '\n');
    for (int i = 0; rc == HV_OK && i < depth; i++)
        rc = hv_buf_puts(out, "  ");
    return rc;
}

static int write_object(hv_buf_t *out, struct json_object *obj, const hv_fhir_elem_t *owner,
                        unsigned flags, int depth) {
    prop_ent_t stackents[32];
    prop_ent_t *ents = stackents;
    size_t n = (size_t)json_object_object_length(obj), i = 0;
    int rc = HV_OK, sorted = 1;

    /* resourceType comes first on a resource (an element may bear the same name:
     * ExampleScenario.instance.resourceType). */
    int is_resource = owner == NULL || hv__fhir_elem_is_resource_root(owner);
    if (n == 0)
        return hv_buf_puts(out, "{}");
    if (n > HV_ARRAY_LEN(stackents)) {
        ents = hv_malloc(n * sizeof(*ents));
        if (ents == NULL)
            return HV_ENOMEM;
    }
    json_object_object_foreach(obj, key, val) {
        prop_ent_t *pe = &ents[i];
        pe->key = key;
        pe->val = val;
        pe->seq = i;
        pe->known = 0;
        if (is_resource && key[0] == 'r' && strcmp(key, "resourceType") == 0) {
            pe->keylen = 12;
            pe->order = -1 - (1L << 30);
        } else if (owner != NULL && prop_lookup_ent(owner, key, pe) == HV_OK) {
            pe->known = 1;
        } else {
            pe->keylen = strlen(key);
            pe->order = 1L << 30;
        }
        /* Equal orders keep their sequence, so non-decreasing orders are the sorted
         * order: the common case for text we wrote ourselves, and no sort is needed. */
        if (i > 0 && pe->order < ents[i - 1].order)
            sorted = 0;
        i++;
    }
    if (!sorted && ents == stackents)
        sort_props(ents, n);
    else if (!sorted)
        qsort(ents, n, sizeof(*ents), cmp_prop); /* bounded time for a large object */
    rc = put_byte(out, '{');
    for (i = 0; rc == HV_OK && i < n; i++) {
        if (i > 0)
            rc = put_byte(out, ',');
        if (rc == HV_OK)
            rc = indent(out, flags, depth + 1);
        /* A member the model names (or resourceType) is letters, digits and '_': nothing to
         * escape, so it is copied rather than scanned (half the strings written are keys). */
        if (rc == HV_OK && (ents[i].known || ents[i].order < 0) && hv_buf_has_room(out, ents[i].keylen + 3)) {
            char *w = out->data + out->len;
            *w++ = '"';
            memcpy(w, ents[i].key, ents[i].keylen);
            w += ents[i].keylen;
            *w++ = '"';
            *w = '\0';
            out->len += ents[i].keylen + 2;
        } else if (rc == HV_OK) {
            rc = hv_buf_json_str(out, ents[i].key, ents[i].keylen);
        }
        if (rc == HV_OK)
            rc = (flags & HV_FHIR_WRITE_PRETTY) ? hv_buf_puts(out, ": ") : put_byte(out, ':');
        if (rc == HV_OK)
            rc = write_value(out, ents[i].val, ents[i].known ? ents[i].prop.elem : NULL,
                             ents[i].known ? ents[i].prop.type : NULL,
                             ents[i].known ? ents[i].prop.underscore : 0, flags, depth + 1);
    }
    if (rc == HV_OK)
        rc = indent(out, flags, depth);
    if (rc == HV_OK)
        rc = put_byte(out, '}');
    if (ents != stackents)
        hv_free(ents);
    return rc;
}

static int write_value(hv_buf_t *out, struct json_object *v, const hv_fhir_elem_t *e,
                       const hv_fhir_type_t *t, int underscore, unsigned flags, int depth) {
    if (depth > HV_FHIR_DEFAULT_MAX_DEPTH * 2)
        return HV_ETOOBIG;
    switch (json_object_get_type(v)) {
    case json_type_null:
        return hv_buf_puts(out, "null");
    case json_type_boolean:
        return hv_buf_puts(out, json_object_get_boolean(v) ? "true" : "false");
    case json_type_int:
        /* A uint64 above INT64_MAX reads as INT64_MAX: json-c writes that one. */
        if (json_object_get_int64(v) != INT64_MAX)
            return put_int64(out, json_object_get_int64(v));
        return hv_buf_puts(out, json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
    case json_type_double:
        return hv_buf_puts(out, hv_fhir_json_number_text(v));
    case json_type_string:
        return hv_buf_json_str(out, json_object_get_string(v),
                               (size_t)json_object_get_string_len(v));
    case json_type_array: {
        size_t n = json_object_array_length(v);
        int rc = put_byte(out, '[');
        for (size_t i = 0; rc == HV_OK && i < n; i++) {
            if (i > 0)
                rc = put_byte(out, ',');
            if (rc == HV_OK)
                rc = indent(out, flags, depth + 1);
            if (rc == HV_OK)
                rc = write_value(out, json_object_array_get_idx(v, i), e, t, underscore, flags,
                                 depth + 1);
        }
        if (rc == HV_OK && n > 0)
            rc = indent(out, flags, depth);
        return rc == HV_OK ? put_byte(out, ']') : rc;
    }
    case json_type_object: {
        const hv_fhir_elem_t *owner = e != NULL ? hv__fhir_value_owner(e, t, underscore, v)
                                                : (depth == 0 ? hv__fhir_resource_root(v) : NULL);
        return write_object(out, v, owner, flags, depth);
    }
    }
    return HV_EINVAL;
}

int hv_fhir_json_write(struct json_object *resource, unsigned flags, hv_buf_t *out) {
    size_t start = out->len;
    int rc = write_value(out, resource, NULL, NULL, 0, flags, 0);
    if (rc != HV_OK) {
        out->len = start; /* leave the buffer as it was */
        if (out->data != NULL)
            out->data[start] = '\0';
    }
    return rc;
}

/* ---- comparison --------------------------------------------------------------- */

/*
 * A double made from text (json_object_new_double_s: the readers, the mappings) keeps that
 * text as its userdata, which json-c's serializer copies as it is (json_object.h: "the
 * userdata field is used to store the string representation"; json_object_set_double drops
 * both), into a print buffer it allocates on the object: ~600 instructions and two
 * allocations a number, in the structural check and the stored-text writer. The engine
 * gives a double userdata in no other way, so the text is returned without the copy.
 */
const char *hv_fhir_json_number_text(struct json_object *num) {
    const char *text;
    if (json_object_is_type(num, json_type_double) && (text = json_object_get_userdata(num)) != NULL)
        return text;
    if (!json_object_is_type(num, json_type_int) && !json_object_is_type(num, json_type_double))
        return NULL;
    return json_object_to_json_string_ext(num, JSON_C_TO_STRING_PLAIN);
}

static int equal_depth(struct json_object *a, struct json_object *b, int depth) {
    enum json_type ta = json_object_get_type(a), tb = json_object_get_type(b);
    if (depth > HV_FHIR_DEFAULT_MAX_DEPTH * 2)
        return 0;
    if ((ta == json_type_int || ta == json_type_double) &&
        (tb == json_type_int || tb == json_type_double)) {
        if (ta == json_type_int && tb == json_type_int)
            return json_object_get_int64(a) == json_object_get_int64(b);
        char ab[64];
        snprintf(ab, sizeof(ab), "%s", hv_fhir_json_number_text(a));
        return strcmp(ab, hv_fhir_json_number_text(b)) == 0;
    }
    if (ta != tb)
        return 0;
    switch (ta) {
    case json_type_null:
        return 1;
    case json_type_boolean:
        return json_object_get_boolean(a) == json_object_get_boolean(b);
    case json_type_string:
        return json_object_get_string_len(a) == json_object_get_string_len(b) &&
               memcmp(json_object_get_string(a), json_object_get_string(b),
                      (size_t)json_object_get_string_len(a)) == 0;
    case json_type_array: {
        size_t n = json_object_array_length(a);
        if (n != json_object_array_length(b))
            return 0;
        for (size_t i = 0; i < n; i++)
            if (!equal_depth(json_object_array_get_idx(a, i), json_object_array_get_idx(b, i),
                             depth + 1))
                return 0;
        return 1;
    }
    case json_type_object: {
        if (json_object_object_length(a) != json_object_object_length(b))
            return 0;
        json_object_object_foreach(a, key, va) {
            struct json_object *vb = NULL;
            if (!hv_json_get_ex(b, key, &vb) || !equal_depth(va, vb, depth + 1))
                return 0;
        }
        return 1;
    }
    default:
        return 0;
    }
}

int hv_fhir_json_equal(struct json_object *a, struct json_object *b) {
    return equal_depth(a, b, 0);
}
