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
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

hv__jv_t *hv__jv_str(hv_arena_t *a, const char *s) { return hv__jv_strn(a, s, strlen(s)); }

hv__jv_t *hv__jv_str_ref(hv_arena_t *a, const char *s) {
    hv__jv_t *v = jv_new(a, HV__JV_STR);
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
    hv__jmem_t *m;
    if (o == NULL || v == NULL || o->t != HV__JV_OBJ) return HV_ENOMEM;
    if (!(flags & HV__JV_KNEW) && (m = find(o, key, NULL)) != NULL) {
        m->v = v; /* json-c replaces a value where it stands */
        return HV_OK;
    }
    m = hv_arena_alloc(a, sizeof(*m));
    if (m == NULL) return HV_ENOMEM;
    if (!(flags & HV__JV_KCONST) && (key = hv_arena_strdup(a, key)) == NULL) return HV_ENOMEM;
    m->k = key;
    m->v = v;
    m->next = NULL;
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

/* Bytes that need an escape: the controls, '"', '\\' and (when asked) '/'. */
static unsigned char needs_esc[256];
static void esc_table(void) {
    unsigned i;
    for (i = 0; i < 0x20; i++) needs_esc[i] = 1;
    needs_esc['"'] = needs_esc['\\'] = 1;
    needs_esc['/'] = 2;
}

/* Appends s[0..n) quoted and escaped as json-c's json_escape_str. */
static int put_str(hv_buf_t *b, const char *s, size_t n, unsigned flags) {
    static const char hex[] = "0123456789abcdef";
    unsigned char slash = flags & HV__JV_SLASH ? 2 : 3; /* needs_esc['/'] == 2 */
    size_t i, start = 0;
    int rc = hv_buf_reserve(b, n + 2);
    if (rc != HV_OK) return rc;
    b->data[b->len++] = '"';
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i], e = needs_esc[ch];
        char esc[6];
        size_t el = 2;
        if (e == 0 || (e == 2 && slash != 2)) continue;
        esc[0] = '\\';
        switch (ch) {
        case '\b': esc[1] = 'b'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\f': esc[1] = 'f'; break;
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '/': esc[1] = '/'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            el = 6;
        }
        if ((rc = hv_buf_reserve(b, (i - start) + el + (n - i) + 1)) != HV_OK) return rc;
        memcpy(b->data + b->len, s + start, i - start);
        b->len += i - start;
        memcpy(b->data + b->len, esc, el);
        b->len += el;
        start = i + 1;
    }
    if ((rc = hv_buf_reserve(b, (n - start) + 1)) != HV_OK) return rc;
    memcpy(b->data + b->len, s + start, n - start);
    b->len += n - start;
    b->data[b->len++] = '"';
    b->data[b->len] = '\0';
    return HV_OK;
}

static int put_raw(hv_buf_t *b, const char *s, size_t n) { return hv_buf_append(b, s, n); }

static int write_v(const hv__jv_t *v, hv_buf_t *b, unsigned flags, int depth) {
    int rc = HV_OK;
    size_t i;
    const hv__jmem_t *m;
    char num[24];
    if (depth > HV__JV_MAX_DEPTH) return HV_ETOOBIG;
    if (v == NULL) return put_raw(b, "null", 4);
    switch (v->t) {
    case HV__JV_NULL: return put_raw(b, "null", 4);
    case HV__JV_BOOL: return v->u.i ? put_raw(b, "true", 4) : put_raw(b, "false", 5);
    case HV__JV_INT: {
        /* Decimal digits written backwards, then the sign. */
        unsigned long long u = v->u.i < 0 ? 0ULL - (unsigned long long)v->u.i : (unsigned long long)v->u.i;
        size_t o = sizeof(num);
        do num[--o] = (char)('0' + u % 10), u /= 10;
        while (u > 0);
        if (v->u.i < 0) num[--o] = '-';
        return put_raw(b, num + o, sizeof(num) - o);
    }
    case HV__JV_NUM: return put_raw(b, v->u.s, v->n);
    case HV__JV_STR: return put_str(b, v->u.s, v->n, flags);
    case HV__JV_ARR:
        if ((rc = hv_buf_putc(b, '[')) != HV_OK) return rc;
        for (i = 0; i < v->n && rc == HV_OK; i++) {
            if (i > 0 && (rc = hv_buf_putc(b, ',')) != HV_OK) break;
            rc = write_v(v->u.a[i], b, flags, depth + 1);
        }
        return rc == HV_OK ? hv_buf_putc(b, ']') : rc;
    default:
        if ((rc = hv_buf_putc(b, '{')) != HV_OK) return rc;
        for (m = v->u.o.head; m != NULL && rc == HV_OK; m = m->next) {
            if (m != v->u.o.head && (rc = hv_buf_putc(b, ',')) != HV_OK) break;
            if ((rc = put_str(b, m->k, strlen(m->k), flags)) != HV_OK) break;
            if ((rc = hv_buf_putc(b, ':')) != HV_OK) break;
            rc = write_v(m->v, b, flags, depth + 1);
        }
        return rc == HV_OK ? hv_buf_putc(b, '}') : rc;
    }
}

int hv__jv_write(const hv__jv_t *v, hv_buf_t *out, unsigned flags) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    size_t before = out->len;
    int rc;
    pthread_once(&once, esc_table);
    rc = write_v(v, out, flags, 0);
    if (rc != HV_OK) {
        /* Nothing half-written stays. */
        out->len = before;
        if (out->data != NULL) out->data[before] = '\0';
    }
    return rc;
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
