/*
 * jtree.c — the JSON tree the HL7 v2 → FHIR engine builds its Bundle in: values, objects and
 * arrays allocated from the mapping's arena (no reference counts, no per-object hash table, one
 * call frees them all), and the writer that turns a tree into JSON text (RFC 8259).
 *
 * The text is byte for byte what json-c 0.16 writes for the same tree with
 * JSON_C_TO_STRING_PLAIN (and JSON_C_TO_STRING_NOSLASHESCAPE unless HV__JV_SLASH is given):
 * members in the order they were first added (a replaced value keeps its place), no spaces,
 * strings escaped as json_escape_str does ("\b \n \r \t \f \" \\" as two characters, "/" as
 * "\/" when asked, other bytes below 0x20 as "\u00xx" in lower-case hex, every other byte as
 * it is — UTF-8 passes through), integers in decimal, decimals as the text they were made
 * from, booleans as true/false. The HL7 v2 output oracle (test/integration/test_mappings_oracle.py)
 * compares the two writers on every reference message; hv__jv_to_json hands a tree to callers
 * that want json-c.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "mappings/mappings_int.h"

static hv__jv_t *jv_new(hv_arena_t *a, unsigned char t) {
    hv__jv_t *v = hv_arena_alloc(a, sizeof(*v));
    if (v == NULL) return NULL;
    memset(v, 0, sizeof(*v));
    v->t = t;
    return v;
}

hv__jv_t *hv__jv_obj(hv_arena_t *a) { return jv_new(a, HV__JV_OBJ); }
hv__jv_t *hv__jv_arr(hv_arena_t *a) { return jv_new(a, HV__JV_ARR); }

hv__jv_t *hv__jv_bool(hv_arena_t *a, int b) {
    hv__jv_t *v = jv_new(a, HV__JV_BOOL);
    if (v != NULL) v->u.i = b != 0;
    return v;
}

hv__jv_t *hv__jv_int(hv_arena_t *a, long long i) {
    hv__jv_t *v = jv_new(a, HV__JV_INT);
    if (v != NULL) v->u.i = i;
    return v;
}

hv__jv_t *hv__jv_num(hv_arena_t *a, double d, const char *text) {
    hv__jv_t *v = jv_new(a, HV__JV_NUM);
    size_t n = strlen(text);
    char *s;
    if (v == NULL || (s = hv_arena_strndup(a, text, n)) == NULL) return NULL;
    v->d = d;
    v->u.s = s;
    v->n = n;
    return v;
}

hv__jv_t *hv__jv_strn(hv_arena_t *a, const char *s, size_t n) {
    hv__jv_t *v = jv_new(a, HV__JV_STR);
    char *d;
    if (v == NULL || (d = hv_arena_strndup(a, s, n)) == NULL) return NULL;
    v->u.s = d;
    v->n = n;
    return v;
}

hv__jv_t *hv__jv_str(hv_arena_t *a, const char *s) { return s != NULL ? hv__jv_strn(a, s, strlen(s)) : NULL; }

hv__jv_t *hv__jv_str_ref(hv_arena_t *a, const char *s) {
    hv__jv_t *v = s != NULL ? jv_new(a, HV__JV_STR) : NULL;
    if (v == NULL) return NULL;
    v->u.s = s;
    v->n = strlen(s);
    return v;
}

int hv__jv_set_str(hv_arena_t *a, hv__jv_t *v, const char *s) {
    size_t n = strlen(s);
    char *d;
    if (v == NULL || v->t != HV__JV_STR || (d = hv_arena_strndup(a, s, n)) == NULL) return HV_ENOMEM;
    v->u.s = d;
    v->n = n;
    return HV_OK;
}

int hv__jv_set_str_ref(hv__jv_t *v, const char *s) {
    if (v == NULL || v->t != HV__JV_STR) return HV_EINVAL;
    v->u.s = s;
    v->n = strlen(s);
    return HV_OK;
}

/* The member of o named key (first byte compared before strcmp), NULL when none; *prev is set
 * to the member before it (NULL: it is the first). */
static hv__jmem_t *find(const hv__jv_t *o, const char *key, hv__jmem_t **prev) {
    hv__jmem_t *m, *p = NULL;
    if (o == NULL || o->t != HV__JV_OBJ) return NULL;
    for (m = o->u.o.head; m != NULL; p = m, m = m->next) {
        if (m->k[0] == key[0] && strcmp(m->k, key) == 0) {
            if (prev != NULL) *prev = p;
            return m;
        }
    }
    return NULL;
}

