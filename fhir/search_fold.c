/*
 * search_fold.c — the normalization of string search values (FHIR R4 search.html#string:
 * "by default, a field matches a string query if the value of the field equals or
 * starts with the supplied parameter value, after both have been normalized by
 * case and accent"). The same function folds the values written to the index
 * (sp_str, the :text rows, the full-text columns) and the values of a query, so a
 * starts-with is a byte range over folded strings (fhir/search_plan.c).
 *
 * fold(x) is Unicode's compatibility caseless form (Unicode 15.0 §3.13, D146:
 * NFKD(toCasefold(NFKD(toCasefold(NFD(x)))))) with every combining character then
 * removed: a code point of general category Mn or Me, or of a non-zero canonical
 * combining class. libunistring computes the form (u8_casefold with UNINORM_NFKD,
 * which implements exactly D146); nothing here is a hand-written letter list.
 *
 *   "Müller", "MULLER"     -> "muller"     accents are marks after NFD: dropped
 *   "Straße", "STRASSE"    -> "strasse"    full case folding (CaseFolding.txt status F)
 *   "ΣΊΣΥΦΟΣ", "σίσυφος"   -> "σισυφοσ"    final sigma folds to sigma, tonos is a mark
 *   "İstanbul"             -> "istanbul"   İ folds to i + U+0307, a mark; "ı" stays "ı"
 *   "ﬁ", "Ａ", "²"          -> "fi", "a", "2" compatibility forms (NFKD)
 *   "Łódź", "Ærø", "þ"     -> "łodz", "ærø", "þ"  letters that do not decompose stay
 *                                               letters, only case-folded (as HAPI's
 *                                               NFD + strip marks + upper case)
 *
 * Dropping every mark is what the Unicode Collation Algorithm's primary strength
 * ignores (marks weigh at the secondary level), so it is "accent-insensitive" for
 * every script: Greek tonos, Hebrew points, Arabic harakat, Japanese dakuten
 * ("が" -> "か") alike. Dropping the few spacing characters of non-zero combining
 * class too keeps the output free of reorderable characters, so the result is
 * stable: fold(fold(x)) == fold(x).
 *
 * Every step is per code point (NFKD decomposes each code point on its own, full
 * case folding has no context without a language, and the canonical reordering
 * only moves characters of non-zero class, all of which are dropped), so
 * fold(xy) == fold(x) fold(y). That makes three speeds possible with one result:
 *   - ASCII is lower-cased by a byte loop (no library call: the common case pays
 *     what it paid before);
 *   - the rest of the BMP (U+0080..U+FFFF: Latin, Greek, Cyrillic, Hebrew, Arabic,
 *     CJK, Hangul, kana, ...) comes from a table computed from libunistring (the
 *     fold of each code point alone), a block of 128 code points at a time, when a
 *     block is first used;
 *   - runs of other code points (beyond the BMP, or whose fold is longer than 8
 *     bytes) go to libunistring in chunks.
 * hv__search_normalize_ref (whole string through the library) is the reference the
 * tests and the fuzz target compare against.
 *
 * Invalid UTF-8 (a resource's JSON may carry it) never reaches the library: each
 * invalid byte becomes U+FFFD, so the output is always valid UTF-8. The output is
 * truncated at a code point boundary: it is always a prefix of the untruncated fold.
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

#include "fhir/search_int.h"

#define TAB_LO 0x80
#define TAB_HI 0x10000 /* the table covers U+0080..U+FFFF, the rest of the BMP */
#define TAB_N (TAB_HI - TAB_LO)
#define TAB_SLOT 8       /* bytes of one folded code point kept in the table */
#define TAB_LONG 0xff    /* a code point whose fold is longer than a slot: the library folds it */
#define BLK_SHIFT 7      /* the table is built by blocks of 128 code points, on first use */
#define NBLK ((TAB_N + (1 << BLK_SHIFT) - 1) >> BLK_SHIFT)
#define CHUNK 512        /* input bytes handed to the library at once */

/* The table (bss: only the blocks in use are ever touched). A block is written under
 * tab_mu, then published by its ready flag (release); readers check the flag (acquire). */
static uint8_t tab_bytes[TAB_N][TAB_SLOT];
static uint8_t tab_len[TAB_N];
static atomic_uchar blk_ready[NBLK];
static pthread_mutex_t tab_mu = PTHREAD_MUTEX_INITIALIZER;

/* The replacement character U+FFFD in UTF-8, written for each invalid input byte. */
static const uint8_t replacement[3] = {0xef, 0xbf, 0xbd};

/* The output being written: cap bytes at out, o used, full once a code point did not fit. */
typedef struct sink {
    char *out;
    size_t cap, o;
    int full;
} sink_t;

