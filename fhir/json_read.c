/*
 * json_read.c — the fast path of the FHIR JSON reader (hv_fhir_json_parse): strict JSON
 * (RFC 8259) read straight into the json-c tree, without json-c's tokener.
 *
 * json-c 0.16's tokener spends about 45 instructions a byte: a state-machine step per byte,
 * every string and key copied through its print buffer, each key strdup'd twice, and a
 * locale switch per call. An import's workers spent 40% of their instructions there. This
 * reader scans strings 8 bytes at a time, builds each value once, and makes each array at
 * its final size.
 *
 * Contract: when hv__fhir_json_read returns a tree, json_tokener_parse_ex in
 * JSON_TOKENER_STRICT mode (as hv_fhir_json_parse runs it) would have returned an equal tree
 * of the same json-c types, object keys in the same order, numbers with the same value and
 * the same serialization; when it returns NULL, hv_fhir_json_parse runs json-c's tokener, whose
 * result and error message stand. So the reader declines whatever it is not sure of:
 *
 * | declined                                     | why                                          |
 * |----------------------------------------------|----------------------------------------------|
 * | a top level that is not an object, or text   | json-c's errors and positions are the ones   |
 * | after it other than whitespace; any error    | reported                                     |
 * | escapes in keys                              | json-c cuts a key at a \u0000                |
 * | \u escapes of surrogates                     | json-c joins pairs and replaces lone ones    |
 * | raw bytes below 0x20 (NUL included)          | json-c accepts them in strings, ends at NUL  |
 * | bytes that are not well-formed UTF-8         | hv_fhir_json_parse words the error (the      |
 * |                                              | reader's strings are its only UTF-8 check)   |
 * | numbers with a leading zero ("-01")          | json-c reads "-01" as -1, "00" as 0          |
 * | integers of more than 18 digits              | json-c's strtoll saturates, then uint64      |
 * | decimals over 63 bytes; strtod stopping short | the reader's buffer; json-c's error or locale |
 * | nesting past min(max_depth - 1, 256)         | json-c's depth error; the recursion's bound  |
 *
 * A declined document costs both passes (the reader's up to where it declined): the
 * declined forms are rare in FHIR data (none in the 100k population or the Synthea bundles).
 *
 * What it builds as json-c's tokener does: numbers without '.', 'e' or 'E' are int64 (so
 * "-0" is the integer 0); others are doubles that keep their text (json_object_new_double_s);
 * a duplicate key replaces the earlier value in the earlier key's place
 * (json_object_object_add); \u0000 in a string value is a NUL byte inside the string's length.
 */
#include "config.h"

#include <float.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhir_int.h"

#define READ_DEPTH_CAP 256

typedef struct reader {
    const char *s, *end;
    int limit;                  /* containers nest at most this deep */
    struct json_object **elems; /* the elements of the arrays being read, innermost last */
    size_t nelems, elemcap;
    char *scratch; /* a key with its NUL, or a string value with its escapes undone */
    size_t scratchcap;
} reader_t;

static int read_value(reader_t *r, int depth, struct json_object **out);

static inline int is_ws(char c) {
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/* The number of bytes before the first flagged one of a word loaded with memcpy: flags are
 * the high bits of a byte-wise mask, and the lowest flag is the earliest byte on a
 * little-endian machine. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define FIRST_FLAGGED(mask) ((size_t)__builtin_ctzll(mask) / 8)
#endif

static inline void skip_ws(reader_t *r) {
    const char *s = r->s, *end = r->end;
    /* Indentation comes in runs of spaces: 8 at a time, then straight to the run's end. */
    while (s < end && is_ws(*s)) {
        s++;
        while (end - s >= 8) {
            uint64_t w;
            memcpy(&w, s, sizeof(w));
            w ^= UINT64_C(0x2020202020202020);
            if (w != 0) {
#ifdef FIRST_FLAGGED
                s += FIRST_FLAGGED(w); /* the first byte that is not a space */
#endif
                break;
            }
            s += 8;
        }
    }
    r->s = s;
}

static int scratch_reserve(reader_t *r, size_t n) {
    if (n <= r->scratchcap)
        return 0;
    size_t cap = r->scratchcap > 0 ? r->scratchcap : 256;
    while (cap < n)
        cap *= 2;
    char *p = hv_realloc(r->scratch, cap);
    if (p == NULL)
        return -1;
    r->scratch = p;
    r->scratchcap = cap;
    return 0;
}