hv__jv_t *hv__jv_get(const hv__jv_t *o, const char *key) {
    hv__jmem_t *m = find(o, key, NULL);
    return m != NULL ? m->v : NULL;
}

const char *hv__jv_get_str(const hv__jv_t *o, const char *key) {
    hv__jv_t *v = hv__jv_get(o, key);
    return v != NULL && v->t == HV__JV_STR ? v->u.s : NULL;
}

int hv__jv_put(hv_arena_t *a, hv__jv_t *o, const char *key, hv__jv_t *v, unsigned flags) {
    return hv__jv_put_tag(a, o, key, v, flags, NULL, NULL);
}

int hv__jv_put_tag(hv_arena_t *a, hv__jv_t *o, const char *key, hv__jv_t *v, unsigned flags, const void *tag,
                   const void *tag2) {
    hv__jmem_t *m;
    if (o == NULL || v == NULL || o->t != HV__JV_OBJ) return HV_ENOMEM;
    if (!(flags & HV__JV_KNEW) && (m = find(o, key, NULL)) != NULL) {
        m->v = v; /* json-c replaces a value where it stands */
        if (tag != NULL) m->tag = tag, m->tag2 = tag2; /* a tag depends on the key: kept otherwise */
        return HV_OK;
    }
    m = hv_arena_alloc(a, sizeof(*m));
    if (m == NULL) return HV_ENOMEM;
    if (!(flags & HV__JV_KCONST) && (key = hv_arena_strdup(a, key)) == NULL) return HV_ENOMEM;
    m->k = key;
    m->klen = strlen(key);
    m->plain = (flags & HV__JV_KCONST) != 0;
    m->v = v;
    m->next = NULL;
    m->tag = tag;
    m->tag2 = tag2;
    if (o->u.o.tail != NULL) o->u.o.tail->next = m;
    else o->u.o.head = m;
    o->u.o.tail = m;
    o->n++;
    return HV_OK;
}

int hv__jv_put_str(hv_arena_t *a, hv__jv_t *o, const char *key, const char *s, unsigned flags) {
    return hv__jv_put(a, o, key, hv__jv_str(a, s), flags);
}

int hv__jv_del(hv__jv_t *o, const char *key) {
    hv__jmem_t *prev = NULL, *m = find(o, key, &prev);
    if (m == NULL) return 0;
    if (prev != NULL) prev->next = m->next;
    else o->u.o.head = m->next;
    if (o->u.o.tail == m) o->u.o.tail = prev;
    o->n--;
    return 1;
}

int hv__jv_push(hv_arena_t *a, hv__jv_t *arr, hv__jv_t *v) {
    if (arr == NULL || v == NULL || arr->t != HV__JV_ARR) return HV_ENOMEM;
    if (arr->n == arr->cap) {
        /* Arrays grow by doubling inside the arena; the old items are left behind (a few
         * pointers: FHIR arrays are short). */
        size_t nc = arr->cap ? 2 * (size_t)arr->cap : 4;
        hv__jv_t **ni;
        if (nc > UINT32_MAX || (ni = hv_arena_alloc(a, nc * sizeof(*ni))) == NULL) return HV_ENOMEM;
        if (arr->n) memcpy(ni, arr->u.a, arr->n * sizeof(*ni));
        arr->u.a = ni;
        arr->cap = (uint32_t)nc;
    }
    arr->u.a[arr->n++] = v;
    return HV_OK;
}

hv__jv_t *hv__jv_at(const hv__jv_t *arr, size_t i) {
    if (arr == NULL || arr->t != HV__JV_ARR || i >= arr->n) return NULL;
    return arr->u.a[i];
}

void hv__jv_del_at(hv__jv_t *arr, size_t i) {
    if (arr == NULL || arr->t != HV__JV_ARR || i >= arr->n) return;
    memmove(arr->u.a + i, arr->u.a + i + 1, (arr->n - i - 1) * sizeof(*arr->u.a));
    arr->n--;
}

int hv__jv_equal(const hv__jv_t *x, const hv__jv_t *y, int depth) {
    size_t i;
    const hv__jmem_t *m;
    if (x == y) return 1;
    if (x == NULL || y == NULL || depth > HV__JV_MAX_DEPTH) return 0;
    /* As json_object_equal: an integer and a decimal of the same value differ, decimals by value. */
    if (x->t != y->t) return 0;
    switch (x->t) {
    case HV__JV_NULL: return 1;
    case HV__JV_BOOL:
    case HV__JV_INT: return x->u.i == y->u.i;
    case HV__JV_NUM: return x->d == y->d;
    case HV__JV_STR: return x->n == y->n && memcmp(x->u.s, y->u.s, x->n) == 0;
    case HV__JV_ARR:
        if (x->n != y->n) return 0;
        for (i = 0; i < x->n; i++)
            if (!hv__jv_equal(x->u.a[i], y->u.a[i], depth + 1)) return 0;
        return 1;
    default:
        if (x->n != y->n) return 0;
        for (m = x->u.o.head; m != NULL; m = m->next)
            if (!hv__jv_equal(m->v, hv__jv_get(y, m->k), depth + 1)) return 0;
        return 1;
    }
}