static void emit(sink_t *k, const uint8_t *p, size_t n)
{
    if (k->full)
        return;
    if (k->o + n + 1 > k->cap) {
        k->full = 1; /* never a later, shorter code point: the output stays a prefix */
        return;
    }
    memcpy(k->out + k->o, p, n);
    k->o += n;
}

/* Emits n bytes of valid UTF-8 (a table entry): whole, or the code points that fit. */
static void emit_cps(sink_t *k, const uint8_t *p, size_t n)
{
    if (!k->full && k->o + n + 1 <= k->cap) {
        memcpy(k->out + k->o, p, n);
        k->o += n;
        return;
    }
    while (n > 0 && !k->full) {
        int len = u8_mblen(p, n);
        size_t m = len > 0 ? (size_t)len : n; /* the table holds valid UTF-8: never n */
        emit(k, p, m);
        p += m;
        n -= m;
    }
}

/* True for the characters the fold drops: marks (Mn, Me) and any non-zero combining class. */
static int dropped(ucs4_t c)
{
    return uc_combining_class(c) != 0 || uc_is_general_category_withtable(c, UC_CATEGORY_MASK_Mn | UC_CATEGORY_MASK_Me);
}

/*
 * Folds n bytes of valid UTF-8 at s through libunistring and emits the result
 * without its dropped characters. When the library fails (out of memory) the
 * bytes are emitted as they are: the output stays valid UTF-8.
 */
static void fold_lib(sink_t *k, const uint8_t *s, size_t n)
{
    uint8_t buf[4 * CHUNK];
    size_t len = sizeof(buf);
    uint8_t *r = u8_casefold(s, n, NULL, UNINORM_NFKD, buf, &len);
    const uint8_t *p, *e;
    if (r == NULL) {
        emit(k, s, n);
        return;
    }
    for (p = r, e = r + len; p < e && !k->full;) {
        ucs4_t c;
        int m = u8_mbtouc(&c, p, (size_t)(e - p));
        if (m <= 0)
            break;
        if (!dropped(c))
            emit(k, p, (size_t)m);
        p += m;
    }
    if (r != buf)
        free(r); /* libunistring's own allocation (malloc): not hv_malloc's */
}

/* Computes block b of the table (each code point folded alone by the library) once. */
static void blk_build(size_t b)
{
    pthread_mutex_lock(&tab_mu);
    if (!atomic_load_explicit(&blk_ready[b], memory_order_relaxed)) {
        for (size_t i = b << BLK_SHIFT; i < ((b + 1) << BLK_SHIFT) && i < TAB_N; i++) {
            uint8_t in[4];
            char out[TAB_SLOT + 2];
            sink_t k = {out, sizeof(out), 0, 0};
            int n = u8_uctomb(in, (ucs4_t)(i + TAB_LO), sizeof(in));
            if (n > 0)
                fold_lib(&k, in, (size_t)n);
            if (n <= 0 || k.full || k.o > TAB_SLOT) {
                tab_len[i] = TAB_LONG; /* a surrogate (never decoded), or a long fold */
            } else {
                memcpy(tab_bytes[i], out, k.o);
                tab_len[i] = (uint8_t)k.o;
            }
        }
        atomic_store_explicit(&blk_ready[b], 1, memory_order_release);
    }
    pthread_mutex_unlock(&tab_mu);
}

/* The table's fold of c in *p, *n; 0 when the table does not hold it (beyond the BMP, long). */
static int tab_get(ucs4_t c, const uint8_t **p, size_t *n)
{
    size_t i, b;
    if (c < TAB_LO || c >= TAB_HI)
        return 0;
    i = c - TAB_LO;
    b = i >> BLK_SHIFT;
    if (!atomic_load_explicit(&blk_ready[b], memory_order_acquire))
        blk_build(b);
    if (tab_len[i] == TAB_LONG)
        return 0;
    *p = tab_bytes[i];
    *n = tab_len[i];
    return 1;
}

/*
 * The length of the valid UTF-8 sequence at p (at most n bytes), with its code
 * point in *c; 0 when the bytes there are not a valid, complete sequence.
 */
static size_t next_cp(const uint8_t *p, size_t n, ucs4_t *c)
{
    int m = u8_mbtoucr(c, p, n);
    return m > 0 ? (size_t)m : 0;
}