/* The first byte at or after s that is '"', '\\', below 0x20 or at or above 0x80, or end.
 * Eight bytes at a time: a word flags a byte b when b ^ '"' or b ^ '\\' is zero or b < 0x20
 * (for bytes under 0x80 the subtraction's borrow marks exactly those; a byte at or above 0x80
 * is masked out by ~w there) or when b has its high bit set (the "| w"). Borrows start only
 * at a byte sought: a flag above a true one can be false, never one below it, so the lowest
 * flag is the byte sought. */
static const char *scan_plain(const char *s, const char *end) {
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
    while (end - s >= 8) {
        uint64_t w, q, b, flags;
        memcpy(&w, s, sizeof(w));
        q = w ^ (ones * '"');
        b = w ^ (ones * '\\');
        flags = (((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w) | w) & highs;
        if (flags != 0) {
#ifdef FIRST_FLAGGED
            return s + FIRST_FLAGGED(flags);
#else
            break;
#endif
        }
        s += 8;
    }
    while (s < end && *s != '"' && *s != '\\' && (unsigned char)*s >= 0x20 &&
           (unsigned char)*s < 0x80)
        s++;
    return s;
}

size_t hv__fhir_utf8_len(const char *p, const char *end) {
    const unsigned char *s = (const unsigned char *)p;
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t n;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t k = 2; k < n; k++)
        if (s[k] < 0x80 || s[k] > 0xBF)
            return 0;
    return n;
}

/* scan_plain, going on past each well-formed UTF-8 sequence: the first byte at or after s
 * that is '"', '\\', below 0x20 or a byte that starts no well-formed sequence, or end. The
 * strings are the only place the reader takes a byte at or above 0x80, so a text it reads is
 * valid UTF-8 and hv_fhir_json_parse need not check it first. */
static const char *scan_run(const char *s, const char *end) {
    for (;;) {
        s = scan_plain(s, end);
        if (s == end || (unsigned char)*s < 0x80)
            return s;
        size_t n = hv__fhir_utf8_len(s, end);
        if (n == 0)
            return s;
        s += n;
    }
}

/* The value of the four hex digits at p (p + 4 <= end): 1, or 0 when they are not. */
int hv__fhir_hex4(const char *p, const char *end, unsigned *out) {
    unsigned v = 0;
    if (end - p < 4)
        return 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return 0;
    }
    *out = v;
    return 1;
}

/*
 * Reads the string whose opening quote r->s has passed. *out points at its bytes: in the
 * text, or in r->scratch when it had escapes (only when escapes_ok). Declines what the
 * table at the top says.
 */