/* ------------------------------------------------------------------------- */
/* Writing                                                                   */
/* ------------------------------------------------------------------------- */

/*
 * The writer appends straight into the buffer's storage: w.p is the next byte, w.end the end
 * of the room reserved. need() makes room for n more bytes (the buffer grows by doubling, so
 * that is rare) and is the only place that can fail.
 */
typedef struct writer {
    hv_buf_t *b;
    char *p, *end;
    unsigned flags;
} writer_t;

static int grow(writer_t *w, size_t n) {
    int rc;
    w->b->len = (size_t)(w->p - w->b->data);
    /* Grow by at least 4 KiB; near a capped buffer's end, by what is asked. */
    rc = hv_buf_reserve(w->b, n < 4096 ? 4096 : n);
    if (rc != HV_OK && n < 4096) rc = hv_buf_reserve(w->b, n);
    if (rc != HV_OK) return rc;
    w->p = w->b->data + w->b->len;
    w->end = w->b->data + w->b->cap - 1; /* the terminating NUL's place */
    return HV_OK;
}

static inline int need(writer_t *w, size_t n) {
    if ((size_t)(w->end - w->p) > n) return HV_OK;
    return grow(w, n);
}

/* 1 for the bytes a string escapes (below 0x20, '"', '\\'), 2 for '/' (escaped when asked). */
static const unsigned char esc_class[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
};

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
/* The high bit of each byte of x that is zero (exact; SWAR, "Bit Twiddling Hacks"). */
static inline uint64_t zero_bytes(uint64_t x) { return ~(((x & ~HIGHS) + ~HIGHS) | x) & HIGHS; }

#if defined(__SSE2__)
/* True when none of the sixteen bytes at s needs an escape (as word_clean, '/' aside): SSE2,
 * part of every x86-64; unsigned max(x, 0x1f) == 0x1f finds the bytes below 0x20. */
static inline int block16_clean(const char *s) {
    __m128i x = _mm_loadu_si128((const __m128i *)(const void *)s);
    __m128i ctl = _mm_cmpeq_epi8(_mm_max_epu8(x, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f));
    __m128i q = _mm_cmpeq_epi8(x, _mm_set1_epi8('"'));
    __m128i bs = _mm_cmpeq_epi8(x, _mm_set1_epi8('\\'));
    return _mm_movemask_epi8(_mm_or_si128(ctl, _mm_or_si128(q, bs))) == 0;
}
#endif

/* True when none of the eight bytes of x needs an escape (below 0x20: the top three bits
 * zero; '"'; '\\'), '/' aside. */
static inline int word_clean(uint64_t x) {
    return (zero_bytes(x & (0xE0ULL * ONES)) | zero_bytes(x ^ ('"' * ONES)) | zero_bytes(x ^ ('\\' * ONES))) == 0;
}

/* Writes the escape of one byte that needs one (below 0x20, '"', '\\', '/'), as json-c's
 * json_escape_str: the short forms, else \u00xx. The room was reserved by put_str. */
static inline void put_esc(writer_t *w, unsigned char ch) {
    static const char hex[] = "0123456789abcdef";
    *w->p++ = '\\';
    switch (ch) {
    case '\b': *w->p++ = 'b'; break;
    case '\n': *w->p++ = 'n'; break;
    case '\r': *w->p++ = 'r'; break;
    case '\t': *w->p++ = 't'; break;
    case '\f': *w->p++ = 'f'; break;
    case '"': *w->p++ = '"'; break;
    case '\\': *w->p++ = '\\'; break;
    case '/': *w->p++ = '/'; break;
    default:
        memcpy(w->p, "u00", 3);
        w->p[3] = hex[ch >> 4];
        w->p[4] = hex[ch & 15];
        w->p += 5;
    }
}

/* Appends s[0..n) quoted and escaped as json-c's json_escape_str: eight bytes at a time
 * while none of them needs an escape (a byte below 0x20, '"', '\\', and '/' when asked). */