/* Folds s (from its first non-ASCII byte on) into k, the fast way. */
static void fold_rest(sink_t *k, const uint8_t *s)
{
    size_t n = strlen((const char *)s);
    const uint8_t *p = s, *e = s + n;
    while (p < e && !k->full) {
        ucs4_t c;
        size_t m, tn;
        const uint8_t *run, *tp;
        if (*p < 0x80) {
            uint8_t b = (uint8_t)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
            emit(k, &b, 1);
            p++;
            continue;
        }
        m = next_cp(p, (size_t)(e - p), &c);
        if (m == 0) {
            emit(k, replacement, sizeof(replacement));
            p++;
            continue;
        }
        if (tab_get(c, &tp, &tn)) {
            emit_cps(k, tp, tn);
            p += m;
            continue;
        }
        /* A run of code points the table does not hold, up to CHUNK bytes: the library.
         * It ends before ASCII, an invalid byte or a code point of the table. */
        run = p;
        p += m;
        while (p < e && *p >= 0x80) {
            m = next_cp(p, (size_t)(e - p), &c);
            if (m == 0 || (size_t)(p + m - run) > CHUNK || tab_get(c, &tp, &tn))
                break;
            p += m;
        }
        fold_lib(k, run, (size_t)(p - run));
    }
}

size_t hv__search_normalize(const char *s, char *out, size_t cap)
{
    const unsigned char *p = (const unsigned char *)s;
    sink_t k = {out, cap, 0, 0};
    if (cap == 0)
        return 0;
    /* ASCII: lower-cased byte by byte, as before there was a library (the common case). */
    while (*p != '\0' && *p < 0x80 && k.o + 1 < cap) {
        out[k.o++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        p++;
    }
    if (*p != '\0' && k.o + 1 < cap)
        fold_rest(&k, p);
    out[k.o] = '\0';
    return k.o;
}

size_t hv__search_normalize_ref(const char *s, char *out, size_t cap)
{
    const uint8_t *p = (const uint8_t *)s, *e = p + strlen(s);
    uint8_t *clean = NULL;
    size_t n = 0;
    sink_t k = {out, cap, 0, 0};
    if (cap == 0)
        return 0;
    clean = hv_malloc(3 * (size_t)(e - p) + 1);
    if (clean == NULL) {
        out[0] = '\0';
        return 0;
    }
    while (p < e) {
        ucs4_t c;
        size_t m = next_cp(p, (size_t)(e - p), &c);
        if (m == 0) {
            memcpy(clean + n, replacement, sizeof(replacement));
            n += sizeof(replacement);
            p++;
        } else {
            memcpy(clean + n, p, m);
            n += m;
            p += m;
        }
    }
    fold_lib(&k, clean, n);
    hv_free(clean);
    out[k.o] = '\0';
    return k.o;
}

/*
 * The value as the resource has it, for :exact (FHIR R4 search.html#string: ":exact —
 * the search parameter value must match the exact string, including case and
 * combining characters"): no folding, no normalization form (a precomposed "ü" and
 * "u" + U+0308 differ). Only what the index cannot store is changed, identically for
 * the index row and the query: an invalid byte becomes U+FFFD (PostgreSQL's TEXT takes
 * only valid UTF-8) and the copy ends at the last whole code point that fits.
 */
size_t hv__search_raw(const char *s, char *out, size_t cap)
{
    const uint8_t *p = (const uint8_t *)s, *e = p + strlen(s);
    size_t o = 0;
    if (cap == 0)
        return 0;
    /* ASCII as it is, a byte at a time (most values are ASCII only), while a byte and the
     * terminator fit: what the loop below does for it, without decoding. */
    while (p < e && *p < 0x80 && o + 2 <= cap)
        out[o++] = (char)*p++;
    while (p < e) {
        ucs4_t c;
        size_t m = next_cp(p, (size_t)(e - p), &c);
        const uint8_t *from = m == 0 ? replacement : p;
        size_t len = m == 0 ? sizeof(replacement) : m;
        if (o + len + 1 > cap)
            break;
        memcpy(out + o, from, len);
        o += len;
        p += m == 0 ? 1 : m;
    }
    out[o] = '\0';
    return o;
}

/*
 * The migration adding sp_str.raw (the value before folding, hv__search_raw), which
 * :exact compares after the folded value's index has narrowed the rows
 * (fhir/search_plan.c, value_clause). Rows written before it keep raw NULL, and
 * :exact treats them as before (folded equality) until `holovitals reindex` rewrites
 * them: no backfill at startup, which on a large store would hold the opening for as
 * long as a reindex. PostgreSQL compares raw byte for byte (collation "C", like the
 * value column's index); SQLite's default BINARY already does.
 */
const char hv__search_migration_raw_sqlite[] = "ALTER TABLE sp_str ADD COLUMN raw TEXT;";
const char hv__search_migration_raw_pg[] = "ALTER TABLE sp_str ADD COLUMN raw TEXT COLLATE \"C\";";