static int read_string(reader_t *r, int escapes_ok, const char **out, size_t *outlen) {
    const char *s = r->s, *end = r->end, *run = s;
    size_t n = 0;

    s = scan_run(s, end);
    if (s < end && *s == '"') {
        *out = run;
        *outlen = (size_t)(s - run);
        r->s = s + 1;
        return 0;
    }
    if (s == end || *s != '\\' || !escapes_ok)
        return -1;
    for (;;) {
        size_t plain = (size_t)(s - run);
        if (scratch_reserve(r, n + plain + 4) != 0)
            return -1;
        memcpy(r->scratch + n, run, plain);
        n += plain;
        if (s == end)
            return -1;
        if (*s == '"')
            break;
        if (*s != '\\')
            return -1; /* a byte below 0x20, or not UTF-8 */
        /* A backslash: a one-character escape, or \uXXXX outside the surrogates, as UTF-8. */
        if (end - s < 2)
            return -1;
        char c = s[1], *w = r->scratch + n;
        s += 2;
        switch (c) {
        case '"':
        case '\\':
        case '/':
            *w = c;
            n++;
            break;
        case 'b':
            *w = '\b';
            n++;
            break;
        case 'f':
            *w = '\f';
            n++;
            break;
        case 'n':
            *w = '\n';
            n++;
            break;
        case 'r':
            *w = '\r';
            n++;
            break;
        case 't':
            *w = '\t';
            n++;
            break;
        case 'u': {
            unsigned cp;
            if (!hv__fhir_hex4(s, end, &cp) || (cp >= 0xD800 && cp <= 0xDFFF))
                return -1;
            s += 4;
            if (cp < 0x80) {
                w[0] = (char)cp;
                n += 1;
            } else if (cp < 0x800) {
                w[0] = (char)(0xC0 | (cp >> 6));
                w[1] = (char)(0x80 | (cp & 0x3F));
                n += 2;
            } else {
                w[0] = (char)(0xE0 | (cp >> 12));
                w[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                w[2] = (char)(0x80 | (cp & 0x3F));
                n += 3;
            }
            break;
        }
        default:
            return -1;
        }
        run = s;
        s = scan_run(s, end);
    }
    *out = r->scratch;
    *outlen = n;
    r->s = s + 1;
    return 0;
}

static inline int is_digit(char c) {
    return c >= '0' && c <= '9';
}

/* 10^0 .. 10^22: the powers of ten a double holds exactly (5^22 < 2^53). */
static const double exact_pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/*
 * The double strtod reads from a decimal without exponent, whose nint integer digits at
 * digits are followed by '.' and nfrac digits, when the quotient below is exact enough:
 * 1, or 0 when strtod must read it. When the digits make an integer m <= 2^53 (at most 19
 * digits are read) and nfrac <= 22, m and the divisor 10^nfrac are exact doubles, so the one
 * IEEE division m / 10^nfrac is the correctly rounded value of the decimal, which is what
 * strtod returns (Clinger,
 * "How to read floating point numbers accurately", 1990, the fast path). Needs doubles
 * evaluated in their own precision (FLT_EVAL_METHOD 0: SSE2, not x87) and the default
 * rounding, which the engine never changes. strtod costs ~950 instructions a decimal;
 * most decimals of real data (Synthea's 16-digit values too) take this path.
 */
static int decimal_fast(const char *digits, size_t nint, size_t nfrac, int neg, double *out) {
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
    uint64_t m = 0;
    if (nint + nfrac > 19 || nfrac >= HV_ARRAY_LEN(exact_pow10))
        return 0;
    for (size_t i = 0; i < nint; i++)
        m = m * 10 + (uint64_t)(digits[i] - '0');
    for (size_t i = 0; i < nfrac; i++)
        m = m * 10 + (uint64_t)(digits[nint + 1 + i] - '0');
    if (m > (UINT64_C(1) << 53))
        return 0;
    double d = (double)m / exact_pow10[nfrac];
    *out = neg ? -d : d;
    return 1;
#else
    (void)digits, (void)nint, (void)nfrac, (void)neg, (void)out;
    return 0;
#endif
}

/* A number in RFC 8259 §6's grammar, as json-c's tokener makes it (see the top). */
static int read_number(reader_t *r, struct json_object **out) {
    const char *s = r->s, *end = r->end, *start = s, *digits;
    int neg = 0, is_double = 0, has_exp = 0;
    size_t nfrac = 0;

    if (*s == '-') {
        neg = 1;
        s++;
    }
    digits = s;
    if (s == end || !is_digit(*s))
        return -1;
    if (*s == '0') {
        s++;
        if (s < end && is_digit(*s))
            return -1;
    } else {
        while (s < end && is_digit(*s))
            s++;
    }
    size_t ndigits = (size_t)(s - digits);
    if (s < end && *s == '.') {
        const char *frac;
        is_double = 1;
        s++;
        frac = s;
        if (s == end || !is_digit(*s))
            return -1;
        while (s < end && is_digit(*s))
            s++;
        nfrac = (size_t)(s - frac);
    }
    if (s < end && (*s == 'e' || *s == 'E')) {
        is_double = 1;
        has_exp = 1;
        s++;
        if (s < end && (*s == '+' || *s == '-'))
            s++;
        if (s == end || !is_digit(*s))
            return -1;
        while (s < end && is_digit(*s))
            s++;
    }
    /* json-c's tokener ends the number at the same byte only if that byte cannot continue
     * one ('-', '+', '.', 'e' could in its looser grammar). */
    if (s == end || !(*s == ',' || *s == ']' || *s == '}' || is_ws(*s)))
        return -1;
    if (!is_double) {
        if (ndigits > 18)
            return -1;
        int64_t v = 0;
        for (const char *d = digits; d < s; d++)
            v = v * 10 + (*d - '0');
        *out = json_object_new_int64(neg ? -v : v);
    } else {
        char text[64], *stop = NULL;
        size_t n = (size_t)(s - start);
        double d;
        if (n >= sizeof(text))
            return -1;
        memcpy(text, start, n);
        text[n] = '\0';
        if (has_exp || !decimal_fast(digits, ndigits, nfrac, neg, &d)) {
            d = strtod(text, &stop);
            if (stop != text + n)
                return -1;
        }
        *out = json_object_new_double_s(d, text);
    }
    if (*out == NULL)
        return -1;
    r->s = s;
    return 0;
}

static int read_literal(reader_t *r, const char *word, size_t n) {
    if ((size_t)(r->end - r->s) < n || memcmp(r->s, word, n) != 0)
        return -1;
    r->s += n;
    return 0;
}

/* The model's names an object has so far, while all of them fit (n < 0 when they did not). */
typedef struct seen_names {
    const char *name[16];
    int n;
} seen_names_t;

/*
 * json_object_object_add of key[0..keylen), a key of the text (it had no escapes), as the
 * tokener adds it: a duplicate replaces the value in place. A name of the FHIR model goes in
 * as the model's static copy (JSON_C_OBJECT_KEY_IS_CONSTANT), which the tree never frees: a
 * strdup and a free per key less, about a third of the tree's allocations. Such a name is
 * always that one pointer, so while seen holds all of the object's, a name not among them is
 * new and json-c need not look it up. Other keys are copied with their NUL into the scratch
 * buffer, and json-c looks them up and copies them.
 */
static int add_member(reader_t *r, struct json_object *obj, seen_names_t *seen, const char *key,
                      size_t keylen, struct json_object *val) {
    hv__fhir_key_hash_fn *fn = NULL;
    unsigned long hash = 0;
    const char *name = hv__fhir_key_static_hashed(key, keylen, &fn, &hash);
    if (name != NULL) {
        unsigned opts = JSON_C_OBJECT_KEY_IS_CONSTANT;
        struct lh_table *t = json_object_get_object(obj);
        struct lh_entry *e = NULL;
        if (seen->n >= 0) {
            int i = 0;
            while (i < seen->n && seen->name[i] != name)
                i++;
            if (i == seen->n) {
                opts |= JSON_C_OBJECT_ADD_KEY_IS_NEW;
                if (seen->n < (int)HV_ARRAY_LEN(seen->name))
                    seen->name[seen->n++] = name;
                else
                    seen->n = -1;
            }
        }
        if (fn == NULL || t->hash_fn != fn)
            return json_object_object_add_ex(obj, name, val, opts);
        /* What json_object_object_add_ex does (json-c 0.16), with the name's hash computed
         * once per process instead of once per member (~100 instructions, a sixth of a
         * member's cost): the table files the name under the hash its hash_fn gives it, so
         * every later look-up finds it. A duplicate's value is replaced in place. */
        if (!(opts & JSON_C_OBJECT_ADD_KEY_IS_NEW))
            e = lh_table_lookup_entry_w_hash(t, name, hash);
        if (e == NULL)
            return lh_table_insert_w_hash(t, name, val, hash, JSON_C_OBJECT_KEY_IS_CONSTANT);
        json_object_put((struct json_object *)lh_entry_v(e));
        lh_entry_set_val(e, val);
        return 0;
    }
    if (scratch_reserve(r, keylen + 1) != 0)
        return -1;
    memcpy(r->scratch, key, keylen);
    r->scratch[keylen] = '\0';
    return json_object_object_add(obj, r->scratch, val);
}

static int read_object(reader_t *r, int depth, struct json_object **out) {
    struct json_object *obj = NULL;
    seen_names_t seen;

    if (depth + 1 >= r->limit)
        return -1;
    obj = json_object_new_object();
    if (obj == NULL)
        return -1;
    seen.n = 0;
    r->s++; /* '{' */
    skip_ws(r);
    if (r->s < r->end && *r->s == '}') {
        r->s++;
        *out = obj;
        return 0;
    }
    for (;;) {
        const char *key;
        size_t keylen;
        struct json_object *val = NULL;
        if (r->s == r->end || *r->s != '"')
            goto decline;
        r->s++;
        if (read_string(r, 0, &key, &keylen) != 0)
            goto decline;
        skip_ws(r);
        if (r->s == r->end || *r->s != ':')
            goto decline;
        r->s++;
        skip_ws(r);
        if (read_value(r, depth + 1, &val) != 0)
            goto decline;
        if (add_member(r, obj, &seen, key, keylen, val) != 0) {
            json_object_put(val);
            goto decline;
        }
        skip_ws(r);
        if (r->s == r->end)
            goto decline;
        if (*r->s == '}') {
            r->s++;
            break;
        }
        if (*r->s != ',')
            goto decline;
        r->s++;
        skip_ws(r);
    }
    *out = obj;
    return 0;
decline:
    json_object_put(obj);
    return -1;
}

static int read_array(reader_t *r, int depth, struct json_object **out) {
    size_t base = r->nelems;
    struct json_object *arr = NULL;

    if (depth + 1 >= r->limit)
        return -1;
    r->s++; /* '[' */
    skip_ws(r);
    if (r->s < r->end && *r->s == ']') {
        r->s++;
    } else {
        for (;;) {
            struct json_object *val = NULL;
            if (read_value(r, depth + 1, &val) != 0)
                goto decline;
            if (r->nelems == r->elemcap) {
                size_t cap = r->elemcap > 0 ? r->elemcap * 2 : 64;
                struct json_object **p = hv_realloc(r->elems, cap * sizeof(*p));
                if (p == NULL) {
                    json_object_put(val);
                    goto decline;
                }
                r->elems = p;
                r->elemcap = cap;
            }
            r->elems[r->nelems++] = val;
            skip_ws(r);
            if (r->s == r->end)
                goto decline;
            if (*r->s == ']') {
                r->s++;
                break;
            }
            if (*r->s != ',')
                goto decline;
            r->s++;
            skip_ws(r);
        }
    }
    /* The tokener grows an array from 32 slots and shrinks it to its length (1 when empty)
     * at the ']': the same array, made at that size. */
    size_t n = r->nelems - base;
    if (n > INT32_MAX)
        goto decline;
    arr = json_object_new_array_ext(n > 0 ? (int)n : 1);
    if (arr == NULL)
        goto decline;
    for (size_t i = 0; i < n; i++)
        (void)json_object_array_add(arr, r->elems[base + i]); /* no growth: cannot fail */
    r->nelems = base;
    *out = arr;
    return 0;
decline:
    while (r->nelems > base)
        json_object_put(r->elems[--r->nelems]);
    return -1;
}

/* One value at r->s (not whitespace), of the given depth (the document's object is 0). JSON
 * null is the NULL object, as in json-c. */
static int read_value(reader_t *r, int depth, struct json_object **out) {
    *out = NULL;
    if (r->s == r->end)
        return -1;
    switch (*r->s) {
    case '{':
        return read_object(r, depth, out);
    case '[':
        return read_array(r, depth, out);
    case '"': {
        const char *str;
        size_t len;
        r->s++;
        if (read_string(r, 1, &str, &len) != 0 || len > INT32_MAX)
            return -1;
        *out = json_object_new_string_len(str, (int)len);
        return *out != NULL ? 0 : -1;
    }
    case 't':
        if (read_literal(r, "true", 4) != 0)
            return -1;
        *out = json_object_new_boolean(1);
        return *out != NULL ? 0 : -1;
    case 'f':
        if (read_literal(r, "false", 5) != 0)
            return -1;
        *out = json_object_new_boolean(0);
        return *out != NULL ? 0 : -1;
    case 'n':
        return read_literal(r, "null", 4);
    default:
        if (*r->s == '-' || is_digit(*r->s))
            return read_number(r, out);
        return -1;
    }
}

struct json_object *hv__fhir_json_read(const char *text, size_t len, int max_depth) {
    reader_t r = {.s = text, .end = text + len};
    struct json_object *obj = NULL;

    r.limit = max_depth - 1 < READ_DEPTH_CAP ? max_depth - 1 : READ_DEPTH_CAP;
    skip_ws(&r);
    if (r.s == r.end || *r.s != '{' || read_object(&r, 0, &obj) != 0)
        goto out;
    skip_ws(&r);
    if (r.s != r.end) {
        json_object_put(obj);
        obj = NULL;
    }
out:
    hv_free(r.elems);
    hv_free(r.scratch);
    return obj;
}