static int put_str(writer_t *w, const char *s, size_t n) {
    int slash = (w->flags & HV__JV_SLASH) != 0;
    size_t i = 0;
    int rc;
    /* Room for the worst case, every byte as "\u00xx", and for a last word written whole. */
    if (n > (SIZE_MAX - 11) / 6) return HV_ETOOBIG;
    if ((rc = need(w, 6 * n + 11)) != HV_OK) return rc;
    *w->p++ = '"';
    if (!slash && n >= 8) {
        /* Whole words with nothing to escape; the last, partial word is read as the eight
         * bytes that end the string (overlapping bytes already copied, which are clean and
         * land at the same places: nothing was escaped before them). */
        uint64_t x;
#if defined(__SSE2__)
        while (i + 16 <= n && block16_clean(s + i)) {
            memcpy(w->p, s + i, 16);
            w->p += 16;
            i += 16;
        }
#endif
        while (i + 8 <= n) {
            memcpy(&x, s + i, 8);
            if (!word_clean(x)) break;
            memcpy(w->p, &x, 8);
            w->p += 8;
            i += 8;
        }
        if (i + 8 > n && i < n) {
            memcpy(&x, s + n - 8, 8);
            if (word_clean(x)) {
                memcpy(w->p - (i - (n - 8)), &x, 8);
                w->p += n - i;
                i = n;
            }
        }
    }
    if (n < 16 && i == 0) {
        /* Short strings (most keys and codes): a byte at a time through the class table. */
        unsigned char stop = slash ? 1 | 2 : 1;
        for (; i < n; i++) {
            unsigned char ch = (unsigned char)s[i];
            if (esc_class[ch] & stop) break;
            w->p[i] = (char)ch;
        }
        w->p += i;
    }
    while (i < n) {
        size_t r = n - i < 8 ? n - i : 8, k;
        uint64_t x, hit;
        if (r == 8) {
            memcpy(&x, s + i, 8);
        } else {
            /* A short last piece, padded with 'a' (needs no escape) in memory order. */
            unsigned char t[8] = {'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a'};
            for (k = 0; k < r; k++) t[k] = (unsigned char)s[i + k];
            memcpy(&x, t, 8);
        }
        /* x < 0x20 per byte: the top three bits are zero. */
        hit = zero_bytes(x & (0xE0ULL * ONES)) | zero_bytes(x ^ ('"' * ONES)) | zero_bytes(x ^ ('\\' * ONES));
        if (slash) hit |= zero_bytes(x ^ ('/' * ONES));
        if (hit == 0) {
            memcpy(w->p, &x, 8); /* only r of them count */
            w->p += r;
            i += r;
            continue;
        }
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        {
            /* zero_bytes is exact per byte, and byte j of s + i is bits 8j.. of x here: the
             * lowest hit is the first byte to escape. The bytes before it go out in one copy
             * (the word is written whole; what follows them is overwritten), then the byte
             * escaped, and the next word starts after it: a URL's '/' costs one escape, not a
             * word taken byte by byte. */
            size_t f = (size_t)__builtin_ctzll(hit) >> 3;
            memcpy(w->p, &x, 8);
            w->p += f;
            i += f;
            put_esc(w, (unsigned char)s[i]);
            i++;
        }
#else
        for (k = 0; k < r; k++, i++) {
            unsigned char ch = (unsigned char)s[i];
            if (ch >= 0x20 && ch != '"' && ch != '\\' && (ch != '/' || !slash)) {
                *w->p++ = (char)ch;
                continue;
            }
            put_esc(w, ch);
        }
#endif
    }
    *w->p++ = '"';
    return HV_OK;
}

static int put_raw(writer_t *w, const char *s, size_t n) {
    int rc = need(w, n);
    if (rc != HV_OK) return rc;
    memcpy(w->p, s, n);
    w->p += n;
    return HV_OK;
}

static int put_c(writer_t *w, char ch) {
    int rc = need(w, 1);
    if (rc != HV_OK) return rc;
    *w->p++ = ch;
    return HV_OK;
}

static int write_v(writer_t *w, const hv__jv_t *v, int depth) {
    int rc = HV_OK;
    size_t i;
    const hv__jmem_t *m;
    char num[24];
    if (depth > HV__JV_MAX_DEPTH) return HV_ETOOBIG;
    if (v == NULL) return put_raw(w, "null", 4);
    switch (v->t) {
    case HV__JV_NULL: return put_raw(w, "null", 4);
    case HV__JV_BOOL: return v->u.i ? put_raw(w, "true", 4) : put_raw(w, "false", 5);
    case HV__JV_INT: {
        /* Decimal digits written backwards, then the sign. */
        unsigned long long u = v->u.i < 0 ? 0ULL - (unsigned long long)v->u.i : (unsigned long long)v->u.i;
        size_t o = sizeof(num);
        do num[--o] = (char)('0' + u % 10), u /= 10;
        while (u > 0);
        if (v->u.i < 0) num[--o] = '-';
        return put_raw(w, num + o, sizeof(num) - o);
    }
    case HV__JV_NUM: return put_raw(w, v->u.s, v->n);
    case HV__JV_STR: return put_str(w, v->u.s, v->n);
    case HV__JV_ARR:
        if ((rc = put_c(w, '[')) != HV_OK) return rc;
        for (i = 0; i < v->n && rc == HV_OK; i++) {
            if (i > 0 && (rc = put_c(w, ',')) != HV_OK) break;
            rc = write_v(w, v->u.a[i], depth + 1);
        }
        return rc == HV_OK ? put_c(w, ']') : rc;
    default:
        if ((rc = put_c(w, '{')) != HV_OK) return rc;
        for (m = v->u.o.head; m != NULL && rc == HV_OK; m = m->next) {
            if (m != v->u.o.head && (rc = put_c(w, ',')) != HV_OK) break;
            if (m->plain) {
                /* A constant key (a literal or a FHIR model name) needs no escape. */
                if ((rc = need(w, m->klen + 3)) != HV_OK) break;
                *w->p++ = '"';
                memcpy(w->p, m->k, m->klen);
                w->p += m->klen;
                *w->p++ = '"';
                *w->p++ = ':';
            } else {
                if ((rc = put_str(w, m->k, m->klen)) != HV_OK) break;
                if ((rc = put_c(w, ':')) != HV_OK) break;
            }
            rc = write_v(w, m->v, depth + 1);
        }
        return rc == HV_OK ? put_c(w, '}') : rc;
    }
}

int hv__jv_write(const hv__jv_t *v, hv_buf_t *out, unsigned flags) {
    size_t before = out->len;
    writer_t w;
    int rc;
    w.b = out;
    w.flags = flags;
    w.p = w.end = NULL;
    if (out->data != NULL) {
        w.p = out->data + out->len;
        w.end = out->data + out->cap - 1;
    }
    rc = write_v(&w, v, 0);
    if (rc == HV_OK && w.p == NULL) rc = need(&w, 1); /* nothing written into an empty buffer */
    if (rc == HV_OK && out->max != 0 && (size_t)(w.p - out->data) > out->max) rc = HV_ETOOBIG;
    if (rc != HV_OK) {
        /* Nothing half-written stays. */
        out->len = before;
        if (out->data != NULL) out->data[before] = '\0';
        return rc;
    }
    out->len = (size_t)(w.p - out->data);
    out->data[out->len] = '\0';
    return HV_OK;
}

/* ------------------------------------------------------------------------- */
/* To json-c                                                                 */
/* ------------------------------------------------------------------------- */

static json_object *to_json(const hv__jv_t *v, int depth) {
    json_object *o = NULL, *c;
    const hv__jmem_t *m;
    size_t i;
    if (v == NULL || depth > HV__JV_MAX_DEPTH) return NULL;
    switch (v->t) {
    case HV__JV_NULL: return NULL;
    case HV__JV_BOOL: return json_object_new_boolean(v->u.i != 0);
    case HV__JV_INT: return json_object_new_int64(v->u.i);
    case HV__JV_NUM: return json_object_new_double_s(v->d, v->u.s);
    case HV__JV_STR: return json_object_new_string_len(v->u.s, (int)v->n);
    case HV__JV_ARR:
        o = json_object_new_array_ext((int)v->n);
        if (o == NULL) return NULL;
        for (i = 0; i < v->n; i++) {
            c = to_json(v->u.a[i], depth + 1);
            if (v->u.a[i] != NULL && v->u.a[i]->t != HV__JV_NULL && c == NULL) goto fail;
            if (json_object_array_add(o, c) != 0) {
                json_object_put(c);
                goto fail;
            }
        }
        return o;
    default:
        o = json_object_new_object();
        if (o == NULL) return NULL;
        for (m = v->u.o.head; m != NULL; m = m->next) {
            c = to_json(m->v, depth + 1);
            if (m->v != NULL && m->v->t != HV__JV_NULL && c == NULL) goto fail;
            /* The tree's keys are unique (hv__jv_put replaces): no look-up needed. */
            if (json_object_object_add_ex(o, m->k, c, JSON_C_OBJECT_ADD_KEY_IS_NEW) != 0) {
                json_object_put(c);
                goto fail;
            }
        }
        return o;
    }
fail:
    json_object_put(o);
    return NULL;
}

struct json_object *hv__jv_to_json(const hv__jv_t *v) { return to_json(v, 0); }
